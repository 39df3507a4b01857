//! Signed peer records: what a node says about itself, signed with the key of
//! its RA-TLS certificate, so anyone can check who wrote it and no node can
//! speak for another.
//!
//! ```text
//! PeerRecord (postcard; "varint" = LEB128; at most MAX_RECORD_BYTES = 8 KiB)
//!   node_id     32 B              blake3 of the signer's SPKI (must match `spki`)
//!   network     32 B              NetworkId the record is valid in
//!   addrs       varint n ≤ 16,    n × SocketAddr:
//!                                   varint 0 (V4) | 4 B ip  | varint port
//!                                   varint 1 (V6) | 16 B ip | varint port
//!   tags        varint n ≤ 32,    n × 32 B
//!   services    varint n ≤ 64,    n × (varint len ≤ 128, UTF-8)
//!   version     varint u64        strictly increasing per node (issue time, ms)
//!   issued_at   varint u64        Unix seconds
//!   software    varint len ≤ 64,  UTF-8
//!   departing   1 B (0 | 1)       1 = graceful departure (then addrs is empty)
//!
//! SignedRecord (postcard)
//!   record_bytes  varint len ≤ 8192, the PeerRecord bytes above, verbatim
//!   spki          varint len ≤ 256,  signer's SubjectPublicKeyInfo, DER
//!   signature     varint len ≤ 128,  ECDSA P-256 / SHA-256, ASN.1 DER, over
//!                                    "tessella-discovery-record-v1" ‖ record_bytes
//! ```
//!
//! The signature covers the exact bytes that travel, so verification never
//! re-encodes; trailing bytes after the record are refused.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tessella_attestation::identity::{NetworkId, NodeId};
use tessella_attestation::ratls::{verify_node_signature, RatlsError, RatlsIdentity};

/// Domain separation prefix of record signatures: a signature made for a
/// discovery record is never valid for anything else signed with the node key.
pub const RECORD_SIGNING_DOMAIN: &[u8] = b"tessella-discovery-record-v1";
/// Largest encoded [`PeerRecord`].
pub const MAX_RECORD_BYTES: usize = 8 * 1024;
/// Most addresses in a record.
pub const MAX_ADDRS: usize = 16;
/// Most tags in a record.
pub const MAX_TAGS: usize = 32;
/// Most services in a record.
pub const MAX_SERVICES: usize = 64;
/// Longest service name, bytes.
pub const MAX_SERVICE_LEN: usize = 128;
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
    /// Offered streams and groups, free-form names for now.
    pub services: Vec<String>,
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
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedRecord {
    /// postcard encoding of the [`PeerRecord`].
    pub record_bytes: Vec<u8>,
    /// The signer's SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
    /// Signature over [`RECORD_SIGNING_DOMAIN`] ‖ `record_bytes`.
    pub signature: Vec<u8>,
}

/// A record whose signature, signer, network, time and bounds were checked.
/// Only [`SignedRecord::verify`] makes one, so holding one is proof that
/// verification ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRecord {
    record: PeerRecord,
    signed: SignedRecord,
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
            RecordError::Sign(_) => "sign",
        }
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
        if let Some(s) = self.services.iter().find(|s| s.len() > MAX_SERVICE_LEN) {
            return Err(RecordError::TooLong {
                field: "service",
                len: s.len(),
                max: MAX_SERVICE_LEN,
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
            record_bytes,
            spki,
            signature,
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

    /// Verify the record for a node of `expected_network` at `now` (Unix
    /// seconds), tolerating `max_skew` seconds of clock difference: sizes,
    /// encoding, bounds, network, issue time, signer (the record's node id is
    /// the id of the signing key) and signature.
    pub fn verify(
        &self,
        expected_network: &NetworkId,
        now: u64,
        max_skew: u64,
    ) -> Result<VerifiedRecord, RecordError> {
        let record = self.peek_unverified()?;
        record.check_limits()?;
        if record.network != *expected_network {
            return Err(RecordError::WrongNetwork {
                expected: *expected_network,
                found: record.network,
            });
        }
        if record.issued_at > now.saturating_add(max_skew) {
            return Err(RecordError::FromTheFuture {
                issued_at: record.issued_at,
                now,
                max_skew,
            });
        }
        let signer = NodeId::from_spki(&self.spki);
        if signer != record.node_id {
            return Err(RecordError::NodeIdMismatch {
                claimed: record.node_id,
                signer,
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
        Ok(VerifiedRecord {
            record,
            signed: self.clone(),
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

    /// Both parts.
    pub fn into_parts(self) -> (PeerRecord, SignedRecord) {
        (self.record, self.signed)
    }
}

/// serde helpers: ids travel as 32 raw bytes (the attestation crate's ids
/// serialize as hex strings, for humans).
pub(crate) mod wire_id {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use tessella_attestation::identity::{NetworkId, NodeId};

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
    use crate::discovery::testkit::{identities, network, record_for, NOW};

    fn signed(n: usize) -> (RatlsIdentity, PeerRecord, SignedRecord) {
        let id = identities(n + 1).pop().expect("identity");
        let rec = record_for(&id, 1_000, NOW);
        let s = SignedRecord::sign(&rec, &id).expect("signs");
        (id, rec, s)
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let (id, rec, s) = signed(0);
        let v = s.verify(&network(), NOW, 30).expect("verifies");
        assert_eq!(v.record(), &rec);
        assert_eq!(v.node_id(), id.node_id());
        assert_eq!(v.signed(), &s);
        // And through the wire.
        let bytes = postcard::to_allocvec(&s).expect("encodes");
        let back: SignedRecord = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(
            back.verify(&network(), NOW, 30).expect("verifies").record(),
            &rec
        );
    }

    #[test]
    fn tampered_bytes_are_refused() {
        let (_, mut rec, s) = signed(0);
        rec.addrs[0].set_port(6666);
        let forged = SignedRecord {
            record_bytes: postcard::to_allocvec(&rec).expect("encodes"),
            ..s.clone()
        };
        assert_eq!(
            forged.verify(&network(), NOW, 30),
            Err(RecordError::BadSignature)
        );
        let mut sig = s.clone();
        let last = sig.signature.len() - 1;
        sig.signature[last] ^= 1;
        assert_eq!(
            sig.verify(&network(), NOW, 30),
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
            signature: a.sign(&signing_message(&record_bytes)).expect("signs"),
            spki: a.spki_der().expect("spki"),
            record_bytes,
        };
        assert_eq!(
            forged.verify(&network(), NOW, 30),
            Err(RecordError::NodeIdMismatch {
                claimed: b.node_id(),
                signer: a.node_id()
            })
        );
        // b's record and signature presented with a's key.
        let honest = SignedRecord::sign(&rec, b).expect("signs");
        let swapped = SignedRecord {
            spki: a.spki_der().expect("spki"),
            ..honest
        };
        assert!(matches!(
            swapped.verify(&network(), NOW, 30),
            Err(RecordError::NodeIdMismatch { .. })
        ));
    }

    #[test]
    fn signature_is_domain_separated() {
        let (id, rec, _) = signed(0);
        let record_bytes = postcard::to_allocvec(&rec).expect("encodes");
        let raw = SignedRecord {
            signature: id.sign(&record_bytes).expect("signs"),
            spki: id.spki_der().expect("spki"),
            record_bytes,
        };
        assert_eq!(
            raw.verify(&network(), NOW, 30),
            Err(RecordError::BadSignature)
        );
    }

    #[test]
    fn wrong_network_and_future_are_refused() {
        let (_, _, s) = signed(0);
        let other = NetworkId::from_name("other");
        assert!(matches!(
            s.verify(&other, NOW, 30),
            Err(RecordError::WrongNetwork { .. })
        ));
        assert_eq!(
            s.verify(&network(), NOW - 31, 30),
            Err(RecordError::FromTheFuture {
                issued_at: NOW,
                now: NOW - 31,
                max_skew: 30
            })
        );
        assert!(s.verify(&network(), NOW - 30, 30).is_ok());
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
                    services: vec!["s".into(); MAX_SERVICES + 1],
                    ..base.clone()
                },
                "too_many",
            ),
            (
                PeerRecord {
                    services: vec!["x".repeat(MAX_SERVICE_LEN + 1)],
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
            (
                PeerRecord {
                    services: vec!["x".repeat(MAX_SERVICE_LEN); MAX_SERVICES],
                    ..base.clone()
                },
                "oversize",
            ),
        ];
        for (rec, code) in cases {
            let err = SignedRecord::sign(&rec, &id).expect_err("refused");
            assert_eq!(err.code(), code, "{err}");
            // A hand-signed envelope with the same content is refused too.
            let record_bytes = postcard::to_allocvec(&rec).expect("encodes");
            let forged = SignedRecord {
                signature: id.sign(&signing_message(&record_bytes)).expect("signs"),
                spki: id.spki_der().expect("spki"),
                record_bytes,
            };
            let err = forged.verify(&network(), NOW, 30).expect_err("refused");
            assert_eq!(err.code(), code, "{err}");
        }
    }

    #[test]
    fn malformed_envelopes_are_refused_without_panicking() {
        let (_, _, s) = signed(0);
        let mut trailing = s.clone();
        trailing.record_bytes.push(0);
        assert_eq!(
            trailing.verify(&network(), NOW, 30).map_err(|e| e.code()),
            Err("malformed")
        );
        let garbage = SignedRecord {
            record_bytes: vec![0xff; 40],
            ..s.clone()
        };
        assert_eq!(
            garbage.verify(&network(), NOW, 30).map_err(|e| e.code()),
            Err("malformed")
        );
        for (what, env) in [
            (
                "public key",
                SignedRecord {
                    spki: vec![0; MAX_SPKI_LEN + 1],
                    ..s.clone()
                },
            ),
            (
                "signature",
                SignedRecord {
                    signature: vec![0; MAX_SIGNATURE_LEN + 1],
                    ..s.clone()
                },
            ),
            (
                "record",
                SignedRecord {
                    record_bytes: vec![0; MAX_RECORD_BYTES + 1],
                    ..s.clone()
                },
            ),
        ] {
            assert!(
                matches!(env.verify(&network(), NOW, 30), Err(RecordError::Oversize { what: w, .. }) if w == what),
                "{what}"
            );
        }
        let bad_key = SignedRecord {
            spki: vec![1, 2, 3],
            ..s
        };
        assert!(bad_key.verify(&network(), NOW, 30).is_err());
    }
}
