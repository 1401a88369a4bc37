//! `nat-probe`: classify this host's NAT against a STUN server.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use natkit_nat_probe::{probe, ProbeConfig};

#[derive(Parser, Debug)]
#[command(
    name = "nat-probe",
    version,
    about = "Classify this host's NAT (RFC 5780 / RFC 4787) and say whether peers need TURN",
    after_help = "With one RFC 5780 server (natkit-relay --alt-ip, coturn with two IPs) every test runs.\n\
                  With two or more plain STUN servers only the mapping is compared.\n\
                  Exit status: 0 when a verdict was reached (UDP blocked included), 2 for bad arguments\n\
                  or a probe that cannot start, 3 when the server's host answered that nothing serves\n\
                  STUN on that port (ICMP port unreachable from the server itself: a wrong port or a\n\
                  stopped server, not a NAT verdict)."
)]
struct Cli {
    /// STUN server(s): HOST, HOST:PORT or IP[:PORT] (default port 3478)
    #[arg(value_name = "SERVER[:PORT]", required = true)]
    servers: Vec<String>,
    /// Print one JSON object (schema in docs/nat-probe.md)
    #[arg(long)]
    json: bool,
    /// Also test hairpinning (reaching our own mapped address)
    #[arg(long)]
    hairpin: bool,
    /// Also measure how long an idle mapping survives, up to SECONDS (slow)
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "120")]
    lifetime: Option<u64>,
    /// Do not time one TCP connect to the server first (it sets the UDP retransmission timer
    /// from the measured round trip, so "UDP blocked" is known in about a second or less)
    #[arg(long)]
    no_tcp_rtt: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    natkit_daemon::init_tracing(false, "warn");
    let cfg = ProbeConfig {
        servers: cli.servers,
        hairpin: cli.hairpin,
        lifetime: cli.lifetime.map(Duration::from_secs),
        tcp_rtt_seed: !cli.no_tcp_rtt,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nat-probe: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(probe(&cfg)) {
        Ok(report) => {
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("report serialises")
                );
            } else {
                print!("{}", report.summary());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("nat-probe: error: {msg}");
            match e {
                natkit_nat_probe::ProbeError::NoStunServer { .. } => ExitCode::from(3),
                _ => ExitCode::from(2),
            }
        }
    }
}
