//! The catalog: the verified peers a node knows, with events when the set
//! changes, and the bucketed summary anti-entropy compares.
//!
//! Only [`VerifiedRecord`]s go in, so nothing unverified is ever stored. A
//! node is either *live* (its latest record) or *gone* (a tombstone: the
//! version that ended it and, for an announced departure, the signed record),
//! never both. Tombstones keep an older record still travelling through the
//! network from bringing a gone node back, and let the departure spread by
//! anti-entropy. Neither set ever contains the local node. Times are Unix
//! milliseconds, supplied by the caller.
//!
//! # Ranks
//!
//! Every entry has a *rank* that orders what nodes know about a peer:
//! `2 × version` for a record (live or a signed departure) and
//! `2 × version + 1` for a failure notice about that version. So a failure
//! notice beats the record it condemns and loses to any newer record, which is
//! how a wrongly suspected node refutes it: it signs a higher version.
//!
//! # Summary
//!
//! Entries fall into [`BUCKETS`] buckets by the first byte of the node id. A
//! bucket's hash is the wrapping sum of `h(node id, rank)` over its entries,
//! kept up to date on every change, so a [`Catalog::summary`] costs nothing
//! and has the same size (2 KiB) at 10 or 100,000 peers. Two nodes compare
//! summaries and exchange only the entries of buckets that differ.
//!
//! # Bounds
//!
//! At most `max_entries` live peers and `max_entries / 2` tombstones. When
//! full, a new record evicts first a record whose ticket or time to live ran
//! out, then the record issued longest ago: an admitted peer cannot invent
//! identities (every record carries its owner's ticket), so eviction only
//! ever trades one verified node for a fresher one.

use std::collections::BTreeMap;
use std::sync::Arc;

use tessella_attestation::identity::NodeId;

use super::record::{PeerRecord, SignedRecord, VerifiedRecord};

/// Number of summary buckets.
pub const BUCKETS: usize = 256;

/// A change in the set of known peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogEvent {
    /// A node not known before.
    Discovered(PeerRecord),
    /// A known node published a newer record.
    Updated(PeerRecord),
    /// A node left the catalog.
    Departed {
        /// The node.
        node_id: NodeId,
        /// Why.
        reason: DepartReason,
    },
}

/// Why a peer left the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepartReason {
    /// It announced its departure with a signed record.
    Announced,
    /// Its record or its ticket expired before the owner renewed it.
    Expired,
    /// A failure detector found it unresponsive, and it did not refute.
    Failed,
    /// Evicted to make room for a fresher record in a full catalog.
    Evicted,
}

impl CatalogEvent {
    /// The node the event is about.
    pub fn node_id(&self) -> NodeId {
        match self {
            CatalogEvent::Discovered(r) | CatalogEvent::Updated(r) => r.node_id,
            CatalogEvent::Departed { node_id, .. } => *node_id,
        }
    }
}

/// A live peer.
#[derive(Debug, Clone)]
pub struct Peer {
    verified: Arc<VerifiedRecord>,
    discovered_ms: u64,
}

impl Peer {
    /// Its latest verified record.
    pub fn record(&self) -> &PeerRecord {
        self.verified.record()
    }

    /// That record as signed, for relaying.
    pub fn signed(&self) -> &SignedRecord {
        self.verified.signed()
    }

    /// The verified record, shared.
    pub fn verified(&self) -> &Arc<VerifiedRecord> {
        &self.verified
    }

    /// When the record was signed, Unix ms.
    pub fn issued_ms(&self) -> u64 {
        self.record().issued_at_ms()
    }

    /// When this node first entered the catalog, Unix ms.
    pub fn discovered_ms(&self) -> u64 {
        self.discovered_ms
    }

    fn rank(&self) -> u64 {
        record_rank(self.record().version)
    }
}

/// What ended a peer.
#[derive(Debug, Clone)]
pub enum Gone {
    /// Its own signed departure.
    Departed(Arc<VerifiedRecord>),
    /// A failure notice about this version of its record (and the record,
    /// when it was held: its addresses let the node try it again later).
    Failed(Option<Arc<VerifiedRecord>>),
}

#[derive(Debug, Clone)]
struct Tombstone {
    version: u64,
    gone: Gone,
    stored_ms: u64,
}

impl Tombstone {
    fn rank(&self) -> u64 {
        match self.gone {
            Gone::Departed(_) => record_rank(self.version),
            Gone::Failed(_) => failure_rank(self.version),
        }
    }
}

/// The rank of a record with `version`.
pub fn record_rank(version: u64) -> u64 {
    version.saturating_mul(2)
}

/// The rank of a failure notice about `version`.
pub fn failure_rank(version: u64) -> u64 {
    version.saturating_mul(2).saturating_add(1)
}

/// What the catalog hands out to repair a peer that is behind.
#[derive(Debug, Clone)]
pub enum Repair {
    /// A signed record (live, or a departure).
    Record(SignedRecord),
    /// A failure notice: `(node id, version)`.
    Failed(NodeId, u64),
}

/// The verified peers this node knows; see the module docs.
#[derive(Debug, Clone)]
pub struct Catalog {
    local: NodeId,
    max_entries: usize,
    peers: BTreeMap<NodeId, Peer>,
    gone: BTreeMap<NodeId, Tombstone>,
    buckets: Box<[u64; BUCKETS]>,
    evicted: u64,
}

fn bucket_of(id: &NodeId) -> usize {
    id.0[0] as usize
}

pub(crate) fn entry_hash(id: &NodeId, rank: u64) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&id.0);
    h.update(&rank.to_le_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(b)
}

impl Catalog {
    /// An empty catalog for the node `local`, holding at most `max_entries`
    /// live peers.
    pub fn new(local: NodeId, max_entries: usize) -> Catalog {
        Catalog {
            local,
            max_entries: max_entries.max(1),
            peers: BTreeMap::new(),
            gone: BTreeMap::new(),
            buckets: Box::new([0; BUCKETS]),
            evicted: 0,
        }
    }

    /// The local node (never in the catalog).
    pub fn local(&self) -> NodeId {
        self.local
    }

    /// The capacity in live peers.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// How many live records were evicted to make room.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    fn max_tombstones(&self) -> usize {
        (self.max_entries / 2).max(1)
    }

    fn count(&mut self, id: &NodeId, rank: u64, add: bool) {
        let h = entry_hash(id, rank);
        let b = &mut self.buckets[bucket_of(id)];
        *b = if add {
            b.wrapping_add(h)
        } else {
            b.wrapping_sub(h)
        };
    }

    /// The rank of what this catalog holds about `node_id`.
    pub fn rank_of(&self, node_id: &NodeId) -> Option<u64> {
        self.peers
            .get(node_id)
            .map(Peer::rank)
            .or_else(|| self.gone.get(node_id).map(Tombstone::rank))
    }

    /// The highest record version known for `node_id`, live or gone.
    pub fn version_of(&self, node_id: &NodeId) -> Option<u64> {
        self.peers
            .get(node_id)
            .map(|p| p.record().version)
            .or_else(|| self.gone.get(node_id).map(|t| t.version))
    }

    /// Whether a record of `node_id` at `version` would change anything.
    pub fn is_news(&self, node_id: &NodeId, version: u64) -> bool {
        *node_id != self.local
            && self
                .rank_of(node_id)
                .is_none_or(|r| r < record_rank(version))
    }

    /// Take in a verified record at `now_ms`. A new node gives
    /// [`CatalogEvent::Discovered`] (and, when the catalog is full, evicts
    /// the stalest record: [`Catalog::apply`] returns that departure first); a
    /// newer record of a known node gives [`CatalogEvent::Updated`], or
    /// [`CatalogEvent::Departed`] when it is a departure. Anything not above
    /// what is held changes nothing. A departure of a node not live here is
    /// kept as a tombstone without an event.
    pub fn apply(&mut self, verified: Arc<VerifiedRecord>, now_ms: u64) -> Vec<CatalogEvent> {
        let record = verified.record();
        let id = record.node_id;
        let version = record.version;
        if !self.is_news(&id, version) {
            return Vec::new();
        }
        let departing = record.departing;
        let mut events = Vec::new();
        self.unbury(&id);
        if let Some(old) = self.peers.remove(&id) {
            self.count(&id, old.rank(), false);
            if departing {
                self.bury(id, version, Gone::Departed(verified), now_ms);
                events.push(CatalogEvent::Departed {
                    node_id: id,
                    reason: DepartReason::Announced,
                });
                return events;
            }
            let record = verified.record().clone();
            self.count(&id, record_rank(version), true);
            self.peers.insert(
                id,
                Peer {
                    verified,
                    discovered_ms: old.discovered_ms,
                },
            );
            events.push(CatalogEvent::Updated(record));
            return events;
        }
        if departing {
            self.bury(id, version, Gone::Departed(verified), now_ms);
            return events;
        }
        if self.peers.len() >= self.max_entries {
            let Some(victim) = self.stalest() else {
                return events;
            };
            if self.peers[&victim].issued_ms() > verified.record().issued_at_ms() {
                // The newcomer is staler than everything held.
                self.evicted += 1;
                return events;
            }
            self.remove_live(&victim);
            self.evicted += 1;
            events.push(CatalogEvent::Departed {
                node_id: victim,
                reason: DepartReason::Evicted,
            });
        }
        let record = verified.record().clone();
        self.count(&id, record_rank(version), true);
        self.peers.insert(
            id,
            Peer {
                verified,
                discovered_ms: now_ms,
            },
        );
        events.push(CatalogEvent::Discovered(record));
        events
    }

    /// The live record issued longest ago.
    fn stalest(&self) -> Option<NodeId> {
        self.peers
            .iter()
            .min_by_key(|(_, p)| p.issued_ms())
            .map(|(id, _)| *id)
    }

    fn remove_live(&mut self, id: &NodeId) -> Option<Peer> {
        let p = self.peers.remove(id)?;
        self.count(id, p.rank(), false);
        Some(p)
    }

    fn unbury(&mut self, id: &NodeId) {
        if let Some(t) = self.gone.remove(id) {
            self.count(id, t.rank(), false);
        }
    }

    fn bury(&mut self, id: NodeId, version: u64, gone: Gone, now_ms: u64) {
        self.unbury(&id);
        if self.gone.len() >= self.max_tombstones() {
            // Tombstones are a courtesy, live peers are not: drop the oldest.
            if let Some(oldest) = self
                .gone
                .iter()
                .min_by_key(|(_, t)| t.stored_ms)
                .map(|(id, _)| *id)
            {
                self.unbury(&oldest);
            }
        }
        let t = Tombstone {
            version,
            gone,
            stored_ms: now_ms,
        };
        self.count(&id, t.rank(), true);
        self.gone.insert(id, t);
    }

    /// A failure notice: `node_id`'s record at `version` belongs to a node
    /// found unresponsive. Removes it if that is the record held (an event),
    /// and keeps a tombstone so the condemned version is not taken back.
    /// Returns `None` when the notice is not news (a newer record, or an
    /// equal notice, is held).
    pub fn fail(
        &mut self,
        node_id: &NodeId,
        version: u64,
        now_ms: u64,
    ) -> Option<Vec<CatalogEvent>> {
        if *node_id == self.local
            || self
                .rank_of(node_id)
                .is_some_and(|r| r >= failure_rank(version))
        {
            return None;
        }
        let mut events = Vec::new();
        let held = self.remove_live(node_id).map(|p| {
            events.push(CatalogEvent::Departed {
                node_id: *node_id,
                reason: DepartReason::Failed,
            });
            p.verified
        });
        let old = self.gone.get(node_id).and_then(|t| match &t.gone {
            Gone::Failed(r) => r.clone(),
            Gone::Departed(_) => None,
        });
        self.bury(*node_id, version, Gone::Failed(held.or(old)), now_ms);
        Some(events)
    }

    /// Remove records issued more than `ttl_ms` ago or whose ticket expired
    /// by `now_ms` (one [`DepartReason::Expired`] each), and tombstones older
    /// than twice `ttl_ms`. `ticket_expires` reads a record's ticket expiry
    /// (Unix seconds).
    pub fn purge(
        &mut self,
        now_ms: u64,
        ttl_ms: u64,
        ticket_expires: impl Fn(&VerifiedRecord) -> u64,
    ) -> Vec<CatalogEvent> {
        let now_s = now_ms / 1000;
        let stale: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                now_ms.saturating_sub(p.issued_ms()) > ttl_ms || ticket_expires(&p.verified) < now_s
            })
            .map(|(id, _)| *id)
            .collect();
        let old: Vec<NodeId> = self
            .gone
            .iter()
            .filter(|(_, t)| now_ms.saturating_sub(t.stored_ms) > ttl_ms.saturating_mul(2))
            .map(|(id, _)| *id)
            .collect();
        for id in old {
            self.unbury(&id);
        }
        stale
            .into_iter()
            .map(|id| {
                self.remove_live(&id);
                CatalogEvent::Departed {
                    node_id: id,
                    reason: DepartReason::Expired,
                }
            })
            .collect()
    }

    /// The bucket hashes (see the module docs).
    pub fn summary(&self) -> &[u64; BUCKETS] {
        &self.buckets
    }

    /// `(node id, rank)` of every entry, live or gone, in bucket `b`.
    pub fn bucket_entries(&self, b: u8) -> Vec<(NodeId, u64)> {
        let lo = NodeId(bucket_start(b));
        let live = self
            .peers
            .range(lo..)
            .take_while(|(id, _)| id.0[0] == b)
            .map(|(id, p)| (*id, p.rank()));
        let gone = self
            .gone
            .range(lo..)
            .take_while(|(id, _)| id.0[0] == b)
            .map(|(id, t)| (*id, t.rank()));
        live.chain(gone).collect()
    }

    /// What to send a peer that holds less than we do about `node_id`.
    pub fn repair(&self, node_id: &NodeId) -> Option<Repair> {
        if let Some(p) = self.peers.get(node_id) {
            return Some(Repair::Record(p.signed().clone()));
        }
        let t = self.gone.get(node_id)?;
        Some(match &t.gone {
            Gone::Departed(v) => Repair::Record(v.signed().clone()),
            Gone::Failed(_) => Repair::Failed(*node_id, t.version),
        })
    }

    /// Nodes declared failed whose addresses are known, for reconnection
    /// attempts (a healed partition comes back together this way).
    pub fn failed(&self) -> Vec<(NodeId, Vec<std::net::SocketAddr>)> {
        self.gone
            .iter()
            .filter_map(|(id, t)| match &t.gone {
                Gone::Failed(Some(r)) if !r.record().addrs.is_empty() => {
                    Some((*id, r.record().addrs.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Whether `node_id` is gone (departed or failed) and has not come back.
    pub fn is_gone(&self, node_id: &NodeId) -> bool {
        self.gone.contains_key(node_id)
    }

    /// A live peer.
    pub fn get(&self, node_id: &NodeId) -> Option<&Peer> {
        self.peers.get(node_id)
    }

    /// Whether `node_id` is a live peer.
    pub fn contains(&self, node_id: &NodeId) -> bool {
        self.peers.contains_key(node_id)
    }

    /// Number of live peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Number of tombstones.
    pub fn gone_len(&self) -> usize {
        self.gone.len()
    }

    /// Whether there are no live peers.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Live peers, ordered by node id.
    pub fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    /// The `i`-th live peer in node-id order (for uniform random picks).
    pub fn nth(&self, i: usize) -> Option<&Peer> {
        self.peers.values().nth(i)
    }
}

fn bucket_start(b: u8) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[0] = b;
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::testkit::{identities, record_for, verified, NOW, NOW_MS};

    fn v(i: usize, version: u64) -> Arc<VerifiedRecord> {
        let id = &identities(i + 1)[i];
        let mut r = record_for(id, version, NOW);
        r.version = version;
        Arc::new(verified(&r, id))
    }

    fn departing(i: usize, version: u64) -> Arc<VerifiedRecord> {
        let id = &identities(i + 1)[i];
        let mut r = record_for(id, version, NOW);
        r.departing = true;
        r.addrs.clear();
        Arc::new(verified(&r, id))
    }

    fn local() -> NodeId {
        NodeId([0xee; 32])
    }

    #[test]
    fn discovered_updated_departed_and_stale_versions_ignored() {
        let mut c = Catalog::new(local(), 8);
        let a = v(0, 10);
        let id = a.node_id();
        assert!(matches!(
            c.apply(a, NOW_MS)[..],
            [CatalogEvent::Discovered(_)]
        ));
        assert!(c.apply(v(0, 10), NOW_MS).is_empty(), "same version");
        assert!(c.apply(v(0, 9), NOW_MS).is_empty(), "older version");
        assert!(matches!(
            c.apply(v(0, 11), NOW_MS)[..],
            [CatalogEvent::Updated(_)]
        ));
        assert_eq!(
            c.apply(departing(0, 12), NOW_MS),
            vec![CatalogEvent::Departed {
                node_id: id,
                reason: DepartReason::Announced
            }]
        );
        assert!(c.is_gone(&id));
        assert!(c.apply(v(0, 11), NOW_MS).is_empty(), "the tombstone holds");
        assert!(matches!(
            c.apply(v(0, 13), NOW_MS)[..],
            [CatalogEvent::Discovered(_)]
        ));
    }

    #[test]
    fn a_failure_notice_beats_its_version_and_loses_to_a_newer_one() {
        let mut c = Catalog::new(local(), 8);
        let a = v(0, 10);
        let id = a.node_id();
        c.apply(a, NOW_MS);
        assert_eq!(
            c.fail(&id, 9, NOW_MS),
            None,
            "about an older record: not news"
        );
        assert_eq!(
            c.fail(&id, 10, NOW_MS),
            Some(vec![CatalogEvent::Departed {
                node_id: id,
                reason: DepartReason::Failed
            }])
        );
        assert_eq!(c.fail(&id, 10, NOW_MS), None, "twice is not news");
        assert!(
            c.apply(v(0, 10), NOW_MS).is_empty(),
            "the condemned record stays out"
        );
        // The node refutes by signing a newer record.
        assert!(matches!(
            c.apply(v(0, 11), NOW_MS)[..],
            [CatalogEvent::Discovered(_)]
        ));
    }

    #[test]
    fn summaries_agree_exactly_when_contents_do() {
        let mut a = Catalog::new(local(), 16);
        let mut b = Catalog::new(local(), 16);
        for i in 0..5 {
            a.apply(v(i, 10), NOW_MS);
        }
        for i in (0..5).rev() {
            b.apply(v(i, 10), NOW_MS + 7);
        }
        assert_eq!(a.summary(), b.summary(), "order and time do not matter");
        b.apply(v(2, 11), NOW_MS);
        let differ: Vec<usize> = (0..BUCKETS)
            .filter(|i| a.summary()[*i] != b.summary()[*i])
            .collect();
        let id2 = identities(3)[2].node_id();
        assert_eq!(differ, vec![id2.0[0] as usize]);
        let entries = b.bucket_entries(id2.0[0]);
        assert!(entries.contains(&(id2, record_rank(11))), "{entries:?}");
        // Failing the same version on both sides makes them agree again.
        a.apply(v(2, 11), NOW_MS);
        assert_eq!(a.summary(), b.summary());
        a.fail(&id2, 11, NOW_MS);
        assert_ne!(a.summary(), b.summary());
        b.fail(&id2, 11, NOW_MS);
        assert_eq!(a.summary(), b.summary());
    }

    #[test]
    fn a_full_catalog_evicts_the_stalest_record_for_a_fresher_one() {
        let mut c = Catalog::new(local(), 3);
        for i in 0..3 {
            let id = &identities(i + 1)[i];
            let r = record_for(id, 10, NOW + i as u64);
            c.apply(Arc::new(verified(&r, id)), NOW_MS);
        }
        let oldest = identities(1)[0].node_id();
        let id = &identities(4)[3];
        let r = record_for(id, 10, NOW + 10);
        let events = c.apply(Arc::new(verified(&r, id)), NOW_MS);
        assert_eq!(
            events[0],
            CatalogEvent::Departed {
                node_id: oldest,
                reason: DepartReason::Evicted
            }
        );
        assert!(matches!(events[1], CatalogEvent::Discovered(_)));
        assert_eq!(c.len(), 3);
        assert_eq!(c.evicted(), 1);
        // A record staler than everything held is not taken.
        let id = &identities(5)[4];
        let r = record_for(id, 10, NOW - 100);
        assert!(c.apply(Arc::new(verified(&r, id)), NOW_MS).is_empty());
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn purge_expires_records_by_age_and_ticket() {
        let mut c = Catalog::new(local(), 8);
        c.apply(v(0, 10), NOW_MS);
        let id = identities(1)[0].node_id();
        assert!(c.purge(NOW_MS + 1000, 5000, |_| u64::MAX).is_empty());
        assert_eq!(
            c.purge(NOW_MS + 1000, 5000, |_| NOW),
            vec![CatalogEvent::Departed {
                node_id: id,
                reason: DepartReason::Expired
            }],
            "ticket expired"
        );
        c.apply(v(0, 11), NOW_MS);
        assert_eq!(
            c.purge(NOW_MS + 5001, 5000, |_| u64::MAX).len(),
            1,
            "too old"
        );
        assert!(c.is_empty());
        assert_eq!(c.summary(), &[0; BUCKETS], "nothing left counts");
    }
}
