//! A zone file compiled for answering: every name's RRsets encoded in wire form once, and
//! shared by every snapshot until the file itself changes (task and group changes do not
//! touch it).
//!
//! Names are keyed by their lowercased wire bytes. Records are stored as they go on the
//! wire after the owner name (type, class, TTL, RDLENGTH, RDATA), with names in RDATA
//! uncompressed, so answering copies bytes and never encodes (the writer compresses the
//! names RFC 3597 §4 allows as it copies them, see [`crate::wire::Response`]). Zone
//! records arrive in that form from the zone reader, one at a time, through [`ZoneBuilder`].

use std::collections::HashMap;
use std::path::PathBuf;

use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use super::signed::{self, DenialEntry, Signed};
use crate::dnssec;
use crate::wire::{Records, WireName, rtype};

/// A map keyed by lowercased wire names. foldhash: fast on short keys and seeded per
/// process, so names chosen by clients cannot aim at collisions.
pub type NameMap<V> = HashMap<Box<[u8]>, V, foldhash::fast::RandomState>;

/// A zone ready to answer from.
pub struct ZoneData {
    pub origin: Name,
    /// The zone file it was compiled from.
    pub path: PathBuf,
    /// The origin's lowercased wire bytes and its label count.
    pub apex: Box<[u8]>,
    pub apex_labels: usize,
    nodes: NameMap<Node>,
    /// The SOA as negative answers carry it: TTL = min(SOA TTL, MINIMUM) (RFC 2308 §5).
    pub negative_soa: Box<[u8]>,
    /// True when the zone delegates any name: lookups must then watch for cuts.
    pub has_cuts: bool,
    /// True when the zone has a DNAME: lookups must then watch for one above the name.
    pub has_dnames: bool,
    /// What the zone file has that is served otherwise than written, or not at all
    /// (`file:line: message`), for `lbdns check` and the log.
    pub warnings: Vec<String>,
    /// The DNSSEC material of a zone file signed elsewhere (an RRSIG covers the apex
    /// SOA, as Knot decides): what answers with DO carry beside the data.
    pub signed: Option<Box<Signed>>,
    /// What signs the answers of the zone's tasks: set when lbdns signed the zone
    /// itself (`dnssec:` in its site file), with the zone's ZSK.
    pub signer: Option<std::sync::Arc<crate::dnssec::sign::RrsetSigner>>,
}

/// The zone, not its data: a zone of millions of names is no use in a message.
impl std::fmt::Debug for ZoneData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneData")
            .field("origin", &self.origin.to_string())
            .field("path", &self.path)
            .field("names", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

/// Everything at one name; empty non-terminals exist with no data (RFC 4592 §2.2.2).
///
/// The records are one buffer in [`Records`] form, each RRset's records next to each
/// other, RRsets in zone order: one allocation per name keeps a zone of millions of
/// names small and quick to load, and an RRset is a slice of it.
#[derive(Default)]
pub struct Node {
    /// A vector while the zone is built, so a large RRset grows in amortized time;
    /// trimmed to its length when the zone is finished.
    records: Vec<u8>,
    /// Set at a delegation point below the apex.
    pub referral: Option<Box<Referral>>,
    /// The additional data of this name's NS, MX and SRV RRsets, when any.
    additional: Option<Box<Additionals>>,
}

/// The A and AAAA records of the names a node's NS, MX and SRV RRsets refer to, which go
/// in the additional section with them (RFC 1034 §3.7, RFC 1035 §3.3, RFC 2782).
struct Additionals(Vec<Additional>);

/// The addresses of one name an RRset refers to.
pub struct Additional {
    /// The type of the RRset that refers to the name.
    rtype: u16,
    /// The name, lowercased: a task answering there hides these records.
    pub name: Box<[u8]>,
    /// Its A and AAAA records, each with the owner name written out.
    pub records: Box<[u8]>,
    pub count: u16,
    /// The RRSIGs of those records in a signed zone, each with the owner written out.
    pub signatures: Box<[u8]>,
    pub signature_count: u16,
}

/// What a referral to a cut carries: its NS RRset and the glue this zone holds.
pub struct Referral {
    pub ns: Box<[u8]>,
    /// Address records of in-zone name servers, each with its owner name written out.
    pub glue: Box<[u8]>,
    pub glue_count: u16,
    /// The RRSIGs of glue that is this zone's authoritative data (an in-zone server not
    /// below a cut), each with its owner written out.
    pub glue_signatures: Box<[u8]>,
    pub glue_signature_count: u16,
}

impl Node {
    pub fn rrset(&self, rtype: u16) -> Option<&[u8]> {
        let (start, end) = rrset_span(&self.records, rtype)?;
        Some(&self.records[start..end])
    }

    /// The RRset an ANY query gets (RFC 8482: one RRset is a complete answer).
    pub fn first_rrset(&self) -> Option<&[u8]> {
        self.rrset(self.first_type()?)
    }

    /// The type of the name's first RRset in zone order, DNSSEC's RRSIG and NSEC skipped
    /// when the name has other data: ANY is asked for data.
    pub fn first_type(&self) -> Option<u16> {
        let first = u16::from_be_bytes([*self.records.first()?, *self.records.get(1)?]);
        if !matches!(first, rtype::RRSIG | rtype::NSEC) {
            return Some(first);
        }
        Records(&self.records)
            .map(|r| u16::from_be_bytes([r[0], r[1]]))
            .find(|t| !matches!(*t, rtype::RRSIG | rtype::NSEC))
            .or(Some(first))
    }

    /// The additional data that goes with this node's RRset of `rtype`.
    pub fn additional(&self, rtype: u16) -> impl Iterator<Item = &Additional> {
        self.additional
            .iter()
            .flat_map(|a| a.0.iter())
            .filter(move |a| a.rtype == rtype)
    }

    /// The RRSIG records here that cover the RRset of `rtype` (type..RDATA each).
    pub fn signatures(&self, rtype: u16) -> impl Iterator<Item = &[u8]> {
        Records(self.rrset(rtype::RRSIG).unwrap_or_default())
            .filter(move |r| dnssec::covered(r) == rtype)
    }

    /// Every record here, RRsets in zone order.
    pub fn records(&self) -> Records<'_> {
        Records(&self.records)
    }

    /// Every RRSIG record here, whatever it covers.
    pub fn signatures_any(&self) -> Records<'_> {
        Records(self.rrset(rtype::RRSIG).unwrap_or_default())
    }

    /// True for an empty non-terminal: a name with no records that exists because names
    /// below it do.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Where the records of type `rtype` start and end in `records` ([`Records`] form,
/// RRsets contiguous).
fn rrset_span(records: &[u8], rtype: u16) -> Option<(usize, usize)> {
    let (mut at, mut start) = (0, None);
    while at + 10 <= records.len() {
        let this = u16::from_be_bytes([records[at], records[at + 1]]);
        let next = at + 10 + usize::from(u16::from_be_bytes([records[at + 8], records[at + 9]]));
        match (this == rtype, start) {
            (true, None) => start = Some(at),
            (false, Some(start)) => return Some((start, at)),
            _ => {}
        }
        at = next;
    }
    start.map(|start| (start, at))
}

/// A zone being compiled, fed one record at a time as the zone file is read, so the
/// records are never held twice (a parsed copy and an encoded one).
pub struct ZoneBuilder {
    origin: Name,
    path: PathBuf,
    apex: Box<[u8]>,
    apex_labels: usize,
    nodes: NameMap<Node>,
    cuts: Vec<Box<[u8]>>,
    has_dnames: bool,
    /// The owner of the previous record, known to be in `nodes`, its type and where its
    /// RRset starts and ends: the next record of that RRset goes there with no search.
    last_owner: Vec<u8>,
    last: Option<(u16, usize, usize)>,
    /// NSEC3 records and their RRSIGs, by owner: kept apart from the names of the zone,
    /// which their hashed owners are not (RFC 5155 §7.2.8).
    nsec3: Vec<(Box<[u8]>, Vec<u8>)>,
}

/// The records already at a name, for rules that look at a name's other data.
pub struct Rrsets<'a>(&'a [u8]);

impl Rrsets<'_> {
    /// Each record's type and RDATA, RRsets in zone order.
    pub fn records(&self) -> impl Iterator<Item = (u16, &[u8])> + '_ {
        Records(self.0).map(|record| (u16::from_be_bytes([record[0], record[1]]), &record[10..]))
    }
}

impl ZoneBuilder {
    pub fn new(origin: &Name, path: PathBuf) -> Self {
        let apex = lowercase_wire(origin);
        let mut nodes = NameMap::default();
        nodes.insert(apex.clone(), Node::default());
        Self {
            origin: origin.to_lowercase(),
            path,
            apex,
            apex_labels: label_count(origin),
            nodes,
            cuts: Vec::new(),
            has_dnames: false,
            last_owner: Vec::new(),
            last: None,
            nsec3: Vec::new(),
        }
    }

    /// The origin's lowercased wire bytes.
    pub fn apex(&self) -> &[u8] {
        &self.apex
    }

    /// Adds a record at `owner` (lowercased wire form, at or below the apex) after `rule`
    /// accepts the data already there. A record whose TTL differs from its RRset's sets
    /// the whole RRset's TTL, as Knot does (an RRset has one TTL, RFC 2181 §5.2); the
    /// RRset's TTL before is then returned.
    pub fn add<E>(
        &mut self,
        owner: &[u8],
        (rtype, class, ttl): (u16, u16, u32),
        rdata: &[u8],
        rule: impl FnOnce(Rrsets) -> Result<(), E>,
    ) -> Result<Option<u32>, E> {
        let is_nsec3 = rtype == dnssec::rtype::NSEC3
            || (rtype == rtype::RRSIG
                && rdata.get(..2) == Some(&dnssec::rtype::NSEC3.to_be_bytes()[..]));
        if is_nsec3 {
            self.add_nsec3(owner, (rtype, class, ttl), rdata);
            return Ok(None);
        }
        // Zone files group a name's records, so an owner other than the previous one is
        // most often a new name: one hash to find or insert it, not a miss and an insert.
        let node = if *owner == *self.last_owner {
            self.nodes
                .get_mut(owner)
                .expect("the previous owner is a node")
        } else {
            self.last_owner.clear();
            self.last_owner.extend_from_slice(owner);
            self.last = None;
            add_ancestors(&mut self.nodes, owner, self.apex_labels);
            self.nodes.entry(owner.into()).or_default()
        };
        rule(Rrsets(&node.records))?;
        let (start, at) = match self.last {
            Some((last, start, end)) if last == rtype => (start, end),
            _ => match rrset_span(&node.records, rtype) {
                Some(span) => span,
                None => {
                    if rtype == rtype::NS && *owner != *self.apex {
                        self.cuts.push(owner.into());
                    }
                    self.has_dnames |= rtype == rtype::DNAME;
                    (node.records.len(), node.records.len())
                }
            },
        };
        let mut ttl_before = None;
        // RRSIGs are the exception: each has the TTL of the RRset it covers (RFC 4034 §3).
        if rtype != rtype::RRSIG
            && start < at
            && node.records[start + 4..start + 8] != ttl.to_be_bytes()
        {
            let before = u32::from_be_bytes(
                node.records[start + 4..start + 8]
                    .try_into()
                    .expect("4 bytes"),
            );
            ttl_before = Some(before);
            let mut record = start;
            while record < at {
                node.records[record + 4..record + 8].copy_from_slice(&ttl.to_be_bytes());
                let rdlen =
                    u16::from_be_bytes([node.records[record + 8], node.records[record + 9]]);
                record += 10 + usize::from(rdlen);
            }
        }
        let rdlen = u16::try_from(rdata.len()).expect("the reader bounds RDATA to 65535 bytes");
        let mut header = [0u8; 10];
        header[0..2].copy_from_slice(&rtype.to_be_bytes());
        header[2..4].copy_from_slice(&class.to_be_bytes());
        header[4..8].copy_from_slice(&ttl.to_be_bytes());
        header[8..10].copy_from_slice(&rdlen.to_be_bytes());
        node.records
            .splice(at..at, header.iter().chain(rdata).copied());
        self.last = Some((rtype, start, at + 10 + rdata.len()));
        Ok(ttl_before)
    }

    /// A name with data below a DNAME, and that DNAME's owner: RFC 6672 §2.4 leaves no
    /// data there, as no query can reach it.
    pub fn below_dname(&self) -> Option<(&[u8], &[u8])> {
        if !self.has_dnames {
            return None;
        }
        self.nodes.iter().find_map(|(owner, node)| {
            if node.records.is_empty() {
                return None;
            }
            let name = WireName::from_lowercase(owner)?;
            let dname = (self.apex_labels..name.labels()).find(|&n| {
                self.nodes
                    .get(name.suffix(n))
                    .is_some_and(|above| above.rrset(rtype::DNAME).is_some())
            })?;
            Some((&owner[..], &owner[name.suffix_start(dname)..]))
        })
    }

    fn add_nsec3(&mut self, owner: &[u8], (rtype, class, ttl): (u16, u16, u32), rdata: &[u8]) {
        if self.nsec3.last().is_none_or(|(last, _)| **last != *owner) {
            self.nsec3.push((owner.into(), Vec::new()));
        }
        let records = &mut self.nsec3.last_mut().expect("pushed above").1;
        let rdlen = u16::try_from(rdata.len()).expect("the reader bounds RDATA to 65535 bytes");
        records.extend_from_slice(&rtype.to_be_bytes());
        records.extend_from_slice(&class.to_be_bytes());
        records.extend_from_slice(&ttl.to_be_bytes());
        records.extend_from_slice(&rdlen.to_be_bytes());
        records.extend_from_slice(rdata);
    }

    /// Finishes the zone, whose apex must hold an SOA record.
    pub fn finish(self) -> ZoneData {
        let soa = self.nodes[&self.apex]
            .rrset(rtype::SOA)
            .and_then(|records| Records(records).next())
            .expect("a checked zone has an SOA at its apex");
        // Negative answers carry TTL = min(SOA TTL, MINIMUM) (RFC 2308 §5).
        let mut negative_soa: Box<[u8]> = soa.into();
        let ttl = u32::from_be_bytes(negative_soa[4..8].try_into().expect("4 bytes"));
        let minimum = u32::from_be_bytes(
            negative_soa[negative_soa.len() - 4..]
                .try_into()
                .expect("4 bytes"),
        );
        negative_soa[4..8].copy_from_slice(&ttl.min(minimum).to_be_bytes());
        let mut nodes = self.nodes;
        for node in nodes.values_mut() {
            drop_duplicates(&mut node.records);
            node.records.shrink_to_fit();
        }
        let mut cuts = self.cuts;
        cuts.sort();
        cuts.dedup();
        for cut in &cuts {
            let referral = referral(&nodes, cut, &self.apex, self.apex_labels);
            nodes.get_mut(cut).expect("a cut is a node").referral = Some(Box::new(referral));
        }
        let mut zone = ZoneData {
            origin: self.origin,
            path: self.path,
            apex: self.apex,
            apex_labels: self.apex_labels,
            nodes,
            negative_soa,
            has_cuts: !cuts.is_empty(),
            has_dnames: self.has_dnames,
            warnings: Vec::new(),
            signed: None,
            signer: None,
        };
        zone.add_additional_data();
        zone.nodes.shrink_to_fit();
        zone.signed = signed::index(&zone, signed::nsec3_entries(self.nsec3));
        zone
    }
}

/// A name's records rewritten in place: signing adds NSEC and RRSIG records to every
/// name of a compiled zone instead of building a second zone beside it, which would
/// hold a large zone twice at the peak.
pub struct RecordsMut<'a> {
    pub owner: &'a [u8],
    /// True at a delegation point below the apex.
    pub is_cut: bool,
    records: &'a mut Vec<u8>,
}

impl RecordsMut<'_> {
    /// The records ([`Records`] form, RRsets contiguous).
    pub fn records(&self) -> &[u8] {
        self.records
    }

    /// Replaces the records with `records` (RRsets contiguous, each type once), stored
    /// in an allocation of exactly their size.
    pub fn replace(&mut self, records: &[u8]) {
        *self.records = records.to_vec();
    }
}

impl ZoneData {
    /// Every name of the zone (empty non-terminals too), to rewrite its records;
    /// [`ZoneData::rederive`] must follow.
    pub fn records_mut(&mut self) -> impl Iterator<Item = RecordsMut<'_>> {
        self.nodes.iter_mut().map(|(owner, node)| RecordsMut {
            owner,
            is_cut: node.referral.is_some(),
            records: &mut node.records,
        })
    }

    /// Removes the names of `owners` that no longer hold records, unless names below them
    /// make them empty non-terminals, and the empty non-terminals above them that only
    /// they made. Rare (a name whose only records signing dropped), so each is checked
    /// against the whole zone.
    pub fn remove_empty(&mut self, owners: &[Box<[u8]>]) {
        for owner in owners {
            let Some(name) = WireName::from_lowercase(owner) else {
                continue;
            };
            for labels in (self.apex_labels + 1..=name.labels()).rev() {
                let at = name.suffix(labels);
                let has_below = self.nodes.keys().any(|below| {
                    WireName::from_lowercase(below)
                        .is_some_and(|n| n.labels() > labels && n.suffix(labels) == at)
                });
                if has_below || !self.nodes.get(at).is_some_and(Node::is_empty) {
                    break;
                }
                self.nodes.remove(at);
            }
        }
    }

    /// Computes again what [`ZoneBuilder::finish`] derives from the records (referrals,
    /// additional data, the DNSSEC index), after [`ZoneData::records_mut`] changed them.
    /// `nsec3` replaces the zone's NSEC3 RRsets (in hash order, as [`signed::index`] takes
    /// them): the zone file's are dropped.
    pub fn rederive(&mut self, nsec3: Vec<DenialEntry>) {
        let cuts: Vec<Box<[u8]>> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.referral.is_some())
            .map(|(owner, _)| owner.clone())
            .collect();
        for cut in &cuts {
            let referral = referral(&self.nodes, cut, &self.apex, self.apex_labels);
            self.nodes.get_mut(cut).expect("a cut is a node").referral = Some(Box::new(referral));
        }
        for node in self.nodes.values_mut() {
            node.additional = None;
        }
        self.add_additional_data();
        self.signed = signed::index(self, nsec3);
    }
}

impl ZoneData {
    pub fn node(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// `name` as this zone keys it, when it is one of its names.
    pub fn name_of(&self, name: &[u8]) -> Option<&[u8]> {
        self.nodes.get_key_value(name).map(|(key, _)| &key[..])
    }

    /// The zone's DNSSEC material when it is served signed (an RRSIG covers its SOA).
    pub fn signed(&self) -> Option<&Signed> {
        self.signed.as_deref().filter(|s| s.serves)
    }

    /// The apex SOA record (type..RDATA), as a zone transfer starts and ends with it.
    pub fn soa(&self) -> &[u8] {
        let apex = self.node(&self.apex).expect("the apex is a node");
        let soa = apex.rrset(rtype::SOA).expect("a checked zone has an SOA");
        Records(soa).next().expect("an RRset has a record")
    }

    /// Every record of the zone file but the apex SOA, each with its owner (lowercased
    /// wire bytes): what a zone transfer carries between its two SOA records.
    pub fn records(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let nsec3 = self.signed.iter().flat_map(|s| s.nsec3_records());
        self.nodes
            .iter()
            .flat_map(move |(owner, node)| {
                let at_apex = **owner == *self.apex;
                Records(&node.records)
                    .filter(move |r| !(at_apex && r[..2] == rtype::SOA.to_be_bytes()))
                    .map(move |r| (&owner[..], r))
            })
            .chain(nsec3)
    }

    /// Every name of the zone, with its node.
    pub fn nodes(&self) -> impl Iterator<Item = (&[u8], &Node)> {
        self.nodes.iter().map(|(name, node)| (&name[..], node))
    }

    /// Fills in the additional data of every NS, MX and SRV RRset: the A/AAAA records of
    /// the names it refers to that this zone answers for (not below a cut: that is glue,
    /// which referrals carry).
    fn add_additional_data(&mut self) {
        let mut found = Vec::new();
        for (owner, node) in &self.nodes {
            if node.referral.is_some() {
                continue;
            }
            let mut additional = Vec::new();
            for rtype in [rtype::NS, rtype::MX, rtype::SRV] {
                if let Some(rrset) = node.rrset(rtype) {
                    self.additional_for(rtype, rrset, &mut additional);
                }
            }
            if !additional.is_empty() {
                found.push((owner.clone(), additional));
            }
        }
        for (owner, additional) in found {
            let node = self.nodes.get_mut(&owner).expect("found above");
            node.additional = Some(Box::new(Additionals(additional)));
        }
    }

    fn additional_for(&self, rtype: u16, rrset: &[u8], additional: &mut Vec<Additional>) {
        let target_at = match rtype {
            rtype::NS => 0,
            rtype::MX => 2,
            _ => 6,
        };
        for record in Records(rrset) {
            let Some(written) = record.get(10 + target_at..) else {
                continue;
            };
            let Some(target) = WireName::from_lowercase(written) else {
                continue;
            };
            if !target.is_at_or_below(&self.apex, self.apex_labels)
                || self.cut_at_or_above(&target).is_some()
                || additional
                    .iter()
                    .any(|a| a.rtype == rtype && *a.name == *target.as_bytes())
            {
                continue;
            }
            let Some(node) = self.node(target.as_bytes()) else {
                continue;
            };
            let name_as_written = &written[..target.as_bytes().len()];
            let (mut records, mut count) = (Vec::new(), 0);
            let (mut signatures, mut signature_count) = (Vec::new(), 0);
            for address in [rtype::A, rtype::AAAA] {
                for data in Records(node.rrset(address).unwrap_or_default()) {
                    records.extend_from_slice(name_as_written);
                    records.extend_from_slice(data);
                    count += 1;
                }
                for data in node.signatures(address) {
                    signatures.extend_from_slice(name_as_written);
                    signatures.extend_from_slice(data);
                    signature_count += 1;
                }
            }
            if count > 0 {
                additional.push(Additional {
                    rtype,
                    name: target.as_bytes().into(),
                    records: records.into(),
                    count,
                    signatures: signatures.into(),
                    signature_count,
                });
            }
        }
    }

    /// The zone cut at or above `name`, as its label count, when `name` is delegated.
    pub fn cut_at_or_above(&self, name: &WireName) -> Option<usize> {
        (self.apex_labels + 1..=name.labels()).find(|&n| {
            self.node(name.suffix(n))
                .is_some_and(|node| node.referral.is_some())
        })
    }
}

/// The NS RRset at `cut` and the A/AAAA records of its in-zone targets.
fn referral(nodes: &NameMap<Node>, cut: &[u8], apex: &[u8], apex_labels: usize) -> Referral {
    let node = &nodes[cut];
    let ns = node.rrset(rtype::NS).unwrap_or_default();
    let mut glue = Vec::new();
    let mut glue_count = 0;
    let (mut glue_signatures, mut glue_signature_count) = (Vec::new(), 0);
    for record in Records(ns) {
        let target_as_written = &record[10..];
        let Some(target) = WireName::from_lowercase(target_as_written) else {
            continue;
        };
        if !target.is_at_or_below(apex, apex_labels) {
            continue;
        }
        let Some(server) = nodes.get(target.as_bytes()) else {
            continue;
        };
        for address in [rtype::A, rtype::AAAA] {
            for data in Records(server.rrset(address).unwrap_or_default()) {
                glue.extend_from_slice(target_as_written);
                glue.extend_from_slice(data);
                glue_count += 1;
            }
            for data in server.signatures(address) {
                glue_signatures.extend_from_slice(target_as_written);
                glue_signatures.extend_from_slice(data);
                glue_signature_count += 1;
            }
        }
    }
    Referral {
        ns: ns.into(),
        glue: glue.into(),
        glue_count,
        glue_signatures: glue_signatures.into(),
        glue_signature_count,
    }
}

/// Drops each record equal in type and RDATA to an earlier one (RFC 2181 §5: an RRset
/// has no duplicates), keeping zone order. Small nodes are compared pairwise, large ones
/// through a set, so an RRset of thousands of records costs linear time.
fn drop_duplicates(records: &mut Vec<u8>) {
    fn key(record: &[u8]) -> (u16, &[u8]) {
        (u16::from_be_bytes([record[0], record[1]]), &record[10..])
    }
    let count = Records(records).take(33).count();
    if count < 2 {
        return;
    }
    if count <= 32 {
        let mut earlier = Records(records).enumerate();
        let any =
            earlier.any(|(i, record)| Records(records).take(i).any(|e| key(e) == key(record)));
        if !any {
            return;
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut kept = Vec::with_capacity(records.len());
    for record in Records(records) {
        if seen.insert(key(record)) {
            kept.extend_from_slice(record);
        }
    }
    *records = kept;
}

/// Creates every missing ancestor of `owner` below the apex (empty non-terminals).
fn add_ancestors(nodes: &mut NameMap<Node>, owner: &[u8], apex_labels: usize) {
    let Some(name) = WireName::from_lowercase(owner) else {
        return;
    };
    for n in apex_labels + 1..name.labels() {
        let ancestor = name.suffix(n);
        if !nodes.contains_key(ancestor) {
            nodes.insert(ancestor.into(), Node::default());
        }
    }
}

/// `name` in wire form, lowercased: the key lookups use.
pub fn lowercase_wire(name: &Name) -> Box<[u8]> {
    let mut bytes = Vec::with_capacity(name.len() + 1);
    for label in name.iter() {
        bytes.push(label.len() as u8);
        bytes.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    bytes.push(0);
    bytes.into()
}

/// Labels in `name`, a leading `*` included: hickory's `num_labels` leaves the `*` out
/// (RRSIG's count), which makes `*.example.com` look like the apex.
pub fn label_count(name: &Name) -> usize {
    name.iter().len()
}

/// `record` after its owner name: type, class, TTL, RDLENGTH and RDATA, names in RDATA
/// uncompressed (any position in a message is then valid for it).
pub fn encode(record: &Record) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(&u16::from(record.record_type()).to_be_bytes());
    bytes.extend_from_slice(&u16::from(record.dns_class).to_be_bytes());
    bytes.extend_from_slice(&record.ttl.to_be_bytes());
    bytes.extend_from_slice(&[0, 0]);
    let mut encoder = BinEncoder::with_offset(&mut bytes, 10);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    record
        .data
        .emit(&mut encoder)
        .expect("the record's data was read from a zone file, so it encodes");
    let rdlen = u16::try_from(bytes.len() - 10).expect("RDATA fits in 65535 bytes");
    bytes[8..10].copy_from_slice(&rdlen.to_be_bytes());
    bytes
}

/// A task's record at an owner that is written separately (type..RDATA).
pub fn encode_data(rtype: RecordType, ttl: u32, data: &RData) -> Vec<u8> {
    let record = Record::from_rdata(Name::root(), ttl, data.clone());
    debug_assert_eq!(record.record_type(), rtype);
    encode(&record)
}
