//! Admission as tables: each request against a node state, with the clock advanced by the test.
use std::time::Duration;

use super::*;

const T0: u64 = 1_800_000_000;

struct Node {
    secret: TokenSecret,
    revocations: Revocations,
    draining: bool,
    open: bool,
    start: Instant,
}

impl Node {
    fn new() -> Self {
        Node {
            secret: TokenSecret::new("k").unwrap(),
            revocations: Revocations::default(),
            draining: false,
            open: false,
            start: Instant::now(),
        }
    }

    /// The gate `secs` seconds after the start.
    fn at(&self, secs: u64) -> Gate<'_> {
        Gate {
            unix: T0 + secs,
            now: self.start + Duration::from_secs(secs),
            draining: self.draining,
            tokens: (!self.open).then_some(&self.secret),
            revocations: &self.revocations,
        }
    }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

fn code(r: Result<impl std::fmt::Debug, Refusal>) -> Option<ErrorCode> {
    r.err().map(|e| e.code)
}

#[test]
fn join_table() {
    let mut node = Node::new();
    let room = node.secret.mint("team", 60, T0);
    let other_room = node.secret.mint("other", 60, T0);
    let expired = node.secret.mint("team", 1, T0 - 10);
    let revoked_token = node.secret.mint("team", 60, T0 + 1);
    let sig = revoked_token.rsplit('.').next().unwrap().to_owned();
    node.revocations = Revocations::parse(&format!("user team/mallory\ntoken {sig}\n")).unwrap();
    let cases: [(&str, &str, Option<&str>, Option<ErrorCode>); 8] = [
        ("team", "alice", Some(&room), None),
        ("team", "alice", None, Some(ErrorCode::Unauthorized)),
        (
            "team",
            "alice",
            Some(&other_room),
            Some(ErrorCode::Unauthorized),
        ),
        (
            "team",
            "alice",
            Some(&expired),
            Some(ErrorCode::Unauthorized),
        ),
        ("team", "alice", Some("v1.x"), Some(ErrorCode::Unauthorized)),
        (
            "team",
            "mallory",
            Some(&room),
            Some(ErrorCode::Unauthorized),
        ),
        (
            "team",
            "bob",
            Some(&revoked_token),
            Some(ErrorCode::Unauthorized),
        ),
        // An invalid id is admitted with nothing minted: the rooms refuse it with its own code.
        ("team", "no spaces", Some(&room), None),
    ];
    let mut a = Admission::new(0);
    for (i, (r, p, t, want)) in cases.into_iter().enumerate() {
        assert_eq!(code(a.join(node.at(0), ip(1), r, p, t)), want, "case {i}");
    }
    let j = a
        .join(node.at(0), ip(1), "team", "alice", Some(&room))
        .unwrap();
    let grant = j.grant.expect("a grant");
    assert_eq!(grant.expires, T0 + 60);
    let user = j.mint_for.unwrap();
    assert!(user.starts_with("team/alice#"), "{user}");
    assert_eq!(
        a.join(node.at(0), ip(1), "team", "no spaces", Some(&room))
            .unwrap()
            .mint_for,
        None
    );
    // Draining refuses before anything else.
    node.draining = true;
    let r = a.join(node.at(0), ip(1), "team", "alice", Some(&room));
    assert_eq!(code(r), Some(ErrorCode::ShuttingDown));
    // Open mode: no token, no grant, the plain user.
    node.draining = false;
    node.open = true;
    let j = a.join(node.at(0), ip(1), "team", "carol", None).unwrap();
    assert_eq!(
        j,
        Join {
            grant: None,
            mint_for: Some("team/carol".into())
        }
    );
}

/// Credentials per minute, per client IP and per token; time moves with the gate.
#[test]
fn credential_limits_per_ip_and_per_token() {
    let node = Node::new();
    let token = node.secret.mint("r", 600, T0);
    let mut a = Admission::new(2);
    let join = |a: &mut Admission, secs, last| {
        a.join(node.at(secs), ip(last), "r", "p", Some(&token))
            .map_err(|e| e.limit)
            .map(|_| ())
    };
    assert_eq!(join(&mut a, 0, 1), Ok(()));
    assert_eq!(join(&mut a, 0, 1), Ok(()));
    assert_eq!(join(&mut a, 0, 1), Err(Some(Limit::PerIp)));
    // Another address, the same token: the token's budget is spent too.
    assert_eq!(join(&mut a, 0, 2), Err(Some(Limit::PerToken)));
    // A minute later both have refilled.
    assert_eq!(join(&mut a, 60, 1), Ok(()));
    assert_eq!(join(&mut a, 60, 2), Ok(()));
    // HTTP credentials count in the same budgets.
    let http = a.ice_servers(node.at(60), ip(3), Some(&token), "http-x");
    assert_eq!(http.map_err(|e| e.limit), Err(Some(Limit::PerToken)));
    // Unlimited.
    let mut free = Admission::new(0);
    for _ in 0..1000 {
        assert!(free.join(node.at(0), ip(1), "r", "p", Some(&token)).is_ok());
    }
}

#[test]
fn refresh_table() {
    let mut node = Node::new();
    let token = node.secret.mint("r", 60, T0);
    let mut a = Admission::new(0);
    let grant = a
        .join(node.at(0), ip(1), "r", "p", Some(&token))
        .unwrap()
        .grant
        .unwrap();
    // (joined as, seconds after the join, refusal)
    type Row = (Option<(&'static str, &'static str)>, u64, Option<ErrorCode>);
    let cases: [Row; 4] = [
        (Some(("r", "p")), 30, None),
        (Some(("r", "p")), 60, None),
        (Some(("r", "p")), 61, Some(ErrorCode::Unauthorized)),
        (None, 0, Some(ErrorCode::NotJoined)),
    ];
    for (i, (member, secs, want)) in cases.into_iter().enumerate() {
        let r = a.refresh(node.at(secs), ip(1), member, Some(&grant));
        assert_eq!(code(r), want, "case {i}");
    }
    let user = a
        .refresh(node.at(0), ip(1), Some(("r", "p")), Some(&grant))
        .unwrap();
    assert_eq!(user, grant.quota_user("r/p"));
    node.revocations = Revocations::parse("user r/p\n").unwrap();
    let r = a.refresh(node.at(0), ip(1), Some(("r", "p")), Some(&grant));
    assert_eq!(code(r), Some(ErrorCode::Unauthorized));
}

#[test]
fn ice_servers_table() {
    let mut node = Node::new();
    let token = node.secret.mint("any-room", 60, T0);
    let mut a = Admission::new(0);
    let cases: [(Option<&str>, u64, Option<ErrorCode>); 4] = [
        (Some(&token), 0, None),
        (None, 0, Some(ErrorCode::Unauthorized)),
        (Some("garbage"), 0, Some(ErrorCode::Unauthorized)),
        (Some(&token), 61, Some(ErrorCode::Unauthorized)),
    ];
    for (i, (t, secs, want)) in cases.into_iter().enumerate() {
        let r = a.ice_servers(node.at(secs), ip(1), t, "http-x");
        assert_eq!(code(r), want, "case {i}");
    }
    let user = a
        .ice_servers(node.at(0), ip(1), Some(&token), "http-x")
        .unwrap();
    assert_eq!(user, format!("http-x#{}", credentials::grant_group(&token)));
    let sig = token.rsplit('.').next().unwrap();
    node.revocations = Revocations::parse(&format!("token {sig}\n")).unwrap();
    let r = a.ice_servers(node.at(0), ip(1), Some(&token), "http-x");
    assert_eq!(code(r), Some(ErrorCode::Unauthorized));
    node.open = true;
    node.revocations = Revocations::default();
    assert_eq!(
        a.ice_servers(node.at(0), ip(1), None, "http-y"),
        Ok("http-y".into())
    );
}
