//! Test harness shared by the integration tests: a real Envoy, real HTTP
//! backends on loopback, a small HTTP client, and polling helpers.
//!
//! The integration tests (`tests/integration/`) use it as `crate::common`; the demo and the
//! benches include it with `#[path]`.
//!
//! - [`tools`]: finds or provisions the Envoy and grpcurl binaries.
//! - [`chromium`]: a headless Chromium (installed from Debian's packages on first use),
//!   driven over the DevTools protocol.
//! - [`envoy`]: an Envoy process guard rendered from `envoy/bootstrap.yaml`.
//! - [`backend`]: an HTTP/1.1 + h2c server answering with its color and version.
//! - [`http`]: a one-request-per-connection HTTP/1.1 client.
//! - [`eventually`] and [`assert_eventually!`](crate::assert_eventually):
//!   poll a condition with a deadline instead of sleeping.
#![allow(dead_code, unused_imports, unused_macros)]

pub mod backend;
pub mod chromium;
pub mod control_plane;
pub mod envoy;
pub mod http;
pub mod load;
pub mod tls;
pub mod tools;

use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

/// How often [`eventually`] re-evaluates its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A loopback TCP port that was free a moment ago.
///
/// The port is released before returning, so another process may grab it;
/// prefer binding port 0 and asking the listener for its address when the
/// code under test allows it.
///
/// Envoy binds its listeners with SO_REUSEPORT, so two tests (or a test and the
/// walkthrough example it runs) handed the same port would silently share a listener
/// and answer each other's requests. So the ports come from 10000-29999, below the
/// kernel's ephemeral range (where `bind(0)` picks, for every server the tests start on
/// port 0), walking from an offset drawn from the process id and the time, never the same
/// port twice in a process, and each one checked free by binding it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 20_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let seed = std::process::id().wrapping_mul(2_654_435_761) ^ nanos;
        let _ = NEXT.compare_exchange(u32::MAX, seed % SPAN, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..SPAN {
        let port = FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        let port = u16::try_from(port).expect("below 30000");
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}-{}", FIRST + SPAN - 1)
}

/// Evaluates `condition` every [`POLL_INTERVAL`] until it returns `true`
/// (then returns `true`) or `timeout` has elapsed (then returns `false`).
///
/// The condition is always evaluated at least once, and once more after the
/// deadline, so a slow last evaluation is not wasted.
pub async fn eventually(timeout: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Asserts that a condition becomes true within a timeout, re-evaluating it
/// every [`POLL_INTERVAL`](crate::common::POLL_INTERVAL). Use it in async
/// tests instead of sleeping.
///
/// The condition is a `bool` expression that may contain `.await`; it is
/// re-evaluated from scratch on every poll:
///
/// ```ignore
/// assert_eventually!(Duration::from_secs(5), envoy.stat("cluster_manager.active_clusters").await == Some(3));
/// assert_eventually!(Duration::from_secs(5), get(addr, "/", "x").await.is_ok_and(|(s, _)| s == 200),
///     "envoy never routed to {addr}");
/// ```
#[macro_export]
macro_rules! assert_eventually {
    ($timeout:expr, $cond:expr $(,)?) => {{
        let timeout: ::std::time::Duration = $timeout;
        if !$crate::common::eventually(timeout, async || $cond).await {
            panic!(
                "condition not true within {:?}: {}",
                timeout,
                stringify!($cond)
            );
        }
    }};
    ($timeout:expr, $cond:expr, $($arg:tt)+) => {{
        let timeout: ::std::time::Duration = $timeout;
        if !$crate::common::eventually(timeout, async || $cond).await {
            panic!(
                "condition not true within {:?}: {}: {}",
                timeout,
                stringify!($cond),
                format_args!($($arg)+)
            );
        }
    }};
}

/// Runs example `name` as `cargo test` built it (from the crate's root) and returns its
/// stdout; fails with its stdout and stderr if it did not succeed.
pub fn run_built_example(name: &str) -> String {
    // target/<profile>/deps/integration-HASH -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let example = profile_dir.join("examples").join(name);
    assert!(
        example.exists(),
        "{} is missing: `cargo test` builds the examples",
        example.display()
    );
    let out = std::process::Command::new(&example)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("run the {name} example: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the {name} example failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
