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
//!    survivor succeeds; a fresh cluster each time; median and max;
//! 5. the 64-client durable write level again, on a fresh cluster per
//!    `max_in_flight` value (the batcher's bound on proposed, uncommitted
//!    entries): commits/s and p50/p99 per value;
//! 6. snapshot install: a group with `snapshot_every` 10000 and `keep_logs`
//!    1000 takes 100,000 commands (`RegCmd::Write(i % 1000, i)`, 64 clients
//!    at the leader); once the leader has purged its log, a 4th node joins
//!    as a learner and is timed from `join` returning until its map matches
//!    the leader's and it holds a snapshot (the log before the snapshot is
//!    gone, so it must install one); the snapshot's size in bytes.
//!
//! Run: `cargo bench -p tessella-node --bench groups`
//! (`TESSELLA_BENCH_GROUP_SECS` (default 3) seconds per load level,
//! `TESSELLA_BENCH_FAILOVERS` (default 5) failovers per store,
//! `TESSELLA_BENCH_GROUP_IN_FLIGHT` (comma-separated, default the
//! `GroupConfig` default, 2) the `max_in_flight` values of section 5,
//! `TESSELLA_BENCH_SNAPSHOT_ENTRIES` (default 100000, 0 skips) the commands
//! of section 6, `TESSELLA_BENCH_SNAPSHOT_STORE` (`durable`, the default, or
//! `memory`) its store).
//! Targets: 64-client durable writes >= 123000 commits/s (mosaik-level; the
//! ratio to it is printed), durable at least half of in-memory, 1-client
//! durable write p50 <= 0.5 ms, failover
//! (leader death to new leader) < 1 s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessella_node::discovery::GroupRole;
use tessella_node::groups::{Consistency, Group, GroupConfig, StateMachine};
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
/// Section 6: build a snapshot after this many entries.
const SNAPSHOT_EVERY: u64 = 10_000;
/// Section 6: entries kept behind a snapshot.
const SNAPSHOT_KEEP_LOGS: u64 = 1_000;
/// Section 6: distinct registers written (command `i` writes `i % KEYS`).
const SNAPSHOT_KEYS: u64 = 1_000;
/// Section 6: client tasks writing at the leader.
const SNAPSHOT_CLIENTS: usize = 64;
/// Section 6: longest the wait for the leader's purge may take, extra
/// writes included, before the section gives up.
const PURGE_LIMIT: Duration = Duration::from_secs(180);
/// Section 6: longest the learner may take to catch up before the install
/// counts as failed.
const INSTALL_LIMIT: Duration = Duration::from_secs(120);
/// How often section 6 polls while timing the learner.
const FINE_POLL: Duration = Duration::from_millis(2);

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
    bench_line_with(figure, value, unit, &[]);
}

/// [`bench_line`] with extra integer fields (the parameters of the run).
fn bench_line_with(figure: &str, value: f64, unit: &str, extra: &[(&str, u64)]) {
    let extra: String = extra
        .iter()
        .map(|(k, v)| format!(", \"{k}\": {v}"))
        .collect();
    println!(
        "BENCH {{\"bench\": \"groups\", \"figure\": \"{figure}\", \"value\": {value:.3}, \"unit\": \"{unit}\"{extra}}}"
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

/// `TESSELLA_BENCH_GROUP_IN_FLIGHT`: comma-separated positive integers; the
/// `GroupConfig` default when unset or when no value parses.
fn env_in_flight() -> Vec<usize> {
    let default = vec![GroupConfig::default().max_in_flight];
    let Ok(raw) = std::env::var("TESSELLA_BENCH_GROUP_IN_FLIGHT") else {
        return default;
    };
    let mut out = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<usize>() {
            Ok(v) if v > 0 => out.push(v),
            _ => eprintln!(
                "TESSELLA_BENCH_GROUP_IN_FLIGHT: ignoring {part:?} (not a positive integer)"
            ),
        }
    }
    if out.is_empty() {
        default
    } else {
        out
    }
}

/// A node whose ticket grants the bench group, on `store`.
async fn group_node(fixture: &Fixture, store: Store, bootstrap: Vec<std::net::SocketAddr>) -> Node {
    let mut o = fixture.options();
    o.ticket = fixture.group_ticket(&[GROUP]);
    o.bootstrap = bootstrap;
    if store == Store::Memory {
        o.data_dir = None;
    }
    o.build().await.expect("group node starts")
}

/// Three group nodes with the group founded, all three voters, and every
/// member knowing the leader.
struct Cluster {
    nodes: Vec<Arc<Node>>,
    groups: Vec<Group<Registers>>,
    leader: usize,
}

impl Cluster {
    /// With the default `GroupConfig::with_voters(3)`.
    async fn start(fixture: &Fixture, store: Store) -> Cluster {
        Cluster::start_with(fixture, store, &GroupConfig::with_voters(3)).await
    }

    /// With `config` on every member (three voters).
    async fn start_with(fixture: &Fixture, store: Store, config: &GroupConfig) -> Cluster {
        let first = group_node(fixture, store, Vec::new()).await;
        let boot = first.local_addr();
        let mut nodes = vec![first];
        for _ in 1..3 {
            nodes.push(group_node(fixture, store, vec![boot]).await);
        }
        let refs: Vec<&Node> = nodes.iter().collect();
        wait_until(|| full_mesh_catalogs(&refs), "the cluster converges").await;
        let groups = join_all(&nodes, GROUP, config).await;
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

/// Warm up, then measure `clients` writers through `group`; print and emit
/// (`extra`: the run's parameters, printed before the figures and added to
/// every BENCH line).
async fn write_level(
    group: &Group<Registers>,
    clients: usize,
    run: Duration,
    label: &str,
    extra: &[(&str, u64)],
) -> Load {
    let _ = write_load(group, clients, WARMUP).await;
    let load = write_load(group, clients, run).await;
    let params: String = extra.iter().map(|(k, v)| format!("{k} {v:>3}, ")).collect();
    println!(
        "  {params}{clients:>2} clients: {:>8.0} commits/s  p50 {:>7.3} ms  p99 {:>7.3} ms  ({} commits, {} errors)",
        load.per_sec, load.p50_ms, load.p99_ms, load.commits, load.errors
    );
    bench_line_with(
        &format!("{label}_{clients}c_commits_per_s"),
        load.per_sec,
        "commits/s",
        extra,
    );
    bench_line_with(
        &format!("{label}_{clients}c_p50_ms"),
        load.p50_ms,
        "ms",
        extra,
    );
    bench_line_with(
        &format!("{label}_{clients}c_p99_ms"),
        load.p99_ms,
        "ms",
        extra,
    );
    if load.errors > 0 {
        bench_line_with(
            &format!("{label}_{clients}c_errors"),
            load.errors as f64,
            "count",
            extra,
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
        out.push(write_level(&leader, clients, run, &label, &[]).await);
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
    write_level(&follower, 16, run, "write_follower_durable", &[]).await;
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

/// Section 5: 64 clients at the leader, durable, a fresh cluster per
/// `max_in_flight` value.
async fn in_flight(fixture: &Fixture, values: &[usize], run: Duration) {
    println!(
        "max_in_flight experiment: 64 clients at the leader, durable store, {:.1} s per value (fresh cluster each)",
        run.as_secs_f64()
    );
    for &v in values {
        let config = GroupConfig {
            max_in_flight: v,
            ..GroupConfig::with_voters(3)
        };
        let c = Cluster::start_with(fixture, Store::Durable, &config).await;
        let leader = c.groups[c.leader].clone();
        write_level(
            &leader,
            64,
            run,
            &format!("write_leader_durable_inflight{v}"),
            &[("max_in_flight", v as u64)],
        )
        .await;
        c.stop().await;
    }
}

/// Commands `from..to` (`RegCmd::Write(i % SNAPSHOT_KEYS, i)`) through
/// `group` from [`SNAPSHOT_CLIENTS`] tasks sharing one counter: (commits,
/// errors).
async fn write_range(group: &Group<Registers>, from: u64, to: u64) -> (u64, u64) {
    let next = Arc::new(AtomicU64::new(from));
    let tasks: Vec<_> = (0..SNAPSHOT_CLIENTS)
        .map(|_| {
            let g = group.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let (mut ok, mut errors) = (0u64, 0u64);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= to {
                        return (ok, errors);
                    }
                    match g.execute(RegCmd::Write(i % SNAPSHOT_KEYS, i)).await {
                        Ok(_) => ok += 1,
                        Err(_) => errors += 1,
                    }
                }
            })
        })
        .collect();
    let (mut ok, mut errors) = (0, 0);
    for t in tasks {
        let (o, e) = t.await.expect("writer task");
        ok += o;
        errors += e;
    }
    (ok, errors)
}

/// Polls `cond` every [`FINE_POLL`]: the time until it held, or `None`
/// after `limit`.
async fn poll_until(mut cond: impl FnMut() -> bool, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(FINE_POLL).await;
    }
}

/// Section 6: a learner joining after the log was purged, timed until it
/// installed the leader's snapshot.
async fn snapshot_install(fixture: &Fixture, store: Store, commands: u64) {
    println!(
        "snapshot install, {} store: {commands} commands (keys 0..{SNAPSHOT_KEYS}) from {SNAPSHOT_CLIENTS} clients at the leader; snapshot_every {SNAPSHOT_EVERY}, keep_logs {SNAPSHOT_KEEP_LOGS}",
        store.name()
    );
    let label = format!("snapshot_{}", store.name());
    let params = [("entries", commands)];
    let fail = |why: &str| {
        println!("  FAILED: {why}");
        bench_line_with(&format!("{label}_failed"), 1.0, "count", &params);
    };
    let config = GroupConfig {
        snapshot_every: SNAPSHOT_EVERY,
        keep_logs: SNAPSHOT_KEEP_LOGS,
        ..GroupConfig::with_voters(3)
    };
    let c = Cluster::start_with(fixture, store, &config).await;
    let leader = c.groups[c.leader].clone();

    let t = Instant::now();
    let (mut written, mut errors) = write_range(&leader, 0, commands).await;
    let secs = t.elapsed().as_secs_f64();
    let st = leader.status();
    println!(
        "  wrote {written} commands in {secs:.2} s ({:.0} commits/s, {errors} errors); leader log index {}, snapshot {}, purged {}",
        written as f64 / secs,
        st.last_log_index,
        st.snapshot,
        st.purged
    );
    bench_line_with(
        &format!("{label}_write_commits_per_s"),
        written as f64 / secs,
        "commits/s",
        &params,
    );
    bench_line_with(
        &format!("{label}_log_entries"),
        st.last_log_index as f64,
        "count",
        &params,
    );

    // Commands ride many to a log entry: if `commands` made fewer than
    // `snapshot_every` entries there is nothing purged yet; write on.
    let start = Instant::now();
    let mut next = commands;
    let mut purged = false;
    while start.elapsed() < PURGE_LIMIT {
        if poll_until(|| leader.status().purged > 0, Duration::from_secs(2))
            .await
            .is_some()
        {
            purged = true;
            break;
        }
        let more = commands.clamp(1_000, 20_000);
        let (o, e) = write_range(&leader, next, next + more).await;
        next += more;
        written += o;
        errors += e;
    }
    let st = leader.status();
    if next > commands {
        println!(
            "  the log was not purged after {commands} commands: wrote on to {written} commands ({errors} errors); leader log index {}",
            st.last_log_index
        );
        bench_line_with(
            &format!("{label}_commands_written"),
            written as f64,
            "count",
            &params,
        );
    }
    if !purged {
        fail(&format!(
            "the leader purged nothing within {PURGE_LIMIT:?} (snapshot {}, purged {})",
            st.snapshot, st.purged
        ));
        c.stop().await;
        return;
    }
    let keys = leader.read_local(|m| m.0.len());
    let bytes = leader.read_local(|m| m.snapshot().len());
    let leader_applied = leader.applied();
    println!(
        "  leader: log index {}, applied {leader_applied}, snapshot {}, purged {}; machine {keys} keys, snapshot {bytes} bytes",
        st.last_log_index, st.snapshot, st.purged
    );

    let late = group_node(fixture, store, vec![c.nodes[c.follower()].local_addr()]).await;
    {
        let mut refs: Vec<&Node> = c.nodes.iter().map(|n| n.as_ref()).collect();
        refs.push(&late);
        wait_until(|| full_mesh_catalogs(&refs), "the learner's node is known").await;
    }
    let learner_config = GroupConfig {
        role: GroupRole::Learner,
        ..config.clone()
    };
    let learner = late
        .groups()
        .join::<Registers>(GROUP, learner_config)
        .await
        .expect("join as learner");
    let t0 = Instant::now();
    let id = late.node_id().to_string();
    let (mut added, mut installed, mut caught_up, mut applied) = (None, None, None, None);
    let done = poll_until(
        || {
            let now = t0.elapsed();
            if added.is_none() && leader.status().learners.contains(&id) {
                added = Some(now);
            }
            let ls = learner.status();
            if installed.is_none() && ls.snapshot > 0 {
                installed = Some(now);
            }
            if caught_up.is_none() && ls.snapshot > 0 && learner.read_local(|m| m.0.len()) == keys {
                caught_up = Some(now);
            }
            if applied.is_none() && ls.applied >= leader_applied {
                applied = Some(now);
            }
            caught_up.is_some() && applied.is_some()
        },
        INSTALL_LIMIT,
    )
    .await;
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
    let show = |d: Option<Duration>| ms(d).map_or("-".to_string(), |v| format!("{v:.1} ms"));
    let ls = learner.status();
    println!(
        "  learner, from join returning: taken in by the leader {}, snapshot installed {}, map complete {}, applied to the leader's index {}",
        show(added),
        show(installed),
        show(caught_up),
        show(applied)
    );
    println!(
        "  learner: state {}, snapshot {}, purged {}, applied {}",
        ls.state, ls.snapshot, ls.purged, ls.applied
    );
    if let Some(v) = ms(caught_up) {
        println!(
            "  snapshot install time: {v:.1} ms for {written} commands ({} log entries; {keys} keys, {bytes}-byte snapshot)",
            st.last_log_index
        );
        bench_line_with(&format!("{label}_install_ms"), v, "ms", &params);
    }
    bench_line_with(&format!("{label}_bytes"), bytes as f64, "bytes", &params);
    if let Some(v) = ms(added) {
        bench_line_with(&format!("{label}_learner_added_ms"), v, "ms", &params);
    }
    if let Some(v) = ms(applied) {
        bench_line_with(&format!("{label}_learner_applied_ms"), v, "ms", &params);
    }
    if done.is_none() {
        fail(&format!(
            "the learner did not catch up within {INSTALL_LIMIT:?}"
        ));
    }
    late.shutdown().await;
    c.stop().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let run = env_secs("TESSELLA_BENCH_GROUP_SECS", 3.0);
    let runs = env_usize("TESSELLA_BENCH_FAILOVERS", 5);
    let in_flight_values = env_in_flight();
    let snapshot_commands = env_usize("TESSELLA_BENCH_SNAPSHOT_ENTRIES", 100_000) as u64;
    let snapshot_store = match std::env::var("TESSELLA_BENCH_SNAPSHOT_STORE").as_deref() {
        Ok("memory") => Store::Memory,
        _ => Store::Durable,
    };
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
        println!();
        in_flight(&fixture, &in_flight_values, run).await;
        if snapshot_commands > 0 {
            println!();
            snapshot_install(&fixture, snapshot_store, snapshot_commands).await;
        }
    });
}
