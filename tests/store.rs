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
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, read(log.path()));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "a second server on the same directory is still running after {PATIENCE:?}:\n{}",
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

/// `n` tasks in the API's canonical form (every key spelled out: 15 YAML nodes a task).
fn tasks_yaml(n: usize) -> String {
    let mut text = String::from(
        "origin_groups:\n  web:\n    policy: weight\n    origins:\n    - address: 192.0.2.10\n      weight: 1\ntasks:\n",
    );
    for i in 0..n {
        text.push_str(&format!(
            "- id: t{i}\n  hostname: t{i}.example.com\n  mode: dns_only\n  origin_group: web\n  ttl: 30\n  answers: 1\n  enabled: true\n"
        ));
    }
    text
}

#[test]
fn tasks_created_past_the_old_yaml_budget_load_after_a_restart() {
    // 16,650 tasks: just under the 250,000 YAML nodes the loader used to stop at (the
    // 16,665th task); the API then takes it past that, and everything must load again.
    let site = Site::new(&[
        ("example.com.zone", ZONE),
        ("example.com.lb.yaml", &tasks_yaml(16_650)),
    ]);
    let server = site.serve();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let created: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let (agent, api) = (agent.clone(), server.api);
                s.spawn(move || {
                    let body =
                        format!(r#"{{"hostname": "n{i}.example.com", "origin_group": "web"}}"#);
                    agent
                        .put(format!("http://{api}/v1/sites/example.com/tasks/n{i}"))
                        .header("Content-Type", "application/json")
                        .send(body)
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(created.iter().all(|&s| s == 201), "{created:?}");
    drop(server);

    let check = site.check();
    assert!(check.status.success(), "{}", describe(&check));
    assert!(
        stdout(&check).contains("16670 tasks"),
        "{}",
        describe(&check)
    );
    let started = Instant::now();
    let server = site.serve();
    eprintln!(
        "16,670 tasks loaded and served {:?} after the start (debug build)",
        started.elapsed()
    );
    for name in ["n0.example.com", "n19.example.com", "t16649.example.com"] {
        let reply = server.ask(name, hickory_proto::rr::RecordType::A);
        assert_eq!(reply.answers.len(), 1, "{name}: {reply}");
    }
}
