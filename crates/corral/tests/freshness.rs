//! On tokio's paused clock: fresh, stale-while-revalidate with one refresh
//! per key, stale-if-error, expiry, `ttl = 0` and `fresh_for = ttl`.

mod support;

use std::time::Duration;

use corral::{Cache, Loaded};
use support::{Origin, cache, eventually};
use tokio::time::{advance, sleep};

const SECOND: Duration = Duration::from_secs(1);

async fn load(cache: &Cache<String>, origin: &Origin, value: &str) -> String {
    cache.get_or_load("k", origin.value(value)).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn fresh_entries_are_served_without_loading() {
    let cache = cache(10, 30);
    let origin = Origin::open();
    assert_eq!(load(&cache, &origin, "v1").await, "v1");
    advance(9 * SECOND).await;
    for _ in 0..100 {
        assert_eq!(load(&cache, &origin, "v2").await, "v1");
    }
    assert_eq!(origin.calls(), 1);
    assert_eq!(cache.stats().hits, 100);
}

#[tokio::test(start_paused = true)]
async fn stale_entries_are_served_at_once_with_exactly_one_background_refresh() {
    let cache = cache(10, 30);
    let first = Origin::open();
    load(&cache, &first, "v1").await;
    advance(11 * SECOND).await;

    let refresh = Origin::closed();
    let callers: Vec<_> = (0..500)
        .map(|_| {
            let (cache, loader) = (cache.clone(), refresh.value("v2"));
            tokio::spawn(async move { cache.get_or_load("k", loader).await })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), "v1", "stale served at once");
    }
    assert_eq!(refresh.calls(), 1, "one refresh however many callers");
    assert_eq!(cache.stats().stale_hits, 500);

    refresh.release();
    eventually("the refresh stored its value", || {
        cache.stats().loads_ok == 2
    })
    .await;
    let later = Origin::open();
    assert_eq!(load(&cache, &later, "v3").await, "v2");
    assert_eq!(later.calls(), 0, "the refreshed entry is fresh again");
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_keeps_serving_the_stale_value_until_its_ttl() {
    let cache = cache(10, 30);
    load(&cache, &Origin::open(), "v1").await;
    advance(11 * SECOND).await;

    let failing = Origin::open();
    for second in 11..30 {
        let v = cache
            .get_or_load("k", failing.failure("origin down"))
            .await
            .unwrap();
        assert_eq!(v, "v1", "stale-if-error at t={second}s");
        sleep(SECOND).await;
    }
    assert!(failing.calls() >= 1);
    assert_eq!(
        cache.stats().load_errors as usize,
        failing.calls(),
        "each failure counted"
    );
    assert_eq!(cache.stats().loads_in_flight, 0);

    // t = 30 s: the ttl is over, the entry is a miss and its error reaches the caller.
    let err = cache.get_or_load("k", failing.failure("origin down")).await;
    assert!(matches!(err, Err(corral::Error::Load(_))));
}

#[tokio::test(start_paused = true)]
async fn expired_entries_are_misses() {
    let cache = cache(10, 30);
    let origin = Origin::open();
    load(&cache, &origin, "v1").await;
    advance(30 * SECOND).await;
    assert_eq!(cache.get("k"), None);
    assert_eq!(
        load(&cache, &origin, "v2").await,
        "v2",
        "the caller waited for a new load"
    );
    assert_eq!(origin.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn ttl_zero_means_coalescing_only() {
    let cache: Cache<String> = Cache::builder().ttl(Duration::ZERO).build().unwrap();
    let origin = Origin::closed();
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let (cache, loader) = (cache.clone(), origin.value("v"));
            tokio::spawn(async move { cache.get_or_load("k", loader).await })
        })
        .collect();
    eventually("all joined", || {
        let s = cache.stats();
        s.misses + s.coalesced == 50
    })
    .await;
    origin.release();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), "v");
    }
    assert_eq!(origin.calls(), 1, "concurrent callers coalesced");
    assert_eq!(cache.get("k"), None, "nothing kept");
    load(&cache, &origin, "v").await;
    assert_eq!(origin.calls(), 2, "a later caller loads again");
    assert_eq!(cache.stats().entries, 0);
}

#[tokio::test(start_paused = true)]
async fn fresh_for_equal_to_ttl_never_serves_stale() {
    let cache = cache(10, 10);
    let origin = Origin::open();
    load(&cache, &origin, "v1").await;
    advance(10 * SECOND).await;
    assert_eq!(load(&cache, &origin, "v2").await, "v2");
    assert_eq!(cache.stats().stale_hits, 0);
}

#[tokio::test(start_paused = true)]
async fn a_loader_can_set_its_entrys_lifetime() {
    let cache = cache(60, 60);
    let short = cache
        .get_or_load("short", || async {
            Ok::<_, std::io::Error>(
                Loaded::new("s".to_string())
                    .fresh_for(SECOND)
                    .ttl(2 * SECOND),
            )
        })
        .await
        .unwrap();
    assert_eq!(short, "s");
    advance(SECOND + SECOND / 2).await;
    let stale = Origin::closed();
    assert_eq!(
        cache.get_or_load("short", stale.value("s2")).await.unwrap(),
        "s"
    );
    assert_eq!(cache.stats().stale_hits, 1);
    advance(SECOND).await;
    assert_eq!(cache.get("short"), None, "its own ttl of 2 s is over");
}

#[tokio::test(start_paused = true)]
async fn an_uncached_value_reaches_the_waiters_but_is_not_kept() {
    let cache = cache(60, 60);
    let v = cache
        .get_or_load("k", || async {
            Ok::<_, std::io::Error>(Loaded::uncached("once".to_string()))
        })
        .await
        .unwrap();
    assert_eq!(v, "once");
    assert_eq!(cache.get("k"), None);
}

#[tokio::test]
async fn invalid_options_are_builder_errors() {
    let err = Cache::<String>::builder()
        .fresh_for(Duration::from_secs(60))
        .ttl(Duration::from_secs(30))
        .build()
        .unwrap_err();
    assert_eq!(err.to_string(), "fresh_for (60s) must not exceed ttl (30s)");
    let err = Cache::<String>::builder().max_bytes(0).build().unwrap_err();
    assert_eq!(err, corral::ConfigError::ZeroMaxBytes);
}

#[tokio::test(start_paused = true)]
async fn lifetimes_beyond_a_century_are_a_century() {
    let forever = Cache::<String>::builder()
        .fresh_for(Duration::MAX)
        .ttl(Duration::MAX)
        .build()
        .unwrap();
    let origin = Origin::open();
    assert_eq!(load(&forever, &origin, "v1").await, "v1");
    forever.insert("inserted", "i".to_owned()).await;
    let brief = cache(10, 30);
    let loaded = brief
        .get_or_load("long", || async {
            Ok::<_, std::io::Error>(Loaded::new("l".to_owned()).ttl(Duration::MAX))
        })
        .await
        .unwrap();
    assert_eq!(loaded, "l");
    advance(50 * 365 * 24 * 3600 * SECOND).await;
    assert_eq!(load(&forever, &origin, "v2").await, "v1");
    assert_eq!(forever.get("inserted").as_deref(), Some("i"));
    assert_eq!(brief.get("long").as_deref(), Some("l"));
    assert_eq!(origin.calls(), 1);
}
