//! Crash safety and reloads under load (SPEC §7, §8), against the real binary.
//!
//! - kill -9 while a client streams API changes: after a restart every acknowledged
//!   change is served and the site files parse;
//! - UDP and TCP query loads run while every way of changing the configuration is used
//!   in turn (API disable/enable, a site file edit picked up by the file watcher, another
//!   by SIGHUP, the same for the zone file and for the GeoIP file, and an invalid edit):
//!   each accepted change must switch the answers on both transports, none may be lost or
//!   answered with data no configuration had. Both print their figures.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use serde_json::json;

const ZONE: &str = "$ORIGIN example.com.\n$TTL 3600\n\
@ IN SOA ns1 hostmaster 1 7200 900 1209600 300\n\
@ NS ns1\n\
ns1 A 192.0.2.53\n\
www 300 A 192.0.2.80\n\
static 600 A 192.0.2.81\n";

const SITE: &str = "origin_groups:
  web:
    origins:
      - address: 192.0.2.10
        weight: 3
      - address: 192.0.2.11
tasks:
  - id: www
    hostname: www.example.com
    origin_group: web
    ttl: 30
";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

/// POSTs JSON; `Some(status)` when a reply came.
fn post(agent: &ureq::Agent, url: &str, body: Option<serde_json::Value>) -> Option<u16> {
    let request = agent.post(url);
    let response = match body {
        Some(body) => request.send_json(&body),
        None => request.send_empty(),
    };
    response.ok().map(|r| r.status().as_u16())
}

#[test]
fn a_crash_loses_no_acknowledged_change() {
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", SITE)]);
    let mut acknowledged: Vec<String> = Vec::new();
    let mut crashes = 0;
    for round in 0..3 {
        let mut server = site.serve();
        let base = format!("http://{}/v1/sites/example.com/tasks", server.api);
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (stop, acks) = (stop.clone(), acks.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut acked = Vec::new();
                for i in 0..400 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("r{round}-t{i}");
                    let body = json!({"id": id, "hostname": format!("{id}.example.com"), "origin_group": "web", "ttl": 5});
                    match post(&agent, &base, Some(body)) {
                        Some(201) => {
                            acked.push(id);
                            acks.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(other) => panic!("create {id}: HTTP {other}"),
                        None => break, // the server is gone
                    }
                }
                acked
            })
        };
        // Let some changes land (a few more each round), then crash in the middle of the
        // stream, while a write is most likely in flight.
        let deadline = Instant::now() + PATIENCE;
        while acks.load(Ordering::Relaxed) < 5 + 10 * round as usize {
            assert!(
                Instant::now() < deadline,
                "round {round}: the API acknowledged too little"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        server.crash();
        crashes += 1;
        stop.store(true, Ordering::Relaxed);
        let acked = writer.join().unwrap();
        assert!(
            !acked.is_empty(),
            "round {round}: no change was acknowledged before the crash"
        );
        acknowledged.extend(acked);

        // The files parse, and a restarted server serves every acknowledged task.
        let check = site.check();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let server = site.serve();
        for id in &acknowledged {
            let reply = server.ask(&format!("{id}.example.com."), RecordType::A);
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::NoError,
                "{id}: {reply}"
            );
            assert_eq!(reply.answers.len(), 1, "{id}: {reply}");
            assert_eq!(reply.answers[0].ttl, 5);
        }
        let leftovers: Vec<_> = std::fs::read_dir(site.path().join("zones"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "temp files left after restart: {leftovers:?}"
        );
    }
    println!(
        "crash safety: {crashes} kill -9 during API writes, {} acknowledged creates, all served after restart",
        acknowledged.len()
    );
}

// ---------------------------------------------------------------------------------------
// Reloads under load
// ---------------------------------------------------------------------------------------

/// The site of the load test: `www` and `geo` tasks, and groups to move `www` between.
const LOAD_SITE: &str = "origin_groups:
  web:
    origins:
      - address: 192.0.2.10
        weight: 3
      - address: 192.0.2.11
  web_b:
    origins:
      - address: 192.0.2.20
  web_c:
    origins:
      - address: 192.0.2.30
  geo:
    policy: region
    origins:
      - address: 198.51.100.1
        countries: [US]
      - address: 198.51.100.9
tasks:
  - id: www
    hostname: www.example.com
    origin_group: web
    ttl: 30
  - id: geo
    hostname: geo.example.com
    origin_group: geo
    ttl: 45
";

/// The ECS client of the `geo` queries. MaxMind's test database does not know 8.8.8.8
/// (default origin .9); the shipped database places it in the US (origin .1).
const GEO_CLIENT: &str = "8.8.8.8/32";

/// What one configuration answers for the three names the load asks.
#[derive(Clone, Copy, Debug)]
struct Expect {
    www: (&'static [&'static str], u32),
    static_: &'static str,
    geo: &'static str,
}

impl Expect {
    fn admits(&self, name: Q, got: &[(String, u32)]) -> bool {
        let (allowed, ttl): (&[&str], u32) = match name {
            Q::Www => self.www,
            Q::Static => (std::slice::from_ref(&self.static_), 600),
            Q::Geo => (std::slice::from_ref(&self.geo), 45),
        };
        matches!(got, [(a, t)] if *t == ttl && allowed.contains(&a.as_str()))
    }
}

/// The names the load asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Q {
    Www,
    Static,
    Geo,
}

impl Q {
    const ALL: [Self; 3] = [Self::Www, Self::Static, Self::Geo];

    fn query(self, id: u16) -> Message {
        let mut query = match self {
            Self::Www => Message::query_for(&"www.example.com.".parse().unwrap(), RecordType::A),
            Self::Static => {
                Message::query_for(&"static.example.com.".parse().unwrap(), RecordType::A)
            }
            Self::Geo => query_edns("geo.example.com.", RecordType::A, 1232, Some(GEO_CLIENT)),
        };
        query.metadata.id = id;
        query
    }
}

/// One answered query.
#[derive(Debug)]
struct Seen {
    tcp: bool,
    name: Q,
    sent: Instant,
    received: Instant,
    /// Records, or the error (rcode, no AA).
    got: Result<Vec<(String, u32)>, String>,
}

fn records(reply: &Message) -> Result<Vec<(String, u32)>, String> {
    if reply.metadata.response_code != ResponseCode::NoError || !reply.metadata.authoritative {
        return Err(format!(
            "{} aa={}",
            reply.metadata.response_code, reply.metadata.authoritative
        ));
    }
    Ok(reply
        .answers
        .iter()
        .map(|r| (r.data.to_string(), r.ttl))
        .collect())
}

/// What the load clients share.
#[derive(Default)]
struct Load {
    running: AtomicBool,
    seen: Mutex<Vec<Seen>>,
    /// UDP queries without a reply when the load ended, after a final wait.
    udp_lost: AtomicUsize,
    /// UDP replies that came after the client's first 1 s wait: slow, not lost.
    udp_late: AtomicUsize,
    /// TCP queries whose connection closed or failed before the reply.
    tcp_lost: AtomicUsize,
    tcp_connections: AtomicUsize,
}

/// A UDP client: one query at a time; a reply slower than 1 s is waited for in the
/// background (its id stays pending) and counted as late, and only the queries still
/// unanswered 3 s after the load ends count as lost.
fn udp_client(addr: SocketAddr, load: Arc<Load>, n: u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut buf = vec![0u8; 4096];
    let mut pending: HashMap<u16, (Q, Instant)> = HashMap::new();
    let mut id: u16 = n << 13;
    let mut receive = |socket: &UdpSocket,
                       pending: &mut HashMap<u16, (Q, Instant)>,
                       wanted: Option<u16>,
                       wait: Duration|
     -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            socket.set_read_timeout(Some(left)).unwrap();
            let Ok((len, _)) = socket.recv_from(&mut buf) else {
                return false;
            };
            let Ok(reply) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            let Some((name, sent)) = pending.remove(&reply.metadata.id) else {
                continue;
            };
            if Some(reply.metadata.id) != wanted {
                load.udp_late.fetch_add(1, Ordering::Relaxed);
            }
            load.seen.lock().unwrap().push(Seen {
                tcp: false,
                name,
                sent,
                received: Instant::now(),
                got: records(&reply),
            });
            if Some(reply.metadata.id) == wanted {
                return true;
            }
        }
    };
    while load.running.load(Ordering::Relaxed) {
        for name in Q::ALL {
            id = id.wrapping_add(1);
            let sent = Instant::now();
            socket
                .send_to(&name.query(id).to_vec().unwrap(), addr)
                .unwrap();
            pending.insert(id, (name, sent));
            // Unanswered within 1 s: it stays pending, and may still be answered late.
            receive(&socket, &mut pending, Some(id), Duration::from_secs(1));
        }
    }
    while !pending.is_empty() && receive(&socket, &mut pending, None, Duration::from_secs(3)) {}
    load.udp_lost.fetch_add(pending.len(), Ordering::Relaxed);
}

/// A TCP client: queries one at a time on a connection, opening a new one every 50
/// queries; a reply may take up to 10 s.
fn tcp_client(addr: SocketAddr, load: Arc<Load>, n: u16) {
    let mut id: u16 = n << 13;
    'connections: while load.running.load(Ordering::Relaxed) {
        let mut stream = TcpStream::connect(addr).expect("TCP connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        load.tcp_connections.fetch_add(1, Ordering::Relaxed);
        for _ in 0..50 {
            for name in Q::ALL {
                if !load.running.load(Ordering::Relaxed) {
                    break 'connections;
                }
                id = id.wrapping_add(1);
                let bytes = name.query(id).to_vec().unwrap();
                let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&bytes);
                let sent = Instant::now();
                let mut len = [0u8; 2];
                let reply = stream
                    .write_all(&framed)
                    .and_then(|()| stream.read_exact(&mut len))
                    .and_then(|()| {
                        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        stream.read_exact(&mut buf).map(|()| buf)
                    });
                let Ok(buf) = reply else {
                    load.tcp_lost.fetch_add(1, Ordering::Relaxed);
                    continue 'connections;
                };
                let got = Message::from_vec(&buf)
                    .map_err(|e| e.to_string())
                    .and_then(|m| match m.metadata.id == id {
                        true => records(&m),
                        false => Err(format!("reply id {} to query {id}", m.metadata.id)),
                    });
                load.seen.lock().unwrap().push(Seen {
                    tcp: true,
                    name,
                    sent,
                    received: Instant::now(),
                    got,
                });
            }
        }
    }
}

/// Rewrites a site file again and again with the same content, atomically (temp file and
/// rename), every 20 ms: the file watcher, which waits for 200 ms of quiet, never reloads
/// while it runs, so a change that shows up meanwhile came from SIGHUP.
struct Toucher {
    content: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Toucher {
    fn start(path: PathBuf, content: &str) -> Self {
        let content = Arc::new(Mutex::new(content.to_owned()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (content, stop) = (content.clone(), stop.clone());
            std::thread::spawn(move || {
                let temp = path.with_file_name(".toucher.tmp");
                while !stop.load(Ordering::Relaxed) {
                    let text = content.lock().unwrap().clone();
                    std::fs::write(&temp, text).unwrap();
                    std::fs::rename(&temp, &path).unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Self {
            content,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, content: &str) {
        *self.content.lock().unwrap() = content.to_owned();
    }

    fn append(&self, text: &str) {
        self.content.lock().unwrap().push_str(text);
    }
}

impl Drop for Toucher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Replaces `path` by a copy of `from`, atomically, as geoipupdate does.
fn replace_file(path: &Path, from: &Path) {
    let temp = path.with_file_name(".replace.tmp");
    std::fs::copy(from, &temp).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

/// One change of configuration: when it started and when it was known to be served.
struct Change {
    what: &'static str,
    start: Instant,
    done: Instant,
}

#[test]
fn every_reload_path_switches_answers_under_udp_and_tcp_load() {
    let site = Site::new(&[
        ("example.com.zone", ZONE),
        ("example.com.lb.yaml", LOAD_SITE),
    ]);
    std::fs::create_dir(site.path().join("geoip")).unwrap();
    let geoip = site.path().join("geoip/db.mmdb");
    let shipped = repo().join("geoip/geo-whois-asn-country.mmdb");
    std::fs::copy(test_geoip(), &geoip).unwrap();
    let server = Server::start(site.path(), &["--geoip".as_ref(), geoip.as_os_str()]);
    let site_file = site.path().join("zones/example.com.lb.yaml");
    let zone_file = site.path().join("zones/example.com.zone");

    let load = Arc::new(Load::default());
    load.running.store(true, Ordering::Relaxed);
    let clients: Vec<_> = (0..4u16)
        .map(|n| {
            let (load, addr) = (load.clone(), server.addr);
            std::thread::spawn(move || match n % 2 {
                0 => udp_client(addr, load, n),
                _ => tcp_client(addr, load, n),
            })
        })
        .collect();

    const WEB: &[&str] = &["192.0.2.10", "192.0.2.11"];
    let first = Expect {
        www: (WEB, 30),
        static_: "192.0.2.81",
        geo: "198.51.100.9",
    };
    let mut expect = vec![first];
    let mut changes: Vec<Change> = Vec::new();
    // Lets the load run on a configuration until both transports have had 20 answers to
    // queries sent after `since` ([`PATIENCE`] at most: slow replies are allowed, and a client
    // stuck on a lost query is reported as lost at the end).
    let steady = |since: Instant| {
        let deadline = Instant::now() + PATIENCE;
        std::thread::sleep(Duration::from_millis(100));
        while Instant::now() < deadline {
            let seen = load.seen.lock().unwrap();
            let after = |tcp: bool| {
                seen.iter()
                    .filter(|s| s.tcp == tcp && s.sent > since)
                    .count()
            };
            if after(false) >= 20 && after(true) >= 20 {
                return;
            }
            drop(seen);
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let agent = agent();
    let task = format!("http://{}/v1/sites/example.com/tasks/www", server.api);
    steady(Instant::now());

    // The watcher reloads 200 ms after the last file event (API writes and the toucher
    // make some): waiting longer before a watcher step makes sure it is this step's edit
    // that the watcher sees, not an earlier event's reload that picks the edit up.
    let settle_watcher = || std::thread::sleep(Duration::from_millis(600));

    // Each step: change, wait until the change is known to be served, let the load see it.
    let mut step = |what: &'static str, next: Expect, change: &mut dyn FnMut() -> Instant| {
        let start = Instant::now();
        let done = change();
        changes.push(Change { what, start, done });
        expect.push(next);
        steady(done);
    };

    // 1-2. The API: the reply comes once the change is served.
    let mut e = first;
    e.www = (&["192.0.2.80"], 300);
    step("API disable", e, &mut || {
        assert_eq!(post(&agent, &format!("{task}/disable"), None), Some(200));
        Instant::now()
    });
    e.www = (WEB, 30);
    step("API enable", e, &mut || {
        assert_eq!(post(&agent, &format!("{task}/enable"), None), Some(200));
        Instant::now()
    });

    // 3. A site file edit, picked up by the watcher (no SIGHUP).
    let site_b = LOAD_SITE.replace("origin_group: web\n", "origin_group: web_b\n");
    e.www = (&["192.0.2.20"], 30);
    settle_watcher();
    step("site file, watcher", e, &mut || {
        let before = server.reload_counts();
        std::fs::write(&site_file, &site_b).unwrap();
        assert_eq!(server.wait_reload(before), Reloaded::Accepted);
        Instant::now()
    });

    // The SIGHUP steps: the toucher holds the watcher off; the change must not be served
    // before SIGHUP, and must be after it. On a machine so loaded that the toucher stalls
    // for 200 ms, the watcher may reload first: then a comment added to the site file (no
    // answer changes) is the change SIGHUP must load instead, up to three more times.
    let by_sighup = |edit: &mut dyn FnMut(&Toucher), check: &dyn Fn() -> bool| {
        let current = std::fs::read_to_string(&site_file).unwrap();
        let toucher = Toucher::start(site_file.clone(), &current);
        std::thread::sleep(Duration::from_millis(100));
        for attempt in 0..4 {
            let before = server.reload_counts();
            match attempt {
                0 => edit(&toucher),
                n => toucher.append(&format!("# marker {n}\n")),
            }
            std::thread::sleep(Duration::from_millis(600));
            if server.reload_counts() != before {
                eprintln!("the watcher reloaded while the toucher ran (attempt {attempt})");
                continue;
            }
            if attempt == 0 {
                assert!(!check(), "the edit was served before SIGHUP");
            }
            server.sighup();
            assert_eq!(server.wait_reload(before), Reloaded::Accepted);
            let done = Instant::now();
            assert!(check(), "SIGHUP reloaded but the answer did not switch");
            drop(toucher);
            // The watcher's own reload, once quiet, finds nothing new.
            let after = server.reload_counts();
            settle_watcher();
            assert_eq!(
                server.reload_counts(),
                after,
                "a second reload after SIGHUP"
            );
            return done;
        }
        panic!("the watcher reloaded in each of four SIGHUP windows: the machine is too loaded");
    };
    let www_is = |want: &'static str| {
        let server = &server;
        move || answers(&server.ask("www.example.com.", RecordType::A)) == [want]
    };

    // 4. A site file edit, by SIGHUP.
    let site_c = LOAD_SITE.replace("origin_group: web\n", "origin_group: web_c\n");
    e.www = (&["192.0.2.30"], 30);
    step("site file, SIGHUP", e, &mut || {
        by_sighup(&mut |t| t.set(&site_c), &www_is("192.0.2.30"))
    });

    // 5. A zone file edit, by the watcher.
    let zone_82 = ZONE.replace("192.0.2.81", "192.0.2.82");
    e.static_ = "192.0.2.82";
    settle_watcher();
    step("zone file, watcher", e, &mut || {
        let before = server.reload_counts();
        std::fs::write(&zone_file, &zone_82).unwrap();
        assert_eq!(server.wait_reload(before), Reloaded::Accepted);
        Instant::now()
    });

    // 6. A zone file edit, by SIGHUP.
    let zone_83 = ZONE.replace("192.0.2.81", "192.0.2.83");
    let static_is = |want: &'static str| {
        let server = &server;
        move || answers(&server.ask("static.example.com.", RecordType::A)) == [want]
    };
    e.static_ = "192.0.2.83";
    step("zone file, SIGHUP", e, &mut || {
        by_sighup(
            &mut |_| std::fs::write(&zone_file, &zone_83).unwrap(),
            &static_is("192.0.2.83"),
        )
    });

    // 7. The GeoIP file replaced, by the watcher: 8.8.8.8 is now in the US.
    e.geo = "198.51.100.1";
    settle_watcher();
    step("GeoIP file, watcher", e, &mut || {
        let before = server.reload_counts();
        replace_file(&geoip, &shipped);
        assert_eq!(server.wait_reload(before), Reloaded::Accepted);
        Instant::now()
    });

    // 8. The GeoIP file replaced back, by SIGHUP.
    let geo_is = |want: &'static str| {
        let server = &server;
        move || {
            let query = query_edns("geo.example.com.", RecordType::A, 1232, Some(GEO_CLIENT));
            answers(&server.udp(&query)) == [want]
        }
    };
    e.geo = "198.51.100.9";
    step("GeoIP file, SIGHUP", e, &mut || {
        by_sighup(
            &mut |_| replace_file(&geoip, &test_geoip()),
            &geo_is("198.51.100.9"),
        )
    });

    // 9. An invalid zone edit: rejected, counted, and the last good configuration serves.
    settle_watcher();
    let before = server.reload_counts();
    std::fs::write(
        &zone_file,
        ZONE.replace("static 600 A", "static 600 A 999.1.2.3 ;"),
    )
    .unwrap();
    assert_eq!(server.wait_reload(before), Reloaded::Rejected);
    assert_eq!(server.metric("lbdns_config_valid"), 0.0);
    steady(Instant::now());

    load.running.store(false, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let seen = std::mem::take(&mut *load.seen.lock().unwrap());

    // Every answer must be one that a configuration in force during the query gives:
    // configuration j is served from some time in [start_j, done_j] until some time in
    // [start_j+1, done_j+1].
    let mut wrong = Vec::new();
    for s in &seen {
        let possible: Vec<usize> = (0..expect.len())
            .filter(|&j| {
                let from = if j == 0 {
                    None
                } else {
                    Some(changes[j - 1].start)
                };
                let until = changes.get(j).map(|c| c.done);
                from.is_none_or(|f| s.received >= f) && until.is_none_or(|u| s.sent <= u)
            })
            .collect();
        let ok = match &s.got {
            Ok(got) => possible.iter().any(|&j| expect[j].admits(s.name, got)),
            Err(_) => false,
        };
        if !ok {
            wrong.push(format!(
                "{} {:?}: {:?} (configurations possible: {possible:?})",
                if s.tcp { "TCP" } else { "UDP" },
                s.name,
                s.got
            ));
        }
    }
    let (udp_lost, tcp_lost) = (
        load.udp_lost.load(Ordering::Relaxed),
        load.tcp_lost.load(Ordering::Relaxed),
    );
    let slowest = seen
        .iter()
        .map(|s| s.received - s.sent)
        .max()
        .unwrap_or_default();
    let count = |tcp: bool| seen.iter().filter(|s| s.tcp == tcp).count();
    println!(
        "reload under load: {} UDP and {} TCP answers ({} TCP connections) during {} changes and one rejected edit: \
         {udp_lost} UDP and {tcp_lost} TCP queries lost, {} UDP replies late (> 1 s), slowest {slowest:?}, {} answered wrongly",
        count(false),
        count(true),
        load.tcp_connections.load(Ordering::Relaxed),
        changes.len(),
        load.udp_late.load(Ordering::Relaxed),
        wrong.len()
    );
    assert_eq!((udp_lost, tcp_lost), (0, 0), "queries lost during reloads");
    assert!(
        count(false) > 300 && count(true) > 300,
        "the load was too light to mean anything"
    );
    assert!(
        wrong.is_empty(),
        "wrong answers: {:?}",
        &wrong[..wrong.len().min(10)]
    );
    // Each change was seen on both transports: queries sent after it was served.
    for (j, change) in changes.iter().enumerate() {
        let until = changes.get(j + 1).map(|c| c.start);
        for tcp in [false, true] {
            let after = seen
                .iter()
                .filter(|s| s.tcp == tcp && s.sent > change.done)
                .filter(|s| until.is_none_or(|u| s.received < u))
                .count();
            assert!(
                after >= 10,
                "{}: only {after} {} answers while it was served",
                change.what,
                if tcp { "TCP" } else { "UDP" }
            );
        }
    }
}
