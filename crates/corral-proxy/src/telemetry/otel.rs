//! Trace export (feature `otel`): the request spans sent to an OpenTelemetry collector
//! over OTLP/HTTP (protobuf), in batches, with the client's W3C trace context continued
//! and this proxy's passed on to origins.
//!
//! The spans are plain `tracing` spans, all at `DEBUG` and named `corral.*` (the
//! libraries know nothing of OpenTelemetry): `corral.request` (one client request,
//! with `http.request.method`, `url.path`, `http.response.status_code` and
//! `corral.cache_status`), `corral.lookup` (its look at the cache, with `found`),
//! `corral.flight_wait` (a request waiting on another's load of the same key),
//! `corral.load` (a flight's load, under the request that led it) and
//! `corral.origin_fetch` (one request to the origin, under the load or the request
//! that sent it). The export takes these spans, and the `INFO` and louder events of the
//! corral crates inside them, whatever `RUST_LOG` says of the log lines.
//!
//! Configured by the standard environment, read once at start:
//!
//! - `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as it is: `http://collector:4318/v1/traces`)
//!   or `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended): where to send. Neither
//!   set: nothing is exported, no exporter runs, and the spans stay disabled (as without
//!   the feature). `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off
//!   too.
//! - `OTEL_SERVICE_NAME` (default `corral`), `OTEL_RESOURCE_ATTRIBUTES`,
//!   `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds, default
//!   10000), `OTEL_TRACES_SAMPLER` (default `parentbased_always_on`), `OTEL_BSP_*`:
//!   as the OpenTelemetry SDK reads them.
//! - `OTEL_PROPAGATORS`: the W3C trace context (`traceparent`, `tracestate`) is taken
//!   from clients and sent to origins unless the list leaves out `tracecontext` (`none`
//!   does). A client's `traceparent` makes its request's spans part of the client's
//!   trace (and, with the default sampler, its "not sampled" flag leaves them out:
//!   `OTEL_TRACES_SAMPLER=always_on` ignores it). Trace context never touches caching:
//!   it is in no cache key, and a fetch shared by a flight carries the context of the
//!   request that led it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{InstrumentationScope, Key};
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{HeaderExtractor, HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Level, Metadata, Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;

/// How long [`shutdown`] waits for the last spans to be sent.
const SHUTDOWN_WITHIN: Duration = Duration::from_secs(5);

/// The OTLP default for `OTEL_EXPORTER_OTLP_TIMEOUT`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The export the logger was installed with: what [`shutdown`] stops and what decides
/// whether trace context is propagated.
static INSTALLED: OnceLock<TraceExport> = OnceLock::new();

/// Why spans cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum TraceExportError {
    /// The exporter cannot be built: an endpoint that is not a URL, say.
    #[error("cannot export traces: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// The exporter's TLS cannot be set up.
    #[error("cannot export traces: TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The exporter sends on a Tokio runtime, and none is running here.
    #[error("cannot export traces: not inside a Tokio runtime")]
    NoRuntime,
    /// Spans could not be sent (flush or shutdown): the collector is down or slow.
    #[error("cannot send the spans: {0}")]
    Send(#[from] opentelemetry_sdk::error::OTelSdkError),
}

/// Where and how spans are exported: an OTLP/HTTP exporter behind the SDK's batch
/// processor. Cheap to clone (one reference count).
#[derive(Debug, Clone)]
pub struct TraceExport {
    provider: SdkTracerProvider,
    /// Whether W3C trace context is taken from clients and sent to origins.
    propagates: bool,
}

impl TraceExport {
    /// The export the standard environment asks for (see the module's docs), or
    /// `None` when it names no endpoint. Call it inside the Tokio runtime that is to
    /// send the spans.
    pub fn from_env() -> Result<Option<TraceExport>, TraceExportError> {
        let var = |name: &str| std::env::var(name).ok();
        if !wanted(var) {
            return Ok(None);
        }
        TraceExport::build(None).map(Some)
    }

    /// An export to `endpoint`, the full URL of the collector's traces path
    /// (`http://127.0.0.1:4318/v1/traces`); the rest of the configuration from the
    /// environment. Call it inside the Tokio runtime that is to send the spans.
    pub fn to(endpoint: &str) -> Result<TraceExport, TraceExportError> {
        TraceExport::build(Some(endpoint))
    }

    fn build(endpoint: Option<&str>) -> Result<TraceExport, TraceExportError> {
        let var = |name: &str| std::env::var(name).ok();
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TraceExportError::NoRuntime)?;
        let timeout = export_timeout(var);
        let client = OnRuntime {
            client: HyperClient::new(connector()?, timeout, None),
            runtime,
        };
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_timeout(timeout);
        if let Some(endpoint) = endpoint {
            exporter = exporter.with_endpoint(endpoint);
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter.build()?)
            .with_resource(resource())
            .build();
        Ok(TraceExport {
            provider,
            propagates: propagates(var),
        })
    }

    /// The `tracing` layer that hands the `corral.*` spans to this export.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let scope = InstrumentationScope::builder("corral")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer_with_scope(scope))
            .with_filter(filter_fn(exported).with_max_level_hint(Level::DEBUG))
    }

    /// Sends the spans that ended and are not sent yet, waiting until they are (within
    /// the batch processor's own bound).
    pub fn flush(&self) -> Result<(), TraceExportError> {
        Ok(self.provider.force_flush()?)
    }

    /// Records this export as the process's (its layer is installed): trace context is
    /// propagated from now on, and [`shutdown`] stops it.
    pub(crate) fn install(self) {
        let _ = INSTALLED.set(self);
    }
}

/// Sends the last spans of the installed export and stops it (at exit: the runtime
/// that sends must still be running). Nothing to do when none is installed.
pub fn shutdown() -> Result<(), TraceExportError> {
    match INSTALLED.get() {
        Some(export) => Ok(export.provider.shutdown_with_timeout(SHUTDOWN_WITHIN)?),
        None => Ok(()),
    }
}

/// Makes `span` (a client request's) part of the trace the client's `traceparent`
/// names, if it names one and trace context is propagated.
pub(crate) fn continue_trace(span: &Span, headers: &HeaderMap) {
    if !propagating() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    // Fails only when the span is not exported (then there is nothing to continue).
    let _ = span.set_parent(parent);
}

/// `request` (to an origin) with `span`'s trace context in its headers, replacing what
/// the client sent, if trace context is propagated and the span is exported.
pub(crate) fn propagate<B>(span: &Span, mut request: Request<B>) -> Request<B> {
    if propagating() && !span.is_disabled() {
        let mut headers = Headers(request.headers_mut());
        TraceContextPropagator::new().inject_context(&span.context(), &mut headers);
    }
    request
}

fn propagating() -> bool {
    INSTALLED.get().is_some_and(|export| export.propagates)
}

/// What the export takes: the `corral.*` spans, and the corral crates' `INFO` and louder
/// events (which become events of the span they happen in).
fn exported(metadata: &Metadata<'_>) -> bool {
    if metadata.is_span() {
        metadata.name().starts_with("corral.")
    } else {
        metadata.target().starts_with("corral") && *metadata.level() <= Level::INFO
    }
}

/// Whether the environment (`var`) asks for spans to be exported: an endpoint is set,
/// and neither the SDK nor the traces exporter is turned off.
fn wanted(var: impl Fn(&str) -> Option<String>) -> bool {
    let is =
        |name: &str, value: &str| var(name).is_some_and(|v| v.trim().eq_ignore_ascii_case(value));
    let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
    !is("OTEL_SDK_DISABLED", "true")
        && !is("OTEL_TRACES_EXPORTER", "none")
        && (set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT"))
}

/// Whether `OTEL_PROPAGATORS` (default `tracecontext,baggage`) includes the W3C trace
/// context.
fn propagates(var: impl Fn(&str) -> Option<String>) -> bool {
    var("OTEL_PROPAGATORS").is_none_or(|list| list.split(',').any(|p| p.trim() == "tracecontext"))
}

/// How long one export may take: `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else
/// `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds), else 10 seconds.
fn export_timeout(var: impl Fn(&str) -> Option<String>) -> Duration {
    [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .into_iter()
    .find_map(|name| var(name)?.trim().parse().ok())
    .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
}

/// The service's resource: as `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` say,
/// named `corral` when they name nothing.
fn resource() -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&Key::from_static_str("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    if named {
        detected
    } else {
        Resource::builder().with_service_name("corral").build()
    }
}

/// HTTP or HTTPS (rustls, the public roots) to the collector.
fn connector() -> Result<HttpsConnector<HttpConnector>, rustls::Error> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    })
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// The exporter's HTTP client: hyper, run on the proxy's Tokio runtime, since the SDK's
/// batch processor exports from a thread of its own.
#[derive(Debug)]
struct OnRuntime {
    client: HyperClient<HttpsConnector<HttpConnector>>,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}

/// Trace context written into a request's headers: an empty value (no `tracestate`)
/// removes the field instead of sending it empty.
struct Headers<'a>(&'a mut HeaderMap);

impl Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        let Ok(name) = HeaderName::from_bytes(key.as_bytes()) else {
            return;
        };
        match HeaderValue::try_from(value) {
            Ok(value) if !value.is_empty() => {
                self.0.insert(name, value);
            }
            _ => {
                self.0.remove(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn spans_are_exported_only_when_an_endpoint_is_set() {
        assert!(!wanted(env(&[])));
        assert!(!wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(wanted(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://c:4318"
        )])));
        assert!(wanted(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces"
        )])));
    }

    #[test]
    fn the_sdk_switch_and_a_none_exporter_turn_the_export_off() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        assert!(!wanted(env(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")])));
        assert!(!wanted(env(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")])));
        assert!(wanted(env(&[endpoint, ("OTEL_SDK_DISABLED", "false")])));
        assert!(wanted(env(&[endpoint, ("OTEL_TRACES_EXPORTER", "otlp")])));
    }

    #[test]
    fn trace_context_propagates_unless_the_propagators_leave_it_out() {
        assert!(propagates(env(&[])));
        assert!(propagates(env(&[(
            "OTEL_PROPAGATORS",
            "baggage, tracecontext"
        )])));
        assert!(!propagates(env(&[("OTEL_PROPAGATORS", "none")])));
        assert!(!propagates(env(&[("OTEL_PROPAGATORS", "b3")])));
    }

    #[test]
    fn the_export_timeout_is_the_traces_one_then_the_general_one_in_milliseconds() {
        assert_eq!(export_timeout(env(&[])), DEFAULT_TIMEOUT);
        let general = ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500");
        assert_eq!(export_timeout(env(&[general])), Duration::from_millis(2500));
        let traces = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700");
        assert_eq!(
            export_timeout(env(&[general, traces])),
            Duration::from_millis(700)
        );
        let garbled = ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon");
        assert_eq!(export_timeout(env(&[garbled])), DEFAULT_TIMEOUT);
    }

    #[test]
    fn an_empty_tracestate_removes_the_clients_instead_of_sending_it_empty() {
        let mut headers = HeaderMap::new();
        headers.insert("tracestate", HeaderValue::from_static("vendor=client"));
        let mut injector = Headers(&mut headers);
        injector.set(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        );
        injector.set("tracestate", String::new());
        assert!(!headers.contains_key("tracestate"));
        assert_eq!(
            headers["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
    }
}
