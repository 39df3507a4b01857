//! The 4-byte header that opens every QUIC stream (layout in [`crate::wire`]).
//!
//! ```text
//! +--------+--------+---------+----------+
//! | 0x54   | family | version | reserved |
//! | 'T'    | u8     | u8      | 0x00     |
//! +--------+--------+---------+----------+
//! ```

use std::fmt;
use std::io;
use std::ops::RangeInclusive;

use tokio::io::{AsyncRead, AsyncWrite};

use super::io::{fill, write_all};
use super::CloseCode;

/// First byte of every stream header.
pub const MAGIC: u8 = b'T';

/// Length of a stream header in bytes.
pub const HEADER_LEN: usize = 4;

/// The protocol family a stream carries. One byte on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum StreamFamily {
    /// Admission: the ticket exchange right after the handshake.
    Control = 0,
    /// Peer records and push-pull gossip.
    Discovery = 1,
    /// Typed streams (producers and consumers).
    Streams = 2,
    /// Raft groups.
    Groups = 3,
    /// Replicated collections.
    Collections = 4,
    /// Functions (typed request/response).
    Functions = 5,
}

impl StreamFamily {
    /// Every family, in numeric order.
    pub const ALL: [StreamFamily; 6] = [
        StreamFamily::Control,
        StreamFamily::Discovery,
        StreamFamily::Streams,
        StreamFamily::Groups,
        StreamFamily::Collections,
        StreamFamily::Functions,
    ];

    /// The family's wire byte.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The family with this wire byte, if any.
    pub fn from_u8(byte: u8) -> Option<StreamFamily> {
        StreamFamily::ALL.into_iter().find(|f| f.as_u8() == byte)
    }

    /// Lowercase name, for logs and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            StreamFamily::Control => "control",
            StreamFamily::Discovery => "discovery",
            StreamFamily::Streams => "streams",
            StreamFamily::Groups => "groups",
            StreamFamily::Collections => "collections",
            StreamFamily::Functions => "functions",
        }
    }
}

impl fmt::Display for StreamFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a stream carries: its family and the family's protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamHeader {
    /// The protocol family.
    pub family: StreamFamily,
    /// The family's own protocol version.
    pub version: u8,
}

impl StreamHeader {
    /// The version every family speaks today.
    pub const CURRENT_VERSION: u8 = 1;

    /// A header for `family` at [`StreamHeader::CURRENT_VERSION`].
    pub const fn new(family: StreamFamily) -> StreamHeader {
        StreamHeader {
            family,
            version: Self::CURRENT_VERSION,
        }
    }

    /// A header for `family` at an explicit `version`.
    pub const fn with_version(family: StreamFamily, version: u8) -> StreamHeader {
        StreamHeader { family, version }
    }

    /// The header's 4 wire bytes.
    pub const fn encode(self) -> [u8; HEADER_LEN] {
        [MAGIC, self.family.as_u8(), self.version, 0]
    }

    /// Parses 4 wire bytes. The version is not judged here (see
    /// [`StreamHeader::check_version`]); the magic, family and reserved byte are.
    pub fn decode(bytes: [u8; HEADER_LEN]) -> Result<StreamHeader, WireError> {
        let [magic, family, version, reserved] = bytes;
        if magic != MAGIC {
            return Err(WireError::BadMagic { found: magic });
        }
        let family = StreamFamily::from_u8(family).ok_or(WireError::UnknownFamily { family })?;
        if reserved != 0 {
            return Err(WireError::Reserved { value: reserved });
        }
        Ok(StreamHeader { family, version })
    }

    /// Refuses a version outside what the family handler speaks.
    pub fn check_version(&self, supported: RangeInclusive<u8>) -> Result<(), WireError> {
        if supported.contains(&self.version) {
            Ok(())
        } else {
            Err(WireError::UnsupportedVersion {
                family: self.family,
                version: self.version,
                supported,
            })
        }
    }
}

/// Why a stream header was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The first byte is not `'T'`: the peer does not speak tessella streams.
    #[error("stream header: bad magic byte {found:#04x} (expected 0x54 'T')")]
    BadMagic {
        /// The byte received.
        found: u8,
    },
    /// The family byte names no known family.
    #[error("stream header: unknown stream family {family}")]
    UnknownFamily {
        /// The byte received.
        family: u8,
    },
    /// The reserved byte is not zero.
    #[error("stream header: reserved byte is {value:#04x}, must be 0")]
    Reserved {
        /// The byte received.
        value: u8,
    },
    /// The family handler does not speak the header's version.
    #[error("stream header: {family} version {version} is not supported (supported: {}..={})", supported.start(), supported.end())]
    UnsupportedVersion {
        /// The stream's family.
        family: StreamFamily,
        /// The version received.
        version: u8,
        /// The versions this node speaks for the family.
        supported: RangeInclusive<u8>,
    },
    /// The stream ended before the header was complete.
    #[error("stream header: stream ended after {got} of 4 bytes")]
    Truncated {
        /// Header bytes received before the end.
        got: usize,
    },
    /// Reading or writing the stream failed.
    #[error("stream header: {0}")]
    Io(#[from] io::Error),
}

impl WireError {
    /// The code to reset the stream (or close the connection) with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            WireError::BadMagic { .. }
            | WireError::Reserved { .. }
            | WireError::Truncated { .. } => CloseCode::ProtocolViolation,
            WireError::UnknownFamily { .. } => CloseCode::UnknownFamily,
            WireError::UnsupportedVersion { .. } => CloseCode::UnsupportedVersion,
            WireError::Io(_) => CloseCode::Internal,
        }
    }
}

/// Reads and decodes the header at the start of a stream.
///
/// Not cancel-safe: dropping the future mid-read loses the bytes read so far
/// (wrap the whole exchange in a timeout instead).
pub async fn read_header<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
) -> Result<StreamHeader, WireError> {
    let mut buf = [0u8; HEADER_LEN];
    let got = fill(r, &mut buf).await?;
    if got < HEADER_LEN {
        return Err(WireError::Truncated { got });
    }
    StreamHeader::decode(buf)
}

/// Writes `header` (does not flush: quinn sends without flushing; flush
/// buffered writers yourself).
pub async fn write_header<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    header: StreamHeader,
) -> Result<(), WireError> {
    write_all(w, &header.encode()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::io::pipe::{duplex, send, Trickle};
    use super::*;

    #[test]
    fn encode_decode_every_family() {
        for family in StreamFamily::ALL {
            let h = StreamHeader::new(family);
            assert_eq!(h.version, 1);
            let bytes = h.encode();
            assert_eq!(bytes, [b'T', family as u8, 1, 0]);
            assert_eq!(StreamHeader::decode(bytes).expect("decode"), h);
        }
        let h = StreamHeader::with_version(StreamFamily::Groups, 7);
        assert_eq!(StreamHeader::decode(h.encode()).expect("decode"), h);
        assert_eq!(StreamFamily::from_u8(2), Some(StreamFamily::Streams));
        assert_eq!(StreamFamily::from_u8(6), None);
    }

    #[test]
    fn family_numbers_are_stable() {
        assert_eq!(StreamFamily::Control.as_u8(), 0);
        assert_eq!(StreamFamily::Discovery.as_u8(), 1);
        assert_eq!(StreamFamily::Streams.as_u8(), 2);
        assert_eq!(StreamFamily::Groups.as_u8(), 3);
        assert_eq!(StreamFamily::Collections.as_u8(), 4);
        assert_eq!(StreamFamily::Functions.as_u8(), 5);
    }

    #[test]
    fn header_errors_are_typed() {
        let e = StreamHeader::decode([b'X', 0, 1, 0]).expect_err("magic");
        assert!(matches!(e, WireError::BadMagic { found: b'X' }));
        assert_eq!(e.close_code(), CloseCode::ProtocolViolation);

        let e = StreamHeader::decode([b'T', 200, 1, 0]).expect_err("family");
        assert!(matches!(e, WireError::UnknownFamily { family: 200 }));
        assert_eq!(e.close_code(), CloseCode::UnknownFamily);
        assert_eq!(e.to_string(), "stream header: unknown stream family 200");

        let e = StreamHeader::decode([b'T', 1, 1, 9]).expect_err("reserved");
        assert!(matches!(e, WireError::Reserved { value: 9 }));
        assert_eq!(e.close_code(), CloseCode::ProtocolViolation);

        let h = StreamHeader::with_version(StreamFamily::Discovery, 3);
        assert!(h.check_version(1..=3).is_ok());
        let e = h.check_version(1..=2).expect_err("version");
        assert_eq!(e.close_code(), CloseCode::UnsupportedVersion);
        assert_eq!(
            e.to_string(),
            "stream header: discovery version 3 is not supported (supported: 1..=2)"
        );
    }

    #[tokio::test]
    async fn header_over_a_pipe() {
        let (mut a, mut b) = duplex();
        let h = StreamHeader::new(StreamFamily::Discovery);
        write_header(&mut a, h).await.expect("write");
        assert_eq!(read_header(&mut b).await.expect("read"), h);
    }

    #[tokio::test]
    async fn header_errors_over_a_pipe() {
        // Truncated: the stream ends after two bytes.
        let (mut a, mut b) = duplex();
        send(&mut a, b"T\x01").await;
        drop(a);
        let e = read_header(&mut b).await.expect_err("truncated");
        assert!(matches!(e, WireError::Truncated { got: 2 }), "{e}");
        assert_eq!(e.close_code(), CloseCode::ProtocolViolation);

        // Empty stream.
        let (a, mut b) = duplex();
        drop(a);
        let e = read_header(&mut b).await.expect_err("empty");
        assert!(matches!(e, WireError::Truncated { got: 0 }));

        // Bytes arriving one at a time are reassembled.
        let (mut a, b) = duplex();
        let writer = tokio::spawn(async move {
            for byte in StreamHeader::new(StreamFamily::Collections).encode() {
                send(&mut a, &[byte]).await;
                tokio::task::yield_now().await;
            }
        });
        let h = read_header(&mut Trickle(b)).await.expect("read");
        assert_eq!(h.family, StreamFamily::Collections);
        writer.await.expect("writer");

        // Garbage that is long enough is judged by its content.
        let (mut a, mut b) = duplex();
        send(&mut a, b"GET / HTTP/1.1\r\n").await;
        assert!(matches!(
            read_header(&mut b).await,
            Err(WireError::BadMagic { found: b'G' })
        ));
    }
}
