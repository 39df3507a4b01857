//! The node runtime under faults and hostile peers, through the test kit:
//! a subsystem plugged in as a protocol handler, link cuts and loss beneath
//! QUIC, a peer that starves the node's writers, restarts on a data dir, and
//! `dev --member` processes killed with SIGKILL.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tessella_node::discovery::{DiscoveryMsg, DiscoveryV1};
use tessella_node::network::{HandlerFuture, IncomingUni, PeerInfo, ProtocolHandler};
use tessella_node::wire::{self, StreamFamily, StreamHeader};
use tessella_node::{NetworkError, Node, NodeError, TicketSource};

/// A test subsystem on the (otherwise unused) functions family: counts the
/// frames peers send it.
#[derive(Default)]
struct Counter {
    frames: AtomicU64,
    ups: AtomicU64,
}

impl ProtocolHandler for Counter {
    fn family(&self) -> StreamFamily {
        StreamFamily::Functions
    }

    fn peer_up(&self, _peer: &PeerInfo) {
        self.ups.fetch_add(1, Ordering::SeqCst);
    }

    fn uni(self: Arc<Self>, _peer: PeerInfo, mut stream: IncomingUni) -> HandlerFuture {
        Box::pin(async move {
            while let Ok(Some(_)) =
                wire::read_frame::<_, u64>(&mut stream.recv, wire::DEFAULT_MAX_FRAME).await
            {
                self.frames.fetch_add(1, Ordering::SeqCst);
            }
        })
    }
}

fn counter(node: &Node) -> Arc<Counter> {
    let c = Arc::new(Counter::default());
    node.network().register(c.clone()).expect("register");
    c
}

/// Send frames from `from` to `to` until `to` counted `more` new ones.
async fn delivers(from: &Node, to: &Node, seen: &Counter, more: u64, what: &str) {
    let target = seen.frames.load(Ordering::SeqCst) + more;
    let peer = from.network().peer(to.node_id());
    wait_until(
        || {
            let _ = peer.send(StreamFamily::Functions, &7u64);
            seen.frames.load(Ordering::SeqCst) >= target
        },
        what,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subsystem_plugs_in_and_a_cut_link_stops_traffic_both_ways_until_healed() {
    let fixture = Fixture::new("runtime-cut");
    let nodes = fixture.converged(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let (ca, cb) = (counter(a), counter(b));
    assert_eq!(
        (ca.ups.load(Ordering::SeqCst), cb.ups.load(Ordering::SeqCst)),
        (1, 1),
        "a handler registered late hears about the peers already up"
    );
    delivers(a, b, &cb, 3, "a's frames reach b's handler").await;
    delivers(b, a, &ca, 3, "b's frames reach a's handler").await;

    fixture.faults.cut_both(a.local_addr(), b.local_addr());
    // Datagrams sent before the cut may still be in the kernel's buffers
    // (or in a frame that was being retransmitted): count from after them.
    tokio::time::sleep(scaled(Duration::from_millis(200))).await;
    let (at_a, at_b) = (
        ca.frames.load(Ordering::SeqCst),
        cb.frames.load(Ordering::SeqCst),
    );
    let (pa, pb) = (a.network().peer(b.node_id()), b.network().peer(a.node_id()));
    for _ in 0..20 {
        let _ = pa.send(StreamFamily::Functions, &1u64);
        let _ = pb.send(StreamFamily::Functions, &1u64);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Half a second of sending both ways across the cut.
    assert_eq!(
        cb.frames.load(Ordering::SeqCst),
        at_b,
        "nothing crosses a -> b"
    );
    assert_eq!(
        ca.frames.load(Ordering::SeqCst),
        at_a,
        "nothing crosses b -> a"
    );
    assert!(fixture.faults.stats().cut > 0, "the cut dropped datagrams");

    fixture.faults.heal_both(a.local_addr(), b.local_addr());
    delivers(a, b, &cb, 1, "a -> b flows again after healing").await;
    delivers(b, a, &ca, 1, "b -> a flows again after healing").await;
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_loss_on_every_link_still_converges() {
    let fixture = Fixture::new("runtime-loss");
    let nodes = fixture.cluster(1).await;
    let mut nodes = nodes;
    for _ in 1..4 {
        nodes.push(fixture.node(Vec::new()).await);
    }
    let addrs: Vec<_> = nodes.iter().map(|n| n.local_addr()).collect();
    for a in &addrs {
        for b in &addrs {
            if a != b {
                fixture.faults.drop_fraction(*a, *b, 0.3);
            }
        }
    }
    // Only now do the others learn node 0's address.
    for n in &nodes[1..] {
        let net = n.network().clone();
        let first = addrs[0];
        tokio::spawn(async move {
            while net.connect(first).await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_until(
        || full_mesh_catalogs(&refs),
        "four nodes converge with 30% datagram loss on every link",
    )
    .await;
    assert!(fixture.faults.stats().lost > 0, "datagrams were lost");
    for n in &nodes {
        n.shutdown().await;
    }
}

/// RSS of this process in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_withholds_stream_credit_cannot_pile_up_tasks_or_memory() {
    let fixture = Fixture::new("runtime-starve");
    let nodes = fixture.converged(3).await;
    let victim = &nodes[0];
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let (tasks_before, rss_before) = (tasks(), rss_kib());
    let mut peak_rss = rss_before;

    let hostile = fixture.raw_peer().withhold_stream_credit();
    // Empty summaries: each asks for every catalog entry back, which the
    // node can never deliver (no stream credit).
    let digest = DiscoveryMsg::V1(DiscoveryV1::Summary {
        buckets: vec![0; 256],
    });
    let frame = wire::frame::encode_frame(&digest, wire::DEFAULT_MAX_FRAME).expect("frame");
    let batch: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * 1000)
        .collect();
    let received = || victim.discovery().stats().messages_in;
    let received_before = received();
    const FLOOD: u64 = 200_000;
    let mut peak_tasks = 0;
    let (mut batches, mut connections) = (0u64, 0u64);
    let mut held = Vec::new();
    // Discovery lets go of a connection outside its views after a few
    // seconds (the peer never joined): the hostile peer comes back at once
    // and goes on, until the victim has taken in 200,000 summaries.
    'flood: while received() - received_before < FLOOD {
        assert!(
            connections < 100,
            "100 connections carried only {} summaries",
            received() - received_before
        );
        let (conn, _) = hostile.admitted(&fixture, victim.local_addr()).await;
        connections += 1;
        wait_until(
            || connected_ids(victim).contains(&hostile.node_id()),
            "the hostile peer is admitted",
        )
        .await;
        let Ok(Ok(mut send)) =
            tokio::time::timeout(scaled(Duration::from_secs(5)), conn.open_uni()).await
        else {
            continue;
        };
        if wire::write_header(&mut send, StreamHeader::new(StreamFamily::Discovery))
            .await
            .is_err()
        {
            continue;
        }
        while received() - received_before < FLOOD {
            match tokio::time::timeout(scaled(Duration::from_secs(5)), send.write_all(&batch)).await
            {
                Ok(Ok(())) => batches += 1,
                Ok(Err(_)) => continue 'flood,
                Err(_) => panic!("a batch of summaries stalled for 5 s"),
            }
            peak_tasks = peak_tasks.max(tasks());
            peak_rss = peak_rss.max(rss_kib());
        }
        let _ = send.finish();
        held.push(conn);
    }
    let summaries = received() - received_before;
    assert!(
        summaries >= FLOOD,
        "the victim took in {summaries} summaries"
    );
    // The node works through them; meanwhile the other nodes keep going.
    let newcomer = fixture.node(vec![nodes[1].local_addr()]).await;
    let mut all: Vec<&Node> = nodes.iter().collect();
    all.push(&newcomer);
    wait_until(
        || {
            let ids: HashSet<_> = all.iter().map(|n| n.node_id()).collect();
            all.iter().all(|n| {
                let known = catalog_ids(n);
                ids.iter()
                    .all(|id| *id == n.node_id() || known.contains(id))
            })
        },
        "the other nodes keep converging (a newcomer joins everyone's catalog)",
    )
    .await;
    peak_tasks = peak_tasks.max(tasks());
    let rss_growth = peak_rss.max(rss_kib()).saturating_sub(rss_before);
    println!(
        "{summaries} summaries taken in ({batches} batches of 1,000 written over {connections} \
         connections); tasks before {tasks_before}, peak {peak_tasks}; peak RSS growth \
         {rss_growth} KiB; victim writer queues {}",
        victim.network().outbox_count()
    );
    // Without the bounded outboxes every reply spawned a task holding a
    // catalog-sized message: 200,000 of them.
    assert!(
        peak_tasks < tasks_before + 300,
        "tasks stay bounded: {tasks_before} before, {peak_tasks} at the peak"
    );
    assert!(
        rss_growth < 64 * 1024,
        "memory stays bounded: RSS grew {rss_growth} KiB"
    );
    // One writer per (peer, family) at most.
    assert!(victim.network().outbox_count() <= 2 * 4);
    drop(held);
    newcomer.shutdown().await;
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_on_its_data_dir_keeps_its_id_and_its_ticket() {
    let fixture = Fixture::new("runtime-restart");
    let first = fixture.node(Vec::new()).await;
    let dir = fixture.data_dir();
    // An operator-issued ticket for the node's id: it must stay valid.
    let mut opts = fixture.options();
    opts.data_dir = Some(dir.clone());
    opts.bootstrap = vec![first.local_addr()];
    let node = opts.build().await.expect("node starts");
    let id = node.node_id();
    let ticket = fixture.good_ticket(&id);
    node.shutdown().await;

    let mut opts = fixture.options();
    opts.data_dir = Some(dir.clone());
    opts.bootstrap = vec![first.local_addr()];
    opts.ticket = TicketSource::Static(ticket);
    let again = opts
        .build()
        .await
        .expect("node restarts with the static ticket");
    assert_eq!(again.node_id(), id, "same data dir, same node id");
    wait_until(
        || connected_ids(&first).contains(&id) && connected_ids(&again).contains(&first.node_id()),
        "the restarted node is admitted again with the same ticket",
    )
    .await;
    again.shutdown().await;

    // A corrupt key is an error naming the file, never silently replaced.
    let key = dir.join(tessella_node::keyfile::KEY_FILE);
    std::fs::write(
        &key,
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .expect("corrupt the key");
    let mut opts = fixture.options();
    opts.data_dir = Some(dir.clone());
    let err = match opts.build().await {
        Ok(_) => panic!("a node with a corrupt key must not start"),
        Err(e) => e,
    };
    assert!(
        matches!(err, NodeError::Network(NetworkError::Key(_))),
        "{err}"
    );
    assert!(err.to_string().contains("node.key"), "{err}");
    first.shutdown().await;
}

/// The node ids member `admin` reports connected in `/v1/peers`.
fn connected_via_admin(admin: &str, token: &str) -> HashSet<String> {
    let Ok((200, body)) = http_get(admin, "/v1/peers", token) else {
        return HashSet::new();
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["peers"]
        .as_array()
        .map(|peers| {
            peers
                .iter()
                .filter(|p| p["connected"] == true)
                .filter_map(|p| p["node_id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Member `admin`'s view of the dev Raft group, from `/v1/groups/dev`.
fn dev_group(admin: &str, token: &str) -> Option<serde_json::Value> {
    match http_get(admin, "/v1/groups/dev", token) {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

fn voters(v: &serde_json::Value) -> HashSet<String> {
    v["voters"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_members_in_their_own_processes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let quic = free_ports(3, 20_000 + (std::process::id() % 2000) as u16 * 10);
    let admin = free_ports(3, quic + 3);
    let admin = if admin == quic { quic + 3 } else { admin };
    let wait = scaled(Duration::from_secs(30));
    let members: Vec<Member> = (0..3)
        .map(|i| Member::start(dir.path(), 3, i, quic, admin, wait))
        .collect();
    let token = std::fs::read_to_string(dir.path().join("admin.jwt")).expect("admin.jwt");
    let ids: Vec<String> = members.iter().map(|m| m.node_id.clone()).collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 3, "{ids:?}");
    let all_connected = |m: &Member| {
        let others: HashSet<String> = ids.iter().filter(|id| **id != m.node_id).cloned().collect();
        connected_via_admin(&m.admin, &token) == others
    };
    wait_until(
        || members.iter().all(all_connected),
        "three member processes connect to each other",
    )
    .await;

    // The three members found the dev Raft group and record heartbeats.
    let all: HashSet<String> = ids.iter().cloned().collect();
    let mut before = 0;
    wait_until(
        || {
            let Some(v) = dev_group(&members[1].admin, &token) else {
                return false;
            };
            before = v["applied"].as_u64().unwrap_or(0);
            voters(&v) == all && v["leader"].is_string() && before >= 3
        },
        "the dev group forms with all three as voters and commits heartbeats",
    )
    .await;

    let mut members = members;
    let killed = members.remove(1);
    let killed_id = killed.node_id.clone();
    killed.kill9();
    let back = Member::start(dir.path(), 3, 1, quic, admin, wait);
    assert_eq!(
        back.node_id, killed_id,
        "the restarted member keeps its node id"
    );
    // Its log came back from disk: it holds at least what it had applied.
    let first = bounded("the restarted member's group status", async {
        loop {
            if let Some(v) = dev_group(&back.admin, &token) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        first["last_log_index"].as_u64().unwrap_or(0) >= before,
        "restarted with its log: {first}"
    );
    members.insert(1, back);
    wait_until(
        || members.iter().all(all_connected),
        "the restarted member is connected to both others again",
    )
    .await;
    wait_until(
        || {
            dev_group(&members[1].admin, &token).is_some_and(|v| {
                voters(&v) == all && v["applied"].as_u64().unwrap_or(0) > before + 2
            })
        },
        "the restarted member is still a voter and applies new heartbeats",
    )
    .await;
}
