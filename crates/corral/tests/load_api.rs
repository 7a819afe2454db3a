//! `load`, `refresh`, `peek` and `Loaded::also_store`: the engine calls for callers that
//! judge freshness themselves.

mod support;

use corral::{Loaded, Source};
use support::{Origin, cache, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_runs_when_the_callers_test_rejects_the_stored_value() {
    let cache = cache(60, 60);
    cache.insert("k", "old".to_string()).await;
    let origin = Origin::open();
    let (v, source) = cache
        .load("k", |e| e.value() != "old", origin.value("new"))
        .await
        .unwrap();
    assert_eq!((v.as_str(), source), ("new", Source::Loaded));
    let (v, source) = cache
        .load("k", |e| e.value() != "old", origin.value("newer"))
        .await
        .unwrap();
    assert_eq!((v.as_str(), source), ("new", Source::Stored));
    assert_eq!(origin.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_coalesces_its_callers() {
    let cache = cache(60, 60);
    let origin = Origin::closed();
    let callers: Vec<_> = (0..200)
        .map(|_| {
            let (cache, loader) = (cache.clone(), origin.value("v"));
            tokio::spawn(async move { cache.load("k", |_| false, loader).await })
        })
        .collect();
    eventually("all joined", || {
        let s = cache.stats();
        s.misses + s.coalesced == 200
    })
    .await;
    origin.release();
    let mut sources = Vec::new();
    for c in callers {
        let (v, source) = c.await.unwrap().unwrap();
        assert_eq!(v, "v");
        sources.push(source);
    }
    assert_eq!(sources.iter().filter(|s| **s == Source::Loaded).count(), 1);
    assert_eq!(
        sources.iter().filter(|s| **s == Source::Joined).count(),
        199
    );
    assert_eq!(origin.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_starts_one_background_load_and_returns_at_once() {
    let cache = cache(60, 60);
    let origin = Origin::closed();
    assert!(cache.refresh("k", |_| false, origin.value("v")));
    assert!(
        !cache.refresh("k", |_| false, origin.value("w")),
        "one is running"
    );
    assert_eq!(cache.peek("k").map(|e| e.into_value()), None);
    origin.release();
    eventually("the refresh stored", || cache.peek("k").is_some()).await;
    assert_eq!(cache.peek("k").unwrap().value(), "v");
    assert!(
        !cache.refresh("k", |_| true, origin.value("x")),
        "the stored value passes"
    );
    assert_eq!(origin.calls(), 1);
}

#[tokio::test]
async fn peek_counts_no_lookup() {
    let cache = cache(60, 60);
    cache.insert("k", "v".to_string()).await;
    assert_eq!(cache.peek("k").unwrap().value(), "v");
    assert!(cache.peek("absent").is_none());
    let s = cache.stats();
    assert_eq!((s.hits, s.misses), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn related_entries_are_not_stored_by_a_load_that_was_invalidated() {
    let cache = cache(60, 60);
    let (gate, _) = tokio::sync::watch::channel(false);
    let mut open = gate.subscribe();
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("index", move || async move {
                    let _ = open.wait_for(|o| *o).await;
                    Ok::<_, std::io::Error>(
                        Loaded::new("idx".to_string())
                            .also_store("variant", Loaded::new("body".to_string())),
                    )
                })
                .await
        })
    };
    eventually("the load started", || cache.stats().misses == 1).await;
    cache.invalidate("index").await;
    gate.send_replace(true);
    assert_eq!(waiter.await.unwrap().unwrap(), "idx");
    assert!(cache.peek("index").is_none());
    assert!(
        cache.peek("variant").is_none(),
        "the related entry obeyed the invalidation too"
    );
}
