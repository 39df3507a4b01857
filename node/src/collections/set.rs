//! `Set<T>`: a replicated set.

use std::marker::PhantomData;
use std::ops::Bound;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::codec::{dec, enc};
use super::error::CollectionError;
use super::map::MAX_PAGE;
use super::replica::{collection_common, Collections, Replica};
use crate::discovery::CollectionRole;
use crate::groups::{Consistency, ReadTables, TableError, TableMachine, TableRead, Tables};

const ITEMS: u8 = 0;

/// A write to a set (elements encoded).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SetCommand {
    /// Add elements; answers how many were new.
    Insert(Vec<Vec<u8>>),
    /// Remove elements; answers how many were present.
    Remove(Vec<Vec<u8>>),
    /// Remove everything; answers how many there were.
    Clear,
}

/// A read of a set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SetQuery {
    /// Whether the element is present (answers 1 or 0 in `Count`).
    Contains(Vec<u8>),
    /// How many elements.
    Len,
    /// Elements after one, at most `limit`.
    Page(Option<Vec<u8>>, u32),
}

/// A set's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SetAnswer {
    /// A count (or 1/0 for `Contains`).
    Count(u64),
    /// Elements.
    Items(Vec<Vec<u8>>),
}

/// The set's table machine.
pub struct SetMachine;

impl TableMachine for SetMachine {
    type Command = SetCommand;
    type Output = u64;
    type Query = SetQuery;
    type QueryOutput = SetAnswer;

    fn apply(t: &mut Tables<'_>, c: SetCommand) -> Result<u64, TableError> {
        let mut n = 0;
        match c {
            SetCommand::Insert(items) => {
                for i in items {
                    if t.insert(ITEMS, &i, &[])?.is_none() {
                        n += 1;
                    }
                }
            }
            SetCommand::Remove(items) => {
                for i in items {
                    if t.remove(ITEMS, &i)?.is_some() {
                        n += 1;
                    }
                }
            }
            SetCommand::Clear => {
                n = t.len(ITEMS)?;
                t.clear(ITEMS)?;
            }
        }
        Ok(n)
    }

    fn query(t: &ReadTables, q: &SetQuery) -> Result<SetAnswer, TableError> {
        Ok(match q {
            SetQuery::Contains(i) => SetAnswer::Count(u64::from(t.get(ITEMS, i)?.is_some())),
            SetQuery::Len => SetAnswer::Count(t.len(ITEMS)?),
            SetQuery::Page(after, limit) => {
                let lo = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                let rows = t.range(
                    ITEMS,
                    lo,
                    Bound::Unbounded,
                    (*limit as usize).min(MAX_PAGE),
                    false,
                )?;
                SetAnswer::Items(rows.into_iter().map(|(k, _)| k).collect())
            }
        })
    }
}

/// A replicated set of `T`.
pub struct Set<T> {
    pub(crate) replica: Replica<SetMachine>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Set<T> {
    fn clone(&self) -> Self {
        Set {
            replica: self.replica.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Set<T> {
    collection_common!();

    /// Open set `name` as a writer (ticket: `write`).
    pub async fn writer(c: &Collections, name: &str) -> Result<Self, CollectionError> {
        Self::open(c, name, CollectionRole::Writer).await
    }

    /// Open set `name` as a reader (ticket: `read`).
    pub async fn reader(c: &Collections, name: &str) -> Result<Self, CollectionError> {
        Self::open(c, name, CollectionRole::Reader).await
    }

    async fn open(
        c: &Collections,
        name: &str,
        role: CollectionRole,
    ) -> Result<Self, CollectionError> {
        let config = Collections::group_config(name, role);
        Ok(Set {
            replica: c.open(name, role, config).await?,
            _t: PhantomData,
        })
    }

    async fn count(&self, c: SetCommand) -> Result<(u64, u64), CollectionError> {
        self.replica.write(c).await
    }

    /// Add `item`. Returns the version and whether it was new.
    pub async fn insert(&self, item: &T) -> Result<(u64, bool), CollectionError> {
        let (v, n) = self.count(SetCommand::Insert(vec![enc(item)?])).await?;
        Ok((v, n == 1))
    }

    /// Add every item. Returns the version and how many were new.
    pub async fn extend(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<(u64, u64), CollectionError> {
        let items = items
            .into_iter()
            .map(|i| enc(&i))
            .collect::<Result<_, _>>()?;
        self.count(SetCommand::Insert(items)).await
    }

    /// Remove `item`. Returns the version and whether it was present.
    pub async fn remove(&self, item: &T) -> Result<(u64, bool), CollectionError> {
        let (v, n) = self.count(SetCommand::Remove(vec![enc(item)?])).await?;
        Ok((v, n == 1))
    }

    /// Remove every item of `items`. Returns the version and how many were
    /// present.
    pub async fn remove_many(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<(u64, u64), CollectionError> {
        let items = items
            .into_iter()
            .map(|i| enc(&i))
            .collect::<Result<_, _>>()?;
        self.count(SetCommand::Remove(items)).await
    }

    /// Remove everything. Returns the version and how many there were.
    pub async fn clear(&self) -> Result<(u64, u64), CollectionError> {
        self.count(SetCommand::Clear).await
    }

    /// Whether `item` is present, at the given consistency.
    pub async fn contains(
        &self,
        item: &T,
        consistency: Consistency,
    ) -> Result<bool, CollectionError> {
        match self
            .replica
            .read(&SetQuery::Contains(enc(item)?), consistency)
            .await?
        {
            SetAnswer::Count(n) => Ok(n == 1),
            SetAnswer::Items(_) => Err(CollectionError::Encoding("unexpected answer".into())),
        }
    }

    /// How many items, at the given consistency.
    pub async fn len(&self, consistency: Consistency) -> Result<u64, CollectionError> {
        match self.replica.read(&SetQuery::Len, consistency).await? {
            SetAnswer::Count(n) => Ok(n),
            SetAnswer::Items(_) => Err(CollectionError::Encoding("unexpected answer".into())),
        }
    }

    /// Items after `after` in encoded order, at most `limit`.
    pub async fn page(
        &self,
        after: Option<&T>,
        limit: usize,
        consistency: Consistency,
    ) -> Result<Vec<T>, CollectionError> {
        let q = SetQuery::Page(after.map(enc).transpose()?, limit.min(MAX_PAGE) as u32);
        match self.replica.read(&q, consistency).await? {
            SetAnswer::Items(items) => items.iter().map(|b| dec(b)).collect(),
            SetAnswer::Count(_) => Err(CollectionError::Encoding("unexpected answer".into())),
        }
    }
}
