//! The groups subsystem: the groups this node runs, and the protocol
//! handler that serves the `Groups` stream family for all of them.
//!
//! Every incoming stream carries one request naming its group. The handler
//! refuses (resets the stream with a close code, and logs) a frame that is
//! too large or does not decode, a group this node does not run
//! (`UnknownResource`), and a peer whose ticket lacks `join` on the group,
//! or `write` for forwarded writes, or that asks for a vote without being a
//! member of a group this node has a membership for (`NotPermitted`). The transport bounds streams per connection, so
//! a peer holds at most that many requests here at once.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::discovery::GroupRole;
use tokio::sync::{mpsc, watch};

use super::batcher::{self, BatchLimits};
use super::config::GroupConfig;
use super::core::{GroupCore, QueryFn};
use super::error::GroupError;
use super::forming::{self, Answer};
use super::group::{status_of, Group, GroupStatus};
use super::machine::Machine;
use super::net::{GroupNetwork, MetricsCell};
use super::store::{decode, encode, key, GroupDb, LogStore};
use super::types::{MemberId, Raft};
use super::upkeep;
use super::wire::{GroupRequest, GroupResponse, Refusal};
use crate::discovery::{Discovery, Service};
use crate::id::GroupId;
use crate::network::{HandlerFuture, IncomingBi, Network, PeerInfo, ProtocolHandler};
use crate::wire::{self, CloseCode, FrameError, StreamFamily};

/// Most groups one node runs.
pub const MAX_GROUPS: usize = 64;

/// How long a peer has to send its request once it opened a stream.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The groups this node runs.
pub struct Groups {
    net: Network,
    discovery: Arc<Discovery>,
    /// Where the database lives (`None`: in memory).
    db_path: Option<std::path::PathBuf>,
    /// Opened at the first join, so a node that runs no group holds no
    /// database file, writer thread or cache.
    db: std::sync::Mutex<Option<GroupDb>>,
    groups: RwLock<HashMap<GroupId, Arc<GroupCore>>>,
}

/// The protocol handler (a separate value so the transport holds no strong
/// reference cycle through [`Groups`]).
struct Handler(std::sync::Weak<Groups>);

impl Groups {
    /// Start the subsystem on `net`, keeping group state in the redb file
    /// `db_path` (opened at the first join; `None`: in memory).
    pub fn start(
        net: &Network,
        discovery: Arc<Discovery>,
        db_path: Option<std::path::PathBuf>,
    ) -> Result<Arc<Groups>, crate::network::RegisterError> {
        let groups = Arc::new(Groups {
            net: net.clone(),
            discovery,
            db_path,
            db: std::sync::Mutex::new(None),
            groups: RwLock::new(HashMap::new()),
        });
        net.register(Arc::new(Handler(Arc::downgrade(&groups))))?;
        Ok(groups)
    }

    /// The database, opened on first use.
    fn db(&self) -> Result<GroupDb, GroupError> {
        let mut db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = &*db {
            return Ok(db.clone());
        }
        let opened = match &self.db_path {
            Some(path) => GroupDb::open(path),
            None => GroupDb::in_memory(),
        }
        .map_err(|e| GroupError::Storage(e.to_string()))?;
        *db = Some(opened.clone());
        Ok(opened)
    }

    /// The largest request frame read from a peer: the largest
    /// `max_frame` of the groups run here (what their leaders send: appends
    /// and snapshot chunks up to half of it), at most four times the
    /// default; the transport's own frame bound without groups. Not the
    /// transport's bound otherwise: that one sizes control and discovery
    /// frames (64 KiB by default), and a groups request over it (a snapshot
    /// chunk, an append of large entries) would be refused forever.
    fn frame_limit(&self) -> usize {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|c| c.config.max_frame)
            .max()
            .unwrap_or_else(|| self.net.max_frame())
            .min(super::wire::DEFAULT_MAX_FRAME * 4)
    }

    fn get(&self, id: &GroupId) -> Option<Arc<GroupCore>> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Join (or rejoin, after a restart) the group `name`, replicated with
    /// state machine `M`. This node's ticket must grant `join` on it.
    pub async fn join<M: Machine>(
        &self,
        name: &str,
        config: GroupConfig,
    ) -> Result<Group<M>, GroupError> {
        if self.net.is_stopping() {
            return Err(GroupError::Stopped);
        }
        config.check().map_err(GroupError::Config)?;
        let raft_config = config.raft_config(name).map_err(GroupError::Config)?;
        let own = self
            .net
            .ticket_validator()
            .validate(&self.net.ticket(), None, self.net.now())
            .map_err(|_| GroupError::NotPermitted(name.to_string()))?;
        if !config.access.allows_role(&own, name, config.role) {
            return Err(GroupError::NotPermitted(name.to_string()));
        }
        let id = GroupId::from_name(name);
        {
            let groups = self.groups.read().unwrap_or_else(|p| p.into_inner());
            if groups.contains_key(&id) {
                return Err(GroupError::Exists(name.to_string()));
            }
            if groups.len() >= MAX_GROUPS {
                return Err(GroupError::Config(format!(
                    "this node runs {MAX_GROUPS} groups already"
                )));
            }
        }
        let me = MemberId::from(self.net.node_id());
        let db = self.db()?;
        let storage = |e: String| GroupError::Storage(e);
        let store = M::open(db.clone(), id).map_err(|e| GroupError::Storage(e.to_string()))?;
        let log = LogStore::named(db.clone(), id, name);
        let metrics = MetricsCell::default();
        let network = GroupNetwork {
            net: self.net.clone(),
            group: id,
            max_frame: config.max_frame,
            metrics: metrics.clone(),
            learner_heartbeat: config.learner_heartbeat,
        };
        let raft = Raft::new(me, Arc::new(raft_config), network, log, store.clone())
            .await
            .map_err(|e| GroupError::Storage(e.to_string()))?;
        let _ = metrics.set(raft.metrics());
        let promise: Option<Vec<MemberId>> = match db.meta(&id, key::PROMISE).map_err(storage)? {
            Some(b) => Some(decode(&b).map_err(storage)?),
            None => None,
        };
        let (queue, rx) = mpsc::channel(config.queue);
        let limits = BatchLimits {
            max_batch: config.max_batch,
            max_batch_bytes: config.max_batch_bytes,
            max_in_flight: config.max_in_flight,
        };
        tokio::spawn(batcher::run(raft.clone(), name.to_string(), rx, limits));
        let query: QueryFn = {
            let store = store.clone();
            Box::new(move |bytes: &[u8]| {
                let q: M::Query = decode(bytes).map_err(Refusal::Undecodable)?;
                let answer = M::query(&store, &q).map_err(Refusal::Failed)?;
                encode(&answer).map_err(Refusal::Failed)
            })
        };
        let role = config.role;
        let core = Arc::new(GroupCore {
            id,
            name: name.to_string(),
            me,
            raft,
            config,
            net: self.net.clone(),
            db: db.clone(),
            queue,
            applied: M::watch_applied(&store),
            query,
            promise: tokio::sync::Mutex::new(promise),
            stopped: watch::channel(false).0,
            raft_requests: AtomicU64::new(0),
        });
        {
            let mut groups = self.groups.write().unwrap_or_else(|p| p.into_inner());
            if groups.contains_key(&id) {
                return Err(GroupError::Exists(name.to_string()));
            }
            groups.insert(id, core.clone());
        }
        if let Err(e) = self.discovery.advertise(Service::Group { id, role }) {
            tracing::warn!(group = name, error = %e, "could not advertise the group");
        }
        tokio::spawn(upkeep::run(core.clone(), self.discovery.clone()));
        tracing::info!(group = name, %id, ?role, "joined group");
        Ok(Group {
            core,
            store,
            _m: PhantomData,
        })
    }

    /// The status of every group this node runs, by name.
    pub fn statuses(&self) -> Vec<GroupStatus> {
        let mut all: Vec<GroupStatus> = self
            .groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|c| status_of(c))
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The status of the group called `name`, if this node runs it.
    pub fn status(&self, name: &str) -> Option<GroupStatus> {
        self.get(&GroupId::from_name(name)).map(|c| status_of(&c))
    }

    /// Change the membership of group `name` (this node must lead it).
    pub async fn change_members(
        &self,
        name: &str,
        change: MemberChange,
    ) -> Result<u64, GroupError> {
        let core = self
            .get(&GroupId::from_name(name))
            .ok_or_else(|| GroupError::Membership(format!("no group {name} here")))?;
        match change {
            MemberChange::AddLearner(n) => upkeep::add_learner(&core, n.into()).await,
            MemberChange::Promote(n) => {
                upkeep::change(
                    &core,
                    openraft::ChangeMembers::AddVoterIds([MemberId::from(n)].into()),
                    true,
                )
                .await
            }
            MemberChange::Remove(n) => upkeep::remove(&core, [MemberId::from(n)].into()).await,
        }
    }

    /// Stop Raft in every group and close the database (the node is
    /// stopping). State stays on disk. Calling it again does nothing more.
    pub async fn shutdown(&self) {
        let cores: Vec<Arc<GroupCore>> = self
            .groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, c)| c)
            .collect();
        for core in cores {
            let _ = core.stopped.send(true);
            let _ = core.raft.shutdown().await;
        }
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(db) = db {
            db.close(Duration::from_secs(5)).await;
        }
    }
}

/// A membership change asked for by an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChange {
    /// Add a node as a learner.
    AddLearner(crate::id::NodeId),
    /// Make a learner a voter.
    Promote(crate::id::NodeId),
    /// Remove a node from the group.
    Remove(crate::id::NodeId),
}

fn refuse(stream: &mut IncomingBi, code: CloseCode) {
    let _ = stream.recv.stop(code.into());
    let _ = stream.send.reset(code.into());
}

impl Handler {
    async fn serve(&self, peer: PeerInfo, mut stream: IncomingBi) {
        let Some(groups) = self.0.upgrade() else {
            return refuse(&mut stream, CloseCode::Shutdown);
        };
        let from = peer.node_id();
        let max = groups.frame_limit();
        let read = tokio::time::timeout(
            REQUEST_READ_TIMEOUT,
            wire::read_frame::<_, GroupRequest>(&mut stream.recv, max),
        )
        .await;
        let req = match read {
            Ok(Ok(Some(req))) => req,
            Ok(Ok(None)) => return,
            Ok(Err(e @ FrameError::TooLarge { .. })) => {
                tracing::warn!(peer = %from, error = %e, "groups: oversized request refused");
                return refuse(&mut stream, CloseCode::FrameTooLarge);
            }
            Ok(Err(e)) => {
                tracing::warn!(peer = %from, error = %e, "groups: malformed request refused");
                return refuse(&mut stream, CloseCode::ProtocolViolation);
            }
            Err(_) => {
                tracing::debug!(peer = %from, "groups: no request in time");
                return refuse(&mut stream, CloseCode::ProtocolViolation);
            }
        };
        let Some(core) = groups.get(&req.group()) else {
            tracing::debug!(peer = %from, group = %req.group(), "groups: request for a group not run here");
            return refuse(&mut stream, CloseCode::UnknownResource);
        };
        let access = &core.config.access;
        let permitted = match req {
            GroupRequest::Forward(..) => access.allows(&peer.claims, &core.name, access.write),
            GroupRequest::ReadIndex(..) | GroupRequest::Query(..) => {
                access.allows_role(&peer.claims, &core.name, GroupRole::Learner)
            }
            _ => access.allows(&peer.claims, &core.name, access.voter),
        };
        if !permitted {
            tracing::warn!(peer = %from, group = %core.name, kind = req.kind(), "groups: ticket lacks the grant");
            return refuse(&mut stream, CloseCode::NotPermitted);
        }
        if let GroupRequest::Vote(..) = req {
            let member = {
                let m = core.raft.metrics();
                let m = m.borrow();
                // A member not yet initialized (founding, or about to be
                // added) knows no membership and must be able to vote.
                let mut nodes = m.membership_config.nodes().peekable();
                let member =
                    nodes.peek().is_none() || nodes.any(|(id, _)| *id == MemberId::from(from));
                member
            };
            if !member {
                tracing::warn!(peer = %from, group = %core.name, "groups: vote request from a non-member");
                return refuse(&mut stream, CloseCode::NotPermitted);
            }
        }
        let kind = req.kind();
        if matches!(
            req,
            GroupRequest::Append(..) | GroupRequest::Vote(..) | GroupRequest::Snapshot(..)
        ) {
            core.raft_requests.fetch_add(1, Ordering::Relaxed);
        }
        let resp = answer(&groups, &core, MemberId::from(from), req).await;
        metrics::counter!("tessella_group_requests_total", "group" => core.name.clone(), "kind" => kind)
            .increment(1);
        if let Err(e) = wire::write_frame(&mut stream.send, &resp, max).await {
            tracing::debug!(peer = %from, error = %e, "groups: answer not sent");
            return;
        }
        let _ = stream.send.finish();
    }
}

async fn answer(
    groups: &Groups,
    core: &GroupCore,
    from: MemberId,
    req: GroupRequest,
) -> GroupResponse {
    let failed = |e: &dyn std::fmt::Display| GroupResponse::Refused(Refusal::Failed(e.to_string()));
    match req {
        GroupRequest::Append(_, r) => match core.raft.append_entries(r).await {
            Ok(r) => GroupResponse::Append(r),
            Err(e) => failed(&e),
        },
        GroupRequest::Vote(_, r) => match core.raft.vote(r).await {
            Ok(r) => GroupResponse::Vote(r),
            Err(e) => failed(&e),
        },
        GroupRequest::Snapshot(_, r)
            if r.offset.saturating_add(r.data.len() as u64) > core.config.max_snapshot_bytes =>
        {
            tracing::warn!(group = %core.name, peer = %from, offset = r.offset, "snapshot over max_snapshot_bytes refused");
            GroupResponse::Refused(Refusal::Failed(format!(
                "snapshot larger than {} bytes",
                core.config.max_snapshot_bytes
            )))
        }
        GroupRequest::Snapshot(_, r) => match core.raft.install_snapshot(r).await {
            Ok(r) => GroupResponse::Snapshot(r),
            Err(e) => failed(&e),
        },
        GroupRequest::Forward(_, cmd) => {
            if !core.is_leader() {
                return GroupResponse::Refused(Refusal::NotLeader(core.leader()));
            }
            if cmd.len() > core.config.max_batch_bytes {
                return GroupResponse::Refused(Refusal::Undecodable(format!(
                    "command of {} bytes exceeds {}",
                    cmd.len(),
                    core.config.max_batch_bytes
                )));
            }
            let until = Instant::now() + core.config.write_timeout;
            match core.propose_local(cmd, until).await {
                Ok((index, out)) => GroupResponse::Written(index, out),
                Err(r) => GroupResponse::Refused(r),
            }
        }
        GroupRequest::ReadIndex(_) => match core.read_index_local().await {
            Ok(i) => GroupResponse::ReadIndex(i),
            Err(r) => GroupResponse::Refused(r),
        },
        GroupRequest::Query(_, q) => {
            if !core.is_leader() {
                return GroupResponse::Refused(Refusal::NotLeader(core.leader()));
            }
            match (core.query)(&q) {
                Ok(a) => GroupResponse::Answer(a),
                Err(r) => GroupResponse::Refused(r),
            }
        }
        GroupRequest::Found(_, set, binding) => {
            let initialized = core.raft.is_initialized().await.unwrap_or(true);
            let mine = upkeep::my_founding_set(core, &groups.discovery);
            let mut promise = core.promise.lock().await;
            let verdict = forming::answer(
                core.me,
                from,
                &set,
                core.config.voters,
                initialized || !core.config.members.is_empty(),
                promise.as_deref(),
                mine.as_deref(),
            );
            match verdict {
                Answer::Promise if !binding => GroupResponse::Founded(true),
                Answer::Promise => match upkeep::persist_promise(core, &set).await {
                    Ok(()) => {
                        tracing::info!(group = %core.name, proposer = %from, "promised a founding set");
                        *promise = Some(set);
                        GroupResponse::Founded(true)
                    }
                    Err(e) => failed(&e),
                },
                Answer::Again => GroupResponse::Founded(true),
                Answer::Refuse(why) => {
                    tracing::debug!(group = %core.name, proposer = %from, why, "founding set refused");
                    GroupResponse::Founded(false)
                }
            }
        }
    }
}

impl ProtocolHandler for Handler {
    fn family(&self) -> StreamFamily {
        StreamFamily::Groups
    }

    fn bi(self: Arc<Self>, peer: PeerInfo, stream: IncomingBi) -> HandlerFuture {
        Box::pin(async move { self.serve(peer, stream).await })
    }

    fn shutdown(self: Arc<Self>) -> HandlerFuture {
        Box::pin(async move {
            if let Some(groups) = self.0.upgrade() {
                groups.shutdown().await;
            }
        })
    }
}
