//! Traffic steering beyond weight and region (SPEC §12) with the real `lbdns` binary:
//! fallback chains and `when_all_down` against real TCP origins on 127.0.0.x that the
//! test stops and starts, and `lbdns check` refusing broken chains.
//!
//! Expectations come from the site file the test writes (which addresses each group
//! holds, the task's TTL), never from lbdns's code. All traffic stays on 127.0.0.0/8;
//! every wait is bounded.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::Value;

const ZONE: &str = "\
$ORIGIN example.com.
$TTL 300
@   IN SOA ns1 hostmaster 1 7200 900 1209600 300
@   NS  ns1
ns1 A   192.0.2.53
";

const GROUPS: &str = "/v1/sites/example.com/origin-groups";

/// A loopback TCP origin: accepts and closes connections until stopped, then refuses
/// them (a `tcp` check fails).
struct Origin {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Origin {
    fn start(addr: SocketAddr) -> Self {
        let mut origin = Self {
            addr,
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        origin.resume();
        origin
    }

    fn resume(&mut self) {
        assert!(self.thread.is_none());
        let listener =
            TcpListener::bind(self.addr).unwrap_or_else(|e| panic!("bind {}: {e}", self.addr));
        listener.set_nonblocking(true).unwrap();
        self.stop = Arc::new(AtomicBool::new(false));
        let stop = self.stop.clone();
        self.thread = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => drop(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }));
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port free on 127.0.0.1, used on every 127.0.0.x of the test.
fn shared_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The origin groups of `name` from the API.
fn group(server: &Server, name: &str) -> Value {
    let (status, body) = server.http("GET", GROUPS, None).expect("the API answers");
    assert_eq!(status, 200, "{body}");
    let groups: Value = serde_json::from_str(&body).unwrap();
    groups["origin_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("no group {name}: {body}"))
        .clone()
}

/// Waits until every origin of every group in `groups` is in state `want`.
#[track_caller]
fn wait_states(server: &Server, groups: &[&str], origin: &str, want: &str) {
    let start = Instant::now();
    for name in groups {
        loop {
            let g = group(server, name);
            let state = g["origins"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["address"] == origin)
                .map(|o| o["health"]["state"].as_str().unwrap_or("none").to_owned());
            if state.as_deref() == Some(want) {
                break;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "{origin} of {name} is {state:?}, not {want}: {g}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The addresses `name` A answers over `n` queries, each answer's TTL checked.
#[track_caller]
fn answered(server: &Server, name: &str, n: usize, ttl: u32) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        let reply = server.ask(name, RecordType::A);
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{reply}"
        );
        assert!(reply.answers.iter().all(|r| r.ttl == ttl), "{reply}");
        seen.extend(answers(&reply));
    }
    seen
}

fn set(addresses: &[&str]) -> BTreeSet<String> {
    addresses.iter().map(|a| a.to_string()).collect()
}

fn fallback_metric(server: &Server, group: &str, kind: &str, to: &str) -> f64 {
    server
        .metric_sample(&format!(
            "lbdns_fallback_total{{site=\"example.com\",group=\"{group}\",kind=\"{kind}\",to=\"{to}\"}}"
        ))
        .unwrap_or(0.0)
}

/// Interval 0.3 s, fall 2, rise 2: an origin leaves within about 0.6 s.
const CHECK: &str = "{type: tcp, port: PORT, interval: 0.3, timeout: 0.2, fall: 2, rise: 2}";

#[test]
fn a_group_going_down_hands_over_along_its_chain_then_to_when_all_down_and_back() {
    let port = shared_port();
    let at = |host: &str| -> SocketAddr { format!("{host}:{port}").parse().unwrap() };
    let (a1, a2, b, c) = ("127.0.0.21", "127.0.0.22", "127.0.0.31", "127.0.0.41");
    let mut origins: Vec<Origin> = [a1, a2, b, c]
        .iter()
        .map(|h| Origin::start(at(h)))
        .collect();
    let check = CHECK.replace("PORT", &port.to_string());
    // Three heads on the same two origins, each needing both up, that differ only in
    // what they answer when the whole chain (head, backup, last) is down.
    let head = |when: &str| {
        format!(
            "    health_check: {check}\n    min_up: 2\n    fallback: backup\n{when}    origins:\n    - address: {a1}\n    - address: {a2}\n"
        )
    };
    let yaml = format!(
        "origin_groups:\n  sf:\n{}  nd:\n{}  fo:\n{}  backup:\n    health_check: {check}\n    fallback: last\n    origins:\n    - address: {b}\n  last:\n    health_check: {check}\n    origins:\n    - address: {c}\ntasks:\n- hostname: sf.example.com\n  origin_group: sf\n  ttl: 7\n- hostname: nd.example.com\n  origin_group: nd\n  ttl: 7\n- hostname: fo.example.com\n  origin_group: fo\n  ttl: 7\n",
        head("    when_all_down: servfail\n"),
        head("    when_all_down: nodata\n"),
        head(""),
    );
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", &yaml)]);
    let check_out = site.check();
    assert!(check_out.status.success(), "{}", describe(&check_out));
    let server = site.serve();
    let heads = ["sf", "nd", "fo"];
    for origin in [a1, a2] {
        wait_states(&server, &heads, origin, "up");
    }
    wait_states(&server, &["backup"], b, "up");
    wait_states(&server, &["last"], c, "up");
    for name in ["sf", "nd", "fo"] {
        let host = format!("{name}.example.com");
        assert_eq!(answered(&server, &host, 60, 7), set(&[a1, a2]), "{host}");
        assert_eq!(group(&server, name)["serving"], name);
    }

    // One origin of two down: fewer than min_up, the backup answers, with the task's TTL.
    origins[1].stop();
    wait_states(&server, &heads, a2, "down");
    for name in heads {
        let host = format!("{name}.example.com");
        assert_eq!(answered(&server, &host, 20, 7), set(&[b]), "{host}");
        assert_eq!(group(&server, name)["serving"], "backup");
        assert!(fallback_metric(&server, name, "group", "backup") >= 20.0);
    }

    // The backup down too: the next group of the chain.
    origins[2].stop();
    wait_states(&server, &["backup"], b, "down");
    for name in heads {
        let host = format!("{name}.example.com");
        assert_eq!(answered(&server, &host, 20, 7), set(&[c]), "{host}");
        assert_eq!(group(&server, name)["serving"], "last");
        assert!(fallback_metric(&server, name, "group", "last") >= 20.0);
    }

    // The whole chain down: each head's when_all_down.
    origins[3].stop();
    wait_states(&server, &["last"], c, "down");
    let reply = server.ask("sf.example.com", RecordType::A);
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::ServFail,
        "{reply}"
    );
    assert!(reply.answers.is_empty(), "{reply}");
    let reply = server.ask("nd.example.com", RecordType::A);
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NoError,
        "{reply}"
    );
    assert!(reply.answers.is_empty(), "{reply}");
    assert_eq!(reply.authorities.len(), 1, "{reply}");
    assert_eq!(reply.authorities[0].record_type(), RecordType::SOA);
    // Fail open answers from the head, preferring its origin still up.
    assert_eq!(answered(&server, "fo.example.com", 20, 7), set(&[a1]));
    for name in heads {
        assert_eq!(group(&server, name)["serving"], Value::Null, "{name}");
    }
    assert_eq!(fallback_metric(&server, "sf", "all_down", "servfail"), 1.0);
    assert_eq!(fallback_metric(&server, "nd", "all_down", "nodata"), 1.0);
    assert_eq!(
        fallback_metric(&server, "fo", "all_down", "fail_open"),
        20.0
    );

    // The head recovers: it answers again, whatever the rest of the chain.
    origins[1].resume();
    wait_states(&server, &heads, a2, "up");
    for name in heads {
        let host = format!("{name}.example.com");
        assert_eq!(answered(&server, &host, 60, 7), set(&[a1, a2]), "{host}");
        assert_eq!(group(&server, name)["serving"], name);
    }
}

/// A site with the address groups `a`, `b`, `c`, the CNAME group `n` and a task on `a`;
/// tests add fallback keys to the groups.
fn chain_site() -> Site {
    let yaml = "origin_groups:\n  a:\n    origins:\n    - address: 192.0.2.1\n  b:\n    origins:\n    - address: 192.0.2.2\n  c:\n    origins:\n    - address: 192.0.2.3\n  n:\n    origins:\n    - address: origin.example.net\ntasks:\n- hostname: www.example.com\n  origin_group: a\n";
    Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", yaml)])
}

#[test]
fn check_refuses_cycles_unknown_groups_and_mixed_chains_naming_the_chain() {
    for (keys, want) in [
        (
            &[
                ("a", "fallback: b"),
                ("b", "fallback: c"),
                ("c", "fallback: a"),
            ][..],
            "origin_groups.a.fallback: the fallback chain a -> b -> c -> a is a cycle",
        ),
        (
            &[("a", "fallback: b"), ("b", "fallback: nowhere")][..],
            "origin_groups.b.fallback: the fallback chain b -> nowhere names no origin group",
        ),
        (
            &[("a", "fallback: n")][..],
            "its fallback n answers domain names (CNAME) but a answers addresses",
        ),
        (&[("a", "min_up: 2")][..], "min_up 2 is out of range 1..1"),
    ] {
        let site = chain_site();
        let mut text = read(&site.path().join("zones/example.com.lb.yaml"));
        for (group, key) in keys {
            text = text.replace(
                &format!("  {group}:\n    origins:"),
                &format!("  {group}:\n    {key}\n    origins:"),
            );
        }
        site.write("example.com.lb.yaml", &text);
        let out = site.check();
        assert!(!out.status.success(), "{keys:?} accepted:\n{text}");
        let err = stderr(&out);
        assert!(err.contains(want), "{keys:?}: want {want:?} in:\n{err}");
        assert!(
            err.contains("example.com.lb.yaml:"),
            "names the file: {err}"
        );
    }
    // A chain that ends is fine.
    let site = chain_site();
    let text = read(&site.path().join("zones/example.com.lb.yaml"))
        .replace("  a:\n    origins:", "  a:\n    fallback: b\n    origins:")
        .replace("  b:\n    origins:", "  b:\n    fallback: c\n    origins:");
    site.write("example.com.lb.yaml", &text);
    let out = site.check();
    assert!(out.status.success(), "{}", describe(&out));
}

#[test]
fn a_sticky_task_gives_a_client_prefix_the_same_origin_with_its_prefix_as_scope() {
    require_tool(&["dig"], "dnsutils");
    let origins: String = (1..=8)
        .map(|i| format!("    - address: 192.0.2.{i}\n"))
        .collect();
    let yaml = format!(
        "origin_groups:\n  web:\n    origins:\n{origins}tasks:\n- hostname: www.example.com\n  origin_group: web\n  stickiness: client_subnet\n"
    );
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", &yaml)]);
    let server = site.serve();
    let answer = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("www.example.com.") && l.contains("\tA\t"))
            .unwrap_or_else(|| panic!("no A record: {out}"))
            .to_owned()
    };
    let first = server.dig(&["+subnet=198.51.100.77/32", "www.example.com", "A"]);
    assert!(
        first.contains("; CLIENT-SUBNET: 198.51.100.77/32/24"),
        "{first}"
    );
    // The same /24 from another address, twice: the same origin, scope /24.
    for _ in 0..2 {
        let again = server.dig(&["+subnet=198.51.100.0/24", "www.example.com", "A"]);
        assert!(
            again.contains("; CLIENT-SUBNET: 198.51.100.0/24/24"),
            "{again}"
        );
        assert_eq!(answer(&again), answer(&first));
    }
    // Many prefixes: each keeps its origin, and they do not all get one.
    let mut seen = BTreeSet::new();
    for n in 0..64 {
        let ecs = format!("10.{n}.0.0/24");
        let ask = || {
            let reply = server.udp(&query_edns(
                "www.example.com.",
                RecordType::A,
                1232,
                Some(&ecs),
            ));
            assert_eq!(ecs_of(&reply).map(|e| e.2), Some(24), "{reply}");
            answers(&reply)
        };
        let one = ask();
        assert_eq!(one, ask(), "{ecs}");
        seen.extend(one);
    }
    assert!(seen.len() > 4, "64 prefixes over 8 equal origins: {seen:?}");
}

#[test]
fn the_api_refuses_a_fallback_cycle_naming_the_chain_and_shows_the_keys() {
    let site = chain_site();
    let server = site.serve();
    let put = |name: &str, body: &str| {
        server
            .http("PUT", &format!("{GROUPS}/{name}"), Some(body))
            .expect("the API answers")
    };
    let (status, body) = put(
        "b",
        r#"{"fallback": "c", "min_up": 1, "when_all_down": "nodata", "origins": [{"address": "192.0.2.2"}]}"#,
    );
    assert_eq!(status, 200, "{body}");
    // c -> a -> ... a does not fall back yet: fine. Closing the loop through a is refused.
    let (status, body) = put(
        "a",
        r#"{"fallback": "b", "origins": [{"address": "192.0.2.1"}]}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = put(
        "c",
        r#"{"fallback": "a", "origins": [{"address": "192.0.2.3"}]}"#,
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("a -> b -> c -> a is a cycle"), "{body}");
    let b = group(&server, "b");
    assert_eq!(
        (
            &b["fallback"],
            &b["min_up"],
            &b["when_all_down"],
            &b["serving"]
        ),
        (
            &Value::from("c"),
            &Value::from(1),
            &Value::from("nodata"),
            &Value::from("b")
        ),
        "{b}"
    );
    // The refused change left c as it was.
    assert_eq!(group(&server, "c")["fallback"], Value::Null);
}

#[test]
fn a_fallback_routing_by_country_needs_a_geoip_database_like_the_tasks_group() {
    let site = chain_site();
    let text = read(&site.path().join("zones/example.com.lb.yaml"))
        .replace("  a:\n    origins:", "  a:\n    fallback: b\n    origins:")
        .replace(
            "  b:\n    origins:\n    - address: 192.0.2.2\n",
            "  b:\n    policy: region\n    origins:\n    - address: 192.0.2.2\n      countries: [CN]\n",
        );
    site.write("example.com.lb.yaml", &text);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(["check", "--dir"])
        .arg(site.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("needs a GeoIP database"),
        "{}",
        describe(&out)
    );
    // With one, it loads.
    assert!(site.check().status.success(), "{}", describe(&site.check()));
}

/// The ASN test database copied beside the country one, as an operator installs it.
fn asn_db() -> std::path::PathBuf {
    repo().join("tests/data/GeoLite2-ASN-Test.mmdb")
}

/// The ASes some network of MaxMind's test ASN database is in, read from its JSON source.
fn asns_in_test_database() -> BTreeSet<u64> {
    let source: Value =
        serde_json::from_str(&read(&repo().join("tests/data/GeoLite2-ASN-Test.json"))).unwrap();
    source
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|entry| entry.as_object().unwrap().values())
        .filter_map(|record| record["autonomous_system_number"].as_u64())
        .collect()
}

/// SPEC §12 "Preview": a region key no network maps to is warned about, an AS as well as
/// a country; a key the database has is not.
#[test]
fn diff_warns_of_an_as_no_network_of_the_asn_database_is_in() {
    let known = asns_in_test_database();
    let (listed, unlisted) = (15169, 64512);
    assert!(known.contains(&listed) && !known.contains(&unlisted));
    let site = |asns: &str| {
        let yaml = format!(
            "origin_groups:\n  geo:\n    policy: region\n    origins:\n    - address: 192.0.2.1\n      asns: {asns}\n    - address: 192.0.2.9\ntasks:\n- hostname: www.example.com\n  origin_group: geo\n"
        );
        Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", &yaml)])
    };
    let (before, after) = (
        site(&format!("[{listed}]")),
        site(&format!("[{listed}, {unlisted}]")),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(["diff", "--json", "--dir"])
        .arg(before.path())
        .arg("--against")
        .arg(after.path())
        .arg("--asn-db")
        .arg(asn_db())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let diff: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let warnings: Vec<&str> = diff["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    let about = |asn: u64| warnings.iter().any(|w| w.contains(&format!("AS {asn}")));
    assert!(about(unlisted) && !about(listed), "{warnings:?}");
}

#[test]
fn asns_route_between_subnets_and_countries_with_the_asn_network_as_scope() {
    require_tool(&["dig"], "dnsutils");
    // Expectations from MaxMind's GeoLite2-ASN-Test.json: 1.0.0.0/24 is AS15169,
    // 12.81.96.0/19 AS7018; 1.128.0.0/11 is AS1221, which no origin lists.
    let yaml = "\
origin_groups:
  geo:
    policy: region
    origins:
    - address: 192.0.2.1
      asns: [15169]
    - address: 192.0.2.2
      asns: [7018]
    - address: 192.0.2.3
      subnets: [1.0.0.128/25]
    - address: 192.0.2.9
tasks:
- hostname: www.example.com
  origin_group: geo
";
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", yaml)]);
    // Without an ASN database the task cannot route: check says what to install.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(["check", "--dir"])
        .arg(site.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("needs an ASN database") && stderr(&out).contains("--asn-db FILE"),
        "{}",
        describe(&out)
    );
    let server = site.serve_with(&["--asn-db", asn_db().to_str().unwrap()]);
    let ask = |ecs: &str| {
        let reply = server.udp(&query_edns(
            "www.example.com.",
            RecordType::A,
            1232,
            Some(ecs),
        ));
        (answers(&reply), ecs_of(&reply).map(|e| e.2))
    };
    let one = |a: &str| vec![a.to_owned()];
    assert_eq!(ask("1.0.0.0/24"), (one("192.0.2.1"), Some(24)));
    // A subnet rule beats the AS.
    assert_eq!(ask("1.0.0.128/25"), (one("192.0.2.3"), Some(25)));
    assert_eq!(ask("12.81.100.0/24"), (one("192.0.2.2"), Some(19)));
    // A source prefix longer than the AS network: the network's.
    assert_eq!(ask("12.81.96.0/20"), (one("192.0.2.2"), Some(19)));
    // An AS no origin lists, and an address in no AS network: the default.
    assert_eq!(ask("1.128.0.0/24").0, one("192.0.2.9"));
    assert_eq!(ask("192.0.2.0/24").0, one("192.0.2.9"));
    // Found as a geoip/*ASN*.mmdb too (the shipped geo-whois-asn-country.mmdb, lower
    // case, is a country database and is not taken for one).
    drop(server);
    std::fs::create_dir_all(site.path().join("geoip")).unwrap();
    std::fs::copy(asn_db(), site.path().join("geoip/GeoLite2-ASN.mmdb")).unwrap();
    let server = Server::start(site.path(), &[]);
    let reply = server.udp(&query_edns(
        "www.example.com.",
        RecordType::A,
        1232,
        Some("1.0.0.0/24"),
    ));
    assert_eq!(answers(&reply), one("192.0.2.1"));
}

/// A loopback HTTP origin that waits `delay_ms` before answering 200, with the header
/// `X-LB-Weight: <weight>` when `weight` is set: both can change while it runs.
struct HttpOrigin {
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    weight: Arc<std::sync::Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpOrigin {
    fn start(addr: SocketAddr, delay_ms: u64) -> Self {
        use std::io::{Read, Write};
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let delay = Arc::new(std::sync::atomic::AtomicU64::new(delay_ms));
        let weight = Arc::new(std::sync::Mutex::new(None::<String>));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, w, s) = (delay.clone(), weight.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let (d, w) = (d.clone(), w.clone());
                std::thread::spawn(move || {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    std::thread::sleep(Duration::from_millis(d.load(Ordering::Relaxed)));
                    let header = w
                        .lock()
                        .unwrap()
                        .as_ref()
                        .map(|v| format!("X-LB-Weight: {v}\r\n"))
                        .unwrap_or_default();
                    let _ = stream.write_all(
                        format!("HTTP/1.1 200 OK\r\n{header}Content-Length: 0\r\nConnection: close\r\n\r\n")
                            .as_bytes(),
                    );
                });
            }
        });
        Self {
            delay_ms: delay,
            weight,
            stop,
            thread: Some(thread),
        }
    }

    fn set_delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::Relaxed);
    }

    fn set_weight(&self, value: Option<&str>) {
        *self.weight.lock().unwrap() = value.map(str::to_owned);
    }
}

impl Drop for HttpOrigin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// Waits ([`PATIENCE`] at most) until `n` queries in a row of www.example.com A answer
/// `want`.
#[track_caller]
/// Asks until `want` is the answer `n` times in a row; returns the time until the first
/// answer of that row, and how many answers were something else.
fn wait_answer(server: &Server, want: &str, n: usize) -> (Duration, usize) {
    let start = Instant::now();
    let (mut in_row, mut other, mut row_start) = (0, 0, Duration::ZERO);
    while in_row < n {
        let got = answers(&server.ask("www.example.com", RecordType::A));
        if in_row == 0 {
            row_start = start.elapsed();
        }
        in_row = if got == [want.to_owned()] {
            in_row + 1
        } else {
            other += 1;
            0
        };
        assert!(
            start.elapsed() < PATIENCE,
            "still {got:?}, not {want}, after {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (row_start, other)
}

/// The health of `origin` in group `name`, from the API.
fn origin_health(server: &Server, name: &str, origin: &str) -> Value {
    group(server, name)["origins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["address"] == origin)
        .unwrap()["health"]
        .clone()
}

#[test]
fn nearest_answers_the_origin_with_the_shortest_check_round_trip_and_follows_a_change() {
    let port = shared_port();
    let at = |host: &str| -> SocketAddr { format!("{host}:{port}").parse().unwrap() };
    let (near, far) = ("127.0.0.51", "127.0.0.52");
    // 20 ms against 250 ms: far apart even on a loaded machine.
    let a = HttpOrigin::start(at(near), 20);
    let b = HttpOrigin::start(at(far), 250);
    let yaml = format!(
        "origin_groups:\n  web:\n    policy: nearest\n    health_check: {{type: http, port: {port}, interval: 0.3, timeout: 0.29}}\n    origins:\n    - address: {near}\n    - address: {far}\ntasks:\n- hostname: www.example.com\n  origin_group: web\n"
    );
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", &yaml)]);
    let server = site.serve();
    let (_, before_near) = wait_answer(&server, near, 20);
    // No flapping while the delays hold: 2 s of queries (about 6 checks each), all near.
    let until = Instant::now() + Duration::from_secs(2);
    let mut asked = 0;
    while Instant::now() < until {
        assert_eq!(
            answers(&server.ask("www.example.com", RecordType::A)),
            [near.to_owned()]
        );
        asked += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let rtt = |o: &str| origin_health(&server, "web", o)["rtt_ms"].as_f64().unwrap();
    assert!(rtt(near) >= 20.0 && rtt(far) >= 250.0 && rtt(near) < rtt(far));
    // The near origin slows down: answers move to the other one.
    a.set_delay(250);
    b.set_delay(20);
    let (moved, before_far) = wait_answer(&server, far, 20);
    // The figures of the issue's closing note (checks every 0.3 s).
    eprintln!(
        "nearest: {before_near} answers not the near origin once the server was up, then {asked} of {asked} near in 2 s; once the delays swapped, {before_far} answers ({moved:.1?}, ~{:.0} checks) until the other one answered",
        moved.as_secs_f64() / 0.3
    );
    let text = server.metrics_text();
    assert!(
        text.contains(&format!(
            "lbdns_origin_check_rtt_seconds{{site=\"example.com\",group=\"web\",origin=\"{far}\"}}"
        )),
        "{text}"
    );
}

#[test]
fn nearest_needs_a_health_check() {
    let yaml =
        "origin_groups:\n  web:\n    policy: nearest\n    origins:\n    - address: 192.0.2.1\n";
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", yaml)]);
    let out = site.check();
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("policy nearest ranks origins by their health checks' round-trip time: add a health_check"),
        "{}",
        describe(&out)
    );
    // A tcp check has no header to read a weight from.
    site.write(
        "example.com.lb.yaml",
        "origin_groups:\n  web:\n    health_check: {type: tcp, port: 80, weight_header: X-LB-Weight}\n    origins:\n    - address: 192.0.2.1\n",
    );
    let out = site.check();
    assert!(
        stderr(&out).contains("weight_header is for http and https checks"),
        "{}",
        describe(&out)
    );
}

#[test]
fn an_origin_reporting_its_weight_in_a_header_gets_that_share_until_it_reports_otherwise() {
    let port = shared_port();
    let at = |host: &str| -> SocketAddr { format!("{host}:{port}").parse().unwrap() };
    let (a, b) = ("127.0.0.61", "127.0.0.62");
    let origin_a = HttpOrigin::start(at(a), 0);
    let origin_b = HttpOrigin::start(at(b), 0);
    // Configured 1:1; the origins will say otherwise.
    let yaml = format!(
        "origin_groups:\n  web:\n    health_check: {{type: http, port: {port}, interval: 0.3, timeout: 0.2, weight_header: X-LB-Weight}}\n    origins:\n    - address: {a}\n    - address: {b}\ntasks:\n- hostname: www.example.com\n  origin_group: web\n"
    );
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", &yaml)]);
    let server = site.serve();
    let reported = |o: &str| origin_health(&server, "web", o)["reported_weight"].clone();
    let wait_reported = |o: &str, want: Value| {
        let start = Instant::now();
        while reported(o) != want {
            assert!(start.elapsed() < PATIENCE, "{o}: {}", reported(o));
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Shares of `a` over 2,000 queries: Binomial(2000, p) is within 6 standard
    // deviations of 2000 p but by chance < 1e-8.
    let share_of_a = |p: f64| {
        let n = 2000;
        let hits = (0..n)
            .filter(|_| answers(&server.ask("www.example.com", RecordType::A)) == [a.to_owned()])
            .count();
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        assert!(
            (hits as f64 - n as f64 * p).abs() <= 6.0 * sd + 1e-9,
            "{hits} of {n} to {a}, expected {p}"
        );
    };
    origin_a.set_weight(Some("10"));
    origin_b.set_weight(Some(" 30 "));
    wait_reported(a, Value::from(10));
    wait_reported(b, Value::from(30));
    share_of_a(0.25);
    // The server's explain draws as the query path does, with the weights reported
    // (it gave 0.5 each, the configured 1:1): its 60,000 draws are within 0.01 of the
    // share but by chance < 1e-6.
    let (status, body) = server
        .http(
            "GET",
            "/v1/sites/example.com/explain?hostname=www.example.com",
            None,
        )
        .expect("the API answers");
    assert_eq!(status, 200, "{body}");
    let explained: Value = serde_json::from_str(&body).unwrap();
    let probability_of_a = explained["candidates"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["address"] == a))
        .and_then(|c| c["probability"].as_f64())
        .unwrap_or_else(|| panic!("no candidate {a}: {explained}"));
    assert!(
        (probability_of_a - 0.25).abs() <= 0.01,
        "explain gives {a} {probability_of_a}, its reported share is 0.25: {explained}"
    );
    // b sheds all its load: a takes everything.
    origin_b.set_weight(Some("0"));
    wait_reported(b, Value::from(0));
    share_of_a(1.0);
    // A bad value is ignored, with the reason logged: b's configured weight 1 is back.
    origin_b.set_weight(Some("150"));
    wait_reported(b, Value::Null);
    origin_a.set_weight(None);
    wait_reported(a, Value::Null);
    share_of_a(0.5);
    let log = server.log();
    assert!(
        log.contains("x-lb-weight: \\\"150\\\" is not a weight (a whole number 0..100)")
            || log.contains("x-lb-weight: \"150\" is not a weight (a whole number 0..100)"),
        "{log}"
    );
}

#[test]
fn explain_names_the_level_the_candidates_with_their_probability_and_the_scope() {
    // Expectations from MaxMind's GeoIP2-Country-Test.json: 175.16.199.0/24 is CN,
    // 81.2.69.160/27 GB (EU).
    let port = shared_port();
    let up = "127.0.0.71";
    let _origin = Origin::start(format!("{up}:{port}").parse().unwrap());
    let yaml = format!(
        "origin_groups:\n  geo:\n    policy: region\n    origins:\n    - address: 192.0.2.1\n      countries: [CN]\n    - address: 192.0.2.2\n      continents: [EU]\n    - address: 192.0.2.9\n  web:\n    health_check: {{type: tcp, port: {port}, interval: 0.3, timeout: 0.2}}\n    origins:\n    - address: {up}\n      weight: 3\n    - address: 127.0.0.72\n      weight: 1\n    - address: 127.0.0.73\n      weight: 1\ntasks:\n- hostname: geo.example.com\n  origin_group: geo\n  ttl: 20\n- hostname: '*.web.example.com'\n  origin_group: web\n"
    );
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", &yaml)]);
    let explain = |args: &[&str]| -> Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbdns"))
            .args(["explain", "--dir"])
            .arg(site.path())
            .arg("--geoip")
            .arg(test_geoip())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    let probability = |e: &Value, address: &str| {
        e["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["address"] == address)
            .unwrap_or_else(|| panic!("no {address}: {e}"))["probability"]
            .as_f64()
            .unwrap()
    };
    let cn = explain(&["geo.example.com", "--client", "175.16.199.1"]);
    assert_eq!(
        (&cn["level"], &cn["ecs_scope"], &cn["ttl"]),
        (&Value::from("country"), &Value::from(24), &Value::from(20)),
        "{cn}"
    );
    assert_eq!(probability(&cn, "192.0.2.1"), 1.0);
    assert!(
        cn["why"]
            .as_str()
            .unwrap()
            .contains("country CN (GeoIP network /24)"),
        "{cn}"
    );
    let gb = explain(&["geo.example.com", "--ecs", "81.2.69.160/27"]);
    assert_eq!(
        (&gb["level"], &gb["ecs_scope"]),
        (&Value::from("continent"), &Value::from(27)),
        "{gb}"
    );
    assert_eq!(probability(&gb, "192.0.2.2"), 1.0);
    // A wildcard task, by weight 3:1:1, everything counted up in a directory; the
    // estimate is within 0.01 but by chance < 1e-6.
    let web = explain(&["a.web.example.com"]);
    assert_eq!(web["task"]["hostname"], "*.web.example.com.", "{web}");
    assert!((probability(&web, up) - 0.6).abs() <= 0.011, "{web}");
    // The server's explain sees the checks: two origins are down, one answers. Each
    // origin's first result comes when its checker first runs, in no set order: the
    // explanation is read once every origin has one.
    let server = site.serve();
    let explain_api = || -> Value {
        let (status, body) = server
            .http(
                "GET",
                "/v1/sites/example.com/explain?hostname=a.web.example.com&client=192.0.2.7",
                None,
            )
            .expect("the API answers");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let health = |e: &Value, a: &str| {
        e["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["address"] == a)
            .unwrap_or_else(|| panic!("no {a}: {e}"))["health"]
            .clone()
    };
    let (down_a, down_b) = ("127.0.0.72", "127.0.0.73");
    let settled = |e: &Value| {
        (health(e, up), health(e, down_a), health(e, down_b))
            == (Value::from("up"), Value::from("down"), Value::from("down"))
    };
    wait_until(
        "127.0.0.71 up, 127.0.0.72 and .73 down",
        || format!("{}\n{}", explain_api(), server.log()),
        || settled(&explain_api()),
    );
    let via_api = explain_api();
    assert!(settled(&via_api), "{via_api}");
    assert_eq!(probability(&via_api, up), 1.0, "{via_api}");
    assert_eq!(probability(&via_api, down_a), 0.0, "{via_api}");
    assert_eq!(probability(&via_api, down_b), 0.0, "{via_api}");
    // Bad questions say what is wrong.
    let (status, body) = server
        .http(
            "GET",
            "/v1/sites/example.com/explain?hostname=nothing.example.com",
            None,
        )
        .unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("no task answers nothing.example.com."),
        "{body}"
    );
    let (status, body) = server
        .http(
            "GET",
            "/v1/sites/example.com/explain?hostname=geo.example.com&type=MX",
            None,
        )
        .unwrap();
    assert_eq!(status, 422, "{body}");
}
