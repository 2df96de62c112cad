//! Tasks in a zone lbdns signs (SPEC §11, issue 15 item 3): every answer a task can give
//! validates, judged by BIND's `delv` (trust anchor: the DS `lbdns keys ds` prints) and by
//! unbound as a validating resolver in front of lbdns, passing the client's ECS on, never
//! by lbdns's own code. One server per algorithm serves every case.
//!
//! A zone signed elsewhere (by `dnssec-signzone`) has its tasks signed once its ZSK is
//! imported, and refused before.
//!
//! Needs delv and dig (bind9-dnsutils), dnssec-keygen and dnssec-signzone (bind9-utils)
//! and unbound: the tests fail, they do not skip, without them.

mod common;
mod signing;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const ZONE: &str = "$ORIGIN example.com.
$TTL 3600
@ IN SOA ns1 hostmaster 1 7200 900 1209600 300
@ NS ns1
ns1 A 127.0.0.1
www A 192.0.2.80
mixed A 192.0.2.81
mixed TXT \"zone data beside a task\"
alias CNAME lb
tocdn CNAME cdn
*.wild A 192.0.2.82
";

/// The site file: weighted groups (one origin alone, or two of three), a region group
/// with every level, a CNAME group, and tasks at the apex, at a name with zone data of its
/// own, below an empty non-terminal, beside a wildcard and at a wildcard. With compact
/// denial, also a group whose only origin is down (its `tcp` check on `dark_port`, where
/// nothing listens) answering NODATA (`when_all_down: nodata`), which compact denial can
/// prove.
fn site_yaml(algorithm: &str, denial: &str, dark_port: u16) -> String {
    let (dark_group, dark_task) = match denial {
        "compact" => (
            format!(
                "  dark:
    when_all_down: nodata
    health_check: {{type: tcp, port: {dark_port}, interval: 0.3, timeout: 0.2, fall: 1, rise: 2}}
    origins:
      - address: 127.0.0.1
"
            ),
            "  - { id: dark, hostname: dark.example.com, origin_group: dark, ttl: 30 }\n",
        ),
        _ => (String::new(), ""),
    };
    format!(
        "dnssec:
  algorithm: {algorithm}
  denial: {denial}
origin_groups:
{dark_group}
  web:
    origins:
      - address: 192.0.2.10
      - address: 192.0.2.11
      - address: 192.0.2.12
  geo:
    policy: region
    origins:
      - address: 198.51.100.3
        subnets: [203.0.113.0/24]
      - address: 198.51.100.4
        asns: [7018]
      - address: 198.51.100.1
        countries: [CN]
      - address: 198.51.100.2
        continents: [EU]
      - address: 198.51.100.9
  names:
    origins:
      - address: www.example.com.
tasks:
  - {{ id: lb, hostname: lb.example.com, origin_group: web, ttl: 30 }}
  - {{ id: pair, hostname: pair.example.com, origin_group: web, ttl: 30, answers: 2 }}
  - {{ id: geo, hostname: geo.example.com, origin_group: geo, ttl: 30 }}
  - {{ id: cdn, hostname: cdn.example.com, origin_group: names, ttl: 30 }}
  - {{ id: mixed, hostname: mixed.example.com, origin_group: web, ttl: 30 }}
  - {{ id: deep, hostname: x.deep.example.com, origin_group: web, ttl: 30 }}
  - {{ id: wild, hostname: t.wild.example.com, origin_group: web, ttl: 30 }}
  - {{ id: apex, hostname: example.com, origin_group: web, ttl: 30 }}
  - {{ id: star, hostname: \"*.any.example.com\", origin_group: web, ttl: 30 }}
{dark_task}"
    )
}

/// Every kind of answer near the tasks, with what validating it concludes.
const CASES: &[(&str, &str, Expect)] = &[
    // Task answers: one origin, a set of two, a CNAME, at the apex, at a name with zone
    // data, below an empty non-terminal, beside a wildcard.
    ("lb.example.com.", "A", Expect::Secure),
    ("pair.example.com.", "A", Expect::Secure),
    ("cdn.example.com.", "CNAME", Expect::Secure),
    ("cdn.example.com.", "A", Expect::Secure),
    ("example.com.", "A", Expect::Secure),
    ("mixed.example.com.", "A", Expect::Secure),
    ("x.deep.example.com.", "A", Expect::Secure),
    ("t.wild.example.com.", "A", Expect::Secure),
    // A wildcard task: its expansion, with the proof that no closer name exists, and
    // NODATA through it.
    ("a.any.example.com.", "A", Expect::Secure),
    ("b.c.any.example.com.", "A", Expect::Secure),
    ("a.any.example.com.", "MX", Expect::SecureDenial),
    ("any.example.com.", "A", Expect::SecureDenial),
    // CNAMEs from the zone into tasks.
    ("alias.example.com.", "A", Expect::Secure),
    ("tocdn.example.com.", "A", Expect::Secure),
    // Zone data beside and below task names.
    ("mixed.example.com.", "TXT", Expect::Secure),
    ("example.com.", "SOA", Expect::Secure),
    ("www.example.com.", "A", Expect::Secure),
    ("u.wild.example.com.", "A", Expect::Secure),
    // NODATA at task names: a type the task does not answer, the type it hides.
    ("lb.example.com.", "AAAA", Expect::SecureDenial),
    ("lb.example.com.", "MX", Expect::SecureDenial),
    ("lb.example.com.", "CNAME", Expect::SecureDenial),
    ("mixed.example.com.", "MX", Expect::SecureDenial),
    ("example.com.", "AAAA", Expect::SecureDenial),
    ("t.wild.example.com.", "TXT", Expect::SecureDenial),
    // The empty non-terminal above a task, and names near task names that do not exist.
    ("deep.example.com.", "A", Expect::SecureDenial),
    ("nope.lb.example.com.", "A", Expect::SecureDenial),
    ("lc.example.com.", "A", Expect::SecureDenial),
    ("y.deep.example.com.", "A", Expect::SecureDenial),
    ("zzz.example.com.", "A", Expect::SecureDenial),
    ("a.example.com.", "A", Expect::SecureDenial),
];

/// A delv trust anchor made of the DS `lbdns keys ds` prints.
fn delv_anchor(site: &Site, ds: &str) -> PathBuf {
    ds_anchor_file(site.path().join("delv.anchor"), ds)
}

fn delv(server: &Server, anchor: &Path, name: &str, rtype: &str) -> String {
    common::delv(server.addr, anchor, "example.com", name, rtype)
}

/// The addresses of the answer delv printed as validated.
fn addresses(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(3) == Some(&"A")).then(|| f[4].to_owned())
        })
        .collect()
}

/// unbound validating from the zone's DS, with ECS passed on to lbdns.
fn validating_unbound(server: &Server, ds: &str) -> Unbound {
    Unbound::start(
        server.addr,
        &["example.com"],
        true,
        Some(ds),
        ("www.example.com", "192.0.2.80"),
    )
}

/// Whether unbound's answer has the AD bit (validated) and `status`.
fn validated(out: &str, status: &str) -> bool {
    let flags = out
        .lines()
        .find_map(|l| l.strip_prefix(";; flags: "))
        .and_then(|l| l.split(';').next())
        .unwrap_or_default();
    flags.split_whitespace().any(|f| f == "ad") && out.contains(&format!("status: {status}"))
}

/// Every check on one server signing with `algorithm`, denying as `denial` says.
fn every_task_answer_validates(algorithm: &str, denial: &str) {
    let dark_port = free_port().port();
    let site = Site::new(&[
        ("example.com.zone", ZONE),
        (
            "example.com.lb.yaml",
            &site_yaml(algorithm, denial, dark_port),
        ),
    ]);
    let asn_db = repo().join("tests/data/GeoLite2-ASN-Test.mmdb");
    let server = site.serve_with(&["--asn-db", asn_db.to_str().unwrap()]);
    let ds = keys_ds(&site, "example.com");
    let anchor = delv_anchor(&site, &ds);
    let mut wrong = Vec::new();

    for &(name, rtype, expect) in CASES {
        let out = delv(&server, &anchor, name, rtype);
        if !expect.concluded_by_delv(&out) {
            wrong.push(format!("{name} {rtype}, expected {expect:?}:\n{out}"));
        }
    }
    if denial == "compact" {
        // The whole chain down, NODATA: its NSEC, made for that answer, lists no A.
        wait_until(
            "dark.example.com answering NODATA, its origin down",
            || server.dig(&["dark.example.com", "A"]),
            || {
                let out = server.dig(&["dark.example.com", "A"]);
                out.contains("status: NOERROR") && out.contains("ANSWER: 0")
            },
        );
        let out = delv(&server, &anchor, "dark.example.com.", "A");
        if !Expect::SecureDenial.concluded_by_delv(&out) {
            wrong.push(format!(
                "dark A, all down, expected a validated NODATA:\n{out}"
            ));
        }
    }

    // Weighted: every origin, alone and in each pair, validates (bounded: a set missing
    // after 60 draws of 3 equally likely has odds below 1e-9).
    for (name, size, sets) in [("lb.example.com.", 1, 3), ("pair.example.com.", 2, 3)] {
        let mut seen = BTreeSet::new();
        for _ in 0..60 {
            let out = delv(&server, &anchor, name, "A");
            let mut answer = addresses(&out);
            answer.sort();
            if !Expect::Secure.concluded_by_delv(&out) || answer.len() != size {
                wrong.push(format!("{name} A, expected {size} validated:\n{out}"));
                break;
            }
            seen.insert(answer);
            if seen.len() == sets {
                break;
            }
        }
        if seen.len() != sets {
            wrong.push(format!("{name}: only {seen:?} seen validated"));
        }
    }

    // Region, through a validating resolver passing the client's subnet: each level.
    let unbound = validating_unbound(&server, &ds);
    for (subnet, expected) in [
        ("203.0.113.0/24", "198.51.100.3"),
        ("12.81.100.0/24", "198.51.100.4"),
        ("175.16.199.0/24", "198.51.100.1"),
        ("81.2.69.160/27", "198.51.100.2"),
        ("216.160.83.0/24", "198.51.100.9"),
    ] {
        let ecs = format!("+subnet={subnet}");
        let out = unbound.dig(&["geo.example.com", "A", "+dnssec", &ecs]);
        if !validated(&out, "NOERROR") || !out.contains(expected) {
            wrong.push(format!(
                "unbound, geo from {subnet}: expected {expected}:\n{out}"
            ));
        }
    }
    for &(name, rtype, expect) in CASES {
        let out = unbound.dig(&[name, rtype, "+dnssec"]);
        let ok = match expect {
            Expect::Secure => validated(&out, "NOERROR"),
            _ => validated(&out, "NOERROR") || validated(&out, "NXDOMAIN"),
        };
        if !ok {
            wrong.push(format!(
                "unbound {name} {rtype}, expected {expect:?}:\n{out}"
            ));
        }
    }

    // NSEC3: the NODATA at a task name and the NXDOMAIN below one are proven by NSEC3
    // records alone.
    if denial == "nsec3" {
        for (name, rtype) in [("lb.example.com", "MX"), ("nope.lb.example.com", "A")] {
            let out = server.dig(&["+dnssec", "+norec", name, rtype]);
            let proofs = denial_types(&out);
            if proofs != BTreeSet::from(["NSEC3"]) {
                wrong.push(format!("{name} {rtype} proven by {proofs:?}:\n{out}"));
            }
        }
    }

    // A task just created answers signed, its name in the denial chain; just deleted,
    // its name is denied again.
    let body =
        r#"{"id": "fresh", "hostname": "fresh.example.com", "origin_group": "web", "ttl": 30}"#;
    let (status, reply) = server
        .http("POST", "/v1/sites/example.com/tasks", Some(body))
        .expect("the API answers");
    assert_eq!(status, 201, "{reply}");
    for (rtype, expect) in [("A", Expect::Secure), ("TXT", Expect::SecureDenial)] {
        let out = delv(&server, &anchor, "fresh.example.com.", rtype);
        if !expect.concluded_by_delv(&out) {
            wrong.push(format!(
                "created fresh {rtype}, expected {expect:?}:\n{out}"
            ));
        }
    }
    // A task is deleted once disabled: either way its name is gone from the answers.
    for (method, path) in [
        ("POST", "/v1/sites/example.com/tasks/fresh/disable"),
        ("DELETE", "/v1/sites/example.com/tasks/fresh"),
    ] {
        let (status, reply) = server.http(method, path, None).expect("the API answers");
        assert!(
            matches!(status, 200 | 204),
            "{method} {path}: {status} {reply}"
        );
        let out = delv(&server, &anchor, "fresh.example.com.", "A");
        // Compact denial says NXDOMAIN with NXNAME (type 128) in the NSEC.
        let nxdomain = match denial {
            "compact" => "TYPE128",
            _ => "NXDOMAIN",
        };
        if !Expect::SecureDenial.concluded_by_delv(&out) || !out.contains(nxdomain) {
            wrong.push(format!(
                "fresh A after {method} {path}, expected NXDOMAIN validated:\n{out}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{algorithm} {denial}:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_task_answer_validates_ecdsa_p256() {
    every_task_answer_validates("ecdsap256sha256", "nsec");
}

#[test]
fn every_task_answer_validates_ed25519() {
    every_task_answer_validates("ed25519", "nsec");
}

#[test]
fn every_task_answer_validates_nsec3_ecdsa_p256() {
    every_task_answer_validates("ecdsap256sha256", "nsec3");
}

#[test]
fn every_task_answer_validates_nsec3_ed25519() {
    every_task_answer_validates("ed25519", "nsec3");
}

#[test]
fn every_task_answer_validates_compact_ecdsa_p256() {
    every_task_answer_validates("ecdsap256sha256", "compact");
}

#[test]
fn every_task_answer_validates_compact_ed25519() {
    every_task_answer_validates("ed25519", "compact");
}

#[test]
fn a_task_past_the_signing_limit_is_refused_with_what_to_change() {
    // 40 origins answering 4: 40 + 780 + 9880 + 91390 sets, far past the limit.
    let origins: String = (1..=40)
        .map(|i| format!("      - address: 192.0.2.{i}\n"))
        .collect();
    let yaml = format!(
        "dnssec: {{}}\norigin_groups:\n  big:\n    origins:\n{origins}tasks:\n  - {{ id: big, hostname: lb.example.com, origin_group: big, answers: 4 }}\n"
    );
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", &yaml)]);
    let out = site.check();
    assert!(!out.status.success(), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("4096") && err.contains("lower answers") && err.contains("big"),
        "{err}"
    );
    // The API refuses it the same way, and serves on without it.
    let groups_only = yaml.split("tasks:").next().unwrap();
    site.write("example.com.lb.yaml", groups_only);
    let server = site.serve();
    let task =
        r#"{"id": "big", "hostname": "lb.example.com", "origin_group": "big", "answers": 4}"#;
    let (status, body) = server
        .http("POST", "/v1/sites/example.com/tasks", Some(task))
        .expect("the API answers");
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(
        body.contains("4096") && body.contains("lower answers"),
        "{body}"
    );
    let out = server.dig(&["+dnssec", "lb.example.com", "A"]);
    assert!(out.contains("NXDOMAIN"), "{out}");
}

#[test]
fn a_zone_signed_elsewhere_signs_its_tasks_once_its_zsk_is_imported() {
    for (denial, said) in [
        (signing::Denial::Nsec, "nsec"),
        (
            signing::Denial::Nsec3,
            "nsec3 (0 extra iterations, salt none)",
        ),
    ] {
        signed_elsewhere_tasks_validate(denial, said);
    }
}

/// `check` says the zone (denying as `said`) is signed elsewhere, its tasks signed with the
/// imported ZSK; opt-out NSEC3 chains, where task names would be missing, are refused.
fn signed_elsewhere_tasks_validate(denial: signing::Denial, said: &str) {
    let keys = tempfile::tempdir().unwrap();
    let signed = signing::sign(keys.path(), "example.com", ZONE, denial);
    let site_file = "origin_groups:
  web:
    origins:
      - address: 192.0.2.10
      - address: 192.0.2.11
tasks:
  - { id: lb, hostname: lb.example.com, origin_group: web, ttl: 30, answers: 2 }
  - { id: deep, hostname: x.deep.example.com, origin_group: web, ttl: 30 }
";
    let site = Site::new(&[
        ("example.com.zone", &signed.text),
        ("example.com.lb.yaml", site_file),
    ]);
    // Without the ZSK the tasks would answer unsigned: refused, saying what to do.
    let out = site.check();
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("signed elsewhere") && stderr(&out).contains("lbdns keys import"),
        "{}",
        describe(&out)
    );
    let zsk = std::fs::read_dir(keys.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "key")
                && read(p).lines().any(|l| l.contains("DNSKEY 256 "))
        })
        .expect("dnssec-keygen made a ZSK");
    let out = Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(["keys", "import", "--dir"])
        .arg(site.path())
        .arg("example.com")
        .arg(&zsk)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let out = site.check();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stdout(&out).contains(&format!(
            "example.com: signed elsewhere, denial {said}; its tasks signed with the imported ZSK"
        )),
        "{}",
        describe(&out)
    );

    let server = site.serve();
    let anchor = site.path().join("delv.anchor");
    std::fs::write(&anchor, signed.delv_anchor()).unwrap();
    let mut wrong = Vec::new();
    for (name, rtype, expect) in [
        ("lb.example.com.", "A", Expect::Secure),
        ("x.deep.example.com.", "A", Expect::Secure),
        ("alias.example.com.", "A", Expect::Secure),
        ("www.example.com.", "A", Expect::Secure),
        ("lb.example.com.", "TXT", Expect::SecureDenial),
        ("deep.example.com.", "A", Expect::SecureDenial),
        ("nope.lb.example.com.", "A", Expect::SecureDenial),
        ("lc.example.com.", "A", Expect::SecureDenial),
    ] {
        let out = delv(&server, &anchor, name, rtype);
        if !expect.concluded_by_delv(&out) {
            wrong.push(format!(
                "{said} {name} {rtype}, expected {expect:?}:\n{out}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn tasks_in_a_zone_signed_elsewhere_with_nsec3_opt_out_are_refused() {
    let keys = tempfile::tempdir().unwrap();
    let signed = signing::sign(
        keys.path(),
        "example.com",
        ZONE,
        signing::Denial::Nsec3OptOut,
    );
    let site_file = "origin_groups:\n  web:\n    origins:\n      - address: 192.0.2.10\ntasks:\n  - { id: lb, hostname: lb.example.com, origin_group: web }\n";
    let site = Site::new(&[
        ("example.com.zone", &signed.text),
        ("example.com.lb.yaml", site_file),
    ]);
    for file in std::fs::read_dir(keys.path()).unwrap() {
        let path = file.unwrap().path();
        if path.extension().is_some_and(|e| e == "key") {
            let out = Command::new(env!("CARGO_BIN_EXE_lbdns"))
                .args(["keys", "import", "--dir"])
                .arg(site.path())
                .arg("example.com")
                .arg(&path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", describe(&out));
        }
    }
    // Its ZSK imported, the chain still lacks the names opt-out leaves out.
    let out = site.check();
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("NSEC3 without opt-out"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_task_answering_nodata_when_all_down_is_refused_in_a_signed_zone() {
    let yaml = "dnssec: {}
origin_groups:
  web:
    when_all_down: nodata
    origins:
      - address: 192.0.2.10
tasks:
  - { id: lb, hostname: lb.example.com, origin_group: web }
";
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", yaml)]);
    let out = site.check();
    assert!(!out.status.success(), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("when_all_down: nodata") && err.contains("servfail or fail_open"),
        "{err}"
    );
    // servfail, answered by a validator as it would answer a bogus NODATA, is accepted.
    site.write("example.com.lb.yaml", &yaml.replace("nodata", "servfail"));
    let out = site.check();
    assert!(out.status.success(), "{}", describe(&out));
}
