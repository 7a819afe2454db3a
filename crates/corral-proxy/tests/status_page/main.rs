//! The live status page on the admin listener: its page and files, the numbers of
//! `/status.json` moving as requests are made, its guard, and (in [`browser`]) the
//! page in headless Chromium.

#[path = "../../../corral-http/tests/support/mod.rs"]
mod origin;
#[path = "../support/mod.rs"]
mod support;

mod browser;
mod webdriver;

use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use origin::{Origin, Reply};
use serde_json::Value;
use support::{Got, admin_json, get, put_peers, send, start};

/// A directory under the system's temporary one, removed when dropped (a failed
/// test's too).
pub(crate) struct Scratch(pub PathBuf);

impl Scratch {
    pub(crate) fn new(name: &str) -> Scratch {
        Scratch(std::env::temp_dir().join(format!("{name}-{}", std::process::id())))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `GET path` on the admin listener at `admin`, with `Host: host` (the listener's
/// address when `None`) and a bearer `token`.
async fn admin_get(admin: SocketAddr, path: &str, host: Option<&str>, token: Option<&str>) -> Got {
    let mut request =
        Request::get(path).header("host", host.map_or(admin.to_string(), str::to_owned));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    send(admin, request.body(Full::<Bytes>::default()).unwrap()).await
}

#[tokio::test]
async fn the_page_and_its_files_are_served_with_their_types_and_a_policy_that_allows_only_them() {
    let proxy = start("").await;
    let a = proxy.admin.unwrap();
    let page = admin_get(a, "/", None, None).await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    assert!(
        page.text().contains("<script src=\"status.js\""),
        "{}",
        page.text()
    );
    assert!(page.text().contains("href=\"status.css\""));
    let policy = page.header("content-security-policy");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("script-src 'self'") && policy.contains("connect-src 'self'"));
    assert_eq!(page.header("x-content-type-options"), "nosniff");
    assert_eq!(page.header("cache-control"), "no-store");
    for (path, kind, starts) in [
        ("/status.css", "text/css; charset=utf-8", "/*"),
        ("/status.js", "text/javascript; charset=utf-8", "//"),
    ] {
        let file = admin_get(a, path, None, None).await;
        assert_eq!(file.status, 200, "{path}");
        assert_eq!(file.header("content-type"), kind, "{path}");
        assert!(file.text().starts_with(starts), "{path}");
    }
    let data = admin_get(a, "/status.json", None, None).await;
    assert_eq!(data.header("content-type"), "application/json");
    assert_eq!(data.header("cache-control"), "no-store");
}

#[tokio::test]
async fn status_json_counts_requests_hits_fetches_errors_and_the_hottest_key_as_they_happen() {
    let origin = Origin::start().await;
    origin.route("/hot", |_, _| {
        Reply::ok("hot").header("cache-control", "max-age=60")
    });
    origin.route("/cold", |_, _| {
        Reply::ok("cold").header("cache-control", "max-age=60")
    });
    origin.route("/gone", |_, _| Reply::ok("no").status(404));
    origin.route("/broken", |_, _| Reply::ok("no").status(502));
    let proxy = start(&format!("upstream = \"http://{}\"", origin.addr)).await;
    let a = proxy.admin.unwrap();
    let before = admin_json(a, "/status.json").await;
    assert_eq!(before["requests"], 0);
    assert_eq!(
        before["hit_ratio"],
        Value::Null,
        "no responses yet: no ratio"
    );
    assert_eq!(before["hot_keys"]["keys"], serde_json::json!([]));

    for _ in 0..4 {
        get(proxy.addr, "/hot", &[("host", "site")]).await;
    }
    get(proxy.addr, "/cold", &[("host", "site")]).await;
    get(proxy.addr, "/gone", &[("host", "site")]).await;
    get(proxy.addr, "/broken", &[("host", "site")]).await;
    let after = admin_json(a, "/status.json").await;

    assert_eq!(after["requests"], 7, "{after:#}");
    assert!(after["uptime_seconds"].as_f64() > before["uptime_seconds"].as_f64());
    assert_eq!(after["responses_by_class"]["2xx"], 5);
    assert_eq!(after["cache"]["hit"], 3);
    let fetched = after["cache"]["miss"]
        .as_u64()
        .zip(after["cache"]["bypass"].as_u64());
    assert_eq!(
        fetched.map(|(miss, bypass)| miss + bypass),
        Some(4),
        "/hot, /cold, /gone, /broken (a 502 is not stored: a bypass): {after:#}"
    );
    assert_eq!(after["hit_ratio"], 3.0 / 7.0);
    assert_eq!(after["origin_fetches"], 4);
    assert_eq!(after["collapsed_requests"], 0);
    assert_eq!(after["stale_serves"], 0);
    assert_eq!(after["errors"]["client_error_4xx"], 1);
    assert_eq!(after["errors"]["server_error_5xx"], 1);
    assert_eq!(after["errors"]["origin_refused"], 0, "the origin answered");
    assert!(
        after["errors"].get("redis_error").is_none(),
        "no Redis tier: no Redis errors to count"
    );
    let hottest = &after["hot_keys"]["keys"][0];
    assert_eq!(
        (hottest["key"].as_str(), hottest["count"].as_u64()),
        (Some("site/hot"), Some(4))
    );
    assert_eq!(after["hot_keys"]["counted"], 7);
    let memory = &after["tiers"]["memory"];
    assert_eq!(memory["health"], "ok");
    assert!(memory["entries"].as_u64() >= Some(2), "{memory}");
    assert!(memory["bytes"].as_u64() > Some(0));
    assert_eq!(memory["max_bytes"], corral_http::DEFAULT_MAX_BYTES);
    assert_eq!(after["tiers"]["disk"], Value::Null);
    assert_eq!(after["tiers"]["redis"], Value::Null);
    assert_eq!(after["pool"], Value::Null, "no peer-secret: no pool");
}

#[tokio::test]
async fn status_json_reports_the_pool_members_and_the_disk_tier() {
    let dir = Scratch::new("corral-status-disk");
    let proxy = start(&format!(
        "peer-secret = \"0123456789abcdef-status\"\ndisk = \"{}\"\ndisk-size = \"64MiB\"",
        dir.0.display()
    ))
    .await;
    let a = proxy.admin.unwrap();
    let this = format!("http://{}", proxy.addr);
    assert_eq!(put_peers(a, std::slice::from_ref(&this)).await.status, 200);
    let status = admin_json(a, "/status.json").await;
    let members = status["pool"].as_array().expect("a pool");
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(members[0]["url"], this);
    assert_eq!(members[0]["self"], true);
    assert_eq!(members[0]["healthy"], true);
    let disk = &status["tiers"]["disk"];
    assert_eq!(disk["max_bytes"], 64 << 20);
    assert!(
        disk["health"] == "ok" || disk["health"] == "indexing its files",
        "{disk}"
    );
    assert_eq!(status["errors"]["disk_fault"], 0);
}

#[tokio::test]
async fn the_status_page_is_guarded_as_every_admin_route_is() {
    let open = start("").await;
    let a = open.admin.unwrap();
    for path in ["/", "/status.json", "/status.js", "/status.css"] {
        let rebound = admin_get(
            a,
            path,
            Some(&format!("attacker.example:{}", a.port())),
            None,
        )
        .await;
        assert_eq!(
            rebound.status, 403,
            "{path}: a name pointed at 127.0.0.1 (DNS rebinding)"
        );
        let local = admin_get(a, path, Some(&format!("localhost:{}", a.port())), None).await;
        assert_eq!(local.status, 200, "{path}: through a tunnel to localhost");
    }
    let token = "s3cret-s3cret-s3cret";
    let guarded = start(&format!("admin-token = \"{token}\"")).await;
    let a = guarded.admin.unwrap();
    for path in ["/", "/status.json", "/status.js", "/status.css"] {
        assert_eq!(admin_get(a, path, None, None).await.status, 401, "{path}");
        assert_eq!(
            admin_get(a, path, None, Some("wrong")).await.status,
            401,
            "{path}"
        );
        assert_eq!(
            admin_get(a, path, None, Some(token)).await.status,
            200,
            "{path}"
        );
    }
}

#[tokio::test]
async fn status_json_counts_origin_failures_by_cause() {
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = start(&format!("upstream = \"http://{refused}\"")).await;
    let a = proxy.admin.unwrap();
    let answer = get(proxy.addr, "/", &[("host", "site")]).await;
    assert_eq!(answer.status, 502, "{}", answer.text());
    let after = admin_json(a, "/status.json").await;
    assert_eq!(after["errors"]["origin_refused"], 1, "{after:#}");
    assert_eq!(after["errors"]["origin_dns"], 0);
    proxy.stop().await;
}

#[tokio::test]
async fn hot_keys_are_host_and_path_without_credentials_or_query() {
    let proxy = start("").await;
    let a = proxy.admin.unwrap();
    let forged = Request::get("http://alice:hunter2@bank.example/reset?token=S3CRET")
        .header("host", "bank.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let refused = send(proxy.addr, forged).await;
    assert_eq!(refused.status, 400, "userinfo in a URL: {}", refused.text());
    let after = admin_json(a, "/status.json").await;
    let keys = after["hot_keys"]["keys"].to_string();
    assert!(keys.contains("bank.example/reset"), "{keys}");
    assert!(
        !keys.contains("hunter2") && !keys.contains("S3CRET") && !keys.contains("alice"),
        "{keys}"
    );
    proxy.stop().await;
}
