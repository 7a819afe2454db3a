//! Request collapsing: concurrent requests for one key wait on one upstream request;
//! what may not be shared is not given to the waiters.

mod support;

use std::time::Duration;

use corral_http::{HttpCache, UpstreamError};
use support::{Origin, Reply, cached, get};
use tower::ServiceExt;

/// `n` GETs for `url` through `cache`, all started at once.
fn concurrent_gets(
    cache: &support::Cached,
    url: &str,
    n: usize,
) -> Vec<tokio::task::JoinHandle<support::Got>> {
    (0..n)
        .map(|_| {
            let (cache, url) = (cache.clone(), url.to_owned());
            tokio::spawn(async move { get(&cache, &url).await })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_concurrent_requests_for_one_cold_url_reach_the_origin_once() {
    let origin = Origin::start().await;
    origin.route("/cold", |_, _| {
        Reply::ok("expensive")
            .header("cache-control", "max-age=60")
            .delay(Duration::from_millis(200))
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/cold");
    let requests = concurrent_gets(&cache, &url, 500);
    let mut statuses = std::collections::HashMap::<String, usize>::new();
    for request in requests {
        let got = request.await.unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(got.text(), "expensive");
        *statuses.entry(got.x_cache().to_owned()).or_default() += 1;
    }
    assert_eq!(origin.count("/cold"), 1, "statuses: {statuses:?}");
    let collapsed_or_hit =
        statuses.get("MISS").copied().unwrap_or(0) + statuses.get("HIT").copied().unwrap_or(0);
    assert_eq!(collapsed_or_hit, 500);
    assert_eq!(get(&cache, &url).await.x_cache(), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_of_an_unshareable_response_go_upstream_on_their_own_and_the_key_skips_collapsing()
{
    let origin = Origin::start().await;
    origin.route("/private", |_, n| {
        Reply::ok(&format!("for requester {n}"))
            .header("cache-control", "private, max-age=60")
            .delay(Duration::from_millis(200))
    });
    let cache = cached(HttpCache::builder().hit_for_miss(Duration::from_secs(30)));
    let url = origin.url("/private");
    let requests = concurrent_gets(&cache, &url, 20);
    let mut bodies = Vec::new();
    for request in requests {
        let got = request.await.unwrap();
        assert_eq!(got.status, 200);
        bodies.push(got.text().to_owned());
    }
    bodies.sort();
    bodies.dedup();
    assert_eq!(
        bodies.len(),
        20,
        "each request got its own private response"
    );
    assert_eq!(origin.count("/private"), 20);

    // Hit-for-miss: later requests neither queue nor get a stored copy.
    let later = get(&cache, &url).await;
    assert_eq!(later.x_cache(), "BYPASS");
    assert!(
        later.header("cache-status").contains("hit-for-miss"),
        "{}",
        later.header("cache-status")
    );
    assert_eq!(later.text(), "for requester 21");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_origin_gives_every_waiter_a_502_with_a_reason() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/down", closed.local_addr().unwrap());
    drop(closed);
    let cache = cached(HttpCache::builder());
    let requests: Vec<_> = (0..50)
        .map(|_| {
            let (cache, url) = (cache.clone(), url.clone());
            tokio::spawn(async move {
                let request = http::Request::get(&url)
                    .body(http_body_util::Full::default())
                    .unwrap();
                cache.oneshot(request).await.unwrap()
            })
        })
        .collect();
    for request in requests {
        let response = request.await.unwrap();
        assert_eq!(response.status(), 502);
        assert!(response.extensions().get::<UpstreamError>().is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_that_outlives_the_fetch_timeout_gives_its_waiters_a_504() {
    let origin = Origin::start().await;
    origin.route("/slow", |_, _| {
        Reply::ok("late")
            .header("cache-control", "max-age=60")
            .delay(Duration::from_secs(5))
    });
    let cache = cached(HttpCache::builder().fetch_timeout(Duration::from_millis(200)));
    let url = origin.url("/slow");
    let requests = concurrent_gets(&cache, &url, 10);
    for request in requests {
        let got = request.await.unwrap();
        assert_eq!(got.status, 504);
        assert_eq!(got.text(), "no response within fetch-timeout (200ms)\n");
    }
    assert_eq!(origin.count("/slow"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_reaches_the_origin_once_and_is_not_stored() {
    let origin = Origin::start().await;
    origin.route("/flaky", |_, n| {
        if n == 1 {
            Reply::ok("boom, with details for the requester")
                .status(503)
                .header("set-cookie", "debug=requester-only")
                .delay(Duration::from_millis(100))
        } else {
            Reply::ok("fine").header("cache-control", "max-age=60")
        }
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/flaky");
    let requests = concurrent_gets(&cache, &url, 50);
    let mut own = 0;
    for request in requests {
        let got = request.await.unwrap();
        assert_eq!(got.status, 503, "every waiter gets the failure");
        if got.text() == "boom, with details for the requester" {
            own += 1;
            assert_eq!(got.header("set-cookie"), "debug=requester-only");
        } else {
            assert!(got.text().contains("503"), "{}", got.text());
            assert!(
                got.headers.get("set-cookie").is_none(),
                "not the requester's"
            );
        }
    }
    assert_eq!(own, 1, "only the requester gets the origin's own response");
    assert_eq!(
        origin.count("/flaky"),
        1,
        "a failing origin is not stampeded"
    );
    assert_eq!(
        get(&cache, &url).await.text(),
        "fine",
        "nor is the failure stored"
    );
}

/// Issue 14, point 10: an API's JSON error body reaches every waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_of_a_shareable_server_error_get_the_origins_own_response() {
    let origin = Origin::start().await;
    origin.route("/api", |_, n| {
        Reply::ok(&format!("{{\"error\": \"overloaded\", \"call\": {n}}}"))
            .status(503)
            .header("content-type", "application/json")
            .header("retry-after", "5")
            .delay(Duration::from_millis(100))
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/api");
    let requests = concurrent_gets(&cache, &url, 20);
    for request in requests {
        let got = request.await.unwrap();
        assert_eq!(
            (got.status.as_u16(), got.text()),
            (503, "{\"error\": \"overloaded\", \"call\": 1}")
        );
        assert_eq!(got.header("content-type"), "application/json");
        assert_eq!(got.header("retry-after"), "5");
        assert!(
            !got.header("cache-status").contains("stored"),
            "{}",
            got.header("cache-status")
        );
    }
    assert_eq!(origin.count("/api"), 1, "one call to the handler");
    let after = get(&cache, &url).await;
    assert_eq!(
        after.text(),
        "{\"error\": \"overloaded\", \"call\": 2}",
        "not stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_of_a_private_server_error_get_a_response_that_says_it_could_not_be_shared() {
    let origin = Origin::start().await;
    origin.route("/me", |_, _| {
        Reply::ok("{\"error\": \"your quota\"}")
            .status(500)
            .header("cache-control", "private")
            .delay(Duration::from_millis(100))
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/me");
    let requests = concurrent_gets(&cache, &url, 10);
    let mut own = 0;
    for request in requests {
        let got = request.await.unwrap();
        assert_eq!(got.status, 500);
        if got.text() == "{\"error\": \"your quota\"}" {
            own += 1;
        } else {
            assert!(got.text().contains("may not be shared"), "{}", got.text());
            assert!(
                got.header("cache-status")
                    .contains("detail=\"not shareable\""),
                "{}",
                got.header("cache-status")
            );
        }
    }
    assert_eq!(own, 1);
    assert_eq!(origin.count("/me"), 1);
}

/// An error page that echoes what its request sent (a framework's debug page) is
/// never given to another user's waiting request when that request carried a cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_to_a_request_with_a_cookie_is_never_given_to_other_waiters() {
    let origin = Origin::start().await;
    origin.route("/account", |req, _| {
        let cookie = req
            .headers
            .get("cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        Reply::ok(&format!("error page; request cookie = {cookie}"))
            .status(500)
            .delay(Duration::from_millis(200))
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/account");
    let alice = {
        let (cache, url) = (cache.clone(), url.clone());
        tokio::spawn(async move {
            support::get_with(&cache, &url, &[("cookie", "session=ALICE-SECRET")]).await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let bob = support::get_with(&cache, &url, &[("cookie", "session=bob")]).await;
    let alice = alice.await.unwrap();
    assert!(alice.text().contains("ALICE-SECRET"));
    assert_eq!(bob.status, 500);
    assert!(!bob.text().contains("ALICE"), "{}", bob.text());
}
