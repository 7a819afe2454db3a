//! Targeted cache control (RFC 9213): a field such as `CDN-Cache-Control` that gives
//! cache directives to one class of caches. Its value is a Dictionary (RFC 8941
//! §3.2); a value that does not parse as one is invalid, and the field is then
//! ignored (RFC 9213 §2.2). Of a valid one, a directive whose value has the wrong
//! type (a delta that is not a non-negative Integer) is left out (§2.1).

use std::time::Duration;

use http::{HeaderMap, HeaderName};

use crate::directives::{MAX_DELTA_SECONDS, ResponseDirectives};

/// The directives of the first field of `targets` (in that order) that `headers`
/// carries with a valid value; `None` if there is none.
pub(crate) fn targeted_directives(
    headers: &HeaderMap,
    targets: &[HeaderName],
) -> Option<ResponseDirectives> {
    targets.iter().find_map(|name| {
        // A field sent as several lines is one value, its lines joined by commas
        // (RFC 9110 §5.3).
        let mut lines = headers.get_all(name).iter().peekable();
        lines.peek()?;
        let mut text = String::new();
        for line in lines {
            if !text.is_empty() {
                text.push(',');
            }
            text.push_str(line.to_str().ok()?);
        }
        parse(&text)
    })
}

/// The directives of a targeted field's value; `None` if it is empty or not a
/// Dictionary.
fn parse(value: &str) -> Option<ResponseDirectives> {
    let members = dictionary(value.as_bytes())?;
    if members.is_empty() {
        return None;
    }
    let mut d = ResponseDirectives::default();
    // Of repeated keys, the last counts (RFC 8941 §3.2).
    for (key, item) in members {
        let flag = item == Item::Bool(true);
        let delta = match item {
            Item::Integer(n) if n >= 0 => {
                Some(Duration::from_secs((n as u64).min(MAX_DELTA_SECONDS)))
            }
            _ => None,
        };
        match key.as_str() {
            "max-age" => d.max_age = delta,
            "s-maxage" => d.s_maxage = delta,
            "stale-while-revalidate" => d.stale_while_revalidate = delta,
            "stale-if-error" => d.stale_if_error = delta,
            // A list of field names (a String) qualifies these in Cache-Control; here,
            // as there, any value counts as the unqualified directive: stricter.
            "no-cache" => d.no_cache = !matches!(item, Item::Bool(false)),
            "private" => d.private = !matches!(item, Item::Bool(false)),
            "no-store" => d.no_store = flag,
            "public" => d.public = flag,
            "must-revalidate" => d.must_revalidate = flag,
            "proxy-revalidate" => d.proxy_revalidate = flag,
            _ => {}
        }
    }
    Some(d)
}

/// A member's value, as far as cache directives care.
#[derive(Debug, PartialEq, Eq)]
enum Item {
    Integer(i64),
    Bool(bool),
    /// A decimal, string, token, byte sequence or inner list.
    Other,
}

/// Parses a Dictionary (RFC 8941 §4.2.2): its members' keys and values, parameters
/// checked and dropped; `None` on any syntax error.
fn dictionary(input: &[u8]) -> Option<Vec<(String, Item)>> {
    let mut p = Parser { input, at: 0 };
    let mut members = Vec::new();
    p.skip(b" \t");
    while !p.done() {
        let key = p.key()?;
        let item = if p.eat(b'=') {
            if p.peek() == Some(b'(') {
                p.inner_list()?;
                Item::Other
            } else {
                p.bare_item()?
            }
        } else {
            Item::Bool(true)
        };
        p.parameters()?;
        members.push((key, item));
        p.skip(b" \t");
        if p.done() {
            break;
        }
        if !p.eat(b',') {
            return None;
        }
        p.skip(b" \t");
        if p.done() {
            return None;
        }
    }
    Some(members)
}

struct Parser<'a> {
    input: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.at >= self.input.len()
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let matched = self.peek() == Some(byte);
        self.at += usize::from(matched);
        matched
    }

    fn skip(&mut self, bytes: &[u8]) {
        while self.peek().is_some_and(|b| bytes.contains(&b)) {
            self.at += 1;
        }
    }

    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &[u8] {
        let start = self.at;
        while self.peek().is_some_and(&keep) {
            self.at += 1;
        }
        &self.input[start..self.at]
    }

    /// `key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`
    fn key(&mut self) -> Option<String> {
        let first = self.peek()?;
        if !(first.is_ascii_lowercase() || first == b'*') {
            return None;
        }
        let key = self
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b));
        Some(String::from_utf8_lossy(key).into_owned())
    }

    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.skip(b" ");
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    fn inner_list(&mut self) -> Option<()> {
        if !self.eat(b'(') {
            return None;
        }
        loop {
            self.skip(b" ");
            if self.eat(b')') {
                return self.parameters();
            }
            self.bare_item()?;
            self.parameters()?;
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return None;
            }
        }
    }

    fn bare_item(&mut self) -> Option<Item> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string(),
            b':' => self.byte_sequence(),
            b'?' => {
                self.at += 1;
                let value = match self.peek()? {
                    b'0' => false,
                    b'1' => true,
                    _ => return None,
                };
                self.at += 1;
                Some(Item::Bool(value))
            }
            b if b.is_ascii_alphabetic() || b == b'*' => {
                self.take_while(|b| is_tchar(b) || b == b':' || b == b'/');
                Some(Item::Other)
            }
            _ => None,
        }
    }

    /// An Integer (at most 15 digits) or a Decimal (at most 12 digits, a dot, 1 to 3).
    fn number(&mut self) -> Option<Item> {
        let negative = self.eat(b'-');
        let start = self.at;
        let digits = self.take_while(|b| b.is_ascii_digit()).len();
        if digits == 0 {
            return None;
        }
        if self.eat(b'.') {
            let fraction = self.take_while(|b| b.is_ascii_digit()).len();
            return (digits <= 12 && (1..=3).contains(&fraction)).then_some(Item::Other);
        }
        if digits > 15 {
            return None;
        }
        let magnitude: i64 = std::str::from_utf8(&self.input[start..self.at])
            .ok()?
            .parse()
            .ok()?;
        Some(Item::Integer(if negative { -magnitude } else { magnitude }))
    }

    fn string(&mut self) -> Option<Item> {
        self.at += 1;
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(Item::Other);
                }
                b'\\' => {
                    self.at += 1;
                    if !matches!(self.peek()?, b'"' | b'\\') {
                        return None;
                    }
                    self.at += 1;
                }
                0x20..=0x7e => self.at += 1,
                _ => return None,
            }
        }
    }

    fn byte_sequence(&mut self) -> Option<Item> {
        self.at += 1;
        self.take_while(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
        self.eat(b':').then_some(Item::Other)
    }
}

/// A `tchar` of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n))
    }

    #[test]
    fn a_dictionary_of_directives() {
        let d =
            parse("max-age=60, s-maxage=120, stale-while-revalidate=5, must-revalidate").unwrap();
        assert_eq!((d.max_age, d.s_maxage), (secs(60), secs(120)));
        assert_eq!(d.stale_while_revalidate, secs(5));
        assert!(d.must_revalidate && !d.no_store);
        let d = parse("no-store").unwrap();
        assert!(d.no_store);
        let d = parse("private=\"set-cookie\", no-cache=?1;x=1, public=?0").unwrap();
        assert!(d.private && d.no_cache && !d.public);
        // Not a registered directive, but a valid value: it still replaces
        // Cache-Control (RFC 9213 §3.1's example).
        assert_eq!(parse("none"), Some(ResponseDirectives::default()));
    }

    #[test]
    fn values_of_the_wrong_type_are_left_out_and_the_last_of_a_key_counts() {
        let d = parse("max-age=\"60\", s-maxage=1.5, stale-if-error=-1").unwrap();
        assert_eq!(
            (d.max_age, d.s_maxage, d.stale_if_error),
            (None, None, None)
        );
        assert_eq!(parse("max-age=60, max-age=10").unwrap().max_age, secs(10));
        assert_eq!(
            parse("max-age=999999999999999").unwrap().max_age,
            secs(MAX_DELTA_SECONDS)
        );
    }

    #[test]
    fn what_is_not_a_dictionary_is_invalid() {
        for invalid in [
            "",
            "  ",
            "Max-Age=60",
            "max-age=60,",
            "max-age=60,, public",
            "max-age=60 public",
            "max-age=",
            "max-age=1234567890123456",
            "max-age=\"open",
            "max-age=60;",
            "max-age=(1 2",
            "max-age=?2",
            "max-age=60, =5",
            "max-age=é",
        ] {
            assert_eq!(parse(invalid), None, "{invalid:?}");
        }
        assert!(parse("a=(1 2);p, b=:AQID:, c=tok/en, d=-1.25").is_some());
    }

    #[test]
    fn the_first_valid_field_in_target_order_is_used() {
        let corral = HeaderName::from_static("corral-cache-control");
        let cdn = http::header::CDN_CACHE_CONTROL;
        let mut headers = HeaderMap::new();
        headers.insert(&corral, "Max-Age=5".parse().unwrap());
        headers.insert(&cdn, "max-age=60".parse().unwrap());
        headers.append(&cdn, "no-cache".parse().unwrap());
        let d = targeted_directives(&headers, &[corral.clone(), cdn.clone()]).unwrap();
        assert_eq!(d.max_age, secs(60), "the invalid first target is skipped");
        assert!(d.no_cache, "lines of one field are one value");
        assert!(targeted_directives(&headers, &[corral]).is_none());
        assert!(targeted_directives(&headers, &[]).is_none());
    }
}
