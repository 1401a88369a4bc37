//! Admission: who may join a room and who may be handed TURN credentials, decided in one pure
//! step per request (a join, a `refresh`, a `GET /v1/ice-servers`) that takes the clock and what
//! the node knows, and returns everything it decided: admitted (with the TURN user to mint for)
//! or refused with the code, message and limit the client and the metrics see.
//!
//! Order of the checks, the same for every request: draining, the token, revocation, then the
//! credential rate limits (per client IP, then per token). The shell ([`crate::server`]) owns the
//! clock, the revocation file and the minting; nothing here does IO.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::time::Instant;

use natkit_proto::ErrorCode;
use natkit_stun_turn::credentials;
use natkit_stun_turn::revocation::Revocations;

use crate::limits::KeyedLimiter;
use crate::token::TokenSecret;

/// Client IPs and tokens whose credential minting is tracked at once (bounded memory).
const LIMITER_KEYS: usize = 100_000;

/// What the node knows when a request arrives.
#[derive(Clone, Copy)]
pub struct Gate<'a> {
    /// Wall clock, Unix seconds (token expiry).
    pub unix: u64,
    /// Monotonic clock (rate limits).
    pub now: Instant,
    /// This node drains: new joins go elsewhere.
    pub draining: bool,
    /// The join-token secret; `None` in open mode.
    pub tokens: Option<&'a TokenSecret>,
    pub revocations: &'a Revocations,
}

/// What a valid join token granted a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The token's hash: rate limits count per token.
    pub key: u64,
    /// Unix seconds after which `refresh` is refused.
    pub expires: u64,
    /// The token itself (its last part names it in the revocation file). Never logged.
    pub token: String,
}

impl Grant {
    fn new(token: &str, expires: u64) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        token.hash(&mut h);
        Grant {
            key: h.finish(),
            expires,
            token: token.to_owned(),
        }
    }

    /// `user` in this grant's quota group: every credential minted under one token shares one
    /// `user_quota` on the relay, however many are fetched (`credentials::GROUP_SEPARATOR`).
    pub fn quota_user(&self, user: &str) -> String {
        credentials::grouped(user, &credentials::grant_group(&self.token))
    }
}

/// The credential limit a refusal hit: the `limit` label of
/// `natkit_signal_credentials_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    PerIp,
    PerToken,
}

impl Limit {
    pub const ALL: [Limit; 2] = [Limit::PerIp, Limit::PerToken];

    pub fn as_str(self) -> &'static str {
        match self {
            Limit::PerIp => "per_ip",
            Limit::PerToken => "per_token",
        }
    }
}

/// A refused request: the error code and message the client gets (HTTP status from the code),
/// and the credential limit it hit, if that was the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: &'static str,
    pub limit: Option<Limit>,
}

impl Refusal {
    fn new(code: ErrorCode, message: &'static str) -> Self {
        Refusal {
            code,
            message,
            limit: None,
        }
    }
}

/// An admitted join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// The token's grant (tokens on), kept by the connection for `refresh`.
    pub grant: Option<Grant>,
    /// The TURN user to mint the welcome's credentials for; `None` when the room or peer id is
    /// invalid (the rooms refuse the join; nothing is minted for it).
    pub mint_for: Option<String>,
}

/// The credential rate limits, per client IP and per token; the only state admission keeps.
pub struct Admission {
    per_ip: KeyedLimiter<IpAddr>,
    per_token: KeyedLimiter<u64>,
}

const DRAINING: &str = "this node is draining: connect to another node";
const NO_TOKEN: &str = "a valid token for this room is required";
const NO_TOKEN_HTTP: &str = "a valid token is required (?token= or Authorization: Bearer)";
const REVOKED: &str = "this token or user has been revoked";
const EXPIRED: &str = "the join token has expired: rejoin with a new token for new credentials";
const NOT_JOINED: &str = "join a room first";
const TOO_MANY: &str = "too many TURN credentials for this address or token; try again in a minute";

impl Admission {
    /// `credentials_per_minute` per client IP and per token (0 = unlimited).
    pub fn new(credentials_per_minute: u32) -> Self {
        Admission {
            per_ip: KeyedLimiter::new(credentials_per_minute, LIMITER_KEYS),
            per_token: KeyedLimiter::new(credentials_per_minute, LIMITER_KEYS),
        }
    }

    /// A join of `room` as `peer_id` (requested, or the one generated for it) from `ip`, with
    /// `token` (from the message or the URL).
    pub fn join(
        &mut self,
        gate: Gate<'_>,
        ip: IpAddr,
        room: &str,
        peer_id: &str,
        token: Option<&str>,
    ) -> Result<Join, Refusal> {
        if gate.draining {
            return Err(Refusal::new(ErrorCode::ShuttingDown, DRAINING));
        }
        let grant = match gate.tokens {
            Some(secret) => match secret.authorize(token, room, gate.unix) {
                Ok(expires) => token.map(|t| Grant::new(t, expires)),
                Err(_) => return Err(Refusal::new(ErrorCode::Unauthorized, NO_TOKEN)),
            },
            None => None,
        };
        let user = turn_user(room, peer_id);
        if revoked(gate, Some(&user), token) {
            return Err(Refusal::new(ErrorCode::Unauthorized, REVOKED));
        }
        let valid = crate::rooms::valid_name(peer_id) && crate::rooms::valid_name(room);
        if !valid {
            return Ok(Join {
                grant,
                mint_for: None,
            });
        }
        self.may_mint(gate.now, ip, grant.as_ref())?;
        let mint_for = Some(quota_user(&user, grant.as_ref()));
        Ok(Join { grant, mint_for })
    }

    /// A `refresh` from `ip`: `member` is the (room, peer id) the connection joined as, `grant`
    /// what its token granted. Returns the TURN user to mint for.
    pub fn refresh(
        &mut self,
        gate: Gate<'_>,
        ip: IpAddr,
        member: Option<(&str, &str)>,
        grant: Option<&Grant>,
    ) -> Result<String, Refusal> {
        let Some((room, peer)) = member else {
            return Err(Refusal::new(ErrorCode::NotJoined, NOT_JOINED));
        };
        // A credential never outlives the join token it was granted under.
        if grant.is_some_and(|g| g.expires < gate.unix) {
            return Err(Refusal::new(ErrorCode::Unauthorized, EXPIRED));
        }
        let user = turn_user(room, peer);
        if revoked(gate, Some(&user), grant.map(|g| g.token.as_str())) {
            return Err(Refusal::new(ErrorCode::Unauthorized, REVOKED));
        }
        self.may_mint(gate.now, ip, grant)?;
        Ok(quota_user(&user, grant))
    }

    /// `GET /v1/ice-servers` (and `/v1/check-servers`) from `ip` with `token` (any room's):
    /// returns the TURN user to mint for, `fresh` in the token's quota group.
    pub fn ice_servers(
        &mut self,
        gate: Gate<'_>,
        ip: IpAddr,
        token: Option<&str>,
        fresh: &str,
    ) -> Result<String, Refusal> {
        let grant = http_grant(gate, token)?;
        self.may_mint(gate.now, ip, grant.as_ref())?;
        Ok(quota_user(fresh, grant.as_ref()))
    }

    /// `GET /v1/check-servers?turn=false` with `token`: the same token check, but nothing is
    /// minted, so no credential is counted against the rate limits.
    pub fn stun_servers(&self, gate: Gate<'_>, token: Option<&str>) -> Result<(), Refusal> {
        http_grant(gate, token).map(drop)
    }

    /// May `ip` (and the grant's token) be handed another TURN credential now?
    fn may_mint(&mut self, now: Instant, ip: IpAddr, grant: Option<&Grant>) -> Result<(), Refusal> {
        let refuse = |limit| Refusal {
            code: ErrorCode::RateLimited,
            message: TOO_MANY,
            limit: Some(limit),
        };
        if !self.per_ip.allow(&ip, now) {
            return Err(refuse(Limit::PerIp));
        }
        if let Some(g) = grant {
            if !self.per_token.allow(&g.key, now) {
                return Err(refuse(Limit::PerToken));
            }
        }
        Ok(())
    }
}

/// An HTTP request's token, checked (when tokens are on) and not revoked.
fn http_grant(gate: Gate<'_>, token: Option<&str>) -> Result<Option<Grant>, Refusal> {
    let grant = match gate.tokens {
        Some(secret) => match token.map(|t| (t, secret.claims(t, gate.unix))) {
            Some((t, Ok(c))) => Some(Grant::new(t, c.expires)),
            _ => return Err(Refusal::new(ErrorCode::Unauthorized, NO_TOKEN_HTTP)),
        },
        None => None,
    };
    if revoked(gate, None, token) {
        return Err(Refusal::new(ErrorCode::Unauthorized, REVOKED));
    }
    Ok(grant)
}

/// The TURN user a joined peer's credentials are for: its room and peer id, which only that
/// session holds (ids are unique within a room), joined by `/`, which neither may contain. So
/// no peer can obtain a credential counted against another's quota, and `refresh` keeps it.
pub fn turn_user(room: &str, peer: &str) -> String {
    format!("{room}/{peer}")
}

fn quota_user(user: &str, grant: Option<&Grant>) -> String {
    match grant {
        Some(g) => g.quota_user(user),
        None => user.to_owned(),
    }
}

fn revoked(gate: Gate<'_>, user: Option<&str>, token: Option<&str>) -> bool {
    user.is_some_and(|u| gate.revocations.is_user_revoked(u))
        || token.is_some_and(|t| gate.revocations.is_token_revoked(t))
}

#[cfg(test)]
mod tests;
