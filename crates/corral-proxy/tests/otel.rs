//! Trace export (feature `otel`): a miss, a hit, a collapsed burst and a client's
//! trace context, exported over OTLP/HTTP to a receiver in this process, arrive as
//! `corral.*` spans with their parents and attributes; the origin gets the trace
//! context of the fetch that reached it. The `corral` binary, configured by the
//! standard environment, sends its last spans when SIGTERM stops it.
//!
//! One in-process proxy: the process's tracing subscriber can be installed once.

#![cfg(feature = "otel")]

#[path = "../../corral-http/tests/support/mod.rs"]
mod origin;
mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use corral_proxy::config::LogFormat;
use corral_proxy::telemetry::{self, otel::TraceExport};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use origin::{Origin, Reply};
use prost::Message;
use support::{get, start};

/// An OTLP/HTTP collector: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, whose spans it keeps, with their service's name.
struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let spans: Arc<Mutex<Vec<(String, Span)>>> = Arc::default();
        let receiver = Receiver {
            addr: listener.local_addr().unwrap(),
            spans: spans.clone(),
        };
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let spans = spans.clone();
                let service = hyper::service::service_fn(move |request| {
                    let spans = spans.clone();
                    async move { Ok::<_, std::convert::Infallible>(receive(request, &spans).await) }
                });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    fn spans(&self) -> Vec<Span> {
        let spans = self.spans.lock().unwrap();
        spans.iter().map(|(_, span)| span.clone()).collect()
    }

    /// The service names of the spans received.
    fn services(&self) -> Vec<String> {
        let spans = self.spans.lock().unwrap();
        spans.iter().map(|(service, _)| service.clone()).collect()
    }
}

async fn receive(
    request: Request<Incoming>,
    spans: &Mutex<Vec<(String, Span)>>,
) -> Response<Full<Bytes>> {
    let answer = |status: StatusCode, body: Vec<u8>| {
        Response::builder()
            .status(status)
            .header("content-type", "application/x-protobuf")
            .body(Full::from(body))
            .unwrap()
    };
    if request.method() != Method::POST || request.uri().path() != "/v1/traces" {
        return answer(StatusCode::NOT_FOUND, Vec::new());
    }
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let Ok(export) = ExportTraceServiceRequest::decode(body) else {
        return answer(StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut spans = spans.lock().unwrap();
    for resource_spans in export.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(name) => Some(name.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let received = resource_spans.scope_spans.into_iter().flat_map(|s| s.spans);
        spans.extend(received.map(|span| (service.clone(), span)));
    }
    drop(spans);
    answer(
        StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A span's attribute as text (strings as they are, numbers in decimal).
fn attr(span: &Span, key: &str) -> Option<String> {
    let value = span.attributes.iter().find(|kv| kv.key == key)?;
    match value.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// The spans received, by id, with questions about their family.
struct Trace {
    spans: Vec<Span>,
    by_id: HashMap<Vec<u8>, usize>,
}

impl Trace {
    fn new(spans: Vec<Span>) -> Trace {
        let by_id = spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span_id.clone(), i))
            .collect();
        Trace { spans, by_id }
    }

    fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Span> + 'a {
        self.spans.iter().filter(move |s| s.name == name)
    }

    /// The client requests for `path`.
    fn requests(&self, path: &str) -> Vec<&Span> {
        self.named("corral.request")
            .filter(|s| attr(s, "url.path").as_deref() == Some(path))
            .collect()
    }

    /// The origin fetches for `path`.
    fn fetches(&self, path: &str) -> Vec<&Span> {
        self.named("corral.origin_fetch")
            .filter(|s| attr(s, "url.path").as_deref() == Some(path))
            .collect()
    }

    fn parent(&self, span: &Span) -> Option<&Span> {
        self.by_id
            .get(&span.parent_span_id)
            .map(|&i| &self.spans[i])
    }

    fn is_descendant(&self, span: &Span, ancestor: &Span) -> bool {
        let mut at = self.parent(span);
        while let Some(parent) = at {
            if parent.span_id == ancestor.span_id {
                return true;
            }
            at = self.parent(parent);
        }
        false
    }

    fn children<'a>(&'a self, span: &'a Span, name: &'a str) -> Vec<&'a Span> {
        self.named(name)
            .filter(|s| s.parent_span_id == span.span_id)
            .collect()
    }

    /// Whether everything the assertions look at has arrived.
    fn complete(&self) -> bool {
        self.requests("/page").len() == 2
            && self.requests("/slow").len() == BURST
            && self.requests("/traced").len() == 1
            && self.requests("/untrusted").len() == 1
            && self.fetches("/page").len() == 1
            && self.fetches("/slow").len() == 1
            && self.fetches("/traced").len() == 1
            && self.named("corral.flight_wait").count() == BURST - 1
            && self.named("corral.load").count() == 4
    }
}

/// Concurrent requests for one slow URL.
const BURST: usize = 5;

const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_reach_an_otlp_receiver_with_their_parents_and_attributes() {
    tokio::time::timeout(Duration::from_secs(60), exported())
        .await
        .expect("the test finishes within a minute");
}

async fn exported() {
    let receiver = Receiver::start().await;
    let export = TraceExport::to(&format!("http://{}/v1/traces", receiver.addr))
        .expect("an exporter to the receiver");
    telemetry::init_logging_exporting(LogFormat::Text, Some(export.clone()));

    let origin = Origin::start().await;
    let fresh = |body: &'static str| {
        move |_: &http::request::Parts, _| Reply::ok(body).header("cache-control", "max-age=60")
    };
    origin.route("/page", fresh("page"));
    origin.route("/traced", fresh("traced"));
    origin.route("/untrusted", fresh("untrusted"));
    origin.route("/slow", |_, _| {
        Reply::ok("slow")
            .header("cache-control", "max-age=60")
            .delay(Duration::from_millis(500))
    });
    // The test's client is the load balancer in front, whose trace context is believed.
    let proxy = start(&format!(
        "upstream = \"http://{}\"\ntrusted-proxies = [\"127.0.0.1\"]",
        origin.addr
    ))
    .await;
    let untrusting = start(&format!("upstream = \"http://{}\"", origin.addr)).await;

    let miss = get(proxy.addr, "/page", &[]).await;
    assert_eq!(miss.header("x-cache"), "MISS");
    let hit = get(proxy.addr, "/page", &[]).await;
    assert_eq!(hit.header("x-cache"), "HIT");
    let burst = (0..BURST).map(|_| get(proxy.addr, "/slow", &[]));
    for got in futures_util::future::join_all(burst).await {
        assert_eq!(got.status, StatusCode::OK);
    }
    assert_eq!(origin.count("/slow"), 1, "the burst was collapsed");
    let client_context = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let traced = get(proxy.addr, "/traced", &[("traceparent", &client_context)]).await;
    assert_eq!(traced.status, StatusCode::OK);
    let untrusted = get(
        untrusting.addr,
        "/untrusted",
        &[("traceparent", &client_context)],
    )
    .await;
    assert_eq!(untrusted.status, StatusCode::OK);

    // Spans end as their requests finish; flush until all of them came (bounded).
    let mut trace = Trace::new(Vec::new());
    for _ in 0..100 {
        let flushing = export.clone();
        tokio::task::spawn_blocking(move || flushing.flush())
            .await
            .unwrap()
            .expect("the spans are sent");
        trace = Trace::new(receiver.spans());
        if trace.complete() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        trace.complete(),
        "spans received: {:?}",
        trace
            .spans
            .iter()
            .map(|s| (&s.name, attr(s, "url.path")))
            .collect::<Vec<_>>()
    );

    // The miss: a server span with its status, whose load fetched from the origin.
    let requests = trace.requests("/page");
    let cache = |s: &Span| attr(s, "corral.cache_status");
    let miss = *requests
        .iter()
        .find(|s| cache(s).as_deref() == Some("MISS"))
        .expect("the miss's request span");
    assert_eq!(miss.kind, SpanKind::Server as i32);
    assert_eq!(attr(miss, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(
        attr(miss, "http.response.status_code").as_deref(),
        Some("200")
    );
    let fetch = trace.fetches("/page")[0];
    assert_eq!(fetch.kind, SpanKind::Client as i32);
    assert_eq!(
        attr(fetch, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(fetch.trace_id, miss.trace_id);
    assert!(
        trace.is_descendant(fetch, miss),
        "the origin fetch is under the miss's request"
    );
    assert_eq!(
        trace.parent(fetch).map(|p| p.name.as_str()),
        Some("corral.load")
    );
    let lookups = trace.children(miss, "corral.lookup");
    assert_eq!(lookups.len(), 1);
    assert_eq!(attr(lookups[0], "found").as_deref(), Some("forward"));

    // The hit: answered by the lookup, no fetch under it.
    let hit = *requests
        .iter()
        .find(|s| cache(s).as_deref() == Some("HIT"))
        .expect("the hit's request span");
    let lookups = trace.children(hit, "corral.lookup");
    assert_eq!(lookups.len(), 1);
    assert_eq!(attr(lookups[0], "found").as_deref(), Some("answer"));
    assert!(
        trace
            .named("corral.origin_fetch")
            .all(|f| !trace.is_descendant(f, hit))
    );
    assert_ne!(hit.trace_id, miss.trace_id, "each request is its own trace");

    // The burst: one fetch, under the request that led the load; each other request
    // waited on that flight, in a span of its own under its own request.
    let burst = trace.requests("/slow");
    let fetch = trace.fetches("/slow")[0];
    let leaders: Vec<_> = burst
        .iter()
        .filter(|r| trace.is_descendant(fetch, r))
        .collect();
    assert_eq!(leaders.len(), 1, "one request led the load");
    assert!(trace.children(leaders[0], "corral.flight_wait").is_empty());
    for waiter in burst.iter().filter(|r| r.span_id != leaders[0].span_id) {
        assert_eq!(
            trace.children(waiter, "corral.flight_wait").len(),
            1,
            "a waiter's flight wait is under its own request"
        );
        assert_eq!(cache(waiter).as_deref(), Some("MISS"));
        assert_eq!(
            attr(waiter, "http.response.status_code").as_deref(),
            Some("200")
        );
    }

    // A client's trace context is continued, and the origin is told the fetch's.
    let traced = trace.requests("/traced")[0];
    assert_eq!(hex(&traced.trace_id), CLIENT_TRACE);
    assert_eq!(hex(&traced.parent_span_id), CLIENT_SPAN);
    let fetch = trace.fetches("/traced")[0];
    assert_eq!(hex(&fetch.trace_id), CLIENT_TRACE);
    let sent = origin.last_request("/traced");
    assert_eq!(
        sent.get("traceparent").and_then(|v| v.to_str().ok()),
        Some(format!("00-{CLIENT_TRACE}-{}-01", hex(&fetch.span_id)).as_str()),
    );
    assert!(
        origin.last_request("/page").get("traceparent").is_some(),
        "a fetch without a client's context starts its own"
    );
    // A client that is not a trusted proxy starts no trace of its own choosing.
    let untrusted = trace.requests("/untrusted")[0];
    assert_ne!(hex(&untrusted.trace_id), CLIENT_TRACE);
    assert!(untrusted.parent_span_id.is_empty(), "a root span");
    let sent = origin.last_request("/untrusted");
    let sent = sent.get("traceparent").and_then(|v| v.to_str().ok());
    assert!(
        sent.is_some_and(|sent| !sent.contains(CLIENT_TRACE)),
        "the origin is told the proxy's trace, not the client's: {sent:?}"
    );
    untrusting.stop().await;

    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_sends_its_last_spans_when_sigterm_stops_it() {
    let receiver = Receiver::start().await;
    let origin = Origin::start().await;
    origin.route("/last", |_, _| Reply::ok("last"));
    let endpoint = format!("http://{}", receiver.addr);
    let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin", "false"])
        .args(["--shutdown-grace", "1s", "--upstream", &origin.url("")])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        // Batches leave only every minute: the spans can arrive only by the exit's flush.
        .env("OTEL_BSP_SCHEDULE_DELAY", "60000")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_RESOURCE_ATTRIBUTES")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_TRACES_EXPORTER")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stopped = Stopped(&mut child);
    let mut line = String::new();
    BufReader::new(stopped.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .split("listening on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in the startup line {line:?}"));
    let got = tokio::time::timeout(Duration::from_secs(10), get(addr, "/last", &[]))
        .await
        .expect("a response within 10 seconds");
    assert_eq!(got.text(), "last");
    assert!(
        receiver.spans().is_empty(),
        "nothing is sent before the exit"
    );

    let term = Command::new("kill")
        .args(["-TERM", &stopped.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = stopped.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "corral did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
    let trace = Trace::new(receiver.spans());
    let requests = trace.requests("/last");
    assert_eq!(requests.len(), 1, "the request's span was sent at the exit");
    assert_eq!(trace.fetches("/last").len(), 1);
    assert!(
        receiver.services().iter().all(|name| name == "corral"),
        "the service is named corral by default: {:?}",
        receiver.services()
    );
}

/// A child process, killed when dropped (a failing test leaves none behind).
struct Stopped<'a>(&'a mut std::process::Child);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
