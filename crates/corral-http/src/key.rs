//! Cache keys: which stored responses a request may use.
//!
//! The default key is the request's scheme, host, path and query, the same for GET and
//! HEAD (a HEAD is answered from a stored GET). Requests with a relative URI (a server
//! receives `/path?q`) take the host from the `Host` header and the scheme `http`.

use std::sync::Arc;

use http::request::Parts;
use http::{Method, Uri};

/// Computes a request's cache key; `None` means "do not use the cache for it".
pub type KeyFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

/// The default cache key: `scheme://host[:port]/path?query`, with the scheme and host
/// lowercased and a default port left out.
///
/// ```
/// let req = http::Request::get("/items?page=2").header("host", "Example.COM").body(()).unwrap();
/// let (parts, _) = req.into_parts();
/// assert_eq!(corral_http::default_key(&parts).as_deref(), Some("http://example.com/items?page=2"));
/// ```
pub fn default_key(parts: &Parts) -> Option<String> {
    let scheme = parts.uri.scheme_str().unwrap_or("http");
    let authority = match parts.uri.authority() {
        Some(a) => a.as_str(),
        None => parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default(),
    };
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        ":80"
    };
    let host = authority.strip_suffix(default_port).unwrap_or(authority);
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut key = String::with_capacity(scheme.len() + 3 + host.len() + path.len());
    key.push_str(scheme);
    key.push_str("://");
    key.push_str(host);
    key.make_ascii_lowercase();
    key.push_str(path);
    Some(key)
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
