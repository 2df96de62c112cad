//! Zone files: RFC 1035 master files, read by lbdns's own reader ([`reader`]) and checked
//! for the data an authoritative server cannot serve (no SOA, CNAME beside other data, ...).
//!
//! Records stream from the reader straight into the compiled zone ([`ZoneBuilder`]):
//! nothing holds a parsed copy of the zone, and every rule is checked as its record
//! arrives, so errors name the file and line of the statement that breaks it.

mod rdata;
pub mod reader;

use std::path::{Path, PathBuf};

use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::dns::transfer::MAX_RECORD;
use crate::snapshot::Rrsets;
use crate::snapshot::ZoneBuilder;
use crate::snapshot::ZoneData;
use crate::wire::{CLASS_IN, rtype};
use reader::{Position, ReadError, Record};

/// Errors loading a zone file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZoneError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        /// The line of the record that breaks the rule (none for a missing SOA).
        line: Option<usize>,
        message: String,
    },
}

/// The largest zone file (and `$INCLUDE`d file) lbdns reads: about 7 times the
/// 2,000,000-record zone of `scripts/bench scale` (some 70 MB).
pub const MAX_FILE_BYTES: u64 = 512 << 20;

/// Reads a zone file or an `$INCLUDE`d one: a regular file of at most [`MAX_FILE_BYTES`].
pub fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::load::read_bounded(path, MAX_FILE_BYTES, "a zone file")
}

/// Reads the zone file at `path`, whose origin is `origin`, and compiles it.
pub fn load(path: &Path, origin: &Name) -> Result<ZoneData, ZoneError> {
    let text = read_file(path).map_err(|source| ZoneError::Read {
        path: path.to_owned(),
        source,
    })?;
    read(&text, path, origin)
}

/// Parses zone text; `path` is used for `$INCLUDE` and messages.
pub fn parse(text: &str, path: &Path, origin: &Name) -> Result<ZoneData, ZoneError> {
    read(text.as_bytes(), path, origin)
}

fn read(text: &[u8], path: &Path, origin: &Name) -> Result<ZoneData, ZoneError> {
    let mut zone = ZoneBuilder::new(origin, path.to_owned());
    let apex = zone.apex().to_vec();
    let mut owner = Vec::new();
    let mut has_soa = false;
    let mut warnings = Warnings::default();
    let mut add = |record: &Record, at: Position| {
        let invalid = |message: String| ZoneError::Invalid {
            path: at.path.to_owned(),
            line: Some(at.line),
            message,
        };
        let mut warn = |message: String| {
            warnings.push(format!("{}:{}: {message}", at.path.display(), at.line));
        };
        // Owners are kept lowercased: lookups compare lowercased names. Length bytes
        // (at most 63) are never ASCII letters, so the whole wire form can be mapped.
        owner.clear();
        owner.extend(record.owner.iter().map(u8::to_ascii_lowercase));
        let is_apex = owner == apex;
        // Ignored with a warning, as Knot does: no query for it reaches this zone.
        if !is_apex && !is_below(&owner, &apex) {
            warn(format!(
                "{} {} is outside the zone {}: ignored",
                display(&owner),
                rdata::type_name(record.rtype),
                display(&apex)
            ));
            return Ok(());
        }
        // Knot and NSD refuse the zone too.
        if record.class != CLASS_IN {
            return Err(invalid(format!(
                "{} {} is of class {}: a zone holds class IN only",
                display(&owner),
                rdata::type_name(record.rtype),
                match record.class {
                    3 => "CH".to_owned(),
                    4 => "HS".to_owned(),
                    other => format!("CLASS{other}"),
                }
            )));
        }
        match record.rtype {
            rtype::SOA if !is_apex => {
                return Err(invalid(format!(
                    "the SOA record must be at the apex {}, not {}",
                    display(&apex),
                    display(&owner)
                )));
            }
            rtype::SOA if has_soa => {
                return Err(invalid(format!(
                    "the zone {} has more than one SOA record",
                    display(&apex)
                )));
            }
            rtype::SOA => has_soa = true,
            rtype::CNAME if is_apex => {
                return Err(invalid(format!(
                    "a CNAME cannot sit at the zone apex {}",
                    display(&apex)
                )));
            }
            rtype::NS if record.rdata.starts_with(b"\x01*") => {
                return Err(invalid(format!(
                    "{}: NS target {} is a wildcard",
                    display(&owner),
                    display(record.rdata)
                )));
            }
            _ => {}
        }
        // A transfer carries each record whole in one message (RFC 5936 §2.2): a record
        // that cannot be sent would end every transfer of the zone there.
        let len = owner.len() + 10 + record.rdata.len();
        if len > MAX_RECORD {
            return Err(invalid(format!(
                "{} {}: the record is {len} bytes with its owner name, more than the {MAX_RECORD} \
                 a zone transfer message holds: shorten its RDATA by {} bytes",
                display(&owner),
                rdata::type_name(record.rtype),
                len - MAX_RECORD
            )));
        }
        let class_ttl = (record.rtype, record.class, record.ttl);
        let ttl_before = zone.add(&owner, class_ttl, record.rdata, |there| {
            cname_rule(record.rtype, record.rdata, &there)
                .and_then(|()| dname_rule(record.rtype, record.rdata, &there))
                .map_err(|why| invalid(format!("{} {why}", display(&owner))))
        })?;
        if let Some(before) = ttl_before {
            warn(format!(
                "{} {}: TTL {} differs from the RRset's {before}; the RRset takes {} \
                 (RFC 2181 §5.2: one TTL per RRset; the last one given, as Knot)",
                display(&owner),
                rdata::type_name(record.rtype),
                record.ttl,
                record.ttl
            ));
        }
        Ok(())
    };
    reader::read(text, path, &apex, &mut add).map_err(|e| match e {
        ReadError::Syntax {
            path,
            line,
            message,
        } => ZoneError::Syntax {
            path,
            line,
            message,
        },
        ReadError::Include { path, source } => ZoneError::Read { path, source },
        ReadError::Sink(invalid) => invalid,
    })?;
    if !has_soa {
        return Err(ZoneError::Invalid {
            path: path.to_owned(),
            line: None,
            message: format!("the zone {} has no SOA record", display(&apex)),
        });
    }
    if let Some((name, dname)) = zone.below_dname() {
        return Err(ZoneError::Invalid {
            path: path.to_owned(),
            line: None,
            message: format!(
                "{} has data below the DNAME at {}, which no query reaches (RFC 6672 §2.3): \
                 remove it or the DNAME",
                display(name),
                display(dname)
            ),
        });
    }
    let mut data = zone.finish();
    data.warnings = warnings.finish();
    Ok(data)
}

/// The warnings of one zone file: the first [`Warnings::SHOWN`] in full, then a count.
#[derive(Default)]
struct Warnings {
    shown: Vec<String>,
    more: usize,
}

impl Warnings {
    const SHOWN: usize = 20;

    fn push(&mut self, warning: String) {
        if self.shown.len() < Self::SHOWN {
            self.shown.push(warning);
        } else {
            self.more += 1;
        }
    }

    fn finish(mut self) -> Vec<String> {
        if self.more > 0 {
            self.shown
                .push(format!("... and {} more warnings", self.more));
        }
        self.shown
    }
}

/// A CNAME is alone at its name (RFC 1034 §3.6.2, RFC 2181 §10.1), DNSSEC's RRSIG and
/// NSEC aside (RFC 4035 §2.5): checked against the records already at the name. The
/// same CNAME twice is one record, as for any type (RFC 2181 §5).
fn cname_rule(adding: u16, rdata: &[u8], there: &Rrsets) -> Result<(), &'static str> {
    const RRSIG: u16 = 46;
    const NSEC: u16 = 47;
    let beside = |t: u16| t == RRSIG || t == NSEC;
    if beside(adding) {
        return Ok(());
    }
    // The rule held so far: if the name has a CNAME, its first other record is it.
    match there.records().find(|(t, _)| !beside(*t)) {
        Some((rtype::CNAME, target)) if adding == rtype::CNAME && target != rdata => {
            Err("has more than one CNAME record")
        }
        Some((rtype::CNAME, _)) if adding == rtype::CNAME => Ok(()),
        Some((rtype::CNAME, _)) => Err(CNAME_AND_OTHER),
        Some(_) if adding == rtype::CNAME => Err(CNAME_AND_OTHER),
        _ => Ok(()),
    }
}

/// A name has at most one DNAME (RFC 6672 §2.4).
fn dname_rule(adding: u16, rdata: &[u8], there: &Rrsets) -> Result<(), &'static str> {
    match adding {
        rtype::DNAME
            if there
                .records()
                .any(|(t, r)| t == rtype::DNAME && r != rdata) =>
        {
            Err("has more than one DNAME record")
        }
        _ => Ok(()),
    }
}

const CNAME_AND_OTHER: &str = "has a CNAME and other data; a CNAME must be alone at its name";

/// Whether the wire name `name` is strictly below the wire name `apex`.
fn is_below(name: &[u8], apex: &[u8]) -> bool {
    let mut at = 0;
    while at < name.len() && name[at] != 0 {
        at += 1 + usize::from(name[at]);
        if name.get(at..) == Some(apex) {
            return true;
        }
    }
    false
}

/// A wire name for messages.
fn display(wire: &[u8]) -> String {
    Name::read(&mut BinDecoder::new(wire))
        .map_or_else(|_| format!("{wire:?}"), |name| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Records;
    use hickory_proto::serialize::binary::BinEncodable;

    fn origin() -> Name {
        Name::from_ascii("example.com.").unwrap()
    }

    const HEAD: &str =
        "$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 900 1209600 300\n@ NS ns1\nns1 A 192.0.2.53\n";

    fn parse_text(text: &str) -> Result<ZoneData, ZoneError> {
        parse(text, Path::new("zones/example.com.zone"), &origin())
    }

    /// The zone with HEAD and `records` after it.
    fn zone(records: &str) -> ZoneData {
        parse_text(&format!("{HEAD}{records}")).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The records served for `owner` (wire form) and `rtype`: type, class, TTL,
    /// RDLENGTH, RDATA each.
    fn served_at(zone: &ZoneData, owner: &[u8], rtype: u16) -> Vec<Vec<u8>> {
        let node = zone.node(owner).expect("the name exists");
        Records(node.rrset(rtype).unwrap_or_default())
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn served(zone: &ZoneData, owner: &str, rtype: u16) -> Vec<Vec<u8>> {
        served_at(
            zone,
            &Name::from_ascii(owner).unwrap().to_bytes().unwrap(),
            rtype,
        )
    }

    /// A record as served: the header written out by hand, then `rdata`.
    fn wire(rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
        let mut bytes = rtype.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0, 1]);
        bytes.extend_from_slice(&ttl.to_be_bytes());
        bytes.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        bytes.extend_from_slice(rdata);
        bytes
    }

    fn hex(text: &str) -> Vec<u8> {
        let text: String = text.split_whitespace().collect();
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn syntax_line(text: &str) -> (usize, String) {
        match parse_text(text).unwrap_err() {
            ZoneError::Syntax { line, message, .. } => (line, message),
            other => panic!("{other}"),
        }
    }

    const EXAMPLE_COM: &[u8] = b"\x07example\x03com\x00";

    #[test]
    fn parses_a_zone() {
        let zone = parse_text(&format!("{HEAD}www A 192.0.2.1\n")).unwrap();
        assert_eq!(zone.origin, origin());
        assert_eq!(served(&zone, "example.com.", 6).len(), 1);
        assert_eq!(
            served(&zone, "www.example.com.", 1),
            [wire(1, 300, &[192, 0, 2, 1])]
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let text =
            format!("{HEAD}; comment\n\nwww A 192.0.2.1\nbad A not-an-address\nok A 192.0.2.2\n");
        let err = parse_text(&text).unwrap_err();
        match err {
            ZoneError::Syntax { line, .. } => assert_eq!(line, 8, "{err}"),
            other => panic!("{other}"),
        }
        assert!(
            err.to_string().starts_with("zones/example.com.zone:8: "),
            "{err}"
        );
    }

    #[test]
    fn multi_line_statements_count_from_their_first_line() {
        let text =
            "$TTL 300\n@ IN SOA ns1 hostmaster (\n 1 7200 900\n 1209600 300 )\nwww BOGUS 1\n";
        assert_eq!(syntax_line(text).0, 5);
        let (line, message) = syntax_line(&format!("{HEAD}t TXT (\n \"a\"\n  \"b\"\n"));
        assert_eq!((line, message.as_str()), (5, "'(' without ')'"));
        // An escaped newline in a word still counts.
        let text = format!("{HEAD}t TXT x\\\ny\nbad A 1\n");
        assert_eq!(syntax_line(&text).0, 7);
        let (line, message) = syntax_line(&format!("{HEAD}\nt TXT \"open"));
        assert_eq!((line, message.as_str()), (6, "unterminated quoted string"));
    }

    #[test]
    fn semantic_errors() {
        let err = parse_text("$TTL 300\nwww A 192.0.2.1\n").unwrap_err();
        assert!(err.to_string().contains("no SOA"), "{err}");
        let err = parse_text(&format!(
            "{HEAD}www CNAME x\nmail A 192.0.2.2\nwww TXT hi\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("CNAME and other data"), "{err}");
        assert!(
            err.to_string().starts_with("zones/example.com.zone:7: "),
            "{err}"
        );
        let dname =
            parse_text(&format!("{HEAD}d DNAME x.example.net.\na.d A 192.0.2.1\n")).unwrap_err();
        assert!(
            dname
                .to_string()
                .contains("a.d.example.com. has data below the DNAME at d.example.com."),
            "{dname}"
        );
        let rules = [
            ("@ CNAME www", "apex"),
            ("w TXT x\nw CNAME y", "CNAME and other data"),
            ("sub NS *.example.net.", "wildcard"),
            ("d DNAME a.\nd DNAME b.", "more than one DNAME"),
            (
                "v CH TXT \"1\"",
                "is of class CH: a zone holds class IN only",
            ),
            ("v HS TXT \"1\"", "is of class HS"),
            ("@ SOA a b 2 1 1 1 1", "more than one SOA"),
            ("w SOA a b 2 1 1 1 1", "must be at the apex"),
        ];
        for (records, message) in rules {
            let err = parse_text(&format!("{HEAD}{records}\n")).unwrap_err();
            assert!(err.to_string().contains(message), "{records}: {err}");
            assert!(matches!(err, ZoneError::Invalid { line: Some(_), .. }));
        }
        // DNSSEC's RRSIG and NSEC may sit beside a CNAME (RFC 4035 §2.5).
        zone("w CNAME x\nw NSEC x.example.com. CNAME RRSIG NSEC\nw CNAME x\n");
        let err = parse_text(&format!("{HEAD}w CNAME x\nw CNAME y\n")).unwrap_err();
        assert!(err.to_string().contains("more than one CNAME"), "{err}");
    }

    /// `\DDD` is a decimal byte, `\X` the byte X: `a\046b` is one label "a.b".
    #[test]
    fn escapes_in_owner_names() {
        let zone = zone("a\\046b A 192.0.2.1\nc\\.d A 192.0.2.2\n\\065Bc A 192.0.2.3\n");
        let owner = |label: &[u8]| [&[label.len() as u8], label, EXAMPLE_COM].concat();
        assert_eq!(served_at(&zone, &owner(b"a.b"), 1).len(), 1);
        assert_eq!(served_at(&zone, &owner(b"c.d"), 1).len(), 1);
        // Owners are lowercased, after unescaping.
        assert_eq!(served_at(&zone, &owner(b"abc"), 1).len(), 1);
        assert!(zone.node(&[b"\x01b", EXAMPLE_COM].concat()).is_none());
    }

    #[test]
    fn escapes_in_rdata_names_keep_their_case() {
        let zone = zone("cn CNAME Mail\\046X.Example.COM.\nmx MX 10 \\077x\n");
        let target = [b"\x06Mail.X\x07Example\x03COM\x00".as_slice()].concat();
        assert_eq!(served(&zone, "cn.example.com.", 5), [wire(5, 300, &target)]);
        let exchange = [b"\x00\x0a\x02Mx".as_slice(), EXAMPLE_COM].concat();
        assert_eq!(
            served(&zone, "mx.example.com.", 15),
            [wire(15, 300, &exchange)]
        );
    }

    /// hickory 0.26's lexer computed `\DDD` wrongly and served corrupt text.
    #[test]
    fn escapes_in_character_strings() {
        let zone = zone(
            "esc TXT \"a\\065b\"\nq TXT \"say \\\"hi\\\"; ok\" two\\ words \\059\nh HINFO \"\\255\" \"\\\\\"\n",
        );
        assert_eq!(
            served(&zone, "esc.example.com.", 16),
            [wire(16, 300, b"\x03aAb")]
        );
        assert_eq!(
            served(&zone, "q.example.com.", 16),
            [wire(16, 300, b"\x0csay \"hi\"; ok\x09two words\x01;")]
        );
        assert_eq!(
            served(&zone, "h.example.com.", 13),
            [wire(13, 300, b"\x01\xff\x01\\")]
        );
        for bad in ["t TXT \"\\256\"", "t TXT \"\\12\"", "t A\\ 1"] {
            assert_eq!(syntax_line(&format!("{HEAD}{bad}\n")).0, 5, "{bad}");
        }
    }

    /// RFC 3597: `TYPEnnn`, `CLASSnnn` and `\# length hex` for unknown and known types.
    #[test]
    fn generic_types_classes_and_rdata() {
        let zone = zone(
            "unk TYPE65280 \\# 4 0a000001\ngen A \\# 4 c0000201\ncls CLASS1 A 192.0.2.3\n\
             num TYPE1 192.0.2.4\nnil TYPE65281 \\# 0\nsplit TXT \\# ( 3 02\n 6869 )\n",
        );
        assert_eq!(
            served(&zone, "unk.example.com.", 65280),
            [wire(65280, 300, &[10, 0, 0, 1])]
        );
        assert_eq!(
            served(&zone, "gen.example.com.", 1),
            [wire(1, 300, &[192, 0, 2, 1])]
        );
        assert_eq!(
            served(&zone, "cls.example.com.", 1),
            [wire(1, 300, &[192, 0, 2, 3])]
        );
        assert_eq!(
            served(&zone, "num.example.com.", 1),
            [wire(1, 300, &[192, 0, 2, 4])]
        );
        assert_eq!(
            served(&zone, "nil.example.com.", 65281),
            [wire(65281, 300, &[])]
        );
        assert_eq!(
            served(&zone, "split.example.com.", 16),
            [wire(16, 300, b"\x02hi")]
        );
        for bad in [
            "u TYPE65280 \\# 3 0a000001",
            "u TYPE65280 \\# 4 0a00000",
            "u TYPE65280 0a000001",
            "u TYPE99999 \\# 0",
            "u HTTPS 1 relative alpn=h2",
        ] {
            assert_eq!(syntax_line(&format!("{HEAD}{bad}\n")).0, 5, "{bad}");
        }
    }

    /// DNSSEC records as Knot serves them; expected bytes written from the RFCs' examples.
    #[test]
    fn dnssec_records() {
        let zone = zone(concat!(
            // RFC 4034 §5.4.
            "dskey 86400 IN DS 60485 5 1 ( 2BB183AF5F22588179A53B0A98631FAD1A292118 )\n",
            "dskey CDS 60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118\n",
            "@ DNSKEY 257 3 8 AwEA AQ==\n",
            "@ CDNSKEY 257 3 8 AwEAAQ==\n",
            // RFC 4034 §3.3, with a short signature.
            "host 86400 RRSIG A 5 3 86400 20030322173103 (\n 20030220173103 2642 example.com.\n AwEAAQ== )\n",
            // RFC 4034 §4.3.
            "alfa 86400 IN NSEC host.example.com. ( A MX RRSIG NSEC TYPE1234 )\n",
            // RFC 5155 Appendix A.
            "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom NSEC3 1 1 12 aabbccdd (\n 2t7b4g4vsa5smi47k61mv5bv1a22bojr MX DNSKEY NS\n SOA NSEC3PARAM RRSIG )\n",
            "@ NSEC3PARAM 1 0 12 aabbccdd\n",
            "n3p NSEC3PARAM 1 0 0 -\n",
        ));
        let ds = hex("ec45 05 01 2bb183af5f22588179a53b0a98631fad1a292118");
        assert_eq!(
            served(&zone, "dskey.example.com.", 43),
            [wire(43, 86400, &ds)]
        );
        assert_eq!(
            served(&zone, "dskey.example.com.", 59),
            [wire(59, 300, &ds)]
        );
        let key = hex("0101 03 08 03010001");
        assert_eq!(served(&zone, "example.com.", 48), [wire(48, 300, &key)]);
        assert_eq!(served(&zone, "example.com.", 60), [wire(60, 300, &key)]);
        // 2003-03-22 17:31:03 UTC is 0x3e7c9dd7, 2003-02-20 17:31:03 UTC 0x3e5510d7.
        let rrsig = [
            hex("0001 05 03 00015180 3e7c9dd7 3e5510d7 0a52"),
            EXAMPLE_COM.to_vec(),
            hex("03010001"),
        ]
        .concat();
        assert_eq!(
            served(&zone, "host.example.com.", 46),
            [wire(46, 86400, &rrsig)]
        );
        let nsec = [
            b"\x04host".as_slice(),
            EXAMPLE_COM,
            &hex("0006 4001 0000 0003 041b"),
            &[0; 26],
            &[0x20],
        ]
        .concat();
        assert_eq!(
            served(&zone, "alfa.example.com.", 47),
            [wire(47, 86400, &nsec)]
        );
        let nsec3 = hex(
            "01 01 000c 04 aabbccdd 14 174eb2409fe28bcb4887a1836f957f0a8425e27b
             0007 2201 0000 0002 90",
        );
        // NSEC3 owners are not names of the zone (RFC 5155 §7.2.8): the record is kept
        // apart, for denial and transfers.
        let hashed = Name::from_ascii("0p9mhaveqvm6t7vbl5lop2u3t2rp3tom.example.com.").unwrap();
        let hashed = hashed.to_bytes().unwrap();
        assert!(zone.node(&hashed).is_none());
        let transferred: Vec<&[u8]> = zone
            .records()
            .filter(|(owner, _)| *owner == &hashed[..])
            .map(|(_, record)| record)
            .collect();
        assert_eq!(transferred, [&wire(50, 300, &nsec3)[..]]);
        assert_eq!(
            served(&zone, "example.com.", 51),
            [wire(51, 300, &hex("01 00 000c 04 aabbccdd"))]
        );
        assert_eq!(
            served(&zone, "n3p.example.com.", 51),
            [wire(51, 300, &hex("01 00 0000 00"))]
        );
    }

    #[test]
    fn other_types() {
        let zone = zone(concat!(
            "caa CAA 0 issue \"letsencrypt.org\"\n",
            "srv SRV 1 2 443 t\n",
            "sshfp SSHFP 1 1 ( 0123 4567 )\n",
            "tlsa TLSA 3 1 1 abcd\n",
            "naptr NAPTR 100 10 \"S\" \"SIP+D2U\" \"\" _sip._udp\n",
            "h HTTPS 1 . alpn=h2\n",
            "v6 AAAA 2001:db8::1\n",
        ));
        assert_eq!(
            served(&zone, "caa.example.com.", 257),
            [wire(257, 300, b"\x00\x05issueletsencrypt.org")]
        );
        let srv = [hex("0001 0002 01bb 01").as_slice(), b"t", EXAMPLE_COM].concat();
        assert_eq!(served(&zone, "srv.example.com.", 33), [wire(33, 300, &srv)]);
        assert_eq!(
            served(&zone, "sshfp.example.com.", 44),
            [wire(44, 300, &hex("01 01 01234567"))]
        );
        assert_eq!(
            served(&zone, "tlsa.example.com.", 52),
            [wire(52, 300, &hex("03 01 01 abcd"))]
        );
        let naptr = [
            hex("0064 000a").as_slice(),
            b"\x01S\x07SIP+D2U\x00\x04_sip\x04_udp",
            EXAMPLE_COM,
        ]
        .concat();
        assert_eq!(
            served(&zone, "naptr.example.com.", 35),
            [wire(35, 300, &naptr)]
        );
        // Priority 1, the root as target, alpn (key 1) of length 3 holding "h2".
        assert_eq!(
            served(&zone, "h.example.com.", 65),
            [wire(65, 300, &hex("0001 00 0001 0003 02 6832"))]
        );
        assert_eq!(
            served(&zone, "v6.example.com.", 28),
            [wire(28, 300, &hex("20010db8000000000000000000000001"))]
        );
    }

    #[test]
    fn directives_owners_ttls_and_classes() {
        let zone = zone(concat!(
            "a 1h30m IN A 192.0.2.1\n",
            "b IN 2d A 192.0.2.2\n",
            "  TXT \"blank owner is b\" ; a comment\n",
            "$TTL 1w\n",
            "c A 192.0.2.3\n",
            "$ORIGIN sub.example.com.\n",
            "d A 192.0.2.4\n",
            "@ TXT ( \"at is\"\n \"the origin\" )\n",
            "$origin example.com.\n",
            "WWW.Example.COM. 60 A 192.0.2.5\n",
            "www 60 A 192.0.2.5\n",
        ));
        assert_eq!(
            served(&zone, "a.example.com.", 1),
            [wire(1, 5400, &[192, 0, 2, 1])]
        );
        assert_eq!(
            served(&zone, "b.example.com.", 1),
            [wire(1, 172_800, &[192, 0, 2, 2])]
        );
        // No TTL: $TTL (300 still), as hickory and BIND do.
        assert_eq!(
            served(&zone, "b.example.com.", 16),
            [wire(16, 300, b"\x10blank owner is b")]
        );
        assert_eq!(
            served(&zone, "c.example.com.", 1),
            [wire(1, 604_800, &[192, 0, 2, 3])]
        );
        assert_eq!(served(&zone, "d.sub.example.com.", 1).len(), 1);
        assert_eq!(
            served(&zone, "sub.example.com.", 16),
            [wire(16, 604_800, b"\x05at is\x0athe origin")]
        );
        // Owners are lowercased, and the same record twice is one record (RFC 2181 §5).
        assert_eq!(
            served(&zone, "www.example.com.", 1),
            [wire(1, 60, &[192, 0, 2, 5])]
        );
    }

    /// An RRset's records stay together and in zone order however they are written, and
    /// duplicates go, in small RRsets and in large ones.
    #[test]
    fn rrsets_are_contiguous_and_without_duplicates() {
        let mut records = String::from("x A 192.0.2.1\nx TXT one\nx A 192.0.2.2\nx A 192.0.2.1\n");
        for i in 0..100 {
            records.push_str(&format!("big A 10.0.0.{i}\n"));
        }
        records.push_str("big A 10.0.0.7\nbig TXT t\n");
        let zone = zone(&records);
        let x = zone.node(b"\x01x\x07example\x03com\x00").unwrap();
        assert_eq!(
            Records(x.rrset(1).unwrap())
                .map(|r| r[10..].to_vec())
                .collect::<Vec<_>>(),
            [[192, 0, 2, 1], [192, 0, 2, 2]]
        );
        assert_eq!(x.first_rrset(), x.rrset(1));
        assert_eq!(served(&zone, "x.example.com.", 16).len(), 1);
        let big = served(&zone, "big.example.com.", 1);
        assert_eq!(big.len(), 100);
        assert_eq!(big[7], wire(1, 300, &[10, 0, 0, 7]));
        assert_eq!(served(&zone, "big.example.com.", 16).len(), 1);
    }

    /// Knot's leniencies: out-of-zone data is ignored with a warning,
    /// an RRset's TTLs made one (the last given, as Knot), each with its file and line.
    #[test]
    fn ignored_and_normalised_data_is_warned_about() {
        let zone = zone(concat!(
            "www.example.net. A 192.0.2.1\n",
            "x.example.com.evil. A 192.0.2.1\n",
            "after CLASS1 A 192.0.2.2\n",
            "m 100 A 192.0.2.1\n",
            "m 50 A 192.0.2.2\n",
            "m 200 A 192.0.2.3\n",
            "m 100 RRSIG A 13 3 100 20300101000000 20200101000000 1 example.com. AAAA\n",
            "m 300 RRSIG TXT 13 3 300 20300101000000 20200101000000 1 example.com. AAAA\n",
        ));
        // RRSIGs keep their own TTLs: each is its covered RRset's (RFC 4034 §3).
        let ttls: Vec<u32> = served(&zone, "m.example.com.", 46)
            .iter()
            .map(|r| u32::from_be_bytes(r[4..8].try_into().unwrap()))
            .collect();
        assert_eq!(ttls, [100, 300]);
        assert!(zone.node(b"\x07example\x03net\x00").is_none());
        assert_eq!(served(&zone, "after.example.com.", 1).len(), 1);
        assert_eq!(
            served(&zone, "m.example.com.", 1),
            [
                wire(1, 200, &[192, 0, 2, 1]),
                wire(1, 200, &[192, 0, 2, 2]),
                wire(1, 200, &[192, 0, 2, 3])
            ]
        );
        let at = |line: usize| format!("zones/example.com.zone:{line}: ");
        let w = &zone.warnings;
        assert_eq!(w.len(), 4, "{w:#?}");
        assert!(w[0].starts_with(&at(5)) && w[0].contains("www.example.net. A is outside"));
        assert!(w[1].starts_with(&at(6)) && w[1].contains("outside the zone"));
        assert!(w[2].starts_with(&at(9)) && w[2].contains("TTL 50 differs from the RRset's 100"));
        assert!(w[3].starts_with(&at(10)) && w[3].contains("TTL 200 differs from the RRset's 50"));
    }

    /// The reader refuses what Knot refuses, naming the line.
    #[test]
    fn reader_refuses_what_knot_refuses() {
        for (records, message) in [
            ("t TXT \"two\nlines\"", "does not end on its line"),
            ("t TXT \"two\\\nlines\"", "does not end on its line"),
            ("t TXT \"a\"b", "followed by a blank"),
            ("t TXT \"a\"\"b\"", "followed by a blank"),
            ("t TXT a\"b\"", "quote in the middle of a word"),
            ("t TXT ( \"a\" ( \"b\" ) )", "nested '('"),
            ("t TYPE65280 \\# +4 0a000001", "bad RDATA length +4"),
            ("t MX +10 mail", "bad preference +10"),
            ("t NS \\# 4 0a000001", "not valid NS RDATA"),
            ("t CNAME \\# 6 03777777c00c", "compressed"),
            ("t A \\# 3 c00002", "not valid A RDATA"),
            ("t MX \\# 2 000a", "not valid MX RDATA"),
            ("t TXT \\# 3 056869", "cut short"),
        ] {
            let (line, got) = syntax_line(&format!("{HEAD}{records}\n"));
            assert_eq!(line, 5, "{records}: {got}");
            assert!(got.contains(message), "{records}: {got}");
        }
        let bom = parse_text(&format!("\u{feff}{HEAD}")).unwrap_err();
        assert!(
            bom.to_string()
                .contains(":1: the file starts with a UTF-8 byte order mark"),
            "{bom}"
        );
        // Still accepted: a quoted string right before ')' or ';', and a valid `\#` NS.
        let zone =
            zone("t TXT (\"a\")\nu TXT \"b\";c\nn NS \\# 17 036e7331076578616d706c6503636f6d00\n");
        assert_eq!(
            served(&zone, "t.example.com.", 16),
            [wire(16, 300, b"\x01a")]
        );
        assert_eq!(
            served(&zone, "n.example.com.", 2),
            [wire(2, 300, &[b"\x03ns1".as_slice(), EXAMPLE_COM].concat())]
        );
    }

    /// The standard types Knot reads, in presentation form; bytes from each RFC's layout.
    #[test]
    fn knots_types_in_presentation_form() {
        let zone = zone(concat!(
            "spf SPF \"v=spf1 -all\"\n",
            "afsdb AFSDB 1 db\n",
            "rp RP mbox.example.com. txt\n",
            "uri URI 10 1 \"https://example.com/\"\n",
            "eui EUI48 00-00-5e-00-53-2a\n",
            "eui EUI64 00-00-5e-ef-10-00-00-2a\n",
            "kx KX 10 kx\n",
            "ipsec IPSECKEY 10 1 2 192.0.2.38 AQID\n",
            "@ ZONEMD 2018031500 1 1 ( FEBE3D4CE2EC2FFA )\n",
            "loc LOC 52 22 23.000 N 4 53 32.000 E -2.00m 0.00m 10000m 10m\n",
            "d DNAME example.net.\n",
            "l32 L32 10 10.1.2.0\n",
            "nid NID 10 0014:4fff:ff20:ee64\n",
            "mr MINFO a b\n",
        ));
        let name = |label: &[u8]| [&[label.len() as u8], label, EXAMPLE_COM].concat();
        let at = |owner: &str, rtype| served(&zone, &format!("{owner}.example.com."), rtype);
        assert_eq!(at("spf", 99), [wire(99, 300, b"\x0bv=spf1 -all")]);
        assert_eq!(
            at("afsdb", 18),
            [wire(18, 300, &[&[0, 1], name(b"db").as_slice()].concat())]
        );
        let rp = [b"\x04mbox".as_slice(), EXAMPLE_COM, &name(b"txt")].concat();
        assert_eq!(at("rp", 17), [wire(17, 300, &rp)]);
        assert_eq!(
            at("uri", 256),
            [wire(
                256,
                300,
                &[&hex("000a 0001"), b"https://example.com/".as_slice()].concat()
            )]
        );
        assert_eq!(at("eui", 108), [wire(108, 300, &hex("00005e00532a"))]);
        assert_eq!(at("eui", 109), [wire(109, 300, &hex("00005eef1000002a"))]);
        assert_eq!(
            at("kx", 36),
            [wire(36, 300, &[&[0, 10], name(b"kx").as_slice()].concat())]
        );
        // RFC 4025 §3.1's layout: precedence, gateway type 1, algorithm 2, IPv4, key.
        assert_eq!(
            at("ipsec", 45),
            [wire(45, 300, &hex("0a 01 02 c0000226 010203"))]
        );
        assert_eq!(
            served(&zone, "example.com.", 63),
            [wire(63, 300, &hex("7848b78c 01 01 febe3d4ce2ec2ffa"))]
        );
        // RFC 1876 §2: 2^31 + thousandths of seconds of arc; altitude from 100,000 m below
        // in centimetres; size 0 (0e0), precision 10 km (1e6 cm) and 10 m (1e3 cm).
        let lat: u32 = (1 << 31) + (52 * 3600 + 22 * 60 + 23) * 1000;
        let lon: u32 = (1 << 31) + (4 * 3600 + 53 * 60 + 32) * 1000;
        let loc = [
            &[0u8, 0x00, 0x16, 0x13][..],
            &lat.to_be_bytes(),
            &lon.to_be_bytes(),
            &9_999_800u32.to_be_bytes(),
        ]
        .concat();
        assert_eq!(at("loc", 29), [wire(29, 300, &loc)]);
        assert_eq!(at("d", 39), [wire(39, 300, b"\x07example\x03net\x00")]);
        assert_eq!(at("l32", 105), [wire(105, 300, &hex("000a 0a010200"))]);
        assert_eq!(
            at("nid", 104),
            [wire(104, 300, &hex("000a 00144fffff20ee64"))]
        );
        assert_eq!(
            at("mr", 14),
            [wire(14, 300, &[name(b"a"), name(b"b")].concat())]
        );
    }

    #[test]
    fn includes_are_relative_to_the_including_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("parts")).unwrap();
        std::fs::write(dir.path().join("parts/hosts"), "www A 192.0.2.1\n").unwrap();
        std::fs::write(
            dir.path().join("parts/more"),
            "x A 192.0.2.2\n$INCLUDE hosts\nbad A 300.1.1.1\n",
        )
        .unwrap();
        let main = dir.path().join("example.com.zone");
        std::fs::write(
            &main,
            format!(
                "{HEAD}$INCLUDE parts/hosts\n$INCLUDE parts/hosts sub\n@ TXT origin-restored\n"
            ),
        )
        .unwrap();
        let zone = load(&main, &origin()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(served(&zone, "www.example.com.", 1).len(), 1);
        assert_eq!(served(&zone, "www.sub.example.com.", 1).len(), 1);
        assert_eq!(served(&zone, "example.com.", 16).len(), 1);

        // $TTL, the last owner and the origin of an included file end with it (as Knot).
        std::fs::write(
            dir.path().join("parts/ttl"),
            "$TTL 60\n$ORIGIN sub.example.com.\ni A 192.0.2.7\n",
        )
        .unwrap();
        std::fs::write(
            &main,
            format!("{HEAD}$INCLUDE parts/ttl\n TXT blank-owner\nafter A 192.0.2.8\n"),
        )
        .unwrap();
        let zone = load(&main, &origin()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            served(&zone, "i.sub.example.com.", 1),
            [wire(1, 60, &[192, 0, 2, 7])]
        );
        assert_eq!(served(&zone, "ns1.example.com.", 16).len(), 1);
        assert_eq!(
            served(&zone, "after.example.com.", 1),
            [wire(1, 300, &[192, 0, 2, 8])]
        );

        std::fs::write(&main, format!("{HEAD}$INCLUDE parts/more\n")).unwrap();
        let err = load(&main, &origin()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}:3: ", dir.path().join("parts/more").display())),
            "{err}"
        );
        std::fs::write(&main, format!("{HEAD}$INCLUDE missing\n")).unwrap();
        assert!(matches!(
            load(&main, &origin()).unwrap_err(),
            ZoneError::Read { .. }
        ));
        std::fs::write(dir.path().join("parts/loop"), "$INCLUDE loop\n").unwrap();
        std::fs::write(&main, format!("{HEAD}$INCLUDE parts/loop\n")).unwrap();
        assert!(
            load(&main, &origin())
                .unwrap_err()
                .to_string()
                .contains("nests deeper")
        );
    }
}
