//! The Redis tier's link to Redis: one multiplexed connection to a server or a cluster,
//! made on first use; every command through the circuit breaker, within the connect
//! timeout to get the connection and the command timeout for the reply.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::OnceCell;

use super::breaker::Breaker;
use super::builder::{Options, Target};
use crate::stats::{Metrics, RemoteOp};

/// One connection (multiplexed) to a server or a cluster.
#[derive(Clone)]
pub(crate) enum Connection {
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

/// The link: the tier's options, its connection once made, and its breaker.
pub(crate) struct Link {
    options: Options,
    connection: OnceCell<Connection>,
    breaker: Breaker,
    metrics: Arc<Metrics>,
}

impl Link {
    pub(crate) fn new(options: Options, metrics: Arc<Metrics>) -> Self {
        Link {
            breaker: Breaker::new(options.breaker_threshold, options.breaker_cool_down),
            options,
            connection: OnceCell::new(),
            metrics,
        }
    }

    /// The configured nodes of a cluster, from which its current masters are found;
    /// `None` for one server.
    pub(crate) fn cluster_seeds(&self) -> Option<&[redis::Client]> {
        match &self.options.target {
            Target::Single(_) => None,
            Target::Cluster { seeds, .. } => Some(seeds),
        }
    }

    /// Connects (eagerly, so that [`run`](Self::run) can time connecting apart from
    /// the command). Once connected, the connection reconnects by itself, each attempt
    /// within the connect timeout.
    async fn connect(&self) -> redis::RedisResult<Connection> {
        match &self.options.target {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.options.connect_timeout))
                    .set_response_timeout(Some(self.options.command_timeout))
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
    pub(crate) fn direct(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.options.connect_timeout))
            .set_response_timeout(Some(self.options.command_timeout))
    }

    /// Runs one operation against Redis, through the breaker: at most the connect
    /// timeout to get a connection, then the command timeout for the operation.
    pub(crate) async fn run<'a, T>(
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
                match tokio::time::timeout(self.options.connect_timeout, connecting).await {
                    Ok(Ok(connection)) => connection.clone(),
                    Ok(Err(error)) => return Err(format!("cannot connect: {error}")),
                    Err(_) => {
                        return Err(format!(
                            "no connection within {:?}",
                            self.options.connect_timeout
                        ));
                    }
                };
            match tokio::time::timeout(self.options.command_timeout, work(connection)).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err(format!(
                    "no answer within {:?}",
                    self.options.command_timeout
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
                    tracing::warn!(%error, "redis tier failing; skipping it for {:?} before probing again", self.options.breaker_cool_down);
                } else {
                    tracing::debug!(%error, op = op.label(), "redis command failed");
                }
                Err(Unavailable)
            }
        }
    }

    /// A connection for subscribing to events (a node of the cluster, if one).
    pub(crate) async fn pubsub(&self) -> redis::RedisResult<redis::aio::PubSub> {
        let clients = match &self.options.target {
            Target::Single(client) => std::slice::from_ref(&**client),
            Target::Cluster { seeds, .. } => seeds.as_slice(),
        };
        let mut last = None;
        for client in clients {
            match tokio::time::timeout(self.options.connect_timeout, client.get_async_pubsub())
                .await
            {
                Ok(Ok(pubsub)) => return Ok(pubsub),
                Ok(Err(error)) => last = Some(error),
                Err(_) => last = Some((redis::ErrorKind::Io, "connect timeout").into()),
            }
        }
        Err(last.unwrap_or_else(|| (redis::ErrorKind::Client, "no redis nodes").into()))
    }
}
