//! Membership upkeep, run periodically on every member: founding the group
//! (see [`forming`](super::forming)), and on the leader, taking in nodes that
//! advertise the group as learners, promoting caught-up voters up to the
//! declared size, replacing voters gone for longer than `replace_after`, and
//! fencing members whose tickets no longer grant `join` or were revoked.
//!
//! The leader makes at most one membership change per round and none while
//! a joint configuration is in progress, so changes never pile up.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{ChangeMembers, EmptyNode};

use super::core::GroupCore;
use super::error::GroupError;
use super::forming;
use super::net::call;
use super::store::{encode, key, Op};
use super::types::MemberId;
use super::wire::{GroupRequest, GroupResponse};
use crate::discovery::{Discovery, GroupRole, Service};

/// A learner is caught up when it is at most this many entries behind.
const CAUGHT_UP_LAG: u64 = 64;
/// Rounds a founding set must stand before it is proposed.
const SETTLE_ROUNDS: u32 = 4;
/// Most learners added in one round.
const LEARNERS_PER_ROUND: usize = 4;

fn change_error(e: RaftError<MemberId, ClientWriteError<MemberId, EmptyNode>>) -> GroupError {
    GroupError::Membership(e.to_string())
}

/// Apply a membership change; returns the log index of its (last) entry.
pub(crate) async fn change(
    core: &GroupCore,
    changes: ChangeMembers<MemberId, EmptyNode>,
    retain: bool,
) -> Result<u64, GroupError> {
    let resp = core
        .raft
        .change_membership(changes, retain)
        .await
        .map_err(change_error)?;
    Ok(resp.log_id.index)
}

/// Add `id` as a learner without waiting for it to catch up.
pub(crate) async fn add_learner(core: &GroupCore, id: MemberId) -> Result<u64, GroupError> {
    let resp = core
        .raft
        .add_learner(id, EmptyNode {}, false)
        .await
        .map_err(change_error)?;
    Ok(resp.log_id.index)
}

/// Remove members altogether: voters first (through joint consensus), then
/// whatever is left as a learner.
pub(crate) async fn remove(core: &GroupCore, ids: BTreeSet<MemberId>) -> Result<u64, GroupError> {
    let voters: BTreeSet<MemberId> = {
        let m = core.raft.metrics();
        let m = m.borrow();
        m.membership_config.membership().voter_ids().collect()
    };
    let leaving: BTreeSet<MemberId> = ids.intersection(&voters).copied().collect();
    let mut index = 0;
    if !leaving.is_empty() {
        if leaving.len() == voters.len() {
            return Err(GroupError::Membership("cannot remove every voter".into()));
        }
        index = change(core, ChangeMembers::RemoveVoters(leaving), false).await?;
    }
    let nodes: BTreeSet<MemberId> = {
        let m = core.raft.metrics();
        let m = m.borrow();
        m.membership_config.nodes().map(|(id, _)| *id).collect()
    };
    let rest: BTreeSet<MemberId> = ids.intersection(&nodes).copied().collect();
    if !rest.is_empty() {
        index = change(core, ChangeMembers::RemoveNodes(rest), false).await?;
    }
    Ok(index)
}

/// Nodes advertising the group whose tickets grant `join` and are not
/// revoked (this node included when its role matches), with their roles;
/// and the advertisers refused for their tickets.
pub(crate) fn advertisers(
    core: &GroupCore,
    discovery: &Discovery,
) -> (BTreeMap<MemberId, GroupRole>, BTreeSet<MemberId>) {
    let revocations = core.net.revocations();
    let mut ok = BTreeMap::new();
    let mut refused = BTreeSet::new();
    let records =
        discovery.verified_providers(|s| matches!(s, Service::Group { id, .. } if *id == core.id));
    for r in records {
        let id = MemberId::from(r.node_id());
        let role = r.record().services.iter().find_map(|s| match s {
            Service::Group { id, role } if *id == core.id => Some(*role),
            _ => None,
        });
        let claims = r.claims();
        let permitted = role
            .is_some_and(|role| core.config.access.allows_role(claims, &core.name, role))
            && !revocations.covers(claims);
        match (permitted, role) {
            (true, Some(role)) => {
                ok.insert(id, role);
            }
            _ => {
                refused.insert(id);
            }
        }
    }
    ok.insert(core.me, core.config.role);
    (ok, refused)
}

/// The founding set this node sees now.
pub(crate) fn my_founding_set(core: &GroupCore, discovery: &Discovery) -> Option<Vec<MemberId>> {
    if core.config.role != GroupRole::Voter {
        return None;
    }
    let (ok, _) = advertisers(core, discovery);
    let eligible: Vec<MemberId> = ok
        .into_iter()
        .filter(|(_, role)| *role == GroupRole::Voter)
        .map(|(id, _)| id)
        .collect();
    forming::founding_set(&eligible, core.config.voters)
}

/// Persist this node's promise of `set` (before anyone is told of it).
pub(crate) async fn persist_promise(core: &GroupCore, set: &[MemberId]) -> Result<(), String> {
    let bytes = encode(&set.to_vec())?;
    core.db
        .write(vec![Op::Put(core.id, key::PROMISE, Some(bytes))], true)
        .await
}

async fn initialize(core: &GroupCore, set: BTreeSet<MemberId>) {
    match core.raft.initialize(set.clone()).await {
        Ok(()) => {
            tracing::info!(group = %core.name, members = set.len(), "group founded");
        }
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
        Err(e) => tracing::warn!(group = %core.name, error = %e, "founding failed"),
    }
}

/// Ask every other member of `set` about it; true when all say yes.
async fn ask_all(core: &GroupCore, set: &[MemberId], binding: bool) -> bool {
    let deadline = core.config.election_timeout.1 * 4;
    // One member at a time (at most eight; founding happens once).
    for &m in set.iter().filter(|&&m| m != core.me) {
        let req = GroupRequest::Found(core.id, set.to_vec(), binding);
        let r = call(&core.net, m, &req, core.config.max_frame, deadline).await;
        if !matches!(r, Ok(GroupResponse::Founded(true))) {
            return false;
        }
    }
    true
}

/// One founding attempt (the node is not initialized).
async fn found(core: &GroupCore, discovery: &Discovery, memory: &mut Memory) {
    if !core.config.members.is_empty() {
        let set: BTreeSet<MemberId> = core.config.members.iter().map(|&n| n.into()).collect();
        if set.contains(&core.me) {
            initialize(core, set).await;
        }
        return;
    }
    let Some(set) = my_founding_set(core, discovery) else {
        memory.seen = None;
        return;
    };
    // Propose only a set that has stood for a few rounds, so the members'
    // views have had time to agree.
    match &memory.seen {
        Some((seen, since)) if *seen == set => {
            if since.elapsed() < core.config.upkeep_every * SETTLE_ROUNDS {
                return;
            }
        }
        _ => {
            memory.seen = Some((set.clone(), Instant::now()));
            return;
        }
    }
    if !forming::should_propose(core.me, &set, core.promise.lock().await.as_deref()) {
        return;
    }
    // Ask first without binding anyone: a member whose view differs says
    // no and nobody is left holding a promise to a set that cannot form.
    if !ask_all(core, &set, false).await {
        tracing::debug!(group = %core.name, "founding set not agreed by all yet");
        return;
    }
    if !ask_all(core, &set, true).await {
        tracing::warn!(group = %core.name, "founding set not promised by all");
        return;
    }
    // The proposer promises last, and only the set everyone promised.
    {
        let mut promise = core.promise.lock().await;
        if !forming::should_propose(core.me, &set, promise.as_deref()) {
            return;
        }
        if promise.is_none() {
            if let Err(e) = persist_promise(core, &set).await {
                tracing::warn!(group = %core.name, error = %e, "could not persist a founding promise");
                return;
            }
            *promise = Some(set.clone());
        }
    }
    initialize(core, set.into_iter().collect()).await;
}

/// Where upkeep keeps what it learned between rounds.
#[derive(Default)]
struct Memory {
    /// When each member was first seen unreachable (leader only).
    absent_since: HashMap<MemberId, Instant>,
    /// The founding set last computed, and since when it has stood.
    seen: Option<(Vec<MemberId>, Instant)>,
    /// The leader at the last round (to count leader changes).
    leader: Option<MemberId>,
}

/// One round on the leader.
async fn lead(core: &GroupCore, discovery: &Discovery, memory: &mut Memory) {
    let m = core.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership().clone();
    if membership.get_joint_config().len() > 1 {
        return;
    }
    let voters: BTreeSet<MemberId> = membership.voter_ids().collect();
    let nodes: BTreeSet<MemberId> = membership.nodes().map(|(id, _)| *id).collect();
    let (wanted, refused) = advertisers(core, discovery);

    // 1. Fence members whose tickets no longer allow them in.
    let fenced: BTreeSet<MemberId> = refused
        .intersection(&nodes)
        .filter(|&&id| id != core.me)
        .copied()
        .collect();
    if !fenced.is_empty() {
        let ids: Vec<String> = fenced.iter().map(|f| f.to_string()).collect();
        match remove(core, fenced).await {
            Ok(_) => {
                tracing::warn!(group = %core.name, members = ?ids, "members fenced: ticket no longer grants join")
            }
            Err(e) => tracing::warn!(group = %core.name, error = %e, "fencing failed"),
        }
        return;
    }

    // 2. Take in new advertisers as learners.
    let new: Vec<MemberId> = wanted
        .keys()
        .filter(|id| !nodes.contains(id))
        .take(LEARNERS_PER_ROUND)
        .copied()
        .collect();
    for id in &new {
        match add_learner(core, *id).await {
            Ok(_) => tracing::info!(group = %core.name, learner = %id, "learner added"),
            Err(e) => tracing::debug!(group = %core.name, error = %e, "adding a learner failed"),
        }
    }
    if !new.is_empty() {
        return;
    }

    // 3. Promote caught-up learners that want to vote, up to the target.
    let last = m.last_log_index.unwrap_or(0);
    let caught_up = |id: &MemberId| {
        m.replication
            .as_ref()
            .and_then(|r| r.get(id))
            .and_then(|l| l.map(|l| l.index))
            .is_some_and(|i| i + CAUGHT_UP_LAG >= last)
    };
    let candidates: Vec<MemberId> = nodes
        .difference(&voters)
        .filter(|id| wanted.get(id) == Some(&GroupRole::Voter) && caught_up(id))
        .copied()
        .collect();
    if voters.len() < core.config.voters && !candidates.is_empty() {
        let room = core.config.voters - voters.len();
        let ids: BTreeSet<MemberId> = candidates.iter().take(room).copied().collect();
        match change(core, ChangeMembers::AddVoterIds(ids.clone()), true).await {
            Ok(_) => tracing::info!(group = %core.name, promoted = ids.len(), "learners promoted"),
            Err(e) => tracing::debug!(group = %core.name, error = %e, "promotion failed"),
        }
        return;
    }

    // 4. Members gone for longer than `replace_after` (crashed, rebooted
    //    into a new identity, or fenced by the transport when their ticket
    //    expired): a voter is replaced by a caught-up learner that wants to
    //    vote, or removed if the voters left still hold a majority of the
    //    declared size; a learner is removed.
    let connected: BTreeSet<MemberId> = core
        .net
        .connected()
        .iter()
        .map(|p| MemberId::from(p.identity.node_id))
        .collect();
    let now = Instant::now();
    memory.absent_since.retain(|id, _| nodes.contains(id));
    for v in nodes.iter().filter(|&&v| v != core.me) {
        if connected.contains(v) {
            memory.absent_since.remove(v);
        } else {
            memory.absent_since.entry(*v).or_insert(now);
        }
    }
    let gone: Vec<MemberId> = memory
        .absent_since
        .iter()
        .filter(|(_, since)| now.duration_since(**since) >= core.config.replace_after)
        .map(|(id, _)| *id)
        .collect();
    let majority = core.config.voters / 2 + 1;
    if let Some(&v) = gone.iter().find(|id| voters.contains(id)) {
        let spare = candidates.iter().find(|c| !gone.contains(c)).copied();
        let changed = match spare {
            Some(by) => {
                let mut next = voters.clone();
                next.remove(&v);
                next.insert(by);
                change(core, ChangeMembers::ReplaceAllVoters(next), false)
                    .await
                    .map(|_| format!("replaced by {by}"))
            }
            None if voters.len() > majority => {
                change(core, ChangeMembers::RemoveVoters([v].into()), false)
                    .await
                    .map(|_| "removed".to_string())
            }
            None => return,
        };
        match changed {
            Ok(how) => {
                memory.absent_since.remove(&v);
                tracing::warn!(group = %core.name, gone = %v, how, "unreachable voter");
            }
            Err(e) => tracing::debug!(group = %core.name, error = %e, "replacement failed"),
        }
        return;
    }
    if let Some(&l) = gone.iter().find(|id| !voters.contains(id)) {
        match change(core, ChangeMembers::RemoveNodes([l].into()), false).await {
            Ok(_) => {
                memory.absent_since.remove(&l);
                tracing::warn!(group = %core.name, gone = %l, "unreachable learner removed");
            }
            Err(e) => tracing::debug!(group = %core.name, error = %e, "removing a learner failed"),
        }
    }
}

fn record_metrics(core: &GroupCore, memory: &mut Memory) {
    let m = core.raft.metrics().borrow().clone();
    let labels = [("group", core.name.clone())];
    if m.current_leader != memory.leader {
        if m.current_leader.is_some() {
            metrics::counter!("tessella_group_leader_changes_total", &labels).increment(1);
        }
        memory.leader = m.current_leader;
    }
    let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
    let committed = super::group::committed_index(core);
    metrics::gauge!("tessella_group_term", &labels).set(m.current_term as f64);
    metrics::gauge!("tessella_group_is_leader", &labels).set(if core.is_leader() {
        1.0
    } else {
        0.0
    });
    metrics::gauge!("tessella_group_commit_index", &labels).set(committed as f64);
    metrics::gauge!("tessella_group_applied_index", &labels).set(applied as f64);
    metrics::gauge!("tessella_group_apply_lag", &labels)
        .set(committed.saturating_sub(applied) as f64);
    metrics::gauge!("tessella_group_voters", &labels)
        .set(m.membership_config.membership().voter_ids().count() as f64);
}

/// Run upkeep until the group stops.
pub(crate) async fn run(core: Arc<GroupCore>, discovery: Arc<Discovery>) {
    let mut stopped = core.stopped.subscribe();
    let mut memory = Memory::default();
    // A timer, not catalog events: waking on every record refresh cost a
    // fifth of the write throughput in `cargo bench --bench groups`.
    let mut tick = tokio::time::interval(core.config.upkeep_every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if *stopped.borrow() {
        return;
    }
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = stopped.changed() => {
                if changed.is_err() || *stopped.borrow() {
                    return;
                }
                continue;
            }
        }
        record_metrics(&core, &mut memory);
        match core.raft.is_initialized().await {
            Ok(false) => found(&core, &discovery, &mut memory).await,
            Ok(true) if core.is_leader() => lead(&core, &discovery, &mut memory).await,
            Ok(true) => memory.absent_since.clear(),
            Err(_) => return,
        }
    }
}
