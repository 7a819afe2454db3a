//! Reloading the configuration without a restart (`POST /reload`; the binary's SIGHUP
//! is tested in `binary.rs`): a valid file runs for the next request, under load, with
//! no request failing and none in flight disturbed, the cache kept; an invalid one
//! changes nothing and says why; options read only at start are reported.

#[path = "../../corral-http/tests/support/mod.rs"]
mod origin;
mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use origin::{Origin, Reply};
use support::{Captured, reload, start_from_file};

/// A configuration file, removed at the end.
struct File(PathBuf);

impl File {
    fn new(toml: &str) -> File {
        let path = std::env::temp_dir().join(format!(
            "corral-reload-{}-{}.toml",
            std::process::id(),
            fastrand::u64(..)
        ));
        let file = File(path);
        file.write(toml);
        file
    }

    fn write(&self, toml: &str) {
        std::fs::write(&self.0, toml).unwrap();
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An HTTP/1.1 keep-alive connection to a forward proxy.
struct Connection(hyper::client::conn::http1::SendRequest<Empty<Bytes>>);

impl Connection {
    async fn open(proxy: SocketAddr) -> std::io::Result<Connection> {
        let stream = tokio::net::TcpStream::connect(proxy).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(Connection(sender))
    }

    /// GET `url` (absolute form): the status and body, or why there was none.
    async fn get(&mut self, url: &str) -> Result<(StatusCode, Bytes), String> {
        let host = url
            .parse::<http::Uri>()
            .unwrap()
            .authority()
            .unwrap()
            .to_string();
        let request = Request::get(url)
            .header("host", host)
            .body(Empty::new())
            .unwrap();
        self.0.ready().await.map_err(|e| e.to_string())?;
        let response = self
            .0
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok((status, body.to_bytes()))
    }
}

fn forward(allow: &str, via: &str) -> String {
    format!("allow = [{allow}]\nvia = \"{via}\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_load_fails_no_request_and_the_next_request_meets_the_new_allow_list() {
    let origin = Origin::start().await;
    let vias = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = vias.clone();
    origin.route("/item", move |request, _| {
        let via = request
            .headers
            .get("via")
            .map(|v| v.to_str().unwrap().to_owned());
        seen.lock().unwrap().extend(via);
        Reply::ok("item").header("cache-control", "max-age=1")
    });
    origin.route("/kept", |_, _| {
        Reply::ok("kept").header("cache-control", "max-age=600")
    });
    origin.route("/slow", |_, _| {
        Reply::ok("slow").delay(Duration::from_millis(800))
    });
    let file = File::new(&forward("\"127.0.0.1/32\"", "gen-0"));
    let proxy = start_from_file(file.path()).await;
    let (addr, admin) = (proxy.addr, proxy.admin.unwrap());
    let base = format!("http://{}", origin.addr);
    let mut kept = Connection::open(addr).await.unwrap();
    let (status, _) = kept.get(&format!("{base}/kept")).await.unwrap();
    assert_eq!(status, StatusCode::OK);

    // Load: keep-alive connections, and a new connection per request.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let mut load = Vec::new();
    for task in 0..8 {
        let (stop, ok, failed, base) = (stop.clone(), ok.clone(), failed.clone(), base.clone());
        load.push(tokio::spawn(async move {
            let mut connection = None;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if connection.is_none() || task % 2 == 1 {
                    connection = Some(Connection::open(addr).await.unwrap());
                }
                let url = format!("{base}/item?n={}", n % 50);
                match connection.as_mut().unwrap().get(&url).await {
                    Ok((StatusCode::OK, _)) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => failed.lock().unwrap().push(format!("{url}: {other:?}")),
                }
            }
        }));
    }
    for round in 1..=6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let allow = match round % 2 {
            0 => "\"127.0.0.1/32\"",
            _ => "\"127.0.0.1/32\", \"192.0.2.0/24\"",
        };
        file.write(&forward(allow, &format!("gen-{round}")));
        let (status, answer) = reload(admin).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["needs_restart"], serde_json::json!([]), "{answer}");
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let failed = failed.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok.load(Ordering::Relaxed) > 100, "load ran: {ok:?}");
    let vias = vias.lock().unwrap().clone();
    assert!(
        vias.iter().any(|v| v.contains("gen-0")) && vias.iter().any(|v| v.contains("gen-6")),
        "each reload ran for the requests after it: {vias:?}"
    );

    // A request in flight finishes as it started, across a reload that forbids it.
    let slow = tokio::spawn({
        let url = format!("{base}/slow");
        async move { Connection::open(addr).await.unwrap().get(&url).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    file.write(&forward("\"192.0.2.0/24\"", "gen-7"));
    let (status, answer) = reload(admin).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, body) = slow.await.unwrap().unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"slow"[..]));

    // The next request, on a connection opened before the reload, meets the new list;
    // what was cached is still there (a hit is not a fetch, but the list comes first).
    let (status, body) = kept.get(&format!("{base}/item?n=1")).await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:?}");
    file.write(&forward("\"127.0.0.1/32\"", "gen-8"));
    assert_eq!(reload(admin).await.0, StatusCode::OK);
    let (status, _) = kept.get(&format!("{base}/kept")).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(origin.count("/kept"), 1, "the cache kept its contents");
    proxy.stop().await;
}

#[tokio::test]
async fn an_invalid_file_changes_nothing_and_the_answer_says_why() {
    let origin = Origin::start().await;
    origin.route("/", |_, _| Reply::ok("from the first origin"));
    let file = File::new(&format!("upstream = \"http://{}\"\n", origin.addr));
    let proxy = start_from_file(file.path()).await;
    let admin = proxy.admin.unwrap();
    for (broken, why) in [
        (
            "upstream = \"http://127.0.0.1:1\"\nallow = [\"10.0.0.0/99\"]\n",
            "10.0.0.0/99",
        ),
        ("upstream = \"ftp://x\"\n", "http:// or https://"),
        ("upstream = \"http://127.0.0.1:1\"\nlissen = 1\n", "lissen"),
        ("upstream = [\n", "TOML"),
        ("tls-cert = \"/nonexistent.crt\"\n", "tls-key"),
    ] {
        file.write(broken);
        let (status, answer) = reload(admin).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{broken}: {answer}");
        assert_eq!(answer["reloaded"], false);
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(why) || why == "TOML", "{broken}: {error}");
        let still = support::get(proxy.addr, "http://localhost/", &[]).await;
        assert_eq!(still.text(), "from the first origin", "{broken}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn options_read_only_at_start_are_reported_and_the_rest_apply() {
    let (first, second) = (Origin::start().await, Origin::start().await);
    first.route("/", |_, _| Reply::ok("first"));
    second.route("/", |_, _| Reply::ok("second"));
    let file = File::new(&format!("upstream = \"http://{}\"\n", first.addr));
    let proxy = start_from_file(file.path()).await;
    let admin = proxy.admin.unwrap();
    file.write(&format!(
        "upstream = \"http://{}\"\nmax-bytes = \"1GiB\"\nadmin-listen = \"127.0.0.1:1\"\n",
        second.addr
    ));
    let (status, answer) = reload(admin).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["needs_restart"],
        serde_json::json!(["admin-listen", "max-bytes"]),
        "{answer}"
    );
    let now = support::get(proxy.addr, "http://localhost/", &[]).await;
    assert_eq!(now.text(), "second", "the upstream changed");
    proxy.stop().await;
}

#[tokio::test]
async fn a_proxy_built_from_a_configuration_alone_says_it_cannot_reload() {
    let proxy = support::start("").await;
    let (status, answer) = reload(proxy.admin.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("read again"),
        "{answer}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_reload_sets_the_pools_members() {
    let file = File::new(
        "peer-secret = \"0123456789abcdef\"\npeer-self = \"http://127.0.0.1:1\"\n\
         peers = [\"http://127.0.0.1:1\"]\n",
    );
    let proxy = start_from_file(file.path()).await;
    let admin = proxy.admin.unwrap();
    file.write(
        "peer-secret = \"0123456789abcdef\"\npeer-self = \"http://127.0.0.1:1\"\n\
         peers = [\"http://127.0.0.1:1\", \"http://127.0.0.1:2\"]\n",
    );
    assert_eq!(reload(admin).await.0, StatusCode::OK);
    let peers = support::admin_json(admin, "/peers").await;
    assert_eq!(peers["peers"].as_array().unwrap().len(), 2, "{peers}");
    proxy.stop().await;
}

impl Captured {
    /// The lines written so far, once `log` has written them out.
    fn lines(&self, log: &corral_proxy::access_log::AccessLog) -> Vec<String> {
        log.flush();
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits (at most 5 s) until there are `n` lines.
    async fn wait_for(&self, log: &corral_proxy::access_log::AccessLog, n: usize) -> Vec<String> {
        for _ in 0..100 {
            let lines = self.lines(log);
            if lines.len() >= n {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fewer than {n} lines: {:?}", self.lines(log));
    }
}

#[tokio::test]
async fn a_reload_changes_the_log_format_and_turns_the_access_log_off() {
    let origin = Origin::start().await;
    origin.route("/", |_, _| Reply::ok("logged"));
    let config = |access_log: bool, format: &str| {
        format!(
            "upstream = \"http://{}\"\naccess-log = {access_log}\nlog-format = \"{format}\"\n",
            origin.addr
        )
    };
    let file = File::new(&config(true, "text"));
    let captured = Captured::default();
    let log = corral_proxy::access_log::AccessLog::to_writer(
        corral_proxy::config::LogFormat::Text,
        captured.clone(),
    )
    .unwrap();
    let proxy = support::start_from_file_logging_to(file.path(), log.clone()).await;
    let admin = proxy.admin.unwrap();
    support::get(proxy.addr, "http://localhost/", &[]).await;
    let lines = captured.wait_for(&log, 1).await;
    assert!(
        serde_json::from_str::<serde_json::Value>(&lines[0]).is_err(),
        "text: {}",
        lines[0]
    );

    file.write(&config(true, "json"));
    assert_eq!(reload(admin).await.0, StatusCode::OK);
    support::get(proxy.addr, "http://localhost/", &[]).await;
    let lines = captured.wait_for(&log, 2).await;
    let json: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(json["status"], 200, "{json}");

    file.write(&config(false, "json"));
    assert_eq!(reload(admin).await.0, StatusCode::OK);
    support::get(proxy.addr, "http://localhost/", &[]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(captured.lines(&log).len(), 2, "the access log is off");
    proxy.stop().await;
}

#[tokio::test]
async fn a_reload_keeps_the_bound_on_origin_requests_and_the_via_name() {
    let origin = Origin::start().await;
    let vias = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = vias.clone();
    origin.route("/slow", move |request, _| {
        let via = request
            .headers
            .get("via")
            .map(|v| v.to_str().unwrap().to_owned());
        seen.lock().unwrap().extend(via);
        Reply::ok("slow").delay(Duration::from_millis(600))
    });
    let file = File::new(&format!(
        "upstream = \"http://{}\"\nmax-upstream-connections = 1\n",
        origin.addr
    ));
    let proxy = start_from_file(file.path()).await;
    let (addr, admin) = (proxy.addr, proxy.admin.unwrap());
    let started = tokio::time::Instant::now();
    let first =
        tokio::spawn(async move { support::get(addr, "http://localhost/slow?1", &[]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(reload(admin).await.0, StatusCode::OK);
    let second = support::get(addr, "http://localhost/slow?2", &[]).await;
    assert_eq!(second.text(), "slow");
    assert_eq!(first.await.unwrap().text(), "slow");
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "one origin request at a time across the reload: {:?}",
        started.elapsed()
    );
    assert_eq!(vias.lock().unwrap().len(), 1, "one Via name: {vias:?}");
    proxy.stop().await;
}
