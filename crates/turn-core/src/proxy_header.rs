//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`, versions 1 and 2) that a TCP load
//! balancer puts before a connection's own bytes to say whose connection it is. Pure:
//! [`parse`] takes the bytes read so far and says whether they start with a header (and the
//! client address it carries), need more, or are none.
//!
//! A header is believed only from the networks an operator trusts: the shells check the
//! connection's source, and close a connection that starts with a header from anyone else.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version 2's 12-byte signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A version 1 header is at most this long (`proxy-protocol.txt` section 2.1).
pub const V1_MAX: usize = 107;
/// Version 2 headers longer than this (addresses and a few TLVs fit in far less) are refused:
/// a peer cannot make the shell buffer 64 KiB before the connection starts.
pub const V2_MAX: usize = 16 + 512;

/// What the first bytes of a connection are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    /// A header of `len` bytes. `client`: the address of the connection it speaks for; `None`
    /// for `UNKNOWN` (v1) and `LOCAL` (v2: the balancer's own health check), which mean "use
    /// the connection's own address".
    Proxy {
        len: usize,
        client: Option<SocketAddr>,
    },
    /// Not a PROXY header: the connection's own bytes.
    None,
    NeedMore,
    /// It starts like a header but is not a valid one: close the connection.
    Invalid(&'static str),
}

/// What the first bytes say. From an untrusted source, anything but [`Header::None`] (once
/// [`Header::NeedMore`] has had its bytes) closes the connection.
pub fn parse(b: &[u8]) -> Header {
    if b.is_empty() {
        return Header::NeedMore;
    }
    let v1 = b"PROXY ";
    let n = b.len().min(v1.len());
    if b[..n] == v1[..n] {
        return if n < v1.len() {
            Header::NeedMore
        } else {
            parse_v1(b)
        };
    }
    let n = b.len().min(V2_SIGNATURE.len());
    if b[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() {
            Header::NeedMore
        } else {
            parse_v2(b)
        };
    }
    Header::None
}

fn parse_v1(b: &[u8]) -> Header {
    let Some(end) = b.windows(2).take(V1_MAX - 1).position(|w| w == b"\r\n") else {
        return if b.len() >= V1_MAX {
            Header::Invalid("a v1 header without CRLF within 107 bytes")
        } else {
            Header::NeedMore
        };
    };
    let len = end + 2;
    let Ok(line) = std::str::from_utf8(&b[..end]) else {
        return Header::Invalid("a v1 header that is not ASCII");
    };
    let parts: Vec<&str> = line.split(' ').collect();
    match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Header::Proxy { len, client: None },
        ["PROXY", family @ ("TCP4" | "TCP6"), src, _dst, sport, _dport] => {
            let (Ok(ip), Ok(port)) = (src.parse::<IpAddr>(), sport.parse::<u16>()) else {
                return Header::Invalid("a v1 header with a bad source address or port");
            };
            if (*family == "TCP4") != ip.is_ipv4() {
                return Header::Invalid("a v1 header whose address is not of its family");
            }
            Header::Proxy {
                len,
                client: Some(SocketAddr::new(ip, port)),
            }
        }
        _ => Header::Invalid("a v1 header that is not PROXY TCP4|TCP6|UNKNOWN"),
    }
}

fn parse_v2(b: &[u8]) -> Header {
    if b.len() < 16 {
        return Header::NeedMore;
    }
    let (ver_cmd, family) = (b[12], b[13]);
    if ver_cmd >> 4 != 2 {
        return Header::Invalid("a v2 header of another version");
    }
    let len = 16 + usize::from(u16::from_be_bytes([b[14], b[15]]));
    if len > V2_MAX {
        return Header::Invalid("a v2 header over 528 bytes");
    }
    if b.len() < len {
        return Header::NeedMore;
    }
    let body = &b[16..len];
    match ver_cmd & 0x0f {
        // LOCAL: the balancer's own connection (a health check).
        0x0 => Header::Proxy { len, client: None },
        0x1 => {
            let client = match family {
                // TCP over IPv4: source, destination, source port, destination port.
                0x11 if body.len() >= 12 => {
                    let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
                    Some(SocketAddr::new(
                        ip.into(),
                        u16::from_be_bytes([body[8], body[9]]),
                    ))
                }
                0x21 if body.len() >= 36 => {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(&body[..16]);
                    Some(SocketAddr::new(
                        Ipv6Addr::from(a).into(),
                        u16::from_be_bytes([body[32], body[33]]),
                    ))
                }
                0x11 | 0x21 => return Header::Invalid("a v2 header too short for its addresses"),
                // UNSPEC (and UDP or Unix, which a TCP listener does not carry): no address.
                _ => None,
            };
            Header::Proxy { len, client }
        }
        _ => Header::Invalid("a v2 header with an unknown command"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.extend_from_slice(&[0x20 | cmd, family]);
        b.extend_from_slice(&(body.len() as u16).to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn parse_table() {
        let a4: SocketAddr = "192.0.2.7:5555".parse().unwrap();
        let a6: SocketAddr = "[2001:db8::7]:6666".parse().unwrap();
        let v1_4 = b"PROXY TCP4 192.0.2.7 203.0.113.1 5555 443\r\nGET /".to_vec();
        let v1_6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 6666 443\r\n".to_vec();
        let mut body4 = vec![192, 0, 2, 7, 203, 0, 113, 1];
        body4.extend_from_slice(&5555u16.to_be_bytes());
        body4.extend_from_slice(&443u16.to_be_bytes());
        let mut body6 = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        body6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        body6.extend_from_slice(&6666u16.to_be_bytes());
        body6.extend_from_slice(&443u16.to_be_bytes());
        // A TLV after the addresses (PP2_TYPE_ALPN "h2") is skipped.
        let mut with_tlv = body4.clone();
        with_tlv.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']);
        let v2_4 = v2(1, 0x11, &body4);
        let cases: Vec<(Vec<u8>, Header)> = vec![
            (
                v1_4.clone(),
                Header::Proxy {
                    len: 43,
                    client: Some(a4),
                },
            ),
            (
                v1_6,
                Header::Proxy {
                    len: 45,
                    client: Some(a6),
                },
            ),
            (
                b"PROXY UNKNOWN\r\n".to_vec(),
                Header::Proxy {
                    len: 15,
                    client: None,
                },
            ),
            (
                b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n".to_vec(),
                Header::Proxy {
                    len: 35,
                    client: None,
                },
            ),
            (v1_4[..20].to_vec(), Header::NeedMore),
            (b"PRO".to_vec(), Header::NeedMore),
            (
                b"PROXY TCP4 192.0.2.7 203.0.113.1 5555\r\n".to_vec(),
                Header::Invalid("a v1 header that is not PROXY TCP4|TCP6|UNKNOWN"),
            ),
            (
                b"PROXY TCP4 2001:db8::7 203.0.113.1 5555 443\r\n".to_vec(),
                Header::Invalid("a v1 header whose address is not of its family"),
            ),
            (
                b"PROXY TCP4 192.0.2.7 203.0.113.1 99999 443\r\n".to_vec(),
                Header::Invalid("a v1 header with a bad source address or port"),
            ),
            (
                [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat(),
                Header::Invalid("a v1 header without CRLF within 107 bytes"),
            ),
            (
                v2_4.clone(),
                Header::Proxy {
                    len: 28,
                    client: Some(a4),
                },
            ),
            (
                v2(1, 0x11, &with_tlv),
                Header::Proxy {
                    len: 33,
                    client: Some(a4),
                },
            ),
            (
                v2(1, 0x21, &body6),
                Header::Proxy {
                    len: 52,
                    client: Some(a6),
                },
            ),
            (
                v2(0, 0x00, &[]),
                Header::Proxy {
                    len: 16,
                    client: None,
                },
            ),
            (
                v2(1, 0x00, &[]),
                Header::Proxy {
                    len: 16,
                    client: None,
                },
            ),
            (v2_4[..20].to_vec(), Header::NeedMore),
            (V2_SIGNATURE[..5].to_vec(), Header::NeedMore),
            (
                v2(1, 0x11, &body4[..6]),
                Header::Invalid("a v2 header too short for its addresses"),
            ),
            (
                v2(7, 0x11, &body4),
                Header::Invalid("a v2 header with an unknown command"),
            ),
            (
                {
                    let mut b = v2_4.clone();
                    b[12] = 0x11;
                    b
                },
                Header::Invalid("a v2 header of another version"),
            ),
            (
                v2(1, 0x11, &[0u8; 600]),
                Header::Invalid("a v2 header over 528 bytes"),
            ),
            (b"GET / HTTP/1.1\r\n".to_vec(), Header::None),
            (vec![0x16, 0x03, 0x01], Header::None),
            (vec![0x00, 0x01, 0x00, 0x00], Header::None),
        ];
        for (bytes, want) in &cases {
            assert_eq!(parse(bytes), *want, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn two_bytes_tell_a_header_from_an_http_method() {
        for m in ["POST /", "PUT /", "PATCH /"] {
            assert_eq!(parse(&m.as_bytes()[..2]), Header::None, "{m}");
        }
        assert_eq!(parse(b"P"), Header::NeedMore);
    }
}
