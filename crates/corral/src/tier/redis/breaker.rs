//! A circuit breaker for the Redis tier: after repeated failures, Redis is skipped for
//! a cool-down, then probed by one operation at a time until it answers again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Redis is used.
    Closed { failures: u32 },
    /// Redis is skipped until `until`; then one probe may go.
    Open { until: Instant },
    /// One probe is out; everyone else skips Redis until it returns.
    Probing,
}

/// Leave for one operation to use Redis, from [`Breaker::permit`]. Its outcome is
/// reported by consuming it ([`succeeded`](Self::succeeded), [`failed`](Self::failed)); a
/// probe dropped without an outcome (its operation was cancelled) puts the breaker back
/// to open, so that a call after the cool-down probes again.
#[must_use = "a permit reports its operation's outcome"]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    /// Whether this is the probe after a cool-down, still owing its outcome.
    probe: bool,
}

/// The circuit breaker of one Redis tier.
pub(crate) struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    cool_down: Duration,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cool_down: Duration) -> Self {
        Breaker {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold: threshold.max(1),
            cool_down,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open(&self) -> State {
        State::Open {
            until: Instant::now() + self.cool_down,
        }
    }

    /// Whether an operation may use Redis now: `None` while the breaker is open (or
    /// another operation is the probe).
    pub(crate) fn permit(&self) -> Option<Permit<'_>> {
        let mut state = self.lock();
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until } if Instant::now() >= until => {
                *state = State::Probing;
                true
            }
            State::Open { .. } | State::Probing => return None,
        };
        Some(Permit {
            breaker: self,
            probe,
        })
    }
}

impl Permit<'_> {
    /// Whether this operation is the probe after a cool-down.
    pub(crate) fn is_probe(&self) -> bool {
        self.probe
    }

    /// Records the operation's success: the breaker closes.
    pub(crate) fn succeeded(mut self) {
        self.probe = false;
        *self.breaker.lock() = State::Closed { failures: 0 };
    }

    /// Records the operation's failure; returns whether this opened the breaker.
    pub(crate) fn failed(mut self) -> bool {
        let probe = std::mem::replace(&mut self.probe, false);
        let mut state = self.breaker.lock();
        match *state {
            State::Closed { failures } if failures + 1 >= self.breaker.threshold => {
                *state = self.breaker.open();
                true
            }
            State::Closed { failures } => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                false
            }
            State::Probing if probe => {
                *state = self.breaker.open();
                true
            }
            State::Open { .. } | State::Probing => false,
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.probe {
            return;
        }
        let mut state = self.breaker.lock();
        if *state == State::Probing {
            *state = self.breaker.open();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cool_down() {
        std::thread::sleep(Duration::from_millis(25));
    }

    #[test]
    fn opens_after_the_threshold_and_probes_one_at_a_time() {
        let b = Breaker::new(3, Duration::from_millis(20));
        for _ in 0..2 {
            let permit = b.permit().expect("closed");
            assert!(!permit.is_probe());
            assert!(!permit.failed());
        }
        assert!(b.permit().unwrap().failed(), "the third failure opens it");
        assert!(b.permit().is_none());
        cool_down();
        let probe = b.permit().expect("a probe after the cool-down");
        assert!(probe.is_probe());
        assert!(b.permit().is_none(), "one probe at a time");
        assert!(probe.failed(), "a failed probe reopens it");
        assert!(b.permit().is_none());
        cool_down();
        b.permit().unwrap().succeeded();
        assert!(!b.permit().unwrap().is_probe());
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(60));
        assert!(!b.permit().unwrap().failed());
        b.permit().unwrap().succeeded();
        assert!(!b.permit().unwrap().failed());
        assert!(b.permit().is_some());
    }

    #[test]
    fn a_dropped_probe_reopens_the_breaker_for_a_cool_down() {
        let b = Breaker::new(1, Duration::from_millis(20));
        assert!(b.permit().unwrap().failed());
        cool_down();
        drop(b.permit().expect("a probe"));
        assert!(b.permit().is_none(), "open again for a cool-down");
        cool_down();
        let probe = b.permit().expect("probed again after it");
        assert!(probe.is_probe());
        probe.succeeded();
        assert!(!b.permit().unwrap().is_probe());
    }

    #[test]
    fn a_dropped_probe_leaves_a_closed_breaker_closed() {
        let b = Breaker::new(1, Duration::from_millis(20));
        let late = b.permit().unwrap();
        assert!(b.permit().unwrap().failed());
        cool_down();
        let probe = b.permit().unwrap();
        late.succeeded();
        drop(probe);
        assert!(!b.permit().unwrap().is_probe(), "still closed");
    }
}
