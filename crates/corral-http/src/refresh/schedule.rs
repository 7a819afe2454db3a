//! When a URL is fetched next: after a success, from the response's freshness (its
//! `max-age`, or `Expires` minus `Date`, less its `Age`) clamped to the URL's
//! [min, max] interval, unless a fixed interval says otherwise; after a failure,
//! sooner, backing off exponentially (with jitter) up to the min interval.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::{AGE, DATE, EXPIRES};

use crate::directives::ResponseDirectives;

/// One URL's refresh intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Intervals {
    pub min: Duration,
    pub max: Duration,
    pub fixed: Option<Duration>,
}

impl Intervals {
    /// The wait after a fetch whose response (200 or 304) had `headers`.
    pub(crate) fn after_success(&self, headers: &HeaderMap, now: SystemTime) -> Duration {
        if let Some(fixed) = self.fixed {
            return fixed;
        }
        freshness(headers, now)
            .unwrap_or(self.min)
            .clamp(self.min, self.max)
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

/// How long the response stays fresh from now, if it says: `None` when it gives no
/// lifetime, zero when it is already stale (or `no-cache` / `no-store`).
fn freshness(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let directives = ResponseDirectives::parse(headers);
    if directives.no_store || directives.no_cache {
        return Some(Duration::ZERO);
    }
    let lifetime = match directives.max_age {
        Some(max_age) => max_age,
        None => {
            let expires = headers.get(EXPIRES)?;
            let date = date(headers, DATE).unwrap_or(now);
            // An invalid Expires (e.g. "0") means already expired (RFC 9111 §5.3).
            httpdate::parse_http_date(expires.to_str().unwrap_or_default())
                .ok()
                .and_then(|expires| expires.duration_since(date).ok())
                .unwrap_or_default()
        }
    };
    let age = headers
        .get(AGE)
        .and_then(|a| a.to_str().ok())
        .and_then(|a| a.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    Some(lifetime.saturating_sub(age))
}

fn date(headers: &HeaderMap, name: http::header::HeaderName) -> Option<SystemTime> {
    httpdate::parse_http_date(headers.get(name)?.to_str().ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const MAX: Duration = Duration::from_secs(3600);
    const INTERVALS: Intervals = Intervals {
        min: MIN,
        max: MAX,
        fixed: None,
    };

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| (http::HeaderName::from_static(n), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn max_age_less_age_clamped_to_min_and_max() {
        let now = SystemTime::now();
        let after = |h: &[(&'static str, &str)]| INTERVALS.after_success(&headers(h), now);
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
    fn expires_minus_date() {
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let expires = date + Duration::from_secs(900);
        let h = headers(&[
            ("date", &httpdate::fmt_http_date(date)),
            ("expires", &httpdate::fmt_http_date(expires)),
        ]);
        // Measured from Date, not from the local clock.
        assert_eq!(
            INTERVALS.after_success(&h, SystemTime::now()),
            Duration::from_secs(900)
        );
        let invalid = headers(&[("expires", "0")]);
        assert_eq!(INTERVALS.after_success(&invalid, SystemTime::now()), MIN);
    }

    #[test]
    fn a_fixed_interval_ignores_the_response() {
        let fixed = Intervals {
            fixed: Some(Duration::from_secs(7)),
            ..INTERVALS
        };
        let h = headers(&[("cache-control", "max-age=600")]);
        assert_eq!(
            fixed.after_success(&h, SystemTime::now()),
            Duration::from_secs(7)
        );
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
