//! The admin API: health, readiness (also while shutting down), Prometheus metrics,
//! purge by URL and by prefix, a JSON summary, and the bearer token.

#[path = "../../corral-http/tests/support/mod.rs"]
mod origin;
mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use origin::{Origin, Reply};
use support::{Got, get, send, start};

async fn admin(addr: std::net::SocketAddr, method: &str, path: &str, token: Option<&str>) -> Got {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    send(addr, request.body(Full::<Bytes>::default()).unwrap()).await
}

#[tokio::test]
async fn health_readiness_metrics_and_stats() {
    let origin = Origin::start().await;
    origin.route("/m", |_, _| {
        Reply::ok("m").header("cache-control", "max-age=60")
    });
    let proxy = start(&format!("upstream = \"http://{}\"", origin.addr)).await;
    get(proxy.addr, "/m", &[("host", "site")]).await;
    get(proxy.addr, "/m", &[("host", "site")]).await;
    let a = proxy.admin.unwrap();
    assert_eq!(admin(a, "GET", "/healthz", None).await.text(), "ok\n");
    assert_eq!(admin(a, "GET", "/readyz", None).await.text(), "ready\n");
    let metrics = admin(a, "GET", "/metrics", None).await;
    assert!(
        metrics.text().contains("corral_http_responses_total"),
        "{}",
        metrics.text()
    );
    assert!(metrics.text().contains("status=\"hit\""));
    assert!(metrics.text().contains("corral_proxy_responses_total"));
    let stats: serde_json::Value =
        serde_json::from_slice(&admin(a, "GET", "/stats", None).await.body).unwrap();
    assert_eq!(
        stats["mode"],
        format!("reverse proxy for http://{}", origin.addr)
    );
    assert!(stats["responses"]["hit"].as_u64().unwrap() >= 1);
    assert_eq!(stats["upstream_fetches"], 1);
}

#[tokio::test]
async fn purge_by_url_and_by_prefix() {
    let origin = Origin::start().await;
    for path in ["/docs/a", "/docs/b", "/blog/c"] {
        origin.route(path, |_, n| {
            Reply::ok(&format!("v{n}")).header("cache-control", "max-age=600")
        });
    }
    let proxy = start(&format!("upstream = \"http://{}\"", origin.addr)).await;
    let url = |path: &str| format!("http://{}{path}", origin.addr);
    for path in ["/docs/a", "/docs/b", "/blog/c"] {
        get(proxy.addr, path, &[]).await;
    }
    let a = proxy.admin.unwrap();
    let purged = admin(a, "POST", &format!("/purge?url={}", url("/docs/a")), None).await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    assert_eq!(
        get(proxy.addr, "/docs/a", &[]).await.text(),
        "v2",
        "purged: fetched again"
    );
    assert_eq!(
        get(proxy.addr, "/docs/b", &[]).await.header("x-cache"),
        "HIT"
    );
    let by_prefix = admin(a, "POST", &format!("/purge?prefix={}", url("/docs/")), None).await;
    let body: serde_json::Value = serde_json::from_slice(&by_prefix.body).unwrap();
    assert_eq!(body["purged"], 2);
    assert_eq!(
        get(proxy.addr, "/docs/b", &[]).await.header("x-cache"),
        "MISS"
    );
    assert_eq!(
        get(proxy.addr, "/blog/c", &[]).await.header("x-cache"),
        "HIT"
    );
    assert_eq!(
        admin(a, "POST", "/purge?url=not-a-url", None).await.status,
        400
    );
    assert_eq!(admin(a, "POST", "/purge", None).await.status, 400);
}

#[tokio::test]
async fn without_a_token_only_requests_to_an_address_or_localhost_are_answered() {
    let proxy = start("").await;
    let a = proxy.admin.unwrap();
    let ask = |host: String| {
        let request = Request::get("/stats").header("host", host);
        send(a, request.body(Full::<Bytes>::default()).unwrap())
    };
    for direct in [
        a.to_string(),
        format!("localhost:{}", a.port()),
        "[::1]:1".into(),
    ] {
        assert_eq!(ask(direct.clone()).await.status, 200, "{direct}");
    }
    // A page whose name was pointed at 127.0.0.1 (DNS rebinding).
    let rebound = ask(format!("attacker.example:{}", a.port())).await;
    assert_eq!(rebound.status, 403, "{}", rebound.text());
    assert_eq!(admin(a, "GET", "/healthz", None).await.status, 200);
}

#[tokio::test]
async fn with_a_token_the_admin_api_refuses_requests_without_it() {
    let proxy = start("admin-token = \"s3cret-s3cret-s3cret\"").await;
    let a = proxy.admin.unwrap();
    assert_eq!(admin(a, "GET", "/metrics", None).await.status, 401);
    for wrong in [
        "wrong",
        "s3cret-s3cret-s3creT",
        "s3cret-s3cret-s3cre",
        "s3cret-s3cret-s3cret2",
    ] {
        assert_eq!(admin(a, "GET", "/stats", Some(wrong)).await.status, 401);
    }
    assert_eq!(
        admin(a, "POST", "/purge?prefix=http://x/", None)
            .await
            .status,
        401
    );
    assert_eq!(
        admin(a, "GET", "/stats", Some("s3cret-s3cret-s3cret"))
            .await
            .status,
        200
    );
    assert_eq!(
        admin(a, "GET", "/healthz", None).await.status,
        200,
        "health checks stay open"
    );
}

#[tokio::test]
async fn readiness_is_200_while_serving_and_503_once_shutdown_begins_with_a_request_in_flight() {
    use std::time::Duration;
    let origin = Origin::start().await;
    origin.route("/long", |_, _| {
        Reply::ok("finished").delay(Duration::from_millis(800))
    });
    let mut proxy = start(&format!(
        "upstream = \"http://{}\"\nshutdown-grace = \"5s\"",
        origin.addr
    ))
    .await;
    let a = proxy.admin.unwrap();
    let ready = admin(a, "GET", "/readyz", None).await;
    assert_eq!((ready.status.as_u16(), ready.text()), (200, "ready\n"));
    let addr = proxy.addr;
    let in_flight = tokio::spawn(async move { get(addr, "/long", &[]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(origin.count("/long"), 1, "the request is in flight");
    proxy.begin_stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A load balancer's probe during the drain: the admin API still answers, so
    // the balancer learns to send no more.
    let draining = admin(a, "GET", "/readyz", None).await;
    assert_eq!(
        (draining.status.as_u16(), draining.text()),
        (503, "shutting down\n")
    );
    assert!(!in_flight.is_finished(), "answered while draining");
    let got = in_flight.await.unwrap();
    assert_eq!((got.status.as_u16(), got.text()), (200, "finished"));
    tokio::time::timeout(Duration::from_secs(5), proxy.stopped())
        .await
        .expect("the proxy stops");
}

/// Percent-encodes a query value.
fn encoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn a_purge_takes_the_url_clients_use_and_says_what_it_found() {
    let origin = Origin::start().await;
    origin.route("/p", |_, n| {
        Reply::ok(&format!("v{n}")).header("cache-control", "max-age=600")
    });
    let proxy = start(&format!("upstream = \"http://{}\"", origin.addr)).await;
    let a = proxy.admin.unwrap();
    // The proxy's own URL, as a client asks for it; the key is the origin's.
    let client_url = format!("http://{}/p?a=1&b=2", proxy.addr);
    get(proxy.addr, "/p?a=1&b=2", &[]).await;
    assert_eq!(
        get(proxy.addr, "/p?a=1&b=2", &[]).await.header("x-cache"),
        "HIT"
    );
    let purged = admin(
        a,
        "POST",
        &format!("/purge?url={}", encoded(&client_url)),
        None,
    )
    .await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    let body: serde_json::Value = serde_json::from_slice(&purged.body).unwrap();
    assert_eq!(body["purged"], 1, "{body}");
    assert_eq!(body["key"], format!("http://{}/p?a=1&b=2", origin.addr));
    assert_eq!(
        get(proxy.addr, "/p?a=1&b=2", &[]).await.header("x-cache"),
        "MISS"
    );
    // Nothing stored under it now: the answer says so.
    get(proxy.addr, "/p?a=1&b=2", &[]).await;
    let again = admin(
        a,
        "POST",
        &format!("/purge?url={}", encoded(&client_url)),
        None,
    )
    .await;
    let body: serde_json::Value = serde_json::from_slice(&again.body).unwrap();
    assert_eq!(body["purged"], 1);
    let none = admin(
        a,
        "POST",
        &format!("/purge?url={}", encoded(&client_url)),
        None,
    )
    .await;
    let body: serde_json::Value = serde_json::from_slice(&none.body).unwrap();
    assert_eq!(body["purged"], 0);
    // Not percent-encoded: `b=2` would be read as a parameter of the purge. Refused,
    // and nothing purged.
    get(proxy.addr, "/p?a=1&b=2", &[]).await;
    let unencoded = admin(a, "POST", &format!("/purge?url={client_url}"), None).await;
    assert_eq!(unencoded.status, 400);
    assert!(
        unencoded.text().contains("percent-encode"),
        "{}",
        unencoded.text()
    );
    assert_eq!(
        get(proxy.addr, "/p?a=1&b=2", &[]).await.header("x-cache"),
        "HIT"
    );
}

#[tokio::test]
async fn purge_by_tag_removes_the_tagged_responses_and_a_soft_purge_revalidates() {
    let origin = Origin::start().await;
    for (path, tags) in [
        ("/p/1", "product-1 catalog"),
        ("/p/2", "product-2 catalog"),
        ("/about", "pages"),
    ] {
        origin.route(path, move |request, n| {
            if request
                .headers
                .get("if-none-match")
                .is_some_and(|v| v == "\"e\"")
            {
                return Reply::ok("").status(304).header("etag", "\"e\"");
            }
            Reply::ok(&format!("{path} v{n}"))
                .header("cache-control", "max-age=600, stale-while-revalidate=60")
                .header("etag", "\"e\"")
                .header("surrogate-key", tags)
        });
    }
    let proxy = start(&format!("upstream = \"http://{}\"", origin.addr)).await;
    let a = proxy.admin.unwrap();
    for path in ["/p/1", "/p/2", "/about"] {
        get(proxy.addr, path, &[]).await;
    }
    let purged = admin(a, "POST", "/purge?tag=product-1&tag=pages", None).await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    let x_cache = async |path| {
        get(proxy.addr, path, &[])
            .await
            .header("x-cache")
            .to_owned()
    };
    assert_eq!(x_cache("/p/1").await, "MISS");
    assert_eq!(x_cache("/about").await, "MISS");
    assert_eq!(x_cache("/p/2").await, "HIT");
    // Soft: served stale at once, revalidated once (a 304), then fresh again.
    let soft = admin(a, "POST", "/purge?tag=catalog&soft=true", None).await;
    assert_eq!(soft.status, 200, "{}", soft.text());
    let before = origin.count("/p/2");
    let stale = get(proxy.addr, "/p/2", &[]).await;
    assert_eq!(
        stale.header("x-cache"),
        "STALE",
        "{:?}",
        stale.header("cache-status")
    );
    assert_eq!(stale.text(), "/p/2 v1");
    for _ in 0..50 {
        if origin.count("/p/2") > before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(origin.count("/p/2"), before + 1, "one revalidation");
    assert_eq!(
        origin.last_request("/p/2").get("if-none-match").unwrap(),
        "\"e\""
    );
    let after = get(proxy.addr, "/p/2", &[]).await;
    assert_eq!(after.header("x-cache"), "HIT");
    assert_eq!(after.text(), "/p/2 v1", "the 304 kept the body");
}

#[tokio::test]
async fn a_page_of_another_site_cannot_make_the_admin_api_act() {
    let proxy = start("").await;
    let a = proxy.admin.unwrap();
    let post = |path: &'static str, origin: Option<String>| {
        let mut request = Request::post(format!("http://{a}{path}")).header("host", a.to_string());
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        send(a, request.body(Full::new(Bytes::new())).unwrap())
    };
    for path in ["/purge?prefix=http://x/", "/reload"] {
        for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
            let refused = post(path, Some(origin.to_owned())).await;
            assert_eq!(
                refused.status,
                403,
                "{path} from {origin}: {}",
                refused.text()
            );
            assert!(
                refused.text().contains("another site"),
                "{}",
                refused.text()
            );
        }
    }
    let fetch_metadata = Request::post(format!("http://{a}/reload"))
        .header("host", a.to_string())
        .header("sec-fetch-site", "cross-site")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let refused = send(a, fetch_metadata).await;
    assert_eq!(
        refused.status,
        403,
        "Sec-Fetch-Site alone: {}",
        refused.text()
    );
    let own = post("/purge?prefix=http://x/", Some(format!("http://{a}"))).await;
    assert_eq!(own.status, 200, "its own page: {}", own.text());
    let tool = post("/purge?prefix=http://x/", None).await;
    assert_eq!(tool.status, 200, "a tool sends no Origin: {}", tool.text());
    let status = support::admin_json(a, "/status.json").await;
    assert!(status.is_object(), "reading is not acting");
    proxy.stop().await;
}
