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

/// Whether an operation may use Redis now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    /// Yes.
    Go,
    /// Yes, as the probe after a cool-down.
    Probe,
    /// No: the breaker is open.
    Skip,
}

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

    pub(crate) fn permit(&self) -> Permit {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Permit::Go,
            State::Open { until } if Instant::now() >= until => {
                *state = State::Probing;
                Permit::Probe
            }
            State::Open { .. } | State::Probing => Permit::Skip,
        }
    }

    /// Records an operation's success: the breaker closes.
    pub(crate) fn succeeded(&self) {
        *self.lock() = State::Closed { failures: 0 };
    }

    /// Records an operation's failure; returns whether this opened the breaker.
    pub(crate) fn failed(&self, permit: Permit) -> bool {
        let mut state = self.lock();
        let open = State::Open {
            until: Instant::now() + self.cool_down,
        };
        match (*state, permit) {
            (State::Closed { failures }, _) if failures + 1 >= self.threshold => {
                *state = open;
                true
            }
            (State::Closed { failures }, _) => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                false
            }
            (State::Probing, Permit::Probe) => {
                *state = open;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_probes_one_at_a_time() {
        let b = Breaker::new(3, Duration::from_millis(20));
        for _ in 0..2 {
            assert_eq!(b.permit(), Permit::Go);
            assert!(!b.failed(Permit::Go));
        }
        assert!(b.failed(Permit::Go), "the third failure opens it");
        assert_eq!(b.permit(), Permit::Skip);
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(b.permit(), Permit::Probe);
        assert_eq!(b.permit(), Permit::Skip, "one probe at a time");
        assert!(b.failed(Permit::Probe), "a failed probe reopens it");
        assert_eq!(b.permit(), Permit::Skip);
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(b.permit(), Permit::Probe);
        b.succeeded();
        assert_eq!(b.permit(), Permit::Go);
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(60));
        b.failed(Permit::Go);
        b.succeeded();
        assert!(!b.failed(Permit::Go));
        assert_eq!(b.permit(), Permit::Go);
    }
}
