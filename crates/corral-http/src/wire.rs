//! How stored responses cross to the Redis and disk tiers (features `redis`, `disk`):
//! headers as a list
//! of (name, value) lines in order, the body as bytes, and the response's own time as
//! wall-clock milliseconds, so every server computes the same `Age`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::time::Instant;

use crate::content::Content;
use crate::fields::Fields;
use crate::policy::Lifetime;
use crate::stored::{Provenance, StoredResponse, frame_stored};
use crate::vary::VarySpec;

/// A stored response but its body.
#[derive(Serialize, Deserialize)]
pub(crate) struct WireHead {
    status: u16,
    headers: Vec<(String, Bytes)>,
    stored_at_unix_ms: u64,
    lifetime: Lifetime,
    vary: Option<(Vec<String>, String)>,
    provenance: Provenance,
}

#[derive(Serialize, Deserialize)]
struct WireResponse {
    #[serde(flatten)]
    head: WireHead,
    body: Bytes,
}

#[derive(Serialize, Deserialize)]
struct WireVarySpec {
    names: Vec<String>,
    generation: u64,
}

fn to_wall(instant: Instant) -> u64 {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let at = wall
        .checked_sub(now.saturating_duration_since(instant))
        .unwrap_or(UNIX_EPOCH);
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn from_wall(ms: u64) -> Instant {
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    let ago = SystemTime::now().duration_since(at).unwrap_or_default();
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

fn names(names: &[HeaderName]) -> Vec<String> {
    names.iter().map(|n| n.as_str().to_owned()).collect()
}

fn parse_names<E: serde::de::Error>(names: Vec<String>) -> Result<Vec<HeaderName>, E> {
    names
        .into_iter()
        .map(|n| HeaderName::from_bytes(n.as_bytes()).map_err(E::custom))
        .collect()
}

impl StoredResponse {
    /// The response but its body, as a tier writes it.
    pub(crate) fn wire_head(&self) -> WireHead {
        WireHead {
            status: self.status.as_u16(),
            headers: self
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), Bytes::copy_from_slice(v.as_bytes())))
                .collect(),
            stored_at_unix_ms: to_wall(self.stored_at),
            lifetime: self.lifetime.clone(),
            vary: self.vary.as_ref().map(|(n, v)| (names(n), v.clone())),
            provenance: self.provenance,
        }
    }

    /// The response a tier wrote, with its body. What another server (or anyone who
    /// can write to the tier) stored is framed again here: a length that disagrees
    /// with the body is never replayed.
    pub(crate) fn from_wire<E: serde::de::Error>(head: WireHead, body: Content) -> Result<Self, E> {
        let mut headers = HeaderMap::with_capacity(head.headers.len());
        for (name, value) in head.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(E::custom)?;
            let value = HeaderValue::from_maybe_shared(value).map_err(E::custom)?;
            headers.append(name, value);
        }
        let status = StatusCode::from_u16(head.status).map_err(E::custom)?;
        frame_stored(status, &mut headers, body.len());
        Ok(StoredResponse {
            status,
            headers: Fields::from_map(&headers),
            body,
            stored_at: from_wall(head.stored_at_unix_ms),
            lifetime: head.lifetime,
            vary: match head.vary {
                Some((names, values)) => Some((parse_names(names)?, values)),
                None => None,
            },
            provenance: head.provenance,
        })
    }
}

impl Serialize for StoredResponse {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some(body) = self.body.in_memory() else {
            // Such a response is kept in memory only (`Loaded::memory_only`).
            return Err(serde::ser::Error::custom(
                "a body kept on disk is not copied into another tier",
            ));
        };
        WireResponse {
            head: self.wire_head(),
            body: body.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for StoredResponse {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireResponse::deserialize(deserializer)?;
        StoredResponse::from_wire(wire.head, Content::Memory(wire.body))
    }
}

impl Serialize for VarySpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireVarySpec {
            names: names(&self.names),
            generation: self.generation,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for VarySpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireVarySpec::deserialize(deserializer)?;
        Ok(VarySpec {
            names: parse_names(wire.names)?,
            generation: wire.generation,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use corral::codec::{Codec, MessagePack};

    use super::*;
    use crate::stored::Stored;
    use http::header;

    #[test]
    fn a_stored_response_round_trips_with_its_header_lists_and_age() {
        let mut headers = HeaderMap::new();
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        headers.append("etag", HeaderValue::from_static("\"v\""));
        let response = StoredResponse {
            status: StatusCode::NOT_FOUND,
            headers: Fields::from_map(&headers),
            body: Bytes::from_static(b"\x00body").into(),
            stored_at: Instant::now() - Duration::from_secs(30),
            lifetime: Lifetime {
                initial_age: Duration::from_secs(5),
                fresh_for: Duration::from_secs(60),
                stale_while_revalidate: Duration::from_secs(1),
                stale_if_error: Duration::from_secs(2),
                revalidate_when_stale: true,
                always_revalidate: false,
                keep_for: Duration::from_secs(100),
            },
            vary: Some((
                vec![HeaderName::from_static("accept-language")],
                "accept-language=de\u{1f}".into(),
            )),
            provenance: Provenance::Revalidated,
        };
        let stored = Stored::Response(Arc::new(response));
        let bytes = MessagePack.encode(&stored).unwrap();
        let Stored::Response(back) = MessagePack.decode(&bytes).unwrap() else {
            panic!("a response comes back as a response")
        };
        assert_eq!(back.status, StatusCode::NOT_FOUND);
        let cookies: Vec<_> = back.headers.get_all(&header::SET_COOKIE).collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(back.body, b"\x00body"[..]);
        let age = back.age(Instant::now()).as_secs();
        assert!((34..=36).contains(&age), "age {age}");
        assert_eq!(back.provenance, Provenance::Revalidated);
        assert_eq!(back.vary.as_ref().unwrap().0[0], "accept-language");
        assert!(back.lifetime.revalidate_when_stale);
    }

    #[test]
    fn indexes_and_markers_round_trip_and_garbage_does_not_panic() {
        let spec = Stored::Variants(Arc::new(VarySpec {
            names: vec![HeaderName::from_static("accept-encoding")],
            generation: 42,
        }));
        let Stored::Variants(back) = MessagePack
            .decode(&MessagePack.encode(&spec).unwrap())
            .unwrap()
        else {
            panic!("an index comes back as an index")
        };
        assert_eq!(back.generation, 42);
        let marker = MessagePack.encode(&Stored::Uncacheable).unwrap();
        assert!(matches!(
            MessagePack.decode(&marker).unwrap(),
            Stored::Uncacheable
        ));
        assert!(Codec::<Stored>::decode(&MessagePack, b"\x92\x01\x02").is_err());
    }

    #[test]
    fn a_record_whose_length_disagrees_with_its_body_is_framed_by_the_body_and_says_no_age() {
        let mut headers = HeaderMap::new();
        headers.append("content-length", HeaderValue::from_static("0"));
        headers.append("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.append("age", HeaderValue::from_static("99999"));
        // As anyone who can write to Redis could store it: the fields as they are.
        let hostile = StoredResponse {
            headers: Fields::from_map(&headers),
            body: Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\nsmuggled").into(),
            ..StoredResponse::sample(&HeaderMap::new())
        };
        let bytes = MessagePack
            .encode(&Stored::Response(Arc::new(hostile)))
            .unwrap();
        let Stored::Response(back) = MessagePack.decode(&bytes).unwrap() else {
            panic!("a response comes back as a response")
        };
        let lengths: Vec<_> = back.headers.get_all(&header::CONTENT_LENGTH).collect();
        assert_eq!(lengths, ["27"]);
        assert!(back.headers.get(&header::TRANSFER_ENCODING).is_none());
        assert!(
            back.headers.get(&header::AGE).is_none(),
            "the cache states the age"
        );
    }
}
