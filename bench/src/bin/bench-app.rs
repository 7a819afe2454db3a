//! `bench-app`: an axum app for the middleware benchmarks, with or without corral's
//! `HttpCacheLayer` in front.
//!
//! ```text
//! bench-app [--port 19601] [--cache] [--threads 1] [--delay-ms 100]
//! ```
//!
//! Routes: `GET /static` (1 KiB, `max-age=3600`), `GET /slow/{id}` (sleeps
//! `--delay-ms` first), `GET /__calls` (handler calls so far, as text).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use bytes::Bytes;
use corral_bench::Args;
use corral_http::HttpCache;

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let port: u16 = args.get("--port", 19601);
    let threads: usize = args.get("--threads", 1);
    let delay = Duration::from_millis(args.get("--delay-ms", 100));
    let cache = args.flag("--cache");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let calls = Arc::new(AtomicU64::new(0));
        let body = Bytes::from(vec![b'x'; 1024]);
        let (static_calls, slow_calls, read_calls) = (calls.clone(), calls.clone(), calls);
        let app = Router::new()
            .route(
                "/static",
                get(move || {
                    static_calls.fetch_add(1, Ordering::Relaxed);
                    let body = body.clone();
                    async move { ([("cache-control", "max-age=3600")], body) }
                }),
            )
            .route(
                "/slow/{id}",
                get(move |Path(id): Path<String>| {
                    slow_calls.fetch_add(1, Ordering::Relaxed);
                    async move {
                        tokio::time::sleep(delay).await;
                        ([("cache-control", "max-age=3600")], format!("slow {id}\n"))
                    }
                }),
            );
        let app = if cache {
            app.layer(
                HttpCache::builder()
                    .layer()
                    .map_err(std::io::Error::other)?,
            )
        } else {
            app
        };
        let app = app.route(
            "/__calls",
            get(move || async move { read_calls.load(Ordering::Relaxed).to_string() }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        eprintln!("bench-app on 127.0.0.1:{port} (cache: {cache}, threads: {threads})");
        axum::serve(listener, app).await
    })
}
