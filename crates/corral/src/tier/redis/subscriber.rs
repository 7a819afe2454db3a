//! The Redis tier's subscriber: one task per cache, subscribed to its prefix's events
//! channel for as long as the cache lives. A `done` wakes this server's waiters for
//! that key; another server's invalidation goes to the cache. When Redis goes away it
//! wakes every waiter (they look again, or wait out leases) and reconnects.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;

use super::events::Event;
use super::store::RedisStore;
use crate::tier::{Invalidation, Sink};

/// Listens to the other servers' events for as long as the cache lives: wakes local
/// waiters of finished loads, and hands invalidations to the cache's sink. Reconnects
/// (every second) when Redis goes away; meanwhile waiters fall back on lease expiry.
pub(crate) async fn listen<V: Send + Sync + 'static>(store: Weak<RedisStore<V>>, sink: Sink) {
    const RETRY: Duration = Duration::from_secs(1);
    loop {
        let Some(tier) = store.upgrade() else { return };
        let subscribed = async {
            let mut pubsub = tier.link.pubsub().await?;
            pubsub.subscribe(&tier.channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        }
        .await;
        let (id, channel) = (tier.id, tier.channel.clone());
        drop(tier);
        let mut messages = match subscribed {
            Ok(pubsub) => pubsub.into_on_message(),
            Err(error) => {
                tracing::debug!(%error, "redis events unavailable; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        tracing::debug!(%channel, "listening for redis events");
        loop {
            match tokio::time::timeout(RETRY, messages.next()).await {
                Err(_quiet) => {
                    if store.strong_count() == 0 {
                        return;
                    }
                }
                Ok(Some(message)) => {
                    let payload = String::from_utf8_lossy(message.get_payload_bytes()).into_owned();
                    let invalidation = match Event::parse(&payload, id) {
                        None => continue,
                        Some(Event::Done(key)) => {
                            let Some(tier) = store.upgrade() else { return };
                            tier.waiters.wake(key);
                            continue;
                        }
                        Some(Event::Invalidated(key)) => Invalidation::Key(key),
                        Some(Event::Purged(prefix)) => Invalidation::Prefix(prefix),
                        Some(Event::Cleared) => Invalidation::All,
                        Some(Event::TagPurged { tag, soft }) => Invalidation::Tag { tag, soft },
                        Some(Event::Softened(key)) => Invalidation::Soften(key),
                        Some(Event::SoftPurged(prefix)) => Invalidation::SoftenPrefix(prefix),
                    };
                    if !sink(invalidation).await {
                        return;
                    }
                }
                Ok(None) => {
                    if let Some(tier) = store.upgrade() {
                        tier.waiters.wake_all();
                    }
                    break;
                }
            }
        }
    }
}
