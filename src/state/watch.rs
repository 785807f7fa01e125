//! Watches the state file and reports each new content, accepted or rejected, and whether
//! the file can be read at all.
//!
//! Every directory the path goes through is watched (not the file): the file's own, each
//! directory above it, and, when the path goes through symlinks, every directory they lead
//! to (`lookups.rs`). So every way of saving is seen: a write in place, an editor's temp
//! file renamed over it, delete and recreate, a Kubernetes ConfigMap update (the file is a
//! symlink through `..data`, swapped atomically to a new directory), a `current ->
//! releases/N` switch, the directory deleted, recreated or renamed away and replaced. After
//! each such event the path is resolved again and the watches follow it; where a directory
//! cannot be watched, or the file cannot be read, the path is also polled every 250 ms.
//!
//! Nothing here blocks an async worker: resolving, watching, `stat` and the read run on the
//! blocking pool, with a timeout, and only a regular file within the size limit is read
//! (`read.rs`). What is at the path when it cannot be read (missing, a FIFO, a device, a
//! directory, too large, denied, hung) is the watcher's [`FileHealth`], which `/readyz`,
//! `/status` and `/metrics` show; the last good state stays in force meanwhile.
//!
//! Debounce without latency: a save that is known to be complete (a rename into place, a
//! close after writing) is read at once; a write in progress waits for its writer's close
//! (where the platform reports closes), else for it to go quiet. The rules live in
//! `debounce.rs` as a pure function of the events seen, the reads done and the clock
//! (`Debouncer`, unit-tested rule by rule with a fake clock); this file feeds it: it turns
//! notify's events into `Save`s, sleeps until the debouncer's deadline, reads the file,
//! tells the debouncer what the read found, and reports content that differs from the last
//! one read (so unrelated events cost one read at most).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, sleep_until};
use tracing::{debug, info, warn};

pub use super::debounce::Debounce;
use super::debounce::{Closes, Debouncer, Found, Save, Verdict, classify};
use super::files::Files;
use super::lookups::{self, Lookup};
pub use super::read::ReadError;
use super::read::read_bounded;
use super::{DesiredState, StateError};
use crate::events::FileInfo;

/// How long one look at the file (resolve, watch, `stat`, read) may take before the file is
/// reported unreadable. A state file is read in well under a millisecond; only a hung file
/// system takes this long.
const LOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the path is looked at while the file cannot be read or a directory on the
/// path cannot be watched.
const POLL: Duration = Duration::from_millis(250);

/// Linux's inotify reports a writer closing the file (`IN_CLOSE_WRITE`); the other
/// platforms' watchers do not.
const CLOSES: Closes = if cfg!(any(target_os = "linux", target_os = "android")) {
    Closes::Reported
} else {
    Closes::NotReported
};

/// How often the files a state names (credentials, CAs, client certificates) are read
/// again: a rotated credential is in force within this, plus one push.
pub const FILES_POLL: Duration = Duration::from_secs(1);

/// What the watcher saw.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// New content that parsed and validated, and whose files could be read.
    Accepted {
        state: Arc<DesiredState>,
        /// The content of the files it names.
        files: Arc<Files>,
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
    /// A file the state in force names changed (a credential rotated): the same state,
    /// with these contents.
    FilesChanged {
        files: Arc<Files>,
        /// The files that changed.
        changed: Vec<PathBuf>,
    },
}

/// Whether the watcher can read the state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHealth {
    /// The state file's path, as watched (absolute).
    pub path: PathBuf,
    /// Why the file cannot be read now, if it cannot.
    pub unreadable: Option<Unreadable>,
    /// The files the state in force names (credentials, CAs, certificates) that cannot be
    /// read now: the proxies keep their last content, and a rotation waits.
    pub named_unreadable: Vec<NamedUnreadable>,
}

/// A file the state names that cannot be read now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedUnreadable {
    pub path: PathBuf,
    pub error: String,
    /// Since when (the reason may have changed since).
    pub since: SystemTime,
}

/// The state file cannot be read: the last good state stays in force, and no save is
/// applied until it can be read again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub error: ReadError,
    /// When it stopped being readable (the reason may have changed since).
    pub since: SystemTime,
}

/// A running watch. Dropping it stops the watch.
pub struct StateWatcher {
    task: JoinHandle<()>,
    health: watch::Receiver<FileHealth>,
}

impl StateWatcher {
    /// Whether the file can be read, kept current by the watch.
    pub fn health(&self) -> watch::Receiver<FileHealth> {
        self.health.clone()
    }
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
/// that it is not reported again, and `initial` its state and files (whose files are then
/// read again every [`FILES_POLL`]). Events go to `events`. Setting up the watches resolves
/// the path here (a few `lstat`s, as loading the file did); the directory holding the file
/// must be watchable.
pub fn spawn(
    path: &Path,
    initial_bytes: &[u8],
    initial: Option<(Arc<DesiredState>, Arc<Files>)>,
    debounce: Debounce,
    events: mpsc::UnboundedSender<WatchEvent>,
) -> Result<StateWatcher, WatchError> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    // notify calls back on its own thread; an unbounded channel never blocks it, and the
    // loop below drains it quickly (events are tiny and most are filtered out by path).
    let (raw_tx, raw_rx) = mpsc::unbounded_channel::<notify::Result<notify::Event>>();
    let watcher = notify::recommended_watcher(move |ev| {
        let _ = raw_tx.send(ev);
    })
    .map_err(|source| WatchError {
        path: path.clone(),
        source,
    })?;
    let mut watches = Watches {
        watcher,
        watched: Vec::new(),
        incomplete: false,
    };
    let (lookups, failures) = watches.rearm(&path, false);
    let own_dir = lookups.last().map(|l| l.dir.clone());
    if let Some((dir, source)) = failures
        .into_iter()
        .find(|(d, _)| Some(d) == own_dir.as_ref())
    {
        return Err(WatchError { path: dir, source });
    }
    let (health_tx, health) = watch::channel(FileHealth {
        path: path.clone(),
        unreadable: None,
        named_unreadable: Vec::new(),
    });
    // A save between the initial load and the watch being set up sends no event we can
    // see: look once the watch is in place (after `quiet`, in case that save is still
    // being written). Content identical to the initial load is not reported.
    let mut debouncer = Debouncer::new(debounce, CLOSES);
    debouncer.missed_save(Instant::now());
    let incomplete = watches.incomplete;
    let task = tokio::spawn(
        Loop {
            path,
            watches: Arc::new(Mutex::new(watches)),
            lookups,
            incomplete,
            debouncer,
            last_hash: hash(initial_bytes),
            last_stamp: None,
            health: health_tx,
            events,
            stuck: None,
            named: initial,
            waiting: None,
            file_errors: Vec::new(),
        }
        .run(raw_rx),
    );
    Ok(StateWatcher { task, health })
}

/// A directory's identity: device and inode.
type DirId = (u64, u64);

/// The notify watcher and the directories it watches. Used on the blocking pool only:
/// watching a directory `stat`s it, which can hang like any file system call.
struct Watches {
    watcher: RecommendedWatcher,
    /// Each watched directory with its identity when it was watched: a directory replaced
    /// by another at the same path is watched again.
    watched: Vec<(PathBuf, Option<DirId>)>,
    /// A directory on the path could not be watched: the path is polled.
    incomplete: bool,
}

impl Watches {
    /// Resolves `path` again and watches the directories it goes through now (all of them
    /// again if `force`: notify drops a watch by itself when its directory is renamed away).
    /// Returns the lookups and the directories that could not be watched.
    fn rearm(&mut self, path: &Path, force: bool) -> (Vec<Lookup>, Vec<(PathBuf, notify::Error)>) {
        use std::os::unix::fs::MetadataExt;
        let lookups = lookups::lookups(path);
        let wanted: Vec<(PathBuf, Option<DirId>)> = lookups::dirs(&lookups)
            .into_iter()
            .map(|d| {
                let id = std::fs::metadata(&d).ok().map(|m| (m.dev(), m.ino()));
                (d, id)
            })
            .collect();
        let mut failures = Vec::new();
        if !force && !self.incomplete && wanted == self.watched {
            return (lookups, failures);
        }
        for (dir, _) in &self.watched {
            // Already gone with its directory, maybe.
            let _ = self.watcher.unwatch(dir);
        }
        for (dir, _) in &wanted {
            if let Err(e) = self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                debug!(dir = %dir.display(), error = %e, "cannot watch a directory on the state file's path; polling");
                failures.push((dir.clone(), e));
            }
        }
        self.incomplete = !failures.is_empty();
        self.watched = wanted;
        (lookups, failures)
    }
}

/// What one look at the path found.
struct Look {
    lookups: Vec<Lookup>,
    incomplete: bool,
    /// The file's identity and version, if there is a file.
    stamp: Option<Stamp>,
    /// Something other than a regular file is at the path.
    irregular: bool,
    /// The file's bytes, if asked for.
    read: Option<Result<Vec<u8>, ReadError>>,
}

/// Resolves the path, re-arms the watches, `stat`s the file and, if `read`, reads it. On
/// the blocking pool.
fn look(watches: &Mutex<Watches>, path: &Path, force: bool, read: bool) -> Look {
    let mut w = watches.lock().expect("bug: watches lock poisoned");
    let (lookups, _) = w.rearm(path, force);
    let incomplete = w.incomplete;
    drop(w);
    let meta = std::fs::metadata(path).ok();
    Look {
        lookups,
        incomplete,
        stamp: meta.as_ref().map(stamp_of),
        irregular: meta.is_some_and(|m| !m.is_file()),
        read: read.then(|| read_bounded(path)),
    }
}

/// The watch loop's state. Only this task touches it.
struct Loop {
    path: PathBuf,
    /// A `std` mutex: looks take it on the blocking pool, one at a time, never across an
    /// await.
    watches: Arc<Mutex<Watches>>,
    /// As of the last look: which events concern the file.
    lookups: Vec<Lookup>,
    /// As of the last look: a directory on the path is not watched, so poll.
    incomplete: bool,
    debouncer: Debouncer,
    last_hash: String,
    /// Identity of the file as last read: an event for a file already read (a rename is
    /// reported twice, as `To` and as `Both`) schedules nothing.
    last_stamp: Option<Stamp>,
    health: watch::Sender<FileHealth>,
    events: mpsc::UnboundedSender<WatchEvent>,
    /// A look that outlived [`LOOK_TIMEOUT`]: no other starts until it ends, so a hung
    /// file system holds one blocking thread, not one per event.
    stuck: Option<JoinHandle<Look>>,
    /// The last state accepted and the content of the files it names, read again every
    /// [`FILES_POLL`] while it names any.
    named: Option<(Arc<DesiredState>, Arc<Files>)>,
    /// A valid state rejected because a file it names could not be read, and its content
    /// hash: accepted once the files can be read (the state file itself need not change).
    waiting: Option<(Arc<DesiredState>, String)>,
    /// The files last found unreadable on a re-read, and why (warned about once).
    file_errors: Vec<(PathBuf, String)>,
}

impl Loop {
    async fn run(mut self, mut raw: mpsc::UnboundedReceiver<notify::Result<notify::Event>>) {
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut files_poll = tokio::time::interval(FILES_POLL);
        files_poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            if self.stuck.is_none() && self.debouncer.is_due(Instant::now()) {
                if !self.read_now().await {
                    return; // the server is gone
                }
                continue;
            }
            let read_at = self.debouncer.read_at().filter(|_| self.stuck.is_none());
            let polling = self.incomplete
                || self.stuck.is_some()
                || self.health.borrow().unreadable.is_some();
            tokio::select! {
                ev = raw.recv() => {
                    let Some(ev) = ev else { return };
                    self.on_event(ev).await;
                }
                _ = sleep_until(read_at.unwrap_or_else(Instant::now).into()), if read_at.is_some() => {}
                _ = poll.tick(), if polling => self.on_poll().await,
                _ = files_poll.tick(), if self.names_files() => {
                    if !self.on_files_poll().await {
                        return;
                    }
                }
            }
        }
    }

    /// Looks at the path on the blocking pool, and re-arms the watches.
    async fn look(&mut self, force: bool, read: bool) -> Option<Look> {
        if self.stuck.is_some() {
            return None;
        }
        let (watches, path) = (self.watches.clone(), self.path.clone());
        let mut task = tokio::task::spawn_blocking(move || look(&watches, &path, force, read));
        match tokio::time::timeout(LOOK_TIMEOUT, &mut task).await {
            Ok(Ok(look)) => {
                self.lookups.clone_from(&look.lookups);
                self.incomplete = look.incomplete;
                Some(look)
            }
            Ok(Err(e)) => panic!("bug: looking at the state file failed: {e}"),
            Err(_) => {
                self.stuck = Some(task);
                self.unreadable(ReadError::TimedOut(LOOK_TIMEOUT));
                None
            }
        }
    }

    async fn on_event(&mut self, ev: notify::Result<notify::Event>) {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                warn!(error = %e, "state file watch error; polling");
                self.incomplete = true;
                return;
            }
        };
        if !ev.paths.iter().any(|p| lookups::touches(&self.lookups, p)) {
            return;
        }
        // Anything on the path but the file itself (a directory, a symlink) changed: the
        // path may name another file now, through other directories.
        let file = self.lookups.last();
        let structural = ev.paths.iter().any(|p| {
            lookups::touches(&self.lookups, p)
                && file.is_none_or(|f| p.parent() != Some(&f.dir) || p.file_name() != Some(&f.name))
        });
        let Some(look) = self.look(structural, false).await else {
            // Stuck: read when the file system answers again.
            self.debouncer.saw(Instant::now(), Save::Complete, false);
            return;
        };
        if look.stamp.is_none() {
            self.last_stamp = None;
            self.unreadable(ReadError::Missing);
        }
        let save = if look.irregular || structural {
            // A FIFO or device is reported at once, never waited for; and another file
            // may be at the path now.
            Save::Complete
        } else {
            classify(&ev.kind)
        };
        if save == Save::Irrelevant {
            debug!(kind = ?ev.kind, "state file event ignored");
        }
        let already_read =
            save == Save::Complete && look.stamp.is_some() && look.stamp == self.last_stamp;
        self.debouncer.saw(Instant::now(), save, already_read);
    }

    /// The file cannot be read, or a directory is not watched, or a look is stuck: look
    /// again, and read the file if it changed without an event saying so.
    async fn on_poll(&mut self) {
        if let Some(task) = &self.stuck {
            if !task.is_finished() {
                return;
            }
            self.stuck = None;
            self.debouncer.saw(Instant::now(), Save::Complete, false);
            return;
        }
        if let Some(look) = self.look(false, false).await
            && look.stamp != self.last_stamp
        {
            self.debouncer.changed_unseen(Instant::now());
        }
    }

    /// Reads the file as the debouncer asked. Returns false once nobody listens.
    async fn read_now(&mut self) -> bool {
        let Some(look) = self.look(false, true).await else {
            return true; // stuck: read again when it answers
        };
        self.last_stamp = look.stamp;
        let bytes = look.read.expect("bug: a read was asked for");
        let found = match &bytes {
            Ok(b) if b.is_empty() => Found::Empty,
            _ => Found::Other,
        };
        if self.debouncer.read(Instant::now(), found) == Verdict::WaitForRest {
            debug!(path = %self.path.display(), "state file is empty; waiting for the rest of the save");
            return true;
        }
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(e) => {
                self.unreadable(e);
                return true;
            }
        };
        self.readable();
        let Some(event) = report_if_changed(&self.path, &mut self.last_hash, &bytes) else {
            return true;
        };
        let event = match event {
            Parsed::Valid {
                state,
                content_hash,
                seen_at,
            } => {
                self.waiting = None;
                self.with_files(state, content_hash, seen_at).await
            }
            Parsed::Invalid(event) => event,
        };
        self.events.send(event).is_ok()
    }

    /// Does the last state (accepted, or waiting for its files) name any file?
    fn names_files(&self) -> bool {
        let names = |s: &DesiredState| {
            s.services
                .iter()
                .any(|s| s.blue.files().next().is_some() || s.green.files().next().is_some())
        };
        self.waiting.as_ref().is_some_and(|(s, _)| names(s))
            || self.named.as_ref().is_some_and(|(s, _)| names(s))
    }

    /// `state`, accepted with the content of the files it names, or rejected with why one
    /// cannot be read (then it waits for them: see [`Loop::on_files_poll`]).
    async fn with_files(
        &mut self,
        state: Arc<DesiredState>,
        content_hash: String,
        seen_at: tokio::time::Instant,
    ) -> WatchEvent {
        let base = self.path.parent().map(Path::to_owned).unwrap_or_default();
        let read_state = state.clone();
        let task = tokio::task::spawn_blocking(move || Files::read(&read_state, &base));
        let error = match tokio::time::timeout(LOOK_TIMEOUT, task).await {
            Ok(Ok(Ok(files))) => {
                let files = Arc::new(files);
                self.named = Some((state.clone(), files.clone()));
                self.file_errors.clear();
                self.named_unreadable(&[]);
                return WatchEvent::Accepted {
                    state,
                    files,
                    content_hash,
                    seen_at,
                };
            }
            Ok(Ok(Err(problems))) => StateError::Invalid {
                path: self.path.clone(),
                problems,
            },
            Ok(Err(e)) => panic!("bug: reading the state's files failed: {e}"),
            Err(_) => StateError::Unreadable {
                path: self.path.clone(),
                reason: format!(
                    "reading the files it names did not finish within {LOOK_TIMEOUT:?}"
                ),
            },
        };
        self.waiting = Some((state, content_hash.clone()));
        WatchEvent::Rejected {
            error,
            content_hash,
        }
    }

    /// Every [`FILES_POLL`]: a state waiting for its files is tried again; else the files
    /// of the state in force are read again, and reported if any changed. A file that
    /// cannot be read keeps its last content (warned about once). Returns false once
    /// nobody listens.
    async fn on_files_poll(&mut self) -> bool {
        if let Some((state, content_hash)) = self.waiting.take() {
            let event = self
                .with_files(state, content_hash, tokio::time::Instant::now())
                .await;
            // Still unreadable: said already, when the state was rejected.
            return match event {
                WatchEvent::Accepted { .. } => self.events.send(event).is_ok(),
                _ => true,
            };
        }
        let Some((state, files)) = self.named.clone() else {
            return true;
        };
        let read = files.clone();
        let task = tokio::task::spawn_blocking(move || read.reread(&state));
        let Ok(Ok((next, errors))) = tokio::time::timeout(LOOK_TIMEOUT, task).await else {
            warn!(
                "reading the state's files again did not finish in time; keeping their last content"
            );
            return true;
        };
        if errors != self.file_errors {
            for (path, why) in &errors {
                warn!(path = %path.display(), error = %why, "cannot read a file the state names; keeping its last content");
            }
            self.named_unreadable(&errors);
            self.file_errors = errors;
        }
        if next == *files {
            return true;
        }
        let changed = next.changed_from(&files);
        for path in &changed {
            info!(path = %path.display(), "a file the state names changed; serving its new content");
        }
        let next = Arc::new(next);
        if let Some(named) = &mut self.named {
            named.1 = next.clone();
        }
        self.events
            .send(WatchEvent::FilesChanged {
                files: next,
                changed,
            })
            .is_ok()
    }

    /// Tells the health which named files cannot be read now (`errors`), keeping when each
    /// stopped being readable.
    fn named_unreadable(&self, errors: &[(PathBuf, String)]) {
        self.health.send_if_modified(|h| {
            let next: Vec<NamedUnreadable> = errors
                .iter()
                .map(|(path, error)| NamedUnreadable {
                    path: path.clone(),
                    error: error.clone(),
                    since: h
                        .named_unreadable
                        .iter()
                        .find(|u| u.path == *path)
                        .map_or_else(SystemTime::now, |u| u.since),
                })
                .collect();
            let changed = next.len() != h.named_unreadable.len()
                || next
                    .iter()
                    .zip(&h.named_unreadable)
                    .any(|(a, b)| a.path != b.path || a.error != b.error);
            h.named_unreadable = next;
            changed
        });
    }

    fn unreadable(&self, error: ReadError) {
        let path = &self.path;
        self.health.send_if_modified(|h| {
            if h.unreadable.as_ref().is_some_and(|u| u.error == error) {
                return false;
            }
            warn!(path = %path.display(), error = %error, "cannot read the state file; keeping the last good state");
            let since = h.unreadable.as_ref().map_or_else(SystemTime::now, |u| u.since);
            h.unreadable = Some(Unreadable { error, since });
            true
        });
    }

    fn readable(&self) {
        let path = &self.path;
        self.health.send_if_modified(|h| {
            if h.unreadable.take().is_none() {
                return false;
            }
            info!(path = %path.display(), "the state file can be read again");
            true
        });
    }
}

/// Which file, and which version of it: inode, size, modification and change times (a
/// `chmod` changes the last).
type Stamp = (u64, u64, i64, i64, i64, i64);

fn stamp_of(m: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    (
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

/// A new content of the state file, parsed.
enum Parsed {
    /// Valid; its files are still to be read.
    Valid {
        state: Arc<DesiredState>,
        content_hash: String,
        seen_at: tokio::time::Instant,
    },
    /// What to report: a rejection.
    Invalid(WatchEvent),
}

/// What to report for the file's `bytes`: nothing when they are the same as last read,
/// else the new content, valid or rejected.
fn report_if_changed(path: &Path, last_hash: &mut String, bytes: &[u8]) -> Option<Parsed> {
    let content_hash = hash(bytes);
    if content_hash == *last_hash {
        return None;
    }
    last_hash.clone_from(&content_hash);
    let seen_at = tokio::time::Instant::now();
    Some(match super::load_bytes(path, bytes) {
        Ok(state) => Parsed::Valid {
            state: Arc::new(state),
            content_hash,
            seen_at,
        },
        Err(error) => Parsed::Invalid(WatchEvent::Rejected {
            error,
            content_hash,
        }),
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
