//! What the core reports as it decides, for the shell to count: [`Event`]s handed to an
//! [`Observer`] (natkit-stun-turn's Prometheus metrics implement it). The label values of the
//! relay's counters are these enums' `as_str`, one snake_case spelling each.

use crate::allocation::QuotaExceeded;
use crate::family::Family;
use crate::five_tuple::Transport;
use crate::policy::DenyReason;

/// Something the core did that an operator counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A message dropped without an answer.
    Dropped(Dropped),
    /// A request that failed authentication.
    AuthFailed(AuthFailure),
    /// A Binding request answered.
    Binding,
    AllocationCreated(Transport),
    AllocationEnded(Transport),
    /// A relayed address of this family was opened (one per allocation, two for a dual one).
    RelayedAddressOpened(Family),
    /// A relayed address of this family was closed (its allocation ended, or a Refresh closed
    /// one family of a dual allocation).
    RelayedAddressClosed(Family),
    /// An allocation was created with a relayed address in each family.
    DualAllocation,
    /// A permission or channel refused by the peer policy (403).
    PeerRefused(DenyReason),
    /// An Allocate refused for its quota, or because the relay drains (486 or 300).
    QuotaRefused(QuotaScope),
    /// The number of reserved ports (EVEN-PORT with R) now.
    Reservations(usize),
    /// The relay started draining.
    Draining,
}

/// Which limit refused an Allocate (`natkit_relay_quota_rejections_total`'s `scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaScope {
    User,
    Total,
    Draining,
}

impl QuotaScope {
    pub const ALL: [QuotaScope; 3] = [QuotaScope::User, QuotaScope::Total, QuotaScope::Draining];

    pub fn as_str(self) -> &'static str {
        match self {
            QuotaScope::User => "user",
            QuotaScope::Total => "total",
            QuotaScope::Draining => "draining",
        }
    }
}

impl From<QuotaExceeded> for QuotaScope {
    fn from(q: QuotaExceeded) -> Self {
        match q {
            QuotaExceeded::User { .. } => QuotaScope::User,
            QuotaExceeded::Total { .. } => QuotaScope::Total,
        }
    }
}

/// Where the core's [`Event`]s go. Called under the shell's lock of the core, once per event:
/// keep it to a counter increment.
pub trait Observer: Send {
    fn observe(&self, event: Event);
}

/// No one counts (tests, the fuzz harness).
impl Observer for () {
    fn observe(&self, _: Event) {}
}

/// Label values of `natkit_relay_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// The credential's expiry has passed.
    Expired,
    /// The username is not `<expiry>:<user>`.
    MalformedUsername,
    /// MESSAGE-INTEGRITY matched no configured secret (forged or wrong password).
    BadIntegrity,
    /// The nonce was expired or not ours; the client gets a fresh one (438).
    StaleNonce,
    /// A Refresh/CreatePermission/ChannelBind used another username than the allocation's (441).
    WrongCredentials,
    /// USERNAME, REALM or NONCE missing next to MESSAGE-INTEGRITY (400).
    MissingAttribute,
    /// REALM is not the relay's (401 with the right one).
    WrongRealm,
    /// The user is in the revocation file (401).
    Revoked,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 8] = [
        AuthFailure::Revoked,
        AuthFailure::WrongRealm,
        AuthFailure::Expired,
        AuthFailure::MalformedUsername,
        AuthFailure::BadIntegrity,
        AuthFailure::StaleNonce,
        AuthFailure::WrongCredentials,
        AuthFailure::MissingAttribute,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Expired => "expired",
            AuthFailure::MalformedUsername => "malformed_username",
            AuthFailure::BadIntegrity => "bad_integrity",
            AuthFailure::StaleNonce => "stale_nonce",
            AuthFailure::WrongCredentials => "wrong_credentials",
            AuthFailure::MissingAttribute => "missing_attribute",
            AuthFailure::WrongRealm => "wrong_realm",
            AuthFailure::Revoked => "revoked",
        }
    }
}

/// Why a message was dropped without an answer (`natkit_relay_dropped_packets_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// A source past `answers_per_second` (Binding, unauthenticated requests).
    RateLimited,
    /// More than `MAX_ATTRIBUTES`: dropped before decoding.
    TooManyAttributes,
    /// Neither STUN nor ChannelData (wrong cookie, random bytes).
    NotStun,
    /// Looked like STUN or ChannelData but did not decode.
    Malformed,
    /// FINGERPRINT present and wrong.
    BadFingerprint,
    /// ChannelData or Send from a 5-tuple without an allocation.
    NoAllocation,
    /// A peer's datagram, or Send, without a permission or channel.
    NoPermission,
    /// Responses, unknown indications, anything but Binding on the RFC 5780 sockets.
    Unexpected,
    /// Relayed datagrams a socket's 4 MiB send buffer had no room for (overload).
    SendBufferFull,
}

impl Dropped {
    pub const ALL: [Dropped; 9] = [
        Dropped::RateLimited,
        Dropped::TooManyAttributes,
        Dropped::NotStun,
        Dropped::Malformed,
        Dropped::BadFingerprint,
        Dropped::NoAllocation,
        Dropped::NoPermission,
        Dropped::Unexpected,
        Dropped::SendBufferFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::RateLimited => "rate_limited",
            Dropped::TooManyAttributes => "too_many_attributes",
            Dropped::NotStun => "not_stun",
            Dropped::Malformed => "malformed",
            Dropped::BadFingerprint => "bad_fingerprint",
            Dropped::NoAllocation => "no_allocation",
            Dropped::NoPermission => "no_permission",
            Dropped::Unexpected => "unexpected",
            Dropped::SendBufferFull => "send_buffer_full",
        }
    }
}
