//! A pool of peers, tested as an application uses the library: each peer a real
//! HTTP/1.1 server on 127.0.0.1 serving `pool.route_layer()?.layer(HttpCache)` in
//! front of one real origin. One origin fetch per URL across the pool, a peer killed
//! mid-run without a failed request, a peer that never answers, membership changed
//! at runtime, peer requests authenticated, no loops when peers disagree, answers
//! through a non-owner that are the owner's, the hot cache, `PoolClient`, and a
//! custom routing key.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use corral_http::pool::{Pool, PoolBuilder, RouteLayer};
use corral_http::{Body, BoxError, HttpCache};
use http::header::HOST;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{Got, Origin, Reply, Silent};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};

const SECRET: &str = "pool-test-secret";

type OriginClient = BoxCloneSyncService<Request<Body>, Response<Body>, BoxError>;

/// A peer's client for the origin: whatever URL a request names, it goes to the test
/// origin with its `Host` kept (so that any name is served, as that name).
fn origin_client(origin: SocketAddr) -> OriginClient {
    let client =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Body>();
    BoxCloneSyncService::new(
        client
            .map_request(move |mut request: Request<Body>| {
                let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
                *request.uri_mut() = format!("http://{origin}{path}").parse().unwrap();
                request
            })
            .map_response(|response| response.map(Body::streaming))
            .map_err(BoxError::from),
    )
}

/// A peer: a real HTTP/1.1 server whose every connection closes when it is killed
/// (or dropped), as if its process died.
struct Peer {
    addr: SocketAddr,
    url: String,
    pool: Pool,
    /// Requests that reached this peer's local cache (its own, its fallbacks, and
    /// those its peers sent it).
    served: Arc<AtomicUsize>,
    server: JoinHandle<()>,
}

impl Peer {
    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// Stops the server: its listener and every connection close.
    async fn kill(&mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// `n` listeners on 127.0.0.1, and their base URLs (known before the pools are built).
async fn bind(n: usize) -> (Vec<TcpListener>, Vec<String>) {
    let mut listeners = Vec::new();
    for _ in 0..n {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let urls = listeners
        .iter()
        .map(|l| format!("http://{}", l.local_addr().unwrap()))
        .collect();
    (listeners, urls)
}

/// A pool member at `url` among `peers`, with the test's secret.
fn member(url: &str, peers: &[String]) -> PoolBuilder {
    Pool::builder()
        .self_url(url)
        .peers(peers.to_vec())
        .secret(SECRET)
}

/// Serves `route.layer(HttpCache in front of the origin)` on `listener`. With
/// `reverse`, the local service is a reverse proxy for the origin: a request with a
/// relative URI is pointed at the origin's URL (`Host` included) after the route.
fn serve(
    listener: TcpListener,
    pool: Pool,
    route: RouteLayer,
    origin: &Origin,
    reverse: bool,
) -> Peer {
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let counted = served.clone();
    let origin_addr = origin.addr;
    let cache = HttpCache::builder()
        .service(origin_client(origin_addr))
        .expect("valid options");
    let local = cache.map_request(move |mut request: Request<Body>| {
        counted.fetch_add(1, Ordering::SeqCst);
        if reverse && request.uri().authority().is_none() {
            let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
            *request.uri_mut() = format!("http://{origin_addr}{path}").parse().unwrap();
            let host = HeaderValue::from_str(&origin_addr.to_string()).unwrap();
            request.headers_mut().insert(HOST, host);
        }
        request
    });
    let service = Front::new(route.layer(local));
    let server = tokio::spawn(async move {
        // Dropped with the server: every connection closes when it stops.
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { return };
                    let service = service.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            let service = service.clone();
                            async move { Ok::<_, Infallible>(respond(service, request).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                Some(_) = connections.join_next() => {}
            }
        }
    });
    Peer {
        addr,
        url: format!("http://{addr}"),
        pool,
        served,
        server,
    }
}

/// A peer's service: the route in front of its cache.
type Front = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// `front`'s answer to a request a peer's server received.
async fn respond(front: Front, request: Request<Incoming>) -> Response<Body> {
    let request = request.map(|body| {
        if http_body::Body::is_end_stream(&body) {
            Body::empty()
        } else {
            Body::from_client(body)
        }
    });
    match front.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// `n` peers of one pool in front of `origin`, each pool's options set by `options`.
async fn cluster(
    origin: &Origin,
    n: usize,
    options: impl Fn(PoolBuilder) -> PoolBuilder,
) -> Vec<Peer> {
    let (listeners, urls) = bind(n).await;
    listeners
        .into_iter()
        .zip(&urls)
        .map(|(listener, url)| {
            let pool = options(member(url, &urls)).build().expect("a valid pool");
            let route = pool.route_layer().expect("a valid route");
            serve(listener, pool, route, origin, false)
        })
        .collect()
}

/// Sends `request` on a new HTTP/1.1 connection to `addr`, as written (an absolute
/// URI goes out in absolute form, as to a forward proxy).
async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> Got {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the peer");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let response = sender.send_request(request).await.expect("a response");
    let (parts, body) = response.into_parts();
    Got {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("a body").to_bytes(),
    }
}

/// `GET url` through the peer at `addr`, with `headers` (and the URL's `Host`
/// unless they name one).
async fn get(addr: SocketAddr, url: &str, headers: &[(&str, &str)]) -> Got {
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let authority = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.to_string()));
    if let Some(host) =
        authority.filter(|_| !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")))
    {
        request = request.header(HOST, host);
    }
    send(addr, request.body(Full::default()).unwrap()).await
}

/// `GET url` through the peer at `addr`: its status and body.
async fn fetch(addr: SocketAddr, url: &str) -> (u16, String) {
    let got = get(addr, url, &[]).await;
    (got.status.as_u16(), got.text().to_owned())
}

/// The first `n` of `paths` whose URL on `origin` `pool` says `owner` owns.
fn owned_by(
    pool: &Pool,
    origin: &Origin,
    paths: impl IntoIterator<Item = String>,
    owner: &str,
    n: usize,
) -> Vec<String> {
    let owned: Vec<String> = paths
        .into_iter()
        .filter(|path| pool.owner(&origin.url(path)).as_deref() == Some(owner))
        .take(n)
        .collect();
    assert_eq!(owned.len(), n, "{owner} owns fewer than {n} of the paths");
    owned
}

/// Whether `pool` lists `url` as healthy.
fn healthy(pool: &Pool, url: &str) -> bool {
    let peers = pool.peers();
    peers
        .iter()
        .find(|p| p.url == url)
        .unwrap_or_else(|| panic!("{url} not in {peers:?}"))
        .healthy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_fetch_a_cold_url_once_for_300_concurrent_requests() {
    let origin = Origin::start().await;
    origin.route("/cold", |_, _| {
        Reply::ok("shared")
            .header("cache-control", "max-age=60")
            .delay(Duration::from_millis(100))
    });
    let peers = cluster(&origin, 3, |pool| pool).await;
    let url = origin.url("/cold");
    let requests: Vec<_> = (0..300)
        .map(|i| {
            let (addr, url) = (peers[i % 3].addr, url.clone());
            tokio::spawn(async move { fetch(addr, &url).await })
        })
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
    let peers = cluster(&origin, 3, |pool| pool).await;
    let addrs: Vec<SocketAddr> = peers.iter().map(|p| p.addr).collect();
    // Each URL twice, through two different peers, 50 at a time.
    let jobs: Vec<(SocketAddr, usize)> = (0..2000)
        .map(|n| (addrs[(n * 7 + n / 1000) % 3], n % 1000))
        .collect();
    for chunk in jobs.chunks(50) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|&(addr, i)| {
                let url = origin.url(&format!("/item/{i}"));
                tokio::spawn(async move { (i, fetch(addr, &url).await) })
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
    // Every member names the same owner, every peer owns a share, and each URL
    // reached only its owner's cache.
    let urls: Vec<&str> = peers.iter().map(|p| p.url.as_str()).collect();
    let mut owned = [0usize; 3];
    for i in 0..1000 {
        let url = origin.url(&format!("/item/{i}"));
        let owner = peers[0].pool.owner(&url).unwrap();
        assert!(
            peers
                .iter()
                .all(|p| p.pool.owner(&url) == Some(owner.clone()))
        );
        owned[urls.iter().position(|u| *u == owner).unwrap()] += 2;
    }
    assert!(owned.iter().all(|&n| n > 0), "{owned:?}");
    let served: Vec<usize> = peers.iter().map(Peer::served).collect();
    assert_eq!(served, owned, "requests reaching each peer's cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_killed_mid_run_fails_no_request() {
    let origin = Origin::start().await;
    for i in 0..300 {
        origin.route(&format!("/doc/{i}"), move |_, _| {
            Reply::ok(&format!("doc {i}")).header("cache-control", "max-age=60")
        });
    }
    // Left alone for longer than the test runs: its health is read at the end.
    let mut peers = cluster(&origin, 3, |pool| {
        pool.unhealthy_for(Duration::from_secs(600))
    })
    .await;
    let survivors = [peers[0].addr, peers[1].addr];
    let run = |range: std::ops::Range<usize>| {
        let jobs: Vec<_> = range
            .map(|i| {
                let addr = survivors[i % 2];
                let url = origin.url(&format!("/doc/{i}"));
                tokio::spawn(async move { (i, fetch(addr, &url).await) })
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
    peers[2].kill().await;
    before.await.unwrap();
    // Everything after the kill, including the dead peer's URLs, is served by the
    // others, from the origin.
    run(150..300).await;
    for i in 150..300 {
        assert_eq!(origin.count(&format!("/doc/{i}")), 1, "/doc/{i}");
    }
    let dead = &peers[2].url;
    let owned = (150..300)
        .filter(|i| peers[0].pool.owner(&origin.url(&format!("/doc/{i}"))) == Some(dead.clone()))
        .count();
    assert!(owned > 0, "the dead peer owned some of the URLs asked for");
    assert!(
        !healthy(&peers[0].pool, dead),
        "{:?}",
        peers[0].pool.peers()
    );
    assert!(healthy(&peers[0].pool, &peers[1].url));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_added_at_runtime_own_a_share_at_once() {
    let origin = Origin::start().await;
    for i in 0..200 {
        origin.route(&format!("/m/{i}"), move |_, _| {
            Reply::ok("m").header("cache-control", "max-age=60")
        });
    }
    let mut peers = cluster(&origin, 2, |pool| pool).await;
    let (mut listener, urls) = bind(1).await;
    let mut all: Vec<String> = peers.iter().map(|p| p.url.clone()).collect();
    all.extend(urls);
    let pool = member(&all[2], &all).build().unwrap();
    let route = pool.route_layer().unwrap();
    peers.push(serve(listener.remove(0), pool, route, &origin, false));
    for peer in &peers[..2] {
        peer.pool.set_peers(&all).unwrap();
    }
    let listed = peers[0].pool.peers();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(listed.iter().filter(|p| p.is_self).count(), 1, "{listed:?}");
    assert!(listed.iter().any(|p| p.is_self && p.url == peers[0].url));
    // The new member owns a share at once, and URLs are still fetched once.
    let new_member = &all[2];
    let mut owned_by_new = 0;
    for i in 0..200 {
        let url = origin.url(&format!("/m/{i}"));
        if peers[0].pool.owner(&url).as_ref() == Some(new_member) {
            owned_by_new += 1;
        }
        assert_eq!(fetch(peers[i % 3].addr, &url).await.0, 200);
        assert_eq!(fetch(peers[(i + 1) % 3].addr, &url).await.0, 200);
        assert_eq!(origin.count(&format!("/m/{i}")), 1, "/m/{i}");
    }
    assert!((30..=110).contains(&owned_by_new), "{owned_by_new} of 200");
    // A bad list is refused, and changes nothing.
    let bad = peers[0].pool.set_peers(["ftp://nope"]).unwrap_err();
    assert!(bad.to_string().contains("ftp://nope"), "{bad}");
    assert_eq!(peers[0].pool.peers(), listed);
    // A member removed owns nothing any more.
    peers[0].pool.set_peers(&all[..2]).unwrap();
    for i in 0..200 {
        let url = origin.url(&format!("/m/{i}"));
        assert_ne!(peers[0].pool.owner(&url).as_ref(), Some(new_member));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_requests_need_the_shared_secret() {
    let origin = Origin::start().await;
    origin.route("/secret-test", |_, _| Reply::ok("ok"));
    let peers = cluster(&origin, 1, |pool| pool).await;
    let peer = peers[0].addr;
    let target = format!(
        "/_corral/peer?url=http%3A%2F%2F{}%2Fsecret-test",
        origin.addr
    );
    let ask = |secret: Option<&str>| {
        let mut request = Request::get(&target).header(HOST, peer.to_string());
        if let Some(secret) = secret {
            request = request.header("x-corral-peer-secret", secret);
        }
        send(peer, request.body(Full::default()).unwrap())
    };
    assert_eq!(ask(None).await.status, 403);
    assert_eq!(ask(Some("guess")).await.status, 403);
    assert_eq!(origin.count("/secret-test"), 0);
    assert_eq!(peers[0].served(), 0, "refused before the cache");
    let allowed = ask(Some(SECRET)).await;
    assert_eq!((allowed.status.as_u16(), allowed.text()), (200, "ok"));
    assert_eq!(allowed.header("x-corral-peer"), "1", "the pool's mark");
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
    let peers = cluster(&origin, 2, |pool| pool).await;
    // Each believes the other owns everything: a request goes across once, and is
    // served where it lands.
    peers[0].pool.set_peers([&peers[1].url]).unwrap();
    peers[1].pool.set_peers([&peers[0].url]).unwrap();
    let url = origin.url("/loop");
    for _ in 0..3 {
        assert_eq!(fetch(peers[0].addr, &url).await, (200, "once".to_owned()));
    }
    assert_eq!(origin.count("/loop"), 1, "stored by the second peer");
    assert_eq!((peers[0].served(), peers[1].served()), (0, 3));
    assert_eq!(fetch(peers[1].addr, &url).await, (200, "once".to_owned()));
    assert_eq!(origin.count("/loop"), 2, "stored by the first peer too");
    assert_eq!((peers[0].served(), peers[1].served()), (1, 3));
}

/// The peer that owns `url`, and another.
fn owner_and_other<'a>(peers: &'a [Peer], url: &str) -> (&'a Peer, &'a Peer) {
    let owner = peers[0].pool.owner(url).unwrap();
    if owner == peers[0].url {
        (&peers[0], &peers[1])
    } else {
        (&peers[1], &peers[0])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_owner_with_a_hot_cache_keeps_a_short_lived_copy() {
    const KEEP: Duration = Duration::from_secs(2);
    let origin = Origin::start().await;
    origin.route("/hot", |_, _| {
        Reply::ok("hot").header("cache-control", "max-age=60")
    });
    let peers = cluster(&origin, 2, |pool| pool.hot_cache(16 << 20, KEEP)).await;
    let url = origin.url("/hot");
    let (owner, other) = owner_and_other(&peers, &url);
    let first = get(other.addr, &url, &[]).await;
    assert_eq!(first.text(), "hot");
    assert_eq!(owner.served(), 1);
    let second = get(other.addr, &url, &[]).await;
    assert_eq!(second.text(), "hot");
    // RFC 9211: the owner's entry, then the hot cache's, whose copy lives at most
    // `KEEP` (not the response's 60 s).
    let statuses: Vec<_> = second.headers.get_all("cache-status").iter().collect();
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert!(statuses[0].to_str().unwrap().starts_with("corral; "));
    let hot = statuses[1].to_str().unwrap();
    assert!(
        ["corral-hot; hit; ttl=1", "corral-hot; hit; ttl=2"].contains(&hot),
        "{hot}"
    );
    assert_eq!(owner.served(), 1, "answered from the hot copy");
    assert_eq!(other.served(), 0, "never by the non-owner's own cache");
    tokio::time::sleep(KEEP + Duration::from_millis(100)).await;
    assert_eq!(get(other.addr, &url, &[]).await.text(), "hot");
    assert_eq!(owner.served(), 2, "the copy lived at most {KEEP:?}");
    assert_eq!(origin.count("/hot"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_copies_of_one_name_never_answer_another() {
    let origin = Origin::start().await;
    origin.route("/page", |req, _| {
        let host = req.headers["host"].to_str().unwrap().to_owned();
        Reply::ok(&format!("page of {host}")).header("cache-control", "max-age=60")
    });
    let peers = cluster(&origin, 2, |pool| {
        pool.hot_cache(16 << 20, Duration::from_secs(60))
    })
    .await;
    // Two names whose pages the second peer owns, asked for through the first.
    let names: Vec<String> = (0..200)
        .map(|n| format!("site-{n}.test"))
        .filter(|name| {
            peers[0].pool.owner(&format!("http://{name}/page")) == Some(peers[1].url.clone())
        })
        .take(2)
        .collect();
    assert_eq!(names.len(), 2);
    for round in 0..2 {
        for name in &names {
            let got = get(peers[0].addr, &format!("http://{name}/page"), &[]).await;
            assert_eq!(got.text(), format!("page of {name}"), "round {round}");
            if round == 1 {
                let hot = got
                    .headers
                    .get_all("cache-status")
                    .iter()
                    .next_back()
                    .unwrap();
                assert!(
                    hot.to_str().unwrap().starts_with("corral-hot; hit"),
                    "{hot:?}"
                );
            }
        }
    }
    assert_eq!(origin.count("/page"), 2, "one fetch per name");
    assert_eq!(peers[1].served(), 2, "the owner was asked once per name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_client_sends_each_url_to_its_owner_and_fails_over() {
    let origin = Origin::start().await;
    for i in 0..60 {
        origin.route(&format!("/c/{i}"), move |_, _| {
            Reply::ok(&format!("c {i}")).header("cache-control", "max-age=60")
        });
    }
    let mut peers = cluster(&origin, 3, |pool| pool).await;
    let urls: Vec<String> = peers.iter().map(|p| p.url.clone()).collect();
    let pool = Pool::builder()
        .peers(urls.clone())
        .secret(SECRET)
        .build()
        .unwrap();
    assert!(
        pool.peers().iter().all(|p| !p.is_self),
        "a client owns nothing"
    );
    let client = pool.client();
    let ask = |i: usize| {
        let client = client.clone();
        let url = origin.url(&format!("/c/{i}"));
        async move {
            let response = client
                .oneshot(Request::get(url).body(Full::<Bytes>::default()).unwrap())
                .await
                .expect("a response");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            String::from_utf8(body.to_vec()).unwrap()
        }
    };
    for round in 0..2 {
        for i in 0..30 {
            assert_eq!(ask(i).await, format!("c {i}"), "round {round}");
        }
    }
    let mut owned = [0usize; 3];
    for i in 0..30 {
        assert_eq!(
            origin.count(&format!("/c/{i}")),
            1,
            "/c/{i}: owners keep them"
        );
        let owner = pool.owner(&origin.url(&format!("/c/{i}"))).unwrap();
        owned[urls.iter().position(|u| *u == owner).unwrap()] += 2;
    }
    let served: Vec<usize> = peers.iter().map(Peer::served).collect();
    assert_eq!(served, owned, "each request went to its URL's owner");
    // An owner dies: its URLs go to the next peer on the ring, and all succeed.
    peers[1].kill().await;
    let dead_owns = (30..60)
        .filter(|i| pool.owner(&origin.url(&format!("/c/{i}"))) == Some(urls[1].clone()))
        .count();
    assert!(
        dead_owns > 0,
        "the dead peer owned some of the URLs asked for"
    );
    for i in 30..60 {
        assert_eq!(ask(i).await, format!("c {i}"));
    }
    assert!(!healthy(&pool, &urls[1]));
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
    let (mut listeners, urls) = bind(2).await;
    let secrets = [SECRET, "another-secret"];
    let mut peers = Vec::new();
    for (url, secret) in urls.iter().zip(secrets) {
        let pool = member(url, &urls)
            .secret(secret)
            .unhealthy_for(Duration::from_secs(600))
            .build()
            .unwrap();
        let route = pool.route_layer().unwrap();
        peers.push(serve(listeners.remove(0), pool, route, &origin, false));
    }
    // Through the first peer every URL succeeds: the stranger's 403s are not
    // passed on; its URLs are fetched locally.
    for i in 0..40 {
        assert_eq!(
            fetch(peers[0].addr, &origin.url(&format!("/s/{i}"))).await,
            (200, format!("s {i}"))
        );
    }
    assert_eq!(
        peers[0].served(),
        40,
        "all of them served by the first peer"
    );
    assert_eq!(peers[1].served(), 0, "the stranger served none");
    assert!(
        !healthy(&peers[0].pool, &urls[1]),
        "{:?}",
        peers[0].pool.peers()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_header_a_client_sends_skips_the_routing() {
    let origin = Origin::start().await;
    origin.route("/b", |_, _| {
        Reply::ok("b").header("cache-control", "max-age=60")
    });
    let peers = cluster(&origin, 2, |pool| pool).await;
    // The old hop marker, and the peer headers without the secret: each peer
    // still routes the request to the URL's owner.
    let forged = [
        ("x-corral-hop", "1"),
        ("x-corral-peer", "1"),
        ("x-corral-peer-secret", "guess"),
    ];
    let url = origin.url("/b");
    for peer in &peers {
        let got = get(peer.addr, &url, &forged).await;
        assert_eq!((got.status.as_u16(), got.text()), (200, "b"));
    }
    assert_eq!(origin.count("/b"), 1, "fetched by the owner only");
    let (owner, other) = owner_and_other(&peers, &url);
    assert_eq!((owner.served(), other.served()), (2, 0));
    let seen = origin.last_request("/b");
    assert!(seen.get("x-corral-peer-secret").is_none(), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_is_marked_unhealthy_and_its_urls_are_served_locally() {
    const PEER_TIMEOUT: Duration = Duration::from_secs(2);
    let origin = Origin::start().await;
    for i in 0..100 {
        origin.route(&format!("/quiet/{i}"), move |_, _| {
            Reply::ok(&format!("quiet {i}")).header("cache-control", "max-age=60")
        });
    }
    let silent = Silent::start().await;
    let (mut listener, mut members) = bind(1).await;
    members.push(silent.url());
    let pool = member(&members[0], &members)
        .peer_timeout(PEER_TIMEOUT)
        .unhealthy_for(Duration::from_secs(600))
        .build()
        .unwrap();
    let route = pool.route_layer().unwrap();
    let peer = serve(listener.remove(0), pool, route, &origin, false);
    let paths = (0..100).map(|i| format!("/quiet/{i}"));
    let owned = owned_by(&peer.pool, &origin, paths, &silent.url(), 3);

    // The first waits for the peer timeout, then is served locally.
    let started = Instant::now();
    let first = fetch(peer.addr, &origin.url(&owned[0])).await;
    let waited = started.elapsed();
    assert_eq!(first, (200, owned[0].replace("/quiet/", "quiet ")));
    assert!(
        waited >= PEER_TIMEOUT && waited < PEER_TIMEOUT + Duration::from_secs(10),
        "{waited:?}"
    );
    let asked = silent.accepted();
    assert!(asked >= 1, "the peer was asked");
    assert!(
        !healthy(&peer.pool, &silent.url()),
        "{:?}",
        peer.pool.peers()
    );
    assert!(healthy(&peer.pool, &members[0]), "{:?}", peer.pool.peers());

    // While it is left alone, its other URLs are served locally at once.
    for path in &owned[1..] {
        let started = Instant::now();
        assert_eq!(
            fetch(peer.addr, &origin.url(path)).await,
            (200, path.replace("/quiet/", "quiet "))
        );
        assert!(started.elapsed() < PEER_TIMEOUT, "{:?}", started.elapsed());
    }
    assert_eq!(silent.accepted(), asked, "not asked again");
    for path in &owned {
        assert_eq!(origin.count(path), 1, "{path}");
    }
    assert_eq!(peer.served(), 3);
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
    let peers = cluster(&origin, 2, |pool| pool).await;
    let mut paths = Vec::new();
    for kind in ["same", "gone"] {
        let candidates = (0..40).map(|i| format!("/{kind}/{i}"));
        paths.extend(owned_by(
            &peers[0].pool,
            &origin,
            candidates,
            &peers[1].url,
            1,
        ));
    }
    for path in &paths {
        let url = origin.url(path);
        let via = get(peers[0].addr, &url, &[]).await;
        let direct = get(peers[1].addr, &url, &[]).await;
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
    let via = get(peers[0].addr, &origin.url(&paths[0]), &[]).await;
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
    assert_eq!(
        peers[0].served(),
        0,
        "the non-owner's own cache never served them"
    );
}

/// A response's headers without the hop-by-hop fields and those a cache sets on each
/// answer (`Age`, `X-Cache`, `Cache-Status`), sorted, values in order.
fn end_to_end(got: &Got) -> Vec<(String, Vec<String>)> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routing_key_sends_every_name_of_a_resource_to_one_owner() {
    let origin = Origin::start().await;
    origin.route("/page", |_, _| {
        Reply::ok("the page").header("cache-control", "max-age=60")
    });
    // Reverse proxies for the one origin: whatever `Host` a request came with, it is
    // routed by the origin's URL it will have.
    let origin_addr = origin.addr;
    let (listeners, urls) = bind(2).await;
    let peers: Vec<Peer> = listeners
        .into_iter()
        .zip(&urls)
        .map(|(listener, url)| {
            let pool = member(url, &urls).build().unwrap();
            let route = pool.route_layer().unwrap().key(move |parts| {
                let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                corral_http::url_key(&format!("http://{origin_addr}{path}"))
            });
            serve(listener, pool, route, &origin, true)
        })
        .collect();
    let (owner, other) = owner_and_other(&peers, &origin.url("/page"));
    // Two names whose own URLs the non-owner would own: routed by name, it would
    // serve them itself.
    let names: Vec<String> = (0..200)
        .map(|n| format!("name-{n}.test"))
        .filter(|name| other.pool.owner(&format!("http://{name}/page")) == Some(other.url.clone()))
        .take(2)
        .collect();
    assert_eq!(names.len(), 2);
    for name in &names {
        let got = get(other.addr, "/page", &[("host", name)]).await;
        assert_eq!(
            (got.status.as_u16(), got.text()),
            (200, "the page"),
            "{name}"
        );
    }
    assert_eq!(
        (owner.served(), other.served()),
        (2, 0),
        "both sent to the owner"
    );
    let got = get(owner.addr, "/page", &[("host", &names[0])]).await;
    assert_eq!(got.text(), "the page");
    assert_eq!(owner.served(), 3);
    assert_eq!(origin.count("/page"), 1, "one copy for every name");
}
