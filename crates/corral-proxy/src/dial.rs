//! Dialling origins: the connector under the origin client (and the check `CONNECT`
//! tunnels make). It refuses the proxy's own listeners, whatever name or spelling of
//! an address led there (`127.1`, `0x7f000001`, `[::ffff:127.0.0.1]`, `localhost`):
//! the check is on the address actually connected to, before a byte is sent. And it
//! counts the responses each connection delivered, so a request that failed on a
//! reused connection (one the origin closed while it sat idle in the pool) can be told
//! from one that failed on a fresh connection.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use corral_http::BoxError;
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::allow::Forbidden;

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

/// The TCP connector, guarded: its connections are checked against the proxy's own
/// listeners and carry a [`Delivered`] count.
#[derive(Clone)]
pub(crate) struct Dialer<C> {
    inner: C,
    listeners: Arc<Listeners>,
}

impl<C> Dialer<C> {
    pub(crate) fn new(inner: C, listeners: Arc<Listeners>) -> Self {
        Dialer { inner, listeners }
    }
}

impl<C> tower::Service<Uri> for Dialer<C>
where
    C: tower::Service<Uri, Response = TokioIo<TcpStream>>,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
{
    type Response = Dialled;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Dialled, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let listeners = self.listeners.clone();
        Box::pin(async move {
            let io = connecting.await.map_err(Into::into)?;
            listeners.check(io.inner().peer_addr()?)?;
            Ok(Dialled {
                io,
                delivered: Delivered::default(),
            })
        })
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
