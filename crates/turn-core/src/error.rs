//! Errors of the TURN core. Messages are lowercase and never contain a secret or a password.

/// Minting or checking a TURN REST API credential failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// No secret configured: set `NATKIT_TURN_SECRET` or point `secret_file` at a file.
    #[error("no turn secret configured")]
    NoSecret,
    /// A secret was empty; check the secret file for blank lines or the variable for a typo.
    #[error("turn secret is empty")]
    EmptySecret,
    /// The user id would make the username ambiguous; pick an id without ':'.
    #[error("user id {user_id:?} contains ':', which separates expiry from user id")]
    UserIdHasSeparator { user_id: String },
    /// A zero TTL mints a credential that is already expired.
    #[error("ttl must be at least 1 second")]
    ZeroTtl,
    #[error("ttl {ttl} overflows the expiry timestamp")]
    TtlTooLarge { ttl: u64 },
    /// The username is not `<unix-expiry>[:<user-id>]`.
    #[error("username {username:?} is not <unix-expiry>:<user-id>")]
    MalformedUsername { username: String },
    /// The credential's expiry has passed; the client must fetch a fresh one.
    #[error("credential {username:?} expired {expired_secs_ago} s ago")]
    Expired {
        username: String,
        expired_secs_ago: u64,
    },
}

/// A line that is not `user ID` or `token ID`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct RevocationError {
    pub line: usize,
    pub message: String,
}
