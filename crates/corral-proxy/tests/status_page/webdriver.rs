//! A small W3C WebDriver client: chromedriver on a free loopback port, one headless
//! Chromium session, pages, scripts and screenshots. Every call has a time limit, and
//! dropping the [`Driver`] kills chromedriver and every browser process it started
//! (their process group), then removes the browser's profile.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// How long one WebDriver call may take (starting a browser included).
const CALL_LIMIT: Duration = Duration::from_secs(60);

/// The flags headless Chromium needs on a machine with no network but loopback (and
/// as root, without a sandbox): without them it waits on lookups and updates.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1280,1120",
];

/// The programs the browser test drives.
pub(crate) struct Browser {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

impl Browser {
    /// Chromium and chromedriver, from `CORRAL_CHROMIUM` and `CORRAL_CHROMEDRIVER` or
    /// the `PATH` (`chromium`, `chromium-browser`, `google-chrome`; `chromedriver`), or
    /// what is missing.
    pub(crate) fn find() -> Result<Browser, String> {
        let chromium = program(
            "CORRAL_CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        )
        .ok_or("Chromium is not installed (on Debian: apt-get install chromium)")?;
        let chromedriver = program("CORRAL_CHROMEDRIVER", &["chromedriver"])
            .ok_or("chromedriver is not installed (on Debian: apt-get install chromium-driver)")?;
        Ok(Browser {
            chromium,
            chromedriver,
        })
    }
}

/// The program `variable` names, or the first of `names` on the `PATH`.
fn program(variable: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// A running chromedriver.
pub(crate) struct Driver {
    process: Child,
    base: String,
    /// The browser's profile and chromedriver's log.
    dir: PathBuf,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Driver {
    /// Starts `browser`'s chromedriver on a free port and waits until it is ready.
    pub(crate) async fn start(browser: &Browser) -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir =
            std::env::temp_dir().join(format!("corral-status-page-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let process = std::os::unix::process::CommandExt::process_group(
            Command::new(&browser.chromedriver)
                .arg(format!("--port={port}"))
                .arg(format!(
                    "--log-path={}",
                    dir.join("chromedriver.log").display()
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            0,
        )
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", browser.chromedriver.display()));
        let driver = Driver {
            process,
            base: format!("http://127.0.0.1:{port}"),
            dir,
            client: Client::builder(TokioExecutor::new()).build_http(),
        };
        let ready = async {
            loop {
                if let Ok(status) = driver.call(Method::GET, "/status", None).await
                    && status["ready"] == true
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(20), ready)
            .await
            .is_err()
        {
            panic!("chromedriver not ready within 20 s; {}", driver.log_tail());
        }
        driver
    }

    /// Opens a headless Chromium of `browser`, with a fresh profile.
    pub(crate) async fn session(&self, browser: &Browser) -> Session<'_> {
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!(
            "--user-data-dir={}",
            self.dir.join("profile").display()
        ));
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": browser.chromium, "args": args },
        }}});
        let created = self
            .call(Method::POST, "/session", Some(capabilities))
            .await
            .unwrap_or_else(|e| panic!("cannot start Chromium: {e}; {}", self.log_tail()));
        let id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {created}"))
            .to_owned();
        Session { driver: self, id }
    }

    /// One WebDriver call: its `value`, or the error it answered.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            let answer: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            if status.is_success() {
                Ok(answer["value"].clone())
            } else {
                Err(format!("{status}: {}", answer["value"]))
            }
        };
        tokio::time::timeout(CALL_LIMIT, exchange)
            .await
            .map_err(|_| format!("no answer from chromedriver within {CALL_LIMIT:?}"))?
    }

    /// The end of chromedriver's log, for a failure's message.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("chromedriver.log")).unwrap_or_default();
        let start = log.len().saturating_sub(2000);
        let start = (start..log.len())
            .find(|&i| log.is_char_boundary(i))
            .unwrap_or(log.len());
        format!("chromedriver's log ends:\n{}", &log[start..])
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver leads its own process group, which the browser's processes
        // joined: kill them all, then reap chromedriver.
        let group = format!("-{}", self.process.id());
        let killed = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        if !killed.is_ok_and(|s| s.success()) {
            let _ = self.process.kill();
        }
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A browser session.
pub(crate) struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl Session<'_> {
    /// Loads `url` (returns once the page has loaded).
    pub(crate) async fn open(&self, url: &str) {
        self.call(Method::POST, "url", json!({ "url": url })).await;
    }

    /// Runs `script` (a function body) in the page: what it returns.
    pub(crate) async fn run(&self, script: &str) -> Value {
        self.call(
            Method::POST,
            "execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// Makes the window as tall as the page, so that a screenshot shows all of it.
    pub(crate) async fn fit_to_page(&self) {
        let sizes = self
            .run(
                "return [window.outerWidth, document.documentElement.scrollHeight \
                 + window.outerHeight - window.innerHeight];",
            )
            .await;
        let (width, height) = (sizes[0].as_u64(), sizes[1].as_u64());
        self.call(
            Method::POST,
            "window/rect",
            json!({ "width": width, "height": height }),
        )
        .await;
    }

    /// A PNG of the window.
    pub(crate) async fn screenshot(&self) -> Vec<u8> {
        let encoded = self.call(Method::GET, "screenshot", Value::Null).await;
        let png = base64(encoded.as_str().expect("a base64 string"))
            .expect("the screenshot is valid base64");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
        png
    }

    /// Ends the session (closing the browser).
    pub(crate) async fn close(self) {
        let path = format!("/session/{}", self.id);
        let _ = self.driver.call(Method::DELETE, &path, None).await;
    }

    async fn call(&self, method: Method, command: &str, body: Value) -> Value {
        let path = format!("/session/{}/{command}", self.id);
        let body = (!body.is_null()).then_some(body);
        self.driver
            .call(method, &path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {command}: {e}"))
    }
}

/// Decodes standard base64 (what WebDriver sends screenshots in).
fn base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let digits = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    let (mut bits, mut held) = (0u32, 0);
    for &c in digits {
        bits = ((bits << 6) | u32::from(value(c)?)) & 0xffff;
        held += 6;
        if held >= 8 {
            held -= 8;
            out.push((bits >> held) as u8);
        }
    }
    Some(out)
}

/// Saves a screenshot as `name` in the test's target directory (and where
/// `CORRAL_STATUS_SCREENSHOT` says, to refresh the one in the docs); returns its path.
pub(crate) fn save(png: &[u8], name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, png).expect("the screenshot is written");
    if let Some(also) = std::env::var_os("CORRAL_STATUS_SCREENSHOT") {
        std::fs::write(&also, png).expect("the screenshot is written where asked");
    }
    path
}
