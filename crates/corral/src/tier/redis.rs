//! The Redis tier: a cache shared by many servers, with a cross-server lock so that one
//! load runs per cluster, and a circuit breaker so that a server keeps working from
//! memory when Redis is down.
//!
//! Keys, for a cache key `K` under prefix `P` (the `{K}` hash tag keeps a key's records
//! in one cluster slot):
//!
//! | key | holds |
//! |---|---|
//! | `P` `v:{K}` | the value's [record](record), expiring with the entry (`PX`) |
//! | `P` `lock:{K}` | the load lock: a random token, `SET NX PX <lease>`, renewed while loading |
//! | `P` `err:{K}` | a failed load's message, shared with other servers for `error_ttl` |
//! | channel `P` `events` | `done K` (a load finished), `inval K`, `purge K…`, `clear` |
//!
//! A load stores its outcome only while it still holds its lock. Invalidating a key
//! (alone, by key prefix, or by clearing) deletes its lock along with its value, so a
//! load that was running then stores nothing: nothing loaded before an invalidation
//! survives it, on any server. The next caller takes a new lock and loads afresh.
//!
//! `invalidate_prefix` and `clear` delete only keys of these three shapes under `P`,
//! so a cache whose prefix extends this one's (`shop:eu:` for `shop:`) is left alone.
//! On a cluster they SCAN every master, found afresh from the configured nodes
//! (`CLUSTER SLOTS`) each time, so one configured node is enough.
//!
//! Connecting is timed apart from commands: a command waits at most `connect_timeout`
//! for the tier's connection, then at most `command_timeout` for its reply. Once
//! connected, reconnecting after Redis went away runs in the background, each attempt
//! within `connect_timeout`; commands meanwhile fail after their `command_timeout`.

mod breaker;
mod cluster;
mod events;
pub(crate) mod record;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::OnceCell;

use crate::ConfigError;
use crate::codec::{Codec, MessagePack};
use crate::entry::Entry;
use crate::stats::{Metrics, RemoteOp};

use breaker::Breaker;
pub(crate) use events::{Event, Waiters};

/// The default time establishing a connection may take: 1 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The default time one Redis command may take once connected: 250 ms.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(250);
/// The default lease of the load lock (renewed every third of it while loading): 5 s.
pub const DEFAULT_LOCK_LEASE: Duration = Duration::from_secs(5);
/// The default time a failed load's error is shared with other servers: 1 s.
pub const DEFAULT_ERROR_TTL: Duration = Duration::from_secs(1);
/// The default number of consecutive failures that opens the circuit breaker: 3.
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 3;
/// The default time Redis is skipped once the breaker opens, before a probe: 1 s.
pub const DEFAULT_BREAKER_COOL_DOWN: Duration = Duration::from_secs(1);

/// A Redis tier for a [`Cache`](crate::Cache): give it to
/// [`CacheBuilder::redis`](crate::CacheBuilder::redis).
///
/// ```no_run
/// use corral::{Cache, RedisTier};
///
/// # fn demo() -> Result<(), corral::ConfigError> {
/// let cache: Cache<String> = Cache::builder()
///     .redis(RedisTier::builder("redis://127.0.0.1:6379").prefix("shop:").build()?)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisTier<C = MessagePack> {
    pub(crate) config: Config,
    pub(crate) codec: C,
}

/// Where Redis is.
#[derive(Clone)]
enum Target {
    Single(Box<redis::Client>),
    Cluster {
        client: Box<ClusterClient>,
        /// The configured nodes, from which the current masters are found.
        seeds: Vec<redis::Client>,
    },
}

/// A Redis tier's options.
#[derive(Clone)]
pub(crate) struct Config {
    target: Target,
    prefix: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    pub(crate) lock_lease: Duration,
    error_ttl: Duration,
    breaker_threshold: u32,
    breaker_cool_down: Duration,
}

/// Builds a [`RedisTier`]. Every option has a default but the prefix, which is
/// required (so two caches can never read each other's keys, and `clear` deletes only
/// this cache's).
///
/// | option | default |
/// |---|---|
/// | [`prefix`](Self::prefix) | required, never empty |
/// | [`connect_timeout`](Self::connect_timeout) | 1 s |
/// | [`command_timeout`](Self::command_timeout) | 250 ms |
/// | [`lock_lease`](Self::lock_lease) | 5 s, renewed while the load runs |
/// | [`error_ttl`](Self::error_ttl) | 1 s |
/// | [`breaker`](Self::breaker) | open after 3 consecutive failures, probe after 1 s |
/// | [`codec`](Self::codec) | [`MessagePack`] |
#[must_use = "a builder does nothing until `build` is called"]
pub struct RedisTierBuilder<C = MessagePack> {
    urls: Vec<String>,
    cluster: bool,
    prefix: Option<String>,
    connect_timeout: Duration,
    command_timeout: Duration,
    lock_lease: Duration,
    error_ttl: Duration,
    breaker_threshold: u32,
    breaker_cool_down: Duration,
    #[cfg(feature = "redis-tls")]
    root_certificates: Option<Vec<u8>>,
    codec: C,
}

impl RedisTier<MessagePack> {
    /// A tier on one Redis server: `redis://host:port/db`, `rediss://…` (TLS), or
    /// `redis+unix:///path/to/socket`.
    pub fn builder(url: impl Into<String>) -> RedisTierBuilder<MessagePack> {
        RedisTierBuilder::new(vec![url.into()], false)
    }

    /// A tier on a Redis Cluster, reached through any of these nodes (one is enough:
    /// the others are found from it).
    pub fn cluster_builder<U: Into<String>>(
        urls: impl IntoIterator<Item = U>,
    ) -> RedisTierBuilder<MessagePack> {
        RedisTierBuilder::new(urls.into_iter().map(Into::into).collect(), true)
    }
}

impl RedisTierBuilder<MessagePack> {
    fn new(urls: Vec<String>, cluster: bool) -> Self {
        RedisTierBuilder {
            urls,
            cluster,
            prefix: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            lock_lease: DEFAULT_LOCK_LEASE,
            error_ttl: DEFAULT_ERROR_TTL,
            breaker_threshold: DEFAULT_BREAKER_THRESHOLD,
            breaker_cool_down: DEFAULT_BREAKER_COOL_DOWN,
            #[cfg(feature = "redis-tls")]
            root_certificates: None,
            codec: MessagePack,
        }
    }
}

impl<C> RedisTierBuilder<C> {
    /// The prefix of every key this cache writes (e.g. `"shop:"`). Required.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// How long establishing a connection may take (each attempt, reconnections after
    /// Redis went away included). A command waits at most this for the tier to
    /// connect, then its [`command_timeout`](Self::command_timeout) for its reply.
    /// Default 1 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one command may take once connected (the time to connect is
    /// [`connect_timeout`](Self::connect_timeout)'s); a slower one counts as a failure.
    /// Default 250 ms.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// The lease of the cross-server load lock. The winner renews it while its load
    /// runs; if the winner dies, another server takes over within one lease. Default 5 s.
    pub fn lock_lease(mut self, lease: Duration) -> Self {
        self.lock_lease = lease;
        self
    }

    /// How long a failed load's error is given to other servers' waiters instead of
    /// loading again. Default 1 s.
    pub fn error_ttl(mut self, ttl: Duration) -> Self {
        self.error_ttl = ttl;
        self
    }

    /// The circuit breaker: after `threshold` consecutive failures Redis is skipped
    /// for `cool_down`, then probed by one command at a time. Default 3 and 1 s.
    pub fn breaker(mut self, threshold: u32, cool_down: Duration) -> Self {
        self.breaker_threshold = threshold;
        self.breaker_cool_down = cool_down;
        self
    }

    /// Trusts these root certificates (PEM) for `rediss://` servers, instead of the
    /// system's (for a private CA); for a cluster, on every node.
    #[cfg(feature = "redis-tls")]
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates = Some(pem.into());
        self
    }

    /// How values are encoded: [`MessagePack`] (default), [`Json`](crate::Json) or
    /// [`Raw`](crate::Raw) bytes.
    pub fn codec<D>(self, codec: D) -> RedisTierBuilder<D> {
        RedisTierBuilder {
            urls: self.urls,
            cluster: self.cluster,
            prefix: self.prefix,
            connect_timeout: self.connect_timeout,
            command_timeout: self.command_timeout,
            lock_lease: self.lock_lease,
            error_ttl: self.error_ttl,
            breaker_threshold: self.breaker_threshold,
            breaker_cool_down: self.breaker_cool_down,
            #[cfg(feature = "redis-tls")]
            root_certificates: self.root_certificates,
            codec,
        }
    }

    /// Checks the options. Nothing connects yet: the tier connects on first use, so a
    /// server starts whether or not Redis is up.
    pub fn build(mut self) -> Result<RedisTier<C>, ConfigError> {
        let prefix = self
            .prefix
            .take()
            .filter(|p| !p.is_empty())
            .ok_or(ConfigError::EmptyRedisPrefix)?;
        if self.command_timeout.is_zero()
            || self.connect_timeout.is_zero()
            || self.lock_lease.is_zero()
        {
            return Err(ConfigError::ZeroRedisTimeout);
        }
        let invalid = |url: &str, e: redis::RedisError| {
            let hint = if url.starts_with("rediss://") && !cfg!(feature = "redis-tls") {
                " (rediss:// needs corral's `redis-tls` feature)"
            } else {
                ""
            };
            ConfigError::InvalidRedisUrl(format!("{url}: {e}{hint}"))
        };
        #[cfg(feature = "redis-tls")]
        {
            // rustls needs one process-wide crypto provider; keep the application's if
            // it installed one.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let target = if self.cluster {
            if self.urls.is_empty() {
                return Err(ConfigError::InvalidRedisUrl(
                    "a cluster needs at least one node".into(),
                ));
            }
            let seeds = self
                .urls
                .iter()
                .map(|url| self.client(url).map_err(|e| invalid(url, e)))
                .collect::<Result<Vec<_>, _>>()?;
            let builder = ClusterClientBuilder::new(
                seeds.iter().map(|seed| seed.get_connection_info().clone()),
            )
            .connection_timeout(self.connect_timeout)
            .response_timeout(self.command_timeout)
            .retries(1);
            #[cfg(feature = "redis-tls")]
            let builder = match self.certificates() {
                Some(certificates) => builder.certs(certificates),
                None => builder,
            };
            let client = builder
                .build()
                .map_err(|e| invalid(&self.urls.join(", "), e))?;
            Target::Cluster {
                client: Box::new(client),
                seeds,
            }
        } else {
            let url = self.urls.first().map(String::as_str).unwrap_or_default();
            Target::Single(Box::new(self.client(url).map_err(|e| invalid(url, e))?))
        };
        Ok(self.finish(target, prefix))
    }

    /// A client for one server, trusting the configured root certificates if any.
    fn client(&self, url: &str) -> redis::RedisResult<redis::Client> {
        #[cfg(feature = "redis-tls")]
        if let Some(certificates) = self.certificates() {
            return redis::Client::build_with_tls(url, certificates);
        }
        redis::Client::open(url)
    }

    #[cfg(feature = "redis-tls")]
    fn certificates(&self) -> Option<redis::TlsCertificates> {
        self.root_certificates
            .as_ref()
            .map(|pem| redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            })
    }

    fn finish(self, target: Target, prefix: String) -> RedisTier<C> {
        RedisTier {
            config: Config {
                target,
                prefix,
                connect_timeout: self.connect_timeout,
                command_timeout: self.command_timeout,
                lock_lease: self.lock_lease,
                error_ttl: self.error_ttl,
                breaker_threshold: self.breaker_threshold,
                breaker_cool_down: self.breaker_cool_down,
            },
            codec: self.codec,
        }
    }
}

/// One connection (multiplexed) to a server or a cluster.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// Redis is not answering (down, slow, refusing, or the breaker is open): the caller
/// carries on without it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unavailable;

/// What one look at a key in Redis found.
pub(crate) struct Probe<V> {
    /// The stored entry, if there is one that decodes.
    pub value: Option<Entry<V>>,
    /// The message of a load that failed on another server moments ago.
    pub error: Option<String>,
    /// How long the load lock is still held, if someone holds it.
    pub lock_ttl: Option<Duration>,
}

/// How a load that held the lock ended.
pub(crate) enum Finish<'a, V> {
    /// Store this entry.
    Value(&'a Entry<V>),
    /// Share this error with other servers' waiters.
    Error(&'a str),
    /// Nothing to store.
    Nothing,
}

/// If the lock is still ours, stores a value or shares an error and releases the
/// lock; then wakes the waiters of every server, in one step. A lock that is no
/// longer ours was deleted by an invalidation (or its lease ran out and another server
/// took over): this load's outcome is stale and is not stored.
const FINISH: &str = r#"
if redis.call("GET", KEYS[2]) == ARGV[1] then
  if ARGV[2] == "value" then
    redis.call("SET", KEYS[1], ARGV[3], "PX", ARGV[4])
    redis.call("DEL", KEYS[3])
  elseif ARGV[2] == "error" then
    redis.call("SET", KEYS[3], ARGV[3], "PX", ARGV[4])
  end
  redis.call("DEL", KEYS[2])
end
redis.call("PUBLISH", ARGV[5], ARGV[6])
return 1
"#;

/// Extends the lock's lease if it is still ours.
const RENEW: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
"#;

/// Deletes a key's value, error and lock (so a load running for it stores nothing),
/// and tells every server.
const INVALIDATE: &str = r#"
redis.call("DEL", KEYS[1], KEYS[2], KEYS[3])
redis.call("PUBLISH", ARGV[1], ARGV[2])
return 1
"#;

/// The shapes of the keys this tier writes for a cache key `K`: `P` `kind:{K}`.
const KEY_KINDS: [&str; 3] = ["v", "err", "lock"];

/// The Redis tier of one cache, for its value type.
pub(crate) struct RedisRemote<V> {
    config: Config,
    codec: Arc<dyn Codec<V>>,
    connection: OnceCell<Connection>,
    breaker: Breaker,
    pub(crate) waiters: Waiters,
    /// This cache instance, in the events it publishes (so it ignores its own).
    pub(crate) id: u64,
    channel: String,
    metrics: Arc<Metrics>,
    finish: redis::Script,
    renew: redis::Script,
    invalidate: redis::Script,
}

impl<V: Send + Sync + 'static> RedisRemote<V> {
    pub(crate) fn new(spec: crate::builder::RemoteSpec<V>, metrics: Arc<Metrics>) -> Self {
        let channel = format!("{}events", spec.config.prefix);
        RedisRemote {
            breaker: Breaker::new(spec.config.breaker_threshold, spec.config.breaker_cool_down),
            config: spec.config,
            codec: spec.codec,
            connection: OnceCell::new(),
            waiters: Waiters::default(),
            id: crate::tier::redis::events::instance_id(),
            channel,
            metrics,
            finish: redis::Script::new(FINISH),
            renew: redis::Script::new(RENEW),
            invalidate: redis::Script::new(INVALIDATE),
        }
    }

    pub(crate) fn lock_lease(&self) -> Duration {
        self.config.lock_lease
    }

    fn key(&self, kind: &str, key: &str) -> String {
        format!("{}{kind}:{{{key}}}", self.config.prefix)
    }

    /// Connects (eagerly, so that [`run`](Self::run) can time connecting apart from
    /// the command). Once connected, the connection reconnects by itself, each attempt
    /// within the connect timeout.
    async fn connect(&self) -> redis::RedisResult<Connection> {
        match &self.config.target {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.config.connect_timeout))
                    .set_response_timeout(Some(self.config.command_timeout))
                    .set_number_of_retries(1);
                Ok(Connection::Single(
                    ConnectionManager::new_with_config((**client).clone(), config).await?,
                ))
            }
            Target::Cluster { client, .. } => {
                Ok(Connection::Cluster(client.get_async_connection().await?))
            }
        }
    }

    /// The settings of a direct connection (to scan a cluster's masters).
    fn direct(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(Some(self.config.command_timeout))
    }

    /// Runs one operation against Redis, through the breaker: at most the connect
    /// timeout to get a connection, then the command timeout for the operation.
    async fn run<'a, T>(
        &'a self,
        op: RemoteOp,
        work: impl FnOnce(Connection) -> BoxFuture<'a, redis::RedisResult<T>>,
    ) -> Result<T, Unavailable> {
        // Held across the attempt: if this future is dropped mid-probe, the permit's
        // drop reopens the breaker rather than leaving it probing for ever.
        let Some(permit) = self.breaker.permit() else {
            self.metrics.remote(op, false);
            return Err(Unavailable);
        };
        let attempt = async {
            let connecting = self.connection.get_or_try_init(|| self.connect());
            let connection =
                match tokio::time::timeout(self.config.connect_timeout, connecting).await {
                    Ok(Ok(connection)) => connection.clone(),
                    Ok(Err(error)) => return Err(format!("cannot connect: {error}")),
                    Err(_) => {
                        return Err(format!(
                            "no connection within {:?}",
                            self.config.connect_timeout
                        ));
                    }
                };
            match tokio::time::timeout(self.config.command_timeout, work(connection)).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err(format!(
                    "no answer within {:?}",
                    self.config.command_timeout
                )),
            }
        };
        match attempt.await {
            Ok(value) => {
                if permit.is_probe() {
                    tracing::info!("redis tier answers again; using it");
                }
                permit.succeeded();
                self.metrics.remote(op, true);
                self.metrics.breaker(false);
                Ok(value)
            }
            Err(error) => {
                self.metrics.remote(op, false);
                if permit.failed() {
                    self.metrics.breaker(true);
                    tracing::warn!(%error, "redis tier failing; skipping it for {:?} before probing again", self.config.breaker_cool_down);
                } else {
                    tracing::debug!(%error, op = op.label(), "redis command failed");
                }
                Err(Unavailable)
            }
        }
    }

    /// Looks at a key: its value, a shared error, and who holds its lock.
    pub(crate) async fn probe(&self, key: &str) -> Result<Probe<V>, Unavailable> {
        let (value_key, error_key, lock_key) = (
            self.key("v", key),
            self.key("err", key),
            self.key("lock", key),
        );
        let (raw, error, lock_ms): (Option<Vec<u8>>, Option<String>, i64) = self
            .run(RemoteOp::Read, |mut c| {
                Box::pin(async move {
                    redis::pipe()
                        .get(&value_key)
                        .get(&error_key)
                        .pttl(&lock_key)
                        .query_async(&mut c)
                        .await
                })
            })
            .await?;
        let value = raw.and_then(|bytes| match self.decode(&bytes) {
            Ok(entry) => Some(entry),
            Err(error) => {
                self.metrics.remote_decode_error();
                tracing::warn!(key, %error, "undecodable record in redis; treated as a miss");
                None
            }
        });
        Ok(Probe {
            value,
            error,
            lock_ttl: (lock_ms > 0).then(|| Duration::from_millis(lock_ms as u64)),
        })
    }

    fn decode(&self, bytes: &[u8]) -> Result<Entry<V>, record::RecordError> {
        let record = record::decode(bytes, self.codec.id())?;
        Ok(Entry {
            value: self.codec.decode(record.payload)?,
            stored_at: record.stored_at,
            fresh_until: record.fresh_until,
            stale_until: record.stale_until,
        })
    }

    fn encode(&self, entry: &Entry<V>) -> Option<Vec<u8>> {
        match self.codec.encode(&entry.value) {
            Ok(payload) => Some(record::encode(entry, self.codec.id(), &payload)),
            Err(error) => {
                tracing::warn!(%error, "value not encodable for redis; kept in memory only");
                None
            }
        }
    }

    /// Tries to take the load lock; `Some(token)` if this server won it.
    pub(crate) async fn lock(&self, key: &str) -> Result<Option<String>, Unavailable> {
        let lock_key = self.key("lock", key);
        let token = format!(
            "{:016x}{:016x}",
            self.id,
            crate::tier::redis::events::instance_id()
        );
        let lease = self.config.lock_lease.as_millis() as u64;
        let won: Option<String> = self
            .run(RemoteOp::Lock, |mut c| {
                let token = token.clone();
                Box::pin(async move {
                    redis::cmd("SET")
                        .arg(&lock_key)
                        .arg(&token)
                        .arg("NX")
                        .arg("PX")
                        .arg(lease)
                        .query_async(&mut c)
                        .await
                })
            })
            .await?;
        Ok(won.map(|_| token))
    }

    /// Extends the lock's lease while the load runs; `false` if it is no longer ours.
    pub(crate) async fn renew(&self, key: &str, token: &str) -> bool {
        let lock_key = self.key("lock", key);
        let lease = self.config.lock_lease.as_millis() as u64;
        let renewed: Result<i64, Unavailable> = self
            .run(RemoteOp::Lock, |mut c| {
                Box::pin(async move {
                    self.renew
                        .key(&lock_key)
                        .arg(token)
                        .arg(lease)
                        .invoke_async(&mut c)
                        .await
                })
            })
            .await;
        renewed.is_ok_and(|n| n == 1)
    }

    /// Ends a load that held the lock (see [`Finish`]).
    pub(crate) async fn finish(&self, key: &str, token: &str, outcome: Finish<'_, V>) {
        let (mode, payload, px) = match outcome {
            Finish::Value(entry) => match self.encode(entry) {
                Some(bytes) => ("value", bytes, record::millis_until(entry.stale_until)),
                None => ("none", Vec::new(), 1),
            },
            Finish::Error(message) => (
                "error",
                message.as_bytes().to_vec(),
                self.config.error_ttl.as_millis().max(1) as u64,
            ),
            Finish::Nothing => ("none", Vec::new(), 1),
        };
        let (value_key, lock_key, error_key) = (
            self.key("v", key),
            self.key("lock", key),
            self.key("err", key),
        );
        let message = format!("done {:x} {key}", self.id);
        let _ = self
            .run(RemoteOp::Write, |mut c| {
                Box::pin(async move {
                    self.finish
                        .key(&value_key)
                        .key(&lock_key)
                        .key(&error_key)
                        .arg(token)
                        .arg(mode)
                        .arg(payload)
                        .arg(px)
                        .arg(&self.channel)
                        .arg(&message)
                        .invoke_async::<i64>(&mut c)
                        .await
                })
            })
            .await;
    }

    /// Stores an entry (no lock involved: an insert, or a related entry of a load).
    pub(crate) async fn store(&self, key: &str, entry: &Entry<V>) {
        let Some(bytes) = self.encode(entry) else {
            return;
        };
        let value_key = self.key("v", key);
        let px = record::millis_until(entry.stale_until);
        let _ = self
            .run(RemoteOp::Write, |mut c| {
                Box::pin(async move {
                    redis::cmd("SET")
                        .arg(&value_key)
                        .arg(bytes)
                        .arg("PX")
                        .arg(px)
                        .query_async::<()>(&mut c)
                        .await
                })
            })
            .await;
    }

    /// Deletes a key in Redis (with its lock, so a load running for it stores nothing)
    /// and tells every server to drop its copy.
    pub(crate) async fn invalidate(&self, key: &str) {
        let (value_key, error_key, lock_key) = (
            self.key("v", key),
            self.key("err", key),
            self.key("lock", key),
        );
        let message = format!("inval {:x} {key}", self.id);
        let _ = self
            .run(RemoteOp::Write, |mut c| {
                Box::pin(async move {
                    self.invalidate
                        .key(&value_key)
                        .key(&error_key)
                        .key(&lock_key)
                        .arg(&self.channel)
                        .arg(&message)
                        .invoke_async::<i64>(&mut c)
                        .await
                })
            })
            .await;
    }

    /// Deletes this cache's values, errors and locks (so running loads store nothing),
    /// and tells every server to clear its memory.
    pub(crate) async fn clear(&self) {
        self.unlink_keys_starting("").await;
        self.publish(format!("clear {:x} -", self.id)).await;
    }

    /// Deletes the values, errors and locks of the keys starting with `prefix`, and
    /// tells every server to drop its copies.
    pub(crate) async fn invalidate_prefix(&self, prefix: &str) {
        self.unlink_keys_starting(prefix).await;
        self.publish(format!("purge {:x} {prefix}", self.id)).await;
    }

    /// Deletes this cache's keys (of every [kind](KEY_KINDS)) for the cache keys
    /// starting with `prefix`, and no other cache's: a cache whose prefix extends this
    /// one's has keys that match the SCAN pattern but not the kinds.
    async fn unlink_keys_starting(&self, prefix: &str) {
        let pattern = format!(
            "{}*:{{{}*",
            escape_glob(&self.config.prefix),
            escape_glob(prefix)
        );
        let ours = KEY_KINDS.map(|kind| format!("{}{kind}:{{{prefix}", self.config.prefix));
        self.unlink_matching(&pattern, |key| {
            ours.iter().any(|start| key.starts_with(start))
        })
        .await;
    }

    /// SCANs for `pattern` (on every master of a cluster, as the cluster is now) and
    /// UNLINKs what `admit` admits.
    async fn unlink_matching(&self, pattern: &str, admit: impl Fn(&str) -> bool) {
        let seeds = match &self.config.target {
            Target::Single(_) => {
                return self.unlink_scanned(ScanNode::Server, pattern, &admit).await;
            }
            Target::Cluster { seeds, .. } => seeds,
        };
        let config = self.direct();
        let masters = match cluster::masters(seeds, &config).await {
            Ok(masters) => masters,
            Err(error) => {
                tracing::warn!(%error, "cannot find the redis cluster's masters; nothing deleted there");
                return;
            }
        };
        for master in masters {
            match master
                .get_multiplexed_async_connection_with_config(&config)
                .await
            {
                Ok(connection) => {
                    self.unlink_scanned(ScanNode::Master(connection), pattern, &admit)
                        .await;
                }
                Err(error) => {
                    let node = master.get_connection_info().addr();
                    tracing::warn!(%error, %node, "cannot reach a redis cluster master; its keys are left");
                }
            }
        }
    }

    /// SCANs one server for `pattern` and UNLINKs what `admit` admits, in batches.
    async fn unlink_scanned(
        &self,
        mut node: ScanNode,
        pattern: &str,
        admit: &impl Fn(&str) -> bool,
    ) {
        let mut cursor = 0u64;
        loop {
            let Ok((next, keys)) = self.scan(&mut node, cursor, pattern).await else {
                break;
            };
            let keys: Vec<String> = keys.into_iter().filter(|k| admit(k)).collect();
            for batch in keys.chunks(100) {
                // One UNLINK per batch; a cluster connection splits it by shard.
                let batch = batch.to_vec();
                let _ = self
                    .run(RemoteOp::Write, |mut c| {
                        Box::pin(async move {
                            redis::cmd("UNLINK")
                                .arg(&batch)
                                .query_async::<i64>(&mut c)
                                .await
                        })
                    })
                    .await;
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }

    async fn publish(&self, message: String) {
        let channel = self.channel.clone();
        let _ = self
            .run(RemoteOp::Write, |mut c| {
                Box::pin(async move {
                    redis::cmd("PUBLISH")
                        .arg(&channel)
                        .arg(&message)
                        .query_async::<i64>(&mut c)
                        .await
                })
            })
            .await;
    }

    /// One page of a SCAN of `node`.
    async fn scan(
        &self,
        node: &mut ScanNode,
        cursor: u64,
        pattern: &str,
    ) -> Result<(u64, Vec<String>), Unavailable> {
        let mut command = redis::cmd("SCAN");
        command
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(500);
        match node {
            ScanNode::Server => {
                self.run(RemoteOp::Read, |mut c| {
                    Box::pin(async move { command.query_async(&mut c).await })
                })
                .await
            }
            ScanNode::Master(connection) => {
                command.query_async(connection).await.map_err(|error| {
                    tracing::debug!(%error, "scanning a redis cluster master failed");
                    Unavailable
                })
            }
        }
    }

    /// A connection for subscribing to events (a node of the cluster, if one).
    pub(crate) async fn pubsub(&self) -> redis::RedisResult<redis::aio::PubSub> {
        let clients = match &self.config.target {
            Target::Single(client) => std::slice::from_ref(&**client),
            Target::Cluster { seeds, .. } => seeds.as_slice(),
        };
        let mut last = None;
        for client in clients {
            match tokio::time::timeout(self.config.connect_timeout, client.get_async_pubsub()).await
            {
                Ok(Ok(pubsub)) => return Ok(pubsub),
                Ok(Err(error)) => last = Some(error),
                Err(_) => last = Some((redis::ErrorKind::Io, "connect timeout").into()),
            }
        }
        Err(last.unwrap_or_else(|| (redis::ErrorKind::Client, "no redis nodes").into()))
    }

    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }
}

/// A server that `clear` and `invalidate_prefix` SCAN.
enum ScanNode {
    /// The one server, through the tier's connection.
    Server,
    /// One master of a cluster, directly.
    Master(MultiplexedConnection),
}

/// Escapes a prefix for use in a SCAN pattern.
fn escape_glob(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_required_and_urls_are_checked() {
        let missing = RedisTier::builder("redis://127.0.0.1").build();
        assert!(matches!(missing, Err(ConfigError::EmptyRedisPrefix)));
        let empty = RedisTier::builder("redis://127.0.0.1").prefix("").build();
        assert!(matches!(empty, Err(ConfigError::EmptyRedisPrefix)));
        let bad = RedisTier::builder("http://nope").prefix("p:").build();
        assert!(matches!(bad, Err(ConfigError::InvalidRedisUrl(_))));
        let zero = RedisTier::builder("redis://127.0.0.1")
            .prefix("p:")
            .command_timeout(Duration::ZERO)
            .build();
        assert!(matches!(zero, Err(ConfigError::ZeroRedisTimeout)));
        assert!(
            RedisTier::builder("redis+unix:///tmp/redis.sock")
                .prefix("p:")
                .build()
                .is_ok()
        );
        assert!(
            RedisTier::cluster_builder(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"])
                .prefix("p:")
                .build()
                .is_ok()
        );
    }

    #[test]
    fn scan_patterns_escape_the_prefix() {
        assert_eq!(escape_glob("app[1]*:"), "app\\[1\\]\\*:");
    }
}
