//! Reload on file change (SPEC §8): a notify watcher on `zones/` and the GeoIP file's
//! directory. A file counts as changed when it is complete: closed after writing
//! (inotify's IN_CLOSE_WRITE), renamed into or out of place, removed, or created whole (a
//! symbolic or hard link). Writes themselves do not count: a slow writer rewriting a zone
//! in place would otherwise have its half-written file loaded and served. Reads do not
//! count either (a reload reads the files), and a burst of events, such as an editor's
//! save, becomes one reload once the files are quiet.
//!
//! A configuration file may be a symlink (a site file kept in a repository checkout, a
//! GeoIP database that `geoipupdate` replaces in `/var/lib/GeoIP`). An edit then happens
//! where the link points, which a watch on `zones/` does not see. So a second watcher
//! watches the directory of every file a link leads to (every hop of a chain, each
//! directory non-recursively), and an event on one of those files counts like an edit
//! in `zones/`. Links are looked for again after every reload the watcher triggers,
//! whatever its outcome: creating or re-pointing a link in `zones/` is itself an edit
//! there, so a new or changed link is followed from the next reload on. (A SIGHUP reload
//! does not look again; it has no file event to answer.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::load::Sources;
use crate::persist;
use crate::store::Store;

/// How long the files must be quiet before a reload.
const QUIET: Duration = Duration::from_millis(200);

/// Files that symlinks among the configuration files lead to, by canonical path.
type Linked = Arc<Mutex<BTreeSet<PathBuf>>>;

/// Watches the store's sources; reloads until the returned watcher is dropped.
pub fn spawn(store: Arc<Store>) -> anyhow::Result<RecommendedWatcher> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let linked = Linked::default();
    let sources = store.sources().clone();
    // Watched by canonical path, so that event paths compare with the linked files.
    let zones_dir = canonical(&sources.zones_dir());
    let geoip_dir = sources
        .geoip_path()
        .as_deref()
        .and_then(Path::parent)
        .map(canonical);
    let mut targets = Targets::new(&tx, linked.clone(), [Some(&zones_dir), geoip_dir.as_ref()])?;
    let mut watcher = {
        let linked = linked.clone();
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event)
                if is_edit(&event)
                    && event
                        .paths
                        .iter()
                        .any(|p| is_config_file(p) || is_linked(&linked, p)) =>
            {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(error) => warn!(%error, "file watcher error"),
        })?
    };
    watcher.watch(&zones_dir, RecursiveMode::NonRecursive)?;
    if let Some(dir) = &geoip_dir {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    info!(dir = %zones_dir.display(), "watching for changes");
    targets.update(&sources);
    tokio::spawn(async move {
        // Ends when the returned watcher, which holds the only strong sender, is dropped.
        while rx.recv().await.is_some() {
            // Wait for quiet, folding every event of the burst into one reload.
            while tokio::time::timeout(QUIET, rx.recv())
                .await
                .is_ok_and(|e| e.is_some())
            {}
            store.reload_logged("file change").await;
            targets.update(&sources);
        }
    });
    Ok(watcher)
}

/// The watcher of the directories symlinks lead into, outside the ones always watched.
struct Targets {
    watcher: RecommendedWatcher,
    linked: Linked,
    /// Directories watched now.
    dirs: BTreeSet<PathBuf>,
    /// `zones/` and the GeoIP directory, which the main watcher has.
    always: Vec<PathBuf>,
}

impl Targets {
    fn new<'a>(
        tx: &mpsc::UnboundedSender<()>,
        linked: Linked,
        always: impl IntoIterator<Item = Option<&'a PathBuf>>,
    ) -> notify::Result<Self> {
        // A weak sender: this watcher lives in the reload task, which must end when the
        // main watcher (and its sender) is dropped.
        let tx = tx.downgrade();
        let events = linked.clone();
        let watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event)
                    if is_edit(&event) && event.paths.iter().any(|p| is_linked(&events, p)) =>
                {
                    if let Some(tx) = tx.upgrade() {
                        let _ = tx.send(());
                    }
                }
                Ok(_) => {}
                Err(error) => warn!(%error, "file watcher error"),
            })?;
        Ok(Self {
            watcher,
            linked,
            dirs: BTreeSet::new(),
            always: always.into_iter().flatten().cloned().collect(),
        })
    }

    /// Looks for symlinks again and watches the directories they lead into now.
    fn update(&mut self, sources: &Sources) {
        let files = linked_files(sources);
        let dirs: BTreeSet<PathBuf> = files
            .iter()
            .filter_map(|f| f.parent())
            .filter(|d| !self.always.iter().any(|a| a == d))
            .map(Path::to_owned)
            .collect();
        for gone in self.dirs.difference(&dirs) {
            let _ = self.watcher.unwatch(gone);
        }
        let mut watched = BTreeSet::new();
        for dir in dirs {
            if self.dirs.contains(&dir) {
                watched.insert(dir);
                continue;
            }
            match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    info!(dir = %dir.display(), "watching for changes where symlinks point");
                    watched.insert(dir);
                }
                // Tried again after the next reload.
                Err(error) => {
                    warn!(dir = %dir.display(), %error, "cannot watch where a symlink points")
                }
            }
        }
        self.dirs = watched;
        *self.linked.lock().unwrap_or_else(|p| p.into_inner()) = files;
    }
}

fn is_linked(linked: &Linked, path: &Path) -> bool {
    linked
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(path)
}

/// Every file a symlink among the configuration files leads to, each hop of a chain,
/// by canonical directory (the name itself may be a link, or not exist yet).
fn linked_files(sources: &Sources) -> BTreeSet<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(sources.zones_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_config_file(p))
        .collect();
    files.extend(sources.geoip_path());
    files.extend(sources.asn_path());
    let mut linked = BTreeSet::new();
    for file in files {
        let Ok(chain) = persist::symlink_chain(&file) else {
            continue;
        };
        for hop in chain.iter().skip(1) {
            if let (Some(dir), Some(name)) = (hop.parent(), hop.file_name())
                && let Ok(dir) = std::fs::canonicalize(dir)
            {
                linked.insert(dir.join(name));
            }
        }
    }
    linked
}

/// `path` with every symlink and `..` resolved, or as it is when that fails.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// True when `event` leaves a file complete: closed after writing, renamed, removed, or
/// created whole. A file created by `open` is empty until its writer closes it, which is
/// an event of its own; a link (symbolic, or a second hard link) is whole at once.
fn is_edit(event: &notify::Event) -> bool {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Name(_))
        | EventKind::Remove(_) => true,
        EventKind::Create(_) => event.paths.iter().any(|path| {
            use std::os::unix::fs::MetadataExt;
            std::fs::symlink_metadata(path)
                .is_ok_and(|m| m.file_type().is_symlink() || m.nlink() > 1)
        }),
        _ => false,
    }
}

/// Zone files, site files and GeoIP databases; not our own temp files.
fn is_config_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    !name.starts_with('.')
        && (name.ends_with(".zone") || name.ends_with(".lb.yaml") || name.ends_with(".mmdb"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn every_hop_of_every_link_is_followed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        for sub in ["zones", "repo", "other", "geo", "var"] {
            std::fs::create_dir(root.join(sub)).unwrap();
        }
        std::fs::write(root.join("zones/example.com.zone"), "").unwrap();
        std::fs::write(root.join("repo/site.yaml"), "").unwrap();
        // zones/example.com.lb.yaml -> ../other/hop -> /…/repo/site.yaml
        symlink("../other/hop", root.join("zones/example.com.lb.yaml")).unwrap();
        symlink(root.join("repo/site.yaml"), root.join("other/hop")).unwrap();
        // A link that is not a configuration file is not followed.
        symlink("../var", root.join("zones/notes")).unwrap();
        // The GeoIP file links to a database that does not exist yet.
        symlink("../var/db.mmdb", root.join("geo/db.mmdb")).unwrap();
        let sources = Sources {
            dir: root.clone(),
            geoip: Some(root.join("geo/db.mmdb")),
            asn_db: None,
        };
        let linked: Vec<PathBuf> = linked_files(&sources).into_iter().collect();
        assert_eq!(
            linked,
            [
                root.join("other/hop"),
                root.join("repo/site.yaml"),
                root.join("var/db.mmdb")
            ]
        );
    }

    #[test]
    fn temp_files_are_not_configuration() {
        assert!(is_config_file(Path::new("/z/example.com.lb.yaml")));
        assert!(!is_config_file(Path::new("/z/.lbdns-x1.tmp")));
        assert!(!is_config_file(Path::new("/z/notes.txt")));
    }
}
