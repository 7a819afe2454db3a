//! `POST /purge` on the admin API: by URL, by URL prefix, or by tag (several at
//! once), hard or soft. The URL is the one clients use: a reverse proxy maps it to the
//! key its requests are stored under, as it maps their requests. A query that cannot be
//! read one way only (a URL with an unencoded `&`) is refused, never half-read. In a
//! pool the purge goes to every member, over the peer protocol (a URL's too: while its
//! owner is down, the next member on the ring keeps it).

use corral_http::CacheHandle;
use corral_http::pool::{PeerPurge, Pool, PurgeScope};
use http::StatusCode;

use crate::target::Mode;

/// The most tags one purge names.
pub(crate) const MAX_PURGE_TAGS: usize = 1000;

/// What to purge, read from the admin API's query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Purge {
    pub what: What,
    /// Stale instead of gone.
    pub soft: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum What {
    /// The URL a client uses, as given.
    Url(String),
    /// A URL prefix, as given.
    Prefix(String),
    Tags(Vec<String>),
}

/// Why a purge request is refused: a 400 that says what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadPurge(pub String);

impl Purge {
    /// Reads the decoded query pairs of a purge request.
    pub(crate) fn parse(pairs: &[(String, String)]) -> Result<Purge, BadPurge> {
        let bad = |message: String| Err(BadPurge(message));
        let (mut url, mut prefix, mut tags, mut soft) = (None, None, Vec::new(), None);
        for (name, value) in pairs {
            let once = |slot: &mut Option<String>| match slot.replace(value.clone()) {
                None => Ok(()),
                Some(_) => Err(BadPurge(format!("`{name}` is given twice\n"))),
            };
            match name.as_str() {
                "url" => once(&mut url)?,
                "prefix" => once(&mut prefix)?,
                // One tag a parameter, as given: a tag may hold spaces and commas
                // (`Cache-Groups` strings do).
                "tag" if value.is_empty() => return bad("`tag` is empty\n".into()),
                "tag" => tags.push(value.clone()),
                "soft" => {
                    soft = Some(match value.as_str() {
                        "true" | "1" | "" => true,
                        "false" | "0" => false,
                        _ => return bad("`soft` is `true` or `false`\n".into()),
                    })
                }
                other if url.is_some() || prefix.is_some() => {
                    return bad(format!(
                        "unknown parameter `{other}`: if it is part of the URL, percent-encode \
                         the URL (`&` as %26, `?` as %3F, `#` as %23), e.g. with \
                         `curl --data-urlencode url=...`\n"
                    ));
                }
                other => return bad(format!("unknown parameter `{other}`\n")),
            }
        }
        if tags.len() > MAX_PURGE_TAGS {
            return bad(format!("at most {MAX_PURGE_TAGS} tags a purge\n"));
        }
        let what = match (url, prefix, tags.is_empty()) {
            (Some(url), None, true) => What::Url(url),
            (None, Some(prefix), true) => What::Prefix(prefix),
            (None, None, false) => What::Tags(tags),
            _ => return bad("give exactly one of `url`, `prefix` or `tag`\n".into()),
        };
        Ok(Purge {
            what,
            soft: soft.unwrap_or(false),
        })
    }

    /// The purge as the cache and the pool's members take it: client URLs mapped to
    /// the keys their requests are stored under.
    fn to_keys(&self, mode: &Mode) -> Result<PeerPurge, (StatusCode, String)> {
        let key_of = |url: &str, what: &str| {
            mode.key_of_client_url(url).ok_or_else(|| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("`{what}` must be an absolute http(s) URL\n"),
                )
            })
        };
        let purge = match &self.what {
            What::Url(url) => PeerPurge::new(PurgeScope::Key, [key_of(url, "url")?]),
            What::Prefix(prefix) => PeerPurge::new(PurgeScope::Prefix, [key_of(prefix, "prefix")?]),
            What::Tags(tags) => PeerPurge::new(PurgeScope::Tag, tags.iter().cloned()),
        };
        Ok(purge.soft(self.soft))
    }

    /// Makes the purge in this server's cache (and, through a Redis tier, every
    /// server's), and in a pool at every member. The JSON answer (`purged`: the
    /// responses held; per member in a pool, a `502` if one could not be reached), or
    /// a refusal.
    pub(crate) async fn run(
        &self,
        cache: &CacheHandle,
        mode: &Mode,
        pool: Option<&Pool>,
    ) -> (StatusCode, serde_json::Value) {
        let purge = match self.to_keys(mode) {
            Ok(purge) => purge,
            Err((status, message)) => return (status, serde_json::json!({ "error": message })),
        };
        let mut answer = match &self.what {
            What::Url(url) => serde_json::json!({ "url": url, "key": purge.values()[0] }),
            What::Prefix(prefix) => {
                serde_json::json!({ "prefix": prefix, "key": purge.values()[0] })
            }
            What::Tags(tags) => serde_json::json!({ "tags": tags }),
        };
        answer["soft"] = self.soft.into();
        let Some(pool) = pool else {
            let purged = purge.apply(cache).await;
            tracing::info!(?self.what, soft = self.soft, purged, "purged");
            answer["purged"] = purged.into();
            return (StatusCode::OK, answer);
        };
        let members = pool.purge(&purge, cache).await;
        let purged: usize = members.iter().filter_map(|m| m.outcome.as_ref().ok()).sum();
        let failed = members.iter().any(|m| m.outcome.is_err());
        tracing::info!(?self.what, soft = self.soft, purged, failed, "purged in the pool");
        answer["purged"] = purged.into();
        answer["members"] = members
            .iter()
            .map(|m| match &m.outcome {
                Ok(n) => serde_json::json!({ "member": m.member, "purged": n }),
                Err(error) => serde_json::json!({ "member": m.member, "error": error }),
            })
            .collect();
        let status = if failed {
            StatusCode::BAD_GATEWAY
        } else {
            StatusCode::OK
        };
        (status, answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &[(&str, &str)]) -> Result<Purge, BadPurge> {
        let pairs: Vec<(String, String)> = query
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        Purge::parse(&pairs)
    }

    #[test]
    fn each_kind_of_purge_reads_and_soft_is_optional() {
        assert_eq!(
            parse(&[("url", "http://h/p?a=1&b=2")]).unwrap(),
            Purge {
                what: What::Url("http://h/p?a=1&b=2".into()),
                soft: false
            }
        );
        assert_eq!(
            parse(&[("tag", "a, b"), ("tag", "c"), ("soft", "true")]).unwrap(),
            Purge {
                what: What::Tags(vec!["a, b".into(), "c".into()]),
                soft: true
            }
        );
        assert!(matches!(
            parse(&[("prefix", "http://h/d/"), ("soft", "false")])
                .unwrap()
                .what,
            What::Prefix(_)
        ));
    }

    #[test]
    fn what_cannot_be_read_one_way_only_is_refused() {
        // `purge?url=http://h/p?a=1&b=2`, not percent-encoded.
        let unencoded = parse(&[("url", "http://h/p?a=1"), ("b", "2")]).unwrap_err();
        assert!(unencoded.0.contains("percent-encode"), "{unencoded}");
        assert!(parse(&[("url", "http://a/"), ("url", "http://b/")]).is_err());
        assert!(parse(&[("url", "http://a/"), ("tag", "t")]).is_err());
        assert!(parse(&[]).is_err());
        assert!(parse(&[("tag", "")]).is_err(), "an empty tag");
        assert!(parse(&[("tag", "t"), ("soft", "maybe")]).is_err());
        let many = vec![("tag", "t"); MAX_PURGE_TAGS + 1];
        assert!(parse(&many).is_err());
    }
}
