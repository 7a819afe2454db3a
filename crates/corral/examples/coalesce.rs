//! Coalescing at work: a thousand concurrent requests for one slow value run the slow
//! call once, then stale-while-revalidate keeps answering at once while one refresh runs.
//!
//! Run it with `cargo run -p corral --example coalesce`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use corral::Cache;

/// Stands for a slow database query or HTTP call.
async fn slow_query(calls: Arc<AtomicUsize>, version: &str) -> Result<String, std::io::Error> {
    calls.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(format!("report v{version}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache: Cache<String> = Cache::builder()
        .name("reports")
        .fresh_for(Duration::from_secs(1))
        .ttl(Duration::from_secs(60))
        .build()?;
    let calls = Arc::new(AtomicUsize::new(0));

    println!("1000 concurrent requests for a cold key, each query taking 200 ms:");
    let started = Instant::now();
    let requests: Vec<_> = (0..1000)
        .map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load("daily-report", move || slow_query(calls, "1"))
                    .await
            })
        })
        .collect();
    for request in requests {
        request.await??;
    }
    println!(
        "  all 1000 answered in {:?}; the query ran {} time(s)",
        started.elapsed(),
        calls.load(Ordering::SeqCst)
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    println!("1.1 s later the entry is stale; 1000 more requests:");
    let started = Instant::now();
    for _ in 0..1000 {
        let calls = calls.clone();
        let value = cache
            .get_or_load("daily-report", move || slow_query(calls, "2"))
            .await?;
        assert_eq!(value, "report v1", "stale value served at once");
    }
    println!(
        "  all answered in {:?} with the stale value; one background refresh started",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!(
        "  after the refresh: {:?}; the query ran {} time(s) in all",
        cache.get("daily-report").unwrap_or_default(),
        calls.load(Ordering::SeqCst)
    );
    println!("{:#?}", cache.stats());
    Ok(())
}
