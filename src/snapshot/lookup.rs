//! Answering a name from a compiled zone, RFC 1034 §4.3.2 with RFC 4592 wildcards: walk
//! down from the apex, stop at a zone cut (referral) or a DNAME above the name (RFC 6672
//! §3.2: the DNAME and a CNAME made from it), answer the exact node, else the wildcard at
//! the closest encloser, else NXDOMAIN. Records are written straight into the response.
//!
//! The answer section is written as the walk goes; what follows it (the SOA of a
//! negative answer, a referral's NS and glue, DNSSEC denial, additional data) is noted in
//! [`Ctx`] and written once the walk is done by [`CompiledZone::finish`], so that a CNAME
//! chain's records all precede the authority section. With DO set in a signed zone
//! ([`super::signed`]) each RRset comes with its RRSIGs and each denial with its proofs;
//! in a zone denying with compact denial (RFC 9824, [`crate::dnssec::compact`]) a denial
//! is the NSEC made for the name asked, and a wildcard's answer is signed as that name's.

use std::sync::Arc;

use rand::Rng;

use super::data::Node;
use super::signed::{Proofs, Signed, compressed, write_signatures};
use super::tasks::{CompiledTask, Tasks};
use super::{CompiledZone, Resolution};
use crate::dnssec;
use crate::dnssec::compact::{self, Entry, MAX_NSEC_RDATA, NXNAME, Types};
use crate::dnssec::sign::RrsetSigner;
use crate::select::{Client, Family, Serving, pick, pick_sticky, route, serving};
use crate::site::WhenAllDown;
use crate::wire::{MAX_NAME_LEN, Owner, Records, Response, Section, WireName, rtype, wildcard_of};

/// Longest CNAME chain followed inside a zone.
const MAX_CNAME_CHAIN: usize = 8;

/// The RCODE of a DNAME substitution that makes a name too long (RFC 6672 §2.2).
const YXDOMAIN: u8 = 6;

/// Where the question's name starts in every message.
pub const QUESTION_AT: usize = 12;

/// Per-query inputs and outputs of answering.
pub struct Ctx<'a, R: ?Sized> {
    pub client: &'a Client,
    pub rng: &'a mut R,
    /// Where the zone's apex is in the question (negative answers point their SOA there).
    pub apex_at: usize,
    pub resolution: Resolution,
    /// The zone is signed and the query set DO: RRSIGs and denial go with the answer.
    pub dnssec: bool,
    /// How the answer ends: what goes in the authority section.
    pub end: End<'a>,
    /// The RRset answered whose additional data goes in the additional section.
    pub additional: Option<(&'a Node, u16)>,
    /// Denial records for the authority section (DNSSEC only).
    pub proofs: Proofs<'a>,
    /// NSECs compact denial made for this answer, with their RRSIGs.
    pub denials: [Option<Arc<Entry>>; MAX_DENIALS],
}

/// Most compact denials one answer carries: one per name a CNAME chain ends at, and a
/// referral's.
const MAX_DENIALS: usize = 2;

impl<'a, R: ?Sized> Ctx<'a, R> {
    pub fn new(client: &'a Client, rng: &'a mut R, apex_at: usize, dnssec: bool) -> Self {
        Self {
            client,
            rng,
            apex_at,
            resolution: Resolution {
                rcode: 0,
                authoritative: true,
                scope: 0,
                failed_open: false,
                compact: false,
                nxname: false,
            },
            dnssec,
            end: End::Answer,
            additional: None,
            proofs: Proofs::new(),
            denials: Default::default(),
        }
    }

    fn deny(&mut self, entry: Option<Arc<Entry>>) {
        let Some(entry) = entry else {
            return;
        };
        if let Some(free) = self
            .denials
            .iter_mut()
            .find(|d| d.as_ref().is_none_or(|d| d.owner() == entry.owner()))
        {
            *free = Some(entry);
        }
    }
}

/// What the authority section holds.
pub enum End<'a> {
    /// Nothing (but DNSSEC proofs of a wildcard answer).
    Answer,
    /// The zone's SOA: NXDOMAIN or NODATA.
    Negative,
    /// A referral to the cut at `node`, whose name is written as `cut`.
    Referral { node: &'a Node, cut: Owner<'a> },
}

/// Where a name leads in a zone.
enum Found<'z> {
    /// The name exists (exactly or through a wildcard): its zone data and its task.
    Node {
        data: Option<&'z Node>,
        task: Option<&'z CompiledTask>,
        /// For a wildcard match, the label count of the closest encloser.
        wildcard: Option<usize>,
    },
    /// A zone cut at the name's ancestor of `labels` labels (or the name itself).
    Cut { labels: usize, node: &'z Node },
    /// A DNAME at the name's ancestor of `labels` labels.
    Dname { labels: usize, node: &'z Node },
    /// No such name; its closest encloser has `encloser` labels.
    NxDomain { encloser: usize },
}

/// The names a CNAME chain went through, newest first: a list on the stack, one link per
/// level of [`CompiledZone::resolve`].
pub struct Chain<'a> {
    /// A name answered with a CNAME, lowercased.
    name: &'a [u8],
    up: Option<&'a Chain<'a>>,
    /// Links up to and including this one.
    len: usize,
}

impl Chain<'_> {
    fn contains(&self, name: &[u8]) -> bool {
        let mut link = Some(self);
        while let Some(l) = link {
            if l.name == name {
                return true;
            }
            link = l.up;
        }
        false
    }
}

/// A CNAME written into the answer: its target as written (to follow, and to write as
/// the next owner) and where its RDATA is in the message (to point to instead).
struct CnameTarget<'z> {
    name: &'z [u8],
    at: usize,
}

impl CompiledZone {
    fn exact(&self, name: &[u8]) -> Option<Found<'_>> {
        let data = self.data.node(name);
        let task = self.tasks.at(name);
        if data.is_none() && task.is_none() {
            return None;
        }
        Some(Found::Node {
            data,
            task: task.flatten(),
            wildcard: None,
        })
    }

    /// What signs the zone's compact denials, when the zone denies so (RFC 9824) and this
    /// answer carries DNSSEC.
    fn compact<R: ?Sized>(&self, ctx: &Ctx<'_, R>) -> Option<&RrsetSigner> {
        match ctx.dnssec {
            true => self.data.signer.as_deref().filter(|s| s.is_compact()),
            false => None,
        }
    }

    /// The zone's DNSSEC material when this answer carries DNSSEC.
    fn signed<R: ?Sized>(&self, ctx: &Ctx<'_, R>) -> Option<&Signed> {
        match ctx.dnssec {
            true => self.data.signed(),
            false => None,
        }
    }

    fn find(&self, name: &WireName, qtype: u16) -> Found<'_> {
        let dnames = self.data.has_dnames;
        if !self.data.has_cuts && !dnames {
            // Without cuts, a name that exists answers, and its ancestors all exist.
            if let Some(found) = self.exact(name.as_bytes()) {
                return found;
            }
        }
        let labels = name.labels();
        let apex_labels = self.data.apex_labels;
        if dnames
            && labels > apex_labels
            && let Some(node) = self.data.node(&self.data.apex)
            && node.rrset(rtype::DNAME).is_some()
        {
            return Found::Dname {
                labels: apex_labels,
                node,
            };
        }
        for n in apex_labels + 1..=labels {
            let suffix = name.suffix(n);
            let node = self.data.node(suffix);
            if let Some(node) = node
                && node.referral.is_some()
                // The parent side answers DS at a cut (RFC 4035 §3.1.4.1).
                && !(n == labels && qtype == rtype::DS)
            {
                return Found::Cut { labels: n, node };
            }
            // A DNAME redirects the names below its owner, not the owner (RFC 6672 §2.3).
            if dnames
                && n < labels
                && let Some(node) = node
                && node.rrset(rtype::DNAME).is_some()
            {
                return Found::Dname { labels: n, node };
            }
            if node.is_none() && self.tasks.at(suffix).is_none() {
                let mut buf = [0; 257];
                let wildcard = wildcard_of(name.suffix(n - 1), &mut buf);
                return match self.exact(wildcard) {
                    Some(Found::Node { data, task, .. }) => Found::Node {
                        data,
                        task,
                        wildcard: Some(n - 1),
                    },
                    _ => Found::NxDomain { encloser: n - 1 },
                };
            }
        }
        self.exact(name.as_bytes())
            .unwrap_or(Found::NxDomain { encloser: labels })
    }

    /// Answers `name`/`qtype` into `out`, following in-zone CNAMEs. `owner` is how the
    /// records' owner is written: a pointer to the question or to the CNAME before.
    pub fn resolve<'z, R: Rng + ?Sized>(
        &'z self,
        name: &WireName,
        owner: Owner<'z>,
        qtype: u16,
        ctx: &mut Ctx<'z, R>,
        out: &mut Response<'_>,
        chain: Option<&Chain<'_>>,
    ) {
        let depth = chain.map_or(0, |c| c.len);
        let apex_labels = self.data.apex_labels;
        let (data, task, wildcard) = match self.find(name, qtype) {
            Found::Node {
                data,
                task,
                wildcard,
            } => (data, task, wildcard),
            Found::NxDomain { encloser } => {
                ctx.end = End::Negative;
                // Compact denial: the name is said to exist with no data but NXNAME
                // (RFC 9824 §3.1), so the RCODE is NOERROR.
                if let Some(signer) = self.compact(ctx) {
                    ctx.resolution.nxname = true;
                    let mut types = Types::default();
                    types.add(NXNAME);
                    ctx.deny(compact_nsec(signer, name.as_bytes(), false, types));
                    return;
                }
                ctx.resolution.rcode = 3;
                if let Some(signed) = self.signed(ctx) {
                    signed.nxdomain(
                        name,
                        encloser,
                        apex_labels,
                        self.tasks.nsec(),
                        &mut ctx.proofs,
                    );
                }
                return;
            }
            Found::Cut { labels, node } => {
                // The cut's name ends the name asked for (or the CNAME target followed
                // to it): point there. A CNAME into a delegation gets the referral
                // after the CNAME (RFC 1034 §4.3.2 step 3b), and the answer stays
                // authoritative: its first record is this zone's data.
                let cut = match owner {
                    // The name there may be compressed: its labels are walked, not counted.
                    Owner::At(at) => {
                        let skip = name.labels() - labels;
                        match u16::try_from(out.after_labels(usize::from(at), skip)) {
                            Ok(offset) if offset < 0x4000 => Owner::At(offset),
                            // Past a pointer's reach: the cut's name as the zone holds it.
                            _ => Owner::Name(
                                self.data.name_of(name.suffix(labels)).unwrap_or_default(),
                            ),
                        }
                    }
                    Owner::Name(written) => Owner::Name(&written[name.suffix_start(labels)..]),
                };
                if depth == 0 {
                    ctx.resolution.authoritative = false;
                }
                ctx.end = End::Referral { node, cut };
                // No DS at the cut: the proof that there is none (RFC 4035 §3.1.4).
                if let Some(signer) = self.compact(ctx)
                    && node.rrset(rtype::DS).is_none()
                {
                    let types = types_at(Some(node), None, rtype::DS);
                    ctx.deny(compact_nsec(signer, name.suffix(labels), true, types));
                } else if let Some(signed) = self.signed(ctx)
                    && node.rrset(rtype::DS).is_none()
                {
                    signed.nodata(
                        name,
                        labels,
                        None,
                        apex_labels,
                        self.tasks.nsec(),
                        &mut ctx.proofs,
                    );
                }
                return;
            }
            Found::Dname { labels, node } => {
                self.substitute(name, owner, labels, node, qtype, ctx, out, chain);
                return;
            }
        };
        let answers_before = out.count(Section::Answer);
        // Compact denial signs a wildcard's records as the name asked's (RFC 9824 §3.3).
        let signer = self.compact(ctx);
        // The NSEC of a name that exists is the one its denials carry: asked for, it is
        // the answer (a NODATA whose NSEC lists NSEC could not validate).
        if let Some(signer) = signer
            && qtype == rtype::NSEC
        {
            let cut = data.is_some_and(|n| n.referral.is_some());
            let types = types_at(data, task, 0);
            if let Some(entry) = compact_nsec(signer, name.as_bytes(), cut, types) {
                out.rrset(owner, &entry.records);
            }
            return;
        }
        let synthesized = match (signer, wildcard) {
            (Some(signer), Some(_)) => Some((signer, name.as_bytes())),
            _ => None,
        };
        let cname = match task {
            Some(task) => answer_task(task, data, owner, qtype, synthesized, ctx, out),
            None => data.and_then(|node| answer_data(node, owner, qtype, synthesized, ctx, out)),
        };
        let answered = out.count(Section::Answer) != answers_before;
        if let Some(signed) = self.signed(ctx)
            && signer.is_none()
            && let Some(encloser) = wildcard
            && answered
        {
            signed.wildcard_answer(
                name,
                encloser,
                apex_labels,
                self.tasks.nsec(),
                &mut ctx.proofs,
            );
        }
        if let Some(target) = cname {
            let here = Chain {
                name: name.as_bytes(),
                up: chain,
                len: depth + 1,
            };
            if depth + 1 < MAX_CNAME_CHAIN
                && let Some(next) = WireName::from_lowercase(target.name)
                && next.is_at_or_below(&self.data.apex, self.data.apex_labels)
                // A loop ends where it closes: each CNAME once (RFC 2181 §5).
                && !here.contains(next.as_bytes())
            {
                let owner = Owner::at_or(target.at, target.name);
                self.resolve(&next, owner, qtype, ctx, out, Some(&here));
            }
            return;
        }
        if !answered && ctx.resolution.rcode != 2 {
            // NODATA: the name exists, the type does not.
            ctx.end = End::Negative;
            if let Some(signer) = signer {
                // The types the name (or the wildcard that matched it) has now, the one
                // asked for not among them (a task whose chain is down has none).
                let types = types_at(data, task, qtype);
                let cut = data.is_some_and(|n| n.referral.is_some());
                ctx.deny(compact_nsec(signer, name.as_bytes(), cut, types));
            } else if let Some(signed) = self.signed(ctx) {
                // At a name that exists only through a task too: the tasks' NSEC chain
                // has it.
                signed.nodata(
                    name,
                    name.labels(),
                    wildcard,
                    apex_labels,
                    self.tasks.nsec(),
                    &mut ctx.proofs,
                );
            }
        }
    }

    /// Answers `name` from the DNAME at its ancestor of `labels` labels (RFC 6672 §3.2):
    /// the DNAME, a CNAME from `name` to `name` with the DNAME's owner replaced by its
    /// target (the DNAME's TTL, §3.4), then what that CNAME leads to in this zone.
    #[allow(clippy::too_many_arguments)]
    fn substitute<'z, R: Rng + ?Sized>(
        &'z self,
        name: &WireName,
        owner: Owner<'z>,
        labels: usize,
        node: &'z Node,
        qtype: u16,
        ctx: &mut Ctx<'z, R>,
        out: &mut Response<'_>,
        chain: Option<&Chain<'_>>,
    ) {
        let dname = node.rrset(rtype::DNAME).expect("found by its DNAME");
        let record = Records(dname).next().expect("an RRset has a record");
        let split = name.suffix_start(labels);
        let dname_owner = match owner {
            Owner::At(at) => Owner::at_or(
                out.after_labels(usize::from(at), name.labels() - labels),
                name.suffix(labels),
            ),
            Owner::Name(written) => Owner::Name(&written[split..]),
        };
        out.rrset(dname_owner, dname);
        if ctx.dnssec {
            write_signatures(node, rtype::DNAME, dname_owner, out);
        }
        let (prefix, target) = (&name.as_bytes()[..split], &record[10..]);
        if prefix.len() + target.len() > MAX_NAME_LEN {
            // The name made would be longer than a name can be (RFC 6672 §2.2).
            ctx.resolution.rcode = YXDOMAIN;
            return;
        }
        let ttl = record[4..8].try_into().expect("4 bytes");
        let at = out.record_of_parts(owner, rtype::CNAME, ttl, [prefix, target]);
        if qtype == rtype::CNAME {
            return;
        }
        let mut made = [0u8; MAX_NAME_LEN];
        made[..prefix.len()].copy_from_slice(prefix);
        for (to, from) in made[prefix.len()..].iter_mut().zip(target) {
            *to = from.to_ascii_lowercase();
        }
        let depth = chain.map_or(0, |c| c.len);
        let here = Chain {
            name: name.as_bytes(),
            up: chain,
            len: depth + 1,
        };
        let made = &made[..prefix.len() + target.len()];
        // The name made is only in the message: followed when a pointer reaches it.
        if depth + 1 < MAX_CNAME_CHAIN
            && let Ok(at) = u16::try_from(at)
            && at < 0x4000
            && let Some(next) = WireName::from_lowercase(made)
            && next.is_at_or_below(&self.data.apex, self.data.apex_labels)
            && !here.contains(next.as_bytes())
        {
            self.resolve(&next, Owner::At(at), qtype, ctx, out, Some(&here));
        }
    }

    /// Writes what follows the answer section: the authority section (a negative
    /// answer's SOA, its owner pointing at the apex in the question, or a referral's NS,
    /// with DNSSEC proofs), then the additional section.
    pub fn finish<R: ?Sized>(&self, ctx: &Ctx<'_, R>, out: &mut Response<'_>) {
        let signed = self.signed(ctx);
        match ctx.end {
            End::Answer => {}
            End::Negative => {
                out.section(Section::Authority);
                let apex = Owner::at_or(ctx.apex_at, &self.data.apex);
                out.rrset(apex, &self.data.negative_soa);
                if let Some(signed) = signed {
                    out.rrset(apex, &signed.negative_soa_signatures);
                }
            }
            End::Referral { node, cut } => {
                let Some(referral) = &node.referral else {
                    return;
                };
                out.section(Section::Authority);
                out.rrset(cut, &referral.ns);
                if signed.is_some()
                    && let Some(ds) = node.rrset(rtype::DS)
                {
                    out.rrset(cut, ds);
                    write_signatures(node, rtype::DS, cut, out);
                }
            }
        }
        if signed.is_some() {
            out.section(Section::Authority);
            ctx.proofs.write(&self.data, ctx.apex_at, out);
            let mut buf = [0u8; MAX_NAME_LEN + 2];
            for entry in ctx.denials.iter().flatten() {
                let owner = compressed(entry.owner(), self.data.apex.len(), ctx.apex_at, &mut buf);
                out.rrset(owner, &entry.records);
            }
        }
        match ctx.end {
            End::Referral { node, .. } => {
                let Some(referral) = &node.referral else {
                    return;
                };
                out.section(Section::Additional);
                out.whole_records(&referral.glue, referral.glue_count);
                if signed.is_some() {
                    // RRSIGs in the additional section are optional (RFC 4035 §3.1.1).
                    out.optional_records(&referral.glue_signatures, referral.glue_signature_count);
                }
            }
            _ => {
                if let Some((node, rtype)) = ctx.additional {
                    add_additional(node, rtype, &self.tasks, signed.is_some(), out);
                }
            }
        }
    }
}

/// Answers from the task at a node; returns a CNAME to follow.
fn answer_task<'z, R: Rng + ?Sized>(
    task: &'z CompiledTask,
    data: Option<&'z Node>,
    owner: Owner<'_>,
    qtype: u16,
    synthesized: Synthesized<'_>,
    ctx: &mut Ctx<'z, R>,
    out: &mut Response<'_>,
) -> Option<CnameTarget<'z>> {
    let family = if task.cname {
        Family::Name
    } else {
        match qtype {
            rtype::A => Family::V4,
            rtype::AAAA => Family::V6,
            rtype::ANY if task.head().group.serves(Family::V4) => Family::V4,
            rtype::ANY => Family::V6,
            // The zone's CNAME is hidden while the task is effective.
            rtype::CNAME => return None,
            // Other types come from the zone, but never its CNAME, which stays hidden.
            _ => {
                if let Some(node) = data
                    && let Some(rrset) = node.rrset(qtype)
                {
                    out.rrset(owner, rrset);
                    if ctx.dnssec {
                        sign_answer(node, qtype, owner, synthesized, out);
                    }
                    ctx.additional = Some((node, qtype));
                }
                return None;
            }
        }
    };
    // The first group of the chain with enough usable origins answers (SPEC §12).
    let link = match serving(task.chain.iter().map(|l| &l.group), family, |g, i| {
        task.chain[g].is_up(i)
    }) {
        Serving::Group(0) | Serving::NotServed => task.head(),
        Serving::Group(g) => {
            task.chain[g].used.inc();
            &task.chain[g]
        }
        Serving::AllDown => {
            task.all_down.inc();
            match task.when_all_down {
                WhenAllDown::FailOpen => task.head(),
                WhenAllDown::Servfail => {
                    ctx.resolution.rcode = 2;
                    return None;
                }
                // No records: the caller answers NODATA with the SOA.
                WhenAllDown::Nodata => return None,
            }
        }
    };
    let mut route = route(&link.group, family, ctx.client);
    let selection = match task.sticky {
        true => pick_sticky(&mut route, link, task.answers),
        false => pick(&mut route, link, task.answers, ctx.rng),
    };
    let resolution = &mut ctx.resolution;
    resolution.scope = resolution.scope.max(selection.scope);
    if selection.failed_open {
        task.failed_open.inc();
        resolution.failed_open = true;
    }
    task.answered.inc();
    let mut target = None;
    for &i in selection.origins() {
        if let Some(record) = &link.records[usize::from(i)] {
            link.answered[usize::from(i)].inc();
            let at = out.record(owner, record);
            if task.cname {
                target = Some(CnameTarget {
                    name: &record[10..],
                    at,
                });
            }
        }
    }
    // A wildcard task's answer in a zone denying compactly: signed as the name asked's.
    if ctx.dnssec
        && let Some((signer, name)) = synthesized
    {
        let mut records = [0u8; MAX_TASK_RRSET];
        let mut len = 0;
        for &i in selection.origins() {
            if let Some(record) = &link.records[usize::from(i)]
                && let Some(to) = records.get_mut(len..len + record.len())
            {
                to.copy_from_slice(record);
                len += record.len();
            }
        }
        if len > 0 {
            let rtype = u16::from_be_bytes([records[0], records[1]]);
            let now = crate::dnssec::key::unix_now();
            if let Some(entry) = signer.compact_rrsig(name, rtype, &records[..len], now) {
                out.rrset(owner, &entry.records);
            }
        }
    } else if ctx.dnssec
        && let Some(signatures) = &link.signatures
        && let Some(rrsig) = signatures.of(family, selection.origins())
    {
        out.rrset(owner, rrsig);
    }
    match qtype {
        rtype::CNAME | rtype::ANY => None,
        _ => target,
    }
}

/// Answers from zone data at a node; returns a CNAME to follow. RRSIG and NSEC, the
/// types a CNAME's name also holds in a signed zone (RFC 4035 §2.5), are answered from the
/// name itself, like CNAME: following the CNAME would answer another name's and hide these.
fn answer_data<'z, R: ?Sized>(
    node: &'z Node,
    owner: Owner<'_>,
    qtype: u16,
    synthesized: Synthesized<'_>,
    ctx: &mut Ctx<'z, R>,
    out: &mut Response<'_>,
) -> Option<CnameTarget<'z>> {
    if qtype == rtype::RRSIG {
        // As Knot answers: the RRSIGs of one RRset, the type covered first in canonical
        // order, not every RRSIG of the name (which may not fit a message).
        let first = node.signatures_any().map(dnssec::covered).min();
        if let Some(covered) = first {
            write_signatures(node, covered, owner, out);
        }
        return None;
    }
    if !matches!(qtype, rtype::CNAME | rtype::NSEC)
        && let Some(cname) = node.rrset(rtype::CNAME)
    {
        let at = out.rrset(owner, cname);
        if ctx.dnssec {
            sign_answer(node, rtype::CNAME, owner, synthesized, out);
        }
        let first = Records(cname).next().expect("an RRset has a record");
        return match qtype {
            rtype::ANY => None,
            _ => Some(CnameTarget {
                name: &first[10..],
                at,
            }),
        };
    }
    let rtype = match qtype {
        rtype::ANY => node.first_type(),
        _ => Some(qtype),
    };
    if let Some(rtype) = rtype
        && let Some(rrset) = node.rrset(rtype)
    {
        out.rrset(owner, rrset);
        if ctx.dnssec {
            sign_answer(node, rtype, owner, synthesized, out);
        }
        ctx.additional = Some((node, rtype));
    }
    None
}

/// The NSEC at `owner` listing `types` with RRSIG and NSEC, and its RRSIG: from the
/// zone's table of compact denials, or signed now (RFC 9824).
fn compact_nsec(
    signer: &RrsetSigner,
    owner: &[u8],
    cut: bool,
    mut types: Types,
) -> Option<Arc<Entry>> {
    types.add(rtype::RRSIG);
    types.add(rtype::NSEC);
    let mut rdata = [0u8; MAX_NSEC_RDATA];
    let len = compact::nsec_rdata(owner, cut, types.as_slice(), &mut rdata);
    signer.compact_nsec(owner, &rdata[..len], crate::dnssec::key::unix_now())
}

/// In a zone denying compactly, for a wildcard's answer: what signs it, and the name
/// asked (lowercased wire), whose RRset it is signed as.
type Synthesized<'a> = Option<(&'a RrsetSigner, &'a [u8])>;

/// Most bytes of a task's answer signed per name: `answers` CNAME records of the longest
/// names.
const MAX_TASK_RRSET: usize = crate::site::MAX_ANSWERS as usize * (10 + MAX_NAME_LEN);

/// Writes the RRSIGs of `node`'s RRset of `rtype` answered with `owner`: the zone's, or
/// for a wildcard's answer in a zone denying compactly one made for the name asked.
fn sign_answer(
    node: &Node,
    rtype: u16,
    owner: Owner<'_>,
    synthesized: Synthesized<'_>,
    out: &mut Response<'_>,
) {
    match synthesized {
        Some((signer, name)) => {
            let records = node.rrset(rtype).unwrap_or_default();
            let now = crate::dnssec::key::unix_now();
            if let Some(entry) = signer.compact_rrsig(name, rtype, records, now) {
                out.rrset(owner, &entry.records);
            }
        }
        None => write_signatures(node, rtype, owner, out),
    }
}

/// The types a name has for a compact denial: the zone's at its node (DNSSEC's own
/// left out), the task's in place of the A, AAAA and CNAME it hides, without `qtype`,
/// denied. RRSIG and NSEC are added by the caller.
fn types_at(data: Option<&Node>, task: Option<&CompiledTask>, qtype: u16) -> Types {
    let mut types = Types::default();
    let type_of = |record: &[u8]| u16::from_be_bytes([record[0], record[1]]);
    for record in data.iter().flat_map(|node| node.records()) {
        match type_of(record) {
            rtype::RRSIG | rtype::NSEC => {}
            t => types.add(t),
        }
    }
    if let Some(task) = task {
        for t in [rtype::A, rtype::AAAA, rtype::CNAME] {
            types.remove(t);
        }
        for link in &task.chain {
            for record in link.records.iter().flatten() {
                types.add(type_of(record));
            }
        }
    }
    types.remove(qtype);
    types
}

/// The additional data of the RRset of `rtype` answered: addresses of the names it refers to,
/// as far as they fit (RFC 2181 §9: leaving them out does not truncate), with their
/// RRSIGs when `signed` and they fit too (RFC 4035 §3.1.1). A name a task answers is left
/// out: its address is chosen per query, never a static copy.
fn add_additional(node: &Node, rtype: u16, tasks: &Tasks, signed: bool, out: &mut Response<'_>) {
    let mut additional = node.additional(rtype).peekable();
    if additional.peek().is_none() {
        return;
    }
    out.section(Section::Additional);
    for extra in additional {
        if tasks.at(&extra.name).is_some_and(|task| task.is_some()) {
            continue;
        }
        let before = out.count(Section::Additional);
        out.optional_records(&extra.records, extra.count);
        if signed && out.count(Section::Additional) != before {
            out.optional_records(&extra.signatures, extra.signature_count);
        }
    }
}
