//! Cache keys: which stored responses a request may use, and the one way a request
//! or a URL becomes the URL it is keyed (and routed to its owner in a pool) by.
//!
//! The default key is the request's URL: scheme, host, path and query, the same for
//! GET and HEAD (a HEAD is answered from a stored GET). The host is the request's
//! `Host` (what the origin serves it as), else the URI's authority; a request with a
//! relative URI (a server receives `/path?q`) has the scheme `http`. Scheme and host
//! are lowercased and a default port left out, so that spellings of one URL share it.

use std::sync::Arc;

use http::request::Parts;
use http::{Method, Uri};

/// Computes a request's cache key; `None` means "do not use the cache for it".
pub type KeyFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

/// The default cache key: the request's URL, `scheme://host[:port]/path?query`, with
/// the scheme and host lowercased and a default port left out; `None` without a host
/// or a path (`OPTIONS *`).
///
/// ```
/// let req = http::Request::get("/items?page=2").header("host", "Example.COM:80").body(()).unwrap();
/// let (parts, _) = req.into_parts();
/// assert_eq!(corral_http::default_key(&parts).as_deref(), Some("http://example.com/items?page=2"));
/// ```
pub fn default_key(parts: &Parts) -> Option<String> {
    let scheme = parts.uri.scheme_str().unwrap_or("http");
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .filter(|host| is_host(host))?;
    // An asterisk-form (`OPTIONS *`) target names no resource.
    let path = match parts.uri.path_and_query() {
        Some(path) if !path.as_str().starts_with('/') => return None,
        Some(path) => path.as_str(),
        None => "/",
    };
    Some(url_from(scheme, host, path))
}

/// Whether `host` is a `host[:port]` and nothing more: a `Host` of `victim/x` (or
/// `user@victim`) would otherwise key a request for `/y` as `victim/x/y`, another
/// URL's key.
pub fn is_host(host: &str) -> bool {
    !host.is_empty() && host.bytes().all(|b| HOST_BYTES[usize::from(b)])
}

/// The bytes of a `host[:port]` (RFC 3986 reg-name, IP literals and a port), by value.
static HOST_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~!$&'()*+,;=:[]%";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

/// The key an absolute `http(s)` URL is stored under by [`default_key`] (for purging
/// by URL); `None` for anything else.
///
/// ```
/// assert_eq!(
///     corral_http::url_key("HTTP://Example.com:80/a?b").as_deref(),
///     Some("http://example.com/a?b")
/// );
/// assert_eq!(corral_http::url_key("/relative"), None);
/// ```
pub fn url_key(url: &str) -> Option<String> {
    let uri: Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let host = uri.authority()?.as_str();
    is_host(host).then(|| url_from(scheme, host, path))
}

/// `scheme://host/path`, scheme and host lowercased, a default port left out.
fn url_from(scheme: &str, host: &str, path: &str) -> String {
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        ":80"
    };
    let host = host.strip_suffix(default_port).unwrap_or(host);
    let mut key = String::with_capacity(scheme.len() + 3 + host.len() + path.len());
    key.push_str(scheme);
    key.push_str("://");
    key.push_str(host);
    key.make_ascii_lowercase();
    key.push_str(path);
    key
}

/// The request a GET for `target` would be, built from an unsafe request's parts: for
/// invalidating what `target` stored. `None` if `target` is on another origin (RFC 9111
/// §4.4 forbids invalidating those) or cannot be parsed.
pub(crate) fn same_origin_get(parts: &Parts, target: &str) -> Option<Parts> {
    let path = if target.starts_with('/') && !target.starts_with("//") {
        target.to_owned()
    } else if target.contains("://") {
        let target: Uri = target.parse().ok()?;
        let ours = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            })?;
        let our_scheme = parts.uri.scheme_str().unwrap_or("http");
        if !target.authority()?.as_str().eq_ignore_ascii_case(&ours)
            || !target.scheme_str()?.eq_ignore_ascii_case(our_scheme)
        {
            return None;
        }
        target.path_and_query()?.as_str().to_owned()
    } else if target.starts_with("//") || target.is_empty() {
        return None;
    } else {
        resolve_relative(parts.uri.path(), target)
    };
    let mut uri = Uri::builder();
    if let (Some(scheme), Some(authority)) = (parts.uri.scheme(), parts.uri.authority()) {
        uri = uri.scheme(scheme.clone()).authority(authority.clone());
    }
    let mut get = http::Request::get(uri.path_and_query(path).build().ok()?)
        .body(())
        .ok()?
        .into_parts()
        .0;
    get.headers = parts.headers.clone();
    get.method = Method::GET;
    Some(get)
}

/// Resolves a relative reference against a base path (RFC 3986 §5.2, for the paths a
/// `Location` header carries).
fn resolve_relative(base: &str, reference: &str) -> String {
    if reference.starts_with('/') {
        return reference.to_owned();
    }
    let dir = base.rsplit_once('/').map_or("", |(dir, _)| dir);
    format!("{dir}/{reference}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, host: Option<&str>) -> Parts {
        let mut b = http::Request::post(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn absolute_uris_keep_their_scheme_and_drop_default_ports() {
        let p = parts("https://Shop.example:443/a?b=1", None);
        assert_eq!(default_key(&p).unwrap(), "https://shop.example/a?b=1");
        let p = parts("http://shop.example:8080/", None);
        assert_eq!(default_key(&p).unwrap(), "http://shop.example:8080/");
    }

    #[test]
    fn the_host_the_origin_sees_wins_over_the_uri() {
        let mut p = parts("http://origin:3000/x", Some("Site-A.test"));
        p.method = Method::GET;
        assert_eq!(default_key(&p).unwrap(), "http://site-a.test/x");
        assert_eq!(default_key(&parts("/x", None)), None, "no host, no key");
    }

    #[test]
    fn a_host_that_is_more_than_a_host_has_no_key() {
        for host in [
            "victim.test/evil",
            "victim.test?x",
            "user@victim.test",
            "a b",
            "",
        ] {
            assert_eq!(default_key(&parts("/page", Some(host))), None, "{host:?}");
        }
        assert_eq!(url_key("http://user@victim.test/"), None);
        assert!(default_key(&parts("/page", Some("[::1]:8080"))).is_some());
    }

    #[test]
    fn a_url_is_keyed_as_a_request_for_it_would_be() {
        let p = parts("http://Shop.example:80/a?b=1", None);
        assert_eq!(url_key("http://Shop.example:80/a?b=1"), default_key(&p));
        assert_eq!(url_key("ftp://x/"), None);
        assert_eq!(url_key("not a url"), None);
    }

    #[test]
    fn the_query_is_part_of_the_key() {
        let a = default_key(&parts("/items?page=1", Some("h"))).unwrap();
        let b = default_key(&parts("/items?page=2", Some("h"))).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn locations_on_the_same_origin_become_gets_and_others_are_refused() {
        let p = parts("/items/new", Some("shop.example"));
        let get = same_origin_get(&p, "/items/7").unwrap();
        assert_eq!(default_key(&get).unwrap(), "http://shop.example/items/7");
        let get = same_origin_get(&p, "7").unwrap();
        assert_eq!(get.uri.path(), "/items/7");
        let get = same_origin_get(&p, "http://shop.example/items/8").unwrap();
        assert_eq!(get.uri.path(), "/items/8");
        assert!(same_origin_get(&p, "http://evil.example/items/8").is_none());
        assert!(
            same_origin_get(&p, "https://shop.example/items/8").is_none(),
            "another scheme is another origin"
        );
        assert!(same_origin_get(&p, "::not a uri::").is_none());
    }
}
