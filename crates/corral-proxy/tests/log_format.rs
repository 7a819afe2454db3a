//! The process's log format changed at runtime (a reload's `log-format`): an event in
//! a span opened under the other format is written, not a panic. (Its own test
//! binary: it installs the process's global logger.)

use corral_proxy::config::LogFormat;
use corral_proxy::telemetry;

#[test]
fn an_event_in_a_span_opened_before_the_log_format_changed_is_written() {
    telemetry::init_logging(LogFormat::Text);
    // Opened before the change, as a long-lived HTTP/2 connection's span is.
    let text_span = tracing::warn_span!("connection", peer = "client");
    let _in_text = text_span.enter();
    tracing::warn!("as text");
    telemetry::set_log_format(LogFormat::Json);
    let logged = std::panic::catch_unwind(|| tracing::warn!("as JSON, in a text span"));
    assert!(logged.is_ok(), "JSON in a span opened under text");
    let json_span = tracing::warn_span!("load", key = "k");
    let _in_json = json_span.enter();
    telemetry::set_log_format(LogFormat::Text);
    let logged = std::panic::catch_unwind(|| tracing::warn!("as text, in a JSON span"));
    assert!(logged.is_ok(), "text in a span opened under JSON");
}
