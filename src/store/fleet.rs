//! The storage of a fleet node: its directory mirrors etcd (see [`Mirror`]), and a change
//! is committed to etcd first, guarded by the revision of the site's key this node last
//! saw, then written to the mirror. Everything else (what changed, what was served) is
//! the directory's, as for a node serving files alone.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::files::{Backend, Files, Fingerprint, Polled, StorageError};
use super::writer::Stored;
use crate::etcd::{EtcdError, Mirror};
use crate::load::{LoadedSite, Sources};

/// A fleet node's storage: the mirror directory, and etcd behind it.
pub(super) struct Fleet {
    files: Files,
    mirror: Arc<Mirror>,
    /// The revision of each mirrored file when the last poll read the directory: what a
    /// reload of that read serves at least.
    polled: HashMap<String, i64>,
}

impl Fleet {
    /// The mirror directory of `sources`, as it is before the first load (which must
    /// follow, after the mirror's first sync).
    pub fn open(sources: Sources, mirror: Arc<Mirror>) -> Self {
        Self {
            polled: mirror.mirrored(),
            files: Files::open(sources),
            mirror,
        }
    }
}

/// The etcd key's name for `site`: its file name (`example.com.lb.yaml`).
fn file_name(site: &LoadedSite) -> String {
    let name = site.path.file_name().unwrap_or_default();
    name.to_string_lossy().into_owned()
}

impl Backend for Fleet {
    type Revision = Fingerprint;

    fn poll(&mut self, stored_first: bool) -> Polled<Fingerprint> {
        let mut changed = || {
            // Taken before the files are read: what they hold is at least this new.
            self.polled = self.mirror.mirrored();
            self.files.changed()
        };
        let changed = match stored_first {
            false => changed(),
            true => match self.mirror.when_applied(changed) {
                Ok(changed) => changed,
                Err(sites) => {
                    let stored = sites.into_iter();
                    return Polled::Stored(
                        stored
                            .map(|(name, text, revision)| Stored {
                                name,
                                text,
                                revision,
                            })
                            .collect(),
                    );
                }
            },
        };
        changed.map_or(Polled::Unchanged, Polled::Changed)
    }

    fn served(&mut self, revision: Fingerprint) {
        self.files.served(revision);
        self.mirror.set_loaded(self.polled.clone());
    }

    fn guard(&self, site: &LoadedSite, zone: &Path) -> Result<(), StorageError> {
        // A newer site file came from etcd, not from a hand edit.
        if !self.files.site_unchanged(site) {
            return Err(StorageError::Stale(
                EtcdError::Stale {
                    key: file_name(site),
                }
                .to_string(),
            ));
        }
        self.files.zone_unchanged(zone)
    }

    fn write_site(&mut self, site: &LoadedSite) -> Result<(), StorageError> {
        let text = self.files.render_checked(site)?;
        let name = file_name(site);
        // Checked again with the mirror held: a newer version mirrored but not loaded
        // yet makes the change stale instead of being overwritten by it.
        let files = &self.files;
        let still_valid = || files.site_unchanged(site);
        let revision = self
            .mirror
            .commit(&name, text.as_bytes(), still_valid)
            .map_err(|error| match error {
                EtcdError::Stale { .. } => StorageError::Stale(error.to_string()),
                EtcdError::Unavailable(_) => StorageError::Unavailable(error.to_string()),
                EtcdError::TooLarge { .. } => StorageError::TooLarge(error.to_string()),
            })?;
        // The writer publishes this batch right after writing it.
        self.mirror.mark_loaded(&name, revision);
        self.files.wrote_elsewhere(&site.path, &text);
        Ok(())
    }

    fn newest(&mut self, site: &LoadedSite) -> Result<Option<String>, StorageError> {
        let unavailable = |error: EtcdError| StorageError::Unavailable(error.to_string());
        let Some((bytes, _)) = self.mirror.fetch(&file_name(site)).map_err(unavailable)? else {
            return Ok(None);
        };
        let Ok(text) = String::from_utf8(bytes) else {
            return Ok(None);
        };
        // Mirrored by the fetch (unless the watch brought a newer one meanwhile, which the
        // write's check then finds): the version a write is made on.
        self.files.wrote_elsewhere(&site.path, &text);
        Ok(Some(text))
    }

    fn is_latest(&self, name: &str, revision: i64) -> bool {
        self.mirror
            .revision_of(name)
            .is_none_or(|known| known <= revision)
    }

    fn adopted(&mut self, site: &LoadedSite, text: &str, revision: i64) {
        self.files.wrote_elsewhere(&site.path, text);
        self.mirror.mark_loaded(&file_name(site), revision);
    }
}
