//! `PoolClient::get` and `PoolClient::request`: one call sends a request to its
//! owner, a peer on 127.0.0.1 serving `Route` over `HttpCache` in front of a real
//! origin, and the owner's answer comes back.

mod support;

use bytes::Bytes;
use corral_http::pool::{Pool, PoolError};
use corral_http::{Body, BoxError, HttpCache};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{Origin, Reply};
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};

const SECRET: &str = "pool-client-test-secret";

/// Starts `n` peers that know each other; returns their base URLs.
async fn peers(n: usize) -> Vec<String> {
    let mut listeners = Vec::new();
    for _ in 0..n {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let urls: Vec<String> = listeners
        .iter()
        .map(|l| format!("http://{}", l.local_addr().unwrap()))
        .collect();
    for (listener, url) in listeners.into_iter().zip(&urls) {
        let pool = Pool::builder()
            .self_url(url.as_str())
            .peers(&urls)
            .secret(SECRET)
            .build()
            .unwrap();
        let to_origin =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Body>();
        let route = pool
            .route_layer()
            .unwrap()
            .layer(HttpCache::builder().service(to_origin).unwrap());
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
    }
    urls
}

fn client_of(peers: &[String]) -> (Pool, corral_http::pool::PoolClient) {
    let pool = Pool::builder().peers(peers).secret(SECRET).build().unwrap();
    let client = pool.client();
    (pool, client)
}

async fn text(response: http::Response<Body>) -> String {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn get_fetches_each_url_through_its_owner_once() {
    let origin = Origin::start().await;
    for path in ["/a", "/b", "/c", "/d"] {
        origin.route(path, move |_, _| {
            Reply::ok(&format!("doc {path}")).header("cache-control", "max-age=60")
        });
    }
    let (_pool, client) = client_of(&peers(2).await);
    for _ in 0..3 {
        for path in ["/a", "/b", "/c", "/d"] {
            let response = client.get(&origin.url(path)).await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(text(response).await, format!("doc {path}"));
        }
    }
    for path in ["/a", "/b", "/c", "/d"] {
        assert_eq!(origin.count(path), 1, "{path}: one fetch across the pool");
    }
}

#[tokio::test]
async fn request_sends_any_method_and_headers_to_the_owner() {
    let origin = Origin::start().await;
    origin.route("/echo", |parts, _| {
        let accept = parts
            .headers
            .get("accept")
            .map_or("", |v| v.to_str().unwrap());
        Reply::ok(&format!("{} {accept}", parts.method))
    });
    let (_pool, client) = client_of(&peers(1).await);
    let request = http::Request::post(origin.url("/echo"))
        .header("accept", "text/plain")
        .body(http_body_util::Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(text(response).await, "POST text/plain");
}

#[tokio::test]
async fn get_of_anything_but_an_absolute_url_is_an_error_that_says_so() {
    let (_pool, client) = client_of(&["http://127.0.0.1:9".to_owned()]);
    for url in ["/relative", "not a url", "ftp://example.com/x"] {
        let error: BoxError = client.get(url).await.unwrap_err();
        assert!(
            matches!(error.downcast_ref::<PoolError>(), Some(PoolError::NotAbsolute(u)) if u == url),
            "{url}: {error}"
        );
    }
}
