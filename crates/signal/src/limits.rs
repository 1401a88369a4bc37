//! A token bucket per connection: `rate` messages per second with bursts of `burst`. Pure.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        TokenBucket {
            rate: rate as f64,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn allow(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_table() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3, t0);
        // (offset ms, expected)
        let steps = [
            (0, true),
            (0, true),
            (0, true),
            (0, false),
            (50, false),
            (100, true),
            (100, false),
            (1000, true),
            (1000, true),
            (1000, true),
            (1000, false),
        ];
        for (i, (ms, want)) in steps.into_iter().enumerate() {
            assert_eq!(b.allow(t0 + Duration::from_millis(ms)), want, "step {i}");
        }
    }
}
