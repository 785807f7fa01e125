//! Wiring: state file -> watcher -> pipeline (translate, publish) -> snapshot cache -> ADS
//! streams -> proxy tracker, plus the admin HTTP server. [`Server::bind`] loads the state
//! and binds both ports (port 0 works); [`Server::run`] serves until `shutdown` completes.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::accept;
use crate::admin::{self, AdminLimits, AdminState};
use crate::audit::{AuditError, AuditLog};
use crate::convergence::Convergence;
use crate::events::{EventBus, EventSink};
use crate::grpc::api::SwitchyardApi;
use crate::grpc::csds::CsdsService;
use crate::grpc::pb::switchyard_server::SwitchyardServer;
use crate::identity::{AccessPolicy, Globs};
use crate::load::board::{LoadBoard, Retention};
use crate::load::service::LoadReporting;
use crate::metrics::Metrics;
use crate::pipeline::{self, Pipeline, Reports};
use crate::proxies::ProxyRegistry;
use crate::rollout::controller::Controller;
use crate::rollout::journal;
use crate::rollout::tracks::Tracks;
use crate::state::watch::{self as state_watch, Debounce, WatchError};
use crate::state::{self, StateError};
use crate::status::StateBoard;
use crate::tls::{ReloadingConfig, TlsError, TlsFiles};
use crate::tracker::ProxyTracker;
use crate::translate::translate_with;
use crate::xds::cache::SnapshotCache;
use crate::xds::limits::StreamLimits;
use crate::xds::server::{AdsServer, AdsService};
use crate::xds::snapshot::InconsistentSnapshot;
use envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_server::ClientStatusDiscoveryServiceServer;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// Default xDS (gRPC) address.
pub const DEFAULT_XDS_ADDR: &str = "127.0.0.1:18000";
/// Default admin (HTTP) address.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:19000";
/// Open xDS connections at most (`--max-connections`): room for a fleet of 10,000
/// proxies and their operators.
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// Concurrent gRPC calls per xDS connection (`--max-streams-per-connection`): Envoy opens
/// one ADS stream per connection; tools a few calls.
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 16;
/// How long shutdown waits for connections to close.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What `serve` needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub state_path: PathBuf,
    pub xds_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub debounce: Debounce,
    /// Append every accepted and rejected state, and each proxy's acknowledgement of
    /// it, to this file (JSON lines).
    pub audit_log: Option<PathBuf>,
    /// Keep the rollout's own decisions here across restarts (`--decisions`).
    pub decisions: Option<PathBuf>,
    /// TLS (and with a client CA, mutual TLS) on the xDS port.
    pub tls: Option<TlsFiles>,
    /// Serve plaintext xDS on an address other than loopback anyway.
    pub insecure: bool,
    /// Globs: the node ids (`allow_nodes`) or node clusters (`allow_clusters`) served (all
    /// when both are empty), and the certificate names allowed to call CSDS,
    /// `switchyard.v1` and reflection (`operators`; all when empty).
    pub allow_nodes: Vec<String>,
    pub allow_clusters: Vec<String>,
    pub operators: Vec<String>,
    /// What one ADS stream may cost.
    pub stream_limits: StreamLimits,
    /// Open xDS connections at most; more wait in the accept backlog.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams (gRPC calls) per xDS connection.
    pub max_streams_per_connection: u32,
    /// Header-read timeout and connection cap of the admin HTTP server.
    pub admin_limits: AdminLimits,
    /// Audit records queued for a slow disk at most; more are dropped and counted.
    pub audit_queue: usize,
    /// Events kept for a `WatchEvents` reader that falls behind; one further behind is
    /// ended with RESOURCE_EXHAUSTED.
    pub watch_events_buffer: usize,
    /// How often proxies send their load reports (LRS).
    pub load_report_interval: Duration,
}

impl Config {
    /// Defaults for everything but the state file.
    pub fn new(state_path: impl Into<PathBuf>) -> Config {
        Config {
            state_path: state_path.into(),
            xds_addr: DEFAULT_XDS_ADDR.parse().expect("bug: default address"),
            admin_addr: DEFAULT_ADMIN_ADDR.parse().expect("bug: default address"),
            debounce: Debounce::default(),
            audit_log: None,
            decisions: None,
            tls: None,
            insecure: false,
            allow_nodes: Vec::new(),
            allow_clusters: Vec::new(),
            operators: Vec::new(),
            stream_limits: StreamLimits::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_streams_per_connection: DEFAULT_MAX_STREAMS_PER_CONNECTION,
            admin_limits: AdminLimits::default(),
            audit_queue: crate::audit::QUEUE_CAPACITY,
            watch_events_buffer: crate::events::CAPACITY,
            load_report_interval: crate::load::service::DEFAULT_INTERVAL,
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    State(#[from] StateError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("bug: gRPC reflection cannot be built: {0}")]
    Reflection(tonic_reflection::server::Error),
    #[error("bug: the translated state is inconsistent: {0}")]
    Inconsistent(#[from] InconsistentSnapshot),
    #[error("xDS server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(
        "refusing to serve xDS in plaintext on {0}: it is not a loopback address, so anyone who \
         can reach it could read every backend address and pose as a proxy. Give --tls-cert \
         and --tls-key (and --client-ca for mutual TLS), or --insecure to serve plaintext \
         anyway (behind a network you trust)"
    )]
    Plaintext(SocketAddr),
    #[error("TLS on the xDS port: {0}")]
    Tls(#[from] TlsError),
    #[error("bad glob: {0}")]
    Glob(#[from] globset::Error),
    #[error(
        "--operator needs mutual TLS (--client-ca): without a client certificate there is \
         no identity to check"
    )]
    OperatorsWithoutClientCa,
}

/// A bound, not yet running server.
pub struct Server {
    config: Config,
    xds: TcpListener,
    admin: TcpListener,
    /// TLS on the xDS port, when configured.
    tls: Option<Arc<ReloadingConfig>>,
    access: Arc<AccessPolicy>,
    initial_bytes: Vec<u8>,
    /// The state loaded at start and the content of the files it names.
    initial: (Arc<state::DesiredState>, Arc<state::files::Files>),
    cache: SnapshotCache,
    pipeline: Pipeline,
    /// The fleet's load reports: fed by LRS, read by the rollout and `/status`.
    load: LoadBoard,
    reports: Reports,
}

impl Server {
    /// Loads and validates the state file, then binds the xDS and admin ports. A missing
    /// or invalid file is an error here: switchyard never starts without a good state.
    pub async fn bind(config: Config) -> Result<Server, ServeError> {
        if config.tls.is_none() && !config.insecure && !config.xds_addr.ip().is_loopback() {
            return Err(ServeError::Plaintext(config.xds_addr));
        }
        let tls = config.tls.clone().map(ReloadingConfig::load).transpose()?;
        let mut config = config;
        match accept::raise_fd_limit() {
            Ok(limit) => {
                // Leave descriptors for the admin port, the state file, the audit log and
                // the runtime, so a full xDS port never starves them.
                let room = usize::try_from(limit).unwrap_or(usize::MAX);
                let room = room.saturating_sub(accept::RESERVED_FDS).max(1);
                if room < config.max_connections {
                    warn!(
                        fd_limit = limit,
                        max_connections = room,
                        "the file-descriptor limit is below --max-connections; lowering the cap"
                    );
                    config.max_connections = room;
                }
            }
            Err(e) => warn!(error = %e, "cannot raise the file-descriptor limit"),
        }
        let mutual_tls = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        if !config.operators.is_empty() && !mutual_tls {
            return Err(ServeError::OperatorsWithoutClientCa);
        }
        let access = Arc::new(AccessPolicy {
            node_identity: mutual_tls,
            allow_nodes: Globs::new(&config.allow_nodes)?,
            allow_clusters: Globs::new(&config.allow_clusters)?,
            operators: Globs::new(&config.operators)?,
        });
        // Only a regular file within the size limit, read on the blocking pool (a FIFO or
        // a hung mount at the path cannot stall the runtime).
        let path = config.state_path.clone();
        let bytes = tokio::task::spawn_blocking(move || state::read::read_bounded(&path))
            .await
            .expect("bug: the state file read panicked")
            .map_err(|e| StateError::Unreadable {
                path: config.state_path.clone(),
                reason: e.to_string(),
            })?;
        let state = Arc::new(state::load_bytes(&config.state_path, &bytes)?);
        let files = Arc::new(state::read_files(&config.state_path, &state).await?);
        let metrics = Metrics::new();
        let mut sinks: Vec<Arc<dyn EventSink>> = Vec::new();
        if let Some(path) = &config.audit_log {
            let log = AuditLog::with_capacity(path, config.audit_queue, metrics.clone())?;
            sinks.push(Arc::new(log));
        }
        let events = EventBus::with_capacity(sinks, config.watch_events_buffer);
        let registry = ProxyRegistry::default();
        let reports = Reports {
            board: StateBoard::default(),
            convergence: Convergence::new(registry.clone(), metrics.clone(), events.clone()),
            metrics,
            events,
            registry,
        };
        let load = LoadBoard::new(
            Retention::for_interval(config.load_report_interval),
            tokio::time::Instant::now(),
        );
        let restored = match &config.decisions {
            None => {
                if state
                    .services
                    .iter()
                    .any(|s| s.bake.is_some() || s.gate.is_some())
                {
                    warn!(
                        "without --decisions, a restart forgets automatic rollbacks and bakes in progress"
                    );
                }
                if state
                    .services
                    .iter()
                    .any(|s| s.rollout.is_some() || s.ramp.is_some())
                {
                    warn!(
                        "without --decisions, a restart mid-rollout puts the switch in force on every wave and at every step at once"
                    );
                }
                journal::Restored::default()
            }
            Some(path) => {
                match journal::read(
                    path,
                    tokio::time::Instant::now(),
                    std::time::SystemTime::now(),
                ) {
                    Ok(kept) => kept.unwrap_or_default(),
                    Err(e) => {
                        error!(error = %e, "cannot read the kept decisions; starting every service on its file's color");
                        journal::Restored::default()
                    }
                }
            }
        };
        // The schema guard applies from the first response: a color that cannot run
        // against the database's current version is not put in force at start either.
        let versions = crate::rollout::source::read_all(&state).await;
        let mut tracks = Tracks::start_guarded(&state, restored.tracks, &versions);
        tracks.restore_waves(&state, restored.waves, tokio::time::Instant::now());
        let controller = Controller::new(Some(Arc::new(load.clone())), config.load_report_interval);
        controller.seed(versions);
        let (pipeline, cache) = Pipeline::start(
            (state.clone(), files.clone()),
            state_watch::hash(&bytes),
            state_watch::file_info(&config.state_path),
            reports.clone(),
            translate_with,
            tracks,
            controller.clone(),
        )?;
        controller.watch_fleet(reports.registry.clone(), cache.clone());
        reports.convergence.watch_cache(cache.clone());
        let mut pipeline = pipeline;
        if let Some(path) = &config.decisions {
            pipeline.keep_decisions(path.clone());
        }
        let xds = listen(config.xds_addr, XDS_BACKLOG)?;
        let admin = listen(config.admin_addr, 128)?;
        Ok(Server {
            config,
            xds,
            admin,
            tls,
            access,
            initial_bytes: bytes,
            initial: (state, files),
            cache,
            pipeline,
            reports,
            load,
        })
    }

    /// The bound xDS address (the real port when 0 was asked for).
    pub fn xds_addr(&self) -> SocketAddr {
        self.xds
            .local_addr()
            .expect("bug: a bound listener has an address")
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("bug: a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then stops accepting, ends every ADS stream and
    /// waits (at most a few seconds) for connections to close.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Server {
            config,
            xds,
            admin,
            tls,
            access,
            initial_bytes,
            initial,
            cache,
            pipeline,
            reports,
            load,
        } = self;
        let Reports {
            board,
            metrics,
            events,
            convergence,
            registry,
        } = reports;
        let xds_addr = xds.local_addr().ok();
        let admin_addr = admin.local_addr().ok();

        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let _watcher = state_watch::spawn(
            &config.state_path,
            &initial_bytes,
            Some(initial),
            config.debounce,
            events_tx,
        )?;
        board.follow_watch(_watcher.health());
        let (stop_tx, stop_rx) = watch::channel(false);
        let convergence_task = tokio::spawn(convergence.clone().run());
        let state_path = config.state_path.clone();
        let pipeline = tokio::spawn(pipeline::run(
            pipeline,
            events_rx,
            move || state_watch::file_info(&state_path),
            stop_rx.clone(),
        ));

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        health.set_serving::<AdsServer>().await;

        let tracker = ProxyTracker {
            registry: registry.clone(),
            metrics: metrics.clone(),
            events: events.clone(),
            convergence,
        };
        let ads = AdsService::new(
            cache.clone(),
            Arc::new(tracker),
            access.clone(),
            config.stream_limits,
            format!("switchyard/{}", env!("CARGO_PKG_VERSION")),
        );
        let interval = config.load_report_interval;
        let lrs = LoadReporting::new(
            load.clone(),
            cache.clone(),
            access.clone(),
            metrics.clone(),
            interval,
            config.stream_limits,
        );
        health.set_serving::<LoadReporting>().await;
        let csds = CsdsService::new(registry.clone(), cache.clone());
        let api = SwitchyardApi::new(
            board.clone(),
            registry.clone(),
            cache.clone(),
            events.clone(),
        );
        health
            .set_serving::<ClientStatusDiscoveryServiceServer<CsdsService>>()
            .await;
        health
            .set_serving::<SwitchyardServer<SwitchyardApi>>()
            .await;
        let (reflection, reflection_v1alpha) =
            crate::grpc::reflection().map_err(ServeError::Reflection)?;
        let admin_router = admin::router(AdminState {
            board,
            registry,
            cache,
            metrics,
            load,
            events,
        });
        let mut admin_stop = stop_rx.clone();
        let admin_task = tokio::spawn(admin::serve(
            admin,
            admin_router,
            config.admin_limits,
            async move {
                let _ = admin_stop.wait_for(|s| *s).await;
            },
        ));
        info!(
            xds = %xds_addr.map(|a| a.to_string()).unwrap_or_default(),
            admin = %admin_addr.map(|a| a.to_string()).unwrap_or_default(),
            state = %config.state_path.display(),
            "switchyard serving"
        );

        let mut xds_stop = stop_rx.clone();
        // No HTTP/2 keepalive PINGs: they are a timer per connection, reset on every frame
        // received. Dead peers are found by the kernel's TCP keepalive instead (set on each
        // accepted connection), which costs this process nothing while proxies idle.
        let operators = operator_check(access);
        let max_connections = config.max_connections;
        let router = tonic::transport::Server::builder()
            .max_concurrent_streams(Some(config.max_streams_per_connection))
            .add_service(health_service)
            .add_service(InterceptedService::new(reflection, operators.clone()))
            .add_service(InterceptedService::new(
                reflection_v1alpha,
                operators.clone(),
            ))
            .add_service(ClientStatusDiscoveryServiceServer::with_interceptor(
                csds,
                operators.clone(),
            ))
            .add_service(SwitchyardServer::with_interceptor(api, operators))
            .add_service(AdsServer::new(ads))
            .add_service(lrs);
        let stopped = async move {
            let _ = xds_stop.wait_for(|s| *s).await;
        };
        let (grpc, tls_reload) = match tls {
            Some(tls) => {
                let incoming =
                    crate::tls::accept(accept::incoming(xds, max_connections), tls.clone());
                let grpc = tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped));
                (grpc, Some(tokio::spawn(tls.watch())))
            }
            None => {
                let grpc =
                    tokio::spawn(router.serve_with_incoming_shutdown(
                        accept::incoming(xds, max_connections),
                        stopped,
                    ));
                (grpc, None)
            }
        };

        shutdown.await;
        info!("shutting down");
        // Stopping the pipeline drops the snapshot writer, which ends every ADS stream, so
        // the gRPC server's graceful shutdown does not wait on proxies that never hang up.
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            let _ = pipeline.await;
            let grpc = grpc.await;
            let _ = admin_task.await;
            grpc
        })
        .await;
        convergence_task.abort();
        if let Some(task) = tls_reload {
            task.abort();
        }
        match drained {
            Ok(Ok(Err(e))) => Err(ServeError::Transport(e)),
            Ok(_) => Ok(()),
            Err(_) => {
                warn!("connections did not close within {DRAIN_TIMEOUT:?}; exiting anyway");
                Ok(())
            }
        }
    }
}

/// Lets a call to an operator service (CSDS, `switchyard.v1`, reflection) through when the
/// caller's certificate names an operator (`--operator`), or refuses it with
/// PERMISSION_DENIED and a log line.
fn operator_check(
    access: Arc<AccessPolicy>,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |req: tonic::Request<()>| {
        let certs = req
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs);
        match access.operator(certs.as_deref().map(Vec::as_slice)) {
            Ok(()) => Ok(req),
            Err(reason) => {
                warn!(reason, "operator call refused");
                Err(tonic::Status::permission_denied(reason))
            }
        }
    }
}

/// Pending connections the xDS port queues: a fleet reconnecting at once (a replica gone)
/// must not meet SYN drops and their one-second retransmit.
const XDS_BACKLOG: u32 = 4096;

/// Binds `addr` (SO_REUSEADDR, so a restart can take the port back at once) and listens.
fn listen(addr: SocketAddr, backlog: u32) -> Result<TcpListener, ServeError> {
    let bind = || -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(backlog)
    };
    bind().map_err(|source| ServeError::Bind { addr, source })
}
