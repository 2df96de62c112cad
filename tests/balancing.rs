//! Load-balanced answers against the real binary: weights, regions, ECS scope, TTLs,
//! override and restore (SPEC §3-§5). Region checks use MaxMind's GeoIP2 Country test
//! database: 175.16.199.0/24 and 2001:250::/31 are CN, 81.2.69.160 is GB and
//! 2a02:cfc0::/29 FR (both EU), 216.160.83.56 is US and 2001:218::/32 JP.

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
  cn_only:
    policy: region
    origins:
      - address: 198.51.100.1
        countries: [CN]
  cdn:
    origins:
      - address: edge-a.cdn.example.net
      - address: edge-b.cdn.example.net
  pair:
    origins:
      - address: 192.0.2.21
      - address: 192.0.2.22
      - address: 192.0.2.23
      - address: 2001:db8::21
";

fn site_with_tasks(tasks: &str) -> Site {
    Site::new(&[
        ("example.com.zone", ZONE),
        ("example.com.lb.yaml", &format!("{GROUPS}tasks:\n{tasks}")),
    ])
}

const TASKS: &str = "  - { id: www, hostname: www.example.com, origin_group: web, ttl: 30 }
  - { id: geo, hostname: geo.example.com, origin_group: geo, ttl: 45 }
  - { id: cn, hostname: cn.example.com, origin_group: cn_only }
  - { id: cdn, hostname: cdn.example.com, origin_group: cdn, ttl: 300 }
  - { id: pair, hostname: pair.example.com, origin_group: pair, answers: 2, ttl: 20 }
";

fn tally(server: &Server, name: &str, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let reply = server.ask(name, RecordType::A);
        assert_eq!(reply.answers.len(), 1, "{reply}");
        *counts.entry(answers(&reply)[0].clone()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn weighted_answers_follow_the_weights() {
    let site = site_with_tasks(TASKS);
    let server = site.serve();
    let n = 3000;
    let counts = tally(&server, "www.example.com.", n);
    assert_eq!(
        counts.get("192.0.2.12"),
        None,
        "a drained origin is never answered: {counts:?}"
    );
    let observed = [counts["192.0.2.10"], counts["192.0.2.11"]];
    let expected = [n as f64 * 0.75, n as f64 * 0.25];
    let chi2: f64 = observed
        .iter()
        .zip(expected)
        .map(|(&o, e)| (o as f64 - e).powi(2) / e)
        .sum();
    // One degree of freedom: P(chi2 > 10.83) = 0.001.
    assert!(
        chi2 < 10.83,
        "shares {observed:?} of {n} are off 3:1 (chi2 {chi2:.2})"
    );
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
fn cname_group_answers_cname_for_every_type() {
    let site = site_with_tasks(TASKS);
    let server = site.serve();
    let mut seen = BTreeMap::new();
    for _ in 0..60 {
        let reply = server.ask("cdn.example.com.", RecordType::A);
        assert_eq!(reply.answers.len(), 1, "{reply}");
        let record = &reply.answers[0];
        assert_eq!(record.record_type(), RecordType::CNAME);
        assert_eq!(record.ttl, 300);
        *seen.entry(record.data.to_string()).or_insert(0) += 1;
    }
    assert_eq!(
        seen.len(),
        2,
        "both targets answered over 60 queries: {seen:?}"
    );
    let reply = server.ask("cdn.example.com.", RecordType::MX);
    assert_eq!(reply.answers[0].record_type(), RecordType::CNAME);
}

/// Asks `geo.example.com` for `rtype` with ECS `ecs`; returns (answer, scope).
fn geo(server: &Server, rtype: RecordType, ecs: &str) -> (String, u8) {
    let reply = server.udp(&query_edns("geo.example.com.", rtype, 1232, Some(ecs)));
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
    assert!(scope <= source, "scope {scope} > source {source}");
    assert_eq!(reply.answers[0].ttl, 45);
    (got[0].clone(), scope)
}

/// The scope promises that every address in the scoped block gets the same answer:
/// check the first and the last one.
fn assert_scope_holds(server: &Server, rtype: RecordType, ecs: &str) {
    let (answer, scope) = geo(server, rtype, ecs);
    let asked: ipnet::IpNet = ecs.parse().unwrap();
    let block = ipnet::IpNet::new(asked.network(), scope).unwrap().trunc();
    let full = if asked.network().is_ipv4() { 32 } else { 128 };
    for edge in [block.network(), block.broadcast()] {
        let (other, _) = geo(server, rtype, &format!("{edge}/{full}"));
        assert_eq!(
            other, answer,
            "{edge} is inside scope {block} but answered differently"
        );
    }
}

#[test]
fn region_levels_ipv4() {
    let site = site_with_tasks(TASKS);
    let server = site.serve();
    let a = RecordType::A;
    // subnet > country > continent > default, each by its own client.
    assert_eq!(
        geo(&server, a, "203.0.113.0/24"),
        ("198.51.100.3".into(), 24)
    );
    assert_eq!(geo(&server, a, "175.16.199.0/24").0, "198.51.100.1");
    assert_eq!(geo(&server, a, "81.2.69.160/32").0, "198.51.100.2");
    assert_eq!(geo(&server, a, "216.160.83.56/32").0, "198.51.100.9");
    // An ECS prefix shorter than the data's network caps the scope.
    let (_, scope) = geo(&server, a, "81.2.0.0/16");
    assert!(scope <= 16);
    for ecs in [
        "175.16.199.0/24",
        "81.2.69.160/32",
        "216.160.83.56/32",
        "203.0.113.77/32",
    ] {
        assert_scope_holds(&server, a, ecs);
    }
}

#[test]
fn region_levels_ipv6() {
    let site = site_with_tasks(TASKS);
    let server = site.serve();
    let aaaa = RecordType::AAAA;
    assert_eq!(
        geo(&server, aaaa, "2001:db8:1::/48"),
        ("2001:db8::3".into(), 48)
    );
    assert_eq!(geo(&server, aaaa, "2001:250::/32").0, "2001:db8::1");
    assert_eq!(geo(&server, aaaa, "2a02:cfc0::/32").0, "2001:db8::2");
    assert_eq!(geo(&server, aaaa, "2001:218::/32").0, "2001:db8::9");
    // The record type picks the family of the origins, not the client's family.
    assert_eq!(
        geo(&server, RecordType::A, "2001:250::/32").0,
        "198.51.100.1"
    );
    assert_eq!(geo(&server, aaaa, "175.16.199.0/24").0, "2001:db8::1");
    for ecs in ["2001:250::/32", "2a02:cfc0::/32", "2001:db8:1:2::/64"] {
        assert_scope_holds(&server, aaaa, ecs);
    }
}

#[test]
fn region_without_default_falls_back_to_all_origins() {
    let site = site_with_tasks(TASKS);
    let server = site.serve();
    let reply = server.udp(&query_edns(
        "cn.example.com.",
        RecordType::A,
        1232,
        Some("216.160.83.56/32"),
    ));
    assert_eq!(answers(&reply), ["198.51.100.1"]);
}

#[test]
fn region_without_ecs_uses_the_source_address() {
    let site = site_with_tasks(TASKS);
    let server = site.serve();
    // 127.0.0.1 is in no database and no subnet rule: the default origin.
    let reply = server.ask("geo.example.com.", RecordType::A);
    assert_eq!(answers(&reply), ["198.51.100.9"]);
    assert!(
        reply.edns.is_none() || ecs_of(&reply).is_none(),
        "no ECS in, no ECS out"
    );
    // SOURCE PREFIX-LENGTH 0: answered from the source address, with scope 0.
    let reply = server.udp(&query_edns(
        "geo.example.com.",
        RecordType::A,
        1232,
        Some("0.0.0.0/0"),
    ));
    assert_eq!(answers(&reply), ["198.51.100.9"]);
    assert_eq!(ecs_of(&reply).map(|e| e.2), Some(0));
}

#[test]
fn weighted_answers_have_ecs_scope_zero() {
    let site = site_with_tasks(TASKS);
    let server = site.serve();
    let reply = server.udp(&query_edns(
        "www.example.com.",
        RecordType::A,
        1232,
        Some("81.2.69.0/24"),
    ));
    let (addr, source, scope) = ecs_of(&reply).expect("ECS echoed");
    assert_eq!(
        (addr, source, scope),
        ("81.2.69.0".parse::<IpAddr>().unwrap(), 24, 0)
    );
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
    assert!(out.contains("; CLIENT-SUBNET: 175.16.199.0/24/"), "{out}");
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
    site.write(
        "example.com.lb.yaml",
        &format!("{GROUPS}tasks:\n  - {{ id: www, hostname: www.example.com, origin_group: pair, answers: 1, ttl: 7 }}\n"),
    );
    server.reload();
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
    site.write(
        "example.com.lb.yaml",
        &format!("{GROUPS}tasks:\n  - {{ id: www, hostname: www.example.com, origin_group: pair, ttl: 7, enabled: false }}\n"),
    );
    server.reload();
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
    site.write(
        "example.com.lb.yaml",
        &format!(
            "{GROUPS}tasks:\n  - {{ id: new, hostname: new.example.com, origin_group: web }}\n"
        ),
    );
    server.reload();
    let reply = server.ask("new.example.com.", RecordType::A);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(reply.answers[0].ttl, 60, "default TTL");
    site.write("example.com.lb.yaml", GROUPS);
    server.reload();
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

#[test]
fn invalid_reload_keeps_the_last_good_configuration() {
    let site = site_with_tasks(TASKS);
    let mut server = site.serve();
    site.write(
        "example.com.lb.yaml",
        "origin_groups:\n  web:\n    origins:\n      - address: 192.0.2.10\n        weight: 500\n",
    );
    server.reload();
    assert!(server.log().contains("reload rejected"), "{}", server.log());
    assert!(
        server.log().contains("weight 500 is out of range"),
        "{}",
        server.log()
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
