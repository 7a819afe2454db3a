//! The proxy's end-to-end helpers: the proxy in-process on random ports, and a client
//! that talks to it as a browser configured with a proxy would.

#![allow(dead_code)]

pub(crate) mod raw_client;
pub(crate) mod raw_origin;

use std::net::SocketAddr;

use bytes::Bytes;
use corral_proxy::{Bound, Config};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A child process killed (and reaped) when dropped, so a failing test leaves none.
pub(crate) struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a writer was given: an access log's lines, in a test.
#[derive(Clone, Default)]
pub(crate) struct Captured(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A proxy running in this process.
pub(crate) struct Running {
    pub addr: SocketAddr,
    /// Where it speaks TLS, if it does.
    pub tls: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), corral_proxy::ProxyError>>>,
}

/// Starts a proxy with this TOML on top of test defaults (random ports, no access log).
pub(crate) async fn start(toml: &str) -> Running {
    run(bind(toml).await)
}

/// A proxy as `start` makes it, writing its access log (if on) to `log`.
#[allow(dead_code)]
pub(crate) async fn start_logging_to(
    toml: &str,
    log: corral_proxy::access_log::AccessLog,
) -> Running {
    run(bind(toml).await.log_access_to(log))
}

/// Starts a proxy from the TOML file at `path` (on top of the test defaults), which a
/// reload reads again.
pub(crate) async fn start_from_file(path: &std::path::Path) -> Running {
    run(bind_file(path).await)
}

/// A proxy as `start_from_file` makes it, writing its access log (if on) to `log`.
pub(crate) async fn start_from_file_logging_to(
    path: &std::path::Path,
    log: corral_proxy::access_log::AccessLog,
) -> Running {
    run(bind_file(path).await.log_access_to(log))
}

async fn bind_file(path: &std::path::Path) -> Bound {
    let path = path.to_owned();
    let load = move || Config::loader().toml(table("")).file(&path).load();
    let loaded = load().expect("a valid test configuration");
    let bound = Bound::bind(loaded.config).await.expect("the proxy binds");
    bound.reload_from(load)
}

/// The configuration `start` runs: this TOML on top of the test defaults.
pub(crate) fn config(toml: &str) -> Config {
    Config::from_toml(table(toml)).expect("a valid test configuration")
}

/// Why the configuration `start` would run with this TOML is refused.
pub(crate) fn config_error(toml: &str) -> String {
    Config::from_toml(table(toml))
        .expect_err("a refused configuration")
        .to_string()
}

fn table(toml: &str) -> toml::Table {
    let mut table: toml::Table =
        "listen = \"127.0.0.1:0\"\nadmin-listen = \"127.0.0.1:0\"\naccess-log = false\n"
            .parse()
            .unwrap();
    table.extend(toml.parse::<toml::Table>().expect("test TOML"));
    table
}

async fn bind(toml: &str) -> Bound {
    Bound::bind(config(toml)).await.expect("the proxy binds")
}

fn run(bound: Bound) -> Running {
    let (addr, tls, admin) = (bound.addr(), bound.tls_addr(), bound.admin_addr());
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(bound.serve(async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        tls,
        admin,
        stop: Some(stop),
        task: Some(task),
    }
}

impl Running {
    /// Asks the proxy to shut down and waits until it has.
    pub(crate) async fn stop(mut self) {
        self.begin_stop();
        self.stopped().await;
    }

    /// Signals shutdown without waiting.
    pub(crate) fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits until the proxy's serve task has ended.
    pub(crate) async fn stopped(&mut self) {
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    pub(crate) fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin.expect("admin on"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.begin_stop();
    }
}

/// A response with its body read.
pub(crate) struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub(crate) fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("<binary>")
    }
}

/// Sends `request` on a new HTTP/1.1 connection to `proxy`, as written (an absolute URI
/// goes out in absolute form, as to a forward proxy).
pub(crate) async fn send(proxy: SocketAddr, request: Request<Full<Bytes>>) -> Got {
    let stream = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect to the proxy");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let response = sender.send_request(request).await.expect("a response");
    let (parts, body) = response.into_parts();
    Got {
        status: parts.status,
        headers: parts.headers,
        body: body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default(),
    }
}

/// `GET url` through `proxy`, with `headers`.
pub(crate) async fn get(proxy: SocketAddr, url: &str, headers: &[(&str, &str)]) -> Got {
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let host = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.to_string()));
    if let Some(host) =
        host.filter(|_| !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")))
    {
        request = request.header("host", host);
    }
    send(proxy, request.body(Full::default()).unwrap()).await
}

/// Writes raw bytes to `addr` and reads until the peer closes or `limit` bytes came.
pub(crate) async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut reply),
    )
    .await;
    String::from_utf8_lossy(&reply).into_owned()
}

/// A proxy on a runtime of its own: [`kill`](Killable::kill) tears that runtime down
/// at once, closing every socket, as if the process died.
pub(crate) struct Killable {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Killable {
    pub(crate) async fn start(toml: &str) -> Killable {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (bound_tx, bound_rx) = oneshot::channel();
        let toml = toml.to_owned();
        runtime.spawn(async move {
            let running = start(&toml).await;
            let _ = bound_tx.send((running.addr, running.admin));
            // Serve until the runtime is torn down.
            std::future::pending::<()>().await;
            drop(running);
        });
        let (addr, admin) = bound_rx.await.expect("the proxy started");
        Killable {
            addr,
            admin,
            runtime: Some(runtime),
        }
    }

    pub(crate) fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Killable {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `PUT /peers` on an admin API: the pool's members become `peers`.
pub(crate) async fn put_peers(admin: SocketAddr, peers: &[String]) -> Got {
    let body = serde_json::to_vec(peers).unwrap();
    send(
        admin,
        Request::put(format!("http://{admin}/peers"))
            .header("host", admin.to_string())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap(),
    )
    .await
}

/// `GET` an admin route, parsed as JSON.
pub(crate) async fn admin_json(admin: SocketAddr, path: &str) -> serde_json::Value {
    let got = send(
        admin,
        Request::get(format!("http://{admin}{path}"))
            .header("host", admin.to_string())
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    serde_json::from_slice(&got.body).unwrap()
}

/// `POST /reload` on the admin API: its status and JSON answer.
pub(crate) async fn reload(admin: SocketAddr) -> (StatusCode, serde_json::Value) {
    let got = send(
        admin,
        Request::post(format!("http://{admin}/reload"))
            .header("host", admin.to_string())
            .body(Full::default())
            .unwrap(),
    )
    .await;
    let answer = serde_json::from_slice(&got.body).unwrap_or_else(|_| panic!("{}", got.text()));
    (got.status, answer)
}
