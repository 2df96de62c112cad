//! The ECS scope is exact (SPEC §12): for sample clients, the scope a region group
//! answers with is the widest aligned prefix around the client in which every address
//! is answered from the same origins, and a prefix one bit wider holds an address that
//! is not; never longer than the query's source prefix.
//!
//! Expectations come from MaxMind's JSON sources of the test databases
//! (tests/data/GeoIP2-Country-Test.json, GeoLite2-ASN-Test.json) and the group's rules,
//! read here with a model of a MaxMind database written for this test: the most specific
//! network holding an address decides; IPv4 networks sit at `::/96`, and `::ffff:0:0/96`,
//! `2001::/32` (Teredo) and `2002::/16` (6to4) lead to the IPv4 networks as MaxMind's
//! writer aliases them. Nothing of lbdns's scope table is used to compute them.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;

use lbdns::geoip::{Continent, Country, GeoIp};
use lbdns::select::{Client, CompiledGroup, Family, pick, route};
use lbdns::site::{Origin, OriginGroup, Policy, Target};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde_json::Value;

/// A network of a JSON source, as an inclusive range of the IPv6 tree.
struct Network {
    first: u128,
    last: u128,
    prefix: u32,
    record: Value,
}

/// A database as MaxMind's JSON source describes it.
struct Source {
    /// Most specific first.
    networks: Vec<Network>,
}

/// IPv4 address `a` where a MaxMind IPv6 tree keeps it.
fn v4_in_tree(a: u32) -> u128 {
    u128::from(a)
}

/// The tree address an IPv6 client is looked up at: the IPv4 subtree through the aliases.
fn alias(a: u128) -> u128 {
    const MAPPED: u128 = 0xffff << 32;
    if a >> 32 == MAPPED >> 32 {
        return a & 0xffff_ffff;
    }
    if a >> 96 == 0x2001_0000 {
        return (a >> 64) & 0xffff_ffff;
    }
    if a >> 112 == 0x2002 {
        return (a >> 80) & 0xffff_ffff;
    }
    a
}

fn range(net: &str) -> (u128, u128, u32) {
    let (addr, len) = net.split_once('/').unwrap();
    let len: u32 = len.parse().unwrap();
    let (first, prefix) = match addr.parse::<IpAddr>().unwrap() {
        IpAddr::V4(a) => (v4_in_tree(u32::from(a)), len + 96),
        IpAddr::V6(a) => (u128::from(a), len),
    };
    // Sources may set host bits ("::74.209.24.0/116"): the network holds them.
    let host = u128::MAX.checked_shr(prefix).unwrap_or(0);
    (first & !host, first | host, prefix)
}

impl Source {
    fn read(file: &str) -> Self {
        let text = common::read(&common::repo().join("tests/data").join(file));
        let json: Value = serde_json::from_str(&text).unwrap();
        let mut networks: Vec<Network> = json
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                let (net, record) = entry.as_object().unwrap().iter().next().unwrap();
                let (first, last, prefix) = range(net);
                Network {
                    first,
                    last,
                    prefix,
                    record: record.clone(),
                }
            })
            .collect();
        networks.sort_by_key(|n| std::cmp::Reverse(n.prefix));
        Self { networks }
    }

    /// The record of the network holding tree address `a`.
    fn record(&self, a: u128) -> Option<&Value> {
        self.networks
            .iter()
            .find(|n| n.first <= a && a <= n.last)
            .map(|n| &n.record)
    }

    /// Where the record may change, in the client space of IPv4 (`v6` false) or IPv6.
    fn cuts(&self, v6: bool, out: &mut BTreeSet<u128>) {
        for n in &self.networks {
            let mut ranges = vec![];
            match v6 {
                false if n.last <= 0xffff_ffff => ranges.push((n.first, n.last)),
                false => {}
                true => {
                    ranges.push((n.first, n.last));
                    if n.last <= 0xffff_ffff {
                        ranges.push((0xffff << 32 | n.first, 0xffff << 32 | n.last));
                        let teredo = |a: u128| 0x2001_0000u128 << 96 | a << 64;
                        ranges.push((teredo(n.first), teredo(n.last) | ((1 << 64) - 1)));
                        let six_to_four = |a: u128| 0x2002u128 << 112 | a << 80;
                        ranges.push((six_to_four(n.first), six_to_four(n.last) | ((1 << 80) - 1)));
                    }
                }
            }
            for (first, last) in ranges {
                out.insert(first);
                if let Some(after) = last.checked_add(1) {
                    out.insert(after);
                }
            }
        }
    }
}

fn origin(addr: &str) -> Origin {
    Origin {
        target: Target::Ip(addr.parse().unwrap()),
        weight: 1,
        countries: Vec::new(),
        continents: Vec::new(),
        subnets: Vec::new(),
        asns: Vec::new(),
    }
}

/// Every region key at once: countries that share origins (GB and SE; CN and KR),
/// continents, nested subnet rules over GeoIP and ASN networks, and ASNs.
fn origins() -> Vec<Origin> {
    let mut o: Vec<Origin> = (1..=9)
        .map(|i| origin(&format!("198.51.100.{i}")))
        .collect();
    let countries = |codes: &[&str]| codes.iter().map(|c| Country::parse(c).unwrap()).collect();
    o[0].countries = countries(&["GB", "SE"]);
    o[1].countries = countries(&["CN", "KR"]);
    o[2].continents = vec![Continent::parse("EU").unwrap()];
    o[3].continents = vec![Continent::parse("AS").unwrap()];
    let nets = |list: &[&str]| list.iter().map(|n| n.parse().unwrap()).collect();
    o[4].subnets = nets(&["81.2.69.128/26", "10.0.0.0/8", "2001:218:8000::/33"]);
    o[5].subnets = nets(&["10.1.0.0/16", "175.16.0.0/16", "12.81.0.0/17"]);
    // Neighbours of different ASes: 70.192.0.0/11 (6167) and 70.224.0.0/11 (7018),
    // 71.134.76.0/23 (7018) and 71.134.78.0/23 (7132), 2400::/20 (4766) and
    // 2400:1000::/20 (237).
    o[6].asns = vec![6167, 7018, 7132, 15169];
    o[7].asns = vec![237, 4766];
    o
}

/// The group's origin sets for one client, from the sources and the rules: subnet,
/// ASN, country, continent.
struct Model {
    origins: Vec<Origin>,
    countries: Source,
    asns: Source,
}

type Sets = [BTreeSet<usize>; 4];

impl Model {
    fn sets(&self, addr: u128, v6: bool) -> Sets {
        let tree = match v6 {
            true => alias(addr),
            false => addr,
        };
        let client: IpAddr = match v6 {
            true => IpAddr::from(addr.to_be_bytes()),
            false => IpAddr::from((addr as u32).to_be_bytes()),
        };
        // The most specific rule holding the client, with every origin listing it.
        let rule = self
            .origins
            .iter()
            .flat_map(|o| o.subnets.iter())
            .filter(|n| n.contains(&client))
            .max_by_key(|n| n.prefix_len());
        let subnet = (0..self.origins.len())
            .filter(|&i| rule.is_some_and(|r| self.origins[i].subnets.contains(r)))
            .collect();
        let record = self.countries.record(tree);
        let code = |field: &str, key: &str| -> Option<String> {
            record
                .and_then(|r| r[field][key].as_str())
                .map(str::to_owned)
        };
        let (country, continent) = (code("country", "iso_code"), code("continent", "code"));
        let asn = self
            .asns
            .record(tree)
            .and_then(|r| r["autonomous_system_number"].as_u64());
        let holders = |has: &dyn Fn(&Origin) -> bool| -> BTreeSet<usize> {
            (0..self.origins.len())
                .filter(|&i| has(&self.origins[i]))
                .collect()
        };
        [
            subnet,
            holders(&|o| asn.is_some_and(|a| o.asns.contains(&(a as u32)))),
            holders(&|o| {
                country
                    .as_deref()
                    .is_some_and(|c| o.countries.iter().any(|x| x.as_str() == c))
            }),
            holders(&|o| {
                continent
                    .as_deref()
                    .is_some_and(|c| o.continents.iter().any(|x| x.code() == c))
            }),
        ]
    }

    /// The sets a client's answer depends on: up to the first level with an origin.
    fn deciding(&self, addr: u128, v6: bool) -> Vec<BTreeSet<usize>> {
        let sets = self.sets(addr, v6);
        let depth = sets.iter().position(|s| !s.is_empty()).unwrap_or(3);
        sets[..=depth].to_vec()
    }
}

/// The model's scope for `addr`: the shortest prefix whose every address has the same
/// deciding sets, by checking the address at each cut inside it (the sets change only
/// at cuts), and that one bit wider does not.
fn expected_scope(model: &Model, cuts: &[u128], addr: u128, v6: bool) -> u8 {
    let bits: u32 = if v6 { 128 } else { 32 };
    let want = model.deciding(addr, v6);
    let uniform = |prefix: u32| {
        let host = u128::MAX.checked_shr(128 - bits + prefix).unwrap_or(0);
        let (lo, hi) = (addr & !host, addr | host);
        let start = cuts.partition_point(|&c| c <= lo);
        let same = |a: u128| model.sets(a, v6)[..want.len()].iter().eq(want.iter());
        same(lo)
            && cuts[start..]
                .iter()
                .take_while(|&&c| c <= hi)
                .all(|&c| same(c))
    };
    // Holding fewer addresses keeps a block uniform: the shortest uniform prefix by
    // bisection.
    let (mut lo, mut hi) = (0, bits);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match uniform(mid) {
            true => hi = mid,
            false => lo = mid + 1,
        }
    }
    assert!(uniform(lo));
    assert!(
        lo == 0 || !uniform(lo - 1),
        "{addr:x}: /{} is uniform too",
        lo - 1
    );
    lo as u8
}

#[test]
fn region_scopes_are_the_widest_prefix_with_the_same_origins() {
    let dir = common::repo().join("tests/data");
    let geoip = GeoIp::open_files(
        Some(&dir.join("GeoIP2-Country-Test.mmdb")),
        Some(&dir.join("GeoLite2-ASN-Test.mmdb")),
        None,
    )
    .unwrap()
    .unwrap();
    let origins = origins();
    let group = OriginGroup {
        name: "geo".into(),
        policy: Policy::Region,
        origins: origins.clone(),
        health_check: None,
        fallback: Default::default(),
    };
    let compiled = CompiledGroup::new(&group, Some(&geoip));
    let model = Model {
        origins,
        countries: Source::read("GeoIP2-Country-Test.json"),
        asns: Source::read("GeoLite2-ASN-Test.json"),
    };
    let mut rng = SmallRng::seed_from_u64(16);
    let mut checked = 0;
    for v6 in [false, true] {
        let mut cuts = BTreeSet::from([0u128]);
        model.countries.cuts(v6, &mut cuts);
        model.asns.cuts(v6, &mut cuts);
        for net in model.origins.iter().flat_map(|o| o.subnets.iter()) {
            if net.network().is_ipv6() == v6 {
                let first = match net.network() {
                    IpAddr::V4(a) => u128::from(u32::from(a)),
                    IpAddr::V6(a) => u128::from(a),
                };
                let size =
                    u128::MAX.checked_shr(u32::from(net.prefix_len()) + if v6 { 0 } else { 96 });
                cuts.insert(first);
                cuts.insert(first + size.unwrap_or(0) + 1);
            }
        }
        if v6 {
            // The alias regions themselves.
            for (first, len) in [
                (0xffffu128 << 32, 96),
                (0x2001_0000 << 96, 32),
                (0x2002 << 112, 16),
            ] {
                cuts.insert(first);
                cuts.insert(first + (1u128 << (128 - len)));
            }
        }
        let max: u128 = if v6 { u128::MAX } else { u128::from(u32::MAX) };
        let cuts: Vec<u128> = cuts.into_iter().filter(|&c| c <= max).collect();
        // Each cut, the address before it, and random addresses (IPv6 ones in 2000::/3
        // and the alias regions, where the databases have data).
        let mut samples: Vec<u128> = cuts
            .iter()
            .flat_map(|&c| [c, c.saturating_sub(1)])
            .collect();
        for _ in 0..300 {
            samples.push(match v6 {
                false => u128::from(rng.random::<u32>()),
                true => match rng.random_range(0..4) {
                    0 => 0x2000u128 << 112 | rng.random::<u128>() >> 3,
                    1 => 0xffff << 32 | u128::from(rng.random::<u32>()),
                    2 => 0x2002u128 << 112 | rng.random::<u128>() >> 16,
                    _ => rng.random::<u128>(),
                },
            });
        }
        for addr in samples {
            let client_addr = match v6 {
                true => IpAddr::from(addr.to_be_bytes()),
                false => IpAddr::from((addr as u32).to_be_bytes()),
            };
            let full = if v6 { 128 } else { 32 };
            let want = expected_scope(&model, &cuts, addr, v6);
            let client = Client {
                addr: client_addr,
                source_prefix: full,
            };
            let selection = pick(
                &mut route(&compiled, Family::V4, &client),
                |_| true,
                1,
                &mut rng,
            );
            assert_eq!(selection.scope, want, "{client_addr}");
            // The answer comes from the deciding level's origins.
            let deciding = model.deciding(addr, v6);
            let from = deciding.last().unwrap();
            let picked = usize::from(selection.origins()[0]);
            assert!(
                from.is_empty() || from.contains(&picked),
                "{client_addr}: origin {picked}, not one of {from:?}"
            );
            // An ECS source prefix shorter than the scope caps it (RFC 7871 §7.2.1).
            if want > 0 {
                let source_prefix = rng.random_range(0..want);
                let host = u128::MAX.checked_shr(128 - u32::from(full) + u32::from(source_prefix));
                let masked = addr & !host.unwrap_or(0) & if v6 { u128::MAX } else { 0xffff_ffff };
                let client = Client {
                    addr: match v6 {
                        true => IpAddr::from(masked.to_be_bytes()),
                        false => IpAddr::from((masked as u32).to_be_bytes()),
                    },
                    source_prefix,
                };
                let s = pick(
                    &mut route(&compiled, Family::V4, &client),
                    |_| true,
                    1,
                    &mut rng,
                );
                assert!(
                    s.scope <= source_prefix,
                    "{client_addr}/{source_prefix}: /{}",
                    s.scope
                );
                let want = expected_scope(&model, &cuts, masked, v6).min(source_prefix);
                assert_eq!(s.scope, want, "{client_addr}/{source_prefix}");
            }
            checked += 1;
        }
    }
    assert!(checked > 4000, "{checked} samples");
}
