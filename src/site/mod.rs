//! Sites: a zone's origin groups and load-balancing tasks (SPEC §3).
//!
//! [`spec`] is the file as written; [`validate`] turns it into the checked model here,
//! enforcing every rule of SPEC §3 and reporting each broken rule with the line it is on
//! (files) and the field it concerns (files and API alike). [`dnssec`] is the `dnssec:`
//! block (SPEC §11).

pub mod dnssec;
pub mod spec;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::rr::Name;
use ipnet::IpNet;

use crate::geoip::{Continent, Country, continent_of};
pub use spec::SiteSpec;
pub use spec::{CheckKind, Mode, Policy, WhenAllDown};
use spec::{GroupSpec, HealthCheckSpec, Lined, OriginSpec, TaskSpec};

/// Most records one answer may carry: a weighted draw without replacement stays a short
/// loop over a stack array, and more addresses than this do not fit a 512-byte reply.
pub const MAX_ANSWERS: u32 = 16;
/// Largest origin weight.
pub const MAX_WEIGHT: u32 = 100;
/// Most groups a fallback chain may hold, the task's own included: each is walked on
/// every query while the ones before it are down.
pub const MAX_CHAIN: usize = 8;
/// Allowed task TTLs, in seconds.
pub const TTL_RANGE: std::ops::RangeInclusive<u32> = 1..=86400;

/// The largest site file lbdns reads, and so writes: room for about 250,000 tasks in the
/// canonical form (some 130 bytes each), 2.5 times the scale goal of 100,000 tasks a site.
pub const MAX_FILE_BYTES: u64 = 32 << 20;

/// The most YAML nodes (keys, values, lists, maps) read from one site file, aliases
/// expanded. The canonical form spends 8 bytes or more on a node (15 nodes a task), so any
/// file under [`MAX_FILE_BYTES`] written plainly fits; what this stops is an anchor and
/// alias "billion laughs" expanding a small file into gigabytes.
pub const MAX_YAML_NODES: usize = (MAX_FILE_BYTES / 4) as usize;

/// What lbdns reads from one site file at most: [`MAX_FILE_BYTES`] and [`MAX_YAML_NODES`]
/// unless a test asks for less.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub file_bytes: u64,
    pub yaml_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            file_bytes: MAX_FILE_BYTES,
            yaml_nodes: MAX_YAML_NODES,
        }
    }
}

/// A size in operator's units: `32 MiB`, `4096 bytes`.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b.is_multiple_of(1 << 20) => format!("{} MiB", b >> 20),
        b => format!("{b} bytes"),
    }
}

/// A checked site.
#[derive(Clone, Debug)]
pub struct Site {
    /// The zone origin, fully qualified and lower case.
    pub origin: Name,
    pub groups: Vec<OriginGroup>,
    pub tasks: Vec<Task>,
    /// Who may transfer the zone; empty: nobody.
    pub secondaries: Vec<Secondary>,
    /// How lbdns signs the zone; `None`: it does not (SPEC §11).
    pub dnssec: Option<dnssec::DnssecPolicy>,
}

/// A server allowed to transfer the zone (AXFR, and IXFR answered in full).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secondary {
    /// Source addresses allowed.
    pub allowed: IpNet,
    /// Where NOTIFY goes when the zone changes: a single address (port 53, or the port
    /// given as `address:port`); a prefix is allowed to transfer but not notified.
    pub notify: Option<SocketAddr>,
    /// The TSIG key (in `keys/tsig/`) its requests must be signed with, and our NOTIFY is.
    pub tsig: Option<String>,
}

impl Secondary {
    /// Reads `192.0.2.53`, `2001:db8::/64`, `192.0.2.53:5300` or `[2001:db8::53]:5300`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Ok(addr) = text.parse::<IpAddr>() {
            return Some(Self {
                allowed: IpNet::from(addr),
                notify: Some(SocketAddr::new(addr, 53)),
                tsig: None,
            });
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Some(Self {
                allowed: IpNet::from(addr.ip()),
                notify: Some(addr),
                tsig: None,
            });
        }
        let net = text.parse::<IpNet>().ok()?;
        // A prefix with host bits set is most likely a typo for another network.
        (net.trunc() == net).then_some(Self {
            allowed: net,
            notify: None,
            tsig: None,
        })
    }
}

impl Site {
    /// The group called `name`.
    pub fn group(&self, name: &str) -> Option<&OriginGroup> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The fallback chain of `group`: the group itself, then each fallback in turn.
    /// Validation refuses cycles, unknown groups and chains over [`MAX_CHAIN`]; on an
    /// unchecked site the walk stops there too.
    pub fn chain<'a>(&'a self, group: &'a OriginGroup) -> Vec<&'a OriginGroup> {
        let mut chain = vec![group];
        while let Some(next) = chain[chain.len() - 1].fallback.group.as_deref()
            && chain.len() < MAX_CHAIN
            && let Some(next) = self.group(next)
            && !chain.iter().any(|g| g.name == next.name)
        {
            chain.push(next);
        }
        chain
    }
}

/// A checked origin group. It may be unusable for DNS-only as long as no task uses it.
#[derive(Clone, Debug)]
pub struct OriginGroup {
    pub name: String,
    pub policy: Policy,
    pub origins: Vec<Origin>,
    pub health_check: Option<HealthCheck>,
    pub fallback: Fallback,
}

/// Where a group's answers go when its origins are down (SPEC §12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fallback {
    /// The next group of the chain.
    pub group: Option<String>,
    /// Usable origins (of the query's family) below which the next group answers.
    pub min_up: u32,
    /// What a task on this group answers when its whole chain is down.
    pub when_all_down: WhenAllDown,
}

impl Default for Fallback {
    fn default() -> Self {
        Self {
            group: None,
            min_up: 1,
            when_all_down: WhenAllDown::FailOpen,
        }
    }
}

/// A checked health check (SPEC §10), defaults applied.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HealthCheck {
    pub kind: CheckKind,
    pub port: u16,
    /// HTTP(S): the path requested.
    pub path: String,
    /// HTTP(S): Host header and TLS server name; `None` uses the origin's address.
    pub host: Option<String>,
    /// HTTP(S): the statuses that pass; empty means any 2xx or 3xx.
    pub expect_status: Vec<u16>,
    pub interval: Duration,
    pub timeout: Duration,
    pub fall: u32,
    pub rise: u32,
    /// HTTP(S): the response header carrying the origin's own weight.
    pub weight_header: Option<String>,
}

impl HealthCheck {
    /// True when an HTTP status passes the check.
    pub fn passes(&self, status: u16) -> bool {
        match self.expect_status.is_empty() {
            true => (200..400).contains(&status),
            false => self.expect_status.contains(&status),
        }
    }
}

/// Allowed check intervals, in seconds.
pub const CHECK_INTERVAL: std::ops::RangeInclusive<f64> = 0.2..=3600.0;
/// Allowed `fall` and `rise` counts.
pub const CHECK_STREAK: std::ops::RangeInclusive<i64> = 1..=10;

impl OriginGroup {
    /// Why a DNS-only task cannot use this group; empty when it can.
    pub fn dns_only_problems(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.origins.is_empty() {
            reasons.push("the group has no origins".to_owned());
        }
        for origin in &self.origins {
            if let Target::WithPort(text) = &origin.target {
                reasons.push(format!("origin {text} has a port"));
            }
        }
        let has_ip = self.origins.iter().any(|o| o.target.ip().is_some());
        let has_name = self.origins.iter().any(|o| o.target.name().is_some());
        if has_ip && has_name {
            reasons.push("the group mixes IP and domain-name origins".to_owned());
        }
        reasons
    }

    /// True when the group's origins are domain names, answered as CNAME.
    pub fn is_cname(&self) -> bool {
        self.origins.iter().any(|o| o.target.name().is_some())
    }
}

/// One checked origin.
#[derive(Clone, Debug)]
pub struct Origin {
    pub target: Target,
    pub weight: u32,
    pub countries: Vec<Country>,
    pub continents: Vec<Continent>,
    pub subnets: Vec<IpNet>,
    /// Autonomous systems (SPEC §12).
    pub asns: Vec<u32>,
}

impl Origin {
    /// True when the origin names no region: one of the region policy's default origins.
    pub fn is_default(&self) -> bool {
        self.countries.is_empty()
            && self.continents.is_empty()
            && self.subnets.is_empty()
            && self.asns.is_empty()
    }
}

/// What an origin points at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Ip(IpAddr),
    /// A domain name, fully qualified and lower case.
    Name(Name),
    /// `host:port`, kept so the group can be listed, but never answered.
    WithPort(String),
}

impl Target {
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Ip(ip) => Some(*ip),
            _ => None,
        }
    }

    pub fn name(&self) -> Option<&Name> {
        match self {
            Self::Name(name) => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => ip.fmt(f),
            Self::Name(name) => name.fmt(f),
            Self::WithPort(text) => f.write_str(text),
        }
    }
}

/// A checked DNS-only task.
#[derive(Clone, Debug)]
pub struct Task {
    pub id: String,
    /// The answered name, fully qualified and lower case; may start with `*`.
    pub hostname: Name,
    pub origin_group: String,
    pub ttl: u32,
    pub answers: u32,
    pub enabled: bool,
    /// Picks by rendezvous hashing of the client's prefix (`stickiness: client_subnet`).
    pub sticky: bool,
    /// Line of the task in its site file, for later errors (e.g. below a zone cut).
    pub line: Option<u64>,
}

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Line in the site file, when the site came from a file.
    pub line: Option<u64>,
    /// The field concerned, e.g. `tasks[0].ttl` or `origin_groups.web.origins[1].address`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Errors loading a site file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SiteError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Larger than [`Limits::file_bytes`].
    #[error(
        "{path}: {size} bytes, over the {} lbdns reads from a site file (the limit of the file's size); remove the tasks and origin groups the site no longer needs",
        self::size(*limit)
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: PathBuf,
        line: u64,
        message: String,
    },
    /// A limit of the YAML reader was reached (see [`MAX_YAML_NODES`]).
    #[error("{path}:{line}: {message}")]
    Limit {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| match p.line {
            Some(line) => format!("{}:{line}: {p}", path.display()),
            None => format!("{}: {p}", path.display()),
        })
        .collect();
    lines.join("\n")
}

/// Reads and checks the site file at `path` for the zone `origin`.
pub fn load(path: &Path, origin: &Name) -> Result<(SiteSpec, Site), SiteError> {
    let read = |source| SiteError::Read {
        path: path.to_owned(),
        source,
    };
    let bytes = crate::load::read_bounded(path, MAX_FILE_BYTES, "a site file").map_err(read)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        read(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text (at byte {})", e.utf8_error().valid_up_to()),
        ))
    })?;
    from_text(path, &text, origin)
}

/// Checks `text` as the site file `path` of the zone `origin` is checked when loaded:
/// what the writer runs on the bytes it is about to store.
pub fn from_text(path: &Path, text: &str, origin: &Name) -> Result<(SiteSpec, Site), SiteError> {
    from_text_within(path, text, origin, Limits::default())
}

/// [`from_text`] within `limits`.
pub fn from_text_within(
    path: &Path,
    text: &str,
    origin: &Name,
    limits: Limits,
) -> Result<(SiteSpec, Site), SiteError> {
    let spec = parse_within(path, text, limits)?;
    let site = validate(origin, &spec).map_err(|problems| SiteError::Invalid {
        path: path.to_owned(),
        problems,
    })?;
    Ok((spec, site))
}

/// Parses `text` as the site file `path` within `limits`, without validating it.
pub fn parse_within(path: &Path, text: &str, limits: Limits) -> Result<SiteSpec, SiteError> {
    if text.len() as u64 > limits.file_bytes {
        return Err(SiteError::TooLarge {
            path: path.to_owned(),
            size: text.len() as u64,
            limit: limits.file_bytes,
        });
    }
    parse_yaml(text, limits).map_err(|e| match e.limit {
        false => SiteError::Syntax {
            path: path.to_owned(),
            line: e.line,
            message: e.message,
        },
        true => SiteError::Limit {
            path: path.to_owned(),
            line: e.line,
            message: e.message,
        },
    })
}

impl SiteError {
    /// True when the file is refused for its size, not for what it says.
    pub fn is_limit(&self) -> bool {
        matches!(self, Self::TooLarge { .. } | Self::Limit { .. })
    }
}

/// Parses site YAML; an error is `(line, message)`, the message naming the key
/// (`tasks[1].ttl: invalid u32`).
pub fn parse(text: &str) -> Result<SiteSpec, (u64, String)> {
    parse_yaml(text, Limits::default()).map_err(|e| (e.line, e.message))
}

/// Why YAML did not parse: where, what, and whether a reader limit stopped it.
struct YamlError {
    line: u64,
    message: String,
    limit: bool,
}

fn parse_yaml(text: &str, limits: Limits) -> Result<SiteSpec, YamlError> {
    if text.trim().is_empty() {
        return Ok(SiteSpec::default());
    }
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: limits.yaml_nodes,
            // Every node is one event, and a list or map one more for its end.
            max_events: 2 * limits.yaml_nodes,
            max_total_scalar_bytes: limits.file_bytes as usize,
        },
    };
    let mut path = String::new();
    let result =
        serde_saphyr::with_deserializer_from_str_with_options(text, options, |deserializer| {
            serde_path_to_error::deserialize(deserializer).map_err(|e| {
                path = spec::field_path(e.path());
                e.into_inner()
            })
        });
    result.map_err(|e| {
        let line = e.location().map(|l| l.line()).unwrap_or(0);
        match budget_message(&e, limits) {
            Some(message) => YamlError {
                line,
                message,
                limit: true,
            },
            None => match misindented_line(text, line, is_wrong_type(&e)) {
                Some((line, message)) => YamlError {
                    line,
                    message,
                    limit: false,
                },
                None => YamlError {
                    line,
                    message: syntax_message(&e, &path),
                    limit: false,
                },
            },
        }
    })
}

/// The line an indentation mistake is really on, when YAML reported it on the line
/// before. A line indented deeper than the `key: value` above it continues that value
/// (YAML's multi-line plain scalar: `ttl: 30 answers: 1`), and a line indented less than
/// the `key:` above it ends that key's block early; either way the parser complains about
/// `line`, whose text is right: for a continued value, with a value of the wrong type
/// (`wrong_type`). `line` counts from 1.
fn misindented_line(text: &str, line: u64, wrong_type: bool) -> Option<(u64, String)> {
    let indent = |l: &str| l.len() - l.trim_start_matches(' ').len();
    let mut lines = text
        .lines()
        .enumerate()
        .skip(usize::try_from(line).ok()?.checked_sub(1)?);
    let (_, reported) = lines.next()?;
    let key = reported
        .trim_start()
        .trim_start_matches("- ")
        .split(':')
        .next()?
        .trim();
    let (at, next) =
        lines.find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))?;
    let next_line = at as u64 + 1;
    let (above, below) = (indent(reported), indent(next));
    let opens_block = reported.trim_end().ends_with(':');
    if wrong_type && !opens_block && below > above && next.trim_start().contains(": ") {
        return Some((
            next_line,
            format!(
                "indented deeper than `{key}` on line {line}, so YAML reads it as part of that value; keys of one mapping line up"
            ),
        ));
    }
    if opens_block && below < above {
        return Some((
            next_line,
            format!(
                "indented less than `{key}:` on line {line}, so it does not belong to it; indent it under `{key}`"
            ),
        ));
    }
    None
}

/// True when YAML parsed but a value has the wrong type for its field.
fn is_wrong_type(error: &serde_saphyr::Error) -> bool {
    let mut error = error.without_snippet();
    while let serde_saphyr::Error::AliasError { error: inner, .. } = error {
        error = inner.without_snippet();
    }
    matches!(
        error,
        serde_saphyr::Error::InvalidScalar { .. }
            | serde_saphyr::Error::Unexpected { .. }
            | serde_saphyr::Error::SerdeInvalidType { .. }
            | serde_saphyr::Error::SerdeInvalidValue { .. }
    )
}

/// The limit a budget breach hit, and what to do, in an operator's words.
fn budget_message(error: &serde_saphyr::Error, limits: Limits) -> Option<String> {
    use serde_saphyr::budget::BudgetBreach;
    let mut error = error.without_snippet();
    while let serde_saphyr::Error::AliasError { error: inner, .. } = error {
        error = inner.without_snippet();
    }
    let serde_saphyr::Error::Budget { breach, .. } = error else {
        return None;
    };
    Some(match breach {
        BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => format!(
            "more than {} YAML nodes (keys, values, lists and maps, aliases expanded), the most lbdns reads from a site file; remove the tasks and origin groups the site no longer needs, and write repeated parts out instead of through aliases",
            limits.yaml_nodes
        ),
        BudgetBreach::ScalarBytes { .. } => format!(
            "more than {} of text in values, the most lbdns reads from a site file",
            size(limits.file_bytes)
        ),
        BudgetBreach::Depth { .. } => {
            "nested too deeply for a site file (lists and maps more than 64 levels deep)".to_owned()
        }
        other => format!(
            "the YAML goes past a limit of lbdns's reader ({other:?}); write the file out plainly, without anchors, aliases or several documents"
        ),
    })
}

/// serde-saphyr's message for `error` at `path`, worded for an operator: the key path
/// first, no position (the caller prints the line), and no advice about the library's
/// own options.
fn syntax_message(error: &serde_saphyr::Error, path: &str) -> String {
    let error = error.without_snippet();
    let mut original = error;
    while let serde_saphyr::Error::AliasError { error: inner, .. } = original {
        original = inner.without_snippet();
    }
    if let serde_saphyr::Error::DuplicateMappingKey { key, .. } = original {
        let key = key
            .as_deref()
            .map_or_else(|| "key".to_owned(), |k| format!("key {k:?}"));
        return match path {
            "" => format!("duplicate {key}"),
            path => format!("duplicate {key} in {path}"),
        };
    }
    // A value of the wrong type for a whole-number field: the rule, not the parser's type.
    if is_wrong_type(error)
        && let Some(message) = spec::whole_number_message(path)
    {
        return message;
    }
    let message = error.to_string();
    // The plain message ends with " at line N column M"; the caller prints the line.
    let message = match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => &message,
    };
    match path {
        "" => message.to_owned(),
        path => format!("{path}: {message}"),
    }
}

/// Checks a site spec against every rule of SPEC §3.
pub fn validate(origin: &Name, spec: &SiteSpec) -> Result<Site, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut groups = Vec::new();
    let mut broken_groups = Vec::new();
    for (name, group) in &spec.origin_groups {
        let field = format!("origin_groups.{name}");
        match validate_group(name, group, &field, &mut problems) {
            Some(g) => groups.push(g),
            None => broken_groups.push(name.as_str()),
        }
    }
    let mut secondaries = Vec::new();
    for (i, entry) in spec.secondaries.iter().enumerate() {
        match Secondary::parse(entry.value.address()) {
            Some(secondary) => secondaries.push(Secondary {
                tsig: entry.value.tsig().map(str::to_owned),
                ..secondary
            }),
            None => problems.push(Problem {
                line: entry.line,
                field: format!("secondaries[{i}]"),
                message: format!(
                    "{:?} is not an address (192.0.2.53), an address with a port for NOTIFY (192.0.2.53:5300) or a prefix without host bits (2001:db8::/64)",
                    entry.value.address()
                ),
            }),
        }
    }
    if let Some(primary) = &spec.primary
        && let Err(message) = primary.socket_addrs()
    {
        problems.push(Problem {
            line: None,
            field: "primary".to_owned(),
            message,
        });
    }
    let dnssec = spec
        .dnssec
        .as_ref()
        .and_then(|block| dnssec::validate(block, &mut problems));
    let site_groups = Site {
        origin: origin.to_lowercase(),
        groups,
        tasks: Vec::new(),
        secondaries,
        dnssec,
    };
    validate_chains(&site_groups, spec, &broken_groups, &mut problems);
    let mut tasks: Vec<Task> = Vec::new();
    // Indexes into `tasks` by hostname and by id: a site may have thousands of tasks.
    let mut by_hostname: HashMap<Name, usize> = HashMap::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for (i, task) in spec.tasks.iter().enumerate() {
        let field = format!("tasks[{i}]");
        let Some(t) = validate_task(&site_groups, &broken_groups, task, &field, &mut problems)
        else {
            continue;
        };
        if let Some(other) = by_hostname.get(&t.hostname).map(|&o| &tasks[o]) {
            problems.push(Problem {
                line: task.hostname.line.or(t.line),
                field: format!("{field}.hostname"),
                message: format!(
                    "hostname {} is already used by task {}; a hostname is used by at most one task",
                    t.hostname, other.id
                ),
            });
        } else if let Some(other) = by_id.get(&t.id).map(|&o| &tasks[o]) {
            problems.push(Problem {
                line: task.id.as_ref().and_then(|id| id.line).or(t.line),
                field: format!("{field}.id"),
                message: format!(
                    "id {:?} is already used by the task for {}; task ids are unique in a site",
                    t.id, other.hostname
                ),
            });
        } else {
            by_hostname.insert(t.hostname.clone(), tasks.len());
            by_id.insert(t.id.clone(), tasks.len());
            tasks.push(t);
        }
    }
    if problems.is_empty() {
        Ok(Site {
            tasks,
            ..site_groups
        })
    } else {
        Err(problems)
    }
}

/// Collects problems at one item (a group, origin or task) of the site.
struct Reporter<'a> {
    problems: &'a mut Vec<Problem>,
    field: &'a str,
    /// The item's own line, for keys that have none.
    line: Option<u64>,
    before: usize,
}

impl<'a> Reporter<'a> {
    fn new(problems: &'a mut Vec<Problem>, field: &'a str, line: Option<u64>) -> Self {
        let before = problems.len();
        Self {
            problems,
            field,
            line,
            before,
        }
    }

    /// Reports `message` about `key`, on `line` when the key has one.
    fn at(&mut self, key: &str, line: Option<u64>, message: String) {
        self.problems.push(Problem {
            line: line.or(self.line),
            field: if key.is_empty() {
                self.field.to_owned()
            } else {
                format!("{}.{key}", self.field)
            },
            message,
        });
    }

    fn clean(&self) -> bool {
        self.problems.len() == self.before
    }
}

fn validate_group(
    name: &str,
    spec: &Lined<GroupSpec>,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<OriginGroup> {
    let mut report = Reporter::new(problems, field, spec.line);
    if !is_identifier(name) {
        report.at(
            "",
            None,
            format!("group name {name:?} must be 1-64 letters, digits, '-', '_' or '.'"),
        );
    }
    let mut origins: Vec<Origin> = Vec::new();
    for (i, origin) in spec.origins.iter().enumerate() {
        let field = format!("{field}.origins[{i}]");
        let line = origin.line.or(spec.line);
        if let Some(o) = validate_origin(*spec.policy, origin, line, &field, report.problems) {
            if origins.iter().any(|other| other.target == o.target) {
                report.at(
                    &format!("origins[{i}].address"),
                    origin.address.line.or(line),
                    format!("origin {} is listed twice in the group", o.target),
                );
            } else {
                origins.push(o);
            }
        }
    }
    let health_check = spec.health_check.as_ref().and_then(|check| {
        let field = format!("{field}.health_check");
        validate_check(check, check.line.or(spec.line), &field, report.problems)
    });
    if *spec.policy == Policy::Nearest && spec.health_check.is_none() {
        report.at(
            "policy",
            spec.policy.line,
            "policy nearest ranks origins by their health checks' round-trip time: add a health_check".to_owned(),
        );
    }
    let min_up = spec.min_up.as_ref().map_or(1, |m| **m);
    let most = spec.origins.len().max(1) as i64;
    if !(1..=most).contains(&min_up) {
        report.at(
            "min_up",
            spec.min_up.as_ref().and_then(|m| m.line),
            format!(
                "min_up {min_up} is out of range 1..{most} (the group's origins): the group could never answer"
            ),
        );
    }
    let fallback = Fallback {
        group: spec.fallback.as_ref().map(|f| f.value.clone()),
        min_up: min_up.clamp(1, most) as u32,
        when_all_down: spec
            .when_all_down
            .as_ref()
            .map_or_else(Default::default, |w| **w),
    };
    report.clean().then(|| OriginGroup {
        name: name.to_owned(),
        policy: *spec.policy,
        origins,
        health_check,
        fallback,
    })
}

/// Refuses fallbacks to unknown groups, cycles and chains longer than [`MAX_CHAIN`],
/// naming the chain, and fallbacks a DNS-only task could not answer from.
fn validate_chains(site: &Site, spec: &SiteSpec, broken: &[&str], problems: &mut Vec<Problem>) {
    for group in &site.groups {
        let Some(first) = &group.fallback.group else {
            continue;
        };
        let written = spec.origin_groups.get(&group.name);
        let line = written
            .and_then(|g| g.fallback.as_ref())
            .and_then(|f| f.line)
            .or(written.and_then(|g| g.line));
        let field = format!("origin_groups.{}.fallback", group.name);
        let mut report = Reporter::new(problems, &field, line);
        let mut names = vec![group.name.as_str()];
        let mut next = Some(first.as_str());
        while let Some(name) = next {
            let walked = |names: &[&str], last: &str| format!("{} -> {last}", names.join(" -> "));
            if names.contains(&name) {
                report.at(
                    "",
                    None,
                    format!(
                        "the fallback chain {} is a cycle; end it with a group that has no fallback",
                        walked(&names, name)
                    ),
                );
                break;
            }
            if names.len() == MAX_CHAIN {
                report.at(
                    "",
                    None,
                    format!(
                        "the fallback chain {} is longer than {MAX_CHAIN} groups; shorten it",
                        walked(&names, name)
                    ),
                );
                break;
            }
            let Some(g) = site.group(name) else {
                if !broken.contains(&name) {
                    let known: Vec<&str> = site.groups.iter().map(|g| g.name.as_str()).collect();
                    report.at(
                        "",
                        None,
                        format!(
                            "the fallback chain {} names no origin group of this site (groups: {})",
                            walked(&names, name),
                            known.join(", ")
                        ),
                    );
                }
                break;
            };
            names.push(name);
            next = g.fallback.group.as_deref();
        }
    }
}

/// Why a task on `group` cannot fall back along its chain: every fallback must be
/// usable for DNS-only and answer the same way (addresses or CNAME) as the task's group.
fn chain_problems(site: &Site, group: &OriginGroup) -> Vec<String> {
    let mut reasons = Vec::new();
    for fallback in site.chain(group).into_iter().skip(1) {
        let problems = fallback.dns_only_problems();
        if !problems.is_empty() {
            reasons.push(format!(
                "its fallback {} cannot be used by a DNS-only task: {}",
                fallback.name,
                problems.join("; ")
            ));
        } else if fallback.is_cname() != group.is_cname() {
            let kind = |g: &OriginGroup| match g.is_cname() {
                true => "domain names (CNAME)",
                false => "addresses",
            };
            reasons.push(format!(
                "its fallback {} answers {} but {} answers {}",
                fallback.name,
                kind(fallback),
                group.name,
                kind(group)
            ));
        }
    }
    reasons
}

fn validate_check(
    spec: &HealthCheckSpec,
    line: Option<u64>,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<HealthCheck> {
    let mut report = Reporter::new(problems, field, line);
    let kind = *spec.kind;
    let port = u16::try_from(*spec.port).ok().filter(|&p| p > 0);
    if port.is_none() {
        report.at(
            "port",
            spec.port.line,
            format!("port {} is out of range 1..65535", *spec.port),
        );
    }
    if kind == CheckKind::Tcp {
        for (key, line) in [
            ("path", spec.path.as_ref().map(|v| v.line)),
            ("host", spec.host.as_ref().map(|v| v.line)),
            ("expect_status", spec.expect_status.as_ref().map(|v| v.line)),
            ("weight_header", spec.weight_header.as_ref().map(|v| v.line)),
        ] {
            if let Some(line) = line {
                report.at(
                    key,
                    line,
                    format!("{key} is for http and https checks; a tcp check only connects"),
                );
            }
        }
    }
    let path = spec.path.as_ref().map_or("/", |p| p.as_str());
    if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        report.at(
            "path",
            spec.path.as_ref().and_then(|p| p.line),
            format!("path {path:?} must start with / and hold no spaces"),
        );
    }
    if let Some(host) = &spec.host
        && parse_domain(host).is_err()
        && host.parse::<IpAddr>().is_err()
    {
        report.at(
            "host",
            host.line,
            format!("host {:?} is not a host name or an IP address", host.value),
        );
    }
    if let Some(header) = &spec.weight_header
        && hyper::header::HeaderName::from_bytes(header.as_bytes()).is_err()
    {
        report.at(
            "weight_header",
            header.line,
            format!(
                "weight_header {:?} is not an HTTP header name",
                header.value
            ),
        );
    }
    let mut expect_status = Vec::new();
    for &status in spec.expect_status.iter().flat_map(|s| s.iter()) {
        match u16::try_from(status)
            .ok()
            .filter(|s| (100..=599).contains(s))
        {
            Some(status) => expect_status.push(status),
            None => report.at(
                "expect_status",
                spec.expect_status.as_ref().and_then(|s| s.line),
                format!("{status} is not an HTTP status (100..599)"),
            ),
        }
    }
    if spec.expect_status.as_ref().is_some_and(|s| s.is_empty()) {
        report.at(
            "expect_status",
            spec.expect_status.as_ref().and_then(|s| s.line),
            "expect_status lists no status; leave it out to accept any 2xx or 3xx".to_owned(),
        );
    }
    let interval = spec.interval.as_ref().map_or(10.0, |i| **i);
    if !CHECK_INTERVAL.contains(&interval) {
        report.at(
            "interval",
            spec.interval.as_ref().and_then(|i| i.line),
            format!("interval {interval} is out of range 0.2..3600 seconds"),
        );
    }
    let timeout = spec
        .timeout
        .as_ref()
        .map_or(f64::min(3.0, interval / 2.0), |t| **t);
    if !(timeout > 0.0 && timeout < interval) {
        report.at(
            "timeout",
            spec.timeout.as_ref().and_then(|t| t.line),
            format!(
                "timeout {timeout} must be more than 0 and less than the interval ({interval})"
            ),
        );
    }
    let mut streak = |key: &str, value: &Option<Lined<i64>>, default: i64| {
        let n = value.as_ref().map_or(default, |v| **v);
        if !CHECK_STREAK.contains(&n) {
            report.at(
                key,
                value.as_ref().and_then(|v| v.line),
                format!("{key} {n} is out of range 1..10"),
            );
        }
        n as u32
    };
    let fall = streak("fall", &spec.fall, 3);
    let rise = streak("rise", &spec.rise, 2);
    let port = port?;
    report.clean().then(|| HealthCheck {
        weight_header: spec.weight_header.as_ref().map(|h| h.to_ascii_lowercase()),
        kind,
        port,
        path: path.to_owned(),
        host: spec
            .host
            .as_ref()
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase()),
        expect_status,
        interval: Duration::from_secs_f64(interval),
        timeout: Duration::from_secs_f64(timeout),
        fall,
        rise,
    })
}

fn validate_origin(
    policy: Policy,
    spec: &OriginSpec,
    line: Option<u64>,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<Origin> {
    let mut report = Reporter::new(problems, field, line);
    let target = parse_target(&spec.address)
        .map_err(|m| report.at("address", spec.address.line, m))
        .ok();
    if *spec.weight > MAX_WEIGHT {
        report.at(
            "weight",
            spec.weight.line,
            format!("weight {} is out of range 0..{MAX_WEIGHT}", *spec.weight),
        );
    }
    let mut countries = Vec::new();
    for code in spec.countries.iter() {
        match Country::parse(code).filter(|c| continent_of(*c).is_some()) {
            Some(c) => countries.push(c),
            None => report.at(
                "countries",
                spec.countries.line,
                format!(
                    "{code:?} is not an ISO 3166-1 alpha-2 country code{}",
                    hint(code)
                ),
            ),
        }
    }
    let mut continents = Vec::new();
    for code in spec.continents.iter() {
        match Continent::parse(code) {
            Some(c) => continents.push(c),
            None => report.at(
                "continents",
                spec.continents.line,
                format!(
                    "{code:?} is not a continent code (one of {})",
                    Continent::CODES
                ),
            ),
        }
    }
    let mut subnets = Vec::new();
    for text in spec.subnets.iter() {
        match text.parse::<IpNet>() {
            Ok(net) if net.trunc() == net => subnets.push(net),
            Ok(net) => report.at(
                "subnets",
                spec.subnets.line,
                format!("{text} has host bits set; did you mean {}?", net.trunc()),
            ),
            Err(_) => report.at(
                "subnets",
                spec.subnets.line,
                format!("{text:?} is not a network in CIDR form (e.g. 203.0.113.0/24)"),
            ),
        }
    }
    let mut asns = Vec::new();
    for &number in spec.asns.iter() {
        match u32::try_from(number) {
            Ok(asn) if asn > 0 => asns.push(asn),
            _ => report.at(
                "asns",
                spec.asns.line,
                format!("{number} is not an autonomous system number (1..4294967295)"),
            ),
        }
    }
    let region_line = [&spec.countries, &spec.continents, &spec.subnets]
        .into_iter()
        .find(|keys| !keys.is_empty())
        .map(|keys| keys.line)
        .or((!spec.asns.is_empty()).then_some(spec.asns.line));
    if let (Policy::Weight | Policy::Nearest, Some(region_line)) = (policy, region_line) {
        report.at(
            "policy",
            region_line,
            "countries, continents, subnets and asns need the group's policy to be region"
                .to_owned(),
        );
    }
    let target = target?;
    report.clean().then_some(Origin {
        target,
        weight: *spec.weight,
        countries,
        continents,
        subnets,
        asns,
    })
}

/// A friendlier message for the codes people get wrong most.
fn hint(code: &str) -> &'static str {
    match code.to_ascii_uppercase().as_str() {
        "UK" => " (did you mean GB?)",
        "EU" | "AS" | "AF" | "NA" | "SA" | "OC" | "AN" => {
            " (continents go in `continents:`; AS, NA and SA are also countries)"
        }
        _ => "",
    }
}

fn parse_target(text: &str) -> Result<Target, String> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Target::Ip(ip));
    }
    if text.parse::<SocketAddr>().is_ok() {
        return Ok(Target::WithPort(text.to_owned()));
    }
    if let Some((host, port)) = text.rsplit_once(':')
        && port.parse::<u16>().is_ok()
        && parse_domain(host).is_ok()
    {
        return Ok(Target::WithPort(text.to_owned()));
    }
    match parse_domain(text) {
        Ok(name) if !name.is_root() && !looks_numeric(text) => Ok(Target::Name(name)),
        Err(message) if !text.is_ascii() => Err(message),
        _ => Err(format!(
            "{text:?} is neither an IPv4 or IPv6 address nor a domain name"
        )),
    }
}

/// `192.0.2.300` parses as a domain name; nobody means that.
fn looks_numeric(text: &str) -> bool {
    text.trim_end_matches('.')
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.')
}

fn parse_domain(text: &str) -> Result<Name, String> {
    if text.is_empty() || text.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
        return Err(format!("{text:?} is not a domain name"));
    }
    if !text.is_ascii() {
        // Written as DNS carries it, the name in the file is the name in the answers.
        return Err(match Name::from_utf8(text) {
            Ok(name) => format!(
                "{text:?} is not ASCII: write an internationalized name in its A-label (punycode) form, {}",
                name.to_ascii().trim_end_matches('.')
            ),
            Err(_) => format!("{text:?} is not a domain name"),
        });
    }
    let mut name =
        Name::from_ascii(text).map_err(|e| format!("{text:?} is not a domain name: {e}"))?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

fn validate_task(
    site: &Site,
    broken_groups: &[&str],
    spec: &Lined<TaskSpec>,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<Task> {
    let mut report = Reporter::new(problems, field, spec.line);
    if *spec.mode != Mode::DnsOnly {
        let mode = match *spec.mode {
            Mode::Proxy => "proxy",
            _ => "secure_proxy",
        };
        report.at(
            "mode",
            spec.mode.line,
            format!(
                "mode {mode} needs an edge proxy, which lbdns does not run; use mode: dns_only"
            ),
        );
    }
    let hostname_line = spec.hostname.line;
    let hostname = match parse_domain(&spec.hostname) {
        Err(m) => {
            report.at("hostname", hostname_line, m);
            None
        }
        Ok(name) if !site.origin.zone_of(&name) => {
            report.at(
                "hostname",
                hostname_line,
                format!("{name} is not inside the site {}", site.origin),
            );
            None
        }
        Ok(name) if !wildcard_ok(&name) => {
            report.at(
                "hostname",
                hostname_line,
                format!(
                    "{name}: '*' may only be the whole leftmost label (e.g. *.shop.example.com)"
                ),
            );
            None
        }
        Ok(name) => Some(name),
    };
    let group_line = spec.origin_group.line;
    match site.group(&spec.origin_group) {
        // The group's own problems are reported where the group is.
        None if broken_groups.contains(&spec.origin_group.as_str()) => {}
        None => {
            let known: Vec<&str> = site.groups.iter().map(|g| g.name.as_str()).collect();
            report.at(
                "origin_group",
                group_line,
                format!(
                    "no origin group named {:?} in this site (groups: {})",
                    *spec.origin_group,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        Some(group) => {
            let mut reasons = group.dns_only_problems();
            if reasons.is_empty() {
                reasons = chain_problems(site, group);
            }
            if !reasons.is_empty() {
                report.at(
                    "origin_group",
                    group_line,
                    format!(
                        "origin group {} cannot be used by a DNS-only task: {}",
                        group.name,
                        reasons.join("; ")
                    ),
                );
            }
            if group.is_cname() {
                if hostname.as_ref().is_some_and(|h| *h == site.origin) {
                    report.at(
                        "hostname",
                        hostname_line,
                        format!(
                            "origin group {} answers CNAME, which cannot sit at the zone apex {}",
                            group.name, site.origin
                        ),
                    );
                }
                if *spec.answers != 1 {
                    report.at(
                        "answers",
                        spec.answers.line,
                        format!(
                            "origin group {} answers CNAME, and a CNAME answer holds exactly one record; set answers: 1",
                            group.name
                        ),
                    );
                }
            }
        }
    }
    if !TTL_RANGE.contains(&spec.ttl) {
        report.at(
            "ttl",
            spec.ttl.line,
            format!(
                "ttl {} is out of range {}..{}",
                *spec.ttl,
                TTL_RANGE.start(),
                TTL_RANGE.end()
            ),
        );
    }
    if !(1..=MAX_ANSWERS).contains(&spec.answers) {
        report.at(
            "answers",
            spec.answers.line,
            format!("answers {} is out of range 1..{MAX_ANSWERS}", *spec.answers),
        );
    }
    let id = match (&spec.id, &hostname) {
        (Some(id), _) if !is_identifier(id) => {
            report.at(
                "id",
                id.line,
                format!(
                    "id {:?} must be 1-64 letters, digits, '-', '_' or '.'",
                    id.value
                ),
            );
            None
        }
        (Some(id), _) => Some(id.value.clone()),
        (None, Some(hostname)) => Some(default_task_id(hostname)),
        (None, None) => None,
    };
    if !report.clean() {
        return None;
    }
    Some(Task {
        id: id?,
        hostname: hostname?,
        origin_group: spec.origin_group.value.clone(),
        ttl: *spec.ttl,
        answers: *spec.answers,
        enabled: *spec.enabled,
        sticky: spec.stickiness.is_some(),
        line: spec.line,
    })
}

/// A site's name in file names and the API: its origin without the trailing dot, in
/// ASCII (an internationalized zone keeps its `xn--` labels, as its zone file is named).
pub fn site_name(origin: &Name) -> String {
    origin.to_ascii().trim_end_matches('.').to_owned()
}

/// The id of a task as written: its own, or the one derived from its hostname.
pub fn spec_task_id(spec: &TaskSpec) -> std::borrow::Cow<'_, str> {
    // The hostname is parsed only for a task without an id: finding a task by id in a
    // site of thousands would otherwise parse every hostname each time.
    match &spec.id {
        Some(id) => id.value.as_str().into(),
        None => match parse_domain(&spec.hostname) {
            Ok(hostname) => default_task_id(&hostname).into(),
            Err(_) => spec.hostname.value.as_str().into(),
        },
    }
}

/// The id a task without one gets: its hostname without the trailing dot, `*` spelled
/// `_wildcard` so the id stays a safe path segment for the API. Internationalized labels
/// stay in their ASCII `xn--` form (a `Name` displays them in Unicode).
pub fn default_task_id(hostname: &Name) -> String {
    let text = hostname.to_ascii();
    let text = text.trim_end_matches('.');
    text.replace('*', "_wildcard")
}

fn wildcard_ok(name: &Name) -> bool {
    name.iter()
        .enumerate()
        .all(|(i, label)| !label.contains(&b'*') || (i == 0 && label == b"*"))
}

fn is_identifier(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && text != "."
        && text != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Name {
        Name::from_ascii("example.com.").unwrap()
    }

    fn check(yaml: &str) -> Result<Site, Vec<Problem>> {
        let spec = parse(yaml).map_err(|(line, message)| {
            vec![Problem {
                line: Some(line),
                field: "<syntax>".into(),
                message,
            }]
        })?;
        validate(&origin(), &spec)
    }

    fn first_problem(yaml: &str) -> Problem {
        check(yaml).expect_err("should be invalid").remove(0)
    }

    #[test]
    fn fallback_chains_are_capped_and_named() {
        let mut yaml = String::from("origin_groups:\n");
        for i in 0..=MAX_CHAIN {
            yaml.push_str(&format!(
                "  g{i}:\n    fallback: g{}\n    origins:\n    - address: 192.0.2.{i}\n",
                i + 1
            ));
        }
        yaml.push_str("  g9:\n    origins:\n    - address: 192.0.2.99\n");
        let problem = first_problem(&yaml);
        assert_eq!(problem.field, "origin_groups.g0.fallback");
        assert!(
            problem
                .message
                .contains("g0 -> g1 -> g2 -> g3 -> g4 -> g5 -> g6 -> g7 -> g8 is longer than 8"),
            "{problem}"
        );
        assert_eq!(problem.line, Some(3));
        // Eight groups are allowed, and the chain is walked in order.
        let yaml = yaml.replace("    fallback: g8\n", "");
        let site = check(&yaml).unwrap();
        let chain: Vec<&str> = site
            .chain(site.group("g0").unwrap())
            .iter()
            .map(|g| g.name.as_str())
            .collect();
        assert_eq!(chain, ["g0", "g1", "g2", "g3", "g4", "g5", "g6", "g7"]);
    }

    #[test]
    fn when_all_down_and_min_up_defaults() {
        let site = check(
            "origin_groups:\n  a:\n    when_all_down: nodata\n    min_up: 2\n    origins:\n    - address: 192.0.2.1\n    - address: 192.0.2.2\n  b:\n    origins:\n    - address: 192.0.2.3\n",
        )
        .unwrap();
        let a = &site.group("a").unwrap().fallback;
        assert_eq!((a.min_up, a.when_all_down), (2, WhenAllDown::Nodata));
        assert_eq!(site.group("b").unwrap().fallback, Fallback::default());
        let problem = first_problem(
            "origin_groups:\n  a:\n    when_all_down: sometimes\n    origins:\n    - address: 192.0.2.1\n",
        );
        assert!(problem.message.contains("when_all_down"), "{problem}");
    }

    #[test]
    fn accepts_the_spec_example() {
        let site = check(include_str!("../../zones/example.com.lb.yaml")).unwrap();
        assert!(site.tasks.len() >= 5);
    }

    #[test]
    fn defaults_apply() {
        let site = check(
            "origin_groups:\n  web:\n    origins:\n      - address: 192.0.2.1\ntasks:\n  - hostname: www.example.com\n    origin_group: web\n",
        )
        .unwrap();
        let task = &site.tasks[0];
        assert_eq!((task.ttl, task.answers, task.enabled), (60, 1, true));
        assert_eq!(task.id, "www.example.com");
        assert_eq!(site.groups[0].origins[0].weight, 1);
        assert_eq!(site.groups[0].policy, Policy::Weight);
    }

    #[test]
    fn rejects_unknown_keys_with_line() {
        let p = first_problem("origin_groups:\n  web:\n    polcy: weight\n    origins: []\n");
        assert_eq!(p.line, Some(3));
        assert!(p.message.contains("polcy"), "{p:?}");
    }

    #[test]
    fn rejects_proxy_mode() {
        let p = first_problem(
            "origin_groups:\n  web:\n    origins:\n      - address: 192.0.2.1\ntasks:\n  - hostname: www.example.com\n    mode: proxy\n    origin_group: web\n",
        );
        assert_eq!(p.line, Some(7), "the line of the mode key");
        assert_eq!(p.field, "tasks[0].mode");
        assert!(p.message.contains("edge proxy"), "{p:?}");
    }

    #[test]
    fn group_with_port_is_kept_but_unusable() {
        let site = check("origin_groups:\n  web:\n    origins:\n      - address: 192.0.2.1:8080\n")
            .unwrap();
        assert_eq!(
            site.groups[0].dns_only_problems(),
            vec!["origin 192.0.2.1:8080 has a port".to_owned()]
        );
        let p = first_problem(
            "origin_groups:\n  web:\n    origins:\n      - address: 192.0.2.1:8080\ntasks:\n  - hostname: www.example.com\n    origin_group: web\n",
        );
        assert!(p.message.contains("has a port"), "{p:?}");
    }

    #[test]
    fn mixed_group_is_unusable() {
        let p = first_problem(
            "origin_groups:\n  web:\n    origins:\n      - address: 192.0.2.1\n      - address: cdn.example.net\ntasks:\n  - hostname: www.example.com\n    origin_group: web\n",
        );
        assert!(p.message.contains("mixes IP and domain-name"), "{p:?}");
    }

    #[test]
    fn cname_task_at_apex_is_rejected() {
        let p = first_problem(
            "origin_groups:\n  cdn:\n    origins:\n      - address: a.cdn.example.net\ntasks:\n  - hostname: example.com\n    origin_group: cdn\n",
        );
        assert!(p.message.contains("apex"), "{p:?}");
    }

    #[test]
    fn ranges_are_enforced() {
        let p = first_problem(
            "origin_groups:\n  web:\n    origins:\n      - address: 192.0.2.1\n        weight: 101\n",
        );
        assert_eq!(
            (p.line, p.field.as_str()),
            (Some(5), "origin_groups.web.origins[0].weight")
        );
        for (key, value) in [
            ("ttl", "0"),
            ("ttl", "86401"),
            ("answers", "0"),
            ("answers", "17"),
        ] {
            let p = first_problem(&format!(
                "origin_groups:\n  web:\n    origins:\n      - address: 192.0.2.1\ntasks:\n  - hostname: www.example.com\n    origin_group: web\n    {key}: {value}\n"
            ));
            assert_eq!(p.field, format!("tasks[0].{key}"));
            assert!(p.message.contains("out of range"), "{p:?}");
        }
    }

    #[test]
    fn hostname_rules() {
        let base = "origin_groups:\n  web:\n    origins:\n      - address: 192.0.2.1\ntasks:\n";
        let p = first_problem(&format!(
            "{base}  - hostname: www.example.net\n    origin_group: web\n"
        ));
        assert!(p.message.contains("not inside the site"), "{p:?}");
        let p = first_problem(&format!(
            "{base}  - hostname: a.*.example.com\n    origin_group: web\n"
        ));
        assert!(p.message.contains("leftmost label"), "{p:?}");
        let p = first_problem(&format!(
            "{base}  - hostname: www.example.com\n    origin_group: web\n  - hostname: WWW.example.com.\n    origin_group: web\n"
        ));
        assert_eq!(p.line, Some(8));
        assert!(p.message.contains("at most one task"), "{p:?}");
        assert!(
            check(&format!(
                "{base}  - hostname: '*.shop.example.com'\n    origin_group: web\n"
            ))
            .is_ok()
        );
    }

    #[test]
    fn region_keys_are_checked() {
        let p = first_problem(
            "origin_groups:\n  g:\n    policy: region\n    origins:\n      - address: 192.0.2.1\n        countries: [UK]\n",
        );
        assert!(p.message.contains("did you mean GB"), "{p:?}");
        let p = first_problem(
            "origin_groups:\n  g:\n    policy: region\n    origins:\n      - address: 192.0.2.1\n        continents: [XX]\n",
        );
        assert_eq!(p.field, "origin_groups.g.origins[0].continents");
        let p = first_problem(
            "origin_groups:\n  g:\n    policy: region\n    origins:\n      - address: 192.0.2.1\n        subnets: [203.0.113.5/24]\n",
        );
        assert!(p.message.contains("203.0.113.0/24"), "{p:?}");
        let p = first_problem(
            "origin_groups:\n  g:\n    origins:\n      - address: 192.0.2.1\n        countries: [CN]\n",
        );
        assert!(p.message.contains("policy to be region"), "{p:?}");
    }

    #[test]
    fn unknown_group_names_the_known_ones() {
        let p = first_problem(
            "origin_groups:\n  web:\n    origins:\n      - address: 192.0.2.1\ntasks:\n  - hostname: www.example.com\n    origin_group: wbe\n",
        );
        assert!(
            p.message.contains("\"wbe\"") && p.message.contains("web"),
            "{p:?}"
        );
    }

    #[test]
    fn internationalized_hostnames_keep_their_a_labels_in_ids() {
        let base = "origin_groups:\n  web:\n    origins:\n      - address: 192.0.2.1\ntasks:\n";
        let site = check(&format!(
            "{base}  - hostname: xn--bcher-kva.example.com\n    origin_group: web\n  - hostname: '*.xn--bcher-kva.example.com'\n    origin_group: web\n"
        ))
        .unwrap();
        assert_eq!(site.tasks[0].id, "xn--bcher-kva.example.com");
        assert_eq!(site.tasks[1].id, "_wildcard.xn--bcher-kva.example.com");
        let idn_zone = Name::from_ascii("xn--bcher-kva.example.").unwrap();
        assert_eq!(site_name(&idn_zone), "xn--bcher-kva.example");
    }

    #[test]
    fn unicode_hostnames_are_refused_with_their_a_label() {
        let p = first_problem(
            "origin_groups:\n  web:\n    origins:\n      - address: 192.0.2.1\ntasks:\n  - hostname: bücher.example.com\n    origin_group: web\n",
        );
        assert_eq!((p.line, p.field.as_str()), (Some(6), "tasks[0].hostname"));
        assert!(
            p.message.contains("xn--bcher-kva.example.com") && p.message.contains("punycode"),
            "{p:?}"
        );
        let err = parse_target("bücher.example.net").unwrap_err();
        assert!(err.contains("xn--bcher-kva.example.net"), "{err}");
    }

    #[test]
    fn syntax_errors_name_the_key_as_written() {
        let base = "origin_groups:\n  web:\n    origins:\n      - address: 192.0.2.1\n";
        let (line, message) = parse(&format!(
            "{base}tasks:\n  - hostname: www.example.com\n    origin_group: web\n    frobnicate: 1\n"
        ))
        .unwrap_err();
        assert_eq!(line, 8);
        assert!(message.starts_with("tasks[0].frobnicate: "), "{message}");
        let (line, message) = parse(&format!("{base}        weight: x\n")).unwrap_err();
        assert_eq!(line, 5);
        assert!(
            message.starts_with("origin_groups.web.origins[0].weight: "),
            "{message}"
        );
        // A group named `value` keeps its name; an unknown key `value` is named.
        let (_, message) =
            parse("origin_groups:\n  value:\n    origins:\n      - address: 192.0.2.1\n        weight: x\n")
                .unwrap_err();
        assert!(
            message.starts_with("origin_groups.value.origins[0].weight: "),
            "{message}"
        );
        let (_, message) = parse(&format!(
            "{base}tasks:\n  - hostname: www.example.com\n    origin_group: web\n    value: 1\n"
        ))
        .unwrap_err();
        assert!(message.starts_with("tasks[0].value: "), "{message}");
    }

    #[test]
    fn duplicate_keys_are_named_without_library_advice() {
        let (line, message) = parse(
            "origin_groups:\n  web:\n    origins:\n      - address: 192.0.2.1\ntasks:\n  - hostname: www.example.com\n    origin_group: web\n    ttl: 30\n    ttl: 40\n",
        )
        .unwrap_err();
        assert_eq!(line, 9);
        assert_eq!(message, "duplicate key \"ttl\" in tasks[0]");
        let (line, message) = parse("tasks: []\ntasks: []\n").unwrap_err();
        assert_eq!((line, message.as_str()), (2, "duplicate key \"tasks\""));
    }

    #[test]
    fn addresses_are_parsed() {
        assert_eq!(
            parse_target("2001:db8::1").unwrap(),
            Target::Ip("2001:db8::1".parse().unwrap())
        );
        assert!(matches!(
            parse_target("[2001:db8::1]:443").unwrap(),
            Target::WithPort(_)
        ));
        assert!(matches!(
            parse_target("origin.example.net:80").unwrap(),
            Target::WithPort(_)
        ));
        assert_eq!(
            parse_target("Origin.Example.NET").unwrap(),
            Target::Name(Name::from_ascii("origin.example.net.").unwrap())
        );
        assert!(parse_target("192.0.2.300").is_err());
        assert!(parse_target("not an address").is_err());
    }
}

#[cfg(test)]
mod secondary_tests {
    use super::*;

    #[test]
    fn a_secondary_may_name_the_tsig_key_it_must_sign_with() {
        let origin = Name::from_ascii("example.com.").unwrap();
        let spec = parse(
            "secondaries:\n  - 192.0.2.53\n  - {address: \"198.51.100.0/24\", tsig: transfer-key}\n",
        )
        .unwrap();
        let site = validate(&origin, &spec).unwrap();
        let keys: Vec<Option<&str>> = site.secondaries.iter().map(|s| s.tsig.as_deref()).collect();
        assert_eq!(keys, [None, Some("transfer-key")]);
        assert_eq!(site.secondaries[1].notify, None);
        let (line, error) = parse("secondaries:\n  - {address: 192.0.2.9}\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(
            error.contains(
                "expected an address, an address:port or a prefix, or {address: ..., tsig: KEY}"
            ),
            "{error}"
        );
    }

    #[test]
    fn secondaries_are_addresses_prefixes_or_addresses_with_a_notify_port() {
        let origin = Name::from_ascii("example.com.").unwrap();
        let spec = parse(
            "secondaries: [192.0.2.53, \"2001:db8::/64\", \"127.0.0.1:5300\", \"[::1]:5301\"]\n",
        )
        .unwrap();
        let site = validate(&origin, &spec).unwrap();
        let notify: Vec<Option<String>> = site
            .secondaries
            .iter()
            .map(|s| s.notify.map(|a| a.to_string()))
            .collect();
        assert_eq!(
            notify,
            [
                Some("192.0.2.53:53".to_owned()),
                None,
                Some("127.0.0.1:5300".to_owned()),
                Some("[::1]:5301".to_owned())
            ]
        );
        assert!(
            site.secondaries[1]
                .allowed
                .contains(&"2001:db8::1".parse::<IpAddr>().unwrap())
        );
        let spec =
            parse("secondaries:\n  - 192.0.2.53\n  - 192.0.2.1/24\n  - ns1.example.net\n").unwrap();
        let problems = validate(&origin, &spec).unwrap_err();
        let fields: Vec<(&str, Option<u64>)> = problems
            .iter()
            .map(|p| (p.field.as_str(), p.line))
            .collect();
        assert_eq!(
            fields,
            [("secondaries[1]", Some(3)), ("secondaries[2]", Some(4))]
        );
        assert!(
            problems[0].message.contains("without host bits"),
            "{}",
            problems[0].message
        );
    }
}
