//! natkit-relay over IPv6 beside IPv4, one dual-stack relay binary, same machine, same load,
//! alternating, a fresh relay for each cell:
//! - relayed packets per second and the relay's CPU seconds per million relayed packets, client,
//!   relay and echo peer on `[::1]` against the same on 127.0.0.1 (target: IPv6 within 10% of
//!   IPv4 on both);
//! - resident memory per allocation: dual allocations (ADDITIONAL-ADDRESS-FAMILY, a relayed
//!   address in each family) beside single ones.
//!
//! `cargo build --release --bins && cargo bench -p natkit-bench --bench ipv6`
//! Environment: `NATKIT_BENCH_SECONDS=3` per cell, `NATKIT_BENCH_ROUNDS=3`,
//! `NATKIT_BENCH_ALLOCS=10`, `NATKIT_BENCH_SIZE=100`, `NATKIT_BENCH_MEMORY_ALLOCS=2000`.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use natkit_bench::load::{self, LoadConfig, LoadReport, Pacing, Target};
use natkit_bench::Proc;
use natkit_bench::{env_list, median};

const SECRET: &str = "bench-secret";

/// natkit-relay listening on 127.0.0.1 and [::1] (free ports), loopback peers allowed, no
/// quotas, the client's own family by default: its process and both addresses.
fn relay() -> (Proc, SocketAddr, SocketAddr) {
    let p4 = natkit_testkit::third_party_udp_port();
    let p6 = natkit_testkit::third_party_udp_port();
    let v4: SocketAddr = format!("127.0.0.1:{p4}").parse().unwrap();
    let v6: SocketAddr = format!("[::1]:{p6}").parse().unwrap();
    let child = Command::new(natkit_bench::release_bin(
        "natkit-relay",
        "cargo build --release --bins",
    ))
    .env("NATKIT_TURN_SECRET", SECRET)
    .env("RUST_LOG", "warn")
    .args(["--listen", &v4.to_string(), "--listen", &v6.to_string()])
    .args(["--alt-port", "0", "--metrics-listen", "off", "--tcp", "off"])
    .args(["--allow-peer", "127.0.0.1", "--allow-peer", "::1"])
    .args(["--default-family", "client", "--relay-ports", "10000-39999"])
    .args([
        "--user-quota",
        "0",
        "--total-quota",
        "0",
        "--answers-per-second",
        "0",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let p = Proc(child);
    for addr in [v4, v6] {
        let local: SocketAddr = if addr.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        }
        .parse()
        .unwrap();
        assert!(
            natkit_bench::client::answers_binding(local, addr, 100),
            "natkit-relay did not answer on {addr}"
        );
    }
    (p, v4, v6)
}

fn main() {
    let seconds = env_list("NATKIT_BENCH_SECONDS", "3")[0] as u64;
    let rounds = env_list("NATKIT_BENCH_ROUNDS", "3")[0];
    let allocs = env_list("NATKIT_BENCH_ALLOCS", "10")[0];
    let size = env_list("NATKIT_BENCH_SIZE", "100")[0];
    let memory_allocs = env_list("NATKIT_BENCH_MEMORY_ALLOCS", "2000")[0];
    let rt = natkit_bench::runtime();
    let echo4 = natkit_bench::echo::start();
    let echo6 = natkit_bench::echo::start_on("[::1]:0".parse().unwrap()).unwrap();
    let run = |target: Target, echo: SocketAddr, n: usize, secs: u64, pid: u32| -> LoadReport {
        let cfg = LoadConfig {
            target,
            echo,
            allocations: n,
            payload: size,
            pacing: Pacing::Window((128 / n).max(1)),
            inflight: 128,
            duration: Duration::from_secs(secs),
            send_indications: false,
            server_pid: Some(pid),
        };
        rt.block_on(load::run(&cfg)).unwrap()
    };
    println!("natkit-relay over IPv6 and IPv4: {allocs} allocations, {size}-byte ChannelData to an echo peer, flat out (128 in flight), {seconds} s per cell, {rounds} rounds alternating, loopback");
    println!(
        "{:<6} {:>6} {:>12} {:>10} {:>8}",
        "family", "round", "relayed pps", "CPU s/M", "loss %"
    );
    let mut by_family: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=rounds {
        for (i, name) in ["ipv4", "ipv6"].into_iter().enumerate() {
            let (p, v4, v6) = relay();
            let (server, echo) = if i == 0 { (v4, echo4) } else { (v6, echo6) };
            let target = Target::Turn {
                server,
                secret: SECRET.into(),
            };
            let r = run(target, echo, allocs, seconds, p.0.id());
            println!(
                "{name:<6} {round:>6} {:>12.0} {:>10.2} {:>8.3}",
                r.relayed_pps, r.cpu_s_per_million, r.loss_pct
            );
            by_family[i].push((r.relayed_pps, r.cpu_s_per_million));
        }
    }
    let med = |i: usize, f: fn(&(f64, f64)) -> f64| median(by_family[i].iter().map(f).collect());
    let (pps4, pps6) = (med(0, |r| r.0), med(1, |r| r.0));
    let (cpu4, cpu6) = (med(0, |r| r.1), med(1, |r| r.1));
    println!(
        "medians: IPv4 {pps4:.0} pps, {cpu4:.2} CPU s/M; IPv6 {pps6:.0} pps, {cpu6:.2} CPU s/M"
    );
    println!(
        "IPv6/IPv4: {:.2}x the packets per second, {:.2}x the CPU per packet (targets: >= 0.90x, <= 1.10x)",
        pps6 / pps4,
        cpu6 / cpu4
    );

    println!("memory: {memory_allocs} allocations each, idle but for a second of traffic, RSS growth per allocation");
    let mut mem: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (i, dual) in [false, true].into_iter().enumerate() {
            let (p, v4, _) = relay();
            let target = if dual {
                Target::TurnDual {
                    server: v4,
                    secret: SECRET.into(),
                }
            } else {
                Target::Turn {
                    server: v4,
                    secret: SECRET.into(),
                }
            };
            let r = run(target, echo4, memory_allocs, 1, p.0.id());
            mem[i].push(r.rss_per_allocation_bytes);
        }
    }
    let (single, dual) = (median(mem[0].clone()), median(mem[1].clone()));
    println!(
        "RSS per allocation: single {single:.0} B, dual {dual:.0} B ({:.2}x; medians of {rounds})",
        dual / single
    );
}
