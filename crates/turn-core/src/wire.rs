//! STUN/TURN wire helpers on top of the `stun` and `turn` crates: building responses (and, for
//! clients such as natkit-bench and the tests, signed requests), reading address attributes that
//! may repeat, and framing ChannelData without allocating.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use stun::addr::MappedAddress;
use stun::agent::TransactionId;
use stun::attributes::*;
use stun::error_code::{ErrorCode, ErrorCodeAttribute};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use stun::xoraddr::XorMappedAddress;

/// Attributes natkit understands in requests. Any other comprehension-required attribute
/// (type below 0x8000) gets 420 with UNKNOWN-ATTRIBUTES (RFC 8489 section 6.3.1).
/// DONT-FRAGMENT is deliberately absent: the relay cannot promise it, so RFC 8656 section 7.2
/// asks for exactly that 420.
pub const KNOWN_REQUIRED: [AttrType; 17] = [
    ATTR_MAPPED_ADDRESS,
    ATTR_USERNAME,
    ATTR_MESSAGE_INTEGRITY,
    ATTR_ERROR_CODE,
    ATTR_UNKNOWN_ATTRIBUTES,
    ATTR_REALM,
    ATTR_NONCE,
    ATTR_XORMAPPED_ADDRESS,
    ATTR_CHANNEL_NUMBER,
    ATTR_LIFETIME,
    ATTR_XOR_PEER_ADDRESS,
    ATTR_DATA,
    ATTR_XOR_RELAYED_ADDRESS,
    ATTR_EVEN_PORT,
    ATTR_REQUESTED_TRANSPORT,
    ATTR_CHANGE_REQUEST,
    ATTR_REQUESTED_ADDRESS_FAMILY,
];

/// Also understood, but only from ICE agents (RFC 8445) and RFC 5766 reservations.
const KNOWN_REQUIRED_EXTRA: [AttrType; 3] =
    [ATTR_PRIORITY, ATTR_USE_CANDIDATE, ATTR_RESERVATION_TOKEN];

/// ADDITIONAL-ADDRESS-FAMILY (RFC 8656 section 18.11): an Allocate asks for a relayed address in
/// both families.
pub const ATTR_ADDITIONAL_ADDRESS_FAMILY: AttrType = AttrType(0x8000);
/// ADDRESS-ERROR-CODE (RFC 8656 section 18.12): why one family of a dual allocation was not
/// given.
pub const ATTR_ADDRESS_ERROR_CODE: AttrType = AttrType(0x8001);

/// REQUESTED-ADDRESS-FAMILY or ADDITIONAL-ADDRESS-FAMILY as `attr` carries it: `None` when
/// absent, `Some(None)` when its value names no family (or is not 4 bytes).
pub fn address_family(m: &Message, attr: AttrType) -> Option<Option<crate::family::Family>> {
    let v = m.get(attr).ok()?;
    Some(match v.as_slice() {
        [f, _, _, _] => crate::family::Family::from_wire(*f),
        _ => None,
    })
}

/// ADDRESS-ERROR-CODE for `family` with `code` (440 or 508) and its reason phrase.
pub fn address_error_code(family: crate::family::Family, code: u16) -> RawAttribute {
    let reason: &[u8] = match code {
        440 => b"Address Family not Supported",
        508 => b"Insufficient Capacity",
        _ => b"",
    };
    let mut v = vec![family.wire(), 0, (code / 100) as u8, (code % 100) as u8];
    v.extend_from_slice(reason);
    RawAttribute(ATTR_ADDRESS_ERROR_CODE, v)
}

/// Every ADDRESS-ERROR-CODE of an answer, as (family wire value, code).
pub fn address_error_codes(m: &Message) -> Vec<(u8, u16)> {
    m.attributes
        .0
        .iter()
        .filter(|a| a.typ == ATTR_ADDRESS_ERROR_CODE && a.value.len() >= 4)
        .map(|a| {
            let v = &a.value;
            (v[0], (v[2] & 0x07) as u16 * 100 + v[3] as u16)
        })
        .collect()
}

/// An attribute written as raw bytes.
pub struct RawAttribute(pub AttrType, pub Vec<u8>);

impl Setter for RawAttribute {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.add(self.0, &self.1);
        Ok(())
    }
}

/// What a client signs requests with after a 401 challenge: long-term credentials (RFC 8489
/// section 9.2) with the realm and nonce the server gave. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct LongTermAuth {
    pub username: String,
    pub password: String,
    pub realm: String,
    pub nonce: String,
}

impl std::fmt::Debug for LongTermAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LongTermAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("realm", &self.realm)
            .field("nonce", &self.nonce)
            .finish()
    }
}

/// A client request of `method` with `attrs` and a fresh transaction id, signed with
/// MESSAGE-INTEGRITY when `auth` is given.
pub fn request(
    method: Method,
    attrs: Vec<Box<dyn Setter>>,
    auth: Option<&LongTermAuth>,
) -> Message {
    let mut all: Vec<Box<dyn Setter>> = vec![
        Box::new(TransactionId::new()),
        Box::new(MessageType::new(method, CLASS_REQUEST)),
    ];
    all.extend(attrs);
    if let Some(a) = auth {
        all.push(Box::new(TextAttribute::new(
            ATTR_USERNAME,
            a.username.clone(),
        )));
        all.push(Box::new(TextAttribute::new(ATTR_REALM, a.realm.clone())));
        all.push(Box::new(TextAttribute::new(ATTR_NONCE, a.nonce.clone())));
        all.push(Box::new(MessageIntegrity::new_long_term_integrity(
            a.username.clone(),
            a.realm.clone(),
            a.password.clone(),
        )));
    }
    let mut m = Message::new();
    m.build(&all).expect("requests of known attributes encode");
    m
}

/// How many attributes a STUN message carries, read from its raw TLVs without decoding any
/// (a truncated last attribute counts too). Cheap enough to run before decoding.
pub fn attribute_count(buf: &[u8]) -> usize {
    const HEADER: usize = 20;
    let mut at = HEADER;
    let mut n = 0;
    while at + 4 <= buf.len() {
        let len = u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize;
        n += 1;
        at += 4 + len.div_ceil(4) * 4;
    }
    n
}

/// The comprehension-required attributes of `m` that natkit does not understand.
pub fn unknown_required(m: &Message) -> Vec<AttrType> {
    let mut out: Vec<AttrType> = Vec::new();
    for a in &m.attributes.0 {
        let t = a.typ;
        if t.0 < 0x8000
            && !KNOWN_REQUIRED.contains(&t)
            && !KNOWN_REQUIRED_EXTRA.contains(&t)
            && !out.contains(&t)
        {
            out.push(t);
        }
    }
    out
}

/// Builds a message with `m`'s transaction id and method, the given class and attributes, and a
/// FINGERPRINT. Attributes are added in order, so MESSAGE-INTEGRITY must come last in `attrs`.
pub fn respond(m: &Message, class: MessageClass, attrs: Vec<Box<dyn Setter>>) -> Vec<u8> {
    build(
        m.transaction_id,
        MessageType::new(m.typ.method, class),
        attrs,
    )
}

pub fn build(tid: TransactionId, typ: MessageType, attrs: Vec<Box<dyn Setter>>) -> Vec<u8> {
    let mut all: Vec<Box<dyn Setter>> = Vec::with_capacity(attrs.len() + 3);
    all.push(Box::new(tid));
    all.push(Box::new(typ));
    all.extend(attrs);
    all.push(Box::new(FINGERPRINT));
    let mut out = Message::new();
    // Building only fails on attribute values larger than 64 KiB, which natkit never writes.
    match out.build(&all) {
        Ok(()) => out.raw,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode stun response");
            Vec::new()
        }
    }
}

/// An error response with code, reason phrase and any extra attributes (REALM, NONCE...).
pub fn error(m: &Message, code: u16, extra: Vec<Box<dyn Setter>>) -> Vec<u8> {
    let mut attrs: Vec<Box<dyn Setter>> = vec![Box::new(ErrorCodeAttribute {
        code: ErrorCode(code),
        reason: reason_phrase(code).as_bytes().to_vec(),
    })];
    attrs.extend(extra);
    respond(m, CLASS_ERROR_RESPONSE, attrs)
}

pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        300 => "Try Alternate",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        420 => "Unknown Attribute",
        437 => "Allocation Mismatch",
        438 => "Stale Nonce",
        440 => "Address Family not Supported",
        441 => "Wrong Credentials",
        442 => "Unsupported Transport Protocol",
        443 => "Peer Address Family Mismatch",
        486 => "Allocation Quota Reached",
        500 => "Server Error",
        508 => "Insufficient Capacity",
        _ => "Error",
    }
}

/// Decodes one XOR-encoded address attribute value (RFC 8489 section 14.2).
pub fn decode_xor_addr(value: &[u8], tid: &TransactionId) -> Option<SocketAddr> {
    if value.len() < 4 {
        return None;
    }
    let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    let cookie = MAGIC_COOKIE.to_be_bytes();
    match (value[1], value.len()) {
        (0x01, 8) => {
            let mut ip = [0u8; 4];
            for i in 0..4 {
                ip[i] = value[4 + i] ^ cookie[i];
            }
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        (0x02, 20) => {
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&cookie);
            mask[4..].copy_from_slice(&tid.0);
            let mut ip = [0u8; 16];
            for i in 0..16 {
                ip[i] = value[4 + i] ^ mask[i];
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

/// Every XOR-PEER-ADDRESS of `m` (CreatePermission may carry several). `None` if any is malformed.
pub fn peer_addresses(m: &Message) -> Option<Vec<SocketAddr>> {
    xor_addresses(m, ATTR_XOR_PEER_ADDRESS)
}

/// Every `attr` XOR address of `m`, in order; `None` if one does not decode.
fn xor_addresses(m: &Message, attr: AttrType) -> Option<Vec<SocketAddr>> {
    m.attributes
        .0
        .iter()
        .filter(|a| a.typ == attr)
        .map(|a| decode_xor_addr(&a.value, &m.transaction_id))
        .collect()
}

/// Every XOR-RELAYED-ADDRESS of an Allocate answer (two for a dual allocation), in order;
/// `None` if one does not decode.
pub fn relayed_addresses(m: &Message) -> Option<Vec<SocketAddr>> {
    xor_addresses(m, ATTR_XOR_RELAYED_ADDRESS)
}

/// An XOR address attribute of any type (XOR-PEER-ADDRESS, XOR-RELAYED-ADDRESS, ...).
pub struct XorMappedAddressAs(pub SocketAddr, pub AttrType);

impl Setter for XorMappedAddressAs {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        XorMappedAddress {
            ip: self.0.ip(),
            port: self.0.port(),
        }
        .add_to_as(m, self.1)
    }
}

/// A plain address attribute of any type (MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS).
pub struct MappedAddressAs(pub SocketAddr, pub AttrType);

impl Setter for MappedAddressAs {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        MappedAddress {
            ip: self.0.ip(),
            port: self.0.port(),
        }
        .add_to_as(m, self.1)
    }
}

/// Is this the first byte of a ChannelData message (RFC 8656 section 12.4)?
pub fn is_channel_data(first: u8) -> bool {
    (0x40..=0x7f).contains(&first)
}

/// Splits a ChannelData message into channel number and payload; `None` if truncated or if the
/// number is outside the ChannelData range (it checks this itself rather than trust the caller
/// to have asked [`is_channel_data`]: found by the fuzz harness).
pub fn parse_channel_data(buf: &[u8]) -> Option<(u16, &[u8])> {
    if buf.len() < 4 || !is_channel_data(buf[0]) {
        return None;
    }
    let number = u16::from_be_bytes([buf[0], buf[1]]);
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    buf.get(4..4 + len).map(|data| (number, data))
}

/// Writes the 4-byte ChannelData header for a `len`-byte payload. Over UDP no padding is sent.
pub fn channel_data_header(number: u16, len: usize) -> [u8; 4] {
    let n = number.to_be_bytes();
    let l = (len as u16).to_be_bytes();
    [n[0], n[1], l[0], l[1]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_addresses_round_trip_through_stun_encoder() {
        for addr in ["192.0.2.1:3478", "[2001:db8::7]:9", "0.0.0.0:0"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut m = Message::new();
            m.build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)])
                .unwrap();
            XorMappedAddress {
                ip: addr.ip(),
                port: addr.port(),
            }
            .add_to_as(&mut m, ATTR_XOR_PEER_ADDRESS)
            .unwrap();
            m.add(ATTR_XOR_PEER_ADDRESS, &[0, 1, 0]); // truncated second one
            let first = &m.attributes.0[0];
            assert_eq!(decode_xor_addr(&first.value, &m.transaction_id), Some(addr));
            assert_eq!(peer_addresses(&m), None);
        }
    }

    #[test]
    fn channel_data_parse_table() {
        type Row = (&'static [u8], Option<(u16, &'static [u8])>);
        let cases: [Row; 5] = [
            (&[0x40, 0x00, 0x00, 0x02, 7, 8], Some((0x4000, &[7, 8]))),
            (&[0x40, 0x01, 0x00, 0x00], Some((0x4001, &[]))),
            // padding after the payload is ignored
            (&[0x40, 0x00, 0x00, 0x01, 9, 0, 0, 0], Some((0x4000, &[9]))),
            (&[0x40, 0x00, 0x00, 0x05, 1], None),
            (&[0x40, 0x00], None),
        ];
        for (buf, want) in cases {
            assert_eq!(parse_channel_data(buf), want, "{buf:?}");
        }
        assert_eq!(channel_data_header(0x4001, 300), [0x40, 0x01, 0x01, 0x2c]);
    }
}
