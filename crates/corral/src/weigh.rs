//! How many bytes a value holds, so the memory tier can stay within `max_bytes`: the
//! [`Weigh`] trait, or a [`Weigher`] given to the builder for types without it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

/// Reports the bytes a value keeps alive, for the memory tier's `max_bytes` bound.
///
/// Count what the value owns on the heap; the cache adds the key's length, the value's
/// inline size and a fixed per-entry overhead itself. Implemented for strings, byte
/// buffers, numbers, `Option`, tuples, arrays, `Vec` and the standard maps and sets of
/// weighable types, and `Arc`/`Box` around them; implement it for your own types by
/// summing their parts. A type without it can still be cached: give the builder a
/// [`weigher`](crate::CacheBuilder::weigher) closure, or, for a type that derives
/// `Serialize`, `weigh_serialized` (with the `serde` feature).
///
/// ```
/// use corral::Weigh;
///
/// struct User { name: String, avatar: Vec<u8> }
///
/// impl Weigh for User {
///     fn weigh(&self) -> usize {
///         self.name.weigh() + self.avatar.weigh()
///     }
/// }
/// let u = User { name: "ada".into(), avatar: vec![0; 100] };
/// assert!(u.weigh() >= 103);
/// ```
pub trait Weigh {
    /// Bytes owned by this value beyond its inline size.
    fn weigh(&self) -> usize;
}

impl Weigh for Bytes {
    fn weigh(&self) -> usize {
        self.len()
    }
}

impl Weigh for BytesMut {
    fn weigh(&self) -> usize {
        self.capacity()
    }
}

/// The buffer (every slot of its capacity) and what the elements own.
impl<T: Weigh> Weigh for Vec<T> {
    fn weigh(&self) -> usize {
        self.capacity() * size_of::<T>() + self.iter().map(T::weigh).sum::<usize>()
    }
}

/// The buffer (every slot of its capacity) and what the elements own.
impl<T: Weigh> Weigh for VecDeque<T> {
    fn weigh(&self) -> usize {
        self.capacity() * size_of::<T>() + self.iter().map(T::weigh).sum::<usize>()
    }
}

/// An estimate: a slot per unit of capacity (the pair and a control byte), and what the
/// keys and values own.
impl<K: Weigh, T: Weigh, S> Weigh for HashMap<K, T, S> {
    fn weigh(&self) -> usize {
        self.capacity() * (size_of::<(K, T)>() + 1)
            + self
                .iter()
                .map(|(k, v)| k.weigh() + v.weigh())
                .sum::<usize>()
    }
}

/// An estimate: a slot per unit of capacity (the element and a control byte), and what
/// the elements own.
impl<T: Weigh, S> Weigh for HashSet<T, S> {
    fn weigh(&self) -> usize {
        self.capacity() * (size_of::<T>() + 1) + self.iter().map(T::weigh).sum::<usize>()
    }
}

/// An estimate: the pairs (B-tree nodes hold little more), and what they own.
impl<K: Weigh, T: Weigh> Weigh for BTreeMap<K, T> {
    fn weigh(&self) -> usize {
        self.iter()
            .map(|(k, v)| size_of::<(K, T)>() + k.weigh() + v.weigh())
            .sum()
    }
}

/// An estimate: the elements (B-tree nodes hold little more), and what they own.
impl<T: Weigh> Weigh for BTreeSet<T> {
    fn weigh(&self) -> usize {
        self.iter().map(|t| size_of::<T>() + t.weigh()).sum()
    }
}

/// What the elements own (the array itself is inline).
impl<T: Weigh, const N: usize> Weigh for [T; N] {
    fn weigh(&self) -> usize {
        self.iter().map(T::weigh).sum()
    }
}

macro_rules! tuples {
    ($(($($t:ident . $i:tt),+)),*) => {$(
        /// What the fields own (the tuple itself is inline).
        impl<$($t: Weigh),+> Weigh for ($($t,)+) {
            fn weigh(&self) -> usize {
                0 $(+ self.$i.weigh())+
            }
        }
    )*};
}

tuples!((A.0), (A.0, B.1), (A.0, B.1, C.2), (A.0, B.1, C.2, D.3));

impl Weigh for String {
    fn weigh(&self) -> usize {
        self.capacity()
    }
}

impl Weigh for str {
    fn weigh(&self) -> usize {
        self.len()
    }
}

impl Weigh for [u8] {
    fn weigh(&self) -> usize {
        self.len()
    }
}

impl<T: Weigh + ?Sized> Weigh for Arc<T> {
    fn weigh(&self) -> usize {
        // The pointee plus the two reference counts in front of it.
        T::weigh(self) + std::mem::size_of_val::<T>(self) + 2 * std::mem::size_of::<usize>()
    }
}

impl<T: Weigh + ?Sized> Weigh for Box<T> {
    fn weigh(&self) -> usize {
        T::weigh(self) + std::mem::size_of_val::<T>(self)
    }
}

impl<T: Weigh> Weigh for Option<T> {
    fn weigh(&self) -> usize {
        self.as_ref().map_or(0, T::weigh)
    }
}

macro_rules! inline_only {
    ($($t:ty),*) => {$(
        impl Weigh for $t {
            fn weigh(&self) -> usize {
                0
            }
        }
    )*};
}

inline_only!(
    (),
    Duration,
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64
);

/// How a cache weighs its values for its memory bound: [`ByWeigh`] (the default), a
/// closure given to [`CacheBuilder::weigher`](crate::CacheBuilder::weigher), or
/// `SerializedSize` (with the `serde` feature). Sealed: the builder's methods choose one.
#[diagnostic::on_unimplemented(
    message = "the cache cannot weigh `{V}`: it does not implement `corral::Weigh`",
    note = "implement `corral::Weigh` for it, or give the builder a weigher: `.weigher(|_key, value: &{V}| ...)`, or `.weigh_serialized()` (feature `serde`)"
)]
pub trait Weigher<V>: sealed::Sealed<V> + Send + Sync + 'static {
    /// Bytes `value`, stored under `key`, keeps alive beyond its inline size.
    fn weigh(&self, key: &str, value: &V) -> usize;
}

mod sealed {
    pub trait Sealed<V> {}
}

/// Weighs a value by its [`Weigh`] impl: the builder's default.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByWeigh;

impl<V: Weigh> sealed::Sealed<V> for ByWeigh {}

impl<V: Weigh> Weigher<V> for ByWeigh {
    fn weigh(&self, _key: &str, value: &V) -> usize {
        value.weigh()
    }
}

impl<V, F: Fn(&str, &V) -> usize + Send + Sync + 'static> sealed::Sealed<V> for F {}

impl<V, F: Fn(&str, &V) -> usize + Send + Sync + 'static> Weigher<V> for F {
    fn weigh(&self, key: &str, value: &V) -> usize {
        self(key, value)
    }
}

/// Weighs a value by the length of its compact MessagePack encoding (see
/// [`CacheBuilder::weigh_serialized`](crate::CacheBuilder::weigh_serialized)).
///
/// The encoding holds a string's or a byte buffer's bytes and a few bytes of framing
/// per field and element, so it is close to what a value owns on the heap for the
/// usual data types (strings, buffers, collections of them), a little over it for
/// structs of numbers, and under it for collections with spare capacity. The value is
/// encoded (into a counter, not a buffer) once each time it is stored; a value that
/// does not serialize weighs what was counted up to the failure. With the `serde`
/// feature.
#[cfg(feature = "serde")]
#[derive(Debug, Clone, Copy, Default)]
pub struct SerializedSize;

#[cfg(feature = "serde")]
impl<V: serde::Serialize> sealed::Sealed<V> for SerializedSize {}

#[cfg(feature = "serde")]
impl<V: serde::Serialize> Weigher<V> for SerializedSize {
    fn weigh(&self, _key: &str, value: &V) -> usize {
        /// Counts the bytes written to it.
        struct Count(usize);

        impl std::io::Write for Count {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0 += bytes.len();
                Ok(bytes.len())
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        let mut count = Count(0);
        let _ = rmp_serde::encode::write(&mut count, value);
        count.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_count_their_heap_bytes() {
        assert_eq!(Bytes::from_static(b"hello").weigh(), 5);
        assert_eq!(Vec::<u8>::with_capacity(64).weigh(), 64);
        assert_eq!(String::from("abc").weigh(), 3);
        assert_eq!(Some(Bytes::from_static(b"ab")).weigh(), 2);
        assert_eq!(None::<Bytes>.weigh(), 0);
        assert_eq!(7u64.weigh(), 0);
    }

    #[test]
    fn collections_count_their_buffers_and_what_their_elements_own() {
        let strings = vec![String::from("ab"), String::from("cde")];
        assert_eq!(strings.weigh(), 2 * size_of::<String>() + 5);
        let mut deque = VecDeque::with_capacity(4);
        deque.push_back(Bytes::from_static(b"xyz"));
        assert_eq!(deque.weigh(), deque.capacity() * size_of::<Bytes>() + 3);
        let map: HashMap<String, u32> = [("k".to_string(), 1)].into();
        assert_eq!(
            map.weigh(),
            map.capacity() * (size_of::<(String, u32)>() + 1) + 1
        );
        let tree: BTreeMap<u8, String> = [(1, "abcd".to_string())].into();
        assert_eq!(tree.weigh(), size_of::<(u8, String)>() + 4);
        assert_eq!(
            (String::from("ab"), 7u8, [Some(Bytes::from_static(b"z"))]).weigh(),
            3
        );
    }

    #[test]
    fn a_weigher_is_the_weigh_impl_a_closure_or_the_serialized_size() {
        fn weigh<V>(weigher: impl Weigher<V>, value: &V) -> usize {
            weigher.weigh("key", value)
        }
        assert_eq!(weigh(ByWeigh, &String::from("abc")), 3);
        assert_eq!(weigh(|key: &str, v: &u64| key.len() + *v as usize, &10), 13);
        #[cfg(feature = "serde")]
        {
            // MessagePack: a fixstr's one-byte header, then its bytes.
            assert_eq!(weigh(SerializedSize, &"hello".to_string()), 6);
            let two = vec!["ab".to_string(), "cd".to_string()];
            assert_eq!(weigh(SerializedSize, &two), 1 + 3 + 3);
        }
    }

    #[test]
    fn wrappers_count_the_pointee_and_their_header() {
        let arc: Arc<str> = Arc::from("abcd");
        assert_eq!(arc.weigh(), 4 + 4 + 16);
        let boxed: Box<[u8]> = vec![0u8; 10].into_boxed_slice();
        assert_eq!(boxed.weigh(), 20);
        let arc_bytes = Arc::new(Bytes::from_static(b"xyz"));
        assert_eq!(arc_bytes.weigh(), 3 + std::mem::size_of::<Bytes>() + 16);
    }
}
