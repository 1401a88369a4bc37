//! The relay fuzz targets' short run in every test run: each seed of `fuzz/corpus/` (RFC 5769
//! vectors and one message of each kind of TURN exchange) and everything AFL++ campaigns added
//! there goes through the same harness as `fuzz/` (`natkit_turn_core::fuzz`), followed by
//! deterministic mutations of it. docs/fuzzing.md has the long campaigns.

use std::path::{Path, PathBuf};

use natkit_turn_core::fuzz::{attribute_count, channel_data, RelayHarness};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    files.sort();
    assert!(files.len() >= 2, "the {target} corpus is committed");
    files
}

/// `n` deterministic mutations of `seed`: flipped bytes, truncations, splices of length fields.
fn mutations(seed: &[u8], n: usize, mut x: u64) -> Vec<Vec<u8>> {
    let mut next = move |m: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % m.max(1) as u64) as usize
    };
    (0..n)
        .map(|_| {
            let mut b = seed.to_vec();
            match next(4) {
                0 if !b.is_empty() => {
                    for _ in 0..1 + next(4) {
                        let at = next(b.len());
                        b[at] ^= 1 << next(8);
                    }
                }
                1 => b.truncate(next(b.len() + 1)),
                2 if b.len() > 4 => {
                    // A length field (bytes 2-3 of a header or attribute) set to anything.
                    let at = 2 + 4 * next(b.len() / 4);
                    if at + 1 < b.len() {
                        b[at] = next(256) as u8;
                        b[at + 1] = next(256) as u8;
                    }
                }
                _ => b.extend((0..next(64)).map(|_| next(256) as u8)),
            }
            b
        })
        .collect()
}

/// Every seed of `target`'s corpus, then a bounded budget of its mutations (spread over however
/// many seeds the campaigns left, so their additions do not slow every run), through `feed`;
/// returns how many mutations ran.
fn replay(target: &str, salt: u64, mut feed: impl FnMut(&[u8])) -> usize {
    let seeds = corpus(target);
    let per_seed = (20_000 / seeds.len()).max(10);
    let mut runs = 0;
    for (_, seed) in seeds {
        feed(&seed);
        for m in mutations(&seed, per_seed, salt ^ seed.len() as u64) {
            feed(&m);
            runs += 1;
        }
    }
    runs
}

#[test]
fn stun_handle_corpus_and_mutations() {
    let mut harness = RelayHarness::new();
    let runs = replay("stun_handle", 0x5eed, |d| {
        harness.datagram(d);
        attribute_count(d);
    });
    eprintln!("stun_handle: {runs} mutated datagrams through the relay");
}

#[test]
fn stream_framing_corpus_and_mutations() {
    let mut harness = RelayHarness::new();
    let runs = replay("stream_framing", 11, |s| harness.stream(s));
    eprintln!("stream_framing: {runs} mutated streams through the relay");
}

#[test]
fn channel_data_corpus_and_mutations() {
    for (_, seed) in corpus("channel_data") {
        channel_data(&seed);
        for m in mutations(&seed, 2000, 7 + seed.len() as u64) {
            channel_data(&m);
        }
    }
}

/// The RFC 5769 seeds are the RFC's bytes: their FINGERPRINT and MESSAGE-INTEGRITY (short-term
/// password `VOkJxbRl1RmTxUk/WvJxBt`) check.
#[test]
fn the_rfc5769_seeds_are_the_rfcs_vectors() {
    use stun::fingerprint::FINGERPRINT;
    use stun::integrity::MessageIntegrity;
    use stun::message::Message;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/stun_handle");
    for name in ["rfc5769-sample-request", "rfc5769-ipv4-response"] {
        let data = std::fs::read(dir.join(name)).unwrap();
        let mut m = Message::new();
        m.raw = data[1..].to_vec();
        m.decode().unwrap_or_else(|e| panic!("{name}: {e}"));
        FINGERPRINT
            .check(&m)
            .unwrap_or_else(|e| panic!("{name} fingerprint: {e}"));
        MessageIntegrity::new_short_term_integrity("VOkJxbRl1RmTxUk/WvJxBt".into())
            .check(&mut m)
            .unwrap_or_else(|e| panic!("{name} integrity: {e}"));
    }
}
