//! The catalog: the verified peers a node knows, with events when the set
//! changes.
//!
//! Only [`VerifiedRecord`]s go in, so nothing unverified is ever stored. A
//! node is either *live* (its latest record) or *departed* (a tombstone
//! holding the version, and the signed departure when there is one, that
//! ended it), never both. Tombstones keep an older live record that is still
//! travelling through the network from bringing a departed node back, and let
//! the departure itself spread by anti-entropy. Neither set ever contains the
//! local node. Times are Unix milliseconds, supplied by the caller.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tessella_attestation::identity::NodeId;

use super::record::{PeerRecord, SignedRecord, VerifiedRecord};

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
    /// Nothing refreshed it within the time to live.
    Expired,
    /// Removed locally with [`Catalog::depart`].
    Removed,
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
    record: PeerRecord,
    signed: SignedRecord,
    refreshed_ms: u64,
    discovered_ms: u64,
}

impl Peer {
    /// Its latest verified record.
    pub fn record(&self) -> &PeerRecord {
        &self.record
    }

    /// That record as signed, for relaying.
    pub fn signed(&self) -> &SignedRecord {
        &self.signed
    }

    /// Last time it was seen alive (connection or fresh record), Unix ms.
    pub fn refreshed_ms(&self) -> u64 {
        self.refreshed_ms
    }

    /// When this node first entered the catalog, Unix ms.
    pub fn discovered_ms(&self) -> u64 {
        self.discovered_ms
    }
}

#[derive(Debug, Clone)]
struct Tombstone {
    version: u64,
    signed: Option<SignedRecord>,
    stored_ms: u64,
}

/// The verified peers this node knows. Bounded: at most `max_entries` live
/// peers and `max_entries / 2` tombstones (at least one).
#[derive(Debug, Clone)]
pub struct Catalog {
    local: NodeId,
    max_entries: usize,
    peers: BTreeMap<NodeId, Peer>,
    departed: BTreeMap<NodeId, Tombstone>,
    refused: u64,
}

impl Catalog {
    /// An empty catalog for the node `local`, holding at most `max_entries`
    /// live peers.
    pub fn new(local: NodeId, max_entries: usize) -> Catalog {
        Catalog {
            local,
            max_entries,
            peers: BTreeMap::new(),
            departed: BTreeMap::new(),
            refused: 0,
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

    /// How many unknown peers were refused because the catalog was full.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Count a stranger refused for lack of room without presenting it.
    pub(crate) fn count_refusal(&mut self) {
        self.refused += 1;
    }

    /// Whether there is room for another unknown peer.
    pub fn has_room(&self) -> bool {
        self.peers.len() < self.max_entries
    }

    fn max_tombstones(&self) -> usize {
        (self.max_entries / 2).max(1)
    }

    /// Take in a verified record at `now_ms`. A record for a new node gives
    /// [`CatalogEvent::Discovered`] (or is refused and counted when the
    /// catalog is full: live peers are never evicted for strangers); a higher
    /// version of a known node gives [`CatalogEvent::Updated`], or
    /// [`CatalogEvent::Departed`] when it is a departure. Equal or older
    /// versions, versions not above a tombstone, and the local node's own
    /// records change nothing. A departure of a node not live here is kept as
    /// a tombstone without an event.
    ///
    /// The peer counts as refreshed at the record's issue time (never later
    /// than `now_ms`): an old record relayed late does not make a dead node
    /// look alive.
    pub fn apply(&mut self, verified: VerifiedRecord, now_ms: u64) -> Option<CatalogEvent> {
        let (record, signed) = verified.into_parts();
        let id = record.node_id;
        if id == self.local {
            return None;
        }
        if self
            .departed
            .get(&id)
            .is_some_and(|t| record.version <= t.version)
        {
            return None;
        }
        let issued_ms = record.issued_at_ms().min(now_ms);
        if let Some(peer) = self.peers.get_mut(&id) {
            if record.version <= peer.record.version {
                return None;
            }
            if record.departing {
                self.peers.remove(&id);
                self.bury(id, record.version, Some(signed), now_ms);
                return Some(CatalogEvent::Departed {
                    node_id: id,
                    reason: DepartReason::Announced,
                });
            }
            peer.refreshed_ms = peer.refreshed_ms.max(issued_ms);
            peer.record = record.clone();
            peer.signed = signed;
            return Some(CatalogEvent::Updated(record));
        }
        if record.departing {
            self.bury(id, record.version, Some(signed), now_ms);
            return None;
        }
        if !self.has_room() {
            self.refused += 1;
            return None;
        }
        self.departed.remove(&id);
        self.peers.insert(
            id,
            Peer {
                record: record.clone(),
                signed,
                refreshed_ms: issued_ms,
                discovered_ms: now_ms,
            },
        );
        Some(CatalogEvent::Discovered(record))
    }

    fn bury(&mut self, id: NodeId, version: u64, signed: Option<SignedRecord>, now_ms: u64) {
        if !self.departed.contains_key(&id) && self.departed.len() >= self.max_tombstones() {
            // Tombstones are a courtesy, live peers are not: drop the oldest.
            if let Some(oldest) = self
                .departed
                .iter()
                .min_by_key(|(_, t)| t.stored_ms)
                .map(|(id, _)| *id)
            {
                self.departed.remove(&oldest);
            }
        }
        self.departed.insert(
            id,
            Tombstone {
                version,
                signed,
                stored_ms: now_ms,
            },
        );
    }

    /// Forget a peer locally (no signed departure: a newer record from it
    /// brings it back).
    pub fn depart(&mut self, node_id: &NodeId, now_ms: u64) -> Option<CatalogEvent> {
        let peer = self.peers.remove(node_id)?;
        self.bury(*node_id, peer.record.version, None, now_ms);
        Some(CatalogEvent::Departed {
            node_id: *node_id,
            reason: DepartReason::Removed,
        })
    }

    /// Mark a live peer as seen alive at `now_ms` (a connection to it, a
    /// message from it). Returns whether the peer is live here.
    pub fn touch(&mut self, node_id: &NodeId, now_ms: u64) -> bool {
        match self.peers.get_mut(node_id) {
            Some(p) => {
                p.refreshed_ms = p.refreshed_ms.max(now_ms);
                true
            }
            None => false,
        }
    }

    /// Remove peers not refreshed within `ttl` (one
    /// [`CatalogEvent::Departed`] with [`DepartReason::Expired`] each) and
    /// tombstones older than twice `ttl`.
    pub fn purge(&mut self, now_ms: u64, ttl: Duration) -> Vec<CatalogEvent> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let stale: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, p)| now_ms.saturating_sub(p.refreshed_ms) > ttl_ms)
            .map(|(id, _)| *id)
            .collect();
        self.departed
            .retain(|_, t| now_ms.saturating_sub(t.stored_ms) <= ttl_ms.saturating_mul(2));
        stale
            .into_iter()
            .map(|id| {
                self.peers.remove(&id);
                CatalogEvent::Departed {
                    node_id: id,
                    reason: DepartReason::Expired,
                }
            })
            .collect()
    }

    /// What this catalog holds, as `(node id, version)` for live peers and
    /// tombstones, ordered by node id. Sent as a gossip digest.
    pub fn digest(&self) -> Vec<(NodeId, u64)> {
        let mut out: Vec<(NodeId, u64)> = self
            .peers
            .iter()
            .map(|(id, p)| (*id, p.record.version))
            .chain(self.departed.iter().map(|(id, t)| (*id, t.version)))
            .collect();
        out.sort_unstable_by_key(|(id, _)| *id);
        out
    }

    /// The signed records (live ones and signed departures) that are newer
    /// than, or missing from, `digest`.
    pub fn records_newer_than(&self, digest: &[(NodeId, u64)]) -> Vec<SignedRecord> {
        let theirs: HashMap<NodeId, u64> = digest.iter().copied().collect();
        let behind = |id: &NodeId, v: u64| theirs.get(id).is_none_or(|t| *t < v);
        let live = self
            .peers
            .iter()
            .filter(|(id, p)| behind(id, p.record.version))
            .map(|(_, p)| p.signed.clone());
        let gone = self
            .departed
            .iter()
            .filter(|(id, t)| behind(id, t.version))
            .filter_map(|(_, t)| t.signed.clone());
        live.chain(gone).collect()
    }

    /// The highest version known for `node_id`, live or departed.
    pub fn version_of(&self, node_id: &NodeId) -> Option<u64> {
        self.peers
            .get(node_id)
            .map(|p| p.record.version)
            .or_else(|| self.departed.get(node_id).map(|t| t.version))
    }

    /// The signed record to hand out for `node_id`: its live record or its
    /// signed departure.
    pub fn signed_record(&self, node_id: &NodeId) -> Option<&SignedRecord> {
        self.peers
            .get(node_id)
            .map(|p| &p.signed)
            .or_else(|| self.departed.get(node_id).and_then(|t| t.signed.as_ref()))
    }

    /// Whether `node_id` left (announced, or removed locally) and has not
    /// come back.
    pub fn is_departed(&self, node_id: &NodeId) -> bool {
        self.departed.contains_key(node_id)
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

    /// Whether there are no live peers.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Live peers, ordered by node id.
    pub fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::testkit::{identities, record_for, verified, NOW, NOW_MS};

    fn departure(rec: &PeerRecord, version: u64) -> PeerRecord {
        PeerRecord {
            addrs: vec![],
            departing: true,
            version,
            ..rec.clone()
        }
    }

    #[test]
    fn discovered_updated_and_stale_versions_ignored() {
        let ids = identities(2);
        let mut cat = Catalog::new(ids[0].node_id(), 8);
        let peer = &ids[1];
        let v2 = record_for(peer, 2, NOW);
        let ev = cat.apply(verified(&v2, peer), NOW_MS);
        assert_eq!(ev, Some(CatalogEvent::Discovered(v2.clone())));
        // Equal and older versions change nothing.
        assert_eq!(cat.apply(verified(&v2, peer), NOW_MS), None);
        let mut v1 = record_for(peer, 1, NOW);
        v1.software = "older".into();
        assert_eq!(cat.apply(verified(&v1, peer), NOW_MS), None);
        assert_eq!(cat.get(&peer.node_id()).map(|p| p.record()), Some(&v2));
        // A newer one replaces.
        let mut v3 = record_for(peer, 3, NOW + 1);
        v3.software = "newer".into();
        let ev = cat.apply(verified(&v3, peer), NOW_MS + 1000);
        assert_eq!(ev, Some(CatalogEvent::Updated(v3.clone())));
        assert_eq!(cat.version_of(&peer.node_id()), Some(3));
        assert_eq!(cat.len(), 1);
        assert_eq!(cat.digest(), vec![(peer.node_id(), 3)]);
    }

    #[test]
    fn never_contains_self() {
        let ids = identities(1);
        let mut cat = Catalog::new(ids[0].node_id(), 8);
        let own = record_for(&ids[0], 1, NOW);
        assert_eq!(cat.apply(verified(&own, &ids[0]), NOW_MS), None);
        assert!(cat.is_empty());
        assert!(cat.digest().is_empty());
    }

    #[test]
    fn capacity_refuses_strangers_but_updates_known_peers() {
        let ids = identities(6);
        let mut cat = Catalog::new(ids[0].node_id(), 3);
        for id in &ids[1..] {
            cat.apply(verified(&record_for(id, 1, NOW), id), NOW_MS);
        }
        assert_eq!(cat.len(), 3);
        assert_eq!(cat.refused(), 2);
        assert!(!cat.contains(&ids[4].node_id()) && !cat.contains(&ids[5].node_id()));
        // Known peers still update.
        let ev = cat.apply(verified(&record_for(&ids[1], 2, NOW), &ids[1]), NOW_MS);
        assert!(matches!(ev, Some(CatalogEvent::Updated(_))));
        // A departure makes room.
        assert!(cat.depart(&ids[2].node_id(), NOW_MS).is_some());
        let ev = cat.apply(verified(&record_for(&ids[4], 1, NOW), &ids[4]), NOW_MS);
        assert!(matches!(ev, Some(CatalogEvent::Discovered(_))));
        assert_eq!(cat.len(), 3);
    }

    #[test]
    fn departure_removes_and_blocks_older_records() {
        let ids = identities(3);
        let mut cat = Catalog::new(ids[0].node_id(), 8);
        let p = &ids[1];
        let live = record_for(p, 10, NOW);
        cat.apply(verified(&live, p), NOW_MS);
        // An older departure does nothing.
        assert_eq!(cat.apply(verified(&departure(&live, 9), p), NOW_MS), None);
        assert!(cat.contains(&p.node_id()));
        let bye = departure(&live, 11);
        assert_eq!(
            cat.apply(verified(&bye, p), NOW_MS),
            Some(CatalogEvent::Departed {
                node_id: p.node_id(),
                reason: DepartReason::Announced
            })
        );
        assert!(!cat.contains(&p.node_id()) && cat.is_departed(&p.node_id()));
        // The old live record, relayed late, does not resurrect it.
        assert_eq!(cat.apply(verified(&live, p), NOW_MS), None);
        // The departure is handed out to peers that still list it live.
        let out = cat.records_newer_than(&[(p.node_id(), 10)]);
        assert_eq!(out.len(), 1);
        assert!(cat.records_newer_than(&[(p.node_id(), 11)]).is_empty());
        assert_eq!(cat.digest(), vec![(p.node_id(), 11)]);
        // A departure of a node never seen is remembered silently.
        let q = &ids[2];
        let q_bye = departure(&record_for(q, 5, NOW), 5);
        assert_eq!(cat.apply(verified(&q_bye, q), NOW_MS), None);
        assert!(cat.is_departed(&q.node_id()));
        assert_eq!(cat.apply(verified(&record_for(q, 4, NOW), q), NOW_MS), None);
        // A genuinely newer record brings a node back.
        let back = record_for(p, 12, NOW);
        assert!(matches!(
            cat.apply(verified(&back, p), NOW_MS),
            Some(CatalogEvent::Discovered(_))
        ));
        assert!(!cat.is_departed(&p.node_id()));
    }

    #[test]
    fn purge_expires_unrefreshed_peers_and_old_tombstones() {
        let ids = identities(4);
        let mut cat = Catalog::new(ids[0].node_id(), 8);
        let ttl = Duration::from_secs(30);
        for id in &ids[1..3] {
            cat.apply(verified(&record_for(id, 1, NOW), id), NOW_MS);
        }
        // A record issued 20 s ago counts from its issue time.
        let old = record_for(&ids[3], 1, NOW - 20);
        cat.apply(verified(&old, &ids[3]), NOW_MS);
        assert_eq!(
            cat.get(&ids[3].node_id()).map(|p| p.refreshed_ms()),
            Some(NOW_MS - 20_000)
        );
        assert!(cat.purge(NOW_MS + 10_000, ttl).is_empty());
        let gone = cat.purge(NOW_MS + 10_001, ttl);
        assert_eq!(
            gone,
            vec![CatalogEvent::Departed {
                node_id: ids[3].node_id(),
                reason: DepartReason::Expired
            }]
        );
        // Touching keeps a peer alive.
        assert!(cat.touch(&ids[1].node_id(), NOW_MS + 25_000));
        assert!(!cat.touch(&ids[3].node_id(), NOW_MS + 25_000));
        let gone = cat.purge(NOW_MS + 31_000, ttl);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].node_id(), ids[2].node_id());
        assert_eq!(cat.len(), 1);
        // Tombstones last twice the ttl.
        cat.depart(&ids[1].node_id(), NOW_MS + 31_000);
        assert!(cat.is_departed(&ids[1].node_id()));
        cat.purge(NOW_MS + 91_000, ttl);
        assert!(cat.is_departed(&ids[1].node_id()));
        cat.purge(NOW_MS + 91_001, ttl);
        assert!(!cat.is_departed(&ids[1].node_id()));
    }

    #[test]
    fn push_pull_helpers() {
        let ids = identities(4);
        let mut cat = Catalog::new(ids[0].node_id(), 8);
        for (i, id) in ids[1..].iter().enumerate() {
            cat.apply(verified(&record_for(id, 5, NOW), id), NOW_MS + i as u64);
        }
        let digest = cat.digest();
        assert_eq!(digest.len(), 3);
        assert!(digest.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(cat.records_newer_than(&digest).is_empty());
        assert_eq!(cat.records_newer_than(&[]).len(), 3);
        let partial = [(ids[1].node_id(), 5), (ids[2].node_id(), 4)];
        let out = cat.records_newer_than(&partial);
        assert_eq!(out.len(), 2);
        assert!(out.contains(cat.signed_record(&ids[2].node_id()).expect("known")));
        assert!(out.contains(cat.signed_record(&ids[3].node_id()).expect("known")));
        assert_eq!(cat.iter().count(), 3);
    }

    #[test]
    fn tombstones_are_bounded() {
        let ids = identities(8);
        let mut cat = Catalog::new(ids[0].node_id(), 4);
        for (i, id) in ids[1..].iter().enumerate() {
            let bye = departure(&record_for(id, 1, NOW), 2);
            cat.apply(verified(&bye, id), NOW_MS + i as u64);
        }
        assert_eq!(cat.digest().len(), 2);
        // The newest survive.
        assert!(cat.is_departed(&ids[7].node_id()) && cat.is_departed(&ids[6].node_id()));
    }
}
