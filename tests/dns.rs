//! DNS behaviour expected of an authoritative server (SPEC §9, and the ECS rules of §4),
//! checked against the real binary over UDP and TCP with the hickory client, hand-built
//! raw packets and `dig`.
//!
//! Expectations come from the RFCs and from the zone data written here, not from the
//! implementation: e.g. negative TTLs are computed from the SOA fields below (RFC 2308),
//! truncation limits from RFC 1035 / RFC 6891 and the 1232-byte payload of SPEC §9.

mod common;
use common::*;

use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, Record, RecordType};

// ---------------------------------------------------------------------------------------
// Zone data
// ---------------------------------------------------------------------------------------

/// example.com: SOA TTL above MINIMUM, so negative answers use MINIMUM.
const COM_SOA_TTL: u32 = 3600;
const COM_SOA_MIN: u32 = 300;
/// example.org: SOA TTL below MINIMUM, so negative answers use the SOA's own TTL.
const ORG_SOA_TTL: u32 = 120;
const ORG_SOA_MIN: u32 = 900;
/// sub.example.com, a child zone served next to its parent.
const SUB_SOA_TTL: u32 = 600;
const SUB_SOA_MIN: u32 = 60;

/// A records at `mid`: too many for 512 bytes, few enough for 1232.
const MID_COUNT: usize = 40;
/// A records at `big` and `manyaddr`: too many for 1232 bytes.
const BIG_COUNT: usize = 100;

/// The payload SPEC §9 says lbdns offers.
const SERVER_PAYLOAD: u16 = 1232;

fn com_zone() -> String {
    let mut zone = format!(
        "$ORIGIN example.com.\n\
         $TTL {COM_SOA_TTL}\n\
         @        IN SOA ns1.example.com. hostmaster.example.com. 2026010101 7200 900 1209600 {COM_SOA_MIN}\n\
         @        NS    ns1\n\
         @        NS    ns2\n\
         @        MX    10 mail\n\
         @        TXT   \"apex\"\n\
         ns1      A     192.0.2.53\n\
         ns2      A     192.0.2.54\n\
         mail     A     192.0.2.25\n\
         www      600 A 192.0.2.80\n\
         www      TXT   \"www text\"\n\
         MiXeD    A     192.0.2.9\n\
         ; a chain of two CNAMEs inside the zone\n\
         a        CNAME b\n\
         b        CNAME c\n\
         c        120 A 192.0.2.3\n\
         dangling CNAME nothere\n\
         out      CNAME www.example.net.\n\
         ; wildcards; y.w is an empty non-terminal (x.y.w exists)\n\
         *.w      A     192.0.2.70\n\
         *.w      TXT   \"wild\"\n\
         x.y.w    A     192.0.2.71\n\
         *.alias  CNAME www\n\
         ; a delegation that this server does not serve, with in-bailiwick glue\n\
         dev      NS    ns1.dev\n\
         dev      NS    ns2.dev\n\
         ns1.dev  A     192.0.2.55\n\
         ns2.dev  AAAA  2001:db8::55\n\
         ; a delegation to a zone this server also serves\n\
         sub      NS    ns1.sub\n\
         ns1.sub  A     192.0.2.56\n"
    );
    for i in 1..=MID_COUNT {
        zone.push_str(&format!("mid A 192.0.2.{i}\n"));
    }
    for i in 1..=BIG_COUNT {
        zone.push_str(&format!("big A 198.51.100.{i}\n"));
        zone.push_str(&format!("manyaddr A 203.0.113.{i}\n"));
    }
    zone
}

fn sub_zone() -> String {
    format!(
        "$ORIGIN sub.example.com.\n\
         $TTL {SUB_SOA_TTL}\n\
         @     IN SOA ns1.sub.example.com. hostmaster.example.com. 1 7200 900 1209600 {SUB_SOA_MIN}\n\
         @     NS  ns1\n\
         ns1   A   192.0.2.56\n\
         host  A   192.0.2.57\n"
    )
}

fn org_zone() -> String {
    format!(
        "$ORIGIN example.org.\n\
         $TTL 3600\n\
         @     {ORG_SOA_TTL} IN SOA ns1.example.org. hostmaster.example.org. 1 7200 900 1209600 {ORG_SOA_MIN}\n\
         @     NS  ns1\n\
         ns1   A   192.0.2.153\n\
         www   A   192.0.2.180\n"
    )
}

/// Serves example.com, its child sub.example.com and example.org.
fn serve() -> (Site, Server) {
    let site = Site::new(&[
        ("example.com.zone", &com_zone()),
        ("sub.example.com.zone", &sub_zone()),
        ("example.org.zone", &org_zone()),
    ]);
    let server = site.serve();
    (site, server)
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

/// A plain UDP query (no EDNS) for `qname` spelled exactly as given: `Name::from_ascii`
/// keeps the case, where `str::parse` (IDNA) would lower it.
fn ask(server: &Server, qname: &str, rtype: RecordType) -> Message {
    server.udp(&Message::query_for(&name(qname), rtype))
}

/// Names of records as text, case preserved.
fn owners(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.name.to_ascii()).collect()
}

fn types(records: &[Record]) -> Vec<RecordType> {
    records.iter().map(Record::record_type).collect()
}

/// Checks a negative answer (NXDOMAIN or NODATA) as RFC 2308 describes it: AA, no answer
/// (unless `answers` CNAMEs lead there), exactly the zone's SOA in authority with TTL
/// min(SOA TTL, MINIMUM).
fn assert_negative(
    reply: &Message,
    rcode: ResponseCode,
    zone: &str,
    soa_ttl: u32,
    soa_min: u32,
    what: &str,
) {
    assert_eq!(reply.metadata.response_code, rcode, "{what}: {reply}");
    assert!(
        reply.metadata.authoritative,
        "{what}: AA must be set: {reply}"
    );
    assert!(!reply.metadata.truncation, "{what}: {reply}");
    assert_eq!(
        types(&reply.authorities),
        [RecordType::SOA],
        "{what}: the authority section must hold exactly the zone SOA: {reply}"
    );
    let soa = &reply.authorities[0];
    assert_eq!(soa.name, name(zone), "{what}: SOA owner: {reply}");
    assert_eq!(
        soa.ttl,
        soa_ttl.min(soa_min),
        "{what}: negative TTL must be min(SOA TTL {soa_ttl}, MINIMUM {soa_min}): {reply}"
    );
    match &soa.data {
        RData::SOA(data) => assert_eq!(data.minimum, soa_min, "{what}: {reply}"),
        other => panic!("{what}: not an SOA: {other}"),
    }
}

/// Asserts the server process is alive and still answers a plain query.
fn assert_serving(server: &mut Server, after: &str) {
    assert!(
        server.is_running(),
        "lbdns exited after {after}:\n{}",
        server.log()
    );
    let reply = server.ask("mail.example.com.", RecordType::A);
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NoError,
        "after {after}: {reply}"
    );
    assert_eq!(answers(&reply), ["192.0.2.25"], "after {after}: {reply}");
}

/// The pieces of `dig` output the tests look at.
#[derive(Debug, Default)]
struct Dig {
    status: String,
    flags: Vec<String>,
    edns_version: Option<u8>,
    edns_udp: Option<u16>,
    client_subnet: Option<String>,
    question: Vec<String>,
    answer: Vec<DigRr>,
    authority: Vec<DigRr>,
    additional: Vec<DigRr>,
    text: String,
}

#[derive(Debug)]
struct DigRr {
    name: String,
    ttl: u32,
    rtype: String,
    data: String,
}

impl Dig {
    fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

fn dig(server: &Server, args: &[&str]) -> Dig {
    let text = server.dig(args);
    let mut out = Dig {
        text: text.clone(),
        ..Dig::default()
    };
    let mut section = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(";; ->>HEADER<<-") {
            let status = rest.split("status: ").nth(1).expect("status");
            out.status = status.split(',').next().unwrap().trim().to_string();
        } else if let Some(rest) = line.strip_prefix(";; flags:") {
            let flags = rest.split(';').next().unwrap();
            out.flags = flags.split_whitespace().map(str::to_string).collect();
        } else if let Some(rest) = line.strip_prefix("; EDNS: version: ") {
            out.edns_version = rest.split(',').next().and_then(|v| v.trim().parse().ok());
            out.edns_udp = rest
                .split("udp: ")
                .nth(1)
                .and_then(|v| v.trim().parse().ok());
        } else if let Some(rest) = line.strip_prefix("; CLIENT-SUBNET: ") {
            out.client_subnet = Some(rest.trim().to_string());
        } else if line.starts_with(";; ") && line.ends_with(" SECTION:") {
            section = if line.contains("QUESTION") {
                "question"
            } else if line.contains("ANSWER") {
                "answer"
            } else if line.contains("AUTHORITY") {
                "authority"
            } else if line.contains("ADDITIONAL") {
                "additional"
            } else {
                ""
            };
        } else if line.trim().is_empty() {
            section = "";
        } else if section == "question" {
            out.question.push(
                line.trim_start_matches(';')
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .into(),
            );
        } else if !section.is_empty() && !line.starts_with(';') {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let rr = DigRr {
                name: fields[0].to_string(),
                ttl: fields[1].parse().expect("TTL"),
                rtype: fields[3].to_string(),
                data: fields[4..].join(" "),
            };
            match section {
                "answer" => out.answer.push(rr),
                "authority" => out.authority.push(rr),
                _ => out.additional.push(rr),
            }
        }
    }
    assert!(!out.status.is_empty(), "dig {args:?} got no reply:\n{text}");
    out
}

// Raw packets ---------------------------------------------------------------------------

fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    [id, flags, qd, an, ns, ar]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

fn wire_name(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in text.trim_end_matches('.').split('.') {
        out.push(u8::try_from(label.len()).unwrap());
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn question(qname: &str, rtype: RecordType) -> Vec<u8> {
    let mut out = wire_name(qname);
    out.extend_from_slice(&u16::from(rtype).to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // IN
    out
}

/// An OPT RR (RFC 6891 §6.1.2) with `rdata` as its options, verbatim.
fn opt_rr(payload: u16, version: u8, rdata: &[u8]) -> Vec<u8> {
    let mut out = vec![0]; // root owner
    out.extend_from_slice(&41u16.to_be_bytes());
    out.extend_from_slice(&payload.to_be_bytes());
    out.extend_from_slice(&[0, version, 0, 0]); // extended RCODE, VERSION, flags
    out.extend_from_slice(&u16::try_from(rdata.len()).unwrap().to_be_bytes());
    out.extend_from_slice(rdata);
    out
}

/// One EDNS option: code, length (as given, possibly a lie), data.
fn edns_option(code: u16, length: u16, data: &[u8]) -> Vec<u8> {
    let mut out = code.to_be_bytes().to_vec();
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// An ECS option (RFC 7871 §6) with an honest option length around `data`
/// (FAMILY, SOURCE PREFIX-LENGTH, SCOPE PREFIX-LENGTH, ADDRESS as given).
fn ecs(data: &[u8]) -> Vec<u8> {
    edns_option(8, u16::try_from(data.len()).unwrap(), data)
}

/// A query for `qname`/`rtype` with an OPT RR whose RDATA is `opt_rdata` verbatim.
fn raw_query_with_opt(id: u16, qname: &str, rtype: RecordType, opt_rdata: &[u8]) -> Vec<u8> {
    let mut out = header(id, 0, 1, 0, 0, 1);
    out.extend(question(qname, rtype));
    out.extend(opt_rr(4096, 0, opt_rdata));
    out
}

fn raw_id(reply: &[u8]) -> u16 {
    u16::from_be_bytes([reply[0], reply[1]])
}

fn raw_is_response(reply: &[u8]) -> bool {
    reply[2] & 0x80 != 0
}

fn raw_rcode_low(reply: &[u8]) -> u8 {
    reply[3] & 0x0f
}

/// Where the last record the header counts ends, walking the wire format (RFC 1035 §4.1).
fn wire_end(message: &[u8]) -> Result<usize, String> {
    let count = |at: usize| usize::from(u16::from_be_bytes([message[at], message[at + 1]]));
    let skip_name = |mut at: usize| -> Result<usize, String> {
        loop {
            let len = *message.get(at).ok_or("name past the end")?;
            match len {
                0 => return Ok(at + 1),
                l if l & 0xc0 == 0xc0 => return Ok(at + 2),
                l => at += 1 + usize::from(l),
            }
        }
    };
    let mut at = 12;
    for _ in 0..count(4) {
        at = skip_name(at)? + 4;
    }
    for _ in 0..count(6) + count(8) + count(10) {
        at = skip_name(at)? + 10;
        if at > message.len() {
            return Err("record header past the end".into());
        }
        at += usize::from(u16::from_be_bytes([message[at - 2], message[at - 1]]));
    }
    if at > message.len() {
        return Err("record data past the end".into());
    }
    Ok(at)
}

/// Why `reply` is not a FORMERR response to the query with `id`, if it is not.
fn formerr_problem(reply: Option<Vec<u8>>, id: u16) -> Result<(), String> {
    let Some(reply) = reply else {
        return Err("no reply".into());
    };
    if reply.len() < 12 || raw_id(&reply) != id || !raw_is_response(&reply) {
        return Err(format!("not a response to query {id}: {reply:?}"));
    }
    match Message::from_vec(&reply) {
        Ok(message) if message.metadata.response_code != ResponseCode::FormErr => {
            Err(format!("{}: {message}", message.metadata.response_code))
        }
        Ok(message) if !message.answers.is_empty() => Err(format!("answers in: {message}")),
        Ok(_) => Ok(()),
        Err(_) if raw_rcode_low(&reply) == 1 => Ok(()),
        Err(e) => Err(format!("unparsable reply ({e}): {reply:?}")),
    }
}

/// Asserts `reply` is a FORMERR response to the query with `id`.
fn assert_formerr(reply: Option<Vec<u8>>, id: u16, what: &str) {
    if let Err(problem) = formerr_problem(reply, id) {
        panic!("{what}: expected FORMERR, got {problem}");
    }
}

/// Asserts a malformed packet was either dropped or answered FORMERR (SPEC §9).
fn assert_formerr_or_dropped(reply: Option<Vec<u8>>, id: u16, what: &str) {
    if reply.is_some() {
        assert_formerr(reply, id, what);
    }
}

const SHORT_WAIT: Duration = Duration::from_millis(400);
const WAIT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------
// AA, NXDOMAIN, NODATA (RFC 1035, RFC 2308)
// ---------------------------------------------------------------------------------------

#[test]
fn authoritative_answers_have_aa_and_the_zone_ttls() {
    let (_site, server) = serve();
    let reply = ask(&server, "www.example.com.", RecordType::A);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative, "{reply}");
    assert!(!reply.metadata.recursion_available, "{reply}");
    assert_eq!(answers(&reply), ["192.0.2.80"]);
    assert_eq!(reply.answers[0].ttl, 600, "the record's own TTL");
    assert!(reply.authorities.is_empty(), "{reply}");

    // A name without an explicit TTL takes $TTL.
    let reply = ask(&server, "mail.example.com.", RecordType::A);
    assert_eq!(reply.answers[0].ttl, COM_SOA_TTL);

    // The SOA itself, asked for, keeps its own TTL (not the negative one).
    let reply = ask(&server, "example.com.", RecordType::SOA);
    assert!(reply.metadata.authoritative);
    assert_eq!(types(&reply.answers), [RecordType::SOA]);
    assert_eq!(reply.answers[0].ttl, COM_SOA_TTL);

    // The same with dig.
    let d = dig(&server, &["www.example.com.", "A"]);
    assert_eq!(d.status, "NOERROR");
    assert!(d.has_flag("aa") && d.has_flag("qr"), "{}", d.text);
    assert!(!d.has_flag("ra") && !d.has_flag("tc"), "{}", d.text);
    assert_eq!(d.answer.len(), 1, "{}", d.text);
    assert_eq!(
        (
            d.answer[0].ttl,
            d.answer[0].rtype.as_str(),
            d.answer[0].data.as_str()
        ),
        (600, "A", "192.0.2.80")
    );
}

#[test]
fn nxdomain_carries_the_soa_with_minimum_ttl_when_soa_ttl_is_larger() {
    let (_site, server) = serve();
    let reply = ask(&server, "nope.example.com.", RecordType::A);
    assert!(reply.answers.is_empty(), "{reply}");
    assert_negative(
        &reply,
        ResponseCode::NXDomain,
        "example.com.",
        COM_SOA_TTL,
        COM_SOA_MIN,
        "NXDOMAIN in example.com",
    );

    let d = dig(&server, &["nope.example.com.", "A"]);
    assert_eq!(d.status, "NXDOMAIN");
    assert!(d.has_flag("aa"), "{}", d.text);
    assert!(d.answer.is_empty(), "{}", d.text);
    assert_eq!(d.authority.len(), 1, "{}", d.text);
    assert_eq!(d.authority[0].rtype, "SOA");
    assert_eq!(d.authority[0].name, "example.com.");
    assert_eq!(d.authority[0].ttl, COM_SOA_TTL.min(COM_SOA_MIN));
}

#[test]
fn nodata_carries_the_soa_with_minimum_ttl_when_soa_ttl_is_larger() {
    let (_site, server) = serve();
    // www exists with A and TXT, not AAAA.
    let reply = ask(&server, "www.example.com.", RecordType::AAAA);
    assert!(reply.answers.is_empty(), "{reply}");
    assert_negative(
        &reply,
        ResponseCode::NoError,
        "example.com.",
        COM_SOA_TTL,
        COM_SOA_MIN,
        "NODATA in example.com",
    );

    let d = dig(&server, &["www.example.com.", "AAAA"]);
    assert_eq!(d.status, "NOERROR");
    assert!(d.has_flag("aa") && d.answer.is_empty(), "{}", d.text);
    assert_eq!(d.authority.len(), 1, "{}", d.text);
    assert_eq!(d.authority[0].rtype, "SOA");
    assert_eq!(d.authority[0].ttl, COM_SOA_TTL.min(COM_SOA_MIN));
}

#[test]
fn negative_answers_use_the_soa_ttl_when_it_is_below_minimum() {
    let (_site, server) = serve();
    let nx = ask(&server, "nope.example.org.", RecordType::A);
    assert_negative(
        &nx,
        ResponseCode::NXDomain,
        "example.org.",
        ORG_SOA_TTL,
        ORG_SOA_MIN,
        "NXDOMAIN in example.org",
    );
    let nodata = ask(&server, "www.example.org.", RecordType::MX);
    assert!(nodata.answers.is_empty(), "{nodata}");
    assert_negative(
        &nodata,
        ResponseCode::NoError,
        "example.org.",
        ORG_SOA_TTL,
        ORG_SOA_MIN,
        "NODATA in example.org",
    );

    let d = dig(&server, &["nope.example.org.", "A"]);
    assert_eq!(d.status, "NXDOMAIN");
    assert_eq!(d.authority.len(), 1, "{}", d.text);
    assert_eq!(d.authority[0].ttl, ORG_SOA_TTL.min(ORG_SOA_MIN));
}

#[test]
fn nodata_at_an_empty_non_terminal() {
    let (_site, server) = serve();
    // y.w exists only because x.y.w does (RFC 4592 §2.2.2): NODATA, not NXDOMAIN.
    let reply = ask(&server, "y.w.example.com.", RecordType::A);
    assert!(reply.answers.is_empty(), "{reply}");
    assert_negative(
        &reply,
        ResponseCode::NoError,
        "example.com.",
        COM_SOA_TTL,
        COM_SOA_MIN,
        "empty non-terminal y.w",
    );
}

// ---------------------------------------------------------------------------------------
// REFUSED and several zones
// ---------------------------------------------------------------------------------------

#[test]
fn names_outside_every_zone_are_refused() {
    let (_site, server) = serve();
    for qname in [
        "www.example.net.",
        "com.",            // the parent of a served zone
        ".",               // the root
        "notexample.com.", // shares a suffix, not a label boundary
        "example.co.",
    ] {
        let reply = ask(&server, qname, RecordType::A);
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::Refused,
            "{qname}: {reply}"
        );
        assert!(
            !reply.metadata.authoritative,
            "{qname}: AA on REFUSED: {reply}"
        );
        assert!(
            reply.answers.is_empty() && reply.authorities.is_empty(),
            "{qname}: {reply}"
        );
        assert_eq!(reply.queries.len(), 1, "{qname}: question echoed");
    }
    let d = dig(&server, &["www.example.net.", "A"]);
    assert_eq!(d.status, "REFUSED", "{}", d.text);
    assert!(!d.has_flag("aa"), "{}", d.text);
}

#[test]
fn a_served_child_zone_answers_its_own_names() {
    let (_site, server) = serve();
    // Names of the child are answered from the child, authoritatively: no referral.
    let reply = ask(&server, "host.sub.example.com.", RecordType::A);
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NoError,
        "{reply}"
    );
    assert!(reply.metadata.authoritative, "{reply}");
    assert_eq!(answers(&reply), ["192.0.2.57"]);
    assert_eq!(reply.answers[0].ttl, SUB_SOA_TTL, "the child's $TTL");

    // The child's apex: its SOA and NS, with AA.
    let soa = ask(&server, "sub.example.com.", RecordType::SOA);
    assert!(soa.metadata.authoritative, "{soa}");
    assert_eq!(types(&soa.answers), [RecordType::SOA], "{soa}");
    assert_eq!(soa.answers[0].name, name("sub.example.com."));
    let ns = ask(&server, "sub.example.com.", RecordType::NS);
    assert!(ns.metadata.authoritative, "NS at a served child apex: {ns}");
    assert_eq!(answers(&ns), ["ns1.sub.example.com."], "{ns}");

    // Negative answers in the child carry the child's SOA.
    let nx = ask(&server, "nope.sub.example.com.", RecordType::A);
    assert_negative(
        &nx,
        ResponseCode::NXDomain,
        "sub.example.com.",
        SUB_SOA_TTL,
        SUB_SOA_MIN,
        "NXDOMAIN in the child",
    );

    // The parent still answers its own names.
    let parent = ask(&server, "www.example.com.", RecordType::A);
    assert!(parent.metadata.authoritative);
    assert_eq!(answers(&parent), ["192.0.2.80"]);

    let d = dig(&server, &["host.sub.example.com.", "A"]);
    assert_eq!(d.status, "NOERROR");
    assert!(d.has_flag("aa"), "{}", d.text);
    assert_eq!(d.answer.len(), 1, "{}", d.text);
    assert_eq!(d.answer[0].data, "192.0.2.57");
    assert!(d.authority.is_empty(), "no referral: {}", d.text);
}

#[test]
fn ds_for_a_served_child_is_answered_from_the_parent() {
    // DS exists only on the parent side of a cut (RFC 4034 §5, RFC 4035 §3.1.4.1): a
    // server authoritative for both parent and child answers DS from the parent, as
    // BIND, NSD and Knot do. The parent has no DS for sub: NODATA with the parent's SOA.
    let (_site, server) = serve();
    let reply = ask(&server, "sub.example.com.", RecordType::DS);
    assert!(reply.answers.is_empty(), "{reply}");
    assert_negative(
        &reply,
        ResponseCode::NoError,
        "example.com.",
        COM_SOA_TTL,
        COM_SOA_MIN,
        "DS at the apex of a served child",
    );
}

// ---------------------------------------------------------------------------------------
// Referrals (RFC 1034 §4.3.2)
// ---------------------------------------------------------------------------------------

fn assert_referral(reply: &Message, what: &str) {
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NoError,
        "{what}: {reply}"
    );
    assert!(
        !reply.metadata.authoritative,
        "{what}: AA must be clear: {reply}"
    );
    assert!(reply.answers.is_empty(), "{what}: no answer: {reply}");
    let mut ns: Vec<String> = reply
        .authorities
        .iter()
        .map(|r| {
            assert_eq!(r.record_type(), RecordType::NS, "{what}: {reply}");
            assert_eq!(r.name, name("dev.example.com."), "{what}: {reply}");
            r.data.to_string()
        })
        .collect();
    ns.sort();
    assert_eq!(
        ns,
        ["ns1.dev.example.com.", "ns2.dev.example.com."],
        "{what}: {reply}"
    );
    let mut glue: Vec<(String, RecordType, String)> = reply
        .additionals
        .iter()
        .map(|r| (r.name.to_ascii(), r.record_type(), r.data.to_string()))
        .collect();
    glue.sort();
    assert_eq!(
        glue,
        [
            (
                "ns1.dev.example.com.".into(),
                RecordType::A,
                "192.0.2.55".into()
            ),
            (
                "ns2.dev.example.com.".into(),
                RecordType::AAAA,
                "2001:db8::55".into()
            ),
        ],
        "{what}: glue: {reply}"
    );
}

#[test]
fn names_below_a_zone_cut_get_a_referral_with_glue() {
    let (_site, server) = serve();
    assert_referral(
        &ask(&server, "host.dev.example.com.", RecordType::A),
        "below the cut",
    );
    assert_referral(
        &ask(&server, "dev.example.com.", RecordType::A),
        "at the cut",
    );
    // NS at the cut is the child's data: the parent refers, it does not answer.
    assert_referral(
        &ask(&server, "dev.example.com.", RecordType::NS),
        "NS at the cut",
    );
    // Glue is not authoritative data: asking for it directly is also referred.
    assert_referral(
        &ask(&server, "ns1.dev.example.com.", RecordType::A),
        "glue name",
    );
    // Deep names and with EDNS.
    assert_referral(
        &server.udp(&query_edns(
            "a.b.host.dev.example.com.",
            RecordType::AAAA,
            1232,
            None,
        )),
        "deep, with EDNS",
    );

    let d = dig(&server, &["host.dev.example.com.", "A"]);
    assert_eq!(d.status, "NOERROR");
    assert!(!d.has_flag("aa"), "{}", d.text);
    assert!(d.answer.is_empty(), "{}", d.text);
    assert_eq!(d.authority.len(), 2, "{}", d.text);
    assert!(
        d.authority
            .iter()
            .all(|r| r.rtype == "NS" && r.name == "dev.example.com.")
    );
    let mut glue: Vec<String> = d
        .additional
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.rtype, r.data))
        .collect();
    glue.sort();
    assert_eq!(
        glue,
        [
            "ns1.dev.example.com. A 192.0.2.55",
            "ns2.dev.example.com. AAAA 2001:db8::55"
        ],
        "{}",
        d.text
    );
}

#[test]
fn ds_at_a_cut_is_answered_by_the_parent() {
    let (_site, server) = serve();
    // RFC 4035 §3.1.4.1: the parent is authoritative for DS at the cut; it has none.
    let reply = ask(&server, "dev.example.com.", RecordType::DS);
    assert!(reply.answers.is_empty(), "{reply}");
    assert_negative(
        &reply,
        ResponseCode::NoError,
        "example.com.",
        COM_SOA_TTL,
        COM_SOA_MIN,
        "DS at the cut",
    );
    // Below the cut, DS is the child's business again: referral.
    assert_referral(
        &ask(&server, "host.dev.example.com.", RecordType::DS),
        "DS below the cut",
    );
}

// ---------------------------------------------------------------------------------------
// CNAME (RFC 1034 §4.3.2, RFC 6604)
// ---------------------------------------------------------------------------------------

#[test]
fn cname_chains_inside_the_zone_are_followed() {
    let (_site, server) = serve();
    let reply = ask(&server, "a.example.com.", RecordType::A);
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NoError,
        "{reply}"
    );
    assert!(reply.metadata.authoritative, "{reply}");
    let got: Vec<(String, u32, RecordType, String)> = reply
        .answers
        .iter()
        .map(|r| {
            (
                r.name.to_ascii(),
                r.ttl,
                r.record_type(),
                r.data.to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "a.example.com.".into(),
                COM_SOA_TTL,
                RecordType::CNAME,
                "b.example.com.".into()
            ),
            (
                "b.example.com.".into(),
                COM_SOA_TTL,
                RecordType::CNAME,
                "c.example.com.".into()
            ),
            (
                "c.example.com.".into(),
                120,
                RecordType::A,
                "192.0.2.3".into()
            ),
        ],
        "{reply}"
    );
    assert!(reply.authorities.is_empty(), "{reply}");

    // A CNAME query is answered with the CNAME itself, not chased.
    let reply = ask(&server, "a.example.com.", RecordType::CNAME);
    assert_eq!(types(&reply.answers), [RecordType::CNAME], "{reply}");
    assert_eq!(answers(&reply), ["b.example.com."]);

    // The chain ends in NODATA: the CNAMEs, then the SOA (RFC 2308 §2.2).
    let reply = ask(&server, "a.example.com.", RecordType::TXT);
    assert_eq!(
        types(&reply.answers),
        [RecordType::CNAME, RecordType::CNAME],
        "{reply}"
    );
    assert_negative(
        &reply,
        ResponseCode::NoError,
        "example.com.",
        COM_SOA_TTL,
        COM_SOA_MIN,
        "CNAME chain to NODATA",
    );

    let d = dig(&server, &["a.example.com.", "A"]);
    assert_eq!(d.status, "NOERROR");
    assert!(d.has_flag("aa"), "{}", d.text);
    let chain: Vec<String> = d
        .answer
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.rtype, r.data))
        .collect();
    assert_eq!(
        chain,
        [
            "a.example.com. CNAME b.example.com.",
            "b.example.com. CNAME c.example.com.",
            "c.example.com. A 192.0.2.3"
        ],
        "{}",
        d.text
    );
}

#[test]
fn cname_to_a_missing_name_is_nxdomain_with_the_cname() {
    let (_site, server) = serve();
    let reply = ask(&server, "dangling.example.com.", RecordType::A);
    assert_eq!(types(&reply.answers), [RecordType::CNAME], "{reply}");
    assert_eq!(answers(&reply), ["nothere.example.com."]);
    assert_negative(
        &reply,
        ResponseCode::NXDomain,
        "example.com.",
        COM_SOA_TTL,
        COM_SOA_MIN,
        "dangling CNAME",
    );

    let d = dig(&server, &["dangling.example.com.", "A"]);
    assert_eq!(d.status, "NXDOMAIN", "{}", d.text);
    assert!(d.has_flag("aa"), "{}", d.text);
    assert_eq!(d.answer.len(), 1, "{}", d.text);
    assert_eq!(d.answer[0].rtype, "CNAME");
    assert_eq!(d.authority.len(), 1, "{}", d.text);
    assert_eq!(d.authority[0].rtype, "SOA");
}

#[test]
fn cname_out_of_the_zone_is_answered_alone() {
    let (_site, server) = serve();
    let reply = ask(&server, "out.example.com.", RecordType::A);
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NoError,
        "{reply}"
    );
    assert!(reply.metadata.authoritative, "{reply}");
    assert_eq!(types(&reply.answers), [RecordType::CNAME], "{reply}");
    assert_eq!(answers(&reply), ["www.example.net."]);
    // Not a negative answer: the server is not authoritative for the target.
    assert!(reply.authorities.is_empty(), "{reply}");
}

// ---------------------------------------------------------------------------------------
// Wildcards (RFC 4592)
// ---------------------------------------------------------------------------------------

#[test]
fn wildcards_synthesize_with_the_query_name() {
    let (_site, server) = serve();
    for qname in [
        "zz.w.example.com.",
        "a.b.w.example.com.",
        "ZZ.W.Example.com.",
    ] {
        let reply = ask(&server, qname, RecordType::A);
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{qname}: {reply}"
        );
        assert!(reply.metadata.authoritative, "{qname}: {reply}");
        assert_eq!(answers(&reply), ["192.0.2.70"], "{qname}: {reply}");
        assert_eq!(owners(&reply.answers), [qname], "owner = QNAME: {reply}");
        assert_eq!(reply.answers[0].ttl, COM_SOA_TTL);
    }
    // Another type at the wildcard.
    let reply = ask(&server, "zz.w.example.com.", RecordType::TXT);
    assert_eq!(answers(&reply), ["wild"], "{reply}");
    assert_eq!(owners(&reply.answers), ["zz.w.example.com."]);

    // The wildcard's own name answers too, as itself.
    let reply = ask(&server, "*.w.example.com.", RecordType::A);
    assert_eq!(answers(&reply), ["192.0.2.70"], "{reply}");

    // A wildcard CNAME is synthesized, then chased.
    let reply = ask(&server, "q.alias.example.com.", RecordType::A);
    assert_eq!(
        (owners(&reply.answers), answers(&reply)),
        (
            vec![
                "q.alias.example.com.".to_string(),
                "www.example.com.".into()
            ],
            vec!["www.example.com.".to_string(), "192.0.2.80".into()]
        ),
        "{reply}"
    );

    let d = dig(&server, &["foo.w.example.com.", "A"]);
    assert_eq!(d.status, "NOERROR");
    assert!(d.has_flag("aa"), "{}", d.text);
    assert_eq!(d.answer.len(), 1, "{}", d.text);
    assert_eq!(d.answer[0].name, "foo.w.example.com.");
    assert_eq!(d.answer[0].data, "192.0.2.70");
}

#[test]
fn wildcards_do_not_apply_to_existing_names() {
    let (_site, server) = serve();
    // x.y.w exists: its own A, and NODATA for TXT although *.w has TXT.
    let reply = ask(&server, "x.y.w.example.com.", RecordType::A);
    assert_eq!(answers(&reply), ["192.0.2.71"], "{reply}");
    let reply = ask(&server, "x.y.w.example.com.", RecordType::TXT);
    assert!(
        reply.answers.is_empty(),
        "no wildcard TXT at an existing name: {reply}"
    );
    assert_negative(
        &reply,
        ResponseCode::NoError,
        "example.com.",
        COM_SOA_TTL,
        COM_SOA_MIN,
        "TXT at x.y.w",
    );
    // y.w is an empty non-terminal: it exists, so the wildcard does not apply.
    let reply = ask(&server, "y.w.example.com.", RecordType::A);
    assert!(
        reply.answers.is_empty(),
        "no wildcard at an empty non-terminal: {reply}"
    );
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NoError,
        "{reply}"
    );
    // Below the empty non-terminal y.w the closest encloser is y.w, which has no
    // wildcard child: NXDOMAIN (RFC 4592 §2.2.1).
    let reply = ask(&server, "z.y.w.example.com.", RecordType::A);
    assert!(reply.answers.is_empty(), "{reply}");
    assert_negative(
        &reply,
        ResponseCode::NXDomain,
        "example.com.",
        COM_SOA_TTL,
        COM_SOA_MIN,
        "below an empty non-terminal",
    );
    // The wildcard's parent w is itself an empty non-terminal, not matched by *.w.
    let reply = ask(&server, "w.example.com.", RecordType::A);
    assert!(reply.answers.is_empty(), "{reply}");
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NoError,
        "{reply}"
    );
    // A wildcard elsewhere does not cover names of other branches.
    let reply = ask(&server, "zz.example.com.", RecordType::A);
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NXDomain,
        "{reply}"
    );
}

#[test]
fn wildcard_nodata_for_a_missing_type() {
    let (_site, server) = serve();
    let reply = ask(&server, "zz.w.example.com.", RecordType::MX);
    assert!(reply.answers.is_empty(), "{reply}");
    assert_negative(
        &reply,
        ResponseCode::NoError,
        "example.com.",
        COM_SOA_TTL,
        COM_SOA_MIN,
        "MX at a wildcard",
    );
    let d = dig(&server, &["zz.w.example.com.", "MX"]);
    assert_eq!(d.status, "NOERROR");
    assert!(d.answer.is_empty(), "{}", d.text);
    assert_eq!(d.authority.len(), 1, "{}", d.text);
    assert_eq!(d.authority[0].rtype, "SOA");
}

// ---------------------------------------------------------------------------------------
// EDNS(0) (RFC 6891)
// ---------------------------------------------------------------------------------------

#[test]
fn edns_reply_carries_opt_with_1232_and_no_opt_without_edns() {
    let (_site, server) = serve();
    let reply = server.udp(&query_edns("www.example.com.", RecordType::A, 4096, None));
    let edns = reply
        .edns
        .as_ref()
        .expect("OPT in the reply to an EDNS query");
    assert_eq!(edns.max_payload(), SERVER_PAYLOAD, "{reply}");
    assert_eq!(edns.version(), 0);
    assert_eq!(answers(&reply), ["192.0.2.80"]);

    // Negative and REFUSED answers to EDNS queries carry OPT too.
    for (qname, rcode) in [
        ("nope.example.com.", ResponseCode::NXDomain),
        ("www.example.net.", ResponseCode::Refused),
    ] {
        let reply = server.udp(&query_edns(qname, RecordType::A, 4096, None));
        assert_eq!(reply.metadata.response_code, rcode, "{reply}");
        assert!(reply.edns.is_some(), "{qname}: OPT missing: {reply}");
    }

    // No EDNS in the query: no OPT in the reply (RFC 6891 §7), checked on the wire.
    for qname in ["www.example.com.", "nope.example.com.", "www.example.net."] {
        let query = Message::query_for(&name(qname), RecordType::A);
        let raw = server
            .udp_raw(&query.to_vec().unwrap(), WAIT)
            .expect("reply");
        let reply = Message::from_vec(&raw).unwrap();
        assert!(reply.edns.is_none(), "{qname}: OPT without EDNS: {reply}");
        let additional_count = u16::from_be_bytes([raw[10], raw[11]]);
        assert_eq!(additional_count, 0, "{qname}: ARCOUNT: {reply}");
    }

    let d = dig(&server, &["www.example.com.", "A", "+bufsize=4096"]);
    assert_eq!(d.edns_version, Some(0), "{}", d.text);
    assert_eq!(d.edns_udp, Some(SERVER_PAYLOAD), "{}", d.text);
    let d = dig(&server, &["www.example.com.", "A", "+noedns"]);
    assert_eq!(d.edns_udp, None, "{}", d.text);
    assert!(!d.text.contains("OPT PSEUDOSECTION"), "{}", d.text);
}

#[test]
fn edns_reply_advertises_the_server_payload_whatever_the_client_offers() {
    // RFC 6891 §6.2.3/§6.2.5: the payload field of a reply's OPT is the responder's own
    // reassembly size (SPEC §9: 1232), not an echo of the requestor's.
    let (_site, server) = serve();
    let mut wrong = Vec::new();
    for offered in [512u16, 1024, 1232, 1400, 65535] {
        let reply = server.udp(&query_edns(
            "www.example.com.",
            RecordType::A,
            offered,
            None,
        ));
        let advertised = reply.edns.as_ref().expect("OPT").max_payload();
        if advertised != SERVER_PAYLOAD {
            wrong.push(format!(
                "query offered {offered}, reply advertised {advertised}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "want {SERVER_PAYLOAD}:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn edns_version_1_gets_badvers() {
    let (_site, server) = serve();
    let mut query = query_edns("www.example.com.", RecordType::A, 1232, None);
    query.edns.as_mut().unwrap().set_version(1);
    let raw = server
        .udp_raw(&query.to_vec().unwrap(), WAIT)
        .expect("a reply to EDNS version 1");
    let reply = Message::from_vec(&raw).unwrap();
    // BADVERS is 16: 0 in the header, 1 in the OPT's extended RCODE (RFC 6891 §6.1.3).
    assert_eq!(raw_rcode_low(&raw), 0, "{reply}");
    let edns = reply.edns.as_ref().expect("BADVERS needs an OPT");
    assert_eq!(edns.rcode_high(), 1, "{reply}");
    assert_eq!(u16::from(reply.metadata.response_code), 16, "{reply}");
    assert_eq!(edns.version(), 0, "the reply states the version we speak");
    assert!(reply.answers.is_empty(), "{reply}");

    let d = dig(&server, &["www.example.com.", "A", "+edns=1", "+noednsneg"]);
    assert_eq!(d.status, "BADVERS", "{}", d.text);
    assert_eq!(d.edns_version, Some(0), "{}", d.text);
    assert!(d.answer.is_empty(), "{}", d.text);
}

// ---------------------------------------------------------------------------------------
// Truncation over UDP, full answers over TCP (RFC 1035 §4.2, RFC 7766)
// ---------------------------------------------------------------------------------------

/// RFC 6891 §6.2.5: the payload a client offers bounds the whole UDP datagram, the OPT
/// record included. At a payload equal to the whole reply's size (taken from the same
/// query over TCP, which is never truncated) the reply comes whole; one byte less and it
/// is truncated within that byte count. With and without ECS, whose option makes the OPT
/// longer (IPv4 and IPv6 addresses differ in length too).
#[test]
fn udp_edns_replies_fit_the_payload_with_their_opt_just_under_and_over_the_limit() {
    let (_site, server) = serve();
    for ecs in [None, Some("198.51.100.0/24"), Some("2001:db8:1200::/40")] {
        let query = |payload| {
            query_edns("mid.example.com.", RecordType::A, payload, ecs)
                .to_vec()
                .unwrap()
        };
        let whole = tcp_exchange_raw(server.addr, &query(SERVER_PAYLOAD)).expect("TCP reply");
        let size = u16::try_from(whole.len()).unwrap();
        assert!(
            (513..SERVER_PAYLOAD).contains(&size),
            "{ecs:?}: the reply ({size} bytes) must fall between the limits"
        );
        let full = Message::from_vec(&whole).unwrap();
        assert_eq!(full.answers.len(), MID_COUNT, "{full}");
        assert!(full.edns.is_some(), "{full}");

        // Just enough room: all of it, to the byte.
        let raw = server.udp_raw(&query(size), WAIT).expect("reply");
        let reply = Message::from_vec(&raw).unwrap();
        assert!(!reply.metadata.truncation, "{ecs:?} at {size}: {reply}");
        assert_eq!(raw.len(), whole.len(), "{ecs:?} at {size}: {reply}");
        assert_eq!(reply.answers.len(), MID_COUNT, "{ecs:?}: {reply}");
        assert_eq!(ecs_of(&reply), ecs_of(&full), "{ecs:?}: the ECS echo");

        // One byte short: truncated, and still within the payload with its OPT.
        let raw = server.udp_raw(&query(size - 1), WAIT).expect("reply");
        assert!(
            raw.len() < usize::from(size),
            "{ecs:?}: {} bytes for a payload of {}",
            raw.len(),
            size - 1
        );
        let reply = Message::from_vec(&raw).unwrap();
        assert!(
            reply.metadata.truncation,
            "{ecs:?} at {}: {reply}",
            size - 1
        );
        assert!(reply.edns.is_some(), "{ecs:?}: the OPT is kept: {reply}");
    }
}

#[test]
fn udp_without_edns_truncates_at_512_bytes_and_tcp_has_everything() {
    let (_site, server) = serve();
    let query = Message::query_for(&name("mid.example.com."), RecordType::A);
    let raw = server
        .udp_raw(&query.to_vec().unwrap(), WAIT)
        .expect("reply");
    assert!(
        raw.len() <= 512,
        "UDP reply without EDNS is {} bytes",
        raw.len()
    );
    let reply = Message::from_vec(&raw).unwrap();
    assert!(reply.metadata.truncation, "TC must be set: {reply}");
    assert!(reply.answers.len() < MID_COUNT, "{reply}");
    assert!(reply.edns.is_none());

    let full = server.tcp(&query);
    assert_eq!(full.metadata.response_code, ResponseCode::NoError);
    assert!(!full.metadata.truncation, "no TC over TCP");
    assert!(full.metadata.authoritative);
    assert_eq!(full.answers.len(), MID_COUNT, "every record over TCP");
    let mut got = answers(&full);
    got.sort();
    let mut want: Vec<String> = (1..=MID_COUNT).map(|i| format!("192.0.2.{i}")).collect();
    want.sort();
    assert_eq!(got, want);

    let d = dig(&server, &["mid.example.com.", "A", "+noedns", "+ignore"]);
    assert!(d.has_flag("tc"), "{}", d.text);
    let d = dig(&server, &["mid.example.com.", "A", "+tcp"]);
    assert!(!d.has_flag("tc"), "{}", d.text);
    assert_eq!(d.answer.len(), MID_COUNT, "{}", d.text);
}

#[test]
fn udp_with_edns_fits_1232_bytes_and_truncates_beyond() {
    let (_site, server) = serve();
    // 40 A records fit in 1232 bytes: no TC with EDNS.
    let reply = server.udp(&query_edns("mid.example.com.", RecordType::A, 1232, None));
    assert!(!reply.metadata.truncation, "{reply}");
    assert_eq!(reply.answers.len(), MID_COUNT, "{reply}");

    // 100 do not: even though the client offers 4096, the server's 1232 caps the reply.
    let query = query_edns("big.example.com.", RecordType::A, 4096, None);
    let raw = server
        .udp_raw(&query.to_vec().unwrap(), WAIT)
        .expect("reply");
    assert!(
        raw.len() <= usize::from(SERVER_PAYLOAD),
        "UDP reply is {} bytes",
        raw.len()
    );
    let reply = Message::from_vec(&raw).unwrap();
    assert!(reply.metadata.truncation, "TC must be set: {reply}");
    assert!(reply.answers.len() < BIG_COUNT);

    let full = server.tcp(&query);
    assert!(!full.metadata.truncation);
    assert_eq!(full.answers.len(), BIG_COUNT, "every record over TCP");

    let d = dig(
        &server,
        &["big.example.com.", "A", "+bufsize=4096", "+ignore"],
    );
    assert!(d.has_flag("tc"), "{}", d.text);
    let d = dig(&server, &["big.example.com.", "A", "+tcp"]);
    assert!(!d.has_flag("tc"), "{}", d.text);
    assert_eq!(d.answer.len(), BIG_COUNT, "{}", d.text);
}

#[test]
fn truncated_replies_to_edns_queries_keep_the_opt() {
    // RFC 6891 §7: the minimal response is header, question and OPT; "this MUST also
    // occur when a truncated response (using the DNS header's TC bit) is returned".
    // Two names of different lengths, so the room left after the last record that fits
    // differs.
    let (_site, server) = serve();
    let mut lost = Vec::new();
    for qname in ["big.example.com.", "manyaddr.example.com."] {
        for payload in [512u16, 1232] {
            let query = query_edns(qname, RecordType::A, payload, None);
            let raw = server
                .udp_raw(&query.to_vec().unwrap(), WAIT)
                .expect("reply");
            assert!(
                raw.len() <= usize::from(payload),
                "{qname}/{payload}: {} bytes",
                raw.len()
            );
            let reply = Message::from_vec(&raw).unwrap();
            assert!(reply.metadata.truncation, "{qname}/{payload}: {reply}");
            if reply.edns.is_none() {
                lost.push(format!(
                    "{qname} with payload {payload}: {} bytes, {} answers, no OPT",
                    raw.len(),
                    reply.answers.len()
                ));
            }
        }
    }
    assert!(
        lost.is_empty(),
        "truncated replies lost their OPT:\n{}",
        lost.join("\n")
    );
}

#[test]
fn udp_replies_end_with_their_last_record() {
    // A truncated reply still has to be a well-formed message: the header's counts
    // describe the whole datagram, with no half-written record after the last one
    // (strict parsers such as dnspython reject trailing bytes).
    let (_site, server) = serve();
    let mut junk = Vec::new();
    for (qname, edns) in [
        ("mid.example.com.", None), // fits with EDNS, not without: control and case
        ("mid.example.com.", Some(1232u16)),
        ("big.example.com.", None),
        ("big.example.com.", Some(512)),
        ("big.example.com.", Some(1232)),
        ("manyaddr.example.com.", None),
        ("manyaddr.example.com.", Some(512)),
        ("manyaddr.example.com.", Some(1232)),
    ] {
        let query = match edns {
            Some(payload) => query_edns(qname, RecordType::A, payload, None),
            None => Message::query_for(&name(qname), RecordType::A),
        };
        let raw = server
            .udp_raw(&query.to_vec().unwrap(), WAIT)
            .expect("reply");
        let end = wire_end(&raw).unwrap_or_else(|e| panic!("{qname}/{edns:?}: {e}"));
        if end != raw.len() {
            let tc = Message::from_vec(&raw).unwrap().metadata.truncation;
            junk.push(format!(
                "{qname} (EDNS {edns:?}, TC {tc}): {} bytes, the counted records end at {end}",
                raw.len()
            ));
        }
    }
    assert!(
        junk.is_empty(),
        "UDP replies with bytes after their last record:\n{}",
        junk.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// ANY (RFC 8482)
// ---------------------------------------------------------------------------------------

#[test]
fn any_is_answered_minimally() {
    let (_site, server) = serve();
    // (name, the types the zone has there)
    let cases = [
        (
            "example.com.",
            vec![
                RecordType::SOA,
                RecordType::NS,
                RecordType::MX,
                RecordType::TXT,
            ],
        ),
        ("www.example.com.", vec![RecordType::A, RecordType::TXT]),
    ];
    for (qname, present) in cases {
        for reply in [
            ask(&server, qname, RecordType::ANY),
            server.udp(&query_edns(qname, RecordType::ANY, 1232, None)),
        ] {
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::NoError,
                "{qname}: {reply}"
            );
            assert!(reply.metadata.authoritative, "{qname}: {reply}");
            assert!(
                !reply.answers.is_empty(),
                "{qname}: ANY got nothing: {reply}"
            );
            let mut kinds = types(&reply.answers);
            kinds.dedup();
            // RFC 8482 §4.1: one RRset of those present, or a synthesized HINFO.
            assert_eq!(kinds.len(), 1, "{qname}: more than one RRset: {reply}");
            assert!(
                present.contains(&kinds[0]) || kinds[0] == RecordType::HINFO,
                "{qname}: {kinds:?} is not at the name: {reply}"
            );
            assert!(
                owners(&reply.answers).iter().all(|o| o == qname),
                "{qname}: {reply}"
            );
        }
    }
    let d = dig(&server, &["example.com.", "ANY"]);
    assert_eq!(d.status, "NOERROR");
    let mut kinds: Vec<&str> = d.answer.iter().map(|r| r.rtype.as_str()).collect();
    kinds.dedup();
    assert_eq!(kinds.len(), 1, "{}", d.text);
}

#[test]
fn any_at_a_missing_name_is_nxdomain() {
    let (_site, server) = serve();
    let reply = ask(&server, "nope.example.com.", RecordType::ANY);
    assert_negative(
        &reply,
        ResponseCode::NXDomain,
        "example.com.",
        COM_SOA_TTL,
        COM_SOA_MIN,
        "ANY at a missing name",
    );
}

// ---------------------------------------------------------------------------------------
// Case (RFC 4343)
// ---------------------------------------------------------------------------------------

#[test]
fn names_match_case_insensitively_and_are_echoed_as_asked() {
    let (_site, server) = serve();
    let asked = "MaIl.ExAmPlE.cOm.";
    let reply = ask(&server, asked, RecordType::A);
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NoError,
        "{reply}"
    );
    assert!(reply.metadata.authoritative);
    assert_eq!(answers(&reply), ["192.0.2.25"]);
    assert_eq!(reply.queries[0].name().to_ascii(), asked, "question echoed");
    assert_eq!(owners(&reply.answers), [asked], "answer owner as asked");

    // A name written in mixed case in the zone file matches any spelling.
    for spelling in ["mixed.example.com.", "MIXED.EXAMPLE.COM."] {
        let reply = ask(&server, spelling, RecordType::A);
        assert_eq!(answers(&reply), ["192.0.2.9"], "{spelling}: {reply}");
        assert_eq!(owners(&reply.answers), [spelling], "{reply}");
    }

    // Negative answers and other zones echo the question as asked too.
    for (spelling, rcode) in [
        ("NoPe.Example.COM.", ResponseCode::NXDomain),
        ("HOST.SUB.EXAMPLE.COM.", ResponseCode::NoError),
        ("WWW.Example.ORG.", ResponseCode::NoError),
    ] {
        let reply = ask(&server, spelling, RecordType::A);
        assert_eq!(reply.metadata.response_code, rcode, "{spelling}: {reply}");
        assert!(reply.metadata.authoritative, "{spelling}: {reply}");
        assert_eq!(reply.queries[0].name().to_ascii(), spelling);
    }

    // The first owner of a CNAME chain is the query name as asked.
    let reply = ask(&server, "A.EXAMPLE.com.", RecordType::A);
    assert_eq!(reply.answers.len(), 3, "{reply}");
    assert_eq!(reply.answers[0].name.to_ascii(), "A.EXAMPLE.com.");

    let d = dig(&server, &["WwW.ExAmPlE.cOm.", "A"]);
    assert_eq!(d.status, "NOERROR");
    assert_eq!(d.question, ["WwW.ExAmPlE.cOm."], "{}", d.text);
    assert_eq!(d.answer.len(), 1, "{}", d.text);
    assert_eq!(d.answer[0].name, "WwW.ExAmPlE.cOm.", "{}", d.text);
}

// ---------------------------------------------------------------------------------------
// Malformed packets: FORMERR or dropped, never a crash
// ---------------------------------------------------------------------------------------

#[test]
fn packets_shorter_than_a_header_are_dropped() {
    let (_site, mut server) = serve();
    for bytes in [
        &[][..],
        &[0x12][..],
        &[0x12, 0x34, 0x01, 0x00, 0x00][..],
        &[0u8; 11][..],
    ] {
        let reply = server.udp_raw(bytes, SHORT_WAIT);
        assert!(reply.is_none(), "{bytes:?} got {reply:?}");
        assert_serving(&mut server, &format!("{} bytes", bytes.len()));
    }
}

#[test]
fn a_header_claiming_a_missing_question_gets_formerr() {
    let (_site, mut server) = serve();
    let packet = header(0x4242, 0, 1, 0, 0, 0);
    assert_formerr(
        server.udp_raw(&packet, WAIT),
        0x4242,
        "QDCOUNT 1, no question",
    );
    assert_serving(&mut server, "a missing question");
}

#[test]
fn two_questions_get_formerr() {
    let (_site, mut server) = serve();
    let mut query = Message::new(0x2222, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(name("www.example.com."), RecordType::A));
    query.add_query(Query::query(name("mail.example.com."), RecordType::A));
    let reply = server.udp_raw(&query.to_vec().unwrap(), WAIT);
    assert_formerr(reply, 0x2222, "two questions (UDP)");

    let reply = tcp_exchange(server.addr, &query.to_vec().unwrap()).expect("TCP reply");
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::FormErr,
        "TCP: {reply}"
    );
    assert!(reply.answers.is_empty());
    assert_serving(&mut server, "two questions");
}

#[test]
fn no_question_at_all_gets_formerr() {
    let (_site, mut server) = serve();
    let packet = header(0x3131, 0, 0, 0, 0, 0);
    assert_formerr(server.udp_raw(&packet, WAIT), 0x3131, "QDCOUNT 0");
    assert_serving(&mut server, "no question");
}

#[test]
fn garbage_after_a_valid_header_is_formerr_or_dropped() {
    let (_site, mut server) = serve();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // A compression pointer to itself.
        ("pointer loop", vec![0xc0, 0x0c, 0, 1, 0, 1]),
        // A label longer than the packet.
        ("label past the end", vec![63, b'a', b'b', b'c']),
        // Label type 0b01 (reserved).
        ("reserved label type", vec![0x41, b'x', 0, 0, 1, 0, 1]),
        // A name with no terminating root label.
        ("unterminated name", vec![3, b'w', b'w', b'w']),
        // Name fine, no type or class.
        ("question without type", wire_name("www.example.com.")),
        ("random bytes", (0u8..=255).rev().step_by(3).collect()),
    ];
    for (i, (what, body)) in cases.into_iter().enumerate() {
        let id = 0x5000 + u16::try_from(i).unwrap();
        let mut packet = header(id, 0, 1, 0, 0, 0);
        packet.extend(body);
        assert_formerr_or_dropped(server.udp_raw(&packet, SHORT_WAIT), id, what);
        assert_serving(&mut server, what);
    }
    // A header that claims answer and additional records that are not there.
    let mut packet = header(0x5100, 0, 1, 2, 0, 3);
    packet.extend(question("www.example.com.", RecordType::A));
    assert_formerr_or_dropped(
        server.udp_raw(&packet, SHORT_WAIT),
        0x5100,
        "missing records",
    );
    assert_serving(&mut server, "missing records");
}

#[test]
fn responses_sent_to_the_server_get_no_reply() {
    let (_site, mut server) = serve();
    let mut message = Message::new(0x7777, MessageType::Response, OpCode::Query);
    message.add_query(Query::query(name("www.example.com."), RecordType::A));
    let reply = server.udp_raw(&message.to_vec().unwrap(), SHORT_WAIT);
    assert!(reply.is_none(), "a response was answered: {reply:?}");
    assert_serving(&mut server, "a response");
}

#[test]
fn malformed_responses_sent_to_the_server_get_no_reply() {
    // Answering a response (even with FORMERR) invites reflection loops between servers;
    // a packet with QR=1 is never answered.
    let (_site, mut server) = serve();
    let packet = header(0x7878, 0x8000, 1, 0, 0, 0); // QR=1, a question that is not there
    let reply = server.udp_raw(&packet, SHORT_WAIT);
    assert!(
        reply.is_none(),
        "a malformed response was answered: {reply:?}"
    );
    assert_serving(&mut server, "a malformed response");
}

#[test]
fn random_packets_never_crash_the_server() {
    let (_site, mut server) = serve();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // A fixed xorshift sequence: reproducible, no dependency.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let base = {
        let mut q = query_edns(
            "www.example.com.",
            RecordType::A,
            1232,
            Some("192.0.2.0/24"),
        );
        q.metadata.id = 0;
        q.to_vec().unwrap()
    };
    for _ in 0..300 {
        // Mutate a valid EDNS+ECS query: flip bytes, cut it, or extend it.
        let mut packet = base.clone();
        for _ in 0..(next() % 4 + 1) {
            let at = usize::try_from(next() % packet.len() as u64).unwrap();
            packet[at] = next() as u8;
        }
        match next() % 3 {
            0 => packet.truncate(usize::try_from(next() % packet.len() as u64).unwrap()),
            1 => packet.extend((0..next() % 16).map(|_| next() as u8)),
            _ => {}
        }
        // Keep QR clear so the packet is a query.
        if packet.len() > 2 {
            packet[2] &= 0x7f;
        }
        socket.send_to(&packet, server.addr).unwrap();
    }
    // Whatever came back must at least be a response.
    socket.set_read_timeout(Some(SHORT_WAIT)).unwrap();
    let mut buf = [0u8; 65535];
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        assert!(n >= 12, "a {n}-byte reply");
        assert!(raw_is_response(&buf[..n]), "a reply without QR");
    }
    assert_serving(&mut server, "300 mutated packets");
}

// ---------------------------------------------------------------------------------------
// ECS (RFC 7871, SPEC §4)
// ---------------------------------------------------------------------------------------

#[test]
fn raw_ecs_helper_builds_a_valid_option() {
    // The control for the malformed cases below: the same builder, well-formed bytes.
    let (_site, server) = serve();
    let packet = raw_query_with_opt(
        0x0808,
        "mail.example.com.",
        RecordType::A,
        &ecs(&[0, 1, 24, 0, 192, 0, 2]),
    );
    let raw = server.udp_raw(&packet, WAIT).expect("reply");
    let reply = Message::from_vec(&raw).unwrap();
    assert_eq!(raw_id(&raw), 0x0808);
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NoError,
        "{reply}"
    );
    assert_eq!(answers(&reply), ["192.0.2.25"]);
    assert_eq!(
        ecs_of(&reply),
        Some(("192.0.2.0".parse().unwrap(), 24, 0)),
        "{reply}"
    );
}

/// Sends a query for mail.example.com A whose OPT carries `opt_rdata` for each case and
/// asserts every one was answered FORMERR (listing all that were not), and that the
/// server still serves afterwards.
fn assert_ecs_formerr(server: &mut Server, cases: &[(&str, Vec<u8>)]) {
    let mut wrong = Vec::new();
    for (i, (what, opt_rdata)) in cases.iter().enumerate() {
        let id = 0x0900 + u16::try_from(i).unwrap();
        let packet = raw_query_with_opt(id, "mail.example.com.", RecordType::A, opt_rdata);
        if let Err(problem) = formerr_problem(server.udp_raw(&packet, WAIT), id) {
            wrong.push(format!("{what}: {problem}"));
        }
        assert_serving(server, what);
    }
    assert!(
        wrong.is_empty(),
        "malformed ECS not answered FORMERR:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn ecs_with_an_unknown_family_gets_formerr() {
    let (_site, mut server) = serve();
    assert_ecs_formerr(
        &mut server,
        &[
            ("family 3", ecs(&[0, 3, 24, 0, 192, 0, 2])),
            ("family 0", ecs(&[0, 0, 0, 0])),
        ],
    );
}

#[test]
fn ecs_with_a_prefix_longer_than_the_address_gets_formerr() {
    let (_site, mut server) = serve();
    let mut v6 = vec![0, 2, 129, 0, 0x20, 0x01, 0x0d, 0xb8];
    v6.extend([0u8; 13]);
    assert_ecs_formerr(
        &mut server,
        &[
            // IPv4 /33 with the five address octets 33 bits would need, and with four.
            ("IPv4 /33, 5 octets", ecs(&[0, 1, 33, 0, 192, 0, 2, 1, 0])),
            ("IPv4 /33, 4 octets", ecs(&[0, 1, 33, 0, 192, 0, 2, 1])),
            ("IPv6 /129", ecs(&v6)),
        ],
    );
}

#[test]
fn truncated_ecs_option_gets_formerr() {
    let (_site, mut server) = serve();
    assert_ecs_formerr(
        &mut server,
        &[
            // The option length says 7 bytes, 5 follow (the OPT RDLENGTH counts what is
            // there).
            (
                "option length 7, 5 bytes present",
                edns_option(8, 7, &[0, 1, 24, 0, 192]),
            ),
            // Lengths consistent, but /24 needs 3 address octets and 1 is given.
            ("/24 with 1 address octet", ecs(&[0, 1, 24, 0, 192])),
            // Not even FAMILY and both prefix lengths.
            ("3-byte ECS option", ecs(&[0, 1, 24])),
        ],
    );
}

#[test]
fn ecs_with_address_bits_beyond_the_source_prefix_gets_formerr() {
    let (_site, mut server) = serve();
    assert_ecs_formerr(
        &mut server,
        &[
            // 192.0.2.0 with /20: the 0x02 of the third octet lies beyond 20 bits.
            ("IPv4 bits beyond /20", ecs(&[0, 1, 20, 0, 192, 0, 2])),
            // 2001:db8:1::/44 in 6 octets: the trailing 1 lies beyond 44 bits.
            (
                "IPv6 bits beyond /44",
                ecs(&[0, 2, 44, 0, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01]),
            ),
        ],
    );
}

#[test]
fn ecs_with_too_many_address_octets_gets_formerr() {
    // RFC 7871 §6: "A server receiving an ECS option that uses either too few or too many
    // ADDRESS octets ... SHOULD return FORMERR".
    let (_site, mut server) = serve();
    assert_ecs_formerr(
        &mut server,
        &[
            (
                "/24 with 4 address octets",
                ecs(&[0, 1, 24, 0, 192, 0, 2, 0]),
            ),
            ("/0 with 1 address octet", ecs(&[0, 1, 0, 0, 192])),
        ],
    );
}

#[test]
fn valid_ecs_is_echoed_with_scope_zero_where_the_answer_does_not_depend_on_the_client() {
    let site = Site::example();
    let server = site.serve();
    for (subnet, addr, prefix) in [
        ("192.0.2.0/24", "192.0.2.0", 24u8),
        ("81.2.69.0/24", "81.2.69.0", 24),
        ("2001:db8::/56", "2001:db8::", 56),
        ("0.0.0.0/0", "0.0.0.0", 0),
    ] {
        let reply = server.udp(&query_edns(
            "mail.example.com.",
            RecordType::A,
            1232,
            Some(subnet),
        ));
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{subnet}: {reply}"
        );
        assert_eq!(answers(&reply), ["192.0.2.25"], "{subnet}");
        assert_eq!(
            ecs_of(&reply),
            Some((addr.parse().unwrap(), prefix, 0)),
            "{subnet}: ECS echoed with FAMILY, SOURCE PREFIX and ADDRESS, scope 0: {reply}"
        );
    }
    // Negative answers do not depend on the client either.
    let reply = server.udp(&query_edns(
        "nope.example.com.",
        RecordType::A,
        1232,
        Some("192.0.2.0/24"),
    ));
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(ecs_of(&reply).map(|e| e.2), Some(0), "{reply}");

    let d = dig(&server, &["mail.example.com.", "A", "+subnet=192.0.2.0/24"]);
    assert_eq!(d.status, "NOERROR");
    assert_eq!(
        d.client_subnet.as_deref(),
        Some("192.0.2.0/24/0"),
        "{}",
        d.text
    );
}

#[test]
fn no_ecs_in_the_query_means_no_ecs_in_the_reply() {
    let site = Site::example();
    let server = site.serve();
    for qname in ["mail.example.com.", "www.example.com.", "geo.example.com."] {
        let reply = server.udp(&query_edns(qname, RecordType::A, 1232, None));
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{reply}"
        );
        let edns = reply.edns.as_ref().expect("OPT");
        assert!(
            edns.option(EdnsCode::Subnet).is_none(),
            "{qname}: ECS without ECS in the query: {reply}"
        );
        assert!(
            !edns
                .options()
                .as_ref()
                .iter()
                .any(|(_, o)| matches!(o, EdnsOption::Subnet(_))),
            "{reply}"
        );
    }
    let d = dig(&server, &["geo.example.com.", "A"]);
    assert_eq!(d.status, "NOERROR");
    assert!(d.client_subnet.is_none(), "{}", d.text);
}

// ---------------------------------------------------------------------------------------
// Zone transfer and opcodes
// ---------------------------------------------------------------------------------------

#[test]
fn axfr_over_tcp_is_refused_without_listed_secondaries() {
    let (_site, mut server) = serve();
    for rtype in [RecordType::AXFR, RecordType::IXFR] {
        let query = Message::query_for(&name("example.com."), rtype);
        let reply = tcp_exchange(server.addr, &query.to_vec().unwrap()).expect("TCP reply");
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::Refused,
            "{rtype}: {reply}"
        );
        assert!(
            reply.answers.is_empty(),
            "{rtype}: zone data leaked: {reply}"
        );
        assert_eq!(reply.metadata.id, query.metadata.id);
    }
    assert_serving(&mut server, "AXFR");
}

#[test]
fn opcodes_other_than_query_get_notimp() {
    let (_site, mut server) = serve();
    for op in [OpCode::Notify, OpCode::Update, OpCode::Status] {
        let mut message = Message::new(0x6000, MessageType::Query, op);
        message.add_query(Query::query(name("example.com."), RecordType::SOA));
        let reply = server.udp(&message);
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NotImp,
            "{op}: {reply}"
        );
        assert_eq!(reply.metadata.op_code, op, "opcode echoed: {reply}");
        assert!(reply.answers.is_empty(), "{op}: {reply}");
    }
    // Unassigned opcodes (IQUERY is obsolete, 15 is unassigned), built by hand.
    for (i, opcode) in [1u16, 15].into_iter().enumerate() {
        let id = 0x6100 + u16::try_from(i).unwrap();
        let mut packet = header(id, opcode << 11, 1, 0, 0, 0);
        packet.extend(question("example.com.", RecordType::SOA));
        let raw = server.udp_raw(&packet, WAIT).expect("reply");
        assert_eq!(raw_id(&raw), id);
        assert!(raw_is_response(&raw));
        assert_eq!(raw_rcode_low(&raw), 4, "opcode {opcode}: NOTIMP");
        assert_eq!(u16::from((raw[2] >> 3) & 0x0f), opcode, "opcode echoed");
    }
    let d = dig(&server, &["+opcode=notify", "example.com.", "SOA"]);
    assert_eq!(d.status, "NOTIMP", "{}", d.text);
    assert_serving(&mut server, "other opcodes");
}

/// RFC 3225 §3: the DO bit of the query is copied into the response, over UDP and TCP.
#[test]
fn the_do_bit_is_echoed() {
    let (_site, server) = serve();
    for dnssec_ok in [true, false] {
        let mut query = query_edns("www.example.com", RecordType::A, 1232, None);
        query.edns.as_mut().unwrap().set_dnssec_ok(dnssec_ok);
        for reply in [server.udp(&query), server.tcp(&query)] {
            let edns = reply.edns.as_ref().expect("EDNS in, EDNS out");
            assert_eq!(edns.flags().dnssec_ok, dnssec_ok, "{reply}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// IPv6 listeners
// ---------------------------------------------------------------------------------------

#[test]
fn ipv6_listeners_answer_over_udp_and_tcp() {
    // A port free on ::1 for both protocols. A machine without IPv6 on loopback fails
    // here, naming the cause: a silent pass would claim IPv6 was tested.
    let v6 = free_port_on(std::net::Ipv6Addr::LOCALHOST.into());
    let site = Site::new(&[("example.com.zone", &com_zone())]);
    let listen = format!("[::1]:{}", v6.port());
    let mut server = site.serve_with(&["--listen", &listen]);
    for transport in ["+notcp", "+tcp"] {
        let output = std::process::Command::new("dig")
            .args([
                "@::1",
                "-p",
                &v6.port().to_string(),
                "+norec",
                "+time=2",
                "+tries=1",
            ])
            .args([transport, "+short", "www.example.com.", "A"])
            .output()
            .expect("dig is installed (apt-get install dnsutils)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(stdout.trim(), "192.0.2.80", "{transport} over ::1");
    }
    // The IPv4 listener given first still answers beside it.
    assert_serving(&mut server, "an IPv6 listener");
}

#[test]
fn meta_types_get_formerr_and_obsolete_mail_queries_notimp() {
    let (_site, mut server) = serve();
    // RFC 6895 §3.1: OPT and the meta-TYPEs 128-250 (TSIG, TKEY, NXNAME, ...) are not
    // data; RFC 9824 §3.5 asks FORMERR for such a query.
    for qtype in [41u16, 128, 249, 250] {
        let reply = server.ask("www.example.com.", RecordType::from(qtype));
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::FormErr,
            "qtype {qtype}: {reply}"
        );
        assert!(reply.answers.is_empty(), "{reply}");
    }
    for qtype in [RecordType::from(253), RecordType::from(254)] {
        let reply = server.ask("www.example.com.", qtype);
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NotImp,
            "{qtype}: {reply}"
        );
    }
    // Ordinary types beside them still answer.
    let reply = server.ask("www.example.com.", RecordType::A);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_serving(&mut server, "meta-type queries");
}
