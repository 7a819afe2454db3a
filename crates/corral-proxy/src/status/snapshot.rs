//! [`Snapshot`]: the numbers of `GET /status.json`, read from the cache's counters,
//! the server's [`Traffic`], the tiers' configured sizes and the pool's members.

use std::time::Instant;

use corral_http::pool::Pool;
use corral_http::{CacheHandle, HttpStats};
use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::hot_keys::HALVING;
use crate::traffic::Traffic;

/// How many of the hottest keys the page shows.
const HOT_KEYS_SHOWN: usize = 15;

/// The tiers' configured sizes: what the page shows their use against.
#[derive(Debug, Clone)]
pub(crate) struct Tiers {
    memory_bytes: u64,
    disk_bytes: Option<u64>,
    redis: bool,
}

impl Tiers {
    /// The tiers `config` sets up.
    pub(crate) fn of(config: &Config) -> Tiers {
        Tiers {
            memory_bytes: config.max_bytes.0,
            disk_bytes: config.disk.as_ref().map(|_| config.disk_size.0),
            redis: config.redis_url.is_some(),
        }
    }
}

/// Where the status page's numbers come from.
///
/// In its JSON, a hit (`hit_ratio`) is a response answered from the store: fresh,
/// stale, or revalidated with a `304`; the ratio is over every response the cache
/// answered, misses and bypasses (requests it may not store) included. `errors` maps
/// each kind of error to its count, so a new kind is a new entry.
pub(crate) struct Snapshot<'a> {
    pub cache: &'a CacheHandle,
    pub pool: Option<&'a Pool>,
    pub traffic: &'a Traffic,
    pub tiers: &'a Tiers,
    pub started: Instant,
    pub mode: &'a str,
}

impl Snapshot<'_> {
    /// The numbers now, as JSON.
    pub(crate) fn to_json(&self) -> Value {
        let s = self.cache.stats();
        let e = &s.engine;
        let classes = self.traffic.responses();
        let served = s.hits + s.stale + s.revalidated;
        let answered = served + s.misses + s.bypassed;
        let (hot, hot_total) = self.traffic.hot_keys().top(HOT_KEYS_SHOWN);
        json!({
            "mode": self.mode,
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "requests": classes.iter().sum::<u64>(),
            "responses_by_class": {
                "1xx": classes[0], "2xx": classes[1], "3xx": classes[2],
                "4xx": classes[3], "5xx": classes[4],
            },
            "cache": {
                "hit": s.hits,
                "stale": s.stale,
                "revalidated": s.revalidated,
                "miss": s.misses,
                "bypass": s.bypassed,
            },
            "hit_ratio": (answered > 0).then(|| served as f64 / answered as f64),
            "origin_fetches": e.loads_ok + e.load_errors + e.load_panics + e.load_timeouts,
            "collapsed_requests": e.coalesced,
            "fetches_in_flight": e.loads_in_flight,
            "stale_serves": s.stale,
            "errors": self.errors(&s, classes),
            "tiers": self.tiers(&s),
            "pool": self.pool.map(|pool| {
                pool.peers()
                    .into_iter()
                    .map(|p| json!({ "url": p.url, "self": p.is_self, "healthy": p.healthy }))
                    .collect::<Vec<_>>()
            }),
            "hot_keys": {
                "halving_seconds": HALVING.as_secs(),
                "counted": hot_total,
                "skipped": self.traffic.hot_keys().skipped(),
                "keys": hot.into_iter()
                    .map(|k| json!({ "key": k.key, "count": k.count }))
                    .collect::<Vec<_>>(),
            },
        })
    }

    /// Errors by kind: `{kind: count}`.
    fn errors(&self, s: &HttpStats, classes: [u64; 5]) -> Value {
        let e = &s.engine;
        let mut errors = Map::new();
        let mut add = |kind: &str, count: u64| {
            errors.insert(kind.to_owned(), json!(count));
        };
        for (cause, count) in s.origin_failures {
            add(&format!("origin_{cause}"), count);
        }
        add("load_panic", e.load_panics);
        add("client_error_4xx", classes[3]);
        add("server_error_5xx", classes[4]);
        if self.tiers.redis {
            add("redis_error", e.remote_errors);
            add("redis_undecodable", e.remote_decode_errors);
        }
        if let Some(disk) = &e.disk {
            add("disk_fault", disk.faults);
            add("disk_corrupt", disk.corrupt);
        }
        Value::Object(errors)
    }

    /// The tiers' sizes and health: `ok`, or what is wrong.
    fn tiers(&self, s: &HttpStats) -> Value {
        let e = &s.engine;
        let disk = e.disk.as_ref().map(|d| {
            let health = if d.off {
                "off after an I/O fault"
            } else if d.recovery_time.is_none() {
                "indexing its files"
            } else {
                "ok"
            };
            json!({
                "health": health,
                "entries": d.entries,
                "bytes": d.bytes,
                "max_bytes": self.tiers.disk_bytes,
                "hits": d.hits,
            })
        });
        let redis = self.tiers.redis.then(|| {
            json!({
                "health": if e.remote_breaker_open { "breaker open: skipped" } else { "ok" },
                "hits": e.remote_hits,
                "waits": e.remote_waits,
                "errors": e.remote_errors,
            })
        });
        json!({
            "memory": {
                "health": "ok",
                "entries": e.entries,
                "bytes": e.weighted_bytes,
                "max_bytes": self.tiers.memory_bytes,
                "evictions": e.evictions,
            },
            "disk": disk,
            "redis": redis,
        })
    }
}
