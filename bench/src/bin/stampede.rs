//! `stampede`: opens N connections, lines them up behind a barrier, then sends one GET
//! per connection for the same URL at the same instant. Prints latency percentiles and
//! the histogram of `X-Cache` values on one line.
//!
//! ```text
//! stampede --url http://127.0.0.1:19601/slow/x [-n 200]
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use corral_bench::{Args, percentile};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::parse();
    let url: http::Uri = args.text("--url").ok_or("--url is required")?.parse()?;
    let n: usize = args.get("-n", 200);
    let authority = url.authority().ok_or("--url needs a host")?.to_string();
    let path = url
        .path_and_query()
        .map_or("/".to_owned(), |p| p.to_string());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut senders = Vec::with_capacity(n);
        for _ in 0..n {
            let stream = tokio::net::TcpStream::connect(&authority).await?;
            stream.set_nodelay(true)?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            senders.push(sender);
        }
        let barrier = Arc::new(tokio::sync::Barrier::new(n + 1));
        let requests: Vec<_> = senders
            .into_iter()
            .map(|mut sender| {
                let (barrier, authority, path) = (barrier.clone(), authority.clone(), path.clone());
                tokio::spawn(async move {
                    let request = http::Request::get(path).header("host", authority).body(Empty::new())?;
                    barrier.wait().await;
                    let started = Instant::now();
                    let response = sender.send_request(request).await?;
                    let status = response.status().as_u16();
                    let cache = response
                        .headers()
                        .get("x-cache")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned();
                    response.into_body().collect().await?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>((started.elapsed(), status, cache))
                })
            })
            .collect();
        barrier.wait().await;
        let (mut latencies, mut statuses, mut caches, mut errors) = (Vec::new(), BTreeMap::new(), BTreeMap::new(), 0);
        for request in requests {
            match request.await? {
                Ok((latency, status, cache)) => {
                    latencies.push(latency.as_secs_f64() * 1e3);
                    *statuses.entry(status).or_insert(0) += 1;
                    *caches.entry(cache).or_insert(0) += 1;
                }
                Err(_) => errors += 1,
            }
        }
        latencies.sort_by(f64::total_cmp);
        let list = |m: &BTreeMap<_, i32>| m.iter().map(|(k, v): (&_, &i32)| format!("{k}:{v}")).collect::<Vec<_>>().join(",");
        println!(
            "n={n} ok={} errors={errors} p50_ms={:.1} p90_ms={:.1} p99_ms={:.1} max_ms={:.1} status={{{}}} cache={{{}}}",
            latencies.len(),
            percentile(&latencies, 50.0),
            percentile(&latencies, 90.0),
            percentile(&latencies, 99.0),
            percentile(&latencies, 100.0),
            list(&statuses.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
            list(&caches),
        );
        Ok(())
    })
}
