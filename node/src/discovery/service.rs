//! Typed service advertisements: what a node offers, by id, and its role in it.
//!
//! A [`Service`] names a stream, group, collection or function by its 32-byte
//! id (never by a free-form string, so a record cannot smuggle text to
//! operators' dashboards) together with the node's role in it. Peers use them
//! to find producers of a stream, voters of a group, and servers of a
//! function without asking every node.
//!
//! ```text
//! Service (postcard, 34 B)
//!   kind   varint   0 Stream | 1 Group | 2 Collection | 3 Function
//!   id     32 B     StreamId | GroupId | StoreId | FunctionId, raw bytes
//!   role   varint   Stream: 0 Producer | 1 Consumer
//!                   Group: 0 Voter | 1 Learner
//!                   Collection: 0 Writer | 1 Reader
//!                   Function: 0 Server
//! ```
//!
//! A kind or role unknown to the decoder makes the whole record malformed, so
//! adding one is a protocol change: it needs a new record version (signing
//! domain), not just a new variant. In human-readable formats (JSON) ids are
//! hex strings.
//!
//! Advertising a service is a claim, not a permission: whoever acts on it
//! still checks the node's ticket grants when it connects.

use serde::{Deserialize, Serialize};

use super::record::wire_id;
use crate::id::{FunctionId, GroupId, StoreId, StreamId};

/// A service a node advertises: what it is, by id, and the node's role in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// A typed stream.
    Stream {
        /// The stream.
        #[serde(with = "wire_id::fixed")]
        id: StreamId,
        /// Whether the node produces to it or consumes from it.
        role: StreamRole,
    },
    /// A Raft group.
    Group {
        /// The group.
        #[serde(with = "wire_id::fixed")]
        id: GroupId,
        /// Whether the node votes or only replicates.
        role: GroupRole,
    },
    /// A replicated collection.
    Collection {
        /// The collection's store.
        #[serde(with = "wire_id::fixed")]
        id: StoreId,
        /// Whether the node writes or only reads.
        role: CollectionRole,
    },
    /// A request/response function.
    Function {
        /// The function.
        #[serde(with = "wire_id::fixed")]
        id: FunctionId,
        /// The node serves it.
        role: FunctionRole,
    },
}

/// A node's role in a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamRole {
    /// Sends items.
    Producer,
    /// Receives items.
    Consumer,
}

/// A node's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupRole {
    /// A voting member.
    Voter,
    /// A non-voting replica.
    Learner,
}

/// A node's role in a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectionRole {
    /// Writes (and reads).
    Writer,
    /// Only reads.
    Reader,
}

/// A node's role in a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionRole {
    /// Handles calls.
    Server,
}

impl Service {
    /// The kind of service, for rendering: `"stream"`, `"group"`,
    /// `"collection"` or `"function"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Service::Stream { .. } => "stream",
            Service::Group { .. } => "group",
            Service::Collection { .. } => "collection",
            Service::Function { .. } => "function",
        }
    }

    /// The node's role, for rendering: `"producer"`, `"consumer"`, `"voter"`,
    /// `"learner"`, `"writer"`, `"reader"` or `"server"`.
    pub fn role(&self) -> &'static str {
        match self {
            Service::Stream { role, .. } => role.as_str(),
            Service::Group { role, .. } => role.as_str(),
            Service::Collection { role, .. } => role.as_str(),
            Service::Function { role, .. } => role.as_str(),
        }
    }

    /// The service's id bytes, whatever its kind (`kind()` says which).
    pub fn id_bytes(&self) -> [u8; 32] {
        match self {
            Service::Stream { id, .. } => id.0,
            Service::Group { id, .. } => id.0,
            Service::Collection { id, .. } => id.0,
            Service::Function { id, .. } => id.0,
        }
    }
}

impl StreamRole {
    /// Lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamRole::Producer => "producer",
            StreamRole::Consumer => "consumer",
        }
    }
}

impl GroupRole {
    /// Lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupRole::Voter => "voter",
            GroupRole::Learner => "learner",
        }
    }
}

impl CollectionRole {
    /// Lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CollectionRole::Writer => "writer",
            CollectionRole::Reader => "reader",
        }
    }
}

impl FunctionRole {
    /// Lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionRole::Server => "server",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Service> {
        vec![
            Service::Stream {
                id: StreamId::from_name("orders"),
                role: StreamRole::Consumer,
            },
            Service::Group {
                id: GroupId::from_name("ledger"),
                role: GroupRole::Learner,
            },
            Service::Collection {
                id: StoreId::from_name("accounts"),
                role: CollectionRole::Writer,
            },
            Service::Function {
                id: FunctionId::from_name("price"),
                role: FunctionRole::Server,
            },
        ]
    }

    #[test]
    fn postcard_form_is_kind_raw_id_role() {
        for (kind, s) in all().into_iter().enumerate() {
            let bytes = postcard::to_allocvec(&s).expect("encodes");
            assert_eq!(bytes.len(), 34, "{s:?}");
            assert_eq!(usize::from(bytes[0]), kind);
            assert_eq!(bytes[1..33], s.id_bytes());
            assert_eq!(postcard::from_bytes::<Service>(&bytes), Ok(s));
        }
        // Unknown kind, unknown role, short id: refused, no panic.
        let mut bytes = postcard::to_allocvec(&all()[0]).expect("encodes");
        bytes[0] = 4;
        assert!(postcard::from_bytes::<Service>(&bytes).is_err());
        bytes[0] = 3;
        bytes[33] = 1;
        assert!(postcard::from_bytes::<Service>(&bytes).is_err());
        assert!(postcard::from_bytes::<Service>(&bytes[..20]).is_err());
    }

    #[test]
    fn json_shows_hex_ids_and_lowercase_names() {
        let s = all()[0];
        let json = serde_json::to_value(s).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"stream": {"id": StreamId::from_name("orders").to_string(),
                "role": "consumer"}})
        );
        assert_eq!(serde_json::from_value::<Service>(json).expect("back"), s);
        let rendered: Vec<(&str, &str)> = all().iter().map(|s| (s.kind(), s.role())).collect();
        assert_eq!(
            rendered,
            [
                ("stream", "consumer"),
                ("group", "learner"),
                ("collection", "writer"),
                ("function", "server")
            ]
        );
    }
}
