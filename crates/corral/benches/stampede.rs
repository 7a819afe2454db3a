//! A cold key with 1000 concurrent waiters and a 10 ms loader: how much later than the
//! loader's own 10 ms does the last waiter get its value?
//!
//! `corral` is the cache's delay: from the first call to the loader starting, plus
//! from the loader returning to the last of the 1000 waiters holding the value.
//! `tokio_watch` is the floor set by the runtime alone: the same 1000 tasks woken by a
//! bare `tokio::sync::watch` when a 10 ms task finishes, measured the same way.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};

const WAITERS: usize = 1000;
const LOADER_TIME: Duration = Duration::from_millis(10);

/// When the first waiter called, and when the load ran.
#[derive(Default)]
struct Marks {
    first_call: OnceLock<Instant>,
    load: OnceLock<(Instant, Instant)>,
}

impl Marks {
    /// The delay added for the last waiter, given when each waiter got its value.
    fn added(&self, done: impl Iterator<Item = Instant>) -> Duration {
        let (load_start, load_end) = *self.load.get().expect("the load ran");
        let first = *self.first_call.get().expect("someone called");
        let last = done.max().expect("waiters");
        load_start.saturating_duration_since(first) + last.saturating_duration_since(load_end)
    }
}

async fn load(marks: Arc<Marks>) -> Bytes {
    let started = Instant::now();
    tokio::time::sleep(LOADER_TIME).await;
    let _ = marks.load.set((started, Instant::now()));
    Bytes::from_static(b"value")
}

/// One stampede on `cache`: the delay the cache added for the last waiter.
async fn through_corral(cache: &corral::Cache<Bytes>, key: &str) -> Duration {
    let marks = Arc::new(Marks::default());
    let barrier = Arc::new(tokio::sync::Barrier::new(WAITERS));
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            let (cache, key, marks, barrier) = (
                cache.clone(),
                key.to_owned(),
                marks.clone(),
                barrier.clone(),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                let _ = marks.first_call.set(Instant::now());
                let loader = move || async move { Ok::<_, std::io::Error>(load(marks).await) };
                cache.get_or_load(&key, loader).await.unwrap();
                Instant::now()
            })
        })
        .collect();
    let mut done = Vec::with_capacity(WAITERS);
    for w in waiters {
        done.push(w.await.unwrap());
    }
    marks.added(done.into_iter())
}

/// The same stampede with no cache: one task loads, the rest wait on a watch channel.
async fn through_watch() -> Duration {
    let marks = Arc::new(Marks::default());
    let barrier = Arc::new(tokio::sync::Barrier::new(WAITERS));
    let (tx, _) = tokio::sync::watch::channel(None::<Bytes>);
    let tx = Arc::new(tx);
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            let (marks, barrier, tx) = (marks.clone(), barrier.clone(), tx.clone());
            tokio::spawn(async move {
                let mut rx = tx.subscribe();
                barrier.wait().await;
                if marks.first_call.set(Instant::now()).is_ok() {
                    let (marks, tx) = (marks.clone(), tx.clone());
                    tokio::spawn(async move { tx.send_replace(Some(load(marks).await)) });
                }
                let value = rx.wait_for(Option::is_some).await.unwrap().clone();
                std::hint::black_box(value);
                Instant::now()
            })
        })
        .collect();
    let mut done = Vec::with_capacity(WAITERS);
    for w in waiters {
        done.push(w.await.unwrap());
    }
    marks.added(done.into_iter())
}

fn cold_key(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache: corral::Cache<Bytes> = corral::Cache::builder().build().unwrap();
    let mut round = 0u64;
    let mut group = c.benchmark_group("stampede_1000_waiters_added_latency");
    group.bench_function("corral", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    round += 1;
                    runtime.block_on(through_corral(&cache, &format!("cold-{round}")))
                })
                .sum()
        })
    });
    group.bench_function("tokio_watch", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| runtime.block_on(through_watch())).sum())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(10));
    targets = cold_key
}
criterion_main!(benches);
