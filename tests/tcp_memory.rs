//! DNS over TCP holds bounded memory against clients that pipeline queries and never read
//! the replies (issue 19, item 1): the real binary, its resident memory read from
//! `/proc/PID/status`, and a fresh client still answered while the flood holds on.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{QueryExt, Server, Site, status_kb};
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

/// TXT records of 250 characters at big.example.com: a reply of about 61 KB, as in the issue.
const BIG_RECORDS: usize = 232;
/// Connections, and the queries each one sends in one go without reading a reply.
const CONNECTIONS: usize = 64;
const PIPELINED: usize = 4_000;

fn zone() -> String {
    let mut zone = String::from(
        "$ORIGIN example.com.\n$TTL 3600\n\
         @ SOA ns1 hostmaster 1 7200 900 1209600 300\n\
         @ NS ns1\nns1 A 192.0.2.53\n",
    );
    for i in 0..BIG_RECORDS {
        zone.push_str(&format!("big TXT \"{i:04}{}\"\n", "x".repeat(246)));
    }
    zone
}

/// `count` framed queries for big.example.com TXT, back to back, after one query padded
/// with trailing bytes to the largest message: a server that sizes its reads to the
/// messages it sees then reads thousands of the small ones at once.
fn pipelined(count: usize) -> Vec<u8> {
    let mut large = Message::query_for(&"big.example.com.".parse().unwrap(), RecordType::TXT)
        .to_vec()
        .unwrap();
    large.resize(usize::from(u16::MAX), 0);
    let mut bytes = u16::MAX.to_be_bytes().to_vec();
    bytes.extend_from_slice(&large);
    for id in 0..count {
        let mut query = Message::query_for(&"big.example.com.".parse().unwrap(), RecordType::TXT);
        query.metadata.id = id as u16;
        let wire = query.to_vec().unwrap();
        bytes.extend_from_slice(&(wire.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&wire);
    }
    bytes
}

fn connections_closed(server: &Server) -> f64 {
    let text = server.metrics_text();
    text.lines()
        .filter(|line| line.starts_with("lbdns_tcp_connections_closed_total{listener=\"dns\""))
        .filter_map(|line| line.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn pipelining_clients_that_never_read_hold_bounded_memory() {
    let site = Site::new(&[("example.com.zone", &zone())]);
    // Connections whose replies are not taken are closed after 3 s.
    let server = site.serve_with(&["--tcp-idle-timeout", "3"]);
    let pid = server.pid();
    // The reply really is about 61 KB.
    let big = server.tcp(&Message::query_for(
        &"big.example.com.".parse().unwrap(),
        RecordType::TXT,
    ));
    assert_eq!(big.answers.len(), BIG_RECORDS);
    let reply_len = big.to_vec().unwrap().len();
    assert!(reply_len > 60_000, "{reply_len}");
    let baseline = status_kb(pid, "VmHWM");
    let closed_before = connections_closed(&server);

    let queries = pipelined(PIPELINED);
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let queries = queries.clone();
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                // The server stops reading once its replies back up: that is the point.
                stream
                    .set_write_timeout(Some(Duration::from_secs(1)))
                    .unwrap();
                let _ = stream.write_all(&queries);
                // Held open, never read, until the server closes it.
                stream
            })
        })
        .collect();
    let streams: Vec<TcpStream> = clients.into_iter().map(|c| c.join().unwrap()).collect();

    // Meanwhile a fresh client is answered over UDP and TCP.
    let started = Instant::now();
    let soa = Message::query_for(&"example.com.".parse().unwrap(), RecordType::SOA);
    assert_eq!(server.udp(&soa).answers.len(), 1);
    assert_eq!(server.tcp(&soa).answers.len(), 1);
    eprintln!(
        "fresh UDP and TCP queries answered in {:?}",
        started.elapsed()
    );

    // Every stuck connection is closed in the end: by then the server has buffered all
    // it ever will for them, and VmHWM is the peak it reached doing so.
    let deadline = Instant::now() + Duration::from_secs(60);
    while connections_closed(&server) < closed_before + CONNECTIONS as f64 {
        assert!(
            Instant::now() < deadline,
            "the stuck connections were not closed:\n{}",
            server.metrics_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(streams);
    let peak = status_kb(pid, "VmHWM");
    let grew_mb = peak.saturating_sub(baseline) / 1024;
    eprintln!(
        "VmHWM {} MB before, {} MB at the peak of {CONNECTIONS} connections x {PIPELINED} \
         pipelined queries for a {reply_len}-byte reply (+{grew_mb} MB)",
        baseline / 1024,
        peak / 1024
    );
    // Per connection lbdns keeps at most 16 KB of queued replies, one largest reply and
    // one read of queries: about 150 KB, 10 MB for 64 connections. Queuing every reply
    // to the queries of one read (up to a few KB of them) is about 1.8 MB a connection,
    // 114 MB here. 32 MB leaves room for the allocator's and the runtime's own growth.
    assert!(
        grew_mb < 32,
        "VmHWM grew by {grew_mb} MB (from {} to {} MB)",
        baseline / 1024,
        peak / 1024
    );
    // And the server still answers.
    assert_eq!(server.udp(&soa).answers.len(), 1);
}
