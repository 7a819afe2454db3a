//! [`TierForm`]: how the disk tier writes what the HTTP cache keeps. A response's head
//! (status, fields in order, lifetime, variant) is MessagePack and its body follows as
//! raw bytes, so a response read back from disk shares the buffer its file was read
//! into instead of copying its body; indexes and markers are MessagePack whole.
//!
//! ```text
//! 0     1              5
//! | 0   | head length  | head (MessagePack) | body...     a response
//! | 1   | entry (MessagePack)                            an index or a marker
//! ```

use std::sync::Arc;

use bytes::Bytes;
use corral::codec::{Codec, CodecError, MessagePack};

use crate::stored::{Stored, StoredResponse};
use crate::wire::WireHead;

const RESPONSE: u8 = 0;
const OTHER: u8 = 1;
const NAME: &str = "corral-http stored form";

/// The codec of the HTTP cache's disk tier.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TierForm;

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
        let head = MessagePack.encode(&response.wire_head())?;
        let head_len = u32::try_from(head.len()).map_err(error)?;
        let mut out = Vec::with_capacity(5 + head.len() + response.body.len());
        out.push(RESPONSE);
        out.extend_from_slice(&head_len.to_be_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(&response.body);
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
        let response =
            StoredResponse::from_wire::<serde::de::value::Error>(head, bytes.slice(body_at..))
                .map_err(error)?;
        Ok(Stored::Response(Arc::new(response)))
    }
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
            body: Bytes::from_static(b"the body"),
            ..StoredResponse::sample(&HeaderMap::new())
        };
        let encoded = Bytes::from(
            TierForm
                .encode(&Stored::Response(Arc::new(response)))
                .unwrap(),
        );
        let Stored::Response(back) = TierForm.decode_owned(encoded.clone()).unwrap() else {
            panic!("a response comes back as a response")
        };
        assert_eq!(&back.body[..], b"the body");
        assert_eq!(
            back.body.as_ptr(),
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
        let back = TierForm.decode(&TierForm.encode(&spec).unwrap()).unwrap();
        assert!(matches!(back, Stored::Variants(s) if s.generation == 7));
        let marker = TierForm.encode(&Stored::Uncacheable).unwrap();
        assert!(matches!(
            TierForm.decode(&marker).unwrap(),
            Stored::Uncacheable
        ));
        for garbage in [
            &b""[..],
            b"\x00",
            b"\x00\xff\xff\xff\xff",
            b"\x00\x00\x00\x00\x02\x92",
            b"\x07",
        ] {
            assert!(TierForm.decode(garbage).is_err(), "{garbage:?}");
        }
    }
}
