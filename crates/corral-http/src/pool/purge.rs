//! Purges across the pool, over the peer protocol: a member sends a key's purge to the
//! key's owner, and a prefix's or a tag's to every member, as
//! `POST /_corral/peer?purge=key|prefix|tag&value=V[&value=V2…][&soft=true]` with the
//! pool's secret. The receiving member purges its own cache only (it never sends the
//! purge on, so purges cannot loop) and answers `{"purged": n}`, the responses it held
//! (for tags, which are purged without counting, 0).

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;

use super::accept::{PeerRefusal, is_secret};
use super::forward::PeerUnavailable;
use super::members::Pool;
use super::protocol::{SECRET_HEADER, mark_peer_answer};
use crate::body::Body;
use crate::handle::CacheHandle;

/// The most values one peer purge carries.
const MAX_VALUES: usize = 1000;
/// The values a member sends in one request (the rest in more): a query short
/// enough for any server.
const VALUES_A_REQUEST: usize = 100;
/// The longest answer a member's purge gets read (a small JSON object).
const MAX_ANSWER: usize = 4096;

/// What a purge covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeScope {
    /// Cache keys (for the default key, absolute URLs), each with its variants.
    Key,
    /// Every key that starts with one of the values.
    Prefix,
    /// Every response tagged with one of the values.
    Tag,
}

impl PurgeScope {
    fn name(self) -> &'static str {
        match self {
            PurgeScope::Key => "key",
            PurgeScope::Prefix => "prefix",
            PurgeScope::Tag => "tag",
        }
    }
}

/// A purge, as members of a pool send it to one another.
///
/// ```
/// use corral_http::pool::{PeerPurge, PurgeScope};
/// let purge = PeerPurge::new(PurgeScope::Tag, ["product-7"]).soft(true);
/// # let _ = purge;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPurge {
    scope: PurgeScope,
    values: Vec<String>,
    soft: bool,
}

impl PeerPurge {
    /// A purge of `values` (keys, prefixes or tags).
    pub fn new<I, S>(scope: PurgeScope, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        PeerPurge {
            scope,
            values: values.into_iter().map(Into::into).collect(),
            soft: false,
        }
    }

    /// The keys, prefixes or tags it covers.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Stale instead of gone: revalidated, and served stale meanwhile.
    pub fn soft(mut self, soft: bool) -> Self {
        self.soft = soft;
        self
    }

    /// Makes the purge in `cache`; returns how many responses it held (0 for tags,
    /// which are purged without counting).
    pub async fn apply(&self, cache: &CacheHandle) -> usize {
        let mut purged = 0;
        for value in &self.values {
            purged += match (self.scope, self.soft) {
                (PurgeScope::Key, false) => cache.invalidate(value).await,
                (PurgeScope::Key, true) => cache.soft_invalidate(value).await,
                (PurgeScope::Prefix, false) => cache.invalidate_prefix(value).await,
                (PurgeScope::Prefix, true) => cache.soft_invalidate_prefix(value).await,
                (PurgeScope::Tag, false) => {
                    cache.invalidate_tag(value).await;
                    0
                }
                (PurgeScope::Tag, true) => {
                    cache.soft_invalidate_tag(value).await;
                    0
                }
            };
        }
        purged
    }

    fn query(&self) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("purge", self.scope.name());
        for value in &self.values {
            query.append_pair("value", value);
        }
        if self.soft {
            query.append_pair("soft", "true");
        }
        query.finish()
    }

    /// The purge a peer request's query asks for; `None` when it asks for none.
    fn from_query(query: &str) -> Option<Result<PeerPurge, PeerRefusal>> {
        let pairs = url::form_urlencoded::parse(query.as_bytes());
        let (mut scope, mut values, mut soft) = (None, Vec::new(), false);
        for (name, value) in pairs {
            match &*name {
                "purge" => scope = Some(value.into_owned()),
                "value" => values.push(value.into_owned()),
                "soft" => soft = value == "true",
                _ => {}
            }
        }
        let scope = scope?;
        let bad = |reason| Some(Err(PeerRefusal::new(StatusCode::BAD_REQUEST, reason)));
        let scope = match scope.as_str() {
            "key" => PurgeScope::Key,
            "prefix" => PurgeScope::Prefix,
            "tag" => PurgeScope::Tag,
            _ => return bad("a peer purge is of a key, a prefix or a tag\n"),
        };
        if values.is_empty() || values.len() > MAX_VALUES {
            return bad("a peer purge names 1 to 1000 values\n");
        }
        Some(Ok(PeerPurge {
            scope,
            values,
            soft,
        }))
    }
}

/// How one member took a purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPurged {
    /// The member's base URL.
    pub member: String,
    /// The responses it held, or why it could not be reached.
    pub outcome: Result<usize, String>,
}

impl Pool {
    /// The members a purge must reach: every one, this one included, and those
    /// marked down (they may be back). A key's too, not only its owner: while the
    /// owner is down its successor serves and keeps the key, and members may hold hot
    /// copies or copies they served themselves.
    pub fn purge_targets(&self) -> Vec<String> {
        let ring = self.inner.ring.load();
        let mut targets: Vec<String> = ring
            .peers()
            .chain(self.inner.this.as_deref())
            .map(str::to_owned)
            .collect();
        targets.sort();
        targets.dedup();
        targets
    }

    /// Makes `purge` where it must reach ([`purge_targets`](Self::purge_targets)):
    /// in `local` for this member, over the peer protocol for the others (at once,
    /// each within the peer timeout, in requests of at most 100 values). How each
    /// member took it, in member order; this process's own first when it is not a
    /// member (no `self_url`).
    pub async fn purge(&self, purge: &PeerPurge, local: &CacheHandle) -> Vec<MemberPurged> {
        let sends = self.purge_targets().into_iter().map(|member| async move {
            let outcome = if self.is_self(&member) {
                Ok(self.purge_here(purge, local).await)
            } else {
                self.send_purge(&Arc::from(member.as_str()), purge).await
            };
            MemberPurged { member, outcome }
        });
        let mut outcomes = Vec::new();
        if self.inner.this.is_none() {
            outcomes.push(MemberPurged {
                member: "(this process)".to_owned(),
                outcome: Ok(self.purge_here(purge, local).await),
            });
        }
        outcomes.extend(futures_util::future::join_all(sends).await);
        outcomes
    }

    /// Makes `purge` in `cache` and in this member's hot caches; the responses
    /// `cache` held.
    async fn purge_here(&self, purge: &PeerPurge, cache: &CacheHandle) -> usize {
        let hot = self
            .inner
            .hot_caches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for hot in &hot {
            purge.apply(hot).await;
        }
        purge.apply(cache).await
    }

    /// Sends `purge` to `member`, in requests of at most [`VALUES_A_REQUEST`]
    /// values; the responses it held, or why it could not take them all.
    async fn send_purge(&self, member: &Arc<str>, purge: &PeerPurge) -> Result<usize, String> {
        let mut purged = 0;
        for values in purge.values.chunks(VALUES_A_REQUEST) {
            let part = PeerPurge {
                values: values.to_vec(),
                ..purge.clone()
            };
            purged += self.send_part(member, &part).await.map_err(|e| e.reason)?;
        }
        Ok(purged)
    }

    /// Sends one request of a purge to `member`.
    async fn send_part(
        &self,
        member: &Arc<str>,
        purge: &PeerPurge,
    ) -> Result<usize, PeerUnavailable> {
        let mut request = Request::new(Body::empty());
        *request.method_mut() = Method::POST;
        let response = self.send(member, &purge.query(), request).await?;
        let unavailable = |reason: String| PeerUnavailable {
            peer: member.clone(),
            reason,
        };
        let status = response.status();
        let limited = http_body_util::Limited::new(response.into_body(), MAX_ANSWER);
        let body = limited
            .collect()
            .await
            .map_err(|e| unavailable(format!("its answer could not be read: {e}")))?
            .to_bytes();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(unavailable(format!("answered {status}: {}", text.trim())));
        }
        purged_count(&body).ok_or_else(|| {
            unavailable(format!(
                "its answer is not a purge's: {}",
                String::from_utf8_lossy(&body).trim()
            ))
        })
    }

    /// The purge a peer request asks for, or why it is refused; `None` for a request
    /// that is no purge. The secret is checked here (in constant time).
    pub(super) fn peer_purge<B>(
        &self,
        request: &Request<B>,
    ) -> Option<Result<PeerPurge, PeerRefusal>> {
        if request.method() != Method::POST {
            return None;
        }
        let purge = PeerPurge::from_query(request.uri().query()?)?;
        let secret_ok = request
            .headers()
            .get(SECRET_HEADER)
            .is_some_and(|presented| is_secret(&self.inner.secret, presented));
        if !secret_ok {
            return Some(Err(PeerRefusal::new(
                StatusCode::FORBIDDEN,
                "peer requests need the pool's shared secret\n",
            )));
        }
        Some(purge)
    }
}

impl PeerPurge {
    /// Makes a peer's purge in `cache` (and `pool`'s hot caches) and answers it (a
    /// `501` without a cache).
    pub(super) async fn answer(self, pool: &Pool, cache: Option<CacheHandle>) -> Response<Body> {
        let Some(cache) = cache else {
            let mut refusal = PeerRefusal::new(
                StatusCode::NOT_IMPLEMENTED,
                "this member takes no purges from its peers\n",
            )
            .response();
            // A member's answer: its sender must not take it for a peer that is down.
            mark_peer_answer(&mut refusal);
            return refusal;
        };
        let purged = pool.purge_here(&self, &cache).await;
        tracing::info!(
            scope = self.scope.name(),
            values = self.values.len(),
            purged,
            soft = self.soft,
            "purged for a peer"
        );
        let mut answer = Body::text_response(StatusCode::OK, format!("{{\"purged\":{purged}}}"));
        answer.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        mark_peer_answer(&mut answer);
        answer
    }
}

/// The count in a member's answer to a purge, `{"purged":N}`.
fn purged_count(body: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(body).ok()?.trim();
    let digits = text.strip_prefix("{\"purged\":")?.strip_suffix('}')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purge_crosses_the_protocol_unchanged_and_bad_ones_are_refused() {
        for purge in [
            PeerPurge::new(PurgeScope::Key, ["http://h/p?a=1&b=2"]),
            PeerPurge::new(PurgeScope::Prefix, ["http://h/docs/"]).soft(true),
            PeerPurge::new(PurgeScope::Tag, ["a", "b c", "é"]),
        ] {
            assert_eq!(
                PeerPurge::from_query(&purge.query()).unwrap().unwrap(),
                purge
            );
        }
        assert!(PeerPurge::from_query("url=http://h/").is_none(), "no purge");
        assert!(
            PeerPurge::from_query("purge=everything&value=x")
                .unwrap()
                .is_err()
        );
        assert!(
            PeerPurge::from_query("purge=tag").unwrap().is_err(),
            "no value"
        );
        let many = "&value=x".repeat(MAX_VALUES + 1);
        assert!(
            PeerPurge::from_query(&format!("purge=tag{many}"))
                .unwrap()
                .is_err()
        );
    }

    #[test]
    fn every_purge_goes_to_every_member_even_one_marked_down() {
        let members = ["http://a:1", "http://b:1", "http://c:1"];
        let pool = Pool::builder()
            .self_url(members[0])
            .peers(members)
            .secret("s")
            .build()
            .unwrap();
        // While a key's owner is down, its successor keeps the key: a purge must
        // reach it as well as the owner.
        let key = (0..)
            .map(|n| format!("http://origin/p/{n}"))
            .find(|k| pool.owner(k).as_deref() != Some(members[0]))
            .unwrap();
        let owner = pool.owner(&key).unwrap();
        pool.mark_down(&owner, "test");
        let serving = pool
            .owner_elsewhere(&key)
            .map_or(members[0].to_owned(), |s| s.to_string());
        let targets = pool.purge_targets();
        assert!(targets.contains(&serving) && targets.contains(&owner));
        assert_eq!(targets, members);
    }

    #[test]
    fn only_a_purges_answer_is_read_as_a_count() {
        assert_eq!(purged_count(b"{\"purged\":12}\n"), Some(12));
        for bad in [
            &b"{\"purged\":}"[..],
            b"{\"purged\":-1}",
            b"<html>",
            b"{\"purged\":99999999999999999999999}",
        ] {
            assert_eq!(purged_count(bad), None);
        }
    }
}
