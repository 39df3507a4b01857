//! The groups protocol: one request and one response per QUIC bidirectional
//! stream of the `Groups` family, each a length-prefixed postcard frame.
//! Every request names its group, so one connection per peer pair serves
//! every group the two nodes share.

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::types::{GroupTypes, MemberId};
use crate::id::GroupId;

/// The largest groups frame by default: an append carries at most
/// `max_payload_entries` entries of at most `max_batch_bytes` each, and a
/// snapshot chunk is at most `snapshot_chunk` bytes.
pub const DEFAULT_MAX_FRAME: usize = 4 << 20;

/// A request (version 1 of the family).
#[derive(Debug, Serialize, Deserialize)]
pub enum GroupRequest {
    /// Raft: replicate entries (or a heartbeat).
    Append(GroupId, AppendEntriesRequest<GroupTypes>),
    /// Raft: ask for a vote.
    Vote(GroupId, VoteRequest<MemberId>),
    /// Raft: one chunk of a snapshot.
    Snapshot(GroupId, InstallSnapshotRequest<GroupTypes>),
    /// A command for the leader to propose (a member forwarding a write).
    Forward(GroupId, Vec<u8>),
    /// The leader's read index, confirmed with a quorum (linearizable reads).
    ReadIndex(GroupId),
    /// A query answered from the leader's state (`Consistency::Leader`).
    Query(GroupId, Vec<u8>),
    /// A founding membership proposed by its lowest member: with `true`,
    /// a binding promise is asked for; with `false`, only whether the member
    /// would promise it now (nothing is recorded).
    Found(GroupId, Vec<MemberId>, bool),
}

impl GroupRequest {
    /// The group the request is for.
    pub fn group(&self) -> GroupId {
        match self {
            GroupRequest::Append(g, _)
            | GroupRequest::Vote(g, _)
            | GroupRequest::Snapshot(g, _)
            | GroupRequest::Forward(g, _)
            | GroupRequest::ReadIndex(g)
            | GroupRequest::Query(g, _)
            | GroupRequest::Found(g, ..) => *g,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            GroupRequest::Append(..) => "append",
            GroupRequest::Vote(..) => "vote",
            GroupRequest::Snapshot(..) => "snapshot",
            GroupRequest::Forward(..) => "forward",
            GroupRequest::ReadIndex(..) => "read_index",
            GroupRequest::Query(..) => "query",
            GroupRequest::Found(..) => "found",
        }
    }
}

/// A response.
#[derive(Debug, Serialize, Deserialize)]
pub enum GroupResponse {
    /// To [`GroupRequest::Append`].
    Append(AppendEntriesResponse<MemberId>),
    /// To [`GroupRequest::Vote`].
    Vote(VoteResponse<MemberId>),
    /// To [`GroupRequest::Snapshot`].
    Snapshot(InstallSnapshotResponse<MemberId>),
    /// To [`GroupRequest::Forward`]: the entry's log index and the
    /// command's encoded output (or why the machine could not apply it).
    Written(u64, Result<Vec<u8>, String>),
    /// To [`GroupRequest::ReadIndex`].
    ReadIndex(u64),
    /// To [`GroupRequest::Query`]: the encoded answer.
    Answer(Vec<u8>),
    /// To [`GroupRequest::Found`]: whether the member promised the set
    /// (or would).
    Founded(bool),
    /// The request was refused or failed.
    Refused(Refusal),
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// This member is not the leader (and may know who is). Nothing was
    /// proposed: the caller may retry elsewhere.
    #[error("not the leader (leader: {0:?})")]
    NotLeader(Option<MemberId>),
    /// The request failed here: the outcome of a write is unknown.
    #[error("failed at the remote member: {0}")]
    Failed(String),
    /// The query or command did not decode at the remote member.
    #[error("undecodable request: {0}")]
    Undecodable(String),
}
