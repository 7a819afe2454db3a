//! Bodies too large for memory, with a real disk tier and a real origin that sends its
//! body slowly: written to disk as they arrive, served to every request meanwhile
//! (read-while-writer), ranges read from disk, kept across a restart, and never kept
//! when the origin fails part way.
#![cfg(feature = "disk")]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use corral_http::HttpCache;
use http::Request;
use http_body_util::{BodyExt, Full};
use support::{Cached, cached, get, get_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tower::ServiceExt;

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("corral-http-disk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `len` bytes that differ from chunk to chunk.
fn pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i * 7 + i / 65536) as u8)
        .collect::<Vec<_>>()
        .into()
}

/// How the origin ends its body.
#[derive(Clone, Copy, PartialEq)]
enum Ending {
    /// Sends the second half once the gate opens.
    Whole,
    /// Closes the connection instead of sending the second half.
    Cut,
    /// Sends the whole body chunked, its length unstated.
    Chunked,
    /// Sends nothing, head included, until the gate opens; then all of it.
    LateHead,
}

/// An origin that sends half its body at once and the rest only when the test opens
/// its gate, so that the test knows the body is still arriving.
struct Trickle {
    addr: std::net::SocketAddr,
    requests: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
}

impl Trickle {
    async fn start(body: Bytes, ending: Ending) -> Trickle {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let (count, opened) = (requests.clone(), gate.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (body, count, opened) = (body.clone(), count.clone(), opened.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    if ending == Ending::LateHead {
                        drop(opened.acquire().await.unwrap());
                    }
                    let framing = if ending == Ending::Chunked {
                        "transfer-encoding: chunked".to_owned()
                    } else {
                        format!("content-length: {}", body.len())
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\n{framing}\r\ncache-control: max-age=600\r\n\
                         etag: \"v1\"\r\ncontent-type: application/octet-stream\r\n\
                         connection: close\r\n\r\n"
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    let half = body.len() / 2;
                    if ending == Ending::Chunked {
                        for part in [&body[..half], &body[half..]] {
                            let _ = socket
                                .write_all(format!("{:x}\r\n", part.len()).as_bytes())
                                .await;
                            let _ = socket.write_all(part).await;
                            let _ = socket.write_all(b"\r\n").await;
                        }
                        let _ = socket.write_all(b"0\r\n\r\n").await;
                        return;
                    }
                    let _ = socket.write_all(&body[..half]).await;
                    let _ = socket.flush().await;
                    if ending == Ending::Cut {
                        return;
                    }
                    if ending == Ending::LateHead {
                        let _ = socket.write_all(&body[half..]).await;
                        return;
                    }
                    // Wait for the gate; the permit goes back for the next request.
                    let permit = opened.acquire().await.unwrap();
                    drop(permit);
                    let _ = socket.write_all(&body[half..]).await;
                });
            }
        });
        Trickle {
            addr,
            requests,
            gate,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/big", self.addr)
    }

    fn open(&self) {
        self.gate.add_permits(1);
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn disk_cache(dir: &Path) -> Cached {
    cached(
        HttpCache::builder()
            .max_body_bytes(64 * 1024)
            .disk(dir, 256 << 20),
    )
}

fn request(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::default()).unwrap()
}

/// The sum of `measure` over the files in `dir` and the folders under it.
fn sum_under(dir: &Path, measure: fn(&std::fs::DirEntry) -> u64) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                if e.file_type().unwrap().is_dir() {
                    sum_under(&e.path(), measure)
                } else {
                    measure(&e)
                }
            })
            .sum()
    })
}

/// The files in `dir` and the folders under it.
fn files_under(dir: &Path) -> u64 {
    sum_under(dir, |_| 1)
}

/// The bytes of those files.
fn bytes_under(dir: &Path) -> u64 {
    sum_under(dir, |e| e.metadata().unwrap().len())
}

/// Waits until the tier has put the streamed file in place.
async fn landed(dir: &Path) {
    for _ in 0..500 {
        if files_under(&dir.join("objects")) == 1 && files_under(&dir.join("tmp")) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the streamed body never landed on disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_is_served_to_everyone_while_it_is_written_to_disk() {
    let dir = Scratch::new("follow");
    let body = pattern(4 << 20);
    let origin = Trickle::start(body.clone(), Ending::Whole).await;
    let cache = disk_cache(&dir.0);

    // The first response starts before the origin has sent half its body.
    let first = cache.clone().oneshot(request(&origin.url())).await.unwrap();
    assert_eq!(first.headers()["content-length"], body.len().to_string());
    assert_eq!(first.headers()["x-cache"], "MISS");
    let mut first = first.into_body();
    let mut received = Vec::new();
    while received.len() < body.len() / 4 {
        let frame = first.frame().await.unwrap().unwrap();
        received.extend_from_slice(&frame.into_data().unwrap());
    }
    // Requests that come meanwhile follow the same file: no second fetch.
    let others: Vec<_> = (0..9)
        .map(|_| {
            let (cache, url) = (cache.clone(), origin.url());
            tokio::spawn(async move {
                let response = cache.oneshot(request(&url)).await.unwrap();
                let x_cache = response.headers()["x-cache"].to_str().unwrap().to_owned();
                (
                    x_cache,
                    response.into_body().collect().await.unwrap().to_bytes(),
                )
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    origin.open();
    received.extend_from_slice(&first.collect().await.unwrap().to_bytes());
    assert!(received == body, "the first client got the whole body");
    for other in others {
        let (x_cache, got) = other.await.unwrap();
        assert_eq!(x_cache, "HIT");
        assert!(got == body, "a follower got the whole body");
    }
    assert_eq!(origin.requests(), 1, "one fetch for ten clients");

    // Ranges and HEAD, from disk.
    let part = get_with(&cache, &origin.url(), &[("range", "bytes=1000000-1000009")]).await;
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        format!("bytes 1000000-1000009/{}", body.len())
    );
    assert_eq!(part.body, body.slice(1_000_000..1_000_010));
    let several = get_with(&cache, &origin.url(), &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!(
        several.status, 200,
        "several ranges of a body on disk: the whole"
    );
    assert!(several.body == body);
    let head = support::send(
        &cache,
        Request::head(origin.url()).body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(head.header("content-length"), body.len().to_string());
    assert!(head.body.is_empty());

    // A restart: the file is the entry.
    landed(&dir.0).await;
    drop(cache);
    let cache = disk_cache(&dir.0);
    let again = get(&cache, &origin.url()).await;
    assert_eq!(again.x_cache(), "HIT");
    assert!(again.body == body, "served whole from disk after a restart");
    let part = get_with(&cache, &origin.url(), &[("range", "bytes=-5")]).await;
    assert_eq!(part.body, body.slice(body.len() - 5..));
    assert_eq!(origin.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_the_origin_cuts_short_is_never_kept() {
    let dir = Scratch::new("cut");
    let body = pattern(1 << 20);
    let origin = Trickle::start(body.clone(), Ending::Cut).await;
    let cache = disk_cache(&dir.0);
    for round in 1..=2 {
        let response = cache.clone().oneshot(request(&origin.url())).await.unwrap();
        assert_eq!(response.headers()["content-length"], body.len().to_string());
        assert!(
            response.into_body().collect().await.is_err(),
            "a body cut short is an error, never a short body"
        );
        assert_eq!(origin.requests(), round, "nothing was kept of it");
    }
    for _ in 0..100 {
        if files_under(&dir.0.join("tmp")) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(files_under(&dir.0.join("tmp")), 0);
    assert_eq!(files_under(&dir.0.join("objects")), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_given_up_after_the_fetch_timeout() {
    let dir = Scratch::new("stalled");
    let body = pattern(1 << 20);
    // The gate is never opened: the origin sends half the body, then nothing.
    let origin = Trickle::start(body.clone(), Ending::Whole).await;
    let cache = cached(
        HttpCache::builder()
            .max_body_bytes(64 * 1024)
            .fetch_timeout(Duration::from_millis(300))
            .disk(&dir.0, 256 << 20),
    );
    let first = cache.clone().oneshot(request(&origin.url())).await.unwrap();
    let follower = cache.clone().oneshot(request(&origin.url())).await.unwrap();
    assert_eq!(
        follower.headers()["x-cache"],
        "HIT",
        "it follows the same file"
    );
    let (first, follower) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(first.into_body().collect(), follower.into_body().collect())
    })
    .await
    .expect("neither waits for ever");
    assert!(
        first.is_err() && follower.is_err(),
        "both cut short, never short bodies"
    );
    // Given up: the next request fetches again.
    let again = cache.clone().oneshot(request(&origin.url())).await.unwrap();
    assert_eq!(again.headers()["x-cache"], "MISS");
    assert_eq!(origin.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_while_the_origin_is_still_answering_keeps_its_body_off_disk() {
    let dir = Scratch::new("purged");
    let body = pattern(1 << 20);
    let origin = Trickle::start(body.clone(), Ending::LateHead).await;
    let cache = disk_cache(&dir.0);
    let fetch = tokio::spawn({
        let (cache, url) = (cache.clone(), origin.url());
        async move { get(&cache, &url).await }
    });
    while origin.requests() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The fetch has begun and its answer has not: a purge now must win.
    cache.handle().invalidate(&origin.url()).await;
    origin.open();
    let got = fetch.await.unwrap();
    assert!(got.body == body, "its requester gets it all the same");
    for _ in 0..500 {
        if files_under(&dir.0.join("tmp")) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(files_under(&dir.0.join("tmp")), 0, "its writer has ended");
    assert!(
        bytes_under(&dir.0.join("objects")) < 4096,
        "the body fetched before the purge is not on disk"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_of_unstated_length_streams_through_unstored() {
    let dir = Scratch::new("chunked");
    let body = pattern(256 << 10);
    let origin = Trickle::start(body.clone(), Ending::Chunked).await;
    let cache = disk_cache(&dir.0);
    for round in 1..=2 {
        let got = get(&cache, &origin.url()).await;
        assert_eq!(got.x_cache(), "BYPASS");
        assert!(got.body == body);
        assert_eq!(origin.requests(), round);
    }
    // The hit-for-miss marker may be on disk; the body is not.
    assert!(bytes_under(&dir.0.join("objects")) < 4096);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tagged_large_body_is_written_with_its_tags_and_a_purge_reaches_it_after_a_restart() {
    let origin = support::Origin::start().await;
    let text = "0123456789abcdef".repeat(16 * 1024);
    let body = Bytes::from(text.clone());
    origin.route("/big", move |_, _| {
        support::Reply::ok(&text)
            .header("cache-control", "max-age=600")
            .header("surrogate-key", "big-file")
    });
    let dir = Scratch::new("tagged");
    let url = origin.url("/big");
    {
        let cache = disk_cache(&dir.0);
        let first = get(&cache, &url).await;
        assert_eq!((first.x_cache(), first.body.len()), ("MISS", body.len()));
        landed(&dir.0).await;
        assert_eq!(get(&cache, &url).await.x_cache(), "HIT");
    }
    // After a restart the file is read back with its tag: a purge of it reaches it.
    let cache = disk_cache(&dir.0);
    assert_eq!(get(&cache, &url).await.x_cache(), "HIT", "from disk");
    cache.handle().invalidate_tag("big-file").await;
    let again = get(&cache, &url).await;
    assert_eq!(again.x_cache(), "MISS");
    assert!(again.body == body);
    assert_eq!(origin.count("/big"), 2);
}
