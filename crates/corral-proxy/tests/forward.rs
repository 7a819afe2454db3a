//! The forward proxy: absolute-form requests are cached; CONNECT is tunnelled; the
//! allow-list refuses what it does not name.

#[path = "../../corral-http/tests/support/mod.rs"]
mod origin;
mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use origin::{Origin, Reply};
use support::{get, send, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn absolute_form_requests_are_proxied_and_cached() {
    let origin = Origin::start().await;
    origin.route("/page", |req, _| {
        assert_eq!(req.headers.get("via").unwrap(), "1.1 edge-7");
        assert!(req.headers.get("x-forwarded-for").is_some());
        assert!(
            req.headers.get("proxy-connection").is_none(),
            "hop-by-hop removed"
        );
        Reply::ok("the page").header("cache-control", "max-age=60")
    });
    let proxy = start("via = \"edge-7\"").await;
    let url = origin.url("/page");
    let first = get(proxy.addr, &url, &[("proxy-connection", "keep-alive")]).await;
    assert_eq!(
        (first.status.as_u16(), first.text(), first.header("x-cache")),
        (200, "the page", "MISS")
    );
    assert_eq!(first.header("via"), "1.1 edge-7");
    let second = get(proxy.addr, &url, &[]).await;
    assert_eq!(
        (second.text(), second.header("x-cache")),
        ("the page", "HIT")
    );
    assert_eq!(origin.count("/page"), 1);
}

#[tokio::test]
async fn an_origin_form_request_gets_a_400_that_explains_itself() {
    let proxy = start("").await;
    let got = send(
        proxy.addr,
        Request::get("/page")
            .header("host", "x")
            .body(Full::<Bytes>::default())
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, 400);
    assert!(got.text().contains("absolute form"), "{}", got.text());
}

#[tokio::test]
async fn the_allow_list_refuses_other_hosts_with_a_403() {
    let origin = Origin::start().await;
    origin.route("/x", |_, _| {
        Reply::ok("fetched").header("cache-control", "max-age=60")
    });
    let port = origin.addr.port();
    let names_only = start("allow = [\"allowed.test\"]").await;
    let refused = get(names_only.addr, &origin.url("/x"), &[]).await;
    assert_eq!(refused.status, 403);
    assert!(refused.text().contains("allow-list"));
    let by_name = get(names_only.addr, &format!("http://localhost:{port}/x"), &[]).await;
    assert_eq!(by_name.status, 403, "localhost is not allowed.test");
    assert_eq!(origin.count("/x"), 0, "nothing refused reached the origin");

    let loopback = start("allow = [\"127.0.0.0/8\"]").await;
    assert_eq!(
        get(loopback.addr, &origin.url("/x"), &[]).await.text(),
        "fetched"
    );
    let via_name = get(loopback.addr, &format!("http://localhost:{port}/x"), &[]).await;
    assert_eq!(
        via_name.status, 200,
        "a name resolving into an allowed CIDR"
    );
    // A name rule never leads to loopback by itself (any name can resolve there)...
    let glob = start("allow = [\"*.test\", \"localhost\"]").await;
    let by_glob = get(glob.addr, &format!("http://localhost:{port}/x"), &[]).await;
    assert_eq!(by_glob.status, 403, "{}", by_glob.text());
    assert!(by_glob.text().contains("allow-list"));
    // ...only with a CIDR rule that allows the address too.
    let with_cidr = start("allow = [\"localhost\", \"127.0.0.0/8\", \"::1/128\"]").await;
    assert_eq!(
        get(with_cidr.addr, &format!("http://localhost:{port}/x"), &[])
            .await
            .status,
        200
    );
}

/// A TCP server that echoes what it receives, upper-cased.
async fn echo_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0
                        || stream
                            .write_all(&buf[..n].to_ascii_uppercase())
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn connect_through(
    proxy: std::net::SocketAddr,
    target: &str,
) -> (tokio::net::TcpStream, String) {
    let mut stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    stream
        .write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    (stream, String::from_utf8_lossy(&head).into_owned())
}

#[tokio::test]
async fn connect_is_tunnelled_end_to_end_and_obeys_the_allow_list() {
    let echo = echo_server().await;
    let proxy = start("allow = [\"127.0.0.1\"]").await;
    let (mut tunnel, head) = connect_through(proxy.addr, &echo.to_string()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tunnel.write_all(b"hello through the tunnel").await.unwrap();
    let mut answer = [0u8; 24];
    tunnel.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HELLO THROUGH THE TUNNEL");

    let strict = start("allow = [\"example.com\"]").await;
    let (_, refused) = connect_through(strict.addr, &echo.to_string()).await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    let (_, no_port) = connect_through(proxy.addr, "127.0.0.1").await;
    assert!(no_port.starts_with("HTTP/1.1 400"), "{no_port}");
}

#[tokio::test]
async fn a_closed_port_through_connect_is_a_502() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = closed.local_addr().unwrap();
    drop(closed);
    let proxy = start("").await;
    let (_, head) = connect_through(proxy.addr, &target.to_string()).await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
}

#[tokio::test]
async fn an_open_tunnel_keeps_its_connections_place_until_it_closes() {
    let echo = echo_server().await;
    let proxy = start("allow = [\"127.0.0.1\"]\nmax-connections = 1").await;
    let (mut tunnel, head) = connect_through(proxy.addr, &echo.to_string()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tunnel.write_all(b"ping").await.unwrap();
    let mut answer = [0u8; 4];
    tunnel.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"PING");
    // The only place is the tunnel's: a second client waits for it.
    let next = tokio::spawn(async move { connect_through(proxy.addr, &echo.to_string()).await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !next.is_finished(),
        "a second connection was served beside the tunnel"
    );
    drop(tunnel);
    let (_, head) = tokio::time::timeout(std::time::Duration::from_secs(5), next)
        .await
        .expect("the closed tunnel gave its place up")
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}
