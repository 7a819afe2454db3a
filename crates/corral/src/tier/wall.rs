//! Wall-clock time for tiers that outlive the process or are shared by many: an
//! entry's instants (on tokio's clock, which means nothing to another process) are
//! written as Unix milliseconds and read back against this process's clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// One reading of both clocks, to convert between them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clocks {
    now: Instant,
    wall_now: SystemTime,
}

impl Clocks {
    /// Both clocks, now.
    pub(crate) fn now() -> Self {
        Clocks {
            now: Instant::now(),
            wall_now: SystemTime::now(),
        }
    }

    /// The Unix milliseconds of `instant`.
    pub(crate) fn unix_ms(&self, instant: Instant) -> u64 {
        let wall = if instant >= self.now {
            self.wall_now + (instant - self.now)
        } else {
            self.wall_now
                .checked_sub(self.now - instant)
                .unwrap_or(UNIX_EPOCH)
        };
        wall.duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// The instant of `unix_ms`; a time further back than this clock reaches is now.
    pub(crate) fn instant(&self, unix_ms: u64) -> Instant {
        let at = UNIX_EPOCH + Duration::from_millis(unix_ms);
        match at.duration_since(self.wall_now) {
            Ok(ahead) => self.now + ahead,
            Err(behind) => self.now.checked_sub(behind.duration()).unwrap_or(self.now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_survives_the_round_trip_to_the_millisecond() {
        let clocks = Clocks::now();
        let close = |a: Instant, b: Instant| {
            let gap = if a > b { a - b } else { b - a };
            assert!(gap < Duration::from_millis(1), "{gap:?}");
        };
        for offset in [0, 1, 1_500, 86_400_000] {
            let later = clocks.now + Duration::from_millis(offset);
            close(clocks.instant(clocks.unix_ms(later)), later);
            if let Some(earlier) = clocks.now.checked_sub(Duration::from_millis(offset)) {
                close(clocks.instant(clocks.unix_ms(earlier)), earlier);
            }
        }
    }
}
