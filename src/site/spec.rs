//! The site file `zones/<origin>.lb.yaml` as written by people (SPEC §3).
//!
//! These types mirror the file one to one and check only its shape; every rule about
//! values lives in [`super::validate`], which the management API shares. Every value is
//! [`Lined`], so a rule broken by one key reports that key's line.

use std::ops::Deref;

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_saphyr::Spanned;

/// A value and the line it was written on (`None` when it came from the API or a
/// default). Equality ignores the line: the same value moved in the file is unchanged.
#[derive(Clone, Debug, Default)]
pub struct Lined<T> {
    pub value: T,
    pub line: Option<u64>,
}

impl<T> Lined<T> {
    /// A value with no line.
    pub fn new(value: T) -> Self {
        Self { value, line: None }
    }
}

impl<T> Deref for Lined<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: PartialEq> PartialEq for Lined<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: Eq> Eq for Lined<T> {}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lined<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Spanned learns the line from serde-saphyr; other formats (JSON) give line 0.
        let spanned = Spanned::<T>::deserialize(deserializer)?;
        Ok(Self {
            value: spanned.value,
            line: Some(spanned.referenced.line()).filter(|&line| line > 0),
        })
    }
}

impl<T: Serialize> Serialize for Lined<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

/// The operator's wording for a value of the wrong type at `path` (`tasks[0].ttl`), when
/// the field is one of the whole numbers of a site file: serde says `invalid u32` or
/// `expected string scalar`, which names the parser's type, not the rule. `None` for
/// other fields, whose serde message is kept.
pub fn whole_number_message(path: &str) -> Option<String> {
    let field = path.rsplit('.').next()?;
    let rule = match field {
        "weight" => "a whole number 0..100",
        "ttl" => "a whole number of seconds 1..86400",
        "answers" => "a whole number 1..16",
        "port" => "a whole number 1..65535",
        "min_up" => "a whole number of origins, at least 1",
        "fall" | "rise" => "a whole number of checks, at least 1",
        _ => return None,
    };
    Some(format!("{path}: {field} must be {rule}"))
}

/// A deserialization path as an operator writes it: `tasks[5].frobnicate`.
///
/// serde-saphyr hands every [`Lined`] value to serde as a map `{value, referenced,
/// defined}`, so a raw path through one carries an extra `value` segment right after the
/// segment that reached it (`tasks[5].value.frobnicate`); this drops those. A `value`
/// the operator wrote is kept: at the top level, as a group's name (right after
/// `origin_groups`, which is not [`Lined`]), or as a key inside a [`Lined`] value (right
/// after a dropped one). `?` (a key serde could not name) is dropped too. Only for paths
/// from YAML: JSON bodies carry no such segment.
pub fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    let mut previous: Option<&Segment> = None;
    let mut previous_dropped = false;
    for segment in path {
        let wrapper = match segment {
            Segment::Map { key } if key == "value" => match previous {
                None => false,
                Some(Segment::Map { key }) if key == "origin_groups" && out == "origin_groups" => {
                    false
                }
                Some(_) => !previous_dropped,
            },
            _ => false,
        };
        previous = Some(segment);
        previous_dropped = wrapper;
        match segment {
            _ if wrapper => {}
            Segment::Unknown => {}
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
        }
    }
    out
}

/// A whole site file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    /// Origin groups by name, in file order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub origin_groups: IndexMap<String, Lined<GroupSpec>>,
    /// Load-balancing tasks, in file order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tasks: Vec<Lined<TaskSpec>>,
    /// Addresses or prefixes allowed to transfer the zone (SPEC §3, §9).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub secondaries: Vec<Lined<SecondarySpec>>,
    /// The primary the zone is transferred from, instead of a zone file (SPEC §13).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<PrimarySpec>,
    /// Present: lbdns signs the zone (SPEC §11).
    #[serde(
        default,
        deserialize_with = "super::dnssec::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub dnssec: Option<Lined<super::dnssec::DnssecSpec>>,
}

/// An entry of `secondaries:`: an address or prefix (SPEC §3), or one with the TSIG key
/// its requests must be signed with (SPEC §13).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(
    untagged,
    expecting = "expected an address, an address:port or a prefix, or {address: ..., tsig: KEY}"
)]
pub enum SecondarySpec {
    Address(String),
    Keyed { address: String, tsig: String },
}

impl SecondarySpec {
    pub fn address(&self) -> &str {
        match self {
            Self::Address(address) | Self::Keyed { address, .. } => address,
        }
    }

    pub fn tsig(&self) -> Option<&str> {
        match self {
            Self::Address(_) => None,
            Self::Keyed { tsig, .. } => Some(tsig),
        }
    }
}

/// `primary:` of a site file: where a secondary zone comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrimarySpec {
    /// `IP` or `IP:PORT` (port 53 when absent), tried in order.
    pub addresses: Vec<String>,
    /// The TSIG key transfers are signed with: `keys/tsig/<name>.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsig: Option<String>,
}

impl PrimarySpec {
    /// The primaries' socket addresses, or the one that is not an address.
    pub fn socket_addrs(&self) -> Result<Vec<std::net::SocketAddr>, String> {
        if self.addresses.is_empty() {
            return Err("primary.addresses: list at least one primary".to_owned());
        }
        self.addresses
            .iter()
            .map(|a| {
                a.parse::<std::net::SocketAddr>()
                    .or_else(|_| a.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
                    .map_err(|_| {
                        format!("primary.addresses: {a:?} is not IP or IP:PORT (e.g. 192.0.2.1 or \"192.0.2.2:5300\")")
                    })
            })
            .collect()
    }
}

/// A key written with no value (`tasks:`) means "none", as an operator would expect.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// One origin group.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// How a query picks among the origins.
    #[serde(default)]
    pub policy: Lined<Policy>,
    /// The origins, in file order.
    #[serde(default)]
    pub origins: Vec<Lined<OriginSpec>>,
    /// How the origins are checked (SPEC §10); without one they always count as up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<Lined<HealthCheckSpec>>,
    /// The group that answers while fewer than `min_up` origins of this one are usable
    /// (SPEC §12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Lined<String>>,
    /// Usable origins below which the fallback answers, default 1; read wide so an
    /// out-of-range value gets a range message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_up: Option<Lined<i64>>,
    /// What a task answers when its whole fallback chain is down, default fail open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_all_down: Option<Lined<WhenAllDown>>,
}

impl GroupSpec {
    /// A group with these origins and nothing else set.
    pub fn new(policy: Policy, origins: Vec<Lined<OriginSpec>>) -> Self {
        Self {
            policy: Lined::new(policy),
            origins,
            health_check: None,
            fallback: None,
            min_up: None,
            when_all_down: None,
        }
    }
}

/// What a task answers when no group of its fallback chain has enough usable origins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenAllDown {
    /// Answer from the task's own group as if its origins were up (SPEC §4).
    #[default]
    FailOpen,
    /// SERVFAIL: resolvers try again later or elsewhere.
    Servfail,
    /// NOERROR with no records and the SOA: a negative answer cached for the SOA minimum.
    Nodata,
}

/// A group's health check as written (SPEC §10). Numbers are read wide so that an
/// out-of-range value gets a range message, not a type error.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSpec {
    #[serde(rename = "type")]
    pub kind: Lined<CheckKind>,
    /// The port checked (not the port answered: answers carry no port).
    pub port: Lined<i64>,
    /// HTTP(S) only: the path requested, default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Lined<String>>,
    /// HTTP(S) only: the Host header and TLS server name, default the origin's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Lined<String>>,
    /// HTTP(S) only: the statuses that pass, default any 2xx or 3xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<Lined<Vec<i64>>>,
    /// Seconds between two checks of one origin, default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Lined<f64>>,
    /// Seconds a check may take, default min(3, interval / 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Lined<f64>>,
    /// Failures in a row that take an up origin down, default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fall: Option<Lined<i64>>,
    /// Passes in a row that bring a down origin up, default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rise: Option<Lined<i64>>,
    /// HTTP(S) only: a response header in which the origin reports its own weight 0..100
    /// (SPEC §12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_header: Option<Lined<String>>,
}

impl HealthCheckSpec {
    /// A check of this kind on `port`, every other key at its default.
    pub fn new(kind: CheckKind, port: i64) -> Self {
        Self {
            kind: Lined::new(kind),
            port: Lined::new(port),
            path: None,
            host: None,
            expect_status: None,
            interval: None,
            timeout: None,
            fall: None,
            rise: None,
            weight_header: None,
        }
    }
}

/// What a health check does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// A TCP connection is accepted.
    Tcp,
    /// An HTTP GET gets an expected status.
    Http,
    /// The same over TLS, with the certificate verified.
    Https,
}

/// How a group picks its origins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// At random, in proportion to weight.
    #[default]
    Weight,
    /// By the client's region, then by weight inside the region.
    Region,
    /// The origin with the lowest health-check round-trip time from this server.
    Nearest,
}

/// One origin of a group.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OriginSpec {
    /// An IPv4 or IPv6 address or a domain name (a port makes it unusable for DNS-only).
    pub address: Lined<String>,
    /// Share of the answers, 0..=100; 0 drains the origin to a last resort.
    #[serde(default = "default_weight")]
    pub weight: Lined<u32>,
    /// ISO 3166-1 alpha-2 codes whose clients get this origin.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub countries: Lined<Vec<String>>,
    /// Continent codes (AF AN AS EU NA OC SA) whose clients get this origin.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub continents: Lined<Vec<String>>,
    /// Client networks (CIDR) that get this origin; the longest prefix wins.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub subnets: Lined<Vec<String>>,
    /// Autonomous system numbers whose clients get this origin (needs an ASN database);
    /// read wide so an out-of-range number gets a range message.
    #[serde(default, skip_serializing_if = "no_asns")]
    pub asns: Lined<Vec<i64>>,
}

impl OriginSpec {
    /// An origin at `address` with the default weight and no region keys.
    pub fn new(address: &str) -> Self {
        Self {
            address: Lined::new(address.to_owned()),
            weight: default_weight(),
            countries: Lined::default(),
            continents: Lined::default(),
            subnets: Lined::default(),
            asns: Lined::default(),
        }
    }
}

fn default_weight() -> Lined<u32> {
    Lined::new(1)
}

fn is_empty(list: &Lined<Vec<String>>) -> bool {
    list.is_empty()
}

fn no_asns(list: &Lined<Vec<i64>>) -> bool {
    list.is_empty()
}

/// One load-balancing task.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Stable identifier, shared by the file and the API; derived from the hostname when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Lined<String>>,
    /// The name answered, inside the site; may be the apex or a wildcard `*.name`.
    pub hostname: Lined<String>,
    /// Only `dns_only` runs here; the proxy modes need an edge proxy.
    #[serde(default)]
    pub mode: Lined<Mode>,
    /// The group whose origins answer.
    pub origin_group: Lined<String>,
    /// TTL of the answer records, 1..=86400 seconds.
    #[serde(default = "default_ttl")]
    pub ttl: Lined<u32>,
    /// Records per answer.
    #[serde(default = "default_answers")]
    pub answers: Lined<u32>,
    /// A disabled task leaves the zone's own records answering.
    #[serde(default = "default_enabled")]
    pub enabled: Lined<bool>,
    /// How weighted picks follow a client (SPEC §12); absent, each query draws anew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<Lined<Stickiness>>,
}

impl TaskSpec {
    /// A task answering `hostname` from `group`, every other key at its default.
    pub fn new(hostname: &str, group: &str) -> Self {
        Self {
            id: None,
            hostname: Lined::new(hostname.to_owned()),
            mode: Lined::default(),
            origin_group: Lined::new(group.to_owned()),
            ttl: default_ttl(),
            answers: default_answers(),
            enabled: default_enabled(),
            stickiness: None,
        }
    }
}

/// How a task's weighted picks follow a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stickiness {
    /// Rendezvous hashing of the client's prefix (/24 IPv4, /56 IPv6, or the ECS source
    /// prefix when shorter): a client keeps its origin.
    ClientSubnet,
}

fn default_ttl() -> Lined<u32> {
    Lined::new(60)
}

fn default_answers() -> Lined<u32> {
    Lined::new(1)
}

fn default_enabled() -> Lined<bool> {
    Lined::new(true)
}

/// How a task serves traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Answers DNS queries with origin addresses.
    #[default]
    DnsOnly,
    /// Needs an edge proxy; rejected by this server.
    Proxy,
    /// Needs an edge proxy with TLS; rejected by this server.
    SecureProxy,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_keep_their_path() {
        let body = br#"{"hostname":"x.example.com","origin_group":"web","ttl":"x"}"#;
        let de = &mut serde_json::Deserializer::from_slice(body);
        let err = serde_path_to_error::deserialize::<_, TaskSpec>(de).unwrap_err();
        assert_eq!(err.path().to_string(), "ttl", "{}", err.inner());
    }

    /// The API words a wrong-typed number by its path, as `check` does for a file.
    #[test]
    fn whole_numbers_are_worded_by_their_path() {
        let body = serde_json::json!({"origins": [{"address": "192.0.2.1", "weight": 2.5}]});
        let err = serde_path_to_error::deserialize::<_, GroupSpec>(body).unwrap_err();
        assert_eq!(
            whole_number_message(&err.path().to_string()).as_deref(),
            Some("origins[0].weight: weight must be a whole number 0..100")
        );
        assert_eq!(whole_number_message("origins[0].address"), None);
        assert_eq!(whole_number_message(""), None);
    }

    /// The API parses bodies through a `serde_json::Value`: its paths have no `value`.
    #[test]
    fn json_paths_through_lined_values_have_no_wrapper() {
        for (body, want) in [
            (
                serde_json::json!({"origins": [{"address": "192.0.2.1", "weight": "x"}]}),
                "origins[0].weight",
            ),
            (
                serde_json::json!({"origins": [{"address": "192.0.2.1", "frobnicate": 1}]}),
                "origins[0].frobnicate",
            ),
            (
                serde_json::json!({"origins": [{"address": "192.0.2.1", "countries": [1]}]}),
                "origins[0].countries[0]",
            ),
        ] {
            let err = serde_path_to_error::deserialize::<_, GroupSpec>(body).unwrap_err();
            assert_eq!(err.path().to_string(), want, "{}", err.inner());
        }
    }
}
