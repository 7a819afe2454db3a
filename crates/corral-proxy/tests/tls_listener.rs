//! TLS to clients: `tls-cert`/`tls-key` turn `listen` (or `tls-listen`, beside a
//! plain `listen`) into a TLS listener speaking HTTP/2 or HTTP/1.1 as ALPN chooses,
//! with more certificates chosen by SNI; files that cannot serve refuse the start with
//! an error naming them; a client that never finishes its handshake is closed within
//! the header read timeout. Certificates are made in the test (rcgen), the client is
//! rustls, the origin a real server on 127.0.0.1.

#[path = "../../corral-http/tests/support/mod.rs"]
mod origin;
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corral_proxy::{Bound, ProxyError, TlsError};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use origin::{Origin, Reply};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A self-signed certificate for some names, and its files.
struct TestCert {
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

/// A temporary directory for certificate files, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let dir = std::env::temp_dir().join(format!(
            "corral-tls-listener-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn cert(&self, file: &str, names: &[&str]) -> TestCert {
        let names = names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        let made = rcgen::generate_simple_self_signed(names).unwrap();
        let cert = self.0.join(format!("{file}.crt"));
        let key = self.0.join(format!("{file}.key"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        TestCert {
            cert,
            key,
            der: made.cert.der().clone(),
        }
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// A reverse proxy for `origin` serving TLS with `cert` (and `more` by SNI).
fn tls_config(origin: SocketAddr, cert: &TestCert, more: &[&TestCert]) -> String {
    let mut toml = format!(
        "upstream = \"http://{origin}\"\ntls-cert = {}\ntls-key = {}\n",
        toml_path(&cert.cert),
        toml_path(&cert.key)
    );
    for extra in more {
        toml.push_str(&format!(
            "[[tls-certificates]]\ncert = {}\nkey = {}\n",
            toml_path(&extra.cert),
            toml_path(&extra.key)
        ));
    }
    toml
}

/// A TLS connection to `addr` asking for `name`, trusting `certs`, offering `alpn`.
async fn connect(
    addr: SocketAddr,
    name: &str,
    trusted: &[&TestCert],
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in trusted {
        roots.add(cert.der.clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    connector.connect(name, stream).await
}

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// GET `path` over `stream` in the protocol ALPN chose: the status, the body and the
/// response's HTTP version.
async fn get_over(stream: TlsStream<TcpStream>, path: &str) -> (StatusCode, String, http::Version) {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let request = |version| {
        Request::get(format!("https://localhost{path}"))
            .version(version)
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let response = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        sender
            .send_request(request(http::Version::HTTP_2))
            .await
            .unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut request = request(http::Version::HTTP_11);
        request.uri_mut().clone_from(&path.parse().unwrap());
        sender.send_request(request).await.unwrap()
    };
    let (status, version) = (response.status(), response.version());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), version)
}

#[tokio::test]
async fn a_tls_listener_speaks_http2_or_http1_as_alpn_chooses_and_both_share_the_cache() {
    let dir = Dir::new();
    let cert = dir.cert("localhost", &["localhost"]);
    let origin = Origin::start().await;
    origin.route("/page", |_, _| {
        Reply::ok("secure page").header("cache-control", "max-age=60")
    });
    let proxy = support::start(&tls_config(origin.addr, &cert, &[])).await;
    let tls = proxy.tls.expect("TLS on");
    assert_eq!(tls, proxy.addr, "`listen` speaks TLS without `tls-listen`");

    let h2 = connect(tls, "localhost", &[&cert], &[b"h2", b"http/1.1"], BOTH)
        .await
        .unwrap();
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(
        h2.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let (status, body, version) = get_over(h2, "/page").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "secure page"));
    assert_eq!(version, http::Version::HTTP_2);

    let h1 = connect(tls, "localhost", &[&cert], &[b"http/1.1"], BOTH)
        .await
        .unwrap();
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (status, body, version) = get_over(h1, "/page").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "secure page"));
    assert_eq!(version, http::Version::HTTP_11);
    assert_eq!(origin.count("/page"), 1, "the second was a hit");

    let tls12 = connect(tls, "localhost", &[&cert], &[], &[&rustls::version::TLS12])
        .await
        .unwrap();
    assert_eq!(
        tls12.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let (status, _, version) = get_over(tls12, "/page").await;
    assert_eq!(
        (status, version),
        (StatusCode::OK, http::Version::HTTP_11),
        "no ALPN: HTTP/1.1"
    );

    let plain = TcpStream::connect(tls).await.unwrap();
    let answer = exchange(plain, b"GET /page HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "a TLS listener does not answer plain HTTP: {:?}",
        String::from_utf8_lossy(&answer)
    );
    proxy.stop().await;
}

/// Writes `bytes`, then reads what comes back until the server closes (or 5 s).
async fn exchange(mut stream: TcpStream, bytes: &[u8]) -> Vec<u8> {
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    answer
}

#[tokio::test]
async fn plain_and_tls_listen_on_two_addresses() {
    let dir = Dir::new();
    let cert = dir.cert("localhost", &["localhost"]);
    let origin = Origin::start().await;
    origin.route("/both", |_, _| {
        Reply::ok("either way").header("cache-control", "max-age=60")
    });
    let proxy = support::start(&format!(
        "{}tls-listen = \"127.0.0.1:0\"\n",
        tls_config(origin.addr, &cert, &[])
    ))
    .await;
    let tls = proxy.tls.expect("TLS on");
    assert_ne!(tls, proxy.addr);
    let plain = support::get(proxy.addr, "http://localhost/both", &[]).await;
    assert_eq!(plain.text(), "either way");
    let stream = connect(tls, "localhost", &[&cert], &[b"h2"], BOTH)
        .await
        .unwrap();
    let (status, body, _) = get_over(stream, "/both").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "either way"));
    assert_eq!(origin.count("/both"), 1, "one cache behind both listeners");
    proxy.stop().await;
}

#[tokio::test]
async fn sni_chooses_the_certificate_that_covers_the_name() {
    let dir = Dir::new();
    let default = dir.cert("default", &["localhost"]);
    let a = dir.cert("a", &["a.test", "www.a.test"]);
    let b = dir.cert("b", &["*.b.test"]);
    let origin = Origin::start().await;
    origin.route("/", |_, _| Reply::ok("sni"));
    let proxy = support::start(&tls_config(origin.addr, &default, &[&a, &b])).await;
    let tls = proxy.tls.unwrap();
    let all = [&default, &a, &b];
    for (name, expected) in [
        ("a.test", &a),
        ("WWW.A.test", &a),
        ("x.b.test", &b),
        ("localhost", &default),
        ("other.test", &default),
        ("x.y.b.test", &default),
    ] {
        // Trusting all three, the handshake itself would pass with any; the chosen
        // one is read back.
        let stream = connect(tls, &name.to_ascii_lowercase(), &all, &[], BOTH).await;
        let chosen = match stream {
            Ok(stream) => stream.get_ref().1.peer_certificates().unwrap()[0].clone(),
            // A name the default does not cover fails verification: it was chosen.
            Err(error) => {
                assert!(
                    error.to_string().contains("not valid for name"),
                    "{name}: {error}"
                );
                default.der.clone()
            }
        };
        assert_eq!(chosen, expected.der, "{name}");
    }
    proxy.stop().await;
}

/// Why `toml` refuses to bind.
async fn refused(toml: &str) -> String {
    let error = Bound::bind(support::config(toml)).await.unwrap_err();
    assert!(matches!(error, ProxyError::Tls(_)), "{error:?}");
    error.to_string()
}

#[tokio::test]
async fn certificates_that_cannot_serve_refuse_the_start_with_an_error_naming_the_file() {
    let dir = Dir::new();
    let cert = dir.cert("one", &["localhost"]);
    let other = dir.cert("other", &["localhost"]);
    let missing = dir.0.join("missing.crt");
    let with = |cert: &Path, key: &Path| {
        format!(
            "upstream = \"http://127.0.0.1:9\"\ntls-cert = {}\ntls-key = {}\n",
            toml_path(cert),
            toml_path(key)
        )
    };

    let error = refused(&with(&missing, &cert.key)).await;
    assert!(
        error.starts_with("cannot read tls-cert") && error.contains("missing.crt"),
        "{error}"
    );
    let error = refused(&with(&cert.cert, &other.key)).await;
    assert!(
        error.contains("does not match") && error.contains("other.key"),
        "{error}"
    );
    let error = refused(&with(&cert.cert, &cert.cert)).await;
    assert!(
        error.contains("one.crt") && error.contains("no private key"),
        "{error}"
    );
    let garbage = dir.file("garbage.crt", "-----BEGIN CERTIFICATE-----\n!!!\n");
    let error = refused(&with(&garbage, &cert.key)).await;
    assert!(error.contains("garbage.crt"), "{error}");
    let not_der = dir.file(
        "not-der.crt",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let error = refused(&with(&not_der, &cert.key)).await;
    assert!(
        error.contains("not-der.crt") && error.contains("not an X.509 certificate"),
        "{error}"
    );
    let nameless = dir.cert("nameless", &[]);
    let toml = tls_config("127.0.0.1:9".parse().unwrap(), &cert, &[&nameless]);
    let error = Bound::bind(support::config(&toml)).await.unwrap_err();
    assert!(
        matches!(&error, ProxyError::Tls(TlsError::NoNames { cert }) if cert == &nameless.cert),
        "{error}"
    );

    let half = support::config_error("upstream = \"http://127.0.0.1:9\"\ntls-cert = \"a.crt\"");
    assert!(half.contains("`tls-cert` needs `tls-key`"), "{half}");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_closed_in_time_and_frees_its_slot() {
    let dir = Dir::new();
    let cert = dir.cert("localhost", &["localhost"]);
    let origin = Origin::start().await;
    origin.route("/", |_, _| Reply::ok("served"));
    let proxy = support::start(&format!(
        "{}max-connections = 1\nheader-read-timeout = \"1s\"\n",
        tls_config(origin.addr, &cert, &[])
    ))
    .await;
    let tls = proxy.tls.unwrap();
    // The only slot: a TCP connection that starts a ClientHello and stalls.
    let mut stalled = TcpStream::connect(tls).await.unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    // A well-behaved client waits for that slot, then is served.
    let served = tokio::spawn(async move {
        let stream = connect(tls, "localhost", &[&cert], &[b"h2"], BOTH)
            .await
            .unwrap();
        get_over(stream, "/").await
    });
    let mut rest = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the stalled handshake was closed");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed at the header read timeout, not before: {waited:?}"
    );
    let (status, body, _) = tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("the waiting client got the slot")
        .unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "served"));
    proxy.stop().await;
}

#[tokio::test]
async fn a_reload_reads_the_certificates_again_and_a_bad_one_changes_nothing() {
    let dir = Dir::new();
    let first = dir.cert("site", &["localhost"]);
    let origin = Origin::start().await;
    origin.route("/", |_, _| Reply::ok("renewed"));
    let file = dir.file("corral.toml", &tls_config(origin.addr, &first, &[]));
    let proxy = support::start_from_file(&file).await;
    let (tls, admin) = (proxy.tls.unwrap(), proxy.admin.unwrap());
    let chosen =
        |stream: TlsStream<TcpStream>| stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    let before = connect(tls, "localhost", &[&first], &[b"h2"], BOTH)
        .await
        .unwrap();

    // Renewed in place, as certbot does: same paths, new files.
    let renewed = dir.cert("site", &["localhost"]);
    let (status, answer) = support::reload(admin).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let after = connect(tls, "localhost", &[&renewed], &[b"h2"], BOTH)
        .await
        .unwrap();
    assert_eq!(
        chosen(after),
        renewed.der,
        "new handshakes get the renewed certificate"
    );
    let (status, body, _) = get_over(before, "/").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "renewed"),
        "an open connection goes on"
    );

    let other = dir.cert("other", &["localhost"]);
    std::fs::copy(&other.key, &renewed.key).unwrap();
    let (status, answer) = support::reload(admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("does not match"),
        "{answer}"
    );
    let still = connect(tls, "localhost", &[&renewed], &[b"h2"], BOTH)
        .await
        .unwrap();
    assert_eq!(
        chosen(still),
        renewed.der,
        "a refused reload changed nothing"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_idle_timeout_and_frees_its_slot() {
    let dir = Dir::new();
    let cert = dir.cert("localhost", &["localhost"]);
    let origin = Origin::start().await;
    origin.route("/", |_, _| Reply::ok("served"));
    let proxy = support::start(&format!(
        "{}max-connections = 1\nidle-timeout = \"1s\"\nheader-read-timeout = \"1s\"\n",
        tls_config(origin.addr, &cert, &[])
    ))
    .await;
    let tls = proxy.tls.unwrap();
    // The only slot: an HTTP/2 connection that makes one request, then idles (its
    // client answers pings, so only the idle timeout can end it).
    let stream = connect(tls, "localhost", &[&cert], &[b"h2"], BOTH)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let idle = tokio::spawn(conn);
    let request = Request::get("https://localhost/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let first = sender.send_request(request).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    drop(first);
    let started = tokio::time::Instant::now();
    let next = connect(tls, "localhost", &[&cert], &[b"h2"], BOTH)
        .await
        .unwrap();
    let (status, body, _) = tokio::time::timeout(Duration::from_secs(10), get_over(next, "/"))
        .await
        .expect("the idle connection gave its slot up");
    assert_eq!((status, body.as_str()), (StatusCode::OK, "served"));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let closed = tokio::time::timeout(Duration::from_secs(5), idle).await;
    assert!(closed.is_ok(), "the idle connection was closed (GOAWAY)");
    drop(sender);
    proxy.stop().await;
}
