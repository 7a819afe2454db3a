//! The bytes the origin answers one request with: its plan rendered, with an id that
//! names the answer in a header (`x-framing-id`) and at the start of the body
//! (`id=… target=…`), so whoever receives it can tell where it came from.

use fastrand::Rng;

use crate::case::{AfterBody, Framing, Plan, Then, chunks, filler};
use crate::wire::encode_chunked;

/// The field that names an answer.
pub(crate) const ID_FIELD: &str = "x-framing-id";

/// The entity tag of answers whose plan has one (every target's the same: the origin
/// only ever compares it with what the cache stored for that target).
pub(crate) const ETAG: &str = "\"fz\"";

/// What one request is answered with.
pub(crate) struct Rendered {
    pub status: u16,
    /// Everything written to the connection.
    pub wire: Vec<u8>,
    /// What a correct recipient reads as the body.
    pub body: Vec<u8>,
    /// A complete response written after this one that answers nothing: its id and
    /// body.
    pub smuggled: Option<(String, Vec<u8>)>,
    /// Whether the origin closes the connection after writing.
    pub closes: bool,
}

/// The request being answered, as far as the answer depends on it.
pub(crate) struct Answering<'a> {
    pub id: &'a str,
    /// The id of a smuggled response written after this one, if the plan has one.
    pub smuggled_id: &'a str,
    pub target: &'a str,
    pub to_head: bool,
    /// `If-None-Match` names [`ETAG`].
    pub matches_etag: bool,
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        304 => "Not Modified",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Whatever",
    }
}

/// The body of an answer: its id and target, then filler.
pub(crate) fn body_of(id: &str, target: &str, filler: &[u8]) -> Vec<u8> {
    let mut body = format!("id={id} target={target} ").into_bytes();
    body.extend_from_slice(filler);
    body
}

/// A complete, well-framed response that nobody asked for.
fn smuggled_response(id: &str, target: &str) -> (Vec<u8>, Vec<u8>) {
    let body = body_of(id, target, b"smuggled");
    let mut wire = format!(
        "HTTP/1.1 200 OK\r\n{ID_FIELD}: {id}\r\ncache-control: max-age=60\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    wire.extend_from_slice(&body);
    (wire, body)
}

/// Renders `plan` as the answer to `request`.
pub(crate) fn render(plan: &Plan, request: &Answering<'_>) -> Rendered {
    let mut rng = Rng::with_seed(plan.chunk_seed);
    let would_be = {
        let filler = filler(&mut rng, plan.padding);
        body_of(request.id, request.target, &filler)
    };
    let mut wire = Vec::new();
    for status in &plan.interim {
        wire.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(*status)).as_bytes());
        if *status == 103 {
            wire.extend_from_slice(b"link: </hint.css>; rel=preload\r\n");
        }
        wire.extend_from_slice(b"\r\n");
    }
    if plan.status == 101 {
        // Switching protocols unasked, then "speaking" the new protocol: a response.
        let (smuggled, body) = smuggled_response(request.smuggled_id, request.target);
        wire.extend_from_slice(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\n{ID_FIELD}: {}\r\nconnection: upgrade\r\nupgrade: framing\r\n\r\n",
                request.id
            )
            .as_bytes(),
        );
        wire.extend_from_slice(&smuggled);
        return Rendered {
            status: 101,
            wire,
            body: Vec::new(),
            smuggled: Some((request.smuggled_id.to_owned(), body)),
            closes: true,
        };
    }
    let status = if plan.etag && request.matches_etag {
        304
    } else {
        plan.status
    };
    let bodiless = request.to_head || status == 204 || status == 304;
    wire.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
    wire.extend_from_slice(format!("{ID_FIELD}: {}\r\n", request.id).as_bytes());
    if let Some(cache_control) = plan.cache_control {
        wire.extend_from_slice(format!("cache-control: {cache_control}\r\n").as_bytes());
    }
    if plan.etag {
        wire.extend_from_slice(format!("etag: {ETAG}\r\n").as_bytes());
    }
    if let Some((name, value)) = plan.tags {
        wire.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    for age in plan.age {
        wire.extend_from_slice(format!("age: {age}\r\n").as_bytes());
    }
    let length = format!("content-length: {}\r\n", would_be.len());
    let (fields, encoded) = match plan.framing {
        Framing::Length => (length, would_be.clone()),
        Framing::Chunked {
            extensions,
            trailers,
        } => (
            "transfer-encoding: chunked\r\n".to_owned(),
            encode_chunked(&chunks(&mut rng, would_be.clone()), extensions, trailers),
        ),
        Framing::LengthAndChunked {
            declared,
            length_first,
        } => {
            let length = format!("content-length: {}\r\n", declared.of(would_be.len()));
            let chunked = "transfer-encoding: chunked\r\n";
            (
                if length_first {
                    length + chunked
                } else {
                    chunked.to_owned() + &length
                },
                encode_chunked(&chunks(&mut rng, would_be.clone()), false, false),
            )
        }
        Framing::UntilClose => (String::new(), would_be.clone()),
    };
    wire.extend_from_slice(fields.as_bytes());
    let until_close = matches!(plan.framing, Framing::UntilClose);
    if plan.then == Then::Close {
        wire.extend_from_slice(b"connection: close\r\n");
    }
    wire.extend_from_slice(b"\r\n");
    // A HEAD's answer has no body; a 204 or 304 gets its would-be body anyway, which a
    // recipient must take for junk.
    if !request.to_head {
        wire.extend_from_slice(&encoded);
    }
    // Bytes after a body that ends with the connection would be part of it.
    let mut smuggled = None;
    if bodiless || !until_close {
        match plan.after_body {
            AfterBody::Nothing => {}
            AfterBody::Junk => {
                wire.extend_from_slice(format!("JUNK after {}\r\n", request.id).as_bytes())
            }
            AfterBody::SmuggledResponse => {
                let (bytes, body) = smuggled_response(request.smuggled_id, request.target);
                wire.extend_from_slice(&bytes);
                smuggled = Some((request.smuggled_id.to_owned(), body));
            }
        }
    }
    Rendered {
        status,
        wire,
        body: if bodiless { Vec::new() } else { would_be },
        smuggled,
        closes: until_close || plan.then != Then::KeepAlive,
    }
}
