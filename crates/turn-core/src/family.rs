//! Address families of relayed addresses (RFC 6156, RFC 8656 sections 7.2 and 18.11 to 18.12):
//! which families an Allocate gets, decided from its attributes, the families the relay serves
//! and the family the client reached it on. Pure: [`plan`] is a table.

use std::net::IpAddr;

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The family of `ip` as written: an IPv4-mapped IPv6 address is IPv6 here (a socket of
    /// the other family cannot send to it); the peer policy judges it by the IPv4 it carries.
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The `family` label of the relay's metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }

    /// The family's value in REQUESTED-ADDRESS-FAMILY, ADDITIONAL-ADDRESS-FAMILY and
    /// ADDRESS-ERROR-CODE (RFC 8656 section 18.11).
    pub fn wire(self) -> u8 {
        match self {
            Family::V4 => 0x01,
            Family::V6 => 0x02,
        }
    }

    /// The family a wire value names; `None` for any other value.
    pub fn from_wire(v: u8) -> Option<Family> {
        match v {
            0x01 => Some(Family::V4),
            0x02 => Some(Family::V6),
            _ => None,
        }
    }

    pub fn other(self) -> Family {
        match self {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        }
    }
}

/// One value per family: the relay's relayed IP of each family, say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PerFamily<T> {
    pub v4: T,
    pub v6: T,
}

impl<T> PerFamily<T> {
    pub fn get(&self, f: Family) -> &T {
        match f {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    pub fn get_mut(&mut self, f: Family) -> &mut T {
        match f {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        }
    }
}

/// The family an Allocate gets when it asks for none (no REQUESTED-ADDRESS-FAMILY, no
/// ADDITIONAL-ADDRESS-FAMILY): browsers never ask, so this is the relay's policy for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DefaultFamily {
    /// RFC 8656 section 7.2: IPv4. A relay with no IPv4 relayed address gives IPv6 instead of
    /// the RFC's 440 (a relay on an IPv6-only host would otherwise serve no browser).
    #[default]
    Ipv4,
    /// The family the client reached the relay on, or the other one when the relay has no
    /// relayed address in it.
    Client,
}

impl DefaultFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultFamily::Ipv4 => "ipv4",
            DefaultFamily::Client => "client",
        }
    }
}

impl std::str::FromStr for DefaultFamily {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ipv4" => Ok(DefaultFamily::Ipv4),
            "client" => Ok(DefaultFamily::Client),
            _ => Err("use ipv4 (RFC 8656) or client (the family the client came over)".into()),
        }
    }
}

/// What an Allocate asks about families, as read from its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FamilyRequest {
    /// REQUESTED-ADDRESS-FAMILY: `Some(None)` when present with a value that names no family
    /// (or a malformed attribute).
    pub requested: Option<Option<Family>>,
    /// ADDITIONAL-ADDRESS-FAMILY, read the same way.
    pub additional: Option<Option<Family>>,
    /// EVEN-PORT with its R bit (a reserved next port).
    pub even_port_reserve: bool,
    /// RESERVATION-TOKEN.
    pub token: bool,
}

/// The families an Allocate gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyPlan {
    /// The first relayed address's family (the one EVEN-PORT and a reservation apply to).
    pub first: Family,
    /// A second relayed address, of the other family (a dual allocation).
    pub second: Option<Family>,
    /// A family asked for and not given, with its ADDRESS-ERROR-CODE (440).
    pub refused: Option<(Family, u16)>,
}

/// Which families an Allocate gets, or the error code that refuses it (RFC 8656 section 7.2,
/// RFC 6156): `have` says which families the relay has relayed addresses in, `client` which
/// family the request came over.
pub fn plan(
    req: FamilyRequest,
    have: PerFamily<bool>,
    client: Family,
    default: DefaultFamily,
) -> Result<FamilyPlan, u16> {
    let single = |first| FamilyPlan {
        first,
        second: None,
        refused: None,
    };
    if req.token && (req.requested.is_some() || req.additional.is_some()) {
        return Err(400);
    }
    match (req.requested, req.additional) {
        (Some(_), Some(_)) => Err(400),
        (Some(None), None) => Err(440),
        (Some(Some(f)), None) if *have.get(f) => Ok(single(f)),
        (Some(Some(_)), None) => Err(440),
        // Only IPv6 may be additional (the first relayed address is IPv4).
        (None, Some(additional)) => {
            if additional != Some(Family::V6) || req.even_port_reserve {
                return Err(400);
            }
            match (have.v4, have.v6) {
                (true, true) => Ok(FamilyPlan {
                    first: Family::V4,
                    second: Some(Family::V6),
                    refused: None,
                }),
                (true, false) => Ok(FamilyPlan {
                    refused: Some((Family::V6, 440)),
                    ..single(Family::V4)
                }),
                (false, true) => Ok(FamilyPlan {
                    refused: Some((Family::V4, 440)),
                    ..single(Family::V6)
                }),
                (false, false) => Err(440),
            }
        }
        (None, None) => {
            let preferred = match default {
                DefaultFamily::Ipv4 => Family::V4,
                DefaultFamily::Client => client,
            };
            if *have.get(preferred) {
                Ok(single(preferred))
            } else if *have.get(preferred.other()) {
                Ok(single(preferred.other()))
            } else {
                Err(440)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DefaultFamily::{Client, Ipv4};
    use Family::{V4, V6};

    const BOTH: PerFamily<bool> = PerFamily { v4: true, v6: true };
    const ONLY4: PerFamily<bool> = PerFamily {
        v4: true,
        v6: false,
    };
    const ONLY6: PerFamily<bool> = PerFamily {
        v4: false,
        v6: true,
    };

    fn ok(
        first: Family,
        second: Option<Family>,
        refused: Option<(Family, u16)>,
    ) -> Result<FamilyPlan, u16> {
        Ok(FamilyPlan {
            first,
            second,
            refused,
        })
    }

    #[test]
    fn family_table() {
        let none = FamilyRequest::default();
        let req = |f: Option<Family>| FamilyRequest {
            requested: Some(f),
            ..none
        };
        let add = |f: Option<Family>| FamilyRequest {
            additional: Some(f),
            ..none
        };
        let with_token = |r: FamilyRequest| FamilyRequest { token: true, ..r };
        let with_r = |r: FamilyRequest| FamilyRequest {
            even_port_reserve: true,
            ..r
        };
        // (request, relay has, client came over, default, outcome)
        type Row = (
            FamilyRequest,
            PerFamily<bool>,
            Family,
            DefaultFamily,
            Result<FamilyPlan, u16>,
        );
        let cases: Vec<Row> = vec![
            // Nothing asked: the RFC's IPv4, or the client's own family when configured.
            (none, BOTH, V6, Ipv4, ok(V4, None, None)),
            (none, BOTH, V6, Client, ok(V6, None, None)),
            (none, BOTH, V4, Client, ok(V4, None, None)),
            (none, ONLY6, V4, Ipv4, ok(V6, None, None)),
            (none, ONLY6, V4, Client, ok(V6, None, None)),
            (none, ONLY4, V6, Client, ok(V4, None, None)),
            (none, PerFamily::default(), V4, Ipv4, Err(440)),
            // REQUESTED-ADDRESS-FAMILY (RFC 6156): the family asked, or 440.
            (req(Some(V4)), BOTH, V6, Ipv4, ok(V4, None, None)),
            (req(Some(V6)), BOTH, V4, Ipv4, ok(V6, None, None)),
            (req(Some(V6)), ONLY4, V4, Ipv4, Err(440)),
            (req(Some(V4)), ONLY6, V6, Client, Err(440)),
            (req(None), BOTH, V4, Ipv4, Err(440)),
            // With EVEN-PORT (R or not) a single family is fine.
            (with_r(req(Some(V6))), BOTH, V4, Ipv4, ok(V6, None, None)),
            (with_r(none), BOTH, V4, Ipv4, ok(V4, None, None)),
            // ADDITIONAL-ADDRESS-FAMILY (RFC 8656 section 7.2): IPv4 and IPv6.
            (add(Some(V6)), BOTH, V4, Ipv4, ok(V4, Some(V6), None)),
            (add(Some(V6)), BOTH, V6, Client, ok(V4, Some(V6), None)),
            // One family missing: the other alone, with ADDRESS-ERROR-CODE 440 for it.
            (
                add(Some(V6)),
                ONLY4,
                V4,
                Ipv4,
                ok(V4, None, Some((V6, 440))),
            ),
            (
                add(Some(V6)),
                ONLY6,
                V6,
                Ipv4,
                ok(V6, None, Some((V4, 440))),
            ),
            (add(Some(V6)), PerFamily::default(), V4, Ipv4, Err(440)),
            // Only IPv6 may be additional; a bad value is 400.
            (add(Some(V4)), BOTH, V4, Ipv4, Err(400)),
            (add(None), BOTH, V4, Ipv4, Err(400)),
            // Both attributes: 400.
            (
                FamilyRequest {
                    requested: Some(Some(V4)),
                    additional: Some(Some(V6)),
                    ..none
                },
                BOTH,
                V4,
                Ipv4,
                Err(400),
            ),
            // EVEN-PORT with R and a dual allocation: 400.
            (with_r(add(Some(V6))), BOTH, V4, Ipv4, Err(400)),
            // RESERVATION-TOKEN with either family attribute: 400; alone it is fine.
            (with_token(req(Some(V4))), BOTH, V4, Ipv4, Err(400)),
            (with_token(add(Some(V6))), BOTH, V4, Ipv4, Err(400)),
            (with_token(none), BOTH, V4, Ipv4, ok(V4, None, None)),
        ];
        for (i, (r, have, client, default, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                plan(r, have, client, default),
                want,
                "case {i}: {r:?} {have:?} {client:?} {default:?}"
            );
        }
    }

    #[test]
    fn families_of_addresses() {
        let cases = [
            ("192.0.2.1", V4),
            ("2001:db8::1", V6),
            ("::ffff:192.0.2.1", V6),
            ("64:ff9b::c000:201", V6),
        ];
        for (ip, want) in cases {
            assert_eq!(Family::of(ip.parse().unwrap()), want, "{ip}");
        }
        for f in Family::ALL {
            assert_eq!(Family::from_wire(f.wire()), Some(f));
        }
        assert_eq!(Family::from_wire(0x03), None);
    }
}
