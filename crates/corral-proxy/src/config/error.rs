//! Why a configuration is refused ([`ConfigError`]), the limits it is refused for, and
//! what in one that loads deserves a word ([`Warning`]).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::allow::AllowError;

/// The shortest admin token accepted: 16 bytes.
pub const MIN_ADMIN_TOKEN: usize = 16;

/// The shortest `peer-secret` accepted, in bytes: a peer holding it is trusted as a
/// proxy in front (its forwarding fields believed), and refusals are not rate-limited.
pub const MIN_PEER_SECRET: usize = 16;

/// The largest `max-connections` and `max-upstream-connections` accepted: 2^24 (a
/// process's descriptors run out long before).
pub const MAX_CONNECTIONS: usize = 1 << 24;

/// The longest `idle-timeout`, `send-timeout` and `shutdown-grace` accepted: a day.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// The smallest `max-header-bytes` accepted: 8KiB.
pub const MIN_HEADER_BYTES: u64 = 8 << 10;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{}: {source}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// Where and why.
        source: Box<toml::de::Error>,
    },
    /// An option's value does not parse, or an option is unknown; the message names
    /// the option and where it was given.
    #[error("{0}")]
    Value(Box<figment::Error>),
    /// An option was given under both its old and its new name in one place.
    #[error(
        "both `{old}` and `{new}` are set in {place}: `{old}` is the old name of `{new}`; keep `{new}`"
    )]
    BothNames {
        /// The old name.
        old: &'static str,
        /// The new name.
        new: &'static str,
        /// The file, the environment or the command line.
        place: String,
    },
    /// `upstream` is not an origin (`http://host:port` or `https://host`).
    #[error("`upstream = \"{upstream}\"`: {why}")]
    Upstream {
        /// The value given.
        upstream: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A rule of `allow` does not parse.
    #[error(transparent)]
    Allow(#[from] AllowError),
    /// A rule of `trusted-proxies` is not an address or a CIDR.
    #[error("trusted-proxies: `{rule}` is not an address or a CIDR")]
    TrustedProxy {
        /// The rule.
        rule: String,
    },
    /// A name of `targeted-cache-control` is not a field name.
    #[error("targeted-cache-control: `{name}` is not a field name")]
    TargetedField {
        /// The name.
        name: String,
    },
    /// `via` is not one token.
    #[error(transparent)]
    Via(#[from] crate::forwarded::InvalidPseudonym),
    /// A forward proxy that fetches anything for anyone, not asked for by `open-proxy`.
    #[error(
        "refusing to run an open proxy: a forward proxy listening on {listen} (not loopback) needs an \
         `allow` list (hosts, globs or CIDRs) that does not allow every host; or listen on \
         127.0.0.1; or set `open-proxy = true` if fetching anything for anyone is the intent"
    )]
    OpenProxy {
        /// Where it would listen.
        listen: SocketAddr,
    },
    /// `peer-secret` is shorter than [`MIN_PEER_SECRET`].
    #[error(
        "`peer-secret` must be at least {MIN_PEER_SECRET} bytes (e.g. `openssl rand -hex 32`): whoever holds it is trusted as a proxy in front"
    )]
    ShortPeerSecret,
    /// `admin-token` is shorter than [`MIN_ADMIN_TOKEN`].
    #[error("`admin-token` must be at least {MIN_ADMIN_TOKEN} bytes (e.g. `openssl rand -hex 16`)")]
    ShortAdminToken,
    /// The admin API is off loopback without an `admin-token`.
    #[error("the admin API on {admin_listen} (not loopback) needs an `admin-token`")]
    AdminNeedsToken {
        /// Where it would listen.
        admin_listen: SocketAddr,
    },
    /// `redis-prefix` is empty with a Redis tier.
    #[error("`redis-prefix` must not be empty")]
    EmptyRedisPrefix,
    /// An option that must be greater than zero is zero.
    #[error("`{option}` must be greater than zero")]
    Zero {
        /// The option.
        option: &'static str,
    },
    /// `peers` without a `peer-secret`.
    #[error(
        "`peers` need a `peer-secret` (or CORRAL_PEER_SECRET): peer requests without it are refused"
    )]
    PeersNeedSecret,
    /// A pool member listening on every address cannot tell its own URL.
    #[error("listening on {listen}, the pool cannot tell its own URL: set `peer-self`")]
    PeerSelfUnknown {
        /// Where it listens.
        listen: SocketAddr,
    },
    /// `peer-timeout` is not longer than `fetch-timeout`.
    #[error(
        "`peer-timeout` ({peer_timeout:?}) must be longer than `fetch-timeout` ({fetch_timeout:?}): \
         an owner waiting on a slow origin would look down to its peers"
    )]
    PeerTimeoutTooShort {
        /// `peer-timeout`.
        peer_timeout: Duration,
        /// `fetch-timeout`.
        fetch_timeout: Duration,
    },
    /// An option is over its ceiling ([`MAX_CONNECTIONS`]).
    #[error("`{option}` must be at most {max}")]
    TooMany {
        /// The option.
        option: &'static str,
        /// Its ceiling.
        max: usize,
    },
    /// A duration is over its ceiling ([`MAX_WAIT`]).
    #[error("`{option}` must be at most {}", humantime::format_duration(*max))]
    TooLong {
        /// The option.
        option: &'static str,
        /// Its ceiling.
        max: Duration,
    },
    /// `max-header-bytes` is below [`MIN_HEADER_BYTES`].
    #[error("`max-header-bytes` must be at least 8KiB")]
    SmallMaxHeaderBytes,
    /// A TLS option that needs another that is not set (`tls-cert` needs `tls-key`,
    /// `tls-listen` and `tls-certificates` need both).
    #[error("`{option}` needs `{needs}`")]
    TlsIncomplete {
        /// The option set.
        option: &'static str,
        /// The option it needs.
        needs: &'static str,
    },
    /// `tls-listen` is `listen`.
    #[error("`tls-listen` ({addr}) must differ from `listen`: one address is plain or TLS")]
    TlsListenIsListen {
        /// The address.
        addr: SocketAddr,
    },
}

/// Something in a configuration that loads but deserves a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// An option given under its old name (see [`RENAMED`](crate::config::RENAMED)).
    Renamed {
        /// The old name.
        old: &'static str,
        /// The new name.
        new: &'static str,
        /// The file, the environment or the command line.
        place: String,
    },
    /// A `CORRAL_` environment variable that names no option (ignored).
    UnknownVariable {
        /// The variable.
        name: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::Renamed { old, new, place } => {
                write!(f, "`{old}` (in {place}) is deprecated: it is now `{new}`")
            }
            Warning::UnknownVariable { name } => {
                write!(f, "{name} names no option; ignored")
            }
        }
    }
}
