//! The NS-delegation path: a real recursive resolver (unbound) in front of lbdns, as
//! operators deploy it. unbound reaches lbdns through a stub zone on loopback and passes
//! the client's ECS on (subnetcache module), so region answers survive the resolver and
//! its cache keeps them apart by the scope lbdns returns.
//!
//! unbound and dig are required: without them these tests fail (naming the package to
//! install) rather than pass without checking anything. `.ci/run` installs both.

mod common;

use common::*;

const ZONE: &str = "$ORIGIN example.com.\n$TTL 3600\n\
@ IN SOA ns1 hostmaster 1 7200 900 1209600 300\n\
@ NS ns1\n\
ns1 A 127.0.0.1\n\
static 600 A 192.0.2.80\n";

const SITE: &str = "origin_groups:
  geo:
    policy: region
    origins:
      - address: 198.51.100.1
        countries: [CN]
      - address: 198.51.100.2
        continents: [EU]
      - address: 198.51.100.9
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - { id: geo, hostname: geo.example.com, origin_group: geo, ttl: 45 }
  - { id: static, hostname: static.example.com, origin_group: web, ttl: 20 }
";

/// unbound in front of lbdns, passing the client's subnet on (ECS).
fn unbound_in_front_of(server: &Server) -> Unbound {
    Unbound::start(
        server.addr,
        &["example.com"],
        true,
        None,
        ("static.example.com", "192.0.2.10"),
    )
}

#[test]
fn resolver_serves_task_answers_with_their_ttls() {
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", SITE)]);
    let server = site.serve();
    let unbound = unbound_in_front_of(&server);
    let out = unbound.dig(&["static.example.com", "A", "+noall", "+answer"]);
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields.get(4), Some(&"192.0.2.10"), "{out}");
    let ttl: u32 = fields[1].parse().unwrap();
    assert!(
        ttl <= 20,
        "the resolver caches for the task's TTL at most, not the zone's 600: {out}"
    );
    // A negative answer comes back as NXDOMAIN through the resolver too.
    let out = unbound.dig(&["nope.example.com", "A"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
}

#[test]
fn resolver_passes_ecs_and_keeps_region_answers_apart() {
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", SITE)]);
    let server = site.serve();
    let unbound = unbound_in_front_of(&server);
    // Alternate regions so that each answer has to come from the right cache entry.
    for _ in 0..2 {
        for (subnet, expected) in [
            ("175.16.199.0/24", "198.51.100.1"),
            ("81.2.69.160/27", "198.51.100.2"),
            ("216.160.83.0/24", "198.51.100.9"),
        ] {
            let out = unbound.dig(&[
                "geo.example.com",
                "A",
                "+short",
                &format!("+subnet={subnet}"),
            ]);
            assert_eq!(
                out.trim(),
                expected,
                "client subnet {subnet} through unbound"
            );
        }
    }
}
