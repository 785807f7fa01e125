//! Watches the state file and reports each new content, accepted or rejected.
//!
//! The directory holding the file is watched (not the file), so every way of saving is
//! seen: a write in place, an editor's temp file renamed over it, delete and recreate, and a
//! Kubernetes ConfigMap update (the file is a symlink through `..data`, which is swapped
//! atomically to a new directory).
//!
//! Debounce without latency: a save that is known to be complete (a rename into place, a
//! close after writing) is read at once. Only a write still in progress (data written, no
//! close yet) waits for the writer to go quiet for `quiet`, or at most `max_wait`, so a
//! half-written file is not read while the writer is still writing. Saves in a burst (closer
//! than `burst`, 10 ms) after the first are read once at the end of the interval. Content
//! identical to the last one read is ignored, so unrelated events cost one read at most.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{DesiredState, StateError};
use crate::events::FileInfo;

/// How long to wait for a write in progress.
#[derive(Debug, Clone, Copy)]
pub struct Debounce {
    /// Quiet period after the last write event before a file still open is read anyway.
    pub quiet: Duration,
    /// Longest time a write in progress can delay reading the file.
    pub max_wait: Duration,
    /// Complete saves closer together than this are read once, at the end of the
    /// interval (the first of a burst is read at once), so a burst of saves reaches
    /// proxies as a few versions.
    pub burst: Duration,
}

impl Default for Debounce {
    fn default() -> Self {
        Debounce {
            quiet: Duration::from_millis(100),
            max_wait: Duration::from_millis(1000),
            burst: Duration::from_millis(10),
        }
    }
}

/// What the watcher saw.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// New content that parsed and validated.
    Accepted {
        state: Arc<DesiredState>,
        /// SHA-256 (hex) of the file's bytes.
        content_hash: String,
        /// When the file was read (the start of the convergence clock).
        seen_at: Instant,
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
    let first_read = missed_save.then(|| Instant::now() + debounce.quiet);
    let task = tokio::spawn(debounce_loop(
        path,
        initial_hash,
        first_read,
        debounce,
        raw_rx,
        Box::new(relevant),
        events,
    ));
    Ok(StateWatcher {
        _watcher: watcher,
        task,
    })
}

/// Whether an event says a save is complete (read now) or still under way (wait).
#[derive(Debug, PartialEq, Eq)]
enum Save {
    Complete,
    InProgress,
    Irrelevant,
}

fn classify(kind: &EventKind) -> Save {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Save::Complete,
        EventKind::Modify(ModifyKind::Name(_)) => Save::Complete,
        // A new symlink (ConfigMap) is complete; a new regular file is about to be written.
        EventKind::Create(CreateKind::File) => Save::InProgress,
        EventKind::Create(_) => Save::Complete,
        EventKind::Modify(_) => Save::InProgress,
        // A removal keeps the last good state; the recreation will be seen.
        _ => Save::Irrelevant,
    }
}

async fn debounce_loop(
    path: PathBuf,
    mut last_hash: String,
    first_read: Option<Instant>,
    debounce: Debounce,
    mut raw: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    relevant: Box<dyn Fn(&Path) -> bool + Send>,
    events: mpsc::UnboundedSender<WatchEvent>,
) {
    // When to read the file next, if a save has been seen.
    let mut read_at: Option<Instant> = first_read;
    // When the write in progress (data written, not yet closed) began.
    let mut writing_since: Option<Instant> = None;
    // When the file was last read: complete saves closer together than `burst` are
    // coalesced into one read at the end of the interval.
    let mut last_read: Option<Instant> = None;
    // Identity of the file as last read: an event for a file already read (a rename is
    // reported twice, as `To` and as `Both`) schedules nothing.
    let mut last_stamp: Option<Stamp> = None;
    loop {
        let now = Instant::now();
        if read_at.is_some_and(|at| at <= now) {
            read_at = None;
            last_read = Some(now);
            last_stamp = stamp(&path);
            // An empty file is almost always a save caught between its truncate and its
            // write: wait for the rest (up to `max_wait`) instead of rejecting it.
            let defer_empty = writing_since.is_none_or(|s| now < s + debounce.max_wait);
            match read_if_changed(&path, &mut last_hash, defer_empty) {
                Read::Unchanged => {}
                Read::Empty => {
                    let started = *writing_since.get_or_insert(now);
                    read_at = Some((now + debounce.quiet).min(started + debounce.max_wait));
                    continue;
                }
                Read::Changed(event) => {
                    if events.send(event).is_err() {
                        return; // the server is gone
                    }
                }
            }
            writing_since = None;
            continue;
        }
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
                let now = Instant::now();
                match classify(&ev.kind) {
                    Save::Complete => {
                        if read_at.is_none() && writing_since.is_none() && stamp(&path) == last_stamp {
                            continue; // this very file was read already
                        }
                        writing_since = None;
                        let earliest = last_read.map_or(now, |l| l + debounce.burst);
                        read_at = Some(earliest.max(now));
                    }
                    Save::InProgress => {
                        let started = *writing_since.get_or_insert(now);
                        read_at = Some((now + debounce.quiet).min(started + debounce.max_wait));
                    }
                    Save::Irrelevant => debug!(kind = ?ev.kind, "state file event ignored"),
                }
            }
            _ = tokio::time::sleep_until(read_at.unwrap_or(now)), if read_at.is_some() => {}
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

/// What a read found.
enum Read {
    /// The same content as last time, or nothing readable.
    Unchanged,
    /// An empty file, not reported (see `defer_empty`).
    Empty,
    /// New content, accepted or rejected.
    Changed(WatchEvent),
}

/// Reads the file and says what to report when its content differs from the last read.
/// The read is synchronous: state files are small (a few KiB, at most 16 MiB), and a
/// thread-pool hop would add latency to every save.
fn read_if_changed(path: &Path, last_hash: &mut String, defer_empty: bool) -> Read {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            info!(path = %path.display(), "state file is gone; keeping the last good state");
            return Read::Unchanged;
        }
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read state file; keeping the last good state");
            return Read::Unchanged;
        }
    };
    if bytes.is_empty() && defer_empty {
        debug!(path = %path.display(), "state file is empty; waiting for the rest of the save");
        return Read::Empty;
    }
    let content_hash = hash(&bytes);
    if content_hash == *last_hash {
        return Read::Unchanged;
    }
    last_hash.clone_from(&content_hash);
    let seen_at = Instant::now();
    Read::Changed(match super::load_bytes(path, &bytes) {
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

/// The name of user `uid` from `/etc/passwd`, if it is there.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_owned())
    })
}

/// SHA-256 of a file's bytes, hex.
pub fn hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
