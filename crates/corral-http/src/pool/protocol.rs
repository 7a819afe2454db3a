//! The peer protocol's names: the endpoint's path, the header that carries the
//! pool's secret, and the mark on an owner's answer.

use http::Response;
use http::header::{HeaderName, HeaderValue};

/// The path of the peer endpoint.
pub(crate) const PEER_PATH: &str = "/_corral/peer";
/// The header carrying the pool's shared secret.
pub(crate) const SECRET_HEADER: HeaderName = HeaderName::from_static("x-corral-peer-secret");
/// Marks a pool member's answer to a peer request (a response without it, such as
/// a refusal or a stranger's answer, counts as the peer being unavailable).
pub(crate) const PEER_HEADER: HeaderName = HeaderName::from_static("x-corral-peer");

/// Marks `response` as this pool member's answer to a peer request it accepted.
pub(crate) fn mark_peer_answer<B>(response: &mut Response<B>) {
    response
        .headers_mut()
        .insert(PEER_HEADER, HeaderValue::from_static("1"));
}
