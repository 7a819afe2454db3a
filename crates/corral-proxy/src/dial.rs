//! Dialling origins: the connector under the origin client (and the check `CONNECT`
//! tunnels make). It resolves names through the allow-list and refuses the proxy's
//! own listeners, whatever name or spelling of an address led there (`127.1`,
//! `0x7f000001`, `[::ffff:127.0.0.1]`, `localhost`): the check is on the address
//! actually connected to, before a byte is sent. A failure says why ([`DialError`]:
//! the name that did not resolve, the addresses that refused, the timeout that ran
//! out). And it counts the responses each connection delivered, so a request that
//! failed on a reused connection (one the origin closed while it sat idle in the
//! pool) can be told from one that failed on a fresh connection.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use corral_http::{BoxError, OriginFailure};
use http::Uri;
use http::uri::Scheme;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::Service;

use crate::allow::{AllowList, Forbidden};

/// The addresses this proxy listens on: never a target.
#[derive(Debug, Clone, Default)]
pub(crate) struct Listeners {
    addrs: Vec<SocketAddr>,
}

impl Listeners {
    pub(crate) fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        Listeners {
            addrs: addrs.into_iter().collect(),
        }
    }

    /// Whether connecting to `target` reaches one of these listeners: the same
    /// address and port; the port of a listener on an unspecified address (`0.0.0.0`,
    /// `::`) at any address of this host; or the port of any listener at an
    /// unspecified target address (connecting to `0.0.0.0` reaches this host).
    pub(crate) fn is_self(&self, target: SocketAddr) -> bool {
        let ip = target.ip().to_canonical();
        self.addrs.iter().any(|own| {
            own.port() == target.port()
                && (own.ip().to_canonical() == ip
                    || ip.is_unspecified()
                    || own.ip().is_unspecified() && is_local(ip))
        })
    }

    /// Refuses `target` if it is one of these listeners.
    pub(crate) fn check(&self, target: SocketAddr) -> io::Result<()> {
        if self.is_self(target) {
            return Err(Forbidden(format!("{target} is this proxy's own listener")).into_io());
        }
        Ok(())
    }
}

/// Whether `ip` is an address of this host: loopback, unspecified (which dials the
/// host itself), or one a socket can be bound to.
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback()
        || ip.is_unspecified()
        || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// How many responses a connection delivered (in the extensions of its responses and
/// of its errors).
#[derive(Debug, Clone, Default)]
pub(crate) struct Delivered(Arc<AtomicU64>);

impl Delivered {
    /// Counts one more response.
    pub(crate) fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the connection delivered a response before.
    pub(crate) fn any(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }

    /// The count of the connection an error or response came from.
    pub(crate) fn of(connected: &Connected) -> Option<Delivered> {
        let mut extensions = http::Extensions::new();
        connected.get_extras(&mut extensions);
        extensions.remove::<Delivered>()
    }
}

/// Why the [`Dialer`] made no connection, with what it knows that the TCP connector's
/// own errors do not say: the name that did not resolve, the addresses refused, the
/// timeout that ran out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DialError {
    /// The origin's name does not resolve.
    #[error("cannot resolve {host}: {source}")]
    Dns {
        /// The name.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// The allow-list forbids the target, or it is this proxy (a [`Forbidden`] inside
    /// the I/O error, where [`Forbidden::find`] looks).
    #[error("{0}")]
    Forbidden(#[source] io::Error),
    /// The connection was refused.
    #[error("connection refused by {authority}")]
    Refused {
        /// The origin as `host:port`.
        authority: String,
        /// The addresses tried.
        addrs: Vec<SocketAddr>,
        /// The connector's error.
        #[source]
        source: BoxError,
    },
    /// No connection within `connect-timeout`.
    #[error("no connection to {authority} within connect-timeout ({timeout:?})")]
    Timeout {
        /// The origin as `host:port`.
        authority: String,
        /// The addresses tried.
        addrs: Vec<SocketAddr>,
        /// `connect-timeout`.
        timeout: Duration,
        /// The connector's error.
        #[source]
        source: BoxError,
    },
    /// Another failure to connect (no route to the host, say).
    #[error("cannot connect to {authority}")]
    Connect {
        /// The origin as `host:port`.
        authority: String,
        /// The addresses tried.
        addrs: Vec<SocketAddr>,
        /// The connector's error.
        #[source]
        source: BoxError,
    },
}

impl DialError {
    /// The failure as a client may be told it: naming the origin (as its URL does) if
    /// `named`, never the addresses a name resolved to.
    pub(crate) fn failure(&self, named: bool) -> OriginFailure {
        let name = |name: &str| named.then(|| name.to_owned());
        match self {
            DialError::Dns { host, source } => OriginFailure::Dns {
                origin: name(host),
                reason: source.to_string(),
            },
            DialError::Forbidden(why) => OriginFailure::Forbidden {
                reason: why.to_string(),
            },
            DialError::Refused { authority, .. } => OriginFailure::Refused {
                origin: name(authority),
            },
            DialError::Timeout {
                authority, timeout, ..
            } => OriginFailure::ConnectTimeout {
                origin: name(authority),
                timeout: Some(*timeout),
            },
            DialError::Connect { .. } => OriginFailure::Other,
        }
    }

    /// The addresses it concerns (for the log).
    pub(crate) fn addresses(&self) -> Vec<SocketAddr> {
        match self {
            DialError::Refused { addrs, .. }
            | DialError::Timeout { addrs, .. }
            | DialError::Connect { addrs, .. } => addrs.clone(),
            DialError::Dns { .. } | DialError::Forbidden(_) => Vec::new(),
        }
    }
}

/// The dialler: resolves the target's name through the allow-list, connects (with
/// `connect-timeout`, trying each address as the TCP connector does), refuses the
/// proxy's own listeners, and marks the connection with a [`Delivered`] count.
#[derive(Clone)]
pub(crate) struct Dialer {
    allow: Arc<AllowList>,
    listeners: Arc<Listeners>,
    connect_timeout: Duration,
}

impl Dialer {
    pub(crate) fn new(
        allow: Arc<AllowList>,
        listeners: Arc<Listeners>,
        connect_timeout: Duration,
    ) -> Self {
        Dialer {
            allow,
            listeners,
            connect_timeout,
        }
    }

    async fn dial(self, uri: Uri) -> Result<Dialled, DialError> {
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
        let port = uri.port_u16().unwrap_or(match uri.scheme() {
            Some(scheme) if *scheme == Scheme::HTTPS => 443,
            _ => 80,
        });
        let literal = host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port));
        let authority = match literal {
            Some(addr) => addr.to_string(),
            None => format!("{host}:{port}"),
        };
        let addrs = match literal {
            // An address is dialled as it is (the allow-list checked it already).
            Some(addr) => vec![addr],
            // The name is resolved here, through the allow-list (its port is that of
            // the URL, checked already), so a failure can name it.
            None => match self.allow.resolve(host, 0).await {
                Ok(addrs) => addrs
                    .into_iter()
                    .map(|addr| SocketAddr::new(addr.ip(), port))
                    .collect(),
                Err(error) if Forbidden::find(&error).is_some() => {
                    return Err(DialError::Forbidden(error));
                }
                Err(source) => {
                    return Err(DialError::Dns {
                        host: host.to_owned(),
                        source,
                    });
                }
            },
        };
        let mut tcp = HttpConnector::new_with_resolver(Resolved(addrs.clone()));
        tcp.set_connect_timeout(Some(self.connect_timeout));
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        tcp.set_keepalive(Some(Duration::from_secs(60)));
        let connected = tcp.call(uri).await;
        let failed = |kind: Option<io::ErrorKind>, source: BoxError| match kind {
            Some(io::ErrorKind::ConnectionRefused) => DialError::Refused {
                authority,
                addrs,
                source,
            },
            Some(io::ErrorKind::TimedOut) => DialError::Timeout {
                authority,
                addrs,
                timeout: self.connect_timeout,
                source,
            },
            _ => DialError::Connect {
                authority,
                addrs,
                source,
            },
        };
        let io = match connected {
            Ok(io) => io,
            Err(error) => return Err(failed(io_kind(&error), error.into())),
        };
        let peer = match io.inner().peer_addr() {
            Ok(peer) => peer,
            Err(error) => return Err(failed(None, error.into())),
        };
        self.listeners.check(peer).map_err(DialError::Forbidden)?;
        Ok(Dialled {
            io,
            delivered: Delivered::default(),
        })
    }
}

/// The kind of the first I/O error among `error`'s sources.
fn io_kind(error: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    std::iter::successors(Some(error), |&error| error.source())
        .find_map(|error| error.downcast_ref::<io::Error>().map(io::Error::kind))
}

/// The resolver of one connection: the addresses the [`Dialer`] resolved.
#[derive(Clone)]
struct Resolved(Vec<SocketAddr>);

impl tower::Service<Name> for Resolved {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = std::future::Ready<io::Result<Self::Response>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _name: Name) -> Self::Future {
        std::future::ready(Ok(self.0.clone().into_iter()))
    }
}

impl tower::Service<Uri> for Dialer {
    type Response = Dialled;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Dialled, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.clone();
        Box::pin(async move { dialer.dial(uri).await.map_err(BoxError::from) })
    }
}

/// A connection made by a [`Dialer`].
pub(crate) struct Dialled {
    io: TokioIo<TcpStream>,
    delivered: Delivered,
}

impl Connection for Dialled {
    fn connected(&self) -> Connected {
        self.io.connected().extra(self.delivered.clone())
    }
}

impl Read for Dialled {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for Dialled {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_itself_in_every_spelling_of_its_address() {
        let on_loopback = Listeners::new(["127.0.0.1:8080".parse().unwrap()]);
        assert!(on_loopback.is_self("127.0.0.1:8080".parse().unwrap()));
        assert!(on_loopback.is_self("[::ffff:127.0.0.1]:8080".parse().unwrap()));
        assert!(!on_loopback.is_self("127.0.0.1:8081".parse().unwrap()));
        assert!(!on_loopback.is_self("127.0.0.2:8080".parse().unwrap()));
        for anywhere in ["0.0.0.0:8080", "[::]:8080", "[::ffff:0.0.0.0]:8080"] {
            assert!(on_loopback.is_self(anywhere.parse().unwrap()), "{anywhere}");
        }
        let everywhere = Listeners::new(["0.0.0.0:8080".parse().unwrap()]);
        for me in [
            "127.0.0.1:8080",
            "127.9.9.9:8080",
            "0.0.0.0:8080",
            "[::1]:8080",
        ] {
            assert!(everywhere.is_self(me.parse().unwrap()), "{me}");
        }
        assert!(
            !everywhere.is_self("192.0.2.1:8080".parse().unwrap()),
            "not ours"
        );
        let refused = everywhere
            .check("127.0.0.1:8080".parse().unwrap())
            .unwrap_err();
        assert!(Forbidden::find(&refused).is_some());
    }
}
