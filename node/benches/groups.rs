//! Raft group figures (`tessella_node::groups`), printed, never asserted.
//! Every section runs a 3-node in-process cluster (one multi-thread tokio
//! runtime, QUIC on loopback) with the default `GroupConfig::with_voters(3)`
//! and the test kit's register machine, once on a durable store (redb at
//! `data_dir/groups.redb`, fsync with group commit) and once on the
//! in-memory store (no data dir) as the baseline:
//!
//! 1. write throughput: 1, 16 and 64 client tasks, each looping
//!    `execute(RegCmd::Write(k, v))` on the leader's handle for a fixed time;
//!    commits/s and per-write latency p50/p99, durable beside in-memory
//!    (ratio durable/in-memory);
//! 2. the same with 16 clients writing through a follower (forwarded to the
//!    leader), durable only;
//! 3. read latency p50/p99, 1 client: `Consistency::Linearizable` at the
//!    leader and at a follower, and `Consistency::Local` at both for
//!    comparison;
//! 4. failover: writes idle, the leader's node shuts down; time from the
//!    start of its shutdown until a survivor sees a new leader
//!    (`when().leader_changed()`) and until the first write through that
//!    survivor succeeds; a fresh cluster each time; median and max.
//!
//! Run: `cargo bench -p tessella-node --bench groups`
//! (`TESSELLA_BENCH_GROUP_SECS` (default 3) seconds per load level,
//! `TESSELLA_BENCH_FAILOVERS` (default 5) failovers per store).
//! Targets: 64-client durable writes >= 123000 commits/s (mosaik-level; the
//! ratio to it is printed), 1-client durable write p50 <= 0.5 ms, failover
//! (leader death to new leader) < 1 s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessella_node::groups::{Consistency, Group, GroupConfig};
use tessella_node::Node;
use tessella_tests::kit::{full_mesh_catalogs, join_all, wait_until, Fixture, RegCmd, Registers};

/// The group every section runs.
const GROUP: &str = "bench";
/// Client counts of the write sections.
const CLIENTS: [usize; 3] = [1, 16, 64];
/// Target: 64-client durable commits/s (mosaik-level).
const TARGET_COMMITS: f64 = 123_000.0;
/// Target: 1-client durable write p50, ms.
const TARGET_P50_MS: f64 = 0.5;
/// Target: leader death to new leader, ms.
const TARGET_FAILOVER_MS: f64 = 1000.0;
/// Writes before a load level is measured (connections, caches, batcher).
const WARMUP: Duration = Duration::from_millis(250);
/// Most samples one read series keeps.
const READ_CAP: usize = 100_000;
/// Longest a failover may take before it counts as failed.
const FAILOVER_LIMIT: Duration = Duration::from_secs(15);

/// Where a cluster keeps its Raft log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    /// redb under each node's data dir, fsync (group commit).
    Durable,
    /// redb in memory (nodes without a data dir).
    Memory,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Durable => "durable",
            Store::Memory => "memory",
        }
    }
}

/// One figure for scripts: `BENCH {"bench":..,"figure":..,"value":..,"unit":..}`.
fn bench_line(figure: &str, value: f64, unit: &str) {
    println!(
        "BENCH {{\"bench\": \"groups\", \"figure\": \"{figure}\", \"value\": {value:.3}, \"unit\": \"{unit}\"}}"
    );
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_secs(name: &str, default: f64) -> Duration {
    let secs = std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(default);
    Duration::from_secs_f64(secs)
}

/// Three group nodes with the group founded, all three voters, and every
/// member knowing the leader.
struct Cluster {
    nodes: Vec<Arc<Node>>,
    groups: Vec<Group<Registers>>,
    leader: usize,
}

impl Cluster {
    async fn start(fixture: &Fixture, store: Store) -> Cluster {
        let build = |bootstrap| {
            let mut o = fixture.options();
            o.ticket = fixture.group_ticket(&[GROUP]);
            o.bootstrap = bootstrap;
            if store == Store::Memory {
                o.data_dir = None;
            }
            o.build()
        };
        let first = build(Vec::new()).await.expect("group node starts");
        let boot = first.local_addr();
        let mut nodes = vec![first];
        for _ in 1..3 {
            nodes.push(build(vec![boot]).await.expect("group node starts"));
        }
        let refs: Vec<&Node> = nodes.iter().collect();
        wait_until(|| full_mesh_catalogs(&refs), "the cluster converges").await;
        let groups = join_all(&nodes, GROUP, &GroupConfig::with_voters(3)).await;
        let mut leader = None;
        wait_until(
            || {
                leader = groups.iter().position(|g| g.is_leader());
                leader.is_some_and(|l| {
                    let status = groups[l].status();
                    status.voters.len() == 3
                        && !status.joint
                        && groups.iter().all(|g| g.leader() == groups[l].leader())
                })
            },
            "a leader with three voters, known to every member",
        )
        .await;
        Cluster {
            nodes: nodes.into_iter().map(Arc::new).collect(),
            groups,
            leader: leader.expect("leader"),
        }
    }

    fn follower(&self) -> usize {
        (self.leader + 1) % self.groups.len()
    }

    async fn stop(self) {
        stop(self.nodes).await;
    }
}

async fn stop(nodes: Vec<Arc<Node>>) {
    let tasks: Vec<_> = nodes
        .into_iter()
        .map(|n| tokio::spawn(async move { n.shutdown().await }))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// What one load level did.
struct Load {
    commits: u64,
    errors: u64,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `clients` tasks writing through `group` for `run`.
async fn write_load(group: &Group<Registers>, clients: usize, run: Duration) -> Load {
    let start = Instant::now();
    let deadline = start + run;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let g = group.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut v = 0u64;
                while Instant::now() < deadline {
                    v += 1;
                    let t = Instant::now();
                    match g.execute(RegCmd::Write(c as u64, v)).await {
                        Ok(_) => lat.push(t.elapsed().as_secs_f64() * 1e3),
                        Err(_) => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("client task");
        lat.extend(l);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    let commits = lat.len() as u64;
    Load {
        commits,
        errors,
        per_sec: commits as f64 / secs,
        p50_ms: pct(&mut lat, 0.5),
        p99_ms: pct(&mut lat, 0.99),
    }
}

/// Warm up, then measure `clients` writers through `group`; print and emit.
async fn write_level(group: &Group<Registers>, clients: usize, run: Duration, label: &str) -> Load {
    let _ = write_load(group, clients, WARMUP).await;
    let load = write_load(group, clients, run).await;
    println!(
        "  {clients:>2} clients: {:>8.0} commits/s  p50 {:>7.3} ms  p99 {:>7.3} ms  ({} commits, {} errors)",
        load.per_sec, load.p50_ms, load.p99_ms, load.commits, load.errors
    );
    bench_line(
        &format!("{label}_{clients}c_commits_per_s"),
        load.per_sec,
        "commits/s",
    );
    bench_line(&format!("{label}_{clients}c_p50_ms"), load.p50_ms, "ms");
    bench_line(&format!("{label}_{clients}c_p99_ms"), load.p99_ms, "ms");
    if load.errors > 0 {
        bench_line(
            &format!("{label}_{clients}c_errors"),
            load.errors as f64,
            "count",
        );
    }
    load
}

/// Section 1: writes at the leader, per client count, on one store.
async fn writes_at_leader(fixture: &Fixture, store: Store, run: Duration) -> Vec<Load> {
    println!(
        "writes at the leader, {} store, {:.1} s per level",
        store.name(),
        run.as_secs_f64()
    );
    let c = Cluster::start(fixture, store).await;
    let leader = c.groups[c.leader].clone();
    let mut out = Vec::new();
    for clients in CLIENTS {
        let label = format!("write_leader_{}", store.name());
        out.push(write_level(&leader, clients, run, &label).await);
    }
    c.stop().await;
    out
}

/// Section 2: 16 clients writing through a follower, durable.
async fn writes_at_follower(fixture: &Fixture, run: Duration) {
    println!(
        "writes through a follower (forwarded to the leader), durable store, {:.1} s",
        run.as_secs_f64()
    );
    let c = Cluster::start(fixture, Store::Durable).await;
    let follower = c.groups[c.follower()].clone();
    write_level(&follower, 16, run, "write_follower_durable").await;
    c.stop().await;
}

/// One client reading key 0 through `group` at `consistency` for `run` (at
/// most [`READ_CAP`] reads): latencies in microseconds, and errors.
async fn read_series(
    group: &Group<Registers>,
    consistency: Consistency,
    run: Duration,
) -> (Vec<f64>, u64) {
    // Warm up (connections to the leader, read-index path).
    for _ in 0..50 {
        let _ = group.query(&0, consistency).await;
    }
    let deadline = Instant::now() + run;
    let mut lat = Vec::new();
    let mut errors = 0;
    while Instant::now() < deadline && lat.len() < READ_CAP {
        let t = Instant::now();
        match group.query(&0, consistency).await {
            Ok(_) => lat.push(t.elapsed().as_secs_f64() * 1e6),
            Err(_) => errors += 1,
        }
    }
    (lat, errors)
}

/// Section 3: read latency at the leader and at a follower.
async fn reads(fixture: &Fixture, store: Store, run: Duration) {
    println!(
        "reads, 1 client, {} store, {:.1} s per series",
        store.name(),
        run.as_secs_f64()
    );
    let c = Cluster::start(fixture, store).await;
    c.groups[c.leader]
        .execute(RegCmd::Write(0, 1))
        .await
        .expect("seed write");
    let series = [
        (
            "linearizable",
            "leader",
            c.leader,
            Consistency::Linearizable,
        ),
        (
            "linearizable",
            "follower",
            c.follower(),
            Consistency::Linearizable,
        ),
        ("local", "leader", c.leader, Consistency::Local),
        ("local", "follower", c.follower(), Consistency::Local),
    ];
    for (kind, at, i, consistency) in series {
        let (mut lat, errors) = read_series(&c.groups[i], consistency, run).await;
        let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
        println!(
            "  {kind:<12} at the {at:<8}: p50 {p50:>9.2} us  p99 {p99:>9.2} us  ({} reads, {errors} errors)",
            lat.len()
        );
        let label = format!("read_{kind}_{at}_{}", store.name());
        bench_line(&format!("{label}_p50_us"), p50, "us");
        bench_line(&format!("{label}_p99_us"), p99, "us");
        if errors > 0 {
            bench_line(&format!("{label}_errors"), errors as f64, "count");
        }
    }
    c.stop().await;
}

/// One failover on a fresh cluster: (shutdown call, new leader seen, first
/// write succeeded), each from the start of the leader's shutdown, in ms;
/// `None` for a phase that did not finish within [`FAILOVER_LIMIT`].
async fn failover_once(fixture: &Fixture, store: Store) -> (f64, Option<f64>, Option<f64>) {
    let mut c = Cluster::start(fixture, store).await;
    c.groups[c.leader]
        .execute(RegCmd::Write(0, 1))
        .await
        .expect("write before failover");
    // Writes idle: let the followers apply and heartbeats settle.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let survivor = c.groups[c.follower()].clone();
    // The leader to be replaced is the one known now, at `when()`.
    let mut when = survivor.when();
    let changed = when.leader_changed();
    tokio::pin!(changed);
    let dead = c.nodes.remove(c.leader);
    let t0 = Instant::now();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let shut = async {
        dead.shutdown().await;
        ms(t0.elapsed())
    };
    let recover = async {
        let elected = match tokio::time::timeout(FAILOVER_LIMIT, &mut changed).await {
            Ok(Ok(_)) => ms(t0.elapsed()),
            _ => return (None, None),
        };
        let mut v = 1;
        while t0.elapsed() < FAILOVER_LIMIT {
            v += 1;
            if survivor.execute(RegCmd::Write(0, v)).await.is_ok() {
                return (Some(elected), Some(ms(t0.elapsed())));
            }
        }
        (Some(elected), None)
    };
    let (shutdown_ms, (elected, written)) = tokio::join!(shut, recover);
    c.stop().await;
    (shutdown_ms, elected, written)
}

/// Section 4: `runs` failovers on one store.
async fn failovers(fixture: &Fixture, store: Store, runs: usize) {
    println!(
        "failover, {} store, {runs} runs (fresh cluster each; times from the start of the leader's shutdown)",
        store.name()
    );
    let mut shut = Vec::new();
    let mut elect = Vec::new();
    let mut write = Vec::new();
    let mut failed = 0;
    for run in 0..runs {
        let (s, e, w) = failover_once(fixture, store).await;
        println!(
            "  run {run}: shutdown returned {s:>7.1} ms, new leader {:>9}, first write {:>9}",
            e.map_or("-".into(), |v| format!("{v:.1} ms")),
            w.map_or("-".into(), |v| format!("{v:.1} ms"))
        );
        shut.push(s);
        match (e, w) {
            (Some(e), Some(w)) => {
                elect.push(e);
                write.push(w);
            }
            (Some(e), None) => {
                elect.push(e);
                failed += 1;
            }
            _ => failed += 1,
        }
    }
    let label = format!("failover_{}", store.name());
    if !elect.is_empty() {
        let (med, max) = (pct(&mut elect.clone(), 0.5), pct(&mut elect, 1.0));
        println!(
            "  new leader:  median {med:>7.1} ms  max {max:>7.1} ms  (target < {TARGET_FAILOVER_MS:.0} ms)"
        );
        bench_line(&format!("{label}_elect_median_ms"), med, "ms");
        bench_line(&format!("{label}_elect_max_ms"), max, "ms");
    }
    if !write.is_empty() {
        let (med, max) = (pct(&mut write.clone(), 0.5), pct(&mut write, 1.0));
        println!("  first write: median {med:>7.1} ms  max {max:>7.1} ms");
        bench_line(&format!("{label}_first_write_median_ms"), med, "ms");
        bench_line(&format!("{label}_first_write_max_ms"), max, "ms");
    }
    let med = pct(&mut shut, 0.5);
    println!("  shutdown call: median {med:>7.1} ms; {failed} of {runs} runs failed");
    bench_line(&format!("{label}_shutdown_median_ms"), med, "ms");
    bench_line(&format!("{label}_failed"), failed as f64, "count");
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let run = env_secs("TESSELLA_BENCH_GROUP_SECS", 3.0);
    let runs = env_usize("TESSELLA_BENCH_FAILOVERS", 5);
    rt.block_on(async {
        let fixture = Fixture::new("bench-groups");

        let durable = writes_at_leader(&fixture, Store::Durable, run).await;
        println!();
        let memory = writes_at_leader(&fixture, Store::Memory, run).await;
        println!();
        println!("durable beside the in-memory baseline (durable/in-memory)");
        for ((clients, d), m) in CLIENTS.iter().zip(&durable).zip(&memory) {
            let ratio = d.per_sec / m.per_sec;
            println!(
                "  {clients:>2} clients: {:>8.0} vs {:>8.0} commits/s (x{ratio:.2}); p50 {:.3} vs {:.3} ms (x{:.2})",
                d.per_sec,
                m.per_sec,
                d.p50_ms,
                m.p50_ms,
                d.p50_ms / m.p50_ms
            );
            bench_line(
                &format!("write_leader_{clients}c_durable_over_memory"),
                ratio,
                "ratio",
            );
        }
        if let Some(d64) = durable.last() {
            println!(
                "  64 clients durable: {:.0} commits/s, target >= {TARGET_COMMITS:.0} (mosaik-level): x{:.3} of target",
                d64.per_sec,
                d64.per_sec / TARGET_COMMITS
            );
            bench_line("write_leader_64c_durable_over_target", d64.per_sec / TARGET_COMMITS, "ratio");
        }
        if let Some(d1) = durable.first() {
            println!(
                "  1 client durable: p50 {:.3} ms, target <= {TARGET_P50_MS} ms",
                d1.p50_ms
            );
        }
        println!();
        writes_at_follower(&fixture, run).await;
        println!();
        reads(&fixture, Store::Durable, run).await;
        println!();
        reads(&fixture, Store::Memory, run).await;
        println!();
        failovers(&fixture, Store::Durable, runs).await;
        println!();
        failovers(&fixture, Store::Memory, runs).await;
    });
}
