//! Build script: makes envoy-types' compiled descriptor set available to the crate.
//!
//! envoy-types ships `src/generated/types.bin`, the FileDescriptorSet matching its
//! generated Rust types (every Envoy API the crate exposes, ADS and CSDS included). We find
//! the crate's sources through `cargo metadata` and copy the set into `OUT_DIR`, where
//! `render` (proto3 JSON with Envoy's field names) and gRPC reflection load it. No Envoy
//! proto is copied into this repository, and no `protoc` is needed.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
        ])
        .arg(manifest_dir.join("Cargo.toml"))
        .output()
        .expect("run `cargo metadata`");
    if !output.status.success() {
        panic!(
            "`cargo metadata` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("`cargo metadata` prints JSON");
    let manifest = metadata["packages"]
        .as_array()
        .expect("metadata has packages")
        .iter()
        .find(|p| p["name"] == "envoy-types")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("envoy-types is a dependency");
    let set = PathBuf::from(manifest)
        .parent()
        .expect("a manifest has a directory")
        .join("src/generated/types.bin");
    std::fs::copy(&set, out_dir.join("envoy_types.bin"))
        .unwrap_or_else(|e| panic!("copy {}: {e}", set.display()));
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.lock");
}
