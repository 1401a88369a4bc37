//! `natkit-relay`: the standalone STUN/TURN relay.
//!
//! `natkit-relay [flags]` serves until SIGTERM or ctrl-c; `natkit-relay credentials --user U`
//! prints ICE server JSON with a fresh time-limited credential for the configured secret.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use natkit_stun_turn::config::{self, CertSource, RelayOptions, Settings};
use natkit_stun_turn::credentials;
use natkit_stun_turn::node::Node;
use natkit_stun_turn::server;

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
            let name = match &t.source {
                CertSource::Files { cert, key } => {
                    natkit_stun_turn::tls::TlsKeys::load(cert, key, t.name.as_deref())
                        .context("cannot read the TLS certificate for the turns: URL")?
                        .name()
                        .to_owned()
                }
                CertSource::Acme(acme) => t.name.clone().unwrap_or(acme.domains[0].clone()),
            };
            Some((name, t.listen.port()))
        }
        None => None,
    };
    let endpoints = credentials::RelayEndpoints {
        host,
        port: relay.primary_listen().port(),
        tcp: relay.streams.tcp,
        tls,
    };
    let ice = cred.ice_servers(&endpoints);
    println!("{}", serde_json::to_string(&ice)?);
    Ok(())
}

async fn serve(settings: Settings) -> Result<()> {
    let node = Node::start(settings).await?;
    eprintln!("natkit-relay: {}", node.banner());
    eprintln!(
        "{}",
        natkit_daemon::listening_line("natkit-relay", node.sockets())
    );
    // SIGUSR1: drain (refuse new allocations, exit when the last one has ended).
    let drain = node.drain_handle();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut usr1) = signal(SignalKind::user_defined1()) {
            while usr1.recv().await.is_some() {
                drain.start();
            }
        }
    });
    node.run(natkit_daemon::terminate_signal())
        .await
        .context("relay failed")
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
