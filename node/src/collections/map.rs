//! `Map<K, V>`: a replicated map. Each entry carries the version (log
//! index) that last wrote it, so writes can be conditional on it.

use std::marker::PhantomData;
use std::ops::Bound;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::codec::{dec, enc};
use super::error::CollectionError;
use super::replica::{collection_common, Collections, Replica};
use crate::discovery::CollectionRole;
use crate::groups::{Consistency, GroupConfig, TableError, TableMachine, TableRead, Tables};

/// Most entries a page read returns.
pub const MAX_PAGE: usize = 10_000;

const ENTRIES: u8 = 0;

/// What a conditional write expects of the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// Nothing: write unconditionally.
    Any,
    /// The key is absent.
    Absent,
    /// The entry exists and was last written at this version.
    Version(u64),
}

/// A write to the map (keys and values encoded).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MapCommand {
    /// Set `key`, or with `None` remove it, if the entry is as expected.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The new value; `None` removes.
        value: Option<Vec<u8>>,
        /// The condition.
        expect: Expect,
    },
    /// Set `key` to `new` (or remove it) if its value is `current`.
    CompareExchange {
        /// The key.
        key: Vec<u8>,
        /// The value expected now; `None`: absent.
        current: Option<Vec<u8>>,
        /// The new value; `None` removes.
        new: Option<Vec<u8>>,
    },
    /// Set many entries.
    Extend(Vec<(Vec<u8>, Vec<u8>)>),
    /// Remove many keys.
    RemoveMany(Vec<Vec<u8>>),
    /// Remove every entry.
    Clear,
}

/// What a write did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapOutcome {
    /// Whether the condition held (and so the write happened).
    pub done: bool,
    /// The entry before the write: its version and value.
    pub previous: Option<(u64, Vec<u8>)>,
    /// Entries added or removed (extend, remove_many, clear).
    pub count: u64,
}

/// A read of the map.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MapQuery {
    /// One entry.
    Get(Vec<u8>),
    /// The number of entries.
    Len,
    /// Entries after `after` (exclusive; from the start with `None`) in key
    /// order, at most `limit`.
    Page {
        /// Start after this key.
        after: Option<Vec<u8>>,
        /// Most entries (at most [`MAX_PAGE`]).
        limit: u32,
    },
}

/// What a read returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MapAnswer {
    /// One entry: version and value.
    Entry(Option<(u64, Vec<u8>)>),
    /// A count.
    Len(u64),
    /// Entries: key, version, value.
    Page(Vec<(Vec<u8>, u64, Vec<u8>)>),
}

/// The map's table machine.
pub struct MapMachine;

fn split(stored: &[u8]) -> Result<(u64, Vec<u8>), TableError> {
    if stored.len() < 8 {
        return Err(TableError("map entry shorter than its version".into()));
    }
    let (v, value) = stored.split_at(8);
    let mut b = [0u8; 8];
    b.copy_from_slice(v);
    Ok((u64::from_be_bytes(b), value.to_vec()))
}

fn join(version: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn current(t: &Tables<'_>, key: &[u8]) -> Result<Option<(u64, Vec<u8>)>, TableError> {
    t.get(ENTRIES, key)?.map(|s| split(&s)).transpose()
}

fn set(t: &mut Tables<'_>, key: &[u8], value: Option<&[u8]>) -> Result<(), TableError> {
    match value {
        Some(v) => {
            let stored = join(t.index(), v);
            t.insert(ENTRIES, key, &stored)?;
        }
        None => {
            t.remove(ENTRIES, key)?;
        }
    }
    Ok(())
}

impl TableMachine for MapMachine {
    type Command = MapCommand;
    type Output = MapOutcome;
    type Query = MapQuery;
    type QueryOutput = MapAnswer;

    fn apply(t: &mut Tables<'_>, command: MapCommand) -> Result<MapOutcome, TableError> {
        let mut out = MapOutcome {
            done: true,
            previous: None,
            count: 0,
        };
        match command {
            MapCommand::Put { key, value, expect } => {
                let now = current(t, &key)?;
                out.done = match expect {
                    Expect::Any => true,
                    Expect::Absent => now.is_none(),
                    Expect::Version(v) => now.as_ref().is_some_and(|(have, _)| *have == v),
                };
                if out.done && (value.is_some() || now.is_some()) {
                    set(t, &key, value.as_deref())?;
                    out.count = 1;
                }
                out.previous = now;
            }
            MapCommand::CompareExchange {
                key,
                current: want,
                new,
            } => {
                let now = current(t, &key)?;
                out.done = now.as_ref().map(|(_, v)| v.as_slice()) == want.as_deref();
                if out.done {
                    set(t, &key, new.as_deref())?;
                }
                out.previous = now;
            }
            MapCommand::Extend(entries) => {
                for (k, v) in entries {
                    set(t, &k, Some(&v))?;
                    out.count += 1;
                }
            }
            MapCommand::RemoveMany(keys) => {
                for k in keys {
                    if t.remove(ENTRIES, &k)?.is_some() {
                        out.count += 1;
                    }
                }
            }
            MapCommand::Clear => {
                out.count = t.len(ENTRIES)?;
                t.clear(ENTRIES)?;
            }
        }
        Ok(out)
    }

    fn query(t: &crate::groups::ReadTables, q: &MapQuery) -> Result<MapAnswer, TableError> {
        Ok(match q {
            MapQuery::Get(k) => {
                MapAnswer::Entry(t.get(ENTRIES, k)?.map(|s| split(&s)).transpose()?)
            }
            MapQuery::Len => MapAnswer::Len(t.len(ENTRIES)?),
            MapQuery::Page { after, limit } => {
                let lo = match after {
                    Some(a) => Bound::Excluded(a.as_slice()),
                    None => Bound::Unbounded,
                };
                let rows = t.range(
                    ENTRIES,
                    lo,
                    Bound::Unbounded,
                    (*limit as usize).min(MAX_PAGE),
                    false,
                )?;
                let mut page = Vec::with_capacity(rows.len());
                for (k, s) in rows {
                    let (v, value) = split(&s)?;
                    page.push((k, v, value));
                }
                MapAnswer::Page(page)
            }
        })
    }
}

/// One entry of a map: its value and the version that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapEntry<V> {
    /// The value.
    pub value: V,
    /// The version (log index) of the write that set it.
    pub version: u64,
}

/// A replicated map from `K` to `V`.
pub struct Map<K, V> {
    pub(crate) replica: Replica<MapMachine>,
    _kv: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for Map<K, V> {
    fn clone(&self) -> Self {
        Map {
            replica: self.replica.clone(),
            _kv: PhantomData,
        }
    }
}

fn entry<V: DeserializeOwned>(
    e: Option<(u64, Vec<u8>)>,
) -> Result<Option<MapEntry<V>>, CollectionError> {
    e.map(|(version, v)| {
        Ok(MapEntry {
            value: dec(&v)?,
            version,
        })
    })
    .transpose()
}

impl<K, V> Map<K, V>
where
    K: Serialize + DeserializeOwned + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    collection_common!();

    /// Open map `name` as a writer (a voter): this node's ticket must grant
    /// `write` on it.
    pub async fn writer(c: &Collections, name: &str) -> Result<Self, CollectionError> {
        let config = Collections::group_config(name, CollectionRole::Writer);
        Self::open(c, name, CollectionRole::Writer, config).await
    }

    /// Open map `name` as a reader (a learner): this node's ticket must
    /// grant `read` on it.
    pub async fn reader(c: &Collections, name: &str) -> Result<Self, CollectionError> {
        let config = Collections::group_config(name, CollectionRole::Reader);
        Self::open(c, name, CollectionRole::Reader, config).await
    }

    /// Open map `name` with explicit group settings (their `access` is set
    /// to the collection's).
    pub async fn open(
        c: &Collections,
        name: &str,
        role: CollectionRole,
        mut config: GroupConfig,
    ) -> Result<Self, CollectionError> {
        config.access = crate::groups::Access::collection(name);
        Ok(Map {
            replica: c.open(name, role, config).await?,
            _kv: PhantomData,
        })
    }

    async fn put(
        &self,
        key: &K,
        value: Option<&V>,
        expect: Expect,
    ) -> Result<(u64, MapOutcome), CollectionError> {
        let cmd = MapCommand::Put {
            key: enc(key)?,
            value: value.map(enc).transpose()?,
            expect,
        };
        self.replica.write(cmd).await
    }

    /// Set `key` to `value`. Returns the write's version and the previous
    /// value.
    pub async fn insert(&self, key: &K, value: &V) -> Result<(u64, Option<V>), CollectionError> {
        let (version, out) = self.put(key, Some(value), Expect::Any).await?;
        Ok((version, entry::<V>(out.previous)?.map(|e| e.value)))
    }

    /// Set `key` to `value` (or remove it, with `None`) only if the entry is
    /// as `expect`ed. `Ok(version)` when written; `Err(current version)`
    /// (`None`: absent) when the condition failed.
    pub async fn put_if(
        &self,
        key: &K,
        value: Option<&V>,
        expect: Expect,
    ) -> Result<Result<u64, Option<u64>>, CollectionError> {
        let (version, out) = self.put(key, value, expect).await?;
        Ok(if out.done {
            Ok(version)
        } else {
            Err(out.previous.map(|(v, _)| v))
        })
    }

    /// Remove `key` if the entry is as `expect`ed. Returns the version and
    /// `Ok(whether it was present)`, or `Err(current version)` when the
    /// condition failed.
    pub async fn remove_if(
        &self,
        key: &K,
        expect: Expect,
    ) -> Result<(u64, Result<bool, Option<u64>>), CollectionError> {
        let (version, out) = self.put(key, None, expect).await?;
        let present = out.previous.as_ref().map(|(v, _)| *v);
        Ok((
            version,
            if out.done {
                Ok(present.is_some())
            } else {
                Err(present)
            },
        ))
    }

    /// Set `key` to `new` (remove it with `None`) if its value is `current`
    /// (`None`: absent). `Ok(version)` when swapped, `Err(actual value)`
    /// otherwise.
    pub async fn compare_exchange(
        &self,
        key: &K,
        current: Option<&V>,
        new: Option<&V>,
    ) -> Result<Result<u64, Option<V>>, CollectionError> {
        let cmd = MapCommand::CompareExchange {
            key: enc(key)?,
            current: current.map(enc).transpose()?,
            new: new.map(enc).transpose()?,
        };
        let (version, out) = self.replica.write(cmd).await?;
        Ok(if out.done {
            Ok(version)
        } else {
            Err(entry::<V>(out.previous)?.map(|e| e.value))
        })
    }

    /// Set every entry of `entries` in one write. Returns its version.
    pub async fn extend(
        &self,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Result<u64, CollectionError> {
        let rows = entries
            .into_iter()
            .map(|(k, v)| Ok((enc(&k)?, enc(&v)?)))
            .collect::<Result<Vec<_>, CollectionError>>()?;
        Ok(self.replica.write(MapCommand::Extend(rows)).await?.0)
    }

    /// Remove `key`. Returns the version and the removed value.
    pub async fn remove(&self, key: &K) -> Result<(u64, Option<V>), CollectionError> {
        let (version, out) = self.put(key, None, Expect::Any).await?;
        Ok((version, entry::<V>(out.previous)?.map(|e| e.value)))
    }

    /// Remove every key of `keys`. Returns the version and how many were
    /// present.
    pub async fn remove_many(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<(u64, u64), CollectionError> {
        let keys = keys
            .into_iter()
            .map(|k| enc(&k))
            .collect::<Result<Vec<_>, _>>()?;
        let (version, out) = self.replica.write(MapCommand::RemoveMany(keys)).await?;
        Ok((version, out.count))
    }

    /// Remove every entry. Returns the version and how many there were.
    pub async fn clear(&self) -> Result<(u64, u64), CollectionError> {
        let (version, out) = self.replica.write(MapCommand::Clear).await?;
        Ok((version, out.count))
    }

    /// The value of `key` on this replica.
    pub async fn get(&self, key: &K) -> Result<Option<V>, CollectionError> {
        Ok(self.entry(key, Consistency::Local).await?.map(|e| e.value))
    }

    /// The entry of `key` (value and version) at the given consistency.
    pub async fn entry(
        &self,
        key: &K,
        consistency: Consistency,
    ) -> Result<Option<MapEntry<V>>, CollectionError> {
        match self
            .replica
            .read(&MapQuery::Get(enc(key)?), consistency)
            .await?
        {
            MapAnswer::Entry(e) => entry(e),
            _ => Err(CollectionError::Encoding("unexpected answer".into())),
        }
    }

    /// Whether `key` is present on this replica.
    pub async fn contains_key(&self, key: &K) -> Result<bool, CollectionError> {
        Ok(self.entry(key, Consistency::Local).await?.is_some())
    }

    /// The number of entries at the given consistency.
    pub async fn len(&self, consistency: Consistency) -> Result<u64, CollectionError> {
        match self.replica.read(&MapQuery::Len, consistency).await? {
            MapAnswer::Len(n) => Ok(n),
            _ => Err(CollectionError::Encoding("unexpected answer".into())),
        }
    }

    /// Entries after `after` (from the start with `None`), in key order, at
    /// most `limit` (at most [`MAX_PAGE`]).
    pub async fn page(
        &self,
        after: Option<&K>,
        limit: usize,
        consistency: Consistency,
    ) -> Result<Vec<(K, MapEntry<V>)>, CollectionError> {
        let q = MapQuery::Page {
            after: after.map(enc).transpose()?,
            limit: limit.min(MAX_PAGE) as u32,
        };
        match self.replica.read(&q, consistency).await? {
            MapAnswer::Page(rows) => rows
                .into_iter()
                .map(|(k, version, v)| {
                    Ok((
                        dec(&k)?,
                        MapEntry {
                            value: dec(&v)?,
                            version,
                        },
                    ))
                })
                .collect(),
            _ => Err(CollectionError::Encoding("unexpected answer".into())),
        }
    }

    /// Until `key` has a value on this replica; returns it.
    pub async fn await_value(&self, key: &K) -> Result<V, CollectionError> {
        let q = MapQuery::Get(enc(key)?);
        let found = self
            .replica
            .await_local(&q, |a| match a {
                MapAnswer::Entry(Some((_, v))) => Some(v),
                _ => None,
            })
            .await?;
        dec(&found)
    }
}
