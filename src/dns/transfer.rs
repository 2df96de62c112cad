//! Zone transfers over TCP to the secondaries a site lists (SPEC §3, §9): AXFR (RFC
//! 5936), and IXFR answered with the whole zone in AXFR form (RFC 1995 §4). A transfer
//! carries the zone file's content only, never task answers: a secondary serves the zone
//! as the file has it, and the load balancing stays with lbdns.
//!
//! A secondary listed with a TSIG key (SPEC §13) must sign its request with it: one that
//! does not, or whose MAC fails, gets NOTAUTH with the TSIG error (RFC 8945 §5.2), and
//! every message of a signed request's transfer is signed, the first against the
//! request's MAC and each later one against the one before (§5.3.1).

use std::net::IpAddr;

use super::{MAX_MESSAGE, MAX_UDP_PAYLOAD, ede};
use crate::site::Secondary;
use crate::snapshot::{Snapshot, Transferable, ZoneData};
use crate::tsig;
use crate::wire::{
    CLASS_IN, EcsReply, HEADER_LEN, Header, Owner, Query, Response, Section, option, rtype,
};

/// Records go into messages of about this size: a secondary's reads stay small and a
/// transfer starts flowing before the whole zone is encoded.
const MESSAGE_TARGET: usize = 16 * 1024;

/// The most bytes one record (owner name, type, class, TTL, RDLENGTH and RDATA) may take
/// to go into a transfer message, which holds at least one whole record (RFC 5936 §2.2):
/// a message of 65535 bytes less its header and an OPT record. Zones with a larger record
/// are refused at load (`crate::zone`), so every zone served can be transferred.
pub const MAX_RECORD: usize = MAX_MESSAGE - HEADER_LEN - OPT_LEN;
/// An OPT record without options.
const OPT_LEN: usize = 11;

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

/// What a query asking for a zone transfer gets.
pub enum Transfer<'a> {
    /// One message with this RCODE (REFUSED or NOTAUTH), framed at the start of the buffer
    /// given to [`transfer`], `len` bytes with its prefix; `tsig` when the request was
    /// refused for its signature.
    Refused {
        rcode: u16,
        len: usize,
        tsig: Option<tsig::Refusal>,
    },
    /// The zone, to be sent message by message.
    Zone(Box<ZoneMessages<'a>>),
}

/// When `packet` asks for a zone transfer, what it gets; `None` for any other query, which
/// [`super::respond`] answers. A refusal is written, framed for TCP (two-byte length), into
/// `buf`, which holds at least `2 + MAX_MESSAGE` bytes.
pub fn transfer<'a>(
    snapshot: &'a Snapshot,
    packet: &'a [u8],
    source: IpAddr,
    buf: &mut [u8],
) -> Option<Transfer<'a>> {
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
    let (zone, signer) = match snapshot.transferable(&query.qname, source) {
        Transferable::Zone(zone, listing) => match admit(&listing, packet, unix_now()) {
            Ok(signer) => (zone, signer),
            Err(refusal) => return Some(refuse_signed(&query, packet, refusal, buf)),
        },
        Transferable::Refused => return Some(refuse(&query, REFUSED, ede::PROHIBITED, buf)),
        // RFC 5936 §2.2.1: not authoritative for the zone asked for.
        Transferable::NotAuthoritative => {
            return Some(refuse(&query, NOTAUTH, ede::NOT_AUTHORITATIVE, buf));
        }
    };
    Some(Transfer::Zone(Box::new(ZoneMessages::new(
        query, zone, signer,
    ))))
}

/// Whether the request `packet` from a source `listing` lists may have its answer: with the
/// key its answer is signed with when it is signed, or why not. An entry without a key
/// admits an unsigned request; a signed one must be signed with the key of an entry.
pub fn admit(
    listing: &[&Secondary],
    packet: &[u8],
    now: u64,
) -> Result<Option<Signer>, tsig::Refusal> {
    let Some(signer) = tsig::signer(packet) else {
        return match listing.iter().any(|s| s.tsig.is_none()) {
            true => Ok(None),
            false => Err(tsig::Refusal::Unsigned),
        };
    };
    let key = listing
        .iter()
        .filter_map(|s| s.tsig.as_deref().and_then(tsig::ring_key))
        .find(|key| key.wire_name() == signer)
        .ok_or(tsig::Refusal::BadKey)?;
    let signed = key.verify_request(packet, now)?;
    Ok(Some(Signer {
        key,
        prior: signed.mac,
        first: true,
    }))
}

/// Signs the messages of one answer in turn.
pub struct Signer {
    key: tsig::Key,
    /// The MAC the next message is signed against: the request's, then the last one.
    prior: Vec<u8>,
    first: bool,
}

impl Signer {
    /// Signs the message in `buf[..len]`; returns its new length.
    pub fn sign(&mut self, buf: &mut [u8], len: usize) -> usize {
        let first = std::mem::replace(&mut self.first, false);
        self.key
            .sign_answer(buf, len, &mut self.prior, first, unix_now())
            .unwrap_or(len)
    }

    /// The room its TSIG record takes in a message.
    pub fn room(&self) -> usize {
        self.key.record_len()
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A record, as its owner's wire bytes and its type, class, TTL, RDLENGTH and RDATA.
type Record<'a> = (&'a [u8], &'a [u8]);

/// The messages of one zone transfer, encoded one at a time as the connection takes them,
/// so a transfer holds one message in memory whatever the zone's size: the SOA, every
/// other record, the SOA again (RFC 5936 §2.2). The first message carries the question;
/// every one carries the OPT record when the query had EDNS.
pub struct ZoneMessages<'a> {
    query: Query<'a>,
    records: Box<dyn Iterator<Item = Record<'a>> + Send + 'a>,
    /// The record that did not fit the previous message: the first of the next one.
    carried: Option<Record<'a>>,
    first: bool,
    /// Signs each message, for a request signed with a secondary's key.
    signer: Option<Signer>,
}

/// A record larger than a message can hold: the transfer cannot be completed.
#[derive(Debug, PartialEq, Eq)]
pub struct RecordTooLarge {
    pub owner: String,
    pub len: usize,
}

impl<'a> ZoneMessages<'a> {
    fn new(query: Query<'a>, zone: &'a ZoneData, signer: Option<Signer>) -> Self {
        let soa = (&zone.apex[..], zone.soa());
        let records = std::iter::once(soa)
            .chain(zone.records())
            .chain(std::iter::once(soa));
        Self {
            query,
            records: Box::new(records),
            carried: None,
            first: true,
            signer,
        }
    }

    /// Writes the next message, framed for TCP, at the start of `buf` (at least
    /// `2 + MAX_MESSAGE` bytes) and returns its length with the prefix; 0 once the closing
    /// SOA has been written.
    pub fn next_message(&mut self, buf: &mut [u8]) -> Result<usize, RecordTooLarge> {
        let Some(first) = self.carried.take().or_else(|| self.records.next()) else {
            return Ok(0);
        };
        let (prefix, body) = buf.split_at_mut(2);
        let reserve = self.signer.as_ref().map_or(0, Signer::room);
        let mut message =
            Message::start(&self.query, &mut body[..MAX_MESSAGE], self.first, reserve);
        if !message.record(first) {
            return Err(RecordTooLarge {
                owner: display(first.0),
                len: first.0.len() + first.1.len(),
            });
        }
        for record in self.records.by_ref() {
            if !message.fits(record) || !message.record(record) {
                self.carried = Some(record);
                break;
            }
        }
        let mut len = message.finish();
        if let Some(signer) = &mut self.signer {
            len = signer.sign(&mut body[..MAX_MESSAGE], len);
        }
        prefix.copy_from_slice(&u16::try_from(len).expect("a message fits").to_be_bytes());
        self.first = false;
        Ok(2 + len)
    }
}

/// One message of a transfer being filled.
struct Message<'q, 'b> {
    query: &'q Query<'q>,
    response: Response<'b>,
    with_question: bool,
}

impl<'q, 'b> Message<'q, 'b> {
    /// A message with `reserve` bytes left at the end for a TSIG record.
    fn start(query: &'q Query<'q>, buf: &'b mut [u8], with_question: bool, reserve: usize) -> Self {
        let mut response = Response::new(buf);
        // Room for the OPT and TSIG records at the end.
        let opt = query.edns.map_or(0, |_| EcsReply::opt_len(None));
        if opt + reserve > 0 {
            response.limit_records_to(MAX_MESSAGE - opt - reserve);
        }
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

    /// True when a record fits this message's target size (always true for its first).
    fn fits(&self, (owner, data): Record<'_>) -> bool {
        let opt = self.query.edns.map_or(0, |_| EcsReply::opt_len(None));
        self.response.count(Section::Answer) == 0
            || self.response.written() + owner.len() + data.len() + opt <= MESSAGE_TARGET
    }

    /// Adds a record; false when it does not fit the buffer.
    fn record(&mut self, (owner, data): Record<'_>) -> bool {
        self.response.record(Owner::Name(owner), data);
        !self.response.overflowed()
    }

    /// Writes the OPT record and the header; returns the message's length.
    fn finish(&mut self) -> usize {
        if let Some(edns) = self.query.edns {
            self.response.opt(MAX_UDP_PAYLOAD, 0, edns.dnssec_ok, None);
        }
        self.response.finish(Header {
            id: self.query.id,
            query_flags: self.query.flags,
            authoritative: true,
            truncated: false,
            rcode: 0,
            questions: u16::from(self.with_question),
        })
    }
}

/// NOTAUTH for a request refused for its signature, with the TSIG error when it was
/// signed (RFC 8945 §5.2: unsigned, no MAC), framed into `buf`.
fn refuse_signed<'a>(
    query: &Query<'_>,
    packet: &[u8],
    refusal: tsig::Refusal,
    buf: &mut [u8],
) -> Transfer<'a> {
    let Transfer::Refused { len, .. } = refuse(query, NOTAUTH, ede::PROHIBITED, buf) else {
        unreachable!("refuse returns a refusal");
    };
    let mut message = buf[2..len].to_vec();
    tsig::append_error(&mut message, packet, refusal, unix_now());
    let len = message.len().min(MAX_MESSAGE);
    buf[2..2 + len].copy_from_slice(&message[..len]);
    buf[..2].copy_from_slice(&(len as u16).to_be_bytes());
    Transfer::Refused {
        rcode: NOTAUTH,
        len: 2 + len,
        tsig: Some(refusal),
    }
}

/// A single message with `rcode`, the question and nothing else (with the `extended`
/// error, RFC 8914, when the query has EDNS), framed into `buf`.
fn refuse<'a>(query: &Query<'_>, rcode: u16, extended: u16, buf: &mut [u8]) -> Transfer<'a> {
    let (prefix, body) = buf.split_at_mut(2);
    let mut response = Response::new(&mut body[..MAX_MESSAGE]);
    response.question(query.question);
    if let Some(edns) = query.edns {
        response.opt(MAX_UDP_PAYLOAD, 0, edns.dnssec_ok, None);
        if let Some(id) = super::nsid().filter(|_| edns.nsid) {
            response.opt_option(option::NSID, id, MAX_MESSAGE);
        }
        response.opt_option(option::EDE, &extended.to_be_bytes(), MAX_MESSAGE);
    }
    let len = response.finish(Header {
        id: query.id,
        query_flags: query.flags,
        authoritative: false,
        truncated: false,
        rcode: rcode as u8,
        questions: 1,
    });
    prefix.copy_from_slice(&(len as u16).to_be_bytes());
    Transfer::Refused {
        rcode,
        len: 2 + len,
        tsig: None,
    }
}

/// An owner name's wire bytes as text, for a log line.
fn display(wire: &[u8]) -> String {
    use hickory_proto::serialize::binary::BinDecodable;
    hickory_proto::rr::Name::from_bytes(wire).map_or_else(|_| "?".into(), |name| name.to_string())
}
