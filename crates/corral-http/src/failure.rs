//! Why a request to the origin got no response ([`OriginFailure`]) and the error that
//! carries it ([`OriginError`]): the one line a `502` or `504` says, the WARN line an
//! operator reads (once per failed request to the origin, with its URL), and the
//! cause `corral_http_origin_errors_total` counts it under.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{StatusCode, Uri};

use crate::body::{BoxError, RequestBodyError};
use crate::framing::UnaskedUpgrade;
use crate::state::State;

/// The labels of the origin's own failures ([`OriginFailure::label`], a forbidden
/// target aside), in the order [`HttpStats::origin_failures`](crate::HttpStats) counts
/// them.
pub const ORIGIN_FAILURES: [&str; 9] = [
    "dns",
    "refused",
    "connect_timeout",
    "tls",
    "fetch_timeout",
    "reset",
    "closed",
    "invalid",
    "other",
];

/// Why a request to the origin got no (complete) response.
///
/// Its `Display` is one line, the body of the `502` or `504` a client gets, so it
/// holds only what a client may be told: the origin's name when the upstream service
/// gave one (a forward proxy names the host its client asked for; a reverse proxy says
/// "the origin"), never the address a name resolved to, and never the text of an error
/// the classification does not know (that goes to the log).
///
/// ```
/// use corral_http::OriginFailure;
///
/// let refused = OriginFailure::Refused { origin: Some("127.0.0.1:1".into()) };
/// assert_eq!(refused.to_string(), "connection refused by 127.0.0.1:1");
/// assert_eq!((refused.label(), refused.status().as_u16()), ("refused", 502));
/// let late = OriginFailure::FetchTimeout { timeout: Some(std::time::Duration::from_secs(30)) };
/// assert_eq!(late.to_string(), "no response within fetch-timeout (30s)");
/// assert_eq!(late.status().as_u16(), 504);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OriginFailure {
    /// The origin's name does not resolve.
    Dns {
        /// The name (`None`: not to be told).
        origin: Option<String>,
        /// Why, as the resolver said it.
        reason: String,
    },
    /// The connection was refused: nothing listens at the origin's address.
    Refused {
        /// The origin as `host:port` (`None`: not to be told).
        origin: Option<String>,
    },
    /// No connection within the connect timeout.
    ConnectTimeout {
        /// The origin as `host:port` (`None`: not to be told).
        origin: Option<String>,
        /// The timeout (`connect-timeout`), if known.
        timeout: Option<Duration>,
    },
    /// The TLS handshake failed (the origin's certificate is not trusted, say).
    Tls {
        /// The name the certificate was checked for (`None`: not to be told).
        origin: Option<String>,
        /// Why, as the TLS library said it (`invalid peer certificate: UnknownIssuer`).
        reason: String,
    },
    /// No response within the fetch timeout.
    FetchTimeout {
        /// The timeout (`fetch-timeout`), if known.
        timeout: Option<Duration>,
    },
    /// The origin reset the connection.
    Reset,
    /// The origin closed the connection before its response was complete.
    Closed,
    /// The origin's response is not one that can be forwarded: not HTTP, ill-formed,
    /// or switching protocols unasked.
    Invalid,
    /// The upstream service would not connect there (an allow-list forbids it): the
    /// client gets a `403` with the reason, and it is not counted as an origin failure.
    Forbidden {
        /// Why.
        reason: String,
    },
    /// Any other failure: the details are in the log only.
    Other,
}

impl OriginFailure {
    /// Its label in metrics and logs: `dns`, `refused`, `connect_timeout`, `tls`,
    /// `fetch_timeout`, `reset`, `closed`, `invalid`, `forbidden` or `other`.
    pub fn label(&self) -> &'static str {
        match self {
            OriginFailure::Dns { .. } => "dns",
            OriginFailure::Refused { .. } => "refused",
            OriginFailure::ConnectTimeout { .. } => "connect_timeout",
            OriginFailure::Tls { .. } => "tls",
            OriginFailure::FetchTimeout { .. } => "fetch_timeout",
            OriginFailure::Reset => "reset",
            OriginFailure::Closed => "closed",
            OriginFailure::Invalid => "invalid",
            OriginFailure::Forbidden { .. } => "forbidden",
            OriginFailure::Other => "other",
        }
    }

    /// The status of the response that reports it: `504` for a timeout, `403` for a
    /// forbidden target, else `502`.
    pub fn status(&self) -> StatusCode {
        match self {
            OriginFailure::ConnectTimeout { .. } | OriginFailure::FetchTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            OriginFailure::Forbidden { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// Whether the origin failed (rather than the upstream service refusing to try).
    /// Where it is counted in [`HttpStats::origin_failures`](crate::HttpStats), if it is
    /// the origin's failure.
    pub(crate) fn counted_at(&self) -> Option<usize> {
        ORIGIN_FAILURES
            .iter()
            .position(|label| *label == self.label())
    }

    fn is_origin_failure(&self) -> bool {
        !matches!(self, OriginFailure::Forbidden { .. })
    }

    /// The failure `error` reports: the [`OriginError`] in its chain of sources, else
    /// what its sources say (a timeout, a refused or reset connection, a TLS error, a
    /// response cut short), else [`OriginFailure::Other`]. Looks inside the I/O errors
    /// that wrap others (whose `source` skips what they wrap).
    pub fn of(error: &(dyn StdError + 'static)) -> OriginFailure {
        // Inside the client's connect error, a timeout is the connect timeout.
        #[cfg_attr(not(feature = "client"), allow(unused_mut))]
        let mut connecting = false;
        for error in chain(error) {
            if let Some(origin) = error.downcast_ref::<OriginError>() {
                return origin.failure.clone();
            }
            if let Some(corral::Error::Timeout(after)) = error.downcast_ref::<corral::Error>() {
                // The engine's load timeout is the fetch timeout.
                return OriginFailure::FetchTimeout {
                    timeout: Some(*after),
                };
            }
            if error.is::<tokio::time::error::Elapsed>()
                || error.is::<tower::timeout::error::Elapsed>()
            {
                return OriginFailure::FetchTimeout { timeout: None };
            }
            if error.is::<UnaskedUpgrade>() {
                return OriginFailure::Invalid;
            }
            #[cfg(feature = "client")]
            {
                if let Some(client) = error.downcast_ref::<hyper_util::client::legacy::Error>() {
                    connecting |= client.is_connect();
                }
                if let Some(tls) = error.downcast_ref::<rustls::Error>() {
                    return OriginFailure::Tls {
                        origin: None,
                        reason: tls.to_string(),
                    };
                }
                if let Some(hyper) = error.downcast_ref::<hyper::Error>() {
                    if hyper.is_incomplete_message() || hyper.is_closed() {
                        return OriginFailure::Closed;
                    }
                    if hyper.is_parse() || hyper.is_parse_status() {
                        return OriginFailure::Invalid;
                    }
                    if hyper.is_timeout() {
                        return OriginFailure::FetchTimeout { timeout: None };
                    }
                }
            }
            if let Some(io) = error.downcast_ref::<io::Error>() {
                match io.kind() {
                    io::ErrorKind::ConnectionRefused => {
                        return OriginFailure::Refused { origin: None };
                    }
                    io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe => return OriginFailure::Reset,
                    io::ErrorKind::UnexpectedEof => return OriginFailure::Closed,
                    io::ErrorKind::TimedOut if connecting => {
                        return OriginFailure::ConnectTimeout {
                            origin: None,
                            timeout: None,
                        };
                    }
                    io::ErrorKind::TimedOut => {
                        return OriginFailure::FetchTimeout { timeout: None };
                    }
                    _ => {}
                }
            }
        }
        OriginFailure::Other
    }
}

impl fmt::Display for OriginFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let named = |origin: &Option<String>| origin.clone().unwrap_or_else(|| "the origin".into());
        match self {
            OriginFailure::Dns {
                origin: Some(name),
                reason,
            } => write!(f, "cannot resolve {name}: {reason}"),
            OriginFailure::Dns {
                origin: None,
                reason,
            } => write!(f, "cannot resolve the origin's name: {reason}"),
            OriginFailure::Refused { origin } => {
                write!(f, "connection refused by {}", named(origin))
            }
            OriginFailure::ConnectTimeout {
                origin,
                timeout: Some(timeout),
            } => write!(
                f,
                "no connection to {} within connect-timeout ({timeout:?})",
                named(origin)
            ),
            OriginFailure::ConnectTimeout {
                origin,
                timeout: None,
            } => write!(f, "no connection to {} in time", named(origin)),
            OriginFailure::Tls { origin, reason } => {
                write!(f, "TLS handshake with {} failed: {reason}", named(origin))
            }
            OriginFailure::FetchTimeout {
                timeout: Some(timeout),
            } => write!(f, "no response within fetch-timeout ({timeout:?})"),
            OriginFailure::FetchTimeout { timeout: None } => f.write_str("no response in time"),
            OriginFailure::Reset => f.write_str("connection reset by the origin"),
            OriginFailure::Closed => {
                f.write_str("the origin closed the connection before a complete response")
            }
            OriginFailure::Invalid => f.write_str("the origin sent an invalid response"),
            OriginFailure::Forbidden { reason } => f.write_str(reason),
            OriginFailure::Other => f.write_str("upstream request failed"),
        }
    }
}

/// A failed request to the origin: why ([`OriginFailure`], its `Display`), the
/// addresses it was for (in the log only), and the error underneath (its `source`).
///
/// An upstream service that knows more than its errors say (the name that did not
/// resolve, the timeout that ran out) returns one; the cache classifies any other
/// error itself ([`OriginFailure::of`]).
///
/// ```
/// use corral_http::{OriginError, OriginFailure};
///
/// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// let error = OriginError::new(OriginFailure::Refused { origin: Some("origin.example:80".into()) }, refused)
///     .at(vec!["192.0.2.7:80".parse().unwrap()]);
/// assert_eq!(error.to_string(), "connection refused by origin.example:80");
/// assert_eq!(error.addresses(), ["192.0.2.7:80".parse().unwrap()]);
/// let boxed: corral_http::BoxError = error.into();
/// assert_eq!(OriginFailure::of(&*boxed).label(), "refused");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{failure}")]
pub struct OriginError {
    failure: OriginFailure,
    addresses: Vec<SocketAddr>,
    #[source]
    source: BoxError,
}

impl OriginError {
    /// `source`, which failed for this reason.
    pub fn new(failure: OriginFailure, source: impl Into<BoxError>) -> Self {
        OriginError {
            failure,
            addresses: Vec::new(),
            source: source.into(),
        }
    }

    /// The same, naming the addresses it was for (logged, never told to clients).
    pub fn at(mut self, addresses: Vec<SocketAddr>) -> Self {
        self.addresses = addresses;
        self
    }

    /// Why it failed.
    pub fn failure(&self) -> &OriginFailure {
        &self.failure
    }

    /// The addresses it was for (empty: not known).
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }

    /// The `OriginError` behind `error`, if any (looking through its sources, and
    /// inside the I/O errors that wrap others).
    pub fn find<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a OriginError> {
        find_cause(error)
    }
}

/// The first error of type `T` behind `error` (itself included): through its sources,
/// and inside the errors whose `source` skips what they wrap (an `io::Error`'s, an
/// engine's loader error). For an upstream that classifies its own failures.
///
/// ```
/// let refused = std::io::Error::new(std::io::ErrorKind::Other, std::fmt::Error);
/// assert!(corral_http::find_cause::<std::fmt::Error>(&refused).is_some());
/// ```
pub fn find_cause<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    chain(error).find_map(|error| error.downcast_ref::<T>())
}

/// `error` and its sources, looking inside the errors whose `source` skips what they
/// wrap (it is the wrapped error's own source): an `io::Error`, and the `Arc` of an
/// engine's loader error.
fn chain<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&error| {
        let wrapped = error
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .or_else(|| {
                error
                    .downcast_ref::<corral::Error>()
                    .and_then(corral::Error::loader_error)
            })
            .or_else(|| {
                error
                    .downcast_ref::<Arc<dyn StdError + Send + Sync>>()
                    .map(|shared| &**shared)
            });
        match wrapped {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => error.source(),
        }
    })
}

/// An error with its sources, on one line (for the log).
struct Described<'a>(&'a (dyn StdError + 'static));

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = String::new();
        for error in chain(self.0) {
            let text = error.to_string();
            // An error that displays its source too repeats it.
            if text.is_empty() || last.ends_with(&text) {
                continue;
            }
            if !last.is_empty() {
                f.write_str(": ")?;
            }
            f.write_str(&text)?;
            last = text;
        }
        Ok(())
    }
}

impl State {
    /// Reports a request to the origin (for `url`) that got no response: once, at
    /// WARN, with its cause, URL and addresses, counted by cause in
    /// `corral_http_origin_errors_total` (at DEBUG and uncounted when it is not the
    /// origin's failure: a forbidden target, a client's unreadable request body, a
    /// cache whose upstream reports its own failures). Returns it as an
    /// [`OriginError`], so the responses it makes say the same.
    pub(crate) fn report_failure(&self, url: &Uri, error: BoxError) -> BoxError {
        if RequestBodyError::find(&*error).is_some() {
            tracing::debug!(%url, error = %Described(&*error), "the request body could not be read");
            return error;
        }
        let failure = OriginFailure::of(&*error);
        if !failure.is_origin_failure() || !self.options.reports_failures {
            tracing::debug!(%url, cause = failure.label(), error = %Described(&*error), "upstream request failed");
        } else {
            let addresses = OriginError::find(&*error)
                .map(|origin| origin.addresses())
                .filter(|addresses| !addresses.is_empty())
                .map(|addresses| {
                    addresses
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                });
            // The failure is the message; the errors beneath it are the detail.
            let underneath = match error.downcast_ref::<OriginError>() {
                Some(origin) => &*origin.source,
                None => &*error,
            };
            tracing::warn!(
                %url,
                cause = failure.label(),
                addr = addresses.as_deref(),
                error = %Described(underneath),
                "origin request failed: {failure}"
            );
            if let Some(at) = failure.counted_at() {
                self.failures[at].fetch_add(1, Ordering::Relaxed);
            }
            metrics::counter!(
                "corral_http_origin_errors_total",
                "cache" => self.options.name.clone(),
                "cause" => failure.label(),
            )
            .increment(1);
        }
        if error.is::<OriginError>() {
            return error;
        }
        let addresses = OriginError::find(&*error)
            .map(|origin| origin.addresses().to_vec())
            .unwrap_or_default();
        Box::new(OriginError::new(failure, error).at(addresses))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_is_found_inside_io_errors_and_sources() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            OriginFailure::of(&refused),
            OriginFailure::Refused { origin: None }
        );
        let tls = io::Error::other(io::Error::new(
            io::ErrorKind::InvalidData,
            OriginError::new(
                OriginFailure::Tls {
                    origin: Some("origin.example".into()),
                    reason: "invalid peer certificate: UnknownIssuer".into(),
                },
                io::Error::other("handshake"),
            ),
        ));
        assert_eq!(
            OriginFailure::of(&tls).to_string(),
            "TLS handshake with origin.example failed: invalid peer certificate: UnknownIssuer"
        );
        let engine = corral::Error::Timeout(Duration::from_secs(3));
        assert_eq!(
            OriginFailure::of(&engine).to_string(),
            "no response within fetch-timeout (3s)"
        );
        let reset = corral::Error::load(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(OriginFailure::of(&reset), OriginFailure::Reset);
        let shared = corral::Error::load(OriginError::new(
            OriginFailure::FetchTimeout {
                timeout: Some(Duration::from_millis(300)),
            },
            io::Error::from(io::ErrorKind::TimedOut),
        ));
        assert_eq!(
            OriginFailure::of(&shared).to_string(),
            "no response within fetch-timeout (300ms)",
            "found inside the engine's shared loader error, not beneath it"
        );
        let unknown = io::Error::other("secret=hunter2");
        assert_eq!(OriginFailure::of(&unknown), OriginFailure::Other);
        assert!(!OriginFailure::of(&unknown).to_string().contains("hunter2"));
    }

    #[test]
    fn every_failure_is_one_line_and_unnamed_origins_are_the_origin() {
        let failures = [
            OriginFailure::Dns {
                origin: None,
                reason: "no such host".into(),
            },
            OriginFailure::Refused { origin: None },
            OriginFailure::ConnectTimeout {
                origin: None,
                timeout: Some(Duration::from_millis(1500)),
            },
            OriginFailure::Tls {
                origin: None,
                reason: "bad".into(),
            },
            OriginFailure::FetchTimeout { timeout: None },
            OriginFailure::Reset,
            OriginFailure::Closed,
            OriginFailure::Invalid,
            OriginFailure::Other,
        ];
        for failure in failures {
            let line = failure.to_string();
            assert!(!line.contains('\n'), "{line}");
            assert!(
                matches!(
                    failure,
                    OriginFailure::Dns { .. }
                        | OriginFailure::FetchTimeout { .. }
                        | OriginFailure::Invalid
                        | OriginFailure::Other
                ) || line.contains("the origin"),
                "{line}"
            );
        }
        assert_eq!(
            OriginFailure::ConnectTimeout {
                origin: Some("origin.example:443".into()),
                timeout: Some(Duration::from_millis(1500)),
            }
            .to_string(),
            "no connection to origin.example:443 within connect-timeout (1.5s)"
        );
    }

    #[test]
    fn a_described_error_names_each_cause_once() {
        let inner = OriginError::new(OriginFailure::Reset, io::Error::other("os error 104"));
        assert_eq!(
            Described(&inner).to_string(),
            "connection reset by the origin: os error 104"
        );
    }
}
