//! Just enough TURN client for load: Allocate (with the 401 challenge) and ChannelBind.

use std::net::SocketAddr;
use std::time::Duration;

use natkit_stun_turn::credentials::{self, Secret};
use stun::agent::TransactionId;
use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::message::*;
use stun::textattrs::TextAttribute;
use tokio::net::UdpSocket;
use turn::proto::channum::ChannelNumber;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;

use natkit_stun_turn::wire::{request as build, LongTermAuth as Auth};

/// Sends `m` on the connected socket and waits for the matching response (5 tries, 500 ms).
async fn transact(sock: &UdpSocket, m: &Message) -> anyhow::Result<Message> {
    let mut buf = vec![0u8; 2048];
    for _ in 0..5 {
        sock.send(&m.raw).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            let mut r = Message::new();
            r.raw = buf[..n].to_vec();
            if r.decode().is_ok() && r.transaction_id == m.transaction_id {
                return Ok(r);
            }
        }
    }
    anyhow::bail!("no answer to {:?}", m.typ)
}

/// The answer's error code, if it has one.
pub(crate) fn code(m: &Message) -> Option<u16> {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(m).ok().map(|_| e.code.0)
}

/// An allocation: its 5-tuple socket (connected to the server), credentials and relayed address.
pub struct Allocation {
    pub sock: UdpSocket,
    pub relayed: SocketAddr,
    auth: Auth,
}

/// REQUESTED-TRANSPORT UDP, as every Allocate of the load asks.
pub(crate) fn requested_udp() -> Box<dyn Setter> {
    Box::new(RequestedTransport {
        protocol: turn::proto::PROTO_UDP,
    })
}

/// The first Allocate, unauthenticated: its answer is the 401 challenge.
pub(crate) fn first_allocate() -> Message {
    build(METHOD_ALLOCATE, vec![requested_udp()], None)
}

/// The long-term credentials for a REST credential of `user` minted from `secret` now, with the
/// realm and nonce of `challenge` (which must be a 401).
pub(crate) fn answer_challenge(
    challenge: &Message,
    secret: &str,
    user: &str,
) -> anyhow::Result<Auth> {
    anyhow::ensure!(
        code(challenge) == Some(401),
        "expected a 401 challenge, got {:?}",
        code(challenge)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let cred = credentials::mint(&Secret::new(secret)?, user, 3600, now)?;
    let text = |t| TextAttribute::get_from_as(challenge, t).map(|a| a.text);
    Ok(Auth {
        username: cred.username,
        password: cred.password,
        realm: text(ATTR_REALM)?,
        nonce: text(ATTR_NONCE)?,
    })
}

/// The authenticated Allocate (600 s).
pub(crate) fn second_allocate(auth: &Auth) -> Message {
    second_allocate_with(auth, false)
}

/// The signed Allocate; `dual` asks for a relayed address in each family too
/// (ADDITIONAL-ADDRESS-FAMILY, RFC 8656 section 7.2).
fn second_allocate_with(auth: &Auth, dual: bool) -> Message {
    let mut attrs: Vec<Box<dyn Setter>> = vec![
        requested_udp(),
        Box::new(Lifetime(Duration::from_secs(600))),
    ];
    if dual {
        attrs.push(Box::new(natkit_stun_turn::wire::RawAttribute(
            natkit_stun_turn::wire::ATTR_ADDITIONAL_ADDRESS_FAMILY,
            vec![0x02, 0, 0, 0],
        )));
    }
    build(METHOD_ALLOCATE, attrs, Some(auth))
}

/// Allocates on `server` with a REST credential for `user` minted from `secret`.
pub async fn allocate(server: SocketAddr, secret: &str, user: &str) -> anyhow::Result<Allocation> {
    allocate_with(server, secret, user, false).await
}

/// [`allocate`], with a relayed address in each family when `dual` (the first one, IPv4, is
/// the allocation's `relayed`).
pub async fn allocate_with(
    server: SocketAddr,
    secret: &str,
    user: &str,
    dual: bool,
) -> anyhow::Result<Allocation> {
    let sock = crate::sock::bind_towards(server)?;
    sock.connect(server).await?;
    let challenge = transact(&sock, &first_allocate()).await?;
    let auth = answer_challenge(&challenge, secret, user)?;
    let r = transact(&sock, &second_allocate_with(&auth, dual)).await?;
    anyhow::ensure!(
        r.typ.class == CLASS_SUCCESS_RESPONSE,
        "allocate failed with {:?}",
        code(&r)
    );
    let mut relayed = RelayedAddress::default();
    relayed.get_from(&r)?;
    Ok(Allocation {
        sock,
        relayed: SocketAddr::new(relayed.ip, relayed.port),
        auth,
    })
}

impl Allocation {
    /// Binds `channel` to `peer` (which also installs the permission).
    pub async fn bind(&self, channel: u16, peer: SocketAddr) -> anyhow::Result<()> {
        let m = build(
            METHOD_CHANNEL_BIND,
            vec![
                Box::new(ChannelNumber(channel)),
                Box::new(PeerAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                }),
            ],
            Some(&self.auth),
        );
        let r = transact(&self.sock, &m).await?;
        anyhow::ensure!(
            r.typ.class == CLASS_SUCCESS_RESPONSE,
            "channel bind failed with {:?}",
            code(&r)
        );
        Ok(())
    }
}

/// Whether a STUN server on `server` answers a Binding request from a socket on `local` within
/// about `tries` x 150 ms (how the benchmarks wait for a server they started).
pub fn answers_binding(local: SocketAddr, server: SocketAddr, tries: usize) -> bool {
    let Ok(s) = std::net::UdpSocket::bind(local) else {
        return false;
    };
    if s.set_read_timeout(Some(Duration::from_millis(100)))
        .is_err()
    {
        return false;
    }
    let mut m = Message::new();
    if m.build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)])
        .is_err()
    {
        return false;
    }
    (0..tries).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        s.send_to(&m.raw, server).is_ok() && s.recv_from(&mut [0u8; 1500]).is_ok()
    })
}
