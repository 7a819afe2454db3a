//! Tags an origin gives its responses (`Surrogate-Key`, `Cache-Tag`, `Cache-Groups`)
//! and purges by them: every variant of a URL goes, untagged responses stay; a soft
//! purge serves the stale response while the origin fails.

mod support;

use corral_http::HttpCache;
use support::{Origin, Reply, cached, get, get_with};

#[tokio::test]
async fn a_tag_purge_removes_every_variant_of_the_tagged_urls_and_nothing_else() {
    let origin = Origin::start().await;
    origin.route("/p", |req, n| {
        let lang = req
            .headers
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        Reply::ok(&format!("{lang} v{n}"))
            .header("cache-control", "max-age=600")
            .header("vary", "accept-language")
            .header("cache-tag", "product-1, catalog")
    });
    origin.route("/groups", |_, n| {
        Reply::ok(&format!("groups v{n}"))
            .header("cache-control", "max-age=600")
            .header("cache-groups", r#""product-1", "g2""#)
    });
    origin.route("/other", |_, n| {
        Reply::ok(&format!("other v{n}"))
            .header("cache-control", "max-age=600")
            .header("surrogate-key", "catalog-2")
    });
    let cache = cached(HttpCache::builder());
    let (p, groups, other) = (
        origin.url("/p"),
        origin.url("/groups"),
        origin.url("/other"),
    );
    for lang in ["en", "fr"] {
        get_with(&cache, &p, &[("accept-language", lang)]).await;
        let hit = get_with(&cache, &p, &[("accept-language", lang)]).await;
        assert_eq!(hit.x_cache(), "HIT", "{lang}");
    }
    get(&cache, &groups).await;
    get(&cache, &other).await;
    cache.handle().invalidate_tag("product-1").await;
    for lang in ["en", "fr"] {
        let got = get_with(&cache, &p, &[("accept-language", lang)]).await;
        assert_eq!(got.x_cache(), "MISS", "{lang} variant purged");
    }
    assert_eq!(get(&cache, &groups).await.x_cache(), "MISS", "Cache-Groups");
    assert_eq!(
        get(&cache, &other).await.x_cache(),
        "HIT",
        "not tagged product-1"
    );
    assert_eq!(origin.count("/p"), 4);
}

#[tokio::test]
async fn a_soft_purged_response_is_served_stale_while_the_origin_fails() {
    let origin = Origin::start().await;
    origin.route("/p", |_, n| {
        if n > 1 {
            return Reply::ok("down").status(503);
        }
        Reply::ok("v1")
            .header("cache-control", "max-age=600, stale-if-error=600")
            .header("surrogate-key", "p")
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/p");
    get(&cache, &url).await;
    cache.handle().soft_invalidate_tag("p").await;
    let got = get(&cache, &url).await;
    assert_eq!(got.text(), "v1", "stale-if-error");
    assert_eq!(got.x_cache(), "STALE");
    assert_eq!(origin.count("/p"), 2, "the origin was asked");
    // A URL soft purge does the same.
    let handle = cache.handle();
    assert_eq!(handle.soft_invalidate(&url).await, 1);
    assert_eq!(get(&cache, &url).await.text(), "v1");
}

#[tokio::test]
async fn a_response_fetched_alone_across_a_tag_purge_is_not_kept() {
    let origin = Origin::start().await;
    origin.route("/p", |_, n| match n {
        // Not shared: the URL is marked hit-for-miss, so the next request fetches
        // alone, outside the flight.
        1 => Reply::ok("private").header("cache-control", "private"),
        _ => Reply::ok(&format!("v{n}"))
            .header("cache-control", "max-age=600")
            .header("surrogate-key", "t")
            .delay(std::time::Duration::from_millis(300)),
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/p");
    get(&cache, &url).await;
    let fetching = tokio::spawn({
        let (cache, url) = (cache.clone(), url.clone());
        async move { get(&cache, &url).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    cache.handle().invalidate_tag("t").await;
    assert_eq!(
        fetching.await.unwrap().text(),
        "v2",
        "its requester gets it"
    );
    let next = get(&cache, &url).await;
    assert_eq!(next.text(), "v3", "fetched before the purge: not kept");
}
