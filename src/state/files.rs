//! The content of the files a state names: each color's credential, CA and client
//! certificate. Switchyard reads them and serves them to the proxies over SDS; their
//! content is never part of the desired state, its hash, a log line or anything shown
//! (the values here print as `[redacted]`).
//!
//! A relative path is relative to the state file's directory. A file is read whole, at most
//! [`MAX_FILE_BYTES`]; a credential is trimmed of surrounding whitespace (the newline an
//! editor or `echo` leaves), a PEM file is kept as it is. An empty file is an error: an
//! empty credential would be sent as a header without a value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::model::{DesiredState, FileRef, Problem};

/// The largest file read: a certificate chain is a few KiB, a key or token far less.
pub const MAX_FILE_BYTES: u64 = 256 * 1024;

/// One file's content, and a digest of it (what versions are made from).
#[derive(Clone, PartialEq, Eq)]
pub struct Content {
    bytes: Arc<[u8]>,
    digest: String,
}

impl Content {
    fn new(bytes: Vec<u8>) -> Content {
        Content {
            digest: hex::encode(Sha256::digest(&bytes)),
            bytes: bytes.into(),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// SHA-256 of the content (hex). A credential's digest names it without showing it.
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The files a state names, read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Files {
    /// Where relative paths start: the state file's directory.
    base: PathBuf,
    /// By path as the state writes it.
    read: BTreeMap<PathBuf, Content>,
}

/// How a file is read: a credential is trimmed, PEM is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Credential,
    Pem,
}

impl Files {
    /// Reads every file `state` names, relative to `base` (the state file's directory).
    /// Blocks; every file that cannot be read is a problem at the place it is named.
    pub fn read(state: &DesiredState, base: &Path) -> Result<Files, Vec<Problem>> {
        let mut files = Files {
            base: base.to_owned(),
            read: BTreeMap::new(),
        };
        let mut problems = Vec::new();
        for (file, kind) in named(state) {
            if files.read.contains_key(&file.path) {
                continue;
            }
            match files.read_one(&file.path, kind) {
                Ok(content) => {
                    files.read.insert(file.path.clone(), content);
                }
                Err(why) => problems.push(Problem {
                    line: file.at.0,
                    column: file.at.1,
                    message: format!("file `{}` {why}", file.path.display()),
                }),
            }
        }
        if problems.is_empty() {
            Ok(files)
        } else {
            problems.sort_by_key(|p| (p.line, p.column));
            Err(problems)
        }
    }

    /// Every file `state` names that can be read; the others stand empty. For the CLI's
    /// `render` and `diff`, which show no secret and need not be able to read them.
    pub fn read_what_can_be(state: &DesiredState, base: &Path) -> Files {
        let mut files = Files {
            base: base.to_owned(),
            read: BTreeMap::new(),
        };
        for (file, kind) in named(state) {
            let content = files
                .read_one(&file.path, kind)
                .unwrap_or_else(|_| Content::new(Vec::new()));
            files.read.insert(file.path.clone(), content);
        }
        files
    }

    /// The same files read again: what changed is new, and a file that cannot be read now
    /// keeps its last content (with why, for a warning). Blocks.
    pub fn reread(&self, state: &DesiredState) -> (Files, Vec<(PathBuf, String)>) {
        let mut next = self.clone();
        let mut errors = Vec::new();
        for (file, kind) in named(state) {
            match self.read_one(&file.path, kind) {
                Ok(content) => {
                    next.read.insert(file.path.clone(), content);
                }
                Err(why) => errors.push((self.resolve(&file.path), why)),
            }
        }
        (next, errors)
    }

    /// The files (resolved paths) whose content differs from `before`'s, or that it has
    /// not read.
    pub fn changed_from(&self, before: &Files) -> Vec<PathBuf> {
        self.read
            .iter()
            .filter(|(path, content)| before.read.get(*path) != Some(*content))
            .map(|(path, _)| self.resolve(path))
            .collect()
    }

    /// The content of `file`, if it was read.
    pub fn get(&self, file: &FileRef) -> Option<&Content> {
        self.read.get(&file.path)
    }

    /// The paths read, as the state writes them, and where they are.
    pub fn paths(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.read.keys().map(|p| self.resolve(p))
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        self.base.join(path)
    }

    fn read_one(&self, path: &Path, kind: Kind) -> Result<Content, String> {
        let bytes = super::read::read_limited(&self.resolve(path), MAX_FILE_BYTES)
            .map_err(|e| format!("cannot be read: {e}"))?;
        let bytes = match kind {
            Kind::Credential => trim(&bytes).to_vec(),
            Kind::Pem => bytes,
        };
        if bytes.is_empty() {
            return Err("is empty".to_owned());
        }
        if kind == Kind::Credential && bytes.iter().any(|b| !(0x20..0x7f).contains(b)) {
            // A header value cannot carry it (a newline would end the header).
            return Err(
                "holds a character a header value cannot carry (a credential is one line of \
                 printable ASCII)"
                    .to_owned(),
            );
        }
        Ok(Content::new(bytes))
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace());
    match (start, end) {
        (Some(s), Some(e)) => &bytes[s..=e],
        _ => &[],
    }
}

/// Every file `state` names, with how it is read.
fn named(state: &DesiredState) -> impl Iterator<Item = (&FileRef, Kind)> {
    state
        .services
        .iter()
        .flat_map(|s| [&s.blue, &s.green])
        .flat_map(|c| {
            let credential = c.credential.as_ref().map(|c| (&c.file, Kind::Credential));
            let tls = c.tls.as_ref();
            let cert = tls.and_then(|t| t.client_certificate.as_ref());
            let pem = tls
                .and_then(|t| t.ca.as_ref())
                .into_iter()
                .chain(cert.map(|c| &c.cert))
                .chain(cert.map(|c| &c.key));
            credential.into_iter().chain(pem.map(|f| (f, Kind::Pem)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::parse_str;

    fn state(credential: &str, ca: &str) -> DesiredState {
        parse_str(&format!(
            "listeners: [{{name: public, address: 127.0.0.1, port: 10000}}]
services:
  - name: s
    listener: public
    blue:
      endpoints: [\"api.example.com:443\"]
      tls: {{ca: {ca}}}
      credential: {{header: x-api-key, file: {credential}}}
    green: {{endpoints: [\"127.0.0.1:8082\"]}}
    active: blue
"
        ))
        .unwrap()
    }

    #[test]
    fn a_credential_is_read_trimmed_relative_to_the_state_file_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), "  s3cret-value\n").unwrap();
        std::fs::write(dir.path().join("ca.pem"), "-----BEGIN CERTIFICATE-----\n").unwrap();
        let s = state("key", "ca.pem");
        let files = Files::read(&s, dir.path()).unwrap();
        let cred = s.services[0].blue.credential.as_ref().unwrap();
        assert_eq!(files.get(&cred.file).unwrap().bytes(), b"s3cret-value");
        let ca = s.services[0]
            .blue
            .tls
            .as_ref()
            .unwrap()
            .ca
            .as_ref()
            .unwrap();
        assert_eq!(
            files.get(ca).unwrap().bytes(),
            b"-----BEGIN CERTIFICATE-----\n"
        );
        assert!(!format!("{files:?}").contains("s3cret"));
    }

    #[test]
    fn a_missing_or_empty_file_is_a_problem_where_it_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "\n").unwrap();
        std::fs::write(dir.path().join("empty"), " \n").unwrap();
        let problems = Files::read(&state("missing", "ca.pem"), dir.path()).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, 8);
        assert!(
            problems[0].message.starts_with("file `missing` "),
            "{problems:?}"
        );
        let problems = Files::read(&state("empty", "ca.pem"), dir.path()).unwrap_err();
        assert_eq!(problems[0].message, "file `empty` is empty");
    }

    #[test]
    fn a_credential_with_a_line_break_inside_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "x").unwrap();
        std::fs::write(dir.path().join("key"), "one\ntwo\n").unwrap();
        let problems = Files::read(&state("key", "ca.pem"), dir.path()).unwrap_err();
        assert!(problems[0].message.contains("one line"), "{problems:?}");
    }

    #[test]
    fn a_reread_keeps_the_last_content_of_a_file_that_went_missing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "x").unwrap();
        std::fs::write(dir.path().join("key"), "old").unwrap();
        let s = state("key", "ca.pem");
        let files = Files::read(&s, dir.path()).unwrap();
        let cred = &s.services[0].blue.credential.as_ref().unwrap().file;
        std::fs::write(dir.path().join("key"), "new").unwrap();
        let (next, errors) = files.reread(&s);
        assert!(errors.is_empty());
        assert_eq!(next.get(cred).unwrap().bytes(), b"new");
        std::fs::remove_file(dir.path().join("key")).unwrap();
        let (after, errors) = next.reread(&s);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, dir.path().join("key"));
        assert_eq!(after.get(cred).unwrap().bytes(), b"new");
    }
}
