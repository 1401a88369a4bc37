//! Shared harness for natkit-signal's loopback tests: the signaling server and its embedded
//! relay in-process on 127.0.0.1, real WebSocket clients, and small JSON/HTTP helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use natkit_daemon::Clock;
use natkit_proto::{ClientMsg, ServerMsg};
use natkit_signal::config::{SignalConfig, SignalOptions};
use natkit_signal::server::{self, AppState, IceConfig};
use natkit_stun_turn::config::{RelayConfig, RelayOptions, SecretText};
use natkit_stun_turn::metrics::RelayMetrics;
use natkit_stun_turn::server::Relay;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Suite {
    pub http: SocketAddr,
    pub state: Arc<AppState>,
    pub stop: watch::Sender<bool>,
    pub relay: SocketAddr,
    pub registry: prometheus::Registry,
    /// The server's and the embedded relay's clock: tests move it instead of sleeping.
    pub clock: Clock,
}

impl Drop for Suite {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// An open server (no token) with the settings `set` makes.
pub async fn start_with(set: impl FnOnce(&mut SignalOptions)) -> Suite {
    let mut options = SignalOptions::default();
    set(&mut options);
    start(options, None).await
}

/// A server that needs join tokens signed with `token`, with the settings `set` makes.
pub async fn start_tokened(token: &str, set: impl FnOnce(&mut SignalOptions)) -> Suite {
    let mut options = SignalOptions::default();
    set(&mut options);
    start(options, Some(token)).await
}

pub async fn start(extra: SignalOptions, token: Option<&str>) -> Suite {
    let defaults = SignalOptions {
        listen: Some("127.0.0.1:0".into()),
        // Tests that give no token secret want an open server (the default requires tokens).
        auth: token.is_none().then(|| "open".into()),
        ping_interval: Some("1".into()),
        idle_timeout: Some("3".into()),
        ..Default::default()
    };
    let options = SignalOptions {
        token_secret: token.map(|t| SecretText(t.into())),
        ..extra.over(&defaults)
    };
    let settings = SignalConfig::from_options(options, |_| unreachable!()).unwrap();
    let relay_cfg = RelayConfig::try_from(RelayOptions {
        listen: vec!["127.0.0.1:0".into()],
        alt_port: Some("0".into()),
        turn_secret: Some(SecretText("signal-test-secret".into())),
        ..Default::default()
    })
    .unwrap();
    let registry = prometheus::Registry::new();
    let (stop, stop_rx) = watch::channel(false);
    let clock = Clock::manual();
    let relay = Relay::bind_with_clock(
        relay_cfg,
        RelayMetrics::with_registry(registry.clone()),
        clock.clone(),
    )
    .await
    .unwrap();
    let relay_addr = relay.addresses().primary;
    let ice = IceConfig {
        fleet: None,
        relay: Some(natkit_proto::RelayEndpoints::udp(
            &relay_addr.ip().to_string(),
            relay_addr.port(),
        )),
        relay_alt_port: Some(relay.addresses().alt_port.port()),
        relay_second: None,
        urls: vec![],
        secrets: relay.secrets().clone(),
        ttl: settings.credential_ttl,
    };
    let mut rx = stop_rx.clone();
    tokio::spawn(relay.run(async move {
        let _ = rx.changed().await;
    }));
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .unwrap();
    let http = listener.local_addr().unwrap();
    let state = AppState::with_clock(
        settings,
        ice,
        registry.clone(),
        stop_rx.clone(),
        clock.clone(),
    );
    state.start_cluster();
    let mut rx = stop_rx;
    tokio::spawn(server::serve(
        listener,
        Arc::clone(&state),
        None,
        None,
        async move {
            let _ = rx.changed().await;
        },
    ));
    Suite {
        http,
        state,
        stop,
        relay: relay_addr,
        registry,
        clock,
    }
}

impl Suite {
    pub async fn connect(&self, query: &str) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/ws{query}", self.http))
            .await
            .unwrap();
        ws
    }

    pub async fn join(&self, room: &str, id: Option<&str>) -> (Ws, Value) {
        let mut ws = self.connect("").await;
        let join = ClientMsg::Join {
            room: room.into(),
            peer_id: id.map(str::to_owned),
            token: None,
            version: Some(natkit_proto::PROTOCOL_VERSION),
        };
        send_msg(&mut ws, &join).await;
        let w = recv(&mut ws).await;
        assert_eq!(w["type"], "welcome", "{w}");
        (ws, w)
    }

    pub fn metric(&self, series: &str) -> f64 {
        let mut buf = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &self.registry.gather(),
            &mut buf,
        )
        .unwrap();
        natkit_testkit::metric(&String::from_utf8(buf).unwrap(), series)
    }

    /// A raw HTTP/1.0 request: the status, the headers (names in lower case) and the body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Vec<(String, String)>, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = TcpStream::connect(self.http).await.unwrap();
        let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {}\r\n", self.http);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        let code: u16 = lines.next().unwrap()[9..12].parse().unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        (code, headers, body.to_owned())
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = TcpStream::connect(self.http).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).await.unwrap();
        let code: u16 = body[9..12].parse().unwrap();
        let json = body.split_once("\r\n\r\n").unwrap().1;
        (code, serde_json::from_str(json).unwrap_or(Value::Null))
    }
}

pub async fn send(ws: &mut Ws, v: &Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next message as JSON (pings are answered by tungstenite while reading). Every message is
/// also read with natkit-proto's types and must be one of them, written exactly as they write
/// it: the server sends nothing the shared protocol does not know.
pub async fn recv(ws: &mut Ws) -> Value {
    let text = recv_text(ws).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    let typed =
        ServerMsg::parse(&text).unwrap_or_else(|e| panic!("not a server message ({e}): {text}"));
    assert_ne!(
        typed,
        ServerMsg::Unknown,
        "undocumented message type: {text}"
    );
    assert_eq!(
        serde_json::to_value(&typed).unwrap(),
        v,
        "the shared type reads it differently"
    );
    v
}

/// The next message, typed.
pub async fn recv_msg(ws: &mut Ws) -> ServerMsg {
    ServerMsg::parse(&recv_text(ws).await).unwrap()
}

/// Sends a typed client message.
pub async fn send_msg(ws: &mut Ws, m: &ClientMsg) {
    ws.send(Message::Text(m.to_text().into())).await.unwrap();
}

async fn recv_text(ws: &mut Ws) -> String {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no message within 5 s")
            .expect("stream ended")
            .expect("websocket error");
        match m {
            Message::Text(t) => return t.as_str().to_owned(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => continue,
        }
    }
}

/// Asserts nothing but pings arrives for `ms`.
pub async fn quiet(ws: &mut Ws, ms: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, ws.next()).await {
        assert!(
            matches!(m, Message::Ping(_) | Message::Pong(_)),
            "unexpected {m:?}"
        );
    }
}

pub async fn close_code(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(Duration::from_secs(6), ws.next())
            .await
            .expect("no close in time")
        {
            Some(Ok(Message::Close(c))) => return c.map(|c| c.code),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// The relay a `join` to `room` through natkit-signal at `ws` (`ws://HOST:PORT`) is handed: the
/// host:port of its `turn:` UDP URL (a TCP URL for it is handed out too), or `None` when the
/// welcome names no TURN server.
pub async fn relay_handed_out(ws: &str, room: &str) -> Option<SocketAddr> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{ws}/v1/ws"))
        .await
        .unwrap();
    ws.send(Message::text(format!(
        r#"{{"type":"join","room":"{room}"}}"#
    )))
    .await
    .unwrap();
    let welcome: Value = loop {
        let m = ws.next().await.unwrap().unwrap();
        if let Message::Text(t) = m {
            break serde_json::from_str(&t).unwrap();
        }
    };
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let urls: Vec<String> = welcome["ice_servers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["urls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u.as_str().unwrap().to_owned())
        })
        .collect();
    let _ = ws.close(None).await;
    let turn = urls
        .iter()
        .find(|u| u.starts_with("turn:") && u.ends_with("transport=udp"))?;
    let hostport = turn.trim_start_matches("turn:").split('?').next().unwrap();
    assert!(
        urls.iter()
            .any(|u| u.starts_with(&format!("turn:{hostport}?")) && u.ends_with("transport=tcp")),
        "TCP is handed out too: {urls:?}"
    );
    Some(hostport.parse().unwrap())
}
