//! The signatures of every answer a site's tasks can give in a signed zone whose ZSK
//! lbdns holds (SPEC §11), made when the site's tasks compile, never per query.
//!
//! A task answers a set of origins of one family from one group of its chain: health,
//! the client's region and chance decide which, but every such set is a subset of 1 to
//! `answers` of the group's origins of that family. Each subset is signed once, and the
//! query path finds the signature of the set it picked by the set's rank in the
//! combinatorial number system: arithmetic over the origins' places, no search and no
//! allocation. The RRsets are few for the groups tasks have (a group of 8 origins
//! answering 2 has 36), and a site's tasks have at most [`MAX_SIGNED_RRSETS`].
//!
//! The names tasks make exist join the zone's NSEC or NSEC3 chain: the NSECs (NSEC3s)
//! at task names (and, for NSEC3, their empty non-terminals) and before the names (hashes)
//! the zone does not have are made and signed here, and the lookup reads them over the
//! zone's own ([`super::signed`]).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use super::data::ZoneData;
use super::signed::DenialEntry;
use crate::dnssec::sign::{SigningSession, nsec3_owner, push_record, type_bitmap};
use crate::dnssec::{
    self, HASH_LABEL_LEN, Nsec3Params, canonical_cmp, nsec3_label, nsec3_label_hash, nsec3_rdata,
};
use crate::select::Family;
use crate::site::MAX_ANSWERS;
use crate::wire::{Records, WireName, rtype};

/// Most RRsets a site's tasks may need signed: each is signed at every compile that
/// changes it, and kept in memory for as long as the tasks are effective.
pub const MAX_SIGNED_RRSETS: usize = 4096;

/// The RRSIG of every set of origins a group of a task's chain can answer with.
pub struct SubsetSignatures {
    /// Each origin's place among the group's origins of its family; `NO_PLACE` for one
    /// that never answers.
    place: Box<[u16]>,
    /// By family, in [`family_index`] order.
    families: [Sets; 3],
    /// The RRSIG records (type..RDATA) of each set, by rank.
    rrsigs: Box<[Box<[u8]>]>,
}

const NO_PLACE: u16 = u16::MAX;

/// The sets of one family: how many origins it has and, by set size, where the sets of
/// that size start in `rrsigs` (`start[k]` for size `k`; `start[0]` is unused).
#[derive(Clone, Copy, Default)]
struct Sets {
    largest: usize,
    start: [u32; MAX_ANSWERS as usize + 1],
}

fn family_index(family: Family) -> usize {
    match family {
        Family::V4 => 0,
        Family::V6 => 1,
        Family::Name => 2,
    }
}

/// The family a compiled origin record (type..RDATA) answers.
fn family_of(record: &[u8]) -> Option<Family> {
    match u16::from_be_bytes([record[0], record[1]]) {
        rtype::A => Some(Family::V4),
        rtype::AAAA => Some(Family::V6),
        rtype::CNAME => Some(Family::Name),
        _ => None,
    }
}

/// n choose k, saturating: a count past `u64::MAX` is past any limit.
fn binomial(n: u64, k: u64) -> u64 {
    if k > n {
        return 0;
    }
    let mut r: u128 = 1;
    for j in 0..k {
        r = r.saturating_mul(u128::from(n - j)) / u128::from(j + 1);
    }
    u64::try_from(r).unwrap_or(u64::MAX)
}

/// The rank of a set of `places` (ascending) among the sets of its size: Σ C(c_i, i+1).
fn rank_within(places: &[u16]) -> u64 {
    places
        .iter()
        .enumerate()
        .map(|(i, &c)| binomial(u64::from(c), i as u64 + 1))
        .sum()
}

/// How many RRsets signing a group's answers takes: the sets of 1..=`answers` of each
/// family's origins, for the compiled origin `records`.
pub fn rrsets_needed(records: &[Option<Box<[u8]>>], answers: u32) -> u64 {
    let mut counts = [0u64; 3];
    for record in records.iter().flatten() {
        if let Some(family) = family_of(record) {
            counts[family_index(family)] += 1;
        }
    }
    counts
        .iter()
        .flat_map(|&n| (1..=u64::from(answers).min(n)).map(move |k| binomial(n, k)))
        .fold(0u64, u64::saturating_add)
}

impl SubsetSignatures {
    /// Signs every set of 1..=`answers` of the origins whose compiled `records` a group
    /// has, as the RRset of the task at `owner`. The caller checked the count with
    /// [`rrsets_needed`].
    pub fn sign(
        owner: &[u8],
        records: &[Option<Box<[u8]>>],
        answers: u32,
        session: &mut SigningSession<'_>,
    ) -> Self {
        let mut members: [Vec<u16>; 3] = Default::default();
        let mut place = vec![NO_PLACE; records.len()];
        for (origin, record) in records.iter().enumerate() {
            let Some(family) = record.as_deref().and_then(family_of) else {
                continue;
            };
            let list = &mut members[family_index(family)];
            place[origin] = u16::try_from(list.len()).expect("fewer than 65535 origins");
            list.push(u16::try_from(origin).expect("fewer than 65535 origins"));
        }
        let mut families = [Sets::default(); 3];
        let mut rrsigs: Vec<Box<[u8]>> = Vec::new();
        let mut rrset = Vec::new();
        for (sets, members) in families.iter_mut().zip(&members) {
            let n = members.len();
            sets.largest = (answers as usize).min(n);
            for k in 1..=sets.largest {
                sets.start[k] = u32::try_from(rrsigs.len()).expect("a bounded count");
                let base = rrsigs.len();
                let count = binomial(n as u64, k as u64) as usize;
                rrsigs.resize(base + count, Box::default());
                // Every k-subset of the places 0..n, ascending within each.
                let mut set: Vec<u16> = (0..k as u16).collect();
                loop {
                    rrset.clear();
                    for &p in &set {
                        let origin = usize::from(members[usize::from(p)]);
                        rrset.extend_from_slice(records[origin].as_deref().expect("a member"));
                    }
                    let rtype = u16::from_be_bytes([rrset[0], rrset[1]]);
                    rrsigs[base + rank_within(&set) as usize] = session.sign(owner, rtype, &rrset);
                    // The next subset in lexicographic order.
                    let Some(i) = (0..k).rev().find(|&i| usize::from(set[i]) < n - k + i) else {
                        break;
                    };
                    set[i] += 1;
                    for j in i + 1..k {
                        set[j] = set[j - 1] + 1;
                    }
                }
            }
        }
        Self {
            place: place.into(),
            families,
            rrsigs: rrsigs.into(),
        }
    }

    /// The RRSIG records over the answer made of the `picked` origins of `family`.
    pub fn of(&self, family: Family, picked: &[u16]) -> Option<&[u8]> {
        let sets = &self.families[family_index(family)];
        let k = picked.len();
        if k == 0 || k > sets.largest {
            return None;
        }
        let mut places = [0u16; MAX_ANSWERS as usize];
        for (place, &origin) in places.iter_mut().zip(picked) {
            *place = *self.place.get(usize::from(origin))?;
            if *place == NO_PLACE {
                return None;
            }
        }
        let places = &mut places[..k];
        places.sort_unstable();
        let rank = u64::from(sets.start[k]) + rank_within(places);
        self.rrsigs
            .get(usize::try_from(rank).ok()?)
            .map(|rrsig| &rrsig[..])
    }
}

/// The NSEC records the names of a site's tasks make in `zone`'s chain (`owners`, in
/// canonical order), each with its RRSIG, in canonical order: at each task's name (the
/// zone's types there, but the A, AAAA and CNAME the task hides, and the task's
/// `types`), and at the name before each task name the zone has no NSEC for (its next
/// name changes). `names` is each task name (lowercased wire) with the types it answers.
pub fn nsec_chain(
    zone: &ZoneData,
    owners: &[Box<[u8]>],
    names: &[(Box<[u8]>, Vec<u16>)],
    nsec_ttl: u32,
    session: &mut SigningSession<'_>,
) -> Box<[DenialEntry]> {
    let cmp = |a: &[u8], b: &[u8]| canonical_cmp(a, b);
    let in_zone = |name: &[u8]| owners.binary_search_by(|o| cmp(o, name)).is_ok();
    let mut added: Vec<&[u8]> = names
        .iter()
        .map(|(n, _)| &n[..])
        .filter(|n| !in_zone(n))
        .collect();
    added.sort_by(|a, b| cmp(a, b));
    added.dedup();
    let zone_owners: Vec<&[u8]> = owners.iter().map(|o| &o[..]).collect();
    let mut changed: Vec<Vec<u8>> = names.iter().map(|(n, _)| n.to_vec()).collect();
    for name in &added {
        let previous = pick(
            before(&zone_owners, name),
            before(&added, name),
            Ordering::Greater,
        )
        .or_else(|| {
            pick(
                zone_owners.last().copied(),
                added.last().copied(),
                Ordering::Greater,
            )
        });
        changed.extend(previous);
    }
    changed.sort_by(|a, b| cmp(a, b));
    changed.dedup();
    let mut entries = Vec::with_capacity(changed.len());
    for owner in changed {
        let next = pick(
            after(&zone_owners, &owner),
            after(&added, &owner),
            Ordering::Less,
        )
        .or_else(|| {
            pick(
                zone_owners.first().copied(),
                added.first().copied(),
                Ordering::Less,
            )
        })
        .expect("the chain has the task's name");
        let mut types = zone_types(zone, &owner);
        if let Some((_, answered)) = names.iter().find(|(n, _)| n[..] == owner[..]) {
            types.retain(|t| !matches!(*t, rtype::A | rtype::AAAA | rtype::CNAME));
            types.extend(answered);
        }
        types.extend([rtype::RRSIG, rtype::NSEC]);
        let mut rdata = next;
        rdata.extend_from_slice(&type_bitmap(&types));
        let mut records = Vec::new();
        push_record(&mut records, rtype::NSEC, nsec_ttl, &rdata);
        let rrsig = session.sign(&owner, rtype::NSEC, &records);
        records.extend_from_slice(&rrsig);
        entries.push(DenialEntry {
            owner: owner.into(),
            records: records.into(),
        });
    }
    entries.into()
}

/// The NSEC3 records the names of a site's tasks make in the NSEC3 chain of `signed`
/// (with `params`), each with its RRSIG, in hash order: at each task's name (as for
/// NSEC: the zone's types there, but the A, AAAA and CNAME the task hides, and the
/// task's `types`), at each empty non-terminal above one the zone does not have (no
/// types: RFC 5155 §7.1 gives them an NSEC3), and at the hash before each hash the zone
/// does not have (its next hashed owner changes). The zone's chain has no opt-out (a
/// zone signed elsewhere with opt-out gets no task), so every record has flags 0.
pub fn nsec3_chain(
    zone: &ZoneData,
    chain: &[DenialEntry],
    params: &Nsec3Params,
    names: &[(Box<[u8]>, Vec<u16>)],
    nsec_ttl: u32,
    session: &mut SigningSession<'_>,
) -> Box<[DenialEntry]> {
    // Each name's hash label, with the types a task answers there (`None`: an empty
    // non-terminal of a task name).
    let mut hashed: BTreeMap<[u8; HASH_LABEL_LEN], Option<&[u16]>> = BTreeMap::new();
    for (name, types) in names {
        hashed.insert(nsec3_label(name, params), Some(types));
        let name = WireName::from_lowercase(name).expect("a task's hostname");
        for n in zone.apex_labels + 1..name.labels() {
            hashed
                .entry(nsec3_label(name.suffix(n), params))
                .or_insert(None);
        }
    }
    let in_zone = |label: &[u8]| chain.binary_search_by(|e| e.label().cmp(label)).ok();
    let added: Vec<&[u8]> = hashed
        .keys()
        .map(|l| &l[..])
        .filter(|l| in_zone(l).is_none())
        .collect();
    let zone_labels = |i: usize| chain[i].label();
    // Made: the NSEC3 of each task name and of each hash the zone does not have...
    let mut changed: BTreeSet<Vec<u8>> = hashed
        .iter()
        .filter(|(label, task)| task.is_some() || in_zone(&label[..]).is_none())
        .map(|(label, _)| label.to_vec())
        .collect();
    // ...and of the hash before each added one: of the zone's and the added, the greater;
    // before them all, the last.
    for label in &added {
        let of_zone = hash_before(chain.len(), zone_labels, label);
        let of_tasks = hash_before(added.len(), |i| added[i], label);
        let previous = match (of_zone, of_tasks) {
            (None, None) => (chain.last().map(DenialEntry::label), added.last().copied()),
            found => found,
        };
        changed.extend(
            match previous {
                (Some(z), Some(t)) => Some(z.max(t)),
                (z, t) => z.or(t),
            }
            .map(<[u8]>::to_vec),
        );
    }
    let mut entries = Vec::with_capacity(changed.len());
    for label in changed {
        let of_zone = hash_after(chain.len(), zone_labels, &label);
        let of_tasks = hash_after(added.len(), |i| added[i], &label);
        let next = match (of_zone, of_tasks) {
            (None, None) => (
                chain.first().map(DenialEntry::label),
                added.first().copied(),
            ),
            found => found,
        };
        let next = match next {
            (Some(z), Some(t)) => z.min(t),
            (z, t) => z.or(t).expect("the chain has the task's name"),
        };
        let next = nsec3_label_hash(next).expect("an NSEC3 owner is a hash");
        let mut types = in_zone(&label).map_or_else(Vec::new, |i| nsec3_types(&chain[i]));
        if let Some(Some(answered)) = hashed.get(&label[..]) {
            types.retain(|t| !matches!(*t, rtype::A | rtype::AAAA | rtype::CNAME));
            types.extend(answered.iter().copied());
            types.push(rtype::RRSIG);
        }
        let hash = nsec3_label_hash(&label).expect("a hash label");
        let owner = nsec3_owner(&hash, &zone.apex);
        let mut records = Vec::new();
        let rdata = nsec3_rdata(0, params, &next, &types);
        push_record(&mut records, dnssec::rtype::NSEC3, nsec_ttl, &rdata);
        let rrsig = session.sign(&owner, dnssec::rtype::NSEC3, &records);
        records.extend_from_slice(&rrsig);
        entries.push(DenialEntry {
            owner: owner.into(),
            records: records.into(),
        });
    }
    entries.into()
}

/// The types the NSEC3 record of `entry` lists.
fn nsec3_types(entry: &DenialEntry) -> Vec<u16> {
    let Some(record) = Records(&entry.records).next() else {
        return Vec::new();
    };
    let rdata = &record[10..];
    // Algorithm, flags, iterations, salt, hash, then the type bit maps (RFC 5155 §3.2).
    let salt = usize::from(rdata.get(4).copied().unwrap_or_default());
    let hash = usize::from(rdata.get(5 + salt).copied().unwrap_or_default());
    bitmap_types(rdata, 6 + salt + hash)
}

/// The last of `len` keys in ascending order (`key(i)` the i-th) before `label`.
fn hash_before<'l>(len: usize, key: impl Fn(usize) -> &'l [u8], label: &[u8]) -> Option<&'l [u8]> {
    let at = partition_point(len, |i| key(i) < label);
    at.checked_sub(1).map(key)
}

/// The first of `len` keys in ascending order (`key(i)` the i-th) after `label`.
fn hash_after<'l>(len: usize, key: impl Fn(usize) -> &'l [u8], label: &[u8]) -> Option<&'l [u8]> {
    let at = partition_point(len, |i| key(i) <= label);
    (at < len).then(|| key(at))
}

/// The first index of `0..len` where `pred` is false, `pred` true then false.
fn partition_point(len: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut high) = (0, len);
    while low < high {
        let mid = low + (high - low) / 2;
        match pred(mid) {
            true => low = mid + 1,
            false => high = mid,
        }
    }
    low
}

/// Of two names that may be missing, the one that compares `want` to the other.
fn pick(a: Option<&[u8]>, b: Option<&[u8]>, want: Ordering) -> Option<Vec<u8>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if canonical_cmp(a, b) == want { a } else { b }.to_vec()),
        (a, b) => a.or(b).map(<[u8]>::to_vec),
    }
}

/// The last name of `list` (in canonical order) before `name`.
fn before<'l>(list: &[&'l [u8]], name: &[u8]) -> Option<&'l [u8]> {
    let at = list.partition_point(|o| canonical_cmp(o, name) == Ordering::Less);
    at.checked_sub(1).map(|i| list[i])
}

/// The first name of `list` (in canonical order) after `name`.
fn after<'l>(list: &[&'l [u8]], name: &[u8]) -> Option<&'l [u8]> {
    let at = list.partition_point(|o| canonical_cmp(o, name) != Ordering::Greater);
    list.get(at).copied()
}

/// The types the zone's NSEC at `owner` lists; none where it has no NSEC.
fn zone_types(zone: &ZoneData, owner: &[u8]) -> Vec<u16> {
    let Some(record) = zone
        .node(owner)
        .and_then(|node| node.rrset(rtype::NSEC))
        .and_then(|rrset| Records(rrset).next())
    else {
        return Vec::new();
    };
    let rdata = &record[10..];
    // The next owner name, uncompressed, then the type bit maps (RFC 4034 §4.1).
    let mut at = 0;
    while let Some(&len) = rdata.get(at) {
        at += 1 + usize::from(len);
        if len == 0 {
            break;
        }
    }
    bitmap_types(rdata, at)
}

/// The types the bit maps from `at` in `rdata` list (RFC 4034 §4.1.2).
fn bitmap_types(rdata: &[u8], mut at: usize) -> Vec<u16> {
    let mut types = Vec::new();
    while let (Some(&window), Some(&len)) = (rdata.get(at), rdata.get(at + 1)) {
        let bits = rdata
            .get(at + 2..at + 2 + usize::from(len))
            .unwrap_or_default();
        for (i, byte) in bits.iter().enumerate() {
            for bit in 0..8 {
                if byte & (0x80 >> bit) != 0 {
                    types.push(u16::from(window) << 8 | (i * 8 + bit) as u16);
                }
            }
        }
        at += 2 + usize::from(len);
    }
    types
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_number_every_subset_once() {
        // Every k-subset of 6 places, k = 1..=3, ranks into 0..C(6,k) without collision.
        for k in 1..=3usize {
            let mut seen = vec![false; binomial(6, k as u64) as usize];
            for mask in 0u32..64 {
                if mask.count_ones() as usize != k {
                    continue;
                }
                let set: Vec<u16> = (0..6).filter(|b| mask & (1 << b) != 0).collect();
                let rank = rank_within(&set) as usize;
                assert!(!seen[rank], "{set:?}");
                seen[rank] = true;
            }
            assert!(seen.iter().all(|&s| s));
        }
    }

    #[test]
    fn counts_the_sets_of_each_family() {
        let a = |last: u8| Some(vec![0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, last].into());
        let aaaa = Some({
            let mut r = vec![0, 28, 0, 1, 0, 0, 0, 60, 0, 16];
            r.extend([0u8; 16]);
            r.into()
        });
        // 4 IPv4 origins answering 2: 4 + 6 sets; 1 IPv6 origin: 1; an origin with a
        // port: none.
        let records = vec![a(1), a(2), a(3), a(4), aaaa, None];
        assert_eq!(rrsets_needed(&records, 2), 11);
        assert_eq!(binomial(64, 16), 488_526_937_079_580);
        assert_eq!(binomial(3, 5), 0);
    }
}
