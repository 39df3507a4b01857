//! Discovery: signed peer records spread by push-pull gossip over attested
//! connections, into a catalog with events.
//!
//! Everything here is protocol state without I/O (in the manner of
//! quinn-proto): the transport feeds [`Gossip`] `(now, input)` and carries out
//! the [`Out`]puts. Time is always an explicit `now_ms`, Unix milliseconds.
//!
//! - [`record`]: [`PeerRecord`], carrying the node's ticket and signed with
//!   its RA-TLS key into a [`SignedRecord`]; [`SignedRecord::verify`] against
//!   a [`RecordCheck`] (network, trusted ticket issuers, clock skew) yields a
//!   [`VerifiedRecord`], the only thing the catalog accepts.
//! - [`service`]: the typed [`Service`]s a record advertises (streams, groups,
//!   collections, functions, each with the node's role).
//! - [`catalog`]: the [`Catalog`] of verified peers and its [`CatalogEvent`]s.
//! - [`gossip`]: the wire messages ([`DiscoveryMsg`]) and the [`Gossip`] state
//!   machine.
//!
//! # Driving [`Gossip`] from a transport
//!
//! 1. At start: [`Gossip::new`] with the node's RA-TLS identity, its
//!    [`LocalInfo`] (its ticket included) and a [`GossipConfig`] (with the
//!    [`RecordCheck`] peers' records must pass); dial the bootstrap
//!    addresses from the configuration (their node ids are unknown until the
//!    handshake).
//! 2. When a connection has passed admission (RA-TLS verdict and ticket):
//!    [`Gossip::on_connected`] with the peer's verified node id. Never
//!    before: gossip trusts that only admitted peers reach it.
//! 3. For each frame on a peer's discovery stream: [`DiscoveryMsg::decode`]
//!    (a failure is a protocol violation on that stream), then
//!    [`Gossip::on_message`] with the connection's node id as `from`.
//! 4. When the connection closes: [`Gossip::on_disconnected`].
//! 5. Timers: call [`Gossip::on_tick`] when [`Gossip::poll_timeout`] is due
//!    (or simply every `interval`).
//! 6. When local information changes (new address, new service, renewed
//!    ticket): [`Gossip::set_local`]. On shutdown: [`Gossip::depart`], send its
//!    messages, then close connections with the `Departed` code.
//! 7. Every call returns `Vec<Out>`, to execute in order:
//!    [`Out::Send`] → encode and write a frame to that peer (drop it if the
//!    peer is gone, or if its bounded send queue is full: gossip repairs
//!    loss); [`Out::Event`] → publish to subscribers and metrics;
//!    [`Out::Connect`] → dial unless connected or dialing already, admit as
//!    usual, and check the admitted node id is the one asked for.
//!
//! [`GossipStats`] and [`Catalog::len`] / [`Catalog::refused`] feed metrics.

pub mod catalog;
mod driver;
pub mod gossip;
pub mod record;
pub mod service;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod testkit;

pub use catalog::{Catalog, CatalogEvent, DepartReason, Peer};
pub use driver::{Discovery, DiscoveryError, DiscoveryOptions};
pub use gossip::{
    DiscoveryMsg, DiscoveryV1, Gossip, GossipConfig, GossipStats, LocalInfo, MsgError, Out,
};
pub use record::{PeerRecord, RecordCheck, RecordError, SignedRecord, VerifiedRecord};
pub use service::{CollectionRole, FunctionRole, GroupRole, Service, StreamRole};
