//! Reading a served directory (SPEC §2).
//!
//! ```text
//! zones/<origin>.zone       a zone file per site
//! zones/<origin>.lb.yaml    the site's origin groups and tasks (optional)
//! secondary/<origin>.zone   the transferred copy of a zone whose site has `primary:`
//! geoip/*.mmdb              the GeoIP database (or --geoip FILE)
//! geoip/*ASN*.mmdb          the ASN database (or --asn-db FILE)
//! ```
//!
//! Every problem in the directory is collected, not just the first, so `lbdns check`
//! shows them all at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hickory_proto::rr::Name;

use crate::dnssec::key::unix_now;
use crate::dnssec::lifecycle::{self, Apex, Timing};
use crate::dnssec::{keydir, sign};
use crate::geoip::GeoIp;
use crate::health::Health;
use crate::site::dnssec::DnssecPolicy;
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
    /// An ASN database given explicitly, instead of the first `geoip/*ASN*.mmdb`.
    pub asn_db: Option<PathBuf>,
}

impl Sources {
    pub fn zones_dir(&self) -> PathBuf {
        self.dir.join("zones")
    }

    /// The GeoIP file in use: `--geoip`, else the first `geoip/*.mmdb` by name that is
    /// not an ASN database.
    pub fn geoip_path(&self) -> Option<PathBuf> {
        self.geoip
            .clone()
            .or_else(|| first_mmdb(&self.dir.join("geoip"), false))
    }

    /// The ASN database in use: `--asn-db`, else the first `*ASN*.mmdb` by name beside
    /// the GeoIP database (MaxMind names it GeoLite2-ASN.mmdb), else in `geoip/`.
    pub fn asn_path(&self) -> Option<PathBuf> {
        let beside = self
            .geoip_path()
            .and_then(|p| p.parent().map(Path::to_owned));
        self.asn_db.clone().or_else(|| {
            beside
                .and_then(|dir| first_mmdb(&dir, true))
                .or_else(|| first_mmdb(&self.dir.join("geoip"), true))
        })
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
    /// How each signed zone is signed, a line each, as `lbdns check` prints it.
    pub fn signing(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for zone in self.zones.iter() {
            let name = site::site_name(&zone.origin);
            let policy = self
                .sites
                .iter()
                .find(|s| s.site.origin == zone.origin)
                .and_then(|s| s.site.dnssec.as_ref());
            if let Some(policy) = policy {
                lines.push(format!("{name}: signed by lbdns: {policy}"));
                continue;
            }
            let Some(signed) = zone.signed() else {
                continue;
            };
            let denial = match signed.nsec3_params() {
                Some(params) => format!(
                    "nsec3 ({} extra iterations, salt {})",
                    params.iterations,
                    match params.salt.is_empty() {
                        true => "none".to_owned(),
                        false => data_encoding::HEXUPPER.encode(&params.salt),
                    }
                ),
                None => "nsec".to_owned(),
            };
            let tasks = match (&zone.signer, signed.opt_out()) {
                (Some(_), _) => "its tasks signed with the imported ZSK",
                (None, false) => "no task until its ZSK is imported (lbdns keys import)",
                (None, true) => "no task (lbdns adds no task name to an opt-out NSEC3 chain)",
            };
            lines.push(format!(
                "{name}: signed elsewhere, denial {denial}; {tasks}"
            ));
        }
        lines
    }

    pub fn task_counts(&self) -> (usize, usize) {
        let tasks = self.sites.iter().flat_map(|s| &s.site.tasks);
        let enabled = tasks.clone().filter(|t| t.enabled).count();
        (tasks.count(), enabled)
    }
}

/// Everything wrong with a directory, one `file:line: message` (or `file: message`) each.
/// Shown with every quoted token cut to [`MAX_QUOTE`] characters: a 50 MB token in a zone
/// file is not copied whole into the log and `/healthz`.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(|line| shorten_tokens(line)).collect::<Vec<_>>().join("\n"))]
pub struct LoadError(pub Vec<String>);

/// The most characters of one token an error message quotes.
pub const MAX_QUOTE: usize = 100;

/// `line` with each whitespace-separated word after the first (the `file:line:` it starts
/// with) longer than [`MAX_QUOTE`] characters cut to that many, saying how long it was.
pub fn shorten_tokens(line: &str) -> std::borrow::Cow<'_, str> {
    let long = |word: &&str| word.chars().nth(MAX_QUOTE).is_some();
    if !line.split_whitespace().skip(1).any(|w| long(&w)) {
        return line.into();
    }
    let mut out = String::new();
    let mut rest = line;
    let mut first = true;
    while !rest.is_empty() {
        let space = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..space]);
        rest = &rest[space..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..end];
        match (first, long(&word)) {
            (false, true) => {
                let cut = word
                    .char_indices()
                    .nth(MAX_QUOTE)
                    .map_or(word.len(), |(i, _)| i);
                out.push_str(&word[..cut]);
                out.push_str(&format!("[… {} bytes in all]", word.len()));
            }
            _ => out.push_str(word),
        }
        first = first && word.is_empty();
        rest = &rest[end..];
    }
    out.into()
}

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
    // The keys `secondaries:` entries name, which their requests are checked with.
    let mut keys = Vec::new();
    for (origin, path) in &site_files {
        match site::load(path, origin) {
            Ok((spec, site)) => {
                for secondary in &site.secondaries {
                    let Some(name) = &secondary.tsig else {
                        continue;
                    };
                    match crate::tsig::Key::load(&sources.dir, name) {
                        Ok(key) => keys.push((name.clone(), key)),
                        Err(e) => errors.push(format!("{}: secondaries: {e}", path.display())),
                    }
                }
                if let Some(primary) = &spec.primary {
                    if let Some(name) = &primary.tsig
                        && let Err(e) = crate::tsig::Key::load(&sources.dir, name)
                    {
                        errors.push(format!("{}: primary.tsig: {e}", path.display()));
                    }
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
            "{}: no zone files (*.zone) to serve; {LAYOUT}",
            zones_dir.display()
        ));
    }
    let mut zones = Vec::new();
    for (origin, path) in &zone_files {
        let policy = loaded_sites
            .get(origin)
            .and_then(|(_, site): &(SiteSpec, Site)| site.dnssec.as_ref());
        if let Some(policy) = policy {
            match signed(sources, origin, path, policy) {
                Ok(zone) => zones.push(zone),
                Err(e) => errors.push(e),
            }
            continue;
        }
        // A zone signed elsewhere compiled before its ZSK was imported is read again, to
        // take the key.
        if let Some(zone) = compiled_before(path, origin)
            .filter(|zone| zone.signer.is_some() || imported_zsk(sources, zone).is_none())
        {
            zones.push(zone);
            continue;
        }
        let stamp = file_stamp(path);
        match compile(path, origin) {
            Ok(zone) => {
                let mut zone = zone;
                if let Some(zsk) = imported_zsk(sources, &zone) {
                    tracing::info!(
                        "zone {}: signed elsewhere; its tasks are signed with the imported ZSK {}",
                        zone.origin,
                        zsk.key_tag()
                    );
                    // The TTL the file's NSECs have.
                    let nsec_ttl = zone
                        .node(&zone.apex)
                        .and_then(|apex| apex.rrset(crate::wire::rtype::NSEC))
                        .unwrap_or(&zone.negative_soa);
                    let nsec_ttl = u32::from_be_bytes(nsec_ttl[4..8].try_into().expect("4 bytes"));
                    let validity = signature_span(&zone)
                        .unwrap_or_else(|| DnssecPolicy::default().signature_validity.as_secs());
                    zone.signer = Some(crate::dnssec::sign::RrsetSigner::new(
                        zsk,
                        zone.apex.clone(),
                        validity,
                        nsec_ttl,
                        false,
                    ));
                }
                let zone = Arc::new(zone);
                remember(path, stamp, &zone);
                zones.push(zone);
            }
            Err(e) => errors.push(e),
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
                    dnssec: None,
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
    let asn_path = sources.asn_path();
    let geoip = match GeoIp::open_files(
        geoip_path.as_deref(),
        asn_path.as_deref(),
        previous.as_deref(),
    ) {
        // An unchanged database is not read and checked again on every reload.
        Ok(db)
            if db
                .as_ref()
                .is_some_and(|db| previous.as_ref().is_some_and(|p| db.same_files(p))) =>
        {
            previous
        }
        Ok(db) => db.map(Arc::new),
        Err(problems) => {
            errors.extend(problems.iter().map(|e| e.to_string()));
            None
        }
    };
    let (has_country, has_asn) = geoip
        .as_ref()
        .map_or((false, false), |db| (db.has_country(), db.has_asn()));
    for loaded in &sites {
        for task in &loaded.site.tasks {
            let (countries, asns) = region_keys(&loaded.site, task);
            let line = task.line.map(|l| format!(":{l}")).unwrap_or_default();
            if countries && !has_country && geoip_path.is_none() {
                errors.push(format!(
                    "{}{line}: task {} routes by country or continent, which needs a GeoIP database: put one in geoip/ or pass --geoip FILE",
                    loaded.path.display(),
                    task.id
                ));
            }
            if asns && !has_asn && asn_path.is_none() {
                errors.push(format!(
                    "{}{line}: task {} routes by autonomous system (asns), which needs an ASN database: put a GeoLite2-ASN.mmdb in geoip/ or pass --asn-db FILE",
                    loaded.path.display(),
                    task.id
                ));
            }
        }
    }
    let config = Config {
        zones: Arc::new(zones),
        primaries,
        sites,
        geoip,
        geoip_path,
    };
    // Compile what did load even when something else did not, so every problem shows.
    match config.compile(health) {
        Ok(snapshot) if errors.is_empty() => {
            crate::tsig::set_ring(keys);
            Ok((config, snapshot))
        }
        Ok(_) => Err(LoadError(errors)),
        Err(LoadError(more)) => {
            errors.extend(more);
            Err(LoadError(errors))
        }
    }
}

/// A file's device, inode, length, modification and change times: a file with the same
/// stamp was not written since (every writer of zone files replaces or rewrites them).
type FileStamp = (u64, u64, u64, i64, i64, i64, i64);

/// Zones compiled by earlier loads, by file: a reload (a secondary zone's new transfer,
/// SIGHUP, a file change) compiles only the zone files that changed and shares the others
/// with the configuration it replaces. Weak, so a zone no configuration serves is freed.
type Compiled = std::collections::HashMap<PathBuf, (FileStamp, std::sync::Weak<ZoneData>)>;
static COMPILED: std::sync::LazyLock<std::sync::Mutex<Compiled>> =
    std::sync::LazyLock::new(Default::default);

fn file_stamp(path: &Path) -> Option<FileStamp> {
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

/// The zone compiled from `path` by an earlier load, when the file is unchanged since and
/// the zone is still served. A file with `$INCLUDE` is always read again: the stamp does
/// not tell whether an included file changed.
fn compiled_before(path: &Path, origin: &Name) -> Option<Arc<ZoneData>> {
    let stamp = file_stamp(path)?;
    let zone = {
        let compiled = COMPILED.lock().ok()?;
        let (was, zone) = compiled.get(path)?;
        if *was != stamp {
            return None;
        }
        zone.upgrade()?
    };
    if zone.origin != *origin || has_include(path) {
        return None;
    }
    Some(zone)
}

/// The zone file at `path` compiled; its warnings logged, once per compile (a reused
/// zone is not read again). Each zone is compiled as it is read; no parsed copy of its
/// records is kept.
fn compile(path: &Path, origin: &Name) -> Result<ZoneData, String> {
    let zone = zone::load(path, origin).map_err(|e| e.to_string())?;
    for warning in &zone.warnings {
        tracing::warn!("{warning}");
    }
    Ok(zone)
}

/// A zone lbdns signed, kept with a digest of what it was signed from: a reload that
/// changes neither the zone's data, the policy nor the keys the apex uses reuses the
/// signatures until they are due for refresh. The unsigned zone itself is not kept (it
/// is signed in place), so a large zone is in memory once.
struct SignedCache {
    unsigned: sign::ZoneDigest,
    /// The zone file's stamp when it was read: while it stays the same, a reload reads
    /// the file only if the zone must be signed again.
    file: Option<(PathBuf, FileStamp)>,
    policy: DnssecPolicy,
    timing: Timing,
    apex: Apex,
    signed: Arc<ZoneData>,
    signatures: usize,
    earliest_expiry: u64,
    refresh_at: u64,
    /// The next event of the zone's keys, on the lifecycle's clock.
    next_key_event: Option<u64>,
}

static SIGNED: std::sync::LazyLock<std::sync::Mutex<HashMap<Name, SignedCache>>> =
    std::sync::LazyLock::new(Default::default);

/// A zone lbdns signs, as the server reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningStatus {
    pub zone: Name,
    /// When its first signature expires (seconds since the Unix epoch).
    pub earliest_expiry: u64,
    /// When its keys next change (on the lifecycle's clock), if anything is scheduled.
    pub next_key_event: Option<u64>,
    /// When it is due to be signed again.
    pub refresh_at: u64,
}

/// An RRSIG that expires within this many seconds, past the time the zone should have
/// been signed again, is a problem: the zone is about to fail validation.
const EXPIRY_WARNING: u64 = 86_400;

impl SigningStatus {
    /// What is wrong at `now` (on the lifecycle's clock): signatures that expire within a
    /// day although they should have been made again by then.
    pub fn warning(&self, now: u64) -> Option<String> {
        if now < self.refresh_at || self.earliest_expiry > now + EXPIRY_WARNING {
            return None;
        }
        let at = crate::dnssec::lifecycle::rfc3339(self.earliest_expiry);
        Some(if self.earliest_expiry <= now {
            format!(
                "zone {}: an RRSIG expired at {at}: validating resolvers answer SERVFAIL; signing again failed (see the log)",
                self.zone
            )
        } else {
            format!(
                "zone {}: an RRSIG expires at {at}, within a day, and the zone was not signed again (see the log)",
                self.zone
            )
        })
    }
}

/// The zones lbdns signs and serves, by name.
pub fn signing_status() -> Vec<SigningStatus> {
    let cache = SIGNED.lock().unwrap_or_else(|e| e.into_inner());
    let mut zones: Vec<SigningStatus> = cache
        .iter()
        .filter(|(_, c)| Arc::strong_count(&c.signed) > 1)
        .map(|(zone, c)| SigningStatus {
            zone: zone.clone(),
            earliest_expiry: c.earliest_expiry,
            next_key_event: c.next_key_event,
            refresh_at: c.refresh_at,
        })
        .collect();
    zones.sort_by(|a, b| a.zone.cmp(&b.zone));
    zones
}

/// Seconds until a signed zone must be signed again: its signatures or its tasks' due for
/// refresh (on the real clock, which validators check signatures by) or its keys' next
/// event (on the lifecycle's clock). `None` when lbdns signs nothing.
pub fn next_signing_due() -> Option<u64> {
    let (real, keys) = (unix_now(), lifecycle::now());
    let cache = SIGNED.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .values()
        .filter(|c| Arc::strong_count(&c.signed) > 1)
        .flat_map(|c| {
            let refresh = c.refresh_at.saturating_sub(real);
            let event = c.next_key_event.map(|at| at.saturating_sub(keys));
            std::iter::once(refresh).chain(event)
        })
        // The signatures of task answers (in a zone signed elsewhere, the only ones).
        .chain(crate::dnssec::sign::next_task_refresh().map(|at| at.saturating_sub(real)))
        .min()
}

/// How long the signer of a zone signed elsewhere makes its signatures valid (expiration
/// less inception of the apex SOA's RRSIG): task answers signed with the imported ZSK get
/// the same span, so they are replayable no longer than the zone's own data.
fn signature_span(zone: &ZoneData) -> Option<u64> {
    let rrsig = zone
        .node(&zone.apex)?
        .signatures(crate::wire::rtype::SOA)
        .next()?;
    let field = |at: usize| Some(u32::from_be_bytes(rrsig.get(at..at + 4)?.try_into().ok()?));
    // RDATA (from byte 10): covered, algorithm, labels, original TTL, then the expiration
    // and inception, compared in serial number arithmetic (RFC 4034 §3.1.5).
    let span = field(18)?.wrapping_sub(field(22)?);
    (span > 0 && span < 1 << 31).then_some(u64::from(span))
}

/// The ZSK imported (`lbdns keys import`) for `zone`, signed elsewhere with an NSEC chain
/// or an NSEC3 chain without opt-out: a key of `keys/<origin>/`, private part included,
/// whose DNSKEY the zone publishes. Its tasks' answers are signed with it; without one,
/// its tasks are refused.
fn imported_zsk(sources: &Sources, zone: &ZoneData) -> Option<crate::dnssec::key::ZoneKey> {
    if zone.signed()?.opt_out() {
        return None;
    }
    let dnskeys = zone.node(&zone.apex)?.rrset(crate::dnssec::rtype::DNSKEY)?;
    let dir = sources.dir.join("keys").join(site::site_name(&zone.origin));
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "key"))
        .filter_map(|path| crate::dnssec::key::ZoneKey::read_files(&path).ok())
        .find(|key| {
            !key.is_ksk()
                && crate::wire::Records(dnskeys).any(|r| r[10..] == key.dnskey_rdata()[..])
        })
}

/// The zone file at `path` signed as `policy` says with its keys in `keys/<origin>/`,
/// after the keys' steps due now ([`keydir::open_and_advance`]: keys made at the first
/// load, rollovers).
fn signed(
    sources: &Sources,
    origin: &Name,
    path: &Path,
    policy: &DnssecPolicy,
) -> Result<Arc<ZoneData>, String> {
    let key_path = crate::keys::key_dir(&sources.dir, origin);
    let now = lifecycle::now();
    let in_zone = |e: &dyn std::fmt::Display| format!("zone {origin}: {e}");
    let mut cache = SIGNED.lock().unwrap_or_else(|e| e.into_inner());
    // Taken before the file is read: a write meanwhile changes it, and the next reload
    // reads the file again. A file with `$INCLUDE` is always read again.
    let file = file_stamp(path)
        .filter(|_| !has_include(path))
        .map(|stamp| (path.to_owned(), stamp));
    let unchanged = cache
        .get(origin)
        .filter(|c| c.policy == *policy && file.is_some() && c.file == file);
    let mut zone = match unchanged {
        Some(_) => None,
        None => Some(compile(path, origin)?),
    };
    let digest = match (&zone, unchanged) {
        (Some(zone), _) => sign::ZoneDigest::of(zone),
        (None, cached) => cached.expect("an unchanged file is cached").unsigned,
    };
    let cached = cache
        .get(origin)
        .filter(|c| c.unsigned == digest && c.policy == *policy);
    let timing = match (cached, &zone) {
        (Some(cached), _) => cached.timing,
        (None, Some(zone)) => sign::key_timing(zone, policy),
        (None, None) => unreachable!("a zone not cached was compiled"),
    };
    let (dir, keys) = keydir::open_and_advance(
        &key_path,
        &origin.to_ascii(),
        policy.algorithm,
        &timing,
        now,
    )
    .map_err(|e| in_zone(&e))?;
    drop(dir);
    let apex = keys.lifecycle.apex(now);
    let next_key_event = keys.lifecycle.next_change(now, &timing);
    let real_now = unix_now();
    if let Some(cached) = cache.get_mut(origin)
        && cached.unsigned == digest
        && cached.policy == *policy
        && cached.apex == apex
        && real_now < cached.refresh_at
    {
        cached.next_key_event = next_key_event;
        cached.file = file;
        sign::SIGNATURES_REUSED.inc_by(cached.signatures as u64);
        return Ok(cached.signed.clone());
    }
    let zone = match zone.take() {
        Some(zone) => zone,
        None => compile(path, origin)?,
    };
    let made = sign::sign_zone(zone, keys, &apex, policy, real_now).map_err(|e| in_zone(&e))?;
    sign::SIGNATURES_MADE.inc_by(made.signatures as u64);
    tracing::info!(
        "zone {}: signed, {} signatures (DNSKEY {:?}, signed by KSK {:?}; ZSK {}; CDS {}), earliest expiry {}",
        origin,
        made.signatures,
        apex.dnskey,
        apex.dnskey_signers,
        apex.zone_signer
            .map_or("none".to_owned(), |t| t.to_string()),
        apex.cds.map_or("none".to_owned(), |t| t.to_string()),
        crate::dnssec::key::timestamp(made.earliest_expiry)
    );
    let signed = Arc::new(made.zone);
    cache.insert(
        origin.clone(),
        SignedCache {
            unsigned: digest,
            file,
            policy: policy.clone(),
            timing,
            apex,
            signed: signed.clone(),
            signatures: made.signatures,
            earliest_expiry: made.earliest_expiry,
            refresh_at: made.refresh_at,
            next_key_event,
        },
    );
    Ok(signed)
}

fn remember(path: &Path, stamp: Option<FileStamp>, zone: &Arc<ZoneData>) {
    let (Some(stamp), Ok(mut compiled)) = (stamp, COMPILED.lock()) else {
        return;
    };
    // Entries of zones no longer served go when the next zone is remembered.
    compiled.retain(|_, (_, zone)| zone.strong_count() > 0);
    compiled.insert(path.to_owned(), (stamp, Arc::downgrade(zone)));
}

/// True when the file at `path` holds a `$INCLUDE` directive (or cannot be read).
fn has_include(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return true;
    };
    bytes.iter().enumerate().any(|(i, b)| {
        *b == b'$'
            && bytes
                .get(i + 1..i + 8)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"include"))
    })
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

/// Whether a task routes by country or continent, and whether by ASN: a fallback group
/// routes by region as much as the task's own.
fn region_keys(site: &Site, task: &site::Task) -> (bool, bool) {
    let Some(group) = site.group(&task.origin_group) else {
        return (false, false);
    };
    let origins = || site.chain(group).into_iter().flat_map(|g| &g.origins);
    (
        origins().any(|o| !o.countries.is_empty() || !o.continents.is_empty()),
        origins().any(|o| !o.asns.is_empty()),
    )
}

type Files = Vec<(Name, PathBuf)>;

/// What a served directory holds, for the errors about one that does not.
const LAYOUT: &str = "a served directory (--dir DIR) holds DIR/zones/<origin>.zone, an RFC 1035 zone file, and optionally DIR/zones/<origin>.lb.yaml, its origin groups and tasks";

/// Zone files and site files in `dir`, each with the origin its file name gives.
fn list_zone_dir(dir: &Path) -> Result<(Files, Files), String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: cannot read: {e}; {LAYOUT}", dir.display()))?;
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
        } else if let Some(stem) = file.strip_suffix(".lb.yml") {
            // Not read, and not silently ignored either: the API writes `.lb.yaml`.
            return Err(format!(
                "{}: a site file is named {stem}.lb.yaml (with .yaml): rename it",
                path.display()
            ));
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

/// Reads a configuration file whole, refusing what is not a regular file (a FIFO would
/// block, `/dev/zero` never ends) and what is larger than `limit` bytes (`what` names the
/// kind of file in the message). Refusals are errors of kind `InvalidData` whose message
/// says why and what to do.
pub fn read_bounded(path: &Path, limit: u64, what: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking, so opening a FIFO with no writer returns at once (no effect on files).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    let refuse = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidData, message);
    if !meta.is_file() {
        return Err(refuse(format!(
            "{} is {}, not a regular file; {what} must be a plain file (or a symlink to one)",
            path.display(),
            file_kind(&meta)
        )));
    }
    let advice = match what {
        "a site file" => "; remove the tasks and origin groups the site no longer needs",
        "a zone file" => {
            "; split the zone into files joined by $INCLUDE, each read up to that size"
        }
        _ => "",
    };
    let too_large = |size: u64| {
        refuse(format!(
            "{} is {size} bytes, over the {} MiB lbdns reads from {what}{advice}",
            path.display(),
            limit >> 20
        ))
    };
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    // Bounded even when the file grows while it is read.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// What a file that is not a regular file is, in an operator's words.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// The first `*.mmdb` in `dir` by name whose name has `ASN` in it (`asn`) or not.
fn first_mmdb(dir: &Path, asn: bool) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "mmdb"))
        .filter(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.contains("ASN"))
                == asn
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthz_warns_of_signatures_that_expire_within_a_day_and_were_not_made_again() {
        const DAY: u64 = 86_400;
        let t0 = 1_800_000_000;
        let zone = SigningStatus {
            zone: Name::from_ascii("example.com.").unwrap(),
            earliest_expiry: t0 + 14 * DAY,
            next_key_event: None,
            refresh_at: t0 + 10 * DAY,
        };
        assert_eq!(zone.warning(t0), None);
        assert_eq!(zone.warning(t0 + 13 * DAY - 1), None);
        let warning = zone.warning(t0 + 13 * DAY).unwrap();
        assert!(
            warning.starts_with(
                "zone example.com.: an RRSIG expires at 2027-01-29T08:00:00Z, within a day"
            ),
            "{warning}"
        );
        let expired = zone.warning(t0 + 14 * DAY).unwrap();
        assert!(
            expired.contains("expired at 2027-01-29T08:00:00Z"),
            "{expired}"
        );
        // Signatures valid for less than three days are made again with less than a day
        // left: no warning until that is overdue.
        let short = SigningStatus {
            earliest_expiry: t0 + 2 * DAY,
            refresh_at: t0 + DAY + DAY / 3,
            ..zone
        };
        assert_eq!(short.warning(t0 + DAY + 1), None);
        assert!(short.warning(t0 + DAY + DAY / 3).is_some());
    }

    #[test]
    fn long_tokens_are_cut_and_the_location_is_kept() {
        let token = "x".repeat(5_000_000);
        let line = format!("zones/a.zone:3: bad address \"{token}\": not an IP");
        let shown = LoadError(vec![line, "zones/b.zone:1: short".into()]).to_string();
        let want = format!(
            "zones/a.zone:3: bad address \"{}[… 5000003 bytes in all] not an IP\nzones/b.zone:1: short",
            "x".repeat(99)
        );
        assert_eq!(shown, want);
    }

    fn zone(origin: &str, serial: u32, extra: &str) -> String {
        format!(
            "$ORIGIN {origin}.\n@ 3600 IN SOA ns hm {serial} 3600 600 86400 300\n@ NS ns\nns A 192.0.2.1\n{extra}"
        )
    }

    #[test]
    fn a_reload_compiles_only_the_zone_files_that_changed() {
        let dir = tempfile::tempdir().unwrap();
        let zones = dir.path().join("zones");
        std::fs::create_dir(&zones).unwrap();
        std::fs::write(zones.join("a.test.zone"), zone("a.test", 1, "")).unwrap();
        std::fs::write(zones.join("b.test.zone"), zone("b.test", 1, "")).unwrap();
        std::fs::write(zones.join("inc.txt"), "www A 192.0.2.2\n").unwrap();
        let include = format!("$INCLUDE {}\n", zones.join("inc.txt").display());
        std::fs::write(zones.join("c.test.zone"), zone("c.test", 1, &include)).unwrap();
        let sources = Sources {
            dir: dir.path().to_owned(),
            geoip: None,
            asn_db: None,
        };
        let health = Health::default();
        let (first, _) = load(&sources, &health, None).unwrap();
        let b = zone("b.test", 2, "");
        crate::persist::write_atomically(&zones.join("b.test.zone"), b.as_bytes()).unwrap();
        std::fs::write(zones.join("inc.txt"), "www A 192.0.2.3\n").unwrap();
        let (second, _) = load(&sources, &health, None).unwrap();
        let find = |config: &Config, name: &str| {
            config
                .zones
                .iter()
                .find(|z| z.origin == Name::from_ascii(name).unwrap())
                .unwrap()
                .clone()
        };
        let same = |name| Arc::ptr_eq(&find(&first, name), &find(&second, name));
        assert!(
            same("a.test."),
            "an unchanged zone file is not compiled again"
        );
        assert!(!same("b.test."), "a changed zone file is");
        assert!(!same("c.test."), "so is one with $INCLUDE");
        // Nothing kept once no configuration serves the zones.
        let a = Arc::downgrade(&find(&second, "a.test."));
        drop((first, second));
        assert!(a.upgrade().is_none());
    }
}
