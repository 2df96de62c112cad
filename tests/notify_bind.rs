//! NOTIFY accepted by BIND (issue 19, item 7): BIND takes a NOTIFY only from an address it
//! knows as the zone's primary ("refused notify from non-primary"). lbdns listens on
//! 127.0.0.3 only, so a NOTIFY from an unbound socket would leave from 127.0.0.1 (the
//! source the kernel picks on loopback) and be refused; sent from the listen address it
//! is accepted and `named` has the new serial long before its refresh (7200 s).
//!
//! Needs `named` (Debian package `bind9`); the test fails, it does not skip, without it.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{PATIENCE, Site, free_port, test_geoip};

fn zone(serial: u32, extra: &str) -> String {
    format!(
        "$ORIGIN example.com.\n$TTL 3600\n\
         @ SOA ns1 hostmaster {serial} 7200 900 1209600 300\n\
         @ NS ns1\nns1 A 192.0.2.53\nwww A 192.0.2.80\n{extra}"
    )
}

/// [`common::free_port_on`] for `ip` as text: below the ephemeral range, so no client
/// socket of another test takes it before named or lbdns binds it.
fn free_port_on(ip: &str) -> SocketAddr {
    common::free_port_on(ip.parse().expect("an IP address"))
}

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `dig +short` at `server`.
fn short(server: SocketAddr, name: &str, rtype: &str) -> String {
    let output = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args(["+norec", "+time=1", "+tries=1", "+short", name, rtype])
        .output()
        .expect("dig is installed");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Waits until `server` answers `name`/`rtype` with `want`; `log` says what happened if not.
fn wait_for(
    server: SocketAddr,
    name: &str,
    rtype: &str,
    want: &str,
    within: Duration,
    log: &dyn Fn() -> String,
) -> Duration {
    let start = Instant::now();
    loop {
        let got = short(server, name, rtype);
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{server} did not answer {name} {rtype} = {want} within {within:?} (it says {got:?}):\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `named` as a secondary of `primary` for example.com, on `listen`, its files in `dir`.
fn start_named(dir: &Path, primary: SocketAddr, listen: SocketAddr) -> Running {
    let d = dir.display();
    let conf = format!(
        "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n\
         session-keyfile \"{d}/session.key\";\n  managed-keys-directory \"{d}\";\n\
         listen-on port {port} {{ {ip}; }};\n  listen-on-v6 {{ none; }};\n\
         recursion no;\n  notify no;\n  dnssec-validation no;\n}};\n\
         controls {{ }};\n\
         zone \"example.com\" {{\n  type secondary;\n  file \"{d}/example.com.db\";\n\
         primaries port {pport} {{ {pip}; }};\n}};\n",
        ip = listen.ip(),
        port = listen.port(),
        pip = primary.ip(),
        pport = primary.port(),
    );
    let path = dir.join("named.conf");
    std::fs::write(&path, conf).unwrap();
    let log = std::fs::File::create(dir.join("named.log")).unwrap();
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
    Running(child)
}

/// lbdns listening on `listen` (loopback addresses, with `extra` flags) and named as a
/// secondary whose primary is lbdns's address on `primary`; a change of serial must reach
/// named through NOTIFY, which named accepts from `primary` only.
fn named_follows_notify(listen: &[&str], primary: &str, extra: &[&str]) {
    let named_dir = tempfile::tempdir().unwrap();
    let named_log = || std::fs::read_to_string(named_dir.path().join("named.log")).unwrap();
    // named listens only on addresses of interfaces: 127.0.0.1, the address lo has.
    let named_addr = free_port_on("127.0.0.1");
    // Every loopback source may transfer; named's address and port is notified.
    let site_file = format!("secondaries: [\"127.0.0.0/8\", \"{named_addr}\"]\n");
    let site = Site::new(&[
        ("example.com.zone", &zone(1, "")),
        ("example.com.lb.yaml", &site_file),
    ]);

    let listen: Vec<SocketAddr> = listen.iter().map(|ip| free_port_on(ip)).collect();
    let primary = *listen
        .iter()
        .find(|a| a.ip().to_string() == primary)
        .unwrap();
    let api = free_port();
    let log_path = site.path().join("lbdns.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_lbdns"));
    command.args(["serve", "--dir"]).arg(site.path());
    for addr in &listen {
        command.arg("--listen").arg(addr.to_string());
    }
    let lbdns = Running(
        command
            .arg("--api")
            .arg(api.to_string())
            .arg("--geoip")
            .arg(test_geoip())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("start lbdns"),
    );
    let lbdns_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_for(
        primary,
        "www.example.com.",
        "A",
        "192.0.2.80",
        PATIENCE,
        &lbdns_log,
    );

    let _named = start_named(named_dir.path(), primary, named_addr);
    wait_for(
        named_addr,
        "www.example.com.",
        "A",
        "192.0.2.80",
        PATIENCE,
        &named_log,
    );

    // A new serial, written whole and renamed into place; the file watcher reloads.
    let path = site.path().join("zones/example.com.zone");
    let partial = path.with_extension("zone.new");
    std::fs::write(&partial, zone(2, "new A 192.0.2.99\n")).unwrap();
    std::fs::rename(&partial, &path).unwrap();
    let took = wait_for(
        named_addr,
        "new.example.com.",
        "A",
        "192.0.2.99",
        PATIENCE,
        &|| format!("named:\n{}\nlbdns:\n{}", named_log(), lbdns_log()),
    );
    eprintln!("named had serial 2 {took:?} after the change");
    let log = named_log();
    assert!(!log.contains("refused notify"), "{log}");
    assert!(
        log.contains(&format!("notify from {}#", primary.ip())),
        "{log}"
    );
    assert!(
        lbdns_log().contains("NOTIFY acknowledged"),
        "{}",
        lbdns_log()
    );
    drop(lbdns);
}

#[test]
fn bind_accepts_notify_from_the_listen_address_and_transfers_at_once() {
    named_follows_notify(&["127.0.0.3"], "127.0.0.3", &[]);
}

#[test]
fn notify_leaves_from_the_notify_source_when_given() {
    // Without the flag NOTIFY would leave from the first listen address, 127.0.0.3.
    named_follows_notify(
        &["127.0.0.3", "127.0.0.4"],
        "127.0.0.4",
        &["--notify-source", "127.0.0.4"],
    );
}

#[test]
fn a_notify_source_that_is_not_an_address_of_this_host_is_refused_at_start() {
    let site = Site::new(&[("example.com.zone", &zone(1, ""))]);
    let output = Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(["serve", "--dir"])
        .arg(site.path())
        .args(["--listen", &free_port().to_string()])
        .args(["--api", &free_port().to_string()])
        .args(["--notify-source", "203.0.113.9"])
        .output()
        .expect("run lbdns");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("--notify-source 203.0.113.9: cannot send from it"),
        "{stderr}"
    );
}
