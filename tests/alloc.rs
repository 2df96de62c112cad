//! The query path allocates nothing: `respond` is called on the shipped example for every
//! kind of answer (weighted, region by GeoIP and by ECS, CNAME chains, wildcards,
//! referrals, NXDOMAIN, NODATA, errors, truncation), and on a site of fallback chains
//! with origins down, under an allocator that counts this thread's allocations.
//!
//! A test binary of its own, because the counting allocator is process-wide.

mod common;
mod signing;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;
use std::path::PathBuf;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use lbdns::dns::{Transport, respond};
use lbdns::health::Health;
use lbdns::load::{self, Sources};
use rand::SeedableRng;
use rand::rngs::SmallRng;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// This thread's count: the tests of this file run on threads of their own at once,
    /// and one test's allocations must not be counted in another's.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

/// Counts one allocation when this thread is counting.
fn count() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is passed to the system allocator unchanged; counting only reads and
// bumps thread-locals (const-initialised, so touching them never allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by this thread while `f` runs.
fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get) - before
}

/// The snapshot `lbdns serve` would answer from, for the directory `dir` (no GeoIP).
fn snapshot_of(dir: &std::path::Path, health: &Health) -> lbdns::snapshot::Snapshot {
    let sources = Sources {
        dir: dir.to_owned(),
        geoip: None,
        asn_db: None,
    };
    load::load(&sources, health, None).expect("loads").1
}

fn query(name: &str, rtype: RecordType, edns: Option<(u16, Option<&str>)>) -> Vec<u8> {
    query_with(name, rtype, edns, false)
}

fn query_with(
    name: &str,
    rtype: RecordType,
    edns: Option<(u16, Option<&str>)>,
    dnssec_ok: bool,
) -> Vec<u8> {
    let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some((payload, subnet)) = edns {
        let mut e = Edns::new();
        e.set_max_payload(payload);
        e.set_dnssec_ok(dnssec_ok);
        if let Some(subnet) = subnet {
            let (addr, prefix) = subnet.split_once('/').unwrap();
            e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
                addr.parse().unwrap(),
                prefix.parse().unwrap(),
                0,
            )));
        }
        message.edns = Some(e);
    }
    message.to_vec().unwrap()
}

/// `query` (with EDNS and no option) asking for the server's NSID (RFC 5001 §2.1).
fn with_nsid(mut query: Vec<u8>) -> Vec<u8> {
    let end = query.len();
    assert_eq!(
        &query[end - 2..],
        [0, 0],
        "an OPT record without options, last"
    );
    query[end - 2..].copy_from_slice(&4u16.to_be_bytes());
    query.extend_from_slice(&[0, 3, 0, 0]);
    query
}

#[test]
fn answering_allocates_nothing() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sources = Sources {
        // The tests' copy of the shipped example, never the tracked zones/.
        dir: root.join("tests/data/example"),
        geoip: Some(root.join("tests/data/GeoIP2-Country-Test.mmdb")),
        asn_db: None,
    };
    let (_config, snapshot) = load::load(&sources, &Health::default(), None).expect("loads");
    let ecs = |s| Some((1232, Some(s)));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("weighted", query("www.example.com.", RecordType::A, None)),
        (
            "weighted, mixed case",
            query("WwW.ExAmPlE.cOm.", RecordType::A, None),
        ),
        ("zone data", query("mail.example.com.", RecordType::A, None)),
        ("NXDOMAIN", query("nope.example.com.", RecordType::A, None)),
        ("NODATA", query("mail.example.com.", RecordType::AAAA, None)),
        ("CNAME task", query("cdn.example.com.", RecordType::A, None)),
        (
            "CNAME into a task",
            query("alias.example.com.", RecordType::A, None),
        ),
        (
            "wildcard",
            query("x.apps.example.com.", RecordType::A, None),
        ),
        (
            "referral",
            query("host.dev.example.com.", RecordType::A, None),
        ),
        ("ANY", query("example.com.", RecordType::ANY, None)),
        (
            "MX with additional data",
            query("example.com.", RecordType::MX, None),
        ),
        (
            "NS with additional data",
            query("example.com.", RecordType::NS, None),
        ),
        ("refused", query("example.net.", RecordType::A, None)),
        (
            "region by ECS, GB",
            query("geo.example.com.", RecordType::A, ecs("81.2.69.160/27")),
        ),
        (
            "region by ECS, CN",
            query("geo.example.com.", RecordType::A, ecs("175.16.199.0/24")),
        ),
        (
            "region by ECS subnet",
            query("geo.example.com.", RecordType::A, ecs("203.0.113.0/24")),
        ),
        (
            "ECS /0",
            query("geo.example.com.", RecordType::A, ecs("0.0.0.0/0")),
        ),
        (
            "ECS IPv6",
            query("geo.example.com.", RecordType::A, ecs("2001:db8::/56")),
        ),
        (
            "DO bit and EDNS",
            query("www.example.com.", RecordType::TXT, Some((4096, None))),
        ),
        ("AXFR", query("example.com.", RecordType::AXFR, None)),
        ("truncated question", {
            let mut q = query("www.example.com.", RecordType::A, None);
            q.truncate(20);
            q
        }),
        ("response", {
            let mut q = query("www.example.com.", RecordType::A, None);
            q[2] |= 0x80;
            q
        }),
        (
            "NSID",
            with_nsid(query("www.example.com.", RecordType::A, Some((1232, None)))),
        ),
        (
            "refused, with NSID and an extended error",
            with_nsid(query("example.net.", RecordType::A, Some((1232, None)))),
        ),
        ("class ANY", {
            let mut q = query("mail.example.com.", RecordType::A, None);
            let end = q.len();
            q[end - 2..].copy_from_slice(&255u16.to_be_bytes());
            q
        }),
    ];
    // The NSID replies carry when asked (`serve --nsid`).
    lbdns::dns::set_nsid("lbdns-alloc-test".parse().unwrap());
    let sources: [IpAddr; 2] = ["81.2.69.160".parse().unwrap(), "::1".parse().unwrap()];
    let mut rng = SmallRng::seed_from_u64(7);
    let mut out = vec![0u8; 65535];
    // Warm up: whatever is set up once (lazy statics, the GeoIP reader's caches) is not
    // the per-query cost.
    for (_, packet) in &cases {
        respond(
            &snapshot,
            packet,
            sources[0],
            Transport::Udp,
            &mut rng,
            &mut out,
        );
    }
    let mut answered = 0;
    for (what, packet) in &cases {
        for source in sources {
            for transport in [Transport::Udp, Transport::Tcp] {
                let mut len = 0;
                let count = allocations_in(|| {
                    for _ in 0..50 {
                        len = respond(&snapshot, packet, source, transport, &mut rng, &mut out).len;
                    }
                });
                assert_eq!(
                    count, 0,
                    "{what} from {source} over {transport:?} allocated"
                );
                answered += usize::from(len > 0);
            }
        }
    }
    // Every case but the response sent to us is answered: the loop above measured work.
    assert_eq!(answered, (cases.len() - 1) * 4);
    // The handler the UDP and TCP loops call adds the metrics (query type, response
    // code): still no allocation, and no lock to take.
    let metrics = std::sync::Arc::new(lbdns::metrics::Metrics::new());
    let handler = lbdns::dns::Handler::new(
        std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(snapshot)),
        metrics.clone(),
    );
    let from: std::net::SocketAddr = "81.2.69.160:5300".parse().unwrap();
    for (_, packet) in &cases {
        handler.answer(packet, from, Transport::Udp, &mut out);
    }
    for (what, packet) in &cases {
        for transport in [Transport::Udp, Transport::Tcp] {
            let count = allocations_in(|| {
                for _ in 0..50 {
                    handler.answer(packet, from, transport, &mut out);
                }
            });
            assert_eq!(
                count, 0,
                "the handler, {what} over {transport:?}, allocated"
            );
        }
    }
    let text = metrics.encode();
    assert!(
        text.contains("lbdns_queries_total{qtype=\"A\",transport=\"tcp\"} ")
            && !text.contains("lbdns_queries_total{qtype=\"A\",transport=\"tcp\"} 0\n"),
        "the handler counts queries:\n{text}"
    );
    // And the counter counts: building a query allocates.
    assert!(allocations_in(|| drop(query("www.example.com.", RecordType::A, None))) > 0);
}

/// A group whose origins are down hands over to its fallback, or answers SERVFAIL or
/// NODATA when the whole chain is down (SPEC §12), and a sticky task hashes its client,
/// without allocating.
#[test]
fn fallback_chains_allocate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    let zone = "$ORIGIN example.com.\n$TTL 300\n@ SOA ns1 hostmaster 1 7200 900 1209600 300\n@ NS ns1\nns1 A 192.0.2.53\n";
    let check = "    health_check: {type: tcp, port: 9}\n";
    let site = format!(
        "origin_groups:\n  p:\n{check}    fallback: b\n    origins:\n    - address: 192.0.2.1\n  s:\n{check}    when_all_down: servfail\n    origins:\n    - address: 192.0.2.2\n  n:\n{check}    when_all_down: nodata\n    origins:\n    - address: 192.0.2.3\n  b:\n    origins:\n    - address: 192.0.2.9\ntasks:\n- hostname: fb.example.com\n  origin_group: p\n- hostname: sf.example.com\n  origin_group: s\n- hostname: nd.example.com\n  origin_group: n\n- hostname: st.example.com\n  origin_group: b\n  stickiness: client_subnet\n"
    );
    std::fs::write(dir.path().join("zones/example.com.zone"), zone).unwrap();
    std::fs::write(dir.path().join("zones/example.com.lb.yaml"), &site).unwrap();
    let health = Health::default();
    let snapshot = snapshot_of(dir.path(), &health);
    // Every checked origin (those of p, s and n) down, as after failed checks.
    let origin: Name = "example.com.".parse().unwrap();
    let (_, checked) = lbdns::site::from_text(dir.path(), &site, &origin).unwrap();
    for key in lbdns::health::Key::of_site(&checked) {
        health.cell(key).record(Err("refused".to_owned()), 1, 1);
    }
    let mut rng = SmallRng::seed_from_u64(7);
    let mut out = vec![0u8; 65535];
    let source: IpAddr = "192.0.2.100".parse().unwrap();
    for (name, rcode, answer) in [
        ("fb.example.com.", 0, Some("192.0.2.9")),
        ("sf.example.com.", 2, None),
        ("nd.example.com.", 0, None),
        ("st.example.com.", 0, Some("192.0.2.9")),
    ] {
        let packet = query(name, RecordType::A, None);
        let mut len = respond(
            &snapshot,
            &packet,
            source,
            Transport::Udp,
            &mut rng,
            &mut out,
        )
        .len;
        let count = allocations_in(|| {
            for _ in 0..50 {
                len = respond(
                    &snapshot,
                    &packet,
                    source,
                    Transport::Udp,
                    &mut rng,
                    &mut out,
                )
                .len;
            }
        });
        assert_eq!(count, 0, "{name} allocated");
        let reply = Message::from_vec(&out[..len]).unwrap();
        assert_eq!(u16::from(reply.metadata.response_code), rcode, "{reply}");
        let answers: Vec<String> = reply.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(answers, answer.into_iter().collect::<Vec<_>>(), "{name}");
    }
}

/// The same with DO set, on a zone signed by dnssec-signzone (tests/signing/): the RRSIGs
/// and denial records of every kind of answer are copied, never built per query.
#[test]
fn signed_answers_allocate_nothing() {
    for denial in [signing::Denial::Nsec, signing::Denial::Nsec3] {
        let keys = tempfile::tempdir().unwrap();
        let signed = signing::sign(
            keys.path(),
            "example.com",
            &signing::source("example.com.zone"),
            denial,
        );
        let site = common::Site::new(&[("example.com.zone", &signed.text)]);
        let snapshot = snapshot_of(site.path(), &Health::default());
        let dnssec = |name, rtype, payload| query_with(name, rtype, Some((payload, None)), true);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("data", dnssec("www.example.com.", RecordType::A, 1232)),
            (
                "MX, signed additional data",
                dnssec("example.com.", RecordType::MX, 1232),
            ),
            ("DNSKEY", dnssec("example.com.", RecordType::DNSKEY, 1232)),
            ("RRSIG", dnssec("www.example.com.", RecordType::RRSIG, 1232)),
            (
                "NXDOMAIN",
                dnssec("a.b.nope.example.com.", RecordType::A, 1232),
            ),
            ("NODATA", dnssec("www.example.com.", RecordType::MX, 1232)),
            (
                "NODATA, empty non-terminal",
                dnssec("ent.example.com.", RecordType::A, 1232),
            ),
            (
                "wildcard",
                dnssec("x.wild.example.com.", RecordType::A, 1232),
            ),
            (
                "wildcard NODATA",
                dnssec("z.y.ent.example.com.", RecordType::A, 1232),
            ),
            (
                "CNAME chain",
                dnssec("chain1.example.com.", RecordType::A, 1232),
            ),
            (
                "CNAME to NXDOMAIN",
                dnssec("tonothing.example.com.", RecordType::A, 1232),
            ),
            (
                "referral with DS",
                dnssec("host.dev.example.com.", RecordType::A, 1232),
            ),
            (
                "referral without DS",
                dnssec("x.ext.example.com.", RecordType::A, 1232),
            ),
            (
                "DS at a cut",
                dnssec("dev.example.com.", RecordType::DS, 1232),
            ),
            (
                "truncated",
                dnssec("a.b.nope.example.com.", RecordType::A, 512),
            ),
        ];
        let mut rng = SmallRng::seed_from_u64(7);
        let mut out = vec![0u8; 65535];
        let source: IpAddr = "192.0.2.1".parse().unwrap();
        for (what, packet) in &cases {
            respond(
                &snapshot,
                packet,
                source,
                Transport::Udp,
                &mut rng,
                &mut out,
            );
            // The answer is signed (or, over UDP, truncated for being so): the work
            // measured is the signed path.
            let len = respond(
                &snapshot,
                packet,
                source,
                Transport::Tcp,
                &mut rng,
                &mut out,
            )
            .len;
            let reply = Message::from_vec(&out[..len]).unwrap();
            let signatures = reply
                .answers
                .iter()
                .chain(&reply.authorities)
                .filter(|r| r.record_type() == RecordType::RRSIG)
                .count();
            assert!(signatures > 0, "{denial:?} {what}: no RRSIG in {reply:?}");
            let len = respond(
                &snapshot,
                packet,
                source,
                Transport::Udp,
                &mut rng,
                &mut out,
            )
            .len;
            let over_udp = Message::from_vec(&out[..len]).unwrap();
            assert_eq!(over_udp.metadata.truncation, *what == "truncated", "{what}");
            for transport in [Transport::Udp, Transport::Tcp] {
                let count = allocations_in(|| {
                    for _ in 0..50 {
                        respond(&snapshot, packet, source, transport, &mut rng, &mut out);
                    }
                });
                assert_eq!(count, 0, "{denial:?} {what} over {transport:?} allocated");
            }
        }
    }
}

/// Task answers in a zone lbdns signs: each set of origins a pick can return has its
/// RRSIG made when the tasks compiled, found by arithmetic on the pick; the NSECs or
/// NSEC3s the task names add are read beside the zone's. Nothing is signed or allocated
/// per query. With
/// compact denial (RFC 9824) a denial, or a wildcard's answer, is signed for the name
/// asked the first time it is asked; asked again, it comes from the table of signed
/// records with no allocation.
#[test]
fn signed_task_answers_allocate_nothing() {
    for denial in ["nsec", "nsec3", "compact"] {
        signed_task_answers_allocate_nothing_with(denial);
    }
}

fn signed_task_answers_allocate_nothing_with(denial: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    let zone = "$ORIGIN example.com.\n$TTL 300\n@ SOA ns1 hostmaster 1 7200 900 1209600 300\n@ NS ns1\nns1 A 192.0.2.53\nalias CNAME lb\n*.w A 192.0.2.9\n";
    let site = "dnssec: {denial: DENIAL}\norigin_groups:\n  web:\n    origins:\n    - address: 192.0.2.1\n    - address: 192.0.2.2\n    - address: 192.0.2.3\n    - address: 2001:db8::1\n  names:\n    origins:\n    - address: ns1.example.com.\ntasks:\n- hostname: lb.example.com\n  origin_group: web\n  answers: 2\n- hostname: x.deep.example.com\n  origin_group: web\n- hostname: cdn.example.com\n  origin_group: names\n- hostname: '*.any.example.com'\n  origin_group: web\n";
    let site = site.replace("DENIAL", denial);
    std::fs::write(dir.path().join("zones/example.com.zone"), zone).unwrap();
    std::fs::write(dir.path().join("zones/example.com.lb.yaml"), site).unwrap();
    let snapshot = snapshot_of(dir.path(), &Health::default());
    let dnssec = |name, rtype| query_with(name, rtype, Some((1232, None)), true);
    let cases = [
        ("two of three", dnssec("lb.example.com.", RecordType::A), 1),
        ("one of one", dnssec("lb.example.com.", RecordType::AAAA), 1),
        ("CNAME", dnssec("cdn.example.com.", RecordType::A), 2),
        (
            "CNAME into a task",
            dnssec("alias.example.com.", RecordType::A),
            2,
        ),
        ("NODATA", dnssec("lb.example.com.", RecordType::MX), 0),
        (
            "empty non-terminal",
            dnssec("deep.example.com.", RecordType::A),
            0,
        ),
        ("NXDOMAIN", dnssec("nope.lb.example.com.", RecordType::A), 0),
        ("wildcard", dnssec("x.w.example.com.", RecordType::A), 1),
        (
            "NODATA at a wildcard",
            dnssec("x.w.example.com.", RecordType::MX),
            0,
        ),
        (
            "wildcard task",
            dnssec("x.any.example.com.", RecordType::AAAA),
            1,
        ),
    ];
    let mut rng = SmallRng::seed_from_u64(7);
    let mut out = vec![0u8; 65535];
    let source: IpAddr = "192.0.2.100".parse().unwrap();
    for (what, packet, answer_signatures) in &cases {
        let len = respond(
            &snapshot,
            packet,
            source,
            Transport::Tcp,
            &mut rng,
            &mut out,
        )
        .len;
        let reply = Message::from_vec(&out[..len]).unwrap();
        let signatures = |records: &[hickory_proto::rr::Record]| {
            records
                .iter()
                .filter(|r| r.record_type() == RecordType::RRSIG)
                .count()
        };
        assert_eq!(
            signatures(&reply.answers),
            *answer_signatures,
            "{denial} {what}: {reply:?}"
        );
        if *answer_signatures == 0 {
            assert!(signatures(&reply.authorities) > 0, "{what}: {reply:?}");
            // The denial is made of the records of the mode asked for.
            let denial_type = match denial {
                "nsec3" => RecordType::NSEC3,
                _ => RecordType::NSEC,
            };
            assert!(
                reply
                    .authorities
                    .iter()
                    .any(|r| r.record_type() == denial_type),
                "{denial} {what}: {reply:?}"
            );
        }
        // Compact denial answers a name that does not exist NOERROR (RFC 9824 §3.1).
        if *what == "NXDOMAIN" {
            let rcode = match denial {
                "compact" => hickory_proto::op::ResponseCode::NoError,
                _ => hickory_proto::op::ResponseCode::NXDomain,
            };
            assert_eq!(reply.metadata.response_code, rcode, "{denial}: {reply:?}");
        }
        for transport in [Transport::Udp, Transport::Tcp] {
            let count = allocations_in(|| {
                for _ in 0..50 {
                    respond(&snapshot, packet, source, transport, &mut rng, &mut out);
                }
            });
            assert_eq!(count, 0, "{denial} {what} over {transport:?} allocated");
        }
    }
}
