//! The node's Raft database: one redb file under the data dir, two tables
//! per group (the log, and a small key-value table for the vote, the
//! committed and purged log ids, the founding promise and the snapshot).
//!
//! Every write goes through one writer thread, in submission order, so a
//! vote is never reordered after a log write. The thread drains whatever is
//! queued into one transaction committed without fsync, which makes the
//! writes readable at once (openraft wants appended entries readable when
//! `append` returns), then, if any write asked for durability, commits an
//! empty transaction with [`Durability::Immediate`]: redb persists every
//! earlier non-durable commit with it, so one fsync covers all groups' appends
//! and votes queued meanwhile (group commit). Only then do flush callbacks
//! fire and `save_vote` return.

use std::io;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use super::types::{Entry, LogId, StorageError, Vote};
use crate::id::GroupId;

/// How many write jobs may wait for the writer thread.
const QUEUE: usize = 4096;

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// redb refused to open or create the file.
    #[error("group database {path}: {detail}")]
    Open {
        /// The file.
        path: String,
        /// What redb said.
        detail: String,
    },
    /// The writer thread could not be started.
    #[error("group database writer: {0}")]
    Thread(String),
}

/// Work run inside the writer's transaction (a table machine applying
/// entries): it sees every earlier write of the batch and commits with it.
pub(crate) type TxnFn = Box<dyn FnOnce(&redb::WriteTransaction) -> Result<(), String> + Send>;

/// One write.
pub(crate) enum Op {
    /// Insert log entries (index, encoded entry).
    Append(GroupId, Vec<(u64, Vec<u8>)>),
    /// Remove log entries with index in `[from, to)` (`to = None`: to the end).
    Remove(GroupId, u64, Option<u64>),
    /// Set (or with `None`, delete) a meta key.
    Put(GroupId, &'static str, Option<Vec<u8>>),
    /// Run a closure in the transaction.
    Run(TxnFn),
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Append(g, e) => write!(f, "Append({g}, {} entries)", e.len()),
            Op::Remove(g, from, to) => write!(f, "Remove({g}, {from}..{to:?})"),
            Op::Put(g, k, v) => write!(f, "Put({g}, {k}, {:?} bytes)", v.as_ref().map(Vec::len)),
            Op::Run(_) => f.write_str("Run"),
        }
    }
}

type Durable = Box<dyn FnOnce(io::Result<()>) + Send>;

struct Job {
    ops: Vec<Op>,
    visible: oneshot::Sender<Result<(), String>>,
    durable: Option<Durable>,
}

/// The node's Raft database. Cheap to clone.
#[derive(Clone)]
pub struct GroupDb {
    /// `None` once closed: readers fail, and the file's lock is released
    /// when the writer thread exits (see [`GroupDb::close`]).
    db: Arc<std::sync::RwLock<Option<Arc<Database>>>>,
    jobs: mpsc::Sender<Job>,
    /// Fires when the writer thread has exited.
    writer_done: Arc<std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>>,
    in_memory: bool,
}

impl std::fmt::Debug for GroupDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupDb")
            .field("in_memory", &self.in_memory)
            .finish()
    }
}

fn log_name(g: &GroupId) -> String {
    format!("group/{g}/log")
}

fn meta_name(g: &GroupId) -> String {
    format!("group/{g}/meta")
}

fn io_other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl GroupDb {
    /// Open (or create) the database file `path`.
    pub fn open(path: &Path) -> Result<GroupDb, DbError> {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let db = Database::create(path).map_err(|e| DbError::Open {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        GroupDb::start(db, false)
    }

    /// A database in memory: nothing survives the process. For nodes without
    /// a data dir, tests, and the benchmark's baseline.
    pub fn in_memory() -> Result<GroupDb, DbError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| DbError::Open {
                path: "(memory)".into(),
                detail: e.to_string(),
            })?;
        GroupDb::start(db, true)
    }

    fn start(db: Database, in_memory: bool) -> Result<GroupDb, DbError> {
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel(QUEUE);
        let shared = Arc::new(std::sync::RwLock::new(Some(db.clone())));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let closed = shared.clone();
        std::thread::Builder::new()
            .name("tessella-groups-db".into())
            .spawn(move || {
                writer(db, rx, closed);
                let _ = done_tx.send(());
            })
            .map_err(|e| DbError::Thread(e.to_string()))?;
        Ok(GroupDb {
            db: shared,
            jobs: tx,
            writer_done: Arc::new(std::sync::Mutex::new(Some(done_rx))),
            in_memory,
        })
    }

    fn handle(&self) -> Result<Arc<Database>, String> {
        self.db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| "the group database is closed".to_string())
    }

    /// Close the database: later reads and writes fail, queued writes are
    /// committed and synced, and once the writer thread exits (this waits
    /// for it, at most `wait`) the file is released, so the node can be
    /// started again in the same process.
    pub async fn close(&self, wait: std::time::Duration) {
        self.db.write().unwrap_or_else(|p| p.into_inner()).take();
        // Wake the writer so it sees the close.
        let _ = self.submit(Vec::new(), None).await;
        let done = self
            .writer_done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(done) = done {
            let _ = tokio::task::spawn_blocking(move || done.recv_timeout(wait)).await;
        }
    }

    /// Whether this database lives in memory only.
    pub fn is_in_memory(&self) -> bool {
        self.in_memory
    }

    /// Queue `ops`; return once they are readable. With `durable`, return
    /// only once they are on disk.
    pub(crate) async fn write(&self, ops: Vec<Op>, durable: bool) -> Result<(), String> {
        if durable {
            let (tx, rx) = oneshot::channel();
            self.write_then(
                ops,
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            )
            .await?;
            rx.await
                .map_err(|_| "group database writer stopped".to_string())?
                .map_err(|e| e.to_string())
        } else {
            self.submit(ops, None).await
        }
    }

    /// Queue `ops`; return once they are readable; call `on_durable` once
    /// they are on disk (or failed to get there).
    pub(crate) async fn write_then(&self, ops: Vec<Op>, on_durable: Durable) -> Result<(), String> {
        self.submit(ops, Some(on_durable)).await
    }

    async fn submit(&self, ops: Vec<Op>, durable: Option<Durable>) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        let job = Job {
            ops,
            visible: tx,
            durable,
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| "group database writer stopped".to_string())?;
        rx.await
            .map_err(|_| "group database writer stopped".to_string())?
    }

    /// A meta value of `group`.
    pub(crate) fn meta(&self, group: &GroupId, key: &str) -> Result<Option<Vec<u8>>, String> {
        let name = meta_name(group);
        let def: TableDefinition<&str, &[u8]> = TableDefinition::new(&name);
        let txn = self.handle()?.begin_read().map_err(|e| e.to_string())?;
        let table = match txn.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let v = table.get(key).map_err(|e| e.to_string())?;
        Ok(v.map(|g| g.value().to_vec()))
    }

    /// The snapshot kept for `group` (meta and data), if any.
    pub(crate) fn stored_snapshot(
        &self,
        group: &GroupId,
    ) -> Result<Option<super::types::Snapshot>, String> {
        let meta = self.meta(group, key::SNAPSHOT_META)?;
        let data = self.meta(group, key::SNAPSHOT_DATA)?;
        Ok(match (meta, data) {
            (Some(meta), Some(data)) => Some(super::types::Snapshot {
                meta: decode(&meta)?,
                snapshot: Box::new(std::io::Cursor::new(data)),
            }),
            _ => None,
        })
    }

    /// A read transaction: a consistent view of every table.
    pub(crate) fn begin_read(&self) -> Result<redb::ReadTransaction, String> {
        self.handle()?.begin_read().map_err(|e| e.to_string())
    }

    /// Encoded log entries of `group` with index in `range`, at most `limit`.
    pub(crate) fn log_range(
        &self,
        group: &GroupId,
        range: impl RangeBounds<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, String> {
        let name = log_name(group);
        let def: TableDefinition<u64, &[u8]> = TableDefinition::new(&name);
        let txn = self.handle()?.begin_read().map_err(|e| e.to_string())?;
        let table = match txn.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.to_string()),
        };
        let mut out = Vec::new();
        for item in table.range(range).map_err(|e| e.to_string())? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(|e| e.to_string())?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// The last log entry of `group`, encoded.
    pub(crate) fn last_entry(&self, group: &GroupId) -> Result<Option<Vec<u8>>, String> {
        let name = log_name(group);
        let def: TableDefinition<u64, &[u8]> = TableDefinition::new(&name);
        let txn = self.handle()?.begin_read().map_err(|e| e.to_string())?;
        let table = match txn.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let last = table.last().map_err(|e| e.to_string())?;
        Ok(last.map(|(_, v)| v.value().to_vec()))
    }
}

/// The writer thread: drain, apply in one transaction, commit readable,
/// then make durable in one fsync.
fn writer(
    db: Arc<Database>,
    mut rx: mpsc::Receiver<Job>,
    shared: Arc<std::sync::RwLock<Option<Arc<Database>>>>,
) {
    let closed = || shared.read().unwrap_or_else(|p| p.into_inner()).is_none();
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < QUEUE {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let applied = apply(&db, &mut jobs);
        let mut durable = Vec::new();
        for job in jobs {
            let _ = job.visible.send(applied.clone());
            if let Some(d) = job.durable {
                durable.push(d);
            }
        }
        if durable.is_empty() {
            if closed() {
                break;
            }
            continue;
        }
        let synced = match &applied {
            Ok(()) => sync(&db),
            Err(e) => Err(io_other(e)),
        };
        for d in durable {
            d(match &synced {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            });
        }
        if closed() {
            break;
        }
    }
    // Commits made without durability (the commit index) reach the disk.
    rx.close();
    if let Err(e) = sync(&db) {
        tracing::warn!(error = %e, "group database: final sync failed");
    }
}

fn apply(db: &Database, jobs: &mut [Job]) -> Result<(), String> {
    let mut txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.set_durability(Durability::None)
        .map_err(|e| e.to_string())?;
    for job in jobs.iter_mut() {
        for op in job.ops.drain(..) {
            apply_op(&txn, op)?;
        }
    }
    txn.commit().map_err(|e| e.to_string())
}

fn apply_op(txn: &redb::WriteTransaction, op: Op) -> Result<(), String> {
    match op {
        Op::Append(g, entries) => {
            let name = log_name(&g);
            let def: TableDefinition<u64, &[u8]> = TableDefinition::new(&name);
            let mut t = txn.open_table(def).map_err(|e| e.to_string())?;
            for (i, bytes) in entries {
                t.insert(i, bytes.as_slice()).map_err(|e| e.to_string())?;
            }
        }
        Op::Remove(g, from, to) => {
            let name = log_name(&g);
            let def: TableDefinition<u64, &[u8]> = TableDefinition::new(&name);
            let mut t = txn.open_table(def).map_err(|e| e.to_string())?;
            match to {
                Some(to) => t.retain_in(from..to, |_, _| false),
                None => t.retain_in(from.., |_, _| false),
            }
            .map_err(|e| e.to_string())?;
        }
        Op::Put(g, key, value) => {
            let name = meta_name(&g);
            let def: TableDefinition<&str, &[u8]> = TableDefinition::new(&name);
            let mut t = txn.open_table(def).map_err(|e| e.to_string())?;
            match value {
                Some(v) => t.insert(key, v.as_slice()).map(|_| ()),
                None => t.remove(key).map(|_| ()),
            }
            .map_err(|e| e.to_string())?;
        }
        Op::Run(f) => f(txn)?,
    }
    Ok(())
}

fn sync(db: &Database) -> io::Result<()> {
    let mut txn = db.begin_write().map_err(io_other)?;
    txn.set_durability(Durability::Immediate)
        .map_err(io_other)?;
    txn.commit().map_err(io_other)
}

pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, String> {
    postcard::to_stdvec(v).map_err(|e| e.to_string())
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    postcard::from_bytes(b).map_err(|e| e.to_string())
}

/// Meta keys.
pub(crate) mod key {
    pub const VOTE: &str = "vote";
    pub const COMMITTED: &str = "committed";
    pub const PURGED: &str = "purged";
    pub const PROMISE: &str = "promise";
    pub const SNAPSHOT_META: &str = "snapshot-meta";
    pub const SNAPSHOT_DATA: &str = "snapshot-data";
}

fn read_err(e: String) -> StorageError {
    openraft::StorageIOError::read_logs(openraft::AnyError::error(e)).into()
}

fn write_err(e: String) -> StorageError {
    openraft::StorageIOError::write_logs(openraft::AnyError::error(e)).into()
}

/// The Raft log and vote of one group, in the node's [`GroupDb`].
#[derive(Clone, Debug)]
pub struct LogStore {
    group: GroupId,
    db: GroupDb,
    /// The `group` label of this store's metrics.
    label: std::sync::Arc<str>,
}

impl LogStore {
    /// The log store of `group`.
    pub fn new(db: GroupDb, group: GroupId) -> LogStore {
        LogStore::named(db, group, &group.to_string())
    }

    /// The log store of `group`, called `name` in metrics.
    pub fn named(db: GroupDb, group: GroupId, name: &str) -> LogStore {
        LogStore {
            group,
            db,
            label: name.into(),
        }
    }

    fn meta_get<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        match self.db.meta(&self.group, key).map_err(read_err)? {
            Some(b) => decode(&b).map(Some).map_err(read_err),
            None => Ok(None),
        }
    }
}

impl openraft::RaftLogReader<super::types::GroupTypes> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let raw = self
            .db
            .log_range(&self.group, range, usize::MAX)
            .map_err(read_err)?;
        raw.into_iter()
            .map(|(_, b)| decode::<Entry>(&b).map_err(read_err))
            .collect()
    }
}

impl openraft::storage::RaftLogStorage<super::types::GroupTypes> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(
        &mut self,
    ) -> Result<openraft::storage::LogState<super::types::GroupTypes>, StorageError> {
        let purged: Option<LogId> = self.meta_get(key::PURGED)?;
        let last = match self.db.last_entry(&self.group).map_err(read_err)? {
            Some(b) => Some(decode::<Entry>(&b).map_err(read_err)?.log_id),
            None => purged,
        };
        Ok(openraft::storage::LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = encode(vote).map_err(write_err)?;
        self.db
            .write(vec![Op::Put(self.group, key::VOTE, Some(bytes))], true)
            .await
            .map_err(|e| openraft::StorageIOError::write_vote(openraft::AnyError::error(e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.meta_get(key::VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes = encode(&committed).map_err(write_err)?;
        self.db
            .write(
                vec![Op::Put(self.group, key::COMMITTED, Some(bytes))],
                false,
            )
            .await
            .map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.meta_get::<Option<LogId>>(key::COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: openraft::storage::LogFlushed<super::types::GroupTypes>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut rows = Vec::new();
        for e in entries {
            rows.push((e.log_id.index, encode(&e).map_err(write_err)?));
        }
        let started = std::time::Instant::now();
        let label = self.label.to_string();
        self.db
            .write_then(
                vec![Op::Append(self.group, rows)],
                Box::new(move |r| {
                    metrics::histogram!("tessella_group_append_seconds", "group" => label)
                        .record(started.elapsed().as_secs_f64());
                    callback.log_io_completed(r)
                }),
            )
            .await
            .map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.db
            .write(vec![Op::Remove(self.group, log_id.index, None)], false)
            .await
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = encode(&log_id).map_err(write_err)?;
        // The purge marker first, in the same transaction: a crash can never
        // leave a log whose head is missing without saying so.
        self.db
            .write(
                vec![
                    Op::Put(self.group, key::PURGED, Some(bytes)),
                    Op::Remove(self.group, 0, Some(log_id.index.saturating_add(1))),
                ],
                false,
            )
            .await
            .map_err(write_err)
    }
}
