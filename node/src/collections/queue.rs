//! `PriorityQueue<P, K, V>`: replicated entries keyed by `K`, each with a
//! priority `P` and a value `V`, ordered by priority; optionally bounded,
//! evicting the lowest priority when full.

use std::marker::PhantomData;
use std::ops::Bound;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::codec::{dec, enc, Ordered};
use super::error::CollectionError;
use super::map::MAX_PAGE;
use super::replica::{collection_common, Collections, Replica};
use crate::discovery::CollectionRole;
use crate::groups::{Consistency, ReadTables, TableError, TableMachine, TableRead, Tables};

/// key -> (priority length u16, priority, value)
const BY_KEY: u8 = 0;
/// priority ++ key -> key
const BY_PRIORITY: u8 = 1;

/// One entry, encoded: key, priority (ordered bytes), value.
pub type RawEntry = (Vec<u8>, Vec<u8>, Vec<u8>);

/// A write to a queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum QueueCommand {
    /// Insert or replace `key`; with a capacity, evict the lowest
    /// priorities beyond it.
    Insert {
        /// Key.
        key: Vec<u8>,
        /// Priority (ordered bytes).
        priority: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// The queue's bound, if any.
        capacity: Option<u64>,
    },
    /// Change the priority of `key`.
    UpdatePriority(Vec<u8>, Vec<u8>),
    /// Change the value of `key`.
    UpdateValue(Vec<u8>, Vec<u8>),
    /// Remove `key`.
    Remove(Vec<u8>),
    /// Remove the entry with the lowest priority.
    PopMin,
    /// Remove the entry with the highest priority.
    PopMax,
    /// Remove everything.
    Clear,
}

/// What a queue write did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QueueOutcome {
    /// Whether the key was present (updates, remove) or an entry was popped.
    pub done: bool,
    /// The entry before the write, or the one popped or removed.
    pub previous: Option<RawEntry>,
    /// Entries evicted by a bounded insert (possibly the new one).
    pub evicted: Vec<RawEntry>,
}

/// A read of a queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum QueueQuery {
    /// One entry.
    Get(Vec<u8>),
    /// How many entries.
    Len,
    /// Entries with priorities in `[lo, hi)` (unbounded with `None`), in
    /// priority order (reversed with `rev`), at most `limit`.
    Range {
        /// Lowest priority (inclusive).
        lo: Option<Vec<u8>>,
        /// Highest priority (exclusive).
        hi: Option<Vec<u8>>,
        /// Most entries.
        limit: u32,
        /// Highest first.
        rev: bool,
    },
}

/// The queue's table machine.
pub struct QueueMachine;

fn pack(priority: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + priority.len() + value.len());
    out.extend_from_slice(&(priority.len() as u16).to_be_bytes());
    out.extend_from_slice(priority);
    out.extend_from_slice(value);
    out
}

fn unpack(stored: &[u8]) -> Result<(Vec<u8>, Vec<u8>), TableError> {
    let bad = || TableError("bad queue entry".into());
    let n = u16::from_be_bytes([
        *stored.first().ok_or_else(bad)?,
        *stored.get(1).ok_or_else(bad)?,
    ]) as usize;
    let rest = &stored[2..];
    if rest.len() < n {
        return Err(bad());
    }
    Ok((rest[..n].to_vec(), rest[n..].to_vec()))
}

fn index_key(priority: &[u8], key: &[u8]) -> Vec<u8> {
    let mut k = priority.to_vec();
    k.extend_from_slice(key);
    k
}

fn entry_of(t: &impl TableRead, key: &[u8]) -> Result<Option<RawEntry>, TableError> {
    t.get(BY_KEY, key)?
        .map(|s| {
            let (p, v) = unpack(&s)?;
            Ok((key.to_vec(), p, v))
        })
        .transpose()
}

fn delete(t: &mut Tables<'_>, key: &[u8]) -> Result<Option<RawEntry>, TableError> {
    let e = entry_of(t, key)?;
    if let Some((k, p, _)) = &e {
        t.remove(BY_KEY, k)?;
        t.remove(BY_PRIORITY, &index_key(p, k))?;
    }
    Ok(e)
}

fn put(t: &mut Tables<'_>, key: &[u8], priority: &[u8], value: &[u8]) -> Result<(), TableError> {
    t.insert(BY_KEY, key, &pack(priority, value))?;
    t.insert(BY_PRIORITY, &index_key(priority, key), key)?;
    Ok(())
}

fn pop(t: &mut Tables<'_>, max: bool) -> Result<Option<RawEntry>, TableError> {
    let row = if max {
        t.last(BY_PRIORITY)?
    } else {
        t.first(BY_PRIORITY)?
    };
    match row {
        Some((_, key)) => delete(t, &key),
        None => Ok(None),
    }
}

impl TableMachine for QueueMachine {
    type Command = QueueCommand;
    type Output = QueueOutcome;
    type Query = QueueQuery;
    type QueryOutput = Vec<RawEntry>;

    fn apply(t: &mut Tables<'_>, c: QueueCommand) -> Result<QueueOutcome, TableError> {
        let mut out = QueueOutcome::default();
        match c {
            QueueCommand::Insert {
                key,
                priority,
                value,
                capacity,
            } => {
                out.previous = delete(t, &key)?;
                out.done = true;
                put(t, &key, &priority, &value)?;
                if let Some(cap) = capacity {
                    while t.len(BY_KEY)? > cap {
                        match pop(t, false)? {
                            Some(e) => out.evicted.push(e),
                            None => break,
                        }
                    }
                }
            }
            QueueCommand::UpdatePriority(key, priority) => {
                if let Some((k, _, v)) = delete(t, &key)? {
                    put(t, &k, &priority, &v)?;
                    out.done = true;
                }
            }
            QueueCommand::UpdateValue(key, value) => {
                if let Some((k, p, v)) = entry_of(t, &key)? {
                    t.insert(BY_KEY, &k, &pack(&p, &value))?;
                    out.previous = Some((k, p, v));
                    out.done = true;
                }
            }
            QueueCommand::Remove(key) => {
                out.previous = delete(t, &key)?;
                out.done = out.previous.is_some();
            }
            QueueCommand::PopMin | QueueCommand::PopMax => {
                out.previous = pop(t, matches!(c, QueueCommand::PopMax))?;
                out.done = out.previous.is_some();
            }
            QueueCommand::Clear => {
                t.clear(BY_KEY)?;
                t.clear(BY_PRIORITY)?;
                out.done = true;
            }
        }
        Ok(out)
    }

    fn query(t: &ReadTables, q: &QueueQuery) -> Result<Vec<RawEntry>, TableError> {
        match q {
            QueueQuery::Get(key) => Ok(entry_of(t, key)?.into_iter().collect()),
            QueueQuery::Len => Ok(vec![(
                t.len(BY_KEY)?.to_be_bytes().to_vec(),
                Vec::new(),
                Vec::new(),
            )]),
            QueueQuery::Range { lo, hi, limit, rev } => {
                let lo = lo.as_deref().map_or(Bound::Unbounded, Bound::Included);
                let hi = hi.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                let rows = t.range(BY_PRIORITY, lo, hi, (*limit as usize).min(MAX_PAGE), *rev)?;
                let mut out = Vec::with_capacity(rows.len());
                for (_, key) in rows {
                    out.extend(entry_of(t, &key)?);
                }
                Ok(out)
            }
        }
    }
}

/// A replicated priority queue: entries keyed by `K` with a priority `P`
/// and a value `V`.
pub struct PriorityQueue<P, K, V> {
    pub(crate) replica: Replica<QueueMachine>,
    capacity: Option<u64>,
    _t: Types<P, K, V>,
}

impl<P, K, V> Clone for PriorityQueue<P, K, V> {
    fn clone(&self) -> Self {
        PriorityQueue {
            replica: self.replica.clone(),
            capacity: self.capacity,
            _t: PhantomData,
        }
    }
}

/// The queue's type parameters, held as a marker.
type Types<P, K, V> = PhantomData<fn() -> (P, K, V)>;

/// One decoded queue entry.
pub type QueueEntry<P, K, V> = (K, P, V);

impl<P, K, V> PriorityQueue<P, K, V>
where
    P: Ordered,
    K: Serialize + DeserializeOwned + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    collection_common!();

    /// Open queue `name` as a writer (ticket: `write`).
    pub async fn writer(c: &Collections, name: &str) -> Result<Self, CollectionError> {
        Self::open(c, name, CollectionRole::Writer, None).await
    }

    /// Open queue `name` as a writer that keeps at most `capacity` entries,
    /// evicting the lowest priorities.
    pub async fn bounded(
        c: &Collections,
        name: &str,
        capacity: u64,
    ) -> Result<Self, CollectionError> {
        Self::open(c, name, CollectionRole::Writer, Some(capacity)).await
    }

    /// Open queue `name` as a reader (ticket: `read`).
    pub async fn reader(c: &Collections, name: &str) -> Result<Self, CollectionError> {
        Self::open(c, name, CollectionRole::Reader, None).await
    }

    async fn open(
        c: &Collections,
        name: &str,
        role: CollectionRole,
        capacity: Option<u64>,
    ) -> Result<Self, CollectionError> {
        let config = Collections::group_config(name, role);
        Ok(PriorityQueue {
            replica: c.open(name, role, config).await?,
            capacity,
            _t: PhantomData,
        })
    }

    fn decode_entry(e: &RawEntry) -> Result<QueueEntry<P, K, V>, CollectionError> {
        let p = P::from_ordered(&e.1)
            .ok_or_else(|| CollectionError::Encoding("bad priority".into()))?;
        Ok((dec(&e.0)?, p, dec(&e.2)?))
    }

    /// Insert (or replace) `key` with `priority` and `value`. Returns the
    /// version and the entries a bounded queue evicted (possibly this one).
    pub async fn insert(
        &self,
        key: &K,
        priority: P,
        value: &V,
    ) -> Result<(u64, Vec<QueueEntry<P, K, V>>), CollectionError> {
        let cmd = QueueCommand::Insert {
            key: enc(key)?,
            priority: priority.to_ordered(),
            value: enc(value)?,
            capacity: self.capacity,
        };
        let (v, out) = self.replica.write(cmd).await?;
        let evicted = out
            .evicted
            .iter()
            .map(Self::decode_entry)
            .collect::<Result<_, _>>()?;
        Ok((v, evicted))
    }

    /// Change `key`'s priority. Returns the version and whether it exists.
    pub async fn update_priority(
        &self,
        key: &K,
        priority: P,
    ) -> Result<(u64, bool), CollectionError> {
        let (v, out) = self
            .replica
            .write(QueueCommand::UpdatePriority(
                enc(key)?,
                priority.to_ordered(),
            ))
            .await?;
        Ok((v, out.done))
    }

    /// Change `key`'s value. Returns the version and whether it exists.
    pub async fn update_value(&self, key: &K, value: &V) -> Result<(u64, bool), CollectionError> {
        let (v, out) = self
            .replica
            .write(QueueCommand::UpdateValue(enc(key)?, enc(value)?))
            .await?;
        Ok((v, out.done))
    }

    async fn take(
        &self,
        c: QueueCommand,
    ) -> Result<(u64, Option<QueueEntry<P, K, V>>), CollectionError> {
        let (v, out) = self.replica.write(c).await?;
        Ok((
            v,
            out.previous.as_ref().map(Self::decode_entry).transpose()?,
        ))
    }

    /// Remove `key`. Returns the version and the entry.
    pub async fn remove(
        &self,
        key: &K,
    ) -> Result<(u64, Option<QueueEntry<P, K, V>>), CollectionError> {
        self.take(QueueCommand::Remove(enc(key)?)).await
    }

    /// Remove the lowest-priority entry.
    pub async fn pop_min(&self) -> Result<(u64, Option<QueueEntry<P, K, V>>), CollectionError> {
        self.take(QueueCommand::PopMin).await
    }

    /// Remove the highest-priority entry.
    pub async fn pop_max(&self) -> Result<(u64, Option<QueueEntry<P, K, V>>), CollectionError> {
        self.take(QueueCommand::PopMax).await
    }

    /// Remove everything. Returns the version.
    pub async fn clear(&self) -> Result<u64, CollectionError> {
        Ok(self.replica.write(QueueCommand::Clear).await?.0)
    }

    /// `key`'s entry, at the given consistency.
    pub async fn get(
        &self,
        key: &K,
        consistency: Consistency,
    ) -> Result<Option<(P, V)>, CollectionError> {
        let rows = self
            .replica
            .read(&QueueQuery::Get(enc(key)?), consistency)
            .await?;
        match rows.first() {
            Some(e) => {
                let (_, p, v) = Self::decode_entry(e)?;
                Ok(Some((p, v)))
            }
            None => Ok(None),
        }
    }

    /// How many entries, at the given consistency.
    pub async fn len(&self, consistency: Consistency) -> Result<u64, CollectionError> {
        let rows = self.replica.read(&QueueQuery::Len, consistency).await?;
        let b: [u8; 8] = rows
            .first()
            .and_then(|r| r.0.as_slice().try_into().ok())
            .ok_or_else(|| CollectionError::Encoding("bad length".into()))?;
        Ok(u64::from_be_bytes(b))
    }

    /// Entries with priority in `[lo, hi)` (`None`: unbounded), lowest
    /// first (highest first with `rev`), at most `limit`.
    pub async fn range(
        &self,
        lo: Option<P>,
        hi: Option<P>,
        limit: usize,
        rev: bool,
        consistency: Consistency,
    ) -> Result<Vec<QueueEntry<P, K, V>>, CollectionError> {
        let q = QueueQuery::Range {
            lo: lo.map(|p| p.to_ordered()),
            hi: hi.map(|p| p.to_ordered()),
            limit: limit.min(MAX_PAGE) as u32,
            rev,
        };
        let rows = self.replica.read(&q, consistency).await?;
        rows.iter().map(Self::decode_entry).collect()
    }

    /// The lowest-priority entry on this replica.
    pub async fn peek_min(&self) -> Result<Option<QueueEntry<P, K, V>>, CollectionError> {
        Ok(self
            .range(None, None, 1, false, Consistency::Local)
            .await?
            .pop())
    }

    /// The highest-priority entry on this replica.
    pub async fn peek_max(&self) -> Result<Option<QueueEntry<P, K, V>>, CollectionError> {
        Ok(self
            .range(None, None, 1, true, Consistency::Local)
            .await?
            .pop())
    }
}
