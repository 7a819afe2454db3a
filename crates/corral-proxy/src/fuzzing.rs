//! Fuzz targets for what the proxy parses from its operator and its clients: the
//! allow-list, the configuration, and the forwarding fields (`Via`,
//! `X-Forwarded-For`). A target panics when an invariant breaks; `fuzz/` at the
//! repository's root runs it under libFuzzer, and the tests below run it on its
//! checked-in corpus.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use http::header::{HeaderValue, VIA};

use corral_http::fuzzing::fields;

use crate::allow::{AllowList, glob, is_internal};
use crate::config::{ByteSize, Config};
use crate::forwarded::{Forwarding, client_ip};

/// The characters of host names, as allow rules spell them.
const NAME_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-._";
/// The longest pattern and text compared with the reference glob (it takes their
/// product in time).
const GLOB_CHECKED: usize = 64;

/// Reads allow rules, one a line, then an empty line and hosts to check (`name`,
/// `name:port` or an address), one a line.
pub fn allow_list(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (rules, hosts) = text.split_once("\n\n").unwrap_or((&text, ""));
    let rules: Vec<String> = rules.lines().map(str::to_owned).collect();
    let hosts: Vec<&str> = hosts.lines().collect();
    for pattern in &rules {
        for host in &hosts {
            matches_like_the_reference(pattern, host);
        }
    }
    let list = match AllowList::parse(&rules) {
        Ok(list) => list,
        Err(message) => {
            let first_bad = rules
                .iter()
                .find_map(|rule| AllowList::parse(std::slice::from_ref(rule)).err());
            assert_eq!(
                Some(message),
                first_bad,
                "the error names the first bad rule"
            );
            return;
        }
    };
    assert_eq!(list.is_open(), rules.is_empty());
    for host in &hosts {
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) if port.parse::<u16>().is_ok() => (name, port.parse().unwrap_or(0)),
            _ => (*host, 0),
        };
        let allowed = list.allows_name(name, port);
        assert!(allowed || !list.is_open(), "an empty list refused {host:?}");
        if port != 0 && list.allows_name(name, port) {
            assert!(
                list.allows_name(name, 0),
                "port 0 matches rules of any port"
            );
        }
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            let canonical = ip.to_canonical();
            assert_eq!(
                list.allows_ip(ip),
                list.allows_ip(canonical),
                "{ip} is {canonical}"
            );
            assert_eq!(
                is_internal(ip),
                is_internal(canonical),
                "{ip} is {canonical}"
            );
        }
    }
    if !list.allows_everything() {
        let refused = NAME_CHARS
            .iter()
            .map(|&c| char::from(c).to_string().repeat(8))
            .any(|name| !list.allows_name(&name, 0));
        assert!(
            refused,
            "{rules:?} lets every name through but not everything"
        );
    }
}

/// `glob` agrees with the plain definition (`*` any run of bytes, `?` one byte),
/// and `*` matches anything.
fn matches_like_the_reference(pattern: &str, text: &str) {
    let pattern = pattern.trim().to_ascii_lowercase();
    let text = text.to_ascii_lowercase();
    assert!(glob("*", &text));
    let (p, t) = (prefix(&pattern), prefix(&text));
    assert_eq!(
        glob(p, t),
        reference_glob(p.as_bytes(), t.as_bytes()),
        "{p:?} against {t:?}"
    );
}

/// At most [`GLOB_CHECKED`] bytes of `text`, cut at a character boundary.
fn prefix(text: &str) -> &str {
    let mut end = text.len().min(GLOB_CHECKED);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Glob matching by dynamic programming: `matched[j]` says whether the pattern so
/// far matches the first `j` bytes of `text`.
fn reference_glob(pattern: &[u8], text: &[u8]) -> bool {
    let mut matched = vec![false; text.len() + 1];
    matched[0] = true;
    for &p in pattern {
        let mut next = vec![false; text.len() + 1];
        for j in 0..=text.len() {
            next[j] = match p {
                b'*' => matched[j] || j > 0 && next[j - 1],
                b'?' => j > 0 && matched[j - 1],
                _ => j > 0 && matched[j - 1] && text[j - 1] == p,
            };
        }
        matched = next;
    }
    matched[text.len()]
}

/// Reads sizes (one a line) and a configuration file (the whole input): a size
/// prints back to itself, and a configuration that loads prints (as
/// `corral check-config` does) to one that loads to the same options.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        if let Ok(size) = ByteSize::parse(line) {
            prints_back(size);
        }
    }
    let mut first = [0; 8];
    let n = data.len().min(8);
    first[..n].copy_from_slice(&data[..n]);
    prints_back(ByteSize(u64::from_le_bytes(first)));
    let Ok(table) = text.parse::<toml::Table>() else {
        return;
    };
    let Ok(config) = Config::from_toml(table) else {
        return;
    };
    let printed = config.to_toml();
    let table = printed
        .parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("the printed configuration is not TOML: {e}\n{printed}"));
    let back = Config::from_toml(table)
        .unwrap_or_else(|e| panic!("the printed configuration does not load: {e}\n{printed}"));
    // Secrets are printed as a placeholder.
    assert_eq!(back.admin_token.is_some(), config.admin_token.is_some());
    assert_eq!(back.peer_secret.is_some(), config.peer_secret.is_some());
    let expected = Config {
        admin_token: back.admin_token.clone(),
        peer_secret: back.peer_secret.clone(),
        ..config
    };
    assert_eq!(back, expected, "{printed}");
}

fn prints_back(size: ByteSize) {
    let printed = size.to_string();
    assert_eq!(
        ByteSize::parse(&printed),
        Ok(size),
        "{size:?} printed {printed:?}"
    );
}

/// Reads this proxy's `Via` pseudonym (the first line) and a request's fields: a
/// request or response this proxy prepared, come back, is a loop; an untrusted
/// client's forwarding fields are replaced, a trusted one's chain is extended.
pub fn forwarding(data: &[u8]) {
    let (pseudonym, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let pseudonym = String::from_utf8_lossy(pseudonym);
    let received = fields(rest);
    let forwarding = match Forwarding::new(Some(&pseudonym)) {
        Ok(forwarding) => forwarding,
        Err(_) => {
            let token = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
            assert!(pseudonym.is_empty() || !pseudonym.bytes().all(token));
            return;
        }
    };
    let looped = forwarding.is_loop(&received);
    let mut hop_per_line = received.clone();
    hop_per_line.remove(VIA);
    for line in received.get_all(VIA) {
        // A line that is not text counts for nothing, whatever its parts.
        let Ok(text) = line.to_str() else {
            hop_per_line.append(VIA, line.clone());
            continue;
        };
        for hop in text.split(',') {
            let hop = HeaderValue::from_str(hop).expect("a part of a field value");
            hop_per_line.append(VIA, hop);
        }
    }
    assert_eq!(forwarding.is_loop(&hop_per_line), looped);
    for client in [
        "192.0.2.7:50000",
        "[::ffff:192.0.2.7]:50000",
        "[2001:db8::1]:443",
    ] {
        let client: SocketAddr = client.parse().expect("a socket address");
        let ip = client_ip(client);
        for trusted in [false, true] {
            let mut request = received.clone();
            forwarding.prepare_request(&mut request, &ip, trusted);
            assert!(
                forwarding.is_loop(&request),
                "a prepared request is no loop"
            );
            forwarded_for(&received, &request, &ip, trusted);
        }
    }
    let mut response = received.clone();
    forwarding.prepare_response(&mut response);
    assert!(
        forwarding.is_loop(&response),
        "a prepared response is no loop"
    );
}

/// `X-Forwarded-For` after a request is prepared: the client's address, after a
/// trusted client's whole chain; an untrusted client's other forwarding fields
/// (`Forwarded`, `X-Forwarded-*`, `X-Original-URL`, ..., with `_` read as `-`) gone.
fn forwarded_for(received: &HeaderMap, prepared: &HeaderMap, ip: &HeaderValue, trusted: bool) {
    const FORWARDING: [&str; 5] = [
        "forwarded",
        "x-real-ip",
        "x-original-url",
        "x-original-host",
        "x-rewrite-url",
    ];
    let chain: Vec<String> = prepared
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    // Hop-by-hop fields (and those `Connection` names) are gone first.
    let mut end_to_end = received.clone();
    corral_http::remove_hop_by_hop(&mut end_to_end);
    let mut expected: Vec<u8> = Vec::new();
    if trusted {
        for earlier in end_to_end.get_all("x-forwarded-for") {
            expected.extend_from_slice(earlier.as_bytes());
            expected.extend_from_slice(b", ");
        }
    }
    expected.extend_from_slice(ip.as_bytes());
    assert_eq!(
        chain,
        [String::from_utf8_lossy(&expected)],
        "X-Forwarded-For"
    );
    if !trusted {
        for name in prepared.keys() {
            let name = name.as_str().replace('_', "-");
            let forwarding = name.starts_with("x-forwarded-") || FORWARDING.contains(&&*name);
            assert!(!forwarding || name == "x-forwarded-for", "{name} passed on");
        }
    }
}

#[cfg(test)]
mod tests {
    use corral::fuzzing::replay;

    #[test]
    fn allow_lists_survive_their_corpus_and_its_mutants() {
        replay("allow_list", super::allow_list, 3000);
    }

    #[test]
    fn configurations_survive_their_corpus_and_its_mutants() {
        replay("config", super::config, 2000);
    }

    #[test]
    fn forwarding_fields_survive_their_corpus_and_its_mutants() {
        replay("forwarding", super::forwarding, 3000);
    }
}
