//! [`Redacted`]: how natkit's logs show client and peer addresses. By default a short tag stands
//! for the address: the same address gets the same tag for the life of the process (so one
//! client's lines can be followed), and the tag cannot be turned back into the address (its key is
//! random per process). An operator who needs the addresses in the logs turns them on with
//! `NATKIT_LOG_ADDRESSES=1` (the binaries call [`show_addresses`] at start). Secrets have their own
//! types that never show (TURN and token secrets, `SecretText`).

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static SHOW: AtomicBool = AtomicBool::new(false);
static KEY: OnceLock<RandomState> = OnceLock::new();

/// Logs show real addresses from now on (`true`), or tags (the default).
pub fn show_addresses(show: bool) {
    SHOW.store(show, Ordering::Relaxed);
}

/// A value logged as a tag (`addr#1a2b3c`) unless addresses are shown ([`show_addresses`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Redacted<T>(pub T);

impl<T: Hash + fmt::Display> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if SHOW.load(Ordering::Relaxed) {
            return self.0.fmt(f);
        }
        let tag = KEY.get_or_init(RandomState::new).hash_one(&self.0);
        write!(f, "addr#{:06x}", tag & 0xff_ffff)
    }
}

impl<T: Hash + fmt::Display> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn addresses_are_tags_until_shown() {
        let a: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        let b: SocketAddr = "198.51.100.8:40000".parse().unwrap();
        let (ta, tb) = (Redacted(a).to_string(), Redacted(b).to_string());
        assert!(ta.starts_with("addr#") && ta.len() == 11, "{ta}");
        assert!(!ta.contains("198.51") && !format!("{:?}", Redacted(a)).contains("198.51"));
        assert_eq!(ta, Redacted(a).to_string(), "one address, one tag");
        assert_ne!(ta, tb);
        show_addresses(true);
        assert_eq!(Redacted(a).to_string(), "198.51.100.7:40000");
        show_addresses(false);
    }
}
