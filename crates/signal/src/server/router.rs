//! The router: one text frame of a connection, parsed and carried out. Joins and `refresh` go
//! through the admission step ([`crate::admission`]), everything else through the rooms
//! ([`crate::rooms`]); what they decide is delivered and counted.

use super::*;

impl AppState {
    pub(super) async fn handle_text(&self, conn: ConnId, text: &str, url_token: Option<&str>) {
        let ip = match self.conns.lock().expect("conns lock").get(&conn) {
            Some(c) => c.ip,
            None => return,
        };
        let msg = match ClientMsg::parse(text) {
            Ok(m) => m,
            Err(e) => return self.reject(conn, e.code, e.message),
        };
        let routed = match msg {
            ClientMsg::Join {
                room,
                peer_id: requested,
                token,
                version: _,
            } => {
                let token = token.as_ref().map(|t| t.expose()).or(url_token);
                let generated = peer_id();
                let id = requested.clone().unwrap_or_else(|| generated.clone());
                let admitted = match self.admit(|a, gate| a.join(gate, ip, &room, &id, token)) {
                    Ok(j) => j,
                    Err(r) => {
                        debug!(conn, code = r.code.as_str(), "join refused");
                        return self.refuse(conn, r);
                    }
                };
                let ice_servers = match &admitted.mint_for {
                    Some(user) => self.ice.mint(user, self.clock.unix()),
                    None => Vec::new(),
                };
                let ctx = JoinContext {
                    generated_id: generated,
                    ice_servers,
                    ttl: self.ice.ttl,
                };
                let routed = match &self.cluster {
                    // Boxed: the store's round trip would otherwise size every connection's
                    // task for the whole of its life (memory per peer).
                    Some(store) => {
                        Box::pin(self.join_clustered(store, conn, &room, requested.as_deref(), ctx))
                            .await
                    }
                    None => {
                        let mut rooms = self.rooms.lock().expect("rooms lock");
                        let mut routed = rooms.join(conn, &room, requested.as_deref(), ctx);
                        self.metrics.rooms.set(rooms.room_count() as i64);
                        self.deliver_in_order(&rooms, std::mem::take(&mut routed.outs));
                        routed
                    }
                };
                if routed.seated.is_some() {
                    self.metrics.credentials_issued.inc();
                    if let Some(c) = self.conns.lock().expect("conns lock").get_mut(&conn) {
                        c.token = admitted.grant;
                    }
                    info!(conn, room = %room, "peer joined");
                }
                routed
            }
            ClientMsg::Refresh => {
                let member = {
                    let rooms = self.rooms.lock().expect("rooms lock");
                    rooms
                        .room_of(conn)
                        .zip(rooms.peer_of(conn))
                        .map(|(r, p)| (r.to_owned(), p.to_owned()))
                };
                let grant = self
                    .conns
                    .lock()
                    .expect("conns lock")
                    .get(&conn)
                    .and_then(|c| c.token.clone());
                let member = member.as_ref().map(|(r, p)| (r.as_str(), p.as_str()));
                let user = match self.admit(|a, gate| a.refresh(gate, ip, member, grant.as_ref())) {
                    Ok(user) => user,
                    Err(r) => return self.refuse(conn, r),
                };
                self.metrics.credentials_issued.inc();
                Routed::send(vec![Out {
                    to: conn,
                    msg: ServerMsg::IceServers {
                        ice_servers: self.ice.mint(&user, self.clock.unix()),
                        ttl: self.ice.ttl,
                    },
                }])
            }
            other => {
                let kind = other.relayed_type();
                let mut rooms = self.rooms.lock().expect("rooms lock");
                let mut routed = rooms.route(conn, other);
                let forwarded = self.send_ops(&mut rooms, &mut routed);
                self.metrics.rooms.set(rooms.room_count() as i64);
                self.deliver_in_order(&rooms, std::mem::take(&mut routed.outs));
                drop(rooms);
                if let Some(kind) = kind {
                    if routed.relayed || forwarded {
                        self.metrics.relayed(kind);
                    }
                }
                routed
            }
        };
        if let Some(code) = routed.refused {
            self.metrics.reject(Rejection::Refused(code));
        }
        self.deliver(routed.outs);
    }
}
