//! One request through the proxy: where it goes (forward: its absolute URI, checked
//! against the allow-list; reverse: the configured origin), the headers a proxy must
//! change (hop-by-hop fields, `Host`, `X-Forwarded-For`, `Via`), then the HTTP cache in
//! front of the origin client. `CONNECT` is tunnelled, uncached. A request that
//! already passed through this proxy (its `Via` names it) is a loop: `508`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corral_http::pool::{Pool, Route, SECRET_HEADER, mark_peer_answer};
use corral_http::{Body, CacheHandle, HttpCache, Policy, UpstreamError};
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, request};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tower::{Layer, ServiceExt};

use crate::allow::{AllowList, Forbidden, Verdict};
use crate::config::{Config, HostMode, Origin};
use crate::dial::Listeners;
use crate::forwarded::{Forwarding, client_ip};
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
    /// Never a target: this proxy's own listeners.
    listeners: Arc<Listeners>,
    forwarding: Forwarding,
    /// Clients whose forwarding fields are believed.
    trusted: Vec<ipnet::IpNet>,
    connect_timeout: Duration,
}

/// Who sent a request, as the proxy tells the origin.
#[derive(Debug, Clone)]
pub struct Client {
    /// Its address, as an `X-Forwarded-For` value.
    forwarded_for: HeaderValue,
    /// Whether its own forwarding fields are believed.
    trusted: bool,
}

impl Proxy {
    /// The proxy for `config`; `self_url` is its base URL in a pool of peers, and
    /// `listeners` the addresses it listens on (never fetched from by a forward
    /// proxy).
    pub fn new(
        config: &Config,
        allow: Arc<AllowList>,
        listeners: Listeners,
        self_url: &str,
    ) -> anyhow::Result<Proxy> {
        let mode = match config.origin()? {
            Some(origin) => Mode::Reverse {
                origin_host: host_value(&origin.authority)
                    .map_err(|_| anyhow::anyhow!("the upstream's host is not a valid Host"))?,
                origin,
                host: config.host,
            },
            None => Mode::Forward,
        };
        // A reverse proxy's origin is the operator's choice, and an origin that leads
        // back here is a loop that `Via` catches (with a 508 that says so).
        let listeners = Arc::new(match mode {
            Mode::Forward => listeners,
            Mode::Reverse { .. } => Listeners::default(),
        });
        let forwarding = Forwarding::new(config.via.as_deref()).map_err(anyhow::Error::msg)?;
        let upstream = Upstream::new(config, allow.clone(), listeners.clone(), forwarding.clone())
            .map_err(|e| anyhow::anyhow!(e))?;
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
            listeners,
            forwarding,
            trusted: config.trusted_networks()?,
            connect_timeout: config.connect_timeout,
        })
    }

    /// The client at `addr`, as this proxy sees it.
    pub fn client(&self, addr: std::net::SocketAddr) -> Client {
        let ip = addr.ip().to_canonical();
        Client {
            forwarded_for: client_ip(addr),
            trusted: self.trusted.iter().any(|net| net.contains(&ip)),
        }
    }

    /// The pool of peers, if there is one.
    pub fn pool(&self) -> Option<&Pool> {
        self.pool.as_ref().map(|(pool, _)| pool)
    }

    /// A handle on the cache (purges, statistics).
    pub fn cache(&self) -> CacheHandle {
        self.cache.handle()
    }

    /// Answers one request from `client`.
    pub async fn handle(&self, request: Request<Incoming>, client: &Client) -> Response<Body> {
        if self.forwarding.is_loop(request.headers()) {
            tracing::warn!(uri = %request.uri(), "a request came back to this proxy: loop");
            return refuse(
                StatusCode::LOOP_DETECTED,
                "this request already passed through this proxy (its Via names it): a loop",
            );
        }
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
            Ok(()) => self.fetch(parts, body, client, from_peer).await,
            Err(refusal) => refusal.response(),
        };
        // A peer's request gets this pool member's answer, refusals included.
        if from_peer {
            mark_peer_answer(&mut response);
        }
        response
    }

    /// The response to a request that has its target: through the pool's router or
    /// straight to the cache. A peer of the pool is trusted as a proxy is.
    async fn fetch(
        &self,
        mut parts: request::Parts,
        body: Incoming,
        client: &Client,
        from_peer: bool,
    ) -> Response<Body> {
        self.forwarding.prepare_request(
            &mut parts.headers,
            &client.forwarded_for,
            client.trusted || from_peer,
        );
        // The origin connection speaks its own version (HTTP/2 where configured or
        // offered by ALPN), whatever the client spoke.
        parts.version = http::Version::HTTP_11;
        let body = if http_body::Body::is_end_stream(&body) {
            Body::empty()
        } else {
            Body::from_client(body)
        };
        let request = Request::from_parts(parts, body);
        let response = match &self.pool {
            Some((_, route)) => route.clone().oneshot(request).await,
            None => self.cache.clone().oneshot(request).await,
        };
        let response = match response {
            Ok(response) => response,
            Err(never) => match never {},
        };
        // The address a name led to is one the proxy must not connect to.
        let forbidden = response
            .extensions()
            .get::<UpstreamError>()
            .and_then(|error| Forbidden::find(&*error.0));
        match forbidden {
            Some(Forbidden(why)) => {
                tracing::info!(reason = %why, "refused at connection");
                text_response(StatusCode::FORBIDDEN, format!("{why}\n"))
            }
            None => response,
        }
    }

    /// Points the request at its target, or refuses it.
    async fn target(&self, parts: &mut request::Parts) -> Result<(), Refusal> {
        one_host(parts)?;
        match &self.mode {
            Mode::Reverse {
                origin,
                host,
                origin_host,
            } => {
                let client_authority = parts.uri.authority().cloned();
                let mut uri = std::mem::take(&mut parts.uri).into_parts();
                uri.scheme = Some(origin.scheme.clone());
                uri.authority = Some(origin.authority.clone());
                if uri.path_and_query.is_none() {
                    uri.path_and_query = Some(PathAndQuery::from_static("/"));
                }
                parts.uri = Uri::from_parts(uri).map_err(|_| {
                    Refusal(StatusCode::BAD_REQUEST, "the request's path is not valid")
                })?;
                let host = match (host, parts.headers.contains_key(header::HOST)) {
                    (HostMode::Keep, true) => return Ok(()),
                    // An HTTP/2 client names the host in `:authority` alone.
                    (HostMode::Keep, false) => match &client_authority {
                        Some(authority) => host_value(authority)?,
                        None => origin_host.clone(),
                    },
                    (HostMode::Upstream, _) => origin_host.clone(),
                };
                parts.headers.insert(header::HOST, host);
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
                refuse_userinfo(authority)?;
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
        let Some(authority) = request.uri().authority() else {
            return refuse(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
        };
        if let Err(refusal) = refuse_userinfo(authority) {
            return refusal.response();
        }
        let Some((host, port)) = authority
            .port_u16()
            .map(|p| (authority.host().to_owned(), p))
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
            Ok(addrs) => addrs
                .into_iter()
                .filter(|addr| !self.listeners.is_self(*addr))
                .collect::<Vec<_>>(),
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                return refuse(StatusCode::FORBIDDEN, NOT_ALLOWED);
            }
            Err(_) => return refuse(StatusCode::BAD_GATEWAY, "cannot resolve the tunnel's host"),
        };
        if addrs.is_empty() {
            tracing::info!(%host, port, "tunnel to this proxy's own listener refused");
            return refuse(StatusCode::FORBIDDEN, OWN_LISTENER);
        }
        let connected = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(&addrs[..]),
        )
        .await;
        let mut target = match connected {
            // The address connected to, checked again: whatever it was called, it is
            // not this proxy.
            Ok(Ok(stream)) if stream.peer_addr().is_ok_and(|a| self.listeners.is_self(a)) => {
                tracing::info!(%host, port, "tunnel to this proxy's own listener refused");
                return refuse(StatusCode::FORBIDDEN, OWN_LISTENER);
            }
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

/// A request names one host: more than one `Host` line (RFC 9112 §3.2), or an HTTP/2
/// `Host` that differs from `:authority` (RFC 9113 §8.3.1), is a 400 (the cache key
/// and the origin could each read a different one).
fn one_host(parts: &request::Parts) -> Result<(), Refusal> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal(StatusCode::BAD_REQUEST, "more than one Host"));
    }
    if let (http::Version::HTTP_2, Some(host), Some(authority)) =
        (parts.version, host, parts.uri.authority())
        && !host
            .as_bytes()
            .eq_ignore_ascii_case(authority.as_str().as_bytes())
    {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "Host and :authority name different hosts",
        ));
    }
    Ok(())
}

/// Userinfo (`user@host`) in a proxied URL is an error (RFC 9110 §4.2.4): it is not
/// part of any origin, and passed on it would reach the origin's `Host` and the key.
fn refuse_userinfo(authority: &Authority) -> Result<(), Refusal> {
    if authority.as_str().contains('@') {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "userinfo (user@host) is not allowed in a proxied URL",
        ));
    }
    Ok(())
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
/// The reason for a tunnel to the proxy itself.
const OWN_LISTENER: &str = "this is the proxy's own listener";

impl Refusal {
    /// The refusal as a short plain-text response.
    pub fn response(self) -> Response<Body> {
        let Refusal(status, reason) = self;
        text_response(status, format!("{reason}\n"))
    }
}

/// A short plain-text response of the proxy's own.
fn text_response(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(Body::full(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
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
