//! Responses the cache builds: a stored response as the answer to a request (a 304 if
//! the request's own conditions match it), the last touches every response gets
//! (framing, the cache-status headers, the counters), and the short responses the
//! cache says itself (upstream failures, a waiter's share of an origin's server
//! error, `only-if-cached` misses).

use std::sync::Arc;

use http::header::{AGE, CONTENT_LOCATION, CONTENT_RANGE, IF_RANGE};
use http::{HeaderMap, HeaderValue, Response, StatusCode, request};
use tokio::time::Instant;

use crate::body::{Body, BoxError, RequestBodyError};
use crate::failure::OriginFailure;
use crate::framing;
use crate::hot::Ready;
use crate::ranges::{self, Ranged};
use crate::reason::Detail;
use crate::state::State;
use crate::status::{CacheStatus, Forward, Report};
use crate::stored::StoredResponse;

/// The error behind a `502`/`504` the cache made up, in the response's extensions.
#[derive(Debug, Clone)]
pub struct UpstreamError(pub Arc<dyn std::error::Error + Send + Sync>);

/// Headers a `304` answering a client's conditional request carries from the stored
/// response (RFC 9110 §15.4.5).
const NOT_MODIFIED_HEADERS: [http::HeaderName; 7] = [
    http::header::CACHE_CONTROL,
    CONTENT_LOCATION,
    http::header::DATE,
    http::header::ETAG,
    http::header::EXPIRES,
    http::header::LAST_MODIFIED,
    http::header::VARY,
];

impl State {
    /// A stored response as the answer to `request` (a 304 if the request's own
    /// conditions match it; no body for a HEAD; the ranges of a GET's `range`).
    pub(crate) fn serve(
        &self,
        stored: &Arc<StoredResponse>,
        request: &request::Parts,
        head: bool,
        range: Option<&HeaderValue>,
        mut report: Report,
        now: Instant,
    ) -> Response<Body> {
        let conditional = stored.satisfies_conditional(&request.headers);
        // A GET's `Range` (a HEAD gets the whole head), unless its own conditions
        // answer it (a 304 comes first).
        let range = range.filter(|_| !head && !conditional);
        // Ranges under `If-Range` are answered afresh: the table keys on `Range` alone.
        let plain_range = range.is_none() || !request.headers.contains_key(IF_RANGE);
        if report.is_plain_hit() && self.options.status_headers && !conditional && plain_range {
            // The hot path: a response (or range) hit many times a second has its
            // head ready.
            let age_secs = stored.age(now).as_secs();
            let ready = self.hot.head(stored, age_secs, range, now, || {
                // Room for Age, X-Cache and Cache-Status, and for a `Connection`
                // field a server adds for an HTTP/1.0 client.
                let mut headers = stored.headers.to_map(4);
                headers.append(AGE, HeaderValue::from(age_secs));
                let report = Report {
                    ttl: Some(stored.lifetime.fresh_for.as_secs() as i64 - age_secs as i64),
                    ..report
                };
                report.write(&self.options.name, &mut headers);
                match range.map(|range| ranges::answer(range, None, stored)) {
                    None => Some(Ready {
                        headers,
                        part: None,
                    }),
                    // A range answered whole (one it does not serve) is not kept:
                    // any bytes would do, and each would take a slot.
                    Some(Ranged::Whole) => None,
                    // One range, kept as where it lies in the stored body.
                    Some(Ranged::Partial(part)) => part.span().map(|span| {
                        part.describe(&mut headers);
                        Ready {
                            headers,
                            part: Some(span),
                        }
                    }),
                    Some(Ranged::Unsatisfiable { .. }) => None,
                }
            });
            if let Some(Ready { headers, part }) = ready {
                self.count(CacheStatus::Hit);
                if let Some((first, last)) = part {
                    return ranges::partial(headers, &stored.body.slice(first, last));
                }
                let body = if head {
                    Body::empty()
                } else {
                    stored.body.body()
                };
                let mut response = Response::new(body);
                *response.status_mut() = stored.status;
                *response.headers_mut() = headers;
                return response;
            }
        }
        let ranged = match range {
            Some(range) => ranges::answer(range, request.headers.get(IF_RANGE), stored),
            None => Ranged::Whole,
        };
        report.ttl = Some(stored.lifetime.ttl_seconds(stored.stored_at, now));
        let mut response = if conditional {
            let mut headers = HeaderMap::new();
            for name in &NOT_MODIFIED_HEADERS {
                for value in stored.headers.get_all(name) {
                    headers.append(name.clone(), value);
                }
            }
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            *response.headers_mut() = headers;
            response
        } else {
            match ranged {
                Ranged::Whole => {
                    let body = if head {
                        Body::empty()
                    } else {
                        stored.body.body()
                    };
                    let mut response = Response::new(body);
                    *response.status_mut() = stored.status;
                    *response.headers_mut() = stored.headers.to_map(4);
                    response
                }
                Ranged::Partial(part) => part.respond(stored.headers.to_map(5)),
                Ranged::Unsatisfiable { content_range } => {
                    let mut response = Response::new(Body::empty());
                    *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                    response.headers_mut().insert(CONTENT_RANGE, content_range);
                    response
                }
            }
        };
        response
            .headers_mut()
            .insert(AGE, HeaderValue::from(stored.age(now).as_secs()));
        self.finish(response, report, head)
    }

    /// Frames the response by its body (none when it answers a HEAD, whatever it
    /// carried: an HTTP/2 server would send it), adds the cache-status headers and
    /// counts it.
    pub(crate) fn finish(
        &self,
        response: Response<Body>,
        report: Report,
        head: bool,
    ) -> Response<Body> {
        let (mut parts, mut body) = response.into_parts();
        if head {
            body = Body::empty();
        }
        framing::frame_response(parts.status, &mut parts.headers, &body, head);
        let mut response = Response::from_parts(parts, body);
        if self.options.status_headers {
            report.write(&self.options.name, response.headers_mut());
        } else {
            // Without the headers, the status still reaches the server's own logs.
            response.extensions_mut().insert(report.status);
        }
        self.count(report.status);
        response
    }

    /// A `502` or `504` for a failed upstream request, whose one line says why
    /// ([`OriginFailure`]: a `403` when the upstream would not connect there), or a
    /// `400` when it failed because the client's own request body could not be read.
    /// Not logged above DEBUG: the fetch reported its failure once
    /// ([`State::report_failure`]), however many requests waited on it; the engine
    /// reports its own timeouts and panics.
    pub(crate) fn error_response(
        &self,
        error: BoxError,
        report: Report,
        head: bool,
    ) -> Response<Body> {
        let (status, reason) = if RequestBodyError::find(&*error).is_some() {
            (
                StatusCode::BAD_REQUEST,
                "the request body could not be read".to_owned(),
            )
        } else {
            let failure = OriginFailure::of(&*error);
            (failure.status(), failure.to_string())
        };
        tracing::debug!(%error, status = status.as_u16(), "answered a failed upstream request");
        let mut response = Body::text_response(status, format!("{reason}\n"));
        response
            .extensions_mut()
            .insert(UpstreamError(Arc::from(error)));
        self.finish(response, report, head)
    }

    /// A waiter's answer when the fetch it waited on got a server error that may not
    /// be shared with it (it is private, sets a cookie, or answered credentials):
    /// that status, with a short reason of its own that says so.
    pub(crate) fn origin_failed(
        &self,
        status: StatusCode,
        head: bool,
        report: Report,
    ) -> Response<Body> {
        let reason = format!(
            "the origin answered {status} to the request this one waited on, in a response that may not be shared\n"
        );
        let response = Body::text_response(status, reason);
        self.finish(response, report, head)
    }

    /// `only-if-cached` with nothing suitable stored: a 504 (RFC 9111 §5.2.1.7).
    pub(crate) fn only_if_cached_miss(&self, head: bool) -> Response<Body> {
        let response = Body::text_response(
            StatusCode::GATEWAY_TIMEOUT,
            "not in cache (only-if-cached)\n",
        );
        let report = Report::new(CacheStatus::Miss)
            .forward(Forward::Request)
            .detail(Detail::OnlyIfCached);
        self.finish(response, report, head)
    }
}
