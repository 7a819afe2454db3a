//! The Redis tier against real `redis-server` processes on loopback: one load per
//! cluster, takeover after a dead winner, shared errors, invalidation across servers,
//! corrupt records, Redis dying and coming back, and connecting slowly or never.

#![cfg(feature = "redis")]

// The TLS helpers are used only with `redis-tls`.
#[cfg_attr(not(feature = "redis-tls"), allow(dead_code))]
#[path = "support/redis.rs"]
mod redis_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use corral::codec::Raw;
use corral::redis::{RedisTier, RedisTierBuilder, RemoteLoadError};
use corral::{Cache, Error, Loaded};
use redis::AsyncCommands;
use redis_server::{RedisCluster, RedisServer};

fn tier(url: &str, prefix: &str) -> RedisTierBuilder {
    RedisTier::builder(url)
        .prefix(prefix)
        .lock_lease(Duration::from_secs(2))
        .command_timeout(Duration::from_millis(500))
}

fn cache(tier: RedisTierBuilder) -> Cache<String> {
    Cache::builder()
        .fresh_for(Duration::from_secs(60))
        .redis(tier.build().expect("valid tier"))
        .build()
        .expect("valid cache")
}

/// A loader that counts its runs, takes `delay`, and returns `value`.
fn counted(
    runs: &Arc<AtomicUsize>,
    delay: Duration,
    value: &str,
) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<String, std::io::Error>> + Send>>
+ Send
+ 'static {
    let (runs, value) = (runs.clone(), value.to_owned());
    move || {
        Box::pin(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            Ok(value)
        })
    }
}

async fn eventually(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes a new key through `write` until one reaches Redis under `prefix`, and
/// checks that this took less than `limit` (the tier came back by itself).
async fn tier_comes_back(
    server: &RedisServer,
    prefix: &str,
    limit: Duration,
    mut write: impl AsyncFnMut(&str),
) {
    let back = Instant::now();
    let mut n = 0;
    eventually(
        "values reach redis again",
        limit + Duration::from_secs(2),
        async || {
            n += 1;
            let key = format!("after-{n}");
            write(&key).await;
            redis_get(server, &format!("{prefix}v:{{{key}}}"))
                .await
                .is_some()
        },
    )
    .await;
    assert!(
        back.elapsed() < limit,
        "the tier came back in {:?}",
        back.elapsed()
    );
}

async fn redis_get(server: &RedisServer, key: &str) -> Option<Vec<u8>> {
    let mut c = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    c.get(key).await.unwrap()
}

/// The keys matching `pattern` on this one server (one node of a cluster).
async fn keys_on(server: &RedisServer, pattern: &str) -> Vec<String> {
    let mut c = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    c.keys(pattern).await.unwrap()
}

/// A server that accepts connections and never says a word.
async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (url, task)
}

/// A proxy to `server` that holds each new connection for `delay` before passing
/// anything on, as a slow handshake would.
async fn slow_to_connect(
    server: &RedisServer,
    delay: Duration,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let port = server.port;
    let task = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_sharing_redis_run_the_loader_once_for_300_concurrent_callers() {
    let server = RedisServer::start();
    let servers: Vec<Cache<String>> = (0..3)
        .map(|_| cache(tier(&server.url(), "stampede:")))
        .collect();
    let runs = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..300)
        .map(|i| {
            let (cache, loader) = (
                servers[i % 3].clone(),
                counted(&runs, Duration::from_millis(300), "v"),
            );
            tokio::spawn(async move { cache.get_or_load("cold", loader).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), "v");
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "one load in the whole cluster"
    );
    let remote_hits: u64 = servers.iter().map(|c| c.stats().remote_hits).sum();
    assert_eq!(
        remote_hits, 2,
        "the other two servers read the winner's value from redis"
    );
    assert!(redis_get(&server, "stampede:v:{cold}").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_from_redis_is_copied_into_memory_with_its_remaining_lifetime() {
    let server = RedisServer::start();
    let a = cache(tier(&server.url(), "copy:"));
    let b = cache(tier(&server.url(), "copy:"));
    let loaded = Loaded::new("v".to_string())
        .fresh_for(Duration::from_secs(2))
        .ttl(Duration::from_secs(3));
    a.get_or_load("k", move || async move { Ok::<_, std::io::Error>(loaded) })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(
        b.get_or_load("k", counted(&runs, Duration::ZERO, "b's own"))
            .await
            .unwrap(),
        "v"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let entry = b.peek("k").expect("copied into b's memory");
    let left = entry
        .stale_until()
        .saturating_duration_since(tokio::time::Instant::now());
    assert!(
        left <= Duration::from_millis(2600) && left >= Duration::from_millis(2000),
        "{left:?} left"
    );
    let ttl: i64 = {
        let mut c = server
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        c.pttl("copy:v:{k}").await.unwrap()
    };
    assert!(
        (1500..=3000).contains(&ttl),
        "redis keys expire with the entry (PTTL {ttl} ms)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_lock_winner_dying_mid_load_is_taken_over_after_its_lease() {
    let server = RedisServer::start();
    // Server A runs on its own runtime, which is torn down mid-load: a crash.
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let a = {
        let _guard = doomed.enter();
        cache(tier(&server.url(), "takeover:").lock_lease(Duration::from_secs(1)))
    };
    doomed.spawn(async move {
        a.get_or_load("k", || async {
            std::future::pending::<()>().await;
            Ok::<_, std::io::Error>("never".to_string())
        })
        .await
    });
    eventually(
        "server A holds the lock",
        Duration::from_secs(5),
        async || redis_get(&server, "takeover:lock:{k}").await.is_some(),
    )
    .await;

    let runs = Arc::new(AtomicUsize::new(0));
    let others: Vec<_> = (0..20)
        .map(|i| {
            let c = cache(tier(&server.url(), "takeover:").lock_lease(Duration::from_secs(1)));
            let loader = counted(
                &runs,
                Duration::from_millis(50),
                &format!("taken over by {i}"),
            );
            tokio::spawn(async move { c.get_or_load("k", loader).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    doomed.shutdown_background();

    let started = Instant::now();
    let mut values = Vec::new();
    for other in others {
        let value = tokio::time::timeout(Duration::from_secs(10), other)
            .await
            .expect("no waiter hangs");
        values.push(value.unwrap().unwrap());
    }
    values.dedup();
    assert_eq!(
        values.len(),
        1,
        "everyone got the one takeover's value: {values:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one server took over");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unshared_error_stays_on_its_server_and_other_servers_load_for_themselves() {
    let server = RedisServer::start();
    let a = cache(tier(&server.url(), "unshared:").error_ttl(Duration::from_secs(60)));
    let b = cache(tier(&server.url(), "unshared:").error_ttl(Duration::from_secs(60)));
    let failing = tokio::spawn(async move {
        a.get_or_load("k", || async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Err::<String, _>(corral::Unshared::new(std::io::Error::other("503 here")))
        })
        .await
    });
    eventually("a holds the lock", Duration::from_secs(5), async || {
        redis_get(&server, "unshared:lock:{k}").await.is_some()
    })
    .await;
    let runs = Arc::new(AtomicUsize::new(0));
    // b waits for a's load, finds no error shared, and loads itself.
    let value = b
        .get_or_load("k", counted(&runs, Duration::ZERO, "b"))
        .await;
    let err = failing.await.unwrap().unwrap_err();
    assert!(err.is_unshared(), "a's own waiters get the error: {err:?}");
    assert_eq!(value.unwrap(), "b");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "b loaded for itself");
    assert!(redis_get(&server, "unshared:err:{k}").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_loader_error_reaches_other_servers_waiters_for_a_short_time_only() {
    let server = RedisServer::start();
    let short = |url: &str| tier(url, "errors:").error_ttl(Duration::from_millis(500));
    let a = cache(short(&server.url()));
    let b = cache(short(&server.url()));
    let failing = tokio::spawn(async move {
        a.get_or_load("k", || async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Err::<String, _>(std::io::Error::other("origin exploded"))
        })
        .await
    });
    eventually("a holds the lock", Duration::from_secs(5), async || {
        redis_get(&server, "errors:lock:{k}").await.is_some()
    })
    .await;
    let runs = Arc::new(AtomicUsize::new(0));
    let err = b
        .get_or_load("k", counted(&runs, Duration::ZERO, "b"))
        .await
        .unwrap_err();
    let Error::Load(source) = &err else {
        panic!("{err:?}")
    };
    assert!(source.to_string().contains("origin exploded"), "{source}");
    assert!(source.downcast_ref::<RemoteLoadError>().is_some());
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "b did not load while a's error stood"
    );
    assert!(failing.await.unwrap().is_err());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        b.get_or_load("k", counted(&runs, Duration::ZERO, "b"))
            .await
            .unwrap(),
        "b"
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "after error_ttl b loads itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_is_a_miss_and_is_counted() {
    let server = RedisServer::start();
    let mut c = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = c
        .set("corrupt:v:{k}", b"\x01garbage that is not a record")
        .await
        .unwrap();
    let _: () = c.set("corrupt:v:{short}", b"x").await.unwrap();
    let cache = cache(tier(&server.url(), "corrupt:"));
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(
        cache
            .get_or_load("k", counted(&runs, Duration::ZERO, "fresh"))
            .await
            .unwrap(),
        "fresh"
    );
    assert_eq!(
        cache
            .get_or_load("short", counted(&runs, Duration::ZERO, "fresh"))
            .await
            .unwrap(),
        "fresh"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    // Each corrupt record is counted every time it is read (the lock winner reads twice).
    assert!(
        cache.stats().remote_decode_errors >= 2,
        "{:?}",
        cache.stats()
    );
    let rewritten = redis_get(&server, "corrupt:v:{k}").await.unwrap();
    assert_eq!(
        rewritten[0], 3,
        "the load replaced the corrupt record with a valid one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidating_on_one_server_stops_every_server_serving_the_value() {
    let server = RedisServer::start();
    let servers: Vec<Cache<String>> = (0..3)
        .map(|_| cache(tier(&server.url(), "inval:")))
        .collect();
    let runs = Arc::new(AtomicUsize::new(0));
    for s in &servers {
        assert_eq!(
            s.get_or_load("k", counted(&runs, Duration::ZERO, "old"))
                .await
                .unwrap(),
            "old"
        );
        assert!(s.get("k").is_some());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    servers[0].invalidate("k").await;
    assert!(redis_get(&server, "inval:v:{k}").await.is_none());
    for s in &servers[1..] {
        let s = s.clone();
        eventually(
            "the other servers dropped their copy",
            Duration::from_secs(3),
            async || s.get("k").is_none(),
        )
        .await;
    }
    assert_eq!(
        servers[2]
            .get_or_load("k", counted(&runs, Duration::ZERO, "new"))
            .await
            .unwrap(),
        "new"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_deletes_only_this_prefix_and_clears_every_servers_memory() {
    let server = RedisServer::start();
    let (a1, a2, b) = (
        cache(tier(&server.url(), "a:")),
        cache(tier(&server.url(), "a:")),
        cache(tier(&server.url(), "b:")),
    );
    let runs = Arc::new(AtomicUsize::new(0));
    for i in 0..50 {
        let key = format!("k{i}");
        a1.get_or_load(&key, counted(&runs, Duration::ZERO, "a"))
            .await
            .unwrap();
        a2.get_or_load(&key, counted(&runs, Duration::ZERO, "a"))
            .await
            .unwrap();
        b.get_or_load(&key, counted(&runs, Duration::ZERO, "b"))
            .await
            .unwrap();
    }
    a1.clear().await;
    let mut c = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let a_keys: Vec<String> = c.keys("a:*").await.unwrap();
    let b_keys: Vec<String> = c.keys("b:*").await.unwrap();
    assert!(a_keys.is_empty(), "{a_keys:?}");
    assert_eq!(b_keys.len(), 50);
    eventually(
        "a2 cleared its memory",
        Duration::from_secs(3),
        async || a2.get("k7").is_none(),
    )
    .await;
    assert!(b.get("k7").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_starts_and_serves_while_redis_is_unreachable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let cache = cache(tier(&url, "down:").command_timeout(Duration::from_millis(200)));
    let runs = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    for i in 0..20 {
        let v = cache
            .get_or_load(&format!("k{i}"), counted(&runs, Duration::ZERO, "local"))
            .await
            .unwrap();
        assert_eq!(v, "local");
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the breaker keeps calls fast: {:?}",
        started.elapsed()
    );
    let stats = cache.stats();
    assert!(
        stats.remote_errors > 0 && stats.remote_breaker_open,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_slower_than_the_command_timeout_is_made_within_the_connect_timeout() {
    let server = RedisServer::start();
    let (url, _proxy) = slow_to_connect(&server, Duration::from_millis(1500)).await;
    let build = || {
        cache(
            tier(&url, "slow:")
                .command_timeout(Duration::from_millis(500))
                .connect_timeout(Duration::from_secs(10)),
        )
    };
    let (a, b) = (build(), build());
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(
        a.get_or_load("k", counted(&runs, Duration::ZERO, "shared"))
            .await
            .unwrap(),
        "shared"
    );
    assert_eq!(
        a.stats().remote_errors,
        0,
        "connecting was not cut off by the command timeout: {:?}",
        a.stats()
    );
    assert!(redis_get(&server, "slow:v:{k}").await.is_some());
    assert_eq!(
        b.get_or_load("k", counted(&runs, Duration::ZERO, "b's own"))
            .await
            .unwrap(),
        "shared"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_fails_a_call_after_the_connect_timeout_and_memory_serves() {
    let (url, _silent) = silent_server().await;
    let connect_timeout = Duration::from_millis(800);
    let cache = cache(
        tier(&url, "silent:")
            .command_timeout(Duration::from_millis(100))
            .connect_timeout(connect_timeout)
            .breaker(3, Duration::from_secs(60)),
    );
    let runs = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    assert_eq!(
        cache
            .get_or_load("k", counted(&runs, Duration::ZERO, "local"))
            .await
            .unwrap(),
        "local"
    );
    let took = started.elapsed();
    assert!(
        took >= connect_timeout.mul_f32(0.75) && took < Duration::from_secs(10),
        "waited for the connection its connect timeout, not its command timeout: {took:?}"
    );
    let started = Instant::now();
    for i in 0..20 {
        let v = cache
            .get_or_load(&format!("k{i}"), counted(&runs, Duration::ZERO, "local"))
            .await
            .unwrap();
        assert_eq!(v, "local");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "no call hangs: {:?}",
        started.elapsed()
    );
    assert_eq!(
        cache.get("k").as_deref(),
        Some("local"),
        "served from memory"
    );
    let stats = cache.stats();
    assert!(
        stats.remote_errors > 0 && stats.remote_breaker_open,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_redis_during_a_stream_of_calls_fails_none_and_the_tier_comes_back() {
    let mut server = RedisServer::start();
    let build = |url: &str| {
        Cache::<String>::builder()
            .fresh_for(Duration::from_millis(300))
            .redis(
                tier(url, "chaos:")
                    .command_timeout(Duration::from_millis(150))
                    .breaker(3, Duration::from_millis(500))
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let servers = [build(&server.url()), build(&server.url())];
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let streams: Vec<_> = (0..4)
        .map(|t| {
            let (cache, failures, done) = (servers[t % 2].clone(), failures.clone(), done.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let mut i = 0usize;
                while started.elapsed() < Duration::from_secs(4) {
                    let key = format!("k{}", i % 40);
                    let value = format!("v{}", i % 40);
                    let expected = value.clone();
                    match cache
                        .get_or_load(&key, move || async move { Ok::<_, std::io::Error>(value) })
                        .await
                    {
                        Ok(v) if v == expected => {}
                        _ => {
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.restart();
    for s in streams {
        s.await.unwrap();
    }
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "of {} calls",
        done.load(Ordering::SeqCst)
    );
    assert!(
        servers[0].stats().remote_errors > 0,
        "redis was really down for a while"
    );

    // After the restart the tier is used again, without restarting anything.
    let cache = &servers[0];
    tier_comes_back(&server, "chaos:", Duration::from_secs(3), async |key| {
        cache
            .get_or_load(key, || async { Ok::<_, std::io::Error>("x".to_string()) })
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_while_revalidate_runs_one_refresh_per_cluster() {
    let server = RedisServer::start();
    let build = || {
        Cache::<String>::builder()
            .fresh_for(Duration::from_millis(500))
            .ttl(Duration::from_secs(60))
            .redis(tier(&server.url(), "swr:").build().unwrap())
            .build()
            .unwrap()
    };
    let servers = [build(), build(), build()];
    let runs = Arc::new(AtomicUsize::new(0));
    for s in &servers {
        s.get_or_load("k", counted(&runs, Duration::ZERO, "v1"))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let refreshes = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..90)
        .map(|i| {
            let (cache, loader) = (
                servers[i % 3].clone(),
                counted(&refreshes, Duration::from_millis(200), "v2"),
            );
            tokio::spawn(async move { cache.get_or_load("k", loader).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), "v1", "stale served at once");
    }
    for s in &servers {
        let s = s.clone();
        eventually(
            "every server has the refreshed value",
            Duration::from_secs(5),
            async || s.get("k").as_deref() == Some("v2"),
        )
        .await;
    }
    assert_eq!(
        refreshes.load(Ordering::SeqCst),
        1,
        "one refresh in the whole cluster"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bytes_cross_untouched_and_a_unix_socket_works() {
    let dir = std::env::temp_dir().join(format!("corral-sock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("redis.sock");
    let socket_arg = socket.to_str().unwrap().to_owned();
    let _server =
        RedisServer::start_with_args(&["--unixsocket", &socket_arg, "--unixsocketperm", "700"]);
    let url = format!("redis+unix://{socket_arg}");
    let build = || {
        Cache::<Bytes>::builder()
            .redis(
                RedisTier::builder(&url)
                    .prefix("raw:")
                    .codec(Raw)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    let payload = Bytes::from_static(b"\x00\x01binary\xff");
    let sent = payload.clone();
    a.get_or_load("blob", move || async move { Ok::<_, std::io::Error>(sent) })
        .await
        .unwrap();
    let got = b
        .get_or_load("blob", || async { Ok::<_, std::io::Error>(Bytes::new()) })
        .await
        .unwrap();
    assert_eq!(got, payload);
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let record: Vec<u8> = c.get("raw:v:{blob}").await.unwrap();
    assert_eq!(
        &record[50..],
        &payload[..],
        "the payload is the bytes themselves (after an untagged record's header)"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_three_master_cluster_shares_one_load_per_key() {
    let cluster = RedisCluster::start();
    let build = || {
        Cache::<String>::builder()
            .redis(
                RedisTier::cluster_builder(cluster.urls())
                    .prefix("cl:")
                    .lock_lease(Duration::from_secs(2))
                    .command_timeout(Duration::from_millis(500))
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let servers = [build(), build(), build()];
    let runs = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..150)
        .map(|i| {
            let key = format!("key-{}", i % 5);
            let (cache, loader) = (
                servers[i % 3].clone(),
                counted(
                    &runs,
                    Duration::from_millis(200),
                    &format!("value of {key}"),
                ),
            );
            tokio::spawn(async move { (key.clone(), cache.get_or_load(&key, loader).await) })
        })
        .collect();
    for call in calls {
        let (key, value) = call.await.unwrap();
        assert_eq!(value.unwrap(), format!("value of {key}"));
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        5,
        "one load per key across the cluster"
    );
    servers[0].invalidate("key-3").await;
    let (s1, s2) = (servers[1].clone(), servers[2].clone());
    eventually(
        "the invalidation reached every server",
        Duration::from_secs(3),
        async || s1.get("key-3").is_none() && s2.get("key-3").is_none(),
    )
    .await;
    servers[0].clear().await;
    let mut keys = 0;
    for node in &cluster.nodes {
        let mut c = node
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        keys += c.keys::<_, Vec<String>>("cl:v:*").await.unwrap().len();
    }
    assert_eq!(keys, 0, "clear scanned every master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_given_one_node_purges_and_clears_the_keys_on_every_master() {
    let cluster = RedisCluster::start();
    let seed = cluster.nodes[0].url();
    let build = || {
        Cache::<String>::builder()
            .fresh_for(Duration::from_secs(60))
            .redis(
                RedisTier::cluster_builder([seed.as_str()])
                    .prefix("one:")
                    .command_timeout(Duration::from_millis(500))
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    // 200 keys in each of two folders: their hash tags spread them over the slots of
    // all three masters.
    for i in 0..200 {
        for folder in ["/p/", "/q/"] {
            let key = format!("{folder}{i}");
            a.insert(&key, key.clone()).await;
        }
    }
    let runs = Arc::new(AtomicUsize::new(0));
    for key in ["/p/1", "/q/1"] {
        b.get_or_load(key, counted(&runs, Duration::ZERO, "b's own"))
            .await
            .unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0, "b read a's values");
    for node in &cluster.nodes {
        assert!(
            !keys_on(node, "one:v:{/p/*").await.is_empty()
                && !keys_on(node, "one:v:{/q/*").await.is_empty(),
            "every master holds keys of both folders (node {})",
            node.port
        );
    }

    assert_eq!(a.invalidate_prefix("/p/").await, 200);
    let mut q_keys = 0;
    for node in &cluster.nodes {
        let left = keys_on(node, "one:v:{/p/*").await;
        assert!(left.is_empty(), "node {}: {left:?}", node.port);
        q_keys += keys_on(node, "one:v:{/q/*").await.len();
    }
    assert_eq!(q_keys, 200, "the other folder is untouched");
    eventually(
        "b dropped its /p/ copy",
        Duration::from_secs(3),
        async || b.get("/p/1").is_none(),
    )
    .await;
    assert!(b.get("/q/1").is_some());

    a.clear().await;
    for node in &cluster.nodes {
        let left = keys_on(node, "one:*").await;
        assert!(left.is_empty(), "node {}: {left:?}", node.port);
    }
}

#[cfg(feature = "redis-tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_server_is_reached_with_rediss_and_a_private_ca() {
    let ca = redis_server::PrivateCa::new();
    let tls_port = redis_server::free_port();
    let _server = RedisServer::start_with_args(&ca.server_args(tls_port));
    let url = format!("rediss://localhost:{tls_port}");
    let build = || {
        Cache::<String>::builder()
            .redis(
                RedisTier::builder(&url)
                    .prefix("tls:")
                    .tls_root_certificates(ca.pem())
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(
        a.get_or_load("k", counted(&runs, Duration::ZERO, "over tls"))
            .await
            .unwrap(),
        "over tls"
    );
    assert_eq!(
        b.get_or_load("k", counted(&runs, Duration::ZERO, "b"))
            .await
            .unwrap(),
        "over tls"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        b.stats().remote_hits,
        1,
        "b read a's value through rediss://"
    );
}

#[cfg(feature = "redis-tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_cluster_with_a_private_ca_is_used_and_cleared_through_one_node() {
    let ca = redis_server::PrivateCa::new();
    let cluster = RedisCluster::start_tls(&ca);
    let seed = format!("rediss://127.0.0.1:{}", cluster.tls_ports[0]);
    let build = || {
        Cache::<String>::builder()
            .fresh_for(Duration::from_secs(60))
            .redis(
                RedisTier::cluster_builder([seed.as_str()])
                    .prefix("tlscl:")
                    .tls_root_certificates(ca.pem())
                    .command_timeout(Duration::from_millis(500))
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    for i in 0..200 {
        a.insert(&format!("k{i}"), "over tls".to_string()).await;
    }
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(
        b.get_or_load("k7", counted(&runs, Duration::ZERO, "b's own"))
            .await
            .unwrap(),
        "over tls"
    );
    assert_eq!(a.stats().remote_errors, 0, "{:?}", a.stats());
    for node in &cluster.nodes {
        assert!(
            !keys_on(node, "tlscl:v:*").await.is_empty(),
            "every master holds some keys (node {})",
            node.port
        );
    }
    a.clear().await;
    for node in &cluster.nodes {
        let left = keys_on(node, "tlscl:*").await;
        assert!(left.is_empty(), "node {}: {left:?}", node.port);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_a_prefix_reaches_redis_and_every_server() {
    let server = RedisServer::start();
    let (a, b) = (
        cache(tier(&server.url(), "purge:")),
        cache(tier(&server.url(), "purge:")),
    );
    let runs = Arc::new(AtomicUsize::new(0));
    for key in ["/docs/1", "/docs/2", "/blog/1"] {
        a.get_or_load(key, counted(&runs, Duration::ZERO, key))
            .await
            .unwrap();
        b.get_or_load(key, counted(&runs, Duration::ZERO, "b"))
            .await
            .unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(a.invalidate_prefix("/docs/").await, 2);
    let mut c = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut left: Vec<String> = c.keys("purge:v:*").await.unwrap();
    left.sort();
    assert_eq!(left, ["purge:v:{/blog/1}"]);
    eventually(
        "b dropped its /docs/ copies",
        Duration::from_secs(3),
        async || b.get("/docs/1").is_none() && b.get("/docs/2").is_none(),
    )
    .await;
    assert_eq!(b.get("/blog/1").as_deref(), Some("/blog/1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_probe_does_not_switch_the_tier_off() {
    let mut server = RedisServer::start();
    let cool_down = Duration::from_millis(300);
    let cache = cache(
        tier(&server.url(), "probe:")
            .command_timeout(Duration::from_millis(200))
            .breaker(2, cool_down),
    );
    cache.insert("before", "v".to_string()).await;
    assert!(redis_get(&server, "probe:v:{before}").await.is_some());
    server.kill();
    let mut n = 0;
    eventually("the breaker opens", Duration::from_secs(5), async || {
        n += 1;
        cache.insert(&format!("down-{n}"), "v".to_string()).await;
        cache.stats().remote_breaker_open
    })
    .await;
    server.restart();

    // A call after the cool-down probes Redis, and its caller gives up mid-probe. (A
    // probe can also end on its first poll, failing at once on the connection that
    // died; then the next one is cut off.)
    let mut attempts = 0;
    loop {
        tokio::time::sleep(cool_down + Duration::from_millis(100)).await;
        let cut_off =
            tokio::time::timeout(Duration::ZERO, cache.insert("cut-off", "v".to_string())).await;
        if cut_off.is_err() {
            break;
        }
        attempts += 1;
        assert!(attempts < 10, "no probe was ever in flight");
    }

    tier_comes_back(&server, "probe:", Duration::from_secs(2), async |key| {
        cache.insert(key, "v".to_string()).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_load_running_across_an_invalidation_does_not_bring_its_value_back_in_redis() {
    let server = RedisServer::start();
    let (a, b) = (
        cache(tier(&server.url(), "inflight:")),
        cache(tier(&server.url(), "inflight:")),
    );
    let runs = Arc::new(AtomicUsize::new(0));
    let slow = {
        let (a, loader) = (a.clone(), counted(&runs, Duration::from_millis(500), "old"));
        tokio::spawn(async move { a.get_or_load("k", loader).await })
    };
    eventually("a holds the lock", Duration::from_secs(5), async || {
        redis_get(&server, "inflight:lock:{k}").await.is_some()
    })
    .await;
    b.invalidate("k").await;
    assert_eq!(
        slow.await.unwrap().unwrap(),
        "old",
        "a's own caller still gets the value it loaded"
    );
    assert!(
        redis_get(&server, "inflight:v:{k}").await.is_none(),
        "the load that the invalidation overtook stored nothing in redis"
    );
    let c = cache(tier(&server.url(), "inflight:"));
    assert_eq!(
        c.get_or_load("k", counted(&runs, Duration::ZERO, "new"))
            .await
            .unwrap(),
        "new"
    );
    assert_eq!(
        b.get_or_load("k", counted(&runs, Duration::ZERO, "b's own"))
            .await
            .unwrap(),
        "new",
        "b reads the value loaded after its invalidation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_a_prefix_leaves_a_cache_whose_prefix_extends_it_alone() {
    let server = RedisServer::start();
    let (shop, eu) = (
        cache(tier(&server.url(), "shop:")),
        cache(tier(&server.url(), "shop:eu:")),
    );
    let runs = Arc::new(AtomicUsize::new(0));
    for key in ["k1", "k2", "other"] {
        shop.get_or_load(key, counted(&runs, Duration::ZERO, "shop"))
            .await
            .unwrap();
        eu.get_or_load(key, counted(&runs, Duration::ZERO, "eu"))
            .await
            .unwrap();
    }
    let mut c = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys = async |c: &mut redis::aio::MultiplexedConnection| {
        let mut keys: Vec<String> = c.keys("shop:*").await.unwrap();
        keys.sort();
        keys
    };
    let eu_keys = ["shop:eu:v:{k1}", "shop:eu:v:{k2}", "shop:eu:v:{other}"];

    shop.invalidate_prefix("k").await;
    assert_eq!(
        keys(&mut c).await,
        [&eu_keys[..], &["shop:v:{other}"]].concat()
    );
    shop.clear().await;
    assert_eq!(
        keys(&mut c).await,
        eu_keys,
        "only shop:'s own keys are gone"
    );
    assert_eq!(eu.get("k1").as_deref(), Some("eu"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_refreshes_of_a_hot_key_are_the_clusters_one_load() {
    let server = RedisServer::start();
    let caches: Vec<Cache<String>> = (0..3)
        .map(|_| {
            Cache::builder()
                .fresh_for(Duration::from_secs(1))
                .ttl(Duration::from_secs(3))
                .early_refresh(1.0)
                .redis(tier(&server.url(), "early:").build().expect("valid tier"))
                .build()
                .expect("valid cache")
        })
        .collect();
    let runs = Arc::new(AtomicUsize::new(0));
    let load = Duration::from_millis(50);
    caches[0]
        .get_or_load("hot", counted(&runs, load, "v"))
        .await
        .unwrap();
    // Three servers read the key every 10 ms between them, for four seconds.
    let end = Instant::now() + Duration::from_secs(4);
    let mut turn = 0;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
        turn += 1;
        caches[turn % 3]
            .get_or_load("hot", counted(&runs, load, "v"))
            .await
            .unwrap();
    }
    let runs = runs.load(Ordering::SeqCst);
    // Four lifetimes of a second (each refreshed a little early): one load each for
    // the cluster, not one per server.
    assert!(
        (4..=8).contains(&runs),
        "{runs} loads in 4 s over 3 servers"
    );
    let misses: u64 = caches.iter().map(|c| c.stats().misses).sum();
    assert_eq!(misses, 3, "each server missed once, at its first read");
}
