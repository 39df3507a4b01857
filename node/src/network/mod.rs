//! The transport: one QUIC endpoint, attested connections, admission, and
//! extension points for subsystems. It knows no subsystem.
//!
//! - [`builder`]: [`NetworkBuilder`], the node's identity, policy, tickets and
//!   [`Limits`].
//! - `endpoint`: the quinn endpoint and its RA-TLS configuration.
//! - [`peers`]: the [`PeerTable`](peers::PeerTable): admission state,
//!   duplicate tie-break, `max_peers`, expiry, revocation and idle sweeps, as
//!   plain state.
//! - `session`: one admitted connection's task, routing incoming streams by
//!   family to their handler.
//! - `control`: the control protocol (Hello and admission, ticket renewal,
//!   collateral relay), itself a handler once a peer is admitted.
//! - [`handler`]: the [`ProtocolHandler`] trait subsystems implement.
//! - [`peer`]: [`PeerHandle`]s (get-or-dial by node id, streams of a family
//!   with timeouts, a watch of the peer's identity and claims).
//! - [`outbox`]: the bounded per-(peer, family) queues and their writers.
//!
//! ```text
//!            Network::register(handler)          Network::peer(id) -> PeerHandle
//!                      |                                   |
//!   accept/dial -> RA-TLS -> Hello/admit -> PeerTable -> peer_up/down/updated -> handlers
//!                                               |
//!                    session: stream header -> handler(family).uni / .bi
//! ```

pub mod builder;
mod control;
mod core;
mod endpoint;
pub mod handler;
pub mod outbox;
pub mod peer;
pub mod peers;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tessella_attestation::ratls::{self, PeerIdentity, RatlsVerifier};
use tessella_attestation::{
    Collateral, CollateralStore, TicketError, TicketValidator, VerifyError,
};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use self::builder::{Identity, Limits, NetworkBuilder, NetworkError, TicketSource};
pub use self::core::AddressBook;
pub use self::endpoint::{SocketWrapper, MAX_BI_STREAMS, MAX_UNI_STREAMS};
pub use self::handler::{
    HandlerFuture, IncomingBi, IncomingUni, PeerInfo, ProtocolHandler, RegisterError,
};
pub(crate) use self::outbox::Link;
pub use self::outbox::{FullPolicy, OutboxPolicy, SendError};
pub use self::peer::{KeepAlive, PeerError, PeerHandle};

use self::core::Core;
use crate::id::{NetworkId, NodeId};

/// How long handlers get to say their last words at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The running transport (cheap to clone; every clone is the same node).
#[derive(Clone)]
pub struct Network {
    core: Arc<Core>,
    control: Arc<Control>,
}

struct Control {
    shutdown: watch::Sender<bool>,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
}

/// What the node knows about a connected peer.
#[derive(Debug, Clone)]
pub struct ConnectedPeer {
    /// The verified identity.
    pub identity: Arc<PeerIdentity>,
    /// The remote address.
    pub addr: SocketAddr,
    /// When the peer's ticket expires.
    pub ticket_expires: u64,
    /// How long the connection has been up.
    pub connected_for: Duration,
}

impl Network {
    /// Start configuring a node of the network called `name`.
    pub fn builder(name: &str) -> NetworkBuilder {
        NetworkBuilder::new(name)
    }

    /// Plug a subsystem in: it hears about every admitted peer (those up
    /// already first) and receives the streams of its family.
    pub fn register(&self, handler: Arc<dyn ProtocolHandler>) -> Result<(), RegisterError> {
        self.core.register(handler)
    }

    /// Where peer handles look up addresses of nodes not connected yet.
    pub fn set_address_book(&self, book: Arc<dyn AddressBook>) {
        *self
            .core
            .addresses
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(book);
    }

    /// A handle on `node` (connected or not).
    pub fn peer(&self, node: NodeId) -> PeerHandle {
        PeerHandle {
            core: self.core.clone(),
            node,
        }
    }

    /// Dial `addrs` in order until `node` is admitted (no-op when it is
    /// connected or being dialled). Returns whether it is connected.
    pub async fn reach(&self, node: NodeId, addrs: Vec<SocketAddr>) -> bool {
        self.core.reach(node, addrs).await
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.core.node_id
    }

    /// The network's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The network's id.
    pub fn network_id(&self) -> NetworkId {
        self.core.network
    }

    /// `dev` or `tdx`.
    pub fn mode(&self) -> &'static str {
        self.core.mode
    }

    /// The UDP address peers reach this node at (a wildcard listen address
    /// is reported as loopback).
    pub fn local_addr(&self) -> SocketAddr {
        self.core.local_addr
    }

    /// Unix time the node started.
    pub fn started_at(&self) -> u64 {
        self.core.started_at
    }

    /// Node time in milliseconds: the clock at start plus monotonic time
    /// since (what subsystems' protocol state is fed).
    pub fn now_ms(&self) -> u64 {
        self.core.now_ms()
    }

    /// Install this node's ticket (issued for its node id and this network)
    /// and present it from now on. Returns its expiry.
    pub fn install_ticket(&self, token: &str) -> Result<u64, TicketError> {
        let core = &self.core;
        let claims =
            core.validator
                .validate(token.trim(), Some(&core.node_id.to_string()), core.now())?;
        *core::lock(&core.ticket) = (token.trim().to_string(), claims.exp);
        tracing::info!(expires = claims.exp, "ticket installed");
        core.announce_ticket();
        Ok(claims.exp)
    }

    /// Revoke tickets whose `jti` or `sub` (node id) is `id`: sessions that
    /// relied on them close now with `TicketRevoked`, and they no longer
    /// admit. Returns the number of sessions closed, or `None` when the
    /// revocation list is full.
    pub fn revoke(&self, id: &str) -> Option<usize> {
        self.core.revoke(id)
    }

    /// The live list of revoked tickets and node ids, for subsystems that
    /// check tickets in their own messages (see [`Network::revoke`]).
    pub fn revocations(&self) -> crate::admission::RevocationView {
        self.core.revoked.clone()
    }

    /// When this node's ticket expires (0: none installed).
    pub fn ticket_expires(&self) -> u64 {
        self.core.own_ticket().1
    }

    /// This node's current ticket, as presented in its Hello (empty: none
    /// installed). Renewal replaces it, so read it again rather than keep it.
    pub fn ticket(&self) -> String {
        self.core.own_ticket().0
    }

    /// The validator peers' tickets are checked with (this network's trusted
    /// issuers, audience and leeway), for subsystems that check tickets
    /// carried in their own messages, such as discovery records.
    pub fn ticket_validator(&self) -> TicketValidator {
        self.core.validator.clone()
    }

    /// The node's clock, Unix seconds.
    pub fn now(&self) -> u64 {
        self.core.now()
    }

    /// True once shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.core.is_stopping()
    }

    /// The collateral store.
    pub fn collateral(&self) -> &Arc<CollateralStore> {
        self.core.verifier.store()
    }

    /// The trust anchor's name.
    pub fn anchor_name(&self) -> String {
        self.core.verifier.quote_verifier().anchor().to_string()
    }

    /// The measurements this node's own quote reports.
    pub fn own_measurements(&self) -> Option<tessella_attestation::measurements::TdMeasurements> {
        self.core.own_quote().map(|q| q.measurements())
    }

    /// Verify a collateral bundle against the trust anchor with a real quote
    /// of its platform (this node's own, or one a peer was refused with for
    /// lack of it) and store it. Other bundles cannot be checked and are
    /// refused. Blocking (dcap-qvl): call it off the async workers.
    pub fn add_collateral(&self, collateral: Collateral) -> Result<bool, VerifyError> {
        self.core.verify_and_store(collateral)
    }

    /// This node's current RA-TLS certificate and evidence.
    pub fn certificate(&self) -> ratls::RatlsIdentity {
        self.core.resolver.current()
    }

    /// The RA-TLS verifier (trust anchor, policy, verdict cache).
    pub fn verifier(&self) -> &Arc<RatlsVerifier> {
        &self.core.verifier
    }

    /// Peers currently connected and admitted.
    pub fn connected(&self) -> Vec<ConnectedPeer> {
        let now_ms = self.core.now_ms();
        self.core
            .table()
            .iter()
            .map(|(_, s)| ConnectedPeer {
                identity: s.admitted.identity.clone(),
                addr: s.conn.remote_address(),
                ticket_expires: s.admitted.ticket_expires(),
                connected_for: Duration::from_millis(now_ms.saturating_sub(s.since_ms)),
            })
            .collect()
    }

    /// The largest frame this node sends or accepts.
    pub fn max_frame(&self) -> usize {
        self.core.limits.max_frame
    }

    /// Run CPU-heavy verification (signatures, dcap-qvl) on the blocking
    /// pool, at most one per core at a time. `None` if the task failed.
    pub async fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        self.core.blocking(f).await
    }

    /// Close `peer`'s connection with `code` (a subsystem caught it
    /// misbehaving).
    pub fn close_peer(&self, peer: &NodeId, code: crate::wire::CloseCode, reason: &str) {
        self.core.close_peer(peer, code, reason);
    }

    /// Writer tasks alive (one per (peer, family) queue): for tests and
    /// metrics.
    pub fn outbox_count(&self) -> usize {
        self.core.outboxes.len()
    }

    /// Dial a peer now (in addition to bootstrap and discovery).
    pub async fn connect(&self, addr: SocketAddr) -> Result<NodeId, String> {
        self.core.dial(addr).await
    }

    /// Let every handler say its last words (bounded), close every
    /// connection with `Departed` and stop.
    pub async fn shutdown(&self) {
        let handlers = self.core.handlers.all();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            let mut last = JoinSet::new();
            for h in handlers {
                last.spawn(h.shutdown());
            }
            while last.join_next().await.is_some() {}
        })
        .await;
        let _ = self.control.shutdown.send(true);
        self.core.outboxes.close_all();
        self.core
            .endpoint
            .close(crate::wire::CloseCode::Departed.into(), b"departed");
        // Let peers see the close; a draining connection needs a few round trips.
        let _ =
            tokio::time::timeout(Duration::from_millis(500), self.core.endpoint.wait_idle()).await;
        let mut tasks = self.control.tasks.lock().await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        // Handlers hold the network: dropping them breaks the cycle.
        drop(self.core.handlers.clear());
        tracing::info!(node = %self.core.node_id, "node stopped");
    }
}
