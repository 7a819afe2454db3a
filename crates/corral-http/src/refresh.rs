//! A refresh cache (feature `refresh`): keeps registered URLs fresh in the
//! background, so that reading one is a memory read. What Go's `httprc` does for
//! JSON Web Key Sets, without its known bugs: a failed first fetch is an error, never
//! "nothing and no error"; failed refreshes keep the last good value, reach an error
//! sink and back off with jitter; every URL is on its own timer; refreshes are
//! conditional; the body is bounded; a panicking transformer is a failed refresh;
//! redirects obey the allow-list.
//!
//! ```no_run
//! use std::time::Duration;
//! use corral_http::refresh::{UrlAllowList, RefreshCache, Registration};
//!
//! #[derive(serde::Deserialize)]
//! struct Jwks { keys: Vec<serde_json::Value> }
//!
//! # async fn run() -> Result<(), corral_http::refresh::RefreshError> {
//! const URL: &str = "https://auth.example.com/.well-known/jwks.json";
//! let keys: RefreshCache<Jwks> = RefreshCache::builder()
//!     .allow(UrlAllowList::new().prefix("https://auth.example.com/")?)
//!     .error_sink(|error| eprintln!("JWKS refresh failed: {error}"))
//!     .build()?;
//! keys.register(URL, Registration::json().min_interval(Duration::from_secs(300))).await?;
//! let jwks = keys.get(URL).await?; // fetched now the first time, from memory afterwards
//! println!("{} keys", jwks.keys.len());
//! # Ok(()) }
//! ```
//!
//! # What a URL's value is
//!
//! What its [`Registration`] makes of each successful response:
//! [`bytes`](Registration::bytes) (the body as it came), [`text`](Registration::text)
//! (UTF-8), [`json`](Registration::json) (any `Deserialize` type), or any async
//! function of the response ([`with_transform`](Registration::with_transform)), whose
//! argument is inferred; [`Response`] and [`Bytes`] are re-exported here for a
//! function that names them. The URLs the cache may fetch are a [`UrlAllowList`].
//!
//! # When a URL is fetched
//!
//! At `register` (in the background, unless the registration waits for it), then
//! after each success when the response's freshness ends (`max-age`, or `Expires`
//! minus `Date`, less `Age`, read as the HTTP cache reads them; no lifetime is
//! guessed from `Last-Modified`), clamped to the URL's [min, max] interval (15 minutes
//! and 30 days by default), or every fixed interval if one is set. After a failure,
//! sooner: 1 s, doubling, with jitter, up to the min interval. `get` fetches only a
//! URL that has no value yet; `refresh` always fetches. Concurrent fetches of one URL
//! are one fetch (through the corral engine's flights).
//!
//! # Metrics
//!
//! `corral_refresh_fetches_total{outcome}` with `outcome` = `changed` |
//! `not_modified` | `failed`, and the gauge `corral_refresh_registered`.

mod allow;
mod error;
mod fetch;
mod registration;
mod resource;
mod schedule;
mod transform;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::FutureExt;
use http::Request;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::Service;

pub use allow::UrlAllowList;
/// The body a transform gets, read whole (re-exported from `bytes`).
pub use bytes::Bytes;
pub use error::{RefreshError, SharedError};
/// The response a transform gets (re-exported from `http`).
pub use http::Response;
pub use registration::Registration;
pub use resource::ResourceStatus;
pub use transform::NotUtf8;

use crate::body::BoxError;
use crate::upstream::{Erased, Upstream};
use fetch::Fetch;
use resource::Resource;
use schedule::Intervals;

/// How many background refreshes run at once, by default.
pub const DEFAULT_WORKERS: usize = 5;
/// The default shortest wait between refreshes of a URL.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// The default longest wait between refreshes of a URL.
pub const DEFAULT_MAX_INTERVAL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The default largest body fetched.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// The default time one fetch (redirects, body and transformer included) may take.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// The default wait before the first retry of a failed fetch.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(1);
/// The default client's default time to connect.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default most redirects followed by one fetch.
pub const DEFAULT_MAX_REDIRECTS: usize = 5;

type Sink = Arc<dyn Fn(&RefreshError) + Send + Sync>;

/// Keeps registered URLs fresh in the background and hands out their latest good
/// values; see the [module docs](self). Cheap to clone (clones share the URLs);
/// dropping the last clone stops the background work.
pub struct RefreshCache<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for RefreshCache<T> {
    fn clone(&self) -> Self {
        RefreshCache {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<T> {
    resources: Mutex<HashMap<String, Arc<Resource<T>>>>,
    /// One fetch per URL at a time: the engine with nothing kept (`ttl` 0).
    flights: corral::Cache<Value<T>>,
    client: Mutex<Box<dyn Upstream>>,
    workers: Arc<Semaphore>,
    allow: UrlAllowList,
    defaults: Intervals,
    body_limit: usize,
    timeout: Duration,
    retry_base: Duration,
    max_redirects: usize,
    sink: Option<Sink>,
    registrations: AtomicU64,
    shut_down: AtomicBool,
}

/// A fetch's value as the engine's flights carry it (never stored: `ttl` is 0).
struct Value<T>(Arc<T>);

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value(self.0.clone())
    }
}

impl<T> corral::Weigh for Value<T> {
    fn weigh(&self) -> usize {
        0
    }
}

impl<T: Send + Sync + 'static> RefreshCache<T> {
    /// Starts building a refresh cache; see [`RefreshCacheBuilder`] for the options.
    pub fn builder() -> RefreshCacheBuilder<T> {
        RefreshCacheBuilder::new()
    }

    /// Registers `url` to be kept fresh, replacing an earlier registration of it
    /// (whose value is dropped). The first fetch starts at once, in the background
    /// unless `registration` waits for it; then its error, if any, is returned and
    /// the URL stays registered, retrying.
    ///
    /// Errors: the URL is not `http`/`https`, the allow-list refuses it, or the
    /// registration's intervals are invalid.
    pub async fn register(
        &self,
        url: &str,
        registration: Registration<T>,
    ) -> Result<(), RefreshError> {
        let inner = &self.inner;
        inner.check_running()?;
        let url = allow::parse(url)?;
        if !inner.allow.allows(&url) {
            return Err(RefreshError::Refused {
                url: url.into(),
                redirected_from: None,
            });
        }
        let intervals = registration.intervals(inner.defaults)?;
        let wait = registration.wait;
        let id = inner.registrations.fetch_add(1, Ordering::Relaxed);
        let resource = Arc::new(Resource::new(
            id.to_string(),
            url.clone(),
            registration,
            intervals,
        ));
        let replaced = inner.resources().insert(url.to_string(), resource.clone());
        if let Some(replaced) = replaced {
            replaced.stop();
        }
        metrics::gauge!("corral_refresh_registered").set(inner.resources().len() as f64);
        if wait {
            // The first fetch is this call's; the timer takes over when it is
            // recorded (or, if this call is dropped before it starts, after the
            // fetch timeout).
            resource.postpone(inner.timeout);
        }
        let timer = tokio::spawn(keep_fresh(Arc::downgrade(inner), resource.clone()));
        *resource.timer.lock().unwrap_or_else(|p| p.into_inner()) = Some(timer);
        // Shut down (or unregistered) meanwhile: no timer.
        if inner.check_running().is_err() || !inner.is_current(&resource) {
            resource.stop();
            inner.check_running()?;
        }
        if wait {
            inner.fetch(&resource).await?;
        }
        Ok(())
    }

    /// The latest good value of `url`, at once; if it has none yet, fetched now
    /// (joining a fetch in flight). While a URL without a value waits for the retry
    /// of a failed fetch, its error is returned at once (a loop of `get`s does not
    /// hammer a failing origin; [`refresh`](Self::refresh) always fetches).
    pub async fn get(&self, url: &str) -> Result<Arc<T>, RefreshError> {
        let resource = self.inner.resource(url)?;
        if let Some(value) = resource.value() {
            return Ok(value);
        }
        if let Some(error) = resource.pending_error() {
            return Err(error);
        }
        self.inner.fetch(&resource).await
    }

    /// Fetches `url` now (joining a fetch in flight) and returns the new value, or
    /// the error, keeping the old value.
    pub async fn refresh(&self, url: &str) -> Result<Arc<T>, RefreshError> {
        let resource = self.inner.resource(url)?;
        self.inner.fetch(&resource).await
    }

    /// Stops keeping `url`; returns whether it was registered.
    pub fn unregister(&self, url: &str) -> bool {
        let Ok(url) = allow::parse(url) else {
            return false;
        };
        let removed = self.inner.resources().remove(url.as_str());
        metrics::gauge!("corral_refresh_registered").set(self.inner.resources().len() as f64);
        removed.map(|r| r.stop()).is_some()
    }

    /// Whether `url` is registered.
    pub fn is_registered(&self, url: &str) -> bool {
        allow::parse(url).is_ok_and(|url| self.inner.resources().contains_key(url.as_str()))
    }

    /// The state of every registered URL, sorted by URL.
    pub fn snapshot(&self) -> Vec<ResourceStatus> {
        let resources: Vec<_> = self.inner.resources().values().cloned().collect();
        let mut statuses: Vec<_> = resources.iter().map(|r| r.status()).collect();
        statuses.sort_by(|a, b| a.url.cmp(&b.url));
        statuses
    }

    /// Stops all background work and unregisters every URL; later calls return
    /// [`RefreshError::ShutDown`]. Fetches in flight finish (within the fetch
    /// timeout) for those waiting on them.
    pub async fn shutdown(&self) {
        self.inner.shut_down.store(true, Ordering::SeqCst);
        let resources: Vec<_> = self.inner.resources().drain().map(|(_, r)| r).collect();
        metrics::gauge!("corral_refresh_registered").set(0.0);
        for resource in resources {
            if let Some(timer) = resource.stop() {
                let _ = timer.await;
            }
        }
    }
}

impl<T: Send + Sync + 'static> Inner<T> {
    fn resources(&self) -> MutexGuard<'_, HashMap<String, Arc<Resource<T>>>> {
        self.resources.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_running(&self) -> Result<(), RefreshError> {
        if self.shut_down.load(Ordering::SeqCst) {
            return Err(RefreshError::ShutDown);
        }
        Ok(())
    }

    fn resource(&self, url: &str) -> Result<Arc<Resource<T>>, RefreshError> {
        self.check_running()?;
        let url = allow::parse(url)?;
        self.resources()
            .get(url.as_str())
            .cloned()
            .ok_or_else(|| RefreshError::NotRegistered { url: url.into() })
    }

    /// Whether `resource` is still the registration of its URL.
    fn is_current(&self, resource: &Arc<Resource<T>>) -> bool {
        self.resources()
            .get(resource.url.as_str())
            .is_some_and(|current| Arc::ptr_eq(current, resource))
    }

    /// Fetches `resource` (one fetch at a time: concurrent calls share it).
    async fn fetch(self: &Arc<Self>, resource: &Arc<Resource<T>>) -> Result<Arc<T>, RefreshError> {
        let (inner, fetched) = (self.clone(), resource.clone());
        let result = self
            .flights
            .get_or_load(&resource.key, move || async move {
                inner.fetch_and_record(&fetched).await.map(Value)
            })
            .await;
        result
            .map(|Value(value)| value)
            .map_err(|error| match error {
                corral::Error::Load(source) => source
                    .downcast_ref::<RefreshError>()
                    .cloned()
                    .unwrap_or_else(|| transport(resource, source.to_string())),
                corral::Error::Timeout(after) => RefreshError::Timeout {
                    url: resource.url.to_string(),
                    after,
                },
                other => transport(resource, other.to_string()),
            })
    }

    /// The fetch itself (run by the engine's flight, in its own task), its outcome
    /// recorded whatever it is: a client that panics or hangs is a failed fetch too.
    async fn fetch_and_record(&self, resource: &Resource<T>) -> Result<Arc<T>, RefreshError> {
        let client = match &resource.client {
            Some(own) => own.lock().unwrap_or_else(|p| p.into_inner()).clone_box(),
            None => self
                .client
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone_box(),
        };
        let fetch = Fetch {
            url: &resource.url,
            client,
            headers: &resource.headers,
            validators: resource.validators(),
            allow: &self.allow,
            body_limit: self.body_limit,
            max_redirects: self.max_redirects,
            transform: resource.transform.clone(),
        };
        let outcome =
            match tokio::time::timeout(self.timeout, AssertUnwindSafe(fetch.run()).catch_unwind())
                .await
            {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(panic)) => Err(transport(
                    resource,
                    format!(
                        "the HTTP client panicked: {}",
                        corral::panic_message(&*panic)
                    ),
                )),
                Err(_) => Err(RefreshError::Timeout {
                    url: resource.url.to_string(),
                    after: self.timeout,
                }),
            };
        let label = match &outcome {
            Ok(fetch::Fetched::Changed { .. }) => "changed",
            Ok(fetch::Fetched::NotModified { .. }) => "not_modified",
            Err(_) => "failed",
        };
        metrics::counter!("corral_refresh_fetches_total", "outcome" => label).increment(1);
        let result = resource.record(outcome, self.retry_base);
        if let Err(error) = &result {
            tracing::warn!(url = %resource.url, %error, "refresh failed; keeping the last good value");
            if let Some(sink) = &self.sink {
                sink(error);
            }
        }
        result
    }
}

fn transport<T>(resource: &Resource<T>, message: String) -> RefreshError {
    RefreshError::Transport {
        url: resource.url.to_string(),
        source: Arc::from(BoxError::from(message)),
    }
}

impl<T> Drop for Inner<T> {
    fn drop(&mut self) {
        let resources = self.resources.get_mut().unwrap_or_else(|p| p.into_inner());
        for resource in resources.values() {
            resource.stop();
        }
    }
}

/// One URL's timer: sleeps until its next refresh (woken early when a fetch moved
/// it), then refreshes it with one of the cache's workers.
async fn keep_fresh<T: Send + Sync + 'static>(inner: Weak<Inner<T>>, resource: Arc<Resource<T>>) {
    loop {
        let next = resource.next_refresh();
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = resource.wake.notified() => continue,
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let Ok(_worker) = inner.workers.clone().acquire_owned().await else {
            return;
        };
        // Fetched by someone else while this one waited for a worker.
        if resource.next_refresh() > Instant::now() {
            continue;
        }
        let _ = inner.fetch(&resource).await;
        // A fetch always moves the schedule; if something went wrong so badly that
        // it did not, never spin.
        if resource.next_refresh() <= Instant::now() {
            resource.postpone(inner.retry_base);
        }
    }
}

/// Options of a [`RefreshCache`], each with a documented default.
pub struct RefreshCacheBuilder<T> {
    client: Option<Box<dyn Upstream>>,
    connect_timeout: Duration,
    workers: usize,
    defaults: Intervals,
    allow: UrlAllowList,
    sink: Option<Sink>,
    body_limit: usize,
    timeout: Duration,
    retry_base: Duration,
    max_redirects: usize,
    _value: std::marker::PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for RefreshCacheBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshCacheBuilder")
            .field("workers", &self.workers)
            .field("body_limit", &self.body_limit)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> RefreshCacheBuilder<T> {
    fn new() -> Self {
        RefreshCacheBuilder {
            client: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            workers: DEFAULT_WORKERS,
            defaults: Intervals {
                min: DEFAULT_MIN_INTERVAL,
                max: DEFAULT_MAX_INTERVAL,
                fixed: None,
            },
            allow: UrlAllowList::new(),
            sink: None,
            body_limit: DEFAULT_MAX_BODY_BYTES,
            timeout: DEFAULT_FETCH_TIMEOUT,
            retry_base: DEFAULT_RETRY_BASE,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            _value: std::marker::PhantomData,
        }
    }

    /// The HTTP client: any tower service from `http::Request<B>` to
    /// `http::Response` (a hyper-util client, an `HttpCache` in front of one, a
    /// client with custom TLS) [default: a pooled HTTP/1.1 and HTTP/2 client with
    /// rustls and the webpki roots]. A registration may bring its own.
    pub fn client<S, B, RB>(mut self, client: S) -> Self
    where
        S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Default + Send + 'static,
        RB: http_body::Body<Data = Bytes> + Send + 'static,
        RB::Error: Into<BoxError>,
    {
        self.client = Some(Box::new(Erased::<S, B>::new(client)));
        self
    }

    /// The default client's connect timeout [default: 10 s].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How many background refreshes run at once [default: [`DEFAULT_WORKERS`]].
    /// `get` and `refresh` do not wait for a worker.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// The min interval of registrations that set none [default: 15 minutes].
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.defaults.min = interval;
        self
    }

    /// The max interval of registrations that set none [default: 30 days].
    pub fn max_interval(mut self, interval: Duration) -> Self {
        self.defaults.max = interval;
        self
    }

    /// The URLs that may be registered and redirected to [default: any `http` or
    /// `https` URL].
    pub fn allow(mut self, allow: UrlAllowList) -> Self {
        self.allow = allow;
        self
    }

    /// Called with every failed fetch's error (background or not), on the task that
    /// fetched: it must not block [default: none; failures are logged either way].
    pub fn error_sink(mut self, sink: impl Fn(&RefreshError) + Send + Sync + 'static) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// The largest body fetched; a larger one is a failed fetch [default: 10 MiB].
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }

    /// The time one fetch may take, redirects, body and transformer included
    /// [default: 30 s].
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The wait before the first retry of a failed fetch; it doubles with each
    /// failure in a row, up to the URL's min interval [default: 1 s].
    pub fn retry_base(mut self, base: Duration) -> Self {
        self.retry_base = base;
        self
    }

    /// The most redirects one fetch follows [default: 5].
    pub fn max_redirects(mut self, redirects: usize) -> Self {
        self.max_redirects = redirects;
        self
    }

    /// The cache, or an error naming the invalid option.
    pub fn build(self) -> Result<RefreshCache<T>, RefreshError> {
        let invalid = |m: &str| Err(RefreshError::InvalidOption(m.into()));
        registration::check_intervals(self.defaults)?;
        if self.workers == 0 {
            return invalid("workers must be at least 1");
        }
        if self.timeout.is_zero() || self.retry_base.is_zero() || self.connect_timeout.is_zero() {
            return invalid("timeouts and the retry base must be longer than zero");
        }
        if self.body_limit == 0 {
            return invalid("max_body_bytes must be at least 1");
        }
        let flights = corral::Cache::builder()
            .name("refresh")
            .fresh_for(Duration::ZERO)
            .ttl(Duration::ZERO)
            // The fetch enforces its own timeout (and records it); this is a backstop.
            .load_timeout(self.timeout * 2)
            // A failed fetch is logged by the fetch itself, with its URL.
            .log_load_errors(false)
            .build()
            .map_err(|e| RefreshError::InvalidOption(e.to_string()))?;
        let client = match self.client {
            Some(client) => client,
            None => {
                let client = crate::client::https_client(self.connect_timeout)
                    .map_err(|e| RefreshError::InvalidOption(e.to_string()))?;
                Box::new(Erased::<_, crate::Body>::new(client))
            }
        };
        Ok(RefreshCache {
            inner: Arc::new(Inner {
                resources: Mutex::new(HashMap::new()),
                flights,
                client: Mutex::new(client),
                workers: Arc::new(Semaphore::new(self.workers)),
                allow: self.allow,
                defaults: self.defaults,
                body_limit: self.body_limit,
                timeout: self.timeout,
                retry_base: self.retry_base,
                max_redirects: self.max_redirects,
                sink: self.sink,
                registrations: AtomicU64::new(0),
                shut_down: AtomicBool::new(false),
            }),
        })
    }
}

impl<T> std::fmt::Debug for RefreshCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let registered = self
            .inner
            .resources
            .lock()
            .map(|r| r.len())
            .unwrap_or_default();
        f.debug_struct("RefreshCache")
            .field("registered", &registered)
            .field("allow", &self.inner.allow)
            .finish_non_exhaustive()
    }
}
