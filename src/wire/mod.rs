//! The DNS wire format on the query path: a query read in place and a response written
//! into the caller's buffer, neither of them allocating (RFC 1035 §4.1, RFC 6891 §6.1).
//!
//! Names are handled as lowercased wire bytes: that is what the compiled zones hash, and
//! a parent name is a suffix of the same bytes, so walking up or down a name costs no copy.

pub mod ecs;

pub use ecs::Ecs;

pub const HEADER_LEN: usize = 12;
/// The longest name on the wire, root label included (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// The most labels a name of [`MAX_NAME_LEN`] bytes can have, the root not counted.
const MAX_LABELS: usize = 127;

/// Record types the query path tells apart (RFC 1035 §3.2.2 and later registrations).
pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const MX: u16 = 15;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
    pub const OPT: u16 = 41;
    pub const DNAME: u16 = 39;
    pub const DS: u16 = 43;
    pub const RRSIG: u16 = 46;
    pub const NSEC: u16 = 47;
    pub const IXFR: u16 = 251;
    pub const AXFR: u16 = 252;
    pub const MAILB: u16 = 253;
    pub const MAILA: u16 = 254;
    pub const ANY: u16 = 255;
}

pub const CLASS_IN: u16 = 1;

/// A name in wire form, lowercased, with where each label starts.
#[derive(Clone)]
pub struct WireName {
    bytes: [u8; MAX_NAME_LEN],
    len: u8,
    starts: [u8; MAX_LABELS],
    labels: u8,
}

impl WireName {
    /// Reads the uncompressed name at the start of `bytes`; returns it and its length on
    /// the wire. `None` for a compression pointer, a reserved label type, a name longer
    /// than 255 bytes, or one cut short.
    pub fn read(bytes: &[u8]) -> Option<(Self, usize)> {
        let mut name = Self {
            bytes: [0; MAX_NAME_LEN],
            len: 0,
            starts: [0; MAX_LABELS],
            labels: 0,
        };
        let mut at = 0;
        loop {
            let len = usize::from(*bytes.get(at)?);
            if len == 0 {
                name.bytes[at] = 0;
                name.len = u8::try_from(at + 1).ok()?;
                return Some((name, at + 1));
            }
            // 0xC0 is a pointer, 0x40 and 0x80 are reserved: none belongs in a question.
            if len > 63 || at + 1 + len >= MAX_NAME_LEN {
                return None;
            }
            let label = bytes.get(at + 1..at + 1 + len)?;
            name.starts[usize::from(name.labels)] = at as u8;
            name.labels += 1;
            name.bytes[at] = len as u8;
            for (to, from) in name.bytes[at + 1..at + 1 + len].iter_mut().zip(label) {
                *to = from.to_ascii_lowercase();
            }
            at += 1 + len;
        }
    }

    /// Reads a name that is already lowercased wire bytes (from a compiled zone).
    pub fn from_lowercase(bytes: &[u8]) -> Option<Self> {
        Self::read(bytes).map(|(name, _)| name)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Labels in the name, the root not counted.
    pub fn labels(&self) -> usize {
        usize::from(self.labels)
    }

    /// Where the name made of the last `n` labels starts in this name's bytes.
    pub fn suffix_start(&self, n: usize) -> usize {
        debug_assert!(n <= self.labels());
        match self.labels() - n {
            skip if skip == self.labels() => usize::from(self.len) - 1,
            skip => usize::from(self.starts[skip]),
        }
    }

    /// The name made of the last `n` labels (the root for 0).
    pub fn suffix(&self, n: usize) -> &[u8] {
        &self.as_bytes()[self.suffix_start(n)..]
    }

    /// True when `origin` (lowercased wire bytes of `origin_labels` labels) is this name
    /// or one of its ancestors.
    pub fn is_at_or_below(&self, origin: &[u8], origin_labels: usize) -> bool {
        origin_labels <= self.labels() && self.suffix(origin_labels) == origin
    }
}

/// `*.` and the name `parent`: the wildcard owner RFC 4592 looks for, into `buf`.
pub fn wildcard_of<'b>(parent: &[u8], buf: &'b mut [u8; MAX_NAME_LEN + 2]) -> &'b [u8] {
    buf[0] = 1;
    buf[1] = b'*';
    buf[2..2 + parent.len()].copy_from_slice(parent);
    &buf[..2 + parent.len()]
}

/// The EDNS of a query (RFC 6891 §6.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    pub payload: u16,
    pub version: u8,
    pub dnssec_ok: bool,
    /// The Compact Answers OK flag (RFC 9824 §5.1): NXDOMAIN may come with a compact
    /// denial.
    pub compact_ok: bool,
    pub ecs: Ecs,
    /// True when the query carries an NSID option (RFC 5001 §2.1).
    pub nsid: bool,
}

/// A query read in place.
pub struct Query<'a> {
    pub id: u16,
    /// The header's second 16 bits as received: QR, opcode, flags, RCODE.
    pub flags: u16,
    pub questions: u16,
    /// The first question as received, name (in the client's case), type and class.
    pub question: &'a [u8],
    pub qname: WireName,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
}

/// Why a message that has a header cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// No question although one is announced, or a record cut short.
    Truncated,
    /// Two OPT records, or one not owned by the root (RFC 6891 §6.1.1).
    Opt,
}

impl<'a> Query<'a> {
    /// Reads `packet`, which is at least [`HEADER_LEN`] bytes. Records of the answer and
    /// authority sections and additional records other than OPT are skipped.
    pub fn read(packet: &'a [u8]) -> Result<Self, Unreadable> {
        let u16_at = |at: usize| {
            packet
                .get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        let count = |i: usize| u16_at(4 + 2 * i).map_or(0, usize::from);
        let questions = count(0) as u16;
        let mut query = Query {
            id: u16_at(0).ok_or(Unreadable::Truncated)?,
            flags: u16_at(2).ok_or(Unreadable::Truncated)?,
            questions,
            question: &[],
            qname: WireName::read(&[0]).expect("the root is a name").0,
            qtype: 0,
            qclass: 0,
            edns: None,
        };
        let mut at = HEADER_LEN;
        for i in 0..questions {
            let end = if i == 0 {
                let rest = packet.get(at..).ok_or(Unreadable::Truncated)?;
                let (name, len) = WireName::read(rest).ok_or(Unreadable::Truncated)?;
                query.qname = name;
                query.qtype = u16_at(at + len).ok_or(Unreadable::Truncated)?;
                query.qclass = u16_at(at + len + 2).ok_or(Unreadable::Truncated)?;
                query.question = &packet[at..at + len + 4];
                at + len + 4
            } else {
                skip_name(packet, at).ok_or(Unreadable::Truncated)? + 4
            };
            if end > packet.len() {
                return Err(Unreadable::Truncated);
            }
            at = end;
        }
        for i in 0..count(1) + count(2) + count(3) {
            let owner = at;
            at = skip_name(packet, at).ok_or(Unreadable::Truncated)?;
            let rtype = u16_at(at).ok_or(Unreadable::Truncated)?;
            let rdlen = usize::from(u16_at(at + 8).ok_or(Unreadable::Truncated)?);
            let rdata = packet
                .get(at + 10..at + 10 + rdlen)
                .ok_or(Unreadable::Truncated)?;
            if rtype == rtype::OPT && i >= count(1) + count(2) {
                if query.edns.is_some() || packet[owner] != 0 {
                    return Err(Unreadable::Opt);
                }
                let class = u16_at(at + 2).expect("read with the RDLENGTH");
                let ttl = packet[at + 4..at + 8].try_into().expect("four bytes");
                let [_extended_rcode, version, flags, _] = ttl;
                query.edns = Some(Edns {
                    // RFC 6891 §6.2.5: values below 512 are treated as 512.
                    payload: class.max(512),
                    version,
                    dnssec_ok: flags & 0x80 != 0,
                    compact_ok: flags & 0x40 != 0,
                    ecs: ecs::from_options(rdata),
                    nsid: has_option(rdata, option::NSID),
                });
            }
            at += 10 + rdlen;
        }
        Ok(query)
    }

    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xF) as u8
    }
}

/// EDNS option codes lbdns writes or looks for.
pub mod option {
    /// Name Server Identifier (RFC 5001).
    pub const NSID: u16 = 3;
    /// Extended DNS Error (RFC 8914).
    pub const EDE: u16 = 15;
}

/// True when the OPT RDATA `options` holds an option `code` (well-formed up to it).
fn has_option(mut options: &[u8], code: u16) -> bool {
    while let [c0, c1, l0, l1, rest @ ..] = options {
        if u16::from_be_bytes([*c0, *c1]) == code {
            return true;
        }
        let Some(next) = rest.get(usize::from(u16::from_be_bytes([*l0, *l1]))..) else {
            return false;
        };
        options = next;
    }
    false
}

/// The type the first question asks for, read without reading the rest of the message:
/// a cheap look, for a caller that handles a few types apart.
pub fn question_type(packet: &[u8]) -> Option<u16> {
    let at = skip_name(packet, HEADER_LEN)?;
    Some(u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]))
}

/// The position just past the (possibly compressed) name at `at`.
fn skip_name(packet: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *packet.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xC0 == 0xC0 => return packet.get(at + 1).map(|_| at + 2),
            l if l & 0xC0 == 0 => at += 1 + usize::from(l),
            _ => return None,
        }
    }
}

/// Sections of a response, in the order they are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Answer,
    Authority,
    Additional,
}

/// The owner name of a record being written.
#[derive(Clone, Copy, Debug)]
pub enum Owner<'n> {
    /// A compression pointer to a name already in the message.
    At(u16),
    /// A name written out, uncompressed.
    Name(&'n [u8]),
}

impl Owner<'_> {
    /// A pointer to `offset` when a pointer can reach it, else the name itself.
    pub fn at_or(offset: usize, name: &[u8]) -> Owner<'_> {
        match u16::try_from(offset) {
            Ok(offset) if offset < 0x4000 => Owner::At(offset),
            _ => Owner::Name(name),
        }
    }
}

/// How many names a response remembers for compression: every label of the question
/// and of the names written out after it, as far as they go.
const NAME_SLOTS: usize = 64;

/// A response under construction in a caller's buffer. Records that do not fit set
/// [`Response::overflowed`] and are left out; the caller then sends a truncated reply.
///
/// Names are compressed (RFC 1035 §4.1.4): owners written out (glue, additional data)
/// and the names in the RDATA of the RFC 1035 types (NS, CNAME, PTR, MX, SOA, MINFO and
/// the mailbox types: the ones RFC 3597 §4 lets a server compress) point to the longest
/// suffix already in the message. Where those names are is known from the type alone (or,
/// for SOA's second, from the first's length), so nothing is parsed; the suffixes in the
/// message are a fixed table of offsets, so nothing is allocated.
pub struct Response<'b> {
    buf: &'b mut [u8],
    len: usize,
    /// Where records must end: the client's limit less the room the OPT record needs.
    room: usize,
    counts: [u16; 3],
    section: Section,
    overflowed: bool,
    /// Where each label written out (a name's suffix) starts, in message order.
    names: [u16; NAME_SLOTS],
    named: usize,
    /// Where the question's name is, until its labels are put in `names`: only a reply
    /// that compresses a name pays for that (most answer A records with pointers only).
    question_at: Option<usize>,
    /// Where the OPT record starts, once written.
    opt_at: Option<usize>,
}

impl<'b> Response<'b> {
    /// A response whose header is written by [`Response::finish`].
    pub fn new(buf: &'b mut [u8]) -> Self {
        Self {
            room: buf.len(),
            buf,
            len: HEADER_LEN,
            counts: [0; 3],
            section: Section::Answer,
            overflowed: false,
            names: [0; NAME_SLOTS],
            named: 0,
            question_at: None,
            opt_at: None,
        }
    }

    /// Records must end within `room` bytes (never more than the buffer holds).
    pub fn limit_records_to(&mut self, room: usize) {
        self.room = room.min(self.buf.len());
    }

    /// Bytes written so far, the header's included.
    pub fn written(&self) -> usize {
        self.len
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    pub fn count(&self, section: Section) -> u16 {
        self.counts[section as usize]
    }

    /// Appends `bytes`; false (and nothing written) when they do not fit.
    fn put(&mut self, bytes: &[u8]) -> bool {
        let end = self.len + bytes.len();
        match self.buf.get_mut(self.len..end) {
            Some(to) if !self.overflowed && end <= self.room => {
                to.copy_from_slice(bytes);
                self.len += bytes.len();
                true
            }
            _ => {
                self.overflowed = true;
                false
            }
        }
    }

    /// Copies the question as the query had it (the client's case is kept).
    pub fn question(&mut self, question: &[u8]) {
        let at = self.len;
        if self.put(question) {
            self.question_at = Some(at);
        }
    }

    /// Puts the question's labels among the names to compress to, once.
    fn remember_question(&mut self) {
        let Some(at) = self.question_at.take() else {
            return;
        };
        let mut label = at;
        while let Some(&len) = self.buf[..self.len]
            .get(label)
            .filter(|&&l| l != 0 && l <= 63)
        {
            self.remember(label);
            label += 1 + usize::from(len);
        }
    }

    /// Where the name at `at` in the message goes on after its first `labels` labels
    /// (pointers followed): the offset of that suffix, to point to.
    pub fn after_labels(&self, mut at: usize, labels: usize) -> usize {
        let mut left = labels;
        // Pointers go back in a message this writer wrote: a bound, not a loop guard.
        for _ in 0..MAX_NAME_LEN {
            let Some(&len) = self.buf[..self.len].get(at) else {
                break;
            };
            if len & 0xC0 == 0xC0 {
                at = usize::from(u16::from_be_bytes([len, self.buf[at + 1]]) & 0x3FFF);
            } else if left > 0 && len != 0 {
                at += 1 + usize::from(len);
                left -= 1;
            } else {
                break;
            }
        }
        at
    }

    /// Keeps `at`, where a label written out starts, as a suffix later names may use.
    fn remember(&mut self, at: usize) {
        if self.named < NAME_SLOTS && at < 0x4000 {
            self.names[self.named] = at as u16;
            self.named += 1;
        }
    }

    /// Where the name `name` (uncompressed wire form, valid) is already in the message.
    fn find(&self, name: &[u8]) -> Option<u16> {
        // Every entry starts with a label's length: most are told apart by that byte.
        self.names[..self.named].iter().copied().find(|&at| {
            self.buf[usize::from(at)] == name[0] && self.same_name(usize::from(at), name)
        })
    }

    /// True when the name at `at` in the message, pointers followed, is `name`, ASCII
    /// case aside.
    fn same_name(&self, mut at: usize, name: &[u8]) -> bool {
        let mut i = 0;
        // Pointers go back in a message this writer wrote: a bound, not a loop guard.
        for _ in 0..MAX_NAME_LEN {
            let Some(&len) = self.buf[..self.len].get(at) else {
                return false;
            };
            if len & 0xC0 == 0xC0 {
                at = usize::from(u16::from_be_bytes([len, self.buf[at + 1]]) & 0x3FFF);
                continue;
            }
            let len = usize::from(len);
            if name.get(i) != Some(&(len as u8)) {
                return false;
            }
            if len == 0 {
                return true;
            }
            let (ours, theirs) = (
                &name[i + 1..i + 1 + len],
                self.buf.get(at + 1..at + 1 + len),
            );
            if theirs.is_none_or(|t| !t.eq_ignore_ascii_case(ours)) {
                return false;
            }
            i += 1 + len;
            at += 1 + len;
        }
        false
    }

    /// Writes the uncompressed name at the start of `bytes` compressed: its labels up to
    /// the longest suffix already in the message, then a pointer there. Returns the
    /// name's length in `bytes`; `None` when it does not fit (or is not a name: then
    /// the caller writes the bytes as they are).
    fn put_name(&mut self, bytes: &[u8]) -> Option<usize> {
        let len = name_len(bytes)?;
        self.remember_question();
        let mut label = 0;
        while bytes[label] != 0 {
            if let Some(at) = self.find(&bytes[label..len]) {
                return self.put(&(0xC000 | at).to_be_bytes()).then_some(len);
            }
            let at = self.len;
            let end = label + 1 + usize::from(bytes[label]);
            if !self.put(&bytes[label..end]) {
                return None;
            }
            self.remember(at);
            label = end;
        }
        self.put(&[0]).then_some(len)
    }

    /// Writes RDATA of type `rtype`, its compressible names compressed; false when it
    /// does not fit.
    fn put_rdata(&mut self, rtype: u16, rdata: &[u8]) -> bool {
        // The names RFC 3597 §4 lets a server compress, by where they are in the RDATA.
        let (first, names) = match rtype {
            // NS, MD, MF, CNAME, MB, MG, MR, PTR.
            2..=5 | 7..=9 | 12 => (0, 1),
            rtype::MX => (2, 1),
            // SOA and MINFO: two names.
            rtype::SOA | 14 => (0, 2),
            _ => return self.put(rdata),
        };
        if name_len(&rdata[first..]).is_none() || !self.put(&rdata[..first]) {
            return self.put(rdata);
        }
        let mut at = first;
        for _ in 0..names {
            match self.put_name(&rdata[at..]) {
                Some(len) => at += len,
                None if name_len(&rdata[at..]).is_none() => return self.put(&rdata[at..]),
                None => return false,
            }
        }
        self.put(&rdata[at..])
    }

    /// Records from here on go into `section`, which is never one already passed.
    pub fn section(&mut self, section: Section) {
        // Once a record did not fit nothing more is written, so order no longer matters.
        debug_assert!(section >= self.section || self.overflowed);
        self.section = section;
    }

    /// Writes one record: `owner`, then `data` (type, class, TTL, RDLENGTH, RDATA).
    /// Returns where its RDATA starts in the message.
    pub fn record(&mut self, owner: Owner<'_>, data: &[u8]) -> usize {
        let (start, named) = (self.len, self.named);
        let rtype = u16::from_be_bytes([data[0], data[1]]);
        if !compressible(rtype) {
            // Most answers (A, AAAA, TXT): copied in one piece.
            if !(self.put_owner(owner) && self.put(data)) {
                (self.len, self.named) = (start, named);
                return 0;
            }
            self.counts[self.section as usize] += 1;
            return self.len - data.len() + 10;
        }
        let written = self.put_owner(owner) && self.put(&data[..10]);
        let rdata_at = self.len;
        if !(written && self.put_rdata(rtype, &data[10..])) {
            (self.len, self.named) = (start, named);
            return 0;
        }
        // RDLENGTH as written, compressed.
        let rdlen = (self.len - rdata_at) as u16;
        self.buf[rdata_at - 2..rdata_at].copy_from_slice(&rdlen.to_be_bytes());
        self.counts[self.section as usize] += 1;
        rdata_at
    }

    /// Writes a record's owner: a pointer, or the name compressed.
    fn put_owner(&mut self, owner: Owner<'_>) -> bool {
        match owner {
            Owner::At(offset) => self.put(&(0xC000 | offset).to_be_bytes()),
            Owner::Name(name) => match self.put_name(name) {
                Some(_) => true,
                None => !self.overflowed && self.put(name),
            },
        }
    }

    /// Writes one record of class IN whose RDATA is `rdata`'s parts one after the other
    /// (a CNAME made from a DNAME); returns where its RDATA starts in the message.
    pub fn record_of_parts(
        &mut self,
        owner: Owner<'_>,
        rtype: u16,
        ttl: [u8; 4],
        rdata: [&[u8]; 2],
    ) -> usize {
        let rdlen = rdata[0].len() + rdata[1].len();
        let mut header = [0u8; 10];
        header[0..2].copy_from_slice(&rtype.to_be_bytes());
        header[2..4].copy_from_slice(&CLASS_IN.to_be_bytes());
        header[4..8].copy_from_slice(&ttl);
        header[8..10].copy_from_slice(&(rdlen as u16).to_be_bytes());
        let (start, named) = (self.len, self.named);
        let written =
            self.put_owner(owner) && self.put(&header) && self.put(rdata[0]) && self.put(rdata[1]);
        if !written {
            (self.len, self.named) = (start, named);
            return 0;
        }
        self.counts[self.section as usize] += 1;
        self.len - rdlen
    }

    /// Writes every record of `rrset` (see [`Records`]) with `owner`; returns where the
    /// RDATA of the first record starts.
    pub fn rrset(&mut self, owner: Owner<'_>, rrset: &[u8]) -> usize {
        let mut first = None;
        for data in Records(rrset) {
            let at = self.record(owner, data);
            first.get_or_insert(at);
        }
        first.unwrap_or(self.len)
    }

    /// Writes `count` records that carry their own owner names (glue): each is the
    /// owner, uncompressed, then type..RDATA.
    pub fn whole_records(&mut self, records: &[u8], count: u16) {
        let mut at = 0;
        for _ in 0..count {
            let Some(owner) = name_len(&records[at..]) else {
                return;
            };
            let data = &records[at + owner..];
            let end = 10 + usize::from(u16::from_be_bytes([data[8], data[9]]));
            self.record(Owner::Name(&records[at..at + owner]), &data[..end]);
            at += owner + end;
        }
    }

    /// Writes records that may be left out when they do not fit, all or none, without
    /// truncating the reply (additional data, RFC 2181 §9).
    pub fn optional_records(&mut self, records: &[u8], count: u16) {
        if self.overflowed {
            return;
        }
        let (len, counts, named) = (self.len, self.counts, self.named);
        self.whole_records(records, count);
        if self.overflowed {
            (self.len, self.counts, self.named) = (len, counts, named);
            self.overflowed = false;
        }
    }

    /// Drops every record: a truncated reply keeps the header and question only.
    pub fn truncate_to(&mut self, len: usize) {
        if self.question_at.is_some_and(|at| at >= len) {
            self.question_at = None;
        }
        self.len = len;
        self.counts = [0; 3];
        self.overflowed = false;
        while self.named > 0 && usize::from(self.names[self.named - 1]) >= len {
            self.named -= 1;
        }
    }

    /// Writes an OPT record (RFC 6891 §6.1.2) with `payload`, the upper bits of the
    /// RCODE, the DO bit and, when given, an ECS option (RFC 7871 §6) echoing the
    /// client's `family`/`source`/`address` with `scope`.
    #[inline]
    pub fn opt(
        &mut self,
        payload: u16,
        extended_rcode: u8,
        dnssec_ok: bool,
        ecs: Option<EcsReply>,
    ) {
        let mut opt = [0u8; 11 + 8 + 16];
        opt[1..3].copy_from_slice(&rtype::OPT.to_be_bytes());
        opt[3..5].copy_from_slice(&payload.to_be_bytes());
        opt[5] = extended_rcode;
        opt[7] = if dnssec_ok { 0x80 } else { 0 };
        let mut len = 11;
        if let Some(ecs) = ecs {
            let octets = usize::from(ecs.source.div_ceil(8));
            let option_len = 4 + octets;
            opt[9..11].copy_from_slice(&((4 + option_len) as u16).to_be_bytes());
            opt[11..13].copy_from_slice(&8u16.to_be_bytes());
            opt[13..15].copy_from_slice(&(option_len as u16).to_be_bytes());
            opt[15..17].copy_from_slice(&ecs.family.to_be_bytes());
            opt[17] = ecs.source;
            opt[18] = ecs.scope;
            opt[19..19 + octets].copy_from_slice(&ecs.address[..octets]);
            len = 19 + octets;
        }
        // The OPT record is the last one of every reply, in the room kept for it.
        self.section = Section::Additional;
        self.room = self.buf.len();
        let at = self.len;
        if self.put(&opt[..len]) {
            self.counts[Section::Additional as usize] += 1;
            self.opt_at = Some(at);
        }
    }

    /// Sets the Compact Answers OK flag (RFC 9824 §5.1) in the OPT record written.
    pub fn opt_compact_ok(&mut self) {
        if let Some(at) = self.opt_at {
            self.buf[at + 7] |= 0x40;
        }
    }

    /// Appends the option `code` with `data` to the OPT record, the last one written;
    /// nothing when there is none, or when the message would pass `limit` bytes.
    pub fn opt_option(&mut self, code: u16, data: &[u8], limit: usize) {
        let Some(at) = self.opt_at else { return };
        let end = self.len + 4 + data.len();
        if end > limit.min(self.buf.len()) {
            return;
        }
        self.buf[self.len..self.len + 2].copy_from_slice(&code.to_be_bytes());
        self.buf[self.len + 2..self.len + 4].copy_from_slice(&(data.len() as u16).to_be_bytes());
        self.buf[self.len + 4..end].copy_from_slice(data);
        self.len = end;
        // The OPT record's RDLENGTH: everything after its fixed 11 bytes.
        let rdlen = (end - at - 11) as u16;
        self.buf[at + 9..at + 11].copy_from_slice(&rdlen.to_be_bytes());
    }

    /// The message as written so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The buffer back, to write another message into.
    pub fn into_buf(self) -> &'b mut [u8] {
        self.buf
    }

    /// Writes the header; returns the message length.
    pub fn finish(&mut self, header: Header) -> usize {
        let Header {
            id,
            query_flags,
            authoritative,
            truncated,
            rcode,
            questions,
        } = header;
        // QR, the query's opcode, RD and CD; RA, AD and Z clear (RFC 1035 §4.1.1).
        let mut flags = 0x8000 | (query_flags & 0x7900) | (query_flags & 0x0010);
        if authoritative {
            flags |= 0x0400;
        }
        if truncated {
            flags |= 0x0200;
        }
        flags |= u16::from(rcode & 0xF);
        let words = [
            id,
            flags,
            questions,
            self.counts[0],
            self.counts[1],
            self.counts[2],
        ];
        for (i, word) in words.into_iter().enumerate() {
            self.buf[2 * i..2 * i + 2].copy_from_slice(&word.to_be_bytes());
        }
        self.len
    }
}

/// Cuts the response `reply` down to its header and question with TC set: what a
/// rate-limited client gets instead of the answer. Returns the new length.
pub fn truncate_reply(reply: &mut [u8]) -> usize {
    if reply.len() < HEADER_LEN {
        return reply.len();
    }
    let questions = u16::from_be_bytes([reply[4], reply[5]]);
    let end = match questions {
        1 => skip_name(reply, HEADER_LEN).map_or(HEADER_LEN, |at| (at + 4).min(reply.len())),
        _ => HEADER_LEN,
    };
    reply[2] |= 0x02;
    reply[4..6].copy_from_slice(&u16::from(end > HEADER_LEN).to_be_bytes());
    reply[6..12].fill(0);
    end
}

/// The ECS option of a reply.
#[derive(Clone, Copy, Debug)]
pub struct EcsReply {
    pub family: u16,
    pub source: u8,
    pub scope: u8,
    pub address: [u8; 16],
}

impl EcsReply {
    /// The size of the OPT record carrying this option.
    pub fn opt_len(this: Option<&Self>) -> usize {
        11 + this.map_or(0, |e| 8 + usize::from(e.source.div_ceil(8)))
    }
}

/// The header fields of a response.
pub struct Header {
    pub id: u16,
    pub query_flags: u16,
    pub authoritative: bool,
    pub truncated: bool,
    /// The low four bits of the RCODE; the rest goes in the OPT record.
    pub rcode: u8,
    pub questions: u16,
}

/// Whether RDATA of `rtype` has names a reply may compress (RFC 3597 §4): NS, MD, MF,
/// CNAME, SOA, MB, MG, MR, PTR, MINFO and MX.
fn compressible(rtype: u16) -> bool {
    matches!(rtype, 2..=9 | 12 | 14 | 15)
}

/// The length of the uncompressed wire name at the start of `bytes`, if there is one.
fn name_len(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at < MAX_NAME_LEN {
        match *bytes.get(at)? {
            0 => return Some(at + 1),
            len @ 1..=63 => at += 1 + usize::from(len),
            _ => return None,
        }
    }
    None
}

/// The records of an encoded RRset: each is type, class, TTL, RDLENGTH and RDATA, with
/// no owner name. Iterating yields each record's bytes.
pub struct Records<'r>(pub &'r [u8]);

impl<'r> Iterator for Records<'r> {
    type Item = &'r [u8];

    fn next(&mut self) -> Option<&'r [u8]> {
        let rdlen = u16::from_be_bytes([*self.0.get(8)?, *self.0.get(9)?]);
        let (record, rest) = self.0.split_at(10 + usize::from(rdlen));
        self.0 = rest;
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_lowercased_with_their_labels() {
        let (name, len) = WireName::read(b"\x03WwW\x07Example\x03com\x00\x00\x01").unwrap();
        assert_eq!(len, 17);
        assert_eq!(name.as_bytes(), b"\x03www\x07example\x03com\x00");
        assert_eq!(name.labels(), 3);
        assert_eq!(name.suffix(2), b"\x07example\x03com\x00");
        assert_eq!(name.suffix(0), b"\x00");
        assert_eq!(name.suffix(3), name.as_bytes());
        assert!(name.is_at_or_below(b"\x03com\x00", 1));
        assert!(!name.is_at_or_below(b"\x03org\x00", 1));
        let (root, len) = WireName::read(b"\x00").unwrap();
        assert_eq!((root.labels(), len, root.suffix(0)), (0, 1, &b"\x00"[..]));
    }

    #[test]
    fn names_that_cannot_be_a_question_are_refused() {
        let mut long = Vec::new();
        for _ in 0..4 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.push(0);
        assert_eq!(long.len(), 257);
        for bad in [
            &b"\xc0\x0c"[..],
            b"\x41x",
            b"\x81x",
            b"\x03ww",
            b"\x03www",
            &long,
        ] {
            assert!(WireName::read(bad).is_none(), "{bad:?}");
        }
        // 255 bytes is the limit: four labels of 63, 62, 63, 62 bytes and the root.
        let mut max = Vec::new();
        for n in [63, 62, 63, 62] {
            max.push(n);
            max.extend(std::iter::repeat_n(b'a', usize::from(n)));
        }
        max.push(0);
        assert_eq!(max.len(), 255);
        assert!(WireName::read(&max).is_some());
    }

    #[test]
    fn the_question_type_is_read_alone() {
        let mut packet = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        packet.extend_from_slice(b"\x07example\x03com\x00\x00\xfc\x00\x01");
        assert_eq!(question_type(&packet), Some(rtype::AXFR));
        assert_eq!(question_type(&packet[..packet.len() - 3]), None);
        assert_eq!(question_type(&packet[..5]), None);
    }

    #[test]
    fn records_iterate_by_their_lengths() {
        let rrset = [
            &[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1][..],
            &[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 2][..],
        ]
        .concat();
        let records: Vec<_> = Records(&rrset).collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1][13], 2);
    }

    /// RFC 1035 §4.1.4: NS and SOA names point to the longest suffix already written, in
    /// any case; an SRV target (RFC 2782) and a DNAME target (RFC 6672 §2.5) do not; a
    /// glue owner points into the NS RDATA; a dropped record's names are not pointed to.
    #[test]
    fn names_are_compressed_where_rfc_3597_allows() {
        let mut buf = [0u8; 512];
        let mut r = Response::new(&mut buf);
        // The question: www.Example.COM. A IN, at 12; "example.com." starts at 16.
        r.question(b"\x03www\x07Example\x03COM\x00\x00\x01\x00\x01");
        let header = |rtype: u16, rdata: &[u8]| {
            let mut data = rtype.to_be_bytes().to_vec();
            data.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            data.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            data.extend_from_slice(rdata);
            data
        };
        let ns = header(rtype::NS, b"\x03ns1\x07example\x03com\x00");
        let at = r.record(Owner::At(12), &ns);
        assert_eq!(&r.bytes()[at - 2..], b"\x00\x06\x03ns1\xc0\x10");
        let srv = header(
            rtype::SRV,
            b"\x00\x01\x00\x02\x00\x03\x03ns1\x07example\x03com\x00",
        );
        let at = r.record(Owner::At(12), &srv);
        assert_eq!(&r.bytes()[at..], &srv[10..]);
        let dname = header(rtype::DNAME, b"\x07example\x03com\x00");
        let at = r.record(Owner::At(12), &dname);
        assert_eq!(&r.bytes()[at..], &dname[10..]);
        // Glue: its owner is the NS target, already written after the first record's owner.
        let glue = [
            b"\x03ns1\x07example\x03com\x00".as_slice(),
            &header(rtype::A, &[192, 0, 2, 1]),
        ]
        .concat();
        let before = r.written();
        r.whole_records(&glue, 1);
        assert_eq!(
            &r.bytes()[before..before + 2],
            &(0xC000u16 | 45).to_be_bytes()
        );
        // SOA: both names compressed, the numbers after them copied.
        let soa = header(
            rtype::SOA,
            &[
                b"\x03ns2\x07example\x03com\x00".as_slice(),
                b"\x02hm\x03ns2\x07example\x03com\x00",
                &[7; 20],
            ]
            .concat(),
        );
        let at = r.record(Owner::At(16), &soa);
        let mut want = b"\x03ns2\xc0\x10\x02hm".to_vec();
        want.extend_from_slice(&(0xC000u16 | at as u16).to_be_bytes());
        want.extend_from_slice(&[7; 20]);
        assert_eq!(&r.bytes()[at..], &want[..]);
        assert_eq!(
            u16::from_be_bytes([r.bytes()[at - 2], r.bytes()[at - 1]]) as usize,
            want.len()
        );
        // Truncated back to the question, nothing after it is pointed to.
        r.truncate_to(33);
        let at = r.record(Owner::At(12), &ns);
        assert_eq!(&r.bytes()[at..], b"\x03ns1\xc0\x10");
    }

    #[test]
    fn a_record_that_does_not_fit_is_left_out_whole() {
        let mut buf = [0u8; 30];
        let mut response = Response::new(&mut buf);
        let a = [0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1];
        response.record(Owner::At(12), &a);
        assert_eq!(response.written(), 28);
        response.record(Owner::At(12), &a);
        assert!(response.overflowed());
        assert_eq!(
            (response.written(), response.count(Section::Answer)),
            (28, 1)
        );
    }
}
