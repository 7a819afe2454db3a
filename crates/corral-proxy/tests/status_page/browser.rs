//! The status page in a real browser: headless Chromium, driven through chromedriver,
//! loads the page from a running reverse proxy and shows its numbers move as requests
//! go through the proxy; a screenshot is saved.
//!
//! Chromium and chromedriver are required: without them the test fails and says
//! what to install, unless `CORRAL_SKIP_BROWSER_TEST` is set (`scripts/test.sh` sets
//! it, and says why, when it cannot install them), when it says it is skipped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::Scratch;
use crate::origin::{Origin, Reply};
use crate::support::{get, put_peers, start};
use crate::webdriver::{Browser, Driver, save};

/// The longest the whole test may take.
const TEST_LIMIT: Duration = Duration::from_secs(150);

/// What the page shows, read from its DOM.
const READ_PAGE: &str = r"
    const value = (id) => document.getElementById(id).dataset.value;
    const row = (table, name) => {
        for (const tr of document.querySelectorAll(`#${table} tbody tr`)) {
            if (tr.cells[0].textContent === name) return Number(tr.cells[1].dataset.value);
        }
        return null;
    };
    return {
        loaded: value('requests') !== undefined && value('requests') !== '',
        requests: Number(value('requests')),
        rps: Number(value('rps') || 0),
        hits: row('responses', 'hit'),
        collapsed: Number(value('collapsed') || 0),
        client_errors: row('errors', 'client error 4xx'),
        hit_ratio: value('hit-ratio-total'),
        keys: [...document.querySelectorAll('#hot-keys tbody td.key')].map((td) => td.textContent),
        pool: [...document.querySelectorAll('#pool tbody td.key')].map((td) => td.textContent),
        injected: document.getElementById('injected') !== null,
        live: document.getElementById('live').dataset.state,
    };
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_in_a_browser_shows_the_numbers_move_as_requests_are_made() {
    let browser = match Browser::find() {
        Ok(browser) => browser,
        Err(missing) if std::env::var_os("CORRAL_SKIP_BROWSER_TEST").is_some() => {
            eprintln!(
                "skipping the status page's browser test (CORRAL_SKIP_BROWSER_TEST is set): {missing}"
            );
            return;
        }
        Err(missing) => panic!(
            "the status page's browser test needs headless Chromium and chromedriver: {missing}; \
             ./scripts/test.sh installs them, or set CORRAL_SKIP_BROWSER_TEST=1 to skip this test"
        ),
    };
    tokio::time::timeout(TEST_LIMIT, shows_the_numbers_move(browser))
        .await
        .unwrap_or_else(|_| panic!("the browser test did not finish within {TEST_LIMIT:?}"));
}

async fn shows_the_numbers_move(browser: Browser) {
    let origin = Origin::start().await;
    for path in [
        "/products/42",
        "/products/7",
        "/products/19",
        "/css/site.css",
    ] {
        origin.route(path, |_, _| {
            Reply::ok("a product").header("cache-control", "max-age=300")
        });
    }
    origin.route("/search", |_, _| {
        Reply::ok("results").header("cache-control", "no-store")
    });
    origin.route("/slow", |_, _| {
        Reply::ok("slow")
            .header("cache-control", "max-age=300")
            .delay(Duration::from_millis(400))
    });
    origin.route("/gone", |_, _| Reply::ok("gone").status(404));
    let disk = Scratch::new("corral-status-page-disk");
    let proxy = start(&format!(
        "upstream = \"http://{}\"\npeer-secret = \"0123456789abcdef-browser\"\n\
         disk = \"{}\"\ndisk-size = \"256MiB\"\nmax-bytes = \"64MiB\"",
        origin.addr,
        disk.0.display()
    ))
    .await;
    let members = [format!("http://{}", proxy.addr)];
    let admin = proxy.admin.expect("the admin listener");
    assert_eq!(put_peers(admin, &members).await.status, 200);

    let driver = Driver::start(&browser).await;
    let session = driver.session(&browser).await;
    session.open(&proxy.admin_url("/")).await;
    let first = wait_for(&session, "the page's first numbers", |page| {
        page["loaded"] == true && page["live"] == "ok"
    })
    .await;
    let requests_before = first["requests"].as_u64().unwrap_or(0);

    // Twenty requests for one slow resource at once: one origin fetch, the others
    // collapsed onto it.
    let slow: Vec<_> = (0..20)
        .map(|_| tokio::spawn(get(proxy.addr, "/slow", &[("host", "shop.example")])))
        .collect();
    for request in slow {
        request.await.expect("a response");
    }
    // A request whose Host is markup: the page must show it as text.
    get(proxy.addr, "/", &[("host", "<img id=injected src=x>")]).await;
    // Traffic with a hot key, until the page has shown it.
    let running = Arc::new(AtomicBool::new(true));
    let traffic = tokio::spawn(traffic(proxy.addr, running.clone()));

    let page = wait_for(&session, "the page to show the requests made", |page| {
        page["requests"].as_u64() >= Some(requests_before + 60)
            && page["rps"].as_f64() > Some(0.0)
            && page["hits"].as_u64() > Some(0)
            && page["collapsed"].as_u64() > Some(0)
            && page["client_errors"].as_u64() > Some(0)
            && page["keys"][0] == "shop.example/products/42"
    })
    .await;
    assert!(
        page["keys"]
            .as_array()
            .is_some_and(|keys| keys.iter().any(|k| k == "<img id=injected src=x>/")),
        "a key with markup is shown as its text: {page}"
    );
    assert_eq!(page["injected"], false, "and not parsed as HTML");
    assert_eq!(
        page["pool"][0],
        format!("http://{} (this one)", proxy.addr),
        "{page}"
    );
    // The requests per second and the hit ratio come from two polls and more: let the
    // page poll a few times under traffic before the picture.
    tokio::time::sleep(Duration::from_secs(5)).await;
    session.fit_to_page().await;
    let png = session.screenshot().await;
    let path = save(&png, "status-page.png");
    eprintln!("the status page's screenshot: {}", path.display());

    running.store(false, Ordering::Relaxed);
    traffic.await.expect("the traffic task");
    session.close().await;
}

/// Requests through the proxy at `addr` while `running`: mostly for one hot product,
/// some for others, a search the cache may not store, and a missing page.
async fn traffic(addr: std::net::SocketAddr, running: Arc<AtomicBool>) {
    let host = [("host", "shop.example")];
    let mut n = 0u64;
    while running.load(Ordering::Relaxed) {
        let path = match n % 20 {
            0 => "/products/7",
            5 => "/products/19",
            9 | 14 => "/css/site.css",
            11 => "/search",
            17 if n % 40 == 17 => "/gone",
            _ => "/products/42",
        };
        get(addr, path, &host).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

/// Reads the page every 200 ms until `done` holds (at most 30 s): the last reading.
async fn wait_for(
    session: &crate::webdriver::Session<'_>,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let mut page = Value::Null;
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            page = session.run(READ_PAGE).await;
            if done(&page) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "waited 30 s for {what}; the page shows {page}"
    );
    page
}
