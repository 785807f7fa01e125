//! TLS on the xDS port (`serve --tls-cert --tls-key`, and `--client-ca` for mutual TLS).
//!
//! rustls (with ring) through tokio-rustls. The handshake happens in switchyard's own accept
//! stream, not in tonic, for two reasons: the certificates are reloaded when their files
//! change (a rotated certificate takes effect for new connections without a restart), and
//! a client that stalls its handshake holds one of [`MAX_HANDSHAKES`] slots for at most
//! [`HANDSHAKE_TIMEOUT`] instead of the accept loop. Each accepted stream then carries its
//! peer's certificates to the gRPC services (tonic's `TlsConnectInfo`).
//!
//! With `--client-ca`, a client must present a certificate signed by one of its CAs, or
//! the handshake fails: no request of it ever reaches a service.

use std::fs;
use std::future::ready;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::{debug, info, warn};

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes under way at once; more connections wait in the accept queue.
pub const MAX_HANDSHAKES: usize = 256;
/// How often the certificate files are looked at for a change.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The files TLS is configured from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to: mutual TLS. `None`:
    /// clients are not asked for a certificate.
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no PEM private key in it ({reason})")]
    NoKey { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("{cert} and {key} do not make a usable server identity: {reason}")]
    BadPair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The rustls configuration for `files`, accepting HTTP/2 only (gRPC).
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?).map_err(|e| TlsError::NoKey {
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("bug: ring supports the default TLS versions");
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let bad = |reason: String| TlsError::BadCa {
                path: ca.clone(),
                reason,
            };
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| bad(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::BadPair {
            cert: files.cert.clone(),
            key: files.key.clone(),
            reason: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// What a file looked like when last read: a change to any of them means reload.
type Stamp = Vec<Option<(SystemTime, u64)>>;

/// The TLS configuration in force, reloaded when its files change. Shared (`Arc`).
#[derive(Debug)]
pub struct ReloadingConfig {
    files: TlsFiles,
    /// Read for every handshake, replaced on a reload: a std `RwLock`, held for an `Arc`
    /// clone, never across an await.
    current: RwLock<Arc<ServerConfig>>,
    /// The files as last loaded (or tried).
    stamp: Mutex<Stamp>,
}

impl ReloadingConfig {
    /// Loads `files`; an error here stops `serve` from starting.
    pub fn load(files: TlsFiles) -> Result<Arc<ReloadingConfig>, TlsError> {
        let stamp = stamp(&files);
        let config = server_config(&files)?;
        Ok(Arc::new(ReloadingConfig {
            files,
            current: RwLock::new(config),
            stamp: Mutex::new(stamp),
        }))
    }

    /// The configuration for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .expect("bug: TLS config lock poisoned")
            .clone()
    }

    /// Reloads the configuration if a file changed since the last look. A configuration
    /// that fails to load is logged and the one in force stays. Returns what happened
    /// (`None`: nothing changed).
    pub fn reload_if_changed(&self) -> Option<Result<(), TlsError>> {
        let now = stamp(&self.files);
        {
            let mut last = self.stamp.lock().expect("bug: TLS stamp lock poisoned");
            if *last == now {
                return None;
            }
            *last = now;
        }
        let result = server_config(&self.files).map(|config| {
            *self.current.write().expect("bug: TLS config lock poisoned") = config;
        });
        match &result {
            Ok(()) => info!(cert = %self.files.cert.display(), "TLS certificates reloaded"),
            Err(e) => {
                warn!(error = %e, "TLS certificates changed but cannot be loaded; keeping the ones in force")
            }
        }
        Some(result)
    }

    /// Looks at the files every [`RELOAD_INTERVAL`] until the task is dropped.
    pub async fn watch(self: Arc<Self>) {
        loop {
            tokio::time::sleep(RELOAD_INTERVAL).await;
            self.reload_if_changed();
        }
    }
}

fn stamp(files: &TlsFiles) -> Stamp {
    [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| {
        // Follows symlinks: a Kubernetes Secret's files are swapped through `..data`.
        let m = fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    })
    .collect()
}

/// TLS connections from `tcp`: each accepted TCP connection's handshake, up to
/// [`MAX_HANDSHAKES`] at once and each within [`HANDSHAKE_TIMEOUT`]. A failed handshake (no
/// client certificate, one from another CA, not TLS at all) is logged, with the peer's
/// address and rustls' reason, and dropped.
pub fn accept<IO>(
    tcp: impl Stream<Item = io::Result<IO>> + Send + 'static,
    config: Arc<ReloadingConfig>,
) -> impl Stream<Item = io::Result<TlsStream<IO>>> + Send + 'static
where
    IO: AsyncRead + AsyncWrite + Connected<ConnectInfo = TcpConnectInfo> + Unpin + Send + 'static,
{
    tcp.map(move |conn| {
        let acceptor = TlsAcceptor::from(config.current());
        async move {
            let conn = conn?;
            let peer = conn.connect_info().remote_addr();
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(conn)).await {
                Ok(Ok(tls)) => Ok(Some(tls)),
                Ok(Err(e)) => {
                    info!(?peer, error = %e, "TLS handshake refused");
                    Ok(None)
                }
                Err(_) => {
                    debug!(?peer, "TLS handshake timed out");
                    Ok(None)
                }
            }
        }
    })
    .buffer_unordered(MAX_HANDSHAKES)
    .filter_map(|r: io::Result<Option<TlsStream<IO>>>| ready(r.transpose()))
}
