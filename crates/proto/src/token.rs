//! Join tokens: signed, expiring, scoped to one room.
//!
//! `v1.<unix-expiry>.<base64url(room)>.<base64url(HMAC-SHA256(secret, "v1.<expiry>.<room b64>"))>`
//!
//! Mint one with `natkit-signal token --room ROOM --ttl SECONDS` (same token secret). Pure: `now`
//! is a parameter.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a token was refused (all answered with `unauthorized`; the detail is logged, not sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token given")]
    Missing,
    #[error("token is not v1.<expiry>.<room>.<mac>")]
    Malformed,
    #[error("token signature does not match")]
    BadSignature,
    #[error("token expired {0} s ago")]
    Expired(u64),
    #[error("token is for another room")]
    WrongRoom,
}

#[derive(Clone)]
pub struct TokenSecret(Vec<u8>);

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

impl TokenSecret {
    pub fn new(secret: &str) -> Option<Self> {
        let s = secret.trim();
        (!s.is_empty()).then(|| TokenSecret(s.as_bytes().to_vec()))
    }

    /// A random secret for one run of the server (32 bytes from the OS generator).
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        TokenSecret(B64.encode(bytes).into_bytes())
    }

    fn mac(&self, signed: &str) -> Vec<u8> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        m.update(signed.as_bytes());
        m.finalize().into_bytes().to_vec()
    }

    pub fn mint(&self, room: &str, ttl: u64, now: u64) -> String {
        let signed = format!("v1.{}.{}", now.saturating_add(ttl), B64.encode(room));
        format!("{signed}.{}", B64.encode(self.mac(&signed)))
    }

    /// Checks a token; returns the room it grants.
    pub fn verify(&self, token: &str, now: u64) -> Result<String, TokenError> {
        self.claims(token, now).map(|c| c.room)
    }

    /// Checks a token; returns the room it grants and when it expires.
    pub fn claims(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let mut parts = token.splitn(4, '.');
        let (Some("v1"), Some(exp), Some(room_b64), Some(mac_b64)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let exp: u64 = exp.parse().map_err(|_| TokenError::Malformed)?;
        let mac = B64.decode(mac_b64).map_err(|_| TokenError::Malformed)?;
        let signed = &token[..token.len() - mac_b64.len() - 1];
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        m.update(signed.as_bytes());
        m.verify_slice(&mac).map_err(|_| TokenError::BadSignature)?;
        if exp < now {
            return Err(TokenError::Expired(now - exp));
        }
        let room = B64.decode(room_b64).map_err(|_| TokenError::Malformed)?;
        let room = String::from_utf8(room).map_err(|_| TokenError::Malformed)?;
        Ok(Claims { room, expires: exp })
    }

    /// Checks a token for joining `room`; returns its expiry (Unix seconds).
    pub fn authorize(&self, token: Option<&str>, room: &str, now: u64) -> Result<u64, TokenError> {
        let c = self.claims(token.ok_or(TokenError::Missing)?, now)?;
        if c.room == room {
            Ok(c.expires)
        } else {
            Err(TokenError::WrongRoom)
        }
    }
}

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub room: String,
    /// Unix seconds after which the token no longer works.
    pub expires: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_table() {
        let key = TokenSecret::new("k").unwrap();
        let other = TokenSecret::new("other").unwrap();
        let t = key.mint("room1", 60, 1000);
        let tampered = t.replacen("v1.1060.", "v1.9999.", 1);
        // (key, token, room, now, verdict)
        type Row<'a> = (
            &'a TokenSecret,
            Option<&'a str>,
            &'a str,
            u64,
            Result<u64, TokenError>,
        );
        let cases: [Row; 8] = [
            (&key, Some(&t), "room1", 1000, Ok(1060)),
            (&key, Some(&t), "room1", 1060, Ok(1060)),
            (&key, Some(&t), "room1", 1061, Err(TokenError::Expired(1))),
            (&key, Some(&t), "room2", 1000, Err(TokenError::WrongRoom)),
            (
                &other,
                Some(&t),
                "room1",
                1000,
                Err(TokenError::BadSignature),
            ),
            (
                &key,
                Some(&tampered),
                "room1",
                1000,
                Err(TokenError::BadSignature),
            ),
            (
                &key,
                Some("garbage"),
                "room1",
                1000,
                Err(TokenError::Malformed),
            ),
            (&key, None, "room1", 1000, Err(TokenError::Missing)),
        ];
        for (k, tok, room, now, want) in cases {
            assert_eq!(k.authorize(tok, room, now), want, "{tok:?} {room} {now}");
        }
        assert!(!format!("{key:?}").contains('k') || format!("{key:?}").contains("redacted"));
        let g = TokenSecret::generate();
        assert_ne!(
            g.mint("r", 1, 0),
            TokenSecret::generate().mint("r", 1, 0),
            "random"
        );
        assert_eq!(g.verify(&g.mint("r", 60, 0), 10).unwrap(), "r");
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Mutated and random tokens are refused (never accepted, never a panic).
    #[test]
    fn verify_refuses_every_mutation() {
        let key = TokenSecret::new("fuzz").unwrap();
        let good = key.mint("room", 600, 1000);
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..20_000 {
            let mut b = good.as_bytes().to_vec();
            let at = rng.random_range(0..b.len());
            let new = rng.random_range(b'!'..=b'~');
            if b[at] == new {
                continue;
            }
            b[at] = new;
            let t = String::from_utf8(b).unwrap();
            // A mutation may only ever be accepted if it decodes to the same signed bytes
            // (base64 padding bits), and then only for the same room.
            if let Ok(room) = key.verify(&t, 1000) {
                assert_eq!(room, "room", "{t}");
            }
            let random: String = (0..rng.random_range(0..80))
                .map(|_| rng.random_range(b'!'..=b'~') as char)
                .collect();
            assert!(key.verify(&random, 1000).is_err(), "{random}");
        }
    }
}
