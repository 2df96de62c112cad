//! `lbdns keys` (SPEC §11, issue 15 items 2 and 4) judged by BIND's own tools: keys made by
//! `dnssec-keygen` come in with `import`, `ds` must print what `dnssec-dsfromkey -2` prints,
//! and after each step of a ZSK and a KSK rollover `dnssec-settime -p all` must read, from
//! the key files lbdns rewrote, the times RFC 7583 gives (computed here from its formulas,
//! not from lbdns). The lifecycle's clock is moved with the hidden LBDNS_KEY_CLOCK_OFFSET.
//!
//! Needs dnssec-keygen, dnssec-dsfromkey and dnssec-settime (bind9-utils).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

// The zone's largest TTL is 7,200 (www), above the SOA MINIMUM of 600; lbdns allows an hour
// for propagation and a day for the parent's DS TTL.
const ZONE: &str = "$TTL 300
@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 600
@ IN NS ns1
ns1 IN A 192.0.2.1
www 7200 IN A 192.0.2.2
";
const MAX_TTL: u64 = 7200;
const DPRP: u64 = 3600;
const DS_TTL: u64 = 86_400;

fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `lbdns keys ACTION --dir DIR example.com REST` (`args`: ACTION and REST) with the
/// lifecycle clock `offset` s ahead.
fn keys(dir: &Path, offset: u64, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .arg("keys")
        .arg(args[0])
        .arg("--dir")
        .arg(dir)
        .arg("example.com")
        .args(&args[1..])
        .env("LBDNS_KEY_CLOCK_OFFSET", offset.to_string())
        .output()
        .unwrap()
}

fn keys_ok(dir: &Path, offset: u64, args: &[&str]) -> String {
    let out = keys(dir, offset, args);
    assert!(
        out.status.success(),
        "keys {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn keys_err(dir: &Path, offset: u64, args: &[&str]) -> String {
    let out = keys(dir, offset, args);
    assert!(!out.status.success(), "keys {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

/// A key made by dnssec-keygen in `dir`: its `.key` path.
fn keygen(dir: &Path, ksk: bool) -> PathBuf {
    let tool = require_tool(&["dnssec-keygen"], "bind9-utils");
    let mut command = Command::new(tool);
    command
        .current_dir(dir)
        .args(["-q", "-a", "ECDSAP256SHA256"]);
    if ksk {
        command.args(["-f", "KSK"]);
    }
    let stem = run(command.arg("example.com"));
    dir.join(format!("{}.key", stem.trim()))
}

fn tag_of(key: &Path) -> u16 {
    let name = key.file_stem().unwrap().to_str().unwrap();
    name.rsplit('+').next().unwrap().parse().unwrap()
}

/// `dnssec-settime -up all` of the key `tag` in the zone's key directory: name -> value.
fn bind_times(site: &Site, tag: u16) -> Vec<(String, String)> {
    let tool = require_tool(&["dnssec-settime"], "bind9-utils");
    let key = site
        .path()
        .join(format!("keys/example.com/Kexample.com.+013+{tag:05}.key"));
    run(Command::new(tool).args(["-u", "-p", "all"]).arg(key))
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn bind_time(site: &Site, tag: u16, field: &str) -> Option<u64> {
    let times = bind_times(site, tag);
    let value = &times.iter().find(|(k, _)| k == field).unwrap().1;
    value.parse().ok()
}

fn new_tag(list: &str, known: &[u16]) -> u16 {
    list.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse::<u16>().ok())
        .find(|t| !known.contains(t))
        .expect("a new key in the list")
}

fn row(list: &str, tag: u16) -> String {
    list.lines()
        .find(|l| l.split_whitespace().next() == Some(&tag.to_string()))
        .unwrap_or_else(|| panic!("no key {tag} in\n{list}"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Imports a dnssec-keygen KSK and ZSK; returns their tags and the import time.
fn imported(site: &Site) -> (u16, u16, u64) {
    let made = tempfile::tempdir().unwrap();
    let (ksk, zsk) = (keygen(made.path(), true), keygen(made.path(), false));
    let before = now();
    let out = keys_ok(
        site.path(),
        0,
        &[
            "import",
            ksk.to_str().unwrap(),
            zsk.with_extension("private").to_str().unwrap(),
        ],
    );
    let (ksk, zsk) = (tag_of(&ksk), tag_of(&zsk));
    assert!(out.contains(&format!("imported KSK {ksk} from ")), "{out}");
    assert!(out.contains(&format!("imported ZSK {zsk} from ")), "{out}");
    let at = bind_time(site, ksk, "Activate").unwrap();
    assert!((before..=now()).contains(&at), "{at}");
    (ksk, zsk, at)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn ds_is_what_dnssec_dsfromkey_prints() {
    let site = Site::new(&[("example.com.zone", ZONE)]);
    let (ksk, _, _) = imported(&site);
    let key = site
        .path()
        .join(format!("keys/example.com/Kexample.com.+013+{ksk:05}.key"));
    let tool = require_tool(&["dnssec-dsfromkey"], "bind9-utils");
    let expected = run(Command::new(tool).arg("-2").arg(&key));
    assert_eq!(keys_ok(site.path(), 0, &["ds"]), expected);
    assert_eq!(expected.lines().count(), 1);
}

#[test]
fn a_zsk_rollover_lands_in_the_bind_files_at_rfc_7583_times() {
    let site = Site::new(&[("example.com.zone", ZONE)]);
    let (ksk, old, _) = imported(&site);
    let start = now();
    let out = keys_ok(site.path(), 0, &["roll-zsk"]);
    let list = keys_ok(site.path(), 0, &["list"]);
    let new = new_tag(&list, &[ksk, old]);
    assert!(
        out.starts_with(&format!("ZSK {new} published; it signs from ")),
        "{out}"
    );

    // Tpub: now. Tact(new) = Tret(old) = Tpub + Dprp + TTL(DNSKEY); Trem(old) = Tret + Dprp
    // + TTLsig (RFC 7583 §3.2.1).
    let tpub = bind_time(&site, new, "Publish").unwrap();
    assert!((start..=now()).contains(&tpub));
    let tact = tpub + DPRP + MAX_TTL;
    assert_eq!(bind_time(&site, new, "Activate"), Some(tact));
    assert_eq!(bind_time(&site, old, "Inactive"), Some(tact));
    assert_eq!(bind_time(&site, old, "Delete"), Some(tact + DPRP + MAX_TTL));
    assert_eq!(bind_time(&site, new, "Inactive"), None);
    assert_eq!(bind_time(&site, ksk, "Inactive"), None);
    assert!(
        row(&list, new).starts_with(&format!("{new} ZSK ECDSAP256SHA256 published ")),
        "{list}"
    );
    assert!(row(&list, old).contains(" active "), "{list}");

    let err = keys_err(site.path(), 0, &["roll-zsk"]);
    assert!(
        err.contains(&format!(
            "a ZSK rollover is under way: key {old} leaves the DNSKEY RRset at "
        )),
        "{err}"
    );

    // After the handover (a little slack for the seconds the test took).
    let later = tact - start + 60;
    let list = keys_ok(site.path(), later, &["list"]);
    assert!(row(&list, new).contains(" active "), "{list}");
    assert!(row(&list, old).contains(" retired "), "{list}");
    let list = keys_ok(site.path(), later + DPRP + MAX_TTL, &["list"]);
    assert!(row(&list, old).contains(" removed "), "{list}");
    assert!(row(&list, ksk).contains(" active, CDS "), "{list}");
}

#[test]
fn a_ksk_rollover_waits_for_the_ds_and_then_lets_the_old_key_go() {
    let site = Site::new(&[("example.com.zone", ZONE)]);
    let (old, zsk, _) = imported(&site);
    let old_ds = keys_ok(site.path(), 0, &["ds"]);
    keys_ok(site.path(), 0, &["roll-ksk"]);
    let list = keys_ok(site.path(), 0, &["list"]);
    let new = new_tag(&list, &[old, zsk]);

    // Double signature: the new KSK is published and signing at once; its CDS after Ipub.
    let tpub = bind_time(&site, new, "Publish").unwrap();
    assert_eq!(bind_time(&site, new, "Activate"), Some(tpub));
    let tsbm = tpub + DPRP + MAX_TTL;
    assert_eq!(bind_time(&site, new, "SYNC Publish"), Some(tsbm));
    assert_eq!(
        keys_ok(site.path(), 0, &["ds"]),
        old_ds,
        "the parent keeps the old DS until then"
    );
    let err = keys_err(site.path(), 0, &["roll-ksk", "--ds-seen"]);
    assert!(
        err.contains(&format!("the new KSK {new} publishes its CDS only from ")),
        "{err}"
    );

    // After Tsbm the CDS (and `ds`) name the new key; both wait for the operator.
    let after = tsbm - now() + 60;
    let ds = keys_ok(site.path(), after, &["ds"]);
    assert!(
        ds.starts_with(&format!("example.com. IN DS {new} 13 2 ")),
        "{ds}"
    );
    let list = keys_ok(site.path(), after, &["list"]);
    assert!(row(&list, new).contains("active, CDS"), "{list}");
    assert!(
        row(&list, old).ends_with("ds-seen (when the parent serves the new DS)"),
        "{list}"
    );
    let err = keys_err(site.path(), after, &["roll-ksk"]);
    assert!(err.contains("a KSK rollover is under way"), "{err}");

    // DS seen: the old KSK goes once the old DS has left the caches (Dprp + TTL(DS)).
    let seen = now() + after;
    let out = keys_ok(site.path(), after, &["roll-ksk", "--ds-seen"]);
    assert!(
        out.starts_with(&format!("KSK {new} is the zone's KSK")),
        "{out}"
    );
    let delete = bind_time(&site, old, "Delete").unwrap();
    assert!(
        (seen..=now() + after).contains(&(delete - DPRP - DS_TTL)),
        "{delete}"
    );
    assert_eq!(bind_time(&site, old, "Inactive"), Some(delete));
    let list = keys_ok(site.path(), delete - now() + 60, &["list"]);
    assert!(row(&list, old).contains(" removed "), "{list}");
    assert!(row(&list, zsk).contains(" active "), "{list}");
}

#[test]
fn mistakes_are_refused_with_what_to_do() {
    let site = Site::new(&[("example.com.zone", ZONE)]);
    let err = keys_err(site.path(), 0, &["list"]);
    assert!(
        err.contains("keys/example.com: no keys for example.com."),
        "{err}"
    );
    assert!(
        !site.path().join("keys").exists(),
        "list made the directory"
    );

    let elsewhere = tempfile::tempdir().unwrap();
    let tool = require_tool(&["dnssec-keygen"], "bind9-utils");
    let stem = run(Command::new(tool).current_dir(elsewhere.path()).args([
        "-q",
        "-a",
        "ECDSAP256SHA256",
        "example.net",
    ]));
    let other = elsewhere.path().join(format!("{}.key", stem.trim()));
    let err = keys_err(site.path(), 0, &["import", other.to_str().unwrap()]);
    assert!(
        err.ends_with("the key is for example.net., not example.com.\n"),
        "{err}"
    );

    imported(&site);
    let err = keys_err(site.path(), 0, &["roll-ksk", "--ds-seen"]);
    assert!(
        err.contains("no KSK rollover is waiting for its DS"),
        "{err}"
    );
}
