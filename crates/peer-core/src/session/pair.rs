//! The pair's path: this side's probe result, the NAT summaries exchanged, and the ICE policy
//! decided from both (or from this side alone) with [`crate::policy::decide`].

use std::time::Instant;

use natkit_proto::{ClientMsg, IceServer, NatSummary, Welcome};

use super::{
    Action, Negotiation, Remote, Session, SignalingState, DIRECT_DEADLINE, MAX_SUMMARY_TARGETS,
    SUMMARY_WAIT,
};
use crate::events::Event;
use crate::policy::{decide, usable_servers, RelayMode, Role};

impl Session {
    /// The probe asked for by [`Action::Probe`] ended: this side's NAT summary, or `None` when
    /// it failed (the session goes on without one).
    pub fn handle_probe(&mut self, now: Instant, nat: Option<NatSummary>) {
        let Some(welcome) = self.probing.take() else {
            return;
        };
        self.local_nat = nat.map(|n| NatSummary {
            families: self.cfg.families.clone(),
            ..n
        });
        self.servers = usable_servers(
            &welcome.ice_servers,
            self.cfg.relay,
            self.local_nat.as_ref(),
        );
        self.renews = self.cfg.renew && self.servers.iter().any(IceServer::has_turn);
        self.start(&welcome, now);
    }

    /// The side that joins a room where others already are sends the offer, once it has told
    /// the other its NAT and heard back (or waited long enough).
    pub(super) fn start(&mut self, welcome: &Welcome, now: Instant) {
        if let Some(first) = welcome.peers.first() {
            self.remote = Some(Remote {
                id: first.clone(),
                gone_since: None,
            });
            self.send_summary(first.clone());
            if self.cfg.relay == RelayMode::Auto && self.local_nat.is_some() {
                self.decide_by = Some(now + SUMMARY_WAIT);
            } else {
                self.decide_policy(now);
            }
        }
    }

    /// Tells `to` our NAT summary (once per peer; nothing when we did not probe).
    pub(super) fn send_summary(&mut self, to: String) {
        let Some(nat) = self.local_nat.clone() else {
            return;
        };
        if self.signaling != SignalingState::Up
            || self.summary_sent_to.contains(&to)
            || self.summary_sent_to.len() >= MAX_SUMMARY_TARGETS
        {
            return;
        }
        self.summary_sent_to.push(to.clone());
        self.push(Action::Signal(ClientMsg::NatSummary { to, nat }));
    }

    /// Decides the ICE policy from both summaries (or ours alone), creates the peer connection,
    /// and, on the offering side, offers.
    pub(super) fn decide_policy(&mut self, now: Instant) {
        if self.policy.is_some() {
            return;
        }
        let remote_id = self.remote.as_ref().map(|r| r.id.clone());
        let remote_nat = self
            .remote_nat
            .as_ref()
            .filter(|(from, _)| Some(from) == remote_id.as_ref())
            .map(|(_, n)| n.clone());
        // Decided before any offer: in glare (both offered at once) both sides decided as
        // offerers, relay neither and still have TURN pairs to fall back on.
        let role = if self.offerer {
            Role::Offerer
        } else {
            Role::Answerer
        };
        let policy = decide(
            self.cfg.relay,
            role,
            self.local_nat.as_ref(),
            remote_nat.as_ref(),
        );
        self.decide_by = None;
        self.push(Action::Configure {
            servers: self.servers.clone(),
            relay_only: policy.relay_only,
            direct_expected: policy.direct_expected(),
        });
        self.push(Action::Emit(Event::Policy {
            ice_transport_policy: if policy.relay_only { "relay" } else { "all" },
            rule: policy.rule.as_str(),
            reason: policy.reason.clone(),
            local_nat: self.local_nat.clone(),
            remote_nat,
        }));
        let has_turn = self.servers.iter().any(IceServer::has_turn);
        if !policy.relay_only && self.cfg.relay == RelayMode::Auto && has_turn {
            self.direct_deadline = Some(now + DIRECT_DEADLINE);
        }
        self.policy = Some(policy);
        if self.offerer && self.negotiation == Negotiation::Idle {
            self.push(Action::CreateDataChannel);
            self.push(Action::CreateOffer { ice_restart: false });
            self.negotiation = Negotiation::OfferPending;
        }
    }
}
