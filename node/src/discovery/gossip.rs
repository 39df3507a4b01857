//! Discovery's protocol as one state machine without I/O: HyParView
//! membership, eager push of records along the active view with bucketed
//! anti-entropy behind it, and SWIM-style failure detection.
//!
//! [`Gossip`] is fed `(now, input)` by the transport and answers with
//! [`Out`]puts: messages to send, catalog events, peers to dial, connections
//! to hold or let go. It never touches a socket or a clock.
//!
//! ```text
//! DiscoveryMsg (postcard, one per frame, on a Discovery/1 stream): V1 =
//!   Join{record}            new node → its contact (the first peer it reaches)
//!   ForwardJoin{record,ttl} the contact's random walks announcing the joiner
//!   Neighbor{high,record}   "take me into your active view" (high: I have none)
//!   NeighborReply{accepted}
//!   Disconnect              "you left my active view"
//!   Shuffle{ids} / ShuffleReply{ids}      passive-view exchange (≤ 16 ids)
//!   Push{records, failed}   new or newer records and failure notices (eager)
//!   Summary{buckets}        256 bucket hashes of the sender's catalog (2 KiB)
//!   Buckets{buckets,entries} (id, rank) of every entry in buckets that differ
//!   Want{node_ids}          "send me these"
//!   Ping{seq} / Ack{seq} / PingReq{target,seq}   failure detection
//! ```
//!
//! # Membership (HyParView)
//!
//! A node keeps at most `active_size` peers in its active view (connections
//! held open, gossip goes only there) and `passive_size` in its passive view
//! (known, verified, reachable). A joiner sends `Join` to the first peer it
//! reaches; that contact takes it in and starts `ForwardJoin` random walks of
//! `arwl` hops through its active peers; the node where a walk ends takes the
//! joiner into its active view, nodes `prwl` hops before the end into their
//! passive view. A full active view drops a random peer into the passive view
//! (`Disconnect`). When an active peer fails or leaves, a passive peer is
//! promoted (`Neighbor`, high priority when the active view is empty, so it
//! cannot be refused). Every `shuffle_interval` a node swaps a sample of its
//! views with an active peer, so passive views stay fresh.
//!
//! # Dissemination
//!
//! A record (or failure notice) that changes the catalog is pushed at once to
//! every active peer but the one it came from: a flood over a bounded-degree
//! random graph, so it reaches everyone in about log(n) hops, each node
//! receiving it at most `active_size` times. Behind it, every
//! `sync_interval` a node sends an active peer its catalog [`Summary`] (256
//! bucket hashes: 2 KiB at any network size); the peer answers with the
//! entries of the buckets that differ, and each side then pushes what the
//! other lacks and wants what it lacks. A node that missed pushes, or just
//! joined, catches up this way.
//!
//! # Failure detection (SWIM)
//!
//! Every `probe_interval` a node pings the next active peer in turn. Without
//! an `Ack` within `probe_timeout` it asks `indirect_probes` other active
//! peers to ping it (`PingReq`); without any ack by the end of the period
//! the peer is *suspected*. Any message from it clears the suspicion; after
//! `suspicion_timeout` without one it is declared failed: it leaves the
//! views, and a failure notice for its current record version spreads like a
//! record. A node that hears a failure notice about itself *refutes* it by
//! signing a newer record, which outranks the notice everywhere. So a slow
//! node (acks late but within the suspicion timeout) is never removed, and a
//! hostile admitted peer can make a live node's record flap but not remove
//! it. Records also carry a time to live (`record_ttl`), refreshed by their
//! owner every `refresh_interval`, as a backstop that needs no detector.
//!
//! # Trust
//!
//! Only admitted peers reach [`Gossip::on_message`]. Records are stored and
//! relayed only after [`RecordVerifier::verify`] passes (the owner's
//! signature and its ticket), so an admitted peer cannot invent identities or
//! make nodes dial addresses of its choosing: [`Out::Connect`] only ever names
//! addresses from verified records, and a node it names is admitted by the
//! transport in its own handshake.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tessella_attestation::identity::{NetworkId, NodeId};
use tessella_attestation::ratls::RatlsIdentity;

use super::catalog::{failure_rank, record_rank, Catalog, CatalogEvent, Repair, BUCKETS};
use super::record::{wire_id, PeerRecord, RecordError, SignedRecord, VerifiedRecord};
use super::service::Service;
use super::view::{Rng, Views};

/// Most ids in a `Shuffle` or `ShuffleReply`.
pub const MAX_SHUFFLE_IDS: usize = 16;
/// Most records in a `Push`.
pub const MAX_RECORDS_PER_MSG: usize = 64;
/// Most failure notices in a `Push`.
pub const MAX_FAILURES_PER_MSG: usize = 256;
/// Most entries in a `Buckets` answer (about 64 KiB).
pub const MAX_BUCKET_ENTRIES: usize = 1500;
/// Most ids in a `Want`.
pub const MAX_WANT: usize = 1024;
/// Smallest message budget (a maximal signed record is about 8.6 KiB).
pub const MIN_MESSAGE_BYTES: usize = 16 * 1024;
/// Anti-entropy rounds between two with a node outside the active view, at
/// first; the gap doubles (up to [`WIDE_SYNC_MAX`]) while they find nothing
/// new, since each may cost an attested handshake.
pub const WIDE_SYNC_EVERY: u32 = 8;
/// Longest gap between wide anti-entropy rounds.
pub const WIDE_SYNC_MAX: u32 = 64;
/// Most indirect probes this node runs for others at once.
pub const MAX_RELAYS: usize = 32;

/// A discovery message. Versioned: a later protocol adds `V2`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiscoveryMsg {
    /// Protocol version 1.
    V1(DiscoveryV1),
}

/// Version 1 of the discovery protocol; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiscoveryV1 {
    /// A new node asks its contact to take it in; carries its record.
    Join {
        /// The joiner's signed record.
        record: SignedRecord,
    },
    /// A random walk announcing a joiner.
    ForwardJoin {
        /// The joiner's signed record.
        record: SignedRecord,
        /// Hops left.
        ttl: u8,
    },
    /// "Take me into your active view."
    Neighbor {
        /// Sent when the sender's active view is empty: not refused.
        high: bool,
        /// The sender's signed record.
        record: SignedRecord,
    },
    /// The answer to `Neighbor` (and to `Join`).
    NeighborReply {
        /// Whether the sender took us in.
        accepted: bool,
    },
    /// "You left my active view."
    Disconnect,
    /// A sample of the sender's views.
    Shuffle {
        /// Node ids.
        #[serde(with = "wire_id::nodes")]
        ids: Vec<NodeId>,
    },
    /// A sample of the receiver's passive view, in return.
    ShuffleReply {
        /// Node ids.
        #[serde(with = "wire_id::nodes")]
        ids: Vec<NodeId>,
    },
    /// Records and failure notices the receiver may not have.
    Push {
        /// Signed records, each verified by the receiver on its own.
        records: Vec<SignedRecord>,
        /// `(node id, record version)` found unresponsive.
        #[serde(with = "wire_id::versions")]
        failed: Vec<(NodeId, u64)>,
    },
    /// The sender's catalog summary: [`BUCKETS`] hashes.
    Summary {
        /// Bucket hashes.
        buckets: Vec<u64>,
    },
    /// Every entry the sender holds in buckets that differed.
    Buckets {
        /// The buckets covered (complete).
        buckets: Vec<u8>,
        /// `(node id, rank)` of each entry in them.
        #[serde(with = "wire_id::versions")]
        entries: Vec<(NodeId, u64)>,
    },
    /// "Send me these."
    Want {
        /// The wanted nodes.
        #[serde(with = "wire_id::nodes")]
        node_ids: Vec<NodeId>,
    },
    /// Are you alive?
    Ping {
        /// Echoed in the ack.
        seq: u64,
    },
    /// Alive (directly, or relayed for a `PingReq`).
    Ack {
        /// The ping's sequence number.
        seq: u64,
    },
    /// "Ping `target` for me and relay its ack."
    PingReq {
        /// The node to probe.
        #[serde(with = "wire_id::node")]
        target: NodeId,
        /// The requester's sequence number.
        seq: u64,
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

    /// Check every list against its bound.
    pub fn check_bounds(&self) -> Result<(), MsgError> {
        let DiscoveryMsg::V1(m) = self;
        let checks: &[(&'static str, usize, usize)] = match m {
            DiscoveryV1::Shuffle { ids } | DiscoveryV1::ShuffleReply { ids } => {
                &[("shuffle ids", ids.len(), MAX_SHUFFLE_IDS)]
            }
            DiscoveryV1::Push { records, failed } => &[
                ("records", records.len(), MAX_RECORDS_PER_MSG),
                ("failure notices", failed.len(), MAX_FAILURES_PER_MSG),
            ],
            DiscoveryV1::Summary { buckets } => &[("summary buckets", buckets.len(), BUCKETS)],
            DiscoveryV1::Buckets { buckets, entries } => &[
                ("buckets", buckets.len(), BUCKETS),
                ("bucket entries", entries.len(), MAX_BUCKET_ENTRIES),
            ],
            DiscoveryV1::Want { node_ids } => &[("wanted ids", node_ids.len(), MAX_WANT)],
            _ => &[],
        };
        for (what, len, max) in checks {
            if len > max {
                return Err(MsgError::TooMany {
                    what,
                    len: *len,
                    max: *max,
                });
            }
        }
        Ok(())
    }
}

/// What the transport must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Send `msg` to `to` (drop it if the peer is gone or its queue is full:
    /// the protocol repairs loss).
    Send {
        /// The peer.
        to: NodeId,
        /// The message.
        msg: DiscoveryMsg,
    },
    /// Publish a catalog event.
    Event(CatalogEvent),
    /// Dial `node_id` at `addrs` (from its verified record) unless connected
    /// or dialling; report the outcome with [`Gossip::on_connected`] or
    /// [`Gossip::on_connect_failed`].
    Connect {
        /// The node.
        node_id: NodeId,
        /// Its addresses.
        addrs: Vec<SocketAddr>,
    },
    /// `node_id` entered the active view: hold its connection open.
    Keep(NodeId),
    /// `node_id` left the active view: its connection may close unless
    /// something else holds it.
    Release(NodeId),
}

/// Checks a signed record before it is stored or relayed: the owner's
/// signature and everything bound to it (network, time, ticket).
pub trait RecordVerifier: Send + Sync + std::fmt::Debug {
    /// Verify `signed` at `now_ms`. (Shared: a simulator verifies each
    /// distinct record once for all its nodes.)
    fn verify(
        &self,
        signed: &SignedRecord,
        now_ms: u64,
    ) -> Result<Arc<VerifiedRecord>, RecordError>;
    /// When `record`'s ticket stops vouching for it, Unix seconds.
    fn expires(&self, record: &VerifiedRecord) -> u64;
}

impl RecordVerifier for super::record::RecordCheck {
    fn verify(
        &self,
        signed: &SignedRecord,
        now_ms: u64,
    ) -> Result<Arc<VerifiedRecord>, RecordError> {
        SignedRecord::verify(signed, self, now_ms / 1000).map(Arc::new)
    }

    fn expires(&self, record: &VerifiedRecord) -> u64 {
        record.ticket_expires()
    }
}

/// What this node says about itself (its record's contents).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalInfo {
    /// Where it accepts connections.
    pub addrs: Vec<SocketAddr>,
    /// Its tags.
    pub tags: Vec<[u8; 32]>,
    /// Offered services.
    pub services: Vec<Service>,
    /// Its ticket (peers store and relay the record only with a valid one).
    pub ticket: String,
    /// Software name and version.
    pub software: String,
}

/// Protocol settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GossipConfig {
    /// The network records must belong to.
    pub network: NetworkId,
    /// Active view size (connections kept for gossip).
    pub active_size: usize,
    /// Passive view size.
    pub passive_size: usize,
    /// Active random walk length (`ForwardJoin` hops).
    pub arwl: u8,
    /// Passive random walk length: where a walk adds the joiner as passive.
    pub prwl: u8,
    /// Time between SWIM probes.
    pub probe_interval: Duration,
    /// How long a direct ping waits before indirect probes.
    pub probe_timeout: Duration,
    /// Peers asked to probe indirectly.
    pub indirect_probes: usize,
    /// How long a suspected peer has to show life.
    pub suspicion_timeout: Duration,
    /// Time between passive-view shuffles.
    pub shuffle_interval: Duration,
    /// Time between anti-entropy exchanges.
    pub sync_interval: Duration,
    /// How often the owner re-signs its record.
    pub refresh_interval: Duration,
    /// How long a record stays valid without a newer one.
    pub record_ttl: Duration,
    /// Clock skew tolerated on record times.
    pub max_skew: Duration,
    /// Most live peers in the catalog.
    pub max_entries: usize,
    /// How long a dial or a neighbour request may take.
    pub connect_timeout: Duration,
    /// Time between attempts to reach a node declared failed (how a healed
    /// partition comes back together, as Serf's reconnect does).
    pub reconnect_interval: Duration,
    /// Largest message, bytes (records are cut into messages within it).
    pub max_message_bytes: usize,
}

impl GossipConfig {
    /// Defaults for `network`: views of 6 and 30, probes every second,
    /// suspicion for 5 s, records refreshed every 10 minutes, valid 1 hour.
    pub fn new(network: NetworkId) -> GossipConfig {
        GossipConfig {
            network,
            active_size: 6,
            passive_size: 30,
            arwl: 6,
            prwl: 3,
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(400),
            indirect_probes: 2,
            suspicion_timeout: Duration::from_secs(5),
            shuffle_interval: Duration::from_secs(10),
            sync_interval: Duration::from_secs(5),
            refresh_interval: Duration::from_secs(600),
            record_ttl: Duration::from_secs(3600),
            max_skew: Duration::from_secs(10),
            max_entries: 10_000,
            connect_timeout: Duration::from_secs(5),
            reconnect_interval: Duration::from_secs(10),
            max_message_bytes: 60 * 1024,
        }
    }

    fn normalized(mut self) -> GossipConfig {
        self.active_size = self.active_size.max(1);
        self.passive_size = self.passive_size.max(1);
        self.prwl = self.prwl.min(self.arwl);
        self.max_entries = self.max_entries.max(1);
        self.refresh_interval = self.refresh_interval.min(self.record_ttl / 2);
        self.max_message_bytes = self.max_message_bytes.max(MIN_MESSAGE_BYTES);
        self.probe_timeout = self.probe_timeout.min(self.probe_interval);
        self
    }
}

/// Counters, for metrics and the simulator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GossipStats {
    /// Messages received.
    pub messages_in: u64,
    /// Messages sent.
    pub messages_out: u64,
    /// Records received.
    pub records_in: u64,
    /// Records sent.
    pub records_out: u64,
    /// Records that changed the catalog.
    pub records_applied: u64,
    /// Records already known (or older).
    pub records_duplicate: u64,
    /// Records that failed verification.
    pub records_invalid: u64,
    /// Records older than their time to live.
    pub records_stale: u64,
    /// Failure notices that changed the catalog.
    pub failures_applied: u64,
    /// Peers this node declared failed.
    pub failures_declared: u64,
    /// Peers this node suspected.
    pub suspicions: u64,
    /// Failure notices about this node that it refuted.
    pub refutations: u64,
    /// Dials asked of the transport.
    pub connects_requested: u64,
    /// List entries dropped for exceeding a bound.
    pub truncated: u64,
    /// Ticks that came late (this node starved): suspicions restarted.
    pub late_ticks: u64,
}

/// A neighbour request in flight.
#[derive(Debug, Clone, Copy)]
struct Pending {
    high: bool,
    at_ms: u64,
    /// Waiting for the transport to connect (else for the reply).
    connecting: bool,
    /// This is our join through a contact.
    join: bool,
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    target: NodeId,
    seq: u64,
    sent_ms: u64,
    indirect: bool,
}

#[derive(Debug, Clone, Copy)]
struct Relay {
    requester: NodeId,
    seq: u64,
    target: NodeId,
    at_ms: u64,
    sent: bool,
}

/// Pushes waiting for one peer until the next tick: one entry per node, so
/// a record superseded before it went out is not sent, and one the peer
/// sent us meanwhile is dropped.
#[derive(Debug, Default)]
struct PushQueue {
    /// Records by owner, with their version.
    records: BTreeMap<NodeId, (u64, SignedRecord)>,
    /// Failure notices: the highest version condemned per node.
    failed: BTreeMap<NodeId, u64>,
}

/// The discovery protocol of one node; see the module docs.
#[derive(Debug)]
pub struct Gossip {
    config: GossipConfig,
    verifier: Arc<dyn RecordVerifier>,
    identity: RatlsIdentity,
    local: LocalInfo,
    own: PeerRecord,
    own_signed: SignedRecord,
    own_issued_ms: u64,
    catalog: Catalog,
    views: Views,
    /// Peers the transport reports connected, and since when.
    connected: BTreeMap<NodeId, u64>,
    /// Connections already released (not asked again until they reconnect).
    released: BTreeSet<NodeId>,
    pending: BTreeMap<NodeId, Pending>,
    joined: bool,
    probe: Option<Probe>,
    probe_cursor: usize,
    suspects: BTreeMap<NodeId, u64>,
    relays: BTreeMap<u64, Relay>,
    seq: u64,
    rng: Rng,
    next_probe_ms: u64,
    next_shuffle_ms: u64,
    next_sync_ms: u64,
    next_purge_ms: u64,
    last_tick_ms: u64,
    next_reconnect_ms: u64,
    next_fill_ms: u64,
    /// Gap between non-urgent top-ups: doubles on each refusal (up to 64
    /// sync intervals), back to one sync interval on an acceptance.
    fill_gap_ms: u64,
    /// Anti-entropy rounds until the next one with a node outside the
    /// active view.
    syncs_until_wide: u32,
    /// The current gap between wide rounds.
    wide_gap: u32,
    /// Nodes being dialled for a wide anti-entropy round.
    wide: BTreeSet<NodeId>,
    /// Recent wide anti-entropy partners (bounded: the last few).
    wide_peers: Vec<NodeId>,
    /// A wide partner that taught us something: take it as a neighbour.
    bridge: Option<NodeId>,
    /// Pushes per peer, sent together on the next tick: a node that learns
    /// many records within a few milliseconds (a join storm, an
    /// anti-entropy answer) sends each peer one message for all of them,
    /// not one per input.
    push: BTreeMap<NodeId, PushQueue>,
    /// When the oldest queued push was queued (the next tick is due then).
    push_since: Option<u64>,
    departed: bool,
    stats: GossipStats,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Gossip {
    /// A node with `identity`, saying `local` about itself, at `now_ms`.
    pub fn new(
        identity: RatlsIdentity,
        local: LocalInfo,
        config: GossipConfig,
        verifier: Arc<dyn RecordVerifier>,
        now_ms: u64,
    ) -> Result<Gossip, RecordError> {
        let config = config.normalized();
        let me = identity.node_id();
        let own = PeerRecord {
            node_id: me,
            network: config.network,
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
        let seed = u64::from_le_bytes(seed);
        let mut rng = Rng::new(seed);
        // Spread periodic work so nodes started together do not act in step.
        let jitter = |rng: &mut Rng, d: Duration| rng.next_u64() % ms(d).max(1);
        let next_probe_ms = now_ms + jitter(&mut rng, config.probe_interval);
        let next_shuffle_ms = now_ms + jitter(&mut rng, config.shuffle_interval);
        let next_sync_ms = now_ms + jitter(&mut rng, config.sync_interval);
        let reconnect = config.reconnect_interval;
        Ok(Gossip {
            catalog: Catalog::new(me, config.max_entries),
            views: Views::new(me, config.active_size, config.passive_size),
            config,
            verifier,
            identity,
            local,
            own,
            own_signed,
            own_issued_ms: now_ms,
            connected: BTreeMap::new(),
            released: BTreeSet::new(),
            pending: BTreeMap::new(),
            joined: false,
            probe: None,
            probe_cursor: 0,
            suspects: BTreeMap::new(),
            relays: BTreeMap::new(),
            seq: seed,
            rng,
            next_probe_ms,
            next_shuffle_ms,
            next_sync_ms,
            next_purge_ms: now_ms,
            last_tick_ms: now_ms,
            next_reconnect_ms: now_ms + ms(reconnect),
            next_fill_ms: now_ms,
            fill_gap_ms: 0,
            // The first one soon after start: a node that joined into a
            // closed group of views finds its way out quickly.
            syncs_until_wide: 2,
            wide_gap: WIDE_SYNC_EVERY,
            wide: BTreeSet::new(),
            wide_peers: Vec::new(),
            bridge: None,
            push: BTreeMap::new(),
            push_since: None,
            departed: false,
            stats: GossipStats::default(),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.own.node_id
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// This node's current record.
    pub fn own_record(&self) -> &PeerRecord {
        &self.own
    }

    /// This node's current record, signed.
    pub fn own_signed(&self) -> &SignedRecord {
        &self.own_signed
    }

    /// The active view.
    pub fn active(&self) -> Vec<NodeId> {
        self.views.active()
    }

    /// The passive view.
    pub fn passive(&self) -> &[NodeId] {
        self.views.passive()
    }

    /// Peers currently suspected.
    pub fn suspects(&self) -> impl Iterator<Item = &NodeId> {
        self.suspects.keys()
    }

    /// Peers the transport reports connected.
    pub fn connected(&self) -> impl Iterator<Item = &NodeId> {
        self.connected.keys()
    }

    /// Whether this node has left.
    pub fn is_departed(&self) -> bool {
        self.departed
    }

    /// Settings in force.
    pub fn config(&self) -> &GossipConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> GossipStats {
        self.stats
    }

    /// When [`Gossip::on_tick`] next has work to do (node ms). Pushes queued
    /// by inputs make it due at once: the caller ticks after a burst of
    /// inputs, and each peer gets one push for the burst.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.departed {
            return None;
        }
        let refresh = self
            .own_issued_ms
            .saturating_add(ms(self.config.refresh_interval));
        let probe = self.probe.map_or(u64::MAX, |p| {
            p.sent_ms.saturating_add(ms(if p.indirect {
                self.config.probe_interval
            } else {
                self.config.probe_timeout
            }))
        });
        Some(
            [
                refresh,
                probe,
                self.next_probe_ms,
                self.next_shuffle_ms,
                self.next_sync_ms,
                self.next_purge_ms,
                self.push_since.unwrap_or(u64::MAX),
            ]
            .into_iter()
            .min()
            .unwrap_or(u64::MAX),
        )
    }

    /// An admitted connection to `peer` is up.
    pub fn on_connected(&mut self, peer: NodeId, now_ms: u64) -> Vec<Out> {
        let mut out = Vec::new();
        if self.departed || peer == self.node_id() {
            return out;
        }
        self.connected.insert(peer, now_ms);
        self.released.remove(&peer);
        // An admitted handshake just now: alive.
        self.suspects.remove(&peer);
        if let Some(p) = self.pending.get_mut(&peer) {
            if p.connecting {
                p.connecting = false;
                p.at_ms = now_ms;
                let high = p.high;
                let record = self.own_signed.clone();
                self.send(&mut out, peer, DiscoveryV1::Neighbor { high, record });
            }
        } else if !self.joined
            && self.views.active_len() == 0
            && !self.pending.values().any(|p| p.join)
        {
            // Our first peer: it is our contact.
            self.pending.insert(
                peer,
                Pending {
                    high: true,
                    at_ms: now_ms,
                    connecting: false,
                    join: true,
                },
            );
            let record = self.own_signed.clone();
            self.send(&mut out, peer, DiscoveryV1::Join { record });
        }
        if self.wide.remove(&peer) {
            self.send_summary(peer, &mut out);
        }
        let waiting: Vec<u64> = self
            .relays
            .iter()
            .filter(|(_, r)| r.target == peer && !r.sent)
            .map(|(s, _)| *s)
            .collect();
        for seq in waiting {
            if let Some(r) = self.relays.get_mut(&seq) {
                r.sent = true;
            }
            self.send(&mut out, peer, DiscoveryV1::Ping { seq });
        }
        self.defer(now_ms);
        out
    }

    /// A dial asked for with [`Out::Connect`] failed.
    pub fn on_connect_failed(&mut self, peer: NodeId, now_ms: u64) -> Vec<Out> {
        let out = Vec::new();
        if self.departed {
            return out;
        }
        if self.pending.get(&peer).is_some_and(|p| p.connecting) {
            // The next tick picks another candidate: repairing from here
            // would loop as fast as dials fail.
            self.pending.remove(&peer);
            self.views.remove_passive(&peer);
        }
        // Unreachable: as much a sign of failure as an unanswered probe.
        self.suspect(peer, now_ms);
        self.relays.retain(|_, r| r.target != peer || r.sent);
        self.push.remove(&peer);
        self.defer(now_ms);
        out
    }

    /// The connection to `peer` closed.
    pub fn on_disconnected(&mut self, peer: NodeId, now_ms: u64) -> Vec<Out> {
        let mut out = Vec::new();
        self.connected.remove(&peer);
        self.released.remove(&peer);
        if self.probe.is_some_and(|p| p.target == peer) {
            self.probe = None;
        }
        if self.departed {
            return out;
        }
        self.pending.remove(&peer);
        self.push.remove(&peer);
        if self.views.remove_active(&peer) {
            // It may come back (a restart, a network blip): keep it passive;
            // a failed dial forgets it.
            self.views.add_passive(peer, &mut self.rng);
            out.push(Out::Release(peer));
            self.repair(now_ms, &mut out);
        }
        self.defer(now_ms);
        out
    }

    /// A message from the admitted peer `from`.
    pub fn on_message(&mut self, from: NodeId, msg: DiscoveryMsg, now_ms: u64) -> Vec<Out> {
        let mut out = Vec::new();
        if self.departed || from == self.node_id() {
            return out;
        }
        self.stats.messages_in += 1;
        // Any message is a sign of life.
        self.suspects.remove(&from);
        let DiscoveryMsg::V1(msg) = msg;
        match msg {
            DiscoveryV1::Join { record } => self.on_join(from, record, now_ms, &mut out),
            DiscoveryV1::ForwardJoin { record, ttl } => {
                self.on_forward_join(from, record, ttl, now_ms, &mut out)
            }
            DiscoveryV1::Neighbor { high, record } => {
                self.on_neighbor(from, high, record, now_ms, &mut out)
            }
            DiscoveryV1::NeighborReply { accepted } => {
                self.on_neighbor_reply(from, accepted, now_ms, &mut out)
            }
            DiscoveryV1::Disconnect => {
                if self.views.remove_active(&from) {
                    self.views.add_passive(from, &mut self.rng);
                    out.push(Out::Release(from));
                    self.repair(now_ms, &mut out);
                }
            }
            DiscoveryV1::Shuffle { mut ids } => {
                self.truncate(&mut ids, MAX_SHUFFLE_IDS);
                let reply = self.rng.sample(self.views.passive(), ids.len());
                self.send(&mut out, from, DiscoveryV1::ShuffleReply { ids: reply });
                self.integrate(&ids);
            }
            DiscoveryV1::ShuffleReply { mut ids } => {
                self.truncate(&mut ids, MAX_SHUFFLE_IDS);
                self.integrate(&ids);
            }
            DiscoveryV1::Push {
                mut records,
                mut failed,
            } => {
                self.truncate(&mut records, MAX_RECORDS_PER_MSG);
                self.truncate(&mut failed, MAX_FAILURES_PER_MSG);
                for record in records {
                    self.ingest(Some(from), record, now_ms, &mut out);
                }
                for (id, version) in failed {
                    self.on_failure_notice(Some(from), id, version, now_ms, &mut out);
                }
            }
            DiscoveryV1::Summary { buckets } => self.on_summary(from, &buckets, &mut out),
            DiscoveryV1::Buckets {
                mut buckets,
                mut entries,
            } => {
                self.truncate(&mut buckets, BUCKETS);
                self.truncate(&mut entries, MAX_BUCKET_ENTRIES);
                self.on_buckets(from, &buckets, &entries, now_ms, &mut out);
            }
            DiscoveryV1::Want { mut node_ids } => {
                self.truncate(&mut node_ids, MAX_WANT);
                let me = self.node_id();
                let wanted: BTreeSet<NodeId> = node_ids.into_iter().collect();
                for id in wanted {
                    if id == me {
                        self.queue_own(from);
                    } else {
                        self.queue_repair(from, id);
                    }
                }
            }
            DiscoveryV1::Ping { seq } => self.send(&mut out, from, DiscoveryV1::Ack { seq }),
            DiscoveryV1::Ack { seq } => {
                if let Some(p) = self.probe {
                    if p.seq == seq {
                        self.suspects.remove(&p.target);
                        self.probe = None;
                    }
                }
                if let Some(r) = self.relays.remove(&seq) {
                    if r.target == from {
                        self.send(&mut out, r.requester, DiscoveryV1::Ack { seq: r.seq });
                    }
                    self.release_relay_target(r.target, &mut out);
                }
            }
            DiscoveryV1::PingReq { target, seq } => {
                self.on_ping_req(from, target, seq, now_ms, &mut out)
            }
        }
        if let Some(b) = self.bridge.take() {
            self.wide_peers.retain(|p| *p != b);
            self.request_neighbor(b, true, now_ms, &mut out);
        }
        self.defer(now_ms);
        out
    }

    /// Timers: call when [`Gossip::poll_timeout`] is due (or on a fixed tick).
    pub fn on_tick(&mut self, now_ms: u64) -> Vec<Out> {
        let mut out = Vec::new();
        if self.departed {
            return out;
        }
        // Local health (as memberlist's Lifeguard): if our own timers ran
        // late, the silence we measured may be ours. Restart every
        // suspicion and the probe in flight rather than condemn peers.
        let late = now_ms.saturating_sub(self.last_tick_ms) > 2 * ms(self.config.probe_interval);
        self.last_tick_ms = now_ms;
        if late {
            self.stats.late_ticks += 1;
            self.probe = None;
            for since in self.suspects.values_mut() {
                *since = now_ms;
            }
        }
        if now_ms >= self.own_issued_ms + ms(self.config.refresh_interval) {
            self.refresh(now_ms, &mut out);
        }
        if now_ms >= self.next_purge_ms {
            self.next_purge_ms = now_ms + 1000;
            let verifier = self.verifier.clone();
            let ttl = ms(self.config.record_ttl + self.config.max_skew);
            for event in self.catalog.purge(now_ms, ttl, |r| verifier.expires(r)) {
                self.views.forget(&event.node_id());
                out.push(Out::Event(event));
            }
        }
        self.expire_pending(now_ms, &mut out);
        self.release_unused(now_ms, &mut out);
        self.detect(now_ms, &mut out);
        self.repair(now_ms, &mut out);
        if now_ms >= self.next_reconnect_ms {
            self.next_reconnect_ms = now_ms + ms(self.config.reconnect_interval);
            let failed: Vec<NodeId> = self
                .catalog
                .failed()
                .into_iter()
                .map(|(id, _)| id)
                .filter(|id| !self.connected.contains_key(id) && !self.pending.contains_key(id))
                .collect();
            if !failed.is_empty() {
                let id = failed[self.rng.below(failed.len())];
                self.request_neighbor(id, true, now_ms, &mut out);
            }
        }
        if now_ms >= self.next_shuffle_ms {
            self.next_shuffle_ms = now_ms + ms(self.config.shuffle_interval);
            if let Some(peer) = self.views.random_active(&mut self.rng, &[]) {
                let mut ids = self.rng.sample(&self.views.active(), 3);
                ids.extend(self.rng.sample(self.views.passive(), 4));
                ids.retain(|id| *id != peer);
                ids.push(self.node_id());
                self.send(&mut out, peer, DiscoveryV1::Shuffle { ids });
            }
        }
        if now_ms >= self.next_sync_ms {
            self.next_sync_ms = now_ms + ms(self.config.sync_interval);
            self.syncs_until_wide = self.syncs_until_wide.saturating_sub(1);
            if self.syncs_until_wide == 0 {
                self.syncs_until_wide = self.wide_gap;
                self.wide_gap = (self.wide_gap * 2).min(WIDE_SYNC_MAX);
                self.wide_sync(&mut out);
            } else if let Some(peer) = self.views.random_active(&mut self.rng, &[]) {
                self.send_summary(peer, &mut out);
            }
        }
        self.flush(&mut out);
        out
    }

    /// New local information: re-sign and push the record.
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
        self.push_own(&mut out);
        self.flush(&mut out);
        Ok(out)
    }

    /// Leave: sign a departure and send it to every active peer. Afterwards
    /// the node ignores every input.
    pub fn depart(&mut self, now_ms: u64) -> Result<Vec<Out>, RecordError> {
        let mut out = Vec::new();
        if self.departed {
            return Ok(out);
        }
        self.reissue(now_ms, true)?;
        self.push_own(&mut out);
        self.flush(&mut out);
        self.departed = true;
        Ok(out)
    }

    // ---- membership ----

    fn on_join(&mut self, from: NodeId, record: SignedRecord, now_ms: u64, out: &mut Vec<Out>) {
        if !self.ingest_own_record_of(from, record.clone(), now_ms, out) {
            return;
        }
        self.add_active(from, now_ms, out);
        self.send(out, from, DiscoveryV1::NeighborReply { accepted: true });
        // The joiner learns its contact's record at once: whatever becomes of
        // its views, it knows one node beyond them (see `wide_sync`).
        self.queue_own(from);
        let ttl = self.config.arwl;
        for peer in self.views.active() {
            if peer != from {
                self.send(
                    out,
                    peer,
                    DiscoveryV1::ForwardJoin {
                        record: record.clone(),
                        ttl,
                    },
                );
            }
        }
    }

    fn on_forward_join(
        &mut self,
        from: NodeId,
        record: SignedRecord,
        ttl: u8,
        now_ms: u64,
        out: &mut Vec<Out>,
    ) {
        let Ok(claimed) = record.peek_unverified() else {
            self.stats.records_invalid += 1;
            return;
        };
        let joiner = claimed.node_id;
        if joiner == self.node_id() {
            return;
        }
        self.ingest(Some(from), record.clone(), now_ms, out);
        if !self.catalog.contains(&joiner) {
            // Unverifiable or stale: nobody dials it on our word.
            return;
        }
        if ttl == 0 || self.views.active_len() <= 1 {
            self.request_neighbor(joiner, true, now_ms, out);
            return;
        }
        if ttl == self.config.prwl {
            self.views.add_passive(joiner, &mut self.rng);
        }
        match self.views.random_active(&mut self.rng, &[from, joiner]) {
            Some(next) => self.send(
                out,
                next,
                DiscoveryV1::ForwardJoin {
                    record,
                    ttl: ttl - 1,
                },
            ),
            None => self.request_neighbor(joiner, true, now_ms, out),
        }
    }

    fn on_neighbor(
        &mut self,
        from: NodeId,
        high: bool,
        record: SignedRecord,
        now_ms: u64,
        out: &mut Vec<Out>,
    ) {
        let version = record.peek_unverified().map(|r| r.version).ok();
        if !self.ingest_own_record_of(from, record, now_ms, out) {
            if let (Some(v), Some(rank)) = (version, self.catalog.rank_of(&from)) {
                if rank > record_rank(v) && self.catalog.is_gone(&from) && rank % 2 == 1 {
                    // We hold a failure notice about the record it sent: tell
                    // it, so it refutes and asks again with a newer record.
                    self.queue_failed(from, from, rank / 2);
                    return;
                }
            }
            self.send(out, from, DiscoveryV1::NeighborReply { accepted: false });
            return;
        }
        let accepted = self.views.is_active(&from) || high || self.views.active_has_room();
        if accepted {
            self.pending.remove(&from);
            self.add_active(from, now_ms, out);
            self.queue_own(from);
        } else {
            self.views.add_passive(from, &mut self.rng);
        }
        self.send(out, from, DiscoveryV1::NeighborReply { accepted });
    }

    fn on_neighbor_reply(&mut self, from: NodeId, accepted: bool, now_ms: u64, out: &mut Vec<Out>) {
        let Some(p) = self.pending.remove(&from) else {
            if accepted && !self.views.is_active(&from) {
                // We gave up on this request: undo its acceptance, so views
                // stay symmetric.
                self.send(out, from, DiscoveryV1::Disconnect);
            }
            return;
        };
        let base = ms(self.config.sync_interval);
        if accepted {
            if p.join {
                self.joined = true;
            }
            self.fill_gap_ms = base;
            self.add_active(from, now_ms, out);
        } else {
            self.fill_gap_ms = (self.fill_gap_ms * 2).clamp(base, base * 64);
            self.views.add_passive(from, &mut self.rng);
            out.push(Out::Release(from));
        }
    }

    /// A `Join` or `Neighbor` carries the sender's own record: verify it and
    /// check it is the sender's. Returns whether the sender is in the
    /// catalog now.
    fn ingest_own_record_of(
        &mut self,
        from: NodeId,
        record: SignedRecord,
        now_ms: u64,
        out: &mut Vec<Out>,
    ) -> bool {
        match record.peek_unverified() {
            Ok(r) if r.node_id == from => {}
            _ => {
                self.stats.records_invalid += 1;
                return false;
            }
        }
        self.ingest(Some(from), record, now_ms, out);
        self.catalog.contains(&from)
    }

    fn add_active(&mut self, peer: NodeId, now_ms: u64, out: &mut Vec<Out>) {
        if self.views.is_active(&peer) || peer == self.node_id() {
            return;
        }
        if let Some(dropped) = self.views.add_active(peer, now_ms, &mut self.rng) {
            self.send(out, dropped, DiscoveryV1::Disconnect);
            out.push(Out::Release(dropped));
        }
        self.joined = true;
        out.push(Out::Keep(peer));
        // Catch up with the new neighbour straight away.
        self.send_summary(peer, out);
    }

    fn request_neighbor(&mut self, peer: NodeId, high: bool, now_ms: u64, out: &mut Vec<Out>) {
        if peer == self.node_id() || self.views.is_active(&peer) || self.pending.contains_key(&peer)
        {
            return;
        }
        let pending = Pending {
            high,
            at_ms: now_ms,
            connecting: !self.connected.contains_key(&peer),
            join: false,
        };
        if pending.connecting {
            let Some(addrs) = self.addresses(&peer) else {
                self.views.remove_passive(&peer);
                return;
            };
            self.stats.connects_requested += 1;
            out.push(Out::Connect {
                node_id: peer,
                addrs,
            });
        } else {
            let record = self.own_signed.clone();
            self.send(out, peer, DiscoveryV1::Neighbor { high, record });
        }
        self.pending.insert(peer, pending);
    }

    /// Fill the active view from the passive view (or, failing that, the
    /// catalog), a bounded number of requests at a time.
    fn repair(&mut self, now_ms: u64, out: &mut Vec<Out>) {
        let missing = self
            .views
            .active_max()
            .saturating_sub(self.views.active_len());
        let in_flight = self.pending.values().filter(|p| !p.join).count();
        if missing == 0 || in_flight >= missing.min(2) {
            return;
        }
        // Below half the view: repair at once. Otherwise top up at a
        // leisurely pace: every request costs an attested handshake, and in
        // a small or saturated network it may be refused again and again.
        let urgent = self.views.active_len() * 2 < self.views.active_max();
        if !urgent && now_ms < self.next_fill_ms {
            return;
        }
        self.next_fill_ms = now_ms + self.fill_gap_ms;
        let high = self.views.active_len() == 0;
        let pending = &self.pending;
        let suspects = &self.suspects;
        let candidate = self
            .views
            .random_passive(&mut self.rng, |id| {
                !pending.contains_key(id) && !suspects.contains_key(id)
            })
            .or_else(|| {
                let n = self.catalog.len();
                (n > 0)
                    .then(|| self.catalog.nth(self.rng.below(n)))
                    .flatten()
                    .map(|p| p.record().node_id)
                    .filter(|id| !self.views.is_active(id) && !self.pending.contains_key(id))
            });
        if let Some(peer) = candidate {
            self.request_neighbor(peer, high, now_ms, out);
        }
    }

    /// Verified addresses of `peer`: its live record, or the last record of
    /// a node declared failed.
    fn addresses(&self, peer: &NodeId) -> Option<Vec<SocketAddr>> {
        self.catalog
            .get(peer)
            .map(|p| p.record().addrs.clone())
            .or_else(|| {
                self.catalog
                    .failed()
                    .into_iter()
                    .find(|(id, _)| id == peer)
                    .map(|(_, a)| a)
            })
            .filter(|a| !a.is_empty())
    }

    fn expire_pending(&mut self, now_ms: u64, out: &mut Vec<Out>) {
        // A dial may take the connect timeout; an answer over a live
        // connection should come within a couple of probe periods.
        let dial = ms(self.config.connect_timeout);
        let answer = ms(self.config.probe_interval) * 2;
        let expired: Vec<NodeId> = self
            .pending
            .iter()
            .filter(|(_, p)| {
                now_ms.saturating_sub(p.at_ms) > if p.connecting { dial } else { answer }
            })
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if self.pending.get(&id).is_some_and(|p| p.join) && self.connected.contains_key(&id) {
                // Our join went unanswered: ask the contact again.
                if let Some(p) = self.pending.get_mut(&id) {
                    p.at_ms = now_ms;
                }
                let record = self.own_signed.clone();
                self.send(out, id, DiscoveryV1::Join { record });
                continue;
            }
            if self.pending.remove(&id).is_some_and(|p| p.connecting) {
                // The dial did not complete in time: unreachable so far.
                self.suspect(id, now_ms);
            }
            self.views.remove_passive(&id);
            out.push(Out::Release(id));
        }
        let horizon = ms(self.config.probe_interval) * 2;
        let done: Vec<u64> = self
            .relays
            .iter()
            .filter(|(_, r)| now_ms.saturating_sub(r.at_ms) > horizon)
            .map(|(s, _)| *s)
            .collect();
        for seq in done {
            if let Some(r) = self.relays.remove(&seq) {
                self.release_relay_target(r.target, out);
            }
        }
    }

    /// Anti-entropy with a random catalogued node outside the active view.
    /// The active views of a small or unlucky network can close into
    /// separate cycles, each full, that never repair; an occasional exchange
    /// with anyone merges their catalogs (and a record reaching one node of
    /// a cycle floods it).
    fn wide_sync(&mut self, out: &mut Vec<Out>) {
        let outside: Vec<NodeId> = self
            .catalog
            .iter()
            .map(|p| p.record().node_id)
            .filter(|id| !self.views.is_active(id))
            .collect();
        if outside.is_empty() {
            return;
        }
        let peer = outside[self.rng.below(outside.len())];
        self.wide_peers.push(peer);
        if self.wide_peers.len() > 4 {
            self.wide_peers.remove(0);
        }
        if self.connected.contains_key(&peer) {
            self.send_summary(peer, out);
        } else if let Some(addrs) = self.addresses(&peer) {
            self.wide.clear();
            self.wide.insert(peer);
            self.stats.connects_requested += 1;
            out.push(Out::Connect {
                node_id: peer,
                addrs,
            });
        }
    }

    /// Let go of connections discovery has no use for (a refused or late
    /// neighbour request, a peer that dropped us, one a subsystem opened):
    /// the transport closes each unless a subsystem holds it.
    fn release_unused(&mut self, now_ms: u64, out: &mut Vec<Out>) {
        let grace = ms(self.config.connect_timeout);
        let unused: Vec<NodeId> = self
            .connected
            .iter()
            .filter(|(id, since)| {
                now_ms.saturating_sub(**since) > grace
                    && !self.released.contains(*id)
                    && !self.views.is_active(id)
                    && !self.pending.contains_key(*id)
                    && !self.relays.values().any(|r| r.target == **id)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in unused {
            self.released.insert(id);
            out.push(Out::Release(id));
        }
    }

    /// An indirect probe is over: drop the connection it may have opened,
    /// unless the target is a neighbour (or about to be).
    fn release_relay_target(&mut self, target: NodeId, out: &mut Vec<Out>) {
        let still_used = self.views.is_active(&target)
            || self.pending.contains_key(&target)
            || self.relays.values().any(|r| r.target == target);
        if !still_used {
            out.push(Out::Release(target));
        }
    }

    fn integrate(&mut self, ids: &[NodeId]) {
        for id in ids {
            if *id != self.node_id() && self.catalog.contains(id) && !self.suspects.contains_key(id)
            {
                self.views.add_passive(*id, &mut self.rng);
            }
        }
    }

    // ---- failure detection ----

    fn detect(&mut self, now_ms: u64, out: &mut Vec<Out>) {
        if let Some(p) = self.probe {
            let waited = now_ms.saturating_sub(p.sent_ms);
            if !self.connected.contains_key(&p.target) {
                self.probe = None;
            } else if !p.indirect && waited >= ms(self.config.probe_timeout) {
                let helpers: Vec<NodeId> = {
                    let others: Vec<NodeId> = self
                        .views
                        .active()
                        .into_iter()
                        .filter(|id| *id != p.target)
                        .collect();
                    self.rng.sample(&others, self.config.indirect_probes)
                };
                for h in helpers {
                    self.send(
                        out,
                        h,
                        DiscoveryV1::PingReq {
                            target: p.target,
                            seq: p.seq,
                        },
                    );
                }
                self.probe = Some(Probe {
                    indirect: true,
                    ..p
                });
            } else if p.indirect && waited >= ms(self.config.probe_interval) {
                self.probe = None;
                self.suspect(p.target, now_ms);
            }
        }
        let timeout = ms(self.config.suspicion_timeout);
        let condemned: Vec<NodeId> = self
            .suspects
            .iter()
            .filter(|(_, since)| now_ms.saturating_sub(**since) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in condemned {
            self.suspects.remove(&id);
            self.declare_failed(id, now_ms, out);
        }
        // Suspicion is about catalogued nodes only (bounded by the catalog).
        self.suspects.retain(|id, _| self.catalog.contains(id));
        if now_ms >= self.next_probe_ms && self.probe.is_none() {
            self.next_probe_ms = now_ms + ms(self.config.probe_interval);
            let active = self.views.active();
            // Round robin over the active view: every peer is probed once
            // per `active_size` periods, whatever the others do (a suspect
            // is cleared by any message, so it needs no extra probes).
            let target = (!active.is_empty()).then(|| {
                self.probe_cursor = self.probe_cursor.wrapping_add(1);
                active[self.probe_cursor % active.len()]
            });
            if let Some(target) = target {
                self.seq = self.seq.wrapping_add(1);
                let seq = self.seq;
                self.probe = Some(Probe {
                    target,
                    seq,
                    sent_ms: now_ms,
                    indirect: false,
                });
                self.send(out, target, DiscoveryV1::Ping { seq });
            }
        }
    }

    /// Start suspecting `id` (no answer to probes, or unreachable), unless
    /// already suspected or not in the catalog.
    fn suspect(&mut self, id: NodeId, now_ms: u64) {
        if self.suspects.contains_key(&id) || !self.catalog.contains(&id) {
            return;
        }
        self.stats.suspicions += 1;
        tracing::debug!(peer = %id, "discovery: peer suspected");
        self.suspects.insert(id, now_ms);
    }

    fn on_ping_req(
        &mut self,
        from: NodeId,
        target: NodeId,
        seq: u64,
        now_ms: u64,
        out: &mut Vec<Out>,
    ) {
        if target == self.node_id() {
            self.send(out, from, DiscoveryV1::Ack { seq });
            return;
        }
        if self.relays.len() >= MAX_RELAYS {
            return;
        }
        // Only over a connection we already have: SWIM's indirect probe is
        // a free datagram, ours would be an attested handshake, and dialling
        // for every failed probe turns a loaded network into an overloaded one.
        if !self.connected.contains_key(&target) {
            return;
        }
        self.seq = self.seq.wrapping_add(1);
        let own_seq = self.seq;
        self.relays.insert(
            own_seq,
            Relay {
                requester: from,
                seq,
                target,
                at_ms: now_ms,
                sent: true,
            },
        );
        self.send(out, target, DiscoveryV1::Ping { seq: own_seq });
    }

    fn declare_failed(&mut self, id: NodeId, now_ms: u64, out: &mut Vec<Out>) {
        self.stats.failures_declared += 1;
        tracing::info!(peer = %id, "discovery: peer failed (no answer to direct or indirect probes)");
        if self.views.forget(&id) {
            out.push(Out::Release(id));
        }
        if let Some(version) = self.catalog.get(&id).map(|p| p.record().version) {
            self.on_failure_notice(None, id, version, now_ms, out);
        }
        self.repair(now_ms, out);
    }

    fn on_failure_notice(
        &mut self,
        from: Option<NodeId>,
        id: NodeId,
        version: u64,
        now_ms: u64,
        out: &mut Vec<Out>,
    ) {
        if let Some(f) = from {
            self.unqueue(f, &id, failure_rank(version));
        }
        if id == self.node_id() {
            if version >= self.own.version {
                // We are alive: outrank the notice, everywhere and with the
                // peer that told us.
                self.stats.refutations += 1;
                self.refresh(now_ms, out);
                if let Some(f) = from {
                    if !self.views.is_active(&f) {
                        self.queue_own(f);
                    }
                    if let Some(p) = self.pending.get(&f).copied() {
                        if !p.connecting {
                            let record = self.own_signed.clone();
                            self.send(
                                out,
                                f,
                                DiscoveryV1::Neighbor {
                                    high: p.high,
                                    record,
                                },
                            );
                        }
                    }
                }
            }
            return;
        }
        if from.is_some() && self.views.is_active(&id) && !self.suspects.contains_key(&id) {
            // We hear from it: not failed. Let it refute instead.
            if self
                .catalog
                .get(&id)
                .is_some_and(|p| p.record().version <= version)
            {
                self.queue_failed(id, id, version);
            }
            return;
        }
        let Some(events) = self.catalog.fail(&id, version, now_ms) else {
            return;
        };
        self.stats.failures_applied += 1;
        for event in events {
            out.push(Out::Event(event));
        }
        if self.views.forget(&id) {
            out.push(Out::Release(id));
        }
        for peer in self.views.active() {
            if Some(peer) != from && peer != id {
                self.queue_failed(peer, id, version);
            }
        }
    }

    // ---- dissemination ----

    /// Verify and apply one record; push it on if it changed the catalog.
    fn ingest(
        &mut self,
        from: Option<NodeId>,
        signed: SignedRecord,
        now_ms: u64,
        out: &mut Vec<Out>,
    ) {
        self.stats.records_in += 1;
        let claimed = match signed.peek_unverified() {
            Ok(r) => r,
            Err(e) => return self.invalid(from, &e),
        };
        let id = claimed.node_id;
        if let Some(f) = from {
            // The sender holds this version: whatever we queued for it about
            // this node, up to this version, is moot.
            self.unqueue(f, &id, record_rank(claimed.version));
        }
        if id == self.node_id() || !self.catalog.is_news(&id, claimed.version) {
            // Nothing new (if the claim is true; if false, ignoring is right).
            self.stats.records_duplicate += 1;
            return;
        }
        let verified = match self.verifier.verify(&signed, now_ms) {
            Ok(v) => v,
            Err(e) => return self.invalid(from, &e),
        };
        let age = now_ms.saturating_sub(verified.record().issued_at_ms());
        if age > ms(self.config.record_ttl + self.config.max_skew) {
            self.stats.records_stale += 1;
            return;
        }
        let version = verified.record().version;
        let departing = verified.record().departing;
        let events = self.catalog.apply(verified, now_ms);
        for event in events {
            if let CatalogEvent::Departed { node_id, .. } = &event {
                if self.views.forget(node_id) {
                    out.push(Out::Release(*node_id));
                }
            }
            out.push(Out::Event(event));
        }
        if self.catalog.rank_of(&id) != Some(record_rank(version)) {
            return;
        }
        self.stats.records_applied += 1;
        if let Some(f) = from {
            if f != id && self.wide_peers.contains(&f) {
                // A node outside our views knew someone we did not: our
                // views and its own may be separate components. Bridge them.
                self.bridge = Some(f);
                self.wide_gap = WIDE_SYNC_EVERY;
            }
        }
        if departing {
            self.suspects.remove(&id);
        }
        for peer in self.views.active() {
            if Some(peer) != from && peer != id {
                self.queue_record(peer, id, version, signed.clone());
            }
        }
    }

    fn invalid(&mut self, from: Option<NodeId>, e: &RecordError) {
        self.stats.records_invalid += 1;
        tracing::debug!(peer = ?from, reason = e.code(), error = %e, "discovery: dropped an invalid record");
    }

    fn refresh(&mut self, now_ms: u64, out: &mut Vec<Out>) {
        match self.reissue(now_ms, false) {
            Ok(()) => self.push_own(out),
            Err(e) => {
                tracing::warn!(error = %e, "discovery: could not re-sign our record; peers may forget us")
            }
        }
    }

    fn push_own(&mut self, _out: &mut Vec<Out>) {
        for peer in self.views.active() {
            self.queue_own(peer);
        }
    }

    fn reissue(&mut self, now_ms: u64, departing: bool) -> Result<(), RecordError> {
        let record = PeerRecord {
            node_id: self.node_id(),
            network: self.config.network,
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

    /// The catalog summary with this node's own entry counted in, so two
    /// nodes that know the same network (each other included) agree.
    fn summary(&self) -> Vec<u64> {
        let mut s = self.catalog.summary().to_vec();
        let me = self.node_id();
        let own = own_entry_hash(&me, record_rank(self.own.version));
        let b = &mut s[me.0[0] as usize];
        *b = b.wrapping_add(own);
        s
    }

    fn send_summary(&mut self, peer: NodeId, out: &mut Vec<Out>) {
        let buckets = self.summary();
        self.send(out, peer, DiscoveryV1::Summary { buckets });
    }

    fn bucket_entries(&self, b: u8) -> Vec<(NodeId, u64)> {
        let mut e = self.catalog.bucket_entries(b);
        let me = self.node_id();
        if me.0[0] == b {
            e.push((me, record_rank(self.own.version)));
        }
        e
    }

    fn on_summary(&mut self, from: NodeId, theirs: &[u64], out: &mut Vec<Out>) {
        if theirs.len() != BUCKETS {
            return;
        }
        let ours = self.summary();
        let differ: Vec<usize> = (0..BUCKETS).filter(|i| ours[*i] != theirs[*i]).collect();
        if differ.is_empty() {
            return;
        }
        // Start at a random differing bucket so that repeated exchanges
        // cover every bucket even when one answer cannot hold them all.
        let start = self.rng.below(differ.len());
        let mut buckets = Vec::new();
        let mut entries = Vec::new();
        for k in 0..differ.len() {
            let b = differ[(start + k) % differ.len()] as u8;
            let e = self.bucket_entries(b);
            if !buckets.is_empty() && entries.len() + e.len() > MAX_BUCKET_ENTRIES {
                break;
            }
            if e.len() > MAX_BUCKET_ENTRIES {
                // One bucket larger than an answer (a catalog far beyond
                // 300,000 peers): send what fits; the rest repairs by push.
                entries.extend(e.into_iter().take(MAX_BUCKET_ENTRIES));
                buckets.push(b);
                break;
            }
            entries.extend(e);
            buckets.push(b);
        }
        self.send(out, from, DiscoveryV1::Buckets { buckets, entries });
    }

    fn on_buckets(
        &mut self,
        from: NodeId,
        buckets: &[u8],
        entries: &[(NodeId, u64)],
        now_ms: u64,
        out: &mut Vec<Out>,
    ) {
        let theirs: HashMap<NodeId, u64> = entries
            .iter()
            .filter(|(id, _)| buckets.contains(&id.0[0]))
            .copied()
            .collect();
        let me = self.node_id();
        // What they lack or hold older: push.
        for &b in buckets {
            for (id, rank) in self.bucket_entries(b) {
                if theirs.get(&id).is_none_or(|t| *t < rank) {
                    if id == me {
                        self.queue_own(from);
                    } else {
                        self.queue_repair(from, id);
                    }
                }
            }
        }
        // What we lack or hold older: want. A failure notice about us that
        // outranks our record: refute.
        let mut want = Vec::new();
        for (id, rank) in theirs {
            if id == me {
                if rank > record_rank(self.own.version) {
                    self.on_failure_notice(Some(from), me, rank / 2, now_ms, out);
                }
                continue;
            }
            if self.catalog.rank_of(&id).is_none_or(|ours| ours < rank) {
                want.push(id);
            }
        }
        want.truncate(MAX_WANT);
        if !want.is_empty() {
            want.sort_unstable();
            self.send(out, from, DiscoveryV1::Want { node_ids: want });
        }
    }

    fn queue_record(&mut self, to: NodeId, owner: NodeId, version: u64, record: SignedRecord) {
        let q = self.push.entry(to).or_default();
        match q.records.get(&owner) {
            Some((v, _)) if *v >= version => {}
            _ => {
                q.records.insert(owner, (version, record));
            }
        }
    }

    fn queue_own(&mut self, to: NodeId) {
        let (me, version, own) = (self.node_id(), self.own.version, self.own_signed.clone());
        self.queue_record(to, me, version, own);
    }

    fn queue_failed(&mut self, to: NodeId, id: NodeId, version: u64) {
        let v = self
            .push
            .entry(to)
            .or_default()
            .failed
            .entry(id)
            .or_insert(version);
        *v = (*v).max(version);
    }

    /// Queue what the catalog holds about `id` (a record, a departure or a
    /// failure notice) for `to`.
    fn queue_repair(&mut self, to: NodeId, id: NodeId) {
        match self.catalog.repair(&id) {
            Some(Repair::Record(s)) => {
                let version = self.catalog.version_of(&id).unwrap_or(0);
                self.queue_record(to, id, version, s);
            }
            Some(Repair::Failed(id, v)) => self.queue_failed(to, id, v),
            None => {}
        }
    }

    /// `peer` holds what we know about `id` up to `rank`: drop queued pushes
    /// it would gain nothing from.
    fn unqueue(&mut self, peer: NodeId, id: &NodeId, rank: u64) {
        let Some(q) = self.push.get_mut(&peer) else {
            return;
        };
        if q.records
            .get(id)
            .is_some_and(|(v, _)| record_rank(*v) <= rank)
        {
            q.records.remove(id);
        }
        if q.failed.get(id).is_some_and(|v| failure_rank(*v) <= rank) {
            q.failed.remove(id);
        }
    }

    /// An input queued pushes: the next tick is due now.
    fn defer(&mut self, now_ms: u64) {
        if self.push.is_empty() {
            self.push_since = None;
        } else if self.push_since.is_none() {
            self.push_since = Some(now_ms);
        }
    }

    /// Send the queued pushes, cut into messages within the count and byte
    /// bounds. Pushes for a peer no longer connected are dropped (sending
    /// would open a connection; anti-entropy repairs what it missed).
    fn flush(&mut self, out: &mut Vec<Out>) {
        self.push_since = None;
        let budget = self.config.max_message_bytes - 64;
        for (to, q) in std::mem::take(&mut self.push) {
            if !self.connected.contains_key(&to) {
                continue;
            }
            let mut failed: Vec<(NodeId, u64)> = q.failed.into_iter().collect();
            let mut batch: Vec<SignedRecord> = Vec::new();
            let mut size = 0;
            for (_, (_, record)) in q.records {
                let len = record.encoded_len();
                if !batch.is_empty() && (batch.len() == MAX_RECORDS_PER_MSG || size + len > budget)
                {
                    self.stats.records_out += batch.len() as u64;
                    let records = std::mem::take(&mut batch);
                    self.send(
                        out,
                        to,
                        DiscoveryV1::Push {
                            records,
                            failed: Vec::new(),
                        },
                    );
                    size = 0;
                }
                size += len;
                batch.push(record);
            }
            while !batch.is_empty() || !failed.is_empty() {
                let f: Vec<(NodeId, u64)> = failed
                    .drain(..failed.len().min(MAX_FAILURES_PER_MSG))
                    .collect();
                self.stats.records_out += batch.len() as u64;
                let records = std::mem::take(&mut batch);
                self.send(out, to, DiscoveryV1::Push { records, failed: f });
            }
        }
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
}

/// The summary hash of one entry (the catalog's, for the local node).
fn own_entry_hash(id: &NodeId, rank: u64) -> u64 {
    super::catalog::entry_hash(id, rank)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::testkit::{identities, verifier, NOW_MS};

    fn node(i: usize) -> Gossip {
        let id = identities(i + 1)[i].clone();
        let local = LocalInfo {
            addrs: vec![SocketAddr::from(([127, 0, 0, 1], 4000 + i as u16))],
            ticket: crate::discovery::testkit::ticket(&id),
            ..LocalInfo::default()
        };
        Gossip::new(
            id,
            local,
            GossipConfig::new(crate::discovery::testkit::network()),
            verifier(),
            NOW_MS,
        )
        .expect("gossip")
    }

    /// `p` connects to `a` and asks to be its (high-priority) neighbour.
    fn neighbour(a: &mut Gossip, p: &Gossip) -> Vec<Out> {
        a.on_connected(p.node_id(), NOW_MS);
        a.on_message(
            p.node_id(),
            DiscoveryMsg::V1(DiscoveryV1::Neighbor {
                high: true,
                record: p.own_signed().clone(),
            }),
            NOW_MS,
        )
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
        let n = node(0);
        let msgs = [
            DiscoveryV1::Join {
                record: n.own_signed().clone(),
            },
            DiscoveryV1::Summary {
                buckets: vec![7; BUCKETS],
            },
            DiscoveryV1::Buckets {
                buckets: vec![1, 2],
                entries: vec![(n.node_id(), 9)],
            },
            DiscoveryV1::PingReq {
                target: n.node_id(),
                seq: 3,
            },
            DiscoveryV1::Disconnect,
        ];
        for m in msgs {
            let msg = DiscoveryMsg::V1(m);
            let bytes = msg.encode().expect("encodes");
            assert_eq!(DiscoveryMsg::decode(&bytes).expect("decodes"), msg);
        }
        let big = DiscoveryMsg::V1(DiscoveryV1::Want {
            node_ids: vec![n.node_id(); MAX_WANT + 1],
        });
        let bytes = big.encode().expect("encodes");
        assert!(matches!(
            DiscoveryMsg::decode(&bytes),
            Err(MsgError::TooMany { .. })
        ));
        let mut bytes = DiscoveryMsg::V1(DiscoveryV1::Disconnect)
            .encode()
            .expect("encodes");
        bytes.push(0);
        assert!(matches!(
            DiscoveryMsg::decode(&bytes),
            Err(MsgError::Malformed(_))
        ));
    }

    #[test]
    fn a_full_summary_answer_fits_a_default_frame() {
        let entries = vec![(NodeId([0xff; 32]), u64::MAX); MAX_BUCKET_ENTRIES];
        let msg = DiscoveryMsg::V1(DiscoveryV1::Buckets {
            buckets: (0..=255).collect(),
            entries,
        });
        let len = msg.encode().expect("encodes").len();
        assert!(len < 64 * 1024, "{len}");
    }

    #[test]
    fn the_first_connection_is_the_contact_and_a_join_is_forwarded() {
        let mut a = node(0);
        let mut b = node(1);
        let c = node(2);
        // b already has c in its active view.
        b.on_connected(c.node_id(), NOW_MS);
        let out = b.on_message(
            c.node_id(),
            DiscoveryMsg::V1(DiscoveryV1::Neighbor {
                high: true,
                record: c.own_signed().clone(),
            }),
            NOW_MS,
        );
        assert!(b.active().contains(&c.node_id()), "{out:?}");
        // a's first connection: b. a asks to join.
        let out = a.on_connected(b.node_id(), NOW_MS);
        let (to, join) = sends(&out).remove(0);
        assert_eq!(to, b.node_id());
        assert!(matches!(join, DiscoveryV1::Join { .. }));
        b.on_connected(a.node_id(), NOW_MS);
        let out = b.on_message(a.node_id(), DiscoveryMsg::V1(join), NOW_MS);
        assert!(b.active().contains(&a.node_id()));
        assert!(
            b.catalog().contains(&a.node_id()),
            "the joiner's record verified"
        );
        let s = sends(&out);
        assert!(s.iter().any(
            |(to, m)| *to == a.node_id() && *m == DiscoveryV1::NeighborReply { accepted: true }
        ));
        assert!(
            s.iter()
                .any(|(to, m)| *to == c.node_id() && matches!(m, DiscoveryV1::ForwardJoin { .. })),
            "the walk starts at b's other active peers"
        );
        let out = a.on_message(
            b.node_id(),
            DiscoveryMsg::V1(DiscoveryV1::NeighborReply { accepted: true }),
            NOW_MS,
        );
        assert!(a.active().contains(&b.node_id()));
        assert!(out.contains(&Out::Keep(b.node_id())));
    }

    #[test]
    fn a_record_from_someone_else_in_a_join_is_refused() {
        let mut b = node(1);
        let a = node(0);
        let c = node(2);
        b.on_connected(a.node_id(), NOW_MS);
        // a presents c's record as its own.
        let out = b.on_message(
            a.node_id(),
            DiscoveryMsg::V1(DiscoveryV1::Join {
                record: c.own_signed().clone(),
            }),
            NOW_MS,
        );
        assert!(out.is_empty(), "{out:?}");
        assert!(!b.active().contains(&a.node_id()));
        assert_eq!(b.stats().records_invalid, 1);
    }

    #[test]
    fn a_silent_active_peer_is_probed_indirectly_suspected_then_failed() {
        let mut a = node(0);
        let peers: Vec<Gossip> = (1..4).map(node).collect();
        for p in &peers {
            neighbour(&mut a, p);
        }
        assert_eq!(a.active().len(), 3);
        let cfg = a.config().clone();
        // Find the first probe and never answer it.
        let mut now = NOW_MS;
        let (target, seq) = loop {
            now += 50;
            let out = a.on_tick(now);
            if let Some((to, DiscoveryV1::Ping { seq })) = sends(&out)
                .into_iter()
                .find(|(_, m)| matches!(m, DiscoveryV1::Ping { .. }))
            {
                break (to, seq);
            }
        };
        let out = a.on_tick(now + ms(cfg.probe_timeout));
        let reqs: Vec<_> = sends(&out)
            .into_iter()
            .filter(|(_, m)| matches!(m, DiscoveryV1::PingReq { target: t, seq: s } if *t == target && *s == seq))
            .collect();
        assert_eq!(reqs.len(), 2, "{out:?}");
        a.on_tick(now + ms(cfg.probe_interval));
        assert!(a.suspects().any(|s| *s == target));
        // Time passes in small steps (a jump would look like this node
        // starving, which restarts suspicions).
        let mut out = Vec::new();
        let end = now + ms(cfg.probe_interval) + ms(cfg.suspicion_timeout);
        let mut t = now + ms(cfg.probe_interval);
        while t < end {
            t = (t + 200).min(end);
            out.extend(a.on_tick(t));
        }
        assert!(!a.active().contains(&target));
        assert!(out.contains(&Out::Release(target)));
        assert!(
            out.iter().any(|o| matches!(o, Out::Event(CatalogEvent::Departed { node_id, reason: crate::discovery::DepartReason::Failed }) if *node_id == target)),
            "{out:?}"
        );
        let notices: Vec<_> = sends(&out)
            .into_iter()
            .filter(|(_, m)| matches!(m, DiscoveryV1::Push { failed, .. } if failed.iter().any(|(id, _)| *id == target)))
            .collect();
        assert_eq!(
            notices.len(),
            2,
            "the notice goes to the other active peers"
        );
        assert_eq!(a.stats().failures_declared, 1);
    }

    #[test]
    fn a_late_ack_clears_a_suspicion() {
        let mut a = node(0);
        let p = node(1);
        neighbour(&mut a, &p);
        let cfg = a.config().clone();
        let mut now = NOW_MS;
        let seq = loop {
            now += 50;
            if let Some((_, DiscoveryV1::Ping { seq })) = sends(&a.on_tick(now))
                .into_iter()
                .find(|(_, m)| matches!(m, DiscoveryV1::Ping { .. }))
            {
                break seq;
            }
        };
        a.on_tick(now + ms(cfg.probe_timeout));
        a.on_tick(now + ms(cfg.probe_interval));
        assert!(
            a.suspects().any(|s| *s == p.node_id()),
            "no helper, no ack: suspected"
        );
        // The slow peer answers before the suspicion times out.
        a.on_message(
            p.node_id(),
            DiscoveryMsg::V1(DiscoveryV1::Ack { seq }),
            now + ms(cfg.probe_interval) + 100,
        );
        assert!(a.suspects().next().is_none());
        let end = now + ms(cfg.probe_interval) + ms(cfg.suspicion_timeout) + 1;
        let mut t = now + ms(cfg.probe_interval) + 100;
        while t < end {
            t = (t + 200).min(end);
            // It keeps answering, late.
            a.on_message(
                p.node_id(),
                DiscoveryMsg::V1(DiscoveryV1::Ack { seq: 0 }),
                t,
            );
            a.on_tick(t);
        }
        assert!(
            a.active().contains(&p.node_id()),
            "a slow peer is not removed"
        );
        assert_eq!(a.stats().failures_declared, 0);
    }

    #[test]
    fn a_node_whose_own_timers_ran_late_restarts_its_suspicions() {
        let mut a = node(0);
        let p = node(1);
        neighbour(&mut a, &p);
        let cfg = a.config().clone();
        let mut t = NOW_MS;
        while a.suspects().next().is_none() {
            t += 100;
            a.on_tick(t);
            assert!(t < NOW_MS + 10_000, "never suspected");
        }
        // The node itself stalls longer than the suspicion timeout.
        a.on_tick(t + ms(cfg.suspicion_timeout) + 10);
        assert_eq!(
            a.stats().failures_declared,
            0,
            "a stalled node condemns nobody"
        );
        assert!(a.active().contains(&p.node_id()));
        assert_eq!(a.stats().late_ticks, 1);
    }

    #[test]
    fn a_failure_notice_about_oneself_is_refuted_with_a_newer_record() {
        let mut a = node(0);
        let p = node(1);
        neighbour(&mut a, &p);
        let v = a.own_record().version;
        let mut out = a.on_message(
            p.node_id(),
            DiscoveryMsg::V1(DiscoveryV1::Push {
                records: vec![],
                failed: vec![(a.node_id(), v)],
            }),
            NOW_MS + 10,
        );
        out.extend(a.on_tick(NOW_MS + 10));
        assert!(a.own_record().version > v);
        assert_eq!(a.stats().refutations, 1);
        assert!(sends(&out).iter().any(|(to, m)| *to == p.node_id()
            && matches!(m, DiscoveryV1::Push { records, .. } if records.contains(a.own_signed()))));
    }

    #[test]
    fn pushes_wait_for_the_tick_one_message_per_peer_without_moot_records() {
        let mut a = node(0);
        let peers: Vec<Gossip> = (1..4).map(node).collect();
        for p in &peers {
            neighbour(&mut a, p);
        }
        a.on_tick(NOW_MS);
        let (p1, p2, p3) = (peers[0].node_id(), peers[1].node_id(), peers[2].node_id());
        let mut q1 = node(4);
        let q2 = node(5);
        let push = |records: Vec<SignedRecord>| {
            DiscoveryMsg::V1(DiscoveryV1::Push {
                records,
                failed: vec![],
            })
        };
        let now = NOW_MS + 20;
        let mut out = a.on_message(p1, push(vec![q1.own_signed().clone()]), now);
        out.extend(a.on_message(p2, push(vec![q2.own_signed().clone()]), now));
        // p3 knew q1 already: that version is not sent back to it.
        out.extend(a.on_message(p3, push(vec![q1.own_signed().clone()]), now));
        // q1 re-signs before the tick: only the newer version goes out.
        let local = LocalInfo {
            software: "newer".into(),
            ticket: q1.own_record().ticket.clone(),
            ..LocalInfo::default()
        };
        q1.set_local(local, NOW_MS + 10).expect("re-sign");
        out.extend(a.on_message(p1, push(vec![q1.own_signed().clone()]), now));
        assert!(
            !sends(&out)
                .iter()
                .any(|(_, m)| matches!(m, DiscoveryV1::Push { .. })),
            "{out:?}"
        );
        assert!(a.poll_timeout().is_some_and(|t| t <= now), "a tick is due");
        let pushes: BTreeMap<NodeId, Vec<SignedRecord>> = sends(&a.on_tick(now))
            .into_iter()
            .filter_map(|(to, m)| match m {
                DiscoveryV1::Push { records, .. } => Some((to, records)),
                _ => None,
            })
            .fold(BTreeMap::new(), |mut acc, (to, records)| {
                assert!(!acc.contains_key(&to), "one push per peer");
                acc.insert(to, records);
                acc
            });
        assert_eq!(pushes.get(&p1), Some(&vec![q2.own_signed().clone()]));
        assert_eq!(pushes.get(&p2), Some(&vec![q1.own_signed().clone()]));
        // p3 had the old version of q1 only.
        let to_p3 = pushes.get(&p3).expect("a push to p3");
        assert_eq!(to_p3.len(), 2, "{to_p3:?}");
        assert!(to_p3.contains(q1.own_signed()) && to_p3.contains(q2.own_signed()));
    }

    #[test]
    fn a_full_active_view_drops_a_random_peer_with_a_disconnect() {
        let mut a = node(0);
        let size = a.config().active_size;
        let peers: Vec<Gossip> = (1..=size + 1).map(node).collect();
        let mut last = Vec::new();
        for p in &peers {
            a.on_connected(p.node_id(), NOW_MS);
            last = a.on_message(
                p.node_id(),
                DiscoveryMsg::V1(DiscoveryV1::Neighbor {
                    high: true,
                    record: p.own_signed().clone(),
                }),
                NOW_MS,
            );
        }
        assert_eq!(a.active().len(), size);
        let dropped = sends(&last)
            .into_iter()
            .find(|(_, m)| *m == DiscoveryV1::Disconnect)
            .map(|(to, _)| to)
            .expect("a disconnect");
        assert!(a.passive().contains(&dropped));
        assert!(last.contains(&Out::Release(dropped)));
    }
}
