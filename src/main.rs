//! The `switchyard` command: CLI parsing, logging, signals and exit codes. Everything else
//! lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use switchyard::admin::AdminLimits;
use switchyard::cli;
use switchyard::cli::status::StatusError;
use switchyard::render::snapshot_to_json;
use switchyard::server::{Config, DEFAULT_ADMIN_ADDR, DEFAULT_XDS_ADDR, ServeError, Server};
use switchyard::state::files::Files;
use switchyard::state::{self, StateError, watch::Debounce};
use switchyard::tls::{TlsError, TlsFiles};
use switchyard::translate::translate_with;

/// Where the files a state file names are looked for when relative: its directory.
fn base_dir(state_file: &std::path::Path) -> PathBuf {
    state_file.parent().map(PathBuf::from).unwrap_or_default()
}
use switchyard::xds::limits::StreamLimits;
use tracing::error;

/// jemalloc (the default `jemalloc` feature): less memory per idle ADS stream than the
/// system allocator, and a faster connect storm (BENCHMARKS.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit codes (from sysexits.h, so scripts can tell failures apart).
mod exit {
    /// `diff`: the two files differ for Envoy (like diff(1)).
    pub const DIFFERENT: u8 = 1;
    /// Bad command line.
    pub const USAGE: u8 = 64;
    /// The state file is invalid.
    pub const DATAERR: u8 = 65;
    /// The state file cannot be read.
    pub const NOINPUT: u8 = 66;
    /// `status`: switchyard cannot be reached, or did not answer like switchyard.
    pub const UNAVAILABLE: u8 = 69;
    /// A bug in switchyard.
    pub const SOFTWARE: u8 = 70;
    /// The OS refused something (a port in use, a directory that cannot be watched).
    pub const OSERR: u8 = 71;
}

const EXIT_CODES: &str = "\
Exit codes:
  0   success (validate: the file is valid; diff: no change for Envoy)
  1   diff: the two files differ for Envoy
  64  bad command line (serve: also plaintext xDS on a non-loopback address without
      --insecure, or TLS files that are not a usable certificate, key or CA)
  65  the state file is invalid (each problem printed as FILE:LINE:COLUMN: message)
  66  the state file (or a TLS file) cannot be read
  69  status: switchyard cannot be reached, or did not answer like switchyard
  70  internal error (a bug; please report it)
  71  operating system error (for example an address already in use)";

/// An Envoy xDS control plane for blue-green deployment.
///
/// Edit one desired-state file; switchyard validates it and streams clusters, endpoints,
/// listeners and routes to every connected Envoy over ADS, moving each service's traffic
/// between its blue and green environments without dropping a request.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// `serve`'s many flags make its variant large; the command is parsed once per process.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a state file to Envoy over ADS, reloading it whenever it is saved.
    ///
    /// The file is read at startup (a missing or invalid file is an error) and watched:
    /// every save is validated and, when good, pushed to every connected Envoy. A bad
    /// save is rejected with FILE:LINE:COLUMN messages (in the log and in GET /status) and
    /// every proxy keeps the last good config. The files the state names (credentials,
    /// CAs, client certificates; relative to the state file's directory) are read with it,
    /// served over SDS and read again every second: replacing one rotates it.
    Serve {
        /// The desired-state YAML file.
        #[arg(long, value_name = "PATH", env = "SWITCHYARD_STATE")]
        state: PathBuf,
        /// Address for gRPC: ADS (SotW), CSDS, switchyard.v1, health and server reflection.
        /// Port 0 picks a free port.
        #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_XDS_ADDR)]
        xds_addr: SocketAddr,
        /// Address for the admin HTTP server: / (a read-only live dashboard, updated from
        /// /events), /healthz, /readyz, /status, /metrics.
        #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_ADMIN_ADDR)]
        admin_addr: SocketAddr,
        /// Where the platform does not report closes (not Linux), a save still being
        /// written is read after the writer has been quiet this long; on Linux it is read
        /// when its writer closes the file. Also: how long a change of permissions or
        /// times alone waits.
        #[arg(long, value_name = "MS", default_value_t = 100)]
        debounce_quiet_ms: u64,
        /// ... and, where closes are not reported, at most this long after the write
        /// began.
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        debounce_max_ms: u64,
        /// Log format: `pretty` for people, `json` for log collectors.
        #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
        log_format: LogFormat,
        /// Append an audit trail to this file: one JSON object per line for every state
        /// accepted or rejected (content hash, per-service colors and weights before and
        /// after, file mtime and owner, the reason when rejected), every valid state that
        /// switchyard failed to translate (a bug), each proxy's acknowledgement of a
        /// state, each switch's completion, and each rollout decision (`rollout`: a gate
        /// waiting or passing, a switch given up or held, an automatic rollback and what
        /// tripped it). Flushed to disk per record; never
        /// truncated.
        #[arg(long, value_name = "PATH")]
        audit_log: Option<PathBuf>,
        /// Keep the decisions switchyard makes by itself (automatic rollbacks, switches
        /// given up at a gate's deadline, bakes in progress) in this file, so a restart
        /// keeps them: a rolled-back service stays on the color it went back to while the
        /// file still asks for the same color and `attempt`, and a bake resumes for what
        /// was left of its window. Without it a restart starts every service on its
        /// file's color. Written after each decision (a temporary file renamed over it).
        #[arg(long, value_name = "PATH")]
        decisions: Option<PathBuf>,
        /// Serve the xDS port over TLS with this certificate chain (PEM, leaf first).
        /// Reloaded when the file changes (checked every second); a certificate that
        /// fails to load is logged and the one in force stays.
        #[arg(long, value_name = "PEM", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Mutual TLS: every client of the xDS port (Envoy, grpcurl, `switchyard status`)
        /// must present a certificate signed by one of these CAs (PEM); others fail the
        /// handshake. Needs --tls-cert.
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        client_ca: Option<PathBuf>,
        /// Serve xDS in plaintext on an address that is not loopback. Without it, and
        /// without --tls-cert, such an address is refused: anyone who reaches the port
        /// could read every backend address and pose as a proxy.
        #[arg(long, conflicts_with = "tls_cert")]
        insecure: bool,
        /// Serve only proxies whose node id matches this glob (repeatable; `*` matches
        /// any run of characters). With --allow-cluster too, either may match. Others
        /// get PERMISSION_DENIED before anything is sent, and a log line.
        #[arg(long, value_name = "GLOB")]
        allow_node: Vec<String>,
        /// Serve only proxies whose node cluster matches this glob (repeatable).
        #[arg(long, value_name = "GLOB")]
        allow_cluster: Vec<String>,
        /// Only clients whose certificate has a DNS or URI name matching this glob may
        /// call CSDS, switchyard.v1 (and so `switchyard status`) and server reflection
        /// (repeatable; needs --client-ca). gRPC health stays open.
        #[arg(long, value_name = "GLOB", requires = "client_ca")]
        operator: Vec<String>,
        /// Open xDS connections at most; more wait in the accept backlog. Lowered to fit
        /// the file-descriptor limit (raised to its hard limit at startup), so a full xDS
        /// port never starves the admin port.
        #[arg(long, value_name = "N", default_value_t = switchyard::server::DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
        /// Concurrent gRPC calls per xDS connection (HTTP/2 streams).
        #[arg(long, value_name = "N", default_value_t = switchyard::server::DEFAULT_MAX_STREAMS_PER_CONNECTION)]
        max_streams_per_connection: u32,
        /// Largest request a client may send on an ADS or load reporting (LRS) stream, in
        /// bytes; a larger one ends the stream with RESOURCE_EXHAUSTED.
        #[arg(long, value_name = "BYTES", default_value_t = StreamLimits::default().max_request_bytes)]
        max_request_bytes: usize,
        /// How long a request may take to arrive once its first byte has; a slower one
        /// ends the stream with DEADLINE_EXCEEDED.
        #[arg(long, value_name = "MS", default_value_t = 10_000)]
        request_timeout_ms: u64,
        /// Most resource names one request may list (SotW), or one stream may subscribe to
        /// for one type (delta).
        #[arg(long, value_name = "N", default_value_t = StreamLimits::default().max_resource_names)]
        max_resource_names: usize,
        /// Largest node id + cluster + metadata + locality a proxy may send, in bytes.
        #[arg(long, value_name = "BYTES", default_value_t = StreamLimits::default().max_node_bytes)]
        max_node_bytes: usize,
        /// Requests read per second per ADS stream, sustained; faster ones are read later
        /// (not refused).
        #[arg(long, value_name = "N", default_value_t = StreamLimits::default().requests_per_second)]
        max_requests_per_second: u32,
        /// ... and in a burst.
        #[arg(long, value_name = "N", default_value_t = StreamLimits::default().request_burst)]
        request_burst: u32,
        /// Admin HTTP connections open at once; one more is closed as soon as it is
        /// accepted (so a flood of idle connections cannot exhaust the process).
        #[arg(long, value_name = "N", default_value_t = AdminLimits::DEFAULT_MAX_CONNECTIONS as u32,
              value_parser = clap::value_parser!(u32).range(1..))]
        admin_max_connections: u32,
        /// An admin HTTP connection that has not sent a request's headers within this long
        /// (a new one, or an idle keep-alive one) is closed.
        #[arg(long, value_name = "MS", default_value_t = AdminLimits::DEFAULT_HEADER_TIMEOUT.as_millis() as u64,
              value_parser = clap::value_parser!(u64).range(1..))]
        admin_header_timeout_ms: u64,
        /// Audit records queued for a slow disk at most; past it, records are dropped,
        /// counted (switchyard_audit_records_dropped_total) and reported in the audit log
        /// once the disk catches up. Emitters never wait on the disk.
        #[arg(long, value_name = "N", default_value_t = switchyard::audit::QUEUE_CAPACITY)]
        audit_queue: usize,
        /// Events kept for a WatchEvents reader that falls behind; one further behind is
        /// ended with RESOURCE_EXHAUSTED (it may call again).
        #[arg(long, value_name = "N", default_value_t = switchyard::events::CAPACITY)]
        watch_events_buffer: usize,
        /// How often each Envoy sends its load report (LRS: requests, 5xx errors and
        /// requests in flight per cluster; see `cluster_manager.load_stats_config` in
        /// envoy/bootstrap.yaml), e.g. `1s`, `500ms`. GET /status shows each color's load
        /// over the last 60 s; a proxy silent for three intervals no longer counts in
        /// flight; reports faster than two per interval (or one a second, whichever is more) are read later. From 100ms to 1h.
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = report_interval)]
        load_report_interval: Duration,
    },
    /// Check state files: exit 0 when valid, else print every problem as
    /// FILE:LINE:COLUMN: message and exit 65 (66 when a file cannot be read).
    ///
    /// Every file is checked; with several, the exit code is the most severe among them:
    /// 66 if any file cannot be read, else 65 if any is invalid, else 0.
    ///
    /// A valid file with `databases:` has their current schema versions read (as `serve`
    /// reads them) and gets warnings on stderr, exit code unchanged: a switch that would
    /// be held because the color does not list the current version, a color that could
    /// not take the traffic back, colors that share no version. A credential, CA or
    /// certificate file the state names that cannot be read here is a warning too (serve
    /// must be able to read it).
    Validate {
        /// The desired-state YAML file(s).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print the Envoy resources a state file becomes, as JSON with Envoy's own field
    /// names (the form of Envoy's /config_dump), in push order. Secrets show as
    /// `[redacted]`.
    Render {
        /// The desired-state YAML file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Show a running switchyard as tables: the state in force, the last rejected file,
    /// each service's active color and weights, and each proxy's sync status.
    ///
    /// Asks the switchyard.v1 API (GetState and ListProxies) on the xDS port. Every status
    /// shown is the server's. Per proxy, STATUS is `synced` (every subscribed resource type
    /// acknowledged at its latest version), `stale` (a version sent and not acknowledged
    /// yet, or a newer one due), `REJECTED` (Envoy rejected the latest version of a type;
    /// its message is printed under the proxy) or `connecting` (nothing subscribed yet).
    /// Per type: `ok`, `stale`, `rejected`, or `-` when not subscribed.
    ///
    /// Exits 69 when the server cannot be reached within 5 seconds, is not switchyard's
    /// switchyard.v1 (the admin port, for instance), or answers without a field the
    /// tables need (the message names it).
    Status {
        /// Address of switchyard's gRPC port (`serve --xds-addr`).
        #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_XDS_ADDR, value_parser = host_port)]
        xds_addr: String,
        /// Print GetState and ListProxies as one JSON object, {"state": ..., "proxies":
        /// [...]}, in proto3 JSON with the proto's field names (`state` is null while no
        /// valid state is loaded), instead of tables.
        #[arg(long)]
        json: bool,
        /// No longer read: `status` asks the xDS port (--xds-addr). Given, exits 64 saying so.
        #[arg(long, value_name = "HOST:PORT", hide = true)]
        admin_addr: Option<String>,
        /// Connect over TLS, trusting this CA (PEM) for the server's certificate (the
        /// server runs with `serve --tls-cert`).
        #[arg(long, value_name = "PEM")]
        tls_ca: Option<PathBuf>,
        /// This client's certificate (PEM), for mutual TLS (`serve --client-ca`; with
        /// `--operator`, it must carry an operator's name).
        #[arg(long, value_name = "PEM", requires_all = ["tls_key", "tls_ca"])]
        tls_cert: Option<PathBuf>,
        /// The private key of --tls-cert (PEM).
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// The name the server's certificate must carry (default: the host of
        /// --xds-addr).
        #[arg(long, value_name = "NAME", requires = "tls_ca")]
        tls_server_name: Option<String>,
    },
    /// Show what replacing state file OLD by NEW would change for Envoy.
    ///
    /// First the change in the state's terms (color switches, listeners and services
    /// added or removed, endpoints and domains changed); then, per resource type in push
    /// order (clusters, endpoints, secrets, listeners, routes), every resource added (+),
    /// removed (-) or changed (~), a changed one with a line diff of its JSON as
    /// `switchyard render` prints it (a secret whose content changes says so, and shows
    /// nothing of it); then a one-line summary.
    ///
    /// Exits 0 when Envoy would see no change and 1 when it would (like diff(1)); 65 or
    /// 66 when a file is invalid or unreadable (66 when one is unreadable, whichever),
    /// with each problem printed as `validate` prints it.
    ///
    /// With `databases:`, NEW gets `validate`'s schema warnings on stderr, plus one for
    /// each color the change strands (it no longer lists the current schema version).
    Diff {
        /// The state file in force (or the one before the change).
        #[arg(value_name = "OLD")]
        old: PathBuf,
        /// The state file to compare it with.
        #[arg(value_name = "NEW")]
        new: PathBuf,
    },
    /// Print a JSON Schema of the state file, so editors validate it as you type.
    #[command(after_help = SCHEMA_HELP)]
    Schema,
}

const SCHEMA_HELP: &str = "\
With the YAML language server (VS Code's YAML extension, Neovim, Helix, ...):
  switchyard schema > switchyard.schema.json
then make this the first line of the state file:
  # yaml-language-server: $schema=./switchyard.schema.json
(or map the schema to your state files in the editor's yaml.schemas setting).
The schema checks each entry's shape; `switchyard validate` also checks references
between entries (a service's listener, unique names and domains).";

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(exit::USAGE),
            };
        }
    };
    match cli.command {
        Command::Validate { files } => validate(&files),
        Command::Render { file } => render(&file),
        Command::Status {
            xds_addr,
            json,
            admin_addr,
            tls_ca,
            tls_cert,
            tls_key,
            tls_server_name,
        } => {
            let tls = tls_ca.map(|ca| cli::status::ClientTls {
                ca,
                identity: tls_cert.zip(tls_key),
                server_name: tls_server_name,
            });
            status(&xds_addr, tls.as_ref(), json, admin_addr.as_deref())
        }
        Command::Diff { old, new } => diff(&old, &new),
        Command::Schema => {
            print!("{}", cli::schema::schema_text());
            ExitCode::SUCCESS
        }
        Command::Serve {
            state,
            xds_addr,
            admin_addr,
            debounce_quiet_ms,
            debounce_max_ms,
            log_format,
            audit_log,
            decisions,
            tls_cert,
            tls_key,
            client_ca,
            insecure,
            allow_node,
            allow_cluster,
            operator,
            max_connections,
            max_streams_per_connection,
            max_request_bytes,
            request_timeout_ms,
            max_resource_names,
            max_node_bytes,
            max_requests_per_second,
            request_burst,
            admin_max_connections,
            admin_header_timeout_ms,
            audit_queue,
            watch_events_buffer,
            load_report_interval,
        } => {
            init_logging(log_format);
            let config = Config {
                state_path: state,
                xds_addr,
                admin_addr,
                debounce: Debounce {
                    quiet: Duration::from_millis(debounce_quiet_ms),
                    max_wait: Duration::from_millis(debounce_max_ms.max(debounce_quiet_ms)),
                    ..Debounce::default()
                },
                audit_log,
                decisions,
                tls: tls_cert.zip(tls_key).map(|(cert, key)| TlsFiles {
                    cert,
                    key,
                    client_ca,
                }),
                insecure,
                allow_nodes: allow_node,
                allow_clusters: allow_cluster,
                operators: operator,
                stream_limits: StreamLimits {
                    max_request_bytes,
                    request_timeout: Duration::from_millis(request_timeout_ms),
                    max_resource_names,
                    max_node_bytes,
                    requests_per_second: max_requests_per_second,
                    request_burst,
                },
                max_connections,
                max_streams_per_connection,
                admin_limits: AdminLimits {
                    max_connections: admin_max_connections as usize,
                    header_timeout: Duration::from_millis(admin_header_timeout_ms),
                },
                audit_queue,
                watch_events_buffer,
                load_report_interval,
            };
            serve(config)
        }
    }
}

/// `--load-report-interval`: a duration from 100 ms to an hour.
fn report_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        return Err(format!("{s} is not between 100ms and 1h"));
    }
    Ok(d)
}

/// The exit code for a state file that failed to load. The more severe failure has the
/// higher code: a file that cannot be read (66) over one that is invalid (65).
fn state_exit(e: &StateError) -> u8 {
    match e {
        StateError::Unreadable { .. } => exit::NOINPUT,
        StateError::Invalid { .. } => exit::DATAERR,
    }
}

fn state_exit_code(e: &StateError) -> ExitCode {
    ExitCode::from(state_exit(e))
}

fn validate(files: &[PathBuf]) -> ExitCode {
    // The most severe failure among all the files, whatever their order (0: none).
    let mut most_severe = 0;
    for file in files {
        match state::load(file) {
            Ok(s) => {
                println!(
                    "{}: ok ({} listeners, {} services, version {})",
                    file.display(),
                    s.listeners.len(),
                    s.services.len(),
                    s.version()
                );
                let versions = cli::guard::current_versions(&s);
                for line in cli::guard::version_lines(file, &versions) {
                    eprintln!("{line}");
                }
                for line in cli::guard::warning_lines(file, None, &s, &versions) {
                    eprintln!("{line}");
                }
                // The files it names are read by `serve`, maybe on another machine: one
                // that cannot be read here is a warning, not an error.
                if let Err(problems) = Files::read(&s, &base_dir(file)) {
                    for p in problems {
                        eprintln!(
                            "{}:{}:{}: warning: {} (serve rejects the state until it can read it)",
                            file.display(),
                            p.line,
                            p.column,
                            p.message
                        );
                    }
                }
            }
            Err(e) => {
                for line in e.lines() {
                    eprintln!("{line}");
                }
                most_severe = most_severe.max(state_exit(&e));
            }
        }
    }
    ExitCode::from(most_severe)
}

fn render(file: &std::path::Path) -> ExitCode {
    let state = match state::load(file) {
        Ok(s) => s,
        Err(e) => {
            for line in e.lines() {
                eprintln!("{line}");
            }
            return state_exit_code(&e);
        }
    };
    let files = Files::read_what_can_be(&state, &base_dir(file));
    let json = translate_with(&state, &files)
        .map_err(|e| e.to_string())
        .and_then(|s| snapshot_to_json(&s).map_err(|e| e.to_string()));
    match json {
        Ok(json) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&json).expect("bug: JSON values always print")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchyard: bug: {e}");
            ExitCode::from(exit::SOFTWARE)
        }
    }
}

/// Checks a `HOST:PORT` (a name or an IP, `[v6]` in brackets) without resolving it.
fn host_port(s: &str) -> Result<String, String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.to_owned()),
        _ => Err(format!(
            "`{s}` is not HOST:PORT (for example 127.0.0.1:18000)"
        )),
    }
}

fn status(
    xds_addr: &str,
    tls: Option<&cli::status::ClientTls>,
    json: bool,
    admin_addr: Option<&str>,
) -> ExitCode {
    if let Some(admin_addr) = admin_addr {
        eprintln!(
            "switchyard: `status --admin-addr {admin_addr}` is no longer supported: status now \
             asks switchyard's gRPC API on the xDS port; use --xds-addr HOST:PORT (the address \
             given to `serve --xds-addr`, default {DEFAULT_XDS_ADDR}) instead"
        );
        return ExitCode::from(exit::USAGE);
    }
    match cli::status::status(xds_addr, tls, json) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchyard: {e}");
            ExitCode::from(match e {
                StatusError::Runtime(_) => exit::OSERR,
                StatusError::TlsFile { .. } => exit::NOINPUT,
                StatusError::Unreachable { .. }
                | StatusError::NotSwitchyard { .. }
                | StatusError::BadAnswer { .. } => exit::UNAVAILABLE,
            })
        }
    }
}

fn diff(old: &std::path::Path, new: &std::path::Path) -> ExitCode {
    // Both files are read and every problem in either is printed, as `validate` would.
    // The exit code is the most severe of the two failures, as with `validate`.
    let (a, b) = (state::load(old), state::load(new));
    let mut most_severe = 0;
    for e in [&a, &b].into_iter().filter_map(|r| r.as_ref().err()) {
        for line in e.lines() {
            eprintln!("{line}");
        }
        most_severe = most_severe.max(state_exit(e));
    }
    let (Ok(a), Ok(b)) = (a, b) else {
        return ExitCode::from(most_severe);
    };
    let (a_files, b_files) = (
        Files::read_what_can_be(&a, &base_dir(old)),
        Files::read_what_can_be(&b, &base_dir(new)),
    );
    match cli::diff::diff((&a, &a_files), (&b, &b_files)) {
        Ok(d) => {
            print!(
                "{}",
                d.render(&old.display().to_string(), &new.display().to_string())
            );
            let versions = cli::guard::current_versions(&b);
            for line in cli::guard::warning_lines(new, Some(&a), &b, &versions) {
                eprintln!("{line}");
            }
            if d.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(exit::DIFFERENT)
            }
        }
        Err(e) => {
            eprintln!("switchyard: {e}");
            ExitCode::from(exit::SOFTWARE)
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,h2=warn,tower=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn serve(config: Config) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(exit::OSERR);
        }
    };
    let result = runtime.block_on(async move {
        let server = Server::bind(config).await?;
        // Printed on stdout so scripts (and tests using port 0) can read the real ports.
        println!(
            "switchyard listening xds={} admin={}",
            server.xds_addr(),
            server.admin_addr()
        );
        server.run(shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match &e {
                ServeError::State(state_error) => {
                    for line in state_error.lines() {
                        eprintln!("{line}");
                    }
                }
                other => error!(error = %other, "switchyard stopped"),
            }
            ExitCode::from(match e {
                ServeError::State(StateError::Unreadable { .. }) => exit::NOINPUT,
                ServeError::State(StateError::Invalid { .. }) => exit::DATAERR,
                ServeError::Tls(TlsError::Read { .. }) => exit::NOINPUT,
                ServeError::Plaintext(_)
                | ServeError::Tls(_)
                | ServeError::Glob(_)
                | ServeError::OperatorsWithoutClientCa => exit::USAGE,
                ServeError::Bind { .. } | ServeError::Watch(_) | ServeError::Audit(_) => {
                    exit::OSERR
                }
                ServeError::Inconsistent(_)
                | ServeError::Transport(_)
                | ServeError::Reflection(_) => exit::SOFTWARE,
            })
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (Kubernetes' stop signal).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
