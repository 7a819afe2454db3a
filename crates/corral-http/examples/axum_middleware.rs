//! A server-side response cache: `HttpCacheLayer` in front of an axum app whose
//! handler takes 200 ms. A burst of 100 concurrent requests runs the handler once;
//! later requests are hits.
//!
//! Run it with `cargo run -p corral-http --example axum_middleware`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use corral_http::HttpCache;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[tokio::main]
async fn main() -> Result<(), corral_http::BoxError> {
    let calls = Arc::new(AtomicUsize::new(0));
    let handler_calls = calls.clone();
    let cache = HttpCache::builder().layer()?;
    let handle = cache.handle();
    let app = Router::new()
        .route(
            "/report",
            get(move || {
                let calls = handler_calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    (
                        [("cache-control", "public, max-age=30")],
                        "an expensive report\n",
                    )
                }
            }),
        )
        .layer(cache);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/report", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("serving {url}");

    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let started = Instant::now();
    let burst: Vec<_> = (0..100)
        .map(|_| {
            let (client, url) = (client.clone(), url.parse()?);
            Ok(tokio::spawn(async move { client.get(url).await }))
        })
        .collect::<Result<_, http::uri::InvalidUri>>()?;
    for request in burst {
        request.await??;
    }
    println!(
        "100 concurrent requests answered in {:?}; the handler ran {} time(s)",
        started.elapsed(),
        calls.load(Ordering::SeqCst)
    );

    let response = client.get(url.parse()?).await?;
    let x_cache = response.headers().get("x-cache").cloned();
    let cache_status = response.headers().get("cache-status").cloned();
    let body = response.into_body().collect().await?.to_bytes();
    println!("one more request: x-cache {x_cache:?}, cache-status {cache_status:?}, body {body:?}");
    println!("{:#?}", handle.stats());
    Ok(())
}
