//! Probabilistic early refresh (XFetch) on tokio's paused clock: a hot key is refreshed
//! before it expires in every trial, about once per lifetime, and no caller ever waits
//! for a load or gets a stale value; a cold key is never refreshed early.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use corral::Cache;
use tokio::time::Instant;

const LOAD: Duration = Duration::from_millis(100);

/// A loader that takes [`LOAD`] and counts its runs.
fn loader(
    loads: &Arc<AtomicU64>,
) -> impl FnOnce() -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<u64, std::io::Error>> + Send>,
> + Send
+ 'static {
    let loads = Arc::clone(loads);
    move || {
        Box::pin(async move {
            let n = loads.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(LOAD).await;
            Ok(n)
        })
    }
}

fn cache(fresh_for: Duration, beta: Option<f64>) -> Cache<u64> {
    let builder = Cache::builder().fresh_for(fresh_for).ttl(fresh_for * 2);
    match beta {
        Some(beta) => builder.early_refresh(beta),
        None => builder,
    }
    .build()
    .expect("valid options")
}

/// Reads `key` every 10 ms for `for_`: how many reads waited for a load.
async fn steady_reads(cache: &Cache<u64>, loads: &Arc<AtomicU64>, for_: Duration) -> u64 {
    let mut waited = 0;
    let end = Instant::now() + for_;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let asked = Instant::now();
        cache.get_or_load("hot", loader(loads)).await.unwrap();
        if asked.elapsed() > Duration::ZERO {
            waited += 1;
        }
    }
    waited
}

#[tokio::test(start_paused = true)]
async fn a_hot_key_is_refreshed_before_it_expires_in_every_trial() {
    for trial in 0..20 {
        let cache = cache(Duration::from_secs(1), Some(1.0));
        let loads = Arc::new(AtomicU64::new(0));
        cache.get_or_load("hot", loader(&loads)).await.unwrap();
        let waited = steady_reads(&cache, &loads, Duration::from_secs(10)).await;
        let stats = cache.stats();
        assert_eq!(waited, 0, "trial {trial}: no read waited for a load");
        assert_eq!(stats.stale_hits, 0, "trial {trial}: nothing served stale");
        assert_eq!(stats.misses, 1, "trial {trial}: only the first read missed");
        // Ten lifetimes of a second, each refreshed once, some way before its end
        // (with 100 reads a second, about three load times before it, on average).
        let loads = loads.load(Ordering::SeqCst);
        assert!(
            (10..=17).contains(&loads),
            "trial {trial}: {loads} loads in 10 s: one per lifetime"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn without_it_a_hot_key_is_served_stale_once_per_lifetime() {
    let cache = cache(Duration::from_secs(1), None);
    let loads = Arc::new(AtomicU64::new(0));
    cache.get_or_load("hot", loader(&loads)).await.unwrap();
    steady_reads(&cache, &loads, Duration::from_secs(10)).await;
    let stats = cache.stats();
    assert!(stats.stale_hits >= 9, "{} stale serves", stats.stale_hits);
}

#[tokio::test(start_paused = true)]
async fn a_cold_key_is_never_refreshed_early() {
    for _ in 0..100 {
        let cache = cache(Duration::from_secs(10), Some(1.0));
        let loads = Arc::new(AtomicU64::new(0));
        cache.get_or_load("cold", loader(&loads)).await.unwrap();
        // Read now and then, far from its expiry (80 load times and more).
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            cache.get_or_load("cold", loader(&loads)).await.unwrap();
        }
        tokio::time::sleep(LOAD * 2).await;
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }
}
