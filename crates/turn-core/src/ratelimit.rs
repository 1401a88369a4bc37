//! Rate limits, pure: a token bucket (`rate` per second with bursts of `burst`), one per key in
//! a bounded map ([`KeyedLimiter`]: the relay's answers per source IP, natkit-signal's
//! credentials per client IP and per token), and connection counts per client IP ([`IpSlots`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
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
        Self::with_rate(rate as f64, burst, now)
    }

    /// `per_minute` a minute, with bursts of as many.
    pub fn per_minute(per_minute: u32, now: Instant) -> Self {
        Self::with_rate(per_minute as f64 / 60.0, per_minute, now)
    }

    /// `per_second` a second, with bursts of `burst`.
    pub fn per_second(per_second: u32, burst: u32, now: Instant) -> Self {
        Self::with_rate(per_second as f64, burst, now)
    }

    fn with_rate(rate: f64, burst: u32, now: Instant) -> Self {
        TokenBucket {
            rate,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            last: now,
        }
    }

    /// Full again by `now`: the key can be forgotten without changing any answer.
    fn idle(&self, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * self.rate
            >= self.burst
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

/// One [`TokenBucket`] per key (`per_minute` a minute each), at most `capacity` keys: when full,
/// keys whose bucket is full again are forgotten first, then the oldest is. A flood of new keys
/// therefore costs bounded memory; it can at worst reset the bucket of an idle key.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    /// Tokens a second, and the burst.
    rate: (f64, u32),
    capacity: usize,
    buckets: HashMap<K, TokenBucket>,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// `per_minute` a minute per key (bursts as large); 0 means unlimited.
    pub fn new(per_minute: u32, capacity: usize) -> Self {
        KeyedLimiter {
            rate: (per_minute as f64 / 60.0, per_minute),
            capacity: capacity.max(1),
            buckets: HashMap::new(),
        }
    }

    /// `per_second` a second per key with bursts of `burst`; 0 means unlimited.
    pub fn per_second(per_second: u32, burst: u32, capacity: usize) -> Self {
        KeyedLimiter {
            rate: (per_second as f64, burst),
            capacity: capacity.max(1),
            buckets: HashMap::new(),
        }
    }

    pub fn allow(&mut self, key: &K, now: Instant) -> bool {
        if self.rate.1 == 0 || self.rate.0 == 0.0 {
            return true;
        }
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.capacity {
            self.buckets.retain(|_, b| !b.idle(now));
            if self.buckets.len() >= self.capacity {
                let oldest = self
                    .buckets
                    .iter()
                    .min_by_key(|(_, b)| b.last)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    self.buckets.remove(&k);
                }
            }
        }
        let (rate, burst) = self.rate;
        self.buckets
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::with_rate(rate, burst, now))
            .allow(now)
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Connections at once per client IP. A slot is held by an [`IpSlot`] (shared by the HTTP
/// connection and the WebSocket it upgrades to) and given back when the last clone goes.
#[derive(Debug, Default)]
pub struct IpSlots {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// A held connection slot; dropping the last clone frees it.
#[derive(Debug)]
pub struct IpSlot {
    slots: Arc<IpSlots>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock().expect("ip slots lock");
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

impl IpSlots {
    /// `max` 0 means unlimited.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(IpSlots {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `ip`, or `None` when it already holds `max`.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<Arc<IpSlot>> {
        let mut counts = self.counts.lock().expect("ip slots lock");
        let n = counts.entry(ip).or_insert(0);
        if self.max != 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Arc::new(IpSlot {
            slots: Arc::clone(self),
            ip,
        }))
    }

    /// Connections held by `ip` now.
    pub fn held(&self, ip: IpAddr) -> usize {
        self.counts
            .lock()
            .expect("ip slots lock")
            .get(&ip)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keyed_limits_are_per_key_and_bounded() {
        let t0 = Instant::now();
        let mut l = KeyedLimiter::new(3, 100);
        let (a, b) = ("a".to_owned(), "b".to_owned());
        let got: Vec<bool> = (0..4).map(|_| l.allow(&a, t0)).collect();
        assert_eq!(got, [true, true, true, false], "a burst of 3, then none");
        assert!(l.allow(&b, t0), "another key has its own bucket");
        assert!(
            l.allow(&a, t0 + Duration::from_secs(20)),
            "one back after 20 s"
        );
        // A flood of keys costs at most `capacity` buckets.
        let mut l = KeyedLimiter::new(3, 100);
        for i in 0..10_000u32 {
            l.allow(&i, t0 + Duration::from_millis(i as u64));
        }
        assert!(l.len() <= 100, "{}", l.len());
        let mut unlimited = KeyedLimiter::new(0, 1);
        assert!((0..1000).all(|_| unlimited.allow(&a, t0)));
        assert!(unlimited.is_empty());
    }

    #[test]
    fn ip_slots_are_counted_and_given_back() {
        let slots = IpSlots::new(2);
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let other: IpAddr = "198.51.100.8".parse().unwrap();
        let s1 = slots.acquire(ip).unwrap();
        let s2 = slots.acquire(ip).unwrap();
        assert!(
            slots.acquire(ip).is_none(),
            "a third from one IP is refused"
        );
        assert!(slots.acquire(other).is_some());
        let shared = Arc::clone(&s1);
        drop(s1);
        assert_eq!(slots.held(ip), 2, "a clone still holds it");
        drop(shared);
        assert_eq!(slots.held(ip), 1);
        assert!(slots.acquire(ip).is_some());
        drop(s2);
        assert!(IpSlots::new(0).acquire(ip).is_some(), "0 = unlimited");
    }

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
