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

use bytes::Bytes;
use corral::{Entry, Source};
use http::header::{AGE, AUTHORIZATION, CONTENT_LOCATION, LOCATION, RANGE, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, request};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::body::{Body, BoxError, RequestBodyError};
use crate::builder::{HttpCacheBuilder, Shared};
use crate::directives::RequestDirectives;
use crate::fetch::{self, Erased, Fetched, Target, Upstream};
use crate::framing;
use crate::future::ResponseFuture;
use crate::key::same_origin_get;
use crate::policy::Serve;
use crate::status::{self, CacheStatus, Forward, Report};
use crate::stored::{Provenance, Stored, StoredResponse};
use crate::vary::{VarySpec, variant_key};

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
/// Timeout`) with a short reason and an [`UpstreamError`] extension, or a stale
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
    pub(crate) shared: Arc<Shared>,
}

impl<S: Clone> Clone for HttpCache<S> {
    fn clone(&self) -> Self {
        HttpCache {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl HttpCache<()> {
    /// Starts building an HTTP cache; see [`HttpCacheBuilder`] for the options.
    pub fn builder() -> HttpCacheBuilder {
        HttpCacheBuilder::default()
    }
}

impl<S> HttpCache<S> {
    /// A handle on the stored responses (for purging, and statistics).
    pub fn handle(&self) -> crate::CacheHandle {
        crate::CacheHandle {
            shared: self.shared.clone(),
        }
    }
}

/// The error behind a `502`/`504` the cache made up, in the response's extensions.
#[derive(Debug, Clone)]
pub struct UpstreamError(pub Arc<dyn std::error::Error + Send + Sync>);

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

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Every request that goes upstream drives its own clone of the inner service
        // to readiness; hits never need it.
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
            Some(report.detail("request has a body or asks to upgrade"))
        } else {
            None
        };
        if let Some(report) = passes {
            let (shared, inner) = (self.shared.clone(), self.inner.clone());
            return ResponseFuture::upstream(async move {
                pass_through(&shared, inner, request, report).await
            });
        }
        // Everything a hit needs is borrowed; the shared state and the inner service
        // are cloned only for a request that goes upstream.
        let shared = &self.shared;
        let upstream =
            || -> Box<dyn Upstream> { Box::new(Erased::<S, B>::new(self.inner.clone())) };
        let (parts, _body) = request.into_parts();
        let mut lookup = match Lookup::start(shared, parts) {
            Start::Look(lookup) => lookup,
            // only-if-cached: what the cache cannot answer is a 504, never a fetch.
            Start::Bypass(parts, _) if RequestDirectives::parse(&parts.headers).only_if_cached => {
                let head = parts.method == Method::HEAD;
                return ResponseFuture::ready(shared.only_if_cached_miss(head));
            }
            Start::Bypass(parts, report) => {
                return ResponseFuture::upstream(solo(
                    shared.clone(),
                    upstream(),
                    parts,
                    None,
                    report,
                ));
            }
        };
        match lookup.look(shared) {
            Found::Answer(response) => ResponseFuture::ready(response),
            Found::Stale(response, stored) => {
                revalidate_in_background(shared, &*upstream(), &lookup, &stored);
                ResponseFuture::ready(response)
            }
            Found::Alone(_) | Found::Forward if lookup.directives.only_if_cached => {
                ResponseFuture::ready(shared.only_if_cached_miss(lookup.head))
            }
            Found::Alone(why) => {
                ResponseFuture::upstream(alone(shared.clone(), upstream(), lookup, why))
            }
            Found::Forward => ResponseFuture::upstream(forward(shared.clone(), upstream(), lookup)),
        }
    }
}

/// A GET or HEAD on its way through the cache.
struct Lookup {
    parts: request::Parts,
    head: bool,
    directives: RequestDirectives,
    /// The URL's key.
    primary: String,
    /// The variant's key, once the URL's variant index was followed.
    variant: Option<String>,
    /// The URL's variant index, once followed.
    index: Option<Arc<VarySpec>>,
    /// A stored response that needs revalidating.
    stale: Option<Arc<StoredResponse>>,
    /// Set when this request's fetch stored a new variant and sent it to look it up.
    fetched: Option<Source>,
}

/// How a GET or HEAD starts: looked up, or sent past the cache (no key, `no-store`,
/// `Range`, credentials the policy does not share).
enum Start {
    Look(Lookup),
    Bypass(request::Parts, Report),
}

/// What a lookup found.
enum Found {
    /// The answer, from storage.
    Answer(Response<Body>),
    /// A stale answer; the stored response wants revalidating in the background.
    Stale(Response<Body>, Arc<StoredResponse>),
    /// The key is marked hit-for-miss: go upstream alone.
    Alone(&'static str),
    /// Nothing usable: go upstream through the flight.
    Forward,
}

impl Lookup {
    /// A lookup for a cacheable request, or the request back with the reason it must
    /// bypass the cache.
    fn start(shared: &Shared, parts: request::Parts) -> Start {
        let bypass = |parts, forward| {
            Start::Bypass(parts, Report::new(CacheStatus::Bypass).forward(forward))
        };
        let Some(primary) = (shared.key)(&parts) else {
            return bypass(parts, Forward::Bypass);
        };
        let directives = shared.policy.request_directives(&parts);
        if directives.no_store
            || parts.headers.contains_key(RANGE)
            || shared.policy.passes_credentials(&parts)
        {
            return bypass(parts, Forward::Request);
        }
        Start::Look(Lookup {
            head: parts.method == Method::HEAD,
            parts,
            directives,
            primary,
            variant: None,
            index: None,
            stale: None,
            fetched: None,
        })
    }

    /// Looks the request up (following the URL's variant index, if it has one).
    fn look(&mut self, shared: &Shared) -> Found {
        loop {
            match shared.cache.peek(self.key()).map(Entry::into_value) {
                Some(Stored::Variants(spec)) if self.index.is_none() => {
                    self.follow(spec);
                    continue;
                }
                Some(Stored::Uncacheable) => return Found::Alone("hit-for-miss"),
                Some(Stored::Response(stored)) if stored.matches(&self.parts.headers) => {
                    let now = Instant::now();
                    match stored
                        .lifetime
                        .serve(&self.directives, stored.stored_at, now)
                    {
                        Serve::Fresh => {
                            let report = match self.fetched {
                                None => Report::new(CacheStatus::Hit),
                                Some(source) => Report {
                                    forward_status: Some(stored.status),
                                    stored: true,
                                    collapsed: source == Source::Joined,
                                    ..Report::new(CacheStatus::Miss).forward(Forward::Miss)
                                },
                            };
                            return Found::Answer(shared.serve(
                                &stored,
                                &self.parts,
                                self.head,
                                report,
                                now,
                            ));
                        }
                        Serve::Stale => {
                            let report =
                                Report::new(CacheStatus::Stale).detail("stale-while-revalidate");
                            let response =
                                shared.serve(&stored, &self.parts, self.head, report, now);
                            return Found::Stale(response, stored);
                        }
                        Serve::Forward => self.stale = Some(stored),
                    }
                }
                _ => {}
            }
            return Found::Forward;
        }
    }

    /// The key looked up: the URL's, or its variant's.
    fn key(&self) -> &str {
        self.variant.as_deref().unwrap_or(&self.primary)
    }

    /// Switches to the variant of the URL that `spec` selects for this request.
    fn follow(&mut self, spec: Arc<VarySpec>) {
        self.variant = Some(variant_key(&self.primary, &spec, &self.parts.headers));
        self.index = Some(spec);
    }

    fn target(&self) -> Target {
        Target {
            key: self.key().to_owned(),
            primary: self.primary.clone(),
            index: self.index.clone(),
        }
    }

    fn stale_serves_on_error(&self) -> Option<&Arc<StoredResponse>> {
        self.stale.as_ref().filter(|s| {
            s.lifetime
                .serves_on_error(&self.directives, s.stored_at, Instant::now())
        })
    }
}

/// Goes upstream through the key's flight: one fetch for all concurrent requests.
async fn forward(
    shared: Arc<Shared>,
    upstream: Box<dyn Upstream>,
    mut lookup: Lookup,
) -> Response<Body> {
    // A second round only when the fetch pointed to a variant that is then not found.
    for _ in 0..2 {
        if shared.policy.is_shared() && lookup.parts.headers.contains_key(AUTHORIZATION) {
            // Credentials never queue behind other users' fetches.
            return alone(shared, upstream, lookup, "authorization").await;
        }
        let (handoff, mut handed) = oneshot::channel();
        let loader = {
            let (shared, upstream) = (shared.clone(), upstream.clone_box());
            let request = fetch::upstream_request(&lookup.parts, lookup.stale.as_deref());
            let (stale, target) = (lookup.stale.clone(), lookup.target());
            move || fetch::load(shared, upstream, request, stale, target, Some(handoff))
        };
        // What will do instead of a fetch (checked under the flight's lock, and against
        // a value found in Redis): a fresh response for this request, the URL's variant
        // index to follow, or a hit-for-miss marker to obey.
        let usable = {
            let (headers, directives) = (lookup.parts.headers.clone(), lookup.directives.clone());
            let following = lookup.index.is_none();
            move |entry: &Entry<Stored>| match entry.value() {
                Stored::Response(r) => {
                    r.matches(&headers)
                        && r.lifetime.serve(&directives, r.stored_at, Instant::now())
                            == Serve::Fresh
                }
                Stored::Variants(_) => following,
                Stored::Uncacheable => true,
                Stored::ServerError(_) => false,
            }
        };
        let outcome = shared.cache.load(lookup.key(), usable, loader).await;
        let forward = if lookup.stale.is_some() {
            Forward::Stale
        } else {
            Forward::Miss
        };
        match outcome {
            Ok((Stored::Response(fetched), source)) if fetched.matches(&lookup.parts.headers) => {
                let report = match (source, fetched.provenance) {
                    (Source::Stored, _) => Report::new(CacheStatus::Hit),
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
                return shared.serve(&fetched, &lookup.parts, lookup.head, report, Instant::now());
            }
            Ok((Stored::Variants(spec), source)) if lookup.index.is_none() => {
                lookup.follow(spec);
                lookup.fetched = (source != Source::Stored).then_some(source);
                match lookup.look(&shared) {
                    Found::Answer(response) => return response,
                    Found::Stale(response, stored) => {
                        revalidate_in_background(&shared, &*upstream, &lookup, &stored);
                        return response;
                    }
                    Found::Alone(why) => return alone(shared, upstream, lookup, why).await,
                    Found::Forward => continue,
                }
            }
            Ok((Stored::ServerError(_), _)) | Err(_)
                if lookup.stale_serves_on_error().is_some() =>
            {
                let report = Report::new(CacheStatus::Stale).detail("stale-if-error");
                let stale = lookup
                    .stale_serves_on_error()
                    .unwrap_or_else(|| unreachable!("guarded"));
                return shared.serve(stale, &lookup.parts, lookup.head, report, Instant::now());
            }
            Err(error) => {
                return shared.error_response(
                    error.into(),
                    Report::new(CacheStatus::Miss).forward(forward),
                    lookup.head,
                );
            }
            Ok((Stored::Uncacheable, Source::Stored)) => {
                return alone(shared, upstream, lookup, "hit-for-miss").await;
            }
            Ok((outcome, _)) => {
                if let Ok(response) = handed.try_recv() {
                    // This request's own fetch, which only it may have.
                    let status = match outcome {
                        Stored::ServerError(_) => CacheStatus::Miss,
                        _ => CacheStatus::Bypass,
                    };
                    let report = Report {
                        forward_status: Some(response.status()),
                        ..Report::new(status).forward(forward).detail("not shareable")
                    };
                    return shared.finish(response, report, lookup.head);
                }
                if let Stored::ServerError(status) = outcome {
                    let report = Report {
                        forward_status: Some(status),
                        collapsed: true,
                        ..Report::new(CacheStatus::Miss)
                            .forward(forward)
                            .detail("origin server error")
                    };
                    return shared.origin_failed(status, lookup.head, report);
                }
                break;
            }
        }
    }
    let report = Report::new(CacheStatus::Bypass)
        .forward(Forward::Bypass)
        .detail("not shareable");
    solo(shared, upstream, lookup.parts, lookup.stale, report).await
}

/// Starts one background revalidation of a stale response (stale-while-revalidate).
fn revalidate_in_background(
    shared: &Arc<Shared>,
    upstream: &dyn Upstream,
    lookup: &Lookup,
    stored: &Arc<StoredResponse>,
) {
    let loader = {
        let (shared, upstream) = (shared.clone(), upstream.clone_box());
        let request = fetch::upstream_request(&lookup.parts, Some(stored));
        let (stale, target) = (Some(stored.clone()), lookup.target());
        move || fetch::load(shared, upstream, request, stale, target, None)
    };
    let became_fresh = |entry: &Entry<Stored>| match entry.value() {
        Stored::Response(r) => {
            r.lifetime
                .serve(&RequestDirectives::default(), r.stored_at, Instant::now())
                == Serve::Fresh
        }
        _ => false,
    };
    shared.cache.refresh(lookup.key(), became_fresh, loader);
}

/// Fetches for one request without collapsing it with others, storing the response if
/// it may be stored (for requests with credentials, and keys marked hit-for-miss, whose
/// response may have become cacheable again).
async fn alone(
    shared: Arc<Shared>,
    upstream: Box<dyn Upstream>,
    lookup: Lookup,
    why: &'static str,
) -> Response<Body> {
    let request = fetch::upstream_request(&lookup.parts, lookup.stale.as_deref());
    let sending = upstream.send(request.clone());
    let fetched = match sending.await {
        Ok(response) => fetch::classify(&shared, &request, response, lookup.stale.clone()).await,
        Err(error) => Err(error),
    };
    let head = lookup.head;
    match fetched {
        Ok(Fetched::Shareable(response)) => {
            let target = lookup.target();
            let entries = fetch::placement(&shared, response.clone(), &target);
            shared.cache.insert(&target.key, entries).await;
            let report = Report {
                forward_status: Some(response.status),
                stored: !response.lifetime.keep_for.is_zero(),
                ..Report::new(CacheStatus::Miss)
                    .forward(Forward::Miss)
                    .detail(why)
            };
            shared.serve(&response, &lookup.parts, head, report, Instant::now())
        }
        Ok(Fetched::Private {
            server_error: true, ..
        })
        | Err(_)
            if lookup.stale_serves_on_error().is_some() =>
        {
            let stale = lookup
                .stale_serves_on_error()
                .unwrap_or_else(|| unreachable!("guarded"));
            let report = Report::new(CacheStatus::Stale).detail("stale-if-error");
            shared.serve(stale, &lookup.parts, head, report, Instant::now())
        }
        Ok(Fetched::Private { response, .. }) => {
            let report = Report {
                forward_status: Some(response.status()),
                ..Report::new(CacheStatus::Bypass)
                    .forward(Forward::Bypass)
                    .detail(why)
            };
            shared.finish(response, report, head)
        }
        Err(error) => {
            let report = Report::new(CacheStatus::Miss).forward(Forward::Miss);
            shared.error_response(error, report, head)
        }
    }
}

/// Sends the client's request upstream as it is, not collapsed and not stored, and
/// streams the answer back (or a stale response, if the origin fails and
/// stale-if-error allows).
async fn solo(
    shared: Arc<Shared>,
    upstream: Box<dyn Upstream>,
    parts: request::Parts,
    stale: Option<Arc<StoredResponse>>,
    report: Report,
) -> Response<Body> {
    let head = parts.method == Method::HEAD;
    let directives = shared.policy.request_directives(&parts);
    let sending = upstream.send(parts.clone());
    let outcome = sending.await;
    let failed = outcome
        .as_ref()
        .map_or(true, |r| r.status().is_server_error());
    let now = Instant::now();
    if let Some(stale) =
        stale.filter(|s| failed && s.lifetime.serves_on_error(&directives, s.stored_at, now))
    {
        let report = Report::new(CacheStatus::Stale).detail("stale-if-error");
        return shared.serve(&stale, &parts, head, report, now);
    }
    match outcome {
        Ok(response) => {
            let report = Report {
                forward_status: Some(response.status()),
                ..report
            };
            shared.finish(response, report, head)
        }
        Err(error) => shared.error_response(error, report, head),
    }
}

/// Forwards a request the cache does not handle (another method, or a GET or HEAD
/// with a body) with its body, framed by that body; invalidates after a successful
/// unsafe one.
async fn pass_through<S, B, RB>(
    shared: &Shared,
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
    framing::frame_request(&parts.method, &mut parts.headers, &body);
    let head = parts.method == Method::HEAD;
    let asked_upgrade = parts.headers.contains_key(UPGRADE);
    let unsafe_method =
        [Method::POST, Method::PUT, Method::DELETE, Method::PATCH].contains(&parts.method);
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
                shared.invalidate_for(&changed, response.headers()).await;
            }
            shared.finish(response.map(Body::streaming), report, head)
        }
        Err(error) => shared.error_response(error, report, head),
    }
}

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

impl Shared {
    /// A stored response as the answer to `request` (a 304 if the request's own
    /// conditions match it; no body for a HEAD).
    fn serve(
        &self,
        stored: &StoredResponse,
        request: &request::Parts,
        head: bool,
        mut report: Report,
        now: Instant,
    ) -> Response<Body> {
        let conditional = stored.satisfies_conditional(&request.headers);
        if report.is_plain_hit() && self.status_headers && !conditional {
            // The hot path: every header value is ready-made.
            let (age, cache_status) = stored.hit_headers(now, &self.name);
            let body = if head {
                Body::empty()
            } else {
                Body::full(stored.body.clone())
            };
            let mut response = Response::new(body);
            *response.status_mut() = stored.status;
            *response.headers_mut() = stored.headers.clone();
            let headers = response.headers_mut();
            headers.insert(AGE, age);
            status::write(headers, CacheStatus::Hit, cache_status);
            self.count(CacheStatus::Hit);
            return response;
        }
        report.ttl = Some(stored.lifetime.ttl_seconds(stored.stored_at, now));
        let mut response = if conditional {
            let mut headers = HeaderMap::new();
            for name in &NOT_MODIFIED_HEADERS {
                for value in stored.headers.get_all(name) {
                    headers.append(name.clone(), value.clone());
                }
            }
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            *response.headers_mut() = headers;
            response
        } else {
            let body = if head {
                Body::empty()
            } else {
                Body::full(stored.body.clone())
            };
            let mut response = Response::new(body);
            *response.status_mut() = stored.status;
            // The stored headers already hold slots for Age and the cache-status
            // headers, so filling them in never grows the map.
            *response.headers_mut() = stored.headers.clone();
            response
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
        if self.status_headers {
            report.write(&self.name, response.headers_mut());
        } else {
            // Without the headers, the status still reaches the server's own logs.
            response.extensions_mut().insert(report.status);
        }
        self.count(report.status);
        response
    }

    /// A `502` or `504` for a failed upstream request (a `400` when it failed because
    /// the client's own request body could not be read).
    fn error_response(&self, error: BoxError, report: Report, head: bool) -> Response<Body> {
        let (status, reason) = if is_timeout(&*error) {
            (StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n")
        } else if RequestBodyError::find(&*error).is_some() {
            (
                StatusCode::BAD_REQUEST,
                "the request body could not be read\n",
            )
        } else {
            (StatusCode::BAD_GATEWAY, "upstream request failed\n")
        };
        if status == StatusCode::BAD_REQUEST {
            tracing::debug!(%error, "bad request body");
        } else {
            tracing::warn!(%error, status = status.as_u16(), "upstream request failed");
        }
        let mut response = Body::text_response(status, reason);
        response
            .extensions_mut()
            .insert(UpstreamError(Arc::from(error)));
        self.finish(response, report, head)
    }

    /// A waiter's answer when the fetch it waited on got a server error: that status,
    /// with a short reason of its own.
    fn origin_failed(&self, status: StatusCode, head: bool, report: Report) -> Response<Body> {
        let reason = format!("the origin answered {status} to the request this one waited on\n");
        let response = Body::text_response(status, reason);
        self.finish(response, report, head)
    }

    /// `only-if-cached` with nothing suitable stored: a 504 (RFC 9111 §5.2.1.7).
    fn only_if_cached_miss(&self, head: bool) -> Response<Body> {
        let response = Body::text_response(
            StatusCode::GATEWAY_TIMEOUT,
            "not in cache (only-if-cached)\n",
        );
        let report = Report::new(CacheStatus::Miss)
            .forward(Forward::Request)
            .detail("only-if-cached");
        self.finish(response, report, head)
    }

    /// Invalidates what a successful unsafe request changed: its URL and its
    /// same-origin `Location` and `Content-Location` (RFC 9111 §4.4).
    async fn invalidate_for(&self, request: &request::Parts, response: &HeaderMap) {
        let mut targets = vec![request.uri.to_string()];
        for name in [LOCATION, CONTENT_LOCATION] {
            if let Some(value) = response.get(name).and_then(|v| v.to_str().ok()) {
                targets.push(value.to_owned());
            }
        }
        for target in targets {
            if let Some(get) = same_origin_get(request, &target)
                && let Some(key) = (self.key)(&get)
            {
                tracing::debug!(%key, "invalidated by an unsafe request");
                self.cache.invalidate(&key).await;
            }
        }
    }
}

/// Whether an error (or one of its sources) is a timeout.
fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(engine) = error.downcast_ref::<corral::Error>() {
        return match engine {
            corral::Error::Timeout(_) => true,
            corral::Error::Load(source) => is_timeout(&**source),
            _ => false,
        };
    }
    error.is::<tokio::time::error::Elapsed>()
        || error.is::<tower::timeout::error::Elapsed>()
        || error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        || error.source().is_some_and(is_timeout)
}
