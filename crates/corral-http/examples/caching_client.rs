//! A caching HTTP client: `HttpCache` in front of a hyper-util client, as a private
//! cache. Shows a miss, a hit, and a revalidation answered by `304 Not Modified`.
//!
//! Run it with `cargo run -p corral-http --example caching_client`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use bytes::Bytes;
use corral_http::{HttpCache, Policy};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::ServiceExt;

/// An origin whose document is fresh for 1 s and has an ETag.
async fn origin(requests: Arc<AtomicUsize>) -> std::io::Result<String> {
    let app = Router::new().route(
        "/doc",
        get(move |headers: HeaderMap| {
            requests.fetch_add(1, Ordering::SeqCst);
            async move {
                let etag = "\"v1\"";
                let common = [("cache-control", "max-age=1"), ("etag", etag)];
                if headers.get("if-none-match").is_some_and(|v| v == etag) {
                    (axum::http::StatusCode::NOT_MODIFIED, common, "")
                } else {
                    (axum::http::StatusCode::OK, common, "the document\n")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/doc", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

#[tokio::main]
async fn main() -> Result<(), corral_http::BoxError> {
    let requests = Arc::new(AtomicUsize::new(0));
    let url = origin(requests.clone()).await?;

    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let cached = HttpCache::builder()
        .policy(Policy::Rfc9111 { shared: false })
        .service(client)?;

    for step in ["first", "again", "after 1.5 s"] {
        if step.starts_with("after") {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        }
        let request = http::Request::get(&url).body(Full::default())?;
        let response = cached.clone().oneshot(request).await?;
        let x_cache = response.headers().get("x-cache").cloned();
        let body = response.into_body().collect().await?.to_bytes();
        println!(
            "{step:>12}: x-cache {x_cache:?}, body {body:?}, origin requests so far {}",
            requests.load(Ordering::SeqCst)
        );
    }
    Ok(())
}
