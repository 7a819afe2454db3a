//! Purging many keys: `invalidate_prefix` and `clear` SCAN for this cache's records
//! (on every master of a cluster, found afresh each time), UNLINK them in batches, and
//! tell the other servers; `soften_prefix` SCANs for values and makes each stale. Only
//! keys of this cache's [shapes](KEY_KINDS) are touched, so a cache whose prefix
//! extends this one's is left alone.

use redis::aio::MultiplexedConnection;

use super::cluster;
use super::connection::Unavailable;
use super::store::{KEY_KINDS, RedisStore};
use crate::stats::RemoteOp;

impl<V: Send + Sync + 'static> RedisStore<V> {
    /// Deletes this cache's values, errors and locks (so running loads store nothing),
    /// and tells every server to clear its memory.
    pub(crate) async fn purge_all(&self) {
        self.unlink_keys_starting("").await;
        self.publish(format!("clear {:x} -", self.id)).await;
    }

    /// Deletes the values, errors and locks of the keys starting with `prefix`, and
    /// tells every server to drop its copies.
    pub(crate) async fn purge_prefix(&self, prefix: &str) {
        self.unlink_keys_starting(prefix).await;
        self.publish(format!("purge {:x} {prefix}", self.id)).await;
    }

    /// Makes the values of the keys starting with `prefix` stale now, deletes their
    /// locks (so running loads store nothing, also for keys with no value yet), and
    /// tells every server to do the same in its memory.
    pub(crate) async fn soften_prefix(&self, prefix: &str) {
        let matching = |kind: &str| {
            let start = format!("{}{kind}:{{", self.prefix);
            let pattern = format!(
                "{}{kind}:{{{}*",
                escape_glob(&self.prefix),
                escape_glob(prefix)
            );
            (format!("{start}{prefix}"), pattern, start)
        };
        let (ours, pattern, values) = matching("v");
        let admit = |key: &str| key.starts_with(&ours);
        self.for_each_matching(&pattern, admit, Action::Soften(&values))
            .await;
        let (ours, pattern, _) = matching("lock");
        let admit = |key: &str| key.starts_with(&ours);
        self.for_each_matching(&pattern, admit, Action::Unlink)
            .await;
        self.publish(format!("softpurge {:x} {prefix}", self.id))
            .await;
    }

    /// Deletes this cache's keys (of every [kind](KEY_KINDS)) for the cache keys
    /// starting with `prefix`, and no other cache's: a cache whose prefix extends this
    /// one's has keys that match the SCAN pattern but not the kinds.
    async fn unlink_keys_starting(&self, prefix: &str) {
        let pattern = format!("{}*:{{{}*", escape_glob(&self.prefix), escape_glob(prefix));
        let ours = KEY_KINDS.map(|kind| format!("{}{kind}:{{{prefix}", self.prefix));
        let admit = |key: &str| ours.iter().any(|start| key.starts_with(start));
        self.for_each_matching(&pattern, admit, Action::Unlink)
            .await;
    }

    /// SCANs for `pattern` (on every master of a cluster, as the cluster is now) and
    /// does `action` to what `admit` admits.
    async fn for_each_matching(
        &self,
        pattern: &str,
        admit: impl Fn(&str) -> bool,
        action: Action<'_>,
    ) {
        let Some(seeds) = self.link.cluster_seeds() else {
            return self
                .scanned(ScanNode::Server, pattern, &admit, action)
                .await;
        };
        let config = self.link.direct();
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
                    self.scanned(ScanNode::Master(connection), pattern, &admit, action)
                        .await;
                }
                Err(error) => {
                    let node = master.get_connection_info().addr();
                    tracing::warn!(%error, %node, "cannot reach a redis cluster master; its keys are left");
                }
            }
        }
    }

    /// SCANs one server for `pattern` and does `action` to what `admit` admits.
    async fn scanned(
        &self,
        mut node: ScanNode,
        pattern: &str,
        admit: &impl Fn(&str) -> bool,
        action: Action<'_>,
    ) {
        let mut cursor = 0u64;
        loop {
            let Ok((next, keys)) = self.scan(&mut node, cursor, pattern).await else {
                break;
            };
            let keys: Vec<String> = keys.into_iter().filter(|k| admit(k)).collect();
            match action {
                Action::Unlink => self.unlink(&keys).await,
                Action::Soften(values) => {
                    for key in &keys {
                        if let Some(key) =
                            key.strip_prefix(values).and_then(|k| k.strip_suffix('}'))
                        {
                            self.soften_key(key, false).await;
                        }
                    }
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }

    /// UNLINKs keys in batches.
    async fn unlink(&self, keys: &[String]) {
        for batch in keys.chunks(100) {
            // One UNLINK per batch; a cluster connection splits it by shard.
            let batch = batch.to_vec();
            let _ = self
                .link
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
    }

    async fn publish(&self, message: String) {
        let channel = self.channel.clone();
        let _ = self
            .link
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
                self.link
                    .run(RemoteOp::Read, |mut c| {
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
}

/// What a scan does to the keys it admits.
#[derive(Clone, Copy)]
enum Action<'a> {
    /// Deletes them.
    Unlink,
    /// Makes them stale: values, named by this start and their cache key in braces.
    Soften(&'a str),
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
    fn scan_patterns_escape_the_prefix() {
        assert_eq!(escape_glob("app[1]*:"), "app\\[1\\]\\*:");
    }
}
