//! lbdns signing zones itself (SPEC §11, issue 15 items 2, 3), judged by BIND's tools and
//! validators, never by lbdns's own code: the keys lbdns makes are read by
//! `dnssec-dsfromkey`, and keys `dnssec-keygen` makes are loaded by lbdns with the tag
//! BIND gave them.
//!
//! Needs dnssec-keygen and dnssec-dsfromkey (bind9-utils): the tests fail, they do not
//! skip, without them.

mod common;

use std::process::Command;

use common::*;
use lbdns::dnssec::key::{Algorithm, KSK, ZSK, ZoneKey};

fn wire(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[test]
fn bind_computes_the_same_ds_from_the_keys_lbdns_writes() {
    let tool = require_tool(&["dnssec-dsfromkey"], "bind9-utils");
    let dir = tempfile::tempdir().unwrap();
    for algorithm in [Algorithm::EcdsaP256Sha256, Algorithm::Ed25519] {
        for flags in [KSK, ZSK] {
            let key = ZoneKey::generate(algorithm, flags).unwrap();
            let path = key.write_files(dir.path(), "Example.COM").unwrap();
            let out = Command::new(&tool).arg("-2").arg(&path).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let bind = String::from_utf8(out.stdout).unwrap();
            // `example.com. IN DS 12345 13 2 HEX`
            let words: Vec<&str> = bind.split_whitespace().collect();
            let ds = key.ds_rdata(&wire("Example.COM"));
            assert_eq!(words[0], "example.com.", "{bind}");
            assert_eq!(words[3].parse::<u16>().unwrap(), key.key_tag(), "{bind}");
            assert_eq!(words[4].parse::<u8>().unwrap(), algorithm.number());
            assert_eq!(words[5], "2");
            assert_eq!(words[6..].concat().to_uppercase(), hex(&ds[4..]), "{bind}");
        }
    }
}

#[test]
fn keys_bind_makes_load_with_the_tag_bind_gave_them() {
    let tool = require_tool(&["dnssec-keygen"], "bind9-utils");
    let dir = tempfile::tempdir().unwrap();
    for (name, number) in [("ECDSAP256SHA256", 13), ("ED25519", 15)] {
        for ksk in [false, true] {
            let mut command = Command::new(&tool);
            command.args(["-q", "-a", name, "-K"]).arg(dir.path());
            if ksk {
                command.args(["-f", "KSK"]);
            }
            let out = command.arg("example.com").output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            // `Kexample.com.+013+12345`
            let stem = String::from_utf8(out.stdout).unwrap().trim().to_owned();
            let tag: u16 = stem.rsplit('+').next().unwrap().parse().unwrap();
            let key = ZoneKey::read_files(&dir.path().join(format!("{stem}.key"))).unwrap();
            assert_eq!(key.key_tag(), tag);
            assert_eq!(key.algorithm().number(), number);
            assert_eq!(key.is_ksk(), ksk);
            assert!(key.times.activate.is_some(), "BIND's Activate time is read");
        }
    }
}

/// Every kind of answer of tests/data/dnssec's zone, with what validating it concludes.
const CASES: &[(&str, &str, Expect)] = &[
    ("www.example.com.", "A", Expect::Secure),
    ("example.com.", "MX", Expect::Secure),
    ("example.com.", "DNSKEY", Expect::Secure),
    ("example.com.", "CDS", Expect::Secure),
    ("example.com.", "CDNSKEY", Expect::Secure),
    ("example.com.", "SOA", Expect::Secure),
    ("_sip._udp.example.com.", "SRV", Expect::Secure),
    ("nope.example.com.", "A", Expect::SecureDenial),
    ("a.b.nope.example.com.", "AAAA", Expect::SecureDenial),
    ("www.example.com.", "MX", Expect::SecureDenial),
    // An empty non-terminal.
    ("ent.example.com.", "A", Expect::SecureDenial),
    // Wildcard expansion, and NODATA at a wildcard.
    ("x.wild.example.com.", "A", Expect::Secure),
    ("host3.w.example.com.", "MX", Expect::Secure),
    ("z.y.ent.example.com.", "A", Expect::SecureDenial),
    // CNAMEs: a chain, into a wildcard, to a name that does not exist.
    ("chain1.example.com.", "A", Expect::Secure),
    ("towild.example.com.", "A", Expect::Secure),
    ("tonothing.example.com.", "A", Expect::SecureDenial),
    // DS at a cut, from the parent side; no DS at an insecure delegation.
    ("dev.example.com.", "DS", Expect::Secure),
    ("ext.example.com.", "DS", Expect::SecureDenial),
    ("child.example.com.", "DS", Expect::SecureDenial),
    // The unsigned child below that insecure delegation.
    ("www.child.example.com.", "A", Expect::Insecure),
];

/// A directory with tests/data/dnssec's zone, unsigned, with `dnssec:` (and its child
/// zone).
fn serve_signing(algorithm: &str) -> Site {
    Site::new(&[
        ("example.com.zone", &source("example.com.zone")),
        ("child.example.com.zone", &source("child.example.com.zone")),
        (
            "example.com.lb.yaml",
            &format!("dnssec:\n  algorithm: {algorithm}\nsecondaries: [127.0.0.1]\n"),
        ),
    ])
}

fn source(file: &str) -> String {
    read(&repo().join("tests/data/dnssec").join(file))
}

/// The `.key` file of the zone's KSK that lbdns made in `keys/example.com/`.
fn ksk_file(site: &Site) -> std::path::PathBuf {
    let dir = site.path().join("keys/example.com");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "key")
                && read(p).lines().any(|l| l.contains("DNSKEY 257 "))
        })
        .unwrap_or_else(|| panic!("no KSK in {}", dir.display()))
}

/// A delv trust anchor: the DS BIND's dnssec-dsfromkey computes from our KSK's file.
fn ds_anchor(site: &Site) -> std::path::PathBuf {
    let tool = require_tool(&["dnssec-dsfromkey"], "bind9-utils");
    let out = Command::new(tool)
        .arg("-2")
        .arg(ksk_file(site))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ds = String::from_utf8(out.stdout).unwrap();
    let f: Vec<&str> = ds.split_whitespace().collect();
    let anchor = site.path().join("delv.anchor");
    std::fs::write(
        &anchor,
        format!(
            "trust-anchors {{\n  {} static-ds {} {} {} \"{}\";\n}};\n",
            f[0],
            f[3],
            f[4],
            f[5],
            f[6..].concat()
        ),
    )
    .unwrap();
    anchor
}

fn delv(server: &Server, anchor: &std::path::Path, name: &str, rtype: &str) -> String {
    let delv = require_tool(&["delv"], "bind9-dnsutils");
    let out = Command::new(delv)
        .arg(format!("@{}", server.addr.ip()))
        .args(["-p", &server.addr.port().to_string(), "-a"])
        .arg(anchor)
        .args(["+root=example.com", name, rtype])
        .output()
        .expect("run delv");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn delv_validates_every_kind_of_answer_of_a_zone_lbdns_signs() {
    for algorithm in ["ecdsap256sha256", "ed25519"] {
        let site = serve_signing(algorithm);
        let server = site.serve();
        let anchor = ds_anchor(&site);
        let mut wrong = Vec::new();
        for &(name, rtype, expect) in CASES {
            let out = delv(&server, &anchor, name, rtype);
            if !expect.concluded_by_delv(&out) {
                wrong.push(format!(
                    "{algorithm} {name} {rtype}, expected {expect:?}:\n{out}"
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}

#[test]
fn dnssec_verify_accepts_a_transfer_of_the_zone_lbdns_signs() {
    let verify = require_tool(&["dnssec-verify"], "bind9-utils");
    for algorithm in ["ecdsap256sha256", "ed25519"] {
        let site = serve_signing(algorithm);
        let server = site.serve();
        let axfr = server.dig(&["example.com", "AXFR", "+onesoa"]);
        let zone: String = axfr
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(zone.contains("RRSIG"), "{axfr}");
        let file = site.path().join("axfr.zone");
        std::fs::write(&file, &zone).unwrap();
        let out = Command::new(&verify)
            .args(["-o", "example.com"])
            .arg(&file)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("Zone fully signed"),
            "{algorithm}: {text}\n{zone}"
        );
    }
}

#[test]
fn keys_are_made_once_and_the_zone_is_not_signed_again_on_reload() {
    let site = serve_signing("ecdsap256sha256");
    let server = site.serve();
    let ksk = ksk_file(&site);
    let signature = |server: &Server| server.dig(&["+dnssec", "+short", "example.com", "SOA"]);
    let before = signature(&server);
    assert!(before.contains("SOA 13 2"), "{before}");
    // An unrelated edit of the site file reloads the zone; its signatures are kept.
    let reloaded = server.reload_after(|| {
        site.write(
            "example.com.lb.yaml",
            "dnssec:\n  algorithm: ecdsap256sha256\nsecondaries: [127.0.0.1, 127.0.0.2]\n",
        )
    });
    assert!(matches!(reloaded, Reloaded::Accepted), "{}", server.log());
    assert_eq!(signature(&server), before);
    drop(server);
    // A restart reads the same keys.
    let server = site.serve();
    assert_eq!(ksk_file(&site), ksk);
    let after = signature(&server);
    let tag = |text: &str| text.split_whitespace().nth(6).map(str::to_owned);
    assert_eq!(tag(&after), tag(&before));
}
