//! Values without a `Weigh` impl: a weigher closure on the builder, or (feature
//! `serde`) their serialized size, count against `max_bytes` in place of the trait.

use std::time::Duration;

use corral::{Cache, ENTRY_OVERHEAD};

/// A type with no `Weigh` impl.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
struct Profile {
    name: String,
    tags: Vec<String>,
}

fn ada() -> Profile {
    Profile {
        name: "Ada".into(),
        tags: vec!["math".into(), "engines".into()],
    }
}

/// The weighted size once pending evictions and counts have settled.
fn weighted_bytes<V: Clone + Send + Sync + 'static>(cache: &Cache<V>) -> u64 {
    cache.run_pending_tasks();
    cache.stats().weighted_bytes
}

#[tokio::test]
async fn a_type_without_weigh_is_cached_and_weighed_by_the_builders_closure() {
    let cache: Cache<Profile> = Cache::builder()
        .weigher(|key: &str, profile: &Profile| {
            assert_eq!(key, "user:42", "the closure sees the entry's key");
            profile.name.len() + profile.tags.iter().map(String::len).sum::<usize>()
        })
        .build()
        .unwrap();
    cache.insert("user:42", ada()).await;
    assert_eq!(cache.get("user:42"), Some(ada()));
    let expected = "user:42".len() + (3 + 4 + 7) + size_of::<Profile>() + ENTRY_OVERHEAD;
    assert_eq!(weighted_bytes(&cache), expected as u64);
}

#[tokio::test]
async fn the_weigher_decides_what_the_bound_keeps() {
    const MAX_BYTES: u64 = 64 * 1024;
    let cache: Cache<Profile> = Cache::builder()
        .max_bytes(MAX_BYTES)
        .fresh_for(Duration::from_secs(3600))
        // Every profile claims to hold twice the whole bound.
        .weigher(|_key, _profile: &Profile| 2 * MAX_BYTES as usize)
        .build()
        .unwrap();
    let loaded = cache
        .get_or_load("user:42", || async { Ok::<_, std::io::Error>(ada()) })
        .await
        .unwrap();
    assert_eq!(loaded, ada(), "served to the caller");
    assert_eq!(cache.get("user:42"), None, "but too heavy to keep");
}

#[tokio::test]
async fn a_weigher_replaces_a_types_own_weigh_impl() {
    let by_trait: Cache<String> = Cache::builder().build().unwrap();
    let by_closure: Cache<String> = Cache::builder()
        .weigher(|_key, _value: &String| 1000)
        .build()
        .unwrap();
    for cache in [&by_trait, &by_closure] {
        cache.insert("k", "abc".to_string()).await;
    }
    assert_eq!(
        weighted_bytes(&by_closure) - weighted_bytes(&by_trait),
        1000 - 3
    );
}

#[cfg(feature = "serde")]
#[tokio::test]
async fn a_serializable_type_is_weighed_by_its_serialized_size() {
    let cache: Cache<Profile> = Cache::builder().weigh_serialized().build().unwrap();
    cache.insert("user:42", ada()).await;
    assert_eq!(cache.get("user:42"), Some(ada()));
    // MessagePack, compact: a 2-element array header, "Ada" (1 + 3), an array header
    // and "math" (1 + 4) and "engines" (1 + 7).
    let serialized = 1 + (1 + 3) + 1 + (1 + 4) + (1 + 7);
    let expected = "user:42".len() + serialized + size_of::<Profile>() + ENTRY_OVERHEAD;
    assert_eq!(weighted_bytes(&cache), expected as u64);
}
