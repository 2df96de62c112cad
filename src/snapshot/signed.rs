//! A zone file signed elsewhere, indexed for answering with DO (SPEC §11, RFC 4035 §3.1,
//! RFC 5155 §7.2): the RRSIGs stay beside their RRsets in each node (the `RRSIG` RRset of
//! a name, filtered by the type covered), and this index adds what denial needs: the
//! names holding an NSEC in canonical order, or the NSEC3 chain sorted by hash.
//!
//! Proofs are chosen as Knot DNS chooses them (its `nsec_proofs.c`), so that the two
//! servers' replies compare exactly in tests/differential.rs. Choosing one is a binary
//! search (and, for NSEC3, a SHA-1 per name hashed); nothing is signed or allocated per
//! query. A zone lbdns signs is stored the same way, its signatures made when the zone
//! is signed; the NSECs or NSEC3s a site's tasks add to its chain or change in it come
//! from the tasks' overlay and are read over the zone's own ([`nsec_at_or_before`],
//! [`Signed::nsec3_at_or_before`]).

use std::cmp::Ordering;

use super::data::{Node, ZoneData};
use crate::dnssec::{self, Nsec3Params, canonical_cmp, nsec3_label};
use crate::wire::{MAX_NAME_LEN, Owner, Records, Response, WireName, rtype, wildcard_of};

/// The DNSSEC material of a zone file.
pub struct Signed {
    /// True when an RRSIG covers the apex SOA: the zone is served signed (Knot's rule).
    /// A zone that is not keeps its NSEC3 records only for transfers.
    pub serves: bool,
    /// The RRSIGs of the apex SOA as negative answers carry them: TTL the lower of their
    /// original TTL and the SOA MINIMUM, as the SOA itself (RFC 2308 §5, RFC 4035 §3.1.3).
    pub negative_soa_signatures: Box<[u8]>,
    denial: Denial,
    /// NSEC3 records with their RRSIGs, sorted by hashed owner label.
    nsec3: Box<[DenialEntry]>,
}

/// How the zone denies existence: NSEC3 when its apex holds an NSEC3PARAM (as Knot
/// decides), else NSEC.
enum Denial {
    /// Every name holding an NSEC RRset, in canonical order.
    Nsec(Box<[Box<[u8]>]>),
    Nsec3(Nsec3Params),
}

/// One NSEC3 RRset, or an NSEC or NSEC3 RRset a site's tasks make: its owner
/// (lowercased wire bytes) and its records, the NSEC or NSEC3 record(s) then the RRSIGs
/// covering them.
#[derive(Default)]
pub struct DenialEntry {
    pub owner: Box<[u8]>,
    pub records: Box<[u8]>,
}

impl DenialEntry {
    /// The first label of the owner: for an NSEC3, the hash it stands for.
    pub fn label(&self) -> &[u8] {
        &self.owner[1..1 + usize::from(self.owner[0])]
    }
}

/// A denial record chosen for an answer: an NSEC of the zone by its owner, or an NSEC3
/// RRset or an NSEC a site's tasks made, with its RRSIGs.
#[derive(Clone, Copy)]
pub enum Proof<'z> {
    Nsec(&'z [u8]),
    Entry(&'z DenialEntry),
}

impl Proof<'_> {
    fn same(&self, other: &Proof<'_>) -> bool {
        match (self, other) {
            (Proof::Nsec(a), Proof::Nsec(b)) => std::ptr::eq(*a, *b),
            (Proof::Entry(a), Proof::Entry(b)) => std::ptr::eq(*a, *b),
            _ => false,
        }
    }
}

/// Most proofs one answer carries: three for NXDOMAIN (NSEC3), two per wildcard a CNAME
/// chain of eight crosses.
const MAX_PROOFS: usize = 20;

/// The denial records an answer needs, each once (a record proving two things is
/// written once), in the order found.
pub struct Proofs<'z> {
    items: [Option<Proof<'z>>; MAX_PROOFS],
    len: usize,
}

impl<'z> Proofs<'z> {
    pub fn new() -> Self {
        Self {
            items: [None; MAX_PROOFS],
            len: 0,
        }
    }

    fn push(&mut self, proof: Option<Proof<'z>>) {
        let Some(proof) = proof else {
            return;
        };
        if self.items[..self.len]
            .iter()
            .flatten()
            .any(|p| p.same(&proof))
            || self.len == MAX_PROOFS
        {
            return;
        }
        self.items[self.len] = Some(proof);
        self.len += 1;
    }

    /// Writes every proof with its RRSIGs into the current section, each owner as its
    /// labels below the apex and a pointer to the apex at `apex_at` in the message.
    pub fn write(&self, zone: &ZoneData, apex_at: usize, out: &mut Response<'_>) {
        let mut buf = [0u8; MAX_NAME_LEN + 2];
        for proof in self.items[..self.len].iter().flatten() {
            let (owner, records, node) = match *proof {
                Proof::Nsec(owner) => {
                    let Some(node) = zone.node(owner) else {
                        continue;
                    };
                    (
                        owner,
                        node.rrset(rtype::NSEC).unwrap_or_default(),
                        Some(node),
                    )
                }
                Proof::Entry(entry) => (&entry.owner[..], &entry.records[..], None),
            };
            let written = compressed(owner, zone.apex.len(), apex_at, &mut buf);
            out.rrset(written, records);
            if let Some(node) = node {
                write_signatures(node, rtype::NSEC, written, out);
            }
        }
    }
}

impl Default for Proofs<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// `owner` (a name of the zone, whose apex is `apex_len` bytes long) written as its labels
/// below the apex then a pointer to the apex at `apex_at`, into `buf`; the name itself
/// when no pointer reaches there.
pub(super) fn compressed<'b>(
    owner: &'b [u8],
    apex_len: usize,
    apex_at: usize,
    buf: &'b mut [u8; MAX_NAME_LEN + 2],
) -> Owner<'b> {
    let below = owner.len().saturating_sub(apex_len);
    match u16::try_from(apex_at) {
        Ok(at) if at < 0x4000 && below > 0 => {
            buf[..below].copy_from_slice(&owner[..below]);
            buf[below..below + 2].copy_from_slice(&(0xC000 | at).to_be_bytes());
            Owner::Name(&buf[..below + 2])
        }
        Ok(at) if at < 0x4000 => Owner::At(at),
        _ => Owner::Name(owner),
    }
}

/// Indexes `zone`'s DNSSEC records; `nsec3` are its NSEC3 RRsets in hash order (kept
/// apart from its names, which their hashed owners are not: RFC 5155 §7.2.8). `None` for
/// a zone with neither RRSIG over its SOA nor NSEC3 records.
pub fn index(zone: &ZoneData, nsec3: Vec<DenialEntry>) -> Option<Box<Signed>> {
    let apex = zone.node(&zone.apex).expect("the apex is a node");
    let serves = apex.signatures(rtype::SOA).next().is_some();
    if !serves && nsec3.is_empty() {
        return None;
    }
    debug_assert!(nsec3.is_sorted_by(|a, b| a.label() <= b.label()));
    let minimum = u32::from_be_bytes(
        zone.negative_soa[zone.negative_soa.len() - 4..]
            .try_into()
            .expect("4 bytes"),
    );
    let mut negative_soa_signatures = Vec::new();
    for signature in apex.signatures(rtype::SOA) {
        let mut signature = signature.to_vec();
        // RDATA: type covered (2), algorithm, labels, then the original TTL (an RRSIG
        // written in RFC 3597's generic form may be too short to have one).
        let Some(original) = signature.get(14..18) else {
            continue;
        };
        let original = u32::from_be_bytes(original.try_into().expect("4 bytes"));
        signature[4..8].copy_from_slice(&original.min(minimum).to_be_bytes());
        negative_soa_signatures.extend_from_slice(&signature);
    }
    let params = apex
        .rrset(dnssec::rtype::NSEC3PARAM)
        .and_then(|rrset| Records(rrset).next())
        .and_then(|record| Nsec3Params::from_rdata(&record[10..]));
    let denial = match params {
        Some(params) => Denial::Nsec3(params),
        None => {
            let mut owners: Vec<Box<[u8]>> = zone
                .nodes()
                .filter(|(_, node)| node.rrset(rtype::NSEC).is_some())
                .map(|(name, _)| name.into())
                .collect();
            owners.sort_by(|a, b| canonical_cmp(a, b));
            Denial::Nsec(owners.into())
        }
    };
    Some(Box::new(Signed {
        serves,
        negative_soa_signatures: negative_soa_signatures.into(),
        denial,
        nsec3: nsec3.into(),
    }))
}

/// The NSEC3 RRsets of a zone file, from the runs of records by owner the builder kept
/// apart in file order: in hash order, each RRset's NSEC3 records before its RRSIGs.
pub fn nsec3_entries(mut records: Vec<(Box<[u8]>, Vec<u8>)>) -> Vec<DenialEntry> {
    // An owner's records may come in more than one run (a signer writing the RRSIGs
    // after the whole chain): one entry each.
    records.sort_by(|a, b| a.0.cmp(&b.0));
    records.dedup_by(|later, first| {
        let same = later.0 == first.0;
        if same {
            first.1.append(&mut later.1);
        }
        same
    });
    let mut entries: Vec<DenialEntry> = records
        .into_iter()
        .map(|(owner, mut records)| {
            sort_nsec3_first(&mut records);
            DenialEntry {
                owner,
                records: records.into(),
            }
        })
        .collect();
    entries.sort_by(|a, b| a.label().cmp(b.label()));
    entries
}

/// Puts an NSEC3 RRset's NSEC3 records before its RRSIGs.
fn sort_nsec3_first(records: &mut Vec<u8>) {
    let (mut nsec3, mut other) = (Vec::new(), Vec::new());
    for record in Records(records) {
        match u16::from_be_bytes([record[0], record[1]]) == dnssec::rtype::NSEC3 {
            true => nsec3.extend_from_slice(record),
            false => other.extend_from_slice(record),
        }
    }
    nsec3.append(&mut other);
    *records = nsec3;
}

impl Signed {
    /// The zone's NSEC chain: every owner of an NSEC, in canonical order; `None` for a
    /// zone denying with NSEC3.
    pub fn nsec_owners(&self) -> Option<&[Box<[u8]>]> {
        match &self.denial {
            Denial::Nsec(owners) => Some(owners),
            Denial::Nsec3(_) => None,
        }
    }

    /// The zone's NSEC3 parameters; `None` for a zone denying with NSEC.
    pub fn nsec3_params(&self) -> Option<&Nsec3Params> {
        match &self.denial {
            Denial::Nsec(_) => None,
            Denial::Nsec3(params) => Some(params),
        }
    }

    /// True when an NSEC3 of the zone has the Opt-Out flag (RFC 5155 §3.1.2.1): names
    /// may be missing from its chain, which task names are not added to.
    pub fn opt_out(&self) -> bool {
        self.nsec3.iter().any(|entry| {
            Records(&entry.records).any(|r| {
                u16::from_be_bytes([r[0], r[1]]) == dnssec::rtype::NSEC3
                    && r.get(11).is_some_and(|flags| flags & 1 != 0)
            })
        })
    }

    /// The zone's NSEC3 RRsets, in hash order.
    pub fn nsec3_entries(&self) -> &[DenialEntry] {
        &self.nsec3
    }

    /// Every NSEC3 record and RRSIG over one, with its owner: for zone transfers.
    pub fn nsec3_records(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.nsec3
            .iter()
            .flat_map(|e| Records(&e.records).map(move |r| (&e.owner[..], r)))
    }

    /// Proofs for a name that does not exist, whose closest encloser has `encloser`
    /// labels (RFC 4035 §3.1.3.2, RFC 5155 §7.2.2).
    pub fn nxdomain<'z>(
        &'z self,
        name: &WireName,
        encloser: usize,
        apex_labels: usize,
        tasks: &'z [DenialEntry],
        proofs: &mut Proofs<'z>,
    ) {
        let mut buf = [0; MAX_NAME_LEN + 2];
        match &self.denial {
            Denial::Nsec(owners) => {
                proofs.push(nsec_at_or_before(owners, tasks, name.as_bytes()));
                let wildcard = wildcard_of(name.suffix(encloser), &mut buf);
                proofs.push(nsec_at_or_before(owners, tasks, wildcard));
            }
            Denial::Nsec3(params) => {
                let Some((cpe, entry)) =
                    self.provable_encloser(params, name, encloser, apex_labels, tasks)
                else {
                    return;
                };
                proofs.push(Some(Proof::Entry(entry)));
                if cpe < name.labels() {
                    proofs.push(self.nsec3_covering(params, tasks, name.suffix(cpe + 1)));
                }
                let wildcard = wildcard_of(name.suffix(cpe), &mut buf);
                proofs.push(self.nsec3_covering(params, tasks, wildcard));
            }
        }
    }

    /// Proofs that the name made of `name`'s last `labels` labels has no RRset of the type
    /// asked (RFC 4035 §3.1.3.1, RFC 5155 §7.2.3-5). With `wildcard`, the name was
    /// matched by the wildcard at its closest encloser of that many labels, whose own
    /// denial is given with the proof that no closer name exists (§3.1.3.4, §7.2.5).
    #[allow(clippy::too_many_arguments)]
    pub fn nodata<'z>(
        &'z self,
        name: &WireName,
        labels: usize,
        wildcard: Option<usize>,
        apex_labels: usize,
        tasks: &'z [DenialEntry],
        proofs: &mut Proofs<'z>,
    ) {
        let mut buf = [0; MAX_NAME_LEN + 2];
        let matched = match wildcard {
            Some(encloser) => wildcard_of(name.suffix(encloser), &mut buf),
            None => name.suffix(labels),
        };
        match &self.denial {
            // The name's own NSEC, or for an empty non-terminal the one before it.
            Denial::Nsec(owners) => {
                proofs.push(nsec_at_or_before(owners, tasks, matched));
                if wildcard.is_some() {
                    proofs.push(nsec_at_or_before(owners, tasks, name.as_bytes()));
                }
            }
            Denial::Nsec3(params) => {
                let found = self.nsec3_matching(params, tasks, matched);
                proofs.push(found);
                // A wildcard's match, or a name without NSEC3 (an opt-out delegation):
                // the closest encloser proof.
                if wildcard.is_some() || found.is_none() {
                    let closest = wildcard.unwrap_or(labels);
                    let Some((cpe, entry)) =
                        self.provable_encloser(params, name, closest, apex_labels, tasks)
                    else {
                        return;
                    };
                    proofs.push(Some(Proof::Entry(entry)));
                    if cpe < labels {
                        proofs.push(self.nsec3_covering(params, tasks, name.suffix(cpe + 1)));
                    }
                }
            }
        }
    }

    /// The proof that no name closer than the wildcard matched exists, for an answer
    /// expanded from the wildcard at `name`'s closest encloser of `encloser` labels
    /// (RFC 4035 §3.1.3.3, RFC 5155 §7.2.6).
    pub fn wildcard_answer<'z>(
        &'z self,
        name: &WireName,
        encloser: usize,
        apex_labels: usize,
        tasks: &'z [DenialEntry],
        proofs: &mut Proofs<'z>,
    ) {
        match &self.denial {
            Denial::Nsec(owners) => proofs.push(nsec_at_or_before(owners, tasks, name.as_bytes())),
            Denial::Nsec3(params) => {
                if let Some((cpe, _)) =
                    self.provable_encloser(params, name, encloser, apex_labels, tasks)
                    && cpe < name.labels()
                {
                    proofs.push(self.nsec3_covering(params, tasks, name.suffix(cpe + 1)));
                }
            }
        }
    }

    /// The closest ancestor of `name` (at most `from` labels long) with an NSEC3: its
    /// label count and that NSEC3 (RFC 5155 §7.2.1).
    fn provable_encloser<'z>(
        &'z self,
        params: &Nsec3Params,
        name: &WireName,
        from: usize,
        apex_labels: usize,
        tasks: &'z [DenialEntry],
    ) -> Option<(usize, &'z DenialEntry)> {
        (apex_labels..=from).rev().find_map(|n| {
            match self.nsec3_matching(params, tasks, name.suffix(n)) {
                Some(Proof::Entry(entry)) => Some((n, entry)),
                _ => None,
            }
        })
    }

    /// The NSEC3 at or before `name`'s hash in hash order, of the chain made of the
    /// zone's and the ones a site's tasks add or replace (`tasks`, by the same order; a
    /// task's replaces the zone's of the same owner), and whether it is `name`'s own.
    /// Before the first owner, the last NSEC3 of the chain covers the hash.
    fn nsec3_at_or_before<'z>(
        &'z self,
        params: &Nsec3Params,
        tasks: &'z [DenialEntry],
        name: &[u8],
    ) -> Option<(&'z DenialEntry, bool)> {
        let label = nsec3_label(name, params);
        let at_or_before = |list: &'z [DenialEntry]| {
            let at = list.partition_point(|e| e.label() <= &label[..]);
            at.checked_sub(1).map(|i| &list[i])
        };
        let found = match (at_or_before(&self.nsec3), at_or_before(tasks)) {
            (None, None) => (self.nsec3.last(), tasks.last()),
            found => found,
        };
        let entry = match found {
            (Some(z), Some(t)) if z.label() > t.label() => z,
            (_, Some(t)) => t,
            (Some(z), None) => z,
            (None, None) => return None,
        };
        Some((entry, entry.label() == &label[..]))
    }

    /// The NSEC3 whose owner is `name`'s hash.
    fn nsec3_matching<'z>(
        &'z self,
        params: &Nsec3Params,
        tasks: &'z [DenialEntry],
        name: &[u8],
    ) -> Option<Proof<'z>> {
        match self.nsec3_at_or_before(params, tasks, name)? {
            (entry, true) => Some(Proof::Entry(entry)),
            (_, false) => None,
        }
    }

    /// The NSEC3 covering `name`'s hash: the one before it in hash order, the last
    /// covering the hashes before the first.
    fn nsec3_covering<'z>(
        &'z self,
        params: &Nsec3Params,
        tasks: &'z [DenialEntry],
        name: &[u8],
    ) -> Option<Proof<'z>> {
        self.nsec3_at_or_before(params, tasks, name)
            .map(|(entry, _)| Proof::Entry(entry))
    }
}

/// The last NSEC at or before `name` in canonical order, of the chain made of the
/// zone's (`owners`) and the ones a site's tasks add or replace (`tasks`): the NSEC that
/// matches `name`, or that covers it. Where both have the same owner, the task's NSEC
/// replaces the zone's.
fn nsec_at_or_before<'z>(
    owners: &'z [Box<[u8]>],
    tasks: &'z [DenialEntry],
    name: &[u8],
) -> Option<Proof<'z>> {
    let at_or_before = |owner: &[u8]| canonical_cmp(owner, name) != Ordering::Greater;
    let zone = owners.partition_point(|o| at_or_before(o)).checked_sub(1);
    let task = tasks
        .partition_point(|e| at_or_before(&e.owner))
        .checked_sub(1);
    // Before every owner: the last NSEC of the chain covers the name.
    let (zone, task) = match (zone, task) {
        (None, None) => (owners.len().checked_sub(1), tasks.len().checked_sub(1)),
        found => found,
    };
    match (zone.map(|i| &owners[i][..]), task.map(|i| &tasks[i])) {
        (Some(z), Some(t)) if canonical_cmp(z, &t.owner) == Ordering::Greater => {
            Some(Proof::Nsec(z))
        }
        (_, Some(t)) => Some(Proof::Entry(t)),
        (Some(z), None) => Some(Proof::Nsec(z)),
        (None, None) => None,
    }
}

/// Writes the RRSIGs covering `node`'s RRset of `rtype` with `owner`.
pub fn write_signatures(node: &Node, rtype: u16, owner: Owner<'_>, out: &mut Response<'_>) {
    for signature in node.signatures(rtype) {
        out.record(owner, signature);
    }
}
