//! Reload on file change (SPEC §8): a notify watcher on `zones/` and the GeoIP file's
//! directory. Only writes, creations, removals and renames of configuration files count
//! (a reload reads the files, and reads must not trigger reloads), and a burst of them,
//! such as an editor's save, becomes one reload once the files are quiet.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::store::Store;

/// How long the files must be quiet before a reload.
const QUIET: Duration = Duration::from_millis(200);

/// Watches the store's sources; reloads until the returned watcher is dropped.
pub fn spawn(store: Arc<Store>) -> anyhow::Result<RecommendedWatcher> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if is_edit(&event.kind) && event.paths.iter().any(|p| is_config_file(p)) => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(error) => warn!(%error, "file watcher error"),
        })?;
    let sources = store.sources().clone();
    watcher.watch(&sources.zones_dir(), RecursiveMode::NonRecursive)?;
    if let Some(dir) = sources.geoip_path().as_deref().and_then(Path::parent) {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    info!(dir = %sources.zones_dir().display(), "watching for changes");
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Wait for quiet, folding every event of the burst into one reload.
            while tokio::time::timeout(QUIET, rx.recv())
                .await
                .is_ok_and(|e| e.is_some())
            {}
            store.reload_logged("file change").await;
        }
    });
    Ok(watcher)
}

fn is_edit(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
    )
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
