//! Serving: bind the listeners, answer from the current snapshot, reload on SIGHUP.
//!
//! UDP goes through lbdns's own [`crate::udp`] worker threads, TCP through its own
//! [`crate::tcp`] loop, which bounds connections (see [`crate::limits`]). Both answer with
//! the same [`Handler`].
//!
//! Under systemd (`Type=notify`, `contrib/systemd/lbdns.service`) the service manager hears
//! `READY=1` once every listener answers, `RELOADING=1` and `READY=1` around a SIGHUP reload,
//! and `STOPPING=1` at shutdown; without `NOTIFY_SOCKET` nothing is sent.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use crate::dns::{Handler, Transport};
use crate::limits::{self, ConnLimits, ConnTable};
use crate::metrics::Metrics;
use crate::rrl::RateLimiter;
use crate::store::Store;
use crate::{tcp, udp};

/// Sockets bound by the caller, so tests and `main` own addresses and ports.
pub struct Listeners {
    /// Per address, its `SO_REUSEPORT` group: one socket for each UDP worker thread.
    pub udp: Vec<Vec<UdpSocket>>,
    pub tcp: Vec<TcpListener>,
}

impl Listeners {
    /// Binds UDP (one socket per core, see [`udp::bind`]) and TCP on each address.
    pub async fn bind(addrs: &[SocketAddr]) -> anyhow::Result<Self> {
        let mut listeners = Self {
            udp: Vec::new(),
            tcp: Vec::new(),
        };
        for addr in addrs {
            listeners.udp.push(
                udp::bind(*addr, udp::workers_per_address())
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
    rate_limit: Option<RateLimiter>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = store.metrics();
    let handler =
        Arc::new(Handler::new(store.serving(), metrics.clone()).with_rate_limit(rate_limit));
    let mut udp = udp::Workers::default();
    for group in listeners.udp {
        if let Some(socket) = group.first() {
            info!(addr = %socket.local_addr()?, workers = group.len(), "listening on UDP");
        }
        let handler = handler.clone();
        udp.serve(
            group,
            move |query, src, out| handler.answer(query, src, Transport::Udp, out),
            &metrics,
        )
        .context("cannot start the UDP workers")?;
    }
    let table = ConnTable::new("dns", tcp_limits, metrics.dns_conns.clone());
    let mut tasks = Vec::new();
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
    tasks.push(tokio::spawn(drive_dnssec(store.clone())));
    tasks.push(tokio::spawn(reload_on_sighup(store)));
    // The snapshot was loaded before the listeners were bound, and every listener now
    // has its worker: every zone answers.
    notify_systemd(&[sd_notify::NotifyState::Ready]);
    shutdown.await;
    info!("shutting down");
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    for task in tasks {
        task.abort();
    }
    // Joining waits up to the workers' receive timeout: not on a runtime thread.
    tokio::task::spawn_blocking(move || udp.stop()).await?;
    Ok(())
}

/// A second after the throttle starts holding lines back, says how many it held. No timer
/// runs while nothing is held: a pending timer costs the runtime work at every wake-up,
/// which on the TCP path is every read.
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

/// Drives DNSSEC by itself (SPEC §11): wakes when a signed zone's signatures have less
/// than a third of their validity left or when its keys' next event comes (a ZSK rollover
/// due on `zsk_lifetime`, a new key starting to sign, a CDS moving, an old key leaving),
/// and loads again. The load takes the keys' steps ([`crate::dnssec::keydir::advance`],
/// the function `lbdns keys` runs too), signs again the zones whose apex or signatures
/// changed and publishes the snapshot as any reload does. It checks at least hourly: a
/// server that runs for weeks without a reload never serves an expired signature.
async fn drive_dnssec(store: Arc<Store>) {
    loop {
        let wait = crate::load::next_signing_due().map_or(3_600, |due| due.clamp(1, 3_600));
        tokio::time::sleep(Duration::from_secs(wait)).await;
        if crate::load::next_signing_due() != Some(0) {
            continue;
        }
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.resign()).await {
            Ok(Ok(_)) => info!("DNSSEC: keys stepped and signatures refreshed where due"),
            Ok(Err(errors)) => {
                error!("DNSSEC: signing is due, but the files do not load: {errors}");
                // Not again at once: the files change (and reload) or an hour passes.
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Err(e) => error!(%e, "DNSSEC signing failed"),
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
        // systemd wants the monotonic time with RELOADING=1 (Type=notify-reload requires it).
        match sd_notify::NotifyState::monotonic_usec_now() {
            Ok(now) => notify_systemd(&[sd_notify::NotifyState::Reloading, now]),
            Err(_) => notify_systemd(&[sd_notify::NotifyState::Reloading]),
        }
        store.reload_logged("SIGHUP").await;
        notify_systemd(&[sd_notify::NotifyState::Ready]);
    }
}

/// Tells the service manager of a state change (sd_notify(3)); a no-op outside systemd.
fn notify_systemd(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}
