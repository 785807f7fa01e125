//! The state file watcher sees every way of saving a file, and nothing else.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use switchyard::state::watch::{self, Debounce, StateWatcher, WatchEvent};
use tokio::sync::mpsc;

pub(crate) fn state(active: &str) -> String {
    format!(
        "listeners:
  - {{ name: public, address: 127.0.0.1, port: 10000 }}
services:
  - name: summarizer
    listener: public
    blue: {{ endpoints: [\"127.0.0.1:8081\"] }}
    green: {{ endpoints: [\"127.0.0.1:8082\"] }}
    active: {active}
"
    )
}

pub(crate) fn start(path: &Path) -> (StateWatcher, mpsc::UnboundedReceiver<WatchEvent>) {
    let initial = std::fs::read(path).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let w = watch::spawn(path, &initial, None, Debounce::default(), tx).expect("watch starts");
    (w, rx)
}

/// The next event within 2 s, as the active color it carries (or `rejected`).
async fn next(rx: &mut mpsc::UnboundedReceiver<WatchEvent>) -> String {
    match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
        Ok(Some(WatchEvent::Accepted { state, .. })) => state.services[0].active.to_string(),
        Ok(Some(WatchEvent::Rejected { error, .. })) => format!("rejected: {error}"),
        Ok(Some(WatchEvent::FilesChanged { .. })) => "files changed".into(),
        Ok(None) => "closed".into(),
        Err(_) => "nothing".into(),
    }
}

pub(crate) async fn nothing_within(
    rx: &mut mpsc::UnboundedReceiver<WatchEvent>,
    d: Duration,
) -> bool {
    tokio::time::timeout(d, rx.recv()).await.is_err()
}

#[tokio::test]
async fn in_place_write_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, state("blue")).unwrap();
    let (_w, mut rx) = start(&path);
    std::fs::write(&path, state("green")).unwrap();
    assert_eq!(next(&mut rx).await, "green");
}

#[tokio::test]
async fn rename_over_state_file_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, state("blue")).unwrap();
    let (_w, mut rx) = start(&path);
    let tmp = dir.path().join("state.yaml~");
    std::fs::write(&tmp, state("green")).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert_eq!(next(&mut rx).await, "green");
}

#[tokio::test]
async fn delete_and_recreate_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, state("blue")).unwrap();
    let (_w, mut rx) = start(&path);
    std::fs::remove_file(&path).unwrap();
    assert!(
        nothing_within(&mut rx, Duration::from_millis(200)).await,
        "a removal is not a change"
    );
    std::fs::write(&path, state("green")).unwrap();
    assert_eq!(next(&mut rx).await, "green");
}

#[tokio::test]
async fn configmap_symlink_swap_is_seen() {
    // Kubernetes mounts a ConfigMap as: state.yaml -> ..data/state.yaml,
    // ..data -> ..2026_11_26_10_00_00.1 (a timestamped directory), and updates it by
    // writing a new directory, pointing ..data_tmp at it, and renaming ..data_tmp over ..data.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("..v1")).unwrap();
    std::fs::write(d.join("..v1/state.yaml"), state("blue")).unwrap();
    symlink("..v1", d.join("..data")).unwrap();
    symlink("..data/state.yaml", d.join("state.yaml")).unwrap();
    let path = d.join("state.yaml");
    let (_w, mut rx) = start(&path);

    std::fs::create_dir(d.join("..v2")).unwrap();
    std::fs::write(d.join("..v2/state.yaml"), state("green")).unwrap();
    symlink("..v2", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    std::fs::remove_dir_all(d.join("..v1")).unwrap();
    assert_eq!(next(&mut rx).await, "green");
}

#[tokio::test]
async fn unrelated_files_in_the_directory_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, state("blue")).unwrap();
    let (_w, mut rx) = start(&path);
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    std::fs::write(dir.path().join("other.yaml"), state("green")).unwrap();
    assert!(nothing_within(&mut rx, Duration::from_millis(400)).await);
}

#[tokio::test]
async fn same_content_saved_again_is_not_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, state("blue")).unwrap();
    let (_w, mut rx) = start(&path);
    std::fs::write(&path, state("blue")).unwrap();
    assert!(nothing_within(&mut rx, Duration::from_millis(400)).await);
}

#[tokio::test]
async fn invalid_save_is_reported_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, state("blue")).unwrap();
    let (_w, mut rx) = start(&path);
    std::fs::write(&path, state("teal")).unwrap();
    let got = next(&mut rx).await;
    assert!(got.starts_with("rejected: "), "{got}");
    assert!(
        got.ends_with("state.yaml:8:13: active must be `blue` or `green`, not `teal`"),
        "{got}"
    );
}

/// Two services; cut after the first, it is still a valid file.
pub(crate) fn two_services(active: &str) -> String {
    format!(
        "{}  - name: second
    listener: public
    domains: [\"second.example\"]
    blue: {{ endpoints: [\"127.0.0.1:9081\"] }}
    green: {{ endpoints: [\"127.0.0.1:9082\"] }}
    active: {active}
",
        state(active)
    )
}

#[tokio::test]
async fn half_written_file_is_not_applied_while_the_writer_is_still_writing() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, state("blue")).unwrap();
    let (_w, mut rx) = start(&path);

    let full = two_services("green");
    let half = state("green");
    assert!(full.starts_with(&half) && switchyard::state::parse_str(&half).is_ok());
    // Truncate and write the first half, which parses on its own; pause (shorter than the
    // quiet period) as a slow writer would; then the rest, then close.
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(half.as_bytes()).unwrap();
    f.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(40)).await;
    f.write_all(&full.as_bytes()[half.len()..]).unwrap();
    drop(f);

    match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
        Ok(Some(WatchEvent::Accepted { state, .. })) => {
            assert_eq!(state.services.len(), 2, "the half-written file was applied")
        }
        other => panic!("expected the complete file, got {other:?}"),
    }
    assert!(nothing_within(&mut rx, Duration::from_millis(300)).await);
}

#[tokio::test]
async fn fifty_saves_within_100ms_are_coalesced_and_the_last_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, state("blue")).unwrap();
    let (_w, mut rx) = start(&path);
    let colors = ["green", "blue"];
    for i in 0..50 {
        // Distinct content each time: the color flips and the port moves.
        let text = state(colors[i % 2]).replace("port: 10000", &format!("port: {}", 10000 + i));
        let tmp = dir.path().join(format!(".state.{i}"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut seen = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        match ev {
            WatchEvent::Accepted { state, .. } => seen.push(state.listeners[0].port),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen.last(), Some(&10049), "the last save wins: {seen:?}");
    assert!(
        seen.len() <= 15,
        "{} versions for 50 saves: {seen:?}",
        seen.len()
    );
}

#[tokio::test]
async fn save_before_the_watch_starts_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, state("blue")).unwrap();
    let initial = std::fs::read(&path).unwrap();
    // Saved after the server loaded the file but before the watcher was set up.
    std::fs::write(&path, state("green")).unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _w = watch::spawn(&path, &initial, None, Debounce::default(), tx).unwrap();
    assert_eq!(next(&mut rx).await, "green");
}

#[tokio::test]
async fn a_save_caught_between_truncate_and_write_is_not_rejected() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, state("blue")).unwrap();
    let (_w, mut rx) = start(&path);
    // Truncated and closed (a complete save, as far as events go), then written 40 ms later.
    drop(std::fs::File::create(&path).unwrap());
    tokio::time::sleep(Duration::from_millis(40)).await;
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all(state("green").as_bytes()).unwrap();
    drop(f);
    assert_eq!(next(&mut rx).await, "green");
    assert!(nothing_within(&mut rx, Duration::from_millis(300)).await);
}

#[tokio::test]
async fn a_file_left_empty_is_rejected_after_the_longest_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(&path, state("blue")).unwrap();
    let initial = std::fs::read(&path).unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let debounce = Debounce {
        quiet: Duration::from_millis(50),
        max_wait: Duration::from_millis(300),
        ..Debounce::default()
    };
    let _w = watch::spawn(&path, &initial, None, debounce, tx).unwrap();
    std::fs::write(&path, "").unwrap();
    let got = next(&mut rx).await;
    assert!(
        got.starts_with("rejected: ") && got.contains("empty"),
        "{got}"
    );
}
