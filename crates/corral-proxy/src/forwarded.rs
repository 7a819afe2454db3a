//! The fields a proxy changes on what it forwards (RFC 9110 §7.6): hop-by-hop fields
//! are dropped, the client's address is added to `X-Forwarded-For`, and `Via` names
//! this proxy. Requests are prepared before the cache sees them; responses as they
//! arrive from the origin, so what the cache stores (and replays on every hit) is
//! already prepared.

use std::net::SocketAddr;

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

/// `Via` as this proxy writes it.
const VIA: HeaderValue = HeaderValue::from_static("1.1 corral");

/// Hop-by-hop fields (RFC 9110 §7.6.1), plus the non-standard `Proxy-Connection`.
const HOP_BY_HOP: [HeaderName; 9] = [
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

/// Removes hop-by-hop fields (and those `Connection` names).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass comparing names, no hashing.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    if let Some(connection) = headers.get(header::CONNECTION) {
        let named: Vec<HeaderName> = connection
            .to_str()
            .unwrap_or_default()
            .split(',')
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        if headers.contains_key(name) {
            headers.remove(name);
        }
    }
}

pub fn prepare_request(headers: &mut HeaderMap, client_ip: &HeaderValue) {
    strip_hop_by_hop(headers);
    let forwarded = match headers.get(HeaderName::from_static("x-forwarded-for")) {
        Some(earlier) => {
            let mut chain = earlier.as_bytes().to_vec();
            chain.extend_from_slice(b", ");
            chain.extend_from_slice(client_ip.as_bytes());
            HeaderValue::from_bytes(&chain).unwrap_or_else(|_| client_ip.clone())
        }
        None => client_ip.clone(),
    };
    headers.insert(HeaderName::from_static("x-forwarded-for"), forwarded);
    headers.append(header::VIA, VIA);
}

pub fn prepare_response(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    headers.append(header::VIA, VIA);
}

/// The `X-Forwarded-For` value of a client address.
pub fn client_ip(addr: SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&addr.ip().to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-trace"),
        );
        h.insert("x-trace", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("x-kept", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarded_for_chains_and_via_is_added() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        prepare_request(&mut h, &HeaderValue::from_static("127.0.0.1"));
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.1, 127.0.0.1");
        assert_eq!(h.get(header::VIA).unwrap(), "1.1 corral");
    }
}
