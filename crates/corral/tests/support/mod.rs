//! Helpers shared by the engine's integration tests: a loader that counts its calls
//! and can be held until the test releases it.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use corral::Cache;
use tokio::sync::watch;

/// A loader factory: counts how many loaders actually ran, and holds each one at a gate
/// until [`Origin::open`] (or not at all, if built open).
#[derive(Clone)]
pub(crate) struct Origin {
    calls: Arc<AtomicUsize>,
    gate: watch::Sender<bool>,
}

impl Origin {
    pub(crate) fn open() -> Self {
        Origin {
            calls: Arc::default(),
            gate: watch::Sender::new(true),
        }
    }

    pub(crate) fn closed() -> Self {
        Origin {
            calls: Arc::default(),
            gate: watch::Sender::new(false),
        }
    }

    pub(crate) fn release(&self) {
        self.gate.send_replace(true);
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// A loader returning `value` once the gate is open.
    pub(crate) fn value(
        &self,
        value: &str,
    ) -> impl FnOnce() -> std::pin::Pin<
        Box<dyn Future<Output = Result<String, std::io::Error>> + Send>,
    > + Send
    + 'static {
        let (calls, mut gate, value) =
            (self.calls.clone(), self.gate.subscribe(), value.to_owned());
        move || {
            Box::pin(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let _ = gate.wait_for(|open| *open).await;
                Ok(value)
            })
        }
    }

    /// A loader failing with `message` once the gate is open.
    pub(crate) fn failure(
        &self,
        message: &str,
    ) -> impl FnOnce() -> std::pin::Pin<
        Box<dyn Future<Output = Result<String, std::io::Error>> + Send>,
    > + Send
    + 'static {
        let (calls, mut gate, message) = (
            self.calls.clone(),
            self.gate.subscribe(),
            message.to_owned(),
        );
        move || {
            Box::pin(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let _ = gate.wait_for(|open| *open).await;
                Err(std::io::Error::other(message))
            })
        }
    }
}

/// Yields until `done` holds, failing the test after 10 s of (possibly paused) time.
pub(crate) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

pub(crate) fn cache(fresh_for: u64, ttl: u64) -> Cache<String> {
    Cache::builder()
        .fresh_for(Duration::from_secs(fresh_for))
        .ttl(Duration::from_secs(ttl))
        .build()
        .expect("valid options")
}

/// A load of `key` started in a task of its own, whose loader returns `value` once the
/// test releases it (a load that runs across whatever the test does meanwhile).
pub(crate) struct HeldLoad {
    release: tokio::sync::oneshot::Sender<()>,
    load: tokio::task::JoinHandle<Result<String, corral::Error>>,
}

impl HeldLoad {
    pub(crate) async fn start(
        cache: &Cache<String>,
        key: &str,
        value: corral::Loaded<String>,
    ) -> HeldLoad {
        let (release, gate) = tokio::sync::oneshot::channel::<()>();
        let (cache, key) = (cache.clone(), key.to_owned());
        let load = tokio::spawn(async move {
            cache
                .get_or_load(&key, || async move {
                    gate.await.ok();
                    Ok::<_, std::io::Error>(value)
                })
                .await
        });
        // Long enough for the load to take its locks (Redis's too) and reach the gate.
        tokio::time::sleep(Duration::from_millis(200)).await;
        HeldLoad { release, load }
    }

    /// Lets the loader return; what the load's waiter got.
    pub(crate) async fn finish(self) -> String {
        self.release.send(()).unwrap();
        self.load.await.unwrap().unwrap()
    }
}
