//! The audit log (`--audit-log PATH`): every accepted and rejected state and every proxy
//! acknowledgement, one JSON object per line, appended and flushed to disk per record. An
//! [`EventSink`] of the event bus.
//!
//! Writes happen on a dedicated thread fed by a channel, so a slow disk never stalls the
//! control plane; records are written whole and `sync_data`ed before the thread waits for
//! more (records that arrive together share one sync). The file is opened in append mode and never truncated, so it survives
//! restarts.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use tracing::error;

use crate::events::{Event, EventSink};

/// Handle to the audit log writer thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Vec<u8>>,
}

/// The audit log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open audit log {path}: {source}")]
pub struct AuditError {
    path: PathBuf,
    source: std::io::Error,
}

impl AuditLog {
    /// Opens (creating if needed) `path` for appending and starts the writer thread.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| AuditError {
                path: path.to_owned(),
                source,
            })?;
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let path = path.to_owned();
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || write_records(file, &path, rx))
            .map_err(|source| AuditError {
                path: PathBuf::from("(thread)"),
                source,
            })?;
        Ok(AuditLog { tx })
    }
}

impl EventSink for AuditLog {
    /// Queues `event` for the log. Per-type acknowledgements are too fine for it: a
    /// proxy's whole acknowledgement of a state is recorded as [`Event::ProxySynced`].
    fn accept(&self, event: &Event) {
        if matches!(event, Event::ProxyAcked { .. }) {
            return;
        }
        let mut line = serde_json::to_vec(event).expect("bug: events always serialize");
        line.push(b'\n');
        // The thread only stops when every handle is gone.
        let _ = self.tx.send(line);
    }
}

/// Writes each record as it comes. Records that arrived together are written back to back
/// and synced once (group commit): each is on disk before the writer waits again.
fn write_records(mut file: File, path: &Path, rx: mpsc::Receiver<Vec<u8>>) {
    while let Ok(first) = rx.recv() {
        let mut batch = first;
        while let Ok(more) = rx.try_recv() {
            batch.extend_from_slice(&more);
        }
        let result = file.write_all(&batch).and_then(|()| file.sync_data());
        if let Err(e) = result {
            error!(path = %path.display(), error = %e, "cannot write the audit log");
        }
    }
}
