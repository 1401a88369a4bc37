//! Draining a node (SIGUSR1): no new connections or joins, every connected peer told to
//! `reconnect` elsewhere, and the node done once they have gone (docs/cluster.md, "Drain").

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::AppState;

impl AppState {
    /// Starts draining: upgrades get 503 and joins `shutting-down`, connected peers get
    /// `{"type":"reconnect","reason":"draining"}`, `/healthz` answers 503.
    pub fn start_drain(&self) {
        if !self.draining.send_replace(true) {
            self.metrics.draining.set(1);
            info!(
                peers = self.metrics.peers_connected.get(),
                "draining: peers are told to reconnect elsewhere"
            );
        }
    }

    /// `drain_timeout`: how long [`AppState::drained`] is given by the binary.
    pub fn drain_timeout(&self) -> Duration {
        self.settings.drain_timeout
    }

    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Waits until no peer is connected or `timeout` has passed; true when none is left.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        loop {
            let left = self.metrics.peers_connected.get();
            if left == 0 {
                info!("drained: every peer has gone");
                return true;
            }
            if Instant::now() >= until {
                warn!(left, "drain timeout: closing the connections still open");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
