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
                // A malformed max-age makes the response stale (RFC 9111 §4.2.1).
                "max-age" => d.max_age = Some(seconds(value).unwrap_or_default()),
                "s-maxage" => d.s_maxage = Some(seconds(value).unwrap_or_default()),
                // The qualified forms (`no-cache="Set-Cookie"`) are treated as unqualified:
                // stricter, and always correct.
                "no-cache" => d.no_cache = true,
                "no-store" => d.no_store = true,
                "private" => d.private = true,
                "public" => d.public = true,
                "must-revalidate" => d.must_revalidate = true,
                "proxy-revalidate" => d.proxy_revalidate = true,
                "stale-while-revalidate" => d.stale_while_revalidate = seconds(value),
                "stale-if-error" => d.stale_if_error = seconds(value),
                _ => {}
            }
        }
        d
    }
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
                "max-age" => d.max_age = seconds(value).or(Some(Duration::ZERO)),
                "max-stale" => {
                    d.max_stale = Some(match value {
                        None => MaxStale::Any,
                        Some(_) => MaxStale::Upto(seconds(value).unwrap_or_default()),
                    })
                }
                "min-fresh" => d.min_fresh = seconds(value),
                "no-cache" => d.no_cache = true,
                "no-store" => d.no_store = true,
                "only-if-cached" => d.only_if_cached = true,
                "stale-if-error" => d.stale_if_error = seconds(value),
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

/// A response's `Cache-Control` as `http-cache-semantics` should read it: without
/// the `drop` directive, names lowercased (they are case-insensitive, RFC 9111 §5.2;
/// the crate matches them as written), and every delta-seconds value capped at 2^31
/// (RFC 9111 §1.2.2; the crate ignores a value it cannot parse as a `u64`, which would
/// make a response fresh "forever" unstorable). Each field line stays a line of its
/// own, so a quote left open in one cannot swallow the next, and a value is rewritten
/// only when it is digits (bare or quoted), as the cache's own parser reads it. Other
/// fields are left as they are.
pub(crate) fn normalized(headers: &HeaderMap, drop: Option<&str>) -> HeaderMap {
    let mut out = headers.clone();
    out.remove(CACHE_CONTROL);
    for line in headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        let kept: Vec<String> = split_list(line)
            .filter(|d| {
                let name = d.split('=').next().unwrap_or("").trim();
                drop.is_none_or(|drop| !name.eq_ignore_ascii_case(drop))
            })
            .map(normalized_directive)
            .collect();
        if let Ok(value) = kept.join(", ").parse()
            && !kept.is_empty()
        {
            out.append(CACHE_CONTROL, value);
        }
    }
    out
}

/// One directive as [`normalized`] writes it.
fn normalized_directive(directive: &str) -> String {
    let (name, value) = match directive.split_once('=') {
        Some((name, value)) => (name.trim(), Some(value.trim())),
        None => (directive.trim(), None),
    };
    // A name that is not a token (a stray quote in it) is kept as it is, so that the
    // quotes around it still pair the same way.
    let name = if is_token(name) {
        name.to_ascii_lowercase()
    } else {
        name.to_owned()
    };
    let Some(value) = value else {
        return name;
    };
    // Quotes trimmed as `directives` trims them. Dropping them keeps the quotes of the
    // line paired as they were, unless the name holds a quote of its own (an
    // unbalanced quote in the value alone ends the line: it swallows the rest).
    let delta = seconds(Some(value.trim_matches('"'))).filter(|_| !name.contains('"'));
    match delta {
        Some(delta) => format!("{name}={}", delta.as_secs()),
        None => format!("{name}={value}"),
    }
}

/// Whether `text` is an RFC 9110 token.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

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

    #[test]
    fn normalizing_removes_one_directive_and_caps_the_deltas() {
        let h = normalized(
            &headers(&[("cache-control", "max-age=60, proxy-revalidate, public")]),
            Some("proxy-revalidate"),
        );
        assert_eq!(h.get(CACHE_CONTROL).unwrap(), "max-age=60, public");
        let h = normalized(
            &headers(&[
                ("cache-control", "max-age=99999999999999999999999"),
                (
                    "cache-control",
                    "s-maxage=\"99999999999999999999999\", private=\"x, y\"",
                ),
            ]),
            None,
        );
        let lines: Vec<_> = h.get_all(CACHE_CONTROL).iter().collect();
        assert_eq!(
            lines,
            [
                "max-age=2147483648",
                "s-maxage=2147483648, private=\"x, y\""
            ]
        );
        let h = normalized(
            &headers(&[
                ("cache-control", "Max-Age=60, a\"=5\""),
                ("cache-control", "x=\"open"),
                ("cache-control", "S-MAXAGE=\"7\""),
            ]),
            None,
        );
        let lines: Vec<_> = h.get_all(CACHE_CONTROL).iter().collect();
        assert_eq!(lines, ["max-age=60, a\"=5\"", "x=\"open", "s-maxage=7"]);
    }
}
