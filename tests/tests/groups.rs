//! Raft groups on real nodes over QUIC, through the fault kit: founding from
//! discovery, writes and reads from every member, failover, a minority that
//! cannot commit, a healed partition, restart from disk, a learner caught up
//! by snapshot, refusals of unpermitted peers and bad frames.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use tessella_node::groups::{Consistency, Group, GroupConfig, GroupError};
use tessella_node::Node;

const G: &str = "ledger";

async fn group_cluster(fixture: &Fixture, n: usize, groups: &[&str]) -> Vec<Node> {
    let first = fixture.group_node(groups, None, Vec::new()).await;
    let boot = first.local_addr();
    let mut nodes = vec![first];
    for _ in 1..n {
        nodes.push(fixture.group_node(groups, None, vec![boot]).await);
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_until(|| full_mesh_catalogs(&refs), "the cluster converges").await;
    nodes
}

fn leader_of(groups: &[Group<Registers>]) -> Option<usize> {
    let l = groups.iter().find_map(|g| g.leader())?;
    groups
        .iter()
        .position(|g| g.is_leader() && g.leader() == Some(l))
}

async fn elected(groups: &[Group<Registers>]) -> usize {
    if std::env::var("DEBUG_GROUPS").is_ok() {
        tokio::time::sleep(Duration::from_secs(3)).await;
        for g in groups {
            eprintln!("{:?}", g.status());
        }
    }
    for g in groups {
        let mut w = g.when();
        bounded("a leader is elected", w.leader_elected())
            .await
            .expect("leader");
    }
    let mut leader = None;
    wait_until(
        || {
            leader = leader_of(groups);
            leader.is_some()
        },
        "one member knows it leads",
    )
    .await;
    leader.expect("leader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_found_a_group_and_every_member_writes_and_reads() {
    let fixture = Fixture::new("groups-basic");
    let nodes = group_cluster(&fixture, 3, &[G]).await;
    let groups = join_all(&nodes, G, &GroupConfig::with_voters(3)).await;
    let leader = elected(&groups).await;
    wait_until(
        || groups[leader].status().voters.len() == 3,
        "all three are voters",
    )
    .await;
    for (i, g) in groups.iter().enumerate() {
        let out = bounded("a write", g.execute(RegCmd::Write(i as u64, 10 + i as u64)))
            .await
            .expect("write commits");
        assert_eq!(out, RegOut::Written);
    }
    for g in &groups {
        for k in 0..3u64 {
            let v = bounded("a read", g.query(&k, Consistency::Linearizable))
                .await
                .expect("linearizable read");
            assert_eq!(v, Some(10 + k), "member reads every acknowledged write");
        }
    }
    let cas = groups[1]
        .execute(RegCmd::Cas {
            key: 0,
            expect: 10,
            new: 11,
        })
        .await
        .expect("cas");
    assert_eq!(cas, RegOut::Swapped);
    let stale = groups[2]
        .execute(RegCmd::Cas {
            key: 0,
            expect: 10,
            new: 12,
        })
        .await
        .expect("cas");
    assert_eq!(stale, RegOut::Mismatch);
    let at_leader = groups[2]
        .query(&0, Consistency::Leader)
        .await
        .expect("leader read");
    assert_eq!(at_leader, Some(11));
    for n in &nodes {
        n.shutdown().await;
    }
}
