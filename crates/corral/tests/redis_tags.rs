//! Tag purges and soft purges through the Redis tier, against a real `redis-server`
//! on loopback: three servers sharing it, 10 000 entries over 100 tags, one tag purged
//! on one server, exactly its entries gone on all three and for a server that starts
//! afterwards; a load running across a purge stores nothing in Redis; soft purges make
//! the shared entries stale for every server, and they are refreshed once.

#![cfg(feature = "redis")]

#[allow(dead_code)]
#[path = "support/redis.rs"]
mod redis_server;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use corral::redis::RedisTier;
use corral::{Cache, Freshness, Loaded};
use futures_util::future::join_all;
use redis_server::RedisServer;
use support::HeldLoad;

fn cache(url: &str) -> Cache<String> {
    let tier = RedisTier::builder(url)
        .prefix("tags:")
        .lock_lease(Duration::from_secs(2))
        .command_timeout(Duration::from_millis(2000))
        .build()
        .expect("valid tier");
    Cache::builder()
        .fresh_for(Duration::from_secs(60))
        .ttl(Duration::from_secs(600))
        .redis(tier)
        .build()
        .expect("valid cache")
}

fn key(n: usize) -> String {
    format!("/e/{n}")
}

async fn refuse() -> Result<String, std::io::Error> {
    Err(std::io::Error::other("no origin in this test"))
}

/// Reads every entry through `cache` (from its memory, or from Redis): `Some` for
/// those it has.
async fn read_all(cache: &Cache<String>, entries: usize) -> Vec<Option<String>> {
    let mut found = Vec::with_capacity(entries);
    for chunk in (0..entries).collect::<Vec<_>>().chunks(250) {
        let reads = chunk
            .iter()
            .map(|&n| async move { cache.get_or_load(&key(n), refuse).await.ok() });
        found.extend(join_all(reads).await);
    }
    found
}

async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_purge_on_one_server_removes_exactly_its_entries_on_every_server() {
    const ENTRIES: usize = 10_000;
    let server = RedisServer::start();
    let servers = [
        cache(&server.url()),
        cache(&server.url()),
        cache(&server.url()),
    ];
    for chunk in (0..ENTRIES).collect::<Vec<_>>().chunks(250) {
        let inserts = chunk.iter().map(|&n| {
            let value = Loaded::new(format!("v{n}")).tag(format!("t{}", n % 100));
            let writer = &servers[0];
            async move { writer.insert(&key(n), value).await }
        });
        join_all(inserts).await;
    }
    for other in &servers[1..] {
        let found = read_all(other, ENTRIES).await;
        assert!(found.iter().all(Option::is_some), "every entry is in redis");
    }
    servers[1].invalidate_tag("t7").await;
    let carries = |n: usize| n % 100 == 7;
    for (i, cache) in servers.iter().enumerate() {
        eventually(&format!("server {i} learns of the purge"), async || {
            cache.get(&key(7)).is_none()
        })
        .await;
        for n in 0..ENTRIES {
            assert_eq!(
                cache.get(&key(n)).is_some(),
                !carries(n),
                "entry {n} on server {i}"
            );
        }
    }
    // A server started after the purge learns of it from Redis.
    let late = cache(&server.url());
    let found = read_all(&late, ENTRIES).await;
    for (n, value) in found.iter().enumerate() {
        assert_eq!(
            value.is_some(),
            !carries(n),
            "entry {n} read from redis late"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_running_across_a_tag_purge_leaves_nothing_in_redis() {
    let server = RedisServer::start();
    let (loader_cache, purger, late) = (
        cache(&server.url()),
        cache(&server.url()),
        cache(&server.url()),
    );
    let held = HeldLoad::start(
        &loader_cache,
        "/slow",
        Loaded::new("old".to_string()).tag("p1"),
    )
    .await;
    purger.invalidate_tag("p1").await;
    assert_eq!(held.finish().await, "old");
    assert!(
        late.get_or_load("/slow", refuse).await.is_err(),
        "the value loaded across the purge is not served from redis"
    );
    assert_eq!(
        loader_cache.get("/slow"),
        None,
        "nor from the loader's memory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_purges_make_shared_entries_stale_for_every_server_and_one_refresh_runs() {
    let server = RedisServer::start();
    let (writer, purger) = (cache(&server.url()), cache(&server.url()));
    writer
        .insert("/tagged", Loaded::new("v1".to_string()).tag("catalog"))
        .await;
    writer.insert("/docs/a", "a1".to_string()).await;
    writer.insert("/key", "k1".to_string()).await;
    // The purger holds copies in memory too.
    for key in ["/tagged", "/docs/a", "/key"] {
        purger.get_or_load(key, refuse).await.unwrap();
    }
    purger.soft_invalidate_tag("catalog").await;
    purger.soft_invalidate_prefix("/docs/").await;
    purger.soft_invalidate("/key").await;
    let stale = |cache: &Cache<String>, key: &str| {
        cache
            .peek(key)
            .is_some_and(|e| e.freshness(tokio::time::Instant::now()) == Freshness::Stale)
    };
    for key in ["/tagged", "/docs/a", "/key"] {
        assert!(stale(&purger, key), "{key} stale on the purger");
        eventually(&format!("{key} stale on the writer"), async || {
            stale(&writer, key)
        })
        .await;
    }
    // A server that starts now finds them stale in Redis: served at once (the copy
    // kept in its memory is stale too, so its next read refreshes it), refreshed once.
    let late = cache(&server.url());
    let refreshes = Arc::new(AtomicUsize::new(0));
    for (key, old) in [("/tagged", "v1"), ("/docs/a", "a1"), ("/key", "k1")] {
        for _ in 0..3 {
            let runs = refreshes.clone();
            let got = late
                .get_or_load(key, move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, std::io::Error>(Loaded::new("new".to_string()).tag("catalog"))
                })
                .await
                .unwrap();
            assert_eq!(got, old, "{key} served stale at once");
        }
    }
    eventually("the three refreshes land", async || {
        ["/tagged", "/docs/a", "/key"]
            .iter()
            .all(|key| late.peek(key).is_some_and(|e| e.value() == "new"))
    })
    .await;
    assert_eq!(refreshes.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_purges_cover_earlier_records_even_after_the_clock_key_is_lost() {
    use redis::AsyncCommands;
    let server = RedisServer::start();
    let (writer, purger) = (cache(&server.url()), cache(&server.url()));
    purger.invalidate_tag("warm-up").await;
    writer
        .get_or_load("/t", || async {
            Ok::<_, std::io::Error>(Loaded::new("old".to_string()).tag("t"))
        })
        .await
        .unwrap();
    // Evicted or flushed: the clock starts again, above every tick noted before.
    let client = redis::Client::open(server.url().as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = c.del("tags:tick:{#tags}").await.unwrap();
    purger.invalidate_tag("t").await;
    let late = cache(&server.url());
    assert!(late.get_or_load("/t", refuse).await.is_err(), "purged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn related_entries_of_a_load_across_a_purge_of_its_key_are_not_left_in_redis() {
    let server = RedisServer::start();
    let (loader, purger) = (cache(&server.url()), cache(&server.url()));
    let held = HeldLoad::start(
        &loader,
        "/d/main",
        Loaded::new("main".to_string()).also_store("/d/related", Loaded::new("old".to_string())),
    )
    .await;
    purger.invalidate_prefix("/d/").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.finish().await;
    let late = cache(&server.url());
    assert!(late.get_or_load("/d/related", refuse).await.is_err());
    assert!(
        loader.get("/d/related").is_none(),
        "nor in the loader's memory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_prefix_purge_stops_a_running_load_of_a_key_with_no_value_yet() {
    let server = RedisServer::start();
    let (loader, purger) = (cache(&server.url()), cache(&server.url()));
    let held = HeldLoad::start(&loader, "/s/new", Loaded::new("old".to_string())).await;
    purger.soft_invalidate_prefix("/s/").await;
    held.finish().await;
    let late = cache(&server.url());
    assert!(
        late.get_or_load("/s/new", refuse).await.is_err(),
        "the value loaded across the purge is not in redis"
    );
}

#[cfg(feature = "disk")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_softened_in_redis_is_written_to_disk_as_stale() {
    let server = RedisServer::start();
    let dir = std::env::temp_dir().join(format!("corral-soft-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let writer = cache(&server.url());
    writer.insert("/s", "v".to_string()).await;
    writer.soft_invalidate("/s").await;
    let with_disk = || {
        let tier = RedisTier::builder(server.url())
            .prefix("tags:")
            .build()
            .expect("valid tier");
        Cache::<String>::builder()
            .fresh_for(Duration::from_secs(60))
            .ttl(Duration::from_secs(600))
            .disk(&dir, 1 << 20)
            .redis(tier)
            .build()
            .expect("valid cache")
    };
    {
        let reader = with_disk();
        assert_eq!(reader.get_or_load("/s", refuse).await.unwrap(), "v");
    }
    let restarted = with_disk();
    assert_eq!(restarted.get_or_load("/s", refuse).await.unwrap(), "v");
    let entry = restarted.peek("/s").unwrap();
    assert_eq!(
        entry.freshness(tokio::time::Instant::now()),
        Freshness::Stale,
        "read back from disk, still stale"
    );
    drop(restarted);
    let _ = std::fs::remove_dir_all(&dir);
}
