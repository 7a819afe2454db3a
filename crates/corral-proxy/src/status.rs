//! The live status page on the admin listener: `GET /` (an HTML page), its
//! `/status.css` and `/status.js` (files under `status/`, built into the binary:
//! nothing is fetched from elsewhere), and `GET /status.json`, the numbers the page's
//! script polls every second ([`Snapshot`]).
//!
//! The JSON holds counters since the proxy started, and `uptime_seconds`, the
//! server's own monotonic clock. The script computes rates from two polls in a row:
//! requests per second is the difference of `requests` (every response the server
//! answered, by any status) over the difference of `uptime_seconds`, so a slow poll
//! or a browser's clock cannot skew it; the hit ratio shown large is that of the
//! responses of the last 10 seconds (the difference from the poll 10 seconds back),
//! and the one since the start is below it (see [`Snapshot`] for what counts as a
//! hit). A counter that goes back (a restarted proxy) starts the page's history anew. Nothing is kept per viewer on the server:
//! any number of pages can poll.
//!
//! The page and its data are guarded as every admin route is (see `admin.rs`): with
//! no `admin-token`, only requests addressed to an IP address or `localhost` (an SSH
//! tunnel to a loopback admin listener, `ssh -L 9090:127.0.0.1:9090 host`, then
//! `http://localhost:9090/`); with one, `Authorization: Bearer <token>` on every
//! request, the page's included, which a browser sends only through something that
//! adds the header (a reverse proxy in front, or a header-setting extension). Keys
//! are shown with `textContent`, never parsed as HTML, and the responses forbid
//! every script, style and connection but the page's own
//! (`Content-Security-Policy`).

mod snapshot;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub(crate) use snapshot::{Snapshot, Tiers};

/// The page and its files: no data (that is [`Snapshot`]'s), so no state.
pub(crate) fn pages<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", PAGE) }),
        )
        .route(
            "/status.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/status.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
}

const PAGE: &str = include_str!("status/page.html");
const STYLE: &str = include_str!("status/status.css");
const SCRIPT: &str = include_str!("status/status.js");

/// What the page may load: its own script and style, and its own data.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// A response of the status page, `body` of type `content_type`, never stored.
pub(crate) fn asset(content_type: &'static str, body: impl IntoResponse) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}
