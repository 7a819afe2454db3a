//! What can go wrong keeping a URL fresh.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

/// A shared error source: every caller waiting on one fetch gets the same error.
pub type SharedError = Arc<dyn std::error::Error + Send + Sync>;

/// An error of a [`RefreshCache`](super::RefreshCache): a failed fetch (every variant
/// that names a URL and is not about registering), a refused or unknown URL, or an
/// invalid option. Cloneable: all callers waiting on one fetch get the same error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// `get`, `refresh` or `unregister` of a URL that was never registered (or was
    /// unregistered since).
    #[error("{url} is not registered with this refresh cache (call register first)")]
    NotRegistered {
        /// The URL asked for.
        url: String,
    },
    /// The URL is not one the cache can fetch.
    #[error("{url:?} is not a valid http:// or https:// URL: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The allow-list refuses the URL (at `register`, or as a redirect's target).
    #[error("{url} is refused by the refresh cache's allow-list{}", redirect_note(.redirected_from))]
    Refused {
        /// The refused URL.
        url: String,
        /// The registered URL whose response redirected to it, if any.
        redirected_from: Option<String>,
    },
    /// Invalid options (intervals, limits, allow-list patterns).
    #[error("invalid refresh option: {0}")]
    InvalidOption(String),
    /// The request could not be sent or its response not read.
    #[error("fetching {url} failed: {source}")]
    Transport {
        /// The URL fetched.
        url: String,
        /// The client's error.
        #[source]
        source: SharedError,
    },
    /// The origin answered with a status other than 2xx (or 304 to a conditional
    /// request).
    #[error("{url} answered {status}")]
    Status {
        /// The URL fetched.
        url: String,
        /// Its status.
        status: StatusCode,
    },
    /// The response's body is larger than the cache's body limit.
    #[error("{url} sent a body larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The URL fetched.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// The origin did not answer (headers and body) in time.
    #[error("{url} did not answer within {after:?}")]
    Timeout {
        /// The URL fetched.
        url: String,
        /// The time allowed.
        after: Duration,
    },
    /// A redirect without a usable `Location`, or more redirects than allowed.
    #[error("{url} redirected badly: {reason}")]
    Redirect {
        /// The URL whose response redirected.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The transformer returned an error.
    #[error("transforming {url}'s response failed: {source}")]
    Transform {
        /// The URL fetched.
        url: String,
        /// The transformer's error.
        #[source]
        source: SharedError,
    },
    /// The transformer panicked.
    #[error("transforming {url}'s response panicked: {message}")]
    TransformPanicked {
        /// The URL fetched.
        url: String,
        /// The panic's message, when it was a string.
        message: Arc<str>,
    },
    /// The cache was shut down.
    #[error("the refresh cache is shut down")]
    ShutDown,
}

fn redirect_note(from: &Option<String>) -> String {
    from.as_ref()
        .map(|from| format!(" (redirected from {from})"))
        .unwrap_or_default()
}

impl RefreshError {
    /// Whether this is a failed fetch (as opposed to a refused, unknown or invalid
    /// request, or a shut-down cache).
    pub fn is_fetch_failure(&self) -> bool {
        !matches!(
            self,
            RefreshError::NotRegistered { .. }
                | RefreshError::InvalidUrl { .. }
                | RefreshError::InvalidOption(_)
                | RefreshError::ShutDown
        )
    }
}
