//! Raft groups: openraft 0.9 on the node's attested QUIC connections, with
//! the log, vote and snapshots in redb.
//!
//! A node [`join`](Groups::join)s a group by name with a [`StateMachine`];
//! the group founds itself from the nodes that advertise it (or from an
//! explicit member list), the leader takes in and promotes new members, and
//! every peer's ticket must grant `join` on the group. Writes go through the
//! leader in batches; reads choose their [`Consistency`].

// openraft's `StorageError` is large by design and every storage method
// returns it; boxing it would fight the trait signatures.
#![allow(clippy::result_large_err)]

pub mod admin;
mod batcher;
pub mod config;
mod core;
pub mod error;
pub mod forming;
pub mod group;
pub mod machine;
mod net;
pub mod store;
pub mod subsystem;
pub mod table;
pub mod types;
mod upkeep;
pub mod wire;

#[cfg(test)]
mod tests;

pub use config::{Access, GroupConfig};
pub use error::GroupError;
pub use group::{Consistency, Group, GroupStatus, MemberProgress, When};
pub use machine::{Machine, MachineStore, StateMachine};
pub use net::CallError;
/// The openraft version groups run on, for its request and id types.
pub use openraft;
pub use store::{DbError, GroupDb, LogStore};
pub use subsystem::{Groups, MemberChange, MAX_GROUPS};
pub use table::{ReadTables, TableError, TableMachine, TableRead, TableStore, Tabled, Tables};
pub use types::{GroupTypes, MemberId, Outcome, Proposal};
