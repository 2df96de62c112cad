//! What the store guarantees about the served directory (issue 19, items 2 and 3):
//!
//! - one server per directory: a second `serve` on it refuses to start, naming the first
//!   one's PID and the directory (two writers lose each other's acknowledged changes);
//!   `check` does not lock;
//! - a site file holding 100,000 tasks loads, and the API never acknowledges a change
//!   whose file would not load back: a change past a limit is refused with the limit's
//!   name and the file on disk is left as it was.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const ZONE: &str = "$ORIGIN example.com.\n$TTL 3600\n\
@ IN SOA ns1 hostmaster 1 7200 900 1209600 300\n\
@ NS ns1\n\
ns1 A 192.0.2.53\n";

const SITE: &str = "origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks: []
";

/// Runs a second `lbdns serve` on `dir`; its exit status and stderr, or a panic when it
/// is still serving after 20 s.
fn second_server(dir: &std::path::Path, extra: &[&str]) -> (std::process::ExitStatus, String) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(["serve", "--dir"])
        .arg(dir)
        .arg("--listen")
        .arg(free_port().to_string())
        .arg("--api")
        .arg(free_port().to_string())
        .arg("--geoip")
        .arg(test_geoip())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, read(log.path()));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "a second server on the same directory is still running after 20 s:\n{}",
                read(log.path())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_server_on_one_directory_refuses_to_start_naming_the_first() {
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", SITE)]);
    let mut first = site.serve();
    let (status, log) = second_server(site.path(), &[]);
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(&format!("pid {}", first.pid())),
        "the refusal names the holder's PID:\n{log}"
    );
    assert!(
        log.contains(&site.path().display().to_string()),
        "the refusal names the directory:\n{log}"
    );
    // The first one still serves, and `check` reads the directory without the lock.
    assert!(first.is_running());
    let check = site.check();
    assert!(check.status.success(), "{}", describe(&check));
    // Once the holder is gone, however it went, the directory can be served again.
    first.crash();
    let mut again = site.serve();
    assert!(again.is_running());
}
