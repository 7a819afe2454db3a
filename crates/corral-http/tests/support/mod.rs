//! Real HTTP origins on 127.0.0.1 for the integration tests, and an `HttpCache` in
//! front of a real HTTP client talking to them.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use corral_http::{Body, HttpCache, HttpCacheBuilder};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::ServiceExt;

/// What a route answers.
#[derive(Clone, Default)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub delay: Duration,
}

impl Reply {
    pub(crate) fn ok(body: &str) -> Self {
        Reply {
            status: 200,
            body: Bytes::from(body.to_owned()),
            ..Default::default()
        }
    }

    pub(crate) fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub(crate) fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Route = Arc<dyn Fn(&http::request::Parts, usize) -> Reply + Send + Sync>;

/// An origin server that counts requests per path and answers by route.
#[derive(Clone)]
pub(crate) struct Origin {
    pub addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
}

impl Origin {
    pub(crate) async fn start() -> Origin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = Origin {
            addr: listener.local_addr().unwrap(),
            routes: Arc::default(),
            counts: Arc::default(),
            seen: Arc::default(),
        };
        let server = origin.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let server = server.clone();
                        async move { Ok::<_, std::convert::Infallible>(server.answer(req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        origin
    }

    /// Answers `path` with `reply(request, n)` where n counts this path's requests from 1.
    pub(crate) fn route(
        &self,
        path: &str,
        reply: impl Fn(&http::request::Parts, usize) -> Reply + Send + Sync + 'static,
    ) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_owned(), Arc::new(reply));
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let _ = body.collect().await;
        let path = parts.uri.path().to_owned();
        let n = {
            let mut counts = self.counts.lock().unwrap();
            let n = counts.entry(path.clone()).or_default();
            *n += 1;
            *n
        };
        self.seen
            .lock()
            .unwrap()
            .push((path.clone(), parts.headers.clone()));
        let route = self.routes.lock().unwrap().get(&path).cloned();
        let reply = match route {
            Some(route) => route(&parts, n),
            None => Reply::ok("no such route").status(404),
        };
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        let mut response = Response::new(Full::new(reply.body));
        *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
        for (name, value) in reply.headers {
            response.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        response
    }

    /// Requests this origin served for `path`.
    pub(crate) fn count(&self, path: &str) -> usize {
        self.counts.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// The headers of the last request for `path`.
    pub(crate) fn last_request(&self, path: &str) -> HeaderMap {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(p, _)| p == path)
            .map(|(_, h)| h.clone())
            .unwrap_or_default()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

pub(crate) type Upstream = Client<HttpConnector, Full<Bytes>>;
pub(crate) type Cached = HttpCache<Upstream>;

pub(crate) fn client() -> Upstream {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A cache in front of a real client.
pub(crate) fn cached(builder: HttpCacheBuilder) -> Cached {
    builder.service(client()).expect("valid options")
}

/// A response from the cache, with its body read.
pub(crate) struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub(crate) fn x_cache(&self) -> &str {
        self.headers
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub(crate) fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// Sends a request through the cache and reads the whole answer.
pub(crate) async fn send(cache: &Cached, request: Request<Full<Bytes>>) -> Got {
    let response: Response<Body> = cache.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub(crate) async fn get(cache: &Cached, url: &str) -> Got {
    send(cache, Request::get(url).body(Full::default()).unwrap()).await
}

pub(crate) async fn get_with(cache: &Cached, url: &str, headers: &[(&str, &str)]) -> Got {
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(cache, request.body(Full::default()).unwrap()).await
}

/// A server that accepts connections and reads what it is sent, but never answers
/// (a peer that hangs); it counts the connections it accepted, and stops when dropped.
pub(crate) struct Silent {
    pub addr: SocketAddr,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl Silent {
    pub(crate) async fn start() -> Silent {
        use std::sync::atomic::Ordering;
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = accepted.clone();
        let server = tokio::spawn(async move {
            // Dropped with the server: every connection closes when it stops.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                connections.spawn(async move {
                    let mut buf = [0u8; 4096];
                    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                });
            }
        });
        Silent {
            addr,
            accepted,
            server,
        }
    }

    /// Connections accepted so far.
    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.server.abort();
    }
}
