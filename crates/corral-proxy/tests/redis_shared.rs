//! Proxies sharing a Redis tier: one origin fetch per URL across all of them, and
//! purges that reach all of them.

#[path = "../../corral-http/tests/support/mod.rs"]
mod origin;
#[allow(dead_code)]
#[path = "../../corral/tests/support/redis.rs"]
mod redis_server;
mod support;

use std::time::Duration;

use origin::{Origin, Reply};
use redis_server::RedisServer;
use support::{get, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_proxies_sharing_redis_fetch_a_cold_url_once_and_share_purges() {
    let redis = RedisServer::start();
    let origin = Origin::start().await;
    origin.route("/shared", |_, n| {
        Reply::ok(&format!("fetch {n}"))
            .header("cache-control", "max-age=600")
            .header("vary", "accept-encoding")
            .delay(Duration::from_millis(300))
    });
    let config = format!(
        "upstream = \"http://{}\"\nredis-url = \"{}\"\nredis-prefix = \"proxies:\"",
        origin.addr,
        redis.url()
    );
    let (a, b) = (start(&config).await, start(&config).await);
    let requests: Vec<_> = (0..200)
        .map(|i| {
            let addr = if i % 2 == 0 { a.addr } else { b.addr };
            tokio::spawn(async move {
                get(
                    addr,
                    "/shared",
                    &[("host", "site"), ("accept-encoding", "gzip")],
                )
                .await
            })
        })
        .collect();
    for request in requests {
        let got = request.await.unwrap();
        assert_eq!((got.status.as_u16(), got.text()), (200, "fetch 1"));
    }
    assert_eq!(origin.count("/shared"), 1, "one fetch across both proxies");

    let purge = support::send(
        a.admin.unwrap(),
        http::Request::post(format!("/purge?url=http://{}/shared", origin.addr))
            .header("host", a.admin.unwrap().to_string())
            .body(http_body_util::Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(purge.status, 200);
    let mut refetched = None;
    for _ in 0..50 {
        let got = get(
            b.addr,
            "/shared",
            &[("host", "site"), ("accept-encoding", "gzip")],
        )
        .await;
        if got.text() != "fetch 1" {
            refetched = Some(got.text().to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        refetched.as_deref(),
        Some("fetch 2"),
        "the purge on a reached b"
    );
}
