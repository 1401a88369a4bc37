//! The node's shared state: connections, rooms, admission, revocations, metrics, and the
//! cluster store; delivering routed messages to the connections' queues.

use super::*;

/// One connection's outgoing side (its queue, and the switch that closes it when the queue is
/// full) and what its join established.
pub(super) struct Conn {
    /// Its outgoing queue, which also closes it (code 1013) when evicted.
    pub(super) tx: Arc<Outbox>,
    pub(super) ip: IpAddr,
    /// The join token this connection joined with (`refresh` honours it).
    pub(super) token: Option<Grant>,
}

pub struct AppState {
    pub(super) settings: SignalConfig,
    /// What admission, rate limits and credentials read the time from.
    pub(super) clock: Clock,
    pub(super) ice: IceConfig,
    pub(super) rooms: Mutex<Rooms>,
    pub(super) conns: Mutex<HashMap<ConnId, Conn>>,
    pub(super) next_conn: AtomicU64,
    pub(super) conn_slots: Arc<Semaphore>,
    pub(super) ip_slots: Arc<IpSlots>,
    /// Who may join and take credentials (the credential limits are its state).
    pub(super) admission: Mutex<Admission>,
    /// Revoked users and tokens, re-read from the file at most once a second.
    pub(super) revoked: Mutex<(Revocations, Option<RevocationFile>, Option<Instant>)>,
    pub(super) registry: Registry,
    pub metrics: SignalMetrics,
    pub(super) shutdown: watch::Receiver<bool>,
    /// The cluster store, when rooms are shared with other nodes (`--cluster`).
    pub(super) cluster: Option<Arc<Store>>,
    /// Ticks every `ping_interval` ([`serve`] drives it): one timer for every connection's pings
    /// and idle check, instead of one per connection.
    pub(super) ping_tick: watch::Sender<u64>,
    /// Set once this node drains ([`AppState::start_drain`]).
    pub(super) draining: watch::Sender<bool>,
    /// The store's receiving ends, until [`AppState::start_cluster`] takes them.
    pub(super) cluster_tasks: Mutex<Option<crate::cluster::store::StoreTasks>>,
}

/// A fresh peer id for a join that asks for none.
pub(super) fn peer_id() -> String {
    crate::rooms::random_name(10)
}

impl AppState {
    /// `registry` gets the signal metrics (share the relay's to serve one page).
    pub fn new(
        settings: SignalConfig,
        ice: IceConfig,
        registry: Registry,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        Self::with_clock(settings, ice, registry, shutdown, Clock::system())
    }

    /// [`AppState::new`] on `clock` (tests move a manual clock instead of sleeping).
    pub fn with_clock(
        settings: SignalConfig,
        ice: IceConfig,
        registry: Registry,
        shutdown: watch::Receiver<bool>,
        clock: Clock,
    ) -> Arc<Self> {
        let metrics = SignalMetrics::new(&registry);
        let (cluster, cluster_tasks) = match &settings.cluster {
            Some(c) => {
                let node = crate::cluster::node_id();
                let (store, tasks) =
                    Store::new(&c.url, &node, c.lease).expect("the URL was validated");
                (Some(store), Some(tasks))
            }
            None => (None, None),
        };
        let rooms = match &cluster {
            Some(store) => Rooms::clustered(store.node()),
            None => Rooms::new(RoomLimits {
                peers_per_room: settings.peers_per_room,
                rooms: settings.max_rooms,
            }),
        };
        Arc::new(AppState {
            rooms: Mutex::new(rooms),
            clock,
            cluster,
            cluster_tasks: Mutex::new(cluster_tasks),
            draining: watch::channel(false).0,
            ping_tick: watch::channel(0).0,
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            conn_slots: Arc::new(Semaphore::new(settings.max_connections)),
            ip_slots: IpSlots::new(settings.max_connections_per_ip),
            admission: Mutex::new(Admission::new(settings.credentials_per_minute)),
            revoked: Mutex::new((Revocations::default(), None, None)),
            settings,
            ice,
            registry,
            metrics,
            shutdown,
        })
    }

    /// Queues what the rooms decided while their lock is still held (`_rooms` proves it), so
    /// that every connection gets its messages in the order the rooms decided them: a joiner's
    /// `welcome` before a leave that another task processed just after the join.
    pub(super) fn deliver_in_order(&self, _rooms: &MutexGuard<'_, Rooms>, outs: Vec<Out>) {
        self.deliver(outs);
    }

    /// Queues messages that no room decided (answers to the sender alone).
    pub(super) fn deliver(&self, outs: Vec<Out>) {
        if outs.is_empty() {
            return;
        }
        let conns = self.conns.lock().expect("conns lock");
        for o in outs {
            let Some(c) = conns.get(&o.to) else { continue };
            self.enqueue(c, o.msg.to_text());
        }
    }

    /// Queues `text` for `c`; a full queue closes the connection rather than leave it with a
    /// gap (the client reconnects and rejoins).
    pub(super) fn enqueue(&self, c: &Conn, text: String) {
        if c.tx.try_send(Message::Text(text.into())).is_err()
            && c.tx.evict("too slow: outgoing queue full", false)
        {
            self.metrics.reject(Rejection::SlowConsumer);
        }
    }

    /// Refuses the users and tokens listed in `file` (the relay's `revoked_file`: one file for
    /// both), re-read when it changes.
    pub fn watch_revocations(&self, file: &std::path::Path) {
        let mut g = self.revoked.lock().expect("revoked lock");
        (g.1, g.2) = (Some(RevocationFile::new(file)), None);
    }

    /// Runs one admission step with what this node knows now: the clock, whether it drains,
    /// the token secret and the revocation file (re-read when it changed, at most once a second).
    pub(super) fn admit<T>(&self, step: impl FnOnce(&mut Admission, Gate<'_>) -> T) -> T {
        let mut g = self.revoked.lock().expect("revoked lock");
        let (revs, file, checked) = &mut *g;
        let now = self.clock.now();
        if let Some(f) = file {
            if checked.is_none_or(|t| now.duration_since(t) >= std::time::Duration::from_secs(1)) {
                *checked = Some(now);
                match f.reload() {
                    Ok(Some(r)) => *revs = r,
                    Ok(None) => {}
                    Err(e) => {
                        warn!(error = %e, "revocation file not reloaded; the previous entries stay")
                    }
                }
            }
        }
        let gate = Gate {
            unix: self.clock.unix(),
            now,
            draining: self.is_draining(),
            tokens: self.settings.token.as_ref(),
            revocations: revs,
        };
        step(&mut self.admission.lock().expect("admission lock"), gate)
    }

    /// Counts a refusal's credential limit, if it hit one.
    pub(super) fn count_refusal(&self, r: &Refusal) {
        if let Some(limit) = r.limit {
            self.metrics
                .credentials_refused
                .with_label_values(&[limit.as_str()])
                .inc();
        }
    }

    /// Answers a refused request on the WebSocket.
    pub(super) fn refuse(&self, conn: ConnId, r: Refusal) {
        self.count_refusal(&r);
        self.reject(conn, r.code, r.message);
    }

    pub(super) fn reject(&self, conn: ConnId, code: ErrorCode, message: impl Into<String>) {
        self.metrics.reject(Rejection::Refused(code));
        self.deliver(vec![Out {
            to: conn,
            msg: ServerMsg::error(code, message),
        }]);
    }

    pub(super) fn disconnect(&self, conn: ConnId) {
        self.conns.lock().expect("conns lock").remove(&conn);
        let mut rooms = self.rooms.lock().expect("rooms lock");
        let mut routed = Routed::send(rooms.leave(conn));
        self.send_ops(&mut rooms, &mut routed);
        self.metrics.rooms.set(rooms.room_count() as i64);
        self.deliver_in_order(&rooms, routed.outs);
    }
}
