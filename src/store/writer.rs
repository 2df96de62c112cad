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
use tracing::{debug, error, info, warn};

use super::edit::{self, Edit, Subject};
use super::files::{Backend, Polled, StorageError};
use super::{ChangeError, Committed, Shared, TaskGenerations, site_index};
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
    /// Boxed: an edit carries a whole task or group, and a reload job should not cost
    /// that much room in the queue.
    Change(Box<Request>),
    Reload(oneshot::Sender<Result<bool, LoadError>>),
    /// A site file changed elsewhere (another fleet node), already in this node's copy.
    Stored(Stored),
    /// A reload even when no file changed: signatures lbdns made are due for refresh.
    Resign(oneshot::Sender<Result<bool, LoadError>>),
}

/// A site file as another node stored it.
pub struct Stored {
    /// The file's name (`example.com.lb.yaml`).
    pub name: String,
    pub text: Vec<u8>,
    /// Its revision in the shared store.
    pub revision: i64,
}

/// One API change: an edit of one site, and where to send the outcome.
pub struct Request {
    pub site: String,
    pub edit: Edit,
    pub reply: oneshot::Sender<Result<Done, ChangeError>>,
}

/// A change made: the site as it left it (shared with the committed configuration), and
/// what the change was about.
pub struct Done {
    pub site: Arc<LoadedSite>,
    pub subject: Subject,
}

/// Starts the writer thread; it ends when the last sender is dropped.
pub(super) fn spawn(shared: Arc<Shared>, backend: impl Backend + 'static) -> Queue {
    let (queue, jobs) = std::sync::mpsc::sync_channel(QUEUE_BOUND);
    let mut writer = Writer { backend, shared };
    std::thread::Builder::new()
        .name("lbdns-writer".into())
        .spawn(move || writer.run(jobs))
        .expect("cannot start the configuration writer thread");
    queue
}

struct Writer<B> {
    shared: Arc<Shared>,
    /// Where the configuration is stored.
    backend: B,
}

impl<B: Backend> Writer<B> {
    fn run(&mut self, jobs: Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            let mut changes = Vec::new();
            for job in std::iter::once(first).chain(jobs.try_iter().take(QUEUE_BOUND)) {
                match job {
                    Job::Change(request) => changes.push(*request),
                    Job::Reload(reply) => {
                        // Changes queued before the reload are applied before it.
                        self.commit(std::mem::take(&mut changes));
                        let _ = reply.send(self.reload(false));
                    }
                    Job::Resign(reply) => {
                        self.commit(std::mem::take(&mut changes));
                        let _ = reply.send(self.reload(true));
                    }
                    Job::Stored(stored) => {
                        self.commit(std::mem::take(&mut changes));
                        // What it cannot serve, the reload its file event starts reports.
                        let _ = self.adopt(stored);
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
            before: BTreeMap::new(),
        };
        // Each edit is made and validated in turn, and each edited site compiled once
        // for the whole batch: compiling a site of thousands of tasks per edit made a
        // burst of edits to it take minutes.
        let mut pending: Vec<Pending> = requests
            .into_iter()
            .map(|Request { site, edit, reply }| {
                let outcome = self.apply(&base, &mut batch, &site, &edit, Compile::Later);
                Pending {
                    site,
                    edit,
                    reply,
                    outcome,
                }
            })
            .collect();
        let edited: Vec<usize> = batch.dirty.iter().copied().collect();
        for index in edited {
            self.compile_edited(&base, &mut batch, index, &mut pending);
        }

        let mut failed: BTreeMap<usize, StorageError> = BTreeMap::new();
        let mut written = 0;
        let dirty: Vec<usize> = batch.dirty.iter().copied().collect();
        for index in dirty {
            let mut attempts = 0;
            loop {
                match self.backend.write_site(&batch.sites[index]) {
                    Ok(()) => written += 1,
                    // Another node changed the site since this one last saw it: the
                    // edits are made again on its newer version, and written again.
                    Err(error) if error.is_stale() && attempts < STALE_RETRIES => {
                        attempts += 1;
                        match self.reapply(&base, &mut batch, index, &mut pending) {
                            Ok(()) => continue,
                            Err(_) => {
                                failed.insert(index, error);
                            }
                        }
                    }
                    Err(error) => {
                        failed.insert(index, error);
                    }
                }
                break;
            }
            if attempts > 0 {
                info!(
                    site = site_name(&batch.sites[index].site.origin),
                    attempts,
                    written = !failed.contains_key(&index),
                    "changes made on an older copy of the site were made again on the newest"
                );
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
                regenerate(&mut task_generations, old, new, generation);
            }
            let mut config = base.config.clone();
            config.sites = batch.sites;
            self.publish(generation, config, task_generations, batch.snapshot);
        }

        debug!(changes = count, elapsed = ?started.elapsed(), "batch committed");
        for Pending { reply, outcome, .. } in pending {
            let outcome = match outcome {
                Ok((Some(index), _)) if failed.contains_key(&index) => {
                    Err(ChangeError::from(&failed[&index]))
                }
                Ok((_, done)) => Ok(done),
                Err(error) => Err(error),
            };
            // The client may have gone; its change stands either way.
            let _ = reply.send(outcome);
        }
    }

    /// Compiles the site at `index` as the batch's edits left it into the batch's
    /// snapshot. When it does not compile, the site's edits are made again one by one from
    /// the site as it was before them, each compiled, so that the edit that makes it
    /// unservable is refused and the others stand.
    fn compile_edited(
        &mut self,
        base: &Committed,
        batch: &mut Batch,
        index: usize,
        pending: &mut [Pending],
    ) {
        let zone = &base.config.zones[index_of_zone(base, index)];
        if let Ok(snapshot) =
            batch
                .snapshot
                .with_site(zone, &batch.sites[index].site, &self.shared.health)
        {
            batch.snapshot = Arc::new(snapshot);
            return;
        }
        if let Some(before) = batch.before.remove(&index) {
            batch.sites[index] = before;
        }
        batch.dirty.remove(&index);
        for request in pending.iter_mut() {
            if matches!(request.outcome, Ok((Some(i), _)) if i == index) {
                request.outcome =
                    self.apply(base, batch, &request.site, &request.edit, Compile::Now);
            }
        }
    }

    /// Applies one edit to the batch. Returns the site it changed (`None` when it was
    /// already as asked) and the site as the edit left it. With [`Compile::Later`] the
    /// edited site is validated but compiled by [`Writer::compile_edited`].
    fn apply(
        &mut self,
        base: &Committed,
        batch: &mut Batch,
        site: &str,
        edit: &Edit,
        compile: Compile,
    ) -> Result<(Option<usize>, Done), ChangeError> {
        if let Some(error) = &base.reload_error {
            return Err(ChangeError::Conflict(format!(
                "the files on disk were rejected at the last reload:\n{error}\nfix them first: lbdns does not change a configuration that does not load"
            )));
        }
        let index = site_index(&batch.sites, site)?;
        let zone = &base.config.zones[index_of_zone(base, index)];
        if !batch.checked.contains(&index) {
            match self.backend.guard(&batch.sites[index], &zone.path) {
                Ok(()) => {}
                // A newer version from another node, not applied here yet: the edit is
                // made on it.
                Err(error) if error.is_stale() => {
                    if self.refresh(base, batch, index).is_err() {
                        return Err(ChangeError::from(&error));
                    }
                }
                Err(error) => return Err(ChangeError::from(&error)),
            }
            batch.checked.insert(index);
        }
        let current = &batch.sites[index];
        let edited = edit::apply(&current.spec, edit).map_err(|error| ChangeError::Edit {
            site: site_name(&current.site.origin),
            error,
        })?;
        let Some(spec) = edited.spec else {
            let done = Done {
                site: current.clone(),
                subject: edited.subject,
            };
            return Ok((None, done));
        };
        let validated = site::validate(&current.site.origin, &spec)
            .map_err(|problems| ChangeError::Invalid(problems).relative_to(&edited.focus))?;
        if compile == Compile::Now {
            let snapshot = batch
                .snapshot
                .with_site(zone, &validated, &self.shared.health)
                .map_err(|errors| {
                    ChangeError::Unservable(
                        errors
                            .iter()
                            .map(|e| e.message.clone())
                            .collect::<Vec<_>>()
                            .join("; "),
                    )
                })?;
            batch.snapshot = Arc::new(snapshot);
        }
        let next = Arc::new(LoadedSite {
            path: current.path.clone(),
            spec,
            site: validated,
        });
        let before = std::mem::replace(&mut batch.sites[index], next.clone());
        batch.before.entry(index).or_insert(before);
        batch.dirty.insert(index);
        let done = Done {
            site: next,
            subject: edited.subject,
        };
        Ok((Some(index), done))
    }

    /// Takes the newest stored version of the site at `index` into the batch, checked
    /// and compiled as any version is; fails when there is none newer or it does not
    /// load (the change is then refused as stale).
    fn refresh(&mut self, base: &Committed, batch: &mut Batch, index: usize) -> Result<(), ()> {
        let current = batch.sites[index].clone();
        let text = match self.backend.newest(&current) {
            Ok(Some(text)) => text,
            Ok(None) | Err(_) => return Err(()),
        };
        let (spec, validated) = site::from_text(&current.path, &text, &current.site.origin)
            .map_err(|error| warn!(%error, "the newest version of a site in the shared store does not load"))?;
        let zone = &base.config.zones[index_of_zone(base, index)];
        let snapshot = batch
            .snapshot
            .with_site(zone, &validated, &self.shared.health)
            .map_err(|_| ())?;
        batch.sites[index] = Arc::new(LoadedSite {
            path: current.path.clone(),
            spec,
            site: validated,
        });
        batch.snapshot = Arc::new(snapshot);
        Ok(())
    }

    /// Makes this batch's edits of the site at `index` again, on its newest stored
    /// version; each gets the outcome it has there (a real conflict is refused now).
    fn reapply(
        &mut self,
        base: &Committed,
        batch: &mut Batch,
        index: usize,
        pending: &mut [Pending],
    ) -> Result<(), ()> {
        self.refresh(base, batch, index)?;
        for request in pending.iter_mut() {
            // Refused edits stay refused: they were checked against an older version,
            // and whoever sent them was going to hear so.
            let of_site = site_index(&batch.sites, &request.site).is_ok_and(|i| i == index);
            if of_site && request.outcome.is_ok() {
                request.outcome =
                    self.apply(base, batch, &request.site, &request.edit, Compile::Now);
            }
        }
        Ok(())
    }

    // ----------- Changes stored elsewhere ----------------------------------------------

    /// Serves a site file another node stored, as a change of this node's API is served:
    /// that site alone checked, compiled and published. What this cannot take (a site
    /// new to this node, a changed `primary:`, a file that does not load) is left to the
    /// reload the file watcher starts for the same file, which reports it. True when it
    /// was served.
    fn adopt(&mut self, stored: Stored) -> bool {
        let started = std::time::Instant::now();
        let base = self.shared.committed.load_full();
        if base.reload_error.is_some() {
            return false;
        }
        let named = |s: &&Arc<LoadedSite>| {
            s.path.file_name().and_then(|n| n.to_str()) == Some(stored.name.as_str())
        };
        let Some(index) = base.config.sites.iter().position(|s| named(&s)) else {
            return false;
        };
        if !self.backend.is_latest(&stored.name, stored.revision) {
            return false;
        }
        let current = &base.config.sites[index];
        let text = match std::str::from_utf8(&stored.text) {
            Ok(text) => text,
            Err(_) => return false,
        };
        let (spec, validated) = match site::from_text(&current.path, text, &current.site.origin) {
            Ok(checked) => checked,
            Err(error) => {
                debug!(%error, file = stored.name, "a site file from the fleet is left to the reload");
                return false;
            }
        };
        if spec.primary != current.spec.primary {
            return false;
        }
        let zone = &base.config.zones[index_of_zone(&base, index)];
        let serving = self.shared.serving.load_full();
        let snapshot = match serving.with_site(zone, &validated, &self.shared.health) {
            Ok(snapshot) => snapshot,
            Err(_) => return false,
        };
        let next = Arc::new(LoadedSite {
            path: current.path.clone(),
            spec,
            site: validated,
        });
        self.backend.adopted(&next, text, stored.revision);
        let generation = base.generation + 1;
        let mut task_generations = base.task_generations.clone();
        regenerate(&mut task_generations, current, &next, generation);
        let mut config = base.config.clone();
        config.sites[index] = next;
        self.publish(generation, config, task_generations, Arc::new(snapshot));
        debug!(file = stored.name, revision = stored.revision, elapsed = ?started.elapsed(), "applied a site change from the fleet");
        true
    }

    // ----------- Reload -------------------------------------------------------------

    /// Reloads when the files changed, or with `force` (to refresh DNSSEC signatures)
    /// when they did not.
    fn reload(&mut self, force: bool) -> Result<bool, LoadError> {
        // Another node's site change the mirror holds but the writer has not applied
        // yet (its job is queued behind this reload, or was dropped by a full queue) is
        // applied as it would have been, not by loading every file; one that cannot be
        // (a new site, a changed primary, an error) is left to the reload.
        let mut stored_first = true;
        let revision = loop {
            match self.backend.poll(stored_first) {
                Polled::Unchanged => break None,
                Polled::Changed(revision) => break Some(revision),
                Polled::Stored(stored) => {
                    for stored in stored {
                        stored_first &= self.adopt(stored);
                    }
                }
            }
        };
        let sources = &self.shared.sources;
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

/// How many times a write found a newer version stored by another node and made its
/// edits again on it. Each retry follows a change that landed meanwhile, so only a site
/// changed on many nodes at once needs more than one.
const STALE_RETRIES: usize = 8;

/// A request of the batch, its edit kept to be made again on a newer version.
struct Pending {
    site: String,
    edit: Edit,
    reply: oneshot::Sender<Result<Done, ChangeError>>,
    outcome: Result<(Option<usize>, Done), ChangeError>,
}

/// A batch being applied.
struct Batch {
    sites: Vec<Arc<LoadedSite>>,
    snapshot: Arc<Snapshot>,
    /// Sites whose files were checked against what is served.
    checked: HashSet<usize>,
    /// Sites changed by the batch, to write.
    dirty: BTreeSet<usize>,
    /// Each changed site as it was before the batch's first edit of it.
    before: BTreeMap<usize, Arc<LoadedSite>>,
}

/// Whether [`Writer::apply`] compiles the site it edits into the batch's snapshot.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Compile {
    Now,
    Later,
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
                .map(|t| (site::spec_task_id(&t.value).into_owned(), &t.value))
                .collect(),
        )
    }
}

/// Records in `generations` which tasks of the site `new` (formerly `old`) change at
/// `generation`: those new or changed; the others keep theirs.
fn regenerate(
    generations: &mut TaskGenerations,
    old: &LoadedSite,
    new: &LoadedSite,
    generation: u64,
) {
    let site = site_name(&new.site.origin);
    let (before, after) = (TaskSpecs::of(old), TaskSpecs::of(new));
    let previous = generations.get(&site);
    let tasks = new
        .site
        .tasks
        .iter()
        .map(|task| {
            let kept = previous.and_then(|p| p.get(&task.id)).copied();
            let generation = match kept {
                Some(kept) if !task_changed(old, &before, new, &after, &task.id) => kept,
                _ => generation,
            };
            (task.id.clone(), generation)
        })
        .collect();
    generations.insert(site, Arc::new(tasks));
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
/// site lists by address: who to send NOTIFY to, and the TSIG key to sign it with.
fn notify_changed(
    before: &[(Name, u32)],
    snapshot: &Snapshot,
    config: &load::Config,
) -> Vec<(Name, Vec<crate::dns::notify::Target>)> {
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
                .map(|s| {
                    let secondaries = s.site.secondaries.iter();
                    secondaries
                        .filter_map(|x| x.notify.map(|to| (to, x.tsig.clone())))
                        .collect()
                })
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
