//! A property-based fuzzer of the proxy's message framing, HTTP/1.1 and HTTP/2, plain
//! (h2c) or over TLS.
//!
//! Each case, drawn from a seed and its index alone, starts a raw-socket origin and a
//! reverse proxy in front of it, writes generated requests to the proxy (every
//! method, every body framing: none, `Content-Length`, chunked, both, malformed;
//! `Expect: 100-continue`; pipelined or not; HTTP/1.1 or h2c) while the origin answers
//! with generated framings (lengths, chunks with extensions and trailers, both
//! lengths at once, close-delimited, interim responses, an unasked-for 101, 204 and
//! 304 with bytes after them, junk or a whole second response after the body, `Age`
//! lines of its own: none, one, two, or one that is no number), then
//! replays every target to see what the cache kept. Every byte is kept on both
//! sides, both sides parse strictly, and the invariants of [`check`] are checked.
//!
//! `FRAMING_SEED`, `FRAMING_CASES`, `FRAMING_CASE`, `FRAMING_MAX_FAILURES`: see
//! [`settings`]; `README.md` beside this file says how to run long and replay a case.

#[path = "../support/mod.rs"]
mod support;

mod answer;
mod case;
mod check;
mod client;
mod exchange;
mod h2c;
mod origin;
mod panics;
mod report;
mod run;
mod settings;
mod tls;
mod wire;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use case::Case;
use report::{Kind, Violation};
use settings::Settings;

/// Cases running at once (each on a thread and a runtime of its own).
fn jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
}

#[test]
fn every_message_keeps_its_framing_through_the_proxy() {
    let settings = Settings::from_env();
    panics::install();
    let started = Instant::now();
    let next = AtomicU64::new(settings.cases.start);
    let failed: Mutex<Vec<(Case, Vec<Violation>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs() {
            scope.spawn(|| {
                loop {
                    if failed.lock().unwrap().len() >= settings.max_failures {
                        return;
                    }
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    if index >= settings.cases.end {
                        return;
                    }
                    let case = Case::generate(settings.seed, index);
                    let violations = run::run(&case);
                    if !violations.is_empty() {
                        failed.lock().unwrap().push((case, violations));
                    }
                }
            });
        }
    });
    let ran = next.load(Ordering::SeqCst).min(settings.cases.end) - settings.cases.start;
    let mut failed = failed.into_inner().unwrap();
    println!(
        "framing: {ran} case(s) from seed {:#x} in {:.1?}, {} failed",
        settings.seed,
        started.elapsed(),
        failed.len()
    );
    if failed.is_empty() {
        return;
    }
    failed.sort_by_key(|(case, _)| case.index);
    panic!("{}", failure_report(&settings, &failed));
}

/// The failing cases: how to replay each, what it did, and what it broke.
fn failure_report(settings: &Settings, failed: &[(Case, Vec<Violation>)]) -> String {
    let mut kinds: BTreeMap<Kind, Vec<u64>> = BTreeMap::new();
    for (case, violations) in failed {
        for violation in violations {
            let cases = kinds.entry(violation.kind).or_default();
            if cases.last() != Some(&case.index) {
                cases.push(case.index);
            }
        }
    }
    let mut report = format!(
        "{} case(s) broke the framing invariants (seed {:#x}; stopped after {} failing):\n",
        failed.len(),
        settings.seed,
        settings.max_failures
    );
    for (kind, cases) in &kinds {
        let _ = writeln!(report, "  {kind:?}: case(s) {cases:?}");
    }
    for (case, violations) in failed {
        let _ = writeln!(
            report,
            "\n=== case {} — replay: FRAMING_SEED={:#x} FRAMING_CASE={} cargo test -p corral-proxy --test framing -- --nocapture\n{case}",
            case.index, settings.seed, case.index
        );
        for violation in violations {
            let _ = write!(report, "{violation}");
        }
    }
    report
}
