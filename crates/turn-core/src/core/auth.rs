//! Authentication (the long-term credential mechanism with TURN REST usernames, RFC 8489
//! section 9.2.4) and the unauthenticated Binding answers (RFC 8489 section 10, RFC 5780).

use std::net::SocketAddr;

use natkit_proto::Redacted;
use stun::attributes::*;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use stun::uattrs::UnknownAttributes;
use stun::xoraddr::XorMappedAddress;
use tracing::debug;

use super::{printable, FiveTuple, Output, RelayCore, MAX_USERNAME_BYTES};
use crate::credentials;
use crate::error::CredentialError;
use crate::family::Family;
use crate::nonce::NonceCheck;
use crate::observe::{AuthFailure, Event};
use crate::rfc5780::{self, ChangeRequest, PlanError, Slot};
use crate::wire;

pub(super) const SOFTWARE: &str = concat!("natkit-relay ", env!("CARGO_PKG_VERSION"));

/// Who signed a request, and the key its answer is signed with.
pub(super) struct Authed {
    pub username: String,
    pub user: String,
    pub key: Vec<u8>,
}

impl<S: Clone> RelayCore<S> {
    /// A Binding request. Over UDP, CHANGE-REQUEST picks the answering socket (RFC 5780); a
    /// stream connection has one socket, so a change it asks for gets 420 as from a server that
    /// cannot honour it, and the answer names no OTHER-ADDRESS.
    pub(super) fn handle_binding(&self, slot: Slot, five: FiveTuple, m: &Message) -> Output<S> {
        self.observe(Event::Binding);
        let src = five.client;
        let reply = |from, bytes| Output::Reply { from, bytes };
        let change = match m.get(ATTR_CHANGE_REQUEST) {
            Ok(v) => match ChangeRequest::parse(&v) {
                Some(c) => c,
                None => return reply(slot, wire::error(m, 400, vec![])),
            },
            Err(_) => ChangeRequest::default(),
        };
        let unable = || {
            wire::error(
                m,
                420,
                vec![Box::new(UnknownAttributes(vec![ATTR_CHANGE_REQUEST]))],
            )
        };
        let (from, origin, other) = if five.transport.is_stream() {
            if change.change_ip || change.change_port {
                return reply(slot, unable());
            }
            (slot, five.server, None)
        } else {
            // RFC 5780 within the client's family: its sockets, its alternate IP if it has one.
            let family = Family::of(src.ip());
            let origin_of = |s: Slot| self.cfg.origins.get(&(family, s)).copied();
            let have_alt_ip = origin_of(Slot::ALT_IP).is_some();
            let plan = match rfc5780::plan(slot, change, have_alt_ip) {
                Ok(p) => p,
                Err(PlanError::NoAlternateIp) => return reply(slot, unable()),
            };
            let Some(origin) = origin_of(plan.respond_from) else {
                return reply(slot, wire::error(m, 500, vec![]));
            };
            let other = plan.other_address.and_then(origin_of);
            (plan.respond_from, origin, other)
        };
        let mut attrs: Vec<Box<dyn Setter>> = vec![
            Box::new(XorMappedAddress {
                ip: src.ip(),
                port: src.port(),
            }),
            Box::new(wire::MappedAddressAs(src, ATTR_MAPPED_ADDRESS)),
            Box::new(wire::MappedAddressAs(origin, ATTR_RESPONSE_ORIGIN)),
        ];
        if let Some(other) = other {
            attrs.push(Box::new(wire::MappedAddressAs(other, ATTR_OTHER_ADDRESS)));
        }
        // No SOFTWARE: an answer anyone can ask for carries nothing it does not need.
        reply(from, wire::respond(m, CLASS_SUCCESS_RESPONSE, attrs))
    }

    fn challenge(&self, m: &Message, code: u16, src: SocketAddr, unix: u64) -> Vec<u8> {
        wire::error(
            m,
            code,
            vec![
                Box::new(TextAttribute::new(ATTR_REALM, self.cfg.realm.clone())),
                Box::new(TextAttribute::new(
                    ATTR_NONCE,
                    self.nonce_key.issue(src, unix),
                )),
            ],
        )
    }

    fn auth_failed(&self, reason: AuthFailure) {
        self.observe(Event::AuthFailed(reason));
    }

    /// The long-term credential mechanism (RFC 8489 section 9.2.4) with TURN REST API usernames.
    pub(super) fn authenticate(
        &self,
        m: &mut Message,
        src: SocketAddr,
        unix: u64,
    ) -> Result<Authed, Vec<u8>> {
        if !m.contains(ATTR_MESSAGE_INTEGRITY) {
            return Err(self.challenge(m, 401, src, unix));
        }
        let text = |t| TextAttribute::get_from_as(m, t).map(|a| a.text);
        let (Ok(username), Ok(realm), Ok(nonce)) =
            (text(ATTR_USERNAME), text(ATTR_REALM), text(ATTR_NONCE))
        else {
            self.auth_failed(AuthFailure::MissingAttribute);
            return Err(wire::error(m, 400, vec![]));
        };
        if username.len() > MAX_USERNAME_BYTES {
            self.auth_failed(AuthFailure::MalformedUsername);
            debug!(src = %Redacted(src), bytes = username.len(), "400 username too long");
            return Err(wire::error(m, 400, vec![]));
        }
        // The key is derived with our realm; a request naming another one is challenged again
        // with ours rather than accepted because the key happened to match.
        if realm != self.cfg.realm {
            self.auth_failed(AuthFailure::WrongRealm);
            debug!(src = %Redacted(src), realm = %printable(&realm), "401 wrong realm");
            return Err(self.challenge(m, 401, src, unix));
        }
        if self.nonce_key.verify(&nonce, src, unix) != NonceCheck::Valid {
            self.auth_failed(AuthFailure::StaleNonce);
            return Err(self.challenge(m, 438, src, unix));
        }
        let user = match credentials::check_username(&username, unix) {
            Ok(v) if self.revoked.is_user_revoked(v.user_id) => {
                self.auth_failed(AuthFailure::Revoked);
                debug!(src = %Redacted(src), user = %printable(v.user_id), "401 revoked user");
                return Err(self.challenge(m, 401, src, unix));
            }
            Ok(v) => v.user_id.to_owned(),
            Err(e) => {
                let reason = match e {
                    CredentialError::Expired { .. } => AuthFailure::Expired,
                    _ => AuthFailure::MalformedUsername,
                };
                self.auth_failed(reason);
                debug!(src = %Redacted(src), error = %e, "401");
                return Err(self.challenge(m, 401, src, unix));
            }
        };
        let passwords: Vec<String> =
            credentials::candidate_passwords(&self.cfg.secrets, &username).collect();
        for password in passwords {
            let mi = MessageIntegrity::new_long_term_integrity(
                username.clone(),
                self.cfg.realm.clone(),
                password,
            );
            if mi.check(m).is_ok() {
                let user = if user.is_empty() {
                    username.clone()
                } else {
                    user
                };
                return Ok(Authed {
                    username,
                    user,
                    key: mi.0,
                });
            }
        }
        self.auth_failed(AuthFailure::BadIntegrity);
        debug!(src = %Redacted(src), username = %printable(&username), "401 bad message integrity");
        Err(self.challenge(m, 401, src, unix))
    }

    /// Authenticates a request on an existing allocation (Refresh, CreatePermission,
    /// ChannelBind); returns the signing key.
    pub(super) fn authenticate_on_allocation(
        &self,
        m: &mut Message,
        five: &FiveTuple,
        unix: u64,
    ) -> Result<Vec<u8>, Vec<u8>> {
        let auth = self.authenticate(m, five.client, unix)?;
        let Some(a) = self.allocations.get(five) else {
            return Err(wire::error(m, 437, vec![]));
        };
        // RFC 8656 wants the allocation's username on every later request. With REST API
        // credentials the username is "expiry:user", so a renewed credential for the same user
        // differs only in its expiry: accepting it lets a client rotate credentials on a live
        // allocation (webrtc-rs does so on set_configuration) instead of re-allocating.
        if a.user != auth.user {
            self.auth_failed(AuthFailure::WrongCredentials);
            return Err(wire::error(m, 441, vec![]));
        }
        Ok(auth.key)
    }

    /// A signed success response.
    pub(super) fn success(
        &self,
        m: &Message,
        mut attrs: Vec<Box<dyn Setter>>,
        key: Vec<u8>,
    ) -> Vec<u8> {
        attrs.push(Box::new(TextAttribute::new(
            ATTR_SOFTWARE,
            SOFTWARE.to_owned(),
        )));
        attrs.push(Box::new(MessageIntegrity(key)));
        wire::respond(m, CLASS_SUCCESS_RESPONSE, attrs)
    }
}
