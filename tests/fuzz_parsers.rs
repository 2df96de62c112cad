//! In-process mutational fuzzing of the two file readers an operator (or a careless edit)
//! feeds: zone files (`zone::parse`) and site files (`site::parse` then `site::validate`).
//! Every mutated text must come back as a value or an error, never a panic; an accepted
//! zone must compile into a snapshot with an accepted site, as a reload would do.
//!
//! The seeds are the shipped example and a zone with every kind of record the reader
//! knows. `LBDNS_FUZZ_ITERATIONS` sets the count (default 3,000 per reader, a few seconds
//! in debug); `LBDNS_FUZZ_SEED` the seed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hickory_proto::rr::Name;
use lbdns::health::Health;
use lbdns::site;
use lbdns::snapshot::Snapshot;
use lbdns::zone;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// Debug builds read about 1,000 zone texts and 800 site files a second.
const DEFAULT_ITERATIONS: u64 = 3_000;

/// Pieces a mutation inserts: the tokens the readers treat specially.
const TOKENS: &[&str] = &[
    "(",
    ")",
    ";",
    "\"",
    "\\",
    "\\#",
    "\\065",
    "\\.",
    "$ORIGIN",
    "$TTL",
    "$INCLUDE",
    "@",
    "*",
    "\n",
    " ",
    "\t",
    "IN",
    "CH",
    "TYPE65280",
    "CLASS1",
    "SOA",
    "NS",
    "CNAME",
    "DS",
    "RRSIG",
    "NSEC",
    "NSEC3",
    "TXT",
    "MX",
    "SRV",
    "1h30m",
    "4294967295",
    "99999999999",
    "0",
    "-1",
    "::",
    "256.1.1.1",
    "a.",
    "..",
    ":",
    "-",
    "{",
    "}",
    "[",
    "]",
    "- ",
    "tasks:",
    "origin_groups:",
    "secondaries:",
    "weight:",
    "health_check:",
    "&a",
    "*a",
    "!!str",
    "~",
    "null",
    "\u{feff}",
    "é",
    "\u{0}",
];

fn iterations() -> u64 {
    std::env::var("LBDNS_FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_ITERATIONS)
}

fn rng() -> SmallRng {
    let seed = std::env::var("LBDNS_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f00d);
    SmallRng::seed_from_u64(seed)
}

/// `text` with one to four mutations at char boundaries: a token inserted, a span
/// deleted or duplicated, a line swapped with another.
fn mutate(text: &str, rng: &mut SmallRng) -> String {
    let mut out = text.to_owned();
    for _ in 0..rng.random_range(1..=4) {
        let boundaries: Vec<usize> = (0..=out.len())
            .filter(|&i| out.is_char_boundary(i))
            .collect();
        let at = boundaries[rng.random_range(0..boundaries.len())];
        let to = boundaries[rng.random_range(0..boundaries.len())].max(at);
        let to = to.min(at + 40).min(out.len());
        let to = (to..=out.len())
            .find(|&i| out.is_char_boundary(i))
            .unwrap_or(out.len());
        match rng.random_range(0..4) {
            0 => out.insert_str(at, TOKENS[rng.random_range(0..TOKENS.len())]),
            1 => out.replace_range(at..to, ""),
            2 => {
                let span = out[at..to].to_owned();
                out.insert_str(to, &span);
            }
            _ => {
                let mut lines: Vec<&str> = out.lines().collect();
                if lines.len() > 1 {
                    let (a, b) = (
                        rng.random_range(0..lines.len()),
                        rng.random_range(0..lines.len()),
                    );
                    lines.swap(a, b);
                }
                out = lines.join("\n");
            }
        }
    }
    out
}

/// The tests' copy of the shipped example (tests/data/example), never the tracked
/// `zones/`, which the README's walkthrough changes.
fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/example")
}

const RICH_ZONE: &str = "$ORIGIN example.com.\n$TTL 1h\n\
    @ IN SOA ns1 hostmaster ( 1 7200 900 1209600 300 )\n\
    @ NS ns1\n@ MX 10 mail\n@ TXT \"a\\065b\" \"two words\" \"semi;colon\"\n\
    ns1 A 192.0.2.53\nmail AAAA 2001:db8::25\nwww CNAME ns1\n*.w A 192.0.2.70\n\
    sub NS ns.sub\nns.sub A 192.0.2.54\n\
    sub DS 60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118\n\
    _sip._tcp SRV 0 5 5060 ns1\nopaque TYPE65280 \\# 4 0a000001\n\
    a\\046b A 192.0.2.9\n@ CAA 0 issue \"ca.example.net\"\n";

#[test]
fn mutated_zone_files_are_read_or_refused_never_a_panic() {
    let origin = Name::from_ascii("example.com.").unwrap();
    let shipped = std::fs::read_to_string(example_dir().join("zones/example.com.zone")).unwrap();
    let seeds = [shipped.as_str(), RICH_ZONE];
    let mut rng = rng();
    let (mut accepted, mut refused) = (0u64, 0u64);
    for i in 0..iterations() {
        let text = mutate(seeds[(i % 2) as usize], &mut rng);
        let parsed =
            std::panic::catch_unwind(|| zone::parse(&text, Path::new("fuzz.zone"), &origin));
        match parsed {
            Ok(Ok(data)) => {
                accepted += 1;
                // What a reload does next: compile it.
                Snapshot::compile(&[Arc::new(data)], &[], None, &Health::default())
                    .unwrap_or_else(|e| panic!("an accepted zone does not compile: {e:?}\n{text}"));
            }
            Ok(Err(error)) => {
                refused += 1;
                let message = error.to_string();
                assert!(
                    message.starts_with("fuzz.zone"),
                    "an error names the file: {message}"
                );
            }
            Err(_) => panic!("zone::parse panicked on:\n{text}"),
        }
    }
    eprintln!("zone files: {accepted} accepted, {refused} refused");
    assert!(
        accepted > 0 && refused > 0,
        "the mutations reach both outcomes"
    );
}

#[test]
fn mutated_site_files_are_read_or_refused_never_a_panic() {
    let origin = Name::from_ascii("example.com.").unwrap();
    let shipped = std::fs::read_to_string(example_dir().join("zones/example.com.lb.yaml")).unwrap();
    let mut rng = rng();
    let (mut accepted, mut refused) = (0u64, 0u64);
    for _ in 0..iterations() {
        let text = mutate(&shipped, &mut rng);
        let outcome = std::panic::catch_unwind(|| {
            site::parse(&text).map(|spec| site::validate(&origin, &spec).is_ok())
        });
        match outcome {
            Ok(Ok(true)) => accepted += 1,
            Ok(Ok(false)) | Ok(Err(_)) => refused += 1,
            Err(_) => panic!("the site reader panicked on:\n{text}"),
        }
    }
    eprintln!("site files: {accepted} accepted, {refused} refused");
    assert!(
        accepted > 0 && refused > 0,
        "the mutations reach both outcomes"
    );
}
