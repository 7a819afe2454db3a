//! The tags an origin gives a response, for purges by tag: `Surrogate-Key` (a
//! space-separated list, as Fastly spells it), `Cache-Tag` (comma-separated, as
//! Cloudflare spells it) and the HTTP Cache Groups draft's `Cache-Groups` (a
//! structured-field list of strings). Bounded: at most [`MAX_TAGS`] tags a response,
//! each at most [`MAX_TAG_LEN`] bytes; the rest are ignored, and logged.

use http::HeaderName;

use crate::fields::Fields;

/// The most tags one response keeps.
pub const MAX_TAGS: usize = 128;
/// The longest tag kept, in bytes.
pub const MAX_TAG_LEN: usize = 1024;

const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");
const CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");
const CACHE_GROUPS: HeaderName = HeaderName::from_static("cache-groups");

/// The tags of a response with these header fields, each once, in order.
pub(crate) fn response_tags(headers: &Fields) -> Vec<String> {
    let mut tags = Tags::default();
    for value in headers.get_all(&SURROGATE_KEY) {
        let text = String::from_utf8_lossy(value.as_bytes());
        text.split_ascii_whitespace().for_each(|t| tags.add(t));
    }
    for value in headers.get_all(&CACHE_TAG) {
        let text = String::from_utf8_lossy(value.as_bytes());
        text.split(',').for_each(|t| tags.add(t.trim()));
    }
    for value in headers.get_all(&CACHE_GROUPS) {
        for group in structured_strings(value.as_bytes()) {
            tags.add(&group);
        }
    }
    if tags.dropped > 0 {
        tracing::debug!(
            dropped = tags.dropped,
            "response tags past the limits ignored"
        );
    }
    tags.kept
}

#[derive(Default)]
struct Tags {
    kept: Vec<String>,
    dropped: usize,
}

impl Tags {
    fn add(&mut self, tag: &str) {
        if tag.is_empty() || self.kept.iter().any(|t| t == tag) {
            return;
        }
        if tag.len() > MAX_TAG_LEN || self.kept.len() >= MAX_TAGS {
            self.dropped += 1;
            return;
        }
        self.kept.push(tag.to_owned());
    }
}

/// The strings of a structured-field list (RFC 9651 §3.1, as `Cache-Groups` uses
/// it): `"a", "b";param`. Members that are not strings are skipped; parsing stops at
/// the first malformed one (the draft ignores a field that does not parse, so what
/// came before it is a lenient reading of a broken field).
fn structured_strings(value: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    loop {
        rest = trim_start(rest);
        let Some((&first, after)) = rest.split_first() else {
            return out;
        };
        if first == b'"' {
            let Some((string, after)) = quoted(after) else {
                return out;
            };
            out.push(string);
            rest = after;
        }
        // Skip to the next member (parameters, or a member of another type).
        match rest.iter().position(|&b| b == b',') {
            Some(comma) => rest = &rest[comma + 1..],
            None => return out,
        }
    }
}

/// A quoted string's content up to its closing quote, and what follows it.
fn quoted(mut rest: &[u8]) -> Option<(String, &[u8])> {
    let mut string = String::new();
    loop {
        let (&b, after) = rest.split_first()?;
        rest = after;
        match b {
            b'"' => return Some((string, rest)),
            b'\\' => {
                let (&escaped, after) = rest.split_first()?;
                if escaped != b'"' && escaped != b'\\' {
                    return None;
                }
                string.push(char::from(escaped));
                rest = after;
            }
            0x20..=0x7e => string.push(char::from(b)),
            _ => return None,
        }
    }
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;

    fn tags(fields: &[(&str, &str)]) -> Vec<String> {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        response_tags(&Fields::from_map(&headers))
    }

    #[test]
    fn each_field_is_read_as_its_vendor_spells_it() {
        assert_eq!(
            tags(&[
                ("surrogate-key", " product-1  catalog "),
                ("cache-tag", "a, b,,catalog"),
                ("cache-groups", r#""g1", "g \"2\"";p=1, token, "g3""#),
            ]),
            ["product-1", "catalog", "a", "b", "g1", "g \"2\"", "g3"]
        );
    }

    #[test]
    fn limits_hold_and_malformed_groups_stop_the_reading() {
        let many: Vec<String> = (0..MAX_TAGS + 10).map(|n| format!("t{n}")).collect();
        assert_eq!(tags(&[("surrogate-key", &many.join(" "))]).len(), MAX_TAGS);
        let long = "x".repeat(MAX_TAG_LEN + 1);
        assert!(tags(&[("cache-tag", &long)]).is_empty());
        assert_eq!(tags(&[("cache-groups", r#""ok", "unterminated"#)]), ["ok"]);
        assert_eq!(
            tags(&[("cache-groups", r#""bad \x escape""#)]),
            Vec::<String>::new()
        );
        assert!(tags(&[]).is_empty());
    }
}
