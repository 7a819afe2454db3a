//! A forward proxy's allow-list: which hosts it may fetch from or tunnel to.
//!
//! Rules are host names (`example.com`, or `example.com:443` for one port), globs
//! (`*.example.com`, `api-?.example.com`) and CIDRs (`10.0.0.0/8`, `::1/128`). A target
//! is allowed when its name matches a name rule, or when it is an address (an IP
//! literal, or every address its name resolves to) inside a CIDR. The check is made
//! again when connecting ([`AllowResolver`]), on the addresses actually dialled, so a
//! name cannot be re-pointed between the check and the connection.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use ipnet::IpNet;

/// One name rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NameRule {
    /// Lowercase; `*` and `?` are wildcards.
    pattern: String,
    port: Option<u16>,
}

/// A parsed allow-list. Empty means: every host.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    names: Vec<NameRule>,
    nets: Vec<IpNet>,
}

/// Whether a request may go to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Yes.
    Allowed,
    /// No: the host and its addresses match no rule.
    Refused,
}

impl AllowList {
    /// Parses the rules; an error names the rule that does not parse.
    pub fn parse(rules: &[String]) -> Result<AllowList, String> {
        let mut list = AllowList::default();
        for rule in rules {
            let rule = rule.trim();
            if rule.is_empty() {
                return Err("the allow-list has an empty rule".into());
            }
            if rule.contains('/') {
                let net: IpNet = rule
                    .parse()
                    .map_err(|_| format!("allow rule `{rule}` is not a CIDR"))?;
                list.nets.push(net);
                continue;
            }
            if let Ok(ip) = rule.trim_matches(['[', ']']).parse::<IpAddr>() {
                list.nets.push(IpNet::from(ip));
                continue;
            }
            let (pattern, port) = match rule.rsplit_once(':') {
                Some((host, port)) => {
                    let port = port
                        .parse()
                        .map_err(|_| format!("allow rule `{rule}` has a bad port"))?;
                    (host, Some(port))
                }
                None => (rule, None),
            };
            let valid =
                |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*' | '?' | '_');
            if pattern.is_empty() || !pattern.chars().all(valid) {
                return Err(format!("allow rule `{rule}` is not a host, glob or CIDR"));
            }
            list.names.push(NameRule {
                pattern: pattern.to_ascii_lowercase(),
                port,
            });
        }
        Ok(list)
    }

    /// Whether every host is allowed (no rules).
    pub fn is_open(&self) -> bool {
        self.names.is_empty() && self.nets.is_empty()
    }

    /// Whether a host name (not an address) matches a name rule. Port 0 matches rules
    /// of any port (the resolver sees names without ports; the port was checked first).
    pub fn allows_name(&self, host: &str, port: u16) -> bool {
        self.is_open()
            || self.names.iter().any(|rule| {
                rule.port.is_none_or(|p| port == 0 || p == port)
                    && glob(&rule.pattern, &host.to_ascii_lowercase())
            })
    }

    /// Whether an address is inside an allowed CIDR.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.is_open() || self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The verdict for a request to `host:port`, resolving the name if only CIDR rules
    /// could allow it.
    pub async fn check(&self, host: &str, port: u16) -> Verdict {
        let bare = host.trim_matches(['[', ']']);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return verdict(self.allows_ip(ip));
        }
        if self.allows_name(bare, port) {
            return Verdict::Allowed;
        }
        if self.nets.is_empty() {
            return Verdict::Refused;
        }
        match tokio::net::lookup_host((bare, port)).await {
            Ok(addrs) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                verdict(!addrs.is_empty() && addrs.iter().all(|a| self.allows_ip(a.ip())))
            }
            Err(_) => Verdict::Refused,
        }
    }

    /// The addresses of `host` the proxy may connect to: all of them if its name is
    /// allowed, else those inside allowed CIDRs.
    pub async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
        if self.allows_name(host, port) {
            return Ok(addrs);
        }
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| self.allows_ip(a.ip()))
            .collect();
        if allowed.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{host} resolves only to addresses the allow-list forbids"),
            ));
        }
        Ok(allowed)
    }
}

fn verdict(allowed: bool) -> Verdict {
    if allowed {
        Verdict::Allowed
    } else {
        Verdict::Refused
    }
}

/// Matches `text` against a pattern where `*` is any run of characters and `?` one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The origin client's resolver: resolves only to addresses the allow-list allows.
#[derive(Clone)]
pub struct AllowResolver {
    allow: Arc<AllowList>,
}

impl AllowResolver {
    pub fn new(allow: Arc<AllowList>) -> Self {
        AllowResolver { allow }
    }
}

impl tower::Service<Name> for AllowResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow = self.allow.clone();
        Box::pin(async move {
            // The connector sets the port itself; the name alone is resolved here.
            let addrs = allow.resolve(name.as_str(), 0).await?;
            Ok(addrs.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(rules: &[&str]) -> AllowList {
        AllowList::parse(&rules.iter().map(|r| r.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn globs() {
        assert!(glob("*.example.com", "a.example.com"));
        assert!(glob("*.example.com", "a.b.example.com"));
        assert!(!glob("*.example.com", "example.com"));
        assert!(!glob("*.example.com", "evil.com"));
        assert!(glob("api-?.example.com", "api-1.example.com"));
        assert!(!glob("api-?.example.com", "api-10.example.com"));
        assert!(glob("*", "anything"));
    }

    #[test]
    fn names_ports_and_cidrs() {
        let l = list(&["Example.com", "*.cdn.net:443", "10.0.0.0/8", "::1"]);
        assert!(l.allows_name("example.com", 80));
        assert!(l.allows_name("EXAMPLE.COM", 8080));
        assert!(l.allows_name("img.cdn.net", 443));
        assert!(!l.allows_name("img.cdn.net", 80));
        assert!(!l.allows_name("other.org", 80));
        assert!(l.allows_ip("10.1.2.3".parse().unwrap()));
        assert!(l.allows_ip("::1".parse().unwrap()));
        assert!(!l.allows_ip("192.168.0.1".parse().unwrap()));
        assert!(AllowList::default().allows_name("anything", 1));
    }

    #[test]
    fn bad_rules_are_named() {
        for bad in ["10.0.0.0/33", "exa mple.com", "host:port", ""] {
            let err = AllowList::parse(&[bad.to_string()]).unwrap_err();
            assert!(err.contains(bad) || bad.is_empty(), "{err}");
        }
    }

    #[tokio::test]
    async fn names_resolving_into_a_cidr_are_allowed_and_others_refused() {
        let l = list(&["127.0.0.0/8"]);
        assert_eq!(l.check("localhost", 80).await, Verdict::Allowed);
        assert_eq!(l.check("127.0.0.1", 80).await, Verdict::Allowed);
        assert_eq!(l.check("[::2]", 80).await, Verdict::Refused);
        let names_only = list(&["example.com"]);
        assert_eq!(names_only.check("localhost", 80).await, Verdict::Refused);
        assert!(names_only.resolve("localhost", 80).await.is_err());
    }
}
