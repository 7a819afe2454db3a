//! The HTTP/2 client: prior knowledge over a raw socket (the `h2` crate), one stream per
//! request, opened all at once or one after another; HTTP/2 frames the messages, so
//! what is checked here is what the streams carry.

use std::net::SocketAddr;

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use tokio::time::timeout;

use crate::case::{Body, Request};
use crate::client::{ANSWER_WITHIN, CLOSE_WITHIN};
use crate::exchange::{Outcome, Problem, Reply, Seen};
use crate::wire::Fields;

/// Opens a stream for `request` and sends its body.
async fn open(client: &SendRequest<Bytes>, request: &Request) -> Result<ResponseFuture, String> {
    let mut client = client.clone().ready().await.map_err(|e| e.to_string())?;
    let mut head = http::Request::builder()
        .method(request.method.as_str())
        .uri(format!("http://fuzz.test{}", request.target))
        .header("x-framing-tag", &request.tag);
    if let Some(range) = request.range_field() {
        head = head.header("range", range);
    }
    let chunks: Vec<Vec<u8>> = match &request.body {
        Body::None => Vec::new(),
        Body::ZeroLength => {
            head = head.header("content-length", "0");
            Vec::new()
        }
        Body::Length(bytes) => {
            head = head.header("content-length", bytes.len());
            vec![bytes.clone()]
        }
        Body::Chunked { chunks, .. } => chunks.clone(),
        Body::LengthAndChunked { .. } | Body::MalformedChunked(_) => {
            return Err("an HTTP/1.1 framing on an HTTP/2 request".into());
        }
    };
    let head = head.body(()).map_err(|e| e.to_string())?;
    let bodiless = matches!(request.body, Body::None | Body::ZeroLength);
    let (response, mut stream) = client
        .send_request(head, bodiless)
        .map_err(|e| e.to_string())?;
    if !bodiless {
        for chunk in chunks {
            stream
                .send_data(Bytes::from(chunk), false)
                .map_err(|e| e.to_string())?;
        }
        stream
            .send_data(Bytes::new(), true)
            .map_err(|e| e.to_string())?;
    }
    Ok(response)
}

/// Waits for the response on a stream and reads its body.
async fn receive(response: ResponseFuture, to_head: bool) -> Outcome {
    let read = async {
        let (parts, mut body) = response
            .await
            .map_err(|e| {
                let why = if e.is_library() && e.reason() == Some(h2::Reason::PROTOCOL_ERROR) {
                    " (a response head h2 rejects, e.g. END_STREAM with a non-zero content-length)"
                } else {
                    ""
                };
                format!("no response: {e}{why}")
            })?
            .into_parts();
        let status = parts.status.as_u16();
        let fields = Fields(
            parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect(),
        );
        let mut bytes = Vec::new();
        let broken = |e: h2::Error, bytes: &[u8]| {
            let why = if e.is_library() && e.reason() == Some(h2::Reason::PROTOCOL_ERROR) {
                if to_head {
                    " (DATA on the response to a HEAD, RFC 9110 §9.3.2)"
                } else {
                    " (DATA that disagrees with its content-length, RFC 9113 §8.1.1)"
                }
            } else {
                ""
            };
            format!(
                "a {status} response ({}) broke after {} bytes of body: {e}{why}",
                fields
                    .0
                    .iter()
                    .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v)))
                    .collect::<Vec<_>>()
                    .join(", "),
                bytes.len()
            )
        };
        while let Some(data) = body.data().await {
            let data = data.map_err(|e| broken(e, &bytes))?;
            let _ = body.flow_control().release_capacity(data.len());
            bytes.extend_from_slice(&data);
        }
        body.trailers().await.map_err(|e| broken(e, &bytes))?;
        let lengthless = to_head || status == 204 || status == 304;
        if let Some(length) = fields.get("content-length").filter(|_| !lengthless)
            && length != bytes.len().to_string()
        {
            return Err(format!(
                "content-length: {length} on a stream that carried {} bytes",
                bytes.len()
            ));
        }
        Ok::<_, String>(Reply {
            status,
            fields,
            body: bytes,
            closes: false,
            span: 0..0,
        })
    };
    match timeout(ANSWER_WITHIN, read).await {
        Ok(Ok(reply)) => Outcome::Answered(reply),
        Ok(Err(error)) => Outcome::Failed(error),
        Err(_) => Outcome::Failed(format!("no response within {ANSWER_WITHIN:?}")),
    }
}

/// Talks to the proxy at `addr` over one h2c connection.
pub(crate) async fn converse(
    addr: SocketAddr,
    tls: bool,
    requests: &[Request],
    concurrent: bool,
) -> Seen {
    let mut seen = Seen::default();
    let connected = async {
        let stream = crate::tls::connect(addr, tls, b"h2")
            .await
            .map_err(|e| e.to_string())?;
        h2::client::handshake(stream)
            .await
            .map_err(|e| e.to_string())
    };
    let (client, connection) = match connected.await {
        Ok(pair) => pair,
        Err(error) => {
            seen.problems.push(Problem::Connection(error));
            return seen;
        }
    };
    let driver = tokio::spawn(connection);
    if concurrent {
        let mut opened = Vec::new();
        for request in requests {
            opened.push(open(&client, request).await);
        }
        for (request, response) in requests.iter().zip(opened) {
            seen.outcomes.push(match response {
                Ok(response) => receive(response, request.method == "HEAD").await,
                Err(error) => Outcome::Failed(error),
            });
        }
    } else {
        for request in requests {
            seen.outcomes.push(match open(&client, request).await {
                Ok(response) => receive(response, request.method == "HEAD").await,
                Err(error) => Outcome::Failed(error),
            });
        }
    }
    drop(client);
    if let Ok(Ok(Err(error))) = timeout(CLOSE_WITHIN, driver).await {
        seen.problems.push(Problem::Connection(format!(
            "the connection failed: {error}"
        )));
    }
    seen
}
