//! `lbdns keys`: a zone's DNSSEC keys in the served directory (SPEC §11). Like `lbdns
//! check`, each action works on the files, not through a server: it changes
//! `keys/<origin>/` under the directory's key lock, and a running server takes the change
//! at its next reload (SIGHUP, or the reload a zone or site file edit triggers).
//!
//! - `list`: each key, its role, state and next event;
//! - `ds`: the DS record (digest type 2) of the KSK the parent should hold, as
//!   `dnssec-dsfromkey` prints it;
//! - `roll-zsk`: starts a ZSK pre-publication rollover now;
//! - `roll-ksk`: starts a KSK rollover now; `roll-ksk --ds-seen` confirms the parent
//!   serves the new DS, after which the old KSK leaves;
//! - `import`: takes keys made elsewhere (BIND's files) into the zone.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use data_encoding::HEXUPPER;
use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::BinEncodable;

use crate::dnssec::key::Algorithm;
use crate::dnssec::keydir::{KeyDir, ZoneKeys};
use crate::dnssec::lifecycle::{Event, Role, Time, Timing, rfc3339};

/// Dprp: how long lbdns allows a change of the zone to reach every server of it and every
/// re-signed answer (Knot's default `propagation-delay`).
pub const PROPAGATION_DELAY: u64 = 3600;

/// The TTL assumed for the DS RRset at the parent: a day, as most TLDs give it (.com, .net,
/// .org, .de); a parent with a longer one needs `--ds-seen` that much later.
pub const PARENT_DS_TTL: u64 = 86_400;

/// Hidden, for the rollover tests only: seconds added to the clock the key lifecycle reads
/// (never the signatures' times), so a test steps through a rollover without waiting.
const CLOCK_OFFSET_ENV: &str = "LBDNS_KEY_CLOCK_OFFSET";

/// The time the key lifecycle goes by: now, plus the tests' offset.
pub fn now() -> Time {
    let offset = std::env::var(CLOCK_OFFSET_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    crate::dnssec::key::unix_now() + offset
}

/// The key directory of the zone `origin` in the served directory `dir`:
/// `dir/keys/<origin>/`, the name lowercased and without its final dot.
pub fn key_dir(dir: &Path, origin: &Name) -> PathBuf {
    let name = origin.to_ascii().to_ascii_lowercase();
    dir.join("keys").join(name.trim_end_matches('.'))
}

/// The zone name as given on the command line (final dot optional).
pub fn parse_zone(text: &str) -> Result<Name, String> {
    Name::from_ascii(text)
        .map(|mut name| {
            name.set_fqdn(true);
            name
        })
        .map_err(|e| format!("{text:?} is not a zone name: {e}"))
}

/// The largest TTL in the zone file `dir/zones/<origin>.zone`, its SOA MINIMUM (the TTL
/// of negative answers) included.
pub fn max_zone_ttl(dir: &Path, origin: &Name) -> Result<u64, String> {
    let zone = origin.to_ascii().to_ascii_lowercase();
    let path = dir
        .join("zones")
        .join(format!("{}.zone", zone.trim_end_matches('.')));
    let text = crate::zone::read_file(&path)
        .map_err(|e| format!("{}: cannot read the zone file: {e}", path.display()))?;
    let wire = origin.to_bytes().map_err(|e| e.to_string())?;
    let mut max = 0u64;
    let mut sink = |record: &crate::zone::reader::Record, _: crate::zone::reader::Position| {
        max = max.max(u64::from(record.ttl));
        if record.rtype == crate::wire::rtype::SOA && record.rdata.len() >= 4 {
            let minimum = &record.rdata[record.rdata.len() - 4..];
            max = max.max(u64::from(u32::from_be_bytes([
                minimum[0], minimum[1], minimum[2], minimum[3],
            ])));
        }
        Ok::<(), std::convert::Infallible>(())
    };
    use crate::zone::reader::ReadError;
    crate::zone::reader::read(&text, &path, &wire, &mut sink).map_err(|e| match e {
        ReadError::Syntax {
            path,
            line,
            message,
        } => format!("{}:{line}: {message}", path.display()),
        ReadError::Include { path, source } => format!("{}: {source}", path.display()),
        ReadError::Sink(never) => match never {},
    })?;
    Ok(max)
}

/// The lifecycle's intervals for a zone whose largest TTL is `max_ttl` (the DNSKEY
/// RRset's TTL is at most that) and whose ZSK lives `zsk_lifetime` seconds (0: forever).
pub fn timing(max_ttl: u64, zsk_lifetime: u64) -> Timing {
    Timing {
        dnskey_ttl: max_ttl,
        max_zone_ttl: max_ttl,
        propagation_delay: PROPAGATION_DELAY,
        parent_ds_ttl: PARENT_DS_TTL,
        zsk_lifetime,
    }
}

/// Opens the zone's key directory, which must hold its keys already.
fn open(dir: &Path, origin: &Name) -> Result<(KeyDir, ZoneKeys), String> {
    let path = key_dir(dir, origin);
    if !path.is_dir() {
        return Err(format!(
            "{}: no keys for {origin} (lbdns makes them at the first load of a zone whose site \
             file has a dnssec: block; keys made elsewhere come in with import)",
            path.display()
        ));
    }
    let keys = KeyDir::open(&path, &origin.to_ascii()).map_err(|e| e.to_string())?;
    let zone_keys = keys.load(now()).map_err(|e| e.to_string())?;
    Ok((keys, zone_keys))
}

/// `lbdns keys list`: a table of the keys, with a line per key file not in use.
pub fn list(dir: &Path, origin: &Name, timing: &Timing) -> Result<String, String> {
    let (_, zone_keys) = open(dir, origin)?;
    let now = now();
    let apex = zone_keys.lifecycle.apex(now);
    let mut rows = vec![[
        "TAG".to_owned(),
        "ROLE".to_owned(),
        "ALGORITHM".to_owned(),
        "STATE".to_owned(),
        "PUBLISHED".to_owned(),
        "NEXT EVENT".to_owned(),
    ]];
    for meta in &zone_keys.lifecycle.keys {
        let algorithm = zone_keys
            .key(meta.tag)
            .map_or("?", |k| k.algorithm().mnemonic());
        let mut state = meta.state(now).to_string();
        if apex.cds == Some(meta.tag) {
            state.push_str(", CDS");
        }
        let next = match zone_keys.lifecycle.next_event(meta.tag, now, timing) {
            Some(next) => match next.at {
                Some(at) => format!("{} {}", next.event.name(), rfc3339(at)),
                None if next.event == Event::DsSeen => {
                    "ds-seen (when the parent serves the new DS)".to_owned()
                }
                None => next.event.name().to_owned(),
            },
            None => "-".to_owned(),
        };
        rows.push([
            meta.tag.to_string(),
            meta.role.to_string(),
            algorithm.to_owned(),
            state,
            meta.published
                .map_or("-".to_owned(), |t| rfc3339(t).to_string()),
            next,
        ]);
    }
    let mut widths = [0; 6];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut text = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:width$}  ");
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    for stray in &zone_keys.strays {
        let _ = writeln!(
            text,
            "not in use: {} (not in {}; lbdns keys import takes it in)",
            stray.display(),
            crate::dnssec::keystate::STATE_FILE
        );
    }
    Ok(text)
}

/// `lbdns keys ds`: the DS of the KSK whose CDS the zone publishes, the one the parent
/// should hold now, as `dnssec-dsfromkey -2` prints it.
pub fn ds(dir: &Path, origin: &Name) -> Result<String, String> {
    let (_, zone_keys) = open(dir, origin)?;
    let apex = zone_keys.lifecycle.apex(now());
    let tag = apex
        .cds
        .ok_or_else(|| format!("{origin} has no KSK in use: no DS to give the parent"))?;
    let key = zone_keys.key(tag).ok_or("the KSK's files are missing")?;
    let owner = origin.to_bytes().map_err(|e| e.to_string())?;
    let rdata = key.ds_rdata(&owner);
    Ok(format!(
        "{} IN DS {} {} {} {}\n",
        origin.to_ascii().to_ascii_lowercase(),
        tag,
        rdata[2],
        rdata[3],
        HEXUPPER.encode(&rdata[4..])
    ))
}

/// `lbdns keys roll-zsk`: a new ZSK, published now; says when it signs and the old one goes.
pub fn roll_zsk(dir: &Path, origin: &Name, timing: &Timing) -> Result<String, String> {
    let (keys, mut zone_keys) = open(dir, origin)?;
    let now = now();
    let algorithm = zone_keys.algorithm(Role::Zsk, Algorithm::default());
    let key = keys
        .generate(&zone_keys, algorithm, Role::Zsk)
        .map_err(|e| e.to_string())?;
    let tag = key.key_tag();
    zone_keys
        .lifecycle
        .roll_zsk(tag, now, timing)
        .map_err(|e| format!("{origin}: {e}"))?;
    zone_keys.keys.push(key);
    keys.save(&mut zone_keys, &[]).map_err(|e| e.to_string())?;
    let old = zone_keys
        .lifecycle
        .keys
        .iter()
        .find(|k| k.role == Role::Zsk && k.tag != tag && k.removed.is_some_and(|t| t > now));
    let mut text = format!(
        "ZSK {tag} published; it signs from {}",
        rfc3339(now + timing.publish_interval())
    );
    if let Some(old) = old {
        let _ = write!(
            text,
            "; ZSK {} leaves the zone at {}",
            old.tag,
            rfc3339(old.removed.unwrap_or(now))
        );
    }
    text.push_str(".\n");
    Ok(text)
}

/// `lbdns keys roll-ksk`: a new KSK signing beside the old one; with `ds_seen`, the
/// parent's DS has moved to it and the old one can go.
pub fn roll_ksk(
    dir: &Path,
    origin: &Name,
    timing: &Timing,
    ds_seen: bool,
) -> Result<String, String> {
    let (keys, mut zone_keys) = open(dir, origin)?;
    let now = now();
    if ds_seen {
        let new = zone_keys
            .lifecycle
            .ds_seen(now, timing)
            .map_err(|e| format!("{origin}: {e}"))?;
        keys.save(&mut zone_keys, &[]).map_err(|e| e.to_string())?;
        return Ok(format!(
            "KSK {new} is the zone's KSK; the old one leaves at {}.\n",
            rfc3339(now + timing.ksk_retire_interval())
        ));
    }
    let algorithm = zone_keys.algorithm(Role::Ksk, Algorithm::default());
    let key = keys
        .generate(&zone_keys, algorithm, Role::Ksk)
        .map_err(|e| e.to_string())?;
    let tag = key.key_tag();
    zone_keys
        .lifecycle
        .roll_ksk(tag, now, timing)
        .map_err(|e| format!("{origin}: {e}"))?;
    zone_keys.keys.push(key);
    keys.save(&mut zone_keys, &[]).map_err(|e| e.to_string())?;
    Ok(format!(
        "KSK {tag} published and signing the DNSKEY RRset; its CDS/CDNSKEY replace the old \
         KSK's at {} (then `lbdns keys ds` prints its DS for the parent); once the parent \
         serves it, run `lbdns keys roll-ksk --ds-seen {origin}`.\n",
        rfc3339(now + timing.publish_interval())
    ))
}

/// `lbdns keys import`: BIND key files made elsewhere (either file of each key), in use
/// from now in the role their flags say.
pub fn import(dir: &Path, origin: &Name, files: &[PathBuf]) -> Result<String, String> {
    let path = key_dir(dir, origin);
    let keys = KeyDir::open(&path, &origin.to_ascii()).map_err(|e| e.to_string())?;
    let now = now();
    let mut zone_keys = keys.load(now).map_err(|e| e.to_string())?;
    let mut text = String::new();
    for file in files {
        let tag = keys
            .import(&mut zone_keys, file, now)
            .map_err(|e| e.to_string())?;
        let role = zone_keys.lifecycle.key(tag).map(|k| k.role);
        let _ = writeln!(
            text,
            "imported {} {tag} from {}",
            role.map_or("key".to_owned(), |r| r.to_string()),
            file.display()
        );
    }
    keys.save(&mut zone_keys, &[]).map_err(|e| e.to_string())?;
    Ok(text)
}
