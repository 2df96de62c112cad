//! A region group's scope table (SPEC §12 "ECS scope is exact"), made at load so that
//! a query does one binary search per level it consults.
//!
//! The levels that depend on the client's address are subnet, ASN, country and
//! continent. For each, the table holds runs of addresses that see the same origins at
//! that level and at every level before it: adjacent GeoIP and ASN networks and subnet
//! rules that lead to the same origins are one run, whatever their country, AS or rule.
//! A query answered from a level gets, as its scope, the widest aligned prefix around
//! the client inside its run of that level: every address of that prefix is answered
//! from the same origins, and a prefix one bit wider holds an address that is not.

use ipnet::IpNet;

use super::Candidates;
use crate::geoip::GeoIp;
use crate::runs::{AddrInt, Address, Runs};

/// Levels that depend on the client's address: subnet, ASN, country, continent.
pub(super) const ADDRESS_LEVELS: usize = 4;

/// The scope table of one family's candidates.
#[derive(Debug)]
pub(super) struct ScopeTable {
    /// Origin sets by id; id 0 is the empty set (the level does not apply).
    sets: Vec<Vec<u16>>,
    v4: Depths<u32>,
    v6: Depths<u128>,
}

/// Per address level, runs valued by the id of that level's origin set, each a run of
/// addresses that see the same sets at that level and the ones before; `None` when the
/// level is empty for every address (its runs are the level's before).
#[derive(Debug)]
struct Depths<A>([Option<Runs<A, u16>>; ADDRESS_LEVELS]);

/// The origin set ids of each address level, for one run of addresses.
type Key = [u16; ADDRESS_LEVELS];

impl ScopeTable {
    /// The table of `candidates` (sorted as [`super::CompiledGroup::new`] leaves them),
    /// with the levels of `geoip`'s databases when the group has keys for them.
    pub(super) fn new(candidates: &Candidates, geoip: Option<&GeoIp>) -> Self {
        let mut sets: Vec<Vec<u16>> = vec![Vec::new()];
        let mut id_of = |members: &[u16]| -> u16 {
            let i = sets.iter().position(|s| s == members).unwrap_or_else(|| {
                sets.push(members.to_vec());
                sets.len() - 1
            });
            u16::try_from(i).expect("fewer than 2^16 origin sets")
        };
        let rules: Vec<(IpNet, u16)> = candidates
            .subnets
            .iter()
            .map(|(net, members)| (*net, id_of(members)))
            .collect();
        let asns: Vec<(u32, u16)> = candidates
            .asns
            .iter()
            .map(|(asn, members)| (*asn, id_of(members)))
            .collect();
        let countries: Vec<_> = candidates
            .countries
            .iter()
            .map(|(c, members)| (*c, id_of(members)))
            .collect();
        let continents: Vec<_> = candidates
            .continents
            .iter()
            .map(|(c, members)| (*c, id_of(members)))
            .collect();
        let asn_db = geoip.filter(|db| candidates.uses_asn() && db.has_asn());
        let country_db = geoip.filter(|db| candidates.uses_geoip() && db.has_country());
        let asn_id = |asn: Option<u32>| {
            asn.and_then(|a| asns.binary_search_by_key(&a, |(x, _)| *x).ok())
                .map_or(0, |i| asns[i].1)
        };
        let place_ids = |(country, continent): crate::geoip::Place| {
            let country = country
                .and_then(|c| countries.binary_search_by_key(&c, |(x, _)| *x).ok())
                .map_or(0, |i| countries[i].1);
            let continent = continent
                .and_then(|c| continents.iter().find(|(x, _)| *x == c))
                .map_or(0, |(_, id)| *id);
            (country, continent)
        };
        let v4 = Depths::new(
            subnet_runs(&rules, |net| match net {
                IpNet::V4(n) => Some((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(_) => None,
            }),
            asn_db.map(|db| db.asn_runs().v4.map(asn_id)),
            country_db.map(|db| db.country_runs().v4.map(place_ids)),
        );
        let v6 = Depths::new(
            subnet_runs(&rules, |net| match net {
                IpNet::V6(n) => Some((u128::from(n.network()), u128::from(n.broadcast()))),
                IpNet::V4(_) => None,
            }),
            asn_db.map(|db| db.asn_runs().v6.map(asn_id)),
            country_db.map(|db| db.country_runs().v6.map(place_ids)),
        );
        Self { sets, v4, v6 }
    }

    /// The origins of address level `level` (0: subnet .. 3: continent) for `addr`, and
    /// the widest prefix around `addr` over which that level and those before it stay
    /// the same.
    pub(super) fn lookup(&self, level: usize, addr: AddrInt) -> (&[u16], u8) {
        let (id, scope) = match addr {
            AddrInt::V4(a) => self.v4.lookup(level, a),
            AddrInt::V6(a) => self.v6.lookup(level, a),
        };
        (&self.sets[usize::from(id)], scope)
    }

    /// Runs held, and their heap bytes (for the benchmarks' figures).
    pub(super) fn size(&self) -> (usize, usize) {
        let (a, b) = self.v4.size();
        let (c, d) = self.v6.size();
        (a + c, b + d)
    }
}

impl<A: Address> Depths<A> {
    fn new(
        subnets: Runs<A, u16>,
        asns: Option<Runs<A, u16>>,
        places: Option<Runs<A, (u16, u16)>>,
    ) -> Self {
        let mut keys: Runs<A, Key> = subnets.map(|s| [s, 0, 0, 0]);
        let mut depths: [Option<Runs<A, u16>>; ADDRESS_LEVELS] = [Some(subnets), None, None, None];
        let mut refine_with = |level: usize, values: Runs<A, u16>| {
            // A level empty everywhere adds nothing: the level before answers for it.
            if values.len() == 1 && values.iter().all(|(_, id)| id == 0) {
                return;
            }
            keys = keys.refine(&values, |mut key, v| {
                key[level] = v;
                key
            });
            depths[level] = Some(keys.project(|key| key[level]));
        };
        if let Some(asns) = asns {
            refine_with(1, asns);
        }
        if let Some(places) = places {
            refine_with(2, places.map(|(country, _)| country));
            refine_with(3, places.map(|(_, continent)| continent));
        }
        Self(depths)
    }

    fn lookup(&self, level: usize, addr: A) -> (u16, u8) {
        match &self.0[level] {
            Some(runs) => runs.lookup(addr),
            None if level == 0 => (0, 0),
            None => (0, self.lookup(level - 1, addr).1),
        }
    }

    fn size(&self) -> (usize, usize) {
        self.0.iter().flatten().fold((0, 0), |(n, bytes), runs| {
            (n + runs.len(), bytes + runs.heap_bytes())
        })
    }
}

/// Runs of the subnet level: each address valued by the most specific rule that holds
/// it (`rules` come most specific first), 0 outside every rule.
///
/// # Arguments
///
/// * `range` - a rule's first and last address, when it is of this family.
fn subnet_runs<A: Address>(
    rules: &[(IpNet, u16)],
    range: impl Fn(&IpNet) -> Option<(A, A)>,
) -> Runs<A, u16> {
    let ranges: Vec<(A, A, u16)> = rules
        .iter()
        .filter_map(|(net, id)| range(net).map(|(first, last)| (first, last, *id)))
        .collect();
    // Where the answer may change: the start of a rule and the address after it.
    let mut starts = vec![A::ZERO];
    for &(first, last, _) in &ranges {
        starts.push(first);
        if last < A::MAX {
            starts.push(A::from_u128(last.to_u128() + 1));
        }
    }
    starts.sort_unstable();
    starts.dedup();
    Runs::from_starts(starts.into_iter().map(|start| {
        let rule = ranges
            .iter()
            .find(|&&(first, last, _)| first <= start && start <= last);
        (start, rule.map_or(0, |&(_, _, id)| id))
    }))
}
