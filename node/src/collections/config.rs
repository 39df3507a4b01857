//! Collections declared in the node config (`[[collections]]`), served
//! over the admin API as key-value stores.

use std::collections::BTreeMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use super::map::Map;

/// The kinds of collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectionKind {
    /// [`Map`].
    Map,
    /// [`List`](super::List) (mosaik's `Vec`).
    Vec,
    /// [`Set`](super::Set).
    Set,
    /// [`Cell`](super::Cell).
    Cell,
    /// [`Once`](super::Once).
    Once,
    /// [`PriorityQueue`](super::PriorityQueue).
    PriorityQueue,
}

impl CollectionKind {
    /// Lowercase name, as in config and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CollectionKind::Map => "map",
            CollectionKind::Vec => "vec",
            CollectionKind::Set => "set",
            CollectionKind::Cell => "cell",
            CollectionKind::Once => "once",
            CollectionKind::PriorityQueue => "priority_queue",
        }
    }
}

/// A collection the node config declares: the node serves it (as a
/// writer) from start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionDecl {
    /// Its name (tickets grant `write` / `read` on it).
    pub name: String,
    /// Its kind. Only `map` is served over the admin API (JSON string keys,
    /// JSON values).
    pub kind: CollectionKind,
    /// How many writers vote (default 3; 1 for a single node).
    #[serde(default = "default_voters")]
    pub voters: usize,
}

fn default_voters() -> usize {
    3
}

impl CollectionDecl {
    /// Check a declaration: `Err` says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.name.is_empty()
            || self.name.len() > 128
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(format!(
                "collection name {:?}: 1 to 128 of A-Z a-z 0-9 - _ .",
                self.name
            ));
        }
        if self.voters == 0 || self.voters > 9 {
            return Err(format!(
                "collection {:?}: voters must be 1 to 9, not {}",
                self.name, self.voters
            ));
        }
        if self.kind != CollectionKind::Map {
            return Err(format!(
                "collection {:?}: kind {} cannot be declared in the config yet (only map, served as a key-value store)",
                self.name,
                self.kind.as_str()
            ));
        }
        Ok(())
    }
}

/// The key-value maps the node serves over the admin API: JSON text values
/// under string keys.
pub type KvMap = Map<String, String>;

/// The declared collections this node runs, by name: `None` while the
/// map is not open yet (the node's ticket does not grant `write` on it yet).
#[derive(Default)]
pub struct Declared {
    maps: RwLock<BTreeMap<String, Option<KvMap>>>,
}

impl Declared {
    pub(crate) fn declare(&self, name: &str) {
        self.maps
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_insert(None);
    }

    pub(crate) fn opened(&self, name: &str, map: KvMap) {
        self.maps
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), Some(map));
    }

    /// The declared map called `name`: `None` if not declared, `Some(None)`
    /// while it is not open yet.
    pub fn get(&self, name: &str) -> Option<Option<KvMap>> {
        self.maps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Every declared map that is open, by name.
    pub fn all(&self) -> Vec<(String, KvMap)> {
        self.maps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect()
    }
}
