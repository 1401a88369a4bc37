//! The ICE-server JSON handed to clients and the trickled candidate, as browsers spell them.
//!
//! - [`IceServer`]: one `RTCIceServer` (`{"urls":[...],"username":"...","credential":"..."}`).
//! - [`IceServers`]: the document `natkit-relay credentials` prints and `GET /v1/ice-servers`
//!   answers: `{"iceServers":[...],"ttl":N}`, usable as an `RTCConfiguration`.
//! - [`IceCandidate`]: `RTCIceCandidateInit` (`{"candidate":"...","sdpMid":"0","sdpMLineIndex":0}`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// One `RTCIceServer`. `Debug` hides the credential.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:`, `turn:` and `turns:` URLs. Browsers accept a single string too; so does this
    /// reader.
    #[serde(deserialize_with = "one_or_many")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl fmt::Debug for IceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field(
                "credential",
                &self.credential.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Urls {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Urls::deserialize(d)? {
        Urls::One(u) => vec![u],
        Urls::Many(us) => us,
    })
}

/// Does `url` name a TURN server (`turn:` or `turns:`)?
pub fn is_turn_url(url: &str) -> bool {
    url.starts_with("turn:") || url.starts_with("turns:")
}

/// How clients reach one relay: its STUN/TURN host and port, and which transports it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayEndpoints {
    /// Address or name of the UDP/TCP listener.
    pub host: String,
    pub port: u16,
    /// TURN over TCP on `port`.
    pub tcp: bool,
    /// TURN over TLS: the name its certificate covers, and the port.
    pub tls: Option<(String, u16)>,
}

impl RelayEndpoints {
    /// A relay serving UDP only.
    pub fn udp(host: &str, port: u16) -> Self {
        RelayEndpoints {
            host: host.to_owned(),
            port,
            tcp: false,
            tls: None,
        }
    }
}

/// `host` as a URL writes it: an IPv6 address in brackets.
fn url_host(host: &str) -> String {
    match host.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => format!("[{v6}]"),
        Err(_) => host.to_owned(),
    }
}

impl IceServer {
    /// STUN and TURN (UDP) URLs for a relay at `host:port` (an IPv6 host is bracketed), with the
    /// credential on the entry.
    pub fn for_relay(host: &str, port: u16, username: String, credential: String) -> IceServer {
        Self::for_endpoints(&RelayEndpoints::udp(host, port), username, credential)
    }

    /// Every URL of a relay, UDP first: `stun:`, `turn:...?transport=udp`, then
    /// `turn:...?transport=tcp` and `turns:NAME:PORT?transport=tcp` when it serves them.
    pub fn for_endpoints(ep: &RelayEndpoints, username: String, credential: String) -> IceServer {
        let (host, port) = (url_host(&ep.host), ep.port);
        let mut urls = vec![
            format!("stun:{host}:{port}"),
            format!("turn:{host}:{port}?transport=udp"),
        ];
        if ep.tcp {
            urls.push(format!("turn:{host}:{port}?transport=tcp"));
        }
        if let Some((name, tls_port)) = &ep.tls {
            urls.push(format!("turns:{}:{tls_port}?transport=tcp", url_host(name)));
        }
        IceServer {
            urls,
            username: Some(username),
            credential: Some(credential),
        }
    }

    pub fn has_turn(&self) -> bool {
        self.urls.iter().any(|u| is_turn_url(u))
    }

    /// The `HOST:PORT` of the first `stun:` URL, for a NAT probe.
    pub fn stun_target(&self) -> Option<String> {
        self.urls.iter().find_map(|u| {
            let rest = u.strip_prefix("stun:")?;
            Some(rest.split('?').next().unwrap_or(rest).to_owned())
        })
    }
}

/// `{"iceServers":[...],"ttl":N}`: an `RTCConfiguration` with a credential valid `ttl` seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServers {
    #[serde(rename = "iceServers")]
    pub ice_servers: Vec<IceServer>,
    pub ttl: u64,
}

/// A trickled ICE candidate (`RTCIceCandidateInit`). End-of-candidates is `null` in the message
/// that carries it, not an empty candidate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(rename = "sdpMid", default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    #[serde(
        rename = "sdpMLineIndex",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sdp_m_line_index: Option<u16>,
    #[serde(
        rename = "usernameFragment",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub username_fragment: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ice_server_reads_what_browsers_accept() {
        let cases = [
            (
                json!({"urls":"stun:h:3478"}),
                IceServer {
                    urls: vec!["stun:h:3478".into()],
                    username: None,
                    credential: None,
                },
            ),
            (
                json!({"urls":["turn:h:3478?transport=udp"],"username":"1:a","credential":"p","credentialType":"password"}),
                IceServer {
                    urls: vec!["turn:h:3478?transport=udp".into()],
                    username: Some("1:a".into()),
                    credential: Some("p".into()),
                },
            ),
        ];
        for (v, want) in cases {
            assert_eq!(
                serde_json::from_value::<IceServer>(v.clone()).unwrap(),
                want,
                "{v}"
            );
        }
    }

    #[test]
    fn ice_server_helpers() {
        let s = IceServer::for_relay("2001:db8::1", 3478, "1:a".into(), "p".into());
        assert_eq!(s.urls[0], "stun:[2001:db8::1]:3478");
        assert_eq!(s.stun_target().as_deref(), Some("[2001:db8::1]:3478"));
        assert!(s.has_turn());
        let stun = IceServer {
            urls: vec!["stun:h:1?x=y".into()],
            username: None,
            credential: None,
        };
        assert_eq!(stun.stun_target().as_deref(), Some("h:1"));
        assert!(!stun.has_turn());
        assert!(is_turn_url("turns:h:5349?transport=tcp"));
        assert!(!is_turn_url("stun:h"));
    }

    #[test]
    fn every_transport_is_listed_udp_first() {
        let ep = RelayEndpoints {
            host: "2001:db8::5".into(),
            port: 3478,
            tcp: true,
            tls: Some(("turn.example.test".into(), 5349)),
        };
        let s = IceServer::for_endpoints(&ep, "1:a".into(), "p".into());
        assert_eq!(
            s.urls,
            [
                "stun:[2001:db8::5]:3478",
                "turn:[2001:db8::5]:3478?transport=udp",
                "turn:[2001:db8::5]:3478?transport=tcp",
                "turns:turn.example.test:5349?transport=tcp",
            ]
        );
        let udp = IceServer::for_relay("203.0.113.1", 3478, "1:a".into(), "p".into());
        assert_eq!(udp.urls.len(), 2);
    }

    #[test]
    fn debug_hides_the_credential() {
        let s = IceServer::for_relay("h", 1, "1:a".into(), "hunter2".into());
        let d = format!("{s:?}");
        assert!(!d.contains("hunter2") && d.contains("<redacted>"), "{d}");
    }

    #[test]
    fn candidate_round_trips_and_tolerates_nulls_and_extras() {
        let full = json!({"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"uf"});
        let c: IceCandidate = serde_json::from_value(full.clone()).unwrap();
        assert_eq!(serde_json::to_value(&c).unwrap(), full);
        // webrtc-rs writes nulls and a `url`; browsers may add fields later.
        let c: IceCandidate = serde_json::from_value(json!({"candidate":"c","sdpMid":null,"sdpMLineIndex":null,"usernameFragment":null,"url":"stun:h"})).unwrap();
        assert_eq!(serde_json::to_value(&c).unwrap(), json!({"candidate":"c"}));
    }
}
