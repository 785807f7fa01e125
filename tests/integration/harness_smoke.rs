//! The harness itself works: tools are provisioned, a backend answers, an
//! Envoy starts, answers on its admin port and is gone after drop.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use crate::common::backend::Backend;
use crate::common::envoy::Envoy;
use crate::common::{http, tools};

#[tokio::test]
async fn envoy_starts_and_backend_answers() {
    let envoy_bin = tools::envoy_bin();
    let grpcurl_bin = tools::grpcurl_bin();
    for bin in [&envoy_bin, &grpcurl_bin] {
        assert!(bin.is_file(), "{} is not a file", bin.display());
        let head = std::fs::read(bin).expect("read the binary");
        assert!(
            head.starts_with(b"\x7fELF"),
            "{} is not a real binary",
            bin.display()
        );
    }

    let backend = Backend::start("blue", "v1");
    let (status, body) = http::get(backend.addr(), "/predict", "summarizer")
        .await
        .expect("backend answers");
    assert_eq!((status, body.as_str()), (200, "blue v1\n"));
    assert_eq!(
        http::get_blocking(backend.addr(), "/", "summarizer"),
        Ok((200, backend.body()))
    );
    assert_eq!(backend.requests(), 2);

    // Nothing listens on the xDS address: Envoy still starts and its admin
    // answers, it just keeps retrying the control plane (and is not LIVE).
    let closed_xds = closed_port();
    let envoy = Envoy::start("smoke-1", closed_xds).await;
    let (status, body) = envoy.admin_get("/server_info").await;
    assert_eq!(status, 200, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).expect("server_info is JSON");
    assert_eq!(info["node"]["id"], "smoke-1");
    assert!(
        info["version"]
            .as_str()
            .unwrap_or_default()
            .contains("/1.40."),
        "unexpected version: {}",
        info["version"]
    );
    assert!(!envoy.is_live().await, "LIVE without any xDS");
    assert_eventually!(
        Duration::from_secs(10),
        envoy
            .stat("cluster.xds_cluster.upstream_cx_connect_fail")
            .await
            >= Some(1),
        "envoy never tried {closed_xds}"
    );
    let dump = envoy.config_dump().await;
    assert!(dump["configs"].is_array(), "unexpected config_dump: {dump}");

    let pid = envoy.pid();
    drop(envoy);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "envoy pid {pid} still exists after drop"
    );
    drop(backend);
}

/// A loopback address nothing listens on (bound, then released).
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap()
}
