//! `natkit-peer --signal ws://HOST:8080 --room ROOM (--echo | --send TEXT | --chat) [--relay auto|always|never]`

//!
//! The modes are programs on the library API ([`natkit_peer::connect`]): `--echo` answers every
//! partner on its own channel, `--send` and `--chat` talk to the first partner whose channel
//! opens. Every session event is printed (the partner's own, such as `connected`, for each
//! partner); `closed` is printed once, at the end.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use futures_util::stream::{BoxStream, StreamExt};
use futures_util::FutureExt;
use natkit_peer::events::Event;
use natkit_peer::policy::RelayMode;
use natkit_peer::session::{Failure, Stage};
use natkit_peer::{Channel, Message, Options, Session, SessionEvent};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// WebRTC data-channel peer that falls back to TURN when its NAT needs it
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// natkit-signal URL, e.g. ws://203.0.113.5:8080 or wss://signal.example.com (its TLS port); repeat it (or separate with commas) for
    /// the nodes of a cluster: the first that answers is joined, a lost connection rejoins
    /// through the next
    #[arg(long, required = true, value_delimiter = ',')]
    signal: Vec<String>,
    #[arg(long)]
    room: String,
    /// Join token (when the server requires tokens)
    #[arg(long, env = "NATKIT_PEER_TOKEN")]
    token: Option<String>,
    /// Peer id to ask for
    #[arg(long)]
    peer_id: Option<String>,
    /// auto: probe the NAT and relay only when it needs TURN
    #[arg(long, value_enum, default_value_t = RelayMode::Auto)]
    relay: RelayMode,
    /// Answer every data-channel message with the same text
    #[arg(long, conflicts_with_all = ["send", "chat"], required_unless_present_any = ["send", "chat"])]
    echo: bool,
    /// Send each line of standard input; print what arrives; after the input ends, stop once
    /// nothing has arrived for a second
    #[arg(long, conflicts_with = "send")]
    chat: bool,
    /// Send TEXT once connected, print the reply, exit 0
    #[arg(long, value_name = "TEXT")]
    send: Option<String>,
    /// Seconds before a failed attempt ends with a non-zero exit (an echo peer stops then)
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// One JSON object per line per event
    #[arg(long)]
    json: bool,
    /// Do not renew TURN credentials before they expire (a relayed session then ends when the
    /// relay stops accepting the old credential); for diagnosis
    #[arg(long)]
    no_renew: bool,
    /// PEM file of a CA to trust for turns: relays and a wss:// natkit-signal, beside the
    /// system's roots (and SSL_CERT_FILE): for private deployments
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    natkit_daemon::init_tracing(false, "warn");
    let turn_tls = match &cli.tls_ca {
        Some(path) => match natkit_peer::peer::turn_tls_config(path) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("natkit-peer: error: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let options = Options {
        signal: cli.signal,
        room: cli.room,
        token: cli.token,
        peer_id: cli.peer_id,
        relay: cli.relay,
        timeout: Duration::from_secs(cli.timeout),
        renew: !cli.no_renew,
        turn_tls,
    };
    let mode = match (cli.send, cli.chat) {
        (Some(t), _) => Mode::Send(t),
        (None, true) => Mode::Chat,
        (None, false) => Mode::Echo,
    };
    let json = cli.json;
    let emit = move |e: &Event| {
        if json {
            println!("{}", serde_json::to_string(e).expect("events serialise"));
        } else {
            println!("{}", e.human());
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("natkit-peer: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(options, mode, &emit)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            emit(&Event::Failed {
                stage: f.stage.as_str(),
                message: f.message.clone(),
            });
            eprintln!("natkit-peer: error: {} failed: {}", f.stage, f.message);
            ExitCode::FAILURE
        }
    }
}

enum Mode {
    Echo,
    Send(String),
    Chat,
}

/// `--chat` after the end of input: done once nothing has arrived for this long.
const CHAT_QUIET: Duration = Duration::from_secs(1);

/// Joins, runs the mode, closes the session; every event is printed as it comes.
async fn run(options: Options, mode: Mode, emit: &dyn Fn(&Event)) -> Result<(), Failure> {
    let deadline = Instant::now() + options.timeout;
    let session = natkit_peer::connect(options).await.map_err(failure)?;
    let mut out = Printer {
        events: session.events(),
        emit,
    };
    let outcome = match mode {
        Mode::Echo => echo(&session, &mut out, deadline).await,
        Mode::Send(text) => send(&session, &mut out, deadline, text).await,
        Mode::Chat => chat(&session, &mut out, deadline).await,
    };
    let closed = session.close().await;
    // What the end brought (the `closed` event), the stream ends with the session.
    out.drain_all().await;
    outcome.and(closed)
}

/// `--echo`: every partner's channel answered with what it sends; done when the last channel
/// served has closed, or at the timeout once one was served.
async fn echo(session: &Session, out: &mut Printer<'_>, deadline: Instant) -> Result<(), Failure> {
    let (tx, mut heard) = mpsc::unbounded_channel::<Option<Message>>();
    let (mut served, mut open) = (0usize, 0usize);
    loop {
        tokio::select! {
            biased;
            Some(e) = out.events.next() => out.show(e),
            m = heard.recv() => match m.expect("a sender is held") {
                Some(m) => out.message(&m),
                None => {
                    open -= 1;
                    if open == 0 {
                        return Ok(());
                    }
                }
            },
            ch = session.channel(None) => {
                let mut ch = ch.map_err(failure)?;
                out.drain();
                (served, open) = (served + 1, open + 1);
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Some(m) = ch.recv().await {
                        let _ = tx.send(Some(m.clone()));
                        if ch.send(m).await.is_err() {
                            break;
                        }
                    }
                    let _ = tx.send(None);
                });
            }
            _ = tokio::time::sleep_until(deadline), if served > 0 => return Ok(()),
        }
    }
}

/// `--send TEXT`: the first partner's channel, the text, its reply.
async fn send(
    session: &Session,
    out: &mut Printer<'_>,
    deadline: Instant,
    text: String,
) -> Result<(), Failure> {
    let mut ch = out.during(session.channel(None)).await.map_err(failure)?;
    ch.send(text).await.map_err(failure)?;
    tokio::select! {
        reply = out.during(ch.recv()) => match reply {
            Some(m) => {
                out.message(&m);
                Ok(())
            }
            None => Err(Failure::new(Stage::Dtls, "the data channel closed")),
        },
        _ = tokio::time::sleep_until(deadline) => {
            Err(Failure::new(Stage::Timeout, "no reply to the message in time"))
        }
    }
}

/// `--chat`: standard input's lines to the first partner, what it sends printed; after the input
/// ends, done once nothing has arrived for a second.
async fn chat(session: &Session, out: &mut Printer<'_>, deadline: Instant) -> Result<(), Failure> {
    let mut ch: Channel = out.during(session.channel(None)).await.map_err(failure)?;
    let (line_tx, mut lines) = mpsc::channel::<String>(256);
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut input = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(l)) = input.next_line().await {
            if line_tx.send(l).await.is_err() {
                return;
            }
        }
    });
    let mut quiet_from: Option<Instant> = None;
    loop {
        let end = quiet_from.map_or(deadline, |q| (q + CHAT_QUIET).min(deadline));
        tokio::select! {
            biased;
            Some(e) = out.events.next() => out.show(e),
            line = lines.recv(), if quiet_from.is_none() => match line {
                Some(l) => ch.send(l).await.map_err(failure)?,
                None => quiet_from = Some(Instant::now()),
            },
            m = ch.recv() => match m {
                Some(m) => {
                    out.message(&m);
                    quiet_from = quiet_from.map(|_| Instant::now());
                }
                None => return Ok(()),
            },
            // A chat that connected ends at its timeout.
            _ = tokio::time::sleep_until(end) => return Ok(()),
        }
    }
}

/// The session's events, printed in order with the mode's own `message` events.
struct Printer<'a> {
    events: BoxStream<'static, SessionEvent>,
    emit: &'a dyn Fn(&Event),
}

impl Printer<'_> {
    fn show(&self, e: SessionEvent) {
        // A partner's channel ending is not the command's end: `closed` comes once.
        if e.peer.is_some() && matches!(e.event, Event::Closed { .. }) {
            return;
        }
        (self.emit)(&e.event);
    }

    fn message(&self, m: &Message) {
        (self.emit)(&Event::Message {
            data: m.to_text_lossy(),
        });
    }

    /// Prints the events already there (they happened before what comes next).
    fn drain(&mut self) {
        while let Some(Some(e)) = self.events.next().now_or_never() {
            self.show(e);
        }
    }

    async fn drain_all(&mut self) {
        while let Some(e) = self.events.next().await {
            self.show(e);
        }
    }

    /// Waits for `f`, printing events meanwhile and those that came before its result.
    async fn during<T>(&mut self, f: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(f);
        let r = loop {
            tokio::select! {
                biased;
                Some(e) = self.events.next() => self.show(e),
                r = &mut f => break r,
            }
        };
        self.drain();
        r
    }
}

fn failure(e: natkit_peer::Error) -> Failure {
    match e {
        natkit_peer::Error::Failed(f) => f,
        natkit_peer::Error::Refused { .. } => Failure::new(Stage::Signaling, e.to_string()),
        other => Failure::new(Stage::Dtls, other.to_string()),
    }
}
