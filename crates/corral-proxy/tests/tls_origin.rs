//! `https://` origins: fetched over TLS with rustls (HTTP/2 by ALPN), trusting a
//! private CA named by `upstream-ca-file`, and refused (502, saying why) when the
//! certificate is not trusted. The origin is a real TLS server on 127.0.0.1 with a certificate made
//! for the test.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use corral_proxy::{Bound, Config};
use http::{Request, Response};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::{get, start};

/// A TLS origin for `localhost`, and the PEM file of its (self-signed) certificate.
struct TlsOrigin {
    addr: SocketAddr,
    ca_file: PathBuf,
    requests: Arc<AtomicUsize>,
}

impl TlsOrigin {
    async fn start() -> TlsOrigin {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let ca_file = std::env::temp_dir().join(format!(
            "corral-tls-origin-{}-{}.pem",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::write(&ca_file, certified.cert.pem()).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(certified.cert.der().to_vec())],
            key,
        )
        .unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, counted) = (acceptor.clone(), counted.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request: Request<_>| {
                        counted.fetch_add(1, Ordering::SeqCst);
                        let version = format!("{:?}", request.version());
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                Response::builder()
                                    .header("cache-control", "max-age=60")
                                    .header("x-origin-version", version)
                                    .body(Full::new(Bytes::from_static(b"over tls")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TlsOrigin {
            addr,
            ca_file,
            requests,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    fn ca_toml(&self) -> String {
        format!(
            "upstream-ca-file = {:?}\n",
            self.ca_file.display().to_string()
        )
    }
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0u8)
}

#[tokio::test]
async fn a_forward_proxy_fetches_https_urls_over_tls_and_caches_them() {
    let origin = TlsOrigin::start().await;
    let proxy = start(&origin.ca_toml()).await;
    let url = origin.url("/page");
    let first = get(proxy.addr, &url, &[]).await;
    assert_eq!(
        (first.status.as_u16(), first.text(), first.header("x-cache")),
        (200, "over tls", "MISS")
    );
    assert_eq!(
        first.header("x-origin-version"),
        "HTTP/2.0",
        "HTTP/2 negotiated by ALPN"
    );
    let second = get(proxy.addr, &url, &[]).await;
    assert_eq!(
        (second.text(), second.header("x-cache")),
        ("over tls", "HIT")
    );
    assert_eq!(origin.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_reverse_proxy_in_front_of_an_https_origin() {
    let origin = TlsOrigin::start().await;
    let toml = format!("upstream = {:?}\n{}", origin.url(""), origin.ca_toml());
    let proxy = start(&toml).await;
    let got = get(proxy.addr, &format!("http://{}/x", proxy.addr), &[]).await;
    assert_eq!((got.status.as_u16(), got.text()), (200, "over tls"));
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_502_that_says_why() {
    let origin = TlsOrigin::start().await;
    let proxy = start("").await;
    let got = get(proxy.addr, &origin.url("/page"), &[]).await;
    assert_eq!(got.status.as_u16(), 502, "{}", got.text());
    assert_eq!(
        got.text(),
        "TLS handshake with localhost failed: invalid peer certificate: UnknownIssuer\n"
    );
    assert_eq!(origin.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_ca_file_without_certificates_stops_the_proxy_from_starting() {
    let empty = std::env::temp_dir().join(format!("corral-empty-{}.pem", rand_suffix()));
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let mut table: toml::Table = "listen = \"127.0.0.1:0\"\nadmin = false\n".parse().unwrap();
    table.insert(
        "upstream-ca-file".into(),
        toml::Value::String(empty.display().to_string()),
    );
    let config = Config::from_toml(table).unwrap();
    let error = Bound::bind(config).await.expect_err("refused").to_string();
    assert!(error.contains("no certificates"), "{error}");
    let _ = std::fs::remove_file(empty);
}

#[tokio::test]
async fn a_reverse_proxy_does_not_tell_clients_the_names_its_origins_certificate_holds() {
    let origin = TlsOrigin::start().await;
    // The certificate is for `localhost`, the upstream named by its address.
    let toml = format!(
        "upstream = \"https://{}\"\n{}",
        origin.addr,
        origin.ca_toml()
    );
    let proxy = start(&toml).await;
    let got = get(proxy.addr, &format!("http://{}/x", proxy.addr), &[]).await;
    assert_eq!(got.status.as_u16(), 502, "{}", got.text());
    assert_eq!(
        got.text(),
        "TLS handshake with the origin failed: invalid peer certificate: not valid for the origin's name\n"
    );
}
