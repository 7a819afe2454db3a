//! Whether the disk tier is on. An I/O error (disk full, a read-only or vanished
//! directory, a failing device) turns it off, logged once: the cache goes on with its
//! other tiers and its loader, and no request fails for it. While off, a probe (make
//! the directory, write and remove a file) runs at most once per back-off, which
//! doubles from one second up to a minute; the first that passes turns it on again.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(60);

/// On or off, and when to try again.
#[derive(Debug)]
pub(crate) struct Health {
    off: AtomicBool,
    retry: Mutex<Retry>,
}

#[derive(Debug)]
struct Retry {
    at: Instant,
    after: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            off: AtomicBool::new(false),
            retry: Mutex::new(Retry {
                at: Instant::now(),
                after: FIRST_RETRY,
            }),
        }
    }
}

impl Health {
    /// Whether the tier is off now.
    pub(crate) fn is_off(&self) -> bool {
        self.off.load(Ordering::Acquire)
    }

    /// Whether a probe is due (the tier is off and its back-off has passed); the caller
    /// that gets `true` runs it, and the next is due one back-off later.
    pub(crate) fn probe_due(&self) -> bool {
        if !self.is_off() {
            return false;
        }
        let mut retry = self.retry.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if now < retry.at {
            return false;
        }
        retry.at = now + retry.after;
        retry.after = (retry.after * 2).min(LAST_RETRY);
        true
    }

    /// Turns the tier off after `error` while `doing`; returns whether it was on (the
    /// caller counts and logs the fault once).
    pub(crate) fn fault(&self, doing: &str, error: &io::Error) -> bool {
        let was_on = !self.off.swap(true, Ordering::AcqRel);
        if was_on {
            let mut retry = self.retry.lock().unwrap_or_else(|p| p.into_inner());
            *retry = Retry {
                at: Instant::now() + FIRST_RETRY,
                after: FIRST_RETRY * 2,
            };
            tracing::error!(%error, doing, "disk tier off: requests go on without it; it comes back once its directory works");
        }
        was_on
    }

    /// Turns the tier on again after a probe passed.
    pub(crate) fn back(&self) {
        if self.off.swap(false, Ordering::AcqRel) {
            tracing::warn!("disk tier back on");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_turns_it_off_once_and_probes_back_off() {
        let health = Health::default();
        assert!(!health.probe_due(), "on: nothing to probe");
        let error = io::Error::other("disk full");
        assert!(health.fault("writing", &error));
        assert!(
            !health.fault("writing", &error),
            "already off: not logged again"
        );
        assert!(health.is_off());
        assert!(!health.probe_due(), "not before the first back-off");
        health.retry.lock().unwrap().at = Instant::now();
        assert!(health.probe_due());
        assert!(!health.probe_due(), "one probe per back-off");
        health.back();
        assert!(!health.is_off());
    }
}
