//! Serving: bind the listeners, answer from the current snapshot, reload on SIGHUP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{error, info};

use crate::dns::Handler;
use crate::load::{self, Sources};
use crate::snapshot::Snapshot;

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

/// Loads `sources`, logging what it holds.
pub fn load_logged(sources: &Sources) -> Result<Snapshot, load::LoadError> {
    let loaded = load::load(sources)?;
    info!(
        zones = loaded.zones,
        tasks = loaded.tasks,
        effective = loaded.effective_tasks,
        geoip = %loaded.geoip.as_deref().map_or("none".into(), |p| p.display().to_string()),
        "configuration loaded"
    );
    Ok(loaded.snapshot)
}

/// Serves `snapshot` on `listeners` until `shutdown` completes; SIGHUP reloads `sources`.
pub async fn run(
    sources: Sources,
    snapshot: Snapshot,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let current = Arc::new(ArcSwap::from_pointee(snapshot));
    let mut server = Server::new(Handler::new(current.clone()));
    for socket in listeners.udp {
        info!(addr = %socket.local_addr()?, "listening on UDP");
        server.register_socket(socket);
    }
    for listener in listeners.tcp {
        info!(addr = %listener.local_addr()?, "listening on TCP");
        server.register_listener(listener, TCP_TIMEOUT, TCP_RESPONSE_BUFFER);
    }
    let reloader = tokio::spawn(reload_on_sighup(sources, current));
    shutdown.await;
    info!("shutting down");
    reloader.abort();
    server.shutdown_gracefully().await?;
    Ok(())
}

/// Reloads on every SIGHUP; a bad configuration is logged and the last good one serves on.
async fn reload_on_sighup(sources: Sources, current: Arc<ArcSwap<Snapshot>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        error!("cannot install the SIGHUP handler; reload is off");
        return;
    };
    while hangups.recv().await.is_some() {
        let sources = sources.clone();
        match tokio::task::spawn_blocking(move || load_logged(&sources)).await {
            Ok(Ok(snapshot)) => {
                current.store(Arc::new(snapshot));
                info!("reloaded on SIGHUP");
            }
            Ok(Err(errors)) => {
                error!("reload rejected, still serving the previous configuration:\n{errors}")
            }
            Err(e) => error!(%e, "reload failed"),
        }
    }
}
