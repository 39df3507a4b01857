//! Wire conventions shared by every protocol a node speaks.
//!
//! One QUIC connection per peer pair (TLS 1.3, mutual RA-TLS), many streams on
//! it. ALPN is negotiated per connection, so the single ALPN [`ALPN`]
//! (`tessella/1`) names the protocol version; each stream then says which
//! protocol family it carries in a 4-byte [`StreamHeader`], and carries
//! length-prefixed postcard [`frame`]s after it.
//!
//! ```text
//! connection   QUIC + TLS 1.3, ALPN "tessella/1", mutual RA-TLS certificates
//!  ├── bi  stream   header(Control, 1)   frame frame ...   admission (tickets)
//!  ├── uni stream   header(Discovery, 1) frame frame ...   gossip
//!  └── ...          header(<family>, v)  frame frame ...
//!
//! stream header (once, at the start of every bi or uni stream, in each direction
//! that sends data; the opener writes it first)
//!   byte  0        1         2          3
//!        +--------+---------+----------+----------+
//!        | 'T'    | family  | version  | reserved |
//!        | 0x54   | u8      | u8       | 0x00     |
//!        +--------+---------+----------+----------+
//!   family:   0 Control  1 Discovery  2 Streams  3 Groups  4 Collections  5 Functions
//!   version:  the family's own protocol version (1 today)
//!
//! frame (repeated until the stream ends)
//!   byte  0                   4                          4 + len
//!        +-------------------+--------------------------+
//!        | len: u32 BE       | payload: postcard, len B |
//!        +-------------------+--------------------------+
//!   len <= the receiver's maximum (default 64 KiB, `limits.max_frame_bytes`),
//!   checked before anything is allocated; the payload is exactly one message
//!   (trailing bytes are a protocol violation).
//! ```
//!
//! # Versioned messages
//!
//! Every message type carried in frames is an enum whose variants are protocol
//! versions, `enum DiscoveryMsg { V1(..) }`, so a later version adds `V2(..)`
//! without changing how `V1` is encoded (postcard writes the variant index
//! first). A receiver that gets a variant it does not know fails to decode the
//! frame and resets the stream with [`CloseCode::ProtocolViolation`]; the
//! family version in the stream header is what peers use to agree on a
//! version before sending (a family handler that does not speak the header's
//! version answers [`CloseCode::UnsupportedVersion`], see
//! [`StreamHeader::check_version`]).
//!
//! # Close and reset codes
//!
//! The same numbers are used for `Connection::close`, `SendStream::reset` and
//! `RecvStream::stop`. They are stable: a number is never reused for another
//! meaning, new codes are appended.
//!
//! | code | name                 | meaning                                                        |
//! |-----:|----------------------|----------------------------------------------------------------|
//! |    0 | `Normal`             | orderly close, nothing wrong (duplicate connection, done)      |
//! |    1 | `ProtocolViolation`  | malformed header or frame, unexpected message                  |
//! |    2 | `UnknownFamily`      | stream header names a family this node does not serve          |
//! |    3 | `AdmissionRefused`   | attestation verdict or ticket refused by policy                |
//! |    4 | `TicketExpired`      | the ticket that admitted the session expired                   |
//! |    5 | `WrongNetwork`       | the peer belongs to another network                            |
//! |    6 | `Shutdown`           | this node is shutting down; reconnect later or elsewhere        |
//! |    7 | `FrameTooLarge`      | a frame's length exceeds the receiver's maximum                |
//! |    8 | `Departed`           | this node is leaving gracefully (its signed Depart message, sent first, is what removes it from catalogs) |
//! |    9 | `TicketRevoked`      | the ticket that admitted the session was revoked               |
//! |   10 | `UnsupportedVersion` | the family's protocol version in the header is not spoken here |
//! |   11 | `Internal`           | a local failure, not the peer's fault (I/O error, bug)         |
//! |   12 | `UnknownResource`    | the stream names a group/stream/collection not served here     |
//! |   13 | `NotPermitted`       | the ticket lacks the grant (e.g. `join`), or not a member      |
//!
//! An unknown ALPN never reaches these codes: the TLS handshake itself fails
//! with the `no_application_protocol` alert (QUIC `CRYPTO_ERROR` 0x178).
//!
//! Nothing here panics on peer input or grows memory beyond the configured
//! maximum frame size.

mod close;
pub mod frame;
mod header;
mod io;

pub use close::CloseCode;
pub use frame::{encode_frame, read_frame, write_frame, FrameError, DEFAULT_MAX_FRAME};
pub use header::{
    read_header, write_header, StreamFamily, StreamHeader, WireError, HEADER_LEN, MAGIC,
};

/// The one ALPN protocol id: names the tessella protocol version of a connection.
pub const ALPN: &[u8] = b"tessella/1";
