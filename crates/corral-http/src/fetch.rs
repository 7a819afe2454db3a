//! One upstream fetch for the cache: the request (conditional when a stored response
//! has validators), the response's fate (stored, shared with the fetch's waiters, or
//! handed to its requester alone), and the engine entries it becomes.

use std::sync::Arc;
use std::time::Duration;

use corral::{Loaded, Unshared};
use http::header::{
    IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, RANGE,
};
use http::{Method, Request, Response, StatusCode, request, response};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::body::{Body, BoxError, Collected, collect};
use crate::content::Content;
use crate::failure::{OriginError, OriginFailure};
use crate::fields::Fields;
use crate::policy::Lifetime;
use crate::reason::NotStored;
use crate::state::State;
use crate::stored::{Provenance, Stored, StoredResponse, stored_headers};
use crate::upstream::Upstream;
use crate::vary::{Vary, VarySpec, new_generation, selecting_values, variant_key_for};

/// Where a fetch is for: the key it runs under, the URL's key, and the variant index
/// that led to it (if the URL's responses vary).
#[derive(Clone)]
pub(crate) struct Target {
    pub key: String,
    pub primary: String,
    pub index: Option<Arc<VarySpec>>,
}

/// What one fetch produced.
pub(crate) enum Fetched {
    /// A response that may be stored for `keep_for` and shared (zero: shared only),
    /// and where it goes.
    Shareable(Arc<StoredResponse>, Destination),
    /// A response only its requester may have.
    Private(Private),
}

/// A response only the request that fetched it may have, and why it is not stored.
pub(crate) struct Private {
    pub response: Response<Body>,
    pub reason: NotStored,
}

/// Where a fetch that runs for waiters hands its requester's own response when it
/// cannot be shared (pingora's lock `GiveUp`: the waiters then go their own way).
pub(crate) type Handoff = oneshot::Sender<Private>;

/// What a fetch's waiters get when the origin answered it with a server error: its
/// status. (The response itself went to the fetch's requester through its [`Handoff`].)
/// A waiter serves a stale response if it may, or a short one of this status (not the
/// origin's, which may be meant for the requester alone), rather than sending a
/// failing origin one more request each.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the origin answered {status}")]
pub(crate) struct OriginFailed {
    pub status: StatusCode,
}

impl OriginFailed {
    /// The `OriginFailed` behind `error`, if any (looking through its sources).
    pub(crate) fn find<'a>(
        error: &'a (dyn std::error::Error + 'static),
    ) -> Option<&'a OriginFailed> {
        crate::body::find_cause(error)
    }
}

/// The request a fetch sends: the client's, as a GET (a HEAD is answered from the
/// GET's response), without its own conditions or range; conditional on `stale`'s
/// validators when there is a stored response to revalidate.
pub(crate) fn upstream_request(
    client: &request::Parts,
    stale: Option<&StoredResponse>,
) -> request::Parts {
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = Method::GET;
    parts.uri = client.uri.clone();
    parts.version = client.version;
    parts.headers = client.headers.clone();
    parts.extensions = client.extensions.clone();
    for name in [
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_MATCH,
        IF_UNMODIFIED_SINCE,
        IF_RANGE,
        RANGE,
    ] {
        parts.headers.remove(name);
    }
    if let Some(stale) = stale {
        let (etag, last_modified) = stale.validators();
        if let Some(etag) = etag {
            parts.headers.insert(IF_NONE_MATCH, etag);
        }
        if let Some(last_modified) = last_modified {
            parts.headers.insert(IF_MODIFIED_SINCE, last_modified);
        }
    }
    parts
}

/// What a fetch notes when it begins: the marks of the invalidations made so far (the
/// disk tier's, and the cache's), so that a body written to disk as it arrives, or a
/// response stored outside the flight, is not kept if a purge came after the fetch
/// began (as a load's value is kept out of every tier).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Began {
    #[cfg(feature = "disk")]
    mark: Option<corral::disk::WriteMark>,
    /// The invalidations so far, for a response stored outside the flight.
    pub(crate) insert: corral::InsertMark,
}

impl Began {
    /// A fetch beginning now.
    pub(crate) fn now(state: &State) -> Self {
        Began {
            #[cfg(feature = "disk")]
            mark: state.cache.write_mark(),
            insert: state.cache.insert_mark(),
        }
    }
}

/// When a fetch run as an engine load gives up: `fetch_timeout` after its loader was
/// made, just before the engine's load began, so never later than the engine's own
/// timeout of the same length (and on a tie the loader's, polled inside the engine's,
/// ends first). The fetch then fails with [`OriginFailure::FetchTimeout`], reported
/// with its URL, rather than the engine's bare [`corral::Error::Timeout`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    at: Instant,
    after: Duration,
}

impl Deadline {
    /// `fetch_timeout` from now.
    pub(crate) fn now(state: &State) -> Self {
        let after = state.options.fetch_timeout;
        Deadline {
            at: Instant::now() + after,
            after,
        }
    }
}

/// Where a shareable response is stored: under `key`, with the new variant index
/// `spec` that leads to it when it varies by fields other than those of the index it
/// was fetched under (if any).
pub(crate) struct Destination {
    pub key: String,
    pub spec: Option<Arc<VarySpec>>,
}

impl Destination {
    /// Where `response`, fetched under `target`, goes.
    pub(crate) fn of(response: &StoredResponse, target: &Target) -> Self {
        match &response.vary {
            None => Destination {
                key: target.primary.clone(),
                spec: None,
            },
            Some((names, _)) if target.index.as_ref().is_some_and(|s| &s.names == names) => {
                Destination {
                    key: target.key.clone(),
                    spec: None,
                }
            }
            Some((names, selecting)) => {
                let spec = Arc::new(VarySpec {
                    names: names.clone(),
                    generation: new_generation(),
                });
                Destination {
                    key: variant_key_for(&target.primary, &spec, selecting),
                    spec: Some(spec),
                }
            }
        }
    }
}

/// Decides what the response to a fetch's `request`, made for `target`, is for
/// (reading its body if it may be stored, or writing it to disk as it arrives if it is
/// too large for memory).
pub(crate) async fn classify(
    state: &State,
    request: &request::Parts,
    (target, began): (&Target, Began),
    response: Response<Body>,
    stale: Option<Arc<StoredResponse>>,
) -> Result<Fetched, BoxError> {
    #[cfg(not(feature = "disk"))]
    let _ = began;
    let (parts, body) = response.into_parts();
    if parts.status == StatusCode::NOT_MODIFIED
        && let Some(stale) = stale
    {
        return Ok(revalidated(state, request, target, &parts, &stale));
    }
    // A server error is stored only when it states its own lifetime (RFC 9111 §3),
    // and never in place of a stored response it failed to refresh (which
    // stale-if-error may still serve). One that is not stored still goes to the
    // requests that waited on this fetch when it may be shared with them; else they
    // get a short response of its status.
    let server_error =
        parts.status.is_server_error() && parts.status != StatusCode::NOT_IMPLEMENTED;
    let lifetime = match state.lifetime(request, &parts) {
        Ok(lifetime) if !server_error || stale.is_none() => lifetime,
        Err(_) if server_error && stale.is_none() && state.may_share(request, &parts) => {
            Lifetime::UNSTORED
        }
        Err(reason) if !server_error => return Ok(private(parts, body, reason)),
        _ => return Ok(private(parts, body, NotStored::ServerError)),
    };
    let vary = match Vary::parse(&parts.headers) {
        Vary::Names(names) => {
            let values = selecting_values(&names, &request.headers, state.options.normalize_vary);
            Some((names, values))
        }
        Vary::None | Vary::Any => None,
    };
    let body = match collect(body, state.options.max_body).await {
        Collected::Whole(bytes) => Content::Memory(bytes),
        Collected::Oversized(body) if server_error => {
            return Ok(private(parts, body, NotStored::ServerError));
        }
        Collected::Oversized(body) => {
            #[cfg(feature = "disk")]
            let (body, reason) =
                match spool(state, (target, began), &parts, (lifetime, vary), body).await {
                    Ok(fetched) => return Ok(fetched),
                    Err(refused) => refused,
                };
            #[cfg(not(feature = "disk"))]
            let reason = NotStored::TooLarge;
            return Ok(private(parts, body, reason));
        }
        Collected::Failed(error) => return Err(error),
    };
    let response = shareable(&parts, body, lifetime, vary);
    let destination = Destination::of(&response, target);
    Ok(Fetched::Shareable(Arc::new(response), destination))
}

/// A shareable response whose body is too large for memory, written to the disk tier
/// as it arrives (`spool.rs`) when its length is stated and it is kept at all; else
/// its body back, to stream through unstored, and why.
#[cfg(feature = "disk")]
async fn spool(
    state: &State,
    (target, began): (&Target, Began),
    parts: &response::Parts,
    (lifetime, vary): (Lifetime, Option<(Vec<http::HeaderName>, String)>),
    body: Body,
) -> Result<Fetched, (Body, NotStored)> {
    let (len, mark) = match (http_body::Body::size_hint(&body).exact(), began.mark) {
        (Some(len), Some(mark)) if !lifetime.keep_for.is_zero() => (len, mark),
        _ => return Err((body, NotStored::TooLarge)),
    };
    let mut response = shareable(parts, Content::Memory(bytes::Bytes::new()), lifetime, vary);
    // Its head as it will be: describing the body of `len` bytes to come.
    response.headers = stored_headers(parts.status, &parts.headers, len);
    let destination = Destination::of(&response, target);
    let key = &destination.key;
    response.body = crate::spool::start(state, (key, mark), &response, body, len)
        .await
        .map_err(|body| (body, NotStored::DiskBusy))?;
    Ok(Fetched::Shareable(Arc::new(response), destination))
}

/// The response `parts` and `body` make, stored as fetched.
pub(crate) fn shareable(
    parts: &response::Parts,
    body: Content,
    lifetime: Lifetime,
    vary: Option<(Vec<http::HeaderName>, String)>,
) -> StoredResponse {
    StoredResponse {
        status: parts.status,
        headers: stored_headers(parts.status, &parts.headers, body.len()),
        body,
        stored_at: Instant::now(),
        lifetime,
        vary,
        provenance: Provenance::Fetched,
    }
}

fn private(parts: response::Parts, body: Body, reason: NotStored) -> Fetched {
    Fetched::Private(Private {
        response: Response::from_parts(parts, body),
        reason,
    })
}

/// A `304` for a stored response: the stored body under the updated headers.
fn revalidated(
    state: &State,
    request: &request::Parts,
    target: &Target,
    not_modified: &response::Parts,
    stale: &StoredResponse,
) -> Fetched {
    let headers = stale.headers_updated_by(&not_modified.headers);
    let mut merged = Response::new(());
    *merged.status_mut() = stale.status;
    *merged.headers_mut() = headers.clone();
    let (merged, ()) = merged.into_parts();
    match state.lifetime(request, &merged) {
        Ok(lifetime) => {
            let response = StoredResponse {
                status: stale.status,
                headers: Fields::from_map(&headers),
                body: stale.body.clone(),
                stored_at: Instant::now(),
                lifetime,
                vary: stale.vary.clone(),
                provenance: Provenance::Revalidated,
            };
            let destination = Destination::of(&response, target);
            Fetched::Shareable(Arc::new(response), destination)
        }
        Err(reason) => private(merged, stale.body.body(), reason),
    }
}

/// Runs one fetch as an engine load: the response becomes the entries to store and
/// the value the fetch's waiters get. A response only the requester may have goes to
/// it through `handoff` (when the requester waits for it; a background revalidation
/// has none).
pub(crate) async fn load(
    state: Arc<State>,
    upstream: Box<dyn Upstream>,
    request: request::Parts,
    stale: Option<Arc<StoredResponse>>,
    (target, deadline): (Target, Deadline),
    handoff: Option<Handoff>,
) -> Result<Loaded<Stored>, BoxError> {
    let began = Began::now(&state);
    let sending = upstream.send(request.clone());
    let fetching = async {
        let response = sending.await?;
        classify(&state, &request, (&target, began), response, stale).await
    };
    let fetched = tokio::time::timeout_at(deadline.at, fetching)
        .await
        .unwrap_or_else(|elapsed| {
            let failure = OriginFailure::FetchTimeout {
                timeout: Some(deadline.after),
            };
            Err(OriginError::new(failure, elapsed).into())
        })
        .map_err(|error| state.report_failure(&request.uri, error))?;
    Ok(match fetched {
        Fetched::Shareable(response, destination) => {
            placement(&state, response, &target, destination)
        }
        Fetched::Private(private) => {
            let (reason, status) = (private.reason, private.response.status());
            tracing::debug!(key = %target.key, reason = reason.as_str(), "response not shared");
            if let Some(handoff) = handoff {
                let _ = handoff.send(private);
            }
            if reason == NotStored::ServerError {
                // A failure for the waiters, which this server keeps to itself: other
                // servers' waiters fetch for themselves, as they would have.
                return Err(Unshared::new(OriginFailed { status }).into());
            }
            if reason == NotStored::DiskBusy {
                // Storable, but not now: the waiters go their own way, and no
                // hit-for-miss keeps the next request from trying again.
                return Ok(Loaded::uncached(Stored::Uncacheable));
            }
            Loaded::new(Stored::Uncacheable)
                .fresh_for(state.options.hit_for_miss)
                .ttl(state.options.hit_for_miss)
        }
    })
}

/// The engine entries for a shareable response fetched under `target` and bound for
/// `destination`, and the value its waiters get: the response itself, or (when it
/// varies and belongs under a new variant key) the variant index that tells them where
/// to look it up. A response whose body is on disk is kept in memory only: its file is
/// its disk entry already, and it does not cross to Redis.
pub(crate) fn placement(
    state: &State,
    response: Arc<StoredResponse>,
    target: &Target,
    destination: Destination,
) -> Loaded<Stored> {
    let keep = response.lifetime.keep_for;
    let in_memory = response.body.in_memory().is_some();
    let tags = crate::tags::response_tags(&response.headers);
    let entry = |stored: Stored| {
        if keep.is_zero() {
            return Loaded::uncached(stored);
        }
        let entry = tags
            .iter()
            .fold(Loaded::new(stored), |entry, tag| entry.tag(tag))
            .fresh_for(keep)
            .ttl(keep);
        if in_memory {
            entry
        } else {
            entry.memory_only()
        }
    };
    let Some(spec) = destination.spec else {
        let value = entry(Stored::Response(response.clone()));
        return if destination.key == target.key || keep.is_zero() {
            value
        } else {
            // The URL stopped varying: its response replaces the index.
            Loaded::uncached(Stored::Response(response)).also_store(destination.key, value)
        };
    };
    if keep.is_zero() {
        return Loaded::uncached(Stored::Response(response));
    }
    let index = Loaded::new(Stored::Variants(spec.clone()))
        .fresh_for(keep.max(state.options.keep_stale_for))
        .ttl(keep.max(state.options.keep_stale_for));
    let stored_variant = entry(Stored::Response(response));
    if target.key == target.primary {
        index.also_store(destination.key, stored_variant)
    } else {
        Loaded::uncached(Stored::Variants(spec))
            .also_store(target.primary.clone(), index)
            .also_store(destination.key, stored_variant)
    }
}
