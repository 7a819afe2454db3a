//! Codecs: how values cross a process boundary, into a tier that other processes read
//! or that outlives this one (the Redis tier). With the `serde` feature (which the
//! `redis` feature turns on).

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{codec}: {message}")]
pub struct CodecError {
    codec: &'static str,
    message: String,
}

impl CodecError {
    /// An error of the codec named `codec`.
    pub fn new(codec: &'static str, error: impl std::fmt::Display) -> Self {
        CodecError {
            codec,
            message: error.to_string(),
        }
    }
}

/// Turns values into bytes and back, for the Redis tier. Every server sharing a tier
/// must use the same codec; a record written by another codec is read as a miss.
///
/// [`MessagePack`] is the default: compact, and readable from other languages. With
/// serde, `bytes::Bytes` fields stay bytes; wrap `Vec<u8>` fields in `serde_bytes` to
/// keep them from becoming arrays of numbers.
pub trait Codec<V>: Send + Sync + 'static {
    /// A number naming the codec in stored records (so a record is never decoded by
    /// the wrong codec).
    fn id(&self) -> u8;
    /// Encodes a value.
    fn encode(&self, value: &V) -> Result<Vec<u8>, CodecError>;
    /// Decodes a value.
    fn decode(&self, bytes: &[u8]) -> Result<V, CodecError>;

    /// Decodes a value from bytes it may keep (the disk tier reads each file into
    /// one buffer): a codec whose values hold bytes can slice them out of `bytes`
    /// instead of copying. The default decodes from the slice.
    fn decode_owned(&self, bytes: Bytes) -> Result<V, CodecError> {
        self.decode(&bytes)
    }

    /// Decodes a value from a long payload the disk tier left in its file (one over
    /// 1 MiB; feature `disk`): a codec whose values hold large bytes can keep them in
    /// the file as a [`DiskBlob`](crate::disk::DiskBlob) and read only the rest.
    /// `None`, the default, has the tier read the payload whole and call
    /// [`decode_owned`](Self::decode_owned).
    #[cfg(feature = "disk")]
    fn decode_file(&self, payload: &crate::disk::FilePayload) -> Option<Result<V, CodecError>> {
        let _ = payload;
        None
    }
}

/// MessagePack, with struct fields named (so records survive added fields).
#[derive(Debug, Clone, Copy, Default)]
pub struct MessagePack;

impl<V: Serialize + DeserializeOwned> Codec<V> for MessagePack {
    fn id(&self) -> u8 {
        1
    }

    fn encode(&self, value: &V) -> Result<Vec<u8>, CodecError> {
        rmp_serde::to_vec_named(value).map_err(|e| CodecError::new("messagepack", e))
    }

    fn decode(&self, bytes: &[u8]) -> Result<V, CodecError> {
        rmp_serde::from_slice(bytes).map_err(|e| CodecError::new("messagepack", e))
    }
}

/// JSON: larger and slower, but readable with `redis-cli`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl<V: Serialize + DeserializeOwned> Codec<V> for Json {
    fn id(&self) -> u8 {
        2
    }

    fn encode(&self, value: &V) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(value).map_err(|e| CodecError::new("json", e))
    }

    fn decode(&self, bytes: &[u8]) -> Result<V, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError::new("json", e))
    }
}

/// Raw bytes, passed through untouched (for `Bytes` and `Vec<u8>` values).
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Codec<Bytes> for Raw {
    fn id(&self) -> u8 {
        3
    }

    fn encode(&self, value: &Bytes) -> Result<Vec<u8>, CodecError> {
        Ok(value.to_vec())
    }

    fn decode(&self, bytes: &[u8]) -> Result<Bytes, CodecError> {
        Ok(Bytes::copy_from_slice(bytes))
    }

    fn decode_owned(&self, bytes: Bytes) -> Result<Bytes, CodecError> {
        Ok(bytes)
    }
}

impl Codec<Vec<u8>> for Raw {
    fn id(&self) -> u8 {
        3
    }

    fn encode(&self, value: &Vec<u8>) -> Result<Vec<u8>, CodecError> {
        Ok(value.clone())
    }

    fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
        Ok(bytes.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Page {
        title: String,
        body: Bytes,
    }

    #[test]
    fn messagepack_keeps_bytes_as_bytes_and_round_trips() {
        let page = Page {
            title: "t".into(),
            body: Bytes::from_static(&[0, 1, 2, 255]),
        };
        let encoded = MessagePack.encode(&page).unwrap();
        // 0xc4 is MessagePack's `bin 8` marker: the body is a byte string, not an array.
        assert!(encoded.windows(2).any(|w| w == [0xc4, 4]));
        assert_eq!(MessagePack.decode(&encoded).ok(), Some(page));
    }

    #[test]
    fn json_round_trips() {
        let v = vec!["a".to_string(), "b".to_string()];
        let encoded = Json.encode(&v).unwrap();
        assert_eq!(encoded, br#"["a","b"]"#);
        assert_eq!(Codec::<Vec<String>>::decode(&Json, &encoded).unwrap(), v);
    }

    #[test]
    fn raw_is_untouched_and_garbage_is_an_error_elsewhere() {
        let b = Bytes::from_static(b"\x00\xffhello");
        let decoded: Bytes = Raw.decode(&Raw.encode(&b).unwrap()).unwrap();
        assert_eq!(decoded, b);
        assert!(Codec::<Page>::decode(&MessagePack, b"\xc1garbage").is_err());
        assert!(Codec::<Page>::decode(&Json, b"{not json").is_err());
    }
}
