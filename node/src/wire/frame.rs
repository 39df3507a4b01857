//! Length-prefixed postcard frames.
//!
//! ```text
//! byte  0                   4                          4 + len
//!      +-------------------+--------------------------+
//!      | len: u32 BE       | payload: postcard, len B |
//!      +-------------------+--------------------------+
//! ```
//!
//! `len` counts the payload only. Every call takes the maximum payload size
//! (`max`, default [`DEFAULT_MAX_FRAME`], the node's `limits.max_frame_bytes`):
//!
//! - a writer refuses to send a message larger than `max` and stops encoding as
//!   soon as it is exceeded, so it never buffers more than `4 + max` bytes;
//! - a reader judges `len` from the prefix *before* allocating or reading the
//!   payload, and allocates exactly `len <= max` bytes;
//! - a payload decodes to exactly one message: trailing bytes are an error.
//!
//! Decoding is done by postcard through serde; serde pre-allocates at most
//! 1 MiB for a sequence whose claimed length is larger than the payload, then
//! fails at the end of the payload, so a hostile frame costs bounded memory.
//!
//! [`encode_frame`] and [`decode_payload`] are the pure halves, usable without
//! I/O (and by fuzz targets); [`write_frame`] and [`read_frame`] drive them over
//! tokio `AsyncWrite` / `AsyncRead` (quinn's `SendStream` / `RecvStream`).

use std::io;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use super::io::{fill, write_all};
use super::CloseCode;

/// Default largest payload accepted or sent: 64 KiB.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;

/// Why a frame could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer announced a payload larger than this node accepts. The payload
    /// was not read.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The announced payload length.
        len: usize,
        /// The maximum in force.
        max: usize,
    },
    /// A message to send encodes to more than `max` bytes; nothing was sent.
    #[error("message does not fit in a frame of at most {max} bytes: split it, or raise limits.max_frame_bytes on every node")]
    MessageTooLarge {
        /// The maximum in force.
        max: usize,
    },
    /// The stream ended inside a frame (in its length prefix or its payload).
    #[error("stream ended inside a frame: got {got} of {expected} bytes")]
    Truncated {
        /// Bytes the prefix or payload needed.
        expected: usize,
        /// Bytes received before the end.
        got: usize,
    },
    /// The payload is not one valid postcard message of the expected type.
    #[error("malformed frame payload: {0}")]
    Decode(String),
    /// The message could not be encoded (a serde error; a bug in the type).
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// Reading or writing the stream failed.
    #[error("frame i/o: {0}")]
    Io(#[from] io::Error),
}

impl FrameError {
    /// The code to reset the stream (or close the connection) with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            FrameError::TooLarge { .. } | FrameError::MessageTooLarge { .. } => {
                CloseCode::FrameTooLarge
            }
            FrameError::Truncated { .. } | FrameError::Decode(_) => CloseCode::ProtocolViolation,
            FrameError::Encode(_) | FrameError::Io(_) => CloseCode::Internal,
        }
    }
}

/// The largest payload a u32 prefix can announce, as a bound on `max`.
fn effective_max(max: usize) -> usize {
    max.min(u32::MAX as usize)
}

/// A postcard output that refuses to grow beyond `limit` bytes and never
/// reserves more than that.
struct Bounded {
    buf: Vec<u8>,
    limit: usize,
}

impl postcard::ser_flavors::Flavor for Bounded {
    type Output = Vec<u8>;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let len = self.buf.len();
        if data.len() > self.limit - len {
            return Err(postcard::Error::SerializeBufferFull);
        }
        if self.buf.capacity() - len < data.len() {
            let want = (len + data.len())
                .max(self.buf.capacity().saturating_mul(2))
                .min(self.limit);
            self.buf.reserve_exact(want - len);
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.buf)
    }
}

/// Encodes `msg` as one complete frame (prefix and payload).
///
/// Fails with [`FrameError::MessageTooLarge`] as soon as the payload exceeds
/// `max`, without encoding the rest.
pub fn encode_frame<T: Serialize + ?Sized>(msg: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let max = effective_max(max);
    let mut buf = Vec::with_capacity((LEN_PREFIX + 64).min(LEN_PREFIX + max));
    buf.extend_from_slice(&[0; LEN_PREFIX]);
    let flavor = Bounded {
        buf,
        limit: LEN_PREFIX + max,
    };
    let mut buf = postcard::serialize_with_flavor(msg, flavor).map_err(|e| match e {
        postcard::Error::SerializeBufferFull => FrameError::MessageTooLarge { max },
        other => FrameError::Encode(other.to_string()),
    })?;
    let len =
        u32::try_from(buf.len() - LEN_PREFIX).map_err(|_| FrameError::MessageTooLarge { max })?;
    buf[..LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// Decodes a frame's payload: exactly one message, no trailing bytes.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (msg, rest) =
        postcard::take_from_bytes::<T>(payload).map_err(|e| FrameError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Decode(format!(
            "{} trailing bytes after the message",
            rest.len()
        )));
    }
    Ok(msg)
}

/// Encodes and writes one frame. Refuses (and writes nothing) if the payload
/// would exceed `max`. Does not flush: quinn sends without flushing; flush
/// buffered writers yourself.
pub async fn write_frame<W, T>(w: &mut W, msg: &T, max: usize) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin + ?Sized,
    T: Serialize + ?Sized,
{
    let frame = encode_frame(msg, max)?;
    write_all(w, &frame).await?;
    Ok(())
}

/// Reads one frame and decodes its payload.
///
/// `Ok(None)` when the stream ends cleanly before a frame starts;
/// [`FrameError::Truncated`] when it ends inside one; [`FrameError::TooLarge`]
/// when the prefix announces more than `max` (decided before reading or
/// allocating the payload). Not cancel-safe: dropping the future mid-frame
/// loses the bytes read so far.
pub async fn read_frame<R, T>(r: &mut R, max: usize) -> Result<Option<T>, FrameError>
where
    R: AsyncRead + Unpin + ?Sized,
    T: DeserializeOwned,
{
    let max = effective_max(max);
    let mut prefix = [0u8; LEN_PREFIX];
    match fill(r, &mut prefix).await? {
        0 => return Ok(None),
        LEN_PREFIX => {}
        got => {
            return Err(FrameError::Truncated {
                expected: LEN_PREFIX,
                got,
            })
        }
    }
    // u32 always fits in usize on the 32- and 64-bit targets we build for.
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut payload = vec![0u8; len];
    let got = fill(r, &mut payload).await?;
    if got < len {
        return Err(FrameError::Truncated { expected: len, got });
    }
    decode_payload(&payload).map(Some)
}

#[cfg(test)]
mod tests {
    use super::super::io::pipe::{duplex, send, Trickle};
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum TestMsg {
        V1(Body),
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Body {
        seq: u64,
        text: String,
        data: Vec<u8>,
    }

    fn msg(seq: u64, size: usize) -> TestMsg {
        TestMsg::V1(Body {
            seq,
            text: format!("message {seq}"),
            data: vec![seq as u8; size],
        })
    }

    #[tokio::test]
    async fn several_frames_round_trip() {
        let (mut a, mut b) = duplex();
        let sent: Vec<TestMsg> = (0..5).map(|i| msg(i, (i as usize) * 1000)).collect();
        for m in &sent {
            write_frame(&mut a, m, DEFAULT_MAX_FRAME)
                .await
                .expect("write");
        }
        drop(a);
        for m in &sent {
            let got: TestMsg = read_frame(&mut b, DEFAULT_MAX_FRAME)
                .await
                .expect("read")
                .expect("a frame");
            assert_eq!(&got, m);
        }
        let end: Option<TestMsg> = read_frame(&mut b, DEFAULT_MAX_FRAME).await.expect("eof");
        assert_eq!(end, None, "clean end of stream between frames");
    }

    #[tokio::test]
    async fn frames_arrive_in_pieces() {
        // One byte per read forces reassembly of prefix and payload.
        let (mut a, b) = duplex();
        let m = msg(9, 3000);
        let expected = m.clone();
        let writer = tokio::spawn(async move {
            write_frame(&mut a, &m, DEFAULT_MAX_FRAME)
                .await
                .expect("write");
        });
        let got: Option<TestMsg> = read_frame(&mut Trickle(b), DEFAULT_MAX_FRAME)
            .await
            .expect("read");
        assert_eq!(got, Some(expected));
        writer.await.expect("writer");
    }

    #[test]
    fn encoding_layout() {
        let frame = encode_frame(
            &TestMsg::V1(Body {
                seq: 1,
                text: "a".into(),
                data: vec![],
            }),
            100,
        )
        .expect("encode");
        // variant 0, seq varint 1, text len 1 + 'a', data len 0
        assert_eq!(frame, [0, 0, 0, 5, 0, 1, 1, b'a', 0]);
        let payload: TestMsg = decode_payload(&frame[4..]).expect("decode");
        assert_eq!(
            payload,
            TestMsg::V1(Body {
                seq: 1,
                text: "a".into(),
                data: vec![]
            })
        );
    }

    #[tokio::test]
    async fn oversized_write_is_refused_and_nothing_is_sent() {
        let (mut a, mut b) = duplex();
        let big = msg(1, 2000);
        let e = write_frame(&mut a, &big, 1024).await.expect_err("too big");
        assert!(
            matches!(e, FrameError::MessageTooLarge { max: 1024 }),
            "{e}"
        );
        assert_eq!(e.close_code(), CloseCode::FrameTooLarge);
        // Exactly at the limit is fine.
        let exact = encode_frame(&big, usize::MAX).expect("encode").len() - LEN_PREFIX;
        assert!(encode_frame(&big, exact).is_ok());
        assert!(encode_frame(&big, exact - 1).is_err());
        drop(a);
        let end: Option<TestMsg> = read_frame(&mut b, DEFAULT_MAX_FRAME).await.expect("eof");
        assert_eq!(end, None, "the refused frame left no bytes behind");
    }

    #[test]
    fn encoding_never_reserves_more_than_the_limit() {
        let huge = vec![7u8; 10 * DEFAULT_MAX_FRAME];
        let mut flavor = Bounded {
            buf: Vec::new(),
            limit: 1000,
        };
        use postcard::ser_flavors::Flavor;
        for chunk in huge.chunks(300) {
            if flavor.try_extend(chunk).is_err() {
                break;
            }
        }
        assert_eq!(flavor.buf.len(), 900);
        assert!(flavor.buf.capacity() <= 1000, "{}", flavor.buf.capacity());
        assert!(matches!(
            encode_frame(&huge, DEFAULT_MAX_FRAME),
            Err(FrameError::MessageTooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn oversized_prefix_is_refused_before_the_body() {
        let (mut a, mut b) = duplex();
        // Announce 4 GiB - 1 and send no body at all: the reader must answer
        // from the prefix alone (it would hang or allocate otherwise).
        send(&mut a, &u32::MAX.to_be_bytes()).await;
        let e = read_frame::<_, TestMsg>(&mut b, DEFAULT_MAX_FRAME)
            .await
            .expect_err("too large");
        match e {
            FrameError::TooLarge { len, max } => {
                assert_eq!(len, u32::MAX as usize);
                assert_eq!(max, DEFAULT_MAX_FRAME);
            }
            other => panic!("unexpected {other}"),
        }
        // One byte over a small limit.
        send(&mut a, &101u32.to_be_bytes()).await;
        let e = read_frame::<_, TestMsg>(&mut b, 100)
            .await
            .expect_err("too large");
        assert!(matches!(e, FrameError::TooLarge { len: 101, max: 100 }));
        assert_eq!(e.close_code(), CloseCode::FrameTooLarge);
    }

    #[tokio::test]
    async fn truncated_frames() {
        // Inside the payload.
        let (mut a, mut b) = duplex();
        let frame = encode_frame(&msg(1, 50), DEFAULT_MAX_FRAME).expect("encode");
        send(&mut a, &frame[..frame.len() - 10]).await;
        drop(a);
        let e = read_frame::<_, TestMsg>(&mut b, DEFAULT_MAX_FRAME)
            .await
            .expect_err("truncated");
        let expected = frame.len() - LEN_PREFIX;
        assert!(
            matches!(e, FrameError::Truncated { expected: x, got } if x == expected && got == expected - 10),
            "{e}"
        );
        assert_eq!(e.close_code(), CloseCode::ProtocolViolation);

        // Inside the length prefix.
        let (mut a, mut b) = duplex();
        send(&mut a, &[0, 0]).await;
        drop(a);
        let e = read_frame::<_, TestMsg>(&mut b, DEFAULT_MAX_FRAME)
            .await
            .expect_err("truncated");
        assert!(
            matches!(
                e,
                FrameError::Truncated {
                    expected: 4,
                    got: 2
                }
            ),
            "{e}"
        );
    }

    #[tokio::test]
    async fn garbage_payload_is_a_decode_error() {
        let (mut a, mut b) = duplex();
        // Variant 9 does not exist.
        send(&mut a, &[0, 0, 0, 3, 9, 1, 2]).await;
        let e = read_frame::<_, TestMsg>(&mut b, DEFAULT_MAX_FRAME)
            .await
            .expect_err("garbage");
        assert!(matches!(e, FrameError::Decode(_)), "{e}");
        assert_eq!(e.close_code(), CloseCode::ProtocolViolation);

        // A sequence claiming far more elements than the payload holds.
        send(&mut a, &[0, 0, 0, 8, 0, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]).await;
        let e = read_frame::<_, TestMsg>(&mut b, DEFAULT_MAX_FRAME)
            .await
            .expect_err("garbage");
        assert!(matches!(e, FrameError::Decode(_)), "{e}");

        // Empty payload.
        send(&mut a, &[0, 0, 0, 0]).await;
        let e = read_frame::<_, TestMsg>(&mut b, DEFAULT_MAX_FRAME)
            .await
            .expect_err("empty");
        assert!(matches!(e, FrameError::Decode(_)), "{e}");
    }

    #[tokio::test]
    async fn trailing_bytes_inside_a_frame_are_refused() {
        let (mut a, mut b) = duplex();
        let mut frame = encode_frame(&msg(3, 4), DEFAULT_MAX_FRAME).expect("encode");
        frame.extend_from_slice(&[0xAA, 0xBB]);
        let len = u32::try_from(frame.len() - LEN_PREFIX).expect("small");
        frame[..4].copy_from_slice(&len.to_be_bytes());
        send(&mut a, &frame).await;
        let e = read_frame::<_, TestMsg>(&mut b, DEFAULT_MAX_FRAME)
            .await
            .expect_err("trailing");
        assert!(e.to_string().contains("2 trailing bytes"), "{e}");
        assert_eq!(e.close_code(), CloseCode::ProtocolViolation);
    }

    #[tokio::test]
    async fn clean_eof_is_none() {
        let (a, mut b) = duplex();
        drop(a);
        let got: Option<TestMsg> = read_frame(&mut b, DEFAULT_MAX_FRAME).await.expect("eof");
        assert!(got.is_none());
    }

    #[tokio::test]
    async fn unit_payload_is_an_empty_frame() {
        let (mut a, mut b) = duplex();
        write_frame(&mut a, &(), 0).await.expect("write");
        let got: Option<()> = read_frame(&mut b, 0).await.expect("read");
        assert_eq!(got, Some(()));
    }
}
