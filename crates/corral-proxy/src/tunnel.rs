//! `CONNECT` tunnels of a forward proxy: the target checked against the allow-list
//! and the proxy's own listeners (before connecting, and on the address connected
//! to), then bytes copied both ways, uncached. An open tunnel keeps its connection's
//! place under `max-connections`, and a shutdown waits for it within its grace.

use std::sync::Arc;
use std::time::Duration;

use corral_http::Body;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::allow::{AllowList, Verdict};
use crate::dial::Listeners;
use crate::limit::Held;
use crate::refusal::{NOT_ALLOWED, OWN_LISTENER, refuse};
use crate::target::refuse_userinfo;

/// What a tunnel needs to know.
pub(crate) struct Tunnels {
    pub allow: Arc<AllowList>,
    pub listeners: Arc<Listeners>,
    pub connect_timeout: Duration,
}

impl Tunnels {
    /// Tunnels a `CONNECT` (TLS stays end to end; nothing is cached), or refuses it.
    pub(crate) async fn open(&self, mut request: Request<Incoming>) -> Response<Body> {
        // The connection's place, kept while the tunnel is open (see `Held`).
        let held = request.extensions_mut().remove::<Held>();
        let Some(authority) = request.uri().authority() else {
            return refuse(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
        };
        if let Err(refusal) = refuse_userinfo(authority) {
            return refusal.response();
        }
        let Some((host, port)) = authority
            .port_u16()
            .map(|p| (authority.host().to_owned(), p))
        else {
            return refuse(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
        };
        if self.allow.check(&host, port).await == Verdict::Refused {
            tracing::info!(%host, port, "tunnel refused by the allow-list");
            return refuse(StatusCode::FORBIDDEN, NOT_ALLOWED);
        }
        let addrs = match self
            .allow
            .resolve(host.trim_matches(['[', ']']), port)
            .await
        {
            Ok(addrs) => addrs
                .into_iter()
                .filter(|addr| !self.listeners.is_self(*addr))
                .collect::<Vec<_>>(),
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                return refuse(StatusCode::FORBIDDEN, NOT_ALLOWED);
            }
            Err(_) => return refuse(StatusCode::BAD_GATEWAY, "cannot resolve the tunnel's host"),
        };
        if addrs.is_empty() {
            tracing::info!(%host, port, "tunnel to this proxy's own listener refused");
            return refuse(StatusCode::FORBIDDEN, OWN_LISTENER);
        }
        let connected = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(&addrs[..]),
        )
        .await;
        let mut target = match connected {
            // The address connected to, checked again: whatever it was called, it is
            // not this proxy.
            Ok(Ok(stream)) if stream.peer_addr().is_ok_and(|a| self.listeners.is_self(a)) => {
                tracing::info!(%host, port, "tunnel to this proxy's own listener refused");
                return refuse(StatusCode::FORBIDDEN, OWN_LISTENER);
            }
            Ok(Ok(stream)) => stream,
            Ok(Err(_)) => {
                return refuse(
                    StatusCode::BAD_GATEWAY,
                    "cannot connect to the tunnel's host",
                );
            }
            Err(_) => {
                return refuse(
                    StatusCode::GATEWAY_TIMEOUT,
                    "connecting to the tunnel's host timed out",
                );
            }
        };
        let _ = target.set_nodelay(true);
        tokio::spawn(async move {
            let tunnels = metrics::gauge!("corral_proxy_tunnels");
            match hyper::upgrade::on(request).await {
                Ok(upgraded) => {
                    tunnels.increment(1.0);
                    let mut client = TokioIo::new(upgraded);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut target).await;
                    tunnels.decrement(1.0);
                    drop(held);
                }
                Err(error) => tracing::debug!(%error, "CONNECT upgrade failed"),
            }
        });
        Response::new(Body::empty())
    }
}
