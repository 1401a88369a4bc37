//! Stateless NONCE values for the long-term credential mechanism (RFC 8489 section 9.2).
//!
//! The relay keeps no table of issued nonces: a nonce carries its own expiry and a MAC over that
//! expiry and the client's transport address, keyed by a random per-process key. A flood of
//! unauthenticated requests therefore costs no memory at all (the `turn` crate's server stores
//! one entry per challenge and never evicts them). A nonce is bound to the 5-tuple it was issued
//! to, so one leaked by a client cannot be replayed from elsewhere.
//!
//! Pure: callers pass `now` in seconds since the Unix epoch.

use std::net::SocketAddr;

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// How long a nonce is accepted, as coturn's default `stale-nonce` (600 s).
pub const NONCE_LIFETIME_SECS: u64 = 600;

/// The key that signs nonces. Random per process; nonces do not survive a restart (clients
/// recover with one 438 round trip).
#[derive(Clone)]
pub struct NonceKey([u8; 20]);

impl NonceKey {
    /// A key drawn from `rng` (the core's, seeded by its shell).
    pub fn from_rng(rng: &mut impl rand::Rng) -> Self {
        NonceKey(rng.random())
    }

    #[cfg(test)]
    pub(crate) fn fixed(b: u8) -> Self {
        NonceKey([b; 20])
    }

    fn mac(&self, expiry: u64, client: SocketAddr) -> [u8; 8] {
        let mut mac = Hmac::<Sha1>::new_from_slice(&self.0).expect("any key length");
        mac.update(&expiry.to_be_bytes());
        match client.ip() {
            std::net::IpAddr::V4(ip) => mac.update(&ip.octets()),
            std::net::IpAddr::V6(ip) => mac.update(&ip.octets()),
        }
        mac.update(&client.port().to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 8];
        out.copy_from_slice(&full[..8]);
        out
    }

    /// A nonce for `client` valid for [`NONCE_LIFETIME_SECS`] from `now`.
    pub fn issue(&self, client: SocketAddr, now: u64) -> String {
        let expiry = now + NONCE_LIFETIME_SECS;
        let mut s = format!("{expiry:016x}");
        for b in self.mac(expiry, client) {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// Checks a nonce presented by `client`.
    pub fn verify(&self, nonce: &str, client: SocketAddr, now: u64) -> NonceCheck {
        if nonce.len() != 32 || !nonce.is_ascii() {
            return NonceCheck::Invalid;
        }
        let Ok(expiry) = u64::from_str_radix(&nonce[..16], 16) else {
            return NonceCheck::Invalid;
        };
        let mut want = String::with_capacity(16);
        for b in self.mac(expiry, client) {
            want.push_str(&format!("{b:02x}"));
        }
        // Constant-time enough: both are fixed-length hex of a MAC the attacker cannot choose.
        if want.as_bytes() != &nonce.as_bytes()[16..] {
            return NonceCheck::Invalid;
        }
        if expiry < now {
            NonceCheck::Stale
        } else {
            NonceCheck::Valid
        }
    }
}

/// Outcome of [`NonceKey::verify`]. Both failures are answered with 438 (Stale Nonce) and a
/// fresh nonce, as RFC 8489 section 9.2.4 asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Valid,
    Stale,
    Invalid,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_table() {
        let key = NonceKey::fixed(7);
        let other_key = NonceKey::fixed(8);
        let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:5001".parse().unwrap();
        let n = key.issue(a, 1000);
        let cases = [
            (&key, n.as_str(), a, 1000, NonceCheck::Valid),
            (
                &key,
                n.as_str(),
                a,
                1000 + NONCE_LIFETIME_SECS,
                NonceCheck::Valid,
            ),
            (
                &key,
                n.as_str(),
                a,
                1001 + NONCE_LIFETIME_SECS,
                NonceCheck::Stale,
            ),
            (&key, n.as_str(), b, 1000, NonceCheck::Invalid),
            (&other_key, n.as_str(), a, 1000, NonceCheck::Invalid),
            (&key, "", a, 1000, NonceCheck::Invalid),
            (
                &key,
                "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
                a,
                1000,
                NonceCheck::Invalid,
            ),
            (&key, "ééééééééééééééee", a, 1000, NonceCheck::Invalid),
        ];
        for (k, nonce, client, now, want) in cases {
            assert_eq!(k.verify(nonce, client, now), want, "{nonce} {client} {now}");
        }
    }

    #[test]
    fn tampered_expiry_is_invalid() {
        let key = NonceKey::fixed(1);
        let a: SocketAddr = "198.51.100.9:1234".parse().unwrap();
        let n = key.issue(a, 1000);
        let forged = format!("{:016x}{}", 1000 + 100_000u64, &n[16..]);
        assert_eq!(key.verify(&forged, a, 1000), NonceCheck::Invalid);
    }
}
