//! The lookup of a GET or HEAD: its key, whether it may use the cache at all, and
//! what is stored for it (following the URL's variant index when its responses vary):
//! an answer, a stale answer to revalidate, or a reason to go upstream.

use std::sync::Arc;
use std::time::Duration;

use corral::{Entry, Source};
use http::header::RANGE;
use http::{HeaderValue, Method, Response, request};
use tokio::time::Instant;

use crate::body::Body;
use crate::directives::RequestDirectives;
use crate::fetch::Target;
use crate::policy::Serve;
use crate::reason::Detail;
use crate::state::State;
use crate::status::{CacheStatus, Forward, Report};
use crate::stored::{Stored, StoredResponse};
use crate::vary::{VarySpec, variant_key};

/// A GET or HEAD on its way through the cache.
pub(crate) struct Lookup {
    pub parts: request::Parts,
    pub head: bool,
    /// A GET's `Range`: served from the whole response, stored or fetched.
    pub range: Option<HeaderValue>,
    pub directives: RequestDirectives,
    /// The URL's key.
    pub primary: String,
    /// The variant's key, once the URL's variant index was followed.
    pub variant: Option<String>,
    /// The URL's variant index, once followed.
    pub index: Option<Arc<VarySpec>>,
    /// A stored response that needs revalidating.
    pub stale: Option<Arc<StoredResponse>>,
    /// When a soft purge made the stored response stale, if one did.
    pub softened: Option<Instant>,
    /// Set when this request's fetch stored a new variant and sent it to look it up.
    pub fetched: Option<Source>,
}

/// How a GET or HEAD starts: looked up, or sent past the cache (no key, `no-store`,
/// credentials the policy does not share).
pub(crate) enum Start {
    Look(Lookup),
    Bypass(request::Parts, Report),
}

/// What a lookup found.
pub(crate) enum Found {
    /// The answer, from storage.
    Answer(Response<Body>),
    /// An answer from storage (stale, or fresh but due an early refresh); the stored
    /// response wants revalidating in the background.
    Refresh(Response<Body>, Arc<StoredResponse>),
    /// Go upstream alone (the key is marked hit-for-miss).
    Alone(Detail),
    /// Nothing usable: go upstream through the flight.
    Forward,
}

/// What the `corral.lookup` span records for a request that bypasses the cache.
pub(crate) const BYPASS: &str = "bypass";

impl Found {
    /// What was found, as the `corral.lookup` span records it: `answer` (served from
    /// storage), `refresh` (served from storage, revalidated in the background), `alone`
    /// (fetched without collapsing) or `forward` (fetched through the key's flight).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Found::Answer(_) => "answer",
            Found::Refresh(..) => "refresh",
            Found::Alone(_) => "alone",
            Found::Forward => "forward",
        }
    }
}

impl Lookup {
    /// A lookup for a cacheable request, or the request back with the reason it must
    /// bypass the cache.
    pub(crate) fn start(state: &State, parts: request::Parts) -> Start {
        let bypass = |parts, forward| {
            Start::Bypass(parts, Report::new(CacheStatus::Bypass).forward(forward))
        };
        let Some(primary) = (state.options.key)(&parts) else {
            return bypass(parts, Forward::Bypass);
        };
        let directives = state.options.policy.request_directives(&parts);
        if directives.no_store || state.options.policy.passes_credentials(&parts) {
            return bypass(parts, Forward::Request);
        }
        let head = parts.method == Method::HEAD;
        Start::Look(Lookup {
            range: parts.headers.get(RANGE).filter(|_| !head).cloned(),
            head,
            parts,
            directives,
            primary,
            variant: None,
            index: None,
            stale: None,
            softened: None,
            fetched: None,
        })
    }

    /// Looks the request up (following the URL's variant index, if it has one).
    pub(crate) fn look(&mut self, state: &State) -> Found {
        loop {
            let entry = state.cache.peek(self.key());
            let load_time = entry.as_ref().map_or(Duration::ZERO, Entry::load_time);
            self.softened = entry.as_ref().and_then(Entry::softened_at);
            // When the response stops being fresh: its age (from when it was stored,
            // plus the age it came with) reaches its freshness lifetime.
            let due = |stored: &StoredResponse| {
                let lifetime = &stored.lifetime;
                let left = lifetime.fresh_for.saturating_sub(lifetime.initial_age);
                state
                    .cache
                    .refresh_early_due(load_time, stored.stored_at + left)
            };
            match entry.map(Entry::into_value) {
                Some(Stored::Variants(spec)) if self.index.is_none() => {
                    self.follow(spec, state.options.normalize_vary);
                    continue;
                }
                Some(Stored::Uncacheable) => return Found::Alone(Detail::HitForMiss),
                // A body on disk whose writer gave up, or whose file the disk tier let
                // go of, is as good as gone.
                Some(Stored::Response(stored))
                    if stored.matches(&self.parts.headers, state.options.normalize_vary)
                        && !stored.body.gone() =>
                {
                    let now = Instant::now();
                    match stored.lifetime_softened(self.softened).serve(
                        &self.directives,
                        stored.stored_at,
                        now,
                    ) {
                        Serve::Fresh => {
                            let early = self.fetched.is_none() && due(&stored);
                            let report = match self.fetched {
                                None => Report::new(CacheStatus::Hit),
                                Some(source) => Report {
                                    forward_status: Some(stored.status),
                                    stored: true,
                                    collapsed: source == Source::Joined,
                                    ..Report::new(CacheStatus::Miss).forward(Forward::Miss)
                                },
                            };
                            let response = state.serve(
                                &stored,
                                &self.parts,
                                self.head,
                                self.range.as_ref(),
                                report,
                                now,
                            );
                            if early {
                                // Hot and near its expiry: refreshed now, before it is
                                // (XFetch), while this request is answered.
                                return Found::Refresh(response, stored);
                            }
                            return Found::Answer(response);
                        }
                        Serve::Stale => {
                            let report = Report::new(CacheStatus::Stale)
                                .detail(Detail::StaleWhileRevalidate);
                            let response = state.serve(
                                &stored,
                                &self.parts,
                                self.head,
                                self.range.as_ref(),
                                report,
                                now,
                            );
                            return Found::Refresh(response, stored);
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
    pub(crate) fn key(&self) -> &str {
        self.variant.as_deref().unwrap_or(&self.primary)
    }

    /// Switches to the variant of the URL that `spec` selects for this request
    /// (its values read in normal form if `normalize`).
    pub(crate) fn follow(&mut self, spec: Arc<VarySpec>, normalize: bool) {
        self.variant = Some(variant_key(
            &self.primary,
            &spec,
            &self.parts.headers,
            normalize,
        ));
        self.index = Some(spec);
    }

    pub(crate) fn target(&self) -> Target {
        Target {
            key: self.key().to_owned(),
            primary: self.primary.clone(),
            index: self.index.clone(),
        }
    }

    /// The stale response that may answer this request now that its forward failed
    /// (`unreachable`: the window for an origin that could not be reached at all).
    pub(crate) fn stale_serves_on_error(
        &self,
        unreachable: Duration,
    ) -> Option<&Arc<StoredResponse>> {
        self.stale.as_ref().filter(|s| {
            s.lifetime_softened(self.softened).serves_on_error(
                &self.directives,
                s.stored_at,
                Instant::now(),
                unreachable,
            )
        })
    }
}
