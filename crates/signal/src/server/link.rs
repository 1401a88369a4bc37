//! The shell's side of the cluster (`--cluster`): joins through the store, [`ClusterOp`]s out,
//! frames from other nodes in, the resync after the store comes back, `/healthz`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use natkit_proto::{ErrorCode, ServerMsg};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::AppState;
use crate::cluster::store::{Inbound, Store};
use crate::cluster::{self, Frame};
use crate::rooms::{ConnId, JoinContext, JoinVerdict, Out, RoomLimits, Rooms, Routed};

/// Frames and events from the store waiting for the rooms (the subscriber waits beyond this).
const INBOUND_QUEUE: usize = 16_384;

const UNAVAILABLE: &str =
    "this node cannot reach the cluster store: joins are refused until it is back; retry";

impl AppState {
    /// Starts the cluster store's tasks (no-op single-node). Call once, inside the runtime.
    pub fn start_cluster(self: &Arc<Self>) {
        let (Some(store), Some(tasks)) = (
            self.cluster.clone(),
            self.cluster_tasks.lock().expect("tasks lock").take(),
        ) else {
            return;
        };
        let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
        store.run(tasks, tx, self.shutdown.clone());
        let mut up = store.watch_up();
        let gauge = self.metrics.cluster_up.clone();
        tokio::spawn(async move {
            loop {
                gauge.set(i64::from(*up.borrow_and_update()));
                if up.changed().await.is_err() {
                    return;
                }
            }
        });
        tokio::spawn(Arc::clone(self).inbound(store, rx));
    }

    /// This node's id in the cluster, if clustered.
    pub fn cluster_node(&self) -> Option<&str> {
        self.cluster.as_deref().map(Store::node)
    }

    /// Ends this node's membership at once (a clean stop), so the other nodes need not wait
    /// for its lease to run out.
    pub async fn leave_cluster(&self) {
        if let Some(store) = &self.cluster {
            store.leave_cluster().await;
        }
    }

    /// A clustered join: local checks, the store's verdict (limits and ids cluster-wide), then
    /// the seat.
    pub(super) async fn join_clustered(
        &self,
        store: &Store,
        conn: ConnId,
        room: &str,
        requested: Option<&str>,
        ctx: JoinContext,
    ) -> Routed {
        let begun = self.rooms.lock().expect("rooms lock").begin_join(
            conn,
            room,
            requested,
            &ctx.generated_id,
        );
        let peer = match begun {
            Ok(p) => p,
            Err(refused) => return refused,
        };
        let limits = RoomLimits {
            peers_per_room: self.settings.peers_per_room,
            rooms: self.settings.max_rooms,
        };
        let verdict = if !store.is_up() {
            JoinVerdict::Refused {
                code: ErrorCode::ClusterUnavailable,
                message: UNAVAILABLE.into(),
            }
        } else {
            match store.join(room, &peer, limits).await {
                Ok(v) => v,
                Err(e) => {
                    warn!(conn, error = %e, "clustered join failed");
                    JoinVerdict::Refused {
                        code: ErrorCode::ClusterUnavailable,
                        message: UNAVAILABLE.into(),
                    }
                }
            }
        };
        let mut rooms = self.rooms.lock().expect("rooms lock");
        let mut routed = rooms.finish_join(conn, verdict, ctx);
        self.metrics.rooms.set(rooms.room_count() as i64);
        self.deliver_in_order(&rooms, std::mem::take(&mut routed.outs));
        routed
    }

    /// Hands what `rooms` queued for the cluster to the store (under the rooms lock, so that
    /// the order is the order things happened). A message that cannot go gets its sender an
    /// error in `routed`, refused. True if a message was forwarded.
    pub(super) fn send_ops(&self, rooms: &mut Rooms, routed: &mut Routed) -> bool {
        let Some(store) = &self.cluster else {
            return false;
        };
        let mut forwarded = false;
        for op in rooms.take_ops() {
            let is_message = matches!(op, crate::rooms::ClusterOp::Message { .. });
            match store.submit(op) {
                Ok(()) => forwarded |= is_message,
                Err(sender) => {
                    self.metrics.cluster_undelivered.inc();
                    routed.refused = Some(ErrorCode::ClusterUnavailable);
                    routed.outs.push(Out {
                        to: sender,
                        msg: ServerMsg::error(
                            ErrorCode::ClusterUnavailable,
                            "not delivered: the addressee is on another node and this node cannot reach the cluster store; retry",
                        ),
                    });
                }
            }
        }
        forwarded
    }

    /// Sends `text` as it is to `conn` (a message another node forwarded).
    fn deliver_text(&self, conn: ConnId, text: &str) {
        let conns = self.conns.lock().expect("conns lock");
        if let Some(c) = conns.get(&conn) {
            self.enqueue(c, text.to_owned());
        }
    }

    async fn inbound(self: Arc<Self>, store: Arc<Store>, mut rx: mpsc::Receiver<Inbound>) {
        while let Some(ev) = rx.recv().await {
            match ev {
                Inbound::Frame(f) => self.frame(&f),
                Inbound::Undelivered { sender, why } => {
                    self.metrics.cluster_undelivered.inc();
                    self.reject(
                        sender,
                        ErrorCode::ClusterUnavailable,
                        format!("not delivered: {why}; retry"),
                    );
                }
                Inbound::Resync => self.resync(&store).await,
            }
        }
    }

    fn frame(&self, f: &str) {
        let frame = match cluster::parse(f) {
            Ok(fr) => fr,
            Err(e) => {
                self.metrics
                    .cluster_frames
                    .with_label_values(&["bad"])
                    .inc();
                debug!(error = %e, "cluster frame dropped");
                return;
            }
        };
        let mut rooms = self.rooms.lock().expect("rooms lock");
        let (kind, outs) = match frame {
            Frame::Message { room, to, text } => {
                let target = rooms.local_conn(room, to);
                drop(rooms);
                match target {
                    Some(c) => self.deliver_text(c, text),
                    // Gone between the sender's view and ours: as if it had just left.
                    None => self.metrics.cluster_undelivered.inc(),
                }
                self.metrics
                    .cluster_frames
                    .with_label_values(&["message"])
                    .inc();
                return;
            }
            Frame::Joined {
                room,
                peer,
                node,
                seq,
            } => ("joined", rooms.remote_joined(room, peer, node, seq)),
            Frame::Left { room, peer, seq } => ("left", rooms.remote_left(room, peer, seq)),
        };
        self.deliver_in_order(&rooms, outs);
        drop(rooms);
        self.metrics.cluster_frames.with_label_values(&[kind]).inc();
    }

    /// Makes the store hold what this node holds, and this node's views what the store has;
    /// then the node counts as up. Peers whose id a live node took meanwhile are closed.
    async fn resync(&self, store: &Store) {
        loop {
            let (seen, members) = {
                let r = self.rooms.lock().expect("rooms lock");
                (r.max_seq(), r.local_members())
            };
            let pairs: Vec<(String, String)> = members
                .iter()
                .map(|(r, p, _)| (r.clone(), p.clone()))
                .collect();
            let res = match store.resync(seen, &pairs).await {
                Ok(r) => r,
                Err(e) => {
                    // The supervisor reconnects and asks again if the store is gone.
                    warn!(error = %e, "cluster resync failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if !store.has_connection() {
                        return;
                    }
                    continue;
                }
            };
            let mut rooms = self.rooms.lock().expect("rooms lock");
            if rooms.local_members() != members {
                // A peer came or went while the store was being told: tell it again.
                continue;
            }
            let mut outs = Vec::new();
            for (room, seats) in &res.rooms {
                outs.extend(rooms.resync_snapshot(room, res.seq, seats));
            }
            let evict: Vec<ConnId> = res
                .conflicts
                .iter()
                .filter_map(|(room, peer)| rooms.local_conn(room, peer))
                .collect();
            self.deliver_in_order(&rooms, outs);
            drop(rooms);
            for c in evict {
                self.reject(
                    c,
                    ErrorCode::BadPeerId,
                    "another node holds this peer id now (this node lost the cluster store for longer than its lease)",
                );
                if let Some(conn) = self.conns.lock().expect("conns lock").get(&c) {
                    conn.tx.evict("peer id taken over by another node", true);
                }
            }
            info!(
                node = store.node(),
                peers = members.len(),
                rooms = res.rooms.len(),
                "cluster store in step with this node"
            );
            store.set_up(true);
            return;
        }
    }
}

/// `/healthz`: `ok`; `draining` (503: a load balancer sends new clients elsewhere); or
/// `degraded: ...` (still 200: the node serves its local rooms) while a clustered node cannot
/// reach the store.
pub(super) async fn healthz(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    if st.is_draining() {
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "draining\n");
    }
    let text = match &st.cluster {
        Some(store) if !store.is_up() => {
            "degraded: cluster store unreachable; joins and cross-node messages are refused\n"
        }
        _ => "ok\n",
    };
    (axum::http::StatusCode::OK, text)
}
