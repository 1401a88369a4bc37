//! natkit-peer: WebRTC data channels through natkit, the path decided per pair. As a library:
//!
//! ```no_run
//! # async fn demo() -> Result<(), natkit_peer::Error> {
//! let session = natkit_peer::connect(natkit_peer::Options {
//!     signal: vec!["ws://127.0.0.1:8080".into()],
//!     room: "demo".into(),
//!     token: None, // the join token, when natkit-signal requires one
//!     ..Default::default()
//! })
//! .await?;
//! let mut channel = session.channel(None).await?; // the first partner to appear
//! println!("connected to {} over {:?}", channel.peer_id(), channel.path());
//! channel.send("hello").await?;
//! while let Some(message) = channel.recv().await {
//!     println!("{message:?}"); // Text("...") or Binary([...])
//! }
//! # Ok(()) }
//! ```
//!
//! Several partners in the room each get their own channel (`session.channel(Some(id))`, or call
//! `channel(None)` again for the next). It probes the NAT (nat-probe), exchanges NAT summaries
//! with each partner, applies natkit's pair
//! rule (relay-only ICE when the pair needs it), reaches TURN over TCP or TLS where UDP is
//! blocked, renews TURN credentials, restarts ICE on a lost path and rejoins another signaling
//! node on a drain or a dropped connection. `crates/peer/examples/hello.rs` runs it.
//!
//! The `natkit-peer` command (webrtc 0.21) is this crate's binary.
//!
//! # Layout
//! - [`policy`], [`session`], [`renewal`], [`events`]: the decisions, from `natkit-peer-core`
//!   (pure, shared with the Python package): the pair rule, the session state machine, renewal
//!   timing, what a peer reports.
//! - [`signaling`]: the natkit-signal client.
//! - [`api`]: the library API ([`connect`], [`Session`], [`Channel`]); its room (`room.rs`)
//!   holds one signaling connection and a link (the driver) per partner.
//! - [`peer`]: the driver: join, probe, policy, carrying out the session's actions over the
//!   signaling connection and the data channel; [`events`]: what it reports.
//! - [`rtc`]: the webrtc glue: the peer connection for a policy, its callbacks as events,
//!   candidates and ICE servers converted, the selected pair read from the stats.
//! - The signaling messages are `natkit-proto`'s, shared with natkit-signal.

pub use natkit_peer_core::{events, policy, renewal, session};
pub mod api;
pub use api::{connect, Channel, Error, Options, Path, Session, SessionEvent};
pub use policy::RelayMode;
pub use session::Message;
pub mod peer;
mod room;
pub mod rtc;
pub mod signaling;
