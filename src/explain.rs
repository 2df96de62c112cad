//! Why a client gets the answer it gets (SPEC §12 "Explain"): the task of a hostname,
//! the fallback chain walked, the region level that matched and why, every candidate
//! with its health, weight and probability of being in the answer, the TTL and the ECS
//! scope.
//!
//! Nothing here re-implements selection: the chain is walked with
//! [`crate::select::serving`], the level and scope come from [`crate::select::route`],
//! and the probabilities are the shares of [`DRAWS`] picks by the query path's own
//! [`crate::select::pick`] with the health of the moment (exact for sticky tasks, which
//! draw nothing). `lbdns explain` reads a directory, where every origin is unchecked
//! (up); the API's explain sees the running server's health checks.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::Name;
use serde_json::{Value, json};

use crate::geoip::GeoIp;
use crate::health::{Health, Key, OriginHealth};
use crate::load::Config;
use crate::select::{
    self, Client, CompiledGroup, Family, Level, Live, ScopeTables, Serving, pick, pick_sticky,
    route,
};
use crate::site::{OriginGroup, Policy, Site, Target, Task, WhenAllDown, site_name};
use crate::snapshot::Snapshot;

/// Picks drawn to estimate each candidate's probability: the estimate of a probability
/// p is off by more than 0.01 with chance below 1e-6 (4.9 standard deviations at p = 0.5).
pub const DRAWS: u32 = 60_000;

/// What to explain: a hostname asked by a client.
#[derive(Clone, Debug)]
pub struct Question {
    pub hostname: Name,
    pub family: Family,
    pub client: Client,
}

impl Question {
    /// Reads a question as the CLI and API take it: `qtype` A (default) or AAAA; the
    /// client as an address (`client`, the query's source) or an ECS prefix (`ecs`),
    /// default 127.0.0.1.
    pub fn parse(
        hostname: &str,
        qtype: Option<&str>,
        client: Option<&str>,
        ecs: Option<&str>,
    ) -> Result<Self, String> {
        let hostname = Name::from_ascii(hostname.trim())
            .map_err(|e| format!("hostname {hostname:?} is not a domain name: {e}"))?
            .to_lowercase();
        let hostname = Name::from_labels(hostname.iter()).unwrap_or(hostname);
        let family = match qtype.map(str::to_ascii_uppercase).as_deref() {
            None | Some("A") => Family::V4,
            Some("AAAA") => Family::V6,
            Some(other) => return Err(format!("type {other:?} is not A or AAAA")),
        };
        let client = match (client, ecs) {
            (Some(_), Some(_)) => return Err("give client or ecs, not both".to_owned()),
            (Some(addr), None) => {
                let addr: IpAddr = addr
                    .trim()
                    .parse()
                    .map_err(|_| format!("client {addr:?} is not an IP address"))?;
                Client {
                    addr,
                    source_prefix: if addr.is_ipv4() { 32 } else { 128 },
                }
            }
            (None, Some(prefix)) => {
                let net: ipnet::IpNet = prefix.trim().parse().map_err(|_| {
                    format!("ecs {prefix:?} is not a prefix in CIDR form (e.g. 203.0.113.0/24)")
                })?;
                if net.trunc() != net {
                    return Err(format!(
                        "ecs {prefix} has host bits set; did you mean {}?",
                        net.trunc()
                    ));
                }
                Client {
                    addr: net.network(),
                    source_prefix: net.prefix_len(),
                }
            }
            (None, None) => Client {
                addr: IpAddr::from([127, 0, 0, 1]),
                source_prefix: 32,
            },
        };
        Ok(Self {
            hostname: hostname.to_lowercase(),
            family,
            client,
        })
    }
}

/// The health cells of one group's origins, as a pick reads them.
struct Cells {
    cells: Vec<Option<Arc<OriginHealth>>>,
    /// The group's check reads a `weight_header`: a pick takes the weights reported, as
    /// the query path does (the snapshot's `Link`).
    reports_weights: bool,
}

impl Cells {
    fn of(site: &Site, group: &OriginGroup, health: &Health) -> Self {
        Self {
            cells: group
                .origins
                .iter()
                .map(|o| Key::of_origin(site, group, o).map(|key| health.cell(key)))
                .collect(),
            reports_weights: group
                .health_check
                .as_ref()
                .is_some_and(|check| check.weight_header.is_some()),
        }
    }

    fn cell(&self, origin: u16) -> Option<&OriginHealth> {
        self.cells[usize::from(origin)].as_deref()
    }
}

impl Live for &Cells {
    fn is_up(&self, origin: u16) -> bool {
        self.cell(origin).is_none_or(|c| c.is_up())
    }

    fn reports_weights(&self) -> bool {
        self.reports_weights
    }

    fn weight(&self, origin: u16, configured: u32) -> u32 {
        self.cell(origin)
            .and_then(|c| c.reported_weight())
            .unwrap_or(configured)
    }

    fn rtt_us(&self, origin: u16) -> Option<u32> {
        self.cell(origin).and_then(|c| c.rtt_us())
    }
}

/// Explains `question` against `config` with the health in `health`; `site` limits the
/// search to one site (the API's path). A `running` server's snapshot lends the scope
/// tables of the groups it compiled. The error says what was not found.
pub fn explain(
    config: &Config,
    health: &Health,
    running: Option<&Snapshot>,
    site: Option<&str>,
    question: &Question,
) -> Result<Value, String> {
    let sites = config
        .sites
        .iter()
        .filter(|s| site.is_none_or(|name| site_name(&s.site.origin) == name));
    let mut found = None;
    for loaded in sites {
        if let Some(task) = task_for(&loaded.site, &question.hostname) {
            found = Some((&loaded.site, task));
            break;
        }
    }
    let Some((site, task)) = found else {
        return Err(format!(
            "no task answers {} (a task's hostname, or a name under a wildcard task's)",
            question.hostname
        ));
    };
    let head = site
        .group(&task.origin_group)
        .ok_or_else(|| format!("task {} names no group of its site", task.id))?;
    let chain = site.chain(head);
    let geoip = config.geoip.as_deref();
    let mut tables = ScopeTables::new(geoip);
    if let Some(snapshot) = running {
        snapshot.share_tables(&site.origin, &mut tables);
    }
    let compiled: Vec<CompiledGroup> = chain
        .iter()
        .map(|g| CompiledGroup::with_tables(g, &mut tables))
        .collect();
    let cells: Vec<Cells> = chain.iter().map(|g| Cells::of(site, g, health)).collect();
    let family = match head.is_cname() {
        true => Family::Name,
        false => question.family,
    };
    let serving = select::serving(&compiled, family, |g, i| (&cells[g]).is_up(i));
    let walked: Vec<Value> = chain
        .iter()
        .enumerate()
        .map(|(g, group)| {
            let usable = (0..group.origins.len() as u16)
                .filter(|&i| compiled[g].serves(family) && (&cells[g]).is_up(i))
                .count();
            json!({
                "group": group.name,
                "policy": group.policy,
                "serves_family": compiled[g].serves(family),
                "min_up": group.fallback.min_up,
                "usable": usable,
            })
        })
        .collect();
    let when_all_down = head.fallback.when_all_down;
    let (g, note) = match serving {
        Serving::Group(g) => (g, None),
        Serving::NotServed => (
            0,
            Some("no group of the chain has origins of this type: NODATA"),
        ),
        Serving::AllDown => match when_all_down {
            WhenAllDown::FailOpen => (
                0,
                Some(
                    "every group of the chain is below min_up: the task's group answers as if up (when_all_down: fail_open)",
                ),
            ),
            WhenAllDown::Servfail => {
                return Ok(summary(
                    task,
                    &walked,
                    json!({
                        "answer": "SERVFAIL",
                        "why": "every group of the chain is below min_up (when_all_down: servfail)",
                    }),
                ));
            }
            WhenAllDown::Nodata => {
                return Ok(summary(
                    task,
                    &walked,
                    json!({
                        "answer": "NODATA",
                        "why": "every group of the chain is below min_up (when_all_down: nodata)",
                    }),
                ));
            }
        },
    };
    let (group, compiled_group, live) = (chain[g], &compiled[g], &cells[g]);
    let mut counts = vec![0u32; group.origins.len()];
    let (mut level, mut scope, mut failed_open) = (None, 0, false);
    let draws = if task.sticky { 1 } else { DRAWS };
    let mut rng = rand::rng();
    for _ in 0..draws {
        let mut route = route(compiled_group, family, &question.client);
        let selection = match task.sticky {
            true => pick_sticky(&mut route, live, task.answers),
            false => pick(&mut route, live, task.answers, &mut rng),
        };
        for &i in selection.origins() {
            counts[usize::from(i)] += 1;
        }
        (level, scope, failed_open) = (selection.level, selection.scope, selection.failed_open);
    }
    let candidates: Vec<Value> = group
        .origins
        .iter()
        .enumerate()
        .filter(|(_, o)| family_of(&o.target) == Some(family))
        .map(|(i, origin)| {
            let cell = live.cell(i as u16);
            json!({
                "address": origin.target.to_string(),
                "weight": origin.weight,
                "reported_weight": cell.and_then(|c| c.reported_weight()),
                "health": cell.map_or("unchecked (no health_check)", |c| c.state().as_str()),
                "rtt_ms": cell.and_then(|c| c.rtt_us()).map(|us| f64::from(us) / 1000.0),
                "region": region_keys(origin),
                "probability": (f64::from(counts[i]) / f64::from(draws) * 1000.0).round() / 1000.0,
            })
        })
        .collect();
    let why = why(group, level, &question.client, geoip);
    let mut answer = json!({
        "serving_group": group.name,
        "level": match group.policy {
            Policy::Region => level.map_or(Value::Null, |l| json!(l)),
            _ => json!("all"),
        },
        "why": why,
        "candidates": candidates,
        "ttl": task.ttl,
        "ecs_scope": scope,
        "failed_open": failed_open,
    });
    if let Some(note) = note {
        answer["note"] = json!(note);
    }
    Ok(summary(task, &walked, answer))
}

/// The task, the chain and the rest of the answer in one object.
fn summary(task: &Task, chain: &[Value], answer: Value) -> Value {
    let mut out = json!({
        "task": {
            "id": task.id,
            "hostname": task.hostname.to_string(),
            "origin_group": task.origin_group,
            "enabled": task.enabled,
            "answers": task.answers,
            "stickiness": if task.sticky { "client_subnet" } else { "none" },
        },
        "chain": chain,
    });
    if let (Some(out), Value::Object(answer)) = (out.as_object_mut(), answer) {
        out.extend(answer);
    }
    out
}

/// The task answering `name`: the one with that hostname, else the wildcard task with
/// the longest base that holds it.
fn task_for<'a>(site: &'a Site, name: &Name) -> Option<&'a Task> {
    if let Some(task) = site.tasks.iter().find(|t| &t.hostname == name) {
        return Some(task);
    }
    site.tasks
        .iter()
        .filter(|t| t.hostname.is_wildcard())
        .filter(|t| {
            let base = t.hostname.base_name();
            base.zone_of(name) && &base != name
        })
        .max_by_key(|t| t.hostname.num_labels())
}

fn family_of(target: &Target) -> Option<Family> {
    match target {
        Target::Ip(IpAddr::V4(_)) => Some(Family::V4),
        Target::Ip(IpAddr::V6(_)) => Some(Family::V6),
        Target::Name(_) => Some(Family::Name),
        Target::WithPort(_) => None,
    }
}

/// The origin's region keys that are set; `{}` for a default origin.
fn region_keys(origin: &crate::site::Origin) -> Value {
    let mut keys = serde_json::Map::new();
    let mut add = |key: &str, values: Vec<String>| {
        if !values.is_empty() {
            keys.insert(key.to_owned(), json!(values));
        }
    };
    add(
        "subnets",
        origin.subnets.iter().map(|n| n.to_string()).collect(),
    );
    add("asns", origin.asns.iter().map(|a| a.to_string()).collect());
    add(
        "countries",
        origin.countries.iter().map(|c| c.to_string()).collect(),
    );
    add(
        "continents",
        origin.continents.iter().map(|c| c.to_string()).collect(),
    );
    Value::Object(keys)
}

/// Why the client landed on `level`, in words, with the database facts behind it.
fn why(
    group: &OriginGroup,
    level: Option<Level>,
    client: &Client,
    geoip: Option<&GeoIp>,
) -> String {
    let addr = client.addr;
    match (group.policy, level) {
        (Policy::Weight, _) => {
            "policy weight: every usable origin, in proportion to weight".to_owned()
        }
        (Policy::Nearest, _) => format!(
            "policy nearest: the usable origin with the lowest health-check round trip; those within {} % of it share by weight; unmeasured origins last",
            (select::NEAREST_TIE * 100.0).round()
        ),
        (Policy::Region, Some(Level::Subnet)) => {
            let rule = group
                .origins
                .iter()
                .flat_map(|o| &o.subnets)
                .filter(|n| n.contains(&addr))
                .max_by_key(|n| n.prefix_len());
            match rule {
                Some(net) => {
                    format!("{addr} is in the subnet rule {net} (the longest that holds it)")
                }
                None => format!("{addr} is in a subnet rule"),
            }
        }
        (Policy::Region, Some(Level::Asn)) => match geoip.map(|db| db.locate_asn(addr)) {
            Some((Some(asn), prefix)) => format!(
                "{addr} is in AS{asn} (ASN database network /{prefix}), which origins list in asns"
            ),
            _ => format!("{addr} is in an autonomous system origins list"),
        },
        (Policy::Region, Some(level @ (Level::Country | Level::Continent))) => {
            let location = geoip.map(|db| db.locate(addr)).unwrap_or_default();
            let (key, value) = match level {
                Level::Country => ("country", location.country.map(|c| c.to_string())),
                _ => ("continent", location.continent.map(|c| c.to_string())),
            };
            format!(
                "{addr} is in {key} {} (GeoIP network /{}), which origins list; no subnet rule or AS of theirs matched first",
                value.unwrap_or_default(),
                location.prefix_len
            )
        }
        (Policy::Region, Some(Level::Default)) => format!(
            "no subnet rule, AS, country or continent of the group's origins holds {addr}: the default origins (those without region keys)"
        ),
        (Policy::Region, Some(Level::All)) => {
            format!("no region key holds {addr} and the group has no default origins: every origin")
        }
        (Policy::Region, None) => "no origin can answer".to_owned(),
    }
}

/// Client addresses drawn per family and configuration by [`diff`]: a share is off by
/// more than 0.01 with chance below 1e-6 (4.9 standard deviations at p = 0.5).
pub const DIFF_SAMPLES: u32 = 60_000;

/// Shares per origin of each hostname's answers, before and after (SPEC §12 "Preview"):
/// of the IPv4 and of the IPv6 address space (client addresses drawn uniformly, routed
/// through the GeoIP and ASN databases and subnet rules, every origin up), and of the
/// answer records, with warnings about the configuration after. A `running` server's
/// snapshot lends the scope tables of the groups it compiled: only the groups the
/// change touches make theirs.
pub fn diff(before: &Config, after: &Config, running: Option<&Snapshot>) -> Value {
    let mut tables = [before, after].map(|c| {
        let mut tables = ScopeTables::new(c.geoip.as_deref());
        if let Some(snapshot) = running {
            for loaded in &c.sites {
                snapshot.share_tables(&loaded.site.origin, &mut tables);
            }
        }
        tables
    });
    let mut hostnames: Vec<(String, Name)> = Vec::new();
    for config in [before, after] {
        for loaded in &config.sites {
            for task in &loaded.site.tasks {
                let entry = (site_name(&loaded.site.origin), task.hostname.clone());
                if !hostnames.contains(&entry) {
                    hostnames.push(entry);
                }
            }
        }
    }
    hostnames.sort();
    let mut out = Vec::new();
    for (site, hostname) in &hostnames {
        for family in [Family::V4, Family::V6, Family::Name] {
            let [b, a] = &mut tables;
            let shares = [
                shares(before, site, hostname, family, b),
                shares(after, site, hostname, family, a),
            ];
            if shares.iter().all(|s| s.is_empty()) {
                continue;
            }
            let mut origins: Vec<&String> = shares.iter().flat_map(|s| s.keys()).collect();
            origins.sort();
            origins.dedup();
            let rows: Vec<Value> = origins
                .iter()
                .map(|origin| {
                    let at = |i: usize, k: usize| shares[i].get(*origin).map_or(0.0, |s| s[k]);
                    json!({
                        "origin": origin,
                        "v4_clients": {"before": at(0, 0), "after": at(1, 0)},
                        "v6_clients": {"before": at(0, 1), "after": at(1, 1)},
                        "answers": {"before": at(0, 2), "after": at(1, 2)},
                    })
                })
                .collect();
            out.push(json!({
                "site": site,
                "hostname": hostname.to_string(),
                "type": match family { Family::V4 => "A", Family::V6 => "AAAA", Family::Name => "CNAME" },
                "origins": rows,
            }));
        }
    }
    json!({"hostnames": out, "warnings": warnings(after)})
}

/// Per origin address: its share of IPv4 clients, of IPv6 clients, and of answer records.
fn shares(
    config: &Config,
    site: &str,
    hostname: &Name,
    family: Family,
    tables: &mut ScopeTables<'_>,
) -> std::collections::BTreeMap<String, [f64; 3]> {
    use rand::SeedableRng;
    let mut out = std::collections::BTreeMap::new();
    let Some(loaded) = config
        .sites
        .iter()
        .find(|s| site_name(&s.site.origin) == site)
    else {
        return out;
    };
    let Some(task) = loaded
        .site
        .tasks
        .iter()
        .find(|t| &t.hostname == hostname && t.enabled)
    else {
        return out;
    };
    let Some(group) = loaded.site.group(&task.origin_group) else {
        return out;
    };
    let compiled = CompiledGroup::with_tables(group, tables);
    let family = match (group.is_cname(), family) {
        (true, Family::Name) | (false, Family::V4 | Family::V6) => family,
        _ => return out,
    };
    if !compiled.serves(family) {
        return out;
    }
    // Seeded: the same directories print the same figures.
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x5eed);
    let mut counts = vec![[0u32; 3]; group.origins.len()];
    let mut records = 0u32;
    for (k, v6) in [false, true].into_iter().enumerate() {
        for _ in 0..DIFF_SAMPLES {
            let addr = match v6 {
                false => IpAddr::from(rand::RngExt::random::<[u8; 4]>(&mut rng)),
                true => IpAddr::from(rand::RngExt::random::<[u8; 16]>(&mut rng)),
            };
            let client = Client {
                addr,
                source_prefix: if v6 { 128 } else { 32 },
            };
            let mut route = route(&compiled, family, &client);
            let selection = match task.sticky {
                true => pick_sticky(&mut route, |_| true, task.answers),
                false => pick(&mut route, |_| true, task.answers, &mut rng),
            };
            for &i in selection.origins() {
                counts[usize::from(i)][k] += 1;
                counts[usize::from(i)][2] += 1;
                records += 1;
            }
        }
    }
    for (i, origin) in group.origins.iter().enumerate() {
        if family_of(&origin.target) != Some(family) {
            continue;
        }
        let share =
            |n: u32, of: u32| (f64::from(n) / f64::from(of.max(1)) * 1000.0).round() / 1000.0;
        out.insert(
            origin.target.to_string(),
            [
                share(counts[i][0], DIFF_SAMPLES),
                share(counts[i][1], DIFF_SAMPLES),
                share(counts[i][2], records),
            ],
        );
    }
    out
}

/// What is probably a mistake in a configuration: a region level whose origins are all
/// drained, a country or AS no network of the databases maps to, a region group with no
/// default origin (clients nowhere listed get every origin).
pub fn warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    // Read only when some group has such a key: each is a walk of a database's runs.
    let (mut countries, mut asns) = (None, None);
    let geoip = config.geoip.as_deref();
    for loaded in &config.sites {
        let site = site_name(&loaded.site.origin);
        for group in &loaded.site.groups {
            let name = &group.name;
            if group.policy == Policy::Region && !group.origins.iter().any(|o| o.is_default()) {
                warnings.push(format!(
                    "{site}: group {name} has no default origin: a client no region key holds gets any origin"
                ));
            }
            if group.origins.iter().all(|o| o.weight == 0) {
                warnings.push(format!("{site}: group {name} has only weight-0 origins"));
            }
            let mut keys: Vec<String> = Vec::new();
            for o in &group.origins {
                keys.extend(o.countries.iter().map(|c| format!("countries {c}")));
                keys.extend(o.continents.iter().map(|c| format!("continents {c}")));
                keys.extend(o.subnets.iter().map(|n| format!("subnets {n}")));
                keys.extend(o.asns.iter().map(|a| format!("asns {a}")));
            }
            keys.sort();
            keys.dedup();
            for key in keys {
                let holders: Vec<&crate::site::Origin> = group
                    .origins
                    .iter()
                    .filter(|o| {
                        o.countries.iter().any(|c| key == format!("countries {c}"))
                            || o.continents
                                .iter()
                                .any(|c| key == format!("continents {c}"))
                            || o.subnets.iter().any(|n| key == format!("subnets {n}"))
                            || o.asns.iter().any(|a| key == format!("asns {a}"))
                    })
                    .collect();
                if holders.iter().all(|o| o.weight == 0) {
                    warnings.push(format!(
                        "{site}: group {name}: the level of {key} has only weight-0 origins (its clients go to the next level)"
                    ));
                }
                if let (Some(code), Some(db)) = (key.strip_prefix("countries "), geoip)
                    && db.has_country()
                    && !countries
                        .get_or_insert_with(|| db.countries())
                        .iter()
                        .any(|c| c.as_str() == code)
                {
                    warnings.push(format!(
                        "{site}: group {name}: no network of the GeoIP database is in country {code}"
                    ));
                }
                if let (Some(asn), Some(db)) = (key.strip_prefix("asns "), geoip)
                    && db.has_asn()
                    && !asns
                        .get_or_insert_with(|| db.asns())
                        .iter()
                        .any(|a| a.to_string() == asn)
                {
                    warnings.push(format!(
                        "{site}: group {name}: no network of the ASN database is in AS {asn}"
                    ));
                }
            }
        }
    }
    warnings
}

/// `lbdns diff`'s table: per hostname and type, each origin's shares before -> after.
pub fn diff_table(diff: &Value) -> String {
    let mut out = String::new();
    let pct = |v: &Value| format!("{:.1} %", v.as_f64().unwrap_or(0.0) * 100.0);
    for entry in diff["hostnames"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{} {}\n",
            entry["hostname"].as_str().unwrap_or(""),
            entry["type"].as_str().unwrap_or("")
        ));
        let header = ["ORIGIN", "IPV4 CLIENTS", "IPV6 CLIENTS", "ANSWERS"];
        let mut rows = vec![header.map(str::to_owned).to_vec()];
        for row in entry["origins"].as_array().into_iter().flatten() {
            let cell = |key: &str| {
                format!(
                    "{} -> {}",
                    pct(&row[key]["before"]),
                    pct(&row[key]["after"])
                )
            };
            rows.push(vec![
                row["origin"].as_str().unwrap_or("").to_owned(),
                cell("v4_clients"),
                cell("v6_clients"),
                cell("answers"),
            ]);
        }
        let widths: Vec<usize> = (0..4)
            .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        for row in rows {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out.push_str(&format!("  {}\n", line.join("  ").trim_end()));
        }
    }
    for warning in diff["warnings"].as_array().into_iter().flatten() {
        out.push_str(&format!("warning: {}\n", warning.as_str().unwrap_or("")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_parse_as_the_cli_and_api_take_them() {
        let q = Question::parse("WWW.Example.com", None, None, Some("203.0.113.0/24")).unwrap();
        assert_eq!(q.hostname.to_string(), "www.example.com.");
        assert_eq!(q.family, Family::V4);
        assert_eq!(
            (q.client.addr, q.client.source_prefix),
            ("203.0.113.0".parse().unwrap(), 24)
        );
        let q =
            Question::parse("www.example.com.", Some("aaaa"), Some("2001:db8::1"), None).unwrap();
        assert_eq!((q.family, q.client.source_prefix), (Family::V6, 128));
        for (qtype, client, ecs, error) in [
            (Some("MX"), None, None, "type \"MX\" is not A or AAAA"),
            (None, Some("x"), None, "client \"x\" is not an IP address"),
            (
                None,
                None,
                Some("203.0.113.1/24"),
                "did you mean 203.0.113.0/24?",
            ),
            (
                None,
                Some("192.0.2.1"),
                Some("192.0.2.0/24"),
                "give client or ecs, not both",
            ),
        ] {
            let got = Question::parse("www.example.com", qtype, client, ecs).unwrap_err();
            assert!(got.contains(error), "{got}");
        }
    }
}
