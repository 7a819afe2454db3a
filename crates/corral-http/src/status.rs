//! How a response was answered: the `X-Cache` header and the standard `Cache-Status`
//! header of RFC 9211.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::reason::Detail;

/// The `X-Cache` header.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
/// The `Cache-Status` header (RFC 9211).
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// How the cache answered a request, as `X-Cache` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// A fresh stored response.
    Hit,
    /// From the origin (stored, if it could be).
    Miss,
    /// A stale stored response (while it is revalidated, or because the origin failed).
    Stale,
    /// A stored response the origin confirmed with `304 Not Modified`.
    Revalidated,
    /// The cache was not used (method, request directives, uncacheable response).
    Bypass,
}

impl CacheStatus {
    /// The `X-Cache` value: `HIT`, `MISS`, `STALE`, `REVALIDATED` or `BYPASS`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Stale => "STALE",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::Bypass => "BYPASS",
        }
    }

    /// Lowercase label for metrics.
    pub(crate) fn label(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Stale => "stale",
            CacheStatus::Revalidated => "revalidated",
            CacheStatus::Bypass => "bypass",
        }
    }

    /// How `response` was answered by an [`HttpCache`](crate::HttpCache): from its
    /// `X-Cache` header, or (with the cache-status headers off) from the extension
    /// the cache puts on the response instead; `None` for a response that did not
    /// come through one.
    pub fn of<B>(response: &http::Response<B>) -> Option<CacheStatus> {
        if let Some(status) = response.extensions().get::<CacheStatus>() {
            return Some(*status);
        }
        let value = response.headers().get(X_CACHE)?;
        CacheStatus::ALL
            .into_iter()
            .find(|status| value.as_bytes() == status.as_str().as_bytes())
    }

    pub(crate) const ALL: [CacheStatus; 5] = [
        CacheStatus::Hit,
        CacheStatus::Miss,
        CacheStatus::Stale,
        CacheStatus::Revalidated,
        CacheStatus::Bypass,
    ];
}

/// Why a request went forward, for `Cache-Status`'s `fwd` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forward {
    /// Nothing usable was stored.
    Miss,
    /// A stored response had to be revalidated.
    Stale,
    /// The request's method is not cached.
    Method,
    /// The request's own directives (or `Range`, or credentials) kept the cache out.
    Request,
    /// The cache's configuration or an uncacheable response kept the cache out.
    Bypass,
}

/// Everything the cache-status headers say about one response.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub status: CacheStatus,
    /// `hit` when the response came from storage.
    pub forward: Option<Forward>,
    /// The origin's status, when the request went forward.
    pub forward_status: Option<StatusCode>,
    /// Seconds of freshness left (negative once stale), for stored responses.
    pub ttl: Option<i64>,
    /// Whether the response was stored.
    pub stored: bool,
    /// Whether this request waited on another request's fetch.
    pub collapsed: bool,
    /// Why the cache answered so.
    pub detail: Option<Detail>,
}

impl Report {
    pub(crate) fn new(status: CacheStatus) -> Self {
        Report {
            status,
            forward: None,
            forward_status: None,
            ttl: None,
            stored: false,
            collapsed: false,
            detail: None,
        }
    }

    pub(crate) fn forward(mut self, forward: Forward) -> Self {
        self.forward = Some(forward);
        self
    }

    pub(crate) fn detail(mut self, detail: Detail) -> Self {
        self.detail = Some(detail);
        self
    }

    /// The `Cache-Status` value for a cache named `name`.
    pub(crate) fn cache_status(&self, name: &str) -> String {
        let mut out = String::with_capacity(name.len() + 64);
        out.push_str(name);
        match self.forward {
            None => out.push_str("; hit"),
            Some(fwd) => {
                out.push_str("; fwd=");
                out.push_str(match fwd {
                    Forward::Miss => "miss",
                    Forward::Stale => "stale",
                    Forward::Method => "method",
                    Forward::Request => "request",
                    Forward::Bypass => "bypass",
                });
            }
        }
        let mut digits = itoa::Buffer::new();
        if let Some(status) = self.forward_status {
            out.push_str("; fwd-status=");
            out.push_str(digits.format(status.as_u16()));
        }
        if let Some(ttl) = self.ttl {
            out.push_str("; ttl=");
            out.push_str(digits.format(ttl));
        }
        if self.stored {
            out.push_str("; stored");
        }
        if self.collapsed {
            out.push_str("; collapsed");
        }
        if let Some(detail) = self.detail {
            out.push_str("; detail=\"");
            out.push_str(detail.as_str());
            out.push('"');
        }
        out
    }

    /// The `Cache-Status` entry as a header value (a name that is not a valid header
    /// value is left out).
    pub(crate) fn cache_status_value(&self, name: &str) -> HeaderValue {
        HeaderValue::from_maybe_shared(Bytes::from(self.cache_status(name)))
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Adds `X-Cache` and this cache's `Cache-Status` entry to `headers`.
    pub(crate) fn write(&self, name: &str, headers: &mut HeaderMap) {
        write(headers, self.status, self.cache_status_value(name));
    }

    /// Whether this is a plain hit (whose headers a stored response memoizes).
    pub(crate) fn is_plain_hit(&self) -> bool {
        self.status == CacheStatus::Hit && self.forward.is_none() && self.detail.is_none()
    }
}

/// Sets `X-Cache` and adds this cache's `Cache-Status` entry after any entries of
/// caches further upstream (RFC 9211 §2: each cache appends its own).
pub(crate) fn write(headers: &mut HeaderMap, status: CacheStatus, cache_status: HeaderValue) {
    headers.insert(X_CACHE, HeaderValue::from_static(status.as_str()));
    if !cache_status.is_empty() {
        headers.append(CACHE_STATUS, cache_status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_status_follows_rfc_9211() {
        let hit = Report {
            ttl: Some(42),
            ..Report::new(CacheStatus::Hit)
        };
        assert_eq!(hit.cache_status("corral"), "corral; hit; ttl=42");
        let miss = Report {
            forward_status: Some(StatusCode::OK),
            stored: true,
            collapsed: true,
            ..Report::new(CacheStatus::Miss).forward(Forward::Miss)
        };
        assert_eq!(
            miss.cache_status("corral"),
            "corral; fwd=miss; fwd-status=200; stored; collapsed"
        );
        let stale = Report {
            ttl: Some(-5),
            ..Report::new(CacheStatus::Stale).detail(Detail::StaleWhileRevalidate)
        };
        assert_eq!(
            stale.cache_status("edge"),
            "edge; hit; ttl=-5; detail=\"stale-while-revalidate\""
        );
    }
}
