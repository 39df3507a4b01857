//! Intent-addressed identifiers.
//!
//! Every identifier is 32 bytes. Those named by people ([`NetworkId`],
//! [`StreamId`], [`GroupId`], [`StoreId`], [`FunctionId`], [`Tag`]) are
//! blake3 `derive_key` outputs of the name under a context string of their own
//! kind, so the same name gives the same id on every node, and the same name
//! gives unrelated ids across kinds (a stream and a group both called `orders`
//! never collide). A [`NodeId`] is derived from the node's TLS key instead
//! (see `tessella-attestation`).
//!
//! | kind           | derived from            | blake3 `derive_key` context |
//! |----------------|-------------------------|-----------------------------|
//! | [`NodeId`]     | SPKI DER of the TLS key | `tessella node id v1`       |
//! | [`NetworkId`]  | network name            | `tessella network id v1`    |
//! | [`StreamId`]   | stream name             | `tessella stream id v1`     |
//! | [`GroupId`]    | group name              | `tessella group id v1`      |
//! | [`StoreId`]    | collection name         | `tessella store id v1`      |
//! | [`FunctionId`] | function name           | `tessella function id v1`   |
//! | [`Tag`]        | tag name                | `tessella tag v1`           |
//!
//! A stream's (or function's) id comes from its declared name, never from a
//! Rust type name.
//!
//! Text form: 64 lowercase hex digits (`Display`, `FromStr`); `Debug` shows the
//! kind and the first 16 digits. Serde: a hex string in human-readable formats
//! (JSON, TOML), 32 raw bytes in binary ones (postcard frames). Deserializing
//! from a binary format also accepts the 64-digit hex form, so values written by
//! the attestation crate's `Serialize` (always hex) still decode.
//!
//! [`NodeId`] and [`NetworkId`] live in `tessella-attestation`, which only
//! implements `Serialize` for them; fields of those types use
//! `#[serde(with = "crate::id::hex32")]` (or [`hex32::option`] /
//! [`hex32::vec`]) to get both directions.

use std::fmt;
use std::str::FromStr;

pub use tessella_attestation::identity::{NetworkId, NodeId};

/// Why a text identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseIdError {
    /// The text is not 64 characters long.
    #[error("{kind}: expected 64 hex digits, found {len} characters")]
    Length {
        /// Which identifier kind was being parsed.
        kind: &'static str,
        /// How many characters the text had.
        len: usize,
    },
    /// A character is not a hex digit.
    #[error("{kind}: {ch:?} at position {index} is not a hex digit")]
    Character {
        /// Which identifier kind was being parsed.
        kind: &'static str,
        /// The offending character (its first byte, for non-ASCII text).
        ch: char,
        /// Byte position of the character.
        index: usize,
    },
}

/// Parses exactly 64 hex digits (either case) into 32 bytes.
fn parse_hex32(kind: &'static str, s: &str) -> Result<[u8; 32], ParseIdError> {
    if s.len() != 64 {
        return Err(ParseIdError::Length {
            kind,
            len: s.chars().count(),
        });
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|e| match e {
        hex::FromHexError::InvalidHexCharacter { c, index } => {
            ParseIdError::Character { kind, ch: c, index }
        }
        // Length was checked above; keep a typed answer anyway.
        _ => ParseIdError::Length {
            kind,
            len: s.chars().count(),
        },
    })?;
    Ok(out)
}

/// A 32-byte identifier: the common ground of every id kind, used by [`hex32`].
pub trait RawId: Sized {
    /// Name of the kind, for error messages (`"stream id"`).
    const KIND: &'static str;
    /// The identifier's bytes.
    fn to_raw(&self) -> [u8; 32];
    /// The identifier with these bytes.
    fn from_raw(raw: [u8; 32]) -> Self;
}

impl RawId for [u8; 32] {
    const KIND: &'static str = "32-byte value";
    fn to_raw(&self) -> [u8; 32] {
        *self
    }
    fn from_raw(raw: [u8; 32]) -> Self {
        raw
    }
}

impl RawId for NodeId {
    const KIND: &'static str = "node id";
    fn to_raw(&self) -> [u8; 32] {
        self.0
    }
    fn from_raw(raw: [u8; 32]) -> Self {
        NodeId(raw)
    }
}

impl RawId for NetworkId {
    const KIND: &'static str = "network id";
    fn to_raw(&self) -> [u8; 32] {
        self.0
    }
    fn from_raw(raw: [u8; 32]) -> Self {
        NetworkId(raw)
    }
}

macro_rules! named_id {
    ($(#[$doc:meta])* $t:ident, $kind:literal, $context:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $t(pub [u8; 32]);

        impl $t {
            /// The `derive_key` context string of this kind.
            pub const CONTEXT: &'static str = $context;

            /// The id of the one called `name` (same name, same id, on every node).
            pub fn from_name(name: &str) -> $t {
                $t(blake3::derive_key(Self::CONTEXT, name.as_bytes()))
            }

            /// The id's bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl RawId for $t {
            const KIND: &'static str = $kind;
            fn to_raw(&self) -> [u8; 32] {
                self.0
            }
            fn from_raw(raw: [u8; 32]) -> Self {
                $t(raw)
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($t), &hex::encode(&self.0[..8]))
            }
        }

        impl FromStr for $t {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex32($kind, s).map($t)
            }
        }

        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                hex32::serialize(self, s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                hex32::deserialize(d)
            }
        }
    };
}

named_id!(
    /// A typed stream, named by its declared name (never a Rust type name).
    StreamId,
    "stream id",
    "tessella stream id v1"
);
named_id!(
    /// A Raft group.
    GroupId,
    "group id",
    "tessella group id v1"
);
named_id!(
    /// A replicated collection (map, vec, set, cell, ...).
    StoreId,
    "store id",
    "tessella store id v1"
);
named_id!(
    /// A function (typed request/response) served by any number of nodes,
    /// named by its declared name (never a Rust type name).
    FunctionId,
    "function id",
    "tessella function id v1"
);
named_id!(
    /// A node tag (`gpu`, `region-eu`), advertised in peer records and used in
    /// subscription predicates.
    Tag,
    "tag",
    "tessella tag v1"
);

/// Serde for any [`RawId`]: hex in human-readable formats, bytes in binary ones.
///
/// Use on fields whose type has no `Deserialize` of its own:
///
/// ```
/// use tessella_node::id::NodeId;
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Record {
///     #[serde(with = "tessella_node::id::hex32")]
///     node: NodeId,
///     #[serde(with = "tessella_node::id::hex32::vec")]
///     neighbours: Vec<NodeId>,
/// }
/// ```
pub mod hex32 {
    use super::{parse_hex32, RawId};
    use serde::de::{self, Deserializer, Visitor};
    use serde::Serializer;
    use std::fmt;
    use std::marker::PhantomData;

    /// Serializes `id` as 64 hex digits (human-readable) or 32 bytes (binary).
    pub fn serialize<T: RawId, S: Serializer>(id: &T, s: S) -> Result<S::Ok, S::Error> {
        let raw = id.to_raw();
        if s.is_human_readable() {
            let mut buf = [0u8; 64];
            // Cannot fail: the buffer is exactly twice the input.
            hex::encode_to_slice(raw, &mut buf).map_err(serde::ser::Error::custom)?;
            let text = std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?;
            s.serialize_str(text)
        } else {
            s.serialize_bytes(&raw)
        }
    }

    /// Deserializes what [`serialize`] wrote (and, in binary formats, the hex form too).
    pub fn deserialize<'de, T: RawId, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(IdVisitor(PhantomData))
        } else {
            d.deserialize_bytes(IdVisitor(PhantomData))
        }
    }

    struct IdVisitor<T>(PhantomData<T>);

    impl<T: RawId> Visitor<'_> for IdVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a {} (64 hex digits or 32 bytes)", T::KIND)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            parse_hex32(T::KIND, v).map(T::from_raw).map_err(E::custom)
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<T, E> {
            match v.len() {
                32 => {
                    let mut raw = [0u8; 32];
                    raw.copy_from_slice(v);
                    Ok(T::from_raw(raw))
                }
                64 => match std::str::from_utf8(v) {
                    Ok(text) => self.visit_str(text),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Bytes(v), &self)),
                },
                _ => Err(E::invalid_length(v.len(), &self)),
            }
        }
    }

    /// One id, so sequences and options can reuse [`serialize`] / [`deserialize`].
    struct Wrap<T>(T);

    impl<T: RawId> serde::Serialize for Wrap<&T> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize(self.0, s)
        }
    }

    impl<'de, T: RawId> serde::Deserialize<'de> for Wrap<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            deserialize(d).map(Wrap)
        }
    }

    /// `#[serde(with = "hex32::option")]` for `Option<Id>`.
    pub mod option {
        use super::{RawId, Wrap};
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        /// Serializes an optional id.
        pub fn serialize<T: RawId, S: Serializer>(id: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
            id.as_ref().map(Wrap).serialize(s)
        }

        /// Deserializes an optional id.
        pub fn deserialize<'de, T: RawId, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<T>, D::Error> {
            Ok(Option::<Wrap<T>>::deserialize(d)?.map(|w| w.0))
        }
    }

    /// `#[serde(with = "hex32::vec")]` for `Vec<Id>`.
    pub mod vec {
        use super::{RawId, Wrap};
        use serde::{Deserialize, Deserializer, Serializer};

        /// Serializes a list of ids.
        pub fn serialize<T: RawId, S: Serializer>(ids: &[T], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(ids.iter().map(Wrap))
        }

        /// Deserializes a list of ids.
        pub fn deserialize<'de, T: RawId, D: Deserializer<'de>>(d: D) -> Result<Vec<T>, D::Error> {
            Ok(Vec::<Wrap<T>>::deserialize(d)?
                .into_iter()
                .map(|w| w.0)
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[test]
    fn same_name_same_id() {
        assert_eq!(StreamId::from_name("orders"), StreamId::from_name("orders"));
        assert_ne!(StreamId::from_name("orders"), StreamId::from_name("order"));
        assert_eq!(Tag::from_name("gpu"), Tag::from_name("gpu"));
    }

    #[test]
    fn kinds_differ_for_the_same_name() {
        let name = "orders";
        let all = [
            StreamId::from_name(name).0,
            GroupId::from_name(name).0,
            StoreId::from_name(name).0,
            FunctionId::from_name(name).0,
            Tag::from_name(name).0,
            NetworkId::from_name(name).0,
            NodeId::from_spki(name.as_bytes()).0,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn golden_values_pin_the_contexts() {
        // Produced by this module (blake3 1.8 `derive_key(CONTEXT, b"orders")`)
        // on first implementation. These ids are on the wire and in stores: a
        // change here is a protocol change, not a refactor.
        let golden = [
            (
                StreamId::from_name("orders").to_string(),
                "01da5e1fb3825d78093646db110ed2aadf2f17b11d88d0e792ea03d67070213e",
            ),
            (
                GroupId::from_name("orders").to_string(),
                "5bf2814806f150fe3b144d724d90123c8f241abeeacb697e81c83eb20b519a4e",
            ),
            (
                StoreId::from_name("orders").to_string(),
                "7a87dec5b8fcf0ccfec16200885f344c5bcdc17e82c54b072711ec81e04753a3",
            ),
            (
                FunctionId::from_name("orders").to_string(),
                "a575db945512eab6180d98b78d0e69cd16252b5aa828b5aefe22efadf1028bc3",
            ),
            (
                Tag::from_name("orders").to_string(),
                "7bee0ef07b482fd5fc6b0fefadbae1782521d2a59542f797839241726d86b6d2",
            ),
        ];
        for (got, want) in golden {
            assert_eq!(got, want);
        }
        assert_eq!(
            StreamId::from_name("orders").0,
            blake3::derive_key("tessella stream id v1", b"orders")
        );
        assert_eq!(
            FunctionId::from_name("orders").0,
            blake3::derive_key("tessella function id v1", b"orders")
        );
    }

    #[test]
    fn hex_round_trip_and_short_debug() {
        let id = GroupId::from_name("ledger");
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(text.parse::<GroupId>(), Ok(id));
        assert_eq!(text.to_uppercase().parse::<GroupId>(), Ok(id));
        assert_eq!(format!("{id:?}"), format!("GroupId({})", &text[..16]));
    }

    #[test]
    fn bad_hex_refused() {
        assert_eq!(
            "abc".parse::<StoreId>(),
            Err(ParseIdError::Length {
                kind: "store id",
                len: 3
            })
        );
        let long = "0".repeat(66);
        assert!(matches!(
            long.parse::<Tag>(),
            Err(ParseIdError::Length { len: 66, .. })
        ));
        let mut bad = "0".repeat(64);
        bad.replace_range(10..11, "g");
        let err = bad.parse::<StreamId>().expect_err("g is not hex");
        assert_eq!(
            err,
            ParseIdError::Character {
                kind: "stream id",
                ch: 'g',
                index: 10
            }
        );
        assert_eq!(
            err.to_string(),
            "stream id: 'g' at position 10 is not a hex digit"
        );
        // No trimming: whitespace is refused.
        let spaced = format!(" {}", "0".repeat(63));
        assert!(spaced.parse::<StreamId>().is_err());
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        stream: StreamId,
        tags: Vec<Tag>,
        #[serde(with = "hex32")]
        node: NodeId,
        #[serde(with = "hex32::option")]
        network: Option<NetworkId>,
        #[serde(with = "hex32::vec")]
        neighbours: Vec<NodeId>,
    }

    fn record() -> Record {
        Record {
            stream: StreamId::from_name("s"),
            tags: vec![Tag::from_name("a"), Tag::from_name("b")],
            node: NodeId::from_spki(b"key"),
            network: Some(NetworkId::from_name("net")),
            neighbours: vec![NodeId::from_spki(b"k1"), NodeId::from_spki(b"k2")],
        }
    }

    #[test]
    fn serde_json_uses_hex() {
        let r = record();
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["stream"], r.stream.to_string());
        assert_eq!(json["node"], r.node.to_string());
        assert_eq!(json["network"], NetworkId::from_name("net").to_string());
        let back: Record = serde_json::from_value(json).expect("back");
        assert_eq!(back, r);

        let none = Record {
            network: None,
            ..record()
        };
        let text = serde_json::to_string(&none).expect("json");
        assert_eq!(serde_json::from_str::<Record>(&text).expect("back"), none);

        let bad = serde_json::json!({"stream": "zz", "tags": [], "node": "00",
            "network": null, "neighbours": []});
        let err = serde_json::from_value::<Record>(bad).expect_err("bad hex");
        assert!(err.to_string().contains("stream id"), "{err}");
    }

    #[test]
    fn postcard_is_compact_and_round_trips() {
        let id = StreamId::from_name("s");
        let bytes = postcard::to_stdvec(&id).expect("postcard");
        assert_eq!(bytes.len(), 33, "length byte + 32 raw bytes");
        assert_eq!(&bytes[1..], &id.0);
        assert_eq!(postcard::from_bytes::<StreamId>(&bytes).expect("back"), id);

        let r = record();
        let bytes = postcard::to_stdvec(&r).expect("postcard");
        assert_eq!(postcard::from_bytes::<Record>(&bytes).expect("back"), r);
    }

    #[test]
    fn binary_formats_agree_with_the_attestation_encoding() {
        // NodeId's own Serialize (in tessella-attestation) writes bytes in
        // binary formats; `hex32` reads them.
        #[derive(Serialize)]
        struct Plain {
            node: NodeId,
        }
        #[derive(Deserialize)]
        struct Ours {
            #[serde(with = "hex32")]
            node: NodeId,
        }
        let node = NodeId::from_spki(b"key");
        let bytes = postcard::to_stdvec(&Plain { node }).expect("postcard");
        let ours: Ours = postcard::from_bytes(&bytes).expect("decode attestation form");
        assert_eq!(ours.node, node);
        // A wrong-length byte string is refused.
        let short = serde_bytes_like(&[1u8; 31]);
        assert!(postcard::from_bytes::<StreamId>(&short).is_err());
    }

    /// A byte string as postcard writes `serialize_bytes` (varint length + bytes).
    fn serde_bytes_like(b: &[u8]) -> Vec<u8> {
        let mut out = vec![u8::try_from(b.len()).expect("short")];
        out.extend_from_slice(b);
        out
    }
}
