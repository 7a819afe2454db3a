//! The access log: one line per request, written when the response body is done (so
//! the byte count and duration are the real ones): method, URL, status, cache status,
//! duration, bytes, and whether the body was sent whole.
//!
//! Lines are not `tracing` events: a line per request is what operators keep on, so it
//! is made cheap. Each is formatted by hand into a shared buffer (integers with `itoa`,
//! the timestamp's date and time formatted once a second), and a thread of its own
//! writes the buffer out every [`FLUSH_EVERY`] (sooner when it fills), so no request
//! waits on a write to stderr. While the output does not keep up, at most
//! [`MAX_BUFFERED`] bytes wait; lines past that are dropped, counted in
//! `corral_access_log_dropped_total` and reported in a warning. The lines look like the proxy's other log lines (text
//! or JSON, by `log-format`), with target `corral::access`. Lines still buffered when
//! the last [`AccessLog`] handle goes are written then; [`AccessLog::flush`] writes
//! them at once.

use std::cell::RefCell;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use corral_http::{Body, BoxError, CacheStatus};
use http::{Method, Uri};
use http_body::{Frame, SizeHint};

use crate::config::LogFormat;
use crate::idle::Active;

/// How often buffered lines are written out.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// Buffered bytes past which the writer is woken at once.
const WAKE_AT: usize = 64 << 10;

/// Buffered bytes past which lines are dropped (and counted) rather than kept: a
/// writer stuck on a full pipe must not let a flood of requests grow the process.
pub const MAX_BUFFERED: usize = 8 << 20;

/// Where access lines go; cheap to clone (clones share the buffer and the writer).
#[derive(Clone)]
pub struct AccessLog {
    shared: Arc<Shared>,
}

struct Shared {
    /// `log-format`: text unless set (a reload may change it).
    json: AtomicBool,
    pending: Mutex<Vec<u8>>,
    /// Lines dropped since the last flush, the buffer being full.
    dropped: AtomicU64,
    out: Mutex<Box<dyn Write + Send>>,
    writer: std::thread::Thread,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("json", &self.shared.json)
            .finish_non_exhaustive()
    }
}

impl AccessLog {
    /// Lines to the process's stderr.
    pub fn stderr(format: LogFormat) -> std::io::Result<AccessLog> {
        AccessLog::to_writer(format, std::io::stderr())
    }

    /// Lines to `out` (a file, a pipe, a test's buffer), written by a thread of the
    /// log's own (an error if that thread cannot be started).
    pub fn to_writer(
        format: LogFormat,
        out: impl Write + Send + 'static,
    ) -> std::io::Result<AccessLog> {
        let (handle, writer) = std::sync::mpsc::channel::<Weak<Shared>>();
        let thread = std::thread::Builder::new()
            .name("corral-access-log".into())
            .spawn(move || {
                let Ok(shared) = writer.recv() else { return };
                loop {
                    std::thread::park_timeout(FLUSH_EVERY);
                    match shared.upgrade() {
                        Some(shared) => shared.flush(),
                        None => return,
                    }
                }
            })?;
        let shared = Arc::new(Shared {
            json: AtomicBool::new(format == LogFormat::Json),
            pending: Mutex::new(Vec::with_capacity(WAKE_AT)),
            dropped: AtomicU64::new(0),
            out: Mutex::new(Box::new(out)),
            writer: thread.thread().clone(),
        });
        let _ = handle.send(Arc::downgrade(&shared));
        Ok(AccessLog { shared })
    }

    /// Writes lines in `format` from now on.
    pub fn set_format(&self, format: LogFormat) {
        self.shared
            .json
            .store(format == LogFormat::Json, Ordering::Relaxed);
    }

    /// Writes the buffered lines now.
    pub fn flush(&self) {
        self.shared.flush();
    }

    fn write(&self, entry: &Entry, bytes: u64, complete: bool) {
        let woke = LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            let format = match self.shared.json.load(Ordering::Relaxed) {
                true => LogFormat::Json,
                false => LogFormat::Text,
            };
            format_line(&mut line, format, entry, bytes, complete);
            let mut pending = lock(&self.shared.pending);
            if pending.len() + line.len() > MAX_BUFFERED {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("corral_access_log_dropped_total").increment(1);
                return true;
            }
            pending.extend_from_slice(&line);
            pending.len() >= WAKE_AT
        });
        if woke {
            self.shared.writer.unpark();
        }
    }
}

impl Shared {
    fn flush(&self) {
        let lines = std::mem::take(&mut *lock(&self.pending));
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "access log lines dropped: its output did not keep up"
            );
        }
        if lines.is_empty() {
            return;
        }
        let mut out = lock(&self.out);
        // Nowhere to report a failing stderr; the lines are dropped.
        let _ = out.write_all(&lines).and_then(|()| out.flush());
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.flush();
        self.writer.unpark();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

thread_local! {
    /// A line being formatted (outside the shared buffer's lock).
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
    /// The date and time of the current second, formatted: (seconds since the epoch,
    /// `YYYY-MM-DDTHH:MM:SS`).
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// What the line will say, gathered before the body is sent.
#[derive(Debug)]
pub struct Entry {
    /// The request's method.
    pub method: Method,
    /// The request's target.
    pub uri: Uri,
    /// The response's status.
    pub status: u16,
    /// How the cache answered, when it did.
    pub cache: Option<CacheStatus>,
    /// When the request arrived (the line reports the time since).
    pub started: Instant,
}

/// One access line, `\n`-terminated, in `format`.
fn format_line(line: &mut Vec<u8>, format: LogFormat, entry: &Entry, bytes: u64, complete: bool) {
    let micros = u64::try_from(entry.started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let cache = entry.cache.map_or("-", CacheStatus::as_str);
    let mut int = itoa::Buffer::new();
    match format {
        LogFormat::Text => {
            timestamp(line);
            line.extend_from_slice(b"  INFO corral::access: method=");
            line.extend_from_slice(entry.method.as_str().as_bytes());
            line.extend_from_slice(b" url=");
            uri(line, &entry.uri, false);
            line.extend_from_slice(b" status=");
            line.extend_from_slice(int.format(entry.status).as_bytes());
            line.extend_from_slice(b" cache=\"");
            line.extend_from_slice(cache.as_bytes());
            line.extend_from_slice(b"\" duration_ms=");
            millis(line, micros);
            line.extend_from_slice(b" bytes=");
            line.extend_from_slice(int.format(bytes).as_bytes());
            line.extend_from_slice(if complete {
                b" complete=true\n"
            } else {
                b" complete=false\n"
            });
        }
        LogFormat::Json => {
            line.extend_from_slice(b"{\"timestamp\":\"");
            timestamp(line);
            line.extend_from_slice(b"\",\"level\":\"INFO\",\"method\":\"");
            escaped(line, entry.method.as_str().as_bytes());
            line.extend_from_slice(b"\",\"url\":\"");
            uri(line, &entry.uri, true);
            line.extend_from_slice(b"\",\"status\":");
            line.extend_from_slice(int.format(entry.status).as_bytes());
            line.extend_from_slice(b",\"cache\":\"");
            line.extend_from_slice(cache.as_bytes());
            line.extend_from_slice(b"\",\"duration_ms\":");
            millis(line, micros);
            line.extend_from_slice(b",\"bytes\":");
            line.extend_from_slice(int.format(bytes).as_bytes());
            line.extend_from_slice(if complete {
                b",\"complete\":true"
            } else {
                b",\"complete\":false"
            });
            line.extend_from_slice(b",\"target\":\"corral::access\"}\n");
        }
    }
}

/// The request target as it came (`Uri`'s display), JSON-escaped when `json`.
fn uri(line: &mut Vec<u8>, uri: &Uri, json: bool) {
    let mut put = |part: &str| {
        if json {
            escaped(line, part.as_bytes());
        } else {
            line.extend_from_slice(part.as_bytes());
        }
    };
    if let Some(scheme) = uri.scheme_str() {
        put(scheme);
        put("://");
    }
    if let Some(authority) = uri.authority() {
        put(authority.as_str());
    }
    put(uri.path());
    if let Some(query) = uri.query() {
        put("?");
        put(query);
    }
}

/// `text` inside a JSON string: `"`, `\` and control bytes escaped.
fn escaped(line: &mut Vec<u8>, text: &[u8]) {
    for &byte in text {
        match byte {
            b'"' => line.extend_from_slice(b"\\\""),
            b'\\' => line.extend_from_slice(b"\\\\"),
            0..0x20 | 0x7f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                line.extend_from_slice(b"\\u00");
                line.push(HEX[usize::from(byte >> 4)]);
                line.push(HEX[usize::from(byte & 0xf)]);
            }
            _ => line.push(byte),
        }
    }
}

/// Microseconds as milliseconds with three decimals (`12.345`).
fn millis(line: &mut Vec<u8>, micros: u64) {
    let mut int = itoa::Buffer::new();
    line.extend_from_slice(int.format(micros / 1000).as_bytes());
    let fraction = micros % 1000;
    line.extend_from_slice(&[
        b'.',
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ]);
}

/// The current time as RFC 3339 in UTC with microseconds, as the other log lines
/// write it (`2026-11-29T01:47:30.123456Z`); the part up to the second is formatted
/// once a second per thread.
fn timestamp(line: &mut Vec<u8>) {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since_epoch.as_secs();
    SECOND.with(|second| {
        let mut second = second.borrow_mut();
        if second.0 != seconds {
            let whole = UNIX_EPOCH + Duration::from_secs(seconds);
            let mut formatted = humantime::format_rfc3339_seconds(whole).to_string();
            formatted.truncate("YYYY-MM-DDTHH:MM:SS".len());
            *second = (seconds, formatted);
        }
        line.extend_from_slice(second.1.as_bytes());
    });
    let micros = since_epoch.subsec_micros();
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    line.push(b'.');
    line.extend_from_slice(&digits);
    line.push(b'Z');
}

/// A response body that writes the access line when it ends (or is dropped).
pub struct Logged {
    inner: Body,
    entry: Option<(Entry, AccessLog)>,
    bytes: u64,
    /// The request counted in flight on its connection until its body is done.
    active: Option<Active>,
}

impl std::fmt::Debug for Logged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logged")
            .field("entry", &self.entry.as_ref().map(|(entry, _)| entry))
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl Logged {
    /// `entry` is `None` when the access log is off.
    pub fn new(inner: Body, entry: Option<(Entry, AccessLog)>) -> Self {
        Logged {
            inner,
            entry,
            bytes: 0,
            active: None,
        }
    }

    /// The request stays in flight on its connection (see `idle`) until this body is
    /// done or dropped, sending it: each part polled from it is progress.
    pub(crate) fn holding(mut self, mut active: Active) -> Logged {
        active.sending();
        self.active = Some(active);
        self
    }

    fn write(&mut self, complete: bool) {
        if let Some((entry, log)) = self.entry.take() {
            log.write(&entry, self.bytes, complete);
        }
    }
}

impl http_body::Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => {
                if let Some(active) = &this.active {
                    active.progressed();
                }
            }
            Poll::Ready(None) => this.active = None,
            _ => {}
        }
        if this.entry.is_some() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    this.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                Poll::Ready(None) => this.write(true),
                _ => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let complete = http_body::Body::is_end_stream(&self.inner);
        self.write(complete);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uri: &str) -> Entry {
        Entry {
            method: Method::GET,
            uri: uri.parse().unwrap(),
            status: 200,
            cache: Some(CacheStatus::Hit),
            started: Instant::now(),
        }
    }

    #[test]
    fn json_lines_parse_and_say_what_the_entry_says() {
        let mut line = Vec::new();
        format_line(
            &mut line,
            LogFormat::Json,
            &entry("http://Example.com:8080/a%22b?q=x"),
            1234,
            false,
        );
        assert_eq!(line.last(), Some(&b'\n'));
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["url"], "http://Example.com:8080/a%22b?q=x");
        assert_eq!(value["method"], "GET");
        assert_eq!(value["status"], 200);
        assert_eq!(value["cache"], "HIT");
        assert_eq!(value["bytes"], 1234);
        assert_eq!(value["complete"], false);
        assert_eq!(value["target"], "corral::access");
        assert!(value["duration_ms"].as_f64().unwrap() < 1000.0);
        let stamp = value["timestamp"].as_str().unwrap();
        let parsed = humantime::parse_rfc3339(stamp).unwrap();
        let off = SystemTime::now().duration_since(parsed).unwrap_or_default();
        assert!(off < Duration::from_secs(5), "{stamp}");
    }

    #[test]
    fn text_lines_read_as_the_other_log_lines() {
        let mut line = Vec::new();
        format_line(&mut line, LogFormat::Text, &entry("/p?q=1"), 9, true);
        let line = String::from_utf8(line).unwrap();
        let (stamp, rest) = line.split_once("  ").unwrap();
        assert!(humantime::parse_rfc3339(stamp).is_ok(), "{line}");
        assert!(
            rest.starts_with(
                "INFO corral::access: method=GET url=/p?q=1 status=200 cache=\"HIT\" duration_ms=0."
            ),
            "{line}"
        );
        assert!(rest.ends_with(" bytes=9 complete=true\n"), "{line}");
    }

    #[test]
    fn json_strings_escape_quotes_backslashes_and_control_bytes() {
        let mut line = Vec::new();
        escaped(&mut line, b"a\"b\\c\x01\x7f");
        assert_eq!(line, b"a\\\"b\\\\c\\u0001\\u007f");
        let text = format!("\"{}\"", String::from_utf8(line).unwrap());
        assert_eq!(
            serde_json::from_str::<String>(&text).unwrap(),
            "a\"b\\c\u{1}\u{7f}"
        );
    }

    #[test]
    fn milliseconds_keep_three_decimals() {
        for (micros, text) in [
            (0, "0.000"),
            (7, "0.007"),
            (12_345, "12.345"),
            (1_000_000, "1000.000"),
        ] {
            let mut line = Vec::new();
            millis(&mut line, micros);
            assert_eq!(String::from_utf8(line).unwrap(), text);
        }
    }

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_reach_the_writer_soon_and_all_of_them_when_the_log_goes() {
        let sink = Sink::default();
        let log = AccessLog::to_writer(LogFormat::Text, sink.clone()).unwrap();
        log.write(&entry("/first"), 1, true);
        let deadline = Instant::now() + Duration::from_secs(10);
        while sink.0.lock().unwrap().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            !sink.0.lock().unwrap().is_empty(),
            "written within the flush interval"
        );
        for n in 0..1000 {
            log.write(&entry(&format!("/n/{n}")), n, true);
        }
        drop(log);
        let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(written.lines().count(), 1001);
        assert!(written.contains("url=/n/999 "));
    }
}
