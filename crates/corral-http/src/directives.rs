//! Cache-Control directives of requests and responses (RFC 9111 §5.2, RFC 5861).

use std::time::Duration;

use http::HeaderMap;
use http::header::{CACHE_CONTROL, PRAGMA};

/// The largest delta-seconds value a cache must understand (RFC 9111 §1.2.2); larger
/// values count as this one.
pub(crate) const MAX_DELTA_SECONDS: u64 = 2_147_483_648;
/// [`MAX_DELTA_SECONDS`] as a duration.
pub(crate) const MAX_DELTA: Duration = Duration::from_secs(MAX_DELTA_SECONDS);

/// One `name[=value]` directive, its name lowercased and its value unquoted.
fn directives(headers: &HeaderMap) -> impl Iterator<Item = (String, Option<String>)> + '_ {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(split_list)
        .map(|d| match d.split_once('=') {
            Some((name, value)) => (
                name.trim().to_ascii_lowercase(),
                Some(value.trim().trim_matches('"').to_owned()),
            ),
            None => (d.trim().to_ascii_lowercase(), None),
        })
}

/// Splits a comma-separated header value, keeping commas inside quoted strings.
pub(crate) fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let mut in_quotes = false;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in value.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty())
}

/// A delta-seconds value; a malformed one is `None`.
fn seconds(value: Option<&str>) -> Option<Duration> {
    let digits = value?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = digits.parse::<u64>().unwrap_or(MAX_DELTA_SECONDS);
    Some(Duration::from_secs(secs.min(MAX_DELTA_SECONDS)))
}

/// What a response says about how it may be cached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ResponseDirectives {
    pub max_age: Option<Duration>,
    pub s_maxage: Option<Duration>,
    pub no_cache: bool,
    pub no_store: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub stale_while_revalidate: Option<Duration>,
    pub stale_if_error: Option<Duration>,
}

impl ResponseDirectives {
    pub(crate) fn parse(headers: &HeaderMap) -> Self {
        let mut d = ResponseDirectives::default();
        for (name, value) in directives(headers) {
            let value = value.as_deref();
            match name.as_str() {
                // A malformed max-age makes the response stale (RFC 9111 §4.2.1); of
                // repeated ones, the most restrictive (the smallest) counts.
                "max-age" => restrict(&mut d.max_age, Some(seconds(value).unwrap_or_default())),
                "s-maxage" => restrict(&mut d.s_maxage, Some(seconds(value).unwrap_or_default())),
                // The qualified forms (`no-cache="Set-Cookie"`) are treated as unqualified:
                // stricter, and always correct.
                "no-cache" => d.no_cache = true,
                "no-store" => d.no_store = true,
                "private" => d.private = true,
                "public" => d.public = true,
                "must-revalidate" => d.must_revalidate = true,
                "proxy-revalidate" => d.proxy_revalidate = true,
                "stale-while-revalidate" => restrict(&mut d.stale_while_revalidate, seconds(value)),
                "stale-if-error" => restrict(&mut d.stale_if_error, seconds(value)),
                _ => {}
            }
        }
        d
    }
}

/// Keeps the smaller of a directive's values (a malformed one, `None`, adds nothing).
fn restrict(kept: &mut Option<Duration>, new: Option<Duration>) {
    *kept = match (*kept, new) {
        (Some(kept), Some(new)) => Some(kept.min(new)),
        (kept, new) => kept.or(new),
    };
}

/// How stale a response the client accepts (`max-stale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MaxStale {
    /// `max-stale` without a value: any staleness.
    Any,
    /// `max-stale=N`.
    Upto(Duration),
}

/// What a request asks of the cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RequestDirectives {
    pub max_age: Option<Duration>,
    pub max_stale: Option<MaxStale>,
    pub min_fresh: Option<Duration>,
    pub no_cache: bool,
    pub no_store: bool,
    pub only_if_cached: bool,
    pub stale_if_error: Option<Duration>,
}

impl RequestDirectives {
    pub(crate) fn parse(headers: &HeaderMap) -> Self {
        let mut d = RequestDirectives::default();
        let mut has_cache_control = false;
        for (name, value) in directives(headers) {
            has_cache_control = true;
            let value = value.as_deref();
            match name.as_str() {
                "max-age" => restrict(&mut d.max_age, seconds(value).or(Some(Duration::ZERO))),
                "max-stale" => {
                    d.max_stale = Some(match value {
                        None => MaxStale::Any,
                        Some(_) => MaxStale::Upto(seconds(value).unwrap_or_default()),
                    })
                }
                "min-fresh" => d.min_fresh = d.min_fresh.max(seconds(value)),
                "no-cache" => d.no_cache = true,
                "no-store" => d.no_store = true,
                "only-if-cached" => d.only_if_cached = true,
                "stale-if-error" => restrict(&mut d.stale_if_error, seconds(value)),
                _ => {}
            }
        }
        // `Pragma: no-cache` counts only without a Cache-Control field (RFC 9111 §5.4).
        if !has_cache_control
            && headers
                .get_all(PRAGMA)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(split_list)
                .any(|p| p.eq_ignore_ascii_case("no-cache"))
        {
            d.no_cache = true;
        }
        d
    }

    /// Whether the request demands a response fresher than a stale one (so no
    /// stale-while-revalidate for it).
    pub(crate) fn wants_fresh(&self) -> bool {
        self.no_cache || self.max_age.is_some() || self.min_fresh.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::header_map as headers;

    #[test]
    fn response_directives_across_several_fields() {
        let d = ResponseDirectives::parse(&headers(&[
            ("cache-control", "Public, MAX-AGE=60"),
            (
                "cache-control",
                "stale-while-revalidate=30, stale-if-error=\"600\"",
            ),
            ("cache-control", "s-maxage=120, proxy-revalidate"),
        ]));
        assert!(d.public && d.proxy_revalidate);
        assert_eq!(d.max_age, Some(Duration::from_secs(60)));
        assert_eq!(d.s_maxage, Some(Duration::from_secs(120)));
        assert_eq!(d.stale_while_revalidate, Some(Duration::from_secs(30)));
        assert_eq!(d.stale_if_error, Some(Duration::from_secs(600)));
    }

    #[test]
    fn repeated_and_conflicting_deltas_read_as_the_most_restrictive() {
        let d = ResponseDirectives::parse(&headers(&[
            ("cache-control", "max-age=600, MAX-AGE=60"),
            (
                "cache-control",
                "s-maxage=5, s-maxage=50, stale-if-error=9, stale-if-error=x",
            ),
        ]));
        assert_eq!(d.max_age, Some(Duration::from_secs(60)));
        assert_eq!(d.s_maxage, Some(Duration::from_secs(5)));
        assert_eq!(d.stale_if_error, Some(Duration::from_secs(9)));
        let d =
            ResponseDirectives::parse(&headers(&[("cache-control", "max-age=60, max-age=soon")]));
        assert_eq!(
            d.max_age,
            Some(Duration::ZERO),
            "a malformed one means stale"
        );
        let d = RequestDirectives::parse(&headers(&[(
            "cache-control",
            "max-age=5, max-age=50, min-fresh=1, min-fresh=10",
        )]));
        assert_eq!(d.max_age, Some(Duration::from_secs(5)));
        assert_eq!(d.min_fresh, Some(Duration::from_secs(10)));
    }

    #[test]
    fn a_malformed_max_age_means_stale_and_huge_ones_are_capped() {
        let d = ResponseDirectives::parse(&headers(&[("cache-control", "max-age=soon")]));
        assert_eq!(d.max_age, Some(Duration::ZERO));
        let d = ResponseDirectives::parse(&headers(&[(
            "cache-control",
            "max-age=99999999999999999999999",
        )]));
        assert_eq!(d.max_age, Some(Duration::from_secs(MAX_DELTA_SECONDS)));
    }

    #[test]
    fn qualified_no_cache_keeps_its_quoted_commas_together() {
        let d = ResponseDirectives::parse(&headers(&[(
            "cache-control",
            "no-cache=\"set-cookie, x-a\", max-age=5",
        )]));
        assert!(d.no_cache);
        assert_eq!(d.max_age, Some(Duration::from_secs(5)));
    }

    #[test]
    fn request_directives() {
        let d = RequestDirectives::parse(&headers(&[(
            "cache-control",
            "max-stale, min-fresh=10, only-if-cached",
        )]));
        assert_eq!(d.max_stale, Some(MaxStale::Any));
        assert_eq!(d.min_fresh, Some(Duration::from_secs(10)));
        assert!(d.only_if_cached && d.wants_fresh());
        let d = RequestDirectives::parse(&headers(&[("cache-control", "max-stale=5")]));
        assert_eq!(d.max_stale, Some(MaxStale::Upto(Duration::from_secs(5))));
    }

    #[test]
    fn pragma_no_cache_counts_only_without_cache_control() {
        assert!(RequestDirectives::parse(&headers(&[("pragma", "no-cache")])).no_cache);
        assert!(
            !RequestDirectives::parse(&headers(&[
                ("pragma", "no-cache"),
                ("cache-control", "max-stale")
            ]))
            .no_cache
        );
    }
}
