//! Reading a served directory (SPEC §2).
//!
//! ```text
//! zones/<origin>.zone       a zone file per site
//! zones/<origin>.lb.yaml    the site's origin groups and tasks (optional)
//! secondary/<origin>.zone   the transferred copy of a zone whose site has `primary:`
//! geoip/*.mmdb              the GeoIP database (or --geoip FILE)
//! ```
//!
//! Every problem in the directory is collected, not just the first, so `lbdns check`
//! shows them all at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hickory_proto::rr::Name;

use crate::geoip::GeoIp;
use crate::health::Health;
use crate::site::spec::PrimarySpec;
use crate::site::{self, Site, SiteSpec};
use crate::snapshot::{Snapshot, ZoneData};
use crate::zone;

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

    /// The GeoIP file in use: `--geoip`, else the first `geoip/*.mmdb` by name.
    pub fn geoip_path(&self) -> Option<PathBuf> {
        self.geoip
            .clone()
            .or_else(|| first_mmdb(&self.dir.join("geoip")))
    }
}

/// A site as loaded: its file, what the file says, and the checked model.
#[derive(Clone, Debug)]
pub struct LoadedSite {
    /// `zones/<origin>.lb.yaml`, whether or not it exists yet.
    pub path: PathBuf,
    pub spec: SiteSpec,
    pub site: Site,
}

/// A whole directory, checked: one site per zone (empty when it has no site file).
/// Cloning is cheap in the zones, which are shared: a change copies only the sites.
#[derive(Clone)]
pub struct Config {
    /// Zones compiled for answering (their parsed records are not kept).
    pub zones: Arc<Vec<Arc<ZoneData>>>,
    /// Shared with the configurations after this one: a change copies only its site.
    pub sites: Vec<Arc<LoadedSite>>,
    pub geoip: Option<Arc<GeoIp>>,
    pub geoip_path: Option<PathBuf>,
    /// Every site with `primary:`, served or still waiting for its first transfer.
    pub primaries: Vec<(Name, PrimarySpec)>,
}

impl Config {
    /// Compiles the serving snapshot; errors are `file:line: message`.
    pub fn compile(&self, health: &Health) -> Result<Snapshot, LoadError> {
        let sites: Vec<&Site> = self.sites.iter().map(|s| &s.site).collect();
        Snapshot::compile(&self.zones, &sites, self.geoip.clone(), health).map_err(|errors| {
            LoadError(
                errors
                    .into_iter()
                    .map(|e| {
                        let path = self
                            .sites
                            .iter()
                            .find(|s| s.site.origin == e.origin)
                            .map_or_else(|| PathBuf::from("?"), |s| s.path.clone());
                        match e.line {
                            Some(line) => format!("{}:{line}: {}", path.display(), e.message),
                            None => format!("{}: {}", path.display(), e.message),
                        }
                    })
                    .collect(),
            )
        })
    }

    /// Tasks in all sites, and how many of them are enabled.
    pub fn task_counts(&self) -> (usize, usize) {
        let tasks = self.sites.iter().flat_map(|s| &s.site.tasks);
        let enabled = tasks.clone().filter(|t| t.enabled).count();
        (tasks.count(), enabled)
    }
}

/// Everything wrong with a directory, one `file:line: message` (or `file: message`) each.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct LoadError(pub Vec<String>);

/// Reads and checks everything under `sources`, and compiles what it serves.
/// Health cells for checked origins come from `health`, so a reload keeps their state.
/// `previous` is the GeoIP database now in use, kept when its file has not changed.
pub fn load(
    sources: &Sources,
    health: &Health,
    previous: Option<Arc<GeoIp>>,
) -> Result<(Config, Snapshot), LoadError> {
    let mut errors = Vec::new();
    let zones_dir = sources.zones_dir();
    let (zone_files, site_files) = match list_zone_dir(&zones_dir) {
        Ok(files) => files,
        Err(e) => return Err(LoadError(vec![e])),
    };
    // Site files first: one with `primary:` takes its zone from the transferred copy in
    // secondary/ (SPEC §13), not from zones/.
    let mut loaded_sites = std::collections::HashMap::new();
    let mut primaries = Vec::new();
    for (origin, path) in &site_files {
        match site::load(path, origin) {
            Ok((spec, site)) => {
                if let Some(primary) = &spec.primary {
                    primaries.push((origin.clone(), primary.clone()));
                }
                loaded_sites.insert(origin.clone(), (spec, site));
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let mut zone_files = zone_files;
    for (origin, primary) in &primaries {
        if let Some((_, zone)) = zone_files.iter().find(|(o, _)| o == origin) {
            errors.push(format!(
                "{}: this site has primary: {:?}, and there is a zone file {} too: remove one of them",
                site_path(&zones_dir, origin).display(),
                primary.addresses,
                zone.display()
            ));
            continue;
        }
        let copy = secondary_path(&sources.dir, origin);
        if copy.exists() {
            zone_files.push((origin.clone(), copy));
        }
    }
    if zone_files.is_empty() && primaries.is_empty() {
        errors.push(format!(
            "{}: no zone files (*.zone) to serve",
            zones_dir.display()
        ));
    }
    let mut zones = Vec::new();
    for (origin, path) in &zone_files {
        // Each zone is compiled as it is read; no parsed copy of its records is kept.
        match zone::load(path, origin) {
            Ok(zone) => zones.push(Arc::new(zone)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    // By origin: with thousands of sites, searching the lists would be quadratic.
    let zone_origins: std::collections::HashSet<&Name> =
        zone_files.iter().map(|(o, _)| o).collect();
    let site_paths: std::collections::HashMap<&Name, &PathBuf> =
        site_files.iter().map(|(o, p)| (o, p)).collect();
    for (origin, path) in &site_files {
        let is_secondary = primaries.iter().any(|(o, _)| o == origin);
        if !zone_origins.contains(origin) && !is_secondary {
            errors.push(format!(
                "{}: there is no zone file {}.zone for this site",
                path.display(),
                site::site_name(origin)
            ));
        }
    }
    let mut sites = Vec::new();
    // A secondary zone with no copy yet is not served until its first transfer.
    for (origin, _) in &zone_files {
        let Some(path) = site_paths.get(origin) else {
            sites.push(Arc::new(LoadedSite {
                path: site_path(&zones_dir, origin),
                spec: SiteSpec::default(),
                site: Site {
                    origin: origin.clone(),
                    groups: Vec::new(),
                    tasks: Vec::new(),
                    secondaries: Vec::new(),
                },
            }));
            continue;
        };
        if let Some((spec, site)) = loaded_sites.remove(origin) {
            sites.push(Arc::new(LoadedSite {
                path: (*path).clone(),
                spec,
                site,
            }));
        }
    }
    let geoip_path = sources.geoip_path();
    let geoip = match &geoip_path {
        // An unchanged database is not read and checked again on every reload.
        Some(path) if previous.as_ref().is_some_and(|db| db.is_unchanged(path)) => previous,
        Some(path) => match GeoIp::open(path) {
            Ok(db) => Some(Arc::new(db)),
            Err(e) => {
                errors.push(e.to_string());
                None
            }
        },
        None => {
            for loaded in &sites {
                for task in loaded
                    .site
                    .tasks
                    .iter()
                    .filter(|t| uses_geoip(&loaded.site, t))
                {
                    let line = task.line.map(|l| format!(":{l}")).unwrap_or_default();
                    errors.push(format!(
                        "{}{line}: task {} routes by country or continent, which needs a GeoIP database: put one in geoip/ or pass --geoip FILE",
                        loaded.path.display(),
                        task.id
                    ));
                }
            }
            None
        }
    };
    let config = Config {
        zones: Arc::new(zones),
        primaries,
        sites,
        geoip,
        geoip_path,
    };
    // Compile what did load even when something else did not, so every problem shows.
    match config.compile(health) {
        Ok(snapshot) if errors.is_empty() => Ok((config, snapshot)),
        Ok(_) => Err(LoadError(errors)),
        Err(LoadError(more)) => {
            errors.extend(more);
            Err(LoadError(errors))
        }
    }
}

/// The kept copy of the secondary zone `origin`: in `secondary/`, not `zones/`, so that
/// a transfer never overwrites an operator's file and `zones/` holds only what they edit.
pub fn secondary_path(dir: &Path, origin: &Name) -> PathBuf {
    dir.join("secondary")
        .join(format!("{}.zone", site::site_name(origin)))
}

/// The site file of the zone `origin`.
pub fn site_path(zones_dir: &Path, origin: &Name) -> PathBuf {
    zones_dir.join(format!("{}.lb.yaml", site::site_name(origin)))
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
