//! Named outcomes: why a response is not stored ([`NotStored`], pingora's
//! `NoCacheReason`), and the detail a `Cache-Status` entry gives ([`Detail`]), each
//! with the words it is reported in.

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotStored {
    /// Only responses to GET are stored.
    Method,
    /// Partial content (a `Range` request, a 206).
    Partial,
    /// `Vary: *` never matches another request.
    VaryAny,
    /// A shared cache never replays `Set-Cookie`.
    SetsCookie,
    /// The fixed policy stores only the statuses it lists.
    StatusNotListed,
    /// `no-store` (from the response or the request).
    NoStore,
    /// `private`, in a shared cache.
    Private,
    /// The request carries `Authorization` and the response does not say it may be
    /// shared (`public`, `s-maxage`, `must-revalidate`).
    Authorization,
    /// The fixed policy passes requests with `Cookie` or `Authorization` alone.
    Credentials,
    /// RFC 9111 gives it no way to be stored (a status not cacheable by default,
    /// without explicit freshness).
    NotStorable,
    /// Neither fresh nor with a validator to revalidate it by.
    NotFresh,
    /// A server error (not stored; its waiters get a short response of its status).
    ServerError,
    /// The body is larger than `max_body_bytes`.
    TooLarge,
    /// The body is larger than `max_body_bytes`, and the disk tier could not take it
    /// as it arrives (off, as many streams as it takes running, no room for it beside
    /// them, or larger than its `max_entry_bytes`): no hit-for-miss is kept, so a
    /// later request tries again.
    DiskBusy,
}

impl NotStored {
    /// How `Cache-Status` and the logs say it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            NotStored::Method => "only GET responses are stored",
            NotStored::Partial => "partial content is not stored",
            NotStored::VaryAny => "Vary: * is never served from a cache",
            NotStored::SetsCookie => "a shared cache never replays Set-Cookie",
            NotStored::StatusNotListed => "status not listed for storing",
            NotStored::NoStore => "no-store",
            NotStored::Private => "private response in a shared cache",
            NotStored::Authorization => {
                "request carries Authorization and the response is not public"
            }
            NotStored::Credentials => "request carries Cookie or Authorization",
            NotStored::NotStorable => "not storable under RFC 9111",
            NotStored::NotFresh => "neither fresh nor revalidatable",
            NotStored::ServerError => "origin server error",
            NotStored::TooLarge => "body larger than max_body_bytes",
            NotStored::DiskBusy => "body larger than max_body_bytes, disk tier busy",
        }
    }
}

/// The `detail` of a `Cache-Status` entry: why the cache answered as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detail {
    /// Served stale while one revalidation runs.
    StaleWhileRevalidate,
    /// Served stale because the origin answered with an error (stale-if-error).
    StaleIfError,
    /// Served stale because the origin could not be reached or did not answer in
    /// time (RFC 9111 §4.2.4).
    OriginUnreachable,
    /// The key is marked hit-for-miss: its last response could not be shared.
    HitForMiss,
    /// A request with `Authorization` never waits on another request's fetch.
    Authorization,
    /// The fetch this request waited on could not be shared with it.
    NotShared,
    /// This request's own fetch, not stored, and why.
    NotStored(NotStored),
    /// `only-if-cached` and nothing suitable stored.
    OnlyIfCached,
    /// A GET or HEAD with a body, or asking to upgrade: passed through.
    PassedThrough,
}

impl Detail {
    /// How `Cache-Status` says it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Detail::StaleWhileRevalidate => "stale-while-revalidate",
            Detail::StaleIfError => "stale-if-error",
            Detail::OriginUnreachable => "origin unreachable",
            Detail::HitForMiss => "hit-for-miss",
            Detail::Authorization => "authorization",
            Detail::NotShared => "not shareable",
            Detail::NotStored(reason) => reason.as_str(),
            Detail::OnlyIfCached => "only-if-cached",
            Detail::PassedThrough => "request has a body or asks to upgrade",
        }
    }
}
