//! The immutable serving state: every zone with its effective tasks layered on top,
//! compiled once at load and swapped whole on reload.
//!
//! The override layer (SPEC §5) lives in the compiled nodes: a node whose name an
//! effective task answers carries that task, which hides the zone's A, AAAA and CNAME
//! records there (all of them, for a CNAME task) while the zone data itself is never
//! changed. A snapshot built without the task therefore serves the zone's records again,
//! exactly as before: restore is just the next compile.
//!
//! Lookup follows RFC 1034 §4.3.2 with RFC 4592 wildcards: walk down from the apex,
//! stop at a zone cut (referral), answer the exact node, else the wildcard at the closest
//! encloser, else NXDOMAIN.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use prometheus_client::metrics::counter::Counter;
use rand::Rng;

use crate::geoip::GeoIp;
use crate::health::{Health, Key, OriginHealth};
use crate::select::{Client, CompiledGroup, Family, pick, route};
use crate::site::{Site, Target, Task, site_name};
use crate::zone::Zone;

/// Longest CNAME chain followed inside a zone.
const MAX_CNAME_CHAIN: usize = 8;

/// Everything a query needs, immutable.
pub struct Snapshot {
    /// Zones, most specific origin first, so the first that contains a name is its zone.
    /// Shared between snapshots: a change to one site recompiles only its zone.
    zones: Vec<Arc<CompiledZone>>,
    geoip: Option<Arc<GeoIp>>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field(
                "zones",
                &self
                    .zones
                    .iter()
                    .map(|z| z.origin.to_string())
                    .collect::<Vec<_>>(),
            )
            .field("geoip", &self.geoip)
            .finish()
    }
}

/// An error compiling a snapshot: a task that parsed but cannot be served by its zone.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CompileError {
    /// The zone (and so the site file) concerned.
    pub origin: Name,
    /// The task's line in its site file, when known.
    pub line: Option<u64>,
    pub message: String,
}

/// One zone ready to answer.
struct CompiledZone {
    origin: Name,
    /// The SOA as it goes into negative answers: TTL = min(SOA TTL, MINIMUM) (RFC 2308).
    negative_soa: Record,
    nodes: HashMap<Name, Node>,
    tasks: Vec<CompiledTask>,
}

/// Everything at one name, including empty non-terminals (which exist, with no data).
#[derive(Default)]
struct Node {
    rrsets: Vec<(RecordType, Vec<Record>)>,
    /// Index into the zone's tasks of the effective task answering at this name.
    task: Option<usize>,
    /// A delegation point below the apex (has NS).
    is_cut: bool,
}

impl Node {
    fn rrset(&self, rtype: RecordType) -> Option<&[Record]> {
        self.rrsets
            .iter()
            .find(|(t, _)| *t == rtype)
            .map(|(_, records)| &records[..])
    }
}

/// An effective task compiled for the query path.
struct CompiledTask {
    ttl: u32,
    answers: u32,
    group: CompiledGroup,
    /// Answer data per origin index (`None` for origins that can never answer).
    rdata: Vec<Option<RData>>,
    cname: bool,
    /// Health by origin index, written by the checkers; `None` counts as up.
    health: Vec<Option<Arc<OriginHealth>>>,
    /// Fail-open answers of the task's group (SPEC §10 `lbdns_failed_open_total`).
    failed_open: Counter,
}

/// What a query gets, before it is put on the wire.
#[derive(Debug, Default)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
    /// ECS scope prefix length: the most specific prefix any selection depended on.
    pub scope: u8,
    /// True when a selection found no usable origin and answered as if all were up.
    pub failed_open: bool,
}

impl Snapshot {
    /// Compiles zones and their sites. Every site must belong to one of the zones.
    pub fn compile(
        zones: &[Zone],
        sites: &[&Site],
        geoip: Option<Arc<GeoIp>>,
        health: &Health,
    ) -> Result<Self, Vec<CompileError>> {
        let mut errors = Vec::new();
        let mut compiled = Vec::new();
        for zone in zones {
            let site = sites.iter().find(|s| s.origin == zone.origin).copied();
            match CompiledZone::new(zone, site, health) {
                Ok(z) => compiled.push(Arc::new(z)),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        compiled.sort_by_key(|z| std::cmp::Reverse(label_count(&z.origin)));
        Ok(Self {
            zones: compiled,
            geoip,
        })
    }

    /// This snapshot with `zone` recompiled for `site`; every other zone is shared.
    pub fn with_site(
        &self,
        zone: &Zone,
        site: &Site,
        health: &Health,
    ) -> Result<Self, Vec<CompileError>> {
        let compiled = Arc::new(CompiledZone::new(zone, Some(site), health)?);
        let zones = self
            .zones
            .iter()
            .map(|z| match z.origin == compiled.origin {
                true => compiled.clone(),
                false => z.clone(),
            })
            .collect();
        Ok(Self {
            zones,
            geoip: self.geoip.clone(),
        })
    }

    /// Answers `qname`/`qtype` for `client`; REFUSED when no zone holds the name.
    ///
    /// `qname` is used as asked, so its case is echoed in the answer.
    pub fn answer<R: Rng + ?Sized>(
        &self,
        qname: &Name,
        qtype: RecordType,
        client: &Client,
        rng: &mut R,
    ) -> Answer {
        let mut zones = self.zones.iter().filter(|z| z.origin.zone_of(qname));
        let mut zone = zones.next();
        // DS lives on the parent side of a cut (RFC 4035 §3.1.4.1): a DS query for the apex
        // of a served child zone is the parent's, when the parent is served here too.
        if qtype == RecordType::DS
            && zone.is_some_and(|z| z.origin == *qname)
            && let Some(parent) = zones.next()
        {
            zone = Some(parent);
        }
        let Some(zone) = zone else {
            return Answer {
                rcode: ResponseCode::Refused,
                ..Answer::default()
            };
        };
        let mut answer = Answer {
            authoritative: true,
            ..Answer::default()
        };
        let mut ctx = Ctx {
            client,
            geoip: self.geoip.as_deref(),
            rng,
        };
        zone.resolve(qname, qtype, &mut ctx, &mut answer, 0);
        answer
    }
}

/// Per-query inputs of selection.
struct Ctx<'a, R: ?Sized> {
    client: &'a Client,
    geoip: Option<&'a GeoIp>,
    rng: &'a mut R,
}

/// Where a name leads in a zone.
enum Found<'z> {
    /// The node answering the name (exact or wildcard).
    Node(&'z Node),
    /// A zone cut at or above the name: a referral from this node.
    Cut(&'z Name, &'z Node),
    NxDomain,
}

impl CompiledZone {
    fn new(zone: &Zone, site: Option<&Site>, health: &Health) -> Result<Self, Vec<CompileError>> {
        let soa = zone.soa().clone();
        let mut negative_soa = soa.clone();
        if let RData::SOA(data) = &soa.data {
            negative_soa.ttl = soa.ttl.min(data.minimum);
        }
        let origin = zone.origin.clone();
        let mut nodes: HashMap<Name, Node> = HashMap::new();
        nodes.entry(origin.clone()).or_default();
        for record in zone.records.iter().cloned() {
            let name = record.name.clone();
            let node = node_with_ancestors(&mut nodes, &origin, &name);
            let rtype = record.record_type();
            if rtype == RecordType::NS && name != origin {
                node.is_cut = true;
            }
            match node.rrsets.iter_mut().find(|(t, _)| *t == rtype) {
                Some((_, records)) => records.push(record),
                None => node.rrsets.push((rtype, vec![record])),
            }
        }
        let mut compiled = Self {
            origin,
            negative_soa,
            nodes,
            tasks: Vec::new(),
        };
        let mut errors = Vec::new();
        for (site, task) in site
            .iter()
            .flat_map(|s| s.tasks.iter().map(move |t| (*s, t)))
        {
            // A disabled task is checked too: enabling it later must not be the first
            // time anyone hears it cannot be served.
            let result = compiled.servable(task).and_then(|()| match task.enabled {
                true => compiled.attach(site, task, health),
                false => Ok(()),
            });
            if let Err(message) = result {
                errors.push(CompileError {
                    origin: compiled.origin.clone(),
                    line: task.line,
                    message,
                });
            }
        }
        if errors.is_empty() {
            Ok(compiled)
        } else {
            Err(errors)
        }
    }

    /// Makes `task` effective: its name exists and answers from the task.
    /// Refuses a task at or below a zone cut: that name is answered by other servers.
    fn servable(&self, task: &Task) -> Result<(), String> {
        for n in label_count(&self.origin) + 1..=label_count(&task.hostname) {
            let name = task.hostname.trim_to(n);
            if self.nodes.get(&name).is_some_and(|node| node.is_cut) {
                return Err(format!(
                    "task {}: hostname {} is at or below the zone cut {name}, which is delegated to other servers",
                    task.id, task.hostname
                ));
            }
        }
        Ok(())
    }

    fn attach(&mut self, site: &Site, task: &Task, health: &Health) -> Result<(), String> {
        let group = site
            .group(&task.origin_group)
            .ok_or_else(|| format!("task {}: no origin group {}", task.id, task.origin_group))?;
        let rdata = group
            .origins
            .iter()
            .map(|o| match &o.target {
                Target::Ip(std::net::IpAddr::V4(ip)) => Some(RData::A(A(*ip))),
                Target::Ip(std::net::IpAddr::V6(ip)) => Some(RData::AAAA(AAAA(*ip))),
                Target::Name(name) => Some(RData::CNAME(CNAME(name.clone()))),
                Target::WithPort(_) => None,
            })
            .collect();
        // Health cells by origin index; origins without a check have none and count as up.
        let cells = group
            .origins
            .iter()
            .map(|o| Key::of_origin(site, group, o).map(|key| health.cell(key)))
            .collect();
        self.tasks.push(CompiledTask {
            ttl: task.ttl,
            answers: task.answers,
            group: CompiledGroup::new(group),
            rdata,
            cname: group.is_cname(),
            health: cells,
            failed_open: health.failed_open_counter(&site_name(&site.origin), &group.name),
        });
        let index = self.tasks.len() - 1;
        node_with_ancestors(&mut self.nodes, &self.origin, &task.hostname).task = Some(index);
        Ok(())
    }

    fn find(&self, qname: &Name, qtype: RecordType) -> Found<'_> {
        let labels = label_count(qname);
        for n in label_count(&self.origin) + 1..=labels {
            let name = qname.trim_to(n);
            match self.nodes.get_key_value(&name) {
                // The parent side answers DS at a cut (RFC 4035 §3.1.4.1).
                Some((cut, node)) if node.is_cut && !(n == labels && qtype == RecordType::DS) => {
                    return Found::Cut(cut, node);
                }
                Some(_) => {}
                None => {
                    let closest_encloser = qname.trim_to(n - 1);
                    let wildcard = closest_encloser.prepend_label("*").ok();
                    return match wildcard.and_then(|w| self.nodes.get(&w)) {
                        Some(node) => Found::Node(node),
                        None => Found::NxDomain,
                    };
                }
            }
        }
        match self.nodes.get(qname) {
            Some(node) => Found::Node(node),
            None => Found::NxDomain,
        }
    }

    /// Answers `owner`/`qtype` into `out`, following in-zone CNAMEs.
    fn resolve<R: Rng + ?Sized>(
        &self,
        owner: &Name,
        qtype: RecordType,
        ctx: &mut Ctx<'_, R>,
        out: &mut Answer,
        depth: usize,
    ) {
        let node = match self.find(owner, qtype) {
            Found::Node(node) => node,
            Found::NxDomain => {
                out.rcode = ResponseCode::NXDomain;
                out.authority.push(self.negative_soa.clone());
                return;
            }
            Found::Cut(cut, node) => {
                if depth == 0 {
                    self.refer(cut, node, out);
                }
                return;
            }
        };
        let answers_before = out.answers.len();
        let cname_target = match node.task.map(|i| &self.tasks[i]) {
            Some(task) => self.answer_task(task, node, owner, qtype, ctx, out),
            None => self.answer_data(node, owner, qtype, out),
        };
        if let Some(target) = cname_target {
            if depth + 1 < MAX_CNAME_CHAIN && self.origin.zone_of(&target) {
                self.resolve(&target, qtype, ctx, out, depth + 1);
            }
            return;
        }
        if out.answers.len() == answers_before {
            // NODATA: the name exists, the type does not.
            out.authority.push(self.negative_soa.clone());
        }
    }

    /// Answers from the task at `node`; returns a CNAME target to follow.
    fn answer_task<R: Rng + ?Sized>(
        &self,
        task: &CompiledTask,
        node: &Node,
        owner: &Name,
        qtype: RecordType,
        ctx: &mut Ctx<'_, R>,
        out: &mut Answer,
    ) -> Option<Name> {
        let family = if task.cname {
            Family::Name
        } else {
            match qtype {
                RecordType::A => Family::V4,
                RecordType::AAAA => Family::V6,
                RecordType::ANY if task.group.serves(Family::V4) => Family::V4,
                RecordType::ANY => Family::V6,
                // The zone's CNAME is hidden while the task is effective.
                RecordType::CNAME => return None,
                // Other types come from the zone, but never its CNAME, which stays hidden.
                _ => {
                    if let Some(records) = node.rrset(qtype) {
                        push_as(out, records, owner);
                    }
                    return None;
                }
            }
        };
        let mut route = route(&task.group, family, ctx.client, ctx.geoip);
        let is_up = |i: u16| {
            task.health[usize::from(i)]
                .as_ref()
                .is_none_or(|cell| cell.is_up())
        };
        let selection = pick(&mut route, is_up, task.answers, ctx.rng);
        out.scope = out.scope.max(selection.scope);
        if selection.failed_open {
            task.failed_open.inc();
            out.failed_open = true;
        }
        let mut target = None;
        for &i in selection.origins() {
            if let Some(rdata) = &task.rdata[usize::from(i)] {
                if let RData::CNAME(name) = rdata {
                    target = Some(name.0.clone());
                }
                out.answers
                    .push(Record::from_rdata(owner.clone(), task.ttl, rdata.clone()));
            }
        }
        match qtype {
            RecordType::CNAME | RecordType::ANY => None,
            _ => target,
        }
    }

    /// Answers from zone data at `node`; returns a CNAME target to follow.
    fn answer_data(
        &self,
        node: &Node,
        owner: &Name,
        qtype: RecordType,
        out: &mut Answer,
    ) -> Option<Name> {
        if qtype != RecordType::CNAME
            && let Some(cname) = node.rrset(RecordType::CNAME)
        {
            push_as(out, cname, owner);
            return match qtype {
                RecordType::ANY => None,
                _ => cname.first().and_then(|r| match &r.data {
                    RData::CNAME(target) => Some(target.0.clone()),
                    _ => None,
                }),
            };
        }
        let rrset = if qtype == RecordType::ANY {
            // RFC 8482: one RRset is a complete answer to ANY.
            node.rrsets.first().map(|(_, records)| &records[..])
        } else {
            node.rrset(qtype)
        };
        if let Some(records) = rrset {
            push_as(out, records, owner);
        }
        None
    }

    /// A referral to the servers of the cut at `cut`, with the glue this zone holds.
    fn refer(&self, cut: &Name, node: &Node, out: &mut Answer) {
        out.authoritative = false;
        let Some(ns) = node.rrset(RecordType::NS) else {
            return;
        };
        out.authority.extend(ns.iter().map(|r| {
            let mut r = r.clone();
            r.name = cut.clone();
            r
        }));
        for record in ns {
            let RData::NS(target) = &record.data else {
                continue;
            };
            if !self.origin.zone_of(&target.0) {
                continue;
            }
            if let Some(glue) = self.nodes.get(&target.0) {
                for rtype in [RecordType::A, RecordType::AAAA] {
                    out.additional
                        .extend(glue.rrset(rtype).into_iter().flatten().cloned());
                }
            }
        }
    }
}

/// Adds `name` and every empty non-terminal between it and `origin`.
/// The node at `name`, created with every missing ancestor up to `origin` (empty
/// non-terminals exist, RFC 4592 §2.2.2). `name` must be at or below `origin`.
fn node_with_ancestors<'n>(
    nodes: &'n mut HashMap<Name, Node>,
    origin: &Name,
    name: &Name,
) -> &'n mut Node {
    let mut ancestor = name.base_name();
    while label_count(&ancestor) > label_count(origin) && !nodes.contains_key(&ancestor) {
        nodes.insert(ancestor.clone(), Node::default());
        ancestor = ancestor.base_name();
    }
    nodes.entry(name.clone()).or_default()
}

/// Labels in `name`, a leading `*` included: hickory's `num_labels` leaves the `*` out
/// (RRSIG's count), which makes `*.example.com` look like the apex.
fn label_count(name: &Name) -> usize {
    name.iter().len()
}

/// Appends `records` with their owner set to `owner` (the query's spelling, or the name a
/// wildcard answered for).
fn push_as(out: &mut Answer, records: &[Record], owner: &Name) {
    out.answers.extend(records.iter().map(|r| {
        let mut r = r.clone();
        r.name = owner.clone();
        r
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;
    use std::path::Path;

    const ZONE: &str = "$TTL 3600\n\
        @ IN SOA ns1 hostmaster 1 7200 900 1209600 300\n\
        @ NS ns1\n\
        ns1 A 192.0.2.53\n\
        www 300 A 192.0.2.80\n\
        www TXT \"zone text\"\n\
        old CNAME www\n\
        *.wild A 192.0.2.99\n\
        sub NS ns.sub\n\
        ns.sub A 192.0.2.54\n\
        a.b.c A 192.0.2.7\n";

    fn origin() -> Name {
        Name::from_ascii("example.com.").unwrap()
    }

    fn snapshot(lb: &str) -> Snapshot {
        let zone = crate::zone::parse(ZONE, Path::new("t.zone"), &origin()).unwrap();
        let spec = site::parse(lb).unwrap();
        let site = site::validate(&origin(), &spec).unwrap();
        Snapshot::compile(&[zone], &[&site], None, &Health::default()).unwrap()
    }

    fn ask(s: &Snapshot, name: &str, rtype: RecordType) -> Answer {
        let client = Client {
            addr: "192.0.2.1".parse().unwrap(),
            source_prefix: 32,
        };
        s.answer(
            &Name::from_ascii(name).unwrap(),
            rtype,
            &client,
            &mut SmallRng::seed_from_u64(1),
        )
    }

    fn data(a: &Answer) -> Vec<String> {
        a.answers
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.ttl, r.data))
            .collect()
    }

    const TASK: &str = "origin_groups:\n  web:\n    origins:\n      - address: 192.0.2.10\ntasks:\n  - hostname: www.example.com\n    origin_group: web\n    ttl: 30\n";

    #[test]
    fn override_and_restore() {
        let plain = snapshot("");
        assert_eq!(
            data(&ask(&plain, "www.example.com.", RecordType::A)),
            ["www.example.com. 300 192.0.2.80"]
        );
        let with_task = snapshot(TASK);
        assert_eq!(
            data(&ask(&with_task, "www.example.com.", RecordType::A)),
            ["www.example.com. 30 192.0.2.10"]
        );
        // Other types at the name still come from the zone.
        assert_eq!(
            ask(&with_task, "www.example.com.", RecordType::TXT)
                .answers
                .len(),
            1
        );
        let disabled = snapshot(&format!("{TASK}    enabled: false\n"));
        assert_eq!(
            data(&ask(&disabled, "www.example.com.", RecordType::A)),
            ["www.example.com. 300 192.0.2.80"]
        );
    }

    #[test]
    fn a_wildcard_directly_under_the_apex_answers() {
        // As a task: every name without its own node, not the apex or existing names.
        let s = snapshot(&TASK.replace("www.example.com", "\"*.example.com\""));
        assert_eq!(
            data(&ask(&s, "anything.example.com.", RecordType::A)),
            ["anything.example.com. 30 192.0.2.10"]
        );
        assert_eq!(
            data(&ask(&s, "www.example.com.", RecordType::A)),
            ["www.example.com. 300 192.0.2.80"]
        );
        assert_eq!(ask(&s, "example.com.", RecordType::A).answers.len(), 0);
        // As zone data.
        let zone = format!("{ZONE}* 60 A 192.0.2.1\n");
        let zone = crate::zone::parse(&zone, Path::new("t.zone"), &origin()).unwrap();
        let s = Snapshot::compile(&[zone], &[], None, &Health::default()).unwrap();
        assert_eq!(
            data(&ask(&s, "x.y.example.com.", RecordType::A)),
            ["x.y.example.com. 60 192.0.2.1"]
        );
    }

    #[test]
    fn task_hides_a_zone_cname_for_every_type() {
        let s = snapshot(&TASK.replace("www.example.com", "old.example.com"));
        let a = ask(&s, "old.example.com.", RecordType::A);
        assert_eq!(data(&a), ["old.example.com. 30 192.0.2.10"]);
        for rtype in [RecordType::MX, RecordType::CNAME, RecordType::TXT] {
            let other = ask(&s, "old.example.com.", rtype);
            assert!(other.answers.is_empty(), "{rtype}: {:?}", data(&other));
            assert_eq!(
                (other.rcode, other.authority.len()),
                (ResponseCode::NoError, 1)
            );
        }
    }

    #[test]
    fn task_makes_a_name_exist() {
        let lb = TASK.replace("www.example.com", "new.example.com");
        assert_eq!(
            ask(&snapshot(""), "new.example.com.", RecordType::A).rcode,
            ResponseCode::NXDomain
        );
        let s = snapshot(&lb);
        assert_eq!(
            data(&ask(&s, "new.example.com.", RecordType::A)),
            ["new.example.com. 30 192.0.2.10"]
        );
        let nodata = ask(&s, "new.example.com.", RecordType::AAAA);
        assert_eq!(
            (nodata.rcode, nodata.answers.len(), nodata.authority.len()),
            (ResponseCode::NoError, 0, 1)
        );
    }

    #[test]
    fn negative_answers_carry_the_soa_with_minimum_ttl() {
        let s = snapshot("");
        let nx = ask(&s, "nope.example.com.", RecordType::A);
        assert_eq!(nx.rcode, ResponseCode::NXDomain);
        assert_eq!(nx.authority[0].ttl, 300);
        assert!(nx.authoritative);
        // b.c exists as an empty non-terminal.
        let ent = ask(&s, "b.c.example.com.", RecordType::A);
        assert_eq!((ent.rcode, ent.answers.len()), (ResponseCode::NoError, 0));
        assert_eq!(
            ask(&s, "example.org.", RecordType::A).rcode,
            ResponseCode::Refused
        );
    }

    #[test]
    fn cname_wildcard_and_referral() {
        let s = snapshot("");
        let a = ask(&s, "OLD.example.com.", RecordType::A);
        assert_eq!(
            data(&a),
            [
                "OLD.example.com. 3600 www.example.com.",
                "www.example.com. 300 192.0.2.80"
            ]
        );
        let w = ask(&s, "x.y.wild.example.com.", RecordType::A);
        assert_eq!(data(&w), ["x.y.wild.example.com. 3600 192.0.2.99"]);
        let r = ask(&s, "host.sub.example.com.", RecordType::A);
        assert!(!r.authoritative);
        assert_eq!(
            (r.answers.len(), r.authority.len(), r.additional.len()),
            (0, 1, 1)
        );
        let ds = ask(&s, "sub.example.com.", RecordType::DS);
        assert!(ds.authoritative && ds.answers.is_empty());
    }

    #[test]
    fn task_below_a_cut_is_rejected() {
        let zone = crate::zone::parse(ZONE, Path::new("t.zone"), &origin()).unwrap();
        let lb = TASK.replace("www.example.com", "x.sub.example.com");
        let site = site::validate(&origin(), &site::parse(&lb).unwrap()).unwrap();
        let errors = Snapshot::compile(&[zone], &[&site], None, &Health::default()).unwrap_err();
        assert!(
            errors[0].message.contains("zone cut sub.example.com."),
            "{}",
            errors[0].message
        );
        assert!(
            errors[0].message.starts_with("task x.sub.example.com"),
            "{}",
            errors[0].message
        );
        assert_eq!(errors[0].line, Some(6));
    }

    fn snapshot_of(zone: &str, lb: &str) -> Snapshot {
        let zone = crate::zone::parse(zone, Path::new("t.zone"), &origin()).unwrap();
        let spec = site::parse(lb).unwrap();
        let site = site::validate(&origin(), &spec).unwrap();
        Snapshot::compile(&[zone], &[&site], None, &Health::default()).unwrap()
    }

    /// Groups of each kind: IPv4, IPv6, a name outside the zone, a name inside it.
    const GROUPS: &str = "origin_groups:
  v4:
    origins:
      - address: 192.0.2.10
  v6:
    origins:
      - address: 2001:db8::10
  out:
    origins:
      - address: edge.cdn.example.net
  in:
    origins:
      - address: www.example.com
tasks:
";

    fn tasks(lines: &str) -> String {
        format!("{GROUPS}{lines}")
    }

    #[test]
    fn any_at_a_task_name_is_the_task_answer_alone() {
        let s = snapshot(&tasks(
            "  - { hostname: www.example.com, origin_group: v4, ttl: 30 }
  - { hostname: new.example.com, origin_group: v6, ttl: 30 }
  - { hostname: old.example.com, origin_group: out, ttl: 30 }
",
        ));
        for (name, want) in [
            ("www.example.com.", "www.example.com. 30 192.0.2.10"),
            ("new.example.com.", "new.example.com. 30 2001:db8::10"),
            (
                "old.example.com.",
                "old.example.com. 30 edge.cdn.example.net.",
            ),
        ] {
            assert_eq!(data(&ask(&s, name, RecordType::ANY)), [want], "{name}");
        }
    }

    #[test]
    fn a_cname_task_into_the_zone_is_followed_except_for_cname_and_any() {
        let s = snapshot(&tasks(
            "  - { hostname: go.example.com, origin_group: in, ttl: 30 }\n",
        ));
        let cname = "go.example.com. 30 www.example.com.";
        assert_eq!(
            data(&ask(&s, "go.example.com.", RecordType::A)),
            [cname, "www.example.com. 300 192.0.2.80"]
        );
        assert_eq!(
            data(&ask(&s, "go.example.com.", RecordType::TXT)),
            [cname, "www.example.com. 3600 zone text"]
        );
        for rtype in [RecordType::CNAME, RecordType::ANY] {
            assert_eq!(data(&ask(&s, "go.example.com.", rtype)), [cname], "{rtype}");
        }
        // The target's AAAA does not exist: the CNAME, then NODATA's SOA.
        let aaaa = ask(&s, "go.example.com.", RecordType::AAAA);
        assert_eq!(
            (data(&aaaa), aaaa.authority.len()),
            (vec![cname.to_owned()], 1)
        );
    }

    #[test]
    fn a_zone_cname_chain_into_a_task_gets_the_task_answer() {
        let zone = format!("{ZONE}alias CNAME old\n");
        let s = snapshot_of(
            &zone,
            &tasks("  - { hostname: www.example.com, origin_group: v4, ttl: 30 }\n"),
        );
        assert_eq!(
            data(&ask(&s, "alias.example.com.", RecordType::A)),
            [
                "alias.example.com. 3600 old.example.com.",
                "old.example.com. 3600 www.example.com.",
                "www.example.com. 30 192.0.2.10"
            ]
        );
        // The zone's AAAA-less www under an IPv4-only task: the chain, then NODATA.
        let aaaa = ask(&s, "alias.example.com.", RecordType::AAAA);
        assert_eq!((aaaa.answers.len(), aaaa.authority.len()), (2, 1));
    }

    #[test]
    fn cname_chains_stop_at_eight_records() {
        // c0 -> c1 -> ... -> c6 -> end (A): 7 CNAMEs and the A, all answered.
        let mut zone = ZONE.to_owned();
        for i in 0..7 {
            zone.push_str(&format!("c{i} CNAME c{}\n", i + 1));
        }
        zone.push_str("c7 A 192.0.2.77\nd0 CNAME c0\nloop1 CNAME loop2\nloop2 CNAME loop1\n");
        let s = snapshot_of(&zone, "");
        let full = ask(&s, "c0.example.com.", RecordType::A);
        assert_eq!(full.answers.len(), 8);
        assert_eq!(
            data(&full).last().map(String::as_str),
            Some("c7.example.com. 3600 192.0.2.77")
        );
        // One more link: the chain is cut after eight records, without the A.
        let cut = ask(&s, "d0.example.com.", RecordType::A);
        assert_eq!(cut.answers.len(), 8);
        assert!(
            cut.answers
                .iter()
                .all(|r| r.record_type() == RecordType::CNAME)
        );
        // A loop ends too.
        assert_eq!(
            ask(&s, "loop1.example.com.", RecordType::A).answers.len(),
            8
        );
    }

    #[test]
    fn any_at_zone_data_is_one_rrset() {
        let s = snapshot("");
        // www has A and TXT: one of them (RFC 8482), whole.
        let any = ask(&s, "www.example.com.", RecordType::ANY);
        assert_eq!(data(&any), ["www.example.com. 300 192.0.2.80"]);
        // A CNAME answers ANY alone, not followed.
        assert_eq!(
            data(&ask(&s, "old.example.com.", RecordType::ANY)),
            ["old.example.com. 3600 www.example.com."]
        );
        assert_eq!(
            data(&ask(&s, "old.example.com.", RecordType::CNAME)),
            ["old.example.com. 3600 www.example.com."]
        );
    }

    #[test]
    fn ds_at_a_served_child_apex_is_answered_by_the_parent() {
        let parent = crate::zone::parse(ZONE, Path::new("t.zone"), &origin()).unwrap();
        let child_origin = Name::from_ascii("sub.example.com.").unwrap();
        let child = crate::zone::parse(
            "$TTL 60\n@ SOA ns hostmaster 1 7200 900 1209600 30\n@ NS ns\nns A 192.0.2.54\n@ A 192.0.2.55\n",
            Path::new("c.zone"),
            &child_origin,
        )
        .unwrap();
        let s = Snapshot::compile(&[parent, child], &[], None, &Health::default()).unwrap();
        let soa_owner = |a: &Answer| a.authority.first().map(|r| r.name.to_string());
        // DS at the cut: the parent's NODATA, authoritative.
        let ds = ask(&s, "sub.example.com.", RecordType::DS);
        assert!(ds.authoritative && ds.answers.is_empty());
        assert_eq!(soa_owner(&ds).as_deref(), Some("example.com."));
        // Anything else at the child apex, and DS below it, is the child's.
        assert_eq!(
            data(&ask(&s, "sub.example.com.", RecordType::A)),
            ["sub.example.com. 60 192.0.2.55"]
        );
        let below = ask(&s, "x.sub.example.com.", RecordType::DS);
        assert_eq!(soa_owner(&below).as_deref(), Some("sub.example.com."));
    }

    #[test]
    fn a_task_answers_its_own_family_and_hides_the_zone_address_records() {
        let zone = format!("{ZONE}www 300 AAAA 2001:db8::80\nnew6 AAAA 2001:db8::99\n");
        let s = snapshot_of(
            &zone,
            &tasks(
                "  - { hostname: www.example.com, origin_group: v4, ttl: 30 }
  - { hostname: new6.example.com, origin_group: v6, ttl: 30 }
",
            ),
        );
        // IPv4-only: the zone's AAAA is hidden, NODATA with the SOA.
        let aaaa = ask(&s, "www.example.com.", RecordType::AAAA);
        assert_eq!((aaaa.answers.len(), aaaa.authority.len()), (0, 1));
        assert_eq!(aaaa.rcode, ResponseCode::NoError);
        // IPv6-only: AAAA from the task, A is NODATA.
        assert_eq!(
            data(&ask(&s, "new6.example.com.", RecordType::AAAA)),
            ["new6.example.com. 30 2001:db8::10"]
        );
        let a = ask(&s, "new6.example.com.", RecordType::A);
        assert_eq!((a.answers.len(), a.authority.len()), (0, 1));
    }

    #[test]
    fn cnames_out_of_the_zone_are_not_followed() {
        let zone = format!("{ZONE}ext CNAME www.example.net.\n");
        let s = snapshot_of(
            &zone,
            &tasks("  - { hostname: cdn.example.com, origin_group: out, ttl: 30 }\n"),
        );
        for (name, want) in [
            ("ext.example.com.", "ext.example.com. 3600 www.example.net."),
            (
                "cdn.example.com.",
                "cdn.example.com. 30 edge.cdn.example.net.",
            ),
        ] {
            let a = ask(&s, name, RecordType::A);
            assert_eq!(data(&a), [want]);
            assert_eq!((a.rcode, a.authority.len()), (ResponseCode::NoError, 0));
        }
    }

    #[test]
    fn ds_below_a_cut_is_a_referral() {
        let s = snapshot("");
        let ds = ask(&s, "host.sub.example.com.", RecordType::DS);
        assert!(!ds.authoritative);
        assert_eq!(
            ds.authority
                .iter()
                .map(|r| (r.name.to_string(), r.record_type()))
                .collect::<Vec<_>>(),
            [("sub.example.com.".to_owned(), RecordType::NS)]
        );
    }

    #[test]
    fn debug_names_the_zones() {
        let text = format!("{:?}", snapshot(""));
        assert!(text.contains("example.com."), "{text}");
    }
}
