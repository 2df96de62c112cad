//! Serving: bind the listeners, answer from the current snapshot, reload on SIGHUP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{error, info};

use crate::dns::Handler;
use crate::store::Store;

/// How long a TCP client may stay idle between queries.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Replies a TCP connection may have queued before the server stops reading from it.
const TCP_RESPONSE_BUFFER: usize = 64;

/// Sockets bound by the caller, so tests and `main` own addresses and ports.
pub struct Listeners {
    pub udp: Vec<UdpSocket>,
    pub tcp: Vec<TcpListener>,
}

impl Listeners {
    /// Binds UDP and TCP on each address.
    pub async fn bind(addrs: &[SocketAddr]) -> anyhow::Result<Self> {
        let mut listeners = Self {
            udp: Vec::new(),
            tcp: Vec::new(),
        };
        for addr in addrs {
            listeners.udp.push(
                UdpSocket::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on UDP {addr}"))?,
            );
            listeners.tcp.push(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on TCP {addr}"))?,
            );
        }
        Ok(listeners)
    }
}

/// Serves DNS from `store` on `listeners` until `shutdown` completes; SIGHUP reloads.
pub async fn run(
    store: Arc<Store>,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut server = Server::new(Handler::new(store.serving(), store.metrics()));
    for socket in listeners.udp {
        info!(addr = %socket.local_addr()?, "listening on UDP");
        server.register_socket(socket);
    }
    for listener in listeners.tcp {
        info!(addr = %listener.local_addr()?, "listening on TCP");
        server.register_listener(listener, TCP_TIMEOUT, TCP_RESPONSE_BUFFER);
    }
    let reloader = tokio::spawn(reload_on_sighup(store));
    shutdown.await;
    info!("shutting down");
    reloader.abort();
    server.shutdown_gracefully().await?;
    Ok(())
}

/// Reloads on every SIGHUP; a bad configuration is logged and the last good one serves on.
async fn reload_on_sighup(store: Arc<Store>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        error!("cannot install the SIGHUP handler; reload is off");
        return;
    };
    while hangups.recv().await.is_some() {
        store.reload_logged("SIGHUP").await;
    }
}
