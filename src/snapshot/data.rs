//! A zone file compiled for answering: every name's RRsets encoded in wire form once, and
//! shared by every snapshot until the file itself changes (task and group changes do not
//! touch it).
//!
//! Names are keyed by their lowercased wire bytes. Records are stored as they go on the
//! wire after the owner name (type, class, TTL, RDLENGTH, RDATA), with names in RDATA
//! uncompressed, so answering copies bytes and never encodes.

use std::collections::HashMap;
use std::path::PathBuf;

use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use crate::dns::wire::{Records, WireName, rtype};
use crate::zone::Zone;

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
}

/// Everything at one name; empty non-terminals exist with no data (RFC 4592 §2.2.2).
#[derive(Default)]
pub struct Node {
    /// RRsets in zone order.
    rrsets: Box<[RrSet]>,
    /// Set at a delegation point below the apex.
    pub referral: Option<Box<Referral>>,
}

/// One RRset's records, encoded (see [`Records`]).
pub struct RrSet {
    pub rtype: u16,
    pub records: Box<[u8]>,
    /// Address records of the in-zone names an NS, MX or SRV RRset names, which go in
    /// the additional section with it (RFC 1034 §3.7, RFC 1035 §3.3, RFC 2782).
    pub additional: Box<[Additional]>,
}

/// The A and AAAA records of one name an RRset refers to.
pub struct Additional {
    /// The name, lowercased: a task answering there hides these records.
    pub name: Box<[u8]>,
    /// Its A and AAAA records, each with the owner name written out.
    pub records: Box<[u8]>,
    pub count: u16,
}

/// What a referral to a cut carries: its NS RRset and the glue this zone holds.
pub struct Referral {
    pub ns: Box<[u8]>,
    /// Address records of in-zone name servers, each with its owner name written out.
    pub glue: Box<[u8]>,
    pub glue_count: u16,
}

impl Node {
    pub fn rrset(&self, rtype: u16) -> Option<&[u8]> {
        self.rrset_of(rtype).map(|set| &set.records[..])
    }

    pub fn rrset_of(&self, rtype: u16) -> Option<&RrSet> {
        self.rrsets.iter().find(|set| set.rtype == rtype)
    }

    /// The RRset an ANY query gets (RFC 8482: one RRset is a complete answer).
    pub fn first_rrset(&self) -> Option<&RrSet> {
        self.rrsets.first()
    }
}

impl ZoneData {
    /// Compiles a parsed zone; the parsed records can be dropped afterwards.
    pub fn compile(zone: &Zone) -> Self {
        let apex = lowercase_wire(&zone.origin);
        let apex_labels = label_count(&zone.origin);
        let mut building: NameMap<Vec<(u16, Vec<u8>)>> = NameMap::default();
        building.entry(apex.clone()).or_default();
        let mut cuts = Vec::new();
        for record in &zone.records {
            let owner = lowercase_wire(&record.name);
            let rtype = u16::from(record.record_type());
            if rtype == rtype::NS && owner != apex {
                cuts.push(owner.clone());
            }
            add_ancestors(&mut building, &owner, apex_labels);
            let rrsets = building.entry(owner).or_default();
            let bytes = encode(record);
            match rrsets.iter_mut().find(|(t, _)| *t == rtype) {
                Some((_, records)) => records.extend_from_slice(&bytes),
                None => rrsets.push((rtype, bytes)),
            }
        }
        let soa = zone.soa();
        let mut negative = soa.clone();
        if let RData::SOA(data) = &soa.data {
            negative.ttl = soa.ttl.min(data.minimum);
        }
        let mut nodes: NameMap<Node> = building
            .iter()
            .map(|(name, rrsets)| {
                let node = Node {
                    rrsets: rrsets
                        .iter()
                        .map(|(rtype, records)| RrSet {
                            rtype: *rtype,
                            records: records.as_slice().into(),
                            additional: Box::default(),
                        })
                        .collect(),
                    referral: None,
                };
                (name.clone(), node)
            })
            .collect();
        drop(building);
        cuts.sort();
        cuts.dedup();
        for cut in &cuts {
            let referral = referral(&nodes, cut, &apex, apex_labels);
            nodes.get_mut(cut).expect("a cut is a node").referral = Some(Box::new(referral));
        }
        let mut data = Self {
            origin: zone.origin.clone(),
            path: zone.path.clone(),
            apex,
            apex_labels,
            nodes,
            negative_soa: encode(&negative).into(),
            has_cuts: !cuts.is_empty(),
        };
        data.add_additional_data();
        data.nodes.shrink_to_fit();
        data
    }

    /// Fills in each NS, MX and SRV RRset's additional data: the A/AAAA records of the
    /// names it refers to that this zone answers for (not below a cut: that is glue,
    /// which referrals carry).
    fn add_additional_data(&mut self) {
        let mut found = Vec::new();
        for (owner, node) in &self.nodes {
            if node.referral.is_some() {
                continue;
            }
            for (index, set) in node.rrsets.iter().enumerate() {
                let additional = self.additional_for(set);
                if !additional.is_empty() {
                    found.push((owner.clone(), index, additional));
                }
            }
        }
        for (owner, index, additional) in found {
            let node = self.nodes.get_mut(&owner).expect("found above");
            node.rrsets[index].additional = additional.into();
        }
    }

    fn additional_for(&self, set: &RrSet) -> Vec<Additional> {
        let target_at = match set.rtype {
            rtype::NS => 0,
            rtype::MX => 2,
            rtype::SRV => 6,
            _ => return Vec::new(),
        };
        let mut additional: Vec<Additional> = Vec::new();
        for record in Records(&set.records) {
            let Some(written) = record.get(10 + target_at..) else {
                continue;
            };
            let Some(target) = WireName::from_lowercase(written) else {
                continue;
            };
            if !target.is_at_or_below(&self.apex, self.apex_labels)
                || self.cut_at_or_above(&target).is_some()
                || additional.iter().any(|a| *a.name == *target.as_bytes())
            {
                continue;
            }
            let Some(node) = self.node(target.as_bytes()) else {
                continue;
            };
            let name_as_written = &written[..target.as_bytes().len()];
            let (mut records, mut count) = (Vec::new(), 0);
            for address in [rtype::A, rtype::AAAA] {
                for data in Records(node.rrset(address).unwrap_or_default()) {
                    records.extend_from_slice(name_as_written);
                    records.extend_from_slice(data);
                    count += 1;
                }
            }
            if count > 0 {
                additional.push(Additional {
                    name: target.as_bytes().into(),
                    records: records.into(),
                    count,
                });
            }
        }
        additional
    }

    pub fn node(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.get(name)
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
        self.nodes.iter().flat_map(move |(owner, node)| {
            let at_apex = **owner == *self.apex;
            node.rrsets
                .iter()
                .filter(move |set| !(at_apex && set.rtype == rtype::SOA))
                .flat_map(move |set| Records(&set.records).map(move |r| (&owner[..], r)))
        })
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
        }
    }
    Referral {
        ns: ns.into(),
        glue: glue.into(),
        glue_count,
    }
}

/// Creates every missing ancestor of `owner` below the apex (empty non-terminals).
fn add_ancestors(nodes: &mut NameMap<Vec<(u16, Vec<u8>)>>, owner: &[u8], apex_labels: usize) {
    let Some(name) = WireName::from_lowercase(owner) else {
        return;
    };
    for n in apex_labels + 1..name.labels() {
        let ancestor = name.suffix(n);
        if !nodes.contains_key(ancestor) {
            nodes.insert(ancestor.into(), Vec::new());
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
