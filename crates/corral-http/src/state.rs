//! [`State`]: what every service of one [`HttpCacheLayer`](crate::HttpCacheLayer)
//! shares: the engine under the cache, the options it was built with, and the
//! response counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use corral::Cache;
use http::header::{CONTENT_LOCATION, LOCATION};
use http::{HeaderMap, HeaderName, request};
use metrics::Counter;

use crate::hot::HotHeads;
use crate::key::{KeyFn, same_origin_get};
use crate::policy::{KeepStale, Lifetime, Policy};
use crate::reason::NotStored;
use crate::status::CacheStatus;
use crate::stored::Stored;

/// The options an [`HttpCacheBuilder`](crate::HttpCacheBuilder) resolved.
pub(crate) struct Options {
    pub policy: Policy,
    pub key: KeyFn,
    /// The largest body stored.
    pub max_body: usize,
    /// How long one fetch may take (the engine's load timeout too), and a body written
    /// to disk as it arrives may go without a byte before it is given up.
    pub fetch_timeout: Duration,
    /// Whether a failed request to the upstream is logged at WARN and counted here
    /// (not for an upstream that reports its own failures: a pool's peers).
    pub reports_failures: bool,
    pub keep_stale_for: Duration,
    /// How long past freshness a response may answer when its origin cannot be
    /// reached (zero: only where stale-if-error allows).
    pub stale_on_disconnect: Duration,
    pub max_keep: Option<Duration>,
    pub hit_for_miss: Duration,
    /// Whether responses carry `X-Cache` and `Cache-Status`.
    pub status_headers: bool,
    /// Whether `Accept-Encoding` and `Accept-Language` select variants in normal form.
    pub normalize_vary: bool,
    /// The targeted cache-control fields heeded, in order (RFC 9213).
    pub targeted: Vec<HeaderName>,
    /// The cache's name in `Cache-Status` and in metrics.
    pub name: String,
}

/// What all services of one layer share.
pub(crate) struct State {
    pub cache: Cache<Stored>,
    pub options: Options,
    /// Ready-made heads of the responses hit most.
    pub hot: HotHeads,
    counts: [AtomicU64; 5],
    responses: [Counter; 5],
    /// Origin failures, by [`ORIGIN_FAILURES`](crate::failure::ORIGIN_FAILURES).
    pub(crate) failures: [AtomicU64; 9],
}

impl State {
    /// The state of a cache whose ready-made heads of hits take about `hot_heads`
    /// bytes at most.
    pub(crate) fn new(cache: Cache<Stored>, options: Options, hot_heads: u64) -> State {
        let responses = CacheStatus::ALL.map(|status| {
            metrics::counter!("corral_http_responses_total", "cache" => options.name.clone(), "status" => status.label())
        });
        State {
            cache,
            options,
            hot: HotHeads::new(hot_heads),
            counts: Default::default(),
            responses,
            failures: Default::default(),
        }
    }

    /// Counts a response by how it was answered.
    pub(crate) fn count(&self, status: CacheStatus) {
        self.counts[status as usize].fetch_add(1, Ordering::Relaxed);
        self.responses[status as usize].increment(1);
    }

    /// How many responses were answered so.
    pub(crate) fn counted(&self, status: CacheStatus) -> u64 {
        self.counts[status as usize].load(Ordering::Relaxed)
    }

    /// Whether (and how long) the response to `req` may be stored: the policy's
    /// answer, within `max_keep`.
    pub(crate) fn lifetime(
        &self,
        req: &request::Parts,
        res: &http::response::Parts,
    ) -> Result<Lifetime, NotStored> {
        let keep_stale = KeepStale {
            for_revalidation: self.options.keep_stale_for,
            while_unreachable: self.options.stale_on_disconnect,
        };
        let mut lifetime =
            self.options
                .policy
                .lifetime(req, res, keep_stale, &self.options.targeted)?;
        if let Some(max_keep) = self.options.max_keep {
            lifetime.keep_for = lifetime.keep_for.min(max_keep);
            lifetime.fresh_for = lifetime.fresh_for.min(lifetime.initial_age + max_keep);
        }
        Ok(lifetime)
    }

    /// Whether `res`, not stored, may go to the requests that waited on its fetch.
    pub(crate) fn may_share(&self, req: &request::Parts, res: &http::response::Parts) -> bool {
        self.options
            .policy
            .may_share(req, res, &self.options.targeted)
    }

    /// Invalidates what a successful unsafe request changed: its URL and its
    /// same-origin `Location` and `Content-Location` (RFC 9111 §4.4).
    pub(crate) async fn invalidate_for(&self, request: &request::Parts, response: &HeaderMap) {
        let mut targets = vec![request.uri.to_string()];
        for name in [LOCATION, CONTENT_LOCATION] {
            if let Some(value) = response.get(name).and_then(|v| v.to_str().ok()) {
                targets.push(value.to_owned());
            }
        }
        for target in targets {
            if let Some(get) = same_origin_get(request, &target)
                && let Some(key) = (self.options.key)(&get)
            {
                tracing::debug!(%key, "invalidated by an unsafe request");
                self.cache.invalidate(&key).await;
            }
        }
    }
}
