//! Hop-by-hop fields (RFC 9110 §7.6.1): they concern one connection, so a cache never
//! stores them and a proxy never forwards them.

use http::HeaderMap;
use http::header::{self, HeaderName};

/// How many fields [`HOP_BY_HOP`] lists.
const HOPS: usize = 9;

/// The hop-by-hop fields, plus the non-standard `Proxy-Connection`. (A `static`, not a
/// `const`: a `const` array of names is built and dropped at every use.) Each starts
/// with `c`, `k`, `p`, `t` or `u`, which `remove_hop_by_hop` relies on.
static HOP_BY_HOP: [HeaderName; HOPS] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes the hop-by-hop fields from `headers`, and those that `Connection` names.
/// A `Content-Length` received beside `Transfer-Encoding` goes with it: the transfer
/// coding framed the message, and an intermediary must not pass that length on
/// (RFC 9112 §6.3).
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// headers.insert("connection", "close, x-trace".parse().unwrap());
/// headers.insert("x-trace", "1".parse().unwrap());
/// headers.insert("x-kept", "yes".parse().unwrap());
/// corral_http::remove_hop_by_hop(&mut headers);
/// assert_eq!(headers.len(), 1);
/// ```
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass comparing names, no hashing: which of them the message carries (most
    // carry none, or only `Connection: keep-alive`).
    let mut present = [false; HOPS];
    for name in headers.keys() {
        // Every hop-by-hop name starts with one of these letters: most names are
        // passed over on their first byte.
        if !matches!(
            name.as_str().as_bytes().first(),
            Some(b'c' | b'k' | b'p' | b't' | b'u')
        ) {
            continue;
        }
        if let Some(at) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present[at] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    crate::framing::drop_overridden_length(headers);
    // The other fields `Connection` names (rarely any: `close` and `keep-alive` are
    // not fields, or are removed anyway, and one of them alone is the common case).
    let only_options = |value: &http::HeaderValue| {
        let value = value.as_bytes();
        value.eq_ignore_ascii_case(b"keep-alive") || value.eq_ignore_ascii_case(b"close")
    };
    if !headers.get_all(header::CONNECTION).iter().all(only_options) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|n| !n.eq_ignore_ascii_case("close") && !n.eq_ignore_ascii_case("keep-alive"))
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        for name in &named {
            headers.remove(name);
        }
    }
    for (hop, present) in HOP_BY_HOP.iter().zip(present) {
        if present {
            headers.remove(hop);
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn every_hop_by_hop_name_starts_with_a_letter_the_scan_looks_for() {
        for hop in &HOP_BY_HOP {
            assert!(matches!(
                hop.as_str().as_bytes()[0],
                b'c' | b'k' | b'p' | b't' | b'u'
            ));
        }
    }

    #[test]
    fn hop_by_hop_fields_those_connection_names_and_a_length_a_coding_overrode_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-trace"),
        );
        h.append(header::CONNECTION, HeaderValue::from_static("x-second"));
        h.insert("x-trace", HeaderValue::from_static("1"));
        h.insert("x-second", HeaderValue::from_static("2"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("content-length", HeaderValue::from_static("0"));
        h.insert("x-kept", HeaderValue::from_static("yes"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }
}
