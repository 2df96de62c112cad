//! Load-balanced answers against the real binary: weights, regions, ECS scope, TTLs,
//! override and restore (SPEC §3-§5).
//!
//! Region checks use MaxMind's GeoIP2 Country test database (tests/data; its source is
//! MaxMind's `GeoIP2-Country-Test.json`). Expected scopes are read from that list, never
//! from lbdns itself: the widest block around the client in which no address is answered
//! from other origins (tests/scope.rs checks this for thousands of addresses). The
//! networks these cases meet:
//!
//! | address            | network in the database | data   |
//! |--------------------|-------------------------|--------|
//! | 175.16.199.0       | 175.16.199.0/24         | CN, AS |
//! | 81.2.69.160        | 81.2.69.160/27          | GB, EU |
//! | 216.160.83.56      | 216.160.83.56/29        | US, NA |
//! | 81.2.64.0          | 81.2.64.0/22            | none   |
//! | 10.1.2.3           | 10.0.0.0/8 (reserved)   | none   |
//! | 2001:250::         | 2001:250::/31           | CN, AS |
//! | 2a02:cfc0::        | 2a02:cfc0::/29          | FR, EU |
//! | 2001:218::         | 2001:218::/32           | JP, AS |
//! | 2001:db8:1::, :2:: | 2001:db8::/32 (reserved)| none   |
//! | 217.65.48.0        | 217.65.48.0/29          | GI, EU |
//! | 2.125.160.216      | 2.125.160.216/29        | GB, EU |
//! | 2001:220::         | 2001:220::/128          | SE, EU |
//!
//! The scope of a region answer is the block in which every address gets the same answer
//! (README, "Exact ECS scope"): adjacent networks and rules that lead to the same origins
//! count as one, and the scope is capped at the source prefix.
//! Shares are checked with chi-square bounds at P = 1e-7 over a few thousand answers (the
//! server's draws are not seeded; see `CHI2_1E7`): the seven checks together fail a correct
//! server less than once in a million runs.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

const ZONE: &str = "$ORIGIN example.com.\n$TTL 3600\n\
@ IN SOA ns1 hostmaster 1 7200 900 1209600 300\n\
@ NS ns1\n\
ns1 A 192.0.2.53\n\
www 300 A 192.0.2.80\n\
www TXT \"from the zone\"\n";

const GROUPS: &str = "origin_groups:
  web:
    origins:
      - address: 192.0.2.10
        weight: 3
      - address: 192.0.2.11
        weight: 1
      - address: 192.0.2.12
        weight: 0
  geo:
    policy: region
    origins:
      - address: 198.51.100.1
        countries: [CN]
      - address: 198.51.100.2
        continents: [EU]
      - address: 198.51.100.3
        subnets: [203.0.113.0/24, 2001:db8:1::/48]
      - address: 198.51.100.9
      - address: 2001:db8::1
        countries: [cn]
      - address: 2001:db8::2
        continents: [EU]
      - address: 2001:db8::3
        subnets: [2001:db8:1::/48, 203.0.113.0/24]
      - address: 2001:db8::9
  no_default:
    policy: region
    origins:
      - address: 198.51.100.1
        countries: [CN]
        weight: 3
      - address: 198.51.100.4
        countries: [JP]
        weight: 1
  eu_weights:
    policy: region
    origins:
      - address: 198.51.100.2
        continents: [EU]
        weight: 1
      - address: 198.51.100.5
        continents: [EU]
        weight: 3
      - address: 198.51.100.9
        weight: 5
  local:
    policy: region
    origins:
      - address: 198.51.100.7
        subnets: [127.0.0.0/8]
      - address: 198.51.100.9
  cdn:
    origins:
      - address: edge-a.cdn.example.net
        weight: 3
      - address: edge-b.cdn.example.net
        weight: 1
  pair:
    origins:
      - address: 192.0.2.21
      - address: 192.0.2.22
      - address: 192.0.2.23
      - address: 2001:db8::21
  trio:
    origins:
      - address: 192.0.2.31
        weight: 2
      - address: 192.0.2.32
        weight: 1
      - address: 192.0.2.33
        weight: 1
  drained:
    origins:
      - address: 192.0.2.41
        weight: 0
      - address: 192.0.2.42
        weight: 0
";

fn site_with_tasks(tasks: &str) -> Site {
    Site::new(&[
        ("example.com.zone", ZONE),
        ("example.com.lb.yaml", &format!("{GROUPS}tasks:\n{tasks}")),
    ])
}

const TASKS: &str = "  - { id: www, hostname: www.example.com, origin_group: web, ttl: 30 }
  - { id: geo, hostname: geo.example.com, origin_group: geo, ttl: 45 }
  - { id: cn, hostname: cn.example.com, origin_group: no_default }
  - { id: eu, hostname: eu.example.com, origin_group: eu_weights }
  - { id: local, hostname: local.example.com, origin_group: local }
  - { id: cdn, hostname: cdn.example.com, origin_group: cdn, ttl: 300 }
  - { id: pair, hostname: pair.example.com, origin_group: pair, answers: 2, ttl: 20 }
  - { id: trio, hostname: trio.example.com, origin_group: trio, answers: 2 }
  - { id: drained, hostname: drained.example.com, origin_group: drained }
";

/// Asks `n` times and counts the answers, each answer's records sorted and joined by
/// spaces; every reply must be NOERROR with `records` records.
fn tally_replies(
    server: &Server,
    query: impl Fn() -> Message,
    records: usize,
    n: usize,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let reply = server.udp(&query());
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{reply}"
        );
        assert_eq!(reply.answers.len(), records, "{reply}");
        let mut got = answers(&reply);
        got.sort();
        *counts.entry(got.join(" ")).or_insert(0) += 1;
    }
    counts
}

fn tally(server: &Server, name: &str, n: usize) -> BTreeMap<String, usize> {
    let query = || Message::query_for(&name.parse().unwrap(), RecordType::A);
    tally_replies(server, query, 1, n)
}

/// Asserts that `counts` holds exactly the keys of `expected` with shares that pass a
/// chi-square test at P = 1e-7 against its probabilities.
#[track_caller]
fn assert_shares(counts: &BTreeMap<String, usize>, expected: &[(&str, f64)]) {
    let keys: Vec<&str> = counts.keys().map(String::as_str).collect();
    let mut want: Vec<&str> = expected.iter().map(|(k, _)| *k).collect();
    want.sort();
    assert_eq!(keys, want, "answers seen: {counts:?}");
    let observed: Vec<usize> = expected.iter().map(|(k, _)| counts[*k]).collect();
    let p: Vec<f64> = expected.iter().map(|(_, p)| *p).collect();
    let chi2 = chi_square(&observed, &p);
    let bound = CHI2_1E7[expected.len() - 2];
    assert!(
        chi2 < bound,
        "shares {counts:?} are off {expected:?} (chi2 {chi2:.2} >= {bound})"
    );
}

#[test]
fn weighted_answers_follow_the_weights() {
    let site = site_with_tasks(TASKS);
    let server = site.serve();
    let counts = tally(&server, "www.example.com.", 3000);
    // The drained origin (weight 0) is never answered while a weighted one is up.
    assert_shares(&counts, &[("192.0.2.10", 0.75), ("192.0.2.11", 0.25)]);
}

#[test]
fn several_answers_are_distinct_and_drawn_by_weight() {
    let site = site_with_tasks(TASKS);
    let server = site.serve();
    // Weights 2:1:1, two distinct records per answer, drawn one after the other in
    // proportion to the weights left: {31,32} = 2/4*1/2 + 1/4*2/3 = 5/12, {31,33} the
    // same, {32,33} = 1/4*1/3 + 1/4*1/3 = 1/6.
    let query = || Message::query_for(&"trio.example.com.".parse().unwrap(), RecordType::A);
    let counts = tally_replies(&server, query, 2, 3000);
    assert_shares(
        &counts,
        &[
            ("192.0.2.31 192.0.2.32", 5.0 / 12.0),
            ("192.0.2.31 192.0.2.33", 5.0 / 12.0),
            ("192.0.2.32 192.0.2.33", 1.0 / 6.0),
        ],
    );
}

#[test]
fn a_group_of_drained_origins_still_answers_evenly() {
    let site = site_with_tasks(TASKS);
    let server = site.serve();
    let counts = tally(&server, "drained.example.com.", 2000);
    assert_shares(&counts, &[("192.0.2.41", 0.5), ("192.0.2.42", 0.5)]);
}

#[test]
fn task_ttl_answers_and_flags() {
    let site = site_with_tasks(TASKS);
    let server = site.serve();
    let reply = server.ask("www.example.com.", RecordType::A);
    assert!(reply.metadata.authoritative);
    assert_eq!(reply.answers[0].ttl, 30);
    // answers: 2 gives two distinct records, from the IPv4 origins only.
    for _ in 0..20 {
        let reply = server.ask("pair.example.com.", RecordType::A);
        let mut got = answers(&reply);
        assert_eq!(got.len(), 2, "{reply}");
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 2, "distinct records: {reply}");
        assert!(got.iter().all(|a| a.starts_with("192.0.2.2")), "{got:?}");
        assert!(reply.answers.iter().all(|r| r.ttl == 20));
    }
    // AAAA draws from the IPv6 origins: only one, so one record.
    let reply = server.ask("pair.example.com.", RecordType::AAAA);
    assert_eq!(answers(&reply), ["2001:db8::21"]);
    // A type the group has no origins for is NODATA with the SOA.
    let reply = server.ask("www.example.com.", RecordType::AAAA);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.answers.is_empty());
    assert_eq!(reply.authorities[0].record_type(), RecordType::SOA);
}

#[test]
fn cname_group_answers_cname_for_every_type_by_weight() {
    let site = site_with_tasks(TASKS);
    let server = site.serve();
    for rtype in [
        RecordType::A,
        RecordType::AAAA,
        RecordType::MX,
        RecordType::TXT,
    ] {
        let reply = server.ask("cdn.example.com.", rtype);
        assert_eq!(reply.answers.len(), 1, "{rtype}: {reply}");
        assert_eq!(reply.answers[0].record_type(), RecordType::CNAME, "{reply}");
        assert_eq!(reply.answers[0].ttl, 300);
    }
    let counts = tally(&server, "cdn.example.com.", 2000);
    assert_shares(
        &counts,
        &[
            ("edge-a.cdn.example.net.", 0.75),
            ("edge-b.cdn.example.net.", 0.25),
        ],
    );
}

/// Asks `name` for `rtype` with ECS `ecs`; returns (answer, scope, TTL). The reply must
/// echo the ECS address and source prefix as sent.
fn region_reply(server: &Server, name: &str, rtype: RecordType, ecs: &str) -> (String, u8, u32) {
    let reply = server.udp(&query_edns(name, rtype, 1232, Some(ecs)));
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NoError,
        "{reply}"
    );
    let got = answers(&reply);
    assert_eq!(got.len(), 1, "{reply}");
    let (addr, source, scope) = ecs_of(&reply).expect("ECS echoed");
    let asked: ipnet::IpNet = ecs.parse().unwrap();
    assert_eq!(
        (addr, source),
        (asked.network(), asked.prefix_len()),
        "ECS echoed as sent"
    );
    (got[0].clone(), scope, reply.answers[0].ttl)
}

/// (answer, scope) of `name` for `rtype` with ECS `ecs`.
fn region(server: &Server, name: &str, rtype: RecordType, ecs: &str) -> (String, u8) {
    let (answer, scope, _) = region_reply(server, name, rtype, ecs);
    (answer, scope)
}

/// (answer, scope) of the `geo` task, whose TTL is 45.
fn geo(server: &Server, rtype: RecordType, ecs: &str) -> (String, u8) {
    let (answer, scope, ttl) = region_reply(server, "geo.example.com.", rtype, ecs);
    assert_eq!(ttl, 45);
    (answer, scope)
}

/// Each case: the record type, the ECS option, the answer and the exact scope.
fn assert_region_cases(server: &Server, cases: &[(RecordType, &str, &str, u8)]) {
    for &(rtype, ecs, answer, scope) in cases {
        assert_eq!(
            geo(server, rtype, ecs),
            (answer.to_owned(), scope),
            "{rtype} with ECS {ecs}"
        );
        // The scope promises that every address of the scoped block gets this answer:
        // ask the first and the last one with full-length prefixes.
        let asked: ipnet::IpNet = ecs.parse().unwrap();
        let block = ipnet::IpNet::new(asked.network(), scope).unwrap().trunc();
        let full = if asked.network().is_ipv4() { 32 } else { 128 };
        for edge in [block.network(), block.broadcast()] {
            let (other, _) = geo(server, rtype, &format!("{edge}/{full}"));
            assert_eq!(
                other, answer,
                "{edge} is inside scope {block} of {ecs} but answered differently"
            );
        }
    }
}

#[test]
fn region_levels_ipv4_with_exact_scopes() {
    let site = site_with_tasks(TASKS);
    let server = site.serve();
    let a = RecordType::A;
    assert_region_cases(
        &server,
        &[
            // Subnet rule 203.0.113.0/24.
            (a, "203.0.113.0/24", "198.51.100.3", 24),
            (a, "203.0.113.77/32", "198.51.100.3", 24),
            // Country CN: 175.16.199.0/24.
            (a, "175.16.199.0/24", "198.51.100.1", 24),
            // Continent EU: GB's 81.2.69.160/27.
            (a, "81.2.69.160/32", "198.51.100.2", 27),
            // Default: neither CN nor EU in all of 216.0.0.0/8 (US's 216.160.83.56/29
            // among them); the /7 holds 217.65.48.0/29 (GI, EU).
            (a, "216.160.83.56/32", "198.51.100.9", 8),
            // Default, in no data network: all of 8.0.0.0/5; the /4 holds
            // 2.125.160.216/29 (GB, EU).
            (a, "10.1.2.3/32", "198.51.100.9", 5),
            // The database's empty 81.2.64.0/22 is narrower than the source /16: the
            // scope is capped at 16.
            (a, "81.2.0.0/16", "198.51.100.9", 16),
            // ... and wider than the source /23: the scope is 22, not the source prefix.
            (a, "81.2.64.0/23", "198.51.100.9", 22),
        ],
    );
}

#[test]
fn region_levels_ipv6_with_exact_scopes() {
    let site = site_with_tasks(TASKS);
    let server = site.serve();
    let aaaa = RecordType::AAAA;
    assert_region_cases(
        &server,
        &[
            (aaaa, "2001:db8:1::/48", "2001:db8::3", 48),
            (aaaa, "2001:db8:1:2::/64", "2001:db8::3", 48),
            (aaaa, "2001:250::/32", "2001:db8::1", 31),
            (aaaa, "2a02:cfc0::/32", "2001:db8::2", 29),
            // JP, the default like the networks up to 2001:21f:ffff::; 2001:220::/128
            // (SE, EU) is in the /26.
            (aaaa, "2001:218::/32", "2001:db8::9", 27),
            // Next to the rule 2001:db8:1::/48, inside the database's 2001:db8::/32: the
            // answer holds for 2001:db8:2::/47 only, the largest block around the client
            // that does not overlap the rule.
            (aaaa, "2001:db8:2::/48", "2001:db8::9", 47),
            // The record type picks the family of the origins, not the client's family.
            (RecordType::A, "2001:250::/32", "198.51.100.1", 31),
            (aaaa, "175.16.199.0/24", "2001:db8::1", 24),
        ],
    );
}

#[test]
fn region_without_default_falls_back_to_all_origins_by_weight() {
    let site = site_with_tasks(TASKS);
    let server = site.serve();
    // US is neither CN nor JP and the group has no default origin: every origin, 3:1.
    let ecs = "216.160.83.56/32";
    let query = || query_edns("cn.example.com.", RecordType::A, 1232, Some(ecs));
    let counts = tally_replies(&server, query, 1, 3000);
    assert_shares(&counts, &[("198.51.100.1", 0.75), ("198.51.100.4", 0.25)]);
    // Neither CN nor JP in all of 192.0.0.0/2; the /1 holds 175.16.199.0/24 (CN).
    assert_eq!(region(&server, "cn.example.com.", RecordType::A, ecs).1, 2);
    // A listed country still gets its own origin only.
    for _ in 0..50 {
        assert_eq!(
            region(&server, "cn.example.com.", RecordType::A, "175.16.199.0/24"),
            ("198.51.100.1".to_owned(), 24)
        );
    }
}

#[test]
fn weights_apply_inside_a_region_level() {
    let site = site_with_tasks(TASKS);
    let server = site.serve();
    // GB is in EU: the two EU origins at 1:3, never the (heavier) default.
    let ecs = "81.2.69.160/32";
    let query = || query_edns("eu.example.com.", RecordType::A, 1232, Some(ecs));
    let counts = tally_replies(&server, query, 1, 3000);
    assert_shares(&counts, &[("198.51.100.2", 0.25), ("198.51.100.5", 0.75)]);
    assert_eq!(region(&server, "eu.example.com.", RecordType::A, ecs).1, 27);
    // Not EU in all of 216.0.0.0/8; the /7 holds 217.65.48.0/29 (GI).
    for _ in 0..50 {
        assert_eq!(
            region(
                &server,
                "eu.example.com.",
                RecordType::A,
                "216.160.83.56/32"
            ),
            ("198.51.100.9".to_owned(), 8)
        );
    }
}

#[test]
fn region_without_ecs_uses_the_source_address() {
    let site = site_with_tasks(TASKS);
    let server = site.serve();
    // The queries come from 127.0.0.1, which the rule 127.0.0.0/8 sends to .7; every
    // other client gets the default .9.
    for _ in 0..20 {
        let reply = server.ask("local.example.com.", RecordType::A);
        assert_eq!(answers(&reply), ["198.51.100.7"], "{reply}");
        assert!(
            reply.edns.is_none() || ecs_of(&reply).is_none(),
            "no ECS in, no ECS out"
        );
        let with_edns = server.udp(&query_edns("local.example.com.", RecordType::A, 1232, None));
        assert_eq!(answers(&with_edns), ["198.51.100.7"], "{with_edns}");
        assert_eq!(ecs_of(&with_edns), None, "no ECS in, no ECS out");
    }
    // SOURCE PREFIX-LENGTH 0, of either family: answered from the source address, with
    // scope 0.
    for ecs in ["0.0.0.0/0", "::/0"] {
        let reply = server.udp(&query_edns(
            "local.example.com.",
            RecordType::A,
            1232,
            Some(ecs),
        ));
        assert_eq!(answers(&reply), ["198.51.100.7"], "ECS {ecs}: {reply}");
        assert_eq!(ecs_of(&reply).map(|e| (e.1, e.2)), Some((0, 0)), "{reply}");
    }
    // An ECS address wins over the source address. The answer's block is the largest one
    // around the client that does not overlap 127.0.0.0/8.
    let cases = [
        ("216.160.83.56/32", "198.51.100.9", 1),
        ("126.0.0.1/32", "198.51.100.9", 8),
        ("127.1.2.3/32", "198.51.100.7", 8),
    ];
    for (ecs, answer, scope) in cases {
        assert_eq!(
            region(&server, "local.example.com.", RecordType::A, ecs),
            (answer.to_owned(), scope),
            "ECS {ecs}"
        );
    }
}

#[test]
fn weighted_answers_have_ecs_scope_zero() {
    let site = site_with_tasks(TASKS);
    let server = site.serve();
    for name in [
        "www.example.com.",
        "trio.example.com.",
        "drained.example.com.",
    ] {
        let reply = server.udp(&query_edns(name, RecordType::A, 1232, Some("81.2.69.0/24")));
        let (addr, source, scope) = ecs_of(&reply).expect("ECS echoed");
        assert_eq!(
            (addr, source, scope),
            ("81.2.69.0".parse::<IpAddr>().unwrap(), 24, 0),
            "{name}"
        );
    }
}

#[test]
fn region_answers_with_dig_subnet() {
    let site = site_with_tasks(TASKS);
    let server = site.serve();
    let out = server.dig(&["geo.example.com", "A", "+subnet=175.16.199.0/24"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("flags: qr aa;"), "{out}");
    assert!(
        out.contains("geo.example.com.\t45\tIN\tA\t198.51.100.1"),
        "{out}"
    );
    assert!(out.contains("; CLIENT-SUBNET: 175.16.199.0/24/24"), "{out}");
    let out = server.dig(&["geo.example.com", "A", "+subnet=81.2.69.160/32"]);
    assert!(out.contains("; CLIENT-SUBNET: 81.2.69.160/32/27"), "{out}");
}

fn a_records(reply: &Message) -> Vec<(String, u32)> {
    reply
        .answers
        .iter()
        .map(|r| (r.data.to_string(), r.ttl))
        .collect()
}

#[test]
fn override_and_restore_across_reloads() {
    let site = site_with_tasks("");
    let server = site.serve();
    let zone_www = vec![("192.0.2.80".to_owned(), 300)];
    assert_eq!(
        a_records(&server.ask("www.example.com.", RecordType::A)),
        zone_www
    );

    // Enabled: the task answers with its own TTL; TXT still comes from the zone.
    let reloaded = server.reload_after(|| {
        site.write(
            "example.com.lb.yaml",
            &format!("{GROUPS}tasks:\n  - {{ id: www, hostname: www.example.com, origin_group: pair, answers: 1, ttl: 7 }}\n"),
        )
    });
    assert_eq!(reloaded, Reloaded::Accepted);
    let reply = server.ask("www.example.com.", RecordType::A);
    let got = a_records(&reply);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].0.starts_with("192.0.2.2") && got[0].1 == 7,
        "{got:?}"
    );
    let txt = server.ask("www.example.com.", RecordType::TXT);
    assert_eq!(answers(&txt), ["from the zone"]);

    // Disabled: the zone's record is back, with the zone's TTL.
    let reloaded = server.reload_after(|| {
        site.write(
            "example.com.lb.yaml",
            &format!("{GROUPS}tasks:\n  - {{ id: www, hostname: www.example.com, origin_group: pair, ttl: 7, enabled: false }}\n"),
        )
    });
    assert_eq!(reloaded, Reloaded::Accepted);
    assert_eq!(
        a_records(&server.ask("www.example.com.", RecordType::A)),
        zone_www
    );

    // A task on a name the zone lacks makes it exist, and deleting it removes it again.
    assert_eq!(
        server
            .ask("new.example.com.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    let reloaded = server.reload_after(|| {
        site.write(
            "example.com.lb.yaml",
            &format!(
                "{GROUPS}tasks:\n  - {{ id: new, hostname: new.example.com, origin_group: web }}\n"
            ),
        )
    });
    assert_eq!(reloaded, Reloaded::Accepted);
    let reply = server.ask("new.example.com.", RecordType::A);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(reply.answers[0].ttl, 60, "default TTL");
    let reloaded = server.reload_after(|| site.write("example.com.lb.yaml", GROUPS));
    assert_eq!(reloaded, Reloaded::Accepted);
    assert_eq!(
        server
            .ask("new.example.com.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    assert_eq!(
        a_records(&server.ask("www.example.com.", RecordType::A)),
        zone_www
    );
}

/// The raw replies to a fixed set of queries at www (which a task overrides) and new
/// (which only a task makes exist): every section, every flag, byte for byte, with the
/// same query bytes (and so the same ID) each time.
fn raw_replies(server: &Server) -> Vec<(String, Vec<u8>)> {
    let mut replies = Vec::new();
    for name in ["www.example.com.", "new.example.com."] {
        for rtype in [
            RecordType::A,
            RecordType::AAAA,
            RecordType::CNAME,
            RecordType::TXT,
            RecordType::ANY,
        ] {
            for edns in [false, true] {
                let mut query = match edns {
                    true => query_edns(name, rtype, 1232, Some("198.51.100.0/24")),
                    false => Message::query_for(&name.parse().unwrap(), rtype),
                };
                query.metadata.id = 0x5151;
                let bytes = query.to_vec().unwrap();
                for tcp in [false, true] {
                    let what = format!("{name} {rtype} edns {edns} tcp {tcp}");
                    let reply = match tcp {
                        true => tcp_exchange_raw(server.addr, &bytes),
                        false => server.udp_raw(&bytes, std::time::Duration::from_secs(2)),
                    };
                    replies.push((
                        what.clone(),
                        reply.unwrap_or_else(|| panic!("{what}: no reply")),
                    ));
                }
            }
        }
    }
    replies
}

/// "Disable or remove it and the zone's own records answer again, unchanged" (README):
/// the whole replies, not only their answers, are what they were before the task.
#[test]
fn disabling_or_removing_a_task_restores_the_zone_replies_byte_for_byte() {
    let site = site_with_tasks("");
    let server = site.serve();
    let before = raw_replies(&server);
    let with_tasks = format!(
        "{GROUPS}tasks:\n  - {{ id: www, hostname: www.example.com, origin_group: pair, answers: 2, ttl: 7 }}\n  - {{ id: new, hostname: new.example.com, origin_group: cdn }}\n"
    );
    let disabled = with_tasks
        .replace("ttl: 7 }", "ttl: 7, enabled: false }")
        .replace("origin_group: cdn }", "origin_group: cdn, enabled: false }");
    for (what, file) in [
        ("enabled", with_tasks.as_str()),
        ("disabled", disabled.as_str()),
        ("enabled again", with_tasks.as_str()),
        ("removed", GROUPS),
    ] {
        let reloaded = server.reload_after(|| site.write("example.com.lb.yaml", file));
        assert_eq!(reloaded, Reloaded::Accepted, "{what}: {}", server.log());
        let now = raw_replies(&server);
        let changed: Vec<&str> = before
            .iter()
            .zip(&now)
            .filter(|(b, n)| b.1 != n.1)
            .map(|(b, _)| b.0.as_str())
            .collect();
        if what.starts_with("enabled") {
            // The control: the tasks do change these replies.
            assert!(changed.len() >= 8, "{what}: only {changed:?} changed");
        } else {
            assert!(
                changed.is_empty(),
                "{what}: not restored exactly: {changed:?}"
            );
        }
    }
}

#[test]
fn invalid_reload_keeps_the_last_good_configuration() {
    let site = site_with_tasks(TASKS);
    let mut server = site.serve();
    assert_eq!(server.metric("lbdns_config_valid"), 1.0);
    let reloaded = server.reload_after(|| {
        site.write(
            "example.com.lb.yaml",
            "origin_groups:\n  web:\n    origins:\n      - address: 192.0.2.10\n        weight: 500\n      - address: 192.0.2.11\n        weight: 700\n",
        )
    });
    assert_eq!(reloaded, Reloaded::Rejected);
    assert_eq!(server.metric("lbdns_config_valid"), 0.0);
    // The logged error says where and what, every problem on the one line of the
    // rejection: a log line is the record journald and grep keep together.
    let log = server.log();
    let rejection = log
        .lines()
        .find(|line| line.contains("reload rejected"))
        .unwrap_or_else(|| panic!("no rejection logged:\n{log}"));
    assert!(
        rejection.contains("example.com.lb.yaml:5")
            && rejection.contains("500")
            && rejection.contains("example.com.lb.yaml:7")
            && rejection.contains("700"),
        "{log}"
    );
    assert!(server.is_running());
    let reply = server.ask("geo.example.com.", RecordType::A);
    assert_eq!(
        answers(&reply),
        ["198.51.100.9"],
        "still serving the tasks loaded before"
    );
}

#[test]
fn shipped_example_behaves_as_the_readme_says() {
    let site = Site::example();
    let server = Server::start(
        site.path(),
        &[
            "--geoip".as_ref(),
            repo().join("geoip/geo-whois-asn-country.mmdb").as_os_str(),
        ],
    );
    let www = a_records(&server.ask("www.example.com.", RecordType::A));
    assert_eq!(www.len(), 1);
    assert!(
        ["192.0.2.10", "192.0.2.11"].contains(&www[0].0.as_str()) && www[0].1 == 30,
        "{www:?}"
    );
    assert_eq!(
        a_records(&server.ask("shop.example.com.", RecordType::A)),
        [("192.0.2.90".to_owned(), 300)]
    );
    let dual = server.ask("dual.example.com.", RecordType::AAAA);
    assert_eq!(dual.answers.len(), 2);
    let cdn = server.ask("cdn.example.com.", RecordType::A);
    assert_eq!(cdn.answers[0].record_type(), RecordType::CNAME);
    let out = server.dig(&["geo.example.com", "+short", "+subnet=203.0.113.0/24"]);
    assert_eq!(out.trim(), "198.51.100.3");
}
