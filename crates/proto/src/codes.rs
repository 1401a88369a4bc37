//! Error codes: the `code` of an `error` message and the `error` of an HTTP error body.

use serde::{Deserialize, Serialize};

/// Machine-readable error codes, spelled in kebab-case on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The frame is not JSON, or not an object with the documented fields.
    BadJson,
    /// `type` is not one of the documented client messages.
    UnknownType,
    /// A message other than `join`/`ping` before joining.
    NotJoined,
    /// A second `join` on the same connection.
    AlreadyJoined,
    /// Room name empty, longer than 64 bytes, or with characters outside `[A-Za-z0-9._~-]`.
    BadRoom,
    /// Requested peer id invalid (same rules as rooms) or already used in the room.
    BadPeerId,
    /// `to` names no peer in the sender's room.
    UnknownPeer,
    /// The room already has the maximum number of peers.
    RoomFull,
    /// The server already has the maximum number of rooms (or connections).
    ServerFull,
    /// More messages per second than allowed; the message was dropped.
    RateLimited,
    /// A token is required, or the token is invalid, expired or for another room.
    Unauthorized,
    /// The server is shutting down.
    ShuttingDown,
    /// A clustered node cannot reach its cluster store (Redis): joins and messages to peers on
    /// other nodes are refused until it is back. Rooms whose peers are all on this node go on.
    /// Retry (the message was not delivered).
    ClusterUnavailable,
    /// A code this side does not know (sent by a newer peer); never sent by natkit-signal.
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// Every code natkit-signal sends (not [`ErrorCode::Other`]).
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::BadJson,
        ErrorCode::UnknownType,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::BadRoom,
        ErrorCode::BadPeerId,
        ErrorCode::UnknownPeer,
        ErrorCode::RoomFull,
        ErrorCode::ServerFull,
        ErrorCode::RateLimited,
        ErrorCode::Unauthorized,
        ErrorCode::ShuttingDown,
        ErrorCode::ClusterUnavailable,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad-json",
            ErrorCode::UnknownType => "unknown-type",
            ErrorCode::NotJoined => "not-joined",
            ErrorCode::AlreadyJoined => "already-joined",
            ErrorCode::BadRoom => "bad-room",
            ErrorCode::BadPeerId => "bad-peer-id",
            ErrorCode::UnknownPeer => "unknown-peer",
            ErrorCode::RoomFull => "room-full",
            ErrorCode::ServerFull => "server-full",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::ShuttingDown => "shutting-down",
            ErrorCode::ClusterUnavailable => "cluster-unavailable",
            ErrorCode::Other => "other",
        }
    }

    /// A refusal of `join` that retrying the same request cannot fix (bad token, bad room, a
    /// full room or server). `bad-peer-id` is not: the old connection of a rejoining peer may
    /// still hold the id for a moment.
    pub fn is_permanent_refusal(self) -> bool {
        matches!(
            self,
            ErrorCode::Unauthorized
                | ErrorCode::BadRoom
                | ErrorCode::RoomFull
                | ErrorCode::ServerFull
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of an HTTP error answer (`/v1/ice-servers`, a refused WebSocket upgrade):
/// `{"error":"unauthorized","message":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpError {
    pub error: ErrorCode,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_spelled_as_documented_both_ways() {
        for c in ErrorCode::ALL {
            let wire = serde_json::to_value(c).unwrap();
            assert_eq!(wire, serde_json::json!(c.as_str()));
            assert_eq!(serde_json::from_value::<ErrorCode>(wire).unwrap(), c);
        }
    }

    #[test]
    fn an_unknown_code_is_other_not_an_error() {
        let c: ErrorCode = serde_json::from_str(r#""quota-exceeded""#).unwrap();
        assert_eq!(c, ErrorCode::Other);
    }

    #[test]
    fn permanent_refusals_table() {
        for (code, permanent) in [
            (ErrorCode::Unauthorized, true),
            (ErrorCode::BadRoom, true),
            (ErrorCode::RoomFull, true),
            (ErrorCode::ServerFull, true),
            (ErrorCode::BadPeerId, false),
            (ErrorCode::RateLimited, false),
            (ErrorCode::ShuttingDown, false),
            (ErrorCode::ClusterUnavailable, false),
            (ErrorCode::Other, false),
        ] {
            assert_eq!(code.is_permanent_refusal(), permanent, "{code}");
        }
    }
}
