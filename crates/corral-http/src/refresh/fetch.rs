//! One fetch of a registered URL: a GET (conditional when there is a value to keep),
//! redirects followed within the allow-list, the body read up to its limit, and the
//! transformer run on a 2xx response, its panics caught.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::header::{
    AUTHORIZATION, COOKIE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LOCATION,
    PROXY_AUTHORIZATION, USER_AGENT,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use url::Url;

use super::RefreshError;
use super::allow::{self, UrlAllowList};
use super::transform::Transform;
use crate::body::{Collected, collect};
use crate::upstream::Upstream;

const DEFAULT_USER_AGENT: HeaderValue =
    HeaderValue::from_static(concat!("corral-refresh/", env!("CARGO_PKG_VERSION")));

/// A kept value's validators, for conditional refreshes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Validators {
    pub etag: Option<HeaderValue>,
    pub last_modified: Option<HeaderValue>,
}

impl Validators {
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        Validators {
            etag: headers.get(ETAG).cloned(),
            last_modified: headers.get(LAST_MODIFIED).cloned(),
        }
    }
}

/// What a fetch needs.
pub(crate) struct Fetch<'a, T> {
    pub url: &'a Url,
    pub client: Box<dyn Upstream>,
    pub headers: &'a HeaderMap,
    /// The kept value's validators (`None` when there is no value: the fetch is
    /// unconditional).
    pub validators: Option<Validators>,
    pub allow: &'a UrlAllowList,
    pub body_limit: usize,
    pub max_redirects: usize,
    pub transform: Arc<dyn Transform<T>>,
}

/// What a successful fetch brought.
pub(crate) enum Fetched<T> {
    /// A new value, from a response with these headers.
    Changed { value: T, headers: HeaderMap },
    /// 304: the kept value is still good, per these headers.
    NotModified { headers: HeaderMap },
}

impl<T: Send + 'static> Fetch<'_, T> {
    pub(crate) async fn run(self) -> Result<Fetched<T>, RefreshError> {
        let mut url = self.url.clone();
        let mut redirects = 0;
        loop {
            let response = self.send(&url).await?;
            let status = response.status();
            if matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
                url = self.redirect(&url, response.headers(), redirects)?;
                redirects += 1;
                continue;
            }
            if status == StatusCode::NOT_MODIFIED && self.validators.is_some() {
                return Ok(Fetched::NotModified {
                    headers: response.into_parts().0.headers,
                });
            }
            if !status.is_success() {
                return Err(RefreshError::Status {
                    url: url.into(),
                    status,
                });
            }
            let (parts, body) = response.into_parts();
            let body = match collect(body, self.body_limit).await {
                Collected::Whole(body) => body,
                Collected::Oversized(_) => {
                    return Err(RefreshError::BodyTooLarge {
                        url: url.into(),
                        limit: self.body_limit,
                    });
                }
                Collected::Failed(error) => {
                    return Err(RefreshError::Transport {
                        url: url.into(),
                        source: Arc::from(error),
                    });
                }
            };
            let headers = parts.headers.clone();
            let value = transform(&self.transform, Response::from_parts(parts, body), &url).await?;
            return Ok(Fetched::Changed { value, headers });
        }
    }

    /// Sends a GET for `url` (a plain function returning the response's future, so
    /// that no borrow of the fetch is held while waiting: the client is not `Sync`).
    fn send(&self, url: &Url) -> BoxFuture<'static, Result<Response<crate::Body>, RefreshError>> {
        let uri: Uri = match url.as_str().parse() {
            Ok(uri) => uri,
            Err(e) => {
                let invalid = RefreshError::InvalidUrl {
                    url: url.to_string(),
                    reason: format!("{e}"),
                };
                return Box::pin(std::future::ready(Err(invalid)));
            }
        };
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = Method::GET;
        parts.uri = uri;
        parts.headers = self.headers.clone();
        if !parts.headers.contains_key(USER_AGENT) {
            parts.headers.insert(USER_AGENT, DEFAULT_USER_AGENT);
        }
        // Redirected to another origin: the registration's credentials stay with
        // the origin they were given for, and its validators with its responses.
        let same_origin = url.origin() == self.url.origin();
        if !same_origin {
            for credential in [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION] {
                parts.headers.remove(credential);
            }
        }
        if let Some(validators) = self.validators.as_ref().filter(|_| same_origin) {
            if let Some(etag) = &validators.etag {
                parts.headers.insert(IF_NONE_MATCH, etag.clone());
            }
            if let Some(last_modified) = &validators.last_modified {
                parts
                    .headers
                    .insert(IF_MODIFIED_SINCE, last_modified.clone());
            }
        }
        let sent = self.client.send(parts);
        let url = url.to_string();
        Box::pin(async move {
            sent.await.map_err(|error| RefreshError::Transport {
                url,
                source: Arc::from(error),
            })
        })
    }

    /// The target of a redirect from `url`, if it is allowed.
    fn redirect(&self, url: &Url, headers: &HeaderMap, done: usize) -> Result<Url, RefreshError> {
        let bad = |reason: String| RefreshError::Redirect {
            url: url.to_string(),
            reason,
        };
        if done >= self.max_redirects {
            return Err(bad(format!("more than {} redirects", self.max_redirects)));
        }
        let location = headers
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| bad("no Location".into()))?;
        let target = url
            .join(location)
            .map_err(|e| bad(format!("Location {location:?}: {e}")))?;
        let target = allow::parse(target.as_str()).map_err(|e| bad(e.to_string()))?;
        if !self.allow.allows(&target) {
            return Err(RefreshError::Refused {
                url: target.into(),
                redirected_from: Some(self.url.to_string()),
            });
        }
        Ok(target)
    }
}

/// Runs the transformer; its errors and panics are the fetch's.
async fn transform<T: 'static>(
    transform: &Arc<dyn Transform<T>>,
    response: Response<Bytes>,
    url: &Url,
) -> Result<T, RefreshError> {
    let panicked = |panic: Box<dyn std::any::Any + Send>| RefreshError::TransformPanicked {
        url: url.to_string(),
        message: corral::panic_message(&*panic),
    };
    let future = std::panic::catch_unwind(AssertUnwindSafe(|| transform.transform(response)))
        .map_err(panicked)?;
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(RefreshError::Transform {
            url: url.to_string(),
            source: Arc::from(error),
        }),
        Err(panic) => Err(panicked(panic)),
    }
}
