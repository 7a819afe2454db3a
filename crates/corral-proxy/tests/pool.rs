//! A pool of peers: several real corral proxies on 127.0.0.1 in front of one real
//! origin. One origin fetch per URL across the pool, a peer killed mid-run without a
//! failed request, a peer that never answers, membership changed at runtime, peer
//! requests authenticated, no loops when peers disagree, answers through a non-owner
//! that are the owner's, and the hot cache.

#[path = "../../corral-http/tests/support/mod.rs"]
mod origin;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use origin::{Origin, Reply};
use support::{Killable, admin_json, get, put_peers, send};

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
async fn three_peers_fetch_a_cold_url_once_for_300_concurrent_requests() {
    let origin = Origin::start().await;
    origin.route("/cold", |_, _| {
        Reply::ok("shared")
            .header("cache-control", "max-age=60")
            .delay(Duration::from_millis(100))
    });
    let peers = cluster(&origin, 3, "").await;
    let addrs: Vec<SocketAddr> = peers.iter().map(|p| p.addr).collect();
    let requests: Vec<_> = (0..300)
        .map(|i| tokio::spawn(fetch(addrs[i % 3], "/cold")))
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), (200, "shared".to_owned()));
    }
    assert_eq!(origin.count("/cold"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_urls_through_random_peers_reach_the_origin_once_each() {
    let origin = Origin::start().await;
    for i in 0..1000 {
        origin.route(&format!("/item/{i}"), move |_, _| {
            Reply::ok(&format!("item {i}")).header("cache-control", "max-age=60")
        });
    }
    let peers = cluster(&origin, 3, "").await;
    let addrs: Vec<SocketAddr> = peers.iter().map(|p| p.addr).collect();
    // Each URL twice, through two different peers, 50 at a time.
    let jobs: Vec<(SocketAddr, usize)> = (0..2000)
        .map(|n| (addrs[(n * 7 + n / 1000) % 3], n % 1000))
        .collect();
    for chunk in jobs.chunks(50) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|&(addr, i)| {
                tokio::spawn(async move { (i, fetch(addr, &format!("/item/{i}")).await) })
            })
            .collect();
        for job in batch {
            let (i, got) = job.await.unwrap();
            assert_eq!(got, (200, format!("item {i}")));
        }
    }
    for i in 0..1000 {
        assert_eq!(origin.count(&format!("/item/{i}")), 1, "/item/{i}");
    }
    // Every peer owns a share, and says which.
    let owners = admin_json(
        peers[0].admin.unwrap(),
        &format!("/peers?url=http://{}/item/1", origin.addr),
    )
    .await;
    assert!(base_urls(&peers).contains(&owners["owner"].as_str().unwrap().to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_killed_mid_run_fails_no_request() {
    let origin = Origin::start().await;
    for i in 0..300 {
        origin.route(&format!("/doc/{i}"), move |_, _| {
            Reply::ok(&format!("doc {i}")).header("cache-control", "max-age=60")
        });
    }
    let mut peers = cluster(&origin, 3, "").await;
    let survivors = [peers[0].addr, peers[1].addr];
    let run = |range: std::ops::Range<usize>| {
        let jobs: Vec<_> = range
            .map(|i| {
                let addr = survivors[i % 2];
                tokio::spawn(async move { (i, fetch(addr, &format!("/doc/{i}")).await) })
            })
            .collect();
        async move {
            for job in jobs {
                let (i, got) = job.await.unwrap();
                assert_eq!(got, (200, format!("doc {i}")), "request {i}");
            }
        }
    };
    let before = tokio::spawn(run(0..150));
    tokio::time::sleep(Duration::from_millis(5)).await;
    peers[2].kill();
    before.await.unwrap();
    // Everything after the kill, including the dead peer's URLs, is served by the
    // others, from the origin.
    run(150..300).await;
    for i in 150..300 {
        assert_eq!(origin.count(&format!("/doc/{i}")), 1, "/doc/{i}");
    }
    let members = admin_json(peers[0].admin.unwrap(), "/peers").await;
    let dead = format!("http://{}", peers[2].addr);
    let listed = members["peers"].as_array().unwrap();
    let entry = listed.iter().find(|p| p["url"] == dead.as_str()).unwrap();
    assert_eq!(entry["healthy"], false, "{members}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_at_runtime() {
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
    // The new member owns a share at once, and URLs are still fetched once.
    let new_member = &all[2];
    let mut owned_by_new = 0;
    for i in 0..200 {
        let url = format!("/peers?url=http://{}/m/{i}", origin.addr);
        if admin_json(peers[0].admin.unwrap(), &url).await["owner"] == new_member.as_str() {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_requests_need_the_shared_secret() {
    let origin = Origin::start().await;
    origin.route("/secret-test", |_, _| Reply::ok("ok"));
    let peers = cluster(&origin, 1, "").await;
    let peer = peers[0].addr;
    let target = format!(
        "http://{peer}/_corral/peer?url=http%3A%2F%2F{}%2Fsecret-test",
        origin.addr
    );
    let ask = |secret: Option<&str>| {
        let mut request = Request::get(&target).header("host", peer.to_string());
        if let Some(secret) = secret {
            request = request.header("x-corral-peer-secret", secret);
        }
        send(peer, request.body(Full::<Bytes>::default()).unwrap())
    };
    assert_eq!(ask(None).await.status, 403);
    assert_eq!(ask(Some("guess")).await.status, 403);
    assert_eq!(origin.count("/secret-test"), 0);
    let allowed = ask(Some(SECRET)).await;
    assert_eq!((allowed.status.as_u16(), allowed.text()), (200, "ok"));
    let seen = origin.last_request("/secret-test");
    assert!(
        seen.get("x-corral-peer-secret").is_none() && seen.get("x-corral-hop").is_none(),
        "the pool's headers never reach the origin: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_disagree_on_the_ring_do_not_loop() {
    let origin = Origin::start().await;
    origin.route("/loop", |_, _| {
        Reply::ok("once").header("cache-control", "max-age=60")
    });
    let peers = cluster(&origin, 2, "").await;
    let urls = base_urls(&peers);
    // Each believes the other owns everything: a request goes across once, and is
    // served where it lands.
    assert_eq!(
        put_peers(peers[0].admin.unwrap(), &urls[1..2]).await.status,
        200
    );
    assert_eq!(
        put_peers(peers[1].admin.unwrap(), &urls[0..1]).await.status,
        200
    );
    for _ in 0..3 {
        assert_eq!(
            fetch(peers[0].addr, "/loop").await,
            (200, "once".to_owned())
        );
    }
    assert_eq!(origin.count("/loop"), 1, "stored by the second peer");
    assert_eq!(
        fetch(peers[1].addr, "/loop").await,
        (200, "once".to_owned())
    );
    assert_eq!(origin.count("/loop"), 2, "stored by the first peer too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_owner_with_a_hot_cache_keeps_a_short_lived_copy() {
    let origin = Origin::start().await;
    origin.route("/hot", |_, _| {
        Reply::ok("hot").header("cache-control", "max-age=60")
    });
    let peers = cluster(
        &origin,
        2,
        "peer-hot-cache = \"16MiB\"\npeer-hot-ttl = \"1s\"\n",
    )
    .await;
    let owner = admin_json(
        peers[0].admin.unwrap(),
        &format!("/peers?url=http://{}/hot", origin.addr),
    )
    .await["owner"]
        .as_str()
        .unwrap()
        .to_owned();
    let (owner_peer, other) = if owner == format!("http://{}", peers[0].addr) {
        (&peers[0], &peers[1])
    } else {
        (&peers[1], &peers[0])
    };
    let served_by_owner = || async {
        admin_json(owner_peer.admin.unwrap(), "/stats").await["responses"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>()
    };
    let url = format!("http://{}/hot", other.addr);
    let first = get(other.addr, &url, &[]).await;
    assert_eq!(first.text(), "hot");
    assert_eq!(served_by_owner().await, 1);
    let second = get(other.addr, &url, &[]).await;
    assert_eq!(second.text(), "hot");
    // RFC 9211: the owner's entry, then the hot cache's.
    let statuses: Vec<_> = second.headers.get_all("cache-status").iter().collect();
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert!(statuses[0].to_str().unwrap().starts_with("corral; "));
    assert_eq!(statuses[1], "corral-hot; hit; ttl=1");
    assert_eq!(served_by_owner().await, 1, "answered from the hot copy");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(other.addr, &url, &[]).await.text(), "hot");
    assert_eq!(served_by_owner().await, 2, "the copy lived at most 1 s");
    assert_eq!(origin.count("/hot"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_client_sends_each_url_to_its_owner_and_fails_over() {
    use corral_http::pool::Pool;
    use tower::ServiceExt;

    let origin = Origin::start().await;
    for i in 0..60 {
        origin.route(&format!("/c/{i}"), move |_, _| {
            Reply::ok(&format!("c {i}")).header("cache-control", "max-age=60")
        });
    }
    let mut peers = cluster(&origin, 3, "").await;
    let pool = Pool::builder()
        .peers(base_urls(&peers))
        .secret(SECRET)
        .build()
        .unwrap();
    let client = pool.client();
    let ask = |i: usize| {
        let client = client.clone();
        let url = format!("http://{}/c/{i}", origin.addr);
        async move {
            let response = client
                .oneshot(Request::get(url).body(Full::<Bytes>::default()).unwrap())
                .await
                .expect("a response");
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            String::from_utf8(body.to_vec()).unwrap()
        }
    };
    for round in 0..2 {
        for i in 0..30 {
            assert_eq!(ask(i).await, format!("c {i}"), "round {round}");
        }
    }
    for i in 0..30 {
        assert_eq!(
            origin.count(&format!("/c/{i}")),
            1,
            "/c/{i}: owners keep them"
        );
    }
    // An owner dies: its URLs go to the next peer on the ring, and all succeed.
    peers[1].kill();
    for i in 30..60 {
        assert_eq!(ask(i).await, format!("c {i}"));
    }
    let relative = client
        .clone()
        .oneshot(
            Request::get("/no-host")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await;
    assert!(relative.unwrap_err().to_string().contains("absolute"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_another_secret_is_routed_around() {
    let origin = Origin::start().await;
    for i in 0..40 {
        origin.route(&format!("/s/{i}"), move |_, _| {
            Reply::ok(&format!("s {i}")).header("cache-control", "max-age=60")
        });
    }
    let first = Killable::start(&format!(
        "upstream = \"http://{}\"\npeer-secret = \"{SECRET}\"\n",
        origin.addr
    ))
    .await;
    let stranger = Killable::start(&format!(
        "upstream = \"http://{}\"\npeer-secret = \"another-secret\"\n",
        origin.addr
    ))
    .await;
    let peers = [first, stranger];
    let urls = base_urls(&peers);
    for peer in &peers {
        assert_eq!(put_peers(peer.admin.unwrap(), &urls).await.status, 200);
    }
    // Through the first peer every URL succeeds: the stranger's 403s are not
    // passed on; its URLs are fetched locally.
    for i in 0..40 {
        assert_eq!(
            fetch(peers[0].addr, &format!("/s/{i}")).await,
            (200, format!("s {i}"))
        );
    }
    let members = admin_json(peers[0].admin.unwrap(), "/peers").await;
    let stranger_entry = members["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["url"] == urls[1].as_str())
        .unwrap()
        .clone();
    assert_eq!(stranger_entry["healthy"], false, "{members}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_copies_of_one_name_never_answer_another() {
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
    // Two names whose pages the second peer owns, asked for through the first.
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
    let url = format!("http://{}/page", peers[0].addr);
    for _ in 0..2 {
        for name in &names {
            let got = get(peers[0].addr, &url, &[("host", name)]).await;
            assert_eq!(got.text(), format!("page of {name}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_header_a_client_sends_skips_the_routing() {
    let origin = Origin::start().await;
    origin.route("/b", |_, _| {
        Reply::ok("b").header("cache-control", "max-age=60")
    });
    let peers = cluster(&origin, 2, "").await;
    // The old hop marker, and the peer headers without the secret: each peer
    // still routes the request to the URL's owner.
    let forged = [
        ("x-corral-hop", "1"),
        ("x-corral-peer", "1"),
        ("x-corral-peer-secret", "guess"),
    ];
    for peer in &peers {
        let got = get(peer.addr, &format!("http://{}/b", peer.addr), &forged).await;
        assert_eq!((got.status.as_u16(), got.text()), (200, "b"));
    }
    assert_eq!(origin.count("/b"), 1, "fetched by the owner only");
    let seen = origin.last_request("/b");
    assert!(seen.get("x-corral-peer-secret").is_none(), "{seen:?}");
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

/// A peer that accepts connections and reads what it is sent, but never answers;
/// says how many connections it accepted.
async fn silent_peer() -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    (addr, accepted)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_is_marked_unhealthy_and_its_urls_are_served_locally() {
    const PEER_TIMEOUT: Duration = Duration::from_millis(300);
    let origin = Origin::start().await;
    for i in 0..100 {
        origin.route(&format!("/quiet/{i}"), move |_, _| {
            Reply::ok(&format!("quiet {i}")).header("cache-control", "max-age=60")
        });
    }
    let proxy = Killable::start(&format!(
        "upstream = \"http://{}\"\npeer-secret = \"{SECRET}\"\n\
         response-timeout = \"200ms\"\npeer-timeout = \"300ms\"\n",
        origin.addr
    ))
    .await;
    let (silent, accepted) = silent_peer().await;
    let silent_url = format!("http://{silent}");
    let members = [format!("http://{}", proxy.addr), silent_url.clone()];
    assert_eq!(put_peers(proxy.admin.unwrap(), &members).await.status, 200);
    let paths = (0..100).map(|i| format!("/quiet/{i}"));
    let owned = owned_by(proxy.admin.unwrap(), &origin, paths, &silent_url, 3).await;

    // The first waits for the peer timeout, then is served locally.
    let started = Instant::now();
    let first = fetch(proxy.addr, &owned[0]).await;
    let waited = started.elapsed();
    assert_eq!(first, (200, owned[0].replace("/quiet/", "quiet ")));
    assert!(
        waited >= PEER_TIMEOUT && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert!(accepted.load(Ordering::SeqCst) >= 1, "the peer was asked");
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
    assert_eq!(health(&silent_url), false, "{listed}");
    assert_eq!(health(&members[0]), true, "{listed}");

    // While it is left alone, its other URLs are served locally at once.
    for path in &owned[1..] {
        let started = Instant::now();
        assert_eq!(
            fetch(proxy.addr, path).await,
            (200, path.replace("/quiet/", "quiet "))
        );
        assert!(started.elapsed() < PEER_TIMEOUT, "{:?}", started.elapsed());
    }
    for path in &owned {
        assert_eq!(origin.count(path), 1, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_through_a_non_owner_is_the_owners_response() {
    let origin = Origin::start().await;
    for i in 0..40 {
        origin.route(&format!("/same/{i}"), move |_, _| {
            Reply::ok(&format!("same {i}"))
                .header("cache-control", "public, max-age=60")
                .header("etag", &format!("\"same-{i}\""))
                .header("last-modified", "Tue, 15 Nov 1994 12:45:26 GMT")
                .header("content-type", "text/plain; charset=utf-8")
                .header("x-origin-header", &format!("from the origin {i}"))
                .header("x-origin-multi", "one")
                .header("x-origin-multi", "two")
        });
        origin.route(&format!("/gone/{i}"), move |_, _| {
            Reply::ok("not here")
                .status(404)
                .header("cache-control", "max-age=60")
                .header("x-origin-header", "missing")
        });
    }
    let peers = cluster(&origin, 2, "").await;
    let owner = format!("http://{}", peers[1].addr);
    let admin = peers[0].admin.unwrap();
    let mut paths = Vec::new();
    for kind in ["same", "gone"] {
        let candidates = (0..40).map(|i| format!("/{kind}/{i}"));
        paths.extend(owned_by(admin, &origin, candidates, &owner, 1).await);
    }
    let through = |peer: &Killable, path: &str| {
        let addr = peer.addr;
        let url = format!("http://{addr}{path}");
        async move { get(addr, &url, &[]).await }
    };
    for path in &paths {
        let via = through(&peers[0], path).await;
        let direct = through(&peers[1], path).await;
        assert_eq!(origin.count(path), 1, "{path}: fetched by the owner once");
        assert_eq!(via.status, direct.status, "{path}");
        assert_eq!(via.body, direct.body, "{path}");
        assert!(
            via.headers.get("x-corral-peer").is_none(),
            "the pool's mark stays between peers: {:?}",
            via.headers
        );
        let ages = [&via, &direct].map(|got| got.header("age").parse::<u64>().unwrap_or(0));
        assert!(ages[0].abs_diff(ages[1]) <= 1, "{path}: {ages:?}");
        assert_eq!(end_to_end(&via), end_to_end(&direct), "{path}");
    }
    // And those are the origin's.
    let via = through(&peers[0], &paths[0]).await;
    let i = paths[0].trim_start_matches("/same/");
    assert_eq!(via.text(), format!("same {i}"));
    assert_eq!(
        via.header("x-origin-header"),
        format!("from the origin {i}")
    );
    assert_eq!(via.header("etag"), format!("\"same-{i}\""));
    assert_eq!(via.header("cache-control"), "public, max-age=60");
    let multi: Vec<_> = via.headers.get_all("x-origin-multi").iter().collect();
    assert_eq!(multi, ["one", "two"]);
    assert_eq!(origin.count(&paths[0]), 1);
}

/// A response's headers without the hop-by-hop fields and those a cache sets on each
/// answer (`Age`, `X-Cache`, `Cache-Status`), sorted, values in order.
fn end_to_end(got: &support::Got) -> Vec<(String, Vec<String>)> {
    const PER_ANSWER: [&str; 10] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "age",
        "x-cache",
        "cache-status",
    ];
    let mut headers: Vec<(String, Vec<String>)> = got
        .headers
        .keys()
        .filter(|name| !PER_ANSWER.contains(&name.as_str()))
        .map(|name| {
            let values = got
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            (name.as_str().to_owned(), values)
        })
        .collect();
    headers.sort();
    headers
}
