//! Holding against hostile clients (issue 7, items 3 and 4): idle DNS TCP connections,
//! API connections that never finish their headers, the open-files limit, and a flood of
//! malformed queries. Every loop is bounded; all traffic is on 127.0.0.1.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::{QueryExt, Server, Site};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

/// Opens `n` TCP connections to `addr` and leaves them idle; between batches, checks
/// that the server still answers over UDP.
fn open_idle(server: &Server, addr: SocketAddr, n: usize, send: &[u8]) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(n);
    for i in 0..n {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        if !send.is_empty() {
            // The server may already have closed it to make room: that is fine.
            let _ = stream.write_all(send);
        }
        streams.push(stream);
        if i % 500 == 499 {
            udp_answers(server);
        }
    }
    streams
}

/// How many of `streams` the server has closed (EOF or reset), without waiting.
fn closed_by_server(streams: &[TcpStream]) -> usize {
    streams
        .iter()
        .filter(|stream| {
            stream.set_nonblocking(true).unwrap();
            let mut byte = [0u8; 1];
            let mut reader: &TcpStream = stream;
            match reader.read(&mut byte) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != ErrorKind::WouldBlock,
            }
        })
        .count()
}

/// Waits up to `wait` for `closed_by_server` to reach `want`; returns the last count.
fn wait_closed(streams: &[TcpStream], want: usize, wait: Duration) -> usize {
    let deadline = Instant::now() + wait;
    loop {
        let closed = closed_by_server(streams);
        if closed >= want || Instant::now() > deadline {
            return closed;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn udp_answers(server: &Server) {
    let reply = server.ask("www.example.com", RecordType::A);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
}

/// A query over TCP is answered within `within`.
fn tcp_answers(server: &Server, within: Duration) {
    let start = Instant::now();
    let query = Message::query_for(&"www.example.com.".parse().unwrap(), RecordType::A);
    let reply = server.tcp(&query);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(!reply.answers.is_empty(), "{reply}");
    assert!(
        start.elapsed() < within,
        "TCP answer took {:?}",
        start.elapsed()
    );
}

/// CPU the server uses while the test sleeps for `span`.
fn cpu_while_idle(server: &Server, span: Duration) -> Duration {
    let before = server.cpu_time();
    std::thread::sleep(span);
    server.cpu_time() - before
}

fn metric(server: &Server, sample: &str) -> f64 {
    server
        .metric_sample(sample)
        .unwrap_or_else(|| panic!("no sample {sample} in /metrics"))
}

#[test]
fn idle_dns_tcp_connections_over_the_cap_close_the_oldest_and_tcp_still_answers() {
    let site = Site::example();
    let server = site.serve_with(&["--tcp-max-clients", "500"]);
    let start = Instant::now();
    let streams = open_idle(&server, server.addr, 2500, &[]);
    eprintln!("2500 DNS TCP connections opened in {:?}", start.elapsed());
    // A new client is served while 2,500 connections were opened.
    tcp_answers(&server, Duration::from_secs(2));
    let dig = server.dig(&["+tcp", "www.example.com", "A", "+short"]);
    assert!(dig.contains("192.0.2."), "dig +tcp: {dig}");
    udp_answers(&server);
    // Everything over the cap went, oldest first: the newest are still open.
    let closed = wait_closed(&streams, 2000, Duration::from_secs(3));
    eprintln!(
        "closed by the server: {closed} of 2500 after {:?}",
        start.elapsed()
    );
    assert!(
        closed >= 2000,
        "the server closed {closed} of 2500 connections"
    );
    assert_eq!(
        closed_by_server(&streams[2100..]),
        0,
        "a new one was closed"
    );
    let cpu = cpu_while_idle(&server, Duration::from_secs(2));
    eprintln!("server CPU in 2 s holding 500 idle connections: {cpu:?}");
    assert!(cpu < Duration::from_millis(400), "CPU while idle: {cpu:?}");
    let evicted = metric(
        &server,
        "lbdns_tcp_connections_closed_total{listener=\"dns\",reason=\"evicted\"}",
    );
    assert!(evicted >= 2000.0, "evicted {evicted}");
    let open = metric(&server, "lbdns_tcp_connections{listener=\"dns\"}");
    assert!(open <= 500.0, "open {open}");
}

#[test]
fn dns_tcp_connections_that_send_no_complete_query_time_out() {
    let site = Site::example();
    let server = site.serve_with(&["--tcp-idle-timeout", "1"]);
    let mut streams = open_idle(&server, server.addr, 200, &[]);
    // One trickles a query a byte at a time: it must complete it within the timeout too.
    let mut trickler = TcpStream::connect(server.addr).unwrap();
    let started = Instant::now();
    for byte in [0u8, 40, 0, 1] {
        std::thread::sleep(Duration::from_millis(300));
        let _ = trickler.write_all(&[byte]);
    }
    streams.push(trickler);
    let closed = wait_closed(&streams, 201, Duration::from_secs(3));
    eprintln!(
        "{closed} of 201 closed {:?} after the trickler started",
        started.elapsed()
    );
    assert_eq!(closed, 201, "after {:?}", started.elapsed());
    let timed_out = metric(
        &server,
        "lbdns_tcp_connections_closed_total{listener=\"dns\",reason=\"idle_timeout\"}",
    );
    assert_eq!(timed_out, 201.0);
    tcp_answers(&server, Duration::from_secs(1));
}

#[test]
fn api_connections_that_never_finish_their_headers_are_closed() {
    let site = Site::example();
    let server = site.serve_with(&["--api-timeout", "1.5"]);
    let partial = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n", server.api);
    let mut streams = Vec::new();
    let mut slowest = Duration::ZERO;
    for batch in 0..8 {
        streams.extend(open_idle(&server, server.api, 250, partial.as_bytes()));
        let start = Instant::now();
        let health = server.http_get("/healthz", Duration::from_secs(1));
        assert!(
            matches!(health, Some((200, _))),
            "/healthz after {} connections: {health:?} in {:?}",
            (batch + 1) * 250,
            start.elapsed()
        );
        slowest = slowest.max(start.elapsed());
    }
    eprintln!("slowest /healthz while 2000 connections were opened: {slowest:?}");
    let opened = Instant::now();
    let closed = wait_closed(&streams, streams.len(), Duration::from_secs(4));
    eprintln!(
        "all {closed} closed {:?} after the last was opened",
        opened.elapsed()
    );
    assert_eq!(closed, streams.len(), "after {:?}", opened.elapsed());
    let by = |reason: &str| {
        metric(
            &server,
            &format!("lbdns_tcp_connections_closed_total{{listener=\"api\",reason=\"{reason}\"}}"),
        )
    };
    let (timed_out, evicted) = (by("header_timeout"), by("evicted"));
    eprintln!("header_timeout {timed_out}, evicted {evicted}");
    assert_eq!(timed_out + evicted, 2000.0, "{timed_out} + {evicted}");
    assert!(timed_out > 0.0);
    // Each probe is one connection, closed by the client's `Connection: close`.
    assert!(by("client") >= 8.0);
    udp_answers(&server);
}

#[test]
fn api_request_bodies_that_stop_coming_are_answered_and_closed() {
    let site = Site::example();
    let server = site.serve_with(&["--api-timeout", "1"]);
    let mut stream = TcpStream::connect(server.api).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = format!(
        "POST /v1/sites/example.com/tasks HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"hostname\"",
        server.api
    );
    let start = Instant::now();
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    let read = stream.read_to_string(&mut reply);
    eprintln!(
        "body timeout: answered and closed after {:?}",
        start.elapsed()
    );
    assert!(
        read.is_ok(),
        "{read:?} after {:?}: {reply}",
        start.elapsed()
    );
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("\"error\""), "{reply}");
    // The server counts the close just after the client sees it: poll briefly.
    let deadline = Instant::now() + Duration::from_secs(2);
    let body_timeouts =
        "lbdns_tcp_connections_closed_total{listener=\"api\",reason=\"body_timeout\"}";
    while metric(&server, body_timeouts) < 1.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(metric(&server, body_timeouts), 1.0);
}

#[test]
fn accept_backs_off_at_the_open_files_limit() {
    let site = Site::example();
    // A cap above the open-files limit, so accepting fails with EMFILE.
    let server = site.serve_with_nofile(&["--tcp-max-clients", "1000"], 256);
    let start = Instant::now();
    let streams = open_idle(&server, server.addr, 600, &[]);
    // Each accept over the limit closes an idle connection for its descriptor, then waits.
    let deadline = Instant::now() + Duration::from_secs(15);
    while accept_queue(server.addr) != Some(0) {
        assert!(
            Instant::now() < deadline,
            "the DNS accept queue is not drained"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "600 DNS connections accepted under 256 files in {:?}",
        start.elapsed()
    );
    udp_answers(&server);
    tcp_answers(&server, Duration::from_secs(1));
    // The API has no idle connection to close for a descriptor: it can only back off.
    let api_streams = open_idle(&server, server.api, 50, &[]);
    let cpu = cpu_while_idle(&server, Duration::from_secs(2));
    eprintln!("server CPU in 2 s at the open-files limit: {cpu:?}");
    assert!(
        cpu < Duration::from_millis(600),
        "CPU at the open-files limit: {cpu:?}"
    );
    udp_answers(&server);
    // The API needs a descriptor too: the clients leave first.
    drop(streams);
    drop(api_streams);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let query = Message::query_for(&"www.example.com.".parse().unwrap(), RecordType::A);
        if common::tcp_exchange(server.addr, &query.to_vec().unwrap()).is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no TCP answer after the clients left"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    tcp_answers(&server, Duration::from_secs(1));
    udp_answers(&server);
    let errors = metric(&server, "lbdns_accept_errors_total{listener=\"dns\"}");
    assert!(errors > 0.0, "accept errors {errors}");
    let freed = metric(
        &server,
        "lbdns_tcp_connections_closed_total{listener=\"dns\",reason=\"fd_limit\"}",
    );
    eprintln!("accept errors {errors}, closed to free a descriptor {freed}");
    assert!(freed > 0.0, "closed at the fd limit {freed}");
    let api_errors = metric(&server, "lbdns_accept_errors_total{listener=\"api\"}");
    assert!(api_errors > 0.0, "API accept errors {api_errors}");
}

/// Connections waiting in the kernel for `addr`'s listener to accept them
/// (`rx_queue` of a listening socket in /proc/net/tcp).
fn accept_queue(addr: SocketAddr) -> Option<u32> {
    let table = common::read(std::path::Path::new("/proc/net/tcp"));
    let local = format!("0100007F:{:04X}", addr.port());
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // local_address, st (0A = LISTEN), tx_queue:rx_queue
        if fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A") {
            u32::from_str_radix(fields.get(4)?.split(':').nth(1)?, 16).ok()
        } else {
            None
        }
    })
}

/// A query for www.example.com A whose OPT record ends inside its option: ECS announced
/// with 5 bytes, 4 there. (hickory decodes the message, warns, and drops the options.)
fn truncated_edns_query(id: u16) -> Vec<u8> {
    let mut packet = id.to_be_bytes().to_vec();
    packet.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in ["www", "example", "com"] {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, 0, 1, 0, 1]);
    let options = [0, 8, 0, 5, 0, 1, 0, 0];
    packet.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, options.len() as u8]);
    packet.extend_from_slice(&options);
    packet
}

#[test]
fn malformed_queries_are_counted_and_their_log_lines_throttled() {
    let site = Site::example();
    let server = site.serve();
    let lines_before = server.log().lines().count();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let (mut sent, mut formerr) = (0u32, 0u32);
    let mut buf = [0u8; 512];
    for _ in 0..200 {
        for _ in 0..100 {
            socket
                .send_to(&truncated_edns_query(sent as u16), server.addr)
                .unwrap();
            sent += 1;
        }
        for _ in 0..100 {
            let Ok(n) = socket.recv(&mut buf) else { break };
            if n >= 12 && buf[3] & 0x0f == 1 {
                formerr += 1;
            }
        }
    }
    assert!(formerr >= sent * 99 / 100, "{formerr} FORMERR of {sent}");
    // The summary line comes within a second.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !server.log().contains("suppressed") {
        assert!(Instant::now() < deadline, "no summary:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = server.log();
    let lines = log.lines().count() - lines_before;
    eprintln!("{sent} malformed packets, {formerr} FORMERR, {lines} log lines");
    assert!(lines <= 60, "{lines} log lines for {sent} packets:\n{log}");
    let counted = metric(&server, "lbdns_malformed_queries_total{reason=\"edns\"}");
    assert_eq!(counted, f64::from(formerr));
    let suppressed = metric(&server, "lbdns_log_lines_suppressed_total");
    assert!(
        suppressed > 0.0 && suppressed < f64::from(sent),
        "{suppressed}"
    );
}

#[test]
fn pipelined_tcp_queries_are_answered_in_order_and_bad_ones_counted() {
    let site = Site::example();
    let server = site.serve();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let good = |id: u16, name: &str| {
        let mut query = Message::query_for(&name.parse().unwrap(), RecordType::A);
        query.metadata.id = id;
        query.to_vec().unwrap()
    };
    // A header announcing a question that is not there: undecodable, FORMERR.
    let undecodable = vec![0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7];
    let messages = [
        good(1, "www.example.com."),
        undecodable,
        vec![9, 9, 9], // shorter than a header: dropped
        good(3, "nope.example.com."),
    ];
    let mut bytes = Vec::new();
    for message in &messages {
        bytes.extend_from_slice(&(message.len() as u16).to_be_bytes());
        bytes.extend_from_slice(message);
    }
    stream.write_all(&bytes).unwrap();
    let mut replies = Vec::new();
    for _ in 0..3 {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).unwrap();
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut reply).unwrap();
        replies.push(reply);
    }
    let ids: Vec<u16> = replies
        .iter()
        .map(|r| u16::from_be_bytes([r[0], r[1]]))
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    let rcodes: Vec<u8> = replies.iter().map(|r| r[3] & 0x0f).collect();
    assert_eq!(rcodes, [0, 1, 3], "NOERROR, FORMERR, NXDOMAIN");
    let by = |reason: &str| {
        metric(
            &server,
            &format!("lbdns_malformed_queries_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!((by("undecodable"), by("short")), (1.0, 1.0));
}

/// Sends `count` queries for www.example.com A from `source` at once and sorts what comes
/// back within a second: (full answers, truncated answers).
fn burst(server: &Server, source: &str, count: u16) -> (usize, usize) {
    burst_to(server.addr, source, count)
}

/// [`burst`] to the listener `to`.
fn burst_to(to: SocketAddr, source: &str, count: u16) -> (usize, usize) {
    let socket = std::net::UdpSocket::bind((source, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    for id in 0..count {
        let mut query = Message::new(id, MessageType::Query, OpCode::Query);
        query.add_query(Query::query(
            Name::from_ascii("www.example.com.").unwrap(),
            RecordType::A,
        ));
        socket.send_to(&query.to_vec().unwrap(), to).unwrap();
    }
    let (mut full, mut truncated) = (0, 0);
    let mut buf = [0u8; 1500];
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        let reply = Message::from_vec(&buf[..n]).unwrap();
        match reply.metadata.truncation {
            true => {
                assert!(
                    reply.answers.is_empty(),
                    "a slipped reply carries no records"
                );
                truncated += 1;
            }
            false => full += 1,
        }
    }
    (full, truncated)
}

#[test]
fn response_rate_limiting_drops_or_truncates_past_the_rate() {
    let site = Site::example();
    let server = site.serve_with(&[
        "--rrl-rate",
        "20",
        "--rrl-slip",
        "2",
        "--rrl-exempt",
        "127.0.0.2/32",
    ]);
    let (full, truncated) = burst(&server, "127.0.0.1", 200);
    eprintln!("rate 20, slip 2, 200 queries: {full} answered, {truncated} truncated");
    // 20 a second (the start-up probes took their share); a burst may straddle one
    // second boundary.
    assert!((10..=40).contains(&full), "{full} answered");
    // Of the rest, every second one goes out truncated.
    assert!((80..=95).contains(&truncated), "{truncated} truncated");
    let dropped = server.metric("lbdns_rrl_limited_responses_total{action=\"dropped\"}");
    assert!(dropped >= 80.0, "{dropped} dropped");
    // An exempt source is never limited, though it is in the same /24.
    assert_eq!(burst(&server, "127.0.0.2", 200), (200, 0));
    // TCP is never limited: it cannot be spoofed. (dig prints its own errors on stdout
    // too: only addresses count as an answer.)
    let d = dig_short(server.addr, &["+tcp", "www.example.com.", "A"]);
    assert!(
        !d.is_empty() && d.iter().all(|a| a.parse::<std::net::Ipv4Addr>().is_ok()),
        "{d:?}"
    );
}

/// `dig +short` at `addr`: the answers, never dig's own messages.
fn dig_short(addr: SocketAddr, args: &[&str]) -> Vec<String> {
    let out = std::process::Command::new("dig")
        .arg(format!("@{}", addr.ip()))
        .args([
            "-p",
            &addr.port().to_string(),
            "+norec",
            "+time=2",
            "+tries=1",
        ])
        .arg("+short")
        .args(args)
        .output()
        .expect("dig is installed (apt-get install dnsutils)");
    common::short_answers(&out)
}

/// The same over IPv6: a source is limited by its /56 on an IPv6 listener too (::1
/// here; that other /56s keep their own budget is checked in-process, src/rrl.rs, as
/// loopback has one IPv6 address). A machine without IPv6 on loopback fails this test.
#[test]
fn response_rate_limiting_applies_to_ipv6_sources() {
    let site = Site::example();
    let v6 = common::free_port_on(std::net::Ipv6Addr::LOCALHOST.into());
    let server = site.serve_with(&[
        "--listen",
        &v6.to_string(),
        "--rrl-rate",
        "20",
        "--rrl-slip",
        "2",
    ]);
    let (full, truncated) = burst_to(v6, "::1", 200);
    eprintln!("IPv6, rate 20, slip 2, 200 queries: {full} answered, {truncated} truncated");
    assert!((10..=40).contains(&full), "{full} answered");
    assert!((80..=95).contains(&truncated), "{truncated} truncated");
    let dropped = server.metric("lbdns_rrl_limited_responses_total{action=\"dropped\"}");
    assert!(dropped >= 80.0, "{dropped} dropped");
    let d = dig_short(v6, &["+tcp", "www.example.com.", "A"]);
    assert!(!d.is_empty(), "TCP over IPv6 is never limited: {d:?}");
}

#[test]
fn without_a_rate_nothing_is_limited() {
    let site = Site::example();
    let server = site.serve();
    assert_eq!(burst(&server, "127.0.0.1", 200), (200, 0));
}
