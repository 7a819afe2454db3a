//! Logs (`tracing`, as text or JSON lines), metrics (the Prometheus exporter behind
//! the `metrics` facade, rendered by the admin API's `/metrics`) and, with the feature
//! `otel`, the request spans exported over OTLP ([`otel`]).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::filter::{FilterExt, LevelFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::LogFormat;

#[cfg(feature = "otel")]
pub mod otel;

/// Whether log lines are JSON (else text): both formats' layers are installed, each
/// writing while this says so, so that a reload can change it.
static JSON: AtomicBool = AtomicBool::new(false);

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
fn install<L: Layer<Registry> + Send + Sync + 'static>(
    format: LogFormat,
    extra: Option<L>,
) -> bool {
    set_log_format(format);
    let logs = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Each call site's interest is cached, and rebuilt when the format changes. A span
    // opened under one format is invisible to the other's layer (which would
    // otherwise find none of its own data in it). The hints keep `RUST_LOG`'s level
    // the process's, so that a disabled `debug!` costs one comparison.
    let writes = |json: bool| {
        filter_fn(move |_| JSON.load(Ordering::Relaxed) == json)
            .with_max_level_hint(LevelFilter::TRACE)
    };
    let text = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_filter(logs().and(writes(false)));
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_writer(std::io::stderr)
        .with_filter(logs().and(writes(true)));
    let installed = tracing_subscriber::registry()
        .with(extra)
        .with(text)
        .with(json)
        .try_init();
    match installed {
        Ok(()) => true,
        Err(_) => {
            tracing::debug!("a log subscriber was already installed");
            false
        }
    }
}

/// Writes log lines in `format` from now on (a reload's `log-format`), once
/// [`init_logging`] installed the logger.
pub fn set_log_format(format: LogFormat) {
    let json = format == LogFormat::Json;
    if JSON.swap(json, Ordering::Relaxed) != json {
        tracing::callsite::rebuild_interest_cache();
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
