//! How many bytes a value holds, so the memory tier can stay within `max_bytes`.

use std::sync::Arc;

use bytes::Bytes;

/// Reports the bytes a value keeps alive, for the memory tier's `max_bytes` bound.
///
/// Count what the value owns on the heap; the cache adds the key's length and a fixed
/// per-entry overhead itself. Implemented for the usual byte and string containers and
/// for `Arc`/`Box` around them; implement it for your own types by summing their parts.
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

impl Weigh for Vec<u8> {
    fn weigh(&self) -> usize {
        self.capacity()
    }
}

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
    fn wrappers_count_the_pointee_and_their_header() {
        let arc: Arc<str> = Arc::from("abcd");
        assert_eq!(arc.weigh(), 4 + 4 + 16);
        let boxed: Box<[u8]> = vec![0u8; 10].into_boxed_slice();
        assert_eq!(boxed.weigh(), 20);
        let arc_bytes = Arc::new(Bytes::from_static(b"xyz"));
        assert_eq!(arc_bytes.weigh(), 3 + std::mem::size_of::<Bytes>() + 16);
    }
}
