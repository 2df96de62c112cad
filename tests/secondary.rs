//! lbdns as a secondary of a real primary (SPEC §13): knotd or BIND's named serves a zone
//! and lbdns, whose site file has `primary:`, transfers it at start (AXFR), follows a
//! change by IXFR when the primary sends NOTIFY (AXFR when the primary keeps no
//! differences), keeps the copy on disk for a restart with the primary down, and answers
//! SERVFAIL for the zone once its SOA `expire` has passed without a refresh. `/healthz`
//! counts the transfers of each kind, so a test knows an IXFR was used.
//!
//! Needs `knotd` (Debian package `knot`) and `named` (`bind9`); the tests fail, they do
//! not skip, without them.

mod common;
mod signing;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Expect, PATIENCE, Server, Site, describe, free_port};

/// The primary's zone; `refresh` is long unless a test wants the timers to act.
fn zone(serial: u32, www: &str, timers: &str) -> String {
    format!(
        "$ORIGIN example.com.\n$TTL 3600\n\
         @    IN SOA ns1 hostmaster {serial} {timers} 300\n\
         @    NS    ns1\n\
         ns1  A     192.0.2.53\n\
         www  A     {www}\n\
         lb   A     192.0.2.99\n\
         mail MX    10 ns1\n\
         txt  TXT   \"v=spf1 -all\" \"two words\"\n"
    )
}

const SLOW_TIMERS: &str = "3600 600 1209600";

/// knotd as the primary of example.com on `listen`, notifying `notify` on changes.
struct Knot {
    child: Child,
    dir: tempfile::TempDir,
}

/// Whether knotd keeps the differences between the zone files it loads in its journal
/// (`zonefile-load: difference`), so it answers IXFR with them, or answers IXFR with the
/// whole zone.
#[derive(Clone, Copy)]
enum Journal {
    Differences,
    None,
}

impl Knot {
    fn start(listen: SocketAddr, notify: SocketAddr, zone_text: &str) -> Self {
        Self::start_with(listen, notify, zone_text, None, Journal::Differences)
    }

    /// With `key` (name, base64 secret), knotd transfers the zone only to requests it
    /// signs, and signs its NOTIFY.
    fn start_with(
        listen: SocketAddr,
        notify: SocketAddr,
        zone_text: &str,
        key: Option<(&str, &str)>,
        journal: Journal,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (keys, acl_key) = match key {
            Some((name, secret)) => (
                format!("key:\n  - id: {name}\n    algorithm: hmac-sha256\n    secret: {secret}\n"),
                format!("    key: {name}\n"),
            ),
            None => (String::new(), String::new()),
        };
        let journal = match journal {
            Journal::Differences => "zonefile-load: difference\n    journal-content: changes",
            Journal::None => "journal-content: none",
        };
        let d = dir.path().display();
        std::fs::write(dir.path().join("example.com.zone"), zone_text).unwrap();
        let conf = format!(
            "server:\n    rundir: \"{d}\"\n    listen: {ip}@{port}\n\
             log:\n  - target: stderr\n    any: info\n\
             database:\n    storage: \"{d}\"\n\
             {keys}\
             remote:\n  - id: lbdns\n    address: {nip}@{nport}\n{acl_key}\
             acl:\n  - id: transfer\n    address: 127.0.0.1\n{acl_key}    action: transfer\n\
             template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-sync: -1\n    {journal}\n\
             zone:\n  - domain: example.com\n    file: example.com.zone\n    notify: lbdns\n    acl: transfer\n",
            ip = listen.ip(),
            port = listen.port(),
            nip = notify.ip(),
            nport = notify.port(),
        );
        let path = dir.path().join("knot.conf");
        std::fs::write(&path, conf).unwrap();
        let log = std::fs::File::create(dir.path().join("knotd.log")).unwrap();
        // /usr/sbin may not be on a CI runner's PATH.
        let knotd = common::require_tool(&["knotd", "/usr/sbin/knotd"], "knot");
        let child = Command::new(knotd)
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start knotd");
        let knot = Self { child, dir };
        knot.wait_serving(listen);
        knot
    }

    fn wait_serving(&self, listen: SocketAddr) {
        let start = Instant::now();
        loop {
            let out = Command::new("dig")
                .args(["@127.0.0.1", "-p", &listen.port().to_string()])
                .args([
                    "+norec",
                    "+time=1",
                    "+tries=1",
                    "+short",
                    "example.com",
                    "SOA",
                ])
                .output()
                .expect("dig is installed");
            if !out.stdout.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "knotd did not serve example.com:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("knotd.log")).unwrap_or_default()
    }

    /// A new zone file, then SIGHUP: knotd loads it and notifies lbdns.
    fn change(&self, zone_text: &str) {
        std::fs::write(self.dir.path().join("example.com.zone"), zone_text).unwrap();
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The site file: the zone from knotd, and a task over one of its names.
fn site_file(primary: SocketAddr) -> String {
    format!(
        "primary:\n  addresses: [\"{primary}\"]\n\
         origin_groups:\n  web:\n    origins:\n      - address: 198.51.100.7\n\
         tasks:\n  - hostname: lb.example.com\n    origin_group: web\n    ttl: 30\n"
    )
}

fn short(server: &Server, name: &str, rtype: &str) -> String {
    server.dig(&["+short", name, rtype]).trim().to_owned()
}

/// Waits until lbdns answers `name`/`rtype` with `want`; returns how long it took.
fn wait_for(server: &Server, name: &str, rtype: &str, want: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = short(server, name, rtype);
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "lbdns did not answer {name} {rtype} = {want} within {within:?} (it says {got:?}):\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `lbdns status --api API`: its exit code and what it printed.
fn lbdns_status(server: &Server) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(["status", "--api", &server.api.to_string()])
        .env_remove("LBDNS_API_TOKEN")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

/// Asks www.example.com A over UDP, one query after another, until `stop`: how many got
/// an answer (NOERROR, one record) and how many did not within 2 s.
fn ask_until(stop: &AtomicBool, addr: SocketAddr) -> (u32, u32) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let (mut answered, mut failed) = (0, 0);
    let mut buf = [0u8; 512];
    let mut id = 0u16;
    while !stop.load(Ordering::Relaxed) {
        id = id.wrapping_add(1);
        let mut query = id.to_be_bytes().to_vec();
        query.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        query.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        socket.send_to(&query, addr).unwrap();
        let ok = loop {
            match socket.recv_from(&mut buf) {
                Ok((n, _)) if n >= 12 && buf[..2] == id.to_be_bytes() => {
                    break buf[3] & 0xF == 0 && buf[6..8] == [0, 1];
                }
                Ok(_) => {}
                Err(_) => break false,
            }
        };
        if ok {
            answered += 1;
        } else {
            failed += 1;
        }
    }
    (answered, failed)
}

fn status_of(server: &Server, name: &str) -> String {
    let out = server.dig(&[name, "A"]);
    out.lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or_default().to_owned())
        .unwrap_or_else(|| panic!("no status in dig's output:\n{out}"))
}

#[test]
fn lbdns_transfers_from_knot_follows_notify_and_keeps_the_copy() {
    let knot_addr = free_port();
    // A listen address of lbdns chosen here, for knotd to notify.
    let notify_to = free_port();
    let knot = Knot::start(knot_addr, notify_to, &zone(1, "192.0.2.80", SLOW_TIMERS));
    let site = Site::new(&[("example.com.lb.yaml", &site_file(knot_addr))]);
    let listen = notify_to.to_string();
    let server = site.serve_with(&["--listen", &listen]);

    // The initial AXFR: the primary's records, and the task over them.
    let took = wait_for(&server, "www.example.com", "A", "192.0.2.80", PATIENCE);
    eprintln!("first answer from the transferred zone {took:?} after start");
    assert_eq!(short(&server, "lb.example.com", "A"), "198.51.100.7");
    assert_eq!(
        short(&server, "txt.example.com", "TXT"),
        "\"v=spf1 -all\" \"two words\""
    );
    assert_eq!(
        short(&server, "mail.example.com", "MX"),
        "10 ns1.example.com."
    );
    let copy = site.path().join("secondary/example.com.zone");
    assert!(copy.exists(), "the kept copy is in secondary/");
    assert!(!site.path().join("zones/example.com.zone").exists());

    // A change on knotd: its NOTIFY, not the hour-long refresh, brings it, while a client
    // asks without pause: no query goes unanswered or fails while the new copy lands.
    let stop = Arc::new(AtomicBool::new(false));
    let asker = std::thread::spawn({
        let (stop, addr) = (stop.clone(), server.addr);
        move || ask_until(&stop, addr)
    });
    knot.change(&zone(2, "192.0.2.81", SLOW_TIMERS));
    let took = wait_for(&server, "www.example.com", "A", "192.0.2.81", PATIENCE);
    eprintln!("the change reached lbdns's answers {took:?} after knotd's reload");
    stop.store(true, Ordering::Relaxed);
    let (answered, failed) = asker.join().unwrap();
    eprintln!("during the transfer: {answered} queries answered, {failed} not");
    assert!(answered > 0);
    assert_eq!(failed, 0);
    assert!(
        server.log().contains("NOTIFY from a primary"),
        "{}",
        server.log()
    );
    let (code, health) = server.http_get("/healthz", Duration::from_secs(5)).unwrap();
    assert_eq!(code, 200);
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    let zone_status = &health["secondary_zones"]["example.com."];
    assert_eq!(zone_status["serial"], 2, "{health}");
    assert_eq!(zone_status["expired"], false, "{health}");
    // The zone came whole at start, and the change as a difference from serial 1.
    assert_eq!(zone_status["axfr"], 1, "{health}");
    assert_eq!(zone_status["ixfr"], 1, "{health}");
    assert!(knot.log().contains("IXFR, outgoing"), "{}", knot.log());
    let (_, metrics) = server.http_get("/metrics", Duration::from_secs(5)).unwrap();
    assert!(
        metrics.contains("lbdns_secondary_transfers_total{kind=\"ixfr\"} 1"),
        "{metrics}"
    );
    assert!(zone_status["last_refresh"].as_u64().is_some(), "{health}");
    assert!(
        zone_status["expires"].as_u64().unwrap() > zone_status["last_refresh"].as_u64().unwrap(),
        "{health}"
    );

    let (code, text) = lbdns_status(&server);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("serial 2")
            && text.contains("from primary, refreshed")
            && text.contains("expires in"),
        "{text}"
    );

    // A restart with knotd down serves the kept copy at once.
    drop(server);
    drop(knot);
    let server = site.serve();
    assert_eq!(short(&server, "www.example.com", "A"), "192.0.2.81");
    assert_eq!(short(&server, "lb.example.com", "A"), "198.51.100.7");
}

/// A primary that signs its zone (here dnssec-signzone's output served by knotd, as a
/// signer in front of a primary publishes it): with the ZSK imported, lbdns signs its
/// task's answers with it, and the zone data, the task and the denials validate from the
/// primary's KSK, before and after a change the primary re-signs and sends by IXFR.
#[test]
fn a_task_in_a_zone_its_primary_signs_validates_with_the_imported_zsk() {
    let keys = tempfile::tempdir().unwrap();
    let signed = signing::sign(
        keys.path(),
        "example.com",
        &zone(1, "192.0.2.80", SLOW_TIMERS),
        signing::Denial::Nsec,
    );
    let (knot_addr, notify_to) = (free_port(), free_port());
    let knot = Knot::start(knot_addr, notify_to, &signed.text);
    let site = Site::new(&[("example.com.lb.yaml", &site_file(knot_addr))]);
    let out = Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(["keys", "import", "--dir"])
        .arg(site.path())
        .arg("example.com")
        .arg(&signed.zsk_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let server = site.serve_with(&["--listen", &notify_to.to_string()]);
    wait_for(&server, "www.example.com", "A", "192.0.2.80", PATIENCE);
    assert!(
        server
            .log()
            .contains("its tasks are signed with the imported ZSK"),
        "{}",
        server.log()
    );

    let anchor = site.path().join("delv.anchor");
    std::fs::write(&anchor, signed.delv_anchor()).unwrap();
    let validates = |checks: &[(&str, &str, Expect, &str)]| {
        let mut wrong = Vec::new();
        for &(name, rtype, expect, want) in checks {
            let out = common::delv(server.addr, &anchor, "example.com", name, rtype);
            if !expect.concluded_by_delv(&out) || !out.contains(want) {
                wrong.push(format!(
                    "{name} {rtype}, expected {expect:?} {want}:\n{out}"
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    };
    let checks = |www: &'static str| {
        [
            ("lb.example.com.", "A", Expect::Secure, "198.51.100.7"),
            ("www.example.com.", "A", Expect::Secure, www),
            ("lb.example.com.", "TXT", Expect::SecureDenial, ""),
            ("nope.example.com.", "A", Expect::SecureDenial, ""),
        ]
    };
    validates(&checks("192.0.2.80"));
    // The task's signatures last as long as the primary's (dnssec-signzone: 30 days), not
    // lbdns's own default (14 days), less the spread that staggers re-signing (a tenth).
    let (zone_span, task_span) = (
        rrsig_span(&server, "example.com", "SOA"),
        rrsig_span(&server, "lb.example.com", "A"),
    );
    assert!(
        task_span <= zone_span && task_span >= zone_span - zone_span / 10,
        "task RRSIG valid {task_span} s, the zone's {zone_span} s"
    );

    // The primary changes www and re-signs; its NOTIFY brings the difference, and the task
    // answers signed from the new copy.
    knot.change(&signing::resign(
        keys.path(),
        "example.com",
        &zone(2, "192.0.2.81", SLOW_TIMERS),
        &signed,
    ));
    wait_for(&server, "www.example.com", "A", "192.0.2.81", PATIENCE);
    assert_eq!(transfers(&server), (1, 1), "{}", server.log());
    validates(&checks("192.0.2.81"));
}

/// Expiration less inception of the RRSIG over `name`/`rtype`, in seconds.
fn rrsig_span(server: &Server, name: &str, rtype: &str) -> u64 {
    let out = server.dig(&["+dnssec", "+noall", "+answer", name, rtype]);
    let fields: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(3) == Some(&"RRSIG") && f.get(4) == Some(&rtype))
        .unwrap_or_else(|| panic!("no RRSIG over {name} {rtype}:\n{out}"));
    seconds(fields[8]) - seconds(fields[9])
}

/// An RRSIG time as dig prints it (YYYYMMDDHHmmSS, UTC) in seconds since 1970
/// (days from the civil date, as in Howard Hinnant's algorithm).
fn seconds(time: &str) -> u64 {
    let n = |range: std::ops::Range<usize>| time[range].parse::<u64>().unwrap();
    let (y, m, d) = (n(0..4), n(4..6), n(6..8));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + n(8..10) * 3600 + n(10..12) * 60 + n(12..14)
}

/// The zone's transfers `/healthz` counts: whole (AXFR) and differences (IXFR).
fn transfers(server: &Server) -> (u64, u64) {
    let (code, health) = server.http_get("/healthz", Duration::from_secs(5)).unwrap();
    assert_eq!(code, 200, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    let zone_status = &health["secondary_zones"]["example.com."];
    let count = |kind: &str| {
        zone_status[kind]
            .as_u64()
            .unwrap_or_else(|| panic!("no {kind} count: {health}"))
    };
    (count("axfr"), count("ixfr"))
}

#[test]
fn a_primary_without_differences_answers_ixfr_with_the_whole_zone_which_is_applied() {
    let knot_addr = free_port();
    let notify_to = free_port();
    let knot = Knot::start_with(
        knot_addr,
        notify_to,
        &zone(1, "192.0.2.80", SLOW_TIMERS),
        None,
        Journal::None,
    );
    let site = Site::new(&[("example.com.lb.yaml", &site_file(knot_addr))]);
    let server = site.serve_with(&["--listen", &notify_to.to_string()]);
    wait_for(&server, "www.example.com", "A", "192.0.2.80", PATIENCE);
    knot.change(&zone(2, "192.0.2.81", SLOW_TIMERS));
    wait_for(&server, "www.example.com", "A", "192.0.2.81", PATIENCE);
    assert_eq!(short(&server, "lb.example.com", "A"), "198.51.100.7");
    assert_eq!(transfers(&server), (2, 0));
}

#[test]
fn a_secondary_zone_goes_servfail_once_expired() {
    // Refreshes signed with TSIG, as a primary that requires a key has them.
    let knot_addr = free_port();
    let knot = Knot::start_with(
        knot_addr,
        free_port(),
        &zone(1, "192.0.2.80", "1 1 3"),
        Some(("transfer-key", SECRET)),
        Journal::Differences,
    );
    let site_text = site_file(knot_addr).replace(
        "primary:\n  addresses:",
        "primary:\n  tsig: transfer-key\n  addresses:",
    );
    let site = Site::new(&[
        ("example.com.lb.yaml", &site_text),
        (
            "other.test.zone",
            "$ORIGIN other.test.\n@ 3600 IN SOA ns hm 1 3600 600 86400 300\n@ NS ns\nns A 192.0.2.1\n",
        ),
    ]);
    write_key(&site, SECRET);
    let server = site.serve();
    wait_for(&server, "www.example.com", "A", "192.0.2.80", PATIENCE);
    // Refreshed every second while knotd answers: still served after the expire time.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(status_of(&server, "www.example.com"), "NOERROR");
    drop(knot);
    let start = Instant::now();
    while status_of(&server, "www.example.com") != "SERVFAIL" {
        assert!(
            start.elapsed() < PATIENCE,
            "not SERVFAIL after expire:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("SERVFAIL {:?} after knotd stopped", start.elapsed());
    let (code, text) = lbdns_status(&server);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("EXPIRED") && text.contains("secondary zone example.com. expired"),
        "{text}"
    );
    assert_eq!(status_of(&server, "example.com"), "SERVFAIL");
    // Other zones are served as before.
    assert_eq!(short(&server, "ns.other.test", "A"), "192.0.2.1");

    // The primary back (same address, a new serial): the next retry (1 s) brings the
    // zone back.
    let _knot = Knot::start_with(
        knot_addr,
        free_port(),
        &zone(2, "192.0.2.81", "1 1 3"),
        Some(("transfer-key", SECRET)),
        Journal::Differences,
    );
    let took = wait_for(&server, "www.example.com", "A", "192.0.2.81", PATIENCE);
    eprintln!("served again {took:?} after knotd restarted");
    assert_eq!(status_of(&server, "example.com"), "NOERROR");
}

#[test]
fn a_site_with_primary_and_a_zone_file_is_refused() {
    let site = Site::new(&[
        (
            "example.com.lb.yaml",
            "primary:\n  addresses: [\"192.0.2.1\", \"192.0.2.2:5300\"]\n",
        ),
        (
            "example.com.zone",
            "$ORIGIN example.com.\n@ 3600 IN SOA ns hm 1 3600 600 86400 300\n@ NS ns\nns A 192.0.2.1\n",
        ),
    ]);
    let output = site.check();
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        errors.contains("example.com.lb.yaml: this site has primary:")
            && errors.contains("example.com.zone too: remove one of them"),
        "{errors}"
    );
    site.write(
        "example.com.lb.yaml",
        "primary:\n  addresses: [\"192.0.2.300\"]\n",
    );
    std::fs::remove_file(site.path().join("zones/example.com.zone")).unwrap();
    let output = site.check();
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        errors.contains("primary.addresses: \"192.0.2.300\" is not IP or IP:PORT"),
        "{errors}"
    );
    site.write(
        "example.com.lb.yaml",
        "primary:\n  addresses: [\"192.0.2.1\"]\n  tsig: absent-key\n",
    );
    let output = site.check();
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        errors.contains("example.com.lb.yaml: primary.tsig: ")
            && errors.contains("keys/tsig/absent-key.yaml: cannot read the TSIG key"),
        "{errors}"
    );
    // Only primary: is a valid site waiting for its first transfer.
    site.write(
        "example.com.lb.yaml",
        "primary:\n  addresses: [\"192.0.2.1\"]\n",
    );
    let output = site.check();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A base64 secret both sides are given (a test key, nothing else uses it).
const SECRET: &str = "bGJkbnMgdHNpZyB0ZXN0IGtleSwgMzIgYnl0ZXMhIQ==";

fn write_key(site: &Site, secret: &str) {
    let dir = site.path().join("keys/tsig");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("transfer-key.yaml"),
        format!("algorithm: hmac-sha256\nsecret: {secret}\n"),
    )
    .unwrap();
}

#[test]
fn transfers_from_a_primary_that_requires_tsig_are_signed_with_the_key() {
    let knot_addr = free_port();
    let notify_to = free_port();
    let knot = Knot::start_with(
        knot_addr,
        notify_to,
        &zone(1, "192.0.2.80", SLOW_TIMERS),
        Some(("transfer-key", SECRET)),
        Journal::Differences,
    );
    let site_text = site_file(knot_addr).replace(
        "primary:\n  addresses:",
        "primary:\n  tsig: transfer-key\n  addresses:",
    );
    let site = Site::new(&[("example.com.lb.yaml", &site_text)]);
    write_key(&site, SECRET);
    let server = site.serve_with(&["--listen", &notify_to.to_string()]);
    wait_for(&server, "www.example.com", "A", "192.0.2.80", PATIENCE);
    assert!(
        knot.log().contains("AXFR, outgoing") && knot.log().contains("finished"),
        "{}",
        knot.log()
    );
    // The change comes by IXFR, signed as well.
    knot.change(&zone(2, "192.0.2.81", SLOW_TIMERS));
    wait_for(&server, "www.example.com", "A", "192.0.2.81", PATIENCE);
    assert!(knot.log().contains("IXFR, outgoing"), "{}", knot.log());
    assert_eq!(transfers(&server), (1, 1));
    assert!(
        server.log().contains("NOTIFY from a primary"),
        "{}",
        server.log()
    );
    // An unsigned NOTIFY from the primary's address is refused: NOTAUTH.
    let notify = server.dig(&["+opcode=notify", "+norec", "example.com.", "SOA"]);
    assert!(notify.contains("status: NOTAUTH"), "{notify}");
    assert!(
        server.log().contains("NOTIFY refused: not signed"),
        "{}",
        server.log()
    );
    assert_eq!(server.metric("lbdns_tsig_refused_total"), 1.0);

    // Another secret: knotd refuses the transfer, and lbdns serves nothing for the zone.
    let wrong = Site::new(&[("example.com.lb.yaml", &site_text)]);
    write_key(&wrong, "b3RoZXIgc2VjcmV0IG9mIHRoaXJ0eS10d28gYnl0ZXM=");
    let server = wrong.serve();
    let start = Instant::now();
    while !server.log().contains("secondary zone not refreshed") {
        assert!(start.elapsed() < PATIENCE, "{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = server.log();
    assert!(log.contains("answered NOTAUTH"), "{log}");
    assert_eq!(status_of(&server, "www.example.com"), "REFUSED");
}

#[test]
fn a_primary_added_while_serving_is_followed() {
    let knot_addr = free_port();
    let _knot = Knot::start(knot_addr, free_port(), &zone(1, "192.0.2.80", SLOW_TIMERS));
    let other =
        "$ORIGIN other.test.\n@ 3600 IN SOA ns hm 1 3600 600 86400 300\n@ NS ns\nns A 192.0.2.1\n";
    let site = Site::new(&[("other.test.zone", other)]);
    let server = site.serve();
    assert_eq!(status_of(&server, "www.example.com"), "REFUSED");
    site.write("example.com.lb.yaml", &site_file(knot_addr));
    server.sighup();
    let took = wait_for(&server, "www.example.com", "A", "192.0.2.80", PATIENCE);
    eprintln!("a primary: added while serving answered {took:?} after SIGHUP");
    assert!(site.path().join("secondary/example.com.zone").exists());
}

/// BIND's named as the primary of example.com on `listen`, notifying `notify` on changes,
/// keeping the differences between the zone files it loads (`ixfr-from-differences`), and
/// transferring only to requests signed with the key `transfer-key` (`SECRET`).
struct Named {
    child: Child,
    dir: tempfile::TempDir,
}

impl Named {
    fn start(listen: SocketAddr, notify: SocketAddr, zone_text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::write(dir.path().join("example.com.db"), zone_text).unwrap();
        let conf = format!(
            "key \"transfer-key\" {{ algorithm hmac-sha256; secret \"{SECRET}\"; }};\n\
             options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n\
             session-keyfile \"{d}/session.key\";\n  managed-keys-directory \"{d}\";\n\
             listen-on port {port} {{ {ip}; }};\n  listen-on-v6 {{ none; }};\n\
             recursion no;\n  dnssec-validation no;\n  notify explicit;\n  notify-delay 0;\n\
             also-notify {{ {nip} port {nport}; }};\n  ixfr-from-differences yes;\n\
             allow-transfer {{ key transfer-key; }};\n}};\n\
             server {nip} {{ keys {{ transfer-key; }}; }};\n\
             controls {{ }};\n\
             zone \"example.com\" {{ type primary; file \"{d}/example.com.db\"; }};\n",
            ip = listen.ip(),
            port = listen.port(),
            nip = notify.ip(),
            nport = notify.port(),
        );
        let path = dir.path().join("named.conf");
        std::fs::write(&path, conf).unwrap();
        let log = std::fs::File::create(dir.path().join("named.log")).unwrap();
        // /usr/sbin may not be on a CI runner's PATH.
        let named = common::require_tool(&["named", "/usr/sbin/named"], "bind9");
        let child = Command::new(named)
            .args(["-g", "-4", "-c"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start named");
        let named = Self { child, dir };
        let start = Instant::now();
        while !named.log().contains("running") {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "named did not start:\n{}",
                named.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        named
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// A new zone file, then SIGHUP: named loads it, records the difference, and notifies.
    fn change(&self, zone_text: &str) {
        std::fs::write(self.dir.path().join("example.com.db"), zone_text).unwrap();
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn lbdns_takes_changes_from_bind_by_ixfr_signed_with_tsig() {
    let named_addr = common::free_port_on("127.0.0.1".parse().unwrap());
    let notify_to = free_port();
    let named = Named::start(named_addr, notify_to, &zone(1, "192.0.2.80", SLOW_TIMERS));
    let site_text = site_file(named_addr).replace(
        "primary:\n  addresses:",
        "primary:\n  tsig: transfer-key\n  addresses:",
    );
    let site = Site::new(&[("example.com.lb.yaml", &site_text)]);
    write_key(&site, SECRET);
    let server = site.serve_with(&["--listen", &notify_to.to_string()]);
    wait_for(
        &server,
        "www.example.com",
        "A",
        "192.0.2.80",
        Duration::from_secs(30),
    );
    // Two changes, each a difference sequence named keeps; the second NOTIFY may find
    // lbdns still at serial 2 or already past it.
    named.change(&zone(2, "192.0.2.81", SLOW_TIMERS));
    wait_for(
        &server,
        "www.example.com",
        "A",
        "192.0.2.81",
        Duration::from_secs(30),
    );
    let text = zone(3, "192.0.2.82", SLOW_TIMERS) + "new  A     192.0.2.83\n";
    named.change(&text.replace("lb   A     192.0.2.99\n", ""));
    wait_for(
        &server,
        "new.example.com",
        "A",
        "192.0.2.83",
        Duration::from_secs(30),
    );
    assert_eq!(short(&server, "www.example.com", "A"), "192.0.2.82");
    // The task still answers lb, which the primary no longer has.
    assert_eq!(short(&server, "lb.example.com", "A"), "198.51.100.7");
    let log = named.log();
    assert!(log.contains("IXFR ended"), "{log}");
    assert_eq!(transfers(&server), (1, 2), "{log}");
    let copy = std::fs::read_to_string(site.path().join("secondary/example.com.zone")).unwrap();
    assert!(
        copy.contains("new.example.com. 3600 IN A 192.0.2.83"),
        "{copy}"
    );
    assert!(!copy.contains("192.0.2.99"), "{copy}");
}
