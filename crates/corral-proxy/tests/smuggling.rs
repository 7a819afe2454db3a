//! Framing attacks through the proxy, each tried as an attacker would against real
//! origins on 127.0.0.1: request bodies the cache must not drop (desync, smuggling),
//! response lengths it must not replay (splitting), protocol switches nobody asked
//! for, malformed client bodies, and idle connections the origin closed.

mod support;

use std::time::{Duration, Instant};

use support::raw_client::RawClient;
use support::raw_origin::{Answer, BodyFirst, RawOrigin, response};
use support::start;

/// The request line the attacker hides in the padding of a request of their own.
const SMUGGLED: &str = "GET /admin/secret HTTP/1.1";

#[tokio::test]
async fn a_get_with_a_body_reaches_the_origin_with_its_body_and_cannot_smuggle_a_request() {
    // Answers at once and skips the body afterwards, as Node.js, nginx and Go do.
    let origin = RawOrigin::start(BodyFirst::No, |seen| {
        let body = format!("page {}", seen.target);
        Answer::Write(response("200 OK", "cache-control: max-age=60\r\n", &body))
    })
    .await;
    let proxy = start(&format!("upstream = \"http://{}\"", origin.addr)).await;
    let mut attacker = RawClient::connect(proxy.addr).await;
    // A GET with a body the length of what the next request starts with, up to the
    // padding; the padding is the request the attacker wants the origin to see.
    let next_prefix = "GET /about.html HTTP/1.1\r\nx-pad: ";
    let first = format!(
        "GET /search HTTP/1.1\r\nhost: site\r\ncontent-length: {}\r\n\r\n{}",
        next_prefix.len(),
        "q".repeat(next_prefix.len())
    );
    attacker.write(first.as_bytes()).await;
    let answer = attacker.response(false).await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "page /search")
    );
    let second = format!("GET /about.html HTTP/1.1\r\nx-pad: {SMUGGLED}\r\nhost: site\r\n\r\n");
    attacker.write(second.as_bytes()).await;
    let about = attacker.response(false).await;
    assert_eq!(about.text(), "page /about.html");

    let seen = origin.seen();
    let targets: Vec<_> = seen.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(
        targets,
        ["/search", "/about.html"],
        "no request line of the attacker's"
    );
    assert_eq!(
        seen[0].body,
        "q".repeat(next_prefix.len()).as_bytes(),
        "the body went along"
    );
    assert_eq!(seen[0].method, "GET");
    // Nobody else gets the attacker's page under /about.html, and the GET with a body
    // was never stored.
    let mut victim = RawClient::connect(proxy.addr).await;
    victim
        .write(b"GET /about.html HTTP/1.1\r\nhost: site\r\n\r\n")
        .await;
    assert_eq!(victim.response(false).await.text(), "page /about.html");
    victim
        .write(b"GET /search HTTP/1.1\r\nhost: site\r\n\r\n")
        .await;
    let search = victim.response(false).await;
    assert_eq!(
        search.header("x-cache"),
        Some("MISS"),
        "a GET with a body is never stored"
    );
}

#[tokio::test]
async fn get_and_head_with_bodies_and_expect_without_one_are_answered_at_once() {
    // Reads the declared body before answering: a request that declares a body it
    // does not send would hang here until the response timeout.
    let origin = RawOrigin::start(BodyFirst::Yes, |seen| {
        let body = format!(
            "{} {} {}",
            seen.method,
            seen.target,
            String::from_utf8_lossy(&seen.body)
        );
        Answer::Write(response("200 OK", "cache-control: max-age=60\r\n", &body))
    })
    .await;
    let proxy = start(&format!(
        "upstream = \"http://{}\"\nfetch-timeout = \"5s\"",
        origin.addr
    ))
    .await;
    let started = Instant::now();
    let mut client = RawClient::connect(proxy.addr).await;
    client
        .write(b"GET /es/_search HTTP/1.1\r\nhost: site\r\ncontent-length: 5\r\n\r\nquery")
        .await;
    assert_eq!(client.response(false).await.text(), "GET /es/_search query");
    client
        .write(b"HEAD /doc HTTP/1.1\r\nhost: site\r\ncontent-length: 4\r\n\r\nbody")
        .await;
    let head = client.response(true).await;
    assert_eq!(head.status, 200);
    client
        .write(b"GET /continue HTTP/1.1\r\nhost: site\r\nexpect: 100-continue\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.text(), "GET /continue ");
    client
        .write(
            b"GET /chunked HTTP/1.1\r\nhost: site\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        )
        .await;
    assert_eq!(client.response(false).await.text(), "GET /chunked abc");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let seen = origin.seen();
    assert_eq!(seen[1].method, "HEAD");
    assert_eq!(seen[1].body, b"body");
    assert!(
        seen[2].header("expect").is_none() && seen[2].header("content-length").is_none(),
        "a bodiless fetch claims no body: {:?}",
        seen[2].headers
    );
}

#[tokio::test]
async fn a_response_with_both_lengths_is_replayed_framed_by_its_body() {
    // The origin says Content-Length: 0 and chunks a body that is itself a response.
    let inner = "HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nSMUGGLED";
    let origin = RawOrigin::start(BodyFirst::Yes, move |seen| {
        if seen.target != "/split" {
            return Answer::Write(response("200 OK", "cache-control: max-age=60\r\n", "other"));
        }
        let mut bytes = b"HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 0\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        bytes.extend_from_slice(format!("{:x}\r\n{inner}\r\n0\r\n\r\n", inner.len()).as_bytes());
        Answer::Write(bytes)
    })
    .await;
    let proxy = start(&format!("upstream = \"http://{}\"", origin.addr)).await;
    let mut client = RawClient::connect(proxy.addr).await;
    // The miss, then a hit and another request pipelined on the same connection.
    client
        .write(b"GET /split HTTP/1.1\r\nhost: site\r\n\r\n")
        .await;
    let miss = client.response(false).await;
    assert_eq!(miss.text(), inner);
    client
        .write(
            b"GET /split HTTP/1.1\r\nhost: site\r\n\r\nGET /other HTTP/1.1\r\nhost: site\r\n\r\n",
        )
        .await;
    let hit = client.response(false).await;
    assert_eq!(
        (hit.header("x-cache"), hit.text().as_str()),
        (Some("HIT"), inner)
    );
    assert_eq!(
        hit.header("content-length"),
        Some(inner.len().to_string().as_str())
    );
    let other = client.response(false).await;
    assert_eq!(
        other.text(),
        "other",
        "the next response is the next request's"
    );
    assert!(client.nothing_more(Duration::from_millis(300)).await);
}

#[tokio::test]
async fn a_protocol_switch_nobody_asked_for_is_a_502() {
    let origin = RawOrigin::start(BodyFirst::Yes, |_| {
        Answer::Write(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: evil\r\n\r\nraw bytes".to_vec())
    })
    .await;
    let proxy = start(&format!("upstream = \"http://{}\"", origin.addr)).await;
    let mut client = RawClient::connect(proxy.addr).await;
    for request in [
        &b"GET /ws HTTP/1.1\r\nhost: site\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"[..],
        b"POST /ws HTTP/1.1\r\nhost: site\r\ncontent-length: 2\r\n\r\nhi",
    ] {
        client.write(request).await;
        let answer = client.response(false).await;
        assert_eq!(answer.status, 502, "{}", answer.text());
    }
    assert!(client.nothing_more(Duration::from_millis(200)).await);
}

#[tokio::test]
async fn a_malformed_chunked_request_body_is_the_client_s_fault() {
    let origin = RawOrigin::start(BodyFirst::Yes, |_| {
        Answer::Write(response("200 OK", "", "stored"))
    })
    .await;
    let proxy = start(&format!("upstream = \"http://{}\"", origin.addr)).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client
        .write(b"POST /upload HTTP/1.1\r\nhost: site\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nnot hex\r\n0\r\n\r\n")
        .await;
    let answer = client.response(false).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
}

#[tokio::test]
async fn a_get_on_a_connection_the_origin_closed_while_idle_is_sent_again_once() {
    // Each connection answers its first request, then silently closes on the second,
    // as an origin whose keep-alive timeout ran out does.
    let origin = RawOrigin::start(BodyFirst::Yes, |seen| {
        if seen.nth == 0 {
            Answer::Write(response(
                "200 OK",
                "cache-control: no-store\r\n",
                &seen.target,
            ))
        } else {
            Answer::Close
        }
    })
    .await;
    let proxy = start(&format!("upstream = \"http://{}\"", origin.addr)).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client
        .write(b"GET /first HTTP/1.1\r\nhost: site\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.text(), "/first");
    client
        .write(b"GET /second HTTP/1.1\r\nhost: site\r\n\r\n")
        .await;
    let second = client.response(false).await;
    assert_eq!((second.status, second.text().as_str()), (200, "/second"));
    let seen = origin.seen();
    let retried: Vec<_> = seen.iter().filter(|s| s.target == "/second").collect();
    assert_eq!(
        retried.len(),
        2,
        "sent once on the reused connection, once on a new one"
    );
    assert_ne!(retried[0].connection, retried[1].connection);

    // A request with a body is never sent twice (on a connection reused after /third).
    client
        .write(b"GET /third HTTP/1.1\r\nhost: site\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.text(), "/third");
    client
        .write(b"POST /once HTTP/1.1\r\nhost: site\r\ncontent-length: 1\r\n\r\nx")
        .await;
    let post = client.response(false).await;
    assert_eq!(post.status, 502, "{}", post.text());
    let posts = origin.seen().iter().filter(|s| s.target == "/once").count();
    assert_eq!(posts, 1);
}

#[tokio::test]
async fn a_get_that_fails_on_a_fresh_connection_is_not_sent_again() {
    let origin = RawOrigin::start(BodyFirst::Yes, |_| Answer::Close).await;
    let proxy = start(&format!("upstream = \"http://{}\"", origin.addr)).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client
        .write(b"GET /down HTTP/1.1\r\nhost: site\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.status, 502);
    assert_eq!(origin.targets(), ["/down"]);
}

#[tokio::test]
async fn an_h2c_get_with_a_body_reaches_the_origin_with_its_body() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let origin = RawOrigin::start(BodyFirst::Yes, |seen| {
        let body = format!("{} {}", seen.target, String::from_utf8_lossy(&seen.body));
        Answer::Write(response("200 OK", "cache-control: max-age=60\r\n", &body))
    })
    .await;
    let proxy = start(&format!(
        "upstream = \"http://{}\"\nfetch-timeout = \"5s\"",
        origin.addr
    ))
    .await;
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    for _ in 0..2 {
        let request = http::Request::get(format!("http://{}/search", proxy.addr))
            .header("content-length", "5")
            .body(Full::new(bytes::Bytes::from_static(b"query")))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let cache = response.headers().get("x-cache").cloned();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"/search query");
        assert_eq!(cache.unwrap(), "BYPASS");
    }
    let seen = origin.seen();
    assert_eq!(seen.len(), 2, "each went to the origin");
    assert!(seen.iter().all(|s| s.body == b"query"));
}

#[tokio::test]
async fn an_h2_origin_s_length_and_trailers_are_passed_on_without_a_panic() {
    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::StreamBody;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    // An HTTP/2 origin that says content-length and ends its body with trailers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|_request| async {
                let mut trailers = http::HeaderMap::new();
                trailers.insert("x-checksum", "5".parse().unwrap());
                let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
                    Ok(Frame::data(Bytes::from_static(b"hello"))),
                    Ok(Frame::trailers(trailers)),
                ];
                let response = http::Response::builder()
                    .header("content-length", "5")
                    .header("cache-control", "max-age=60")
                    .body(StreamBody::new(futures_util::stream::iter(frames)))
                    .unwrap();
                Ok::<_, std::convert::Infallible>(response)
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    let proxy = start(&format!(
        "upstream = \"http://{origin}\"\nupstream-http2 = true"
    ))
    .await;
    let mut client = RawClient::connect(proxy.addr).await;
    for _ in 0..2 {
        client.write(b"GET /t HTTP/1.1\r\nhost: site\r\n\r\n").await;
        let got = client.response(false).await;
        assert_eq!((got.status, got.text().as_str()), (200, "hello"));
    }
}
