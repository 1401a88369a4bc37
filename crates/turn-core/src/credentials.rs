//! TURN REST API credentials (draft-uberti-behave-turn-rest, coturn's `use-auth-secret`).
//!
//! A credential is minted from a shared secret, a user id and a time to live:
//!
//! ```text
//! username = "<unix-expiry>:<user-id>"
//! password = base64(HMAC-SHA1(secret, username))
//! ```
//!
//! The relay recomputes the password from the username, so it keeps no per-user state. Several
//! secrets can be configured at once: the first one mints, every one verifies, so an operator can
//! rotate a secret while credentials minted with the old one are still alive.
//!
//! Everything here is pure: callers pass `now` as seconds since the Unix epoch.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
pub use natkit_proto::{IceServer, IceServers, RelayEndpoints};
use sha1::Sha1;

use crate::error::CredentialError;

/// Separator between expiry and user id, as coturn's default (`-C ':'`).
pub const SEPARATOR: char = ':';

/// Separator between a user id and the quota group it is counted in: `demo/alice#1f0c...`.
///
/// The relay's `user_quota` counts allocations per group, so credentials minted for one grant (a
/// join token) share one quota however many of them are fetched; a user id without a group is
/// its own group. Revocation matches the user id without its group. The group is part of the
/// signed username, so a client cannot pick it.
pub const GROUP_SEPARATOR: char = '#';

/// `user_id` counted in `group`'s quota: `user#group` (the user id as is for an empty group).
pub fn grouped(user_id: &str, group: &str) -> String {
    if group.is_empty() {
        user_id.to_owned()
    } else {
        format!("{user_id}{GROUP_SEPARATOR}{group}")
    }
}

/// What the relay's per-user quota counts `user_id` under: its group (`#...`, kept with its
/// separator so it never equals a plain user id) or, without one, the user id itself.
pub fn quota_key(user_id: &str) -> &str {
    match user_id.rfind(GROUP_SEPARATOR) {
        Some(i) => &user_id[i..],
        None => user_id,
    }
}

/// The user id without its quota group: what `user ID` revocation lines name.
pub fn ungrouped(user_id: &str) -> &str {
    match user_id.rfind(GROUP_SEPARATOR) {
        Some(i) => &user_id[..i],
        None => user_id,
    }
}

/// A quota group for everything minted under one bearer grant (a join token): 16 hex digits of
/// its SHA-1, so the grant itself never appears in usernames or logs, and every node of a
/// cluster derives the same group for the same token.
pub fn grant_group(grant: &str) -> String {
    use sha1::Digest;
    let digest = Sha1::digest(grant.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A shared TURN secret. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret; empty or whitespace-only secrets are refused.
    pub fn new(value: impl Into<String>) -> Result<Self, CredentialError> {
        let value = value.into();
        if value.trim().is_empty() {
            return Err(CredentialError::EmptySecret);
        }
        Ok(Secret(value))
    }

    /// A secret made of 32 random bytes (base64), for deployments that did not configure one:
    /// the shell draws the bytes from the OS.
    pub fn from_random(bytes: [u8; 32]) -> Self {
        Secret(BASE64.encode(bytes))
    }

    /// The secret itself, for HMAC keys and for handing a generated secret on. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The ordered set of secrets a relay accepts. The first one mints new credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secrets(Vec<Secret>);

impl Secrets {
    pub fn new(secrets: Vec<Secret>) -> Result<Self, CredentialError> {
        if secrets.is_empty() {
            return Err(CredentialError::NoSecret);
        }
        Ok(Secrets(secrets))
    }

    /// The secret that mints new credentials.
    pub fn current(&self) -> &Secret {
        &self.0[0]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A minted TURN credential. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
    /// Seconds the credential stays valid, counted from when it was minted.
    pub ttl: u64,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl Credential {
    /// The `RTCIceServer` for a relay (every transport it serves, UDP first) with this
    /// credential.
    pub fn ice_server(&self, relay: &RelayEndpoints) -> IceServer {
        IceServer::for_endpoints(relay, self.username.clone(), self.password.clone())
    }

    /// `{"iceServers":[...],"ttl":N}` for a relay, as `natkit-relay credentials` prints it.
    pub fn ice_servers(&self, relay: &RelayEndpoints) -> IceServers {
        IceServers {
            ice_servers: vec![self.ice_server(relay)],
            ttl: self.ttl,
        }
    }
}

/// The password coturn derives for `username`: base64(HMAC-SHA1(secret, username)).
pub fn password_for(secret: &Secret, username: &str) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC-SHA1 takes keys of any length");
    mac.update(username.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// Mints a credential for `user_id` valid for `ttl` seconds from `now`.
///
/// The user id may be empty (coturn then sees a username that is only the expiry) but may not
/// contain the separator, which would make the username ambiguous.
pub fn mint(
    secret: &Secret,
    user_id: &str,
    ttl: u64,
    now: u64,
) -> Result<Credential, CredentialError> {
    if user_id.contains(SEPARATOR) {
        return Err(CredentialError::UserIdHasSeparator {
            user_id: user_id.to_owned(),
        });
    }
    if ttl == 0 {
        return Err(CredentialError::ZeroTtl);
    }
    let expiry = now
        .checked_add(ttl)
        .ok_or(CredentialError::TtlTooLarge { ttl })?;
    let username = if user_id.is_empty() {
        expiry.to_string()
    } else {
        format!("{expiry}{SEPARATOR}{user_id}")
    };
    let password = password_for(secret, &username);
    Ok(Credential {
        username,
        password,
        ttl,
    })
}

/// A username that parsed and has not expired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidUsername<'a> {
    pub expiry: u64,
    /// The part after the separator; the whole username's expiry when there is none.
    pub user_id: &'a str,
}

/// Parses a TURN REST API username and checks its expiry against `now`.
///
/// A credential is valid up to and including its expiry second, as in coturn.
pub fn check_username(username: &str, now: u64) -> Result<ValidUsername<'_>, CredentialError> {
    let (expiry, user_id) = match username.split_once(SEPARATOR) {
        Some((expiry, user_id)) => (expiry, user_id),
        None => (username, ""),
    };
    let expiry: u64 = expiry
        .parse()
        .map_err(|_| CredentialError::MalformedUsername {
            username: username.to_owned(),
        })?;
    if expiry < now {
        return Err(CredentialError::Expired {
            username: username.to_owned(),
            expired_secs_ago: now - expiry,
        });
    }
    Ok(ValidUsername { expiry, user_id })
}

/// The passwords `username` may legitimately carry, one per configured secret, in order.
pub fn candidate_passwords<'s>(
    secrets: &'s Secrets,
    username: &'s str,
) -> impl Iterator<Item = String> + 's {
    secrets.iter().map(move |s| password_for(s, username))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s).unwrap()
    }

    /// Known answers: computed independently with
    /// `printf %s USERNAME | openssl dgst -sha1 -hmac SECRET -binary | base64`, the same derivation
    /// coturn performs for `use-auth-secret` (and that `turnutils_uclient -W` performs as client;
    /// the loopback tests run that client against natkit).
    #[test]
    fn known_answers_match_coturn_derivation() {
        let cases = [
            ("north", "1700000000:alice", "Cd/49soE35ICqcJF/bCTn8Z4OyE="),
            ("logen", "1700000000", "87MybcFdjE+HUcpSFUKeZkiVmf8="),
            (
                "s3cr3t with spaces",
                "4102444800:bob",
                "tX1wYU3S9hTp3ZJt2jgzoAZ7ouU=",
            ),
        ];
        for (sec, username, want) in cases {
            assert_eq!(
                password_for(&secret(sec), username),
                want,
                "{sec} {username}"
            );
        }
    }

    #[test]
    fn quota_groups_table() {
        let cases = [
            // (user id, quota key, revocable name)
            ("alice", "alice", "alice"),
            (
                "demo/alice#0011223344556677",
                "#0011223344556677",
                "demo/alice",
            ),
            ("http-x7#g", "#g", "http-x7"),
            ("a#b#c", "#c", "a#b"),
            ("", "", ""),
        ];
        for (user, key, name) in cases {
            assert_eq!(quota_key(user), key, "{user}");
            assert_eq!(ungrouped(user), name, "{user}");
        }
        assert_eq!(grouped("demo/alice", "g"), "demo/alice#g");
        assert_eq!(grouped("demo/alice", ""), "demo/alice");
        let g = grant_group("v1.1796241848.ZGVtbw.sig");
        assert_eq!(g.len(), 16);
        assert!(g.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(g, grant_group("v1.1796241848.ZGVtbw.sig"), "stable");
        assert_ne!(g, grant_group("v1.1796241848.ZGVtbw.sih"));
        assert!(mint(&Secret::new("s").unwrap(), &grouped("r/p", &g), 60, 0).is_ok());
    }

    #[test]
    fn mint_builds_username_and_password() {
        let c = mint(&secret("north"), "alice", 300, 1_699_999_700).unwrap();
        assert_eq!(c.username, "1700000000:alice");
        assert_eq!(c.password, "Cd/49soE35ICqcJF/bCTn8Z4OyE=");
        assert_eq!(c.ttl, 300);
        let anonymous = mint(&secret("logen"), "", 1, 1_699_999_999).unwrap();
        assert_eq!(anonymous.username, "1700000000");
    }

    #[test]
    fn mint_rejects_bad_input() {
        let s = secret("x");
        assert_eq!(
            mint(&s, "a:b", 10, 0),
            Err(CredentialError::UserIdHasSeparator {
                user_id: "a:b".into()
            })
        );
        assert_eq!(mint(&s, "a", 0, 0), Err(CredentialError::ZeroTtl));
        assert_eq!(
            mint(&s, "a", u64::MAX, 1),
            Err(CredentialError::TtlTooLarge { ttl: u64::MAX })
        );
    }

    #[test]
    fn expiry_boundaries() {
        // (username, now, expected outcome)
        // (username, now, (expiry, user id) or the error's text)
        type Row = (&'static str, u64, Result<(u64, &'static str), &'static str>);
        let cases: [Row; 8] = [
            ("100:alice", 99, Ok((100, "alice"))),
            ("100:alice", 100, Ok((100, "alice"))), // valid through its expiry second
            ("100:alice", 101, Err("expired")),
            ("100", 50, Ok((100, ""))),
            ("100:", 50, Ok((100, ""))),
            ("100:a:b", 50, Ok((100, "a:b"))),
            ("alice:100", 50, Err("malformed")),
            ("", 50, Err("malformed")),
        ];
        for (username, now, want) in cases {
            let got = check_username(username, now);
            match (got, want) {
                (Ok(v), Ok((expiry, user))) => {
                    assert_eq!((v.expiry, v.user_id), (expiry, user), "{username}@{now}")
                }
                (Err(CredentialError::Expired { .. }), Err("expired")) => {}
                (Err(CredentialError::MalformedUsername { .. }), Err("malformed")) => {}
                (got, want) => panic!("{username}@{now}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn rotation_old_and_new_secret_both_verify() {
        let old = secret("old-secret");
        let new = secret("new-secret");
        let minted_old = mint(&old, "alice", 600, 1000).unwrap();
        let minted_new = mint(&new, "alice", 600, 1000).unwrap();
        let rotated = Secrets::new(vec![new.clone(), old.clone()]).unwrap();
        assert_eq!(rotated.current(), &new);
        for c in [&minted_old, &minted_new] {
            assert!(candidate_passwords(&rotated, &c.username).any(|p| p == c.password));
        }
        let only_new = Secrets::new(vec![new]).unwrap();
        assert!(
            !candidate_passwords(&only_new, &minted_old.username).any(|p| p == minted_old.password)
        );
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let s = secret("hunter2");
        let c = mint(&s, "alice", 60, 0).unwrap();
        let shown = format!("{s:?} {c:?} {:?}", Secrets::new(vec![s.clone()]).unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains(&c.password), "{shown}");
    }

    #[test]
    fn ice_servers_json_shape() {
        let c = mint(&secret("north"), "alice", 300, 1_699_999_700).unwrap();
        let json =
            serde_json::to_value(c.ice_servers(&RelayEndpoints::udp("203.0.113.5", 3478))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "iceServers": [{
                    "urls": ["stun:203.0.113.5:3478", "turn:203.0.113.5:3478?transport=udp"],
                    "username": "1700000000:alice",
                    "credential": "Cd/49soE35ICqcJF/bCTn8Z4OyE="
                }],
                "ttl": 300
            })
        );
        let c = mint(&secret("north"), "a", 1, 0).unwrap();
        let v6 = c.ice_servers(&RelayEndpoints::udp("2001:db8::1", 3478));
        assert_eq!(v6.ice_servers[0].urls[0], "stun:[2001:db8::1]:3478");
    }

    #[test]
    fn empty_secrets_refused() {
        assert_eq!(Secret::new("  "), Err(CredentialError::EmptySecret));
        assert_eq!(Secrets::new(vec![]), Err(CredentialError::NoSecret));
    }
}
