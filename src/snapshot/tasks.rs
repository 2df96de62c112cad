//! A site's effective tasks, compiled as an overlay on its zone's data (SPEC §5).
//!
//! The overlay is small (a site's tasks and the names they make exist) and is all that a
//! task or group change rebuilds: the zone data underneath is shared, whatever its size.
//! A name an effective task answers hides the zone's A, AAAA and CNAME records there;
//! a snapshot built without the task serves them again, so restore is the next compile.
//!
//! In a signed zone whose ZSK lbdns holds (it signs the zone, or the key was imported),
//! compiling the tasks also signs every answer they can give and the NSEC or NSEC3
//! records their names need ([`super::task_signatures`]): the signatures belong to the overlay, and a
//! change signs again only the RRsets it changed.

use std::sync::Arc;

use hickory_proto::rr::RData;
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use prometheus_client::metrics::counter::Counter;

use crate::metrics::ServedCounter;

use super::CompileError;
use super::data::{NameMap, ZoneData, encode_data, lowercase_wire};
use super::signed::DenialEntry;
use super::task_signatures::{
    MAX_SIGNED_RRSETS, SubsetSignatures, nsec_chain, nsec3_chain, rrsets_needed,
};
use crate::dnssec::sign::SigningSession;
use crate::geoip::GeoIp;
use crate::health::{Health, Key, OriginHealth};
use crate::select::{CompiledGroup, ScopeTables};
use crate::site::{OriginGroup, Site, Target, Task, WhenAllDown, site_name};
use crate::wire::WireName;

/// The tasks of one site.
#[derive(Default)]
pub struct Tasks {
    /// Every name the tasks make exist: each task's hostname with its index into
    /// `tasks`, and each ancestor below the apex with none.
    names: NameMap<Option<u32>>,
    tasks: Vec<CompiledTask>,
    /// In a signed zone whose ZSK lbdns holds: the NSECs (NSEC3s) the tasks' names add
    /// to the zone's chain or change in it, in canonical (hash) order.
    nsec: Box<[DenialEntry]>,
}

/// An effective task compiled for the query path.
pub struct CompiledTask {
    pub answers: u32,
    pub cname: bool,
    /// Picks by rendezvous hashing of the client's prefix (SPEC §12 stickiness).
    pub sticky: bool,
    /// The task's group, then each group of its fallback chain (SPEC §12).
    pub chain: Box<[Link]>,
    /// What the task answers when no group of the chain has enough usable origins.
    pub when_all_down: WhenAllDown,
    /// Answers given by `when_all_down` (`lbdns_fallback_total{kind="all_down"}`).
    pub all_down: Counter,
    /// Fail-open answers of the task's group (SPEC §10 `lbdns_failed_open_total`).
    pub failed_open: Counter,
    /// Answers the task gave (`lbdns_task_answers_total`).
    pub answered: ServedCounter,
}

/// One group of a task's chain, compiled with the task's TTL.
pub struct Link {
    pub group: CompiledGroup,
    /// The group's name, for messages.
    pub group_name: String,
    /// Each origin's record after the owner name (the task's TTL included); `None` for
    /// origins that can never answer.
    pub records: Vec<Option<Box<[u8]>>>,
    /// Health by origin index, written by the checkers; `None` counts as up.
    pub health: Vec<Option<Arc<OriginHealth>>>,
    /// Answers this group gave as a fallback (`lbdns_fallback_total{kind="group"}`);
    /// unused on the task's own group.
    pub used: Counter,
    /// By origin index: how often the origin was in the task's answers
    /// (`lbdns_origin_answers_total`).
    pub answered: Vec<ServedCounter>,
    /// True when the group's check reads a `weight_header`: only then can an origin's
    /// weight differ from the configured one.
    pub reports_weights: bool,
    /// In a signed zone: the RRSIG of every answer this group can give for the task.
    pub signatures: Option<SubsetSignatures>,
}

impl Link {
    pub fn is_up(&self, origin: u16) -> bool {
        self.health[usize::from(origin)]
            .as_ref()
            .is_none_or(|cell| cell.is_up())
    }
}

/// What a pick reads of the group's origins: their health cells.
impl crate::select::Live for &Link {
    fn is_up(&self, origin: u16) -> bool {
        Link::is_up(self, origin)
    }

    fn reports_weights(&self) -> bool {
        self.reports_weights
    }

    fn weight(&self, origin: u16, configured: u32) -> u32 {
        self.health[usize::from(origin)]
            .as_ref()
            .and_then(|cell| cell.reported_weight())
            .unwrap_or(configured)
    }

    fn rtt_us(&self, origin: u16) -> Option<u32> {
        self.health[usize::from(origin)]
            .as_ref()
            .and_then(|cell| cell.rtt_us())
    }
}

impl CompiledTask {
    /// The task's own group.
    pub fn head(&self) -> &Link {
        &self.chain[0]
    }
}

impl Tasks {
    /// Compiles `site`'s tasks over `zone`, region groups with the databases of
    /// `tables` and its tables where they fit. A disabled task is checked too: enabling
    /// it later must not be the first time anyone hears it cannot be served.
    pub fn compile(
        zone: &ZoneData,
        site: Option<&Site>,
        tables: &mut ScopeTables<'_>,
        health: &Health,
    ) -> Result<Self, Vec<CompileError>> {
        let mut tasks = Self::default();
        let mut errors = Vec::new();
        let mut signing = zone.signer.as_ref().map(|signer| Signing {
            session: signer.session(crate::dnssec::key::unix_now()),
            rrsets: 0,
            names: Vec::new(),
        });
        for task in site.iter().flat_map(|s| s.tasks.iter()) {
            let site = site.expect("tasks come from a site");
            let result = servable(zone, task).and_then(|()| match task.enabled {
                true => tasks.attach(zone, site, task, tables, health, signing.as_mut()),
                false => Ok(()),
            });
            if let Err(message) = result {
                errors.push(CompileError {
                    origin: zone.origin.clone(),
                    line: task.line,
                    message,
                });
            }
        }
        // Compact denial makes each name's NSEC when asked: no chain to add to.
        if let Some(mut signing) = signing
            && let Some(signer) = zone.signer.as_ref().filter(|s| !s.is_compact())
            && let Some(signed) = zone.signed()
            && errors.is_empty()
        {
            let (names, ttl, session) = (&signing.names, signer.nsec_ttl, &mut signing.session);
            let kind = match (signed.nsec_owners(), signed.nsec3_params()) {
                (Some(owners), _) => {
                    tasks.nsec = nsec_chain(zone, owners, names, ttl, session);
                    "NSECs"
                }
                (None, Some(params)) => {
                    let chain = signed.nsec3_entries();
                    tasks.nsec = nsec3_chain(zone, chain, params, names, ttl, session);
                    "NSEC3s"
                }
                (None, None) => "",
            };
            if signing.session.made > 0 {
                tracing::info!(
                    "zone {}: tasks signed, {} answer RRsets and {} {kind}, {} signatures made",
                    zone.origin,
                    signing.rrsets,
                    tasks.nsec.len(),
                    signing.session.made
                );
            }
        }
        match errors.is_empty() {
            true => {
                tasks.names.shrink_to_fit();
                Ok(tasks)
            }
            false => Err(errors),
        }
    }

    /// Whether the tasks make `name` exist and, if so, the task answering there.
    pub fn at(&self, name: &[u8]) -> Option<Option<&CompiledTask>> {
        if self.names.is_empty() {
            return None;
        }
        self.names
            .get(name)
            .map(|task| task.map(|i| &self.tasks[i as usize]))
    }

    /// Adds the scope tables of every group of the tasks to `tables` (made with
    /// `geoip`).
    pub fn share_tables(&self, tables: &mut ScopeTables<'_>, geoip: Option<&GeoIp>) {
        for link in self.tasks.iter().flat_map(|t| t.chain.iter()) {
            tables.adopt(&link.group, geoip);
        }
    }

    /// The NSECs or NSEC3s the tasks add to the zone's chain or change in it (empty
    /// unless the zone is signed with a ZSK lbdns holds and has tasks).
    pub fn nsec(&self) -> &[DenialEntry] {
        &self.nsec
    }

    fn attach(
        &mut self,
        zone: &ZoneData,
        site: &Site,
        task: &Task,
        tables: &mut ScopeTables<'_>,
        health: &Health,
        signing: Option<&mut Signing<'_>>,
    ) -> Result<(), String> {
        let group = site
            .group(&task.origin_group)
            .ok_or_else(|| format!("task {}: no origin group {}", task.id, task.origin_group))?;
        // As metrics label them: without the final dot.
        let task_name = site_name(&task.hostname);
        let site_name = site_name(&site.origin);
        let hostname = lowercase_wire(&task.hostname);
        let mut chain: Box<[Link]> = site
            .chain(group)
            .into_iter()
            .map(|g| link(site, &site_name, task, group, g, tables, health))
            .collect();
        if let Some(signing) = signing {
            // NODATA at a name whose NSEC (NSEC3) lists the task's types would be bogus; a
            // compact denial's NSEC is made for the answer, without the type denied.
            if group.fallback.when_all_down == WhenAllDown::Nodata
                && !zone.signer.as_ref().is_some_and(|s| s.is_compact())
            {
                return Err(format!(
                    "task {}: group {} answers NODATA when its whole chain is down \
                     (when_all_down: nodata), which zone {} cannot prove, being signed: the \
                     denial record of {} lists the types the task answers; use when_all_down: \
                     servfail or fail_open",
                    task.id, group.name, site_name, task.hostname
                ));
            }
            signing.sign(zone, task, &hostname, &mut chain)?;
        }
        let when_all_down = group.fallback.when_all_down;
        let all_down_to = match when_all_down {
            WhenAllDown::FailOpen => "fail_open",
            WhenAllDown::Servfail => "servfail",
            WhenAllDown::Nodata => "nodata",
        };
        self.tasks.push(CompiledTask {
            answers: task.answers,
            cname: group.is_cname(),
            sticky: task.sticky,
            chain,
            when_all_down,
            all_down: health.fallback_counter(&site_name, &group.name, "all_down", all_down_to),
            failed_open: health.failed_open_counter(&site_name, &group.name),
            answered: health.metrics().task_answers_for(&site_name, &task_name),
        });
        let index = u32::try_from(self.tasks.len() - 1).expect("fewer than 2^32 tasks");
        let name = WireName::from_lowercase(&hostname).expect("a hostname is a valid name");
        // The hostname and the empty non-terminals above it exist (RFC 4592 §2.2.2).
        for n in zone.apex_labels + 1..name.labels() {
            self.names.entry(name.suffix(n).into()).or_insert(None);
        }
        self.names.insert(hostname, Some(index));
        Ok(())
    }
}

/// What signing a site's tasks has done so far in one compile.
struct Signing<'s> {
    session: SigningSession<'s>,
    /// RRsets signed for the answers of the tasks so far.
    rrsets: usize,
    /// Each effective task's name with the types it answers (for the NSEC chain).
    names: Vec<(Box<[u8]>, Vec<u16>)>,
}

impl Signing<'_> {
    /// Signs every answer each group of `chain` can give for `task` at `hostname`,
    /// within the site's limit.
    fn sign(
        &mut self,
        zone: &ZoneData,
        task: &Task,
        hostname: &[u8],
        chain: &mut [Link],
    ) -> Result<(), String> {
        let mut types = Vec::new();
        for link in chain.iter_mut() {
            let needed = rrsets_needed(&link.records, task.answers);
            let total = (self.rrsets as u64).saturating_add(needed);
            if total > MAX_SIGNED_RRSETS as u64 {
                return Err(format!(
                    "task {}: zone {} is signed, so every answer its tasks can give is signed                      in advance: each set of 1 to {} (answers) origins of group {}, {} RRsets,                      which takes the site's tasks past the limit of {MAX_SIGNED_RRSETS} signed                      RRsets ({} before this group); lower answers or give the group fewer                      origins",
                    task.id,
                    site_name(&zone.origin),
                    task.answers,
                    link.group_name,
                    needed,
                    self.rrsets,
                ));
            }
            self.rrsets = total as usize;
            link.signatures = Some(SubsetSignatures::sign(
                hostname,
                &link.records,
                task.answers,
                &mut self.session,
            ));
            for record in link.records.iter().flatten() {
                types.push(u16::from_be_bytes([record[0], record[1]]));
            }
        }
        types.sort_unstable();
        types.dedup();
        self.names.push((hostname.into(), types));
        Ok(())
    }
}

/// Compiles `group`, one group of the chain of `task` on `head`.
fn link(
    site: &Site,
    site_name: &str,
    task: &Task,
    head: &OriginGroup,
    group: &OriginGroup,
    tables: &mut ScopeTables<'_>,
    health: &Health,
) -> Link {
    let records = group
        .origins
        .iter()
        .map(|o| {
            let data = match &o.target {
                Target::Ip(std::net::IpAddr::V4(ip)) => RData::A(A(*ip)),
                Target::Ip(std::net::IpAddr::V6(ip)) => RData::AAAA(AAAA(*ip)),
                Target::Name(name) => RData::CNAME(CNAME(name.clone())),
                Target::WithPort(_) => return None,
            };
            Some(encode_data(data.record_type(), task.ttl, &data).into())
        })
        .collect();
    // Health cells by origin index; origins without a check have none and count as up.
    let cells = group
        .origins
        .iter()
        .map(|o| Key::of_origin(site, group, o).map(|key| health.cell(key)))
        .collect();
    // As metrics label them: without the final dot.
    let hostname = crate::site::site_name(&task.hostname);
    let answered = group
        .origins
        .iter()
        .map(|o| {
            let origin = o.target.to_string();
            let metrics = health.metrics();
            metrics.origin_answers_for(site_name, &hostname, &group.name, &origin)
        })
        .collect();
    let compiled = CompiledGroup::with_tables(group, tables);
    let (runs, bytes) = compiled.scope_table_size();
    if runs > 0 {
        tracing::debug!(
            "task {}: group {}: scope table of {runs} runs, {bytes} bytes",
            task.id,
            group.name
        );
    }
    Link {
        group: compiled,
        group_name: group.name.clone(),
        signatures: None,
        records,
        health: cells,
        answered,
        reports_weights: group
            .health_check
            .as_ref()
            .is_some_and(|check| check.weight_header.is_some()),
        // The task's own group is no fallback: no series for it.
        used: match group.name == head.name {
            true => Counter::default(),
            false => health.fallback_counter(site_name, &head.name, "group", &group.name),
        },
    }
}

/// Refuses a task at or below a zone cut: that name is answered by other servers; and a
/// task in a zone signed elsewhere: lbdns has no key to sign its answers with, and a
/// signed zone never answers unsigned (SPEC §11).
fn servable(zone: &ZoneData, task: &Task) -> Result<(), String> {
    if zone.signed().is_some() && zone.signer.is_none() {
        return Err(format!(
            "task {}: zone {} is signed elsewhere: a task there would answer unsigned; \
             import its ZSK with `lbdns keys import` (the zone must deny with NSEC, or NSEC3 \
             without opt-out)",
            task.id,
            site_name(&zone.origin)
        ));
    }
    let hostname = lowercase_wire(&task.hostname);
    let name = WireName::from_lowercase(&hostname).expect("a hostname is a valid name");
    match zone.cut_at_or_above(&name) {
        Some(n) => Err(format!(
            "task {}: hostname {} is at or below the zone cut {}, which is delegated to other servers",
            task.id,
            task.hostname,
            task.hostname.trim_to(n)
        )),
        None => Ok(()),
    }
}
