//! Secondary zones (SPEC §13): a site whose file has `primary:` takes its zone from that
//! primary instead of `zones/<origin>.zone`.
//!
//! Per zone, one task: AXFR over TCP from the primaries in order at start (or, with a kept
//! copy, an SOA check first); then an SOA query at every SOA `refresh` (`retry` after a
//! failure) and on a NOTIFY from a listed primary. When the primary's serial is newer
//! (RFC 1982), an IXFR from ours (RFC 1995, [`ixfr`]): its differences are applied to the
//! kept copy; a primary that answers with the whole zone is taken at its word, and one
//! that refuses IXFR, or whose differences do not start from our copy, gets an AXFR.
//!
//! Either way the new copy is written with [`persist::write_atomically`] to
//! `secondary/<origin>.zone` ([`load::secondary_path`]) and applied through the store's
//! reload job ([`Store::reload`]): the writer loads the directory, where only changed zone
//! files are compiled again ([`load::load`]), and publishes one new snapshot, so no query
//! is dropped and tasks layer over the transferred records exactly as over a zone file.
//! A restart serves the kept copy before the primary answers.
//!
//! Expiry: the kept copy's modification time is the last successful refresh (touched when
//! an SOA check finds the serial unchanged); once SOA `expire` has passed since, queries
//! for the zone get SERVFAIL ([`servfail_if_expired`], read lock-free by the DNS handler)
//! until a refresh succeeds again.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::load;
use crate::persist;
use crate::site::spec::PrimarySpec;
use crate::store::Store;
use crate::tsig;

mod ixfr;

/// How long one exchange with a primary (connect, query, each message) may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Before the first transfer there is no SOA to take `retry` from.
const FIRST_RETRY: Duration = Duration::from_secs(5);

/// Expired zones, as lowercased wire names: read by every query while any zone is expired.
static EXPIRED: LazyLock<ArcSwap<Vec<Box<[u8]>>>> =
    LazyLock::new(|| ArcSwap::from_pointee(Vec::new()));
/// True while [`EXPIRED`] holds a zone: the one relaxed load every query pays (an
/// `ArcSwap` load costs about 50 instructions, a sixth of an answer's).
static ANY_EXPIRED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Serialises [`set_expired`], so [`ANY_EXPIRED`] is written from the list last stored.
static SETTING_EXPIRED: std::sync::Mutex<()> = std::sync::Mutex::new(());
/// Where a NOTIFY for a secondary zone goes, by origin: the zones whose tasks run.
static NOTIFIED: LazyLock<ArcSwap<Vec<(Name, Watched)>>> =
    LazyLock::new(|| ArcSwap::from_pointee(Vec::new()));
/// What `/healthz` shows, by zone.
static STATUS: LazyLock<Mutex<BTreeMap<String, ZoneStatus>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));

/// A secondary zone as `/healthz` shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ZoneStatus {
    /// The serial served; absent before the first transfer.
    pub serial: Option<u32>,
    /// Unix seconds of the last successful refresh (transfer or unchanged serial).
    pub last_refresh: Option<u64>,
    /// Unix seconds when the zone expires without a refresh.
    pub expires: Option<u64>,
    pub expired: bool,
    /// Transfers applied since the start: the whole zone (AXFR, or an IXFR the primary
    /// answered in full) and differences (IXFR).
    #[serde(default)]
    pub axfr: u64,
    #[serde(default)]
    pub ixfr: u64,
    /// The last failure to refresh, if the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Each secondary zone's state, for `/healthz`.
pub fn status() -> BTreeMap<String, ZoneStatus> {
    STATUS.lock().map(|s| s.clone()).unwrap_or_default()
}

/// Starts a task per secondary zone of the store's configuration, and follows it: after
/// a reload that adds, changes or removes a site's `primary:`, the zone's task is started,
/// restarted or stopped (the configuration's generation is looked at every second).
pub fn start(store: &Arc<Store>) {
    tokio::spawn(follow(store.clone()));
}

/// How often the configuration's generation is compared with the one last followed.
const FOLLOW: Duration = Duration::from_secs(1);

async fn follow(store: Arc<Store>) {
    let mut running: BTreeMap<Name, (PrimarySpec, tokio::task::JoinHandle<()>, Watched)> =
        BTreeMap::new();
    let mut followed = None;
    loop {
        let generation = store.generation();
        if followed != Some(generation) {
            followed = Some(generation);
            let wanted = store.primaries();
            running.retain(|origin, (spec, task, _)| {
                let keep = wanted.iter().any(|(o, s)| o == origin && s == spec);
                if !keep {
                    info!(zone = %origin, "primary: changed or removed: the zone's transfers stop");
                    task.abort();
                    set_expired(origin, false);
                    if let Ok(mut all) = STATUS.lock() {
                        all.remove(&origin.to_string());
                    }
                }
                keep
            });
            for (origin, spec) in wanted {
                if running.contains_key(&origin) {
                    continue;
                }
                if let Some((task, watched)) = start_zone(&store, &origin, &spec) {
                    running.insert(origin, (spec, task, watched));
                }
            }
            NOTIFIED.store(Arc::new(
                running
                    .iter()
                    .map(|(origin, (_, _, watched))| (origin.clone(), watched.clone()))
                    .collect(),
            ));
        }
        tokio::time::sleep(FOLLOW).await;
    }
}

/// A zone's primaries, and its task's wake-up for a NOTIFY from one of them.
#[derive(Clone)]
struct Watched {
    primaries: Vec<IpAddr>,
    /// The `primary.tsig` key a NOTIFY must be signed with.
    key: Option<tsig::Key>,
    wake: mpsc::Sender<()>,
}

fn start_zone(
    store: &Arc<Store>,
    origin: &Name,
    spec: &PrimarySpec,
) -> Option<(tokio::task::JoinHandle<()>, Watched)> {
    // Checked when the site loaded.
    let addresses = spec.socket_addrs().ok()?;
    // Checked when the site loaded; a key removed since stops only this zone.
    let key = match &spec.tsig {
        Some(name) => match tsig::Key::load(&store.sources().dir, name) {
            Ok(key) => Some(key),
            Err(e) => {
                warn!(zone = %origin, "secondary zone not transferred: {e}");
                return None;
            }
        },
        None => None,
    };
    let (wake, woken) = mpsc::channel(1);
    let watched = Watched {
        primaries: addresses.iter().map(SocketAddr::ip).collect(),
        key: key.clone(),
        wake,
    };
    let zone = Zone {
        axfr: AtomicU64::new(0),
        ixfr: AtomicU64::new(0),
        key,
        path: load::secondary_path(&store.sources().dir, origin),
        origin: origin.clone(),
        addresses,
        store: store.clone(),
    };
    Some((tokio::spawn(zone.run(woken)), watched))
}

/// One secondary zone and where it comes from.
struct Zone {
    origin: Name,
    addresses: Vec<SocketAddr>,
    /// The `primary.tsig` key transfers are signed with.
    key: Option<tsig::Key>,
    path: PathBuf,
    store: Arc<Store>,
    /// Transfers applied, by kind, for `/healthz`.
    axfr: AtomicU64,
    ixfr: AtomicU64,
}

/// The SOA timers of the copy served.
#[derive(Clone, Copy, Debug)]
struct Timers {
    serial: u32,
    refresh: Duration,
    retry: Duration,
    expire: Duration,
}

impl Timers {
    fn of(soa: &hickory_proto::rr::rdata::SOA) -> Self {
        let secs = |v: i32| Duration::from_secs(v.max(1) as u64);
        Self {
            serial: soa.serial,
            refresh: secs(soa.refresh),
            retry: secs(soa.retry),
            expire: secs(soa.expire),
        }
    }
}

impl Zone {
    async fn run(self, mut woken: mpsc::Receiver<()>) {
        // A kept copy: its SOA, and its file's time as the last refresh.
        let mut served = self.kept().await;
        let mut last_ok = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        loop {
            let error = match self.refresh(served.map(|t| t.serial)).await {
                Ok(Some(timers)) => {
                    served = Some(timers);
                    last_ok = Some(SystemTime::now());
                    None
                }
                Ok(None) => {
                    last_ok = Some(SystemTime::now());
                    // The copy's time is the last refresh, for a restart.
                    if let Ok(file) = std::fs::File::options().write(true).open(&self.path) {
                        let _ = file.set_modified(SystemTime::now());
                    }
                    None
                }
                Err(e) => {
                    warn!(zone = %self.origin, "secondary zone not refreshed: {e}");
                    Some(e)
                }
            };
            let wait = match (served, &error) {
                (Some(t), None) => t.refresh,
                (Some(t), Some(_)) => t.retry,
                (None, _) => FIRST_RETRY,
            };
            let expires = served.zip(last_ok).map(|(t, at)| at + t.expire);
            self.show(served, last_ok, expires, error);
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let now = SystemTime::now();
                let expired = expires.is_some_and(|e| now >= e);
                if expired && !is_expired(&self.origin) {
                    warn!(zone = %self.origin, "secondary zone expired: SERVFAIL until a refresh succeeds");
                    set_expired(&self.origin, true);
                    self.show(served, last_ok, expires, Some("expired".to_owned()));
                }
                // Wake at the expiry as well, to stop serving the zone on time.
                let mut until = deadline;
                if let Some(left) = expires.and_then(|e| e.duration_since(now).ok()) {
                    until = until.min(tokio::time::Instant::now() + left);
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {
                        if tokio::time::Instant::now() >= deadline {
                            break;
                        }
                    }
                    Some(()) = woken.recv() => {
                        info!(zone = %self.origin, "NOTIFY from a primary: checking its serial");
                        break;
                    }
                }
            }
        }
    }

    /// The SOA of the copy being served, if any.
    async fn kept(&self) -> Option<Timers> {
        let path = self.path.clone();
        let origin = self.origin.clone();
        tokio::task::spawn_blocking(move || {
            let text = std::fs::read_to_string(&path).ok()?;
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty() && !l.starts_with(';'))?;
            let record = parse_soa_line(first, &origin)?;
            Some(record)
        })
        .await
        .ok()
        .flatten()
    }

    /// Asks the primaries for the SOA and, when theirs is newer than `serial`, takes the
    /// difference by IXFR, or the zone by AXFR when there is no copy yet or the difference
    /// cannot be had or applied. `Ok(Some)`: a new copy is served; `Ok(None)`: the serial
    /// is current.
    async fn refresh(&self, serial: Option<u32>) -> Result<Option<Timers>, String> {
        let mut errors = Vec::new();
        for &primary in &self.addresses {
            if let Some(ours) = serial {
                let theirs = match soa_query(primary, &self.origin, self.key.as_ref()).await {
                    Ok(soa) => soa.serial,
                    Err(e) => {
                        errors.push(format!("{primary}: {e}"));
                        continue;
                    }
                };
                if !newer(theirs, ours) {
                    set_expired(&self.origin, false);
                    return Ok(None);
                }
                match self.incremental(primary, ours).await {
                    Ok(timers) => return Ok(Some(timers)),
                    Err(e) => {
                        info!(zone = %self.origin, %primary, "no IXFR from serial {ours}, taking the whole zone by AXFR: {e}");
                    }
                }
            }
            let started = std::time::Instant::now();
            let kept = match axfr(primary, &self.origin, self.key.as_ref()).await {
                Ok(records) => self.keep_whole(primary, records, started).await,
                Err(e) => Err(e),
            };
            match kept {
                Ok(timers) => return Ok(Some(timers)),
                Err(e) => errors.push(format!("{primary}: {e}")),
            }
        }
        Err(errors.join("; "))
    }

    /// IXFR from `primary` from our serial `ours`: the differences applied to the kept
    /// copy, or the whole zone when the primary sends it instead.
    async fn incremental(&self, primary: SocketAddr, ours: u32) -> Result<Timers, String> {
        let started = std::time::Instant::now();
        let (soa, sequences) = match ixfr(primary, &self.origin, ours, self.key.as_ref()).await? {
            ixfr::Answer::UpToDate => {
                return Err("the primary answered that nothing is newer".to_owned());
            }
            ixfr::Answer::Full(records) => {
                return self.keep_whole(primary, records, started).await;
            }
            ixfr::Answer::Incremental { soa, sequences } => (soa, sequences),
        };
        let RData::SOA(new) = &soa.data else {
            return Err("the answer does not start with the SOA".to_owned());
        };
        let timers = Timers::of(new);
        let changes: usize = sequences
            .iter()
            .map(|s| s.deleted.len() + s.added.len())
            .sum();
        let path = self.path.clone();
        let header = header(primary);
        let text = tokio::task::spawn_blocking(move || {
            let copy = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read our copy {}: {e}", path.display()))?;
            ixfr::apply(&copy, ours, &header, &soa, &sequences)
        })
        .await
        .map_err(|e| e.to_string())??;
        self.keep(text).await?;
        self.ixfr.fetch_add(1, Ordering::Relaxed);
        self.store.metrics().secondary_ixfr.inc();
        info!(zone = %self.origin, %primary, from = ours, serial = timers.serial, changes, took = ?started.elapsed(), "secondary zone updated by IXFR");
        Ok(timers)
    }

    /// The whole zone from `primary` (the SOA first and once), kept and applied.
    async fn keep_whole(
        &self,
        primary: SocketAddr,
        records: Vec<Record>,
        started: std::time::Instant,
    ) -> Result<Timers, String> {
        let Some(RData::SOA(soa)) = records.first().map(|r| &r.data) else {
            return Err("the transfer does not start with the SOA".to_owned());
        };
        let timers = Timers::of(soa);
        let mut text = header(primary);
        for record in &records {
            text.push_str(&presentation(record)?);
            text.push('\n');
        }
        self.keep(text).await?;
        self.axfr.fetch_add(1, Ordering::Relaxed);
        self.store.metrics().secondary_axfr.inc();
        info!(zone = %self.origin, %primary, serial = timers.serial, records = records.len(), took = ?started.elapsed(), "secondary zone transferred");
        Ok(timers)
    }

    /// Writes `text` as the kept copy, once it loads, and has the store reload it.
    async fn keep(&self, text: String) -> Result<(), String> {
        let path = self.path.clone();
        let store = self.store.clone();
        let origin = self.origin.clone();
        tokio::task::spawn_blocking(move || {
            check_copy(&text, &path, &origin)?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            persist::write_atomically(&path, text.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            store.reload().map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
        set_expired(&self.origin, false);
        Ok(())
    }

    fn show(
        &self,
        served: Option<Timers>,
        last_ok: Option<SystemTime>,
        expires: Option<SystemTime>,
        error: Option<String>,
    ) {
        let unix = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs())
        };
        let status = ZoneStatus {
            serial: served.map(|t| t.serial),
            last_refresh: last_ok.and_then(unix),
            expires: expires.and_then(unix),
            expired: is_expired(&self.origin),
            axfr: self.axfr.load(Ordering::Relaxed),
            ixfr: self.ixfr.load(Ordering::Relaxed),
            error,
        };
        if let Ok(mut all) = STATUS.lock() {
            all.insert(self.origin.to_string(), status);
        }
    }
}

/// The first line of a kept copy.
fn header(primary: SocketAddr) -> String {
    format!(
        "; transferred from {primary} by lbdns: the copy of a secondary zone, rewritten at every transfer\n"
    )
}

/// The serial of an SOA record (0 for any other).
fn soa_serial(record: &Record) -> u32 {
    match &record.data {
        RData::SOA(soa) => soa.serial,
        _ => 0,
    }
}

/// Loads the copy's text as the next reload (or start) will: a copy that would not load
/// is never written, since at the next start it would keep the server from starting.
fn check_copy(text: &str, path: &std::path::Path, origin: &Name) -> Result<(), String> {
    crate::zone::parse(text, path, origin)
        .map(drop)
        .map_err(|e| format!("the transferred zone does not load, the previous copy stays: {e}"))
}

/// A record as a line of the kept copy: the usual text for the types whose hickory
/// presentation reads back exactly, the RFC 3597 form (`\\# len hex`) for every other
/// (hickory writes TXT strings unquoted, which would split them at spaces).
fn presentation(record: &Record) -> Result<String, String> {
    match record.data {
        RData::A(_)
        | RData::AAAA(_)
        | RData::NS(_)
        | RData::CNAME(_)
        | RData::PTR(_)
        | RData::MX(_)
        | RData::SOA(_)
        | RData::SRV(_) => Ok(record.to_string()),
        _ => {
            let mut wire = Vec::new();
            let mut encoder = BinEncoder::new(&mut wire);
            encoder.set_name_encoding(NameEncoding::Uncompressed);
            record.data.emit(&mut encoder).map_err(|e| {
                format!(
                    "{} {}: does not encode: {e}",
                    record.name,
                    record.record_type()
                )
            })?;
            Ok(format!(
                "{} {} {} TYPE{} \\# {} {}",
                record.name,
                record.ttl,
                record.dns_class,
                u16::from(record.record_type()),
                wire.len(),
                data_encoding::HEXUPPER.encode(&wire)
            ))
        }
    }
}

/// The SOA timers of a kept copy's first line, as [`Zone::transfer`] wrote it.
fn parse_soa_line(line: &str, origin: &Name) -> Option<Timers> {
    let zone = crate::zone::parse(line, std::path::Path::new("secondary"), origin).ok()?;
    let soa = zone.soa();
    // type, class, TTL, RDLENGTH, then MNAME, RNAME and the five numbers.
    let rdata = soa.get(10..)?;
    let numbers = rdata.get(rdata.len().checked_sub(20)?..)?;
    let n = |i: usize| u32::from_be_bytes(numbers[i * 4..i * 4 + 4].try_into().unwrap_or_default());
    let secs = |v: u32| Duration::from_secs(u64::from(v.max(1)));
    Some(Timers {
        serial: n(0),
        refresh: secs(n(1)),
        retry: secs(n(2)),
        expire: secs(n(3)),
    })
}

/// RFC 1982: `a` is newer than `b` (a difference of exactly 2^31 is undefined: not newer).
pub fn newer(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < 1 << 31
}

/// `origin` in lowercased wire form, as a query's name is compared.
fn wire(origin: &Name) -> Box<[u8]> {
    let mut bytes = Vec::new();
    for label in origin.to_lowercase().iter() {
        bytes.push(label.len() as u8);
        bytes.extend_from_slice(label);
    }
    bytes.push(0);
    bytes.into()
}

fn is_expired(origin: &Name) -> bool {
    let wire = wire(origin);
    EXPIRED.load().contains(&wire)
}

fn set_expired(origin: &Name, expired: bool) {
    let wire = wire(origin);
    let _serial = SETTING_EXPIRED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    EXPIRED.rcu(|list| {
        let mut list: Vec<Box<[u8]>> = list.iter().filter(|e| **e != wire).cloned().collect();
        if expired {
            list.push(wire.clone());
        }
        list
    });
    ANY_EXPIRED.store(
        !EXPIRED.load().is_empty(),
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// When `packet` is a query for a name in an expired secondary zone: writes a SERVFAIL
/// for it into `out` and returns its length. Allocates nothing; with no expired zone it
/// costs one relaxed atomic load.
pub fn servfail_if_expired(packet: &[u8], out: &mut [u8]) -> Option<usize> {
    if !ANY_EXPIRED.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    let expired = EXPIRED.load();
    if expired.is_empty() || packet.len() < 12 || packet[2] & 0x80 != 0 {
        return None;
    }
    // The question's name, lowercased, and where each label starts.
    let mut name = [0u8; 255];
    let mut len = 0;
    let mut at = 12;
    loop {
        let label = usize::from(*packet.get(at)?);
        if label > 63 || len + label + 1 > name.len() {
            return None;
        }
        name[len] = label as u8;
        for i in 0..label {
            name[len + 1 + i] = packet.get(at + 1 + i)?.to_ascii_lowercase();
        }
        len += label + 1;
        at += label + 1;
        if label == 0 {
            break;
        }
    }
    let question_end = at + 4;
    if packet.len() < question_end || out.len() < question_end {
        return None;
    }
    let mut start = 0;
    let within = loop {
        if expired.iter().any(|apex| **apex == name[start..len]) {
            break true;
        }
        let label = usize::from(name[start]);
        if label == 0 {
            break false;
        }
        start += label + 1;
    };
    if !within {
        return None;
    }
    out[..question_end].copy_from_slice(&packet[..question_end]);
    // QR, the query's opcode and RD; RCODE 2; one question, nothing else.
    out[2] = 0x80 | (packet[2] & 0x79);
    out[3] = 2;
    out[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    Some(question_end)
}

/// When `packet` is a NOTIFY for a secondary zone: wakes the zone's task if `src` is one
/// of its primaries (and the NOTIFY is signed with `primary.tsig` when the site names a
/// key), and writes the acknowledgement (REFUSED from anyone else, NOTAUTH with the TSIG
/// error for a wrong signature, signed when the NOTIFY was) into `out`. `None` for anything else, which is answered as before.
pub fn notified(packet: &[u8], src: IpAddr, out: &mut [u8]) -> Option<usize> {
    if packet.len() < 12 || (packet[2] >> 3) & 0xF != 4 || packet[2] & 0x80 != 0 {
        return None;
    }
    let notified = NOTIFIED.load();
    if notified.is_empty() {
        return None;
    }
    let message = Message::from_vec(packet).ok()?;
    let query = message.queries.first()?;
    let name = query.name().to_lowercase();
    let (_, watched) = notified.iter().find(|(o, _)| *o == name)?;
    let now = unix_now();
    // With `primary.tsig`, the NOTIFY must be signed with the key (SPEC §13).
    let signed = watched
        .key
        .as_ref()
        .map(|key| key.verify_request(packet, now).map(|s| (key, s.mac)));
    let code = if !watched.primaries.contains(&src) {
        warn!(zone = %name, %src, "NOTIFY from an address that is not a primary of the zone: refused");
        ResponseCode::Refused
    } else if let Some(Err(refusal)) = &signed {
        warn!(zone = %name, %src, "NOTIFY refused: {refusal}");
        ResponseCode::NotAuth
    } else {
        // A NOTIFY while a check is pending adds nothing.
        let _ = watched.wake.try_send(());
        ResponseCode::NoError
    };
    let mut reply = Message::response(message.metadata.id, OpCode::Notify);
    reply.metadata.authoritative = true;
    reply.metadata.response_code = code;
    reply.add_query(query.clone());
    let mut bytes = reply.to_vec().ok()?;
    match signed {
        Some(Ok((key, mut mac))) if code == ResponseCode::NoError => {
            let len = bytes.len();
            bytes.resize(len + key.record_len(), 0);
            let signed_len = key.sign_answer(&mut bytes, len, &mut mac, true, now)?;
            bytes.truncate(signed_len);
        }
        Some(Err(refusal)) => tsig::append_error(&mut bytes, packet, refusal, now),
        _ => {}
    }
    out.get_mut(..bytes.len())?.copy_from_slice(&bytes);
    Some(bytes.len())
}

/// One query over TCP to `primary`, and the messages of its answer until `done` says so.
async fn exchange(
    primary: SocketAddr,
    query: &Message,
    key: Option<&tsig::Key>,
    mut done: impl FnMut(&Message) -> Result<bool, String>,
) -> Result<(), String> {
    let timed = |what: &'static str| move |_| format!("{what}: no answer in {TIMEOUT:?}");
    let mut stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(primary))
        .await
        .map_err(timed("connect"))?
        .map_err(|e| format!("connect: {e}"))?;
    let mut bytes = query.to_vec().map_err(|e| e.to_string())?;
    let mut verifier = key.map(|key| {
        let mac = key.sign(&mut bytes, unix_now());
        tsig::Verifier::new(key.clone(), mac)
    });
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream
        .write_all(&framed)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::new();
    loop {
        let mut len = [0u8; 2];
        tokio::time::timeout(TIMEOUT, stream.read_exact(&mut len))
            .await
            .map_err(timed("read"))?
            .map_err(|e| format!("read: {e}"))?;
        buf.resize(usize::from(u16::from_be_bytes(len)), 0);
        tokio::time::timeout(TIMEOUT, stream.read_exact(&mut buf))
            .await
            .map_err(timed("read"))?
            .map_err(|e| format!("read: {e}"))?;
        let message = Message::from_vec(&buf).map_err(|e| format!("malformed answer: {e}"))?;
        if message.metadata.id != query.metadata.id
            || message.metadata.message_type != MessageType::Response
        {
            return Err("an answer that is not to the query".to_owned());
        }
        if message.metadata.response_code != ResponseCode::NoError {
            let tsig = message
                .signature
                .as_ref()
                .map(|s| format!(" (TSIG error {:?})", s.data.error))
                .unwrap_or_default();
            if message.metadata.response_code == ResponseCode::NotAuth && key.is_some() {
                return Err(format!(
                    "answered NOTAUTH{tsig}: the primary does not accept the TSIG signature; is the secret in keys/tsig/ the primary's?"
                ));
            }
            return Err(format!("answered {}{tsig}", message.metadata.response_code));
        }
        if let Some(verifier) = &mut verifier {
            verifier.verify(&buf, unix_now())?;
        }
        if done(&message)? {
            return Ok(());
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn query(origin: &Name, rtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.id = rand::random();
    message.add_query(Query::query(origin.clone(), rtype));
    message
}

/// The primary's SOA for `origin`.
async fn soa_query(
    primary: SocketAddr,
    origin: &Name,
    key: Option<&tsig::Key>,
) -> Result<hickory_proto::rr::rdata::SOA, String> {
    let mut soa = None;
    exchange(primary, &query(origin, RecordType::SOA), key, |m| {
        soa = m.answers.iter().find_map(|r| match &r.data {
            RData::SOA(soa) if r.name.to_lowercase() == *origin => Some(soa.clone()),
            _ => None,
        });
        Ok(true)
    })
    .await?;
    soa.ok_or_else(|| "no SOA in the answer: is the zone configured there?".to_owned())
}

/// The zone's records by AXFR, the SOA first and once (the closing SOA is dropped).
async fn axfr(
    primary: SocketAddr,
    origin: &Name,
    key: Option<&tsig::Key>,
) -> Result<Vec<Record>, String> {
    let mut records: Vec<Record> = Vec::new();
    exchange(primary, &query(origin, RecordType::AXFR), key, |m| {
        for record in &m.answers {
            let is_soa = matches!(record.data, RData::SOA(_));
            if records.is_empty() {
                if !is_soa {
                    return Err("the transfer does not start with the SOA".to_owned());
                }
            } else if is_soa {
                return Ok(true);
            }
            records.push(record.clone());
        }
        Ok(false)
    })
    .await?;
    Ok(records)
}

/// IXFR (RFC 1995) from our serial `ours`: the query carries our SOA in its authority
/// section, which only the serial of matters to the primary.
async fn ixfr(
    primary: SocketAddr,
    origin: &Name,
    ours: u32,
    key: Option<&tsig::Key>,
) -> Result<ixfr::Answer, String> {
    let mut message = query(origin, RecordType::IXFR);
    let soa = SOA::new(origin.clone(), origin.clone(), ours, 0, 0, 0, 0);
    message
        .authorities
        .push(Record::from_rdata(origin.clone(), 0, RData::SOA(soa)));
    let mut reader = ixfr::Reader::default();
    exchange(primary, &message, key, |m| reader.message(&m.answers)).await?;
    reader.answer()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transferred_zone_that_would_not_load_is_not_kept() {
        let origin = Name::from_ascii("example.com.").unwrap();
        let path = std::path::Path::new("secondary/example.com.zone");
        let soa =
            "example.com. 3600 IN SOA ns1.example.com. hm.example.com. 1 3600 600 86400 300\n";
        assert_eq!(check_copy(soa, path, &origin), Ok(()));
        // A CNAME beside other data at one name (RFC 1034 §3.6.2): the loader refuses it.
        let cname = format!(
            "{soa}www.example.com. 300 IN CNAME web.example.com.\nwww.example.com. 300 IN A 192.0.2.1\n"
        );
        let error = check_copy(&cname, path, &origin).unwrap_err();
        assert!(
            error.starts_with("the transferred zone does not load"),
            "{error}"
        );
    }

    #[test]
    fn serials_compare_as_rfc_1982_says() {
        assert!(newer(2, 1));
        assert!(!newer(1, 2));
        assert!(!newer(5, 5));
        // Across the wrap.
        assert!(newer(3, u32::MAX - 2));
        assert!(!newer(u32::MAX - 2, 3));
        // Exactly half the space apart: undefined, so not newer either way.
        assert!(!newer(1 << 31, 0));
        assert!(!newer(0, 1 << 31));
    }

    #[test]
    fn a_query_in_an_expired_zone_gets_servfail() {
        let origin = Name::from_ascii("expired.test.").unwrap();
        let ask = |name: &str| {
            let mut q = query(&Name::from_ascii(name).unwrap(), RecordType::A);
            q.metadata.recursion_desired = true;
            let bytes = q.to_vec().unwrap();
            let mut out = [0u8; 512];
            servfail_if_expired(&bytes, &mut out).map(|n| Message::from_vec(&out[..n]).unwrap())
        };
        assert!(ask("www.Expired.test.").is_none());
        set_expired(&origin, true);
        let reply = ask("www.Expired.test.").expect("SERVFAIL");
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        assert!(reply.metadata.recursion_desired);
        assert_eq!(reply.queries.len(), 1);
        assert!(ask("expired.test.").is_some());
        assert!(ask("notexpired.test.").is_none());
        assert!(ask("test.").is_none());
        set_expired(&origin, false);
        assert!(ask("www.expired.test.").is_none());
    }
}
