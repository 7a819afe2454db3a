//! A response too large for memory, written to the disk tier as it arrives from the
//! origin (feature `disk`): its body goes to a file a chunk at a time, and every request
//! for it, the one that fetched it included, is served from that file, following the
//! writer while the body is still arriving (read-while-writer, as Squid's collapsed
//! forwarding and ATS do). Memory holds one chunk per reader, whatever the body's size.
//!
//! Only a body whose length the origin stated is written this way: a response promises
//! its `Content-Length` before its body has arrived. A body of unknown length that
//! turns out too large for memory streams through to its requester, unstored.

use std::time::Duration;

use corral::disk::{DiskWriter, WriteMark};
use http_body_util::BodyExt;

use crate::body::{Body, BoxError};
use crate::content::Content;
use crate::state::State;
use crate::stored::StoredResponse;
use crate::tier_form;

/// Starts writing `body` (`len` bytes, too large for memory) to the disk tier under
/// `key`, as the body of `response` (whose head already describes it), and gives the
/// body back on disk, to be served while it is written. The body itself back if it
/// cannot be written (no disk tier, the tier off or busy, the body over its
/// `max_entry_bytes`), to stream through unstored.
pub(crate) async fn start(
    state: &State,
    (key, mark): (&str, WriteMark),
    response: &StoredResponse,
    body: Body,
    len: u64,
) -> Result<Content, Body> {
    let keep = response.lifetime.keep_for;
    let Ok(head) = tier_form::stream_head(response) else {
        return Err(body);
    };
    let tags = crate::tags::response_tags(&response.headers);
    let writing = state
        .cache
        .stream_to_disk(key, &tags, (keep, keep), mark, head, len);
    let Some(writer) = writing.await else {
        return Err(body);
    };
    let content = Content::Disk(writer.blob());
    tracing::debug!(key, len, "writing a large body to disk as it arrives");
    let idle = state.options.fetch_timeout;
    tokio::spawn(pump(writer, body, idle, key.to_owned()));
    Ok(content)
}

/// Writes the body to its file to the end. If the body fails, says more or less than
/// its length, or sends no byte for `idle`, the file is dropped and the readers waiting
/// on it fail (their responses cut short, as a failing origin's would be); its entry in
/// memory then counts as gone (`Content::gone`), and the next request fetches again.
async fn pump(writer: DiskWriter, mut body: Body, idle: Duration, key: String) {
    let written: Result<bool, BoxError> = async move {
        let mut writer = writer;
        loop {
            let frame = tokio::time::timeout(idle, body.frame())
                .await
                .map_err(|_| format!("no byte of the body for {idle:?}"))?;
            let Some(frame) = frame else { break };
            // Trailers are not kept: only the data is the stored body.
            if let Ok(data) = frame?.into_data() {
                writer.append(data).await?;
            }
        }
        Ok(writer.finish().await?)
    }
    .await;
    match written {
        Ok(true) => tracing::debug!(%key, "large body on disk"),
        Ok(false) => tracing::debug!(%key, "large body invalidated while it arrived: not kept"),
        Err(error) => {
            tracing::warn!(%key, %error, "large body failed while written to disk: not kept");
        }
    }
}
