//! natkit-peer's library API (`natkit_peer::connect`) on loopback through a real natkit-signal:
//! two programs exchange text and bytes, a program pairs with the natkit-peer command in both
//! roles, a wrong token is refused at once with its code, and the example runs.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use natkit_peer::{Error, Message, Options, RelayMode};
use natkit_proto::ErrorCode;
use natkit_testkit::events::EventProcess;
use natkit_testkit::{natkit_signal_on_loopback, Daemon};

const PEER: &str = env!("CARGO_BIN_EXE_natkit-peer");

fn options(d: &Daemon, room: &str, relay: RelayMode) -> Options {
    Options {
        signal: vec![d.ws_url()],
        room: room.into(),
        relay,
        ..Default::default()
    }
}

/// Two programs in one room: the second offers; text and binary both ways; the path is the rule's.
async fn two_programs(relay: RelayMode, want_rule: &str, want_local: Option<&str>) {
    let d = natkit_signal_on_loopback("api-test");
    let room = format!("api-{want_rule}");
    let first = natkit_peer::connect(options(&d, &room, relay))
        .await
        .unwrap();
    let second = natkit_peer::connect(options(&d, &room, relay))
        .await
        .unwrap();
    assert_eq!(second.peers(), vec![first.peer_id().to_owned()]);
    let mut events = second.events();
    let (a, b) = tokio::join!(first.channel(None), second.channel(Some(first.peer_id())));
    let (mut a, mut b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.peer_id(), second.peer_id());
    assert_eq!(b.peer_id(), first.peer_id());
    for ch in [&a, &b] {
        let path = ch.path();
        assert_eq!(path.rule, want_rule, "{path:?}");
        if let Some(local) = want_local {
            assert_eq!(path.local, local, "{path:?}");
        }
    }
    b.send("hello from second").await.unwrap();
    b.send(vec![0u8, 159, 146, 150]).await.unwrap();
    assert_eq!(
        a.recv().await,
        Some(Message::Text("hello from second".into()))
    );
    assert_eq!(
        a.recv().await,
        Some(Message::Binary(vec![0, 159, 146, 150]))
    );
    a.send("and back").await.unwrap();
    assert_eq!(b.recv().await, Some(Message::Text("and back".into())));
    // The events stream says what natkit-peer --json says.
    let connected = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(e) = events.next().await {
            if let natkit_peer::events::Event::Connected { .. } = e.event {
                // The partner it concerns is named.
                return e.peer.as_deref() == Some(first.peer_id());
            }
        }
        false
    });
    // Subscribed before the channel opened: the connected event is in the stream.
    assert!(connected.await.unwrap_or(false));
    // Closing one side ends the other's channel (relayed: after the 15 s a partner that lost
    // signaling gets to come back; docs/peer.md, "Not yet").
    second.close().await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(30), a.recv()).await;
    assert_eq!(end, Ok(None), "the channel ends when the partner leaves");
    assert!(matches!(a.send("late").await, Err(Error::Closed)));
}

#[tokio::test]
async fn two_programs_exchange_text_and_bytes_directly() {
    two_programs(RelayMode::Auto, "direct-possible", None).await;
}

#[tokio::test]
async fn two_programs_exchange_text_and_bytes_through_the_relay() {
    two_programs(RelayMode::Always, "relay-always", Some("relay")).await;
}

/// One program, three partners that come one after another: each gets its own channel (the
/// first to open is `channel(None)`'s), they do not hear each other, one leaving ends only its
/// channel, and the session names the partner of each event.
#[tokio::test]
async fn one_session_holds_a_channel_to_each_partner() {
    let d = natkit_signal_on_loopback("api-test");
    let hub = natkit_peer::connect(options(&d, "api-many", RelayMode::Auto))
        .await
        .unwrap();
    let mut events = hub.events();
    let mut partners = Vec::new();
    for _ in 0..3 {
        partners.push(
            natkit_peer::connect(options(&d, "api-many", RelayMode::Auto))
                .await
                .unwrap(),
        );
    }
    let ids: Vec<String> = partners.iter().map(|p| p.peer_id().to_owned()).collect();
    // Each partner's channel is with the hub (a partner offers to the peers its welcome lists:
    // the hub and those before it; those links are the partners' own business).
    let mut theirs = Vec::new();
    for p in &partners {
        theirs.push(p.channel(Some(hub.peer_id())).await.unwrap());
    }
    let first = hub.channel(None).await.unwrap();
    let mut mine = vec![first];
    for id in &ids {
        if id != mine[0].peer_id() {
            mine.push(hub.channel(Some(id)).await.unwrap());
        }
    }
    assert!(matches!(
        hub.channel(Some(&ids[0])).await,
        Err(Error::ChannelTaken)
    ));
    let mut seen: Vec<&str> = mine.iter().map(|c| c.peer_id()).collect();
    seen.sort();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(seen, want);
    let mut peers = hub.peers();
    peers.sort();
    assert_eq!(peers, want);
    // Each partner says who it is; the hub hears each on that partner's channel only.
    for (p, ch) in partners.iter().zip(&theirs) {
        ch.send(format!("I am {}", p.peer_id())).await.unwrap();
    }
    for ch in &mut mine {
        let got = ch.recv().await.unwrap();
        assert_eq!(got, Message::Text(format!("I am {}", ch.peer_id())));
        ch.send(format!("hello {}", ch.peer_id())).await.unwrap();
    }
    for (p, ch) in partners.iter().zip(&mut theirs) {
        assert_eq!(
            ch.recv().await,
            Some(Message::Text(format!("hello {}", p.peer_id())))
        );
    }
    // The last partner leaves: its channel ends, the others carry on.
    let gone = partners.pop().unwrap();
    let gone_id = gone.peer_id().to_owned();
    gone.close().await.unwrap();
    let at = mine.iter().position(|c| c.peer_id() == gone_id).unwrap();
    let mut ended = mine.remove(at);
    let end = tokio::time::timeout(Duration::from_secs(30), ended.recv()).await;
    assert_eq!(end, Ok(None), "the leaving partner's channel ends");
    for ch in &mut mine {
        ch.send("still here?").await.unwrap();
    }
    for ch in &mut theirs[..2] {
        assert_eq!(ch.recv().await, Some(Message::Text("still here?".into())));
    }
    // Events: each partner joined, each connected (named), the last one left.
    let mut joined = Vec::new();
    let mut connected = Vec::new();
    let mut left = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(e) = events.next().await {
            match e.event {
                natkit_peer::events::Event::PeerJoined { peer_id } => joined.push(peer_id),
                natkit_peer::events::Event::PeerLeft { peer_id } => {
                    left.push(peer_id);
                    break;
                }
                natkit_peer::events::Event::Connected { .. } => connected.push(e.peer.unwrap()),
                _ => {}
            }
        }
    })
    .await;
    joined.sort();
    connected.sort();
    assert_eq!(joined, want);
    assert_eq!(connected, want);
    assert_eq!(left, vec![gone_id]);
    hub.close().await.unwrap();
    for ch in &mut theirs[..2] {
        let end = tokio::time::timeout(Duration::from_secs(30), ch.recv()).await;
        assert_eq!(end, Ok(None), "closing the session ends every channel");
    }
}

/// A program and the natkit-peer command, in both roles.
#[tokio::test]
async fn a_program_offers_to_natkit_peer_and_answers_it() {
    let d = natkit_signal_on_loopback("api-test");
    let url = d.ws_url();
    let peer = |room: &str, args: &[&str]| {
        let mut c = Command::new(PEER);
        c.env("RUST_LOG", "off")
            .args([
                "--signal",
                &url,
                "--room",
                room,
                "--json",
                "--timeout",
                "30",
            ])
            .args(args);
        c
    };
    // natkit-peer is there first and echoes; the program joins, offers and sends.
    let echo = EventProcess::spawn(&mut peer("api-offers", &["--echo"]));
    echo.wait_for("joined", Duration::from_secs(10));
    let s = natkit_peer::connect(options(&d, "api-offers", RelayMode::Auto))
        .await
        .unwrap();
    let mut ch = s.channel(None).await.unwrap();
    ch.send("ping").await.unwrap();
    assert_eq!(ch.recv().await, Some(Message::Text("ping".into())));
    assert_eq!(ch.path().rule, "direct-possible");
    s.close().await.unwrap();

    // The program is there first; natkit-peer joins, offers, sends and waits for the reply.
    let s = natkit_peer::connect(options(&d, "api-answers", RelayMode::Auto))
        .await
        .unwrap();
    let mut sender = peer("api-answers", &["--send", "from the command"]);
    let sender = sender.stdout(Stdio::piped()).spawn().unwrap();
    let mut ch = s.channel(None).await.unwrap();
    let got = ch.recv().await.unwrap();
    assert_eq!(got, Message::Text("from the command".into()));
    ch.send(got).await.unwrap();
    // (The wait blocks a thread, not this test's runtime, which drives the program's session.)
    let out = tokio::task::spawn_blocking(move || sender.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(r#""event":"message""#), "{text}");
    // natkit-peer decided with this program's NAT summary.
    assert!(text.contains(r#""remote_nat":{"#), "{text}");
}

#[tokio::test]
async fn a_wrong_token_is_refused_at_once_with_its_code() {
    let d = Daemon::start(
        Command::new(natkit_testkit::workspace_bin("natkit-signal"))
            .env("NATKIT_TURN_SECRET", "api-test")
            .env("NATKIT_SIGNAL_TOKEN_SECRET", "api-token-secret")
            .env("NATKIT_ALT_PORT", "0")
            .env("RUST_LOG", "warn")
            .args(["--listen", "127.0.0.1:0", "--relay-listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0"]),
    );
    let began = Instant::now();
    let e = natkit_peer::connect(Options {
        token: Some("v1.4102444800.YXBp.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
        ..options(&d, "api", RelayMode::Auto)
    })
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Refused {
                code: ErrorCode::Unauthorized,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    assert!(matches!(
        natkit_peer::connect(Options::default()).await,
        Err(Error::Options(_))
    ));
}

/// A lone program's channel fails at the deadline, naming the stage.
#[tokio::test]
async fn a_lone_program_times_out_naming_the_stage() {
    let d = natkit_signal_on_loopback("api-test");
    let s = natkit_peer::connect(Options {
        timeout: Duration::from_secs(2),
        ..options(&d, "alone", RelayMode::Auto)
    })
    .await
    .unwrap();
    match s.channel(None).await {
        Err(Error::Failed(f)) => {
            assert_eq!(f.stage.as_str(), "timeout", "{f}");
            assert!(f.message.starts_with("no partner joined alone"), "{f}");
        }
        other => panic!("{other:?}"),
    }
}

/// `crates/peer/examples/hello.rs` as a user runs it: one answers, the other says hello.
#[test]
fn the_example_says_hello() {
    let example = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples/hello"))
        .unwrap();
    assert!(
        example.exists(),
        "{} is built with the tests (cargo builds examples for test runs)",
        example.display()
    );
    let d = natkit_signal_on_loopback("api-test");
    let url = d.ws_url();
    // Killed on drop.
    let _answer = natkit_testkit::Process::spawn(
        Command::new(&example)
            .args([&url, "hello-room", "--answer"])
            .stdout(Stdio::null()),
    );
    std::thread::sleep(Duration::from_millis(700));
    let out = Command::new(&example)
        .args([&url, "hello-room"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("connected to "), "{text}");
    assert!(text.contains(r#"got Text("hello back: hello")"#), "{text}");
}
