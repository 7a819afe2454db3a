//! What can go wrong building a pool, and in its client.

/// A pool's configuration errors, and the errors of its client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A peer's base URL is not a plain `http(s)://host[:port][/path]`.
    #[error("invalid peer {peer:?}: {reason}")]
    InvalidPeer {
        /// The URL given.
        peer: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No shared secret (or an empty one, or one that is not visible ASCII).
    #[error(
        "a pool needs a shared secret of visible ASCII characters (peers refuse requests without it)"
    )]
    InvalidSecret,
    /// Another option is invalid.
    #[error("invalid pool option: {0}")]
    InvalidOption(String),
    /// The hot cache's options are invalid.
    #[error("invalid hot cache: {0}")]
    HotCache(#[from] corral::ConfigError),
    /// A `PoolClient` request without an absolute `http(s)` URL.
    #[error("the pool needs absolute http:// or https:// URLs, not {0:?}")]
    NotAbsolute(String),
    /// A `PoolClient` request with no peer to send it to.
    #[error("no peer in the pool could serve {url}")]
    NoPeer {
        /// The request's URL.
        url: String,
    },
}
