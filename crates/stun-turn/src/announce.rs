//! A relay announcing itself in the signaling cluster's Redis (`cluster`), so natkit-signal
//! nodes with `relay_servers = ["cluster"]` hand it out while it is alive and not draining.
//!
//! Every [`HEARTBEAT`] the relay writes its [`Announcement`] (how clients reach it, its active
//! allocations, its allocation limit, whether it drains) to `natkit:relay:ADDR` with an expiry
//! of [`EXPIRY`], and its address to the set `natkit:relays`. A relay that dies stops being
//! handed out when its key expires; a clean stop deletes it. docs/cluster.md, "Relay fleet".

use std::time::Duration;

use tracing::{info, warn};

pub use natkit_proto::announcement::{key, Announcement, EXPIRY, HEARTBEAT, RELAYS};

/// Announces what `now` says every [`HEARTBEAT`] in the Redis at `url` until `shutdown`, then
/// withdraws it. Redis out of reach: retried at every heartbeat (said once).
pub async fn run(
    url: String,
    now: impl Fn() -> Announcement,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let client = match redis::Client::open(url.as_str()) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cluster URL not usable; the relay is not announced");
            return;
        }
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tick = tokio::time::interval(HEARTBEAT);
    let mut conn = None;
    let mut reported = false;
    let mut announced = false;
    let mut last_addr = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut shutdown => break,
        }
        let a = now();
        let addr = a.addr();
        last_addr = Some(addr.clone());
        if conn.is_none() {
            conn = client.get_multiplexed_async_connection().await.ok();
        }
        let Some(c) = conn.as_mut() else {
            if !reported {
                warn!("cannot reach the cluster store; the relay is not announced (retrying)");
                reported = true;
            }
            continue;
        };
        let json = serde_json::to_string(&a).expect("serialisable");
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(key(&addr))
            .arg(json)
            .arg("PX")
            .arg(EXPIRY.as_millis() as u64)
            .ignore()
            .cmd("SADD")
            .arg(RELAYS)
            .arg(&addr)
            .ignore();
        let sent = tokio::time::timeout(HEARTBEAT, pipe.exec_async(c)).await;
        match sent {
            Ok(Ok(())) => {
                if reported || !announced {
                    info!(relay = %addr, "announced in the cluster store");
                }
                reported = false;
                announced = true;
            }
            _ => {
                conn = None;
                if !reported {
                    warn!("cannot reach the cluster store; the relay is not announced (retrying)");
                    reported = true;
                }
            }
        }
    }
    if let (Some(c), Some(addr)) = (conn.as_mut(), last_addr) {
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(key(&addr)).ignore();
        pipe.cmd("SREM").arg(RELAYS).arg(&addr).ignore();
        let _ = tokio::time::timeout(Duration::from_secs(1), pipe.exec_async(c)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_round_trip_and_know_when_full() {
        let mut a = Announcement {
            host: "203.0.113.7".into(),
            port: 3478,
            tcp: true,
            tls: Some(("relay.example.org".into(), 5349)),
            allocations: 89,
            capacity: 100,
            draining: false,
        };
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Announcement>(&text).unwrap(), a);
        assert_eq!(a.addr(), "203.0.113.7:3478");
        assert!(!a.full());
        a.allocations = 90;
        assert!(a.full());
        a.capacity = 0;
        assert!(!a.full(), "no limit, never full");
        a.host = "2001:db8::7".into();
        assert_eq!(a.addr(), "[2001:db8::7]:3478");
        assert_eq!(a.endpoints().tls.unwrap().1, 5349);
    }
}
