//! What a loader returns: a value, optionally with its own lifetime or a request not to keep it.

use std::time::Duration;

/// A loaded value with per-entry overrides of the cache's lifetime options.
///
/// A loader may return a plain `V` (stored with the cache's `fresh_for` and `ttl`) or a
/// `Loaded<V>` to decide per value, e.g. from an HTTP `max-age`:
///
/// ```
/// use std::time::Duration;
/// use corral::{Cache, Loaded};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache: Cache<String> = Cache::builder().build()?;
/// let v = cache
///     .get_or_load("token", || async {
///         Ok::<_, std::io::Error>(
///             Loaded::new("secret".to_string())
///                 .fresh_for(Duration::from_secs(30))
///                 .ttl(Duration::from_secs(60)),
///         )
///     })
///     .await?;
/// assert_eq!(v, "secret");
///
/// // Handed to every waiter of this load, but never kept:
/// let once = cache
///     .get_or_load("one-off", || async { Ok::<_, std::io::Error>(Loaded::uncached("x".to_string())) })
///     .await?;
/// assert_eq!(once, "x");
/// assert_eq!(cache.get("one-off"), None);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded<V> {
    pub(crate) value: V,
    pub(crate) fresh_for: Option<Duration>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) store: bool,
    /// Kept in memory only, never written to the tiers below it.
    pub(crate) memory_only: bool,
    /// Its tags, for [`Cache::invalidate_tag`](crate::Cache::invalidate_tag).
    pub(crate) tags: Vec<Box<str>>,
    pub(crate) also: Vec<(String, Loaded<V>)>,
}

impl<V> Loaded<V> {
    /// A value stored with the cache's default lifetime.
    pub fn new(value: V) -> Self {
        Loaded {
            value,
            fresh_for: None,
            ttl: None,
            store: true,
            memory_only: false,
            tags: Vec::new(),
            also: Vec::new(),
        }
    }

    /// A value given to the waiters of this load but not stored.
    pub fn uncached(value: V) -> Self {
        Loaded {
            store: false,
            ..Loaded::new(value)
        }
    }

    /// Overrides how long this entry is fresh. If it is longer than the entry's `ttl`,
    /// the entry is fresh for its whole `ttl`.
    pub fn fresh_for(mut self, fresh_for: Duration) -> Self {
        self.fresh_for = Some(fresh_for);
        self
    }

    /// Overrides how long this entry is kept (fresh, then stale). A zero `ttl` means the
    /// value is not stored.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Tags the entry, so that [`Cache::invalidate_tag`](crate::Cache::invalidate_tag)
    /// (or its soft kin) of any of its tags purges it, in every tier and, through a
    /// Redis tier, on every server. An empty tag, or one already given, is ignored.
    ///
    /// ```
    /// use corral::Loaded;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cache: corral::Cache<String> = corral::Cache::builder().build().unwrap();
    /// cache.insert("/p/1", Loaded::new("one".to_string()).tag("product-1").tag("catalog")).await;
    /// cache.insert("/p/2", Loaded::new("two".to_string()).tag("catalog")).await;
    /// cache.invalidate_tag("product-1").await;
    /// assert_eq!(cache.get("/p/1"), None);
    /// assert_eq!(cache.get("/p/2").as_deref(), Some("two"));
    /// # }
    /// ```
    pub fn tag(mut self, tag: impl AsRef<str>) -> Self {
        let tag = tag.as_ref();
        if !tag.is_empty() && !self.tags.iter().any(|t| &**t == tag) {
            self.tags.push(tag.into());
        }
        self
    }

    /// Keeps this entry in memory only: the tiers below memory (disk, Redis) are not
    /// given it. For a value whose bytes are already on disk (one written through
    /// [`Cache::stream_to_disk`](crate::Cache::stream_to_disk)), or that must not
    /// leave this process.
    pub fn memory_only(mut self) -> Self {
        self.memory_only = true;
        self
    }

    /// Stores another entry along with this one, under `key`: for a load whose result
    /// belongs in more than one place (an HTTP response and the index of its variants,
    /// say). The related entries obey the same rules as the load's own: they are stored
    /// when the load finishes, and not at all if the load's key was invalidated or
    /// overwritten while it ran. Waiters get only this value.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), corral::Error> {
    /// use corral::Loaded;
    /// let cache: corral::Cache<String> = corral::Cache::builder().build().unwrap();
    /// let v = cache
    ///     .get_or_load("index", || async {
    ///         Ok::<_, std::io::Error>(Loaded::new("see page-1".to_string()).also_store("page-1", Loaded::new("hello".to_string())))
    ///     })
    ///     .await?;
    /// assert_eq!(v, "see page-1");
    /// assert_eq!(cache.get("page-1").as_deref(), Some("hello"));
    /// # Ok(()) }
    /// ```
    pub fn also_store(mut self, key: impl Into<String>, entry: Loaded<V>) -> Self {
        self.also.push((key.into(), entry));
        self
    }

    /// The value.
    pub fn value(&self) -> &V {
        &self.value
    }

    /// Takes the value out.
    pub fn into_value(self) -> V {
        self.value
    }
}

impl<V> From<V> for Loaded<V> {
    fn from(value: V) -> Self {
        Loaded::new(value)
    }
}
