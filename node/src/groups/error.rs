//! What can go wrong with a group operation, and what the caller may do.

use std::time::Duration;

/// Why a group operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// No leader answered within the deadline; nothing was applied.
    #[error("no leader within {0:?}")]
    NoLeader(Duration),
    /// The write reached a leader but its outcome is unknown (the leader
    /// failed or the connection broke after proposing): it may or may not be
    /// applied. Retry only if the command is idempotent.
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    /// The state machine could not take the command or query (it did not
    /// decode at the member); nothing was changed.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The command, query or answer could not be encoded or decoded here.
    #[error("encoding: {0}")]
    Encoding(String),
    /// This member has not applied the read point in time.
    #[error("member lags: applied {applied}, needs {index}")]
    Lagging {
        /// The index the read needs.
        index: u64,
        /// The index applied when the wait ended.
        applied: u64,
    },
    /// The group stopped on this node.
    #[error("the group stopped")]
    Stopped,
    /// The node already runs a group of this name.
    #[error("the node already runs group {0}")]
    Exists(String),
    /// This node's ticket does not grant `join` on the group.
    #[error("this node's ticket does not grant join on group {0}")]
    NotPermitted(String),
    /// Bad settings.
    #[error("bad group config: {0}")]
    Config(String),
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(String),
    /// A membership change was refused.
    #[error("membership change: {0}")]
    Membership(String),
}
