//! Vary: several stored responses (variants) per URL, told apart by the request
//! headers their response names in `Vary`.
//!
//! A response with `Vary` is stored under a variant key: the URL's key, the generation
//! of the URL's variant index, and the request's values of the named headers. The URL's
//! own key then holds the index (the header names and the generation). Invalidating
//! the URL removes the index; the next index gets a new generation, so variants stored
//! before the invalidation can never be reached again.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, HeaderName};

/// The header names a URL's responses vary on, and the index's generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VarySpec {
    pub names: Vec<HeaderName>,
    pub generation: u64,
}

/// What a response's `Vary` says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Vary {
    /// No `Vary`: one response serves every request for the URL.
    None,
    /// `Vary: *`: the response may never be served from a cache.
    Any,
    /// The request headers that select this response.
    Names(Vec<HeaderName>),
}

impl Vary {
    pub(crate) fn parse(headers: &HeaderMap) -> Vary {
        let mut names: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(http::header::VARY) {
            let Ok(value) = value.to_str() else {
                return Vary::Any;
            };
            for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if name == "*" {
                    return Vary::Any;
                }
                match HeaderName::from_bytes(name.as_bytes()) {
                    Ok(n) if !names.contains(&n) => names.push(n),
                    Ok(_) => {}
                    Err(_) => return Vary::Any,
                }
            }
        }
        if names.is_empty() {
            Vary::None
        } else {
            Vary::Names(names)
        }
    }
}

/// A fresh, process-unique generation for a new variant index.
pub(crate) fn new_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Seeded per process, so two servers sharing a store do not pick the same numbers.
    static SEED: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    SEED.get_or_init(RandomState::new)
        .hash_one(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The request's values of `names`, encoded unambiguously (bytes outside printable
/// ASCII and the separators are percent-escaped; several field lines are joined with
/// a separator that cannot occur in a value).
pub(crate) fn selecting_values(names: &[HeaderName], headers: &HeaderMap) -> String {
    let mut out = String::new();
    for name in names {
        out.push_str(name.as_str());
        out.push('=');
        for (i, value) in headers.get_all(name).iter().enumerate() {
            if i > 0 {
                out.push('\u{1e}');
            }
            for &b in value.as_bytes() {
                if b.is_ascii_graphic() && b != b'%' || b == b' ' {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
        out.push('\u{1f}');
    }
    out
}

/// The key under which the variant of `primary` selected by `headers` is stored.
pub(crate) fn variant_key(primary: &str, spec: &VarySpec, headers: &HeaderMap) -> String {
    variant_key_for(primary, spec, &selecting_values(&spec.names, headers))
}

/// The key of the variant of `primary` whose selecting values (as
/// [`selecting_values`] encodes them) are `selecting`.
pub(crate) fn variant_key_for(primary: &str, spec: &VarySpec, selecting: &str) -> String {
    format!("{primary}\u{1f}vary#{:x}\u{1f}{selecting}", spec.generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn vary_lists_names_once_and_star_wins() {
        let v = Vary::parse(&headers(&[
            ("vary", b"Accept-Encoding, accept-language"),
            ("vary", b"accept-encoding"),
        ]));
        assert_eq!(
            v,
            Vary::Names(vec![
                HeaderName::from_static("accept-encoding"),
                HeaderName::from_static("accept-language")
            ])
        );
        assert_eq!(Vary::parse(&headers(&[("vary", b"origin, *")])), Vary::Any);
        assert_eq!(Vary::parse(&HeaderMap::new()), Vary::None);
    }

    #[test]
    fn different_values_select_different_variants() {
        let spec = VarySpec {
            names: vec![HeaderName::from_static("accept-encoding")],
            generation: 1,
        };
        let gzip = variant_key("k", &spec, &headers(&[("accept-encoding", b"gzip")]));
        let br = variant_key("k", &spec, &headers(&[("accept-encoding", b"br")]));
        let none = variant_key("k", &spec, &HeaderMap::new());
        assert!(gzip != br && br != none && gzip != none);
        let again = variant_key("k", &spec, &headers(&[("accept-encoding", b"gzip")]));
        assert_eq!(gzip, again);
    }

    #[test]
    fn values_cannot_be_confused_by_their_bytes() {
        let names = [HeaderName::from_static("x-a")];
        let two_lines = selecting_values(&names, &headers(&[("x-a", b"a"), ("x-a", b"b")]));
        let one_line = selecting_values(&names, &headers(&[("x-a", b"a%1Eb")]));
        assert_ne!(two_lines, one_line);
        let latin = selecting_values(&names, &headers(&[("x-a", b"caf\xe9")]));
        assert_eq!(latin, "x-a=caf%E9\u{1f}");
    }

    #[test]
    fn generations_differ() {
        assert_ne!(new_generation(), new_generation());
    }
}
