//! One request through the proxy: where it goes (forward: its absolute URI, checked
//! against the allow-list; reverse: the configured origin), the headers a proxy must
//! change (hop-by-hop fields, `Host`, `X-Forwarded-For`, `Via`), then the HTTP cache in
//! front of the origin client. `CONNECT` is tunnelled, uncached.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corral_http::pool::{Pool, Route, SECRET_HEADER, mark_peer_answer};
use corral_http::{Body, CacheHandle, HttpCache, Policy};
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, request};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tower::{Layer, ServiceExt};

use crate::allow::{AllowList, Verdict};
use crate::config::{Config, HostMode, Origin};
use crate::forwarded::prepare_request;
use crate::upstream::Upstream;

/// Where requests go.
#[derive(Debug, Clone)]
pub enum Mode {
    /// A forward proxy: each request names its target (absolute form, or `CONNECT`).
    Forward,
    /// A reverse proxy in front of one origin.
    Reverse {
        /// The origin.
        origin: Origin,
        /// The `Host` the origin sees.
        host: HostMode,
        /// The origin's authority as a `Host` value (made once, not per request).
        origin_host: HeaderValue,
    },
}

/// The proxy's request handling, shared by all connections.
pub struct Proxy {
    cache: HttpCache<Upstream>,
    /// With a pool of peers: the pool, and the cache behind its router.
    pool: Option<(Pool, Route<HttpCache<Upstream>>)>,
    mode: Mode,
    allow: Arc<AllowList>,
    connect_timeout: Duration,
}

impl Proxy {
    /// The proxy for `config`; `self_url` is its base URL in a pool of peers.
    pub fn new(config: &Config, allow: Arc<AllowList>, self_url: &str) -> anyhow::Result<Proxy> {
        let mode = match config.origin()? {
            Some(origin) => Mode::Reverse {
                origin_host: host_value(&origin.authority)
                    .map_err(|_| anyhow::anyhow!("the upstream's host is not a valid Host"))?,
                origin,
                host: config.host,
            },
            None => Mode::Forward,
        };
        let upstream = Upstream::new(config, allow.clone()).map_err(|e| anyhow::anyhow!(e))?;
        let builder = HttpCache::builder()
            .policy(Policy::Rfc9111 { shared: true })
            .max_bytes(config.memory.0)
            .max_body_bytes(usize::try_from(config.max_body.0).unwrap_or(usize::MAX))
            .fetch_timeout(config.response_timeout)
            .cache_status_headers(config.cache_status_header)
            .key(cache_key);
        let builder = match &config.redis_url {
            Some(url) => builder.redis(
                corral::RedisTier::builder(url.clone())
                    .prefix(config.redis_prefix.clone())
                    .build()?,
            ),
            None => builder,
        };
        let cache = builder.service(upstream)?;
        let pool = match &config.peer_secret {
            Some(secret) => {
                let mut pool = Pool::builder()
                    .self_url(self_url)
                    .peers(config.peers.iter().cloned())
                    .secret(secret.clone())
                    .connect_timeout(config.connect_timeout)
                    .peer_timeout(config.peer_timeout);
                if config.peer_hot_cache.0 > 0 {
                    pool = pool.hot_cache(config.peer_hot_cache.0, config.peer_hot_ttl);
                }
                let pool = pool.build()?;
                let route = pool.route_layer()?.layer(cache.clone());
                Some((pool, route))
            }
            None => None,
        };
        Ok(Proxy {
            cache,
            pool,
            mode,
            allow,
            connect_timeout: config.connect_timeout,
        })
    }

    /// The pool of peers, if there is one.
    pub fn pool(&self) -> Option<&Pool> {
        self.pool.as_ref().map(|(pool, _)| pool)
    }

    /// A handle on the cache (purges, statistics).
    pub fn cache(&self) -> CacheHandle {
        self.cache.handle()
    }

    /// Answers one request from a client at `client` (whose address, as an
    /// `X-Forwarded-For` value, is `client_ip`).
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        client_ip: &HeaderValue,
    ) -> Response<Body> {
        if request.method() == Method::CONNECT {
            return self.tunnel(request).await;
        }
        // A peer's request: checked here, then handled as the request it carries
        // (the allow-list applies to it as to any other).
        let (request, from_peer) = match &self.pool {
            Some((pool, _)) if pool.is_peer_request(&request) => match pool.accept(request) {
                Ok(request) => (request, true),
                Err(refusal) => return refusal.response(),
            },
            _ => (request, false),
        };
        let (mut parts, body) = request.into_parts();
        // The pool's secret never goes further (`accept` took a peer's; a client's
        // is dropped here).
        parts.headers.remove(SECRET_HEADER);
        let mut response = match self.target(&mut parts).await {
            Ok(()) => self.fetch(parts, body, client_ip).await,
            Err(refusal) => refusal.response(),
        };
        // A peer's request gets this pool member's answer, refusals included.
        if from_peer {
            mark_peer_answer(&mut response);
        }
        response
    }

    /// The response to a request that has its target: through the pool's router or
    /// straight to the cache.
    async fn fetch(
        &self,
        mut parts: request::Parts,
        body: Incoming,
        client_ip: &HeaderValue,
    ) -> Response<Body> {
        prepare_request(&mut parts.headers, client_ip);
        // The origin connection speaks its own version (HTTP/2 where configured or
        // offered by ALPN), whatever the client spoke.
        parts.version = http::Version::HTTP_11;
        let body = if http_body::Body::is_end_stream(&body) {
            Body::empty()
        } else {
            Body::streaming(body)
        };
        let request = Request::from_parts(parts, body);
        let response = match &self.pool {
            Some((_, route)) => route.clone().oneshot(request).await,
            None => self.cache.clone().oneshot(request).await,
        };
        match response {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// Points the request at its target, or refuses it.
    async fn target(&self, parts: &mut request::Parts) -> Result<(), Refusal> {
        match &self.mode {
            Mode::Reverse {
                origin,
                host,
                origin_host,
            } => {
                let mut uri = std::mem::take(&mut parts.uri).into_parts();
                uri.scheme = Some(origin.scheme.clone());
                uri.authority = Some(origin.authority.clone());
                if uri.path_and_query.is_none() {
                    uri.path_and_query = Some(PathAndQuery::from_static("/"));
                }
                parts.uri = Uri::from_parts(uri).map_err(|_| {
                    Refusal(StatusCode::BAD_REQUEST, "the request's path is not valid")
                })?;
                if *host == HostMode::Upstream || !parts.headers.contains_key(header::HOST) {
                    parts.headers.insert(header::HOST, origin_host.clone());
                }
                Ok(())
            }
            Mode::Forward => {
                let (Some(scheme), Some(authority)) = (parts.uri.scheme(), parts.uri.authority())
                else {
                    return Err(Refusal(
                        StatusCode::BAD_REQUEST,
                        "this is a forward proxy: send requests in absolute form (e.g. curl -x http://this-proxy http://example.com/)",
                    ));
                };
                if *scheme != Scheme::HTTP && *scheme != Scheme::HTTPS {
                    return Err(Refusal(
                        StatusCode::BAD_REQUEST,
                        "only http:// and https:// URLs are proxied",
                    ));
                }
                let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
                let port = authority.port_u16().unwrap_or(default_port);
                if self.allow.check(authority.host(), port).await == Verdict::Refused {
                    tracing::info!(host = authority.host(), "refused by the allow-list");
                    return Err(Refusal(StatusCode::FORBIDDEN, NOT_ALLOWED));
                }
                let host = host_value(authority)?;
                parts.headers.insert(header::HOST, host);
                Ok(())
            }
        }
    }

    /// Tunnels a `CONNECT` (TLS stays end to end; nothing is cached).
    async fn tunnel(&self, request: Request<Incoming>) -> Response<Body> {
        if matches!(self.mode, Mode::Reverse { .. }) {
            return refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "a reverse proxy does not tunnel",
            );
        }
        let Some((host, port)) = request
            .uri()
            .authority()
            .and_then(|a| Some((a.host().to_owned(), a.port_u16()?)))
        else {
            return refuse(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
        };
        if self.allow.check(&host, port).await == Verdict::Refused {
            tracing::info!(%host, port, "tunnel refused by the allow-list");
            return refuse(StatusCode::FORBIDDEN, NOT_ALLOWED);
        }
        let addrs = match self
            .allow
            .resolve(host.trim_matches(['[', ']']), port)
            .await
        {
            Ok(addrs) => addrs,
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                return refuse(StatusCode::FORBIDDEN, NOT_ALLOWED);
            }
            Err(_) => return refuse(StatusCode::BAD_GATEWAY, "cannot resolve the tunnel's host"),
        };
        let connected = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(&addrs[..]),
        )
        .await;
        let mut target = match connected {
            Ok(Ok(stream)) => stream,
            Ok(Err(_)) => {
                return refuse(
                    StatusCode::BAD_GATEWAY,
                    "cannot connect to the tunnel's host",
                );
            }
            Err(_) => {
                return refuse(
                    StatusCode::GATEWAY_TIMEOUT,
                    "connecting to the tunnel's host timed out",
                );
            }
        };
        let _ = target.set_nodelay(true);
        tokio::spawn(async move {
            let tunnels = metrics::gauge!("corral_proxy_tunnels");
            match hyper::upgrade::on(request).await {
                Ok(upgraded) => {
                    tunnels.increment(1.0);
                    let mut client = TokioIo::new(upgraded);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut target).await;
                    tunnels.decrement(1.0);
                }
                Err(error) => tracing::debug!(%error, "CONNECT upgrade failed"),
            }
        });
        Response::new(Body::empty())
    }
}

/// The cache key: scheme, the `Host` the origin sees, path and query (so a reverse
/// proxy keeping clients' `Host` caches each name apart).
fn cache_key(parts: &request::Parts) -> Option<String> {
    let scheme = parts.uri.scheme_str().unwrap_or("http");
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(Authority::as_str))?;
    let path = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
    let mut key = String::with_capacity(scheme.len() + 3 + host.len() + path.len());
    key.push_str(scheme);
    key.push_str("://");
    key.push_str(host);
    key.make_ascii_lowercase();
    key.push_str(path);
    Some(key)
}

/// The URL the cache would key a request for `url` under (for purging by URL).
pub fn key_for_url(url: &str) -> Option<String> {
    let uri: Uri = url.parse().ok()?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return None;
    }
    let mut request = Request::get(uri).body(()).ok()?;
    let host = request.uri().authority()?.as_str().to_owned();
    request
        .headers_mut()
        .insert(header::HOST, HeaderValue::from_str(&host).ok()?);
    cache_key(&request.into_parts().0)
}

fn host_value(authority: &Authority) -> Result<HeaderValue, Refusal> {
    HeaderValue::from_str(authority.as_str())
        .map_err(|_| Refusal(StatusCode::BAD_REQUEST, "the request's host is not valid"))
}

/// Why the proxy will not forward a request, and the status that says so.
#[derive(Debug, Clone, Copy)]
pub struct Refusal(StatusCode, &'static str);

/// The reason for a request the allow-list refuses.
const NOT_ALLOWED: &str = "this host is not on the proxy's allow-list";

impl Refusal {
    /// The refusal as a short plain-text response.
    pub fn response(self) -> Response<Body> {
        let Refusal(status, reason) = self;
        let mut response = Response::new(Body::full(Bytes::from(format!("{reason}\n"))));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

fn refuse(status: StatusCode, reason: &'static str) -> Response<Body> {
    Refusal(status, reason).response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_host_the_origin_sees() {
        assert_eq!(
            key_for_url("http://Example.com/a?b").as_deref(),
            Some("http://example.com/a?b")
        );
        assert_eq!(key_for_url("not-a-url"), None);
        assert_eq!(key_for_url("ftp://x/"), None);
        let mut keep = Request::get("http://origin:3000/x").body(()).unwrap();
        keep.headers_mut()
            .insert(header::HOST, HeaderValue::from_static("site-a.test"));
        assert_eq!(
            cache_key(&keep.into_parts().0).as_deref(),
            Some("http://site-a.test/x")
        );
    }
}
