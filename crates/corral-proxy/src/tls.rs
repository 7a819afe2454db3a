//! TLS for clients: the certificates (`tls-cert` with `tls-key`, and more in
//! `tls-certificates`, each chosen by the names its certificate covers when a client
//! asks for one by SNI), read and checked when the proxy starts and again when it
//! reloads; and the rustls server side (TLS 1.2 and 1.3 only, ALPN `h2` then
//! `http/1.1`).
//!
//! A client that names no host, or one no certificate covers, gets `tls-cert`'s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::{Config, TlsCertificate};

/// Why the certificates cannot be used; the proxy does not start (or a reload changes
/// nothing).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {what} {path}: {source}")]
    Unreadable {
        /// `tls-cert` or `tls-key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not what it should be: no certificate, no private key, bad PEM.
    #[error("{what} {path}: {why}")]
    Invalid {
        /// `tls-cert` or `tls-key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The key is not the certificate's.
    #[error("tls-key {key} does not match the certificate in {cert}")]
    Mismatch {
        /// The certificate's file.
        cert: PathBuf,
        /// The key's file.
        key: PathBuf,
    },
    /// A certificate in `tls-certificates` names no host to be chosen by.
    #[error(
        "the certificate in {cert} names no DNS host (subjectAltName), so no client can choose it by SNI"
    )]
    NoNames {
        /// The certificate's file.
        cert: PathBuf,
    },
}

/// The certificates the TLS listener offers.
pub(crate) struct Certificates {
    default: Arc<CertifiedKey>,
    /// By exact host name, lower case.
    by_name: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` as `example.com`.
    by_wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .field("wildcards", &self.by_wildcard.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// The certificates `config` names, read and checked; `None` when TLS is off.
    pub(crate) fn load(config: &Config) -> Result<Option<Certificates>, TlsError> {
        let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
            return Ok(None);
        };
        let (default, _) = certified(cert, key)?;
        let mut certificates = Certificates {
            default: Arc::new(default),
            by_name: HashMap::new(),
            by_wildcard: HashMap::new(),
        };
        // The first entry naming a host wins, as the list is read.
        for TlsCertificate { cert, key } in &config.tls_certificates {
            let (certified, names) = certified(cert, key)?;
            if names.is_empty() {
                return Err(TlsError::NoNames { cert: cert.clone() });
            }
            let certified = Arc::new(certified);
            for name in names {
                let name = name.to_ascii_lowercase();
                let map = match name.strip_prefix("*.") {
                    Some(_) => &mut certificates.by_wildcard,
                    None => &mut certificates.by_name,
                };
                let name = name.strip_prefix("*.").map_or(name.clone(), str::to_owned);
                map.entry(name).or_insert_with(|| certified.clone());
            }
        }
        Ok(Some(certificates))
    }

    /// The certificate for a client that asked for `name`.
    fn choose(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name.map(str::to_ascii_lowercase) else {
            return self.default.clone();
        };
        if let Some(exact) = self.by_name.get(&name) {
            return exact.clone();
        }
        // A wildcard covers one label: `*.example.com` covers `a.example.com`.
        name.split_once('.')
            .and_then(|(_, parent)| self.by_wildcard.get(parent))
            .unwrap_or(&self.default)
            .clone()
    }
}

/// A certificate chain and its key from PEM files, checked to belong together, with
/// the DNS names the certificate covers.
fn certified(cert: &Path, key: &Path) -> Result<(CertifiedKey, Vec<String>), TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|items| items.collect::<Result<Vec<_>, _>>())
        .map_err(|error| pem_error("tls-cert", cert, error))?;
    if chain.is_empty() {
        return Err(pem_error("tls-cert", cert, pem::Error::NoItemsFound));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error("tls-key", key, e))?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(private)
        .map_err(|error| TlsError::Invalid {
            what: "tls-key",
            path: key.to_owned(),
            why: format!("not a usable private key: {error}"),
        })?;
    let end_entity =
        webpki::EndEntityCert::try_from(&chain[0]).map_err(|error| TlsError::Invalid {
            what: "tls-cert",
            path: cert.to_owned(),
            why: format!("not an X.509 certificate: {error}"),
        })?;
    let names = end_entity.valid_dns_names().map(str::to_owned).collect();
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| TlsError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
    })?;
    Ok((certified, names))
}

fn pem_error(what: &'static str, path: &Path, error: pem::Error) -> TlsError {
    let path = path.to_owned();
    match error {
        pem::Error::Io(source) => TlsError::Unreadable { what, path, source },
        pem::Error::NoItemsFound => TlsError::Invalid {
            what,
            path,
            why: match what {
                "tls-key" => "no private key (PEM) in the file".to_owned(),
                _ => "no certificate (PEM) in the file".to_owned(),
            },
        },
        other => TlsError::Invalid {
            what,
            path,
            why: format!("not valid PEM: {other}"),
        },
    }
}

/// Chooses each handshake's certificate from the current [`Certificates`], which a
/// reload replaces.
#[derive(Debug)]
struct Resolver(ArcSwap<Certificates>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load().choose(hello.server_name()))
    }
}

/// The TLS side of a listener: accepts handshakes with the current certificates.
#[derive(Clone)]
pub(crate) struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    resolver: Arc<Resolver>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("certificates", &self.resolver.0.load())
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// TLS 1.2 and 1.3 with `certificates`, offering HTTP/2 and HTTP/1.1 by ALPN.
    pub(crate) fn new(certificates: Certificates) -> Tls {
        let resolver = Arc::new(Resolver(ArcSwap::from_pointee(certificates)));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            resolver,
        }
    }

    /// Handshakes from now on use `certificates`; those under way finish with the old.
    pub(crate) fn replace(&self, certificates: Certificates) {
        self.resolver.0.store(Arc::new(certificates));
    }

    /// Accepts a client's handshake.
    pub(crate) async fn accept(
        &self,
        stream: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
        self.acceptor.accept(stream).await
    }
}
