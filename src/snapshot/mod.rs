//! The immutable serving state: every zone compiled for answering, with its site's
//! effective tasks as an overlay, swapped whole on reload.
//!
//! A zone is compiled once per zone file ([`data`]) and shared by every snapshot after
//! it; a site change recompiles only that site's overlay ([`tasks`]), so a task change
//! costs the same whatever the size of its zone. Answering ([`lookup`]) writes records
//! into the response, already encoded. A zone file signed elsewhere keeps its RRSIGs
//! beside the RRsets they cover, and [`signed`] indexes its NSEC or NSEC3 chain, so that
//! answers with DO carry signatures and denial copied from the file. In a zone lbdns
//! signs, the overlay also holds the signatures of every answer the tasks can give and the
//! NSECs their names need ([`task_signatures`]), made when the site's tasks compile.

mod data;
mod lookup;
mod signed;
mod task_signatures;
mod tasks;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use rand::Rng;

use crate::geoip::GeoIp;
use crate::health::Health;
use crate::metrics::ServedCounter;
use crate::select::{Client, ScopeTables};
use crate::site::{Site, site_name};
use crate::wire::{self, Owner, Response, WireName};
use data::NameMap;
pub use data::{RecordsMut, Rrsets, ZoneBuilder, ZoneData};
use lookup::{Ctx, QUESTION_AT};
pub use signed::DenialEntry;
use tasks::Tasks;

/// Everything a query needs, immutable.
pub struct Snapshot {
    /// Zones by their origin's lowercased wire bytes. Shared between snapshots: a change
    /// to one site rebuilds only its entry.
    zones: NameMap<Arc<CompiledZone>>,
    /// The most labels an apex here has: a longer suffix of a name is no zone, so the
    /// search for a name's zone starts there.
    deepest_apex: usize,
    geoip: Option<Arc<GeoIp>>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut origins: Vec<String> = self
            .zones
            .values()
            .map(|z| z.data.origin.to_string())
            .collect();
        origins.sort();
        f.debug_struct("Snapshot")
            .field("zones", &origins)
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

/// One zone ready to answer: its data and its site's tasks.
struct CompiledZone {
    data: Arc<ZoneData>,
    tasks: Tasks,
    /// Who may transfer the zone's data, and the TSIG key each must sign with.
    secondaries: Box<[crate::site::Secondary]>,
    /// Queries answered from the zone (`lbdns_zone_queries_total`).
    queries: ServedCounter,
}

fn zone_queries(data: &ZoneData, health: &Health) -> ServedCounter {
    health.metrics().zone_queries_for(&site_name(&data.origin))
}

fn secondaries_of(site: Option<&Site>) -> Box<[crate::site::Secondary]> {
    site.map(|s| s.secondaries.iter().cloned().collect())
        .unwrap_or_default()
}

/// A zone as a transfer to `source` may send it.
pub enum Transferable<'s> {
    /// The zone's data, for a listed secondary, and the secondaries' entries that list
    /// the source (whose TSIG keys the request is checked with).
    Zone(&'s ZoneData, Vec<&'s crate::site::Secondary>),
    /// A zone served here, but not to this source.
    Refused,
    /// No zone served here has this apex.
    NotAuthoritative,
}

/// What answering decided, besides the records written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// NOERROR, NXDOMAIN, REFUSED, or SERVFAIL when a task's whole fallback chain is down
    /// and its group says `when_all_down: servfail`.
    pub rcode: u8,
    pub authoritative: bool,
    /// ECS scope prefix length: the most specific prefix any selection depended on.
    pub scope: u8,
    /// True when a selection found no usable origin and answered as if all were up.
    pub failed_open: bool,
    /// The zone denies with compact denial (RFC 9824) and this answer carries DNSSEC:
    /// a query with the CO flag gets it back.
    pub compact: bool,
    /// A compact denial answered a name that does not exist as NOERROR with an NXNAME
    /// NSEC; a query with the CO flag gets NXDOMAIN (RFC 9824 §5.1).
    pub nxname: bool,
}

/// An answer decoded into records: for tests and tools, not the query path.
#[derive(Debug, Default)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
    pub scope: u8,
    pub failed_open: bool,
}

impl Snapshot {
    /// Compiles zones and their sites. Every site must belong to one of the zones.
    pub fn compile(
        zones: &[Arc<ZoneData>],
        sites: &[&Site],
        geoip: Option<Arc<GeoIp>>,
        health: &Health,
    ) -> Result<Self, Vec<CompileError>> {
        let mut errors = Vec::new();
        let mut compiled = NameMap::default();
        let sites: HashMap<&Name, &Site> = sites.iter().map(|s| (&s.origin, *s)).collect();
        let mut tables = ScopeTables::new(geoip.as_deref());
        for data in zones {
            let data = data.clone();
            let site = sites.get(&data.origin).copied();
            match Tasks::compile(&data, site, &mut tables, health) {
                Ok(tasks) => {
                    let secondaries = secondaries_of(site);
                    let zone = CompiledZone {
                        queries: zone_queries(&data, health),
                        data: data.clone(),
                        tasks,
                        secondaries,
                    };
                    compiled.insert(data.apex.clone(), Arc::new(zone));
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
        drop(tables);
        if !errors.is_empty() {
            return Err(errors);
        }
        let deepest_apex = compiled.values().map(|z| z.data.apex_labels).max();
        Ok(Self {
            zones: compiled,
            deepest_apex: deepest_apex.unwrap_or(0),
            geoip,
        })
    }

    /// This snapshot with `site`'s tasks recompiled over `zone`, its zone's data, which
    /// is shared: the cost is the site's tasks, whatever the zone's size.
    pub fn with_site(
        &self,
        zone: &Arc<ZoneData>,
        site: &Site,
        health: &Health,
    ) -> Result<Self, Vec<CompileError>> {
        // The groups the change leaves alone keep their scope tables.
        let mut tables = ScopeTables::new(self.geoip.as_deref());
        self.share_tables(&site.origin, &mut tables);
        let tasks = Tasks::compile(zone, Some(site), &mut tables, health)?;
        let mut zones = self.zones.clone();
        let compiled = CompiledZone {
            queries: zone_queries(zone, health),
            data: zone.clone(),
            tasks,
            secondaries: secondaries_of(Some(site)),
        };
        zones.insert(zone.apex.clone(), Arc::new(compiled));
        Ok(Self {
            zones,
            deepest_apex: self.deepest_apex.max(zone.apex_labels),
            geoip: self.geoip.clone(),
        })
    }

    /// Answers `qname`/`qtype` for `client` into `out`, whose question is `qname` as
    /// asked; REFUSED when no zone holds the name. With `dnssec_ok` (the query's DO bit),
    /// a signed zone's answer carries its RRSIGs and denial records.
    pub fn resolve<R: Rng + ?Sized>(
        &self,
        qname: &WireName,
        qtype: u16,
        dnssec_ok: bool,
        client: &Client,
        rng: &mut R,
        out: &mut Response<'_>,
    ) -> Resolution {
        let Some(zone) = self.zone_of(qname, qtype) else {
            return Resolution {
                rcode: 5,
                authoritative: false,
                scope: 0,
                failed_open: false,
                compact: false,
                nxname: false,
            };
        };
        zone.queries.inc();
        let mut ctx = Ctx::new(
            client,
            rng,
            QUESTION_AT + qname.suffix_start(zone.data.apex_labels),
            dnssec_ok && zone.data.signed().is_some(),
        );
        zone.resolve(
            qname,
            Owner::At(QUESTION_AT as u16),
            qtype,
            &mut ctx,
            out,
            None,
        );
        zone.finish(&ctx, out);
        ctx.resolution.compact =
            ctx.dnssec && zone.data.signer.as_ref().is_some_and(|s| s.is_compact());
        ctx.resolution
    }

    /// Lends the scope tables of `site`'s tasks to groups compiled next with `tables`
    /// (when they use the same databases as this snapshot): explain and preview take
    /// them instead of making them again.
    pub fn share_tables(&self, site: &Name, tables: &mut ScopeTables<'_>) {
        if let Some(zone) = self.zones.get(&data::lowercase_wire(site)) {
            zone.tasks.share_tables(tables, self.geoip.as_deref());
        }
    }

    /// The zone whose apex is `apex`, as a transfer to `source` may have it.
    pub fn transferable(&self, apex: &WireName, source: std::net::IpAddr) -> Transferable<'_> {
        let Some(zone) = self.zones.get(apex.as_bytes()) else {
            return Transferable::NotAuthoritative;
        };
        let source = source.to_canonical();
        let listing: Vec<_> = zone
            .secondaries
            .iter()
            .filter(|s| s.allowed.contains(&source))
            .collect();
        match listing.is_empty() {
            false => Transferable::Zone(&zone.data, listing),
            true => Transferable::Refused,
        }
    }

    /// The SOA serial of every zone, by origin: what a secondary compares.
    pub fn serials(&self) -> Vec<(Name, u32)> {
        self.zones
            .values()
            .map(|z| {
                let soa = z.data.soa();
                // RDATA: MNAME, RNAME, then SERIAL.
                let rdata = &soa[10..];
                let mname = WireName::from_lowercase(rdata).map_or(0, |n| n.as_bytes().len());
                let rname =
                    WireName::from_lowercase(&rdata[mname..]).map_or(0, |n| n.as_bytes().len());
                let at = mname + rname;
                let serial = rdata
                    .get(at..at + 4)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                (z.data.origin.clone(), serial)
            })
            .collect()
    }

    /// The most specific zone holding `qname`. DS lives on the parent side of a cut
    /// (RFC 4035 §3.1.4.1): a DS query for the apex of a served child zone is the
    /// parent's, when the parent is served here too.
    fn zone_of(&self, qname: &WireName, qtype: u16) -> Option<&CompiledZone> {
        let mut child_apex = None;
        for n in (0..=qname.labels().min(self.deepest_apex)).rev() {
            let Some(zone) = self.zones.get(qname.suffix(n)) else {
                continue;
            };
            if n == qname.labels() && qtype == wire::rtype::DS {
                child_apex = Some(zone);
                continue;
            }
            return Some(zone);
        }
        child_apex.map(|z| &**z)
    }

    /// Answers `qname`/`qtype` for `client` and decodes the records: what a query gets,
    /// through the same code as the query path, for tests and tools.
    pub fn answer<R: Rng + ?Sized>(
        &self,
        qname: &Name,
        qtype: RecordType,
        client: &Client,
        rng: &mut R,
    ) -> Answer {
        self.answer_with(qname, qtype, false, client, rng)
    }

    /// [`Snapshot::answer`] with the DO bit `dnssec_ok`.
    pub fn answer_with<R: Rng + ?Sized>(
        &self,
        qname: &Name,
        qtype: RecordType,
        dnssec_ok: bool,
        client: &Client,
        rng: &mut R,
    ) -> Answer {
        let mut question = qname.to_bytes().expect("a name encodes");
        question.extend_from_slice(&u16::from(qtype).to_be_bytes());
        question.extend_from_slice(&wire::CLASS_IN.to_be_bytes());
        let (name, _) = WireName::read(&question).expect("a name reads back");
        let mut buf = vec![0; usize::from(u16::MAX)];
        let mut response = Response::new(&mut buf);
        response.question(&question);
        let resolution = self.resolve(
            &name,
            u16::from(qtype),
            dnssec_ok,
            client,
            rng,
            &mut response,
        );
        let len = response.finish(wire::Header {
            id: 0,
            query_flags: 0,
            authoritative: resolution.authoritative,
            truncated: false,
            rcode: resolution.rcode,
            questions: 1,
        });
        let mut message = Message::from_vec(&buf[..len]).expect("lbdns's answers decode");
        Answer {
            rcode: ResponseCode::from(0, resolution.rcode),
            authoritative: resolution.authoritative,
            answers: std::mem::take(&mut message.answers),
            authority: std::mem::take(&mut message.authorities),
            additional: std::mem::take(&mut message.additionals),
            scope: resolution.scope,
            failed_open: resolution.failed_open,
        }
    }
}
