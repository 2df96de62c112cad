//! Choosing origins for one query (SPEC §4), as a pure function.
//!
//! A group is compiled once at load ([`CompiledGroup::new`]) into candidate sets per
//! record family, each indexed by region level; a region group's scope table is shared
//! with every group compiled from the same region keys and databases ([`ScopeTables`]).
//! A query is then answered in two steps:
//! - [`route`]: which region levels apply to this client, in order (subnet, ASN,
//!   country, continent, default, all), and the ECS scope the levels consulted depend on. It is
//!   deterministic: no health, no randomness, so explain and diff tools can call it alone.
//! - [`pick`]: walk the route's levels to the first with usable origins and draw
//!   `answers` distinct origins by weight, with health as an input.
//!
//! [`select`] is the two in one. [`serving`] comes before both: which group of a task's
//! fallback chain answers (SPEC §12), the first with `min_up` usable origins. Nothing
//! here knows DNS wire types, takes a lock or allocates.
//!
//! The fallback order, applied in passes until one yields an origin:
//! 1. usable (up) origins with a positive weight, level by level;
//! 2. usable origins of weight 0 (drained: a last resort);
//! 3. every origin with a positive weight, up or not (fail open, reported);
//! 4. every origin (a group whose weights are all 0).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use rand::{Rng, RngExt};

mod scope;

use crate::geoip::{Continent, Country, GeoIp};
use crate::runs::AddrInt;
use crate::site::{MAX_ANSWERS, OriginGroup, Policy, Target};
use scope::{ADDRESS_LEVELS, ScopeTable};

/// Which origins a query can use: A draws from IPv4, AAAA from IPv6 origins, and a
/// domain-name group answers CNAME whatever the type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
    Name,
}

/// The client a query is answered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    /// The ECS address when the query had one, else the source address.
    pub addr: IpAddr,
    /// How many leading bits of `addr` are known: the ECS source prefix, or the full length.
    pub source_prefix: u8,
}

/// Origins of one family, indexed by region level.
#[derive(Debug, Default)]
struct Candidates {
    all: Vec<u16>,
    /// Origins without region keys.
    default: Vec<u16>,
    /// Subnet rules, most specific first, each with the origins that list it.
    subnets: Vec<(IpNet, Vec<u16>)>,
    /// Sorted by AS number for binary search.
    asns: Vec<(u32, Vec<u16>)>,
    /// Sorted by country for binary search.
    countries: Vec<(Country, Vec<u16>)>,
    continents: Vec<(Continent, Vec<u16>)>,
    /// The address levels of a region group by client address, with their scopes;
    /// shared by every group compiled from the same region keys ([`ScopeTables`]).
    scopes: Option<Arc<ScopeTable>>,
}

impl Candidates {
    fn uses_geoip(&self) -> bool {
        !(self.countries.is_empty() && self.continents.is_empty())
    }

    fn uses_asn(&self) -> bool {
        !self.asns.is_empty()
    }

    /// All the scope table is made from, besides the databases.
    fn table_key(&self) -> TableKey {
        (
            self.subnets.clone(),
            self.asns.clone(),
            self.countries.clone(),
            self.continents.clone(),
        )
    }
}

/// A scope table's inputs: each region key's origins, by level.
type TableKey = (
    Vec<(IpNet, Vec<u16>)>,
    Vec<(u32, Vec<u16>)>,
    Vec<(Country, Vec<u16>)>,
    Vec<(Continent, Vec<u16>)>,
);

/// Scope tables made with one set of databases, by what they were made from. Making
/// one reads every network of the databases (about 0.1 s for the shipped GeoIP one), so
/// the tasks of a compile that share a group share its table, a site change keeps the
/// tables of the groups it leaves alone, and explain and preview on a running server
/// take the tables its snapshot holds.
pub struct ScopeTables<'g> {
    geoip: Option<&'g GeoIp>,
    made: HashMap<TableKey, Arc<ScopeTable>>,
}

impl<'g> ScopeTables<'g> {
    /// None made yet, for groups compiled with `geoip`.
    pub fn new(geoip: Option<&'g GeoIp>) -> Self {
        Self {
            geoip,
            made: HashMap::new(),
        }
    }

    /// The databases the tables are made with.
    pub fn geoip(&self) -> Option<&'g GeoIp> {
        self.geoip
    }

    /// Keeps `group`'s tables for the groups compiled next, when `group` was compiled
    /// with the same databases (else they would route by the old ones).
    pub fn adopt(&mut self, group: &CompiledGroup, made_with: Option<&GeoIp>) {
        let same = match (self.geoip, made_with) {
            (Some(a), Some(b)) => a.same_files(b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            return;
        }
        for candidates in [&group.v4, &group.v6, &group.names] {
            if let Some(table) = &candidates.scopes {
                self.made
                    .entry(candidates.table_key())
                    .or_insert_with(|| table.clone());
            }
        }
    }

    /// The table of `candidates`: one already made from the same region keys, else a
    /// new one.
    fn table(&mut self, candidates: &Candidates) -> Arc<ScopeTable> {
        let geoip = self.geoip;
        self.made
            .entry(candidates.table_key())
            .or_insert_with(|| Arc::new(ScopeTable::new(candidates, geoip)))
            .clone()
    }
}

/// An origin group compiled for selection.
#[derive(Debug)]
pub struct CompiledGroup {
    policy: Policy,
    /// Usable origins of a family below which the group hands over to its fallback.
    min_up: u32,
    weights: Vec<u32>,
    /// A stable hash of each origin's address: its identity for rendezvous hashing, so
    /// reordering the origins moves no client.
    ids: Vec<u64>,
    v4: Candidates,
    v6: Candidates,
    names: Candidates,
}

impl CompiledGroup {
    /// Compiles a checked group. Origins keep their index in `group.origins`. A region
    /// group's country, continent and ASN levels come from `geoip` (without it they
    /// never match), read into its scope table here, at load.
    pub fn new(group: &OriginGroup, geoip: Option<&GeoIp>) -> Self {
        Self::with_tables(group, &mut ScopeTables::new(geoip))
    }

    /// As [`Self::new`], with the databases of `tables`, taking a region group's scope
    /// tables from there when one was made from the same region keys.
    pub fn with_tables(group: &OriginGroup, tables: &mut ScopeTables<'_>) -> Self {
        let mut compiled = Self {
            policy: group.policy,
            min_up: group.fallback.min_up,
            weights: group.origins.iter().map(|o| o.weight).collect(),
            ids: group
                .origins
                .iter()
                .map(|o| fnv1a(o.target.to_string().as_bytes()))
                .collect(),
            v4: Candidates::default(),
            v6: Candidates::default(),
            names: Candidates::default(),
        };
        for (index, origin) in group.origins.iter().enumerate() {
            let index = u16::try_from(index).unwrap_or(u16::MAX);
            let candidates = match &origin.target {
                Target::Ip(IpAddr::V4(_)) => &mut compiled.v4,
                Target::Ip(IpAddr::V6(_)) => &mut compiled.v6,
                Target::Name(_) => &mut compiled.names,
                Target::WithPort(_) => continue,
            };
            candidates.all.push(index);
            if group.policy != Policy::Region || origin.is_default() {
                candidates.default.push(index);
                continue;
            }
            for net in &origin.subnets {
                match candidates.subnets.iter_mut().find(|(n, _)| n == net) {
                    Some((_, members)) => members.push(index),
                    None => candidates.subnets.push((*net, vec![index])),
                }
            }
            for asn in &origin.asns {
                match candidates.asns.iter_mut().find(|(a, _)| a == asn) {
                    Some((_, members)) => members.push(index),
                    None => candidates.asns.push((*asn, vec![index])),
                }
            }
            for country in &origin.countries {
                match candidates.countries.iter_mut().find(|(c, _)| c == country) {
                    Some((_, members)) => members.push(index),
                    None => candidates.countries.push((*country, vec![index])),
                }
            }
            for continent in &origin.continents {
                match candidates
                    .continents
                    .iter_mut()
                    .find(|(c, _)| c == continent)
                {
                    Some((_, members)) => members.push(index),
                    None => candidates.continents.push((*continent, vec![index])),
                }
            }
        }
        for candidates in [&mut compiled.v4, &mut compiled.v6, &mut compiled.names] {
            candidates
                .subnets
                .sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
            candidates.countries.sort_by_key(|(c, _)| *c);
            candidates.asns.sort_by_key(|(a, _)| *a);
            if group.policy == Policy::Region && !candidates.all.is_empty() {
                candidates.scopes = Some(tables.table(candidates));
            }
        }
        compiled
    }

    /// Runs in the group's scope tables and their heap bytes.
    pub fn scope_table_size(&self) -> (usize, usize) {
        [&self.v4, &self.v6, &self.names]
            .iter()
            .filter_map(|c| c.scopes.as_ref())
            .fold((0, 0), |(n, bytes), t| {
                let (m, more) = t.size();
                (n + m, bytes + more)
            })
    }

    /// True when the group has origins that can answer `family`.
    pub fn serves(&self, family: Family) -> bool {
        !self.candidates(family).all.is_empty()
    }

    /// True when at least `min_up` origins of `family` are usable: the group answers
    /// rather than its fallback (SPEC §12). Drained origins count: they are usable.
    pub fn has_enough_up(&self, family: Family, is_up: impl Fn(u16) -> bool) -> bool {
        let mut up = 0;
        for &i in &self.candidates(family).all {
            up += u32::from(is_up(i));
            if up >= self.min_up {
                return true;
            }
        }
        false
    }

    fn candidates(&self, family: Family) -> &Candidates {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
            Family::Name => &self.names,
        }
    }
}

/// The outcome of one selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selection {
    picked: [u16; MAX_ANSWERS as usize],
    len: usize,
    /// ECS scope prefix length: how much of the client address decided the answer.
    pub scope: u8,
    /// True when no usable origin was left and the answer ignores health (fail open).
    pub failed_open: bool,
    /// The region level the origins came from (a weight or nearest group's one level
    /// reads as [`Level::Subnet`], the first).
    pub level: Option<Level>,
}

impl Selection {
    /// Indices into the group's origins, in draw order.
    pub fn origins(&self) -> &[u16] {
        &self.picked[..self.len]
    }
}

/// A region level, in the order they are tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// The longest subnet rule containing the client.
    Subnet,
    /// The client's autonomous system, from the ASN database.
    Asn,
    Country,
    Continent,
    /// Origins without region keys (every origin of a weight group).
    Default,
    /// Every origin of the family: the last resort of a region group.
    All,
}

impl Level {
    pub const ALL: [Level; LEVELS] = [
        Level::Subnet,
        Level::Asn,
        Level::Country,
        Level::Continent,
        Level::Default,
        Level::All,
    ];
}

/// Where a client is routed in a group: its region levels, looked up as they are needed
/// (the country only when the subnet and ASN levels do not answer), and the ECS scope
/// those lookups depend on.
pub struct Route<'a> {
    group: &'a CompiledGroup,
    candidates: &'a Candidates,
    client: Client,
    levels: Levels<'a>,
}

/// Routes `client` in `group` for `family`.
pub fn route<'a>(group: &'a CompiledGroup, family: Family, client: &Client) -> Route<'a> {
    let candidates = group.candidates(family);
    let levels = match group.policy {
        // A weight or nearest group has one level, the same for every client.
        Policy::Weight | Policy::Nearest => Levels::weighted(candidates),
        Policy::Region => Levels::region(candidates, client),
    };
    Route {
        group,
        candidates,
        client: *client,
        levels,
    }
}

impl<'a> Route<'a> {
    /// The origins of `level` for this client; empty when the level does not apply.
    pub fn members(&mut self, level: Level) -> &'a [u16] {
        self.levels.get(level as usize, self.candidates)
    }

    /// The level and origins this client is answered from while every origin is up:
    /// the first level with an origin of positive weight (else with any origin).
    pub fn level(&mut self) -> Option<(Level, &'a [u16])> {
        let weights = &self.group.weights;
        for positive in [true, false] {
            for level in Level::ALL {
                let members = self.members(level);
                if members
                    .iter()
                    .any(|&i| !positive || weights[usize::from(i)] > 0)
                {
                    return Some((level, members));
                }
            }
        }
        None
    }

    /// The ECS scope of the answer: the prefix length the levels consulted so far
    /// depend on, never more than the client's source prefix.
    pub fn scope(&self) -> u8 {
        self.levels.scope.min(self.client.source_prefix)
    }
}

/// What the health checks know of each origin, by index: read by [`pick`] on the query
/// path (atomic loads, no lock). A closure `Fn(u16) -> bool` is health alone.
pub trait Live {
    /// False while the origin is known to be down; origins never checked count as up.
    fn is_up(&self, origin: u16) -> bool;
    /// The weight in force: the one the origin reported (`weight_header`) while fresh,
    /// else `configured`.
    fn weight(&self, _origin: u16, configured: u32) -> u32 {
        configured
    }
    /// Whether any origin may report its weight: when none can (no `weight_header`),
    /// [`pick`] reads the configured weights alone and never calls [`Live::weight`]. An
    /// implementation that overrides `weight` says `true` here.
    fn reports_weights(&self) -> bool {
        false
    }
    /// The smoothed health-check round-trip time in microseconds; `None` until measured.
    fn rtt_us(&self, _origin: u16) -> Option<u32> {
        None
    }
}

impl<F: Fn(u16) -> bool> Live for F {
    fn is_up(&self, origin: u16) -> bool {
        self(origin)
    }
}

/// Round-trip times within this fraction of the nearest origin's tie with it, and
/// weights share the answers among them (SPEC §12 `policy: nearest`).
pub const NEAREST_TIE: f64 = 0.10;

/// Draws up to `answers` distinct origins along `route`: from the first level with a
/// usable origin of positive weight, then one with usable drained origins, then, when
/// nothing is usable, failing open (SPEC §4). A `nearest` group draws each answer among
/// the eligible origins whose round-trip time ties with the nearest one's (within
/// [`NEAREST_TIE`]); origins not measured yet rank after every measured one.
///
/// # Arguments
///
/// * `live` - health, reported weights and round-trip times of the group's origins.
/// * `rng` - the randomness for weighted draws, injected so tests are repeatable.
pub fn pick<R: Rng + ?Sized>(
    route: &mut Route<'_>,
    live: impl Live,
    answers: u32,
    rng: &mut R,
) -> Selection {
    let nearest = route.group.policy == Policy::Nearest;
    let selection = pick_with(route, &live, answers, |members, eligible, weight| {
        if !nearest {
            return draw(members, weight, eligible, rng);
        }
        let best = members
            .iter()
            .filter(|&&i| eligible(i))
            .filter_map(|&i| live.rtt_us(i))
            .min();
        let ties = |i: u16| match (best, live.rtt_us(i)) {
            (None, _) => true,
            (Some(best), Some(rtt)) => f64::from(rtt) <= f64::from(best) * (1.0 + NEAREST_TIE),
            (Some(_), None) => false,
        };
        draw(members, weight, |i| eligible(i) && ties(i), rng)
    });
    Selection {
        scope: route.scope(),
        ..selection
    }
}

/// Most bits of a client's address that [`pick_sticky`] hashes: a /24 or a /56, the
/// networks one site or customer usually holds.
pub const STICKY_V4: u8 = 24;
pub const STICKY_V6: u8 = 56;

/// [`pick`] by rendezvous (highest random weight) hashing of the client's prefix
/// instead of a random draw (SPEC §12 `stickiness: client_subnet`): each origin scores
/// `weight / -ln(u)`, `u` uniform in (0, 1) from a hash of the prefix and the origin,
/// and the highest scores answer. An origin wins a share of prefixes proportional to its
/// weight, and a weight change moves only the prefixes it must. The scope is the prefix
/// length hashed, or the route's when that is longer.
pub fn pick_sticky(route: &mut Route<'_>, live: impl Live, answers: u32) -> Selection {
    let (key, len) = sticky_key(&route.client);
    let group = route.group;
    let selection = pick_with(route, &live, answers, |members, eligible, weight| {
        let uniform = !members.iter().any(|&i| eligible(i) && weight(i) > 0);
        let mut best: Option<(f64, u16)> = None;
        for &i in members.iter().filter(|&&i| eligible(i)) {
            let weight = match uniform {
                true => 1.0,
                false => f64::from(weight(i)),
            };
            let hash = mix(key ^ mix(group.ids[usize::from(i)]));
            // 53 bits, shifted off 0: ln is finite and negative.
            let u = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let score = weight / -u.ln();
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, i));
            }
        }
        best.map(|(_, i)| i)
    });
    Selection {
        scope: route.scope().max(len).min(route.client.source_prefix),
        ..selection
    }
}

/// The prefix of `client` that sticky picks hash, as one number, and its length: the
/// ECS source prefix capped at /24 (IPv4) or /56 (IPv6), else the source address's /24
/// or /56 (a query with ECS source prefix 0 is answered from its source address).
fn sticky_key(client: &Client) -> (u64, u8) {
    let cap = match client.addr {
        IpAddr::V4(_) => STICKY_V4,
        IpAddr::V6(_) => STICKY_V6,
    };
    let len = match client.source_prefix {
        0 => cap,
        n => n.min(cap),
    };
    let bits = match client.addr {
        IpAddr::V4(a) => u64::from(u32::from(a)) << 32,
        IpAddr::V6(a) => (u128::from(a) >> 64) as u64,
    };
    let masked = bits.checked_shr(64 - u32::from(len)).unwrap_or(0);
    let family = u64::from(client.addr.is_ipv6());
    (mix(masked ^ mix(u64::from(len) | family << 8)), len)
}

/// SplitMix64's finalizer: a stable, well-spread 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a: a stable hash of an origin's address, the same in every build and node.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The passes of [`pick`], with `choose` picking one origin among a level's members
/// that pass the given filter, given each origin's weight in force.
fn pick_with(
    route: &mut Route<'_>,
    live: &impl Live,
    answers: u32,
    mut choose: impl FnMut(&[u16], &dyn Fn(u16) -> bool, &dyn Fn(u16) -> u32) -> Option<u16>,
) -> Selection {
    let configured = &route.group.weights;
    let reports = live.reports_weights();
    let weight = |i: u16| {
        let configured = configured[usize::from(i)];
        match reports {
            true => live.weight(i, configured),
            false => configured,
        }
    };
    let mut selection = Selection {
        picked: [0; MAX_ANSWERS as usize],
        len: 0,
        scope: 0,
        failed_open: false,
        level: None,
    };
    let want = answers.clamp(1, MAX_ANSWERS) as usize;
    let passes: [(bool, bool); 4] = [(true, false), (true, true), (false, false), (false, true)];
    'passes: for (need_up, allow_drained) in passes {
        let eligible = |i: u16| (!need_up || live.is_up(i)) && (allow_drained || weight(i) > 0);
        for level in Level::ALL {
            let members = route.members(level);
            if !members.iter().any(|&i| eligible(i)) {
                continue;
            }
            selection.failed_open = !need_up;
            selection.level = Some(level);
            while selection.len < want {
                let picked = &selection.picked[..selection.len];
                let fresh = |i: u16| eligible(i) && !picked.contains(&i);
                let Some(i) = choose(members, &fresh, &weight) else {
                    break;
                };
                selection.picked[selection.len] = i;
                selection.len += 1;
            }
            // Health cells change under a query: the origin seen up a moment ago may be
            // down by the draw. Nothing drawn goes on to the next level or pass (the last
            // ignores health, so some origin always answers) rather than answer empty.
            if selection.len > 0 {
                break 'passes;
            }
        }
    }
    selection
}

/// Where a query is answered along a fallback chain (SPEC §12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serving {
    /// The group at this index of the chain (0: the task's own).
    Group(usize),
    /// Some group serves the family, but none has `min_up` usable origins.
    AllDown,
    /// No group of the chain has origins of the family: the task's own group answers
    /// (with no records, NODATA).
    NotServed,
}

/// The first group of `chain` with enough usable origins of `family`; groups with no
/// origins of the family are passed over.
///
/// # Arguments
///
/// * `chain` - the task's group, then each fallback in turn.
/// * `is_up` - health of origin `i` of the chain's group `g`, as `is_up(g, i)`.
pub fn serving<'a>(
    chain: impl IntoIterator<Item = &'a CompiledGroup>,
    family: Family,
    is_up: impl Fn(usize, u16) -> bool,
) -> Serving {
    let mut served = false;
    for (g, group) in chain.into_iter().enumerate() {
        if !group.serves(family) {
            continue;
        }
        served = true;
        if group.has_enough_up(family, |i| is_up(g, i)) {
            return Serving::Group(g);
        }
    }
    match served {
        true => Serving::AllDown,
        false => Serving::NotServed,
    }
}

/// [`route`] then [`pick`]: up to `answers` distinct origins of `family` for `client`.
pub fn select<R: Rng + ?Sized>(
    group: &CompiledGroup,
    family: Family,
    client: &Client,
    live: impl Live,
    answers: u32,
    rng: &mut R,
) -> Selection {
    pick(&mut route(group, family, client), live, answers, rng)
}

/// One weighted draw among the members that pass `eligible`; uniform when their
/// weights are all 0. The draw is unbiased (`random_range` rejects, it does not take a modulo).
fn draw<R: Rng + ?Sized>(
    members: &[u16],
    weight: impl Fn(u16) -> u32,
    eligible: impl Fn(u16) -> bool,
    rng: &mut R,
) -> Option<u16> {
    let (mut total, mut count) = (0u64, 0u64);
    for &i in members.iter().filter(|&&i| eligible(i)) {
        total += u64::from(weight(i));
        count += 1;
    }
    if count == 0 {
        return None;
    }
    let uniform = total == 0;
    let mut ticket = rng.random_range(0..if uniform { count } else { total });
    for &i in members.iter().filter(|&&i| eligible(i)) {
        let weight = if uniform { 1 } else { u64::from(weight(i)) };
        if ticket < weight {
            return Some(i);
        }
        ticket -= weight;
    }
    None
}

/// Region levels: subnet, ASN, country, continent, default, all.
const LEVELS: usize = 6;

/// The levels of one query, each address level looked up in the scope table only when
/// a level needs it, and the prefix length the levels consulted so far depend on.
struct Levels<'a> {
    weighted: bool,
    /// The scope table and the client's address in it (a region group's).
    table: Option<(&'a ScopeTable, AddrInt)>,
    /// Address levels once looked up.
    found: [Option<&'a [u16]>; ADDRESS_LEVELS],
    scope: u8,
}

impl<'a> Levels<'a> {
    fn weighted(candidates: &'a Candidates) -> Self {
        Self {
            weighted: true,
            table: None,
            found: [Some(&candidates.all), Some(&[]), Some(&[]), Some(&[])],
            scope: 0,
        }
    }

    fn region(candidates: &'a Candidates, client: &Client) -> Self {
        Self {
            weighted: false,
            table: candidates
                .scopes
                .as_deref()
                .map(|t| (t, AddrInt::from(client.addr))),
            found: [None; ADDRESS_LEVELS],
            scope: 0,
        }
    }

    fn get(&mut self, level: usize, candidates: &'a Candidates) -> &'a [u16] {
        if level < ADDRESS_LEVELS {
            if let Some(found) = self.found[level] {
                return found;
            }
            let Some((table, addr)) = self.table else {
                return &[];
            };
            let (members, scope) = table.lookup(level, addr);
            self.scope = self.scope.max(scope);
            self.found[level] = Some(members);
            return members;
        }
        match level {
            4 if !self.weighted => &candidates.default,
            5 if !self.weighted => &candidates.all,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::{Origin, spec::Policy};
    use rand::SeedableRng;
    use rand::rngs::SmallRng;
    use std::path::Path;

    fn origin(addr: &str, weight: u32) -> Origin {
        Origin {
            target: Target::Ip(addr.parse().unwrap()),
            weight,
            countries: vec![],
            continents: vec![],
            subnets: vec![],
            asns: vec![],
        }
    }

    /// A group compiled with MaxMind's test country database.
    fn group(policy: Policy, origins: Vec<Origin>) -> CompiledGroup {
        compile(policy, origins, Some(&geoip()))
    }

    fn compile(policy: Policy, origins: Vec<Origin>, geoip: Option<&GeoIp>) -> CompiledGroup {
        let group = OriginGroup {
            name: "g".into(),
            policy,
            origins,
            health_check: None,
            fallback: Default::default(),
        };
        CompiledGroup::new(&group, geoip)
    }

    fn client(addr: &str) -> Client {
        let addr: IpAddr = addr.parse().unwrap();
        Client {
            addr,
            source_prefix: if addr.is_ipv4() { 32 } else { 128 },
        }
    }

    fn counts(g: &CompiledGroup, is_up: impl Fn(u16) -> bool + Copy, n: usize) -> Vec<usize> {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts = vec![0; 4];
        for _ in 0..n {
            let s = select(g, Family::V4, &client("192.0.2.1"), is_up, 1, &mut rng);
            counts[usize::from(s.origins()[0])] += 1;
        }
        counts
    }

    /// Pearson's chi-square statistic of observed counts against weights.
    fn chi_square(observed: &[usize], weights: &[u32]) -> f64 {
        let n: usize = observed.iter().sum();
        let total: u32 = weights.iter().sum();
        observed
            .iter()
            .zip(weights)
            .filter(|(_, w)| **w > 0)
            .map(|(&o, &w)| {
                let expected = n as f64 * f64::from(w) / f64::from(total);
                (o as f64 - expected).powi(2) / expected
            })
            .sum()
    }

    #[test]
    fn weighted_shares_match_weights() {
        let g = group(
            Policy::Weight,
            vec![
                origin("192.0.2.1", 1),
                origin("192.0.2.2", 2),
                origin("192.0.2.3", 3),
            ],
        );
        let c = counts(&g, |_| true, 6000);
        // 2 degrees of freedom: P(chi2 > 13.8) = 0.001.
        assert!(chi_square(&c[..3], &[1, 2, 3]) < 13.8, "{c:?}");
    }

    #[test]
    fn drained_and_down_origins() {
        let g = group(
            Policy::Weight,
            vec![origin("192.0.2.1", 0), origin("192.0.2.2", 5)],
        );
        assert_eq!(counts(&g, |_| true, 200)[..2], [0, 200]);
        // The only positive origin is down: the drained one is the last resort.
        assert_eq!(counts(&g, |i| i != 1, 200)[..2], [200, 0]);
        // Everything down: fail open to the positive weights, and say so.
        assert_eq!(counts(&g, |_| false, 200)[..2], [0, 200]);
        let mut rng = SmallRng::seed_from_u64(1);
        let s = select(&g, Family::V4, &client("192.0.2.9"), |_| false, 1, &mut rng);
        assert!(s.failed_open);
        let s = select(&g, Family::V4, &client("192.0.2.9"), |_| true, 1, &mut rng);
        assert!(!s.failed_open);
    }

    #[test]
    fn an_origin_going_down_during_a_query_never_leaves_the_answer_empty() {
        use std::cell::Cell;
        let g = group(
            Policy::Weight,
            vec![origin("192.0.2.1", 1), origin("192.0.2.2", 1)],
        );
        // Every origin is up for the first health reads of a query, then down: as when
        // the first check round lands on every origin while the query is being answered.
        for up_reads in 0..8 {
            let reads = Cell::new(0);
            let is_up = |_: u16| {
                reads.set(reads.get() + 1);
                reads.get() <= up_reads
            };
            let mut rng = SmallRng::seed_from_u64(5);
            let s = select(&g, Family::V4, &client("192.0.2.9"), is_up, 1, &mut rng);
            assert_eq!(s.origins().len(), 1, "after {up_reads} up reads");
        }
    }

    #[test]
    fn distinct_answers_and_families() {
        let g = group(
            Policy::Weight,
            vec![
                origin("192.0.2.1", 1),
                origin("2001:db8::1", 1),
                origin("192.0.2.2", 100),
            ],
        );
        let mut rng = SmallRng::seed_from_u64(3);
        for _ in 0..50 {
            let s = select(&g, Family::V4, &client("192.0.2.9"), |_| true, 5, &mut rng);
            let mut picked = s.origins().to_vec();
            picked.sort();
            assert_eq!(picked, [0, 2]);
            let s = select(&g, Family::V6, &client("192.0.2.9"), |_| true, 5, &mut rng);
            assert_eq!(s.origins(), [1]);
            assert_eq!(s.scope, 0);
        }
        assert!(!g.serves(Family::Name));
    }

    fn region_group() -> CompiledGroup {
        let mut cn = origin("198.51.100.1", 1);
        cn.countries = vec![Country::parse("CN").unwrap()];
        let mut eu = origin("198.51.100.2", 1);
        eu.continents = vec![Continent::Europe];
        let mut net = origin("198.51.100.3", 1);
        net.subnets = vec![
            "81.2.69.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        let dflt = origin("198.51.100.9", 1);
        group(Policy::Region, vec![cn, eu, net, dflt])
    }

    #[test]
    fn groups_with_the_same_region_keys_share_a_scope_table_made_with_the_same_databases() {
        let db = geoip();
        let group = |eu_weight: u32, eu_continent: Continent| {
            let mut cn = origin("198.51.100.1", 1);
            cn.countries = vec![Country::parse("CN").unwrap()];
            let mut eu = origin("198.51.100.2", eu_weight);
            eu.continents = vec![eu_continent];
            OriginGroup {
                name: "g".into(),
                policy: Policy::Region,
                origins: vec![cn, eu, origin("198.51.100.9", 1)],
                health_check: None,
                fallback: Default::default(),
            }
        };
        let table = |g: &CompiledGroup| g.v4.scopes.clone().unwrap();
        let mut tables = ScopeTables::new(Some(&db));
        let first = CompiledGroup::with_tables(&group(1, Continent::Europe), &mut tables);
        // A weight is no input of the table; a region key is.
        let reweighted = CompiledGroup::with_tables(&group(5, Continent::Europe), &mut tables);
        assert!(Arc::ptr_eq(&table(&first), &table(&reweighted)));
        let moved = CompiledGroup::with_tables(&group(1, Continent::Asia), &mut tables);
        assert!(!Arc::ptr_eq(&table(&first), &table(&moved)));
        // Lent from a group made with the same databases: taken.
        let mut lent = ScopeTables::new(Some(&db));
        lent.adopt(&first, Some(&db));
        let again = CompiledGroup::with_tables(&group(1, Continent::Europe), &mut lent);
        assert!(Arc::ptr_eq(&table(&first), &table(&again)));
        // The same file opened again is another database (it may have changed): refused.
        let reopened = geoip();
        let mut other = ScopeTables::new(Some(&reopened));
        other.adopt(&first, Some(&db));
        let fresh = CompiledGroup::with_tables(&group(1, Continent::Europe), &mut other);
        assert!(!Arc::ptr_eq(&table(&first), &table(&fresh)));
        let mut none = ScopeTables::new(None);
        none.adopt(&first, Some(&db));
        let without = CompiledGroup::with_tables(&group(1, Continent::Europe), &mut none);
        assert!(!Arc::ptr_eq(&table(&first), &table(&without)));
    }

    fn geoip() -> GeoIp {
        GeoIp::open(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/GeoIP2-Country-Test.mmdb"),
        )
        .unwrap()
    }

    fn origin_and_scope(g: &CompiledGroup, c: Client) -> (u16, u8) {
        let mut rng = SmallRng::seed_from_u64(9);
        let s = select(g, Family::V4, &c, |_| true, 1, &mut rng);
        (s.origins()[0], s.scope)
    }

    // Expected scopes come from MaxMind's test database (its source list
    // `GeoIP2-Country-Test.json`): 81.2.69.142-207 GB (81.2.69.160/27 among its
    // networks), 2.125.160.216/29 GB, 175.16.199.0/24 and 111.235.160.0/22 CN,
    // 216.160.83.56/29 US, 89.160.20.112/28 SE, 217.65.48.0/29 GI, 2a02:cfc0::/29 FR;
    // nothing in 10.0.0.0/8, 81.2.64.0/22, 2001:db8::/32. The scope is the widest block
    // around the client holding no address answered from other origins: tests/scope.rs
    // checks that against the JSON sources for thousands of addresses.

    #[test]
    fn region_levels_in_order_with_the_scope_of_the_deciding_network() {
        let g = region_group();
        for (addr, origin, scope) in [
            // GB/EU, but the subnet rule 81.2.69.0/24 comes first.
            ("81.2.69.160", 2, 24),
            ("175.16.199.1", 0, 24),
            // SE: the continent level.
            ("89.160.20.112", 1, 28),
            // US: the default, like all of 216.0.0.0/8; the /7 holds 217.65.48.0/29
            // (GI, Europe).
            ("216.160.83.56", 3, 8),
            // Not in the database: the default, like all of 8.0.0.0/5; the /4 holds
            // 2.125.160.216/29 (GB, Europe).
            ("10.1.2.3", 3, 5),
            // Next to the rule, in the empty 81.2.64.0/22 (which holds 81.2.69.0/24):
            // the largest block around it that avoids the rule is 81.2.68.0/24.
            ("81.2.68.1", 3, 24),
        ] {
            assert_eq!(
                origin_and_scope(&g, client(addr)),
                (origin, scope),
                "{addr}"
            );
        }
    }

    #[test]
    fn scope_is_capped_at_the_source_prefix_and_not_raised_to_it() {
        let g = region_group();
        let ecs = |addr: &str, source_prefix| Client {
            addr: addr.parse().unwrap(),
            source_prefix,
        };
        // 81.2.64.0 is in the empty 81.2.64.0/22, and 81.2.64.0/21 holds the rule
        // 81.2.69.0/24: the answer holds for /22, so a /20 source gets 20 and a /23 22.
        assert_eq!(origin_and_scope(&g, ecs("81.2.64.0", 20)), (3, 20));
        assert_eq!(origin_and_scope(&g, ecs("81.2.64.0", 23)), (3, 22));
        assert_eq!(origin_and_scope(&g, ecs("81.2.69.0", 24)), (2, 24));
        assert_eq!(origin_and_scope(&g, ecs("81.2.69.0", 25)), (2, 24));
        assert_eq!(origin_and_scope(&g, ecs("0.0.0.0", 0)).1, 0);
    }

    #[test]
    fn scope_narrows_to_avoid_a_rule_that_answers_differently() {
        // A rule inside the US network 216.160.83.56/29 and one around 127.0.0.0/8.
        let mut rule = origin("198.51.100.7", 1);
        rule.subnets = vec![
            "216.160.83.60/30".parse().unwrap(),
            "127.0.0.0/8".parse().unwrap(),
            "2001:db8:1::/48".parse().unwrap(),
        ];
        let mut us = origin("198.51.100.1", 1);
        us.countries = vec![Country::parse("US").unwrap()];
        let g = group(Policy::Region, vec![rule, us, origin("198.51.100.9", 1)]);
        for (addr, origin, scope) in [
            ("216.160.83.61", 0, 30),
            // US, but only 216.160.83.56/30 is US without the rule.
            ("216.160.83.56", 1, 30),
            ("127.255.255.255", 0, 8),
            // Default next to 127.0.0.0/8: 126.0.0.0/8 (also the database's network);
            // away from it, the database's empty 128.0.0.0/4.
            ("126.0.0.1", 2, 8),
            ("128.0.0.1", 2, 4),
            // IPv6: the empty 2001:db8::/32 without 2001:db8:1::/48 leaves
            // 2001:db8:2::/47 for 2001:db8:2::1, and 2001:db8:8000::/33 far away.
            ("2001:db8:1::1", 0, 48),
            ("2001:db8:2::1", 2, 47),
            ("2001:db8:ffff::1", 2, 33),
        ] {
            assert_eq!(
                origin_and_scope(&g, client(addr)),
                (origin, scope),
                "{addr}"
            );
        }
    }

    #[test]
    fn a_group_without_country_or_continent_keys_ignores_the_database() {
        // Rules only: the database's networks do not narrow the scope.
        let mut rule = origin("198.51.100.7", 1);
        rule.subnets = vec!["127.0.0.0/8".parse().unwrap()];
        let g = group(Policy::Region, vec![rule, origin("198.51.100.9", 1)]);
        // 216.160.83.56 is in the US network /29, but only 128.0.0.0/1 decided.
        assert_eq!(origin_and_scope(&g, client("216.160.83.56")), (1, 1));
    }

    #[test]
    fn country_only_and_continent_only_groups_use_the_database() {
        let mut cn = origin("198.51.100.1", 1);
        cn.countries = vec![Country::parse("CN").unwrap()];
        let g = group(Policy::Region, vec![cn, origin("198.51.100.9", 1)]);
        assert_eq!(origin_and_scope(&g, client("175.16.199.1")), (0, 24));
        // Not CN, like all of 64.0.0.0/3; the /2 holds 111.235.160.0/22 (CN).
        assert_eq!(origin_and_scope(&g, client("81.2.69.160")), (1, 3));
        let mut eu = origin("198.51.100.2", 1);
        eu.continents = vec![Continent::Europe];
        let g = group(Policy::Region, vec![eu, origin("198.51.100.9", 1)]);
        assert_eq!(origin_and_scope(&g, client("81.2.69.160")), (0, 27));
        // Not Europe, like all of 128.0.0.0/2; the /1 holds 217.65.48.0/29 (GI).
        assert_eq!(origin_and_scope(&g, client("175.16.199.1")), (1, 2));
        // Without a database, neither level matches and nothing narrows the scope.
        let mut eu = origin("198.51.100.2", 1);
        eu.continents = vec![Continent::Europe];
        let g = compile(Policy::Region, vec![eu, origin("198.51.100.9", 1)], None);
        let mut rng = SmallRng::seed_from_u64(9);
        let s = select(
            &g,
            Family::V4,
            &client("81.2.69.160"),
            |_| true,
            1,
            &mut rng,
        );
        assert_eq!((s.origins(), s.scope), (&[1][..], 0));
    }

    #[test]
    fn a_country_beats_its_continent() {
        let mut gb = origin("198.51.100.1", 1);
        gb.countries = vec![Country::parse("GB").unwrap()];
        let mut eu = origin("198.51.100.2", 1);
        eu.continents = vec![Continent::Europe];
        // Continent first in the file: the order of the levels decides, not the file's.
        let g = group(Policy::Region, vec![eu, gb, origin("198.51.100.9", 1)]);
        assert_eq!(origin_and_scope(&g, client("81.2.69.160")), (1, 27));
        assert_eq!(
            origin_and_scope(&g, client("2a02:cfc0::1")).0,
            0,
            "FR is EU"
        );
    }

    #[test]
    fn a_level_of_drained_origins_is_passed_over() {
        let mut drained = origin("198.51.100.7", 0);
        drained.subnets = vec!["192.0.2.0/24".parse().unwrap()];
        let g = group(Policy::Region, vec![drained, origin("198.51.100.9", 1)]);
        let c = client("192.0.2.1");
        let mut rng = SmallRng::seed_from_u64(5);
        let mut run = |is_up: fn(u16) -> bool| {
            let s = select(&g, Family::V4, &c, is_up, 1, &mut rng);
            (s.origins().to_vec(), s.failed_open)
        };
        // The subnet level has only a drained origin: the default answers.
        assert_eq!(run(|_| true), (vec![1], false));
        // The default is down: the drained origin is the last resort, not a failure.
        assert_eq!(run(|i| i != 1), (vec![0], false));
        // Everything down: fail open to the positive weight, and say so.
        assert_eq!(run(|_| false), (vec![1], true));
    }

    #[test]
    fn exactly_as_many_answers_as_asked_up_to_the_origins() {
        let g = group(
            Policy::Weight,
            vec![
                origin("192.0.2.1", 1),
                origin("192.0.2.2", 1),
                origin("192.0.2.3", 1),
            ],
        );
        let mut rng = SmallRng::seed_from_u64(11);
        for (answers, len) in [(0, 1), (1, 1), (2, 2), (3, 3), (MAX_ANSWERS, 3)] {
            for _ in 0..20 {
                let s = select(
                    &g,
                    Family::V4,
                    &client("192.0.2.9"),
                    |_| true,
                    answers,
                    &mut rng,
                );
                let mut picked = s.origins().to_vec();
                picked.sort();
                picked.dedup();
                assert_eq!(picked.len(), len, "answers {answers}: {:?}", s.origins());
                assert_eq!(s.origins().len(), len);
            }
        }
    }

    #[test]
    fn families_served() {
        let g = group(Policy::Weight, vec![origin("192.0.2.1", 1)]);
        assert!(g.serves(Family::V4));
        assert!(!g.serves(Family::V6));
        assert!(!g.serves(Family::Name));
    }

    #[test]
    fn region_falls_back_to_all_without_default() {
        let mut cn = origin("198.51.100.1", 1);
        cn.countries = vec![Country::parse("CN").unwrap()];
        let g = group(Policy::Region, vec![cn]);
        assert_eq!(origin_and_scope(&g, client("216.160.83.56")).0, 0);
    }

    #[test]
    fn the_first_group_with_min_up_usable_origins_serves() {
        let with_min_up = |origins: Vec<Origin>, min_up| {
            CompiledGroup::new(
                &OriginGroup {
                    name: "g".into(),
                    policy: Policy::Weight,
                    origins,
                    health_check: None,
                    fallback: crate::site::Fallback {
                        min_up,
                        ..Default::default()
                    },
                },
                None,
            )
        };
        // Two of three v4 origins needed; the backup has one v4 and one v6 origin; the
        // last has v6 only.
        let chain = [
            with_min_up(
                vec![
                    origin("192.0.2.1", 1),
                    origin("192.0.2.2", 0),
                    origin("192.0.2.3", 1),
                ],
                2,
            ),
            with_min_up(vec![origin("192.0.2.9", 1), origin("2001:db8::9", 1)], 1),
            with_min_up(vec![origin("2001:db8::1", 1)], 1),
        ];
        let down = |list: &'static [(usize, u16)]| move |g, i| !list.contains(&(g, i));
        let v4 = |up| serving(&chain, Family::V4, up);
        assert_eq!(v4(down(&[])), Serving::Group(0));
        // A drained origin up counts as usable.
        assert_eq!(v4(down(&[(0, 0)])), Serving::Group(0));
        assert_eq!(v4(down(&[(0, 0), (0, 1)])), Serving::Group(1));
        // The last group has no v4 origin: it is passed over, the chain is down.
        assert_eq!(v4(down(&[(0, 0), (0, 1), (1, 0)])), Serving::AllDown);
        // v6 is counted on its own: the head has none, so the backup serves AAAA.
        assert_eq!(serving(&chain, Family::V6, down(&[])), Serving::Group(1));
        assert_eq!(
            serving(&chain, Family::V6, down(&[(1, 1)])),
            Serving::Group(2)
        );
        assert_eq!(serving(&chain, Family::Name, down(&[])), Serving::NotServed);
    }

    /// The origin a sticky pick gives `client` in `g`.
    fn sticky(g: &CompiledGroup, c: &Client) -> (u16, u8) {
        let s = pick_sticky(&mut route(g, Family::V4, c), |_| true, 1);
        (s.origins()[0], s.scope)
    }

    /// 10,000 distinct /24s: 10.0.0.0/24, 10.0.1.0/24, ...
    fn prefixes() -> impl Iterator<Item = Client> {
        (0u32..10_000).map(|n| Client {
            addr: IpAddr::V4((0x0a00_0000 + (n << 8)).into()),
            source_prefix: 24,
        })
    }

    #[test]
    fn sticky_shares_match_the_weights_and_a_weight_change_moves_only_what_it_must() {
        let weights = [1, 2, 3, 4];
        let origins = |w: &[u32]| {
            w.iter()
                .enumerate()
                .map(|(i, &w)| origin(&format!("192.0.2.{}", i + 1), w))
                .collect::<Vec<_>>()
        };
        let before = group(Policy::Weight, origins(&weights));
        let mut counts = [0usize; 4];
        let picks: Vec<u16> = prefixes().map(|c| sticky(&before, &c).0).collect();
        for &p in &picks {
            counts[usize::from(p)] += 1;
        }
        // 3 degrees of freedom: P(chi2 > 30.66) = 1e-6 (computed from the closed form of
        // the chi-square survival function for 3 degrees, not from this code).
        assert!(chi_square(&counts, &weights) < 30.66, "{counts:?}");

        // Origin 0 goes from weight 1 to 3: its share from 1/10 to 3/12. With rendezvous
        // hashing the only prefixes that move are those it now wins: 0.25 - 0.10 = 15 %
        // of them, none between other origins. Binomial(10,000, 0.15) has a standard
        // deviation of 35.7; the bound is 6 of them (p < 1e-8).
        let after = group(Policy::Weight, origins(&[3, 2, 3, 4]));
        let mut moved = 0;
        for (c, &was) in prefixes().zip(&picks) {
            let now = sticky(&after, &c).0;
            if now != was {
                assert_eq!(now, 0, "a client moved between two unchanged origins");
                moved += 1;
            }
        }
        assert!((moved as f64 - 1500.0).abs() < 6.0 * 35.7, "{moved} moved");
        eprintln!(
            "sticky: chi-square {:.2} for {counts:?}; {moved} of 10,000 prefixes moved (ideal 1,500)",
            chi_square(&counts, &weights)
        );
    }

    #[test]
    fn a_sticky_client_keeps_its_origin_across_its_prefix_and_gets_its_scope() {
        let g = group(
            Policy::Weight,
            (1..=8)
                .map(|i| origin(&format!("192.0.2.{i}"), 1))
                .collect(),
        );
        for c in prefixes().take(200) {
            let IpAddr::V4(base) = c.addr else {
                unreachable!()
            };
            let (origin, scope) = sticky(&g, &c);
            assert_eq!(scope, 24);
            // Another address of the /24, without ECS (source prefix 32): the same.
            for host in [1, 77, 255] {
                let other = Client {
                    addr: IpAddr::V4((u32::from(base) + host).into()),
                    source_prefix: 32,
                };
                assert_eq!(sticky(&g, &other), (origin, 24));
            }
        }
        // A shorter ECS prefix is hashed as sent, and is the scope.
        let wide = Client {
            addr: "10.0.0.0".parse().unwrap(),
            source_prefix: 16,
        };
        assert_eq!(sticky(&g, &wide).1, 16);
        // IPv6: the /56.
        let v6 = group(
            Policy::Weight,
            vec![origin("2001:db8::1", 1), origin("2001:db8::2", 1)],
        );
        let at = |addr: &str| {
            let s = pick_sticky(&mut route(&v6, Family::V6, &client(addr)), |_| true, 1);
            (s.origins()[0], s.scope)
        };
        assert_eq!(at("2001:db8:0:ff00::1").1, 56);
        assert_eq!(at("2001:db8:0:ff00::1"), at("2001:db8:0:ffff::2"));
        // Its origin down, a client moves; back up, it returns.
        let c = prefixes().next().unwrap();
        let (home, _) = sticky(&g, &c);
        let s = pick_sticky(&mut route(&g, Family::V4, &c), |i| i != home, 1);
        assert_ne!(s.origins()[0], home);
        assert_eq!(sticky(&g, &c).0, home);
    }

    /// Health, reported weights and round-trip times set by the test.
    struct Fake {
        rtt_us: Vec<Option<u32>>,
        weights: Vec<Option<u32>>,
    }

    impl Live for &Fake {
        fn is_up(&self, _: u16) -> bool {
            true
        }
        fn weight(&self, origin: u16, configured: u32) -> u32 {
            self.weights[usize::from(origin)].unwrap_or(configured)
        }
        fn reports_weights(&self) -> bool {
            true
        }
        fn rtt_us(&self, origin: u16) -> Option<u32> {
            self.rtt_us[usize::from(origin)]
        }
    }

    #[test]
    fn nearest_picks_the_lowest_round_trip_and_shares_ties_within_ten_percent_by_weight() {
        let g = group(
            Policy::Nearest,
            vec![
                origin("192.0.2.1", 1),
                origin("192.0.2.2", 3),
                origin("192.0.2.3", 1),
                origin("192.0.2.4", 1),
            ],
        );
        let mut rng = SmallRng::seed_from_u64(1);
        let mut run = |fake: &Fake, answers: u32| {
            let mut counts = [0usize; 4];
            for _ in 0..4000 {
                let s = select(
                    &g,
                    Family::V4,
                    &client("192.0.2.9"),
                    fake,
                    answers,
                    &mut rng,
                );
                counts[usize::from(s.origins()[answers as usize - 1])] += 1;
            }
            counts
        };
        // 0 and 1 within 10 % of each other (1,000 and 1,100 µs), 2 at 1,101 µs is out.
        let fake = Fake {
            rtt_us: vec![Some(1000), Some(1100), Some(1101), None],
            weights: vec![None; 4],
        };
        let counts = run(&fake, 1);
        assert_eq!((counts[2], counts[3]), (0, 0), "{counts:?}");
        // 1 degree of freedom: P(chi2 > 23.9) = 1e-6.
        assert!(chi_square(&counts[..2], &[1, 3]) < 23.9, "{counts:?}");
        // More answers take the next nearest in turn: the unmeasured origin comes last.
        assert_eq!(run(&fake, 3)[3], 0);
        assert_eq!(run(&fake, 4)[3], 4000);
        // A reported weight replaces the configured one among the ties.
        let shed = Fake {
            weights: vec![None, Some(0), None, None],
            ..fake
        };
        assert_eq!(run(&shed, 1), [4000, 0, 0, 0]);
        // Nothing measured yet: all tie, by weight.
        let none = Fake {
            rtt_us: vec![None; 4],
            weights: vec![None; 4],
        };
        assert!(chi_square(&run(&none, 1), &[1, 3, 1, 1]) < 30.66);
    }
}
