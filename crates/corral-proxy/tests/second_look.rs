//! Found by an attacker's second look at the pool routing, the stored form and the
//! access log (each test failed before its fix, or guards what held): access lines
//! stay JSON and bounded in memory, shutdown never hangs on a stuck log, `OPTIONS *`
//! is never forwarded as another request, and a short pool secret is refused.

mod support;

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use corral_http::Body;
use corral_proxy::access_log::{AccessLog, Entry, Logged};
use corral_proxy::config::LogFormat;
use support::raw_origin::{Answer, BodyFirst, RawOrigin, response};
use support::{Killable, put_peers, start_logging_to};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whatever request target a client sends, a JSON access line stays JSON (bytes of
/// 0x80 and up never reach it: the parsers refuse them with a 400).
#[tokio::test]
async fn json_access_log_lines_stay_json_whatever_the_request_target() {
    let origin = RawOrigin::start(BodyFirst::Yes, |_| {
        Answer::Write(response("200 OK", "cache-control: max-age=60\r\n", "ok"))
    })
    .await;
    let captured = Captured::default();
    let log = AccessLog::to_writer(LogFormat::Json, captured.clone()).unwrap();
    let proxy = start_logging_to(
        &format!("upstream = \"http://{}\"\naccess-log = true\n", origin.addr),
        log.clone(),
    )
    .await;
    // HTTP/1.1 (httparse) refuses such bytes; HTTP/2's `:path` is parsed by `http::Uri`.
    let Ok(path) = http::uri::PathAndQuery::try_from(&b"/caf\xc3\xa9/\xff\xfe"[..]) else {
        return; // refused by `http` itself: nothing reaches the log
    };
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut h2, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::builder()
        .method("GET")
        .uri(format!("http://site.test{}", "/x"))
        .body(())
        .unwrap();
    let mut parts = request.into_parts().0;
    let mut up = parts.uri.clone().into_parts();
    up.path_and_query = Some(path);
    parts.uri = http::Uri::from_parts(up).unwrap();
    let request = http::Request::from_parts(parts, ());
    let (response, _) = h2.send_request(request, true).unwrap();
    let response = response.await.unwrap();
    let reply = response.status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while captured.0.lock().unwrap().is_empty() && Instant::now() < deadline {
        log.flush();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bytes = captured.0.lock().unwrap().clone();
    assert!(!bytes.is_empty(), "a line was written; reply {reply:?}");
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(line);
        assert!(
            parsed.is_ok(),
            "an access line that is not JSON: {:?} ({:?})",
            String::from_utf8_lossy(line),
            parsed.err()
        );
    }
}

/// A writer that blocks (stderr to a pipe nobody reads) until released.
#[derive(Clone, Default)]
struct Stuck(Arc<(Mutex<bool>, Condvar)>);

impl Write for Stuck {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let (released, cv) = &*self.0;
        let mut r = released.lock().unwrap();
        while !*r {
            r = cv.wait(r).unwrap();
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// While stderr blocks, at most `MAX_BUFFERED` bytes of access lines wait in memory;
/// the rest are dropped and counted (a flood must not grow the process without limit).
#[test]
fn access_log_buffer_is_bounded_while_the_writer_blocks() {
    let stuck = Stuck::default();
    let log = AccessLog::to_writer(LogFormat::Text, stuck.clone()).unwrap();
    // Let the writer thread take the first line and block on it.
    drop(Logged::new(
        Body::empty(),
        Some((
            Entry {
                method: http::Method::GET,
                uri: "/first".parse().unwrap(),
                status: 200,
                cache: None,
                started: Instant::now(),
            },
            log.clone(),
        )),
    ));
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_bytes();
    let long = format!("/{}", "a".repeat(900));
    for _ in 0..200_000 {
        drop(Logged::new(
            Body::empty(),
            Some((
                Entry {
                    method: http::Method::GET,
                    uri: long.parse().unwrap(),
                    status: 200,
                    cache: None,
                    started: Instant::now(),
                },
                log.clone(),
            )),
        ));
    }
    let grown = rss_bytes().saturating_sub(before);
    // Release the writer so the test process can end.
    {
        let (released, cv) = &*stuck.0;
        *released.lock().unwrap() = true;
        cv.notify_all();
    }
    assert!(
        grown < 64 << 20,
        "the access log buffered {} MiB while its writer was blocked",
        grown >> 20
    );
}

const SECRET: &str = "review-pool-secret";

/// `OPTIONS *` (asterisk form) names no resource: in a pool it is served by the member
/// it reached, never routed by a made-up URL (`http://host*`) to an owner that would
/// send the origin an `OPTIONS /` for another Host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_form_is_not_rewritten_into_another_request_by_the_pool() {
    let origin = RawOrigin::start(BodyFirst::Yes, |_| {
        Answer::Write(response("200 OK", "", "ok"))
    })
    .await;
    let toml = format!(
        "upstream = \"http://{}\"\nhost = \"keep\"\npeer-secret = \"{SECRET}\"\n",
        origin.addr
    );
    let peers = vec![Killable::start(&toml).await, Killable::start(&toml).await];
    let urls: Vec<String> = peers.iter().map(|p| format!("http://{}", p.addr)).collect();
    for peer in &peers {
        assert_eq!(put_peers(peer.admin.unwrap(), &urls).await.status, 200);
    }
    for n in 0..16 {
        let request =
            format!("OPTIONS * HTTP/1.1\r\nHost: site-{n}.test\r\nConnection: close\r\n\r\n");
        let _ = support::raw(peers[0].addr, request.as_bytes()).await;
    }
    let seen = origin.seen();
    for s in &seen {
        assert!(
            !(s.method == "OPTIONS" && s.target == "/"),
            "the origin got `OPTIONS /` (Host {:?}) for a client's `OPTIONS *`: {seen:#?}",
            s.header("host")
        );
    }
}

/// The peer secret makes a request a trusted proxy's (its `X-Forwarded-Host` and the
/// like reach the origin, outside the cache key) and opens the peer endpoint: like
/// `admin-token`, it must be 16 bytes at least.
#[test]
fn a_short_peer_secret_is_refused_as_a_short_admin_token_is() {
    let table: toml::Table = "peer-secret = \"a\"\nlisten = \"127.0.0.1:0\""
        .parse()
        .unwrap();
    assert!(
        corral_proxy::Config::from_toml(table).is_err(),
        "a one-byte peer-secret is accepted"
    );
}

/// When the last handle goes while the writer thread is stuck on stderr, the drop
/// returns (shutdown never hangs on the log).
#[test]
fn dropping_the_access_log_does_not_hang_while_the_writer_blocks() {
    let stuck = Stuck::default();
    let log = AccessLog::to_writer(LogFormat::Text, stuck.clone()).unwrap();
    let line = || Entry {
        method: http::Method::GET,
        uri: "/x".parse().unwrap(),
        status: 200,
        cache: None,
        started: Instant::now(),
    };
    drop(Logged::new(Body::empty(), Some((line(), log.clone()))));
    std::thread::sleep(Duration::from_millis(200));
    drop(Logged::new(Body::empty(), Some((line(), log.clone()))));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(log);
        let _ = done_tx.send(());
    });
    let finished = done_rx.recv_timeout(Duration::from_secs(2)).is_ok();
    {
        let (released, cv) = &*stuck.0;
        *released.lock().unwrap() = true;
        cv.notify_all();
    }
    assert!(
        finished,
        "dropping the last AccessLog blocked on the stuck writer"
    );
}
