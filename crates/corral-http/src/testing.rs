//! What the unit tests share.

use http::{HeaderMap, HeaderName};

/// A map of field lines, in order (repeated names appended).
pub(crate) fn header_map(lines: &[(&str, &str)]) -> HeaderMap {
    lines
        .iter()
        .map(|(name, value)| {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("a field name");
            (name, value.parse().expect("a field value"))
        })
        .collect()
}
