//! The `switchyard` command: CLI parsing, logging, signals and exit codes. Everything else
//! lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use switchyard::render::snapshot_to_json;
use switchyard::server::{Config, DEFAULT_ADMIN_ADDR, DEFAULT_XDS_ADDR, ServeError, Server};
use switchyard::state::{self, StateError, watch::Debounce};
use switchyard::translate::translate;
use tracing::error;

/// Exit codes (from sysexits.h, so scripts can tell failures apart).
mod exit {
    /// Bad command line.
    pub const USAGE: u8 = 64;
    /// The state file is invalid.
    pub const DATAERR: u8 = 65;
    /// The state file cannot be read.
    pub const NOINPUT: u8 = 66;
    /// A bug in switchyard.
    pub const SOFTWARE: u8 = 70;
    /// The OS refused something (a port in use, a directory that cannot be watched).
    pub const OSERR: u8 = 71;
}

const EXIT_CODES: &str = "\
Exit codes:
  0   success (validate: the file is valid)
  64  bad command line
  65  the state file is invalid (each problem printed as FILE:LINE:COLUMN: message)
  66  the state file cannot be read
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

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a state file to Envoy over ADS, reloading it whenever it is saved.
    ///
    /// The file is read at startup (a missing or invalid file is an error) and watched:
    /// every save is validated and, when good, pushed to every connected Envoy. A bad
    /// save is rejected with FILE:LINE:COLUMN messages (in the log and in GET /status) and
    /// every proxy keeps the last good config.
    Serve {
        /// The desired-state YAML file.
        #[arg(long, value_name = "PATH", env = "SWITCHYARD_STATE")]
        state: PathBuf,
        /// Address for xDS (gRPC: ADS and health). Port 0 picks a free port.
        #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_XDS_ADDR)]
        xds_addr: SocketAddr,
        /// Address for the admin HTTP server (/healthz, /readyz, /status, /metrics).
        #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_ADMIN_ADDR)]
        admin_addr: SocketAddr,
        /// A save that is still being written (no close or rename seen) is read after the
        /// writer has been quiet this long.
        #[arg(long, value_name = "MS", default_value_t = 100)]
        debounce_quiet_ms: u64,
        /// ... and at most this long after the write began.
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        debounce_max_ms: u64,
        /// Log format: `pretty` for people, `json` for log collectors.
        #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
        log_format: LogFormat,
    },
    /// Check a state file: exit 0 when valid, else print every problem as
    /// FILE:LINE:COLUMN: message and exit 65.
    Validate {
        /// The desired-state YAML file(s).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print the Envoy resources a state file becomes, as JSON with Envoy's own field
    /// names (the form of Envoy's /config_dump), in push order.
    Render {
        /// The desired-state YAML file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

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
        Command::Serve {
            state,
            xds_addr,
            admin_addr,
            debounce_quiet_ms,
            debounce_max_ms,
            log_format,
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
            };
            serve(config)
        }
    }
}

fn state_exit_code(e: &StateError) -> ExitCode {
    match e {
        StateError::Unreadable { .. } => ExitCode::from(exit::NOINPUT),
        StateError::Invalid { .. } => ExitCode::from(exit::DATAERR),
    }
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut worst = ExitCode::SUCCESS;
    for file in files {
        match state::load(file) {
            Ok(s) => println!(
                "{}: ok ({} listeners, {} services, version {})",
                file.display(),
                s.listeners.len(),
                s.services.len(),
                s.version()
            ),
            Err(e) => {
                for line in e.lines() {
                    eprintln!("{line}");
                }
                worst = state_exit_code(&e);
            }
        }
    }
    worst
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
    let json = translate(&state)
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
                ServeError::Bind { .. } | ServeError::Watch(_) | ServeError::Admin(_) => {
                    exit::OSERR
                }
                ServeError::Inconsistent(_) | ServeError::Transport(_) => exit::SOFTWARE,
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
