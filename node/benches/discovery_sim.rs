//! Discovery at scale, in the simulator (`tessella_node::discovery::sim`):
//! the real protocol state machine, real signed records and tickets, one
//! step of latency per message hop (a "round" below is one step of 100 ms).
//!
//! For each size (`TESSELLA_SIM_SIZES`, default `1000`; add `10000` for the
//! large run, which needs several GB of memory because every simulated node
//! holds a full catalog), with 1% message loss throughout:
//!
//! 1. formation: every node joins through a random earlier node at once;
//!    rounds until every catalog is complete;
//! 2. dissemination: one node re-signs its record; rounds until 99.9% and
//!    100% of nodes hold it; messages sent per node per round (mean, max);
//! 3. churn: 5% of nodes crash and as many new ones join at once; rounds
//!    until every crashed node is forgotten everywhere and every newcomer
//!    known everywhere; a new record spread during the churn;
//! 4. a graceful departure: rounds until it is known everywhere;
//! 5. largest active view and largest number of connections of any node.
//!
//! Targets at 10,000 nodes: 99.9% within 15 rounds, 100% within 25, at most
//! 10 connections per node, per-node messages per round independent of n.
//! Figures are printed and emitted as `BENCH {json}` lines, never asserted.

use std::time::Instant;

use tessella_node::discovery::sim::{Sim, SimOptions};
use tessella_node::discovery::LocalInfo;

fn bench_line(figure: &str, value: f64, unit: &str) {
    println!(
        "BENCH {{\"bench\": \"discovery_sim\", \"figure\": \"{figure}\", \"value\": {value:.3}, \"unit\": \"{unit}\"}}"
    );
}

/// Re-sign node `i`'s record (a new version to spread). Returns its version.
fn bump(sim: &mut Sim, i: usize) -> u64 {
    let own = sim.nodes[i].own_record().clone();
    let local = LocalInfo {
        addrs: own.addrs,
        tags: own.tags,
        services: own.services,
        ticket: own.ticket,
        software: format!("{}+", own.software),
    };
    let now = sim.now;
    let outs = sim.nodes[i].set_local(local, now).expect("re-sign");
    sim.deliver(i, outs);
    sim.nodes[i].own_record().version
}

/// Steps until `frac` of running nodes hold `i`'s record at `v`; also the
/// messages sent per node per step meanwhile (mean, max).
fn spread(sim: &mut Sim, i: usize, v: u64, max: u64) -> (Option<u64>, Option<u64>, f64, u32) {
    let id = sim.id(i);
    let (mut p999, mut all) = (None, None);
    let (mut total, mut steps, mut peak) = (0u64, 0u64, 0u32);
    for k in 0..=max {
        let alive = sim.alive().len();
        let holders = sim.holders(&id, v);
        if p999.is_none() && holders as f64 >= alive as f64 * 0.999 {
            p999 = Some(k);
        }
        if holders == alive {
            all = Some(k);
            break;
        }
        sim.step();
        let alive = sim.alive();
        total += alive.iter().map(|j| u64::from(sim.sent[*j])).sum::<u64>();
        peak = peak.max(alive.iter().map(|j| sim.sent[*j]).max().unwrap_or(0));
        steps += alive.len() as u64;
    }
    (p999, all, total as f64 / steps.max(1) as f64, peak)
}

/// Messages per node per step over `k` quiet steps (mean, max).
fn idle_traffic(sim: &mut Sim, k: u64) -> (f64, u32) {
    let (mut total, mut n, mut peak) = (0u64, 0u64, 0u32);
    for _ in 0..k {
        sim.step();
        let alive = sim.alive();
        total += alive.iter().map(|j| u64::from(sim.sent[*j])).sum::<u64>();
        peak = peak.max(alive.iter().map(|j| sim.sent[*j]).max().unwrap_or(0));
        n += alive.len() as u64;
    }
    (total as f64 / n.max(1) as f64, peak)
}

fn run(n: usize) {
    println!("== {n} nodes, 1% message loss, 100 ms per round");
    let churn = (n / 20).max(1);
    let t0 = Instant::now();
    let mut opts = SimOptions {
        loss: 0.01,
        ..SimOptions::default()
    };
    // Catalogs hold the whole network, and during churn the newcomers
    // before the crashed nodes are declared failed: n + churn entries. The
    // default bound (10,000) would evict live records at 10,000 nodes and
    // measure eviction, not dissemination.
    opts.config.max_entries = opts.config.max_entries.max(n + 2 * churn);
    let mut sim = Sim::new(n, churn, opts);
    println!("  {n} identities in {:.1} s", t0.elapsed().as_secs_f64());

    let t0 = Instant::now();
    sim.join_all();
    let formed = sim.run_until(3000, Sim::converged);
    println!(
        "  formation (all join at once): {:?} rounds ({:.1} s wall); largest active view {}, most connections {}",
        formed,
        t0.elapsed().as_secs_f64(),
        sim.max_active(),
        sim.max_connections()
    );
    if let Some(r) = formed {
        bench_line(&format!("formation_{n}_rounds"), r as f64, "rounds");
    }
    let (idle_mean, idle_max) = idle_traffic(&mut sim, 100);
    println!("  idle: {idle_mean:.2} messages per node per round (max {idle_max})");
    bench_line(&format!("idle_msgs_per_node_round_{n}"), idle_mean, "msgs");

    let v = bump(&mut sim, n / 2);
    let (p999, all, mean, peak) = spread(&mut sim, n / 2, v, 200);
    println!(
        "  a new record: 99.9% after {p999:?} rounds, 100% after {all:?} (targets at 10,000: 15 and 25); \
         {mean:.2} messages per node per round meanwhile (max {peak})"
    );
    if let (Some(a), Some(b)) = (p999, all) {
        bench_line(&format!("spread_999_{n}_rounds"), a as f64, "rounds");
        bench_line(&format!("spread_all_{n}_rounds"), b as f64, "rounds");
    }
    bench_line(&format!("spread_msgs_per_node_round_{n}"), mean, "msgs");
    bench_line(&format!("spread_msgs_max_{n}"), f64::from(peak), "msgs");

    // Churn: 5% crash, 5% join, at once.
    let victims: Vec<usize> = (0..churn).map(|k| 1 + k * (n - 1) / churn).collect();
    for &i in &victims {
        sim.kill(i);
    }
    // Newcomers join through running nodes (a real node would retry its
    // bootstrap addresses until one answers).
    let contacts: Vec<usize> = sim.alive().into_iter().step_by(7).take(churn).collect();
    let newcomers: Vec<usize> = contacts.into_iter().map(|c| sim.add_node(c)).collect();
    let ids: Vec<_> = victims.iter().map(|i| sim.id(*i)).collect();
    let new_ids: Vec<_> = newcomers.iter().map(|i| sim.id(*i)).collect();
    let mover = n / 3;
    let v = bump(&mut sim, mover);
    let t0 = Instant::now();
    let mut spread_all = None;
    let settled = sim.run_until(3000, |s| {
        let alive = s.alive().len();
        if spread_all.is_none() && s.holders(&s.id(mover), v) == alive {
            spread_all = Some(s.steps);
        }
        ids.iter().all(|id| s.forgotten(id) == alive)
            && new_ids.iter().all(|id| s.holders(id, 0) == alive)
    });
    println!(
        "  churn ({churn} crash, {churn} join): settled after {settled:?} rounds ({:.1} s wall); \
         a record spread meanwhile reached everyone {:?} rounds in; largest active view {}, most connections {}",
        t0.elapsed().as_secs_f64(),
        spread_all.map(|s| s.saturating_sub(sim.steps - settled.unwrap_or(0))),
        sim.max_active(),
        sim.max_connections()
    );
    if let Some(r) = settled {
        bench_line(&format!("churn_settled_{n}_rounds"), r as f64, "rounds");
    }

    // A running node that is not a churn victim (at 2,000 nodes, victim 25
    // is node 500 = n / 4).
    let leaver = (n / 4..sim.nodes.len())
        .find(|i| sim.is_alive(*i) && !victims.contains(i))
        .expect("a running node to leave");
    let id = sim.id(leaver);
    sim.depart(leaver);
    let gone = sim.run_until(500, |s| s.forgotten(&id) == s.alive().len());
    println!("  a graceful departure known everywhere after {gone:?} rounds");
    if let Some(r) = gone {
        bench_line(&format!("departure_{n}_rounds"), r as f64, "rounds");
    }
    bench_line(
        &format!("max_active_view_{n}"),
        sim.max_active() as f64,
        "peers",
    );
    bench_line(
        &format!("max_connections_{n}"),
        sim.max_connections() as f64,
        "connections",
    );
    println!(
        "  distinct records verified: {}; messages lost: {}",
        sim.verifications(),
        sim.lost
    );
}

fn main() {
    let sizes: Vec<usize> = std::env::var("TESSELLA_SIM_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1000]);
    for n in sizes {
        run(n);
    }
}
