//! Pure decisions for long-lived sessions: when to renew TURN credentials, how long to wait
//! between signaling reconnect attempts, and which side yields when both send an offer at once.
//! No sockets, no clock: callers pass durations and ids.

use std::time::Duration;

/// Shortest renewal period, so a tiny TTL cannot turn renewal into a busy loop.
pub const MIN_RENEWAL: Duration = Duration::from_secs(1);

/// How long after receiving a credential valid for `ttl` to ask for a new one: half the TTL, so
/// a refused or slow renewal can be retried well before the credential expires.
pub fn renew_after(ttl: Duration) -> Duration {
    (ttl / 2).max(MIN_RENEWAL)
}

/// Delay before signaling reconnect attempt `attempt` (0-based): 250 ms doubling, capped at 5 s.
pub fn reconnect_delay(attempt: u32) -> Duration {
    let ms = 250u64.saturating_mul(1u64 << attempt.min(10));
    Duration::from_millis(ms.min(5_000))
}

/// Perfect negotiation (W3C WebRTC 1.0, section 10.7): when both peers send an offer at once, the
/// polite one rolls its own back and answers; the impolite one ignores the incoming offer. Both
/// sides must agree, so the role comes from the two peer ids: the greater id is polite.
pub fn polite(me: &str, remote: &str) -> bool {
    me > remote
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn renewal_table() {
        for (ttl, want) in [
            (s(3600), s(1800)),
            (s(20), s(10)),
            (s(3), Duration::from_millis(1500)),
            (s(1), MIN_RENEWAL),
            (s(0), MIN_RENEWAL),
        ] {
            assert_eq!(renew_after(ttl), want, "ttl {ttl:?}");
        }
    }

    #[test]
    fn reconnect_backoff_table() {
        let ms = Duration::from_millis;
        for (attempt, want) in [
            (0, ms(250)),
            (1, ms(500)),
            (2, ms(1000)),
            (4, ms(4000)),
            (5, ms(5000)),
            (60, ms(5000)),
            (u32::MAX, ms(5000)),
        ] {
            assert_eq!(reconnect_delay(attempt), want, "attempt {attempt}");
        }
    }

    #[test]
    fn exactly_one_side_is_polite() {
        for (a, b) in [("a", "b"), ("k3x9", "p7w4"), ("peer-2", "peer-10")] {
            assert_ne!(polite(a, b), polite(b, a), "{a} vs {b}");
        }
    }
}
