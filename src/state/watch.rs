//! Watches the state file and reports each new content, accepted or rejected.
//!
//! The directory holding the file is watched (not the file), so every way of saving is
//! seen: a write in place, an editor's temp file renamed over it, delete and recreate, and a
//! Kubernetes ConfigMap update (the file is a symlink through `..data`, which is swapped
//! atomically to a new directory).
//!
//! Debounce without latency: a save that is known to be complete (a rename into place, a
//! close after writing) is read at once; only a write still in progress waits for its writer
//! to go quiet. The rules live in `debounce.rs` as a pure function of the events seen, the
//! reads done and the clock (`Debouncer`, unit-tested rule by rule with a fake clock);
//! this file feeds it: it turns notify's events into `Save`s, sleeps until the debouncer's
//! deadline, reads the file, tells the debouncer what the read found, and reports content
//! that differs from the last one read (so unrelated events cost one read at most).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::time::sleep_until;
use tracing::{debug, info, warn};

pub use super::debounce::Debounce;
use super::debounce::{Debouncer, Found, Save, Verdict, classify};
use super::{DesiredState, StateError};
use crate::events::FileInfo;

/// What the watcher saw.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// New content that parsed and validated.
    Accepted {
        state: Arc<DesiredState>,
        /// SHA-256 (hex) of the file's bytes.
        content_hash: String,
        /// When the file was read (the start of the convergence clock).
        seen_at: tokio::time::Instant,
    },
    /// New content that did not; the last good state stays in force.
    Rejected {
        error: StateError,
        content_hash: String,
    },
}

/// A running watch. Dropping it stops the watch.
pub struct StateWatcher {
    _watcher: RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StateWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Error starting the watch.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path}: {source}")]
pub struct WatchError {
    path: PathBuf,
    #[source]
    source: notify::Error,
}

/// Starts watching `path`. `initial_bytes` is the content already loaded at startup, so
/// that it is not reported again. Events go to `events`.
pub fn spawn(
    path: &Path,
    initial_bytes: &[u8],
    debounce: Debounce,
    events: mpsc::UnboundedSender<WatchEvent>,
) -> Result<StateWatcher, WatchError> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let dir = path
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."));
    let file_name = path.file_name().map(|n| n.to_owned()).unwrap_or_default();

    // notify calls back on its own thread; an unbounded channel never blocks it, and the
    // debounce loop below drains it quickly (events are tiny and coalesced by content).
    let (raw_tx, raw_rx) = mpsc::unbounded_channel::<notify::Result<notify::Event>>();
    let mut watcher = notify::recommended_watcher(move |ev| {
        let _ = raw_tx.send(ev);
    })
    .map_err(|source| WatchError {
        path: path.clone(),
        source,
    })?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|source| WatchError {
            path: dir.clone(),
            source,
        })?;

    let relevant = move |p: &Path| match p.file_name() {
        // The file itself, or a ConfigMap's `..data` machinery.
        Some(name) => name == file_name || name.to_string_lossy().starts_with(".."),
        None => false,
    };
    // A save between the initial load and the watch being set up sends no event we can
    // see: compare now (the watch is in place, so any later save is seen) and, if the file
    // changed meanwhile, read it as if a write were in progress.
    let initial_hash = hash(initial_bytes);
    let missed_save = std::fs::read(&path).is_ok_and(|b| hash(&b) != initial_hash);
    let mut debouncer = Debouncer::new(debounce);
    if missed_save {
        debouncer.missed_save(Instant::now());
    }
    let task = tokio::spawn(debounce_loop(
        path,
        initial_hash,
        debouncer,
        raw_rx,
        Box::new(relevant),
        events,
    ));
    Ok(StateWatcher {
        _watcher: watcher,
        task,
    })
}

async fn debounce_loop(
    path: PathBuf,
    mut last_hash: String,
    mut debouncer: Debouncer,
    mut raw: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    relevant: Box<dyn Fn(&Path) -> bool + Send>,
    events: mpsc::UnboundedSender<WatchEvent>,
) {
    // Identity of the file as last read: an event for a file already read (a rename is
    // reported twice, as `To` and as `Both`) schedules nothing.
    let mut last_stamp: Option<Stamp> = None;
    loop {
        let now = Instant::now();
        if debouncer.is_due(now) {
            last_stamp = stamp(&path);
            let bytes = read(&path);
            let found = match &bytes {
                Some(b) if b.is_empty() => Found::Empty,
                _ => Found::Other,
            };
            if debouncer.read(now, found) == Verdict::WaitForRest {
                debug!(path = %path.display(), "state file is empty; waiting for the rest of the save");
                continue;
            }
            let event = bytes.and_then(|b| report_if_changed(&path, &mut last_hash, &b));
            if event.is_some_and(|e| events.send(e).is_err()) {
                return; // the server is gone
            }
            continue;
        }
        let read_at = debouncer.read_at();
        tokio::select! {
            ev = raw.recv() => {
                let Some(ev) = ev else { return };
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        warn!(error = %e, "state file watch error");
                        continue;
                    }
                };
                if !ev.paths.iter().any(|p| relevant(p)) {
                    continue;
                }
                let save = classify(&ev.kind);
                if save == Save::Irrelevant {
                    debug!(kind = ?ev.kind, "state file event ignored");
                }
                let already_read = save == Save::Complete && stamp(&path) == last_stamp;
                debouncer.saw(Instant::now(), save, already_read);
            }
            _ = sleep_until(read_at.unwrap_or(now).into()), if read_at.is_some() => {}
        }
    }
}

/// Which file, and which version of it: inode, size and modification time.
type Stamp = (u64, u64, i64, i64);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// The file's bytes, or `None` when it is gone or unreadable (the last good state stays).
/// The read is synchronous: state files are small (a few KiB, at most 16 MiB), and a
/// thread-pool hop would add latency to every save.
fn read(path: &Path) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            info!(path = %path.display(), "state file is gone; keeping the last good state");
            None
        }
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read state file; keeping the last good state");
            None
        }
    }
}

/// What to report for the file's `bytes`: nothing when they are the same as last read,
/// else the new content, accepted or rejected.
fn report_if_changed(path: &Path, last_hash: &mut String, bytes: &[u8]) -> Option<WatchEvent> {
    let content_hash = hash(bytes);
    if content_hash == *last_hash {
        return None;
    }
    last_hash.clone_from(&content_hash);
    let seen_at = tokio::time::Instant::now();
    Some(match super::load_bytes(path, bytes) {
        Ok(state) => WatchEvent::Accepted {
            state: Arc::new(state),
            content_hash,
            seen_at,
        },
        Err(error) => WatchEvent::Rejected {
            error,
            content_hash,
        },
    })
}

/// The file's path, modification time and owner (following symlinks, as the read did).
/// For the audit trail; read after publishing, off the path of a switch.
pub fn file_info(path: &Path) -> FileInfo {
    let meta = std::fs::metadata(path).ok();
    let owner_uid = meta.as_ref().map(std::os::unix::fs::MetadataExt::uid);
    FileInfo {
        path: path.display().to_string(),
        mtime: meta.as_ref().and_then(|m| m.modified().ok()),
        owner_uid,
        owner: owner_uid.and_then(user_name),
    }
}

/// The name of user `uid`, if the system knows it (through NSS, so LDAP and the like count).
fn user_name(uid: u32) -> Option<String> {
    let user = nix::unistd::User::from_uid(uid.into()).ok()??;
    Some(user.name)
}

/// SHA-256 of a file's bytes, hex.
pub fn hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_s_owner_is_named_as_the_system_names_them() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let id = std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap();
        assert!(id.status.success(), "id -un: {id:?}");
        let name = String::from_utf8(id.stdout).unwrap().trim().to_owned();
        let info = file_info(file.path());
        assert_eq!(info.owner.as_deref(), Some(name.as_str()));
    }

    #[test]
    fn uid_0_is_root() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }

    #[test]
    fn an_unknown_uid_has_no_name() {
        assert_eq!(user_name(3_999_999_999), None);
    }
}
