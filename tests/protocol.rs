//! Operator protocol features (issue 19, item 11): NSID (RFC 5001) when a query asks for
//! it, Extended DNS Errors (RFC 8914) on refusals, and class ANY and type 0 questions
//! answered as Knot answers them (knotd serves the same zone beside lbdns).
//!
//! Needs `knotd` (Debian package `knot`) and `dig`; the tests fail, they do not skip,
//! without them.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{PATIENCE, Site, free_port, require_tool};

const ZONE: &str = "$ORIGIN example.com.\n$TTL 3600\n\
    @ SOA ns1 hostmaster 1 7200 900 1209600 300\n\
    @ NS ns1\nns1 A 192.0.2.53\nwww A 192.0.2.80\n";

const CLASS_IN: u16 = 1;
const CLASS_CH: u16 = 3;
const CLASS_NONE: u16 = 254;
const CLASS_ANY: u16 = 255;
const NSID: u16 = 3;
const EDE: u16 = 15;

/// A query in wire form: `name` `qtype` `qclass`, with an OPT record (and an empty NSID
/// option when `nsid`) when `edns`.
fn query(name: &str, qtype: u16, qclass: u16, edns: bool, nsid: bool) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&qclass.to_be_bytes());
    if edns {
        let options: &[u8] = if nsid { &[0, 3, 0, 0] } else { &[] };
        q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        q.extend_from_slice(&(options.len() as u16).to_be_bytes());
        q.extend_from_slice(options);
    }
    q
}

/// What is compared of a reply.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    rcode: u16,
    authoritative: bool,
    answers: u16,
    /// The NSID option's data, when there is one.
    nsid: Option<Vec<u8>>,
    /// The Extended DNS Error's INFO-CODE, when there is one.
    ede: Option<u16>,
}

fn u16_at(m: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([m[at], m[at + 1]])
}

fn skip_name(m: &[u8], mut at: usize) -> usize {
    loop {
        match m[at] {
            0 => return at + 1,
            l if l & 0xC0 == 0xC0 => return at + 2,
            l => at += 1 + usize::from(l),
        }
    }
}

fn parse(m: &[u8]) -> Reply {
    let mut reply = Reply {
        rcode: u16_at(m, 2) & 0xF,
        authoritative: m[2] & 0x04 != 0,
        answers: u16_at(m, 6),
        nsid: None,
        ede: None,
    };
    let mut at = 12;
    for _ in 0..u16_at(m, 4) {
        at = skip_name(m, at) + 4;
    }
    let records = u16_at(m, 6) + u16_at(m, 8) + u16_at(m, 10);
    for _ in 0..records {
        at = skip_name(m, at);
        let (rtype, rdlen) = (u16_at(m, at), usize::from(u16_at(m, at + 8)));
        let rdata = &m[at + 10..at + 10 + rdlen];
        if rtype == 41 {
            let mut o = 0;
            while o + 4 <= rdata.len() {
                let (code, len) = (u16_at(rdata, o), usize::from(u16_at(rdata, o + 2)));
                let data = &rdata[o + 4..o + 4 + len];
                match code {
                    NSID => reply.nsid = Some(data.to_vec()),
                    EDE => reply.ede = Some(u16_at(data, 0)),
                    _ => {}
                }
                o += 4 + len;
            }
        }
        at += 10 + rdlen;
    }
    assert_eq!(at, m.len(), "a whole message");
    reply
}

fn udp(server: SocketAddr, query: &[u8]) -> Reply {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket.send_to(query, server).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a UDP reply");
    parse(&buf[..n])
}

fn tcp(server: SocketAddr, query: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(server).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).unwrap();
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix).unwrap();
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    stream.read_exact(&mut message).unwrap();
    parse(&message)
}

/// knotd as a primary for example.com (zone file in `zones`), with an NSID.
struct Knot {
    child: Child,
    dir: tempfile::TempDir,
}

impl Knot {
    fn start(zones: &Path, listen: SocketAddr) -> Self {
        let knotd = require_tool(&["knotd", "/usr/sbin/knotd"], "knot");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let conf = format!(
            "server:\n    rundir: \"{d}\"\n    listen: {ip}@{port}\n    nsid: knot\n\
             log:\n  - target: stderr\n    any: info\n\
             database:\n    storage: \"{d}\"\n\
             template:\n  - id: default\n    storage: \"{zones}\"\n    zonefile-sync: -1\n\
             \x20   journal-content: none\n\
             zone:\n  - domain: example.com\n",
            ip = listen.ip(),
            port = listen.port(),
            zones = zones.display(),
        );
        let path = dir.path().join("knot.conf");
        std::fs::write(&path, conf).unwrap();
        let log = std::fs::File::create(dir.path().join("knotd.log")).unwrap();
        let child = Command::new(knotd)
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start knotd");
        let knot = Self { child, dir };
        let deadline = Instant::now() + PATIENCE;
        let probe = query("example.com.", 6, CLASS_IN, false, false);
        loop {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            socket.send_to(&probe, listen).unwrap();
            let mut buf = [0u8; 512];
            if let Ok(n) = socket.recv(&mut buf)
                && parse(&buf[..n]).authoritative
            {
                return knot;
            }
            assert!(
                Instant::now() < deadline,
                "knotd did not serve example.com within {PATIENCE:?}:\n{}",
                std::fs::read_to_string(knot.dir.path().join("knotd.log")).unwrap_or_default()
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

#[test]
fn class_any_type_0_refusals_and_nsid_as_knot_answers_them() {
    let site = Site::new(&[("example.com.zone", ZONE)]);
    let lbdns = site.serve_with(&["--nsid", "lbdns-node-1"]);
    let knot_addr = free_port();
    let knot = Knot::start(&site.path().join("zones"), knot_addr);
    let asks: &[(&str, u16, u16, bool, bool)] = &[
        // Class ANY is answered as IN.
        ("example.com.", 6, CLASS_ANY, true, false),
        ("www.example.com.", 1, CLASS_ANY, false, false),
        ("nope.example.com.", 1, CLASS_ANY, true, false),
        // Type 0 is not implemented.
        ("example.com.", 0, CLASS_IN, true, false),
        ("www.example.com.", 0, CLASS_ANY, false, false),
        // Classes lbdns does not serve: REFUSED, without an extended error.
        ("example.com.", 6, CLASS_CH, true, false),
        ("example.com.", 6, CLASS_NONE, true, false),
        // A name in no zone: REFUSED with EDE 20, with EDNS.
        ("example.org.", 1, CLASS_IN, true, false),
        ("example.org.", 1, CLASS_IN, false, false),
        // NSID only when asked.
        ("example.com.", 6, CLASS_IN, true, true),
        ("example.org.", 1, CLASS_IN, true, true),
        ("www.example.com.", 1, CLASS_IN, true, false),
    ];
    let mut differences = Vec::new();
    for &(name, qtype, qclass, edns, nsid) in asks {
        let q = query(name, qtype, qclass, edns, nsid);
        let (ours, theirs) = (udp(lbdns.addr, &q), udp(knot_addr, &q));
        // The identifiers differ by design: compare whether there is one.
        let same = Reply {
            nsid: ours.nsid.as_ref().map(|_| Vec::new()),
            ..ours
        } == Reply {
            nsid: theirs.nsid.as_ref().map(|_| Vec::new()),
            ..theirs
        };
        if !same {
            differences.push(format!(
                "{name} type {qtype} class {qclass} (EDNS {edns}, NSID {nsid}): \
                 lbdns {ours:?}, knotd {theirs:?}"
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    drop(knot);

    // The identifier itself, over UDP and TCP, as dig shows it.
    let asked = query("example.com.", 6, CLASS_IN, true, true);
    assert_eq!(udp(lbdns.addr, &asked).nsid, Some(b"lbdns-node-1".to_vec()));
    assert_eq!(tcp(lbdns.addr, &asked).nsid, Some(b"lbdns-node-1".to_vec()));
    let dig = lbdns.dig(&["+nsid", "example.com.", "SOA"]);
    assert!(dig.contains("NSID: 6c 62 64 6e 73"), "{dig}");
    assert!(dig.contains("(\"lbdns-node-1\")"), "{dig}");
    let dig = lbdns.dig(&["example.com.", "SOA"]);
    assert!(!dig.contains("NSID"), "{dig}");
}

#[test]
fn nsid_in_hex_and_none_without_the_flag() {
    let site = Site::new(&[("example.com.zone", ZONE)]);
    let asked = query("example.com.", 6, CLASS_IN, true, true);
    let hex = site.serve_with(&["--nsid", "hex:00FF10"]);
    assert_eq!(udp(hex.addr, &asked).nsid, Some(vec![0x00, 0xff, 0x10]));
    drop(hex);
    let plain = site.serve();
    assert_eq!(udp(plain.addr, &asked).nsid, None);
}

#[test]
fn refused_transfers_carry_an_extended_error() {
    let secondaries = "secondaries: [\"192.0.2.53\"]\n";
    let site = Site::new(&[
        ("example.com.zone", ZONE),
        ("example.com.lb.yaml", secondaries),
    ]);
    let server = site.serve();
    // Not a listed secondary: REFUSED, "Prohibited".
    let refused = tcp(
        server.addr,
        &query("example.com.", 252, CLASS_IN, true, false),
    );
    assert_eq!((refused.rcode, refused.ede), (5, Some(18)), "{refused:?}");
    // No zone has this apex: NOTAUTH, "Not Authoritative".
    let notauth = tcp(
        server.addr,
        &query("example.org.", 252, CLASS_IN, true, false),
    );
    assert_eq!((notauth.rcode, notauth.ede), (9, Some(20)), "{notauth:?}");
    // Without EDNS, no OPT record to carry it.
    let plain = tcp(
        server.addr,
        &query("example.com.", 252, CLASS_IN, false, false),
    );
    assert_eq!((plain.rcode, plain.ede), (5, None));
}
