//! Never serve one user's response to another: private, Set-Cookie, Authorization,
//! Vary; and the key functions that split a cache by user.

mod support;

use std::time::Duration;

use corral_http::{HttpCache, Policy};
use support::{Origin, Reply, cached, get, get_with};

#[tokio::test]
async fn a_private_response_is_never_served_to_a_second_client_of_a_shared_cache() {
    let origin = Origin::start().await;
    origin.route("/me", |req, _| {
        let user = req
            .headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned();
        Reply::ok(&format!("profile of {user}")).header("cache-control", "private, max-age=600")
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/me");
    assert_eq!(
        get_with(&cache, &url, &[("x-user", "alice")]).await.text(),
        "profile of alice"
    );
    let bob = get_with(&cache, &url, &[("x-user", "bob")]).await;
    assert_eq!(bob.text(), "profile of bob");
    assert_ne!(bob.x_cache(), "HIT");
    assert_eq!(origin.count("/me"), 2);
}

#[tokio::test]
async fn a_set_cookie_response_is_never_replayed_by_a_shared_cache() {
    let origin = Origin::start().await;
    origin.route("/login", |_, n| {
        Reply::ok("welcome")
            .header("cache-control", "max-age=600")
            .header("set-cookie", &format!("session={n}; HttpOnly"))
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/login");
    let first = get(&cache, &url).await;
    let second = get(&cache, &url).await;
    assert_eq!(first.header("set-cookie"), "session=1; HttpOnly");
    assert_eq!(
        second.header("set-cookie"),
        "session=2; HttpOnly",
        "each client got its own cookie"
    );
    assert_eq!(origin.count("/login"), 2);
}

#[tokio::test]
async fn a_private_cache_stores_private_responses_and_keeps_every_cookie() {
    let origin = Origin::start().await;
    origin.route("/mine", |_, _| {
        Reply::ok("mine")
            .header("cache-control", "private, max-age=600")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
    });
    let cache = cached(HttpCache::builder().policy(Policy::Rfc9111 { shared: false }));
    let url = origin.url("/mine");
    get(&cache, &url).await;
    let again = get(&cache, &url).await;
    assert_eq!(again.x_cache(), "HIT");
    let cookies: Vec<_> = again.headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
}

#[tokio::test]
async fn with_authorization_a_shared_cache_stores_only_what_public_or_s_maxage_allow() {
    let origin = Origin::start().await;
    origin.route("/account", |_, n| {
        Reply::ok(&format!("account {n}")).header("cache-control", "max-age=600")
    });
    origin.route("/catalog", |_, n| {
        Reply::ok(&format!("catalog {n}")).header("cache-control", "public, max-age=600")
    });
    let cache = cached(HttpCache::builder());
    let auth = [("authorization", "Bearer alice")];
    get_with(&cache, &origin.url("/account"), &auth).await;
    assert_eq!(
        get(&cache, &origin.url("/account")).await.text(),
        "account 2",
        "not stored"
    );
    get_with(&cache, &origin.url("/catalog"), &auth).await;
    let anonymous = get(&cache, &origin.url("/catalog")).await;
    assert_eq!(
        (anonymous.text(), anonymous.x_cache()),
        ("catalog 1", "HIT"),
        "public: stored"
    );
}

#[tokio::test]
async fn vary_by_accept_encoding_keeps_two_variants_apart() {
    let origin = Origin::start().await;
    origin.route("/page", |req, _| {
        let encoding = req
            .headers
            .get("accept-encoding")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("identity")
            .to_owned();
        Reply::ok(&format!("body in {encoding}"))
            .header("cache-control", "max-age=600")
            .header("vary", "Accept-Encoding")
            .header("content-encoding", &encoding)
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/page");
    let gzip = [("accept-encoding", "gzip")];
    let br = [("accept-encoding", "br")];
    assert_eq!(get_with(&cache, &url, &gzip).await.text(), "body in gzip");
    assert_eq!(get_with(&cache, &url, &br).await.text(), "body in br");
    let gzip_again = get_with(&cache, &url, &gzip).await;
    let br_again = get_with(&cache, &url, &br).await;
    assert_eq!(
        (gzip_again.text(), gzip_again.x_cache()),
        ("body in gzip", "HIT")
    );
    assert_eq!((br_again.text(), br_again.x_cache()), ("body in br", "HIT"));
    assert_eq!(
        get(&cache, &url).await.text(),
        "body in identity",
        "no header is a third variant"
    );
    assert_eq!(origin.count("/page"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_for_different_variants_each_get_their_own() {
    let origin = Origin::start().await;
    origin.route("/page", |req, _| {
        let lang = req
            .headers
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("en")
            .to_owned();
        Reply::ok(&format!("hello in {lang}"))
            .header("cache-control", "max-age=600")
            .header("vary", "accept-language")
            .delay(Duration::from_millis(100))
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/page");
    let requests: Vec<_> = (0..60)
        .map(|i| {
            let (cache, url) = (cache.clone(), url.clone());
            let lang = ["de", "fr", "ja"][i % 3];
            tokio::spawn(async move {
                (
                    lang,
                    get_with(&cache, &url, &[("accept-language", lang)]).await,
                )
            })
        })
        .collect();
    for request in requests {
        let (lang, got) = request.await.unwrap();
        assert_eq!(got.text(), format!("hello in {lang}"));
    }
    assert!(
        origin.count("/page") <= 3 + 2,
        "about one fetch per variant: {}",
        origin.count("/page")
    );
    for lang in ["de", "fr", "ja"] {
        let got = get_with(&cache, &url, &[("accept-language", lang)]).await;
        assert_eq!(
            (got.text(), got.x_cache()),
            (format!("hello in {lang}").as_str(), "HIT")
        );
    }
}

#[tokio::test]
async fn vary_star_is_never_served_from_the_cache() {
    let origin = Origin::start().await;
    origin.route("/star", |_, n| {
        Reply::ok(&format!("v{n}"))
            .header("cache-control", "max-age=600")
            .header("vary", "*")
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/star");
    assert_eq!(get(&cache, &url).await.text(), "v1");
    assert_eq!(get(&cache, &url).await.text(), "v2");
}

#[tokio::test]
async fn a_custom_key_function_splits_the_cache_by_user() {
    let origin = Origin::start().await;
    origin.route("/dash", |req, _| {
        let user = req
            .headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned();
        Reply::ok(&format!("dashboard of {user}")).header("cache-control", "max-age=600")
    });
    let cache = cached(HttpCache::builder().key(|parts| {
        let user = parts.headers.get("x-user")?.to_str().ok()?;
        Some(format!("{user}:{}", corral_http::default_key(parts)?))
    }));
    let url = origin.url("/dash");
    for _ in 0..2 {
        assert_eq!(
            get_with(&cache, &url, &[("x-user", "alice")]).await.text(),
            "dashboard of alice"
        );
        assert_eq!(
            get_with(&cache, &url, &[("x-user", "bob")]).await.text(),
            "dashboard of bob"
        );
    }
    assert_eq!(origin.count("/dash"), 2);
    let anonymous = get(&cache, &url).await;
    assert_eq!(anonymous.x_cache(), "BYPASS", "no key: not cached");
}

#[tokio::test]
async fn the_fixed_policy_stores_for_its_time_but_never_private_or_cookies() {
    let origin = Origin::start().await;
    origin.route("/plain", |_, n| Reply::ok(&format!("plain {n}")));
    origin.route("/private", |_, n| {
        Reply::ok(&format!("private {n}")).header("cache-control", "private")
    });
    origin.route("/cookie", |_, n| {
        Reply::ok(&format!("cookie {n}")).header("set-cookie", "s=1")
    });
    origin.route("/error", |_, n| {
        Reply::ok(&format!("error {n}")).status(500)
    });
    let cache = cached(HttpCache::builder().policy(Policy::fixed(
        Duration::from_secs(60),
        Duration::from_secs(120),
    )));
    for path in ["/plain", "/private", "/cookie", "/error"] {
        get(&cache, &origin.url(path)).await;
    }
    assert_eq!(
        get(&cache, &origin.url("/plain")).await.text(),
        "plain 1",
        "no Cache-Control needed"
    );
    assert_eq!(
        get(&cache, &origin.url("/private")).await.text(),
        "private 2"
    );
    assert_eq!(get(&cache, &origin.url("/cookie")).await.text(), "cookie 2");
    assert_eq!(get(&cache, &origin.url("/error")).await.text(), "error 2");
}
