//! The `corral` binary itself: `check-config`, refusing to start an open proxy,
//! serving, and SIGTERM with a request in flight.

#[path = "../../corral-http/tests/support/mod.rs"]
mod origin;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use origin::{Origin, Reply};

const CORRAL: &str = env!("CARGO_BIN_EXE_corral");

fn example_config() -> String {
    format!("{}/../../corral.example.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_config_prints_the_defaults_and_accepts_the_example_file() {
    let out = Command::new(CORRAL).arg("check-config").output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("listen = \"127.0.0.1:8080\""), "{printed}");
    assert!(printed.contains("admin-listen = \"127.0.0.1:9090\""));
    assert!(printed.contains("memory = \"256MiB\""));
    let out = Command::new(CORRAL)
        .args(["check-config", "--config", &example_config()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_configurations_are_refused_with_exit_code_2_and_a_reason() {
    let open = Command::new(CORRAL)
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(open.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&open.stderr).contains("refusing to run an open proxy"));
    let typo = Command::new(CORRAL)
        .args(["check-config", "--memory", "lots"])
        .output()
        .unwrap();
    assert_eq!(typo.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&typo.stderr).contains("lots"));
    let missing = Command::new(CORRAL)
        .args(["check-config", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent.toml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_until_sigterm_and_finishes_the_request_in_flight() {
    let origin = Origin::start().await;
    origin.route("/slow", |_, _| {
        Reply::ok("finished in time").delay(Duration::from_millis(700))
    });
    let mut child = Command::new(CORRAL)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "false",
            "--upstream",
        ])
        .arg(format!("http://{}", origin.addr))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: std::net::SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the startup line names the address")
        .parse()
        .unwrap();
    assert!(line.contains("reverse proxy"), "{line}");
    let in_flight = tokio::spawn(async move {
        let client = origin::client();
        let response = client
            .get(format!("http://{addr}/slow").parse().unwrap())
            .await
            .expect("a response");
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, body)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(
        (status.as_u16(), &body[..]),
        (200, &b"finished in time"[..])
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            Instant::now() < deadline,
            "corral did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0), "a graceful shutdown exits 0");
}
