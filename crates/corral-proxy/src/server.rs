//! The client-facing server: HTTP/1.1 and HTTP/2 without TLS (h2c) on one port, a
//! bound on connections and on request heads, and a graceful shutdown that stops
//! accepting and lets in-flight requests finish within a grace period.
//!
//! A connection that does not say which protocol it speaks within the header read
//! timeout is closed (hyper's own timeout only starts once it knows), and so is an
//! HTTP/1.1 connection that sends no complete request head within it, idle
//! keep-alive ones included, so silent sockets cannot hold the connection slots.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use metrics::{Counter, Gauge};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use corral_http::{Body, CacheStatus};

use crate::access_log::{AccessLog, Entry, Logged};
use crate::config::Config;
use crate::proxy::{Client, Proxy};

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
    proxy: Arc<Proxy>,
    client: Client,
    access_log: Option<AccessLog>,
    metrics: Arc<ServerMetrics>,
}

impl Connection {
    async fn respond(&self, request: Request<Incoming>) -> Response<Logged> {
        let entry = self.access_log.is_some().then(|| {
            (
                request.method().clone(),
                request.uri().clone(),
                Instant::now(),
            )
        });
        let head = request.method() == Method::HEAD;
        self.proxy.traffic().request(&request);
        let mut response = self.proxy.handle(request, &self.client).await;
        if head {
            // No response to a HEAD has a body, the proxy's own refusals included (an
            // HTTP/2 connection would send it).
            *response.body_mut() = Body::empty();
        }
        let class = (response.status().as_u16() / 100).clamp(1, 5) as usize - 1;
        self.metrics.responses[class].increment(1);
        self.proxy.traffic().responded(response.status());
        let entry = entry
            .zip(self.access_log.clone())
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
        response.map(|body| Logged::new(body, entry))
    }
}

/// Serves `listener` until `shutdown` completes, then drains for the grace period.
pub(crate) async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    config: &Config,
    access_log: Option<AccessLog>,
    shutdown: impl Future<Output = ()>,
) {
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
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let metrics = Arc::new(ServerMetrics::new());
    let first_bytes_within = config.header_read_timeout;
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
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
        let connection = Arc::new(Connection {
            proxy: proxy.clone(),
            client: proxy.client(addr),
            access_log: access_log.clone(),
            metrics: metrics.clone(),
        });
        let service = hyper::service::service_fn(move |request| {
            let connection = connection.clone();
            async move { Ok::<_, Infallible>(connection.respond(request).await) }
        });
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        let gauge = metrics.connections.clone();
        tokio::spawn(async move {
            gauge.increment(1.0);
            match tokio::time::timeout(first_bytes_within, protocol_known(&stream)).await {
                Ok(Ok(())) => {
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(error) = watcher.watch(conn).await {
                        tracing::debug!(%error, %addr, "connection ended with an error");
                    }
                }
                Ok(Err(error)) => tracing::debug!(%error, %addr, "connection failed"),
                Err(_) => tracing::debug!(%addr, "no request within the header read timeout"),
            }
            gauge.decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(grace = ?config.shutdown_grace, "shutting down: no new connections; finishing requests in flight");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections finished"),
        () = tokio::time::sleep(config.shutdown_grace) => tracing::warn!("grace period over; closing the remaining connections"),
    }
}

/// How often an idle HTTP/2 client is pinged, and how long it has to answer.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// The HTTP/2 connection preface: a client that starts with it speaks h2c.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Returns once the first bytes tell HTTP/1 from HTTP/2 (or the client closed),
/// without consuming them.
async fn protocol_known(stream: &TcpStream) -> std::io::Result<()> {
    let mut start = [0u8; H2_PREFACE.len()];
    let mut pause = Duration::from_millis(5);
    loop {
        let n = stream.peek(&mut start).await?;
        if n == 0 || n == start.len() || start[..n] != H2_PREFACE[..n] {
            return Ok(());
        }
        // A part of the preface: wait for more (peek returns at once while the
        // bytes it saw are unread), less and less often for a client that stalls.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// The address a listener bound to (for logs and tests).
pub(crate) fn bound(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}
