//! [`Config`]: every option the proxy takes, with its default, and the checks that the
//! options make sense together; with the small types of its fields ([`HostMode`],
//! [`LogFormat`]) and the [`Origin`] it derives.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};
use serde::{Deserialize, Serialize};
use smart_default::SmartDefault;

use super::byte_size::ByteSize;
use super::error::{
    ConfigError, MAX_CONNECTIONS, MAX_WAIT, MIN_ADMIN_TOKEN, MIN_HEADER_BYTES, MIN_PEER_SECRET,
};
use crate::allow::AllowList;

/// The default `disk-size`: 10 GiB.
pub(crate) const DEFAULT_DISK_SIZE: u64 = 10 << 30;

/// What `check-config` prints for a secret that is set.
const HIDDEN: &str = "(set, not shown)";

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

/// Everything the proxy can be told: each field is an option, named in kebab case in
/// the file, as a `--flag` and (upper case, `_` for `-`) as a `CORRAL_` environment
/// variable. Its default is its `#[default]` attribute, printed by `corral
/// check-config` and shown by `corral serve --help`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SmartDefault, Args)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// Where the proxy listens: plain HTTP, or TLS when `tls-cert` is set and
    /// `tls-listen` is not.
    #[arg(long)]
    #[default(SocketAddr::from(([127, 0, 0, 1], 8080)))]
    pub listen: SocketAddr,
    /// A PEM file holding the certificate (then its chain) that clients are served
    /// TLS with (HTTP/2 or HTTP/1.1 by ALPN; TLS 1.2 and 1.3), with `tls-key`. Unset:
    /// no TLS.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// A PEM file holding `tls-cert`'s private key (PKCS#8, PKCS#1 or SEC1).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// With `tls-cert`, a second listener that speaks TLS, `listen` staying plain.
    /// Unset: `listen` speaks TLS.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_listen: Option<SocketAddr>,
    /// More certificates, each chosen for the host names its certificate covers when a
    /// client names one (SNI); `tls-cert` serves the rest. In the file only, as a list
    /// of tables: `[[tls-certificates]]` with `cert` and `key`.
    #[arg(skip)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls_certificates: Vec<TlsCertificate>,
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
    /// A directory for a disk tier: responses kept on disk too, beyond memory and
    /// across restarts (one proxy per directory; made if missing). Unset: no disk.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<PathBuf>,
    /// The most disk the disk tier's files take (counted in 4 KiB blocks).
    #[arg(long)]
    #[default(ByteSize(DEFAULT_DISK_SIZE))]
    pub disk_size: ByteSize,
    /// With a disk tier, the largest body kept on disk: a body over `max-body-bytes`
    /// but within this, whose length the origin states, is written to disk as it
    /// arrives and served from there (to every request for it meanwhile too), when
    /// the bodies being written fit in half of `disk-size`.
    #[arg(long)]
    #[default(ByteSize(corral::disk::DEFAULT_MAX_ENTRY_BYTES))]
    pub max_disk_body: ByteSize,
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
    /// How long past freshness a stored response answers when its origin cannot be
    /// reached (refused, reset, closed before answering, or past `fetch-timeout`),
    /// unless the response forbids serving it stale; `0s`: only where
    /// `stale-if-error` allows.
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    #[default(corral_http::DEFAULT_STALE_ON_DISCONNECT)]
    pub stale_on_disconnect: Duration,
    /// Requests in flight to origins at once (at most 16777216), each until its
    /// response body is read or dropped; more wait (within `fetch-timeout`).
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
    /// Requests whose `Accept-Encoding` or `Accept-Language` differ only in the order,
    /// letter case or spacing of their members select one stored variant; off:
    /// compared exactly.
    #[arg(long, action = ArgAction::Set, value_name = "BOOL")]
    #[default(true)]
    pub normalize_vary: bool,
    /// Revalidate hot responses before they go stale (XFetch): a hit starts the
    /// response's one revalidation early, more likely as the end of its freshness
    /// nears, scaled by how long its fetch took and by this factor (1 is the paper's;
    /// larger is earlier). Unset: off.
    #[arg(long, value_name = "BETA")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_refresh: Option<f64>,
    /// The targeted cache-control fields (RFC 9213) heeded over `Cache-Control`, first
    /// valid one first (comma-separated as a flag): name one of your own (e.g.
    /// `corral-cache-control`) before `cdn-cache-control` to give this proxy
    /// directives of its own. Empty: `Cache-Control` alone.
    #[arg(long, value_delimiter = ',')]
    #[default(vec!["cdn-cache-control".to_owned()])]
    pub targeted_cache_control: Vec<String>,
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
    /// How long in-flight requests may finish after SIGTERM/SIGINT (at most a day).
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
    /// How long a client connection may stay open with no request in flight (a
    /// request counts until its response body is sent; at most a day); then it is
    /// closed, gracefully: what bounds an idle HTTP/2 connection, whose client keeps it
    /// open by answering pings. An HTTP/1.1 one must also send each request head within
    /// `header-read-timeout`.
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    #[default(Duration::from_secs(60))]
    pub idle_timeout: Duration,
    /// How long a response body may go without a part of it sent to its client (the
    /// client stopped reading, or the origin stopped sending; at most a day): then the
    /// connection is closed, freeing its slot and the places its responses hold among
    /// the requests to origins.
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    #[default(Duration::from_secs(60))]
    pub send_timeout: Duration,
    /// Client connections at once (at most 16777216); more wait to be accepted.
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
    /// The secret peers share (sent with, and required of, every peer request; at
    /// least 16 bytes); it turns the pool on. Best given as `CORRAL_PEER_SECRET`.
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

/// The options read only when the proxy starts: a reload that changes one keeps the
/// running value and reports that it needs a restart. Every other option takes effect
/// on reload (`tls-cert` and `tls-key` too, but turning TLS on or off needs a restart).
pub const RESTART_ONLY: [&str; 22] = [
    "listen",
    "tls-listen",
    "admin",
    "admin-listen",
    "max-bytes",
    "max-body-bytes",
    "disk",
    "disk-size",
    "max-disk-body",
    "redis-url",
    "redis-prefix",
    "fetch-timeout",
    "stale-on-disconnect",
    "cache-status-headers",
    "normalize-vary",
    "early-refresh",
    "targeted-cache-control",
    "peer-secret",
    "peer-self",
    "peer-timeout",
    "peer-hot-cache",
    "peer-hot-ttl",
];

/// A certificate chosen by SNI: its PEM files (see `tls-certificates`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCertificate {
    /// The certificate, then its chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
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
    /// Whether the options make sense together; the proxy never starts otherwise.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.origin()?;
        let allow = AllowList::parse(&self.allow)?;
        let exposed = std::iter::once(self.listen)
            .chain(self.tls_listen)
            .find(|addr| !addr.ip().is_loopback());
        if let Some(listen) = exposed
            && self.upstream.is_none()
            && allow.allows_everything()
            && !self.open_proxy
        {
            return Err(ConfigError::OpenProxy { listen });
        }
        for (option, value) in [
            ("idle-timeout", self.idle_timeout),
            ("send-timeout", self.send_timeout),
            ("shutdown-grace", self.shutdown_grace),
        ] {
            if value > MAX_WAIT {
                return Err(ConfigError::TooLong {
                    option,
                    max: MAX_WAIT,
                });
            }
        }
        for (option, value) in [
            ("max-connections", self.max_connections),
            ("max-upstream-connections", self.max_upstream_connections),
        ] {
            if value > MAX_CONNECTIONS {
                return Err(ConfigError::TooMany {
                    option,
                    max: MAX_CONNECTIONS,
                });
            }
        }
        self.trusted_networks()?;
        self.targeted_fields()?;
        crate::forwarded::Forwarding::new(self.via.as_deref())?;
        if self
            .admin_token
            .as_deref()
            .is_some_and(|token| token.len() < MIN_ADMIN_TOKEN)
        {
            return Err(ConfigError::ShortAdminToken);
        }
        if self
            .peer_secret
            .as_deref()
            .is_some_and(|secret| secret.len() < MIN_PEER_SECRET)
        {
            return Err(ConfigError::ShortPeerSecret);
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
            ("idle-timeout", self.idle_timeout.is_zero()),
            ("send-timeout", self.send_timeout.is_zero()),
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
        self.check_tls()
    }

    fn check_tls(&self) -> Result<(), ConfigError> {
        let incomplete = |option, needs| Err(ConfigError::TlsIncomplete { option, needs });
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return incomplete("tls-cert", "tls-key"),
            (None, Some(_)) => return incomplete("tls-key", "tls-cert"),
            (None, None) if self.tls_listen.is_some() => {
                return incomplete("tls-listen", "tls-cert");
            }
            (None, None) if !self.tls_certificates.is_empty() => {
                return incomplete("tls-certificates", "tls-cert");
            }
            _ => {}
        }
        match self.tls_listen {
            // Port 0 is a new port for each.
            Some(addr) if addr == self.listen && addr.port() != 0 => {
                Err(ConfigError::TlsListenIsListen { addr })
            }
            _ => Ok(()),
        }
    }

    /// What a reload to `self` runs while `running` runs: `self` with the
    /// [`RESTART_ONLY`] options kept as they run, checked, and the names of those that
    /// `self` would have changed.
    pub fn reloaded_over(
        self,
        running: &Config,
    ) -> Result<(Config, Vec<&'static str>), ConfigError> {
        let as_table = |config: &Config| {
            toml::Table::try_from(config)
                .map_err(|e| ConfigError::Value(Box::new(e.to_string().into())))
        };
        let (old, mut new) = (as_table(running)?, as_table(&self)?);
        let mut kept = Vec::new();
        let keep = |name: &'static str, new: &mut toml::Table| {
            match old.get(name) {
                Some(value) => new.insert(name.to_owned(), value.clone()),
                None => new.remove(name),
            };
        };
        for name in RESTART_ONLY {
            if old.get(name) != new.get(name) {
                keep(name, &mut new);
                kept.push(name);
            }
        }
        if running.tls_cert.is_some() != self.tls_cert.is_some() {
            for name in ["tls-cert", "tls-key", "tls-certificates"] {
                keep(name, &mut new);
            }
            kept.push("tls-cert");
        }
        let config: Config = new
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Value(Box::new(e.to_string().into())))?;
        config.check()?;
        Ok((config, kept))
    }

    /// What this proxy is, in a few words: a forward proxy, or a reverse proxy for
    /// its upstream.
    pub fn describe(&self) -> String {
        match &self.upstream {
            Some(upstream) => format!("reverse proxy for {upstream}"),
            None => "forward proxy".to_owned(),
        }
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

    /// `targeted-cache-control` as field names.
    pub fn targeted_fields(&self) -> Result<Vec<http::HeaderName>, ConfigError> {
        self.targeted_cache_control
            .iter()
            .map(|name| {
                http::HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| ConfigError::TargetedField { name: name.clone() })
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
    fn sizes_and_durations_are_humane() {
        let c = load("max-bytes = \"1GiB\"\nfetch-timeout = \"1m 30s\"\nmax-body-bytes = 1024")
            .unwrap();
        assert_eq!(c.max_bytes, ByteSize(1 << 30));
        assert_eq!(c.fetch_timeout, Duration::from_secs(90));
        assert_eq!(c.max_body_bytes, ByteSize(1024));
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
    fn a_forward_proxy_exposed_on_its_tls_listener_is_an_open_proxy_too() {
        let exposed = "tls-cert = \"a.crt\"\ntls-key = \"a.key\"\ntls-listen = \"0.0.0.0:8443\"";
        let err = load(exposed).unwrap_err();
        assert!(
            matches!(err, ConfigError::OpenProxy { listen } if listen.port() == 8443),
            "{err}"
        );
        assert!(load(&format!("{exposed}\nallow = [\"*.example.com\"]")).is_ok());
    }

    #[test]
    fn max_connections_has_a_ceiling() {
        let err = load("max-connections = 9223372036854775807").unwrap_err();
        assert!(err.to_string().contains("at most 16777216"), "{err}");
        assert!(load("max-connections = 16777216").is_ok());
        let err = load("idle-timeout = \"300000000000y\"").unwrap_err();
        assert!(err.to_string().contains("at most 1day"), "{err}");
        assert!(load("shutdown-grace = \"2days\"").is_err());
        let err = load("max-upstream-connections = 16777217").unwrap_err();
        assert!(
            err.to_string().contains("max-upstream-connections"),
            "{err}"
        );
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
    fn tls_options_come_in_pairs_and_sni_certificates_read_back() {
        let c = load(
            "tls-cert = \"a.crt\"\ntls-key = \"a.key\"\ntls-listen = \"127.0.0.1:8443\"\n\
             [[tls-certificates]]\ncert = \"b.crt\"\nkey = \"b.key\"\n",
        )
        .unwrap();
        assert_eq!(c.tls_certificates[0].cert, PathBuf::from("b.crt"));
        let again = Config::from_toml(c.to_toml().parse().unwrap()).unwrap();
        assert_eq!(again, c, "check-config prints what loads back");
        for (toml, error) in [
            ("tls-cert = \"a.crt\"", "`tls-cert` needs `tls-key`"),
            ("tls-key = \"a.key\"", "`tls-key` needs `tls-cert`"),
            (
                "tls-listen = \"127.0.0.1:8443\"",
                "`tls-listen` needs `tls-cert`",
            ),
            (
                "[[tls-certificates]]\ncert = \"b.crt\"\nkey = \"b.key\"",
                "`tls-certificates` needs `tls-cert`",
            ),
            (
                "tls-cert = \"a.crt\"\ntls-key = \"a.key\"\ntls-listen = \"127.0.0.1:8080\"",
                "must differ from `listen`",
            ),
        ] {
            let refused = load(toml).unwrap_err().to_string();
            assert!(refused.contains(error), "{toml}: {refused}");
        }
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
