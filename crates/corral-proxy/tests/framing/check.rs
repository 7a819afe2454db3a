//! The invariants, checked once a case is over. At the origin: every client request
//! arrived at most once, unchanged (method, target, body; a bodiless GET or HEAD may
//! come as the cache's GET), framed as RFC 9112 says, and nothing arrived that no
//! client sent. At the client: every answer is one well-framed response that the
//! origin sent for the same target, whole (or the proxy's own short error), and a
//! request that only its own answer may answer got its own.

use std::collections::{BTreeMap, HashMap};

use crate::case::{Body, Case, Protocol, Request};
use crate::client::{ANSWER_WITHIN, encode};
use crate::exchange::{IdFrom, Outcome, Problem, Reply, Seen};
use crate::origin::{CutShort, Log, PATIENCE, State};
use crate::report::{Kind, Violation};

/// A client request and what the client did with it.
struct Sent<'a> {
    request: &'a Request,
    /// Written on an HTTP/1.1 connection (so its bytes are worth showing).
    http1: bool,
    written: bool,
    /// Why the connection was over before this request (so the proxy must not
    /// process it).
    after_close: Option<String>,
}

/// Checks a finished case; `seen` has one entry per connection of `case`.
pub(crate) fn check(case: &Case, log: &Log, seen: &[Seen], panics: &[String]) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut sent: HashMap<&str, Sent<'_>> = HashMap::new();
    for (c, (connection, seen)) in case.connections.iter().zip(seen).enumerate() {
        let mut closed_by: Option<String> = None;
        for (request, outcome) in connection.requests.iter().zip(&seen.outcomes) {
            sent.insert(
                &request.tag,
                Sent {
                    request,
                    http1: matches!(connection.protocol, Protocol::Http1 { .. }),
                    written: !matches!(outcome, Outcome::NotSent),
                    after_close: closed_by.clone(),
                },
            );
            if let Outcome::Answered(reply) = outcome {
                check_reply(request, reply, seen, c, log, &closed_by, &mut violations);
                if closed_by.is_none() && (reply.closes || reply.status == 101) {
                    closed_by = Some(format!(
                        "the {} answering [{}]",
                        if reply.closes {
                            "`Connection: close`"
                        } else {
                            "101"
                        },
                        request.tag
                    ));
                }
            }
            if let Outcome::Failed(error) = outcome {
                violations.push(Violation::new(
                    Kind::H2Failure,
                    format!("the HTTP/2 stream of {request} failed: {error}"),
                ));
            }
            if closed_by.is_none() && request.demands_close() {
                closed_by = Some(format!(
                    "[{}] ({}, which obliges the server to close)",
                    request.tag,
                    if request.close {
                        "Connection: close".to_owned()
                    } else {
                        request.body.to_string()
                    }
                ));
            }
        }
        check_connection(connection.requests.as_slice(), seen, c, &mut violations);
    }
    check_origin(log, &sent, &mut violations);
    for panic in panics {
        violations.push(Violation::new(
            Kind::Panic,
            format!("the proxy panicked: {panic}"),
        ));
    }
    violations
}

/// The problems of one client connection as a whole.
fn check_connection(requests: &[Request], seen: &Seen, c: usize, out: &mut Vec<Violation>) {
    let tag = |n: usize| requests.get(n).map_or("?", |r| r.tag.as_str());
    let from = |at: usize| &seen.received[at.min(seen.received.len())..];
    for problem in &seen.problems {
        let violation = match problem {
            Problem::Malformed { request, why, at } => Violation::new(
                Kind::MalformedResponse,
                format!(
                    "client connection {c}: the response to [{}] is not well framed: {why}",
                    tag(*request)
                ),
            )
            .dump("the client wrote", &seen.sent)
            .dump("the proxy sent, from that response on", from(*at)),
            Problem::Truncated { request, at } => Violation::new(
                Kind::TruncatedResponse,
                format!(
                    "client connection {c}: the connection ended in the middle of the response to [{}]",
                    tag(*request)
                ),
            )
            .dump("the client wrote", &seen.sent)
            .dump("the proxy sent, from that response on", from(*at)),
            Problem::Leftover { after, at } => Violation::new(
                Kind::ResponseSplitting,
                format!(
                    "client connection {c}: {} bytes after the last response ({}): response splitting",
                    seen.received.len() - at,
                    after.map_or("there was none".to_owned(), |n| format!(
                        "the one to [{}]",
                        tag(n)
                    ))
                ),
            )
            .dump("the client wrote", &seen.sent)
            .dump("the proxy sent", &seen.received)
            .dump("of which left over", from(*at)),
            Problem::TimedOut { request, at } if from(*at).is_empty() => Violation::new(
                Kind::Timeout,
                format!(
                    "client connection {c}: no response to [{}] within {ANSWER_WITHIN:?}",
                    tag(*request)
                ),
            )
            .dump("the client wrote", &seen.sent)
            .dump("the proxy sent", &seen.received),
            Problem::TimedOut { request, at } => Violation::new(
                Kind::Timeout,
                format!(
                    "client connection {c}: the response to [{}] stopped part way for {ANSWER_WITHIN:?}: its framing announces more than the proxy sent",
                    tag(*request)
                ),
            )
            .dump("the client wrote", &seen.sent)
            .dump("the proxy sent, from that response on", from(*at)),
            Problem::Connection(error) => Violation::new(
                Kind::ConnectionFailure,
                format!("client connection {c}: {error}"),
            ),
        };
        out.push(violation);
    }
}

/// The bytes of a reply as they came (HTTP/1.1), or its body (HTTP/2).
fn reply_bytes<'a>(seen: &'a Seen, reply: &'a Reply) -> &'a [u8] {
    seen.received
        .get(reply.span.clone())
        .filter(|b| !b.is_empty())
        .unwrap_or(&reply.body)
}

/// One answer a client read.
fn check_reply(
    request: &Request,
    reply: &Reply,
    seen: &Seen,
    c: usize,
    log: &Log,
    closed_by: &Option<String>,
    out: &mut Vec<Violation>,
) {
    let shown = |kind: Kind, what: String| {
        Violation::new(kind, format!("client connection {c}: {what}"))
            .dump("the response", reply_bytes(seen, reply))
    };
    if let Some(why) = closed_by {
        out.push(shown(
            Kind::AfterClose,
            format!("{request} was answered although {why} came before it on its connection"),
        ));
    }
    if reply.status == 101 {
        out.push(shown(
            Kind::UnsolicitedUpgrade,
            format!("{request}, which asked for no upgrade, got a 101 Switching Protocols"),
        ));
        return;
    }
    let Some((id, from)) = reply.id() else {
        if reply.status < 400 {
            out.push(shown(
                Kind::ForeignResponse,
                format!(
                    "{request} got a {} whose body the origin never sent",
                    reply.status
                ),
            ));
        }
        return;
    };
    let Some(answer) = log.answers.get(&id) else {
        out.push(shown(
            Kind::ForeignResponse,
            format!("{request} got a response claiming id {id}, which the origin never sent"),
        ));
        return;
    };
    let Some(arrival) = log.arrival_of(answer) else {
        out.push(shown(
            Kind::ResponseSplitting,
            format!(
                "{request} got {id}: the response the origin wrote after another one, answering nothing (a desynchronized origin connection, or a split response)"
            ),
        ));
        return;
    };
    let fetched_for = format!(
        "`{} {}` [{}]",
        arrival.method,
        arrival.target,
        arrival.tag.as_deref().unwrap_or("no tag")
    );
    if answer.target != request.target {
        out.push(shown(
            Kind::WrongTarget,
            format!("{request} got {id}, the origin's answer to {fetched_for}: another target"),
        ));
    }
    if request.answered_only_by_itself() {
        if arrival.tag.as_deref() != Some(request.tag.as_str()) {
            out.push(shown(
                Kind::WrongAnswer,
                format!(
                    "{request} may only get the origin's answer to itself, but got {id}, the answer to {fetched_for}"
                ),
            ));
        }
    } else if !arrival.body.is_empty() || !matches!(arrival.method.as_str(), "GET" | "HEAD") {
        out.push(shown(
            Kind::WrongAnswer,
            format!(
                "{request} got {id}, the answer to {fetched_for}, which had a body of {} bytes: such an answer is its requester's alone, never cached or shared",
                arrival.body.len()
            ),
        ));
    }
    let bodiless = request.method == "HEAD" || reply.status == 204 || reply.status == 304;
    let expected: &[u8] = if bodiless {
        &[]
    } else if matches!(reply.status, 206 | 416) {
        // The origin never answers either: the cache made it from a stored response.
        // One a 304 revalidated carries the 304's id, its body an earlier answer's.
        let wholes: Vec<&[u8]> = if answer.status == 304 {
            log.answers
                .values()
                .filter(|a| a.target == answer.target && a.status == 200)
                .map(|a| a.body.as_slice())
                .collect()
        } else {
            vec![&answer.body]
        };
        let parts: Vec<_> = wholes
            .iter()
            .map(|whole| ranged_part(request, reply, whole))
            .collect();
        match parts
            .iter()
            .find_map(|p| p.as_ref().ok().filter(|p| **p == reply.body))
        {
            Some(part) => part,
            None => {
                let why = parts
                    .into_iter()
                    .find_map(Result::err)
                    .unwrap_or_else(|| "a part of no body the origin sent".to_owned());
                out.push(shown(Kind::RangeMisstated, format!("{request} got {why}")));
                return;
            }
        }
    } else {
        &answer.body
    };
    if reply.body != expected {
        out.push(
            shown(
                Kind::BodyAltered,
                format!(
                    "{request} got a {} with a body of {} bytes; the origin's answer {id} has {} bytes{}",
                    reply.status,
                    reply.body.len(),
                    expected.len(),
                    if bodiless { " (none here)" } else { "" }
                ),
            )
            .dump("the body the origin sent", expected),
        );
    }
    let hit = reply.fields.all("x-cache").any(|v| v == b"HIT");
    let ages: Vec<&[u8]> = reply.fields.all("age").collect();
    let one_number =
        matches!(ages.as_slice(), [age] if !age.is_empty() && age.iter().all(u8::is_ascii_digit));
    if hit && !one_number {
        out.push(shown(
            Kind::AgeMisstated,
            format!(
                "{request} was answered from the cache with {} `Age` line(s), {:?}: the cache states its own age, once",
                ages.len(),
                ages.iter().map(|a| String::from_utf8_lossy(a)).collect::<Vec<_>>()
            ),
        ));
    }
    if from == IdFrom::Body && reply.status != answer.status {
        out.push(shown(
            Kind::StatusAltered,
            format!(
                "{request} got a {} but the origin answered {id} with {}",
                reply.status, answer.status
            ),
        ));
    }
}

/// The part of `whole` a cache-made `206` (or `416`) must carry for `request`'s
/// `Range`, its `Content-Range` checked; why it is wrong otherwise.
fn ranged_part<'a>(request: &Request, reply: &Reply, whole: &'a [u8]) -> Result<&'a [u8], String> {
    let Some((first, last)) = request.range else {
        return Err(format!("a {} though it asked for no range", reply.status));
    };
    let length = whole.len() as u64;
    let content_range = reply.fields.get("content-range").unwrap_or_default();
    let (expected, part) = if first < length {
        let last = last.min(length - 1);
        let part = &whole[first as usize..=last as usize];
        (format!("bytes {first}-{last}/{length}"), part)
    } else {
        (format!("bytes */{length}"), &whole[..0])
    };
    let status = if first < length { 206 } else { 416 };
    if reply.status != status || content_range != expected {
        return Err(format!(
            "a {} with `Content-Range: {content_range}`; a {status} with `{expected}` answers it from a body of {length} bytes",
            reply.status
        ));
    }
    Ok(part)
}

/// What the origin received.
fn check_origin(log: &Log, sent: &HashMap<&str, Sent<'_>>, out: &mut Vec<Violation>) {
    let received = |c: usize| {
        (
            format!("origin connection {c} received"),
            log.received.get(c).map_or(&[][..], Vec::as_slice),
        )
    };
    for violation in &log.violations {
        let (label, bytes) = received(violation.connection);
        out.push(
            Violation::new(
                Kind::OriginFraming,
                format!(
                    "origin connection {}: {}",
                    violation.connection, violation.what
                ),
            )
            .dump(label, bytes),
        );
    }
    let mut times: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ranged_times: BTreeMap<&str, usize> = BTreeMap::new();
    for arrival in &log.arrivals {
        let (label, bytes) = received(arrival.connection);
        let at_origin = format!(
            "`{} {}` (tag {})",
            arrival.method,
            arrival.target,
            arrival.tag.as_deref().unwrap_or("none")
        );
        let Some(client) = arrival.tag.as_deref().and_then(|t| sent.get(t)) else {
            out.push(
                Violation::new(
                    Kind::SmuggledRequest,
                    format!(
                        "origin connection {}: received {at_origin}, which no client sent",
                        arrival.connection
                    ),
                )
                .dump(label, bytes),
            );
            continue;
        };
        let request = client.request;
        let show = |kind: Kind, what: String| {
            let mut violation = Violation::new(
                kind,
                format!("origin connection {}: {what}", arrival.connection),
            );
            if client.http1 {
                violation = violation.dump("the client wrote", &encode(request));
            }
            violation.dump(label.clone(), bytes)
        };
        // A range request whose whole response was too large to store is asked of
        // the origin once more, with its `Range`: counted apart.
        let counted = if arrival.range.is_some() {
            &mut ranged_times
        } else {
            &mut times
        };
        *counted.entry(request.tag.as_str()).or_default() += 1;
        if arrival.range.is_some() && arrival.range != request.range_field() {
            out.push(show(
                Kind::RequestAltered,
                format!(
                    "{request} reached the origin with `Range: {}`",
                    arrival.range.as_deref().unwrap_or_default()
                ),
            ));
        }
        if !client.written {
            out.push(show(
                Kind::SmuggledRequest,
                format!("received {request}, which the client never wrote"),
            ));
        }
        if let Some(why) = &client.after_close {
            out.push(show(
                Kind::AfterClose,
                format!(
                    "received {request} although {why} came before it on its client connection"
                ),
            ));
        }
        let as_fetch = arrival.method == "GET"
            && matches!(request.method.as_str(), "GET" | "HEAD")
            && !request.body.has_content();
        if arrival.method != request.method && !as_fetch {
            out.push(show(
                Kind::RequestAltered,
                format!(
                    "{request} reached the origin as `{} {}`",
                    arrival.method, arrival.target
                ),
            ));
        }
        if arrival.target != request.target {
            out.push(show(
                Kind::RequestAltered,
                format!("{request} reached the origin for `{}`", arrival.target),
            ));
        }
        let framing = match (&arrival.content_length, arrival.chunked) {
            (Some(length), true) => format!("Content-Length: {length} and chunked"),
            (Some(length), false) => format!("Content-Length: {length}"),
            (None, true) => "chunked".to_owned(),
            (None, false) => "no length".to_owned(),
        };
        match (&arrival.state, request.body.content()) {
            (State::Reading | State::CutShort(CutShort::Silent), _) => out.push(show(
                Kind::OriginDesync,
                format!(
                    "{request} reached the origin announcing a body ({framing}); after {PATIENCE:?} the origin had {} bytes of it and the proxy sent no more: an origin reading on takes the proxy's next request for this body",
                    arrival.body.len()
                ),
            )),
            (State::CutShort(CutShort::Closed), Some(_)) => out.push(show(
                Kind::RequestAltered,
                format!(
                    "the proxy closed the origin connection in the middle of the body of {request} ({framing}, {} bytes in)",
                    arrival.body.len()
                ),
            )),
            (State::Answered(_), None) => out.push(show(
                Kind::RequestAltered,
                format!("{request} reached the origin whole ({framing}): a malformed body forwarded as a well-formed one"),
            )),
            (State::Answered(_), Some(content)) if arrival.body != content => out.push(
                show(
                    Kind::RequestAltered,
                    format!(
                        "{request} reached the origin with a body of {} bytes ({framing}) instead of {}",
                        arrival.body.len(),
                        content.len()
                    ),
                )
                .dump("the body the client meant", &content)
                .dump("the body the origin read", &arrival.body),
            ),
            _ => {}
        }
        // Without content, nothing may claim some: no length but 0, no chunked coding
        // where the client sent no framing at all, no expectation (RFC 9110 §10.1.1).
        let claims_length = arrival.content_length.as_deref().is_some_and(|l| l != "0");
        let unframed = matches!(request.body, Body::None);
        if !request.body.has_content()
            && (claims_length || (unframed && arrival.chunked) || arrival.expect_continue)
        {
            out.push(show(
                Kind::PhantomBody,
                format!(
                    "{request} reached the origin claiming a body: {framing}{}",
                    if arrival.expect_continue {
                        ", Expect: 100-continue"
                    } else {
                        ""
                    }
                ),
            ));
        }
    }
    for (tag, n) in times.into_iter().chain(ranged_times) {
        if n > 1 {
            out.push(Violation::new(
                Kind::RepeatedRequest,
                format!("[{tag}] reached the origin {n} times"),
            ));
        }
    }
}
