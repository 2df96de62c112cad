//! Compact denial of existence (RFC 9824): the NSEC of a denial is made for the name
//! asked, its next name that name's immediate successor, so the zone has no NSEC chain to
//! walk. A name that does not exist gets an NSEC listing only RRSIG, NSEC and NXNAME; a
//! name without the type asked gets one listing the types it has. Wildcard answers are
//! signed as the RRset of the name asked (RFC 9824 §3.3), so they need no proof that no
//! closer name exists.
//!
//! Each such record is signed when first asked for and kept in a table of a fixed number
//! of slots, indexed by a keyed hash of what was signed: a query answered again finds it
//! there with one atomic load and a comparison, no lock and no allocation; a miss signs
//! and replaces whatever the slot held. Random names cannot grow the table, only churn it.

use std::hash::BuildHasher;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::wire::MAX_NAME_LEN;

/// The NXDOMAIN indicator in an NSEC type bitmap (RFC 9824 §2).
pub const NXNAME: u16 = 128;

/// Slots of a zone's table: each holds one signed record (a few hundred bytes), so a
/// zone's table stays under a few megabytes whatever is asked.
pub const SLOTS: usize = 16_384;

/// Longest NSEC RDATA made here: the next name and a bitmap of up to 8 windows of 256
/// types (a name's types span one or two in practice: 0, and 1 for CAA). Kept small:
/// the buffer is on the stack of every compact denial.
pub const MAX_NSEC_RDATA: usize = MAX_NAME_LEN + 1 + 8 * 34;

/// One signed record and what it was made from.
pub struct Entry {
    /// Lowercased wire name.
    owner: Box<[u8]>,
    /// NSEC for a denial, else the type of the RRset signed.
    rtype: u16,
    /// A denial's NSEC RDATA, or the records (type..RDATA each) of the RRset signed.
    content: Box<[u8]>,
    /// When it is made again (a third of its validity left).
    refresh_at: u64,
    /// What goes into a message after the owner: a denial's NSEC record then its RRSIG,
    /// or an RRset's RRSIG (type..RDATA each).
    pub records: Box<[u8]>,
}

impl Entry {
    pub fn new(
        owner: &[u8],
        rtype: u16,
        content: &[u8],
        refresh_at: u64,
        records: Box<[u8]>,
    ) -> Self {
        Self {
            owner: owner.into(),
            rtype,
            content: content.into(),
            refresh_at,
            records,
        }
    }

    /// The lowercased wire name the records are at.
    pub fn owner(&self) -> &[u8] {
        &self.owner
    }

    fn is(&self, owner: &[u8], rtype: u16, content: &[u8]) -> bool {
        self.rtype == rtype && *self.owner == *owner && *self.content == *content
    }
}

/// The signed records of one zone, by slot.
pub struct Cache {
    slots: Box<[ArcSwapOption<Entry>]>,
    /// Seeded per table: which names share a slot is not known from outside.
    hasher: foldhash::fast::RandomState,
}

impl Default for Cache {
    fn default() -> Self {
        Self::new(SLOTS)
    }
}

impl Cache {
    /// A table of `slots` slots (a power of two).
    pub fn new(slots: usize) -> Self {
        debug_assert!(slots.is_power_of_two());
        Self {
            slots: (0..slots).map(|_| ArcSwapOption::empty()).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn slot(&self, owner: &[u8], rtype: u16, content: &[u8]) -> &ArcSwapOption<Entry> {
        let hash = self.hasher.hash_one((owner, rtype, content));
        &self.slots[hash as usize & (self.slots.len() - 1)]
    }

    /// The entry made from `owner`, `rtype` and `content` if the table holds it and it
    /// is not due at `now`.
    pub fn get(&self, owner: &[u8], rtype: u16, content: &[u8], now: u64) -> Option<Arc<Entry>> {
        self.slot(owner, rtype, content)
            .load_full()
            .filter(|e| e.is(owner, rtype, content) && now < e.refresh_at)
    }

    /// Keeps `entry` in its slot, in place of what was there.
    pub fn put(&self, entry: Arc<Entry>) {
        self.slot(&entry.owner, entry.rtype, &entry.content)
            .store(Some(entry));
    }

    /// How many slots hold an entry.
    pub fn filled(&self) -> usize {
        self.slots.iter().filter(|s| s.load().is_some()).count()
    }

    /// How many slots the table has: fixed when it is made.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }
}

/// The NSEC RDATA of a compact denial at `owner` (lowercased wire): the next name, then
/// the bitmap of `types` (sorted, distinct), written into `out`; its length. At a
/// delegation (`cut`) the next name is the owner with a zero octet added to its first
/// label, since `\000.owner` would be in the child zone (RFC 9824 §3.4); elsewhere it is
/// `\000.owner`, the owner's immediate successor (§3.1).
pub fn nsec_rdata(owner: &[u8], cut: bool, types: &[u16], out: &mut [u8; MAX_NSEC_RDATA]) -> usize {
    let mut at = 0;
    let first = usize::from(owner[0]);
    if cut && first < 63 && owner.len() < MAX_NAME_LEN {
        out[0] = owner[0] + 1;
        out[1..1 + first].copy_from_slice(&owner[1..1 + first]);
        out[1 + first] = 0;
        let rest = &owner[1 + first..];
        out[2 + first..2 + first + rest.len()].copy_from_slice(rest);
        at += 2 + first + rest.len();
    } else if owner.len() + 2 <= MAX_NAME_LEN {
        out[..2].copy_from_slice(&[1, 0]);
        out[2..2 + owner.len()].copy_from_slice(owner);
        at += 2 + owner.len();
    } else {
        // No successor of that form fits: the owner itself (a zero-span NSEC) still
        // proves what its bitmap says of it.
        out[..owner.len()].copy_from_slice(owner);
        at += owner.len();
    }
    let mut i = 0;
    while i < types.len() && at + 34 <= out.len() {
        let window = (types[i] >> 8) as u8;
        let mut bits = [0u8; 32];
        let mut len = 0;
        while i < types.len() && (types[i] >> 8) as u8 == window {
            let low = usize::from(types[i] & 0xff);
            bits[low / 8] |= 0x80 >> (low % 8);
            len = len.max(low / 8 + 1);
            i += 1;
        }
        out[at] = window;
        out[at + 1] = len as u8;
        out[at + 2..at + 2 + len].copy_from_slice(&bits[..len]);
        at += 2 + len;
    }
    at
}

/// The distinct types at a name, sorted, on the stack.
pub struct Types {
    types: [u16; 64],
    len: usize,
}

impl Default for Types {
    fn default() -> Self {
        Self {
            types: [0; 64],
            len: 0,
        }
    }
}

impl Types {
    pub fn add(&mut self, t: u16) {
        let list = &self.types[..self.len];
        if let Err(at) = list.binary_search(&t)
            && self.len < self.types.len()
        {
            self.types.copy_within(at..self.len, at + 1);
            self.types[at] = t;
            self.len += 1;
        }
    }

    pub fn remove(&mut self, t: u16) {
        if let Ok(at) = self.types[..self.len].binary_search(&t) {
            self.types.copy_within(at + 1..self.len, at);
            self.len -= 1;
        }
    }

    pub fn as_slice(&self) -> &[u16] {
        &self.types[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dnssec::wire;

    #[test]
    fn next_names_and_bitmap_are_rfc_9824s() {
        let mut out = [0; MAX_NSEC_RDATA];
        // §3.1: a.example.com. NSEC \000.a.example.com. RRSIG NSEC NXNAME
        let mut types = Types::default();
        for t in [NXNAME, 47, 46] {
            types.add(t);
        }
        let len = nsec_rdata(&wire("a.example.com"), false, types.as_slice(), &mut out);
        let mut expected = vec![1, 0];
        expected.extend(wire("a.example.com"));
        // Window 0, 17 octets: RRSIG (46) and NSEC (47) in octet 5, NXNAME (128) in 16.
        expected.extend([
            0,
            17,
            0,
            0,
            0,
            0,
            0,
            0b0000_0011,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0x80,
        ]);
        assert_eq!(&out[..len], &expected[..]);
        // §3.4: sub.example.com. NSEC sub\000.example.com. NS RRSIG NSEC
        let len = nsec_rdata(&wire("sub.example.com"), true, &[2, 46, 47], &mut out);
        let mut expected = vec![4, b's', b'u', b'b', 0];
        expected.extend(wire("example.com"));
        expected.extend([0, 6, 0b0010_0000, 0, 0, 0, 0, 0b0000_0011]);
        assert_eq!(&out[..len], &expected[..]);
    }

    #[test]
    fn types_stay_sorted_and_distinct() {
        let mut types = Types::default();
        for t in [28, 1, 257, 1, 46] {
            types.add(t);
        }
        types.remove(28);
        assert_eq!(types.as_slice(), &[1, 46, 257]);
    }
}
