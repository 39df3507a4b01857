//! What the admin API needs from the node runtime.

use tessella_attestation::TicketError;

use super::types::{
    AttestationView, CollateralAccepted, CollateralRejected, NodeStatus, Readiness, TicketInstalled,
};

/// The node itself as the admin API sees it (subsystems add their routes as
/// sub-routers, see [`router`](super::router)). The runtime implements this;
/// tests use a fake.
///
/// Contract:
/// - Every method except [`upload_collateral`](Self::upload_collateral) is
///   called on the async runtime and must answer from in-memory state without
///   blocking (take a snapshot under a short lock; no disk or network I/O).
/// - [`upload_collateral`](Self::upload_collateral) runs on tokio's blocking
///   pool and may verify signatures and write to disk.
/// - Nothing returned may contain secrets: `/ready` is served without
///   authentication, and the rest goes to any admin.
pub trait AdminBackend: Send + Sync + 'static {
    /// Who this node is: `GET /v1/status`.
    fn status(&self) -> NodeStatus;

    /// Whether the node can serve, with the checks behind the verdict
    /// (endpoint bound, certificate valid, collateral present, ...):
    /// `GET /ready`.
    fn ready(&self) -> Readiness;

    /// This node's own evidence: `GET /v1/attestation`.
    fn attestation(&self) -> AttestationView;

    /// A collateral bundle (QuoteCollateralV3 JSON, at most
    /// [`MAX_COLLATERAL_BODY`](super::MAX_COLLATERAL_BODY) bytes, possibly
    /// empty or garbage) uploaded by an admin: `POST /v1/collateral`.
    ///
    /// Must verify it against the node's trust anchor at the node's current
    /// time *before* storing it, and refuse anything that does not verify
    /// with a reason the operator can act on. Returns `stored: false` when
    /// the store already holds the same or newer collateral for that FMSPC.
    fn upload_collateral(&self, body: &[u8]) -> Result<CollateralAccepted, CollateralRejected>;

    /// Install this node's own ticket (a JWT for its node id and network):
    /// `POST /v1/ticket`. Must validate it before using it.
    fn install_ticket(&self, token: &str) -> Result<TicketInstalled, TicketError>;

    /// Revoke tickets whose `jti` or `sub` (node id) is `id`, closing the
    /// sessions that relied on them: `POST /v1/revoke`. Returns the number of
    /// sessions closed, or `None` when the revocation list is full.
    fn revoke(&self, id: &str) -> Option<usize>;

    /// The node's metrics in the Prometheus text exposition format (e.g.
    /// `PrometheusHandle::render`): `GET /metrics`.
    fn metrics_text(&self) -> String;
}
