//! Why the proxy refuses a request, and the short plain-text response that says so.

use corral_http::Body;
use http::{Response, StatusCode};

/// Why the proxy will not forward a request, and the status that says so.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refusal(pub StatusCode, pub &'static str);

impl Refusal {
    /// The refusal as a short plain-text response.
    pub(crate) fn response(self) -> Response<Body> {
        let Refusal(status, reason) = self;
        Body::text_response(status, format!("{reason}\n"))
    }
}

/// A refusal's response at once.
pub(crate) fn refuse(status: StatusCode, reason: &'static str) -> Response<Body> {
    Refusal(status, reason).response()
}

/// The reason for a request the allow-list refuses.
pub(crate) const NOT_ALLOWED: &str = "this host is not on the proxy's allow-list";
/// The reason for a tunnel to the proxy itself.
pub(crate) const OWN_LISTENER: &str = "this is the proxy's own listener";
