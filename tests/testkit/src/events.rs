//! A process that prints one JSON object per line (`natkit-peer --json`, `nat-probe --json`):
//! its events are collected with their arrival time while it runs, and it is killed when dropped.

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Process;

/// The JSON objects of a finished process's output, one a line (lines that are not JSON are
/// left out).
pub fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The first event named `name` (its `event` field); a test failure naming it when there is none.
pub fn find_event<'a>(evs: &'a [Value], name: &str) -> &'a Value {
    evs.iter()
        .find(|e| e["event"] == name)
        .unwrap_or_else(|| panic!("no {name} event in {evs:?}"))
}

pub struct EventProcess {
    process: Process,
    stdin: Option<ChildStdin>,
    events: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl EventProcess {
    /// Starts `cmd` with piped stdin and stdout.
    pub fn spawn(cmd: &mut Command) -> EventProcess {
        let mut process = Process::spawn(cmd.stdin(Stdio::piped()).stdout(Stdio::piped()));
        let child = process.child();
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().expect("events lock").push((Instant::now(), v));
                }
            }
        });
        EventProcess {
            stdin,
            process,
            events,
        }
    }

    /// Writes one line to the process's standard input.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to the process");
        stdin.flush().expect("flush to the process");
    }

    /// Closes the process's standard input (a `--chat` peer then finishes and exits).
    pub fn close_input(&mut self) {
        self.stdin = None;
    }

    pub fn events(&self) -> Vec<(Instant, Value)> {
        self.events.lock().expect("events lock").clone()
    }

    /// How many events named `event` have `key == value` (any, with an empty `key`).
    pub fn count(&self, event: &str, key: &str, value: &str) -> usize {
        self.events()
            .iter()
            .filter(|(_, e)| e["event"] == event && (key.is_empty() || e[key] == value))
            .count()
    }

    /// Waits for an event; panics with everything seen so far if it does not come.
    pub fn wait_for(&self, event: &str, within: Duration) -> Value {
        let until = Instant::now() + within;
        loop {
            if let Some((_, e)) = self.events().into_iter().find(|(_, e)| e["event"] == event) {
                return e;
            }
            assert!(
                Instant::now() < until,
                "no {event} event in {within:?}; events: {:?}",
                self.events()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// When a `message` event with `data` arrived (natkit-peer prints received messages so).
    pub fn message_time(&self, data: &str) -> Option<Instant> {
        self.events()
            .into_iter()
            .find(|(_, e)| e["event"] == "message" && e["data"] == data)
            .map(|(t, _)| t)
    }

    /// The events other than messages, with seconds since `t0` and their telling fields only:
    /// for tests to print, so a run shows what happened.
    pub fn timeline(&self, t0: Instant) -> String {
        self.events()
            .iter()
            .filter(|(_, e)| e["event"] != "message")
            .map(|(t, e)| {
                let mut e = e.clone();
                if let Some(o) = e.as_object_mut() {
                    o.retain(|k, _| {
                        matches!(
                            k.as_str(),
                            "event" | "reason" | "state" | "local_candidate_type" | "ttl"
                        )
                    });
                }
                format!("{:6.1}s {e}", t.saturating_duration_since(t0).as_secs_f64())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl EventProcess {
    /// The process (to wait for its exit, or kill it early).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// Sends `n` numbered lines `{prefix}{i}`, one a second, to every process at once; returns each
/// line with the moment it was sent.
pub fn send_every_second(
    procs: &mut [&mut EventProcess],
    prefix: &str,
    n: usize,
) -> Vec<(String, Instant)> {
    let mut sent = Vec::new();
    for i in 0..n {
        let data = format!("{prefix}{i}");
        for p in procs.iter_mut() {
            p.send_line(&data);
        }
        sent.push((data, Instant::now()));
        std::thread::sleep(Duration::from_secs(1));
    }
    sent
}

/// The lines of `sent` whose echo did not come back to `chat` within `limit`.
pub fn late(chat: &EventProcess, sent: &[(String, Instant)], limit: Duration) -> Vec<String> {
    sent.iter()
        .filter(|(data, at)| match chat.message_time(data) {
            Some(t) => t.duration_since(*at) > limit,
            None => true,
        })
        .map(|(d, _)| d.clone())
        .collect()
}

/// An outage under a live session: `chat` (a `--chat` peer talking to the `--echo` peer `echo`)
/// sends three messages, `outage` breaks something, then 30 messages follow a second apart.
/// Asserts that the connection came back (`reconnected`), that every message after the first 20 s
/// was answered within 5 s, and that nothing at all was lost. Prints both peers' timelines.
pub fn assert_session_recovers(
    chat: &mut EventProcess,
    echo: &EventProcess,
    t0: Instant,
    outage: impl FnOnce(),
) {
    let before = send_every_second(&mut [&mut *chat], "before", 3);
    outage();
    // Messages sent while the path is down are queued by SCTP, then delivered.
    let after = send_every_second(&mut [&mut *chat], "after", 30);
    std::thread::sleep(Duration::from_secs(5));
    eprintln!(
        "chat peer:\n{}\necho peer:\n{}",
        chat.timeline(t0),
        echo.timeline(t0)
    );
    let limit = Duration::from_secs(5);
    assert!(
        late(chat, &before, limit).is_empty(),
        "the session worked before the outage"
    );
    assert!(
        chat.count("reconnected", "", "") + echo.count("reconnected", "", "") >= 1,
        "the connection must come back after an ICE restart"
    );
    // Recovery takes a failure detection and a restart; after that, every message comes back.
    let missed = late(chat, &after[20..], limit);
    assert!(missed.is_empty(), "late or lost after recovery: {missed:?}");
    let lost: Vec<&String> = after
        .iter()
        .map(|(d, _)| d)
        .filter(|d| chat.message_time(d).is_none())
        .collect();
    assert!(
        lost.is_empty(),
        "a reliable channel loses nothing, even during the outage: {lost:?}"
    );
}
