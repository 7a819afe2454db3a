//! Probabilistic early refresh (XFetch) on a hot key, across three cache instances
//! sharing a real `redis-server` on loopback (started by the bench): 10 000 reads a
//! second spread over the three, a 1 s lifetime (then 1 s more stale), a 50 ms loader;
//! misses, stale serves and loads, with early refresh and without, side by side.
//!
//! ```sh
//! cargo bench -p corral --features redis --bench early_refresh -- --bench   # 60 s each
//! ```
//! Without `--bench` (as `cargo test --benches` runs it) each run lasts 2 s;
//! `EARLY_BENCH_SECS` sets it.

// The tests' helpers, of which the bench uses a part.
#[allow(dead_code)]
#[path = "../tests/support/redis.rs"]
mod redis_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use corral::Cache;
use corral::redis::RedisTier;
use redis_server::RedisServer;
use tokio::time::Instant;

const LOAD: Duration = Duration::from_millis(50);
const READS_PER_SECOND: u64 = 10_000;

fn instance(url: &str, prefix: &str, beta: Option<f64>) -> Cache<String> {
    let tier = RedisTier::builder(url)
        .prefix(prefix)
        .build()
        .expect("valid tier");
    let builder = Cache::builder()
        .fresh_for(Duration::from_secs(1))
        .ttl(Duration::from_secs(2))
        .redis(tier);
    match beta {
        Some(beta) => builder.early_refresh(beta),
        None => builder,
    }
    .build()
    .expect("valid cache")
}

/// Reads the hot key at [`READS_PER_SECOND`] over three instances for `run`: the
/// misses, stale serves and loads.
async fn run(url: &str, beta: Option<f64>, run: Duration) -> (u64, Vec<u64>, u64) {
    let prefix = format!("early-{}:", beta.map_or(0.0, |b| b));
    let caches: Vec<_> = (0..3).map(|_| instance(url, &prefix, beta)).collect();
    let loads = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + run;
    // Every millisecond, ten reads, round the three instances.
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut turn = 0usize;
    while Instant::now() < end {
        tick.tick().await;
        for _ in 0..READS_PER_SECOND / 1000 {
            turn += 1;
            let (cache, loads) = (caches[turn % 3].clone(), Arc::clone(&loads));
            tokio::spawn(async move {
                let _ = cache
                    .get_or_load("hot", move || async move {
                        loads.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(LOAD).await;
                        Ok::<_, std::io::Error>("value".to_owned())
                    })
                    .await;
            });
        }
    }
    tokio::time::sleep(LOAD * 2).await;
    let misses = caches.iter().map(|cache| cache.stats().misses).sum();
    let stale = caches
        .iter()
        .map(|cache| cache.stats().stale_hits)
        .collect();
    (misses, stale, loads.load(Ordering::Relaxed))
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let length = match std::env::var("EARLY_BENCH_SECS") {
        Ok(secs) => Duration::from_secs(secs.parse().expect("seconds")),
        Err(_) if full => Duration::from_secs(60),
        Err(_) => Duration::from_secs(2),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start();
    runtime.block_on(async {
        println!(
            "hot key, {READS_PER_SECOND} reads/s over 3 instances sharing Redis, 1 s fresh, {LOAD:?} loader, {length:?}"
        );
        for beta in [None, Some(1.0), None, Some(1.0)] {
            let (misses, stale, loads) = run(&server.url(), beta, length).await;
            let name = beta.map_or("without early refresh".to_owned(), |b| format!("early_refresh({b})"));
            let total: u64 = stale.iter().sum();
            println!(
                "  {name:<24} misses {misses:>4}  stale serves {total:>6} {stale:?}  loads {loads:>4}"
            );
        }
    });
}
