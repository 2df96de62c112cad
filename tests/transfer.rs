//! Zone transfers to a real secondary: Knot DNS transfers the zone from lbdns (AXFR),
//! serves the zone file's records (never a task's answer), and after a reload that
//! raises the serial, lbdns's NOTIFY makes it transfer again at once; with a TSIG key on
//! both sides, every message is signed and checked by knotd, and a request with another
//! key or none is refused.
//!
//! Needs `knotd` (Debian package `knot`); the test fails, it does not skip, without it.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Expect, PATIENCE, Reloaded, Site, ds_anchor_file, free_port, keys_ds};

const ZONE: &str = "$ORIGIN example.com.\n\
    $TTL 3600\n\
    @    IN SOA ns1 hostmaster SERIAL 7200 900 1209600 300\n\
    @    NS    ns1\n\
    ns1  A     192.0.2.53\n\
    www  A     192.0.2.80\n\
    mail MX    10 ns1\n";

fn zone(serial: u32, extra: &str) -> String {
    format!("{}{extra}", ZONE.replace("SERIAL", &serial.to_string()))
}

/// knotd as a secondary of `primary` for example.com, listening on `listen`.
struct Knot {
    child: Child,
    listen: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Knot {
    fn start(primary: SocketAddr, listen: SocketAddr) -> Self {
        Self::start_with_key(primary, listen, None)
    }

    /// With `key` (name, base64 secret), knotd signs its requests to lbdns and takes a
    /// NOTIFY only when signed with it.
    fn start_with_key(primary: SocketAddr, listen: SocketAddr, key: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let (keys, with_key) = match key {
            Some((name, secret)) => (
                format!("key:\n  - id: {name}\n    algorithm: hmac-sha256\n    secret: {secret}\n"),
                format!("    key: {name}\n"),
            ),
            None => (String::new(), String::new()),
        };
        let conf = format!(
            "server:\n    rundir: \"{d}\"\n    listen: {ip}@{port}\n\
             log:\n  - target: stderr\n    any: info\n\
             database:\n    storage: \"{d}\"\n\
             {keys}\
             remote:\n  - id: primary\n    address: {pip}@{pport}\n{with_key}\
             acl:\n  - id: notify_from_primary\n    address: {pip}\n{with_key}    action: notify\n\
             template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-sync: -1\n    journal-content: none\n\
             zone:\n  - domain: example.com\n    master: primary\n    acl: notify_from_primary\n",
            ip = listen.ip(),
            port = listen.port(),
            pip = primary.ip(),
            pport = primary.port(),
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
        Self {
            child,
            listen,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("knotd.log")).unwrap_or_default()
    }

    /// `dig +short` at knotd.
    fn short(&self, name: &str, rtype: &str) -> String {
        let output = Command::new("dig")
            .arg(format!("@{}", self.listen.ip()))
            .args(["-p", &self.listen.port().to_string()])
            .args(["+norec", "+time=1", "+tries=1", "+short", name, rtype])
            .output()
            .expect("dig is installed");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// knotd's whole answer to `name` A with DO set.
    fn dig_dnssec(&self, name: &str) -> String {
        let output = Command::new("dig")
            .arg(format!("@{}", self.listen.ip()))
            .args(["-p", &self.listen.port().to_string()])
            .args(["+norec", "+dnssec", "+time=2", "+tries=1", name, "A"])
            .output()
            .expect("dig is installed");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until knotd answers `name`/`rtype` with `want`; returns how long it took.
    fn wait_for(&self, name: &str, rtype: &str, want: &str, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.short(name, rtype) == want {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "knotd did not answer {name} {rtype} = {want} within {within:?} (it says {:?}):\n{}",
                self.short(name, rtype),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces the site's zone file with `text`, written whole and renamed into place: the
/// file watcher must not load a half-written file whose serial is already new (a
/// secondary would then never ask again).
fn replace_zone(site: &Site, text: &str) {
    let path = site.path().join("zones/example.com.zone");
    let partial = path.with_extension("zone.new");
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, &path).unwrap();
}

fn site_file(secondary: SocketAddr) -> String {
    format!(
        "origin_groups:\n  web:\n    origins:\n      - address: 198.51.100.7\n\
         tasks:\n  - hostname: www.example.com\n    origin_group: web\n    ttl: 30\n\
         secondaries: [\"{secondary}\"]\n"
    )
}

#[test]
fn knot_transfers_the_zone_file_and_follows_notify() {
    // knotd's port, held until lbdns has chosen its own ports.
    let knot_addr = free_port();
    let hold = UdpSocket::bind(knot_addr).unwrap();
    let site = Site::new(&[
        ("example.com.zone", &zone(1, "")),
        ("example.com.lb.yaml", &site_file(knot_addr)),
    ]);
    let server = site.serve();
    drop(hold);
    // lbdns answers www from the task; the transfer carries the zone file's record.
    let lbdns = server.dig(&["+short", "www.example.com.", "A"]);
    assert_eq!(lbdns.trim(), "198.51.100.7");

    let knot = Knot::start(server.addr, knot_addr);
    knot.wait_for("ns1.example.com.", "A", "192.0.2.53", PATIENCE);
    assert_eq!(knot.short("www.example.com.", "A"), "192.0.2.80");
    assert_eq!(
        knot.short("example.com.", "SOA").split(' ').nth(2),
        Some("1")
    );

    // A new serial and record, a reload: NOTIFY, and knotd has it long before its
    // refresh timer (7200 s) would have asked.
    let reloaded = server.reload_after(|| replace_zone(&site, &zone(2, "new A 192.0.2.99\n")));
    assert_eq!(reloaded, Reloaded::Accepted);
    let took = knot.wait_for("new.example.com.", "A", "192.0.2.99", PATIENCE);
    eprintln!("knotd had the change {took:?} after the reload");
    assert!(
        server.log().contains("NOTIFY acknowledged"),
        "{}",
        server.log()
    );
    assert!(knot.log().contains("notify, incoming"), "{}", knot.log());
    assert!(server.metric("lbdns_zone_transfers_total{result=\"sent\"}") >= 2.0);
    assert_eq!(
        server.metric("lbdns_notify_total{result=\"acknowledged\"}"),
        1.0
    );
}

/// A zone lbdns signs (`dnssec:`), transferred to knotd: the transfer carries the signed
/// zone data (never a task's answer) and knotd serves it validating from the DS `lbdns
/// keys ds` prints, for NSEC and NSEC3 denial, before and after a change lbdns signs and
/// sends on NOTIFY. (A `compact` zone has no denial records to transfer.)
#[test]
fn knot_serves_a_zone_lbdns_signs_validating() {
    for denial in ["nsec", "nsec3"] {
        let knot_addr = free_port();
        let hold = UdpSocket::bind(knot_addr).unwrap();
        let site_text = format!("dnssec: {{denial: {denial}}}\n{}", site_file(knot_addr));
        let site = Site::new(&[
            ("example.com.zone", &zone(1, "")),
            ("example.com.lb.yaml", &site_text),
        ]);
        let server = site.serve();
        drop(hold);
        let knot = Knot::start(server.addr, knot_addr);
        knot.wait_for("ns1.example.com.", "A", "192.0.2.53", PATIENCE);
        let anchor = ds_anchor_file(
            site.path().join("delv.anchor"),
            &keys_ds(&site, "example.com"),
        );
        let validates = |cases: &[(&str, &str, Expect, &str)]| {
            let mut wrong = Vec::new();
            for &(name, rtype, expect, want) in cases {
                let out = common::delv(knot_addr, &anchor, "example.com", name, rtype);
                if !expect.concluded_by_delv(&out) || !out.contains(want) {
                    wrong.push(format!(
                        "{denial}: {name} {rtype}, expected {expect:?} {want}:\n{out}"
                    ));
                }
            }
            assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), knot.log());
        };
        // www is the zone file's record at knotd (lbdns answers it from its task).
        validates(&[
            ("www.example.com.", "A", Expect::Secure, "192.0.2.80"),
            (
                "mail.example.com.",
                "MX",
                Expect::Secure,
                "10 ns1.example.com.",
            ),
            ("example.com.", "DNSKEY", Expect::Secure, "257 3 13"),
            ("nope.example.com.", "A", Expect::SecureDenial, ""),
            ("www.example.com.", "TXT", Expect::SecureDenial, ""),
        ]);
        let dnssec = knot.dig_dnssec("nope.example.com.");
        let proof = if denial == "nsec3" { "NSEC3" } else { "NSEC" };
        let has_proof = dnssec
            .lines()
            .any(|l| l.split_whitespace().nth(3) == Some(proof));
        assert!(has_proof, "{dnssec}");

        let reloaded = server.reload_after(|| replace_zone(&site, &zone(2, "new A 192.0.2.99\n")));
        assert_eq!(reloaded, Reloaded::Accepted);
        knot.wait_for("new.example.com.", "A", "192.0.2.99", PATIENCE);
        validates(&[
            ("new.example.com.", "A", Expect::Secure, "192.0.2.99"),
            ("nope.example.com.", "A", Expect::SecureDenial, ""),
        ]);
    }
}

#[test]
fn transfers_are_refused_to_unlisted_sources_and_for_unknown_zones() {
    let site = Site::new(&[
        ("example.com.zone", &zone(1, "")),
        (
            "example.com.lb.yaml",
            &site_file("127.0.0.1:53".parse().unwrap()),
        ),
    ]);
    let server = site.serve();
    let axfr = |source: &str, zone: &str| {
        let output = Command::new("dig")
            .args(["-b", source, &format!("@{}", server.addr.ip())])
            .args(["-p", &server.addr.port().to_string(), zone, "AXFR"])
            .args(["+time=2", "+tries=1"])
            .output()
            .expect("dig is installed");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let allowed = axfr("127.0.0.1", "example.com.");
    assert!(allowed.contains("XFR size: 6 records"), "{allowed}");
    // The zone file's www, never the task's answer.
    assert!(
        allowed.contains("192.0.2.80") && !allowed.contains("198.51.100.7"),
        "{allowed}"
    );
    assert!(axfr("127.0.0.2", "example.com.").contains("Transfer failed"));
    assert!(axfr("127.0.0.1", "example.org.").contains("Transfer failed"));
    // Not a zone's apex: no transfer either.
    assert!(axfr("127.0.0.1", "www.example.com.").contains("Transfer failed"));
    assert_eq!(
        server.metric("lbdns_zone_transfers_total{result=\"sent\"}"),
        1.0
    );
    assert_eq!(
        server.metric("lbdns_zone_transfers_total{result=\"refused\"}"),
        3.0
    );
}

#[test]
fn knot_transfers_a_zone_of_many_messages() {
    // About 1.6 MB with owner names compressed: some 99 messages of about 16 KB, each
    // encoded as the previous one is written.
    const RECORDS: usize = 20_000;
    let mut text = zone(1, "");
    for i in 0..RECORDS {
        text.push_str(&format!("h{i:05} TXT \"{i:05}{}\"\n", "t".repeat(55)));
    }
    let knot_addr = free_port();
    let hold = UdpSocket::bind(knot_addr).unwrap();
    let site = Site::new(&[
        ("example.com.zone", &text),
        ("example.com.lb.yaml", &site_file(knot_addr)),
    ]);
    let server = site.serve();
    drop(hold);
    let knot = Knot::start(server.addr, knot_addr);
    // The first record, the last one (hash order: whichever), and the closing SOA, or
    // knotd would not have the zone at all.
    for i in [0, RECORDS / 2, RECORDS - 1] {
        let want = format!("\"{i:05}{}\"", "t".repeat(55));
        knot.wait_for(
            &format!("h{i:05}.example.com."),
            "TXT",
            &want,
            Duration::from_secs(30),
        );
    }
    // knotd logs "AXFR, incoming, ..., finished, S seconds, N messages, B bytes".
    let log = knot.log();
    let messages: usize = log
        .lines()
        .filter(|line| line.contains("AXFR, incoming") && line.contains("finished"))
        .find_map(|line| {
            line.split(" messages")
                .next()?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no finished AXFR in knotd's log:\n{log}"));
    eprintln!("knotd took the zone in {messages} messages");
    assert!(messages > 90, "{log}");
    assert_eq!(
        server.metric("lbdns_zone_transfers_total{result=\"sent\"}"),
        1.0
    );
}

/// A base64 secret both sides are given (a test key, nothing else uses it).
const SECRET: &str = "bGJkbnMgdHNpZyB0ZXN0IGtleSwgMzIgYnl0ZXMhIQ==";

#[test]
fn a_secondary_listed_with_a_key_gets_signed_transfers_and_notify_and_nothing_unsigned() {
    // Some 30 messages: each signed against the one before.
    let mut text = zone(1, "");
    for i in 0..6_000 {
        text.push_str(&format!("h{i:05} TXT \"{i:05}{}\"\n", "t".repeat(55)));
    }
    let knot_addr = free_port();
    let hold = UdpSocket::bind(knot_addr).unwrap();
    let site_text = format!("secondaries:\n  - {{address: \"{knot_addr}\", tsig: transfer-key}}\n");
    let site = Site::new(&[
        ("example.com.zone", &text),
        ("example.com.lb.yaml", &site_text),
    ]);
    let keys = site.path().join("keys/tsig");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(
        keys.join("transfer-key.yaml"),
        format!("algorithm: hmac-sha256\nsecret: {SECRET}\n"),
    )
    .unwrap();
    let server = site.serve();
    drop(hold);
    let knot = Knot::start_with_key(server.addr, knot_addr, Some(("transfer-key", SECRET)));
    knot.wait_for(
        "h05999.example.com.",
        "TXT",
        &format!("\"05999{}\"", "t".repeat(55)),
        Duration::from_secs(30),
    );
    // knotd signs its request with the key and drops a transfer whose messages do not
    // all verify.
    assert!(
        knot.log().contains("AXFR, incoming") && knot.log().contains("30 messages"),
        "{}",
        knot.log()
    );

    // A new serial: the signed NOTIFY is taken, and the signed SOA query and transfer
    // follow.
    let reloaded = server.reload_after(|| {
        let path = site.path().join("zones/example.com.zone");
        let partial = path.with_extension("zone.new");
        std::fs::write(
            &partial,
            text.replace(" 1 7200", " 2 7200") + "new A 192.0.2.99\n",
        )
        .unwrap();
        std::fs::rename(&partial, &path).unwrap();
    });
    assert_eq!(reloaded, Reloaded::Accepted);
    knot.wait_for("new.example.com.", "A", "192.0.2.99", PATIENCE);
    assert!(knot.log().contains("notify, incoming"), "{}", knot.log());
    assert_eq!(
        server.metric("lbdns_notify_total{result=\"acknowledged\"}"),
        1.0
    );
    assert_eq!(server.metric("lbdns_tsig_refused_total"), 0.0);

    // From the same address, unsigned or signed with another secret: NOTAUTH, counted.
    let axfr = |key: Option<&str>| {
        let mut dig = Command::new("dig");
        dig.args(["-b", "127.0.0.1", &format!("@{}", server.addr.ip())])
            .args([
                "-p",
                &server.addr.port().to_string(),
                "example.com.",
                "AXFR",
            ])
            .args(["+time=2", "+tries=1"]);
        if let Some(key) = key {
            dig.args(["-y", key]);
        }
        let output = dig.output().expect("dig is installed");
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr)
    };
    let signed = axfr(Some(&format!("hmac-sha256:transfer-key:{SECRET}")));
    // SOA, NS, ns1, www, mail, the 6,000, new, and the SOA again; dig checked each MAC.
    assert!(
        signed.contains("XFR size: 6007 records") && !signed.contains("verify"),
        "{}",
        &signed[signed.len().saturating_sub(2000)..]
    );
    let unsigned = axfr(None);
    assert!(unsigned.contains("Transfer failed"), "{unsigned}");
    let wrong = axfr(Some(
        "hmac-sha256:transfer-key:b3RoZXIgc2VjcmV0IG9mIHRoaXJ0eS10d28gYnl0ZXM=",
    ));
    assert!(
        wrong.contains("BADSIG") && wrong.contains("Transfer failed"),
        "{wrong}"
    );
    let other_key = axfr(Some(&format!("hmac-sha256:other-key:{SECRET}")));
    assert!(
        other_key.contains("BADKEY") && other_key.contains("Transfer failed"),
        "{other_key}"
    );
    assert_eq!(server.metric("lbdns_tsig_refused_total"), 3.0);
    let log = server.log();
    assert!(log.contains("BADSIG") && log.contains("BADKEY"), "{log}");
}
