//! Test harness: start the real `lbdns` binary on a free loopback port with a directory of
//! our own, and query it over UDP and TCP with a small hickory-proto client or with `dig`.
//! Every server is killed when its handle drops; all traffic stays on 127.0.0.1.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};

/// The repository root, for shipped files.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tests' copy of the shipped example directory (`zones/`), in `tests/data/example`:
/// tests never read or change the tracked `zones/`, which the README's walkthrough edits.
/// `tests/files.rs` checks that the copy is the committed example.
pub fn example_dir() -> PathBuf {
    repo().join("tests/data/example")
}

/// How long a test waits for a condition a correct server meets within milliseconds
/// when the machine is idle. On a loaded 2-core machine (load 12 in CI) a process can wait
/// seconds for a CPU, so waits are generous: a condition met ends the wait at once, and
/// only a server that never meets it pays the whole of it.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `done` until it holds and returns how long that took; panics after
/// [`PATIENCE`], with `what` was awaited and `context()` (a log, say).
#[track_caller]
pub fn wait_until(
    what: &str,
    context: impl Fn() -> String,
    mut done: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < PATIENCE,
            "not within {PATIENCE:?}: {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// MaxMind's GeoIP2 Country test database (tests/data, MIT/Apache).
pub fn test_geoip() -> PathBuf {
    repo().join("tests/data/GeoIP2-Country-Test.mmdb")
}

/// A served directory in a temp dir: `zones/` with the given files.
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    pub fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("zones")).unwrap();
        let site = Self { dir };
        for (name, text) in files {
            site.write(name, text);
        }
        site
    }

    /// The shipped example's zones, copied from the tests' copy ([`example_dir`]).
    pub fn example() -> Self {
        Self::new(&[
            (
                "example.com.zone",
                &read(&example_dir().join("zones/example.com.zone")),
            ),
            (
                "example.com.lb.yaml",
                &read(&example_dir().join("zones/example.com.lb.yaml")),
            ),
        ])
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `zones/<name>`.
    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join("zones").join(name), text).unwrap();
    }

    /// Runs `lbdns check` on this directory with the test GeoIP database.
    pub fn check(&self) -> Output {
        Command::new(env!("CARGO_BIN_EXE_lbdns"))
            .args(["check", "--dir"])
            .arg(self.path())
            .arg("--geoip")
            .arg(test_geoip())
            .output()
            .expect("run lbdns check")
    }

    /// Starts a server on this directory with the test GeoIP database.
    pub fn serve(&self) -> Server {
        Server::start(self.path(), &["--geoip".as_ref(), test_geoip().as_os_str()])
    }
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A running `lbdns serve`.
pub struct Server {
    child: Child,
    /// DNS, UDP and TCP.
    pub addr: SocketAddr,
    /// The management API.
    pub api: SocketAddr,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Server {
    /// Starts `lbdns serve --dir DIR` on a free port and waits until it answers.
    pub fn start(dir: &Path, extra: &[&std::ffi::OsStr]) -> Self {
        Self::start_with_env(dir, extra, &[])
    }

    /// [`Server::start`] with environment variables set for the server.
    pub fn start_with_env(dir: &Path, extra: &[&std::ffi::OsStr], env: &[(&str, &Path)]) -> Self {
        let command = || {
            let mut command = Command::new(env!("CARGO_BIN_EXE_lbdns"));
            command.envs(env.iter().copied());
            command
        };
        Self::launch(command, dir, None, extra)
    }

    /// Runs `command()` (lbdns, or a wrapper that execs it with the arguments it is given)
    /// with `serve --dir DIR --listen <free port> --api API` (`api`, or a free port when
    /// `None`) and `extra`, its stderr kept as the log, and waits until it answers.
    ///
    /// A free port can still be taken by another process between [`free_port`] and the
    /// server's bind: when the server exits saying so, it is started again on other ports
    /// (a few times at most), so a test never fails on that race.
    fn launch(
        command: impl Fn() -> Command,
        dir: &Path,
        api: Option<SocketAddr>,
        extra: &[&std::ffi::OsStr],
    ) -> Self {
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            let addr = free_port();
            let api = api.unwrap_or_else(free_port);
            let log_dir = tempfile::tempdir().unwrap();
            let log = log_dir.path().join("lbdns.log");
            let child = command()
                .args(["serve", "--dir"])
                .arg(dir)
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--api")
                .arg(api.to_string())
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start lbdns");
            let mut server = Self {
                child,
                addr,
                api,
                log,
                _log_dir: log_dir,
            };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(status) => {
                    let log = server.log();
                    if log.contains("Address already in use") && attempt < ATTEMPTS {
                        eprintln!("port taken before lbdns bound it, starting again:\n{log}");
                        continue;
                    }
                    panic!("lbdns exited with {status}:\n{log}");
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Waits until the server answers; the exit status if it exits first. A start
    /// compiles every site before it answers, the longest step of most tests: a debug
    /// build on a loaded 2-core machine took over 30 s for 16,650 tasks (tests/store.rs),
    /// so a start gets four times [`PATIENCE`]; a server that hangs still fails the test.
    fn wait_ready(&mut self) -> Result<(), std::process::ExitStatus> {
        let patience = 4 * PATIENCE;
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(status);
            }
            let probe = Message::query_for(&Name::root(), RecordType::SOA);
            if udp_exchange(self.addr, &probe, Duration::from_millis(200)).is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("lbdns did not answer within {patience:?}:\n{}", self.log());
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server with SIGKILL, as a crash would, and reaps it.
    pub fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Asks over UDP; panics when there is no reply within [`PATIENCE`].
    pub fn udp(&self, query: &Message) -> Message {
        udp_exchange(self.addr, query, PATIENCE)
            .unwrap_or_else(|| panic!("no UDP reply to {query}"))
    }

    /// Asks over TCP; panics when there is no reply.
    pub fn tcp(&self, query: &Message) -> Message {
        tcp_exchange(self.addr, &query.to_vec().unwrap()).expect("TCP reply")
    }

    /// A plain query for `name`/`rtype` over UDP (no EDNS).
    pub fn ask(&self, name: &str, rtype: RecordType) -> Message {
        self.udp(&Message::query_for(&name.parse().unwrap(), rtype))
    }

    /// Sends raw bytes over UDP and returns the raw reply, if any within `wait`.
    pub fn udp_raw(&self, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(wait)).unwrap();
        socket.send_to(bytes, self.addr).unwrap();
        let mut buf = vec![0u8; 65535];
        let (n, _) = socket.recv_from(&mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    }

    /// Runs `dig @server -p PORT ARGS...` and returns its stdout.
    pub fn dig(&self, args: &[&str]) -> String {
        let output = Command::new("dig")
            .arg(format!("@{}", self.addr.ip()))
            .args([
                "-p",
                &self.addr.port().to_string(),
                "+norec",
                "+time=2",
                "+tries=1",
            ])
            .args(args)
            .output()
            .expect("dig is installed (apt-get install dnsutils)");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free for both UDP and TCP right now, never handed out before by this
/// test process, and below the kernel's ephemeral range (where the ports of clients and of
/// sockets bound to port 0 come from), so the clients of concurrent tests cannot take it
/// before the server binds it. Another process still can: [`Server`] retries on that.
pub fn free_port() -> SocketAddr {
    free_port_on(std::net::Ipv4Addr::LOCALHOST.into())
}

/// [`free_port`] on `ip` (e.g. `::1`); panics when `ip` cannot be bound at all.
pub fn free_port_on(ip: std::net::IpAddr) -> SocketAddr {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let (low, _) = ephemeral_range();
    // Registered ports (1024..) below the ephemeral range, at least a few thousand.
    let top = low.max(12_000);
    if let Err(e) = UdpSocket::bind((ip, 0)) {
        panic!("cannot bind {ip}: {e}");
    }
    loop {
        let port = rand::random_range(10_000..top);
        let mut given = GIVEN.lock().unwrap();
        let given = given.get_or_insert_with(HashSet::new);
        if given.contains(&port) {
            continue;
        }
        let addr = SocketAddr::new(ip, port);
        if UdpSocket::bind(addr).is_ok() && std::net::TcpListener::bind(addr).is_ok() {
            given.insert(port);
            return addr;
        }
    }
}

/// The kernel's ephemeral port range (`/proc/sys/net/ipv4/ip_local_port_range`).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((32_768, 60_999))
}

/// Extension helpers for building queries.
pub trait QueryExt {
    fn query_for(name: &Name, rtype: RecordType) -> Message;
}

impl QueryExt for Message {
    fn query_for(name: &Name, rtype: RecordType) -> Message {
        let mut message = Message::new(rand_id(), MessageType::Query, OpCode::Query);
        message.add_query(Query::query(name.clone(), rtype));
        message
    }
}

/// A query with EDNS(0) (payload `payload`) and, when given, an ECS option.
pub fn query_edns(name: &str, rtype: RecordType, payload: u16, ecs: Option<&str>) -> Message {
    let mut message = Message::query_for(&name.parse().unwrap(), rtype);
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    if let Some(ecs) = ecs {
        let subnet: ClientSubnet = ecs.parse().expect("ECS as CIDR");
        edns.options_mut().insert(EdnsOption::Subnet(subnet));
    }
    message.edns = Some(edns);
    message
}

/// The ECS option of a reply: (address, source prefix, scope prefix).
pub fn ecs_of(reply: &Message) -> Option<(std::net::IpAddr, u8, u8)> {
    let edns = reply.edns.as_ref()?;
    match edns.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some((s.addr(), s.source_prefix(), s.scope_prefix())),
        _ => None,
    }
}

/// The answer section's data as text, e.g. `["192.0.2.10"]`.
pub fn answers(reply: &Message) -> Vec<String> {
    reply.answers.iter().map(|r| r.data.to_string()).collect()
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn udp_exchange(addr: SocketAddr, query: &Message, wait: Duration) -> Option<Message> {
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    socket.set_read_timeout(Some(wait)).ok()?;
    socket.send_to(&query.to_vec().ok()?, addr).ok()?;
    let mut buf = vec![0u8; 65535];
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        let (n, _) = socket.recv_from(&mut buf).ok()?;
        let reply = Message::from_vec(&buf[..n]).ok()?;
        if reply.metadata.id == query.metadata.id {
            return Some(reply);
        }
    }
    None
}

/// Sends one length-prefixed message over TCP and reads one reply.
pub fn tcp_exchange(addr: SocketAddr, bytes: &[u8]) -> Option<Message> {
    Message::from_vec(&tcp_exchange_raw(addr, bytes)?).ok()
}

/// [`tcp_exchange`], the reply's bytes as they came.
pub fn tcp_exchange_raw(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(PATIENCE)).ok()?;
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).ok()?;
    Some(buf)
}

// ----- Helpers for tests/limits.rs: flags, an open-files limit, the API, metrics, CPU. -----

impl Site {
    /// Starts a server on this directory with the test GeoIP database and `extra` flags.
    pub fn serve_with(&self, extra: &[&str]) -> Server {
        let geoip = test_geoip();
        let mut args: Vec<&std::ffi::OsStr> = vec!["--geoip".as_ref(), geoip.as_os_str()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        Server::start(self.path(), &args)
    }

    /// Like [`Site::serve_with`], with the open-files limit (soft and hard) set to `nofile`
    /// by the shell that execs lbdns, so `pid()` is lbdns's own.
    pub fn serve_with_nofile(&self, extra: &[&str], nofile: u32) -> Server {
        let geoip = test_geoip();
        let mut args: Vec<&std::ffi::OsStr> = vec!["--geoip".as_ref(), geoip.as_os_str()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let command = || {
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
                .arg(env!("CARGO_BIN_EXE_lbdns"));
            command
        };
        Server::launch(command, self.path(), None, &args)
    }
}

impl Server {
    /// `GET path` on the API with `Connection: close`: (status, body), or `None` when no
    /// whole answer came within `wait`.
    pub fn http_get(&self, path: &str, wait: Duration) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&self.api, wait).ok()?;
        stream.set_read_timeout(Some(wait)).ok()?;
        stream.set_write_timeout(Some(wait)).ok()?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.api
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).ok()?;
        let text = String::from_utf8_lossy(&raw);
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n")?.1.to_string();
        Some((status, body))
    }

    /// The value of one sample of `/metrics`, e.g. `lbdns_responses_total{rcode="NOERROR"}`.
    pub fn metric_sample(&self, sample: &str) -> Option<f64> {
        let (_, text) = self.http_get("/metrics", PATIENCE)?;
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    }

    /// CPU time (user + system) the server process has used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = read(Path::new(&format!("/proc/{}/stat", self.pid())));
        // Fields after the command name in parentheses; utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("/proc/PID/stat")
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        let per_second: u64 = String::from_utf8(
            Command::new("getconf")
                .arg("CLK_TCK")
                .output()
                .expect("getconf")
                .stdout,
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap();
        Duration::from_millis(ticks * 1000 / per_second)
    }
}

impl Server {
    /// One API request with a JSON body (or none): (status, body), or `None` without a
    /// whole answer within [`PATIENCE`].
    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
        let wait = PATIENCE;
        let mut stream = TcpStream::connect_timeout(&self.api, wait).ok()?;
        stream.set_read_timeout(Some(wait)).ok()?;
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.api,
            body.len()
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).ok()?;
        let text = String::from_utf8_lossy(&raw);
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n")?.1.to_string();
        Some((status, body))
    }
}

// ---------------------------------------------------------------------------------------
// Metrics: how tests learn that a reload happened or was rejected (not from log wording)
// ---------------------------------------------------------------------------------------

/// The series counting accepted reloads.
pub const RELOADS_OK: &str = "lbdns_reloads_total{result=\"ok\"}";
/// The series counting rejected reloads.
pub const RELOADS_REJECTED: &str = "lbdns_reloads_total{result=\"rejected\"}";

/// What a reload did, as the metrics tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reloaded {
    Accepted,
    Rejected,
}

/// The value of the Prometheus series `series` (name and labels exactly as exported, e.g.
/// `lbdns_reloads_total{result="ok"}`) in the text exposition `text`.
pub fn metric_in(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

impl Server {
    /// `GET /metrics` from the management API (no token).
    pub fn metrics_text(&self) -> String {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(PATIENCE))
            .build()
            .into();
        agent
            .get(format!("http://{}/metrics", self.api))
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .unwrap_or_else(|e| panic!("GET /metrics: {e}\n{}", self.log()))
    }

    /// The value of one series; panics when the server does not export it.
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.metrics_text();
        metric_in(&text, series).unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
    }

    /// Sends SIGHUP and returns at once.
    pub fn sighup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP {}", self.pid());
    }

    /// Waits ([`PATIENCE`] at most) until the accepted or the rejected reload count moves
    /// past `before` (a pair from [`Server::reload_counts`]), and says which moved.
    pub fn wait_reload(&self, before: (f64, f64)) -> Reloaded {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let now = self.reload_counts();
            if now.0 > before.0 {
                return Reloaded::Accepted;
            }
            if now.1 > before.1 {
                return Reloaded::Rejected;
            }
            assert!(
                Instant::now() < deadline,
                "no reload counted within {PATIENCE:?} (ok, rejected still {before:?}):\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// (accepted, rejected) reloads so far.
    pub fn reload_counts(&self) -> (f64, f64) {
        let text = self.metrics_text();
        let get = |series| {
            metric_in(&text, series).unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        };
        (get(RELOADS_OK), get(RELOADS_REJECTED))
    }

    /// Runs `edit` (which must change what is on disk), sends SIGHUP and waits until the
    /// metrics count the reload, from SIGHUP or from the file watcher, whichever came first.
    pub fn reload_after(&self, edit: impl FnOnce()) -> Reloaded {
        let before = self.reload_counts();
        edit();
        self.sighup();
        self.wait_reload(before)
    }
}

/// Starts `lbdns serve --dir DIR` with the API on `api` (which may be any address, e.g.
/// a non-loopback one) and `extra` arguments; the returned server's `api` is `api`.
pub fn start_with_api(dir: &Path, api: SocketAddr, extra: &[&std::ffi::OsStr]) -> Server {
    let command = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lbdns"));
        command.env_remove("LBDNS_API_TOKEN");
        command
    };
    Server::launch(command, dir, Some(api), extra)
}

/// A required external tool: its path, or a failed test naming the package to install.
/// Tests never skip silently because a tool is missing (`.ci/run` installs them).
pub fn require_tool(candidates: &[&str], package: &str) -> String {
    candidates
        .iter()
        .find(|bin| {
            Command::new(bin)
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .map(|bin| (*bin).to_owned())
        .unwrap_or_else(|| {
            panic!(
                "{} is not installed: apt-get install {package}",
                candidates[0]
            )
        })
}

/// Pearson's chi-square statistic of `observed` counts against `expected` probabilities
/// (which sum to 1).
pub fn chi_square(observed: &[usize], expected: &[f64]) -> f64 {
    let n: usize = observed.iter().sum();
    observed
        .iter()
        .zip(expected)
        .map(|(&o, &p)| {
            let e = n as f64 * p;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

/// Upper 0.001 quantiles of the chi-square distribution by degrees of freedom (1..=5):
/// a correct server fails a check at this bound once in a thousand runs. Too loose for a
/// test against the real binary, whose draws are not seeded: use [`CHI2_1E7`] there.
pub const CHI2_999: [f64; 5] = [10.83, 13.82, 16.27, 18.47, 20.52];

/// Upper 1e-7 quantiles of the chi-square distribution by degrees of freedom (1..=5),
/// rounded up (Q(df/2, x/2) < 1e-7 at each, from the regularized upper incomplete gamma):
/// a correct server fails one check at this bound less than once in ten million runs, so
/// the suite's end-to-end share checks (7 in tests/balancing.rs) together fail by chance
/// less than once in a million runs. A wrong weight still fails by far: 3,000 draws at
/// 1:2 instead of 1:3 give chi2 ~ 110 against 28.38.
pub const CHI2_1E7: [f64; 5] = [28.38, 32.24, 35.41, 38.24, 40.87];

/// The answers of a `dig +short` run: its output's lines, each checked to be data and
/// not one of dig's own messages (";; communications error ...", "connection refused"),
/// which it also prints on standard output. Panics on those, naming them.
#[track_caller]
pub fn short_answers(out: &Output) -> Vec<String> {
    let text = stdout(out);
    assert!(out.status.success(), "dig failed: {}", describe(out));
    let lines: Vec<String> = text.lines().map(|l| l.trim().to_owned()).collect();
    for line in &lines {
        assert!(
            !line.is_empty() && !line.starts_with(';') && !line.contains("error"),
            "dig printed a message, not an answer: {line:?}\n{}",
            describe(out)
        );
    }
    lines
}

/// A command's standard output, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's standard error, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A command's exit status and both outputs, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    )
}

/// A field of `/proc/PID/status` in kB (`VmRSS`, or `VmHWM`: the peak resident memory).
pub fn status_kb(pid: u32, field: &str) -> u64 {
    let status = read(Path::new(&format!("/proc/{pid}/status")));
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status:\n{status}"))
}

/// The denial record types (NSEC, NSEC3) among the records of dig's output.
pub fn denial_types(out: &str) -> std::collections::BTreeSet<&str> {
    out.lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter(|t| matches!(*t, "NSEC" | "NSEC3"))
        .collect()
}

/// What a DNSSEC validator must conclude about an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A positive answer, validated from the trust anchor.
    Secure,
    /// NXDOMAIN or NODATA, its denial validated.
    SecureDenial,
    /// An answer proven insecure (below a delegation proven to have no DS).
    Insecure,
}

impl Expect {
    /// Whether BIND's `delv` printed `out` concluding this, and nothing bogus.
    pub fn concluded_by_delv(self, out: &str) -> bool {
        let concluded = match self {
            Expect::Secure => {
                out.contains("; fully validated") && !out.contains("resolution failed")
            }
            Expect::SecureDenial => {
                out.contains("fully validated") && out.contains("resolution failed: ncache")
            }
            Expect::Insecure => out.contains("; unsigned answer"),
        };
        concluded && !out.contains("broken trust chain") && !out.contains("bogus")
    }
}

/// The DS lines `lbdns keys ds` prints for `zone` served from `site`.
pub fn keys_ds(site: &Site, zone: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(["keys", "ds", "--dir"])
        .arg(site.path())
        .arg(zone)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    stdout(&out)
}

/// Writes at `path` a delv trust anchor file (BIND's `trust-anchors` statement) made of
/// `ds`, one DS record in presentation form (as `lbdns keys ds` or `dnssec-dsfromkey`
/// prints it), and returns `path`.
pub fn ds_anchor_file(path: PathBuf, ds: &str) -> PathBuf {
    let f: Vec<&str> = ds.split_whitespace().collect();
    let at = f
        .iter()
        .position(|w| *w == "DS")
        .unwrap_or_else(|| panic!("no DS in {ds:?}"));
    std::fs::write(
        &path,
        format!(
            "trust-anchors {{\n  {} static-ds {} {} {} \"{}\";\n}};\n",
            f[0],
            f[at + 1],
            f[at + 2],
            f[at + 3],
            f[at + 4..].concat()
        ),
    )
    .unwrap();
    path
}

/// BIND's `delv` asking the server at `addr` for `name`/`rtype`, validating from the trust
/// anchor file `anchor` (a `trust-anchors` statement) for `root`: what it printed, stdout
/// and stderr together, for [`Expect::concluded_by_delv`].
pub fn delv(addr: SocketAddr, anchor: &Path, root: &str, name: &str, rtype: &str) -> String {
    let delv = require_tool(&["delv"], "bind9-dnsutils");
    let out = Command::new(delv)
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string(), "-a"])
        .arg(anchor)
        .arg(format!("+root={root}"))
        .args([name, rtype])
        .output()
        .expect("run delv");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// unbound in the foreground on a free loopback port, resolving zones from lbdns as stub
/// zones: a real resolver in front of the server (tests/resolver.rs, dnssec.rs,
/// dnssec_tasks.rs). Stopped when dropped.
pub struct Unbound {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Unbound {
    /// Starts unbound asking lbdns at `lbdns` for each of `zones`; with `ecs`, passing the
    /// client's subnet on (a /32 for IPv4); with `anchor` (a DS or DNSKEY in zone-file
    /// form), validating from it. Returns once `dig ready_name A +short` through it gives
    /// `ready_answer`.
    pub fn start(
        lbdns: SocketAddr,
        zones: &[&str],
        ecs: bool,
        anchor: Option<&str>,
        (ready_name, ready_answer): (&str, &str),
    ) -> Self {
        let unbound = require_tool(&["unbound", "/usr/sbin/unbound"], "unbound");
        require_tool(&["dig"], "dnsutils");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port().port();
        let mut modules = vec!["iterator"];
        let mut options = String::new();
        if let Some(anchor) = anchor {
            let file = dir.path().join("anchor");
            std::fs::write(&file, anchor).unwrap();
            modules.insert(0, "validator");
            options += &format!("    trust-anchor-file: \"{}\"\n", file.display());
        }
        if ecs {
            modules.insert(0, "subnetcache");
            options += "    send-client-subnet: 127.0.0.1\n    max-client-subnet-ipv4: 32\n";
        }
        let stubs: String = zones
            .iter()
            .map(|zone| {
                format!(
                    "stub-zone:\n    name: \"{zone}\"\n    stub-addr: {}@{}\n",
                    lbdns.ip(),
                    lbdns.port()
                )
            })
            .collect();
        let conf = format!(
            "server:\n    interface: 127.0.0.1\n    port: {port}\n    do-daemonize: no\n\
             \x20   use-syslog: no\n    logfile: \"\"\n    verbosity: 1\n    username: \"\"\n\
             \x20   chroot: \"\"\n    directory: \"{dir}\"\n    pidfile: \"\"\n    do-ip6: no\n\
             \x20   num-threads: 1\n    so-reuseport: no\n    outgoing-range: 64\n\
             \x20   do-not-query-localhost: no\n    access-control: 127.0.0.0/8 allow\n\
             \x20   module-config: \"{modules}\"\n{options}    qname-minimisation: no\n{stubs}",
            dir = dir.path().display(),
            modules = modules.join(" "),
        );
        let conf_path = dir.path().join("unbound.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(unbound)
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start unbound");
        let unbound = Self {
            child,
            port,
            _dir: dir,
        };
        wait_until(
            &format!("unbound answering {ready_name} A with {ready_answer} through lbdns"),
            String::new,
            || {
                unbound
                    .dig(&[ready_name, "A", "+short"])
                    .contains(ready_answer)
            },
        );
        unbound
    }

    /// `dig` through unbound, one try of 3 s: what it printed.
    pub fn dig(&self, args: &[&str]) -> String {
        let out = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &self.port.to_string(),
                "+time=3",
                "+tries=1",
            ])
            .args(args)
            .output()
            .expect("dig is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
