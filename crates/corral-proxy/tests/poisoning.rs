//! Turning the proxy against its users or against itself: fields that poison a shared
//! entry, userinfo in a URL, requests that loop back, and a forward proxy asked to
//! fetch from its own listeners in every spelling of a loopback address.

#[path = "../../corral-http/tests/support/mod.rs"]
mod origin;
mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use origin::{Origin, Reply};
use support::raw_client::RawClient;
use support::{get, send, start};

/// An origin that builds links from the forwarding fields it is given, as many
/// frameworks do, in a response every user shares.
fn reflecting_origin(origin: &Origin) {
    origin.route("/home", |req, _| {
        let field = |name: &str| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        let page = format!(
            "host={} proto={} url={} for={}",
            field("x-forwarded-host"),
            field("x-forwarded-proto"),
            field("x-original-url"),
            field("x-forwarded-for"),
        );
        Reply::ok(&page).header("cache-control", "max-age=60")
    });
}

#[tokio::test]
async fn a_client_cannot_poison_a_shared_entry_through_forwarding_fields() {
    let origin = Origin::start().await;
    reflecting_origin(&origin);
    let proxy = start(&format!("upstream = \"http://{}\"", origin.addr)).await;
    let url = format!("http://{}/home", proxy.addr);
    let attack = get(
        proxy.addr,
        &url,
        &[
            ("x-forwarded-host", "evil.test"),
            ("x_forwarded_host", "evil.test"),
            ("x-forwarded-proto", "javascript"),
            ("x-original-url", "/admin"),
            ("x-forwarded-for", "6.6.6.6"),
        ],
    )
    .await;
    assert_eq!(attack.text(), "host=- proto=- url=- for=127.0.0.1");
    let victim = get(proxy.addr, &url, &[]).await;
    assert_eq!(victim.header("x-cache"), "HIT");
    assert!(!victim.text().contains("evil"), "{}", victim.text());
}

#[tokio::test]
async fn a_trusted_load_balancer_s_forwarding_fields_pass() {
    let origin = Origin::start().await;
    reflecting_origin(&origin);
    let proxy = start(&format!(
        "upstream = \"http://{}\"\ntrusted-proxies = [\"127.0.0.0/8\"]",
        origin.addr
    ))
    .await;
    let page = get(
        proxy.addr,
        &format!("http://{}/home", proxy.addr),
        &[
            ("x-forwarded-host", "shop.example"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "203.0.113.9"),
        ],
    )
    .await;
    assert_eq!(
        page.text(),
        "host=shop.example proto=https url=- for=203.0.113.9, 127.0.0.1"
    );
}

#[tokio::test]
async fn userinfo_in_a_proxied_url_is_a_400_and_reaches_no_origin() {
    let origin = Origin::start().await;
    origin.route("/", |_, _| Reply::ok("home"));
    let proxy = start("").await;
    let url = format!("http://evil@{}/", origin.addr);
    let request = Request::get(&url)
        .header("host", origin.addr.to_string())
        .body(Full::<Bytes>::default())
        .unwrap();
    let got = send(proxy.addr, request).await;
    assert_eq!(got.status, 400, "{}", got.text());
    assert!(got.text().contains("userinfo"));
    let mut tunnel = RawClient::connect(proxy.addr).await;
    tunnel
        .write(
            format!(
                "CONNECT evil@{0} HTTP/1.1\r\nhost: {0}\r\n\r\n",
                origin.addr
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(tunnel.response(false).await.status, 400);
    assert_eq!(origin.count("/"), 0);
}

#[tokio::test]
async fn a_proxy_whose_upstream_is_itself_answers_508_at_the_second_pass() {
    // Bind first to learn the port, then point the proxy at it.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let proxy = start(&format!(
        "listen = \"127.0.0.1:{port}\"\nupstream = \"http://127.0.0.1:{port}\""
    ))
    .await;
    let started = Instant::now();
    let got = get(proxy.addr, &format!("http://127.0.0.1:{port}/loop"), &[]).await;
    assert_eq!(got.status, 508, "{}", got.text());
    assert!(started.elapsed() < Duration::from_secs(2));
    let vias = got.header("via");
    assert_eq!(vias.matches("corral-").count(), 1, "one pass: {vias}");
}

#[tokio::test]
async fn a_forward_proxy_never_fetches_from_its_own_listeners_in_any_spelling() {
    let proxy = start("").await;
    let (port, admin) = (proxy.addr.port(), proxy.admin.unwrap().port());
    for target in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://127.1:{port}/"),
        format!("http://0x7f000001:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://0.0.0.0:{port}/"),
        format!("http://127.0.0.1:{admin}/stats"),
        format!("http://localhost:{admin}/metrics"),
    ] {
        let got = get(proxy.addr, &target, &[]).await;
        assert_eq!(got.status, 403, "{target}: {}", got.text());
        assert!(
            got.text().contains("own listener"),
            "{target}: {}",
            got.text()
        );
    }
    for target in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{admin}"),
        format!("0.0.0.0:{admin}"),
        format!("0:{admin}"),
        format!("[::ffff:0.0.0.0]:{port}"),
    ] {
        let mut tunnel = RawClient::connect(proxy.addr).await;
        tunnel
            .write(format!("CONNECT {target} HTTP/1.1\r\nhost: {target}\r\n\r\n").as_bytes())
            .await;
        assert_eq!(tunnel.response(false).await.status, 403, "CONNECT {target}");
    }
}

#[tokio::test]
async fn a_request_that_names_two_hosts_is_a_400() {
    let origin = Origin::start().await;
    origin.route("/dup", |_, _| {
        Reply::ok("page").header("cache-control", "max-age=60")
    });
    let proxy = start(&format!(
        "upstream = \"http://{}\"\nhost = \"keep\"",
        origin.addr
    ))
    .await;
    let mut client = RawClient::connect(proxy.addr).await;
    client
        .write(b"GET /dup HTTP/1.1\r\nhost: victim.test\r\nhost: attacker.test\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.status, 400);
    // Over HTTP/2, `Host` and `:authority` must agree; `:authority` alone names the host.
    use http_body_util::BodyExt;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut h2, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let two_names = Request::get("http://victim.test/dup")
        .header("host", "attacker.test")
        .body(Full::<Bytes>::default())
        .unwrap();
    assert_eq!(h2.send_request(two_names).await.unwrap().status(), 400);
    let by_authority = Request::get("http://victim.test/dup")
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = h2.send_request(by_authority).await.unwrap();
    assert_eq!(response.status(), 200);
    let _ = response.into_body().collect().await;
    assert_eq!(
        origin.last_request("/dup").get("host").unwrap(),
        "victim.test"
    );
    assert_eq!(origin.count("/dup"), 1);
}

/// A hot response's head is made once a second and copied for each hit: what one
/// client's connection adds to its copy (HTTP/1.0's `Connection: keep-alive`, a
/// `Connection: close`) must never reach the next client, and every copy is framed by
/// the body it goes with.
#[tokio::test]
async fn a_ready_made_head_carries_nothing_one_connection_added_to_another() {
    let origin = Origin::start().await;
    origin.route("/hot", |_, _| {
        Reply::ok("the hot page").header("cache-control", "max-age=600")
    });
    let proxy = start(&format!("upstream = \"http://{}\"", origin.addr)).await;
    let request = |version: &str, connection: &str| {
        format!("GET /hot {version}\r\nhost: site\r\n{connection}\r\n").into_bytes()
    };
    // Warm it: stored, then hit enough to have its head made.
    let mut warm = RawClient::connect(proxy.addr).await;
    for _ in 0..3 {
        warm.write(&request("HTTP/1.1", "")).await;
        assert_eq!(warm.response(false).await.text(), "the hot page");
    }
    // An HTTP/1.0 client that keeps its connection, and one that closes it.
    let mut old = RawClient::connect(proxy.addr).await;
    for _ in 0..2 {
        old.write(&request("HTTP/1.0", "connection: keep-alive\r\n"))
            .await;
        let hit = old.response(false).await;
        assert_eq!(
            (hit.text().as_str(), hit.header("x-cache")),
            ("the hot page", Some("HIT"))
        );
        assert_eq!(hit.header("connection"), Some("keep-alive"));
    }
    let mut closing = RawClient::connect(proxy.addr).await;
    closing
        .write(&request("HTTP/1.1", "connection: close\r\n"))
        .await;
    assert_eq!(
        closing.response(false).await.header("connection"),
        Some("close")
    );
    // The next HTTP/1.1 client sees none of it, and keeps its connection.
    for head in [false, true, false] {
        let method = if head { "HEAD" } else { "GET" };
        warm.write(format!("{method} /hot HTTP/1.1\r\nhost: site\r\n\r\n").as_bytes())
            .await;
        let hit = warm.response(head).await;
        assert_eq!(hit.header("x-cache"), Some("HIT"));
        assert_eq!(hit.header("connection"), None, "{method}");
        assert_eq!(hit.header("content-length"), Some("12"), "{method}");
        assert_eq!(hit.body.len(), if head { 0 } else { 12 });
    }
    assert_eq!(origin.count("/hot"), 1);
}

/// An origin that promises a large body (one the proxy writes to its disk tier as it
/// arrives, and serves from there meanwhile) and closes half way: the client's
/// response is cut short too, never ended as if whole, and nothing of it is kept for
/// the next client.
#[tokio::test]
async fn a_large_body_the_origin_cuts_short_reaches_no_client_as_whole_and_is_not_kept() {
    use support::raw_origin::{Answer, BodyFirst, RawOrigin};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let full = "x".repeat(4096);
    let cut = format!(
        "HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\ncontent-length: {}\r\n\r\n{}",
        full.len(),
        &full[..1000]
    );
    let origin = RawOrigin::start(BodyFirst::Yes, move |_| {
        Answer::WriteAndClose(cut.clone().into_bytes())
    })
    .await;
    let dir = std::env::temp_dir().join(format!("corral-proxy-cut-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let proxy = start(&format!(
        "upstream = \"http://{}\"\nmax-body-bytes = \"64B\"\ndisk = \"{}\"",
        origin.addr,
        dir.display()
    ))
    .await;
    for round in 1..=2 {
        let mut client = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        client
            .write_all(b"GET /big HTTP/1.1\r\nhost: cut.test\r\n\r\n")
            .await
            .unwrap();
        let mut received = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut received))
            .await
            .expect("the proxy ends the connection")
            .unwrap();
        let text = String::from_utf8_lossy(&received);
        let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
        let promised: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_owned)
            })
            .and_then(|v| v.trim().parse().ok())
            .expect("a content-length");
        assert!(
            head.starts_with("HTTP/1.1 502") && body.len() == promised
                || head.starts_with("HTTP/1.1 200") && body.len() < promised,
            "round {round}: a whole error, or the promised body cut short: {head}"
        );
        assert_eq!(
            origin.seen().len(),
            round,
            "nothing of the cut body was kept"
        );
    }
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}
