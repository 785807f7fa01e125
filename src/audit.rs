//! The audit log (`--audit-log PATH`): every accepted and rejected state, every proxy
//! acknowledgement, and every decision the rollout makes by itself (a gate holding or
//! passing, a switch given up or held by the schema guard, an automatic rollback with what
//! tripped it), one JSON object per line, appended and flushed to disk per record. An
//! [`EventSink`] of the event bus.
//!
//! Writes happen on a dedicated thread fed by a bounded queue ([`QUEUE_CAPACITY`]
//! records), so a slow disk never stalls the control plane and never grows its memory:
//! when the queue is full the record is dropped, counted
//! (`switchyard_audit_records_dropped_total`), and the log itself says so as soon as the
//! writer catches up, with a line `{"event":"audit_records_dropped","at":...,"count":N}`.
//! No loss is silent, and emitters (the pipeline, every ADS stream) never wait on the
//! disk. Records are written whole and `sync_data`ed before the thread waits for more
//! (records that arrive together share one sync). The file is opened in append mode and
//! never truncated, so it survives restarts.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::SystemTime;

use tracing::error;

use crate::events::{Event, EventSink};
use crate::metrics::Metrics;

/// Records queued for the writer at most: a switch acknowledged by 10,000 proxies at once
/// fits, in a few MiB of small `proxy_synced` lines.
pub const QUEUE_CAPACITY: usize = 16_384;

/// Handle to the audit log writer thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    /// Bounded, so a writer stuck on the disk holds at most `capacity` records.
    tx: mpsc::SyncSender<Vec<u8>>,
    /// Records dropped since the writer last said so in the log: set by emitters, taken
    /// (swapped to 0) by the writer.
    dropped: Arc<AtomicU64>,
    metrics: Metrics,
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
    pub fn open(path: &Path, metrics: Metrics) -> Result<AuditLog, AuditError> {
        AuditLog::with_capacity(path, QUEUE_CAPACITY, metrics)
    }

    /// [`AuditLog::open`] with a queue of `capacity` records.
    pub fn with_capacity(
        path: &Path,
        capacity: usize,
        metrics: Metrics,
    ) -> Result<AuditLog, AuditError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| AuditError {
                path: path.to_owned(),
                source,
            })?;
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            file,
            path: path.to_owned(),
            dropped: dropped.clone(),
        };
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| AuditError {
                path: PathBuf::from("(thread)"),
                source,
            })?;
        Ok(AuditLog {
            tx,
            dropped,
            metrics,
        })
    }
}

impl EventSink for AuditLog {
    /// Queues `event` for the log, or counts it dropped when the queue is full. Per-type
    /// acknowledgements are too fine for it: a proxy's whole acknowledgement of a state is
    /// recorded as [`Event::ProxySynced`].
    fn accept(&self, event: &Event) {
        if matches!(event, Event::ProxyAcked { .. }) {
            return;
        }
        let mut line = serde_json::to_vec(event).expect("bug: events always serialize");
        line.push(b'\n');
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.metrics.audit_record_dropped();
            }
            // The thread only stops when every handle is gone.
            Err(mpsc::TrySendError::Disconnected(_)) => {}
        }
    }
}

/// The writer thread's side.
struct Writer {
    file: File,
    path: PathBuf,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    /// Writes each record as it comes. Records that arrived together are written back to
    /// back and synced once (group commit): each is on disk before the writer waits again.
    /// Drops (the queue was full) are only possible while records wait, so the line that
    /// counts them follows the batch they were dropped beside, and the last at exit.
    fn run(mut self, rx: mpsc::Receiver<Vec<u8>>) {
        while let Ok(first) = rx.recv() {
            let mut batch = first;
            while let Ok(more) = rx.try_recv() {
                batch.extend_from_slice(&more);
            }
            self.push_dropped(&mut batch);
            self.write(&batch);
        }
        let mut last = Vec::new();
        self.push_dropped(&mut last);
        if !last.is_empty() {
            self.write(&last);
        }
    }

    /// Appends to `batch` the line saying how many records were dropped since the last
    /// such line, if any were.
    fn push_dropped(&self, batch: &mut Vec<u8>) {
        let count = self.dropped.swap(0, Ordering::Relaxed);
        if count == 0 {
            return;
        }
        error!(
            path = %self.path.display(),
            count,
            "the audit log fell behind (slow disk?): records dropped"
        );
        let line = serde_json::json!({
            "event": "audit_records_dropped",
            "at": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            "count": count,
        });
        serde_json::to_writer(&mut *batch, &line).expect("bug: JSON values always serialize");
        batch.push(b'\n');
    }

    fn write(&mut self, batch: &[u8]) {
        let result = self
            .file
            .write_all(batch)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = result {
            error!(path = %self.path.display(), error = %e, "cannot write the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn synced(i: u64) -> Event {
        Event::ProxySynced {
            at: SystemTime::now(),
            node_id: format!("envoy-{i}"),
            stream_id: i,
            state_version: "v1".into(),
        }
    }

    /// A disk that cannot keep up: the log is a FIFO whose reader reads nothing until told,
    /// so the writer blocks once the pipe's buffer (64 KiB) is full.
    #[test]
    fn a_writer_that_cannot_keep_up_drops_records_and_counts_them_in_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.fifo");
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        assert!(made.unwrap().success(), "mkfifo");
        let (go, wait) = mpsc::channel::<()>();
        let reader = {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut fifo = File::open(&path).unwrap();
                wait.recv().unwrap();
                let mut text = String::new();
                fifo.read_to_string(&mut text).unwrap();
                text
            })
        };
        let metrics = Metrics::new();
        let log = AuditLog::with_capacity(&path, 8, metrics.clone()).unwrap();
        const EMITTED: u64 = 20_000;
        for i in 0..EMITTED {
            log.accept(&synced(i));
        }
        let dropped_metric: u64 = metrics
            .encode()
            .lines()
            .find_map(|l| {
                l.strip_prefix("switchyard_audit_records_dropped_total ")?
                    .parse()
                    .ok()
            })
            .expect("the dropped counter is exported");
        go.send(()).unwrap();
        // The writer ends (closing the pipe) once every handle is gone and it has caught up.
        drop(log);
        let text = reader.join().unwrap();

        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let written = lines
            .iter()
            .filter(|l| l["event"] == "proxy_synced")
            .count() as u64;
        let counted: u64 = lines
            .iter()
            .filter(|l| l["event"] == "audit_records_dropped")
            .map(|l| {
                assert!(l["at"].is_string(), "{l}");
                l["count"].as_u64().unwrap()
            })
            .sum();
        // No silent loss: every record is in the log or counted there as dropped...
        assert_eq!(
            written + counted,
            EMITTED,
            "written {written}, dropped {counted}"
        );
        assert_eq!(counted, dropped_metric);
        // ... and what waited was bounded: the queue (8) plus what the pipe took.
        assert!(written < 1_000, "{written} records were buffered");
        assert!(
            lines
                .iter()
                .all(|l| l["event"] == "proxy_synced" || l["event"] == "audit_records_dropped")
        );
    }
}
