//! The owner's side of a peer request: the secret checked, the URL it carries turned
//! back into the request it stands for, marked (by a request extension no client
//! can forge) so that it is served here.

use http::header::{HOST, HeaderValue};
use http::{Request, Response, StatusCode, Uri};

use subtle::ConstantTimeEq;

use super::SECRET_HEADER;
use crate::body::Body;

/// Why a peer request was refused; [`response`](Self::response) says it to the
/// sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct PeerRefusal {
    status: StatusCode,
    reason: &'static str,
}

impl PeerRefusal {
    /// 403 (no or wrong secret) or 400 (no valid URL).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The refusal as a short plain-text response.
    pub fn response(&self) -> Response<Body> {
        Body::text_response(self.status, self.reason)
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
    if !presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(secret.as_bytes()))) {
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

fn refusal(status: StatusCode, reason: &'static str) -> PeerRefusal {
    PeerRefusal { status, reason }
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
        let status = |r: Result<Request<()>, PeerRefusal>| r.unwrap_err().status();
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
