//! The configuration store: the one place that changes what is served.
//!
//! Readers never wait. The DNS handler reads an immutable [`Snapshot`] and the API reads
//! the last committed configuration ([`Committed`]), both through [`ArcSwap`].
//!
//! Writers queue. API changes, SIGHUP, the file watcher and, on a fleet node, site changes
//! other nodes made send jobs to one writer thread through a bounded queue ([`writer`]); a
//! full queue refuses a change at once ([`ChangeError::Busy`], 503 with `Retry-After`)
//! instead of letting clients time out. A change is data, an [`Edit`], made by the pure
//! [`edit::apply`]. The writer takes every queued job as one batch: each change is
//! applied to the result of the ones before it, checked by the same validation the files
//! get and compiled on its own, so one bad change fails alone; then each site file the
//! batch touched is written once (one fsync for many changes), the new snapshot is
//! published, and only then does every request get its reply, describing its own change.
//! A change that fails any step leaves the old file and the old served state untouched.
//! Where a site is written is its storage backend's business (`files::Backend`): a
//! directory, or on a fleet node etcd and the node's mirror of it, where a change that
//! lost a race to another node is made again on the newer version.
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
//! while disabled. Batches publish their snapshot before any reply, so today no reader
//! sees `deploying`: the state becomes visible when health checks hold a new task back
//! until their first round (SPEC §6).

pub mod edit;
mod files;
mod fleet;
pub mod lock;
mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use hickory_proto::rr::Name;
use serde::Serialize;
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use crate::health::{Health, HealthView, Key};
use crate::load::{self, Config, LoadError, LoadedSite, Sources};
use crate::metrics::Metrics;
use crate::site::spec::{GroupSpec, HealthCheckSpec, OriginSpec, Policy, TaskSpec};
use crate::site::{self, Problem, site_name, spec_task_id};
use crate::snapshot::Snapshot;

pub use edit::{Edit, EditError, Subject};
use writer::{Job, Request};

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
    /// On a fleet node: whether each live node serves the task's site as changed last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodeProgress>>,
}

/// One node's progress on a change (SPEC §6 across a fleet).
#[derive(Clone, Debug, Serialize)]
pub struct NodeProgress {
    pub node: String,
    /// True when the node serves the site at (or after) this node's newest revision, and
    /// has a first health result for every origin it checks.
    pub applied: bool,
}

/// An origin group as the API shows it, with why a DNS-only task cannot use it.
#[derive(Clone, Debug, Serialize)]
pub struct GroupView {
    pub name: String,
    pub policy: Policy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSpec>,
    pub origins: Vec<OriginView>,
    pub dns_only: Usability,
    /// Ids of the tasks that use the group.
    pub used_by: Vec<String>,
    /// The fallback keys as written (SPEC §12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_up: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when_all_down: Option<crate::site::WhenAllDown>,
    /// For a group with a fallback: the group of its chain that answers now (the first
    /// with `min_up` usable origins), or `null` while the whole chain is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serving: Option<Option<String>>,
}

/// An origin as the API shows it: as written, with its health when the group is checked.
#[derive(Clone, Debug, Serialize)]
pub struct OriginView {
    #[serde(flatten)]
    pub spec: OriginSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Usability {
    pub usable: bool,
    pub reasons: Vec<String>,
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    #[error("{0}")]
    NotFound(String),
    /// The edit cannot be made to the site as it is (no such task, a task enabled...).
    #[error("site {site}: {error}")]
    Edit { site: String, error: EditError },
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
    /// The change would take the site file past a limit of what lbdns loads; nothing
    /// changed.
    #[error("{0}")]
    Limit(String),
    /// The write queue is full; nothing changed, the change can be sent again.
    #[error(
        "{0} changes are already waiting to be written; nothing was changed, retry in a moment"
    )]
    Busy(usize),
    /// The shared store (etcd) cannot be reached; nothing changed.
    #[error("{0}")]
    Unavailable(String),
    /// The writer has stopped (the server is shutting down); nothing changed.
    #[error("the server is shutting down; nothing was changed")]
    Stopped,
}

impl From<&files::StorageError> for ChangeError {
    fn from(error: &files::StorageError) -> Self {
        match error {
            files::StorageError::Unavailable(message) => Self::Unavailable(message.clone()),
            files::StorageError::TooLarge(_) => Self::Limit(error.to_string()),
            error if error.is_conflict() => Self::Conflict(error.to_string()),
            error => Self::Write(error.to_string()),
        }
    }
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

/// The configuration as last committed: what the API reads.
#[derive(Clone)]
pub(crate) struct Committed {
    generation: u64,
    config: Config,
    /// The generation of each task's last change, by site name and task id.
    task_generations: TaskGenerations,
    /// The error of the last rejected reload, until a reload succeeds.
    reload_error: Option<String>,
}

/// Task id -> generation of its last change, per site name. Per site and shared, so a
/// change copies only its own site's map.
pub(super) type TaskGenerations = HashMap<String, Arc<HashMap<String, u64>>>;

/// What the writer publishes to and readers read from.
struct Shared {
    sources: Sources,
    health: Health,
    serving: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    committed: ArcSwap<Committed>,
    /// Generation of the snapshot the DNS handler answers from.
    served_generation: AtomicU64,
}

/// The configuration store: reads from the committed state, changes through the writer.
pub struct Store {
    shared: Arc<Shared>,
    queue: writer::Queue,
    /// On a fleet node, its link to etcd: a task is effective once every live node
    /// serves it.
    fleet: Option<Arc<crate::etcd::Mirror>>,
}

impl Store {
    /// Loads `sources`, publishes the first snapshot and starts the writer.
    pub fn open(sources: Sources, metrics: Arc<Metrics>) -> Result<Arc<Self>, LoadError> {
        let files = files::Files::open(sources.clone());
        Self::open_with(sources, metrics, files)
    }

    /// [`Store::open`] with site files written within `limits` rather than the loader's.
    #[cfg(test)]
    fn open_within(sources: Sources, limits: site::Limits) -> Result<Arc<Self>, LoadError> {
        let mut files = files::Files::open(sources.clone());
        files.limits = limits;
        Self::open_with(sources, Arc::new(Metrics::new()), files)
    }

    /// [`Store::open`] on a fleet node's mirror of etcd: changes are committed to etcd.
    pub fn open_mirrored(
        sources: Sources,
        metrics: Arc<Metrics>,
        mirror: Arc<crate::etcd::Mirror>,
    ) -> Result<Arc<Self>, LoadError> {
        // Taken before the first load reads the mirror: it serves at least these.
        let mirrored = mirror.mirrored();
        let backend = fleet::Fleet::open(sources.clone(), mirror.clone());
        let mut store = Self::open_with(sources, metrics, backend)?;
        mirror.set_loaded(mirrored);
        let (geoip, ready) = (store.shared.clone(), store.shared.clone());
        mirror.set_probes(crate::etcd::Probes {
            geoip_build_epoch: Box::new(move || {
                let committed = geoip.committed.load();
                committed.config.geoip.as_ref().map(|db| db.build_epoch())
            }),
            health_ready: Box::new(move || {
                let committed = ready.committed.load();
                committed.config.sites.iter().all(|loaded| {
                    loaded.site.groups.iter().all(|group| {
                        group.health_check.is_none()
                            || ready.health.all_checked(Key::of_group(&loaded.site, group))
                    })
                })
            }),
        });
        // Another node's change to a site takes the path of this node's own changes.
        let queue = store.queue.clone();
        mirror.on_site_change(Box::new(move |name, text, revision| {
            let stored = writer::Stored {
                name: name.to_owned(),
                text: text.to_vec(),
                revision,
            };
            // A full queue drops it: the file watcher reloads the file all the same.
            let _ = queue.try_send(Job::Stored(stored));
        }));
        Arc::get_mut(&mut store).expect("not shared yet").fleet = Some(mirror);
        Ok(store)
    }

    fn open_with(
        sources: Sources,
        metrics: Arc<Metrics>,
        backend: impl files::Backend + 'static,
    ) -> Result<Arc<Self>, LoadError> {
        let health = Health::new(metrics.clone());
        let (config, snapshot) = load::load(&sources, &health, None)?;
        let (tasks, enabled) = config.task_counts();
        info!(
            zones = config.zones.len(),
            tasks,
            enabled,
            geoip = %config.geoip_path.as_deref().map_or("none".into(), |p| p.display().to_string()),
            "configuration loaded"
        );
        let task_generations = config
            .sites
            .iter()
            .map(|loaded| {
                let tasks = loaded
                    .site
                    .tasks
                    .iter()
                    .map(|t| (t.id.clone(), 1))
                    .collect();
                (site_name(&loaded.site.origin), Arc::new(tasks))
            })
            .collect();
        health.reconcile(config.sites.iter().flat_map(|s| Key::of_site(&s.site)));
        let shared = Arc::new(Shared {
            sources,
            health,
            serving: Arc::new(ArcSwap::from_pointee(snapshot)),
            metrics,
            committed: ArcSwap::from_pointee(Committed {
                generation: 1,
                config,
                task_generations,
                reload_error: None,
            }),
            served_generation: AtomicU64::new(1),
        });
        shared.metrics.config_valid.set(1);
        writer::give_back_freed_memory();
        shared.metrics.config_generation.set(1);
        let queue = writer::spawn(shared.clone(), backend);
        Ok(Arc::new(Self {
            shared,
            queue,
            fleet: None,
        }))
    }

    /// The snapshot the DNS handler reads.
    pub fn serving(&self) -> Arc<ArcSwap<Snapshot>> {
        self.shared.serving.clone()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    pub fn sources(&self) -> &Sources {
        &self.shared.sources
    }

    /// The health registry: [`Health::start`] it once a runtime runs.
    pub fn health(&self) -> &Health {
        &self.shared.health
    }

    // ----------- Reload -------------------------------------------------------------

    /// Reloads from disk, after the changes already queued. `Ok(false)` when nothing
    /// changed since the last read or write; an error keeps the last good configuration
    /// serving. Blocks: call it from a blocking thread.
    pub fn reload(&self) -> Result<bool, LoadError> {
        let (reply, done) = oneshot::channel();
        if self.queue.send(Job::Reload(reply)).is_err() {
            return Ok(false);
        }
        done.blocking_recv().unwrap_or(Ok(false))
    }

    /// Loads the files again even when none changed, so that the DNSSEC steps due are
    /// taken: keys' lifecycle events and signatures due for refresh (only the zones whose
    /// keys or signatures changed are signed again). Blocks.
    pub fn resign(&self) -> Result<bool, LoadError> {
        let (reply, done) = oneshot::channel();
        if self.queue.send(Job::Resign(reply)).is_err() {
            return Ok(false);
        }
        done.blocking_recv().unwrap_or(Ok(false))
    }

    /// Reloads on a blocking thread and logs the outcome.
    pub async fn reload_logged(self: &Arc<Self>, why: &'static str) {
        let store = self.clone();
        match tokio::task::spawn_blocking(move || store.reload()).await {
            Ok(Ok(true)) => info!(trigger = why, "configuration reloaded"),
            Ok(Ok(false)) => match self.reload_error() {
                Some(errors) => warn!(
                    trigger = why,
                    "reload: the files are unchanged since they were rejected, still serving the previous configuration: {}",
                    one_line(&errors)
                ),
                // The watcher also sees the API's own writes: only an operator's SIGHUP
                // is worth an info line when nothing changed.
                None if why == "SIGHUP" => info!(trigger = why, "reload: no change on disk"),
                None => debug!(trigger = why, "reload: no change on disk"),
            },
            Ok(Err(errors)) => error!(
                trigger = why,
                "reload rejected, still serving the previous configuration: {}",
                one_line(&errors.to_string())
            ),
            Err(e) => error!(%e, "reload failed"),
        }
    }

    /// The configuration as last committed (cheap: zones and sites are shared).
    pub fn config(&self) -> Config {
        self.shared.committed.load().config.clone()
    }

    /// The error of the last rejected reload, if the files on disk are not what is served.
    pub fn reload_error(&self) -> Option<String> {
        self.shared.committed.load().reload_error.clone()
    }

    /// The GeoIP database in use: its file and build time (Unix seconds).
    pub fn geoip(&self) -> Option<(PathBuf, u64)> {
        let committed = self.shared.committed.load();
        let db = committed.config.geoip.as_ref()?;
        Some((db.path().to_owned(), db.build_epoch()))
    }

    /// Every site with `primary:` (SPEC §13), served yet or not.
    pub fn primaries(&self) -> Vec<(Name, crate::site::spec::PrimarySpec)> {
        self.shared.committed.load().config.primaries.clone()
    }

    pub fn generation(&self) -> u64 {
        self.shared.served_generation.load(Ordering::Acquire)
    }

    // ----------- Reading ------------------------------------------------------------

    pub fn sites(&self) -> Vec<crate::api_types::Site> {
        let committed = self.shared.committed.load();
        committed
            .config
            .sites
            .iter()
            .map(|s| crate::api_types::Site {
                name: site_name(&s.site.origin),
                origin_groups: s.site.groups.len(),
                tasks: s.site.tasks.len(),
            })
            .collect()
    }

    pub fn tasks(&self, site: &str) -> Result<Vec<TaskView>, ChangeError> {
        let committed = self.shared.committed.load();
        let loaded = find_site(&committed.config.sites, site)?;
        // From the specs in order, each id found once: a site of thousands of tasks is
        // listed in linear time, not by searching for each task.
        Ok(loaded
            .spec
            .tasks
            .iter()
            .map(|t| self.view_of(&committed, loaded, &spec_task_id(&t.value), &t.value))
            .collect())
    }

    pub fn task(&self, site: &str, id: &str) -> Result<TaskView, ChangeError> {
        let committed = self.shared.committed.load();
        let loaded = find_site(&committed.config.sites, site)?;
        find_task(loaded, id)?;
        self.task_view(&committed, loaded, id)
            .ok_or_else(|| no_task(loaded, id))
    }

    /// What replacing `groups` and `tasks` of `site` would do (SPEC §12 "Preview"):
    /// [`crate::explain::diff`] of the configuration as served and as it would be.
    /// Nothing changes. A task replaces the one with its id, else the one with its
    /// hostname, else is added.
    pub fn preview(
        &self,
        site: &str,
        groups: Vec<(String, GroupSpec)>,
        tasks: Vec<TaskSpec>,
    ) -> Result<serde_json::Value, ChangeError> {
        let before = self.config();
        let index = site_index(&before.sites, site)?;
        let loaded = &before.sites[index];
        let edit_error = |error| ChangeError::Edit {
            site: site.to_owned(),
            error,
        };
        let mut spec = loaded.spec.clone();
        let mut edits: Vec<Edit> = groups
            .into_iter()
            .map(|(name, spec)| Edit::PutGroup {
                name,
                spec: Box::new(spec),
            })
            .collect();
        for task in tasks {
            let hostname = task
                .hostname
                .value
                .trim_end_matches('.')
                .to_ascii_lowercase();
            let id = task.id.as_ref().map(|id| id.value.clone()).or_else(|| {
                loaded
                    .site
                    .tasks
                    .iter()
                    .find(|t| site_name(&t.hostname).to_ascii_lowercase() == hostname)
                    .map(|t| t.id.clone())
            });
            edits.push(match id {
                Some(id) => Edit::PutTask {
                    id,
                    spec: task,
                    create_only: false,
                },
                None => Edit::CreateTask { spec: task },
            });
        }
        for edit in &edits {
            if let Some(next) = edit::apply(&spec, edit).map_err(edit_error)?.spec {
                spec = next;
            }
        }
        let checked = site::validate(&loaded.site.origin, &spec).map_err(ChangeError::Invalid)?;
        let mut after = before.clone();
        after.sites[index] = Arc::new(LoadedSite {
            path: loaded.path.clone(),
            spec,
            site: checked,
        });
        Ok(crate::explain::diff(
            &before,
            &after,
            Some(&**self.shared.serving.load()),
        ))
    }

    pub fn groups(&self, site: &str) -> Result<Vec<GroupView>, ChangeError> {
        let committed = self.shared.committed.load();
        let loaded = find_site(&committed.config.sites, site)?;
        Ok(loaded
            .spec
            .origin_groups
            .keys()
            .filter_map(|name| group_view(loaded, name, &self.shared.health))
            .collect())
    }

    pub fn group(&self, site: &str, name: &str) -> Result<GroupView, ChangeError> {
        let committed = self.shared.committed.load();
        let loaded = find_site(&committed.config.sites, site)?;
        group_view(loaded, name, &self.shared.health).ok_or_else(|| ChangeError::Edit {
            site: site_name(&loaded.site.origin),
            error: EditError::NoGroup {
                name: name.to_owned(),
            },
        })
    }

    /// The servers allowed to transfer the site's zone, as the site file lists them (the
    /// addresses: a TSIG key an entry names stays in the file).
    pub fn secondaries(&self, site: &str) -> Result<Vec<String>, ChangeError> {
        let committed = self.shared.committed.load();
        let loaded = find_site(&committed.config.sites, site)?;
        Ok(loaded
            .spec
            .secondaries
            .iter()
            .map(|s| s.value.address().to_owned())
            .collect())
    }

    /// Counts tasks by status into the metrics, for a scrape.
    pub fn refresh_task_metrics(&self) {
        let committed = self.shared.committed.load();
        let (mut effective, mut deploying, mut ineffective) = (0, 0, 0);
        for loaded in &committed.config.sites {
            for task in &loaded.site.tasks {
                match self.status(&committed, loaded, &task.id) {
                    Status::Effective => effective += 1,
                    Status::Deploying => deploying += 1,
                    Status::Ineffective => ineffective += 1,
                }
            }
        }
        let metrics = &self.shared.metrics;
        metrics.tasks_effective.set(effective);
        metrics.tasks_deploying.set(deploying);
        metrics.tasks_ineffective.set(ineffective);
    }

    fn status(&self, committed: &Committed, loaded: &LoadedSite, id: &str) -> Status {
        let changed = committed
            .task_generations
            .get(&site_name(&loaded.site.origin))
            .and_then(|tasks| tasks.get(id))
            .copied()
            .unwrap_or(0);
        let here = status(loaded, id, &self.shared.health, changed, self.generation());
        let everywhere = self
            .fleet_progress(loaded)
            .is_none_or(|nodes| nodes.iter().all(|n| n.applied));
        match (here, everywhere) {
            (Status::Effective, false) => Status::Deploying,
            (status, _) => status,
        }
    }

    /// On a fleet node: whether each live node serves `loaded`'s site file at the newest
    /// revision this node knows of it.
    fn fleet_progress(&self, loaded: &LoadedSite) -> Option<Vec<NodeProgress>> {
        let mirror = self.fleet.as_ref()?;
        let name = loaded.path.file_name()?.to_string_lossy().into_owned();
        let newest = mirror.revision_of(&name).unwrap_or(0);
        Some(
            mirror
                .fleet_serving(&name)
                .into_iter()
                .map(|(node, serving, health_ready)| NodeProgress {
                    node,
                    applied: serving >= newest && health_ready,
                })
                .collect(),
        )
    }

    /// On a fleet node: its etcd endpoints, and why the last exchange with them failed
    /// (`None` while etcd answers).
    pub fn etcd_link(&self) -> Option<(String, Option<String>)> {
        Some(self.fleet.as_ref()?.link())
    }

    /// On a fleet node: this node's id, and every live node as its key says.
    pub fn nodes(&self) -> Option<(String, Vec<(String, crate::etcd::Presence)>)> {
        let mirror = self.fleet.as_ref()?;
        Some((mirror.node_id().to_owned(), mirror.fleet()))
    }

    fn task_view(&self, committed: &Committed, loaded: &LoadedSite, id: &str) -> Option<TaskView> {
        Some(self.view_of(committed, loaded, id, task_spec(loaded, id)?))
    }

    fn view_of(
        &self,
        committed: &Committed,
        loaded: &LoadedSite,
        id: &str,
        spec: &TaskSpec,
    ) -> TaskView {
        let mut view = view_of(loaded, id, spec, &self.shared.health);
        view.status = self.status(committed, loaded, id);
        view.nodes = self.fleet_progress(loaded);
        view
    }

    // ----------- Changing -----------------------------------------------------------

    /// Creates a task; an absent id is derived from the hostname.
    pub async fn create_task(&self, site: &str, spec: TaskSpec) -> Result<TaskView, ChangeError> {
        self.task_change(site, Edit::CreateTask { spec })
            .await
            .map(|(view, _)| view)
    }

    /// Creates the task `id`, or replaces its fields (the id stays). With
    /// `create_only` an existing task is left alone: sending the same task again
    /// succeeds without a change (a retry), a different one is a conflict.
    /// Returns the task and whether it was created.
    pub async fn put_task(
        &self,
        site: &str,
        id: &str,
        spec: TaskSpec,
        create_only: bool,
    ) -> Result<(TaskView, bool), ChangeError> {
        let id = id.to_owned();
        self.task_change(
            site,
            Edit::PutTask {
                id,
                spec,
                create_only,
            },
        )
        .await
    }

    /// Changes some fields of a task; the others stay as they are.
    pub async fn update_task(
        &self,
        site: &str,
        id: &str,
        patch: crate::api_types::TaskPatch,
    ) -> Result<TaskView, ChangeError> {
        let id = id.to_owned();
        self.task_change(site, Edit::UpdateTask { id, patch })
            .await
            .map(|(view, _)| view)
    }

    /// Enables or disables a task.
    pub async fn set_enabled(
        &self,
        site: &str,
        id: &str,
        enabled: bool,
    ) -> Result<TaskView, ChangeError> {
        let id = id.to_owned();
        let edit = match enabled {
            true => Edit::EnableTask { id },
            false => Edit::DisableTask { id },
        };
        self.task_change(site, edit).await.map(|(view, _)| view)
    }

    /// Deletes a task; only an ineffective (disabled) one.
    pub async fn delete_task(&self, site: &str, id: &str) -> Result<(), ChangeError> {
        let id = id.to_owned();
        self.change(site, Edit::DeleteTask { id }).await.map(|_| ())
    }

    /// Creates or replaces an origin group.
    pub async fn put_group(
        &self,
        site: &str,
        name: &str,
        spec: GroupSpec,
    ) -> Result<GroupView, ChangeError> {
        let name = name.to_owned();
        let done = self
            .change(
                site,
                Edit::PutGroup {
                    name,
                    spec: Box::new(spec),
                },
            )
            .await?;
        match &done.subject {
            Subject::Group(name) => {
                group_view(&done.site, name, &self.shared.health).ok_or(ChangeError::Stopped)
            }
            _ => Err(ChangeError::Stopped),
        }
    }

    /// Deletes an origin group no task uses.
    pub async fn delete_group(&self, site: &str, name: &str) -> Result<(), ChangeError> {
        let name = name.to_owned();
        self.change(site, Edit::DeleteGroup { name })
            .await
            .map(|_| ())
    }

    /// Replaces the servers allowed to transfer the site's zone (SPEC §3).
    pub async fn put_secondaries(
        &self,
        site: &str,
        secondaries: Vec<String>,
    ) -> Result<Vec<String>, ChangeError> {
        let done = self
            .change(site, Edit::SetSecondaries { secondaries })
            .await?;
        Ok(done
            .site
            .spec
            .secondaries
            .iter()
            .map(|s| s.value.address().to_owned())
            .collect())
    }

    /// A change whose reply is a task: the view and whether the change created it.
    async fn task_change(&self, site: &str, edit: Edit) -> Result<(TaskView, bool), ChangeError> {
        let done = self.change(site, edit).await?;
        let Subject::Task { id, created } = &done.subject else {
            return Err(ChangeError::Stopped);
        };
        // On a fleet node the change is effective once every live node serves it: the
        // reply says so as GET does, not what this node alone would.
        if self.fleet.is_some()
            && let Ok(view) = self.task(site, id)
        {
            return Ok((view, *created));
        }
        let view = task_view(&done.site, id, &self.shared.health)
            .ok_or_else(|| no_task(&done.site, id))?;
        Ok((view, *created))
    }

    /// Queues `edit` of the site; the writer applies, checks, compiles, writes and
    /// publishes it, then replies with the site as the change left it. Refused at once
    /// when the queue is full.
    async fn change(&self, site: &str, edit: Edit) -> Result<writer::Done, ChangeError> {
        let (reply, done) = oneshot::channel();
        let request = Request {
            site: site.to_owned(),
            edit,
            reply,
        };
        let metrics = &self.shared.metrics;
        if let Err(error) = self.queue.try_send(Job::Change(Box::new(request))) {
            metrics.api_changes_busy.inc();
            return Err(match error {
                std::sync::mpsc::TrySendError::Full(_) => ChangeError::Busy(writer::QUEUE_BOUND),
                std::sync::mpsc::TrySendError::Disconnected(_) => ChangeError::Stopped,
            });
        }
        let result = done.await.unwrap_or(Err(ChangeError::Stopped));
        match &result {
            Ok(_) => metrics.api_changes_applied.inc(),
            Err(_) => metrics.api_changes_rejected.inc(),
        };
        result
    }
}

/// Status of the task `id`: ineffective while disabled; effective once the generation
/// that last changed it is served and, when its group is checked, every origin of the
/// group has a first result (SPEC §6: a new task never starts by answering a dead
/// origin); deploying until then.
fn status(loaded: &LoadedSite, id: &str, health: &Health, changed: u64, served: u64) -> Status {
    let Some(task) = loaded.site.tasks.iter().find(|t| t.id == id && t.enabled) else {
        return Status::Ineffective;
    };
    let checked = loaded.site.group(&task.origin_group).is_none_or(|group| {
        group.health_check.is_none() || health.all_checked(Key::of_group(&loaded.site, group))
    });
    match served >= changed && checked {
        true => Status::Effective,
        false => Status::Deploying,
    }
}

/// The task `id` of `loaded`, with its status as once `loaded` is served.
fn task_view(loaded: &LoadedSite, id: &str, health: &Health) -> Option<TaskView> {
    Some(view_of(loaded, id, task_spec(loaded, id)?, health))
}

/// The task `id` of `loaded` written as `spec`, with its status as once `loaded` is served.
fn view_of(loaded: &LoadedSite, id: &str, spec: &TaskSpec, health: &Health) -> TaskView {
    TaskView {
        id: id.to_owned(),
        status: status(loaded, id, health, 0, 0),
        spec: TaskSpec {
            id: None,
            ..spec.clone()
        },
        nodes: None,
    }
}

fn group_view(loaded: &LoadedSite, name: &str, health: &Health) -> Option<GroupView> {
    let spec = loaded.spec.origin_groups.get(name)?;
    let group = loaded.site.group(name);
    let reasons = group.map(|g| g.dns_only_problems()).unwrap_or_default();
    let origins = spec
        .value
        .origins
        .iter()
        .enumerate()
        .map(|(i, o)| OriginView {
            spec: o.value.clone(),
            // Checked origins match their spec by position: validation keeps the order.
            health: group
                .and_then(|g| Key::of_origin(&loaded.site, g, g.origins.get(i)?))
                .map(|key| health.view(&key).unwrap_or_else(HealthView::unchecked)),
        })
        .collect();
    Some(GroupView {
        name: name.to_owned(),
        policy: *spec.policy,
        health_check: spec.health_check.as_ref().map(|c| c.value.clone()),
        origins,
        dns_only: Usability {
            usable: reasons.is_empty(),
            reasons,
        },
        used_by: loaded
            .site
            .tasks
            .iter()
            .filter(|t| t.origin_group == name)
            .map(|t| t.id.clone())
            .collect(),
        fallback: spec.fallback.as_ref().map(|f| f.value.clone()),
        min_up: spec.min_up.as_ref().map(|m| m.value),
        when_all_down: spec.when_all_down.as_ref().map(|w| w.value),
        serving: group
            .filter(|g| g.fallback.group.is_some())
            .map(|g| serving_group(&loaded.site, g, health)),
    })
}

/// The group of `group`'s chain that answers now: the first with `min_up` origins up
/// or not yet checked (of any family: the API has no query to take one from).
fn serving_group(site: &site::Site, group: &site::OriginGroup, health: &Health) -> Option<String> {
    site.chain(group)
        .into_iter()
        .find(|g| {
            let up = g
                .origins
                .iter()
                .filter(|o| !matches!(o.target, site::Target::WithPort(_)))
                .filter(|o| {
                    Key::of_origin(site, g, o)
                        .and_then(|key| health.view(&key))
                        .is_none_or(|view| view.state != crate::health::State::Down)
                })
                .count();
            up >= g.fallback.min_up as usize
        })
        .map(|g| g.name.clone())
}

fn site_index(sites: &[Arc<LoadedSite>], site: &str) -> Result<usize, ChangeError> {
    // Names compare without case; no string is built per site.
    let wanted = Name::from_ascii(format!("{}.", site.trim_end_matches('.'))).ok();
    let found = wanted.and_then(|wanted| sites.iter().position(|s| s.site.origin == wanted));
    found.ok_or_else(|| {
        // Name a few: a fleet of thousands of sites does not fit in an error message.
        const SHOWN: usize = 10;
        let mut known: Vec<String> = sites
            .iter()
            .take(SHOWN)
            .map(|s| site_name(&s.site.origin))
            .collect();
        if sites.len() > SHOWN {
            known.push(format!("and {} more", sites.len() - SHOWN));
        }
        ChangeError::NotFound(format!(
            "no site {site:?} is served here (sites: {})",
            known.join(", ")
        ))
    })
}

fn find_site<'s>(sites: &'s [Arc<LoadedSite>], site: &str) -> Result<&'s LoadedSite, ChangeError> {
    site_index(sites, site).map(|i| &*sites[i])
}

/// Index in the spec of the task `id`.
fn find_task(loaded: &LoadedSite, id: &str) -> Result<usize, ChangeError> {
    edit::find_task(&loaded.spec, id).ok_or_else(|| no_task(loaded, id))
}

fn no_task(loaded: &LoadedSite, id: &str) -> ChangeError {
    ChangeError::Edit {
        site: site_name(&loaded.site.origin),
        error: EditError::NoTask { id: id.to_owned() },
    }
}

fn task_spec<'a>(loaded: &'a LoadedSite, id: &str) -> Option<&'a TaskSpec> {
    edit::find_task(&loaded.spec, id).map(|i| &loaded.spec.tasks[i].value)
}

/// A report of one problem a line as one log line (`a; b`): a log line is a record that
/// journald, grep and log shippers keep together.
fn one_line(report: &str) -> String {
    let problems: Vec<&str> = report
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    problems.join("; ")
}

#[cfg(test)]
mod tests;
