//! The probe's result, and its stable JSON form (documented in `docs/nat-probe.md`).

use std::net::SocketAddr;

use serde::Serialize;

use crate::classify::{possible_text, Behaviour, NatType, Outcome};

/// One test as run, for the report's `tests` array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestRecord {
    /// `mapping-1`, `mapping-2`, `mapping-3`, `filtering-2`, `filtering-3`, `server-N`.
    pub name: String,
    /// `response`, `no-response` or `not-run`.
    pub result: &'static str,
    /// The mapped address seen, or why the test did not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl TestRecord {
    pub fn from_outcome<T: std::fmt::Display>(name: &str, o: &Outcome<T>) -> Self {
        let (result, detail) = match o {
            Outcome::Got(t) => ("response", {
                let s = t.to_string();
                (!s.is_empty() && s != "()").then_some(s)
            }),
            Outcome::NoResponse => ("no-response", None),
            Outcome::NotRun(why) => ("not-run", Some(why.clone())),
        };
        TestRecord {
            name: name.to_owned(),
            result,
            detail,
        }
    }
}

/// What `probe` found. Serialises to the stable `nat-probe --json` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NatReport {
    /// The address family probed: `ipv4` or `ipv6`.
    pub family: &'static str,
    pub nat_type: NatType,
    /// The mapping behaviour when the tests decided it; `null` when more than one remains.
    pub mapping: Option<Behaviour>,
    pub filtering: Option<Behaviour>,
    /// The mapping behaviours the tests leave possible: one when decided, all three when nothing
    /// could be tested, two when a server with one IP could narrow it down only so far.
    pub mapping_possible: Vec<Behaviour>,
    pub filtering_possible: Vec<Behaviour>,
    pub local_address: SocketAddr,
    pub mapped_address: Option<SocketAddr>,
    /// `None` when no mapping was seen.
    pub port_preserved: Option<bool>,
    pub force_turn: bool,
    pub reason: String,
    pub elapsed_ms: u64,
    /// The servers probed, as resolved.
    pub servers: Vec<SocketAddr>,
    /// The server's OTHER-ADDRESS, when it gave one.
    pub other_address: Option<SocketAddr>,
    /// `None` unless asked for (`--hairpin`).
    pub hairpinning: Option<bool>,
    /// Longest idle time (s) after which the mapping was seen unchanged; `None` unless asked for.
    pub mapping_lifetime_s: Option<u64>,
    pub tests: Vec<TestRecord>,
    /// Problems with the server's answers: ignored CHANGE-REQUEST, fake OTHER-ADDRESS, ...
    pub warnings: Vec<String>,
}

impl NatReport {
    /// A short human summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "NAT type:   {}\nMapping:    {}\nFiltering:  {}\n",
            self.nat_type.as_str(),
            possible_text(&self.mapping_possible),
            possible_text(&self.filtering_possible)
        ));
        s.push_str(&format!("Local:      {}\n", self.local_address));
        if let Some(m) = self.mapped_address {
            let pp = match self.port_preserved {
                Some(true) => " (port preserved)",
                _ => "",
            };
            s.push_str(&format!("Mapped:     {m}{pp}\n"));
        }
        if let Some(h) = self.hairpinning {
            s.push_str(&format!("Hairpin:    {}\n", if h { "yes" } else { "no" }));
        }
        if let Some(l) = self.mapping_lifetime_s {
            s.push_str(&format!("Mapping kept for at least {l} s idle\n"));
        }
        for w in &self.warnings {
            s.push_str(&format!("Warning:    {w}\n"));
        }
        let took = match self.elapsed_ms {
            // Two answers on a LAN can come back within a millisecond: say so, not "0 ms".
            0 => "under 1 ms".to_owned(),
            ms => format!("{ms} ms"),
        };
        s.push_str(&format!(
            "{}: {}\n(took {took})\n",
            self.outlook(),
            self.reason
        ));
        s
    }

    /// The headline: what the report says about a direct connection, and no more than it knows.
    pub fn outlook(&self) -> &'static str {
        if self.force_turn {
            "TURN needed"
        } else if self.mapping_possible == [Behaviour::EndpointIndependent] {
            "Direct connection possible"
        } else {
            "Direct connection not ruled out"
        }
    }
}
