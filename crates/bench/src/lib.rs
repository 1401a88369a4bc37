//! natkit-bench: drives any TURN server that accepts TURN REST API credentials.
//!
//! # Layout
//! - [`proc_stats`]: a server's CPU seconds and resident memory from `/proc`.
//! - [`client`]: just enough TURN client to allocate and bind a channel (401 dance included).
//! - [`echo`]: the UDP echo peer every relayed packet bounces off; [`sock`]: their sockets.
//! - [`load`]: the relay load (ChannelData at a rate or with a bounded window) and the
//!   allocation-rate load; [`forwarder`]: a plain UDP forwarder, the physical ceiling.
//! - [`stream`]: the relay load over TURN-over-TCP and TURN-over-TLS connections.
//!
//! Batched UDP I/O (`recvmmsg`/`sendmmsg`, GSO) is natkit-udp's, the relay's own.
//!
//! The generator measures from the outside: delivered round trips, loss, round-trip time, and the
//! server's CPU time and RSS read from `/proc/<pid>`.

pub mod client;
pub mod coturn;
pub mod echo;
pub mod forwarder;
pub mod load;
pub mod proc_stats;
pub mod sock;
pub mod stream;
pub mod traffic;

/// A release binary of the workspace beside the running benchmark (`target/release/NAME`);
/// `build` is how to make it when it is missing.
pub fn release_bin(name: &str, build: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the benchmark's path");
    let p = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/release/deps")
        .join(name);
    assert!(
        p.exists(),
        "build it first: {build} ({} missing)",
        p.display()
    );
    p
}

/// A benchmark's list setting from the environment (`NATKIT_BENCH_ALLOCS=1,10,100`), or
/// `default`; empty entries are skipped, so an empty variable is an empty list.
pub fn env_list(key: &str, default: &str) -> Vec<usize> {
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

/// The middle value (the upper one of an even count): a benchmark's figure over its rounds.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The runtime benchmarks drive their loads on: two workers, as the machine has two cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A server process a benchmark started, killed (and reaped) when dropped.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
