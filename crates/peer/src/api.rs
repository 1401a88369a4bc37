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
use crate::peer::{first_join, JoinError, PeerConfig};
use crate::policy::RelayMode;
pub use crate::room::MAX_PARTNERS;
use crate::room::{self, LinkView, Shared};
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
    /// How `turns:` relays and a `wss://` natkit-signal are verified; `None`: the system's
    /// roots and `SSL_CERT_FILE`.
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
    /// The channel with this partner was taken by an earlier `channel` call.
    #[error("the channel with this partner was already taken")]
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

/// A joined peer, with a channel to each partner in the room. Dropping it ends the session
/// (partners see their channels close).
pub struct Session {
    peer_id: String,
    room: String,
    timeout: Duration,
    shared: Arc<Shared>,
    events: broadcast::Sender<SessionEvent>,
    /// Subscribed at the join: the first `events()` stream starts there.
    first_events: Mutex<Option<broadcast::Receiver<SessionEvent>>>,
    close: mpsc::Sender<()>,
    task: Mutex<Option<JoinHandle<Result<(), Failure>>>>,
}

/// An event of the session: `peer` names the partner it concerns (`None`: the room's, such as
/// `joined`, `probe`, `peer-joined`, `signaling`).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEvent {
    pub peer: Option<String>,
    pub event: Event,
}

/// Joins `options.room` and starts the session: it probes, exchanges NAT summaries with each
/// partner, decides each path and opens the channels in the background (see
/// [`Session::channel`]). It offers to the peers already in the room and answers those that
/// join later (up to [`MAX_PARTNERS`]). A refused join is an [`Error::Refused`] at once.
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
    let (events, first_events) = broadcast::channel(EVENT_BACKLOG);
    let (close, close_rx) = mpsc::channel(1);
    let shared = Shared::new(joined.1.peers.clone());
    let timeout = cfg.timeout;
    let span = tracing::info_span!("session", room = %cfg.room, peer = %peer_id);
    let task = tokio::spawn(tracing::Instrument::instrument(
        room::run(
            cfg,
            joined,
            started,
            Arc::clone(&shared),
            events.clone(),
            close_rx,
        ),
        span,
    ));
    Ok(Session {
        peer_id,
        room,
        timeout,
        shared,
        events,
        first_events: Mutex::new(Some(first_events)),
        close,
        task: Mutex::new(Some(task)),
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
        self.shared.peers.lock().expect("not poisoned").clone()
    }

    /// The session's events: the first stream from the join on, later ones from the call on.
    /// The room's (`joined`, `probe`, `peer-joined`,
    /// `peer-left`, `signaling`, `closed`) and each partner's (`policy`, `connected`,
    /// `renewed`, `ice-restart`, ...: what `natkit-peer --json` prints). A reader more than 256
    /// behind skips the oldest.
    pub fn events(&self) -> BoxStream<'static, SessionEvent> {
        let rx = self.first_events.lock().expect("not poisoned").take();
        let rx = rx.unwrap_or_else(|| self.events.subscribe());
        futures_util::stream::unfold(rx, |mut rx| async move {
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

    /// The data channel with `peer` once open: it waits for `peer` to join (up to
    /// [`Options::timeout`]). With `None`, the first open channel not taken yet, waiting for
    /// one as long as the session lives: call it again for the next partner. Fails with the
    /// session's [`Failure`] (its stage: `signaling`, `ice`, `relay`, `dtls`, `timeout` when no
    /// channel opened within [`Options::timeout`]), or with `peer`'s link's.
    pub async fn channel(&self, peer: Option<&str>) -> Result<Channel, Error> {
        let mut changed = self.shared.changed.subscribe();
        let until = tokio::time::Instant::now() + self.timeout;
        loop {
            changed.borrow_and_update();
            if let Some(found) = self.take_channel(peer) {
                return found;
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() {
                    return Err(Error::Closed);
                },
                _ = tokio::time::sleep_until(until), if peer.is_some() => {
                    return Err(Error::Failed(Failure::new(
                        Stage::Timeout,
                        format!(
                            "no channel with {} within {:.0?}",
                            peer.unwrap_or_default(),
                            self.timeout
                        ),
                    )));
                }
            }
        }
    }

    /// The channel `channel` asks for, when it can tell: `None` to wait.
    fn take_channel(&self, peer: Option<&str>) -> Option<Result<Channel, Error>> {
        let mut views = self.shared.links.lock().expect("not poisoned");
        let chosen = match peer {
            Some(p) => match views.get(p) {
                Some(v) if v.path.borrow().is_some() && v.inbox.is_none() => {
                    return Some(Err(Error::ChannelTaken))
                }
                Some(v) if v.path.borrow().is_some() => Some(p.to_owned()),
                Some(LinkView {
                    outcome: Some(o), ..
                }) => {
                    return Some(Err(match o {
                        Err(f) => Error::Failed(f.clone()),
                        Ok(()) => Error::Closed,
                    }))
                }
                _ => None,
            },
            None => views
                .iter()
                .filter(|(_, v)| v.inbox.is_some() && v.opened.is_some())
                .min_by_key(|(_, v)| v.opened)
                .map(|(p, _)| p.clone()),
        };
        if let Some(p) = chosen {
            let v = views.get_mut(&p).expect("chosen from the map");
            return Some(Ok(Channel {
                peer_id: p,
                input: v.input.clone(),
                inbox: v.inbox.take().expect("not taken"),
                path: v.path.clone(),
            }));
        }
        drop(views);
        self.shared
            .outcome
            .lock()
            .expect("not poisoned")
            .as_ref()
            .map(|o| {
                Err(match o {
                    Err(f) => Error::Failed(f.clone()),
                    Ok(()) => Error::Closed,
                })
            })
    }

    /// Ends the session: each channel sends what it holds (waiting a second for the last
    /// messages) and closes, and the room sees the peer leave. The outcome.
    pub async fn close(self) -> Result<(), Failure> {
        let _ = self.close.try_send(());
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
        // Without `close`: the room ends its links and the session by itself.
        let _ = self.close.try_send(());
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

    /// Closes this channel (the partner sees it close); the session and its other channels
    /// go on.
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
