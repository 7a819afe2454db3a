//! Cache hits through `HttpCacheLayer` against the bare axum handler, in process (no
//! network): the layer's own cost. The wire-level figure comes from
//! `bench/axum-layer.sh`.
//!
//! Criterion measures each variant on its own; the bench then prints the ratio timed
//! interleaved (each round runs both), the figure to compare on a noisy machine.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use criterion::Criterion;
use http_body_util::BodyExt;
use tower::ServiceExt;

const BATCH: usize = 1000;

fn app(cached: bool) -> Router {
    let body = Bytes::from(vec![b'x'; 1024]);
    let app = Router::new().route(
        "/static",
        get(move || {
            let body = body.clone();
            async move { ([("cache-control", "max-age=3600")], body) }
        }),
    );
    if cached {
        app.layer(
            corral_http::HttpCache::builder()
                .layer()
                .expect("valid options"),
        )
    } else {
        app
    }
}

async fn requests(app: &Router, n: usize) {
    for _ in 0..n {
        let request = http::Request::get("/static")
            .header("host", "127.0.0.1:19602")
            .header("user-agent", "bench")
            .body(Body::empty())
            .expect("valid request");
        let response = app.clone().oneshot(request).await.expect("infallible");
        std::hint::black_box(response.into_body().collect().await.expect("body"));
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (bare, cached) = (app(false), app(true));
    runtime.block_on(requests(&cached, 1));

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("axum_1k");
    group.throughput(criterion::Throughput::Elements(BATCH as u64));
    group.bench_function("bare_handler", |b| {
        b.iter(|| runtime.block_on(requests(&bare, BATCH)))
    });
    group.bench_function("cache_hit_through_layer", |b| {
        b.iter(|| runtime.block_on(requests(&cached, BATCH)))
    });
    group.finish();

    let rounds = if std::env::args().any(|a| a == "--bench") {
        100
    } else {
        1
    };
    let mut time = [Duration::ZERO; 2];
    for _ in 0..rounds {
        for (t, app) in time.iter_mut().zip([&bare, &cached]) {
            let started = Instant::now();
            runtime.block_on(requests(app, BATCH));
            *t += started.elapsed();
        }
    }
    let ns = |d: Duration| d.as_nanos() as f64 / (rounds * BATCH) as f64;
    println!(
        "interleaved over {rounds} rounds of {BATCH} requests: bare handler {:.0} ns, cache hit through the layer {:.0} ns ({:.2}x the bare handler's throughput)",
        ns(time[0]),
        ns(time[1]),
        ns(time[0]) / ns(time[1])
    );
    criterion.final_summary();
}
