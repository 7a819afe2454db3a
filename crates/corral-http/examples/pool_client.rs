//! The pool from an application that is not a peer: two peers on 127.0.0.1, each a
//! `Route` in front of its own `HttpCache` over a small origin, and a `PoolClient`
//! that GETs each URL from its owner with one call. Every URL is fetched from the
//! origin once, by its owner, however often and through whichever peer it is asked
//! for.
//!
//! Run it with `cargo run -p corral-http --features pool --example pool_client`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use corral_http::pool::Pool;
use corral_http::{Body, BoxError, HttpCache};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};

const SECRET: &str = "an-example-secret-shared-by-the-peers";

/// The origin: `/doc/{n}`, fresh for a minute, counting what it serves.
async fn origin(requests: Arc<AtomicUsize>) -> std::io::Result<SocketAddr> {
    let app = Router::new().route(
        "/doc/{n}",
        get(move |Path(n): Path<u32>| {
            requests.fetch_add(1, Ordering::SeqCst);
            async move { ([("cache-control", "max-age=60")], format!("document {n}")) }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// A peer: `pool.route_layer()` in front of an `HttpCache` that fetches from the
/// origin, served by hyper on `listener`.
fn peer(listener: TcpListener, pool: &Pool) -> Result<(), BoxError> {
    let to_origin =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Body>();
    let route = pool
        .route_layer()?
        .layer(HttpCache::builder().service(to_origin)?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let route = route.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: http::Request<_>| {
                    route.clone().oneshot(request.map(Body::streaming))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let requests = Arc::new(AtomicUsize::new(0));
    let origin = origin(requests.clone()).await?;

    // Two peers, each knowing itself and the other.
    let listeners = [
        TcpListener::bind("127.0.0.1:0").await?,
        TcpListener::bind("127.0.0.1:0").await?,
    ];
    let peers: Vec<String> = listeners
        .iter()
        .map(|l| Ok::<_, std::io::Error>(format!("http://{}", l.local_addr()?)))
        .collect::<Result<_, _>>()?;
    for (listener, url) in listeners.into_iter().zip(&peers) {
        let pool = Pool::builder()
            .self_url(url.as_str())
            .peers(&peers)
            .secret(SECRET)
            .build()?;
        peer(listener, &pool)?;
    }

    // The application: in the pool without being a peer (no `self_url`).
    let pool = Pool::builder().peers(&peers).secret(SECRET).build()?;
    let client = pool.client();
    for round in ["first", "again"] {
        for n in 1..=4 {
            let url = format!("http://{origin}/doc/{n}");
            let response = client.get(&url).await?;
            let x_cache = response.headers().get("x-cache").cloned();
            let body = response.into_body().collect().await?.to_bytes();
            println!(
                "{round:>5}: {url} from {}: {body:?}, x-cache {x_cache:?}",
                pool.owner(&url).unwrap_or_default()
            );
        }
    }
    let fetched = requests.load(Ordering::SeqCst);
    println!("the origin served {fetched} requests for 8 GETs");
    assert_eq!(fetched, 4, "one origin fetch per URL across the pool");
    Ok(())
}
