//! How collection keys, values and priorities become table bytes.
//!
//! Keys and values are postcard. Priorities and list positions need their
//! byte order to follow their numeric order, so they use [`Ordered`]: big
//! endian, with the sign bit flipped for signed integers.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::CollectionError;
use crate::groups::TableError;

/// Encode a key, value or command part.
pub fn encode<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, TableError> {
    postcard::to_stdvec(v).map_err(|e| TableError(format!("encode: {e}")))
}

/// Decode what [`encode`] made.
pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, TableError> {
    postcard::from_bytes(b).map_err(|e| TableError(format!("decode: {e}")))
}

/// [`encode`] for collection handles: failures are [`CollectionError::Encoding`].
pub(crate) fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, CollectionError> {
    encode(v).map_err(|e| CollectionError::Encoding(e.0))
}

/// [`decode`] for collection handles.
pub(crate) fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, CollectionError> {
    decode(b).map_err(|e| CollectionError::Encoding(e.0))
}

/// A value whose encoding sorts as the value does (priorities).
pub trait Ordered: Copy + Ord + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Bytes that sort as `self`.
    fn to_ordered(&self) -> Vec<u8>;
    /// The value back from [`Ordered::to_ordered`]'s bytes.
    fn from_ordered(b: &[u8]) -> Option<Self>;
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl Ordered for $t {
            fn to_ordered(&self) -> Vec<u8> {
                self.to_be_bytes().to_vec()
            }
            fn from_ordered(b: &[u8]) -> Option<Self> {
                Some(<$t>::from_be_bytes(b.try_into().ok()?))
            }
        }
    )*};
}

macro_rules! signed {
    ($($t:ty => $u:ty),*) => {$(
        impl Ordered for $t {
            fn to_ordered(&self) -> Vec<u8> {
                ((*self as $u) ^ (1 << (<$u>::BITS - 1))).to_be_bytes().to_vec()
            }
            fn from_ordered(b: &[u8]) -> Option<Self> {
                let u = <$u>::from_be_bytes(b.try_into().ok()?);
                Some((u ^ (1 << (<$u>::BITS - 1))) as $t)
            }
        }
    )*};
}

unsigned!(u8, u16, u32, u64, u128);
signed!(i8 => u8, i16 => u16, i32 => u32, i64 => u64, i128 => u128);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_bytes_sort_as_the_numbers() {
        let xs = [i64::MIN, -300, -1, 0, 1, 2, 255, 256, i64::MAX];
        for w in xs.windows(2) {
            assert!(w[0].to_ordered() < w[1].to_ordered(), "{w:?}");
        }
        for x in xs {
            assert_eq!(i64::from_ordered(&x.to_ordered()), Some(x));
        }
        let us = [0u32, 1, 255, 256, 65_536, u32::MAX];
        for w in us.windows(2) {
            assert!(w[0].to_ordered() < w[1].to_ordered());
        }
        assert_eq!(u32::from_ordered(&[1, 2]), None);
    }
}
