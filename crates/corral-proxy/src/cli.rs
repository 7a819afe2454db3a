//! The command line: `corral serve` and `corral check-config`, with one flag per
//! configuration option, named as in the TOML file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError};

/// corral: a caching HTTP proxy that keeps the thundering herd in.
#[derive(Debug, Parser)]
#[command(name = "corral", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (a forward proxy on 127.0.0.1:8080 unless told otherwise).
    Serve(Options),
    /// Check a configuration and print the effective one (defaults filled in).
    CheckConfig(Options),
}

/// The options; each flag overrides the file's option of the same name.
#[derive(Debug, Args)]
pub struct Options {
    /// A TOML configuration file (see corral.example.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where to listen [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<String>,
    /// Run as a reverse proxy in front of this origin (http://host:port).
    #[arg(long)]
    pub upstream: Option<String>,
    /// A reverse proxy's Host to the origin: upstream or keep [default: upstream].
    #[arg(long)]
    pub host: Option<String>,
    /// Memory for cached responses [default: 256MiB].
    #[arg(long)]
    pub memory: Option<String>,
    /// Largest body stored [default: 8MiB].
    #[arg(long)]
    pub max_body: Option<String>,
    /// A Redis tier shared with other proxies (redis://, rediss://, redis+unix://).
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Key prefix in Redis [default: corral:].
    #[arg(long)]
    pub redis_prefix: Option<String>,
    /// Time to connect to an origin [default: 5s].
    #[arg(long)]
    pub connect_timeout: Option<String>,
    /// Time for an origin to answer [default: 30s].
    #[arg(long)]
    pub response_timeout: Option<String>,
    /// Requests in flight to origins at once [default: 1024].
    #[arg(long)]
    pub max_upstream_connections: Option<u64>,
    /// h2c (HTTP/2 without TLS) to a plain-HTTP upstream [default: false].
    #[arg(long, value_name = "BOOL")]
    pub upstream_http2: Option<bool>,
    /// Root certificates (PEM) trusted for https:// origins besides the public ones.
    #[arg(long)]
    pub upstream_ca_file: Option<String>,
    /// Add X-Cache and Cache-Status headers [default: true].
    #[arg(long, value_name = "BOOL")]
    pub cache_status_header: Option<bool>,
    /// Allow a host, glob (*.example.com) or CIDR (10.0.0.0/8); repeat for more.
    #[arg(long)]
    pub allow: Vec<String>,
    /// Fetch from any host for anyone: allow an open forward proxy off loopback [default: false].
    #[arg(long, value_name = "BOOL")]
    pub open_proxy: Option<bool>,
    /// Clients whose X-Forwarded-* fields are believed (CIDRs or addresses), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// This proxy's pseudonym in Via, to detect loops [default: corral-<random>].
    #[arg(long)]
    pub via: Option<String>,
    /// Serve the admin API [default: true].
    #[arg(long, value_name = "BOOL")]
    pub admin: Option<bool>,
    /// Where the admin API listens [default: 127.0.0.1:9090].
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// Bearer token for the admin API (required off loopback).
    #[arg(long)]
    pub admin_token: Option<String>,
    /// text or json [default: text].
    #[arg(long)]
    pub log_format: Option<String>,
    /// One log line per request [default: true].
    #[arg(long, value_name = "BOOL")]
    pub access_log: Option<bool>,
    /// Time for requests in flight to finish after SIGTERM [default: 10s].
    #[arg(long)]
    pub shutdown_grace: Option<String>,
    /// Largest request head; larger gets a 431 [default: 64KiB].
    #[arg(long)]
    pub max_header_bytes: Option<String>,
    /// Time for a client to send its request head [default: 10s].
    #[arg(long)]
    pub header_read_timeout: Option<String>,
    /// Client connections at once [default: 10000].
    #[arg(long)]
    pub max_connections: Option<u64>,
    /// The pool's members (base URLs, this proxy's among them), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,
    /// This proxy's base URL as the peers list it [default: http://<listen>].
    #[arg(long)]
    pub peer_self: Option<String>,
    /// The secret the peers share (turns the pool on).
    #[arg(long, env = "CORRAL_PEER_SECRET", hide_env_values = true)]
    pub peer_secret: Option<String>,
    /// Time for a peer to answer before it counts as down [default: 40s].
    #[arg(long)]
    pub peer_timeout: Option<String>,
    /// Memory for hot copies of responses fetched through other peers [default: 0B, off].
    #[arg(long)]
    pub peer_hot_cache: Option<String>,
    /// The longest a hot copy is kept [default: 10s].
    #[arg(long)]
    pub peer_hot_ttl: Option<String>,
}

impl Options {
    /// The configuration: the file (if any), these flags on top, checked.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(self.config.as_deref(), self.overrides())
    }

    /// The flags that were given, as TOML values under the file's names.
    fn overrides(&self) -> toml::Table {
        use toml::Value;
        let mut table = toml::Table::new();
        let mut put = |name: &str, value: Option<Value>| {
            if let Some(value) = value {
                table.insert(name.to_owned(), value);
            }
        };
        let text = |v: &Option<String>| v.clone().map(Value::String);
        let number =
            |v: Option<u64>| v.map(|n| Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)));
        let list = |v: &[String]| {
            (!v.is_empty()).then(|| Value::Array(v.iter().cloned().map(Value::String).collect()))
        };
        put("listen", text(&self.listen));
        put("upstream", text(&self.upstream));
        put("host", text(&self.host));
        put("memory", text(&self.memory));
        put("max-body", text(&self.max_body));
        put("redis-url", text(&self.redis_url));
        put("redis-prefix", text(&self.redis_prefix));
        put("connect-timeout", text(&self.connect_timeout));
        put("response-timeout", text(&self.response_timeout));
        put(
            "max-upstream-connections",
            number(self.max_upstream_connections),
        );
        put("upstream-http2", self.upstream_http2.map(Value::Boolean));
        put("upstream-ca-file", text(&self.upstream_ca_file));
        put(
            "cache-status-header",
            self.cache_status_header.map(Value::Boolean),
        );
        put("allow", list(&self.allow));
        put("open-proxy", self.open_proxy.map(Value::Boolean));
        put("trusted-proxies", list(&self.trusted_proxies));
        put("via", text(&self.via));
        put("admin", self.admin.map(Value::Boolean));
        put("admin-listen", text(&self.admin_listen));
        put("admin-token", text(&self.admin_token));
        put("log-format", text(&self.log_format));
        put("access-log", self.access_log.map(Value::Boolean));
        put("shutdown-grace", text(&self.shutdown_grace));
        put("max-header-bytes", text(&self.max_header_bytes));
        put("header-read-timeout", text(&self.header_read_timeout));
        put("max-connections", number(self.max_connections));
        put("peers", list(&self.peers));
        put("peer-self", text(&self.peer_self));
        put("peer-secret", text(&self.peer_secret));
        put("peer-timeout", text(&self.peer_timeout));
        put("peer-hot-cache", text(&self.peer_hot_cache));
        put("peer-hot-ttl", text(&self.peer_hot_ttl));
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_have_the_files_names_and_win_over_it() {
        let dir = std::env::temp_dir().join(format!("corral-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("corral.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:7000\"\nmemory = \"64MiB\"\naccess-log = true\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "corral",
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--memory",
            "1GiB",
            "--access-log",
            "false",
            "--allow",
            "a.example",
            "--allow",
            "10.0.0.0/8",
        ])
        .unwrap();
        let Command::Serve(options) = cli.command else {
            panic!()
        };
        let config = options.load().unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:7000", "from the file");
        assert_eq!(config.memory.0, 1 << 30, "the flag wins");
        assert!(!config.access_log);
        assert_eq!(config.allow, ["a.example", "10.0.0.0/8"]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
