//! Where peers get ICE servers from: the embedded relay and external URLs, with TURN credentials
//! minted for a TURN user ([`IceConfig::mint`]), and the check page's variant with each STUN URL's
//! alternate port ([`IceConfig::mint_for_check`]). Pure but for the clock passed in.

use natkit_proto::{IceServer, RelayEndpoints};
use natkit_stun_turn::credentials::{self, Secrets};
use tracing::warn;

/// Where peers get ICE servers from.
#[derive(Clone)]
pub struct IceConfig {
    /// The embedded relay, as clients reach it.
    pub relay: Option<RelayEndpoints>,
    /// Several natkit-relays (`relay_servers`): each room gets one of the fit ones.
    pub fleet: Option<std::sync::Arc<crate::fleet::Fleet>>,
    /// The embedded relay's RFC 5780 alternate port (same IP).
    pub relay_alt_port: Option<u16>,
    /// A dual-stack embedded relay's other address family (IPv6 beside IPv4), with its alternate
    /// port: peers get URLs for each family.
    pub relay_second: Option<(RelayEndpoints, u16)>,
    /// Extra URLs (external relays: TURN URLs get credentials from `secrets`).
    pub urls: Vec<String>,
    pub secrets: Secrets,
    pub ttl: u64,
}

impl IceConfig {
    /// Fresh ICE servers for `user`: the `iceServers` array of an RTCConfiguration.
    /// Callers pass validated ids ([`crate::rooms::valid_name`]); anything else gets no servers.
    pub fn mint(&self, user: &str, now: u64) -> Vec<IceServer> {
        let cred = match credentials::mint(self.secrets.current(), user, self.ttl, now) {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot mint ICE credentials");
                return Vec::new();
            }
        };
        let mut servers = Vec::new();
        if let Some(relay) = &self.relay {
            servers.push(cred.ice_server(relay));
        }
        if let Some((relay, _)) = &self.relay_second {
            servers.push(cred.ice_server(relay));
        }
        // The room is the TURN user's first part (`ROOM/PEER`): both peers get the same relay.
        let room = user.split('/').next().unwrap_or(user);
        if let Some(relay) = self.fleet.as_ref().and_then(|f| f.relay_for(room)) {
            servers.push(cred.ice_server(&relay));
        }
        let (turn, stun): (Vec<String>, Vec<String>) = self
            .urls
            .iter()
            .cloned()
            .partition(|u| u.starts_with("turn"));
        if !stun.is_empty() {
            servers.push(IceServer {
                urls: stun,
                username: None,
                credential: None,
            });
        }
        if !turn.is_empty() {
            servers.push(IceServer {
                urls: turn,
                username: Some(cred.username.clone()),
                credential: Some(cred.password.clone()),
            });
        }
        servers
    }
}

impl IceConfig {
    /// The servers for the network check page: [`IceConfig::mint`]'s, with each `stun:HOST:PORT`
    /// joined by the same host's alternate port (the embedded relay's, else `PORT + 1`, natkit's
    /// and coturn's convention), so a browser sees whether its mapping changes between the two.
    pub fn mint_for_check(&self, user: &str, now: u64) -> Vec<IceServer> {
        let mut servers = self.mint(user, now);
        for s in &mut servers {
            let mut extra = Vec::new();
            for u in &s.urls {
                let Some(rest) = u.strip_prefix("stun:") else {
                    continue;
                };
                let hostport = rest.split('?').next().unwrap_or(rest);
                let Some((host, port)) = hostport.rsplit_once(':') else {
                    continue;
                };
                let Ok(port) = port.parse::<u16>() else {
                    continue;
                };
                let is = |r: &RelayEndpoints| {
                    r.host.trim_matches(['[', ']']) == host.trim_matches(['[', ']'])
                        && r.port == port
                };
                let alt = match (&self.relay, &self.relay_second) {
                    (Some(r), _) if is(r) && self.relay_alt_port.is_some() => self.relay_alt_port,
                    (_, Some((r, alt))) if is(r) => Some(*alt),
                    _ => port.checked_add(1),
                };
                if let Some(alt) = alt.filter(|a| *a != port) {
                    extra.push(format!("stun:{host}:{alt}"));
                }
            }
            for e in extra {
                if !s.urls.contains(&e) {
                    s.urls.insert(1, e);
                }
            }
        }
        servers
    }

    /// [`IceConfig::mint_for_check`]'s `stun:` URLs for `user` alone, without a credential:
    /// what a probe needs while UDP gets out (it asks for TURN only when no mapping came back).
    /// `user` picks the fleet relay, as it does for credentials.
    pub fn stun_for_check(&self, user: &str, now: u64) -> Vec<IceServer> {
        // The credential is computed on the way (one HMAC) and never handed out.
        self.mint_for_check(user, now)
            .into_iter()
            .map(|s| s.urls.into_iter().filter(|u| u.starts_with("stun:")))
            .map(|urls| IceServer {
                urls: urls.collect(),
                username: None,
                credential: None,
            })
            .filter(|s| !s.urls.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use natkit_stun_turn::credentials::{candidate_passwords, Secret};
    use serde_json::json;

    #[test]
    fn ice_servers_for_embedded_and_external_relays() {
        let secrets = Secrets::new(vec![Secret::new("shared").unwrap()]).unwrap();
        let external = IceConfig {
            relay: None,
            fleet: None,
            relay_alt_port: None,
            relay_second: None,
            urls: vec![
                "stun:stun.example.org:3478".into(),
                "turn:relay.example.org:3478".into(),
                "turns:relay.example.org:5349".into(),
            ],
            secrets: secrets.clone(),
            ttl: 600,
        };
        let v = serde_json::to_value(external.mint("peer1", 1000)).unwrap();
        assert_eq!(v[0], json!({"urls": ["stun:stun.example.org:3478"]}));
        assert_eq!(
            v[1]["urls"],
            json!([
                "turn:relay.example.org:3478",
                "turns:relay.example.org:5349"
            ])
        );
        assert_eq!(v[1]["username"], "1600:peer1");
        let password = v[1]["credential"].as_str().unwrap();
        assert!(
            candidate_passwords(&secrets, "1600:peer1").any(|p| p == password),
            "the relay sharing the secret accepts it"
        );

        let embedded = IceConfig {
            relay: Some(RelayEndpoints::udp("203.0.113.5", 3478)),
            fleet: None,
            relay_alt_port: Some(3479),
            relay_second: None,
            urls: vec![],
            secrets,
            ttl: 60,
        };
        let v = serde_json::to_value(embedded.mint("p", 0)).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1);
        assert_eq!(
            v[0]["urls"],
            json!([
                "stun:203.0.113.5:3478",
                "turn:203.0.113.5:3478?transport=udp"
            ])
        );
        assert_eq!(v[0]["username"], "60:p");

        // The check page's servers: each STUN URL joined by its alternate port.
        let v = serde_json::to_value(embedded.mint_for_check("p", 0)).unwrap();
        assert_eq!(
            v[0]["urls"],
            json!([
                "stun:203.0.113.5:3478",
                "stun:203.0.113.5:3479",
                "turn:203.0.113.5:3478?transport=udp"
            ])
        );
        let odd = IceConfig {
            relay_alt_port: Some(4000),
            relay_second: None,
            ..embedded.clone()
        };
        let v = serde_json::to_value(odd.mint_for_check("p", 0)).unwrap();
        assert_eq!(v[0]["urls"][1], "stun:203.0.113.5:4000");
        let v = serde_json::to_value(external.mint_for_check("p", 0)).unwrap();
        assert_eq!(
            v[0]["urls"],
            json!(["stun:stun.example.org:3478", "stun:stun.example.org:3479"])
        );

        // A dual-stack relay: URLs for each family, the IPv6 literal bracketed, each STUN URL
        // on the check page with its own family's alternate port.
        let mut v6 = RelayEndpoints::udp("2001:db8::5", 3478);
        v6.tcp = true;
        let dual = IceConfig {
            relay_second: Some((v6, 3481)),
            ..embedded.clone()
        };
        let v = serde_json::to_value(dual.mint("p", 0)).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(
            v[1]["urls"],
            json!([
                "stun:[2001:db8::5]:3478",
                "turn:[2001:db8::5]:3478?transport=udp",
                "turn:[2001:db8::5]:3478?transport=tcp"
            ])
        );
        assert_eq!(v[1]["username"], v[0]["username"]);
        let v = serde_json::to_value(dual.mint_for_check("p", 0)).unwrap();
        assert_eq!(v[0]["urls"][1], "stun:203.0.113.5:3479");
        assert_eq!(v[1]["urls"][1], "stun:[2001:db8::5]:3481");
    }
}
