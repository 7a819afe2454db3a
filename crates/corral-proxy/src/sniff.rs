//! The first bytes of a client connection, read to tell HTTP/1 from HTTP/2 (whose
//! connection preface is fixed) within a deadline the caller sets, then given back to
//! the server: hyper's own header read timeout only starts once it knows which
//! protocol it serves, so without this a silent client would hold its connection slot.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The HTTP/2 connection preface: a client that starts with it speaks HTTP/2.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A stream whose first bytes were read ahead, and are read again first.
#[derive(Debug)]
pub(crate) struct Sniffed<S> {
    head: Vec<u8>,
    /// How much of `head` was read again.
    given: usize,
    stream: S,
}

/// Reads from `stream` until its first bytes leave or complete the HTTP/2 preface (or
/// it closes), and no further.
pub(crate) async fn sniff<S: AsyncRead + Unpin>(mut stream: S) -> io::Result<Sniffed<S>> {
    let mut head = [0u8; H2_PREFACE.len()];
    let mut len = 0;
    while len < head.len() && head[..len] == H2_PREFACE[..len] {
        match stream.read(&mut head[len..]).await? {
            0 => break,
            n => len += n,
        }
    }
    Ok(Sniffed {
        head: head[..len].to_vec(),
        given: 0,
        stream,
    })
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniffed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.given < this.head.len() {
            let rest = &this.head[this.given..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.given += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniffed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    async fn sniffed(sent: &[u8], then_close: bool) -> (Vec<u8>, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(sent).await.unwrap();
        if then_close {
            client.shutdown().await.unwrap();
        }
        let mut sniffed = sniff(server).await.unwrap();
        let head = sniffed.head.clone();
        drop(client);
        let mut all = Vec::new();
        sniffed.read_to_end(&mut all).await.unwrap();
        (head, all)
    }

    #[tokio::test]
    async fn an_http1_request_is_known_by_its_first_byte_and_read_again_whole() {
        let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let (head, all) = sniffed(request, false).await;
        assert_ne!(head, H2_PREFACE[..head.len()], "stopped once it differed");
        assert_eq!(all, request);
    }

    #[tokio::test]
    async fn the_http2_preface_is_read_whole_and_nothing_past_it() {
        let mut sent = H2_PREFACE.to_vec();
        sent.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0");
        let (head, all) = sniffed(&sent, false).await;
        assert_eq!(head, H2_PREFACE);
        assert_eq!(all, sent);
    }

    #[tokio::test]
    async fn a_part_of_the_preface_then_a_close_is_given_back() {
        let (head, all) = sniffed(b"PRI * HT", true).await;
        assert_eq!(head, b"PRI * HT");
        assert_eq!(all, b"PRI * HT");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_stalling_in_the_preface_is_still_unknown_at_the_deadline() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"PRI * HTTP/2.0").await.unwrap();
        let waited = tokio::time::timeout(std::time::Duration::from_secs(10), sniff(server)).await;
        assert!(waited.is_err(), "still waiting for the rest of the preface");
        drop(client);
    }
}
