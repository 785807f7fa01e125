//! The workflow walk-through in `examples/walkthrough/` runs as written: `cargo test`
//! builds the example, and this runs it (its own backends, Envoy and switchyard) and
//! expects it to observe every step.

use std::process::Command;

#[test]
fn the_walkthrough_example_observes_every_step() {
    // target/<profile>/deps/integration-HASH -> target/<profile>/examples/walkthrough
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let walkthrough = profile_dir.join("examples").join("walkthrough");
    assert!(
        walkthrough.exists(),
        "{} is missing: `cargo test` builds the examples",
        walkthrough.display()
    );
    let out = Command::new(&walkthrough)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run the walkthrough");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the walkthrough failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("walkthrough: every step observed what it should."),
        "{stdout}"
    );
}
