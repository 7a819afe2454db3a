//! The proxy's configuration: every option is one field of [`Config`], with the same
//! name in the TOML file (`max-bytes`), in the environment (`CORRAL_MAX_BYTES`) and on
//! the command line (`--max-bytes`), and its default (taken from the libraries'
//! `DEFAULT_*` constants where they have one) in the field's `#[default]` attribute.
//! Durations are humane (`30s`, `5m`) and sizes carry units (`256MiB`).
//!
//! Layers, lowest first: the defaults, a TOML file, `CORRAL_*` environment variables,
//! command-line flags ([`Loader`]). A few options were renamed to agree with the
//! libraries; their old names ([`RENAMED`]) still work, with a [`Warning`].

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::{ArgAction, Args};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smart_default::SmartDefault;

use crate::allow::{AllowError, AllowList};

/// Options renamed to agree with the libraries: `(old, new)`. The old name still
/// works in the file, the environment and as a flag, with a [`Warning`]; giving both
/// in the same place is [`ConfigError::BothNames`].
pub const RENAMED: [(&str, &str); 4] = [
    ("memory", "max-bytes"),
    ("max-body", "max-body-bytes"),
    ("response-timeout", "fetch-timeout"),
    ("cache-status-header", "cache-status-headers"),
];

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
    /// `max-header-bytes` is below [`MIN_HEADER_BYTES`].
    #[error("`max-header-bytes` must be at least 8KiB")]
    SmallMaxHeaderBytes,
}

/// Something in a configuration that loads but deserves a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// An option given under its old name (see [`RENAMED`]).
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

/// What `check-config` prints for a secret that is set.
const HIDDEN: &str = "(set, not shown)";

/// The shortest admin token accepted: 16 bytes.
pub const MIN_ADMIN_TOKEN: usize = 16;

/// The smallest `max-header-bytes` accepted: 8KiB.
pub const MIN_HEADER_BYTES: u64 = 8 << 10;

/// How a reverse proxy sets the `Host` of upstream requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum HostMode {
    /// The upstream's own host (as nginx does by default).
    Upstream,
    /// The client's `Host`, for origins serving several names.
    Keep,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Why a text is not a [`ByteSize`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ByteSizeError {
    /// No number in front.
    #[error("`{text}` is not a size (e.g. 256MiB)")]
    NotASize {
        /// The text.
        text: String,
    },
    /// A unit that is not one of B, KiB, MiB, GiB, KB, MB, GB.
    #[error("unknown size unit `{unit}` in `{text}` (use B, KiB, MiB, GiB, KB, MB, GB)")]
    UnknownUnit {
        /// The unit.
        unit: String,
        /// The text.
        text: String,
    },
    /// More than `u64::MAX` bytes.
    #[error("`{text}` is too large")]
    TooLarge {
        /// The text.
        text: String,
    },
}

/// A number of bytes, written with a unit: `512`, `64KiB`, `256MiB`, `1GiB` (also `KB`,
/// `MB`, `GB` as powers of 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `256MiB` and friends.
    ///
    /// ```
    /// use corral_proxy::config::ByteSize;
    /// assert_eq!(ByteSize::parse("64KiB"), Ok(ByteSize(64 << 10)));
    /// ```
    pub fn parse(text: &str) -> Result<ByteSize, ByteSizeError> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits.parse().map_err(|_| ByteSizeError::NotASize {
            text: text.to_owned(),
        })?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => {
                return Err(ByteSizeError::UnknownUnit {
                    unit: other.to_owned(),
                    text: text.to_owned(),
                });
            }
        };
        n.checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| ByteSizeError::TooLarge {
                text: text.to_owned(),
            })
    }
}

impl FromStr for ByteSize {
    type Err = ByteSizeError;

    fn from_str(text: &str) -> Result<ByteSize, ByteSizeError> {
        ByteSize::parse(text)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if self.0 >= factor && self.0.is_multiple_of(factor) {
                return write!(f, "{}{unit}", self.0 / factor);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// Everything the proxy can be told: each field is an option, named in kebab case in
/// the file, as a `--flag` and (upper case, `_` for `-`) as a `CORRAL_` environment
/// variable. Its default is its `#[default]` attribute, printed by `corral
/// check-config` and shown by `corral serve --help`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SmartDefault, Args)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// Where the proxy listens.
    #[arg(long)]
    #[default(SocketAddr::from(([127, 0, 0, 1], 8080)))]
    pub listen: SocketAddr,
    /// The origin of a reverse proxy (`http://host:port` or `https://host`). Unset: a
    /// forward proxy.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// A reverse proxy's `Host` to the upstream: the upstream's own, or the client's.
    #[arg(long, value_enum)]
    #[default(HostMode::Upstream)]
    pub host: HostMode,
    /// Memory for cached responses (the library's `max_bytes`; was `memory`).
    #[arg(long)]
    #[default(ByteSize(corral_http::DEFAULT_MAX_BYTES))]
    pub max_bytes: ByteSize,
    /// The largest body stored; larger ones stream through (was `max-body`).
    #[arg(long)]
    #[default(ByteSize(corral_http::DEFAULT_MAX_BODY_BYTES as u64))]
    pub max_body_bytes: ByteSize,
    /// A Redis tier shared with other proxies (`redis://`, `rediss://`,
    /// `redis+unix://`). Unset: memory only.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// The prefix of this proxy's keys in Redis.
    #[arg(long)]
    #[default("corral:".to_owned())]
    pub redis_prefix: String,
    /// How long connecting to an origin may take.
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    #[default(Duration::from_secs(5))]
    pub connect_timeout: Duration,
    /// How long an origin may take to answer, and a stored body to arrive (was
    /// `response-timeout`).
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    #[default(corral_http::DEFAULT_FETCH_TIMEOUT)]
    pub fetch_timeout: Duration,
    /// Requests in flight to origins at once, each until its response body is read
    /// or dropped; more wait (within `fetch-timeout`).
    #[arg(long)]
    #[default(1024)]
    pub max_upstream_connections: usize,
    /// Speak HTTP/2 without TLS (h2c, prior knowledge) to a plain-HTTP upstream; off:
    /// HTTP/1.1 (HTTPS origins negotiate HTTP/2 by ALPN).
    #[arg(long, action = ArgAction::Set, value_name = "BOOL")]
    pub upstream_http2: bool,
    /// A PEM file of root certificates trusted for `https://` origins besides the
    /// public (webpki) roots: a private CA. Unset: public roots only.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ca_file: Option<PathBuf>,
    /// Add `X-Cache` and `Cache-Status` to responses (was `cache-status-header`).
    #[arg(long, action = ArgAction::Set, value_name = "BOOL")]
    #[default(true)]
    pub cache_status_headers: bool,
    /// A forward proxy's allow-list: host names (`example.com`, optionally `:port`),
    /// globs (`*.example.com`) and CIDRs (`10.0.0.0/8`); repeat the flag for more. A
    /// name rule never reaches loopback, link-local or cloud-metadata addresses unless
    /// a CIDR rule allows them too. Empty: any host, which (like `*` or `0.0.0.0/0`)
    /// is refused unless the proxy listens on loopback only or `open-proxy` is set.
    #[arg(long)]
    pub allow: Vec<String>,
    /// Run a forward proxy that fetches from any host for any client that can reach
    /// it (an `allow` list that allows everything, on a non-loopback listener); off:
    /// such a configuration is refused.
    #[arg(long, action = ArgAction::Set, value_name = "BOOL")]
    pub open_proxy: bool,
    /// Clients whose forwarding fields (`X-Forwarded-For`, `X-Forwarded-Host`,
    /// `Forwarded`, `X-Original-URL`, ...) are believed and passed on: the load
    /// balancers in front of this proxy, as CIDRs or addresses (comma-separated as a
    /// flag). From other clients they are dropped (`X-Forwarded-For` restarts at the
    /// client's address). Empty: no client is trusted.
    #[arg(long, value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// This proxy's name in `Via`, by which it also recognises a request that looped
    /// back to it (answered `508 Loop Detected`): give each proxy (each peer of a
    /// pool) a name of its own. Unset: `corral-` and random hex, new for each process.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Serve the admin API (metrics, health, purge, stats).
    #[arg(long, action = ArgAction::Set, value_name = "BOOL")]
    #[default(true)]
    pub admin: bool,
    /// Where the admin API listens.
    #[arg(long)]
    #[default(SocketAddr::from(([127, 0, 0, 1], 9090)))]
    pub admin_listen: SocketAddr,
    /// The bearer token the admin API requires (required when it is not on loopback;
    /// at least 16 bytes).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// How log lines are written: human-readable text or one JSON object per line.
    #[arg(long, value_enum)]
    #[default(LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log one line per request (method, URL, status, cache status, duration, bytes).
    #[arg(long, action = ArgAction::Set, value_name = "BOOL")]
    #[default(true)]
    pub access_log: bool,
    /// How long in-flight requests may finish after SIGTERM/SIGINT.
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    #[default(Duration::from_secs(10))]
    pub shutdown_grace: Duration,
    /// The largest request head (request line and headers); larger gets a 431.
    #[arg(long)]
    #[default(ByteSize(64 << 10))]
    pub max_header_bytes: ByteSize,
    /// How long a client may take to send its request head.
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    #[default(Duration::from_secs(10))]
    pub header_read_timeout: Duration,
    /// Client connections at once; more wait to be accepted.
    #[arg(long)]
    #[default(10_000)]
    pub max_connections: usize,
    /// A pool of peers: the members' base URLs (comma-separated as a flag), this
    /// proxy's among them; each URL is fetched and stored by one of them. Empty: no
    /// peers (a pool can still be filled at runtime through the admin API when
    /// `peer-secret` is set).
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,
    /// This proxy's base URL as the peers list it. Unset: `http://<listen>`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_self: Option<String>,
    /// The secret peers share (sent with, and required of, every peer request); it
    /// turns the pool on. Best given as `CORRAL_PEER_SECRET`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_secret: Option<String>,
    /// How long a peer may take to answer before it counts as down; longer than
    /// `fetch-timeout`, so a slow origin does not make its owner look down.
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    #[default(corral_http::pool::DEFAULT_PEER_TIMEOUT)]
    pub peer_timeout: Duration,
    /// Memory for copies of responses fetched through other peers (the hot cache);
    /// `0B`: off.
    #[arg(long)]
    #[default(ByteSize(0))]
    pub peer_hot_cache: ByteSize,
    /// The longest a hot copy is kept.
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    #[default(Duration::from_secs(10))]
    pub peer_hot_ttl: Duration,
}

/// An upstream origin, split for rewriting requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// `host[:port]`.
    pub authority: http::uri::Authority,
}

/// A configuration as loaded, with what deserves a warning.
#[derive(Debug)]
pub struct Loaded {
    /// The effective configuration, checked.
    pub config: Config,
    /// Old names used, unknown `CORRAL_` variables: for the operator to see.
    pub warnings: Vec<Warning>,
}

/// Builds a [`Config`] from layers, each over the ones added before it and all over
/// the defaults: usually a file, then the environment, then the command line.
///
/// ```
/// use corral_proxy::Config;
///
/// let file: toml::Table = "max-bytes = \"1GiB\"\nmemory-typo = 1".parse().unwrap();
/// assert!(Config::loader().toml(file).load().is_err(), "unknown options are refused");
///
/// let loaded = Config::loader()
///     .toml("max-bytes = \"1GiB\"".parse().unwrap())
///     .env_vars([("CORRAL_MAX_BYTES", "2GiB")])
///     .load()
///     .unwrap();
/// assert_eq!(loaded.config.max_bytes.0, 2 << 30, "the environment is over the file");
/// ```
#[derive(Default)]
#[must_use = "a loader does nothing until `load` is called"]
pub struct Loader {
    layers: Vec<Layer>,
    warnings: Vec<Warning>,
    error: Option<ConfigError>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("warnings", &self.warnings)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// One source of options, for figment: its name and its options (new names only).
struct Layer {
    metadata: Metadata,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

impl Loader {
    /// A TOML file.
    pub fn file(self, path: &Path) -> Self {
        let table = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })
            .and_then(|text| {
                text.parse::<toml::Table>()
                    .map_err(|source| ConfigError::Toml {
                        path: path.to_owned(),
                        source: Box::new(source),
                    })
            });
        match table {
            Ok(table) => self.table(table, format!("`{}`", path.display())),
            Err(error) => self.fail(error),
        }
    }

    /// Options as TOML already parsed (as a file would give them).
    pub fn toml(self, table: toml::Table) -> Self {
        self.table(table, "the TOML given".to_owned())
    }

    fn table(self, table: toml::Table, source: String) -> Self {
        match Value::serialize(&table) {
            Ok(Value::Dict(_, dict)) => {
                let metadata =
                    Metadata::named(source.clone()).interpolater(|_, keys| keys.join("."));
                self.layer(source, metadata, dict)
            }
            Ok(_) => unreachable!("a TOML table serializes as a dictionary"),
            Err(error) => self.fail(ConfigError::Value(Box::new(error))),
        }
    }

    /// The process's `CORRAL_*` environment variables (see [`env_vars`](Self::env_vars)).
    pub fn env(self) -> Self {
        self.env_vars(std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        }))
    }

    /// `CORRAL_*` variables among `vars`: `CORRAL_MAX_BYTES` is `max-bytes`. A list
    /// is comma-separated (`CORRAL_ALLOW=a.example,10.0.0.0/8`) or a TOML array. A
    /// `CORRAL_` variable that names no option is ignored, with a
    /// [`Warning::UnknownVariable`]; other variables are ignored.
    pub fn env_vars<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let options = options();
        let mut dict = Dict::new();
        for (name, value) in vars {
            let (name, value) = (name.as_ref(), value.as_ref());
            let Some(key) = name.strip_prefix("CORRAL_") else {
                continue;
            };
            let key = key.to_ascii_lowercase().replace('_', "-");
            let old = RENAMED
                .iter()
                .find(|(old, _)| *old == key)
                .map(|(_, new)| *new);
            let Some(option) = options
                .iter()
                .find(|option| option.name == key || Some(option.name.as_str()) == old)
            else {
                self.warnings.push(Warning::UnknownVariable {
                    name: name.to_owned(),
                });
                continue;
            };
            let value = match option.list {
                true => list(value),
                false => Value::from(value.to_owned()),
            };
            dict.insert(key, value);
        }
        let metadata = Metadata::named("the environment").interpolater(|_, keys| {
            format!(
                "CORRAL_{}",
                keys.join("_").to_ascii_uppercase().replace('-', "_")
            )
        });
        self.layer("the environment".to_owned(), metadata, dict)
    }

    /// Options from command-line flags (new names only), and the warnings for the old
    /// names that were used.
    pub(crate) fn flags(mut self, dict: Dict, warnings: Vec<Warning>) -> Self {
        self.warnings.extend(warnings);
        let metadata = Metadata::named("the command line")
            .interpolater(|_, keys| format!("--{}", keys.join(".")));
        self.layer("the command line".to_owned(), metadata, dict)
    }

    /// Adds a layer, its old names replaced by new ones.
    fn layer(mut self, source: String, metadata: Metadata, mut dict: Dict) -> Self {
        for (old, new) in RENAMED {
            let Some(value) = dict.remove(old) else {
                continue;
            };
            if dict.contains_key(new) {
                return self.fail(ConfigError::BothNames {
                    old,
                    new,
                    place: source,
                });
            }
            self.warnings.push(Warning::Renamed {
                old,
                new,
                place: source.clone(),
            });
            dict.insert(new.to_owned(), value);
        }
        self.layers.push(Layer { metadata, dict });
        self
    }

    fn fail(mut self, error: ConfigError) -> Self {
        self.error.get_or_insert(error);
        self
    }

    /// The configuration, checked.
    pub fn load(self) -> Result<Loaded, ConfigError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let defaults = figment::providers::Serialized::defaults(Config::default());
        let figment = self
            .layers
            .into_iter()
            .fold(Figment::from(defaults), Figment::merge);
        let config: Config = figment
            .extract_lossy()
            .map_err(|error| ConfigError::Value(Box::new(error)))?;
        config.check()?;
        Ok(Loaded {
            config,
            warnings: self.warnings,
        })
    }
}

/// A list from the environment: a TOML array, or comma-separated.
fn list(text: &str) -> Value {
    let array = text
        .trim_start()
        .starts_with('[')
        .then(|| format!("list = {text}").parse::<toml::Table>().ok())
        .flatten()
        .and_then(|mut table| table.remove("list"))
        .and_then(|array| Value::serialize(array).ok());
    array.unwrap_or_else(|| {
        Value::from(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        )
    })
}

/// An option as the flags know it.
pub(crate) struct OptionName {
    /// Its name (`max-bytes`).
    pub(crate) name: String,
    /// Whether it takes a list.
    list: bool,
}

/// Every option, as the flags derived from [`Config`] name them.
pub(crate) fn options() -> Vec<OptionName> {
    Config::augment_args(clap::Command::new("corral"))
        .get_arguments()
        .filter_map(|arg| {
            Some(OptionName {
                name: arg.get_long()?.to_owned(),
                list: matches!(arg.get_action(), ArgAction::Append),
            })
        })
        .collect()
}

impl Config {
    /// Starts loading a configuration from layers; see [`Loader`].
    pub fn loader() -> Loader {
        Loader::default()
    }

    /// The defaults with `table` (as a file would give it) on top, checked; old names
    /// are logged as warnings.
    pub fn from_toml(table: toml::Table) -> Result<Config, ConfigError> {
        let loaded = Config::loader().toml(table).load()?;
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        Ok(loaded.config)
    }

    /// Whether the options make sense together; the proxy never starts otherwise.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.origin()?;
        let allow = AllowList::parse(&self.allow)?;
        if self.upstream.is_none()
            && allow.allows_everything()
            && !self.listen.ip().is_loopback()
            && !self.open_proxy
        {
            return Err(ConfigError::OpenProxy {
                listen: self.listen,
            });
        }
        self.trusted_networks()?;
        crate::forwarded::Forwarding::new(self.via.as_deref())?;
        if self
            .admin_token
            .as_deref()
            .is_some_and(|token| token.len() < MIN_ADMIN_TOKEN)
        {
            return Err(ConfigError::ShortAdminToken);
        }
        if self.admin
            && !self.admin_listen.ip().is_loopback()
            && self.admin_token.as_deref().is_none_or(str::is_empty)
        {
            return Err(ConfigError::AdminNeedsToken {
                admin_listen: self.admin_listen,
            });
        }
        if self.redis_url.is_some() && self.redis_prefix.is_empty() {
            return Err(ConfigError::EmptyRedisPrefix);
        }
        let zero = [
            ("max-bytes", self.max_bytes.0 == 0),
            ("max-body-bytes", self.max_body_bytes.0 == 0),
            ("connect-timeout", self.connect_timeout.is_zero()),
            ("fetch-timeout", self.fetch_timeout.is_zero()),
            (
                "max-upstream-connections",
                self.max_upstream_connections == 0,
            ),
            ("max-connections", self.max_connections == 0),
            ("header-read-timeout", self.header_read_timeout.is_zero()),
            ("peer-timeout", self.peer_timeout.is_zero()),
            ("peer-hot-ttl", self.peer_hot_ttl.is_zero()),
        ];
        if let Some((option, _)) = zero.into_iter().find(|(_, is_zero)| *is_zero) {
            return Err(ConfigError::Zero { option });
        }
        if !self.peers.is_empty() && self.peer_secret.as_deref().is_none_or(str::is_empty) {
            return Err(ConfigError::PeersNeedSecret);
        }
        if self.peer_secret.is_some()
            && self.peer_self.is_none()
            && self.listen.ip().is_unspecified()
        {
            return Err(ConfigError::PeerSelfUnknown {
                listen: self.listen,
            });
        }
        if self.peer_secret.is_some() && self.peer_timeout <= self.fetch_timeout {
            return Err(ConfigError::PeerTimeoutTooShort {
                peer_timeout: self.peer_timeout,
                fetch_timeout: self.fetch_timeout,
            });
        }
        if self.max_header_bytes.0 < MIN_HEADER_BYTES {
            return Err(ConfigError::SmallMaxHeaderBytes);
        }
        Ok(())
    }

    /// `trusted-proxies` as networks.
    pub fn trusted_networks(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|rule| {
                let rule = rule.trim();
                rule.parse::<ipnet::IpNet>()
                    .or_else(|_| rule.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| ConfigError::TrustedProxy {
                        rule: rule.to_owned(),
                    })
            })
            .collect()
    }

    /// The reverse proxy's origin, if this is one.
    pub fn origin(&self) -> Result<Option<Origin>, ConfigError> {
        let Some(upstream) = &self.upstream else {
            return Ok(None);
        };
        let bad = |why: &'static str| ConfigError::Upstream {
            upstream: upstream.clone(),
            why,
        };
        let uri: http::Uri = upstream.parse().map_err(|_| bad("not a URL"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| bad("needs http:// or https://"))?;
        if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
            return Err(bad("needs http:// or https://"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| bad("needs a host"))?;
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(bad(
                "a path or query is not supported; give scheme and host only",
            ));
        }
        Ok(Some(Origin { scheme, authority }))
    }

    /// The effective configuration, as TOML (what `corral check-config` prints).
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        if shown.peer_secret.is_some() {
            shown.peer_secret = Some(HIDDEN.to_owned());
        }
        if shown.admin_token.is_some() {
            shown.admin_token = Some(HIDDEN.to_owned());
        }
        toml::to_string_pretty(&shown)
            .unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(table(text))
    }

    #[test]
    fn the_defaults_are_a_loopback_forward_proxy() {
        let c = load("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.origin().unwrap().is_none());
    }

    #[test]
    fn the_defaults_are_the_libraries_defaults() {
        let c = Config::default();
        assert_eq!(c.max_bytes.0, corral_http::DEFAULT_MAX_BYTES);
        assert_eq!(
            c.max_body_bytes.0,
            corral_http::DEFAULT_MAX_BODY_BYTES as u64
        );
        assert_eq!(c.fetch_timeout, corral_http::DEFAULT_FETCH_TIMEOUT);
        assert_eq!(c.peer_timeout, corral_http::pool::DEFAULT_PEER_TIMEOUT);
    }

    #[test]
    fn every_option_has_one_name_in_the_file_the_environment_and_the_flags() {
        let all_set = Config {
            upstream: Some("http://origin.example".into()),
            redis_url: Some("redis://127.0.0.1".into()),
            upstream_ca_file: Some("ca.pem".into()),
            via: Some("edge-1".into()),
            admin_token: Some("0123456789abcdef".into()),
            peer_self: Some("http://127.0.0.1:8080".into()),
            peer_secret: Some("s3cret".into()),
            ..Config::default()
        };
        let mut in_file: Vec<String> = table(&all_set.to_toml()).keys().cloned().collect();
        let mut flags: Vec<String> = options().into_iter().map(|o| o.name).collect();
        in_file.sort();
        flags.sort();
        assert_eq!(in_file, flags);
        for (old, new) in RENAMED {
            assert!(flags.iter().any(|f| f == new), "{new}");
            assert!(!flags.iter().any(|f| f == old), "{old}");
        }
    }

    #[test]
    fn sizes_and_durations_are_humane() {
        let c = load("max-bytes = \"1GiB\"\nfetch-timeout = \"1m 30s\"\nmax-body-bytes = 1024")
            .unwrap();
        assert_eq!(c.max_bytes, ByteSize(1 << 30));
        assert_eq!(c.fetch_timeout, Duration::from_secs(90));
        assert_eq!(c.max_body_bytes, ByteSize(1024));
        assert!(ByteSize::parse("12 parsecs").is_err());
        assert_eq!(ByteSize(64 << 10).to_string(), "64KiB");
    }

    #[test]
    fn an_old_name_still_works_and_warns() {
        let loaded = Config::loader()
            .toml(table(
                "memory = \"1GiB\"\nmax-body = \"1MiB\"\nresponse-timeout = \"5s\"\n\
                 cache-status-header = false",
            ))
            .load()
            .unwrap();
        let c = &loaded.config;
        assert_eq!(c.max_bytes, ByteSize(1 << 30));
        assert_eq!(c.max_body_bytes, ByteSize(1 << 20));
        assert_eq!(c.fetch_timeout, Duration::from_secs(5));
        assert!(!c.cache_status_headers);
        assert_eq!(loaded.warnings.len(), 4, "{:?}", loaded.warnings);
        assert_eq!(
            loaded.warnings[0].to_string(),
            "`memory` (in the TOML given) is deprecated: it is now `max-bytes`"
        );
        let printed = c.to_toml();
        assert!(printed.contains("max-bytes = \"1GiB\""), "{printed}");
        assert!(!printed.contains("memory"), "{printed}");
    }

    #[test]
    fn an_old_and_a_new_name_in_one_place_are_refused_and_across_places_the_later_wins() {
        let err = load("memory = \"1GiB\"\nmax-bytes = \"2GiB\"").unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::BothNames {
                    old: "memory",
                    new: "max-bytes",
                    ..
                }
            ),
            "{err}"
        );
        let err = Config::loader()
            .env_vars([
                ("CORRAL_RESPONSE_TIMEOUT", "5s"),
                ("CORRAL_FETCH_TIMEOUT", "6s"),
            ])
            .load()
            .unwrap_err();
        assert!(err.to_string().contains("the environment"), "{err}");
        let loaded = Config::loader()
            .toml(table("max-bytes = \"2GiB\""))
            .env_vars([("CORRAL_MEMORY", "1GiB")])
            .load()
            .unwrap();
        assert_eq!(loaded.config.max_bytes, ByteSize(1 << 30));
        assert_eq!(
            loaded.warnings,
            [Warning::Renamed {
                old: "memory",
                new: "max-bytes",
                place: "the environment".into()
            }]
        );
    }

    #[test]
    fn the_environment_is_over_the_file_and_names_options_in_capitals() {
        let loaded = Config::loader()
            .toml(table(
                "max-bytes = \"2GiB\"\naccess-log = true\nvia = \"from-file\"",
            ))
            .env_vars([
                ("CORRAL_MAX_BYTES", "1GiB"),
                ("CORRAL_ACCESS_LOG", "false"),
                ("CORRAL_MAX_CONNECTIONS", "7"),
                ("CORRAL_PEER_SECRET", "123456"),
                ("CORRAL_ALLOW", "a.example, 10.0.0.0/8"),
                ("CORRAL_TRUSTED_PROXIES", "[\"192.0.2.1\"]"),
                ("CORRAL_MEMORY_LIMIT", "1"),
                ("HOME", "/root"),
            ])
            .load()
            .unwrap();
        let c = &loaded.config;
        assert_eq!(c.max_bytes, ByteSize(1 << 30));
        assert!(!c.access_log);
        assert_eq!(c.max_connections, 7);
        assert_eq!(c.peer_secret.as_deref(), Some("123456"), "digits stay text");
        assert_eq!(c.allow, ["a.example", "10.0.0.0/8"]);
        assert_eq!(c.trusted_proxies, ["192.0.2.1"]);
        assert_eq!(c.via.as_deref(), Some("from-file"));
        assert_eq!(
            loaded.warnings,
            [Warning::UnknownVariable {
                name: "CORRAL_MEMORY_LIMIT".into()
            }]
        );
        let err = Config::loader()
            .env_vars([("CORRAL_MAX_BYTES", "lots")])
            .load()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lots") && err.contains("CORRAL_MAX_BYTES"),
            "{err}"
        );
    }

    #[test]
    fn an_open_proxy_is_refused_with_a_clear_message() {
        let err = load("listen = \"0.0.0.0:8080\"").unwrap_err();
        assert!(
            err.to_string().contains("refusing to run an open proxy"),
            "{err}"
        );
        assert!(load("listen = \"0.0.0.0:8080\"\nallow = [\"*.example.com\"]").is_ok());
        assert!(load("listen = \"0.0.0.0:8080\"\nupstream = \"http://127.0.0.1:3000\"").is_ok());
    }

    #[test]
    fn an_exposed_admin_api_needs_a_token() {
        let err = load("admin-listen = \"0.0.0.0:9090\"").unwrap_err();
        assert!(err.to_string().contains("admin-token"), "{err}");
        assert!(
            load("admin-listen = \"0.0.0.0:9090\"\nadmin-token = \"0123456789abcdef\"").is_ok()
        );
    }

    #[test]
    fn an_allow_list_that_allows_everything_is_an_open_proxy_too() {
        for allow in ["[\"*\"]", "[\"0.0.0.0/0\"]", "[\"::/0\", \"example.com\"]"] {
            let err = load(&format!("listen = \"0.0.0.0:8080\"\nallow = {allow}")).unwrap_err();
            assert!(err.to_string().contains("open-proxy"), "{allow}: {err}");
        }
        assert!(
            load("listen = \"0.0.0.0:8080\"\nallow = [\"*\"]\nopen-proxy = true").is_ok(),
            "said explicitly"
        );
    }

    #[test]
    fn a_short_admin_token_is_refused() {
        let err = load("admin-token = \"s3cret\"").unwrap_err();
        assert!(err.to_string().contains("16 bytes"), "{err}");
    }

    #[test]
    fn trusted_proxies_and_via_are_checked() {
        let c =
            load("trusted-proxies = [\"10.0.0.0/8\", \"192.0.2.1\"]\nvia = \"edge-1\"").unwrap();
        assert_eq!(c.trusted_networks().unwrap().len(), 2);
        let err = load("trusted-proxies = [\"lb.example\"]").unwrap_err();
        assert!(err.to_string().contains("lb.example"), "{err}");
        assert!(matches!(
            load("via = \"two words\""),
            Err(ConfigError::Via(_))
        ));
    }

    #[test]
    fn mistakes_are_named() {
        let unknown = load("lissen = \"x\"").unwrap_err().to_string();
        assert!(unknown.contains("lissen"), "{unknown}");
        let bad_upstream = load("upstream = \"ftp://x\"").unwrap_err().to_string();
        assert!(
            bad_upstream.contains("http:// or https://"),
            "{bad_upstream}"
        );
        let path = load("upstream = \"http://x/base\"")
            .unwrap_err()
            .to_string();
        assert!(path.contains("path"), "{path}");
        let duration = load("connect-timeout = \"soon\"").unwrap_err().to_string();
        assert!(
            duration.contains("soon") && duration.contains("connect-timeout"),
            "{duration}"
        );
        let rule = load("allow = [\"10.0.0.0/99\"]").unwrap_err().to_string();
        assert!(rule.contains("10.0.0.0/99"), "{rule}");
        let zero = load("fetch-timeout = \"0s\"").unwrap_err();
        assert!(
            matches!(
                zero,
                ConfigError::Zero {
                    option: "fetch-timeout"
                }
            ),
            "{zero}"
        );
    }

    #[test]
    fn the_effective_configuration_reads_back_and_hides_the_token() {
        let c = load("upstream = \"https://origin.example\"\nadmin-token = \"0123456789abcdef\"")
            .unwrap();
        let printed = c.to_toml();
        assert!(printed.contains("upstream = \"https://origin.example\""));
        assert!(printed.contains("admin-token = \"(set, not shown)\""));
        assert!(printed.contains("connect-timeout = \"5s\""));
        let again = Config::from_toml(printed.parse().unwrap()).unwrap();
        assert_eq!(again.upstream, c.upstream);
    }
}
