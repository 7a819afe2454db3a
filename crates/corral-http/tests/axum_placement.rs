//! The server placement: `HttpCacheLayer` in front of an axum app on a real port.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use bytes::Bytes;
use corral_http::{HttpCache, Policy};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_requests_to_a_slow_handler_run_it_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = Router::new()
        .route(
            "/report",
            get(move || {
                let calls = counted.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    "the report"
                }
            }),
        )
        .layer(
            HttpCache::builder()
                .policy(Policy::fixed(
                    Duration::from_secs(60),
                    Duration::from_secs(60),
                ))
                .layer()
                .unwrap(),
        );
    let base = serve(app).await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let requests: Vec<_> = (0..200)
        .map(|_| {
            let (client, url) = (client.clone(), format!("{base}/report"));
            tokio::spawn(async move {
                let response = client.get(url.parse().unwrap()).await.unwrap();
                let status = response.status();
                (
                    status,
                    response.into_body().collect().await.unwrap().to_bytes(),
                )
            })
        })
        .collect();
    for request in requests {
        let (status, body) = request.await.unwrap();
        assert_eq!((status.as_u16(), &body[..]), (200, &b"the report"[..]));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_post_to_the_app_invalidates_the_cached_get() {
    let version = Arc::new(AtomicUsize::new(1));
    let (read, write) = (version.clone(), version.clone());
    let app = Router::new()
        .route(
            "/counter",
            get(move || {
                let v = read.load(Ordering::SeqCst);
                async move { ([("cache-control", "max-age=600")], format!("v{v}")) }
            })
            .post(move || {
                write.fetch_add(1, Ordering::SeqCst);
                async { "bumped" }
            }),
        )
        .route("/other", post(|| async { "ok" }))
        .layer(HttpCache::builder().layer().unwrap());
    let base = serve(app).await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let get_text = |url: String| {
        let client = client.clone();
        async move {
            let response = client.get(url.parse().unwrap()).await.unwrap();
            String::from_utf8(
                response
                    .into_body()
                    .collect()
                    .await
                    .unwrap()
                    .to_bytes()
                    .to_vec(),
            )
            .unwrap()
        }
    };
    assert_eq!(get_text(format!("{base}/counter")).await, "v1");
    version.fetch_add(1, Ordering::SeqCst);
    assert_eq!(get_text(format!("{base}/counter")).await, "v1", "cached");
    let post = http::Request::post(format!("{base}/counter"))
        .body(Full::default())
        .unwrap();
    assert_eq!(client.request(post).await.unwrap().status(), 200);
    assert_eq!(
        get_text(format!("{base}/counter")).await,
        "v3",
        "the POST invalidated it"
    );
}

/// An app that greets the user its session cookie names, slowly, and sets no
/// `Cache-Control` (as apps behind a fixed-lifetime cache do).
fn personal_app(calls: Arc<AtomicUsize>, policy: Policy, key_by_cookie: bool) -> Router {
    let mut cache = HttpCache::builder().policy(policy);
    if key_by_cookie {
        cache = cache.key(|parts| {
            let cookie = parts.headers.get("cookie")?.to_str().ok()?;
            Some(format!("{} {cookie}", corral_http::default_key(parts)?))
        });
    }
    Router::new()
        .route(
            "/me",
            get(move |headers: http::HeaderMap| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let user = headers
                        .get("cookie")
                        .and_then(|c| c.to_str().ok())
                        .unwrap_or("session=anonymous")
                        .to_owned();
                    format!("hello {user}")
                }
            }),
        )
        .layer(cache.layer().unwrap())
}

/// Twenty users at once, each asking twice; what each got.
async fn twenty_users(base: &str) -> Vec<(String, String)> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let users: Vec<_> = (0..20)
        .map(|user| {
            let (client, url) = (client.clone(), format!("{base}/me"));
            tokio::spawn(async move {
                let mut pages = Vec::new();
                for _ in 0..2 {
                    let request = http::Request::get(&url)
                        .header("cookie", format!("session={user}"))
                        .body(Full::default())
                        .unwrap();
                    let response = client.request(request).await.unwrap();
                    let body = response.into_body().collect().await.unwrap().to_bytes();
                    pages.push((
                        format!("hello session={user}"),
                        String::from_utf8(body.to_vec()).unwrap(),
                    ));
                }
                pages
            })
        })
        .collect();
    let mut pages = Vec::new();
    for user in users {
        pages.extend(user.await.unwrap());
    }
    pages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_a_fixed_lifetime_users_with_cookies_never_get_one_another_s_page() {
    let calls = Arc::new(AtomicUsize::new(0));
    let policy = Policy::fixed(Duration::from_secs(60), Duration::from_secs(60));
    let base = serve(personal_app(calls.clone(), policy, false)).await;
    for (expected, got) in twenty_users(&base).await {
        assert_eq!(got, expected);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        40,
        "each request with a cookie went to the app alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_cookie_in_the_key_each_user_s_page_is_shared_with_that_user_only() {
    let calls = Arc::new(AtomicUsize::new(0));
    let policy = Policy::fixed(Duration::from_secs(60), Duration::from_secs(60))
        .credentials(corral_http::Credentials::Share);
    let base = serve(personal_app(calls.clone(), policy, true)).await;
    for (expected, got) in twenty_users(&base).await {
        assert_eq!(got, expected);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 20, "one call per user");
}
