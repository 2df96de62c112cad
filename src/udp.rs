//! DNS over UDP, served by lbdns's own threads rather than hickory's `Server`, which
//! allocated and zeroed a buffer for every datagram and spawned a task for every query.
//!
//! Each listen address gets one socket per core, all bound with `SO_REUSEPORT` so the
//! kernel spreads clients over them, and one OS thread per socket. A thread receives up
//! to [`BATCH`] queries with one `recvmmsg`, answers them in order into buffers it
//! allocated when it started, and sends the replies with one `sendmmsg`: no allocation,
//! lock or task per query. What a query gets is up to the answer function, so this
//! module knows nothing of DNS beyond "a datagram in, at most one datagram back".
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use lbdns::{metrics::Metrics, udp};
//! let sockets = udp::bind("127.0.0.1:5353".parse().unwrap(), 2).unwrap();
//! let mut workers = udp::Workers::default();
//! // An echo server.
//! let echo = |query: &[u8], _src, out: &mut [u8]| {
//!     out[..query.len()].copy_from_slice(query);
//!     query.len()
//! };
//! workers.serve(sockets, echo, &Arc::new(Metrics::new())).unwrap();
//! workers.stop();
//! ```
//!
//! The system calls are `libc` wrappers here rather than `nix`'s `recvmmsg`/`sendmmsg`:
//! nix's send side reports how many datagrams went out only through an iterator that
//! reads its never-written address slots (`assume_init` on uninitialised memory), and its
//! receive side does not reset `msg_namelen` between calls. The wrappers are two `unsafe`
//! calls over headers filled in just before each call.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tracing::{error, warn};

use crate::metrics::{Malformed, Metrics};

/// Datagrams received (and replies sent) per system call. 32 amortises the call over a
/// busy socket's backlog; `MSG_WAITFORONE` returns as soon as one is there, so a quiet
/// socket answers each query at once.
pub const BATCH: usize = 32;

/// Size of every query and reply buffer. A DNS query is a header, one name of at most
/// 255 bytes and an OPT record, a few hundred bytes even with ECS, cookies or padding;
/// 4096 is what hickory received into. A larger datagram arrives cut short
/// (`MSG_TRUNC`) and is dropped, never answered from its first 4096 bytes. Replies are
/// at most 1232 bytes ([`crate::dns::MAX_UDP_PAYLOAD`]), so the same size is ample.
/// A worker's buffers are 2 × 32 × 4 KiB = 256 KiB.
pub const DATAGRAM: usize = 4096;

/// How long a worker waits for a datagram before it looks at the stop flag again: the
/// longest a stop waits for an idle worker.
const RECV_TIMEOUT: Duration = Duration::from_millis(250);

/// The socket buffers asked for, so a burst waits in the kernel rather than being
/// dropped while a worker answers the previous batch (about a thousand small queries).
/// The kernel caps it at `net.core.rmem_max` / `wmem_max`; best effort.
const SOCKET_BUFFER: usize = 1 << 20;

/// Worker threads (so sockets) per listen address: one per core the process may use.
pub fn workers_per_address() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Binds `count` (at least one) UDP sockets to `addr`, sharing it with `SO_REUSEPORT`.
/// Port 0 picks a free port, the same for all of them.
///
/// The address is first bound without `SO_REUSEPORT` and released: that fails when
/// anything holds the address, even another process's `SO_REUSEPORT` group, which the
/// kernel would otherwise let these sockets join silently, splitting the queries.
pub fn bind(addr: SocketAddr, count: usize) -> io::Result<Vec<UdpSocket>> {
    let addr = udp_socket(addr, false)?
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("bound to a non-IP address"))?;
    (0..count.max(1))
        .map(|_| {
            let socket = udp_socket(addr, true)?;
            // Best effort: a smaller buffer still works, it only drops bursts sooner.
            let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
            let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
            socket.set_read_timeout(Some(RECV_TIMEOUT))?;
            Ok(socket.into())
        })
        .collect()
}

/// A UDP socket bound to `addr`; an IPv6 one takes IPv6 only, so `[::]:53` and
/// `0.0.0.0:53` can both be listened on.
fn udp_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(reuse_port)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// The UDP worker threads of a server; [`Workers::stop`] ends them, and dropping this
/// tells them to end.
#[derive(Default)]
pub struct Workers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts one thread per socket of `sockets`, each answering its socket's datagrams
    /// with `answer(query, source, reply)`, which writes the reply into `reply` and returns
    /// its length (0: no reply).
    pub fn serve<F>(
        &mut self,
        sockets: Vec<UdpSocket>,
        answer: F,
        metrics: &Arc<Metrics>,
    ) -> io::Result<()>
    where
        F: Fn(&[u8], SocketAddr, &mut [u8]) -> usize + Send + Sync + 'static,
    {
        let answer = Arc::new(answer);
        for socket in sockets {
            let worker = Worker {
                socket,
                answer: answer.clone(),
                metrics: metrics.clone(),
                stop: self.stop.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("udp-{}", self.threads.len()))
                .spawn(move || worker.run())?;
            self.threads.push(thread);
        }
        Ok(())
    }

    /// Tells every worker to stop and waits for them, at most about [`RECV_TIMEOUT`] plus
    /// the batch in hand.
    pub fn stop(mut self) {
        self.stop.store(true, Relaxed);
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                error!("a UDP worker thread panicked");
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Never answer for an owner that is gone; no join here, a drop must not block.
        self.stop.store(true, Relaxed);
    }
}

/// One worker thread: its socket and what it needs to answer.
struct Worker<F> {
    socket: UdpSocket,
    answer: Arc<F>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
}

impl<F: Fn(&[u8], SocketAddr, &mut [u8]) -> usize> Worker<F> {
    fn run(self) {
        let fd = self.socket.as_raw_fd();
        let mut batch = Batch::new();
        while !self.stop.load(Relaxed) {
            let received = match batch.receive(fd) {
                Ok(received) => received,
                Err(error) => {
                    self.receive_failed(&error);
                    continue;
                }
            };
            self.answer(&mut batch, received);
            batch.send(fd, received, |error, to| {
                self.metrics.udp_send_errors.inc();
                if self.metrics.warnings.allow() {
                    warn!(%error, client = ?to, "cannot send a UDP reply; dropped");
                }
            });
        }
    }

    /// Answers the `received` queries of `batch` into its reply buffers.
    fn answer(&self, batch: &mut Batch, received: usize) {
        // One clock read per query: each is timed from the end of the one before it.
        let mut mark = Instant::now();
        for i in 0..received {
            let (query, src, reply) = match batch.query(i) {
                Ok(slot) => slot,
                Err(dropped) => {
                    batch.reply_len[i] = 0;
                    self.dropped(dropped);
                    continue;
                }
            };
            // A bug that panics on one query drops that query, not the worker and with it
            // every client the kernel hashes to this socket.
            let len = catch_unwind(AssertUnwindSafe(|| (self.answer)(query, src, reply)))
                .unwrap_or_else(|_| {
                    error!(%src, "answering a UDP query panicked; dropped");
                    0
                });
            // A length past the buffer is a bug in the answer function: send nothing
            // rather than a reply cut short.
            batch.reply_len[i] = if len <= DATAGRAM { len } else { 0 };
            let now = Instant::now();
            self.metrics.query_seconds.observe(now - mark);
            mark = now;
        }
    }

    fn dropped(&self, why: Dropped) {
        if why == Dropped::Oversized {
            self.metrics.malformed(Malformed::Oversized);
        }
        if self.metrics.warnings.allow() {
            warn!(reason = ?why, "UDP datagram dropped");
        }
    }

    fn receive_failed(&self, error: &io::Error) {
        match error.kind() {
            // The receive timeout: time to look at the stop flag.
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => {}
            _ => {
                self.metrics.udp_receive_errors.inc();
                if self.metrics.warnings.allow() {
                    warn!(%error, "cannot receive on a UDP socket");
                }
                // Whatever it is, do not spin on it.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Why a received datagram gets no answer before the answer function sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dropped {
    /// Larger than [`DATAGRAM`], so cut short.
    Oversized,
    /// From an address that is neither IPv4 nor IPv6 (never on an IP socket).
    Source,
}

//----------- Batch --------------------------------------------------------------------

/// One worker's buffers and the kernel headers that describe them. The headers are
/// filled in just before each call, so no pointer into the batch outlives a call and the
/// batch may move.
struct Batch {
    queries: Box<[[u8; DATAGRAM]]>,
    replies: Box<[[u8; DATAGRAM]]>,
    /// The reply to query `i` is `replies[i][..reply_len[i]]`; 0 sends nothing.
    reply_len: [usize; BATCH],
    /// Source of query `i`, and so destination of its reply.
    sources: Box<[libc::sockaddr_storage]>,
    recv_iov: [libc::iovec; BATCH],
    recv_headers: [libc::mmsghdr; BATCH],
    send_iov: [libc::iovec; BATCH],
    send_headers: [libc::mmsghdr; BATCH],
    /// The query index of each reply in `send_headers`, for error reports.
    send_of: [usize; BATCH],
}

impl Batch {
    fn new() -> Self {
        // SAFETY: iovec, mmsghdr and sockaddr_storage are plain C structs of integers and
        // raw pointers, for which all zeroes is a valid (empty) value.
        let (iov, header, storage) = unsafe {
            (
                zeroed::<libc::iovec>(),
                zeroed::<libc::mmsghdr>(),
                zeroed::<libc::sockaddr_storage>(),
            )
        };
        Self {
            queries: vec![[0; DATAGRAM]; BATCH].into_boxed_slice(),
            replies: vec![[0; DATAGRAM]; BATCH].into_boxed_slice(),
            reply_len: [0; BATCH],
            sources: vec![storage; BATCH].into_boxed_slice(),
            recv_iov: [iov; BATCH],
            recv_headers: [header; BATCH],
            send_iov: [iov; BATCH],
            send_headers: [header; BATCH],
            send_of: [0; BATCH],
        }
    }

    /// Waits for datagrams (up to the socket's receive timeout) and returns how many
    /// arrived, at least one.
    fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.recv_iov[i] = libc::iovec {
                iov_base: self.queries[i].as_mut_ptr().cast(),
                iov_len: DATAGRAM,
            };
            let header = &mut self.recv_headers[i];
            header.msg_len = 0;
            header.msg_hdr.msg_name = (&raw mut self.sources[i]).cast();
            // Reset each time: the kernel writes the length of the last source here.
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_iov = &raw mut self.recv_iov[i];
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every header points at memory of `self` that lives through the call:
        // one iovec covering exactly one DATAGRAM-byte query buffer, and one
        // sockaddr_storage with its true size; no control buffer. The kernel writes only
        // there and into the headers themselves, at most BATCH of them.
        let received = unsafe {
            libc::recvmmsg(
                fd,
                self.recv_headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        // Negative is -1 with errno set; anything else is a count of at most BATCH.
        usize::try_from(received).map_err(|_| io::Error::last_os_error())
    }

    /// Received query `i`, its source and the buffer for its reply.
    fn query(&mut self, i: usize) -> Result<(&[u8], SocketAddr, &mut [u8]), Dropped> {
        let header = &self.recv_headers[i];
        let len = header.msg_len as usize;
        if header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || len > DATAGRAM {
            return Err(Dropped::Oversized);
        }
        let src = socket_addr(&self.sources[i]).ok_or(Dropped::Source)?;
        Ok((&self.queries[i][..len], src, &mut self.replies[i]))
    }

    /// Sends the replies to the first `received` queries, in order, with as few calls as
    /// the kernel allows. A reply the kernel refuses is reported to `failed` and dropped;
    /// the others still go.
    fn send(
        &mut self,
        fd: RawFd,
        received: usize,
        mut failed: impl FnMut(io::Error, Option<SocketAddr>),
    ) {
        let mut count = 0;
        for i in (0..received).filter(|&i| self.reply_len[i] > 0) {
            self.send_iov[count] = libc::iovec {
                iov_base: self.replies[i].as_mut_ptr().cast(),
                iov_len: self.reply_len[i],
            };
            let header = &mut self.send_headers[count];
            header.msg_len = 0;
            header.msg_hdr.msg_name = (&raw mut self.sources[i]).cast();
            header.msg_hdr.msg_namelen = self.recv_headers[i].msg_hdr.msg_namelen;
            header.msg_hdr.msg_iov = &raw mut self.send_iov[count];
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_flags = 0;
            self.send_of[count] = i;
            count += 1;
        }
        let mut sent = 0;
        while sent < count {
            // SAFETY: headers `sent..count` were filled in above; each points at one iovec
            // covering the first reply_len (≤ DATAGRAM) bytes of one reply buffer and at
            // the address its query came from, with the length the kernel gave it. The
            // kernel only reads them, and writes msg_len into the headers.
            let result = unsafe {
                libc::sendmmsg(
                    fd,
                    self.send_headers[sent..].as_mut_ptr(),
                    (count - sent) as libc::c_uint,
                    0,
                )
            };
            match usize::try_from(result) {
                Ok(n) if n > 0 => sent += n,
                _ => {
                    // The call stopped at reply `sent` (an error on a later one only
                    // shortens the count, and shows up when the next call starts there).
                    let error = match result {
                        0 => io::Error::other("sendmmsg sent nothing"),
                        _ => io::Error::last_os_error(),
                    };
                    if error.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    failed(error, socket_addr(&self.sources[self.send_of[sent]]));
                    sent += 1;
                }
            }
        }
    }
}

/// The IP address in `storage`, as the kernel filled it in.
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which
            // sockaddr_storage is large and aligned enough for.
            let addr =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
                u16::from_be(addr.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let addr = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(addr.sin6_addr.s6_addr),
                u16::from_be(addr.sin6_port),
                addr.sin6_flowinfo,
                addr.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replies with the query (its length when long) and the source it came from.
    fn echo(query: &[u8], src: SocketAddr, out: &mut [u8]) -> usize {
        let reply = match query.len() {
            0..=16 => format!("{} from {src}", String::from_utf8_lossy(query)),
            n => format!("{n} bytes from {src}"),
        };
        out[..reply.len()].copy_from_slice(reply.as_bytes());
        reply.len()
    }

    fn start(addr: &str, threads: usize) -> (Workers, SocketAddr, Arc<Metrics>) {
        let sockets = bind(addr.parse().unwrap(), threads).unwrap();
        let addr = sockets[0].local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        let mut workers = Workers::default();
        workers.serve(sockets, echo, &metrics).unwrap();
        (workers, addr, metrics)
    }

    fn client(addr: &str) -> UdpSocket {
        let socket = UdpSocket::bind(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        socket
    }

    /// The next datagram on `socket`, as text; `None` after the read timeout.
    fn recv(socket: &UdpSocket) -> Option<String> {
        let mut buf = [0; DATAGRAM];
        let n = socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    #[test]
    fn port_0_gives_every_worker_the_same_port() {
        let sockets = bind("127.0.0.1:0".parse().unwrap(), 4).unwrap();
        let addr = sockets[0].local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        for socket in &sockets {
            assert_eq!(socket.local_addr().unwrap(), addr);
        }
    }

    #[test]
    fn an_address_in_use_is_an_error_even_for_a_reuseport_holder() {
        let plain = UdpSocket::bind("127.0.0.1:0").unwrap();
        let error = bind(plain.local_addr().unwrap(), 2).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        // Another SO_REUSEPORT socket of the same user: the kernel would let us join it.
        let group = bind("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let error = bind(group[0].local_addr().unwrap(), 2).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn a_burst_from_many_clients_is_answered_to_each_source() {
        let (workers, addr, metrics) = start("127.0.0.1:0", 2);
        let clients: Vec<UdpSocket> = (0..8).map(|_| client("127.0.0.1:0")).collect();
        // More than a batch per socket, sent before any is read.
        for round in 0..20 {
            for (c, socket) in clients.iter().enumerate() {
                socket
                    .send_to(format!("q{c}.{round}").as_bytes(), addr)
                    .unwrap();
            }
        }
        for (c, socket) in clients.iter().enumerate() {
            let me = socket.local_addr().unwrap();
            let mut got: Vec<String> = (0..20).filter_map(|_| recv(socket)).collect();
            got.sort();
            let mut want: Vec<String> = (0..20).map(|r| format!("q{c}.{r} from {me}")).collect();
            want.sort();
            assert_eq!(got, want, "client {c}");
        }
        workers.stop();
        // Every query was timed once.
        let text = metrics.encode();
        assert!(text.contains("lbdns_query_seconds_count 160"), "{text}");
    }

    #[test]
    fn a_datagram_larger_than_the_buffer_is_dropped() {
        let (workers, addr, metrics) = start("127.0.0.1:0", 1);
        let socket = client("127.0.0.1:0");
        socket.send_to(&[b'x'; DATAGRAM + 1], addr).unwrap();
        socket.send_to(&[b'y'; DATAGRAM], addr).unwrap();
        let me = socket.local_addr().unwrap();
        assert_eq!(recv(&socket), Some(format!("{DATAGRAM} bytes from {me}")));
        workers.stop();
        assert!(
            metrics
                .encode()
                .contains("lbdns_malformed_queries_total{reason=\"oversized\"} 1")
        );
    }

    #[test]
    fn ipv6_loopback() {
        let sockets = match bind("[::1]:0".parse().unwrap(), 2) {
            Ok(sockets) => sockets,
            Err(error) => {
                eprintln!("skipped: cannot bind [::1]: {error}");
                return;
            }
        };
        let addr = sockets[0].local_addr().unwrap();
        let mut workers = Workers::default();
        workers
            .serve(sockets, echo, &Arc::new(Metrics::new()))
            .unwrap();
        // The same port on IPv4 is free: the IPv6 sockets are IPv6 only.
        let (v4, _, _) = start(&format!("127.0.0.1:{}", addr.port()), 1);
        let socket = client("[::1]:0");
        socket.send_to(b"six", addr).unwrap();
        let me = socket.local_addr().unwrap();
        assert_eq!(recv(&socket), Some(format!("six from {me}")));
        workers.stop();
        v4.stop();
    }

    #[test]
    fn stop_joins_idle_workers_within_a_second() {
        let (workers, addr, _) = start("127.0.0.1:0", 3);
        let started = Instant::now();
        workers.stop();
        assert!(started.elapsed() < Duration::from_secs(1));
        // Nothing answers any more.
        let socket = client("127.0.0.1:0");
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        socket.send_to(b"late", addr).unwrap();
        assert_eq!(recv(&socket), None);
    }

    #[test]
    fn a_panicking_answer_drops_its_query_and_the_worker_lives_on() {
        let sockets = bind("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let addr = sockets[0].local_addr().unwrap();
        let mut workers = Workers::default();
        let answer = |query: &[u8], src, out: &mut [u8]| {
            assert_ne!(query, b"boom");
            echo(query, src, out)
        };
        workers
            .serve(sockets, answer, &Arc::new(Metrics::new()))
            .unwrap();
        let socket = client("127.0.0.1:0");
        socket.send_to(b"boom", addr).unwrap();
        socket.send_to(b"fine", addr).unwrap();
        let me = socket.local_addr().unwrap();
        assert_eq!(recv(&socket), Some(format!("fine from {me}")));
        workers.stop();
    }
}
