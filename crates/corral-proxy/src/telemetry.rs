//! Logs (`tracing`, as text or JSON lines), metrics (the Prometheus exporter behind
//! the `metrics` facade, rendered by the admin API's `/metrics`) and, with the feature
//! `otel`, the request spans exported over OTLP ([`otel`]).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::filter::Filtered;
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::config::LogFormat;

#[cfg(feature = "otel")]
pub mod otel;

/// The log lines' layer, in the format a reload may change.
type Lines = Box<dyn Layer<Registry> + Send + Sync>;

/// The subscriber the log lines make, under the layer that exports spans (if any).
type Logged = Layered<Filtered<reload::Layer<Lines, Registry>, EnvFilter, Registry>, Registry>;

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

/// Starts writing logs to stderr, filtered by `RUST_LOG` (default `info`); with the
/// feature `otel`, also exports the request spans when the standard `OTEL_*`
/// environment names an endpoint (see [`otel`]; call it inside the Tokio runtime then).
/// An export that cannot be set up (an endpoint that is not a URL) is logged as an
/// error, and the logs go on without it.
pub fn init_logging(format: LogFormat) {
    #[cfg(feature = "otel")]
    match otel::TraceExport::from_env() {
        Ok(export) => init_logging_exporting(format, export),
        Err(error) => {
            install(format, None::<tracing_subscriber::layer::Identity>);
            tracing::error!(%error, "spans are not exported");
        }
    }
    #[cfg(not(feature = "otel"))]
    install(format, None::<tracing_subscriber::layer::Identity>);
}

/// Starts writing logs as [`init_logging`] does, and exports the request spans to
/// `export` (if any) instead of where the environment says.
#[cfg(feature = "otel")]
pub fn init_logging_exporting(format: LogFormat, export: Option<otel::TraceExport>) {
    if install(format, export.as_ref().map(otel::TraceExport::layer))
        && let Some(export) = export
    {
        export.install();
    }
}

/// Installs the log lines and `extra` beside them; whether they were installed (no
/// other subscriber was). `RUST_LOG` filters the log lines alone, so that the span
/// export takes its `DEBUG` spans whatever the logs show, and the log lines never show
/// those spans unless `RUST_LOG` asks.
fn install<L: Layer<Logged> + Send + Sync + 'static>(format: LogFormat, extra: Option<L>) -> bool {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (lines, handle) = reload::Layer::new(lines(format));
    let installed = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(extra)
        .try_init();
    match installed {
        Ok(()) => {
            let _ = LINES.set(handle);
            true
        }
        Err(_) => {
            tracing::debug!("a log subscriber was already installed");
            false
        }
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
