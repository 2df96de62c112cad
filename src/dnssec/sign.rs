//! Signing a zone lbdns serves (SPEC §11): the zone file's data, with the DNSKEY RRset at
//! the apex (signed by the KSK), CDS and CDNSKEY for the KSK (RFC 7344, RFC 8078), an
//! NSEC chain over the names that hold data or a delegation (RFC 4035 §2.3; none with
//! compact denial, whose NSECs are made per name asked, [`super::compact`]) or, with
//! `denial: nsec3`, an NSEC3PARAM and an NSEC3 chain over those names and their empty
//! non-terminals (RFC 5155 §7.1, RFC 9276's parameters), and an RRSIG over every
//! authoritative RRset made with the ZSK (RFC 4035 §2.2: not over the NS of a cut nor
//! over glue; the DS and NSEC at a cut are signed).
//!
//! The result is a zone compiled like any other, its signatures stored beside the RRsets
//! they cover and its NSEC3 RRsets apart from its names, as a file signed elsewhere
//! stores them, so serving and transfers use the same code for both (`snapshot::signed`).
//! DNSSEC records the file itself holds are dropped first: lbdns's own replace them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

use super::key::ZoneKey;
use super::keydir::ZoneKeys;
use super::lifecycle::{Apex, Timing};
use super::{Nsec3Params, canonical_cmp, nsec3_hash, nsec3_rdata, rtype as dnssec_rtype};
use crate::site::dnssec::{Denial, DnssecPolicy};
use crate::snapshot::{DenialEntry, RecordsMut, ZoneData};
use crate::wire::{Records, WireName, rtype};

/// CDS and CDNSKEY (RFC 7344).
const CDS: u16 = 59;
const CDNSKEY: u16 = 60;

/// How far before now a signature's inception is put: validators whose clocks run a
/// little behind accept it from the start.
pub const INCEPTION_SKEW: u64 = 3_600;

/// Types a zone file may carry that lbdns makes itself when it signs.
fn is_made_when_signing(rtype: u16) -> bool {
    matches!(rtype, rtype::RRSIG | rtype::NSEC | CDS | CDNSKEY)
        || rtype == dnssec_rtype::DNSKEY
        || rtype == dnssec_rtype::NSEC3
        || rtype == dnssec_rtype::NSEC3PARAM
}

/// Signatures made since the process started, and signatures reused instead of made
/// again (a zone whose data, policy and keys did not change keeps its signatures across a
/// reload; a task answer's RRset that did not change keeps its signature across compiles).
/// Process-wide: every signing path counts here.
pub static SIGNATURES_MADE: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);
pub static SIGNATURES_REUSED: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

/// The keys that sign a zone at one moment, as its lifecycle's apex names them.
pub struct Signers<'a> {
    /// The keys in the DNSKEY RRset.
    pub dnskey: Vec<&'a ZoneKey>,
    /// The KSKs that sign the DNSKEY, CDS and CDNSKEY RRsets.
    pub ksks: Vec<&'a ZoneKey>,
    /// The ZSK that signs every other RRset.
    pub zsk: &'a ZoneKey,
    /// The KSK whose CDS and CDNSKEY are published.
    pub cds: Option<&'a ZoneKey>,
}

impl<'a> Signers<'a> {
    /// The keys of `keys` that `apex` names.
    pub fn of(keys: &'a ZoneKeys, apex: &Apex) -> Result<Self, SignError> {
        let find = |tags: &[u16]| -> Vec<&'a ZoneKey> {
            tags.iter().filter_map(|&t| keys.key(t)).collect()
        };
        let zsk = apex
            .zone_signer
            .and_then(|t| keys.key(t))
            .ok_or(SignError::NoKey { what: "ZSK" })?;
        let ksks = find(&apex.dnskey_signers);
        if ksks.is_empty() {
            return Err(SignError::NoKey { what: "KSK" });
        }
        Ok(Self {
            dnskey: find(&apex.dnskey),
            ksks,
            zsk,
            cds: apex.cds.and_then(|t| keys.key(t)),
        })
    }
}

/// Why a zone could not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    #[error("no {what} of the zone is signing now (lbdns keys list shows its keys)")]
    NoKey { what: &'static str },
}

/// A signed zone and when it should be signed again.
pub struct SignedZone {
    pub zone: ZoneData,
    /// The earliest expiration of its signatures (seconds since the Unix epoch).
    pub earliest_expiry: u64,
    /// When less than a third of the validity is left, the zone is signed again.
    pub refresh_at: u64,
    pub signatures: usize,
}

/// What a zone held before it was signed, as a digest: the signing cache compares it
/// to tell whether a zone read again is the one it signed, without keeping that zone.
/// Two 64-bit hashes of every name and its records, summed over the names so that the
/// order the zone keeps them in does not matter; its origin and warnings as well.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneDigest {
    names: usize,
    sum: [u64; 2],
}

impl ZoneDigest {
    pub fn of(zone: &ZoneData) -> Self {
        use std::hash::BuildHasher;
        let seeds = [
            foldhash::quality::FixedState::with_seed(0x6c62_646e_7331),
            foldhash::quality::FixedState::with_seed(0x6c62_646e_7332),
        ];
        let mut digest = Self {
            names: 0,
            sum: [0; 2],
        };
        let whole = (zone.origin.to_ascii(), &zone.warnings);
        for (sum, seed) in digest.sum.iter_mut().zip(&seeds) {
            *sum = seed.hash_one(&whole);
        }
        for (owner, node) in zone.nodes() {
            digest.names += 1;
            let records = node.records().0;
            for (sum, seed) in digest.sum.iter_mut().zip(&seeds) {
                *sum = sum.wrapping_add(seed.hash_one((owner, records)));
            }
        }
        digest
    }
}

/// The lifecycle's intervals for `zone` signed as `policy` says: its largest TTL, the
/// SOA MINIMUM (negative answers' TTL) included, and the policy's ZSK lifetime.
pub fn key_timing(zone: &ZoneData, policy: &DnssecPolicy) -> Timing {
    let ttl = |record: &[u8]| {
        u64::from(u32::from_be_bytes(
            record[4..8].try_into().expect("4 bytes"),
        ))
    };
    let soa = zone.soa();
    let minimum = u64::from(u32::from_be_bytes(
        soa[soa.len() - 4..].try_into().expect("4 bytes"),
    ));
    let max_ttl = zone
        .nodes()
        .flat_map(|(_, node)| node.records())
        .map(ttl)
        .fold(minimum, u64::max);
    let zsk_lifetime = policy.zsk_lifetime.map_or(0, |d| d.as_secs());
    Timing::new(max_ttl, zsk_lifetime)
}

/// One RRset being signed: its owner and records (type..RDATA each), borrowed from the
/// zone where they come from it (a big zone is not copied to be signed).
struct Rrset<'a> {
    owner: Cow<'a, [u8]>,
    rtype: u16,
    records: Cow<'a, [u8]>,
}

/// Signs `zone` as `policy` says with the keys of `keys` that `apex_keys` names, at `now`
/// (seconds since the Unix epoch); the ZSK goes on signing the zone's task answers.
///
/// The zone is signed in place: each name's records are rewritten once, with its NSEC
/// and its RRSIGs after its data, so a large zone is never held twice (unsigned and
/// signed) nor are its signatures held apart from it. With NSEC3 each name's NSEC3 and
/// its RRSIG are made beside it, in the zone's NSEC3 index, as a zone file's are kept
/// (their hashed owners are not names of the zone). The names are shared out in small
/// runs of the denial chain's order to a thread per core, since signatures cost far
/// more than the rest.
pub fn sign_zone(
    mut zone: ZoneData,
    mut keys: ZoneKeys,
    apex_keys: &Apex,
    policy: &DnssecPolicy,
    now: u64,
) -> Result<SignedZone, SignError> {
    let signers = Signers::of(&keys, apex_keys)?;
    let apex = zone.apex.clone();
    let apex_labels = zone.apex_labels;
    let soa = zone.soa();
    let soa_ttl = u32::from_be_bytes(soa[4..8].try_into().expect("4 bytes"));
    let nsec_ttl = u32::from_be_bytes(zone.negative_soa[4..8].try_into().expect("4 bytes"));

    // The apex's key RRsets and, with NSEC3, its NSEC3PARAM: RFC 9276's parameters
    // (SHA-1, no extra iteration, no salt; no opt-out).
    let mut key_records = apex_key_records(&signers, &apex, soa_ttl).concat();
    let nsec3 = (policy.denial == Denial::Nsec3).then(Nsec3Params::default);
    if let Some(params) = &nsec3 {
        let rdata = super::nsec3param_rdata(params);
        push_record(&mut key_records, dnssec_rtype::NSEC3PARAM, nsec_ttl, &rdata);
    }

    // The denial chain: every name with data or a cut, not glue below a cut; with NSEC3
    // also the empty non-terminals above those names (RFC 4035 §2.3, RFC 5155 §7.1).
    // Glue is neither in the chain nor signed; DNSSEC records the file gave any name are
    // dropped.
    let cuts: std::collections::HashSet<Box<[u8]>> = zone
        .nodes()
        .filter(|(_, node)| node.referral.is_some())
        .map(|(name, _)| name.into())
        .collect();
    let below_cut = |owner: &[u8]| {
        let Some(name) = WireName::from_lowercase(owner) else {
            return false;
        };
        (apex_labels..name.labels()).any(|n| cuts.contains(name.suffix(n)))
    };
    let made_here =
        |record: &[u8]| is_made_when_signing(u16::from_be_bytes([record[0], record[1]]));
    let has_data =
        |owner: &[u8], mut records: Records| *owner == *apex || records.any(|r| !made_here(r));
    let mut empty_above = std::collections::HashSet::new();
    if nsec3.is_some() {
        for (owner, node) in zone.nodes() {
            let Some(name) = WireName::from_lowercase(owner) else {
                continue;
            };
            if !has_data(owner, node.records()) || below_cut(owner) {
                continue;
            }
            for n in apex_labels + 1..name.labels() {
                let above = name.suffix(n);
                if zone
                    .node(above)
                    .is_some_and(|node| !has_data(above, node.records()))
                {
                    empty_above.insert(Box::<[u8]>::from(above));
                }
            }
        }
    }
    let mut chain = Vec::new();
    let mut emptied = Vec::new();
    for mut name in zone.records_mut() {
        let has_data = has_data(name.owner, Records(name.records()));
        if (below_cut(name.owner) || !has_data) && Records(name.records()).any(made_here) {
            let kept: Vec<u8> = Records(name.records())
                .filter(|r| !made_here(r))
                .flatten()
                .copied()
                .collect();
            name.replace(&kept);
            if kept.is_empty() {
                emptied.push(Box::<[u8]>::from(name.owner));
            }
        }
        if (has_data && !below_cut(name.owner)) || empty_above.contains(name.owner) {
            chain.push(name);
        }
    }
    drop(empty_above);
    match &nsec3 {
        Some(params) => chain.sort_by_cached_key(|name| nsec3_hash(name.owner, params)),
        None => chain.sort_unstable_by(|a, b| canonical_cmp(a.owner, b.owner)),
    }

    // Signatures: inception a little in the past; expiry spread over the last tenth of
    // the validity, so that a zone's signatures do not all fall due at once.
    let validity = policy.signature_validity.as_secs();
    let signing = ZoneSigning {
        apex: &apex,
        zsk: signers.zsk,
        ksks: &signers.ksks,
        key_records: &key_records,
        nsec_ttl,
        validity,
        inception: now.saturating_sub(INCEPTION_SKEW),
        denial: match &nsec3 {
            Some(params) => Chain::Nsec3(params),
            None if policy.denial == Denial::Compact => Chain::Compact,
            None => Chain::Nsec,
        },
    };
    // Each name's NSEC3 RRset, in the chain's order: filled in as the names are signed.
    let mut nsec3_rrsets: Vec<DenialEntry> = match nsec3 {
        Some(_) => std::iter::repeat_with(DenialEntry::default)
            .take(chain.len())
            .collect(),
        None => Vec::new(),
    };
    // Runs small enough that a thread the machine slows down does not hold up the rest.
    const RUN: usize = 256;
    // The name after each run's last; the chain closes at its first.
    let after_runs: Vec<&[u8]> = (1..=chain.len().div_ceil(RUN))
        .map(|i| chain.get(i * RUN).unwrap_or(&chain[0]).owner)
        .collect();
    let mut nsec3_runs = nsec3_rrsets.chunks_mut(RUN);
    let runs = Mutex::new(
        chain
            .chunks_mut(RUN)
            .zip(after_runs)
            .map(move |(run, after)| (run, after, nsec3_runs.next())),
    );
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (signatures, earliest_expiry) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut worker = Worker::default();
                    worker.signatures.earliest_expiry = u64::MAX;
                    loop {
                        let next = runs.lock().unwrap_or_else(|e| e.into_inner()).next();
                        let Some((run, after, mut nsec3_run)) = next else {
                            break;
                        };
                        for i in 0..run.len() {
                            let next = run.get(i + 1).map_or(after, |name| name.owner);
                            let nsec3 = nsec3_run.as_deref_mut().map(|rrsets| &mut rrsets[i]);
                            signing.sign_name(&mut run[i], next, nsec3, &mut worker);
                        }
                    }
                    let made = worker.signatures;
                    (made.count, made.earliest_expiry)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a signing thread does not panic"))
            .fold((0, u64::MAX), |(n, e), (wn, we)| (n + wn, e.min(we)))
    });
    drop(runs);
    drop(chain);
    zone.remove_empty(&emptied);
    zone.rederive(nsec3_rrsets);

    let zsk_tag = signers.zsk.key_tag();
    zone.signer = Some(task_signer(
        &mut keys,
        zsk_tag,
        apex,
        validity,
        nsec_ttl,
        policy.denial == Denial::Compact,
    ));
    Ok(SignedZone {
        zone,
        earliest_expiry,
        refresh_at: earliest_expiry.saturating_sub(validity / 3),
        signatures,
    })
}

/// The records of the denial chain a zone signed in place holds.
enum Chain<'a> {
    /// An NSEC at each name.
    Nsec,
    /// An NSEC3 for each name, with these parameters.
    Nsec3(&'a Nsec3Params),
    /// None: compact denial makes its NSECs per name asked.
    Compact,
}

/// What signing every name of a zone shares.
struct ZoneSigning<'a> {
    apex: &'a [u8],
    zsk: &'a ZoneKey,
    ksks: &'a [&'a ZoneKey],
    /// The apex's DNSKEY, CDS and CDNSKEY records, and with NSEC3 its NSEC3PARAM.
    key_records: &'a [u8],
    nsec_ttl: u32,
    validity: u64,
    inception: u64,
    denial: Chain<'a>,
}

/// One signing thread's buffers, reused from name to name, and its tally.
#[derive(Default)]
struct Worker {
    records: Vec<u8>,
    types: Vec<u16>,
    signatures: Signatures,
}

/// RRSIG records being made: their buffers and tally.
#[derive(Default)]
struct Signatures {
    /// The RRSIGs of the RRsets last signed.
    out: Vec<u8>,
    /// The data a signature covers.
    signed_data: Vec<u8>,
    count: usize,
    earliest_expiry: u64,
}

impl ZoneSigning<'_> {
    /// Rewrites the records of `name` (in the chain): its data, at the apex the key
    /// RRsets, with NSEC its NSEC pointing to `next`, then an RRSIG over each RRset it is
    /// authoritative for (RFC 4035 §2.2: at a cut only the DS and NSEC). With NSEC3 its
    /// NSEC3, pointing to `next`'s hash, and that NSEC3's RRSIG go in `nsec3`.
    fn sign_name(
        &self,
        name: &mut RecordsMut,
        next: &[u8],
        nsec3: Option<&mut DenialEntry>,
        worker: &mut Worker,
    ) {
        let records = &mut worker.records;
        records.clear();
        worker.types.clear();
        let at_apex = *name.owner == *self.apex;
        let data = Records(name.records())
            .filter(|r| !is_made_when_signing(u16::from_be_bytes([r[0], r[1]])))
            .chain(Records(if at_apex { self.key_records } else { &[] }));
        for record in data {
            let t = u16::from_be_bytes([record[0], record[1]]);
            records.extend_from_slice(record);
            if !worker.types.contains(&t) {
                worker.types.push(t);
            }
        }
        if let Chain::Nsec = self.denial {
            worker.types.extend([rtype::RRSIG, rtype::NSEC]);
            let mut rdata = next.to_vec();
            rdata.extend_from_slice(&type_bitmap(&worker.types));
            push_record(records, rtype::NSEC, self.nsec_ttl, &rdata);
        }
        if !records.is_empty() {
            self.sign_rrsets(name.owner, name.is_cut, records, &mut worker.signatures);
            records.extend_from_slice(&worker.signatures.out);
            name.replace(records);
        }

        let (Chain::Nsec3(params), Some(nsec3)) = (&self.denial, nsec3) else {
            return;
        };
        // At a cut only the NS and DS are this zone's; an RRSIG is listed where a signed
        // RRset is.
        let types = &mut worker.types;
        if name.is_cut {
            types.retain(|t| matches!(*t, rtype::NS | rtype::DS));
        }
        if !types.is_empty() && (!name.is_cut || types.contains(&rtype::DS)) {
            types.push(rtype::RRSIG);
        }
        let owner = nsec3_owner(&nsec3_hash(name.owner, params), self.apex);
        let rdata = nsec3_rdata(0, params, &nsec3_hash(next, params), types);
        records.clear();
        push_record(records, dnssec_rtype::NSEC3, self.nsec_ttl, &rdata);
        self.sign_rrsets(&owner, false, records, &mut worker.signatures);
        records.extend_from_slice(&worker.signatures.out);
        *nsec3 = DenialEntry {
            owner: owner.into(),
            records: records[..].into(),
        };
    }

    /// Writes into `signatures.out` an RRSIG over each RRset of `records` (RRsets
    /// contiguous) at `owner` it is authoritative for: at a cut only the DS and NSEC.
    fn sign_rrsets(&self, owner: &[u8], is_cut: bool, records: &[u8], signatures: &mut Signatures) {
        let out = &mut signatures.out;
        out.clear();
        let mut at = 0;
        while at < records.len() {
            let t = u16::from_be_bytes([records[at], records[at + 1]]);
            let end = Records(&records[at..])
                .take_while(|r| r[..2] == t.to_be_bytes())
                .map(<[u8]>::len)
                .sum::<usize>()
                + at;
            let rrset = &records[at..end];
            at = end;
            if is_cut && !matches!(t, rtype::DS | rtype::NSEC) {
                continue;
            }
            let jitter = spread(owner, t, self.validity / 10);
            let expiration = self.inception + self.validity - jitter;
            signatures.earliest_expiry = signatures.earliest_expiry.min(expiration);
            // RFC 7344 §4.1: the parent checks the CDS and CDNSKEY against its DS, so the
            // KSKs sign them as they sign the DNSKEY RRset.
            let keys = if is_key_rrset(t) {
                self.ksks
            } else {
                std::slice::from_ref(&self.zsk)
            };
            let data = &mut signatures.signed_data;
            data.clear();
            canonical_rrset_into(owner, t, rrset, data);
            for key in keys {
                push_rrsig(
                    (owner, t, rrset),
                    data,
                    (self.apex, *key),
                    (self.inception, expiration),
                    out,
                );
                signatures.count += 1;
            }
        }
    }
}

/// The apex's RRsets the KSKs sign.
fn is_key_rrset(t: u16) -> bool {
    matches!(t, dnssec_rtype::DNSKEY | CDS | CDNSKEY)
}

/// The apex's DNSKEY, CDS and CDNSKEY records (the last two empty when no KSK's CDS is
/// published), each with the SOA's TTL.
fn apex_key_records(signers: &Signers, apex: &[u8], soa_ttl: u32) -> [Vec<u8>; 3] {
    let (mut dnskeys, mut cds, mut cdnskey) = (Vec::new(), Vec::new(), Vec::new());
    for key in &signers.dnskey {
        push_record(
            &mut dnskeys,
            dnssec_rtype::DNSKEY,
            soa_ttl,
            &key.dnskey_rdata(),
        );
    }
    if let Some(key) = signers.cds {
        push_record(&mut cds, CDS, soa_ttl, &key.ds_rdata(apex));
        push_record(&mut cdnskey, CDNSKEY, soa_ttl, &key.dnskey_rdata());
    }
    [dnskeys, cds, cdnskey]
}

/// The signer of the zone's task answers: its ZSK `zsk_tag`, taken out of `keys`.
fn task_signer(
    keys: &mut ZoneKeys,
    zsk_tag: u16,
    apex: Box<[u8]>,
    validity: u64,
    nsec_ttl: u32,
    compact: bool,
) -> std::sync::Arc<RrsetSigner> {
    let zsk_at = keys
        .keys
        .iter()
        .position(|k| k.key_tag() == zsk_tag)
        .expect("the ZSK is one of the keys");
    RrsetSigner::new(
        keys.keys.swap_remove(zsk_at),
        apex,
        validity,
        nsec_ttl,
        compact,
    )
}

/// The owner of the NSEC3 of the name whose hash is `hash`, in the zone at `apex`.
pub fn nsec3_owner(hash: &[u8; super::HASH_LEN], apex: &[u8]) -> Vec<u8> {
    let label = super::base32hex(hash);
    let mut owner = Vec::with_capacity(1 + label.len() + apex.len());
    owner.push(label.len() as u8);
    owner.extend_from_slice(&label);
    owner.extend_from_slice(apex);
    owner
}

/// Appends a record of class IN (type..RDATA).
pub fn push_record(out: &mut Vec<u8>, t: u16, ttl: u32, rdata: &[u8]) {
    out.extend_from_slice(&t.to_be_bytes());
    out.extend_from_slice(&crate::wire::CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(
        &u16::try_from(rdata.len())
            .expect("RDATA fits in 65535 bytes")
            .to_be_bytes(),
    );
    out.extend_from_slice(rdata);
}

/// A number in `0..span` fixed by the RRset, so signing again gives the same expiry.
fn spread(owner: &[u8], t: u16, span: u64) -> u64 {
    if span == 0 {
        return 0;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &[owner, &t.to_be_bytes()].concat());
    u64::from_be_bytes(digest.as_ref()[..8].try_into().expect("8 bytes")) % span
}

/// The RRSIG RDATA over `rrset` by `key` (RFC 4034 §3.1.8.1).
fn rrsig(rrset: &Rrset, signer: &[u8], key: &ZoneKey, inception: u64, expiration: u64) -> Vec<u8> {
    rrsig_over(
        rrset,
        &canonical_rrset(rrset),
        signer,
        key,
        inception,
        expiration,
    )
}

/// [`rrsig`] with the RRset already in canonical form.
fn rrsig_over(
    rrset: &Rrset,
    canonical: &[u8],
    signer: &[u8],
    key: &ZoneKey,
    inception: u64,
    expiration: u64,
) -> Vec<u8> {
    let ttl = u32::from_be_bytes(rrset.records[4..8].try_into().expect("4 bytes"));
    let mut rdata = Vec::with_capacity(18 + signer.len() + 64);
    rdata.extend_from_slice(&rrset.rtype.to_be_bytes());
    rdata.push(key.algorithm().number());
    rdata.push(rrsig_labels(&rrset.owner));
    rdata.extend_from_slice(&ttl.to_be_bytes());
    // Serial-number arithmetic (RFC 4034 §3.1.5): the low 32 bits.
    rdata.extend_from_slice(&(expiration as u32).to_be_bytes());
    rdata.extend_from_slice(&(inception as u32).to_be_bytes());
    rdata.extend_from_slice(&key.key_tag().to_be_bytes());
    rdata.extend_from_slice(signer);
    let mut data = rdata.clone();
    data.extend_from_slice(canonical);
    rdata.extend_from_slice(&key.sign(&data));
    rdata
}

/// `rrset` in canonical form and order (RFC 4034 §6.2, §6.3): what its signature covers
/// after the RRSIG's own fields.
fn canonical_rrset(rrset: &Rrset) -> Vec<u8> {
    let mut out = Vec::new();
    canonical_rrset_into(&rrset.owner, rrset.rtype, &rrset.records, &mut out);
    out
}

/// Appends the RRSIG record (type..RDATA) over the RRset of `rtype` at `owner` made of
/// `records` (type..RDATA each), whose canonical form is `canonical`, by `key` of the
/// zone `signer` (RFC 4034 §3.1.8.1). `canonical` is used as the buffer of the signed
/// data, and left as it was.
fn push_rrsig(
    (owner, rtype, records): (&[u8], u16, &[u8]),
    canonical: &mut Vec<u8>,
    (signer, key): (&[u8], &ZoneKey),
    (inception, expiration): (u64, u64),
    out: &mut Vec<u8>,
) {
    let ttl = u32::from_be_bytes(records[4..8].try_into().expect("4 bytes"));
    let record_at = out.len();
    out.extend_from_slice(&rtype::RRSIG.to_be_bytes());
    out.extend_from_slice(&crate::wire::CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    let rdata_at = out.len();
    out.extend_from_slice(&rtype.to_be_bytes());
    out.push(key.algorithm().number());
    out.push(rrsig_labels(owner));
    out.extend_from_slice(&ttl.to_be_bytes());
    // Serial-number arithmetic (RFC 4034 §3.1.5): the low 32 bits.
    out.extend_from_slice(&(expiration as u32).to_be_bytes());
    out.extend_from_slice(&(inception as u32).to_be_bytes());
    out.extend_from_slice(&key.key_tag().to_be_bytes());
    out.extend_from_slice(signer);
    // What is signed: the RRSIG RDATA so far, then the RRset (RFC 4034 §3.1.8.1).
    let canonical_len = canonical.len();
    canonical.extend_from_slice(&out[rdata_at..]);
    canonical.rotate_right(out.len() - rdata_at);
    key.sign_into(canonical, out);
    canonical.drain(..canonical.len() - canonical_len);
    let rdlen = u16::try_from(out.len() - rdata_at).expect("an RRSIG fits in 65535 bytes");
    out[record_at + 8..record_at + 10].copy_from_slice(&rdlen.to_be_bytes());
}

/// The RRset of `rtype` at `owner` made of `records` in canonical form and order (RFC
/// 4034 §6.2, §6.3), appended to `out`: what its signature covers after the RRSIG's own
/// fields.
fn canonical_rrset_into(owner: &[u8], rtype: u16, records: &[u8], out: &mut Vec<u8>) {
    let ttl = u32::from_be_bytes(records[4..8].try_into().expect("4 bytes"));
    let put = |rd: &[u8], out: &mut Vec<u8>| {
        out.extend_from_slice(owner);
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&crate::wire::CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(rd.len() as u16).to_be_bytes());
        out.extend_from_slice(rd);
    };
    let mut all = Records(records);
    if let (Some(only), None) = (all.next(), all.next()) {
        put(&canonical_rdata(rtype, &only[10..]), out);
        return;
    }
    let mut canonical: Vec<Vec<u8>> = Records(records)
        .map(|r| canonical_rdata(rtype, &r[10..]))
        .collect();
    canonical.sort();
    canonical.dedup();
    for rd in canonical {
        put(&rd, out);
    }
}

/// Signs, after the zone, the RRsets its tasks answer and the NSEC records their names
/// need (SPEC §11), with the ZSK the zone was signed with. Each RRset is signed when a
/// site's tasks compile, off the query path; a signature is kept while the RRset it
/// covers is answered and reused by the next compile when that RRset is byte for byte
/// the same and the signature is not due for refresh, so a task change signs only what
/// it changed.
pub struct RrsetSigner {
    zsk: ZoneKey,
    apex: Box<[u8]>,
    /// How long a signature is valid; one with less than a third left is made again.
    validity: u64,
    /// The TTL of NSEC records, as the zone's own have.
    pub nsec_ttl: u32,
    /// The signatures the last compile used, by the canonical form of the RRset.
    made: Mutex<HashMap<Vec<u8>, Made>>,
    /// With compact denial: the records signed per name asked (RFC 9824).
    compact: Option<super::compact::Cache>,
}

/// A signature made: the RRSIG record (type..RDATA) and when it expires.
struct Made {
    record: Box<[u8]>,
    expiration: u64,
}

/// Every signer in use, so that the server knows when their signatures are due.
static SIGNERS: Mutex<Vec<std::sync::Weak<RrsetSigner>>> = Mutex::new(Vec::new());

/// When the earliest signature a signer keeps for tasks is due to be made again (seconds
/// since the Unix epoch): a compile of the site's tasks then makes it again.
pub fn next_task_refresh() -> Option<u64> {
    let mut signers = SIGNERS.lock().unwrap_or_else(|e| e.into_inner());
    signers.retain(|s| s.strong_count() > 0);
    signers
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .filter_map(|signer| {
            let made = signer.made.lock().unwrap_or_else(|e| e.into_inner());
            let earliest = made.values().map(|m| m.expiration).min()?;
            Some(earliest.saturating_sub(signer.validity / 3))
        })
        .min()
}

impl RrsetSigner {
    /// A signer with `zsk` for the zone at `apex` (lowercased wire bytes), making
    /// signatures valid for `validity` seconds and NSECs with `nsec_ttl`.
    pub fn new(
        zsk: ZoneKey,
        apex: Box<[u8]>,
        validity: u64,
        nsec_ttl: u32,
        compact: bool,
    ) -> std::sync::Arc<Self> {
        let signer = std::sync::Arc::new(Self {
            zsk,
            apex,
            validity,
            nsec_ttl,
            made: Mutex::default(),
            compact: compact.then(super::compact::Cache::default),
        });
        let mut signers = SIGNERS.lock().unwrap_or_else(|e| e.into_inner());
        signers.retain(|s| s.strong_count() > 0);
        signers.push(std::sync::Arc::downgrade(&signer));
        signer
    }

    /// The key tag of the ZSK it signs with.
    pub fn key_tag(&self) -> u16 {
        self.zsk.key_tag()
    }

    /// True when the zone denies existence with compact denial (RFC 9824).
    pub fn is_compact(&self) -> bool {
        self.compact.is_some()
    }

    /// The table of records compact denial signed per name asked.
    pub fn compact_cache(&self) -> Option<&super::compact::Cache> {
        self.compact.as_ref()
    }

    /// The NSEC record at `owner` (lowercased wire) with `rdata`, then its RRSIG: from
    /// the table when it holds them and they are not due at `now`, else signed now and
    /// kept there. `None` unless the zone denies with compact denial.
    pub fn compact_nsec(
        &self,
        owner: &[u8],
        rdata: &[u8],
        now: u64,
    ) -> Option<std::sync::Arc<super::compact::Entry>> {
        let cache = self.compact.as_ref()?;
        if let Some(hit) = cache.get(owner, rtype::NSEC, rdata, now) {
            SIGNATURES_REUSED.inc();
            return Some(hit);
        }
        let mut records = Vec::new();
        push_record(&mut records, rtype::NSEC, self.nsec_ttl, rdata);
        let refresh_at = self.sign_into(owner, rtype::NSEC, &mut records, now);
        let entry = std::sync::Arc::new(super::compact::Entry::new(
            owner,
            rtype::NSEC,
            rdata,
            refresh_at,
            records.into(),
        ));
        cache.put(entry.clone());
        Some(entry)
    }

    /// The RRSIG over the RRset of `rtype` made of `records` (type..RDATA each) at
    /// `owner`: a wildcard's records answered as the name asked, as compact denial
    /// answers them (RFC 9824 §3.3). From the table, or signed now and kept there.
    pub fn compact_rrsig(
        &self,
        owner: &[u8],
        rtype: u16,
        records: &[u8],
        now: u64,
    ) -> Option<std::sync::Arc<super::compact::Entry>> {
        let cache = self.compact.as_ref()?;
        if let Some(hit) = cache.get(owner, rtype, records, now) {
            SIGNATURES_REUSED.inc();
            return Some(hit);
        }
        let mut rrsig = Vec::new();
        let refresh_at = self.sign_over(owner, rtype, records, &mut rrsig, now);
        let entry = std::sync::Arc::new(super::compact::Entry::new(
            owner,
            rtype,
            records,
            refresh_at,
            rrsig.into(),
        ));
        cache.put(entry.clone());
        Some(entry)
    }

    /// Appends to `records` (one RRset of `rtype` at `owner`) the RRSIG over them;
    /// returns when that signature is due to be made again.
    fn sign_into(&self, owner: &[u8], rtype: u16, records: &mut Vec<u8>, now: u64) -> u64 {
        let mut rrsig = Vec::new();
        let refresh_at = self.sign_over(owner, rtype, records, &mut rrsig, now);
        records.extend_from_slice(&rrsig);
        refresh_at
    }

    /// Writes into `out` the RRSIG record over the RRset of `rtype` at `owner` made of
    /// `records`, signed at `now`; returns when it is due to be made again.
    fn sign_over(
        &self,
        owner: &[u8],
        rtype: u16,
        records: &[u8],
        out: &mut Vec<u8>,
        now: u64,
    ) -> u64 {
        SIGNATURES_MADE.inc();
        let rrset = Rrset {
            owner: Cow::Borrowed(owner),
            rtype,
            records: Cow::Borrowed(records),
        };
        let inception = now.saturating_sub(INCEPTION_SKEW);
        let expiration = inception + self.validity;
        let rdata = rrsig(&rrset, &self.apex, &self.zsk, inception, expiration);
        let ttl = u32::from_be_bytes(records[4..8].try_into().expect("4 bytes"));
        push_record(out, rtype::RRSIG, ttl, &rdata);
        expiration - self.validity / 3
    }

    /// Starts the signing of one compile at `now` (seconds since the Unix epoch).
    pub fn session(&self, now: u64) -> SigningSession<'_> {
        let before = std::mem::take(&mut *self.made.lock().unwrap_or_else(|e| e.into_inner()));
        SigningSession {
            signer: self,
            now,
            before,
            used: HashMap::new(),
            made: 0,
        }
    }
}

/// The signing of one compile: signatures reused from the last compile or made.
pub struct SigningSession<'s> {
    signer: &'s RrsetSigner,
    now: u64,
    before: HashMap<Vec<u8>, Made>,
    used: HashMap<Vec<u8>, Made>,
    /// Signatures made (not reused) so far.
    pub made: usize,
}

impl SigningSession<'_> {
    /// The RRSIG record (type..RDATA) over the RRset of `rtype` at `owner` (lowercased
    /// wire bytes) made of `records` (type..RDATA each).
    pub fn sign(&mut self, owner: &[u8], rtype: u16, records: &[u8]) -> Box<[u8]> {
        let rrset = Rrset {
            owner: Cow::Borrowed(owner),
            rtype,
            records: Cow::Borrowed(records),
        };
        let canonical = canonical_rrset(&rrset);
        let fresh = |made: &Made| made.expiration > self.now + self.signer.validity / 3;
        if let Some(made) = self.used.get(&canonical) {
            SIGNATURES_REUSED.inc();
            return made.record.clone();
        }
        let made = match self.before.remove(&canonical).filter(fresh) {
            Some(made) => {
                SIGNATURES_REUSED.inc();
                made
            }
            None => {
                self.made += 1;
                SIGNATURES_MADE.inc();
                let inception = self.now.saturating_sub(INCEPTION_SKEW);
                let validity = self.signer.validity;
                let expiration = inception + validity - spread(owner, rtype, validity / 10);
                let rdata = rrsig_over(
                    &rrset,
                    &canonical,
                    &self.signer.apex,
                    &self.signer.zsk,
                    inception,
                    expiration,
                );
                let ttl = u32::from_be_bytes(records[4..8].try_into().expect("4 bytes"));
                let mut record = Vec::new();
                push_record(&mut record, rtype::RRSIG, ttl, &rdata);
                Made {
                    record: record.into(),
                    expiration,
                }
            }
        };
        let record = made.record.clone();
        self.used.insert(canonical, made);
        record
    }
}

/// The signatures the compile used are the ones the next compile may reuse.
impl Drop for SigningSession<'_> {
    fn drop(&mut self) {
        let mut made = self.signer.made.lock().unwrap_or_else(|e| e.into_inner());
        *made = std::mem::take(&mut self.used);
    }
}

/// The RRSIG Labels field: the owner's labels, a leading `*` not counted.
fn rrsig_labels(owner: &[u8]) -> u8 {
    let name = WireName::from_lowercase(owner).expect("a zone's owner");
    let labels = name.labels();
    let wildcard = owner.starts_with(b"\x01*");
    (labels - usize::from(wildcard)) as u8
}

/// The length of the uncompressed wire name at `at` in `rdata`.
fn name_len(rdata: &[u8], at: usize) -> Option<usize> {
    let mut i = at;
    loop {
        let len = usize::from(*rdata.get(i)?);
        i += 1 + len;
        if len == 0 {
            return Some(i - at);
        }
    }
}

/// `rdata` with the domain names RFC 4034 §6.2 (as updated by RFC 6840 §5.1) lists
/// lowercased. Length bytes are never ASCII letters, so a whole name can be mapped.
fn canonical_rdata(t: u16, rdata: &[u8]) -> Vec<u8> {
    let mut out = rdata.to_vec();
    let mut lower = |from: usize| -> Option<usize> {
        let len = name_len(rdata, from)?;
        out[from..from + len].make_ascii_lowercase();
        Some(from + len)
    };
    let _ = match t {
        // NS, MD, MF, CNAME, MB, MG, MR, PTR, DNAME.
        2 | 3 | 4 | 5 | 7 | 8 | 9 | 12 | 39 => lower(0),
        // SOA, MINFO, RP: two names.
        6 | 14 | 17 => lower(0).and_then(&mut lower),
        // MX, AFSDB, RT, KX: a preference, then a name.
        15 | 18 | 21 | 36 => lower(2),
        // PX: a preference, then two names.
        26 => lower(2).and_then(&mut lower),
        // SRV: priority, weight, port, target.
        33 => lower(6),
        // NAPTR: order, preference, three character strings, replacement.
        35 => {
            let mut at = 4;
            for _ in 0..3 {
                at += 1 + usize::from(*rdata.get(at).unwrap_or(&0));
            }
            lower(at)
        }
        _ => None,
    };
    out
}

/// The NSEC type bit maps field for `types` (RFC 4034 §4.1.2).
pub fn type_bitmap(types: &[u16]) -> Vec<u8> {
    let mut types = types.to_vec();
    types.sort_unstable();
    types.dedup();
    let mut out = Vec::new();
    let mut window: Option<(u8, [u8; 32])> = None;
    let flush = |out: &mut Vec<u8>, window: &Option<(u8, [u8; 32])>| {
        if let Some((number, bits)) = window {
            let len = bits.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            out.push(*number);
            out.push(len as u8);
            out.extend_from_slice(&bits[..len]);
        }
    };
    for t in types {
        let number = (t >> 8) as u8;
        if window.as_ref().is_none_or(|(n, _)| *n != number) {
            flush(&mut out, &window);
            window = Some((number, [0; 32]));
        }
        let bits = &mut window.as_mut().expect("set above").1;
        let low = (t & 0xff) as usize;
        bits[low / 8] |= 0x80 >> (low % 8);
    }
    flush(&mut out, &window);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_tells_the_same_data_read_again_from_changed_data() {
        let origin = hickory_proto::rr::Name::from_ascii("example.com.").unwrap();
        let compile =
            |text: &str| crate::zone::parse(text, std::path::Path::new("t.zone"), &origin).unwrap();
        let zone = "$TTL 3600\n@ SOA ns1 h 1 7200 900 1209600 300\n@ NS ns1\n\
                    ns1 A 192.0.2.1\nwww A 192.0.2.2\n";
        let digest = ZoneDigest::of(&compile(zone));
        // The same records in another order, with a comment: the signatures still fit.
        let reordered = "$TTL 3600\n; moved\nwww A 192.0.2.2\n@ SOA ns1 h 1 7200 900 1209600 300\n\
                         ns1 A 192.0.2.1\n@ NS ns1\n";
        assert_eq!(ZoneDigest::of(&compile(reordered)), digest);
        for changed in [
            zone.replace("192.0.2.2", "192.0.2.3"),
            zone.replace("www", "web"),
            zone.replace("h 1 ", "h 2 "),
            format!("{zone}mail A 192.0.2.4\n"),
        ] {
            assert_ne!(ZoneDigest::of(&compile(&changed)), digest, "{changed}");
        }
    }

    #[test]
    fn the_nsec3_chain_holds_every_name_with_data_and_each_empty_non_terminal_above_one() {
        let origin = hickory_proto::rr::Name::from_ascii("example.com.").unwrap();
        // `y.z` is empty above `x.y.z`; glue below `sub` is in no chain; `old.e1` holds
        // only an NSEC the file carried, so it goes, and `e1`, which only it made, too.
        let text = "$TTL 3600\n@ SOA ns1 h 1 7200 900 1209600 300\n@ NS ns1\n\
                    ns1 A 192.0.2.1\nx.y.z TXT \"deep\"\nsub NS ns.sub\nns.sub A 192.0.2.5\n\
                    old.e1 NSEC ns1 A\n";
        let zone = crate::zone::parse(text, std::path::Path::new("t.zone"), &origin).unwrap();
        let policy = DnssecPolicy {
            algorithm: super::super::key::Algorithm::Ed25519,
            denial: Denial::Nsec3,
            ..DnssecPolicy::default()
        };
        let tmp = tempfile::tempdir().unwrap();
        let now = 1_800_000_000;
        let (_dir, keys) = super::super::keydir::open_and_advance(
            &tmp.path().join("keys"),
            "example.com",
            policy.algorithm,
            &key_timing(&zone, &policy),
            now,
        )
        .unwrap();
        let apex = keys.lifecycle.apex(now);
        let signed = sign_zone(zone, keys, &apex, &policy, now).unwrap().zone;

        let params = Nsec3Params::default();
        let mut expected: Vec<Box<[u8]>> = ["", "ns1", "x.y.z", "y.z", "z", "sub"]
            .iter()
            .map(|name| {
                let name = super::super::wire(&format!("{name}.example.com"));
                nsec3_owner(&nsec3_hash(&name, &params), &signed.apex).into()
            })
            .collect();
        expected.sort();
        let chain = signed.signed().unwrap().nsec3_entries();
        let owners: Vec<Box<[u8]>> = chain.iter().map(|e| e.owner.clone()).collect();
        assert_eq!(owners, expected);
        // Each an NSEC3 then its RRSIG, the last pointing back to the first.
        for entry in chain {
            let types: Vec<u16> = Records(&entry.records)
                .map(|r| u16::from_be_bytes([r[0], r[1]]))
                .collect();
            assert_eq!(types, [dnssec_rtype::NSEC3, rtype::RRSIG]);
        }
        let next = |entry: &DenialEntry| Records(&entry.records).next().unwrap()[16..36].to_vec();
        let first = super::super::nsec3_label_hash(chain[0].label()).unwrap();
        assert_eq!(next(chain.last().unwrap()), first);
        for name in ["old.e1", "e1"] {
            let name = super::super::wire(&format!("{name}.example.com"));
            assert!(signed.node(&name).is_none(), "{name:?}");
        }
    }

    #[test]
    fn type_bitmap_of_rfc_4034_example() {
        // RFC 4034 §4.3: A MX RRSIG NSEC TYPE1234.
        let bitmap = type_bitmap(&[1, 15, 46, 47, 1234]);
        // Window 0: 6 octets; window 4: 27 octets, the last with bit 2 set (1234 & 0xff
        // is 210, octet 26).
        let mut expected = vec![0x00, 0x06, 0x40, 0x01, 0x00, 0x00, 0x00, 0x03, 0x04, 0x1b];
        expected.extend([0u8; 26]);
        expected.push(0x20);
        assert_eq!(bitmap, expected);
    }
}
