//! Selection in its two steps, called apart (in-process, no server): `route` says which
//! region level and members a client gets and the ECS scope, with no health and no
//! randomness; `pick` draws from the route with health as an input (SPEC §4).
//!
//! Expected levels and scopes come from the MaxMind test data (tests/data), not from
//! lbdns: 175.16.199.0/24 is CN (AS), 81.2.69.160 is GB (EU) in 81.2.69.160/27,
//! 216.160.83.56 is US (NA) in 216.160.83.56/29, 217.65.48.0/29 is GI (EU).

mod common;

use std::net::IpAddr;

use lbdns::geoip::{Continent, Country, GeoIp};
use lbdns::select::{Client, CompiledGroup, Family, Level, pick, route};
use lbdns::site::{Origin, OriginGroup, Policy, Target};
use rand::SeedableRng;
use rand::rngs::SmallRng;

fn origin(addr: &str, weight: u32) -> Origin {
    Origin {
        target: Target::Ip(addr.parse().unwrap()),
        weight,
        countries: Vec::new(),
        continents: Vec::new(),
        subnets: Vec::new(),
        asns: Vec::new(),
    }
}

/// 0: CN, 1: EU, 2 and 3: the defaults, at 3:1.
fn region_group() -> CompiledGroup {
    let mut cn = origin("198.51.100.1", 1);
    cn.countries = vec![Country::parse("CN").unwrap()];
    let mut eu = origin("198.51.100.2", 1);
    eu.continents = vec![Continent::parse("EU").unwrap()];
    let group = OriginGroup {
        name: "geo".into(),
        policy: Policy::Region,
        origins: vec![
            cn,
            eu,
            origin("198.51.100.9", 3),
            origin("198.51.100.10", 1),
        ],
        health_check: None,
        fallback: Default::default(),
    };
    CompiledGroup::new(&group, Some(&geoip()))
}

fn geoip() -> GeoIp {
    GeoIp::open(&common::repo().join("tests/data/GeoIP2-Country-Test.mmdb")).unwrap()
}

fn client(addr: &str, source_prefix: u8) -> Client {
    Client {
        addr: addr.parse::<IpAddr>().unwrap(),
        source_prefix,
    }
}

#[test]
fn route_names_the_level_members_and_scope_without_health_or_randomness() {
    let group = region_group();
    let cases = [
        ("175.16.199.1", Level::Country, vec![0u16]),
        ("81.2.69.160", Level::Continent, vec![1]),
        ("216.160.83.56", Level::Default, vec![2, 3]),
    ];
    for (addr, level, members) in cases {
        let mut r = route(&group, Family::V4, &client(addr, 32));
        assert_eq!(r.level(), Some((level, &members[..])), "{addr}");
    }
    // The scope is the widest block around the client answered alike: 81.2.69.160/27
    // inside the GB networks 81.2.69.142-207 (Europe); for 216.160.83.56 (US, the
    // default) 216.0.0.0/8, whose /7 holds 217.65.48.0/29 (GI, Europe).
    let mut gb = route(&group, Family::V4, &client("81.2.69.160", 32));
    gb.level();
    assert_eq!(gb.scope(), 27);
    let mut us = route(&group, Family::V4, &client("216.160.83.56", 32));
    us.level();
    assert_eq!(us.scope(), 8);
    // Capped at what the client revealed.
    let mut short = route(&group, Family::V4, &client("81.2.69.0", 24));
    short.level();
    assert_eq!(short.scope(), 24);
}

#[test]
fn pick_skips_down_origins_level_by_level_then_fails_open() {
    let group = region_group();
    let mut rng = SmallRng::seed_from_u64(7);
    let cn = client("175.16.199.1", 32);
    let draw = |is_up: &dyn Fn(u16) -> bool, rng: &mut SmallRng| {
        let mut r = route(&group, Family::V4, &cn);
        pick(&mut r, is_up, 1, rng)
    };
    let all_up = draw(&|_| true, &mut rng);
    assert_eq!((all_up.origins(), all_up.failed_open), (&[0u16][..], false));
    // The CN origin down: the client's continent (AS) has no origin, so the defaults.
    for _ in 0..50 {
        let s = draw(&|i| i != 0, &mut rng);
        assert!(matches!(s.origins(), [2] | [3]), "{:?}", s.origins());
        assert!(!s.failed_open);
    }
    // Every origin down: answered as if all were up, and said so.
    let s = draw(&|_| false, &mut rng);
    assert_eq!((s.origins(), s.failed_open), (&[0u16][..], true));
}

#[test]
fn pick_keeps_the_weights_among_the_origins_that_are_up() {
    let group = region_group();
    let mut rng = SmallRng::seed_from_u64(11);
    let us = client("216.160.83.56", 32);
    // The defaults are 2 (weight 3) and 3 (weight 1); with 2 down only 3 answers, with
    // both up the shares are 3:1 (chi-square, 1 degree of freedom, p = 0.001: 10.83).
    let mut counts = [0usize; 4];
    for _ in 0..4000 {
        let mut r = route(&group, Family::V4, &us);
        counts[usize::from(pick(&mut r, |_| true, 1, &mut rng).origins()[0])] += 1;
    }
    let expected = [3000.0, 1000.0];
    let chi: f64 = [counts[2], counts[3]]
        .iter()
        .zip(expected)
        .map(|(&o, e)| (o as f64 - e).powi(2) / e)
        .sum();
    assert!(chi < 10.83, "{counts:?}");
    for _ in 0..200 {
        let mut r = route(&group, Family::V4, &us);
        assert_eq!(pick(&mut r, |i| i != 2, 1, &mut rng).origins(), [3]);
    }
}
