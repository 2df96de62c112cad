//! Reading a served directory (SPEC §2) into a [`Snapshot`].
//!
//! ```text
//! zones/<origin>.zone       a zone file per site
//! zones/<origin>.lb.yaml    the site's origin groups and tasks (optional)
//! geoip/*.mmdb              the GeoIP database (or --geoip FILE)
//! ```
//!
//! Every problem in the directory is collected, not just the first, so `lbdns check`
//! shows them all at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hickory_proto::rr::Name;

use crate::geoip::GeoIp;
use crate::site::{self, Site};
use crate::snapshot::Snapshot;
use crate::zone::{self, Zone};

/// Where the configuration comes from.
#[derive(Clone, Debug)]
pub struct Sources {
    /// The served directory, holding `zones/` and `geoip/`.
    pub dir: PathBuf,
    /// A GeoIP database given explicitly, instead of the first `geoip/*.mmdb`.
    pub geoip: Option<PathBuf>,
}

impl Sources {
    pub fn zones_dir(&self) -> PathBuf {
        self.dir.join("zones")
    }
}

/// A loaded configuration and what it holds, for the log.
pub struct Loaded {
    pub snapshot: Snapshot,
    pub zones: usize,
    pub tasks: usize,
    pub effective_tasks: usize,
    pub geoip: Option<PathBuf>,
}

/// Everything wrong with a directory, one `file:line: message` (or `file: message`) each.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct LoadError(pub Vec<String>);

/// Loads and compiles everything under `sources`.
pub fn load(sources: &Sources) -> Result<Loaded, LoadError> {
    let mut errors = Vec::new();
    let zones_dir = sources.zones_dir();
    let (zone_files, site_files) = match list_zone_dir(&zones_dir) {
        Ok(files) => files,
        Err(e) => return Err(LoadError(vec![e])),
    };
    if zone_files.is_empty() {
        errors.push(format!(
            "{}: no zone files (*.zone) to serve",
            zones_dir.display()
        ));
    }
    let mut zones: Vec<Zone> = Vec::new();
    for (origin, path) in &zone_files {
        match zone::load(path, origin) {
            Ok(zone) => zones.push(zone),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let mut sites: Vec<Site> = Vec::new();
    for (origin, path) in &site_files {
        if !zone_files.iter().any(|(o, _)| o == origin) {
            errors.push(format!(
                "{}: there is no zone file {}.zone for this site",
                path.display(),
                origin.to_string().trim_end_matches('.')
            ));
            continue;
        }
        match site::load(path, origin) {
            Ok(site) => sites.push(site),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let geoip_path = match &sources.geoip {
        Some(path) => Some(path.clone()),
        None => first_mmdb(&sources.dir.join("geoip")),
    };
    let geoip = match &geoip_path {
        Some(path) => match GeoIp::open(path) {
            Ok(db) => Some(Arc::new(db)),
            Err(e) => {
                errors.push(e.to_string());
                None
            }
        },
        None => None,
    };
    if geoip.is_none() && geoip_path.is_none() {
        for site in &sites {
            if let Some(task) = site.tasks.iter().find(|t| uses_geoip(site, t)) {
                errors.push(format!(
                    "task {} of site {} routes by country or continent, which needs a GeoIP database: put one in geoip/ or pass --geoip FILE",
                    task.id, site.origin
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(LoadError(errors));
    }
    let tasks = sites.iter().map(|s| s.tasks.len()).sum();
    let effective_tasks = sites
        .iter()
        .flat_map(|s| &s.tasks)
        .filter(|t| t.enabled)
        .count();
    let zone_count = zones.len();
    let snapshot = Snapshot::compile(zones, &sites, geoip).map_err(|errors| {
        LoadError(
            errors
                .into_iter()
                .map(|e| {
                    let origin = e.origin.to_string();
                    let path = zones_dir.join(format!("{}.lb.yaml", origin.trim_end_matches('.')));
                    match e.line {
                        Some(line) => format!("{}:{line}: {}", path.display(), e.message),
                        None => format!("{}: {}", path.display(), e.message),
                    }
                })
                .collect(),
        )
    })?;
    Ok(Loaded {
        snapshot,
        zones: zone_count,
        tasks,
        effective_tasks,
        geoip: geoip_path,
    })
}

fn uses_geoip(site: &Site, task: &site::Task) -> bool {
    site.group(&task.origin_group).is_some_and(|g| {
        g.origins
            .iter()
            .any(|o| !o.countries.is_empty() || !o.continents.is_empty())
    })
}

type Files = Vec<(Name, PathBuf)>;

/// Zone files and site files in `dir`, each with the origin its file name gives.
fn list_zone_dir(dir: &Path) -> Result<(Files, Files), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("{}: cannot read: {e}", dir.display()))?;
    let (mut zones, mut sites) = (Vec::new(), Vec::new());
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let (stem, list) = if let Some(stem) = file.strip_suffix(".lb.yaml") {
            (stem, &mut sites)
        } else if let Some(stem) = file.strip_suffix(".zone") {
            (stem, &mut zones)
        } else {
            continue;
        };
        let origin = Name::from_ascii(format!("{}.", stem.trim_end_matches('.'))).map_err(|e| {
            format!(
                "{}: the file name is not a zone origin: {e}",
                path.display()
            )
        })?;
        list.push((origin.to_lowercase(), path));
    }
    zones.sort_by(|a, b| a.1.cmp(&b.1));
    sites.sort_by(|a, b| a.1.cmp(&b.1));
    Ok((zones, sites))
}

/// The first `*.mmdb` in `dir` by name, if any.
fn first_mmdb(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "mmdb"))
        .collect();
    found.sort();
    found.into_iter().next()
}
