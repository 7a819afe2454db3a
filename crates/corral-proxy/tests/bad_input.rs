//! Bad input and failing origins: a clear status and reason, never a panic, a hang or
//! unbounded memory.

#[path = "../../corral-http/tests/support/mod.rs"]
mod origin;
mod support;

use std::time::{Duration, Instant};

use origin::{Origin, Reply};
use support::{get, raw, start};

#[tokio::test]
async fn a_malformed_request_gets_a_400() {
    let proxy = start("upstream = \"http://127.0.0.1:9\"").await;
    let reply = raw(proxy.addr, b"GARBAGE\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    let reply = raw(
        proxy.addr,
        b"GET /path HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
}

#[tokio::test]
async fn oversized_headers_get_a_431_and_are_not_buffered_past_the_limit() {
    let proxy = start("upstream = \"http://127.0.0.1:9\"\nmax-header-bytes = \"16KiB\"").await;
    let mut request = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..200 {
        request.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "a".repeat(200)).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let reply = raw(proxy.addr, &request).await;
    assert!(
        reply.starts_with("HTTP/1.1 431"),
        "{}",
        &reply[..reply.len().min(200)]
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let proxy = start("upstream = \"http://127.0.0.1:9\"\nheader-read-timeout = \"300ms\"").await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was closed, not left hanging");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn silent_and_idle_connections_do_not_hold_the_connection_slots() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = Origin::start().await;
    origin.route("/", |_, _| Reply::ok("served"));
    let proxy = start(&format!(
        "upstream = \"http://{}\"\nmax-connections = 3\nheader-read-timeout = \"300ms\"",
        origin.addr
    ))
    .await;
    let connect = || tokio::net::TcpStream::connect(proxy.addr);
    // One socket that says nothing, one that starts the HTTP/2 preface and stops,
    // and one keep-alive connection left idle after its request.
    let silent = connect().await.unwrap();
    let mut partial = connect().await.unwrap();
    partial.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let mut idle = connect().await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    for mut stream in [silent, partial, idle] {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "closed by the proxy, not left open");
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    // The slots are free again: a new client is served.
    let got = get(proxy.addr, &format!("http://{}/", proxy.addr), &[]).await;
    assert_eq!((got.status.as_u16(), got.text()), (200, "served"));
}

#[tokio::test]
async fn an_unreachable_origin_is_a_502() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let proxy = start(&format!("upstream = \"http://{addr}\"")).await;
    let got = get(proxy.addr, "/x", &[]).await;
    assert_eq!(got.status, 502);
    assert_eq!(
        got.text(),
        "connection refused by the origin\n",
        "a reverse proxy does not name its origin to clients"
    );
}

#[tokio::test]
async fn an_origin_that_does_not_answer_in_time_is_a_504() {
    let origin = Origin::start().await;
    origin.route("/slow", |_, _| {
        Reply::ok("late").delay(Duration::from_secs(5))
    });
    let proxy = start(&format!(
        "upstream = \"http://{}\"\nfetch-timeout = \"300ms\"",
        origin.addr
    ))
    .await;
    let started = Instant::now();
    let got = get(proxy.addr, "/slow", &[]).await;
    assert_eq!(got.status, 504);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_large_upload_streams_through_to_the_origin() {
    let origin = Origin::start().await;
    origin.route("/upload", |req, _| {
        Reply::ok(&format!("{} received", req.method))
    });
    let proxy = start(&format!("upstream = \"http://{}\"", origin.addr)).await;
    let body = bytes::Bytes::from(vec![b'x'; 20 << 20]);
    let request = http::Request::post(format!("http://{}/upload", proxy.addr))
        .header("host", "site")
        .body(http_body_util::Full::new(body))
        .unwrap();
    let got = support::send(proxy.addr, request).await;
    assert_eq!((got.status.as_u16(), got.text()), (200, "POST received"));
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish_and_refuses_new_ones() {
    let origin = Origin::start().await;
    origin.route("/long", |_, _| {
        Reply::ok("finished").delay(Duration::from_millis(500))
    });
    let mut proxy = start(&format!(
        "upstream = \"http://{}\"\nshutdown-grace = \"5s\"",
        origin.addr
    ))
    .await;
    let addr = proxy.addr;
    let in_flight = tokio::spawn(async move { get(addr, "/long", &[]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.begin_stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections"
    );
    let got = in_flight.await.unwrap();
    assert_eq!((got.status.as_u16(), got.text()), (200, "finished"));
    tokio::time::timeout(Duration::from_secs(5), proxy.stopped())
        .await
        .expect("the proxy stops");
}

#[tokio::test]
async fn a_stalled_admin_request_does_not_hold_shutdown_past_the_grace_period() {
    use tokio::io::AsyncWriteExt;
    let mut proxy = start("upstream = \"http://127.0.0.1:9\"\nshutdown-grace = \"300ms\"").await;
    let mut stalled = tokio::net::TcpStream::connect(proxy.admin.unwrap())
        .await
        .unwrap();
    stalled
        .write_all(b"PUT /peers HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n[")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    proxy.begin_stop();
    tokio::time::timeout(Duration::from_secs(5), proxy.stopped())
        .await
        .expect("shutdown finished");
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(stalled);
}

/// An origin that answers every request at once and trickles its 4-byte body out
/// over 200 ms, one connection per request; says how many it served at most at once.
async fn trickling_origin() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (active, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let seen = most.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (active, most) = (active.clone(), most.clone());
            tokio::spawn(async move {
                let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\n")
                    .await;
                for byte in b"body" {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = stream.write_all(&[*byte]).await;
                }
                active.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn max_upstream_connections_counts_a_request_until_its_body_is_read() {
    let (origin, most) = trickling_origin().await;
    let proxy = start(&format!(
        "upstream = \"http://{origin}\"\nmax-upstream-connections = 2"
    ))
    .await;
    let requests: Vec<_> = (0..6)
        .map(|i| {
            let url = format!("http://{}/{i}", proxy.addr);
            tokio::spawn(async move { get(proxy.addr, &url, &[]).await })
        })
        .collect();
    for request in requests {
        let got = request.await.unwrap();
        assert_eq!((got.status.as_u16(), got.text()), (200, "body"));
    }
    assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_after_send_timeout_and_frees_its_places() {
    use tokio::io::AsyncWriteExt;
    let origin = Origin::start().await;
    // Larger than any socket buffers, and than what is stored: streamed through, each
    // part read from the origin as the client takes it.
    let big = "x".repeat(64 << 20);
    origin.route("/big", move |_, _| Reply::ok(&big));
    origin.route("/small", |_, _| Reply::ok("small"));
    let proxy = start(&format!(
        "upstream = \"http://{}\"\nmax-body-bytes = \"1MiB\"\nmax-connections = 1\n\
         max-upstream-connections = 1\nsend-timeout = \"1s\"\nfetch-timeout = \"5s\"",
        origin.addr
    ))
    .await;
    // Holds the only connection and the only place among requests to the origin,
    // and reads nothing.
    let mut stalled = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stalled
        .write_all(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let next = tokio::time::timeout(
        Duration::from_secs(10),
        get(proxy.addr, "http://localhost/small", &[]),
    )
    .await
    .expect("the stalled connection gave its places up");
    assert_eq!((next.status.as_u16(), next.text()), (200, "small"));
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "served only once the stalled one was closed: {:?}",
        started.elapsed()
    );
    drop(stalled);
}

#[tokio::test]
async fn a_client_that_stalls_mid_response_does_not_change_what_the_next_client_gets() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = Origin::start().await;
    // Stored (within max-body-bytes), and larger than the socket buffers.
    let body = "0123456789abcdef".repeat(1 << 20);
    let expected = body.len();
    origin.route("/large", move |_, _| {
        Reply::ok(&body).header("cache-control", "max-age=60")
    });
    let proxy = start(&format!(
        "upstream = \"http://{}\"\nmax-body-bytes = \"32MiB\"\nsend-timeout = \"1s\"",
        origin.addr
    ))
    .await;
    let mut stalled = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stalled
        .write_all(b"GET /large HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0u8; 4096];
    stalled.read_exact(&mut first).await.unwrap();
    assert!(first.starts_with(b"HTTP/1.1 200"));
    // Reads nothing more for longer than the send timeout, then what is left.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), stalled.read_to_end(&mut rest)).await;
    let head = first.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        first.len() + rest.len() <= head + expected,
        "never more than the one response"
    );
    // The next client gets the whole response, from the store.
    let next = get(proxy.addr, "http://localhost/large", &[]).await;
    assert_eq!(next.status.as_u16(), 200);
    assert_eq!(next.header("x-cache"), "HIT");
    assert_eq!(next.body.len(), expected);
    assert_eq!(next.header("content-length"), expected.to_string());
    assert_eq!(origin.count("/large"), 1);
}

#[tokio::test]
async fn a_client_that_stops_reading_a_stored_response_gives_its_place_up_too() {
    use tokio::io::AsyncWriteExt;
    let origin = Origin::start().await;
    // Stored, and larger than the socket buffers: the proxy hands its whole body to
    // the connection's writer at once, so no request is left in flight, only bytes to
    // write that the client does not read.
    let body = "0123456789abcdef".repeat(1 << 20);
    origin.route("/large", move |_, _| {
        Reply::ok(&body).header("cache-control", "max-age=60")
    });
    origin.route("/small", |_, _| Reply::ok("small"));
    let proxy = start(&format!(
        "upstream = \"http://{}\"\nmax-body-bytes = \"32MiB\"\nmax-connections = 1\n\
         idle-timeout = \"1s\"\nsend-timeout = \"1s\"",
        origin.addr
    ))
    .await;
    let mut stalled = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stalled
        .write_all(b"GET /large HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let next = tokio::time::timeout(
        Duration::from_secs(10),
        get(proxy.addr, "http://localhost/small", &[]),
    )
    .await
    .expect("the stalled connection gave its place up");
    assert_eq!((next.status.as_u16(), next.text()), (200, "small"));
    drop(stalled);
}
