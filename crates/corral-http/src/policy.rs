//! Policy: whether a response may be stored and for how long, and whether a stored
//! response may answer a request.
//!
//! [`Policy::Rfc9111`] follows RFC 9111: storability and freshness lifetime in
//! `freshness.rs` (with targeted fields, RFC 9213, in a shared cache), the age a
//! response arrives with here; `stale-while-revalidate` and `stale-if-error` (RFC
//! 5861); `no-cache`, `must-revalidate`, and in a shared cache `proxy-revalidate` and
//! `s-maxage`, forbid serving a stale response even when the request's `max-stale`
//! would accept one; `proxy-revalidate` makes a response revalidate once stale, not
//! from the start; and a shared cache never stores a response that sets a cookie.
//! [`Policy::Fixed`] is the middleware style of Go's stampede: a fixed lifetime for
//! listed statuses, still refusing what a shared cache must never store.

use std::time::Duration;

use http::header::{AGE, AUTHORIZATION, COOKIE, ETAG, LAST_MODIFIED, RANGE, SET_COOKIE};
use http::{HeaderName, Method, StatusCode, request, response};
use tokio::time::Instant;

use crate::directives::{MAX_DELTA, MaxStale, RequestDirectives};
use crate::freshness::Governing;
use crate::reason::NotStored;
use crate::vary::Vary;

/// The statuses [`Policy::fixed`] stores by default: those RFC 9110 makes cacheable by
/// default.
pub const DEFAULT_FIXED_STATUSES: [StatusCode; 11] = [
    StatusCode::OK,
    StatusCode::NON_AUTHORITATIVE_INFORMATION,
    StatusCode::NO_CONTENT,
    StatusCode::MULTIPLE_CHOICES,
    StatusCode::MOVED_PERMANENTLY,
    StatusCode::PERMANENT_REDIRECT,
    StatusCode::NOT_FOUND,
    StatusCode::METHOD_NOT_ALLOWED,
    StatusCode::GONE,
    StatusCode::URI_TOO_LONG,
    StatusCode::NOT_IMPLEMENTED,
];

/// Which responses are stored, for how long, and which requests they answer.
///
/// ```
/// use std::time::Duration;
/// use corral_http::Policy;
///
/// // A shared cache (a proxy or a server-side cache) following RFC 9111:
/// let proxy = Policy::Rfc9111 { shared: true };
/// // A client's private cache:
/// let client = Policy::Rfc9111 { shared: false };
/// // Store 200s (and the other cacheable-by-default statuses) for 10 s, then serve
/// // them stale for up to 50 s more while one refresh runs:
/// let middleware = Policy::fixed(Duration::from_secs(10), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// RFC 9111 semantics. A shared cache (`shared: true`) never stores `private`
    /// responses, responses to requests with `Authorization` unless `public`,
    /// `s-maxage` or `must-revalidate` allow it, or responses that set cookies.
    Rfc9111 {
        /// Whether the cache serves many users (a proxy, a server-side cache) or one.
        shared: bool,
    },
    /// A fixed lifetime regardless of `Cache-Control` lifetimes, for the listed
    /// statuses: fresh for `fresh_for`, then stale (served while one refresh runs, and
    /// on errors) until `ttl`. Responses marked `no-store` or `private` and responses
    /// that set cookies are never stored. Requests that carry `Cookie` or
    /// `Authorization` go to the inner service alone unless `credentials` is
    /// [`Credentials::Share`]. Request directives are ignored. `ttl` zero means:
    /// coalesce, never store.
    Fixed {
        /// How long a response is fresh.
        fresh_for: Duration,
        /// How long a response is kept (fresh, then stale).
        ttl: Duration,
        /// The statuses that are stored.
        statuses: Vec<StatusCode>,
        /// Whether requests with `Cookie` or `Authorization` share the cache.
        credentials: Credentials,
    },
}

/// Whether requests that say who their user is (they carry `Cookie` or
/// `Authorization`) share stored responses under [`Policy::Fixed`], whose lifetimes do
/// not depend on what the response says about its audience.
///
/// ```
/// use std::time::Duration;
/// use corral_http::{Credentials, Policy};
///
/// // The key includes the session cookie, so each user has entries of their own:
/// let per_user = Policy::fixed(Duration::from_secs(5), Duration::from_secs(60))
///     .credentials(Credentials::Share);
/// # let _ = per_user;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Credentials {
    /// They go to the inner service alone: never answered from the cache, never
    /// stored, never collapsed with other requests (Varnish's built-in rule). The
    /// default.
    #[default]
    Pass,
    /// They use the cache like any other request. Choose it when the cache key
    /// includes what identifies the user (the cookie, or `Authorization`), or when the
    /// app answers every user alike.
    Share,
}

impl Default for Policy {
    /// `Rfc9111 { shared: true }`.
    fn default() -> Self {
        Policy::Rfc9111 { shared: true }
    }
}

impl Policy {
    /// [`Policy::Fixed`] with the [default statuses](DEFAULT_FIXED_STATUSES). A `ttl`
    /// shorter than `fresh_for` is raised to it.
    pub fn fixed(fresh_for: Duration, ttl: Duration) -> Self {
        Policy::Fixed {
            fresh_for,
            ttl: ttl.max(fresh_for),
            statuses: DEFAULT_FIXED_STATUSES.to_vec(),
            credentials: Credentials::Pass,
        }
    }

    /// Sets whether requests with `Cookie` or `Authorization` share the cache under
    /// [`Policy::Fixed`] (see [`Credentials`]); [`Policy::Rfc9111`] follows the RFC and
    /// ignores this.
    pub fn credentials(mut self, shared: Credentials) -> Self {
        if let Policy::Fixed { credentials, .. } = &mut self {
            *credentials = shared;
        }
        self
    }

    /// Whether `req` must bypass the cache because it says who its user is and the
    /// policy does not let such requests share.
    pub(crate) fn passes_credentials(&self, req: &request::Parts) -> bool {
        matches!(
            self,
            Policy::Fixed {
                credentials: Credentials::Pass,
                ..
            }
        ) && (req.headers.contains_key(AUTHORIZATION) || req.headers.contains_key(COOKIE))
    }

    /// Whether a response that is not stored may still go to the other requests that
    /// waited on its fetch: it is not `private` or `no-store` (by the directives that
    /// govern it), sets no cookie, does not vary on everything, and the request
    /// carried neither `Authorization` nor `Cookie` (a response that states no
    /// lifetime has not said it is the same for every user, and an error page may
    /// echo what it was sent).
    pub(crate) fn may_share(
        &self,
        req: &request::Parts,
        res: &response::Parts,
        targets: &[HeaderName],
    ) -> bool {
        let directives = self.governing(&res.headers, targets).directives;
        !directives.private
            && !directives.no_store
            && !res.headers.contains_key(SET_COOKIE)
            && Vary::parse(&res.headers) != Vary::Any
            && !req.headers.contains_key(AUTHORIZATION)
            && !req.headers.contains_key(COOKIE)
    }

    /// The directives that govern a response with `headers`: a shared cache heeds
    /// `targets` (RFC 9213), a private one only `Cache-Control`.
    pub(crate) fn governing(&self, headers: &http::HeaderMap, targets: &[HeaderName]) -> Governing {
        Governing::of(headers, if self.is_shared() { targets } else { &[] })
    }

    /// Whether responses are shared between users.
    pub(crate) fn is_shared(&self) -> bool {
        match self {
            Policy::Rfc9111 { shared } => *shared,
            Policy::Fixed { .. } => true,
        }
    }

    /// The request's directives, as far as this policy honours them.
    pub(crate) fn request_directives(&self, req: &request::Parts) -> RequestDirectives {
        match self {
            Policy::Rfc9111 { .. } => RequestDirectives::parse(&req.headers),
            Policy::Fixed { .. } => RequestDirectives::default(),
        }
    }

    /// Whether (and how long) the response to `req` may be stored, or why not. A zero
    /// `keep_for` means: share with the waiters of this load, but do not store.
    /// `keep_stale` says how long RFC 9111 responses are kept past freshness;
    /// `targets` are the targeted fields (RFC 9213) a shared cache heeds, first
    /// valid one first (a private cache heeds none).
    pub(crate) fn lifetime(
        &self,
        req: &request::Parts,
        res: &response::Parts,
        keep_stale: KeepStale,
        targets: &[HeaderName],
    ) -> Result<Lifetime, NotStored> {
        if req.method != Method::GET {
            return Err(NotStored::Method);
        }
        if req.headers.contains_key(RANGE) || res.status == StatusCode::PARTIAL_CONTENT {
            return Err(NotStored::Partial);
        }
        if Vary::parse(&res.headers) == Vary::Any {
            return Err(NotStored::VaryAny);
        }
        let governing = self.governing(&res.headers, targets);
        let directives = &governing.directives;
        if self.is_shared() && res.headers.contains_key(SET_COOKIE) {
            return Err(NotStored::SetsCookie);
        }
        match self {
            Policy::Rfc9111 { shared } => {
                rfc9111_lifetime(*shared, req, res, &governing, keep_stale)
            }
            Policy::Fixed {
                fresh_for,
                ttl,
                statuses,
                ..
            } => {
                if !statuses.contains(&res.status) {
                    return Err(NotStored::StatusNotListed);
                }
                if directives.no_store || directives.private {
                    return Err(if directives.no_store {
                        NotStored::NoStore
                    } else {
                        NotStored::Private
                    });
                }
                if self.passes_credentials(req) {
                    return Err(NotStored::Credentials);
                }
                let stale = ttl.saturating_sub(*fresh_for);
                Ok(Lifetime {
                    initial_age: Duration::ZERO,
                    fresh_for: *fresh_for,
                    stale_while_revalidate: stale,
                    stale_if_error: stale,
                    revalidate_when_stale: false,
                    always_revalidate: false,
                    keep_for: *ttl,
                })
            }
        }
    }
}

fn rfc9111_lifetime(
    shared: bool,
    req: &request::Parts,
    res: &response::Parts,
    governing: &Governing,
    keep_stale: KeepStale,
) -> Result<Lifetime, NotStored> {
    let directives = &governing.directives;
    if directives.no_store || RequestDirectives::parse(&req.headers).no_store {
        return Err(NotStored::NoStore);
    }
    if shared && directives.private {
        return Err(NotStored::Private);
    }
    // §3.5: a shared cache stores a response to a request with credentials only
    // when the response says it may.
    if shared
        && req.headers.contains_key(AUTHORIZATION)
        && !(directives.public || directives.must_revalidate || directives.s_maxage.is_some())
    {
        return Err(NotStored::Authorization);
    }
    // A final status of RFC 9110's range, but not a 304 (which updates a stored
    // response, never is one).
    let final_status = (200..=599).contains(&res.status.as_u16());
    if !final_status
        || res.status == StatusCode::NOT_MODIFIED
        || !governing.allows_storing(shared, res.status, &res.headers)
    {
        return Err(NotStored::NotStorable);
    }
    let fresh_for = governing
        .lifetime(shared, res.status, &res.headers)
        .unwrap_or_default();
    let initial_age = age_of(&res.headers);
    let revalidate_when_stale = directives.must_revalidate
        || shared && (directives.proxy_revalidate || directives.s_maxage.is_some());
    let always_revalidate = directives.no_cache;
    let has_validators = res.headers.contains_key(ETAG) || res.headers.contains_key(LAST_MODIFIED);
    if fresh_for.is_zero() && !has_validators {
        return Err(NotStored::NotFresh);
    }
    let stale_while_revalidate = directives.stale_while_revalidate.unwrap_or_default();
    let stale_if_error = directives.stale_if_error.unwrap_or_default();
    // Once stale it may still serve: clients' max-stale, stale-while-revalidate,
    // stale-if-error, an unreachable origin, or a revalidation; unless nothing but a
    // revalidation is allowed and it has no validators.
    let stale_use = if (revalidate_when_stale || always_revalidate) && !has_validators {
        Duration::ZERO
    } else if revalidate_when_stale || always_revalidate {
        keep_stale.for_revalidation
    } else {
        stale_while_revalidate
            .max(stale_if_error)
            .max(keep_stale.for_revalidation)
            .max(keep_stale.while_unreachable)
    };
    Ok(Lifetime {
        initial_age,
        fresh_for,
        stale_while_revalidate,
        stale_if_error,
        revalidate_when_stale,
        always_revalidate,
        keep_for: fresh_for
            .saturating_sub(initial_age)
            .saturating_add(stale_use),
    })
}

/// The `Age` a response arrived with (RFC 9111 §5.1): of a list, the first member
/// (of several lines, the first line's); anything but a non-negative integer is
/// ignored (zero), and a value too large to represent counts as 2^31 seconds.
pub(crate) fn age_of(headers: &http::HeaderMap) -> Duration {
    let Some(age) = headers.get(AGE).and_then(|v| v.to_str().ok()) else {
        return Duration::ZERO;
    };
    let age = age.split(',').next().unwrap_or_default().trim();
    if age.is_empty() || !age.bytes().all(|b| b.is_ascii_digit()) {
        return Duration::ZERO;
    }
    age.parse::<u64>()
        .map_or(MAX_DELTA, Duration::from_secs)
        .min(MAX_DELTA)
}

/// How long past freshness the cache keeps an RFC 9111 response it may still use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KeepStale {
    /// To revalidate it, or to serve it to clients' `max-stale` (`keep_stale_for`).
    pub for_revalidation: Duration,
    /// To answer while its origin cannot be reached (`stale_on_disconnect`), when it
    /// may be served stale at all.
    pub while_unreachable: Duration,
}

/// How long a stored response is fresh, and what may be done with it after.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    any(feature = "redis", feature = "disk"),
    derive(serde::Serialize, serde::Deserialize)
)]
pub(crate) struct Lifetime {
    /// Its age when stored (from the `Age` it arrived with).
    pub initial_age: Duration,
    /// Its freshness lifetime: fresh while its age is below this.
    pub fresh_for: Duration,
    /// How long past `fresh_for` it may be served while one revalidation runs.
    pub stale_while_revalidate: Duration,
    /// How long past `fresh_for` it may be served when the origin fails.
    pub stale_if_error: Duration,
    /// `must-revalidate` (and in a shared cache `proxy-revalidate`, `s-maxage`): once
    /// stale, never served without revalidation.
    pub revalidate_when_stale: bool,
    /// `no-cache`: never served without revalidation.
    pub always_revalidate: bool,
    /// How long the cache keeps it from when it was stored.
    pub keep_for: Duration,
}

/// What a stored response may do for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Serve {
    /// Serve it.
    Fresh,
    /// Serve it stale, and revalidate it in the background.
    Stale,
    /// Go to the origin (revalidating it if it has validators).
    Forward,
}

impl Lifetime {
    /// No lifetime: a response that is not stored, only given to the requests that
    /// waited on its fetch.
    pub(crate) const UNSTORED: Lifetime = Lifetime {
        initial_age: Duration::ZERO,
        fresh_for: Duration::ZERO,
        stale_while_revalidate: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        revalidate_when_stale: false,
        always_revalidate: false,
        keep_for: Duration::ZERO,
    };

    /// Its age at `now`, stored at `stored_at`.
    pub(crate) fn age(&self, stored_at: Instant, now: Instant) -> Duration {
        self.initial_age
            .saturating_add(now.saturating_duration_since(stored_at))
    }

    /// Whether it may serve a request with these directives at `now`.
    pub(crate) fn serve(&self, req: &RequestDirectives, stored_at: Instant, now: Instant) -> Serve {
        let age = self.age(stored_at, now);
        if req.no_cache || self.always_revalidate {
            return Serve::Forward;
        }
        if age < self.fresh_for {
            let young_enough = req.max_age.is_none_or(|max| age <= max);
            let fresh_enough = req.min_fresh.is_none_or(|min| self.fresh_for - age >= min);
            return if young_enough && fresh_enough {
                Serve::Fresh
            } else {
                Serve::Forward
            };
        }
        if self.revalidate_when_stale {
            return Serve::Forward;
        }
        let staleness = age - self.fresh_for;
        let client_accepts = match req.max_stale {
            Some(MaxStale::Any) => true,
            Some(MaxStale::Upto(limit)) => staleness <= limit,
            None => false,
        };
        let while_revalidating = !req.wants_fresh() && staleness < self.stale_while_revalidate;
        if client_accepts || while_revalidating {
            Serve::Stale
        } else {
            Serve::Forward
        }
    }

    /// Whether it may answer a request whose forward failed: within `stale-if-error`
    /// (the response's or the request's), or within `unreachable` (the cache's own
    /// window when the origin could not be reached at all, RFC 9111 §4.2.4; zero for
    /// an origin that answered with an error) unless the request asks for a fresh
    /// response. Never when `no-cache`, `must-revalidate`, `proxy-revalidate` or
    /// `s-maxage` forbid serving it stale.
    pub(crate) fn serves_on_error(
        &self,
        req: &RequestDirectives,
        stored_at: Instant,
        now: Instant,
        unreachable: Duration,
    ) -> bool {
        let age = self.age(stored_at, now);
        if self.always_revalidate {
            return false;
        }
        if age < self.fresh_for {
            return true;
        }
        if self.revalidate_when_stale {
            return false;
        }
        let unreachable = if req.wants_fresh() {
            Duration::ZERO
        } else {
            unreachable
        };
        let window = self
            .stale_if_error
            .max(req.stale_if_error.unwrap_or_default())
            .max(unreachable);
        age - self.fresh_for < window
    }

    /// Seconds of freshness left at `now` (negative once stale), for `Cache-Status`.
    pub(crate) fn ttl_seconds(&self, stored_at: Instant, now: Instant) -> i64 {
        let age = self.age(stored_at, now).as_secs() as i64;
        self.fresh_for.as_secs() as i64 - age
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    const KEEP: Duration = Duration::from_secs(3600);
    const KEEP_STALE: KeepStale = KeepStale {
        for_revalidation: KEEP,
        while_unreachable: Duration::ZERO,
    };

    fn req(headers: &[(&str, &str)]) -> request::Parts {
        let mut b = http::Request::get("http://example.com/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn res(status: u16, headers: &[(&str, &str)]) -> response::Parts {
        let mut b = http::Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn shared(req_h: &[(&str, &str)], res_h: &[(&str, &str)]) -> Result<Lifetime, NotStored> {
        Policy::Rfc9111 { shared: true }.lifetime(&req(req_h), &res(200, res_h), KEEP_STALE, &[])
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn max_age_sets_the_freshness_lifetime_and_age_counts_against_it() {
        let l = shared(&[], &[("cache-control", "max-age=60"), ("age", "10")]).unwrap();
        assert_eq!((l.initial_age, l.fresh_for), (secs(10), secs(60)));
        assert_eq!(
            l.keep_for,
            secs(50) + KEEP,
            "fresh for 50 s more, then kept for revalidation or max-stale"
        );
        let arrived_stale = shared(&[], &[("cache-control", "max-age=60"), ("age", "90")]).unwrap();
        assert_eq!(
            (arrived_stale.fresh_for, arrived_stale.keep_for),
            (secs(60), KEEP)
        );
    }

    #[test]
    fn s_maxage_wins_in_a_shared_cache_only() {
        let h = [("cache-control", "max-age=10, s-maxage=100")];
        assert_eq!(shared(&[], &h).unwrap().fresh_for, secs(100));
        let private =
            Policy::Rfc9111 { shared: false }.lifetime(&req(&[]), &res(200, &h), KEEP_STALE, &[]);
        assert_eq!(private.unwrap().fresh_for, secs(10));
    }

    #[test]
    fn what_a_shared_cache_never_stores() {
        assert!(shared(&[], &[("cache-control", "private, max-age=60")]).is_err());
        assert!(shared(&[], &[("cache-control", "no-store")]).is_err());
        assert!(
            shared(
                &[],
                &[("cache-control", "max-age=60"), ("set-cookie", "a=1")]
            )
            .is_err()
        );
        assert!(shared(&[], &[("cache-control", "max-age=60"), ("vary", "*")]).is_err());
        assert!(
            shared(
                &[("cache-control", "no-store")],
                &[("cache-control", "max-age=60")]
            )
            .is_err()
        );
        let auth = [("authorization", "Bearer x")];
        assert!(shared(&auth, &[("cache-control", "max-age=60")]).is_err());
        for allowed in [
            "public, max-age=60",
            "s-maxage=60",
            "max-age=60, must-revalidate",
        ] {
            assert!(
                shared(&auth, &[("cache-control", allowed)]).is_ok(),
                "{allowed}"
            );
        }
    }

    #[test]
    fn a_private_cache_stores_private_responses_and_cookies() {
        let p = Policy::Rfc9111 { shared: false };
        let h = [
            ("cache-control", "private, max-age=60"),
            ("set-cookie", "a=1"),
        ];
        assert!(
            p.lifetime(&req(&[]), &res(200, &h), KEEP_STALE, &[])
                .is_ok()
        );
    }

    #[test]
    fn responses_with_neither_freshness_nor_validators_are_not_stored() {
        assert!(shared(&[], &[]).is_err());
        let l = shared(&[], &[("etag", "\"v1\"")]).unwrap();
        assert_eq!((l.fresh_for, l.keep_for), (Duration::ZERO, KEEP));
    }

    #[test]
    fn proxy_revalidate_keeps_max_age_but_forbids_stale_use() {
        let l = shared(
            &[],
            &[(
                "cache-control",
                "max-age=60, proxy-revalidate, stale-while-revalidate=30",
            )],
        )
        .unwrap();
        assert_eq!(l.fresh_for, secs(60));
        assert!(l.revalidate_when_stale);
        let t0 = Instant::now();
        let any = RequestDirectives {
            max_stale: Some(MaxStale::Any),
            ..Default::default()
        };
        assert_eq!(l.serve(&any, t0, t0 + secs(30)), Serve::Fresh);
        assert_eq!(l.serve(&any, t0, t0 + secs(61)), Serve::Forward);
    }

    #[test]
    fn max_stale_never_overrides_no_cache_must_revalidate_or_s_maxage() {
        let t0 = Instant::now();
        let any = RequestDirectives {
            max_stale: Some(MaxStale::Any),
            ..Default::default()
        };
        for cc in [
            "max-age=10, must-revalidate",
            "s-maxage=10",
            "max-age=10, no-cache",
        ] {
            let l = shared(&[], &[("cache-control", cc), ("etag", "\"e\"")]).unwrap();
            assert_eq!(l.serve(&any, t0, t0 + secs(20)), Serve::Forward, "{cc}");
        }
        let l = shared(&[], &[("cache-control", "max-age=10")]).unwrap();
        assert_eq!(l.serve(&any, t0, t0 + secs(20)), Serve::Stale);
        let limited = RequestDirectives {
            max_stale: Some(MaxStale::Upto(secs(5))),
            ..Default::default()
        };
        assert_eq!(l.serve(&limited, t0, t0 + secs(14)), Serve::Stale);
        assert_eq!(l.serve(&limited, t0, t0 + secs(16)), Serve::Forward);
    }

    #[test]
    fn stale_while_revalidate_and_stale_if_error_windows() {
        let t0 = Instant::now();
        let none = RequestDirectives::default();
        let l = shared(
            &[],
            &[(
                "cache-control",
                "max-age=10, stale-while-revalidate=20, stale-if-error=100",
            )],
        )
        .unwrap();
        assert_eq!(l.keep_for, secs(10) + KEEP);
        let long = shared(
            &[],
            &[("cache-control", "max-age=10, stale-if-error=86400")],
        )
        .unwrap();
        assert_eq!(
            long.keep_for,
            secs(10 + 86400),
            "kept for its whole stale-if-error window"
        );
        assert_eq!(l.serve(&none, t0, t0 + secs(5)), Serve::Fresh);
        assert_eq!(l.serve(&none, t0, t0 + secs(25)), Serve::Stale);
        assert_eq!(l.serve(&none, t0, t0 + secs(31)), Serve::Forward);
        assert!(l.serves_on_error(&none, t0, t0 + secs(100), Duration::ZERO));
        assert!(!l.serves_on_error(&none, t0, t0 + secs(111), Duration::ZERO));
        assert!(
            l.serves_on_error(&none, t0, t0 + secs(111), secs(3600)),
            "unreachable origin"
        );
        let fresh_please = RequestDirectives {
            no_cache: true,
            ..RequestDirectives::default()
        };
        assert!(!l.serves_on_error(&fresh_please, t0, t0 + secs(111), secs(3600)));
        let insists = RequestDirectives {
            max_age: Some(Duration::ZERO),
            ..Default::default()
        };
        assert_eq!(
            l.serve(&insists, t0, t0 + secs(25)),
            Serve::Forward,
            "no SWR for max-age=0"
        );
    }

    #[test]
    fn request_max_age_and_min_fresh() {
        let t0 = Instant::now();
        let l = shared(&[], &[("cache-control", "max-age=60")]).unwrap();
        let max_age = RequestDirectives {
            max_age: Some(secs(10)),
            ..Default::default()
        };
        assert_eq!(l.serve(&max_age, t0, t0 + secs(5)), Serve::Fresh);
        assert_eq!(l.serve(&max_age, t0, t0 + secs(11)), Serve::Forward);
        let min_fresh = RequestDirectives {
            min_fresh: Some(secs(30)),
            ..Default::default()
        };
        assert_eq!(l.serve(&min_fresh, t0, t0 + secs(20)), Serve::Fresh);
        assert_eq!(l.serve(&min_fresh, t0, t0 + secs(40)), Serve::Forward);
        let no_cache = RequestDirectives {
            no_cache: true,
            ..Default::default()
        };
        assert_eq!(l.serve(&no_cache, t0, t0), Serve::Forward);
    }

    #[test]
    fn a_response_that_may_go_stale_is_kept_for_an_unreachable_origin() {
        let keep = KeepStale {
            while_unreachable: secs(86_400),
            ..KEEP_STALE
        };
        let shared = Policy::Rfc9111 { shared: true };
        let lifetime = |cc| {
            shared
                .lifetime(
                    &req(&[]),
                    &res(200, &[("cache-control", cc), ("etag", "\"e\"")]),
                    keep,
                    &[],
                )
                .unwrap()
                .keep_for
        };
        assert_eq!(lifetime("max-age=60"), secs(60 + 86_400));
        assert_eq!(lifetime("max-age=60, must-revalidate"), secs(60) + KEEP);
    }

    #[test]
    fn fixed_policy_lifetimes_and_refusals() {
        let p = Policy::fixed(secs(10), secs(60));
        let l = p
            .lifetime(&req(&[]), &res(200, &[]), KEEP_STALE, &[])
            .unwrap();
        assert_eq!(
            (l.fresh_for, l.stale_while_revalidate, l.keep_for),
            (secs(10), secs(50), secs(60))
        );
        let unreachable = KeepStale {
            while_unreachable: secs(86_400),
            ..KEEP_STALE
        };
        let l = p
            .lifetime(&req(&[]), &res(200, &[]), unreachable, &[])
            .unwrap();
        assert_eq!(
            l.keep_for,
            secs(60),
            "a fixed ttl is kept to, whatever the cache's window"
        );
        assert!(
            p.lifetime(&req(&[]), &res(500, &[]), KEEP_STALE, &[])
                .is_err()
        );
        assert!(
            p.lifetime(
                &req(&[]),
                &res(200, &[("cache-control", "private")]),
                KEEP_STALE,
                &[]
            )
            .is_err()
        );
        assert!(
            p.lifetime(
                &req(&[]),
                &res(200, &[("set-cookie", "s=1")]),
                KEEP_STALE,
                &[]
            )
            .is_err()
        );
        let coalesce_only = Policy::fixed(Duration::ZERO, Duration::ZERO);
        assert_eq!(
            coalesce_only
                .lifetime(&req(&[]), &res(200, &[]), KEEP_STALE, &[])
                .unwrap()
                .keep_for,
            Duration::ZERO
        );
    }

    #[test]
    fn expires_is_read_in_imf_fixdate() {
        let now = SystemTime::now();
        let date = httpdate::fmt_http_date(now);
        let expires = httpdate::fmt_http_date(now + secs(120));
        let l = shared(&[], &[("date", &date), ("expires", &expires)]).unwrap();
        assert!(
            l.fresh_for >= secs(118) && l.fresh_for <= secs(121),
            "{:?}",
            l.fresh_for
        );
    }
}
