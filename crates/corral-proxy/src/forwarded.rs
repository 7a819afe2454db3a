//! The fields a proxy changes on what it forwards (RFC 9110 §7.6): hop-by-hop fields
//! are dropped, the client's address is added to `X-Forwarded-For`, and `Via` names
//! this proxy. Requests are prepared before the cache sees them; responses as they
//! arrive from the origin, so what the cache stores (and replays on every hit) is
//! already prepared.

use std::net::SocketAddr;

use corral_http::remove_hop_by_hop;
use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

/// `Via` as this proxy writes it.
const VIA: HeaderValue = HeaderValue::from_static("1.1 corral");

pub fn prepare_request(headers: &mut HeaderMap, client_ip: &HeaderValue) {
    remove_hop_by_hop(headers);
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
    remove_hop_by_hop(headers);
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
    fn forwarded_for_chains_and_via_is_added() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        prepare_request(&mut h, &HeaderValue::from_static("127.0.0.1"));
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.1, 127.0.0.1");
        assert_eq!(h.get(header::VIA).unwrap(), "1.1 corral");
    }
}
