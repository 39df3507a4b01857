//! Signed peer records: what a node says about itself, signed with the key of
//! its RA-TLS certificate, so anyone can check who wrote it and no node can
//! speak for another; and carrying the node's ticket, so only nodes a trusted
//! issuer vouched for (for this network, until the ticket expires) can appear
//! in a catalog.
//!
//! ```text
//! PeerRecord (postcard; "varint" = LEB128; at most MAX_RECORD_BYTES = 12 KiB)
//!   node_id     32 B              blake3 of the signer's SPKI (must match `spki`)
//!   network     32 B              NetworkId the record is valid in
//!   addrs       varint n ≤ 16,    n × SocketAddr:
//!                                   varint 0 (V4) | 4 B ip  | varint port
//!                                   varint 1 (V6) | 16 B ip | varint port
//!   tags        varint n ≤ 32,    n × 32 B
//!   services    varint n ≤ 64,    n × Service, 34 B each (see service.rs):
//!                                   varint kind | 32 B id | varint role
//!   ticket      varint len ≤ 8192, UTF-8: the owner's JWT ticket, the one it
//!                                 presents in its Hello (sub = node id hex,
//!                                 aud = network name)
//!   version     varint u64        strictly increasing per node (issue time, ms)
//!   issued_at   varint u64        Unix seconds
//!   software    varint len ≤ 64,  UTF-8
//!   departing   1 B (0 | 1)       1 = graceful departure (then addrs is empty)
//!
//! SignedRecord (postcard)
//!   record_bytes  varint len ≤ 12288, the PeerRecord bytes above, verbatim
//!   spki          varint len ≤ 256,   signer's SubjectPublicKeyInfo, DER
//!   signature     varint len ≤ 128,   ECDSA P-256 / SHA-256, ASN.1 DER, over
//!                                     "tessella-discovery-record-v2" ‖ record_bytes
//! ```
//!
//! The signature covers the exact bytes that travel, so verification never
//! re-encodes; trailing bytes after the record are refused. The bounds are
//! chosen so that a record at every limit still fits `MAX_RECORD_BYTES`
//! (about 11.6 KiB), so signing never fails on size alone.
//!
//! [`SignedRecord::verify`] checks cheapest first and the ticket last (a JWT
//! signature and JSON parse), so garbage and forgeries cost little.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tessella_attestation::identity::{NetworkId, NodeId};
use tessella_attestation::ratls::{verify_node_signature, RatlsError, RatlsIdentity};
use tessella_attestation::ticket::MAX_TICKET_LEN;
use tessella_attestation::{TicketClaims, TicketError, TicketValidator};

use super::service::Service;
use crate::admission::RevocationView;

/// Domain separation prefix of record signatures: a signature made for a
/// discovery record is never valid for anything else signed with the node key.
/// v2: records carry typed services and the owner's ticket; a v1 signature
/// (free-form services, no ticket) can never pass for a v2 record.
pub const RECORD_SIGNING_DOMAIN: &[u8] = b"tessella-discovery-record-v2";
/// Largest encoded [`PeerRecord`]: a maximal ticket plus every other field at
/// its bound (about 11.6 KiB) fits.
pub const MAX_RECORD_BYTES: usize = 12 * 1024;
/// Longest ticket in a record, bytes: any ticket a validator accepts fits, so
/// a node admitted with its ticket can always publish it.
pub const MAX_RECORD_TICKET_LEN: usize = MAX_TICKET_LEN;
/// Most addresses in a record.
pub const MAX_ADDRS: usize = 16;
/// Most tags in a record.
pub const MAX_TAGS: usize = 32;
/// Most services in a record.
pub const MAX_SERVICES: usize = 64;
/// Longest software string, bytes.
pub const MAX_SOFTWARE_LEN: usize = 64;
/// Longest signer SPKI, bytes (a P-256 SPKI is 91).
pub const MAX_SPKI_LEN: usize = 256;
/// Longest signature, bytes (an ECDSA P-256 DER signature is at most 72).
pub const MAX_SIGNATURE_LEN: usize = 128;

/// What a node publishes about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// The publishing node (must be the signer).
    #[serde(with = "wire_id::node")]
    pub node_id: NodeId,
    /// The network this record is valid in.
    #[serde(with = "wire_id::network")]
    pub network: NetworkId,
    /// Where the node accepts QUIC connections.
    pub addrs: Vec<SocketAddr>,
    /// The node's tags (blake3 `derive_key` outputs).
    pub tags: Vec<[u8; 32]>,
    /// Offered streams, groups, collections and functions, in the order the
    /// node listed them.
    pub services: Vec<Service>,
    /// The owner's ticket (a JWT), the same it presents in its Hello:
    /// verifiers check it was issued for this node and network and has not
    /// expired.
    pub ticket: String,
    /// Strictly increasing per node: a higher version replaces a lower one.
    pub version: u64,
    /// When the record was signed, Unix seconds.
    pub issued_at: u64,
    /// Software name and version, for operators.
    pub software: String,
    /// A graceful departure: the node is leaving and should be forgotten.
    pub departing: bool,
}

/// A [`PeerRecord`] as it travels: its exact bytes, the signer's public key
/// and the signature.
///
/// The bytes are shared (`Arc<[u8]>`, encoded exactly as a `Vec<u8>`): a
/// record is relayed to every active peer and held by catalog, push queues
/// and messages at once, and a clone should not copy a kilobyte of ticket
/// each time (in the simulator, n nodes relay n records).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedRecord {
    /// postcard encoding of the [`PeerRecord`].
    #[serde(with = "shared_bytes")]
    pub record_bytes: Arc<[u8]>,
    /// The signer's SubjectPublicKeyInfo, DER.
    #[serde(with = "shared_bytes")]
    pub spki: Arc<[u8]>,
    /// Signature over [`RECORD_SIGNING_DOMAIN`] ‖ `record_bytes`.
    #[serde(with = "shared_bytes")]
    pub signature: Arc<[u8]>,
}

/// Shared bytes on the wire exactly as `Vec<u8>` (a length, then the bytes).
mod shared_bytes {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &Arc<[u8]>, s: S) -> Result<S::Ok, S::Error> {
        b[..].serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<[u8]>, D::Error> {
        Vec::<u8>::deserialize(d).map(Arc::from)
    }
}

/// A record whose bounds, network, signer, issue time, signature and ticket
/// were checked. Only [`SignedRecord::verify`] makes one, so holding one is
/// proof that verification ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRecord {
    record: PeerRecord,
    signed: SignedRecord,
    claims: TicketClaims,
}

/// What a record must satisfy to be stored or relayed.
#[derive(Debug, Clone)]
pub struct RecordCheck {
    /// The network records must be for.
    pub network: NetworkId,
    /// Checks the record's ticket: trusted issuers, audience (the network's
    /// name) and leeway on expiry.
    pub validator: TicketValidator,
    /// Tolerated clock difference for `issued_at`, seconds.
    pub max_skew_secs: u64,
    /// Revoked tickets and nodes: a record whose ticket is covered is
    /// refused, so a revoked node drops out of catalogs as its last record
    /// ages out. `None`: no revocation list.
    pub revoked: Option<RevocationView>,
}

impl RecordCheck {
    /// Checks for the network the validator is for (its audience is the
    /// network's name, so the id is derived from it and the two cannot
    /// disagree), tolerating `max_skew_secs` of clock difference.
    pub fn new(validator: TicketValidator, max_skew_secs: u64) -> RecordCheck {
        RecordCheck {
            network: NetworkId::from_name(validator.audience()),
            validator,
            max_skew_secs,
            revoked: None,
        }
    }

    /// Also refuse records whose ticket `revoked` covers.
    pub fn with_revocations(mut self, revoked: RevocationView) -> RecordCheck {
        self.revoked = Some(revoked);
        self
    }
}

/// Why a record was refused (or could not be signed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// A field of the signed envelope is larger than allowed.
    #[error("{what} is {len} bytes, more than the maximum {max}")]
    Oversize {
        /// Which part.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The record bytes do not decode as a record.
    #[error("malformed record: {0}")]
    Malformed(String),
    /// A list in the record has too many entries.
    #[error("record has {len} {field}, more than the maximum {max}")]
    TooMany {
        /// Which list.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A string in the record is too long.
    #[error("record {field} is {len} bytes, more than the maximum {max}")]
    TooLong {
        /// Which string.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The signature does not verify under the given key.
    #[error("record signature does not verify")]
    BadSignature,
    /// The record names another node than the key that signed it.
    #[error("record claims node {claimed} but is signed by node {signer}")]
    NodeIdMismatch {
        /// The node id in the record.
        claimed: NodeId,
        /// The node id of the signing key.
        signer: NodeId,
    },
    /// The record belongs to another network.
    #[error("record is for network {found}, expected {expected}")]
    WrongNetwork {
        /// This node's network.
        expected: NetworkId,
        /// The record's network.
        found: NetworkId,
    },
    /// The record was issued further in the future than clock skew explains.
    #[error("record issued at {issued_at}, in the future (now {now}, skew allowed {max_skew} s); check the clocks")]
    FromTheFuture {
        /// The record's issue time.
        issued_at: u64,
        /// Verification time.
        now: u64,
        /// Tolerated skew, seconds.
        max_skew: u64,
    },
    /// The record's ticket was refused: untrusted issuer, bad signature,
    /// another node's or another network's ticket, expired, malformed.
    #[error("record ticket refused: {0}")]
    Ticket(TicketError),
    /// The record's ticket, or its node, was revoked on this node.
    #[error("record of node {node} carries a revoked ticket")]
    Revoked {
        /// The record's node.
        node: NodeId,
    },
    /// The local key could not sign.
    #[error("signing the record failed: {0}")]
    Sign(RatlsError),
}

impl RecordError {
    /// A stable snake_case code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            RecordError::Oversize { .. } => "oversize",
            RecordError::Malformed(_) => "malformed",
            RecordError::TooMany { .. } => "too_many",
            RecordError::TooLong { .. } => "too_long",
            RecordError::BadSignature => "bad_signature",
            RecordError::NodeIdMismatch { .. } => "node_id_mismatch",
            RecordError::WrongNetwork { .. } => "wrong_network",
            RecordError::FromTheFuture { .. } => "from_the_future",
            RecordError::Ticket(e) => ticket_code(e),
            RecordError::Revoked { .. } => "revoked",
            RecordError::Sign(_) => "sign",
        }
    }
}

/// `ticket_` and the ticket error's code, as one static string (metric labels
/// must come from a fixed set).
fn ticket_code(e: &TicketError) -> &'static str {
    match e {
        TicketError::Malformed { .. } => "ticket_malformed",
        TicketError::TooLarge { .. } => "ticket_too_large",
        TicketError::UnknownIssuer { .. } => "ticket_unknown_issuer",
        TicketError::IssuerMismatch { .. } => "ticket_issuer_mismatch",
        TicketError::BadSignature => "ticket_bad_signature",
        TicketError::Expired { .. } => "ticket_expired",
        TicketError::NotYetValid { .. } => "ticket_not_yet_valid",
        TicketError::WrongAudience { .. } => "ticket_wrong_audience",
        TicketError::WrongSubject { .. } => "ticket_wrong_subject",
        TicketError::UnsupportedAlgorithm { .. } => "ticket_unsupported_algorithm",
        TicketError::AlgorithmMismatch { .. } => "ticket_algorithm_mismatch",
        TicketError::InvalidPermission { .. } => "ticket_invalid_permission",
        TicketError::InvalidClaim { .. } => "ticket_invalid_claim",
        // Issuer-side errors and any added later.
        _ => "ticket",
    }
}

impl PeerRecord {
    /// Check the record's list and string bounds.
    pub fn check_limits(&self) -> Result<(), RecordError> {
        let many = |field, len, max| {
            if len > max {
                Err(RecordError::TooMany { field, len, max })
            } else {
                Ok(())
            }
        };
        many("addrs", self.addrs.len(), MAX_ADDRS)?;
        many("tags", self.tags.len(), MAX_TAGS)?;
        many("services", self.services.len(), MAX_SERVICES)?;
        if self.ticket.len() > MAX_RECORD_TICKET_LEN {
            return Err(RecordError::TooLong {
                field: "ticket",
                len: self.ticket.len(),
                max: MAX_RECORD_TICKET_LEN,
            });
        }
        if self.software.len() > MAX_SOFTWARE_LEN {
            return Err(RecordError::TooLong {
                field: "software",
                len: self.software.len(),
                max: MAX_SOFTWARE_LEN,
            });
        }
        if self.departing && !self.addrs.is_empty() {
            return Err(RecordError::Malformed(
                "a departing record lists addresses".into(),
            ));
        }
        Ok(())
    }

    /// `issued_at` in Unix milliseconds.
    pub fn issued_at_ms(&self) -> u64 {
        self.issued_at.saturating_mul(1000)
    }
}

/// The exact bytes a record signature covers.
pub(crate) fn signing_message(record_bytes: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(RECORD_SIGNING_DOMAIN.len() + record_bytes.len());
    msg.extend_from_slice(RECORD_SIGNING_DOMAIN);
    msg.extend_from_slice(record_bytes);
    msg
}

impl SignedRecord {
    /// Encode and sign `record` with the node's RA-TLS key. The record must
    /// name the identity's node and respect the bounds [`SignedRecord::verify`]
    /// enforces.
    pub fn sign(
        record: &PeerRecord,
        identity: &RatlsIdentity,
    ) -> Result<SignedRecord, RecordError> {
        if record.node_id != identity.node_id() {
            return Err(RecordError::NodeIdMismatch {
                claimed: record.node_id,
                signer: identity.node_id(),
            });
        }
        record.check_limits()?;
        let record_bytes =
            postcard::to_allocvec(record).map_err(|e| RecordError::Malformed(e.to_string()))?;
        if record_bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::Oversize {
                what: "record",
                len: record_bytes.len(),
                max: MAX_RECORD_BYTES,
            });
        }
        let spki = identity.spki_der().map_err(RecordError::Sign)?;
        let signature = identity
            .sign(&signing_message(&record_bytes))
            .map_err(RecordError::Sign)?;
        Ok(SignedRecord {
            record_bytes: record_bytes.into(),
            spki: spki.into(),
            signature: signature.into(),
        })
    }

    /// Decode the record WITHOUT checking anything but its encoding and sizes.
    /// For cheap pre-checks (do we already have this version?) only: never
    /// store or act on the result.
    pub fn peek_unverified(&self) -> Result<PeerRecord, RecordError> {
        self.check_sizes()?;
        let (record, rest) = postcard::take_from_bytes::<PeerRecord>(&self.record_bytes)
            .map_err(|e| RecordError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(RecordError::Malformed(format!(
                "{} trailing bytes after the record",
                rest.len()
            )));
        }
        Ok(record)
    }

    /// Verify the record against `check` at `now_secs` (Unix seconds), cheapest
    /// checks first: envelope sizes, encoding, bounds, network, signer (the
    /// record's node id is the id of the signing key), issue time (not in the
    /// future beyond `check.max_skew_secs`), signature, and last the ticket:
    /// signed by a trusted issuer, for this node (`sub`) and this network
    /// (`aud`), valid at `now_secs` within the validator's leeway, and not
    /// revoked (if `check.revoked` is set).
    pub fn verify(
        &self,
        check: &RecordCheck,
        now_secs: u64,
    ) -> Result<VerifiedRecord, RecordError> {
        let record = self.peek_unverified()?;
        record.check_limits()?;
        if record.network != check.network {
            return Err(RecordError::WrongNetwork {
                expected: check.network,
                found: record.network,
            });
        }
        let signer = NodeId::from_spki(&self.spki);
        if signer != record.node_id {
            return Err(RecordError::NodeIdMismatch {
                claimed: record.node_id,
                signer,
            });
        }
        if record.issued_at > now_secs.saturating_add(check.max_skew_secs) {
            return Err(RecordError::FromTheFuture {
                issued_at: record.issued_at,
                now: now_secs,
                max_skew: check.max_skew_secs,
            });
        }
        let verified_signer = verify_node_signature(
            &self.spki,
            &signing_message(&self.record_bytes),
            &self.signature,
        )
        .map_err(|_| RecordError::BadSignature)?;
        if verified_signer != record.node_id {
            return Err(RecordError::NodeIdMismatch {
                claimed: record.node_id,
                signer: verified_signer,
            });
        }
        // The validator checks issuer, signature, audience (= the network's
        // name) and expiry; the subject must be the node the record is about,
        // or a node could vouch for itself with another node's ticket.
        let claims = check
            .validator
            .validate(&record.ticket, Some(&record.node_id.to_string()), now_secs)
            .map_err(RecordError::Ticket)?;
        if check.revoked.as_ref().is_some_and(|r| r.covers(&claims)) {
            return Err(RecordError::Revoked {
                node: record.node_id,
            });
        }
        Ok(VerifiedRecord {
            record,
            signed: self.clone(),
            claims,
        })
    }

    /// Approximate encoded size, for message budgets.
    pub fn encoded_len(&self) -> usize {
        self.record_bytes.len() + self.spki.len() + self.signature.len() + 3 * 3
    }

    fn check_sizes(&self) -> Result<(), RecordError> {
        for (what, len, max) in [
            ("record", self.record_bytes.len(), MAX_RECORD_BYTES),
            ("public key", self.spki.len(), MAX_SPKI_LEN),
            ("signature", self.signature.len(), MAX_SIGNATURE_LEN),
        ] {
            if len > max {
                return Err(RecordError::Oversize { what, len, max });
            }
        }
        Ok(())
    }
}

impl VerifiedRecord {
    /// The verified record.
    pub fn record(&self) -> &PeerRecord {
        &self.record
    }

    /// The envelope it came in (for relaying).
    pub fn signed(&self) -> &SignedRecord {
        &self.signed
    }

    /// The node it describes (and that signed it).
    pub fn node_id(&self) -> NodeId {
        self.record.node_id
    }

    /// When the owner's ticket expires (its `exp`, Unix seconds): the record
    /// vouches for nothing after that, whatever its age.
    pub fn ticket_expires(&self) -> u64 {
        self.claims.exp
    }

    /// The verified claims of the owner's ticket (its grants included).
    pub fn claims(&self) -> &TicketClaims {
        &self.claims
    }

    /// The record and its envelope (the ticket claims are dropped; they can be
    /// validated again from `record.ticket`).
    pub fn into_parts(self) -> (PeerRecord, SignedRecord) {
        (self.record, self.signed)
    }
}

/// serde helpers: ids travel as 32 raw bytes (the attestation crate's ids
/// serialize as hex strings, for humans).
pub(crate) mod wire_id {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use tessella_attestation::identity::{NetworkId, NodeId};

    /// Any named id: 32 raw bytes in binary formats (no length prefix, one
    /// canonical form), hex in human-readable ones (JSON for operators).
    pub(crate) mod fixed {
        use super::*;
        use crate::id::{hex32, RawId};

        pub(crate) fn serialize<T: RawId, S: Serializer>(id: &T, s: S) -> Result<S::Ok, S::Error> {
            if s.is_human_readable() {
                hex32::serialize(id, s)
            } else {
                id.to_raw().serialize(s)
            }
        }

        pub(crate) fn deserialize<'de, T: RawId, D: Deserializer<'de>>(
            d: D,
        ) -> Result<T, D::Error> {
            if d.is_human_readable() {
                hex32::deserialize(d)
            } else {
                <[u8; 32]>::deserialize(d).map(T::from_raw)
            }
        }
    }

    pub(crate) mod node {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(id: &NodeId, s: S) -> Result<S::Ok, S::Error> {
            id.0.serialize(s)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
            <[u8; 32]>::deserialize(d).map(NodeId)
        }
    }

    pub(crate) mod network {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(id: &NetworkId, s: S) -> Result<S::Ok, S::Error> {
            id.0.serialize(s)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NetworkId, D::Error> {
            <[u8; 32]>::deserialize(d).map(NetworkId)
        }
    }

    pub(crate) mod nodes {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(ids: &[NodeId], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(ids.iter().map(|id| id.0))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<NodeId>, D::Error> {
            Vec::<[u8; 32]>::deserialize(d).map(|v| v.into_iter().map(NodeId).collect())
        }
    }

    pub(crate) mod versions {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            entries: &[(NodeId, u64)],
            s: S,
        ) -> Result<S::Ok, S::Error> {
            s.collect_seq(entries.iter().map(|(id, v)| (id.0, *v)))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<(NodeId, u64)>, D::Error> {
            Vec::<([u8; 32], u64)>::deserialize(d)
                .map(|v| v.into_iter().map(|(id, v)| (NodeId(id), v)).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::service::{CollectionRole, FunctionRole, GroupRole, Service, StreamRole};
    use crate::discovery::testkit::{
        claims_for, identities, issuer, network, record_check, record_for, ticket_for, NOW,
        TICKET_EXP,
    };
    use crate::id::{FunctionId, GroupId, StoreId, StreamId};
    use tessella_attestation::TicketIssuer;

    fn signed(n: usize) -> (RatlsIdentity, PeerRecord, SignedRecord) {
        let id = identities(n + 1).pop().expect("identity");
        let rec = record_for(&id, 1_000, NOW);
        let s = SignedRecord::sign(&rec, &id).expect("signs");
        (id, rec, s)
    }

    /// `id`'s record carrying `ticket`, honestly signed by `id`.
    fn with_ticket(id: &RatlsIdentity, ticket: String) -> SignedRecord {
        let rec = PeerRecord {
            ticket,
            ..record_for(id, 1, NOW)
        };
        SignedRecord::sign(&rec, id).expect("signs")
    }

    /// A record at every bound: most addresses (IPv6, largest varints), tags,
    /// services, longest ticket and software, largest version.
    fn maximal(id: &RatlsIdentity) -> PeerRecord {
        let addr = SocketAddr::from(([0xffff_u16; 8], u16::MAX));
        let service = Service::Stream {
            id: StreamId([0xff; 32]),
            role: StreamRole::Consumer,
        };
        PeerRecord {
            addrs: vec![addr; MAX_ADDRS],
            tags: vec![[0xff; 32]; MAX_TAGS],
            services: vec![service; MAX_SERVICES],
            ticket: "x".repeat(MAX_RECORD_TICKET_LEN),
            version: u64::MAX,
            issued_at: u64::MAX,
            software: "x".repeat(MAX_SOFTWARE_LEN),
            ..record_for(id, 1, NOW)
        }
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let (id, rec, s) = signed(0);
        let v = s.verify(&record_check(), NOW).expect("verifies");
        assert_eq!(v.record(), &rec);
        assert_eq!(v.node_id(), id.node_id());
        assert_eq!(v.signed(), &s);
        // And through the wire.
        let bytes = postcard::to_allocvec(&s).expect("encodes");
        let back: SignedRecord = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(
            back.verify(&record_check(), NOW)
                .expect("verifies")
                .record(),
            &rec
        );
    }

    #[test]
    fn a_valid_ticket_verifies_and_exposes_its_claims() {
        let (id, _, s) = signed(0);
        let v = s.verify(&record_check(), NOW).expect("verifies");
        assert_eq!(v.ticket_expires(), TICKET_EXP);
        assert_eq!(v.claims().sub, id.node_id().to_string());
        assert_eq!(v.claims().aud, "discovery-test");
        assert_eq!(v.claims().iss, issuer().name());
        // A ticket with grants: they come through.
        let granted = claims_for(&id, NOW + 100).grant(
            tessella_attestation::ResourceKind::Stream,
            "orders",
            tessella_attestation::Permission::Produce,
        );
        let s = with_ticket(&id, issuer().issue(&granted).expect("issues"));
        let v = s.verify(&record_check(), NOW).expect("verifies");
        assert_eq!(v.ticket_expires(), NOW + 100);
        assert_eq!(v.claims(), &granted);
    }

    #[test]
    fn another_nodes_ticket_is_refused() {
        let ids = identities(2);
        // a's record, honestly signed by a, carrying b's valid ticket.
        let s = with_ticket(&ids[0], ticket_for(&ids[1], TICKET_EXP));
        let err = s.verify(&record_check(), NOW).expect_err("refused");
        assert_eq!(err.code(), "ticket_wrong_subject", "{err}");
        assert!(matches!(
            err,
            RecordError::Ticket(TicketError::WrongSubject { .. })
        ));
    }

    #[test]
    fn a_ticket_for_another_network_is_refused() {
        let id = identities(1).pop().expect("identity");
        let claims = TicketClaims {
            aud: "elsewhere".into(),
            ..claims_for(&id, TICKET_EXP)
        };
        let s = with_ticket(&id, issuer().issue(&claims).expect("issues"));
        let err = s.verify(&record_check(), NOW).expect_err("refused");
        assert_eq!(err.code(), "ticket_wrong_audience", "{err}");
    }

    #[test]
    fn an_expired_ticket_is_refused() {
        let id = identities(1).pop().expect("identity");
        let leeway = record_check().validator.leeway();
        let s = with_ticket(&id, ticket_for(&id, NOW - leeway - 1));
        let err = s.verify(&record_check(), NOW).expect_err("refused");
        assert_eq!(err.code(), "ticket_expired", "{err}");
        // A record that verified once stops verifying (e.g. when relayed)
        // once its ticket expires, leeway included.
        let s = with_ticket(&id, ticket_for(&id, NOW + 100));
        assert!(s.verify(&record_check(), NOW + 99 + leeway).is_ok());
        let err = s
            .verify(&record_check(), NOW + 100 + leeway)
            .expect_err("refused");
        assert_eq!(err.code(), "ticket_expired", "{err}");
    }

    #[test]
    fn a_ticket_from_an_untrusted_issuer_is_refused() {
        let id = identities(1).pop().expect("identity");
        // Same name as the trusted issuer, different key.
        let stranger = TicketIssuer::generate_es256(issuer().name()).expect("issuer");
        let s = with_ticket(
            &id,
            stranger
                .issue(&claims_for(&id, TICKET_EXP))
                .expect("issues"),
        );
        let err = s.verify(&record_check(), NOW).expect_err("refused");
        assert_eq!(err.code(), "ticket_unknown_issuer", "{err}");
        // No ticket at all (a node that has none installed yet).
        let err = with_ticket(&id, String::new())
            .verify(&record_check(), NOW)
            .expect_err("refused");
        assert_eq!(err.code(), "ticket_malformed", "{err}");
    }

    #[test]
    fn a_revoked_node_or_ticket_is_refused() {
        let ids = identities(2);
        let (_, _, s) = signed(0);
        let mut revocations = crate::admission::Revocations::default();
        assert!(revocations.revoke(&ids[1].node_id().to_string()));
        let check = record_check().with_revocations(revocations.into());
        // Another node's revocation does not touch this record.
        assert!(s.verify(&check, NOW).is_ok());
        let err = with_ticket(&ids[1], ticket_for(&ids[1], TICKET_EXP))
            .verify(&check, NOW)
            .expect_err("refused");
        assert_eq!(
            err,
            RecordError::Revoked {
                node: ids[1].node_id()
            }
        );
        assert_eq!(err.code(), "revoked");
        // By ticket id, and live: revoking after the check was built counts.
        let view = crate::admission::RevocationView::default();
        let check = record_check().with_revocations(view.clone());
        let claims = claims_for(&ids[0], TICKET_EXP).with_jti("t-1");
        let s = with_ticket(&ids[0], issuer().issue(&claims).expect("issues"));
        assert!(s.verify(&check, NOW).is_ok());
        assert!(view.lock().revoke("t-1"));
        assert_eq!(s.verify(&check, NOW).map_err(|e| e.code()), Err("revoked"));
    }

    #[test]
    fn cheap_checks_come_before_the_ticket() {
        let id = identities(1).pop().expect("identity");
        let rec = PeerRecord {
            ticket: "not a ticket".into(),
            ..record_for(&id, 1, NOW)
        };
        let s = SignedRecord::sign(&rec, &id).expect("signs");
        let other = RecordCheck {
            network: NetworkId::from_name("other"),
            ..record_check()
        };
        assert_eq!(
            s.verify(&other, NOW).map_err(|e| e.code()),
            Err("wrong_network")
        );
        assert_eq!(
            s.verify(&record_check(), NOW - 31).map_err(|e| e.code()),
            Err("from_the_future")
        );
        let mut forged = s.clone();
        let mut sig = forged.signature.to_vec();
        let last = sig.len() - 1;
        sig[last] ^= 1;
        forged.signature = sig.into();
        assert_eq!(
            forged.verify(&record_check(), NOW),
            Err(RecordError::BadSignature)
        );
        assert_eq!(
            s.verify(&record_check(), NOW).map_err(|e| e.code()),
            Err("ticket_malformed")
        );
    }

    #[test]
    fn services_round_trip_in_order() {
        let id = identities(1).pop().expect("identity");
        let services = vec![
            Service::Function {
                id: FunctionId::from_name("price"),
                role: FunctionRole::Server,
            },
            Service::Stream {
                id: StreamId::from_name("orders"),
                role: StreamRole::Consumer,
            },
            Service::Collection {
                id: StoreId::from_name("accounts"),
                role: CollectionRole::Reader,
            },
            Service::Group {
                id: GroupId::from_name("ledger"),
                role: GroupRole::Voter,
            },
            Service::Stream {
                id: StreamId::from_name("orders"),
                role: StreamRole::Producer,
            },
        ];
        let rec = PeerRecord {
            services: services.clone(),
            ..record_for(&id, 1, NOW)
        };
        let bytes = postcard::to_allocvec(&rec).expect("encodes");
        let back: PeerRecord = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(back.services, services);
        let v = SignedRecord::sign(&rec, &id)
            .expect("signs")
            .verify(&record_check(), NOW)
            .expect("verifies");
        assert_eq!(v.record().services, services);
        // Ids travel as raw bytes: 34 bytes a service, no hex.
        let one = PeerRecord {
            services: vec![services[0]],
            ..rec.clone()
        };
        let none = PeerRecord {
            services: vec![],
            ..rec
        };
        let len = |r: &PeerRecord| postcard::to_allocvec(r).expect("encodes").len();
        assert_eq!(len(&one) - len(&none), 34);
    }

    #[test]
    fn shared_bytes_travel_exactly_as_byte_vectors() {
        #[derive(Serialize, Deserialize)]
        struct Plain {
            record_bytes: Vec<u8>,
            spki: Vec<u8>,
            signature: Vec<u8>,
        }
        let (_, _, s) = signed(0);
        let plain = Plain {
            record_bytes: s.record_bytes.to_vec(),
            spki: s.spki.to_vec(),
            signature: s.signature.to_vec(),
        };
        let bytes = postcard::to_allocvec(&s).expect("encodes");
        assert_eq!(bytes, postcard::to_allocvec(&plain).expect("encodes"));
        let back: SignedRecord = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(back, s);
    }

    #[test]
    fn a_record_at_every_bound_fits() {
        let id = identities(1).pop().expect("identity");
        let rec = maximal(&id);
        let s = SignedRecord::sign(&rec, &id).expect("signs at every bound");
        assert!(s.record_bytes.len() <= MAX_RECORD_BYTES);
        // Gossip budgets assume a maximal envelope well under 16 KiB.
        let envelope = postcard::to_allocvec(&s).expect("encodes").len();
        assert!(
            envelope < crate::discovery::gossip::MIN_MESSAGE_BYTES,
            "{envelope}"
        );
        assert!(
            s.encoded_len() >= envelope,
            "{} < {envelope}",
            s.encoded_len()
        );
    }

    #[test]
    fn tampered_bytes_are_refused() {
        let (_, mut rec, s) = signed(0);
        rec.addrs[0].set_port(6666);
        let forged = SignedRecord {
            record_bytes: postcard::to_allocvec(&rec).expect("encodes").into(),
            ..s.clone()
        };
        assert_eq!(
            forged.verify(&record_check(), NOW),
            Err(RecordError::BadSignature)
        );
        let mut sig = s.clone();
        let mut bytes = sig.signature.to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        sig.signature = bytes.into();
        assert_eq!(
            sig.verify(&record_check(), NOW),
            Err(RecordError::BadSignature)
        );
    }

    #[test]
    fn a_node_cannot_sign_for_another() {
        let ids = identities(2);
        let (a, b) = (&ids[0], &ids[1]);
        let rec = record_for(b, 1, NOW);
        assert!(matches!(
            SignedRecord::sign(&rec, a),
            Err(RecordError::NodeIdMismatch { .. })
        ));
        // Hand-made: b's record, a's key and valid signature.
        let record_bytes = postcard::to_allocvec(&rec).expect("encodes");
        let forged = SignedRecord {
            signature: a
                .sign(&signing_message(&record_bytes))
                .expect("signs")
                .into(),
            spki: a.spki_der().expect("spki").into(),
            record_bytes: record_bytes.into(),
        };
        assert_eq!(
            forged.verify(&record_check(), NOW),
            Err(RecordError::NodeIdMismatch {
                claimed: b.node_id(),
                signer: a.node_id()
            })
        );
        // b's record and signature presented with a's key.
        let honest = SignedRecord::sign(&rec, b).expect("signs");
        let swapped = SignedRecord {
            spki: a.spki_der().expect("spki").into(),
            ..honest
        };
        assert!(matches!(
            swapped.verify(&record_check(), NOW),
            Err(RecordError::NodeIdMismatch { .. })
        ));
    }

    #[test]
    fn signature_is_domain_separated() {
        let (id, rec, _) = signed(0);
        let record_bytes = postcard::to_allocvec(&rec).expect("encodes");
        for message in [
            record_bytes.clone(),
            // The previous record version's domain.
            [b"tessella-discovery-record-v1".as_slice(), &record_bytes].concat(),
        ] {
            let raw = SignedRecord {
                signature: id.sign(&message).expect("signs").into(),
                spki: id.spki_der().expect("spki").into(),
                record_bytes: record_bytes.clone().into(),
            };
            assert_eq!(
                raw.verify(&record_check(), NOW),
                Err(RecordError::BadSignature)
            );
        }
    }

    #[test]
    fn wrong_network_and_future_are_refused() {
        let (_, _, s) = signed(0);
        let other = RecordCheck {
            network: NetworkId::from_name("other"),
            ..record_check()
        };
        assert!(matches!(
            s.verify(&other, NOW),
            Err(RecordError::WrongNetwork { .. })
        ));
        assert_eq!(
            s.verify(&record_check(), NOW - 31),
            Err(RecordError::FromTheFuture {
                issued_at: NOW,
                now: NOW - 31,
                max_skew: 30
            })
        );
        assert!(s.verify(&record_check(), NOW - 30).is_ok());
        // The check's network follows the validator's audience.
        assert_eq!(record_check().network, network());
    }

    #[test]
    fn bounds_are_enforced_on_sign_and_verify() {
        let id = identities(1).pop().expect("identity");
        let base = record_for(&id, 1, NOW);
        let cases: Vec<(PeerRecord, &str)> = vec![
            (
                PeerRecord {
                    addrs: vec![base.addrs[0]; MAX_ADDRS + 1],
                    ..base.clone()
                },
                "too_many",
            ),
            (
                PeerRecord {
                    tags: vec![[1; 32]; MAX_TAGS + 1],
                    ..base.clone()
                },
                "too_many",
            ),
            (
                PeerRecord {
                    services: vec![base.services[0]; MAX_SERVICES + 1],
                    ..base.clone()
                },
                "too_many",
            ),
            (
                PeerRecord {
                    ticket: "x".repeat(MAX_RECORD_TICKET_LEN + 1),
                    ..base.clone()
                },
                "too_long",
            ),
            (
                PeerRecord {
                    software: "x".repeat(MAX_SOFTWARE_LEN + 1),
                    ..base.clone()
                },
                "too_long",
            ),
            (
                PeerRecord {
                    departing: true,
                    ..base.clone()
                },
                "malformed",
            ),
        ];
        for (rec, code) in cases {
            let err = SignedRecord::sign(&rec, &id).expect_err("refused");
            assert_eq!(err.code(), code, "{err}");
            // A hand-signed envelope with the same content is refused too.
            let record_bytes = postcard::to_allocvec(&rec).expect("encodes");
            let forged = SignedRecord {
                signature: id
                    .sign(&signing_message(&record_bytes))
                    .expect("signs")
                    .into(),
                spki: id.spki_der().expect("spki").into(),
                record_bytes: record_bytes.into(),
            };
            let err = forged.verify(&record_check(), NOW).expect_err("refused");
            assert_eq!(err.code(), code, "{err}");
        }
        // The oversize ticket is named.
        let long = PeerRecord {
            ticket: "x".repeat(MAX_RECORD_TICKET_LEN + 1),
            ..base
        };
        assert_eq!(
            long.check_limits(),
            Err(RecordError::TooLong {
                field: "ticket",
                len: MAX_RECORD_TICKET_LEN + 1,
                max: MAX_RECORD_TICKET_LEN
            })
        );
    }

    #[test]
    fn malformed_envelopes_are_refused_without_panicking() {
        let (_, _, s) = signed(0);
        let mut trailing = s.clone();
        trailing.record_bytes = [&s.record_bytes[..], &[0]].concat().into();
        assert_eq!(
            trailing.verify(&record_check(), NOW).map_err(|e| e.code()),
            Err("malformed")
        );
        let garbage = SignedRecord {
            record_bytes: vec![0xff; 40].into(),
            ..s.clone()
        };
        assert_eq!(
            garbage.verify(&record_check(), NOW).map_err(|e| e.code()),
            Err("malformed")
        );
        for (what, env) in [
            (
                "public key",
                SignedRecord {
                    spki: vec![0; MAX_SPKI_LEN + 1].into(),
                    ..s.clone()
                },
            ),
            (
                "signature",
                SignedRecord {
                    signature: vec![0; MAX_SIGNATURE_LEN + 1].into(),
                    ..s.clone()
                },
            ),
            (
                "record",
                SignedRecord {
                    record_bytes: vec![0; MAX_RECORD_BYTES + 1].into(),
                    ..s.clone()
                },
            ),
        ] {
            assert!(
                matches!(env.verify(&record_check(), NOW), Err(RecordError::Oversize { what: w, .. }) if w == what),
                "{what}"
            );
        }
        let bad_key = SignedRecord {
            spki: vec![1, 2, 3].into(),
            ..s
        };
        assert!(bad_key.verify(&record_check(), NOW).is_err());
    }

    #[test]
    fn every_truncation_is_refused_without_panicking() {
        let (_, _, s) = signed(0);
        let check = record_check();
        // Cut the record inside a valid envelope: never decodes as the record
        // (postcard has no optional tail), so never reaches the signature.
        for cut in 0..s.record_bytes.len() {
            let cut_rec = SignedRecord {
                record_bytes: s.record_bytes[..cut].into(),
                ..s.clone()
            };
            assert!(cut_rec.peek_unverified().is_err(), "cut at {cut}");
            assert!(cut_rec.verify(&check, NOW).is_err(), "cut at {cut}");
        }
        // Cut the envelope on the wire.
        let wire = postcard::to_allocvec(&s).expect("encodes");
        for cut in 0..wire.len() {
            if let Ok(env) = postcard::from_bytes::<SignedRecord>(&wire[..cut]) {
                assert!(env.verify(&check, NOW).is_err(), "cut at {cut}");
            }
        }
    }
}
