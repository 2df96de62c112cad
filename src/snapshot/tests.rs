use super::*;
use crate::site;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::path::Path;

const ZONE: &str = "$TTL 3600\n\
        @ IN SOA ns1 hostmaster 1 7200 900 1209600 300\n\
        @ NS ns1\n\
        ns1 A 192.0.2.53\n\
        www 300 A 192.0.2.80\n\
        www TXT \"zone text\"\n\
        old CNAME www\n\
        *.wild A 192.0.2.99\n\
        sub NS ns.sub\n\
        ns.sub A 192.0.2.54\n\
        a.b.c A 192.0.2.7\n";

fn origin() -> Name {
    Name::from_ascii("example.com.").unwrap()
}

fn snapshot(lb: &str) -> Snapshot {
    let zone = crate::zone::parse(ZONE, Path::new("t.zone"), &origin()).unwrap();
    let spec = site::parse(lb).unwrap();
    let site = site::validate(&origin(), &spec).unwrap();
    Snapshot::compile(&[zone.into()], &[&site], None, &Health::default()).unwrap()
}

fn ask(s: &Snapshot, name: &str, rtype: RecordType) -> Answer {
    let client = Client {
        addr: "192.0.2.1".parse().unwrap(),
        source_prefix: 32,
    };
    s.answer(
        &Name::from_ascii(name).unwrap(),
        rtype,
        &client,
        &mut SmallRng::seed_from_u64(1),
    )
}

fn data(a: &Answer) -> Vec<String> {
    a.answers
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.ttl, r.data))
        .collect()
}

const TASK: &str = "origin_groups:\n  web:\n    origins:\n      - address: 192.0.2.10\ntasks:\n  - hostname: www.example.com\n    origin_group: web\n    ttl: 30\n";

#[test]
fn override_and_restore() {
    let plain = snapshot("");
    assert_eq!(
        data(&ask(&plain, "www.example.com.", RecordType::A)),
        ["www.example.com. 300 192.0.2.80"]
    );
    let with_task = snapshot(TASK);
    assert_eq!(
        data(&ask(&with_task, "www.example.com.", RecordType::A)),
        ["www.example.com. 30 192.0.2.10"]
    );
    // Other types at the name still come from the zone.
    assert_eq!(
        ask(&with_task, "www.example.com.", RecordType::TXT)
            .answers
            .len(),
        1
    );
    let disabled = snapshot(&format!("{TASK}    enabled: false\n"));
    assert_eq!(
        data(&ask(&disabled, "www.example.com.", RecordType::A)),
        ["www.example.com. 300 192.0.2.80"]
    );
}

#[test]
fn a_wildcard_directly_under_the_apex_answers() {
    // As a task: every name without its own node, not the apex or existing names.
    let s = snapshot(&TASK.replace("www.example.com", "\"*.example.com\""));
    assert_eq!(
        data(&ask(&s, "anything.example.com.", RecordType::A)),
        ["anything.example.com. 30 192.0.2.10"]
    );
    assert_eq!(
        data(&ask(&s, "www.example.com.", RecordType::A)),
        ["www.example.com. 300 192.0.2.80"]
    );
    assert_eq!(ask(&s, "example.com.", RecordType::A).answers.len(), 0);
    // As zone data.
    let zone = format!("{ZONE}* 60 A 192.0.2.1\n");
    let zone = crate::zone::parse(&zone, Path::new("t.zone"), &origin()).unwrap();
    let s = Snapshot::compile(&[zone.into()], &[], None, &Health::default()).unwrap();
    assert_eq!(
        data(&ask(&s, "x.y.example.com.", RecordType::A)),
        ["x.y.example.com. 60 192.0.2.1"]
    );
}

#[test]
fn task_hides_a_zone_cname_for_every_type() {
    let s = snapshot(&TASK.replace("www.example.com", "old.example.com"));
    let a = ask(&s, "old.example.com.", RecordType::A);
    assert_eq!(data(&a), ["old.example.com. 30 192.0.2.10"]);
    for rtype in [RecordType::MX, RecordType::CNAME, RecordType::TXT] {
        let other = ask(&s, "old.example.com.", rtype);
        assert!(other.answers.is_empty(), "{rtype}: {:?}", data(&other));
        assert_eq!(
            (other.rcode, other.authority.len()),
            (ResponseCode::NoError, 1)
        );
    }
}

#[test]
fn task_makes_a_name_exist() {
    let lb = TASK.replace("www.example.com", "new.example.com");
    assert_eq!(
        ask(&snapshot(""), "new.example.com.", RecordType::A).rcode,
        ResponseCode::NXDomain
    );
    let s = snapshot(&lb);
    assert_eq!(
        data(&ask(&s, "new.example.com.", RecordType::A)),
        ["new.example.com. 30 192.0.2.10"]
    );
    let nodata = ask(&s, "new.example.com.", RecordType::AAAA);
    assert_eq!(
        (nodata.rcode, nodata.answers.len(), nodata.authority.len()),
        (ResponseCode::NoError, 0, 1)
    );
}

#[test]
fn negative_answers_carry_the_soa_with_minimum_ttl() {
    let s = snapshot("");
    let nx = ask(&s, "nope.example.com.", RecordType::A);
    assert_eq!(nx.rcode, ResponseCode::NXDomain);
    assert_eq!(nx.authority[0].ttl, 300);
    assert!(nx.authoritative);
    // b.c exists as an empty non-terminal.
    let ent = ask(&s, "b.c.example.com.", RecordType::A);
    assert_eq!((ent.rcode, ent.answers.len()), (ResponseCode::NoError, 0));
    assert_eq!(
        ask(&s, "example.org.", RecordType::A).rcode,
        ResponseCode::Refused
    );
}

#[test]
fn cname_wildcard_and_referral() {
    let s = snapshot("");
    let a = ask(&s, "OLD.example.com.", RecordType::A);
    assert_eq!(
        data(&a),
        [
            "OLD.example.com. 3600 www.example.com.",
            "www.example.com. 300 192.0.2.80"
        ]
    );
    let w = ask(&s, "x.y.wild.example.com.", RecordType::A);
    assert_eq!(data(&w), ["x.y.wild.example.com. 3600 192.0.2.99"]);
    let r = ask(&s, "host.sub.example.com.", RecordType::A);
    assert!(!r.authoritative);
    assert_eq!(
        (r.answers.len(), r.authority.len(), r.additional.len()),
        (0, 1, 1)
    );
    let ds = ask(&s, "sub.example.com.", RecordType::DS);
    assert!(ds.authoritative && ds.answers.is_empty());
}

#[test]
fn a_cname_into_a_delegation_is_followed_by_the_referral() {
    // RFC 1034 §4.3.2 step 3b after step 3a's CNAME: the CNAME, then the cut's NS in
    // authority and its glue; the CNAME is this zone's data, so the answer is
    // authoritative.
    let zone = format!("{ZONE}to-sub CNAME host.sub.example.com.\n");
    let zone = crate::zone::parse(&zone, Path::new("t.zone"), &origin()).unwrap();
    let s = Snapshot::compile(&[zone.into()], &[], None, &Health::default()).unwrap();
    let a = ask(&s, "to-sub.example.com.", RecordType::A);
    assert!(a.authoritative);
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert_eq!(data(&a), ["to-sub.example.com. 3600 host.sub.example.com."]);
    let authority: Vec<String> = a
        .authority
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect();
    // The cut's name is written as a pointer into the CNAME's target.
    assert_eq!(authority, ["sub.example.com. NS ns.sub.example.com."]);
    let glue: Vec<String> = a
        .additional
        .iter()
        .map(|r| format!("{} {}", r.name, r.data))
        .collect();
    assert_eq!(glue, ["ns.sub.example.com. 192.0.2.54"]);
}

#[test]
fn task_below_a_cut_is_rejected() {
    let zone = crate::zone::parse(ZONE, Path::new("t.zone"), &origin()).unwrap();
    let lb = TASK.replace("www.example.com", "x.sub.example.com");
    let site = site::validate(&origin(), &site::parse(&lb).unwrap()).unwrap();
    let errors = Snapshot::compile(&[zone.into()], &[&site], None, &Health::default()).unwrap_err();
    assert!(
        errors[0].message.contains("zone cut sub.example.com."),
        "{}",
        errors[0].message
    );
    assert!(
        errors[0].message.starts_with("task x.sub.example.com"),
        "{}",
        errors[0].message
    );
    assert_eq!(errors[0].line, Some(6));
}

fn snapshot_of(zone: &str, lb: &str) -> Snapshot {
    let zone = crate::zone::parse(zone, Path::new("t.zone"), &origin()).unwrap();
    let spec = site::parse(lb).unwrap();
    let site = site::validate(&origin(), &spec).unwrap();
    Snapshot::compile(&[zone.into()], &[&site], None, &Health::default()).unwrap()
}

/// Groups of each kind: IPv4, IPv6, a name outside the zone, a name inside it.
const GROUPS: &str = "origin_groups:
  v4:
    origins:
      - address: 192.0.2.10
  v6:
    origins:
      - address: 2001:db8::10
  out:
    origins:
      - address: edge.cdn.example.net
  in:
    origins:
      - address: www.example.com
tasks:
";

fn tasks(lines: &str) -> String {
    format!("{GROUPS}{lines}")
}

#[test]
fn any_at_a_task_name_is_the_task_answer_alone() {
    let s = snapshot(&tasks(
        "  - { hostname: www.example.com, origin_group: v4, ttl: 30 }
  - { hostname: new.example.com, origin_group: v6, ttl: 30 }
  - { hostname: old.example.com, origin_group: out, ttl: 30 }
",
    ));
    for (name, want) in [
        ("www.example.com.", "www.example.com. 30 192.0.2.10"),
        ("new.example.com.", "new.example.com. 30 2001:db8::10"),
        (
            "old.example.com.",
            "old.example.com. 30 edge.cdn.example.net.",
        ),
    ] {
        assert_eq!(data(&ask(&s, name, RecordType::ANY)), [want], "{name}");
    }
}

#[test]
fn a_cname_task_into_the_zone_is_followed_except_for_cname_and_any() {
    let s = snapshot(&tasks(
        "  - { hostname: go.example.com, origin_group: in, ttl: 30 }\n",
    ));
    let cname = "go.example.com. 30 www.example.com.";
    assert_eq!(
        data(&ask(&s, "go.example.com.", RecordType::A)),
        [cname, "www.example.com. 300 192.0.2.80"]
    );
    assert_eq!(
        data(&ask(&s, "go.example.com.", RecordType::TXT)),
        [cname, "www.example.com. 3600 zone text"]
    );
    for rtype in [RecordType::CNAME, RecordType::ANY] {
        assert_eq!(data(&ask(&s, "go.example.com.", rtype)), [cname], "{rtype}");
    }
    // The target's AAAA does not exist: the CNAME, then NODATA's SOA.
    let aaaa = ask(&s, "go.example.com.", RecordType::AAAA);
    assert_eq!(
        (data(&aaaa), aaaa.authority.len()),
        (vec![cname.to_owned()], 1)
    );
}

#[test]
fn a_zone_cname_chain_into_a_task_gets_the_task_answer() {
    let zone = format!("{ZONE}alias CNAME old\n");
    let s = snapshot_of(
        &zone,
        &tasks("  - { hostname: www.example.com, origin_group: v4, ttl: 30 }\n"),
    );
    assert_eq!(
        data(&ask(&s, "alias.example.com.", RecordType::A)),
        [
            "alias.example.com. 3600 old.example.com.",
            "old.example.com. 3600 www.example.com.",
            "www.example.com. 30 192.0.2.10"
        ]
    );
    // The zone's AAAA-less www under an IPv4-only task: the chain, then NODATA.
    let aaaa = ask(&s, "alias.example.com.", RecordType::AAAA);
    assert_eq!((aaaa.answers.len(), aaaa.authority.len()), (2, 1));
}

#[test]
fn cname_chains_stop_at_eight_records() {
    // c0 -> c1 -> ... -> c6 -> end (A): 7 CNAMEs and the A, all answered.
    let mut zone = ZONE.to_owned();
    for i in 0..7 {
        zone.push_str(&format!("c{i} CNAME c{}\n", i + 1));
    }
    zone.push_str("c7 A 192.0.2.77\nd0 CNAME c0\nloop1 CNAME loop2\nloop2 CNAME loop1\n");
    let s = snapshot_of(&zone, "");
    let full = ask(&s, "c0.example.com.", RecordType::A);
    assert_eq!(full.answers.len(), 8);
    assert_eq!(
        data(&full).last().map(String::as_str),
        Some("c7.example.com. 3600 192.0.2.77")
    );
    // One more link: the chain is cut after eight records, without the A.
    let cut = ask(&s, "d0.example.com.", RecordType::A);
    assert_eq!(cut.answers.len(), 8);
    assert!(
        cut.answers
            .iter()
            .all(|r| r.record_type() == RecordType::CNAME)
    );
    // A loop ends where it closes, each CNAME once (RFC 2181 §5).
    assert_eq!(
        data(&ask(&s, "loop1.example.com.", RecordType::A)),
        [
            "loop1.example.com. 3600 loop2.example.com.",
            "loop2.example.com. 3600 loop1.example.com."
        ]
    );
}

#[test]
fn any_at_zone_data_is_one_rrset() {
    let s = snapshot("");
    // www has A and TXT: one of them (RFC 8482), whole.
    let any = ask(&s, "www.example.com.", RecordType::ANY);
    assert_eq!(data(&any), ["www.example.com. 300 192.0.2.80"]);
    // A CNAME answers ANY alone, not followed.
    assert_eq!(
        data(&ask(&s, "old.example.com.", RecordType::ANY)),
        ["old.example.com. 3600 www.example.com."]
    );
    assert_eq!(
        data(&ask(&s, "old.example.com.", RecordType::CNAME)),
        ["old.example.com. 3600 www.example.com."]
    );
}

/// The zone of `sub.example.com.`, delegated from [`ZONE`].
fn child_zone() -> ZoneData {
    crate::zone::parse(
        "$TTL 60\n@ SOA ns hostmaster 1 7200 900 1209600 30\n@ NS ns\nns A 192.0.2.54\n@ A 192.0.2.55\n",
        Path::new("c.zone"),
        &Name::from_ascii("sub.example.com.").unwrap(),
    )
    .unwrap()
}

#[test]
fn ds_at_a_served_child_apex_is_answered_by_the_parent() {
    let parent = crate::zone::parse(ZONE, Path::new("t.zone"), &origin()).unwrap();
    let child = child_zone();
    let s = Snapshot::compile(
        &[parent.into(), child.into()],
        &[],
        None,
        &Health::default(),
    )
    .unwrap();
    let soa_owner = |a: &Answer| a.authority.first().map(|r| r.name.to_string());
    // DS at the cut: the parent's NODATA, authoritative.
    let ds = ask(&s, "sub.example.com.", RecordType::DS);
    assert!(ds.authoritative && ds.answers.is_empty());
    assert_eq!(soa_owner(&ds).as_deref(), Some("example.com."));
    // Anything else at the child apex, and DS below it, is the child's.
    assert_eq!(
        data(&ask(&s, "sub.example.com.", RecordType::A)),
        ["sub.example.com. 60 192.0.2.55"]
    );
    let below = ask(&s, "x.sub.example.com.", RecordType::DS);
    assert_eq!(soa_owner(&below).as_deref(), Some("sub.example.com."));
}

#[test]
fn a_child_zone_added_with_its_site_answers_its_names() {
    let parent = crate::zone::parse(ZONE, Path::new("t.zone"), &origin()).unwrap();
    let s = Snapshot::compile(&[parent.into()], &[], None, &Health::default()).unwrap();
    // The parent refers the child's names to the cut.
    assert!(!ask(&s, "www.sub.example.com.", RecordType::A).authoritative);
    // A zone deeper than any served before is searched for, its names answered by it.
    let child_origin = Name::from_ascii("sub.example.com.").unwrap();
    let spec = site::parse(&TASK.replace("www.example.com", "www.sub.example.com")).unwrap();
    let site = site::validate(&child_origin, &spec).unwrap();
    let s = s
        .with_site(&Arc::new(child_zone()), &site, &Health::default())
        .unwrap();
    let www = ask(&s, "www.sub.example.com.", RecordType::A);
    assert!(www.authoritative);
    assert_eq!(data(&www), ["www.sub.example.com. 30 192.0.2.10"]);
}

#[test]
fn a_task_answers_its_own_family_and_hides_the_zone_address_records() {
    let zone = format!("{ZONE}www 300 AAAA 2001:db8::80\nnew6 AAAA 2001:db8::99\n");
    let s = snapshot_of(
        &zone,
        &tasks(
            "  - { hostname: www.example.com, origin_group: v4, ttl: 30 }
  - { hostname: new6.example.com, origin_group: v6, ttl: 30 }
",
        ),
    );
    // IPv4-only: the zone's AAAA is hidden, NODATA with the SOA.
    let aaaa = ask(&s, "www.example.com.", RecordType::AAAA);
    assert_eq!((aaaa.answers.len(), aaaa.authority.len()), (0, 1));
    assert_eq!(aaaa.rcode, ResponseCode::NoError);
    // IPv6-only: AAAA from the task, A is NODATA.
    assert_eq!(
        data(&ask(&s, "new6.example.com.", RecordType::AAAA)),
        ["new6.example.com. 30 2001:db8::10"]
    );
    let a = ask(&s, "new6.example.com.", RecordType::A);
    assert_eq!((a.answers.len(), a.authority.len()), (0, 1));
}

#[test]
fn cnames_out_of_the_zone_are_not_followed() {
    let zone = format!("{ZONE}ext CNAME www.example.net.\n");
    let s = snapshot_of(
        &zone,
        &tasks("  - { hostname: cdn.example.com, origin_group: out, ttl: 30 }\n"),
    );
    for (name, want) in [
        ("ext.example.com.", "ext.example.com. 3600 www.example.net."),
        (
            "cdn.example.com.",
            "cdn.example.com. 30 edge.cdn.example.net.",
        ),
    ] {
        let a = ask(&s, name, RecordType::A);
        assert_eq!(data(&a), [want]);
        assert_eq!((a.rcode, a.authority.len()), (ResponseCode::NoError, 0));
    }
}

#[test]
fn ds_below_a_cut_is_a_referral() {
    let s = snapshot("");
    let ds = ask(&s, "host.sub.example.com.", RecordType::DS);
    assert!(!ds.authoritative);
    assert_eq!(
        ds.authority
            .iter()
            .map(|r| (r.name.to_string(), r.record_type()))
            .collect::<Vec<_>>(),
        [("sub.example.com.".to_owned(), RecordType::NS)]
    );
}

#[test]
fn debug_names_the_zones() {
    let text = format!("{:?}", snapshot(""));
    assert!(text.contains("example.com."), "{text}");
}

#[test]
fn ns_mx_and_srv_answers_carry_the_addresses_of_in_zone_targets() {
    let zone = format!(
        "{ZONE}@ MX 10 www\n@ MX 20 mail.example.net.\n@ MX 30 ns.sub\n\
         _sip._tcp SRV 0 5 5060 ns1\n"
    );
    let compile = |lb: &str| {
        let spec = site::parse(lb).unwrap();
        let site = site::validate(&origin(), &spec).unwrap();
        let data = crate::zone::parse(&zone, Path::new("t.zone"), &origin())
            .unwrap()
            .into();
        Snapshot::compile(&[data], &[&site], None, &Health::default()).unwrap()
    };
    let additional = |a: &Answer| -> Vec<String> {
        a.additional
            .iter()
            .map(|r| format!("{} {}", r.name, r.data))
            .collect()
    };
    let plain = compile("");
    let ns = ask(&plain, "example.com.", RecordType::NS);
    assert_eq!(additional(&ns), ["ns1.example.com. 192.0.2.53"]);
    // Only in-zone targets this zone answers for: not out of zone, not glue below a cut,
    // and only address records (www's TXT stays out).
    let mx = ask(&plain, "example.com.", RecordType::MX);
    assert_eq!(mx.answers.len(), 3);
    assert_eq!(additional(&mx), ["www.example.com. 192.0.2.80"]);
    let srv = ask(&plain, "_sip._tcp.example.com.", RecordType::SRV);
    assert_eq!(additional(&srv), ["ns1.example.com. 192.0.2.53"]);
    // A name a task answers is chosen per query: no static address for it.
    let with_task = compile(TASK);
    let mx = ask(&with_task, "example.com.", RecordType::MX);
    assert_eq!(mx.answers.len(), 3);
    assert!(mx.additional.is_empty(), "{:?}", additional(&mx));
    // Other types carry none.
    assert!(
        ask(&plain, "www.example.com.", RecordType::A)
            .additional
            .is_empty()
    );
}

#[test]
fn a_ds_at_a_cut_is_answered_by_the_parent_and_unknown_types_are_served() {
    let zone = format!(
        "{ZONE}sub DS 60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118\n\
         sub RRSIG DS 5 3 3600 20300101000000 20200101000000 2642 example.com. AwEAAQ==\n\
         opaque TYPE65280 \\# 4 0a000001\n"
    );
    let zone = crate::zone::parse(&zone, Path::new("t.zone"), &origin()).unwrap();
    let s = Snapshot::compile(&[zone.into()], &[], None, &Health::default()).unwrap();
    // RFC 4035 §3.1.4.1: the parent side of the cut is authoritative for DS.
    let ds = ask(&s, "sub.example.com.", RecordType::DS);
    assert!(ds.authoritative);
    assert_eq!(
        ds.answers
            .iter()
            .map(Record::record_type)
            .collect::<Vec<_>>(),
        [RecordType::DS]
    );
    // Below the cut, or any other type at it, is still a referral.
    let a = ask(&s, "sub.example.com.", RecordType::A);
    assert!(!a.authoritative);
    let unknown = ask(&s, "opaque.example.com.", RecordType::Unknown(65280));
    assert_eq!(unknown.answers.len(), 1);
    assert_eq!(unknown.answers[0].record_type(), RecordType::Unknown(65280));
}

/// A zone signed elsewhere, by hand (the signatures are not real: nothing here checks
/// them). Canonical order: example.com, a, ns1, sub, *.w; w is an empty non-terminal.
const SIGNED: &str = "$TTL 3600\n\
    @ SOA ns1 hostmaster 1 7200 900 1209600 300\n\
    @ RRSIG SOA 13 2 3600 20300101000000 20200101000000 1 example.com. AAAA\n\
    @ NS ns1\n\
    @ RRSIG NS 13 2 3600 20300101000000 20200101000000 1 example.com. AAAA\n\
    @ 300 NSEC a.example.com. NS SOA RRSIG NSEC\n\
    @ 300 RRSIG NSEC 13 2 300 20300101000000 20200101000000 1 example.com. AAAA\n\
    a A 192.0.2.1\n\
    a RRSIG A 13 3 3600 20300101000000 20200101000000 1 example.com. AAAA\n\
    a 300 NSEC ns1.example.com. A RRSIG NSEC\n\
    a 300 RRSIG NSEC 13 3 300 20300101000000 20200101000000 1 example.com. AAAA\n\
    ns1 A 192.0.2.53\n\
    ns1 RRSIG A 13 3 3600 20300101000000 20200101000000 1 example.com. AAAA\n\
    ns1 300 NSEC sub.example.com. A RRSIG NSEC\n\
    ns1 300 RRSIG NSEC 13 3 300 20300101000000 20200101000000 1 example.com. AAAA\n\
    sub NS ns.example.net.\n\
    sub 300 NSEC *.w.example.com. NS RRSIG NSEC\n\
    sub 300 RRSIG NSEC 13 3 300 20300101000000 20200101000000 1 example.com. AAAA\n\
    *.w TXT \"wild\"\n\
    *.w RRSIG TXT 13 3 3600 20300101000000 20200101000000 1 example.com. AAAA\n\
    *.w 300 NSEC example.com. TXT RRSIG NSEC\n\
    *.w 300 RRSIG NSEC 13 4 300 20300101000000 20200101000000 1 example.com. AAAA\n";

fn signed_snapshot() -> Snapshot {
    let zone = crate::zone::parse(SIGNED, Path::new("t.zone"), &origin()).unwrap();
    Snapshot::compile(&[zone.into()], &[], None, &Health::default()).unwrap()
}

fn ask_do(s: &Snapshot, name: &str, rtype: RecordType, dnssec_ok: bool) -> Answer {
    let client = Client {
        addr: "192.0.2.1".parse().unwrap(),
        source_prefix: 32,
    };
    s.answer_with(
        &Name::from_ascii(name).unwrap(),
        rtype,
        dnssec_ok,
        &client,
        &mut SmallRng::seed_from_u64(1),
    )
}

/// Each record as `owner TYPE`, an RRSIG as `owner RRSIG covered`, sorted.
fn kinds(records: &[Record]) -> Vec<String> {
    let mut kinds: Vec<String> = records
        .iter()
        .map(|r| match r.record_type() {
            RecordType::RRSIG => {
                // hickory decodes RRSIG as opaque RDATA here: the type covered leads it.
                let rdata = r.data.to_bytes().expect("RDATA encodes");
                let covered = RecordType::from(u16::from_be_bytes([rdata[0], rdata[1]]));
                format!("{} RRSIG {covered}", r.name)
            }
            other => format!("{} {other}", r.name),
        })
        .collect();
    kinds.sort();
    kinds
}

/// The proofs RFC 4035 §3.1.3 asks for, worked out by hand on the chain of SIGNED.
#[test]
fn signed_zone_answers_carry_signatures_and_nsec_proofs_with_do() {
    let s = signed_snapshot();
    // NXDOMAIN: the NSEC covering the name (a, then ns1) and the one covering the
    // wildcard at the closest encloser, *.example.com (the apex's, up to a).
    let nx = ask_do(&s, "b.example.com.", RecordType::A, true);
    assert_eq!(nx.rcode, ResponseCode::NXDomain);
    assert_eq!(
        kinds(&nx.authority),
        [
            "a.example.com. NSEC",
            "a.example.com. RRSIG NSEC",
            "example.com. NSEC",
            "example.com. RRSIG NSEC",
            "example.com. RRSIG SOA",
            "example.com. SOA",
        ]
    );
    // The SOA's RRSIG has the SOA's negative TTL (RFC 2308 §5), not its own 3600.
    assert!(nx.authority.iter().all(|r| r.ttl == 300), "{nx:?}");
    // Without DO, nothing of that.
    let plain = ask_do(&s, "b.example.com.", RecordType::A, false);
    assert_eq!(kinds(&plain.authority), ["example.com. SOA"]);

    // NODATA: the name's own NSEC; at an empty non-terminal, the NSEC covering it.
    let nodata = ask_do(&s, "a.example.com.", RecordType::MX, true);
    assert_eq!(
        kinds(&nodata.authority),
        [
            "a.example.com. NSEC",
            "a.example.com. RRSIG NSEC",
            "example.com. RRSIG SOA",
            "example.com. SOA",
        ]
    );
    let ent = ask_do(&s, "w.example.com.", RecordType::A, true);
    assert_eq!(ent.rcode, ResponseCode::NoError);
    assert_eq!(
        kinds(&ent.authority),
        [
            "example.com. RRSIG SOA",
            "example.com. SOA",
            "sub.example.com. NSEC",
            "sub.example.com. RRSIG NSEC",
        ]
    );

    // A wildcard answer: the RRset and its RRSIG under the name asked, and the NSEC
    // proving that no closer name exists (the wildcard's own covers x.w).
    let wild = ask_do(&s, "x.w.example.com.", RecordType::TXT, true);
    assert_eq!(
        kinds(&wild.answers),
        ["x.w.example.com. RRSIG TXT", "x.w.example.com. TXT"]
    );
    assert_eq!(
        kinds(&wild.authority),
        ["*.w.example.com. NSEC", "*.w.example.com. RRSIG NSEC"]
    );
    // NODATA at a wildcard: the wildcard's NSEC and the one covering the name.
    let wild_nodata = ask_do(&s, "x.w.example.com.", RecordType::A, true);
    assert_eq!(
        kinds(&wild_nodata.authority),
        [
            "*.w.example.com. NSEC",
            "*.w.example.com. RRSIG NSEC",
            "example.com. RRSIG SOA",
            "example.com. SOA",
        ]
    );

    // A referral without DS: the NS, and the cut's NSEC proving there is none.
    let referral = ask_do(&s, "x.sub.example.com.", RecordType::A, true);
    assert!(!referral.authoritative);
    assert_eq!(
        kinds(&referral.authority),
        [
            "sub.example.com. NS",
            "sub.example.com. NSEC",
            "sub.example.com. RRSIG NSEC",
        ]
    );

    // Additional data comes with its RRSIGs.
    let ns = ask_do(&s, "example.com.", RecordType::NS, true);
    assert_eq!(
        kinds(&ns.answers),
        ["example.com. NS", "example.com. RRSIG NS"]
    );
    assert_eq!(
        kinds(&ns.additional),
        ["ns1.example.com. A", "ns1.example.com. RRSIG A"]
    );

    // A query for RRSIG gets those of one RRset, the type covered first (A before
    // NSEC), with or without DO, as Knot answers it.
    for dnssec_ok in [false, true] {
        let rrsig = ask_do(&s, "a.example.com.", RecordType::RRSIG, dnssec_ok);
        assert_eq!(kinds(&rrsig.answers), ["a.example.com. RRSIG A"]);
    }
}

#[test]
fn a_task_in_a_signed_zone_is_refused() {
    let zone = crate::zone::parse(SIGNED, Path::new("t.zone"), &origin()).unwrap();
    let lb = TASK.replace("www.example.com", "lb.example.com");
    let site = site::validate(&origin(), &site::parse(&lb).unwrap()).unwrap();
    let errors = Snapshot::compile(&[zone.into()], &[&site], None, &Health::default()).unwrap_err();
    assert!(
        errors[0]
            .message
            .contains("zone example.com is signed elsewhere: a task there would answer unsigned"),
        "{}",
        errors[0].message
    );
    // The same zone unsigned (no RRSIG over its SOA) takes the task.
    let unsigned: String = SIGNED
        .lines()
        .filter(|l| !l.contains("RRSIG SOA"))
        .map(|l| format!("{l}\n"))
        .collect();
    let zone = crate::zone::parse(&unsigned, Path::new("t.zone"), &origin()).unwrap();
    assert!(Snapshot::compile(&[zone.into()], &[&site], None, &Health::default()).is_ok());
}

/// An RRSIG over the SOA too short to be one never reaches the signed zone's code: RFC
/// 3597's generic form of a known type must hold that type's data (as NSD checks), so
/// the zone file is refused at its line. A well-formed one loads.
#[test]
fn a_malformed_rrsig_over_the_soa_is_refused_at_its_line() {
    let text = format!("{ZONE}@ RRSIG \\# 2 0006\n");
    let err = crate::zone::parse(&text, Path::new("t.zone"), &origin()).unwrap_err();
    assert!(
        err.to_string()
            .contains("not valid RRSIG RDATA: it is too short"),
        "{err}"
    );
    let rrsig = "0006 0d 02 00000e10 00000000 00000000 3039 076578616d706c6503636f6d00 00";
    let text = format!("{ZONE}@ RRSIG \\# 32 {rrsig}\n");
    let zone = crate::zone::parse(&text, Path::new("t.zone"), &origin()).unwrap();
    let s = Snapshot::compile(&[zone.into()], &[], None, &Health::default()).unwrap();
    let nx = ask_do(&s, "nope.example.com.", RecordType::A, true);
    assert_eq!(nx.rcode, ResponseCode::NXDomain);
}

/// Compact denial (RFC 9824) signs an NSEC per name asked and keeps it in a table of a
/// fixed number of slots: 100,000 random names churn the table but never grow it, and
/// the denials given after the flood still verify with the zone's ZSK (checked here with
/// ring's verifier over the signed data as RFC 4034 §3.1.8.1 builds it, not with lbdns's
/// signing code).
#[test]
fn compact_denials_of_random_names_stay_in_a_fixed_table_and_verify() {
    use rand::RngExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    std::fs::write(
        dir.path().join("zones/example.com.zone"),
        format!("$ORIGIN example.com.\n{ZONE}"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("zones/example.com.lb.yaml"),
        "dnssec: {denial: compact}\n",
    )
    .unwrap();
    let sources = crate::load::Sources {
        dir: dir.path().to_owned(),
        geoip: None,
        asn_db: None,
    };
    let (_config, s) = crate::load::load(&sources, &Health::default(), None).expect("loads");
    let apex: &[u8] = b"\x07example\x03com\x00";
    let zone = s.zones.get(apex).expect("the zone");
    let signer = zone.data.signer.as_ref().expect("signed by lbdns");
    let cache = signer.compact_cache().expect("compact denial");
    let mut rng = SmallRng::seed_from_u64(9);
    for i in 0..100_000u32 {
        let name = format!("{:016x}.example.com.", rng.random::<u64>());
        let a = ask_do(&s, &name, RecordType::A, true);
        if i % 10_000 == 0 {
            assert_eq!(a.rcode, ResponseCode::NoError, "{name}");
            assert_eq!(kinds(&a.authority).len(), 4, "{name}: {a:?}");
        }
    }
    assert_eq!(cache.slots(), crate::dnssec::compact::SLOTS);
    let filled = cache.filled();
    assert!(
        filled > cache.slots() / 2 && filled <= cache.slots(),
        "{filled} of {} slots",
        cache.slots()
    );

    // The ZSK's public key: the DNSKEY with flags 256, algorithm 13 (RFC 6605 §4: x | y).
    let keys = ask_do(&s, "example.com.", RecordType::DNSKEY, true);
    let zsk: Vec<u8> = keys
        .answers
        .iter()
        .filter(|r| r.record_type() == RecordType::DNSKEY)
        .map(|r| r.data.to_bytes().unwrap())
        .find(|rdata| rdata[..4] == [1, 0, 3, 13])
        .expect("a ZSK")[4..]
        .to_vec();
    let nx = ask_do(&s, "after.example.com.", RecordType::A, true);
    assert_eq!(nx.rcode, ResponseCode::NoError);
    let nsec = nx
        .authority
        .iter()
        .find(|r| r.record_type() == RecordType::NSEC)
        .expect("an NSEC");
    let rrsig = nx
        .authority
        .iter()
        .filter(|r| r.record_type() == RecordType::RRSIG)
        .map(|r| r.data.to_bytes().unwrap())
        .find(|rdata| rdata[..2] == 47u16.to_be_bytes())
        .expect("the NSEC's RRSIG");
    // Next name \000.after.example.com., bitmap RRSIG NSEC NXNAME (RFC 9824 §3.1).
    let owner: &[u8] = b"\x05after\x07example\x03com\x00";
    let mut expected = vec![1, 0];
    expected.extend_from_slice(owner);
    expected.extend([0, 17, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80]);
    let nsec_rdata = nsec.data.to_bytes().unwrap();
    assert_eq!(nsec_rdata, expected);
    // RFC 9077: the NSEC's TTL is the lower of the SOA's TTL and MINIMUM (300).
    assert_eq!(nsec.ttl, 300);
    // RRSIG RDATA: 18 bytes of fields, the signer's name, then the signature.
    let signer_name = b"\x07example\x03com\x00";
    let fields = 18 + signer_name.len();
    let mut signed = rrsig[..fields].to_vec();
    signed.extend_from_slice(owner);
    signed.extend_from_slice(&47u16.to_be_bytes());
    signed.extend_from_slice(&1u16.to_be_bytes());
    signed.extend_from_slice(&rrsig[4..8]);
    signed.extend_from_slice(&(nsec_rdata.len() as u16).to_be_bytes());
    signed.extend_from_slice(&nsec_rdata);
    let mut public = vec![4];
    public.extend_from_slice(&zsk);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &public)
        .verify(&signed, &rrsig[fields..])
        .expect("the NSEC's RRSIG verifies with the ZSK");
}
