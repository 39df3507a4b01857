//! `List<T>`: a replicated sequence (mosaik's `Vec`). Elements sit in
//! consecutive slots, so pushing and popping at either end is one row;
//! inserting or removing in the middle moves the rows after it.

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

const SLOTS: u8 = 0;

/// A write to a list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ListCommand {
    /// Append elements at the back.
    PushBack(Vec<Vec<u8>>),
    /// Put an element at the front.
    PushFront(Vec<u8>),
    /// Remove the last element.
    PopBack,
    /// Remove the first element.
    PopFront,
    /// Insert at a position (`len` appends).
    InsertAt(u64, Vec<u8>),
    /// Remove at a position.
    RemoveAt(u64),
    /// Replace at a position.
    Set(u64, Vec<u8>),
    /// Swap two positions.
    Swap(u64, u64),
    /// Keep the first `n` elements.
    Truncate(u64),
    /// Remove everything.
    Clear,
}

/// What a list write did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListOutcome {
    /// Whether the positions were in range (nothing changed otherwise).
    pub done: bool,
    /// The element removed or replaced.
    pub value: Option<Vec<u8>>,
    /// The length afterwards.
    pub len: u64,
}

/// A read of a list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ListQuery {
    /// The element at a position.
    Get(u64),
    /// The length.
    Len,
    /// Elements from a position, at most `limit`.
    Range(u64, u32),
}

/// The list's table machine.
pub struct ListMachine;

fn slot_key(s: i64) -> Vec<u8> {
    s.to_ordered()
}

fn slot_of(k: &[u8]) -> Result<i64, TableError> {
    i64::from_ordered(k).ok_or_else(|| TableError("bad list slot".into()))
}

/// The first slot and the length.
fn bounds(t: &impl TableRead) -> Result<(i64, u64), TableError> {
    match t.first(SLOTS)? {
        Some((k, _)) => Ok((slot_of(&k)?, t.len(SLOTS)?)),
        None => Ok((0, 0)),
    }
}

impl TableMachine for ListMachine {
    type Command = ListCommand;
    type Output = ListOutcome;
    type Query = ListQuery;
    type QueryOutput = Vec<Vec<u8>>;

    fn apply(t: &mut Tables<'_>, c: ListCommand) -> Result<ListOutcome, TableError> {
        let (first, len) = bounds(t)?;
        let at = |i: u64| first + i as i64;
        let mut out = ListOutcome {
            done: true,
            value: None,
            len,
        };
        match c {
            ListCommand::PushBack(items) => {
                for (k, v) in items.iter().enumerate() {
                    t.insert(SLOTS, &slot_key(at(len + k as u64)), v)?;
                }
            }
            ListCommand::PushFront(v) => {
                let s = if len == 0 { 0 } else { first - 1 };
                t.insert(SLOTS, &slot_key(s), &v)?;
            }
            ListCommand::PopBack => out.value = t.pop_last(SLOTS)?.map(|(_, v)| v),
            ListCommand::PopFront => out.value = t.pop_first(SLOTS)?.map(|(_, v)| v),
            ListCommand::InsertAt(i, v) if i <= len => {
                // Move [i, len) up one slot, from the back.
                for j in (i..len).rev() {
                    if let Some(moved) = t.remove(SLOTS, &slot_key(at(j)))? {
                        t.insert(SLOTS, &slot_key(at(j + 1)), &moved)?;
                    }
                }
                t.insert(SLOTS, &slot_key(at(i)), &v)?;
            }
            ListCommand::RemoveAt(i) if i < len => {
                out.value = t.remove(SLOTS, &slot_key(at(i)))?;
                for j in i + 1..len {
                    if let Some(moved) = t.remove(SLOTS, &slot_key(at(j)))? {
                        t.insert(SLOTS, &slot_key(at(j - 1)), &moved)?;
                    }
                }
            }
            ListCommand::Set(i, v) if i < len => {
                out.value = t.insert(SLOTS, &slot_key(at(i)), &v)?;
            }
            ListCommand::Swap(i, j) if i < len && j < len => {
                if i != j {
                    let a = t.get(SLOTS, &slot_key(at(i)))?.unwrap_or_default();
                    let b = t.get(SLOTS, &slot_key(at(j)))?.unwrap_or_default();
                    t.insert(SLOTS, &slot_key(at(i)), &b)?;
                    t.insert(SLOTS, &slot_key(at(j)), &a)?;
                }
            }
            ListCommand::Truncate(n) => {
                for _ in n.min(len)..len {
                    t.pop_last(SLOTS)?;
                }
            }
            ListCommand::Clear => t.clear(SLOTS)?,
            ListCommand::InsertAt(..)
            | ListCommand::RemoveAt(_)
            | ListCommand::Set(..)
            | ListCommand::Swap(..) => out.done = false,
        }
        out.len = t.len(SLOTS)?;
        Ok(out)
    }

    fn query(t: &ReadTables, q: &ListQuery) -> Result<Vec<Vec<u8>>, TableError> {
        let (first, len) = bounds(t)?;
        Ok(match q {
            ListQuery::Get(i) if *i < len => t
                .get(SLOTS, &slot_key(first + *i as i64))?
                .into_iter()
                .collect(),
            ListQuery::Get(_) => Vec::new(),
            ListQuery::Len => vec![len.to_be_bytes().to_vec()],
            ListQuery::Range(from, limit) => {
                let lo = slot_key(first + (*from).min(len) as i64);
                t.range(
                    SLOTS,
                    Bound::Included(&lo),
                    Bound::Unbounded,
                    (*limit as usize).min(MAX_PAGE),
                    false,
                )?
                .into_iter()
                .map(|(_, v)| v)
                .collect()
            }
        })
    }
}

/// A replicated list of `T`.
pub struct List<T> {
    pub(crate) replica: Replica<ListMachine>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for List<T> {
    fn clone(&self) -> Self {
        List {
            replica: self.replica.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> List<T> {
    collection_common!();

    /// Open list `name` as a writer (ticket: `write`).
    pub async fn writer(c: &Collections, name: &str) -> Result<Self, CollectionError> {
        Self::open(c, name, CollectionRole::Writer).await
    }

    /// Open list `name` as a reader (ticket: `read`).
    pub async fn reader(c: &Collections, name: &str) -> Result<Self, CollectionError> {
        Self::open(c, name, CollectionRole::Reader).await
    }

    async fn open(
        c: &Collections,
        name: &str,
        role: CollectionRole,
    ) -> Result<Self, CollectionError> {
        let config = Collections::group_config(name, role);
        Ok(List {
            replica: c.open(name, role, config).await?,
            _t: PhantomData,
        })
    }

    async fn run(&self, c: ListCommand) -> Result<(u64, ListOutcome), CollectionError> {
        self.replica.write(c).await
    }

    fn checked(
        &self,
        (v, out): (u64, ListOutcome),
        what: &str,
    ) -> Result<(u64, Option<T>), CollectionError> {
        if !out.done {
            return Err(CollectionError::Invalid(format!(
                "list {}: {what} out of range (length {})",
                self.name(),
                out.len
            )));
        }
        Ok((v, out.value.as_deref().map(dec).transpose()?))
    }

    /// Append `item`. Returns the version.
    pub async fn push_back(&self, item: &T) -> Result<u64, CollectionError> {
        Ok(self.run(ListCommand::PushBack(vec![enc(item)?])).await?.0)
    }

    /// Append every item in one write. Returns the version.
    pub async fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<u64, CollectionError> {
        let items = items
            .into_iter()
            .map(|i| enc(&i))
            .collect::<Result<_, _>>()?;
        Ok(self.run(ListCommand::PushBack(items)).await?.0)
    }

    /// Put `item` first. Returns the version.
    pub async fn push_front(&self, item: &T) -> Result<u64, CollectionError> {
        Ok(self.run(ListCommand::PushFront(enc(item)?)).await?.0)
    }

    /// Remove the last element. Returns the version and the element.
    pub async fn pop_back(&self) -> Result<(u64, Option<T>), CollectionError> {
        let r = self.run(ListCommand::PopBack).await?;
        self.checked(r, "pop")
    }

    /// Remove the first element. Returns the version and the element.
    pub async fn pop_front(&self) -> Result<(u64, Option<T>), CollectionError> {
        let r = self.run(ListCommand::PopFront).await?;
        self.checked(r, "pop")
    }

    /// Insert `item` at `index` (at most the length). Returns the version.
    pub async fn insert(&self, index: u64, item: &T) -> Result<u64, CollectionError> {
        let r = self.run(ListCommand::InsertAt(index, enc(item)?)).await?;
        Ok(self.checked(r, "insert position")?.0)
    }

    /// Remove the element at `index`. Returns the version and the element.
    pub async fn remove(&self, index: u64) -> Result<(u64, T), CollectionError> {
        let r = self.run(ListCommand::RemoveAt(index)).await?;
        match self.checked(r, "index")? {
            (v, Some(item)) => Ok((v, item)),
            (_, None) => Err(CollectionError::Invalid("list: nothing removed".into())),
        }
    }

    /// Replace the element at `index`. Returns the version and the old one.
    pub async fn set(&self, index: u64, item: &T) -> Result<(u64, Option<T>), CollectionError> {
        let r = self.run(ListCommand::Set(index, enc(item)?)).await?;
        self.checked(r, "index")
    }

    /// Swap the elements at `a` and `b`. Returns the version.
    pub async fn swap(&self, a: u64, b: u64) -> Result<u64, CollectionError> {
        let r = self.run(ListCommand::Swap(a, b)).await?;
        Ok(self.checked(r, "index")?.0)
    }

    /// Keep the first `len` elements. Returns the version.
    pub async fn truncate(&self, len: u64) -> Result<u64, CollectionError> {
        Ok(self.run(ListCommand::Truncate(len)).await?.0)
    }

    /// Remove everything. Returns the version.
    pub async fn clear(&self) -> Result<u64, CollectionError> {
        Ok(self.run(ListCommand::Clear).await?.0)
    }

    /// The element at `index`, at the given consistency.
    pub async fn get(
        &self,
        index: u64,
        consistency: Consistency,
    ) -> Result<Option<T>, CollectionError> {
        let mut rows = self
            .replica
            .read(&ListQuery::Get(index), consistency)
            .await?;
        rows.pop().as_deref().map(dec).transpose()
    }

    /// The length, at the given consistency.
    pub async fn len(&self, consistency: Consistency) -> Result<u64, CollectionError> {
        let rows = self.replica.read(&ListQuery::Len, consistency).await?;
        let b: [u8; 8] = rows
            .first()
            .and_then(|b| b.as_slice().try_into().ok())
            .ok_or_else(|| CollectionError::Encoding("bad length".into()))?;
        Ok(u64::from_be_bytes(b))
    }

    /// Up to `limit` elements from `from`, at the given consistency.
    pub async fn range(
        &self,
        from: u64,
        limit: usize,
        consistency: Consistency,
    ) -> Result<Vec<T>, CollectionError> {
        let rows = self
            .replica
            .read(
                &ListQuery::Range(from, limit.min(MAX_PAGE) as u32),
                consistency,
            )
            .await?;
        rows.iter().map(|b| dec(b)).collect()
    }
}
