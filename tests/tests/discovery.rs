//! Discovery on real nodes over QUIC, through the fault kit: bounded views, a
//! partition that heals, records bound to tickets against a hostile admitted
//! peer, and failure detection that removes a silent node but not a slow one.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use tessella_attestation::dev::DevQuoteProvider;
use tessella_attestation::ratls;
use tessella_node::discovery::{
    CatalogEvent, DepartReason, DiscoveryMsg, DiscoveryV1, PeerRecord, Service, SignedRecord,
    StreamRole,
};
use tessella_node::id::StreamId;
use tessella_node::wire::{self, StreamFamily, StreamHeader};
use tessella_node::Node;

async fn node_with(fixture: &Fixture, bootstrap: Vec<std::net::SocketAddr>, active: usize) -> Node {
    NodeOptions {
        bootstrap,
        active_size: active,
        ..fixture.options()
    }
    .build()
    .await
    .expect("node starts")
}

fn knows(n: &Node, id: &tessella_node::id::NodeId) -> bool {
    catalog_ids(n).contains(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_stay_bounded_and_a_newcomer_reaches_nodes_it_never_connects_to() {
    let fixture = Fixture::new("disc-views");
    let first = node_with(&fixture, Vec::new(), 2).await;
    let mut nodes = vec![first];
    for _ in 1..7 {
        let boot = nodes[0].local_addr();
        nodes.push(node_with(&fixture, vec![boot], 2).await);
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_until(|| full_mesh_catalogs(&refs), "seven nodes converge").await;
    for n in &nodes {
        let (active, _) = n.discovery().views();
        assert!(active.len() <= 2, "active view {} > 2", active.len());
    }
    // Transient connections (joins, dropped neighbours) are released.
    wait_until(
        || nodes.iter().all(|n| n.connected().len() <= 4),
        "connections settle near the active view size",
    )
    .await;
    let newcomer = node_with(&fixture, vec![nodes[3].local_addr()], 2).await;
    let id = newcomer.node_id();
    wait_until(
        || nodes.iter().all(|n| knows(n, &id)),
        "the newcomer's record reaches every catalog",
    )
    .await;
    let strangers = nodes
        .iter()
        .filter(|n| !connected_ids(n).contains(&id))
        .count();
    assert!(
        strangers >= 3,
        "only {strangers} nodes learned of it without a connection"
    );
    newcomer.shutdown().await;
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_half_rejoins_and_both_halves_converge() {
    let fixture = Fixture::new("disc-partition");
    let nodes = fixture.converged(6).await;
    let addr = |i: usize| nodes[i].local_addr();
    for a in 0..3 {
        for b in 3..6 {
            fixture.faults.cut_both(addr(a), addr(b));
        }
    }
    wait_until(
        || {
            (0..3).all(|a| (3..6).all(|b| !knows(&nodes[a], &nodes[b].node_id())))
                && (3..6).all(|b| (0..3).all(|a| !knows(&nodes[b], &nodes[a].node_id())))
        },
        "each half declares the other failed",
    )
    .await;
    // The second half carries on: a node there advertises a service.
    let service = Service::Stream {
        id: StreamId::from_name("prices"),
        role: StreamRole::Producer,
    };
    assert!(nodes[4].discovery().advertise(service).expect("advertise"));
    wait_until(
        || {
            nodes[3]
                .discovery()
                .providers(|s| *s == service)
                .iter()
                .any(|r| r.node_id == nodes[4].node_id())
        },
        "the advertisement spreads within its half",
    )
    .await;
    assert!(nodes[0].discovery().providers(|s| *s == service).is_empty());
    fixture.faults.heal_all();
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_until(|| full_mesh_catalogs(&refs), "the halves merge again").await;
    wait_until(
        || {
            (0..3).all(|a| {
                nodes[a]
                    .discovery()
                    .providers(|s| *s == service)
                    .iter()
                    .any(|r| r.node_id == nodes[4].node_id())
            })
        },
        "the first half sees the advertisement made during the partition",
    )
    .await;
    for n in &nodes {
        n.shutdown().await;
    }
}

/// `n` records, each signed by its own freshly made RA-TLS key (so each
/// signature verifies) but carrying `ticket`, which is not theirs.
fn invented_records(fixture: &Fixture, n: usize, ticket: &str) -> Vec<SignedRecord> {
    let provider = DevQuoteProvider::new(fixture.pki.clone(), fixture.td);
    (0..n)
        .map(|i| {
            let id = ratls::issue(&provider, &fixture.network_id(), now(), 3600).expect("key");
            let record = PeerRecord {
                node_id: id.node_id(),
                network: fixture.network_id(),
                addrs: vec![std::net::SocketAddr::from(([127, 0, 0, 1], 9))],
                tags: Vec::new(),
                services: Vec::new(),
                ticket: if i % 2 == 0 {
                    ticket.to_string()
                } else {
                    String::new()
                },
                version: now() * 1000,
                issued_at: now(),
                software: "invented".into(),
                departing: false,
            };
            SignedRecord::sign(&record, &id).expect("signs")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_identities_are_never_stored_and_an_honest_newcomer_still_spreads() {
    let fixture = Fixture::new("disc-invented");
    let mut nodes = Vec::new();
    for i in 0..5 {
        let boot = if i == 0 {
            Vec::new()
        } else {
            vec![nodes_addr(&nodes)]
        };
        nodes.push(node_with(&fixture, boot, 2).await);
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_until(|| full_mesh_catalogs(&refs), "the cluster converges").await;
    let victim = &nodes[0];
    let invalid_before = victim.discovery().stats().records_invalid;

    let hostile = fixture.raw_peer();
    // Its own valid ticket, pasted into records of identities it made up.
    let ticket = fixture.good_ticket(&hostile.node_id());
    let records = invented_records(&fixture, 1000, &ticket);
    let (conn, _) = hostile.admitted(&fixture, victim.local_addr()).await;
    let invented: HashSet<_> = records
        .iter()
        .map(|r| r.peek_unverified().expect("decodes").node_id)
        .collect();
    let mut send = bounded("opening a discovery stream", conn.open_uni())
        .await
        .expect("open");
    wire::write_header(&mut send, StreamHeader::new(StreamFamily::Discovery))
        .await
        .expect("header");
    for chunk in records.chunks(25) {
        let msg = DiscoveryMsg::V1(DiscoveryV1::Push {
            records: chunk.to_vec(),
            failed: Vec::new(),
        });
        wire::write_frame(&mut send, &msg, wire::DEFAULT_MAX_FRAME)
            .await
            .expect("push");
    }
    // It also asks to be taken into the victim's view, with a forged record.
    let join = DiscoveryMsg::V1(DiscoveryV1::Join {
        record: records[0].clone(),
    });
    wire::write_frame(&mut send, &join, wire::DEFAULT_MAX_FRAME)
        .await
        .expect("join");
    send.finish().expect("finish");
    wait_until(
        || victim.discovery().stats().records_invalid >= invalid_before + 1000,
        "the victim checked (and refused) every invented record",
    )
    .await;
    for n in &nodes {
        let stored = catalog_ids(n).intersection(&invented).count();
        assert_eq!(stored, 0, "a node stored {stored} invented identities");
        assert!(
            catalog_ids(n).len() <= 4 + 1,
            "catalog grew: {}",
            catalog_ids(n).len()
        );
    }
    // An honest newcomer joins elsewhere and still reaches every catalog,
    // including nodes it has no connection to.
    let newcomer = node_with(&fixture, vec![nodes[4].local_addr()], 2).await;
    let id = newcomer.node_id();
    wait_until(
        || nodes.iter().all(|n| knows(n, &id)),
        "the newcomer reaches every catalog",
    )
    .await;
    assert!(
        nodes.iter().any(|n| !connected_ids(n).contains(&id)),
        "some node learned of it without a connection"
    );
    drop(conn);
    newcomer.shutdown().await;
    for n in &nodes {
        n.shutdown().await;
    }
}

fn nodes_addr(nodes: &[Node]) -> std::net::SocketAddr {
    nodes[0].local_addr()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_is_suspected_then_removed_while_a_slow_one_is_not() {
    let fixture = Fixture::new("disc-swim");
    let nodes = fixture.converged(5).await;
    let (slow, silent) = (&nodes[3], &nodes[4]);
    let mut events = nodes[0].subscribe();
    for n in &nodes[..3] {
        // 80 ms each way: every ack misses the 20 ms probe timeout and the
        // 50 ms probe period, but arrives well within the suspicion timeout.
        fixture
            .faults
            .delay(slow.local_addr(), n.local_addr(), Duration::from_millis(80));
        fixture
            .faults
            .delay(n.local_addr(), slow.local_addr(), Duration::from_millis(80));
    }
    fixture.faults.isolate(silent.local_addr());
    let gone = silent.node_id();
    wait_until(
        || nodes[..4].iter().all(|n| !knows(n, &gone)),
        "every node forgets the silent one",
    )
    .await;
    // Keep watching the slow node for several suspicion timeouts.
    tokio::time::sleep(scaled(Duration::from_secs(2))).await;
    let seen = drain(&mut events);
    let failed = |id| {
        seen.iter().any(|e| {
            matches!(e, CatalogEvent::Departed { node_id, reason: DepartReason::Failed } if *node_id == id)
        })
    };
    assert!(failed(gone), "the silent node left as failed: {seen:?}");
    assert!(
        !failed(slow.node_id()),
        "the slow node was declared failed: {seen:?}"
    );
    for n in &nodes[..3] {
        assert!(knows(n, &slow.node_id()), "a node forgot the slow one");
    }
    let suspicions: u64 = nodes[..4]
        .iter()
        .map(|n| n.discovery().stats().suspicions)
        .sum();
    let declared: u64 = nodes[..4]
        .iter()
        .map(|n| n.discovery().stats().failures_declared)
        .sum();
    assert!(
        suspicions >= 1 && declared >= 1,
        "{suspicions} suspicions, {declared} declared"
    );
    for n in &nodes {
        n.shutdown().await;
    }
}
