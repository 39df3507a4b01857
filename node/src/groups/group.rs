//! The typed handle an application holds on a group it joined: writes,
//! reads at a chosen consistency, and waits on the group's progress.

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use openraft::ServerState;
use serde::Serialize;
use tokio::sync::watch;

use super::core::GroupCore;
use super::error::GroupError;
use super::machine::{Machine, StateMachine};
use super::store::{decode, encode};
use super::types::MemberId;
use crate::id::{GroupId, NodeId};

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began: the leader
    /// confirms its leadership with a quorum, and this member waits until it
    /// has applied the leader's commit index (Raft's read index).
    #[default]
    Linearizable,
    /// Answered by the node that believes it leads, without a quorum round:
    /// usually fresh, stale only while a deposed leader has not noticed.
    Leader,
    /// Answered from this member's state: may lag the leader.
    Local,
}

/// A node's group, typed by its state machine.
pub struct Group<M: Machine> {
    pub(crate) core: Arc<GroupCore>,
    pub(crate) store: M::Store,
    pub(crate) _m: PhantomData<fn() -> M>,
}

impl<M: Machine> Clone for Group<M> {
    fn clone(&self) -> Self {
        Group {
            core: self.core.clone(),
            store: self.store.clone(),
            _m: PhantomData,
        }
    }
}

impl<M: Machine> std::fmt::Debug for Group<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.core.name)
            .field("member", &self.core.me)
            .finish_non_exhaustive()
    }
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, GroupError> {
    encode(v).map_err(GroupError::Encoding)
}

impl<M: Machine> Group<M> {
    /// The group's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The group's id.
    pub fn id(&self) -> GroupId {
        self.core.id
    }

    /// Apply `command` through the log and return its output once committed
    /// and applied at the leader. Writes from a follower go to the leader.
    pub async fn execute(&self, command: M::Command) -> Result<M::Output, GroupError> {
        self.execute_indexed(command).await.map(|(_, out)| out)
    }

    /// Like [`Group::execute`], also returning the command's log index (wait
    /// for it elsewhere with [`When::reaches`]).
    pub async fn execute_indexed(
        &self,
        command: M::Command,
    ) -> Result<(u64, M::Output), GroupError> {
        let (index, out) = self.core.write(enc(&command)?).await?;
        let out = decode(&out).map_err(GroupError::Encoding)?;
        Ok((index, out))
    }

    /// Run `query` at the given consistency.
    pub async fn query(
        &self,
        query: &M::Query,
        consistency: Consistency,
    ) -> Result<M::QueryOutput, GroupError> {
        match consistency {
            Consistency::Local => M::query(&self.store, query).map_err(GroupError::Storage),
            Consistency::Linearizable => {
                self.core.linearizable_point().await?;
                M::query(&self.store, query).map_err(GroupError::Storage)
            }
            Consistency::Leader => {
                let answer = self.core.query_at_leader(enc(query)?).await?;
                decode(&answer).map_err(GroupError::Encoding)
            }
        }
    }

    /// Waits on the group's progress.
    pub fn when(&self) -> When {
        let metrics = self.core.raft.metrics();
        let leader = metrics.borrow().current_leader;
        When {
            metrics,
            applied: self.core.applied.clone(),
            me: self.core.me,
            leader,
        }
    }

    /// The leader this member knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.core.leader().map(|m| m.node_id())
    }

    /// Whether this member leads.
    pub fn is_leader(&self) -> bool {
        self.core.is_leader()
    }

    /// The index this member has applied.
    pub fn applied(&self) -> u64 {
        *self.core.applied.borrow()
    }

    /// Follows the index this member has applied.
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.core.applied.clone()
    }

    /// The commit index this member knows.
    pub fn committed(&self) -> u64 {
        committed_index(&self.core)
    }

    /// Voters and learners, as this member knows them.
    pub fn members(&self) -> (Vec<NodeId>, Vec<NodeId>) {
        let m = self.core.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters = membership.voter_ids().map(|v| v.node_id()).collect();
        let learners = membership.learner_ids().map(|l| l.node_id()).collect();
        (voters, learners)
    }

    /// The group's state as this member sees it.
    pub fn status(&self) -> GroupStatus {
        status_of(&self.core)
    }

    /// Add `node` as a learner (the leader only; it replicates but does not
    /// vote). Upkeep does this by itself for nodes that advertise the group.
    pub async fn add_learner(&self, node: NodeId) -> Result<u64, GroupError> {
        super::upkeep::add_learner(&self.core, node.into()).await
    }

    /// Make the given learners voters (the leader only).
    pub async fn promote(&self, nodes: &[NodeId]) -> Result<u64, GroupError> {
        let ids: BTreeSet<MemberId> = nodes.iter().map(|&n| n.into()).collect();
        super::upkeep::change(&self.core, openraft::ChangeMembers::AddVoterIds(ids), true).await
    }

    /// Remove `nodes` from the group altogether (the leader only).
    pub async fn remove(&self, nodes: &[NodeId]) -> Result<u64, GroupError> {
        super::upkeep::remove(&self.core, nodes.iter().map(|&n| n.into()).collect()).await
    }
}

/// Waits on a group's progress, each bounded by the caller (wrap them in a
/// timeout).
pub struct When {
    metrics: watch::Receiver<super::types::RaftMetrics>,
    applied: watch::Receiver<u64>,
    me: MemberId,
    /// The leader known when this `When` was made.
    leader: Option<MemberId>,
}

impl When {
    /// Until some member is leader; returns it.
    pub async fn leader_elected(&mut self) -> Result<NodeId, GroupError> {
        let m = self
            .metrics
            .wait_for(|m| m.current_leader.is_some())
            .await
            .map_err(|_| GroupError::Stopped)?;
        m.current_leader
            .map(|l| l.node_id())
            .ok_or(GroupError::Stopped)
    }

    /// Until a leader other than the one known when [`Group::when`] was
    /// called is elected; returns it (and waits for the next change when
    /// called again).
    pub async fn leader_changed(&mut self) -> Result<NodeId, GroupError> {
        let before = self.leader;
        let m = self
            .metrics
            .wait_for(|m| m.current_leader.is_some() && m.current_leader != before)
            .await
            .map_err(|_| GroupError::Stopped)?;
        let now = m.current_leader;
        drop(m);
        self.leader = now;
        now.map(|l| l.node_id()).ok_or(GroupError::Stopped)
    }

    /// Until this node is a member (voter or learner) following a known
    /// leader, or leads.
    pub async fn online(&mut self) -> Result<(), GroupError> {
        let me = self.me;
        self.metrics
            .wait_for(|m| {
                m.current_leader.is_some()
                    && m.membership_config.nodes().any(|(id, _)| *id == me)
                    && matches!(
                        m.state,
                        ServerState::Leader | ServerState::Follower | ServerState::Learner
                    )
            })
            .await
            .map_err(|_| GroupError::Stopped)?;
        Ok(())
    }

    /// Until this member has applied the entry at `index`.
    pub async fn reaches(&mut self, index: u64) -> Result<(), GroupError> {
        self.applied
            .wait_for(|&a| a >= index)
            .await
            .map_err(|_| GroupError::Stopped)?;
        Ok(())
    }
}

/// A group's state as one member sees it (the admin API's view).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct GroupStatus {
    /// The group's name.
    pub name: String,
    /// The group's id, hex.
    pub id: String,
    /// This member's Raft state: leader, follower, candidate, learner.
    pub state: String,
    /// The current term.
    pub term: u64,
    /// The leader this member knows of (node id, hex).
    pub leader: Option<String>,
    /// Voters (node ids, hex).
    pub voters: Vec<String>,
    /// Learners (node ids, hex).
    pub learners: Vec<String>,
    /// Whether a membership change is in progress (joint consensus).
    pub joint: bool,
    /// The last log index this member holds.
    pub last_log_index: u64,
    /// The last index this member applied.
    pub applied: u64,
    /// The index the last snapshot covers.
    pub snapshot: u64,
    /// The last index removed from the log (covered by a snapshot).
    pub purged: u64,
    /// The voters the group should keep.
    pub target_voters: usize,
    /// For the leader: each member's replication progress.
    pub replication: Vec<MemberProgress>,
    /// The commit index this member knows.
    pub committed: u64,
    /// Raft requests (appends and heartbeats, votes, snapshot chunks) this
    /// member has answered since the group started here.
    pub raft_requests: u64,
}

/// How far one member has replicated (leader's view).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MemberProgress {
    /// The member (node id, hex).
    pub node: String,
    /// The last index it holds.
    pub matched: u64,
    /// Entries it lags behind the leader's log.
    pub lag: u64,
}

pub(crate) fn status_of(core: &GroupCore) -> GroupStatus {
    let m = core.raft.metrics();
    let m = m.borrow();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<MemberId> = membership.voter_ids().collect();
    let learners = membership.learner_ids().map(|l| l.node_id().to_string());
    GroupStatus {
        name: core.name.clone(),
        id: core.id.to_string(),
        state: format!("{:?}", m.state).to_lowercase(),
        term: m.current_term,
        leader: m.current_leader.map(|l| l.node_id().to_string()),
        voters: voters.iter().map(|v| v.node_id().to_string()).collect(),
        learners: learners.collect(),
        joint: membership.get_joint_config().len() > 1,
        last_log_index: m.last_log_index.unwrap_or(0),
        applied: m.last_applied.map(|l| l.index).unwrap_or(0),
        snapshot: m.snapshot.map(|l| l.index).unwrap_or(0),
        purged: m.purged.map(|l| l.index).unwrap_or(0),
        target_voters: core.config.voters,
        replication: m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, log)| {
                        let matched = log.map(|l| l.index).unwrap_or(0);
                        MemberProgress {
                            node: id.node_id().to_string(),
                            matched,
                            lag: m.last_log_index.unwrap_or(0).saturating_sub(matched),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default(),
        committed: committed_index(core),
        raft_requests: core.raft_requests.load(Ordering::Relaxed),
    }
}

/// The commit index stored for the group (0: none yet).
pub(crate) fn committed_index(core: &GroupCore) -> u64 {
    core.db
        .meta(&core.id, super::store::key::COMMITTED)
        .ok()
        .flatten()
        .and_then(|b| decode::<Option<super::types::LogId>>(&b).ok())
        .flatten()
        .map(|l| l.index)
        .unwrap_or(0)
}

impl<M: StateMachine> Group<M> {
    /// Read the local state directly (a [`Consistency::Local`] read with
    /// any closure).
    pub fn read_local<T>(&self, f: impl FnOnce(&M) -> T) -> T {
        self.store.read(f)
    }
}
