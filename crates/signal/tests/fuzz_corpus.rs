//! The signaling fuzz targets' short run in every test run: each seed of `fuzz/corpus/` (the
//! messages of docs/protocol.md's example exchange, odd frames, tokens) and everything AFL++
//! campaigns added there goes through the same harness as `fuzz/` (`natkit_signal::fuzz`),
//! followed by deterministic mutations of it. docs/fuzzing.md has the long campaigns.

use std::path::Path;

use natkit_signal::fuzz::{signal_json, token};

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let files: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(files.len() >= 2, "the {target} corpus is committed");
    files
}

fn mutate(seed: &[u8], i: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ i;
    let mut next = move |m: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % m.max(1) as u64) as usize
    };
    let mut b = seed.to_vec();
    match next(3) {
        0 if !b.is_empty() => {
            let at = next(b.len());
            b[at] = b"{}[]\":,0aZ\\ \x00\xff"[next(14)];
        }
        1 => b.truncate(next(b.len() + 1)),
        _ => {
            let at = next(b.len() + 1);
            let copy = b[..at].to_vec();
            b.extend(copy);
        }
    }
    b
}

#[test]
fn signal_json_corpus_and_mutations() {
    let seeds = corpus("signal_json");
    let per_seed = (50_000 / seeds.len()).max(10) as u64;
    for seed in seeds {
        signal_json(&seed);
        for i in 0..per_seed {
            signal_json(&mutate(&seed, i));
        }
    }
}

#[test]
fn token_corpus_and_mutations() {
    let seeds = corpus("token");
    let per_seed = (50_000 / seeds.len()).max(10) as u64;
    for seed in &seeds {
        token(seed);
        for i in 0..per_seed {
            token(&mutate(seed, i));
        }
    }
}
