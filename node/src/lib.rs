//! The tessella node runtime.
//!
//! A node runs one QUIC endpoint whose every connection is mutually
//! authenticated with RA-TLS (see `tessella-attestation`), admits a peer only
//! when its verdict and its JWT ticket satisfy the policy, finds peers through
//! signed gossip, and exposes an admin API over HTTP.
//!
//! - [`id`]: intent-addressed identifiers (networks, nodes, streams, groups, stores, tags).
//! - [`wire`]: ALPN, stream headers, close codes and length-prefixed frames.
//! - [`config`]: the node's TOML configuration with environment overrides.
//! - [`discovery`]: signed peer records, the catalog and push-pull gossip.
//! - [`admission`]: what a peer must show after the handshake (ticket exchange).
//! - [`network`]: the transport: endpoint, admission, the peer table,
//!   protocol handlers, peer handles and bounded outboxes.
//! - [`node`]: the one assembly of a node (transport, discovery, admin API).
//! - [`launch`]: a node from its config (`run` and PID 1).
//! - [`keyfile`]: the node key under the data dir (a stable node id).
//! - [`admin`]: the axum admin API.
//! - [`configid`]: the deployment config bound to the TD's MRCONFIGID.
//! - [`pid1`]: the node as PID 1 of its image (`tessella-node init`).

pub mod admin;
pub mod admission;
pub mod collections;
pub mod config;
pub mod configid;
pub mod devnet;
pub mod discovery;
pub mod groups;
pub mod id;
pub mod keyfile;
pub mod launch;
pub mod metrics;
pub mod network;
pub mod node;
pub mod pid1;
pub mod relay;
pub mod status;
pub mod wire;

pub use network::{
    ConnectedPeer, Identity, Limits, Network, NetworkBuilder, NetworkError, PeerHandle, PeerInfo,
    ProtocolHandler, TicketSource,
};
pub use node::{Node, NodeError, NodeSpec};

pub use tessella_attestation as attestation;
