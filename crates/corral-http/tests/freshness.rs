//! Freshness and validation: hits, Age, stale-while-revalidate, stale-if-error, 304
//! revalidation, and the request directives.
//!
//! Stale responses are made without waiting: the origin sends an `Age` as old as the
//! response's `max-age`, so it arrives stale. (The transitions in time themselves are
//! tested on instants in `policy.rs`'s unit tests.)

mod support;

use std::time::Duration;

use corral_http::HttpCache;
use support::{Origin, Reply, cached, get, get_with};

#[tokio::test]
async fn a_fresh_response_is_served_from_the_cache_with_its_age_and_cache_status() {
    let origin = Origin::start().await;
    origin.route("/fresh", |_, _| {
        Reply::ok("v1")
            .header("cache-control", "max-age=600")
            .header("age", "100")
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/fresh");
    let first = get(&cache, &url).await;
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(
        first.header("cache-status"),
        "corral; fwd=miss; fwd-status=200; ttl=500; stored"
    );
    assert_eq!(first.header("age"), "100");
    let hit = get(&cache, &url).await;
    assert_eq!((hit.text(), hit.x_cache()), ("v1", "HIT"));
    assert!(
        hit.header("cache-status")
            .starts_with("corral; hit; ttl=50"),
        "{}",
        hit.header("cache-status")
    );
    let age: u64 = hit.header("age").parse().unwrap();
    assert!((100..=101).contains(&age), "age {age}");
    assert_eq!(origin.count("/fresh"), 1);
}

#[tokio::test]
async fn cache_status_headers_can_be_turned_off() {
    let origin = Origin::start().await;
    origin.route("/quiet", |_, _| {
        Reply::ok("v").header("cache-control", "max-age=60")
    });
    let cache = cached(HttpCache::builder().cache_status_headers(false));
    let got = get(&cache, &origin.url("/quiet")).await;
    assert!(got.headers.get("x-cache").is_none() && got.headers.get("cache-status").is_none());
    assert_eq!(got.header("age"), "0");
}

#[tokio::test]
async fn a_stale_response_with_an_etag_is_revalidated_with_a_304_that_updates_its_headers() {
    let origin = Origin::start().await;
    origin.route("/etag", |req, n| {
        if req
            .headers
            .get("if-none-match")
            .is_some_and(|v| v == "\"v1\"")
        {
            Reply::ok("")
                .status(304)
                .header("cache-control", "max-age=600")
                .header("x-revision", &n.to_string())
        } else {
            Reply::ok("the body")
                .header("cache-control", "max-age=0")
                .header("etag", "\"v1\"")
                .header("x-revision", "1")
        }
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/etag");
    assert_eq!(get(&cache, &url).await.text(), "the body");
    let revalidated = get(&cache, &url).await;
    assert_eq!(
        origin.last_request("/etag").get("if-none-match").unwrap(),
        "\"v1\""
    );
    assert_eq!(
        (revalidated.text(), revalidated.x_cache()),
        ("the body", "REVALIDATED")
    );
    assert_eq!(
        revalidated.header("x-revision"),
        "2",
        "the 304's headers replace the stored ones"
    );
    assert!(
        revalidated
            .header("cache-status")
            .contains("fwd=stale; fwd-status=304")
    );
    let hit = get(&cache, &url).await;
    assert_eq!(
        (hit.text(), hit.x_cache()),
        ("the body", "HIT"),
        "fresh again for max-age=600"
    );
    assert_eq!(origin.count("/etag"), 2);
}

#[tokio::test]
async fn a_stale_response_with_last_modified_is_revalidated_with_if_modified_since() {
    let origin = Origin::start().await;
    let modified = "Sun, 06 Nov 1994 08:49:37 GMT";
    origin.route("/dated", move |req, _| {
        if req
            .headers
            .get("if-modified-since")
            .is_some_and(|v| v == modified)
        {
            Reply::ok("").status(304)
        } else {
            Reply::ok("dated")
                .header("cache-control", "no-cache")
                .header("last-modified", modified)
        }
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/dated");
    get(&cache, &url).await;
    let again = get(&cache, &url).await;
    assert_eq!((again.text(), again.x_cache()), ("dated", "REVALIDATED"));
    assert_eq!(
        origin.count("/dated"),
        2,
        "no-cache: revalidated on every use"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_serves_stale_at_once_with_one_background_request() {
    let origin = Origin::start().await;
    origin.route("/swr", |_, n| {
        Reply::ok(&format!("v{n}"))
            .header("cache-control", "max-age=60, stale-while-revalidate=600")
            .header("age", if n == 1 { "60" } else { "0" })
            .delay(if n == 1 {
                Duration::ZERO
            } else {
                Duration::from_millis(300)
            })
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/swr");
    assert_eq!(get(&cache, &url).await.text(), "v1");
    let started = std::time::Instant::now();
    let requests: Vec<_> = (0..50)
        .map(|_| {
            let (cache, url) = (cache.clone(), url.clone());
            tokio::spawn(async move { get(&cache, &url).await })
        })
        .collect();
    for request in requests {
        let got = request.await.unwrap();
        assert_eq!((got.text(), got.x_cache()), ("v1", "STALE"));
    }
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "stale was served without waiting"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        origin.count("/swr"),
        2,
        "one background request for 50 stale hits"
    );
    let refreshed = get(&cache, &url).await;
    assert_eq!((refreshed.text(), refreshed.x_cache()), ("v2", "HIT"));
}

#[tokio::test]
async fn stale_if_error_serves_the_stale_response_when_the_origin_fails() {
    let origin = Origin::start().await;
    origin.route("/sie", |_, n| {
        if n == 1 {
            Reply::ok("good")
                .header("cache-control", "max-age=10, stale-if-error=600")
                .header("age", "10")
        } else {
            Reply::ok("down").status(503)
        }
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/sie");
    get(&cache, &url).await;
    let got = get(&cache, &url).await;
    assert_eq!(
        (got.status.as_u16(), got.text(), got.x_cache()),
        (200, "good", "STALE")
    );
    assert!(got.header("cache-status").contains("stale-if-error"));
}

#[tokio::test]
async fn without_stale_if_error_the_origins_failure_is_passed_on() {
    let origin = Origin::start().await;
    origin.route("/nosie", |_, n| {
        if n == 1 {
            Reply::ok("good")
                .header("cache-control", "max-age=10")
                .header("age", "10")
                .header("etag", "\"e\"")
        } else {
            Reply::ok("down").status(503)
        }
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/nosie");
    get(&cache, &url).await;
    let got = get(&cache, &url).await;
    assert_eq!((got.status.as_u16(), got.text()), (503, "down"));
}

#[tokio::test]
async fn request_no_cache_revalidates_and_no_store_bypasses() {
    let origin = Origin::start().await;
    origin.route("/r", |_, n| {
        Reply::ok(&format!("v{n}"))
            .header("cache-control", "max-age=600")
            .header("etag", &format!("\"{n}\""))
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/r");
    get(&cache, &url).await;
    let no_cache = get_with(&cache, &url, &[("cache-control", "no-cache")]).await;
    assert_eq!(
        no_cache.text(),
        "v2",
        "went to the origin (which sent a new version)"
    );
    assert_eq!(
        origin.last_request("/r").get("if-none-match").unwrap(),
        "\"1\""
    );
    let no_store = get_with(&cache, &url, &[("cache-control", "no-store")]).await;
    assert_eq!((no_store.text(), no_store.x_cache()), ("v3", "BYPASS"));
    assert_eq!(
        get(&cache, &url).await.text(),
        "v2",
        "no-store's response was not stored"
    );
    let pragma = get_with(&cache, &url, &[("pragma", "no-cache")]).await;
    assert_eq!(pragma.text(), "v4");
}

#[tokio::test]
async fn request_max_age_and_min_fresh_refuse_responses_too_old_or_too_close_to_stale() {
    let origin = Origin::start().await;
    origin.route("/m", |_, n| {
        Reply::ok(&format!("v{n}"))
            .header("cache-control", "max-age=100")
            .header("age", if n == 1 { "50" } else { "0" })
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/m");
    get(&cache, &url).await;
    assert_eq!(
        get_with(&cache, &url, &[("cache-control", "max-age=60")])
            .await
            .text(),
        "v1"
    );
    assert_eq!(
        get_with(&cache, &url, &[("cache-control", "max-age=10")])
            .await
            .text(),
        "v2"
    );
    assert_eq!(
        get_with(&cache, &url, &[("cache-control", "min-fresh=90")])
            .await
            .text(),
        "v2"
    );
    assert_eq!(
        get_with(&cache, &url, &[("cache-control", "min-fresh=200")])
            .await
            .text(),
        "v3"
    );
}

#[tokio::test]
async fn max_stale_accepts_stale_responses_except_where_the_response_forbids_it() {
    let origin = Origin::start().await;
    origin.route("/ok-stale", |_, n| {
        Reply::ok(&format!("v{n}"))
            .header("cache-control", "max-age=10")
            .header("age", "20")
    });
    origin.route("/must", |_, n| {
        Reply::ok(&format!("v{n}"))
            .header("cache-control", "max-age=10, must-revalidate")
            .header("age", "20")
            .header("etag", "\"e\"")
    });
    origin.route("/shared-max", |_, n| {
        Reply::ok(&format!("v{n}"))
            .header("cache-control", "s-maxage=10")
            .header("age", "20")
            .header("etag", "\"e\"")
    });
    let cache = cached(HttpCache::builder());
    let max_stale = [("cache-control", "max-stale=60")];
    for path in ["/ok-stale", "/must", "/shared-max"] {
        get(&cache, &origin.url(path)).await;
    }
    let ok = get_with(&cache, &origin.url("/ok-stale"), &max_stale).await;
    assert_eq!((ok.text(), ok.x_cache()), ("v1", "STALE"));
    assert_eq!(
        get_with(
            &cache,
            &origin.url("/ok-stale"),
            &[("cache-control", "max-stale=5")]
        )
        .await
        .text(),
        "v2"
    );
    assert_eq!(
        get_with(&cache, &origin.url("/must"), &max_stale)
            .await
            .text(),
        "v2"
    );
    assert_eq!(
        get_with(&cache, &origin.url("/shared-max"), &max_stale)
            .await
            .text(),
        "v2"
    );
}

#[tokio::test]
async fn only_if_cached_answers_from_the_cache_or_with_a_504() {
    let origin = Origin::start().await;
    origin.route("/c", |_, _| {
        Reply::ok("cached").header("cache-control", "max-age=600")
    });
    let cache = cached(HttpCache::builder());
    let only = [("cache-control", "only-if-cached")];
    let miss = get_with(&cache, &origin.url("/c"), &only).await;
    assert_eq!(miss.status, 504);
    assert_eq!(origin.count("/c"), 0);
    get(&cache, &origin.url("/c")).await;
    let hit = get_with(&cache, &origin.url("/c"), &only).await;
    assert_eq!((hit.status.as_u16(), hit.text()), (200, "cached"));
    // Nor does it reach the origin for a key marked uncacheable (hit-for-miss), or
    // for a request that bypasses the cache (`no-store`); a range is answered from
    // the stored whole.
    origin.route("/private", |_, _| {
        Reply::ok("mine").header("cache-control", "private")
    });
    assert_eq!(get(&cache, &origin.url("/private")).await.text(), "mine");
    let refused = get_with(&cache, &origin.url("/private"), &only).await;
    assert_eq!(refused.status, 504);
    assert_eq!(origin.count("/private"), 1);
    let bypassing = [("cache-control", "only-if-cached, no-store")];
    assert_eq!(
        get_with(&cache, &origin.url("/c"), &bypassing).await.status,
        504
    );
    let range = [("cache-control", "only-if-cached"), ("range", "bytes=0-1")];
    let part = get_with(&cache, &origin.url("/c"), &range).await;
    assert_eq!((part.status.as_u16(), part.text()), (206, "ca"));
    assert_eq!(origin.count("/c"), 1);
}

#[tokio::test]
async fn a_clients_own_conditional_request_is_answered_with_a_304_from_the_cache() {
    let origin = Origin::start().await;
    origin.route("/cond", |_, _| {
        Reply::ok("content")
            .header("cache-control", "max-age=600")
            .header("etag", "\"abc\"")
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/cond");
    let first = get_with(&cache, &url, &[("if-none-match", "\"abc\"")]).await;
    assert_eq!(
        first.status, 304,
        "even on a miss, the stored response answers the condition"
    );
    assert_eq!(
        origin.last_request("/cond").get("if-none-match"),
        None,
        "the fetch was unconditional"
    );
    let hit = get_with(&cache, &url, &[("if-none-match", "\"abc\"")]).await;
    assert_eq!(
        (hit.status.as_u16(), hit.header("etag"), hit.body.len()),
        (304, "\"abc\"", 0)
    );
    assert_eq!(
        get_with(&cache, &url, &[("if-none-match", "\"old\"")])
            .await
            .text(),
        "content"
    );
    assert_eq!(origin.count("/cond"), 1);
}

#[tokio::test(start_paused = true)]
async fn max_keep_bounds_how_long_any_response_is_kept() {
    let origin = Origin::start().await;
    origin.route("/long", |_, _| {
        Reply::ok("v").header("cache-control", "max-age=600")
    });
    let cache = cached(HttpCache::builder().max_keep(Duration::from_secs(2)));
    let url = origin.url("/long");
    assert_eq!(get(&cache, &url).await.x_cache(), "MISS");
    let hit = get(&cache, &url).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(hit.header("cache-status"), "corral; hit; ttl=2");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(get(&cache, &url).await.x_cache(), "MISS");
    assert_eq!(origin.count("/long"), 2);
}

#[tokio::test]
async fn ages_and_lifetimes_too_large_to_represent_count_as_2_to_the_31_seconds() {
    let origin = Origin::start().await;
    origin.route("/old", |_, _| {
        Reply::ok("old")
            .header("cache-control", "max-age=60")
            .header("age", "18446744073709551616")
    });
    origin.route("/forever", |_, _| {
        Reply::ok("forever").header("cache-control", "public, max-age=18446744073709551615")
    });
    let cache = cached(HttpCache::builder());
    // Older than any max-age: stale on arrival, never a panic.
    for _ in 0..2 {
        let got = get(&cache, &origin.url("/old")).await;
        assert_eq!((got.status.as_u16(), got.text()), (200, "old"));
        assert_eq!(got.header("age"), "2147483648");
    }
    // Fresh "forever" (68 years), also for a request with credentials.
    let url = origin.url("/forever");
    for _ in 0..2 {
        for headers in [&[][..], &[("authorization", "Bearer a")][..]] {
            let got = get_with(&cache, &url, headers).await;
            assert_eq!((got.status.as_u16(), got.text()), (200, "forever"));
        }
    }
    assert_eq!(origin.count("/forever"), 1);
}

#[tokio::test]
async fn directive_values_past_any_integer_type_count_as_2_to_the_31_seconds() {
    const HUGE: &str = "99999999999999999999999999";
    let origin = Origin::start().await;
    for (path, cache_control) in [
        ("/max-age", format!("max-age={HUGE}")),
        ("/s-maxage", format!("s-maxage={HUGE}")),
        (
            "/stale",
            format!("max-age=60, stale-while-revalidate={HUGE}, stale-if-error={HUGE}"),
        ),
    ] {
        origin.route(path, move |_, _| {
            Reply::ok("kept").header("cache-control", &cache_control)
        });
    }
    origin.route("/aged", |_, _| {
        Reply::ok("aged")
            .header("cache-control", &format!("max-age={HUGE}"))
            .header("age", HUGE)
    });
    let cache = cached(HttpCache::builder());
    for path in ["/max-age", "/s-maxage", "/stale"] {
        let url = origin.url(path);
        assert_eq!(get(&cache, &url).await.x_cache(), "MISS", "{path}");
        let hit = get(&cache, &url).await;
        assert_eq!(hit.x_cache(), "HIT", "{path}: stored");
        let ttl = ttl_of(hit.header("cache-status"))
            .unwrap_or_else(|| panic!("{path}: {}", hit.header("cache-status")));
        assert!((0..=2_147_483_648).contains(&ttl), "{path}: ttl {ttl}");
    }
    // As old as it may be fresh: stale, and its ttl says so without overflowing.
    let aged = get(&cache, &origin.url("/aged")).await;
    assert_eq!(aged.header("age"), "2147483648");
    let status = aged.header("cache-status");
    assert!(
        ttl_of(status).is_some_and(|ttl| (-1..=0).contains(&ttl)),
        "{status}"
    );
}

/// The `ttl` parameter of a `Cache-Status` value.
fn ttl_of(cache_status: &str) -> Option<i64> {
    cache_status
        .split("ttl=")
        .nth(1)?
        .split(';')
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_early_refresh_a_hot_response_is_revalidated_before_it_goes_stale() {
    let origin = Origin::start().await;
    origin.route("/hot", |_, _| {
        Reply::ok("v")
            .header("cache-control", "max-age=1, stale-while-revalidate=10")
            .delay(Duration::from_millis(100))
    });
    let url = origin.url("/hot");
    let count = |cache: support::Cached| {
        let url = url.clone();
        async move {
            let mut seen = std::collections::BTreeMap::<String, usize>::new();
            let end = tokio::time::Instant::now() + Duration::from_secs(3);
            while tokio::time::Instant::now() < end {
                let got = get(&cache, &url).await;
                *seen.entry(got.x_cache().to_owned()).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            seen
        }
    };
    let early = count(cached(HttpCache::builder().early_refresh(1.0))).await;
    let fetched_early = origin.count("/hot");
    assert_eq!(early.get("MISS"), Some(&1), "{early:?}");
    assert_eq!(early.get("STALE"), None, "never served stale: {early:?}");
    // Three seconds of a one-second freshness: a fetch a lifetime, each a little early.
    assert!((3..=6).contains(&fetched_early), "{fetched_early} fetches");

    let without = count(cached(HttpCache::builder())).await;
    assert!(without.get("STALE").is_some_and(|&n| n >= 2), "{without:?}");
}
