//! The two I/O loops the wire needs, written on the core tokio traits so they
//! work without tokio's `io-util` feature.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Writes all of `buf`.
pub(super) async fn write_all<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    mut buf: &[u8],
) -> io::Result<()> {
    while !buf.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *w).poll_write(cx, buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
pub(super) async fn fill<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = poll_fn(|cx| {
            let mut rb = ReadBuf::new(&mut buf[got..]);
            match Pin::new(&mut *r).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// Test pipes: a connected pair of Unix sockets behaves like a QUIC stream
/// pair for our purposes (ordered bytes, end of stream when the peer drops).
#[cfg(test)]
pub(super) mod pipe {
    use super::*;
    use tokio::net::UnixStream;

    /// Two connected ends.
    pub fn duplex() -> (UnixStream, UnixStream) {
        UnixStream::pair().expect("socketpair")
    }

    /// Writes `bytes` (test helper).
    pub async fn send(w: &mut UnixStream, bytes: &[u8]) {
        write_all(w, bytes).await.expect("write");
    }

    /// Yields at most one byte per read, to exercise reassembly.
    pub struct Trickle<R>(pub R);

    impl<R: AsyncRead + Unpin> AsyncRead for Trickle<R> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let mut one = [0u8; 1];
            let mut small = ReadBuf::new(&mut one);
            match Pin::new(&mut self.0).poll_read(cx, &mut small) {
                Poll::Ready(Ok(())) => {
                    buf.put_slice(small.filled());
                    Poll::Ready(Ok(()))
                }
                other => other,
            }
        }
    }
}
