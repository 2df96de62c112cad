//! In-process mutational fuzzing of `respond` (SPEC §9: malformed packets get FORMERR or
//! are dropped, never a crash). Valid queries (plain, EDNS, ECS v4/v6, several types, UDP
//! and TCP) are mutated with a fixed-seed RNG: bit flips, byte sets, truncation, extension,
//! count fields, label lengths, pointer bytes, OPT option lengths. Every call must return;
//! every reply must decode with hickory-proto, echo the ID and opcode, have QR set and fit
//! its limit; a packet with QR set is never answered.
//!
//! `LBDNS_FUZZ_ITERATIONS` sets the count (default 300,000, about 4 s in debug);
//! `LBDNS_FUZZ_SEED` the seed. For a long run:
//! `LBDNS_FUZZ_ITERATIONS=10000000 cargo test --release --test fuzz_respond -- --nocapture`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use lbdns::dns::{Transport, respond};
use lbdns::health::Health;
use lbdns::load::{self, Sources};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

const DEFAULT_ITERATIONS: u64 = 300_000;

/// A seed query: its bytes and how it travels.
struct Seed {
    packet: Vec<u8>,
    transport: Transport,
}

fn query(name: &str, rtype: RecordType, edns: Option<(u16, bool, Option<&str>)>) -> Vec<u8> {
    let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("a name"), rtype));
    if let Some((payload, dnssec_ok, subnet)) = edns {
        let mut e = Edns::new();
        e.set_max_payload(payload);
        e.set_dnssec_ok(dnssec_ok);
        if let Some(subnet) = subnet {
            let (addr, prefix) = subnet.split_once('/').expect("ADDRESS/PREFIX");
            e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
                addr.parse().expect("an address"),
                prefix.parse().expect("a prefix"),
                0,
            )));
        }
        message.edns = Some(e);
    }
    message.to_vec().expect("a query encodes")
}

fn seeds() -> Vec<Seed> {
    let plain = |name, rtype| query(name, rtype, None);
    let edns = |name, rtype, subnet| query(name, rtype, Some((1232, false, subnet)));
    let packets = vec![
        plain("www.example.com.", RecordType::A),
        plain("WwW.ExAmPlE.cOm.", RecordType::AAAA),
        plain("mail.example.com.", RecordType::MX),
        plain("example.com.", RecordType::ANY),
        plain("example.com.", RecordType::SOA),
        plain("nope.example.com.", RecordType::TXT),
        plain("alias.example.com.", RecordType::A),
        plain("cdn.example.com.", RecordType::CNAME),
        plain("x.apps.example.com.", RecordType::A),
        plain("host.dev.example.com.", RecordType::NS),
        plain("dev.example.com.", RecordType::DS),
        plain("example.net.", RecordType::A),
        plain("example.com.", RecordType::AXFR),
        edns("geo.example.com.", RecordType::A, None),
        edns("geo.example.com.", RecordType::A, Some("81.2.69.160/27")),
        edns("geo.example.com.", RecordType::A, Some("175.16.199.0/24")),
        edns("geo.example.com.", RecordType::A, Some("2a02:d3c0::/32")),
        edns("dual.example.com.", RecordType::AAAA, Some("2001:db8::/56")),
        edns("www.example.com.", RecordType::A, Some("0.0.0.0/0")),
        query(
            "www.example.com.",
            RecordType::TXT,
            Some((4096, true, None)),
        ),
        query("example.com.", RecordType::NS, Some((512, false, None))),
    ];
    packets
        .into_iter()
        .flat_map(|packet| {
            [Transport::Udp, Transport::Tcp].map(|transport| Seed {
                packet: packet.clone(),
                transport,
            })
        })
        .collect()
}

/// Offsets of the label-length bytes of the question name, for targeted mutations.
fn label_offsets(packet: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 12;
    while at < packet.len() && packet[at] != 0 && packet[at] & 0xC0 == 0 {
        offsets.push(at);
        at += 1 + usize::from(packet[at]);
    }
    offsets
}

/// Applies one to four random mutations to `packet`.
fn mutate(packet: &mut Vec<u8>, rng: &mut SmallRng) {
    for _ in 0..rng.random_range(1..=4) {
        if packet.is_empty() {
            packet.push(rng.random());
            continue;
        }
        let len = packet.len();
        let at = rng.random_range(0..len);
        match rng.random_range(0..10) {
            // Bit flip.
            0 => packet[at] ^= 1 << rng.random_range(0..8),
            // Byte set, to a random or an interesting value.
            1 => packet[at] = [0, 1, 0x3F, 0x40, 0x7F, 0x80, 0xC0, 0xFF][rng.random_range(0..8)],
            2 => packet[at] = rng.random(),
            // Truncation.
            3 => packet.truncate(rng.random_range(0..len)),
            // Extension with random bytes.
            4 => {
                let extra = rng.random_range(1..64);
                packet.extend((0..extra).map(|_| rng.random::<u8>()));
            }
            // A count field (QD, AN, NS, AR).
            5 if len >= 12 => {
                let field = 4 + 2 * rng.random_range(0..4);
                let value: u16 = [0, 1, 2, 0xFFFF][rng.random_range(0..4)];
                packet[field..field + 2].copy_from_slice(&value.to_be_bytes());
            }
            // A label length of the question name.
            6 => {
                let labels = label_offsets(packet);
                if !labels.is_empty() {
                    let at = labels[rng.random_range(0..labels.len())];
                    packet[at] = [0, 1, 63, 64, 0xFF][rng.random_range(0..5)];
                }
            }
            // A compression pointer somewhere: to the header, to itself, forward.
            7 => {
                packet[at] = 0xC0 | rng.random_range(0..0x40u8);
                if at + 1 < len {
                    packet[at + 1] = rng.random();
                }
            }
            // The OPT: its option length or RDLENGTH (the last bytes of an EDNS query).
            8 => {
                if let Some(opt) = packet.windows(3).rposition(|w| w == [0, 0, 41]) {
                    // OPT RR: name(1) type(2) class(2) ttl(4) rdlen(2) then options
                    // code(2) length(2).
                    let targets = [opt + 9, opt + 10, opt + 13, opt + 14];
                    let target = targets[rng.random_range(0..targets.len())];
                    if target < len {
                        packet[target] = rng.random();
                    }
                }
            }
            // Header flags byte (opcode, QR) or the RCODE/Z byte.
            _ => {
                let flag_byte = 2 + rng.random_range(0..2);
                if flag_byte < len {
                    packet[flag_byte] = rng.random();
                }
            }
        }
    }
}

/// The largest reply `packet` may get: what respond's contract says, read independently.
fn limit_of(packet: &[u8], transport: Transport) -> usize {
    if transport == Transport::Tcp {
        return 65535;
    }
    // EDNS when hickory can read the query and finds an OPT; otherwise 512. A query whose
    // OPT hickory cannot read gets FORMERR, which is small anyway.
    match Message::from_vec(packet).ok().and_then(|m| m.edns) {
        Some(edns) => usize::from(edns.max_payload().clamp(512, 1232)),
        None => 512,
    }
}

/// What is wrong with the reply to `packet`, if anything.
fn check(packet: &[u8], transport: Transport, reply: &[u8]) -> Result<(), String> {
    if packet.len() >= 3 && packet[2] & 0x80 != 0 {
        return Err("a response (QR=1) was answered".into());
    }
    let limit = limit_of(packet, transport);
    if reply.len() > limit {
        return Err(format!("{} bytes, over the limit {limit}", reply.len()));
    }
    let message = Message::from_vec(reply).map_err(|e| format!("does not decode: {e}"))?;
    if message.metadata.id != u16::from_be_bytes([packet[0], packet[1]]) {
        return Err("the ID is not echoed".into());
    }
    if message.metadata.message_type != MessageType::Response {
        return Err("QR is not set".into());
    }
    if u8::from(message.metadata.op_code) != (packet[2] >> 3) & 0xF {
        return Err("the opcode is not echoed".into());
    }
    Ok(())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn mutated_queries_never_crash_and_replies_are_well_formed() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sources = Sources {
        // The tests' copy of the shipped example, never the tracked zones/.
        dir: root.join("tests/data/example"),
        geoip: Some(root.join("tests/data/GeoIP2-Country-Test.mmdb")),
        asn_db: None,
    };
    let (_config, snapshot) = load::load(&sources, &Health::default(), None).expect("loads");
    let iterations = env_u64("LBDNS_FUZZ_ITERATIONS", DEFAULT_ITERATIONS);
    let seed = env_u64("LBDNS_FUZZ_SEED", 0x1bd5);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut answer_rng = SmallRng::seed_from_u64(seed ^ 0xA5A5);
    let seeds = seeds();
    let sources: [IpAddr; 3] = [
        "81.2.69.160".parse().expect("v4"),
        "2001:db8::1".parse().expect("v6"),
        "::ffff:175.16.199.7".parse().expect("mapped"),
    ];
    let mut out = vec![0u8; 65535];
    let (mut answered, mut problems) = (0u64, Vec::new());

    // The seeds themselves are answered.
    for s in &seeds {
        let len = respond(
            &snapshot,
            &s.packet,
            sources[0],
            s.transport,
            &mut answer_rng,
            &mut out,
        )
        .len;
        assert!(len > 0, "a seed query got no reply: {}", hex(&s.packet));
        check(&s.packet, s.transport, &out[..len]).expect("a seed's reply is well formed");
    }

    let started = Instant::now();
    for i in 0..iterations {
        let s = &seeds[rng.random_range(0..seeds.len())];
        let mut packet = s.packet.clone();
        mutate(&mut packet, &mut rng);
        let source = sources[rng.random_range(0..sources.len())];
        let len = respond(
            &snapshot,
            &packet,
            source,
            s.transport,
            &mut answer_rng,
            &mut out,
        )
        .len;
        if len == 0 {
            continue;
        }
        answered += 1;
        if let Err(why) = check(&packet, s.transport, &out[..len])
            && problems.len() < 10
        {
            problems.push(format!(
                "iteration {i} ({:?}): {why}\n  query {}\n  reply {}",
                s.transport,
                hex(&packet),
                hex(&out[..len])
            ));
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "fuzz_respond: {iterations} mutated queries (seed {seed}), {answered} answered, in {:.2?} ({:.0}/s)",
        elapsed,
        iterations as f64 / elapsed.as_secs_f64()
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    // The run exercised answers, not just drops.
    assert!(answered > iterations / 4, "only {answered} answered");
}

/// The checks catch what they are for.
#[test]
fn the_checks_reject_bad_replies() {
    let packet = query("www.example.com.", RecordType::A, None);
    let mut reply = Message::new(0x4242, MessageType::Response, OpCode::Query);
    reply.add_query(Query::query(
        Name::from_ascii("www.example.com.").expect("a name"),
        RecordType::A,
    ));
    let good = reply.to_vec().expect("encodes");
    assert_eq!(check(&packet, Transport::Udp, &good), Ok(()));
    let mut other_id = good.clone();
    other_id[1] ^= 1;
    assert!(check(&packet, Transport::Udp, &other_id).is_err());
    let mut not_response = good.clone();
    not_response[2] &= 0x7F;
    assert!(check(&packet, Transport::Udp, &not_response).is_err());
    assert!(check(&packet, Transport::Udp, &good[..good.len() - 1]).is_err());
    let mut big = good.clone();
    big.resize(600, 0);
    assert!(check(&packet, Transport::Udp, &big).is_err());
    let mut response = packet.clone();
    response[2] |= 0x80;
    assert!(check(&response, Transport::Udp, &good).is_err());
}
