//! IXFR in (RFC 1995): reading a primary's answer to an incremental transfer, and applying
//! its difference sequences to the kept copy of the zone.
//!
//! The kept copy is one record a line, as [`super::presentation`] writes them, so a record
//! of the answer is found in it by its line: the same text without the TTL (which the
//! deletion of a record need not repeat) and lowercased (owner names and names in the data
//! compare without case; every other data is in the RFC 3597 hex form, whose case means
//! nothing).

use std::collections::HashMap;

use hickory_proto::rr::{RData, Record};

/// What a primary answered to an IXFR.
#[derive(Debug)]
pub enum Answer {
    /// A single SOA: nothing newer than the serial asked from.
    UpToDate,
    /// The whole zone, in AXFR form (the primary has no difference from our serial): the
    /// SOA first and once.
    Full(Vec<Record>),
    /// The differences from our serial to the primary's, oldest first.
    Incremental {
        soa: Box<Record>,
        sequences: Vec<Difference>,
    },
}

/// One difference sequence: the records deleted from the zone at serial `from` and those
/// added to make serial `to`.
#[derive(Debug, Default)]
pub struct Difference {
    pub from: u32,
    pub to: u32,
    pub deleted: Vec<Record>,
    pub added: Vec<Record>,
}

/// Reads the records of an IXFR answer in the order they arrive, message by message.
#[derive(Debug, Default)]
pub struct Reader {
    state: State,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Start,
    /// The first SOA, the primary's newest.
    Newest(Record),
    Full(Vec<Record>),
    Deleting(Record, Vec<Difference>),
    Adding(Record, Vec<Difference>),
    Done(Answer),
}

fn serial(record: &Record) -> Option<u32> {
    match &record.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    }
}

impl Reader {
    /// Takes the records of the next message of the answer; true once the answer is
    /// complete.
    pub fn message(&mut self, records: &[Record]) -> Result<bool, String> {
        for record in records {
            self.record(record)?;
        }
        // A first message holding the SOA alone is the whole answer (RFC 1995 §4).
        if let State::Newest(_) = self.state {
            self.state = State::Done(Answer::UpToDate);
        }
        Ok(matches!(self.state, State::Done(_)))
    }

    fn record(&mut self, record: &Record) -> Result<(), String> {
        let soa = serial(record);
        self.state = match (std::mem::take(&mut self.state), soa) {
            (State::Start, Some(_)) => State::Newest(record.clone()),
            (State::Start, None) => return Err("the answer does not start with the SOA".into()),
            // A second SOA opens the first difference sequence; anything else, a full zone.
            (State::Newest(newest), Some(from)) => State::Deleting(
                newest,
                vec![Difference {
                    from,
                    ..Difference::default()
                }],
            ),
            (State::Newest(newest), None) => State::Full(vec![newest, record.clone()]),
            (State::Full(records), Some(_)) => State::Done(Answer::Full(records)),
            (State::Full(mut records), None) => {
                records.push(record.clone());
                State::Full(records)
            }
            (State::Deleting(newest, mut sequences), Some(to)) => {
                if let Some(last) = sequences.last_mut() {
                    last.to = to;
                }
                State::Adding(newest, sequences)
            }
            (State::Deleting(newest, mut sequences), None) => {
                if let Some(last) = sequences.last_mut() {
                    last.deleted.push(record.clone());
                }
                State::Deleting(newest, sequences)
            }
            (State::Adding(newest, sequences), Some(serial)) => {
                let reached = sequences.last().map(|s| s.to);
                let newest_serial = super::soa_serial(&newest);
                if reached == Some(newest_serial) && serial == newest_serial {
                    State::Done(Answer::Incremental {
                        soa: Box::new(newest),
                        sequences,
                    })
                } else if reached == Some(serial) {
                    let mut sequences = sequences;
                    sequences.push(Difference {
                        from: serial,
                        ..Difference::default()
                    });
                    State::Deleting(newest, sequences)
                } else {
                    return Err(format!(
                        "the difference sequences do not chain: one ends at serial {}, the next starts at {serial}",
                        reached.unwrap_or_default()
                    ));
                }
            }
            (State::Adding(newest, mut sequences), None) => {
                if let Some(last) = sequences.last_mut() {
                    last.added.push(record.clone());
                }
                State::Adding(newest, sequences)
            }
            (State::Done(_), _) => return Err("records after the closing SOA".into()),
        };
        Ok(())
    }

    /// The answer, once [`Reader::message`] said it is complete.
    pub fn answer(self) -> Result<Answer, String> {
        match self.state {
            State::Done(answer) => Ok(answer),
            _ => Err("the answer ended before its closing SOA".into()),
        }
    }
}

/// A kept copy's line (or a record as [`super::presentation`] writes it) without its TTL,
/// lowercased: how a record of a difference finds its line.
fn key(line: &str) -> String {
    let mut fields = line.split_whitespace();
    let mut key = fields.next().unwrap_or_default().to_ascii_lowercase();
    for field in fields.skip(1) {
        key.push(' ');
        key.push_str(&field.to_ascii_lowercase());
    }
    key
}

/// The records of the kept copy `text` (at serial `ours`) with `sequences` applied in
/// order, and `soa` the copy's new SOA, as the text of the new kept copy under `header`.
///
/// An error when the copy is not the one the differences start from: the first does not
/// start at `ours`, or a record a sequence deletes is not in the copy. The caller then
/// takes the zone by AXFR.
pub fn apply(
    text: &str,
    ours: u32,
    header: &str,
    soa: &Record,
    sequences: &[Difference],
) -> Result<String, String> {
    let from = sequences.first().map(|s| s.from);
    if from != Some(ours) {
        return Err(format!(
            "the differences start at serial {}, ours is {ours}",
            from.unwrap_or_default()
        ));
    }
    // The sequences folded into one: lines to delete from the copy (true when the copy
    // must have it), and lines to add by key, the last one for a key winning.
    let mut deleted: HashMap<String, bool> = HashMap::new();
    let mut added: HashMap<String, String> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for sequence in sequences {
        for record in &sequence.deleted {
            let key = key(&super::presentation(record)?);
            // A record an earlier sequence added need not be in the copy.
            let in_copy = added.remove(&key).is_none();
            deleted.entry(key).or_insert(in_copy);
        }
        for record in &sequence.added {
            let line = super::presentation(record)?;
            let key = key(&line);
            if added.insert(key.clone(), line).is_none() {
                order.push(key);
            }
        }
    }
    let mut out = String::with_capacity(text.len() + 64 * added.len());
    out.push_str(header);
    out.push_str(&super::presentation(soa)?);
    out.push('\n');
    let mut seen_soa = false;
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with(';') {
            continue;
        }
        // The copy's SOA is its first record; the new one replaces it.
        if !seen_soa {
            seen_soa = true;
            continue;
        }
        let key = key(line);
        if let Some(must) = deleted.get_mut(&key) {
            *must = false;
            continue;
        }
        if added.contains_key(&key) {
            // Added again: the added line, with its TTL, is written below.
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some((missing, _)) = deleted.iter().find(|(_, must)| **must) {
        return Err(format!(
            "a record the differences delete is not in our copy: {missing}"
        ));
    }
    for key in &order {
        // A key added, deleted and added again is in `order` twice.
        if let Some(line) = added.remove(key) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Name;
    use hickory_proto::rr::rdata::{A, SOA};

    fn name(n: &str) -> Name {
        Name::from_ascii(n).unwrap()
    }

    fn soa(serial: u32) -> Record {
        let soa = SOA::new(
            name("ns1.example.com."),
            name("hm.example.com."),
            serial,
            3600,
            600,
            86400,
            300,
        );
        Record::from_rdata(name("example.com."), 3600, RData::SOA(soa))
    }

    fn a(owner: &str, ttl: u32, ip: [u8; 4]) -> Record {
        Record::from_rdata(
            name(owner),
            ttl,
            RData::A(A::from(std::net::Ipv4Addr::from(ip))),
        )
    }

    const COPY: &str = "; transferred\n\
        example.com. 3600 IN SOA ns1.example.com. hm.example.com. 1 3600 600 86400 300\n\
        www.example.com. 300 IN A 192.0.2.80\n\
        lb.example.com. 300 IN A 192.0.2.99\n";

    #[test]
    fn a_difference_replaces_the_records_it_names_and_keeps_the_others() {
        let change = Difference {
            from: 1,
            to: 2,
            // Another TTL and case than the copy's line: the same record.
            deleted: vec![a("WWW.example.com.", 60, [192, 0, 2, 80])],
            added: vec![a("www.example.com.", 300, [192, 0, 2, 81])],
        };
        let text = apply(COPY, 1, "; new\n", &soa(2), &[change]).unwrap();
        assert_eq!(
            text,
            "; new\n\
             example.com. 3600 IN SOA ns1.example.com. hm.example.com. 2 3600 600 86400 300\n\
             lb.example.com. 300 IN A 192.0.2.99\n\
             www.example.com. 300 IN A 192.0.2.81\n"
        );
    }

    #[test]
    fn sequences_apply_in_order() {
        let sequences = [
            Difference {
                from: 1,
                to: 2,
                deleted: vec![],
                added: vec![
                    a("new.example.com.", 300, [192, 0, 2, 1]),
                    a("lb.example.com.", 30, [192, 0, 2, 99]),
                ],
            },
            Difference {
                from: 2,
                to: 3,
                // Added by the sequence before: not in the copy, and gone.
                deleted: vec![a("new.example.com.", 300, [192, 0, 2, 1])],
                added: vec![a("new.example.com.", 300, [192, 0, 2, 2])],
            },
        ];
        let text = apply(COPY, 1, "", &soa(3), &sequences).unwrap();
        assert_eq!(
            text,
            "example.com. 3600 IN SOA ns1.example.com. hm.example.com. 3 3600 600 86400 300\n\
             www.example.com. 300 IN A 192.0.2.80\n\
             lb.example.com. 30 IN A 192.0.2.99\n\
             new.example.com. 300 IN A 192.0.2.2\n"
        );
    }

    #[test]
    fn differences_that_do_not_fit_the_copy_are_refused() {
        let from_elsewhere = Difference {
            from: 7,
            to: 8,
            ..Difference::default()
        };
        let error = apply(COPY, 1, "", &soa(8), &[from_elsewhere]).unwrap_err();
        assert_eq!(error, "the differences start at serial 7, ours is 1");
        let absent = Difference {
            from: 1,
            to: 2,
            deleted: vec![a("www.example.com.", 300, [192, 0, 2, 7])],
            added: vec![],
        };
        let error = apply(COPY, 1, "", &soa(2), &[absent]).unwrap_err();
        assert_eq!(
            error,
            "a record the differences delete is not in our copy: www.example.com. in a 192.0.2.7"
        );
    }

    fn read(messages: &[Vec<Record>]) -> Result<Answer, String> {
        let mut reader = Reader::default();
        for (i, records) in messages.iter().enumerate() {
            let done = reader.message(records)?;
            assert_eq!(done, i + 1 == messages.len(), "message {i}");
        }
        reader.answer()
    }

    #[test]
    fn the_three_forms_of_an_answer_are_told_apart() {
        assert!(matches!(read(&[vec![soa(5)]]), Ok(Answer::UpToDate)));
        let www = a("www.example.com.", 300, [192, 0, 2, 80]);
        let full = read(&[vec![soa(5), www.clone()], vec![soa(5)]]).unwrap();
        assert!(
            matches!(&full, Answer::Full(records) if records.len() == 2),
            "{full:?}"
        );
        let lb = a("lb.example.com.", 300, [192, 0, 2, 99]);
        let incremental = read(&[
            vec![soa(3), soa(1), www.clone(), soa(2)],
            vec![lb.clone(), soa(2), soa(3), www.clone(), soa(3)],
        ])
        .unwrap();
        let Answer::Incremental {
            soa: newest,
            sequences,
        } = incremental
        else {
            panic!("{incremental:?}");
        };
        assert_eq!(super::super::soa_serial(&newest), 3);
        let spans: Vec<_> = sequences
            .iter()
            .map(|s| (s.from, s.to, s.deleted.len(), s.added.len()))
            .collect();
        assert_eq!(spans, [(1, 2, 1, 1), (2, 3, 0, 1)]);
        let broken = read(&[vec![soa(3), soa(1), soa(2), www, soa(4)]]);
        assert_eq!(
            broken.unwrap_err(),
            "the difference sequences do not chain: one ends at serial 2, the next starts at 4"
        );
    }
}
