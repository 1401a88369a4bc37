//! `natkit-signal`: with no flags, the whole natkit suite on one machine: signaling on
//! 0.0.0.0:8080 and the embedded STUN/TURN relay on UDP 3478 (RFC 5780 alternate port 3479).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use natkit_signal::config::{self, SignalOptions};
use natkit_signal::server::{self, AppState, IceConfig};
use natkit_stun_turn::metrics::RelayMetrics;
use natkit_stun_turn::server::{advertised_ip, Relay};
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Parser, Debug)]
#[command(
    name = "natkit-signal",
    version,
    about = "natkit signaling server with the embedded STUN/TURN relay"
)]
struct Cli {
    /// TOML configuration file (signal keys at the top, relay keys under [relay])
    #[arg(long, global = true, value_name = "FILE", env = "NATKIT_SIGNAL_CONFIG")]
    config: Option<PathBuf>,
    /// Log as JSON lines (filter with RUST_LOG)
    #[arg(long, global = true)]
    log_json: bool,
    #[command(flatten)]
    args: SignalOptions,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mint a join token for ROOM with the token secret (NATKIT_SIGNAL_TOKEN_SECRET or --token-secret-file)
    Token {
        #[arg(long)]
        room: String,
        /// Seconds the token stays valid
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
}

/// The room of the demo link printed when the token secret is generated for the run.
const DEMO_ROOM: &str = "demo";
/// How long that link's token works.
const DEMO_TOKEN_TTL: u64 = 24 * 3600;

async fn serve(loaded: config::NodeConfig) -> Result<()> {
    let config::NodeConfig {
        signal,
        relay,
        generated_secret,
    } = loaded;
    let registry = prometheus::Registry::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let secrets = relay.secrets.clone();
    let mut relay_task = None;
    let mut relay_addr = None;
    if signal.embedded_relay {
        if generated_secret {
            warn!("no TURN secret configured: generated one for this run; TURN credentials stop working when the server restarts (set NATKIT_TURN_SECRET)");
        }
        let listen = relay.listen;
        let r = Relay::bind(relay.clone(), RelayMetrics::with_registry(registry.clone()))
            .await
            .with_context(|| format!("cannot start the embedded relay on udp {listen}; is coturn or natkit-relay running? (or use --no-relay)"))?;
        relay_addr = Some(r.addresses().clone());
        if let Some(keys) = r.tls_keys() {
            natkit_stun_turn::server::announce_tls(&keys);
            tokio::spawn(natkit_stun_turn::server::reload_tls_on_sighup(keys));
        }
        let mut rx = stop_rx.clone();
        relay_task = Some(tokio::spawn(r.run(async move {
            let _ = rx.changed().await;
        })));
    }
    let fleet = if signal.relays_from_cluster {
        let f = natkit_signal::fleet::Fleet::announced();
        let url = signal.cluster.as_ref().expect("validated").url.clone();
        eprintln!("natkit-signal: handing out the natkit-relays announced in the cluster store, one per room among the serving ones");
        tokio::spawn(natkit_signal::fleet::watch_cluster(Arc::clone(&f), url));
        Some(f)
    } else if !signal.relay_servers.is_empty() {
        let f = natkit_signal::fleet::Fleet::new(&signal.relay_servers);
        eprintln!(
            "natkit-signal: handing out {} relay(s), one per room among the healthy ones: {:?}",
            signal.relay_servers.len(),
            signal.relay_servers
        );
        tokio::spawn(natkit_signal::fleet::watch(Arc::clone(&f), secrets.clone()));
        Some(f)
    } else {
        None
    };
    let ice = IceConfig {
        relay: relay_addr.as_ref().map(|a| a.endpoints(None)),
        fleet: fleet.clone(),
        relay_alt_port: relay_addr.as_ref().map(|a| a.alt_port.port()),
        urls: signal.ice_urls.clone(),
        secrets,
        ttl: signal.credential_ttl,
    };
    let listener = tokio::net::TcpListener::bind(signal.listen)
        .await
        .with_context(|| format!("cannot listen on {}; pick another --listen", signal.listen))?;
    let http = listener.local_addr()?;
    let metrics_listener = match signal.metrics_listen {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot serve metrics on {addr}; pick another --metrics-listen or \"off\"")
        })?),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let open = signal.open;
    let demo_token = match (&signal.token, signal.generated_token) {
        (Some(secret), true) => {
            Some(secret.mint(DEMO_ROOM, DEMO_TOKEN_TTL, natkit_daemon::unix_now()))
        }
        _ => None,
    };
    let cluster = signal.cluster.clone();
    let state = AppState::new(signal, ice, registry, stop_rx.clone());
    state.start_cluster();
    if let (Some(c), Some(node)) = (&cluster, state.cluster_node()) {
        eprintln!(
            "natkit-signal: node {node} of the cluster at {} (lease {} s): rooms are shared with the other nodes",
            c.redacted(),
            c.lease.as_secs()
        );
    }
    let shown = if http.ip().is_unspecified() {
        format!("http://{}:{}", advertised_ip(&relay), http.port())
    } else {
        format!("http://{http}")
    };
    let ws = shown.replacen("http://", "ws://", 1);
    let metrics_shown = metrics_addr
        .map(|a| format!("http://{a}/metrics"))
        .unwrap_or_else(|| "off".into());
    eprintln!("natkit-signal: web page and signaling on {shown}/ (WebSocket {ws}/v1/ws, metrics {metrics_shown})");
    if open {
        warn!("OPEN MODE (--open / auth = \"open\"): anyone who reaches {shown} can join rooms and take TURN credentials; this server is an open relay. Use it only on a private network.");
        eprintln!("natkit-signal: WARNING: open mode: no tokens, anyone can take TURN credentials (an open relay)");
    }
    if let Some(t) = &demo_token {
        eprintln!("natkit-signal: tokens are required; for this run a token secret was generated (set NATKIT_SIGNAL_TOKEN_SECRET or --token-secret-file to mint your own with `natkit-signal token`)");
        eprintln!("natkit-signal: open {shown}/?room={DEMO_ROOM}&token={t} in two browsers (room \"{DEMO_ROOM}\", valid {} h); check a network at {shown}/check?token={t}", DEMO_TOKEN_TTL / 3600);
    }
    match &relay_addr {
        Some(a) => eprintln!(
            "natkit-signal: embedded STUN/TURN relay on udp {}{} (RFC 5780 alternate port {}), relayed addresses on {}",
            a.primary, natkit_stun_turn::server::stream_summary(a), a.alt_port, a.relay_ip
        ),
        None => eprintln!("natkit-signal: no embedded relay; peers get the --ice-server URLs"),
    }
    let mut sockets = vec![("http", http)];
    if let Some(a) = metrics_addr {
        sockets.push(("metrics", a));
    }
    if let Some(a) = &relay_addr {
        sockets.extend([("stun", a.primary), ("stun-alt", a.alt_port)]);
        sockets.extend(a.tcp.map(|t| ("turn-tcp", t)));
        sockets.extend(a.tls.as_ref().map(|(t, _)| ("turn-tls", *t)));
    }
    eprintln!(
        "{}",
        natkit_daemon::listening_line("natkit-signal", &sockets)
    );
    let metrics_task = metrics_listener.map(|l| {
        let mut rx = stop_rx.clone();
        tokio::spawn(server::serve_metrics(l, Arc::clone(&state), async move {
            let _ = rx.changed().await;
        }))
    });
    let mut rx = stop_rx.clone();
    let http_task = tokio::spawn(server::serve(listener, Arc::clone(&state), async move {
        let _ = rx.changed().await;
    }));
    // SIGUSR1 drains: peers move to other nodes, then the node stops as on SIGTERM.
    let drain_timeout = state.drain_timeout();
    let draining = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::user_defined1()) {
            Ok(mut usr1) => {
                usr1.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGUSR1; drain is off");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = natkit_daemon::terminate_signal() => {}
        _ = draining => {
            state.start_drain();
            tokio::select! {
                _ = state.drained(drain_timeout) => {}
                _ = natkit_daemon::terminate_signal() => {}
            }
        }
    }
    info!("shutting down: telling peers, closing allocations");
    let _ = stop_tx.send(true);
    http_task
        .await
        .context("http task")?
        .context("http server failed")?;
    state.leave_cluster().await;
    if let Some(t) = relay_task {
        t.await.context("relay task")?;
    }
    if let Some(t) = metrics_task {
        t.await
            .context("metrics task")?
            .context("metrics server failed")?;
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Token { room, ttl }) => {
            let loaded =
                config::load(&cli.args, cli.config.as_deref()).context("invalid configuration")?;
            anyhow::ensure!(
                !loaded.signal.generated_token && !loaded.signal.open,
                "no token secret: set NATKIT_SIGNAL_TOKEN_SECRET or --token-secret-file FILE (the same the server uses)"
            );
            let secret = loaded.signal.token.context(
                "no token secret: set NATKIT_SIGNAL_TOKEN_SECRET or --token-secret-file FILE",
            )?;
            anyhow::ensure!(
                natkit_signal::rooms::valid_name(&room),
                "room {room:?}: use 1-64 characters of A-Z a-z 0-9 . _ ~ -"
            );
            println!("{}", secret.mint(&room, ttl, natkit_daemon::unix_now()));
            Ok(())
        }
        None => {
            let loaded =
                config::load(&cli.args, cli.config.as_deref()).context("invalid configuration")?;
            tokio::runtime::Runtime::new()
                .context("cannot start the tokio runtime")?
                .block_on(serve(loaded))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    natkit_daemon::init_tracing(cli.log_json, "info");
    natkit_daemon::raise_fd_limit();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("natkit-signal: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
