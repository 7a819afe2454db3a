//! A client on a raw socket: writes the exact bytes of its requests (pipelined, with
//! bodies where HTTP libraries refuse them) and reads the answers strictly, one
//! response at a time, so bytes that belong to no response cannot hide.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response as read off the wire.
#[derive(Debug)]
pub(crate) struct Read {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Read {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One connection to the proxy.
pub(crate) struct RawClient {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawClient {
    pub(crate) async fn connect(addr: SocketAddr) -> RawClient {
        RawClient {
            stream: TcpStream::connect(addr).await.unwrap(),
            buffer: Vec::new(),
        }
    }

    pub(crate) async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads one response (to a HEAD if `head`), skipping interim 1xx ones; panics
    /// on a response that is not framed exactly, or if none comes within 10 s.
    pub(crate) async fn response(&mut self, head: bool) -> Read {
        tokio::time::timeout(Duration::from_secs(10), self.read_response(head))
            .await
            .expect("a response within 10 s")
    }

    async fn read_response(&mut self, head: bool) -> Read {
        loop {
            let end = loop {
                if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end;
                }
                assert!(self.fill().await, "the connection closed before a response");
            };
            let text = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
            self.buffer.drain(..end + 4);
            let mut lines = text.split("\r\n");
            let status_line = lines.next().unwrap_or_default();
            let status: u16 = status_line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
            let headers: Vec<(String, String)> = lines
                .map(|line| {
                    let (n, v) = line
                        .split_once(':')
                        .unwrap_or_else(|| panic!("bad line {line:?}"));
                    (n.trim().to_owned(), v.trim().to_owned())
                })
                .collect();
            if (100..200).contains(&status) {
                continue;
            }
            let mut read = Read {
                status,
                headers,
                body: Vec::new(),
            };
            let lengths: Vec<&str> = read
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.as_str())
                .collect();
            let chunked = read.header("transfer-encoding").is_some();
            assert!(
                !chunked || lengths.is_empty(),
                "both Content-Length and Transfer-Encoding: {:?}",
                read.headers
            );
            assert!(lengths.len() <= 1, "several Content-Length: {lengths:?}");
            if head || status == 204 || status == 304 {
                return read;
            }
            read.body = if chunked {
                self.chunked().await
            } else if let Some(length) = lengths.first() {
                let length: usize = length.parse().expect("a numeric Content-Length");
                while self.buffer.len() < length {
                    assert!(self.fill().await, "closed before the body's end");
                }
                self.buffer.drain(..length).collect()
            } else {
                while self.fill().await {}
                std::mem::take(&mut self.buffer)
            };
            return read;
        }
    }

    async fn chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let end = loop {
                if let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                    break end;
                }
                assert!(self.fill().await, "closed inside a chunk size");
            };
            let line = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
            self.buffer.drain(..end + 2);
            let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {line:?}"));
            while self.buffer.len() < size + 2 {
                assert!(self.fill().await, "closed inside a chunk");
            }
            body.extend(self.buffer.drain(..size));
            assert_eq!(&self.buffer[..2], b"\r\n", "a chunk ends with CRLF");
            self.buffer.drain(..2);
            if size == 0 {
                return body;
            }
        }
    }

    /// Whether the connection is left with no bytes that belong to no response
    /// (waiting `quiet` for any to arrive).
    pub(crate) async fn nothing_more(&mut self, quiet: Duration) -> bool {
        if !self.buffer.is_empty() {
            return false;
        }
        let mut byte = [0u8; 1];
        !matches!(
            tokio::time::timeout(quiet, self.stream.read(&mut byte)).await,
            Ok(Ok(n)) if n > 0
        )
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }
}
