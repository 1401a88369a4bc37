//! RFC 5780 NAT behaviour discovery: which socket answers a Binding request.
//!
//! The relay listens on up to four sockets, the product of two IPs (primary and `--alt-ip`) and
//! two ports (primary and `--alt-port`). A Binding request may carry CHANGE-REQUEST asking for
//! the response to come from a different IP, a different port, or both (RFC 5780 section 6,
//! table 1). OTHER-ADDRESS tells the client the socket that differs from the one it reached in
//! both IP and port.
//!
//! With no alternate IP the relay has only two sockets (primary IP, two ports). It then answers
//! change-port requests, refuses change-IP requests with 420 (Unknown Attribute, as RFC 5780
//! section 7.2 asks of servers that cannot honour them) and omits OTHER-ADDRESS rather than
//! naming an address it does not have. What a one-IP deployment can still detect is described in
//! `docs/relay.md`.

/// Identifies one of the four RFC 5780 sockets relative to the primary address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    pub alt_ip: bool,
    pub alt_port: bool,
}

impl Slot {
    const fn at(alt_ip: bool, alt_port: bool) -> Slot {
        Slot { alt_ip, alt_port }
    }

    pub const PRIMARY: Slot = Slot::at(false, false);
    pub const ALT_PORT: Slot = Slot::at(false, true);
    pub const ALT_IP: Slot = Slot::at(true, false);
    pub const ALT_BOTH: Slot = Slot::at(true, true);
}

/// The flags of a CHANGE-REQUEST attribute (RFC 5780 section 7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChangeRequest {
    pub change_ip: bool,
    pub change_port: bool,
}

impl ChangeRequest {
    /// Parses the 4-byte attribute value; `None` when it is not 4 bytes long.
    pub fn parse(value: &[u8]) -> Option<Self> {
        let v: [u8; 4] = value.try_into().ok()?;
        let flags = u32::from_be_bytes(v);
        Some(ChangeRequest {
            change_ip: flags & 0x4 != 0,
            change_port: flags & 0x2 != 0,
        })
    }

    pub fn encode(self) -> [u8; 4] {
        let mut flags = 0u32;
        if self.change_ip {
            flags |= 0x4;
        }
        if self.change_port {
            flags |= 0x2;
        }
        flags.to_be_bytes()
    }
}

/// How to answer one Binding request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The socket the response is sent from (and whose address goes in RESPONSE-ORIGIN).
    pub respond_from: Slot,
    /// The socket named in OTHER-ADDRESS, if the server has one to name.
    pub other_address: Option<Slot>,
}

/// Why a Binding request cannot be answered as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanError {
    /// CHANGE-REQUEST asked for another IP and the server has only one: answer 420.
    NoAlternateIp,
}

/// The response plan for a Binding request received on `received` carrying `change`.
pub fn plan(received: Slot, change: ChangeRequest, have_alt_ip: bool) -> Result<Plan, PlanError> {
    if change.change_ip && !have_alt_ip {
        return Err(PlanError::NoAlternateIp);
    }
    let respond_from = Slot {
        alt_ip: received.alt_ip ^ change.change_ip,
        alt_port: received.alt_port ^ change.change_port,
    };
    let other_address = have_alt_ip.then_some(Slot {
        alt_ip: !received.alt_ip,
        alt_port: !received.alt_port,
    });
    Ok(Plan {
        respond_from,
        other_address,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn change(change_ip: bool, change_port: bool) -> ChangeRequest {
        ChangeRequest {
            change_ip,
            change_port,
        }
    }

    const NONE: ChangeRequest = change(false, false);
    const PORT: ChangeRequest = change(false, true);
    const IP: ChangeRequest = change(true, false);
    const BOTH: ChangeRequest = change(true, true);

    #[test]
    fn two_ip_server_answers_every_change_request() {
        use Slot as S;
        // (received on, change, responds from, other address)
        let cases = [
            (S::PRIMARY, NONE, S::PRIMARY, S::ALT_BOTH),
            (S::PRIMARY, PORT, S::ALT_PORT, S::ALT_BOTH),
            (S::PRIMARY, IP, S::ALT_IP, S::ALT_BOTH),
            (S::PRIMARY, BOTH, S::ALT_BOTH, S::ALT_BOTH),
            (S::ALT_BOTH, NONE, S::ALT_BOTH, S::PRIMARY),
            (S::ALT_BOTH, PORT, S::ALT_IP, S::PRIMARY),
            (S::ALT_BOTH, IP, S::ALT_PORT, S::PRIMARY),
            (S::ALT_BOTH, BOTH, S::PRIMARY, S::PRIMARY),
            (S::ALT_IP, NONE, S::ALT_IP, S::ALT_PORT),
            (S::ALT_IP, PORT, S::ALT_BOTH, S::ALT_PORT),
            (S::ALT_IP, IP, S::PRIMARY, S::ALT_PORT),
            (S::ALT_PORT, BOTH, S::ALT_IP, S::ALT_IP),
        ];
        for (received, change, from, other) in cases {
            assert_eq!(
                plan(received, change, true),
                Ok(Plan {
                    respond_from: from,
                    other_address: Some(other)
                }),
                "{received:?} {change:?}"
            );
        }
    }

    #[test]
    fn one_ip_server_answers_port_changes_and_refuses_ip_changes() {
        use Slot as S;
        let cases = [
            (S::PRIMARY, NONE, Ok(S::PRIMARY)),
            (S::PRIMARY, PORT, Ok(S::ALT_PORT)),
            (S::ALT_PORT, PORT, Ok(S::PRIMARY)),
            (S::ALT_PORT, NONE, Ok(S::ALT_PORT)),
            (S::PRIMARY, IP, Err(PlanError::NoAlternateIp)),
            (S::PRIMARY, BOTH, Err(PlanError::NoAlternateIp)),
        ];
        for (received, change, want) in cases {
            let got = plan(received, change, false);
            match want {
                Ok(from) => assert_eq!(
                    got,
                    Ok(Plan {
                        respond_from: from,
                        other_address: None
                    }),
                    "{received:?} {change:?}"
                ),
                Err(e) => assert_eq!(got, Err(e), "{received:?} {change:?}"),
            }
        }
    }

    #[test]
    fn change_request_codec() {
        assert_eq!(ChangeRequest::parse(&[0, 0, 0, 6]), Some(BOTH));
        assert_eq!(ChangeRequest::parse(&[0, 0, 0, 4]), Some(IP));
        assert_eq!(ChangeRequest::parse(&[0, 0, 0, 2]), Some(PORT));
        assert_eq!(ChangeRequest::parse(&[0, 0, 0, 0]), Some(NONE));
        assert_eq!(ChangeRequest::parse(&[0, 0, 6]), None);
        for c in [NONE, PORT, IP, BOTH] {
            assert_eq!(ChangeRequest::parse(&c.encode()), Some(c));
        }
    }
}
