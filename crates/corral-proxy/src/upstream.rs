//! The origin client: pooled connections over HTTP/1.1 and HTTP/2 (by ALPN for HTTPS,
//! or h2c when configured), TLS by rustls, a connect timeout, a response timeout, a
//! bound on requests in flight (each holds its place until its response body is
//! read or dropped), resolution through the allow-list, and never a connection to
//! the proxy's own listeners ([`Dialer`]). A request that gets no response fails with
//! an [`OriginError`] that says why, wherever this client knows more than its errors
//! say (the dialler's findings, a TLS handshake, `fetch-timeout`).
//!
//! A bodiless GET or HEAD that fails on a reused connection before its response came
//! (the origin closed the idle connection as the request went out, without saying so)
//! is sent once more on a new connection, as nginx does; a request with a body never
//! is, nor one that failed on a fresh connection.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use corral_http::{Body, BoxError, OriginError, OriginFailure, find_cause};
use futures_util::future::BoxFuture;
use http::{Method, Request, Response, Uri};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tower::{Service, ServiceExt};
use tracing::Instrument;

use crate::allow::AllowList;
use crate::config::Config;
use crate::dial::{Delivered, DialError, Dialer, Listeners};
use crate::forwarded::Forwarding;
use crate::limit::{Limit, Slot};

type OriginClient = Client<HttpsConnector<Dialer>, Body>;

/// The origin client: cheap to clone (one reference count), so the cache can hold one
/// per request without copying the connection pool's handles.
#[derive(Clone)]
pub(crate) struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    client: OriginClient,
    /// The same client without a pool: every request on a new connection (retries).
    fresh: OriginClient,
    /// One place per request in flight, from its sending to its body's end (kept,
    /// and resized, across reloads).
    in_flight: Arc<Limit>,
    fetch_timeout: Duration,
    forwarding: Forwarding,
    /// Whether a failure names the origin to the client (a forward proxy's client
    /// named it; a reverse proxy's origin is the operator's own business).
    names_origins: bool,
}

impl Upstream {
    pub(crate) fn new(
        config: &Config,
        allow: Arc<AllowList>,
        listeners: Arc<Listeners>,
        (forwarding, names_origins): (Forwarding, bool),
        in_flight: Arc<Limit>,
    ) -> Result<Upstream, BoxError> {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(config.upstream_ca_file.as_deref())?)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(Dialer::new(allow, listeners, config.connect_timeout));
        let client = |max_idle| {
            Client::builder(TokioExecutor::new())
                .timer(TokioTimer::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(max_idle)
                .http2_only(config.upstream_http2)
                .build(connector.clone())
        };
        Ok(Upstream {
            inner: Arc::new(Inner {
                client: client(1024),
                fresh: client(0),
                in_flight,
                fetch_timeout: config.fetch_timeout,
                forwarding,
                names_origins,
            }),
        })
    }
}

/// Whether a request failed on a reused connection before its response arrived: the
/// connection was closed or reset under it, after delivering earlier responses.
fn failed_on_reused(error: &hyper_util::client::legacy::Error) -> bool {
    if error.is_connect() {
        return false;
    }
    let reused = error
        .connect_info()
        .and_then(Delivered::of)
        .is_some_and(|delivered| delivered.any());
    let closed = std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<hyper::Error>())
        .is_some_and(|hyper| {
            hyper.is_incomplete_message()
                || std::error::Error::source(hyper)
                    .and_then(|io| io.downcast_ref::<std::io::Error>())
                    .is_some_and(|io| {
                        matches!(
                            io.kind(),
                            std::io::ErrorKind::ConnectionReset
                                | std::io::ErrorKind::ConnectionAborted
                                | std::io::ErrorKind::BrokenPipe
                                | std::io::ErrorKind::UnexpectedEof
                        )
                    })
        });
    reused && closed
}

impl Inner {
    /// `error`, from a request for `uri`, as an [`OriginError`] where this client
    /// knows more than the error says: what its dialler found (a name that did not
    /// resolve, the addresses that refused, `connect-timeout`) and a TLS handshake's
    /// failure. Anything else the cache classifies itself.
    fn explain(&self, uri: &Uri, error: BoxError) -> BoxError {
        if let Some(dial) = find_cause::<DialError>(&*error) {
            let (failure, addrs) = (dial.failure(self.names_origins), dial.addresses());
            return OriginError::new(failure, error).at(addrs).into();
        }
        if let Some(tls) = find_cause::<rustls::Error>(&*error) {
            let failure = OriginFailure::Tls {
                origin: self
                    .names_origins
                    .then(|| uri.host().unwrap_or_default().to_owned()),
                reason: match tls {
                    // Its text names the origin and its certificate's names.
                    rustls::Error::InvalidCertificate(
                        rustls::CertificateError::NotValidForNameContext { .. },
                    ) if !self.names_origins => {
                        "invalid peer certificate: not valid for the origin's name".to_owned()
                    }
                    tls => tls.to_string(),
                },
            };
            return OriginError::new(failure, error).into();
        }
        error
    }
}

/// The public roots, plus those of `ca_file`.
fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, BoxError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let unreadable =
            |e: &dyn std::fmt::Display| format!("upstream-ca-file {}: {e}", path.display());
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
            roots
                .add(cert.map_err(|e| unreadable(&e))?)
                .map_err(|e| unreadable(&e))?;
            added += 1;
        }
        if added == 0 {
            return Err(unreadable(&"no certificates in it").into());
        }
    }
    Ok(roots)
}

impl Service<Request<Body>> for Upstream {
    type Response = Response<Permitted>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<Permitted>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Each request waits for its own place in `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        let span = fetch_span(&request);
        #[cfg(feature = "otel")]
        let request = crate::telemetry::otel::propagate(&span, request);
        let fetch = async move {
            // A copy to send again, for the requests that may be.
            let (parts, body) = request.into_parts();
            let uri = parts.uri.clone();
            let again = (matches!(parts.method, Method::GET | Method::HEAD)
                && http_body::Body::is_end_stream(&body))
            .then(|| parts.clone());
            let request = Request::from_parts(parts, body);
            // Waiting for a place counts against the response timeout.
            let sent = async {
                let permit = inner.in_flight.acquire().await;
                let response = match inner.client.clone().oneshot(request).await {
                    Err(error) if again.is_some() && failed_on_reused(&error) => {
                        tracing::debug!(%error, "origin closed a reused connection; sending again");
                        let parts = again.unwrap_or_else(|| unreachable!("guarded"));
                        inner
                            .fresh
                            .clone()
                            .oneshot(Request::from_parts(parts, Body::empty()))
                            .await?
                    }
                    sent => sent?,
                };
                Ok::<_, BoxError>((permit, response))
            };
            let (permit, response) = match tokio::time::timeout(inner.fetch_timeout, sent).await {
                Ok(Ok(sent)) => sent,
                Ok(Err(error)) => return Err(inner.explain(&uri, error)),
                Err(elapsed) => {
                    let failure = OriginFailure::FetchTimeout {
                        timeout: Some(inner.fetch_timeout),
                    };
                    return Err(OriginError::new(failure, elapsed).into());
                }
            };
            let status = response.status().as_u16();
            tracing::Span::current().record("http.response.status_code", status);
            if let Some(delivered) = response.extensions().get::<Delivered>() {
                delivered.add();
            }
            let mut response = response.map(|body| Permitted {
                body,
                _permit: permit,
            });
            inner.forwarding.prepare_response(response.headers_mut());
            Ok(response)
        };
        Box::pin(fetch.instrument(span))
    }
}

/// The `corral.origin_fetch` span of a request to the origin (until its response head
/// arrives), which records the response's status.
fn fetch_span(request: &Request<Body>) -> tracing::Span {
    tracing::debug_span!(
        "corral.origin_fetch",
        otel.kind = "client",
        http.request.method = %request.method(),
        server.address = request.uri().host().unwrap_or_default(),
        url.path = request.uri().path(),
        http.response.status_code = tracing::field::Empty,
    )
}

/// An origin's response body, holding its request's place among those in flight.
pub(crate) struct Permitted {
    body: Incoming,
    _permit: Slot,
}

impl http_body::Body for Permitted {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
