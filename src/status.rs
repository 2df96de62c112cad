//! What `lbdns status` shows (SPEC §14), as `knotc status` and `nsd-control status` do:
//! one typed report, built by the server from its committed state ([`Report::of`]),
//! served as JSON at `GET /v1/status` and read back by the CLI into the same type, which
//! prints it for a person ([`std::fmt::Display`]).
//!
//! The report lists its [`Report::problems`]: everything that is not served as configured.
//! `lbdns status` exits 1 when there is any, so a monitoring script needs no parsing.

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::health::State;
use crate::store::{Status as TaskStatus, Store};

/// When `serve` started: set once by [`mark_start`].
static STARTED: OnceLock<SystemTime> = OnceLock::new();

/// Records the server's start time, for the uptime in the report.
pub fn mark_start() {
    let _ = STARTED.set(SystemTime::now());
}

/// The server's state as an operator checks it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub version: String,
    pub uptime_seconds: u64,
    /// The generation of the configuration being served.
    pub generation: u64,
    /// Whether the files on disk load; when not, an older configuration serves.
    pub config_valid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
    pub zones: Vec<ZoneReport>,
    pub tasks: TaskCounts,
    pub origins_down: Vec<OriginDown>,
    /// On a fleet node: every live node and whether it serves the newest files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<Vec<NodeReport>>,
    /// Everything not served as configured, one sentence each; empty when all is well.
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ZoneReport {
    pub zone: String,
    pub serial: u32,
    /// `file` (zones/ of the served directory), `etcd` (a fleet node's mirror) or
    /// `primary` (a secondary zone, SPEC §13).
    pub source: String,
    /// A secondary zone's last refresh and expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<crate::secondary::ZoneStatus>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TaskCounts {
    pub effective: usize,
    pub deploying: usize,
    pub ineffective: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OriginDown {
    pub site: String,
    pub group: String,
    pub origin: String,
    pub since: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeReport {
    pub node: String,
    /// True when the node serves every file at the revision this node has.
    pub current: bool,
    pub health_ready: bool,
}

impl Report {
    /// The report for what `store` serves now.
    pub fn of(store: &Store) -> Self {
        let mut report = Report {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: STARTED
                .get()
                .and_then(|t| t.elapsed().ok())
                .map_or(0, |d| d.as_secs()),
            generation: store.generation(),
            ..Report::default()
        };
        report.config_error = store.reload_error();
        report.config_valid = report.config_error.is_none();
        if let Some(error) = &report.config_error {
            report.problems.push(format!(
                "the files on disk do not load (an older configuration serves): {error}"
            ));
        }
        let fleet = store.nodes();
        let source = if fleet.is_some() { "etcd" } else { "file" };
        let mut serials = store.serving().load().serials();
        serials.sort_by(|a, b| a.0.cmp(&b.0));
        let secondaries = crate::secondary::status();
        report.zones = serials
            .into_iter()
            .map(|(name, serial)| {
                let secondary = secondaries.get(&name.to_string()).cloned();
                ZoneReport {
                    zone: name.to_string(),
                    serial,
                    source: if secondary.is_some() {
                        "primary"
                    } else {
                        source
                    }
                    .to_owned(),
                    secondary,
                }
            })
            .collect();
        for (zone, secondary) in &secondaries {
            let why = secondary.error.as_deref().unwrap_or("no answer yet");
            if secondary.expired {
                report.problems.push(format!(
                    "secondary zone {zone} expired: SERVFAIL until a primary answers ({why})"
                ));
            } else if secondary.serial.is_none() {
                report.problems.push(format!(
                    "secondary zone {zone} is not transferred yet, so not served: {why}"
                ));
            }
        }

        let now = crate::dnssec::lifecycle::now();
        report.problems.extend(
            crate::load::signing_status()
                .iter()
                .filter_map(|zone| zone.warning(now)),
        );

        for site in store.sites() {
            for task in store.tasks(&site.name).unwrap_or_default() {
                match task.status {
                    TaskStatus::Effective => report.tasks.effective += 1,
                    TaskStatus::Deploying => {
                        report.tasks.deploying += 1;
                        report.problems.push(format!(
                            "task {} of {} ({}) is deploying: not answered yet",
                            task.id, site.name, *task.spec.hostname
                        ));
                    }
                    TaskStatus::Ineffective => report.tasks.ineffective += 1,
                }
            }
            for group in store.groups(&site.name).unwrap_or_default() {
                let mut down = 0;
                for origin in &group.origins {
                    let Some(health) = &origin.health else {
                        continue;
                    };
                    if health.state == State::Down {
                        down += 1;
                        report.origins_down.push(OriginDown {
                            site: site.name.clone(),
                            group: group.name.clone(),
                            origin: origin.spec.address.value.clone(),
                            since: health.since.clone(),
                            last_error: health.last_error.clone(),
                        });
                    }
                }
                // A used group with every origin down answers failing open (SPEC §4).
                if down > 0 && down == group.origins.len() && !group.used_by.is_empty() {
                    report.problems.push(format!(
                        "every origin of group {} of {} is down: its tasks answer failing open",
                        group.name, site.name
                    ));
                }
            }
        }

        if let Some((_, nodes)) = fleet {
            let newest = nodes.iter().flat_map(|(_, p)| p.files.iter()).fold(
                std::collections::HashMap::new(),
                |mut newest, (file, revision)| {
                    let at = newest.entry(file.clone()).or_insert(*revision);
                    *at = (*at).max(*revision);
                    newest
                },
            );
            let reports: Vec<NodeReport> = nodes
                .iter()
                .map(|(node, presence)| NodeReport {
                    node: node.clone(),
                    current: newest
                        .iter()
                        .all(|(file, rev)| presence.files.get(file) == Some(rev)),
                    health_ready: presence.health_ready,
                })
                .collect();
            for node in reports.iter().filter(|n| !n.current) {
                report.problems.push(format!(
                    "fleet node {} does not serve the newest files yet",
                    node.node
                ));
            }
            report.fleet = Some(reports);
        }
        report
    }

    /// True when everything is served as configured.
    pub fn healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

/// "3d 4h", "2h 5m", "12m 3s", "40s".
fn human(duration: Duration) -> String {
    let s = duration.as_secs();
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "lbdns {}, up {}, configuration generation {} ({})",
            self.version,
            human(Duration::from_secs(self.uptime_seconds)),
            self.generation,
            if self.config_valid {
                "the files on disk load"
            } else {
                "the files on disk DO NOT LOAD"
            }
        )?;
        let width = self.zones.iter().map(|z| z.zone.len()).max().unwrap_or(0);
        writeln!(f, "zones:")?;
        for zone in &self.zones {
            write!(
                f,
                "  {:width$}  serial {:<10}  from {}",
                zone.zone, zone.serial, zone.source
            )?;
            if let Some(secondary) = &zone.secondary {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                if let Some(at) = secondary.last_refresh {
                    write!(
                        f,
                        ", refreshed {} ago",
                        human(Duration::from_secs(now.saturating_sub(at)))
                    )?;
                }
                match secondary.expires {
                    Some(at) if secondary.expired || at <= now => write!(f, ", EXPIRED")?,
                    Some(at) => write!(f, ", expires in {}", human(Duration::from_secs(at - now)))?,
                    None => {}
                }
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "tasks: {} effective, {} deploying, {} ineffective",
            self.tasks.effective, self.tasks.deploying, self.tasks.ineffective
        )?;
        if self.origins_down.is_empty() {
            writeln!(f, "origins down: none")?;
        } else {
            writeln!(f, "origins down:")?;
            for o in &self.origins_down {
                writeln!(
                    f,
                    "  {} {}/{} since {}{}",
                    o.origin,
                    o.site,
                    o.group,
                    o.since,
                    o.last_error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )?;
            }
        }
        if let Some(fleet) = &self.fleet {
            writeln!(f, "fleet:")?;
            for node in fleet {
                writeln!(
                    f,
                    "  {}  {}{}",
                    node.node,
                    if node.current { "current" } else { "behind" },
                    if node.health_ready {
                        ""
                    } else {
                        ", first health round not done"
                    }
                )?;
            }
        }
        if self.problems.is_empty() {
            writeln!(f, "status: ok")
        } else {
            writeln!(f, "status: {} problem(s)", self.problems.len())?;
            for problem in &self.problems {
                writeln!(f, "  - {problem}")?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(human(Duration::from_secs(40)), "40s");
        assert_eq!(human(Duration::from_secs(12 * 60 + 3)), "12m 3s");
        assert_eq!(human(Duration::from_secs(2 * 3600 + 5 * 60)), "2h 5m");
        assert_eq!(human(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3d 4h");
    }
}
