//! The fields a proxy changes on what it forwards (RFC 9110 §7.6): hop-by-hop fields
//! are dropped, the client's address goes into `X-Forwarded-For`, and `Via` names this
//! proxy by a pseudonym of its own, by which it also recognises a request that has
//! looped back to it. Requests are prepared before the cache sees them; responses as
//! they arrive from the origin, so what the cache stores (and replays on every hit) is
//! already prepared.
//!
//! Fields by which a client tells an origin where the request "really" came from or
//! went to (`X-Forwarded-Host`, `X-Original-URL`, ...) are not part of the cache key,
//! so an origin that reflects one into its response would let any client poison the
//! entry every other client gets. They pass only from trusted clients (the
//! `trusted-proxies` list, and peers of the pool); from anyone else they are dropped,
//! and `X-Forwarded-For` restarts at the client's own address.

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;

use corral_http::remove_hop_by_hop;
use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Fields only a trusted client may send on, besides every `X-Forwarded-*`: where the
/// request came from or was meant for, and the method overrides some frameworks obey.
/// Compared with `_` read as `-`, as CGI-style servers read names
/// (`X_Forwarded_Host` reaches them as `X-Forwarded-Host` does).
const TRUSTED_ONLY: [&str; 18] = [
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "x-host",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-script-name",
    "x-url-scheme",
    "front-end-https",
];

/// Whether a client's field says where the request came from or was meant for.
fn is_forwarding_field(name: &HeaderName) -> bool {
    let name = name.as_str();
    let normalized;
    let name = if name.contains('_') {
        normalized = name.replace('_', "-");
        normalized.as_str()
    } else {
        name
    };
    name.starts_with("x-forwarded-") || TRUSTED_ONLY.contains(&name)
}

/// How this proxy marks what it forwards.
#[derive(Debug, Clone)]
pub(crate) struct Forwarding {
    /// This proxy's name in `Via`.
    pseudonym: String,
    /// `1.1 <pseudonym>`.
    via: HeaderValue,
}

/// A `via` pseudonym that is not one token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`via = \"{pseudonym}\"`: a pseudonym is one token (letters, digits, `-`, `.`, `_`)")]
pub struct InvalidPseudonym {
    /// The value given.
    pub pseudonym: String,
}

impl Forwarding {
    /// Marks forwarded messages with `pseudonym` (a fresh random one when `None`).
    pub(crate) fn new(pseudonym: Option<&str>) -> Result<Forwarding, InvalidPseudonym> {
        let pseudonym = match pseudonym {
            Some(name) => name.to_owned(),
            None => random_pseudonym(),
        };
        let via = is_token(&pseudonym)
            .then(|| HeaderValue::from_str(&format!("1.1 {pseudonym}")).ok())
            .flatten();
        let Some(via) = via else {
            return Err(InvalidPseudonym { pseudonym });
        };
        Ok(Forwarding { pseudonym, via })
    }

    /// Whether a request already passed through this proxy: its `Via` names us.
    pub(crate) fn is_loop(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::VIA)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|hop| hop.split_whitespace().nth(1))
            .any(|received_by| received_by.eq_ignore_ascii_case(&self.pseudonym))
    }

    /// Prepares a client's request for the origin. `trusted`: the client is a proxy
    /// whose forwarding fields are believed.
    pub(crate) fn prepare_request(
        &self,
        headers: &mut HeaderMap,
        client_ip: &HeaderValue,
        trusted: bool,
    ) {
        remove_hop_by_hop(headers);
        // A trusted proxy's chain, every field line of it (RFC 9110 §5.3), then the
        // client's own address.
        let mut chain = Vec::new();
        if trusted {
            for line in headers.get_all(X_FORWARDED_FOR) {
                chain.extend_from_slice(line.as_bytes());
                chain.extend_from_slice(b", ");
            }
        }
        let forwarded_for = if chain.is_empty() {
            client_ip.clone()
        } else {
            chain.extend_from_slice(client_ip.as_bytes());
            HeaderValue::from_bytes(&chain).unwrap_or_else(|_| client_ip.clone())
        };
        // Most requests carry none: one pass over their names, and a second only
        // for those that do.
        if !trusted && headers.keys().any(is_forwarding_field) {
            let dropped: Vec<HeaderName> = headers
                .keys()
                .filter(|name| is_forwarding_field(name))
                .cloned()
                .collect();
            for name in &dropped {
                headers.remove(name);
            }
        }
        headers.insert(X_FORWARDED_FOR, forwarded_for);
        headers.append(header::VIA, self.via.clone());
    }

    /// Prepares an origin's response for the client (and the cache).
    pub(crate) fn prepare_response(&self, headers: &mut HeaderMap) {
        remove_hop_by_hop(headers);
        headers.append(header::VIA, self.via.clone());
    }
}

/// `corral-` and 12 random hex digits: unique to this process, so two proxies in a
/// chain never take each other for themselves.
pub(crate) fn random_pseudonym() -> String {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("corral-{:012x}", random & 0xffff_ffff_ffff)
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// The `X-Forwarded-For` value of a client address.
pub(crate) fn client_ip(addr: SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&addr.ip().to_canonical().to_string())
        .unwrap_or(HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarding() -> Forwarding {
        Forwarding::new(Some("edge-1")).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn a_trusted_proxy_s_chain_is_extended_and_via_names_this_proxy() {
        let mut h = headers(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-host", "a.test"),
        ]);
        forwarding().prepare_request(&mut h, &HeaderValue::from_static("127.0.0.1"), true);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.1, 127.0.0.1");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "a.test");
        assert_eq!(h.get(header::VIA).unwrap(), "1.1 edge-1");
    }

    #[test]
    fn an_untrusted_client_cannot_say_where_the_request_came_from_or_went() {
        let mut h = headers(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-host", "evil.test"),
            ("X_Forwarded_Host", "evil.test"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-protocol", "https"),
            ("x-forwarded-uri", "/admin"),
            ("x-original-url", "/admin"),
            ("x-rewrite-url", "/admin"),
            ("x-real-ip", "6.6.6.6"),
            ("forwarded", "host=evil.test"),
            ("x-kept", "yes"),
            ("x_kept_too", "yes"),
        ]);
        forwarding().prepare_request(&mut h, &HeaderValue::from_static("192.0.2.7"), false);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "192.0.2.7");
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["via", "x-forwarded-for", "x-kept", "x_kept_too"]);
    }

    #[test]
    fn every_line_of_a_trusted_chain_is_kept() {
        let mut h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        forwarding().prepare_request(&mut h, &HeaderValue::from_static("10.0.0.2"), true);
        let chain: Vec<_> = h.get_all("x-forwarded-for").iter().collect();
        assert_eq!(chain, ["6.6.6.6, 203.0.113.9, 10.0.0.2"]);
    }

    #[test]
    fn a_request_that_came_back_is_recognised_by_the_pseudonym() {
        let us = forwarding();
        assert!(us.is_loop(&headers(&[("via", "1.0 fred, 1.1 EDGE-1 (corral)")])));
        assert!(us.is_loop(&headers(&[("via", "1.1 other"), ("via", "1.1 edge-1")])));
        assert!(!us.is_loop(&headers(&[("via", "1.1 edge-10, HTTP/1.1 edge")])));
        let random = Forwarding::new(None).unwrap();
        assert!(!random.is_loop(&headers(&[("via", "1.1 edge-1")])));
        assert_ne!(random.pseudonym, Forwarding::new(None).unwrap().pseudonym);
        assert!(Forwarding::new(Some("two words")).is_err());
    }
}
