//! A scripted origin on a raw socket: it parses each request itself, records exactly
//! what it understood, and answers with bytes the test chooses, however ill-framed,
//! or closes the connection. For attacks that a well-behaved HTTP server library
//! would never let a test express.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request as the origin parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    /// The connection it came on, counted from 0.
    pub connection: usize,
    /// Its place on that connection, counted from 0.
    pub nth: usize,
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the origin does after reading a request.
pub(crate) enum Answer {
    /// Writes these bytes and reads the next request.
    Write(Vec<u8>),
    /// Writes these bytes and closes the connection.
    WriteAndClose(Vec<u8>),
    /// Closes the connection without a word.
    Close,
}

/// When the origin reads a request's body.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFirst {
    /// Before answering (as most servers do).
    Yes,
    /// After answering, as Node.js, nginx and Go do for a request they answer at
    /// once: the body's bytes are skipped only once the answer is out.
    No,
}

type Script = dyn Fn(&Seen) -> Answer + Send + Sync;

/// The origin; every request it parsed is in [`seen`](RawOrigin::seen).
#[derive(Clone)]
pub(crate) struct RawOrigin {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl RawOrigin {
    pub(crate) async fn start(
        body_first: BodyFirst,
        script: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
    ) -> RawOrigin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = RawOrigin {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
        };
        let (seen, script): (_, Arc<Script>) = (origin.seen.clone(), Arc::new(script));
        tokio::spawn(async move {
            let mut connection = 0;
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, script) = (seen.clone(), script.clone());
                tokio::spawn(serve(stream, connection, body_first, seen, script));
                connection += 1;
            }
        });
        origin
    }

    /// Every request parsed so far, in order.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The targets of every request parsed so far.
    pub(crate) fn targets(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.target).collect()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// A response with a `Content-Length` body and these extra header lines.
pub(crate) fn response(status: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn serve(
    mut stream: TcpStream,
    connection: usize,
    body_first: BodyFirst,
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Script>,
) {
    let mut buffer = Vec::new();
    for nth in 0.. {
        let Some(head_end) = read_until_head(&mut stream, &mut buffer).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        buffer.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let (method, target) = (
            request_line.next().unwrap_or_default().to_owned(),
            request_line.next().unwrap_or_default().to_owned(),
        );
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let mut request = Seen {
            connection,
            nth,
            method,
            target,
            headers,
            body: Vec::new(),
        };
        if body_first == BodyFirst::Yes {
            let Some(body) = read_body(&mut stream, &mut buffer, &request).await else {
                return;
            };
            request.body = body;
        }
        seen.lock().unwrap().push(request.clone());
        let answer = script(&request);
        match answer {
            Answer::Write(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Answer::WriteAndClose(bytes) => {
                let _ = stream.write_all(&bytes).await;
                return;
            }
            Answer::Close => return,
        }
        if body_first == BodyFirst::No {
            let Some(body) = read_body(&mut stream, &mut buffer, &request).await else {
                return;
            };
            if let Some(last) = seen
                .lock()
                .unwrap()
                .iter_mut()
                .rev()
                .find(|s| **s == request)
            {
                last.body = body;
            }
        }
    }
}

/// Reads until `buffer` holds a whole head; its length (without the blank line).
async fn read_until_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(end);
        }
        fill(stream, buffer).await?;
    }
}

async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

/// Reads the body the request's head declares (`Content-Length`, or chunked).
async fn read_body(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    request: &Seen,
) -> Option<Vec<u8>> {
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().ends_with("chunked"));
    if !chunked {
        let length: usize = request
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buffer.len() < length {
            fill(stream, buffer).await?;
        }
        return Some(buffer.drain(..length).collect());
    }
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(end) = buffer.windows(2).position(|w| w == b"\r\n") {
                break end;
            }
            fill(stream, buffer).await?;
        };
        let line = String::from_utf8_lossy(&buffer[..line_end]).into_owned();
        buffer.drain(..line_end + 2);
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        while buffer.len() < size + 2 {
            fill(stream, buffer).await?;
        }
        body.extend(buffer.drain(..size));
        buffer.drain(..2);
        if size == 0 {
            return Some(body);
        }
    }
}
