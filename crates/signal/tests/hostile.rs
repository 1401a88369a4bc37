//! natkit-signal as an attacker meets it (issue 15's findings on signaling): each test runs the
//! attack and prints what it achieves now beside what it achieved before the fix.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt;
use natkit_signal::config::SignalOptions;
use natkit_signal::token::TokenSecret;
use natkit_testkit::Daemon;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// An HTTP GET on a fresh connection: the status code.
async fn status(addr: SocketAddr, path: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body[9..12].parse().unwrap()
}

async fn join(url: &str, room: &str) -> Value {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    send(&mut ws, &json!({"type":"join","room":room})).await;
    recv(&mut ws).await
}

/// Finding 1: natkit-signal with no configuration used to hand TURN credentials to anyone
/// (102 credentials and 981 allocations for one anonymous client in 0.1 s).
#[test]
fn by_default_tokens_are_required_and_the_printed_link_works() {
    let d = Daemon::start(
        std::process::Command::new(env!("CARGO_BIN_EXE_natkit-signal"))
            .env("NATKIT_TURN_SECRET", "t")
            .env("NATKIT_ALT_PORT", "0")
            .env_remove("NATKIT_SIGNAL_TOKEN_SECRET")
            .args(["--listen", "127.0.0.1:0", "--relay-listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0"]),
    );
    let log = d.log().join("\n");
    let link = log
        .lines()
        .find_map(|l| l.split_once("open ").map(|(_, r)| r))
        .and_then(|r| r.split_whitespace().next())
        .filter(|u| u.contains("token="))
        .unwrap_or_else(|| panic!("no link with a token in:\n{log}"));
    let token = link.split_once("token=").unwrap().1.to_owned();
    assert!(link.contains("room=demo"), "{link}");
    let http = d.addr("http");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ws = format!("ws://{http}/v1/ws");
        let refused = join(&ws, "demo").await;
        assert_eq!(refused["code"], "unauthorized", "{refused}");
        let welcome = join(&format!("{ws}?token={token}"), "demo").await;
        assert_eq!(
            welcome["type"], "welcome",
            "the printed link joins: {welcome}"
        );
        let other_room = join(&format!("{ws}?token={token}"), "elsewhere").await;
        assert_eq!(
            other_room["code"], "unauthorized",
            "the token is for its room only"
        );
        assert_eq!(status(http, "/v1/ice-servers").await, 401);
        assert_eq!(
            status(http, &format!("/v1/ice-servers?token={token}")).await,
            200
        );
        // Metrics are off the public listener, on their own (loopback by default).
        assert_eq!(status(http, "/metrics").await, 404);
        assert_eq!(status(d.addr("metrics"), "/metrics").await, 200);
    });
    eprintln!(
        "tokenless client: before, credentials for anyone; now, join and /v1/ice-servers refused (unauthorized / 401)"
    );
}

#[test]
fn open_mode_is_explicit_and_warns() {
    let d = Daemon::start(
        std::process::Command::new(env!("CARGO_BIN_EXE_natkit-signal"))
            .env("NATKIT_TURN_SECRET", "t")
            .env("NATKIT_ALT_PORT", "0")
            .args(["--listen", "127.0.0.1:0", "--relay-listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "off", "--open"]),
    );
    let log = d.log().join("\n");
    assert!(log.contains("WARNING: open mode"), "{log}");
    assert!(!log.contains("token="), "no token link in open mode: {log}");
}

/// Finding 2: the TURN user was the peer id, unique only within a room: joining another room
/// with a victim's id gave a credential counted against the victim's quota.
#[tokio::test]
async fn turn_identities_of_two_rooms_never_collide() {
    let s = start(SignalOptions::default(), None).await;
    let (_v, victim) = s.join("team", Some("alice")).await;
    let (_a, attacker) = s.join("other", Some("alice")).await;
    let user = |w: &Value| {
        w["ice_servers"][0]["username"]
            .as_str()
            .unwrap()
            .split_once(':')
            .unwrap()
            .1
            .to_owned()
    };
    assert_eq!(user(&victim), "team/alice");
    assert_eq!(user(&attacker), "other/alice");
    let cred = |w: &Value| {
        (
            w["ice_servers"][0]["username"].as_str().unwrap().to_owned(),
            w["ice_servers"][0]["credential"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
    };
    // The attacker fills its own quota (10 allocations by default)...
    let (au, ap) = cred(&attacker);
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..12 {
        let c = natkit_testkit::turn_client(s.relay, &au, &ap)
            .await
            .unwrap();
        match c.allocate().await {
            Ok(conn) => held.push((c, conn)),
            Err(_) => refused += 1,
        }
    }
    // ...and the victim still allocates.
    let (vu, vp) = cred(&victim);
    let c = natkit_testkit::turn_client(s.relay, &vu, &vp)
        .await
        .unwrap();
    let ok = c.allocate().await.is_ok();
    eprintln!(
        "quota squatting: before, the victim's Allocate got 486; now the attacker holds {} and is refused {refused}, the victim allocates: {ok}",
        held.len()
    );
    assert_eq!((held.len(), refused), (10, 2));
    assert!(ok, "the victim's quota is its own");
}

/// Finding 10: `refresh` kept minting TURN credentials after the join token had expired.
#[tokio::test]
async fn refresh_after_the_join_token_expired_is_refused() {
    // The client sleeps past the token's expiry without reading: no idle timeout meanwhile.
    let s = start_tokened("k", |o| {
        o.ping_interval = Some("10".into());
        o.idle_timeout = Some("30".into());
    })
    .await;
    let token = TokenSecret::new("k")
        .unwrap()
        .mint("r", 2, natkit_daemon::unix_now());
    let mut ws = s.connect(&format!("?token={token}")).await;
    send(&mut ws, &json!({"type":"join","room":"r"})).await;
    assert_eq!(recv(&mut ws).await["type"], "welcome");
    send(&mut ws, &json!({"type":"refresh"})).await;
    assert_eq!(recv(&mut ws).await["type"], "ice-servers");
    s.clock.advance(Duration::from_millis(3100));
    send(&mut ws, &json!({"type":"refresh"})).await;
    let r = recv(&mut ws).await;
    assert_eq!(r["code"], "unauthorized", "{r}");
    assert!(r["message"].as_str().unwrap().contains("expired"), "{r}");
}

/// Finding 1, continued: credentials are rate-limited per client IP (and per token), and the
/// refusals are counted.
#[tokio::test]
async fn credential_minting_is_rate_limited_per_ip_and_counted() {
    let s = start_with(|o| o.credentials_per_minute = Some("5".into())).await;
    let started = Instant::now();
    let mut codes = Vec::new();
    for _ in 0..20 {
        codes.push(s.get("/v1/ice-servers").await.0);
    }
    let issued = codes.iter().filter(|c| **c == 200).count();
    eprintln!(
        "credential flood: before, 102 credentials for one client in 0.1 s; now {issued} of 20 in {:.2} s, the rest 429",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(issued, 5, "{codes:?}");
    assert!(codes[5..].iter().all(|c| *c == 429), "{codes:?}");
    // Joins mint too, and are refused the same way.
    let mut ws = s.connect("").await;
    send(&mut ws, &json!({"type":"join","room":"r"})).await;
    assert_eq!(recv(&mut ws).await["code"], "rate-limited");
    assert!(s.metric("natkit_signal_credentials_refused_total{limit=\"per_ip\"}") >= 16.0);
}

/// natkit.js's probe asks `/v1/check-servers?turn=false`: the STUN URLs (both of the relay's
/// ports) with no TURN credential, and so nothing counted against the credential limit (a page
/// view had cost two credentials, the probe's and the welcome's). The token check is the same.
#[tokio::test]
async fn stun_only_check_servers_mint_nothing() {
    let s = start_with(|o| o.credentials_per_minute = Some("2".into())).await;
    for _ in 0..10 {
        let (code, body) = s.get("/v1/check-servers?turn=false").await;
        assert_eq!(code, 200, "{body}");
        let servers = body["iceServers"].as_array().unwrap();
        let urls: Vec<&str> = servers
            .iter()
            .flat_map(|s| s["urls"].as_array().unwrap())
            .map(|u| u.as_str().unwrap())
            .collect();
        assert_eq!(urls.len(), 2, "the relay's two ports: {body}");
        assert!(urls.iter().all(|u| u.starts_with("stun:")), "{body}");
        assert!(
            servers
                .iter()
                .all(|s| s["username"].is_null() && s["credential"].is_null()),
            "{body}"
        );
    }
    assert_eq!(s.metric("natkit_signal_credentials_issued_total"), 0.0);
    // The two credentials a minute are all still there.
    let (code, body) = s.get("/v1/check-servers").await;
    assert_eq!(code, 200);
    assert!(body["iceServers"][0]["credential"].is_string(), "{body}");
    assert_eq!(s.get("/v1/check-servers?turn=true").await.0, 200);
    assert_eq!(s.get("/v1/check-servers").await.0, 429);
    assert_eq!(s.get("/v1/check-servers?turn=false").await.0, 200);
    assert_eq!(s.get("/v1/check-servers?turn=no").await.0, 400);

    let s = start_tokened("token-secret", |_| {}).await;
    let (code, body) = s.get("/v1/check-servers?turn=false").await;
    assert_eq!((code, body["error"].as_str()), (401, Some("unauthorized")));
}

/// Finding 8: connections trickling request headers a byte at a time were never closed, and
/// one IP could hold any number of them.
#[tokio::test]
async fn slowloris_is_cut_off_and_connections_per_ip_are_limited() {
    let s = start_with(|o| {
        o.header_timeout = Some("1".into());
        o.max_connections_per_ip = Some("5".into());
    })
    .await;
    let mut slow = Vec::new();
    for _ in 0..5 {
        let mut c = tokio::net::TcpStream::connect(s.http).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        slow.push(c);
    }
    // A sixth from the same IP is closed at once.
    let mut sixth = tokio::net::TcpStream::connect(s.http).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(2), sixth.read(&mut buf))
        .await
        .expect("the sixth connection is closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    // The trickling five are cut off by the header deadline, still trickling.
    let started = Instant::now();
    for c in &mut slow {
        let _ = c.write_all(b"s").await;
        let closed = tokio::time::timeout(Duration::from_secs(4), async {
            loop {
                match c.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue, // a 408 answer, then the close
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a slow client must be closed");
    }
    let cut = started.elapsed();
    eprintln!(
        "slowloris: before, never closed and unbounded per IP; now 5 per IP, the rest closed at once, the slow ones cut after {:.1} s",
        cut.as_secs_f64()
    );
    assert!(s.metric("natkit_signal_connections_refused_total{reason=\"per_ip_limit\"}") >= 1.0);
    // With the slots free again, a real client gets in.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_ws, w) = s.join("after", None).await;
    assert_eq!(w["type"], "welcome");
}

/// Finding 9: a text frame that is not UTF-8 closed with 1009 (too big); RFC 6455 says 1007.
#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let s = start(SignalOptions::default(), None).await;
    let mut ws = s.connect("").await;
    let frame = Frame::message(vec![0x7b, 0xff, 0xfe, 0x7d], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Invalid));
    assert!(s.metric("natkit_signal_rejected_messages_total{reason=\"invalid_utf8\"}") >= 1.0);
}

/// Issue 24: a frame that breaks the WebSocket protocol (here a reserved opcode) closed with 1009
/// ("message too big"); RFC 6455 section 7.4.1 says 1002. Frames over the size limit keep 1009.
#[tokio::test]
async fn a_protocol_violation_closes_with_1002() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let s = start(SignalOptions::default(), None).await;
    let mut ws = s.connect("").await;
    let frame = Frame::message(b"{}".to_vec(), OpCode::Data(Data::Reserved(3)), true);
    ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Protocol));
    let mut big = s.connect("").await;
    let _ = big.send(Message::Text("y".repeat(200_000).into())).await;
    assert_eq!(close_code(&mut big).await, Some(CloseCode::Size));
    let (_ws, w) = s.join("after", None).await;
    assert_eq!(w["type"], "welcome");
}

/// Revocation through natkit-signal: a token written into the revocation file gets no new
/// credentials (join, refresh, /v1/ice-servers), and the embedded relay ends the user's
/// allocations.
#[test]
fn revoked_tokens_get_no_new_credentials() {
    let dir = std::env::temp_dir().join(format!("natkit-sig-revoked-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("revoked");
    let d = Daemon::start(
        std::process::Command::new(env!("CARGO_BIN_EXE_natkit-signal"))
            .env("NATKIT_TURN_SECRET", "t")
            .env("NATKIT_SIGNAL_TOKEN_SECRET", "k")
            .env("NATKIT_REVOKED_FILE", &file)
            .env("NATKIT_ALT_PORT", "0")
            .args(["--listen", "127.0.0.1:0", "--relay-listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "off"]),
    );
    let token = TokenSecret::new("k")
        .unwrap()
        .mint("r", 600, natkit_daemon::unix_now());
    let other = TokenSecret::new("k")
        .unwrap()
        .mint("r", 601, natkit_daemon::unix_now());
    let http = d.addr("http");
    let ws = format!("ws://{http}/v1/ws?token=");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        assert_eq!(join(&format!("{ws}{token}"), "r").await["type"], "welcome");
        let id = token.rsplit('.').next().unwrap();
        std::fs::write(&file, format!("token {id}\n")).unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let refused = join(&format!("{ws}{token}"), "r").await;
        assert_eq!(refused["code"], "unauthorized", "{refused}");
        assert_eq!(
            status(http, &format!("/v1/ice-servers?token={token}")).await,
            401
        );
        // Another token for the same room still works.
        assert_eq!(join(&format!("{ws}{other}"), "r").await["type"], "welcome");
    });
    std::fs::remove_dir_all(dir).unwrap();
}

/// Issue 24's finding: against the default, tokened natkit-signal, one client holding one
/// ordinary valid token fetched 30 TURN credentials from `/v1/ice-servers` in under 0.1 s; each
/// was a TURN user of its own with its own `user_quota` of 10, so the one token held 300
/// allocations, the embedded relay's whole range (100 ports) within 0.6 s, and a legitimate pair
/// with its own token got 508 until the attacker let go. Now every credential minted under one
/// token counts in that token's quota group on the relay.
#[test]
fn one_token_holds_one_quota_of_allocations_however_many_credentials_it_fetches() {
    let d = Daemon::start(
        std::process::Command::new(env!("CARGO_BIN_EXE_natkit-signal"))
            .env("NATKIT_TURN_SECRET", "t")
            .env("NATKIT_SIGNAL_TOKEN_SECRET", "k")
            .env("NATKIT_ALT_PORT", "0")
            .env("RUST_LOG", "warn")
            .args(["--listen", "127.0.0.1:0", "--relay-listen", "127.0.0.1:0"])
            .args([
                "--metrics-listen",
                "127.0.0.1:0",
                "--relay-ports",
                "40000-40099",
            ]),
    );
    let (http, relay) = (d.addr("http"), d.addr("stun"));
    let mint = |room: &str| {
        TokenSecret::new("k")
            .unwrap()
            .mint(room, 600, natkit_daemon::unix_now())
    };
    let attacker = mint("r");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let started = Instant::now();
        let mut creds = Vec::new();
        for _ in 0..30 {
            let body =
                natkit_testkit::http_get(&format!("http://{http}/v1/ice-servers?token={attacker}"));
            let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
            let s = &json["iceServers"][0];
            creds.push((
                s["username"].as_str().unwrap().to_owned(),
                s["credential"].as_str().unwrap().to_owned(),
            ));
        }
        let fetched = started.elapsed();
        let users: std::collections::HashSet<_> = creds.iter().map(|c| c.0.clone()).collect();
        assert_eq!(users.len(), 30, "30 distinct TURN users, as before");
        let mut held = Vec::new();
        let mut refused = 0;
        for (user, pass) in &creds {
            for _ in 0..10 {
                let c = natkit_testkit::turn_client(relay, user, pass)
                    .await
                    .unwrap();
                match c.allocate().await {
                    Ok(conn) => held.push((c, conn)),
                    Err(_) => refused += 1,
                }
            }
        }
        eprintln!(
            "one token, 30 credentials in {:.3} s: before, 300 allocations and the relay's 100 \
             ports; now {} held and {refused} refused",
            fetched.as_secs_f64(),
            held.len()
        );
        assert_eq!(held.len(), 10, "one user_quota for the whole token");
        assert_eq!(refused, 290);
        // Meanwhile a legitimate pair with its own token joins and allocates.
        let pair = mint("team");
        let ws = format!("ws://{http}/v1/ws?token={pair}");
        for _ in 0..2 {
            let w = join(&ws, "team").await;
            assert_eq!(w["type"], "welcome", "{w}");
            let s = &w["ice_servers"][0];
            let c = natkit_testkit::turn_client(
                relay,
                s["username"].as_str().unwrap(),
                s["credential"].as_str().unwrap(),
            )
            .await
            .unwrap();
            c.allocate()
                .await
                .expect("a legitimate peer allocates while the attacker holds its quota");
        }
    });
}
