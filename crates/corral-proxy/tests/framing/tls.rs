//! TLS to the proxy, for a quarter of the cases: the proxy serves its listener with a
//! certificate made once per run, and the clients (HTTP/1.1, and HTTP/2 by ALPN where
//! the case speaks h2c) connect through rustls, so the same framing is checked through
//! the TLS listener's handshake, its first-bytes sniffing and its ALPN.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A connection to the proxy, plain or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The run's certificate for `localhost`: its files and its DER.
struct Certificate {
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

fn certificate() -> &'static Certificate {
    static MADE: OnceLock<Certificate> = OnceLock::new();
    MADE.get_or_init(|| {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("a certificate");
        let dir = std::env::temp_dir().join(format!("corral-framing-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the certificate");
        let (cert, key) = (dir.join("proxy.crt"), dir.join("proxy.key"));
        std::fs::write(&cert, made.cert.pem()).expect("the certificate file");
        std::fs::write(&key, made.signing_key.serialize_pem()).expect("the key file");
        Certificate {
            cert,
            key,
            der: made.cert.der().clone(),
        }
    })
}

/// The proxy's options that make its listener speak TLS.
pub(crate) fn proxy_options() -> String {
    let made = certificate();
    format!(
        "tls-cert = {:?}\ntls-key = {:?}\n",
        made.cert.display().to_string(),
        made.key.display().to_string()
    )
}

/// A connection to the proxy at `addr`; over TLS offering `alpn` when `tls`.
pub(crate) async fn connect(
    addr: SocketAddr,
    tls: bool,
    alpn: &[u8],
) -> std::io::Result<Box<dyn Io>> {
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    if !tls {
        return Ok(Box::new(stream));
    }
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(certificate().der.clone())
        .map_err(std::io::Error::other)?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    Ok(Box::new(connector.connect(name, stream).await?))
}
