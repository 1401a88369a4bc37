//! Fuzz harnesses for the signaling side: what `fuzz/` runs under AFL++ and
//! `tests/fuzz_corpus.rs` replays over the committed corpus. Each takes raw bytes and must never
//! panic.

use natkit_proto::{ClientMsg, ServerMsg};

use crate::token::TokenSecret;

/// A WebSocket text frame, read by the server (`ClientMsg`) and by a client (`ServerMsg`):
/// errors stay short, and whatever parses serialises back and parses to the same message.
pub fn signal_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ClientMsg::parse(text) {
        Ok(m) => {
            let again = ClientMsg::parse(&m.to_text()).expect("what parsed re-parses");
            assert_eq!(again, m);
        }
        Err(e) => assert!(e.message.len() < 400, "short errors: {}", e.message.len()),
    }
    if let Ok(m) = ServerMsg::parse(text) {
        if m != ServerMsg::Unknown {
            assert_eq!(ServerMsg::parse(&m.to_text()).expect("re-parses"), m);
        }
    }
}

/// A join token: nothing but a genuinely signed token is accepted, whatever the bytes.
pub fn token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = TokenSecret::new("fuzz-token-secret").expect("a secret");
    if let Ok(claims) = key.claims(text, 0) {
        // Only the key's own mint of these claims can verify.
        assert_eq!(
            key.mint(&claims.room, claims.expires, 0),
            text,
            "a forged token verified"
        );
    }
}
