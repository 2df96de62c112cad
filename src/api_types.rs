//! The management API's request and reply bodies that the server ([`crate::api`]) and its
//! command-line client ([`crate::client`]) share: each is defined once, so the two cannot
//! disagree on a field's name or type.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Every error reply: `{"error": {"code": ..., "message": ...}}`, with `reason` and `hint`
/// when the site refused a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: ErrorBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The class of error (`not_found`, `conflict`, `invalid`...), one per HTTP status.
    pub code: String,
    /// For a change the site refused: why, for a client to say what would fix it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Refusal>,
    pub message: String,
    /// The request that would make the refused change possible, for an HTTP client (the
    /// command-line client names its own command instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Why the site refused a change (the store's `EditError`, by kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    NoTask,
    NoGroup,
    TaskExists,
    DifferentTaskExists,
    /// Only a disabled task can be deleted.
    TaskEnabled,
    GroupInUse,
    IdChanged,
}

/// `PATCH /v1/sites/{site}/tasks/{id}`: the fields to change; the others stay.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `client_subnet`, or `none` for random draws by weight (SPEC §12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<StickinessPatch>,
}

/// A task's stickiness as a patch sets it: `none` removes the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StickinessPatch {
    ClientSubnet,
    None,
}

impl TaskPatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// `GET` and `PUT /v1/sites/{site}/secondaries`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secondaries {
    pub secondaries: Vec<String>,
}

/// A task as `GET /v1/sites/{site}/tasks[/{id}]` shows it, as far as a client reads it
/// (the server sends every field of the task spec, and `nodes` on a fleet).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub hostname: String,
    pub origin_group: String,
    pub ttl: u32,
    pub answers: u32,
    pub enabled: bool,
    /// `deploying`, `effective` or `ineffective`.
    pub status: String,
}

/// `GET /v1/sites/{site}/tasks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskList {
    pub tasks: Vec<Task>,
}

/// `GET /v1/nodes`: the fleet as the answering node sees it (a node serving files alone is
/// a fleet of one: no `node`, no `nodes`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeList {
    /// The answering node's id.
    pub node: Option<String>,
    pub nodes: Vec<Node>,
}

/// A live node of the fleet, as its key in etcd says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    /// The revision of each zone and site file the node serves, by file name.
    pub files: BTreeMap<String, i64>,
    /// The build time (Unix seconds) of the node's GeoIP database.
    pub geoip_build_epoch: Option<u64>,
    /// True once every origin the node checks has a first health result.
    pub health_ready: bool,
}

/// `GET /v1/sites/{site}/origin-groups`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupList {
    pub origin_groups: Vec<Group>,
}

/// An origin group as `GET .../origin-groups[/{name}]` shows it, as far as a client reads
/// it (the server also sends the health check and the fallback keys).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    /// `weight`, `region`, `nearest`...
    pub policy: String,
    pub origins: Vec<Origin>,
    pub dns_only: DnsOnly,
    /// Ids of the tasks that use the group.
    pub used_by: Vec<String>,
    /// The next group of its fallback chain (SPEC §12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// With a fallback: the group of the chain answering now; `None` while the whole
    /// chain is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<String>,
}

/// An origin of a group: as written, with its health when the group is checked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    pub address: String,
    pub weight: u32,
    #[serde(default)]
    pub countries: Vec<String>,
    #[serde(default)]
    pub continents: Vec<String>,
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Autonomous systems (SPEC §12).
    #[serde(default)]
    pub asns: Vec<i64>,
    #[serde(default)]
    pub health: Option<OriginHealth>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OriginHealth {
    /// `unchecked`, `up` or `down`.
    pub state: String,
    /// RFC 3339, UTC.
    pub since: String,
    pub last_error: Option<String>,
    /// The smoothed check round trip, milliseconds (what `nearest` ranks).
    #[serde(default)]
    pub rtt_ms: Option<f64>,
    /// The weight the origin reported of itself (`weight_header`), while in force.
    #[serde(default)]
    pub reported_weight: Option<u32>,
}

/// Whether a DNS-only task can use the group, and why not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsOnly {
    pub usable: bool,
    pub reasons: Vec<String>,
}

/// `GET /v1/sites`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteList {
    pub sites: Vec<Site>,
}

/// A site (a zone with its site file), by name, with how many groups and tasks it has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// The zone without its trailing dot: the `{site}` of the API's paths.
    pub name: String,
    pub origin_groups: usize,
    pub tasks: usize,
}
