//! Build script.
//!
//! 1. Compiles the project's own protos (`proto/`, the `switchyard.v1` API) with protox, a
//!    pure-Rust protobuf compiler (no `protoc` needed), into Rust (tonic + prost) and a
//!    descriptor set for gRPC reflection.
//! 2. Makes envoy-types' compiled descriptor set available to the crate.
//!
//! envoy-types ships `src/generated/types.bin`, the FileDescriptorSet matching its
//! generated Rust types (every Envoy API the crate exposes, ADS and CSDS included). We find
//! the crate's sources through `cargo metadata` (the cargo_metadata crate) or, when that
//! cannot resolve offline, in Cargo's registry at the version `Cargo.lock` pins (read with
//! the toml crate's parser), and copy the set into `OUT_DIR`, where `render` (proto3 JSON
//! with Envoy's field names) and gRPC reflection load it. No Envoy proto is copied into
//! this repository, and no `protoc` is needed.
//!
//! The fallback is needed: `cargo metadata` resolves the whole graph, so offline it fails
//! unless every locked package is downloaded, dev-dependencies and other platforms' ones
//! included, and a first `cargo build` or `cargo install --path .` downloads only what
//! that build compiles. For reading `Cargo.lock`, toml's parser adds 5 crates to the build;
//! the cargo-lock crate would add 37 (url, and ICU through idna).

use std::path::{Path, PathBuf};

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
    let metadata = cargo_metadata::MetadataCommand::new()
        .manifest_path(manifest_dir.join("Cargo.toml"))
        .other_options(vec!["--offline".to_owned()])
        .exec()
        .map_err(|e| e.to_string())?;
    let package = metadata
        .packages
        .iter()
        .find(|p| p.name == "envoy-types")
        .ok_or("`cargo metadata` lists no envoy-types")?;
    let dir = package
        .manifest_path
        .parent()
        .ok_or("a manifest path has a directory")?;
    Ok(dir.into())
}

/// The part of `Cargo.lock` the fallback reads.
#[derive(serde::Deserialize)]
struct Lockfile {
    package: Vec<LockedPackage>,
}

#[derive(serde::Deserialize)]
struct LockedPackage {
    name: String,
    version: String,
}

/// Fallback when `cargo metadata` cannot resolve offline (see the module doc; the
/// Dockerfile runs `cargo fetch --locked` first, nothing makes a user do that): the
/// version locked in `Cargo.lock`, in Cargo's registry sources.
fn envoy_types_from_registry(manifest_dir: &Path) -> Result<PathBuf, String> {
    let lock = std::fs::read_to_string(manifest_dir.join("Cargo.lock"))
        .map_err(|e| format!("cannot read Cargo.lock: {e}"))?;
    let lock: Lockfile = toml::from_str(&lock).map_err(|e| format!("Cargo.lock: {e}"))?;
    let version = lock
        .package
        .into_iter()
        .find(|p| p.name == "envoy-types")
        .ok_or("Cargo.lock has no envoy-types")?
        .version;
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
