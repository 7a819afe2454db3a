//! The reverse proxy: requests go to the configured origin with the headers a proxy
//! adds; 500 concurrent requests for one cold URL reach it once; HTTP/2 both ways.

#[path = "../../corral-http/tests/support/mod.rs"]
mod origin;
mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use origin::{Origin, Reply};
use support::{get, start};

#[tokio::test]
async fn requests_go_to_the_origin_with_its_host_and_forwarding_headers() {
    let origin = Origin::start().await;
    origin.route("/api", |req, _| {
        let host = req
            .headers
            .get("host")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let xff = req
            .headers
            .get("x-forwarded-for")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        Reply::ok(&format!("host={host} xff={xff}"))
    });
    // The client here is a trusted load balancer, whose chain is extended.
    let proxy = start(&format!(
        "upstream = \"http://{}\"\ntrusted-proxies = [\"127.0.0.1\"]\nvia = \"edge-1\"",
        origin.addr
    ))
    .await;
    let got = get(
        proxy.addr,
        &format!("http://{}/api", proxy.addr),
        &[("x-forwarded-for", "10.9.8.7")],
    )
    .await;
    assert_eq!(
        got.text(),
        format!("host={} xff=10.9.8.7, 127.0.0.1", origin.addr)
    );
    assert_eq!(got.header("via"), "1.1 edge-1");

    let keeping = start(&format!(
        "upstream = \"http://{}\"\nhost = \"keep\"",
        origin.addr
    ))
    .await;
    let kept = get(keeping.addr, "/api", &[("host", "www.site.test")]).await;
    assert!(
        kept.text().starts_with("host=www.site.test "),
        "{}",
        kept.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_concurrent_requests_for_one_cold_url_reach_the_origin_once() {
    let origin = Origin::start().await;
    origin.route("/cold", |_, _| {
        Reply::ok("expensive")
            .header("cache-control", "max-age=60")
            .delay(Duration::from_millis(200))
    });
    let proxy = start(&format!("upstream = \"http://{}\"", origin.addr)).await;
    let requests: Vec<_> = (0..500)
        .map(|_| {
            let addr = proxy.addr;
            tokio::spawn(async move { get(addr, "/cold", &[("host", "site")]).await })
        })
        .collect();
    for request in requests {
        let got = request.await.unwrap();
        assert_eq!((got.status.as_u16(), got.text()), (200, "expensive"));
    }
    assert_eq!(origin.count("/cold"), 1);
}

#[tokio::test]
async fn clients_may_speak_http2_without_tls() {
    let origin = Origin::start().await;
    origin.route("/h2", |_, _| {
        Reply::ok("over h2c").header("cache-control", "max-age=60")
    });
    let proxy = start(&format!("upstream = \"http://{}\"", origin.addr)).await;
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("an h2c handshake");
    tokio::spawn(connection);
    for expected in ["MISS", "HIT"] {
        let request = http::Request::get(format!("http://{}/h2", proxy.addr))
            .body(Full::<Bytes>::default())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.headers().get("x-cache").unwrap(), expected);
        assert_eq!(
            response.into_body().collect().await.unwrap().to_bytes(),
            "over h2c"
        );
    }
}

#[tokio::test]
async fn the_origin_may_be_spoken_to_in_http2() {
    // An h2c-only origin: a hyper HTTP/2 server with prior knowledge.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let body = format!("origin saw {:?}", req.version());
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("cache-control", "max-age=60")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    },
                );
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let proxy = start(&format!(
        "upstream = \"http://{addr}\"\nupstream-http2 = true"
    ))
    .await;
    assert_eq!(
        get(proxy.addr, "/", &[("host", "h2")]).await.text(),
        "origin saw HTTP/2.0"
    );
}
