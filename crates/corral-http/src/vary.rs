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

/// The request fields whose values [`selecting_values`] reads in a normal form when
/// asked to: lists whose letter case and spacing mean nothing to the origins that
/// vary on them.
const NORMALIZED: [HeaderName; 2] = [http::header::ACCEPT_ENCODING, http::header::ACCEPT_LANGUAGE];

/// The request's values of `names`, encoded unambiguously (bytes outside printable
/// ASCII and the separators are percent-escaped; several field lines are joined with
/// a separator that cannot occur in a value). With `normalize`, `Accept-Encoding` and
/// `Accept-Language` are read as one list in normal form ([`normal_form`]).
pub(crate) fn selecting_values(
    names: &[HeaderName],
    headers: &HeaderMap,
    normalize: bool,
) -> String {
    let mut out = String::new();
    for name in names {
        out.push_str(name.as_str());
        out.push('=');
        if normalize && NORMALIZED.contains(name) {
            escape(&mut out, &normal_form(name, headers.get_all(name)));
        } else {
            for (i, value) in headers.get_all(name).iter().enumerate() {
                if i > 0 {
                    out.push('\u{1e}');
                }
                escape(&mut out, value.as_bytes());
            }
        }
        out.push('\u{1f}');
    }
    out
}

/// The lines of `name` (`Accept-Encoding` or `Accept-Language`) as one list whose
/// members are lowercased, stripped of the spaces and tabs around them and around
/// their parameters' `;` and `=`, and empty ones dropped: `en ; Q=0.5` is `en;q=0.5`.
/// `Accept-Encoding`'s members are also sorted and deduplicated (any coding the
/// origin picks from the list is one every such request accepts); `Accept-Language`
/// keeps its order, which origins read as priority (RFC 9110 §12.5.4).
pub(crate) fn normal_form(
    name: &HeaderName,
    lines: http::header::GetAll<'_, http::HeaderValue>,
) -> Vec<u8> {
    let mut members: Vec<Vec<u8>> = lines
        .iter()
        .flat_map(|line| line.as_bytes().split(|&b| b == b','))
        .map(normal_member)
        .filter(|member| !member.is_empty())
        .collect();
    if name == http::header::ACCEPT_ENCODING {
        members.sort_unstable();
        members.dedup();
    }
    members.join(&b',')
}

/// One list member lowercased, with no spaces or tabs around it or its `;` and `=`.
fn normal_member(member: &[u8]) -> Vec<u8> {
    let trim = |part: &[u8]| part.trim_ascii().to_ascii_lowercase();
    let params: Vec<Vec<u8>> = member
        .split(|&b| b == b';')
        .map(|param| {
            let sides: Vec<Vec<u8>> = param.splitn(2, |&b| b == b'=').map(trim).collect();
            sides.join(&b'=')
        })
        .collect();
    if params.iter().all(Vec::is_empty) {
        return Vec::new();
    }
    params.join(&b';')
}

/// Appends `bytes`, percent-escaping those outside printable ASCII and `%`.
fn escape(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'%' || b == b' ' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The key under which the variant of `primary` selected by `headers` is stored.
pub(crate) fn variant_key(
    primary: &str,
    spec: &VarySpec,
    headers: &HeaderMap,
    normalize: bool,
) -> String {
    variant_key_for(
        primary,
        spec,
        &selecting_values(&spec.names, headers, normalize),
    )
}

/// The start of every variant key of `primary`.
pub(crate) fn variants_prefix(primary: &str) -> String {
    format!("{primary}\u{1f}vary#")
}

/// The key of the variant of `primary` whose selecting values (as
/// [`selecting_values`] encodes them) are `selecting`.
pub(crate) fn variant_key_for(primary: &str, spec: &VarySpec, selecting: &str) -> String {
    format!(
        "{}{:x}\u{1f}{selecting}",
        variants_prefix(primary),
        spec.generation
    )
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
        let gzip = variant_key("k", &spec, &headers(&[("accept-encoding", b"gzip")]), false);
        let br = variant_key("k", &spec, &headers(&[("accept-encoding", b"br")]), false);
        let none = variant_key("k", &spec, &HeaderMap::new(), false);
        assert!(gzip != br && br != none && gzip != none);
        let again = variant_key("k", &spec, &headers(&[("accept-encoding", b"gzip")]), false);
        assert_eq!(gzip, again);
    }

    #[test]
    fn values_cannot_be_confused_by_their_bytes() {
        let names = [HeaderName::from_static("x-a")];
        let two_lines = selecting_values(&names, &headers(&[("x-a", b"a"), ("x-a", b"b")]), false);
        let one_line = selecting_values(&names, &headers(&[("x-a", b"a%1Eb")]), false);
        assert_ne!(two_lines, one_line);
        let latin = selecting_values(&names, &headers(&[("x-a", b"caf\xe9")]), false);
        assert_eq!(latin, "x-a=caf%E9\u{1f}");
    }

    #[test]
    fn generations_differ() {
        assert_ne!(new_generation(), new_generation());
    }

    #[test]
    fn accept_lists_in_normal_form_ignore_case_and_spacing_and_encoding_order_only() {
        let names = [http::header::ACCEPT_ENCODING, http::header::ACCEPT_LANGUAGE];
        let select = |pairs: &[(&str, &[u8])], normalize| {
            selecting_values(&names, &headers(pairs), normalize)
        };
        let a = select(
            &[
                ("accept-encoding", b"gzip, br"),
                ("accept-language", b"de-DE, en;q=0.5"),
            ],
            true,
        );
        let b = select(
            &[
                ("accept-encoding", b"BR,gzip,,gzip"),
                ("accept-language", b"DE-de ,"),
                ("accept-language", b"en ; Q = 0.5"),
            ],
            true,
        );
        assert_eq!(a, b);
        assert_ne!(
            select(&[("accept-language", b"de, fr")], true),
            select(&[("accept-language", b"fr, de")], true),
            "a language list's order is its priority"
        );
        assert_ne!(
            select(&[("accept-language", b"d e")], true),
            select(&[("accept-language", b"de")], true),
            "spaces inside a member stay"
        );
        assert_ne!(
            select(&[("accept-encoding", b"br;q=0.5")], true),
            select(&[("accept-encoding", b"br")], true),
            "a weight is a difference"
        );
        assert_ne!(
            select(&[("accept-encoding", b"gzip, br")], false),
            select(&[("accept-encoding", b"br, gzip")], false),
            "off: compared exactly"
        );
        let other = [HeaderName::from_static("x-a")];
        assert_ne!(
            selecting_values(&other, &headers(&[("x-a", b"a, b")]), true),
            selecting_values(&other, &headers(&[("x-a", b"b, a")]), true),
            "other fields are compared exactly"
        );
    }
}
