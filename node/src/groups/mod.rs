//! Raft groups: openraft 0.9 on the node's attested QUIC connections, with
//! the log, vote and snapshots in redb.

// openraft's `StorageError` is large by design and every storage method
// returns it; boxing it would fight the trait signatures.
#![allow(clippy::result_large_err)]

pub mod machine;
pub mod store;
pub mod types;

#[cfg(test)]
mod tests;

pub use machine::{MachineStore, StateMachine};
pub use store::{DbError, GroupDb, LogStore};
pub use types::{GroupTypes, MemberId, Outcome, Proposal};
