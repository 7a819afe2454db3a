//! Sending a body kept on disk: read a chunk at a time, on a blocking thread, so a
//! response of any size takes one chunk of memory per client while it is sent.

use std::fmt;
use std::io;
use std::task::{Context, Poll};

use bytes::Bytes;
use corral::disk::DiskBlob;
use futures_util::future::BoxFuture;
use http_body::Frame;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The most read from disk at once for one response.
const CHUNK: usize = 128 * 1024;

/// A body kept on disk, being sent.
pub(crate) struct DiskRead {
    blob: DiskBlob,
    /// How much has been sent.
    at: u64,
    reading: Option<BoxFuture<'static, io::Result<Bytes>>>,
}

impl fmt::Debug for DiskRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskRead")
            .field("len", &self.blob.len())
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl DiskRead {
    pub(crate) fn new(blob: DiskBlob) -> Self {
        DiskRead {
            blob,
            at: 0,
            reading: None,
        }
    }

    /// The bytes still to send.
    pub(crate) fn remaining(&self) -> u64 {
        self.blob.len() - self.at
    }

    /// The next chunk; an error (which cuts the response short: its length was
    /// promised) if the file cannot give it.
    pub(crate) fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.remaining() == 0 {
            return Poll::Ready(None);
        }
        let reading = self.reading.get_or_insert_with(|| {
            let (blob, at) = (self.blob.clone(), self.at);
            Box::pin(async move { blob.read(at, CHUNK).await })
        });
        let read = std::task::ready!(reading.as_mut().poll(cx));
        self.reading = None;
        Poll::Ready(Some(match read {
            Ok(chunk) if !chunk.is_empty() => {
                self.at += chunk.len() as u64;
                Ok(Frame::data(chunk))
            }
            Ok(_) => Err("the body's file ended short of its length".into()),
            Err(error) => {
                self.at = self.blob.len();
                Err(Box::new(error))
            }
        }))
    }
}
