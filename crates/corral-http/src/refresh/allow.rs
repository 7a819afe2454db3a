//! Which URLs a refresh cache may fetch. Checked when a URL is registered and again
//! for every redirect its responses make, so a registered URL cannot lead the cache
//! anywhere the list does not allow.

use std::fmt;
use std::sync::Arc;

use url::Url;

use super::RefreshError;

/// An allow-list of URLs: exact URLs, prefixes, regular expressions and functions;
/// a URL is allowed when any rule allows it. An empty list allows every `http` and
/// `https` URL — give rules whenever URLs come from anyone but you (a `jku` header
/// of a token, say), or the cache is an open fetcher.
///
/// URLs are compared in their normal form (scheme and host lowercased, default port
/// dropped, `/` for an empty path), so `HTTPS://Keys.Example.com:443` is
/// `https://keys.example.com/`.
///
/// (It lists whole URLs, for the refresh cache; `corral-proxy`'s allow-list of
/// target hosts is another thing.)
///
/// ```
/// use corral_http::refresh::UrlAllowList;
///
/// let allow = UrlAllowList::new()
///     .url("https://auth.example.com/.well-known/jwks.json")?
///     .prefix("https://keys.example.com")?          // i.e. https://keys.example.com/...
///     .regex(r"https://[a-z]+\.tenants\.example\.com/jwks")?;
/// assert!(allow.allows_str("https://keys.example.com/2024.json"));
/// assert!(!allow.allows_str("https://keys.example.com.evil.net/"));
/// assert!(allow.allows_str("https://acme.tenants.example.com/jwks"));
/// // Regular expressions must match the whole URL.
/// assert!(!allow.allows_str("https://evil.net/?https://acme.tenants.example.com/jwks"));
/// # Ok::<(), corral_http::refresh::RefreshError>(())
/// ```
#[derive(Clone, Default)]
pub struct UrlAllowList {
    rules: Vec<Rule>,
}

#[derive(Clone)]
enum Rule {
    Url(String),
    Prefix(String),
    Regex(regex::Regex),
    Func(Arc<dyn Fn(&Url) -> bool + Send + Sync>),
}

impl UrlAllowList {
    /// An empty list (which allows every URL until a rule is added).
    pub fn new() -> Self {
        UrlAllowList::default()
    }

    /// Allows exactly `url`.
    pub fn url(mut self, url: &str) -> Result<Self, RefreshError> {
        self.rules.push(Rule::Url(parse(url)?.into()));
        Ok(self)
    }

    /// Allows every URL that starts with `prefix` (in normal form: a prefix naming
    /// only an origin, like `https://keys.example.com`, means that origin's URLs and
    /// not `https://keys.example.com.evil.net`).
    pub fn prefix(mut self, prefix: &str) -> Result<Self, RefreshError> {
        self.rules.push(Rule::Prefix(parse(prefix)?.into()));
        Ok(self)
    }

    /// Allows every URL the regular expression matches, whole (it is anchored at
    /// both ends).
    pub fn regex(mut self, pattern: &str) -> Result<Self, RefreshError> {
        let anchored = format!("^(?:{pattern})$");
        let regex = regex::Regex::new(&anchored).map_err(|e| {
            RefreshError::InvalidOption(format!("allow-list regex {pattern:?}: {e}"))
        })?;
        self.rules.push(Rule::Regex(regex));
        Ok(self)
    }

    /// Allows every URL for which `allow` returns true.
    pub fn func(mut self, allow: impl Fn(&Url) -> bool + Send + Sync + 'static) -> Self {
        self.rules.push(Rule::Func(Arc::new(allow)));
        self
    }

    /// Whether `url` may be fetched.
    pub fn allows(&self, url: &Url) -> bool {
        self.rules.is_empty()
            || self.rules.iter().any(|rule| match rule {
                Rule::Url(allowed) => url.as_str() == allowed,
                Rule::Prefix(prefix) => url.as_str().starts_with(prefix.as_str()),
                Rule::Regex(regex) => regex.is_match(url.as_str()),
                Rule::Func(allow) => allow(url),
            })
    }

    /// Whether `url` may be fetched; a URL that does not parse may not.
    pub fn allows_str(&self, url: &str) -> bool {
        parse(url).is_ok_and(|url| self.allows(&url))
    }
}

impl fmt::Debug for UrlAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for rule in &self.rules {
            match rule {
                Rule::Url(url) => list.entry(&format_args!("url {url}")),
                Rule::Prefix(prefix) => list.entry(&format_args!("prefix {prefix}")),
                Rule::Regex(regex) => list.entry(&format_args!("regex {}", regex.as_str())),
                Rule::Func(_) => list.entry(&format_args!("fn")),
            };
        }
        list.finish()
    }
}

/// Parses an `http` or `https` URL into its normal form.
pub(crate) fn parse(url: &str) -> Result<Url, RefreshError> {
    let invalid = |reason: String| RefreshError::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    let parsed = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "the scheme {} is not http or https",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host".into()));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_list_allows_any_http_url() {
        let any = UrlAllowList::new();
        assert!(any.allows_str("http://10.0.0.1:8080/x"));
        assert!(!any.allows_str("file:///etc/passwd"));
        assert!(!any.allows_str("not a url"));
    }

    #[test]
    fn rules_compare_normal_forms() {
        let allow = UrlAllowList::new().url("HTTPS://Example.COM:443").unwrap();
        assert!(allow.allows_str("https://example.com/"));
        assert!(!allow.allows_str("https://example.com/other"));
        let prefix = UrlAllowList::new().prefix("https://a.test/keys/").unwrap();
        assert!(prefix.allows_str("https://A.test/keys/1"));
        assert!(!prefix.allows_str("https://a.test/other"));
        let func = UrlAllowList::new().func(|u| u.port_or_known_default() == Some(443));
        assert!(func.allows_str("https://x.test/"));
        assert!(!func.allows_str("http://x.test/"));
    }

    #[test]
    fn bad_rules_are_errors() {
        assert!(matches!(
            UrlAllowList::new().regex("("),
            Err(RefreshError::InvalidOption(_))
        ));
        assert!(matches!(
            UrlAllowList::new().prefix("ftp://x/"),
            Err(RefreshError::InvalidUrl { .. })
        ));
    }
}
