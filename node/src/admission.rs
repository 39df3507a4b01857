//! Admission: what a peer must show after the RA-TLS handshake.
//!
//! ```text
//! dialer                                   listener
//!   | -- open bi stream, header Control/1 -->  |
//!   | -- frame Hello{network, ticket} ------>  |  admit(): network, ticket (sub = dialer's
//!   |                                          |  node id from its verified certificate)
//!   | <-- frame Hello{network, ticket} ------  |  or close(AdmissionRefused / WrongNetwork
//!   admit() the listener the same way          |  / TicketExpired, reason)
//! ```
//!
//! The RA-TLS verdict proves *what* the peer runs; the ticket says *what it
//! may do* in this network. Both are required, both ways. Decisions are pure
//! functions of `(verdict, hello, now)` so they are tested without sockets.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tessella_attestation::identity::NetworkId;
use tessella_attestation::ratls::PeerIdentity;
use tessella_attestation::{TicketClaims, TicketError, TicketValidator};

use crate::wire::CloseCode;

/// Messages on the control stream. Versioned: a later protocol adds variants.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlMsg {
    /// Protocol version 1.
    V1(Hello),
}

/// A node's introduction: which network it believes it joins and its ticket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's network id.
    pub network: NetworkId,
    /// The sender's JWT ticket (`sub` = its node id, `aud` = the network name).
    pub ticket: String,
    /// Software version, for operators.
    pub software: String,
    /// Chosen at random each time the sender starts. A node restarted on its
    /// data dir keeps its id; a different incarnation tells its peers that a
    /// connection they still hold to that id is dead and must be replaced,
    /// rather than kept by the duplicate-connection tie-break.
    pub incarnation: u64,
}

/// An admitted peer: attested and ticketed.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The verified RA-TLS identity.
    pub identity: Arc<PeerIdentity>,
    /// The validated ticket's claims.
    pub claims: TicketClaims,
    /// The peer's incarnation (from its Hello).
    pub incarnation: u64,
}

impl Admitted {
    /// When the ticket stops admitting the peer (its `exp`).
    pub fn ticket_expires(&self) -> u64 {
        self.claims.exp
    }
}

/// Why a peer was refused, and how the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The close code sent to the peer.
    pub code: CloseCode,
    /// A short, stable reason (a ticket error code or a fixed phrase), sent
    /// as the close reason.
    pub reason: String,
    /// The metrics label: from a fixed set (a ticket error code or a fixed
    /// phrase), never text a peer chose.
    pub label: &'static str,
}

impl Refused {
    /// A refusal with a fixed reason (also its metrics label).
    pub fn new(code: CloseCode, reason: &'static str) -> Refused {
        Refused {
            code,
            reason: reason.to_string(),
            label: reason,
        }
    }

    fn ticket(e: &TicketError) -> Refused {
        let code = match e {
            TicketError::Expired { .. } => CloseCode::TicketExpired,
            _ => CloseCode::AdmissionRefused,
        };
        Refused {
            code,
            reason: format!("ticket {}", e.code()),
            label: e.code(),
        }
    }
}

/// Revoked ticket ids (`jti`) and node ids (`sub`), bounded.
#[derive(Debug, Default)]
pub struct Revocations {
    ids: std::collections::HashSet<String>,
}

/// Most revocation entries kept.
pub const MAX_REVOCATIONS: usize = 10_000;

impl Revocations {
    /// Revoke tickets whose `jti` or `sub` is `id`. False when full.
    pub fn revoke(&mut self, id: &str) -> bool {
        if self.ids.len() >= MAX_REVOCATIONS && !self.ids.contains(id) {
            return false;
        }
        self.ids.insert(id.to_string());
        true
    }

    /// Whether `claims` is revoked.
    pub fn covers(&self, claims: &TicketClaims) -> bool {
        self.ids.contains(&claims.sub) || claims.jti.as_ref().is_some_and(|j| self.ids.contains(j))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A live, read-only view of a node's [`Revocations`], for subsystems that
/// check tickets carried in their own messages (discovery records): a
/// revocation applies to them the moment it is made, with no copy to refresh.
#[derive(Debug, Clone, Default)]
pub struct RevocationView(Arc<std::sync::Mutex<Revocations>>);

impl RevocationView {
    /// Whether `claims` is revoked now.
    pub fn covers(&self, claims: &TicketClaims) -> bool {
        self.lock().covers(claims)
    }

    /// The list itself, for the transport that owns it (to revoke).
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Revocations> {
        // A panic while holding the lock leaves a set of strings, still valid.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl From<Revocations> for RevocationView {
    fn from(revocations: Revocations) -> Self {
        RevocationView(Arc::new(std::sync::Mutex::new(revocations)))
    }
}

/// Decide whether the peer behind `identity` that sent `hello` is admitted.
pub fn admit(
    identity: Arc<PeerIdentity>,
    hello: &Hello,
    network: &NetworkId,
    validator: &TicketValidator,
    revoked: &Revocations,
    now: u64,
) -> Result<Admitted, Refused> {
    if hello.network != *network {
        return Err(Refused::new(CloseCode::WrongNetwork, "different network"));
    }
    let sub = identity.node_id.to_string();
    let claims = validator
        .validate(&hello.ticket, Some(&sub), now)
        .map_err(|e| Refused::ticket(&e))?;
    if revoked.covers(&claims) {
        return Err(Refused::new(CloseCode::TicketRevoked, "ticket revoked"));
    }
    Ok(Admitted {
        identity,
        claims,
        incarnation: hello.incarnation,
    })
}
