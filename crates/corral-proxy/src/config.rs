//! The proxy's configuration: a TOML file and command-line flags with the same names
//! (`listen` in the file is `--listen` on the command line), every option with a
//! default, durations in humane form (`30s`, `5m`) and sizes with units (`256MiB`).

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::allow::AllowList;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file or a flag does not parse, or names an unknown option.
    #[error("{0}")]
    Parse(String),
    /// The options parse but do not make sense together.
    #[error("{0}")]
    Invalid(String),
}

/// What `check-config` prints for a secret that is set.
const HIDDEN: &str = "(set, not shown)";

/// The shortest admin token accepted: 16 bytes.
pub const MIN_ADMIN_TOKEN: usize = 16;

/// How a reverse proxy sets the `Host` of upstream requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostMode {
    /// The upstream's own host (as nginx does by default).
    Upstream,
    /// The client's `Host`, for origins serving several names.
    Keep,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A number of bytes, written with a unit: `512`, `64KiB`, `256MiB`, `1GiB` (also `KB`,
/// `MB`, `GB` as powers of 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `256MiB` and friends.
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{text}` is not a size (e.g. 256MiB)"))?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => {
                return Err(format!(
                    "unknown size unit `{other}` in `{text}` (use B, KiB, MiB, GiB, KB, MB, GB)"
                ));
            }
        };
        n.checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("`{text}` is too large"))
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

/// Durations as humane text (`250ms`, `30s`, `5m`).
mod humane {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!("`{text}` is not a duration (e.g. 30s, 5m): {e}"))
        })
    }
}

/// Everything the proxy can be told. The names are the same in the TOML file and on
/// the command line; the defaults are documented on each field and printed by
/// `corral check-config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// Where the proxy listens. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// The origin of a reverse proxy (`http://host:port` or `https://host`). Unset
    /// (the default): a forward proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// A reverse proxy's `Host` to the upstream: `upstream` (default) or `keep`.
    pub host: HostMode,
    /// Memory for cached responses. Default `256MiB`.
    pub memory: ByteSize,
    /// The largest body stored; larger ones stream through. Default `8MiB`.
    pub max_body: ByteSize,
    /// A Redis tier shared with other proxies (`redis://`, `rediss://`,
    /// `redis+unix://`). Unset (default): memory only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// The prefix of this proxy's keys in Redis. Default `corral:`.
    pub redis_prefix: String,
    /// How long connecting to an origin may take. Default `5s`.
    #[serde(with = "humane")]
    pub connect_timeout: Duration,
    /// How long an origin may take to answer (and a stored body to arrive). Default `30s`.
    #[serde(with = "humane")]
    pub response_timeout: Duration,
    /// Requests in flight to origins at once, each until its response body is read
    /// or dropped; more wait (within `response-timeout`). Default `1024`.
    pub max_upstream_connections: usize,
    /// Speak HTTP/2 without TLS (h2c, prior knowledge) to a plain-HTTP upstream.
    /// Default `false` (HTTP/1.1; HTTPS origins negotiate HTTP/2 by ALPN).
    pub upstream_http2: bool,
    /// A PEM file of root certificates trusted for `https://` origins besides the
    /// public (webpki) roots: a private CA. Unset (default): public roots only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ca_file: Option<std::path::PathBuf>,
    /// Add `X-Cache` and `Cache-Status` to responses. Default `true`.
    pub cache_status_header: bool,
    /// A forward proxy's allow-list: host names (`example.com`, optionally `:port`),
    /// globs (`*.example.com`) and CIDRs (`10.0.0.0/8`). A name rule never reaches
    /// loopback, link-local or cloud-metadata addresses unless a CIDR rule allows
    /// them too. Empty (default): any host, which (like `*` or `0.0.0.0/0`) is
    /// refused unless the proxy listens on loopback only or `open-proxy` is set.
    pub allow: Vec<String>,
    /// Run a forward proxy that fetches from any host for any client that can reach
    /// it (an `allow` list that allows everything, on a non-loopback listener).
    /// Default `false`: such a configuration is refused.
    pub open_proxy: bool,
    /// Clients whose forwarding fields (`X-Forwarded-For`, `X-Forwarded-Host`,
    /// `Forwarded`, `X-Original-URL`, ...) are believed and passed on: the load
    /// balancers in front of this proxy, as CIDRs or addresses. From other clients
    /// they are dropped (`X-Forwarded-For` restarts at the client's address). Default
    /// empty: no client is trusted.
    pub trusted_proxies: Vec<String>,
    /// This proxy's name in `Via`, by which it also recognises a request that looped
    /// back to it (answered `508 Loop Detected`): give each proxy (each peer of a
    /// pool) a name of its own. Default: `corral-` and random hex, new for each
    /// process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Serve the admin API (metrics, health, purge, stats). Default `true`.
    pub admin: bool,
    /// Where the admin API listens. Default `127.0.0.1:9090`.
    pub admin_listen: SocketAddr,
    /// The bearer token the admin API requires (required when it is not on loopback;
    /// at least 16 bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// `text` (default) or `json`.
    pub log_format: LogFormat,
    /// Log one line per request (method, URL, status, cache status, duration, bytes).
    /// Default `true`.
    pub access_log: bool,
    /// How long in-flight requests may finish after SIGTERM/SIGINT. Default `10s`.
    #[serde(with = "humane")]
    pub shutdown_grace: Duration,
    /// The largest request head (request line and headers); larger gets a 431.
    /// Default `64KiB`.
    pub max_header_bytes: ByteSize,
    /// How long a client may take to send its request head. Default `10s`.
    #[serde(with = "humane")]
    pub header_read_timeout: Duration,
    /// Client connections at once; more wait to be accepted. Default `10000`.
    pub max_connections: usize,
    /// A pool of peers: the members' base URLs, this proxy's among them; each URL is
    /// fetched and stored by one of them. Empty (default): no peers (a pool can still
    /// be filled at runtime through the admin API when `peer-secret` is set).
    pub peers: Vec<String>,
    /// This proxy's base URL as the peers list it. Default `http://<listen>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_self: Option<String>,
    /// The secret peers share (sent with, and required of, every peer request); it
    /// turns the pool on. Also read from `CORRAL_PEER_SECRET`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_secret: Option<String>,
    /// How long a peer may take to answer before it counts as down; longer than
    /// `response-timeout`, so a slow origin does not make its owner look down.
    /// Default `40s`.
    #[serde(with = "humane")]
    pub peer_timeout: Duration,
    /// Memory for copies of responses fetched through other peers (the hot cache).
    /// Default `0B`: off.
    pub peer_hot_cache: ByteSize,
    /// The longest a hot copy is kept. Default `10s`.
    #[serde(with = "humane")]
    pub peer_hot_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            upstream: None,
            host: HostMode::Upstream,
            memory: ByteSize(256 << 20),
            max_body: ByteSize(8 << 20),
            redis_url: None,
            redis_prefix: "corral:".to_owned(),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(30),
            max_upstream_connections: 1024,
            upstream_http2: false,
            upstream_ca_file: None,
            cache_status_header: true,
            allow: Vec::new(),
            open_proxy: false,
            trusted_proxies: Vec::new(),
            via: None,
            admin: true,
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            admin_token: None,
            log_format: LogFormat::Text,
            access_log: true,
            shutdown_grace: Duration::from_secs(10),
            max_header_bytes: ByteSize(64 << 10),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            peers: Vec::new(),
            peer_self: None,
            peer_secret: None,
            peer_timeout: Duration::from_secs(40),
            peer_hot_cache: ByteSize(0),
            peer_hot_ttl: Duration::from_secs(10),
        }
    }
}

/// An upstream origin, split for rewriting requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// `host[:port]`.
    pub authority: http::uri::Authority,
}

impl Config {
    /// Reads a TOML file, with `overrides` (from flags) on top, and checks the result.
    pub fn load(path: Option<&Path>, overrides: toml::Table) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        table.extend(overrides);
        let config = Config::deserialize(table).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// Whether the options make sense together; the proxy never starts otherwise.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        self.origin()?;
        let allow = AllowList::parse(&self.allow).map_err(ConfigError::Invalid)?;
        if self.upstream.is_none()
            && allow.allows_everything()
            && !self.listen.ip().is_loopback()
            && !self.open_proxy
        {
            return invalid(format!(
                "refusing to run an open proxy: a forward proxy listening on {} (not loopback) needs an \
                 `allow` list (hosts, globs or CIDRs) that does not allow every host; or listen on \
                 127.0.0.1; or set `open-proxy = true` if fetching anything for anyone is the intent",
                self.listen
            ));
        }
        self.trusted_networks()?;
        crate::forwarded::Forwarding::new(self.via.as_deref()).map_err(ConfigError::Invalid)?;
        if self
            .admin_token
            .as_deref()
            .is_some_and(|token| token.len() < MIN_ADMIN_TOKEN)
        {
            return invalid(format!(
                "`admin-token` must be at least {MIN_ADMIN_TOKEN} bytes (e.g. `openssl rand -hex 16`)"
            ));
        }
        if self.admin
            && !self.admin_listen.ip().is_loopback()
            && self.admin_token.as_deref().is_none_or(str::is_empty)
        {
            return invalid(format!(
                "the admin API on {} (not loopback) needs an `admin-token`",
                self.admin_listen
            ));
        }
        if self.redis_url.is_some() && self.redis_prefix.is_empty() {
            return invalid("`redis-prefix` must not be empty".into());
        }
        let zero = [
            ("memory", self.memory.0 == 0),
            ("max-body", self.max_body.0 == 0),
            ("connect-timeout", self.connect_timeout.is_zero()),
            ("response-timeout", self.response_timeout.is_zero()),
            (
                "max-upstream-connections",
                self.max_upstream_connections == 0,
            ),
            ("max-connections", self.max_connections == 0),
            ("header-read-timeout", self.header_read_timeout.is_zero()),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, is_zero)| *is_zero) {
            return invalid(format!("`{name}` must be greater than zero"));
        }
        if !self.peers.is_empty() && self.peer_secret.as_deref().is_none_or(str::is_empty) {
            return invalid(
                "`peers` need a `peer-secret` (or CORRAL_PEER_SECRET): peer requests without it are refused"
                    .into(),
            );
        }
        if self.peer_secret.is_some()
            && self.peer_self.is_none()
            && self.listen.ip().is_unspecified()
        {
            return invalid(format!(
                "listening on {}, the pool cannot tell its own URL: set `peer-self`",
                self.listen
            ));
        }
        if self.peer_secret.is_some() && self.peer_timeout <= self.response_timeout {
            return invalid(format!(
                "`peer-timeout` ({:?}) must be longer than `response-timeout` ({:?}): an owner \
                 waiting on a slow origin would look down to its peers",
                self.peer_timeout, self.response_timeout
            ));
        }
        if self.peer_timeout.is_zero() || self.peer_hot_ttl.is_zero() {
            return invalid("`peer-timeout` and `peer-hot-ttl` must be greater than zero".into());
        }
        if self.max_header_bytes.0 < 8192 {
            return invalid("`max-header-bytes` must be at least 8KiB".into());
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
                    .map_err(|_| {
                        ConfigError::Invalid(format!(
                            "trusted-proxies: `{rule}` is not an address or a CIDR"
                        ))
                    })
            })
            .collect()
    }

    /// The reverse proxy's origin, if this is one.
    pub fn origin(&self) -> Result<Option<Origin>, ConfigError> {
        let Some(upstream) = &self.upstream else {
            return Ok(None);
        };
        let bad = |why: &str| ConfigError::Invalid(format!("`upstream = \"{upstream}\"`: {why}"));
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

    #[test]
    fn the_defaults_are_a_loopback_forward_proxy() {
        let c = Config::load(None, toml::Table::new()).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.origin().unwrap().is_none());
    }

    #[test]
    fn sizes_and_durations_are_humane() {
        let c = Config::load(
            None,
            table("memory = \"1GiB\"\nresponse-timeout = \"1m 30s\"\nmax-body = 1024"),
        )
        .unwrap();
        assert_eq!(c.memory, ByteSize(1 << 30));
        assert_eq!(c.response_timeout, Duration::from_secs(90));
        assert_eq!(c.max_body, ByteSize(1024));
        assert!(ByteSize::parse("12 parsecs").is_err());
        assert_eq!(ByteSize(64 << 10).to_string(), "64KiB");
    }

    #[test]
    fn an_open_proxy_is_refused_with_a_clear_message() {
        let err = Config::load(None, table("listen = \"0.0.0.0:8080\"")).unwrap_err();
        assert!(
            err.to_string().contains("refusing to run an open proxy"),
            "{err}"
        );
        assert!(
            Config::load(
                None,
                table("listen = \"0.0.0.0:8080\"\nallow = [\"*.example.com\"]")
            )
            .is_ok()
        );
        assert!(
            Config::load(
                None,
                table("listen = \"0.0.0.0:8080\"\nupstream = \"http://127.0.0.1:3000\"")
            )
            .is_ok()
        );
    }

    #[test]
    fn an_exposed_admin_api_needs_a_token() {
        let err = Config::load(None, table("admin-listen = \"0.0.0.0:9090\"")).unwrap_err();
        assert!(err.to_string().contains("admin-token"), "{err}");
        assert!(
            Config::load(
                None,
                table("admin-listen = \"0.0.0.0:9090\"\nadmin-token = \"0123456789abcdef\"")
            )
            .is_ok()
        );
    }

    #[test]
    fn an_allow_list_that_allows_everything_is_an_open_proxy_too() {
        for allow in ["[\"*\"]", "[\"0.0.0.0/0\"]", "[\"::/0\", \"example.com\"]"] {
            let err = Config::load(
                None,
                table(&format!("listen = \"0.0.0.0:8080\"\nallow = {allow}")),
            )
            .unwrap_err();
            assert!(err.to_string().contains("open-proxy"), "{allow}: {err}");
        }
        assert!(
            Config::load(
                None,
                table("listen = \"0.0.0.0:8080\"\nallow = [\"*\"]\nopen-proxy = true")
            )
            .is_ok(),
            "said explicitly"
        );
    }

    #[test]
    fn a_short_admin_token_is_refused() {
        let err = Config::load(None, table("admin-token = \"s3cret\"")).unwrap_err();
        assert!(err.to_string().contains("16 bytes"), "{err}");
    }

    #[test]
    fn trusted_proxies_and_via_are_checked() {
        let c = Config::load(
            None,
            table("trusted-proxies = [\"10.0.0.0/8\", \"192.0.2.1\"]\nvia = \"edge-1\""),
        )
        .unwrap();
        assert_eq!(c.trusted_networks().unwrap().len(), 2);
        let err = Config::load(None, table("trusted-proxies = [\"lb.example\"]")).unwrap_err();
        assert!(err.to_string().contains("lb.example"), "{err}");
        assert!(Config::load(None, table("via = \"two words\"")).is_err());
    }

    #[test]
    fn mistakes_are_named() {
        let unknown = Config::load(None, table("lissen = \"x\""))
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("lissen"), "{unknown}");
        let bad_upstream = Config::load(None, table("upstream = \"ftp://x\""))
            .unwrap_err()
            .to_string();
        assert!(
            bad_upstream.contains("http:// or https://"),
            "{bad_upstream}"
        );
        let path = Config::load(None, table("upstream = \"http://x/base\""))
            .unwrap_err()
            .to_string();
        assert!(path.contains("path"), "{path}");
        let duration = Config::load(None, table("connect-timeout = \"soon\""))
            .unwrap_err()
            .to_string();
        assert!(duration.contains("not a duration"), "{duration}");
        let rule = Config::load(None, table("allow = [\"10.0.0.0/99\"]"))
            .unwrap_err()
            .to_string();
        assert!(rule.contains("10.0.0.0/99"), "{rule}");
    }

    #[test]
    fn the_effective_configuration_reads_back_and_hides_the_token() {
        let c = Config::load(
            None,
            table("upstream = \"https://origin.example\"\nadmin-token = \"0123456789abcdef\""),
        )
        .unwrap();
        let printed = c.to_toml();
        assert!(printed.contains("upstream = \"https://origin.example\""));
        assert!(printed.contains("admin-token = \"(set, not shown)\""));
        assert!(printed.contains("connect-timeout = \"5s\""));
        let again = Config::load(None, printed.parse().unwrap()).unwrap();
        assert_eq!(again.upstream, c.upstream);
    }
}
