//! When a URL is fetched next: after a success, from the response's freshness (read
//! as the HTTP cache reads it: its `max-age`, or `Expires` minus `Date`, less its
//! `Age`) clamped to the URL's [min, max] interval, unless a fixed interval says
//! otherwise; after a failure, sooner, backing off exponentially (with jitter) up to
//! the min interval.

use std::time::Duration;

use http::header::LAST_MODIFIED;
use http::{HeaderMap, Method, Request, Response};

use crate::policy::{KeepStale, Policy};

/// One URL's refresh intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Intervals {
    pub min: Duration,
    pub max: Duration,
    pub fixed: Option<Duration>,
}

impl Intervals {
    /// The wait after a fetch whose response (200 or 304) had `headers`.
    pub(crate) fn after_success(&self, headers: &HeaderMap) -> Duration {
        if let Some(fixed) = self.fixed {
            return fixed;
        }
        freshness(headers).clamp(self.min, self.max)
    }

    /// The wait after the `failures`-th failed fetch in a row (from 1): `base`,
    /// doubling each time up to the min (or fixed) interval, less up to half of it at
    /// random so that URLs failing together do not retry together.
    pub(crate) fn after_failure(&self, failures: u32, base: Duration) -> Duration {
        let cap = self.fixed.unwrap_or(self.min);
        let doubled = base.saturating_mul(1 << failures.saturating_sub(1).min(30));
        let full = doubled.min(cap);
        let half = full / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// How long a response with `headers` stays fresh from now, by the private-cache
/// policy of the HTTP cache (RFC 9111): zero when it says nothing about its lifetime,
/// is already stale, or is `no-cache` / `no-store`. A 304's headers are read as the
/// refreshed value's (RFC 9111 §4.3.4). No lifetime is guessed from `Last-Modified`
/// (the heuristic freshness of §4.2.2): a key set that does not give one is refreshed
/// every min interval, not after a tenth of its age.
fn freshness(headers: &HeaderMap) -> Duration {
    let (mut request, ()) = Request::new(()).into_parts();
    request.method = Method::GET;
    let (mut response, ()) = Response::new(()).into_parts();
    response.headers = headers.clone();
    response.headers.remove(LAST_MODIFIED);
    match (Policy::Rfc9111 { shared: false }).lifetime(
        &request,
        &response,
        KeepStale::default(),
        &[],
    ) {
        Ok(lifetime) if !lifetime.always_revalidate => {
            lifetime.fresh_for.saturating_sub(lifetime.initial_age)
        }
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::testing::header_map as headers;

    const MIN: Duration = Duration::from_secs(60);
    const MAX: Duration = Duration::from_secs(3600);
    const INTERVALS: Intervals = Intervals {
        min: MIN,
        max: MAX,
        fixed: None,
    };

    #[test]
    fn max_age_less_age_clamped_to_min_and_max() {
        let after = |h: &[(&'static str, &str)]| INTERVALS.after_success(&headers(h));
        assert_eq!(
            after(&[("cache-control", "max-age=600")]),
            Duration::from_secs(600)
        );
        assert_eq!(
            after(&[("cache-control", "max-age=600"), ("age", "100")]),
            Duration::from_secs(500)
        );
        assert_eq!(after(&[("cache-control", "max-age=5")]), MIN);
        assert_eq!(after(&[("cache-control", "max-age=86400")]), MAX);
        assert_eq!(after(&[("cache-control", "no-cache, max-age=600")]), MIN);
        assert_eq!(after(&[]), MIN);
    }

    #[test]
    fn an_age_past_any_lifetime_or_a_bare_last_modified_means_the_min_interval() {
        let after = |h: &[(&'static str, &str)]| INTERVALS.after_success(&headers(h));
        // An `Age` too large to represent is 2^31 s old (RFC 9111 §1.2.2), not zero.
        let ancient = [
            ("cache-control", "max-age=600"),
            ("age", "99999999999999999999"),
        ];
        assert_eq!(after(&ancient), MIN);
        // No heuristic lifetime from `Last-Modified`, however old it is.
        assert_eq!(
            after(&[("last-modified", "Tue, 15 Nov 1994 12:45:26 GMT")]),
            MIN
        );
    }

    #[test]
    fn expires_minus_date() {
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let expires = date + Duration::from_secs(900);
        let h = headers(&[
            ("date", &httpdate::fmt_http_date(date)),
            ("expires", &httpdate::fmt_http_date(expires)),
        ]);
        // Measured from Date, not from the local clock.
        assert_eq!(INTERVALS.after_success(&h), Duration::from_secs(900));
        let invalid = headers(&[("expires", "0")]);
        assert_eq!(INTERVALS.after_success(&invalid), MIN);
    }

    #[test]
    fn a_fixed_interval_ignores_the_response() {
        let fixed = Intervals {
            fixed: Some(Duration::from_secs(7)),
            ..INTERVALS
        };
        let h = headers(&[("cache-control", "max-age=600")]);
        assert_eq!(fixed.after_success(&h), Duration::from_secs(7));
    }

    #[test]
    fn failures_back_off_with_jitter_up_to_the_min_interval() {
        let base = Duration::from_secs(1);
        for failures in 1..40 {
            let full = (base * 2u32.pow(failures.min(31) - 1)).min(MIN);
            let wait = INTERVALS.after_failure(failures, base);
            assert!(wait >= full / 2 && wait <= full, "{failures}: {wait:?}");
        }
    }
}
