//! [`Traffic`]: what the server answered, for the status page: every response by its
//! status class, and the keys requested most ([`HotKeys`]).

use std::sync::atomic::{AtomicU64, Ordering};

use http::{Method, Request, StatusCode, header};

use crate::hot_keys::HotKeys;

/// The server's own counters, readable (unlike the Prometheus counters) by the
/// status page.
pub(crate) struct Traffic {
    /// Responses by status class, `1xx` to `5xx`.
    responses: [AtomicU64; 5],
    hot_keys: HotKeys,
}

impl Traffic {
    /// Counters at zero.
    pub(crate) fn new() -> Traffic {
        Traffic {
            responses: Default::default(),
            hot_keys: HotKeys::new(),
        }
    }

    /// Counts a request for its key: the host it names (its URI's authority without
    /// userinfo, or its `Host`) and its path, as `host/path` (no query); a `CONNECT`'s
    /// is its authority alone.
    pub(crate) fn request<B>(&self, request: &Request<B>) {
        let uri = request.uri();
        // Host and path only: no userinfo, no query (which may carry credentials).
        let host = match uri.authority() {
            Some(authority) => authority.as_str().rsplit('@').next().unwrap_or(""),
            None => request
                .headers()
                .get(header::HOST)
                .and_then(|host| host.to_str().ok())
                .unwrap_or(""),
        };
        if request.method() == Method::CONNECT {
            self.hot_keys.record(&[host]);
        } else {
            self.hot_keys.record(&[host, uri.path()]);
        }
    }

    /// Counts a response.
    pub(crate) fn responded(&self, status: StatusCode) {
        let class = usize::from((status.as_u16() / 100).clamp(1, 5)) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Responses by status class, `1xx` to `5xx`.
    pub(crate) fn responses(&self) -> [u64; 5] {
        std::array::from_fn(|class| self.responses[class].load(Ordering::Relaxed))
    }

    /// The keys requested most.
    pub(crate) fn hot_keys(&self) -> &HotKeys {
        &self.hot_keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_keyed_by_its_host_and_path_however_it_names_the_host() {
        let traffic = Traffic::new();
        let origin_form = Request::get("/p?q=1").header("host", "site").body(());
        let absolute = Request::get("http://user:secret@site/p?token=2").body(());
        let connect = Request::connect("site:443").body(());
        for request in [origin_form, absolute, connect] {
            traffic.request(&request.unwrap());
        }
        let (top, _) = traffic.hot_keys().top(10);
        let keys: Vec<_> = top.iter().map(|k| (k.key.as_str(), k.count)).collect();
        assert_eq!(
            keys,
            [("site/p", 2), ("site:443", 1)],
            "no query, no userinfo"
        );
    }

    #[test]
    fn responses_are_counted_by_status_class() {
        let traffic = Traffic::new();
        for status in [200, 204, 304, 404, 503, 502] {
            traffic.responded(StatusCode::from_u16(status).unwrap());
        }
        assert_eq!(traffic.responses(), [0, 2, 1, 1, 2]);
    }
}
