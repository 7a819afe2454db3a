//! One registered URL: its options, its latest good value and the state of its
//! refreshes, and what `snapshot` reports about it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use url::Url;

use super::RefreshError;
use super::fetch::{Fetched, Validators};
use super::schedule::Intervals;
use super::transform::Transform;
use crate::upstream::Upstream;

/// A registered URL.
pub(crate) struct Resource<T> {
    /// Unique per registration: the key of its fetches (a URL registered again does
    /// not share fetches with its earlier registration).
    pub key: String,
    pub url: Url,
    pub transform: Arc<dyn Transform<T>>,
    pub client: Option<Mutex<Box<dyn Upstream>>>,
    pub headers: HeaderMap,
    pub intervals: Intervals,
    state: Mutex<State<T>>,
    /// Wakes the URL's timer when its next refresh moved.
    pub wake: Notify,
    pub timer: Mutex<Option<JoinHandle<()>>>,
}

struct State<T> {
    value: Option<Arc<T>>,
    validators: Validators,
    last_fetched: Option<SystemTime>,
    last_error: Option<RefreshError>,
    failures: u32,
    next: Instant,
}

/// What [`RefreshCache::snapshot`](super::RefreshCache::snapshot) reports about one URL.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResourceStatus {
    /// The URL (in normal form).
    pub url: String,
    /// Whether a good value is kept.
    pub has_value: bool,
    /// When the last successful fetch (200 or 304) ended.
    pub last_fetched: Option<SystemTime>,
    /// The time until the next refresh (zero when one is due or running).
    pub next_refresh_in: Duration,
    /// The last fetch's error, if the last fetch failed.
    pub last_error: Option<RefreshError>,
    /// Failed fetches in a row.
    pub consecutive_failures: u32,
    /// The kept value's `ETag`.
    pub etag: Option<String>,
    /// The kept value's `Last-Modified`.
    pub last_modified: Option<String>,
}

/// `now + wait`, or a century from now for waits beyond what an instant can hold.
fn later(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

impl<T> Resource<T> {
    pub(crate) fn new(
        key: String,
        url: Url,
        registration: super::Registration<T>,
        intervals: Intervals,
    ) -> Self {
        Resource {
            key,
            url,
            transform: registration.transform,
            client: registration.client.map(Mutex::new),
            headers: registration.headers,
            intervals,
            state: Mutex::new(State {
                value: None,
                validators: Validators::default(),
                last_fetched: None,
                last_error: None,
                failures: 0,
                next: Instant::now(),
            }),
            wake: Notify::new(),
            timer: Mutex::new(None),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        // A panic never happens with the lock held; recover the state anyway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kept value, if any.
    pub(crate) fn value(&self) -> Option<Arc<T>> {
        self.state().value.clone()
    }

    /// When no value is kept and the last fetch failed: that error, while its retry
    /// is not yet due.
    pub(crate) fn pending_error(&self) -> Option<RefreshError> {
        let state = self.state();
        match (&state.value, &state.last_error) {
            (None, Some(error)) if Instant::now() < state.next => Some(error.clone()),
            _ => None,
        }
    }

    /// The validators for the next fetch (`None` when there is no value to keep).
    pub(crate) fn validators(&self) -> Option<Validators> {
        let state = self.state();
        state.value.as_ref().map(|_| state.validators.clone())
    }

    pub(crate) fn next_refresh(&self) -> Instant {
        self.state().next
    }

    /// Moves the next refresh to `wait` from now.
    pub(crate) fn postpone(&self, wait: Duration) {
        self.state().next = later(Instant::now(), wait);
    }

    /// Records a fetch's outcome and schedules the next; returns the value to hand
    /// to the fetch's waiters.
    pub(crate) fn record(
        &self,
        outcome: Result<Fetched<T>, RefreshError>,
        retry_base: Duration,
    ) -> Result<Arc<T>, RefreshError> {
        let now = Instant::now();
        let mut state = self.state();
        let result = match outcome {
            Ok(Fetched::Changed { value, headers }) => {
                let value = Arc::new(value);
                state.value = Some(value.clone());
                state.validators = Validators::of(&headers);
                Ok((value, headers))
            }
            Ok(Fetched::NotModified { headers }) => match state.value.clone() {
                Some(value) => {
                    // A 304 may carry newer validators (RFC 9111 §4.3.4).
                    let fresh = Validators::of(&headers);
                    if fresh.etag.is_some() || fresh.last_modified.is_some() {
                        state.validators = fresh;
                    }
                    Ok((value, headers))
                }
                None => Err(RefreshError::Status {
                    url: self.url.to_string(),
                    status: http::StatusCode::NOT_MODIFIED,
                }),
            },
            Err(error) => Err(error),
        };
        let result = match result {
            Ok((value, headers)) => {
                state.last_fetched = Some(SystemTime::now());
                state.last_error = None;
                state.failures = 0;
                let wait = self.intervals.after_success(&headers);
                state.next = later(now, wait);
                Ok(value)
            }
            Err(error) => {
                state.last_error = Some(error.clone());
                state.failures = state.failures.saturating_add(1);
                state.next = later(
                    now,
                    self.intervals.after_failure(state.failures, retry_base),
                );
                Err(error)
            }
        };
        drop(state);
        self.wake.notify_one();
        result
    }

    pub(crate) fn status(&self) -> ResourceStatus {
        let state = self.state();
        let text =
            |v: &Option<HeaderValue>| v.as_ref().and_then(|v| v.to_str().ok()).map(str::to_owned);
        ResourceStatus {
            url: self.url.to_string(),
            has_value: state.value.is_some(),
            last_fetched: state.last_fetched,
            next_refresh_in: state.next.saturating_duration_since(Instant::now()),
            last_error: state.last_error.clone(),
            consecutive_failures: state.failures,
            etag: text(&state.validators.etag),
            last_modified: text(&state.validators.last_modified),
        }
    }

    /// Stops the URL's timer.
    pub(crate) fn stop(&self) -> Option<JoinHandle<()>> {
        let timer = self.timer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(timer) = &timer {
            timer.abort();
        }
        timer
    }
}
