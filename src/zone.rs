//! Zone files: RFC 1035 master files, parsed with hickory-proto's parser and checked for
//! the data an authoritative server cannot serve (no SOA, CNAME beside other data, ...).
//!
//! hickory's parser reports no line numbers, so on failure [`load`] finds the first
//! statement that makes it fail by parsing prefixes of whole statements (a binary search
//! on the error path only) and reports `file:line: message`.

use std::path::{Path, PathBuf};

use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

/// A parsed and checked zone.
#[derive(Clone, Debug)]
pub struct Zone {
    /// The origin, fully qualified and lower case.
    pub origin: Name,
    /// Every record of the zone, in no particular order.
    pub records: Vec<Record>,
    /// The file it was read from.
    pub path: PathBuf,
}

impl Zone {
    /// The SOA record at the apex (present by construction).
    pub fn soa(&self) -> &Record {
        self.records
            .iter()
            .find(|r| r.record_type() == RecordType::SOA)
            .expect("a checked zone has an SOA")
    }
}

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

/// Reads the zone file at `path`, whose origin is `origin`.
pub fn load(path: &Path, origin: &Name) -> Result<Zone, ZoneError> {
    let text = std::fs::read_to_string(path).map_err(|source| ZoneError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path, origin)
}

/// Parses zone text; `path` is used for `$INCLUDE` and messages.
pub fn parse(text: &str, path: &Path, origin: &Name) -> Result<Zone, ZoneError> {
    let run = |text: &str| Parser::new(text, Some(path.to_owned()), Some(origin.clone())).parse();
    let parsed = match run(text) {
        Ok(parsed) => parsed,
        Err(error) => {
            return Err(ZoneError::Syntax {
                path: path.to_owned(),
                line: failing_line(text, |prefix| run(prefix).is_err()),
                message: error.to_string(),
            });
        }
    };
    let zone = build(parsed).map_err(|broken| {
        // The rule's record is the last statement of the shortest prefix that breaks
        // the same rule: the checks below look at SOA presence last for that reason.
        let line = broken.locatable.then(|| {
            failing_line(text, |prefix| {
                run(prefix).is_ok_and(|p| build(p).is_err_and(|b| b.message == broken.message))
            })
        });
        ZoneError::Invalid {
            path: path.to_owned(),
            line,
            message: broken.message,
        }
    })?;
    Ok(Zone {
        path: path.to_owned(),
        ..zone
    })
}

type Parsed = (
    Name,
    std::collections::BTreeMap<hickory_proto::rr::RrKey, hickory_proto::rr::RecordSet>,
);

/// A broken data rule.
struct Broken {
    message: String,
    /// False when no record is to blame (a missing SOA).
    locatable: bool,
}

fn build((origin, sets): Parsed) -> Result<Zone, Broken> {
    let origin = origin.to_lowercase();
    let broken = |message: String| Broken {
        message,
        locatable: true,
    };
    let mut records = Vec::new();
    for set in sets.values() {
        for record in set.records_without_rrsigs() {
            let mut record = record.clone();
            record.name = record.name.to_lowercase();
            if !origin.zone_of(&record.name) {
                return Err(broken(format!(
                    "{} {} is outside the zone {origin}",
                    record.name,
                    record.record_type()
                )));
            }
            records.push(record);
        }
    }
    check(&origin, &records)?;
    Ok(Zone {
        origin,
        records,
        path: PathBuf::new(),
    })
}

/// The data rules RFC 1034/2181 set and every authoritative server enforces.
fn check(origin: &Name, records: &[Record]) -> Result<(), Broken> {
    let broken = |message: String| Broken {
        message,
        locatable: true,
    };
    for cname in records
        .iter()
        .filter(|r| r.record_type() == RecordType::CNAME)
    {
        if cname.name == *origin {
            return Err(broken(format!(
                "a CNAME cannot sit at the zone apex {origin}"
            )));
        }
        let others = records
            .iter()
            .filter(|r| r.name == cname.name && !std::ptr::eq(*r, cname))
            .count();
        if others > 0 {
            return Err(broken(format!(
                "{} has a CNAME and other data; a CNAME must be alone at its name",
                cname.name
            )));
        }
    }
    for record in records {
        if let RData::NS(ns) = &record.data
            && ns.0.is_wildcard()
        {
            return Err(broken(format!(
                "{}: NS target {} is a wildcard",
                record.name, ns.0
            )));
        }
    }
    let soas: Vec<&Record> = records
        .iter()
        .filter(|r| r.record_type() == RecordType::SOA)
        .collect();
    match soas.as_slice() {
        [] => Err(Broken {
            message: format!("the zone {origin} has no SOA record"),
            locatable: false,
        }),
        [soa] if soa.name != *origin => Err(broken(format!(
            "the SOA record must be at the apex {origin}, not {}",
            soa.name
        ))),
        [_] => Ok(()),
        _ => Err(broken(format!(
            "the zone {origin} has more than one SOA record"
        ))),
    }
}

/// The 1-based line where the statement that first makes `fails` true starts.
fn failing_line(text: &str, fails: impl Fn(&str) -> bool) -> usize {
    let ends = statement_ends(text);
    // Invariant: the prefix up to ends[lo] parses (or lo == 0), the one up to ends[hi] fails.
    let (mut lo, mut hi) = (0usize, ends.len());
    if hi == 0 || !fails(&text[..ends[hi - 1].0]) {
        // Only the whole text fails (e.g. an unterminated statement at the end).
        return ends.last().map_or(1, |&(_, line)| line);
    }
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if fails(&text[..ends[mid - 1].0]) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    ends[hi - 1].1
}

/// Byte offsets just past each complete statement, with the line the statement starts on.
/// A statement ends at a newline outside parentheses and quotes; comments are skipped.
fn statement_ends(text: &str) -> Vec<(usize, usize)> {
    let mut ends = Vec::new();
    let (mut depth, mut quoted, mut comment, mut escaped) = (0usize, false, false, false);
    let (mut line, mut start_line, mut blank) = (1usize, 1usize, true);
    for (i, c) in text.char_indices() {
        if c == '\n' {
            comment = false;
            line += 1;
            if depth == 0 && !quoted {
                if !blank {
                    ends.push((i + 1, start_line));
                }
                start_line = line;
                blank = true;
            }
            continue;
        }
        if comment {
            continue;
        }
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => comment = true,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            _ => {}
        }
        if !c.is_whitespace() && !comment {
            blank = false;
        }
    }
    if !blank {
        ends.push((text.len(), start_line));
    }
    ends
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Name {
        Name::from_ascii("example.com.").unwrap()
    }

    const HEAD: &str =
        "$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 900 1209600 300\n@ NS ns1\nns1 A 192.0.2.53\n";

    fn parse_text(text: &str) -> Result<Zone, ZoneError> {
        parse(text, Path::new("zones/example.com.zone"), &origin())
    }

    #[test]
    fn parses_a_zone() {
        let zone = parse_text(&format!("{HEAD}www A 192.0.2.1\n")).unwrap();
        assert_eq!(zone.records.len(), 4);
        assert_eq!(zone.soa().name, origin());
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
        match parse_text(text).unwrap_err() {
            ZoneError::Syntax { line, .. } => assert_eq!(line, 5),
            other => panic!("{other}"),
        }
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
        let err = parse_text(&format!("{HEAD}www.example.net. A 192.0.2.1\n")).unwrap_err();
        assert!(err.to_string().contains("outside the zone"), "{err}");
    }
}
