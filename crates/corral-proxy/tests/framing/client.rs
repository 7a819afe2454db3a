//! The HTTP/1.1 client: writes a connection's requests as raw bytes (all at once, or
//! each after the previous answer) and reads the proxy's answers with the strict
//! parser, keeping every byte both ways.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::case::{Body, Request};
use crate::exchange::{Outcome, Problem, Reply, Seen};
use crate::wire::{
    Framing, Inbound, Malformed, Stop, chunked_body, encode_chunked, exactly, response_framing,
    response_head,
};

/// How long the proxy may take to answer one request.
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// How long the client waits for the proxy to close once it has closed its side.
pub(crate) const CLOSE_WITHIN: Duration = Duration::from_secs(2);

/// The request as bytes on the wire.
pub(crate) fn encode(request: &Request) -> Vec<u8> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: fuzz.test\r\nx-framing-tag: {}\r\n",
        request.method, request.target, request.tag
    );
    if request.expect_continue {
        head.push_str("expect: 100-continue\r\n");
    }
    if request.close {
        head.push_str("connection: close\r\n");
    }
    if let Some(range) = request.range_field() {
        head.push_str(&format!("range: {range}\r\n"));
    }
    let chunked = "transfer-encoding: chunked\r\n";
    let (fields, body) = match &request.body {
        Body::None => (String::new(), Vec::new()),
        Body::ZeroLength => ("content-length: 0\r\n".to_owned(), Vec::new()),
        Body::Length(bytes) => (
            format!("content-length: {}\r\n", bytes.len()),
            bytes.clone(),
        ),
        Body::Chunked {
            chunks,
            extensions,
            trailers,
        } => (
            chunked.to_owned(),
            encode_chunked(chunks, *extensions, *trailers),
        ),
        Body::LengthAndChunked {
            chunks,
            declared,
            length_first,
        } => {
            let length = format!("content-length: {declared}\r\n");
            (
                if *length_first {
                    length + chunked
                } else {
                    chunked.to_owned() + &length
                },
                encode_chunked(chunks, false, false),
            )
        }
        Body::MalformedChunked(bytes) => (chunked.to_owned(), bytes.clone()),
    };
    head.push_str(&fields);
    head.push_str("\r\n");
    let mut wire = head.into_bytes();
    wire.extend_from_slice(&body);
    wire
}

/// Why reading a response failed.
enum Unread {
    /// The connection ended cleanly before the response started.
    Ended,
    Stopped(Stop),
}

/// Reads the next final response (interim ones skipped, a 101 returned), strictly.
async fn read_reply(inbound: &mut Inbound, to_head: bool) -> Result<Reply, Unread> {
    let deadline = Some(Instant::now() + ANSWER_WITHIN);
    loop {
        match inbound.await_bytes(deadline).await {
            Ok(true) => {}
            Ok(false) => return Err(Unread::Ended),
            Err(stop) => return Err(Unread::Stopped(stop)),
        }
        let start = inbound.consumed();
        let stopped = Unread::Stopped;
        let head = inbound
            .parse(deadline, response_head)
            .await
            .map_err(stopped)?;
        let framing =
            response_framing(head.status, to_head, &head.fields).map_err(|m| stopped(m.into()))?;
        if (100..200).contains(&head.status) && head.status != 101 {
            continue;
        }
        let body = match framing {
            Framing::Empty => Vec::new(),
            Framing::Length(n) => inbound.parse(deadline, exactly(n)).await.map_err(stopped)?,
            Framing::Chunked => inbound
                .parse(deadline, chunked_body)
                .await
                .map_err(stopped)?,
            Framing::UntilClose => inbound.until_end(deadline).await.map_err(stopped)?,
        };
        return Ok(Reply {
            status: head.status,
            closes: head.fields.lists("connection", "close"),
            fields: head.fields,
            body,
            span: start..inbound.consumed(),
        });
    }
}

/// Talks to the proxy at `addr` over one connection.
pub(crate) async fn converse(
    addr: SocketAddr,
    tls: bool,
    requests: &[Request],
    pipelined: bool,
) -> Seen {
    let mut seen = Seen::default();
    let stream = match crate::tls::connect(addr, tls, b"http/1.1").await {
        Ok(stream) => stream,
        Err(error) => {
            seen.problems
                .push(Problem::Connection(format!("connect: {error}")));
            return seen;
        }
    };
    let (read, mut write) = tokio::io::split(stream);
    let mut inbound = Inbound::new(read, None);
    if pipelined {
        for request in requests {
            seen.sent.extend_from_slice(&encode(request));
        }
        // The proxy may close part way; what it does then is what is checked.
        let _ = write.write_all(&seen.sent).await;
    }
    // Once a request or response says the connection ends, nothing more is written
    // and whatever still comes is an answer given against the rules.
    let mut over = false;
    let mut broken = false;
    for (n, request) in requests.iter().enumerate() {
        if broken || over {
            if !pipelined {
                seen.outcomes.push(Outcome::NotSent);
                continue;
            }
            if broken {
                seen.outcomes.push(Outcome::Unanswered);
                continue;
            }
        }
        if !pipelined {
            let wire = encode(request);
            seen.sent.extend_from_slice(&wire);
            if write.write_all(&wire).await.is_err() {
                seen.outcomes.push(Outcome::NotSent);
                over = true;
                continue;
            }
        }
        let at = inbound.consumed();
        match read_reply(&mut inbound, request.method == "HEAD").await {
            Ok(reply) => {
                over |= reply.closes || request.demands_close() || reply.status == 101;
                seen.outcomes.push(Outcome::Answered(reply));
            }
            Err(Unread::Ended) => {
                seen.outcomes.push(Outcome::Unanswered);
                over = true;
            }
            Err(Unread::Stopped(stop)) => {
                seen.outcomes.push(Outcome::Unanswered);
                broken = true;
                seen.problems.push(match stop {
                    Stop::Malformed(Malformed(why)) => Problem::Malformed {
                        request: n,
                        why,
                        at,
                    },
                    Stop::Closed => Problem::Truncated { request: n, at },
                    Stop::TimedOut => Problem::TimedOut { request: n, at },
                });
            }
        }
    }
    if !broken {
        let _ = write.shutdown().await;
        let at = inbound.consumed();
        if !inbound.drain(CLOSE_WITHIN).await.is_empty() {
            let after = seen
                .outcomes
                .iter()
                .rposition(|o| matches!(o, Outcome::Answered(_)));
            seen.problems.push(Problem::Leftover { after, at });
        }
    }
    seen.received = inbound.seen;
    seen
}
