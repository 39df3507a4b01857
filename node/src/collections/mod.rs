//! Replicated collections: [`Map`], [`Vec`](List), [`Set`], [`Cell`],
//! [`Once`] and [`PriorityQueue`], each a table machine on its own Raft
//! group, its state in the node's redb file.
//!
//! A collection is named; its group is `collection/<name>`, and tickets
//! grant `write` (a writer: a voter that proposes) and `read` (a reader: a
//! learner that replicates) on the collection's name. Every write returns a
//! version, the log index that applied it; any replica can wait for a
//! version with [`When::reaches`]. Reads are local unless asked otherwise.
//!
//! Keys, values and elements are serde types, stored postcard-encoded;
//! iteration follows the encoded keys' byte order, the same on every
//! replica (and so deterministic snapshots).

pub mod admin;
mod cell;
pub mod codec;
pub mod config;
mod error;
mod list;
mod map;
mod queue;
mod replica;
mod set;

pub use crate::discovery::CollectionRole;
pub use cell::{Cell, Once};
pub use config::{CollectionDecl, CollectionKind};
pub use error::CollectionError;
pub use list::List;
pub use map::{Expect, Map, MapEntry};
pub use queue::PriorityQueue;
pub use replica::Collections;
pub use set::Set;

pub use crate::groups::{Consistency, When};
