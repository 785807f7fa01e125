//! Certificates for the TLS tests: a CA, a server certificate for switchyard and client
//! certificates, made fresh per test (rcgen) and written as PEM files to a temp dir.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use switchyard::tls::TlsFiles;
use tempfile::TempDir;

/// The DNS name switchyard's certificate is for (what `envoy/bootstrap-mtls.yaml` expects).
pub const SERVER_NAME: &str = "switchyard.example";

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA and the files it signed, in a temp dir deleted on drop.
pub struct Pki {
    dir: TempDir,
    name: String,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            name: name.to_owned(),
            ca,
        };
        std::fs::write(pki.ca_path(), pki.ca.pem()).unwrap();
        pki
    }

    /// The CA certificate (PEM).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join(format!("{}-ca.crt", self.name))
    }

    /// A certificate for `sans` (DNS names, IP addresses, or URIs such as SPIFFE IDs),
    /// signed by this CA, written as `<file>.crt` and `<file>.key`.
    pub fn issue(&self, file: &str, sans: &[&str]) -> Identity {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans
            .iter()
            .map(|s| {
                if let Ok(ip) = s.parse() {
                    SanType::IpAddress(ip)
                } else if s.contains("://") {
                    SanType::URI((*s).try_into().unwrap())
                } else {
                    SanType::DnsName((*s).try_into().unwrap())
                }
            })
            .collect();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let id = Identity {
            cert: self.dir.path().join(format!("{file}.crt")),
            key: self.dir.path().join(format!("{file}.key")),
        };
        write_atomically(&id.cert, &cert.pem());
        write_atomically(&id.key, &key.serialize_pem());
        id
    }

    /// switchyard's TLS files: a server certificate for [`SERVER_NAME`] and 127.0.0.1,
    /// and this CA as the client CA (mutual TLS).
    pub fn server_files(&self) -> TlsFiles {
        let id = self.issue("switchyard", &[SERVER_NAME, "127.0.0.1"]);
        TlsFiles {
            cert: id.cert,
            key: id.key,
            client_ca: Some(self.ca_path()),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Writes beside `path`, then renames over it, as a certificate rotation would.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
