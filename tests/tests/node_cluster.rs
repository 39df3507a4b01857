//! Discovery across real nodes: five nodes given only node 0's address
//! converge to a full catalog (learning peers transitively), subscribers see
//! `Discovered` events, and a node that shuts down gracefully disappears from
//! every other catalog with an announced departure.

mod common;

use std::collections::HashSet;

use common::{catalog_ids, drain, full_mesh_catalogs, wait_until, Fixture};
use tessella_node::discovery::{CatalogEvent, DepartReason};
use tessella_node::id::NodeId;
use tessella_node::Node;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_converge_and_a_departed_node_disappears() {
    let fixture = Fixture::new("cluster-converge");
    let first = fixture.node(Vec::new()).await;
    // Subscribed before anyone else exists: sees every discovery.
    let mut events0 = first.subscribe();
    let addr0 = first.local_addr();
    let mut nodes = vec![first];
    for _ in 1..5 {
        nodes.push(fixture.node(vec![addr0]).await);
    }
    let mut events4 = nodes[4].subscribe();
    let ids: Vec<NodeId> = nodes.iter().map(|n| n.node_id()).collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        5,
        "five distinct node ids"
    );

    let refs: Vec<&Node> = nodes.iter().collect();
    wait_until(
        || full_mesh_catalogs(&refs),
        "every catalog holds exactly the 4 other nodes",
    )
    .await;

    // The records are the nodes' own: right network, the address each listens
    // on, not departing.
    for n in &nodes {
        for record in n.catalog() {
            let peer = nodes
                .iter()
                .find(|m| m.node_id() == record.node_id)
                .expect("catalog entry is a cluster node");
            assert_eq!(record.network, fixture.network_id());
            assert_eq!(record.addrs, vec![peer.local_addr()], "advertised address");
            assert!(!record.departing);
        }
    }
    // Nodes 1..4 were only told about node 0: the others were learned
    // through gossip, so at least one node connected to a peer it was never
    // told about.
    wait_until(
        || {
            nodes[1..]
                .iter()
                .any(|n| n.connected().iter().any(|p| p.identity.node_id != ids[0]))
        },
        "a non-bootstrap peer is connected through discovery",
    )
    .await;

    // Node 0's subscriber saw each other node discovered exactly once.
    let discovered: Vec<NodeId> = drain(&mut events0)
        .into_iter()
        .filter_map(|e| match e {
            CatalogEvent::Discovered(r) => Some(r.node_id),
            _ => None,
        })
        .collect();
    let mut expected: Vec<NodeId> = ids[1..].to_vec();
    let mut got = discovered.clone();
    expected.sort();
    got.sort();
    assert_eq!(
        got, expected,
        "node 0's Discovered events name each other node once"
    );
    drain(&mut events4);

    // Node 3 leaves gracefully.
    let leaving = nodes.remove(3);
    let gone = leaving.node_id();
    leaving.shutdown().await;
    assert!(leaving.network().is_stopping());
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_until(
        || {
            refs.iter()
                .all(|n| catalog_ids(n).len() == 3 && !catalog_ids(n).contains(&gone))
        },
        "the departed node disappears from every catalog",
    )
    .await;
    assert!(
        full_mesh_catalogs(&refs),
        "the remaining four still know each other"
    );
    for n in &nodes {
        assert!(
            n.connected().iter().all(|p| p.identity.node_id != gone),
            "no connection to the departed node remains"
        );
    }
    // Node 4's subscriber was told why: an announced departure, not expiry.
    let departures: Vec<(NodeId, DepartReason)> = drain(&mut events4)
        .into_iter()
        .filter_map(|e| match e {
            CatalogEvent::Departed { node_id, reason } => Some((node_id, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(departures, vec![(gone, DepartReason::Announced)]);

    for n in &nodes {
        n.shutdown().await;
    }
}
