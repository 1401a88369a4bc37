//! The Redis shell of the cluster: the connections, this node's lease, the reaper of dead nodes,
//! the publisher (one `PUBLISH` per message, pipelined in order), the inbox subscription and the
//! store's scripts (`cluster/*.lua`, each run atomically by Redis).
//!
//! The store never decides routing: it carries [`ClusterOp`]s out and [`Inbound`] events in;
//! [`crate::rooms`] decides. When Redis is out of reach the node says so ([`Store::is_up`]),
//! refuses what needs it, and reconnects every half second; once back it asks the shell to
//! resync ([`Inbound::Resync`]) before it counts as up again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use natkit_proto::ErrorCode;
use redis::aio::{MultiplexedConnection, PubSub};
use redis::{AsyncConnectionConfig, RedisError, Script, Value};
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::{inbox, PREFIX};
use crate::rooms::{ClusterOp, ConnId, JoinVerdict, RoomLimits};

/// Jobs queued for the publisher before messages are refused (a Redis slower than the senders).
const JOB_QUEUE: usize = 65_536;
/// Jobs sent to Redis in one pipeline.
const BATCH: usize = 512;
/// Between reconnection attempts while Redis is out of reach.
const RETRY: Duration = Duration::from_millis(500);

const PRELUDE: &str = include_str!("prelude.lua");

/// What the store tells the signaling shell, in the order it happened.
#[derive(Debug)]
pub enum Inbound {
    /// A frame from this node's inbox ([`super::parse`]).
    Frame(String),
    /// A message from `sender` was not delivered: the store is out of reach, or no node
    /// listens for its addressee (its node died and is not reaped yet).
    Undelivered { sender: ConnId, why: &'static str },
    /// The store is reachable again, or lost this node's entries: resync
    /// ([`Store::resync`]), then [`Store::set_up`].
    Resync,
}

/// Why the store could not answer.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Redis is out of reach (or answered too late); the node retries in the background.
    #[error("the cluster store is unreachable")]
    Unreachable,
    /// Redis answered something the scripts never return (another program's keys?).
    #[error("the cluster store gave an unexpected answer ({0})")]
    Unexpected(&'static str),
    #[error("the cluster store refused a command: {0}")]
    Redis(#[from] RedisError),
}

/// The store's answer to a resync: its change number, the peers a live node holds under this
/// node's ids (to be closed here), and every room this node has peers in.
#[derive(Debug, Default, PartialEq)]
pub struct Resynced {
    pub seq: u64,
    pub conflicts: Vec<(String, String)>,
    pub rooms: Vec<(String, Vec<(String, String)>)>,
}

struct Scripts {
    join: Script,
    leave: Script,
    renew: Script,
    reap: Script,
    resync: Script,
}

impl Scripts {
    fn new() -> Self {
        let s = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Scripts {
            join: s(include_str!("join.lua")),
            leave: s(include_str!("leave.lua")),
            renew: s(include_str!("renew.lua")),
            reap: s(include_str!("reap.lua")),
            resync: s(include_str!("resync.lua")),
        }
    }

    fn all(&self) -> [&Script; 5] {
        [
            &self.join,
            &self.leave,
            &self.renew,
            &self.reap,
            &self.resync,
        ]
    }
}

enum Job {
    Message {
        sender: ConnId,
        node: Arc<str>,
        frame: String,
    },
    Left {
        room: String,
        peer: String,
    },
}

/// One node's link to the cluster store.
pub struct Store {
    node: String,
    lease: Duration,
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    up: AtomicBool,
    up_tx: watch::Sender<bool>,
    /// A leave could not be queued or sent: the store may still hold a peer that has gone,
    /// so the next lease renewal asks the shell to resync.
    leave_lost: AtomicBool,
    jobs: mpsc::Sender<Job>,
    scripts: Scripts,
}

/// The receiving ends [`Store::run`] consumes.
pub struct StoreTasks {
    jobs: mpsc::Receiver<Job>,
}

impl Store {
    /// A store for node `node` at `url` (`redis://HOST:PORT[/DB]`); nothing connects until
    /// [`Store::run`]. `lease`: how long this node counts as alive without renewing.
    pub fn new(
        url: &str,
        node: &str,
        lease: Duration,
    ) -> Result<(Arc<Store>, StoreTasks), StoreError> {
        use redis::IntoConnectionInfo;
        // Nagle off: a node publishes an answer and its candidates back to back, and each
        // would otherwise wait for Redis to acknowledge the one before.
        let info = url
            .into_connection_info()?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info)?;
        let (jobs, rx) = mpsc::channel(JOB_QUEUE);
        let (up_tx, _) = watch::channel(false);
        Ok((
            Arc::new(Store {
                node: node.to_owned(),
                lease,
                client,
                conn: Mutex::new(None),
                up: AtomicBool::new(false),
                up_tx,
                leave_lost: AtomicBool::new(false),
                jobs,
                scripts: Scripts::new(),
            }),
            StoreTasks { jobs: rx },
        ))
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Reachable, subscribed and resynced.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Changes of [`Store::is_up`].
    pub fn watch_up(&self) -> watch::Receiver<bool> {
        self.up_tx.subscribe()
    }

    /// Called by the shell once a resync succeeded (`true`); by the store when Redis is lost.
    pub fn set_up(&self, up: bool) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            if up {
                info!(node = %self.node, "cluster store reachable: cross-node rooms on");
            } else {
                warn!(node = %self.node, "cluster store unreachable: only rooms whose peers are all here go on");
            }
            self.up_tx.send_replace(up);
        }
    }

    /// How long a command may take before Redis counts as out of reach.
    fn patience(&self) -> Duration {
        (self.lease / 2).clamp(Duration::from_millis(200), Duration::from_secs(2))
    }

    /// Connected to Redis (perhaps not resynced yet).
    pub fn has_connection(&self) -> bool {
        self.conn.lock().expect("store conn lock").is_some()
    }

    fn connection(&self) -> Result<MultiplexedConnection, StoreError> {
        self.conn
            .lock()
            .expect("store conn lock")
            .clone()
            .ok_or(StoreError::Unreachable)
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.patience(), f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => {
                debug!(error = %e, "cluster store command failed");
                Err(StoreError::Unreachable)
            }
            Ok(Err(e)) => Err(StoreError::Redis(e)),
            Err(_) => Err(StoreError::Unreachable),
        }
    }

    /// Asks the store to seat `peer` in `room` on this node, within `limits` cluster-wide.
    pub async fn join(
        &self,
        room: &str,
        peer: &str,
        limits: RoomLimits,
    ) -> Result<JoinVerdict, StoreError> {
        let mut conn = self.connection()?;
        let mut call = self.scripts.join.prepare_invoke();
        call.arg(room)
            .arg(peer)
            .arg(&self.node)
            .arg(limits.peers_per_room)
            .arg(limits.rooms);
        let v: Vec<Value> = self.bounded(call.invoke_async(&mut conn)).await?;
        join_verdict(&v, limits)
    }

    /// Makes the store hold exactly `members` (room, peer) for this node; `seen` is the highest
    /// change number this node applied (the store's counter never goes below it).
    pub async fn resync(
        &self,
        seen: u64,
        members: &[(String, String)],
    ) -> Result<Resynced, StoreError> {
        let mut conn = self.connection()?;
        let mut call = self.scripts.resync.prepare_invoke();
        call.arg(&self.node).arg(seen);
        for (room, peer) in members {
            call.arg(room).arg(peer);
        }
        let v: Value = self.bounded(call.invoke_async(&mut conn)).await?;
        resynced(v)
    }

    /// Queues `op` for the publisher. A message that cannot be queued (the store is down, or
    /// the queue is full) comes back as its sender, to be told.
    pub fn submit(&self, op: ClusterOp) -> Result<(), ConnId> {
        let job = match op {
            ClusterOp::Message {
                sender,
                node,
                room,
                to,
                text,
            } => {
                if !self.is_up() {
                    return Err(sender);
                }
                Job::Message {
                    sender,
                    node,
                    frame: super::message(&room, &to, &text),
                }
            }
            // Queued even while down: sent if Redis comes back before the resync, which would
            // settle it anyway.
            ClusterOp::Left { room, peer } => Job::Left { room, peer },
        };
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(Job::Message { sender, .. }))
            | Err(mpsc::error::TrySendError::Closed(Job::Message { sender, .. })) => Err(sender),
            Err(_) => {
                debug!("cluster job queue full: the leave is settled by a resync");
                self.leave_lost.store(true, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// Runs the store's tasks until `shutdown` fires: the connection supervisor (lease, reaper,
    /// subscription) and the publisher. Events for the shell go to `inbound`.
    pub fn run(
        self: &Arc<Self>,
        tasks: StoreTasks,
        inbound: mpsc::Sender<Inbound>,
        shutdown: watch::Receiver<bool>,
    ) {
        tokio::spawn(Arc::clone(self).supervise(inbound.clone(), shutdown));
        tokio::spawn(Arc::clone(self).publish(tasks.jobs, inbound));
    }

    /// Leaves the cluster at once (a clean stop): the lease ends and this node's peers leave
    /// their rooms, announced to the other nodes, instead of waiting for the reaper.
    pub async fn leave_cluster(&self) {
        let Ok(mut conn) = self.connection() else {
            return;
        };
        let alive = format!("{PREFIX}alive:{}", self.node);
        let mut call = self.scripts.reap.prepare_invoke();
        call.arg(&self.node);
        let both = async {
            redis::cmd("DEL").arg(&alive).exec_async(&mut conn).await?;
            call.invoke_async::<i64>(&mut conn).await
        };
        match self.bounded(both).await {
            Ok(n) => info!(node = %self.node, peers = n.max(0), "left the cluster"),
            Err(e) => {
                warn!(node = %self.node, error = %e, "could not leave the cluster cleanly; the others reap this node when its lease ends")
            }
        }
    }

    async fn connect(&self) -> Result<(MultiplexedConnection, PubSub), StoreError> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.patience()))
            .set_response_timeout(Some(self.patience()));
        let mut conn = self
            .bounded(
                self.client
                    .get_multiplexed_async_connection_with_config(&cfg),
            )
            .await?;
        for s in self.scripts.all() {
            self.bounded(s.prepare_invoke().load_async(&mut conn))
                .await?;
        }
        let mut pubsub = self.bounded(self.client.get_async_pubsub()).await?;
        self.bounded(pubsub.subscribe(inbox(&self.node))).await?;
        // Registered only once subscribed: no frame for this node is published unheard.
        self.renew(&mut conn).await?;
        Ok((conn, pubsub))
    }

    /// Renews this node's lease; `true` if it had run out (the store may have reaped us).
    async fn renew(&self, conn: &mut MultiplexedConnection) -> Result<bool, StoreError> {
        let mut call = self.scripts.renew.prepare_invoke();
        call.arg(&self.node).arg(self.lease.as_millis() as u64);
        let lapsed: i64 = self.bounded(call.invoke_async(conn)).await?;
        Ok(lapsed == 1)
    }

    /// Reaps every registered node whose lease ran out.
    async fn reap_dead(&self, conn: &mut MultiplexedConnection) -> Result<(), StoreError> {
        let nodes: Vec<String> = self
            .bounded(
                redis::cmd("SMEMBERS")
                    .arg(format!("{PREFIX}nodes"))
                    .query_async(conn),
            )
            .await?;
        let others: Vec<&String> = nodes.iter().filter(|n| **n != self.node).collect();
        if others.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for n in &others {
            pipe.cmd("EXISTS").arg(format!("{PREFIX}alive:{n}"));
        }
        let alive: Vec<i64> = self.bounded(pipe.query_async(conn)).await?;
        for (n, a) in others.into_iter().zip(alive) {
            if a == 1 {
                continue;
            }
            let held: i64 = self
                .bounded(self.scripts.reap.prepare_invoke().arg(n).invoke_async(conn))
                .await?;
            if held >= 0 {
                warn!(node = %n, peers = held, "reaped a node whose lease ran out; its peers left their rooms");
            }
        }
        Ok(())
    }

    async fn supervise(
        self: Arc<Self>,
        inbound: mpsc::Sender<Inbound>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut reported = false;
        loop {
            match self.connect().await {
                Ok((conn, pubsub)) => {
                    reported = false;
                    *self.conn.lock().expect("store conn lock") = Some(conn.clone());
                    if inbound.send(Inbound::Resync).await.is_err() {
                        return;
                    }
                    tokio::select! {
                        why = self.session(conn, pubsub, &inbound) => {
                            warn!(node = %self.node, %why, "lost the cluster store; reconnecting");
                        }
                        _ = shutdown.changed() => return,
                    }
                }
                Err(e) if !reported => {
                    reported = true;
                    warn!(node = %self.node, error = %e, "cannot reach the cluster store; retrying every 0.5 s");
                }
                Err(_) => {}
            }
            self.set_up(false);
            *self.conn.lock().expect("store conn lock") = None;
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Serves one connection to Redis until it fails; says why.
    async fn session(
        &self,
        mut conn: MultiplexedConnection,
        pubsub: PubSub,
        inbound: &mpsc::Sender<Inbound>,
    ) -> String {
        let mut frames = pubsub.into_on_message();
        let mut renew = tokio::time::interval(self.lease / 3);
        let mut reap = tokio::time::interval((self.lease / 4).max(Duration::from_millis(100)));
        renew.tick().await;
        loop {
            tokio::select! {
                m = frames.next() => {
                    let Some(m) = m else { return "subscription closed".into() };
                    match m.get_payload::<String>() {
                        Ok(f) => {
                            if inbound.send(Inbound::Frame(f)).await.is_err() {
                                return "shutting down".into();
                            }
                        }
                        Err(e) => debug!(error = %e, "a frame that is not text"),
                    }
                }
                _ = renew.tick() => match self.renew(&mut conn).await {
                    Ok(true) => {
                        warn!(node = %self.node, "this node's lease had run out; resyncing");
                        self.set_up(false);
                        let _ = inbound.send(Inbound::Resync).await;
                    }
                    Ok(false) => {
                        if self.leave_lost.swap(false, Ordering::Relaxed) {
                            let _ = inbound.send(Inbound::Resync).await;
                        }
                    }
                    Err(e) => return format!("lease renewal: {e}"),
                },
                _ = reap.tick() => {
                    if let Err(e) = self.reap_dead(&mut conn).await {
                        return format!("reaper: {e}");
                    }
                }
            }
        }
    }

    async fn publish(
        self: Arc<Self>,
        mut jobs: mpsc::Receiver<Job>,
        inbound: mpsc::Sender<Inbound>,
    ) {
        let mut batch = Vec::with_capacity(BATCH);
        while jobs.recv_many(&mut batch, BATCH).await > 0 {
            let sent = match self.connection() {
                Ok(mut conn) => {
                    let mut pipe = redis::pipe();
                    for j in &batch {
                        match j {
                            Job::Message { node, frame, .. } => {
                                pipe.cmd("PUBLISH").arg(inbox(node)).arg(frame.as_str());
                            }
                            Job::Left { room, peer } => {
                                pipe.cmd("EVALSHA")
                                    .arg(self.scripts.leave.get_hash())
                                    .arg(0)
                                    .arg(room)
                                    .arg(peer)
                                    .arg(&self.node);
                            }
                        }
                    }
                    self.bounded(pipe.query_async::<Vec<Value>>(&mut conn))
                        .await
                }
                Err(e) => Err(e),
            };
            match sent {
                Ok(replies) => {
                    for (j, r) in batch.iter().zip(replies) {
                        if let (Job::Message { sender, .. }, Value::Int(0)) = (j, r) {
                            let why = "the addressee's node is not listening";
                            let _ = inbound
                                .send(Inbound::Undelivered {
                                    sender: *sender,
                                    why,
                                })
                                .await;
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, jobs = batch.len(), "cluster publish failed");
                    if matches!(e, StoreError::Unreachable) {
                        self.set_up(false);
                    }
                    for j in &batch {
                        match j {
                            Job::Message { sender, .. } => {
                                let why = "the cluster store is unreachable";
                                let undelivered = Inbound::Undelivered {
                                    sender: *sender,
                                    why,
                                };
                                let _ = inbound.send(undelivered).await;
                            }
                            Job::Left { .. } => self.leave_lost.store(true, Ordering::Relaxed),
                        }
                    }
                }
            }
            batch.clear();
        }
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

/// `peer, node, peer, node...` as pairs.
fn pairs(vs: &[Value]) -> Option<Vec<(String, String)>> {
    if vs.len() % 2 != 0 {
        return None;
    }
    vs.chunks(2)
        .map(|c| Some((text(&c[0])?, text(&c[1])?)))
        .collect()
}

/// The join script's reply as a verdict.
fn join_verdict(v: &[Value], limits: RoomLimits) -> Result<JoinVerdict, StoreError> {
    let status = v
        .first()
        .and_then(text)
        .ok_or(StoreError::Unexpected("join"))?;
    let refused = |code, message: String| Ok(JoinVerdict::Refused { code, message });
    match status.as_str() {
        "ok" => {
            let seq = v
                .get(1)
                .and_then(int)
                .ok_or(StoreError::Unexpected("join seq"))?;
            let seats = pairs(&v[2..]).ok_or(StoreError::Unexpected("join seats"))?;
            Ok(JoinVerdict::Admitted { seq, seats })
        }
        "taken" => refused(
            ErrorCode::BadPeerId,
            "this peer id is taken in this room".into(),
        ),
        "room-full" => refused(
            ErrorCode::RoomFull,
            format!("room holds at most {} peers", limits.peers_per_room),
        ),
        "server-full" => refused(
            ErrorCode::ServerFull,
            format!("the cluster holds at most {} rooms", limits.rooms),
        ),
        _ => Err(StoreError::Unexpected("join status")),
    }
}

/// The resync script's reply.
fn resynced(v: Value) -> Result<Resynced, StoreError> {
    let bad = StoreError::Unexpected("resync");
    let Value::Array(parts) = v else {
        return Err(bad);
    };
    let [seq, Value::Array(conflicts), Value::Array(snaps)] = parts.as_slice() else {
        return Err(bad);
    };
    let seq = int(seq).ok_or(StoreError::Unexpected("resync seq"))?;
    let conflicts = pairs(conflicts).ok_or(StoreError::Unexpected("resync conflicts"))?;
    if snaps.len() % 2 != 0 {
        return Err(bad);
    }
    let mut rooms = Vec::new();
    for c in snaps.chunks(2) {
        let (Some(room), Value::Array(seats)) = (text(&c[0]), &c[1]) else {
            return Err(StoreError::Unexpected("resync room"));
        };
        rooms.push((
            room,
            pairs(seats).ok_or(StoreError::Unexpected("resync seats"))?,
        ));
    }
    Ok(Resynced {
        seq,
        conflicts,
        rooms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn script_replies_table() {
        let limits = RoomLimits {
            peers_per_room: 2,
            rooms: 5,
        };
        let ok = join_verdict(
            &[b("ok"), Value::Int(9), b("a"), b("n1"), b("b"), b("n2")],
            limits,
        );
        assert_eq!(
            ok.unwrap(),
            JoinVerdict::Admitted {
                seq: 9,
                seats: vec![("a".into(), "n1".into()), ("b".into(), "n2".into())]
            }
        );
        for (status, code) in [
            ("taken", ErrorCode::BadPeerId),
            ("room-full", ErrorCode::RoomFull),
            ("server-full", ErrorCode::ServerFull),
        ] {
            match join_verdict(&[b(status)], limits).unwrap() {
                JoinVerdict::Refused { code: c, .. } => assert_eq!(c, code, "{status}"),
                v => panic!("{status}: {v:?}"),
            }
        }
        for bad in [
            vec![],
            vec![b("what")],
            vec![b("ok")],
            vec![b("ok"), Value::Int(-1)],
            vec![b("ok"), Value::Int(1), b("odd")],
        ] {
            assert!(join_verdict(&bad, limits).is_err(), "{bad:?}");
        }
        let r = resynced(Value::Array(vec![
            Value::Int(12),
            Value::Array(vec![b("r1"), b("x")]),
            Value::Array(vec![
                b("r1"),
                Value::Array(vec![b("x"), b("n9"), b("y"), b("me")]),
            ]),
        ]))
        .unwrap();
        assert_eq!(
            r,
            Resynced {
                seq: 12,
                conflicts: vec![("r1".into(), "x".into())],
                rooms: vec![(
                    "r1".into(),
                    vec![("x".into(), "n9".into()), ("y".into(), "me".into())]
                )],
            }
        );
        assert!(resynced(Value::Array(vec![Value::Int(1)])).is_err());
    }
}
