//! Logs (`tracing`, as text or JSON lines) and metrics (the Prometheus exporter behind
//! the `metrics` facade, rendered by the admin API's `/metrics`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::dynamic_filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Whether log lines are JSON (else text): both formats' layers are installed, each
/// writing while this says so, so that a reload can change it.
static JSON: AtomicBool = AtomicBool::new(false);

/// Starts writing logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    set_log_format(format);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Decided for each span and event, never cached per call site. A span opened
    // under one format is invisible to the other's layer (which would otherwise
    // find none of its own data in it).
    let text = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_filter(dynamic_filter_fn(|_, _| !JSON.load(Ordering::Relaxed)));
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_writer(std::io::stderr)
        .with_filter(dynamic_filter_fn(|_, _| JSON.load(Ordering::Relaxed)));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .try_init();
    if installed.is_err() {
        tracing::debug!("a log subscriber was already installed");
    }
}

/// Writes log lines in `format` from now on (a reload's `log-format`), once
/// [`init_logging`] installed the logger.
pub fn set_log_format(format: LogFormat) {
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
}

/// The process's Prometheus recorder, installed on first use (before any cache is
/// built, so the caches' metric handles record into it).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("corral-metrics".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            })
            .ok();
        handle
    })
}
