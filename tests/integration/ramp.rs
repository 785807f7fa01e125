//! Stepped weights through real Envoys: a static split (`weights:`) and a ramp (`ramp:`)
//! whose steps move the traffic one after another, each once every proxy holds the last.
//! Two Envoys share the scene's listener (the kernel spreads connections over them); the
//! share of each color is counted from the backends' answers over many requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::control_plane::BlueGreen;
use crate::common::envoy::{Envoy, Xds};
use crate::common::http;

crate::both_protocols!(
    a_static_even_split_sends_about_half_the_traffic_to_each_color,
    a_ramp_moves_the_traffic_through_two_envoys_step_by_step,
    a_ramp_holds_its_step_while_one_envoy_withholds_its_ack,
);

/// The scene's state with the service's `active: blue` line replaced by `lines`.
fn with(scene: &BlueGreen, lines: &str) -> String {
    scene.state("blue").replace("    active: blue\n", lines)
}

/// The state switching to green by a ramp of 10, 50 and 100 % every second.
fn ramp_to_green(scene: &BlueGreen) -> String {
    with(
        scene,
        "    active: green\n    ramp: {steps: [10, 50, 100], every: 1s}\n",
    )
}

/// Two Envoys on the scene, live, with every request answered by blue.
async fn two_envoys(scene: &BlueGreen, xds: Xds) -> [Envoy; 2] {
    let envoys = [
        scene.envoy_speaking("edge-1", xds).await,
        scene.envoy_speaking("edge-2", xds).await,
    ];
    assert_eventually!(
        Duration::from_secs(10),
        http::color(scene.listener).await.as_deref() == Some("blue")
    );
    envoys
}

/// The rollout of `summarizer` in `/status`.
fn rollout(status: &Value) -> &Value {
    &status["rollout"][0]
}

/// Green's share in force, as `/status` says.
fn green_in_force(status: &Value) -> Option<u64> {
    rollout(status)["weights"]["green"].as_u64()
}

/// Sends requests through `listener` from `senders` tasks, each on its own connection,
/// until told to stop; each answer's color with when it came.
struct Traffic {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<(Instant, String)>>>,
}

impl Traffic {
    fn start(listener: std::net::SocketAddr, senders: usize) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..senders)
            .map(|_| {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        if let Some(color) = http::color(listener).await {
                            seen.push((Instant::now(), color));
                        }
                    }
                    seen
                })
            })
            .collect();
        Traffic { stop, tasks }
    }

    async fn stop(self) -> Vec<(Instant, String)> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.unwrap());
        }
        all.sort();
        all
    }
}

/// Green's share of the answers that came within `from..to`, and how many came.
fn green_share(answers: &[(Instant, String)], from: Instant, to: Instant) -> (f64, usize) {
    let within: Vec<&String> = answers
        .iter()
        .filter(|(at, _)| (from..to).contains(at))
        .map(|(_, c)| c)
        .collect();
    let green = within.iter().filter(|c| c.as_str() == "green").count();
    (green as f64 / within.len().max(1) as f64, within.len())
}

async fn a_static_even_split_sends_about_half_the_traffic_to_each_color(xds: Xds) {
    let scene = BlueGreen::start().await;
    let _envoys = two_envoys(&scene, xds).await;
    scene
        .cp
        .save_by_rename(&with(&scene, "    weights: {blue: 50, green: 50}\n"));
    assert_eventually!(
        Duration::from_secs(10),
        green_in_force(&scene.cp.status().await) == Some(50)
    );
    // Both Envoys run the split before it is measured.
    assert_eventually!(
        Duration::from_secs(10),
        http::color(scene.listener).await.as_deref() == Some("green")
    );
    let (blue_before, green_before) = (scene.blue.requests(), scene.green.requests());
    let mut answers = Vec::new();
    while answers.len() < 400 {
        answers.extend(http::color(scene.listener).await);
    }
    let green = answers.iter().filter(|c| c.as_str() == "green").count();
    assert!(
        (130..=270).contains(&green),
        "green answered {green} of 400 requests of an even split"
    );
    // The backends count the same.
    assert_eq!(scene.green.requests() - green_before, green as u64);
    assert_eq!(scene.blue.requests() - blue_before, 400 - green as u64);
    let status = scene.cp.status().await;
    assert_eq!(rollout(&status)["phase"], "steady", "{status:#}");
    assert_eq!(
        status["state"]["services"][0]["active"], "blue",
        "a tie counts blue"
    );
}

async fn a_ramp_moves_the_traffic_through_two_envoys_step_by_step(xds: Xds) {
    let scene = BlueGreen::start().await;
    let envoys = two_envoys(&scene, xds).await;
    let cp = &scene.cp;
    let traffic = Traffic::start(scene.listener, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Green's share in force over time, as `/status` says (it is told of each step as the
    // step is published).
    let mut timeline: Vec<(Instant, u64)> = vec![(Instant::now(), 0)];
    cp.save_by_rename(&ramp_to_green(&scene));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = cp.status().await;
        let green = green_in_force(&status).unwrap_or(0);
        if timeline.last().is_none_or(|(_, last)| *last != green) {
            timeline.push((Instant::now(), green));
        }
        if green == 100 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ramp did not finish: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answers = traffic.stop().await;
    let steps: Vec<u64> = timeline.iter().map(|(_, g)| *g).collect();
    assert_eq!(steps, [0, 10, 50, 100], "{timeline:?}");
    let end = answers.last().unwrap().0;
    // Each step lasted at least `every` (1 s; seen up to one poll late).
    for pair in timeline[1..].windows(2) {
        let lasted = pair[1].0 - pair[0].0;
        assert!(
            lasted >= Duration::from_millis(950),
            "green at {} % lasted only {lasted:?}",
            pair[0].1
        );
    }
    // Through each step, the answers follow its weights: from a little after it was put
    // in force (the Envoys apply it) until a little before the next was seen.
    for (i, (expected, range)) in [(10, 0.02..0.25), (50, 0.30..0.70)].into_iter().enumerate() {
        let (from, to) = (timeline[i + 1].0, timeline[i + 2].0);
        let (share, n) = green_share(
            &answers,
            from + Duration::from_millis(200),
            to - Duration::from_millis(100),
        );
        assert!(n >= 40, "only {n} answers at {expected} %");
        assert!(
            range.contains(&share),
            "green answered {:.0} % of {n} requests at step {expected} %",
            share * 100.0
        );
    }
    let (share, n) = green_share(&answers, timeline[3].0 + Duration::from_millis(200), end);
    assert!(n > 0 && share == 1.0, "{n} answers after 100 %, {share}");
    // Both Envoys moved: each sent green requests of its own.
    for envoy in &envoys {
        let green = envoy
            .stat("cluster.summarizer-green.upstream_rq_total")
            .await
            .unwrap_or(0);
        assert!(green > 0, "{} sent nothing to green", envoy.node_id());
    }
    let status = cp.status().await;
    assert_eq!(rollout(&status)["phase"], "steady", "{status:#}");
    assert!(rollout(&status).get("ramp").is_none(), "{status:#}");
    for decision in ["switched", "ramp_step"] {
        let series = format!(
            "switchyard_rollout_decisions_total{{service=\"summarizer\",decision=\"{decision}\"}}"
        );
        let expected = if decision == "switched" { 1 } else { 3 };
        assert_eq!(cp.counter(&series).await, expected, "{series}");
    }
}

/// Stops a process (SIGSTOP) until thawed or dropped (SIGCONT), so that a test that fails
/// meanwhile leaves nothing stopped; [`Envoy`]'s own drop kills it either way.
struct Frozen(Pid);

impl Frozen {
    fn freeze(envoy: &Envoy) -> Frozen {
        let pid = Pid::from_raw(i32::try_from(envoy.pid()).expect("a pid fits i32"));
        kill(pid, Signal::SIGSTOP).expect("SIGSTOP the envoy");
        Frozen(pid)
    }

    fn thaw(self) {}
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

/// The weight `envoy` runs for `summarizer-green`.
async fn green_weight(envoy: &Envoy) -> Option<u64> {
    crate::e2e_switch::weights(&envoy.config_dump().await)
        .into_iter()
        .find_map(|(name, w)| (name == "summarizer-green").then_some(w))
}

async fn a_ramp_holds_its_step_while_one_envoy_withholds_its_ack(xds: Xds) {
    let scene = BlueGreen::start().await;
    let [live, stuck] = two_envoys(&scene, xds).await;
    let cp = &scene.cp;
    // `stuck` is stopped before step 1 reaches it: it will not acknowledge it.
    let frozen = Frozen::freeze(&stuck);
    cp.save_by_rename(&ramp_to_green(&scene));
    assert_eventually!(
        Duration::from_secs(10),
        green_weight(&live).await == Some(10)
    );
    // Well past `every`, the ramp is still at step 1, and says why.
    assert_eventually!(
        Duration::from_secs(5),
        rollout(&cp.status().await)["ramp"]["waiting_for"] == "proxies"
    );
    let waiting_since = Instant::now();
    while waiting_since.elapsed() < Duration::from_secs(3) {
        let status = cp.status().await;
        let r = rollout(&status);
        assert_eq!(r["ramp"]["step"], 1, "{status:#}");
        assert_eq!(r["ramp"]["percent"], 10, "{status:#}");
        assert_eq!(r["weights"], serde_json::json!({"blue": 90, "green": 10}));
        assert_eq!(r["phase"], "ramping", "{status:#}");
        assert!(
            r["reason"]
                .as_str()
                .unwrap()
                .contains("step 2 waits for every proxy to acknowledge this one"),
            "{status:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(green_weight(&live).await, Some(10));
    assert_eq!(
        cp.counter(
            "switchyard_rollout_decisions_total{service=\"summarizer\",decision=\"ramp_waiting\"}"
        )
        .await,
        1,
        "said once, not on every tick"
    );
    // Thawed, it acknowledges step 1, and the ramp goes on to the end.
    frozen.thaw();
    assert_eventually!(Duration::from_secs(15), {
        let status = cp.status().await;
        green_in_force(&status) == Some(100) && rollout(&status).get("ramp").is_none()
    });
    for envoy in [&live, &stuck] {
        assert_eventually!(
            Duration::from_secs(10),
            green_weight(envoy).await == Some(100)
        );
    }
}
