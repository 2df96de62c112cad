//! A burst of 1,000 parallel API writes against the real binary (issue: writes must not
//! starve the API). Every request gets an answer within its timeout — 201, or 503 with
//! `Retry-After` when the write queue is full — what was acknowledged is exactly what is
//! listed, written and answered, and `/healthz` and `GET /v1/sites` never queue behind the
//! writes.
//!
//! A test binary of its own: with 2 cores, another test's server running beside it would
//! measure the machine, not lbdns.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

const ZONE: &str = "\
$ORIGIN example.com.
$TTL 600
@   IN SOA ns1 hostmaster 1 7200 900 1209600 300
@   NS  ns1
ns1 A   192.0.2.53
";

const SITE: &str = "\
origin_groups:
  pool:
    origins:
    - address: 192.0.2.10
";

const TASKS: &str = "/v1/sites/example.com/tasks";
const CLIENTS: usize = 1000;
/// How long a client of the burst waits for its answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(3 * PATIENCE.as_secs());

/// One reply of the burst: status, whether it had `Retry-After`, the task id.
type Reply = (u16, bool, String);

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .new_agent()
}

#[test]
fn a_write_burst_is_answered_in_time_and_reads_never_wait() {
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", SITE)]);
    let server = site.serve();
    let addr = server.api;
    let stop = Arc::new(AtomicBool::new(false));
    // Health and reads, polled throughout; their worst latency is the point.
    let watcher = {
        let stop = stop.clone();
        let agent = agent(PATIENCE);
        std::thread::spawn(move || {
            let (mut worst, mut polls) = (Duration::ZERO, 0);
            while !stop.load(Ordering::Relaxed) {
                for path in ["/healthz", "/v1/sites"] {
                    let start = Instant::now();
                    let status = agent
                        .get(format!("http://{addr}{path}"))
                        .call()
                        .map(|r| r.status().as_u16());
                    assert_eq!(status.ok(), Some(200), "GET {path}");
                    worst = worst.max(start.elapsed());
                    polls += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (worst, polls)
        })
    };
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || -> Result<Reply, String> {
                    // Typically all answered in 5 s; with other builds loading the machine
                    // (load 11 on 2 cores), in 11-13 s. Three times PATIENCE is for a
                    // request left hanging, not for a slow one.
                    let agent = agent(ANSWER_WITHIN);
                    let id = format!("burst{i}");
                    let body = json!({"id": id, "hostname": format!("{id}.example.com"), "origin_group": "pool"});
                    barrier.wait();
                    let reply = agent
                        .post(format!("http://{addr}{TASKS}"))
                        .header("Content-Type", "application/json")
                        .send(body.to_string())
                        .map_err(|e| format!("{id}: no reply within {ANSWER_WITHIN:?}: {e}"))?;
                    let retry = reply.headers().contains_key("retry-after");
                    Ok((reply.status().as_u16(), retry, id))
                })
                .expect("spawn a client")
        })
        .collect();
    let replies: Vec<Result<Reply, String>> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (worst_read, polls) = watcher.join().expect("watcher");

    let unanswered: Vec<&String> = replies.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        unanswered.is_empty(),
        "{} requests got no answer: {:?}\n{}",
        unanswered.len(),
        &unanswered[..unanswered.len().min(5)],
        server.log()
    );
    let replies: Vec<&Reply> = replies.iter().filter_map(|r| r.as_ref().ok()).collect();
    let odd: Vec<&&Reply> = replies
        .iter()
        .filter(|r| !(r.0 == 201 || (r.0 == 503 && r.1)))
        .take(5)
        .collect();
    assert!(odd.is_empty(), "only 201, or 503 with Retry-After: {odd:?}");
    let created: BTreeSet<String> = replies
        .iter()
        .filter(|r| r.0 == 201)
        .map(|r| r.2.clone())
        .collect();
    let busy = replies.iter().filter(|r| r.0 == 503).count();
    eprintln!(
        "burst of {CLIENTS} creates: {} created, {busy} busy (503), in {took:?}; worst /healthz or /v1/sites {worst_read:?} over {polls} reads",
        created.len()
    );
    // Reads come from the committed state and never wait for the writer. A read queued
    // behind the writes would wait for the queue ahead of it: most of the burst. What a
    // poll measures beyond that is scheduling: on 2 CPUs the writer takes one and the
    // 1,000 client threads of this process wake together: typically 80-500 ms, but 3-6 s
    // with other builds loading the machine (load 13). Half the burst, at least 5 s,
    // leaves room for that and still fails a read queued behind most of the burst.
    let bound = (took / 2).max(Duration::from_secs(5));
    assert!(
        worst_read < bound,
        "a read waited {worst_read:?} behind the writes (burst {took:?}, bound {bound:?})"
    );
    assert!(!created.is_empty());

    // What was acknowledged is exactly what is listed, written and answered.
    let listing: Value = agent(PATIENCE)
        .get(format!("http://{addr}{TASKS}"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let listed: BTreeSet<String> = listing["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, created);
    let file = read(&site.path().join("zones/example.com.lb.yaml"));
    let in_file: BTreeSet<String> = file
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- id: "))
        .map(str::to_owned)
        .collect();
    assert_eq!(in_file, created);
    for id in created.iter().take(20) {
        let reply = server.ask(&format!("{id}.example.com"), RecordType::A);
        assert_eq!(answers(&reply), ["192.0.2.10"], "{id}");
    }
}
