//! The official Python model clients that `examples/models/ask.py` drives are
//! provisioned into the tools virtualenv at their pinned versions.

use std::process::Command;

use crate::common::tools::{self, PYTHON_CLIENTS};

/// Each pinned distribution and the module it is imported as.
const IMPORTS: &[(&str, &str)] = &[
    ("langchain-ollama", "langchain_ollama"),
    ("langchain-core", "langchain_core"),
    ("ollama", "ollama"),
    ("anthropic", "anthropic"),
    ("google-genai", "google.genai"),
];

/// Imports a module and prints the installed version of its distribution.
const IMPORT_AND_VERSION: &str = "\
import importlib, importlib.metadata, sys
importlib.import_module(sys.argv[2])
print(importlib.metadata.version(sys.argv[1]))";

#[test]
fn provisioned_clients_import_at_their_pinned_versions() {
    let python = tools::python_clients();
    assert_eq!(
        IMPORTS.len(),
        PYTHON_CLIENTS.len(),
        "a pinned client has no import here"
    );
    for &(name, pinned) in PYTHON_CLIENTS {
        let (_, module) = IMPORTS
            .iter()
            .find(|(dist, _)| *dist == name)
            .unwrap_or_else(|| panic!("no import listed for pinned client {name}"));
        let out = Command::new(&python)
            .args(["-c", IMPORT_AND_VERSION, name, module])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "importing {module} failed:\n{stderr}");
        let installed = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            installed.trim(),
            pinned,
            "{name} is not at its pinned version"
        );
    }
}
