//! `natkit-bench`: load for TURN relays.
//!
//! ```text
//! natkit-bench relay --server 127.0.0.1:3478 --secret S --server-pid PID --allocations 100 --size 100 [--rate PPS | --window N] [--send]
//! natkit-bench alloc-rate --server 127.0.0.1:3478 --secret S --count 5000 --concurrency 64
//! natkit-bench echo --listen 127.0.0.1:9000
//! natkit-bench forwarder --listen 127.0.0.1:9001 --peer 127.0.0.1:9000
//! natkit-bench relay --plain --server 127.0.0.1:9001 --echo 127.0.0.1:9000 --server-pid PID
//! natkit-bench relay --transport tls --tls-ca ca.pem --server 127.0.0.1:5349 --secret S --allocations 10
//! ```
//! The relay load bounces off a built-in UDP echo peer on 127.0.0.1 (the relay must allow
//! loopback peers: `--allow-peer 127.0.0.1`, coturn `--allow-loopback-peers`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use natkit_bench::load::{self, LoadConfig, Pacing, Target};

/// The largest payload: what fits one IPv4 UDP datagram with a Send indication's framing around it.
const MAX_PAYLOAD: usize = 65_000;

#[derive(Parser)]
#[command(name = "natkit-bench", about = "Load generator for TURN relays")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Relayed ChannelData (or Send indications) through N allocations to an echo peer
    Relay {
        #[arg(long)]
        server: SocketAddr,
        /// TURN REST API secret (or NATKIT_TURN_SECRET); not needed with --plain
        #[arg(long, env = "NATKIT_TURN_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// The server's pid, for CPU and memory figures
        #[arg(long)]
        server_pid: Option<u32>,
        #[arg(long, default_value_t = 10)]
        allocations: usize,
        /// Payload bytes per datagram (at least 16)
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Total datagrams per second (paced); without it, flat out with --window
        #[arg(long)]
        rate: Option<u64>,
        /// Packets in flight per allocation when not paced
        #[arg(long, default_value_t = 8)]
        window: usize,
        /// Packets in flight over all allocations when not paced
        #[arg(long, default_value_t = 128)]
        inflight: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Send indications instead of ChannelData
        #[arg(long)]
        send: bool,
        /// Treat --server as a plain UDP forwarder (no TURN)
        #[arg(long)]
        plain: bool,
        /// The echo peer's address: the forwarder's --peer with --plain; for a TURN server, an
        /// echo peer run elsewhere (`natkit-bench echo`) [default: one in this process, on
        /// loopback]
        #[arg(long)]
        echo: Option<SocketAddr>,
        /// How to reach the server: udp, or tcp / tls (one connection per allocation, --window
        /// messages in flight on each; --server is then the TCP or TLS address)
        #[arg(long, default_value = "udp", value_parser = ["udp", "tcp", "tls"])]
        transport: String,
        /// PEM file of the CA that signed the server's certificate (--transport tls)
        #[arg(long, value_name = "FILE")]
        tls_ca: Option<std::path::PathBuf>,
        /// Name to verify the server's certificate against [default: the --server IP]
        #[arg(long, value_name = "NAME")]
        tls_name: Option<String>,
    },
    /// Allocations per second until --count, failures counted
    AllocRate {
        #[arg(long)]
        server: SocketAddr,
        #[arg(long, env = "NATKIT_TURN_SECRET", hide_env_values = true)]
        secret: String,
        #[arg(long, default_value_t = 5000)]
        count: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Run the UDP echo peer alone (for a forwarder run by hand: its --peer)
    Echo {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Run a plain UDP forwarder (the physical ceiling of a user-space relay)
    Forwarder {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long)]
        peer: SocketAddr,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Relay {
            server,
            secret,
            server_pid,
            allocations,
            size,
            rate,
            window,
            inflight,
            seconds,
            send,
            plain,
            echo,
            transport,
            tls_ca,
            tls_name,
        } => {
            anyhow::ensure!(
                (16..=MAX_PAYLOAD).contains(&size),
                "--size must be 16 (sequence number and timestamp) to {MAX_PAYLOAD} bytes (one UDP datagram with its TURN framing)"
            );
            anyhow::ensure!(allocations >= 1, "--allocations must be at least 1");
            anyhow::ensure!(
                window >= 1 && inflight >= 1,
                "--window and --inflight must be at least 1"
            );
            anyhow::ensure!(
                rate != Some(0),
                "--rate must be at least 1 datagram per second"
            );
            if transport != "udp" {
                anyhow::ensure!(!plain && !send && rate.is_none(), "--transport tcp/tls drives a TURN server with ChannelData, closed loop: no --plain, --send or --rate");
                let secret = secret.context(
                    "a TURN server needs the REST API secret: --secret or NATKIT_TURN_SECRET",
                )?;
                let stream_transport = if transport == "tls" {
                    let path = tls_ca.context(
                        "--transport tls needs --tls-ca (the CA of the server's certificate)",
                    )?;
                    let pem = std::fs::read(&path)
                        .with_context(|| format!("cannot read --tls-ca {}", path.display()))?;
                    natkit_bench::stream::StreamTransport::Tls {
                        config: natkit_bench::stream::tls_config(&pem)
                            .with_context(|| format!("--tls-ca {}", path.display()))?,
                        name: tls_name.unwrap_or_else(|| server.ip().to_string()),
                    }
                } else {
                    natkit_bench::stream::StreamTransport::Tcp
                };
                let cfg = natkit_bench::stream::StreamLoadConfig {
                    server,
                    secret,
                    transport: stream_transport,
                    echo: natkit_bench::echo::start(),
                    allocations,
                    payload: size,
                    window,
                    duration: Duration::from_secs(seconds),
                    server_pid,
                };
                let report = natkit_bench::stream::run(&cfg).await?;
                println!("{}", serde_json::to_string(&report)?);
                return Ok(());
            }
            let echo = match (plain, echo) {
                (true, Some(e)) => e,
                (true, None) => anyhow::bail!("--plain needs --echo (the forwarder's peer)"),
                (false, Some(e)) => e,
                (false, None) => natkit_bench::echo::start(),
            };
            let target = match (plain, secret) {
                (true, _) => Target::Plain { forwarder: server },
                (false, Some(secret)) => Target::Turn { server, secret },
                (false, None) => anyhow::bail!(
                    "a TURN server needs the REST API secret: --secret or NATKIT_TURN_SECRET (or --plain for a forwarder)"
                ),
            };
            let cfg = LoadConfig {
                target,
                echo,
                allocations,
                payload: size,
                pacing: rate.map(Pacing::Rate).unwrap_or(Pacing::Window(window)),
                inflight,
                duration: Duration::from_secs(seconds),
                send_indications: send,
                server_pid,
            };
            let report = load::run(&cfg).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Cmd::AllocRate {
            server,
            secret,
            count,
            concurrency,
        } => {
            let r = load::allocation_rate(server, &secret, count, concurrency).await;
            println!("{}", serde_json::to_string(&r)?);
        }
        Cmd::Echo { listen } => {
            let addr = natkit_bench::echo::start_on(listen)
                .with_context(|| format!("cannot bind the echo peer to {listen}"))?;
            eprintln!(
                "{}",
                natkit_daemon::listening_line("natkit-bench", &[("echo", addr)])
            );
            std::future::pending::<()>().await;
        }
        Cmd::Forwarder { listen, peer } => {
            tokio::task::spawn_blocking(move || {
                natkit_bench::forwarder::run(listen, peer, |a| {
                    eprintln!(
                        "{}",
                        natkit_daemon::listening_line("natkit-bench", &[("forwarder", a)])
                    )
                })
            })
            .await??;
        }
    }
    Ok(())
}
