//! Writes the relay fuzz targets' seed corpus (`fuzz/corpus/stun_handle`, `.../channel_data`):
//! the RFC 5769 test vectors and one message of each kind a TURN exchange has, as the relay
//! would receive them. `cargo run -p natkit-turn-core --example fuzz_seeds -- fuzz/corpus`
//!
//! Each `stun_handle` seed starts with one byte that picks the harness's client address.

use std::path::Path;

use natkit_turn_core::wire::{self, RawAttribute};
use stun::attributes::*;
use stun::message::*;
use turn::proto::channum::ChannelNumber;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::reqtrans::RequestedTransport;

/// RFC 5769 section 2.1, "Sample Request" (short-term credential "VOkJxbRl1RmTxUk/WvJxBt").
pub const RFC5769_REQUEST: &str = "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74002400046e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf";
/// RFC 5769 section 2.2, "Sample IPv4 Response".
pub const RFC5769_IPV4_RESPONSE: &str = "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn write(dir: &Path, name: &str, client: u8, bytes: &[u8]) {
    let mut data = vec![client];
    data.extend_from_slice(bytes);
    std::fs::write(dir.join(name), data).expect("write a seed");
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".into());
    let stun = Path::new(&root).join("stun_handle");
    let chan = Path::new(&root).join("channel_data");
    std::fs::create_dir_all(&stun).unwrap();
    std::fs::create_dir_all(&chan).unwrap();
    write(&stun, "rfc5769-sample-request", 0, &hex(RFC5769_REQUEST));
    write(
        &stun,
        "rfc5769-ipv4-response",
        0,
        &hex(RFC5769_IPV4_RESPONSE),
    );
    let udp = || -> Box<dyn Setter> {
        Box::new(RequestedTransport {
            protocol: turn::proto::PROTO_UDP,
        })
    };
    let peer = |port| -> Box<dyn Setter> {
        Box::new(PeerAddress {
            ip: "198.51.100.9".parse().unwrap(),
            port,
        })
    };
    let seeds: Vec<(&str, u8, Message)> = vec![
        ("binding", 1, wire::request(METHOD_BINDING, vec![], None)),
        (
            "binding-change-port",
            1,
            wire::request(
                METHOD_BINDING,
                vec![Box::new(RawAttribute(
                    ATTR_CHANGE_REQUEST,
                    vec![0, 0, 0, 2],
                ))],
                None,
            ),
        ),
        (
            "allocate",
            2,
            wire::request(METHOD_ALLOCATE, vec![udp()], None),
        ),
        (
            "allocate-even-port-reserve",
            2,
            wire::request(
                METHOD_ALLOCATE,
                vec![udp(), Box::new(RawAttribute(ATTR_EVEN_PORT, vec![0x80]))],
                None,
            ),
        ),
        (
            "allocate-lifetime",
            3,
            wire::request(
                METHOD_ALLOCATE,
                vec![
                    udp(),
                    Box::new(Lifetime(std::time::Duration::from_secs(60))),
                ],
                None,
            ),
        ),
        (
            "create-permission",
            2,
            wire::request(METHOD_CREATE_PERMISSION, vec![peer(9), peer(10)], None),
        ),
        (
            "channel-bind",
            2,
            wire::request(
                METHOD_CHANNEL_BIND,
                vec![Box::new(ChannelNumber(0x4001)), peer(9)],
                None,
            ),
        ),
        (
            "refresh-zero",
            2,
            wire::request(
                METHOD_REFRESH,
                vec![Box::new(Lifetime(std::time::Duration::ZERO))],
                None,
            ),
        ),
    ];
    for (name, client, m) in seeds {
        write(&stun, name, client, &m.raw);
    }
    // A Send indication and ChannelData, the two ways data reaches a peer.
    let mut send = Message::new();
    send.build(&[
        Box::new(stun::agent::TransactionId::new()),
        Box::new(MessageType::new(METHOD_SEND, CLASS_INDICATION)),
        peer(9),
        Box::new(RawAttribute(ATTR_DATA, b"hello".to_vec())),
    ])
    .unwrap();
    write(&stun, "send-indication", 2, &send.raw);
    let mut cd = wire::channel_data_header(0x4001, 5).to_vec();
    cd.extend_from_slice(b"hello");
    cd.extend_from_slice(&[0, 0, 0]);
    write(&stun, "channel-data", 2, &cd);
    std::fs::write(chan.join("channel-data"), &cd).unwrap();
    std::fs::write(
        chan.join("channel-data-empty"),
        wire::channel_data_header(0x7fff, 0),
    )
    .unwrap();
    println!("seeds written under {root}");
}
