//! Zero downtime, proven against real Envoys: continuous keep-alive load while the state
//! file flips blue <-> green 100 times at random gaps of 10-200 ms (some faster than the
//! debounce). Not one request may fail, and after the last flip every request reaches the
//! final color within 1 s. Every Envoy reports its load (LRS); one run also gates and bakes
//! every switch, one has each color in two localities with failover on (outlier detection,
//! health checks, retries), and one rolls every switch out in two waves (one per zone, each
//! with its own Envoy) with the same localities. Every scenario runs against Envoys speaking each ADS variant
//! (SotW and delta).

use std::time::Duration;

use std::net::SocketAddr;

use crate::common::backend::Backend;
use crate::common::control_plane::BlueGreen;
use crate::common::envoy::Xds;
use crate::common::load::{Load, Protocol, Report};

crate::both_protocols!(
    hundred_flips_under_http1_keepalive_load_drop_nothing,
    hundred_flips_under_http2_load_drop_nothing,
    hundred_flips_through_five_envoys_drop_nothing,
    hundred_gated_and_baked_flips_drop_nothing,
    hundred_flips_between_colors_in_two_localities_with_failover_on_drop_nothing,
    hundred_flips_rolled_out_in_two_waves_of_envoys_in_two_zones_drop_nothing,
);

const FLIPS: usize = 100;
const HOST: &str = "summarizer.example";

/// A small deterministic generator (xorshift), so a failing run can be replayed.
struct Gaps(u64);

impl Gaps {
    /// The next gap, uniform in 10..=200 ms.
    fn next(&mut self) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(10 + self.0 % 191)
    }
}

/// Runs the flip scenario through `envoys` Envoys speaking `xds` and sharing one listener
/// port, with `keys` added to the service (workflow keys, indented as service keys).
async fn flip_under_load(
    xds: Xds,
    protocol: Protocol,
    envoys: usize,
    seed: u64,
    keys: &str,
) -> (Report, String) {
    flip_edited_under_load(xds, protocol, envoys, seed, keys, &[], |_, state| state).await
}

/// [`flip_under_load`], each saved state passed through `edit` (given the scene) first;
/// Envoy `i` is in zone `zones[i % zones.len()]` of region `r` (none when `zones` is empty).
async fn flip_edited_under_load(
    xds: Xds,
    protocol: Protocol,
    envoys: usize,
    seed: u64,
    keys: &str,
    zones: &[&str],
    edit: impl Fn(&BlueGreen, String) -> String,
) -> (Report, String) {
    let scene = BlueGreen::start().await;
    let (cp, listener) = (&scene.cp, scene.listener);
    let state = |active: &str| {
        let state = scene.state(active).replace(
            &format!("    active: {active}\n"),
            &format!("    active: {active}\n{keys}"),
        );
        edit(&scene, state)
    };
    cp.save_by_rename(&state("blue"));
    // Envoy binds listeners with SO_REUSEPORT: every proxy binds the same port and the
    // kernel spreads the load client's connections over them.
    let mut proxies = Vec::new();
    for i in 0..envoys {
        let mut envoy =
            crate::common::envoy::Envoy::builder(&format!("flip-{i}"), cp.xds_addr()).xds(xds);
        if !zones.is_empty() {
            let zone = zones[i % zones.len()];
            envoy = envoy.locality("r", zone);
        }
        let envoy = envoy.start().await;
        envoy.wait_live(Duration::from_secs(20)).await;
        proxies.push(envoy);
    }
    assert_eventually!(
        Duration::from_secs(5),
        crate::common::http::get(listener, "/", HOST)
            .await
            .is_ok_and(|(s, b)| s == 200 && b.starts_with("blue"))
    );

    let load = Load::start(listener, HOST, "/v1/summarize", protocol, 16).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut gaps = Gaps(seed);
    let mut active = "blue";
    let mut last_flip = load.elapsed();
    for i in 0..FLIPS {
        active = if active == "blue" { "green" } else { "blue" };
        // Alternate the two ways editors save: rename over, and write in place.
        if i % 2 == 0 {
            cp.save_by_rename(&state(active));
        } else {
            cp.save_in_place(&state(active));
        }
        last_flip = load.elapsed();
        tokio::time::sleep(gaps.next()).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = load.stop().await;

    let wrong = report.wrong_color_after(last_flip + Duration::from_secs(1), active);
    assert!(
        wrong.is_empty(),
        "{} requests sent more than 1 s after the last flip reached the wrong color (want {active}); first: {:?}",
        wrong.len(),
        wrong.first()
    );
    // Every proxy ended on the final routes.
    let status = cp.status().await;
    let routes = &status["state"]["resource_versions"]["routes"];
    for p in status["proxies"].as_array().unwrap() {
        assert_eq!(&p["routes"]["acked"]["version"], routes, "{p}");
        assert_eq!(p["protocol"], xds.name(), "{p}");
    }
    drop(proxies);
    (report, active.to_owned())
}

/// Nothing failed, and both colors served (the flips really happened).
fn assert_nothing_dropped(report: &Report) {
    report.assert_nothing_dropped();
    assert!(
        report.by_color("blue") > 0 && report.by_color("green") > 0,
        "{}",
        report.summary()
    );
}

async fn hundred_flips_under_http1_keepalive_load_drop_nothing(xds: Xds) {
    let (report, _) = flip_under_load(xds, Protocol::Http1, 1, 0x5eed_0001, "").await;
    assert_nothing_dropped(&report);
}

async fn hundred_flips_under_http2_load_drop_nothing(xds: Xds) {
    let (report, _) = flip_under_load(xds, Protocol::Http2, 1, 0x5eed_0002, "").await;
    assert_nothing_dropped(&report);
}

async fn hundred_flips_through_five_envoys_drop_nothing(xds: Xds) {
    let (report, _) = flip_under_load(xds, Protocol::Http1, 5, 0x5eed_0005, "").await;
    assert_nothing_dropped(&report);
}

async fn hundred_gated_and_baked_flips_drop_nothing(xds: Xds) {
    // Each switch waits for its gate (one passing probe, every 100 ms) and is baked
    // against the load reports; a flip back while the gate waits cancels the switch.
    let keys = "    gate:\n      interval: 100ms\n      successes: 1\n    bake:\n      window: 1m\n      max_error_ratio: 0.01\n      min_requests: 10\n";
    let (report, _) = flip_under_load(xds, Protocol::Http1, 2, 0x5eed_0006, keys).await;
    assert_nothing_dropped(&report);
}

/// Each color in two localities: its backend in zone A (priority 0) and a standby in zone
/// B (priority 1), with outlier detection and, when `health_check`, active health checks.
struct TwoLocalities {
    standby_blue: Backend,
    standby_green: Backend,
    health_check: bool,
}

impl TwoLocalities {
    fn start(health_check: bool) -> TwoLocalities {
        TwoLocalities {
            standby_blue: Backend::start("blue", "v1"),
            standby_green: Backend::start("green", "v2"),
            health_check,
        }
    }

    /// `state` with each color's endpoints put in the two localities.
    fn edit(&self, scene: &BlueGreen, state: String) -> String {
        let checks = if self.health_check {
            "      health_check: {interval: 500ms}\n"
        } else {
            ""
        };
        let localities = |primary: SocketAddr, standby: SocketAddr| {
            format!(
                "      localities:\n        - {{region: r, zone: a, endpoints: [\"{primary}\"]}}\n        - {{region: r, zone: b, priority: 1, endpoints: [\"{standby}\"]}}\n      outlier_detection: {{}}\n{checks}"
            )
        };
        let edited = state
            .replace(
                &format!("      endpoints: [\"{}\"]\n", scene.blue.addr()),
                &localities(scene.blue.addr(), self.standby_blue.addr()),
            )
            .replace(
                &format!("      endpoints: [\"{}\"]\n", scene.green.addr()),
                &localities(scene.green.addr(), self.standby_green.addr()),
            );
        assert_eq!(edited.matches("localities:").count(), 2, "{edited}");
        edited
    }
}

async fn hundred_flips_between_colors_in_two_localities_with_failover_on_drop_nothing(xds: Xds) {
    // Outlier detection, active health checks and retries on.
    let localities = TwoLocalities::start(true);
    let (report, _) = flip_edited_under_load(
        xds,
        Protocol::Http1,
        1,
        0x5eed_0007,
        "    retries: 2\n",
        &[],
        |scene, state| localities.edit(scene, state),
    )
    .await;
    assert_nothing_dropped(&report);
}

async fn hundred_flips_rolled_out_in_two_waves_of_envoys_in_two_zones_drop_nothing(xds: Xds) {
    // Every switch reaches zone A's Envoy, then zone B's once A's holds it (no soak: the
    // flips come every 10-200 ms); a flip back mid-rollout reverts zone A at once. Each
    // color is in both zones with failover on, as in the scenario above.
    let localities = TwoLocalities::start(false);
    let keys =
        "    retries: 2\n    rollout:\n      soak: 0s\n      waves: [{zone: a}, {zone: b}]\n";
    let (report, _) = flip_edited_under_load(
        xds,
        Protocol::Http1,
        2,
        0x5eed_0008,
        keys,
        &["a", "b"],
        |scene, state| localities.edit(scene, state),
    )
    .await;
    assert_nothing_dropped(&report);
}
