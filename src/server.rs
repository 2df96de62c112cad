//! Serving: bind the listeners, answer from the current snapshot, reload on SIGHUP.
//!
//! UDP goes through hickory's `Server`; TCP through lbdns's own [`crate::tcp`] loop, which
//! bounds connections (see [`crate::limits`]). Both answer with the same [`Handler`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{error, info, warn};

use crate::dns::Handler;
use crate::limits::{self, ConnLimits, ConnTable};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tcp;

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
                limits::tcp_listener(*addr)
                    .with_context(|| format!("cannot listen on TCP {addr}"))?,
            );
        }
        Ok(listeners)
    }
}

/// Serves DNS from `store` on `listeners` until `shutdown` completes; SIGHUP reloads.
/// `tcp_limits` bound the TCP connections of all `listeners.tcp` together.
pub async fn run(
    store: Arc<Store>,
    listeners: Listeners,
    tcp_limits: ConnLimits,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = store.metrics();
    let handler = Arc::new(Handler::new(store.serving(), metrics.clone()));
    let mut tasks = Vec::new();
    for socket in listeners.udp {
        info!(addr = %socket.local_addr()?, "listening on UDP");
        tasks.push(tokio::spawn(serve_udp(socket, handler.clone())));
    }
    let table = ConnTable::new("dns", tcp_limits, metrics.dns_conns.clone());
    for listener in listeners.tcp {
        info!(addr = %listener.local_addr()?, "listening on TCP");
        tasks.push(tokio::spawn(tcp::serve(
            listener,
            handler.clone(),
            table.clone(),
            metrics.clone(),
        )));
    }
    tasks.push(tokio::spawn(report_suppressed(metrics)));
    tasks.push(tokio::spawn(reload_on_sighup(store)));
    shutdown.await;
    info!("shutting down");
    for task in tasks {
        task.abort();
    }
    Ok(())
}

/// Answers datagrams one at a time (interim loop).
async fn serve_udp(socket: UdpSocket, handler: Arc<Handler>) {
    let mut query = vec![0u8; crate::dns::MAX_MESSAGE];
    let mut reply = vec![0u8; crate::dns::MAX_MESSAGE];
    loop {
        let Ok((len, src)) = socket.recv_from(&mut query).await else {
            continue;
        };
        let started = std::time::Instant::now();
        let reply_len = handler.answer(&query[..len], src, crate::dns::Transport::Udp, &mut reply);
        handler.metrics().query_seconds.observe(started.elapsed());
        if reply_len > 0 {
            let _ = socket.send_to(&reply[..reply_len], src).await;
        }
    }
}

/// A second after the throttle starts holding lines back, says how many it held. No timer
/// runs while nothing is held: a pending timer costs the runtime work at every wake-up,
/// which on the UDP path is every query.
async fn report_suppressed(metrics: Arc<Metrics>) {
    loop {
        metrics.warnings.held_back().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let suppressed = metrics.warnings.take_suppressed();
        if suppressed > 0 {
            warn!(
                suppressed,
                "log lines about malformed queries or failed accepts suppressed in the last second (see lbdns_log_lines_suppressed_total)"
            );
        }
    }
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
