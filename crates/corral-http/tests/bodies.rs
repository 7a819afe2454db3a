//! Headers and bodies: header lists survive, hop-by-hop headers are not stored, large
//! and unknown-length bodies stream through unstored and whole, failed bodies are not
//! stored.

mod support;

use std::time::Duration;

use bytes::Bytes;
use corral_http::HttpCache;
use http_body_util::BodyExt;
use support::{Origin, Reply, cached, get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

#[tokio::test]
async fn multi_valued_headers_and_their_order_survive_storage() {
    let origin = Origin::start().await;
    origin.route("/links", |_, _| {
        Reply::ok("x")
            .header("cache-control", "max-age=600")
            .header("link", "</a.css>; rel=preload")
            .header("link", "</b.js>; rel=preload")
            .header("x-list", "one, two")
            .header("x-list", "three")
    });
    let cache = cached(HttpCache::builder());
    get(&cache, &origin.url("/links")).await;
    let hit = get(&cache, &origin.url("/links")).await;
    assert_eq!(hit.x_cache(), "HIT");
    let links: Vec<_> = hit.headers.get_all("link").iter().collect();
    assert_eq!(links, ["</a.css>; rel=preload", "</b.js>; rel=preload"]);
    let list: Vec<_> = hit.headers.get_all("x-list").iter().collect();
    assert_eq!(list, ["one, two", "three"]);
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_stored() {
    let origin = Origin::start().await;
    origin.route("/hop", |_, _| {
        Reply::ok("x")
            .header("cache-control", "max-age=600")
            .header("connection", "x-internal")
            .header("x-internal", "secret")
            .header("keep-alive", "timeout=5")
            .header("x-kept", "yes")
    });
    let cache = cached(HttpCache::builder());
    get(&cache, &origin.url("/hop")).await;
    let hit = get(&cache, &origin.url("/hop")).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(hit.header("x-kept"), "yes");
    for gone in ["connection", "x-internal", "keep-alive"] {
        assert!(hit.headers.get(gone).is_none(), "{gone} was stored");
    }
}

#[tokio::test]
async fn a_body_over_the_limit_streams_through_whole_and_is_not_stored() {
    let origin = Origin::start().await;
    let big = "x".repeat(100_000);
    let body = big.clone();
    origin.route("/big", move |_, _| {
        Reply::ok(&body).header("cache-control", "max-age=600")
    });
    let cache = cached(HttpCache::builder().max_body_bytes(10_000));
    let first = get(&cache, &origin.url("/big")).await;
    assert_eq!(first.body.len(), big.len());
    assert_eq!(first.x_cache(), "BYPASS");
    let second = get(&cache, &origin.url("/big")).await;
    assert_eq!(second.body.len(), big.len());
    assert_eq!(origin.count("/big"), 2);
}

/// An origin that answers by hand, from raw bytes, for each connection.
async fn raw_origin(answer: &'static [&'static [u8]], pause: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                for chunk in answer {
                    if stream.write_all(chunk).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(pause).await;
                }
            });
        }
    });
    format!("http://{addr}/raw")
}

#[tokio::test]
async fn an_unknown_length_body_over_the_limit_streams_through_unstored() {
    let url = raw_origin(
        &[
            b"HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\ntransfer-encoding: chunked\r\n\r\n",
            b"6\r\nabcdef\r\n",
            b"6\r\nghijkl\r\n",
            b"0\r\n\r\n",
        ],
        Duration::from_millis(10),
    )
    .await;
    let cache = cached(HttpCache::builder().max_body_bytes(8));
    let got = get(&cache, &url).await;
    assert_eq!((got.text(), got.x_cache()), ("abcdefghijkl", "BYPASS"));
    let small = cached(HttpCache::builder().max_body_bytes(100));
    assert_eq!(get(&small, &url).await.x_cache(), "MISS");
    assert_eq!(
        get(&small, &url).await.x_cache(),
        "HIT",
        "within the limit it is stored"
    );
}

#[tokio::test]
async fn a_body_that_fails_half_way_is_not_stored_and_never_passed_off_as_whole() {
    let url = raw_origin(
        &[
            b"HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\ncontent-length: 1000\r\n\r\n",
            b"only part of it",
        ],
        Duration::from_millis(10),
    )
    .await;
    let cache = cached(HttpCache::builder());
    let request = || {
        http::Request::get(&url)
            .body(http_body_util::Full::<Bytes>::default())
            .unwrap()
    };
    let response = cache.clone().oneshot(request()).await.unwrap();
    assert_eq!(
        response.status(),
        502,
        "the fetch failed before anything was sent"
    );
    let response = cache.clone().oneshot(request()).await.unwrap();
    assert_ne!(response.headers().get("x-cache").unwrap(), "HIT");

    let streaming = cached(HttpCache::builder().max_body_bytes(4));
    let response = streaming.clone().oneshot(request()).await.unwrap();
    assert_eq!(response.status(), 200, "too large to store: streamed");
    assert!(
        response.into_body().collect().await.is_err(),
        "the truncation reaches the client as an error"
    );
}
