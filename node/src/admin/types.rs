//! What the admin API returns: JSON views of the node, filled in by the
//! runtime through [`AdminBackend`](super::AdminBackend).
//!
//! Every type here is the exact JSON shape of a response body (field names are
//! the Rust names). They also implement `Deserialize`, so clients and tests
//! can read responses back into them. Times are Unix seconds, byte strings
//! are lowercase hex, node ids are the 64-hex-character form.

use serde::{Deserialize, Serialize};
use tessella_attestation::measurements::TdMeasurements;

/// Where the node's evidence comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeMode {
    /// Dev quotes under the generated dev PKI; not for production.
    Dev,
    /// Real TDX quotes (configfs-tsm) under Intel's root.
    Tdx,
}

/// `GET /v1/status`: who this node is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// This node's id (64 hex characters, derived from its TLS key).
    pub node_id: String,
    /// The network's name (the `aud` of its tickets).
    pub network: String,
    /// The network id derived from the name, hex.
    pub network_id: String,
    /// `dev` or `tdx`.
    pub mode: NodeMode,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// Software version (`CARGO_PKG_VERSION` of the node).
    pub version: String,
    /// When the node started, Unix seconds.
    pub started_at: u64,
}

/// One named readiness condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessCheck {
    /// A stable snake_case name, e.g. `endpoint_bound`, `certificate_valid`,
    /// `collateral_present`.
    pub name: String,
    /// Whether the condition holds.
    pub ok: bool,
    /// A short human explanation ("valid until 2025-06-20T10:00:00Z",
    /// "no collateral for FMSPC 00906ed50000"). Served without
    /// authentication: never put secrets here.
    pub detail: String,
}

impl ReadinessCheck {
    /// A check called `name`.
    pub fn new(name: impl Into<String>, ok: bool, detail: impl Into<String>) -> Self {
        ReadinessCheck {
            name: name.into(),
            ok,
            detail: detail.into(),
        }
    }
}

/// `GET /ready`: whether the node can serve, and why not.
///
/// The endpoint answers 200 only if `ready` is true *and* every check is
/// ok, so a backend cannot report ready with a failing check by mistake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// The overall verdict.
    pub ready: bool,
    /// The individual conditions.
    pub checks: Vec<ReadinessCheck>,
}

impl Readiness {
    /// Ready exactly when every check is ok.
    pub fn from_checks(checks: Vec<ReadinessCheck>) -> Self {
        Readiness {
            ready: checks.iter().all(|check| check.ok),
            checks,
        }
    }
}

/// Why a peer was let in: its RA-TLS verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictView {
    /// The peer's measured identity from its verified quote.
    pub measurements: TdMeasurements,
    /// Intel's converged TCB status (`UpToDate`, `SWHardeningNeeded`, ...).
    pub tcb_status: String,
    /// Security advisories that apply to the peer's platform.
    pub advisory_ids: Vec<String>,
    /// The measurement policy entry that matched, if the policy names entries.
    pub matched_entry: Option<String>,
    /// The trust anchor the quote chained to (`Intel SGX Root CA`, `tessella-dev`).
    pub anchor: String,
    /// When the cached verdict lapses (earlier of certificate and collateral
    /// expiry), Unix seconds.
    pub verdict_expires: u64,
}

/// One entry of `GET /v1/peers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    /// The peer's node id.
    pub node_id: String,
    /// Addresses from its peer record (`ip:port`).
    pub addrs: Vec<String>,
    /// Whether an admitted connection to it is open now.
    pub connected: bool,
    /// Its verdict, if this node has verified it (peers known only from
    /// gossip have none).
    pub verdict: Option<VerdictView>,
    /// When its ticket expires, if it presented one to this node.
    pub ticket_expires: Option<u64>,
    /// Tags from its peer record.
    pub tags: Vec<String>,
    /// Services from its peer record, in the order it lists them (empty for
    /// a connected peer whose record has not arrived yet).
    #[serde(default)]
    pub services: Vec<ServiceView>,
    /// Seconds since this node last heard of it.
    pub last_seen_secs_ago: u64,
}

/// A service a peer advertises: `{"kind":"stream","id":"<64 hex>","role":"producer"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    /// `stream`, `group`, `collection` or `function`.
    pub kind: String,
    /// The stream, group, store or function id, 64 hex characters.
    pub id: String,
    /// The peer's role: `producer` or `consumer` (stream), `voter` or
    /// `learner` (group), `writer` or `reader` (collection), `server`
    /// (function).
    pub role: String,
}

/// `GET /v1/peers`. An object rather than a bare list, so fields can be added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeersResponse {
    /// The catalog, as the backend orders it.
    pub peers: Vec<PeerView>,
}

/// `GET /v1/attestation`: this node's own evidence, as peers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationView {
    /// This node's id.
    pub node_id: String,
    /// The raw TDX quote in the current certificate, hex.
    pub quote_hex: String,
    /// The current RA-TLS certificate, PEM.
    pub cert_pem: String,
    /// The measurements the quote carries.
    pub measurements: TdMeasurements,
    /// Certificate validity start, Unix seconds.
    pub cert_not_before: u64,
    /// Certificate validity end, Unix seconds.
    pub cert_not_after: u64,
    /// The trust anchor the quote chains to.
    pub anchor: String,
}

/// `POST /v1/collateral` success: what was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollateralAccepted {
    /// The platform model the collateral is for, hex.
    pub fmspc: String,
    /// Start of the collateral's validity, Unix seconds.
    pub valid_from: u64,
    /// End of the collateral's validity, Unix seconds.
    pub valid_until: u64,
    /// `true` if it was stored (answered with 201), `false` if the store
    /// already held the same or newer collateral (answered with 200).
    pub stored: bool,
}

/// `POST /v1/collateral` refusal: answered with 400 and this code and reason.
///
/// The reason goes to the (authenticated) caller verbatim, so it should say
/// what is wrong with the bundle and what to do, e.g. "collateral expired at
/// 2025-06-01T00:00:00Z; fetch a fresh bundle from Intel PCS".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct CollateralRejected {
    /// Why, for people.
    pub reason: String,
    /// A stable snake_case code, e.g. `not_json`, `bad_signature`, `expired`.
    pub code: &'static str,
}

impl CollateralRejected {
    /// A refusal with `code` and `reason`.
    pub fn new(code: &'static str, reason: impl Into<String>) -> Self {
        CollateralRejected {
            reason: reason.into(),
            code,
        }
    }
}

/// The body of every error response:
/// `{"error": {"code": "unauthenticated", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable snake_case code to match on.
    pub code: String,
    /// What went wrong and what to do, for people.
    pub message: String,
}

/// `POST /v1/ticket` accepted this node's new ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketInstalled {
    /// The node the ticket is for (this one).
    pub node_id: String,
    /// When it expires (Unix seconds).
    pub expires: u64,
}

/// `POST /v1/revoke` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// A ticket id (`jti`) or a node id (`sub`).
    pub id: String,
}

/// `POST /v1/revoke` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    /// What was revoked.
    pub id: String,
    /// Sessions closed because they relied on it.
    pub closed_sessions: usize,
}
