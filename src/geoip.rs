//! Client location from a MaxMind DB file.
//!
//! Two schemas are read: GeoIP2/GeoLite2 Country and City (`country.iso_code`,
//! `continent.code`) and the flat `country_code` schema of the shipped default
//! database, whose continent is derived from the country with [`continent_of`]. An
//! ASN database (GeoLite2-ASN) beside it maps addresses to autonomous systems.
//! A lookup decodes borrowed strings only, so it does not allocate.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, OnceLock};

use crate::runs::Runs;

use serde::Deserialize;

/// An ISO 3166-1 alpha-2 country code, upper case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Country([u8; 2]);

impl Country {
    /// Parses a two-letter code, case-insensitively.
    pub fn parse(code: &str) -> Option<Self> {
        match code.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A continent code as GeoIP2 databases spell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Continent {
    Africa,
    Antarctica,
    Asia,
    Europe,
    NorthAmerica,
    Oceania,
    SouthAmerica,
}

impl Continent {
    /// Every continent, for error messages.
    pub const CODES: &'static str = "AF AN AS EU NA OC SA";

    /// Parses a two-letter continent code, case-insensitively.
    pub fn parse(code: &str) -> Option<Self> {
        // Compared without case and without an uppercased copy: this runs per query.
        let code = code.as_bytes();
        [
            ("AF", Self::Africa),
            ("AN", Self::Antarctica),
            ("AS", Self::Asia),
            ("EU", Self::Europe),
            ("NA", Self::NorthAmerica),
            ("OC", Self::Oceania),
            ("SA", Self::SouthAmerica),
        ]
        .into_iter()
        .find(|(known, _)| code.eq_ignore_ascii_case(known.as_bytes()))
        .map(|(_, continent)| continent)
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Africa => "AF",
            Self::Antarctica => "AN",
            Self::Asia => "AS",
            Self::Europe => "EU",
            Self::NorthAmerica => "NA",
            Self::Oceania => "OC",
            Self::SouthAmerica => "SA",
        }
    }
}

impl fmt::Display for Continent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Where a client is, as far as the database knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Location {
    pub country: Option<Country>,
    pub continent: Option<Continent>,
    /// Prefix length of the database network that holds the address (also when the
    /// database has no data for it): every address in that network gets the same answer.
    pub prefix_len: u8,
}

/// Errors opening a GeoIP database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GeoIpError {
    #[error("{path}: cannot open GeoIP database: {source}")]
    Open {
        path: PathBuf,
        source: maxminddb::MaxMindDbError,
    },
    #[error("{path}: the GeoIP database is damaged ({source}); replace it with a good copy")]
    Damaged {
        path: PathBuf,
        source: maxminddb::MaxMindDbError,
    },
}

/// The location databases in use: a country database (GeoIP2/GeoLite2 Country or City,
/// or the shipped `country_code` one) and an ASN database (GeoLite2-ASN), either or both.
pub struct GeoIp {
    country: Option<Arc<Db>>,
    asn: Option<Arc<Db>>,
}

/// One MaxMind DB file, loaded into memory and checked.
struct Db {
    reader: maxminddb::Reader<Vec<u8>>,
    path: PathBuf,
    /// Length and modification time when opened, to tell an unchanged file.
    identity: Option<(u64, std::time::SystemTime)>,
    /// The whole database as runs, read once when a region group first needs them.
    runs: OnceLock<DbRuns>,
}

/// Where a client is by the country database: its country and continent.
pub type Place = (Option<Country>, Option<Continent>);

/// A database read into runs of equal records, per client address family.
pub struct FamilyRuns<V> {
    pub v4: Runs<u32, V>,
    pub v6: Runs<u128, V>,
}

impl<V: Copy + PartialEq> FamilyRuns<V> {
    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.v4.heap_bytes() + self.v6.heap_bytes()
    }
}

enum DbRuns {
    Country(FamilyRuns<Place>),
    Asn(FamilyRuns<Option<u32>>),
}

impl fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoIp")
            .field("country", &self.country.as_ref().map(|db| &db.path))
            .field("asn", &self.asn.as_ref().map(|db| &db.path))
            .finish()
    }
}

/// The fields lbdns reads, in both supported schemas.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow)]
    continent: Option<ContinentCode<'a>>,
    #[serde(borrow)]
    country_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct ContinentCode<'a> {
    #[serde(borrow)]
    code: Option<&'a str>,
}

/// The one field lbdns reads from a GeoLite2-ASN record.
#[derive(Deserialize)]
struct AsnRecord {
    autonomous_system_number: Option<u32>,
}

/// What a database's records hold.
#[derive(Clone, Copy)]
enum Schema {
    Country,
    Asn,
}

impl Db {
    /// Opens and checks the database at `path`: its metadata, every node of its search
    /// tree and every record of its data section (as MaxMind's `mmdbverify` does), so a
    /// damaged file is refused like any bad edit instead of quietly sending every region
    /// answer to the default origins.
    fn open(path: &Path, schema: Schema) -> Result<Self, GeoIpError> {
        let reader = maxminddb::Reader::open_readfile(path).map_err(|source| GeoIpError::Open {
            path: path.to_owned(),
            source,
        })?;
        // About 0.1 s for a million networks in a release build. maxminddb's own
        // `verify` also insists on metadata that valid databases (the shipped one) leave out.
        let damaged = |source| GeoIpError::Damaged {
            path: path.to_owned(),
            source,
        };
        for network in reader.networks(Default::default()).map_err(damaged)? {
            network
                .and_then(|n| match schema {
                    Schema::Country => n.decode::<Record<'_>>().map(|_| ()),
                    Schema::Asn => n.decode::<AsnRecord>().map(|_| ()),
                })
                .map_err(damaged)?;
        }
        Ok(Self {
            reader,
            path: path.to_owned(),
            identity: file_identity(path),
            runs: OnceLock::new(),
        })
    }

    /// Every network of the database as runs of equal values, `read` from each record.
    /// A client address is looked up as [`maxminddb::Reader::lookup`] does: IPv4 in the
    /// IPv4 subtree, IPv6 through the tree's aliases of it (`::ffff:0:0/96`, 6to4...).
    fn read_runs<V: Copy + PartialEq + Default>(
        &self,
        read: impl Fn(&maxminddb::LookupResult<'_, Vec<u8>>) -> V,
    ) -> FamilyRuns<V> {
        use maxminddb::WithinOptions;
        // The ranges of the IPv4 (`v6` false) or IPv6 client space, in the tree's order.
        // The networks of the IPv4 (`v6` false) or IPv6 client space as ranges, in address
        // order (the tree is walked left to right). Networks share few records: each is
        // read once, by its offset.
        let ranges = |v6: bool, options: WithinOptions| {
            let all = match v6 {
                false => "0.0.0.0/0",
                true => "::/0",
            };
            let networks = all.parse().map(|all| self.reader.within(all, options));
            let mut read_at: HashMap<usize, V> = HashMap::new();
            let read = &read;
            networks
                .into_iter()
                .flatten()
                .flatten()
                .flatten()
                .filter_map(move |result| {
                    let network = result.network().ok()?;
                    let (first, bits, prefix) = match (network.network(), v6) {
                        (IpAddr::V4(a), false) => (u128::from(u32::from(a)), 32, network.prefix()),
                        // The IPv4 subtree seen from the IPv6 tree: at ::/96.
                        (IpAddr::V4(a), true) => {
                            (u128::from(u32::from(a)), 128, network.prefix() + 96)
                        }
                        (IpAddr::V6(a), true) => (u128::from(a), 128, network.prefix()),
                        // An IPv6 database without an IPv4 subtree: IPv4 is all in one
                        // network that holds ::/96.
                        (IpAddr::V6(a), false) => {
                            (a.is_unspecified() && network.prefix() <= 96).then_some((0, 32, 0))?
                        }
                    };
                    let size = bits - u32::from(prefix);
                    let last = first | u128::MAX.checked_shr(128 - size).unwrap_or(0);
                    let value = match result.offset() {
                        Some(offset) => *read_at.entry(offset).or_insert_with(|| read(&result)),
                        None => read(&result),
                    };
                    Some((first, last, value))
                })
        };
        let v4 = ranges(false, WithinOptions::default());
        let v6 = match self.reader.metadata().ip_version {
            6 => Runs::from_ranges(
                ranges(true, WithinOptions::default().include_aliased_networks()),
                V::default(),
            ),
            _ => Runs::constant(V::default()),
        };
        FamilyRuns {
            v4: Runs::from_ranges(v4.map(|(a, b, v)| (a as u32, b as u32, v)), V::default()),
            v6,
        }
    }

    fn is_unchanged(&self, path: &Path) -> bool {
        self.path == path && self.identity.is_some() && self.identity == file_identity(path)
    }
}

impl GeoIp {
    /// Opens a country database alone.
    pub fn open(path: &Path) -> Result<Self, GeoIpError> {
        Ok(Self {
            country: Some(Arc::new(Db::open(path, Schema::Country)?)),
            asn: None,
        })
    }

    /// Opens the country database and the ASN database given, either or both; `None`
    /// when neither is. A file `previous` read and that has not changed since is kept,
    /// not read and checked again.
    pub fn open_files(
        country: Option<&Path>,
        asn: Option<&Path>,
        previous: Option<&GeoIp>,
    ) -> Result<Option<Self>, Vec<GeoIpError>> {
        fn reuse_or_open(
            path: Option<&Path>,
            schema: Schema,
            previous: Option<&Arc<Db>>,
            errors: &mut Vec<GeoIpError>,
        ) -> Option<Arc<Db>> {
            let path = path?;
            if let Some(db) = previous.filter(|db| db.is_unchanged(path)) {
                return Some(db.clone());
            }
            Db::open(path, schema)
                .map(Arc::new)
                .map_err(|e| errors.push(e))
                .ok()
        }
        let mut errors = Vec::new();
        let country = reuse_or_open(
            country,
            Schema::Country,
            previous.and_then(|p| p.country.as_ref()),
            &mut errors,
        );
        let asn = reuse_or_open(
            asn,
            Schema::Asn,
            previous.and_then(|p| p.asn.as_ref()),
            &mut errors,
        );
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok((country.is_some() || asn.is_some()).then_some(Self { country, asn }))
    }

    /// True when both hold the very same databases (kept from one load to the next).
    pub fn same_files(&self, other: &GeoIp) -> bool {
        let same = |a: &Option<Arc<Db>>, b: &Option<Arc<Db>>| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        same(&self.country, &other.country) && same(&self.asn, &other.asn)
    }

    /// True when this holds a country database (for the country and continent levels).
    pub fn has_country(&self) -> bool {
        self.country.is_some()
    }

    /// True when this holds an ASN database (for the asns level).
    pub fn has_asn(&self) -> bool {
        self.asn.is_some()
    }

    /// When the database was built (its metadata's `build_epoch`, Unix seconds): nodes of
    /// a fleet with different databases can answer the same client differently. The
    /// country database's, else the ASN database's.
    pub fn build_epoch(&self) -> u64 {
        self.main().reader.metadata().build_epoch
    }

    /// The country database's file, else the ASN database's.
    pub fn path(&self) -> &Path {
        &self.main().path
    }

    /// Every country some network of the country database is in, sorted (from its runs,
    /// read once per database file: for tools, not the query path).
    pub fn countries(&self) -> Vec<Country> {
        if self.country.is_none() {
            return Vec::new();
        }
        let runs = self.country_runs();
        let found: std::collections::BTreeSet<Country> = runs
            .v4
            .iter()
            .map(|(_, (country, _))| country)
            .chain(runs.v6.iter().map(|(_, (country, _))| country))
            .flatten()
            .collect();
        found.into_iter().collect()
    }

    /// Every autonomous system some network of the ASN database is in, sorted (as
    /// [`GeoIp::countries`]).
    pub fn asns(&self) -> Vec<u32> {
        if self.asn.is_none() {
            return Vec::new();
        }
        let runs = self.asn_runs();
        let found: std::collections::BTreeSet<u32> = runs
            .v4
            .iter()
            .map(|(_, asn)| asn)
            .chain(runs.v6.iter().map(|(_, asn)| asn))
            .flatten()
            .collect();
        found.into_iter().collect()
    }

    /// The ASN database's file, when there is one.
    pub fn asn_path(&self) -> Option<&Path> {
        self.asn.as_ref().map(|db| db.path.as_path())
    }

    fn main(&self) -> &Db {
        match (&self.country, &self.asn) {
            (Some(db), _) | (None, Some(db)) => db,
            // Never built: `open_files` returns `None` for no database at all.
            (None, None) => unreachable!("a GeoIp holds at least one database"),
        }
    }

    /// Looks up `addr` in the country database. A lookup error (a corrupt database) or
    /// no country database reads as "unknown location" with prefix length 0, so that an
    /// answer is still given and not cached narrowly.
    pub fn locate(&self, addr: IpAddr) -> Location {
        let Some(db) = &self.country else {
            return Location::default();
        };
        let Ok(result) = db.reader.lookup(addr) else {
            return Location::default();
        };
        let prefix_len = result.network().map(|n| n.prefix()).unwrap_or(0);
        let (country, continent) = place(&result);
        Location {
            country,
            continent,
            prefix_len,
        }
    }

    /// The country database as runs of equal places (no country database: one run of
    /// nowhere). Read at the first call, a walk of the whole database: for load time.
    pub fn country_runs(&self) -> &FamilyRuns<Place> {
        static NOWHERE: LazyLock<FamilyRuns<Place>> = LazyLock::new(|| FamilyRuns {
            v4: Runs::constant((None, None)),
            v6: Runs::constant((None, None)),
        });
        let Some(db) = &self.country else {
            return &NOWHERE;
        };
        match db.runs.get_or_init(|| DbRuns::Country(db.read_runs(place))) {
            DbRuns::Country(runs) => runs,
            DbRuns::Asn(_) => unreachable!("the country database holds places"),
        }
    }

    /// The ASN database as runs of equal AS numbers, as [`GeoIp::country_runs`].
    pub fn asn_runs(&self) -> &FamilyRuns<Option<u32>> {
        static NO_AS: LazyLock<FamilyRuns<Option<u32>>> = LazyLock::new(|| FamilyRuns {
            v4: Runs::constant(None),
            v6: Runs::constant(None),
        });
        let Some(db) = &self.asn else {
            return &NO_AS;
        };
        let read = |result: &maxminddb::LookupResult<'_, Vec<u8>>| {
            result
                .decode::<AsnRecord>()
                .ok()
                .flatten()
                .and_then(|r| r.autonomous_system_number)
        };
        match db.runs.get_or_init(|| DbRuns::Asn(db.read_runs(read))) {
            DbRuns::Asn(runs) => runs,
            DbRuns::Country(_) => unreachable!("the ASN database holds AS numbers"),
        }
    }

    /// The autonomous system `addr` belongs to, and the prefix length of the ASN
    /// database's network that holds it (also when the network has no AS). Without an
    /// ASN database, or on a lookup error: no AS, prefix length 0.
    pub fn locate_asn(&self, addr: IpAddr) -> (Option<u32>, u8) {
        let Some(db) = &self.asn else {
            return (None, 0);
        };
        let Ok(result) = db.reader.lookup(addr) else {
            return (None, 0);
        };
        let prefix_len = result.network().map(|n| n.prefix()).unwrap_or(0);
        let asn = result
            .decode::<AsnRecord>()
            .ok()
            .flatten()
            .and_then(|r| r.autonomous_system_number);
        (asn, prefix_len)
    }
}

/// The country and continent of a country database's record (none without data).
fn place(result: &maxminddb::LookupResult<'_, Vec<u8>>) -> Place {
    let Some(record) = result.decode::<Record<'_>>().ok().flatten() else {
        return (None, None);
    };
    let country = record
        .country
        .and_then(|c| c.iso_code)
        .or(record.country_code)
        .and_then(Country::parse);
    let continent = record
        .continent
        .and_then(|c| c.code)
        .and_then(Continent::parse)
        .or_else(|| country.and_then(continent_of));
    (country, continent)
}

fn file_identity(path: &Path) -> Option<(u64, std::time::SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// The continent of a country, as GeoNames (and so MaxMind) assigns it.
pub fn continent_of(country: Country) -> Option<Continent> {
    use Continent::*;
    // Sorted by country code for binary search; the shipped default database carries
    // only `country_code`, so continents come from this table.
    const TABLE: &[(&str, Continent)] = &[
        ("AD", Europe),
        ("AE", Asia),
        ("AF", Asia),
        ("AG", NorthAmerica),
        ("AI", NorthAmerica),
        ("AL", Europe),
        ("AM", Asia),
        ("AO", Africa),
        ("AQ", Antarctica),
        ("AR", SouthAmerica),
        ("AS", Oceania),
        ("AT", Europe),
        ("AU", Oceania),
        ("AW", NorthAmerica),
        ("AX", Europe),
        ("AZ", Asia),
        ("BA", Europe),
        ("BB", NorthAmerica),
        ("BD", Asia),
        ("BE", Europe),
        ("BF", Africa),
        ("BG", Europe),
        ("BH", Asia),
        ("BI", Africa),
        ("BJ", Africa),
        ("BL", NorthAmerica),
        ("BM", NorthAmerica),
        ("BN", Asia),
        ("BO", SouthAmerica),
        ("BQ", NorthAmerica),
        ("BR", SouthAmerica),
        ("BS", NorthAmerica),
        ("BT", Asia),
        ("BV", Antarctica),
        ("BW", Africa),
        ("BY", Europe),
        ("BZ", NorthAmerica),
        ("CA", NorthAmerica),
        ("CC", Asia),
        ("CD", Africa),
        ("CF", Africa),
        ("CG", Africa),
        ("CH", Europe),
        ("CI", Africa),
        ("CK", Oceania),
        ("CL", SouthAmerica),
        ("CM", Africa),
        ("CN", Asia),
        ("CO", SouthAmerica),
        ("CR", NorthAmerica),
        ("CU", NorthAmerica),
        ("CV", Africa),
        ("CW", NorthAmerica),
        ("CX", Asia),
        ("CY", Europe),
        ("CZ", Europe),
        ("DE", Europe),
        ("DJ", Africa),
        ("DK", Europe),
        ("DM", NorthAmerica),
        ("DO", NorthAmerica),
        ("DZ", Africa),
        ("EC", SouthAmerica),
        ("EE", Europe),
        ("EG", Africa),
        ("EH", Africa),
        ("ER", Africa),
        ("ES", Europe),
        ("ET", Africa),
        ("FI", Europe),
        ("FJ", Oceania),
        ("FK", SouthAmerica),
        ("FM", Oceania),
        ("FO", Europe),
        ("FR", Europe),
        ("GA", Africa),
        ("GB", Europe),
        ("GD", NorthAmerica),
        ("GE", Asia),
        ("GF", SouthAmerica),
        ("GG", Europe),
        ("GH", Africa),
        ("GI", Europe),
        ("GL", NorthAmerica),
        ("GM", Africa),
        ("GN", Africa),
        ("GP", NorthAmerica),
        ("GQ", Africa),
        ("GR", Europe),
        ("GS", Antarctica),
        ("GT", NorthAmerica),
        ("GU", Oceania),
        ("GW", Africa),
        ("GY", SouthAmerica),
        ("HK", Asia),
        ("HM", Antarctica),
        ("HN", NorthAmerica),
        ("HR", Europe),
        ("HT", NorthAmerica),
        ("HU", Europe),
        ("ID", Asia),
        ("IE", Europe),
        ("IL", Asia),
        ("IM", Europe),
        ("IN", Asia),
        ("IO", Asia),
        ("IQ", Asia),
        ("IR", Asia),
        ("IS", Europe),
        ("IT", Europe),
        ("JE", Europe),
        ("JM", NorthAmerica),
        ("JO", Asia),
        ("JP", Asia),
        ("KE", Africa),
        ("KG", Asia),
        ("KH", Asia),
        ("KI", Oceania),
        ("KM", Africa),
        ("KN", NorthAmerica),
        ("KP", Asia),
        ("KR", Asia),
        ("KW", Asia),
        ("KY", NorthAmerica),
        ("KZ", Asia),
        ("LA", Asia),
        ("LB", Asia),
        ("LC", NorthAmerica),
        ("LI", Europe),
        ("LK", Asia),
        ("LR", Africa),
        ("LS", Africa),
        ("LT", Europe),
        ("LU", Europe),
        ("LV", Europe),
        ("LY", Africa),
        ("MA", Africa),
        ("MC", Europe),
        ("MD", Europe),
        ("ME", Europe),
        ("MF", NorthAmerica),
        ("MG", Africa),
        ("MH", Oceania),
        ("MK", Europe),
        ("ML", Africa),
        ("MM", Asia),
        ("MN", Asia),
        ("MO", Asia),
        ("MP", Oceania),
        ("MQ", NorthAmerica),
        ("MR", Africa),
        ("MS", NorthAmerica),
        ("MT", Europe),
        ("MU", Africa),
        ("MV", Asia),
        ("MW", Africa),
        ("MX", NorthAmerica),
        ("MY", Asia),
        ("MZ", Africa),
        ("NA", Africa),
        ("NC", Oceania),
        ("NE", Africa),
        ("NF", Oceania),
        ("NG", Africa),
        ("NI", NorthAmerica),
        ("NL", Europe),
        ("NO", Europe),
        ("NP", Asia),
        ("NR", Oceania),
        ("NU", Oceania),
        ("NZ", Oceania),
        ("OM", Asia),
        ("PA", NorthAmerica),
        ("PE", SouthAmerica),
        ("PF", Oceania),
        ("PG", Oceania),
        ("PH", Asia),
        ("PK", Asia),
        ("PL", Europe),
        ("PM", NorthAmerica),
        ("PN", Oceania),
        ("PR", NorthAmerica),
        ("PS", Asia),
        ("PT", Europe),
        ("PW", Oceania),
        ("PY", SouthAmerica),
        ("QA", Asia),
        ("RE", Africa),
        ("RO", Europe),
        ("RS", Europe),
        ("RU", Europe),
        ("RW", Africa),
        ("SA", Asia),
        ("SB", Oceania),
        ("SC", Africa),
        ("SD", Africa),
        ("SE", Europe),
        ("SG", Asia),
        ("SH", Africa),
        ("SI", Europe),
        ("SJ", Europe),
        ("SK", Europe),
        ("SL", Africa),
        ("SM", Europe),
        ("SN", Africa),
        ("SO", Africa),
        ("SR", SouthAmerica),
        ("SS", Africa),
        ("ST", Africa),
        ("SV", NorthAmerica),
        ("SX", NorthAmerica),
        ("SY", Asia),
        ("SZ", Africa),
        ("TC", NorthAmerica),
        ("TD", Africa),
        ("TF", Antarctica),
        ("TG", Africa),
        ("TH", Asia),
        ("TJ", Asia),
        ("TK", Oceania),
        ("TL", Oceania),
        ("TM", Asia),
        ("TN", Africa),
        ("TO", Oceania),
        ("TR", Asia),
        ("TT", NorthAmerica),
        ("TV", Oceania),
        ("TW", Asia),
        ("TZ", Africa),
        ("UA", Europe),
        ("UG", Africa),
        ("UM", Oceania),
        ("US", NorthAmerica),
        ("UY", SouthAmerica),
        ("UZ", Asia),
        ("VA", Europe),
        ("VC", NorthAmerica),
        ("VE", SouthAmerica),
        ("VG", NorthAmerica),
        ("VI", NorthAmerica),
        ("VN", Asia),
        ("VU", Oceania),
        ("WF", Oceania),
        ("WS", Oceania),
        ("XK", Europe),
        ("YE", Asia),
        ("YT", Africa),
        ("ZA", Africa),
        ("ZM", Africa),
        ("ZW", Africa),
    ];
    TABLE
        .binary_search_by(|(code, _)| code.as_bytes().cmp(&country.0[..]))
        .ok()
        .map(|i| TABLE[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
    }

    /// Every (country, continent) pair of MaxMind's `GeoIP2-Country-Test.json`, which
    /// spreads over the whole alphabet: a lookup that missed part of the table (one not
    /// sorted, say) would fail some of them.
    const MAXMIND_PAIRS: &str = "AE:AS AL:EU AM:AS AT:EU AZ:AS BE:EU BG:EU BH:AS BT:AS BY:EU \
        CH:EU CN:AS CZ:EU DE:EU DK:EU ES:EU FI:EU FR:EU GB:EU GI:EU HK:AS HU:EU IE:EU IL:AS \
        IM:EU IR:AS IT:EU JO:AS JP:AS KR:AS KW:AS LB:AS LY:AF NL:EU NO:EU PH:AS PL:EU RO:EU \
        RS:EU RU:EU SA:AS SE:EU TR:AS TW:AS UA:EU US:NA";

    #[test]
    fn continent_table_agrees_with_maxmind_and_geonames() {
        // GeoNames' continents for the ends of the table and the continents MaxMind's
        // test data lacks.
        let others = "AD:EU AQ:AN AR:SA AU:OC BR:SA CA:NA EG:AF NZ:OC ZA:AF ZW:AF";
        for pair in MAXMIND_PAIRS.split_whitespace().chain(others.split(' ')) {
            let (country, continent) = pair.split_once(':').unwrap();
            assert_eq!(
                continent_of(Country::parse(country).unwrap()),
                Continent::parse(continent),
                "{country}"
            );
        }
        assert_eq!(
            continent_of(Country::parse("cn").unwrap()),
            Some(Continent::Asia)
        );
        assert_eq!(continent_of(Country::parse("QQ").unwrap()), None);
        assert_eq!(continent_of(Country::parse("AA").unwrap()), None);
        assert_eq!(continent_of(Country::parse("ZZ").unwrap()), None);
    }

    // Expected values come from MaxMind's source list of the test databases
    // (`GeoIP2-Country-Test.json`: network, country, continent) and, for networks the
    // list does not hold (reserved ones are empty nodes of the tree) and for the shipped
    // database, from reading the files with a MaxMind DB reader independent of this crate.

    #[test]
    fn reads_geoip2_country_schema() {
        let db = GeoIp::open(&data("tests/data/GeoIP2-Country-Test.mmdb")).unwrap();
        let cases = [
            ("81.2.69.160", Some("GB"), Some(Continent::Europe), 27),
            (
                "216.160.83.56",
                Some("US"),
                Some(Continent::NorthAmerica),
                29,
            ),
            ("175.16.199.1", Some("CN"), Some(Continent::Asia), 24),
            ("89.160.20.112", Some("SE"), Some(Continent::Europe), 28),
            ("2001:218::1", Some("JP"), Some(Continent::Asia), 32),
            ("2001:250::1", Some("CN"), Some(Continent::Asia), 31),
            ("2a02:cfc0::1", Some("FR"), Some(Continent::Europe), 29),
            // No data: the address's empty network, whose prefix still counts.
            ("81.2.64.0", None, None, 22),
            ("127.0.0.1", None, None, 8),
            ("10.1.2.3", None, None, 8),
            ("2001:db8:1::1", None, None, 32),
        ];
        for (addr, country, continent, prefix_len) in cases {
            let got = db.locate(addr.parse().unwrap());
            let want = Location {
                country: country.and_then(Country::parse),
                continent,
                prefix_len,
            };
            assert_eq!(got, want, "{addr}");
        }
    }

    #[test]
    fn reads_city_and_geolite2_databases() {
        for file in [
            "tests/data/GeoIP2-City-Test.mmdb",
            "tests/data/GeoLite2-Country-Test.mmdb",
        ] {
            let db = GeoIp::open(&data(file)).unwrap();
            let gb = db.locate("81.2.69.160".parse().unwrap());
            assert_eq!(gb.country, Country::parse("GB"), "{file}");
            assert_eq!(gb.continent, Some(Continent::Europe), "{file}");
            assert_eq!(gb.prefix_len, 27, "{file}: {gb:?}");
        }
    }

    #[test]
    fn reads_country_code_schema_of_the_shipped_database() {
        let db = GeoIp::open(&data("geoip/geo-whois-asn-country.mmdb")).unwrap();
        // The database has only `country_code`; the continent is GeoNames' for the country.
        let cases = [
            ("1.0.0.1", "AU", Continent::Oceania, 24),
            ("8.8.8.8", "US", Continent::NorthAmerica, 15),
            ("193.0.0.1", "NL", Continent::Europe, 20),
            ("81.2.69.160", "GB", Continent::Europe, 18),
            ("175.16.199.1", "CN", Continent::Asia, 13),
        ];
        for (addr, country, continent, prefix_len) in cases {
            let got = db.locate(addr.parse().unwrap());
            let want = Location {
                country: Country::parse(country),
                continent: Some(continent),
                prefix_len,
            };
            assert_eq!(got, want, "{addr}");
        }
    }

    /// Every network of MaxMind's `GeoLite2-ASN-Test.json` (the source the test
    /// database was built from): its first and last address map to its AS, in a network
    /// of the database that holds it (MaxMind's writer merges neighbours with the same
    /// record, so 12.84.0.0/15 and 12.86.0.0/15 of AS7018 are one /14).
    #[test]
    fn reads_every_network_of_the_asn_test_database() {
        let db = GeoIp::open_files(None, Some(&data("tests/data/GeoLite2-ASN-Test.mmdb")), None)
            .unwrap()
            .unwrap();
        assert!(db.has_asn() && !db.has_country());
        let source: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(data("tests/data/GeoLite2-ASN-Test.json")).unwrap(),
        )
        .unwrap();
        let mut checked = 0;
        for entry in source.as_array().unwrap() {
            let (net, record) = entry.as_object().unwrap().iter().next().unwrap();
            let net: ipnet::IpNet = net.parse().unwrap();
            let asn = record["autonomous_system_number"]
                .as_u64()
                .map(|n| n as u32);
            for addr in [net.network(), net.broadcast()] {
                let (found, prefix_len) = db.locate_asn(addr);
                assert_eq!(found, asn, "{addr} in {net}");
                assert!(
                    prefix_len <= net.prefix_len(),
                    "{addr} in {net}: /{prefix_len}"
                );
            }
            checked += 1;
        }
        assert_eq!(checked, 720);
        // Named in the brief: Google's 1.0.0.0/24 and AT&T's 12.81.96.0/19.
        assert_eq!(db.locate_asn("1.0.0.1".parse().unwrap()), (Some(15169), 24));
        assert_eq!(
            db.locate_asn("12.81.100.1".parse().unwrap()),
            (Some(7018), 19)
        );
        // Country lookups without a country database: unknown, and prefix 0.
        assert_eq!(db.locate("1.0.0.1".parse().unwrap()), Location::default());
    }

    #[test]
    fn codes_parse_case_insensitively_and_print_upper_case() {
        assert_eq!(
            Country::parse("gb").map(|c| c.to_string()),
            Some("GB".into())
        );
        assert_eq!(Country::parse("G"), None);
        assert_eq!(Country::parse("GBR"), None);
        assert_eq!(Country::parse("G1"), None);
        for code in Continent::CODES.split(' ') {
            let continent = Continent::parse(&code.to_ascii_lowercase()).unwrap();
            assert_eq!(continent.to_string(), code);
        }
        assert_eq!(Continent::parse("EA"), None);
    }
}
