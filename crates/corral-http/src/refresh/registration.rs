//! How one URL is kept: its transformer, intervals, client and request headers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response};
use serde::de::DeserializeOwned;
use tower::Service;

use super::RefreshError;
use super::schedule::Intervals;
use super::transform::{AsyncFn, BytesBody, Json, Text, Transform};
use crate::body::BoxError;
use crate::upstream::{Erased, Upstream};

/// The options of one registered URL, given to
/// [`RefreshCache::register`](super::RefreshCache::register). Unset intervals take the
/// cache's defaults (15 minutes and 30 days unless its builder says otherwise).
///
/// ```
/// use std::time::Duration;
/// use corral_http::refresh::Registration;
///
/// #[derive(serde::Deserialize)]
/// struct Jwks { keys: Vec<serde_json::Value> }
///
/// let jwks: Registration<Jwks> = Registration::json()
///     .min_interval(Duration::from_secs(5 * 60))
///     .max_interval(Duration::from_secs(24 * 3600))
///     .wait_for_first_fetch(true);
/// let raw = Registration::bytes().fixed_interval(Duration::from_secs(30));
/// let pem = Registration::text();
/// // Any function of the response: its type is inferred, no `http` or `bytes` needed.
/// let lines = Registration::with_transform(|response| async move {
///     let text = std::str::from_utf8(response.body())?;
///     Ok::<_, std::str::Utf8Error>(text.lines().map(str::to_owned).collect::<Vec<_>>())
/// });
/// # let _: (Registration<String>, Registration<Vec<String>>) = (pem, lines);
/// # let _ = (jwks, raw);
/// ```
pub struct Registration<T> {
    pub(crate) transform: Arc<dyn Transform<T>>,
    pub(crate) min_interval: Option<Duration>,
    pub(crate) max_interval: Option<Duration>,
    pub(crate) fixed_interval: Option<Duration>,
    pub(crate) client: Option<Box<dyn Upstream>>,
    pub(crate) headers: HeaderMap,
    pub(crate) wait: bool,
}

impl Registration<Bytes> {
    /// Keeps the response's body as it came.
    pub fn bytes() -> Self {
        Registration::from_transform(BytesBody)
    }
}

impl Registration<String> {
    /// Keeps the response's body as text. It must be UTF-8 (whatever its
    /// `Content-Type` says): anything else is a failed refresh, a
    /// [`RefreshError::Transform`] whose source is a [`NotUtf8`](super::NotUtf8),
    /// and the previous value stays.
    ///
    /// ```no_run
    /// use corral_http::refresh::{RefreshCache, Registration};
    ///
    /// # async fn run() -> Result<(), corral_http::refresh::RefreshError> {
    /// const URL: &str = "https://auth.example.com/signing-key.pem";
    /// let keys: RefreshCache<String> = RefreshCache::builder().build()?;
    /// keys.register(URL, Registration::text().wait_for_first_fetch(true)).await?;
    /// let pem = keys.get(URL).await?;
    /// assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    /// # Ok(()) }
    /// ```
    pub fn text() -> Self {
        Registration::from_transform(Text)
    }
}

impl<T: DeserializeOwned + Send + 'static> Registration<T> {
    /// Keeps the response's body parsed as JSON (a body that does not parse is a
    /// failed refresh; the previous value stays).
    pub fn json() -> Self {
        Registration::from_transform(Json::new())
    }
}

impl<T> Registration<T> {
    /// Keeps what `transform` makes of each successful (2xx) response, its body read
    /// whole: a [`Response`]`<`[`Bytes`]`>` (both re-exported by this module). Its
    /// error, or its panic, is a failed refresh: the previous value stays. The
    /// closure's argument needs no type annotation.
    ///
    /// ```
    /// use corral_http::refresh::Registration;
    ///
    /// #[derive(Debug, PartialEq)]
    /// struct Version(u32);
    ///
    /// // Keep the number in the body, and refuse anything else.
    /// let version = Registration::with_transform(|response| async move {
    ///     let text = std::str::from_utf8(response.body())?;
    ///     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Version(text.trim().parse()?))
    /// });
    /// # let _: Registration<Version> = version;
    /// ```
    ///
    /// A function with a name spells the argument's type with the re-exports:
    ///
    /// ```
    /// use corral_http::refresh::{Bytes, Registration, Response};
    ///
    /// async fn etag_and_body(response: Response<Bytes>) -> Result<(String, Bytes), std::io::Error> {
    ///     let etag = response.headers().get("etag").and_then(|v| v.to_str().ok());
    ///     Ok((etag.unwrap_or_default().to_owned(), response.into_body()))
    /// }
    /// let registration = Registration::with_transform(etag_and_body);
    /// # let _ = registration;
    /// ```
    pub fn with_transform<F, Fut, E>(transform: F) -> Self
    where
        F: Fn(Response<Bytes>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        Registration::from_transform(AsyncFn(transform))
    }

    fn from_transform(transform: impl Transform<T>) -> Self {
        Registration {
            transform: Arc::new(transform),
            min_interval: None,
            max_interval: None,
            fixed_interval: None,
            client: None,
            headers: HeaderMap::new(),
            wait: false,
        }
    }

    /// The shortest wait between refreshes, whatever the response says (and the
    /// wait after a response that gives no lifetime, and the cap of the back-off
    /// after failures).
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = Some(interval);
        self
    }

    /// The longest wait between refreshes, whatever the response says.
    pub fn max_interval(mut self, interval: Duration) -> Self {
        self.max_interval = Some(interval);
        self
    }

    /// Refreshes every `interval`, ignoring what responses say.
    pub fn fixed_interval(mut self, interval: Duration) -> Self {
        self.fixed_interval = Some(interval);
        self
    }

    /// Fetches this URL with `client` instead of the cache's: any tower service from
    /// `http::Request<B>` to `http::Response` (an `HttpCache`, a client with auth or
    /// custom TLS).
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

    /// Sends `name: value` with every request for this URL (credentials, `Accept`).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Whether `register` waits for the first fetch and returns its error, if any
    /// (the URL stays registered either way) [default: false: the first fetch runs
    /// in the background at once].
    pub fn wait_for_first_fetch(mut self, wait: bool) -> Self {
        self.wait = wait;
        self
    }

    /// The URL's intervals, with the cache's defaults where unset.
    pub(crate) fn intervals(&self, defaults: Intervals) -> Result<Intervals, RefreshError> {
        let intervals = Intervals {
            min: self.min_interval.unwrap_or(defaults.min),
            max: self.max_interval.unwrap_or(defaults.max),
            fixed: self.fixed_interval,
        };
        check_intervals(intervals)?;
        Ok(intervals)
    }
}

/// Intervals that make sense: non-zero, and min ≤ max.
pub(crate) fn check_intervals(intervals: Intervals) -> Result<(), RefreshError> {
    let invalid = |m: String| Err(RefreshError::InvalidOption(m));
    if intervals.min.is_zero() || intervals.fixed.is_some_and(|f| f.is_zero()) {
        return invalid("refresh intervals must be longer than zero".into());
    }
    if intervals.min > intervals.max {
        return invalid(format!(
            "the min interval ({:?}) is longer than the max interval ({:?})",
            intervals.min, intervals.max
        ));
    }
    Ok(())
}

impl<T> std::fmt::Debug for Registration<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("min_interval", &self.min_interval)
            .field("max_interval", &self.max_interval)
            .field("fixed_interval", &self.fixed_interval)
            .field("own_client", &self.client.is_some())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("wait", &self.wait)
            .finish()
    }
}
