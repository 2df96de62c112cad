//! The running server drives a signed zone's keys (SPEC §11, issue 15 items 4 and 6): a ZSK
//! rolled on `zsk_lifetime` by serve's own timer, a KSK rolled by `lbdns keys roll-ksk`
//! with its CDS moving and the old key leaving after `--ds-seen`, and `/healthz` warning of
//! signatures about to expire. At every step BIND's `delv` validates the zone from a DS
//! that BIND's `dnssec-dsfromkey` computes from the key files, `dig` reads the DNSKEY set
//! and who signs what, and `dnssec-settime` reads each key's times from its files; the
//! times are RFC 7583's, computed here from the zone's TTLs.
//!
//! Time is moved by the hidden LBDNS_KEY_CLOCK_OFFSET, seconds added to the clock the key
//! lifecycle and its warnings go by (never to signature times, which delv checks against
//! the real clock), read by `serve` and `lbdns keys` alike. A server started with an event
//! a few seconds ahead on that clock shows its timer taking the step.
//!
//! Needs delv, dig (bind9-dnsutils), dnssec-dsfromkey and dnssec-settime (bind9-utils).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

// The largest TTL is 7,200 (www), above the SOA MINIMUM of 600.
const ZONE: &str = "$TTL 300
@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 600
@ IN NS ns1
ns1 IN A 192.0.2.1
www 7200 IN A 192.0.2.2
";
const MAX_TTL: u64 = 7200;
/// lbdns's propagation delay (Knot's default) and the parent's DS TTL it assumes.
const DPRP: u64 = 3600;
const DS_TTL: u64 = 86_400;
/// RFC 7583: Ipub = Dprp + TTL(DNSKEY); a ZSK's Iret = Dprp + the largest TTL signed.
const IPUB: u64 = DPRP + MAX_TTL;
const ZSK_IRET: u64 = DPRP + MAX_TTL;
const KSK_IRET: u64 = DPRP + DS_TTL;
const DAY: u64 = 86_400;
const ZSK_LIFETIME: u64 = 30 * DAY;
/// How far past an event a restarted server's clock is put.
const PAST: u64 = 600;

const OFFSET_ENV: &str = "LBDNS_KEY_CLOCK_OFFSET";

/// The zone signed by lbdns, its ZSK rolled every 30 days, with a task whose answers are
/// signed with the ZSK of the moment.
const SITE: &str = "dnssec:
  zsk_lifetime: 30d
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
      - address: 192.0.2.11
tasks:
  - hostname: lb.example.com
    origin_group: web
";

/// Names that must validate at every step: data, the keys, a task's answer, NXDOMAIN and
/// NODATA.
const CASES: &[(&str, &str, Expect)] = &[
    ("example.com.", "SOA", Expect::Secure),
    ("example.com.", "DNSKEY", Expect::Secure),
    ("www.example.com.", "A", Expect::Secure),
    ("lb.example.com.", "A", Expect::Secure),
    ("nothing.example.com.", "A", Expect::SecureDenial),
    ("www.example.com.", "MX", Expect::SecureDenial),
];

fn site() -> Site {
    Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", SITE)])
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `lbdns serve` on `site` with the lifecycle's clock `offset` s ahead.
fn serve(site: &Site, offset: u64) -> Server {
    let offset = offset.to_string();
    let geoip = test_geoip();
    Server::start_with_env(
        site.path(),
        &["--geoip".as_ref(), geoip.as_os_str()],
        &[(OFFSET_ENV, Path::new(&offset))],
    )
}

/// The clock offset that puts the server's clock `lead` s before `event` (a Unix time).
fn offset_before(event: u64, lead: u64) -> u64 {
    event.saturating_sub(lead).saturating_sub(now())
}

/// `lbdns keys ARGS --dir DIR example.com` with the clock `offset` s ahead.
fn keys(site: &Site, offset: u64, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .arg("keys")
        .arg(args[0])
        .arg("--dir")
        .arg(site.path())
        .arg("example.com")
        .args(&args[1..])
        .env(OFFSET_ENV, offset.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "keys {args:?}: {}", describe(&out));
    stdout(&out)
}

fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?}: {}", describe(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn key_file(site: &Site, tag: u16) -> PathBuf {
    site.path()
        .join(format!("keys/example.com/Kexample.com.+013+{tag:05}.key"))
}

/// A key's time `field` (Publish, Activate, Inactive, Delete, SYNC Publish) as BIND's
/// `dnssec-settime` reads it from the key's files.
fn bind_time(site: &Site, tag: u16, field: &str) -> u64 {
    let tool = require_tool(&["dnssec-settime"], "bind9-utils");
    let out = run(Command::new(tool)
        .args(["-u", "-p", "all"])
        .arg(key_file(site, tag)));
    out.lines()
        .filter_map(|l| l.split_once(": "))
        .find(|(k, _)| *k == field)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} time for key {tag}:\n{out}"))
}

/// A delv trust anchor file: the DS BIND computes from the key file of `tag`.
fn ds_anchor(site: &Site, tag: u16) -> PathBuf {
    let tool = require_tool(&["dnssec-dsfromkey"], "bind9-utils");
    let ds = run(Command::new(tool).arg("-2").arg(key_file(site, tag)));
    ds_anchor_file(site.path().join(format!("anchor-{tag}")), &ds)
}

/// What delv concludes of each case that is not what it must be, with `anchor`.
fn not_validated(server: &Server, anchor: &Path) -> Vec<String> {
    let mut wrong = Vec::new();
    for &(name, rtype, expect) in CASES {
        let out = delv(server.addr, anchor, "example.com", name, rtype);
        if !expect.concluded_by_delv(&out) {
            wrong.push(format!("{name} {rtype}, expected {expect:?}:\n{out}"));
        }
    }
    wrong
}

fn assert_validates(server: &Server, anchor: &Path, step: &str) {
    let wrong = not_validated(server, anchor);
    assert!(
        wrong.is_empty(),
        "{step}, anchor {}:\n{}\n{}",
        anchor.display(),
        wrong.join("\n"),
        server.log()
    );
}

/// The apex DNSKEY set as dig reads it: (is a KSK, key tag), sorted.
fn dnskeys(server: &Server) -> Vec<(bool, u16)> {
    let out = server.dig(&["+multi", "example.com", "DNSKEY"]);
    let mut keys: Vec<(bool, u16)> = out
        .lines()
        .filter_map(|l| {
            let ksk = l.contains("; KSK;");
            let tag = l.split("key id = ").nth(1)?.trim().parse().ok()?;
            Some((ksk, tag))
        })
        .collect();
    keys.sort();
    keys
}

/// The key tags of the RRSIGs over `rtype` at the apex, sorted.
fn signers(server: &Server, rtype: &str) -> Vec<u16> {
    signers_at(server, "example.com", rtype)
}

/// The key tags of the RRSIGs over `rtype` at `name`, sorted.
fn signers_at(server: &Server, name: &str, rtype: &str) -> Vec<u16> {
    let out = server.dig(&["+dnssec", "+short", name, rtype]);
    let mut tags: Vec<u16> = out
        .lines()
        .filter(|l| l.starts_with(&format!("{rtype} ")))
        .filter_map(|l| l.split_whitespace().nth(6)?.parse().ok())
        .collect();
    tags.sort();
    tags
}

/// The key tags the apex CDS records name.
fn cds(server: &Server) -> Vec<u16> {
    let out = server.dig(&["+short", "example.com", "CDS"]);
    out.lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Waits (30 s at most) until `done` holds of the server.
fn wait_for(server: &Server, what: &str, done: impl Fn(&Server) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(server) {
        assert!(
            Instant::now() < deadline,
            "not within 30 s: {what}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tag_of(keys: &[(bool, u16)], ksk: bool, not: &[u16]) -> u16 {
    keys.iter()
        .find(|(k, t)| *k == ksk && !not.contains(t))
        .map(|&(_, t)| t)
        .unwrap_or_else(|| panic!("no new {} in {keys:?}", if ksk { "KSK" } else { "ZSK" }))
}

#[test]
fn serve_rolls_the_zsk_on_its_lifetime_and_every_step_validates() {
    let site = site();
    let before = now();
    let server = serve(&site, 0);
    let keys0 = dnskeys(&server);
    assert_eq!(keys0.len(), 2, "{keys0:?}");
    let (ksk, zsk) = (tag_of(&keys0, true, &[]), tag_of(&keys0, false, &[]));
    let anchor = ds_anchor(&site, ksk);
    assert_eq!(signers(&server, "SOA"), [zsk]);
    assert_eq!(signers(&server, "DNSKEY"), [ksk]);
    assert_eq!(cds(&server), [ksk]);
    assert_validates(&server, &anchor, "new zone");

    // The metrics say when the rollover comes and when the first signature expires.
    let activated = bind_time(&site, zsk, "Activate");
    assert!((before..=now()).contains(&activated), "{activated}");
    let due = activated + ZSK_LIFETIME - IPUB;
    let zone = "{zone=\"example.com.\"}";
    assert_eq!(
        server.metric(&format!("lbdns_dnssec_next_key_event_seconds{zone}")),
        due as f64
    );
    let expiry = server.metric(&format!("lbdns_dnssec_rrsig_earliest_expiry_seconds{zone}"));
    // 14 days from an inception an hour back, less at most a tenth of them (spread).
    let (validity, skew) = (14.0 * DAY as f64, 3600.0);
    assert!(
        expiry >= before as f64 - skew + validity * 0.9 && expiry <= now() as f64 - skew + validity,
        "{expiry}"
    );
    let made = server.metric("lbdns_dnssec_signatures_made_total");
    assert!(made > 0.0, "{made}");
    drop(server);

    // Five seconds before the rollover is due: serve's timer publishes the new ZSK.
    let server = serve(&site, offset_before(due, 5));
    let early = dnskeys(&server);
    wait_for(&server, "a second ZSK published", |s| dnskeys(s).len() == 3);
    if early.len() == 2 {
        assert!(
            server.log().contains("DNSSEC: keys stepped"),
            "{}",
            server.log()
        );
    }
    let keys1 = dnskeys(&server);
    let new_zsk = tag_of(&keys1, false, &[zsk]);
    assert_eq!(signers(&server, "SOA"), [zsk], "published, not signing yet");
    assert_eq!(signers_at(&server, "lb.example.com", "A"), [zsk]);
    assert_validates(&server, &anchor, "new ZSK published");
    // RFC 7583 §3.2.1: signing after Ipub, the old key retired then and removed Iret later.
    let published = bind_time(&site, new_zsk, "Publish");
    // At the due time, give or take a slow start (the load then takes the step).
    assert!(
        (due..due + 300).contains(&published),
        "{published} vs {due}"
    );
    let handover = bind_time(&site, new_zsk, "Activate");
    assert_eq!(handover, published + IPUB);
    assert_eq!(bind_time(&site, zsk, "Inactive"), handover);
    let removal = bind_time(&site, zsk, "Delete");
    assert_eq!(removal, handover + ZSK_IRET);
    drop(server);

    // Three seconds before the handover: the timer moves every signature to the new ZSK.
    let server = serve(&site, offset_before(handover, 3));
    wait_for(&server, "the zone signed by the new ZSK", |s| {
        signers(s, "SOA") == [new_zsk]
    });
    assert_eq!(dnskeys(&server), keys1, "the old ZSK is still published");
    assert_eq!(signers_at(&server, "lb.example.com", "A"), [new_zsk]);
    assert_validates(&server, &anchor, "new ZSK signing");
    drop(server);

    // After Iret: the old ZSK is gone, from the zone and from the directory.
    let server = serve(&site, offset_before(removal, 0) + PAST);
    let mut keys2 = vec![(true, ksk), (false, new_zsk)];
    keys2.sort();
    assert_eq!(dnskeys(&server), keys2);
    assert!(!key_file(&site, zsk).exists());
    assert_eq!(signers(&server, "SOA"), [new_zsk]);
    assert_validates(&server, &anchor, "old ZSK removed");
}

#[test]
fn a_ksk_rollover_by_command_moves_the_cds_and_validates_from_either_ds() {
    let site = site();
    let server = serve(&site, 0);
    let keys0 = dnskeys(&server);
    let (old, zsk) = (tag_of(&keys0, true, &[]), tag_of(&keys0, false, &[]));
    let old_anchor = ds_anchor(&site, old);
    assert_validates(&server, &old_anchor, "before");

    // roll-ksk, then SIGHUP: both KSKs sign the DNSKEY RRset, the CDS still names the old.
    let said = keys(&site, 0, &["roll-ksk"]);
    let before = server.reload_counts();
    server.sighup();
    assert!(
        matches!(server.wait_reload(before), Reloaded::Accepted),
        "{}",
        server.log()
    );
    let keys1 = dnskeys(&server);
    let new = tag_of(&keys1, true, &[old]);
    assert!(said.starts_with(&format!("KSK {new} published")), "{said}");
    assert_eq!(keys1.len(), 3, "{keys1:?}");
    let mut both = vec![old, new];
    both.sort();
    assert_eq!(signers(&server, "DNSKEY"), both);
    assert_eq!(signers(&server, "SOA"), [zsk]);
    assert_eq!(cds(&server), [old]);
    let new_anchor = ds_anchor(&site, new);
    assert_validates(&server, &old_anchor, "new KSK published, old DS");
    assert_validates(&server, &new_anchor, "new KSK published, new DS");
    drop(server);

    // After Ipub the CDS/CDNSKEY name the new KSK, and `lbdns keys ds` prints its DS.
    let submitted = bind_time(&site, new, "SYNC Publish");
    assert_eq!(submitted, bind_time(&site, new, "Publish") + IPUB);
    let offset = offset_before(submitted, 0) + PAST;
    let server = serve(&site, offset);
    assert_eq!(cds(&server), [new]);
    assert_eq!(signers(&server, "CDS"), both);
    let ds = keys(&site, offset, &["ds"]);
    assert!(ds.contains(&format!("IN DS {new} 13 2 ")), "{ds}");
    assert_validates(&server, &old_anchor, "CDS moved, old DS");
    assert_validates(&server, &new_anchor, "CDS moved, new DS");

    // The parent serves the new DS: the old KSK signs on until the old DS has left caches.
    let said = keys(&site, offset, &["roll-ksk", "--ds-seen"]);
    assert!(
        said.starts_with(&format!("KSK {new} is the zone's KSK")),
        "{said}"
    );
    let before = server.reload_counts();
    server.sighup();
    assert!(
        matches!(server.wait_reload(before), Reloaded::Accepted),
        "{}",
        server.log()
    );
    let removal = bind_time(&site, old, "Delete");
    let seen = now() + offset;
    assert!(
        (seen - 60..=seen).contains(&(removal - KSK_IRET)),
        "{removal}"
    );
    assert_eq!(signers(&server, "DNSKEY"), both);
    assert_validates(&server, &new_anchor, "DS seen");
    drop(server);

    // After the old DS's TTL: the old KSK is gone; only the new DS validates.
    let server = serve(&site, offset_before(removal, 0) + PAST);
    let mut keys2 = vec![(true, new), (false, zsk)];
    keys2.sort();
    assert_eq!(dnskeys(&server), keys2);
    assert_eq!(signers(&server, "DNSKEY"), [new]);
    assert_eq!(cds(&server), [new]);
    assert!(!key_file(&site, old).exists());
    assert_validates(&server, &new_anchor, "old KSK removed");
    assert!(!not_validated(&server, &old_anchor).is_empty());
}

#[test]
fn healthz_warns_when_a_signature_expires_within_a_day() {
    let site = site();
    let server = serve(&site, 0);
    let zone = "{zone=\"example.com.\"}";
    let expiry = server.metric(&format!("lbdns_dnssec_rrsig_earliest_expiry_seconds{zone}")) as u64;
    let healthz = |server: &Server| -> serde_json::Value {
        let (status, body) = server.http_get("/healthz", Duration::from_secs(5)).unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let ok = healthz(&server);
    assert_eq!(ok["status"], "ok", "{ok}");
    assert_eq!(ok["warnings"], serde_json::json!([]), "{ok}");
    assert_eq!(ok["dnssec"][0]["zone"], "example.com.", "{ok}");
    drop(server);

    // Two days before the expiry nothing is wrong yet; twelve hours before, it is.
    let server = serve(&site, offset_before(expiry, 2 * DAY));
    assert_eq!(healthz(&server)["status"], "ok");
    drop(server);
    let server = serve(&site, offset_before(expiry, 12 * 3600));
    let warned = healthz(&server);
    assert_eq!(warned["status"], "degraded", "{warned}");
    let warning = warned["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.starts_with("zone example.com.: an RRSIG expires at ")
            && warning.contains("within a day"),
        "{warned}"
    );
}
