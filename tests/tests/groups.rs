//! Raft groups on real nodes over QUIC, through the fault kit: founding from
//! discovery, writes and reads from every member, failover, a minority that
//! cannot commit, a healed partition, restart from disk, a learner caught up
//! by snapshot, refusals of unpermitted peers and bad frames.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use tessella_node::attestation::{Permission, ResourceKind};
use tessella_node::discovery::GroupRole;
use tessella_node::groups::openraft::raft::{InstallSnapshotRequest, VoteRequest};
use tessella_node::groups::openraft::SnapshotMeta;
use tessella_node::groups::openraft::Vote;
use tessella_node::groups::wire::{GroupRequest, GroupResponse, Refusal};
use tessella_node::groups::{Consistency, Group, GroupConfig, GroupError, MemberId};
use tessella_node::id::GroupId;
use tessella_node::wire::{encode_frame, CloseCode, StreamFamily};
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
    let (voters, learners) = groups[1].members();
    assert_eq!(voters.len(), 3);
    assert!(learners.is_empty());
    wait_until(
        || groups.iter().all(|g| g.committed() > 0),
        "every member knows a commit index",
    )
    .await;
    for n in &nodes {
        n.shutdown().await;
    }
}

/// Writes `count` values to key `key` through `g`, returning how many were
/// acknowledged.
async fn write_many(g: &Group<Registers>, key: u64, from: u64, count: u64) {
    for v in from..from + count {
        bounded("a write", g.execute(RegCmd::Write(key, v)))
            .await
            .expect("write commits");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_dies_a_new_one_is_elected_and_acknowledged_writes_survive() {
    let fixture = Fixture::new("groups-failover");
    let nodes = group_cluster(&fixture, 3, &[G]).await;
    let groups = join_all(&nodes, G, &GroupConfig::with_voters(3)).await;
    let leader = elected(&groups).await;
    wait_until(|| groups[leader].status().voters.len() == 3, "three voters").await;
    write_many(&groups[leader], 1, 1, 20).await;
    let old = nodes[leader].node_id();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let mut when = groups[survivors[0]].when();
    nodes[leader].shutdown().await;
    let new = bounded("a new leader", async {
        loop {
            let l = when.leader_changed().await.expect("group runs");
            if l != old {
                return l;
            }
        }
    })
    .await;
    assert_ne!(new, old);
    let s = survivors[0];
    let out = bounded(
        "a write after failover",
        groups[s].execute(RegCmd::Write(2, 7)),
    )
    .await
    .expect("the surviving majority commits");
    assert_eq!(out, RegOut::Written);
    for &i in &survivors {
        let v = groups[i]
            .query(&1, Consistency::Linearizable)
            .await
            .expect("read");
        assert_eq!(v, Some(20), "every acknowledged write survives the leader");
    }
    for &i in &survivors {
        nodes[i].shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_cannot_commit_and_a_healed_partition_keeps_the_majoritys_writes() {
    let fixture = Fixture::new("groups-partition");
    let nodes = group_cluster(&fixture, 3, &[G]).await;
    let mut config = GroupConfig::with_voters(3);
    config.write_timeout = Duration::from_secs(2);
    let groups = join_all(&nodes, G, &config).await;
    let leader = elected(&groups).await;
    wait_until(|| groups[leader].status().voters.len() == 3, "three voters").await;
    write_many(&groups[leader], 5, 1, 5).await;
    // Cut the leader off from both followers.
    let isolated_term = groups[leader].status().term;
    fixture.faults.isolate(nodes[leader].local_addr());
    let minority = groups[leader].execute(RegCmd::Write(5, 666)).await;
    assert!(
        matches!(
            minority,
            Err(GroupError::Indeterminate(_)) | Err(GroupError::NoLeader(_))
        ),
        "an isolated leader cannot commit: {minority:?}"
    );
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let majority = &groups[others[0]];
    bounded("the majority commits", async {
        loop {
            if majority.execute(RegCmd::Write(5, 100)).await.is_ok() {
                return;
            }
        }
    })
    .await;
    // The isolated node never leads in a newer term (it cannot elect itself).
    let s = groups[leader].status();
    assert!(
        !(groups[leader].is_leader() && s.term > isolated_term),
        "the isolated node elected itself: {s:?}"
    );
    fixture.faults.rejoin(nodes[leader].local_addr());
    // The old leader learns the majority's history and drops its own tail.
    let old = &groups[leader];
    bounded("the old leader catches up", async {
        loop {
            if let Ok(v) = old.query(&5, Consistency::Linearizable).await {
                if v == Some(100) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    for g in &groups {
        wait_until(
            || g.read_local(|m| m.0.get(&5).copied()) == Some(100),
            "every member applies the majority's write",
        )
        .await;
    }
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_restarts_from_disk_with_its_state_and_ids() {
    let fixture = Fixture::new("groups-restart");
    let dirs: Vec<_> = (0..3).map(|_| fixture.data_dir()).collect();
    let start = |boot: Vec<std::net::SocketAddr>, i: usize| {
        fixture.group_node(&[G], Some(dirs[i].clone()), boot)
    };
    let first = start(Vec::new(), 0).await;
    let boot = vec![first.local_addr()];
    let nodes = vec![first, start(boot.clone(), 1).await, start(boot, 2).await];
    let ids: Vec<_> = nodes.iter().map(|n| n.node_id()).collect();
    let mut config = GroupConfig::with_voters(3);
    config.snapshot_every = 30;
    config.keep_logs = 5;
    let groups = join_all(&nodes, G, &config).await;
    let leader = elected(&groups).await;
    wait_until(|| groups[leader].status().voters.len() == 3, "three voters").await;
    write_many(&groups[leader], 9, 1, 100).await;
    let before = groups[leader].status();
    for n in &nodes {
        n.shutdown().await;
    }
    drop(groups);
    drop(nodes);

    let first = start(Vec::new(), 0).await;
    let boot = vec![first.local_addr()];
    let nodes = vec![first, start(boot.clone(), 1).await, start(boot, 2).await];
    let again: Vec<_> = nodes.iter().map(|n| n.node_id()).collect();
    assert_eq!(ids, again, "nodes keep their ids across restarts");
    let groups = join_all(&nodes, G, &config).await;
    for g in &groups {
        wait_until(
            || g.read_local(|m| m.0.get(&9).copied()) == Some(100),
            "each member restores its state from disk",
        )
        .await;
    }
    let leader = elected(&groups).await;
    let status = groups[leader].status();
    assert_eq!(status.voters, before.voters, "the membership survives");
    assert!(status.term >= before.term);
    let out = groups[leader]
        .execute(RegCmd::Write(9, 101))
        .await
        .expect("write");
    assert_eq!(out, RegOut::Written);
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_joins_late_and_catches_up_through_a_snapshot() {
    let fixture = Fixture::new("groups-learner");
    let nodes = group_cluster(&fixture, 3, &[G]).await;
    let mut config = GroupConfig::with_voters(3);
    config.snapshot_every = 20;
    config.keep_logs = 2;
    let groups = join_all(&nodes, G, &config).await;
    let leader = elected(&groups).await;
    wait_until(|| groups[leader].status().voters.len() == 3, "three voters").await;
    write_many(&groups[leader], 3, 1, 120).await;
    wait_until(
        || groups[leader].status().purged > 0,
        "the leader purges its log behind a snapshot",
    )
    .await;
    let late = fixture
        .group_node(&[G], None, vec![nodes[0].local_addr()])
        .await;
    let mut learner_config = config.clone();
    learner_config.role = GroupRole::Learner;
    let learner = late
        .groups()
        .join::<Registers>(G, learner_config)
        .await
        .expect("join as learner");
    let id = late.node_id().to_string();
    wait_until(
        || groups[leader].status().learners.contains(&id),
        "the leader takes the advertiser in as a learner",
    )
    .await;
    wait_until(
        || learner.read_local(|m| m.0.get(&3).copied()) == Some(120),
        "the learner catches up from a snapshot (the log before it is gone)",
    )
    .await;
    assert!(
        learner.status().snapshot > 0,
        "the learner installed a snapshot"
    );
    assert_eq!(
        groups[leader].status().voters.len(),
        3,
        "a learner-role node is never promoted"
    );
    let v = learner
        .query(&3, Consistency::Linearizable)
        .await
        .expect("read");
    assert_eq!(v, Some(120));
    late.shutdown().await;
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_learner_is_heartbeated_rarely_and_still_gets_writes_at_once() {
    let fixture = Fixture::new("groups-quiet-learner");
    let nodes = group_cluster(&fixture, 4, &[G]).await;
    let config = GroupConfig::with_voters(3);
    let groups = join_all(&nodes[..3], G, &config).await;
    let leader = elected(&groups).await;
    let mut learner_config = config.clone();
    learner_config.role = GroupRole::Learner;
    let learner = nodes[3]
        .groups()
        .join::<Registers>(G, learner_config)
        .await
        .expect("join as learner");
    let id = nodes[3].node_id().to_string();
    wait_until(
        || groups[leader].status().learners.contains(&id),
        "the leader takes the advertiser in as a learner",
    )
    .await;
    write_many(&groups[leader], 1, 1, 1).await;
    wait_until(
        || learner.read_local(|m| m.0.get(&1).copied()) == Some(1),
        "the learner replicates",
    )
    .await;
    // An idle window: the follower hears a heartbeat every 50 ms, the
    // learner one every `learner_heartbeat` (2 s).
    let follower = (leader + 1) % 3;
    let (f0, l0) = (
        groups[follower].status().raft_requests,
        learner.status().raft_requests,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (f1, l1) = (
        groups[follower].status().raft_requests,
        learner.status().raft_requests,
    );
    let (voter_rpcs, learner_rpcs) = (f1 - f0, l1 - l0);
    assert!(
        voter_rpcs >= 8,
        "the follower is heartbeated ({voter_rpcs} requests)"
    );
    assert!(
        learner_rpcs * 4 <= voter_rpcs,
        "the idle learner got {learner_rpcs} requests, the follower {voter_rpcs}"
    );
    // A write and its commit still reach the learner without waiting for
    // a learner heartbeat.
    write_many(&groups[leader], 1, 2, 1).await;
    wait_until(
        || learner.read_local(|m| m.0.get(&1).copied()) == Some(2),
        "the learner applies the next write",
    )
    .await;
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_racing_to_found_a_three_voter_group_form_exactly_one() {
    let fixture = Fixture::new("groups-race");
    let nodes = group_cluster(&fixture, 5, &[G]).await;
    let config = GroupConfig::with_voters(3);
    // All five join at once.
    let joins = nodes.iter().map(|n| {
        let g = n.groups().clone();
        let c = config.clone();
        tokio::spawn(async move { g.join::<Registers>(G, c).await })
    });
    let mut groups = Vec::new();
    for j in joins {
        groups.push(j.await.expect("join task").expect("join"));
    }
    let leader = elected(&groups).await;
    wait_until(
        || {
            let s = groups[leader].status();
            s.voters.len() == 3 && s.learners.len() == 2
        },
        "three voters and the other two as learners",
    )
    .await;
    let expected: BTreeSet<String> = {
        let mut ids: Vec<String> = nodes.iter().map(|n| n.node_id().to_string()).collect();
        ids.sort();
        ids.into_iter().take(3).collect()
    };
    let voters: BTreeSet<String> = groups[leader].status().voters.into_iter().collect();
    assert_eq!(voters, expected, "the founding set is the three lowest ids");
    groups[leader]
        .execute(RegCmd::Write(1, 1))
        .await
        .expect("write");
    for g in &groups {
        wait_until(
            || g.status().voters.iter().cloned().collect::<BTreeSet<_>>() == expected,
            "every member sees the one membership",
        )
        .await;
    }
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_voter_is_replaced_by_a_caught_up_learner() {
    let fixture = Fixture::new("groups-replace");
    let nodes = group_cluster(&fixture, 4, &[G]).await;
    let mut config = GroupConfig::with_voters(3);
    config.replace_after = Duration::from_secs(2);
    let groups = join_all(&nodes, G, &config).await;
    let leader = elected(&groups).await;
    wait_until(
        || {
            let s = groups[leader].status();
            s.voters.len() == 3 && s.learners.len() == 1
        },
        "three voters and a spare learner",
    )
    .await;
    let status = groups[leader].status();
    let me = nodes[leader].node_id().to_string();
    let victim = status
        .voters
        .iter()
        .find(|v| **v != me)
        .expect("a follower voter")
        .clone();
    let spare = status.learners[0].clone();
    let vi = nodes
        .iter()
        .position(|n| n.node_id().to_string() == victim)
        .expect("victim");
    nodes[vi].shutdown().await;
    wait_until(
        || {
            let s = groups[leader].status();
            s.voters.contains(&spare) && !s.voters.contains(&victim) && !s.joint
        },
        "the spare learner replaces the dead voter",
    )
    .await;
    groups[leader]
        .execute(RegCmd::Write(4, 4))
        .await
        .expect("write");
    for (i, n) in nodes.iter().enumerate() {
        if i != vi {
            n.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_ticket_is_revoked_is_fenced_out() {
    let fixture = Fixture::new("groups-fence");
    let nodes = group_cluster(&fixture, 3, &[G]).await;
    let groups = join_all(&nodes, G, &GroupConfig::with_voters(3)).await;
    let leader = elected(&groups).await;
    wait_until(|| groups[leader].status().voters.len() == 3, "three voters").await;
    let victim = (0..3).find(|&i| i != leader).expect("a follower");
    let id = nodes[victim].node_id().to_string();
    assert!(nodes[leader].revoke(&id).is_some());
    wait_until(
        || {
            let s = groups[leader].status();
            !s.voters.contains(&id) && !s.learners.contains(&id) && !s.joint
        },
        "the leader removes the revoked member",
    )
    .await;
    groups[leader]
        .execute(RegCmd::Write(8, 8))
        .await
        .expect("write");
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_without_the_grant_and_bad_requests_are_refused() {
    let fixture = Fixture::new("groups-refusals");
    let nodes = group_cluster(&fixture, 1, &[G]).await;
    let _g = nodes[0]
        .groups()
        .join::<Registers>(G, GroupConfig::with_voters(1))
        .await
        .expect("join");
    // A node whose ticket grants other groups only.
    let outsider = fixture
        .group_node(&["other"], None, vec![nodes[0].local_addr()])
        .await;
    let refused = outsider
        .groups()
        .join::<Registers>(G, GroupConfig::with_voters(1))
        .await;
    assert!(
        matches!(refused, Err(GroupError::NotPermitted(_))),
        "{refused:?}"
    );
    let target = nodes[0].node_id();
    wait_until(
        || catalog_ids(&outsider).contains(&target),
        "the outsider learns the member's address",
    )
    .await;
    let reset_code = |bytes: Vec<u8>| {
        let net = outsider.network().clone();
        async move {
            let (mut send, mut recv) = net
                .peer(target)
                .open_bi(StreamFamily::Groups)
                .await
                .expect("stream opens");
            let _ = send.write_all(&bytes).await;
            let _ = send.finish();
            match bounded("the stream ends", recv.read_to_end(1 << 16)).await {
                Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
                    CloseCode::from_u64(code.into_inner()).expect("one of our codes")
                }
                other => panic!("the request was not refused: {other:?}"),
            }
        }
    };
    let frame = |req: &GroupRequest| encode_frame(req, 1 << 20).expect("encode");
    let gid = GroupId::from_name(G);
    assert_eq!(
        reset_code(frame(&GroupRequest::ReadIndex(gid))).await,
        CloseCode::NotPermitted,
        "a ticket without join on the group"
    );
    assert_eq!(
        reset_code(frame(&GroupRequest::ReadIndex(GroupId::from_name("nope")))).await,
        CloseCode::UnknownResource,
        "a group this node does not run"
    );
    let mut garbage = 40u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(&[0xff; 40]);
    assert_eq!(reset_code(garbage).await, CloseCode::ProtocolViolation);
    assert_eq!(
        reset_code(u32::MAX.to_be_bytes().to_vec()).await,
        CloseCode::FrameTooLarge
    );
    // The node still serves its group.
    outsider.shutdown().await;
    _g.execute(RegCmd::Write(1, 2))
        .await
        .expect("still serving");
    nodes[0].shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_ticket_expires_is_removed_after_replace_after() {
    let fixture = Fixture::new("groups-expiry");
    let node = |ticket: tessella_node::TicketSource, dir, boot| {
        let mut o = fixture.options();
        o.ticket = ticket;
        o.ticket_leeway = 0;
        o.data_dir = Some(dir);
        o.bootstrap = boot;
        o.build()
    };
    // The short-lived member's id comes from its key: start it once to make one.
    let short_dir = fixture.data_dir();
    let first = node(fixture.group_ticket(&[G]), short_dir.clone(), Vec::new())
        .await
        .expect("start");
    let short_id = first.node_id();
    first.shutdown().await;
    drop(first);

    let mut nodes = Vec::new();
    let a = node(fixture.group_ticket(&[G]), fixture.data_dir(), Vec::new())
        .await
        .expect("start");
    let boot = vec![a.local_addr()];
    nodes.push(a);
    for _ in 0..3 {
        nodes.push(
            node(fixture.group_ticket(&[G]), fixture.data_dir(), boot.clone())
                .await
                .expect("start"),
        );
    }
    let claims = fixture
        .issuer
        .claims(short_id.to_string(), &fixture.network, now(), 6)
        .grant(ResourceKind::Group, G, Permission::Join)
        .grant(ResourceKind::Group, G, Permission::Write);
    let token = fixture.issuer.issue(&claims).expect("ticket");
    let short = node(tessella_node::TicketSource::Static(token), short_dir, boot)
        .await
        .expect("start with a short ticket");
    assert_eq!(short.node_id(), short_id);
    let mut config = GroupConfig::with_voters(3);
    config.replace_after = Duration::from_secs(2);
    let mut groups = join_all(&nodes, G, &config).await;
    groups.extend(join_all(std::slice::from_ref(&short), G, &config).await);
    let id = short_id.to_string();
    let leader = elected(&groups).await;
    wait_until(
        || {
            let s = groups[leader].status();
            s.voters.len() == 3 && s.learners.len() == 2 && !s.joint
        },
        "three voters and two learners, the short-lived member among the five",
    )
    .await;
    // The ticket expires: the transport shuts the member out at once; the
    // group removes it once it has been gone for `replace_after`.
    // (The short-lived member may be the leader: look among the others.)
    let others = &groups[..4];
    wait_until(
        || {
            others.iter().any(|g| {
                let s = g.status();
                g.is_leader()
                    && !s.voters.contains(&id)
                    && !s.learners.contains(&id)
                    && !s.joint
                    && s.voters.len() == 3
            })
        },
        "the member with the expired ticket is removed",
    )
    .await;
    others[0].execute(RegCmd::Write(6, 6)).await.expect("write");
    short.shutdown().await;
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_members_vote_an_unknown_group_and_a_stale_snapshot_chunk_are_refused() {
    let fixture = Fixture::new("groups-nonmember");
    let nodes = group_cluster(&fixture, 4, &[G]).await;
    let members = &nodes[..3];
    let mut config = GroupConfig::with_voters(3);
    config.members = members.iter().map(|n| n.node_id()).collect();
    let groups = join_all(members, G, &config).await;
    let leader = elected(&groups).await;
    wait_until(|| groups[leader].status().voters.len() == 3, "three voters").await;
    // Node 3 holds the grant but never joined: it is no member.
    let outsider = &nodes[3];
    let target = members[(leader + 1) % 3].node_id();
    let me = MemberId::from(outsider.node_id());
    let ask = |req: GroupRequest| {
        let net = outsider.network().clone();
        async move {
            let (mut send, mut recv) = net
                .peer(target)
                .open_bi(StreamFamily::Groups)
                .await
                .expect("stream opens");
            let bytes = encode_frame(&req, 1 << 20).expect("encode");
            let _ = send.write_all(&bytes).await;
            let _ = send.finish();
            match bounded("the stream ends", recv.read_to_end(1 << 16)).await {
                Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
                    Err(CloseCode::from_u64(code.into_inner()).expect("one of our codes"))
                }
                Ok(bytes) => {
                    let mut r = &bytes[..];
                    let resp: Option<GroupResponse> =
                        tessella_node::wire::read_frame(&mut r, 1 << 20)
                            .await
                            .expect("frame");
                    Ok(resp.expect("an answer"))
                }
                other => panic!("unexpected end: {other:?}"),
            }
        }
    };
    let term = groups[leader].status().term;
    let vote = VoteRequest::new(Vote::new(term + 100, me), None);
    assert_eq!(
        ask(GroupRequest::Vote(GroupId::from_name(G), vote.clone()))
            .await
            .err(),
        Some(CloseCode::NotPermitted),
        "a vote request from a non-member"
    );
    assert_eq!(
        ask(GroupRequest::Vote(GroupId::from_name("elsewhere"), vote))
            .await
            .err(),
        Some(CloseCode::UnknownResource),
        "a request for a group the node does not run"
    );
    // A snapshot chunk out of order (offset 4096 of a snapshot never
    // begun), from a stale term: answered, not applied, nothing breaks.
    let chunk = |offset: u64| InstallSnapshotRequest {
        vote: Vote::new(0, me),
        meta: SnapshotMeta {
            last_log_id: None,
            last_membership: Default::default(),
            snapshot_id: "bogus".into(),
        },
        offset,
        data: vec![0xaa; 1024],
        done: false,
    };
    let stale = ask(GroupRequest::Snapshot(GroupId::from_name(G), chunk(4096))).await;
    assert!(
        matches!(&stale, Ok(GroupResponse::Snapshot(r)) if r.vote.leader_id().term >= term),
        "an out-of-order chunk from a stale term is answered with the current vote: {stale:?}"
    );
    // A chunk past the snapshot bound is refused before Raft buffers it.
    let huge = ask(GroupRequest::Snapshot(
        GroupId::from_name(G),
        chunk(GroupConfig::default().max_snapshot_bytes),
    ))
    .await;
    assert!(
        matches!(huge, Ok(GroupResponse::Refused(Refusal::Failed(_)))),
        "{huge:?}"
    );
    // The group is undisturbed: same term, still writing.
    groups[leader]
        .execute(RegCmd::Write(1, 1))
        .await
        .expect("write");
    for g in &groups {
        assert!(
            g.status().term < term + 100,
            "no member took the refused vote's term"
        );
    }
    for n in &nodes {
        n.shutdown().await;
    }
}
