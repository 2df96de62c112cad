//! `POST /v1/sites/{site}/preview` (SPEC §12 "Preview") against the real binary: the
//! shares a proposed change would give each origin are the shares real queries get once
//! the change is made, and the preview itself changes nothing.
//!
//! Bounds: the preview estimates each share from 60,000 routed draws (standard deviation
//! at most 0.0021) and the test measures it from 3,000 queries with ECS addresses drawn
//! uniformly from a seeded generator (at most 0.0092). A share off by more than 0.06 is
//! 5.4 standard deviations of the two together: below 1e-7 for each of the 8 shares
//! compared, so a correct server fails this test less than once in a million runs.

mod common;

use std::collections::BTreeMap;

use common::*;
use hickory_proto::rr::RecordType;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde_json::Value;

const ZONE: &str = "\
$ORIGIN example.com.
$TTL 300
@   IN SOA ns1 hostmaster 1 7200 900 1209600 300
@   NS  ns1
ns1 A   192.0.2.53
";

/// CN and Europe have their own origins; everyone else gets the two defaults, 1:1.
const SITE: &str = "\
origin_groups:
  geo:
    policy: region
    origins:
    - address: 192.0.2.1
      countries: [CN]
    - address: 192.0.2.2
      continents: [EU]
    - address: 192.0.2.8
    - address: 192.0.2.9
tasks:
- hostname: geo.example.com
  origin_group: geo
";

/// The change previewed, then made: the defaults at 1:3.
const CHANGE: &str = r#"{"policy": "region", "origins": [
  {"address": "192.0.2.1", "countries": ["CN"]},
  {"address": "192.0.2.2", "continents": ["EU"]},
  {"address": "192.0.2.8", "weight": 1},
  {"address": "192.0.2.9", "weight": 3}]}"#;

const QUERIES: usize = 3000;
const TOLERANCE: f64 = 0.06;

/// Each origin's share of answers to `QUERIES` queries from uniformly drawn clients of
/// one family, given by ECS.
fn measured(server: &Server, v6: bool, rng: &mut SmallRng) -> BTreeMap<String, f64> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..QUERIES {
        let ecs = match v6 {
            false => format!("{}/32", std::net::Ipv4Addr::from(rng.random::<u32>())),
            true => format!("{}/128", std::net::Ipv6Addr::from(rng.random::<u128>())),
        };
        let reply = server.udp(&query_edns(
            "geo.example.com.",
            RecordType::A,
            1232,
            Some(&ecs),
        ));
        let got = answers(&reply);
        assert_eq!(got.len(), 1, "{ecs}: {reply}");
        *counts.entry(got[0].clone()).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(origin, n)| (origin, n as f64 / QUERIES as f64))
        .collect()
}

#[test]
fn preview_shares_are_the_shares_real_queries_get_after_the_change() {
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", SITE)]);
    let server = site.serve();
    let body = format!(r#"{{"origin_groups": {{"geo": {CHANGE}}}}}"#);
    let (status, text) = server
        .http("POST", "/v1/sites/example.com/preview", Some(&body))
        .expect("preview answered");
    assert_eq!(status, 200, "{text}");
    let preview: Value = serde_json::from_str(&text).unwrap();
    let entry = preview["hostnames"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["hostname"] == "geo.example.com." && e["type"] == "A")
        .unwrap_or_else(|| panic!("no geo.example.com A: {preview:#}"));
    let share = |origin: &str, key: &str, when: &str| -> f64 {
        entry["origins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["origin"] == origin)
            .map_or(0.0, |o| o[key][when].as_f64().unwrap())
    };
    // The change moves a quarter of the default clients: 0.5 -> 0.25 and 0.5 -> 0.75
    // of them, most of the address space (MaxMind's test database holds few networks).
    assert!(
        share("192.0.2.8", "v4_clients", "before") - share("192.0.2.8", "v4_clients", "after")
            > 0.2
    );
    // Nothing changed: the group is as the file has it.
    let (_, group) = server
        .http("GET", "/v1/sites/example.com/origin-groups/geo", None)
        .unwrap();
    let group: Value = serde_json::from_str(&group).unwrap();
    let weights: Vec<u64> = group["origins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["weight"].as_u64().unwrap())
        .collect();
    assert_eq!(weights, [1, 1, 1, 1], "{group}");

    let (status, text) = server
        .http(
            "PUT",
            "/v1/sites/example.com/origin-groups/geo",
            Some(CHANGE),
        )
        .unwrap();
    assert_eq!(status, 200, "{text}");
    let mut rng = SmallRng::seed_from_u64(0x9e7);
    // The PUT answers once the change is served.
    for (v6, key) in [(false, "v4_clients"), (true, "v6_clients")] {
        let got = measured(&server, v6, &mut rng);
        for origin in ["192.0.2.1", "192.0.2.2", "192.0.2.8", "192.0.2.9"] {
            let want = share(origin, key, "after");
            let seen = got.get(origin).copied().unwrap_or(0.0);
            assert!(
                (seen - want).abs() <= TOLERANCE,
                "{origin} {key}: preview {want}, measured {seen} ({got:?})"
            );
        }
    }
}
