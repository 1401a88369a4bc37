//! A program's room ([`crate::api`]): one signaling connection, one probe, and a link per
//! partner. Each link is a whole session ([`crate::session`], driven by [`drive`]) with one
//! partner; the room hands it that partner's messages, rejoins for all of them when signaling
//! is lost or the node drains, and forwards what they send.
//!
//! Who offers: a peer offers to the peers its welcome lists (they were there first) and waits
//! for an offer from each peer that joins after it, as natkit.js does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use natkit_proto::{AddressFamily, ClientMsg, NatSummary, ServerMsg, Welcome};
use tokio::sync::{broadcast, mpsc, watch};

use crate::api::{Path, SessionEvent};
use crate::events::Event;
use crate::peer::{drive, probe_nat, reconnect, AppIo, Io, LinkIo, PeerConfig, INPUT_QUEUE};
use crate::policy::{stun_target, usable_servers, RelayMode};
use crate::rtc::{families_of, local_ips};
use crate::session::{Failure, Message, Stage};
use crate::signaling::Signaling;

/// Partners one program's session holds channels with at once (a room holds 16 by default);
/// peers beyond that are not linked.
pub const MAX_PARTNERS: usize = 16;
/// Links ask for fresh credentials each; one `refresh` within this long serves them all.
const REFRESH_SHARED: Duration = Duration::from_secs(5);
/// Messages kept for a link whose driver is busy; more are dropped (and the session's restart
/// logic recovers what matters).
const LINK_QUEUE: usize = 256;

/// Where a message from natkit-signal goes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// To the link with this partner (made when there is none).
    Partner(&'a str),
    /// A peer joined: a link that waits for its offer.
    Joined(&'a str),
    /// A peer left: its link decides what that means.
    Left(&'a str),
    /// Fresh credentials: every link.
    Everyone,
    /// The node drains: the room rejoins elsewhere.
    Drain,
    Ignore,
}

/// The routing rule.
pub(crate) fn route(msg: &ServerMsg) -> Route<'_> {
    match msg {
        ServerMsg::Offer { from, .. }
        | ServerMsg::Answer { from, .. }
        | ServerMsg::Candidate { from, .. }
        | ServerMsg::NatSummary { from, .. } => Route::Partner(from),
        ServerMsg::PeerJoined { peer_id } => Route::Joined(peer_id),
        ServerMsg::PeerLeft { peer_id } => Route::Left(peer_id),
        ServerMsg::IceServers { .. } => Route::Everyone,
        ServerMsg::Reconnect { .. } => Route::Drain,
        ServerMsg::Error { .. } | ServerMsg::Welcome(_) | ServerMsg::Pong | ServerMsg::Unknown => {
            Route::Ignore
        }
    }
}

/// One partner's channel as the program's [`crate::api::Session`] sees it.
pub(crate) struct LinkView {
    /// The path once the channel is open.
    pub path: watch::Receiver<Option<(String, Path)>>,
    /// The partner's messages, until the program takes the channel.
    pub inbox: Option<mpsc::Receiver<Message>>,
    pub input: mpsc::Sender<Option<Message>>,
    /// When the channel opened, in the room's order (the first to open is the first channel).
    pub opened: Option<u64>,
    /// Set when the link has ended.
    pub outcome: Option<Result<(), Failure>>,
}

/// What the room and the program's session share.
pub(crate) struct Shared {
    pub links: Mutex<BTreeMap<String, LinkView>>,
    pub peers: Mutex<Vec<String>>,
    /// The room's end.
    pub outcome: Mutex<Option<Result<(), Failure>>>,
    /// Bumped on every change the program may wait for.
    pub changed: watch::Sender<u64>,
    /// Channels opened so far (their order).
    opened: std::sync::atomic::AtomicU64,
}

impl Shared {
    pub fn new(peers: Vec<String>) -> Arc<Shared> {
        Arc::new(Shared {
            links: Mutex::new(BTreeMap::new()),
            peers: Mutex::new(peers),
            outcome: Mutex::new(None),
            changed: watch::channel(0).0,
            opened: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// `peer`'s channel is open (numbered in the order channels open).
    fn opened(&self, peer: &str) {
        if let Some(view) = self.links.lock().expect("not poisoned").get_mut(peer) {
            if view.opened.is_none() {
                let n = self
                    .opened
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                view.opened = Some(n);
            }
        }
    }

    fn ever_opened(&self) -> bool {
        self.opened.load(std::sync::atomic::Ordering::Relaxed) > 0
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }
}

/// The room's side of one link.
struct Link {
    /// The link's view of signaling (`None` while the room rejoins).
    incoming: Option<mpsc::Sender<ServerMsg>>,
    rejoined: mpsc::UnboundedSender<Result<(Signaling, Welcome), String>>,
    input: mpsc::Sender<Option<Message>>,
    task: tokio::task::JoinHandle<()>,
}

/// Runs a program's room until `close` fires or it fails; its outcome goes to `shared`.
pub(crate) async fn run(
    cfg: PeerConfig,
    joined: (Signaling, Welcome, usize),
    started: Instant,
    shared: Arc<Shared>,
    events: broadcast::Sender<SessionEvent>,
    close: mpsc::Receiver<()>,
) -> Result<(), Failure> {
    let mut room = Room::new(cfg, joined.1.clone(), started, shared, events);
    let outcome = room.run(joined, close).await;
    room.finish(outcome.clone()).await;
    outcome
}

struct Room {
    cfg: PeerConfig,
    my_id: String,
    started: Instant,
    shared: Arc<Shared>,
    events: broadcast::Sender<SessionEvent>,
    local_nat: Option<NatSummary>,
    links: BTreeMap<String, Link>,
    /// What every link sends goes through here to signaling.
    out_tx: mpsc::Sender<ClientMsg>,
    out_rx: mpsc::Receiver<ClientMsg>,
    done_tx: mpsc::UnboundedSender<(String, Result<(), Failure>)>,
    done_rx: mpsc::UnboundedReceiver<(String, Result<(), Failure>)>,
    sig: Option<Signaling>,
    signal_at: Arc<std::sync::atomic::AtomicUsize>,
    rejoining: Option<tokio::task::JoinHandle<()>>,
    /// The last welcome, with the freshest credentials: what a new link starts from.
    welcome: Welcome,
    /// Signaling is gone for good: links go on without it.
    gave_up: Option<String>,
    last_refresh: Option<Instant>,
    last_failure: Option<Failure>,
}

impl Room {
    fn new(
        cfg: PeerConfig,
        welcome: Welcome,
        started: Instant,
        shared: Arc<Shared>,
        events: broadcast::Sender<SessionEvent>,
    ) -> Room {
        let (out_tx, out_rx) = mpsc::channel(LINK_QUEUE);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Room {
            cfg,
            my_id: welcome.peer_id.clone(),
            welcome,
            started,
            shared,
            events,
            local_nat: None,
            links: BTreeMap::new(),
            out_tx,
            out_rx,
            done_tx,
            done_rx,
            sig: None,
            signal_at: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            rejoining: None,
            gave_up: None,
            last_refresh: None,
            last_failure: None,
        }
    }

    fn emit(&self, peer: Option<&str>, event: Event) {
        let _ = self.events.send(SessionEvent {
            peer: peer.map(str::to_owned),
            event,
        });
    }

    async fn run(
        &mut self,
        joined: (Signaling, Welcome, usize),
        mut close: mpsc::Receiver<()>,
    ) -> Result<(), Failure> {
        let (sig, welcome, at) = joined;
        self.signal_at
            .store(at, std::sync::atomic::Ordering::Relaxed);
        self.emit(
            None,
            Event::Joined {
                peer_id: welcome.peer_id.clone(),
                room: welcome.room.clone(),
                peers: welcome.peers.clone(),
            },
        );
        // One probe for every link (signaling's messages wait in its queue meanwhile).
        if self.cfg.relay == RelayMode::Auto {
            let servers = usable_servers(&welcome.ice_servers, self.cfg.relay, None);
            let families = families_of(&local_ips(&servers));
            let events = self.events.clone();
            let emit = move |e: Event| {
                let _ = events.send(SessionEvent {
                    peer: None,
                    event: e,
                });
            };
            // A dual-stack host probes each family at once (IPv6 is often open where IPv4 is
            // behind a symmetric NAT): the summary is IPv4's, IPv6's in `ipv6`.
            let target = |f: AddressFamily| {
                families
                    .contains(&f)
                    .then(|| stun_target(&servers, &[f]))
                    .flatten()
            };
            let (v4, v6) = (target(AddressFamily::Ipv4), target(AddressFamily::Ipv6));
            let probe = |t: Option<String>| {
                let emit = &emit;
                async move {
                    match t {
                        Some(t) => probe_nat(&t, emit).await,
                        None => Ok(None),
                    }
                }
            };
            let (nat4, nat6) = match (v4, v6) {
                (None, None) => {
                    let any = stun_target(&servers, &families);
                    (probe(any).await?, None)
                }
                (v4, v6) => {
                    let (a, b) = tokio::join!(probe(v4), probe(v6));
                    (a?, b?)
                }
            };
            self.local_nat = match (nat4, nat6) {
                (Some(n4), n6) => Some(NatSummary {
                    families: families.clone(),
                    ipv6: n6.map(Box::new),
                    ..n4
                }),
                // IPv6 only: its summary is IPv6's. A dual-stack host whose IPv4 probe failed:
                // IPv4 unknown, IPv6 known.
                (None, Some(n6)) if !families.contains(&AddressFamily::Ipv4) => Some(NatSummary {
                    families: families.clone(),
                    ..n6
                }),
                (None, Some(n6)) => Some(NatSummary {
                    families: families.clone(),
                    ipv6: Some(Box::new(n6)),
                    ..NatSummary::default()
                }),
                (None, None) => None,
            };
        }
        self.sig = Some(sig);
        // The welcome's credentials may have aged during the probe; links renew them.
        for peer in welcome.peers.clone() {
            self.link(&peer, &welcome, true);
        }
        let (rejoin_tx, mut rejoin_rx) = mpsc::unbounded_channel();
        let deadline = tokio::time::Instant::from_std(self.started + self.cfg.timeout);
        loop {
            let waiting = !self.shared.ever_opened() && self.links.is_empty();
            if waiting && Instant::now() >= deadline.into_std() {
                return Err(self.last_failure.take().unwrap_or_else(|| {
                    Failure::new(
                        Stage::Timeout,
                        format!(
                            "no partner joined {} within {:.0?}",
                            self.cfg.room, self.cfg.timeout
                        ),
                    )
                }));
            }
            if self.gave_up.is_some() && self.links.is_empty() {
                let why = self.gave_up.clone().unwrap_or_default();
                return Err(Failure::new(Stage::Signaling, why));
            }
            tokio::select! {
                _ = close.recv() => return Ok(()),
                _ = tokio::time::sleep_until(deadline), if waiting => {}
                m = next(&mut self.sig) => match m {
                    Some(m) => self.signal(m, &rejoin_tx),
                    None => self.lost("lost", &rejoin_tx),
                },
                Some(m) = self.out_rx.recv() => self.send(m).await,
                Some((peer, outcome)) = self.done_rx.recv() => self.ended(peer, outcome),
                Some(r) = rejoin_rx.recv() => self.rejoined(r),
            }
        }
    }

    /// Starts the link with `peer` (it offers when `offers`); nothing when there is one, or
    /// too many.
    fn link(&mut self, peer: &str, welcome: &Welcome, offers: bool) {
        if peer == self.my_id || self.links.contains_key(peer) {
            return;
        }
        if self.links.len() >= MAX_PARTNERS {
            tracing::warn!(%peer, "{MAX_PARTNERS} partners already: not linked");
            return;
        }
        let (in_tx, in_rx) = mpsc::channel(LINK_QUEUE);
        let (rejoined_tx, rejoined_rx) = mpsc::unbounded_channel();
        let (input_tx, input_rx) = mpsc::channel(INPUT_QUEUE);
        let (deliver_tx, inbox) = mpsc::channel(crate::api::MAX_UNREAD);
        let (path_tx, path_rx) = watch::channel(None);
        // The link's own welcome: the partner is among its peers when this side offers.
        let welcome = Welcome {
            peers: if offers {
                vec![peer.to_owned()]
            } else {
                vec![]
            },
            ..welcome.clone()
        };
        let sig = Signaling {
            out: self.out_tx.clone(),
            incoming: in_rx,
        };
        let cfg = self.cfg.clone();
        // Until a first channel opens, every link works to the session's deadline; later
        // partners get the whole timeout from when they appear.
        let started = if self.shared.ever_opened() {
            Instant::now()
        } else {
            self.started
        };
        let io_nat = self.local_nat.clone();
        let events = self.events.clone();
        let done = self.done_tx.clone();
        let partner = peer.to_owned();
        let shared = Arc::clone(&self.shared);
        let mut open_rx = path_rx.clone();
        let span = tracing::info_span!("link", partner = %peer);
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                // Tell the program when the channel opens or its path changes.
                let watcher = tokio::spawn({
                    let shared = Arc::clone(&shared);
                    let partner_w = partner.clone();
                    async move {
                        while open_rx.changed().await.is_ok() {
                            let open = open_rx.borrow_and_update().is_some();
                            if open {
                                shared.opened(&partner_w);
                            }
                            shared.bump();
                        }
                    }
                });
                let emit = {
                    let partner = partner.clone();
                    move |e: Event| {
                        // The room says what concerns it all.
                        if matches!(
                            e,
                            Event::Joined { .. } | Event::Signaling { .. } | Event::Probe(_)
                        ) {
                            return;
                        }
                        let _ = events.send(SessionEvent {
                            peer: Some(partner.clone()),
                            event: e,
                        });
                    }
                };
                let io = Io {
                    emit: &emit,
                    input: input_rx,
                    app: AppIo {
                        deliver: deliver_tx,
                        path: path_tx,
                    },
                    link: LinkIo {
                        rejoined: rejoined_rx,
                        local_nat: io_nat,
                    },
                };
                let outcome = drive(&cfg, (sig, welcome), started, io).await;
                watcher.abort();
                let _ = done.send((partner, outcome));
            },
            span,
        ));
        self.shared.links.lock().expect("not poisoned").insert(
            peer.to_owned(),
            LinkView {
                path: path_rx,
                inbox: Some(inbox),
                input: input_tx.clone(),
                opened: None,
                outcome: None,
            },
        );
        self.links.insert(
            peer.to_owned(),
            Link {
                incoming: Some(in_tx),
                rejoined: rejoined_tx,
                input: input_tx,
                task,
            },
        );
        self.shared.bump();
    }

    /// A message from natkit-signal.
    fn signal(&mut self, m: ServerMsg, rejoin_tx: &RejoinTx) {
        match route(&m) {
            Route::Partner(from) => {
                let from = from.to_owned();
                if !self.links.contains_key(&from) {
                    // A peer we did not know of (it joined while we rejoined): it offers.
                    let welcome = self.welcome_now();
                    self.link(&from, &welcome, false);
                }
                self.forward(&from, m);
            }
            Route::Joined(peer) => {
                let peer = peer.to_owned();
                {
                    let mut peers = self.shared.peers.lock().expect("not poisoned");
                    if !peers.contains(&peer) {
                        peers.push(peer.clone());
                    }
                }
                self.emit(
                    None,
                    Event::PeerJoined {
                        peer_id: peer.clone(),
                    },
                );
                if !self.links.contains_key(&peer) {
                    let welcome = self.welcome_now();
                    self.link(&peer, &welcome, false);
                }
                self.forward(&peer, m);
            }
            Route::Left(peer) => {
                let peer = peer.to_owned();
                self.shared
                    .peers
                    .lock()
                    .expect("not poisoned")
                    .retain(|p| *p != peer);
                self.emit(
                    None,
                    Event::PeerLeft {
                        peer_id: peer.clone(),
                    },
                );
                self.forward(&peer, m);
            }
            Route::Everyone => {
                if let ServerMsg::IceServers { ice_servers, ttl } = &m {
                    self.welcome.ice_servers = ice_servers.clone();
                    self.welcome.ttl = *ttl;
                }
                let peers: Vec<String> = self.links.keys().cloned().collect();
                for p in peers {
                    self.forward(&p, m.clone());
                }
            }
            Route::Drain => self.lost("draining", rejoin_tx),
            Route::Ignore => {
                if let ServerMsg::Error { code, message } = &m {
                    tracing::warn!(%code, %message, "signaling error");
                }
            }
        }
    }

    /// The welcome a link made now starts from: the last one, with the freshest credentials.
    fn welcome_now(&self) -> Welcome {
        self.welcome.clone()
    }

    /// Signaling is lost (or the node drains): every link hears it, the room rejoins.
    fn lost(&mut self, why: &'static str, rejoin_tx: &RejoinTx) {
        self.sig = None;
        self.emit(
            None,
            Event::Signaling {
                state: why,
                peers: vec![],
            },
        );
        for link in self.links.values_mut() {
            // A closed view is the link's "signaling lost".
            link.incoming = None;
        }
        if self.rejoining.is_none() && self.gave_up.is_none() {
            self.rejoining = Some(tokio::spawn(reconnect(
                self.cfg.clone(),
                self.my_id.clone(),
                Arc::clone(&self.signal_at),
                rejoin_tx.clone(),
            )));
        }
    }

    /// The room's rejoin ended: each link gets its own view of the new connection.
    fn rejoined(&mut self, r: Result<(Signaling, Welcome), String>) {
        self.rejoining = None;
        match r {
            Ok((sig, welcome)) => {
                self.emit(
                    None,
                    Event::Signaling {
                        state: "reconnected",
                        peers: welcome.peers.clone(),
                    },
                );
                *self.shared.peers.lock().expect("not poisoned") = welcome.peers.clone();
                self.sig = Some(sig);
                self.welcome = welcome.clone();
                for (peer, link) in &mut self.links {
                    let (in_tx, in_rx) = mpsc::channel(LINK_QUEUE);
                    link.incoming = Some(in_tx);
                    let view = Signaling {
                        out: self.out_tx.clone(),
                        incoming: in_rx,
                    };
                    let _ = link.rejoined.send(Ok((view, welcome.clone())));
                    tracing::debug!(%peer, "link rejoined");
                }
                // Peers that came while we were away offered into the void: we offer.
                for peer in welcome.peers.clone() {
                    self.link(&peer, &welcome, true);
                }
            }
            Err(why) => {
                self.emit(
                    None,
                    Event::Signaling {
                        state: "gave-up",
                        peers: vec![],
                    },
                );
                for link in self.links.values() {
                    let _ = link.rejoined.send(Err(why.clone()));
                }
                self.gave_up = Some(why);
            }
        }
        self.shared.bump();
    }

    /// A link ended (the partner left, the program closed the channel, or it failed).
    fn ended(&mut self, peer: String, outcome: Result<(), Failure>) {
        self.links.remove(&peer);
        {
            let mut views = self.shared.links.lock().expect("not poisoned");
            match views.get_mut(&peer) {
                // The program holds the channel (it sees the end there): forget it.
                Some(v) if v.inbox.is_none() => drop(views.remove(&peer)),
                // Kept for `channel(Some(peer))` to tell; bounded below.
                Some(v) => v.outcome = Some(outcome.clone()),
                None => {}
            }
            if views.len() > 2 * MAX_PARTNERS {
                let ended: Vec<String> = views
                    .iter()
                    .filter(|(_, v)| v.outcome.is_some())
                    .map(|(p, _)| p.clone())
                    .collect();
                for p in ended.iter().take(views.len() - MAX_PARTNERS) {
                    views.remove(p);
                }
            }
        }
        if let Err(f) = outcome {
            tracing::info!(%peer, failure = %f, "link ended");
            self.last_failure = Some(f);
        }
        self.shared.bump();
    }

    /// Ends every link (each sends what it holds and closes its channel), then the room.
    async fn finish(&mut self, outcome: Result<(), Failure>) {
        if let Some(task) = self.rejoining.take() {
            task.abort();
        }
        for link in self.links.values() {
            let _ = link.input.try_send(None);
        }
        let tasks: Vec<_> = std::mem::take(&mut self.links)
            .into_values()
            .map(|l| l.task)
            .collect();
        for task in tasks {
            let _ = task.await;
        }
        while let Ok((peer, o)) = self.done_rx.try_recv() {
            if let Some(view) = self
                .shared
                .links
                .lock()
                .expect("not poisoned")
                .get_mut(&peer)
            {
                view.outcome = Some(o);
            }
        }
        // Dropping the connection is leaving the room.
        self.sig = None;
        let reason = match &outcome {
            Ok(()) => "done".to_owned(),
            Err(f) => f.to_string(),
        };
        self.emit(None, Event::Closed { reason });
        *self.shared.outcome.lock().expect("not poisoned") = Some(outcome);
        self.shared.bump();
    }

    fn forward(&mut self, peer: &str, m: ServerMsg) {
        if let Some(tx) = self.links.get(peer).and_then(|l| l.incoming.as_ref()) {
            if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(m) {
                tracing::warn!(%peer, "link busy: a signaling message dropped");
            }
        }
    }

    /// Something a link sends.
    async fn send(&mut self, m: ClientMsg) {
        match m {
            // A link's end is not the room's.
            ClientMsg::Leave => return,
            ClientMsg::Refresh => {
                let now = Instant::now();
                if self
                    .last_refresh
                    .is_some_and(|t| now.duration_since(t) < REFRESH_SHARED)
                {
                    return;
                }
                self.last_refresh = Some(now);
            }
            _ => {}
        }
        if let Some(s) = &self.sig {
            let _ = s.out.send(m).await;
        }
    }
}

type RejoinTx = mpsc::UnboundedSender<Result<(Signaling, Welcome), String>>;

/// The next message of a live signaling connection: `None` when it closed; never resolves while
/// there is none.
async fn next(sig: &mut Option<Signaling>) -> Option<ServerMsg> {
    match sig {
        Some(s) => s.incoming.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use natkit_proto::ErrorCode;

    use super::*;

    #[test]
    fn route_table() {
        let sdp = || "v=0".to_owned();
        let p = || "p1".to_owned();
        let cases = [
            (
                ServerMsg::Offer {
                    from: p(),
                    sdp: sdp(),
                },
                Route::Partner("p1"),
            ),
            (
                ServerMsg::Answer {
                    from: p(),
                    sdp: sdp(),
                },
                Route::Partner("p1"),
            ),
            (
                ServerMsg::Candidate {
                    from: p(),
                    candidate: None,
                },
                Route::Partner("p1"),
            ),
            (ServerMsg::PeerJoined { peer_id: p() }, Route::Joined("p1")),
            (ServerMsg::PeerLeft { peer_id: p() }, Route::Left("p1")),
            (
                ServerMsg::IceServers {
                    ice_servers: vec![],
                    ttl: 60,
                },
                Route::Everyone,
            ),
            (
                ServerMsg::Reconnect {
                    reason: "drain".into(),
                },
                Route::Drain,
            ),
            (ServerMsg::error(ErrorCode::UnknownPeer, "x"), Route::Ignore),
            (ServerMsg::Pong, Route::Ignore),
            (ServerMsg::Unknown, Route::Ignore),
        ];
        for (msg, want) in &cases {
            assert_eq!(route(msg), *want, "{msg:?}");
        }
    }
}
