//! Keys and methods: HEAD from a stored GET, the query in the key, other methods pass
//! through, and unsafe methods invalidate.

mod support;

use bytes::Bytes;
use corral_http::HttpCache;
use http_body_util::Full;
use support::{Origin, Reply, cached, get, send};

/// A request with a body (for the methods that have one).
fn request(method: &str, url: &str) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::from("payload"))
        .unwrap()
}

fn head(url: &str) -> http::Request<Full<Bytes>> {
    http::Request::head(url).body(Full::default()).unwrap()
}

#[tokio::test]
async fn a_head_request_is_answered_from_a_stored_get() {
    let origin = Origin::start().await;
    origin.route("/doc", |_, _| {
        Reply::ok("the document").header("cache-control", "max-age=600")
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/doc");
    get(&cache, &url).await;
    let head = send(&cache, head(&url)).await;
    assert_eq!(
        (head.status.as_u16(), head.x_cache(), head.body.len()),
        (200, "HIT", 0)
    );
    assert_eq!(head.header("content-length"), "12");
    assert_eq!(origin.count("/doc"), 1);
}

#[tokio::test]
async fn a_head_miss_fetches_the_get_and_stores_it() {
    let origin = Origin::start().await;
    origin.route("/doc", |req, _| {
        assert_eq!(req.method, "GET", "the cache asks for the whole response");
        Reply::ok("body").header("cache-control", "max-age=600")
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/doc");
    let head = send(&cache, head(&url)).await;
    assert_eq!((head.x_cache(), head.body.len()), ("MISS", 0));
    let full = get(&cache, &url).await;
    assert_eq!((full.text(), full.x_cache()), ("body", "HIT"));
}

#[tokio::test]
async fn the_query_string_is_part_of_the_key() {
    let origin = Origin::start().await;
    origin.route("/items", |req, _| {
        Reply::ok(req.uri.query().unwrap_or("none")).header("cache-control", "max-age=600")
    });
    let cache = cached(HttpCache::builder());
    assert_eq!(
        get(&cache, &origin.url("/items?page=1")).await.text(),
        "page=1"
    );
    assert_eq!(
        get(&cache, &origin.url("/items?page=2")).await.text(),
        "page=2"
    );
    assert_eq!(
        get(&cache, &origin.url("/items?page=1")).await.x_cache(),
        "HIT"
    );
}

#[tokio::test]
async fn other_methods_pass_through_untouched_with_their_bodies() {
    let origin = Origin::start().await;
    origin.route("/api", |req, n| {
        Reply::ok(&format!("{} #{n}", req.method)).header("cache-control", "max-age=600")
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/api");
    for method in ["OPTIONS", "POST", "OPTIONS"] {
        let got = send(&cache, request(method, &url)).await;
        assert_eq!(got.x_cache(), "BYPASS");
        assert!(got.header("cache-status").contains("fwd=method"));
    }
    assert_eq!(origin.count("/api"), 3);
}

#[tokio::test]
async fn an_unsafe_method_invalidates_its_url_and_its_same_origin_locations() {
    let origin = Origin::start().await;
    for path in ["/items", "/items/7", "/items/8", "/other"] {
        origin.route(path, |_, n| {
            Reply::ok(&format!("version {n}")).header("cache-control", "max-age=600")
        });
    }
    origin.route("/items/new", |req, n| {
        if req.method == "POST" {
            Reply::ok("created")
                .status(201)
                .header("location", "/items/7")
                .header("content-location", "8")
        } else {
            Reply::ok(&format!("form {n}")).header("cache-control", "max-age=600")
        }
    });
    let cache = cached(HttpCache::builder());
    for path in ["/items", "/items/7", "/items/8", "/other", "/items/new"] {
        get(&cache, &origin.url(path)).await;
    }
    let created = send(&cache, request("POST", &origin.url("/items/new"))).await;
    assert_eq!(created.status, 201);
    assert_eq!(
        get(&cache, &origin.url("/items/new")).await.text(),
        "form 3",
        "its own URL (2 was the POST)"
    );
    assert_eq!(
        get(&cache, &origin.url("/items/7")).await.text(),
        "version 2",
        "Location"
    );
    assert_eq!(
        get(&cache, &origin.url("/items/8")).await.text(),
        "version 2",
        "Content-Location"
    );
    assert_eq!(
        get(&cache, &origin.url("/items")).await.x_cache(),
        "HIT",
        "untouched"
    );
    assert_eq!(
        get(&cache, &origin.url("/other")).await.x_cache(),
        "HIT",
        "untouched"
    );
}

#[tokio::test]
async fn a_failed_unsafe_request_invalidates_nothing_and_other_origins_are_never_invalidated() {
    let origin = Origin::start().await;
    origin.route("/thing", |req, n| match req.method.as_str() {
        "DELETE" => Reply::ok("nope").status(409),
        "PUT" => Reply::ok("moved").header("location", "http://elsewhere.example/thing"),
        _ => Reply::ok(&format!("v{n}")).header("cache-control", "max-age=600"),
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/thing");
    get(&cache, &url).await;
    send(&cache, request("DELETE", &url)).await;
    assert_eq!(get(&cache, &url).await.x_cache(), "HIT");
    send(&cache, request("PUT", &url)).await;
    assert_eq!(
        get(&cache, &url).await.text(),
        "v4",
        "the PUT's own URL was invalidated"
    );
}

#[tokio::test]
async fn invalidation_removes_every_variant_of_a_url() {
    let origin = Origin::start().await;
    origin.route("/v", |req, n| match req.method.as_str() {
        "PATCH" => Reply::ok("patched"),
        _ => {
            let lang = req
                .headers
                .get("accept-language")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("en")
                .to_owned();
            Reply::ok(&format!("{lang} {n}"))
                .header("cache-control", "max-age=600")
                .header("vary", "accept-language")
        }
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/v");
    let de = [("accept-language", "de")];
    support::get_with(&cache, &url, &de).await;
    get(&cache, &url).await;
    send(&cache, request("PATCH", &url)).await;
    let after = support::get_with(&cache, &url, &de).await;
    assert_eq!((after.text(), after.x_cache()), ("de 4", "MISS"));
    let en = get(&cache, &url).await;
    assert_eq!(
        (en.text(), en.x_cache()),
        ("en 5", "MISS"),
        "the other variant went too"
    );
}

/// RFC 9111 §4.4: "including methods whose safety is unknown".
#[tokio::test]
async fn rfc9111_4_4_extension_methods_invalidate_and_safe_ones_do_not() {
    let origin = Origin::start().await;
    origin.route("/doc", |req, n| match req.method.as_str() {
        "GET" => Reply::ok(&format!("v{n}")).header("cache-control", "max-age=600"),
        _ => Reply::ok("done"),
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/doc");
    get(&cache, &url).await;
    for safe in ["OPTIONS", "TRACE"] {
        send(&cache, request(safe, &url)).await;
        assert_eq!(get(&cache, &url).await.x_cache(), "HIT", "{safe}");
    }
    for (unknown, version) in [("M-SEARCH", "v5"), ("PURGE", "v7"), ("LINK", "v9")] {
        let answer = send(&cache, request(unknown, &url)).await;
        assert_eq!(answer.status, 200);
        let after = get(&cache, &url).await;
        assert_eq!(
            (after.text(), after.x_cache()),
            (version, "MISS"),
            "{unknown} invalidated the URL"
        );
    }
}
