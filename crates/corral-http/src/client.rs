//! The built-in HTTP client of the refresh cache and the peer pool: hyper-util's
//! pooled client, HTTP/1.1 and HTTP/2 (by ALPN), TLS by rustls with the webpki roots
//! (its own crypto provider: nothing process-wide is installed).

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{Body, BoxError};

/// The built-in client.
pub(crate) type HttpsClient = Client<HttpsConnector<HttpConnector>, Body>;

/// A client for `http://` and `https://` URLs.
pub(crate) fn https_client(connect_timeout: Duration) -> Result<HttpsClient, BoxError> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    })
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build::<_, Body>(https))
}
