//! Violations of the fuzzer's invariants, named by kind, and how they are printed:
//! what went wrong in one sentence, then the bytes involved.

use std::fmt;

/// Which invariant a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// The origin received a request framed against RFC 9112 (both lengths, lengths
    /// that disagree, a bad chunk, bytes that are not a request).
    OriginFraming,
    /// The origin was left waiting for body bytes the proxy announced and never sent.
    OriginDesync,
    /// The origin received a request no client sent.
    SmuggledRequest,
    /// One client request reached the origin more than once.
    RepeatedRequest,
    /// A request reached the origin with another method, target or body.
    RequestAltered,
    /// A request without content reached the origin claiming some.
    PhantomBody,
    /// A request the connection's close should have stopped was processed or answered.
    AfterClose,
    /// The client's strict parser rejected the proxy's bytes.
    MalformedResponse,
    /// A response stopped in the middle.
    TruncatedResponse,
    /// Bytes beyond the responses, or a smuggled response served.
    ResponseSplitting,
    /// A `101 Switching Protocols` to a request that asked for no upgrade.
    UnsolicitedUpgrade,
    /// The response to one target served for another.
    WrongTarget,
    /// A response served to a request it was not fetched for, where only its own may
    /// do.
    WrongAnswer,
    /// A body that is not the one the origin sent.
    BodyAltered,
    /// A status that is not the one the origin sent.
    StatusAltered,
    /// A response served from the cache whose `Age` is not one number (the cache's
    /// own statement of its age).
    AgeMisstated,
    /// A `206` or `416` made from a stored response that does not answer the request's
    /// `Range` exactly (its part of the body, its `Content-Range`), or one to a
    /// request that asked for no range.
    RangeMisstated,
    /// A success response the origin never sent.
    ForeignResponse,
    /// An HTTP/2 stream that failed.
    H2Failure,
    /// A connection to the proxy that could not be made, or failed as a whole.
    ConnectionFailure,
    /// No answer, or not all of one, in time.
    Timeout,
    /// The proxy panicked.
    Panic,
}

/// One broken invariant.
pub(crate) struct Violation {
    pub kind: Kind,
    pub what: String,
    /// Labelled bytes that show it.
    pub dumps: Vec<(String, Vec<u8>)>,
}

impl Violation {
    pub(crate) fn new(kind: Kind, what: impl Into<String>) -> Violation {
        Violation {
            kind,
            what: what.into(),
            dumps: Vec::new(),
        }
    }

    pub(crate) fn dump(mut self, label: impl Into<String>, bytes: &[u8]) -> Violation {
        self.dumps.push((label.into(), bytes.to_vec()));
        self
    }
}

/// The most of one dump printed.
const DUMP_LIMIT: usize = 3000;

/// Bytes as readable text, the middle of a long dump left out.
pub(crate) fn escape(bytes: &[u8]) -> String {
    if bytes.len() <= DUMP_LIMIT {
        return escape_all(bytes);
    }
    let (head, tail) = (DUMP_LIMIT * 2 / 3, DUMP_LIMIT / 3);
    format!(
        "{}\n      …[{} bytes left out]…\n{}",
        escape_all(&bytes[..head]),
        bytes.len() - head - tail,
        escape_all(&bytes[bytes.len() - tail..])
    )
}

/// Printable ASCII as is, `\r\n` shown and kept as a line break, anything else
/// escaped; every line indented.
fn escape_all(bytes: &[u8]) -> String {
    let mut out = String::from("      ");
    let mut rest = bytes;
    while let Some((&b, after)) = rest.split_first() {
        rest = after;
        match b {
            b'\r' if rest.first() == Some(&b'\n') => {
                out.push_str("\\r\\n\n      ");
                rest = &rest[1..];
            }
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n\n      "),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.trim_end().to_owned()
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  [{:?}] {}", self.kind, self.what)?;
        for (label, bytes) in &self.dumps {
            writeln!(f, "    {label} ({} bytes):", bytes.len())?;
            writeln!(f, "{}", escape(bytes))?;
        }
        Ok(())
    }
}
