//! The configuration store: the one place that changes what is served.
//!
//! Readers (the DNS handler) see an immutable [`Snapshot`] through [`ArcSwap`]. Writers
//! (the management API, SIGHUP and the file watcher) take one lock, build the whole next
//! configuration, check it with the same validation the files get, compile it, write the
//! site file atomically, and only then publish the new snapshot. A change that fails any
//! step leaves the old file and the old served state untouched.
//!
//! Task lifecycle (SPEC §6), derived from configuration generations:
//!
//! ```text
//!   create, change ──▶ deploying ──(the DNS handler serves it)──▶ effective
//!                          ▲                                          │
//!                          └──── enable ──── ineffective ◀── disable ──┘
//!                                                │
//!                                   delete (only from here, else 409)
//! ```
//!
//! A task is `deploying` while the generation that last changed it is newer than the
//! generation the DNS handler serves, `effective` once it is served, and `ineffective`
//! while disabled. Changes and reloads publish their snapshot under the store's lock,
//! before any reply, so today no reader sees `deploying`: the state becomes visible when
//! health checks hold a new task back until their first round (SPEC §6).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use hickory_proto::rr::Name;
use serde::Serialize;
use tracing::{error, info, warn};

use crate::load::{self, Config, LoadError, LoadedSite, Sources};
use crate::metrics::Metrics;
use crate::persist;
use crate::site::spec::{GroupSpec, Lined, OriginSpec, Policy, TaskSpec};
use crate::site::{self, Problem, SiteSpec, site_name};
use crate::snapshot::Snapshot;

/// Where a task is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Deploying,
    Effective,
    Ineffective,
}

/// A task as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TaskView {
    pub id: String,
    #[serde(flatten)]
    pub spec: TaskSpec,
    pub status: Status,
}

/// An origin group as the API shows it, with why a DNS-only task cannot use it.
#[derive(Clone, Debug, Serialize)]
pub struct GroupView {
    pub name: String,
    pub policy: Policy,
    pub origins: Vec<OriginSpec>,
    pub dns_only: Usability,
    /// Ids of the tasks that use the group.
    pub used_by: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Usability {
    pub usable: bool,
    pub reasons: Vec<String>,
}

/// A site as the API lists it.
#[derive(Clone, Debug, Serialize)]
pub struct SiteView {
    pub name: String,
    pub origin_groups: usize,
    pub tasks: usize,
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The result breaks site rules; each problem names its field.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    /// The site checks but cannot be served with its zone (e.g. a task below a cut).
    #[error("{0}")]
    Unservable(String),
    /// The site file could not be written; nothing changed.
    #[error("{0}")]
    Write(String),
}

impl ChangeError {
    /// Names the fields of the item a request sent relative to its body (`ttl`, not
    /// `tasks[3].ttl`); problems elsewhere in the site keep their full path.
    fn relative_to(self, prefix: &str) -> Self {
        match self {
            Self::Invalid(problems) if !prefix.is_empty() => Self::Invalid(
                problems
                    .into_iter()
                    .map(|mut p| {
                        if let Some(field) = p.field.strip_prefix(prefix) {
                            p.field = field.to_owned();
                        }
                        p
                    })
                    .collect(),
            ),
            other => other,
        }
    }
}

/// The configuration store.
pub struct Store {
    sources: Sources,
    serving: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    /// Generation of the snapshot the DNS handler answers from.
    served_generation: AtomicU64,
}

struct State {
    generation: u64,
    config: Config,
    /// (site, task id) -> generation of the task's last change.
    task_generations: HashMap<(String, String), u64>,
    /// What the files held when last read or written, to tell edits from our own writes.
    fingerprint: Fingerprint,
    /// What the files held for the configuration being served: a site file that differs
    /// from this was edited by hand, and the API will not overwrite that edit.
    served_files: Fingerprint,
    /// The error of the last rejected reload, until a reload succeeds.
    reload_error: Option<String>,
}

impl Store {
    /// Loads `sources` and publishes the first snapshot.
    pub fn open(sources: Sources, metrics: Arc<Metrics>) -> Result<Arc<Self>, LoadError> {
        persist::remove_stale_temp_files(&sources.zones_dir());
        let fingerprint = Fingerprint::read(&sources);
        let (config, snapshot) = load::load(&sources)?;
        let (tasks, enabled) = config.task_counts();
        info!(
            zones = config.zones.len(),
            tasks,
            enabled,
            geoip = %config.geoip_path.as_deref().map_or("none".into(), |p| p.display().to_string()),
            "configuration loaded"
        );
        let mut task_generations = HashMap::new();
        for loaded in &config.sites {
            for task in &loaded.site.tasks {
                task_generations.insert((site_name(&loaded.site.origin), task.id.clone()), 1);
            }
        }
        let store = Arc::new(Self {
            sources,
            serving: Arc::new(ArcSwap::from_pointee(snapshot)),
            metrics,
            state: Mutex::new(State {
                generation: 1,
                config,
                task_generations,
                served_files: fingerprint.clone(),
                fingerprint,
                reload_error: None,
            }),
            served_generation: AtomicU64::new(1),
        });
        store.metrics.config_valid.set(1);
        store.metrics.config_generation.set(1);
        Ok(store)
    }

    /// The snapshot the DNS handler reads.
    pub fn serving(&self) -> Arc<ArcSwap<Snapshot>> {
        self.serving.clone()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves State as it was before the change began
        // (changes are built aside and committed last), so the data is still good.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(&self, state: &mut State, snapshot: Snapshot) {
        state.generation += 1;
        self.serving.store(Arc::new(snapshot));
        self.served_generation
            .store(state.generation, Ordering::Release);
        self.metrics.config_generation.set(state.generation as i64);
    }

    // ----------- Reload -------------------------------------------------------------

    /// Reloads from disk (blocking). `Ok(false)` when nothing changed since the last
    /// read or write; an error keeps the last good configuration serving.
    pub fn reload(&self) -> Result<bool, LoadError> {
        let mut state = self.lock();
        let fingerprint = Fingerprint::read(&self.sources);
        if fingerprint == state.fingerprint {
            return Ok(false);
        }
        match load::load(&self.sources) {
            Ok((config, snapshot)) => {
                let next = state.generation + 1;
                state.task_generations = carry_generations(&state, &config, next);
                state.config = config;
                state.served_files = fingerprint.clone();
                state.fingerprint = fingerprint;
                state.reload_error = None;
                self.publish(&mut state, snapshot);
                self.metrics.reloads_ok.inc();
                self.metrics.config_valid.set(1);
                Ok(true)
            }
            Err(errors) => {
                // Remember the bad files so the same edit is not retried on every event.
                state.fingerprint = fingerprint;
                state.reload_error = Some(errors.to_string());
                self.metrics.reloads_failed.inc();
                self.metrics.config_valid.set(0);
                Err(errors)
            }
        }
    }

    /// Reloads on a blocking thread and logs the outcome.
    pub async fn reload_logged(self: &Arc<Self>, why: &'static str) {
        let store = self.clone();
        match tokio::task::spawn_blocking(move || store.reload()).await {
            Ok(Ok(true)) => info!(trigger = why, "configuration reloaded"),
            Ok(Ok(false)) => match self.reload_error() {
                Some(errors) => warn!(
                    trigger = why,
                    "reload: the files are unchanged since they were rejected, still serving the previous configuration:\n{errors}"
                ),
                None => info!(trigger = why, "reload: no change on disk"),
            },
            Ok(Err(errors)) => error!(
                trigger = why,
                "reload rejected, still serving the previous configuration:\n{errors}"
            ),
            Err(e) => error!(%e, "reload failed"),
        }
    }

    /// The error of the last rejected reload, if the files on disk are not what is served.
    pub fn reload_error(&self) -> Option<String> {
        self.lock().reload_error.clone()
    }

    pub fn generation(&self) -> u64 {
        self.served_generation.load(Ordering::Acquire)
    }

    // ----------- Reading ------------------------------------------------------------

    pub fn sites(&self) -> Vec<SiteView> {
        let state = self.lock();
        state
            .config
            .sites
            .iter()
            .map(|s| SiteView {
                name: site_name(&s.site.origin),
                origin_groups: s.site.groups.len(),
                tasks: s.site.tasks.len(),
            })
            .collect()
    }

    pub fn tasks(&self, site: &str) -> Result<Vec<TaskView>, ChangeError> {
        let state = self.lock();
        let loaded = find_site(&state, site)?;
        Ok(loaded
            .site
            .tasks
            .iter()
            .map(|t| self.task_view(&state, loaded, &t.id))
            .collect())
    }

    pub fn task(&self, site: &str, id: &str) -> Result<TaskView, ChangeError> {
        let state = self.lock();
        let loaded = find_site(&state, site)?;
        find_task(loaded, id)?;
        Ok(self.task_view(&state, loaded, id))
    }

    pub fn groups(&self, site: &str) -> Result<Vec<GroupView>, ChangeError> {
        let state = self.lock();
        let loaded = find_site(&state, site)?;
        Ok(loaded
            .spec
            .origin_groups
            .iter()
            .map(|(name, spec)| {
                let reasons = loaded
                    .site
                    .group(name)
                    .map(|g| g.dns_only_problems())
                    .unwrap_or_default();
                GroupView {
                    name: name.clone(),
                    policy: *spec.policy,
                    origins: spec.value.origins.iter().map(|o| o.value.clone()).collect(),
                    dns_only: Usability {
                        usable: reasons.is_empty(),
                        reasons,
                    },
                    used_by: loaded
                        .site
                        .tasks
                        .iter()
                        .filter(|t| t.origin_group == *name)
                        .map(|t| t.id.clone())
                        .collect(),
                }
            })
            .collect())
    }

    /// Counts tasks by status into the metrics, for a scrape.
    pub fn refresh_task_metrics(&self) {
        let state = self.lock();
        let (mut effective, mut deploying, mut ineffective) = (0, 0, 0);
        for loaded in &state.config.sites {
            for task in &loaded.site.tasks {
                match self.status(&state, loaded, &task.id) {
                    Status::Effective => effective += 1,
                    Status::Deploying => deploying += 1,
                    Status::Ineffective => ineffective += 1,
                }
            }
        }
        self.metrics.tasks_effective.set(effective);
        self.metrics.tasks_deploying.set(deploying);
        self.metrics.tasks_ineffective.set(ineffective);
    }

    fn status(&self, state: &State, loaded: &LoadedSite, id: &str) -> Status {
        let enabled = loaded.site.tasks.iter().any(|t| t.id == id && t.enabled);
        let changed = state
            .task_generations
            .get(&(site_name(&loaded.site.origin), id.to_owned()))
            .copied()
            .unwrap_or(0);
        if !enabled {
            Status::Ineffective
        } else if self.served_generation.load(Ordering::Acquire) >= changed {
            Status::Effective
        } else {
            Status::Deploying
        }
    }

    fn task_view(&self, state: &State, loaded: &LoadedSite, id: &str) -> TaskView {
        let spec = task_spec(loaded, id)
            .map(|t| TaskSpec {
                id: None,
                ..t.clone()
            })
            .expect("the task exists");
        TaskView {
            id: id.to_owned(),
            spec,
            status: self.status(state, loaded, id),
        }
    }

    // ----------- Changing -----------------------------------------------------------

    /// Creates a task; an absent id is derived from the hostname.
    pub fn create_task(&self, site: &str, mut spec: TaskSpec) -> Result<TaskView, ChangeError> {
        let mut focus = String::new();
        let id = self.change(site, |loaded| {
            let id = match spec.id.as_ref().map(|id| id.value.clone()) {
                Some(id) => {
                    if find_task(loaded, &id).is_ok() {
                        return Err(ChangeError::Conflict(format!(
                            "a task with id {id} already exists in site {site}; choose another id or PUT to change it"
                        )));
                    }
                    id
                }
                None => fresh_id(loaded, &spec.hostname),
            };
            spec.id = Some(Lined::new(id.clone()));
            focus = format!("tasks[{}].", loaded.spec.tasks.len());
            loaded.spec.tasks.push(Lined::new(spec));
            Ok(id)
        })
        .map_err(|e| e.relative_to(&focus))?;
        self.task(site, &id)
    }

    /// Replaces a task's fields (the id stays).
    pub fn put_task(
        &self,
        site: &str,
        id: &str,
        mut spec: TaskSpec,
    ) -> Result<TaskView, ChangeError> {
        if let Some(body) = spec.id.as_ref().filter(|body| body.as_str() != id) {
            return Err(ChangeError::Invalid(vec![Problem {
                line: None,
                field: "id".into(),
                message: format!(
                    "the body's id {:?} differs from the path's {id:?}; ids cannot be changed",
                    body.value
                ),
            }]));
        }
        let mut focus = String::new();
        self.change(site, |loaded| {
            let index = find_task(loaded, id)?;
            // The id becomes explicit, so a new hostname cannot change a derived one.
            spec.id = Some(Lined::new(id.to_owned()));
            loaded.spec.tasks[index] = Lined::new(spec);
            focus = format!("tasks[{index}].");
            Ok(())
        })
        .map_err(|e| e.relative_to(&focus))?;
        self.task(site, id)
    }

    /// Enables or disables a task.
    pub fn set_enabled(
        &self,
        site: &str,
        id: &str,
        enabled: bool,
    ) -> Result<TaskView, ChangeError> {
        self.change(site, |loaded| {
            let index = find_task(loaded, id)?;
            loaded.spec.tasks[index].value.enabled = Lined::new(enabled);
            Ok(())
        })?;
        self.task(site, id)
    }

    /// Deletes a task; only an ineffective (disabled) one.
    pub fn delete_task(&self, site: &str, id: &str) -> Result<(), ChangeError> {
        {
            let state = self.lock();
            let loaded = find_site(&state, site)?;
            find_task(loaded, id)?;
            let status = self.status(&state, loaded, id);
            if status != Status::Ineffective {
                let status = serde_json::to_value(status).unwrap_or_default();
                return Err(ChangeError::Conflict(format!(
                    "task {id} is {}: disable it first (POST /v1/sites/{site}/tasks/{id}/disable), then delete it",
                    status.as_str().unwrap_or("active")
                )));
            }
        }
        self.change(site, |loaded| {
            let index = find_task(loaded, id)?;
            if *loaded.spec.tasks[index].enabled {
                return Err(ChangeError::Conflict(format!(
                    "task {id} was enabled meanwhile: disable it first, then delete it"
                )));
            }
            loaded.spec.tasks.remove(index);
            Ok(())
        })
    }

    /// Creates or replaces an origin group.
    pub fn put_group(
        &self,
        site: &str,
        name: &str,
        spec: GroupSpec,
    ) -> Result<GroupView, ChangeError> {
        self.change(site, |loaded| {
            loaded
                .spec
                .origin_groups
                .insert(name.to_owned(), Lined::new(spec));
            Ok(())
        })
        .map_err(|e| e.relative_to(&format!("origin_groups.{name}.")))?;
        self.groups(site)?
            .into_iter()
            .find(|g| g.name == name)
            .ok_or_else(|| ChangeError::NotFound(format!("no origin group {name}")))
    }

    /// Deletes an origin group no task uses.
    pub fn delete_group(&self, site: &str, name: &str) -> Result<(), ChangeError> {
        self.change(site, |loaded| {
            if !loaded.spec.origin_groups.contains_key(name) {
                return Err(ChangeError::NotFound(format!(
                    "site {site} has no origin group {name}"
                )));
            }
            let users: Vec<String> = loaded
                .site
                .tasks
                .iter()
                .filter(|t| t.origin_group == name)
                .map(|t| t.id.clone())
                .collect();
            if !users.is_empty() {
                return Err(ChangeError::Conflict(format!(
                    "origin group {name} is used by task {}; delete those tasks or point them at another group first",
                    users.join(", task ")
                )));
            }
            loaded.spec.origin_groups.shift_remove(name);
            Ok(())
        })
    }

    /// Applies `edit` to a copy of the site, then checks, compiles, writes and publishes.
    fn change<T>(
        &self,
        site: &str,
        edit: impl FnOnce(&mut LoadedSite) -> Result<T, ChangeError>,
    ) -> Result<T, ChangeError> {
        let result = self.try_change(site, edit);
        match &result {
            Ok(_) => self.metrics.api_changes_applied.inc(),
            Err(_) => self.metrics.api_changes_rejected.inc(),
        };
        result
    }

    fn try_change<T>(
        &self,
        site: &str,
        edit: impl FnOnce(&mut LoadedSite) -> Result<T, ChangeError>,
    ) -> Result<T, ChangeError> {
        let mut state = self.lock();
        let index = site_index(&state, site)?;
        let mut next = state.config.sites[index].clone();
        let on_disk = std::fs::read(&next.path).ok();
        if on_disk.as_ref() != state.served_files.files.get(&next.path) {
            let why = match &state.reload_error {
                Some(error) => format!("it was rejected:\n{error}\n"),
                None => "it is not loaded yet; ".to_owned(),
            };
            return Err(ChangeError::Conflict(format!(
                "{} was edited on disk and {why}fix or revert the file (or retry once it is reloaded): lbdns will not overwrite a hand edit",
                next.path.display()
            )));
        }
        let value = edit(&mut next)?;
        next.site = site::validate(&next.site.origin, &next.spec).map_err(ChangeError::Invalid)?;

        let mut sites: Vec<&site::Site> = state.config.sites.iter().map(|s| &s.site).collect();
        sites[index] = &next.site;
        let snapshot = Snapshot::compile(&state.config.zones, &sites, state.config.geoip.clone())
            .map_err(|errors| {
            ChangeError::Unservable(
                errors
                    .iter()
                    .map(|e| e.message.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;

        let text = render(&next.spec).map_err(ChangeError::Write)?;
        persist::write_atomically(&next.path, text.as_bytes()).map_err(|e| {
            ChangeError::Write(format!(
                "cannot write {}: {e}; nothing was changed",
                next.path.display()
            ))
        })?;

        let generation = state.generation + 1;
        let old = std::mem::replace(&mut state.config.sites[index], next);
        let new = &state.config.sites[index];
        let site = site_name(&new.site.origin);
        let path = new.path.clone();
        let changed: Vec<String> = new
            .spec
            .tasks
            .iter()
            .map(|task| site::spec_task_id(&task.value))
            .filter(|id| task_changed(&old, new, id))
            .collect();
        for id in changed {
            state
                .task_generations
                .insert((site.clone(), id), generation);
        }
        state
            .fingerprint
            .files
            .insert(path.clone(), text.clone().into_bytes());
        state.served_files.files.insert(path, text.into_bytes());
        self.publish(&mut state, snapshot);
        Ok(value)
    }
}

/// The YAML written to a site file.
fn render(spec: &SiteSpec) -> Result<String, String> {
    let body =
        serde_saphyr::to_string(spec).map_err(|e| format!("cannot render the site file: {e}"))?;
    Ok(format!(
        "# lbdns site file: edit it by hand or through the API; an API change rewrites it in this form, without comments.\n{body}"
    ))
}

fn site_index(state: &State, site: &str) -> Result<usize, ChangeError> {
    let wanted = site.trim_end_matches('.').to_ascii_lowercase();
    state
        .config
        .sites
        .iter()
        .position(|s| site_name(&s.site.origin) == wanted)
        .ok_or_else(|| {
            let known: Vec<String> = state
                .config
                .sites
                .iter()
                .map(|s| site_name(&s.site.origin))
                .collect();
            ChangeError::NotFound(format!(
                "no site {site:?} is served here (sites: {})",
                known.join(", ")
            ))
        })
}

fn find_site<'s>(state: &'s State, site: &str) -> Result<&'s LoadedSite, ChangeError> {
    site_index(state, site).map(|i| &state.config.sites[i])
}

/// Index in the spec of the task `id`.
fn find_task(loaded: &LoadedSite, id: &str) -> Result<usize, ChangeError> {
    loaded
        .spec
        .tasks
        .iter()
        .position(|t| site::spec_task_id(&t.value) == id)
        .ok_or_else(|| {
            ChangeError::NotFound(format!(
                "site {} has no task {id:?}",
                site_name(&loaded.site.origin)
            ))
        })
}

fn task_spec<'a>(loaded: &'a LoadedSite, id: &str) -> Option<&'a TaskSpec> {
    find_task(loaded, id)
        .ok()
        .map(|i| &loaded.spec.tasks[i].value)
}

/// A task needs deploying again when it or its group changed.
fn task_changed(old: &LoadedSite, new: &LoadedSite, id: &str) -> bool {
    let (Some(before), Some(after)) = (task_spec(old, id), task_spec(new, id)) else {
        return true;
    };
    let group =
        |l: &LoadedSite, name: &str| l.spec.origin_groups.get(name).map(|g| g.value.clone());
    before != after || group(old, &before.origin_group) != group(new, &after.origin_group)
}

/// Task generations after a reload: unchanged tasks keep theirs.
fn carry_generations(state: &State, config: &Config, next: u64) -> HashMap<(String, String), u64> {
    let mut generations = HashMap::new();
    for new in &config.sites {
        let site = site_name(&new.site.origin);
        let old = state
            .config
            .sites
            .iter()
            .find(|s| s.site.origin == new.site.origin);
        for task in &new.site.tasks {
            let key = (site.clone(), task.id.clone());
            let generation = match old {
                Some(old) if !task_changed(old, new, &task.id) => {
                    state.task_generations.get(&key).copied().unwrap_or(next)
                }
                _ => next,
            };
            generations.insert(key, generation);
        }
    }
    generations
}

/// An id for a new task: the hostname's, made unique.
fn fresh_id(loaded: &LoadedSite, hostname: &str) -> String {
    let base = Name::from_ascii(hostname.trim())
        .map(|n| site::default_task_id(&n.to_lowercase()))
        .unwrap_or_else(|_| "task".to_owned());
    let base = if base.is_empty() {
        "task".to_owned()
    } else {
        base
    };
    let mut id = base.clone();
    let mut n = 2;
    while find_task(loaded, &id).is_ok() {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

/// The contents of every file a reload reads, to tell an edit from our own write.
#[derive(Clone, Default, PartialEq, Eq)]
struct Fingerprint {
    files: BTreeMap<PathBuf, Vec<u8>>,
    /// The GeoIP file is large: its path, length and modification time stand for it.
    geoip: Option<(PathBuf, u64, Option<std::time::SystemTime>)>,
}

impl Fingerprint {
    fn read(sources: &Sources) -> Self {
        let mut files = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(sources.zones_dir()) {
            for entry in entries.flatten() {
                let path = entry.path();
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                if (name.ends_with(".zone") || name.ends_with(".lb.yaml"))
                    && let Ok(bytes) = std::fs::read(&path)
                {
                    files.insert(path, bytes);
                }
            }
        }
        let geoip = sources.geoip_path().map(|path| {
            let meta = std::fs::metadata(&path).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (path, len, modified)
        });
        Self { files, geoip }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::Client;
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RecordType;
    use rand::SeedableRng;

    const ZONE: &str =
        "$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 900 1209600 300\n@ NS ns1\nns1 A 192.0.2.53\n";
    const GROUP: &str = r#"{"origins": [{"address": "192.0.2.10"}]}"#;
    const TASK: &str = r#"{"hostname": "api.example.com", "origin_group": "web"}"#;

    fn open() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("zones")).unwrap();
        std::fs::write(dir.path().join("zones/example.com.zone"), ZONE).unwrap();
        let sources = Sources {
            dir: dir.path().to_owned(),
            geoip: None,
        };
        let store = Store::open(sources, Arc::new(Metrics::new())).unwrap();
        (dir, store)
    }

    fn rcode(store: &Store, name: &str) -> ResponseCode {
        let client = Client {
            addr: "192.0.2.1".parse().unwrap(),
            source_prefix: 32,
        };
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let name = Name::from_ascii(name).unwrap();
        store
            .serving()
            .load()
            .answer(&name, RecordType::A, &client, &mut rng)
            .rcode
    }

    #[test]
    fn a_change_is_written_then_served() {
        let (dir, store) = open();
        store
            .put_group("example.com", "web", serde_json::from_str(GROUP).unwrap())
            .unwrap();
        let task = store
            .create_task("example.com", serde_json::from_str(TASK).unwrap())
            .unwrap();
        assert_eq!(
            (task.id.as_str(), task.status),
            ("api.example.com", Status::Effective)
        );
        assert_eq!(rcode(&store, "api.example.com."), ResponseCode::NoError);
        let file = std::fs::read_to_string(dir.path().join("zones/example.com.lb.yaml")).unwrap();
        let spec = site::parse(&file).unwrap();
        assert_eq!(spec.tasks.len(), 1);
        // Our own write is not a change to reload.
        assert!(!store.reload().unwrap());
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let (dir, store) = open();
        // A non-empty directory where the rename must land: the write fails after the
        // temp file is written, the worst place for it to fail.
        let path = dir.path().join("zones/example.com.lb.yaml");
        std::fs::create_dir_all(path.join("blocker")).unwrap();
        let error = store
            .put_group("example.com", "web", serde_json::from_str(GROUP).unwrap())
            .unwrap_err();
        assert!(matches!(error, ChangeError::Write(_)), "{error}");
        assert!(error.to_string().contains("nothing was changed"), "{error}");
        assert!(store.groups("example.com").unwrap().is_empty());
        assert_eq!(store.generation(), 1, "nothing was published");
        let entries = std::fs::read_dir(dir.path().join("zones")).unwrap().count();
        assert_eq!(
            entries, 2,
            "the zone file and the blocker, no temp file left"
        );
    }
}
