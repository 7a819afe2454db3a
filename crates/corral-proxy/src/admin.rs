//! The admin API, on its own listener (default `127.0.0.1:9090`):
//!
//! | route | answers |
//! |---|---|
//! | `GET /` | the live status page: rates, hit ratio, errors, tiers, pool, hottest keys (`status.rs`) |
//! | `GET /status.json` | the numbers that page polls every second |
//! | `GET /healthz` | `200 ok` while the process runs |
//! | `GET /readyz` | `200 ready`, or `503` once shutting down |
//! | `GET /metrics` | Prometheus text: the cache's and the proxy's metrics |
//! | `GET /stats` | a JSON summary (responses by cache status, loads, entries, bytes) |
//! | `POST /purge?url=U` | removes the stored responses (every variant) of URL `U` |
//! | `POST /purge?prefix=P` | removes every stored response whose URL starts with `P` |
//! | `POST /purge?tag=T[&tag=T2…]` | removes every stored response the origin tagged `T` (`Surrogate-Key`, `Cache-Tag`, `Cache-Groups`) |
//! | `…&soft=true` | with any purge: the responses turn stale instead (revalidated, served stale meanwhile) |
//! | `GET /peers[?url=U]` | the pool's members and their health (and `U`'s owner) |
//! | `PUT /peers` | replaces the pool's members: a JSON array of base URLs |
//! | `POST /reload` | reads the configuration again and runs it if it is valid (see `live.rs`): `{"reloaded": true, "needs_restart": [...]}`, or a `400` with the error and nothing changed |
//!
//! `U` and `P` are the URLs clients use (a reverse proxy's own, which it maps to its
//! origin's as it does requests), percent-encoded; the answer says how many responses
//! this server held (`purged`). See `purge.rs`.
//!
//! A request that would act (a `POST` or `PUT`) is refused (`403`) when a browser sent
//! it for a page of another site (its `Origin` is not this API, or its
//! `Sec-Fetch-Site` is not `same-origin`): a page on any site can send one to a
//! loopback address. With an `admin-token` (required when the API is not
//! on loopback), every route but the two health checks needs `Authorization: Bearer
//! <token>`. Without one, those
//! routes answer only requests addressed to an IP address or `localhost` (a `Host`
//! of any other name is a web page's request through DNS rebinding: `403`). The
//! status page (`/`, its `/status.css` and `/status.js`, and `/status.json`) is
//! guarded the same way: with a token, a browser must send the header too (see
//! `status.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use corral_http::pool::Pool;

use crate::live::{Live, ReloadError};
use crate::purge::{BadPurge, Purge};
use crate::status::{self, Snapshot, Tiers};
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// What the admin API reads and acts on.
pub(crate) struct Admin {
    /// The running configuration, the cache and the pool.
    pub live: Arc<Live>,
    pub ready: Arc<AtomicBool>,
    pub started: Instant,
    /// The tiers' configured sizes.
    pub tiers: Tiers,
}

pub(crate) fn router(admin: Arc<Admin>) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/stats", get(stats))
        .route("/purge", post(purge))
        .route("/peers", get(peers).put(set_peers))
        .route("/reload", post(reload))
        .route("/status.json", get(status_json))
        .merge(status::pages())
        .route_layer(middleware::from_fn_with_state(admin.clone(), authorize));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .merge(guarded)
        .with_state(admin)
}

async fn authorize(State(admin): State<Arc<Admin>>, request: Request, next: Next) -> Response {
    if sent_by_another_site(&request) {
        return (
            StatusCode::FORBIDDEN,
            "the admin API does not act for another site's page (its Origin is not this API)\n",
        )
            .into_response();
    }
    let running = admin.live.current();
    let Some(token) = running.config.admin_token.as_deref() else {
        if !addressed_directly(request.headers()) {
            return (
                StatusCode::FORBIDDEN,
                "without an admin-token, the admin API answers only requests to an IP address or localhost\n",
            )
                .into_response();
        }
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(presented) if bool::from(presented.as_bytes().ct_eq(token.as_bytes())) => {
            next.run(request).await
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required\n",
        )
            .into_response(),
    }
}

/// Whether a request that would act (not a `GET` or `HEAD`) was sent by a page of
/// another site: a browser names the page's origin in `Origin` on such a request (and
/// says where it came from in `Sec-Fetch-Site`), and a web page can send one to a
/// loopback address without any header of its own.
fn sent_by_another_site(request: &Request) -> bool {
    if matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) {
        return false;
    }
    // A browser that says so (Fetch Metadata), even without an `Origin`.
    if request
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|site| site != "same-origin" && site != "none")
    {
        return true;
    }
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        return false;
    };
    let origin = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.parse::<axum::http::Uri>().ok());
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|host| host.to_str().ok());
    match (origin.as_ref().and_then(|o| o.authority()), host) {
        (Some(origin), Some(host)) => !origin.as_str().eq_ignore_ascii_case(host),
        // `Origin: null` (a sandboxed or file page), or no Host to compare with.
        _ => true,
    }
}

/// Whether a request names the admin API by address (or `localhost`), as its own
/// tools do, rather than by a name a browser was pointed at.
fn addressed_directly(headers: &axum::http::HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

async fn ready(State(admin): State<Arc<Admin>>) -> Response {
    if admin.ready.load(Ordering::Acquire) {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    }
}

async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::prometheus().render(),
    )
        .into_response()
}

async fn stats(State(admin): State<Arc<Admin>>) -> Response {
    let s = admin.live.cache().stats();
    let body = serde_json::json!({
        "mode": admin.live.current().config.describe(),
        "uptime_seconds": admin.started.elapsed().as_secs(),
        "responses": {
            "hit": s.hits,
            "miss": s.misses,
            "stale": s.stale,
            "revalidated": s.revalidated,
            "bypass": s.bypassed,
        },
        "upstream_fetches": s.engine.loads_ok + s.engine.load_errors + s.engine.load_panics + s.engine.load_timeouts,
        "collapsed_requests": s.engine.coalesced,
        "fetch_errors": s.engine.load_errors + s.engine.load_timeouts,
        "entries": s.engine.entries,
        "bytes": s.engine.weighted_bytes,
        "evictions": s.engine.evictions,
        "disk": s.engine.disk.as_ref().map(|d| serde_json::json!({
            "hits": d.hits,
            "writes": d.writes,
            "write_bytes": d.write_bytes,
            "writes_skipped": d.writes_skipped,
            "evictions": d.evictions,
            "corrupt": d.corrupt,
            "faults": d.faults,
            "entries": d.entries,
            "bytes": d.bytes,
            "off": d.off,
            "recovered": d.recovered,
            "recovery_seconds": d.recovery_time.map(|t| t.as_secs_f64()),
        })),
        "redis": {
            "hits": s.engine.remote_hits,
            "waits": s.engine.remote_waits,
            "errors": s.engine.remote_errors,
            "breaker_open": s.engine.remote_breaker_open,
        },
    });
    axum::Json(body).into_response()
}

async fn status_json(State(admin): State<Arc<Admin>>) -> Response {
    let snapshot = Snapshot {
        cache: &admin.live.cache(),
        pool: admin.live.pool(),
        traffic: &admin.live.traffic,
        tiers: &admin.tiers,
        started: admin.started,
        mode: &admin.live.current().config.describe(),
    };
    status::asset("application/json", axum::Json(snapshot.to_json()))
}

async fn purge(State(admin): State<Arc<Admin>>, query: Query<Vec<(String, String)>>) -> Response {
    let purge = match Purge::parse(&query) {
        Ok(purge) => purge,
        Err(BadPurge(message)) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let keys = admin.live.current().proxy.mode();
    let (status, answer) = purge
        .run(&admin.live.cache(), &keys, admin.live.pool())
        .await;
    (status, axum::Json(answer)).into_response()
}

#[derive(Deserialize)]
struct Owner {
    url: Option<String>,
}

fn no_pool() -> Response {
    (
        StatusCode::NOT_FOUND,
        "this proxy has no pool of peers (set `peer-secret`)\n",
    )
        .into_response()
}

fn members(pool: &Pool) -> serde_json::Value {
    pool.peers()
        .into_iter()
        .map(|p| serde_json::json!({ "url": p.url, "self": p.is_self, "healthy": p.healthy }))
        .collect()
}

async fn peers(State(admin): State<Arc<Admin>>, Query(owner): Query<Owner>) -> Response {
    let Some(pool) = admin.live.pool() else {
        return no_pool();
    };
    let mut body = serde_json::json!({ "peers": members(pool) });
    if let Some(url) = owner.url {
        body["owner"] = serde_json::json!(pool.owner(&url));
    }
    axum::Json(body).into_response()
}

async fn set_peers(State(admin): State<Arc<Admin>>, body: axum::body::Bytes) -> Response {
    let Some(pool) = admin.live.pool() else {
        return no_pool();
    };
    let list: Vec<String> = match serde_json::from_slice(&body) {
        Ok(list) => list,
        Err(error) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("the body must be a JSON array of base URLs: {error}\n"),
            )
                .into_response();
        }
    };
    match pool.set_peers(&list) {
        Ok(()) => axum::Json(serde_json::json!({ "peers": members(pool) })).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
    }
}

async fn reload(State(admin): State<Arc<Admin>>) -> Response {
    match admin.live.reload().await {
        Ok(reloaded) => axum::Json(serde_json::json!({
            "reloaded": true,
            "needs_restart": reloaded.needs_restart,
        }))
        .into_response(),
        Err(error) => {
            tracing::error!(%error, "reload refused; the running configuration is unchanged");
            let status = match error {
                ReloadError::NoSource => StatusCode::NOT_FOUND,
                ReloadError::Refused(_) => StatusCode::BAD_REQUEST,
            };
            let body = serde_json::json!({ "reloaded": false, "error": error.to_string() });
            (status, axum::Json(body)).into_response()
        }
    }
}
