//! One load per key, loads that survive their callers, shared errors and panics, and
//! the load timeout.

mod support;

use std::time::Duration;

use corral::{Cache, Error};
use support::{Origin, cache, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_callers_run_the_loader_once() {
    let cache = cache(60, 60);
    let origin = Origin::closed();
    let callers: Vec<_> = (0..1000)
        .map(|_| {
            let (cache, loader) = (cache.clone(), origin.value("v"));
            tokio::spawn(async move { cache.get_or_load("cold", loader).await })
        })
        .collect();
    eventually("all 1000 callers joined the flight", || {
        let s = cache.stats();
        s.misses + s.coalesced == 1000
    })
    .await;
    origin.release();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), "v");
    }
    assert_eq!(origin.calls(), 1);
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.coalesced, stats.loads_ok), (1, 999, 1));
    assert_eq!(stats.loads_in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn distinct_keys_load_independently() {
    let cache = cache(60, 60);
    let origin = Origin::open();
    let callers: Vec<_> = (0..200)
        .map(|i| {
            let (cache, loader) = (cache.clone(), origin.value(&format!("v{}", i % 20)));
            tokio::spawn(async move { cache.get_or_load(&format!("k{}", i % 20), loader).await })
        })
        .collect();
    for (i, caller) in callers.into_iter().enumerate() {
        assert_eq!(caller.await.unwrap().unwrap(), format!("v{}", i % 20));
    }
    assert!(
        origin.calls() <= 20 * 2,
        "at most one load per key at a time"
    );
    assert_eq!(cache.get("k7").as_deref(), Some("v7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aborting_the_first_caller_does_not_cancel_the_load() {
    let cache = cache(60, 60);
    let origin = Origin::closed();
    let first = {
        let (cache, loader) = (cache.clone(), origin.value("v"));
        tokio::spawn(async move { cache.get_or_load("k", loader).await })
    };
    eventually("the first caller started the load", || origin.calls() == 1).await;
    let others: Vec<_> = (0..100)
        .map(|_| {
            let (cache, loader) = (cache.clone(), origin.value("other"));
            tokio::spawn(async move { cache.get_or_load("k", loader).await })
        })
        .collect();
    eventually("the others joined", || cache.stats().coalesced == 100).await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    origin.release();
    for caller in others {
        assert_eq!(caller.await.unwrap().unwrap(), "v");
    }
    assert_eq!(origin.calls(), 1);
    assert_eq!(cache.get("k").as_deref(), Some("v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_whose_waiters_all_left_is_still_stored() {
    let cache = cache(60, 60);
    let origin = Origin::closed();
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let (cache, loader) = (cache.clone(), origin.value("kept"));
            tokio::spawn(async move { cache.get_or_load("k", loader).await })
        })
        .collect();
    eventually("all joined", || {
        let s = cache.stats();
        s.misses + s.coalesced == 20
    })
    .await;
    for caller in &callers {
        caller.abort();
    }
    for caller in callers {
        assert!(caller.await.unwrap_err().is_cancelled());
    }
    origin.release();
    eventually("the orphaned load finished", || cache.stats().loads_ok == 1).await;
    let later = Origin::open();
    assert_eq!(
        cache.get_or_load("k", later.value("new")).await.unwrap(),
        "kept"
    );
    assert_eq!(later.calls(), 0, "the later caller found the stored value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_waiting_future_leaves_the_load_running() {
    let cache = cache(60, 60);
    let origin = Origin::closed();
    let dropped = tokio::time::timeout(
        Duration::from_millis(20),
        cache.get_or_load("k", origin.value("v")),
    )
    .await;
    assert!(
        dropped.is_err(),
        "the caller gave up while the load was held"
    );
    origin.release();
    eventually("the load finished without any waiter", || {
        cache.stats().loads_ok == 1
    })
    .await;
    assert_eq!(cache.get("k").as_deref(), Some("v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_loader_error_reaches_every_waiter_and_is_not_stored() {
    let cache = cache(60, 60);
    let origin = Origin::closed();
    let callers: Vec<_> = (0..300)
        .map(|_| {
            let (cache, loader) = (cache.clone(), origin.failure("origin down"));
            tokio::spawn(async move { cache.get_or_load("k", loader).await })
        })
        .collect();
    eventually("all joined", || {
        let s = cache.stats();
        s.misses + s.coalesced == 300
    })
    .await;
    origin.release();
    for caller in callers {
        let err = caller.await.unwrap().unwrap_err();
        let Error::Load(source) = &err else {
            panic!("expected a loader error, got {err:?}")
        };
        assert_eq!(
            source.downcast_ref::<std::io::Error>().unwrap().to_string(),
            "origin down"
        );
    }
    assert_eq!(origin.calls(), 1);
    assert_eq!(cache.get("k"), None);
    assert_eq!(cache.stats().load_errors, 1);

    let retry = Origin::open();
    assert_eq!(
        cache.get_or_load("k", retry.value("back")).await.unwrap(),
        "back"
    );
    assert_eq!(retry.calls(), 1, "the next call loaded again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panicking_loader_is_an_error_for_every_waiter_and_never_poisons_the_key() {
    let cache: Cache<String> = cache(60, 60);
    let (gate, _) = tokio::sync::watch::channel(false);
    let callers: Vec<_> = (0..200)
        .map(|_| {
            let cache = cache.clone();
            let mut open = gate.subscribe();
            tokio::spawn(async move {
                cache
                    .get_or_load("k", move || async move {
                        let _ = open.wait_for(|o| *o).await;
                        if true {
                            panic!("loader blew up");
                        }
                        Ok::<String, std::io::Error>(String::new())
                    })
                    .await
            })
        })
        .collect();
    eventually("all joined", || {
        let s = cache.stats();
        s.misses + s.coalesced == 200
    })
    .await;
    gate.send_replace(true);
    for caller in callers {
        match caller.await.unwrap() {
            Err(Error::Panicked(message)) => assert_eq!(&*message, "loader blew up"),
            other => panic!("expected a panic error, got {other:?}"),
        }
    }
    assert_eq!(cache.stats().load_panics, 1);
    assert_eq!(cache.stats().loads_in_flight, 0);
    let after = Origin::open();
    assert_eq!(
        cache.get_or_load("k", after.value("fine")).await.unwrap(),
        "fine"
    );
}

#[tokio::test(start_paused = true)]
async fn load_timeout_bounds_a_load_and_frees_the_key() {
    let cache: Cache<String> = Cache::builder()
        .load_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_load("k", || async {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok::<_, std::io::Error>("never".to_string())
                    })
                    .await
            })
        })
        .collect();
    let started = tokio::time::Instant::now();
    for caller in callers {
        assert!(
            matches!(caller.await.unwrap(), Err(Error::Timeout(d)) if d == Duration::from_secs(2))
        );
    }
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(cache.stats().load_timeouts, 1);
    assert_eq!(cache.stats().loads_in_flight, 0);
    let next = Origin::open();
    assert_eq!(
        cache.get_or_load("k", next.value("quick")).await.unwrap(),
        "quick"
    );
    assert_eq!(next.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_during_a_load_keeps_that_load_from_storing() {
    let cache = cache(60, 60);
    let origin = Origin::closed();
    let waiter = {
        let (cache, loader) = (cache.clone(), origin.value("old"));
        tokio::spawn(async move { cache.get_or_load("k", loader).await })
    };
    eventually("the load started", || origin.calls() == 1).await;
    cache.invalidate("k").await;
    origin.release();
    assert_eq!(
        waiter.await.unwrap().unwrap(),
        "old",
        "its waiters still get it"
    );
    assert_eq!(cache.get("k"), None, "but it was not stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_during_a_load_wins_over_it() {
    let cache = cache(60, 60);
    let origin = Origin::closed();
    let waiter = {
        let (cache, loader) = (cache.clone(), origin.value("loaded"));
        tokio::spawn(async move { cache.get_or_load("k", loader).await })
    };
    eventually("the load started", || origin.calls() == 1).await;
    cache.insert("k", "inserted".to_string()).await;
    origin.release();
    assert_eq!(waiter.await.unwrap().unwrap(), "loaded");
    assert_eq!(cache.get("k").as_deref(), Some("inserted"));
}
