//! Where a shell reads the time. Servers run on the system's clock; a test runs a server on a
//! manual clock and moves it forward ([`Clock::advance`]) instead of sleeping until a rate limit
//! refills or a credential expires. The pure cores never read a clock: the shells pass them
//! `now` and `unix` read here.
//!
//! A manual clock is the system's plus an offset that only grows, so timers the runtime keeps
//! (idle timeouts, pings) still run in real time, and everything decided from `now` and `unix`
//! sees the jump.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The system's clock, or a manual one; cheap to clone (clones share the offset).
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Nanoseconds a manual clock is ahead of the system's; `None` for the system's clock.
    ahead: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Self {
        Clock { ahead: None }
    }

    /// A clock that starts at the system's time and moves with it, plus whatever
    /// [`Clock::advance`] adds.
    pub fn manual() -> Self {
        Clock {
            ahead: Some(Arc::new(AtomicU64::new(0))),
        }
    }

    /// Moves a manual clock forward by `by` (every clone sees it).
    ///
    /// # Panics
    /// On the system's clock: only tests move time.
    pub fn advance(&self, by: Duration) {
        let ahead = self.ahead.as_ref().expect("only a manual clock advances");
        ahead.fetch_add(by.as_nanos() as u64, Ordering::Relaxed);
    }

    fn offset(&self) -> Duration {
        self.ahead.as_ref().map_or(Duration::ZERO, |a| {
            Duration::from_nanos(a.load(Ordering::Relaxed))
        })
    }

    /// The monotonic time.
    pub fn now(&self) -> Instant {
        Instant::now() + self.offset()
    }

    /// Seconds since the Unix epoch (0 if the clock is before it).
    pub fn unix(&self) -> u64 {
        (SystemTime::now() + self.offset())
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_jumps_for_every_clone_and_the_system_clock_does_not() {
        let clock = Clock::manual();
        let other = clock.clone();
        let (before, unix) = (clock.now(), clock.unix());
        other.advance(Duration::from_secs(3600));
        assert!(clock.now() >= before + Duration::from_secs(3600));
        assert!((unix + 3600..=unix + 3602).contains(&clock.unix()));
        let system = Clock::system();
        assert!(system.now() < before + Duration::from_secs(60));
        assert!(system.unix() < unix + 60);
    }

    #[test]
    #[should_panic(expected = "only a manual clock advances")]
    fn the_system_clock_cannot_be_moved() {
        Clock::system().advance(Duration::from_secs(1));
    }
}
