//! natkit-relay's kernel path (`--kernel-path eth0`) beside its userspace path and coturn, on a
//! small network of namespaces: the load generator, the relay and the echo peer each in their
//! own, on one bridge, every packet crossing veth links as it would cross a NIC. The relay is
//! pinned to the last CPU, the load and the echo peer to the others.
//!
//! `cargo build --release --bins --features natkit-stun-turn/kernel-path && cargo bench -p
//! natkit-bench --bench kernel_path` (as root: it makes namespaces and loads a BPF program).
//! Environment: `NATKIT_BENCH_ALLOCS=1,10,100,1000`, `NATKIT_BENCH_SIZES=100,1000`,
//! `NATKIT_BENCH_SECONDS=3`, `NATKIT_BENCH_ROUNDS=2` (the three servers alternate, fresh
//! processes for each cell), `NATKIT_BENCH_INFLIGHT_BYTES=65536` as in `relay_vs_coturn`.
//!
//! On loopback a kernel path would do its work in the sender's softirq and look free to the
//! server; here too the program runs in whichever CPU received the packet, which is the load's.
//! So the column that judges it is the machine's: every CPU's busy time, softirq included, per
//! relayed datagram. The senders compute UDP checksums in software (`ethtool -K eth0 tx off`):
//! veth would otherwise hand the relay packets whose checksum is still to be computed, which the
//! program leaves to userspace, as no packet from a real NIC is. That also makes the userspace
//! relays verify checksums in software, which a NIC does for them in a real deployment: a bias in
//! the kernel path's favour of a checksum over the payload, each way (docs/performance.md).

use std::process::{Child, Stdio};

use natkit_lab::{in_netns, veth, Netns};

const SECRET: &str = "bench-secret";
const RELAY: &str = "203.0.113.1";
const LOAD: &str = "203.0.113.10";
const PEER: &str = "203.0.113.20";
const ECHO_PORT: u16 = 9000;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Server {
    Coturn,
    Natkit,
    Kernel,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Coturn => "coturn",
            Server::Natkit => "natkit",
            Server::Kernel => "natkit-kernel",
        }
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn release_bin(name: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        p.exists(),
        "build it first: cargo build --release --bins --features natkit-stun-turn/kernel-path ({} missing)",
        p.display()
    );
    p.display().to_string()
}

/// The namespaces: `br` holds the bridge; relay, load and peer hang off it.
struct Net {
    relay: Netns,
    load: Netns,
    peer: Netns,
    _br: Netns,
}

fn net() -> Net {
    let id = format!("nkb{}", std::process::id());
    let br = Netns::new(format!("{id}-br"));
    br.ip(&["link", "add", "br0", "type", "bridge"]);
    br.ip(&["link", "set", "br0", "up"]);
    let mut hosts = Vec::new();
    for (name, ip) in [("relay", RELAY), ("load", LOAD), ("peer", PEER)] {
        let ns = Netns::new(format!("{id}-{name}"));
        veth(&ns, "eth0", &br, name);
        br.ip(&["link", "set", name, "master", "br0"]);
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        if name != "relay" {
            ns.run("ethtool", &["-K", "eth0", "tx", "off"]);
        }
        hosts.push(ns);
    }
    let peer = hosts.pop().unwrap();
    let load = hosts.pop().unwrap();
    let relay = hosts.pop().unwrap();
    Net {
        relay,
        load,
        peer,
        _br: br,
    }
}

fn cpus() -> (String, String) {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        n >= 2,
        "the kernel path benchmark needs two CPUs (the relay's and the load's)"
    );
    let load: Vec<String> = (0..n - 1).map(|c| c.to_string()).collect();
    ((n - 1).to_string(), load.join(","))
}

fn start(net: &Net, server: Server, cpu: &str) -> Proc {
    let mut c = net.relay.cmd("taskset");
    c.args(["-c", cpu]);
    match server {
        Server::Coturn => {
            let dir = std::env::temp_dir()
                .join(format!("natkit-bench-kernel-coturn-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            c.arg("turnserver");
            natkit_bench::coturn::args(
                &mut c,
                format!("{RELAY}:3478").parse().unwrap(),
                SECRET,
                (10000, 29999),
                &dir,
            );
        }
        Server::Natkit | Server::Kernel => {
            c.arg(release_bin("natkit-relay"))
                .env("NATKIT_TURN_SECRET", SECRET)
                .env("RUST_LOG", "warn")
                .args(["--listen", &format!("{RELAY}:3478"), "--alt-port", "0"])
                .args(["--metrics-listen", "off", "--allow-peer", PEER])
                .args(["--user-quota", "0", "--total-quota", "0"])
                .args(["--answers-per-second", "0", "--relay-ports", "10000-29999"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if server == Server::Kernel {
                c.args(["--kernel-path", "eth0"]);
            }
        }
    }
    let child = c.spawn().expect("start the server");
    let p = Proc(child);
    // Ready when it answers a Binding request sent from the load's namespace.
    let ready = in_netns(&net.load.name, || {
        let (local, server) = (format!("{LOAD}:0"), format!("{RELAY}:3478"));
        natkit_bench::client::answers_binding(local.parse().unwrap(), server.parse().unwrap(), 100)
    });
    assert!(ready, "{server:?} did not start");
    p
}

/// One flat-out run of `natkit-bench relay` in the load's namespace; its JSON report.
fn run(
    net: &Net,
    server: Server,
    pid: u32,
    load_cpus: &str,
    n: usize,
    size: usize,
    seconds: u64,
    inflight: usize,
) -> serde_json::Value {
    let out = net
        .load
        .cmd("taskset")
        .args(["-c", load_cpus, &release_bin("natkit-bench"), "relay"])
        .args(["--server", &format!("{RELAY}:3478"), "--secret", SECRET])
        .args(["--echo", &format!("{PEER}:{ECHO_PORT}")])
        .args(["--server-pid", &pid.to_string()])
        .args(["--allocations", &n.to_string(), "--size", &size.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .args([
            "--inflight",
            &inflight.to_string(),
            "--window",
            &(inflight / n).max(1).to_string(),
        ])
        .output()
        .expect("natkit-bench relay");
    assert!(
        out.status.success(),
        "{server:?} {n}x{size}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the load's JSON report")
}

fn f(r: &serde_json::Value, k: &str) -> f64 {
    r[k].as_f64().unwrap_or(f64::NAN)
}

/// The relay CPU's busy seconds per million relayed datagrams.
fn core_s_per_million(r: &serde_json::Value, cpu: usize) -> f64 {
    let busy = r["cpu_busy_s"][cpu].as_f64().unwrap_or(f64::NAN);
    busy / (f(r, "received") * 2.0) * 1e6
}

fn env_list(key: &str, default: &str) -> Vec<usize> {
    std::env::var(key)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{key}: {s:?} is not a number"))
        })
        .collect()
}

fn main() {
    let euid_root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        .unwrap_or(false);
    assert!(euid_root, "the kernel path benchmark makes network namespaces and loads a BPF program: run it as root");
    let allocs = env_list("NATKIT_BENCH_ALLOCS", "1,10,100,1000");
    let sizes = env_list("NATKIT_BENCH_SIZES", "100,1000");
    let seconds = env_list("NATKIT_BENCH_SECONDS", "3")[0] as u64;
    let rounds = env_list("NATKIT_BENCH_ROUNDS", "2")[0];
    let inflight_bytes = env_list("NATKIT_BENCH_INFLIGHT_BYTES", "65536")[0];
    let (relay_cpu, load_cpus) = cpus();
    let net = net();
    let _echo = Proc(
        net.peer
            .cmd("taskset")
            .args(["-c", &load_cpus, &release_bin("natkit-bench"), "echo"])
            .args(["--listen", &format!("{PEER}:{ECHO_PORT}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("echo peer"),
    );
    println!(
        "kernel path benchmark: namespaces on a bridge (veth), relay on CPU {relay_cpu}, load and echo peer on CPU {load_cpus}, min(128, {inflight_bytes}/size) packets in flight, {seconds} s per cell, {rounds} rounds"
    );
    println!(
        "{:>6} {:>6} {:<14} {:>11} {:>9} {:>9} {:>9} {:>7} {:>8}",
        "allocs",
        "bytes",
        "server",
        "relayed pps",
        "proc s/M",
        "core s/M",
        "mach s/M",
        "loss %",
        "p99 us"
    );
    let cpu: usize = relay_cpu.parse().unwrap();
    for &n in &allocs {
        for &size in &sizes {
            let inflight = (inflight_bytes / size).clamp(1, 128);
            let mut best: Vec<(Server, serde_json::Value)> = Vec::new();
            for _ in 0..rounds {
                for server in [Server::Coturn, Server::Natkit, Server::Kernel] {
                    let p = start(&net, server, &relay_cpu);
                    let r = run(
                        &net,
                        server,
                        p.0.id(),
                        &load_cpus,
                        n,
                        size,
                        seconds,
                        inflight,
                    );
                    println!(
                        "{:>6} {:>6} {:<14} {:>11.0} {:>9.2} {:>9.2} {:>9.2} {:>7.3} {:>8}",
                        n,
                        size,
                        server.name(),
                        f(&r, "relayed_pps"),
                        f(&r, "cpu_s_per_million"),
                        core_s_per_million(&r, cpu),
                        f(&r, "machine_cpu_s_per_million"),
                        f(&r, "loss_pct"),
                        r["rtt_p99_us"]
                    );
                    // Each server's best round by rate stands for it in the ratios.
                    match best.iter_mut().find(|(s, _)| *s == server) {
                        Some((_, b)) if f(b, "relayed_pps") >= f(&r, "relayed_pps") => {}
                        Some((_, b)) => *b = r,
                        None => best.push((server, r)),
                    }
                }
            }
            let get = |s: Server| &best.iter().find(|(x, _)| *x == s).unwrap().1;
            let (ct, nk, kp) = (
                get(Server::Coturn),
                get(Server::Natkit),
                get(Server::Kernel),
            );
            let ratio = |a: &serde_json::Value, b: &serde_json::Value, what: &str| {
                format!(
                    "{what}: {:.2}x pps, {:.2}x machine CPU per packet, {:.2}x relay core",
                    f(a, "relayed_pps") / f(b, "relayed_pps"),
                    f(a, "machine_cpu_s_per_million") / f(b, "machine_cpu_s_per_million"),
                    core_s_per_million(a, cpu) / core_s_per_million(b, cpu)
                )
            };
            println!("{:>6} {:>6} {}", n, size, ratio(kp, ct, "kernel/coturn"));
            println!("{:>6} {:>6} {}", n, size, ratio(kp, nk, "kernel/userspace"));
            println!("{:>6} {:>6} {}", n, size, ratio(nk, ct, "userspace/coturn"));
        }
    }
}
