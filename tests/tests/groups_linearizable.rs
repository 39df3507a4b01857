//! Linearizability of a Raft group under faults: clients on every member
//! read (linearizable), write and compare-and-swap registers while a nemesis
//! isolates members (often the leader), cuts single links, delays and drops
//! datagrams, and kills a member and restarts it from its data dir. Every
//! invocation and outcome is recorded and the history goes through the
//! linearizability checker (`tessella_tests::lincheck`, on stateright's
//! `LinearizabilityTester`).
//!
//! `TESSELLA_LIN_RUNS` runs (default 1), each with its own seed;
//! `TESSELLA_LIN_SECS` seconds of faults per run (default 6);
//! `TESSELLA_LIN_READS=local` makes clients read locally, a negative control
//! the checker should fail.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tessella_node::groups::{Consistency, Group, GroupConfig, GroupError};
use tessella_node::Node;
use tessella_tests::kit::faults::Rng;
use tessella_tests::lincheck::{History, RegOp, RegRet};

const G: &str = "lin";
const KEYS: u64 = 4;
const CLIENTS_PER_NODE: u64 = 2;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How clients read: linearizable, unless `TESSELLA_LIN_READS=local` asks
/// for local reads (a negative control: the checker should then find stale
/// reads under partitions).
fn read_consistency() -> Consistency {
    match std::env::var("TESSELLA_LIN_READS").as_deref() {
        Ok("local") => Consistency::Local,
        _ => Consistency::Linearizable,
    }
}

/// The members as the clients see them: a node may be down (None).
type Members = Arc<Mutex<Vec<Option<Group<Registers>>>>>;

fn handle(members: &Members, i: usize) -> Option<Group<Registers>> {
    members.lock().unwrap_or_else(|p| p.into_inner())[i].clone()
}

/// Record one operation's outcome: errors that prove nothing was applied
/// drop it, others leave it unknown.
fn settle_write(h: &History, t: tessella_tests::lincheck::OpToken, r: Result<RegOut, GroupError>) {
    match r {
        Ok(out) => h.ok(t, out.into()),
        Err(GroupError::NoLeader(_)) | Err(GroupError::Rejected(_)) => h.fail(t),
        Err(_) => h.info(t),
    }
}

async fn client(
    id: u64,
    node: usize,
    members: Members,
    h: History,
    stop: Arc<tokio::sync::Notify>,
    seed: u64,
) {
    let mut rng = Rng(seed ^ id.wrapping_mul(0x1234_5678_9abc_def1));
    let mut last_seen = [0u64; KEYS as usize];
    let mut serial = 0u64;
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        let Some(g) = handle(&members, node) else {
            tokio::select! {
                _ = &mut stopped => return,
                _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
            }
        };
        let key = rng.below(KEYS);
        serial += 1;
        // Unique values: client id in the high bits.
        let value = (id << 32) | serial;
        let op = match rng.below(10) {
            0..=3 => RegOp::Read,
            4..=6 => RegOp::Write(value),
            _ => RegOp::Cas {
                expect: last_seen[key as usize],
                new: value,
            },
        };
        let t = h.invoke(id, key, op);
        let work = async {
            match op {
                RegOp::Read => match g.query(&key, read_consistency()).await {
                    Ok(v) => {
                        if let Some(v) = v {
                            last_seen[key as usize] = v;
                        }
                        h.ok(t, RegRet::Read(v))
                    }
                    Err(_) => h.fail(t),
                },
                RegOp::Write(v) => {
                    let r = g.execute(RegCmd::Write(key, v)).await;
                    if r.is_ok() {
                        last_seen[key as usize] = v;
                    }
                    settle_write(&h, t, r)
                }
                RegOp::Cas { expect, new } => {
                    let r = g.execute(RegCmd::Cas { key, expect, new }).await;
                    settle_write(&h, t, r)
                }
            }
        };
        tokio::select! {
            _ = work => {}
            _ = tokio::time::sleep(Duration::from_secs(4)) => h.info(t),
            _ = &mut stopped => { h.info(t); return; }
        }
        tokio::time::sleep(Duration::from_millis(rng.below(20))).await;
    }
}

/// Restart killed member `i` from its data dir and hand its clients the
/// new handle.
async fn revive(
    fixture: &Fixture,
    dir: &std::path::Path,
    config: &GroupConfig,
    nodes: &mut [Option<Node>],
    members: &Members,
    i: usize,
) {
    let boot: Vec<_> = nodes.iter().flatten().map(|n| n.local_addr()).collect();
    let n = fixture
        .group_node(&[G], Some(dir.to_path_buf()), boot)
        .await;
    let g = n
        .groups()
        .join::<Registers>(G, config.clone())
        .await
        .expect("rejoin");
    nodes[i] = Some(n);
    members.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(g);
}

async fn one_run(run: u64, secs: u64) {
    let fixture = Fixture::new(&format!("groups-lin-{run}"));
    let dirs: Vec<_> = (0..3).map(|_| fixture.data_dir()).collect();
    let first = fixture
        .group_node(&[G], Some(dirs[0].clone()), Vec::new())
        .await;
    let boot = vec![first.local_addr()];
    let mut nodes: Vec<Option<Node>> = vec![Some(first)];
    for dir in &dirs[1..] {
        nodes.push(Some(
            fixture
                .group_node(&[G], Some(dir.clone()), boot.clone())
                .await,
        ));
    }
    let mut config = GroupConfig::with_voters(3);
    config.write_timeout = Duration::from_secs(2);
    config.snapshot_every = 200;
    config.keep_logs = 50;
    let mut handles = Vec::new();
    for n in nodes.iter().flatten() {
        handles.push(Some(
            n.groups()
                .join::<Registers>(G, config.clone())
                .await
                .expect("join"),
        ));
    }
    let members: Members = Arc::new(Mutex::new(handles));
    wait_until(
        || {
            let m = members.lock().unwrap_or_else(|p| p.into_inner());
            m.iter()
                .flatten()
                .any(|g| g.is_leader() && g.status().voters.len() == 3)
        },
        "the group forms",
    )
    .await;

    let h = History::new();
    let stop = Arc::new(tokio::sync::Notify::new());
    let seed = 0x5eed_0000 + run;
    let mut tasks = Vec::new();
    for node in 0..3usize {
        for c in 0..CLIENTS_PER_NODE {
            let id = node as u64 * CLIENTS_PER_NODE + c;
            tasks.push(tokio::spawn(client(
                id,
                node,
                members.clone(),
                h.clone(),
                stop.clone(),
                seed,
            )));
        }
    }

    // The nemesis.
    let mut rng = Rng(seed);
    let started = tokio::time::Instant::now();
    let mut killed: Option<usize> = None;
    let mut actions = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        let addrs: Vec<_> = nodes.iter().flatten().map(|n| n.local_addr()).collect();
        let leader = {
            let m = members.lock().unwrap_or_else(|p| p.into_inner());
            m.iter().flatten().position(|g| g.is_leader())
        };
        // Every run kills a member once, a third of the way in.
        let force_kill =
            !actions.contains(&"kill") && started.elapsed() > Duration::from_secs(secs) / 3;
        let action = if force_kill { 4 } else { rng.below(6) };
        match action {
            0 | 1 => {
                // Isolate the leader (or anyone).
                let i = leader.unwrap_or(rng.below(addrs.len() as u64) as usize);
                if let Some(a) = addrs.get(i) {
                    fixture.faults.isolate(*a);
                    actions.push("isolate");
                }
            }
            2 => {
                let a = addrs[rng.below(addrs.len() as u64) as usize];
                let b = addrs[rng.below(addrs.len() as u64) as usize];
                if a != b {
                    fixture.faults.cut(a, b);
                    actions.push("cut");
                }
            }
            3 => {
                let a = addrs[rng.below(addrs.len() as u64) as usize];
                let b = addrs[rng.below(addrs.len() as u64) as usize];
                fixture
                    .faults
                    .delay(a, b, Duration::from_millis(5 + rng.below(60)));
                fixture.faults.drop_fraction(a, b, 0.2);
                actions.push("delay+drop");
            }
            4 => {
                // Kill a member, or bring the killed one back from disk.
                match killed {
                    None => {
                        let i = rng.below(3) as usize;
                        members.lock().unwrap_or_else(|p| p.into_inner())[i] = None;
                        if let Some(n) = nodes[i].take() {
                            n.shutdown().await;
                        }
                        killed = Some(i);
                        actions.push("kill");
                    }
                    Some(i) => {
                        revive(&fixture, &dirs[i], &config, &mut nodes, &members, i).await;
                        killed = None;
                        actions.push("restart");
                    }
                }
            }
            _ => {
                fixture.faults.clear();
                actions.push("heal");
            }
        }
        tokio::time::sleep(Duration::from_millis(300 + rng.below(500))).await;
    }
    fixture.faults.clear();
    if let Some(i) = killed {
        revive(&fixture, &dirs[i], &config, &mut nodes, &members, i).await;
    }
    // Let the clients run a little on a healthy group, then stop them.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.notify_waiters();
    for t in tasks {
        bounded("a client stops", t).await.expect("client task");
    }
    // Final reads of every key, recorded too.
    let g = bounded("a member", async {
        loop {
            let m = handle(&members, 0);
            if let Some(g) = m {
                return g;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    for key in 0..KEYS {
        let t = h.invoke(999, key, RegOp::Read);
        let v = bounded("a final read", g.query(&key, Consistency::Linearizable))
            .await
            .expect("final read on a healed group");
        h.ok(t, RegRet::Read(v));
    }
    let history = h.clone();
    let checked = tokio::task::spawn_blocking(move || history.check())
        .await
        .expect("checker");
    println!(
        "run {run}: {} ops, nemesis {:?}, check {:?}",
        h.len(),
        actions,
        checked.as_ref().map_err(|a| a.key)
    );
    let stats = checked.unwrap_or_else(|a| panic!("run {run}: not linearizable:\n{a}"));
    assert!(
        stats.definite >= 50,
        "run {run}: too few definite operations to mean anything: {stats:?}"
    );
    for n in nodes.iter().flatten() {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_under_partitions_loss_and_crashes_are_linearizable() {
    let runs = env_u64("TESSELLA_LIN_RUNS", 1);
    let secs = env_u64("TESSELLA_LIN_SECS", 6);
    for run in 0..runs {
        one_run(run, secs).await;
    }
}
