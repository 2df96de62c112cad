//! One address family's space cut into runs: each run is the addresses from its start up
//! to the next run's start, all with the same value. The GeoIP databases are read into
//! runs once ([`crate::geoip::GeoIp::country_runs`]), and each region group's scope table
//! is made of runs ([`crate::select`]); a lookup is a binary search, and the widest
//! aligned prefix around an address inside its run is the ECS scope (SPEC §12).

use std::net::IpAddr;

/// An address as an unsigned integer of its family's width.
pub trait Address: Copy + Ord + std::fmt::Debug {
    /// Bits in the address: 32 or 128.
    const BITS: u8;
    const ZERO: Self;
    const MAX: Self;
    fn from_u128(value: u128) -> Self;
    fn to_u128(self) -> u128;
    /// Leading bits `self` and `other` share.
    fn common_prefix_len(self, other: Self) -> u8;
}

impl Address for u32 {
    const BITS: u8 = 32;
    const ZERO: Self = 0;
    const MAX: Self = u32::MAX;
    fn from_u128(value: u128) -> Self {
        value as u32
    }
    fn to_u128(self) -> u128 {
        u128::from(self)
    }
    fn common_prefix_len(self, other: Self) -> u8 {
        (self ^ other).leading_zeros() as u8
    }
}

impl Address for u128 {
    const BITS: u8 = 128;
    const ZERO: Self = 0;
    const MAX: Self = u128::MAX;
    fn from_u128(value: u128) -> Self {
        value
    }
    fn to_u128(self) -> u128 {
        self
    }
    fn common_prefix_len(self, other: Self) -> u8 {
        (self ^ other).leading_zeros() as u8
    }
}

/// An address of either family as the integer of its family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrInt {
    V4(u32),
    V6(u128),
}

impl From<IpAddr> for AddrInt {
    fn from(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(a) => AddrInt::V4(u32::from(a)),
            IpAddr::V6(a) => AddrInt::V6(u128::from(a)),
        }
    }
}

/// Runs covering the whole space of `A`, in address order; the first starts at 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Runs<A, V> {
    starts: Vec<A>,
    values: Vec<V>,
}

impl<A: Address, V: Copy + PartialEq> Runs<A, V> {
    /// One run: every address has `value`.
    pub fn constant(value: V) -> Self {
        Self {
            starts: vec![A::ZERO],
            values: vec![value],
        }
    }

    /// Runs from disjoint ranges `[first, last]` in address order; addresses no range
    /// holds have `gap`. Neighbours with equal values are one run.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (A, A, V)>, gap: V) -> Self {
        let mut runs = RunsBuilder::new();
        // The first address not yet covered; `None` once the space is.
        let mut next = Some(A::ZERO);
        for (first, last, value) in ranges {
            let Some(at) = next else { break };
            if first < at {
                continue; // overlaps what came before: the first range holding it wins
            }
            if first > at {
                runs.push(at, gap);
            }
            runs.push(first, value);
            next = (last < A::MAX).then(|| A::from_u128(last.to_u128() + 1));
        }
        if let Some(at) = next {
            runs.push(at, gap);
        }
        runs.finish()
    }

    /// Runs from `(start, value)` in address order, the first at 0; neighbours with
    /// equal values merge.
    pub fn from_starts(starts: impl IntoIterator<Item = (A, V)>) -> Self {
        let mut runs = RunsBuilder::new();
        for (start, value) in starts {
            runs.push(start, value);
        }
        let runs = runs.finish();
        debug_assert_eq!(runs.starts.first(), Some(&A::ZERO));
        runs
    }

    /// The same runs, each value mapped, neighbours kept apart even when mapped to equal
    /// values: a run still marks where the unmapped value stays the same.
    pub fn project<W: Copy + PartialEq>(&self, f: impl Fn(V) -> W) -> Runs<A, W> {
        Runs {
            starts: self.starts.clone(),
            values: self.values.iter().map(|&v| f(v)).collect(),
        }
    }

    /// The same runs with each value mapped; neighbours mapped to equal values merge.
    pub fn map<W: Copy + PartialEq>(&self, f: impl Fn(V) -> W) -> Runs<A, W> {
        let mut runs = RunsBuilder::new();
        for (start, value) in self.iter() {
            runs.push(start, f(value));
        }
        runs.finish()
    }

    /// The common refinement of `self` and `other`: a run wherever both values stay the
    /// same, valued by `f` of the two (neighbours with equal results merge).
    pub fn refine<W: Copy + PartialEq, X: Copy + PartialEq>(
        &self,
        other: &Runs<A, W>,
        f: impl Fn(V, W) -> X,
    ) -> Runs<A, X> {
        let mut runs = RunsBuilder::new();
        let (mut i, mut j) = (0, 0);
        loop {
            let start = self.starts[i].max(other.starts[j]);
            runs.push(start, f(self.values[i], other.values[j]));
            let (a, b) = (self.starts.get(i + 1), other.starts.get(j + 1));
            match (a, b) {
                (None, None) => break,
                (Some(_), None) => i += 1,
                (None, Some(_)) => j += 1,
                (Some(a), Some(b)) => {
                    if a <= b {
                        i += 1;
                    }
                    if b <= a {
                        j += 1;
                    }
                }
            }
        }
        runs.finish()
    }

    /// Each run's start and value, in address order.
    pub fn iter(&self) -> impl Iterator<Item = (A, V)> + '_ {
        self.starts.iter().copied().zip(self.values.iter().copied())
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.starts.capacity() * size_of::<A>() + self.values.capacity() * size_of::<V>()
    }

    /// The value at `addr`, and the widest aligned prefix around `addr` that lies inside
    /// its run, as a prefix length: no shorter prefix keeps the value the same for every
    /// address it holds.
    pub fn lookup(&self, addr: A) -> (V, u8) {
        let i = self.starts.partition_point(|&s| s <= addr) - 1;
        // A block around `addr` of length p holds x exactly when they share p bits: the
        // block stays in the run when it holds neither the address before the run nor
        // the first after it.
        let mut len = 0;
        let start = self.starts[i];
        if start > A::ZERO {
            let before = A::from_u128(start.to_u128() - 1);
            len = len.max(addr.common_prefix_len(before) + 1);
        }
        if let Some(&after) = self.starts.get(i + 1) {
            len = len.max(addr.common_prefix_len(after) + 1);
        }
        (self.values[i], len)
    }
}

/// Runs built in address order, merging neighbours with equal values.
struct RunsBuilder<A, V> {
    runs: Runs<A, V>,
}

impl<A: Address, V: Copy + PartialEq> RunsBuilder<A, V> {
    fn new() -> Self {
        Self {
            runs: Runs {
                starts: Vec::new(),
                values: Vec::new(),
            },
        }
    }

    fn push(&mut self, start: A, value: V) {
        if self.runs.values.last() == Some(&value) {
            return;
        }
        if self.runs.starts.last() == Some(&start) {
            // An empty run before: the value at `start` is this one.
            self.runs.starts.pop();
            self.runs.values.pop();
            return self.push(start, value);
        }
        self.runs.starts.push(start);
        self.runs.values.push(value);
    }

    fn finish(mut self) -> Runs<A, V> {
        self.runs.starts.shrink_to_fit();
        self.runs.values.shrink_to_fit();
        self.runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_fill_gaps_and_merge_equal_neighbours() {
        let runs = Runs::<u32, u8>::from_ranges([(10, 19, 1), (20, 29, 1), (40, 49, 2)], 0);
        assert_eq!(
            runs.iter().collect::<Vec<_>>(),
            [(0, 0), (10, 1), (30, 0), (40, 2), (50, 0)]
        );
        let full = Runs::<u32, u8>::from_ranges([(0, u32::MAX, 3)], 0);
        assert_eq!(full.iter().collect::<Vec<_>>(), [(0, 3)]);
    }

    #[test]
    fn lookup_gives_the_widest_aligned_block_inside_the_run() {
        // 10.0.0.0/8 is one run; 11.0.0.0/8 another.
        let runs = Runs::<u32, u8>::from_ranges(
            [(0x0a00_0000, 0x0aff_ffff, 1), (0x0b00_0000, 0x0bff_ffff, 2)],
            0,
        );
        assert_eq!(runs.lookup(0x0a01_0203), (1, 8));
        assert_eq!(runs.lookup(0x0b01_0203), (2, 8));
        // 0.0.0.0 .. 9.255.255.255: 0.0.0.0/5 and 8.0.0.0/7.
        assert_eq!(runs.lookup(0x0100_0000), (0, 5));
        assert_eq!(runs.lookup(0x0900_0000), (0, 7));
        assert_eq!(Runs::<u128, u8>::constant(7).lookup(12345), (7, 0));
    }

    #[test]
    fn refine_cuts_where_either_changes() {
        let a = Runs::<u32, u8>::from_ranges([(10, 19, 1)], 0);
        let b = Runs::<u32, u8>::from_ranges([(15, 24, 2)], 0);
        let both = a.refine(&b, |x, y| (x, y));
        assert_eq!(
            both.iter().collect::<Vec<_>>(),
            [
                (0, (0, 0)),
                (10, (1, 0)),
                (15, (1, 2)),
                (20, (0, 2)),
                (25, (0, 0))
            ]
        );
        // Equal results merge.
        let any = a.refine(&b, |x, y| x.max(y) > 0);
        assert_eq!(
            any.iter().collect::<Vec<_>>(),
            [(0, false), (10, true), (25, false)]
        );
    }
}
