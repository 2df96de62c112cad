//! The writer: one thread that applies every change and reload, in batches.
//!
//! Jobs arrive through a bounded queue. The writer takes all that are waiting as one
//! batch, applies each change to a working copy (validated and compiled on its own, so
//! a bad change fails alone), writes each touched site file once, publishes once, and
//! then replies to every request with what its own change did. A reload is a job too,
//! so files and API changes are never applied by two writers at once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};

use tokio::sync::oneshot;
use tracing::{debug, error, warn};

use super::files::{Backend, Files, StorageError};
use super::{
    ChangeError, Committed, GroupView, Shared, TaskGenerations, TaskView, group_view, site_index,
    task_view,
};
use crate::geoip::GeoIp;
use crate::health::{Health, Key};
use crate::load::{self, LoadError, LoadedSite, Sources};
use crate::site::spec::TaskSpec;
use crate::site::{self, site_name};
use crate::snapshot::Snapshot;
use hickory_proto::rr::Name;

/// Changes that may wait for the writer; one more is refused with 503. A batch of this
/// many changes to one site is written in well under a second, so a client waiting its
/// turn waits far less than any HTTP timeout.
pub const QUEUE_BOUND: usize = 512;

pub type Queue = SyncSender<Job>;

pub enum Job {
    Change(Request),
    Reload(oneshot::Sender<Result<bool, LoadError>>),
    /// A reload even when no file changed: signatures lbdns made are due for refresh.
    Resign(oneshot::Sender<Result<bool, LoadError>>),
}

/// One API change: an edit of one site, and where to send the outcome.
pub struct Request {
    pub site: String,
    pub edit: Edit,
    pub reply: oneshot::Sender<Result<Shown, ChangeError>>,
}

pub type Edit = Box<dyn FnOnce(&mut LoadedSite) -> Result<Edited, ChangeError> + Send>;

/// What an edit did, and what its reply shows.
pub struct Edited {
    show: Show,
    /// The field path of the item the request sent (`tasks[3].`), so problems name
    /// fields relative to the request's body.
    focus: String,
    /// False when the site is already as asked: nothing to check, write or publish.
    changed: bool,
}

impl Edited {
    pub fn new(show: Show, focus: String) -> Self {
        Self {
            show,
            focus,
            changed: true,
        }
    }

    pub fn task(id: String, created: bool, focus: String) -> Self {
        Self::new(Show::Task { id, created }, focus)
    }

    pub fn unchanged_task(id: String) -> Self {
        Self {
            changed: false,
            ..Self::task(id, false, String::new())
        }
    }
}

pub enum Show {
    Task { id: String, created: bool },
    Group(String),
    Nothing,
}

/// A reply: the item as the change left it.
pub enum Shown {
    Task { view: TaskView, created: bool },
    Group(GroupView),
    Nothing,
}

/// Starts the writer thread; it ends when the last sender is dropped.
pub(super) fn spawn(shared: Arc<Shared>, files: Files) -> Queue {
    let (queue, jobs) = std::sync::mpsc::sync_channel(QUEUE_BOUND);
    let mut writer = Writer {
        backend: files,
        shared,
    };
    std::thread::Builder::new()
        .name("lbdns-writer".into())
        .spawn(move || writer.run(jobs))
        .expect("cannot start the configuration writer thread");
    queue
}

struct Writer {
    shared: Arc<Shared>,
    /// Where the configuration is stored.
    backend: Files,
}

impl Writer {
    fn run(&mut self, jobs: Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            let mut changes = Vec::new();
            for job in std::iter::once(first).chain(jobs.try_iter().take(QUEUE_BOUND)) {
                match job {
                    Job::Change(request) => changes.push(request),
                    Job::Reload(reply) => {
                        // Changes queued before the reload are applied before it.
                        self.commit(std::mem::take(&mut changes));
                        let _ = reply.send(self.reload(false));
                    }
                    Job::Resign(reply) => {
                        self.commit(std::mem::take(&mut changes));
                        let _ = reply.send(self.reload(true));
                    }
                }
            }
            self.commit(changes);
        }
    }

    // ----------- Changes ------------------------------------------------------------

    fn commit(&mut self, requests: Vec<Request>) {
        if requests.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let count = requests.len();
        let base = self.shared.committed.load_full();
        let mut batch = Batch {
            sites: base.config.sites.clone(),
            snapshot: self.shared.serving.load_full(),
            checked: HashSet::new(),
            dirty: BTreeSet::new(),
        };
        let mut outcomes = Vec::with_capacity(requests.len());
        for Request { site, edit, reply } in requests {
            let outcome = self.apply(&base, &mut batch, &site, edit);
            outcomes.push((reply, outcome));
        }

        let mut failed: BTreeMap<usize, StorageError> = BTreeMap::new();
        let mut written = 0;
        for &index in &batch.dirty {
            match self.backend.write_site(&batch.sites[index]) {
                Ok(()) => written += 1,
                Err(error) => {
                    failed.insert(index, error);
                }
            }
        }
        for &index in failed.keys() {
            batch.sites[index] = base.config.sites[index].clone();
            let zone = &base.config.zones[index_of_zone(&base, index)];
            match batch
                .snapshot
                .with_site(zone, &batch.sites[index].site, &self.shared.health)
            {
                Ok(snapshot) => batch.snapshot = Arc::new(snapshot),
                Err(_) => {
                    // Cannot happen: the old site compiled before. Serve what was served.
                    error!(
                        "a site that compiled before no longer does; keeping the served snapshot"
                    );
                    batch.snapshot = self.shared.serving.load_full();
                }
            }
        }

        if written > 0 {
            let generation = base.generation + 1;
            let mut task_generations = base.task_generations.clone();
            for &index in batch.dirty.iter().filter(|i| !failed.contains_key(i)) {
                let (old, new) = (&base.config.sites[index], &batch.sites[index]);
                let site = site_name(&new.site.origin);
                let (before, after) = (TaskSpecs::of(old), TaskSpecs::of(new));
                let previous = task_generations.get(&site);
                let tasks = new
                    .site
                    .tasks
                    .iter()
                    .map(|task| {
                        let kept = previous.and_then(|p| p.get(&task.id)).copied();
                        let generation = match kept {
                            Some(kept) if !task_changed(old, &before, new, &after, &task.id) => {
                                kept
                            }
                            _ => generation,
                        };
                        (task.id.clone(), generation)
                    })
                    .collect();
                task_generations.insert(site, Arc::new(tasks));
            }
            let mut config = base.config.clone();
            config.sites = batch.sites;
            self.publish(generation, config, task_generations, batch.snapshot);
        }

        debug!(changes = count, elapsed = ?started.elapsed(), "batch committed");
        for (reply, outcome) in outcomes {
            let outcome = match outcome {
                Ok((Some(index), _)) if failed.contains_key(&index) => {
                    Err(ChangeError::from(&failed[&index]))
                }
                Ok((_, shown)) => Ok(shown),
                Err(error) => Err(error),
            };
            // The client may have gone; its change stands either way.
            let _ = reply.send(outcome);
        }
    }

    /// Applies one edit to the batch. Returns the site it changed (`None` when it was
    /// already as asked) and the reply.
    fn apply(
        &self,
        base: &Committed,
        batch: &mut Batch,
        site: &str,
        edit: Edit,
    ) -> Result<(Option<usize>, Shown), ChangeError> {
        if let Some(error) = &base.reload_error {
            return Err(ChangeError::Conflict(format!(
                "the files on disk were rejected at the last reload:\n{error}\nfix them first: lbdns does not change a configuration that does not load"
            )));
        }
        let index = site_index(&batch.sites, site)?;
        let zone = &base.config.zones[index_of_zone(base, index)];
        if !batch.checked.contains(&index) {
            self.backend
                .guard(&batch.sites[index], &zone.path)
                .map_err(|e| ChangeError::from(&e))?;
            batch.checked.insert(index);
        }
        let mut next = LoadedSite::clone(&batch.sites[index]);
        let edited = edit(&mut next)?;
        if !edited.changed {
            let shown = show(&batch.sites[index], edited.show, &self.shared.health)?;
            return Ok((None, shown));
        }
        next.site = site::validate(&next.site.origin, &next.spec)
            .map_err(|problems| ChangeError::Invalid(problems).relative_to(&edited.focus))?;
        let snapshot = batch
            .snapshot
            .with_site(zone, &next.site, &self.shared.health)
            .map_err(|errors| {
                ChangeError::Unservable(
                    errors
                        .iter()
                        .map(|e| e.message.clone())
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
        let shown = show(&next, edited.show, &self.shared.health)?;
        batch.sites[index] = Arc::new(next);
        batch.snapshot = Arc::new(snapshot);
        batch.dirty.insert(index);
        Ok((Some(index), shown))
    }

    // ----------- Reload -------------------------------------------------------------

    /// Reloads when the files changed, or with `force` (to refresh DNSSEC signatures)
    /// when they did not.
    fn reload(&mut self, force: bool) -> Result<bool, LoadError> {
        let sources = &self.shared.sources;
        let revision = self.backend.poll();
        if revision.is_none() && !force {
            return Ok(false);
        }
        let base = self.shared.committed.load_full();
        let metrics = &self.shared.metrics;
        match load_guarded(sources, &self.shared.health, base.config.geoip.clone()) {
            Ok((config, snapshot)) => {
                let generation = base.generation + 1;
                let task_generations = carry_generations(&base, &config, generation);
                if let Some(revision) = revision {
                    self.backend.served(revision);
                }
                let before = self.shared.serving.load().serials();
                let changed = notify_changed(&before, &snapshot, &config);
                self.publish(generation, config, task_generations, Arc::new(snapshot));
                // Once published: a secondary asks for the SOA as soon as it is notified.
                crate::dns::notify::spawn(changed, metrics.clone());
                metrics.reloads_ok.inc();
                give_back_freed_memory();
                metrics.config_valid.set(1);
                Ok(true)
            }
            Err(errors) => {
                // The backend remembers the bad files: the same edit is not retried on
                // every event.
                self.shared.committed.store(Arc::new(Committed {
                    reload_error: Some(errors.to_string()),
                    ..Committed::clone(&base)
                }));
                metrics.reloads_failed.inc();
                metrics.config_valid.set(0);
                Err(errors)
            }
        }
    }

    /// Makes `config` the committed configuration (the files on disk load, so no reload
    /// error stands) and `snapshot` the served one, as `generation`.
    fn publish(
        &self,
        generation: u64,
        config: load::Config,
        task_generations: TaskGenerations,
        snapshot: Arc<Snapshot>,
    ) {
        // Checkers for the origins the new configuration checks, before anyone can ask.
        self.shared
            .health
            .reconcile(config.sites.iter().flat_map(|s| Key::of_site(&s.site)));
        self.shared.committed.store(Arc::new(Committed {
            generation,
            config,
            task_generations,
            reload_error: None,
        }));
        self.shared.serving.store(snapshot);
        self.shared
            .served_generation
            .store(generation, std::sync::atomic::Ordering::Release);
        self.shared.metrics.config_generation.set(generation as i64);
    }
}

/// A batch being applied.
struct Batch {
    sites: Vec<Arc<LoadedSite>>,
    snapshot: Arc<Snapshot>,
    /// Sites whose files were checked against what is served.
    checked: HashSet<usize>,
    /// Sites changed by the batch, to write.
    dirty: BTreeSet<usize>,
}

/// The reply for `show` from the site as the change left it.
fn show(loaded: &LoadedSite, show: Show, health: &Health) -> Result<Shown, ChangeError> {
    Ok(match show {
        Show::Task { id, created } => Shown::Task {
            view: task_view(loaded, &id, health).ok_or_else(|| super::no_task(loaded, &id))?,
            created,
        },
        Show::Group(name) => Shown::Group(
            group_view(loaded, &name, health)
                .ok_or_else(|| ChangeError::NotFound(format!("no origin group {name}")))?,
        ),
        Show::Nothing => Shown::Nothing,
    })
}

/// The zone of the site at `index` (sites and zones are not in the same order).
fn index_of_zone(base: &Committed, index: usize) -> usize {
    let origin = &base.config.sites[index].site.origin;
    base.config
        .zones
        .iter()
        .position(|z| z.origin == *origin)
        .expect("every site belongs to a loaded zone")
}

/// Returns the heap a load freed to the system. Parsing a large zone allocates far more
/// than the compiled zone keeps, and glibc's allocator holds on to freed memory, so
/// without this the resident size after a load would stay at the load's peak.
pub(super) fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator; it has no
    // preconditions and touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Loads the files; a panic while loading is a rejected reload, not a dead writer.
fn load_guarded(
    sources: &Sources,
    health: &Health,
    geoip: Option<Arc<GeoIp>>,
) -> Result<(load::Config, Snapshot), LoadError> {
    // Unwind safety: a load that panics halfway can only have left unused health cells,
    // which the next reconcile drops.
    let load = std::panic::AssertUnwindSafe(|| load::load(sources, health, geoip));
    std::panic::catch_unwind(load).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(LoadError(vec![format!(
            "internal error while loading the configuration ({what}); the previous configuration keeps serving. Please report this with the files that caused it"
        )]))
    })
}

/// Writes the site file; returns what was written.
/// A site's task specs by id, for comparing two versions of a site.
struct TaskSpecs<'a>(HashMap<String, &'a TaskSpec>);

impl<'a> TaskSpecs<'a> {
    fn of(loaded: &'a LoadedSite) -> Self {
        Self(
            loaded
                .spec
                .tasks
                .iter()
                .map(|t| (site::spec_task_id(&t.value), &t.value))
                .collect(),
        )
    }
}

/// A task needs deploying again when it or its group changed.
fn task_changed(
    old: &LoadedSite,
    before: &TaskSpecs,
    new: &LoadedSite,
    after: &TaskSpecs,
    id: &str,
) -> bool {
    let (Some(before), Some(after)) = (before.0.get(id), after.0.get(id)) else {
        return true;
    };
    let group_before = old.spec.origin_groups.get(before.origin_group.as_str());
    let group_after = new.spec.origin_groups.get(after.origin_group.as_str());
    before != after || group_before != group_after
}

/// Every zone whose SOA serial `snapshot` changes from `before`, with the secondaries its
/// site lists by address: who to send NOTIFY to.
fn notify_changed(
    before: &[(Name, u32)],
    snapshot: &Snapshot,
    config: &load::Config,
) -> Vec<(Name, Vec<std::net::SocketAddr>)> {
    let before: HashMap<&Name, u32> = before.iter().map(|(n, s)| (n, *s)).collect();
    let sites: HashMap<&Name, &LoadedSite> = config
        .sites
        .iter()
        .map(|s| (&s.site.origin, &**s))
        .collect();
    snapshot
        .serials()
        .into_iter()
        .filter(|(origin, serial)| before.get(origin) != Some(serial))
        .inspect(|(origin, serial)| {
            // RFC 1982 serial arithmetic: a secondary ignores a serial "less" than its own.
            if let Some(&old) = before.get(origin)
                && (serial.wrapping_sub(old) as i32) < 0
            {
                warn!(zone = %origin, before = old, after = serial, "the zone's SOA serial went backwards: secondaries keep their copy until it passes {old} again (RFC 1982)");
            }
        })
        .map(|(origin, _)| {
            let targets = sites
                .get(&origin)
                .map(|s| s.site.secondaries.iter().filter_map(|x| x.notify).collect())
                .unwrap_or_default();
            (origin, targets)
        })
        .collect()
}

/// Task generations after a reload: unchanged tasks keep theirs.
fn carry_generations(base: &Committed, config: &load::Config, next: u64) -> TaskGenerations {
    let old_sites: HashMap<&Name, &LoadedSite> = base
        .config
        .sites
        .iter()
        .map(|s| (&s.site.origin, &**s))
        .collect();
    let mut generations = TaskGenerations::new();
    for new in &config.sites {
        let site = site_name(&new.site.origin);
        let old = old_sites.get(&new.site.origin).copied();
        let before = old.map(TaskSpecs::of);
        let after = TaskSpecs::of(new);
        let previous = base.task_generations.get(&site);
        let tasks = new
            .site
            .tasks
            .iter()
            .map(|task| {
                let generation = match (old, &before) {
                    (Some(old), Some(before))
                        if !task_changed(old, before, new, &after, &task.id) =>
                    {
                        previous
                            .and_then(|p| p.get(&task.id))
                            .copied()
                            .unwrap_or(next)
                    }
                    _ => next,
                };
                (task.id.clone(), generation)
            })
            .collect();
        generations.insert(site, Arc::new(tasks));
    }
    generations
}
