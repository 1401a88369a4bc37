//! natkit patch: connections to TURN servers over TCP and TLS (`turn:...?transport=tcp`,
//! `turns:`), for networks that block UDP.
//!
//! The TURN client itself (rtc's sans-I/O `turn::client::Client` with `TransportProtocol::TCP`)
//! is unchanged: it already sends each request once and asks for a UDP relay. What was missing
//! is the connection. A [`TurnStreamLink`] owns one: the relayer hands it whole STUN/ChannelData
//! messages to write, and its reader cuts the byte stream back into messages (RFC 8656 section
//! 12.5: STUN messages by their length, ChannelData padded to four bytes) and delivers each to
//! the driver as a [`PeerConnectionDriverEvent::TurnStreamData`], tagged with the connection's
//! four-tuple and `TransportProtocol::TCP`, so it enters the relayer like a datagram would.
//!
//! TLS is rustls driven by hand over the runtime's [`AsyncTcpStream`], so this stays runtime
//! agnostic. The server certificate is verified against the roots given to the builder
//! (`PeerConnectionBuilder::with_turn_tls_config`) or, by default, the system's (the CA bundle of
//! the distribution, plus `SSL_CERT_FILE`).

use crate::peer_connection::driver::PeerConnectionDriverEvent;
use crate::runtime::{AsyncTcpStream, JoinHandle, Runtime, Sender};
use bytes::BytesMut;
use log::{debug, trace, warn};
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Messages waiting to be written on one connection; beyond this they are dropped, as a
/// congested UDP path would drop them.
const MAX_QUEUED_WRITES: usize = 1024;
/// Longest frame on the stream (a STUN header plus 65,532 bytes of attributes).
const MAX_FRAME: usize = 20 + 65_532;
/// From connect to the end of the TLS handshake.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a TURN URL reaches its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    Tcp,
    Tls,
}

/// Where the system keeps its CA bundle, by distribution.
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",             // openSUSE
    "/etc/ssl/cert.pem",                  // macOS, BSDs
];

/// Adds every PEM certificate of `pem` to `roots`; returns how many were added.
pub fn add_pem_roots(roots: &mut rustls::RootCertStore, pem: &[u8]) -> usize {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(|c| c.ok())
        .collect();
    roots.add_parsable_certificates(certs).0
}

/// The system roots (the first CA bundle found) plus the certificates of `SSL_CERT_FILE`.
pub fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = SYSTEM_BUNDLES.iter().find_map(|p| std::fs::read(p).ok()) {
        add_pem_roots(&mut roots, &pem);
    }
    if let Some(path) = std::env::var_os("SSL_CERT_FILE") {
        match std::fs::read(&path) {
            Ok(pem) => {
                add_pem_roots(&mut roots, &pem);
            }
            Err(err) => warn!("SSL_CERT_FILE {:?}: {}", path, err),
        }
    }
    roots
}

/// A TLS client configuration (TLS 1.2 and 1.3, ring) trusting `roots`.
pub fn client_config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// The configuration used when the builder was given none: the system roots, read once.
pub(crate) fn default_client_config() -> Arc<rustls::ClientConfig> {
    static DEFAULT: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    Arc::clone(DEFAULT.get_or_init(|| client_config(system_roots())))
}

/// The length of the frame at the start of `buf` on the stream, padding included; `Ok(None)`
/// while incomplete, `Err` when the bytes are neither STUN nor ChannelData.
pub(crate) fn frame_len(buf: &[u8]) -> Result<Option<(usize, usize)>, ()> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let (message, consumed) = match buf[0] {
        0x40..=0x7f => (4 + len, 4 + ((len + 3) & !3)),
        b if b & 0xc0 == 0 && len % 4 == 0 => (20 + len, 20 + len),
        _ => return Err(()),
    };
    if consumed > MAX_FRAME {
        return Err(());
    }
    Ok((buf.len() >= consumed).then_some((message, consumed)))
}

/// One message read from a TURN server's stream, as the driver receives it.
pub(crate) struct TurnStreamFrame(pub(crate) TaggedBytesMut);

impl std::fmt::Debug for TurnStreamFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TurnStreamFrame({} bytes from {})", self.0.message.len(), self.0.transport.peer_addr)
    }
}

/// The TLS state of a connection, shared by its reader and writer.
type Tls = Arc<Mutex<rustls::ClientConnection>>;

/// Drains the TLS records rustls wants to send.
fn tls_output(conn: &mut rustls::ClientConnection) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out)?;
    }
    Ok(out)
}

/// Feeds ciphertext to rustls and returns the plaintext it yields.
fn tls_input(conn: &mut rustls::ClientConnection, mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut plain = Vec::new();
    while !data.is_empty() {
        conn.read_tls(&mut data)?;
        conn.process_new_packets().map_err(io::Error::other)?;
        let mut chunk = [0u8; 4096];
        loop {
            match conn.reader().read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => plain.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(plain)
}

async fn handshake(
    stream: &Arc<dyn AsyncTcpStream>,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> io::Result<rustls::ClientConnection> {
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut conn = rustls::ClientConnection::new(config, server_name).map_err(io::Error::other)?;
    let mut buf = vec![0u8; 8192];
    while conn.is_handshaking() {
        let out = tls_output(&mut conn)?;
        if !out.is_empty() {
            stream.write_all(&out).await?;
        }
        if conn.is_handshaking() && conn.wants_read() {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the TURN server closed the connection during the TLS handshake",
                ));
            }
            let mut data = &buf[..n];
            while !data.is_empty() {
                conn.read_tls(&mut data)?;
                conn.process_new_packets().map_err(io::Error::other)?;
            }
        }
    }
    let out = tls_output(&mut conn)?;
    if !out.is_empty() {
        stream.write_all(&out).await?;
    }
    Ok(conn)
}

/// One connection to a TURN server. Dropping it closes the connection.
pub(crate) struct TurnStreamLink {
    pub(crate) local_addr: SocketAddr,
    pub(crate) peer_addr: SocketAddr,
    pub(crate) kind: StreamKind,
    out: async_channel::Sender<Vec<u8>>,
    tasks: Vec<Box<dyn JoinHandle>>,
}

impl std::fmt::Debug for TurnStreamLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnStreamLink")
            .field("local_addr", &self.local_addr)
            .field("peer_addr", &self.peer_addr)
            .field("kind", &self.kind)
            .finish()
    }
}

impl Drop for TurnStreamLink {
    fn drop(&mut self) {
        self.out.close();
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl TurnStreamLink {
    /// Connects to `server` (and runs the TLS handshake for `tls_name`), then starts the
    /// reader and the writer.
    pub(crate) async fn connect(
        runtime: Arc<dyn Runtime>,
        server: SocketAddr,
        tls: Option<(Arc<rustls::ClientConfig>, String)>,
        events: Sender<PeerConnectionDriverEvent>,
    ) -> io::Result<TurnStreamLink> {
        let stream = runtime.connect_tcp(server).await?;
        let local_addr = stream.local_addr()?;
        let kind = if tls.is_some() {
            StreamKind::Tls
        } else {
            StreamKind::Tcp
        };
        let tls: Option<Tls> = match tls {
            Some((config, name)) => {
                Some(Arc::new(Mutex::new(handshake(&stream, config, &name).await?)))
            }
            None => None,
        };
        let (out, out_rx) = async_channel::bounded::<Vec<u8>>(MAX_QUEUED_WRITES);
        let transport = TransportContext {
            local_addr,
            peer_addr: server,
            transport_protocol: TransportProtocol::TCP,
            ecn: None,
        };
        let reader = runtime.spawn(Box::pin(read_loop(
            Arc::clone(&stream),
            tls.clone(),
            transport,
            events,
            Arc::clone(&runtime),
        )));
        let writer = runtime.spawn(Box::pin(write_loop(stream, tls, out_rx)));
        debug!("TURN over {:?} connected {} -> {}", kind, local_addr, server);
        Ok(TurnStreamLink {
            local_addr,
            peer_addr: server,
            kind,
            out,
            tasks: vec![reader, writer],
        })
    }

    /// Queues one whole message; `false` when the connection is gone or too far behind.
    pub(crate) fn send(&self, message: &[u8]) -> bool {
        self.out.try_send(message.to_vec()).is_ok()
    }
}

async fn write_loop(
    stream: Arc<dyn AsyncTcpStream>,
    tls: Option<Tls>,
    out: async_channel::Receiver<Vec<u8>>,
) {
    while let Ok(first) = out.recv().await {
        let mut batch = first;
        while batch.len() < 64 * 1024 {
            match out.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        let bytes = match &tls {
            Some(conn) => {
                let mut conn = conn.lock().expect("tls lock");
                if conn.writer().write_all(&batch).is_err() {
                    return;
                }
                match tls_output(&mut conn) {
                    Ok(b) => b,
                    Err(_) => return,
                }
            }
            None => batch,
        };
        if let Err(err) = stream.write_all(&bytes).await {
            debug!("TURN stream write failed: {}", err);
            return;
        }
    }
}

async fn read_loop(
    stream: Arc<dyn AsyncTcpStream>,
    tls: Option<Tls>,
    transport: TransportContext,
    events: Sender<PeerConnectionDriverEvent>,
    runtime: Arc<dyn Runtime>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) => {
                debug!("TURN server {} closed the connection", transport.peer_addr);
                return;
            }
            Ok(n) => n,
            Err(err) => {
                debug!("TURN stream read from {} failed: {}", transport.peer_addr, err);
                return;
            }
        };
        match &tls {
            Some(conn) => {
                let (plain, reply) = {
                    let mut conn = conn.lock().expect("tls lock");
                    let plain = match tls_input(&mut conn, &buf[..n]) {
                        Ok(p) => p,
                        Err(err) => {
                            warn!("TLS from TURN server {}: {}", transport.peer_addr, err);
                            return;
                        }
                    };
                    (plain, tls_output(&mut conn).unwrap_or_default())
                };
                if !reply.is_empty() && stream.write_all(&reply).await.is_err() {
                    return;
                }
                pending.extend_from_slice(&plain);
            }
            None => pending.extend_from_slice(&buf[..n]),
        }
        let mut at = 0;
        loop {
            match frame_len(&pending[at..]) {
                Ok(Some((message, consumed))) => {
                    trace!("TURN stream frame of {} bytes from {}", message, transport.peer_addr);
                    let msg = TaggedBytesMut {
                        now: runtime.now(),
                        transport,
                        message: BytesMut::from(&pending[at..at + message]),
                    };
                    if events
                        .send(PeerConnectionDriverEvent::TurnStreamData(TurnStreamFrame(msg)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    at += consumed;
                }
                Ok(None) => break,
                Err(()) => {
                    warn!(
                        "TURN server {} sent bytes that are neither STUN nor ChannelData; closing",
                        transport.peer_addr
                    );
                    return;
                }
            }
        }
        pending.drain(..at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_on_the_stream() {
        let stun = |len: u16| {
            let mut v = vec![0x01, 0x01];
            v.extend_from_slice(&len.to_be_bytes());
            v.resize(20 + len as usize, 0);
            v
        };
        assert_eq!(frame_len(&stun(8)), Ok(Some((28, 28))));
        assert_eq!(frame_len(&stun(8)[..27]), Ok(None));
        // ChannelData of 5 bytes takes 12 on the stream.
        let cd = [0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0];
        assert_eq!(frame_len(&cd), Ok(Some((9, 12))));
        assert_eq!(frame_len(&cd[..10]), Ok(None));
        assert_eq!(frame_len(&[0x16, 0x03, 0x01, 0x02]), Err(()));
        assert_eq!(frame_len(&[0x80, 0, 0, 0]), Err(()));
    }
}
