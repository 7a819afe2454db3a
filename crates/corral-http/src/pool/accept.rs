//! The owner's side of a peer request: the secret checked, the URL it carries turned
//! back into the request it stands for, marked (by a request extension no client
//! can forge) so that it is served here.

use http::header::{HOST, HeaderValue};
use http::{Request, Response, StatusCode, Uri, request};

use subtle::ConstantTimeEq;

use super::members::{Pool, normalize_peer};
use super::protocol::{PEER_PATH, SECRET_HEADER};
use crate::body::Body;

/// Why a peer request was refused; [`response`](Self::response) says it to the
/// sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub(crate) struct PeerRefusal {
    status: StatusCode,
    reason: &'static str,
}

impl PeerRefusal {
    pub(super) fn new(status: StatusCode, reason: &'static str) -> Self {
        PeerRefusal { status, reason }
    }

    /// The refusal as a short plain-text response.
    pub(crate) fn response(&self) -> Response<Body> {
        Body::text_response(self.status, self.reason)
    }
}

impl Pool {
    /// Whether `request` is for this member's peer endpoint: its path is the peer
    /// path, and it is addressed here (no authority, or this member's own) or
    /// carries the secret. (A forward proxy's client may ask for a URL with that
    /// path on any other site.)
    pub(crate) fn is_peer_request<B>(&self, request: &Request<B>) -> bool {
        let uri = request.uri();
        if uri.path() != PEER_PATH {
            return false;
        }
        if request.headers().contains_key(SECRET_HEADER) {
            return true;
        }
        match (&self.inner.this, uri.authority()) {
            (Some(this), Some(authority)) => {
                let scheme = uri.scheme_str().unwrap_or("http");
                normalize_peer(&format!("{scheme}://{authority}")).is_ok_and(|u| *u == **this)
            }
            _ => true,
        }
    }

    /// The local request a peer request stands for (its URL, method, headers and
    /// body, marked as forwarded), or why it is refused: 403 without the shared
    /// secret, 400 without a valid `url`.
    pub(crate) fn accept<B>(&self, request: Request<B>) -> Result<Request<B>, PeerRefusal> {
        accept(&self.inner.secret, request)
    }

    /// Whether a request (in front of this pool's [`Route`](super::Route)) is a peer's: addressed
    /// to this member's peer endpoint and carrying the pool's secret. A server that
    /// adds forwarding fields (`X-Forwarded-For`) before the route trusts a peer's
    /// as it trusts a proxy's in front of it.
    ///
    /// ```
    /// # fn demo(pool: &corral_http::pool::Pool, request: &http::request::Parts) {
    /// let trusted = pool.authenticates(request);
    /// # let _ = trusted; }
    /// ```
    pub fn authenticates(&self, request: &request::Parts) -> bool {
        request.uri.path() == PEER_PATH
            && request
                .headers
                .get(SECRET_HEADER)
                .is_some_and(|presented| is_secret(&self.inner.secret, presented))
    }
}

/// The mark of a request accepted from a peer: `Route` serves it locally.
#[derive(Debug, Clone, Copy)]
pub(super) struct Accepted;

pub(super) fn accept<B>(
    secret: &HeaderValue,
    request: Request<B>,
) -> Result<Request<B>, PeerRefusal> {
    let (mut parts, body) = request.into_parts();
    let presented = parts.headers.remove(SECRET_HEADER);
    if !presented.is_some_and(|p| is_secret(secret, &p)) {
        metrics::counter!("corral_pool_requests_total", "route" => "refused").increment(1);
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "peer requests need the pool's shared secret\n",
        ));
    }
    let url = parts.uri.query().and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "url")
            .map(|(_, url)| url.into_owned())
    });
    let Some(uri) = url.and_then(|url| url.parse::<Uri>().ok()).filter(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some()
    }) else {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "a peer request names an absolute http(s) URL in its url parameter\n",
        ));
    };
    let host = uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
    if let Some(host) = host {
        parts.headers.insert(HOST, host);
    }
    parts.uri = uri;
    parts.extensions.insert(Accepted);
    metrics::counter!("corral_pool_requests_total", "route" => "accepted").increment(1);
    Ok(Request::from_parts(parts, body))
}

/// Whether `presented` is the pool's secret (compared in constant time).
pub(super) fn is_secret(secret: &HeaderValue, presented: &HeaderValue) -> bool {
    bool::from(presented.as_bytes().ct_eq(secret.as_bytes()))
}

fn refusal(status: StatusCode, reason: &'static str) -> PeerRefusal {
    PeerRefusal::new(status, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> HeaderValue {
        HeaderValue::from_static("s3cret")
    }

    fn peer_request(secret: Option<&str>, query: &str) -> Request<()> {
        let mut request = Request::get(format!("http://owner:8080/_corral/peer?{query}"));
        if let Some(secret) = secret {
            request = request.header(SECRET_HEADER, secret);
        }
        request.header("accept", "text/html").body(()).unwrap()
    }

    #[test]
    fn a_peer_request_becomes_the_request_it_carries() {
        let url = url::form_urlencoded::byte_serialize(b"http://Origin.test:81/a%20b?x=1&y=2")
            .collect::<String>();
        let local = accept(
            &secret(),
            peer_request(Some("s3cret"), &format!("url={url}")),
        )
        .unwrap();
        assert_eq!(local.uri(), "http://Origin.test:81/a%20b?x=1&y=2");
        assert_eq!(local.headers()[HOST], "Origin.test:81");
        assert_eq!(local.headers()["accept"], "text/html");
        assert!(local.extensions().get::<Accepted>().is_some());
        assert!(
            !local.headers().contains_key(SECRET_HEADER),
            "never passed on"
        );
    }

    #[test]
    fn without_the_secret_or_a_url_it_is_refused() {
        let status = |r: Result<Request<()>, PeerRefusal>| r.unwrap_err().status;
        let url = "url=http%3A%2F%2Fo%2F";
        assert_eq!(status(accept(&secret(), peer_request(None, url))), 403);
        assert_eq!(
            status(accept(&secret(), peer_request(Some("guess"), url))),
            403
        );
        assert_eq!(
            status(accept(&secret(), peer_request(Some("s3cret"), ""))),
            400
        );
        let relative = "url=%2Fetc%2Fpasswd";
        assert_eq!(
            status(accept(&secret(), peer_request(Some("s3cret"), relative))),
            400
        );
        let file = "url=file%3A%2F%2F%2Fetc%2Fpasswd";
        assert_eq!(
            status(accept(&secret(), peer_request(Some("s3cret"), file))),
            400
        );
    }
}
