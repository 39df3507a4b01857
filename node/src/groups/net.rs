//! Raft's network over the node's attested connections: the client half
//! (openraft's `RaftNetworkFactory`) and one request/response call.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, Timeout, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{EmptyNode, LogId, RaftMetrics, RaftNetwork, RaftNetworkFactory, Vote};
use tokio::sync::watch;

use super::types::{GroupTypes, MemberId};
use super::wire::{GroupRequest, GroupResponse};
use crate::id::GroupId;
use crate::network::{KeepAlive, Network};
use crate::wire::{self, StreamFamily};

/// Why a call got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Nothing reached the peer (no connection, no stream): safe to retry.
    #[error("not sent to {0}: {1}")]
    NotSent(MemberId, String),
    /// The request may have reached the peer, but no answer came.
    #[error("no answer from {0}: {1}")]
    Lost(MemberId, String),
    /// No answer within the deadline.
    #[error("{0} did not answer within {1:?}")]
    Timeout(MemberId, Duration),
}

/// Send `req` to `to` on a fresh stream and read its one response.
pub(crate) async fn call(
    net: &Network,
    to: MemberId,
    req: &GroupRequest,
    max_frame: usize,
    deadline: Duration,
) -> Result<GroupResponse, CallError> {
    let peer = net.peer(to.node_id());
    let opened = tokio::time::timeout(deadline, peer.open_bi(StreamFamily::Groups)).await;
    let (mut send, mut recv) = match opened {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(CallError::NotSent(to, e.to_string())),
        Err(_) => return Err(CallError::NotSent(to, "open timed out".into())),
    };
    let exchange = async {
        wire::write_frame(&mut send, req, max_frame)
            .await
            .map_err(|e| CallError::Lost(to, e.to_string()))?;
        let _ = send.finish();
        match wire::read_frame::<_, GroupResponse>(&mut recv, max_frame).await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(CallError::Lost(
                to,
                "stream closed without an answer".into(),
            )),
            Err(e) => Err(CallError::Lost(to, e.to_string())),
        }
    };
    match tokio::time::timeout(deadline, exchange).await {
        Ok(r) => r,
        Err(_) => Err(CallError::Timeout(to, deadline)),
    }
}

/// The group's own Raft metrics, set once its Raft runs: the clients read
/// the membership from it (the network is built before the Raft it serves).
pub(crate) type MetricsCell = Arc<OnceLock<watch::Receiver<RaftMetrics<MemberId, EmptyNode>>>>;

/// Makes a [`GroupClient`] per target for one group's Raft.
pub struct GroupNetwork {
    pub(crate) net: Network,
    pub(crate) group: GroupId,
    pub(crate) max_frame: usize,
    pub(crate) metrics: MetricsCell,
    pub(crate) learner_heartbeat: Duration,
}

impl RaftNetworkFactory<GroupTypes> for GroupNetwork {
    type Network = GroupClient;

    async fn new_client(&mut self, target: MemberId, _node: &EmptyNode) -> GroupClient {
        GroupClient {
            net: self.net.clone(),
            group: self.group,
            target,
            max_frame: self.max_frame,
            metrics: self.metrics.clone(),
            learner_heartbeat: self.learner_heartbeat,
            quiet: None,
            // Raft talks to its members constantly; do not let the transport
            // close the connection as idle in between.
            _keep: self.net.peer(target.node_id()).keep_alive(),
        }
    }
}

/// Raft's RPCs to one member of one group.
pub struct GroupClient {
    net: Network,
    group: GroupId,
    target: MemberId,
    max_frame: usize,
    metrics: MetricsCell,
    learner_heartbeat: Duration,
    /// The last heartbeat this target acknowledged, while it stays current.
    quiet: Option<Quiet>,
    _keep: KeepAlive,
}

/// An acknowledged heartbeat: the leader's vote, the target's matching log
/// id and the commit index it carried.
struct Quiet {
    vote: Vote<MemberId>,
    prev: Option<LogId<MemberId>>,
    commit: Option<LogId<MemberId>>,
    at: Instant,
}

impl Quiet {
    fn of(rpc: &AppendEntriesRequest<GroupTypes>) -> Quiet {
        Quiet {
            vote: rpc.vote,
            prev: rpc.prev_log_id,
            commit: rpc.leader_commit,
            at: Instant::now(),
        }
    }

    /// Whether `rpc` would tell the target nothing it has not acknowledged.
    fn repeats(&self, rpc: &AppendEntriesRequest<GroupTypes>) -> bool {
        rpc.entries.is_empty()
            && rpc.vote == self.vote
            && rpc.prev_log_id == self.prev
            && rpc.leader_commit == self.commit
    }
}

fn rpc_error<E: std::error::Error>(e: CallError) -> RPCError<MemberId, EmptyNode, E> {
    match e {
        CallError::NotSent(..) => RPCError::Unreachable(Unreachable::new(&e)),
        CallError::Timeout(target, d) => RPCError::Timeout(Timeout {
            action: openraft::network::RPCTypes::AppendEntries,
            id: MemberId::default(),
            target,
            timeout: d,
        }),
        CallError::Lost(..) => RPCError::Network(NetworkError::new(&e)),
    }
}

fn unexpected<E: std::error::Error>(r: GroupResponse) -> RPCError<MemberId, EmptyNode, E> {
    let detail = match r {
        GroupResponse::Refused(why) => why.to_string(),
        other => format!("unexpected answer {other:?}"),
    };
    RPCError::Network(NetworkError::new(&std::io::Error::other(detail)))
}

impl GroupClient {
    /// Whether the target is a learner in the current membership. Until the
    /// metrics are known, every target counts as a voter.
    fn is_learner(&self) -> bool {
        self.metrics.get().is_some_and(|m| {
            !m.borrow()
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == self.target)
        })
    }

    async fn call(
        &self,
        req: GroupRequest,
        option: &RPCOption,
    ) -> Result<GroupResponse, CallError> {
        call(
            &self.net,
            self.target,
            &req,
            self.max_frame,
            option.hard_ttl(),
        )
        .await
    }
}

impl RaftNetwork<GroupTypes> for GroupClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<GroupTypes>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<MemberId>, RPCError<MemberId, EmptyNode, RaftError<MemberId>>>
    {
        // openraft heartbeats learners as often as voters, though a learner
        // never stands for election and so needs no heartbeat to stay quiet.
        // A heartbeat that repeats what a learner acknowledged is answered
        // here, and one is sent only every `learner_heartbeat`: a network of
        // many readers would otherwise spend most of its idle CPU on them.
        // Entries and a moved commit index always go out.
        if let Some(q) = &self.quiet {
            if q.repeats(&rpc) && q.at.elapsed() < self.learner_heartbeat && self.is_learner() {
                return Ok(AppendEntriesResponse::Success);
            }
        }
        let heartbeat = rpc.entries.is_empty().then(|| Quiet::of(&rpc));
        self.quiet = None;
        match self
            .call(GroupRequest::Append(self.group, rpc), &option)
            .await
        {
            Ok(GroupResponse::Append(r)) => {
                if matches!(r, AppendEntriesResponse::Success) {
                    self.quiet = heartbeat;
                }
                Ok(r)
            }
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(rpc_error(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<GroupTypes>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<MemberId>,
        RPCError<MemberId, EmptyNode, RaftError<MemberId, InstallSnapshotError>>,
    > {
        match self
            .call(GroupRequest::Snapshot(self.group, rpc), &option)
            .await
        {
            Ok(GroupResponse::Snapshot(r)) => Ok(r),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(rpc_error(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<MemberId>,
        option: RPCOption,
    ) -> Result<VoteResponse<MemberId>, RPCError<MemberId, EmptyNode, RaftError<MemberId>>> {
        match self
            .call(GroupRequest::Vote(self.group, rpc), &option)
            .await
        {
            Ok(GroupResponse::Vote(r)) => Ok(r),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(rpc_error(e)),
        }
    }

    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}
