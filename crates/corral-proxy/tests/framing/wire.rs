//! Strict HTTP/1.1 framing, shared by the origin (which reads requests) and the client
//! (which reads responses): heads through httparse, the body's length decided as
//! RFC 9112 §6.3 says with every ambiguity an error, chunked bodies decoded to the
//! byte, and a socket reader that keeps every byte it was sent.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// Why bytes are not a well-framed message.
#[derive(Debug, Clone)]
pub(crate) struct Malformed(pub String);

/// A parser's verdict on the bytes read so far: a value and how many bytes it took,
/// or a need for more.
pub(crate) enum Parsed<T> {
    Done(T, usize),
    Partial,
}

/// One parsing step over a buffer.
pub(crate) type Step<T> = Result<Parsed<T>, Malformed>;

/// Header fields, names lowercased, values as sent, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fields(pub Vec<(String, Vec<u8>)>);

impl Fields {
    fn from_httparse(headers: &[httparse::Header<'_>]) -> Fields {
        Fields(
            headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                .collect(),
        )
    }

    /// Every value of `name`, each line as sent.
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of `name`, as text.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        self.all(name)
            .next()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Whether a comma-separated field `name` lists `token` (case-insensitively).
    pub(crate) fn lists(&self, name: &str, token: &str) -> bool {
        self.all(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }
}

/// A request's start line and fields.
pub(crate) struct RequestHead {
    pub method: String,
    pub target: String,
    pub fields: Fields,
}

/// A response's status and fields.
pub(crate) struct ResponseHead {
    pub status: u16,
    pub fields: Fields,
}

const MAX_FIELDS: usize = 96;

/// A message must start right at the buffer's start: a stray line break between
/// messages is bytes that belong to neither.
fn starts_cleanly(buf: &[u8]) -> Result<(), Malformed> {
    match buf.first() {
        Some(b'\r' | b'\n') => Err(Malformed(
            "a line break where a message should start".into(),
        )),
        _ => Ok(()),
    }
}

/// Parses a request head (HTTP/1.1 only).
pub(crate) fn request_head(buf: &[u8]) -> Step<RequestHead> {
    starts_cleanly(buf)?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            if request.version != Some(1) {
                return Err(Malformed("not an HTTP/1.1 request".into()));
            }
            Ok(Parsed::Done(
                RequestHead {
                    method: request.method.unwrap_or_default().to_owned(),
                    target: request.path.unwrap_or_default().to_owned(),
                    fields: Fields::from_httparse(request.headers),
                },
                n,
            ))
        }
        Ok(httparse::Status::Partial) => Ok(Parsed::Partial),
        Err(error) => Err(Malformed(format!("request head: {error}"))),
    }
}

/// Parses a response head (HTTP/1.1 only).
pub(crate) fn response_head(buf: &[u8]) -> Step<ResponseHead> {
    starts_cleanly(buf)?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            if response.version != Some(1) {
                return Err(Malformed("not an HTTP/1.1 response".into()));
            }
            Ok(Parsed::Done(
                ResponseHead {
                    status: response.code.unwrap_or_default(),
                    fields: Fields::from_httparse(response.headers),
                },
                n,
            ))
        }
        Ok(httparse::Status::Partial) => Ok(Parsed::Partial),
        Err(error) => Err(Malformed(format!("response head: {error}"))),
    }
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(usize),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the connection closes (responses only).
    UntilClose,
}

/// The `Content-Length`, if any: every line and list member must be the same
/// number.
fn content_length(fields: &Fields) -> Result<Option<usize>, Malformed> {
    let mut length = None;
    for line in fields.all("content-length") {
        for member in line.split(|&b| b == b',') {
            let member = member.trim_ascii();
            let parsed = (!member.is_empty() && member.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(member).ok()?.parse::<usize>().ok())
                .flatten()
                .ok_or_else(|| {
                    Malformed(format!(
                        "Content-Length `{}` is not a length",
                        String::from_utf8_lossy(line)
                    ))
                })?;
            match length {
                Some(earlier) if earlier != parsed => {
                    return Err(Malformed(format!(
                        "Content-Length values disagree: {earlier} and {parsed}"
                    )));
                }
                _ => length = Some(parsed),
            }
        }
    }
    Ok(length)
}

/// Whether a `Transfer-Encoding` is present; an error unless it is exactly `chunked`
/// (a proxy has no business sending any other coding, and one that does not end in
/// chunked leaves a request without a length).
fn chunked(fields: &Fields) -> Result<bool, Malformed> {
    let codings: Vec<String> = fields
        .all("transfer-encoding")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|c| String::from_utf8_lossy(c.trim_ascii()).to_ascii_lowercase())
        .collect();
    match codings.as_slice() {
        [] => Ok(false),
        [only] if only == "chunked" => Ok(true),
        _ => Err(Malformed(format!(
            "Transfer-Encoding `{}` is not just `chunked`",
            codings.join(", ")
        ))),
    }
}

/// How a request's body is delimited (RFC 9112 §6.3), both lengths at once an error.
pub(crate) fn request_framing(fields: &Fields) -> Result<Framing, Malformed> {
    let chunked = chunked(fields)?;
    match (chunked, content_length(fields)?) {
        (true, Some(_)) => Err(Malformed(
            "both Content-Length and Transfer-Encoding".into(),
        )),
        (true, None) => Ok(Framing::Chunked),
        (false, Some(0) | None) => Ok(Framing::Empty),
        (false, Some(n)) => Ok(Framing::Length(n)),
    }
}

/// How a response's body is delimited (RFC 9112 §6.3), given whether it answers a
/// HEAD; lengths that a response of its status must not carry are errors.
pub(crate) fn response_framing(
    status: u16,
    to_head: bool,
    fields: &Fields,
) -> Result<Framing, Malformed> {
    let chunked = chunked(fields)?;
    let length = content_length(fields)?;
    if chunked && length.is_some() {
        return Err(Malformed(
            "both Content-Length and Transfer-Encoding".into(),
        ));
    }
    // A 204 may say `Content-Length: 0` harmlessly; a 1xx may say nothing.
    let lengthless = (100..200).contains(&status) || status == 204;
    let claims = chunked || length.is_some_and(|n| n > 0 || status != 204);
    if lengthless && claims {
        return Err(Malformed(format!(
            "a {status} response with a {} (RFC 9110 §8.6, RFC 9112 §6.1)",
            if chunked {
                "Transfer-Encoding"
            } else {
                "Content-Length"
            }
        )));
    }
    if lengthless || status == 304 || to_head {
        return Ok(Framing::Empty);
    }
    Ok(match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(0)) => Framing::Empty,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::UntilClose,
    })
}

/// Exactly `n` bytes.
pub(crate) fn exactly(n: usize) -> impl Fn(&[u8]) -> Step<Vec<u8>> {
    move |buf| {
        Ok(if buf.len() >= n {
            Parsed::Done(buf[..n].to_vec(), n)
        } else {
            Parsed::Partial
        })
    }
}

/// The longest chunk-size line (size and extensions) taken before it is an error.
const MAX_LINE: usize = 4096;

/// One CRLF-terminated line at the buffer's start (without its CRLF), or a need for
/// more; a bare CR or LF is an error.
fn line(buf: &[u8]) -> Result<Option<&[u8]>, Malformed> {
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'\r' => {
                return match buf.get(i + 1) {
                    Some(b'\n') => Ok(Some(&buf[..i])),
                    Some(_) => Err(Malformed("a bare CR in a chunked body".into())),
                    None => Ok(None),
                };
            }
            b'\n' => return Err(Malformed("a bare LF in a chunked body".into())),
            _ if i >= MAX_LINE => return Err(Malformed("an endless chunk line".into())),
            _ => {}
        }
    }
    Ok(None)
}

/// A chunked body, decoded, through its trailer section.
pub(crate) fn chunked_body(buf: &[u8]) -> Step<Vec<u8>> {
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        let Some(size_line) = line(&buf[at..])? else {
            return Ok(Parsed::Partial);
        };
        let digits = size_line.split(|&b| b == b';').next().unwrap_or_default();
        if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(Malformed(format!(
                "chunk size `{}` is not hexadecimal",
                String::from_utf8_lossy(size_line)
            )));
        }
        let size = usize::from_str_radix(std::str::from_utf8(digits).unwrap_or("0"), 16)
            .map_err(|_| Malformed("chunk size out of range".into()))?;
        at += size_line.len() + 2;
        if size == 0 {
            loop {
                let Some(trailer) = line(&buf[at..])? else {
                    return Ok(Parsed::Partial);
                };
                at += trailer.len() + 2;
                if trailer.is_empty() {
                    return Ok(Parsed::Done(body, at));
                }
                if !trailer.contains(&b':') {
                    return Err(Malformed(format!(
                        "trailer line `{}` is not a field",
                        String::from_utf8_lossy(trailer)
                    )));
                }
            }
        }
        if buf.len() < at + size + 2 {
            return Ok(Parsed::Partial);
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size;
        if &buf[at..at + 2] != b"\r\n" {
            return Err(Malformed(format!(
                "chunk data runs past its size ({size:#x})"
            )));
        }
        at += 2;
    }
}

/// `chunks` in chunked coding, with a chunk extension on each when `extensions`, and a
/// trailer field when `trailers`.
pub(crate) fn encode_chunked(chunks: &[Vec<u8>], extensions: bool, trailers: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in chunks.iter().filter(|c| !c.is_empty()) {
        out.extend_from_slice(format!("{:x}", chunk.len()).as_bytes());
        if extensions {
            out.extend_from_slice(b";ext=\"v\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    if trailers {
        out.extend_from_slice(b"x-framing-trailer: t\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Why reading a message stopped short.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The bytes are not a well-framed message.
    Malformed(Malformed),
    /// The peer closed the connection (or reset it) part way.
    Closed,
    /// Nothing more came in time.
    TimedOut,
}

impl From<Malformed> for Stop {
    fn from(malformed: Malformed) -> Self {
        Stop::Malformed(malformed)
    }
}

/// Where a copy of every byte read goes, besides the reader's own record.
pub(crate) type Tap = Box<dyn FnMut(&[u8]) + Send>;

/// The reading half of a connection, with the bytes read but not yet parsed, and
/// every byte ever read.
pub(crate) struct Inbound {
    read: Box<dyn AsyncRead + Unpin + Send>,
    /// Read, not yet consumed by a parser.
    pub buf: Vec<u8>,
    /// Everything read, in order.
    pub seen: Vec<u8>,
    tap: Option<Tap>,
}

impl Inbound {
    pub(crate) fn new(read: impl AsyncRead + Unpin + Send + 'static, tap: Option<Tap>) -> Inbound {
        Inbound {
            read: Box::new(read),
            buf: Vec::new(),
            seen: Vec::new(),
            tap,
        }
    }

    /// How many of the bytes read the parsers have consumed.
    pub(crate) fn consumed(&self) -> usize {
        self.seen.len() - self.buf.len()
    }

    /// Reads more; `Ok(false)` at the end of the stream.
    async fn fill(&mut self, deadline: Option<Instant>) -> Result<bool, Stop> {
        let mut chunk = [0u8; 16 * 1024];
        let read = self.read.read(&mut chunk);
        let n = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, read)
                .await
                .map_err(|_| Stop::TimedOut)?,
            None => read.await,
        }
        .unwrap_or(0);
        if n > 0 {
            self.buf.extend_from_slice(&chunk[..n]);
            self.seen.extend_from_slice(&chunk[..n]);
            if let Some(tap) = &mut self.tap {
                tap(&chunk[..n]);
            }
        }
        Ok(n > 0)
    }

    /// Waits for a first byte (as long as it takes, or until `deadline`); `Ok(false)`
    /// when the stream ended with nothing unread.
    pub(crate) async fn await_bytes(&mut self, deadline: Option<Instant>) -> Result<bool, Stop> {
        while self.buf.is_empty() {
            if !self.fill(deadline).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Runs `step` over the unread bytes, reading more until it is done, and consumes
    /// what it took.
    pub(crate) async fn parse<T>(
        &mut self,
        deadline: Option<Instant>,
        step: impl Fn(&[u8]) -> Step<T>,
    ) -> Result<T, Stop> {
        loop {
            if let Parsed::Done(value, n) = step(&self.buf)? {
                self.buf.drain(..n);
                return Ok(value);
            }
            if !self.fill(deadline).await? {
                return Err(Stop::Closed);
            }
        }
    }

    /// Everything up to the end of the stream.
    pub(crate) async fn until_end(&mut self, deadline: Option<Instant>) -> Result<Vec<u8>, Stop> {
        while self.fill(deadline).await? {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// Reads whatever else comes for `patience`, up to the end of the stream.
    pub(crate) async fn drain(&mut self, patience: Duration) -> Vec<u8> {
        let deadline = Instant::now() + patience;
        while let Ok(true) = self.fill(Some(deadline)).await {}
        std::mem::take(&mut self.buf)
    }
}
