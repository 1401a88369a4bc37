//! `natkit-relay`: the standalone STUN/TURN relay.
//!
//! `natkit-relay [flags]` serves until SIGTERM or ctrl-c; `natkit-relay credentials --user U`
//! prints ICE server JSON with a fresh time-limited credential for the configured secret.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use natkit_stun_turn::announce;
use natkit_stun_turn::config::{self, RelayOptions, Settings};
use natkit_stun_turn::credentials;
use natkit_stun_turn::http;
use natkit_stun_turn::metrics::RelayMetrics;
use natkit_stun_turn::server::{self, Relay};
use tokio::sync::watch;
use tracing::info;

#[derive(Parser, Debug)]
#[command(name = "natkit-relay", version, about = "natkit STUN/TURN relay")]
struct Cli {
    /// TOML configuration file (keys as the flags, with underscores)
    #[arg(long, global = true, value_name = "FILE", env = "NATKIT_CONFIG")]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of text (filter with RUST_LOG)
    #[arg(long, global = true, env = "NATKIT_LOG_JSON")]
    log_json: bool,
    #[command(flatten)]
    relay: RelayOptions,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print ICE server JSON with a time-limited TURN credential
    Credentials {
        /// User id written into the username (EXPIRY:USER)
        #[arg(long)]
        user: String,
        /// Seconds the credential stays valid
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// Host name or IP for the URLs [default: the relay's public or listen address]
        #[arg(long)]
        host: Option<String>,
    },
}

fn load(cli: &Cli) -> Result<Settings> {
    config::load(&cli.relay, cli.config.as_deref()).context("invalid configuration")
}

fn print_credentials(
    settings: &Settings,
    user: &str,
    ttl: u64,
    host: Option<String>,
) -> Result<()> {
    let now = natkit_daemon::unix_now();
    let cred = credentials::mint(settings.relay.secrets.current(), user, ttl, now)
        .with_context(|| format!("cannot mint a credential for user {user:?}"))?;
    let relay = &settings.relay;
    let host = host.unwrap_or_else(|| server::advertised_ip(relay).to_string());
    // The turns: name is the configured one or the certificate's: read it as the relay would.
    let tls = match &relay.streams.tls {
        Some(t) => {
            let keys = natkit_stun_turn::tls::TlsKeys::load(&t.cert, &t.key, t.name.as_deref())
                .context("cannot read the TLS certificate for the turns: URL")?;
            Some((keys.name().to_owned(), t.listen.port()))
        }
        None => None,
    };
    let endpoints = credentials::RelayEndpoints {
        host,
        port: relay.listen.port(),
        tcp: relay.streams.tcp,
        tls,
    };
    let ice = cred.ice_servers(&endpoints);
    println!("{}", serde_json::to_string(&ice)?);
    Ok(())
}

async fn serve(settings: Settings) -> Result<()> {
    let metrics = RelayMetrics::new();
    let listen = settings.relay.listen;
    let public_host = server::advertised_ip(&settings.relay).to_string();
    let capacity = u64::from(settings.relay.total_quota);
    let relay = Relay::bind(settings.relay, metrics.clone())
        .await
        .with_context(|| format!("cannot start the relay on {listen}; is another TURN server (coturn?) using the port?"))?;
    let a = relay.addresses().clone();
    if let Some(keys) = relay.tls_keys() {
        server::announce_tls(&keys);
        tokio::spawn(server::reload_tls_on_sighup(keys));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut metrics_url = "off".to_owned();
    let mut sockets = vec![("stun", a.primary), ("stun-alt", a.alt_port)];
    sockets.extend(a.tcp.map(|t| ("turn-tcp", t)));
    sockets.extend(a.tls.as_ref().map(|(t, _)| ("turn-tls", *t)));
    if let Some((x, y)) = a.alt_ip {
        sockets.extend([("stun-alt-ip", x), ("stun-alt-ip-port", y)]);
    }
    let metrics_task = match settings.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot serve metrics on {addr}; pick another --metrics-listen or \"off\"")
            })?;
            let bound = listener.local_addr()?;
            metrics_url = format!("http://{bound}/metrics");
            sockets.push(("metrics", bound));
            let mut rx = stop_rx.clone();
            Some(tokio::spawn(http::serve_metrics(
                listener,
                metrics.clone(),
                async move {
                    let _ = rx.changed().await;
                },
            )))
        }
        None => None,
    };
    eprintln!(
        "natkit-relay: STUN/TURN on udp {}{} (RFC 5780 alternate port {}{}), relayed addresses on {}, metrics {}",
        a.primary,
        server::stream_summary(&a),
        a.alt_port,
        a.alt_ip.map(|(x, y)| format!(", alternate IP {x} and {y}")).unwrap_or_default(),
        a.relay_ip,
        metrics_url
    );
    eprintln!(
        "{}",
        natkit_daemon::listening_line("natkit-relay", &sockets)
    );
    // SIGUSR1: drain (refuse new allocations, exit when the last one has ended).
    let drain = relay.drain_handle();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut usr1) = signal(SignalKind::user_defined1()) {
            while usr1.recv().await.is_some() {
                drain.start();
            }
        }
    });
    let announcer = settings.cluster.clone().map(|url| {
        let endpoints = a.endpoints(Some(&public_host));
        let m = metrics.clone();
        let mut rx = stop_rx.clone();
        eprintln!(
            "natkit-relay: announcing {}:{} in the cluster store every {} s",
            endpoints.host,
            endpoints.port,
            announce::HEARTBEAT.as_secs()
        );
        tokio::spawn(announce::run(
            url,
            move || announce::Announcement {
                host: endpoints.host.clone(),
                port: endpoints.port,
                tcp: endpoints.tcp,
                tls: endpoints.tls.clone(),
                allocations: m.active_allocations(),
                capacity,
                draining: m.draining.get() == 1,
            },
            async move {
                let _ = rx.changed().await;
            },
        ))
    });
    let mut rx = stop_rx;
    let mut relay_task = tokio::spawn(relay.run(async move {
        let _ = rx.changed().await;
    }));
    tokio::select! {
        _ = natkit_daemon::terminate_signal() => {
            info!("shutting down");
            let _ = stop_tx.send(true);
            (&mut relay_task).await.context("relay task failed")?;
        }
        r = &mut relay_task => {
            r.context("relay task failed")?;
            info!("drained; exiting");
            let _ = stop_tx.send(true);
        }
    }
    if let Some(t) = announcer {
        let _ = t.await;
    }
    if let Some(t) = metrics_task {
        t.await
            .context("metrics task failed")?
            .context("metrics server failed")?;
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    let settings = load(&cli)?;
    match cli.command {
        Some(Command::Credentials { user, ttl, host }) => {
            print_credentials(&settings, &user, ttl, host)
        }
        None => tokio::runtime::Runtime::new()
            .context("cannot start the tokio runtime")?
            .block_on(serve(settings)),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    natkit_daemon::init_tracing(cli.log_json, "info");
    natkit_daemon::raise_fd_limit();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the context, then each cause, joined by ": ".
            eprintln!("natkit-relay: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
