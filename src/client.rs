//! `lbdns task ...` and `lbdns group ...`: a thin client of the management API that
//! prints tables for people and, with `--json`, the API's JSON for scripts.

use std::fmt::Write as _;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use ureq::Agent;

use crate::api_types::{
    ErrorReply, Group, NodeList, Origin, OriginHealth, Refusal, SiteList, Task,
};
use crate::site::spec::{
    CheckKind, GroupSpec, HealthCheckSpec, Lined, OriginSpec, Policy, TaskSpec, WhenAllDown,
};

/// How to reach the API.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: Agent,
}

/// A failed call: the API's message, or why the API could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    message: String,
    /// Why the site refused the change, when it did.
    refusal: Option<Refusal>,
}

impl ClientError {
    pub fn new(message: String) -> Self {
        Self {
            message,
            refusal: None,
        }
    }

    /// Why the site refused the change, when it did.
    pub fn refusal(&self) -> Option<Refusal> {
        self.refusal
    }

    /// Adds `hint` (the command that fixes it) to a refusal of kind `refusal`.
    pub fn hint(mut self, refusal: Refusal, hint: impl FnOnce() -> String) -> Self {
        if self.refusal == Some(refusal) {
            self.message = format!("{}\nhint: {}", self.message, hint());
        }
        self
    }
}

fn to_json(body: &impl Serialize) -> Result<Value, ClientError> {
    serde_json::to_value(body)
        .map_err(|e| ClientError::new(format!("cannot write the request as JSON: {e}")))
}

/// `--api`: `HOST:PORT` or a URL. A bare host without a port is refused: the client would
/// otherwise ask port 80, where the API is not (its default port is 8053).
pub fn parse_api(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.contains("://") {
        return Ok(text.to_owned());
    }
    let host = text.trim_end_matches('/');
    let has_port = match host.strip_prefix('[') {
        Some(v6) => v6
            .split_once("]:")
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok()),
        None => host.rsplit_once(':').is_some_and(|(name, port)| {
            !name.is_empty() && !name.contains(':') && port.parse::<u16>().is_ok()
        }),
    };
    if has_port {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "expected HOST:PORT (e.g. 127.0.0.1:8053 or localhost:8053) or a URL (http://HOST:PORT), not {text:?}: without a port the client would ask port 80"
        ))
    }
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Self {
        let base = if base.contains("://") {
            base.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", base.trim_end_matches('/'))
        };
        let agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .build()
            .into();
        Self { base, token, agent }
    }

    /// Calls `method path` without a body; returns the JSON reply (or Null).
    pub fn call(&self, method: &str, path: &str) -> Result<Value, ClientError> {
        self.call_with(method, path, None, None)
    }

    /// Calls `method path` with `body` as JSON; returns the JSON reply (or Null).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Value, ClientError> {
        self.call_with(method, path, Some(to_json(body)?), None)
    }

    /// `GET path`, decoded as `T`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let value = self.call("GET", path)?;
        serde_json::from_value(value).map_err(|e| {
            ClientError::new(format!(
                "the API's reply to GET {path} is not what this lbdns expects ({e}): is the server another version?"
            ))
        })
    }

    /// Creates the item at `path` unless it exists (`PUT` with `If-None-Match: *`): sending
    /// the same item again succeeds without a change, so a retry after a lost reply is safe.
    pub fn create(&self, path: &str, body: &impl Serialize) -> Result<Value, ClientError> {
        self.call_with(
            "PUT",
            path,
            Some(to_json(body)?),
            Some(("If-None-Match", "*")),
        )
    }

    fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        header: Option<(&str, &str)>,
    ) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {}", t.trim()));
        let unreachable = |e: ureq::Error| self.unreachable(&e);
        macro_rules! with_auth {
            ($request:expr) => {{
                let request = $request;
                let request = match header {
                    Some((name, value)) => request.header(name, value),
                    None => request,
                };
                match &auth {
                    Some(auth) => request.header("Authorization", auth),
                    None => request,
                }
            }};
        }
        let response = match (method, body) {
            ("GET", _) => with_auth!(self.agent.get(&url)).call(),
            ("DELETE", _) => with_auth!(self.agent.delete(&url)).call(),
            ("POST", Some(body)) => with_auth!(self.agent.post(&url)).send_json(body),
            ("POST", None) => with_auth!(self.agent.post(&url)).send_empty(),
            ("PUT", Some(body)) => with_auth!(self.agent.put(&url)).send_json(body),
            ("PATCH", Some(body)) => with_auth!(self.agent.patch(&url)).send_json(body),
            _ => {
                return Err(ClientError::new(format!(
                    "unsupported call {method} {path}"
                )));
            }
        };
        let mut response = response.map_err(unreachable)?;
        let status = response.status();
        let text = response.body_mut().read_to_string().map_err(unreachable)?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(value);
        }
        let (message, code, refusal) = match serde_json::from_value::<ErrorReply>(value.clone()) {
            Ok(ErrorReply { error }) => (error.message, error.code, error.reason),
            Err(_) => (value.to_string(), "error".to_owned(), None),
        };
        let hint = match (status.as_u16(), &self.token) {
            (401, None) => {
                "\nhint: the server needs a token: pass --api-token or set LBDNS_API_TOKEN"
            }
            (401, Some(_)) => {
                "\nhint: the server refused this token: check --api-token or LBDNS_API_TOKEN against the server's"
            }
            _ => "",
        };
        Err(ClientError {
            message: format!("{message} (HTTP {}, {code}){hint}", status.as_u16()),
            refusal,
        })
    }

    /// Why the API could not be reached; for a refused connection, what to check.
    fn unreachable(&self, error: &ureq::Error) -> ClientError {
        let reason = match error {
            ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                "connection refused"
            }
            ureq::Error::ConnectionFailed => "connection failed",
            _ => {
                return ClientError::new(format!(
                    "cannot reach the lbdns API at {}: {error}",
                    self.base
                ));
            }
        };
        ClientError::new(format!(
            "cannot reach the lbdns API at {}: {reason}; is `lbdns serve` running? (--api or LBDNS_API to point elsewhere)",
            self.base
        ))
    }

    /// The site to act on: the one given, else the only one served.
    pub fn site(&self, site: Option<String>) -> Result<String, ClientError> {
        if let Some(site) = site {
            return Ok(site);
        }
        let sites: SiteList = self.get("/v1/sites")?;
        let names: Vec<&str> = sites.sites.iter().map(|s| s.name.as_str()).collect();
        match names.as_slice() {
            [only] => Ok((*only).to_owned()),
            _ => Err(ClientError::new(format!(
                "this server has several sites ({}); pass --site",
                names.join(", ")
            ))),
        }
    }
}

/// A task from command-line fields; what is not given takes the site file's default.
pub fn task_body(
    id: Option<String>,
    hostname: &str,
    group: &str,
    ttl: Option<u32>,
    answers: Option<u32>,
    disabled: bool,
) -> TaskSpec {
    let mut task = TaskSpec::new(hostname, group);
    task.id = id.map(Lined::new);
    if let Some(ttl) = ttl {
        task.ttl = Lined::new(ttl);
    }
    if let Some(answers) = answers {
        task.answers = Lined::new(answers);
    }
    task.enabled = Lined::new(!disabled);
    task
}

/// What `lbdns group put` is told of a group on its command line (without `--file`).
#[derive(Debug, Default, clap::Args)]
pub struct GroupArgs {
    /// weight, region or nearest.
    #[arg(long, default_value = "weight")]
    pub policy: String,
    /// An origin: ADDRESS or ADDRESS=WEIGHT, then its region keys as `group list` shows
    /// them, e.g. '192.0.2.1=2 countries=DE,FR asns=15169' (repeatable).
    #[arg(long = "origin", value_name = "ADDRESS[=WEIGHT] [KEY=VALUE,...]")]
    pub origins: Vec<String>,
    /// The group that answers while fewer than --min-up origins of this one are usable.
    #[arg(long, value_name = "GROUP")]
    pub fallback: Option<String>,
    /// Usable origins below which the fallback answers [the file's default: 1].
    #[arg(long, value_name = "N")]
    pub min_up: Option<i64>,
    /// What a task answers when its whole fallback chain is down: fail_open, servfail or
    /// nodata [the file's default: fail_open].
    #[arg(long, value_name = "WHAT")]
    pub when_all_down: Option<String>,
    /// Check the origins: TYPE:PORT[/PATH], e.g. tcp:8080 or http:80/healthz.
    #[arg(long, value_name = "TYPE:PORT[/PATH]")]
    pub check: Option<String>,
    /// Another health_check key, e.g. interval=2, fall=3, host=www.example.com,
    /// expect_status=200,204 (repeatable).
    #[arg(long = "check-option", value_name = "KEY=VALUE", requires = "check")]
    pub check_options: Vec<String>,
}

/// A group from `lbdns group put`'s flags. Only the shape is checked here; the server
/// checks the values and names the key of a bad one.
pub fn group_body(args: &GroupArgs) -> Result<GroupSpec, ClientError> {
    let policy = keyword::<Policy>(&args.policy)
        .map_err(|e| ClientError::new(format!("--policy {}: {e}", args.policy)))?;
    let origins = args
        .origins
        .iter()
        .map(|o| origin_body(o).map(Lined::new))
        .collect::<Result<Vec<_>, ClientError>>()?;
    let health_check = match &args.check {
        Some(check) => Some(Lined::new(check_body(check, &args.check_options)?)),
        None if !args.check_options.is_empty() => {
            return Err(ClientError::new(
                "--check-option needs --check TYPE:PORT[/PATH]".to_owned(),
            ));
        }
        None => None,
    };
    let mut group = GroupSpec::new(policy, origins);
    group.health_check = health_check;
    group.fallback = args.fallback.clone().map(Lined::new);
    group.min_up = args.min_up.map(Lined::new);
    group.when_all_down = match &args.when_all_down {
        Some(what) => {
            Some(Lined::new(keyword::<WhenAllDown>(what).map_err(|e| {
                ClientError::new(format!("--when-all-down {what}: {e}"))
            })?))
        }
        None => None,
    };
    Ok(group)
}

/// `192.0.2.1=3 countries=CN,HK asns=15169`: an address, its weight after `=`, then region
/// keys separated by spaces, each with a comma-separated list, as `group list` prints them.
fn origin_body(text: &str) -> Result<OriginSpec, ClientError> {
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or_default();
    let (address, weight) = match first.split_once('=') {
        Some((address, weight)) => (address, Some(weight)),
        None => (first, None),
    };
    let mut origin = OriginSpec::new(address);
    if let Some(weight) = weight {
        let weight = weight.parse::<u32>().map_err(|_| {
            ClientError::new(format!(
                "--origin {first}: the weight after '=' must be a whole number 0..100"
            ))
        })?;
        origin.weight = Lined::new(weight);
    }
    for word in words {
        let (key, values) = word.split_once('=').ok_or_else(|| {
            ClientError::new(format!(
                "--origin '{text}': write region keys as KEY=VALUE,VALUE after the address, e.g. '192.0.2.1 countries=DE,FR asns=15169'"
            ))
        })?;
        let list = || Lined::new(values.split(',').map(str::to_owned).collect());
        match key {
            "countries" => origin.countries = list(),
            "continents" => origin.continents = list(),
            "subnets" => origin.subnets = list(),
            "asns" => {
                let asns = values
                    .split(',')
                    .map(|asn| {
                        let asn = asn.strip_prefix("AS").unwrap_or(asn);
                        asn.parse::<i64>().map_err(|_| {
                            ClientError::new(format!(
                                "--origin '{text}': asns are whole numbers, e.g. asns=15169,7018"
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?;
                origin.asns = Lined::new(asns);
            }
            _ => {
                return Err(ClientError::new(format!(
                    "--origin '{text}': {key} is no region key; the keys are countries, continents, subnets and asns"
                )));
            }
        }
    }
    Ok(origin)
}

fn keyword<T: DeserializeOwned>(text: &str) -> Result<T, serde::de::value::Error> {
    T::deserialize(serde::de::value::StrDeserializer::new(text))
}

/// `http:8080/healthz` and `interval=2`-style options as a health check.
fn check_body(check: &str, options: &[String]) -> Result<HealthCheckSpec, ClientError> {
    let usage = || {
        ClientError::new(format!(
            "--check {check}: write TYPE:PORT[/PATH], e.g. tcp:8080 or http:80/healthz"
        ))
    };
    let (kind, rest) = check.split_once(':').ok_or_else(usage)?;
    let kind = keyword::<CheckKind>(kind)
        .map_err(|e| ClientError::new(format!("--check {check}: {e}")))?;
    let (port, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let port: i64 = port.parse().map_err(|_| usage())?;
    let mut spec = HealthCheckSpec::new(kind, port);
    spec.path = path.map(|path| Lined::new(path.to_owned()));
    for option in options {
        let (key, value) = option.split_once('=').ok_or_else(|| {
            ClientError::new(format!(
                "--check-option {option}: write KEY=VALUE, e.g. interval=2 or expect_status=200,204"
            ))
        })?;
        let whole = |value: &str| {
            value.trim().parse::<i64>().map_err(|_| {
                ClientError::new(format!("--check-option {option}: {key} is a whole number"))
            })
        };
        let seconds = |value: &str| {
            value.trim().parse::<f64>().map(Lined::new).map_err(|_| {
                ClientError::new(format!(
                    "--check-option {option}: {key} is a number of seconds"
                ))
            })
        };
        let text = || Some(Lined::new(value.to_owned()));
        match key {
            "path" => spec.path = text(),
            "host" => spec.host = text(),
            "weight_header" => spec.weight_header = text(),
            "interval" => spec.interval = Some(seconds(value)?),
            "timeout" => spec.timeout = Some(seconds(value)?),
            "fall" => spec.fall = Some(Lined::new(whole(value)?)),
            "rise" => spec.rise = Some(Lined::new(whole(value)?)),
            "expect_status" => {
                let statuses = value.split(',').map(whole).collect::<Result<_, _>>()?;
                spec.expect_status = Some(Lined::new(statuses));
            }
            _ => {
                return Err(ClientError::new(format!(
                    "--check-option {option}: no such key; the keys are interval, timeout, fall, rise, path, host, expect_status and weight_header"
                )));
            }
        }
    }
    Ok(spec)
}

/// Tasks as a table.
pub fn task_table(tasks: &[Task]) -> String {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.hostname.clone(),
                t.origin_group.clone(),
                t.ttl.to_string(),
                t.answers.to_string(),
                t.enabled.to_string(),
                t.status.clone(),
            ]
        })
        .collect();
    table(
        &[
            "ID", "HOSTNAME", "GROUP", "TTL", "ANSWERS", "ENABLED", "STATUS",
        ],
        &rows,
    )
}

/// Origin groups as a table: one line per origin with its weight and region keys (what
/// the file says); the group's policy, users and DNS-only usability on its first line.
pub fn group_table(groups: &[Group]) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    for g in groups {
        let usable = match g.dns_only.usable {
            true => "yes".to_owned(),
            false => format!("no: {}", g.dns_only.reasons.join("; ")),
        };
        let region = g.policy == "region";
        let mut origins = g.origins.iter().map(|o| origin_cells(o, region));
        let first = origins.next().unwrap_or_else(|| vec!["-".to_owned(); 4]);
        let mut row = vec![g.name.clone(), policy_cell(g)];
        row.extend(first);
        row.push(match g.used_by.is_empty() {
            true => "-".to_owned(),
            false => g.used_by.join(","),
        });
        row.push(usable);
        rows.push(row);
        for cells in origins {
            let mut row = vec![String::new(), String::new()];
            row.extend(cells);
            rows.push(row);
        }
    }
    table(
        &[
            "NAME", "POLICY", "ORIGIN", "WEIGHT", "REGION", "HEALTH", "USED BY", "DNS-ONLY",
        ],
        &rows,
    )
}

/// The group's policy and, with a fallback, its next group and the group of the chain
/// answering now (`weight, fallback backup: serving backup`; `all down` while none is).
fn policy_cell(group: &Group) -> String {
    match &group.fallback {
        None => group.policy.clone(),
        Some(next) => format!(
            "{}, fallback {next}: {}",
            group.policy,
            group
                .serving
                .as_ref()
                .map_or("all down".to_owned(), |g| format!("serving {g}"))
        ),
    }
}

/// An origin's address, weight and region keys (`countries=CN,HK continents=EU`); a
/// region group's origin without keys is one of its `default` origins.
fn origin_cells(origin: &Origin, region: bool) -> Vec<String> {
    let keys: Vec<String> = [
        ("countries", &origin.countries),
        ("continents", &origin.continents),
        ("subnets", &origin.subnets),
        ("asns", &origin.asns.iter().map(i64::to_string).collect()),
    ]
    .into_iter()
    .filter(|(_, values)| !values.is_empty())
    .map(|(key, values)| format!("{key}={}", values.join(",")))
    .collect();
    let regions = match (keys.is_empty(), region) {
        (false, _) => keys.join(" "),
        (true, true) => "default".to_owned(),
        (true, false) => "-".to_owned(),
    };
    vec![
        origin.address.clone(),
        origin.weight.to_string(),
        regions,
        health_cell(origin.health.as_ref()),
    ]
}

/// `up since T`, `down since T: why`, `unchecked`, or `-` for a group without checks.
fn health_cell(health: Option<&OriginHealth>) -> String {
    let Some(health) = health else {
        return "-".to_owned();
    };
    // What nearest ranks and what the origin reported of itself (SPEC §12).
    let mut extra = String::new();
    if let Some(rtt) = health.rtt_ms {
        extra.push_str(&format!(", rtt {rtt:.1} ms"));
    }
    if let Some(weight) = health.reported_weight {
        extra.push_str(&format!(", reports weight {weight}"));
    }
    let cell = match (health.state.as_str(), &health.last_error) {
        ("unchecked", _) => "unchecked".to_owned(),
        ("down", Some(error)) => format!("down since {}: {error}", health.since),
        (state, _) => format!("{state} since {}", health.since),
    };
    cell + &extra
}

/// `lbdns nodes`: one aligned line per node of the fleet (`GET /v1/nodes`): its id, the
/// revision of each file it serves (`name@revision`, by name), whether its first health
/// round is done, and its GeoIP database's build time (RFC 3339, UTC).
pub fn nodes_table(reply: &NodeList) -> String {
    if reply.nodes.is_empty() {
        return "no fleet: this server serves its own files (--dir)\n".to_owned();
    }
    let rows: Vec<Vec<String>> = reply
        .nodes
        .iter()
        .map(|node| {
            let mark = match reply.node.as_deref() == Some(node.id.as_str()) {
                true => " (this one)",
                false => "",
            };
            // By name: the map is ordered.
            let files: Vec<String> = node
                .files
                .iter()
                .map(|(name, revision)| format!("{name}@{revision}"))
                .collect();
            let health = match node.health_ready {
                true => "ready",
                false => "checking",
            };
            let geoip = node.geoip_build_epoch.map_or("-".to_owned(), |e| {
                let built = std::time::UNIX_EPOCH + std::time::Duration::from_secs(e);
                humantime::format_rfc3339_seconds(built).to_string()
            });
            vec![
                format!("{}{mark}", node.id),
                health.to_owned(),
                geoip,
                match files.is_empty() {
                    true => "-".to_owned(),
                    false => files.join(" "),
                },
            ]
        })
        .collect();
    table(&["NODE", "HEALTH", "GEOIP BUILT", "FILES"], &rows)
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let start = out.len();
        for (cell, w) in cells.iter().zip(&widths) {
            let _ = write!(out, "{cell:<w$}  ");
        }
        // A row may stop early (an origin's line under its group): no trailing blanks.
        out.truncate(start + out[start..].trim_end().len());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_line_up() {
        let tasks: Vec<Task> = serde_json::from_value(json!([
            {"id": "www", "hostname": "www.example.com", "mode": "dns_only", "origin_group": "web", "ttl": 30, "answers": 1, "enabled": true, "status": "effective"},
        ]))
        .unwrap();
        let out = task_table(&tasks);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].find("HOSTNAME"), lines[1].find("www.example.com"));
        assert!(lines[1].ends_with("effective"));
    }

    #[test]
    fn nodes_table_lines_up_with_times_and_file_revisions() {
        let reply: NodeList = serde_json::from_value(json!({"node": "a", "nodes": [
            {"id": "a", "files": {"example.com.zone": 7, "example.com.lb.yaml": 12},
             "health_ready": true, "geoip_build_epoch": 1_795_883_671u64},
            {"id": "node-b", "files": {}, "health_ready": false, "geoip_build_epoch": null},
        ]}))
        .unwrap();
        let out = nodes_table(&reply);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(lines[0].find("HEALTH"), lines[1].find("ready"), "{out}");
        assert_eq!(lines[0].find("HEALTH"), lines[2].find("checking"), "{out}");
        assert_eq!(
            lines[0].find("FILES"),
            lines[1].find("example.com.lb.yaml@12"),
            "{out}"
        );
        assert!(lines[1].starts_with("a (this one)"), "{out}");
        assert!(lines[1].contains("2026-11-28T16:34:31Z"), "{out}");
        assert!(
            lines[1].ends_with("example.com.lb.yaml@12 example.com.zone@7"),
            "{out}"
        );
        assert!(
            lines[2].starts_with("node-b ") && lines[2].ends_with('-'),
            "{out}"
        );
    }

    #[test]
    fn api_addresses_need_a_port() {
        for good in [
            "127.0.0.1:8053",
            "localhost:8053",
            "[::1]:8053",
            "http://localhost",
            "https://api.example.com/",
        ] {
            assert_eq!(parse_api(good).as_deref(), Ok(good), "{good}");
        }
        for bad in [
            "localhost",
            "127.0.0.1",
            "::1",
            "[::1]",
            "localhost:",
            ":8053",
            "host:http",
        ] {
            let error = parse_api(bad).unwrap_err();
            assert!(
                error.contains("HOST:PORT") && error.contains("port 80"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn group_table_shows_each_origins_health() {
        let groups: Vec<Group> = serde_json::from_value(json!([{"name": "web", "policy": "weight", "origins": [
            {"address": "192.0.2.1", "weight": 1, "health": {"state": "up", "since": "2026-11-28T16:00:00Z", "last_error": null}},
            {"address": "192.0.2.2", "weight": 1, "health": {"state": "down", "since": "2026-11-28T16:01:00Z", "last_error": "connect to port 80: connection refused"}},
            {"address": "192.0.2.3", "weight": 1, "health": {"state": "unchecked", "since": "2026-11-28T16:02:00Z", "last_error": null}},
        ], "dns_only": {"usable": true, "reasons": []}, "used_by": []}]))
        .unwrap();
        let out = group_table(&groups);
        assert!(out.contains("up since 2026-11-28T16:00:00Z"), "{out}");
        assert!(
            out.contains("down since 2026-11-28T16:01:00Z: connect to port 80: connection refused"),
            "{out}"
        );
        assert!(
            out.lines().nth(3).is_some_and(|l| l.contains("unchecked")),
            "{out}"
        );
    }

    #[test]
    fn group_table_has_a_line_per_origin_with_its_region_keys() {
        let groups: Vec<Group> = serde_json::from_value(json!([
            {"name": "geo", "policy": "region", "origins": [
                {"address": "198.51.100.1", "weight": 1, "countries": ["CN", "HK"], "continents": ["AS"]},
                {"address": "198.51.100.9", "weight": 2},
            ], "dns_only": {"usable": true, "reasons": []}, "used_by": ["geo"]},
            {"name": "empty", "policy": "weight", "origins": [],
                "dns_only": {"usable": false, "reasons": ["the group has no origins"]}, "used_by": []},
        ]))
        .unwrap();
        let out = group_table(&groups);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        let cells = |line: &str| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            cells(lines[1]),
            [
                "geo",
                "region",
                "198.51.100.1",
                "1",
                "countries=CN,HK",
                "continents=AS",
                "-",
                "geo",
                "yes"
            ]
        );
        assert_eq!(cells(lines[2]), ["198.51.100.9", "2", "default", "-"]);
        assert_eq!(lines[1].find("198.51.100.1"), lines[2].find("198.51.100.9"));
        assert!(
            lines[3].starts_with("empty ") && lines[3].ends_with("no: the group has no origins")
        );
        assert!(
            out.lines().all(|l| l == l.trim_end()),
            "no trailing blanks:\n{out}"
        );
    }

    /// The bodies as the API reads them: the JSON the client sends, compared field by
    /// field with what an operator would write by hand.
    #[test]
    fn group_bodies() {
        let json = |group: GroupSpec| serde_json::to_value(group).unwrap();
        let args = |policy: &str, origins: &[&str]| GroupArgs {
            policy: policy.to_owned(),
            origins: origins.iter().map(|o| o.to_string()).collect(),
            ..GroupArgs::default()
        };
        let body = json(group_body(&args("weight", &["192.0.2.1=3", "192.0.2.2"])).unwrap());
        assert_eq!(
            body,
            json!({"policy": "weight", "origins": [
                {"address": "192.0.2.1", "weight": 3}, {"address": "192.0.2.2", "weight": 1}]})
        );
        let checked = json(
            group_body(&GroupArgs {
                check: Some("http:8080/healthz".into()),
                check_options: vec![
                    "interval=0.5".into(),
                    "fall=2".into(),
                    "expect_status=200,204".into(),
                    "host=www.example.com".into(),
                ],
                ..args("nearest", &["192.0.2.1"])
            })
            .unwrap(),
        );
        assert_eq!(checked["policy"], "nearest");
        assert_eq!(
            checked["health_check"],
            json!({"type": "http", "port": 8080, "path": "/healthz", "interval": 0.5, "fall": 2,
                   "expect_status": [200, 204], "host": "www.example.com"})
        );
        // Region keys as `group list` prints them, and the chain's keys.
        let region = json(
            group_body(&GroupArgs {
                fallback: Some("backup".into()),
                min_up: Some(2),
                when_all_down: Some("servfail".into()),
                ..args(
                    "region",
                    &[
                        "198.51.100.21=2 asns=15169,AS7018 countries=DE,FR",
                        "2001:db8::1 continents=EU subnets=10.0.0.0/8,2001:db8::/32",
                        "198.51.100.29",
                    ],
                )
            })
            .unwrap(),
        );
        assert_eq!(
            region,
            json!({"policy": "region", "origins": [
                {"address": "198.51.100.21", "weight": 2, "asns": [15169, 7018],
                 "countries": ["DE", "FR"]},
                {"address": "2001:db8::1", "weight": 1, "continents": ["EU"],
                 "subnets": ["10.0.0.0/8", "2001:db8::/32"]},
                {"address": "198.51.100.29", "weight": 1}],
                "fallback": "backup", "min_up": 2, "when_all_down": "servfail"})
        );
        let check = |check: Option<&str>, options: &[&str]| GroupArgs {
            check: check.map(str::to_owned),
            check_options: options.iter().map(|o| o.to_string()).collect(),
            ..args("weight", &[])
        };
        for (args, wording) in [
            (
                args("fastest", &[]),
                "--policy fastest: unknown variant `fastest`",
            ),
            (
                args("weight", &["192.0.2.1=x"]),
                "--origin 192.0.2.1=x: the weight after '=' must be a whole number 0..100",
            ),
            (
                args("region", &["192.0.2.1 country=DE"]),
                "country is no region key; the keys are countries, continents, subnets and asns",
            ),
            (
                args("region", &["192.0.2.1 DE"]),
                "write region keys as KEY=VALUE,VALUE after the address",
            ),
            (
                args("region", &["192.0.2.1 asns=google"]),
                "asns are whole numbers",
            ),
            (
                GroupArgs {
                    when_all_down: Some("panic".into()),
                    ..args("weight", &[])
                },
                "--when-all-down panic: unknown variant `panic`",
            ),
            (check(Some("http"), &[]), "write TYPE:PORT[/PATH]"),
            (
                check(Some("ftp:21"), &[]),
                "--check ftp:21: unknown variant `ftp`",
            ),
            (check(Some("tcp:80"), &["fall=x"]), "fall is a whole number"),
            (
                check(Some("tcp:80"), &["color=red"]),
                "color=red: no such key",
            ),
            (check(None, &["fall=2"]), "--check-option needs --check"),
        ] {
            let error = group_body(&args).unwrap_err().to_string();
            assert!(error.contains(wording), "{error}");
        }
    }

    #[test]
    fn task_bodies_leave_the_defaults_to_the_site_file() {
        let task = task_body(None, "www.example.com", "web", None, Some(2), true);
        assert_eq!(
            serde_json::to_value(&task).unwrap(),
            json!({"hostname": "www.example.com", "mode": "dns_only", "origin_group": "web",
                   "ttl": 60, "answers": 2, "enabled": false})
        );
        let read: TaskSpec = serde_json::from_str(
            r#"{"hostname": "www.example.com",
            "origin_group": "web", "answers": 2, "enabled": false}"#,
        )
        .unwrap();
        assert_eq!(task, read, "the defaults are the file's");
    }
}
