//! Framing of STUN and ChannelData on a byte stream (TURN over TCP and TLS, RFC 8656 section
//! 12.5): messages back to back, each a STUN message (its length in the header) or ChannelData
//! (4-byte header, payload padded to a multiple of four bytes). Pure: the stream shell feeds its
//! read buffer and takes out whole frames.

/// Frames longer than this close the connection.
pub const MAX_FRAME: usize = 65_536;
const STUN_HEADER: usize = 20;
const MAGIC_COOKIE: [u8; 4] = 0x2112_A442u32.to_be_bytes();

/// The next frame in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Bytes of the message itself (what the core reads).
    pub message: usize,
    /// Bytes the frame takes on the stream (ChannelData padding included).
    pub consumed: usize,
}

/// Why a stream cannot be read on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge { len: usize },
    /// Neither STUN (top bits 00, length a multiple of 4) nor ChannelData (0x40-0x7f).
    #[error("bytes on the stream are neither stun nor channeldata (first byte {first:#04x})")]
    NotStun { first: u8 },
}

/// Rounds a ChannelData payload length up to the stream padding.
pub fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// The frame at the start of `buf`: `Ok(None)` while it is incomplete.
pub fn next_frame(buf: &[u8]) -> Result<Option<Frame>, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let (message, consumed) = if (0x40..=0x7f).contains(&first) {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        (4 + len, 4 + padded(len))
    } else if first & 0xc0 == 0 {
        // The magic cookie tells STUN from other protocols (a TLS ClientHello starts 0x16 too).
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if len % 4 != 0 || buf[4..8] != MAGIC_COOKIE {
            return Err(FrameError::NotStun { first });
        }
        (STUN_HEADER + len, STUN_HEADER + len)
    } else {
        return Err(FrameError::NotStun { first });
    };
    if consumed > MAX_FRAME {
        return Err(FrameError::TooLarge { len: consumed });
    }
    Ok((buf.len() >= consumed).then_some(Frame { message, consumed }))
}

/// A ChannelData frame for a stream: header, payload, zero padding.
pub fn channel_data(number: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + padded(payload.len()));
    out.extend_from_slice(&crate::wire::channel_data_header(number, payload.len()));
    out.extend_from_slice(payload);
    out.resize(4 + padded(payload.len()), 0);
    out
}

/// Fuzz target: frames found in any input lie inside it and advance, and a well-formed input
/// split anywhere yields the same frames.
pub fn fuzz(data: &[u8]) {
    let mut at = 0;
    while at < data.len() {
        match next_frame(&data[at..]) {
            Ok(Some(f)) => {
                assert!(f.message <= f.consumed && f.consumed >= 4);
                assert!(at + f.consumed <= data.len());
                at += f.consumed;
            }
            Ok(None) | Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(attr_len: u16) -> Vec<u8> {
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&attr_len.to_be_bytes());
        m.extend_from_slice(&0x2112_A442u32.to_be_bytes());
        m.extend_from_slice(&[7; 12]);
        m.extend(std::iter::repeat_n(0, attr_len as usize));
        m
    }

    #[test]
    fn frames_table() {
        let cd = |len: u16| {
            let mut v = vec![0x40, 0x00];
            v.extend_from_slice(&len.to_be_bytes());
            v
        };
        type Row = (Vec<u8>, Result<Option<Frame>, FrameError>);
        let cases: Vec<Row> = vec![
            (vec![], Ok(None)),
            (vec![0x00, 0x01, 0x00, 0x00], Ok(None)),
            (stun(8)[..27].to_vec(), Ok(None)),
            (
                stun(8),
                Ok(Some(Frame {
                    message: 28,
                    consumed: 28,
                })),
            ),
            (
                stun(0),
                Ok(Some(Frame {
                    message: 20,
                    consumed: 20,
                })),
            ),
            // ChannelData with 5 payload bytes takes 12 on the stream.
            ([cd(5), vec![1; 5]].concat(), Ok(None)),
            (
                [cd(5), vec![1; 8]].concat(),
                Ok(Some(Frame {
                    message: 9,
                    consumed: 12,
                })),
            ),
            (
                [cd(0)].concat(),
                Ok(Some(Frame {
                    message: 4,
                    consumed: 4,
                })),
            ),
            (stun(8)[..7].to_vec(), Ok(None)),
            (
                [&[0x00, 0x01, 0x00, 0x03], &stun(0)[4..]].concat(),
                Err(FrameError::NotStun { first: 0 }),
            ),
            // HTTP reads as ChannelData 0x4745 of 21,536 bytes: it waits, and the
            // first-request deadline closes it.
            (b"GET / HTTP/1.1\r\n".to_vec(), Ok(None)),
            // A TLS ClientHello on the TCP port: no magic cookie.
            (
                vec![0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00],
                Err(FrameError::NotStun { first: 0x16 }),
            ),
            (
                vec![0x80, 0, 0, 0],
                Err(FrameError::NotStun { first: 0x80 }),
            ),
            (cd(65_534), Err(FrameError::TooLarge { len: 65_540 })),
            (
                [&[0x00, 0x01, 0xff, 0xfc], &stun(0)[4..]].concat(),
                Err(FrameError::TooLarge { len: 65_552 }),
            ),
        ];
        for (buf, want) in cases {
            assert_eq!(next_frame(&buf), want, "{buf:02x?}");
        }
    }

    #[test]
    fn padding_and_split_reads() {
        assert_eq!(
            channel_data(0x4001, &[9, 9, 9]),
            vec![0x40, 0x01, 0, 3, 9, 9, 9, 0]
        );
        assert_eq!(channel_data(0x4001, &[1; 4]).len(), 8);
        // Two messages in one segment, then the same bytes fed one at a time.
        let stream = [stun(4), channel_data(0x4000, &[5; 6]), stun(0)].concat();
        let mut whole = Vec::new();
        let mut at = 0;
        while let Ok(Some(f)) = next_frame(&stream[at..]) {
            whole.push(f);
            at += f.consumed;
        }
        assert_eq!(at, stream.len());
        assert_eq!(whole.len(), 3);
        let mut buf = Vec::new();
        let mut split = Vec::new();
        for &b in &stream {
            buf.push(b);
            if let Some(f) = next_frame(&buf).unwrap() {
                split.push(f);
                buf.drain(..f.consumed);
            }
        }
        assert_eq!(split, whole);
        fuzz(&stream);
    }
}
