//! Keeps a JSON Web Key Set fresh from a local origin with the refresh cache: the
//! keys are read from memory, refreshed in the background when their `max-age` ends
//! (conditionally: an unchanged set is a 304), rotated keys show up on their own,
//! and an origin outage keeps the last good set while the error reaches the sink.
//! A second cache keeps only the key ids, with a transform of its own.
//!
//! Run it with `cargo run -p corral-http --features refresh --example jwks_refresh`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use corral_http::refresh::{RefreshCache, Registration, UrlAllowList};

#[derive(Debug, serde::Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Debug, serde::Deserialize)]
struct Jwk {
    kid: String,
    kty: String,
}

/// The identity provider: its key set's generation (0 = down) decides the answer.
async fn origin(generation: Arc<AtomicU32>) -> std::io::Result<String> {
    let app = Router::new().route(
        "/.well-known/jwks.json",
        get(move |headers: HeaderMap| {
            let generation = generation.load(Ordering::SeqCst);
            async move {
                if generation == 0 {
                    return (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
                }
                let etag = format!("\"gen-{generation}\"");
                let common = [
                    ("cache-control", "max-age=1".to_owned()),
                    ("etag", etag.clone()),
                ];
                if headers.get("if-none-match").is_some_and(|v| *v == *etag) {
                    return (StatusCode::NOT_MODIFIED, common).into_response();
                }
                let body = format!(
                    r#"{{"keys":[{{"kid":"key-{generation}","kty":"RSA"}},{{"kid":"key-{}","kty":"RSA"}}]}}"#,
                    generation - 1
                );
                (StatusCode::OK, common, body).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}

fn kids(jwks: &Jwks) -> Vec<String> {
    jwks.keys
        .iter()
        .map(|k| format!("{} ({})", k.kid, k.kty))
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let generation = Arc::new(AtomicU32::new(1));
    let base = origin(generation.clone()).await?;
    let url = format!("{base}/.well-known/jwks.json");

    let keys: RefreshCache<Jwks> = RefreshCache::builder()
        // Only the identity provider's keys: a `jku` from a token cannot send the
        // cache anywhere else, not even by a redirect.
        .allow(UrlAllowList::new().prefix(&base)?)
        .error_sink(|error| println!("  sink: {error}"))
        .build()?;
    // Short intervals for the demonstration (the defaults are 15 minutes to 30 days).
    let registration = Registration::json()
        .min_interval(Duration::from_millis(500))
        .max_interval(Duration::from_secs(60))
        .wait_for_first_fetch(true);
    keys.register(&url, registration).await?;
    println!("registered {url}");
    println!("keys now: {:?}", kids(&*keys.get(&url).await?));

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = &keys.snapshot()[0];
    println!(
        "after max-age, a conditional refresh: etag {:?}, next in {:?}",
        status.etag, status.next_refresh_in
    );

    generation.store(2, Ordering::SeqCst);
    println!("the provider rotates its keys...");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    println!("keys now: {:?}", kids(&*keys.get(&url).await?));

    generation.store(0, Ordering::SeqCst);
    println!("the provider goes down...");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let status = &keys.snapshot()[0];
    println!(
        "keys still: {:?} ({} failed refreshes in a row, retrying in {:?})",
        kids(&*keys.get(&url).await?),
        status.consecutive_failures,
        status.next_refresh_in
    );

    generation.store(3, Ordering::SeqCst);
    let fresh = keys.refresh(&url).await?;
    println!("back up, refreshed now: {:?}", kids(&fresh));
    keys.shutdown().await;

    // A transform of one's own: the closure's argument (the response, its body read
    // whole) needs no type annotation, so neither `http` nor `bytes` is imported.
    let ids: RefreshCache<Vec<String>> = RefreshCache::builder().build()?;
    let only_ids = Registration::with_transform(|response| async move {
        let jwks: Jwks = serde_json::from_slice(response.body())?;
        Ok::<_, serde_json::Error>(jwks.keys.into_iter().map(|k| k.kid).collect())
    });
    ids.register(&url, only_ids.wait_for_first_fetch(true))
        .await?;
    println!("key ids alone: {:?}", ids.get(&url).await?);
    ids.shutdown().await;
    Ok(())
}
