//! The pool as the proxy sets it up: the `peer-*` configuration keys (`peer-secret`,
//! `peer-timeout`, `peer-hot-cache`, `peer-hot-ttl`, with `host = "keep"` routing each
//! name by its own URL), the admin API that lists the members and sets them
//! (`GET`/`PUT /peers`), and a forward proxy in a pool that fetches URLs on the peer
//! path of other sites. Several real corral proxies on 127.0.0.1 in front of one
//! real origin.
//!
//! The pool's own behaviour (one origin fetch per URL, failover when a peer dies or
//! never answers, membership changed at runtime, authenticated peer requests, no
//! loops, answers through a non-owner that are the owner's, the hot cache,
//! `PoolClient`, a custom routing key) is tested against the library, with hyper
//! servers as peers, in `crates/corral-http/tests/pool.rs`.

#[path = "../../corral-http/tests/support/mod.rs"]
mod origin;
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use origin::{Origin, Reply, Silent};
use support::{Killable, admin_json, get, put_peers};

const SECRET: &str = "pool-test-secret";

/// `n` reverse proxies for `origin`, with the pool on and each other as peers.
async fn cluster(origin: &Origin, n: usize, extra: &str) -> Vec<Killable> {
    let toml = format!(
        "upstream = \"http://{}\"\npeer-secret = \"{SECRET}\"\n{extra}",
        origin.addr
    );
    let mut peers = Vec::new();
    for _ in 0..n {
        peers.push(Killable::start(&toml).await);
    }
    let urls = base_urls(&peers);
    for peer in &peers {
        let set = put_peers(peer.admin.unwrap(), &urls).await;
        assert_eq!(set.status, 200, "{}", set.text());
    }
    peers
}

fn base_urls(peers: &[Killable]) -> Vec<String> {
    peers.iter().map(|p| format!("http://{}", p.addr)).collect()
}

/// `GET path` through `proxy` (a reverse proxy: the path is what counts).
async fn fetch(proxy: SocketAddr, path: &str) -> (u16, String) {
    let got = get(proxy, &format!("http://{proxy}{path}"), &[]).await;
    (got.status.as_u16(), got.text().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_lists_the_members_and_sets_them_at_runtime() {
    let origin = Origin::start().await;
    for i in 0..200 {
        origin.route(&format!("/m/{i}"), move |_, _| {
            Reply::ok("m").header("cache-control", "max-age=60")
        });
    }
    let mut peers = cluster(&origin, 2, "").await;
    peers.push(
        Killable::start(&format!(
            "upstream = \"http://{}\"\npeer-secret = \"{SECRET}\"\n",
            origin.addr
        ))
        .await,
    );
    let all = base_urls(&peers);
    for peer in &peers {
        assert_eq!(put_peers(peer.admin.unwrap(), &all).await.status, 200);
    }
    let listed = admin_json(peers[0].admin.unwrap(), "/peers").await;
    assert_eq!(listed["peers"].as_array().unwrap().len(), 3, "{listed}");
    assert_eq!(
        listed["peers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["self"] == true)
            .count(),
        1
    );
    // `?url=` names the owner, one of the members; the new member owns a share at
    // once, and the proxies, routing by the URL each request is for, still fetch
    // each URL once.
    let new_member = &all[2];
    let mut owned_by_new = 0;
    for i in 0..200 {
        let url = format!("/peers?url=http://{}/m/{i}", origin.addr);
        let owner = admin_json(peers[0].admin.unwrap(), &url).await["owner"].clone();
        assert!(all.iter().any(|member| owner == member.as_str()), "{owner}");
        if owner == new_member.as_str() {
            owned_by_new += 1;
        }
        let via = peers[i % 3].addr;
        assert_eq!(fetch(via, &format!("/m/{i}")).await.0, 200);
        assert_eq!(
            fetch(peers[(i + 1) % 3].addr, &format!("/m/{i}")).await.0,
            200
        );
        assert_eq!(origin.count(&format!("/m/{i}")), 1, "/m/{i}");
    }
    assert!((30..=110).contains(&owned_by_new), "{owned_by_new} of 200");
    // A bad list is refused, and changes nothing.
    let bad = put_peers(peers[0].admin.unwrap(), &["ftp://nope".to_owned()]).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("ftp://nope"), "{}", bad.text());
    assert_eq!(admin_json(peers[0].admin.unwrap(), "/peers").await, listed);
    // A member that died is listed unhealthy once a request found it down.
    peers[2].kill();
    let paths = (0..200).map(|i| format!("/m/{i}"));
    let owned = owned_by(peers[0].admin.unwrap(), &origin, paths, new_member, 1).await;
    assert_eq!(fetch(peers[0].addr, &owned[0]).await, (200, "m".to_owned()));
    let members = admin_json(peers[0].admin.unwrap(), "/peers").await;
    let listed = members["peers"].as_array().unwrap();
    let entry = listed.iter().find(|p| p["url"] == new_member.as_str());
    assert_eq!(entry.unwrap()["healthy"], false, "{members}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_hot_cache_keys_give_each_name_kept_by_the_host_its_own_hot_copy() {
    let origin = Origin::start().await;
    origin.route("/page", |req, _| {
        let host = req.headers["host"].to_str().unwrap().to_owned();
        Reply::ok(&format!("page of {host}")).header("cache-control", "max-age=60")
    });
    let peers = cluster(
        &origin,
        2,
        "host = \"keep\"\npeer-hot-cache = \"16MiB\"\npeer-hot-ttl = \"60s\"\n",
    )
    .await;
    // Two names whose pages the second peer owns (with `host = "keep"`, each name
    // is routed by its own URL), asked for through the first.
    let owner = format!("http://{}", peers[1].addr);
    let mut names = Vec::new();
    for n in 0..200 {
        let name = format!("site-{n}.test");
        let asked = format!("/peers?url=http://{name}/page");
        if admin_json(peers[0].admin.unwrap(), &asked).await["owner"] == owner.as_str() {
            names.push(name);
        }
        if names.len() == 2 {
            break;
        }
    }
    assert_eq!(names.len(), 2);
    let served_by_owner = || async {
        admin_json(peers[1].admin.unwrap(), "/stats").await["responses"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>()
    };
    let url = format!("http://{}/page", peers[0].addr);
    for round in 0..2 {
        for name in &names {
            let got = get(peers[0].addr, &url, &[("host", name)]).await;
            assert_eq!(got.text(), format!("page of {name}"));
            // RFC 9211: the owner's entry, then the hot cache's.
            let statuses: Vec<_> = got.headers.get_all("cache-status").iter().collect();
            assert_eq!(statuses.len(), 2, "{statuses:?}");
            assert!(statuses[0].to_str().unwrap().starts_with("corral; "));
            if round == 1 {
                let hot = statuses[1].to_str().unwrap();
                assert!(hot.starts_with("corral-hot; hit; ttl="), "{hot}");
            }
        }
    }
    assert_eq!(
        served_by_owner().await,
        2,
        "the second round from the hot copies"
    );
    assert_eq!(origin.count("/page"), 2, "one fetch per name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_timeout_marks_a_peer_that_never_answers_unhealthy_in_the_admin_api() {
    const PEER_TIMEOUT: Duration = Duration::from_secs(1);
    let origin = Origin::start().await;
    for i in 0..100 {
        origin.route(&format!("/quiet/{i}"), move |_, _| {
            Reply::ok(&format!("quiet {i}")).header("cache-control", "max-age=60")
        });
    }
    let proxy = Killable::start(&format!(
        "upstream = \"http://{}\"\npeer-secret = \"{SECRET}\"\n\
         response-timeout = \"500ms\"\npeer-timeout = \"1s\"\n",
        origin.addr
    ))
    .await;
    let silent = Silent::start().await;
    let members = [format!("http://{}", proxy.addr), silent.url()];
    assert_eq!(put_peers(proxy.admin.unwrap(), &members).await.status, 200);
    let paths = (0..100).map(|i| format!("/quiet/{i}"));
    let owned = owned_by(proxy.admin.unwrap(), &origin, paths, &silent.url(), 1).await;

    // It waits for the peer timeout, then is served locally.
    let started = Instant::now();
    let first = fetch(proxy.addr, &owned[0]).await;
    let waited = started.elapsed();
    assert_eq!(first, (200, owned[0].replace("/quiet/", "quiet ")));
    assert!(
        waited >= PEER_TIMEOUT && waited < PEER_TIMEOUT + Duration::from_secs(10),
        "{waited:?}"
    );
    assert!(silent.accepted() >= 1, "the peer was asked");
    let listed = admin_json(proxy.admin.unwrap(), "/peers").await;
    let health = |url: &str| {
        listed["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["url"] == url)
            .unwrap_or_else(|| panic!("{url} not in {listed}"))["healthy"]
            .clone()
    };
    assert_eq!(health(&silent.url()), false, "{listed}");
    assert_eq!(health(&members[0]), true, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_proxy_in_a_pool_fetches_urls_on_the_peer_path_of_other_sites() {
    let origin = Origin::start().await;
    origin.route("/_corral/peer", |_, _| Reply::ok("a page of the origin"));
    let proxy = Killable::start(&format!("peer-secret = \"{SECRET}\"\n")).await;
    let got = get(
        proxy.addr,
        &format!("http://{}/_corral/peer?url=x", origin.addr),
        &[],
    )
    .await;
    assert_eq!(
        (got.status.as_u16(), got.text()),
        (200, "a page of the origin")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_an_owner_dies_its_urls_are_fetched_once_for_the_pool_by_its_successor() {
    let origin = Origin::start().await;
    for i in 0..100 {
        origin.route(&format!("/d/{i}"), |_, n| {
            Reply::ok(&format!("v{n}")).header("cache-control", "max-age=600")
        });
    }
    let mut peers = cluster(&origin, 3, "").await;
    let dead = base_urls(&peers)[2].clone();
    let paths = (0..100).map(|i| format!("/d/{i}"));
    let owned = owned_by(peers[0].admin.unwrap(), &origin, paths, &dead, 4).await;
    peers[2].kill();
    for path in &owned {
        // Each survivor finds the owner down, then goes to the same successor.
        for round in 0..3 {
            for via in [peers[0].addr, peers[1].addr] {
                assert_eq!(
                    fetch(via, path).await,
                    (200, "v1".to_owned()),
                    "{path} {round}"
                );
            }
        }
        assert_eq!(origin.count(path), 1, "{path}: one fetch for the pool");
    }
}

/// `POST` an admin route: its status and JSON answer.
async fn admin_post(admin: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let got = support::send(
        admin,
        http::Request::post(format!("http://{admin}{path}"))
            .header("host", admin.to_string())
            .body(http_body_util::Full::default())
            .unwrap(),
    )
    .await;
    let body = serde_json::from_slice(&got.body).unwrap_or_default();
    (got.status.as_u16(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_reach_the_owner_or_every_member_and_say_how_each_took_them() {
    let origin = Origin::start().await;
    for i in 0..60 {
        origin.route(&format!("/t/{i}"), move |_, n| {
            let parity = if i % 2 == 0 { "even" } else { "odd" };
            Reply::ok(&format!("v{n}"))
                .header("cache-control", "max-age=600")
                .header("surrogate-key", parity)
        });
    }
    // Hot copies on the members that do not own a URL are purged too.
    let hot = "peer-hot-cache = \"16MiB\"\npeer-hot-ttl = \"60s\"\n";
    let mut peers = cluster(&origin, 3, hot).await;
    let members = base_urls(&peers);
    let paths: Vec<String> = (0..60).map(|i| format!("/t/{i}")).collect();
    for path in &paths {
        fetch(peers[0].addr, path).await;
        fetch(peers[1].addr, path).await;
    }
    let cached = async |path: &str| fetch(peers[1].addr, path).await.1 == "v1";
    // A URL purge through a member that does not own it reaches the owner.
    let owned = owned_by(
        peers[0].admin.unwrap(),
        &origin,
        paths.clone(),
        &members[2],
        1,
    )
    .await;
    let url = format!("http://{}{}", peers[0].addr, owned[0]);
    let (status, answer) = admin_post(
        peers[0].admin.unwrap(),
        &format!("/purge?url={}", url.replace('/', "%2F").replace(':', "%3A")),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["purged"], 1, "the owner held it: {answer}");
    let reached: Vec<&str> = answer["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["member"].as_str().unwrap())
        .collect();
    assert!(reached.contains(&members[2].as_str()), "{answer}");
    assert!(!cached(&owned[0]).await, "purged at its owner");
    // A tag purge reaches every member: every even response, wherever it is kept.
    let (status, answer) = admin_post(peers[1].admin.unwrap(), "/purge?tag=even").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["members"].as_array().unwrap().len(), 3, "{answer}");
    for (i, path) in paths.iter().enumerate() {
        if path == &owned[0] {
            continue;
        }
        assert_eq!(cached(path).await, i % 2 == 1, "{path}");
    }
    // A prefix purge too; a member that is down is reported, and the answer is a 502.
    peers[2].kill();
    let prefix = format!("http://{}/t/", peers[0].addr);
    let (status, answer) = admin_post(
        peers[0].admin.unwrap(),
        &format!(
            "/purge?prefix={}",
            prefix.replace('/', "%2F").replace(':', "%3A")
        ),
    )
    .await;
    assert_eq!(status, 502, "{answer}");
    let down = answer["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["member"] == members[2].as_str())
        .unwrap();
    assert!(down["error"].is_string(), "{answer}");
    assert!(answer["purged"].as_u64().unwrap() > 0, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_purge_through_the_peer_endpoint_without_the_secret() {
    let origin = Origin::start().await;
    origin.route("/kept", |_, n| {
        Reply::ok(&format!("v{n}"))
            .header("cache-control", "max-age=600")
            .header("surrogate-key", "kept")
    });
    // One member: it owns every URL, so its own cache holds the response.
    let peers = cluster(&origin, 1, "").await;
    let proxy = peers[0].addr;
    fetch(proxy, "/kept").await;
    let purge = |method: &str, secret: Option<&str>| {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://{proxy}/_corral/peer?purge=tag&value=kept"))
            .header("host", proxy.to_string());
        if let Some(secret) = secret {
            request = request.header("x-corral-peer-secret", secret);
        }
        support::send(
            proxy,
            request.body(http_body_util::Full::default()).unwrap(),
        )
    };
    assert_eq!(purge("POST", None).await.status, 403);
    assert_eq!(purge("POST", Some("guess")).await.status, 403);
    assert_eq!(
        purge("GET", Some(SECRET)).await.status,
        400,
        "only a POST purges; a GET names a URL"
    );
    assert_eq!(fetch(proxy, "/kept").await.1, "v1", "nothing purged");
    let allowed = purge("POST", Some(SECRET)).await;
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    assert_eq!(allowed.text(), "{\"purged\":0}");
    assert_eq!(fetch(proxy, "/kept").await.1, "v2", "purged by a peer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_peer_purge_with_a_body_leaves_the_connection_framed() {
    let origin = Origin::start().await;
    origin.route("/next", |_, _| {
        Reply::ok("next").header("cache-control", "max-age=600")
    });
    let peers = cluster(&origin, 1, "").await;
    let proxy = peers[0].addr;
    // A purge without the secret whose body is shaped like a request: it must be
    // refused, and its body read as its body, never as the connection's next request.
    let smuggled = "GET /next HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut client = support::raw_client::RawClient::connect(proxy).await;
    client
        .write(
            format!(
                "POST /_corral/peer?purge=tag&value=t HTTP/1.1\r\nhost: {proxy}\r\n\
                 content-length: {}\r\n\r\n{smuggled}\
                 GET /next HTTP/1.1\r\nhost: {proxy}\r\n\r\n",
                smuggled.len()
            )
            .as_bytes(),
        )
        .await;
    let refused = client.response(false).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    let next = client.response(false).await;
    assert_eq!((next.status, next.text()), (200, "next".to_owned()));
    assert_eq!(
        origin.count("/next"),
        1,
        "the body was not taken for a request"
    );
}

/// The first `n` of `paths` whose owner, as `admin` sees it, is `owner`.
async fn owned_by(
    admin: SocketAddr,
    origin: &Origin,
    paths: impl IntoIterator<Item = String>,
    owner: &str,
    n: usize,
) -> Vec<String> {
    let mut owned = Vec::new();
    for path in paths {
        let asked = format!("/peers?url=http://{}{path}", origin.addr);
        if admin_json(admin, &asked).await["owner"] == owner {
            owned.push(path);
        }
        if owned.len() == n {
            return owned;
        }
    }
    panic!("{owner} owns fewer than {n} of the paths");
}
