//! The application's state machine and the openraft state-machine store that
//! runs it.
//!
//! The machine itself lives in memory; what makes it durable is the log
//! (fsync'd before an append is acknowledged) and snapshots (written to the
//! group's tables with an fsync before openraft may purge the log they
//! cover). At start the store restores the last snapshot and openraft
//! re-applies the committed entries after it, so a restart replays only the
//! tail of the history.

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

use super::store::{decode, encode, key, GroupDb, Op};
use super::types::{
    Entry, GroupTypes, LogId, Outcome, Snapshot, SnapshotMeta, StorageError, StoredMembership,
};
use crate::id::GroupId;

/// A deterministic state machine replicated by a group.
///
/// `apply` must depend only on the machine's state and the command: every
/// member applies the same commands in the same order and must reach the same
/// state. Snapshots must be deterministic too (no hash-map iteration order).
pub trait StateMachine: Default + Send + Sync + 'static {
    /// A write, proposed through the log.
    type Command: Serialize + DeserializeOwned + Send + 'static;
    /// What applying a command returns to its proposer.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// A read.
    type Query: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What a read returns.
    type QueryOutput: Serialize + DeserializeOwned + Send + 'static;

    /// Apply one command.
    fn apply(&mut self, command: Self::Command) -> Self::Output;
    /// Answer a read from the current state.
    fn query(&self, query: &Self::Query) -> Self::QueryOutput;
    /// The whole state, encoded.
    fn snapshot(&self) -> Vec<u8>;
    /// Replace the state with a decoded snapshot.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;
}

/// What a group replicates: the command and query types, and the openraft
/// state-machine store that applies them. Every [`StateMachine`] is one
/// (its state in memory, dumped at snapshots); so is every
/// [`Tabled`](super::table::Tabled) table machine (its state in redb).
pub trait Machine: Send + Sync + 'static {
    /// A write.
    type Command: Serialize + DeserializeOwned + Send + 'static;
    /// What a write returns.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// A read.
    type Query: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What a read returns.
    type QueryOutput: Serialize + DeserializeOwned + Send + 'static;
    /// openraft's state-machine store for this machine.
    type Store: openraft::storage::RaftStateMachine<GroupTypes, SnapshotBuilder = Self::Store>
        + openraft::RaftSnapshotBuilder<GroupTypes>
        + Clone
        + Send
        + Sync
        + 'static;

    /// Open the store of `group` in `db`.
    fn open(db: GroupDb, group: GroupId) -> Result<Self::Store, StorageError>;
    /// Answer `query` from the store's applied state.
    fn query(store: &Self::Store, query: &Self::Query) -> Result<Self::QueryOutput, String>;
    /// Follows the store's applied index.
    fn watch_applied(store: &Self::Store) -> watch::Receiver<u64>;
}

impl<M: StateMachine> Machine for M {
    type Command = M::Command;
    type Output = M::Output;
    type Query = M::Query;
    type QueryOutput = M::QueryOutput;
    type Store = MachineStore<M>;

    fn open(db: GroupDb, group: GroupId) -> Result<MachineStore<M>, StorageError> {
        MachineStore::open(db, group)
    }

    fn query(store: &MachineStore<M>, query: &M::Query) -> Result<M::QueryOutput, String> {
        Ok(store.read(|m| m.query(query)))
    }

    fn watch_applied(store: &MachineStore<M>) -> watch::Receiver<u64> {
        store.watch_applied()
    }
}

/// What the store keeps in memory.
struct Applied<M> {
    machine: M,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshots_built: u64,
}

/// The state-machine half of a group's storage.
pub struct MachineStore<M: StateMachine> {
    group: GroupId,
    db: GroupDb,
    state: Arc<RwLock<Applied<M>>>,
    applied_tx: watch::Sender<u64>,
}

impl<M: StateMachine> Clone for MachineStore<M> {
    fn clone(&self) -> Self {
        MachineStore {
            group: self.group,
            db: self.db.clone(),
            state: self.state.clone(),
            applied_tx: self.applied_tx.clone(),
        }
    }
}

fn sm_read(e: impl ToString) -> StorageError {
    openraft::StorageIOError::read_state_machine(openraft::AnyError::error(e)).into()
}

fn sm_write(e: impl ToString) -> StorageError {
    openraft::StorageIOError::write_state_machine(openraft::AnyError::error(e)).into()
}

fn snap_write(e: impl ToString) -> StorageError {
    openraft::StorageIOError::write_snapshot(None, openraft::AnyError::error(e)).into()
}

/// Apply one encoded command to `m`; a command that does not decode is
/// answered with an error, the same on every member.
fn apply_one<M: StateMachine>(m: &mut M, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let cmd: M::Command = decode(bytes).map_err(|e| format!("undecodable command: {e}"))?;
    let out = m.apply(cmd);
    encode(&out)
}

impl<M: StateMachine> MachineStore<M> {
    /// Open the store of `group`, restoring its last snapshot.
    pub fn open(db: GroupDb, group: GroupId) -> Result<MachineStore<M>, StorageError> {
        let mut applied = Applied {
            machine: M::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            snapshots_built: 0,
        };
        let meta = db.meta(&group, key::SNAPSHOT_META).map_err(sm_read)?;
        let data = db.meta(&group, key::SNAPSHOT_DATA).map_err(sm_read)?;
        if let (Some(meta), Some(data)) = (meta, data) {
            let meta: SnapshotMeta = decode(&meta).map_err(sm_read)?;
            applied.machine.restore(&data).map_err(sm_read)?;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership;
        }
        let index = applied.last_applied.map(|l| l.index).unwrap_or(0);
        let (applied_tx, _) = watch::channel(index);
        Ok(MachineStore {
            group,
            db,
            state: Arc::new(RwLock::new(applied)),
            applied_tx,
        })
    }

    /// Run a read against the current state.
    pub fn read<T>(&self, f: impl FnOnce(&M) -> T) -> T {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        f(&st.machine)
    }

    /// The index of the last applied entry (0: none).
    pub fn applied_index(&self) -> u64 {
        *self.applied_tx.borrow()
    }

    /// Follows the applied index.
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    async fn persist_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        let m = encode(meta).map_err(snap_write)?;
        self.db
            .write(
                vec![
                    Op::Put(self.group, key::SNAPSHOT_DATA, Some(data.to_vec())),
                    Op::Put(self.group, key::SNAPSHOT_META, Some(m)),
                ],
                true,
            )
            .await
            .map_err(snap_write)
    }
}

impl<M: StateMachine> openraft::RaftSnapshotBuilder<GroupTypes> for MachineStore<M> {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let (data, meta) = {
            let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
            st.snapshots_built += 1;
            let data = st.machine.snapshot();
            let id = match st.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id, l.index, st.snapshots_built),
                None => format!("empty-{}", st.snapshots_built),
            };
            let meta = SnapshotMeta {
                last_log_id: st.last_applied,
                last_membership: st.membership.clone(),
                snapshot_id: id,
            };
            (data, meta)
        };
        // Durable before openraft may purge the entries it covers.
        self.persist_snapshot(&meta, &data).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<M: StateMachine> openraft::storage::RaftStateMachine<GroupTypes> for MachineStore<M> {
    type SnapshotBuilder = MachineStore<M>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        let last = {
            let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
            for entry in entries {
                st.last_applied = Some(entry.log_id);
                let mut outcome = Outcome::default();
                match entry.payload {
                    openraft::EntryPayload::Blank => {}
                    openraft::EntryPayload::Normal(p) => {
                        for c in &p.commands {
                            outcome.outputs.push(apply_one(&mut st.machine, c));
                        }
                    }
                    openraft::EntryPayload::Membership(m) => {
                        st.membership = StoredMembership::new(Some(entry.log_id), m);
                    }
                }
                results.push(outcome);
            }
            st.last_applied.map(|l| l.index).unwrap_or(0)
        };
        self.applied_tx.send_replace(last);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> MachineStore<M> {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let mut fresh = M::default();
        fresh.restore(&data).map_err(sm_write)?;
        self.persist_snapshot(meta, &data).await?;
        let index = {
            let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
            st.machine = fresh;
            st.last_applied = meta.last_log_id;
            st.membership = meta.last_membership.clone();
            st.last_applied.map(|l| l.index).unwrap_or(0)
        };
        self.applied_tx.send_replace(index);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        self.db.stored_snapshot(&self.group).map_err(sm_read)
    }
}
