//! The access log: one line per request (target `corral::access`), written when the
//! response body is done: method, URL, status, cache status, duration, bytes, and
//! whether the body was sent whole. Captured in-process as JSON lines (the proxy
//! writing its access log to the test's buffer), and from the `corral` binary's
//! stderr with `--log-format json`.

#[path = "../../corral-http/tests/support/mod.rs"]
mod origin;
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corral_proxy::access_log::AccessLog;
use corral_proxy::config::LogFormat;
use origin::{Origin, Reply};
use serde_json::Value;
use support::{Captured, KillOnDrop, get, start_logging_to};

const ACCESS: &str = "corral::access";

impl Captured {
    /// An access log in the JSON format (`log-format = "json"`) writing here.
    fn install() -> (Captured, AccessLog) {
        let captured = Captured::default();
        let log = AccessLog::to_writer(LogFormat::Json, captured.clone()).unwrap();
        (captured, log)
    }

    /// Every line written, each parsed as JSON.
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    /// The access lines, once there are `n` (an access line is written when its body
    /// ends, which may be just after the client has read it); then checks that no
    /// more follow.
    async fn access_lines(&self, n: usize) -> Vec<Value> {
        let access = || -> Vec<Value> {
            self.lines()
                .into_iter()
                .filter(|line| line["target"] == ACCESS)
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while access().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let lines = access();
        assert_eq!(lines.len(), n, "{lines:#?}");
        lines
    }
}

#[tokio::test]
async fn each_request_writes_one_line_with_method_url_status_cache_status_and_duration() {
    one_line_per_request(true).await;
}

#[tokio::test]
async fn the_cache_status_is_logged_with_the_cache_status_headers_off() {
    one_line_per_request(false).await;
}

async fn one_line_per_request(cache_status_header: bool) {
    let (captured, log) = Captured::install();
    let origin = Origin::start().await;
    origin.route("/page", |_, _| {
        Reply::ok("page body")
            .header("cache-control", "max-age=60")
            .delay(Duration::from_millis(150))
    });
    let proxy = start_logging_to(&format!(
        "upstream = \"http://{}\"\naccess-log = true\ncache-status-headers = {cache_status_header}",
        origin.addr
    ), log)
    .await;
    for _ in 0..2 {
        let got = get(proxy.addr, "/page?q=1", &[("host", "site")]).await;
        assert_eq!((got.status.as_u16(), got.text()), (200, "page body"));
        assert_eq!(got.headers.contains_key("x-cache"), cache_status_header);
    }
    let lines = captured.access_lines(2).await;
    for (line, cache) in lines.iter().zip(["MISS", "HIT"]) {
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(line["method"], "GET", "{line}");
        assert_eq!(line["url"], "/page?q=1", "{line}");
        assert_eq!(line["status"], 200, "{line}");
        assert_eq!(line["cache"], cache, "{line}");
        assert_eq!(line["bytes"], 9, "{line}");
        assert_eq!(line["complete"], true, "{line}");
    }
    let duration = |line: &Value| line["duration_ms"].as_f64().expect("a number of ms");
    assert!(
        duration(&lines[0]) >= 150.0,
        "the miss waited on the origin: {}",
        lines[0]
    );
    assert!(
        duration(&lines[1]) < duration(&lines[0]),
        "the hit did not: {}",
        lines[1]
    );
}

#[tokio::test]
async fn a_request_refused_before_the_cache_is_logged_without_a_cache_status() {
    let (captured, log) = Captured::install();
    let proxy = start_logging_to("allow = [\"allowed.test\"]\naccess-log = true", log).await;
    let got = get(proxy.addr, "http://127.0.0.1:9/secret", &[]).await;
    assert_eq!(got.status, 403);
    let lines = captured.access_lines(1).await;
    assert_eq!(lines[0]["method"], "GET");
    assert_eq!(lines[0]["url"], "http://127.0.0.1:9/secret");
    assert_eq!(lines[0]["status"], 403);
    assert_eq!(lines[0]["cache"], "-");
    assert_eq!(lines[0]["bytes"], got.body.len());
}

#[tokio::test]
async fn a_response_cut_short_by_the_client_is_logged_as_incomplete() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SIZE: usize = 32 << 20;
    let (captured, log) = Captured::install();
    let origin = Origin::start().await;
    let big = "x".repeat(SIZE);
    origin.route("/big", move |_, _| Reply::ok(&big));
    let proxy = start_logging_to(
        &format!("upstream = \"http://{}\"\naccess-log = true", origin.addr),
        log,
    )
    .await;
    let mut client = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: site\r\n\r\n")
        .await
        .unwrap();
    let mut start = vec![0u8; 64 << 10];
    client.read_exact(&mut start).await.unwrap();
    assert!(start.starts_with(b"HTTP/1.1 200"));
    drop(client);
    let lines = captured.access_lines(1).await;
    assert_eq!(lines[0]["url"], "/big");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["complete"], false, "{}", lines[0]);
    let sent = lines[0]["bytes"].as_u64().unwrap();
    assert!(sent < SIZE as u64, "{}", lines[0]);
}

#[tokio::test]
async fn with_the_access_log_off_no_line_is_written() {
    let (captured, log) = Captured::install();
    let origin = Origin::start().await;
    origin.route("/quiet", |_, _| Reply::ok("quiet"));
    let proxy = start_logging_to(
        &format!("upstream = \"http://{}\"\naccess-log = false", origin.addr),
        log,
    )
    .await;
    assert_eq!(get(proxy.addr, "/quiet", &[]).await.text(), "quiet");
    captured.access_lines(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_with_log_format_json_writes_access_lines_as_json_to_stderr() {
    let origin = Origin::start().await;
    origin.route("/doc", |_, _| {
        Reply::ok("doc").header("cache-control", "max-age=60")
    });
    // The access log is on by default.
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["serve", "--listen", "127.0.0.1:0", "--admin", "false"])
            .args(["--upstream", &format!("http://{}", origin.addr)])
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut startup = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut startup)
        .unwrap();
    let addr: std::net::SocketAddr = startup
        .split("listening on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in the startup line {startup:?}"));
    let stderr = child.0.stderr.take().unwrap();
    let written = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let written = written.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                written.lock().unwrap().push(line.unwrap());
            }
        })
    };
    for _ in 0..2 {
        let got = get(addr, "/doc", &[("host", "site")]).await;
        assert_eq!(got.text(), "doc");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while written
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(ACCESS))
        .count()
        < 2
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(child);
    reader.join().unwrap();
    let lines: Vec<Value> = written
        .lock()
        .unwrap()
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let access: Vec<&Value> = lines.iter().filter(|l| l["target"] == ACCESS).collect();
    assert_eq!(access.len(), 2, "{lines:#?}");
    for (line, cache) in access.iter().zip(["MISS", "HIT"]) {
        assert_eq!(
            (
                &line["method"],
                &line["url"],
                &line["status"],
                &line["cache"]
            ),
            (
                &Value::from("GET"),
                &Value::from("/doc"),
                &Value::from(200),
                &Value::from(cache)
            ),
            "{line}"
        );
        assert!(line["duration_ms"].as_f64().is_some(), "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
    }
}
