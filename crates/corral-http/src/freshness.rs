//! Whether RFC 9111 lets a response be stored (§3) and how long it is fresh (§4.2.1,
//! heuristics §4.2.2), read from the directives that govern it: in a shared cache, a
//! valid targeted field's (RFC 9213, e.g. `CDN-Cache-Control`), which then replaces
//! both `Cache-Control` and `Expires`; otherwise `Cache-Control` and `Expires`.

use std::time::{Duration, SystemTime};

use http::header::{CACHE_CONTROL, DATE, EXPIRES, LAST_MODIFIED, PRAGMA};
use http::{HeaderMap, HeaderName, StatusCode};

use crate::directives::{MAX_DELTA, ResponseDirectives, split_list};
use crate::targeted::targeted_directives;

/// Statuses a cache may give a heuristic lifetime (RFC 9110 §15.1).
const HEURISTICALLY_CACHEABLE: [u16; 12] =
    [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];

/// The fraction of the time since `Last-Modified` a heuristic lifetime is (§4.2.2's
/// "typical setting" of 10%), and the longest one: a day, as Apache Traffic Server's
/// default (a file untouched for ten years is not fresh for one).
const HEURISTIC_FRACTION: u32 = 10;
const LONGEST_HEURISTIC: Duration = Duration::from_secs(24 * 3600);

/// The directives that decide how a response is cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Governing {
    pub directives: ResponseDirectives,
    /// Whether they come from a targeted field (so `Expires` does not count).
    pub targeted: bool,
}

impl Governing {
    /// The first valid field of `targets` (a shared cache's target list, in order),
    /// else `Cache-Control`, where a `Pragma: no-cache` without it counts as
    /// `no-cache` (what an HTTP/1.0 origin means by it).
    pub(crate) fn of(headers: &HeaderMap, targets: &[HeaderName]) -> Governing {
        if let Some(directives) = targeted_directives(headers, targets) {
            return Governing {
                directives,
                targeted: true,
            };
        }
        let mut directives = ResponseDirectives::parse(headers);
        if !headers.contains_key(CACHE_CONTROL)
            && headers
                .get_all(PRAGMA)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(split_list)
                .any(|p| p.eq_ignore_ascii_case("no-cache"))
        {
            directives.no_cache = true;
        }
        Governing {
            directives,
            targeted: false,
        }
    }

    /// The freshness lifetime the response states itself (§4.2.1): `s-maxage` in a
    /// shared cache, else `max-age`, else `Expires` minus `Date` (not beside a
    /// targeted field); `None` if it states none.
    pub(crate) fn explicit_lifetime(&self, shared: bool, headers: &HeaderMap) -> Option<Duration> {
        let d = &self.directives;
        d.s_maxage.filter(|_| shared).or(d.max_age).or_else(|| {
            (!self.targeted)
                .then(|| expires_lifetime(headers))
                .flatten()
        })
    }

    /// The response's freshness lifetime: its explicit one, else for a status that
    /// allows it a heuristic one (§4.2.2: a tenth of the time since `Last-Modified`,
    /// at most a day); `None` if it has neither. `no-cache` makes it zero (every use
    /// revalidates).
    pub(crate) fn lifetime(
        &self,
        shared: bool,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Option<Duration> {
        let lifetime = self.explicit_lifetime(shared, headers).or_else(|| {
            HEURISTICALLY_CACHEABLE
                .contains(&status.as_u16())
                .then(|| heuristic_lifetime(headers))
                .flatten()
        })?;
        Some(if self.directives.no_cache {
            Duration::ZERO
        } else {
            lifetime.min(MAX_DELTA)
        })
    }

    /// Whether §3 lets a response of `status` be stored at all: its status is
    /// heuristically cacheable, or it states a lifetime. Other statuses (server
    /// errors, redirects other than 301 and 308, ones this cache has never heard of)
    /// are stored only with an explicit lifetime, `public` or not.
    pub(crate) fn allows_storing(
        &self,
        shared: bool,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> bool {
        HEURISTICALLY_CACHEABLE.contains(&status.as_u16())
            || self.explicit_lifetime(shared, headers).is_some()
    }
}

/// `Expires` minus `Date` (the response's own clock: a skewed origin still means
/// what it says); an invalid `Expires`, or several, count as already expired.
fn expires_lifetime(headers: &HeaderMap) -> Option<Duration> {
    let mut lines = headers.get_all(EXPIRES).iter();
    let first = lines.next()?;
    if lines.next().is_some() {
        return Some(Duration::ZERO);
    }
    let Some(expires) = first.to_str().ok().and_then(http_date) else {
        return Some(Duration::ZERO);
    };
    Some(expires.duration_since(date(headers)).unwrap_or_default())
}

/// A tenth of the time from `Last-Modified` to `Date`, at most a day.
fn heuristic_lifetime(headers: &HeaderMap) -> Option<Duration> {
    let modified = headers
        .get(LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(http_date)?;
    let since = date(headers).duration_since(modified).ok()?;
    Some((since / HEURISTIC_FRACTION).min(LONGEST_HEURISTIC))
}

/// The response's `Date`, or now if it has no valid one.
fn date(headers: &HeaderMap) -> SystemTime {
    headers
        .get(DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(http_date)
        .unwrap_or_else(SystemTime::now)
}

/// An HTTP-date in any of the three formats of RFC 9110 §5.6.7 (IMF-fixdate, RFC 850,
/// asctime), exactly: anything else, extra spaces included, is no date.
pub(crate) fn http_date(text: &str) -> Option<SystemTime> {
    // The parser forgives spaces around the date; the grammar does not.
    if text.trim() != text {
        return None;
    }
    httpdate::parse_http_date(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::header_map as headers;

    fn lifetime(shared: bool, status: u16, pairs: &[(&str, &str)]) -> Option<Duration> {
        let h = headers(pairs);
        let status = StatusCode::from_u16(status).unwrap();
        Governing::of(&h, &[http::header::CDN_CACHE_CONTROL]).lifetime(shared, status, &h)
    }

    const DATE: (&str, &str) = ("date", "Sun, 29 Nov 2026 12:00:00 GMT");

    #[test]
    fn s_maxage_then_max_age_then_expires() {
        let all = [
            ("cache-control", "max-age=60, s-maxage=600"),
            DATE,
            ("expires", "Sun, 29 Nov 2026 13:00:00 GMT"),
        ];
        assert_eq!(lifetime(true, 200, &all), Some(Duration::from_secs(600)));
        assert_eq!(lifetime(false, 200, &all), Some(Duration::from_secs(60)));
        assert_eq!(
            lifetime(true, 200, &all[1..]),
            Some(Duration::from_secs(3600))
        );
        let two = [
            DATE,
            ("expires", "Sun, 29 Nov 2026 13:00:00 GMT"),
            ("expires", "Sun, 29 Nov 2026 14:00:00 GMT"),
        ];
        assert_eq!(
            lifetime(true, 200, &two),
            Some(Duration::ZERO),
            "two Expires: stale"
        );
        let past = [DATE, ("expires", "Sat, 28 Nov 2026 12:00:00 GMT")];
        assert_eq!(lifetime(true, 200, &past), Some(Duration::ZERO));
    }

    #[test]
    fn a_heuristic_lifetime_is_a_tenth_since_last_modified_at_most_a_day_and_only_for_some_statuses()
     {
        let recent = [DATE, ("last-modified", "Sun, 29 Nov 2026 02:00:00 GMT")];
        assert_eq!(
            lifetime(true, 200, &recent),
            Some(Duration::from_secs(3600))
        );
        let old = [DATE, ("last-modified", "Sun, 29 Nov 2015 12:00:00 GMT")];
        assert_eq!(lifetime(true, 404, &old), Some(LONGEST_HEURISTIC));
        assert_eq!(lifetime(true, 500, &old), None);
        assert_eq!(lifetime(true, 302, &old), None);
        assert_eq!(lifetime(true, 200, &[DATE]), None);
        let no_cache = [("cache-control", "max-age=60, no-cache")];
        assert_eq!(lifetime(true, 200, &no_cache), Some(Duration::ZERO));
        assert_eq!(lifetime(true, 200, &[("pragma", "no-cache")]), None);
        let pragma = [("pragma", "no-cache"), ("expires", "0")];
        assert_eq!(lifetime(true, 200, &pragma), Some(Duration::ZERO));
    }

    #[test]
    fn storing_needs_a_heuristically_cacheable_status_or_an_explicit_lifetime() {
        let allows = |shared, status, pairs: &[(&str, &str)]| {
            let h = headers(pairs);
            Governing::of(&h, &[]).allows_storing(shared, StatusCode::from_u16(status).unwrap(), &h)
        };
        assert!(allows(true, 200, &[]));
        assert!(allows(true, 501, &[]));
        assert!(!allows(true, 503, &[("cache-control", "public")]));
        assert!(allows(true, 503, &[("cache-control", "s-maxage=5")]));
        assert!(
            !allows(false, 503, &[("cache-control", "s-maxage=5")]),
            "s-maxage is for shared caches"
        );
        assert!(allows(
            true,
            599,
            &[("expires", "Sun, 29 Nov 2026 13:00:00 GMT")]
        ));
    }

    #[test]
    fn dates_in_the_three_formats_and_nothing_else() {
        let at = http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(at));
        assert_eq!(http_date("Sun Nov  6 08:49:37 1994"), Some(at));
        for invalid in [
            "Sun,  06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 +0000",
            " Sun, 06 Nov 1994 08:49:37 GMT",
            "0",
            "",
        ] {
            assert_eq!(http_date(invalid), None, "{invalid:?}");
        }
    }
}
