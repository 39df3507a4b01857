//! Push-pull gossip of signed peer records, as a state machine without I/O.
//!
//! [`Gossip`] is fed `(now, input)` by the transport and answers with
//! [`Out`]puts: messages to send, catalog events, peers to dial. It never
//! touches a socket or a clock.
//!
//! ```text
//! DiscoveryMsg (postcard, one per frame, on a Discovery/1 stream)
//!   varint 0 = V1, then DiscoveryV1:
//!     varint 0  Digest   entries:  varint n ≤ 1536, n × (node id 32 B, version varint u64)
//!     varint 1  Records  records:  varint n ≤ 64,   n × SignedRecord (see record.rs)
//!     varint 2  Want     node_ids: varint n ≤ 256,  n × node id 32 B
//!     varint 3  Depart   record:   SignedRecord of a departing PeerRecord
//!
//! one exchange (A picked B this round, or A < B just connected)
//!   A ── Digest{everything A holds, A itself included} ──▶ B
//!   A ◀── Records{what A lacks or holds older} ───────────  B
//!   A ◀── Want{ids B lacks or holds older} ────────────────  B   (if any)
//!   A ── Records{those} ──────────────────────────────────▶ B
//! ```
//!
//! At the default bounds a Digest is at most 1536 × 42 B ≈ 63 KiB and a
//! Records message is cut to `max_message_bytes`, so every message fits the
//! default 64 KiB frame.
//!
//! # Trust
//!
//! Admission (RA-TLS verdict and JWT ticket) happens in the transport before a
//! peer is ever passed to [`Gossip::on_connected`], so only admitted peers'
//! messages reach [`Gossip::on_message`]. Records those peers relay about
//! third parties are stored only after their signature verifies under the
//! third party's own key ([`SignedRecord::verify`]); records that fail are
//! dropped and counted, never stored and so never relayed. A third party
//! learned this way is only *connected* after the transport admits it in its
//! own handshake ([`Out::Connect`] is a request, not trust). A departure is a
//! signed record of the departing node, so it cannot be forged either.
//!
//! # Liveness
//!
//! Each node re-signs its record every `refresh_interval` (a higher version);
//! a peer is forgotten ([`DepartReason::Expired`](super::DepartReason)) when
//! neither a connection to it nor a record it issued within
//! `peer_ttl + max_skew` vouches for it. Records older than that are dropped
//! on arrival, so a dead node cannot be kept alive by gossip.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tessella_attestation::identity::NodeId;
use tessella_attestation::ratls::RatlsIdentity;

use super::catalog::{Catalog, CatalogEvent};
use super::record::{wire_id, PeerRecord, RecordCheck, RecordError, SignedRecord};
use super::service::Service;

/// Most entries in a [`DiscoveryV1::Digest`].
pub const MAX_DIGEST_ENTRIES: usize = 1536;
/// Most records in a [`DiscoveryV1::Records`].
pub const MAX_RECORDS_PER_MSG: usize = 64;
/// Most ids in a [`DiscoveryV1::Want`].
pub const MAX_WANT: usize = 256;
/// Largest catalog a [`Gossip`] keeps, so that its digest (live peers,
/// tombstones up to half as many, itself) stays within [`MAX_DIGEST_ENTRIES`].
pub const MAX_CATALOG_ENTRIES: usize = 1022;
/// Smallest message budget (a maximal signed record is about 11.8 KiB).
pub const MIN_MESSAGE_BYTES: usize = 16 * 1024;

/// A discovery message. Versioned: a later protocol adds `V2`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiscoveryMsg {
    /// Protocol version 1.
    V1(DiscoveryV1),
}

/// Version 1 of the discovery protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiscoveryV1 {
    /// "What I hold": the sender's node id and version for every node it
    /// knows (departed ones included), itself included. The receiver answers
    /// with the records the sender lacks and asks for those it lacks.
    Digest {
        /// `(node id, version)` pairs.
        #[serde(with = "wire_id::versions")]
        entries: Vec<(NodeId, u64)>,
    },
    /// Signed records, pushed or in answer to a digest or a want.
    Records {
        /// The records, each verified by the receiver on its own.
        records: Vec<SignedRecord>,
    },
    /// "Send me these": the records of nodes the receiver's digest listed
    /// newer than the sender holds.
    Want {
        /// The wanted nodes.
        #[serde(with = "wire_id::nodes")]
        node_ids: Vec<NodeId>,
    },
    /// A node's graceful departure: its own signed record with `departing`
    /// set and a higher version than any it issued before. Relayed once by
    /// every node it is news to.
    Depart {
        /// The departure.
        record: SignedRecord,
    },
}

/// Why a discovery message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MsgError {
    /// Not a discovery message (bad encoding, unknown version or variant,
    /// trailing bytes).
    #[error("malformed discovery message: {0}")]
    Malformed(String),
    /// A list exceeds its bound.
    #[error("discovery message has {len} {what}, more than the maximum {max}")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
}

impl DiscoveryMsg {
    /// Encode with postcard.
    pub fn encode(&self) -> Result<Vec<u8>, MsgError> {
        postcard::to_allocvec(self).map_err(|e| MsgError::Malformed(e.to_string()))
    }

    /// Decode exactly one message from `bytes` and check its bounds. Never
    /// panics; allocation is bounded by `bytes.len()`.
    pub fn decode(bytes: &[u8]) -> Result<DiscoveryMsg, MsgError> {
        let (msg, rest) = postcard::take_from_bytes::<DiscoveryMsg>(bytes)
            .map_err(|e| MsgError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(MsgError::Malformed(format!(
                "{} trailing bytes after the message",
                rest.len()
            )));
        }
        msg.check_bounds()?;
        Ok(msg)
    }

    /// Check list bounds.
    pub fn check_bounds(&self) -> Result<(), MsgError> {
        let (what, len, max) = match self {
            DiscoveryMsg::V1(DiscoveryV1::Digest { entries }) => {
                ("digest entries", entries.len(), MAX_DIGEST_ENTRIES)
            }
            DiscoveryMsg::V1(DiscoveryV1::Records { records }) => {
                ("records", records.len(), MAX_RECORDS_PER_MSG)
            }
            DiscoveryMsg::V1(DiscoveryV1::Want { node_ids }) => {
                ("wanted ids", node_ids.len(), MAX_WANT)
            }
            DiscoveryMsg::V1(DiscoveryV1::Depart { .. }) => return Ok(()),
        };
        if len > max {
            return Err(MsgError::TooMany { what, len, max });
        }
        Ok(())
    }
}

/// What [`Gossip`] asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Send `msg` to the connected peer `to`.
    Send {
        /// An admitted, connected peer.
        to: NodeId,
        /// The message.
        msg: DiscoveryMsg,
    },
    /// Tell subscribers the catalog changed.
    Event(CatalogEvent),
    /// Dial this peer if not connected or dialing already. The connection
    /// must pass admission like any other, and the transport must check that
    /// the admitted peer's node id is `node_id`.
    Connect {
        /// The peer to dial.
        node_id: NodeId,
        /// Its published addresses.
        addrs: Vec<SocketAddr>,
    },
}

/// What this node publishes about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalInfo {
    /// Addresses peers can dial.
    pub addrs: Vec<SocketAddr>,
    /// Tags.
    pub tags: Vec<[u8; 32]>,
    /// Offered streams, groups, collections and functions.
    pub services: Vec<Service>,
    /// This node's ticket, as presented in its Hello.
    pub ticket: String,
    /// Software name and version.
    pub software: String,
}

/// Gossip tuning.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GossipConfig {
    /// What peers' records must satisfy (network, trusted ticket issuers);
    /// its `max_skew_secs` follows `max_skew` below.
    pub check: RecordCheck,
    /// Time between gossip rounds. Default 1 s.
    pub interval: Duration,
    /// Connected peers sent our digest each round. Default 3, at least 1.
    pub fanout: usize,
    /// A peer not refreshed for this long (plus `max_skew`) is forgotten.
    /// Default 30 s.
    pub peer_ttl: Duration,
    /// Our record is re-signed this often; at most `peer_ttl / 2`.
    /// Default 10 s.
    pub refresh_interval: Duration,
    /// Tolerated clock difference between nodes. Default 10 s.
    pub max_skew: Duration,
    /// Most live peers in the catalog; at most [`MAX_CATALOG_ENTRIES`].
    /// Default 512.
    pub max_entries: usize,
    /// Ask the transport to dial peers we learn about. Default true.
    pub auto_connect: bool,
    /// Stop asking for dials once connected plus dialing peers reach this.
    /// Default 64.
    pub max_connections: usize,
    /// Ask again for a dial that has not produced a connection after this
    /// long. Default 5 s.
    pub redial_after: Duration,
    /// Byte budget of one Records message; at least [`MIN_MESSAGE_BYTES`].
    /// Default 60 KiB (under the default 64 KiB frame).
    pub max_message_bytes: usize,
}

impl GossipConfig {
    /// Defaults for records checked by `check`.
    pub fn new(check: RecordCheck) -> GossipConfig {
        GossipConfig {
            check,
            interval: Duration::from_secs(1),
            fanout: 3,
            peer_ttl: Duration::from_secs(30),
            refresh_interval: Duration::from_secs(10),
            max_skew: Duration::from_secs(10),
            max_entries: 512,
            auto_connect: true,
            max_connections: 64,
            redial_after: Duration::from_secs(5),
            max_message_bytes: 60 * 1024,
        }
    }

    fn normalized(mut self) -> GossipConfig {
        if self.max_entries > MAX_CATALOG_ENTRIES {
            tracing::warn!(
                requested = self.max_entries,
                max = MAX_CATALOG_ENTRIES,
                "discovery: catalog capacity lowered so a digest fits one frame"
            );
        }
        if self.max_message_bytes < MIN_MESSAGE_BYTES {
            tracing::warn!(
                requested = self.max_message_bytes,
                min = MIN_MESSAGE_BYTES,
                "discovery: message budget raised to fit one maximal record; frames must allow it"
            );
        }
        // One knob for skew: the TTL slack and record verification agree.
        self.check.max_skew_secs = self.max_skew.as_secs();
        self.fanout = self.fanout.max(1);
        self.max_entries = self.max_entries.clamp(1, MAX_CATALOG_ENTRIES);
        self.refresh_interval = self.refresh_interval.min(self.peer_ttl / 2);
        self.max_message_bytes = self.max_message_bytes.max(MIN_MESSAGE_BYTES);
        self
    }
}

/// Counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GossipStats {
    /// Messages handled.
    pub messages_in: u64,
    /// Messages emitted.
    pub messages_out: u64,
    /// Records received.
    pub records_in: u64,
    /// Records sent.
    pub records_out: u64,
    /// Records that changed the catalog.
    pub records_applied: u64,
    /// Records already held at that version or newer (not verified again).
    pub records_duplicate: u64,
    /// Records that failed verification: dropped, never stored or relayed.
    pub records_invalid: u64,
    /// Valid records too old to vouch for a live node.
    pub records_stale: u64,
    /// List entries dropped from over-long messages.
    pub truncated: u64,
    /// Dials requested.
    pub connects_requested: u64,
}

/// The discovery protocol state of one node. See the module docs for the
/// protocol and [`crate::discovery`] for how a transport drives it.
#[derive(Debug)]
pub struct Gossip {
    config: GossipConfig,
    identity: RatlsIdentity,
    local: LocalInfo,
    own: PeerRecord,
    own_signed: SignedRecord,
    own_issued_ms: u64,
    catalog: Catalog,
    connected: BTreeSet<NodeId>,
    dialing: BTreeMap<NodeId, u64>,
    rng: u64,
    next_round_ms: u64,
    departed: bool,
    stats: GossipStats,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Gossip {
    /// A node publishing `local`, signing with `identity` (the RA-TLS key;
    /// renewing the certificate keeps the key, so this stays valid), at
    /// `now_ms` (Unix milliseconds, like every `now_ms` below).
    pub fn new(
        identity: RatlsIdentity,
        local: LocalInfo,
        config: GossipConfig,
        now_ms: u64,
    ) -> Result<Gossip, RecordError> {
        let config = config.normalized();
        let me = identity.node_id();
        let own = PeerRecord {
            node_id: me,
            network: config.check.network,
            addrs: local.addrs.clone(),
            tags: local.tags.clone(),
            services: local.services.clone(),
            ticket: local.ticket.clone(),
            version: now_ms,
            issued_at: now_ms / 1000,
            software: local.software.clone(),
            departing: false,
        };
        let own_signed = SignedRecord::sign(&own, &identity)?;
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&me.0[..8]);
        Ok(Gossip {
            catalog: Catalog::new(me, config.max_entries),
            config,
            identity,
            local,
            own,
            own_signed,
            own_issued_ms: now_ms,
            connected: BTreeSet::new(),
            dialing: BTreeMap::new(),
            rng: u64::from_le_bytes(seed),
            next_round_ms: now_ms,
            departed: false,
            stats: GossipStats::default(),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.own.node_id
    }

    /// The verified peers known.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Our current record.
    pub fn own_record(&self) -> &PeerRecord {
        &self.own
    }

    /// Our current record, signed.
    pub fn own_signed(&self) -> &SignedRecord {
        &self.own_signed
    }

    /// Peers the transport reported connected.
    pub fn connected(&self) -> impl Iterator<Item = &NodeId> {
        self.connected.iter()
    }

    /// Whether [`Gossip::depart`] was called.
    pub fn is_departed(&self) -> bool {
        self.departed
    }

    /// The configuration in effect (after clamping).
    pub fn config(&self) -> &GossipConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> GossipStats {
        self.stats
    }

    /// When [`Gossip::on_tick`] next has work to do (Unix ms), or `None` after
    /// departure.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.departed {
            return None;
        }
        let refresh = self
            .own_issued_ms
            .saturating_add(ms(self.config.refresh_interval));
        Some(self.next_round_ms.min(refresh))
    }

    fn ttl(&self) -> Duration {
        self.config.peer_ttl + self.config.max_skew
    }

    /// An admitted peer is connected. The lower node id of the pair starts an
    /// exchange, so both sides learn each other's catalogs.
    pub fn on_connected(&mut self, peer: NodeId, now_ms: u64) -> Vec<Out> {
        let mut out = Vec::new();
        if self.departed || peer == self.node_id() {
            return out;
        }
        self.connected.insert(peer);
        self.dialing.remove(&peer);
        self.catalog.touch(&peer, now_ms);
        if self.node_id() < peer {
            let entries = self.digest_entries();
            self.send(&mut out, peer, DiscoveryV1::Digest { entries });
        }
        out
    }

    /// The connection to `peer` is gone. The peer stays in the catalog until
    /// it expires or departs.
    pub fn on_disconnected(&mut self, peer: NodeId) {
        self.connected.remove(&peer);
    }

    /// A message from the admitted peer `from`.
    pub fn on_message(&mut self, from: NodeId, msg: DiscoveryMsg, now_ms: u64) -> Vec<Out> {
        let mut out = Vec::new();
        if self.departed || from == self.node_id() {
            return out;
        }
        self.stats.messages_in += 1;
        self.catalog.touch(&from, now_ms);
        match msg {
            DiscoveryMsg::V1(DiscoveryV1::Digest { mut entries }) => {
                self.truncate(&mut entries, MAX_DIGEST_ENTRIES);
                self.on_digest(from, &entries, &mut out);
            }
            DiscoveryMsg::V1(DiscoveryV1::Records { mut records }) => {
                self.truncate(&mut records, MAX_RECORDS_PER_MSG);
                for record in records {
                    self.ingest(from, record, now_ms, false, &mut out);
                }
            }
            DiscoveryMsg::V1(DiscoveryV1::Want { mut node_ids }) => {
                self.truncate(&mut node_ids, MAX_WANT);
                let wanted: BTreeSet<NodeId> = node_ids.into_iter().collect();
                let me = self.node_id();
                let records = wanted
                    .iter()
                    .filter_map(|id| {
                        if *id == me {
                            Some(self.own_signed.clone())
                        } else {
                            self.catalog.signed_record(id).cloned()
                        }
                    })
                    .collect();
                self.send_records(&mut out, from, records);
            }
            DiscoveryMsg::V1(DiscoveryV1::Depart { record }) => {
                if let Some(departed) = self.ingest(from, record.clone(), now_ms, true, &mut out) {
                    // News to us: pass it on once.
                    let targets: Vec<NodeId> = self
                        .connected
                        .iter()
                        .filter(|p| **p != from && **p != departed)
                        .copied()
                        .collect();
                    for to in targets {
                        self.send(
                            &mut out,
                            to,
                            DiscoveryV1::Depart {
                                record: record.clone(),
                            },
                        );
                    }
                }
            }
        }
        out
    }

    /// Time passed. Re-signs our record when due, refreshes connected peers,
    /// purges stale ones, and every `interval` sends our digest to up to
    /// `fanout` connected peers (chosen by an rng seeded from the node id, so
    /// runs are reproducible); asks for dials to known, unconnected peers.
    pub fn on_tick(&mut self, now_ms: u64) -> Vec<Out> {
        let mut out = Vec::new();
        if self.departed {
            return out;
        }
        if now_ms >= self.own_issued_ms + ms(self.config.refresh_interval) {
            if let Err(e) = self.reissue(now_ms, false) {
                tracing::warn!(error = %e, "discovery: could not re-sign our record; peers may forget us");
            }
        }
        for peer in &self.connected {
            self.catalog.touch(peer, now_ms);
        }
        for event in self.catalog.purge(now_ms, self.ttl()) {
            self.dialing.remove(&event.node_id());
            out.push(Out::Event(event));
        }
        let redial = ms(self.config.redial_after);
        self.dialing
            .retain(|_, at| now_ms.saturating_sub(*at) < redial);
        if now_ms >= self.next_round_ms {
            self.next_round_ms = now_ms.saturating_add(ms(self.config.interval));
            let targets = self.pick(self.config.fanout);
            if !targets.is_empty() {
                let entries = self.digest_entries();
                for to in targets {
                    self.send(
                        &mut out,
                        to,
                        DiscoveryV1::Digest {
                            entries: entries.clone(),
                        },
                    );
                }
            }
        }
        if self.config.auto_connect {
            let mut candidates: Vec<(NodeId, Vec<SocketAddr>)> = self
                .catalog
                .iter()
                .filter(|p| !self.connected.contains(&p.record().node_id))
                .map(|p| (p.record().node_id, p.record().addrs.clone()))
                .collect();
            // In a seeded random order, so one unreachable peer does not
            // starve the others when the dial budget is small.
            for i in (1..candidates.len()).rev() {
                let j = (self.next_random() % (i as u64 + 1)) as usize;
                candidates.swap(i, j);
            }
            for (id, addrs) in candidates {
                self.maybe_connect(id, addrs, now_ms, &mut out);
            }
        }
        out
    }

    /// Publish new local information (addresses, services, ...): re-sign and
    /// push it to every connected peer.
    pub fn set_local(&mut self, local: LocalInfo, now_ms: u64) -> Result<Vec<Out>, RecordError> {
        let mut out = Vec::new();
        if self.departed {
            return Ok(out);
        }
        let previous = std::mem::replace(&mut self.local, local);
        if let Err(e) = self.reissue(now_ms, false) {
            self.local = previous;
            return Err(e);
        }
        let targets: Vec<NodeId> = self.connected.iter().copied().collect();
        for to in targets {
            self.send_records(&mut out, to, vec![self.own_signed.clone()]);
        }
        Ok(out)
    }

    /// Leave gracefully: sign a departure (higher version, no addresses) and
    /// send it to every connected peer; they relay it. Afterwards this state
    /// machine is inert.
    pub fn depart(&mut self, now_ms: u64) -> Result<Vec<Out>, RecordError> {
        let mut out = Vec::new();
        if self.departed {
            return Ok(out);
        }
        self.reissue(now_ms, true)?;
        self.departed = true;
        let targets: Vec<NodeId> = self.connected.iter().copied().collect();
        for to in targets {
            self.send(
                &mut out,
                to,
                DiscoveryV1::Depart {
                    record: self.own_signed.clone(),
                },
            );
        }
        Ok(out)
    }

    fn reissue(&mut self, now_ms: u64, departing: bool) -> Result<(), RecordError> {
        let record = PeerRecord {
            node_id: self.node_id(),
            network: self.config.check.network,
            addrs: if departing {
                Vec::new()
            } else {
                self.local.addrs.clone()
            },
            tags: self.local.tags.clone(),
            services: self.local.services.clone(),
            ticket: self.local.ticket.clone(),
            version: now_ms.max(self.own.version.saturating_add(1)),
            issued_at: now_ms / 1000,
            software: self.local.software.clone(),
            departing,
        };
        self.own_signed = SignedRecord::sign(&record, &self.identity)?;
        self.own = record;
        self.own_issued_ms = now_ms;
        Ok(())
    }

    fn digest_entries(&self) -> Vec<(NodeId, u64)> {
        let mut entries = self.catalog.digest();
        entries.truncate(MAX_DIGEST_ENTRIES - 1);
        entries.push((self.node_id(), self.own.version));
        entries
    }

    fn on_digest(&mut self, from: NodeId, entries: &[(NodeId, u64)], out: &mut Vec<Out>) {
        let me = self.node_id();
        let mut records = self.catalog.records_newer_than(entries);
        let theirs = entries.iter().find(|(id, _)| *id == me).map(|(_, v)| *v);
        if theirs.is_none_or(|v| v < self.own.version) {
            records.insert(0, self.own_signed.clone());
        }
        self.send_records(out, from, records);
        let want: Vec<NodeId> = entries
            .iter()
            .filter(|(id, v)| {
                *id != me
                    && self.catalog.version_of(id).is_none_or(|ours| ours < *v)
                    && (self.catalog.contains(id) || self.catalog.has_room())
            })
            .map(|(id, _)| *id)
            .take(MAX_WANT)
            .collect();
        if !want.is_empty() {
            self.send(out, from, DiscoveryV1::Want { node_ids: want });
        }
    }

    /// Verify and apply one record. Returns the node id when the record was a
    /// departure that changed the catalog.
    fn ingest(
        &mut self,
        from: NodeId,
        signed: SignedRecord,
        now_ms: u64,
        must_depart: bool,
        out: &mut Vec<Out>,
    ) -> Option<NodeId> {
        self.stats.records_in += 1;
        let claimed = match signed.peek_unverified() {
            Ok(r) => r,
            Err(e) => return self.invalid(from, &e),
        };
        if must_depart && !claimed.departing {
            return self.invalid(
                from,
                &RecordError::Malformed("a Depart message carries a live record".into()),
            );
        }
        let id = claimed.node_id;
        if id == self.node_id()
            || self
                .catalog
                .version_of(&id)
                .is_some_and(|v| claimed.version <= v)
        {
            // Nothing new (if the claim is true; if it is false, ignoring it
            // is right too).
            self.stats.records_duplicate += 1;
            return None;
        }
        if !claimed.departing && !self.catalog.contains(&id) && !self.catalog.has_room() {
            // It would be refused: spare the signature check.
            self.catalog.count_refusal();
            return None;
        }
        let verified = match signed.verify(&self.config.check, now_ms / 1000) {
            Ok(v) => v,
            Err(e) => return self.invalid(from, &e),
        };
        let age = now_ms.saturating_sub(verified.record().issued_at_ms());
        if age > ms(self.ttl()) {
            self.stats.records_stale += 1;
            return None;
        }
        let departing = verified.record().departing;
        let before = self.catalog.version_of(&id);
        let event = self.catalog.apply(verified, now_ms);
        let changed = self.catalog.version_of(&id) != before;
        if changed {
            self.stats.records_applied += 1;
        }
        match event {
            Some(CatalogEvent::Discovered(record)) => {
                self.maybe_connect(id, record.addrs.clone(), now_ms, out);
                out.push(Out::Event(CatalogEvent::Discovered(record)));
            }
            Some(event) => {
                if matches!(event, CatalogEvent::Departed { .. }) {
                    self.dialing.remove(&id);
                }
                out.push(Out::Event(event));
            }
            None => {}
        }
        (changed && departing).then_some(id)
    }

    fn invalid(&mut self, from: NodeId, e: &RecordError) -> Option<NodeId> {
        self.stats.records_invalid += 1;
        tracing::debug!(peer = %from, reason = e.code(), error = %e, "discovery: dropped an invalid record");
        None
    }

    fn maybe_connect(
        &mut self,
        id: NodeId,
        addrs: Vec<SocketAddr>,
        now_ms: u64,
        out: &mut Vec<Out>,
    ) {
        if !self.config.auto_connect
            || addrs.is_empty()
            || id == self.node_id()
            || self.connected.contains(&id)
            || self.dialing.contains_key(&id)
            || self.connected.len() + self.dialing.len() >= self.config.max_connections
        {
            return;
        }
        self.dialing.insert(id, now_ms);
        self.stats.connects_requested += 1;
        out.push(Out::Connect { node_id: id, addrs });
    }

    fn truncate<T>(&mut self, list: &mut Vec<T>, max: usize) {
        if list.len() > max {
            self.stats.truncated += (list.len() - max) as u64;
            list.truncate(max);
        }
    }

    fn send(&mut self, out: &mut Vec<Out>, to: NodeId, msg: DiscoveryV1) {
        self.stats.messages_out += 1;
        out.push(Out::Send {
            to,
            msg: DiscoveryMsg::V1(msg),
        });
    }

    /// Send `records` to `to`, cut into messages within the count and byte
    /// bounds.
    fn send_records(&mut self, out: &mut Vec<Out>, to: NodeId, records: Vec<SignedRecord>) {
        let budget = self.config.max_message_bytes - 16;
        let mut batch: Vec<SignedRecord> = Vec::new();
        let mut size = 0;
        for record in records {
            let len = record.encoded_len();
            if !batch.is_empty() && (batch.len() == MAX_RECORDS_PER_MSG || size + len > budget) {
                self.stats.records_out += batch.len() as u64;
                let records = std::mem::take(&mut batch);
                self.send(out, to, DiscoveryV1::Records { records });
                size = 0;
            }
            size += len;
            batch.push(record);
        }
        if !batch.is_empty() {
            self.stats.records_out += batch.len() as u64;
            self.send(out, to, DiscoveryV1::Records { records: batch });
        }
    }

    /// Up to `k` distinct connected peers, chosen with a seeded rng.
    fn pick(&mut self, k: usize) -> Vec<NodeId> {
        let mut peers: Vec<NodeId> = self.connected.iter().copied().collect();
        let k = k.min(peers.len());
        for i in 0..k {
            let j = i + (self.next_random() % (peers.len() - i) as u64) as usize;
            peers.swap(i, j);
        }
        peers.truncate(k);
        peers
    }

    /// splitmix64.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::record::MAX_RECORD_TICKET_LEN;
    use crate::discovery::service::StreamRole;
    use crate::discovery::testkit::{identities, record_check, record_for, ticket, NOW, NOW_MS};
    use crate::id::StreamId;

    fn local(id: &RatlsIdentity, port: u16) -> LocalInfo {
        LocalInfo {
            addrs: vec![SocketAddr::from(([127, 0, 0, 1], port))],
            tags: vec![[1; 32]],
            services: vec![Service::Stream {
                id: StreamId::from_name("orders"),
                role: StreamRole::Producer,
            }],
            ticket: ticket(id),
            software: "tessella-test".into(),
        }
    }

    fn node(i: usize) -> Gossip {
        let id = identities(i + 1).pop().expect("identity");
        let local = local(&id, 5000 + i as u16);
        Gossip::new(id, local, GossipConfig::new(record_check()), NOW_MS).expect("gossip")
    }

    fn sends(out: &[Out]) -> Vec<(NodeId, DiscoveryV1)> {
        out.iter()
            .filter_map(|o| match o {
                Out::Send {
                    to,
                    msg: DiscoveryMsg::V1(m),
                } => Some((*to, m.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn messages_round_trip_and_bounds_are_checked() {
        let g = node(0);
        let msgs = [
            DiscoveryV1::Digest {
                entries: vec![(g.node_id(), 7), (NodeId([9; 32]), u64::MAX)],
            },
            DiscoveryV1::Records {
                records: vec![g.own_signed().clone()],
            },
            DiscoveryV1::Want {
                node_ids: vec![g.node_id()],
            },
            DiscoveryV1::Depart {
                record: g.own_signed().clone(),
            },
        ];
        for m in msgs {
            let msg = DiscoveryMsg::V1(m);
            let bytes = msg.encode().expect("encodes");
            assert_eq!(DiscoveryMsg::decode(&bytes), Ok(msg));
            let mut trailing = bytes.clone();
            trailing.push(0);
            assert!(matches!(
                DiscoveryMsg::decode(&trailing),
                Err(MsgError::Malformed(_))
            ));
            for cut in 0..bytes.len() {
                assert!(DiscoveryMsg::decode(&bytes[..cut]).is_err());
            }
        }
        let big = DiscoveryMsg::V1(DiscoveryV1::Want {
            node_ids: vec![NodeId([0; 32]); MAX_WANT + 1],
        });
        let bytes = big.encode().expect("encodes");
        assert!(matches!(
            DiscoveryMsg::decode(&bytes),
            Err(MsgError::TooMany { max: MAX_WANT, .. })
        ));
        // Unknown version / variant, and a huge declared length.
        assert!(DiscoveryMsg::decode(&[1, 0]).is_err());
        assert!(DiscoveryMsg::decode(&[0, 9]).is_err());
        assert!(DiscoveryMsg::decode(&[0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }

    #[test]
    fn a_full_digest_fits_a_default_frame() {
        let entries = vec![(NodeId([0xff; 32]), u64::MAX); MAX_DIGEST_ENTRIES];
        let msg = DiscoveryMsg::V1(DiscoveryV1::Digest { entries });
        let len = msg.encode().expect("encodes").len();
        assert!(len <= 64 * 1024, "{len}");
    }

    #[test]
    fn own_record_is_signed_and_reissued_with_higher_versions() {
        let mut g = node(0);
        let first = g.own_record().clone();
        assert_eq!(first.version, NOW_MS);
        assert_eq!(
            g.own_signed()
                .verify(&record_check(), NOW)
                .expect("verifies")
                .record(),
            &first
        );
        assert_eq!(g.poll_timeout(), Some(NOW_MS));
        let later = NOW_MS + 10_000;
        g.on_tick(later);
        assert_eq!(g.own_record().version, later);
        // Even when the clock does not move, versions do.
        let id = identities(1).pop().expect("identity");
        g.set_local(local(&id, 9), later).expect("re-signs");
        assert_eq!(g.own_record().version, later + 1);
        assert_eq!(g.own_record().addrs, local(&id, 9).addrs);
        let err = g
            .set_local(
                LocalInfo {
                    ticket: "x".repeat(MAX_RECORD_TICKET_LEN + 1),
                    ..local(&id, 10)
                },
                later,
            )
            .expect_err("too long");
        assert_eq!(err.code(), "too_long");
        assert_eq!(
            g.own_record().addrs,
            local(&id, 9).addrs,
            "unchanged on error"
        );
    }

    #[test]
    fn lower_id_starts_the_exchange_on_connect() {
        let (mut a, mut b) = (node(0), node(1));
        if a.node_id() > b.node_id() {
            std::mem::swap(&mut a, &mut b);
        }
        let out = a.on_connected(b.node_id(), NOW_MS);
        let s = sends(&out);
        assert_eq!(s.len(), 1);
        assert!(
            matches!(&s[0], (to, DiscoveryV1::Digest { entries }) if *to == b.node_id() && entries == &vec![(a.node_id(), NOW_MS)])
        );
        assert!(b.on_connected(a.node_id(), NOW_MS).is_empty());
        // b answers with its record and wants a's.
        let DiscoveryV1::Digest { entries } = s[0].1.clone() else {
            unreachable!()
        };
        let reply = sends(&b.on_message(
            a.node_id(),
            DiscoveryMsg::V1(DiscoveryV1::Digest { entries }),
            NOW_MS,
        ));
        assert_eq!(reply.len(), 2);
        assert!(
            matches!(&reply[0].1, DiscoveryV1::Records { records } if records == &vec![b.own_signed().clone()])
        );
        assert!(
            matches!(&reply[1].1, DiscoveryV1::Want { node_ids } if node_ids == &vec![a.node_id()])
        );
        // a takes b's record: discovered, no dial (already connected).
        let out = a.on_message(b.node_id(), DiscoveryMsg::V1(reply[0].1.clone()), NOW_MS);
        assert!(
            matches!(&out[..], [Out::Event(CatalogEvent::Discovered(r))] if r.node_id == b.node_id())
        );
        // The same record again is a duplicate, not verified again.
        let out = a.on_message(b.node_id(), DiscoveryMsg::V1(reply[0].1.clone()), NOW_MS);
        assert!(out.is_empty());
        assert_eq!(a.stats().records_duplicate, 1);
        // a answers the want.
        let out = sends(&a.on_message(b.node_id(), DiscoveryMsg::V1(reply[1].1.clone()), NOW_MS));
        assert!(
            matches!(&out[..], [(_, DiscoveryV1::Records { records })] if records == &vec![a.own_signed().clone()])
        );
    }

    #[test]
    fn records_are_cut_into_bounded_messages() {
        let ids = identities(3);
        let mut g = Gossip::new(
            ids[0].clone(),
            local(&ids[0], 1),
            GossipConfig::new(record_check()),
            NOW_MS,
        )
        .expect("gossip");
        let rec = |i: usize| {
            let mut r = record_for(&ids[i], 1, NOW);
            // Only sizes matter here: a long (invalid) ticket makes big records.
            r.ticket = "x".repeat(7000);
            SignedRecord::sign(&r, &ids[i]).expect("signs")
        };
        let big: Vec<SignedRecord> = (0..20).map(|i| rec(1 + i % 2)).collect();
        let mut out = Vec::new();
        g.send_records(&mut out, ids[1].node_id(), big);
        let s = sends(&out);
        assert!(s.len() >= 3, "{}", s.len());
        let mut total = 0;
        for (_, m) in s {
            let msg = DiscoveryMsg::V1(m.clone());
            assert!(msg.encode().expect("encodes").len() <= 60 * 1024);
            let DiscoveryV1::Records { records } = m else {
                unreachable!()
            };
            total += records.len();
        }
        assert_eq!(total, 20);
    }

    #[test]
    fn a_depart_message_must_carry_a_departure() {
        let (mut a, b) = (node(0), node(1));
        a.on_connected(b.node_id(), NOW_MS);
        let out = a.on_message(
            b.node_id(),
            DiscoveryMsg::V1(DiscoveryV1::Depart {
                record: b.own_signed().clone(),
            }),
            NOW_MS,
        );
        assert!(out.is_empty());
        assert_eq!(a.stats().records_invalid, 1);
        assert!(a.catalog().is_empty());
    }

    #[test]
    fn stale_records_are_not_stored() {
        let ids = identities(2);
        let mut g = Gossip::new(
            ids[0].clone(),
            local(&ids[0], 1),
            GossipConfig::new(record_check()),
            NOW_MS,
        )
        .expect("gossip");
        // Issued 41 s ago: older than ttl (30 s) + skew (10 s).
        let old = SignedRecord::sign(&record_for(&ids[1], 1, NOW - 41), &ids[1]).expect("signs");
        let out = g.on_message(
            ids[1].node_id(),
            DiscoveryMsg::V1(DiscoveryV1::Records { records: vec![old] }),
            NOW_MS,
        );
        assert!(out.is_empty());
        assert_eq!(g.stats().records_stale, 1);
        assert!(g.catalog().is_empty());
    }

    #[test]
    fn fanout_choice_is_reproducible_and_bounded() {
        let run = || {
            let mut g = node(0);
            for p in identities(10).iter().skip(1) {
                g.on_connected(p.node_id(), NOW_MS);
            }
            (0..5)
                .map(|r| {
                    let out = g.on_tick(NOW_MS + r * 1000);
                    let mut to: Vec<NodeId> = sends(&out).into_iter().map(|(t, _)| t).collect();
                    assert_eq!(to.len(), 3);
                    to.sort();
                    to.dedup();
                    assert_eq!(to.len(), 3);
                    to
                })
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.windows(2).any(|w| w[0] != w[1]), "rounds vary");
    }
}
