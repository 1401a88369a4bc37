//! `natkit-signal`: with no flags, the whole natkit suite on one machine: signaling on
//! [::]:8080 (both families) and the embedded STUN/TURN relay on UDP 3478 (RFC 5780 alternate port 3479).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use natkit_signal::config::{self, SignalOptions};
use natkit_signal::node::Node;
use tracing::warn;

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

async fn serve(config: config::NodeConfig) -> Result<()> {
    let node = Node::start(config).await?;
    for line in node.banner() {
        eprintln!("natkit-signal: {line}");
    }
    eprintln!(
        "{}",
        natkit_daemon::listening_line("natkit-signal", node.sockets())
    );
    // SIGUSR1 drains: peers move to other nodes, then the node stops as on SIGTERM.
    let drain = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::user_defined1()) {
            Ok(mut usr1) => usr1.recv().await.unwrap_or_default(),
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGUSR1; drain is off");
                std::future::pending().await
            }
        }
    };
    Ok(node.run(natkit_daemon::terminate_signal(), drain).await?)
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
