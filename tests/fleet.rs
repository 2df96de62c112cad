#![cfg(feature = "etcd")]
//! Nodes sharing their configuration through etcd (issue 10, first part): a one-member
//! etcd cluster on loopback, the shipped example imported into it, two lbdns nodes started
//! with `--store`. A task created through one node is answered by the other; while etcd
//! is down the nodes keep answering, a change is refused with 503, and a node restarted
//! meanwhile serves its own copy; once etcd is back, changes flow again.
//!
//! Needs `etcd` (Debian package `etcd-server`); the test fails, it does not skip, without it.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{PATIENCE, example_dir, free_port, require_tool, test_geoip};
use serde_json::json;

/// A one-member etcd cluster on loopback.
struct Etcd {
    child: Child,
    /// Its standard error.
    log: PathBuf,
}

impl Etcd {
    fn start(data: &Path, client: SocketAddr, peer: SocketAddr) -> Self {
        Self::member("test", data, client, peer, &format!("test=http://{peer}"))
    }

    /// One member of the cluster `initial` (`name=http://peer,...`).
    fn member(
        name: &str,
        data: &Path,
        client: SocketAddr,
        peer: SocketAddr,
        initial: &str,
    ) -> Self {
        let etcd = require_tool(&["etcd", "/usr/bin/etcd"], "etcd-server");
        let url = |a: SocketAddr| format!("http://{a}");
        let mut command = Command::new(etcd);
        command
            .args(["--name", name, "--data-dir"])
            .arg(data)
            .args(["--listen-client-urls", &url(client)])
            .args(["--advertise-client-urls", &url(client)])
            .args(["--listen-peer-urls", &url(peer)])
            .args(["--initial-advertise-peer-urls", &url(peer)])
            .args(["--initial-cluster", initial]);
        Self::spawn(command, data, client)
    }

    /// Runs `command` (etcd, its data in `data`) and waits until it listens on `client`;
    /// panics with what it logged when it exits first (a port taken since [`free_port`]
    /// chose it, say), rather than leaving the test to time out talking to nobody.
    fn spawn(mut command: Command, data: &Path, client: SocketAddr) -> Self {
        let log = data.with_extension("log");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start etcd");
        let mut etcd = Self { child, log };
        let start = Instant::now();
        while std::net::TcpStream::connect(client).is_err() {
            if let Ok(Some(status)) = etcd.child.try_wait() {
                panic!(
                    "etcd exited with {status} before listening on {client}:\n{}",
                    std::fs::read_to_string(&etcd.log).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < PATIENCE,
                "etcd not listening on {client} within {PATIENCE:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        etcd
    }
}

impl Etcd {
    /// A one-member cluster whose clients must speak TLS and show a certificate signed by
    /// `certs/ca.pem` (see [`make_certificates`]).
    fn start_tls(data: &Path, client: SocketAddr, peer: SocketAddr, certs: &Path) -> Self {
        let etcd = require_tool(&["etcd", "/usr/bin/etcd"], "etcd-server");
        let mut command = Command::new(etcd);
        command
            .args(["--name", "tls", "--data-dir"])
            .arg(data)
            .args(["--listen-client-urls", &format!("https://{client}")])
            .args(["--advertise-client-urls", &format!("https://{client}")])
            .args(["--listen-peer-urls", &format!("http://{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://{peer}")])
            .args(["--initial-cluster", &format!("tls=http://{peer}")])
            .arg("--cert-file")
            .arg(certs.join("server.pem"))
            .arg("--key-file")
            .arg(certs.join("server.key"))
            .arg("--trusted-ca-file")
            .arg(certs.join("ca.pem"))
            .arg("--client-cert-auth");
        Self::spawn(command, data, client)
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with the
/// openssl command in `dir`: `ca.pem`, `server.pem`/`.key`, `client.pem`/`.key`.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &key,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=lbdns test CA",
            ],
        ]
        .concat(),
    );
    for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n"),
        )
        .unwrap();
        let (key_file, csr) = (format!("{name}.key"), format!("{name}.csr"));
        openssl(
            &[
                &["req"][..],
                &key,
                &[
                    "-keyout",
                    &key_file,
                    "-out",
                    &csr,
                    "-subj",
                    &format!("/CN={name}"),
                ],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.pem"),
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An lbdns node serving `--store URL`, mirrored into `cache`.
struct Node {
    child: Child,
    dns: SocketAddr,
    api: SocketAddr,
    log: PathBuf,
}

impl Node {
    fn start(store: &str, cache: &Path, log: PathBuf) -> Self {
        Self::start_as(store, cache, log, None)
    }

    /// A node named by each of `ids`, its cache and its log (`<id>.log`) under `dir`.
    fn fleet_of(store: &str, dir: &Path, ids: &[&str]) -> Vec<Self> {
        ids.iter()
            .map(|id| {
                let log = dir.join(format!("{id}.log"));
                Self::start_as(store, &dir.join(id), log, Some(id))
            })
            .collect()
    }

    /// Starts a node on free ports; a port taken by another process before the node
    /// bound it (the node exits saying so) is retried on other ports, a few times.
    fn start_as(store: &str, cache: &Path, log: PathBuf, id: Option<&str>) -> Self {
        Self::start_with(store, cache, log, id, &[])
    }

    /// [`Node::start_as`] with more options (`--etcd-ca FILE`...).
    fn start_with(
        store: &str,
        cache: &Path,
        log: PathBuf,
        id: Option<&str>,
        extra: &[std::ffi::OsString],
    ) -> Self {
        for attempt in 1..=5 {
            let (dns, api) = (free_port(), free_port());
            let mut command = Command::new(env!("CARGO_BIN_EXE_lbdns"));
            command
                .args(["serve", "--store", store, "--cache-dir"])
                .arg(cache)
                .args(extra);
            if let Some(id) = id {
                command.args(["--node-id", id]);
            }
            let child = command
                .arg("--geoip")
                .arg(test_geoip())
                .args(["--listen", &dns.to_string(), "--api", &api.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start lbdns");
            let mut node = Self {
                child,
                dns,
                api,
                log: log.clone(),
            };
            let deadline = Instant::now() + PATIENCE;
            loop {
                if let Ok(Some(status)) = node.child.try_wait() {
                    if node.log().contains("Address already in use") && attempt < 5 {
                        break;
                    }
                    panic!("lbdns exited with {status}:\n{}", node.log());
                }
                if node
                    .try_short("www.example.com.")
                    .is_some_and(|a| !a.is_empty())
                {
                    return node;
                }
                assert!(
                    Instant::now() < deadline,
                    "the node did not answer within {PATIENCE:?}:\n{}",
                    node.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `dig +short NAME A` at this node: the answers, one a line (empty for none);
    /// panics when dig got no answer (its error text is never taken for one).
    fn short(&self, name: &str) -> String {
        self.try_short(name).unwrap_or_else(|| {
            panic!(
                "no DNS answer from {} for {name}:\n{}",
                self.dns,
                self.log()
            )
        })
    }

    /// [`Node::short`], `None` when dig got no answer (a timeout, a refused connection:
    /// dig prints those on stdout as `;;` lines and exits non-zero).
    fn try_short(&self, name: &str) -> Option<String> {
        let out = Command::new("dig")
            .args([
                &format!("@{}", self.dns.ip()),
                "-p",
                &self.dns.port().to_string(),
            ])
            .args(["+short", "+time=1", "+tries=1", name, "A"])
            .output()
            .expect("dig is installed");
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let message = text
            .lines()
            .any(|l| l.starts_with(';') || l.contains("error"));
        (out.status.success() && !message).then_some(text)
    }

    /// True when the node answers `name` with at least one A record (over UDP, without
    /// starting a process: for timing).
    fn answers(&self, name: &str) -> bool {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut query = hickory_proto::op::Message::new(
            7,
            hickory_proto::op::MessageType::Query,
            hickory_proto::op::OpCode::Query,
        );
        query.add_query(hickory_proto::op::Query::query(
            hickory_proto::rr::Name::from_ascii(name).unwrap(),
            hickory_proto::rr::RecordType::A,
        ));
        socket.send_to(&query.to_vec().unwrap(), self.dns).unwrap();
        let mut buf = [0u8; 1500];
        match socket.recv_from(&mut buf) {
            // Our id, and ANCOUNT > 0.
            Ok((n, _)) if n > 12 && buf[..2] == [0, 7] => u16::from_be_bytes([buf[6], buf[7]]) > 0,
            _ => false,
        }
    }

    /// Waits until the answer for `name` satisfies `ok`; returns how long it took.
    fn wait_for(&self, name: &str, ok: impl Fn(&str) -> bool, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let answer = self.try_short(name);
            if answer.as_deref().is_some_and(&ok) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "{name} at {}: {answer:?} after {within:?}\n{}",
                self.dns,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GETs `path` from this node's API as JSON.
    fn get(&self, path: &str) -> serde_json::Value {
        ureq::get(format!("http://{}{path}", self.api))
            .call()
            .expect("the API answers")
            .body_mut()
            .read_json()
            .expect("JSON")
    }

    /// The status of `GET path` on this node's API.
    fn status(&self, path: &str) -> u16 {
        ureq::get(format!("http://{}{path}", self.api))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .expect("the API answers")
            .status()
            .as_u16()
    }

    /// The ids of the live nodes this node sees.
    fn fleet(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.get("/v1/nodes")["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// PUTs a task through this node's API; returns the status and body.
    fn put_task(&self, id: &str) -> (u16, String) {
        self.put_task_with(id, 30, false)
    }

    /// PUTs the task `id` with `ttl`; with `create_only`, as `If-None-Match: *`.
    fn put_task_with(&self, id: &str, ttl: u32, create_only: bool) -> (u16, String) {
        let body =
            format!(r#"{{"hostname": "{id}.example.com", "origin_group": "web", "ttl": {ttl}}}"#);
        let request = ureq::put(format!(
            "http://{}/v1/sites/example.com/tasks/{id}",
            self.api
        ))
        .header("Content-Type", "application/json");
        let request = match create_only {
            true => request.header("If-None-Match", "*"),
            false => request,
        };
        let reply = request
            .config()
            .http_status_as_error(false)
            .timeout_global(Some(PATIENCE))
            .build()
            .send(body);
        let mut reply = reply.expect("the API answers");
        let status = reply.status().as_u16();
        (
            status,
            reply.body_mut().read_to_string().unwrap_or_default(),
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn nodes_share_changes_through_etcd_and_ride_out_its_outage() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let data = dir.path().join("etcd");
    let etcd = Etcd::start(&data, client, peer);
    let store = format!("etcd://{client}/lbdns");

    // The shipped example, imported.
    assert_eq!(import_example(&store), "imported 2 files into lbdns\n");

    let cache = |n: &str| dir.path().join(n);
    let log = |n: &str| dir.path().join(format!("{n}.log"));
    let a = Node::start(&store, &cache("a"), log("a"));
    let b = Node::start(&store, &cache("b"), log("b"));

    // A change through A is answered by B.
    assert_eq!(a.put_task("shared").0, 201);
    let took = b.wait_for("shared.example.com.", |a| !a.is_empty(), PATIENCE);
    eprintln!("a task created through node A was answered by node B after {took:?}");

    // A node's cache directory is its own: a second node on it refuses to start.
    let refusal = refused_start(&store, &cache("a"));
    assert!(
        refusal.contains(&format!("pid {}", a.child.id())),
        "{refusal}"
    );
    assert_eq!(a.get("/healthz")["etcd"]["connected"], json!(true));

    // etcd down: both keep answering; a change is refused (503) and changes nothing.
    drop(etcd);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!a.short("shared.example.com.").is_empty());
    let (status, body) = a.put_task("during");
    assert_eq!(status, 503, "{body}");
    // A JSON error like every other, with a one-line message, not the gRPC status dump.
    let error: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(error["error"]["code"], "unavailable", "{body}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("etcd cannot be reached"), "{message}");
    // No debug dump of the client's error chain (`source: tonic::transport::Error(...)`).
    assert!(
        !message.contains('\n')
            && message.len() < 400
            && !message.contains("tonic")
            && !message.contains("Os {"),
        "{message}"
    );
    eprintln!("a change during the outage: 503 {message}");
    assert!(a.short("during.example.com.").is_empty());
    // /healthz says etcd cannot be reached, in one line.
    eventually("/healthz to show etcd down", PATIENCE, || {
        a.get("/healthz")["etcd"]["connected"] == json!(false)
    });
    let health = a.get("/healthz");
    assert_eq!(health["status"], "degraded", "{health}");
    let why = health["etcd"]["error"].as_str().unwrap_or_default();
    assert!(!why.is_empty() && !why.contains('\n'), "{health}");

    // A node restarted during the outage starts from its own copy.
    drop(b);
    let b = Node::start(&store, &cache("b"), log("b2"));
    assert!(!b.short("shared.example.com.").is_empty());
    assert!(
        b.log().contains("serving the copy from the last run"),
        "{}",
        b.log()
    );

    // etcd back: changes flow again, both ways.
    let _etcd = Etcd::start(&data, client, peer);
    let start = Instant::now();
    let (mut status, mut body) = (0, String::new());
    while start.elapsed() < PATIENCE {
        (status, body) = b.put_task("after");
        if status == 201 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(status, 201, "{body}");
    a.wait_for("after.example.com.", |a| !a.is_empty(), PATIENCE);
    eventually("/healthz to show etcd back", PATIENCE, || {
        a.get("/healthz")["etcd"]["connected"] == json!(true)
    });
}

/// Starts a node on `cache` that must refuse to start; what it said.
fn refused_start(store: &str, cache: &Path) -> String {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(["serve", "--store", store, "--cache-dir"])
        .arg(cache)
        .arg("--geoip")
        .arg(test_geoip())
        .args(["--listen", &free_port().to_string()])
        .args(["--api", &free_port().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a second node on the same cache directory still runs after {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let said = std::fs::read_to_string(log.path()).unwrap();
    assert!(!status.success(), "{said}");
    said
}

#[test]
fn concurrent_changes_on_two_nodes_never_lose_one() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let _etcd = Etcd::start(&dir.path().join("etcd"), client, peer);
    let store = format!("etcd://{client}/lbdns");
    import_example(&store);
    let a = Node::start(&store, &dir.path().join("a"), dir.path().join("a.log"));
    let b = Node::start(&store, &dir.path().join("b"), dir.path().join("b.log"));
    let remade = || {
        let made_again = "were made again on the newest";
        a.log().matches(made_again).count() + b.log().matches(made_again).count()
    };

    // Each round, both nodes change the same site at once, each a task of its own: both
    // changes are made (the one that lost the etcd race is made again on the winner's
    // version), and neither is lost.
    const ROUNDS: usize = 100;
    for round in 0..ROUNDS {
        let barrier = std::sync::Barrier::new(2);
        let (ra, rb) = std::thread::scope(|s| {
            let ra = s.spawn(|| {
                barrier.wait();
                a.put_task(&format!("ra{round}"))
            });
            let rb = s.spawn(|| {
                barrier.wait();
                b.put_task(&format!("rb{round}"))
            });
            (ra.join().unwrap(), rb.join().unwrap())
        });
        for ((status, body), id) in [(ra, format!("ra{round}")), (rb, format!("rb{round}"))] {
            assert_eq!(status, 201, "round {round}, {id}: {body}");
        }
    }
    let raced = remade();
    eprintln!(
        "{ROUNDS} simultaneous pairs of changes: all made, {raced} made again on a newer version"
    );
    assert!(
        raced > 0,
        "no pair of changes raced in {ROUNDS} rounds: nothing was tested"
    );
    // Every acknowledged task is on both nodes, in the API and in the answers.
    for round in 0..ROUNDS {
        for id in [format!("ra{round}"), format!("rb{round}")] {
            for node in [&a, &b] {
                let name = format!("{id}.example.com.");
                eventually(&format!("{name} at {}", node.dns), PATIENCE, || {
                    node.answers(&name)
                });
            }
        }
    }
    let listed = a.get("/v1/sites/example.com/tasks")["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["id"].as_str().is_some_and(|id| id.starts_with('r')))
        .count();
    assert_eq!(listed, 2 * ROUNDS);

    // A real conflict: the same new task, different, created on both nodes at once. One
    // wins; the other is refused (409) and left no trace: the task is the winner's.
    for round in 0..10 {
        let id = format!("same{round}");
        let barrier = std::sync::Barrier::new(2);
        let (ra, rb) = std::thread::scope(|s| {
            let ra = s.spawn(|| {
                barrier.wait();
                a.put_task_with(&id, 60, true)
            });
            let rb = s.spawn(|| {
                barrier.wait();
                b.put_task_with(&id, 120, true)
            });
            (ra.join().unwrap(), rb.join().unwrap())
        });
        let winner = match (ra.0, rb.0) {
            (201, 409) => 60,
            (409, 201) => 120,
            other => panic!("{id}: {other:?}, expected one 201 and one 409: {ra:?} {rb:?}"),
        };
        let refused = if winner == 60 { &rb.1 } else { &ra.1 };
        assert!(refused.contains("already exists"), "{refused}");
        for node in [&a, &b] {
            eventually(&format!("{id} on {}", node.api), PATIENCE, || {
                let path = format!("/v1/sites/example.com/tasks/{id}");
                node.status(&path) == 200 && node.get(&path)["ttl"] == winner
            });
        }
    }
}

/// `lbdns import` of the shipped example into `store`, retried while etcd starts;
/// returns what it printed.
fn import_example(store: &str) -> String {
    let start = Instant::now();
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_lbdns"))
            .args(["import", "--dir"])
            .arg(example_dir())
            .args(["--store", store])
            .output()
            .unwrap();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            start.elapsed() < PATIENCE,
            "import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `check` holds, polling; panics with `what` after `within`.
fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

#[test]
fn a_task_is_effective_once_every_live_node_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let _etcd = Etcd::start(&dir.path().join("etcd"), client, peer);
    let store = format!("etcd://{client}/lbdns");
    import_example(&store);
    let a = Node::start_as(
        &store,
        &dir.path().join("a"),
        dir.path().join("a.log"),
        Some("a"),
    );
    let b = Node::start_as(
        &store,
        &dir.path().join("b"),
        dir.path().join("b.log"),
        Some("b"),
    );
    eventually("both nodes in the fleet", PATIENCE, || {
        a.fleet() == ["a", "b"]
    });
    // Each node says which GeoIP database it answers from, and that its health checks
    // have their first results (the example checks none).
    let built = maxminddb::Reader::open_readfile(test_geoip())
        .unwrap()
        .metadata()
        .build_epoch;
    eventually("every node reporting", PATIENCE, || {
        a.get("/v1/nodes")["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|node| {
                node["geoip_build_epoch"] == json!(built) && node["health_ready"] == json!(true)
            })
    });
    // Tasks loaded at start are effective with no change made: each node serves them.
    eventually("the shipped tasks effective fleet-wide", PATIENCE, || {
        a.get("/v1/sites/example.com/tasks/www")["status"] == "effective"
    });
    let listing = Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(["nodes", "--api", &a.api.to_string()])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains("a (this one)") && listing.contains("\nb "),
        "{listing}"
    );
    // Each node's line names the revision of each file it serves, and when its GeoIP
    // database was built (an RFC 3339 time, under its own column).
    let files: Vec<&str> = listing
        .lines()
        .skip(1)
        .filter(|line| line.contains("example.com.lb.yaml@") && line.contains("example.com.zone@"))
        .collect();
    assert_eq!(files.len(), 2, "{listing}");
    assert!(
        listing.starts_with("NODE") && listing.contains("GEOIP BUILT"),
        "{listing}"
    );
    for line in &files {
        assert!(
            line.split_whitespace()
                .any(|word| humantime::parse_rfc3339(word).is_ok()),
            "no GeoIP build time: {line}\n{listing}"
        );
    }

    // A change while node B cannot apply it (stopped): deploying, B not applied, and the
    // change's own reply says so (not what node A alone serves).
    b.signal("-STOP");
    let (status, reply) = a.put_task("late");
    assert_eq!(status, 201, "{reply}");
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["status"], "deploying", "{reply}");
    let b_in_reply = reply["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["node"] == "b"))
        .map(|n| n["applied"].clone());
    assert_eq!(b_in_reply, Some(json!(false)), "{reply}");
    let task = a.get("/v1/sites/example.com/tasks/late");
    assert_eq!(task["status"], "deploying", "{task}");
    let b_progress = task["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "b")
        .cloned();
    assert_eq!(
        b_progress.map(|n| n["applied"].clone()),
        Some(json!(false)),
        "{task}"
    );
    // B's lease expires: it drops out, and the task is effective on the live fleet.
    let gone = eventually("the stopped node to drop out", PATIENCE, || {
        a.fleet() == ["a"]
    });
    eprintln!("a stopped node left the fleet {gone:?} after the change");
    assert_eq!(
        a.get("/v1/sites/example.com/tasks/late")["status"],
        "effective"
    );

    // B resumes: it rejoins, catches up, and the task stays effective everywhere.
    b.signal("-CONT");
    eventually("the resumed node to rejoin", PATIENCE, || {
        a.fleet() == ["a", "b"]
    });
    b.wait_for("late.example.com.", |x| !x.is_empty(), PATIENCE);
    eventually("effective with both nodes", PATIENCE, || {
        a.get("/v1/sites/example.com/tasks/late")["status"] == "effective"
    });
}

/// A three-member etcd cluster, three nodes: time to effective across the fleet, and a
/// query load that loses nothing while the whole cluster is down and back.
#[test]
fn three_nodes_on_a_three_member_cluster_lose_no_query_in_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let members: Vec<(String, SocketAddr, SocketAddr)> = (0..3)
        .map(|i| (format!("m{i}"), free_port(), free_port()))
        .collect();
    let initial = members
        .iter()
        .map(|(n, _, p)| format!("{n}=http://{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let start_cluster = || -> Vec<Etcd> {
        members
            .iter()
            .map(|(n, c, p)| Etcd::member(n, &dir.path().join(n), *c, *p, &initial))
            .collect()
    };
    let cluster = start_cluster();
    let endpoints: Vec<String> = members.iter().map(|(_, c, _)| c.to_string()).collect();
    let store = format!("etcd://{}/lbdns", endpoints.join(","));
    import_example(&store);
    let nodes = Node::fleet_of(&store, dir.path(), &["a", "b", "c"]);
    eventually("three nodes in the fleet", PATIENCE, || {
        nodes[0].fleet() == ["a", "b", "c"]
    });

    // Time to effective: from the API's reply on A to every node serving the change.
    let asked = Instant::now();
    assert_eq!(nodes[0].put_task("three").0, 201);
    eventually("effective on the three nodes", PATIENCE, || {
        nodes[0].get("/v1/sites/example.com/tasks/three")["status"] == "effective"
    });
    let took = asked.elapsed();
    for node in &nodes {
        assert!(!node.short("three.example.com.").is_empty());
    }
    eprintln!("time to effective across three nodes: {took:?}");

    // A bounded query load on the three nodes while the whole cluster stops and starts.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (sent, lost) = std::thread::scope(|s| {
        let load = s.spawn(|| {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.set_read_timeout(Some(PATIENCE)).unwrap();
            let query = {
                let mut q = hickory_proto::op::Message::new(
                    0,
                    hickory_proto::op::MessageType::Query,
                    hickory_proto::op::OpCode::Query,
                );
                q.add_query(hickory_proto::op::Query::query(
                    hickory_proto::rr::Name::from_ascii("three.example.com.").unwrap(),
                    hickory_proto::rr::RecordType::A,
                ));
                q.to_vec().unwrap()
            };
            let (mut sent, mut lost) = (0u32, 0u32);
            let mut buf = [0u8; 1500];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 20_000 {
                let node = &nodes[sent as usize % 3];
                let mut q = query.clone();
                q[..2].copy_from_slice(&(sent as u16).to_be_bytes());
                socket.send_to(&q, node.dns).unwrap();
                match socket.recv_from(&mut buf) {
                    Ok((n, _))
                        if n > 12
                            && buf[..2] == q[..2]
                            && u16::from_be_bytes([buf[6], buf[7]]) == 1 => {}
                    _ => lost += 1,
                }
                sent += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            (sent, lost)
        });
        std::thread::sleep(Duration::from_millis(500));
        drop(cluster);
        // During the outage: a change is refused, the answers go on.
        let (status, body) = nodes[1].put_task("outage");
        assert_eq!(status, 503, "{body}");
        std::thread::sleep(Duration::from_secs(2));
        let _cluster = start_cluster();
        eventually("a change accepted after the outage", PATIENCE, || {
            nodes[2].put_task("after").0 == 201
        });
        eventually("the change everywhere", PATIENCE, || {
            nodes
                .iter()
                .all(|n| !n.short("after.example.com.").is_empty())
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        load.join().unwrap()
    });
    eprintln!("{sent} queries across three nodes during the outage and recovery, {lost} lost");
    assert!(sent > 500, "{sent}");
    assert_eq!(lost, 0);
}

/// Runs `lbdns ARGS`; (success, stdout, stderr).
fn lbdns(args: &[&str], dir: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The zone and site files of `dir/zones`, by name.
fn files_of(dir: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_dir(dir.join("zones"))
        .unwrap()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(e.path()).unwrap())
        })
        .collect()
}

#[test]
fn import_into_a_live_prefix_refuses_and_shows_what_would_change() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let _etcd = Etcd::start(&dir.path().join("etcd"), client, peer);
    let store = format!("etcd://{client}/lbdns");
    let zone = |origin: &str| {
        format!(
            "$ORIGIN {origin}.\n$TTL 300\n@ SOA ns1 hostmaster 1 7200 900 1209600 300\n@ NS ns1\nns1 A 192.0.2.53\n"
        )
    };
    let site = |tasks: usize| {
        let mut text = String::from(
            "origin_groups:\n  web:\n    origins:\n    - address: 192.0.2.10\ntasks:\n",
        );
        for i in 0..tasks {
            text.push_str(&format!(
                "- hostname: t{i}.example.com\n  origin_group: web\n"
            ));
        }
        text
    };
    let write = |name: &str, files: &[(&str, String)]| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.join("zones")).unwrap();
        for (file, text) in files {
            std::fs::write(path.join("zones").join(file), text).unwrap();
        }
        path
    };
    // The fleet's configuration: 12 tasks, and a zone the new directory lacks.
    let live = write(
        "live",
        &[
            ("example.com.zone", zone("example.com")),
            ("example.com.lb.yaml", site(12)),
            ("gone.test.zone", zone("gone.test")),
        ],
    );
    // A directory with 6 tasks and another new zone.
    let other = write(
        "other",
        &[
            ("example.com.zone", zone("example.com")),
            ("example.com.lb.yaml", site(6)),
            ("new.test.zone", zone("new.test")),
        ],
    );
    let start = Instant::now();
    let first = loop {
        let (ok, out, err) = lbdns(&["import", "--store", &store], &live);
        if ok {
            break out;
        }
        assert!(start.elapsed() < PATIENCE, "import: {err}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(first, "imported 3 files into lbdns\n");

    // Again, the same files: nothing to do.
    let (ok, out, err) = lbdns(&["import", "--store", &store], &live);
    assert!(
        ok && out.contains("already holds these 3 files"),
        "{out}{err}"
    );

    // Another directory: refused, with every difference, and etcd left as it was.
    let (ok, out, err) = lbdns(&["import", "--store", &store], &other);
    assert!(!ok, "{out}");
    for line in [
        "change  example.com.lb.yaml (12 tasks -> 6 tasks)",
        "add     new.test.zone",
        "remove  gone.test.zone",
        "--force",
    ] {
        assert!(err.contains(line), "{line:?} in:\n{err}");
    }
    let saved = dir.path().join("saved");
    let (ok, _, err) = lbdns(&["export", "--store", &store], &saved);
    assert!(ok, "{err}");
    assert_eq!(files_of(&saved), files_of(&live));

    // With --force, etcd holds exactly the new directory's files.
    let (ok, out, err) = lbdns(&["import", "--force", "--store", &store], &other);
    assert!(ok, "{err}");
    assert!(out.contains("replaced"), "{out}");
    let replaced = dir.path().join("replaced");
    let (ok, _, err) = lbdns(&["export", "--store", &store], &replaced);
    assert!(ok, "{err}");
    assert_eq!(files_of(&replaced), files_of(&other));
}

/// A change made through one node's API takes, on every other node, the path an API change
/// takes there: the site is recompiled alone and published (no reload of every file, as a
/// file edit would cause); and it is answered by the three nodes soon after the reply.
#[test]
fn a_change_on_one_node_is_applied_by_the_others_without_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let _etcd = Etcd::start(&dir.path().join("etcd"), client, peer);
    let store = format!("etcd://{client}/lbdns");
    import_example(&store);
    let nodes = Node::fleet_of(&store, dir.path(), &["a", "b", "c"]);
    eventually("three nodes in the fleet", PATIENCE, || {
        nodes[0].fleet() == ["a", "b", "c"]
    });

    // Each change through a different node; timed from the request to the moment the
    // last of the three nodes answers the new name.
    let mut took = Vec::new();
    for round in 0..12 {
        let id = format!("ttl{round}");
        let name = format!("{id}.example.com.");
        let asked = Instant::now();
        let (status, body) = nodes[round % 3].put_task(&id);
        assert_eq!(status, 201, "{body}");
        for node in &nodes {
            while !node.answers(&name) {
                assert!(
                    asked.elapsed() < PATIENCE,
                    "{name} not answered by {} within {PATIENCE:?}:\n{}",
                    node.dns,
                    node.log()
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        took.push(asked.elapsed());
    }
    took.sort();
    eprintln!(
        "time to effective on three nodes over {} changes: median {:?}, worst {:?}",
        took.len(),
        took[took.len() / 2],
        took[took.len() - 1]
    );
    for node in &nodes {
        let log = node.log();
        assert!(
            !log.contains("configuration reloaded"),
            "a change from another node reloaded every file at {}:\n{log}",
            node.dns
        );
    }
}

/// A fleet on a cluster that speaks only TLS, asks for a client certificate and has
/// authentication on (SPEC §13: etcds://, --etcd-ca/--etcd-cert/--etcd-key, --etcd-user
/// and --etcd-password-file): import, three nodes, a change on each answered by the other two;
/// a wrong password, a missing client certificate and a missing CA are refused, each
/// saying so.
#[test]
fn a_fleet_on_etcd_over_tls_with_a_user() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    make_certificates(&certs);
    let (client, peer) = (free_port(), free_port());
    let _etcd = Etcd::start_tls(&dir.path().join("etcd"), client, peer, &certs);
    let read = |name: &str| std::fs::read(certs.join(name)).unwrap();

    // Authentication on: a root user with a password (etcd's own client, over TLS).
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read("ca.pem")))
            .identity(etcd_client::Identity::from_pem(
                read("client.pem"),
                read("client.key"),
            ));
        let options = etcd_client::ConnectOptions::new()
            .with_tls(tls)
            .with_connect_timeout(Duration::from_secs(2));
        let start = Instant::now();
        let mut etcd = loop {
            let connected =
                etcd_client::Client::connect([client.to_string()], Some(options.clone())).await;
            let error = match connected {
                Ok(mut etcd) => match etcd.status().await {
                    Ok(_) => break etcd,
                    Err(e) => e,
                },
                Err(e) => e,
            };
            assert!(start.elapsed() < PATIENCE, "etcd over TLS: {error}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        etcd.user_add("root", "correct horse", None).await.unwrap();
        etcd.user_grant_role("root", "root").await.unwrap();
        etcd.auth_enable().await.unwrap();
    });

    std::fs::write(dir.path().join("password"), "correct horse\n").unwrap();
    std::fs::write(dir.path().join("wrong"), "battery staple\n").unwrap();
    let store = format!("etcds://{client}/lbdns");
    let access = |password: &str, with_certificate: bool| -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> =
            vec!["--etcd-ca".into(), certs.join("ca.pem").into()];
        if with_certificate {
            args.extend(["--etcd-cert".into(), certs.join("client.pem").into()]);
            args.extend(["--etcd-key".into(), certs.join("client.key").into()]);
        }
        args.extend(["--etcd-user".into(), "root".into()]);
        args.extend([
            "--etcd-password-file".into(),
            dir.path().join(password).into(),
        ]);
        args
    };
    let import = |extra: &[std::ffi::OsString]| {
        Command::new(env!("CARGO_BIN_EXE_lbdns"))
            .args(["import", "--dir"])
            .arg(example_dir())
            .args(["--store", &store])
            .args(extra)
            .output()
            .unwrap()
    };

    // What is refused, and says why.
    let refused = |extra: &[std::ffi::OsString], why: &str| {
        let out = import(extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprint!("refused: {stderr}");
        assert!(
            !out.status.success() && stderr.contains(why),
            "{why:?} in: {stderr}"
        );
    };
    refused(&access("wrong", true), "authentication failed");
    refused(
        &access("password", false),
        "needs --etcd-cert and --etcd-key",
    );
    refused(&access("password", true)[2..], "needs --etcd-ca");

    let out = import(&access("password", true));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = |id: &str| {
        Node::start_with(
            &store,
            &dir.path().join(id),
            dir.path().join(format!("{id}.log")),
            Some(id),
            &access("password", true),
        )
    };
    let nodes = [start("a"), start("b"), start("c")];
    eventually("three nodes in the fleet", PATIENCE, || {
        nodes[0].fleet() == ["a", "b", "c"]
    });
    // A change through each node, answered by the other two.
    for (i, node) in nodes.iter().enumerate() {
        let id = format!("secure{i}");
        let (status, body) = node.put_task(&id);
        assert_eq!(status, 201, "{body}");
        for other in &nodes {
            other.wait_for(&format!("{id}.example.com."), |x| !x.is_empty(), PATIENCE);
        }
    }
    for node in &nodes {
        let health = node.get("/healthz");
        assert_eq!(health["etcd"]["connected"], true, "{health}");
    }
}

/// knotd serving `big.test` on `listen` to anyone on loopback: the primary of a zone too
/// large for etcd.
struct Primary {
    child: Child,
    dir: tempfile::TempDir,
}

impl Primary {
    fn start(zone_text: &str) -> (Self, SocketAddr) {
        let dir = tempfile::tempdir().unwrap();
        let listen = free_port();
        let d = dir.path().display();
        std::fs::write(dir.path().join("big.test.zone"), zone_text).unwrap();
        let conf = format!(
            "server:\n    rundir: \"{d}\"\n    listen: {ip}@{port}\n\
             log:\n  - target: stderr\n    any: info\n\
             database:\n    storage: \"{d}\"\n\
             acl:\n  - id: transfer\n    address: 127.0.0.0/8\n    action: transfer\n\
             template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-sync: -1\n    journal-content: none\n\
             zone:\n  - domain: big.test\n    file: big.test.zone\n    acl: transfer\n",
            ip = listen.ip(),
            port = listen.port(),
        );
        std::fs::write(dir.path().join("knot.conf"), conf).unwrap();
        let knotd = require_tool(&["knotd", "/usr/sbin/knotd"], "knot");
        let child = Command::new(knotd)
            .arg("-c")
            .arg(dir.path().join("knot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("knotd.log")).unwrap())
            .spawn()
            .expect("start knotd");
        (Self { child, dir }, listen)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("knotd.log")).unwrap_or_default()
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address of `h{i}.big.test` in the big zone.
fn big_address(i: u32) -> String {
    format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)
}

/// A zone file larger than one etcd request is refused by `import`, which says to name a
/// primary instead (issue 17: a fleet that holds big zones); named by its site file, the
/// zone is transferred by every node from the primary (knotd), and a task over one of its
/// names, created on one node, is answered by the other.
#[test]
fn a_zone_too_large_for_etcd_is_taken_by_every_node_from_its_primary() {
    const RECORDS: u32 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let _etcd = Etcd::start(&dir.path().join("etcd"), client, peer);
    let store = format!("etcd://{client}/lbdns");

    let mut zone = String::from(
        "$ORIGIN big.test.\n$TTL 300\n@ SOA ns1 admin 1 3600 600 86400 300\n@ NS ns1\nns1 A 192.0.2.1\n",
    );
    for i in 0..RECORDS {
        zone.push_str(&format!("h{i} A {}\n", big_address(i)));
    }
    assert!(
        zone.len() > 1_572_864,
        "more than etcd's default request limit"
    );
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("zones")).unwrap();
    for name in ["example.com.zone", "example.com.lb.yaml"] {
        std::fs::copy(
            example_dir().join("zones").join(name),
            site.join("zones").join(name),
        )
        .unwrap();
    }
    std::fs::write(site.join("zones/big.test.zone"), &zone).unwrap();
    let (ok, _, err) = lbdns(&["import", "--store", &store], &site);
    assert!(!ok, "a 2 MB zone file imported into etcd");
    assert!(
        err.contains("big.test.zone")
            && err.contains("primary:")
            && err.contains("nothing was imported"),
        "{err}"
    );

    let (primary, address) = Primary::start(&zone);
    std::fs::remove_file(site.join("zones/big.test.zone")).unwrap();
    std::fs::write(
        site.join("zones/big.test.lb.yaml"),
        format!(
            "primary:\n  addresses: [\"{address}\"]\n\
             origin_groups:\n  pool:\n    origins:\n      - address: 192.0.2.10\n"
        ),
    )
    .unwrap();
    // Two zones that fit one etcd request each but not together: two transactions.
    for origin in ["one.test", "two.test"] {
        let mut zone = format!(
            "$ORIGIN {origin}.\n$TTL 300\n@ SOA ns1 admin 1 3600 600 86400 300\n@ NS ns1\nns1 A 192.0.2.1\n"
        );
        for i in 0..RECORDS / 2 {
            zone.push_str(&format!("h{i} A {}\n", big_address(i)));
        }
        assert!((800_000..1_500_000).contains(&zone.len()));
        std::fs::write(site.join(format!("zones/{origin}.zone")), zone).unwrap();
    }
    let (ok, out, err) = lbdns(&["import", "--store", &store], &site);
    assert!(ok, "{out}{err}");

    let nodes = Node::fleet_of(&store, dir.path(), &["a", "b"]);
    let last = format!("h{}.big.test.", RECORDS - 1);
    for node in &nodes {
        node.wait_for(
            &last,
            |a| a == big_address(RECORDS - 1),
            Duration::from_secs(60),
        );
        assert_eq!(node.short("h5.big.test."), big_address(5));
        let last = RECORDS / 2 - 1;
        for origin in ["one.test", "two.test"] {
            assert_eq!(node.short(&format!("h{last}.{origin}.")), big_address(last));
        }
    }

    let reply = ureq::put(format!(
        "http://{}/v1/sites/big.test/tasks/h5",
        nodes[0].api
    ))
    .header("Content-Type", "application/json")
    .config()
    .http_status_as_error(false)
    .build()
    .send(r#"{"hostname": "h5.big.test", "origin_group": "pool"}"#)
    .expect("the API answers");
    assert_eq!(reply.status().as_u16(), 201, "{}", primary.log());
    for node in &nodes {
        node.wait_for(
            "h5.big.test.",
            |a| a == "192.0.2.10",
            Duration::from_secs(60),
        );
        assert_eq!(
            node.short("h6.big.test."),
            big_address(6),
            "the rest of the zone stays"
        );
    }
}
