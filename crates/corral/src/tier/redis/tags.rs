//! Tags in the Redis tier: the cache's tag clock (one for the whole cluster) and each
//! tag's latest purge, as [`crate::tags`] keeps them in memory. A record notes the tick
//! its load began at (read when the load took the key's lock); a look at a tagged
//! record checks its tags' purges, one more round trip for tagged records only. And
//! soft purges of keys, which rewrite when a record turns stale.

use tokio::time::Instant;

use super::connection::Unavailable;
use super::store::RedisStore;
use crate::entry::Entry;
use crate::stats::RemoteOp;
use crate::tier::wall::Clocks;

impl<V: Send + Sync + 'static> RedisStore<V> {
    /// The cluster's tag clock now (see the `TICK` script).
    pub(crate) async fn tick(&self) -> Result<u64, Unavailable> {
        let tick_key = self.tag_key("tick");
        self.link
            .run(RemoteOp::Read, |mut c| {
                Box::pin(async move {
                    self.scripts
                        .tick
                        .key(&tick_key)
                        .invoke_async::<u64>(&mut c)
                        .await
                })
            })
            .await
    }

    /// `entry` as the cluster's tag purges since its load began left it: `None` if one
    /// purged it, stale from a soft one's instant.
    pub(crate) async fn judged(&self, entry: Entry<V>) -> Result<Option<Entry<V>>, Unavailable> {
        let Some(tagged) = entry.tagged.clone() else {
            return Ok(Some(entry));
        };
        let fields: Vec<String> = tagged
            .tags
            .iter()
            .flat_map(|tag| [format!("h:{tag}"), format!("s:{tag}")])
            .collect();
        let tags_key = self.tag_key("tags");
        let marks: Vec<Option<String>> = self
            .link
            .run(RemoteOp::Read, |mut c| {
                let fields = fields.clone();
                Box::pin(async move {
                    redis::cmd("HMGET")
                        .arg(&tags_key)
                        .arg(fields)
                        .query_async(&mut c)
                        .await
                })
            })
            .await?;
        let clocks = Clocks::now();
        let mut entry = entry;
        for pair in marks.chunks(2) {
            let [hard, soft] = pair else {
                break;
            };
            let tick = |mark: &str| mark.split(' ').next()?.parse::<u64>().ok();
            if hard
                .as_deref()
                .and_then(tick)
                .is_some_and(|t| t > tagged.tick)
            {
                return Ok(None);
            }
            let softened = soft.as_deref().and_then(|mark| {
                let (t, ms) = mark.split_once(' ')?;
                (t.parse::<u64>().ok()? > tagged.tick).then_some(ms.parse::<u64>().ok()?)
            });
            if let Some(ms) = softened {
                entry = entry.soften(clocks.instant(ms));
            }
        }
        Ok(Some(entry))
    }

    /// Purges `tag` for every server (softly: its entries turn stale now): one tick of
    /// the cluster's clock, noted as the tag's latest purge, and the news published.
    pub(crate) async fn purge_tag(&self, tag: &str, soft: bool) {
        let (tick_key, tags_key) = (self.tag_key("tick"), self.tag_key("tags"));
        let (mode, kind) = if soft {
            ("soft", "softtag")
        } else {
            ("hard", "tag")
        };
        let message = format!("{kind} {:x} {tag}", self.id);
        let now = unix_ms_now();
        let purged = self
            .link
            .run(RemoteOp::Write, |mut c| {
                Box::pin(async move {
                    self.scripts
                        .purge_tag
                        .key(&tick_key)
                        .key(&tags_key)
                        .arg(mode)
                        .arg(tag)
                        .arg(now)
                        .arg(&self.channel)
                        .arg(&message)
                        .invoke_async::<u64>(&mut c)
                        .await
                })
            })
            .await;
        if purged.is_err() {
            tracing::warn!(
                tag,
                "redis did not take a tag purge; other servers keep their entries"
            );
        }
    }

    /// Makes `key`'s value stale now in Redis (and deletes its lock, so a running load
    /// stores nothing); with `tell`, every server does the same in its memory.
    pub(crate) async fn soften_key(&self, key: &str, tell: bool) {
        let (value_key, lock_key) = (self.key("v", key), self.key("lock", key));
        let (channel, message) = if tell {
            (self.channel.clone(), format!("soft {:x} {key}", self.id))
        } else {
            (String::new(), String::new())
        };
        let at = unix_ms_now().to_be_bytes();
        let _ = self
            .link
            .run(RemoteOp::Write, |mut c| {
                Box::pin(async move {
                    self.scripts
                        .soften
                        .key(&value_key)
                        .key(&lock_key)
                        .arg(&at[..])
                        .arg(&channel)
                        .arg(&message)
                        .invoke_async::<i64>(&mut c)
                        .await
                })
            })
            .await;
    }
}

/// Now, in Unix milliseconds.
fn unix_ms_now() -> u64 {
    Clocks::now().unix_ms(Instant::now())
}
