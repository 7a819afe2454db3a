//! Purges by tag and soft purges: exactly the tagged entries go, whichever keys they
//! are under; a load running across a purge stores nothing that survives it; a soft
//! purge serves stale while one refresh runs. On memory here, and on disk, where tags
//! and their purges outlast a restart; the Redis tier's cluster-wide tags are in
//! `redis_tags.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use corral::{Cache, Freshness, Loaded};
use support::HeldLoad;

mod support;

fn cache() -> Cache<String> {
    Cache::builder()
        .fresh_for(Duration::from_secs(60))
        .ttl(Duration::from_secs(600))
        .build()
        .unwrap()
}

/// The tags of entry `n` of the 10 000: one of 100 tags, and one of two groups.
fn tags_of(n: usize) -> [String; 2] {
    [format!("t{}", n % 100), format!("group-{}", n % 2)]
}

async fn fill(cache: &Cache<String>, entries: usize) {
    for n in 0..entries {
        let [tag, group] = tags_of(n);
        cache
            .insert(
                &format!("/e/{n}"),
                Loaded::new(format!("v{n}")).tag(tag).tag(group),
            )
            .await;
    }
}

#[tokio::test]
async fn a_tag_purge_removes_exactly_the_entries_carrying_the_tag() {
    let cache = cache();
    fill(&cache, 10_000).await;
    cache.invalidate_tag("t7").await;
    for n in 0..10_000 {
        let got = cache.get(&format!("/e/{n}"));
        if n % 100 == 7 {
            assert_eq!(got, None, "entry {n} carries t7");
        } else {
            assert_eq!(got, Some(format!("v{n}")), "entry {n} does not carry t7");
        }
    }
    // A purge covers what was stored before it, not what is stored after.
    cache
        .insert("/e/7", Loaded::new("again".to_string()).tag("t7"))
        .await;
    assert_eq!(cache.get("/e/7").as_deref(), Some("again"));
}

#[tokio::test]
async fn a_load_running_across_a_tag_purge_answers_its_waiters_and_stores_nothing() {
    let cache = cache();
    let held = HeldLoad::start(
        &cache,
        "/slow",
        Loaded::new("old".to_string()).tag("product-1"),
    )
    .await;
    cache.invalidate_tag("product-1").await;
    assert_eq!(held.finish().await, "old", "its waiter gets it");
    assert_eq!(cache.get("/slow"), None, "but it is not kept");
    let fresh = cache
        .get_or_load("/slow", || async {
            Ok::<_, std::io::Error>(Loaded::new("new".to_string()).tag("product-1"))
        })
        .await
        .unwrap();
    assert_eq!(fresh, "new");
}

#[tokio::test]
async fn related_entries_of_a_load_across_a_purge_are_covered_too() {
    let cache = cache();
    let held = HeldLoad::start(
        &cache,
        "/index",
        Loaded::new("index".to_string())
            .also_store("/variant", Loaded::new("variant".to_string()).tag("p")),
    )
    .await;
    cache.invalidate_tag("p").await;
    held.finish().await;
    assert_eq!(cache.get("/index").as_deref(), Some("index"), "untagged");
    assert_eq!(
        cache.get("/variant"),
        None,
        "tagged, loaded before the purge"
    );
}

type Loading =
    std::pin::Pin<Box<dyn Future<Output = Result<Loaded<String>, std::io::Error>> + Send>>;

#[tokio::test]
async fn a_related_entry_whose_key_is_invalidated_while_the_load_runs_is_not_stored() {
    let cache = cache();
    let held = HeldLoad::start(
        &cache,
        "/main",
        Loaded::new("main".to_string())
            .also_store("/related", Loaded::new("old".to_string()))
            .also_store("/other", Loaded::new("other".to_string())),
    )
    .await;
    cache.invalidate("/related").await;
    held.finish().await;
    assert_eq!(cache.get("/main").as_deref(), Some("main"));
    assert_eq!(
        cache.get("/related"),
        None,
        "invalidated while it was loaded"
    );
    assert_eq!(cache.get("/other").as_deref(), Some("other"));
}

/// A loader that counts its runs and answers `value` after `delay` (or fails).
fn counted(
    runs: &Arc<AtomicUsize>,
    value: &str,
    delay: Duration,
    fail: bool,
) -> impl FnOnce() -> Loading + Send + 'static {
    let (runs, value) = (runs.clone(), value.to_owned());
    move || {
        Box::pin(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            if fail {
                return Err(std::io::Error::other("origin down"));
            }
            Ok(Loaded::new(value).tag("catalog"))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_soft_tag_purge_serves_stale_while_one_refresh_runs() {
    let cache = cache();
    let runs = Arc::new(AtomicUsize::new(0));
    let first = cache
        .get_or_load("/p", counted(&runs, "v1", Duration::ZERO, false))
        .await
        .unwrap();
    assert_eq!(first, "v1");
    cache.soft_invalidate_tag("catalog").await;
    let entry = cache.peek("/p").expect("still there");
    assert_eq!(
        entry.freshness(tokio::time::Instant::now()),
        Freshness::Stale
    );
    assert!(entry.softened_at().is_some());
    // Many readers at once: every one answered at once with the stale value, one
    // refresh.
    let mut readers = Vec::new();
    for _ in 0..50 {
        let (cache, runs) = (cache.clone(), runs.clone());
        readers.push(tokio::spawn(async move {
            cache
                .get_or_load(
                    "/p",
                    counted(&runs, "v2", Duration::from_millis(100), false),
                )
                .await
                .unwrap()
        }));
    }
    for reader in readers {
        assert_eq!(reader.await.unwrap(), "v1");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2, "one load, then one refresh");
    let entry = cache.peek("/p").unwrap();
    assert_eq!(entry.value(), "v2");
    assert_eq!(
        entry.freshness(tokio::time::Instant::now()),
        Freshness::Fresh
    );
}

#[tokio::test(start_paused = true)]
async fn a_soft_purged_entry_is_served_stale_while_the_origin_fails() {
    let cache = cache();
    let runs = Arc::new(AtomicUsize::new(0));
    cache
        .get_or_load("/p", counted(&runs, "v1", Duration::ZERO, false))
        .await
        .unwrap();
    cache.soft_invalidate("/p").await;
    for _ in 0..3 {
        let got = cache
            .get_or_load("/p", counted(&runs, "-", Duration::ZERO, true))
            .await
            .unwrap();
        assert_eq!(got, "v1", "stale-if-error");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(runs.load(Ordering::SeqCst), 4, "one refresh tried per read");
    // Soft purges by prefix, too.
    cache.insert("/docs/a", "a".to_string()).await;
    cache.insert("/docs/b", "b".to_string()).await;
    cache.insert("/blog/c", "c".to_string()).await;
    assert_eq!(cache.soft_invalidate_prefix("/docs/").await, 2);
    let now = tokio::time::Instant::now();
    let freshness = |key| cache.peek(key).unwrap().freshness(now);
    assert_eq!(freshness("/docs/a"), Freshness::Stale);
    assert_eq!(freshness("/docs/b"), Freshness::Stale);
    assert_eq!(freshness("/blog/c"), Freshness::Fresh);
}

#[tokio::test]
async fn a_hard_purge_wins_over_a_soft_one() {
    let cache = cache();
    cache
        .insert("/a", Loaded::new("a".to_string()).tag("x").tag("y"))
        .await;
    cache.soft_invalidate_tag("x").await;
    assert_eq!(cache.get("/a").as_deref(), Some("a"), "stale, still served");
    cache.invalidate_tag("y").await;
    assert_eq!(cache.get("/a"), None);
}

#[cfg(feature = "disk")]
#[tokio::test]
async fn tags_and_their_purges_outlast_a_restart_on_disk() {
    let dir = std::env::temp_dir().join(format!("corral-tags-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let open = || {
        Cache::<String>::builder()
            .fresh_for(Duration::from_secs(600))
            .ttl(Duration::from_secs(3600))
            .disk(&dir, 1 << 20)
            .build()
            .unwrap()
    };
    let refuse = || async { Err::<String, _>(std::io::Error::other("no origin")) };
    {
        let cache = open();
        for (key, tags) in [
            ("/plain", &[][..]),
            ("/a", &["a", "both"][..]),
            ("/b", &["b", "both"][..]),
            ("/c", &["c"][..]),
            ("/s", &["soft"][..]),
        ] {
            let loaded = tags
                .iter()
                .fold(Loaded::new(key.to_string()), |l, t| l.tag(t));
            cache.insert(key, loaded).await;
        }
        // Purged before the restart: written down, so it holds after it.
        cache.invalidate_tag("a").await;
        assert_eq!(cache.get("/a"), None);
    }
    let cache = open();
    assert_eq!(cache.get_or_load("/plain", refuse).await.unwrap(), "/plain");
    assert!(
        cache.get_or_load("/a", refuse).await.is_err(),
        "purged before"
    );
    // Read back from disk with their tags: a purge now covers them.
    assert_eq!(cache.get_or_load("/b", refuse).await.unwrap(), "/b");
    cache.invalidate_tag("both").await;
    assert_eq!(cache.get("/b"), None);
    cache.soft_invalidate_tag("soft").await;
    drop(cache);
    let cache = open();
    assert!(
        cache.get_or_load("/b", refuse).await.is_err(),
        "purged after a restart"
    );
    assert_eq!(cache.get_or_load("/c", refuse).await.unwrap(), "/c");
    let soft = cache.get_or_load("/s", refuse).await.unwrap();
    assert_eq!(soft, "/s", "softly purged: still served");
    let entry = cache.peek("/s").unwrap();
    assert_eq!(
        entry.freshness(tokio::time::Instant::now()),
        Freshness::Stale
    );
    drop(cache);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_insert_of_a_value_fetched_before_a_purge_is_dropped() {
    let cache = cache();
    let mark = cache.insert_mark();
    cache.invalidate_tag("t").await;
    let value = Loaded::new("old".to_string()).tag("t");
    assert!(
        !cache.insert_since("/a", value, mark).await,
        "its tag was purged after the mark"
    );
    assert_eq!(cache.get("/a"), None);
    let mark = cache.insert_mark();
    cache.invalidate("/elsewhere").await;
    cache.soft_invalidate_prefix("/b").await;
    assert!(
        !cache.insert_since("/b", "old".to_string(), mark).await,
        "a soft purge of a prefix of its key came since the mark"
    );
    let mark = cache.insert_mark();
    cache.invalidate("/elsewhere").await;
    assert!(
        cache.insert_since("/b", "new".to_string(), mark).await,
        "another key's invalidation does not drop it"
    );
    let mark = cache.insert_mark();
    assert!(cache.insert_since("/c", "new".to_string(), mark).await);
    assert_eq!(cache.get("/c").as_deref(), Some("new"));
}

#[cfg(feature = "disk")]
fn disk_cache(dir: &std::path::Path) -> Cache<String> {
    Cache::builder()
        .fresh_for(Duration::from_secs(600))
        .ttl(Duration::from_secs(3600))
        .disk(dir, 256 << 20)
        .build()
        .unwrap()
}

#[cfg(feature = "disk")]
#[tokio::test]
async fn on_disk_a_tag_purge_removes_exactly_its_entries_of_ten_thousand() {
    let dir = std::env::temp_dir().join(format!("corral-tags-10k-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    fill(&disk_cache(&dir), 10_000).await;
    // After a restart every entry comes from disk, with its tags.
    let cache = disk_cache(&dir);
    cache.invalidate_tag("t7").await;
    for n in 0..10_000 {
        let got = cache
            .get_or_load(&format!("/e/{n}"), || async {
                Err::<String, _>(std::io::Error::other("not on disk"))
            })
            .await;
        assert_eq!(got.is_ok(), n % 100 != 7, "entry {n}");
    }
    drop(cache);
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "disk")]
#[tokio::test]
async fn on_disk_a_load_running_across_a_tag_purge_writes_nothing() {
    let dir = std::env::temp_dir().join(format!("corral-tags-race-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let cache = disk_cache(&dir);
        let value = Loaded::new("old".to_string()).tag("p");
        let held = HeldLoad::start(&cache, "/slow", value).await;
        cache.invalidate_tag("p").await;
        // The load ends after the purge, at a later wall-clock millisecond.
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(held.finish().await, "old");
    }
    let cache = disk_cache(&dir);
    let got = cache
        .get_or_load("/slow", || async {
            Err::<String, _>(std::io::Error::other("miss"))
        })
        .await;
    assert!(
        got.is_err(),
        "the value loaded across the purge is not on disk"
    );
    drop(cache);
    let _ = std::fs::remove_dir_all(&dir);
}
