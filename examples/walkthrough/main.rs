//! The blue-green workflow walked through against a real Envoy: model v1 on blue, model v2
//! on green, live traffic the whole time, and the state file saved step by step (preview,
//! shadow, gate, bake and automatic rollback, the schema guard), each step checking what it
//! observes. What it shows is in [`Args`] (`--help`); the scene it runs is in `scene.rs`.
//!
//! ```text
//! cargo run --example walkthrough
//! ```

#[path = "../../tests/common/mod.rs"]
mod common;
mod scene;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use common::http;
use scene::{PREVIEW, Scene, Traffic, check, expect, send_traffic, watch, write_version};

/// Walk through switchyard's blue-green workflow against a real Envoy, and check each step.
///
/// Starts two sample backends (model v1 on blue, model v2 on green), switchyard and a real
/// Envoy 1.40 that reports its load to switchyard (LRS), sends requests through Envoy the
/// whole time, and saves the state file step by step:
///
///   1. preview: a request with `x-switchyard-preview: green` reaches v2 while live traffic
///      stays on v1;
///   2. shadow: `shadow: {percent: 50}` mirrors half of the live requests to green (its
///      counter of mirrored requests rises; live answers stay v1);
///   3. gate: `active: green` with a gate while green's /healthz answers 503: the switch is
///      held and /status names the failing endpoint and why; once green is healthy the
///      switch goes ahead by itself;
///   4. bake: green fails half its requests under load; switchyard rolls back to blue by
///      itself, reports what tripped it and stays on blue; green fixed and the file saved
///      with `attempt: 2`, green takes the traffic again;
///   5. schema guard: a database declared (blue runs schema 41, 42; green 42, 43) moves to 43
///      (the contract step); green fails again and the rollback to blue is refused.
///
/// It ends with a count of the live requests: only those green was told to fail may fail.
/// Exits 0 when every step observed what it should, 1 (saying what was missed) otherwise.
/// Takes about 20 s. Envoy comes from ENVOY_BIN, or is installed on first use into .tools/.
#[derive(Debug, Parser)]
#[command(verbatim_doc_comment)]
struct Args {}

/// The workflow keys, added to the file step by step (printed as saved).
const SHADOW: &str = "    shadow:\n      percent: 50\n";
const GATE: &str = "    gate:\n      path: /healthz\n      interval: 200ms\n      successes: 2\n      deadline: 1m\n";
const BAKE: &str =
    "    bake:\n      window: 1m\n      max_error_ratio: 0.1\n      min_requests: 20\n";
const ATTEMPT: &str = "    attempt: 2\n";

#[tokio::main]
async fn main() {
    Args::parse();
    println!("switchyard walk-through: the blue-green workflow\n");
    let mut scene = Scene::start().await;
    let traffic = Arc::new(Traffic::default());
    let started = Instant::now();
    let outcome = walk(&mut scene, &traffic).await;
    let took = started.elapsed();
    let outcome = outcome.and_then(|()| summary(&scene, &traffic, took));
    scene.stop().await;
    if let Err(missed) = outcome {
        eprintln!("\nwalkthrough: FAILED: {missed}");
        std::process::exit(1);
    }
    println!("\nwalkthrough: every step observed what it should.");
}

/// The five steps, in order; stops at the first thing not observed.
async fn walk(scene: &mut Scene, traffic: &Arc<Traffic>) -> Result<(), String> {
    let listener = scene.listener;
    expect("blue answering through Envoy", async || {
        http::color(listener).await.as_deref() == Some("blue")
    })
    .await?;
    let sender = tokio::spawn(send_traffic(listener, traffic.clone()));
    println!("   live traffic: a request every 10 ms or so through Envoy, from now to the end");

    let result = async {
        preview(scene, traffic).await?;
        shadow(scene, traffic).await?;
        gate(scene, traffic).await?;
        bake(scene, traffic).await?;
        schema_guard(scene, traffic).await
    }
    .await;
    let rollout = scene.rollout().await;
    if result.is_err() && !rollout.is_null() {
        eprintln!("\n   /status rollout when it was missed: {rollout:#}");
    }
    traffic.stop();
    let _ = sender.await;
    result
}

fn step(traffic: &Traffic, n: usize, title: &str) {
    traffic.set_step(n);
    println!("\n{n}. {title}");
}

async fn preview(scene: &mut Scene, traffic: &Traffic) -> Result<(), String> {
    step(
        traffic,
        1,
        "v1 on blue serves; preview v2 on green with a header",
    );
    let (seen, text) = scene.sample(5).await;
    println!("   live answers: {text}");
    check(seen.keys().all(|a| a == "blue v1"), || {
        format!("step 1: live answers should all be blue v1, got {text}")
    })?;
    let previewed = scene.preview("green").await;
    println!(
        "   curl -H '{PREVIEW}: green' http://{}/  ->  {previewed}",
        scene.listener
    );
    check(previewed == "200 green v2", || {
        format!("step 1: the preview should answer 200 green v2, got {previewed}")
    })?;
    let (seen, text) = scene.sample(5).await;
    println!("   live answers meanwhile: {text}");
    check(seen.keys().all(|a| a == "blue v1"), || {
        format!("step 1: live answers should stay blue v1, got {text}")
    })?;
    println!("   -> the header reaches the idle color; everyone else stays on v1");
    Ok(())
}

async fn shadow(scene: &mut Scene, traffic: &Traffic) -> Result<(), String> {
    step(traffic, 2, "shadow half of the live requests to green");
    let before = scene.green.shadow_requests();
    scene.plan.keys.push(SHADOW);
    scene.save(SHADOW);
    let green = &scene.green;
    let took = expect("step 2: green receiving mirrored requests", async || {
        green.shadow_requests() > before
    })
    .await?;
    println!("   first mirrored request reached green {took:.1?} after the save");
    let (live_before, shadow_before) = (traffic.sent(), scene.green.shadow_requests());
    let (blue, green_live) = watch(traffic, Duration::from_secs(1)).await;
    let (live, mirrored) = (
        traffic.sent() - live_before,
        scene.green.shadow_requests() - shadow_before,
    );
    println!(
        "   over 1 s: {live} live requests ({blue} answered by blue, {green_live} by green), {mirrored} mirrored to green"
    );
    println!(
        "   green's counters: {} requests, {} of them mirrored (host ending in -shadow)",
        scene.green.requests(),
        scene.green.shadow_requests()
    );
    check(mirrored > 0 && green_live == 0 && blue > 0, || {
        format!(
            "step 2: green's mirrored count should rise while live answers stay blue \
             ({mirrored} mirrored, {blue} blue, {green_live} green answers)"
        )
    })?;
    let cp = &scene.cp;
    expect(
        "step 2: the load reports counting green's requests",
        async || {
            cp.status().await["load"]["summarizer"]["green"]["requests"]
                .as_u64()
                .is_some_and(|n| n > 0)
        },
    )
    .await?;
    let load = &cp.status().await["load"]["summarizer"];
    println!(
        "   /status load (Envoy's reports, last minute): blue {} requests, green {} requests, {} errors",
        load["blue"]["requests"], load["green"]["requests"], load["green"]["errors"]
    );
    println!("   -> v2 meets real inputs; its answers are discarded");
    Ok(())
}

async fn gate(scene: &mut Scene, traffic: &Traffic) -> Result<(), String> {
    step(traffic, 3, "gate: switch to green while v2 is not ready");
    scene.green.set_healthy(false);
    println!("   green's /healthz now answers 503 (v2 still loading)");
    scene.plan.active = "green";
    scene.plan.keys.extend([GATE, BAKE]);
    scene.save(&format!("    active: green\n{GATE}{BAKE}"));
    let green_addr = scene.green.addr().to_string();
    expect(
        "step 3: /status naming green's endpoint failing the gate",
        async || {
            let r = scene.rollout().await;
            r["phase"] == "gating"
                && r["gate"]["failing"][0]["endpoint"] == green_addr.as_str()
                && r["gate"]["failing"][0]["reason"]
                    .as_str()
                    .is_some_and(|why| why.contains("503"))
        },
    )
    .await?;
    let r = scene.show_rollout().await;
    let g = &r["gate"];
    println!(
        "     gate of {}: {} of {} endpoints healthy, {} needed",
        g["color"].as_str().unwrap_or("?"),
        g["healthy"],
        g["total"],
        g["needed"]
    );
    for f in g["failing"].as_array().into_iter().flatten() {
        println!(
            "     failing: {}  {}",
            f["endpoint"].as_str().unwrap_or("?"),
            f["reason"].as_str().unwrap_or("?")
        );
    }
    check(r["in_force"] == "blue", || {
        format!("step 3: blue should stay in force while the gate fails: {r}")
    })?;
    let (blue, green) = watch(traffic, Duration::from_secs(1)).await;
    println!("   live answers over 1 s: {blue} blue, {green} green  -> the switch is held");
    check(green == 0 && blue > 0, || {
        format!("step 3: the switch should be held ({blue} blue, {green} green answers)")
    })?;

    scene.green.set_healthy(true);
    println!("   green's /healthz answers 200 again");
    let listener = scene.listener;
    let took = expect(
        "step 3: green taking the traffic once healthy",
        async || http::color(listener).await.as_deref() == Some("green"),
    )
    .await?;
    println!(
        "   green answers live traffic {took:.1?} later: the gate passed (2 probes 200 ms apart) and the switch went ahead by itself"
    );
    let r = scene.show_rollout().await;
    check(r["phase"] == "baking" && r["in_force"] == "green", || {
        format!("step 3: green should be in force and baking: {r}")
    })?;
    println!(
        "     the bake watches green for {:.0} s more",
        r["left_seconds"].as_f64().unwrap_or_default()
    );
    Ok(())
}

async fn bake(scene: &mut Scene, traffic: &Traffic) -> Result<(), String> {
    step(
        traffic,
        4,
        "bake: v2 fails under load; switchyard rolls back by itself",
    );
    scene.green.set_fail_share(0.5);
    println!("   green now fails half of its requests (500)");
    let took = expect("step 4: the automatic rollback", async || {
        scene.phase().await == "rolled_back"
    })
    .await?;
    println!(
        "   rolled back {took:.1?} after green started failing ({} live requests failed meanwhile)",
        traffic.failed_in(4)
    );
    let r = scene.show_rollout().await;
    let trip = &r["trip"];
    let proxies: Vec<String> = trip["proxies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("{} ({} errors)", p[0].as_str().unwrap_or("?"), p[1]))
        .collect();
    println!(
        "     trip: {} errors in {} requests across the fleet, {} into the bake; seen by {}",
        trip["errors"],
        trip["requests"],
        trip["after"].as_str().unwrap_or("?"),
        proxies.join(", ")
    );
    let errors = trip["errors"].as_u64().unwrap_or(0);
    let requests = trip["requests"].as_u64().unwrap_or(0);
    check(
        r["in_force"] == "blue"
            && r["wanted"] == "green"
            && requests >= 20
            && errors * 10 > requests
            && proxies.iter().any(|p| p.starts_with("walkthrough ")),
        || {
            format!(
                "step 4: the trip should show errors above 10% of 20+ requests from proxy walkthrough: {r}"
            )
        },
    )?;
    let listener = scene.listener;
    expect("step 4: blue answering live traffic again", async || {
        http::color(listener).await.as_deref() == Some("blue")
    })
    .await?;

    scene.green.set_fail_share(0.0);
    println!(
        "   green fixed (no more failures), but the file is unchanged: does traffic flap back?"
    );
    // Long enough for green's last errors to age out of what a new bake reads: a bake
    // counts the load reports from the start of the 5 s bucket it began in, so a retry
    // within a few seconds of the failed attempt's last errors would count them and trip
    // at once. Seven seconds: one bucket, one report interval, and a margin.
    let span = Duration::from_secs(7);
    let (blue, green) = watch(traffic, span).await;
    let phase = scene.phase().await;
    println!("   live answers over {span:?}: {blue} blue, {green} green; phase still {phase}");
    check(green == 0 && phase == "rolled_back", || {
        format!("step 4: traffic should stay on blue ({green} green answers, phase {phase})")
    })?;

    scene.plan.keys.insert(0, ATTEMPT);
    scene.save(ATTEMPT);
    let took = expect("step 4: the retry switching to green", async || {
        http::color(listener).await.as_deref() == Some("green")
    })
    .await?;
    println!("   green answers again {took:.1?} after the save (gate passed, new bake)");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = scene.show_rollout().await;
    check(r["phase"] == "baking" && r["in_force"] == "green", || {
        format!("step 4: the retry should be in force and baking: {r}")
    })?;
    Ok(())
}

async fn schema_guard(scene: &mut Scene, traffic: &Traffic) -> Result<(), String> {
    step(
        traffic,
        5,
        "schema guard: after the contract step, no rollback to blue",
    );
    let version = scene.dir.path().join("schema-version");
    write_version(&version, "42")?;
    scene.plan.database = Some(version.clone());
    println!(
        "   database `records`: version file {} says 42 (expanded: both colors run on it)",
        version.display()
    );
    scene.save(&format!(
        "databases:\n  - name: records\n    file: {}\n    interval: 200ms\nservices:\n  - name: summarizer\n    database: records\n    blue:  {{ ..., schemas: [41, 42] }}\n    green: {{ ..., schemas: [42, 43] }}\n",
        version.display()
    ));
    let cp = &scene.cp;
    expect("step 5: /status databases at 42", async || {
        cp.status().await["databases"][0]["version"] == "42"
    })
    .await?;
    println!("   /status databases: records at 42");

    write_version(&version, "43")?;
    println!("   contract: the database moves to 43, which only green lists");
    expect("step 5: /status databases at 43", async || {
        cp.status().await["databases"][0]["version"] == "43"
    })
    .await?;
    println!("   /status databases: records at 43");

    scene.green.set_fail_share(0.5);
    println!("   green fails half of its requests again");
    let took = expect("step 5: the rollback refused", async || {
        scene.rollout().await["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("cannot roll back to blue: "))
    })
    .await?;
    println!(
        "   the bake trips {took:.1?} later ({} live requests failed meanwhile), but:",
        traffic.failed_in(5)
    );
    let r = scene.show_rollout().await;
    check(r["in_force"] == "green", || {
        format!("step 5: green should stay in force: {r}")
    })?;
    let (blue, green) = watch(traffic, Duration::from_secs(1)).await;
    let failed = traffic.failed_in(5);
    println!(
        "   live answers over 1 s: {blue} blue, {green} green (and green's failures, {failed} so far)"
    );
    check(blue == 0 && green > 0, || {
        format!("step 5: traffic should stay on green ({blue} blue, {green} green answers)")
    })?;
    scene.green.set_fail_share(0.0);
    println!("   -> blue cannot run against 43: the way out is forward; green fixed");
    Ok(())
}

/// Prints the counts of the live traffic and checks that only green's own failures failed,
/// and only where green was told to fail (steps 4 and 5).
fn summary(scene: &Scene, traffic: &Traffic, took: Duration) -> Result<(), String> {
    let unexpected = traffic.unexpected();
    let failed = traffic.failed();
    println!(
        "\nlive traffic over {took:.0?}: {} requests, {} answered by blue, {} by green, {failed} failed",
        traffic.sent(),
        traffic.answered("blue"),
        traffic.answered("green"),
    );
    println!(
        "   failed: {} in step 4 and {} in step 5, where green was told to fail; {} elsewhere",
        traffic.failed_in(4),
        traffic.failed_in(5),
        failed - traffic.failed_in(4) - traffic.failed_in(5) + unexpected.len() as u64
    );
    println!(
        "   mirrored: {} requests to green (while blue was live), {} to blue (while green was)",
        scene.green.shadow_requests(),
        scene.blue.shadow_requests()
    );
    check(unexpected.is_empty(), || {
        format!(
            "{} live requests failed other than by green's fail share: {}",
            unexpected.len(),
            unexpected.join("; ")
        )
    })?;
    check(
        failed == traffic.failed_in(4) + traffic.failed_in(5),
        || "live requests failed outside steps 4 and 5".to_owned(),
    )
}
