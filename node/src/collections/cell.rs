//! `Cell<T>` (one replicated value) and `Once<T>` (a value written at most
//! once).

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::codec::{dec, enc};
use super::error::CollectionError;
use super::replica::{collection_common, Collections, Replica};
use crate::discovery::CollectionRole;
use crate::groups::{Consistency, ReadTables, TableError, TableMachine, TableRead, Tables};

const CELL: u8 = 0;
const KEY: &[u8] = b"value";

/// A write to a cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CellCommand {
    /// Set the value (`None`: clear it).
    Set(Option<Vec<u8>>),
    /// Set the value only if none was ever set (a `Once`); answers whether
    /// this write set it.
    SetOnce(Vec<u8>),
    /// Set `new` if the value is `current` (`None`: empty).
    CompareExchange(Option<Vec<u8>>, Option<Vec<u8>>),
}

/// What a cell write did: whether it wrote, and the value before.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellOutcome {
    /// Whether the write happened.
    pub done: bool,
    /// The value before.
    pub previous: Option<Vec<u8>>,
}

/// The cell's table machine.
pub struct CellMachine;

impl TableMachine for CellMachine {
    type Command = CellCommand;
    type Output = CellOutcome;
    type Query = ();
    type QueryOutput = Option<(u64, Vec<u8>)>;

    fn apply(t: &mut Tables<'_>, c: CellCommand) -> Result<CellOutcome, TableError> {
        let before = t.get(CELL, KEY)?;
        let previous = before.as_ref().map(|b| b[8.min(b.len())..].to_vec());
        let (done, new) = match c {
            CellCommand::Set(v) => (true, Some(v)),
            CellCommand::SetOnce(v) => (before.is_none(), before.is_none().then_some(Some(v))),
            CellCommand::CompareExchange(current, new) => {
                let ok = previous == current;
                (ok, ok.then_some(new))
            }
        };
        match new {
            Some(Some(v)) => {
                let mut stored = t.index().to_be_bytes().to_vec();
                stored.extend_from_slice(&v);
                t.insert(CELL, KEY, &stored)?;
            }
            Some(None) => {
                t.remove(CELL, KEY)?;
            }
            None => {}
        }
        Ok(CellOutcome { done, previous })
    }

    fn query(t: &ReadTables, _: &()) -> Result<Option<(u64, Vec<u8>)>, TableError> {
        t.get(CELL, KEY)?
            .map(|b| {
                if b.len() < 8 {
                    return Err(TableError("cell shorter than its version".into()));
                }
                let mut v = [0u8; 8];
                v.copy_from_slice(&b[..8]);
                Ok((u64::from_be_bytes(v), b[8..].to_vec()))
            })
            .transpose()
    }
}

macro_rules! cell_common {
    ($ty:ident) => {
        impl<T> Clone for $ty<T> {
            fn clone(&self) -> Self {
                $ty {
                    replica: self.replica.clone(),
                    _t: PhantomData,
                }
            }
        }

        impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> $ty<T> {
            collection_common!();

            /// Open it as a writer (ticket: `write`).
            pub async fn writer(c: &Collections, name: &str) -> Result<Self, CollectionError> {
                Self::open(c, name, CollectionRole::Writer).await
            }

            /// Open it as a reader (ticket: `read`).
            pub async fn reader(c: &Collections, name: &str) -> Result<Self, CollectionError> {
                Self::open(c, name, CollectionRole::Reader).await
            }

            async fn open(
                c: &Collections,
                name: &str,
                role: CollectionRole,
            ) -> Result<Self, CollectionError> {
                let config = Collections::group_config(name, role);
                Ok($ty {
                    replica: c.open(name, role, config).await?,
                    _t: PhantomData,
                })
            }

            /// The value and its version, at the given consistency.
            pub async fn get_versioned(
                &self,
                consistency: Consistency,
            ) -> Result<Option<(T, u64)>, CollectionError> {
                match self.replica.read(&(), consistency).await? {
                    Some((version, b)) => Ok(Some((dec(&b)?, version))),
                    None => Ok(None),
                }
            }

            /// The value on this replica.
            pub async fn get(&self) -> Result<Option<T>, CollectionError> {
                Ok(self
                    .get_versioned(Consistency::Local)
                    .await?
                    .map(|(v, _)| v))
            }

            /// Until the value is set on this replica; returns it.
            pub async fn await_value(&self) -> Result<T, CollectionError> {
                let b = self.replica.await_local(&(), |a| a.map(|(_, b)| b)).await?;
                dec(&b)
            }
        }
    };
}

/// One replicated value of type `T`.
pub struct Cell<T> {
    pub(crate) replica: Replica<CellMachine>,
    _t: PhantomData<fn() -> T>,
}

cell_common!(Cell);

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Cell<T> {
    /// Set the value. Returns the version and the value before.
    pub async fn set(&self, value: &T) -> Result<(u64, Option<T>), CollectionError> {
        let (v, out) = self
            .replica
            .write(CellCommand::Set(Some(enc(value)?)))
            .await?;
        Ok((v, out.previous.as_deref().map(dec).transpose()?))
    }

    /// Clear the value. Returns the version and the value before.
    pub async fn clear(&self) -> Result<(u64, Option<T>), CollectionError> {
        let (v, out) = self.replica.write(CellCommand::Set(None)).await?;
        Ok((v, out.previous.as_deref().map(dec).transpose()?))
    }

    /// Set `new` (clear with `None`) if the value is `current` (`None`:
    /// empty). `Ok(version)` when swapped, `Err(actual value)` otherwise.
    pub async fn compare_exchange(
        &self,
        current: Option<&T>,
        new: Option<&T>,
    ) -> Result<Result<u64, Option<T>>, CollectionError> {
        let cmd =
            CellCommand::CompareExchange(current.map(enc).transpose()?, new.map(enc).transpose()?);
        let (v, out) = self.replica.write(cmd).await?;
        Ok(if out.done {
            Ok(v)
        } else {
            Err(out.previous.as_deref().map(dec).transpose()?)
        })
    }
}

/// A replicated value written at most once: the first write wins, on every
/// replica.
pub struct Once<T> {
    pub(crate) replica: Replica<CellMachine>,
    _t: PhantomData<fn() -> T>,
}

cell_common!(Once);

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Once<T> {
    /// Write `value` if nothing was written before. `Ok(version)` when this
    /// write won; `Err(the value that was there)` otherwise.
    pub async fn set(&self, value: &T) -> Result<Result<u64, T>, CollectionError> {
        let (v, out) = self
            .replica
            .write(CellCommand::SetOnce(enc(value)?))
            .await?;
        if out.done {
            return Ok(Ok(v));
        }
        match out.previous {
            Some(b) => Ok(Err(dec(&b)?)),
            None => Err(CollectionError::Encoding(
                "once: refused without a value".into(),
            )),
        }
    }
}
