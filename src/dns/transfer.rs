//! Zone transfers over TCP to the secondaries a site lists (SPEC §3, §9): AXFR (RFC
//! 5936), and IXFR answered with the whole zone in AXFR form (RFC 1995 §4). A transfer
//! carries the zone file's content only, never task answers: a secondary serves the zone
//! as the file has it, and the load balancing stays with lbdns.

use std::net::IpAddr;

use super::respond::Outcome;
use super::{MAX_MESSAGE, MAX_UDP_PAYLOAD};
use crate::snapshot::{Snapshot, Transferable, ZoneData};
use crate::wire::{CLASS_IN, EcsReply, HEADER_LEN, Header, Owner, Query, Response, Section, rtype};

/// Records go into messages of about this size: a secondary's reads stay small and a
/// transfer starts flowing before the whole zone is encoded.
const MESSAGE_TARGET: usize = 16 * 1024;

const NOTAUTH: u16 = 9;
const REFUSED: u16 = 5;

/// True when `packet` may ask for a zone transfer: a look at its question's type only,
/// so that every other TCP query is read once, by `respond`.
pub fn may_ask_for_transfer(packet: &[u8]) -> bool {
    matches!(
        crate::wire::question_type(packet),
        Some(rtype::AXFR | rtype::IXFR)
    )
}

/// When `packet` asks for a zone transfer, appends the response messages to `out`, each
/// framed for TCP (two-byte length), and says what was sent; `None` for any other query,
/// which [`super::respond`] answers.
pub fn transfer(
    snapshot: &Snapshot,
    packet: &[u8],
    source: IpAddr,
    out: &mut Vec<u8>,
) -> Option<Outcome> {
    if packet.len() < HEADER_LEN || packet[2] & 0x80 != 0 {
        return None;
    }
    let query = Query::read(packet).ok()?;
    let is_transfer = query.opcode() == 0
        && query.questions == 1
        && query.qclass == CLASS_IN
        && matches!(query.qtype, rtype::AXFR | rtype::IXFR)
        && query.edns.is_none_or(|e| e.version == 0);
    if !is_transfer {
        return None;
    }
    let mut buf = vec![0u8; MAX_MESSAGE];
    let zone = match snapshot.transferable(&query.qname, source) {
        Transferable::Zone(zone) => zone,
        Transferable::Refused => return Some(refuse(&query, REFUSED, &mut buf, out)),
        // RFC 5936 §2.2.1: not authoritative for the zone asked for.
        Transferable::NotAuthoritative => {
            return Some(refuse(&query, NOTAUTH, &mut buf, out));
        }
    };
    send_zone(&query, zone, &mut buf, out);
    Some(Outcome {
        len: out.len(),
        rcode: Some(0),
        ..Outcome::default()
    })
}

/// The SOA, every other record, the SOA again (RFC 5936 §2.2), in as many messages as
/// they need. The first message carries the question; every one carries the OPT record
/// when the query had EDNS.
fn send_zone(query: &Query<'_>, zone: &ZoneData, buf: &mut [u8], out: &mut Vec<u8>) {
    let soa = zone.soa();
    let apex = &zone.apex[..];
    let mut message = Message::start(query, buf, true);
    message.record(apex, soa);
    for (owner, data) in zone.records().chain([(apex, soa)]) {
        if !message.fits(owner, data) {
            message.finish_into(out);
            message = Message::start(query, message.into_buf(), false);
        }
        message.record(owner, data);
    }
    message.finish_into(out);
}

/// One message of a transfer being filled.
struct Message<'q, 'b> {
    query: &'q Query<'q>,
    response: Response<'b>,
    with_question: bool,
}

impl<'q, 'b> Message<'q, 'b> {
    fn start(query: &'q Query<'q>, buf: &'b mut [u8], with_question: bool) -> Self {
        let mut response = Response::new(buf);
        if with_question {
            response.question(query.question);
        }
        response.section(Section::Answer);
        Self {
            query,
            response,
            with_question,
        }
    }

    /// True when a record fits this message (always true for its first record).
    fn fits(&self, owner: &[u8], data: &[u8]) -> bool {
        let opt = self.query.edns.map_or(0, |_| EcsReply::opt_len(None));
        self.response.count(Section::Answer) == 0
            || self.response.written() + owner.len() + data.len() + opt <= MESSAGE_TARGET
    }

    fn record(&mut self, owner: &[u8], data: &[u8]) {
        self.response.record(Owner::Name(owner), data);
    }

    fn finish_into(&mut self, out: &mut Vec<u8>) {
        if let Some(edns) = self.query.edns {
            self.response.opt(MAX_UDP_PAYLOAD, 0, edns.dnssec_ok, None);
        }
        let len = self.response.finish(Header {
            id: self.query.id,
            query_flags: self.query.flags,
            authoritative: true,
            truncated: false,
            rcode: 0,
            questions: u16::from(self.with_question),
        });
        frame(&self.response.bytes()[..len], out);
    }

    fn into_buf(self) -> &'b mut [u8] {
        self.response.into_buf()
    }
}

/// A single message with `rcode`, the question and nothing else.
fn refuse(query: &Query<'_>, rcode: u16, buf: &mut [u8], out: &mut Vec<u8>) -> Outcome {
    let mut response = Response::new(buf);
    response.question(query.question);
    if let Some(edns) = query.edns {
        response.opt(MAX_UDP_PAYLOAD, 0, edns.dnssec_ok, None);
    }
    let len = response.finish(Header {
        id: query.id,
        query_flags: query.flags,
        authoritative: false,
        truncated: false,
        rcode: rcode as u8,
        questions: 1,
    });
    frame(&buf[..len], out);
    Outcome {
        len,
        rcode: Some(rcode),
        ..Outcome::default()
    }
}

fn frame(message: &[u8], out: &mut Vec<u8>) {
    let len = u16::try_from(message.len()).expect("a message fits 65535 bytes");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
}
