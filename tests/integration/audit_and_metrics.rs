//! The audit trail and the metrics of a switch, with a real Envoy acknowledging it.

use std::time::Duration;

use crate::common::backend::Backend;
use crate::common::control_plane::{ControlPlane, metric, one_service};
use crate::common::envoy::Envoy;
use crate::common::free_port;
use serde_json::Value;

fn audit_records(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad audit line {l:?}: {e}")))
        .collect()
}

fn of_kind<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["event"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_records_every_state_and_acknowledgement_and_survives_a_restart() {
    let blue = Backend::start("blue", "v1");
    let green = Backend::start("green", "v2");
    let port = free_port();
    let state = |active| one_service(port, blue.addr(), green.addr(), active);
    let audit_dir = tempfile::tempdir().unwrap();
    let audit = audit_dir.path().join("audit.jsonl");
    let with_audit = |c: &mut switchyard::Config| c.audit_log = Some(audit.clone());

    let cp = ControlPlane::start_with(&state("blue"), with_audit).await;
    let envoy = Envoy::start("audited-1", cp.xds_addr()).await;
    envoy.wait_live(Duration::from_secs(20)).await;
    cp.save_by_rename(&state("green"));
    assert_eventually!(
        Duration::from_secs(3),
        !of_kind(&audit_records(&audit), "switch_complete").is_empty()
    );
    cp.save_in_place(&state("blue").replace("active: blue", "active: none"));
    assert_eventually!(
        Duration::from_secs(3),
        !of_kind(&audit_records(&audit), "state_rejected").is_empty()
    );

    let records = audit_records(&audit);
    let accepted = of_kind(&records, "state_accepted");
    assert_eq!(accepted.len(), 2, "{records:#?}");
    // The startup state, then the switch, with before/after per service.
    assert!(accepted[0]["previous_version"].is_null());
    let switch = accepted[1];
    assert_eq!(switch["previous_version"], accepted[0]["version"]);
    let change = &switch["changes"][0];
    assert_eq!(change["service"], "summarizer");
    assert_eq!(
        change["before"],
        serde_json::json!({"active": "blue", "blue": 100, "green": 0})
    );
    assert_eq!(
        change["after"],
        serde_json::json!({"active": "green", "blue": 0, "green": 100})
    );
    assert_eq!(switch["content_hash"].as_str().unwrap().len(), 64);
    assert!(
        switch["file"]["path"]
            .as_str()
            .unwrap()
            .ends_with("state.yaml")
    );
    assert!(switch["file"]["mtime"].is_string());
    assert!(switch["file"]["owner_uid"].is_u64());
    // The proxy's acknowledgement of the switch, and its completion.
    let synced: Vec<_> = of_kind(&records, "proxy_synced")
        .into_iter()
        .filter(|r| r["state_version"] == switch["version"])
        .collect();
    assert_eq!(synced.len(), 1, "{records:#?}");
    assert_eq!(synced[0]["node_id"], "audited-1");
    let complete = of_kind(&records, "switch_complete");
    let complete = complete
        .iter()
        .find(|r| r["version"] == switch["version"])
        .unwrap();
    assert_eq!(complete["proxies"], 1);
    assert!(complete["took_ms"].as_f64().unwrap() < 2000.0);
    // The rejection, with the reason and the state that stays.
    let rejected = of_kind(&records, "state_rejected");
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0]["errors"][0]
            .as_str()
            .unwrap()
            .ends_with(":13:13: active must be `blue` or `green`, not `none`")
    );
    assert_eq!(rejected[0]["active_version"], switch["version"]);
    // No per-type noise in the audit log.
    assert!(of_kind(&records, "proxy_acked").is_empty());

    // Metrics of the same story.
    let (_, metrics) = cp.admin_get("/metrics").await;
    assert!(
        metric(&metrics, "switchyard_convergence_seconds_count").unwrap() >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "switchyard_state_files_total{result=\"accepted\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "switchyard_state_files_total{result=\"rejected\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "switchyard_connected_proxies{protocol=\"sotw\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "switchyard_subscribed_proxies{type=\"routes\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "switchyard_service_weight{service=\"summarizer\",color=\"green\"}"
        ),
        Some(100.0)
    );
    assert!(metric(&metrics, "switchyard_xds_acks_total{type=\"routes\"}").unwrap() >= 2.0);
    drop(envoy);
    cp.stop().await;

    // A restart appends; nothing is lost.
    let before = audit_records(&audit).len();
    let cp = ControlPlane::start_with(&state("green"), |c| c.audit_log = Some(audit.clone())).await;
    assert_eventually!(Duration::from_secs(2), audit_records(&audit).len() > before);
    let after = audit_records(&audit);
    assert_eq!(
        after[..records.len()],
        records[..],
        "earlier records were changed"
    );
    assert_eq!(after[before]["event"], "state_accepted");
    cp.stop().await;
}
