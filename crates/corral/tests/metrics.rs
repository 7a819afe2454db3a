//! The counters reach the `metrics` facade as well as `stats()`.

use std::time::Duration;

use corral::Cache;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[tokio::test]
async fn lookups_and_loads_are_emitted_with_their_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let cache: Cache<String> = metrics::with_local_recorder(&recorder, || {
        Cache::builder()
            .name("users")
            .fresh_for(Duration::from_secs(60))
            .build()
            .unwrap()
    });
    cache
        .get_or_load("a", || async { Ok::<_, std::io::Error>("1".to_string()) })
        .await
        .unwrap();
    cache
        .get_or_load("a", || async { Ok::<_, std::io::Error>("2".to_string()) })
        .await
        .unwrap();
    let _ = cache
        .get_or_load("b", || async {
            Err::<String, _>(std::io::Error::other("no"))
        })
        .await;

    cache.run_pending_tasks(); // size gauges are as of the memory tier's last maintenance
    let snapshot = snapshotter.snapshot().into_vec();
    let value = |name: &str, label: Option<(&str, &str)>| {
        snapshot
            .iter()
            .find(|(key, _, _, _)| {
                let key = key.key();
                key.name() == name
                    && key
                        .labels()
                        .any(|l| l.key() == "cache" && l.value() == "users")
                    && label
                        .is_none_or(|(k, v)| key.labels().any(|l| l.key() == k && l.value() == v))
            })
            .map(|(_, _, _, value)| value)
    };
    assert_eq!(
        value("corral_lookups_total", Some(("outcome", "hit"))),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        value("corral_lookups_total", Some(("outcome", "miss"))),
        Some(&DebugValue::Counter(2))
    );
    assert_eq!(
        value("corral_loads_total", Some(("result", "ok"))),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        value("corral_loads_total", Some(("result", "error"))),
        Some(&DebugValue::Counter(1))
    );
    match value("corral_load_duration_seconds", None) {
        Some(DebugValue::Histogram(samples)) => assert_eq!(samples.len(), 2),
        other => panic!("expected a histogram, got {other:?}"),
    }
    assert_eq!(
        value("corral_entries", None),
        Some(&DebugValue::Gauge(1.0.into()))
    );
}
