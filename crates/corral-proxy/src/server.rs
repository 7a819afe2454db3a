//! The client-facing server: HTTP/1.1 and HTTP/2 on each listener, plain (h2c) or TLS
//! (ALPN), a bound on connections and on request heads, and a graceful shutdown that
//! stops accepting and lets in-flight requests finish within a grace period.
//!
//! A connection that does not finish its TLS handshake and say which protocol it
//! speaks within the header read timeout is closed (see `sniff`), and so is an
//! HTTP/1.1 connection that sends no complete request head within it, idle
//! keep-alive ones included; any connection with no request in flight for
//! `idle-timeout` is closed gracefully (see `idle`), HTTP/2 ones included, and one
//! whose response body is not sent on for `send-timeout` (its client stopped reading)
//! is closed at once. So silent sockets cannot hold the connection slots. An open
//! `CONNECT` tunnel keeps its connection's slot, and the drain waits for it, until it
//! closes (`limit::Held`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use metrics::{Counter, Gauge};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::Instrument;

use corral_http::{Body, CacheStatus};

use crate::access_log::{Entry, Logged};
use crate::config::Config;
use crate::idle::{Activity, Inactive};
use crate::limit::Held;
use crate::live::Live;
use crate::proxy::Client;
use crate::sniff::sniff;
use crate::tls::Tls;

/// Counters of the server, by response status class.
struct ServerMetrics {
    responses: [Counter; 5],
    connections: Gauge,
}

impl ServerMetrics {
    fn new() -> Self {
        ServerMetrics {
            responses: ["1xx", "2xx", "3xx", "4xx", "5xx"]
                .map(|class| metrics::counter!("corral_proxy_responses_total", "class" => class)),
            connections: metrics::gauge!("corral_proxy_connections"),
        }
    }
}

/// What every request of one connection shares.
struct Connection {
    live: Arc<Live>,
    client: Client,
    metrics: Arc<ServerMetrics>,
    activity: Arc<Activity>,
}

impl Connection {
    /// Answers `request` in its `corral.request` span (see `telemetry`'s `otel`), which
    /// records the response's status and cache status.
    async fn respond(&self, request: Request<Incoming>) -> Response<Logged> {
        let span = tracing::debug_span!(
            "corral.request",
            otel.kind = "server",
            http.request.method = %request.method(),
            url.path = request.uri().path(),
            http.response.status_code = tracing::field::Empty,
            corral.cache_status = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        if span.is_disabled() {
            // Not wrapped (no export): moving the whole request's future into a
            // wrapper costs a hit about a thousand instructions.
            return self.answer(request).await;
        }
        // Only a proxy in front (`trusted-proxies`) may put a request in its trace: a
        // client could otherwise keep its requests out of sampling, or into any trace.
        #[cfg(feature = "otel")]
        if self.live.current().proxy.trusts(&self.client) {
            crate::telemetry::otel::continue_trace(&span, request.headers());
        }
        let response = self.answer(request).instrument(span.clone()).await;
        span.record("http.response.status_code", response.status().as_u16());
        if let Some(cache) = CacheStatus::of(&response) {
            span.record("corral.cache_status", cache.as_str());
        }
        if response.status().is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
        response
    }

    /// Answers `request` with the configuration running when it arrived.
    async fn answer(&self, request: Request<Incoming>) -> Response<Logged> {
        let active = self.activity.begin();
        let generation = self.live.current();
        let entry = generation.access_log.is_some().then(|| {
            (
                request.method().clone(),
                request.uri().clone(),
                Instant::now(),
            )
        });
        let head = request.method() == Method::HEAD;
        self.live.traffic.request(&request);
        let mut response = generation.proxy.handle(request, &self.client).await;
        if head {
            // No response to a HEAD has a body, the proxy's own refusals included (an
            // HTTP/2 connection would send it).
            *response.body_mut() = Body::empty();
        }
        let class = (response.status().as_u16() / 100).clamp(1, 5) as usize - 1;
        self.metrics.responses[class].increment(1);
        self.live.traffic.responded(response.status());
        let entry =
            entry
                .zip(generation.access_log.clone())
                .map(|((method, uri, started), log)| {
                    let entry = Entry {
                        method,
                        uri,
                        status: response.status().as_u16(),
                        cache: CacheStatus::of(&response),
                        started,
                    };
                    (entry, log)
                });
        response.map(|body| Logged::new(body, entry).holding(active))
    }
}

/// A listener, plain or TLS.
pub(crate) struct Listener {
    pub(crate) tcp: TcpListener,
    pub(crate) tls: Option<Tls>,
}

/// How connections configured by `config` are served: HTTP/1.1 and HTTP/2 with its
/// limits and timeouts.
fn http(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(usize::try_from(config.max_header_bytes.0).unwrap_or(usize::MAX))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes.0).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        // A client that vanished without closing its connection is noticed.
        .keep_alive_interval(Some(H2_KEEP_ALIVE))
        .keep_alive_timeout(H2_KEEP_ALIVE);
    builder
}

/// Serves a listener (and a second one) until `shutdown` completes, then drains for
/// the grace period (each connection configured as `live` is when it is accepted).
pub(crate) async fn serve(
    (first, second): (Listener, Option<Listener>),
    live: Arc<Live>,
    shutdown: impl Future<Output = ()>,
) {
    // Every connection holds a receiver: told when to stop, and waited for until
    // all of them have ended.
    let (stopping, _) = watch::channel(false);
    let metrics = Arc::new(ServerMetrics::new());
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = live.connections.acquire() => slot,
            () = &mut shutdown => break,
        };
        let (stream, addr, tls) = tokio::select! {
            accepted = accept(&first, second.as_ref()) => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, or a connection reset before it was accepted.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let config = &live.current().config;
        let (builder, first_bytes_within) = (http(config), config.header_read_timeout);
        let (idle_timeout, send_timeout) = (config.idle_timeout, config.send_timeout);
        let activity = Activity::new();
        let connection = Arc::new(Connection {
            live: live.clone(),
            client: Client::new(addr),
            metrics: metrics.clone(),
            activity: activity.clone(),
        });
        let mut stop = stopping.subscribe();
        let held = Held::new((slot, stop.clone()));
        let tunnels_hold = held.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            if request.method() == Method::CONNECT {
                // A tunnel outlives its connection's task: it holds the connection's
                // place until it closes.
                request.extensions_mut().insert(tunnels_hold.clone());
            }
            let connection = connection.clone();
            async move { Ok::<_, Infallible>(connection.respond(request).await) }
        });
        let gauge = metrics.connections.clone();
        tokio::spawn(async move {
            gauge.increment(1.0);
            // The TLS handshake and the first bytes, within the header read timeout.
            let opened = tokio::time::timeout(first_bytes_within, async {
                let stream: Box<dyn Io> = match tls {
                    Some(tls) => Box::new(tls.accept(stream).await?),
                    None => Box::new(stream),
                };
                sniff(stream).await
            });
            match opened.await {
                Ok(Ok(stream)) => {
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    tokio::pin!(conn);
                    // On shutdown, or once idle: no new requests; those in flight finish.
                    // Stalled (its client stopped reading): closed at once.
                    let closing = async {
                        tokio::select! {
                            _ = stop.wait_for(|stop| *stop) => None,
                            why = activity.inactive(idle_timeout, send_timeout) => Some(why),
                        }
                    };
                    let ended = tokio::select! {
                        ended = conn.as_mut() => Some(ended),
                        why = closing => match why {
                            Some(Inactive::Stalled) => {
                                tracing::debug!(%addr, ?send_timeout, "closing a connection whose response is not read");
                                None
                            }
                            Some(Inactive::Idle) => {
                                tracing::debug!(%addr, "closing an idle connection");
                                conn.as_mut().graceful_shutdown();
                                // What it still has to write (a whole stored body the
                                // client stopped reading) gets one more send-timeout.
                                tokio::time::timeout(send_timeout, conn).await.ok()
                            }
                            None => {
                                conn.as_mut().graceful_shutdown();
                                Some(conn.await)
                            }
                        },
                    };
                    if let Some(Err(error)) = ended {
                        tracing::debug!(%error, %addr, "connection ended with an error");
                    }
                }
                Ok(Err(error)) => tracing::debug!(%error, %addr, "connection failed"),
                Err(_) => tracing::debug!(%addr, "no request within the header read timeout"),
            }
            gauge.decrement(1.0);
            drop((held, stop));
        });
    }
    drop((first, second));
    let grace = live.current().config.shutdown_grace;
    tracing::info!(
        ?grace,
        "shutting down: no new connections; finishing requests in flight"
    );
    let _ = stopping.send(true);
    tokio::select! {
        () = stopping.closed() => tracing::info!("all connections finished"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing the remaining connections"),
    }
}

/// A client connection's stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How often an idle HTTP/2 client is pinged, and how long it has to answer.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// The next connection on `first` or `second`, with the TLS it is to speak; the two
/// are polled in a random order each time, so neither starves the other.
async fn accept(
    first: &Listener,
    second: Option<&Listener>,
) -> std::io::Result<(TcpStream, SocketAddr, Option<Tls>)> {
    match second {
        Some(second) => tokio::select! {
            accepted = first.accept() => accepted,
            accepted = second.accept() => accepted,
        },
        None => first.accept().await,
    }
}

impl Listener {
    async fn accept(&self) -> std::io::Result<(TcpStream, SocketAddr, Option<Tls>)> {
        let (stream, addr) = self.tcp.accept().await?;
        Ok((stream, addr, self.tls.clone()))
    }
}

/// The address a listener bound to (for logs and tests).
pub(crate) fn bound(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}
