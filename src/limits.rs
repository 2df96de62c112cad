//! Holding against hostile clients: how many TCP connections lbdns keeps, for how long,
//! and what it does when it cannot accept more.
//!
//! Every TCP listener (DNS and the API) accepts through [`accept`] and registers the
//! connection in a [`ConnTable`]:
//! - the table has a cap (`--tcp-max-clients`, `--api-max-clients`); a new connection
//!   over the cap closes the *least recently active idle* one, as Knot does with
//!   `tcp-max-clients`, so a flood of idle connections pushes out only idle connections
//!   and the newest client is served. When every connection is busy the new one is refused;
//! - an accept error backs off (10 ms doubling to 1 s) instead of retrying at once, which
//!   spins a core when the process is out of file descriptors (the pending connection
//!   stays in the backlog, so the listener stays readable); at the open-files limit the
//!   least recently active idle connection is closed to free a descriptor;
//! - at start the soft open-files limit is raised to the hard one
//!   ([`raise_open_files_limit`]) and the default caps are taken from it, so connections
//!   alone never use every descriptor and reloads can still open files.
//!
//! Everything is counted in `/metrics` (`lbdns_tcp_connections*`, `lbdns_accept_errors_total`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::metrics::{Close, ConnMetrics, Metrics};

/// The flags of `lbdns serve` that bound connections.
#[derive(clap::Args, Clone, Debug)]
pub struct LimitArgs {
    /// Most DNS-over-TCP connections kept open; over it, the least recently active idle one
    /// is closed [default: half the open-files limit, at most 1000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub tcp_max_clients: Option<u32>,
    /// Seconds a DNS TCP connection may take to send its next complete query.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = seconds)]
    pub tcp_idle_timeout: Duration,
    /// Most API connections kept open [default: an eighth of the open-files limit, at most 1024].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub api_max_clients: Option<u32>,
    /// Seconds an API client has to send a request's headers, then as long for its body;
    /// on a kept-alive connection, as long to start the next request.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = seconds)]
    pub api_timeout: Duration,
}

/// A positive number of seconds, fractions allowed.
fn seconds(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!(
            "expected seconds, more than 0 and at most 86400, not {text:?}"
        )),
    }
}

/// The bounds of one kind of listener.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// Most connections kept open.
    pub max_clients: usize,
    /// DNS: time allowed for the next complete query. API: for a request's headers, and
    /// again for its body.
    pub timeout: Duration,
}

/// The resolved limits of a running server.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub dns: ConnLimits,
    pub api: ConnLimits,
}

/// The DNS cap when the open-files limit is high: a TCP connection costs a task and a few
/// KB of buffers, and TCP is the small share of an authoritative server's traffic (NSD
/// keeps 100, BIND 150); 1000 holds resolvers retrying truncated answers with room to spare.
const DNS_MAX_CLIENTS: usize = 1000;
/// The API cap when the open-files limit is high. It has few clients, but a script may
/// send a thousand changes at once: each waits its turn in the store's queue (512) or is
/// told 503 at once, so a connection is busy for a short while, and one more past the
/// cap is answered 503 too rather than reset.
const API_MAX_CLIENTS: usize = 1024;

impl LimitArgs {
    /// Raises the open-files limit, then fills in the caps not given from it: half of it
    /// for DNS (Knot's `tcp-max-clients` default) and an eighth for the API, leaving the
    /// rest for sockets, zone and site files, reloads and the file watcher.
    pub fn resolve(&self, metrics: &Metrics) -> Limits {
        let open_files = match raise_open_files_limit() {
            Ok((before, now)) => {
                info!(before, now, "open-files limit (RLIMIT_NOFILE)");
                now
            }
            Err(error) => {
                warn!(%error, "cannot read or raise the open-files limit; assuming 1024");
                1024
            }
        };
        metrics
            .open_files_limit
            .set(i64::try_from(open_files).unwrap_or(i64::MAX));
        let budget = usize::try_from(open_files).unwrap_or(usize::MAX);
        let pick = |given: Option<u32>, share: usize, most: usize| {
            given.map_or((budget / share).clamp(1, most), |n| n as usize)
        };
        let limits = Limits {
            dns: ConnLimits {
                max_clients: pick(self.tcp_max_clients, 2, DNS_MAX_CLIENTS),
                timeout: self.tcp_idle_timeout,
            },
            api: ConnLimits {
                max_clients: pick(self.api_max_clients, 8, API_MAX_CLIENTS),
                timeout: self.api_timeout,
            },
        };
        info!(
            dns_max_clients = limits.dns.max_clients,
            dns_idle_timeout = ?limits.dns.timeout,
            api_max_clients = limits.api.max_clients,
            api_timeout = ?limits.api.timeout,
            "connection limits"
        );
        limits
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit before and after.
///
/// `libc` directly, rather than the `rlimit` or `nix` crates: it is already a dependency of
/// tokio, and the whole job is two system calls.
pub fn raise_open_files_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives on our stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit = raised;
    }
    #[allow(clippy::useless_conversion)] // rlim_t is u64 on Linux, not everywhere.
    Ok((u64::from(before), u64::from(limit.rlim_cur)))
}

//----------- Connection table ---------------------------------------------------------

/// The connections of one kind of listener, with a cap.
///
/// The table is locked only to open, evict and close; the per-request marks (busy, idle,
/// last active) are atomics on the connection's own `ConnState`.
pub struct ConnTable {
    /// `dns` or `api`, for logs.
    listener: &'static str,
    limits: ConnLimits,
    epoch: Instant,
    metrics: ConnMetrics,
    slots: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    next_id: u64,
    open: HashMap<u64, Arc<ConnState>>,
}

/// What the table and a connection's task share.
#[derive(Default)]
struct ConnState {
    /// Milliseconds since the table's epoch at the last sign of life: accepted, a
    /// complete query read or its replies written (DNS), a request begun or answered (API).
    last_active: AtomicU64,
    /// Requests being answered; a connection with none is idle and may be evicted.
    busy: AtomicU32,
    /// Requests answered or being answered, ever.
    requests: AtomicU64,
    /// Set when the table closes the connection for a file descriptor.
    fd_limit: AtomicBool,
    close: Notify,
}

impl ConnTable {
    pub fn new(listener: &'static str, limits: ConnLimits, metrics: ConnMetrics) -> Arc<Self> {
        metrics
            .max
            .set(i64::try_from(limits.max_clients).unwrap_or(i64::MAX));
        Arc::new(Self {
            listener,
            limits: ConnLimits {
                max_clients: limits.max_clients.max(1),
                ..limits
            },
            epoch: Instant::now(),
            metrics,
            slots: Mutex::default(),
        })
    }

    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new connection; when the table is full the least recently active idle
    /// one is closed first. `None` (counted as refused) when every connection is busy.
    pub fn open(self: &Arc<Self>) -> Option<Conn> {
        self.metrics.accepted.inc();
        let mut slots = self.slots();
        if slots.open.len() >= self.limits.max_clients && !self.evict_locked(&mut slots, false) {
            drop(slots);
            self.metrics.closed(Close::Refused).inc();
            return None;
        }
        let state = Arc::new(ConnState::default());
        state.last_active.store(self.now_ms(), Relaxed);
        let id = slots.next_id;
        slots.next_id += 1;
        slots.open.insert(id, state.clone());
        self.metrics.open.set(slots.open.len() as i64);
        Some(Conn {
            handle: ConnHandle {
                table: self.clone(),
                state,
            },
            id,
            closed: false,
        })
    }

    /// Closes the least recently active idle connection to free a file descriptor;
    /// false when there is none.
    pub fn evict_for_fd(&self) -> bool {
        let mut slots = self.slots();
        self.evict_locked(&mut slots, true)
    }

    fn evict_locked(&self, slots: &mut Slots, fd_limit: bool) -> bool {
        let victim = slots
            .open
            .iter()
            .filter(|(_, s)| s.busy.load(Relaxed) == 0)
            // Ties within a millisecond go to the older connection (ids only grow).
            .min_by_key(|(id, s)| (s.last_active.load(Relaxed), **id))
            .map(|(id, _)| *id);
        let Some(state) = victim.and_then(|id| slots.open.remove(&id)) else {
            return false;
        };
        self.metrics.open.set(slots.open.len() as i64);
        state.fd_limit.store(fd_limit, Relaxed);
        // A stored permit: the task sees it at its next wait even if it is busy now.
        state.close.notify_one();
        true
    }
}

/// A connection's slot in its [`ConnTable`]; closing it (or dropping it) frees the slot.
pub struct Conn {
    handle: ConnHandle,
    id: u64,
    closed: bool,
}

/// What a connection's I/O and request code need to mark it busy or active.
#[derive(Clone)]
pub struct ConnHandle {
    table: Arc<ConnTable>,
    state: Arc<ConnState>,
}

impl ConnHandle {
    /// Marks a sign of life: the connection is the last to be evicted.
    pub fn touch(&self) {
        self.state.last_active.store(self.table.now_ms(), Relaxed);
    }

    /// Marks a request as being answered until the guard drops; both ends are signs of life.
    pub fn busy(&self) -> Busy {
        self.touch();
        self.state.busy.fetch_add(1, Relaxed);
        self.state.requests.fetch_add(1, Relaxed);
        Busy(self.clone())
    }

    /// Requests answered (or being answered) on this connection.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Relaxed)
    }
}

impl Conn {
    /// The handle to mark this connection busy or active from elsewhere.
    pub fn handle(&self) -> &ConnHandle {
        &self.handle
    }

    /// See [`ConnHandle::touch`].
    pub fn touch(&self) {
        self.handle.touch();
    }

    /// See [`ConnHandle::busy`].
    pub fn busy(&self) -> Busy {
        self.handle.busy()
    }

    /// Completes when the table closes this connection.
    pub async fn evicted(&self) {
        self.handle.state.close.notified().await;
    }

    /// Frees the slot and counts why the connection closed; say [`Close::Evicted`] when it
    /// closed because [`Conn::evicted`] completed.
    pub fn close(mut self, why: Close) {
        self.finish(why);
    }

    fn finish(&mut self, why: Close) {
        if self.closed {
            return;
        }
        self.closed = true;
        let (table, state) = (&self.handle.table, &self.handle.state);
        // A connection that ended on its own after the table chose it counts as it ended.
        let why = match why {
            Close::Evicted if state.fd_limit.load(Relaxed) => Close::FdLimit,
            why => why,
        };
        table.metrics.closed(why).inc();
        let mut slots = table.slots();
        if slots.open.remove(&self.id).is_some() {
            table.metrics.open.set(slots.open.len() as i64);
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // A task that ends without saying why (a panic, or the runtime shutting down).
        self.finish(Close::Error);
    }
}

/// A request in progress (see [`ConnHandle::busy`]).
pub struct Busy(ConnHandle);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.state.busy.fetch_sub(1, Relaxed);
        self.0.touch();
    }
}

//----------- Accepting ----------------------------------------------------------------

/// Connections the kernel may hold for lbdns to accept (DNS and API): more than the standard library's
/// 128, so a burst of clients (resolvers retrying truncated answers over TCP) is not
/// dropped while the accept loop catches up. The kernel caps it at `net.core.somaxconn`.
const TCP_BACKLOG: u32 = 1024;

/// A TCP listener on `addr` with a backlog of 1024 (see `TCP_BACKLOG`).
pub fn tcp_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(TCP_BACKLOG)
}

/// The first and the longest wait after an accept error.
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Accepts the next connection on `listener`. Errors are counted and logged (throttled);
/// an error that says the process or system is out of file descriptors closes the least
/// recently active idle connection of `table`; every error other than a connection
/// aborted before it was accepted waits before the next try, 10 ms doubling to 1 s and
/// back to 10 ms after a success.
pub async fn accept(
    listener: &TcpListener,
    table: &ConnTable,
    metrics: &Metrics,
) -> (TcpStream, SocketAddr) {
    let mut delay = BACKOFF_FIRST;
    loop {
        let error = match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) => error,
        };
        table.metrics.accept_errors.inc();
        if matches!(
            error.kind(),
            std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
        ) {
            continue;
        }
        let fd_limit = matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
        let evicted = fd_limit && table.evict_for_fd();
        if metrics.warnings.allow() {
            warn!(
                listener = table.listener,
                %error,
                closed_idle = evicted,
                retry_in = ?delay,
                "cannot accept a connection; backing off"
            );
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max: usize) -> (Arc<ConnTable>, ConnMetrics) {
        let metrics = ConnMetrics::default();
        let limits = ConnLimits {
            max_clients: max,
            timeout: Duration::from_secs(1),
        };
        (ConnTable::new("dns", limits, metrics.clone()), metrics)
    }

    /// True when the table has told `conn` to close.
    async fn told_to_close(conn: &Conn) -> bool {
        tokio::time::timeout(Duration::from_millis(10), conn.evicted())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_full_table_evicts_the_least_recently_active_idle_connection() {
        let (table, metrics) = table(2);
        let first = table.open().unwrap();
        let second = table.open().unwrap();
        // `first` is the oldest but busy; `second` is idle.
        let busy = first.busy();
        std::thread::sleep(Duration::from_millis(5));
        first.touch();
        let third = table.open().unwrap();
        assert!(told_to_close(&second).await);
        assert!(!told_to_close(&first).await);
        assert_eq!(metrics.open.get(), 2);
        second.close(Close::Evicted);
        assert_eq!(metrics.closed(Close::Evicted).get(), 1);
        // Everyone busy: the next one is refused.
        let busy_too = third.busy();
        assert!(table.open().is_none());
        assert_eq!(metrics.closed(Close::Refused).get(), 1);
        drop(busy);
        std::thread::sleep(Duration::from_millis(5));
        drop(busy_too);
        assert!(table.evict_for_fd());
        assert!(told_to_close(&first).await);
        first.close(Close::Evicted);
        assert_eq!(metrics.closed(Close::FdLimit).get(), 1);
        drop(third);
        assert_eq!(metrics.open.get(), 0);
        assert_eq!(metrics.accepted.get(), 4);
    }

    #[test]
    fn seconds_are_positive_and_may_have_fractions() {
        assert_eq!(seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert!(seconds("0").is_err());
        assert!(seconds("-1").is_err());
        assert!(seconds("soon").is_err());
    }
}
