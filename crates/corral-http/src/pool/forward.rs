//! Sending a request to its owner: the peer request built (URL in the query, the
//! secret added, hop-by-hop fields removed), sent within the
//! peer timeout, and a peer that fails marked down.

use std::sync::Arc;

use http::header::HOST;
use http::{Method, Request, Response, Uri, Version};
use tower::ServiceExt;

use super::members::Pool;
use super::protocol::{PEER_HEADER, PEER_PATH, SECRET_HEADER};
use crate::body::Body;
use crate::framing;
use crate::hop::remove_hop_by_hop;

/// A peer could not serve a request: unreachable, reset, or too slow. The request
/// may be served elsewhere (if it can be sent again).
#[derive(Debug, Clone, thiserror::Error)]
#[error("peer {peer} unavailable: {reason}")]
pub struct PeerUnavailable {
    /// The peer's base URL.
    pub peer: Arc<str>,
    /// What went wrong.
    pub reason: String,
}

impl PeerUnavailable {
    /// The `PeerUnavailable` behind `error`, if any (looking through its sources).
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a PeerUnavailable> {
        crate::body::find_cause(error)
    }
}

impl Pool {
    /// Sends `request` (for `url`) to `peer` and returns the peer's response.
    pub(super) async fn forward(
        &self,
        peer: &Arc<str>,
        url: &str,
        request: Request<Body>,
    ) -> Result<Response<Body>, PeerUnavailable> {
        let encoded: String = url::form_urlencoded::byte_serialize(url.as_bytes()).collect();
        self.send(peer, &format!("url={encoded}"), request).await
    }

    /// Sends `request` to `peer`'s endpoint with `query` and returns the peer's
    /// response.
    pub(super) async fn send(
        &self,
        peer: &Arc<str>,
        query: &str,
        request: Request<Body>,
    ) -> Result<Response<Body>, PeerUnavailable> {
        let unavailable = |reason: String| PeerUnavailable {
            peer: peer.clone(),
            reason,
        };
        let (mut parts, body) = request.into_parts();
        parts.uri = format!("{peer}{PEER_PATH}?{query}")
            .parse::<Uri>()
            .map_err(|e| unavailable(format!("cannot address it: {e}")))?;
        // The client negotiates its own version with the peer and sets its Host.
        parts.version = Version::HTTP_11;
        remove_hop_by_hop(&mut parts.headers);
        framing::frame_request(&parts.method, &mut parts.headers, &body);
        let head = parts.method == Method::HEAD;
        parts.headers.remove(HOST);
        parts
            .headers
            .insert(SECRET_HEADER, self.inner.secret.clone());
        let client = self.inner.client.clone();
        let sent = tokio::time::timeout(
            self.inner.peer_timeout,
            client.oneshot(Request::from_parts(parts, body)),
        )
        .await;
        let result = match sent {
            // Only a pool member's answer counts; a refusal (another secret) or a
            // stranger's answer means this peer cannot serve the pool now.
            Ok(Ok(response)) if response.headers().contains_key(PEER_HEADER) => {
                let (mut parts, body) = response.into_parts();
                parts.headers.remove(PEER_HEADER);
                remove_hop_by_hop(&mut parts.headers);
                framing::frame_response(parts.status, &mut parts.headers, &body, head);
                Ok(Response::from_parts(parts, body))
            }
            Ok(Ok(response)) => Err(unavailable(format!(
                "answered {} without the pool's mark (a different secret, or not a corral peer)",
                response.status()
            ))),
            Ok(Err(error)) => Err(unavailable(describe(&*error))),
            Err(_) => Err(unavailable(format!(
                "no response within {:?}",
                self.inner.peer_timeout
            ))),
        };
        match &result {
            Ok(_) => self.mark_up(peer),
            Err(error) => self.mark_down(peer, &error.reason),
        }
        result
    }
}

/// An error with its sources, on one line.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What to send when a request could not be served and cannot be sent again.
pub(super) fn bad_gateway(error: &PeerUnavailable) -> Response<Body> {
    Body::text_response(http::StatusCode::BAD_GATEWAY, format!("{error}\n"))
}

/// Keeps what is needed to send a request again elsewhere: only a bodiless one of a
/// safe method (GET, HEAD, OPTIONS, TRACE), which a peer that failed after receiving
/// it may already have acted on without harm.
pub(super) fn replayable(request: &Request<Body>) -> Option<http::request::Parts> {
    if !request.method().is_safe() || !http_body::Body::is_end_stream(request.body()) {
        return None;
    }
    let mut copy = Request::new(());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    Some(copy.into_parts().0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, body: Body) -> Request<Body> {
        let mut request = Request::new(body);
        *request.method_mut() = method;
        request
    }

    #[test]
    fn only_bodiless_requests_of_safe_methods_are_sent_again() {
        assert!(replayable(&request(Method::GET, Body::empty())).is_some());
        assert!(replayable(&request(Method::HEAD, Body::empty())).is_some());
        for unsafe_method in [Method::POST, Method::DELETE, Method::PUT, Method::PATCH] {
            assert!(
                replayable(&request(unsafe_method.clone(), Body::empty())).is_none(),
                "{unsafe_method}"
            );
        }
        let with_body = request(Method::GET, Body::full(bytes::Bytes::from_static(b"q")));
        assert!(replayable(&with_body).is_none());
    }
}
