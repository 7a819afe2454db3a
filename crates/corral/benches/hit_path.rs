//! The hit path: `Cache::get` and `Cache::get_or_load` on present keys against a bare
//! moka `get` with the same key and value types, in the same run.
//!
//! Criterion measures each variant on its own; on a shared, noisy machine the
//! variants' timings drift between those measurements, so the bench then prints
//! ratios taken interleaved (each round times all three over the same keys), which
//! are the figures to compare.

// moka's weigher is handed keys as stored (`&Box<str>`); clippy's advice cannot apply.
#![allow(clippy::borrowed_box)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use futures_util::FutureExt;

const KEYS: usize = 10_000;

struct Caches {
    keys: Vec<String>,
    moka: moka::sync::Cache<Box<str>, Bytes>,
    corral: corral::Cache<Bytes>,
}

impl Caches {
    fn new() -> Self {
        let keys: Vec<String> = (0..KEYS).map(|i| format!("/static/object-{i}")).collect();
        let value = Bytes::from(vec![0u8; 1024]);
        let moka: moka::sync::Cache<Box<str>, Bytes> = moka::sync::Cache::builder()
            .max_capacity(1 << 30)
            .weigher(|k: &Box<str>, v: &Bytes| (k.len() + v.len()) as u32)
            .build();
        let corral: corral::Cache<Bytes> = corral::Cache::builder()
            .max_bytes(1 << 30)
            .fresh_for(Duration::from_secs(3600))
            .build()
            .unwrap();
        for k in &keys {
            moka.insert(k.as_str().into(), value.clone());
            corral
                .insert(k, value.clone())
                .now_or_never()
                .expect("without a Redis tier an insert completes at once");
        }
        moka.run_pending_tasks();
        corral.run_pending_tasks();
        Caches { keys, moka, corral }
    }

    fn moka_get(&self) {
        for k in &self.keys {
            black_box(self.moka.get(k.as_str()));
        }
    }

    fn corral_get(&self) {
        for k in &self.keys {
            black_box(self.corral.get(k));
        }
    }

    fn corral_get_or_load(&self) {
        for k in &self.keys {
            let v = self
                .corral
                .get_or_load(k, || async { Ok::<_, std::io::Error>(Bytes::new()) })
                .now_or_never()
                .expect("a hit completes without waiting");
            black_box(v.unwrap());
        }
    }
}

fn criterion_runs(c: &mut Criterion, caches: &Caches) {
    let mut group = c.benchmark_group("hit");
    group.throughput(Throughput::Elements(KEYS as u64));
    group.bench_function("moka_get", |b| b.iter(|| caches.moka_get()));
    group.bench_function("corral_get", |b| b.iter(|| caches.corral_get()));
    group.bench_function("corral_get_or_load", |b| {
        b.iter(|| caches.corral_get_or_load())
    });
    group.finish();
}

/// Throughput ratios against moka, timed in alternation over `rounds` rounds.
fn interleaved(caches: &Caches, rounds: usize) {
    let mut total = [Duration::ZERO; 3];
    for _ in 0..rounds {
        let runs: [&dyn Fn(); 3] = [&|| caches.moka_get(), &|| caches.corral_get(), &|| {
            caches.corral_get_or_load()
        }];
        for (t, run) in total.iter_mut().zip(runs) {
            let started = Instant::now();
            run();
            *t += started.elapsed();
        }
    }
    let ns = |d: Duration| d.as_nanos() as f64 / (rounds * KEYS) as f64;
    println!(
        "interleaved over {rounds} rounds of {KEYS} hits: moka get {:.0} ns; corral get {:.0} ns ({:.2}x moka's throughput); corral get_or_load {:.0} ns ({:.2}x)",
        ns(total[0]),
        ns(total[1]),
        ns(total[0]) / ns(total[1]),
        ns(total[2]),
        ns(total[0]) / ns(total[2]),
    );
}

fn main() {
    let caches = Caches::new();
    let mut criterion = Criterion::default().configure_from_args();
    criterion_runs(&mut criterion, &caches);
    let bench_mode = std::env::args().any(|a| a == "--bench");
    interleaved(&caches, if bench_mode { 200 } else { 1 });
    criterion.final_summary();
}
