//! Time to verdict in the NAT lab: nat-probe beside coturn's `turnutils_natdiscovery -m -f`,
//! both against the same natkit-relay (two addresses) on the same topology, in one run.
//!
//! Run as root: `cargo build --release --bins && cargo bench -p natkit-nat-probe --bench lab_time_to_verdict`
//! Prints a table; asserts nothing about time (the machine is noisy), only that nat-probe's
//! verdicts are the lab's expected ones.

use std::time::{Duration, Instant};

use natkit_lab::{require_root, Lab, Nat, SERVER_IP};

const RUNS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if !require_root("lab_time_to_verdict") {
        return;
    }
    let probe = env!("CARGO_BIN_EXE_nat-probe");
    let natdiscovery = [
        "/usr/bin/turnutils_natdiscovery",
        "/usr/local/bin/turnutils_natdiscovery",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .expect("turnutils_natdiscovery missing: apt-get install coturn");
    println!(
        "time to verdict, median of {RUNS} runs (natkit-relay with two addresses as the server)"
    );
    println!(
        "{:<26} {:>22} {:>14} {:>30} {:>8}",
        "topology", "nat-probe verdict", "nat-probe", "turnutils_natdiscovery -m -f", "ratio"
    );
    for nat in Nat::ALL {
        let mut lab = Lab::new();
        let site = lab.add_site(nat);
        lab.start_natkit_relay("bench");
        let client = &lab.sites[site].client;

        let mut ours = Vec::new();
        let mut verdict = String::new();
        for _ in 0..RUNS {
            let t = Instant::now();
            let out = client
                .cmd(probe)
                .args(["--json", SERVER_IP])
                .output()
                .unwrap();
            ours.push(t.elapsed());
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            verdict = v["nat_type"].as_str().unwrap().to_owned();
        }
        let mut theirs = Vec::new();
        let mut their_verdict = true;
        for _ in 0..RUNS {
            let t = Instant::now();
            let out = client
                .cmd("timeout")
                .args(["60", natdiscovery, "-m", "-f", SERVER_IP])
                .output()
                .unwrap();
            theirs.push(t.elapsed());
            let text = String::from_utf8_lossy(&out.stdout);
            their_verdict = text.contains("Mapping!") && text.contains("Filtering!");
        }
        let (o, c) = (median(ours), median(theirs));
        println!(
            "{:<26} {:>22} {:>11} ms {:>24} ms{} {:>7.1}x",
            nat.name(),
            verdict,
            o.as_millis(),
            c.as_millis(),
            if their_verdict { "  " } else { " *" },
            c.as_secs_f64() / o.as_secs_f64()
        );
    }
    println!("* turnutils_natdiscovery printed no mapping and filtering verdict");
    println!("ratio = natdiscovery time / nat-probe time (process wall clock, including start-up)");
}
