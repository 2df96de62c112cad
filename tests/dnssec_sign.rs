//! lbdns signing zones itself (SPEC §11, issue 15 items 2, 3), judged by BIND's tools and
//! validators, never by lbdns's own code: the keys lbdns makes are read by
//! `dnssec-dsfromkey`, and keys `dnssec-keygen` makes are loaded by lbdns with the tag
//! BIND gave them.
//!
//! Needs dnssec-keygen and dnssec-dsfromkey (bind9-utils): the tests fail, they do not
//! skip, without them.

mod common;

use std::process::Command;

use common::require_tool;
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
