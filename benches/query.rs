//! Micro-benchmarks of the query path, in process: `respond` on the shipped example for
//! each kind of answer, selection (route then pick) alone, and the GeoIP lookup.
//!
//! `cargo bench --bench query`; whole-server figures against Knot and gdnsd come from
//! `scripts/bench` (see BENCHMARKS.md).

use std::hint::black_box;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use lbdns::dns::{Transport, respond};
use lbdns::geoip::GeoIp;
use lbdns::health::Health;
use lbdns::load::{self, Sources};
use lbdns::select::{Client, CompiledGroup, Family, pick, route};
use lbdns::site;
use rand::SeedableRng;
use rand::rngs::SmallRng;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn test_geoip() -> PathBuf {
    root().join("tests/data/GeoIP2-Country-Test.mmdb")
}

fn query(name: &str, rtype: RecordType, ecs: Option<(&str, u8)>) -> Vec<u8> {
    let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some((addr, prefix)) = ecs {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        let subnet = ClientSubnet::new(addr.parse().unwrap(), prefix, 0);
        edns.options_mut().insert(EdnsOption::Subnet(subnet));
        message.edns = Some(edns);
    }
    message.to_vec().unwrap()
}

fn respond_cases(c: &mut Criterion) {
    let sources = Sources {
        dir: root(),
        geoip: Some(test_geoip()),
        asn_db: None,
    };
    let (_config, snapshot) = load::load(&sources, &Health::default(), None).unwrap();
    let cases = [
        ("weighted", query("www.example.com.", RecordType::A, None)),
        ("zone data", query("mail.example.com.", RecordType::A, None)),
        ("nxdomain", query("nope.example.com.", RecordType::A, None)),
        (
            "cname chain",
            query("alias.example.com.", RecordType::A, None),
        ),
        ("referral", query("a.dev.example.com.", RecordType::A, None)),
        (
            "region by ecs country",
            query("geo.example.com.", RecordType::A, Some(("81.2.69.160", 27))),
        ),
        (
            "region by ecs subnet",
            query("geo.example.com.", RecordType::A, Some(("203.0.113.0", 24))),
        ),
    ];
    let source: IpAddr = "192.0.2.1".parse().unwrap();
    let mut rng = SmallRng::seed_from_u64(1);
    let mut out = vec![0u8; 4096];
    let mut group = c.benchmark_group("respond");
    for (name, packet) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| {
                respond(
                    &snapshot,
                    black_box(packet),
                    source,
                    Transport::Udp,
                    &mut rng,
                    &mut out,
                )
                .len
            })
        });
    }
    group.finish();
}

fn selection(c: &mut Criterion) {
    let text = std::fs::read_to_string(root().join("zones/example.com.lb.yaml")).unwrap();
    let origin = Name::from_ascii("example.com.").unwrap();
    let spec = site::parse(&text).unwrap();
    let site = site::validate(&origin, &spec).unwrap();
    let geoip = GeoIp::open(&test_geoip()).unwrap();
    let weighted = CompiledGroup::new(site.group("web").unwrap(), Some(&geoip));
    let region = CompiledGroup::new(site.group("geo").unwrap(), Some(&geoip));
    let client = |addr: &str, source_prefix| Client {
        addr: addr.parse().unwrap(),
        source_prefix,
    };
    let mut rng = SmallRng::seed_from_u64(1);
    let mut group = c.benchmark_group("select");
    let cases = [
        ("weighted", &weighted, client("192.0.2.1", 32)),
        ("region by country", &region, client("81.2.69.160", 27)),
        ("region by subnet", &region, client("203.0.113.7", 32)),
        ("region default", &region, client("192.0.2.1", 32)),
    ];
    for (name, compiled, client) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| {
                let mut route = route(compiled, Family::V4, black_box(client));
                pick(&mut route, |_| true, 1, &mut rng).scope
            })
        });
    }
    group.finish();
}

fn geoip_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("geoip");
    let shipped = std::fs::read_dir(root().join("geoip"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "mmdb"));
    let databases: [(&str, Option<&Path>); 2] = [
        ("maxmind test", Some(&test_geoip())),
        ("shipped", shipped.as_deref()),
    ];
    for (name, path) in databases {
        let Some(path) = path else { continue };
        let db = GeoIp::open(path).unwrap();
        let addr: IpAddr = "81.2.69.160".parse().unwrap();
        group.bench_function(name, |b| b.iter(|| db.locate(black_box(addr))));
    }
    group.finish();
}

criterion_group!(benches, respond_cases, selection, geoip_lookup);
criterion_main!(benches);
