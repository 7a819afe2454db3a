//! A forward proxy's allow-list: which hosts it may fetch from or tunnel to.
//!
//! Rules are host names (`example.com`, or `example.com:443` for one port), globs
//! (`*.example.com`, `api-?.example.com`) and CIDRs (`10.0.0.0/8`, `::1/128`). A target
//! is allowed when its name matches a name rule, or when it is an address (an IP
//! literal, or every address its name resolves to) inside a CIDR. The check is made
//! again when connecting (the origin client's dialler resolves through
//! [`AllowList::resolve`]), on the addresses actually dialled, so a name cannot be
//! re-pointed between the check and the connection.
//!
//! A name rule never reaches an internal address ([`is_internal`]: loopback,
//! unspecified, link-local, the cloud metadata endpoints), whatever the name resolves
//! to (`localhost`, `0x7f000001`, a DNS record pointing at 127.0.0.1), unless a CIDR
//! rule allows that address too. An empty list allows every host (a proxy on loopback
//! for one user); the proxy's own listeners are refused in every case, by the dialler.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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

/// Why an allow-list rule does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowError {
    /// An empty rule.
    #[error("the allow-list has an empty rule")]
    EmptyRule,
    /// A rule with a `/` that is not a CIDR.
    #[error("allow rule `{rule}` is not a CIDR")]
    NotACidr {
        /// The rule.
        rule: String,
    },
    /// A `host:port` rule whose port is not a number.
    #[error("allow rule `{rule}` has a bad port")]
    BadPort {
        /// The rule.
        rule: String,
    },
    /// A rule that is not a host, glob or CIDR.
    #[error("allow rule `{rule}` is not a host, glob or CIDR")]
    NotAHost {
        /// The rule.
        rule: String,
    },
}

/// Why the proxy will not connect somewhere: the allow-list forbids it, or it is the
/// proxy itself. Carried inside the connection error, so the client gets a 403.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Forbidden(pub String);

impl Forbidden {
    /// As the error a connector returns.
    pub fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::PermissionDenied, self)
    }

    /// The `Forbidden` behind `error` (itself or one of its sources), looking inside
    /// the I/O errors that carry it (whose `source` skips what they wrap).
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Forbidden> {
        corral_http::find_cause(error)
    }
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
    pub fn parse(rules: &[String]) -> Result<AllowList, AllowError> {
        let mut list = AllowList::default();
        for rule in rules {
            let rule = rule.trim();
            if rule.is_empty() {
                return Err(AllowError::EmptyRule);
            }
            if rule.contains('/') {
                let net: IpNet = rule.parse().map_err(|_| AllowError::NotACidr {
                    rule: rule.to_owned(),
                })?;
                list.nets.push(net);
                continue;
            }
            if let Ok(ip) = rule.trim_matches(['[', ']']).parse::<IpAddr>() {
                list.nets.push(IpNet::from(ip));
                continue;
            }
            let (pattern, port) = match rule.rsplit_once(':') {
                Some((host, port)) => {
                    let port = port.parse().map_err(|_| AllowError::BadPort {
                        rule: rule.to_owned(),
                    })?;
                    (host, Some(port))
                }
                None => (rule, None),
            };
            let valid =
                |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*' | '?' | '_');
            if pattern.is_empty() || !pattern.chars().all(valid) {
                return Err(AllowError::NotAHost {
                    rule: rule.to_owned(),
                });
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

    /// Whether the rules let any host through: none at all, a glob of wildcards only
    /// (`*`, `*.*`), or CIDRs that together cover every IPv4 or every IPv6 address
    /// (`0.0.0.0/0`; `0.0.0.0/1` and `128.0.0.0/1`; `::/0`).
    pub fn allows_everything(&self) -> bool {
        self.is_open()
            || self.names.iter().any(|rule| {
                rule.pattern
                    .bytes()
                    .all(|b| matches!(b, b'*' | b'?' | b'.'))
            })
            || IpNet::aggregate(&self.nets)
                .iter()
                .any(|net| net.prefix_len() == 0)
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

    /// Whether an address is inside an allowed CIDR (an IPv4-mapped IPv6 address
    /// counts as its IPv4 address).
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
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

    /// The addresses of `host` the proxy may connect to: all of them if the list is
    /// empty; those inside allowed CIDRs; and if a name rule allows the name, every
    /// other address that is not internal.
    pub async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
        if self.is_open() {
            return Ok(addrs);
        }
        let by_name = self.allows_name(host, port);
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| self.allows_ip(a.ip()) || by_name && !is_internal(a.ip()))
            .collect();
        if allowed.is_empty() {
            return Err(Forbidden(format!(
                "{host} resolves only to addresses the allow-list forbids"
            ))
            .into_io());
        }
        Ok(allowed)
    }
}

/// Addresses a name rule never reaches unless a CIDR rule allows them: loopback,
/// unspecified (`0.0.0.0` dials the host itself), link-local (169.254.169.254 is the
/// AWS, GCP and Azure metadata service), the other clouds' metadata endpoints (and
/// Azure's wire server), and IPv6 forms that carry an internal IPv4 address (mapped,
/// NAT64 `64:ff9b::/96`, 6to4 `2002::/16`).
pub fn is_internal(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.octets()[0] == 0
                || [
                    Ipv4Addr::new(100, 100, 100, 200),
                    Ipv4Addr::new(192, 0, 0, 192),
                    Ipv4Addr::new(168, 63, 129, 16),
                ]
                .contains(&v4)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |high: u16, low: u16| {
                let [a, b] = high.to_be_bytes();
                let [c, d] = low.to_be_bytes();
                is_internal(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
            };
            v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xffc0) == 0xfe80
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && embedded(s[6], s[7])
                || s[0] == 0x2002 && embedded(s[1], s[2])
        }
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
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        // A `*` in the pattern is a wildcard even where the text has a `*` too.
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
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
        assert!(glob("*", "**"));
        assert!(glob("*.example.com", "*x.example.com"));
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
            assert!(err.to_string().contains(bad) || bad.is_empty(), "{err}");
        }
    }

    #[test]
    fn wildcards_and_zero_length_prefixes_allow_everything() {
        for open in [
            &[][..],
            &["*"],
            &["*.*"],
            &["*:443"],
            &["0.0.0.0/0"],
            &["::/0"],
            &["0.0.0.0/1", "128.0.0.0/1"],
        ] {
            assert!(list(open).allows_everything(), "{open:?}");
        }
        for narrow in [&["*.example.com"][..], &["10.0.0.0/8"], &["example.com"]] {
            assert!(!list(narrow).allows_everything(), "{narrow:?}");
        }
    }

    #[test]
    fn internal_addresses_in_every_spelling() {
        for internal in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "169.254.169.254",
            "100.100.100.200",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "fe80::1",
            "fd00:ec2::254",
            "168.63.129.16",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in [
            "93.184.216.34",
            "10.0.0.1",
            "2001:db8::1",
            "64:ff9b::5db8:d822",
        ] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn mapped_addresses_count_as_their_ipv4_address() {
        let l = list(&["127.0.0.0/8"]);
        assert!(l.allows_ip("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!list(&["10.0.0.0/8"]).allows_ip("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn a_name_rule_never_reaches_loopback_unless_a_cidr_allows_it() {
        let names = list(&["localhost", "*"]);
        let refused = names.resolve("localhost", 80).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied);
        assert!(Forbidden::find(&refused).is_some());
        let with_cidr = list(&["localhost", "127.0.0.0/8", "::1/128"]);
        assert!(!with_cidr.resolve("localhost", 80).await.unwrap().is_empty());
        assert!(
            !AllowList::default()
                .resolve("localhost", 80)
                .await
                .unwrap()
                .is_empty()
        );
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
