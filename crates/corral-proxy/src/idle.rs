//! When a client connection is to be closed for doing nothing:
//!
//! - idle (`idle-timeout`): no request in flight (a request counts until its response
//!   body is sent or dropped), and none begun, for that long; closed gracefully, with
//!   one more `send-timeout` to write what it still holds (a whole stored body handed
//!   to the writer, which a client that stopped reading never takes), then cut. It
//!   matters for HTTP/2, whose client can keep a connection (and its
//!   `max-connections` slot) open by answering pings alone; an idle HTTP/1.1
//!   connection is already closed by the header read timeout;
//! - stalled (`send-timeout`): a response body being sent, and no part of any sent
//!   for that long, because the client stopped reading (or the origin stopped
//!   sending); closed at once, which frees its slot and the places its responses hold
//!   among the requests to origins.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// A connection's requests: how many are in flight, how many are sending their
/// response bodies, and when the last began, ended or sent a part of its body.
#[derive(Debug)]
pub(crate) struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    sending: AtomicUsize,
    /// Milliseconds from `opened` to the last request's beginning, end or progress.
    last: AtomicU64,
}

/// A request in flight on its connection, until dropped.
#[derive(Debug)]
pub(crate) struct Active {
    activity: Arc<Activity>,
    sending: bool,
}

/// Why a connection is to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inactive {
    /// Nothing in flight for `idle-timeout`: closed gracefully.
    Idle,
    /// A response body not sent on for `send-timeout`: closed at once.
    Stalled,
}

impl Activity {
    /// A connection opened now.
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            sending: AtomicUsize::new(0),
            last: AtomicU64::new(0),
        })
    }

    /// A request begins.
    pub(crate) fn begin(self: &Arc<Self>) -> Active {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        Active {
            activity: self.clone(),
            sending: false,
        }
    }

    fn touch(&self) {
        let since = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.fetch_max(since, Ordering::AcqRel);
    }

    /// Completes once the connection is idle for `idle` or stalled for `stalled`.
    pub(crate) async fn inactive(&self, idle: Duration, stalled: Duration) -> Inactive {
        loop {
            let last = self.opened + Duration::from_millis(self.last.load(Ordering::Acquire));
            let now = Instant::now();
            if self.sending.load(Ordering::Acquire) > 0 {
                if now >= last + stalled {
                    return Inactive::Stalled;
                }
            } else if self.in_flight.load(Ordering::Acquire) == 0 && now >= last + idle {
                return Inactive::Idle;
            }
            // Not yet: look again when it could be, at most four times a timeout.
            let soonest = last + idle.min(stalled);
            let often = now + idle.min(stalled) / 4;
            tokio::time::sleep_until(soonest.max(often)).await;
        }
    }
}

impl Active {
    /// Its response's body is being sent: from now on, a pause in sending it counts
    /// toward `send-timeout`.
    pub(crate) fn sending(&mut self) {
        if !self.sending {
            self.sending = true;
            self.activity.sending.fetch_add(1, Ordering::AcqRel);
            self.activity.touch();
        }
    }

    /// A part of its body was sent on.
    pub(crate) fn progressed(&self) {
        self.activity.touch();
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.activity.touch();
        if self.sending {
            self.activity.sending.fetch_sub(1, Ordering::AcqRel);
        }
        self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(60);
    const STALLED: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_requests_is_idle_after_the_timeout() {
        let activity = Activity::new();
        let started = Instant::now();
        assert_eq!(activity.inactive(IDLE, STALLED).await, Inactive::Idle);
        assert_eq!(started.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_keeps_it_open_and_the_timeout_counts_from_its_end() {
        let activity = Activity::new();
        let request = activity.begin();
        let ended = tokio::spawn({
            let activity = activity.clone();
            async move {
                let why = activity.inactive(IDLE, STALLED).await;
                (why, Instant::now())
            }
        });
        tokio::time::sleep(IDLE * 3).await;
        assert!(
            !ended.is_finished(),
            "a request is in flight, not sending yet"
        );
        drop(request);
        let done_at = Instant::now();
        let (why, idle_at) = ended.await.unwrap();
        assert_eq!(why, Inactive::Idle);
        assert!(idle_at >= done_at + IDLE, "{:?}", idle_at - done_at);
        assert!(idle_at <= done_at + IDLE + STALLED / 4 + Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_not_sent_on_is_stalled_and_progress_puts_it_off() {
        let activity = Activity::new();
        let mut request = activity.begin();
        request.sending();
        let started = Instant::now();
        let watched = tokio::spawn({
            let activity = activity.clone();
            async move { (activity.inactive(IDLE, STALLED).await, Instant::now()) }
        });
        for _ in 0..5 {
            tokio::time::sleep(STALLED / 2).await;
            request.progressed();
        }
        assert!(!watched.is_finished(), "sent on every half timeout");
        let (why, at) = watched.await.unwrap();
        assert_eq!(why, Inactive::Stalled);
        let last_progress = started + STALLED / 2 * 5;
        assert!(at >= last_progress + STALLED, "{:?}", at - last_progress);
        drop(request);
    }
}
