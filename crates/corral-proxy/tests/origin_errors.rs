//! Origin failures say why: the `502` or `504` names the cause in one line (a name
//! that does not resolve, a refused port, a connection or a response that did not
//! come in time, a connection reset or closed mid-head), and the real `corral` binary
//! logs one WARN line per failure (however many requests waited on it), with the
//! cause, the URL and the address, and counts it by cause. (A TLS origin whose
//! certificate is not trusted is in `tls_origin.rs`.)

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::raw_origin::{Answer, BodyFirst, RawOrigin};
use support::{KillOnDrop, get, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A port nothing listens on (bound, then let go).
fn refused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// An origin that reads each request's head, then does `then` with the connection.
async fn origin_that(then: fn(tokio::net::TcpStream)) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                then(stream);
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_refused_port_is_a_502_that_names_the_address_the_client_asked_for() {
    let proxy = start("").await;
    let addr = refused_addr();
    let got = get(proxy.addr, &format!("http://{addr}/x"), &[]).await;
    assert_eq!(got.status, 502, "{}", got.text());
    assert_eq!(got.text(), format!("connection refused by {addr}\n"));
    assert_eq!(
        got.header("content-length"),
        got.body.len().to_string(),
        "framed by the body really sent"
    );
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_a_502_that_names_it() {
    let proxy = start("").await;
    let started = Instant::now();
    let got = get(proxy.addr, "http://nonexistent.invalid/x", &[]).await;
    assert_eq!(got.status, 502, "{}", got.text());
    assert!(
        got.text()
            .starts_with("cannot resolve nonexistent.invalid: "),
        "{}",
        got.text()
    );
    assert_eq!(got.text().lines().count(), 1, "{}", got.text());
    assert!(started.elapsed() < Duration::from_secs(5), "fails fast");
}

#[tokio::test]
async fn an_origin_that_never_answers_is_a_504_that_names_fetch_timeout() {
    let silent = origin_that(|stream| {
        // Held open, never answered.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(stream);
        });
    })
    .await;
    let proxy = start(&format!(
        "upstream = \"http://{silent}\"\nfetch-timeout = \"300ms\""
    ))
    .await;
    let started = Instant::now();
    let got = get(proxy.addr, "/slow", &[]).await;
    assert_eq!(got.status, 504, "{}", got.text());
    assert_eq!(got.text(), "no response within fetch-timeout (300ms)\n");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_connection_not_made_within_connect_timeout_is_a_504_that_names_it() {
    // A listener that accepts nothing, its queue full: the next connection's SYN
    // goes unanswered.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(0).unwrap();
    let addr = full.local_addr().unwrap();
    let mut queued = Vec::new();
    while let Ok(Ok(stream)) = tokio::time::timeout(
        Duration::from_millis(200),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    {
        queued.push(stream);
    }
    let proxy = start(&format!(
        "upstream = \"http://{addr}\"\nconnect-timeout = \"300ms\""
    ))
    .await;
    let started = Instant::now();
    let got = get(proxy.addr, "/x", &[("host", "site")]).await;
    assert_eq!(got.status, 504, "{}", got.text());
    assert_eq!(
        got.text(),
        "no connection to the origin within connect-timeout (300ms)\n"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    drop((full, queued));
}

#[tokio::test]
async fn an_origin_that_resets_the_connection_mid_head_is_a_502_that_says_so() {
    let resetting = origin_that(|stream| {
        tokio::spawn(async move {
            let mut stream = stream;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-le").await;
            // A zero linger: closing sends a reset at once (and never blocks).
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
            drop(stream);
        });
    })
    .await;
    let proxy = start(&format!("upstream = \"http://{resetting}\"")).await;
    let got = get(proxy.addr, "/reset", &[]).await;
    assert_eq!(got.status, 502, "{}", got.text());
    assert_eq!(got.text(), "connection reset by the origin\n");
}

#[tokio::test]
async fn an_origin_that_closes_mid_head_is_a_502_that_says_so() {
    let closing = RawOrigin::start(BodyFirst::Yes, |_| {
        Answer::WriteAndClose(b"HTTP/1.1 200 OK\r\ncontent-le".to_vec())
    })
    .await;
    let proxy = start(&format!("upstream = \"http://{}\"", closing.addr)).await;
    let got = get(proxy.addr, "/closed", &[]).await;
    assert_eq!(got.status, 502, "{}", got.text());
    assert_eq!(
        got.text(),
        "the origin closed the connection before a complete response\n"
    );
}

#[tokio::test]
async fn a_reverse_proxy_does_not_tell_clients_where_its_origin_is() {
    let proxy = start("upstream = \"http://nonexistent.invalid:8080\"").await;
    let got = get(proxy.addr, "/x", &[("host", "site")]).await;
    assert_eq!(got.status, 502, "{}", got.text());
    assert!(
        got.text().starts_with("cannot resolve the origin's name: "),
        "{}",
        got.text()
    );
    assert!(!got.text().contains("nonexistent"), "{}", got.text());
}

#[tokio::test]
async fn the_allow_list_still_refuses_at_connection_with_a_403() {
    // `localhost` by name, allowed by its name rule, resolves only to loopback.
    let proxy = start("allow = [\"localhost\"]").await;
    let origin = RawOrigin::start(BodyFirst::Yes, |_| Answer::Close).await;
    let url = format!("http://localhost:{}/x", origin.addr.port());
    let got = get(proxy.addr, &url, &[]).await;
    assert_eq!(got.status, 403, "{}", got.text());
    assert!(origin.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_logs_one_warn_line_per_failure_with_its_cause_and_counts_it() {
    let refused = refused_addr();
    let served = Logging::start(&format!("http://{refused}"), "30s");
    let got = get(served.addr, "/down", &[("host", "site")]).await;
    assert_eq!(
        (got.status.as_u16(), got.text()),
        (502, "connection refused by the origin\n")
    );
    let (lines, metrics) = served.finish(1).await;
    let warnings: Vec<&Value> = lines.iter().filter(|l| l["level"] == "WARN").collect();
    assert_eq!(warnings.len(), 1, "one WARN line: {lines:#?}");
    let warning = warnings[0];
    assert_eq!(
        (
            &warning["message"],
            &warning["cause"],
            &warning["url"],
            &warning["addr"]
        ),
        (
            &Value::from("origin request failed: connection refused by the origin"),
            &Value::from("refused"),
            &Value::from(format!("http://{refused}/down")),
            &Value::from(refused.to_string()),
        ),
        "{warning}"
    );
    assert_eq!(counted(&metrics, "refused"), Some(1), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_collapsed_on_one_fetch_that_timed_out_log_it_once() {
    let silent = origin_that(|stream| {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(stream);
        });
    })
    .await;
    let served = Logging::start(&format!("http://{silent}"), "500ms");
    let addr = served.addr;
    let requests: Vec<_> = (0..5)
        .map(|_| tokio::spawn(async move { get(addr, "/same", &[("host", "site")]).await }))
        .collect();
    for request in requests {
        let got = request.await.unwrap();
        assert_eq!(
            (got.status.as_u16(), got.text()),
            (504, "no response within fetch-timeout (500ms)\n")
        );
    }
    let (lines, metrics) = served.finish(5).await;
    let warnings: Vec<&Value> = lines.iter().filter(|l| l["level"] == "WARN").collect();
    assert_eq!(warnings.len(), 1, "one fetch, one WARN line: {lines:#?}");
    assert_eq!(warnings[0]["cause"], "fetch_timeout", "{}", warnings[0]);
    assert_eq!(counted(&metrics, "fetch_timeout"), Some(1), "{metrics}");
}

/// `corral_http_origin_errors_total` for `cause`, in Prometheus text.
fn counted(metrics: &str, cause: &str) -> Option<u64> {
    metrics
        .lines()
        .find(|line| {
            line.starts_with("corral_http_origin_errors_total")
                && line.contains(&format!("cause=\"{cause}\""))
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// A `corral serve` reverse proxy in front of `upstream`, logging JSON lines (at
/// INFO) that are collected as it writes them.
struct Logging {
    child: KillOnDrop,
    addr: SocketAddr,
    admin: SocketAddr,
    written: Arc<Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Logging {
    fn start(upstream: &str, fetch_timeout: &str) -> Logging {
        let mut child = KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_corral"))
                .args(["serve", "--listen", "127.0.0.1:0"])
                .args(["--admin-listen", "127.0.0.1:0"])
                .args(["--upstream", upstream])
                .args(["--fetch-timeout", fetch_timeout])
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
        let address_after = |marker: &str| -> SocketAddr {
            startup
                .split(marker)
                .nth(1)
                .and_then(|rest| rest.split([' ', ')']).next())
                .and_then(|addr| addr.parse().ok())
                .unwrap_or_else(|| panic!("no {marker} address in {startup:?}"))
        };
        let (addr, admin) = (
            address_after("listening on http://"),
            address_after("(admin: http://"),
        );
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
        Logging {
            child,
            addr,
            admin,
            written,
            reader,
        }
    }

    /// Waits for the access lines of `requests` (each written after whatever its
    /// request logged), reads `/metrics`, stops the proxy: every line it wrote, parsed,
    /// and the metrics.
    async fn finish(self, requests: usize) -> (Vec<Value>, String) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let accessed = || {
            self.written
                .lock()
                .unwrap()
                .iter()
                .filter(|line| line.contains("corral::access"))
                .count()
        };
        while accessed() < requests && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let admin = self.admin;
        let metrics = get(admin, &format!("http://{admin}/metrics"), &[]).await;
        drop(self.child);
        self.reader.join().unwrap();
        let lines = self
            .written
            .lock()
            .unwrap()
            .iter()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            })
            .collect();
        (lines, metrics.text().to_owned())
    }
}
