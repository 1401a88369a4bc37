//! `nat-probe`: classify this host's NAT against a STUN server.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use natkit_nat_probe::{probe, Family, ProbeConfig};

#[derive(Parser, Debug)]
#[command(
    name = "nat-probe",
    version,
    about = "Classify this host's NAT (RFC 5780 / RFC 4787) and say whether peers need TURN",
    after_help = "With one RFC 5780 server (natkit-relay --alt-ip, coturn with two IPs) every test runs.\n\
                  With two or more plain STUN servers only the mapping is compared.\n\
                  --family both probes IPv4 and IPv6 in turn and reports each (an IPv6 network\n\
                  usually translates nothing: its verdict is its firewall's filtering).\n\
                  Exit status: 0 when a verdict was reached (UDP blocked included; with --family both,\n\
                  in either family), 2 for bad arguments\n\
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
    /// Address family: 4, 6, or both (one report each, IPv4 first; with --json one object per
    /// line) [default: IPv4 when the server has an IPv4 address, else IPv6]
    #[arg(long, value_name = "4|6|both", value_parser = ["4", "6", "both"])]
    family: Option<String>,
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
    let families = match cli.family.as_deref() {
        None => vec![Family::Auto],
        Some("4") => vec![Family::V4],
        Some("6") => vec![Family::V6],
        _ => vec![Family::V4, Family::V6],
    };
    let both = families.len() > 1;
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nat-probe: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Exit 0 when a family gave a verdict, else the failure's status; 3 (no STUN server) wins.
    let (mut verdicts, mut status) = (0, 2);
    for family in families {
        let cfg = ProbeConfig {
            servers: cli.servers.clone(),
            hairpin: cli.hairpin,
            lifetime: cli.lifetime.map(Duration::from_secs),
            tcp_rtt_seed: !cli.no_tcp_rtt,
            family,
        };
        // With both families each report is headed by its family's name.
        let heading = match family {
            Family::V6 => "IPv6",
            _ => "IPv4",
        };
        let prefix = if both {
            format!("{heading}: ")
        } else {
            String::new()
        };
        match rt.block_on(probe(&cfg)) {
            Ok(report) => {
                verdicts += 1;
                if cli.json {
                    println!(
                        "{}",
                        serde_json::to_string(&report).expect("report serialises")
                    );
                } else {
                    if both {
                        println!("{heading}");
                    }
                    print!("{}", report.summary());
                }
            }
            Err(e) => {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(&format!(": {s}"));
                    src = s.source();
                }
                eprintln!("nat-probe: {prefix}error: {msg}");
                if matches!(e, natkit_nat_probe::ProbeError::NoStunServer { .. }) {
                    status = 3;
                }
            }
        }
    }
    match (status, verdicts) {
        (3, _) => ExitCode::from(3),
        (_, 0) => ExitCode::from(2),
        _ => ExitCode::SUCCESS,
    }
}
