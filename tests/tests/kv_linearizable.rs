//! Linearizability of the key-value API over HTTP, end to end: three
//! `tessella-node dev --member I` processes serve the dev map `kv`; client
//! threads (several per member, each talking only to its member's admin API)
//! `PUT` unique numbers to a few keys and read them back with linearizable
//! `GET`s, while a nemesis `kill -9`s the collection group's leader and
//! restarts it with the same command (same data dir, same ports), and
//! freezes the leader with SIGSTOP for longer than an election takes, then
//! thaws it with SIGCONT. Every invocation and outcome goes into a
//! `tessella_tests::lincheck::History` (one register per key, absent at
//! first) and the history must be linearizable.
//!
//! How HTTP outcomes are recorded (node/src/collections/admin.rs,
//! node/src/groups/core.rs):
//!
//! - 200: a definite return (a `GET` 404 `no_such_key` reads the absent
//!   register).
//! - `PUT` 503 `no_quorum`: failed, nothing applied. The node answers it only
//!   when no leader took the command before the deadline (the routing loop
//!   retries only refusals that prove nothing was proposed: no leader, "not
//!   the leader", nothing sent, or an entry the new leader truncated), when
//!   the group stopped before proposing, or before the map is open.
//! - `PUT` 504 `outcome_unknown`, a timeout, a reset or a connection closed
//!   without an answer: unknown (may have applied, at any later time).
//! - A connection refused (the member is down): failed, nothing was sent.
//! - Reads that fail in any way are dropped: they have no effect.
//!
//! Environment: `TESSELLA_LIN_SECS` seconds of faults (default 8; each
//! cycle kills, restarts and freezes once, and there is at least one cycle);
//! `TESSELLA_LIN_SEED`; `TESSELLA_LIN_READS=local` reads with
//! `consistency=local`, a negative control the checker should fail (a
//! follower's local state lags the commit its leader acknowledged).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tessella_tests::kit::faults::Rng;
use tessella_tests::kit::{bound, free_ports, http_request, scaled, wait_for, HttpError, Member};
use tessella_tests::lincheck::{History, OpToken, RegOp, RegRet};

const NODES: usize = 3;
const KEYS: u64 = 8;
const CLIENTS_PER_MEMBER: u64 = 3;
/// The Raft group behind the dev map `kv`, URL-encoded (`collection/kv`).
const KV_GROUP: &str = "/v1/groups/collection%2Fkv";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How clients read: `linearizable`, or `local` under
/// `TESSELLA_LIN_READS=local`.
fn read_consistency() -> &'static str {
    match std::env::var("TESSELLA_LIN_READS").as_deref() {
        Ok("local") => "local",
        _ => "linearizable",
    }
}

/// Every request's deadline: the node gives up on a write or a read point
/// after its group's `write_timeout` (5 s), so this only ends requests to a
/// frozen member or lost answers.
fn op_timeout() -> Duration {
    scaled(Duration::from_secs(8))
}

fn item_path(key: u64, consistency: &str) -> String {
    format!("/v1/collections/kv/items/k{key}?consistency={consistency}")
}

/// What the clients saw, beyond the history.
#[derive(Default)]
struct Tally {
    ok_writes: AtomicU64,
    ok_reads: AtomicU64,
    absent_reads: AtomicU64,
    /// `PUT` 503: failed without effect.
    no_quorum_writes: AtomicU64,
    /// `GET` 503.
    no_quorum_reads: AtomicU64,
    /// `PUT` 504.
    unknown_writes: AtomicU64,
    /// Connection refused: nothing sent.
    refused: AtomicU64,
    /// Timeouts, resets, answers cut short.
    lost: AtomicU64,
    /// Any other status, with one body each: none is expected.
    unexpected: Mutex<BTreeMap<u16, (u64, String)>>,
}

impl Tally {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn unexpected(&self, method: &str, status: u16, body: &str) {
        let mut m = self.unexpected.lock().unwrap_or_else(|p| p.into_inner());
        let e = m
            .entry(status)
            .or_insert_with(|| (0, format!("{method}: {body}")));
        e.0 += 1;
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn summary(&self) -> String {
        format!(
            "writes ok {} / no_quorum {} / outcome_unknown {}; reads ok {} (absent {}) / no_quorum {}; \
             refused {}; lost {}; unexpected {:?}",
            Tally::get(&self.ok_writes),
            Tally::get(&self.no_quorum_writes),
            Tally::get(&self.unknown_writes),
            Tally::get(&self.ok_reads),
            Tally::get(&self.absent_reads),
            Tally::get(&self.no_quorum_reads),
            Tally::get(&self.refused),
            Tally::get(&self.lost),
            self.unexpected.lock().unwrap_or_else(|p| p.into_inner()),
        )
    }
}

/// One `GET` of `key` recorded in `h`; returns whether it got an answer.
fn read(
    h: &History,
    tally: &Tally,
    client: u64,
    admin: &str,
    token: &str,
    key: u64,
    consistency: &str,
) -> bool {
    let t = h.invoke(client, key, RegOp::Read);
    let got = http_request(
        admin,
        "GET",
        &item_path(key, consistency),
        token,
        None,
        op_timeout(),
    );
    match got {
        Ok((200, body)) => {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let Some(value) = v["value"].as_u64() else {
                panic!("client {client}: GET k{key} answered 200 with {body}");
            };
            h.ok(t, RegRet::Read(Some(value)));
            Tally::bump(&tally.ok_reads);
            return true;
        }
        Ok((404, body)) if body.contains("\"no_such_key\"") => {
            h.ok(t, RegRet::Read(None));
            Tally::bump(&tally.ok_reads);
            Tally::bump(&tally.absent_reads);
            return true;
        }
        Ok((503, _)) => Tally::bump(&tally.no_quorum_reads),
        Ok((status, body)) => tally.unexpected("GET", status, &body),
        Err(HttpError::NotSent(_)) => Tally::bump(&tally.refused),
        Err(HttpError::Lost(_)) => Tally::bump(&tally.lost),
    }
    // A read has no effect: whatever went wrong, it is left out.
    h.fail(t);
    false
}

/// One `PUT` of `value` to `key` recorded in `h`; returns whether it
/// succeeded.
fn write(
    h: &History,
    tally: &Tally,
    client: u64,
    admin: &str,
    token: &str,
    key: u64,
    value: u64,
) -> bool {
    let t: OpToken = h.invoke(client, key, RegOp::Write(value));
    let body = value.to_string();
    let got = http_request(
        admin,
        "PUT",
        &format!("/v1/collections/kv/items/k{key}"),
        token,
        Some(body.as_bytes()),
        op_timeout(),
    );
    match got {
        Ok((200, _)) => {
            h.ok(t, RegRet::WriteOk);
            Tally::bump(&tally.ok_writes);
            return true;
        }
        Ok((503, body)) if body.contains("\"no_quorum\"") => {
            // Nothing was proposed (see the header).
            h.fail(t);
            Tally::bump(&tally.no_quorum_writes);
        }
        Ok((504, _)) => {
            h.info(t);
            Tally::bump(&tally.unknown_writes);
        }
        Ok((status, body)) => {
            h.info(t);
            tally.unexpected("PUT", status, &body);
        }
        Err(HttpError::NotSent(_)) => {
            h.fail(t);
            Tally::bump(&tally.refused);
        }
        Err(HttpError::Lost(_)) => {
            h.info(t);
            Tally::bump(&tally.lost);
        }
    }
    false
}

fn client(
    id: u64,
    admin: String,
    token: Arc<String>,
    h: History,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut rng = Rng(seed ^ (id + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let consistency = read_consistency();
    let mut serial = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = rng.below(KEYS);
        let answered = if rng.below(2) == 0 {
            read(&h, &tally, id, &admin, &token, key, consistency)
        } else {
            serial += 1;
            // Unique values: the client in the high bits.
            write(
                &h,
                &tally,
                id,
                &admin,
                &token,
                key,
                ((id + 1) << 32) | serial,
            )
        };
        // Back off while the member is down or without a quorum.
        let pause = if answered { 10 } else { 100 };
        std::thread::sleep(Duration::from_millis(rng.below(pause)));
    }
}

/// Member `m`'s view of the kv group, if it answers within a second.
fn kv_group(m: &Member, token: &str) -> Option<serde_json::Value> {
    match http_request(
        &m.admin,
        "GET",
        KV_GROUP,
        token,
        None,
        Duration::from_secs(1),
    ) {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// The index of the member that leads the kv group with three voters, as
/// the running members see it (the one that says it leads).
fn leader(members: &[Option<Member>], token: &str) -> Option<usize> {
    members.iter().position(|m| {
        m.as_ref()
            .and_then(|m| kv_group(m, token))
            .is_some_and(|v| {
                v["state"] == "leader" && v["voters"].as_array().is_some_and(|a| a.len() == NODES)
            })
    })
}

/// Waits (bounded) until some member leads the kv group and every running
/// member knows that leader; returns it.
async fn settled_leader(members: &[Option<Member>], token: &str, why: &str) -> usize {
    wait_for(
        || {
            let l = leader(members, token)?;
            let id = members[l].as_ref()?.node_id.clone();
            members
                .iter()
                .flatten()
                .all(|m| kv_group(m, token).is_some_and(|v| v["leader"] == id.as_str()))
                .then_some(l)
        },
        why,
    )
    .await
}

fn start(dir: &Path, i: usize, quic: u16, admin: u16) -> Member {
    Member::start(dir, NODES, i, quic, admin, scaled(Duration::from_secs(30)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_over_http_is_linearizable_with_members_killed_and_frozen() {
    let started = Instant::now();
    let secs = env_u64("TESSELLA_LIN_SECS", 8);
    let seed = env_u64("TESSELLA_LIN_SEED", u64::from(std::process::id()));
    let dir = tempfile::tempdir().expect("temp dir");
    let quic = free_ports(3, 20_000 + (std::process::id() % 2000) as u16 * 10);
    let admin = free_ports(3, quic + 3);
    let mut members: Vec<Option<Member>> = (0..NODES)
        .map(|i| Some(start(dir.path(), i, quic, admin)))
        .collect();
    let token = Arc::new(
        std::fs::read_to_string(dir.path().join("admin.jwt"))
            .expect("admin.jwt")
            .trim()
            .to_string(),
    );
    let admins: Vec<String> = members.iter().flatten().map(|m| m.admin.clone()).collect();
    let first = settled_leader(&members, &token, "the kv group forms with three voters").await;
    println!(
        "seed {seed}; cluster up in {:?}, kv leader member {first}; reads {}",
        started.elapsed(),
        read_consistency()
    );

    let h = History::new();
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for (m, admin) in admins.iter().enumerate() {
        for c in 0..CLIENTS_PER_MEMBER {
            let id = m as u64 * CLIENTS_PER_MEMBER + c;
            let (admin, token, h, tally, stop) = (
                admin.clone(),
                token.clone(),
                h.clone(),
                tally.clone(),
                stop.clone(),
            );
            clients.push(std::thread::spawn(move || {
                client(id, admin, token, h, tally, stop, seed)
            }));
        }
    }

    // The nemesis: cycles of kill -9 and restart, then SIGSTOP and SIGCONT,
    // of the leader (another member every other cycle for the kill).
    let mut rng = Rng(seed);
    let faults_from = Instant::now();
    let mut actions: Vec<String> = Vec::new();
    let mut log = |what: String| {
        println!("{:>7.2?} {what}", faults_from.elapsed());
        actions.push(what);
    };
    let mut cycle = 0;
    while cycle == 0 || faults_from.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(700 + rng.below(600))).await;
        let l = settled_leader(&members, &token, "a kv leader before the kill").await;
        let victim = if cycle % 2 == 0 {
            l
        } else {
            (l + 1 + rng.below(NODES as u64 - 1) as usize) % NODES
        };
        if let Some(m) = members[victim].take() {
            m.kill9();
        }
        log(format!(
            "kill -9 member {victim}{}",
            if victim == l { " (leader)" } else { "" }
        ));
        tokio::time::sleep(Duration::from_millis(800 + rng.below(1200))).await;
        members[victim] = Some(start(dir.path(), victim, quic, admin));
        log(format!("restarted member {victim}"));
        settled_leader(
            &members,
            &token,
            "the restarted member rejoins the kv group",
        )
        .await;
        log("all three agree on a leader".into());

        tokio::time::sleep(Duration::from_millis(700 + rng.below(600))).await;
        let l = settled_leader(&members, &token, "a kv leader before the freeze").await;
        let frozen = members[l].as_ref().expect("the leader runs");
        frozen.stop();
        log(format!("SIGSTOP member {l} (leader)"));
        // Well past an election (0.6 to 0.8 s after the leader goes quiet).
        tokio::time::sleep(Duration::from_millis(2000 + rng.below(1500))).await;
        frozen.cont();
        log(format!("SIGCONT member {l}"));
        settled_leader(&members, &token, "the thawed member rejoins the kv group").await;
        log("all three agree on a leader".into());
        cycle += 1;
    }
    // A little more on a healthy cluster, then stop the clients (each ends
    // within its request's deadline).
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }

    // Final linearizable reads of every key, recorded too.
    for key in 0..KEYS {
        let client = 1000 + key;
        wait_for(
            || read(&h, &tally, client, &admins[0], &token, key, "linearizable").then_some(()),
            "a final read on the healed cluster",
        )
        .await;
    }
    let faults_took = faults_from.elapsed();

    let checking = Instant::now();
    // On a thread of its own: a search that does not end fails the test
    // without holding up the runtime's shutdown.
    let history = h.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(history.check()));
    let limit = bound() * 6;
    let checked = rx.recv_timeout(limit).unwrap_or_else(|_| {
        panic!(
            "the checker did not finish within {limit:?} on {} ops: {}",
            h.len(),
            tally.summary()
        )
    });
    println!(
        "{} ops in {faults_took:?} (nemesis {actions:?}), checked in {:?}: {:?}\n{}\ntotal {:?}",
        h.len(),
        checking.elapsed(),
        checked.as_ref().map_err(|a| a.key),
        tally.summary(),
        started.elapsed(),
    );
    let stats = checked.unwrap_or_else(|a| panic!("not linearizable:\n{a}"));
    println!("{stats:?}");
    let unexpected = tally.unexpected.lock().unwrap_or_else(|p| p.into_inner());
    assert!(
        unexpected.is_empty(),
        "statuses the API should not answer here: {unexpected:?}"
    );
    let (writes, reads) = (Tally::get(&tally.ok_writes), Tally::get(&tally.ok_reads));
    assert!(
        writes > 50 && reads > 50,
        "too few successful operations to mean anything: {}",
        tally.summary()
    );
    assert!(
        Tally::get(&tally.ok_reads) > Tally::get(&tally.absent_reads),
        "reads never saw a written value: {}",
        tally.summary()
    );
}
