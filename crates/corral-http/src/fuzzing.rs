//! Fuzz targets for the parsers of HTTP caching: `Cache-Control`, the response fields
//! the policy reads (`Vary`, `Content-Length`, `Age`, `Connection`), stored responses
//! as they come back from Redis, and the URLs a request is keyed, invalidated and
//! routed by. A target panics when an invariant breaks; `fuzz/` at the repository's
//! root runs it under libFuzzer, and the tests below run it on its checked-in corpus.

use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, ACCEPT_LANGUAGE, AGE, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, PRAGMA,
    SET_COOKIE, TRANSFER_ENCODING, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, request, response};
use http_body_util::{Empty, Full};
use tokio::time::Instant;

use crate::directives::{MAX_DELTA, RequestDirectives, ResponseDirectives, split_list};
use crate::framing::{declared_length, frame_response};
use crate::key::{default_key, same_origin_get};
use crate::policy::{KeepStale, Lifetime, Policy, Serve};
use crate::remove_hop_by_hop;
use crate::vary::{Vary, normal_form, selecting_values};

/// How long past freshness the cache keeps a response, as the policy is asked here.
const KEEP_STALE: KeepStale = KeepStale {
    for_revalidation: Duration::from_secs(3600),
    while_unreachable: Duration::from_secs(86_400),
};

/// Parses each line of `data` as one `Cache-Control` field line, of a response and of
/// a request, and checks that splitting the directives over more lines means the
/// same, and that a repeated delta reads as the most restrictive.
pub fn cache_control(data: &[u8]) {
    let lines: Vec<HeaderValue> = data
        .split(|&b| b == b'\n')
        .filter_map(|line| HeaderValue::from_bytes(line).ok())
        .collect();
    let headers = field_lines(CACHE_CONTROL, &lines);
    let response = ResponseDirectives::parse(&headers);
    let request = RequestDirectives::parse(&headers);
    for delta in [response.max_age, response.s_maxage, request.max_age]
        .into_iter()
        .chain([request.min_fresh, request.stale_if_error])
        .chain([response.stale_while_revalidate, response.stale_if_error])
        .flatten()
    {
        assert!(delta <= MAX_DELTA, "a delta of {delta:?}");
    }
    let directives: Vec<HeaderValue> = lines
        .iter()
        .filter_map(|line| line.to_str().ok())
        .flat_map(split_list)
        .map(|d| HeaderValue::from_str(d).expect("a part of a field value is a field value"))
        .collect();
    let one_per_line = field_lines(CACHE_CONTROL, &directives);
    assert_eq!(ResponseDirectives::parse(&one_per_line), response);
    assert_eq!(RequestDirectives::parse(&one_per_line), request);
    let pragma_no_cache = directives
        .iter()
        .any(|d| d.as_bytes().eq_ignore_ascii_case(b"no-cache"));
    let pragma = RequestDirectives::parse(&field_lines(PRAGMA, &lines));
    assert_eq!(pragma.no_cache, pragma_no_cache);
    // Repeating a delta directive takes the most restrictive value: the smallest.
    if let Some(last) = directives.last() {
        let alone =
            ResponseDirectives::parse(&field_lines(CACHE_CONTROL, std::slice::from_ref(last)));
        if let (Some(all), Some(last)) = (response.max_age, alone.max_age) {
            assert!(all <= last, "{all:?} > {last:?}");
        }
    }
}

/// Reads a status line, request fields, an empty line and response fields, and runs
/// the parsers of the response fields the cache reads: `Vary`, `Content-Length`,
/// `Connection` and the hop-by-hop fields, and the policy's (`Cache-Control`,
/// `Age`, `Set-Cookie`).
pub fn response_headers(data: &[u8]) {
    let (status, rest) = split_at_line(data);
    let status = std::str::from_utf8(status)
        .ok()
        .and_then(|s| StatusCode::from_bytes(s.trim().as_bytes()).ok())
        .unwrap_or(StatusCode::OK);
    let (request_fields, response_fields) = split_at_blank_line(rest);
    let mut request = get("http://shop.example/items");
    request.headers = fields(request_fields);
    let mut response = response::Builder::new()
        .status(status)
        .body(())
        .expect("a response of a valid status")
        .into_parts()
        .0;
    response.headers = fields(response_fields);
    vary(&response.headers, &request.headers);
    content_length(&response.headers, data.len());
    hop_by_hop(&response.headers);
    lifetimes(&request, &response);
    max_age_alone(&response.headers);
}

/// `Vary` lists each name once, means the same split over more lines, and selects a
/// variant by an encoding of the request's values that gives them back.
fn vary(response: &HeaderMap, request: &HeaderMap) {
    let vary = Vary::parse(response);
    let names: Vec<HeaderValue> = response
        .get_all(VARY)
        .iter()
        .flat_map(|line| line.as_bytes().split(|&b| b == b','))
        .map(|name| HeaderValue::from_bytes(name.trim_ascii()).expect("a part of a field value"))
        .collect();
    assert_eq!(Vary::parse(&field_lines(VARY, &names)), vary);
    let Vary::Names(names) = vary else {
        return;
    };
    assert!(!names.is_empty());
    for (i, name) in names.iter().enumerate() {
        assert!(!names[..i].contains(name), "{name} listed twice");
    }
    for normalize in [false, true] {
        let selecting = selecting_values(&names, request, normalize);
        let segments: Vec<&str> = selecting.split('\u{1f}').collect();
        assert_eq!(segments.len(), names.len() + 1, "{selecting:?}");
        for (name, segment) in names.iter().zip(&segments) {
            let values = segment
                .strip_prefix(name.as_str())
                .and_then(|s| s.strip_prefix('='))
                .unwrap_or_else(|| panic!("{segment:?} does not start with {name}="));
            let decoded: Vec<Vec<u8>> = values.split('\u{1e}').map(percent_decoded).collect();
            if normalize && [ACCEPT_ENCODING, ACCEPT_LANGUAGE].contains(name) {
                // One list in normal form: the same whatever the spaces between its
                // members (and, for codings, their order).
                let normal = normal_form(name, request.get_all(name));
                assert_eq!(decoded, std::slice::from_ref(&normal), "{values:?}");
                let mut members: Vec<&[u8]> = request
                    .get_all(name)
                    .iter()
                    .flat_map(|line| line.as_bytes().split(|&b| b == b','))
                    .map(<[u8]>::trim_ascii)
                    .collect();
                if name == ACCEPT_ENCODING {
                    members.reverse();
                }
                let respaced = HeaderValue::from_bytes(&members.join(&b", "[..])[..]);
                if let Ok(respaced) = respaced {
                    let lines = field_lines(name.clone(), &[respaced]);
                    assert_eq!(normal_form(name, lines.get_all(name)), normal);
                }
                continue;
            }
            let sent: Vec<&[u8]> = request.get_all(name).iter().map(|v| v.as_bytes()).collect();
            // No line and one empty line are encoded alike.
            let absent = sent.is_empty() && decoded == [b""];
            assert!(absent || decoded == sent, "{values:?} is not {sent:?}");
        }
    }
}

/// `Content-Length` is one length or none, and framing a response makes it the
/// body's.
fn content_length(response: &HeaderMap, body_length: usize) {
    let declared = declared_length(response);
    let lengths: Vec<Option<u64>> = response
        .get_all(CONTENT_LENGTH)
        .iter()
        .flat_map(|v| match v.to_str() {
            Ok(v) => v.split(',').map(|p| length(p.trim())).collect(),
            Err(_) => vec![None],
        })
        .collect();
    if let Some(length) = declared {
        assert!(lengths.iter().all(|l| *l == Some(length)), "{lengths:?}");
    } else if let Some(Some(first)) = lengths.first() {
        assert!(lengths.iter().any(|l| l != &Some(*first)), "{lengths:?}");
    }
    let mut head = response.clone();
    frame_response(StatusCode::OK, &mut head, &Empty::<Bytes>::new(), true);
    assert_eq!(declared_length(&head), declared);
    assert!(!head.contains_key(TRANSFER_ENCODING));
    let mut full = response.clone();
    let body = Full::new(Bytes::from(vec![b'x'; body_length]));
    frame_response(StatusCode::OK, &mut full, &body, false);
    assert_eq!(declared_length(&full), Some(body_length as u64));
    assert!(!full.contains_key(TRANSFER_ENCODING));
}

/// Removing the hop-by-hop fields removes them, those `Connection` names, and a
/// length a transfer coding overrode, and nothing else.
fn hop_by_hop(received: &HeaderMap) {
    const HOP_BY_HOP: [&str; 9] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    let mut kept = received.clone();
    remove_hop_by_hop(&mut kept);
    let hop = HOP_BY_HOP.iter().any(|name| received.contains_key(*name));
    let named: Vec<HeaderName> = received
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in received.keys() {
        let removed = hop
            && (HOP_BY_HOP.contains(&name.as_str())
                || named.contains(name)
                || name == CONTENT_LENGTH && received.contains_key(TRANSFER_ENCODING));
        if removed {
            assert!(!kept.contains_key(name), "{name} kept");
        } else {
            let before: Vec<_> = received.get_all(name).iter().collect();
            let after: Vec<_> = kept.get_all(name).iter().collect();
            assert_eq!(before, after, "{name} changed");
        }
    }
    assert!(kept.len() <= received.len());
}

/// A lifetime is within RFC 9111's bounds, counts the `Age` it arrived with, and is
/// never given to what a shared cache must not store; a stored response is served
/// fresh only while it is, and stale only where that is allowed.
fn lifetimes(request: &request::Parts, response: &response::Parts) {
    let targets = [http::header::CDN_CACHE_CONTROL];
    let asks = RequestDirectives::parse(&request.headers);
    let fixed = Policy::fixed(Duration::from_secs(10), Duration::from_secs(60));
    for policy in [
        Policy::Rfc9111 { shared: true },
        Policy::Rfc9111 { shared: false },
        fixed,
    ] {
        let Ok(lifetime) = policy.lifetime(request, response, KEEP_STALE, &targets) else {
            continue;
        };
        let directives = policy.governing(&response.headers, &targets).directives;
        assert_ne!(Vary::parse(&response.headers), Vary::Any);
        assert!(!directives.no_store);
        if policy.is_shared() {
            assert!(!directives.private && !response.headers.contains_key(SET_COOKIE));
        }
        if matches!(policy, Policy::Rfc9111 { .. }) {
            assert!(lifetime.fresh_for <= MAX_DELTA);
            assert_eq!(lifetime.initial_age, arrived_age(&response.headers));
            assert!(lifetime.keep_for >= lifetime.fresh_for.saturating_sub(lifetime.initial_age));
        }
        let stored_at = Instant::now();
        for after in [
            Duration::ZERO,
            lifetime.fresh_for,
            lifetime.keep_for,
            MAX_DELTA,
        ] {
            served(&lifetime, &asks, stored_at, stored_at + after);
        }
    }
}

/// What a stored response of `lifetime` may do for a request at `now`.
fn served(lifetime: &Lifetime, asks: &RequestDirectives, stored_at: Instant, now: Instant) {
    let fresh = lifetime.age(stored_at, now) < lifetime.fresh_for;
    match lifetime.serve(asks, stored_at, now) {
        Serve::Fresh => assert!(fresh && !lifetime.always_revalidate && !asks.no_cache),
        Serve::Stale => {
            assert!(!fresh && !lifetime.revalidate_when_stale && !lifetime.always_revalidate)
        }
        Serve::Forward => {}
    }
    if lifetime.serves_on_error(asks, stored_at, now, Duration::from_secs(86_400)) {
        assert!(!lifetime.always_revalidate && (fresh || !lifetime.revalidate_when_stale));
    }
}

/// The `Age` a response arrived with (RFC 9111 §5.1): the first member of its first
/// line, zero when malformed, at most 2^31 seconds.
fn arrived_age(headers: &HeaderMap) -> Duration {
    match headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
    {
        Some(digits) if is_digits(digits) => digits
            .parse::<u64>()
            .map_or(MAX_DELTA, |s| Duration::from_secs(s).min(MAX_DELTA)),
        _ => Duration::ZERO,
    }
}

/// A response whose only field is a `Cache-Control` line giving one `max-age` (in any
/// letter case) beside directives that do not shorten freshness is fresh for that
/// long in a private cache (RFC 9111 §4.2.1, §5.2: directive names are
/// case-insensitive).
fn max_age_alone(response: &HeaderMap) {
    const BESIDE_MAX_AGE: [&str; 6] = [
        "public",
        "private",
        "must-revalidate",
        "proxy-revalidate",
        "stale-while-revalidate",
        "stale-if-error",
    ];
    for line in response.get_all(CACHE_CONTROL) {
        let Ok(text) = line.to_str() else { continue };
        let names: Vec<String> = split_list(text)
            .map(|d| {
                d.split('=')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            })
            .collect();
        let max_ages = names.iter().filter(|n| *n == "max-age").count();
        let others = names.iter().filter(|n| *n != "max-age");
        if max_ages != 1
            || !others
                .into_iter()
                .all(|n| BESIDE_MAX_AGE.contains(&n.as_str()))
        {
            continue;
        }
        let mut alone = response::Builder::new()
            .body(())
            .expect("an empty response")
            .into_parts()
            .0;
        alone.headers.insert(CACHE_CONTROL, line.clone());
        let max_age = ResponseDirectives::parse(&alone.headers)
            .max_age
            .unwrap_or_default();
        if max_age.is_zero() {
            continue;
        }
        let private = Policy::Rfc9111 { shared: false };
        let lifetime = private.lifetime(&get("http://shop.example/"), &alone, KEEP_STALE, &[]);
        assert_eq!(
            lifetime.map(|l| l.fresh_for),
            Ok(max_age),
            "Cache-Control: {text}"
        );
    }
}

/// Reads a request URI, its `Host`, a `Location` it was answered with and a peer's
/// base URL, one a line: the URL the request is keyed and routed by, what the
/// `Location` invalidates, and (feature `pool`) the request as a peer receives it.
pub fn request_url(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let mut line = || lines.next().unwrap_or_default();
    let (uri, host, location) = (line(), line(), line());
    #[cfg(feature = "pool")]
    pool::urls(&[uri, host, location, line()]);
    let Ok(uri) = uri.parse::<http::Uri>() else {
        return;
    };
    let mut request = Request::post(uri)
        .body(())
        .expect("a request to a valid URI")
        .into_parts()
        .0;
    if !host.is_empty()
        && let Ok(host) = HeaderValue::from_str(host)
    {
        request.headers.insert(http::header::HOST, host);
    }
    same_origin(&request, location);
    #[cfg(feature = "pool")]
    pool::peer_round_trip(&request);
}

/// What a `Location` invalidates is on the request's own origin.
fn same_origin(request: &request::Parts, location: &str) {
    // A request without a host has no key (and stays out of the cache).
    let Some(key) = default_key(request) else {
        return;
    };
    let Some(get) = same_origin_get(request, location) else {
        return;
    };
    assert_eq!(get.method, Method::GET);
    assert_eq!(get.headers, request.headers);
    // Only an origin-form (`/path`) or absolute-form target names a resource; an
    // authority-form (`host:port`) or asterisk-form (`*`) one has no origin a
    // `Location` is resolved against.
    let names_a_resource = request.uri.path().starts_with('/')
        && (request.uri.scheme().is_some() || request.uri.authority().is_none());
    if !names_a_resource {
        return;
    }
    let invalidated = default_key(&get).expect("a request with a key keeps its host");
    assert_eq!(origin(&invalidated), origin(&key), "{location:?}");
}

/// The `scheme://host` of a key.
fn origin(key: &str) -> &str {
    let host_at = key.find("://").map_or(0, |at| at + 3);
    let end = key[host_at..]
        .find(['/', '?'])
        .map_or(key.len(), |at| host_at + at);
    &key[..end]
}

/// The pool's URL handling.
#[cfg(feature = "pool")]
mod pool {
    use std::convert::Infallible;
    use std::sync::OnceLock;

    use http::header::HOST;
    use http::{HeaderValue, Request, Response, Uri, request};

    use crate::body::Body;
    use crate::key::{default_key, url_key};
    use crate::pool::{PEER_PATH, Pool, SECRET_HEADER, normalize_peer, ring_key};

    const SECRET: &str = "fuzzing-secret";

    /// A pool of one member, `http://owner.test`, whose client is never called.
    fn owner() -> &'static Pool {
        static OWNER: OnceLock<Pool> = OnceLock::new();
        OWNER.get_or_init(|| {
            let client = tower::service_fn(|_: Request<Body>| async {
                Ok::<_, Infallible>(Response::new(Body::empty()))
            });
            Pool::builder()
                .secret(SECRET)
                .self_url("http://owner.test")
                .peers(["http://owner.test"])
                .client(client)
                .build()
                .expect("a pool of valid options")
        })
    }

    /// A URL's ring key is its cache key (the URL itself when it is none), and its
    /// own ring key; a peer's base URL in normal form is its own normal form, so a
    /// member always recognises itself.
    pub(super) fn urls(urls: &[&str]) {
        for url in urls {
            let key = ring_key(url);
            assert_eq!(Some(&key), url_key(url).as_ref().or(Some(&url.to_string())));
            assert_eq!(ring_key(&key), key);
            if let Ok(normal) = normalize_peer(url) {
                assert_eq!(
                    normalize_peer(&normal).ok(),
                    Some(normal.clone()),
                    "{url:?}"
                );
            }
        }
    }

    /// The request an owner accepts from a peer is the one the peer was asked for.
    pub(super) fn peer_round_trip(request: &request::Parts) {
        let Some(url) = default_key(request) else {
            return;
        };
        let Ok(sent) = url.parse::<Uri>() else {
            return;
        };
        if !matches!(sent.scheme_str(), Some("http" | "https")) || sent.authority().is_none() {
            return;
        }
        // As `Pool::forward` addresses it.
        let encoded: String = url::form_urlencoded::byte_serialize(url.as_bytes()).collect();
        let peer_request = Request::get(format!("http://owner.test{PEER_PATH}?url={encoded}"))
            .header(SECRET_HEADER, SECRET)
            .body(())
            .expect("an encoded URL makes a valid query");
        assert!(owner().is_peer_request(&peer_request));
        let accepted = owner()
            .accept(peer_request)
            .unwrap_or_else(|refusal| panic!("{url:?} refused: {refusal}"));
        assert_eq!(accepted.uri(), &sent);
        let host = sent
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        assert_eq!(accepted.headers().get(HOST), host.as_ref());
        let (parts, ()) = accepted.into_parts();
        assert_eq!(default_key(&parts), Some(url));
    }
}

/// Reads a response stored in Redis or on disk from any bytes, and round-trips
/// responses and variant indexes built from them.
#[cfg(all(feature = "redis", feature = "disk"))]
pub fn stored_response(data: &[u8]) {
    stored::decode_any(data);
    stored::round_trip(data);
}

/// Stored responses as the Redis and disk tiers keep them.
#[cfg(all(feature = "redis", feature = "disk"))]
mod stored {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use corral::codec::{Codec, Json, MessagePack};
    use http::{HeaderName, StatusCode};
    use tokio::time::Instant;

    use crate::fields::Fields;
    use crate::policy::Lifetime;
    use crate::stored::{Provenance, Stored, StoredResponse, frame_stored};
    use crate::tier_form::TierForm;
    use crate::vary::{VarySpec, selecting_values};

    /// How far `stored_at` may move in a round trip: records keep milliseconds of
    /// wall-clock time, read again on each side.
    const CLOCK_SLACK: Duration = Duration::from_secs(1);

    /// Whatever Redis holds decodes to a stored value or an error; a response comes
    /// back framed by its body, and encodes to itself.
    pub(super) fn decode_any(data: &[u8]) {
        for decoded in [
            Codec::<Stored>::decode(&MessagePack, data),
            Codec::<Stored>::decode(&Json, data),
            TierForm::default().decode_owned(Bytes::copy_from_slice(data)),
        ] {
            let Ok(Stored::Response(response)) = decoded else {
                continue;
            };
            let mut framed = response.headers.to_map(0);
            frame_stored(response.status, &mut framed, response.body.len());
            assert_eq!(Fields::from_map(&framed), response.headers);
            let again = round_tripped(&Stored::Response(response.clone()));
            same_response(&again, &response);
        }
    }

    /// A response built from the input comes back as it was stored (its fields
    /// framed by its body), and so does a variant index.
    pub(super) fn round_trip(data: &[u8]) {
        let mut rest = data;
        let status = u16::from_le_bytes(super::take(&mut rest)) % 1000;
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        let [flags] = super::take(&mut rest);
        let mut seconds = || Duration::from_secs(u32::from_le_bytes(super::take(&mut rest)).into());
        let lifetime = Lifetime {
            initial_age: seconds(),
            fresh_for: seconds(),
            stale_while_revalidate: seconds(),
            stale_if_error: seconds(),
            revalidate_when_stale: flags & 1 != 0,
            always_revalidate: flags & 2 != 0,
            keep_for: seconds(),
        };
        let age = Duration::from_millis(u32::from_le_bytes(super::take(&mut rest)).into());
        let (fields, body) = super::split_at_blank_line(rest);
        let headers = super::fields(fields);
        let names: Vec<HeaderName> = headers.keys().take(3).cloned().collect();
        let vary = (flags & 4 != 0).then(|| {
            let selecting = selecting_values(&names, &headers, false);
            (names.clone(), selecting)
        });
        let now = Instant::now();
        let response = Arc::new(StoredResponse {
            status,
            headers: Fields::from_map(&headers),
            body: Bytes::copy_from_slice(body).into(),
            stored_at: now.checked_sub(age).unwrap_or(now),
            lifetime,
            vary,
            provenance: if flags & 8 == 0 {
                Provenance::Fetched
            } else {
                Provenance::Revalidated
            },
        });
        let back = round_tripped(&Stored::Response(response.clone()));
        let mut framed = headers.clone();
        frame_stored(status, &mut framed, body.len() as u64);
        let framed = Fields::from_map(&framed);
        assert_eq!(back.headers, framed);
        same_response(
            &back,
            &StoredResponse {
                headers: framed,
                ..clone(&response)
            },
        );
        let spec = Arc::new(VarySpec {
            names,
            generation: u64::from(flags) << 56 | body.len() as u64,
        });
        let Stored::Variants(back) = decoded(&encoded(&Stored::Variants(spec.clone()))) else {
            panic!("a variant index comes back as another kind");
        };
        assert_eq!(back, spec);
    }

    fn encoded(stored: &Stored) -> Vec<u8> {
        MessagePack
            .encode(stored)
            .unwrap_or_else(|e| panic!("{stored:?} does not encode: {e}"))
    }

    fn decoded(bytes: &[u8]) -> Stored {
        MessagePack
            .decode(bytes)
            .unwrap_or_else(|e| panic!("an encoded value does not decode: {e}"))
    }

    /// A response through both tiers' forms: Redis's (returned) and the disk's, which
    /// must give the same response.
    fn round_tripped(stored: &Stored) -> Arc<StoredResponse> {
        let on_disk = TierForm::default()
            .encode(stored)
            .and_then(|bytes| TierForm::default().decode_owned(Bytes::from(bytes)))
            .unwrap_or_else(|e| panic!("{stored:?} does not round-trip on disk: {e}"));
        match (decoded(&encoded(stored)), on_disk) {
            (Stored::Response(response), Stored::Response(on_disk)) => {
                same_response(&on_disk, &response);
                response
            }
            other => panic!("a response came back as {other:?}"),
        }
    }

    /// A copy of a stored response's fields (its hit headers left out).
    fn clone(response: &StoredResponse) -> StoredResponse {
        StoredResponse {
            status: response.status,
            headers: response.headers.clone(),
            body: response.body.clone(),
            stored_at: response.stored_at,
            lifetime: response.lifetime.clone(),
            vary: response.vary.clone(),
            provenance: response.provenance,
        }
    }

    fn same_response(back: &StoredResponse, sent: &StoredResponse) {
        assert_eq!(back.status, sent.status);
        assert_eq!(back.headers, sent.headers);
        assert_eq!(back.body, sent.body);
        assert_eq!(back.lifetime, sent.lifetime);
        assert_eq!(back.vary, sent.vary);
        assert_eq!(back.provenance, sent.provenance);
        let moved = back.stored_at.max(sent.stored_at) - back.stored_at.min(sent.stored_at);
        assert!(moved < CLOCK_SLACK, "stored_at moved by {moved:?}");
    }
}

/// A plain GET for `uri`.
fn get(uri: &str) -> request::Parts {
    Request::get(uri)
        .body(())
        .expect("a request to a valid URI")
        .into_parts()
        .0
}

/// Header fields from lines of `name: value`; a line that is no valid field is
/// skipped. (The input format of every target that takes header fields, the proxy's
/// too.)
pub fn fields(text: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in text.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = HeaderName::from_bytes(&line[..colon]);
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (name, value) {
            headers.append(name, value);
        }
    }
    headers
}

/// `values` as the field lines of `name`.
fn field_lines(name: HeaderName, values: &[HeaderValue]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for value in values {
        headers.append(name.clone(), value.clone());
    }
    headers
}

/// The lines of `text` before its first empty line, and those after it.
fn split_at_blank_line(text: &[u8]) -> (&[u8], &[u8]) {
    if let Some(rest) = text.strip_prefix(b"\n") {
        return (&[], rest);
    }
    match text.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&text[..at], &text[at + 2..]),
        None => (text, &[]),
    }
}

/// The first line of `data`, and the rest.
fn split_at_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// A length written in digits only.
fn length(text: &str) -> Option<u64> {
    is_digits(text).then(|| text.parse().ok()).flatten()
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// `%XX` escapes decoded; other characters kept as their bytes.
fn percent_decoded(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// The next `N` bytes of the input (zeros past its end), consumed.
#[cfg(all(feature = "redis", feature = "disk"))]
fn take<const N: usize>(rest: &mut &[u8]) -> [u8; N] {
    let mut out = [0; N];
    let n = N.min(rest.len());
    out[..n].copy_from_slice(&rest[..n]);
    *rest = &rest[n..];
    out
}

#[cfg(test)]
mod tests {
    use corral::fuzzing::replay;

    #[test]
    fn cache_control_survives_its_corpus_and_its_mutants() {
        replay("cache_control", super::cache_control, 4000);
    }

    #[test]
    fn response_headers_survive_their_corpus_and_its_mutants() {
        replay("response_headers", super::response_headers, 2000);
    }

    #[test]
    fn request_urls_survive_their_corpus_and_its_mutants() {
        replay("request_url", super::request_url, 4000);
    }

    #[cfg(all(feature = "redis", feature = "disk"))]
    #[test]
    fn stored_responses_survive_their_corpus_and_its_mutants() {
        replay("stored_response", super::stored_response, 2000);
    }
}
