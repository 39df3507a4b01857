//! A simulated network of [`Gossip`] nodes: messages are encoded, routed
//! in-process and decoded, time is a fake clock, links are explicit. Pure,
//! fast and deterministic.

use std::collections::{BTreeSet, HashMap, VecDeque};

use tessella_attestation::identity::NodeId;

use super::catalog::{CatalogEvent, DepartReason};
use super::gossip::{DiscoveryMsg, DiscoveryV1, Gossip, GossipConfig, LocalInfo, Out};
use super::record::SignedRecord;
use super::service::{FunctionRole, Service};
use super::testkit::{identities, record_check, ticket, NOW_MS};
use crate::id::FunctionId;

enum Action {
    Msg {
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    },
    Connect {
        from: usize,
        to: usize,
    },
}

struct Sim {
    nodes: Vec<Gossip>,
    alive: Vec<bool>,
    links: BTreeSet<(usize, usize)>,
    blocked: BTreeSet<usize>,
    index: HashMap<NodeId, usize>,
    events: Vec<Vec<CatalogEvent>>,
    /// Every message delivered: (from, to, message).
    log: Vec<(usize, usize, DiscoveryMsg)>,
    queue: VecDeque<Action>,
    now: u64,
    dials: usize,
    refuse_dials: bool,
    /// Every dial asked for: (from, to, at).
    requests: Vec<(usize, usize, u64)>,
}

fn addr_of(i: usize) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([10, 0, 0, i as u8], 4433))
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Sim {
    fn new(n: usize, config: impl Fn(usize) -> GossipConfig) -> Sim {
        let nodes: Vec<Gossip> = identities(n)
            .into_iter()
            .enumerate()
            .map(|(i, id)| {
                let local = LocalInfo {
                    addrs: vec![addr_of(i)],
                    tags: vec![],
                    services: vec![Service::Function {
                        id: FunctionId::from_name(&format!("svc-{i}")),
                        role: FunctionRole::Server,
                    }],
                    ticket: ticket(&id),
                    software: "sim".into(),
                };
                Gossip::new(id, local, config(i), NOW_MS).expect("gossip")
            })
            .collect();
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, g)| (g.node_id(), i))
            .collect();
        Sim {
            alive: vec![true; n],
            events: vec![Vec::new(); n],
            links: BTreeSet::new(),
            blocked: BTreeSet::new(),
            index,
            nodes,
            log: Vec::new(),
            queue: VecDeque::new(),
            now: NOW_MS,
            dials: 0,
            refuse_dials: false,
            requests: Vec::new(),
        }
    }

    fn id(&self, i: usize) -> NodeId {
        self.nodes[i].node_id()
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        a != b
            && self.alive[a]
            && self.alive[b]
            && !self.blocked.contains(&a)
            && !self.blocked.contains(&b)
    }

    fn handle(&mut self, i: usize, outs: Vec<Out>) {
        for out in outs {
            match out {
                Out::Send { to, msg } => {
                    let to = self.index[&to];
                    let bytes = msg.encode().expect("encodes");
                    self.queue.push_back(Action::Msg { from: i, to, bytes });
                }
                Out::Event(e) => self.events[i].push(e),
                Out::Connect { node_id, addrs } => {
                    let to = self.index[&node_id];
                    assert_eq!(addrs, vec![addr_of(to)], "dial address");
                    self.requests.push((i, to, self.now));
                    self.queue.push_back(Action::Connect { from: i, to });
                }
            }
        }
    }

    fn connect(&mut self, a: usize, b: usize) {
        if !self.reachable(a, b) || !self.links.insert(pair(a, b)) {
            return;
        }
        let (ia, ib) = (self.id(a), self.id(b));
        let out = self.nodes[a].on_connected(ib, self.now);
        self.handle(a, out);
        let out = self.nodes[b].on_connected(ia, self.now);
        self.handle(b, out);
    }

    fn disconnect(&mut self, a: usize, b: usize) {
        if self.links.remove(&pair(a, b)) {
            let (ia, ib) = (self.id(a), self.id(b));
            self.nodes[a].on_disconnected(ib);
            self.nodes[b].on_disconnected(ia);
        }
    }

    fn isolate(&mut self, i: usize) {
        let peers: Vec<(usize, usize)> = self
            .links
            .iter()
            .filter(|(a, b)| *a == i || *b == i)
            .copied()
            .collect();
        for (a, b) in peers {
            self.disconnect(a, b);
        }
    }

    /// Stop a node silently: its peers notice when their connections time out.
    fn kill(&mut self, i: usize) {
        self.isolate(i);
        self.alive[i] = false;
    }

    /// Deliver until quiet.
    fn settle(&mut self) {
        let mut steps = 0;
        while let Some(action) = self.queue.pop_front() {
            steps += 1;
            assert!(steps < 1_000_000, "gossip does not settle");
            match action {
                Action::Connect { from, to } => {
                    if !self.refuse_dials {
                        self.dials += 1;
                        self.connect(from, to);
                    }
                }
                Action::Msg { from, to, bytes } => {
                    if !self.links.contains(&pair(from, to)) {
                        continue;
                    }
                    let msg = DiscoveryMsg::decode(&bytes).expect("decodes");
                    self.log.push((from, to, msg.clone()));
                    let sender = self.id(from);
                    let out = self.nodes[to].on_message(sender, msg, self.now);
                    self.handle(to, out);
                }
            }
        }
    }

    /// Advance the clock by `dt_ms`, tick every live node, deliver.
    fn round(&mut self, dt_ms: u64) {
        self.now += dt_ms;
        for i in 0..self.nodes.len() {
            if self.alive[i] {
                let out = self.nodes[i].on_tick(self.now);
                self.handle(i, out);
            }
        }
        self.settle();
    }

    fn inject(&mut self, from: usize, to: usize, msg: DiscoveryV1) {
        let bytes = DiscoveryMsg::V1(msg).encode().expect("encodes");
        self.queue.push_back(Action::Msg { from, to, bytes });
        self.settle();
    }

    /// Whether every live node's catalog holds exactly the other live nodes in
    /// `members`.
    fn converged(&self, members: &[usize]) -> bool {
        members.iter().all(|&i| {
            let cat = self.nodes[i].catalog();
            cat.len() == members.len() - 1
                && members.iter().filter(|&&j| j != i).all(|&j| {
                    cat.get(&self.id(j)).map(|p| p.record()) == Some(self.nodes[j].own_record())
                })
        })
    }

    /// Run rounds of `dt_ms` until `cond` holds; returns the rounds used.
    fn run_until(
        &mut self,
        max_rounds: usize,
        dt_ms: u64,
        reason: &str,
        cond: impl Fn(&Sim) -> bool,
    ) -> usize {
        for r in 0..=max_rounds {
            if cond(self) {
                return r;
            }
            self.round(dt_ms);
        }
        panic!("not within {max_rounds} rounds: {reason}");
    }

    fn all(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.alive[*i]).collect()
    }

    fn anyone_knows(&self, who: usize) -> bool {
        let id = self.id(who);
        (0..self.nodes.len()).any(|i| i != who && self.nodes[i].catalog().contains(&id))
    }
}

fn defaults(_: usize) -> GossipConfig {
    GossipConfig::new(record_check())
}

/// A star: every node connects only to node 0, then gossip and dials do the rest.
fn star(n: usize, config: impl Fn(usize) -> GossipConfig) -> Sim {
    let mut sim = Sim::new(n, config);
    for i in 1..n {
        sim.connect(i, 0);
        sim.settle();
    }
    sim
}

#[test]
fn five_nodes_from_one_bootstrap_converge() {
    let mut sim = star(5, defaults);
    let all = sim.all();
    let rounds = sim.run_until(3, 1000, "5 nodes converge", |s| s.converged(&all));
    assert!(rounds <= 1, "{rounds}");
    // Everyone dialled everyone: a full mesh of 10 links.
    assert_eq!(sim.links.len(), 10);
    // Each node saw one Discovered per peer and nothing else.
    for i in 0..5 {
        let discovered = sim.events[i]
            .iter()
            .filter(|e| matches!(e, CatalogEvent::Discovered(_)))
            .count();
        assert_eq!(discovered, 4, "node {i}: {:?}", sim.events[i]);
    }
}

#[test]
fn thirty_nodes_from_one_bootstrap_converge() {
    let mut sim = star(30, defaults);
    let all = sim.all();
    let rounds = sim.run_until(5, 1000, "30 nodes converge", |s| s.converged(&all));
    assert!(rounds <= 2, "{rounds}");
    for g in &sim.nodes {
        assert_eq!(g.stats().records_invalid, 0);
    }
}

#[test]
fn thirty_nodes_converge_through_relays_alone() {
    // No dials: records of far nodes only arrive relayed by neighbours.
    let mut sim = star(30, |_| {
        let mut c = GossipConfig::new(record_check());
        c.auto_connect = false;
        c
    });
    assert_eq!(sim.links.len(), 29);
    let all = sim.all();
    let rounds = sim.run_until(5, 1000, "30 nodes converge via relays", |s| {
        s.converged(&all)
    });
    assert!(rounds <= 2, "{rounds}");
    assert_eq!(sim.dials, 0);
}

#[test]
fn a_chain_converges_transitively_and_stays_alive() {
    let mut sim = Sim::new(6, |_| {
        let mut c = GossipConfig::new(record_check());
        c.auto_connect = false;
        c
    });
    for i in 1..6 {
        sim.connect(i - 1, i);
    }
    sim.settle();
    let all = sim.all();
    let rounds = sim.run_until(10, 1000, "a 6-chain converges", |s| s.converged(&all));
    assert!(rounds <= 6, "{rounds}");
    // Heartbeats keep every relayed peer fresh far beyond the ttl.
    for _ in 0..150 {
        sim.round(1000);
        assert!(
            all.iter().all(|&i| sim.nodes[i].catalog().len() == 5),
            "someone was purged at {}",
            sim.now
        );
    }
    for i in 0..6 {
        assert!(!sim.events[i]
            .iter()
            .any(|e| matches!(e, CatalogEvent::Departed { .. })));
    }
}

#[test]
fn a_departed_node_disappears_everywhere_and_stays_gone() {
    let mut sim = star(5, defaults);
    let all = sim.all();
    sim.run_until(3, 1000, "converge", |s| s.converged(&all));
    // Node 4 is cut off while node 2 leaves; it still holds 2's live record.
    sim.isolate(4);
    sim.blocked.insert(4);
    let out = sim.nodes[2].depart(sim.now).expect("departs");
    sim.handle(2, out);
    sim.settle();
    sim.kill(2);
    for i in [0, 1, 3] {
        assert!(!sim.nodes[i].catalog().contains(&sim.id(2)), "node {i}");
        assert!(sim.events[i].contains(&CatalogEvent::Departed {
            node_id: sim.id(2),
            reason: DepartReason::Announced
        }));
    }
    assert!(sim.nodes[4].catalog().contains(&sim.id(2)));
    // Node 4 comes back well within the ttl: it learns the departure from the
    // others' tombstones and does not spread 2's old record.
    sim.round(1000);
    sim.blocked.remove(&4);
    sim.connect(4, 0);
    sim.settle();
    sim.run_until(3, 1000, "node 4 learns the departure", |s| {
        !s.anyone_knows(2)
    });
    assert!(sim.events[4].contains(&CatalogEvent::Departed {
        node_id: sim.id(2),
        reason: DepartReason::Announced
    }));
    let rest = [0, 1, 3, 4];
    for _ in 0..100 {
        sim.round(1000);
        assert!(!sim.anyone_knows(2), "resurrected at {}", sim.now);
    }
    assert!(sim.converged(&rest));
    for i in rest {
        let rediscovered = sim.events[i]
            .iter()
            .filter(|e| matches!(e, CatalogEvent::Discovered(r) if r.node_id == sim.id(2)))
            .count();
        assert_eq!(rediscovered, 1, "node {i} discovered 2 once only");
    }
}

#[test]
fn a_forged_departure_changes_nothing() {
    let mut sim = star(4, defaults);
    let all = sim.all();
    sim.run_until(3, 1000, "converge", |s| s.converged(&all));
    // Node 3 (admitted, but malicious) forges 1's departure three ways.
    let victim = sim.nodes[1].own_record().clone();
    let bye = super::record::PeerRecord {
        addrs: vec![],
        departing: true,
        version: victim.version + 1,
        ..victim
    };
    let bytes = postcard::to_allocvec(&bye).expect("encodes");
    let theirs = sim.nodes[1].own_signed().clone();
    let attacker = identities(4).pop().expect("identity");
    let forgeries = [
        // 1's key and old signature over new bytes.
        SignedRecord {
            record_bytes: bytes.clone(),
            ..theirs.clone()
        },
        // Signed by the attacker, claiming to be 1.
        SignedRecord {
            signature: attacker
                .sign(&super::record::signing_message(&bytes))
                .expect("signs"),
            spki: attacker.spki_der().expect("spki"),
            record_bytes: bytes.clone(),
        },
        // Garbage.
        SignedRecord {
            record_bytes: vec![0xff; 64],
            ..theirs
        },
    ];
    for record in forgeries {
        sim.inject(3, 0, DiscoveryV1::Depart { record });
    }
    assert_eq!(sim.nodes[0].stats().records_invalid, 3);
    sim.run_until(0, 1000, "still converged", |s| s.converged(&all));
    assert!(!sim
        .events
        .iter()
        .flatten()
        .any(|e| matches!(e, CatalogEvent::Departed { .. })));
}

#[test]
fn forged_records_are_never_stored_nor_relayed() {
    let mut sim = star(5, defaults);
    let all = sim.all();
    sim.run_until(3, 1000, "converge", |s| s.converged(&all));
    let attacker = 4;
    let victim = sim.nodes[1].own_record().clone();
    let theirs = sim.nodes[1].own_signed().clone();
    let key = identities(5).pop().expect("identity");
    assert_eq!(key.node_id(), sim.id(attacker));

    let mut hijack = victim.clone();
    hijack.version += 10;
    hijack.addrs = vec![std::net::SocketAddr::from(([6, 6, 6, 6], 6666))];
    let hijack_bytes = postcard::to_allocvec(&hijack).expect("encodes");
    let mut elsewhere = sim.nodes[attacker].own_record().clone();
    elsewhere.version += 10;
    elsewhere.network = tessella_attestation::identity::NetworkId::from_name("elsewhere");
    let elsewhere_bytes = postcard::to_allocvec(&elsewhere).expect("encodes");
    let sign = |b: &[u8]| key.sign(&super::record::signing_message(b)).expect("signs");
    let forgeries = vec![
        // Node id mismatch: the attacker signs a record for node 1.
        SignedRecord {
            signature: sign(&hijack_bytes),
            spki: key.spki_der().expect("spki"),
            record_bytes: hijack_bytes.clone(),
        },
        // Tampered bytes under node 1's key and signature.
        SignedRecord {
            record_bytes: hijack_bytes,
            ..theirs
        },
        // Its own, validly signed, for another network.
        SignedRecord {
            signature: sign(&elsewhere_bytes),
            spki: key.spki_der().expect("spki"),
            record_bytes: elsewhere_bytes,
        },
    ];
    let before = sim.log.len();
    sim.inject(
        attacker,
        0,
        DiscoveryV1::Records {
            records: forgeries.clone(),
        },
    );
    assert_eq!(sim.nodes[0].stats().records_invalid, 3);
    for _ in 0..5 {
        sim.round(1000);
    }
    // Nobody stored them...
    assert!(sim.converged(&all));
    for g in &sim.nodes {
        for p in g.catalog().iter() {
            assert!(!forgeries.contains(p.signed()));
        }
    }
    // ...and nobody but the attacker ever sent them.
    for (from, _, msg) in &sim.log[before..] {
        if *from == attacker {
            continue;
        }
        if let DiscoveryMsg::V1(DiscoveryV1::Records { records }) = msg {
            assert!(records.iter().all(|r| !forgeries.contains(r)));
        }
    }
}

#[test]
fn a_silently_dead_node_is_purged_after_the_ttl() {
    let mut sim = star(5, defaults);
    let all = sim.all();
    sim.run_until(3, 1000, "converge", |s| s.converged(&all));
    let dead = 3;
    let died_at = sim.now;
    sim.kill(dead);
    let ttl_ms = 40_000; // peer_ttl 30 s + max_skew 10 s
                         // Still listed while its last record is within the ttl...
    while sim.now + 1000 <= died_at + ttl_ms - 1000 {
        sim.round(1000);
    }
    for i in [0, 1, 2, 4] {
        assert!(
            sim.nodes[i].catalog().contains(&sim.id(dead)),
            "node {i} at {}",
            sim.now
        );
    }
    // ...and gone from every catalog one round after it.
    let rounds = sim.run_until(15, 1000, "dead node purged", |s| !s.anyone_knows(dead));
    assert!(sim.now <= died_at + ttl_ms + 2000, "{rounds}");
    for i in [0, 1, 2, 4] {
        assert!(sim.events[i].contains(&CatalogEvent::Departed {
            node_id: sim.id(dead),
            reason: DepartReason::Expired
        }));
    }
    // The living keep each other.
    for _ in 0..60 {
        sim.round(1000);
    }
    assert!(sim.converged(&[0, 1, 2, 4]));
    assert!(!sim.anyone_knows(dead));
}

#[test]
fn catalog_capacity_holds_under_gossip() {
    let mut sim = star(8, |_| {
        let mut c = GossipConfig::new(record_check());
        c.max_entries = 3;
        c
    });
    for _ in 0..10 {
        sim.round(1000);
    }
    for g in &sim.nodes {
        assert!(g.catalog().len() <= 3);
        assert_eq!(g.catalog().len(), 3);
    }
    // Node 0 (the bootstrap) refused the strangers beyond its capacity.
    assert!(sim.nodes[0].catalog().refused() >= 4);
}

#[test]
fn dials_are_bounded_and_retried() {
    // A newcomer with a budget of 2 connections joins while every dial fails.
    let mut sim6 = Sim::new(6, |i| {
        let mut c = GossipConfig::new(record_check());
        if i == 5 {
            c.max_connections = 2;
        }
        c
    });
    for i in 1..5 {
        sim6.connect(i, 0);
        sim6.settle();
    }
    sim6.run_until(3, 1000, "converge", |s| s.converged(&[0, 1, 2, 3, 4]));
    sim6.refuse_dials = true;
    sim6.connect(5, 0);
    sim6.settle();
    let start = sim6.now;
    for _ in 0..12 {
        sim6.round(1000);
    }
    let mine: Vec<(usize, u64)> = sim6
        .requests
        .iter()
        .filter(|(from, _, _)| *from == 5)
        .map(|(_, to, at)| (*to, *at))
        .collect();
    // One outstanding dial at a time (1 connected + 1 dialing = 2), asked
    // again every redial_after (5 s), to varying peers.
    let times: Vec<u64> = mine.iter().map(|(_, at)| at - start).collect();
    assert_eq!(times, vec![0, 5000, 10_000], "{mine:?}");
    assert!(mine.iter().all(|(to, _)| (1..5).contains(to)));
    assert_eq!(sim6.nodes[5].catalog().len(), 5);
}
