//! Probabilistic early refresh (XFetch: Vattani, Chierichetti and Lowenstein, "Optimal
//! Probabilistic Cache Stampede Prevention", VLDB 2015). A hit on a fresh entry starts
//! the key's one background refresh early, with a probability that rises as expiry
//! nears, scaled by how long the key took to load. The paper refreshes when
//! `now - load_time * beta * ln(r) >= fresh_until`, `r` uniform in (0, 1]; this adds
//! the load's own duration, `now + load_time - load_time * beta * ln(r) >= fresh_until`,
//! so that a refresh that takes as long as the last load ends before expiry: any read
//! within one load time of expiry starts it for certain. (With the paper's rule, a key
//! read 100 times a second with a 100 ms load started its refresh too late in about
//! one lifetime in fifty, and was served stale meanwhile.) A hot key is so refreshed
//! before it expires, about once per lifetime, and no caller ever waits for it or gets
//! it stale; a key read rarely, or long before its expiry, is not refreshed early.

use std::cell::Cell;
use std::time::Duration;

use tokio::time::Instant;

/// Whether a hit at `now` on an entry fresh until `fresh_until`, which took
/// `load_time` to load, should start its refresh now (`beta` > 0: larger is earlier).
pub(crate) fn refresh_early(
    now: Instant,
    fresh_until: Instant,
    load_time: Duration,
    beta: f64,
) -> bool {
    if load_time.is_zero() || now >= fresh_until {
        return false;
    }
    let load = load_time.as_secs_f64();
    let left = fresh_until.duration_since(now).as_secs_f64() - load;
    if left <= 0.0 {
        return true;
    }
    // -ln(r) for r in (0, 1]: an exponential draw with mean 1.
    let draw = -(1.0 - unit()).ln();
    load * beta * draw >= left
}

/// A uniform draw in [0, 1), from a per-thread xorshift generator seeded at random.
fn unit() -> f64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(ahash::RandomState::new().hash_one(0u64) | 1);
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_from_expiry_never_near_it_almost_always_and_never_without_a_load_time() {
        let now = Instant::now();
        let load = Duration::from_millis(100);
        let far = now + Duration::from_secs(10);
        assert!((0..10_000).all(|_| !refresh_early(now, far, load, 1.0)));
        let near = now + Duration::from_millis(1);
        let early = (0..10_000)
            .filter(|_| refresh_early(now, near, load, 1.0))
            .count();
        assert!(
            early > 9_800,
            "{early} of 10 000 one millisecond before expiry"
        );
        assert!((0..1000).all(|_| !refresh_early(now, near, Duration::ZERO, 1.0)));
        assert!(
            !refresh_early(near, near, load, 1.0),
            "expired is not early"
        );
    }

    #[test]
    fn the_chance_follows_the_exponential_law() {
        // Two load times before expiry (one beyond the load's own), beta 1:
        // P(draw >= 1) = 1/e.
        let now = Instant::now();
        let load = Duration::from_millis(100);
        let until = now + load * 2;
        let n = 100_000;
        let early = (0..n)
            .filter(|_| refresh_early(now, until, load, 1.0))
            .count();
        let share = early as f64 / n as f64;
        assert!((share - (-1.0f64).exp()).abs() < 0.01, "{share}");
    }
}
