//! Build script.
//!
//! 1. Compiles the project's own protos (`proto/`, the `switchyard.v1` API) with protox, a
//!    pure-Rust protobuf compiler (no `protoc` needed), into Rust (tonic + prost) and a
//!    descriptor set for gRPC reflection.
//! 2. Makes envoy-types' compiled descriptor set available to the crate.
//!
//! envoy-types ships `src/generated/types.bin`, the FileDescriptorSet matching its
//! generated Rust types (every Envoy API the crate exposes, ADS and CSDS included). We find
//! the crate's sources through `cargo metadata` (or, when it cannot resolve offline, in
//! Cargo's registry at the version `Cargo.lock` pins) and copy the set into `OUT_DIR`, where
//! `render` (proto3 JSON with Envoy's field names) and gRPC reflection load it. No Envoy
//! proto is copied into this repository, and no `protoc` is needed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let crate_dir = match envoy_types_from_metadata(&manifest_dir) {
        Ok(dir) => dir,
        Err(metadata_error) => envoy_types_from_registry(&manifest_dir).unwrap_or_else(|e| {
            panic!("cannot find the envoy-types sources: {metadata_error}; and {e}")
        }),
    };
    let set = crate_dir.join("src/generated/types.bin");
    std::fs::copy(&set, out_dir.join("envoy_types.bin"))
        .unwrap_or_else(|e| panic!("copy {}: {e}", set.display()));
    compile_own_protos(&out_dir);
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.lock");
}

/// The envoy-types crate directory, as `cargo metadata` reports it (works with vendored
/// sources and path overrides too). Offline: the build script never downloads.
fn envoy_types_from_metadata(manifest_dir: &Path) -> Result<PathBuf, String> {
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
        .map_err(|e| format!("cannot run `cargo metadata`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo metadata` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("`cargo metadata` printed no JSON: {e}"))?;
    let manifest = metadata["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "envoy-types"))
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or("`cargo metadata` lists no envoy-types")?;
    Ok(PathBuf::from(manifest)
        .parent()
        .ok_or("a manifest path has a directory")?
        .to_owned())
}

/// Fallback when `cargo metadata` cannot resolve offline (a dependency used only by
/// tests or another platform not downloaded yet, as in `cargo build` in a fresh
/// container): the version locked in `Cargo.lock`, in Cargo's registry sources.
fn envoy_types_from_registry(manifest_dir: &Path) -> Result<PathBuf, String> {
    let lock = std::fs::read_to_string(manifest_dir.join("Cargo.lock"))
        .map_err(|e| format!("cannot read Cargo.lock: {e}"))?;
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"envoy-types\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_owned())
        .ok_or("Cargo.lock has no envoy-types")?;
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let registries = cargo_home.join("registry/src");
    let entries = std::fs::read_dir(&registries)
        .map_err(|e| format!("cannot read {}: {e}", registries.display()))?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path().join(format!("envoy-types-{version}")))
        .find(|d| d.join("src/generated/types.bin").is_file())
        .ok_or_else(|| format!("no envoy-types-{version} under {}", registries.display()))
}

fn compile_own_protos(out_dir: &Path) {
    let proto = "proto/switchyard/v1/switchyard.proto";
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile([proto], ["proto"]).unwrap_or_else(|e| panic!("{proto}: {e}"));
    std::fs::write(
        out_dir.join("switchyard_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )
    .expect("write the switchyard descriptor set");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
        .expect("generate switchyard.v1 code");
}
