//! `natkit-peer --signal ws://HOST:8080 --room ROOM (--echo | --send TEXT | --chat) [--relay auto|always|never]`

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use natkit_peer::events::Event;
use natkit_peer::peer::{run, Mode, PeerConfig};
use natkit_peer::policy::RelayMode;

/// WebRTC data-channel peer that falls back to TURN when its NAT needs it
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// natkit-signal URL, e.g. ws://203.0.113.5:8080; repeat it (or separate with commas) for
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
    /// PEM file of a CA to trust for turns: relays, beside the system's roots (and
    /// SSL_CERT_FILE): for private deployments
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
    let cfg = PeerConfig {
        signal: cli.signal,
        room: cli.room,
        peer_id: cli.peer_id,
        token: cli.token,
        relay: cli.relay,
        mode: match (cli.send, cli.chat) {
            (Some(t), _) => Mode::Send(t),
            (None, true) => Mode::Chat,
            (None, false) => Mode::Echo,
        },
        timeout: Duration::from_secs(cli.timeout),
        renew: !cli.no_renew,
        turn_tls,
    };
    let json = cli.json;
    let emit = move |e: Event| {
        if json {
            println!("{}", serde_json::to_string(&e).expect("events serialise"));
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
    match rt.block_on(run(&cfg, &emit)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            emit(Event::Failed {
                stage: f.stage.as_str(),
                message: f.message.clone(),
            });
            eprintln!("natkit-peer: error: {} failed: {}", f.stage, f.message);
            ExitCode::FAILURE
        }
    }
}
