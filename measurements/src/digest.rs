//! Fixed-size register values and their hex form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 48-byte SHA-384 sized register value (MRTD, RTMR, MRCONFIGID, ...).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest48(pub [u8; 48]);

/// A hex string that is not the expected number of bytes or not hex at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HexError {
    /// The text is not valid hexadecimal.
    #[error("not valid hex: {0}")]
    Invalid(String),
    /// The value decodes to the wrong number of bytes.
    #[error("expected {expected} bytes ({} hex digits), got {actual} bytes", expected * 2)]
    Length {
        /// Bytes required.
        expected: usize,
        /// Bytes found.
        actual: usize,
    },
}

/// Decode hex into exactly `N` bytes, accepting an optional `0x` prefix and
/// surrounding whitespace.
pub(crate) fn decode_fixed<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    let t = text.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let bytes = hex::decode(t).map_err(|e| HexError::Invalid(e.to_string()))?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| HexError::Length {
        expected: N,
        actual: bytes.len(),
    })
}

impl Digest48 {
    /// The all-zero value, which an unused RTMR holds.
    pub const ZERO: Digest48 = Digest48([0; 48]);

    /// Lowercase hex, 96 digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for Digest48 {
    type Err = HexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_fixed::<48>(s).map(Digest48)
    }
}

impl fmt::Display for Digest48 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest48 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest48({})", self.to_hex())
    }
}

impl Serialize for Digest48 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest48 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An 8-byte field (TD attributes, XFAM) in the byte order of the quote,
/// written as 16 hex digits exactly as it appears in the report.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Bytes8(pub [u8; 8]);

impl Serialize for Bytes8 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes8 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        decode_fixed::<8>(&s)
            .map(Bytes8)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_prefix_and_whitespace() {
        let hex96 = "ab".repeat(48);
        let d: Digest48 = format!(" 0x{hex96}\n").parse().expect("valid");
        assert_eq!(d.0, [0xab; 48]);
        assert_eq!(d.to_hex(), hex96);
    }

    #[test]
    fn rejects_wrong_length_and_garbage() {
        assert_eq!(
            "abcd".parse::<Digest48>(),
            Err(HexError::Length {
                expected: 48,
                actual: 2
            })
        );
        assert!(matches!(
            "zz".repeat(48).parse::<Digest48>(),
            Err(HexError::Invalid(_))
        ));
    }
}
