//! Range requests (RFC 9110 §14) answered from stored responses, through the real
//! service in front of a real origin.

mod support;

use corral_http::HttpCache;
use support::{Got, Origin, Reply, cached, get, get_with, send};

const BODY: &str = "0123456789abcdefghij";

/// An origin of one 20-byte document that answers `Range` itself only when `ranges`
/// (a cache must never forward the range of a fetch it stores).
fn document(origin: &Origin, ranges: bool) {
    origin.route("/doc", move |req, _| {
        match req.headers.get("range").and_then(|v| v.to_str().ok()) {
            Some("bytes=0-3") if ranges => Reply::ok("0123")
                .status(206)
                .header("content-range", "bytes 0-3/20"),
            Some(range) if !ranges => panic!("the cache forwarded {range}"),
            _ => Reply::ok(BODY)
                .header("cache-control", "max-age=600")
                .header("etag", "\"v1\"")
                .header("content-type", "text/plain"),
        }
    });
}

async fn ranged(cache: &support::Cached, url: &str, range: &str) -> Got {
    get_with(cache, url, &[("range", range)]).await
}

#[tokio::test]
async fn rfc9110_14_2_ranges_of_a_stored_response_are_served_from_the_cache() {
    let origin = Origin::start().await;
    document(&origin, false);
    let cache = cached(HttpCache::builder());
    let url = origin.url("/doc");
    get(&cache, &url).await;
    for (range, content_range, body) in [
        ("bytes=0-3", "bytes 0-3/20", "0123"),
        ("bytes=-3", "bytes 17-19/20", "hij"),
        ("bytes=15-", "bytes 15-19/20", "fghij"),
        ("bytes=18-1000", "bytes 18-19/20", "ij"),
    ] {
        let got = ranged(&cache, &url, range).await;
        assert_eq!(
            (got.status.as_u16(), got.header("content-range"), got.text()),
            (206, content_range, body),
            "{range}"
        );
        assert_eq!(got.header("content-length"), body.len().to_string());
        assert_eq!(got.x_cache(), "HIT");
        assert_eq!(got.header("etag"), "\"v1\"");
    }
    assert_eq!(origin.count("/doc"), 1);
}

#[tokio::test]
async fn rfc9110_14_6_several_ranges_are_one_multipart_byteranges_body() {
    let origin = Origin::start().await;
    document(&origin, false);
    let cache = cached(HttpCache::builder());
    let url = origin.url("/doc");
    get(&cache, &url).await;
    let got = ranged(&cache, &url, "bytes=0-1, 10-11").await;
    assert_eq!(got.status, 206);
    assert!(got.headers.get("content-range").is_none());
    let boundary = got
        .header("content-type")
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap()
        .to_owned();
    let expected = format!(
        "--{boundary}\r\ncontent-type: text/plain\r\ncontent-range: bytes 0-1/20\r\n\r\n01\r\n\
         --{boundary}\r\ncontent-type: text/plain\r\ncontent-range: bytes 10-11/20\r\n\r\nab\r\n\
         --{boundary}--\r\n"
    );
    assert_eq!(got.text(), expected);
    assert_eq!(got.header("content-length"), expected.len().to_string());
}

#[tokio::test]
async fn rfc9110_15_5_17_an_unsatisfiable_range_is_a_416_with_the_length() {
    let origin = Origin::start().await;
    document(&origin, false);
    let cache = cached(HttpCache::builder());
    let url = origin.url("/doc");
    get(&cache, &url).await;
    let got = ranged(&cache, &url, "bytes=20-").await;
    assert_eq!(
        (got.status.as_u16(), got.header("content-range")),
        (416, "bytes */20")
    );
    assert!(got.body.is_empty());
    assert_eq!(got.header("content-length"), "0");
}

#[tokio::test]
async fn rfc9110_13_1_5_if_range_serves_the_range_only_for_a_strong_match() {
    let origin = Origin::start().await;
    document(&origin, false);
    let cache = cached(HttpCache::builder());
    let url = origin.url("/doc");
    get(&cache, &url).await;
    let matching = get_with(
        &cache,
        &url,
        &[("range", "bytes=0-3"), ("if-range", "\"v1\"")],
    )
    .await;
    assert_eq!((matching.status.as_u16(), matching.text()), (206, "0123"));
    for other in ["\"v2\"", "W/\"v1\""] {
        let whole = get_with(&cache, &url, &[("range", "bytes=0-3"), ("if-range", other)]).await;
        assert_eq!(
            (whole.status.as_u16(), whole.text()),
            (200, BODY),
            "{other}"
        );
    }
}

#[tokio::test]
async fn rfc9110_14_2_a_range_miss_fetches_and_stores_the_whole_and_answers_the_range() {
    let origin = Origin::start().await;
    document(&origin, false);
    let cache = cached(HttpCache::builder());
    let url = origin.url("/doc");
    let requests: Vec<_> = (0..10)
        .map(|i| {
            let (cache, url) = (cache.clone(), url.clone());
            tokio::spawn(async move { ranged(&cache, &url, &format!("bytes={i}-{i}")).await })
        })
        .collect();
    for (i, request) in requests.into_iter().enumerate() {
        let got = request.await.unwrap();
        assert_eq!((got.status.as_u16(), got.text()), (206, &BODY[i..=i]));
    }
    assert_eq!(
        origin.count("/doc"),
        1,
        "one fetch of the whole for every range"
    );
    let whole = get(&cache, &url).await;
    assert_eq!((whole.text(), whole.x_cache()), (BODY, "HIT"));
}

#[tokio::test]
async fn rfc9110_14_2_a_range_of_a_response_too_large_to_store_is_asked_of_the_origin() {
    let origin = Origin::start().await;
    document(&origin, true);
    let cache = cached(HttpCache::builder().max_body_bytes(8));
    let url = origin.url("/doc");
    let got = ranged(&cache, &url, "bytes=0-3").await;
    assert_eq!(
        (got.status.as_u16(), got.header("content-range"), got.text()),
        (206, "bytes 0-3/20", "0123")
    );
    let asked = origin.last_request("/doc");
    assert_eq!(
        asked.get("range").unwrap(),
        "bytes=0-3",
        "the origin answered the range"
    );
}

#[tokio::test]
async fn rfc9110_14_2_a_head_or_a_range_unit_the_cache_does_not_serve_gets_the_whole() {
    let origin = Origin::start().await;
    document(&origin, false);
    let cache = cached(HttpCache::builder());
    let url = origin.url("/doc");
    get(&cache, &url).await;
    let head = http::Request::head(&url)
        .header("range", "bytes=0-3")
        .body(http_body_util::Full::default())
        .unwrap();
    let head = send(&cache, head).await;
    assert_eq!(
        (head.status.as_u16(), head.header("content-length")),
        (200, "20")
    );
    for range in ["items=0-3", "bytes=3-1", "bytes=0-19, 0-19"] {
        let whole = ranged(&cache, &url, range).await;
        assert_eq!(
            (whole.status.as_u16(), whole.text()),
            (200, BODY),
            "{range}"
        );
    }
    assert_eq!(origin.count("/doc"), 1);
}

#[tokio::test]
async fn rfc9110_14_6_a_multipart_answer_keeps_no_stored_content_range() {
    let origin = Origin::start().await;
    origin.route("/odd", |_, _| {
        Reply::ok(BODY)
            .header("cache-control", "max-age=600")
            .header("content-range", "bytes 0-19/20")
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/odd");
    get(&cache, &url).await;
    let got = ranged(&cache, &url, "bytes=0-1,4-5").await;
    assert_eq!(got.status, 206);
    assert!(
        got.header("content-type")
            .starts_with("multipart/byteranges")
    );
    assert!(got.headers.get("content-range").is_none());
}

#[tokio::test]
async fn rfc9110_14_2_a_range_of_a_response_that_is_not_shared_gets_the_whole_once() {
    let origin = Origin::start().await;
    origin.route("/mine", |_, _| {
        Reply::ok(BODY).header("cache-control", "private")
    });
    let cache = cached(HttpCache::builder());
    let got = ranged(&cache, &origin.url("/mine"), "bytes=0-3").await;
    assert_eq!((got.status.as_u16(), got.text()), (200, BODY));
    assert_eq!(origin.count("/mine"), 1, "asked once");
}
