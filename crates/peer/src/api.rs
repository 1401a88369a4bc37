//! The library API: a program joins a room and gets a data channel to its partner, the path
//! decided as natkit-peer decides it (the same session, [`crate::session`], in [`Mode::App`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), natkit_peer::Error> {
//! let session = natkit_peer::connect(natkit_peer::Options {
//!     signal: vec!["ws://127.0.0.1:8080".into()],
//!     room: "demo".into(),
//!     ..Default::default()
//! })
//! .await?;
//! let mut channel = session.channel(None).await?;
//! channel.send("hello").await?;
//! while let Some(message) = channel.recv().await {
//!     println!("{message:?} over {:?}", channel.path());
//! }
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{BoxStream, StreamExt};
use natkit_proto::ErrorCode;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::events::Event;
use crate::peer::{drive, first_join, AppIo, Io, JoinError, PeerConfig, INPUT_QUEUE};
use crate::policy::RelayMode;
use crate::session::Mode;
pub use crate::session::{Failure, Message, Stage};
use crate::signaling::SignalingError;

/// Messages a channel keeps for a program that does not read; one more closes the channel.
pub const MAX_UNREAD: usize = 65_536;
/// Events kept for a slow [`Session::events`] reader; older ones are skipped.
const EVENT_BACKLOG: usize = 256;

/// How to join. `Options { signal, room, ..Default::default() }` is enough on an open server.
#[derive(Debug, Clone)]
pub struct Options {
    /// natkit-signal's `ws://HOST:PORT` (`/v1/ws` is added), or the nodes of a cluster: the
    /// first that answers is joined, a lost or draining node is left for the next.
    pub signal: Vec<String>,
    pub room: String,
    /// The join token, when the server requires one.
    pub token: Option<String>,
    /// Ask for this peer id (the server picks one otherwise).
    pub peer_id: Option<String>,
    /// `Auto` (probe, exchange NAT summaries, natkit's pair rule), `Always` or `Never`.
    pub relay: RelayMode,
    /// From `connect` until the channel must be open (joining included). Default 30 s.
    pub timeout: Duration,
    /// Renew the TURN credential before it expires (on by default).
    pub renew: bool,
    /// How `turns:` relays are verified; `None`: the system's roots and `SSL_CERT_FILE`.
    pub turn_tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            signal: Vec::new(),
            room: String::new(),
            token: None,
            peer_id: None,
            relay: RelayMode::Auto,
            timeout: Duration::from_secs(30),
            renew: true,
            turn_tls: None,
        }
    }
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// natkit-signal refused the join: `code` is its code (`unauthorized`, `room-full`, ...).
    #[error("the server refused the join: {code}: {message}")]
    Refused { code: ErrorCode, message: String },
    /// The session failed (no signaling server, no path, the deadline); `stage` says where.
    #[error("{0}")]
    Failed(Failure),
    /// The session or its channel is closed.
    #[error("the channel is closed")]
    Closed,
    /// This session's channel is with another partner (a session holds one channel).
    #[error("this session's channel is with {partner}, not {asked}")]
    OtherPartner { partner: String, asked: String },
    /// `channel` was called before, and its channel taken.
    #[error("the channel was already taken from this session")]
    ChannelTaken,
    #[error("bad options: {0}")]
    Options(String),
}

impl From<JoinError> for Error {
    fn from(e: JoinError) -> Error {
        match e {
            JoinError::Signaling(SignalingError::Refused { code, message }) => {
                Error::Refused { code, message }
            }
            other => Error::Failed(other.into()),
        }
    }
}

/// How a channel's data travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The selected pair's local candidate type: `host`, `srflx`, `prflx` or `relay`.
    pub local: String,
    pub remote: String,
    /// `udp`, `tcp` or `tls`: how this side reaches its relay, when `local` is `relay`.
    pub relay_transport: Option<String>,
    /// The row of natkit's pair rule that chose the ICE policy (`direct-possible`, ...).
    pub rule: String,
    pub relay_only: bool,
}

/// A joined peer. Dropping it ends the session (the partner sees the channel close).
pub struct Session {
    peer_id: String,
    room: String,
    peers: Arc<Mutex<Vec<String>>>,
    events: broadcast::Sender<Event>,
    input: mpsc::Sender<Option<Message>>,
    deliver: Mutex<Option<mpsc::Receiver<Message>>>,
    path: watch::Receiver<Option<(String, Path)>>,
    task: Mutex<Option<JoinHandle<Result<(), Failure>>>>,
    outcome: watch::Receiver<Option<Result<(), Failure>>>,
}

/// Joins `options.room` and starts the session: it probes, exchanges NAT summaries with the
/// partner, decides the path and opens the channel in the background (see
/// [`Session::channel`]). A refused join is an [`Error::Refused`] at once.
pub async fn connect(options: Options) -> Result<Session, Error> {
    if options.signal.is_empty() {
        return Err(Error::Options("no signaling URL".into()));
    }
    if options.room.is_empty() {
        return Err(Error::Options("no room".into()));
    }
    let cfg = PeerConfig {
        signal: options.signal,
        room: options.room,
        peer_id: options.peer_id,
        token: options.token,
        relay: options.relay,
        mode: Mode::App,
        timeout: options.timeout,
        renew: options.renew,
        turn_tls: options.turn_tls,
    };
    let started = Instant::now();
    let joined = first_join(&cfg, started + cfg.timeout).await?;
    let (peer_id, room) = (joined.1.peer_id.clone(), joined.1.room.clone());
    let (events, _) = broadcast::channel(EVENT_BACKLOG);
    let (input, input_rx) = mpsc::channel(INPUT_QUEUE);
    let (deliver_tx, deliver) = mpsc::channel(MAX_UNREAD);
    let (path_tx, path) = watch::channel(None);
    let (outcome_tx, outcome) = watch::channel(None);
    let peers = Arc::new(Mutex::new(joined.1.peers.clone()));
    let app = AppIo {
        deliver: deliver_tx,
        path: path_tx,
        peers: Arc::clone(&peers),
    };
    let sender = events.clone();
    let span = tracing::info_span!("session", room = %cfg.room, peer = %peer_id);
    let task = tokio::spawn(tracing::Instrument::instrument(
        async move {
            let emit = move |e: Event| {
                let _ = sender.send(e);
            };
            let io = Io {
                emit: &emit,
                input: input_rx,
                app: Some(app),
            };
            let outcome = drive(&cfg, joined, started, io).await;
            let _ = outcome_tx.send(Some(outcome.clone()));
            outcome
        },
        span,
    ));
    Ok(Session {
        peer_id,
        room,
        peers,
        events,
        input,
        deliver: Mutex::new(Some(deliver)),
        path,
        task: Mutex::new(Some(task)),
        outcome,
    })
}

impl Session {
    pub fn peer_id(&self) -> &str {
        &self.peer_id
    }

    pub fn room(&self) -> &str {
        &self.room
    }

    /// The other peers in the room, as signaling last said.
    pub fn peers(&self) -> Vec<String> {
        self.peers.lock().expect("not poisoned").clone()
    }

    /// The session's events from now on (`connected`, `renewed`, `ice-restart`, `signaling`,
    /// ...: what `natkit-peer --json` prints). A reader more than 256 behind skips the oldest.
    pub fn events(&self) -> BoxStream<'static, Event> {
        futures_util::stream::unfold(self.events.subscribe(), |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(e) => return Some((e, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }

    /// The data channel with `peer` (or with the first partner to appear), once open. Fails
    /// with the session's [`Failure`] (its stage: `signaling`, `ice`, `relay`, `dtls`,
    /// `timeout` when nothing opened within [`Options::timeout`]).
    pub async fn channel(&self, peer: Option<&str>) -> Result<Channel, Error> {
        let mut path = self.path.clone();
        let mut outcome = self.outcome.clone();
        // The driver publishes its outcome before it drops either sender: an ended session is
        // always told by its outcome.
        let mut path_open = true;
        let partner = loop {
            if let Some((partner, _)) = &*path.borrow_and_update() {
                break partner.clone();
            }
            if let Some(o) = &*outcome.borrow_and_update() {
                return Err(match o {
                    Err(f) => Error::Failed(f.clone()),
                    Ok(()) => Error::Closed,
                });
            }
            tokio::select! {
                r = path.changed(), if path_open => path_open = r.is_ok(),
                r = outcome.changed() => {
                    if r.is_err() && outcome.borrow().is_none() {
                        return Err(Error::Closed);
                    }
                }
            }
        };
        if let Some(asked) = peer {
            if asked != partner {
                return Err(Error::OtherPartner {
                    partner,
                    asked: asked.to_owned(),
                });
            }
        }
        let inbox = self
            .deliver
            .lock()
            .expect("not poisoned")
            .take()
            .ok_or(Error::ChannelTaken)?;
        Ok(Channel {
            peer_id: partner,
            input: self.input.clone(),
            inbox,
            path,
        })
    }

    /// Ends the session: what was sent goes out (the session waits a second for the last
    /// messages), the peer connection closes and the room sees the peer leave. The outcome.
    pub async fn close(self) -> Result<(), Failure> {
        let _ = self.input.send(None).await;
        let task = self.task.lock().expect("not poisoned").take();
        match task {
            Some(t) => t
                .await
                .unwrap_or_else(|e| Err(Failure::new(Stage::Signaling, e.to_string()))),
            None => Ok(()),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Without `close`: the driver sees its input end and finishes the session by itself.
        let _ = self.input.try_send(None);
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peer_id", &self.peer_id)
            .field("room", &self.room)
            .finish_non_exhaustive()
    }
}

/// The data channel with one partner.
pub struct Channel {
    peer_id: String,
    input: mpsc::Sender<Option<Message>>,
    inbox: mpsc::Receiver<Message>,
    path: watch::Receiver<Option<(String, Path)>>,
}

impl Channel {
    /// The partner's peer id.
    pub fn peer_id(&self) -> &str {
        &self.peer_id
    }

    /// The path in use (it changes after an ICE restart).
    pub fn path(&self) -> Path {
        let p = self.path.borrow();
        p.as_ref()
            .map(|(_, path)| path.clone())
            .expect("a channel exists only once its path is known")
    }

    /// Sends text (`&str`, `String`) or binary (`Vec<u8>`, `&[u8]`) data; waits while the
    /// session is busy.
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), Error> {
        self.input
            .send(Some(message.into()))
            .await
            .map_err(|_| Error::Closed)
    }

    /// The next message; `None` once the channel is closed and every message read.
    pub async fn recv(&mut self) -> Option<Message> {
        self.inbox.recv().await
    }

    /// Ends the session this channel belongs to (as [`Session::close`], without waiting).
    pub async fn close(self) {
        let _ = self.input.send(None).await;
    }
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("peer_id", &self.peer_id)
            .field("path", &self.path.borrow().as_ref().map(|(_, p)| p))
            .finish_non_exhaustive()
    }
}
