//! The refresh cache against real origins on 127.0.0.1, on tokio's paused clock:
//! schedules from max-age (clamped) and fixed intervals, the documented defaults,
//! conditional refreshes (`ETag` and `Last-Modified`), clients of one's own, failures
//! that keep the value and back off, coalesced first fetches, the allow-list (also on
//! redirects), unregistering, shutting down, and transformers that fail or panic.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use corral_http::refresh::{
    RefreshCache, RefreshCacheBuilder, RefreshError, Registration, UrlAllowList,
};
use http_body_util::Full;
use support::{Origin, Reply};

const MIN: Duration = Duration::from_secs(60);
const MAX: Duration = Duration::from_secs(3600);

fn builder<T: Send + Sync + 'static>() -> RefreshCacheBuilder<T> {
    RefreshCache::builder()
        .min_interval(MIN)
        .max_interval(MAX)
        .fetch_timeout(Duration::from_secs(5))
}

fn bytes_cache() -> RefreshCache<Bytes> {
    builder().build().unwrap()
}

/// Waits (on the paused clock: in virtual time) until `path` was requested `n` times.
async fn until_count(origin: &Origin, path: &str, n: usize) {
    for _ in 0..10_000 {
        if origin.count(path) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{path} was requested {} times, not {n}", origin.count(path));
}

fn status<T: Send + Sync + 'static>(
    cache: &RefreshCache<T>,
    url: &str,
) -> corral_http::refresh::ResourceStatus {
    cache
        .snapshot()
        .into_iter()
        .find(|s| s.url == url)
        .expect("registered")
}

#[tokio::test(start_paused = true)]
async fn max_age_schedules_the_next_refresh() {
    let origin = Origin::start().await;
    origin.route("/keys", |_, n| {
        Reply::ok(&format!("v{n}")).header("cache-control", "max-age=600")
    });
    let cache = bytes_cache();
    let url = origin.url("/keys");
    cache
        .register(&url, Registration::bytes().wait_for_first_fetch(true))
        .await
        .unwrap();
    assert_eq!(&cache.get(&url).await.unwrap()[..], b"v1");
    let s = status(&cache, &url);
    assert_eq!(s.next_refresh_in, Duration::from_secs(600));
    assert!(s.has_value && s.last_fetched.is_some() && s.last_error.is_none());

    tokio::time::sleep(Duration::from_secs(599)).await;
    assert_eq!(origin.count("/keys"), 1, "not before max-age ends");
    tokio::time::sleep(Duration::from_secs(2)).await;
    until_count(&origin, "/keys", 2).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(&cache.get(&url).await.unwrap()[..], b"v2");
    // Gets in between are memory reads.
    for _ in 0..100 {
        cache.get(&url).await.unwrap();
    }
    assert_eq!(origin.count("/keys"), 2);
}

#[tokio::test(start_paused = true)]
async fn intervals_from_responses_are_clamped_to_min_and_max() {
    let origin = Origin::start().await;
    origin.route("/short", |_, _| {
        Reply::ok("s").header("cache-control", "max-age=5")
    });
    origin.route("/long", |_, _| {
        Reply::ok("l").header("cache-control", "max-age=31536000")
    });
    origin.route("/none", |_, _| Reply::ok("n"));
    origin.route("/aged", |_, _| {
        Reply::ok("a")
            .header("cache-control", "max-age=900")
            .header("age", "300")
    });
    let cache = bytes_cache();
    for path in ["/short", "/long", "/none", "/aged"] {
        let registration = Registration::bytes().wait_for_first_fetch(true);
        cache
            .register(&origin.url(path), registration)
            .await
            .unwrap();
    }
    let next = |path| status(&cache, &origin.url(path)).next_refresh_in;
    assert_eq!(next("/short"), MIN);
    assert_eq!(next("/long"), MAX);
    assert_eq!(next("/none"), MIN);
    assert_eq!(next("/aged"), Duration::from_secs(600));

    tokio::time::sleep(MIN + Duration::from_secs(1)).await;
    until_count(&origin, "/short", 2).await;
    until_count(&origin, "/none", 2).await;
    assert_eq!(origin.count("/long"), 1);
    tokio::time::sleep(MAX).await;
    until_count(&origin, "/long", 2).await;
}

#[tokio::test(start_paused = true)]
async fn a_fixed_interval_overrides_the_response() {
    let origin = Origin::start().await;
    origin.route("/fixed", |_, _| {
        Reply::ok("f").header("cache-control", "max-age=86400")
    });
    let cache = bytes_cache();
    let url = origin.url("/fixed");
    let registration = Registration::bytes()
        .fixed_interval(Duration::from_secs(30))
        .wait_for_first_fetch(true);
    cache.register(&url, registration).await.unwrap();
    for n in 2..=4 {
        tokio::time::sleep(Duration::from_secs(30)).await;
        until_count(&origin, "/fixed", n).await;
    }
    assert_eq!(origin.count("/fixed"), 4);
}

#[tokio::test(start_paused = true)]
async fn a_304_keeps_the_value_without_running_the_transformer() {
    let origin = Origin::start().await;
    origin.route("/etag", |req, _| {
        if req
            .headers
            .get("if-none-match")
            .is_some_and(|v| v == "\"k1\"")
        {
            Reply::default().status(304).header("etag", "\"k1\"")
        } else {
            Reply::ok("keys-1")
                .header("etag", "\"k1\"")
                .header("cache-control", "max-age=60")
        }
    });
    let transforms = Arc::new(AtomicUsize::new(0));
    let counted = transforms.clone();
    let registration = Registration::with_transform(move |response: http::Response<Bytes>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move { String::from_utf8(response.into_body().to_vec()) }
    });
    let cache: RefreshCache<String> = builder().build().unwrap();
    let url = origin.url("/etag");
    cache
        .register(&url, registration.wait_for_first_fetch(true))
        .await
        .unwrap();
    assert_eq!(status(&cache, &url).etag.as_deref(), Some("\"k1\""));
    let first = cache.get(&url).await.unwrap();

    let again = cache.refresh(&url).await.unwrap();
    assert!(Arc::ptr_eq(&first, &again), "the same value is kept");
    assert_eq!(origin.count("/etag"), 2);
    assert_eq!(transforms.load(Ordering::SeqCst), 1, "not run on a 304");
    let conditional = origin.last_request("/etag");
    assert_eq!(conditional.get("if-none-match").unwrap(), "\"k1\"");
    // The 304 had no max-age: the next refresh is the min interval away.
    assert_eq!(status(&cache, &url).next_refresh_in, MIN);
}

#[tokio::test(start_paused = true)]
async fn a_304_to_if_modified_since_keeps_the_value_without_running_the_transformer() {
    const LAST_MODIFIED: &str = "Tue, 15 Nov 1994 12:45:26 GMT";
    let origin = Origin::start().await;
    origin.route("/dated", |req, _| {
        if req
            .headers
            .get("if-modified-since")
            .is_some_and(|v| v == LAST_MODIFIED)
        {
            Reply::default().status(304)
        } else {
            Reply::ok("dated-1")
                .header("last-modified", LAST_MODIFIED)
                .header("cache-control", "max-age=120")
        }
    });
    let transforms = Arc::new(AtomicUsize::new(0));
    let counted = transforms.clone();
    let registration = Registration::with_transform(move |response: http::Response<Bytes>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move { String::from_utf8(response.into_body().to_vec()) }
    });
    let cache: RefreshCache<String> = builder().build().unwrap();
    let url = origin.url("/dated");
    cache
        .register(&url, registration.wait_for_first_fetch(true))
        .await
        .unwrap();
    let s = status(&cache, &url);
    assert_eq!(s.last_modified.as_deref(), Some(LAST_MODIFIED));
    assert_eq!(s.etag, None);
    assert!(
        origin
            .last_request("/dated")
            .get("if-modified-since")
            .is_none(),
        "the first fetch is unconditional"
    );
    let first = cache.get(&url).await.unwrap();
    assert_eq!(*first, "dated-1");

    // The background refresh, when max-age ends, is conditional on Last-Modified.
    tokio::time::sleep(Duration::from_secs(119)).await;
    assert_eq!(origin.count("/dated"), 1, "not before max-age ends");
    tokio::time::sleep(Duration::from_secs(1)).await;
    until_count(&origin, "/dated", 2).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let conditional = origin.last_request("/dated");
    assert_eq!(conditional["if-modified-since"], LAST_MODIFIED);
    assert!(
        conditional.get("if-none-match").is_none(),
        "{conditional:?}"
    );
    let again = cache.get(&url).await.unwrap();
    assert!(Arc::ptr_eq(&first, &again), "the same value is kept");
    assert_eq!(transforms.load(Ordering::SeqCst), 1, "not run on a 304");
    let s = status(&cache, &url);
    assert!(s.last_error.is_none() && s.consecutive_failures == 0);
    assert_eq!(s.last_modified.as_deref(), Some(LAST_MODIFIED), "kept");
    // The 304 had no max-age: the next refresh is the min interval away.
    assert!(
        s.next_refresh_in <= MIN && s.next_refresh_in + Duration::from_millis(20) >= MIN,
        "{:?}",
        s.next_refresh_in
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_keeps_the_value_reports_the_error_and_backs_off() {
    let origin = Origin::start().await;
    origin.route("/flaky", |_, n| match n {
        1 => Reply::ok("good").header("cache-control", "max-age=60"),
        _ => Reply::ok("down").status(503),
    });
    let errors = Arc::new(Mutex::new(Vec::new()));
    let sink = errors.clone();
    let cache: RefreshCache<Bytes> = builder()
        .retry_base(Duration::from_secs(1))
        .error_sink(move |e| sink.lock().unwrap().push(e.to_string()))
        .build()
        .unwrap();
    let url = origin.url("/flaky");
    cache
        .register(&url, Registration::bytes().wait_for_first_fetch(true))
        .await
        .unwrap();

    tokio::time::sleep(MIN).await;
    until_count(&origin, "/flaky", 2).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(&cache.get(&url).await.unwrap()[..], b"good", "kept");
    let s = status(&cache, &url);
    assert_eq!(s.consecutive_failures, 1);
    assert!(matches!(
        s.last_error,
        Some(RefreshError::Status { status, .. }) if status == 503
    ));
    assert_eq!(errors.lock().unwrap().len(), 1);
    assert!(errors.lock().unwrap()[0].contains("503"));

    // Retries: after about 1 s, 2 s, 4 s ... (each less up to half at random), up
    // to the min interval.
    for failures in 1..=8u32 {
        let s = status(&cache, &url);
        assert_eq!(s.consecutive_failures, failures);
        let full = (Duration::from_secs(1) * 2u32.pow(failures - 1)).min(MIN);
        // (A few virtual milliseconds passed since the failure: the waits above.)
        let slack = Duration::from_millis(20);
        assert!(
            s.next_refresh_in + slack >= full / 2 && s.next_refresh_in <= full,
            "after {failures} failures: {:?}",
            s.next_refresh_in
        );
        tokio::time::sleep(s.next_refresh_in).await;
        until_count(&origin, "/flaky", failures as usize + 2).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(&cache.get(&url).await.unwrap()[..], b"good");
    assert_eq!(errors.lock().unwrap().len(), 9);
}

#[tokio::test(start_paused = true)]
async fn a_failed_first_fetch_is_an_error_never_an_empty_value() {
    let origin = Origin::start().await;
    origin.route("/down", |_, _| Reply::ok("nope").status(500));
    let cache = bytes_cache();
    let url = origin.url("/down");
    let registered = cache
        .register(&url, Registration::bytes().wait_for_first_fetch(true))
        .await;
    assert!(matches!(registered, Err(RefreshError::Status { .. })));
    assert!(cache.is_registered(&url), "stays registered, retrying");
    let got = cache.get(&url).await;
    assert!(matches!(got, Err(RefreshError::Status { status, .. }) if status == 500));
    // Within the retry's wait, gets do not hammer the origin.
    assert_eq!(origin.count("/down"), 1);
    // refresh always fetches.
    assert!(cache.refresh(&url).await.is_err());
    assert_eq!(origin.count("/down"), 2);
    // Unregistered URLs say so.
    let unknown = cache.get(&origin.url("/unknown")).await;
    assert!(matches!(unknown, Err(RefreshError::NotRegistered { .. })));
    assert!(
        unknown.unwrap_err().to_string().contains("not registered"),
        "the message says what is wrong"
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_gets_of_an_unfetched_url_make_one_request() {
    let origin = Origin::start().await;
    origin.route("/slow", |_, _| {
        Reply::ok("once").delay(Duration::from_millis(100))
    });
    let cache = bytes_cache();
    let url = origin.url("/slow");
    // Not waiting: the background first fetch and the gets all share one fetch.
    cache.register(&url, Registration::bytes()).await.unwrap();
    let gets: Vec<_> = (0..100)
        .map(|_| {
            let (cache, url) = (cache.clone(), url.clone());
            tokio::spawn(async move { cache.get(&url).await })
        })
        .collect();
    for get in gets {
        assert_eq!(&get.await.unwrap().unwrap()[..], b"once");
    }
    assert_eq!(origin.count("/slow"), 1);
}

#[tokio::test(start_paused = true)]
async fn the_allow_list_refuses_urls_and_redirects_outside_it() {
    let origin = Origin::start().await;
    let elsewhere = Origin::start().await;
    elsewhere.route("/secret", |_, _| Reply::ok("internal"));
    origin.route("/keys", |_, _| Reply::ok("keys"));
    origin.route("/moved", |_, _| {
        Reply::default().status(301).header("location", "/keys")
    });
    let leak = elsewhere.url("/secret");
    origin.route("/escape", move |_, _| {
        Reply::default().status(302).header("location", &leak)
    });
    let allow = UrlAllowList::new().prefix(&origin.url("/")).unwrap();
    let cache: RefreshCache<Bytes> = builder().allow(allow).build().unwrap();

    let refused = cache
        .register(&elsewhere.url("/secret"), Registration::bytes())
        .await;
    assert!(matches!(
        refused,
        Err(RefreshError::Refused {
            redirected_from: None,
            ..
        })
    ));
    assert!(!cache.is_registered(&elsewhere.url("/secret")));
    let bad = cache
        .register("file:///etc/passwd", Registration::bytes())
        .await;
    assert!(matches!(bad, Err(RefreshError::InvalidUrl { .. })));

    // A redirect within the list is followed.
    let moved = origin.url("/moved");
    cache.register(&moved, Registration::bytes()).await.unwrap();
    assert_eq!(&cache.get(&moved).await.unwrap()[..], b"keys");

    // A redirect outside it is a failed fetch, and nothing is fetched there.
    let escape = origin.url("/escape");
    cache
        .register(&escape, Registration::bytes())
        .await
        .unwrap();
    let err = cache.get(&escape).await.unwrap_err();
    assert!(
        matches!(&err, RefreshError::Refused { redirected_from: Some(from), .. } if *from == escape),
        "{err}"
    );
    assert_eq!(elsewhere.count("/secret"), 0);
}

#[tokio::test(start_paused = true)]
async fn unregister_stops_refreshing() {
    let origin = Origin::start().await;
    origin.route("/gone", |_, _| Reply::ok("g"));
    let cache = bytes_cache();
    let url = origin.url("/gone");
    cache
        .register(&url, Registration::bytes().wait_for_first_fetch(true))
        .await
        .unwrap();
    assert!(cache.unregister(&url));
    assert!(!cache.unregister(&url));
    assert!(!cache.is_registered(&url));
    tokio::time::sleep(MIN * 10).await;
    assert_eq!(origin.count("/gone"), 1);
    assert!(matches!(
        cache.get(&url).await,
        Err(RefreshError::NotRegistered { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn shutdown_and_drop_stop_the_background_work() {
    let origin = Origin::start().await;
    origin.route("/a", |_, _| Reply::ok("a"));
    origin.route("/b", |_, _| Reply::ok("b"));
    let first = bytes_cache();
    let second = bytes_cache();
    for (cache, path) in [(&first, "/a"), (&second, "/b")] {
        let registration = Registration::bytes().wait_for_first_fetch(true);
        cache
            .register(&origin.url(path), registration)
            .await
            .unwrap();
    }
    first.shutdown().await;
    assert!(matches!(
        first.get(&origin.url("/a")).await,
        Err(RefreshError::ShutDown)
    ));
    assert!(first.snapshot().is_empty());
    drop(second);
    tokio::time::sleep(MIN * 10).await;
    assert_eq!((origin.count("/a"), origin.count("/b")), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_or_failing_transformer_is_a_failed_refresh() {
    let origin = Origin::start().await;
    origin.route("/json", |_, n| match n {
        1 => Reply::ok(r#"{"keys":[1,2]}"#),
        2 => Reply::ok("not json"),
        _ => Reply::ok(r#"{"keys":[3]}"#),
    });
    origin.route("/boom", |_, _| Reply::ok("x"));
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Keys {
        keys: Vec<u32>,
    }
    let cache: RefreshCache<Keys> = builder().build().unwrap();
    let json = origin.url("/json");
    cache
        .register(&json, Registration::json().wait_for_first_fetch(true))
        .await
        .unwrap();
    assert_eq!(cache.get(&json).await.unwrap().keys, [1, 2]);
    let err = cache.refresh(&json).await.unwrap_err();
    assert!(matches!(err, RefreshError::Transform { .. }), "{err}");
    assert_eq!(cache.get(&json).await.unwrap().keys, [1, 2], "kept");
    assert_eq!(cache.refresh(&json).await.unwrap().keys, [3]);

    let boom = origin.url("/boom");
    let panicking = Registration::with_transform(|_: http::Response<Bytes>| async {
        if true {
            panic!("transformer bug");
        }
        Ok::<Keys, std::io::Error>(Keys { keys: vec![] })
    });
    cache.register(&boom, panicking).await.unwrap();
    let err = cache.get(&boom).await.unwrap_err();
    assert!(
        matches!(&err, RefreshError::TransformPanicked { message, .. } if message.contains("transformer bug")),
        "{err}"
    );
    // The cache goes on serving the others, and retries the panicking one.
    assert_eq!(cache.refresh(&json).await.unwrap().keys, [3]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    until_count(&origin, "/boom", 2).await;
}

#[tokio::test(start_paused = true)]
async fn bodies_over_the_limit_and_hung_origins_are_failed_fetches() {
    let origin = Origin::start().await;
    origin.route("/big", |_, _| Reply::ok(&"x".repeat(1000)));
    origin.route("/hang", |_, _| {
        Reply::ok("late").delay(Duration::from_secs(3600))
    });
    origin.route("/ok", |_, _| {
        Reply::ok("ok").header("cache-control", "max-age=60")
    });
    let cache: RefreshCache<Bytes> = builder().max_body_bytes(100).workers(1).build().unwrap();
    let big = origin.url("/big");
    cache.register(&big, Registration::bytes()).await.unwrap();
    assert!(matches!(
        cache.get(&big).await,
        Err(RefreshError::BodyTooLarge { limit: 100, .. })
    ));
    let hang = origin.url("/hang");
    cache.register(&hang, Registration::bytes()).await.unwrap();
    assert!(matches!(
        cache.get(&hang).await,
        Err(RefreshError::Timeout { .. })
    ));
    // With one worker and a URL that keeps hanging, another URL still refreshes on
    // its schedule.
    let ok = origin.url("/ok");
    cache
        .register(&ok, Registration::bytes().wait_for_first_fetch(true))
        .await
        .unwrap();
    for n in 2..=4 {
        tokio::time::sleep(MIN + Duration::from_secs(6)).await;
        until_count(&origin, "/ok", n).await;
    }
}

#[tokio::test(start_paused = true)]
async fn invalid_options_are_errors() {
    let err = |b: RefreshCacheBuilder<Bytes>| b.build().unwrap_err();
    assert!(matches!(
        err(RefreshCache::builder().workers(0)),
        RefreshError::InvalidOption(_)
    ));
    assert!(matches!(
        err(RefreshCache::builder().min_interval(MAX).max_interval(MIN)),
        RefreshError::InvalidOption(_)
    ));
    let cache = bytes_cache();
    let zero = Registration::bytes().fixed_interval(Duration::ZERO);
    assert!(matches!(
        cache.register("http://127.0.0.1:1/", zero).await,
        Err(RefreshError::InvalidOption(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn credentials_do_not_follow_a_redirect_to_another_origin() {
    let origin = Origin::start().await;
    let other = Origin::start().await;
    other.route("/keys", |_, _| Reply::ok("moved keys"));
    let target = other.url("/keys");
    origin.route("/keys", move |_, _| {
        Reply::default().status(302).header("location", &target)
    });
    let cache = bytes_cache();
    let url = origin.url("/keys");
    let registration = Registration::bytes()
        .header(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer for-origin-only"),
        )
        .header(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        );
    cache.register(&url, registration).await.unwrap();
    assert_eq!(&cache.get(&url).await.unwrap()[..], b"moved keys");
    assert_eq!(
        origin.last_request("/keys")["authorization"],
        "Bearer for-origin-only"
    );
    let redirected = other.last_request("/keys");
    assert!(redirected.get("authorization").is_none(), "{redirected:?}");
    assert_eq!(
        redirected["accept"], "application/json",
        "other headers follow"
    );
}

#[tokio::test(start_paused = true)]
async fn a_register_call_dropped_while_waiting_still_leaves_the_url_kept_fresh() {
    let origin = Origin::start().await;
    origin.route("/slow-first", |_, _| {
        Reply::ok("v")
            .header("cache-control", "max-age=60")
            .delay(Duration::from_millis(100))
    });
    let cache = bytes_cache();
    let url = origin.url("/slow-first");
    let registering = cache.register(&url, Registration::bytes().wait_for_first_fetch(true));
    assert!(
        tokio::time::timeout(Duration::from_millis(10), registering)
            .await
            .is_err()
    );
    assert!(cache.is_registered(&url));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        &cache.get(&url).await.unwrap()[..],
        b"v",
        "the fetch went on"
    );
    tokio::time::sleep(Duration::from_secs(61)).await;
    until_count(&origin, "/slow-first", 2).await;
}

#[tokio::test(start_paused = true)]
async fn an_interval_too_long_for_the_clock_is_a_century() {
    let origin = Origin::start().await;
    origin.route("/forever", |_, _| Reply::ok("f"));
    let cache = bytes_cache();
    let url = origin.url("/forever");
    let registration = Registration::bytes()
        .fixed_interval(Duration::MAX)
        .wait_for_first_fetch(true);
    cache.register(&url, registration).await.unwrap();
    assert!(status(&cache, &url).next_refresh_in > Duration::from_secs(50 * 365 * 24 * 3600));
    assert_eq!(&cache.get(&url).await.unwrap()[..], b"f");
}

/// The test client, counting its requests and marking them with
/// `X-Refresh-Client: <name>` so that the origin can tell who sent them.
#[derive(Clone)]
struct MarkingClient {
    name: &'static str,
    calls: Arc<AtomicUsize>,
    client: support::Upstream,
}

impl MarkingClient {
    fn new(name: &'static str) -> Self {
        MarkingClient {
            name,
            calls: Arc::default(),
            client: support::client(),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl tower::Service<http::Request<Full<Bytes>>> for MarkingClient {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = hyper_util::client::legacy::ResponseFuture;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Full<Bytes>>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        request.headers_mut().insert(
            "x-refresh-client",
            http::HeaderValue::from_static(self.name),
        );
        self.client.request(request)
    }
}

#[tokio::test(start_paused = true)]
async fn the_builders_client_and_a_registrations_own_client_send_the_requests() {
    let origin = Origin::start().await;
    origin.route("/shared", |_, n| Reply::ok(&format!("shared {n}")));
    origin.route("/own", |_, n| Reply::ok(&format!("own {n}")));
    let (by_cache, by_registration) = (
        MarkingClient::new("cache"),
        MarkingClient::new("registration"),
    );
    let cache: RefreshCache<Bytes> = builder().client(by_cache.clone()).build().unwrap();
    let shared = origin.url("/shared");
    cache
        .register(&shared, Registration::bytes().wait_for_first_fetch(true))
        .await
        .unwrap();
    assert_eq!(&cache.get(&shared).await.unwrap()[..], b"shared 1");
    assert_eq!(origin.last_request("/shared")["x-refresh-client"], "cache");
    assert_eq!(by_cache.calls(), 1);

    let own = origin.url("/own");
    let registration = Registration::bytes()
        .client(by_registration.clone())
        .wait_for_first_fetch(true);
    cache.register(&own, registration).await.unwrap();
    assert_eq!(&cache.get(&own).await.unwrap()[..], b"own 1");
    assert_eq!(
        origin.last_request("/own")["x-refresh-client"],
        "registration"
    );
    assert_eq!(by_registration.calls(), 1);
    assert_eq!(by_cache.calls(), 1, "not the cache's client");

    // Refreshes, background and on demand, go through the same clients.
    assert_eq!(&cache.refresh(&own).await.unwrap()[..], b"own 2");
    tokio::time::sleep(MIN + Duration::from_secs(1)).await;
    until_count(&origin, "/shared", 2).await;
    until_count(&origin, "/own", 3).await;
    assert_eq!(by_cache.calls(), 2);
    assert_eq!(by_registration.calls(), 3);
    assert_eq!(origin.last_request("/shared")["x-refresh-client"], "cache");
}

#[tokio::test(start_paused = true)]
async fn by_default_refreshes_are_15_minutes_to_30_days_apart() {
    const FIFTEEN_MINUTES: Duration = Duration::from_secs(15 * 60);
    const THIRTY_DAYS: Duration = Duration::from_secs(30 * 24 * 3600);
    let origin = Origin::start().await;
    origin.route("/second", |_, _| {
        Reply::ok("s").header("cache-control", "max-age=1")
    });
    origin.route("/year", |_, _| {
        Reply::ok("y").header("cache-control", "max-age=31536000")
    });
    origin.route("/hour", |_, _| {
        Reply::ok("h").header("cache-control", "max-age=3600")
    });
    let cache: RefreshCache<Bytes> = RefreshCache::builder().build().unwrap();
    for path in ["/second", "/year", "/hour"] {
        let registration = Registration::bytes().wait_for_first_fetch(true);
        cache
            .register(&origin.url(path), registration)
            .await
            .unwrap();
    }
    let next = |path| status(&cache, &origin.url(path)).next_refresh_in;
    assert_eq!(next("/second"), FIFTEEN_MINUTES);
    assert_eq!(next("/year"), THIRTY_DAYS);
    assert_eq!(
        next("/hour"),
        Duration::from_secs(3600),
        "within: as it says"
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(origin.count("/second"), 1, "not after max-age's 1 s");
    tokio::time::sleep(FIFTEEN_MINUTES - Duration::from_secs(3)).await;
    assert_eq!(origin.count("/second"), 1, "not before 15 minutes");
    tokio::time::sleep(Duration::from_secs(2)).await;
    until_count(&origin, "/second", 2).await;
    tokio::time::sleep(THIRTY_DAYS - FIFTEEN_MINUTES - Duration::from_secs(60)).await;
    assert_eq!(origin.count("/year"), 1, "not before 30 days");
    tokio::time::sleep(Duration::from_secs(61)).await;
    until_count(&origin, "/year", 2).await;
}

#[tokio::test(start_paused = true)]
async fn by_default_a_body_of_10_mib_is_fetched_and_one_byte_more_is_a_failed_fetch() {
    const TEN_MIB: usize = 10 * 1024 * 1024;
    let origin = Origin::start().await;
    let at_limit = Bytes::from(vec![b'x'; TEN_MIB]);
    let over = "x".repeat(TEN_MIB + 1);
    origin.route("/at-limit", move |_, _| Reply {
        status: 200,
        body: at_limit.clone(),
        ..Reply::default()
    });
    origin.route("/over", move |_, _| Reply::ok(&over));
    let cache: RefreshCache<Bytes> = RefreshCache::builder().build().unwrap();
    let fits = origin.url("/at-limit");
    cache
        .register(&fits, Registration::bytes().wait_for_first_fetch(true))
        .await
        .unwrap();
    assert_eq!(cache.get(&fits).await.unwrap().len(), TEN_MIB);
    let too_big = origin.url("/over");
    let registered = cache
        .register(&too_big, Registration::bytes().wait_for_first_fetch(true))
        .await;
    assert!(
        matches!(registered, Err(RefreshError::BodyTooLarge { limit, .. }) if limit == TEN_MIB),
        "{registered:?}"
    );
    let s = status(&cache, &too_big);
    assert!(!s.has_value && s.consecutive_failures == 1);
}

#[tokio::test(start_paused = true)]
async fn text_keeps_a_utf8_body_and_an_invalid_one_is_a_failed_refresh_that_says_so() {
    let origin = Origin::start().await;
    origin.route("/pem", |_, n| match n {
        1 => Reply::ok("-----BEGIN PUBLIC KEY-----"),
        _ => Reply {
            body: Bytes::from_static(b"\xff\xfe not text"),
            ..Reply::ok("")
        },
    });
    let cache: RefreshCache<String> = builder().build().unwrap();
    let url = origin.url("/pem");
    cache
        .register(&url, Registration::text().wait_for_first_fetch(true))
        .await
        .unwrap();
    assert_eq!(
        *cache.get(&url).await.unwrap(),
        "-----BEGIN PUBLIC KEY-----"
    );

    let err = cache.refresh(&url).await.unwrap_err();
    let RefreshError::Transform { source, .. } = &err else {
        panic!("not a transform error: {err}");
    };
    assert!(source.is::<corral_http::refresh::NotUtf8>(), "{source}");
    assert!(
        err.to_string().ends_with(
            "the body is not UTF-8 text: invalid utf-8 sequence of 1 bytes from index 0"
        ),
        "{err}"
    );
    assert_eq!(
        *cache.get(&url).await.unwrap(),
        "-----BEGIN PUBLIC KEY-----",
        "the last good text is kept"
    );
}

#[tokio::test(start_paused = true)]
async fn a_transform_closure_needs_no_type_annotation() {
    let origin = Origin::start().await;
    origin.route("/version", |_, _| {
        Reply::ok(" 42\n").header("x-release", "stable")
    });
    // The argument's type is inferred: the closure uses the response's methods
    // without naming `http::Response` or `bytes::Bytes`.
    let registration = Registration::with_transform(|response| async move {
        let release = response.headers()["x-release"].to_str()?.to_owned();
        let version: u32 = std::str::from_utf8(response.body())?.trim().parse()?;
        Ok::<_, corral_http::BoxError>((release, version))
    });
    let cache: RefreshCache<(String, u32)> = builder().build().unwrap();
    let url = origin.url("/version");
    cache
        .register(&url, registration.wait_for_first_fetch(true))
        .await
        .unwrap();
    assert_eq!(*cache.get(&url).await.unwrap(), ("stable".to_owned(), 42));
}
