//! Logs (`tracing`, as text or JSON lines) and metrics (the Prometheus exporter behind
//! the `metrics` facade, rendered by the admin API's `/metrics`).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry, reload};

use crate::config::LogFormat;

/// The log lines' layer, in the format a reload may change.
type Lines = Box<dyn Layer<Registry> + Send + Sync>;

/// Where [`set_log_format`] changes the format, once [`init_logging`] installed it.
static LINES: OnceLock<reload::Handle<Lines, Registry>> = OnceLock::new();

fn lines(format: LogFormat) -> Lines {
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => Box::new(lines),
        LogFormat::Json => Box::new(lines.json().flatten_event(true)),
    }
}

/// Starts writing logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (lines, handle) = reload::Layer::new(lines(format));
    let installed = tracing_subscriber::registry()
        .with(lines)
        .with(filter)
        .try_init();
    match installed {
        Ok(()) => {
            let _ = LINES.set(handle);
        }
        Err(_) => tracing::debug!("a log subscriber was already installed"),
    }
}

/// Writes log lines in `format` from now on (a reload's `log-format`), if
/// [`init_logging`] installed the logger.
pub fn set_log_format(format: LogFormat) {
    if let Some(handle) = LINES.get()
        && let Err(error) = handle.reload(lines(format))
    {
        tracing::warn!(%error, "cannot change the log format");
    }
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
