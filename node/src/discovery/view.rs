//! HyParView's two views, as plain state: a small *active* view of peers this
//! node keeps connections to and gossips with, and a larger *passive* view of
//! peers it knows how to reach and promotes when an active peer fails.
//!
//! Both are bounded; choices among peers use a seeded generator so that runs
//! (and the simulator) are reproducible. What moves peers between the views is
//! the protocol's business ([`super::gossip`]); this module only keeps the
//! sets consistent: a peer is never in both, and never the local node.

use std::collections::BTreeMap;

use tessella_attestation::identity::NodeId;

/// splitmix64: small, seedable, good enough to pick peers.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform index below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Up to `k` items of `items`, chosen uniformly without repetition.
    pub fn sample<T: Copy>(&mut self, items: &[T], k: usize) -> Vec<T> {
        let mut v: Vec<T> = items.to_vec();
        let k = k.min(v.len());
        for i in 0..k {
            let j = i + self.below(v.len() - i);
            v.swap(i, j);
        }
        v.truncate(k);
        v
    }
}

/// The active and passive views of one node.
#[derive(Debug, Clone)]
pub struct Views {
    me: NodeId,
    active_max: usize,
    passive_max: usize,
    /// Active peers and when each joined the view (node ms).
    active: BTreeMap<NodeId, u64>,
    passive: Vec<NodeId>,
}

impl Views {
    /// Empty views for node `me`.
    pub fn new(me: NodeId, active_max: usize, passive_max: usize) -> Views {
        Views {
            me,
            active_max: active_max.max(1),
            passive_max: passive_max.max(1),
            active: BTreeMap::new(),
            passive: Vec::new(),
        }
    }

    /// The active view's capacity.
    pub fn active_max(&self) -> usize {
        self.active_max
    }

    /// Whether `id` is in the active view.
    pub fn is_active(&self, id: &NodeId) -> bool {
        self.active.contains_key(id)
    }

    /// Whether `id` is in the passive view.
    pub fn is_passive(&self, id: &NodeId) -> bool {
        self.passive.contains(id)
    }

    /// Active peers, in node-id order.
    pub fn active(&self) -> Vec<NodeId> {
        self.active.keys().copied().collect()
    }

    /// Number of active peers.
    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Whether the active view has room.
    pub fn active_has_room(&self) -> bool {
        self.active.len() < self.active_max
    }

    /// Passive peers.
    pub fn passive(&self) -> &[NodeId] {
        &self.passive
    }

    /// Put `id` in the active view at `now_ms`. When the view is full a
    /// random other active peer is dropped to make room and returned (the
    /// caller tells it, and keeps it as passive). `None` also when `id` was
    /// already active or is the local node.
    pub fn add_active(&mut self, id: NodeId, now_ms: u64, rng: &mut Rng) -> Option<NodeId> {
        if id == self.me || self.active.contains_key(&id) {
            return None;
        }
        self.passive.retain(|p| *p != id);
        let dropped = if self.active.len() >= self.active_max {
            let others: Vec<NodeId> = self.active.keys().copied().collect();
            let victim = others[rng.below(others.len())];
            self.active.remove(&victim);
            self.add_passive(victim, rng);
            Some(victim)
        } else {
            None
        };
        self.active.insert(id, now_ms);
        dropped
    }

    /// Take `id` out of the active view. Returns whether it was there.
    pub fn remove_active(&mut self, id: &NodeId) -> bool {
        self.active.remove(id).is_some()
    }

    /// Remember `id` as passive (evicting a random passive peer when full).
    pub fn add_passive(&mut self, id: NodeId, rng: &mut Rng) {
        if id == self.me || self.active.contains_key(&id) || self.passive.contains(&id) {
            return;
        }
        if self.passive.len() >= self.passive_max {
            let i = rng.below(self.passive.len());
            self.passive.swap_remove(i);
        }
        self.passive.push(id);
    }

    /// Forget `id` entirely (it departed or failed).
    pub fn forget(&mut self, id: &NodeId) -> bool {
        self.passive.retain(|p| p != id);
        self.active.remove(id).is_some()
    }

    /// Forget `id` if passive.
    pub fn remove_passive(&mut self, id: &NodeId) {
        self.passive.retain(|p| p != id);
    }

    /// A random active peer other than those in `except`.
    pub fn random_active(&self, rng: &mut Rng, except: &[NodeId]) -> Option<NodeId> {
        let pool: Vec<NodeId> = self
            .active
            .keys()
            .filter(|id| !except.contains(id))
            .copied()
            .collect();
        (!pool.is_empty()).then(|| pool[rng.below(pool.len())])
    }

    /// A random passive peer satisfying `ok`.
    pub fn random_passive(&self, rng: &mut Rng, ok: impl Fn(&NodeId) -> bool) -> Option<NodeId> {
        let pool: Vec<NodeId> = self.passive.iter().filter(|id| ok(id)).copied().collect();
        (!pool.is_empty()).then(|| pool[rng.below(pool.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    #[test]
    fn views_stay_bounded_disjoint_and_without_self() {
        let mut rng = Rng::new(7);
        let mut v = Views::new(id(0), 3, 4);
        assert_eq!(v.add_active(id(0), 0, &mut rng), None);
        assert_eq!(v.active_len(), 0, "never self");
        for i in 1..=3 {
            assert_eq!(v.add_active(id(i), 0, &mut rng), None);
        }
        let dropped = v.add_active(id(4), 0, &mut rng).expect("full: one dropped");
        assert_eq!(v.active_len(), 3);
        assert!(v.is_passive(&dropped) && !v.is_active(&dropped));
        for i in 10..20 {
            v.add_passive(id(i), &mut rng);
        }
        assert_eq!(v.passive().len(), 4, "passive bounded");
        for a in v.active() {
            assert!(!v.is_passive(&a), "disjoint");
        }
        let p = v.passive()[0];
        v.add_active(p, 1, &mut rng);
        assert!(
            v.is_active(&p) && !v.is_passive(&p),
            "promotion leaves passive"
        );
        assert!(v.forget(&p) && !v.is_active(&p));
    }

    #[test]
    fn samples_are_distinct_and_reproducible() {
        let items: Vec<u32> = (0..50).collect();
        let a = Rng::new(3).sample(&items, 10);
        let b = Rng::new(3).sample(&items, 10);
        assert_eq!(a, b);
        let mut s = a.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 10);
        assert_eq!(Rng::new(1).sample(&items[..3], 10).len(), 3);
    }
}
