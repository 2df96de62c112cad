//! lbdns signing zones itself (SPEC §11, issue 15 items 2, 3), judged by BIND's tools and
//! validators, never by lbdns's own code: the keys lbdns makes are read by
//! `dnssec-dsfromkey`, and keys `dnssec-keygen` makes are loaded by lbdns with the tag
//! BIND gave them.
//!
//! Needs dnssec-keygen and dnssec-dsfromkey (bind9-utils): the tests fail, they do not
//! skip, without them.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
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
    // A name's NSEC, asked for.
    ("www.example.com.", "NSEC", Expect::Secure),
];

/// A directory with tests/data/dnssec's zone, unsigned, with `dnssec:` (and its child
/// zone), denying existence as `denial` says.
fn serve_signing(algorithm: &str, denial: &str) -> Site {
    Site::new(&[
        ("example.com.zone", &source("example.com.zone")),
        ("child.example.com.zone", &source("child.example.com.zone")),
        (
            "example.com.lb.yaml",
            &format!(
                "dnssec:\n  algorithm: {algorithm}\n  denial: {denial}\nsecondaries: [127.0.0.1]\n"
            ),
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
    ds_anchor_file(site.path().join("delv.anchor"), &ds)
}

fn delv(server: &Server, anchor: &std::path::Path, name: &str, rtype: &str) -> String {
    common::delv(server.addr, anchor, "example.com", name, rtype)
}

/// What validating the answer to `rtype` at a name concludes in a zone denying with
/// `denial`, the case expecting `expect`: NSEC3 names hold no NSEC, so asking for one is
/// NODATA.
fn expected(denial: &str, rtype: &str, expect: Expect) -> Expect {
    match (denial, rtype) {
        ("nsec3", "NSEC") => Expect::SecureDenial,
        _ => expect,
    }
}

#[test]
fn delv_validates_every_kind_of_answer_of_a_zone_lbdns_signs() {
    for denial in ["nsec", "nsec3", "compact"] {
        for algorithm in ["ecdsap256sha256", "ed25519"] {
            let site = serve_signing(algorithm, denial);
            let server = site.serve();
            let anchor = ds_anchor(&site);
            let mut wrong = Vec::new();
            for &(name, rtype, expect) in CASES {
                let expect = expected(denial, rtype, expect);
                let out = delv(&server, &anchor, name, rtype);
                if !expect.concluded_by_delv(&out) {
                    wrong.push(format!(
                        "{denial} {algorithm} {name} {rtype}, expected {expect:?}:\n{out}"
                    ));
                }
            }
            assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        }
    }
}

/// The records of `section` (`ANSWER`, `AUTHORITY`) in dig's output, one a line.
fn section<'a>(out: &'a str, section: &str) -> Vec<&'a str> {
    let start = format!(";; {section} SECTION:");
    out.lines()
        .skip_while(|l| *l != start)
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn compact_denial_answers_as_rfc_9824_says_and_validates_through_unbound() {
    let site = serve_signing("ecdsap256sha256", "compact");
    let server = site.serve();
    // A name that does not exist: NOERROR, the NSEC at that name whose next name is its
    // immediate successor and whose bitmap is RRSIG NSEC NXNAME (type 128), and the SOA
    // (RFC 9824 §3.1); the NSEC's TTL the SOA's MINIMUM, 300, lower than its TTL (RFC
    // 9077).
    let out = server.dig(&["+dnssec", "+norec", "a.nope.example.com", "AAAA"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    let authority = section(&out, "AUTHORITY");
    let nsec: Vec<Vec<&str>> = authority
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.get(3) == Some(&"NSEC"))
        .collect();
    assert_eq!(nsec.len(), 1, "{out}");
    assert_eq!(
        nsec[0][..],
        [
            "a.nope.example.com.",
            "300",
            "IN",
            "NSEC",
            "\\000.a.nope.example.com.",
            "RRSIG",
            "NSEC",
            "TYPE128"
        ],
        "{out}"
    );
    assert!(
        authority
            .iter()
            .any(|l| l.contains("\tSOA\t") || l.contains(" SOA ")),
        "{out}"
    );
    assert!(
        authority.iter().any(|l| l.contains("RRSIG\tNSEC 13 4 300")),
        "{out}"
    );
    // Without DO, NXDOMAIN as ever (RFC 9824 §5); with DO and the Compact Answers OK flag
    // (the second bit of the EDNS flags), NXDOMAIN with the same proof and the flag back
    // (§5.1).
    let out = server.dig(&["+norec", "a.nope.example.com", "AAAA"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    assert!(!out.contains("NSEC"), "{out}");
    // (dig 9.18 does not send +ednsflags=0x4000, so the query is made here.)
    let mut query = query_edns("a.nope.example.com.", RecordType::AAAA, 1232, None);
    let edns = query.edns.as_mut().unwrap();
    edns.set_dnssec_ok(true);
    edns.flags_mut().z = 0x4000;
    let reply = server.udp(&query);
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NXDomain,
        "{reply:?}"
    );
    let flags = reply.edns.as_ref().expect("EDNS").flags();
    assert!(flags.dnssec_ok && flags.z == 0x4000, "{reply:?}");
    assert!(
        reply
            .authorities
            .iter()
            .any(|r| r.record_type() == RecordType::NSEC),
        "{reply:?}"
    );
    // NODATA: the types the name has; an insecure delegation: NS and no DS, the next name
    // the cut's first label with a zero octet added (§3.4).
    let out = server.dig(&["+dnssec", "+norec", "www.example.com", "MX"]);
    assert!(
        out.contains("NSEC\t\\000.www.example.com. A TXT AAAA SSHFP RRSIG NSEC"),
        "{out}"
    );
    let out = server.dig(&["+dnssec", "+norec", "host.ext.example.com", "A"]);
    assert!(
        out.contains("NSEC\text\\000.example.com. NS RRSIG NSEC"),
        "{out}"
    );
    // No chain to walk: the zone holds no NSEC, a transfer shows none.
    let axfr = server.dig(&["example.com", "AXFR"]);
    assert!(
        axfr.contains("RRSIG") && !axfr.contains("\tNSEC\t"),
        "{axfr}"
    );

    let mut wrong = unbound_wrong(&site, &server, "compact");
    // And with the other algorithm.
    let site = serve_signing("ed25519", "compact");
    let server = site.serve();
    wrong.extend(unbound_wrong(&site, &server, "compact"));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The cases unbound, validating from the DS `lbdns keys ds` prints and passing the
/// client's subnet on, does not conclude as expected in a zone denying with `denial`.
fn unbound_wrong(site: &Site, server: &Server, denial: &str) -> Vec<String> {
    let ds = keys_ds(site, "example.com");
    let unbound = Unbound::start(
        server.addr,
        &["example.com", "child.example.com"],
        true,
        Some(&ds),
        ("www.example.com", "192.0.2.80"),
    );
    let mut wrong = Vec::new();
    for &(name, rtype, expect) in CASES {
        let expect = expected(denial, rtype, expect);
        let out = unbound.dig(&[name, rtype, "+dnssec", "+subnet=198.51.100.0/24"]);
        let ad = out
            .lines()
            .find_map(|l| l.strip_prefix(";; flags: "))
            .is_some_and(|l| {
                l.split(';')
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .any(|f| f == "ad")
            });
        let ok = match expect {
            // Proven insecure: the child's answer, without AD.
            Expect::Insecure => {
                !ad && out.contains("status: NOERROR") && out.contains("192.0.2.67")
            }
            Expect::Secure => ad && out.contains("status: NOERROR"),
            Expect::SecureDenial => {
                ad && (out.contains("status: NOERROR") || out.contains("status: NXDOMAIN"))
            }
        };
        if !ok {
            wrong.push(format!(
                "unbound {denial} {name} {rtype}, expected {expect:?}:\n{out}"
            ));
        }
    }
    wrong
}

#[test]
fn nsec3_denial_validates_through_unbound_with_its_own_records_only() {
    for algorithm in ["ecdsap256sha256", "ed25519"] {
        let site = serve_signing(algorithm, "nsec3");
        let server = site.serve();
        // The proofs are NSEC3 records: NXDOMAIN (closest encloser, next closer,
        // wildcard), NODATA at an empty non-terminal, no DS at an insecure delegation, in
        // its referral too.
        for (name, rtype) in [
            ("a.b.nope.example.com", "A"),
            ("ent.example.com", "A"),
            ("ext.example.com", "DS"),
            ("host.ext.example.com", "A"),
        ] {
            let out = server.dig(&["+dnssec", "+norec", name, rtype]);
            assert_eq!(
                denial_types(&out),
                BTreeSet::from(["NSEC3"]),
                "{algorithm} {name} {rtype}:\n{out}"
            );
        }
        let wrong = unbound_wrong(&site, &server, "nsec3");
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}

#[test]
fn nsec_denial_validates_through_unbound() {
    let site = serve_signing("ecdsap256sha256", "nsec");
    let server = site.serve();
    let wrong = unbound_wrong(&site, &server, "nsec");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn dnssec_verify_accepts_a_transfer_of_the_zone_lbdns_signs() {
    let verify = require_tool(&["dnssec-verify"], "bind9-utils");
    for (algorithm, denial) in [
        ("ecdsap256sha256", "nsec"),
        ("ed25519", "nsec"),
        ("ecdsap256sha256", "nsec3"),
        ("ed25519", "nsec3"),
    ] {
        let site = serve_signing(algorithm, denial);
        let server = site.serve();
        let axfr = server.dig(&["example.com", "AXFR", "+onesoa"]);
        let zone: String = axfr
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(zone.contains("RRSIG"), "{axfr}");
        // The chain dnssec-verify checks is the one asked for, and the only one.
        assert_eq!(
            denial_types(&zone),
            BTreeSet::from([denial.to_uppercase().as_str()]),
            "{algorithm} {denial}"
        );
        // RFC 9276's parameters: SHA-1, flags 0, no extra iteration, no salt.
        if denial == "nsec3" {
            let nsec3param = ["example.com.", "IN", "NSEC3PARAM", "1", "0", "0", "-"];
            assert!(
                zone.lines().any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() == 8 && f[..1] == nsec3param[..1] && f[2..] == nsec3param[1..]
                }),
                "{zone}"
            );
        }
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
            "{algorithm} {denial}: {text}\n{zone}"
        );
    }
}

#[test]
fn keys_are_made_once_and_the_zone_is_not_signed_again_on_reload() {
    let site = serve_signing("ecdsap256sha256", "nsec");
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

#[test]
fn check_and_keys_list_say_how_the_zone_is_signed() {
    for denial in ["nsec", "nsec3", "compact"] {
        let site = serve_signing("ed25519", denial);
        // `check` loads the zone, which makes its keys, as serving does.
        let out = site.check();
        assert!(out.status.success(), "{}", describe(&out));
        let said = format!("signed by lbdns: ED25519, denial {denial} (");
        assert!(
            stdout(&out).contains(&format!("example.com: {said}")),
            "{}",
            describe(&out)
        );
        let out = Command::new(env!("CARGO_BIN_EXE_lbdns"))
            .args(["keys", "list", "--dir"])
            .arg(site.path())
            .arg("example.com")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        let list = stdout(&out);
        assert!(
            list.lines().last().is_some_and(|l| l.starts_with(&said)),
            "{list}"
        );
    }
}
