//! [`TierForm`]: how the disk tier writes what the HTTP cache keeps. A response's head
//! (status, fields in order, lifetime, variant) is MessagePack and its body follows as
//! raw bytes, so a response read back from disk shares the buffer its file was read
//! into instead of copying its body; indexes and markers are MessagePack whole. A
//! response whose file is long (over 1 MiB) keeps its body in the file, read in chunks
//! as it is served; a large body arriving from the origin is written in this form as
//! it arrives ([`stream_head`], `spool.rs`).
//!
//! ```text
//! 0     1              5
//! | 0   | head length  | head (MessagePack) | body...     a response
//! | 1   | entry (MessagePack)                            an index or a marker
//! ```

use std::sync::Arc;

use bytes::Bytes;
use corral::codec::{Codec, CodecError, MessagePack};
use corral::disk::FilePayload;

use crate::content::Content;
use crate::stored::{Stored, StoredResponse};
use crate::wire::WireHead;

const RESPONSE: u8 = 0;
const OTHER: u8 = 1;
const NAME: &str = "corral-http stored form";

/// Room for a response's head in a payload, beyond its body.
const HEAD_ROOM: u64 = 1 << 20;

/// The codec of the HTTP cache's disk tier.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TierForm {
    /// Payloads up to this long are read into memory whole, as they were stored (a
    /// body within the cache's `max_body_bytes`); a longer one (a body written to disk
    /// as it arrived) keeps its body in its file.
    in_memory_up_to: u64,
}

impl TierForm {
    /// The form of a cache that keeps bodies of up to `max_body` bytes in memory.
    pub(crate) fn new(max_body: usize) -> Self {
        TierForm {
            in_memory_up_to: (max_body as u64).saturating_add(HEAD_ROOM),
        }
    }
}

fn error(message: impl std::fmt::Display) -> CodecError {
    CodecError::new(NAME, message)
}

impl Codec<Stored> for TierForm {
    fn id(&self) -> u8 {
        16
    }

    fn encode(&self, value: &Stored) -> Result<Vec<u8>, CodecError> {
        let Stored::Response(response) = value else {
            let mut out = vec![OTHER];
            out.extend(MessagePack.encode(value)?);
            return Ok(out);
        };
        let Some(body) = response.body.in_memory() else {
            // Such a response is kept in memory only (`Loaded::memory_only`).
            return Err(error("a body kept on disk is not written again"));
        };
        let mut out = stream_head(response)?;
        out.extend_from_slice(body);
        Ok(out)
    }

    fn decode(&self, bytes: &[u8]) -> Result<Stored, CodecError> {
        self.decode_owned(Bytes::copy_from_slice(bytes))
    }

    fn decode_owned(&self, bytes: Bytes) -> Result<Stored, CodecError> {
        match bytes.first() {
            Some(&RESPONSE) => {}
            Some(&OTHER) => return MessagePack.decode(&bytes[1..]),
            _ => return Err(error("unknown entry kind")),
        }
        let head_len = bytes
            .get(1..5)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| error("shorter than its head length"))?;
        let body_at = 5usize
            .checked_add(head_len)
            .filter(|&at| at <= bytes.len())
            .ok_or_else(|| error("head longer than the entry"))?;
        let head: WireHead = MessagePack.decode(&bytes[5..body_at])?;
        let response = StoredResponse::from_wire::<serde::de::value::Error>(
            head,
            bytes.slice(body_at..).into(),
        )
        .map_err(error)?;
        Ok(Stored::Response(Arc::new(response)))
    }

    fn decode_file(&self, payload: &FilePayload) -> Option<Result<Stored, CodecError>> {
        (payload.len() > self.in_memory_up_to).then(|| decode_file(payload))
    }
}

/// The start of a response's form, all but its body: what the disk tier is given
/// first when the body is written as it arrives.
pub(crate) fn stream_head(response: &StoredResponse) -> Result<Vec<u8>, CodecError> {
    let head = MessagePack.encode(&response.wire_head())?;
    let head_len = u32::try_from(head.len()).map_err(error)?;
    let body_len = usize::try_from(response.body.len()).map_err(error)?;
    let mut out = Vec::with_capacity(5 + head.len() + body_len);
    out.push(RESPONSE);
    out.extend_from_slice(&head_len.to_be_bytes());
    out.extend_from_slice(&head);
    Ok(out)
}

/// A long entry, read from its file: a response's head is read, its body left there.
fn decode_file(payload: &FilePayload) -> Result<Stored, CodecError> {
    let start = payload.read_at(0, 5).map_err(error)?;
    if start[0] != RESPONSE {
        let len = usize::try_from(payload.len()).map_err(error)?;
        return TierForm::default().decode_owned(payload.read_at(0, len).map_err(error)?);
    }
    let head_len = u32::from_be_bytes([start[1], start[2], start[3], start[4]]) as usize;
    if 5 + head_len as u64 > payload.len() {
        return Err(error("head longer than the entry"));
    }
    let head: WireHead = MessagePack.decode(&payload.read_at(5, head_len).map_err(error)?)?;
    let body = Content::Disk(payload.blob_from(5 + head_len as u64));
    let response =
        StoredResponse::from_wire::<serde::de::value::Error>(head, body).map_err(error)?;
    Ok(Stored::Response(Arc::new(response)))
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, StatusCode, header};

    use super::*;
    use crate::vary::VarySpec;

    #[test]
    fn a_response_comes_back_with_its_body_shared_and_framed_by_it() {
        let mut headers = HeaderMap::new();
        headers.append("content-length", HeaderValue::from_static("0"));
        headers.append("etag", HeaderValue::from_static("\"v\""));
        let response = StoredResponse {
            status: StatusCode::OK,
            headers: crate::fields::Fields::from_map(&headers),
            body: Bytes::from_static(b"the body").into(),
            ..StoredResponse::sample(&HeaderMap::new())
        };
        let encoded = Bytes::from(
            TierForm::default()
                .encode(&Stored::Response(Arc::new(response)))
                .unwrap(),
        );
        let Stored::Response(back) = TierForm::default().decode_owned(encoded.clone()).unwrap()
        else {
            panic!("a response comes back as a response")
        };
        let body = back.body.in_memory().unwrap();
        assert_eq!(&body[..], b"the body");
        assert_eq!(
            body.as_ptr(),
            encoded[encoded.len() - 8..].as_ptr(),
            "the body is the read buffer's, not a copy"
        );
        let lengths: Vec<_> = back.headers.get_all(&header::CONTENT_LENGTH).collect();
        assert_eq!(lengths, ["8"], "framed by the body it has");
        assert_eq!(back.headers.get(&header::ETAG).unwrap(), "\"v\"");
    }

    #[test]
    fn indexes_markers_and_garbage() {
        let spec = Stored::Variants(Arc::new(VarySpec {
            names: vec![header::ACCEPT_ENCODING],
            generation: 7,
        }));
        let back = TierForm::default()
            .decode(&TierForm::default().encode(&spec).unwrap())
            .unwrap();
        assert!(matches!(back, Stored::Variants(s) if s.generation == 7));
        let marker = TierForm::default().encode(&Stored::Uncacheable).unwrap();
        assert!(matches!(
            TierForm::default().decode(&marker).unwrap(),
            Stored::Uncacheable
        ));
        for garbage in [
            &b""[..],
            b"\x00",
            b"\x00\xff\xff\xff\xff",
            b"\x00\x00\x00\x00\x02\x92",
            b"\x07",
        ] {
            assert!(TierForm::default().decode(garbage).is_err(), "{garbage:?}");
        }
    }
}
