//! Storage tests: openraft's conformance suite against the redb store, and
//! durability across reopening the file.

use std::collections::BTreeMap;

use openraft::testing::{StoreBuilder, Suite};

use super::machine::{MachineStore, StateMachine};
use super::store::{GroupDb, LogStore};
use super::types::{GroupTypes, StorageError};
use crate::id::GroupId;

/// A map of registers: the state machine the tests use.
#[derive(Default)]
pub(crate) struct Registers(pub BTreeMap<u64, u64>);

impl StateMachine for Registers {
    type Command = (u64, u64);
    type Output = Option<u64>;
    type Query = u64;
    type QueryOutput = Option<u64>;

    fn apply(&mut self, (k, v): (u64, u64)) -> Option<u64> {
        self.0.insert(k, v)
    }
    fn query(&self, k: &u64) -> Option<u64> {
        self.0.get(k).copied()
    }
    fn snapshot(&self) -> Vec<u8> {
        postcard::to_stdvec(&self.0).unwrap_or_default()
    }
    fn restore(&mut self, b: &[u8]) -> Result<(), String> {
        self.0 = postcard::from_bytes(b).map_err(|e| e.to_string())?;
        Ok(())
    }
}

struct Fresh;

impl StoreBuilder<GroupTypes, LogStore, MachineStore<Registers>, ()> for Fresh {
    async fn build(&self) -> Result<((), LogStore, MachineStore<Registers>), StorageError> {
        let db = GroupDb::in_memory().map_err(|e| {
            StorageError::from(openraft::StorageIOError::write(openraft::AnyError::error(
                e.to_string(),
            )))
        })?;
        let g = GroupId::from_name("suite");
        Ok(((), LogStore::new(db.clone(), g), MachineStore::open(db, g)?))
    }
}

#[test]
fn openraft_storage_suite_passes_on_redb() -> Result<(), StorageError> {
    Suite::test_all(Fresh)
}
