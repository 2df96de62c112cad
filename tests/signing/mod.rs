//! Zones signed at test time by BIND's `dnssec-keygen` and `dnssec-signzone` (Debian
//! package `bind9-utils`), so that what validates them is independent of lbdns: keys and
//! signatures are made fresh for each run, never by lbdns's own code.

#![allow(dead_code)] // each test crate uses part of it

use std::path::Path;
use std::process::Command;

use crate::common::require_tool;

/// How a zone denies existence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    Nsec,
    /// NSEC3, RFC 9276's parameters (no salt, 0 extra iterations).
    Nsec3,
    /// NSEC3 with opt-out (RFC 5155 §6): unsigned delegations get no NSEC3 of their own.
    Nsec3OptOut,
}

/// A signed zone file and the trust anchor that validates it.
pub struct Signed {
    /// The signed zone, as `dnssec-signzone` wrote it.
    pub text: String,
    /// The KSK's DNSKEY record as dnssec-keygen wrote it: `example.com. IN DNSKEY 257 3 13 BASE64`.
    pub ksk: String,
    /// The ZSK's public key file (`K<origin>+<alg>+<tag>.key`), its private file beside it:
    /// what `lbdns keys import` takes.
    pub zsk_file: std::path::PathBuf,
    /// The KSK's and ZSK's file names without extension, as [`resign`] needs them.
    keys: (String, String),
    denial: Denial,
}

impl Signed {
    /// A `delv -a` anchor file (BIND's `trust-anchors` statement) for the KSK.
    pub fn delv_anchor(&self) -> String {
        let f: Vec<&str> = self.ksk.split_whitespace().collect();
        let at = f
            .iter()
            .position(|w| *w == "DNSKEY")
            .expect("a DNSKEY record");
        format!(
            "trust-anchors {{\n  {} static-key {} {} {} \"{}\";\n}};\n",
            f[0],
            f[at + 1],
            f[at + 2],
            f[at + 3],
            f[at + 4..].concat()
        )
    }

    /// The KSK as an unbound `trust-anchor-file` line (a DNSKEY record).
    pub fn unbound_anchor(&self) -> String {
        format!("{}\n", self.ksk)
    }
}

fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Signs `unsigned` (a zone file for `origin`, without DNSKEY) with a fresh ECDSA P-256
/// KSK and ZSK in `dir`.
pub fn sign(dir: &Path, origin: &str, unsigned: &str, denial: Denial) -> Signed {
    sign_with(dir, origin, unsigned, denial, "ECDSAP256SHA256")
}

/// [`sign`] with keys of `algorithm` (dnssec-keygen's name: ECDSAP256SHA256, ED25519).
pub fn sign_with(
    dir: &Path,
    origin: &str,
    unsigned: &str,
    denial: Denial,
    algorithm: &str,
) -> Signed {
    let keygen = require_tool(&["dnssec-keygen"], "bind9-utils");
    let key = |ksk: bool| {
        let mut command = Command::new(&keygen);
        command.current_dir(dir).args(["-q", "-a", algorithm]);
        if ksk {
            command.args(["-f", "KSK"]);
        }
        run(command.arg(origin))
    };
    let (ksk, zsk) = (key(true), key(false));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let ksk_record = read(&format!("{ksk}.key"))
        .lines()
        .find(|l| !l.starts_with(';'))
        .expect("a DNSKEY line")
        .to_owned();
    let text = sign_zone(dir, origin, unsigned, denial, (&ksk, &zsk));
    Signed {
        text,
        ksk: ksk_record,
        zsk_file: dir.join(format!("{zsk}.key")),
        keys: (ksk, zsk),
        denial,
    }
}

/// `unsigned` (a new version of the zone [`sign`] signed) signed with the same keys, as a
/// primary re-signs a zone it changes.
pub fn resign(dir: &Path, origin: &str, unsigned: &str, signed: &Signed) -> String {
    let (ksk, zsk) = &signed.keys;
    sign_zone(dir, origin, unsigned, signed.denial, (ksk, zsk))
}

/// `dnssec-signzone` of `unsigned` with the keys in `dir` named `ksk` and `zsk`.
fn sign_zone(
    dir: &Path,
    origin: &str,
    unsigned: &str,
    denial: Denial,
    (ksk, zsk): (&str, &str),
) -> String {
    let signzone = require_tool(&["dnssec-signzone"], "bind9-utils");
    let mut text = unsigned.to_owned();
    text.push_str(&format!("\n$INCLUDE {ksk}.key\n$INCLUDE {zsk}.key\n"));
    std::fs::write(dir.join("unsigned.zone"), text).unwrap();
    let mut command = Command::new(&signzone);
    command
        .current_dir(dir)
        .args(["-q", "-o", origin, "-k", &format!("{ksk}.key")])
        .args(["-f", "signed.zone"]);
    match denial {
        Denial::Nsec => {}
        Denial::Nsec3 => {
            command.args(["-3", "-", "-H", "0"]);
        }
        Denial::Nsec3OptOut => {
            command.args(["-3", "-", "-H", "0", "-A"]);
        }
    }
    run(command.args(["unsigned.zone", &format!("{zsk}.key")]));
    std::fs::read_to_string(dir.join("signed.zone")).unwrap()
}

/// The test zone's source (tests/data/dnssec/) for `file`.
pub fn source(file: &str) -> String {
    crate::common::read(&crate::common::repo().join("tests/data/dnssec").join(file))
}
