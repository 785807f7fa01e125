//! The state file watcher can neither hang nor go deaf: whatever appears at the path (a
//! FIFO, a device, a directory, a huge file) is refused without blocking or reading it,
//! with the reason in the watcher's health and the last good state in force; and saves keep
//! being seen when the directories on the path are deleted, replaced or swapped.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use switchyard::state::watch::{FileHealth, ReadError, StateWatcher, WatchEvent};
use tokio::sync::mpsc;

use super::state_watch::{nothing_within, start, state, two_services};

/// The next event within 2 s: `COLOR xN` (the first service's active color, N services),
/// or `rejected: ...`.
async fn next(rx: &mut mpsc::UnboundedReceiver<WatchEvent>) -> String {
    match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
        Ok(Some(WatchEvent::Accepted { state, .. })) => {
            format!("{} x{}", state.services[0].active, state.services.len())
        }
        Ok(Some(WatchEvent::Rejected { error, .. })) => format!("rejected: {error}"),
        Ok(Some(WatchEvent::FilesChanged { .. })) => "files changed".into(),
        Ok(None) => "closed".into(),
        Err(_) => "nothing".into(),
    }
}

/// The watcher's health once `ok` holds, within 2 s.
async fn health_until(w: &StateWatcher, ok: impl FnMut(&FileHealth) -> bool) -> FileHealth {
    let mut rx = w.health();
    let got = match tokio::time::timeout(Duration::from_secs(2), rx.wait_for(ok)).await {
        Ok(Ok(h)) => Some(h.clone()),
        _ => None,
    };
    got.unwrap_or_else(|| panic!("health never got there: {:?}", *rx.borrow()))
}

async fn unreadable_because(w: &StateWatcher) -> ReadError {
    let h = health_until(w, |h| h.unreadable.is_some()).await;
    h.unreadable.unwrap().error
}

async fn readable(w: &StateWatcher) {
    health_until(w, |h| h.unreadable.is_none()).await;
}

fn save_by_rename(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

#[tokio::test]
async fn a_fifo_at_the_path_is_refused_and_later_saves_still_apply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, state("blue")).unwrap();
    let (w, mut rx) = start(&path);
    std::fs::remove_file(&path).unwrap();
    mkfifo(&path);
    let error = unreadable_because(&w).await;
    assert_eq!(error.to_string(), "is a FIFO, not a regular file");
    assert!(
        nothing_within(&mut rx, Duration::from_millis(200)).await,
        "the last good state stays"
    );
    save_by_rename(&path, &state("green"));
    assert_eq!(next(&mut rx).await, "green x1");
    readable(&w).await;
}

#[tokio::test]
async fn a_fifo_renamed_over_the_file_is_refused_and_later_saves_still_apply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, state("blue")).unwrap();
    let (w, mut rx) = start(&path);
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    std::fs::rename(&fifo, &path).unwrap();
    assert_eq!(
        unreadable_because(&w).await,
        ReadError::NotRegular { what: "a FIFO" }
    );
    save_by_rename(&path, &state("green"));
    assert_eq!(next(&mut rx).await, "green x1");
    readable(&w).await;
}

#[tokio::test]
async fn dev_zero_symlinked_into_place_is_refused_at_once_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, state("blue")).unwrap();
    let (w, mut rx) = start(&path);
    let tmp = dir.path().join("tmp");
    symlink("/dev/zero", &tmp).unwrap();
    let t0 = Instant::now();
    std::fs::rename(&tmp, &path).unwrap();
    // Refused by its type, before any byte is read: reading /dev/zero to the limit and
    // beyond would take far longer (and gigabytes, before the fix).
    assert_eq!(
        unreadable_because(&w).await.to_string(),
        "is a character device, not a regular file"
    );
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    assert!(nothing_within(&mut rx, Duration::from_millis(200)).await);
    save_by_rename(&path, &state("green"));
    assert_eq!(next(&mut rx).await, "green x1");
}

#[tokio::test]
async fn a_2_gib_sparse_file_is_refused_by_its_size_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, state("blue")).unwrap();
    let (w, mut rx) = start(&path);
    let tmp = dir.path().join("tmp");
    std::fs::File::create(&tmp)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert_eq!(
        unreadable_because(&w).await.to_string(),
        "is 2147483648 bytes; the limit is 16777216 bytes"
    );
    assert!(nothing_within(&mut rx, Duration::from_millis(200)).await);
    save_by_rename(&path, &state("green"));
    assert_eq!(next(&mut rx).await, "green x1");
}

#[tokio::test]
async fn a_directory_at_the_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, state("blue")).unwrap();
    let (w, _rx) = start(&path);
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    assert_eq!(
        unreadable_because(&w).await.to_string(),
        "is a directory, not a regular file"
    );
}

#[tokio::test]
async fn a_deleted_file_is_reported_missing_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, state("blue")).unwrap();
    let (w, mut rx) = start(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(unreadable_because(&w).await, ReadError::Missing);
    std::fs::write(&path, state("green")).unwrap();
    assert_eq!(next(&mut rx).await, "green x1");
    readable(&w).await;
}

#[tokio::test]
async fn the_directory_deleted_and_recreated_keeps_working() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cfg");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("state.yaml");
    std::fs::write(&path, state("blue")).unwrap();
    let (w, mut rx) = start(&path);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(unreadable_because(&w).await, ReadError::Missing);
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(&path, state("green")).unwrap();
    assert_eq!(next(&mut rx).await, "green x1");
    // And the next save too: the new directory is watched.
    std::fs::write(&path, state("blue")).unwrap();
    assert_eq!(next(&mut rx).await, "blue x1");
    readable(&w).await;
}

#[tokio::test]
async fn the_directory_renamed_away_and_replaced_keeps_working() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cfg");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("state.yaml");
    std::fs::write(&path, state("blue")).unwrap();
    let (_w, mut rx) = start(&path);
    let old = root.path().join("cfg.old");
    std::fs::rename(&dir, &old).unwrap();
    std::fs::create_dir(&dir).unwrap();
    save_by_rename(&path, &state("green"));
    assert_eq!(next(&mut rx).await, "green x1");
    // The old directory is not the state file's any more.
    std::fs::write(old.join("state.yaml"), state("blue")).unwrap();
    assert!(nothing_within(&mut rx, Duration::from_millis(300)).await);
    std::fs::write(&path, state("blue")).unwrap();
    assert_eq!(next(&mut rx).await, "blue x1");
}

#[tokio::test]
async fn a_current_symlink_swapped_to_another_release_keeps_working() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for (n, color) in [(1, "blue"), (2, "green")] {
        std::fs::create_dir_all(r.join(format!("releases/{n}"))).unwrap();
        std::fs::write(r.join(format!("releases/{n}/state.yaml")), state(color)).unwrap();
    }
    symlink("releases/1", r.join("current")).unwrap();
    let path = r.join("current/state.yaml");
    let (_w, mut rx) = start(&path);
    // Deploy release 2: a new symlink renamed over `current`.
    symlink("releases/2", r.join("current.tmp")).unwrap();
    std::fs::rename(r.join("current.tmp"), r.join("current")).unwrap();
    assert_eq!(next(&mut rx).await, "green x1");
    // Saves in the new release's directory are seen; the old one's are not.
    std::fs::write(r.join("releases/1/state.yaml"), two_services("blue")).unwrap();
    assert!(nothing_within(&mut rx, Duration::from_millis(300)).await);
    std::fs::write(r.join("releases/2/state.yaml"), state("blue")).unwrap();
    assert_eq!(next(&mut rx).await, "blue x1");
}

#[tokio::test]
async fn a_state_file_symlinked_into_another_directory_sees_saves_there() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    std::fs::write(b.join("real.yaml"), state("blue")).unwrap();
    symlink(b.join("real.yaml"), a.join("state.yaml")).unwrap();
    let (_w, mut rx) = start(&a.join("state.yaml"));
    std::fs::write(b.join("real.yaml"), state("green")).unwrap();
    assert_eq!(next(&mut rx).await, "green x1", "in place");
    save_by_rename(&b.join("real.yaml"), &state("blue"));
    assert_eq!(next(&mut rx).await, "blue x1", "by rename");
}

#[tokio::test]
async fn a_writer_pausing_over_a_second_mid_save_is_applied_only_when_it_closes() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, two_services("blue")).unwrap();
    let (_w, mut rx) = start(&path);
    let (full, half) = (two_services("green"), state("green"));
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(half.as_bytes()).unwrap();
    // Longer than `--debounce-max-ms` (1 s): the prefix, a valid file, must not be applied.
    assert!(
        nothing_within(&mut rx, Duration::from_millis(1500)).await,
        "read while its writer still had it open"
    );
    f.write_all(&full.as_bytes()[half.len()..]).unwrap();
    drop(f);
    assert_eq!(next(&mut rx).await, "green x2");
    assert!(nothing_within(&mut rx, Duration::from_millis(300)).await);
}

/// The whole server: a FIFO at the path used to hang it (`/healthz` silent, SIGTERM
/// ignored). Now it answers, says why in `/readyz`, `/status` and `/metrics`, keeps the
/// last good state, applies the next save and stops cleanly.
#[tokio::test]
async fn a_fifo_at_the_path_leaves_the_server_answering_with_a_visible_warning() {
    use crate::common::control_plane::{ControlPlane, metric, one_service};
    let (blue, green) = (
        "127.0.0.1:8081".parse().unwrap(),
        "127.0.0.1:8082".parse().unwrap(),
    );
    let cp = ControlPlane::start(&one_service(10000, blue, green, "blue")).await;
    std::fs::remove_file(cp.state_path()).unwrap();
    mkfifo(cp.state_path());

    assert_eventually!(
        Duration::from_secs(3),
        cp.admin_get("/readyz").await.1.contains("warning")
    );
    let (code, body) = cp.admin_get("/readyz").await;
    assert_eq!(code, 200, "still serving the last good state: {body}");
    assert!(body.starts_with("ready: state "), "{body}");
    assert!(
        body.contains(&format!(
            "warning: cannot read {}: is a FIFO, not a regular file (since ",
            cp.state_path().display()
        )),
        "{body}"
    );
    assert_eq!(cp.admin_get("/healthz").await.0, 200);
    let status = cp.status().await;
    assert_eq!(status["watch"]["healthy"], false, "{status}");
    assert_eq!(status["watch"]["error"], "is a FIFO, not a regular file");
    assert_eq!(status["watch"]["reason"], "not_regular_file");
    assert_eq!(status["state"]["services"][0]["active"], "blue");
    let (_, metrics) = cp.admin_get("/metrics").await;
    assert_eq!(
        metric(&metrics, "switchyard_state_file_readable"),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "switchyard_state_file_unreadable{reason=\"not_regular_file\"}"
        ),
        Some(1.0),
        "{metrics}"
    );

    cp.save_by_rename(&one_service(10000, blue, green, "green"));
    assert_eventually!(
        Duration::from_secs(3),
        cp.status().await["state"]["services"][0]["active"] == "green"
    );
    let status = cp.status().await;
    assert_eq!(status["watch"]["healthy"], true, "{status}");
    assert_eq!(status["watch"]["error"], serde_json::Value::Null);
    assert!(!cp.admin_get("/readyz").await.1.contains("warning"));
    let (_, metrics) = cp.admin_get("/metrics").await;
    assert_eq!(
        metric(&metrics, "switchyard_state_file_readable"),
        Some(1.0)
    );
    tokio::time::timeout(Duration::from_secs(5), cp.stop())
        .await
        .expect("the server stops on request");
}
