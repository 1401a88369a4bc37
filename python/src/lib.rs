//! `natkit._natkit`: what the Python package takes from natkit's Rust crates, as plain values
//! (strings, JSON text, tuples). The Python side (`python/natkit`) turns them into its types and
//! errors; nothing here decides anything the Rust crates do not already decide.
//!
//! - [`probe`]: nat-probe's classifier against one RFC 5780 server or several plain STUN servers,
//!   with the GIL released for the whole probe.
//! - [`pair_rule`]: natkit-peer-core's pair rule.
//! - [`mint_token`], [`verify_token`]: natkit-proto's join tokens, as natkit-signal checks them.
//! - [`session::Session`]: natkit-peer-core's session state machine, for the aiortc shell.

mod session;

use std::time::Duration;

use natkit_nat_probe::{probe as run_probe, ProbeConfig};
use natkit_peer_core::policy::{self, RelayMode};
use natkit_proto::token::{TokenError, TokenSecret};
use natkit_proto::NatSummary;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;

create_exception!(
    _natkit,
    ProbeFailed,
    PyException,
    "The probe could not run."
);
create_exception!(
    _natkit,
    NoStunServer,
    ProbeFailed,
    "The STUN server's host answered that nothing listens on its port."
);
create_exception!(
    _natkit,
    ProbeTimedOut,
    PyException,
    "No verdict within the timeout."
);
create_exception!(
    _natkit,
    TokenRefused,
    PyException,
    "A join token was refused."
);

fn relay_mode(mode: &str) -> PyResult<RelayMode> {
    match mode {
        "auto" => Ok(RelayMode::Auto),
        "always" => Ok(RelayMode::Always),
        "never" => Ok(RelayMode::Never),
        other => Err(PyValueError::new_err(format!(
            "relay must be \"auto\", \"always\" or \"never\", not {other:?}"
        ))),
    }
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> PyResult<T> {
    serde_json::from_str(text).map_err(|e| PyValueError::new_err(format!("{what}: {e}")))
}

/// Classifies this host's NAT against `servers` (`HOST[:PORT]`; one RFC 5780 server, or several
/// plain STUN servers), giving up after `timeout` seconds. Returns the report as
/// `nat-probe --json` prints it, this side's NAT summary (the `nat` of a `nat-summary` message)
/// as JSON, and nat-probe's text summary.
#[pyfunction]
#[pyo3(signature = (servers, timeout, hairpin = false))]
fn probe(
    py: Python<'_>,
    servers: Vec<String>,
    timeout: f64,
    hairpin: bool,
) -> PyResult<(String, String, String)> {
    if !(timeout.is_finite() && timeout > 0.0) {
        return Err(PyValueError::new_err(format!(
            "timeout must be a positive number of seconds, not {timeout}"
        )));
    }
    let cfg = ProbeConfig {
        servers,
        hairpin,
        tcp_rtt_seed: true,
        ..Default::default()
    };
    let outcome = py.detach(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let limit = Duration::from_secs_f64(timeout);
        Ok::<_, std::io::Error>(
            rt.block_on(async { tokio::time::timeout(limit, run_probe(&cfg)).await }),
        )
    });
    let report = match outcome {
        Err(e) => return Err(ProbeFailed::new_err(format!("cannot start the probe: {e}"))),
        Ok(Err(_)) => {
            return Err(ProbeTimedOut::new_err(format!(
                "probe: no verdict within {timeout} s"
            )))
        }
        Ok(Ok(Err(e @ natkit_nat_probe::ProbeError::NoStunServer { .. }))) => {
            return Err(NoStunServer::new_err(e.to_string()))
        }
        Ok(Ok(Err(e))) => {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            return Err(ProbeFailed::new_err(msg));
        }
        Ok(Ok(Ok(r))) => r,
    };
    let json = serde_json::to_string(&report).expect("a report serialises");
    let summary = serde_json::to_string(&policy::summary(&report)).expect("a summary serialises");
    Ok((json, summary, report.summary()))
}

/// natkit-peer's pair rule: `(relay_only, rule, reason)` for relay mode `mode` with this side's
/// NAT summary `local` and the remote peer's `remote` (JSON, or `None` for none), this side
/// being the `offerer` or the `answerer`.
#[pyfunction]
#[pyo3(signature = (mode, local, remote, role = "answerer"))]
fn pair_rule(
    mode: &str,
    local: Option<&str>,
    remote: Option<&str>,
    role: &str,
) -> PyResult<(bool, String, String)> {
    let mode = relay_mode(mode)?;
    let role = match role {
        "offerer" => policy::Role::Offerer,
        "answerer" => policy::Role::Answerer,
        other => {
            return Err(PyValueError::new_err(format!(
                "role must be \"offerer\" or \"answerer\", not {other:?}"
            )))
        }
    };
    let local: Option<NatSummary> = local.map(|t| from_json("local", t)).transpose()?;
    let remote: Option<NatSummary> = remote.map(|t| from_json("remote", t)).transpose()?;
    let p = policy::decide(mode, role, local.as_ref(), remote.as_ref());
    Ok((p.relay_only, p.rule.as_str().to_owned(), p.reason))
}

fn secret(secret: &str) -> PyResult<TokenSecret> {
    TokenSecret::new(secret).ok_or_else(|| PyValueError::new_err("the token secret is empty"))
}

/// A join token for `room`, valid for `ttl` seconds from `now` (Unix seconds).
#[pyfunction]
fn mint_token(secret_text: &str, room: &str, ttl: u64, now: u64) -> PyResult<String> {
    if !natkit_proto::valid_name(room) {
        return Err(PyValueError::new_err(
            "room names are 1-64 characters of A-Z a-z 0-9 . _ ~ -",
        ));
    }
    if ttl == 0 {
        return Err(PyValueError::new_err("ttl must be at least 1 second"));
    }
    Ok(secret(secret_text)?.mint(room, ttl, now))
}

/// The room `token` grants at `now`, or [`TokenRefused`] saying why.
#[pyfunction]
fn verify_token(secret_text: &str, token: &str, now: u64) -> PyResult<String> {
    secret(secret_text)?
        .verify(token, now)
        .map_err(|e: TokenError| TokenRefused::new_err(e.to_string()))
}

/// natkit-peer's pause before signaling reconnect attempt `attempt` (0-based), in seconds.
#[pyfunction]
fn reconnect_delay(attempt: u32) -> f64 {
    natkit_peer_core::renewal::reconnect_delay(attempt).as_secs_f64()
}

/// Whether natkit-signal's refusal `code` is one no retry (and no other node) answers
/// differently: a bad token, a bad room name, a full room or server.
#[pyfunction]
fn is_permanent_refusal(code: &str) -> bool {
    serde_json::from_value::<natkit_proto::ErrorCode>(serde_json::Value::from(code))
        .is_ok_and(|c| c.is_permanent_refusal())
}

#[pymodule]
fn _natkit(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(probe, m)?)?;
    m.add_function(wrap_pyfunction!(pair_rule, m)?)?;
    m.add_function(wrap_pyfunction!(mint_token, m)?)?;
    m.add_function(wrap_pyfunction!(verify_token, m)?)?;
    m.add_function(wrap_pyfunction!(reconnect_delay, m)?)?;
    m.add_function(wrap_pyfunction!(is_permanent_refusal, m)?)?;
    m.add_class::<session::Session>()?;
    m.add("ProbeFailed", m.py().get_type::<ProbeFailed>())?;
    m.add("NoStunServer", m.py().get_type::<NoStunServer>())?;
    m.add("ProbeTimedOut", m.py().get_type::<ProbeTimedOut>())?;
    m.add("TokenRefused", m.py().get_type::<TokenRefused>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
