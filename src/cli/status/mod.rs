//! `switchyard status`: a running server's state and proxies as tables an operator can read
//! at a glance: the state in force, the last rejected file, each service's colors and
//! weights, and each proxy's sync status per resource type.
//!
//! It asks the server's `switchyard.v1.Switchyard` API (`GetState` and `ListProxies`, on
//! the xDS port; this module) and renders the typed answers ([`render`]: tables, or JSON). Every status shown is the one the server
//! computed; nothing is worked out again here. An answer without a field the tables need
//! is an error naming that field, never a placeholder.

use std::fmt::Write as _;
use std::time::Duration;

use std::path::PathBuf;
use tonic::Code;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::grpc::pb::{self, switchyard_client::SwitchyardClient};

mod render;

pub use render::{Missing, ServerStatus, render_status, status_json};

/// How long `status` waits for the server, in total (connecting and both calls).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Why `status` has nothing to show.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// A TLS file given to `status` cannot be read.
    #[error("cannot read {path}: {source}")]
    TlsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The CLI could not start its async runtime (an OS limit).
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Nothing (or nothing in time) answered at the address.
    #[error("cannot reach switchyard at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    /// Something answered, but not as switchyard's `switchyard.v1` API: not gRPC at all,
    /// or a gRPC server without the `switchyard.v1.Switchyard` service.
    #[error(
        "{addr} is not switchyard's switchyard.v1 API (give the xDS port, `serve --xds-addr`): {reason}"
    )]
    NotSwitchyard { addr: String, reason: String },
    /// switchyard answered, without a field the tables need.
    #[error("switchyard at {addr} answered without {field}")]
    BadAnswer { addr: String, field: String },
}

/// How `status` reaches a server that serves TLS (`serve --tls-cert`).
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// The CA the server's certificate chains to (PEM).
    pub ca: PathBuf,
    /// This client's certificate and key (PEM), for mutual TLS (`serve --client-ca`).
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The name the server's certificate must carry; the address's host when `None`.
    pub server_name: Option<String>,
}

/// `switchyard status [--json]` against `addr` (the xDS port): the text to print.
///
/// The tables are rendered even for `--json`, since rendering is what checks that the
/// answer has every field `status` relies on.
pub fn status(addr: &str, tls: Option<&ClientTls>, as_json: bool) -> Result<String, StatusError> {
    let answer = fetch_status(addr, tls)?;
    let tables = render_status(&answer).map_err(|Missing(field)| StatusError::BadAnswer {
        addr: addr.to_owned(),
        field,
    })?;
    if as_json {
        Ok(status_json(&answer) + "\n")
    } else {
        Ok(tables)
    }
}

/// Asks the server at `addr` for its state and proxies, within [`TIMEOUT`].
pub fn fetch_status(addr: &str, tls: Option<&ClientTls>) -> Result<ServerStatus, StatusError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StatusError::Runtime)?;
    runtime.block_on(async {
        tokio::time::timeout(TIMEOUT, ask(addr, tls))
            .await
            .unwrap_or_else(|_| {
                Err(StatusError::Unreachable {
                    addr: addr.to_owned(),
                    reason: format!("no answer within {} s", TIMEOUT.as_secs()),
                })
            })
    })
}

async fn ask(addr: &str, tls: Option<&ClientTls>) -> Result<ServerStatus, StatusError> {
    let unreachable = |reason: String| StatusError::Unreachable {
        addr: addr.to_owned(),
        reason,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| unreachable(error_chain(&e)))?
        .connect_timeout(TIMEOUT);
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(client_tls(tls)?)
            .map_err(|e| unreachable(error_chain(&e)))?;
    }
    let channel: Channel = endpoint
        .connect()
        .await
        .map_err(|e| unreachable(error_chain(&e)))?;
    let mut client = SwitchyardClient::new(channel);
    let state = match client.get_state(pb::GetStateRequest {}).await {
        Ok(r) => Some(r.into_inner()),
        Err(s) if answered(&s) && s.code() == Code::Unavailable => None,
        Err(s) => return Err(rpc_error(addr, &s)),
    };
    let proxies = client
        .list_proxies(pb::ListProxiesRequest::default())
        .await
        .map_err(|s| rpc_error(addr, &s))?
        .into_inner()
        .proxies;
    Ok(ServerStatus { state, proxies })
}

/// tonic's TLS settings for `tls`, reading its files.
fn client_tls(tls: &ClientTls) -> Result<ClientTlsConfig, StatusError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| StatusError::TlsFile {
            path: path.clone(),
            source,
        })
    };
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&tls.ca)?));
    if let Some((cert, key)) = &tls.identity {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    if let Some(name) = &tls.server_name {
        config = config.domain_name(name.clone());
    }
    Ok(config)
}

/// Did a gRPC server send this status (rather than the client making it up because the
/// call failed underneath: a connection reset, an HTTP/1.1 reply, a protocol error)?
/// A status the client makes up carries the error that caused it as its source.
fn answered(s: &tonic::Status) -> bool {
    std::error::Error::source(s).is_none()
}

/// A failed call: whatever answered is not switchyard's `switchyard.v1`.
fn rpc_error(addr: &str, s: &tonic::Status) -> StatusError {
    let reason = if answered(s) && s.code() == Code::Unimplemented {
        format!(
            "it does not serve switchyard.v1.Switchyard ({})",
            s.message()
        )
    } else if answered(s) {
        format!("{:?}: {}", s.code(), s.message())
    } else {
        let cause = std::error::Error::source(s).map_or_else(|| s.to_string(), error_chain);
        format!("it does not answer as a gRPC server ({cause})")
    };
    StatusError::NotSwitchyard {
        addr: addr.to_owned(),
        reason,
    }
}

/// An error and its sources, `: `-separated (tonic's own messages say little alone).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            let _ = write!(text, ": {next}");
        }
        source = s.source();
    }
    text
}
