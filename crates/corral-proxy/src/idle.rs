//! When a client connection has been idle long enough to close (`idle-timeout`): no
//! request in flight (a request counts until its response body is sent or dropped),
//! and none begun, for that long. It matters for HTTP/2, whose
//! client can keep a connection (and its `max-connections` slot) open by answering
//! pings alone; an idle HTTP/1.1 connection is already closed by the header read
//! timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// A connection's requests: how many are in flight, and when the last began or ended.
#[derive(Debug)]
pub(crate) struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `opened` to the last request's beginning or end.
    last: AtomicU64,
}

/// A request in flight on its connection, until dropped.
#[derive(Debug)]
pub(crate) struct Active(Arc<Activity>);

impl Activity {
    /// A connection opened now.
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(0),
        })
    }

    /// A request begins.
    pub(crate) fn begin(self: &Arc<Self>) -> Active {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        Active(self.clone())
    }

    fn touch(&self) {
        let since = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.fetch_max(since, Ordering::AcqRel);
    }

    /// Completes once no request has been in flight, nor begun, for `idle`.
    pub(crate) async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.opened + Duration::from_millis(self.last.load(Ordering::Acquire));
            let until = last + idle;
            if Instant::now() >= until && self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            // Not yet: look again when it could be, and at most four times an `idle`.
            tokio::time::sleep_until(until.max(Instant::now() + idle / 4)).await;
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_requests_is_idle_after_the_timeout() {
        let activity = Activity::new();
        let started = Instant::now();
        activity.idle_for(IDLE).await;
        assert_eq!(started.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_keeps_it_open_and_the_timeout_counts_from_its_end() {
        let activity = Activity::new();
        let request = activity.begin();
        let ended = tokio::spawn({
            let activity = activity.clone();
            async move {
                activity.idle_for(IDLE).await;
                Instant::now()
            }
        });
        tokio::time::sleep(IDLE * 3).await;
        assert!(!ended.is_finished(), "a request is in flight");
        drop(request);
        let done_at = Instant::now();
        let idle_at = ended.await.unwrap();
        assert!(idle_at >= done_at + IDLE, "{:?}", idle_at - done_at);
        assert!(idle_at <= done_at + IDLE + IDLE / 4 + Duration::from_millis(1));
    }
}
