//! What a connection to the shared port is, from its first bytes (after TLS, when TLS is on):
//! an HTTP request (the page, `/v1/*`, the WebSocket) or TURN (a STUN message or ChannelData,
//! RFC 8656 section 12). ALPN is only a hint: TURN clients send none, so the bytes decide.
//!
//! Pure: [`classify`] takes the bytes read so far and says what they are, or that it needs more.

/// What the first bytes of a connection say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBytes {
    /// An HTTP/1.1 request line (`GET `, `POST `, ...).
    Http,
    /// A STUN message (two zero bits, then the magic cookie at bytes 4..8) or ChannelData
    /// (a channel number 0x4000..=0x7FFF).
    Turn,
    /// Neither: the connection is closed.
    Unknown,
    /// Too few bytes to tell yet.
    NeedMore,
}

/// Bytes [`classify`] may ask for at most (the longest method and its space; a STUN header's
/// first eight bytes).
pub const DECIDING_BYTES: usize = 8;

/// The request methods that make a connection HTTP.
const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

pub fn classify(b: &[u8]) -> FirstBytes {
    let Some(&first) = b.first() else {
        return FirstBytes::NeedMore;
    };
    if first & 0xc0 == 0 {
        // STUN: the cookie says so (a TLS record, 0x16, inside TLS is not STUN).
        return match b.get(4..8) {
            None => FirstBytes::NeedMore,
            Some(cookie) if cookie == MAGIC_COOKIE => FirstBytes::Turn,
            Some(_) => FirstBytes::Unknown,
        };
    }
    if first.is_ascii_uppercase() {
        for m in METHODS {
            let n = b.len().min(m.len());
            if b[..n] == m[..n] {
                return if n == m.len() {
                    FirstBytes::Http
                } else {
                    FirstBytes::NeedMore
                };
            }
        }
    }
    // ChannelData: a channel number in 0x4000..=0x7FFF.
    if (0x40..=0x7f).contains(&first) {
        return FirstBytes::Turn;
    }
    FirstBytes::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_table() {
        let binding = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3];
        let allocate = [0x00, 0x03, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
        let cases: &[(&[u8], FirstBytes)] = &[
            (b"", FirstBytes::NeedMore),
            (b"GET / HTTP/1.1\r\n", FirstBytes::Http),
            (b"GET ", FirstBytes::Http),
            (b"GE", FirstBytes::NeedMore),
            (b"OPTIONS /v1/ice-servers HTTP/1.1", FirstBytes::Http),
            (b"OPTIO", FirstBytes::NeedMore),
            (b"POST /x", FirstBytes::Http),
            (b"HEAD / HTTP/1.0", FirstBytes::Http),
            // Lowercase is not a method: 'g' (0x67) is a ChannelData channel's first byte, and
            // the relay closes what is not a frame.
            (b"get / HTTP/1.1", FirstBytes::Turn),
            (&binding, FirstBytes::Turn),
            (&allocate, FirstBytes::Turn),
            (&binding[..5], FirstBytes::NeedMore),
            // Two zero bits without the cookie: RFC 3489 STUN or noise.
            (&[0x00, 0x01, 0x00, 0x00, 1, 2, 3, 4], FirstBytes::Unknown),
            // A TLS record inside TLS (a client that wrapped twice).
            (
                &[0x16, 0x03, 0x01, 0x00, 0x10, 0, 0, 0],
                FirstBytes::Unknown,
            ),
            // ChannelData on channel 0x4001, and on 0x7fff; 'Z' is not a method's first byte.
            (&[0x40, 0x01, 0x00, 0x04, 1, 2, 3, 4], FirstBytes::Turn),
            (&[0x7f, 0xff, 0x00, 0x00], FirstBytes::Turn),
            (b"ZZZ", FirstBytes::Turn),
            // Past ChannelData's range.
            (&[0x80, 0x00], FirstBytes::Unknown),
            (&[0xff], FirstBytes::Unknown),
        ];
        for (bytes, want) in cases {
            assert_eq!(classify(bytes), *want, "{bytes:?}");
        }
    }

    #[test]
    fn deciding_never_needs_more_than_deciding_bytes() {
        for first in 0..=255u8 {
            for len in DECIDING_BYTES..DECIDING_BYTES + 2 {
                let mut b = vec![first; len];
                if first.is_ascii_uppercase() {
                    // The worst case: a method's prefix.
                    b = b"OPTIONS x".to_vec();
                }
                assert_ne!(classify(&b), FirstBytes::NeedMore, "{b:?}");
            }
        }
    }
}
