//! Client location from a MaxMind DB file.
//!
//! Two schemas are read: GeoIP2/GeoLite2 Country and City (`country.iso_code`,
//! `continent.code`) and the flat `country_code` schema of the shipped default
//! database, whose continent is derived from the country with [`continent_of`].
//! A lookup decodes borrowed strings only, so it does not allocate.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

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
        Some(match code.to_ascii_uppercase().as_str() {
            "AF" => Self::Africa,
            "AN" => Self::Antarctica,
            "AS" => Self::Asia,
            "EU" => Self::Europe,
            "NA" => Self::NorthAmerica,
            "OC" => Self::Oceania,
            "SA" => Self::SouthAmerica,
            _ => return None,
        })
    }

    /// The two-letter code.
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

/// An open MaxMind DB, loaded into memory.
pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
    path: PathBuf,
    /// Length and modification time when opened, to tell an unchanged file.
    identity: Option<(u64, std::time::SystemTime)>,
}

impl fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoIp").field("path", &self.path).finish()
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

impl GeoIp {
    /// Opens and checks the database at `path`: its metadata, every node of its search
    /// tree and every record of its data section (as MaxMind's `mmdbverify` does), so a
    /// damaged file is refused like any bad edit instead of quietly sending every region
    /// answer to the default origins.
    pub fn open(path: &Path) -> Result<Self, GeoIpError> {
        let reader = maxminddb::Reader::open_readfile(path).map_err(|source| GeoIpError::Open {
            path: path.to_owned(),
            source,
        })?;
        // Walk every network and decode its record: a damaged tree or data section is
        // refused now, like any bad edit, instead of quietly sending every region answer
        // to the default origins (about 0.1 s for a million networks in a release build).
        // maxminddb's own `verify` also insists on metadata that valid databases (the
        // shipped one) leave out.
        let damaged = |source| GeoIpError::Damaged {
            path: path.to_owned(),
            source,
        };
        for network in reader.networks(Default::default()).map_err(damaged)? {
            network
                .and_then(|n| n.decode::<Record<'_>>().map(|_| ()))
                .map_err(damaged)?;
        }
        let identity = file_identity(path);
        Ok(Self {
            reader,
            path: path.to_owned(),
            identity,
        })
    }

    /// True when `path` is the file this database was read from, unchanged since.
    pub fn is_unchanged(&self, path: &Path) -> bool {
        self.path == path && self.identity.is_some() && self.identity == file_identity(path)
    }

    /// Looks up `addr`. A lookup error (a corrupt database) reads as "unknown location"
    /// with prefix length 0, so that an answer is still given and not cached narrowly.
    pub fn locate(&self, addr: IpAddr) -> Location {
        let Ok(result) = self.reader.lookup(addr) else {
            return Location::default();
        };
        let prefix_len = result.network().map(|n| n.prefix()).unwrap_or(0);
        let record = result.decode::<Record<'_>>().ok().flatten();
        let Some(record) = record else {
            return Location {
                prefix_len,
                ..Location::default()
            };
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
        Location {
            country,
            continent,
            prefix_len,
        }
    }
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

    #[test]
    fn continent_table_is_sorted_and_complete_for_known_cases() {
        let code = |s| continent_of(Country::parse(s).unwrap());
        assert_eq!(code("GB"), Some(Continent::Europe));
        assert_eq!(code("cn"), Some(Continent::Asia));
        assert_eq!(code("US"), Some(Continent::NorthAmerica));
        assert_eq!(code("BR"), Some(Continent::SouthAmerica));
        assert_eq!(code("AD"), Some(Continent::Europe));
        assert_eq!(code("ZW"), Some(Continent::Africa));
        assert_eq!(code("QQ"), None);
    }

    #[test]
    fn reads_geoip2_country_schema() {
        let db = GeoIp::open(&data("tests/data/GeoIP2-Country-Test.mmdb")).unwrap();
        let gb = db.locate("81.2.69.160".parse().unwrap());
        assert_eq!(gb.country, Country::parse("GB"));
        assert_eq!(gb.continent, Some(Continent::Europe));
        assert!(gb.prefix_len > 0 && gb.prefix_len <= 32, "{gb:?}");
        let us = db.locate("216.160.83.56".parse().unwrap());
        assert_eq!(us.country, Country::parse("US"));
        let jp = db.locate("2001:218::1".parse().unwrap());
        assert_eq!(jp.country, Country::parse("JP"));
        assert_eq!(jp.prefix_len, 32);
        let nowhere = db.locate("127.0.0.1".parse().unwrap());
        assert_eq!(nowhere.country, None);
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
            assert!(gb.prefix_len > 0, "{file}: {gb:?}");
        }
    }

    #[test]
    fn reads_country_code_schema_of_the_shipped_database() {
        let db = GeoIp::open(&data("geoip/geo-whois-asn-country.mmdb")).unwrap();
        // 1.0.0.0/24 is APNIC's, registered to AU.
        let loc = db.locate("1.0.0.1".parse().unwrap());
        assert!(loc.country.is_some(), "{loc:?}");
        assert_eq!(loc.continent, loc.country.and_then(continent_of));
    }
}
