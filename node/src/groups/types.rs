//! The Raft type configuration shared by every group on a node.
//!
//! One configuration serves all groups: a log entry carries a batch of
//! commands already encoded by the group's [`StateMachine`](super::StateMachine),
//! so the log store, the network and the batcher are not generic over the
//! application's types; only the state machine store decodes them.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::id::NodeId;

/// A group member's Raft id: the node id, in a type openraft can hold
/// (openraft wants `Default` and `Deserialize`, which [`NodeId`] lacks).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MemberId(pub [u8; 32]);

impl MemberId {
    /// The node this member runs on.
    pub fn node_id(&self) -> NodeId {
        NodeId(self.0)
    }
}

impl From<NodeId> for MemberId {
    fn from(n: NodeId) -> MemberId {
        MemberId(n.0)
    }
}

/// Small integers map to ids that sort as the integers do (openraft's
/// storage suite names members 0, 1, 2, ...).
impl From<u64> for MemberId {
    fn from(n: u64) -> MemberId {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&n.to_be_bytes());
        MemberId(b)
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberId({self})")
    }
}

impl Serialize for MemberId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::id::hex32::serialize(&self.node_id(), s)
    }
}

impl<'de> Deserialize<'de> for MemberId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n: NodeId = crate::id::hex32::deserialize(d)?;
        Ok(MemberId(n.0))
    }
}

/// The application data of one log entry: commands proposed together,
/// each encoded by the group's state machine types.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Encoded commands, applied in order.
    pub commands: Vec<Vec<u8>>,
}

impl fmt::Debug for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proposal({} commands)", self.commands.len())
    }
}

/// What applying a [`Proposal`] produced: one encoded output per command.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Encoded outputs (or decode failures), in the commands' order.
    pub outputs: Vec<Result<Vec<u8>, String>>,
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Outcome({} outputs)", self.outputs.len())
    }
}

openraft::declare_raft_types!(
    /// The Raft types of every tessella group.
    pub GroupTypes:
        D = Proposal,
        R = Outcome,
        NodeId = MemberId,
        Node = openraft::EmptyNode,
        Entry = openraft::Entry<GroupTypes>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A running Raft member of one group.
pub type Raft = openraft::Raft<GroupTypes>;
/// A log entry.
pub type Entry = openraft::Entry<GroupTypes>;
/// A log id.
pub type LogId = openraft::LogId<MemberId>;
/// A vote.
pub type Vote = openraft::Vote<MemberId>;
/// Storage errors.
pub type StorageError = openraft::StorageError<MemberId>;
/// Membership as stored.
pub type StoredMembership = openraft::StoredMembership<MemberId, openraft::EmptyNode>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<MemberId, openraft::EmptyNode>;
/// A snapshot.
pub type Snapshot = openraft::Snapshot<GroupTypes>;
/// A group's Raft metrics.
pub type RaftMetrics = openraft::RaftMetrics<MemberId, openraft::EmptyNode>;
