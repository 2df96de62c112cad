//! DNS behaviour cases as data: every `tests/cases/*.case` file (TOML, described in
//! tests/cases/README.md) holds zones, optional site files and a GeoIP choice, then cases
//! (query -> expected reply). Each case is encoded with hickory-proto, answered in-process
//! by the pure `lbdns::dns::respond`, decoded with hickory-proto and compared.
//!
//! A failure names the file, the case's line and shows what was expected and what came
//! back. A case marked `known_bug` must fail (the runner reports it); when it passes, the
//! mark is stale and that is a failure too.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, BinEncodable, Restrict};
use hickory_proto::serialize::txt::Parser;
use lbdns::dns::{Transport, respond};
use lbdns::geoip::GeoIp;
use lbdns::health::Health;
use lbdns::snapshot::Snapshot;
use lbdns::{site, zone};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::Deserialize;
use toml::Spanned;

//----------- The file format -------------------------------------------------------------

/// One `.case` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    /// A MaxMind DB under tests/data/ for region answers; none by default.
    geoip: Option<String>,
    /// The zones served, each with its optional site file.
    #[serde(default)]
    zone: Vec<ZoneSpec>,
    #[serde(default)]
    case: Vec<Spanned<Case>>,
    /// Zone files that must not load, each with what the error says.
    #[serde(default)]
    refused: Vec<Spanned<Refused>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Refused {
    /// What the zone file is wrong about.
    name: String,
    /// The zone's origin, `example.com.` by default.
    origin: Option<String>,
    text: String,
    /// Words the error message holds: `LINE: message`, the line in `text` counted from 1.
    error: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneSpec {
    /// The zone's origin, e.g. `example.com.`.
    origin: String,
    /// The zone file's text (RFC 1035 master file).
    text: String,
    /// The site file's text (SPEC §3 YAML); none means no tasks.
    #[serde(default)]
    site: String,
    /// The warnings the zone file gets, in order: each is words of one `LINE: message`.
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Proto {
    #[default]
    Udp,
    Tcp,
}

/// One query and what its reply must be.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// What the case shows, for the failure message.
    name: String,

    // The query.
    /// `NAME TYPE [CLASS]`, e.g. `www.example.com. A` (class IN by default).
    query: Option<String>,
    /// The query's bytes in hex (whitespace ignored), instead of `query`.
    raw: Option<String>,
    #[serde(default)]
    transport: Proto,
    /// The query's source address; 192.0.2.1 by default.
    source: Option<IpAddr>,
    /// The RD bit of the query.
    #[serde(default)]
    rd: bool,
    /// The query's OPCODE (0, QUERY, by default).
    #[serde(default)]
    opcode: u8,
    /// Adds an OPT record (implied by every field below).
    #[serde(default)]
    edns: bool,
    /// The OPT's UDP payload size; 1232 by default.
    payload: Option<u16>,
    /// The DO bit.
    #[serde(default, rename = "do")]
    dnssec_ok: bool,
    /// The EDNS version; 0 by default.
    edns_version: Option<u8>,
    /// An ECS option `ADDRESS/PREFIX`.
    ecs: Option<String>,
    /// An ECS option's data in hex, as is (for malformed options).
    ecs_option: Option<String>,
    /// How many times to ask, each with its own RNG seed: every reply must match.
    /// 1 by default, 20 with `answer_one_of`.
    runs: Option<u64>,

    // The reply.
    /// The RCODE by name (extended ones included); NOERROR by default.
    rcode: Option<String>,
    /// The header flags set besides QR: any of `aa tc rd ra ad cd`; `aa` by default.
    flags: Option<String>,
    /// The answer section. RRsets in this order, records within an RRset in any order.
    #[serde(default)]
    answer: Vec<String>,
    /// Only the number of answer records is checked (long RRsets).
    answer_count: Option<usize>,
    /// The answer section is one of these (weighted or region choices), in any order.
    answer_one_of: Option<Vec<Vec<String>>>,
    /// The authority section, in any order.
    #[serde(default)]
    authority: Vec<String>,
    /// The additional section without the OPT, in any order.
    #[serde(default)]
    additional: Vec<String>,
    /// The reply's OPT: `none`, or `PAYLOAD [do]`. By default: none without EDNS in the
    /// query, else `1232` (with `do` when the query had it).
    opt: Option<String>,
    /// The ECS scope of the reply; 0 by default when the query had `ecs`.
    scope: Option<u8>,
    /// The reply echoes no ECS option although the query had one.
    #[serde(default)]
    no_ecs: bool,
    /// No reply at all.
    #[serde(default)]
    no_reply: bool,
    /// The reply's question section is empty (it could not be read).
    #[serde(default)]
    no_question: bool,
    /// A known bug this case shows: the case must fail until it is fixed.
    known_bug: Option<String>,
}

//----------- Building the server state ---------------------------------------------------

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cases")
}

fn snapshot_of(file: &CaseFile, path: &Path) -> Result<Snapshot, String> {
    let mut zones = Vec::new();
    let mut sites = Vec::new();
    for spec in &file.zone {
        let origin = Name::from_ascii(&spec.origin).map_err(|e| format!("origin: {e}"))?;
        let parsed = zone::parse(&spec.text, path, &origin).map_err(|e| e.to_string())?;
        let prefix = format!("{}:", path.display());
        let warned: Vec<&str> = parsed
            .warnings
            .iter()
            .map(|w| w.strip_prefix(&prefix).unwrap_or(w))
            .collect();
        if warned.len() != spec.warnings.len()
            || warned
                .iter()
                .zip(&spec.warnings)
                .any(|(got, want)| !got.contains(want.as_str()))
        {
            return Err(format!(
                "{}: warnings: want {:#?}, got {warned:#?}",
                spec.origin, spec.warnings
            ));
        }
        zones.push(Arc::new(parsed));
        let site_spec =
            site::parse(&spec.site).map_err(|(line, e)| format!("site line {line}: {e}"))?;
        let site = site::validate(&origin, &site_spec).map_err(|problems| {
            problems
                .iter()
                .map(|p| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        sites.push(site);
    }
    let geoip = match &file.geoip {
        Some(db) => {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data")
                .join(db);
            Some(Arc::new(GeoIp::open(&path).map_err(|e| e.to_string())?))
        }
        None => None,
    };
    let sites: Vec<&site::Site> = sites.iter().collect();
    Snapshot::compile(&zones, &sites, geoip, &Health::default()).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{}: {}", e.origin, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

//----------- Queries ---------------------------------------------------------------------

const QUERY_ID: u16 = 0x4242;
const DEFAULT_SOURCE: &str = "192.0.2.1";

fn hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits in {text:?}"));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("ascii");
            u8::from_str_radix(pair, 16).map_err(|_| format!("bad hex {pair:?}"))
        })
        .collect()
}

impl Case {
    fn has_edns(&self) -> bool {
        self.edns
            || self.payload.is_some()
            || self.dnssec_ok
            || self.edns_version.is_some()
            || self.ecs.is_some()
            || self.ecs_option.is_some()
    }

    fn ecs_subnet(&self) -> Result<Option<ClientSubnet>, String> {
        let Some(ecs) = &self.ecs else {
            return Ok(None);
        };
        let (addr, prefix) = ecs
            .split_once('/')
            .ok_or_else(|| format!("ecs {ecs:?}: want ADDRESS/PREFIX"))?;
        let addr: IpAddr = addr.parse().map_err(|e| format!("ecs {ecs:?}: {e}"))?;
        let prefix: u8 = prefix.parse().map_err(|e| format!("ecs {ecs:?}: {e}"))?;
        Ok(Some(ClientSubnet::new(addr, prefix, 0)))
    }

    /// The question asked, when the case has a structured query.
    fn question(&self) -> Result<Option<Query>, String> {
        let Some(text) = &self.query else {
            return Ok(None);
        };
        let words: Vec<&str> = text.split_whitespace().collect();
        let (name, rtype, class) = match words[..] {
            [name, rtype] => (name, rtype, "IN"),
            [name, rtype, class] => (name, rtype, class),
            _ => return Err(format!("query {text:?}: want NAME TYPE [CLASS]")),
        };
        let name = Name::from_ascii(name).map_err(|e| format!("query name {name:?}: {e}"))?;
        // TYPEnnn (RFC 3597 §5) for the types hickory has no name for (IXFR).
        let rtype = match rtype.strip_prefix("TYPE").map(str::parse::<u16>) {
            Some(Ok(code)) => RecordType::from(code),
            _ => RecordType::from_str(rtype).map_err(|e| format!("query type: {e}"))?,
        };
        let class = DNSClass::from_str(class).map_err(|e| format!("query class: {e}"))?;
        let mut query = Query::query(name, rtype);
        query.set_query_class(class);
        Ok(Some(query))
    }

    fn packet(&self) -> Result<Vec<u8>, String> {
        if let Some(raw) = &self.raw {
            if self.query.is_some() || self.has_edns() {
                return Err("raw excludes query and EDNS fields".into());
            }
            return hex(raw);
        }
        let question = self.question()?.ok_or("a case needs query or raw")?;
        let op_code = OpCode::from_u8(self.opcode);
        let mut message = Message::new(QUERY_ID, MessageType::Query, op_code);
        message.metadata.recursion_desired = self.rd;
        message.add_query(question);
        if self.has_edns() {
            let mut edns = Edns::new();
            edns.set_max_payload(self.payload.unwrap_or(1232));
            edns.set_version(self.edns_version.unwrap_or(0));
            edns.set_dnssec_ok(self.dnssec_ok);
            if let Some(subnet) = self.ecs_subnet()? {
                edns.options_mut().insert(EdnsOption::Subnet(subnet));
            }
            if let Some(data) = &self.ecs_option {
                edns.options_mut()
                    .insert(EdnsOption::Unknown(u16::from(EdnsCode::Subnet), hex(data)?));
            }
            message.edns = Some(edns);
        }
        message
            .to_vec()
            .map_err(|e| format!("encoding the query: {e}"))
    }
}

//----------- Expectations ----------------------------------------------------------------

fn rcode_named(name: &str) -> Result<u16, String> {
    Ok(match name.to_ascii_uppercase().as_str() {
        "NOERROR" => 0,
        "FORMERR" => 1,
        "SERVFAIL" => 2,
        "NXDOMAIN" => 3,
        "NOTIMP" => 4,
        "REFUSED" => 5,
        "YXDOMAIN" => 6,
        "BADVERS" => 16,
        _ => return Err(format!("unknown rcode {name:?}")),
    })
}

const FLAGS: [&str; 6] = ["aa", "tc", "rd", "ra", "ad", "cd"];

fn flags_of(message: &Message) -> String {
    let m = &message.metadata;
    let set = [
        m.authoritative,
        m.truncation,
        m.recursion_desired,
        m.recursion_available,
        m.authentic_data,
        m.checking_disabled,
    ];
    FLAGS
        .iter()
        .zip(set)
        .filter(|(_, on)| *on)
        .map(|(f, _)| *f)
        .collect::<Vec<_>>()
        .join(" ")
}

fn normal_flags(text: &str) -> Result<String, String> {
    let wanted: BTreeSet<&str> = text.split_whitespace().collect();
    if let Some(bad) = wanted.iter().find(|f| !FLAGS.contains(f)) {
        return Err(format!("unknown flag {bad:?} (known: {})", FLAGS.join(" ")));
    }
    Ok(FLAGS
        .iter()
        .filter(|f| wanted.contains(*f))
        .copied()
        .collect::<Vec<_>>()
        .join(" "))
}

/// A record with its owner as written: hickory's parser lowercases names, and the case
/// of an owner is part of what is checked (query names are echoed as asked, SPEC §9).
#[derive(Clone, Debug)]
struct Rr {
    owner: String,
    record: Record,
}

impl Rr {
    fn got(record: &Record) -> Self {
        Self {
            owner: record.name.to_string(),
            record: record.clone(),
        }
    }
}

impl std::fmt::Display for Rr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.record;
        let (ttl, class, rtype) = (r.ttl, r.dns_class, r.record_type());
        write!(f, "{} {ttl} {class} {rtype} {}", self.owner, r.data)
    }
}

/// A record in presentation form (`OWNER TTL CLASS TYPE RDATA`, absolute names), parsed
/// by hickory's zone-file parser.
fn record(text: &str) -> Result<Rr, String> {
    let owner = text.split_whitespace().next().unwrap_or_default();
    if !owner.ends_with('.') {
        return Err(format!("record {text:?}: the owner must end with a dot"));
    }
    // hickory's text parser has neither DNAME (RFC 6672) nor the RFC 3597 form
    // (`TYPEnnn \# LENGTH HEX`): their RDATA is decoded from wire bytes, as in a reply.
    let fields: Vec<&str> = text.split_whitespace().collect();
    let wire = match fields.get(3..) {
        Some([rtype, target]) if rtype.eq_ignore_ascii_case("DNAME") => {
            let target = Name::from_ascii(target).map_err(|e| format!("record {text:?}: {e}"))?;
            Some((39, target.to_bytes().map_err(|e| e.to_string())?))
        }
        Some([rtype, generic, _length, hex_words @ ..]) if *generic == "\\#" => {
            let code = rtype
                .strip_prefix("TYPE")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("record {text:?}: \\# needs TYPEnnn"))?;
            Some((code, hex(&hex_words.concat())?))
        }
        _ => None,
    };
    if let (Some((code, wire)), [_, ttl, "IN", ..]) = (wire, &fields[..]) {
        let ttl = ttl
            .parse()
            .map_err(|e| format!("record {text:?}: TTL: {e}"))?;
        let length = Restrict::new(wire.len() as u16);
        let data = RData::read(&mut BinDecoder::new(&wire), RecordType::from(code), length)
            .map_err(|e| format!("record {text:?}: {e}"))?;
        let name = Name::from_ascii(owner).map_err(|e| format!("record {text:?}: {e}"))?;
        return Ok(Rr {
            owner: owner.to_owned(),
            record: Record::from_rdata(name, ttl, data),
        });
    }
    let parsed = Parser::new(text, None, Some(Name::root()))
        .parse()
        .map_err(|e| format!("record {text:?}: {e}"))?;
    let mut records = parsed
        .1
        .values()
        .flat_map(|set| set.records_without_rrsigs());
    match (records.next(), records.next()) {
        (Some(r), None) => Ok(Rr {
            owner: owner.to_owned(),
            record: r.clone(),
        }),
        _ => Err(format!("record {text:?}: want exactly one record")),
    }
}

fn records(texts: &[String]) -> Result<Vec<Rr>, String> {
    texts.iter().map(|t| record(t)).collect()
}

/// Owner as written (case matters), TTL, class, type and RDATA.
fn same_record(a: &Rr, b: &Rr) -> bool {
    a.owner == b.owner && a.record.ttl == b.record.ttl && a.record == b.record
}

/// Same records, in any order.
fn same_set(want: &[Rr], got: &[Rr]) -> bool {
    want.len() == got.len()
        && want.iter().all(|w| {
            want.iter().filter(|x| same_record(x, w)).count()
                == got.iter().filter(|x| same_record(x, w)).count()
        })
}

/// Records grouped into RRsets (owner and type) in order of first appearance.
fn rrsets(records: &[Rr]) -> Vec<Vec<Rr>> {
    let mut sets: Vec<Vec<Rr>> = Vec::new();
    for r in records {
        let last = sets.last_mut().filter(|set| {
            set[0].owner == r.owner && set[0].record.record_type() == r.record.record_type()
        });
        match last {
            Some(set) => set.push(r.clone()),
            None => sets.push(vec![r.clone()]),
        }
    }
    sets
}

/// The answer section: RRsets in order, records within one in any order.
fn same_answer(want: &[Rr], got: &[Rr]) -> bool {
    let (want, got) = (rrsets(want), rrsets(got));
    want.len() == got.len() && want.iter().zip(&got).all(|(w, g)| same_set(w, g))
}

fn show(records: &[Rr]) -> String {
    if records.is_empty() {
        return "      (none)\n".into();
    }
    records.iter().map(|r| format!("      {r}\n")).collect()
}

fn show_opt(message: &Message) -> String {
    match &message.edns {
        None => "none".into(),
        Some(edns) => {
            let mut text = edns.max_payload().to_string();
            if edns.flags().dnssec_ok {
                text.push_str(" do");
            }
            if edns.version() != 0 {
                let _ = write!(text, " version {}", edns.version());
            }
            text
        }
    }
}

//----------- Running a case --------------------------------------------------------------

/// Checks one case; `Err` is what went wrong, to print.
fn run_case(snapshot: &Snapshot, case: &Case) -> Result<(), String> {
    let packet = case.packet()?;
    let question = case.question()?;
    let source: IpAddr = case
        .source
        .unwrap_or_else(|| DEFAULT_SOURCE.parse().expect("an address"));
    let transport = match case.transport {
        Proto::Udp => Transport::Udp,
        Proto::Tcp => Transport::Tcp,
    };
    let want_rcode = rcode_named(case.rcode.as_deref().unwrap_or("NOERROR"))?;
    let want_flags = normal_flags(case.flags.as_deref().unwrap_or("aa"))?;
    let want_answer = records(&case.answer)?;
    let want_one_of = match &case.answer_one_of {
        Some(sets) => {
            if !case.answer.is_empty() {
                return Err("answer and answer_one_of exclude each other".into());
            }
            if case.answer_count.is_some() {
                return Err("answer_count and answer_one_of exclude each other".into());
            }
            Some(
                sets.iter()
                    .map(|set| records(set))
                    .collect::<Result<Vec<_>, _>>()?,
            )
        }
        None => None,
    };
    let want_authority = records(&case.authority)?;
    let want_additional = records(&case.additional)?;
    let want_opt = match &case.opt {
        Some(opt) => opt.split_whitespace().collect::<Vec<_>>().join(" "),
        None if case.has_edns() && case.raw.is_none() => {
            if case.dnssec_ok { "1232 do" } else { "1232" }.into()
        }
        None => "none".into(),
    };
    let query_ecs = case.ecs_subnet()?;
    if case.scope.is_some() && query_ecs.is_none() {
        return Err("scope needs ecs in the query".into());
    }
    let runs = case
        .runs
        .unwrap_or(if want_one_of.is_some() { 20 } else { 1 });

    for seed in 0..runs {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut out = vec![0u8; 65535];
        let outcome = respond(snapshot, &packet, source, transport, &mut rng, &mut out);
        let run = if runs > 1 {
            format!(" (run {seed})")
        } else {
            String::new()
        };
        if case.no_reply {
            if outcome.len > 0 {
                return Err(format!("expected no reply{run}, got {} bytes", outcome.len));
            }
            continue;
        }
        if outcome.len == 0 {
            return Err(format!("expected a reply{run}, got none"));
        }
        let bytes = &out[..outcome.len];
        let reply =
            Message::from_vec(bytes).map_err(|e| format!("the reply{run} does not decode: {e}"))?;
        let got_answer: Vec<Rr> = reply.answers.iter().map(Rr::got).collect();
        let got_authority: Vec<Rr> = reply.authorities.iter().map(Rr::got).collect();
        let got_additional: Vec<Rr> = reply.additionals.iter().map(Rr::got).collect();
        let mut problems = String::new();

        // What every reply must do.
        let query_id = u16::from_be_bytes([packet[0], packet[1]]);
        if reply.metadata.id != query_id {
            let _ = writeln!(
                problems,
                "  id: want {query_id:#06x}, got {:#06x}",
                reply.metadata.id
            );
        }
        if reply.metadata.message_type != MessageType::Response {
            let _ = writeln!(problems, "  QR is not set");
        }
        let query_opcode = (packet[2] >> 3) & 0xF;
        if u8::from(reply.metadata.op_code) != query_opcode {
            let _ = writeln!(
                problems,
                "  opcode: want {query_opcode}, got {}",
                u8::from(reply.metadata.op_code)
            );
        }
        let limit = match (transport, case.has_edns()) {
            (Transport::Tcp, _) => 65535,
            (Transport::Udp, true) => usize::from(case.payload.unwrap_or(1232).clamp(512, 1232)),
            (Transport::Udp, false) => 512,
        };
        if case.raw.is_none() && bytes.len() > limit {
            let _ = writeln!(
                problems,
                "  size: {} bytes, over the limit {limit}",
                bytes.len()
            );
        }
        let want_questions: Vec<&Query> = match (&question, case.no_question) {
            (Some(q), false) => vec![q],
            _ => vec![],
        };
        if case.raw.is_none() || case.no_question {
            let got: Vec<&Query> = reply.queries.iter().collect();
            // The question comes back as asked, case included (SPEC §9).
            let as_text = |qs: &[&Query]| qs.iter().map(|q| format!("{q}")).collect::<Vec<_>>();
            if as_text(&got) != as_text(&want_questions) {
                let _ = writeln!(
                    problems,
                    "  question: want {:?}, got {:?}",
                    as_text(&want_questions),
                    as_text(&got)
                );
            }
        }

        // What this case expects.
        let got_rcode = u16::from(reply.metadata.response_code);
        if got_rcode != want_rcode {
            let _ = writeln!(
                problems,
                "  rcode: want {}, got {}",
                case.rcode.as_deref().unwrap_or("NOERROR"),
                reply.metadata.response_code
            );
        }
        let got_flags = flags_of(&reply);
        if got_flags != want_flags {
            let _ = writeln!(problems, "  flags: want [{want_flags}], got [{got_flags}]");
        }
        match &want_one_of {
            _ if case.answer_count.is_some() => {
                if case.answer_count != Some(got_answer.len()) {
                    let _ = writeln!(
                        problems,
                        "  answer: want {} records, got {}",
                        case.answer_count.unwrap_or_default(),
                        got_answer.len()
                    );
                }
            }
            Some(sets) => {
                if !sets.iter().any(|set| same_set(set, &got_answer)) {
                    let mut alternatives = String::new();
                    for set in sets {
                        let _ = write!(alternatives, "    one of:\n{}", show(set));
                    }
                    let _ = write!(
                        problems,
                        "  answer: want\n{alternatives}    got:\n{}",
                        show(&got_answer)
                    );
                }
            }
            None => {
                if !same_answer(&want_answer, &got_answer) {
                    let _ = write!(
                        problems,
                        "  answer: want\n{}    got:\n{}",
                        show(&want_answer),
                        show(&got_answer)
                    );
                }
            }
        }
        for (section, want, got) in [
            ("authority", &want_authority, &got_authority),
            ("additional", &want_additional, &got_additional),
        ] {
            if !same_set(want, got) {
                let _ = write!(
                    problems,
                    "  {section}: want\n{}    got:\n{}",
                    show(want),
                    show(got)
                );
            }
        }
        let got_opt = show_opt(&reply);
        if got_opt != want_opt {
            let _ = writeln!(problems, "  opt: want {want_opt}, got {got_opt}");
        }
        let got_ecs = reply
            .edns
            .as_ref()
            .and_then(|e| e.option(EdnsCode::Subnet))
            .map(|o| match o {
                EdnsOption::Subnet(s) => Ok(*s),
                other => Err(format!("{other:?}")),
            });
        let want_ecs = match (&query_ecs, case.no_ecs) {
            (Some(q), false) => Some(ClientSubnet::new(
                q.addr(),
                q.source_prefix(),
                case.scope.unwrap_or(0),
            )),
            _ => None,
        };
        let show_ecs = |s: &ClientSubnet| {
            format!(
                "{}/{} scope {}",
                s.addr(),
                s.source_prefix(),
                s.scope_prefix()
            )
        };
        match (&want_ecs, &got_ecs) {
            (None, None) => {}
            (Some(w), Some(Ok(g)))
                if w.addr() == g.addr()
                    && w.source_prefix() == g.source_prefix()
                    && w.scope_prefix() == g.scope_prefix() => {}
            _ => {
                let _ = writeln!(
                    problems,
                    "  ecs: want {}, got {}",
                    want_ecs.as_ref().map_or("none".into(), show_ecs),
                    match &got_ecs {
                        None => "none".into(),
                        Some(Ok(g)) => show_ecs(g),
                        Some(Err(raw)) => raw.clone(),
                    }
                );
            }
        }
        if !problems.is_empty() {
            return Err(format!("{run}\n{problems}"));
        }
    }
    Ok(())
}

//----------- Running every file ----------------------------------------------------------

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// What running a file found.
#[derive(Default)]
struct Report {
    passed: usize,
    known_bugs: Vec<String>,
    failures: Vec<String>,
}

fn run_file(path: &Path, report: &mut Report) {
    let shown = path
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return report.failures.push(format!("{shown}: {e}")),
    };
    let file: CaseFile = match toml::from_str(&text) {
        Ok(file) => file,
        Err(e) => {
            let line = e.span().map_or(0, |s| line_of(&text, s.start));
            return report
                .failures
                .push(format!("{shown}:{line}: {}", e.message()));
        }
    };
    if file.case.is_empty() && file.refused.is_empty() {
        return report.failures.push(format!("{shown}: no [[case]]"));
    }
    for refused in &file.refused {
        let at = format!(
            "{shown}:{}: {}",
            line_of(&text, refused.span().start),
            refused.get_ref().name
        );
        let refused = refused.get_ref();
        let origin = Name::from_ascii(refused.origin.as_deref().unwrap_or("example.com."));
        let result = origin
            .map_err(|e| e.to_string())
            .map(|origin| zone::parse(&refused.text, path, &origin));
        let prefix = format!("{}:", path.display());
        match result {
            Ok(Err(e))
                if e.to_string()
                    .strip_prefix(&prefix)
                    .is_some_and(|m| m.contains(&refused.error)) =>
            {
                report.passed += 1
            }
            Ok(Err(e)) => report.failures.push(format!(
                "{at}\n  want an error with {:?}\n  got {e}",
                refused.error
            )),
            Ok(Ok(_)) => report.failures.push(format!(
                "{at}\n  the zone loads; want an error with {:?}",
                refused.error
            )),
            Err(e) => report.failures.push(format!("{at}: origin: {e}")),
        }
    }
    let snapshot = match snapshot_of(&file, path) {
        Ok(snapshot) => snapshot,
        Err(e) => return report.failures.push(format!("{shown}: the zones: {e}")),
    };
    for case in &file.case {
        let line = line_of(&text, case.span().start);
        let case = case.get_ref();
        let at = format!("{shown}:{line}: {}", case.name);
        // Problems come as indented lines; a case that cannot run says so on its own line.
        let result = run_case(&snapshot, case).map_err(|e| match e.starts_with([' ', '\n']) {
            true => e,
            false => format!("\n  {e}"),
        });
        match (result, &case.known_bug) {
            (Ok(()), None) => report.passed += 1,
            (Err(e), None) => report.failures.push(format!("{at}{e}")),
            (Err(e), Some(bug)) => report
                .known_bugs
                .push(format!("{at}\n  known bug: {bug}{e}")),
            (Ok(()), Some(bug)) => report.failures.push(format!(
                "{at}: passes, but is marked known_bug ({bug}): remove the mark"
            )),
        }
    }
}

fn case_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("tests/cases exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "case"))
        .collect();
    files.sort();
    files
}

#[test]
fn behaviour_cases() {
    let files = case_files();
    assert!(!files.is_empty(), "no tests/cases/*.case files");
    let mut report = Report::default();
    for path in &files {
        run_file(path, &mut report);
    }
    for bug in &report.known_bugs {
        eprintln!("KNOWN BUG {bug}\n");
    }
    eprintln!(
        "{} cases passed, {} known bugs, {} failures in {} files",
        report.passed,
        report.known_bugs.len(),
        report.failures.len(),
        files.len()
    );
    assert!(
        report.failures.is_empty(),
        "\n{}",
        report.failures.join("\n\n")
    );
}

/// The runner itself fails what it should: a wrong expectation, a broken file.
#[test]
fn the_runner_catches_wrong_expectations_and_broken_files() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let zone = r#"
[[zone]]
origin = "example.com."
text = """
$TTL 3600
@ SOA ns1 hostmaster 1 7200 900 1209600 300
@ NS ns1
ns1 A 192.0.2.53
"""
"#;
    let cases = [
        (
            "wrong answer",
            "[[case]]\nname = \"x\"\nquery = \"ns1.example.com. A\"\nanswer = [\"ns1.example.com. 3600 IN A 192.0.2.54\"]\n",
            "192.0.2.53",
        ),
        (
            "wrong rcode",
            "[[case]]\nname = \"x\"\nquery = \"no.example.com. A\"\n",
            "rcode: want NOERROR, got Non-Existent Domain",
        ),
        (
            "unknown key",
            "[[case]]\nname = \"x\"\nquery = \"ns1.example.com. A\"\nanwser = []\n",
            "t.case:13: unknown field `anwser`",
        ),
        (
            "stale known bug",
            "[[case]]\nname = \"x\"\nquery = \"ns1.example.com. A\"\nanswer = [\"ns1.example.com. 3600 IN A 192.0.2.53\"]\nknown_bug = \"none\"\n",
            "remove the mark",
        ),
    ];
    for (what, case, want) in cases {
        let path = dir.path().join("t.case");
        std::fs::write(&path, format!("{zone}{case}")).expect("writes");
        let mut report = Report::default();
        run_file(&path, &mut report);
        let failures = report.failures.join("\n");
        assert!(failures.contains(want), "{what}: {failures:?}");
    }
}
