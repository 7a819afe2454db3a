//! One case end to end: an origin and a proxy of its own (so cases share nothing, run
//! side by side, and replay alone), the client's connections, then the checks.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use crate::case::{Case, Connection, DISK, Protocol};
use crate::check::check;
use crate::exchange::Seen;
use crate::origin::{Log, Origin};
use crate::report::{Kind, Violation};
use crate::{client, h2c, panics, support};

/// Runs `case` on this thread; what it broke, if anything.
pub(crate) fn run(case: &Case) -> Vec<Violation> {
    let (outcome, panics) = panics::during(case.index, || {
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let outcome = runtime.block_on(exercise(case));
            runtime.shutdown_background();
            outcome
        }))
    });
    let mut violations = match outcome {
        Ok((log, seen)) => {
            let log = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            check(case, &log, &seen, &panics)
        }
        Err(_) => vec![Violation::new(
            Kind::Panic,
            format!("the case did not finish: {}", panics.join("; ")),
        )],
    };
    violations.sort_by_key(|v| v.kind);
    violations
}

/// Starts the origin and the proxy, and talks to the proxy.
async fn exercise(case: &Case) -> (Arc<Mutex<Log>>, Vec<Seen>) {
    let origin = Origin::start(case.index, case.plans.clone()).await;
    let disk = DiskDir::for_case(case.index);
    let options = case
        .proxy_options
        .replace(DISK, &disk.0.display().to_string());
    let tls = match case.tls {
        true => crate::tls::proxy_options(),
        false => String::new(),
    };
    let proxy = support::start(&format!(
        "upstream = \"http://{}\"\nadmin = false\nfetch-timeout = \"5s\"\n{options}{tls}",
        origin.addr
    ))
    .await;
    let (connections, replay) = case.split_replay();
    let mut seen = Vec::new();
    if case.concurrent {
        let talks = connections.iter().map(|c| talk(proxy.addr, case.tls, c));
        seen.extend(futures_util::future::join_all(talks).await);
    } else {
        for connection in connections {
            seen.push(talk(proxy.addr, case.tls, connection).await);
        }
    }
    origin.settled().await;
    seen.push(talk(proxy.addr, case.tls, replay).await);
    origin.settled().await;
    (origin.log, seen)
}

/// Talks to the proxy over one of the case's connections, in its protocol (over TLS
/// when `tls`).
async fn talk(proxy: SocketAddr, tls: bool, connection: &Connection) -> Seen {
    match connection.protocol {
        Protocol::Http1 { pipelined } => {
            client::converse(proxy, tls, &connection.requests, pipelined).await
        }
        Protocol::H2c { concurrent } => {
            h2c::converse(proxy, tls, &connection.requests, concurrent).await
        }
    }
}

/// A case's own directory for a disk tier, removed when the case ends.
struct DiskDir(std::path::PathBuf);

impl DiskDir {
    fn for_case(index: u64) -> DiskDir {
        let name = format!("corral-framing-disk-{}-{index}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        DiskDir(dir)
    }
}

impl Drop for DiskDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
