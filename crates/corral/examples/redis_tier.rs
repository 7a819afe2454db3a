//! Two cache instances (standing for two servers) sharing one Redis: 200 concurrent
//! calls spread over both run the slow query once; an invalidation on one reaches the
//! other.
//!
//! Run it with `cargo run -p corral --features redis --example redis_tier`. It uses
//! `REDIS_URL` if set; otherwise it starts a throwaway `redis-server` on a free port
//! (if one is installed).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use corral::Cache;
use corral::redis::RedisTier;

/// A `redis-server` started for this example, killed on drop.
struct Throwaway(Child);

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_url() -> Result<(String, Option<Throwaway>), String> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return Ok((url, None));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("set REDIS_URL, or install redis-server so this example can start one ({e})")
        })?;
    std::thread::sleep(Duration::from_millis(300));
    Ok((format!("redis://127.0.0.1:{port}"), Some(Throwaway(child))))
}

async fn slow_query(runs: Arc<AtomicUsize>) -> Result<String, std::io::Error> {
    runs.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok("the report".to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _server) = redis_url()?;
    let server = |name: &str| -> Result<Cache<String>, corral::ConfigError> {
        Cache::builder()
            .name(name)
            .fresh_for(Duration::from_secs(60))
            .redis(RedisTier::builder(&url).prefix("corral-example:").build()?)
            .build()
    };
    let (a, b) = (server("server-a")?, server("server-b")?);
    a.clear().await;
    let runs = Arc::new(AtomicUsize::new(0));

    println!("200 concurrent calls for one cold key, spread over two servers:");
    let started = Instant::now();
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let cache = if i % 2 == 0 { a.clone() } else { b.clone() };
            let runs = runs.clone();
            tokio::spawn(async move {
                cache
                    .get_or_load("daily-report", move || slow_query(runs))
                    .await
            })
        })
        .collect();
    for call in calls {
        call.await??;
    }
    println!(
        "  answered in {:?}; the query ran {} time(s) across both servers",
        started.elapsed(),
        runs.load(Ordering::SeqCst)
    );
    println!(
        "  server A: {} remote hits; server B: {} remote hits",
        a.stats().remote_hits,
        b.stats().remote_hits
    );

    a.invalidate("daily-report").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    println!(
        "after A invalidated the key, B's copy is {}",
        if b.get("daily-report").is_none() {
            "gone"
        } else {
            "still there"
        }
    );
    Ok(())
}
