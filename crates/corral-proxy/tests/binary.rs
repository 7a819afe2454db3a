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
    assert!(printed.contains("max-bytes = \"256MiB\""), "{printed}");
    assert!(printed.contains("fetch-timeout = \"30s\""), "{printed}");
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
    for everything in ["*", "0.0.0.0/0"] {
        let open = Command::new(CORRAL)
            .args([
                "check-config",
                "--listen",
                "0.0.0.0:0",
                "--allow",
                everything,
            ])
            .output()
            .unwrap();
        assert_eq!(open.status.code(), Some(2), "--allow {everything}");
        let meant = Command::new(CORRAL)
            .args([
                "check-config",
                "--listen",
                "0.0.0.0:0",
                "--allow",
                everything,
            ])
            .args(["--open-proxy", "true"])
            .output()
            .unwrap();
        assert!(
            meant.status.success(),
            "--allow {everything} --open-proxy true"
        );
    }
    let short = Command::new(CORRAL)
        .args(["check-config", "--admin-token", "s3cret"])
        .output()
        .unwrap();
    assert_eq!(short.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&short.stderr).contains("16 bytes"));
    let typo = Command::new(CORRAL)
        .args(["check-config", "--max-bytes", "lots"])
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

#[test]
fn the_environment_is_over_the_file_and_flags_are_over_both() {
    let out = Command::new(CORRAL)
        .args(["check-config", "--config", &example_config()])
        .args(["--max-connections", "9"])
        .env("CORRAL_MAX_CONNECTIONS", "8")
        .env("CORRAL_MAX_BYTES", "1GiB")
        .env("CORRAL_NO_SUCH_OPTION", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("max-bytes = \"1GiB\""), "{printed}");
    assert!(printed.contains("max-connections = 9"), "{printed}");
    let warned = String::from_utf8(out.stderr).unwrap();
    assert!(warned.contains("CORRAL_NO_SUCH_OPTION"), "{warned}");
}

#[test]
fn old_names_still_work_with_a_warning() {
    let out = Command::new(CORRAL)
        .args(["check-config", "--memory", "1GiB"])
        .env("CORRAL_RESPONSE_TIMEOUT", "5s")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("max-bytes = \"1GiB\""), "{printed}");
    assert!(printed.contains("fetch-timeout = \"5s\""), "{printed}");
    let warned = String::from_utf8(out.stderr).unwrap();
    assert!(
        warned.contains("`memory` (in the command line) is deprecated: it is now `max-bytes`"),
        "{warned}"
    );
    assert!(warned.contains("`response-timeout`"), "{warned}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_until_sigterm_and_finishes_the_request_in_flight() {
    let origin = Origin::start().await;
    origin.route("/slow", |_, _| {
        Reply::ok("finished in time").delay(Duration::from_millis(700))
    });
    let mut served = Served::start(
        &[
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--admin".into(),
            "false".into(),
            "--upstream".into(),
            format!("http://{}", origin.addr),
        ],
        &[],
    );
    let addr = served.addr;
    assert!(served.line.contains("reverse proxy"), "{}", served.line);
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
    sigterm(&served);
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(
        (status.as_u16(), &body[..]),
        (200, &b"finished in time"[..])
    );
    let code = exit_code(&mut served);
    assert_eq!(code, Some(0), "a graceful shutdown exits 0");
}

#[tokio::test]
async fn sighup_reloads_the_configuration_file() {
    let (first, second) = (Origin::start().await, Origin::start().await);
    first.route("/", |_, _| Reply::ok("first"));
    second.route("/", |_, _| Reply::ok("second"));
    let file = std::env::temp_dir().join(format!("corral-sighup-{}.toml", std::process::id()));
    let config = |origin: &Origin| {
        format!(
            "listen = \"127.0.0.1:0\"\nadmin = false\nupstream = \"http://{}\"\n",
            origin.addr
        )
    };
    std::fs::write(&file, config(&first)).unwrap();
    let served = Served::start(&["--config".into(), file.display().to_string()], &[]);
    let url = format!("http://{}/", served.addr);
    let get = || async {
        let response = origin::client().get(url.parse().unwrap()).await.unwrap();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    };
    assert_eq!(get().await, "first");
    std::fs::write(&file, config(&second)).unwrap();
    let hangup = Command::new("kill")
        .args(["-HUP", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hangup.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while get().await != "second" {
        assert!(Instant::now() < deadline, "SIGHUP did not reload the file");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_file(&file);
}

/// A `corral serve` process, killed when dropped (a failing test leaves none behind).
struct Served {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    /// The startup line.
    line: String,
}

impl Served {
    fn start(args: &[String], env: &[(&str, &str)]) -> Served {
        let mut child = Command::new(CORRAL)
            .arg("serve")
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("listening on http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in the startup line {line:?}"));
        Served { child, addr, line }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_binaries_share_a_pool_and_survive_one_being_killed() {
    let origin = Origin::start().await;
    for i in 0..40 {
        origin.route(&format!("/p/{i}"), move |_, _| {
            Reply::ok(&format!("p {i}"))
                .header("cache-control", "max-age=60")
                .delay(Duration::from_millis(50))
        });
    }
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut children: Vec<Served> = ports
        .iter()
        .map(|port| {
            let args = [
                "--listen".to_owned(),
                format!("127.0.0.1:{port}"),
                "--admin".to_owned(),
                "false".to_owned(),
                "--upstream".to_owned(),
                format!("http://{}", origin.addr),
                "--peers".to_owned(),
                peers.clone(),
            ];
            Served::start(&args, &[("CORRAL_PEER_SECRET", "binary-test-peer-secret")])
        })
        .collect();
    let client = origin::client();
    let fetch = |addr: std::net::SocketAddr, i: usize| {
        let client = client.clone();
        async move {
            let response = client
                .get(format!("http://{addr}/p/{i}").parse().unwrap())
                .await
                .expect("a response");
            let status = response.status().as_u16();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    // 60 concurrent requests for each of 20 URLs, spread over the three.
    let addrs: Vec<_> = children.iter().map(|served| served.addr).collect();
    let jobs: Vec<_> = (0..20 * 3)
        .map(|n| tokio::spawn(fetch(addrs[n % 3], n % 20)))
        .collect();
    for (n, job) in jobs.into_iter().enumerate() {
        assert_eq!(job.await.unwrap(), (200, format!("p {}", n % 20)));
    }
    for i in 0..20 {
        assert_eq!(origin.count(&format!("/p/{i}")), 1, "/p/{i}");
    }
    // SIGKILL one; the others serve everything, its URLs included.
    children[2].kill();
    for i in 20..40 {
        assert_eq!(fetch(addrs[i % 2], i).await, (200, format!("p {i}")));
    }
}

/// Sends GETs for `/d/0` .. `/d/{n}` to a proxy; returns the bodies, ages and
/// `X-Cache` values.
async fn fetch_all(addr: std::net::SocketAddr, n: usize) -> Vec<(String, u64, String)> {
    let client = origin::client();
    let mut got = Vec::new();
    for i in 0..n {
        let url = format!("http://{addr}/d/{i}");
        let response = client.get(url.parse().unwrap()).await.expect("a response");
        assert_eq!(response.status(), 200, "{url}");
        let age = response
            .headers()
            .get("age")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        let x_cache = response.headers()["x-cache"].to_str().unwrap().to_owned();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        got.push((String::from_utf8(body.to_vec()).unwrap(), age, x_cache));
    }
    got
}

/// Sends SIGTERM to a `corral serve`.
fn sigterm(served: &Served) {
    let term = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
}

/// Waits (at most ten seconds) for a `corral serve` to exit; its exit code.
fn exit_code(served: &mut Served) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            return status.code();
        }
        assert!(
            Instant::now() < deadline,
            "corral did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_disk_tier_a_restart_after_sigterm_or_sigkill_is_warm() {
    const N: usize = 60;
    // The last object is over `max-body-bytes`: it is written to disk as it arrives,
    // and read back from its file, in chunks, after each restart.
    let object = |i: usize| format!("object {i} ").repeat(if i == N - 1 { 300_000 } else { 200 });
    let origin = Origin::start().await;
    for i in 0..N {
        let body = object(i);
        origin.route(&format!("/d/{i}"), move |_, _| {
            Reply::ok(&body).header("cache-control", "max-age=600")
        });
    }
    let dir = std::env::temp_dir().join(format!("corral-proxy-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let args = [
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--admin".into(),
        "false".into(),
        "--upstream".into(),
        format!("http://{}", origin.addr),
        "--disk".into(),
        dir.display().to_string(),
        "--disk-size".into(),
        "64MiB".into(),
        "--max-body-bytes".into(),
        "1MiB".into(),
        "--max-disk-body".into(),
        "8MiB".into(),
    ];
    let expected: Vec<String> = (0..N).map(object).collect();
    let mut served = Served::start(&args, &[]);
    let first = fetch_all(served.addr, N).await;
    assert!(first.iter().map(|(b, _, _)| b).eq(expected.iter()));
    // The streamed file is sealed and put in place just after its last byte is read.
    for _ in 0..500 {
        let writing = std::fs::read_dir(dir.join("tmp")).map_or(0, Iterator::count);
        if writing == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let fetched = |origin: &Origin| {
        (0..N)
            .map(|i| origin.count(&format!("/d/{i}")))
            .sum::<usize>()
    };
    assert_eq!(fetched(&origin), N);

    sigterm(&served);
    exit_code(&mut served);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let mut served = Served::start(&args, &[]);
    let warm = fetch_all(served.addr, N).await;
    assert!(warm.iter().map(|(b, _, _)| b).eq(expected.iter()));
    assert_eq!(fetched(&origin), N, "after SIGTERM: every object from disk");
    assert!(
        warm.iter().all(|(_, age, _)| *age >= 1),
        "ages go on from before the restart"
    );
    assert!(
        warm.iter().all(|(_, _, x_cache)| x_cache == "HIT"),
        "a disk hit is a hit"
    );

    served.kill(); // SIGKILL
    let served = Served::start(&args, &[]);
    let warm = fetch_all(served.addr, N).await;
    assert!(warm.iter().map(|(b, _, _)| b).eq(expected.iter()));
    assert_eq!(fetched(&origin), N, "after SIGKILL: every object from disk");
    drop(served);
    std::fs::remove_dir_all(&dir).unwrap();
}
