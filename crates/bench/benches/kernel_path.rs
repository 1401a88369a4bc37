//! natkit-relay's kernel path (`--kernel-path eth0`) beside its userspace path and coturn, on a
//! small network of namespaces: the load generator, the relay and the echo peer each in their
//! own, on one bridge, every packet crossing veth links as it would cross a NIC. The relay is
//! pinned to the last CPU, the load and the echo peer to the others.
//!
//! `cargo build --release --bins --features natkit-stun-turn/kernel-path && cargo bench -p
//! natkit-bench --bench kernel_path` (as root: it makes namespaces and loads a BPF program).
//! Environment: `NATKIT_BENCH_ALLOCS=1,10,100,1000`, `NATKIT_BENCH_SIZES=100,1000`,
//! `NATKIT_BENCH_SECONDS=3`, `NATKIT_BENCH_ROUNDS=2` (the three servers alternate, fresh
//! processes for each cell), `NATKIT_BENCH_INFLIGHT_BYTES=65536` as in `relay_vs_coturn`; then
//! coturn's client load ([`uclient`]).
//!
//! On loopback a kernel path would do its work in the sender's softirq and look free to the
//! server. Here the relay namespace's interface steers what it receives to the relay's CPU (RPS),
//! as a relay host's own NIC would: the program's work, like every server's receive path, is on
//! the relay's core (`core s/M`). The machine column (every CPU's busy time, softirq included, per
//! relayed datagram) stays beside it, so nothing is credited for work moved out of sight. The senders compute UDP checksums in software (`ethtool -K eth0 tx off`):
//! veth would otherwise hand the relay packets whose checksum is still to be computed, which the
//! program leaves to userspace, as no packet from a real NIC is. That also makes the userspace
//! relays verify checksums in software, which a NIC does for them in a real deployment: a bias in
//! the kernel path's favour of a checksum over the payload, each way (docs/performance.md).

use std::process::Stdio;

use natkit_bench::env_list;
use natkit_bench::Proc;
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
    /// natkit-bench's plain UDP forwarder: the ceiling of a userspace relay.
    Forwarder,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Coturn => "coturn",
            Server::Natkit => "natkit",
            Server::Kernel => "natkit-kernel",
            Server::Forwarder => "forwarder",
        }
    }
}

fn release_bin(name: &str) -> String {
    natkit_bench::release_bin(
        name,
        "cargo build --release --bins --features natkit-stun-turn/kernel-path",
    )
    .display()
    .to_string()
}

/// The namespaces: `br` holds the bridge; relay, load and peer hang off it.
struct Net {
    relay: Netns,
    load: Netns,
    peer: Netns,
    _br: Netns,
}

fn net(relay_cpu: usize) -> Net {
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
        if name == "relay" {
            // What arrives at the relay host is processed on the relay's CPU (RPS), as a NIC's
            // interrupts would be on a host of its own: the kernel path's work, and every
            // server's receive path, land on the core the table charges them to.
            let mask = format!("{:x}", 1u64 << relay_cpu);
            ns.run(
                "sh",
                &[
                    "-c",
                    &format!("echo {mask} > /sys/class/net/eth0/queues/rx-0/rps_cpus"),
                ],
            );
        } else {
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
        Server::Forwarder => {
            c.args([&release_bin("natkit-bench"), "forwarder"])
                .args(["--listen", &format!("{RELAY}:3478")])
                .args(["--peer", &format!("{PEER}:{ECHO_PORT}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
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
    if server == Server::Forwarder {
        // It answers nothing: ready once its port is taken.
        let taken = in_netns(&net.relay.name, || {
            (0..100).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                std::net::UdpSocket::bind(format!("{RELAY}:3478")).is_err()
            })
        });
        assert!(taken, "the forwarder did not start");
        return p;
    }
    let ready = in_netns(&net.load.name, || {
        let (local, server) = (format!("{LOAD}:0"), format!("{RELAY}:3478"));
        natkit_bench::client::answers_binding(local.parse().unwrap(), server.parse().unwrap(), 100)
    });
    assert!(ready, "{server:?} did not start");
    p
}

/// One flat-out run of `natkit-bench relay` in the load's namespace; its JSON report.
/// One run's shape: allocations, payload bytes, seconds, packets in flight, and the paced send
/// rate (datagrams per second; flat out when `None`).
struct Cell {
    n: usize,
    size: usize,
    seconds: u64,
    inflight: usize,
    rate: Option<u64>,
}

fn run(net: &Net, server: Server, pid: u32, load_cpus: &str, cell: &Cell) -> serde_json::Value {
    let Cell {
        n,
        size,
        seconds,
        inflight,
        rate,
    } = *cell;
    let mut cmd = net.load.cmd("taskset");
    cmd.args(["-c", load_cpus, &release_bin("natkit-bench"), "relay"])
        .args(["--server", &format!("{RELAY}:3478"), "--secret", SECRET])
        .args(["--echo", &format!("{PEER}:{ECHO_PORT}")])
        .args(["--server-pid", &pid.to_string()])
        .args(["--allocations", &n.to_string(), "--size", &size.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .args(["--inflight", &inflight.to_string()])
        .args(["--window", &(inflight / n).max(1).to_string()]);
    if server == Server::Forwarder {
        cmd.arg("--plain");
    }
    if let Some(rate) = rate {
        cmd.args(["--rate", &rate.to_string()]);
    }
    let out = cmd.output().expect("natkit-bench relay");
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

/// coturn's client load (`turnutils_uclient`: `NATKIT_BENCH_UCLIENT_CLIENTS=20` clients,
/// `NATKIT_BENCH_UCLIENT_MESSAGES=5000` messages of 100 bytes, no pause) from the load's
/// namespace, echoed by `turnutils_peer` in the peer's; the three servers alternate,
/// `NATKIT_BENCH_ROUNDS` times. CPU per relayed message (two datagrams a message: to the peer
/// and back), and where lost messages were dropped: a CPU's input backlog, the relay's sockets,
/// the tools' own sockets (their receive buffers full), or a bad checksum.
fn uclient(net: &Net, relay_cpu: &str, load_cpus: &str, rounds: usize) {
    let clients = env_list("NATKIT_BENCH_UCLIENT_CLIENTS", "20")[0];
    let messages = env_list("NATKIT_BENCH_UCLIENT_MESSAGES", "5000")[0];
    let peer_port = "3480";
    let _peer = Proc(
        net.peer
            .cmd("taskset")
            .args([
                "-c",
                load_cpus,
                "turnutils_peer",
                "-L",
                PEER,
                "-p",
                peer_port,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnutils_peer (apt-get install coturn)"),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    println!();
    println!("coturn's client load: turnutils_uclient, {clients} clients, {messages} messages of 100 bytes each, echoed by turnutils_peer");
    println!(
        "{:<14} {:>12} {:>9} {:>9} {:>8} {:>9} {:>11} {:>11} {:>9}",
        "server",
        "relayed pps",
        "core s/M",
        "mach s/M",
        "lost %",
        "backlog",
        "relay rcvbuf",
        "tools rcvbuf",
        "csum errs"
    );
    let cpu: usize = relay_cpu.parse().unwrap();
    let mut sums: Vec<(Server, f64, f64, f64, usize)> = Vec::new();
    for _ in 0..rounds {
        for server in [Server::Coturn, Server::Natkit, Server::Kernel] {
            let _p = start(net, server, relay_cpu);
            let machine0 = natkit_bench::proc_stats::CpuTimes::now();
            let drops0 = backlog_drops();
            let tools = [&net.load, &net.peer];
            let rcv0 = (receiver_drops(&tools), receiver_drops(&[&net.relay]));
            let t = std::time::Instant::now();
            let out = net
                .load
                .cmd("taskset")
                .args([
                    "-c",
                    load_cpus,
                    "turnutils_uclient",
                    "-W",
                    SECRET,
                    "-u",
                    "uclient",
                ])
                .args(["-e", PEER, "-r", peer_port])
                .args(["-n", &messages.to_string(), "-m", &clients.to_string()])
                .args(["-l", "100", "-z", "0", "-p", "3478", RELAY])
                .output()
                .expect("turnutils_uclient (apt-get install coturn)");
            let seconds = t.elapsed().as_secs_f64();
            let machine = natkit_bench::proc_stats::CpuTimes::now().since(&machine0);
            let drops = backlog_drops() - drops0;
            let rcv = (receiver_drops(&tools), receiver_drops(&[&net.relay]));
            let tool_drops = rcv.0 .0 - rcv0.0 .0;
            let relay_drops = rcv.1 .0 - rcv0.1 .0;
            let csum = rcv.0 .1 + rcv.1 .1 - rcv0.0 .1 - rcv0.1 .1;
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            let Some((sent, received)) = natkit_testkit::uclient_totals(&text).filter(|t| t.0 > 0)
            else {
                println!("{:<14} uclient relayed nothing this round (its channel bind flake); not counted", server.name());
                continue;
            };
            let relayed = 2.0 * received as f64;
            let per_million = |busy: f64| busy / relayed * 1e6;
            let core = machine.0.get(cpu).map_or(f64::NAN, |t| per_million(t.busy));
            let mach = per_million(machine.total().busy);
            println!(
                "{:<14} {:>12.0} {:>9.2} {:>9.2} {:>8.3} {:>9} {:>11} {:>11} {:>9}",
                server.name(),
                relayed / seconds,
                core,
                mach,
                100.0 * (sent - received) as f64 / sent as f64,
                drops,
                relay_drops,
                tool_drops,
                csum
            );
            match sums.iter_mut().find(|x| x.0 == server) {
                Some(x) => {
                    x.1 += relayed / seconds;
                    x.2 += core;
                    x.3 += mach;
                    x.4 += 1;
                }
                None => sums.push((server, relayed / seconds, core, mach, 1)),
            }
        }
    }
    let mean = |s: Server| {
        let x = sums
            .iter()
            .find(|x| x.0 == s)
            .expect("a round of each server");
        (x.1 / x.4 as f64, x.2 / x.4 as f64, x.3 / x.4 as f64)
    };
    let (ct, kp, nk) = (
        mean(Server::Coturn),
        mean(Server::Kernel),
        mean(Server::Natkit),
    );
    for (what, a, b) in [
        ("kernel/coturn", kp, ct),
        ("kernel/userspace", kp, nk),
        ("userspace/coturn", nk, ct),
    ] {
        println!(
            "{what}: {:.2}x pps, {:.2}x relay core per message, {:.2}x machine CPU per message (means)",
            a.0 / b.0,
            a.1 / b.1,
            a.2 / b.2
        );
    }
}

/// The kernel memory of a process's BPF maps (their `memlock` in fdinfo), bytes.
fn bpf_map_bytes(pid: u32) -> u64 {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == "anon_inode:bpf-map")
        })
        .filter_map(|fd| {
            let info = std::fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// Packets the kernel dropped because a CPU's input backlog was full (/proc/net/softnet_stat's
/// second column, summed over the CPUs).
fn backlog_drops() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|v| u64::from_str_radix(v, 16).ok())
        .sum()
}

/// UDP datagrams the namespaces' sockets dropped (full receive buffer) or refused (bad
/// checksum): `Udp: RcvbufErrors` and `InCsumErrors` of /proc/net/snmp, summed.
fn receiver_drops(namespaces: &[&Netns]) -> (u64, u64) {
    let mut sum = (0, 0);
    for ns in namespaces {
        let out = ns.run("cat", &["/proc/net/snmp"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let udp: Vec<Vec<&str>> = text
            .lines()
            .filter(|l| l.starts_with("Udp:"))
            .map(|l| l.split_whitespace().collect())
            .collect();
        let field = |name: &str| -> u64 {
            udp[0]
                .iter()
                .position(|n| *n == name)
                .and_then(|i| udp[1].get(i))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        sum.0 += field("RcvbufErrors");
        sum.1 += field("InCsumErrors");
    }
    sum
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
    let net = net(relay_cpu.parse().unwrap());
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
        "{:>6} {:>6} {:<14} {:>11} {:>9} {:>9} {:>9} {:>7} {:>8} {:>11}",
        "allocs",
        "bytes",
        "server",
        "relayed pps",
        "proc s/M",
        "core s/M",
        "mach s/M",
        "loss %",
        "p99 us",
        "RSS/alloc B"
    );
    let cpu: usize = relay_cpu.parse().unwrap();
    for &n in &allocs {
        for &size in &sizes {
            let inflight = (inflight_bytes / size).clamp(1, 128);
            let mut best: Vec<(Server, serde_json::Value)> = Vec::new();
            for _ in 0..rounds {
                for server in [
                    Server::Coturn,
                    Server::Natkit,
                    Server::Kernel,
                    Server::Forwarder,
                ] {
                    let p = start(&net, server, &relay_cpu);
                    let cell = Cell {
                        n,
                        size,
                        seconds,
                        inflight,
                        rate: None,
                    };
                    let maps_before = bpf_map_bytes(p.0.id());
                    let r = run(&net, server, p.0.id(), &load_cpus, &cell);
                    if server == Server::Kernel {
                        // The allocations and their bindings are still there (the load does not
                        // delete them): what the maps grew by is their kernel memory.
                        let grown = bpf_map_bytes(p.0.id()).saturating_sub(maps_before);
                        println!(
                            "{:>6} {:>6} kernel maps: {} bytes per allocation (one channel each), beside the RSS",
                            n,
                            size,
                            grown / n as u64
                        );
                    }
                    println!(
                        "{:>6} {:>6} {:<14} {:>11.0} {:>9.2} {:>9.2} {:>9.2} {:>7.3} {:>8} {:>11.0}",
                        n,
                        size,
                        server.name(),
                        f(&r, "relayed_pps"),
                        f(&r, "cpu_s_per_million"),
                        core_s_per_million(&r, cpu),
                        f(&r, "machine_cpu_s_per_million"),
                        f(&r, "loss_pct"),
                        r["rtt_p99_us"],
                        f(&r, "rss_per_allocation_bytes")
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
            let fw = get(Server::Forwarder);
            println!(
                "{:>6} {:>6} kernel/forwarder: {:.2}x pps; userspace/forwarder: {:.2}x pps",
                n,
                size,
                f(kp, "relayed_pps") / f(fw, "relayed_pps"),
                f(nk, "relayed_pps") / f(fw, "relayed_pps")
            );
            // The loss target, conservatively: the kernel path paced (open loop) at the rate
            // coturn relayed flat out, which is at least the rate coturn sustains without loss.
            let rate = (f(ct, "relayed_pps") / 2.0) as u64;
            let p = start(&net, Server::Kernel, &relay_cpu);
            let cell = Cell {
                n,
                size,
                seconds,
                inflight,
                rate: Some(rate),
            };
            let paced = run(&net, Server::Kernel, p.0.id(), &load_cpus, &cell);
            println!(
                "{:>6} {:>6} kernel paced at coturn's flat-out rate ({} datagrams/s each way): {:.3}% loss, {:.0} relayed pps",
                n,
                size,
                rate,
                f(&paced, "loss_pct"),
                f(&paced, "relayed_pps")
            );
        }
    }
    uclient(&net, &relay_cpu, &load_cpus, rounds);
}
