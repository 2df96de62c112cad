//! Crash safety and reloads under load (SPEC §7, §8), against the real binary.
//!
//! - kill -9 while a client streams API changes: after a restart every acknowledged
//!   change is served and the site files parse;
//! - a bounded query load runs while the configuration is changed and reloaded many
//!   times: no query may be lost or answered wrongly. Both print their figures.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
        let deadline = Instant::now() + Duration::from_secs(20);
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

/// What one query may legitimately get while the configuration changes.
fn check_answer(name: &str, reply: &Message) -> Result<(), String> {
    if reply.metadata.response_code != ResponseCode::NoError || !reply.metadata.authoritative {
        return Err(format!("{name}: {}", reply.metadata.response_code));
    }
    let got: Vec<(String, u32)> = reply
        .answers
        .iter()
        .map(|r| (r.data.to_string(), r.ttl))
        .collect();
    let ok = match name {
        // The task's answer (either origin, TTL 30) or the zone's own record (TTL 300).
        "www.example.com." => {
            matches!(got.as_slice(), [(a, 30)] if a == "192.0.2.10" || a == "192.0.2.11")
                || got == [("192.0.2.80".to_owned(), 300)]
        }
        _ => got == [("192.0.2.81".to_owned(), 600)],
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{name}: {got:?}"))
    }
}

#[test]
fn reloads_under_load_lose_no_query() {
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", SITE)]);
    let server = site.serve();
    let addr = server.addr;
    let running = Arc::new(AtomicBool::new(true));
    let (sent, lost) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let wrong = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..4)
        .map(|n| {
            let (running, sent, lost, wrong) =
                (running.clone(), sent.clone(), lost.clone(), wrong.clone());
            std::thread::spawn(move || {
                let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                socket
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let mut buf = vec![0u8; 4096];
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut id: u16 = (n as u16) << 12;
                while running.load(Ordering::Relaxed) && Instant::now() < deadline {
                    for name in ["www.example.com.", "static.example.com."] {
                        id = id.wrapping_add(1);
                        let mut query = Message::query_for(&name.parse().unwrap(), RecordType::A);
                        query.metadata.id = id;
                        socket.send_to(&query.to_vec().unwrap(), addr).unwrap();
                        sent.fetch_add(1, Ordering::Relaxed);
                        let reply = loop {
                            match socket.recv_from(&mut buf) {
                                Ok((len, _)) => match Message::from_vec(&buf[..len]) {
                                    Ok(m) if m.metadata.id == id => break Some(m),
                                    _ => continue, // a late reply to an earlier query
                                },
                                Err(_) => break None,
                            }
                        };
                        match reply {
                            None => {
                                lost.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(reply) => {
                                if let Err(e) = check_answer(name, &reply) {
                                    wrong.lock().unwrap().push(e);
                                }
                            }
                        }
                    }
                }
            })
        })
        .collect();

    // Change the configuration 60 times while the load runs: API disable/enable, file
    // edits picked up by the watcher, and SIGHUP reloads.
    let agent = agent();
    let base = format!("http://{}/v1/sites/example.com/tasks/www", server.api);
    let mut changes = 0;
    for i in 0..20 {
        let action = if i % 2 == 0 { "disable" } else { "enable" };
        assert_eq!(post(&agent, &format!("{base}/{action}"), None), Some(200));
        changes += 1;
        let ttl_site = SITE.replace("ttl: 30", "ttl: 30\n    answers: 1");
        site.write(
            "example.com.lb.yaml",
            if i % 2 == 0 { &ttl_site } else { SITE },
        );
        changes += 1;
        std::thread::sleep(Duration::from_millis(30));
        server.reload();
        changes += 1;
    }
    std::thread::sleep(Duration::from_millis(300));
    running.store(false, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let (sent, lost) = (sent.load(Ordering::Relaxed), lost.load(Ordering::Relaxed));
    let wrong = wrong.lock().unwrap();
    println!(
        "reload under load: {sent} queries during {changes} configuration changes: {lost} lost, {} answered wrongly",
        wrong.len()
    );
    assert!(
        sent > 1000,
        "the load was too light to mean anything: {sent} queries"
    );
    assert_eq!(lost, 0, "queries lost during reloads");
    assert!(
        wrong.is_empty(),
        "wrong answers: {:?}",
        &wrong[..wrong.len().min(10)]
    );
}
