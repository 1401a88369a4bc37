//! `_natkit.Session`: natkit-peer-core's sans-IO session ([`natkit_peer_core::session`]) for the
//! Python package's aiortc shell, in [`Mode::App`]. The shell feeds it what happened and carries
//! out the actions it returns, as tuples of plain values (signaling messages as their wire JSON);
//! every decision (who offers, the pair rule, when to trickle, renewal, restarts, rejoining,
//! when the session is over) is the Rust session's, the same one natkit-peer runs.
//!
//! The clock is read here (`Instant::now()` at each call): Python passes no time.

use std::time::{Duration, Instant};

use natkit_peer_core::session::{
    Action, LocalNat, Message, Mode, RtcEvent, Session as Core, SessionConfig,
};
use natkit_proto::{NatSummary, ServerMsg, Welcome};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use pyo3::IntoPyObjectExt;

use crate::{from_json, relay_mode};

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("natkit-proto's types serialise")
}

/// A message from Python: `str` is text, `bytes` (or `bytearray`, `memoryview`) binary.
fn message(data: &Bound<'_, PyAny>) -> PyResult<Message> {
    if let Ok(text) = data.extract::<String>() {
        return Ok(Message::Text(text));
    }
    if let Ok(bytes) = data.extract::<Vec<u8>>() {
        if !data.is_instance_of::<pyo3::types::PyList>() {
            return Ok(Message::Binary(bytes));
        }
    }
    Err(PyValueError::new_err(format!(
        "a message is str or bytes, not {}",
        data.get_type().name()?
    )))
}

fn message_object<'py>(py: Python<'py>, m: Message) -> PyResult<Bound<'py, PyAny>> {
    match m {
        Message::Text(t) => t.into_bound_py_any(py),
        Message::Binary(b) => Ok(PyBytes::new(py, &b).into_any()),
    }
}

fn welcome(text: &str) -> PyResult<Welcome> {
    match from_json::<ServerMsg>("welcome", text)? {
        ServerMsg::Welcome(w) => Ok(w),
        other => Err(PyValueError::new_err(format!(
            "welcome: not a welcome message: {other:?}"
        ))),
    }
}

/// One peer's session with one partner. `welcome` is the server's answer to the join (its wire
/// JSON); `local_nat` this side's NAT summary as JSON, `"probe"` to let the session ask for a
/// probe, or `None` for unknown; `timeout` the seconds the attempt may take until the channel
/// works; `spent` the seconds already spent on it (joining), counted in `elapsed_ms`.
#[pyclass(module = "natkit._natkit")]
pub struct Session {
    core: Core,
}

#[pymethods]
impl Session {
    #[new]
    #[pyo3(signature = (welcome_json, *, relay, local_nat, renew, timeout, spent = 0.0))]
    fn new(
        welcome_json: &str,
        relay: &str,
        local_nat: Option<&str>,
        renew: bool,
        timeout: f64,
        spent: f64,
    ) -> PyResult<Session> {
        if !(timeout.is_finite() && timeout > 0.0 && timeout < 86_400.0) {
            return Err(PyValueError::new_err(format!(
                "timeout must be a positive number of seconds under a day, not {timeout}"
            )));
        }
        let local_nat = match local_nat {
            Some("probe") => LocalNat::Probe,
            Some(text) => LocalNat::Known(Some(from_json::<NatSummary>("local_nat", text)?)),
            None => LocalNat::Known(None),
        };
        let now = Instant::now();
        let spent = Duration::try_from_secs_f64(spent).unwrap_or_default();
        let cfg = SessionConfig {
            mode: Mode::App,
            relay: relay_mode(relay)?,
            local_nat,
            // Not known here: aiortc gathers on every interface, and the summary names no
            // families (the pair rule's no-common-family row does not apply to Python peers).
            families: vec![],
            renew,
            // aioice's allocations take the renewed credential as it is (aiortc cannot
            // restart ICE to make new ones).
            restart_on_renewal: false,
            started: now.checked_sub(spent).unwrap_or(now),
            deadline: now + Duration::from_secs_f64(timeout),
        };
        Ok(Session {
            core: Core::new(cfg, welcome(welcome_json)?, now),
        })
    }

    /// The next action as a tuple whose first item names it, or `None`:
    /// `("signal", json)`, `("configure", servers_json, relay_only)`,
    /// `("apply-servers", servers_json, relay_only)`, `("create-data-channel",)`,
    /// `("create-offer", ice_restart)`, `("accept-offer", sdp, rollback)`,
    /// `("accept-answer", sdp)`, `("add-candidate", candidate_json)`, `("send", str | bytes)`,
    /// `("deliver", str | bytes)`, `("rejoin",)`, `("probe", "host:port")`, `("emit", event_json)`.
    fn poll_action<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Some(action) = self.core.poll_action() else {
            return Ok(None);
        };
        let items: Vec<Bound<'py, PyAny>> = match action {
            Action::Signal(m) => vec![s(py, "signal")?, s(py, &to_json(&m))?],
            Action::Configure {
                servers,
                relay_only,
                ..
            } => vec![
                s(py, "configure")?,
                s(py, &to_json(&servers))?,
                relay_only.into_bound_py_any(py)?,
            ],
            Action::ApplyServers {
                servers,
                relay_only,
            } => vec![
                s(py, "apply-servers")?,
                s(py, &to_json(&servers))?,
                relay_only.into_bound_py_any(py)?,
            ],
            Action::CreateDataChannel => vec![s(py, "create-data-channel")?],
            Action::CreateOffer { ice_restart } => {
                vec![s(py, "create-offer")?, ice_restart.into_bound_py_any(py)?]
            }
            Action::AcceptOffer { sdp, rollback } => vec![
                s(py, "accept-offer")?,
                s(py, &sdp)?,
                rollback.into_bound_py_any(py)?,
            ],
            Action::AcceptAnswer { sdp } => vec![s(py, "accept-answer")?, s(py, &sdp)?],
            Action::AddRemoteCandidate(c) => vec![s(py, "add-candidate")?, s(py, &to_json(&c))?],
            Action::Send(m) => vec![s(py, "send")?, message_object(py, m)?],
            Action::Deliver(m) => vec![s(py, "deliver")?, message_object(py, m)?],
            Action::Rejoin => vec![s(py, "rejoin")?],
            Action::Probe { target } => vec![s(py, "probe")?, s(py, &target)?],
            Action::Emit(e) => vec![s(py, "emit")?, s(py, &to_json(&e))?],
        };
        Ok(Some(PyTuple::new(py, items)?))
    }

    /// Seconds until [`Session::handle_timeout`] is due (0 when it is).
    fn poll_timeout(&self) -> f64 {
        self.core
            .poll_timeout()
            .saturating_duration_since(Instant::now())
            .as_secs_f64()
    }

    fn handle_timeout(&mut self) {
        self.core.handle_timeout(Instant::now());
    }

    /// A message from natkit-signal, as its wire JSON; a message that does not parse is a
    /// `ValueError` (the session is untouched).
    fn handle_signal(&mut self, json: &str) -> PyResult<()> {
        let msg: ServerMsg = from_json("signaling message", json)?;
        self.core.handle_signal(Instant::now(), msg);
        Ok(())
    }

    fn handle_signaling_lost(&mut self) {
        self.core.handle_signaling_lost(Instant::now());
    }

    fn handle_rejoined(&mut self, welcome_json: &str) -> PyResult<()> {
        let w = welcome(welcome_json)?;
        self.core.handle_rejoined(Instant::now(), w);
        Ok(())
    }

    fn handle_rejoin_failed(&mut self, why: String) {
        self.core.handle_rejoin_failed(Instant::now(), why);
    }

    fn handle_local_offer(&mut self, sdp: String) {
        self.core.handle_local_offer(Instant::now(), sdp);
    }

    fn handle_local_answer(&mut self, sdp: String) {
        self.core.handle_local_answer(Instant::now(), sdp);
    }

    /// The probe asked for: this side's NAT summary as JSON, or `None` when it failed.
    #[pyo3(signature = (summary_json))]
    fn handle_probe(&mut self, summary_json: Option<&str>) -> PyResult<()> {
        let nat = summary_json
            .map(|t| from_json::<NatSummary>("summary", t))
            .transpose()?;
        self.core.handle_probe(Instant::now(), nat);
        Ok(())
    }

    /// A gathered local candidate (its JSON), or `None` at the end of gathering.
    #[pyo3(signature = (candidate_json))]
    fn local_candidate(&mut self, candidate_json: Option<&str>) -> PyResult<()> {
        let c = candidate_json
            .map(|t| from_json("candidate", t))
            .transpose()?;
        self.core
            .handle_rtc(Instant::now(), RtcEvent::LocalCandidate(c));
        Ok(())
    }

    /// The peer connection is connected over a pair of these candidate types.
    #[pyo3(signature = (local, remote, relay_protocol))]
    fn connected(&mut self, local: String, remote: String, relay_protocol: Option<String>) {
        self.core.handle_rtc(
            Instant::now(),
            RtcEvent::Connected {
                local_candidate_type: local,
                remote_candidate_type: remote,
                relay_protocol,
            },
        );
    }

    /// What the peer connection or the data channel reports, without data: `disconnected`,
    /// `failed`, `gone`, `channel-open`, `channel-closed`.
    fn rtc(&mut self, what: &str) -> PyResult<()> {
        let ev = match what {
            "disconnected" => RtcEvent::Disconnected,
            "failed" => RtcEvent::Failed,
            "gone" => RtcEvent::Gone,
            "channel-open" => RtcEvent::ChannelOpen,
            "channel-closed" => RtcEvent::ChannelClosed,
            other => {
                return Err(PyValueError::new_err(format!(
                    "not a peer connection event: {other:?}"
                )))
            }
        };
        self.core.handle_rtc(Instant::now(), ev);
        Ok(())
    }

    /// A message arrived on the data channel.
    fn received(&mut self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let m = message(data)?;
        self.core.handle_rtc(Instant::now(), RtcEvent::Message(m));
        Ok(())
    }

    fn send_failed(&mut self, why: String) {
        self.core
            .handle_rtc(Instant::now(), RtcEvent::SendFailed(why));
    }

    /// The program's message: false when the session is over or too many wait for the channel.
    fn send(&mut self, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        let m = message(data)?;
        Ok(self.core.handle_input(Instant::now(), Some(m)))
    }

    /// `None` while it runs; `(True, "", "")` when it ended as done; `(False, stage, message)`
    /// when it failed.
    fn outcome(&self) -> Option<(bool, String, String)> {
        self.core.outcome().map(|o| match o {
            Ok(()) => (true, String::new(), String::new()),
            Err(f) => (false, f.stage.as_str().to_owned(), f.message.clone()),
        })
    }

    /// Where a failure now would be reported.
    fn stage(&self) -> &'static str {
        self.core.stage().as_str()
    }

    /// `(relay_only, rule, reason)` once decided.
    fn policy(&self) -> Option<(bool, String, String)> {
        self.core
            .policy()
            .map(|p| (p.relay_only, p.rule.as_str().to_owned(), p.reason.clone()))
    }
}

fn s<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    text.into_bound_py_any(py)
}
