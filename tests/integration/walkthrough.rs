//! The workflow walk-through in `examples/walkthrough/` runs as written: `cargo test`
//! builds the example, and this runs it (its own backends, Envoy and switchyard) and
//! expects it to observe every step.

#[test]
fn the_walkthrough_example_observes_every_step() {
    let stdout = crate::common::run_built_example("walkthrough");
    assert!(
        stdout.contains("walkthrough: every step observed what it should."),
        "{stdout}"
    );
}
