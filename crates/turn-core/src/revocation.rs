//! Revocation: TURN users and join tokens an operator has withdrawn, read from a file both
//! natkit-relay and natkit-signal watch (`revoked_file`). Parsing and lookups, here, are pure;
//! the shells re-read the file (`natkit_stun_turn::revocation::RevocationFile`) when its
//! modification time changes (checked every second).
//!
//! The file, one entry a line (`#` starts a comment):
//!
//! ```text
//! user demo/alice          # a TURN user id: the part after ':' of the username
//! token 3q2-7w_sig...      # a join token, by its last dot-separated part (its MAC)
//! ```
//!
//! natkit-relay answers a revoked user's requests with 401 and ends its live allocations within
//! a second; natkit-signal hands no new credentials for a revoked user or token.

use std::collections::HashSet;

pub use crate::error::RevocationError;

/// What is revoked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    users: HashSet<String>,
    tokens: HashSet<String>,
}

impl Revocations {
    pub fn parse(text: &str) -> Result<Revocations, RevocationError> {
        let mut r = Revocations::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let err = |message: &str| RevocationError {
                line: i + 1,
                message: message.to_owned(),
            };
            let (kind, id) = line
                .split_once(char::is_whitespace)
                .map(|(k, v)| (k, v.trim()))
                .ok_or_else(|| err("expected `user ID` or `token ID`"))?;
            if id.is_empty() || id.contains(char::is_whitespace) {
                return Err(err("the id is one word"));
            }
            match kind {
                "user" => r.users.insert(id.to_owned()),
                "token" => r.tokens.insert(id.to_owned()),
                _ => return Err(err("expected `user ID` or `token ID`")),
            };
        }
        Ok(r)
    }

    /// Is this TURN user revoked? A user id's quota group (`#...`) is not part of its name.
    pub fn is_user_revoked(&self, user: &str) -> bool {
        self.users.contains(crate::credentials::ungrouped(user))
    }

    /// Is this join token revoked? Tokens are named by their last dot-separated part.
    pub fn is_token_revoked(&self, token: &str) -> bool {
        token
            .rsplit('.')
            .next()
            .is_some_and(|id| self.tokens.contains(id))
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.tokens.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_file_table() {
        let r = Revocations::parse(
            "# withdrawn by ops\nuser demo/alice\n\ntoken c2lnbmF0dXJl   # leaked\nuser 1795480000bob\n",
        )
        .unwrap();
        assert!(r.is_user_revoked("demo/alice"));
        assert!(!r.is_user_revoked("demo/bob"));
        assert!(
            r.is_user_revoked("demo/alice#0123456789abcdef"),
            "a group is not a name"
        );
        assert!(!r.is_user_revoked("demo/bob#demo/alice"));
        assert!(r.is_token_revoked("v1.1795480000.ZGVtbw.c2lnbmF0dXJl"));
        assert!(r.is_token_revoked("c2lnbmF0dXJl"));
        assert!(!r.is_token_revoked("v1.1795480000.ZGVtbw.b3RoZXI"));
        for (bad, line) in [("alice\n", 1), ("user a\nteam x\n", 2), ("user a b\n", 1)] {
            assert_eq!(Revocations::parse(bad).unwrap_err().line, line, "{bad:?}");
        }
        assert!(Revocations::parse("").unwrap().is_empty());
    }
}
