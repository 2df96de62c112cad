//! Serving a zone signed elsewhere (SPEC §11, issue 15 item 1), validated by independent
//! validators: the zone of tests/data/dnssec is signed at test time by BIND's
//! dnssec-signzone (tests/signing/), lbdns serves it, and BIND's `delv` and unbound as a
//! validating resolver, each given the zone's KSK as trust anchor, must validate every
//! kind of answer: data, NXDOMAIN, NODATA (also at an empty non-terminal and at a
//! wildcard), wildcard expansion, CNAME chains, DNSKEY, DS at a cut, and the proof of
//! no DS at an insecure delegation (whose child, served here unsigned, is then "unsigned
//! answer"), for NSEC and NSEC3 (ECDSA P-256; Ed25519 too for delv). A zone transfer of
//! it carries it whole (NSEC3 records included). What Knot serves for the same file is
//! compared record by record in tests/differential.rs.
//!
//! Needs delv and dig (bind9-dnsutils), dnssec-signzone (bind9-utils) and unbound: the
//! tests fail, they do not skip, without them.

mod common;
mod signing;

use std::process::Command;

use common::*;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use signing::{Denial, Signed};

/// A signed example.com (and its unsigned child) served by lbdns.
struct Served {
    signed: Signed,
    /// The keys and the trust anchor files.
    keys: tempfile::TempDir,
    site: Site,
    server: Server,
}

fn serve_signed(denial: Denial) -> Served {
    serve_signed_with(denial, "ECDSAP256SHA256")
}

fn serve_signed_with(denial: Denial, algorithm: &str) -> Served {
    let keys = tempfile::tempdir().unwrap();
    let signed = signing::sign_with(
        keys.path(),
        "example.com",
        &signing::source("example.com.zone"),
        denial,
        algorithm,
    );
    let site = Site::new(&[
        ("example.com.zone", &signed.text),
        (
            "child.example.com.zone",
            &signing::source("child.example.com.zone"),
        ),
    ]);
    let server = site.serve();
    Served {
        signed,
        keys,
        site,
        server,
    }
}

/// Every kind of answer, with what validating it concludes.
const CASES: &[(&str, RecordType, Expect)] = &[
    ("www.example.com.", RecordType::A, Expect::Secure),
    ("example.com.", RecordType::MX, Expect::Secure),
    ("example.com.", RecordType::DNSKEY, Expect::Secure),
    ("_sip._udp.example.com.", RecordType::SRV, Expect::Secure),
    ("nope.example.com.", RecordType::A, Expect::SecureDenial),
    (
        "a.b.nope.example.com.",
        RecordType::AAAA,
        Expect::SecureDenial,
    ),
    ("www.example.com.", RecordType::MX, Expect::SecureDenial),
    // An empty non-terminal.
    ("ent.example.com.", RecordType::A, Expect::SecureDenial),
    // Wildcard expansion, and NODATA at a wildcard.
    ("x.wild.example.com.", RecordType::A, Expect::Secure),
    ("host3.w.example.com.", RecordType::MX, Expect::Secure),
    ("z.y.ent.example.com.", RecordType::A, Expect::SecureDenial),
    // CNAMEs: a chain, into a wildcard, to a name that does not exist.
    ("chain1.example.com.", RecordType::A, Expect::Secure),
    ("towild.example.com.", RecordType::A, Expect::Secure),
    (
        "tonothing.example.com.",
        RecordType::A,
        Expect::SecureDenial,
    ),
    // DS at a cut, from the parent side; no DS at an insecure delegation.
    ("dev.example.com.", RecordType::DS, Expect::Secure),
    ("ext.example.com.", RecordType::DS, Expect::SecureDenial),
    ("child.example.com.", RecordType::DS, Expect::SecureDenial),
    // The unsigned child below that insecure delegation.
    ("www.child.example.com.", RecordType::A, Expect::Insecure),
];

fn delv(served: &Served, name: &str, rtype: RecordType) -> String {
    let anchor = served.keys.path().join("delv.anchor");
    std::fs::write(&anchor, served.signed.delv_anchor()).unwrap();
    common::delv(
        served.server.addr,
        &anchor,
        "example.com",
        name,
        &rtype.to_string(),
    )
}

#[test]
fn delv_validates_every_kind_of_answer_nsec_and_nsec3() {
    for (run, (denial, algorithm)) in [
        (Denial::Nsec, "ECDSAP256SHA256"),
        (Denial::Nsec3, "ECDSAP256SHA256"),
        (Denial::Nsec3, "ED25519"),
    ]
    .into_iter()
    .enumerate()
    {
        let served = serve_signed_with(denial, algorithm);
        let mut wrong = Vec::new();
        for &(name, rtype, expect) in CASES {
            let out = delv(&served, name, rtype);
            if !expect.concluded_by_delv(&out) {
                wrong.push(format!(
                    "{denial:?} {algorithm} {name} {rtype}, expected {expect:?}:\n{out}"
                ));
            }
        }
        // Names made at random of the zone's labels (none below a cut: delv asks lbdns
        // as a resolver and would get a referral), mostly not existing: each validates.
        for (name, rtype) in random_names(run as u64, 12) {
            let out = delv(&served, &name, rtype);
            if !out.contains("fully validated")
                || out.contains("broken trust chain")
                || out.contains("bogus")
            {
                wrong.push(format!("{denial:?} {algorithm} {name} {rtype}:\n{out}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}

/// `count` names of example.com. made at random from `seed` (the zone's labels and
/// others, none at or below a cut), each with a type.
fn random_names(seed: u64, count: usize) -> Vec<(String, RecordType)> {
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};
    const LABELS: &[&str] = &[
        "www", "ent", "y", "x", "wild", "w", "host1", "_tcp", "_ssh", "ns1", "mail", "zz", "a", "*",
    ];
    const TYPES: &[RecordType] = &[RecordType::A, RecordType::MX, RecordType::TXT];
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let labels: Vec<&str> = (0..rng.random_range(1..=3))
                .map(|_| LABELS[rng.random_range(0..LABELS.len())])
                .collect();
            let name = format!("{}.example.com.", labels.join("."));
            (name, TYPES[rng.random_range(0..TYPES.len())])
        })
        .collect()
}

/// unbound as a validating resolver in front of lbdns, from the zone's anchor.
fn validating_unbound(served: &Served) -> Unbound {
    Unbound::start(
        served.server.addr,
        &["example.com", "child.example.com"],
        false,
        Some(&served.signed.unbound_anchor()),
        ("www.example.com", "192.0.2.80"),
    )
}

/// The header flags of dig's output (`;; flags: qr rd ra ad;`) and its status.
fn flags_and_status(out: &str) -> (Vec<String>, String) {
    let flags = out
        .lines()
        .find_map(|l| l.strip_prefix(";; flags: "))
        .and_then(|l| l.split(';').next())
        .map(|f| f.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let status = out
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_default()
        .to_owned();
    (flags, status)
}

#[test]
fn unbound_validates_every_kind_of_answer_nsec_and_nsec3() {
    for denial in [Denial::Nsec, Denial::Nsec3] {
        let served = serve_signed(denial);
        let unbound = validating_unbound(&served);
        let mut wrong = Vec::new();
        for &(name, rtype, expect) in CASES {
            let out = unbound.dig(&[name, &rtype.to_string(), "+dnssec"]);
            let (flags, status) = flags_and_status(&out);
            let ad = flags.iter().any(|f| f == "ad");
            let ok = match expect {
                Expect::Secure => ad && status == "NOERROR",
                Expect::SecureDenial => ad && (status == "NXDOMAIN" || status == "NOERROR"),
                Expect::Insecure => !ad && status == "NOERROR" && out.contains("192.0.2.67"),
            };
            if !ok {
                wrong.push(format!(
                    "{denial:?} {name} {rtype}, expected {expect:?}:\n{out}"
                ));
            }
        }
        for (name, rtype) in random_names(10 + denial as u64, 12) {
            let out = unbound.dig(&[&name, &rtype.to_string(), "+dnssec"]);
            let (flags, status) = flags_and_status(&out);
            if !flags.iter().any(|f| f == "ad")
                || !matches!(status.as_str(), "NOERROR" | "NXDOMAIN")
            {
                wrong.push(format!("{denial:?} {name} {rtype}:\n{out}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}

fn query(name: &str, rtype: RecordType, dnssec_ok: Option<u16>) -> Message {
    let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(payload) = dnssec_ok {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        edns.set_dnssec_ok(true);
        message.edns = Some(edns);
    }
    message
}

fn count(reply: &Message, rtype: RecordType) -> usize {
    reply
        .answers
        .iter()
        .chain(&reply.authorities)
        .chain(&reply.additionals)
        .filter(|r| r.record_type() == rtype)
        .count()
}

/// Without DO nothing DNSSEC is added (RFC 4035 §3.1), but DNSSEC types asked for are
/// answered; with DO an answer that does not fit is truncated whole (RFC 4035 §3.1.1),
/// and comes whole over TCP.
#[test]
fn dnssec_records_only_with_do_and_truncation_of_signed_answers() {
    let served = serve_signed(Denial::Nsec3);
    let server = &served.server;
    let plain = server.udp(&query("nope.example.com.", RecordType::A, None));
    assert_eq!(plain.authorities.len(), 1, "the SOA alone: {plain:?}");
    assert_eq!(count(&plain, RecordType::RRSIG), 0);
    let plain = server.udp(&query("x.wild.example.com.", RecordType::A, None));
    assert_eq!(count(&plain, RecordType::RRSIG), 0, "{plain:?}");
    assert!(plain.authorities.is_empty(), "{plain:?}");
    let dnskey = server.udp(&query("example.com.", RecordType::DNSKEY, None));
    assert_eq!(count(&dnskey, RecordType::DNSKEY), 2, "{dnskey:?}");
    assert_eq!(count(&dnskey, RecordType::RRSIG), 0, "{dnskey:?}");
    let rrsig = server.udp(&query("www.example.com.", RecordType::RRSIG, None));
    assert!(
        !rrsig.answers.is_empty()
            && rrsig
                .answers
                .iter()
                .all(|r| r.record_type() == RecordType::RRSIG),
        "{rrsig:?}"
    );

    let signed = server.udp(&query("nope.example.com.", RecordType::A, Some(1232)));
    // SOA and its RRSIG, then the closest encloser, next closer and wildcard NSEC3s
    // (here two of them may be one record) with theirs.
    assert!(count(&signed, RecordType::NSEC3) >= 2, "{signed:?}");
    assert!(count(&signed, RecordType::RRSIG) >= 3, "{signed:?}");
    // 512 bytes cannot hold that: TC, nothing but the question and the OPT.
    let small = server.udp(&query("nope.example.com.", RecordType::A, Some(512)));
    assert!(small.metadata.truncation, "{small:?}");
    assert!(small.authorities.is_empty(), "{small:?}");
    let tcp = server.tcp(&query("nope.example.com.", RecordType::A, Some(512)));
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.authorities.len(), signed.authorities.len(), "{tcp:?}");
}

/// A task in a zone signed elsewhere would answer unsigned: `lbdns check` and the API
/// refuse it and say why (SPEC §11).
#[test]
fn a_task_in_a_zone_signed_elsewhere_is_refused_by_check_and_the_api() {
    let served = serve_signed(Denial::Nsec);
    let site_file = "origin_groups:\n  web:\n    origins:\n      - address: 192.0.2.10\n";
    let with_task = format!(
        "{site_file}tasks:\n  - {{ hostname: lb.example.com, origin_group: web, ttl: 30 }}\n"
    );
    let why = "zone example.com is signed elsewhere: a task there would answer unsigned; \
               import its ZSK with `lbdns keys import` (the zone must deny with NSEC, or NSEC3 \
               without opt-out)";

    // check: the same directory with a task in the site file.
    let checked = Site::new(&[
        ("example.com.zone", &served.signed.text),
        ("example.com.lb.yaml", &with_task),
    ]);
    let out = checked.check();
    assert!(!out.status.success(), "check accepted the task");
    assert!(stderr(&out).contains(why), "{}", stderr(&out));
    // Without the task, the signed zone and its groups check.
    checked.write("example.com.lb.yaml", site_file);
    let out = checked.check();
    assert!(out.status.success(), "{}", stderr(&out));

    // The API: a group is fine, a task is refused with the reason, nothing is served.
    let api = served.server.http(
        "PUT",
        "/v1/sites/example.com/origin-groups/web",
        Some(r#"{"origins": [{"address": "192.0.2.10"}]}"#),
    );
    assert!(matches!(api, Some((200..=299, _))), "{api:?}");
    let refused = served.server.http(
        "POST",
        "/v1/sites/example.com/tasks",
        Some(r#"{"hostname": "lb.example.com", "origin_group": "web", "ttl": 30}"#),
    );
    let (status, body) = refused.expect("the API answers");
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(body.contains(why), "{body}");
    let reply = served
        .server
        .udp(&query("lb.example.com.", RecordType::A, Some(1232)));
    assert!(reply.answers.is_empty(), "{reply:?}");
    let _ = &served.site;
}

/// Records by type in presentation lines (`owner TTL class TYPE rdata`).
fn types(lines: &str) -> std::collections::BTreeMap<String, usize> {
    let mut types = std::collections::BTreeMap::new();
    for line in lines
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
    {
        if let Some(rtype) = line.split_whitespace().nth(3) {
            *types.entry(rtype.to_owned()).or_default() += 1;
        }
    }
    types
}

/// A zone transfer of a signed zone carries all of it, the NSEC3 records (kept apart
/// from the zone's names) and every RRSIG included.
#[test]
fn a_zone_transfer_carries_the_signed_zone_whole() {
    let keys = tempfile::tempdir().unwrap();
    let signed = signing::sign(
        keys.path(),
        "example.com",
        &signing::source("example.com.zone"),
        Denial::Nsec3,
    );
    let site = Site::new(&[
        ("example.com.zone", &signed.text),
        ("example.com.lb.yaml", "secondaries: [127.0.0.1]\n"),
    ]);
    let server = site.serve();
    let axfr = server.dig(&["example.com", "AXFR", "+nocomments", "+nostats"]);
    let compile = require_tool(&["named-compilezone"], "bind9-utils");
    let file = site.path().join("zones/example.com.zone");
    let out = Command::new(compile)
        .args(["-q", "-k", "ignore", "-i", "none", "-o", "-", "example.com"])
        .arg(&file)
        .output()
        .expect("run named-compilezone");
    let mut want = types(&String::from_utf8_lossy(&out.stdout));
    // A transfer starts and ends with the SOA.
    *want.get_mut("SOA").unwrap() += 1;
    assert!(
        want["NSEC3"] > 10 && want["RRSIG"] > want["NSEC3"],
        "{want:?}"
    );
    assert_eq!(types(&axfr), want, "{axfr}");
}

/// A query with DO for `labels` (raw label bytes) under example.com., type `rtype`.
fn raw_query(labels: &[Vec<u8>], rtype: u16) -> Vec<u8> {
    let mut packet = vec![0x42, 0x42, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in labels {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label);
    }
    packet.extend_from_slice(b"\x07example\x03com\x00");
    packet.extend_from_slice(&rtype.to_be_bytes());
    packet.extend_from_slice(&[0, 1]);
    // OPT: root owner, payload 1232, DO set.
    packet.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0]);
    packet
}

/// Random names of the signed zone, most of which do not exist, asked with DO in-process:
/// every reply decodes, and every NXDOMAIN, NODATA and referral without DS carries NSEC or
/// NSEC3 records with RRSIGs (never a denial left unproven), for NSEC and NSEC3 opt-out.
#[test]
fn random_names_always_get_their_proofs() {
    use lbdns::dns::{Transport, respond};
    use lbdns::health::Health;
    use lbdns::load::{self, Sources};
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    const KNOWN: &[&str] = &[
        "www", "ent", "y", "x", "wild", "*", "w", "host1", "_tcp", "_ssh", "dev", "ns1", "ext",
        "child", "sub", "subdel", "mail", "zz", "WwW", "a",
    ];
    const TYPES: &[u16] = &[
        1, 2, 5, 6, 15, 16, 28, 33, 43, 46, 47, 48, 50, 51, 255, 65280,
    ];
    for denial in [Denial::Nsec, Denial::Nsec3OptOut] {
        let keys = tempfile::tempdir().unwrap();
        let signed = signing::sign(
            keys.path(),
            "example.com",
            &signing::source("example.com.zone"),
            denial,
        );
        let site = Site::new(&[("example.com.zone", &signed.text)]);
        let sources = Sources {
            dir: site.path().to_owned(),
            geoip: None,
            asn_db: None,
        };
        let (_config, snapshot) = load::load(&sources, &Health::default(), None).expect("loads");
        let mut rng = SmallRng::seed_from_u64(15);
        let mut answer_rng = SmallRng::seed_from_u64(16);
        let mut out = vec![0u8; 65535];
        let mut seen = std::collections::BTreeMap::<&str, usize>::new();
        for _ in 0..20_000 {
            let depth = rng.random_range(1..=4);
            let labels: Vec<Vec<u8>> = (0..depth)
                .map(|_| match rng.random_range(0..3) {
                    0 => (0..rng.random_range(1..=12))
                        .map(|_| rng.random::<u8>())
                        .collect(),
                    _ => KNOWN[rng.random_range(0..KNOWN.len())].as_bytes().to_vec(),
                })
                .collect();
            let rtype = TYPES[rng.random_range(0..TYPES.len())];
            let packet = raw_query(&labels, rtype);
            let source = "192.0.2.1".parse().unwrap();
            let len = respond(
                &snapshot,
                &packet,
                source,
                Transport::Tcp,
                &mut answer_rng,
                &mut out,
            )
            .len;
            let reply = Message::from_vec(&out[..len])
                .unwrap_or_else(|e| panic!("{labels:?} {rtype}: undecodable reply: {e}"));
            let has =
                |rtype: RecordType| reply.authorities.iter().any(|r| r.record_type() == rtype);
            let proven =
                (has(RecordType::NSEC) || has(RecordType::NSEC3)) && has(RecordType::RRSIG);
            let code = reply.metadata.response_code;
            let kind = match (code, reply.metadata.authoritative) {
                (ResponseCode::NXDomain, _) => "NXDOMAIN",
                (ResponseCode::NoError, false) if has(RecordType::DS) => "referral with DS",
                (ResponseCode::NoError, false) => "referral without DS",
                (ResponseCode::NoError, true) if reply.answers.is_empty() => "NODATA",
                (ResponseCode::NoError, true) => "answer",
                _ => panic!("{labels:?} {rtype}: {reply:?}"),
            };
            *seen.entry(kind).or_default() += 1;
            if matches!(kind, "NXDOMAIN" | "NODATA" | "referral without DS") {
                assert!(
                    proven,
                    "{denial:?} {labels:?} {rtype}: {kind} without proof: {reply:?}"
                );
            }
        }
        eprintln!("{denial:?}: {seen:?}");
        assert!(seen.len() == 5, "every kind of reply is reached: {seen:?}");
    }
}
