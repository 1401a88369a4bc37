//! docs/protocol.md cannot drift from the types: every message it shows, in the tables and in
//! the example exchange, parses with natkit-proto and serialises back to the same JSON, and every
//! message type appears at least once.

use std::collections::BTreeSet;

use natkit_proto::{ClientMsg, ServerMsg};
use serde_json::Value;

const DOC: &str = include_str!("../../../docs/protocol.md");

/// The lines of the section whose heading is `heading`, up to the next `## ` heading.
fn section(heading: &str) -> Vec<&'static str> {
    let mut lines = DOC.lines().skip_while(|l| l.trim() != heading);
    assert!(
        lines.next().is_some(),
        "docs/protocol.md has no {heading:?}"
    );
    lines.take_while(|l| !l.starts_with("## ")).collect()
}

/// The first code span of each table row (`| `{...}` | ... |`).
fn table_messages(heading: &str) -> Vec<&'static str> {
    section(heading)
        .into_iter()
        .filter_map(|l| {
            let rest = l.strip_prefix("| `")?;
            rest.split("` |").next()
        })
        .filter(|m| m.starts_with('{'))
        .collect()
}

fn same_json<T: serde::Serialize>(msg: &T, text: &str) {
    let want: Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        serde_json::to_value(msg).unwrap(),
        want,
        "round trip of {text}"
    );
}

fn client(text: &str) -> String {
    let m = ClientMsg::parse(text).unwrap_or_else(|e| panic!("{text}: {}", e.message));
    same_json(&m, text);
    serde_json::from_str::<Value>(text).unwrap()["type"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn server(text: &str) -> String {
    let m = ServerMsg::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_ne!(m, ServerMsg::Unknown, "{text} is a known server message");
    same_json(&m, text);
    serde_json::from_str::<Value>(text).unwrap()["type"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn tables_show_every_message_and_each_parses() {
    let c: BTreeSet<String> = table_messages("## Client to server")
        .into_iter()
        .map(client)
        .collect();
    let want: BTreeSet<String> = ClientMsg::TYPES.iter().map(|t| t.to_string()).collect();
    assert_eq!(c, want, "every client message has a row");

    let s: BTreeSet<String> = table_messages("## Server to client")
        .into_iter()
        .map(server)
        .collect();
    let want: BTreeSet<String> = [
        "welcome",
        "peer-joined",
        "peer-left",
        "offer",
        "answer",
        "candidate",
        "error",
        "pong",
        "ice-servers",
        "nat-summary",
        "reconnect",
    ]
    .iter()
    .map(|t| t.to_string())
    .collect();
    assert_eq!(s, want, "every server message has a row");
}

#[test]
fn the_example_exchange_parses_line_by_line() {
    let mut seen = 0;
    for line in section("## Example exchange") {
        let (dir, json) = match (line.find(" -> "), line.find(" <- ")) {
            (Some(i), _) => ("->", &line[i + 4..]),
            (_, Some(i)) => ("<-", &line[i + 4..]),
            _ => continue,
        };
        if !json.starts_with('{') {
            continue;
        }
        if dir == "->" {
            client(json);
        } else {
            server(json);
        }
        seen += 1;
    }
    assert!(
        seen >= 12,
        "the example shows a whole exchange ({seen} messages)"
    );
}
