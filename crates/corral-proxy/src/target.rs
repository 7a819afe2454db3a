//! [`Target`]: the proxy's step between the pool's router and the cache. A request is
//! pointed at its target (a forward proxy's: the absolute URL it names, checked
//! against the allow-list; a reverse proxy's: the configured origin, with the `Host`
//! the origin is to see), or refused with a short response that says why. And an
//! upstream connection the dialler refused (an address that a name led to and the
//! proxy must not reach) is answered as the refusal it is, a 403.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use corral_http::{Body, UpstreamError};
use futures_util::future::BoxFuture;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, request};
use tower::{Service, ServiceExt};

use crate::allow::{AllowList, Forbidden, Verdict};
use crate::config::{HostMode, Origin};
use crate::refusal::{NOT_ALLOWED, Refusal};

/// Where requests go.
#[derive(Debug, Clone)]
pub(crate) enum Mode {
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

impl Mode {
    /// The mode of a proxy for `origin` (a forward proxy when `None`).
    pub(crate) fn new(origin: Option<Origin>, host: HostMode) -> Result<Mode, Refusal> {
        Ok(match origin {
            Some(origin) => Mode::Reverse {
                origin_host: host_value(&origin.authority)?,
                origin,
                host,
            },
            None => Mode::Forward,
        })
    }

    /// Points a reverse proxy's request at the origin.
    fn point_at_origin(&self, parts: &mut request::Parts) -> Result<(), Refusal> {
        let Mode::Reverse { origin, .. } = self else {
            return Ok(());
        };
        let host = self.origin_host(parts)?;
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.scheme = Some(origin.scheme.clone());
        uri.authority = Some(origin.authority.clone());
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        parts.uri = Uri::from_parts(uri)
            .map_err(|_| Refusal(StatusCode::BAD_REQUEST, "the request's path is not valid"))?;
        if let Some(host) = host {
            parts.headers.insert(header::HOST, host);
        }
        Ok(())
    }

    /// The `Host` a reverse proxy's origin is to see for a request (`None`: the
    /// request's own; and for a forward proxy).
    fn origin_host(&self, parts: &request::Parts) -> Result<Option<HeaderValue>, Refusal> {
        let Mode::Reverse {
            host, origin_host, ..
        } = self
        else {
            return Ok(None);
        };
        Ok(match (host, parts.headers.contains_key(header::HOST)) {
            (HostMode::Keep, true) => None,
            // An HTTP/2 client names the host in `:authority` alone.
            (HostMode::Keep, false) => Some(match parts.uri.authority() {
                Some(authority) => host_value(authority)?,
                None => origin_host.clone(),
            }),
            (HostMode::Upstream, _) => Some(origin_host.clone()),
        })
    }

    /// The cache key of the URL a client asks for (a reverse proxy's own URL, such as
    /// `http://this-proxy/p`, or a forward proxy's target), as the proxy keys a
    /// request for it: what a purge of that URL must remove. `None` for what is not
    /// an absolute http(s) URL.
    pub(crate) fn key_of_client_url(&self, url: &str) -> Option<String> {
        let uri: Uri = url.parse().ok()?;
        let scheme = uri.scheme_str()?;
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return None;
        }
        let host = HeaderValue::from_str(uri.authority()?.as_str()).ok()?;
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.uri = uri;
        parts.headers.insert(header::HOST, host);
        self.target_url(&parts)
    }

    /// The URL a request is for once pointed at its target (what the pool routes
    /// it by, so that every member sends one resource to one owner), or `None` when
    /// it is refused.
    pub(crate) fn target_url(&self, parts: &request::Parts) -> Option<String> {
        let Mode::Reverse { origin, .. } = self else {
            // A forward proxy's target is the URL the request names.
            parts.uri.authority()?;
            return corral_http::url_key(&parts.uri.to_string());
        };
        let host = self.origin_host(parts).ok()?;
        let host = match &host {
            Some(host) => host,
            None => parts.headers.get(header::HOST)?,
        };
        let host = host.to_str().ok()?;
        if !corral_http::is_host(host) {
            return None;
        }
        let path = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        // An asterisk-form target (`OPTIONS *`) names no resource: served here, never
        // forwarded as another request.
        if !path.starts_with('/') {
            return None;
        }
        corral_http::url_key(&format!("{}://{host}{path}", origin.scheme))
    }
}

/// Points a forward proxy's request at the URL it names, if the allow-list allows it.
async fn point_at_url(allow: &AllowList, parts: &mut request::Parts) -> Result<(), Refusal> {
    let (Some(scheme), Some(authority)) = (parts.uri.scheme(), parts.uri.authority()) else {
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
    if allow.check(authority.host(), port).await == Verdict::Refused {
        tracing::info!(host = authority.host(), "refused by the allow-list");
        return Err(Refusal(StatusCode::FORBIDDEN, NOT_ALLOWED));
    }
    let host = host_value(authority)?;
    parts.headers.insert(header::HOST, host);
    Ok(())
}

/// Userinfo (`user@host`) in a proxied URL is an error (RFC 9110 §4.2.4): it is not
/// part of any origin, and passed on it would reach the origin's `Host` and the key.
pub(crate) fn refuse_userinfo(authority: &Authority) -> Result<(), Refusal> {
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

/// Points each request at its target in front of `S` (the cache); see the
/// [module docs](self).
#[derive(Clone)]
pub(crate) struct Target<S> {
    inner: S,
    mode: Arc<Mode>,
    allow: Arc<AllowList>,
}

impl<S> Target<S> {
    pub(crate) fn new(inner: S, mode: Arc<Mode>, allow: Arc<AllowList>) -> Self {
        Target { inner, mode, allow }
    }
}

impl<S> Service<Request<Body>> for Target<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Unpin + Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = TargetFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        match &*self.mode {
            // No allow-list to consult: answered (or passed on) at once.
            Mode::Reverse { .. } => match self.mode.point_at_origin(&mut parts) {
                Ok(()) => TargetFuture::Inner(self.inner.call(Request::from_parts(parts, body))),
                Err(refusal) => TargetFuture::Refused(Some(refusal.response())),
            },
            Mode::Forward => {
                let (inner, allow) = (self.inner.clone(), self.allow.clone());
                TargetFuture::Checking(Box::pin(async move {
                    match point_at_url(&allow, &mut parts).await {
                        Ok(()) => match inner.oneshot(Request::from_parts(parts, body)).await {
                            Ok(response) => response,
                            Err(never) => match never {},
                        },
                        Err(refusal) => refusal.response(),
                    }
                }))
            }
        }
    }
}

/// The future of a [`Target`] call.
pub(crate) enum TargetFuture<F> {
    /// Refused before the cache saw it.
    Refused(Option<Response<Body>>),
    /// In the cache.
    Inner(F),
    /// Checking the allow-list, then in the cache.
    Checking(BoxFuture<'static, Response<Body>>),
}

impl<F> Future for TargetFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>> + Unpin,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match self.get_mut() {
            TargetFuture::Refused(response) => match response.take() {
                Some(response) => return Poll::Ready(Ok(response)),
                None => panic!("TargetFuture polled after it completed"),
            },
            TargetFuture::Inner(inner) => match Pin::new(inner).poll(cx) {
                Poll::Ready(Ok(response)) => response,
                Poll::Ready(Err(never)) => match never {},
                Poll::Pending => return Poll::Pending,
            },
            TargetFuture::Checking(checking) => std::task::ready!(checking.as_mut().poll(cx)),
        };
        Poll::Ready(Ok(refused_at_connection(response)))
    }
}

/// A 403 for a response whose upstream connection the dialler refused.
fn refused_at_connection(response: Response<Body>) -> Response<Body> {
    let forbidden = response
        .extensions()
        .get::<UpstreamError>()
        .and_then(|error| Forbidden::find(&*error.0));
    match forbidden {
        Some(Forbidden(why)) => {
            tracing::info!(reason = %why, "refused at connection");
            Body::text_response(StatusCode::FORBIDDEN, format!("{why}\n"))
        }
        None => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reverse(host: HostMode) -> Mode {
        let origin = Origin {
            scheme: Scheme::HTTP,
            authority: Authority::from_static("origin.internal:8080"),
        };
        Mode::new(Some(origin), host).unwrap()
    }

    fn parts(uri: &str, host: Option<&str>) -> request::Parts {
        let mut request = Request::get(uri);
        if let Some(host) = host {
            request = request.header(header::HOST, host);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn requests_are_routed_by_the_url_they_will_have() {
        let upstream = reverse(HostMode::Upstream);
        for host in ["proxy-a:1", "Proxy-B:2"] {
            assert_eq!(
                upstream.target_url(&parts("/p?q", Some(host))).as_deref(),
                Some("http://origin.internal:8080/p?q"),
                "every name a client uses is the one origin"
            );
        }
        let keep = reverse(HostMode::Keep);
        assert_eq!(
            keep.target_url(&parts("/p", Some("Site.Example")))
                .as_deref(),
            Some("http://site.example/p"),
            "the origin serves each name apart"
        );
        assert_eq!(keep.target_url(&parts("/p", Some("victim/x"))), None);
        assert_eq!(
            keep.target_url(&parts("http://h2.example/p", None))
                .as_deref(),
            Some("http://h2.example/p"),
            "an HTTP/2 request names its host in :authority"
        );
        assert_eq!(
            Mode::Forward
                .target_url(&parts("http://target.example/p", Some("other.example")))
                .as_deref(),
            Some("http://target.example/p"),
            "a forward proxy fetches the URL the request names, whatever its Host"
        );
        assert_eq!(Mode::Forward.target_url(&parts("/p", Some("h"))), None);
        let mut asterisk = parts("/", Some("site.example"));
        asterisk.uri = http::Uri::from_static("*");
        assert_eq!(
            keep.target_url(&asterisk),
            None,
            "OPTIONS * names no resource"
        );
    }
}
