//! Reading the state file without trusting what is at its path.
//!
//! Only a regular file is read, and only if it is at most [`MAX_STATE_BYTES`]: the type and
//! size are checked (following symlinks) before opening, so a FIFO, a device such as
//! `/dev/zero`, a directory or a 2 GiB sparse file costs one `stat`. The file is then
//! opened with `O_NONBLOCK` (a FIFO swapped in after the check cannot block the open),
//! checked again on the opened descriptor, and read through `take(MAX_STATE_BYTES + 1)`, so
//! a file that grows while it is read costs at most the limit plus one byte.
//!
//! This is still a blocking read: async callers run it on the blocking pool (the watcher
//! does, with a timeout).

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use super::limits::MAX_STATE_BYTES;

/// Why the file at the path could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("no file at this path")]
    Missing,
    /// A FIFO, a device, a directory or a socket: `what` names it ("a FIFO").
    #[error("is {what}, not a regular file")]
    NotRegular { what: &'static str },
    #[error("is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("permission denied")]
    PermissionDenied,
    /// The read did not finish in time (a hung network file system, say).
    #[error("reading it did not finish within {0:?}")]
    TimedOut(std::time::Duration),
    #[error("{0}")]
    Io(String),
}

impl ReadError {
    /// A short stable name, for the `reason` label of metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ReadError::Missing => "missing",
            ReadError::NotRegular { .. } => "not_regular_file",
            ReadError::TooLarge { .. } => "too_large",
            ReadError::PermissionDenied => "permission_denied",
            ReadError::TimedOut(_) => "timed_out",
            ReadError::Io(_) => "io_error",
        }
    }

    fn from_io(e: std::io::Error) -> ReadError {
        match e.kind() {
            std::io::ErrorKind::NotFound => ReadError::Missing,
            std::io::ErrorKind::PermissionDenied => ReadError::PermissionDenied,
            _ => ReadError::Io(e.to_string()),
        }
    }
}

/// The bytes of the regular file at `path` (following symlinks), at most
/// [`MAX_STATE_BYTES`] of them.
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, ReadError> {
    read_limited(path, MAX_STATE_BYTES as u64)
}

/// The bytes of the regular file at `path` (following symlinks), at most `limit` of them
/// (the files a state names, see `files.rs`, are read the same way).
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    check(&std::fs::metadata(path).map_err(ReadError::from_io)?, limit)?;
    let file = File::options()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(ReadError::from_io)?;
    // What was opened may not be what was checked: a rename between the two.
    let meta = file.metadata().map_err(ReadError::from_io)?;
    check(&meta, limit)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0) + 1);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::from_io)?;
    if bytes.len() as u64 > limit {
        // It grew while being read.
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

/// A regular file within the limit, or why not.
fn check(meta: &Metadata, limit: u64) -> Result<(), ReadError> {
    let t = meta.file_type();
    let what = if t.is_file() {
        None
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    };
    if let Some(what) = what {
        return Err(ReadError::NotRegular { what });
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.yaml");
        std::fs::write(&path, "services: []\n").unwrap();
        assert_eq!(read_bounded(&path).unwrap(), b"services: []\n");
    }

    #[test]
    fn a_device_is_refused_without_being_read() {
        let err = read_bounded(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(err.to_string(), "is a character device, not a regular file");
        assert_eq!(err.label(), "not_regular_file");
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_bounded(dir.path()).unwrap_err();
        assert_eq!(err.to_string(), "is a directory, not a regular file");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.yaml");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let err = read_bounded(&path).unwrap_err();
        assert_eq!(err.to_string(), "is a FIFO, not a regular file");
    }

    #[test]
    fn a_sparse_file_over_the_limit_is_refused_by_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.yaml");
        let file = File::create(&path).unwrap();
        file.set_len(2 << 30).unwrap();
        let err = read_bounded(&path).unwrap_err();
        assert_eq!(
            err,
            ReadError::TooLarge {
                size: 2 << 30,
                limit: MAX_STATE_BYTES as u64
            }
        );
        assert_eq!(
            err.to_string(),
            "is 2147483648 bytes; the limit is 16777216 bytes"
        );
    }

    #[test]
    fn a_missing_file_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_bounded(&dir.path().join("nope.yaml")).unwrap_err();
        assert_eq!(err, ReadError::Missing);
    }
}
