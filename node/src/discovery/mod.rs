//! Discovery: who is in the network and how to reach them, at a cost per
//! node that does not grow with the network.
//!
//! Everything here except the driver is protocol state without I/O (in the
//! manner of quinn-proto): the transport feeds [`Gossip`] `(now, input)` and
//! carries out the [`Out`]puts. Time is always an explicit `now_ms`.
//!
//! - [`record`]: [`PeerRecord`], carrying the node's ticket and signed with
//!   its RA-TLS key into a [`SignedRecord`]; [`SignedRecord::verify`] against
//!   a [`RecordCheck`] (network, trusted ticket issuers, revocations, clock
//!   skew) yields a [`VerifiedRecord`], the only thing the catalog accepts.
//! - [`service`]: the typed [`Service`]s a record advertises (streams, groups,
//!   collections, functions, each with the node's role).
//! - [`catalog`]: the bounded [`Catalog`] of verified peers, its
//!   [`CatalogEvent`]s and the fixed-size bucket summary anti-entropy uses.
//! - [`view`]: HyParView's active and passive views.
//! - [`gossip`]: the wire messages ([`DiscoveryMsg`]) and the [`Gossip`] state
//!   machine: membership (HyParView), dissemination (eager push along the
//!   active view, bucketed anti-entropy behind it), failure detection (SWIM
//!   probes, suspicion, refutation).
//! - [`sim`]: the same state machine on a simulated network, for tests and
//!   the scaling benchmark.
//! - the driver: [`Discovery`], the protocol handler that runs it on a
//!   [`Network`](crate::network::Network).
//!
//! # Driving [`Gossip`] from a transport
//!
//! 1. At start: [`Gossip::new`]; dial the bootstrap addresses (their node ids
//!    are unknown until the handshake). The first admitted peer becomes the
//!    contact the node joins through.
//! 2. When a connection has passed admission: [`Gossip::on_connected`];
//!    when it closes: [`Gossip::on_disconnected`]; when a dial asked for
//!    fails: [`Gossip::on_connect_failed`].
//! 3. For each frame on a peer's discovery stream: [`DiscoveryMsg::decode`]
//!    (a failure is a protocol violation on that stream), then
//!    [`Gossip::on_message`] with the connection's node id as `from`.
//! 4. Timers: [`Gossip::on_tick`] when [`Gossip::poll_timeout`] is due (or on
//!    a fixed short tick).
//! 5. Outputs, in order: [`Out::Send`] → queue a frame (drop on a full queue:
//!    the protocol repairs loss); [`Out::Event`] → publish;
//!    [`Out::Connect`] → dial and admit as usual; [`Out::Keep`] /
//!    [`Out::Release`] → hold / let go the connection of an active peer.
//! 6. When local information changes (new address, new service, renewed
//!    ticket): [`Gossip::set_local`]. On shutdown: [`Gossip::depart`] and send
//!    its messages.

pub mod catalog;
mod driver;
pub mod gossip;
pub mod record;
pub mod service;
#[doc(hidden)]
pub mod sim;
pub mod view;

#[cfg(test)]
mod testkit;

pub use catalog::{Catalog, CatalogEvent, DepartReason, Peer};
pub use driver::{Discovery, DiscoveryError, DiscoveryOptions};
pub use gossip::{
    DiscoveryMsg, DiscoveryV1, Gossip, GossipConfig, GossipStats, LocalInfo, MsgError, Out,
    RecordVerifier,
};
pub use record::{PeerRecord, RecordCheck, RecordError, SignedRecord, VerifiedRecord};
pub use service::{CollectionRole, FunctionRole, GroupRole, Service, StreamRole};
