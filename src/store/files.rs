//! Where the configuration is stored: the boundary between the store's writer and its
//! storage. [`Backend`] is what the writer needs of any storage: whether something changed
//! since it last looked, a guard against overwriting what it has not loaded, and writing
//! one site. [`Files`] implements it for a served directory; [`super::fleet::Fleet`] for a
//! fleet node, whose directory mirrors etcd. Reading and checking what is stored (parsing,
//! validation, compilation) is shared code in [`crate::load`], whatever the storage.
//!
//! Errors on this boundary are typed ([`StorageError`]) and say what to do in an
//! operator's words; which HTTP status each becomes is the API layer's business.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::writer::Stored;
use crate::load::{LoadedSite, Sources};
use crate::persist;
use crate::site::{Limits, SiteSpec};

/// What the store's writer needs of the storage it commits to.
pub(super) trait Backend: Send {
    /// A view of everything stored, to compare with a later one.
    type Revision: Clone + PartialEq + Send;

    /// What is stored now, when it differs from what this backend last saw (it then
    /// remembers it: an edit that does not load is not tried again until it changes).
    /// With `stored_first`, site files another node stored that are not applied here
    /// yet come back as [`Polled::Stored`] first.
    fn poll(&mut self, stored_first: bool) -> Polled<Self::Revision>;

    /// Remembers `revision` as loaded and served: writes are guarded against it.
    fn served(&mut self, revision: Self::Revision);

    /// Refuses to change `site` while its stored form (or its zone's) is not the one
    /// served: a hand edit not loaded yet would be overwritten, and a zone that changed
    /// or went missing means the result might not start.
    fn guard(&self, site: &LoadedSite, zone: &Path) -> Result<(), StorageError>;

    /// Stores `site` in its canonical form.
    fn write_site(&mut self, site: &LoadedSite) -> Result<(), StorageError>;

    /// The site's file as stored now, when the storage can hold a newer version than
    /// the one served (a fleet: another node changed it) and now does; the backend then
    /// takes it as the version a write is guarded against. `None` for a directory, whose
    /// files are the storage.
    fn newest(&mut self, site: &LoadedSite) -> Result<Option<String>, StorageError>;

    /// True unless a newer version of the site file `name` than `revision` is known:
    /// a change from elsewhere that was overtaken is not served.
    fn is_latest(&self, name: &str, revision: i64) -> bool;

    /// Records that `site`, stored elsewhere as `text` at `revision` (another fleet
    /// node's change, already in the files), is now served: not an edit to reload.
    fn adopted(&mut self, site: &LoadedSite, text: &str, revision: i64);
}

/// What [`Backend::poll`] found.
pub(super) enum Polled<R> {
    /// Nothing changed since the last look.
    Unchanged,
    /// Something changed: a reload reads it all, and serves this revision.
    Changed(R),
    /// Site files another fleet node changed, stored here but not applied yet: the
    /// writer applies each as that node's change, then polls again.
    Stored(Vec<Stored>),
}

/// Why the storage refused or failed a change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error(
        "{} was edited on disk and is not loaded yet; retry once it is reloaded (or fix or revert the edit): lbdns will not overwrite a hand edit",
        path.display()
    )]
    SiteEdited { path: PathBuf },
    #[error(
        "{} was edited on disk and is not loaded yet; retry once it is reloaded (or fix or revert the edit)",
        path.display()
    )]
    ZoneEdited { path: PathBuf },
    #[error(
        "cannot read the site's zone file {}: {source}; restore it before changing the site: lbdns does not change a configuration that would not start",
        path.display()
    )]
    ZoneUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}; nothing was changed", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot render the site file: {0}")]
    Render(String),
    /// The file the change would write is past a limit of what lbdns loads.
    #[error("nothing was changed: the site file would not load after this change: {0}")]
    TooLarge(String),
    /// The file the change would write does not load back as the change meant it.
    #[error("nothing was changed: the site file as written would not load back: {0}")]
    ReadBack(String),
    /// The shared store (etcd) has a newer version than the one the change was made on.
    #[error("{0}")]
    Stale(String),
    /// The shared store (etcd) cannot be reached.
    #[error("{0}")]
    Unavailable(String),
}

impl StorageError {
    /// True when the change conflicts with the stored state (rather than failing to write).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Self::SiteEdited { .. }
                | Self::ZoneEdited { .. }
                | Self::ZoneUnreadable { .. }
                | Self::Stale(_)
        )
    }

    /// True when a newer version of the site is stored than the change was made on.
    pub fn is_stale(&self) -> bool {
        matches!(self, Self::Stale(_))
    }
}

/// A served directory: `zones/*.zone` and `zones/*.lb.yaml`, written atomically.
pub(super) struct Files {
    sources: Sources,
    /// What the files held when last read or written, to tell edits from our own writes.
    seen: Fingerprint,
    /// What the files held for the configuration being served: a site file that differs
    /// from this was edited by hand, and the API will not overwrite that edit.
    served: Fingerprint,
    /// What a written site file must load within: the loader's own limits.
    pub(super) limits: Limits,
}

impl Files {
    /// The directory of `sources`, as it is before the first load (which must follow).
    pub fn open(sources: Sources) -> Self {
        persist::remove_stale_temp_files(&sources.zones_dir());
        let seen = Fingerprint::read(&sources);
        Self {
            sources,
            served: seen.clone(),
            seen,
            limits: Limits::default(),
        }
    }
}

impl Files {
    /// True when `site`'s file still holds what was served: no edit since.
    pub(super) fn site_unchanged(&self, site: &LoadedSite) -> bool {
        match self.served.files.get(&site.path) {
            Some(contents) => contents.matches(&site.path).unwrap_or(false),
            // A site file that could not be read when loaded must not be readable yet.
            None => {
                crate::load::read_bounded(&site.path, crate::site::MAX_FILE_BYTES, "a site file")
                    .is_err()
            }
        }
    }

    /// The files as they are now, when they differ from what was last seen.
    pub(super) fn changed(&mut self) -> Option<Fingerprint> {
        let now = Fingerprint::read(&self.sources);
        if now == self.seen {
            return None;
        }
        self.seen = now.clone();
        Some(now)
    }

    /// Refuses a change while the site's zone file is not the one served.
    pub(super) fn zone_unchanged(&self, zone: &Path) -> Result<(), StorageError> {
        match self.served.files.get(zone).map(|c| c.matches(zone)) {
            Some(Ok(true)) => Ok(()),
            Some(Err(source)) => Err(StorageError::ZoneUnreadable {
                path: zone.to_owned(),
                source,
            }),
            Some(Ok(false)) | None => Err(StorageError::ZoneEdited {
                path: zone.to_owned(),
            }),
        }
    }

    /// The site file's text as it is to be stored, checked to load back as `site`.
    pub(super) fn render_checked(&self, site: &LoadedSite) -> Result<String, StorageError> {
        let text = render(&site.spec).map_err(StorageError::Render)?;
        read_back(&text, site, self.limits)?;
        Ok(text)
    }

    /// Records `text` as what `path` holds and serves: our own write, not an edit.
    pub(super) fn wrote(&mut self, path: &Path, text: &str) {
        self.record(path, Contents::of(text.as_bytes(), stamp(path)));
    }

    /// [`Files::wrote`] for a file another thread may have replaced since `text` was
    /// written (a fleet's mirror): compared by contents from now on, never by the
    /// metadata of a file that may hold something else.
    pub(super) fn wrote_elsewhere(&mut self, path: &Path, text: &str) {
        self.record(path, Contents::of(text.as_bytes(), None));
    }

    fn record(&mut self, path: &Path, contents: Contents) {
        self.seen.files.insert(path.to_owned(), contents);
        self.served.files.insert(path.to_owned(), contents);
    }
}

impl Backend for Files {
    type Revision = Fingerprint;

    fn poll(&mut self, _stored_first: bool) -> Polled<Fingerprint> {
        self.changed().map_or(Polled::Unchanged, Polled::Changed)
    }

    fn served(&mut self, revision: Fingerprint) {
        self.served = revision;
    }

    fn guard(&self, site: &LoadedSite, zone: &Path) -> Result<(), StorageError> {
        if !self.site_unchanged(site) {
            return Err(StorageError::SiteEdited {
                path: site.path.clone(),
            });
        }
        self.zone_unchanged(zone)
    }

    fn write_site(&mut self, site: &LoadedSite) -> Result<(), StorageError> {
        let text = self.render_checked(site)?;
        persist::write_atomically(&site.path, text.as_bytes()).map_err(|source| {
            StorageError::Write {
                path: site.path.clone(),
                source,
            }
        })?;
        self.wrote(&site.path, &text);
        Ok(())
    }

    fn newest(&mut self, _site: &LoadedSite) -> Result<Option<String>, StorageError> {
        Ok(None)
    }

    fn is_latest(&self, _name: &str, _revision: i64) -> bool {
        true
    }

    fn adopted(&mut self, site: &LoadedSite, text: &str, _revision: i64) {
        self.wrote(&site.path, text);
    }
}

/// Checks that `text`, about to be stored for `site`, reads back as `site` within the
/// loader's own limits: a write is acknowledged only if the server could start from it.
/// Parsing back to the very spec the change validated stands for validating it again
/// (validation depends on the spec alone), which would double the cost of a write to a
/// site of 100,000 tasks.
fn read_back(text: &str, site: &LoadedSite, limits: Limits) -> Result<(), StorageError> {
    match crate::site::parse_within(&site.path, text, limits) {
        Ok(spec) if spec == site.spec => Ok(()),
        Ok(_) => Err(StorageError::ReadBack(format!(
            "{} would read back different from the change (a bug in lbdns's writer: please report it)",
            site.path.display()
        ))),
        Err(error) if error.is_limit() => Err(StorageError::TooLarge(error.to_string())),
        Err(error) => Err(StorageError::ReadBack(error.to_string())),
    }
}

/// The YAML written to a site file.
pub(super) fn render(spec: &SiteSpec) -> Result<String, String> {
    let body = serde_saphyr::to_string(spec).map_err(|e| e.to_string())?;
    Ok(format!(
        "# lbdns site file: edit it by hand or through the API; an API change rewrites it in this form, without comments.\n{body}"
    ))
}

/// The contents of every file a reload reads, to tell an edit from our own write.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Fingerprint {
    files: BTreeMap<PathBuf, Contents>,
    /// The GeoIP file is large: its path, length and modification time stand for it.
    geoip: Option<(PathBuf, u64, Option<std::time::SystemTime>)>,
}

/// A file's contents, as a SHA-256 digest: a zone file can be large, and keeping its
/// bytes to compare doubled what a big zone costs in memory.
#[derive(Clone, Copy, Debug)]
struct Contents {
    digest: [u8; 32],
    /// Inode, length, modification and change times when read: a file whose metadata
    /// is the same was not written since, so a check need not read it again.
    stamp: Option<Stamp>,
}

type Stamp = (u64, u64, u64, i64, i64, i64, i64);

/// The same contents, whatever the metadata says.
impl PartialEq for Contents {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl Eq for Contents {}

impl Contents {
    fn of(bytes: &[u8], stamp: Option<Stamp>) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        Self {
            digest: digest.as_ref().try_into().expect("SHA-256 is 32 bytes"),
            stamp,
        }
    }

    fn read(path: &Path) -> std::io::Result<Self> {
        let stamp = stamp(path);
        // Not a FIFO or /dev/zero: the load that follows refuses those with a message.
        let bytes = crate::load::read_bounded(path, crate::zone::MAX_FILE_BYTES, "a zone file")?;
        Ok(Self::of(&bytes, stamp))
    }

    /// True when the file at `path` still holds these contents.
    fn matches(&self, path: &Path) -> std::io::Result<bool> {
        if self.stamp.is_some() && self.stamp == stamp(path) {
            return Ok(true);
        }
        Ok(Self::read(path)?.digest == self.digest)
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ))
}

impl Fingerprint {
    fn read(sources: &Sources) -> Self {
        let mut files = BTreeMap::new();
        // secondary/: the transferred copies of secondary zones (SPEC §13).
        for dir in [sources.zones_dir(), sources.dir.join("secondary")] {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                if (name.ends_with(".zone") || name.ends_with(".lb.yaml"))
                    && let Ok(contents) = Contents::read(&path)
                {
                    files.insert(path, contents);
                }
            }
        }
        // keys/<origin>/lifecycle.yaml: `lbdns keys` changed a zone's keys, which SIGHUP
        // then serves.
        if let Ok(entries) = std::fs::read_dir(sources.dir.join("keys")) {
            for entry in entries.flatten() {
                let path = crate::dnssec::keystate::path(&entry.path());
                if let Ok(contents) = Contents::read(&path) {
                    files.insert(path, contents);
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
