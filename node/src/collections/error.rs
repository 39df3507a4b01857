//! What a collection operation can fail with.

use std::time::Duration;

use crate::groups::GroupError;

/// Why a collection operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectionError {
    /// The replication group failed (no leader, unknown outcome, stopped,
    /// storage, not permitted): see [`GroupError`].
    #[error(transparent)]
    Group(#[from] GroupError),
    /// A key, value or answer did not encode or decode here.
    #[error("encoding: {0}")]
    Encoding(String),
    /// The operation asked for something the collection cannot do (an index
    /// past the end, a reader writing).
    #[error("{0}")]
    Invalid(String),
    /// A wait ended before its condition held.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl CollectionError {
    /// A stable snake_case name, for logs and API errors.
    pub fn code(&self) -> &'static str {
        match self {
            CollectionError::Group(GroupError::NoLeader(_)) => "no_quorum",
            CollectionError::Group(GroupError::Indeterminate(_)) => "outcome_unknown",
            CollectionError::Group(GroupError::NotPermitted(_)) => "not_permitted",
            CollectionError::Group(_) => "group",
            CollectionError::Encoding(_) => "encoding",
            CollectionError::Invalid(_) => "invalid",
            CollectionError::Timeout(_) => "timeout",
        }
    }
}
