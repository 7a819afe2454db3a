//! What RFC 9111 (with RFC 9110's dates and RFC 9213's targeted fields) says a
//! shared cache stores and for how long, one test per section, each through the real
//! service in front of a real origin.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corral_http::{HttpCache, Policy};
use http::HeaderName;
use http::header::CDN_CACHE_CONTROL;
use support::{Origin, Reply, cached, get};

/// Whether the second of two GETs through a cache of `builder` (each answered by
/// `reply`, given the request's number) is a hit.
async fn stored(
    builder: corral_http::HttpCacheBuilder,
    reply: impl Fn(u32) -> Reply + Send + Sync + 'static,
) -> bool {
    let origin = Origin::start().await;
    origin.route("/r", move |_, n| reply(n as u32));
    let cache = cached(builder);
    let url = origin.url("/r");
    let first = get(&cache, &url).await;
    let second = get(&cache, &url).await;
    let hit = second.x_cache() == "HIT";
    assert_eq!(second.status, first.status);
    assert_eq!(origin.count("/r"), if hit { 1 } else { 2 });
    hit
}

#[tokio::test]
async fn rfc9213_2_2_a_valid_cdn_cache_control_decides_and_cache_control_is_ignored() {
    let shared = HttpCache::builder;
    assert!(
        stored(shared(), |_| Reply::ok("a")
            .header("cache-control", "no-store")
            .header("cdn-cache-control", "max-age=600"))
        .await,
        "stored on the targeted field's word, Cache-Control: no-store ignored"
    );
    assert!(
        !stored(shared(), |_| Reply::ok("a")
            .header("cache-control", "max-age=600")
            .header("cdn-cache-control", "no-store"))
        .await
    );
    assert!(
        stored(shared(), |_| Reply::ok("a")
            .header("expires", "0")
            .header("cdn-cache-control", "max-age=600"))
        .await,
        "Expires is ignored beside a valid targeted field"
    );
    assert!(
        !stored(shared(), |_| Reply::ok("a")
            .header("cache-control", "max-age=600")
            .header("cdn-cache-control", "private"))
        .await
    );
}

#[tokio::test]
async fn rfc9213_2_2_an_invalid_targeted_field_is_ignored_and_cache_control_applies() {
    for invalid in ["Max-Age=600", "max-age=600,", "max-age=\"600"] {
        assert!(
            !stored(HttpCache::builder(), move |_| Reply::ok("a")
                .header("cache-control", "no-store")
                .header("cdn-cache-control", invalid))
            .await,
            "{invalid}"
        );
    }
    // A delta of the wrong type is left out; the field still replaces Cache-Control.
    assert!(
        !stored(HttpCache::builder(), |_| Reply::ok("a")
            .header("cache-control", "max-age=600")
            .header("cdn-cache-control", "max-age=\"600\""))
        .await
    );
}

#[tokio::test]
async fn rfc9213_2_2_an_operator_chosen_field_comes_first_and_targets_can_be_turned_off() {
    let ours = HeaderName::from_static("corral-cache-control");
    let both = || HttpCache::builder().targeted_cache_control([ours.clone(), CDN_CACHE_CONTROL]);
    assert!(
        !stored(both(), |_| Reply::ok("a")
            .header("corral-cache-control", "no-store")
            .header("cdn-cache-control", "max-age=600"))
        .await
    );
    assert!(
        stored(both(), |_| Reply::ok("a")
            .header("corral-cache-control", "max-age=600")
            .header("cache-control", "private"))
        .await
    );
    let none = HttpCache::builder().targeted_cache_control([]);
    assert!(
        !stored(none, |_| Reply::ok("a")
            .header("cache-control", "no-store")
            .header("cdn-cache-control", "max-age=600"))
        .await
    );
    // A private cache (a client's) is no CDN: it heeds Cache-Control alone.
    let private = HttpCache::builder().policy(Policy::Rfc9111 { shared: false });
    assert!(
        !stored(private, |_| Reply::ok("a")
            .header("cache-control", "no-store")
            .header("cdn-cache-control", "max-age=600"))
        .await
    );
}

#[tokio::test]
async fn rfc9111_3_any_final_status_with_explicit_freshness_is_stored() {
    for status in [400, 404, 410, 500, 502, 503, 504, 299, 599] {
        let origin = Origin::start().await;
        origin.route("/s", move |_, n| {
            Reply::ok(&format!("{{\"error\": {n}}}"))
                .status(status)
                .header("content-type", "application/json")
                .header("cache-control", "max-age=600")
        });
        let cache = cached(HttpCache::builder());
        let url = origin.url("/s");
        get(&cache, &url).await;
        let again = get(&cache, &url).await;
        assert_eq!(
            (again.status.as_u16(), again.text(), again.x_cache()),
            (status, "{\"error\": 1}", "HIT"),
            "{status}"
        );
        assert!(again.header("cache-status").starts_with("corral; hit"));
    }
}

#[tokio::test]
async fn rfc9111_3_without_explicit_freshness_errors_and_unknown_statuses_are_not_stored() {
    for status in [500, 503, 299, 599, 302] {
        assert!(
            !stored(HttpCache::builder(), move |_| {
                let reply = Reply::ok("e").status(status);
                match status {
                    500 | 299 => reply.header("etag", "\"x\""),
                    503 => reply.header("cache-control", "public"),
                    302 => reply.header("location", "/elsewhere"),
                    _ => reply,
                }
            })
            .await,
            "{status}"
        );
    }
}

#[tokio::test]
async fn rfc9111_4_2_a_stored_error_goes_stale_like_any_response() {
    let origin = Origin::start().await;
    origin.route("/busy", |_, n| {
        Reply::ok(&format!("busy {n}"))
            .status(503)
            .header("cache-control", "max-age=60")
            .header("age", "60")
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/busy");
    assert_eq!(get(&cache, &url).await.text(), "busy 1");
    assert_eq!(get(&cache, &url).await.text(), "busy 2", "stale on arrival");
}

#[tokio::test]
async fn rfc9111_5_1_a_list_age_counts_its_first_member_and_an_invalid_one_is_ignored() {
    for (age, counted) in [
        ("100, 200", 100),
        ("100", 100),
        ("10s", 0),
        ("1.5", 0),
        ("-3", 0),
        ("7;x=1", 0),
    ] {
        let origin = Origin::start().await;
        origin.route("/aged", move |_, _| {
            Reply::ok("a")
                .header("cache-control", "max-age=600")
                .header("age", age)
        });
        let cache = cached(HttpCache::builder());
        let url = origin.url("/aged");
        get(&cache, &url).await;
        let hit = get(&cache, &url).await;
        assert_eq!(hit.x_cache(), "HIT", "Age: {age}");
        let served: u64 = hit.header("age").parse().unwrap();
        assert!(
            (counted..=counted + 1).contains(&served),
            "Age: {age} served as {served}"
        );
    }
}

/// `at` in each of RFC 9110 §5.6.7's three formats: IMF-fixdate, RFC 850, asctime.
fn http_dates(at: SystemTime) -> [String; 3] {
    const DAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = at.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (hour, minute, second) = (rest / 3600, rest / 60 % 60, rest % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = DAYS[(days % 7) as usize];
    let mon = MONTHS[(month - 1) as usize];
    [
        format!(
            "{}, {day:02} {mon} {year} {hour:02}:{minute:02}:{second:02} GMT",
            &weekday[..3]
        ),
        format!(
            "{weekday}, {day:02}-{mon}-{:02} {hour:02}:{minute:02}:{second:02} GMT",
            year % 100
        ),
        format!(
            "{} {mon} {day:>2} {hour:02}:{minute:02}:{second:02} {year}",
            &weekday[..3]
        ),
    ]
}

#[tokio::test]
async fn rfc9110_5_6_7_expires_is_read_in_all_three_date_formats() {
    let now = SystemTime::now();
    let date = httpdate::fmt_http_date(now);
    assert_eq!(http_dates(now)[0], date, "the test's own formatter");
    for expires in http_dates(now + Duration::from_secs(600)) {
        let origin = Origin::start().await;
        let (date, header) = (date.clone(), expires.clone());
        origin.route("/e", move |_, _| {
            Reply::ok("a")
                .header("date", &date)
                .header("expires", &header)
        });
        let cache = cached(HttpCache::builder());
        let url = origin.url("/e");
        get(&cache, &url).await;
        let hit = get(&cache, &url).await;
        assert_eq!(hit.x_cache(), "HIT", "Expires: {expires}");
        let ttl = hit
            .header("cache-status")
            .rsplit("ttl=")
            .next()
            .unwrap()
            .to_owned();
        let ttl: u64 = ttl.parse().unwrap();
        assert!(
            (595..=600).contains(&ttl),
            "Expires: {expires} gave ttl {ttl}"
        );
    }
}

#[tokio::test]
async fn rfc9111_5_3_an_invalid_expires_means_already_expired() {
    let later = http_dates(SystemTime::now() + Duration::from_secs(600));
    let spaced = later[0].replacen(' ', "  ", 1);
    let two_digit_zone = later[0].replace("GMT", "+0000");
    for invalid in [
        "0",
        "-1",
        "tomorrow",
        spaced.as_str(),
        two_digit_zone.as_str(),
    ] {
        let header = invalid.to_owned();
        let reply = move |_| Reply::ok("a").header("expires", &header);
        assert!(
            !stored(HttpCache::builder(), reply).await,
            "Expires: {invalid}"
        );
    }
}

#[tokio::test]
async fn rfc9111_5_2_directive_names_are_case_insensitive_and_conflicts_read_strictest() {
    assert!(
        stored(HttpCache::builder(), |_| Reply::ok("a")
            .header("cache-control", "MAX-AGE=600"))
        .await
    );
    assert!(
        stored(HttpCache::builder(), |_| Reply::ok("a")
            .header("Cache-Control", "Public, Max-Age=600"))
        .await
    );
    assert!(
        !stored(HttpCache::builder(), |_| Reply::ok("a")
            .header("cache-control", "max-age=600, NO-STORE"))
        .await
    );
    assert!(
        !stored(HttpCache::builder(), |_| Reply::ok("a")
            .header("cache-control", "max-age=600, max-age=0"))
        .await,
        "the smaller of two max-ages"
    );
    assert!(
        !stored(HttpCache::builder(), |_| Reply::ok("a")
            .header("cache-control", "max-age=600")
            .header("cache-control", "max-age=0"))
        .await,
        "across field lines too"
    );
}

/// How an origin behaves after its one answer.
#[derive(Clone, Copy, Debug)]
enum Then {
    /// It is gone: connections are refused.
    Refuses,
    /// It accepts connections and closes them before answering.
    HangsUp,
}

/// An origin that answers its first request with `reply` (a whole HTTP/1.1 response,
/// `Connection: close`), then behaves as `then` says.
async fn one_answer_origin(reply: &'static str, then: Then) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/doc", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buffer = [0; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the request came whole");
            head.extend_from_slice(&buffer[..n]);
        }
        stream.write_all(reply.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        drop(stream);
        match then {
            Then::Refuses => drop(listener),
            Then::HangsUp => loop {
                let (stream, _) = listener.accept().await.unwrap();
                drop(stream);
            },
        }
    });
    url
}

/// Stale on arrival (its `Age` is its `max-age`), so the next request goes to the origin.
const STALE_ON_ARRIVAL: &str = "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\nage: 60\r\n\
    content-length: 8\r\nconnection: close\r\n\r\nthe page";

#[tokio::test]
async fn rfc9111_4_2_4_a_stale_response_answers_when_the_origin_cannot_be_reached() {
    for then in [Then::Refuses, Then::HangsUp] {
        let url = one_answer_origin(STALE_ON_ARRIVAL, then).await;
        let cache = cached(HttpCache::builder());
        assert_eq!(get(&cache, &url).await.text(), "the page");
        let stale = get(&cache, &url).await;
        assert_eq!(
            (stale.status.as_u16(), stale.text()),
            (200, "the page"),
            "{then:?}"
        );
        assert_eq!(stale.x_cache(), "STALE");
        assert!(
            stale
                .header("cache-status")
                .contains("detail=\"origin unreachable\""),
            "{}",
            stale.header("cache-status")
        );
        let age: u64 = stale.header("age").parse().unwrap();
        assert!(age >= 60);
    }
}

#[tokio::test]
async fn rfc9111_4_2_4_no_stale_response_when_forbidden_turned_off_or_a_fresh_one_is_asked_for() {
    const MUST_REVALIDATE: &str = "HTTP/1.1 200 OK\r\ncache-control: max-age=60, must-revalidate\r\n\
        age: 60\r\netag: \"e\"\r\ncontent-length: 8\r\nconnection: close\r\n\r\nthe page";
    const S_MAXAGE: &str = "HTTP/1.1 200 OK\r\ncache-control: s-maxage=60\r\nage: 60\r\n\
        etag: \"e\"\r\ncontent-length: 8\r\nconnection: close\r\n\r\nthe page";
    for forbidding in [MUST_REVALIDATE, S_MAXAGE] {
        let url = one_answer_origin(forbidding, Then::Refuses).await;
        let cache = cached(HttpCache::builder());
        get(&cache, &url).await;
        assert_eq!(get(&cache, &url).await.status, 502, "{forbidding}");
    }
    let url = one_answer_origin(STALE_ON_ARRIVAL, Then::Refuses).await;
    let cache = cached(HttpCache::builder().stale_on_disconnect(Duration::ZERO));
    get(&cache, &url).await;
    assert_eq!(get(&cache, &url).await.status, 502, "turned off");
    let url = one_answer_origin(STALE_ON_ARRIVAL, Then::Refuses).await;
    let cache = cached(HttpCache::builder());
    get(&cache, &url).await;
    let fresh_please = support::get_with(&cache, &url, &[("cache-control", "no-cache")]).await;
    assert_eq!(
        fresh_please.status, 502,
        "the client asked for a fresh response"
    );
}

/// §4.1: a cache may normalise the selecting fields "using knowledge of the semantics
/// of the header field"; it does so for `Accept-Encoding` (case, spacing, order) and
/// `Accept-Language` (case and spacing: its order is a priority).
#[tokio::test]
async fn rfc9111_4_1_accept_lists_that_differ_only_in_case_or_spacing_select_one_variant() {
    for normalize in [true, false] {
        let origin = Origin::start().await;
        origin.route("/v", |_, n| {
            Reply::ok(&format!("variant {n}"))
                .header("cache-control", "max-age=600")
                .header("vary", "accept-encoding, accept-language")
        });
        let cache = cached(HttpCache::builder().normalize_vary(normalize));
        let url = origin.url("/v");
        let ask =
            |encoding, language| [("accept-encoding", encoding), ("accept-language", language)];
        support::get_with(&cache, &url, &ask("gzip, br", "de-DE, en;q=0.5")).await;
        let respelled =
            support::get_with(&cache, &url, &ask("BR,gzip", "DE-de , en ; q=0.5")).await;
        assert_eq!(
            respelled.x_cache() == "HIT",
            normalize,
            "normalize_vary({normalize})"
        );
        let reordered = support::get_with(&cache, &url, &ask("gzip, br", "en;q=0.5, de-DE")).await;
        assert_eq!(reordered.x_cache(), "MISS", "another language first");
        let weighted =
            support::get_with(&cache, &url, &ask("gzip, br;q=0.1", "de-DE, en;q=0.5")).await;
        assert_eq!(weighted.x_cache(), "MISS", "a weight is a difference");
    }
}

/// §4.3.4 and §3.2: a 304 updates the stored response's fields, but never the ones
/// that describe its stored body.
#[tokio::test]
async fn rfc9111_4_3_4_a_304_updates_stored_fields_but_not_those_that_frame_the_body() {
    let origin = Origin::start().await;
    origin.route("/r", |req, n| {
        if req.headers.contains_key("if-none-match") {
            Reply::ok("")
                .status(304)
                .header("etag", "\"e\"")
                .header("cache-control", "max-age=600")
                .header("content-encoding", "gzip")
                .header("content-range", "bytes 0-1/2")
                .header("x-revision", &n.to_string())
        } else {
            Reply::ok("the body")
                .header("etag", "\"e\"")
                .header("cache-control", "max-age=1")
                .header("age", "1")
                .header("x-revision", "1")
        }
    });
    let cache = cached(HttpCache::builder());
    let url = origin.url("/r");
    get(&cache, &url).await;
    let revalidated = get(&cache, &url).await;
    assert_eq!(revalidated.x_cache(), "REVALIDATED");
    assert_eq!(revalidated.text(), "the body");
    assert_eq!(revalidated.header("x-revision"), "2", "updated");
    assert_eq!(revalidated.header("content-length"), "8");
    assert!(
        revalidated.headers.get("content-encoding").is_none(),
        "not the body's coding"
    );
    assert!(revalidated.headers.get("content-range").is_none());
    let hit = get(&cache, &url).await;
    assert_eq!((hit.x_cache(), hit.header("x-revision")), ("HIT", "2"));
}
