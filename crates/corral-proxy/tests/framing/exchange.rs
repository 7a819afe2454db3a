//! What a client saw on one connection to the proxy, whatever protocol it spoke: an
//! outcome per request, the problems of the connection as a whole, and the bytes.

use crate::answer::ID_FIELD;
use crate::wire::Fields;

/// One connection, seen from the client.
#[derive(Default)]
pub(crate) struct Seen {
    /// One per request, in the order written.
    pub outcomes: Vec<Outcome>,
    pub problems: Vec<Problem>,
    /// The bytes the client wrote (HTTP/1.1 only).
    pub sent: Vec<u8>,
    /// The bytes the proxy sent (HTTP/1.1 only).
    pub received: Vec<u8>,
}

/// What became of one request.
pub(crate) enum Outcome {
    Answered(Reply),
    /// The connection ended before an answer.
    Unanswered,
    /// Never written: the connection was over before its turn.
    NotSent,
    /// (HTTP/2) The stream failed.
    Failed(String),
}

/// A final response, read whole.
pub(crate) struct Reply {
    pub status: u16,
    pub fields: Fields,
    pub body: Vec<u8>,
    /// It announced `Connection: close`.
    pub closes: bool,
    /// Where it lies in [`Seen::received`] (HTTP/1.1).
    pub span: std::ops::Range<usize>,
}

impl Reply {
    /// The id of the origin's answer this claims to be: from the body when it has one
    /// (a whole one: not a `206`'s part of it), from the `x-framing-id` field
    /// otherwise.
    pub(crate) fn id(&self) -> Option<(String, IdFrom)> {
        if !self.body.is_empty() && self.status != 206 {
            let text = String::from_utf8_lossy(&self.body);
            let id = text.strip_prefix("id=")?.split(' ').next()?;
            return Some((id.to_owned(), IdFrom::Body));
        }
        self.fields.get(ID_FIELD).map(|id| (id, IdFrom::Field))
    }
}

/// Where a reply's id was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdFrom {
    Body,
    Field,
}

/// Something wrong with a connection as a whole.
pub(crate) enum Problem {
    /// Bytes where a response should start (or a response's framing) are not a
    /// well-framed response.
    Malformed {
        /// The request whose response was being read.
        request: usize,
        why: String,
        /// Where the bad response starts in [`Seen::received`].
        at: usize,
    },
    /// The connection ended in the middle of a response.
    Truncated { request: usize, at: usize },
    /// Bytes after the last response.
    Leftover { after: Option<usize>, at: usize },
    /// No response, or not all of one, came in time (from `at` on).
    TimedOut { request: usize, at: usize },
    /// The connection could not be made, or broke (HTTP/2).
    Connection(String),
}
