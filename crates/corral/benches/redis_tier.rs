//! The Redis tier, against a real `redis-server` on loopback started by the bench:
//!
//! 1. a memory-tier hit vs a Redis-tier hit (the reader's memory empty, the value in
//!    Redis): latency one at a time, and throughput with 64 concurrent callers;
//! 2. a cross-server stampede: 200 callers spread over 3 cache instances on one cold
//!    key, with a 100 ms loader: loads in total, and p99 latency.
//!
//! `cargo bench -p corral --features redis --bench redis_tier`

// The tests' helpers, of which the bench uses a part.
#[allow(dead_code)]
#[path = "../tests/support/redis.rs"]
mod redis_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use corral::Cache;
use corral::redis::RedisTier;
use redis_server::RedisServer;

const KEYS: usize = 20_000;

fn instance(url: &str) -> Cache<String> {
    Cache::builder()
        .max_bytes(1 << 30)
        .fresh_for(Duration::from_secs(3600))
        .redis(
            RedisTier::builder(url)
                .prefix("bench:")
                .build()
                .expect("tier"),
        )
        .build()
        .expect("cache")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
}

async fn read_all(cache: &Cache<String>, keys: &[String]) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(keys.len());
    for key in keys {
        let started = Instant::now();
        let v = cache
            .get_or_load(key, || async {
                Ok::<_, std::io::Error>("missing".to_string())
            })
            .await
            .expect("value");
        assert_ne!(v, "missing", "the value came from a tier");
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies
}

async fn read_concurrently(cache: &Cache<String>, keys: &[String], callers: usize) -> f64 {
    let keys = Arc::new(keys.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (cache, keys, next) = (cache.clone(), keys.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(key) = keys.get(i) else { return };
                    cache
                        .get_or_load(key, || async {
                            Ok::<_, std::io::Error>("missing".to_string())
                        })
                        .await
                        .expect("value");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    keys.len() as f64 / started.elapsed().as_secs_f64()
}

async fn tiers(url: &str, keys: usize) {
    let keys: Vec<String> = (0..keys).map(|i| format!("object-{i}")).collect();
    let writer = instance(url);
    for key in &keys {
        let value = format!("value of {key} {}", "x".repeat(100));
        writer
            .get_or_load(key, move || async move { Ok::<_, std::io::Error>(value) })
            .await
            .expect("load");
    }
    let memory = instance(url);
    read_all(&memory, &keys).await; // copies every value into memory
    let memory_hits = read_all(&memory, &keys).await;
    let redis_hits = read_all(&instance(url), &keys).await;
    let memory_rate = read_concurrently(&memory, &keys, 64).await;
    let redis_rate = read_concurrently(&instance(url), &keys, 64).await;
    let report = |name: &str, l: &[Duration], rate: f64| {
        println!(
            "{name}: p50 {:.1} µs, p99 {:.1} µs (one at a time); {:.0} reads/s with 64 concurrent callers",
            percentile(l, 50.0).as_secs_f64() * 1e6,
            percentile(l, 99.0).as_secs_f64() * 1e6,
            rate
        );
    };
    report("memory-tier hit", &memory_hits, memory_rate);
    report("redis-tier hit (memory empty)", &redis_hits, redis_rate);
}

async fn stampede(url: &str, round: usize) -> (usize, Duration) {
    let servers: Vec<Cache<String>> = (0..3).map(|_| instance(url)).collect();
    let loads = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let key = format!("stampede-{round}");
    let callers: Vec<_> = (0..200)
        .map(|i| {
            let (cache, loads, barrier, key) = (
                servers[i % 3].clone(),
                loads.clone(),
                barrier.clone(),
                key.clone(),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                let started = Instant::now();
                cache
                    .get_or_load(&key, move || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok::<_, std::io::Error>("v".to_string())
                    })
                    .await
                    .expect("value");
                started.elapsed()
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for caller in callers {
        latencies.push(caller.await.expect("caller"));
    }
    latencies.sort();
    (loads.load(Ordering::SeqCst), percentile(&latencies, 99.0))
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        tiers(&server.url(), if bench_mode { KEYS } else { 200 }).await;
        let rounds = if bench_mode { 10 } else { 1 };
        let mut p99s = Vec::new();
        for round in 0..rounds {
            let (loads, p99) = stampede(&server.url(), round).await;
            println!("stampede round {round}: 200 callers over 3 servers, 100 ms loader: {loads} load(s), p99 {:.1} ms", p99.as_secs_f64() * 1e3);
            assert_eq!(loads, 1, "one load per cluster");
            p99s.push(p99);
        }
        p99s.sort();
        println!(
            "stampede: median p99 {:.1} ms, worst p99 {:.1} ms over {rounds} rounds",
            percentile(&p99s, 50.0).as_secs_f64() * 1e3,
            p99s.last().expect("rounds").as_secs_f64() * 1e3
        );
    });
}
