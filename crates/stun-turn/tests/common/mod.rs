//! Shared helpers for the relay's loopback tests: an in-process relay on 127.0.0.1:0 with a
//! shutdown handle, a raw STUN client that asserts exact error codes, and tool lookup that fails
//! loudly when a third-party client is missing.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use natkit_stun_turn::config::{RelayConfig, RelayOptions, SecretText};
use natkit_stun_turn::credentials::{self, Credential, Secret};
use natkit_stun_turn::metrics::RelayMetrics;
use natkit_stun_turn::server::{Relay, RelayAddresses};
use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::message::*;
use stun::textattrs::TextAttribute;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SECRET: &str = "loopback-test-secret";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn mint(secret: &str, user: &str, ttl: u64) -> Credential {
    credentials::mint(&Secret::new(secret).unwrap(), user, ttl, now()).unwrap()
}

/// An expired credential signed with the right secret.
pub fn expired(secret: &str, user: &str) -> Credential {
    credentials::mint(&Secret::new(secret).unwrap(), user, 10, now() - 100).unwrap()
}

pub struct TestRelay {
    pub addrs: RelayAddresses,
    pub metrics: RelayMetrics,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestRelay {
    /// Starts a relay on loopback with `SECRET` (plus `extra`'s settings).
    pub async fn start(extra: RelayOptions) -> TestRelay {
        Self::start_with_secret(extra, SECRET).await
    }

    /// Starts a relay on loopback with `SECRET` and the settings `set` makes.
    pub async fn with(set: impl FnOnce(&mut RelayOptions)) -> TestRelay {
        let mut options = RelayOptions::default();
        set(&mut options);
        Self::start(options).await
    }

    pub async fn start_with_secret(extra: RelayOptions, secret: &str) -> TestRelay {
        let options = extra.over(&RelayOptions {
            listen: vec!["127.0.0.1:0".into()],
            alt_port: Some("0".into()),
            turn_secret: Some(SecretText(secret.into())),
            ..Default::default()
        });
        let config = RelayConfig::try_from(options).expect("valid test settings");
        let metrics = RelayMetrics::new();
        let relay = Relay::bind(config, metrics.clone())
            .await
            .expect("bind relay");
        let addrs = relay.addresses().clone();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(relay.run(async move {
            let _ = rx.await;
        }));
        TestRelay {
            addrs,
            metrics,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs.primary
    }

    /// Stops the relay and waits until it has closed every socket.
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }

    /// The value of one metric series in the Prometheus text, e.g.
    /// `natkit_relay_relayed_packets_total{direction="client_to_peer"}`.
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics.render(), series)
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn metric_value(text: &str, series: &str) -> f64 {
    natkit_testkit::metric(text, series)
}

pub use natkit_stun_turn::wire::{request, LongTermAuth as Auth};

pub fn error_code(m: &Message) -> Option<u16> {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(m).ok().map(|_| e.code.0)
}

pub fn text(m: &Message, t: AttrType) -> Option<String> {
    TextAttribute::get_from_as(m, t).ok().map(|a| a.text)
}

/// REQUESTED-TRANSPORT: UDP.
pub fn udp() -> Box<dyn Setter> {
    Box::new(turn::proto::reqtrans::RequestedTransport {
        protocol: turn::proto::PROTO_UDP,
    })
}

/// LIFETIME in seconds (0 deletes the allocation).
pub fn lifetime(secs: u64) -> Box<dyn Setter> {
    Box::new(turn::proto::lifetime::Lifetime(Duration::from_secs(secs)))
}

/// XOR-PEER-ADDRESS from its text form.
pub fn peer(addr: &str) -> Box<dyn Setter> {
    xor_peer(addr.parse().expect("a socket address"))
}

pub fn xor_peer(addr: SocketAddr) -> Box<dyn Setter> {
    Box::new(turn::proto::peeraddr::PeerAddress {
        ip: addr.ip(),
        port: addr.port(),
    })
}

/// A raw STUN client on its own socket: one 5-tuple towards the relay.
pub struct StunClient {
    pub sock: UdpSocket,
    pub server: SocketAddr,
}

impl StunClient {
    /// A client on 127.0.0.1, or on ::1 for an IPv6 server.
    pub async fn new(server: SocketAddr) -> Self {
        let local = if server.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        StunClient {
            sock: UdpSocket::bind(local).await.unwrap(),
            server,
        }
    }

    pub fn local(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    /// Sends raw bytes (a ChannelData, a hand-made message) to the relay.
    pub async fn send(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.server).await.unwrap();
    }

    /// Sends `m` and returns the response with its transaction id (3 tries, 1 s each).
    pub async fn transact(&self, m: &Message) -> Message {
        self.try_transact(m)
            .await
            .unwrap_or_else(|| panic!("no response from {} to {:?}", self.server, m.typ))
    }

    /// Builds a request (`wire::request`) and transacts it.
    pub async fn call(
        &self,
        method: Method,
        attrs: Vec<Box<dyn Setter>>,
        auth: Option<&Auth>,
    ) -> Message {
        self.transact(&request(method, attrs, auth)).await
    }

    /// CreatePermission for one peer address (text form).
    pub async fn permit(&self, peer_addr: &str, auth: &Auth) -> Message {
        self.call(METHOD_CREATE_PERMISSION, vec![peer(peer_addr)], Some(auth))
            .await
    }

    pub async fn try_transact(&self, m: &Message) -> Option<Message> {
        for _ in 0..3 {
            self.sock.send_to(&m.raw, self.server).await.unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            loop {
                let mut buf = vec![0u8; 65536];
                let r = tokio::time::timeout_at(deadline, self.sock.recv_from(&mut buf)).await;
                let Ok(Ok((n, _))) = r else { break };
                let mut resp = Message::new();
                resp.raw = buf[..n].to_vec();
                if resp.decode().is_ok() && resp.transaction_id == m.transaction_id {
                    return Some(resp);
                }
            }
        }
        None
    }

    /// Sends an unauthenticated request to learn realm and nonce (expects 401).
    pub async fn challenge(&self, cred: &Credential) -> Auth {
        let r = self
            .transact(&request(METHOD_ALLOCATE, vec![udp()], None))
            .await;
        assert_eq!(
            error_code(&r),
            Some(401),
            "first Allocate must be challenged"
        );
        Auth {
            username: cred.username.clone(),
            password: cred.password.clone(),
            realm: text(&r, ATTR_REALM).expect("401 carries REALM"),
            nonce: text(&r, ATTR_NONCE).expect("401 carries NONCE"),
        }
    }

    /// Allocates for `user` (a credential of `SECRET` for 10 minutes) and asserts success.
    pub async fn allocated(&self, user: &str) -> Auth {
        let (r, auth) = self.allocate(&mint(SECRET, user, 600)).await;
        assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{r:?}");
        auth
    }

    /// Challenge, then Allocate with `cred`; returns the final response.
    pub async fn allocate(&self, cred: &Credential) -> (Message, Auth) {
        let auth = self.challenge(cred).await;
        let r = self
            .transact(&request(METHOD_ALLOCATE, vec![udp()], Some(&auth)))
            .await;
        (r, auth)
    }
}

/// Path of a third-party tool. Missing tools fail the test: `.ci/run` and `tests/run` install
/// them, and a test that silently skipped would prove nothing.
pub fn tool(name: &str) -> std::path::PathBuf {
    natkit_testkit::coturn_tool(name)
}

/// Parses uclient's closing "tot_send_msgs=N, tot_recv_msgs=M" line.
pub fn uclient_totals(out: &str) -> (u64, u64) {
    natkit_testkit::uclient_totals(out)
        .unwrap_or_else(|| panic!("no totals in uclient output:\n{out}"))
}
