//! The access log: one line per request, written when the response body is done (so
//! the byte count and duration are the real ones): method, URL, status, cache status,
//! duration, bytes. A response cut short (the client went away) says so.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use corral_http::{Body, BoxError, CacheStatus};
use http::{Method, Uri};
use http_body::{Frame, SizeHint};

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

impl Entry {
    fn write(self, bytes: u64, complete: bool) {
        let cache = self.cache.map_or("-", CacheStatus::as_str);
        tracing::info!(
            target: "corral::access",
            method = %self.method,
            url = %self.uri,
            status = self.status,
            cache,
            duration_ms = self.started.elapsed().as_secs_f64() * 1e3,
            bytes,
            complete,
        );
    }
}

/// A response body that writes the access line when it ends (or is dropped).
pub struct Logged {
    inner: Body,
    entry: Option<Entry>,
    bytes: u64,
}

impl std::fmt::Debug for Logged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logged")
            .field("entry", &self.entry)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl Logged {
    /// `entry` is `None` when the access log is off.
    pub fn new(inner: Body, entry: Option<Entry>) -> Self {
        Logged {
            inner,
            entry,
            bytes: 0,
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
        if this.entry.is_some() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    this.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                Poll::Ready(None) => {
                    if let Some(entry) = this.entry.take() {
                        entry.write(this.bytes, true);
                    }
                }
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
        if let Some(entry) = self.entry.take() {
            let complete = http_body::Body::is_end_stream(&self.inner);
            entry.write(self.bytes, complete);
        }
    }
}
