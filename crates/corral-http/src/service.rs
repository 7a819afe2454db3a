//! [`HttpCache`]: the tower service that answers requests from the cache and collapses
//! concurrent fetches of one key into one upstream request.
//!
//! A request is first looked up synchronously ([`Lookup`]): a hit is answered before
//! `call` returns, without touching the inner service. Only a request that must go
//! upstream gets a future that does so: through the key's flight ([`forward`]), on its
//! own and storing what it may ([`alone`]), or on its own and passing straight through
//! ([`solo`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use corral::{Entry, Source};
use http::header::{AUTHORIZATION, UPGRADE};
use http::{Method, Request, Response, StatusCode, request};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::body::{Body, BoxError};
use crate::directives::RequestDirectives;
use crate::fetch::{self, Fetched, OriginFailed, Private};
use crate::framing;
use crate::future::ResponseFuture;
use crate::lookup::{BYPASS, Found, Lookup, Start};
use crate::policy::Serve;
use crate::reason::{Detail, NotStored};
use crate::state::State;
use crate::status::{CacheStatus, Forward, Report};
use crate::stored::{Provenance, Stored, StoredResponse};
use crate::upstream::{Erased, Upstream};

/// An HTTP cache in front of an inner service `S`: a server's handlers, an HTTP
/// client, or a proxy's origin connection.
///
/// GET and HEAD requests are answered from the cache when a stored response may serve
/// them (per the [`Policy`](crate::Policy)); otherwise concurrent requests for one key
/// wait on one upstream fetch. A response that turns out not to be shareable (private,
/// `no-store`, too large, a cookie in a shared cache…) goes only to the request that
/// fetched it: the others go upstream on their own, and the key skips collapsing for
/// a while (hit-for-miss). Other methods pass through; a successful POST, PUT, DELETE
/// or PATCH invalidates what is stored for its URL and its same-origin `Location` and
/// `Content-Location`.
///
/// Inner errors never escape: they become a `502 Bad Gateway` (or `504 Gateway
/// Timeout`) with a short reason and an [`UpstreamError`](crate::UpstreamError) extension, or a stale
/// response where stale-if-error allows one.
///
/// [`CacheStatus::of`](crate::CacheStatus::of) tells how a response was answered,
/// whether or not the cache-status headers are on (for logs).
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use corral_http::HttpCache;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let app = Router::new()
///     .route("/report", get(|| async { ([("cache-control", "max-age=60")], "expensive") }))
///     .layer(HttpCache::builder().layer()?);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app).await?;
/// # Ok(()) }
/// ```
pub struct HttpCache<S> {
    pub(crate) inner: S,
    pub(crate) state: Arc<State>,
}

impl<S> HttpCache<S> {
    /// The service behind the cache (its upstream).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The service behind the cache, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The service behind the cache; the cache itself lives on in its other clones.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for HttpCache<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCache")
            .field("name", &self.state.cache.name())
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S: Clone> Clone for HttpCache<S> {
    fn clone(&self) -> Self {
        HttpCache {
            inner: self.inner.clone(),
            state: self.state.clone(),
        }
    }
}

impl<S, B, RB> Service<Request<B>> for HttpCache<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Default + Send + 'static,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    /// Always ready, whatever the inner service says: most requests are answered
    /// from the cache and never reach it, and each request that goes upstream drives
    /// its own clone of the inner service to readiness (waiting there, not here). So
    /// the inner service's backpressure holds back only the requests that need it; a
    /// concurrency limit on fetches belongs in the inner service (a
    /// `tower::limit::ConcurrencyLimit` around the client, say), and a limit on all
    /// requests in front of the cache.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> ResponseFuture {
        let passes = if request.method() != Method::GET && request.method() != Method::HEAD {
            Some(Report::new(CacheStatus::Bypass).forward(Forward::Method))
        } else if !framing::is_empty(request.body()) || request.headers().contains_key(UPGRADE) {
            // A GET or HEAD with a body (search APIs send them), or one asking to switch
            // protocols, goes to the origin as it came: never answered from the cache,
            // never collapsed, never stored.
            let report = Report::new(CacheStatus::Bypass).forward(Forward::Request);
            Some(report.detail(Detail::PassedThrough))
        } else {
            None
        };
        if let Some(report) = passes {
            let (state, inner) = (self.state.clone(), self.inner.clone());
            return ResponseFuture::upstream(async move {
                pass_through(&state, inner, request, report).await
            });
        }
        // Everything a hit needs is borrowed; the shared state and the inner service
        // are cloned only for a request that goes upstream.
        let state = &self.state;
        let upstream =
            || -> Box<dyn Upstream> { Box::new(Erased::<S, B>::new(self.inner.clone())) };
        // The lookup's span (a plain `tracing` span, nothing when no subscriber wants
        // it) records what it found; a load it starts is its child.
        let span = tracing::debug_span!("corral.lookup", found = tracing::field::Empty);
        let _looking = span.enter();
        let (parts, _body) = request.into_parts();
        let mut lookup = match Lookup::start(state, parts) {
            Start::Look(lookup) => lookup,
            // only-if-cached: what the cache cannot answer is a 504, never a fetch.
            Start::Bypass(parts, _) if RequestDirectives::parse(&parts.headers).only_if_cached => {
                span.record("found", BYPASS);
                let head = parts.method == Method::HEAD;
                return ResponseFuture::ready(state.only_if_cached_miss(head));
            }
            Start::Bypass(parts, report) => {
                span.record("found", BYPASS);
                return ResponseFuture::upstream(solo(
                    state.clone(),
                    upstream(),
                    parts,
                    (None, None),
                    report,
                ));
            }
        };
        let found = lookup.look(state);
        span.record("found", found.name());
        match found {
            Found::Answer(response) => ResponseFuture::ready(response),
            Found::Refresh(response, stored) => {
                revalidate_in_background(state, &*upstream(), &lookup, &stored);
                ResponseFuture::ready(response)
            }
            Found::Alone(_) | Found::Forward if lookup.directives.only_if_cached => {
                ResponseFuture::ready(state.only_if_cached_miss(lookup.head))
            }
            Found::Alone(why) => {
                ResponseFuture::upstream(alone(state.clone(), upstream(), lookup, why))
            }
            Found::Forward => ResponseFuture::upstream(forward(state.clone(), upstream(), lookup)),
        }
    }
}

/// Goes upstream through the key's flight: one fetch for all concurrent requests.
async fn forward(
    state: Arc<State>,
    upstream: Box<dyn Upstream>,
    mut lookup: Lookup,
) -> Response<Body> {
    // A second round only when the fetch pointed to a variant that is then not found.
    for _ in 0..2 {
        if state.options.policy.is_shared() && lookup.parts.headers.contains_key(AUTHORIZATION) {
            // Credentials never queue behind other users' fetches.
            return alone(state, upstream, lookup, Detail::Authorization).await;
        }
        let (handoff, mut handed) = oneshot::channel();
        let loader = {
            let (state, upstream) = (state.clone(), upstream.clone_box());
            let request = fetch::upstream_request(&lookup.parts, lookup.stale.as_deref());
            let (stale, target) = (lookup.stale.clone(), lookup.target());
            let deadline = fetch::Deadline::now(&state);
            move || {
                fetch::load(
                    state,
                    upstream,
                    request,
                    stale,
                    (target, deadline),
                    Some(handoff),
                )
            }
        };
        // What will do instead of a fetch (checked under the flight's lock, and against
        // a value found in Redis): a fresh response for this request, the URL's variant
        // index to follow, or a hit-for-miss marker to obey.
        let usable = {
            let (headers, directives) = (lookup.parts.headers.clone(), lookup.directives.clone());
            let normalize = state.options.normalize_vary;
            let following = lookup.index.is_none();
            move |entry: &Entry<Stored>| match entry.value() {
                Stored::Response(r) => {
                    r.matches(&headers, normalize)
                        && !r.body.gone()
                        && r.lifetime_softened(entry.softened_at()).serve(
                            &directives,
                            r.stored_at,
                            Instant::now(),
                        ) == Serve::Fresh
                }
                Stored::Variants(_) => following,
                Stored::Uncacheable => true,
            }
        };
        let outcome = state.cache.load(lookup.key(), usable, loader).await;
        let forward = if lookup.stale.is_some() {
            Forward::Stale
        } else {
            Forward::Miss
        };
        let window = unreachable_window(&state, outcome.as_ref().err().map(|e| e as _));
        match outcome {
            Ok((Stored::Response(fetched), source))
                if fetched.matches(&lookup.parts.headers, state.options.normalize_vary) =>
            {
                let report = match (source, fetched.provenance) {
                    (Source::Stored | Source::Tier, _) => Report::new(CacheStatus::Hit),
                    (source, Provenance::Revalidated) => Report {
                        forward_status: Some(StatusCode::NOT_MODIFIED),
                        stored: true,
                        collapsed: source == Source::Joined,
                        ..Report::new(CacheStatus::Revalidated).forward(forward)
                    },
                    (source, Provenance::Fetched) => Report {
                        forward_status: Some(fetched.status),
                        stored: !fetched.lifetime.keep_for.is_zero(),
                        collapsed: source == Source::Joined,
                        ..Report::new(CacheStatus::Miss).forward(forward)
                    },
                };
                return state.serve(
                    &fetched,
                    &lookup.parts,
                    lookup.head,
                    lookup.range.as_ref(),
                    report,
                    Instant::now(),
                );
            }
            Ok((Stored::Variants(spec), source)) if lookup.index.is_none() => {
                lookup.follow(spec, state.options.normalize_vary);
                lookup.fetched =
                    matches!(source, Source::Loaded | Source::Joined).then_some(source);
                match lookup.look(&state) {
                    Found::Answer(response) => return response,
                    Found::Refresh(response, stored) => {
                        revalidate_in_background(&state, &*upstream, &lookup, &stored);
                        return response;
                    }
                    Found::Alone(why) => return alone(state, upstream, lookup, why).await,
                    Found::Forward => continue,
                }
            }
            Err(_) if lookup.stale_serves_on_error(window).is_some() => {
                let report = Report::new(CacheStatus::Stale).detail(stale_detail(window));
                let stale = lookup
                    .stale_serves_on_error(window)
                    .unwrap_or_else(|| unreachable!("guarded"));
                return state.serve(
                    stale,
                    &lookup.parts,
                    lookup.head,
                    lookup.range.as_ref(),
                    report,
                    Instant::now(),
                );
            }
            Ok((Stored::Uncacheable, Source::Stored | Source::Tier)) => {
                return alone(state, upstream, lookup, Detail::HitForMiss).await;
            }
            outcome => {
                if let Ok(Private { response, reason }) = handed.try_recv() {
                    if lookup.range.is_some()
                        && matches!(reason, NotStored::TooLarge | NotStored::DiskBusy)
                        && response.status() == StatusCode::OK
                    {
                        // The whole of a response too large to store: the origin
                        // answers the range itself (other responses that are not
                        // stored go whole: a server may ignore a `Range`).
                        drop(response);
                        let report = Report::new(CacheStatus::Bypass)
                            .forward(Forward::Request)
                            .detail(Detail::NotStored(reason));
                        return solo(state, upstream, lookup.parts, (None, None), report).await;
                    }
                    // This request's own fetch, which only it may have.
                    let status = match reason {
                        NotStored::ServerError => CacheStatus::Miss,
                        _ => CacheStatus::Bypass,
                    };
                    let report = Report {
                        forward_status: Some(response.status()),
                        ..Report::new(status)
                            .forward(forward)
                            .detail(Detail::NotStored(reason))
                    };
                    return state.finish(response, report, lookup.head);
                }
                let Err(error) = outcome else {
                    // Another request's response, which only it may have: go alone.
                    break;
                };
                let error = BoxError::from(error);
                if let Some(&OriginFailed { status }) = OriginFailed::find(&*error) {
                    let report = Report {
                        forward_status: Some(status),
                        collapsed: true,
                        ..Report::new(CacheStatus::Miss)
                            .forward(forward)
                            .detail(Detail::NotShared)
                    };
                    return state.origin_failed(status, lookup.head, report);
                }
                return state.error_response(
                    error,
                    Report::new(CacheStatus::Miss).forward(forward),
                    lookup.head,
                );
            }
        }
    }
    let report = Report::new(CacheStatus::Bypass)
        .forward(Forward::Bypass)
        .detail(Detail::NotShared);
    let stale = (lookup.stale, lookup.softened);
    solo(state, upstream, lookup.parts, stale, report).await
}

/// The cache's own window for serving a stale response when a fetch failed with
/// `error` (`None`: the origin answered, with a server error): `stale-on-disconnect`
/// when the origin could not be reached or did not answer in time (RFC 9111 §4.2.4),
/// none when it answered.
fn unreachable_window(
    state: &State,
    error: Option<&(dyn std::error::Error + 'static)>,
) -> Duration {
    match error {
        Some(error) if OriginFailed::find(error).is_none() => state.options.stale_on_disconnect,
        _ => Duration::ZERO,
    }
}

/// Why a stale response answered a request whose fetch failed.
fn stale_detail(unreachable: Duration) -> Detail {
    if unreachable.is_zero() {
        Detail::StaleIfError
    } else {
        Detail::OriginUnreachable
    }
}

/// Starts one background revalidation of a stale response (stale-while-revalidate).
fn revalidate_in_background(
    state: &Arc<State>,
    upstream: &dyn Upstream,
    lookup: &Lookup,
    stored: &Arc<StoredResponse>,
) {
    let loader = {
        let (state, upstream) = (state.clone(), upstream.clone_box());
        let request = fetch::upstream_request(&lookup.parts, Some(stored));
        let (stale, target) = (Some(stored.clone()), lookup.target());
        let deadline = fetch::Deadline::now(&state);
        move || fetch::load(state, upstream, request, stale, (target, deadline), None)
    };
    // A newer response, fresh, will do instead (the one being revalidated may itself
    // be fresh still: an early refresh).
    let since = stored.stored_at;
    let became_fresh = move |entry: &Entry<Stored>| match entry.value() {
        Stored::Response(r) => {
            r.stored_at > since
                && r.lifetime_softened(entry.softened_at()).serve(
                    &RequestDirectives::default(),
                    r.stored_at,
                    Instant::now(),
                ) == Serve::Fresh
        }
        _ => false,
    };
    state.cache.refresh(lookup.key(), became_fresh, loader);
}

/// Fetches for one request without collapsing it with others, storing the response if
/// it may be stored (for requests with credentials, and keys marked hit-for-miss, whose
/// response may have become cacheable again).
async fn alone(
    state: Arc<State>,
    upstream: Box<dyn Upstream>,
    lookup: Lookup,
    why: Detail,
) -> Response<Body> {
    if lookup.range.is_some() {
        // Not collapsed into a fetch of the whole: the origin answers the range.
        let report = Report::new(CacheStatus::Bypass)
            .forward(Forward::Request)
            .detail(why);
        let stale = (lookup.stale, lookup.softened);
        return solo(state, upstream, lookup.parts, stale, report).await;
    }
    let request = fetch::upstream_request(&lookup.parts, lookup.stale.as_deref());
    let (target, began) = (lookup.target(), fetch::Began::now(&state));
    let sending = upstream.send(request.clone());
    let fetched = match sending.await {
        Ok(response) => {
            let stale = lookup.stale.clone();
            fetch::classify(&state, &request, (&target, began), response, stale).await
        }
        Err(error) => Err(error),
    }
    .map_err(|error| state.report_failure(&request.uri, error));
    let head = lookup.head;
    let window = unreachable_window(&state, fetched.as_ref().err().map(|e| &**e as _));
    match fetched {
        Ok(Fetched::Shareable(response, destination)) => {
            // Not kept if a purge came while it was fetched.
            let entries = fetch::placement(&state, response.clone(), &target, destination);
            state
                .cache
                .insert_since(&target.key, entries, began.insert)
                .await;
            let report = Report {
                forward_status: Some(response.status),
                stored: !response.lifetime.keep_for.is_zero(),
                ..Report::new(CacheStatus::Miss)
                    .forward(Forward::Miss)
                    .detail(why)
            };
            state.serve(
                &response,
                &lookup.parts,
                head,
                lookup.range.as_ref(),
                report,
                Instant::now(),
            )
        }
        Ok(Fetched::Private(Private {
            reason: NotStored::ServerError,
            ..
        }))
        | Err(_)
            if lookup.stale_serves_on_error(window).is_some() =>
        {
            let stale = lookup
                .stale_serves_on_error(window)
                .unwrap_or_else(|| unreachable!("guarded"));
            let report = Report::new(CacheStatus::Stale).detail(stale_detail(window));
            state.serve(
                stale,
                &lookup.parts,
                head,
                lookup.range.as_ref(),
                report,
                Instant::now(),
            )
        }
        Ok(Fetched::Private(Private { response, .. })) => {
            let report = Report {
                forward_status: Some(response.status()),
                ..Report::new(CacheStatus::Bypass)
                    .forward(Forward::Bypass)
                    .detail(why)
            };
            state.finish(response, report, head)
        }
        Err(error) => {
            let report = Report::new(CacheStatus::Miss).forward(Forward::Miss);
            state.error_response(error, report, head)
        }
    }
}

/// Sends the client's request upstream as it is, not collapsed and not stored, and
/// streams the answer back (or a stale response, if the origin fails and
/// stale-if-error allows).
async fn solo(
    state: Arc<State>,
    upstream: Box<dyn Upstream>,
    parts: request::Parts,
    (stale, softened): (Option<Arc<StoredResponse>>, Option<Instant>),
    report: Report,
) -> Response<Body> {
    let head = parts.method == Method::HEAD;
    let directives = state.options.policy.request_directives(&parts);
    let sending = upstream.send(parts.clone());
    let outcome = sending
        .await
        .map_err(|error| state.report_failure(&parts.uri, error));
    let failed = outcome
        .as_ref()
        .map_or(true, |r| r.status().is_server_error());
    let window = unreachable_window(&state, outcome.as_ref().err().map(|e| &**e as _));
    let now = Instant::now();
    if let Some(stale) = stale.filter(|s| {
        failed
            && s.lifetime_softened(softened)
                .serves_on_error(&directives, s.stored_at, now, window)
    }) {
        let report = Report::new(CacheStatus::Stale).detail(stale_detail(window));
        return state.serve(&stale, &parts, head, None, report, now);
    }
    match outcome {
        Ok(response) => {
            let report = Report {
                forward_status: Some(response.status()),
                ..report
            };
            state.finish(response, report, head)
        }
        Err(error) => state.error_response(error, report, head),
    }
}

/// Forwards a request the cache does not handle (another method, or a GET or HEAD
/// with a body) with its body, framed by that body; invalidates after a successful
/// unsafe one.
async fn pass_through<S, B, RB>(
    state: &State,
    inner: S,
    request: Request<B>,
    report: Report,
) -> Response<Body>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let (mut parts, body) = request.into_parts();
    let url = parts.uri.clone();
    framing::frame_request(&parts.method, &mut parts.headers, &body);
    let head = parts.method == Method::HEAD;
    let asked_upgrade = parts.headers.contains_key(UPGRADE);
    // RFC 9111 §4.4: every method not known to be safe, extension methods included.
    let unsafe_method =
        ![Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE].contains(&parts.method);
    let changed = unsafe_method.then(|| {
        let mut copy = Request::new(());
        *copy.method_mut() = parts.method.clone();
        *copy.uri_mut() = parts.uri.clone();
        *copy.headers_mut() = parts.headers.clone();
        copy.into_parts().0
    });
    let outcome: Result<_, BoxError> = inner
        .oneshot(Request::from_parts(parts, body))
        .await
        .map_err(Into::into)
        .and_then(|response| {
            framing::check_switch(response.status(), asked_upgrade)?;
            Ok(response)
        });
    match outcome {
        Ok(mut response) => {
            framing::drop_overridden_length(response.headers_mut());
            let succeeded = response.status().is_success() || response.status().is_redirection();
            if let Some(changed) = changed.filter(|_| succeeded) {
                state.invalidate_for(&changed, response.headers()).await;
            }
            state.finish(response.map(Body::streaming), report, head)
        }
        Err(error) => state.error_response(state.report_failure(&url, error), report, head),
    }
}
