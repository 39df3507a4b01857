//! Table machines: replicated state that lives in the group's redb tables
//! instead of memory.
//!
//! A [`TableMachine`] applies each command to a few ordered byte tables
//! ([`Tables`]) inside the database writer's transaction, and the applied
//! log id is written in the same transaction. So the state on disk is
//! always the state at the applied index: a restart opens the tables and
//! replays only the committed entries after it, whatever the size of the
//! state, and memory holds none of it. Applying commits without an fsync
//! (the log is already durable; a crash loses at most applied state that
//! the log replays).
//!
//! Snapshots are the tables encoded in key order (deterministic), built when
//! openraft asks and kept in the group's meta table for lagging members.

use std::io::Cursor;
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

use super::machine::Machine;
use super::store::{decode, encode, key, GroupDb, Op};
use super::types::{
    Entry, GroupTypes, LogId, Outcome, Snapshot, SnapshotMeta, StorageError, StoredMembership,
};
use crate::id::GroupId;

/// How many tables a table machine has (numbered `0..TABLES`).
pub const TABLES: u8 = 4;

/// The snapshot format's first byte.
const SNAPSHOT_FORMAT: u8 = 1;

/// Keys of the machine's state table.
const APPLIED: &str = "applied";
const MEMBERSHIP: &str = "membership";

/// A storage failure while applying or reading: it aborts the whole
/// transaction (the group stops rather than diverge).
#[derive(Debug, Clone, thiserror::Error)]
#[error("table storage: {0}")]
pub struct TableError(pub String);

impl TableError {
    fn of(e: impl std::fmt::Display) -> TableError {
        TableError(e.to_string())
    }
}

/// A deterministic state machine whose state is a few ordered tables of
/// bytes. `apply` must depend only on the tables and the command.
pub trait TableMachine: Send + Sync + 'static {
    /// A write.
    type Command: Serialize + DeserializeOwned + Send + 'static;
    /// What a write returns.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// A read.
    type Query: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What a read returns.
    type QueryOutput: Serialize + DeserializeOwned + Send + 'static;

    /// Apply one command.
    fn apply(tables: &mut Tables<'_>, command: Self::Command) -> Result<Self::Output, TableError>;
    /// Answer a read.
    fn query(tables: &ReadTables, query: &Self::Query) -> Result<Self::QueryOutput, TableError>;
}

/// The [`Machine`] of a table machine `T` (what [`Groups::join`] takes).
///
/// [`Groups::join`]: super::Groups::join
pub struct Tabled<T>(PhantomData<fn() -> T>);

impl<T: TableMachine> Machine for Tabled<T> {
    type Command = T::Command;
    type Output = T::Output;
    type Query = T::Query;
    type QueryOutput = T::QueryOutput;
    type Store = TableStore<T>;

    fn open(db: GroupDb, group: GroupId) -> Result<TableStore<T>, StorageError> {
        TableStore::open(db, group)
    }

    fn query(store: &TableStore<T>, query: &T::Query) -> Result<T::QueryOutput, String> {
        let tables = store.read_tables().map_err(|e| e.0)?;
        T::query(&tables, query).map_err(|e| e.0)
    }

    fn watch_applied(store: &TableStore<T>) -> watch::Receiver<u64> {
        store.applied_tx.subscribe()
    }
}

fn data_name(g: &GroupId, t: u8) -> String {
    format!("group/{g}/data/{t}")
}

fn state_name(g: &GroupId) -> String {
    format!("group/{g}/state")
}

type Row = (Vec<u8>, Vec<u8>);

/// One of a machine's tables, open in a write transaction.
type DataTable<'a> = redb::Table<'a, &'static [u8], &'static [u8]>;

/// Reads shared by [`Tables`] and [`ReadTables`]. Table `t` must be below
/// [`TABLES`]; keys order bytewise.
pub trait TableRead {
    /// The value under `key`.
    fn get(&self, t: u8, key: &[u8]) -> Result<Option<Vec<u8>>, TableError>;
    /// How many rows table `t` holds.
    fn len(&self, t: u8) -> Result<u64, TableError>;
    /// At most `limit` rows with keys within the bounds, in key order (or
    /// reverse key order with `rev`).
    fn range(
        &self,
        t: u8,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        limit: usize,
        rev: bool,
    ) -> Result<Vec<Row>, TableError>;

    /// Whether table `t` is empty.
    fn is_empty(&self, t: u8) -> Result<bool, TableError> {
        Ok(self.len(t)? == 0)
    }
    /// The row with the lowest key.
    fn first(&self, t: u8) -> Result<Option<Row>, TableError> {
        Ok(self
            .range(t, Bound::Unbounded, Bound::Unbounded, 1, false)?
            .pop())
    }
    /// The row with the highest key.
    fn last(&self, t: u8) -> Result<Option<Row>, TableError> {
        Ok(self
            .range(t, Bound::Unbounded, Bound::Unbounded, 1, true)?
            .pop())
    }
}

fn collect<'a>(
    iter: impl Iterator<
        Item = Result<
            (
                redb::AccessGuard<'a, &'static [u8]>,
                redb::AccessGuard<'a, &'static [u8]>,
            ),
            redb::StorageError,
        >,
    >,
    limit: usize,
) -> Result<Vec<Row>, TableError> {
    let mut out = Vec::new();
    for item in iter.take(limit) {
        let (k, v) = item.map_err(TableError::of)?;
        out.push((k.value().to_vec(), v.value().to_vec()));
    }
    Ok(out)
}

fn check(t: u8) -> Result<(), TableError> {
    if t >= TABLES {
        return Err(TableError(format!("no table {t}")));
    }
    Ok(())
}

/// A machine's tables inside the writer's transaction.
pub struct Tables<'a> {
    txn: &'a redb::WriteTransaction,
    group: GroupId,
    index: u64,
    open: Vec<Option<redb::Table<'a, &'static [u8], &'static [u8]>>>,
}

impl<'a> Tables<'a> {
    fn new(txn: &'a redb::WriteTransaction, group: GroupId) -> Tables<'a> {
        Tables {
            txn,
            group,
            index: 0,
            open: (0..TABLES).map(|_| None).collect(),
        }
    }

    fn table(
        &mut self,
        t: u8,
    ) -> Result<&mut redb::Table<'a, &'static [u8], &'static [u8]>, TableError> {
        check(t)?;
        let slot = &mut self.open[t as usize];
        if slot.is_none() {
            let name = data_name(&self.group, t);
            let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
            *slot = Some(self.txn.open_table(def).map_err(TableError::of)?);
        }
        slot.as_mut()
            .ok_or_else(|| TableError("table not open".into()))
    }

    /// The log index of the entry being applied: a version that only grows.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Set `key` to `value`; returns the previous value.
    pub fn insert(
        &mut self,
        t: u8,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, TableError> {
        let table = self.table(t)?;
        let old = table.insert(key, value).map_err(TableError::of)?;
        Ok(old.map(|v| v.value().to_vec()))
    }

    /// Remove `key`; returns its value.
    pub fn remove(&mut self, t: u8, key: &[u8]) -> Result<Option<Vec<u8>>, TableError> {
        let table = self.table(t)?;
        let old = table.remove(key).map_err(TableError::of)?;
        Ok(old.map(|v| v.value().to_vec()))
    }

    /// Remove every row of table `t`.
    pub fn clear(&mut self, t: u8) -> Result<(), TableError> {
        let table = self.table(t)?;
        table.retain(|_, _| false).map_err(TableError::of)
    }

    /// Remove and return the row with the lowest key.
    pub fn pop_first(&mut self, t: u8) -> Result<Option<Row>, TableError> {
        let table = self.table(t)?;
        let row = table.pop_first().map_err(TableError::of)?;
        Ok(row.map(|(k, v)| (k.value().to_vec(), v.value().to_vec())))
    }

    /// Remove and return the row with the highest key.
    pub fn pop_last(&mut self, t: u8) -> Result<Option<Row>, TableError> {
        let table = self.table(t)?;
        let row = table.pop_last().map_err(TableError::of)?;
        Ok(row.map(|(k, v)| (k.value().to_vec(), v.value().to_vec())))
    }

    fn read(&self, t: u8) -> Result<Option<&DataTable<'a>>, TableError> {
        check(t)?;
        Ok(self.open[t as usize].as_ref())
    }
}

impl TableRead for Tables<'_> {
    fn get(&self, t: u8, key: &[u8]) -> Result<Option<Vec<u8>>, TableError> {
        match self.read(t)? {
            Some(table) => Ok(table
                .get(key)
                .map_err(TableError::of)?
                .map(|v| v.value().to_vec())),
            None => {
                // Not opened yet in this transaction: read it through a
                // fresh handle (opening needs `&mut self`).
                let name = data_name(&self.group, t);
                let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
                let table = self.txn.open_table(def).map_err(TableError::of)?;
                let v = table
                    .get(key)
                    .map_err(TableError::of)?
                    .map(|v| v.value().to_vec());
                Ok(v)
            }
        }
    }

    fn len(&self, t: u8) -> Result<u64, TableError> {
        match self.read(t)? {
            Some(table) => table.len().map_err(TableError::of),
            None => {
                let name = data_name(&self.group, t);
                let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
                let table = self.txn.open_table(def).map_err(TableError::of)?;
                table.len().map_err(TableError::of)
            }
        }
    }

    fn range(
        &self,
        t: u8,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        limit: usize,
        rev: bool,
    ) -> Result<Vec<Row>, TableError> {
        let go = |table: &redb::Table<'_, &'static [u8], &'static [u8]>| {
            let r = table.range::<&[u8]>((lo, hi)).map_err(TableError::of)?;
            if rev {
                collect(r.rev(), limit)
            } else {
                collect(r, limit)
            }
        };
        match self.read(t)? {
            Some(table) => go(table),
            None => {
                let name = data_name(&self.group, t);
                let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
                let table = self.txn.open_table(def).map_err(TableError::of)?;
                go(&table)
            }
        }
    }
}

/// A machine's tables as of one applied index, for reads.
pub struct ReadTables {
    txn: redb::ReadTransaction,
    group: GroupId,
}

impl ReadTables {
    fn with<R>(
        &self,
        t: u8,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static [u8], &'static [u8]>) -> Result<R, TableError>,
        absent: R,
    ) -> Result<R, TableError> {
        check(t)?;
        let name = data_name(&self.group, t);
        let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
        match self.txn.open_table(def) {
            Ok(table) => f(&table),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(absent),
            Err(e) => Err(TableError::of(e)),
        }
    }
}

impl TableRead for ReadTables {
    fn get(&self, t: u8, key: &[u8]) -> Result<Option<Vec<u8>>, TableError> {
        self.with(
            t,
            |table| {
                Ok(table
                    .get(key)
                    .map_err(TableError::of)?
                    .map(|v| v.value().to_vec()))
            },
            None,
        )
    }

    fn len(&self, t: u8) -> Result<u64, TableError> {
        self.with(t, |table| table.len().map_err(TableError::of), 0)
    }

    fn range(
        &self,
        t: u8,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        limit: usize,
        rev: bool,
    ) -> Result<Vec<Row>, TableError> {
        self.with(
            t,
            |table| {
                let r = table.range::<&[u8]>((lo, hi)).map_err(TableError::of)?;
                if rev {
                    collect(r.rev(), limit)
                } else {
                    collect(r, limit)
                }
            },
            Vec::new(),
        )
    }
}

/// The openraft state-machine store of a table machine.
pub struct TableStore<T> {
    group: GroupId,
    db: GroupDb,
    applied_tx: watch::Sender<u64>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for TableStore<T> {
    fn clone(&self) -> Self {
        TableStore {
            group: self.group,
            db: self.db.clone(),
            applied_tx: self.applied_tx.clone(),
            _t: PhantomData,
        }
    }
}

fn sm_read(e: impl ToString) -> StorageError {
    openraft::StorageIOError::read_state_machine(openraft::AnyError::error(e)).into()
}

fn sm_write(e: impl ToString) -> StorageError {
    openraft::StorageIOError::write_state_machine(openraft::AnyError::error(e)).into()
}

fn snap_read(e: impl ToString) -> StorageError {
    openraft::StorageIOError::read_snapshot(None, openraft::AnyError::error(e)).into()
}

/// The applied log id and membership recorded in the state table.
fn applied_of(
    txn: &redb::ReadTransaction,
    group: &GroupId,
) -> Result<(Option<LogId>, StoredMembership), String> {
    let name = state_name(group);
    let def: TableDefinition<&str, &[u8]> = TableDefinition::new(&name);
    let table = match txn.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => {
            return Ok((None, StoredMembership::default()))
        }
        Err(e) => return Err(e.to_string()),
    };
    let applied = match table.get(APPLIED).map_err(|e| e.to_string())? {
        Some(v) => decode(v.value())?,
        None => None,
    };
    let membership = match table.get(MEMBERSHIP).map_err(|e| e.to_string())? {
        Some(v) => decode(v.value())?,
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

fn write_applied(
    txn: &redb::WriteTransaction,
    group: &GroupId,
    applied: &Option<LogId>,
    membership: Option<&StoredMembership>,
) -> Result<(), String> {
    let name = state_name(group);
    let def: TableDefinition<&str, &[u8]> = TableDefinition::new(&name);
    let mut table = txn.open_table(def).map_err(|e| e.to_string())?;
    table
        .insert(APPLIED, encode(applied)?.as_slice())
        .map_err(|e| e.to_string())?;
    if let Some(m) = membership {
        table
            .insert(MEMBERSHIP, encode(m)?.as_slice())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Every table of `group` in key order: `(table, key length (u32 BE),
/// key, value length (u32 BE), value)` rows after a format byte.
fn encode_tables(txn: &redb::ReadTransaction, group: &GroupId) -> Result<Vec<u8>, String> {
    let mut out = vec![SNAPSHOT_FORMAT];
    for t in 0..TABLES {
        let name = data_name(group, t);
        let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&name);
        let table = match txn.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => continue,
            Err(e) => return Err(e.to_string()),
        };
        for item in table.iter().map_err(|e| e.to_string())? {
            let (k, v) = item.map_err(|e| e.to_string())?;
            let (k, v) = (k.value(), v.value());
            out.push(t);
            out.extend_from_slice(&(k.len() as u32).to_be_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v);
        }
    }
    Ok(out)
}

/// Replace every table of `group` with the rows of an encoded snapshot.
fn install_tables(
    txn: &redb::WriteTransaction,
    group: &GroupId,
    data: &[u8],
) -> Result<(), String> {
    let mut tables = Tables::new(txn, *group);
    for t in 0..TABLES {
        tables.clear(t).map_err(|e| e.0)?;
    }
    let (format, mut rest) = data.split_first().ok_or("empty snapshot")?;
    if *format != SNAPSHOT_FORMAT {
        return Err(format!("unknown snapshot format {format}"));
    }
    fn take<'b>(rest: &mut &'b [u8], n: usize) -> Result<&'b [u8], String> {
        if rest.len() < n {
            return Err("truncated snapshot".into());
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head)
    }
    fn len(rest: &mut &[u8]) -> Result<usize, String> {
        let b = take(rest, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    while !rest.is_empty() {
        let t = take(&mut rest, 1)?[0];
        let n = len(&mut rest)?;
        let k = take(&mut rest, n)?;
        let n = len(&mut rest)?;
        let v = take(&mut rest, n)?;
        tables.insert(t, k, v).map_err(|e| e.0)?;
    }
    Ok(())
}

impl<T: TableMachine> TableStore<T> {
    /// Open the store of `group`: reads only the applied log id.
    pub fn open(db: GroupDb, group: GroupId) -> Result<TableStore<T>, StorageError> {
        let txn = db.begin_read().map_err(sm_read)?;
        let (applied, _) = applied_of(&txn, &group).map_err(sm_read)?;
        let (applied_tx, _) = watch::channel(applied.map(|l| l.index).unwrap_or(0));
        Ok(TableStore {
            group,
            db,
            applied_tx,
            _t: PhantomData,
        })
    }

    /// The tables as of the last applied entry.
    pub fn read_tables(&self) -> Result<ReadTables, TableError> {
        Ok(ReadTables {
            txn: self.db.begin_read().map_err(TableError)?,
            group: self.group,
        })
    }

    /// The index of the last applied entry (0: none).
    pub fn applied_index(&self) -> u64 {
        *self.applied_tx.borrow()
    }
}

/// Apply one encoded command; a command that does not decode is answered
/// with an error, the same on every member. `Err` only for storage.
fn apply_one<T: TableMachine>(
    tables: &mut Tables<'_>,
    bytes: &[u8],
) -> Result<Result<Vec<u8>, String>, String> {
    let cmd: T::Command = match decode(bytes) {
        Ok(c) => c,
        Err(e) => return Ok(Err(format!("undecodable command: {e}"))),
    };
    let out = T::apply(tables, cmd).map_err(|e| e.0)?;
    Ok(encode(&out))
}

impl<T: TableMachine> openraft::RaftSnapshotBuilder<GroupTypes> for TableStore<T> {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let db = self.db.clone();
        let group = self.group;
        // A read transaction is a consistent view at one applied index;
        // encoding a large state is CPU and I/O work off the async workers.
        let built = tokio::task::spawn_blocking(move || -> Result<_, String> {
            let txn = db.begin_read()?;
            let (applied, membership) = applied_of(&txn, &group)?;
            let data = encode_tables(&txn, &group)?;
            Ok((applied, membership, data))
        })
        .await
        .map_err(sm_read)?;
        let (applied, membership, data) = built.map_err(sm_read)?;
        let id = match applied {
            Some(l) => format!("{}-{}-t", l.leader_id, l.index),
            None => "empty-t".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id: id,
        };
        // Durable before openraft may purge the entries it covers.
        let m = encode(&meta).map_err(sm_write)?;
        self.db
            .write(
                vec![
                    Op::Put(self.group, key::SNAPSHOT_DATA, Some(data.clone())),
                    Op::Put(self.group, key::SNAPSHOT_META, Some(m)),
                ],
                true,
            )
            .await
            .map_err(sm_write)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<T: TableMachine> openraft::storage::RaftStateMachine<GroupTypes> for TableStore<T> {
    type SnapshotBuilder = TableStore<T>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let txn = self.db.begin_read().map_err(sm_read)?;
        applied_of(&txn, &self.group).map_err(sm_read)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(Vec::new());
        };
        let group = self.group;
        let results: Arc<Mutex<Vec<Outcome>>> = Arc::default();
        let slot = results.clone();
        let run = Box::new(move |txn: &redb::WriteTransaction| -> Result<(), String> {
            let mut outcomes = Vec::with_capacity(entries.len());
            let mut membership = None;
            {
                let mut tables = Tables::new(txn, group);
                for entry in entries {
                    tables.index = entry.log_id.index;
                    let mut outcome = Outcome::default();
                    match entry.payload {
                        openraft::EntryPayload::Blank => {}
                        openraft::EntryPayload::Normal(p) => {
                            for c in &p.commands {
                                outcome.outputs.push(apply_one::<T>(&mut tables, c)?);
                            }
                        }
                        openraft::EntryPayload::Membership(m) => {
                            membership = Some(StoredMembership::new(Some(entry.log_id), m));
                        }
                    }
                    outcomes.push(outcome);
                }
            }
            write_applied(txn, &group, &Some(last), membership.as_ref())?;
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = outcomes;
            Ok(())
        });
        self.db
            .write(vec![Op::Run(run)], false)
            .await
            .map_err(sm_write)?;
        let outcomes = std::mem::take(&mut *results.lock().unwrap_or_else(|p| p.into_inner()));
        self.applied_tx.send_replace(last.index);
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> TableStore<T> {
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
        // The snapshot's own bytes are kept too, for members that lag us.
        let copy = Some(data.clone());
        let group = self.group;
        let m = encode(meta).map_err(sm_write)?;
        let applied = meta.last_log_id;
        let membership = meta.last_membership.clone();
        let run = Box::new(move |txn: &redb::WriteTransaction| -> Result<(), String> {
            install_tables(txn, &group, &data)?;
            write_applied(txn, &group, &applied, Some(&membership))?;
            Ok(())
        });
        self.db
            .write(
                vec![
                    Op::Run(run),
                    Op::Put(self.group, key::SNAPSHOT_META, Some(m)),
                    Op::Put(self.group, key::SNAPSHOT_DATA, copy),
                ],
                true,
            )
            .await
            .map_err(sm_write)?;
        self.applied_tx
            .send_replace(applied.map(|l| l.index).unwrap_or(0));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        self.db.stored_snapshot(&self.group).map_err(snap_read)
    }
}
