//! A simulated network of [`Gossip`] nodes: the real state machine, real
//! RA-TLS identities and signed records, messages routed in-process with one
//! step of latency, a fake clock, explicit connections, loss, partitions,
//! crashes and joins. Deterministic for a seed.
//!
//! Used by the unit tests below and by the `discovery_sim` benchmark (1,000
//! and more nodes). Each distinct record is verified once for the whole
//! simulation ([`SharedVerifier`]), as each real node would verify it once.
//!
//! One *step* is `step_ms` of simulated time: every message sent during a
//! step is delivered (or lost) at the next, every dial resolves at the next,
//! then every node ticks. A message hop is therefore one step, which is what
//! "rounds" count in the figures. A released connection closes one step
//! later, after the messages queued with the release (a `Disconnect`, an
//! acceptance, a record) went out, as the transport's release grace does.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use tessella_attestation::dev::{DevPki, DevQuoteProvider, DevTd};
use tessella_attestation::identity::{NetworkId, NodeId};
use tessella_attestation::ratls::{issue, RatlsIdentity};
use tessella_attestation::{TicketClaims, TicketIssuer, TicketValidator};

use super::catalog::{CatalogEvent, DepartReason};
use super::gossip::{DiscoveryMsg, Gossip, GossipConfig, LocalInfo, Out, RecordVerifier};
use super::record::{RecordCheck, RecordError, SignedRecord, VerifiedRecord};
use super::view::Rng;

/// Simulated start time, Unix seconds.
pub const SIM_NOW: u64 = 1_800_000_000;

/// The simulated network's name (tickets' audience).
pub const SIM_NETWORK: &str = "discovery-sim";

/// The simulated network's id.
pub fn network() -> NetworkId {
    NetworkId::from_name(SIM_NETWORK)
}

/// The ticket issuer every simulated node trusts.
pub fn issuer() -> &'static TicketIssuer {
    static ISSUER: OnceLock<TicketIssuer> = OnceLock::new();
    ISSUER.get_or_init(
        || match TicketIssuer::generate_es256("discovery-sim-issuer") {
            Ok(i) => i,
            Err(e) => panic!("issuer: {e}"),
        },
    )
}

/// A ticket for `id`, valid for the simulated month.
pub fn ticket(id: &RatlsIdentity) -> String {
    let claims = TicketClaims::new(
        issuer().name(),
        id.node_id().to_string(),
        SIM_NETWORK,
        SIM_NOW - 60,
        SIM_NOW + 30 * 86_400,
    );
    match issuer().issue(&claims) {
        Ok(t) => t,
        Err(e) => panic!("ticket: {e}"),
    }
}

/// What simulated records must satisfy.
pub fn record_check() -> RecordCheck {
    match TicketValidator::new(SIM_NETWORK, [issuer().public_key()]) {
        Ok(v) => RecordCheck::new(v, 10),
        Err(e) => panic!("validator: {e}"),
    }
}

/// `n` RA-TLS identities under a dev PKI (about a millisecond each).
pub fn identities(n: usize) -> Vec<RatlsIdentity> {
    let pki = match DevPki::generate(b"discovery-sim") {
        Ok(p) => Arc::new(p),
        Err(e) => panic!("dev PKI: {e}"),
    };
    let provider = DevQuoteProvider::new(pki, DevTd::named("sim"));
    (0..n)
        .map(
            |_| match issue(&provider, &network(), SIM_NOW, 30 * 86_400) {
                Ok(id) => id,
                Err(e) => panic!("identity: {e}"),
            },
        )
        .collect()
}

/// A shared verification result.
type Verdict = Result<Arc<VerifiedRecord>, RecordError>;

/// Verifies each distinct signed record once (signature and ticket, by
/// [`record_check`]) and shares the result.
#[derive(Debug)]
pub struct SharedVerifier {
    check: RecordCheck,
    seen: Mutex<HashMap<[u8; 32], Verdict>>,
    /// Distinct records verified.
    pub verified: std::sync::atomic::AtomicU64,
}

impl RecordVerifier for SharedVerifier {
    fn verify(
        &self,
        signed: &SignedRecord,
        now_ms: u64,
    ) -> Result<Arc<VerifiedRecord>, RecordError> {
        let mut h = blake3::Hasher::new();
        h.update(&signed.record_bytes);
        h.update(&signed.spki);
        h.update(&signed.signature);
        let key = *h.finalize().as_bytes();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.entry(key)
            .or_insert_with(|| {
                self.verified
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                RecordVerifier::verify(&self.check, signed, now_ms)
            })
            .clone()
    }

    fn expires(&self, record: &VerifiedRecord) -> u64 {
        record.ticket_expires()
    }
}

/// Settings of a simulation.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Simulated time per step.
    pub step_ms: u64,
    /// Fraction of messages lost.
    pub loss: f64,
    /// Seed of the loss and choice generator.
    pub seed: u64,
    /// Protocol settings of every node.
    pub config: GossipConfig,
}

impl Default for SimOptions {
    fn default() -> Self {
        let mut config = GossipConfig::new(network());
        config.reconnect_interval = std::time::Duration::from_secs(5);
        config.sync_interval = std::time::Duration::from_secs(2);
        SimOptions {
            step_ms: 100,
            loss: 0.0,
            seed: 1,
            config,
        }
    }
}

/// Per-step message counts.
#[derive(Debug, Clone, Default)]
pub struct StepStats {
    /// Messages each node sent during the last step.
    pub sent: Vec<u32>,
}

/// The simulated network.
pub struct Sim {
    opts: SimOptions,
    pool: Vec<RatlsIdentity>,
    /// The nodes (index = creation order).
    pub nodes: Vec<Gossip>,
    alive: Vec<bool>,
    group: Vec<u32>,
    index: HashMap<NodeId, usize>,
    conns: BTreeSet<(usize, usize)>,
    inflight: Vec<(usize, usize, DiscoveryMsg)>,
    dials: Vec<(usize, usize)>,
    closes: Vec<(usize, usize)>,
    verifier: Arc<SharedVerifier>,
    rng: Rng,
    /// Simulated time, Unix ms.
    pub now: u64,
    /// Steps taken.
    pub steps: u64,
    /// Messages sent per node in the last step.
    pub sent: Vec<u32>,
    /// Messages lost (loss or partition).
    pub lost: u64,
    /// Catalog events per node, when recording is on.
    pub events: Vec<Vec<CatalogEvent>>,
    record_events: bool,
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Sim {
    /// A network of `n` nodes; identities for `spare` more are made for
    /// later joins. Nobody is connected yet: see [`Sim::join_all`].
    pub fn new(n: usize, spare: usize, opts: SimOptions) -> Sim {
        let pool = identities(n + spare);
        let mut sim = Sim {
            rng: Rng::new(opts.seed),
            opts,
            pool,
            nodes: Vec::new(),
            alive: Vec::new(),
            group: Vec::new(),
            index: HashMap::new(),
            conns: BTreeSet::new(),
            inflight: Vec::new(),
            dials: Vec::new(),
            closes: Vec::new(),
            verifier: Arc::new(SharedVerifier {
                check: record_check(),
                seen: Mutex::default(),
                verified: Default::default(),
            }),
            now: SIM_NOW * 1000,
            steps: 0,
            sent: Vec::new(),
            lost: 0,
            events: Vec::new(),
            record_events: false,
        };
        for _ in 0..n {
            sim.spawn();
        }
        sim
    }

    /// Keep every node's catalog events in [`Sim::events`].
    pub fn record_events(&mut self) {
        self.record_events = true;
    }

    fn spawn(&mut self) -> usize {
        let i = self.nodes.len();
        let id = self.pool[i].clone();
        let local = LocalInfo {
            addrs: vec![std::net::SocketAddr::from((
                [10, (i >> 16) as u8, (i >> 8) as u8, i as u8],
                4433,
            ))],
            software: "sim".into(),
            ticket: ticket(&id),
            ..LocalInfo::default()
        };
        let node = match Gossip::new(
            id,
            local,
            self.opts.config.clone(),
            self.verifier.clone(),
            self.now,
        ) {
            Ok(g) => g,
            Err(e) => panic!("gossip: {e}"),
        };
        self.index.insert(node.node_id(), i);
        self.nodes.push(node);
        self.alive.push(true);
        self.group.push(0);
        self.sent.push(0);
        self.events.push(Vec::new());
        i
    }

    /// Node `i`'s id.
    pub fn id(&self, i: usize) -> NodeId {
        self.nodes[i].node_id()
    }

    /// Whether node `i` runs.
    pub fn is_alive(&self, i: usize) -> bool {
        self.alive[i]
    }

    /// Indices of running nodes.
    pub fn alive(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.alive[*i]).collect()
    }

    /// Distinct records verified so far (for the whole simulation).
    pub fn verifications(&self) -> u64 {
        self.verifier
            .verified
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every node but the first joins through a random earlier node.
    pub fn join_all(&mut self) {
        for i in 1..self.nodes.len() {
            let contact = self.rng.below(i);
            self.dials.push((i, contact));
        }
    }

    /// Start a new node joining through `contact`. Returns its index.
    pub fn add_node(&mut self, contact: usize) -> usize {
        let i = self.spawn();
        self.dials.push((i, contact));
        i
    }

    /// Crash node `i`: it stops answering; peers' connections to it go
    /// silent (nobody is told).
    pub fn kill(&mut self, i: usize) {
        self.alive[i] = false;
    }

    /// Node `i` leaves gracefully (a signed departure).
    pub fn depart(&mut self, i: usize) {
        let now = self.now;
        let outs = match self.nodes[i].depart(now) {
            Ok(o) => o,
            Err(e) => panic!("depart: {e}"),
        };
        self.handle(i, outs);
        self.alive[i] = false;
    }

    /// Put node `i` in partition group `g` (messages and dials between groups
    /// are lost; existing connections go silent).
    pub fn set_group(&mut self, i: usize, g: u32) {
        self.group[i] = g;
    }

    /// Everyone back in group 0.
    pub fn heal(&mut self) {
        self.group.iter_mut().for_each(|g| *g = 0);
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        self.alive[a] && self.alive[b] && self.group[a] == self.group[b]
    }

    /// Carry out outputs node `i` produced outside [`Sim::step`] (after a
    /// direct call such as [`Gossip::set_local`]).
    pub fn deliver(&mut self, i: usize, outs: Vec<Out>) {
        self.handle(i, outs);
    }

    fn handle(&mut self, i: usize, outs: Vec<Out>) {
        for out in outs {
            match out {
                Out::Send { to, msg } => {
                    if let Err(e) = msg.check_bounds() {
                        panic!("node {i} sent a message over its bounds: {e}");
                    }
                    self.sent[i] += 1;
                    if let Some(&j) = self.index.get(&to) {
                        self.inflight.push((i, j, msg));
                    }
                }
                Out::Connect { node_id, .. } => {
                    if let Some(&j) = self.index.get(&node_id) {
                        self.dials.push((i, j));
                    }
                }
                Out::Release(peer) => {
                    if let Some(&j) = self.index.get(&peer) {
                        self.closes.push((i, j));
                    }
                }
                Out::Keep(_) => {}
                Out::Event(e) => {
                    if self.record_events {
                        self.events[i].push(e);
                    }
                }
            }
        }
    }

    /// One step: deliver, connect, close (what was released during the
    /// previous step), tick.
    pub fn step(&mut self) {
        self.now += self.opts.step_ms;
        self.steps += 1;
        self.sent.iter_mut().for_each(|s| *s = 0);
        let now = self.now;
        // Releases asked for during the last step take effect after the
        // messages queued with them went out (the transport's grace).
        let closes = std::mem::take(&mut self.closes);
        for (from, to, msg) in std::mem::take(&mut self.inflight) {
            let lost = self.opts.loss > 0.0
                && (self.rng.next_u64() as f64 / u64::MAX as f64) < self.opts.loss;
            // A message already sent arrives even if its sender stopped since.
            let reachable = self.alive[to] && self.group[from] == self.group[to];
            if lost || !reachable || !self.conns.contains(&pair(from, to)) {
                self.lost += 1;
                continue;
            }
            let sender = self.id(from);
            let outs = self.nodes[to].on_message(sender, msg, now);
            self.handle(to, outs);
        }
        for (a, b) in std::mem::take(&mut self.dials) {
            if !self.alive[a] {
                continue;
            }
            let (ia, ib) = (self.id(a), self.id(b));
            if a != b && self.reachable(a, b) {
                let fresh = self.conns.insert(pair(a, b));
                if fresh {
                    let outs = self.nodes[b].on_connected(ia, now);
                    self.handle(b, outs);
                }
                let outs = self.nodes[a].on_connected(ib, now);
                self.handle(a, outs);
            } else {
                let outs = self.nodes[a].on_connect_failed(ib, now);
                self.handle(a, outs);
            }
        }
        for (a, b) in closes {
            // As the transport: a release closes the connection unless the
            // releasing side holds it again (took the peer back since).
            if self.nodes[a].active().contains(&self.id(b)) {
                continue;
            }
            if self.conns.remove(&pair(a, b)) {
                let (ia, ib) = (self.id(a), self.id(b));
                if self.alive[a] {
                    let outs = self.nodes[a].on_disconnected(ib, now);
                    self.handle(a, outs);
                }
                if self.alive[b] {
                    let outs = self.nodes[b].on_disconnected(ia, now);
                    self.handle(b, outs);
                }
            }
        }
        for i in 0..self.nodes.len() {
            if self.alive[i] {
                let outs = self.nodes[i].on_tick(now);
                self.handle(i, outs);
            }
        }
    }

    /// Step until `done` holds, at most `max` steps. Returns the steps taken
    /// or `None`.
    pub fn run_until(&mut self, max: u64, mut done: impl FnMut(&Sim) -> bool) -> Option<u64> {
        for k in 0..=max {
            if done(self) {
                return Some(k);
            }
            self.step();
        }
        None
    }

    /// Running nodes whose catalog holds `id` at `version` or newer (or is
    /// `id` itself).
    pub fn holders(&self, id: &NodeId, version: u64) -> usize {
        self.alive()
            .into_iter()
            .filter(|i| {
                let n = &self.nodes[*i];
                n.node_id() == *id
                    || n.catalog()
                        .get(id)
                        .is_some_and(|p| p.record().version >= version)
            })
            .count()
    }

    /// Running nodes that no longer hold `id` as live.
    pub fn forgotten(&self, id: &NodeId) -> usize {
        self.alive()
            .into_iter()
            .filter(|i| !self.nodes[*i].catalog().contains(id))
            .count()
    }

    /// Whether every running node's catalog holds exactly every other
    /// running node.
    pub fn converged(&self) -> bool {
        let alive = self.alive();
        alive.iter().all(|i| {
            let c = self.nodes[*i].catalog();
            c.len() == alive.len() - 1
                && alive
                    .iter()
                    .all(|j| i == j || c.contains(&self.nodes[*j].node_id()))
        })
    }

    /// Largest active view among running nodes.
    pub fn max_active(&self) -> usize {
        self.alive()
            .into_iter()
            .map(|i| self.nodes[i].active().len())
            .max()
            .unwrap_or(0)
    }

    /// Largest number of connections a running node has.
    pub fn max_connections(&self) -> usize {
        let mut per = vec![0usize; self.nodes.len()];
        for (a, b) in &self.conns {
            if self.alive[*a] && self.alive[*b] {
                per[*a] += 1;
                per[*b] += 1;
            }
        }
        per.into_iter().max().unwrap_or(0)
    }

    /// Connections of node `i` that neither end counts as active.
    pub fn idle_connections(&self, i: usize) -> Vec<usize> {
        self.conns
            .iter()
            .filter_map(|(a, b)| {
                let other = if *a == i {
                    *b
                } else if *b == i {
                    *a
                } else {
                    return None;
                };
                let used = self.nodes[i].active().contains(&self.id(other))
                    || self.nodes[other].active().contains(&self.id(i));
                (!used).then_some(other)
            })
            .collect()
    }

    /// Whether the running nodes' active views form one connected graph.
    pub fn overlay_connected(&self) -> bool {
        let alive = self.alive();
        let Some(&start) = alive.first() else {
            return true;
        };
        let mut seen = BTreeSet::from([start]);
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            for peer in self.nodes[i].active() {
                if let Some(&j) = self.index.get(&peer) {
                    if self.alive[j] && seen.insert(j) {
                        stack.push(j);
                    }
                }
            }
        }
        seen.len() == alive.len()
    }

    /// Events of `reason` about `id` recorded at node `i`.
    pub fn departures(&self, i: usize, id: &NodeId) -> Vec<DepartReason> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                CatalogEvent::Departed { node_id, reason } if node_id == id => Some(*reason),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formed(n: usize) -> Sim {
        let mut sim = Sim::new(n, 4, SimOptions::default());
        sim.record_events();
        sim.join_all();
        let steps = sim.run_until(300, Sim::converged);
        assert!(steps.is_some(), "{n} nodes did not converge in 300 steps");
        sim
    }

    #[test]
    fn thirty_nodes_converge_with_bounded_views() {
        let sim = formed(30);
        let max = sim.opts.config.active_size;
        assert!(sim.max_active() <= max, "{}", sim.max_active());
        assert!(sim.overlay_connected());
        // Transient connections (joins, refused neighbours, indirect
        // probes) are released within the connect timeout (5 s).
        let mut sim = sim;
        sim.run_until(150, |_| false);
        let idle: Vec<(usize, Vec<usize>)> = sim
            .alive()
            .into_iter()
            .map(|i| (i, sim.idle_connections(i)))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        assert!(
            sim.max_connections() <= max + 2,
            "{} connections; idle: {idle:?}",
            sim.max_connections()
        );
    }

    #[test]
    fn a_new_record_floods_to_everyone_within_a_few_hops() {
        let mut sim = formed(40);
        let now = sim.now;
        let ticket = sim.nodes[5].own_record().ticket.clone();
        let outs = sim.nodes[5]
            .set_local(
                LocalInfo {
                    addrs: vec!["10.9.9.9:1".parse().expect("addr")],
                    ticket,
                    ..LocalInfo::default()
                },
                now,
            )
            .expect("re-sign");
        sim.handle(5, outs);
        let (id, v) = (sim.id(5), sim.nodes[5].own_record().version);
        let steps = sim
            .run_until(20, |s| s.holders(&id, v) == 40)
            .expect("spreads");
        assert!(steps <= 8, "{steps} hops");
    }

    #[test]
    fn a_crashed_node_is_detected_and_forgotten_everywhere() {
        let mut sim = formed(25);
        let victim = 7;
        let id = sim.id(victim);
        sim.kill(victim);
        let steps = sim
            .run_until(400, |s| s.forgotten(&id) == 24)
            .expect("everyone forgets the crashed node");
        // Probe period 1 s + suspicion 5 s = about 60 steps of 100 ms.
        assert!(steps < 200, "{steps}");
        assert!(sim
            .alive()
            .iter()
            .all(|i| !sim.nodes[*i].active().contains(&id)));
        let failed_somewhere = sim
            .alive()
            .iter()
            .any(|i| sim.departures(*i, &id).contains(&DepartReason::Failed));
        assert!(failed_somewhere);
        // The views heal.
        sim.run_until(100, |_| false);
        assert!(sim.overlay_connected());
    }

    #[test]
    fn a_graceful_departure_is_known_everywhere() {
        let mut sim = formed(25);
        let id = sim.id(3);
        sim.depart(3);
        sim.run_until(30, |s| s.forgotten(&id) == 24)
            .expect("departure spreads");
        for i in sim.alive() {
            assert_eq!(
                sim.departures(i, &id),
                vec![DepartReason::Announced],
                "node {i}"
            );
        }
    }

    #[test]
    fn a_partitioned_half_rejoins_and_both_halves_converge() {
        let mut sim = formed(20);
        for i in 10..20 {
            sim.set_group(i, 1);
        }
        // Long enough for each side to declare the other failed.
        sim.run_until(150, |_| false);
        let a_knows_b = sim.nodes[0].catalog().contains(&sim.id(15));
        assert!(!a_knows_b, "the other half was declared failed");
        // Each half carries on; a new record in the second half stays there.
        sim.heal();
        let now = sim.now;
        let local = LocalInfo {
            ticket: sim.nodes[15].own_record().ticket.clone(),
            ..LocalInfo::default()
        };
        let outs = sim.nodes[15].set_local(local, now).expect("re-sign");
        sim.handle(15, outs);
        let steps = sim.run_until(600, Sim::converged);
        if steps.is_none() {
            for i in sim.alive() {
                let n = &sim.nodes[i];
                eprintln!(
                    "node {i}: catalog {} gone {} active {:?} passive {} stats {:?}",
                    n.catalog().len(),
                    n.catalog().gone_len(),
                    n.active().iter().map(|a| sim.index[a]).collect::<Vec<_>>(),
                    n.passive().len(),
                    n.stats()
                );
            }
        }
        assert!(steps.is_some(), "the halves did not merge");
        assert!(sim.overlay_connected());
        let v = sim.nodes[15].own_record().version;
        assert_eq!(sim.holders(&sim.id(15), v), 20);
    }

    #[test]
    fn loss_and_churn_still_converge() {
        let opts = SimOptions {
            loss: 0.01,
            ..SimOptions::default()
        };
        let mut sim = Sim::new(40, 4, opts);
        sim.join_all();
        sim.run_until(300, Sim::converged)
            .expect("converges under 1% loss");
        sim.kill(4);
        sim.kill(9);
        let a = sim.add_node(0);
        let b = sim.add_node(12);
        let steps = sim.run_until(600, Sim::converged);
        assert!(steps.is_some(), "churn did not settle");
        assert!(sim.nodes[a].catalog().len() == 39 && sim.nodes[b].catalog().len() == 39);
    }
}
