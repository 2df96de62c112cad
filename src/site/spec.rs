//! The site file `zones/<origin>.lb.yaml` as written by people (SPEC §3).
//!
//! These types mirror the file one to one and check only its shape; every rule about
//! values lives in [`super::validate`], which the management API shares.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

/// A whole site file.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    /// Origin groups by name, in file order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub origin_groups: IndexMap<String, Spanned<GroupSpec>>,
    /// Load-balancing tasks, in file order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tasks: Vec<Spanned<TaskSpec>>,
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
    pub policy: Policy,
    /// The origins, in file order.
    #[serde(default)]
    pub origins: Vec<Spanned<OriginSpec>>,
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
}

/// One origin of a group.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OriginSpec {
    /// An IPv4 or IPv6 address or a domain name (a port makes it unusable for DNS-only).
    pub address: String,
    /// Share of the answers, 0..=100; 0 drains the origin to a last resort.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// ISO 3166-1 alpha-2 codes whose clients get this origin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// Continent codes (AF AN AS EU NA OC SA) whose clients get this origin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub continents: Vec<String>,
    /// Client networks (CIDR) that get this origin; the longest prefix wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
}

fn default_weight() -> u32 {
    1
}

/// One load-balancing task.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Stable identifier, shared by the file and the API; derived from the hostname when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The name answered, inside the site; may be the apex or a wildcard `*.name`.
    pub hostname: String,
    /// Only `dns_only` runs here; the proxy modes need an edge proxy.
    #[serde(default)]
    pub mode: Mode,
    /// The group whose origins answer.
    pub origin_group: String,
    /// TTL of the answer records, 1..=86400 seconds.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// Records per answer.
    #[serde(default = "default_answers")]
    pub answers: u32,
    /// A disabled task leaves the zone's own records answering.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
}

fn default_ttl() -> u32 {
    60
}

fn default_answers() -> u32 {
    1
}

fn default_enabled() -> bool {
    true
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
