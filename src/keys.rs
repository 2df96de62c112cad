//! `lbdns keys`: a zone's DNSSEC keys in the served directory (SPEC §11). Like `lbdns
//! check`, each action works on the files, not through a server: it changes
//! `keys/<origin>/` under the directory's key lock, and a running server takes the change
//! at its next reload (SIGHUP, or the reload a zone or site file edit triggers). In a zone
//! lbdns signs, every action that opens the keys first takes the steps due now with the
//! server's own step function ([`open_and_advance`]), so both see the same lifecycle.
//!
//! - `list`: each key, its role, state and next event, then how the zone is signed;
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
use crate::dnssec::keydir::{KeyDir, ZoneKeys, open_and_advance};
use crate::dnssec::lifecycle::{Event, Role, Timing, now, rfc3339};
use crate::dnssec::sign;
use crate::site::dnssec::DnssecPolicy;

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

/// What the zone's files say about its keys: the lifecycle's intervals (from the zone
/// file's TTLs and the site file's `zsk_lifetime`) and, when lbdns signs the zone (its
/// site file has `dnssec:`), the policy. A zone signed elsewhere gets no automatic step:
/// its keys change only by command.
pub struct Zone {
    pub timing: Timing,
    pub policy: Option<DnssecPolicy>,
}

impl Zone {
    /// Reads `dir/zones/<origin>.zone` and, when there is one, its site file.
    pub fn read(dir: &Path, origin: &Name) -> Result<Zone, String> {
        let zones = dir.join("zones");
        let site = crate::load::site_path(&zones, origin);
        let policy = if site.exists() {
            let (_, site) = crate::site::load(&site, origin).map_err(|e| e.to_string())?;
            site.dnssec
        } else {
            None
        };
        let name = origin.to_ascii().to_ascii_lowercase();
        let path = zones.join(format!("{}.zone", name.trim_end_matches('.')));
        let zone = crate::zone::load(&path, origin).map_err(|e| e.to_string())?;
        let never_rolled = DnssecPolicy {
            zsk_lifetime: None,
            ..DnssecPolicy::default()
        };
        let timing = sign::key_timing(&zone, policy.as_ref().unwrap_or(&never_rolled));
        Ok(Zone { timing, policy })
    }
}

/// Opens the zone's key directory, which must hold its keys already, and, when lbdns
/// signs the zone, takes the steps due now as the server does at each load.
fn open(dir: &Path, origin: &Name, zone: &Zone) -> Result<(KeyDir, ZoneKeys), String> {
    let path = key_dir(dir, origin);
    if !path.is_dir() {
        return Err(format!(
            "{}: no keys for {origin} (lbdns makes them at the first load of a zone whose site \
             file has a dnssec: block; keys made elsewhere come in with import)",
            path.display()
        ));
    }
    let now = now();
    let name = origin.to_ascii();
    match &zone.policy {
        Some(policy) => open_and_advance(&path, &name, policy.algorithm, &zone.timing, now),
        None => KeyDir::open(&path, &name).and_then(|dir| {
            let keys = dir.load(now)?;
            Ok((dir, keys))
        }),
    }
    .map_err(|e| e.to_string())
}

/// `lbdns keys list`: a table of the keys, with a line per key file not in use.
pub fn list(dir: &Path, origin: &Name, zone: &Zone) -> Result<String, String> {
    let (_, zone_keys) = open(dir, origin, zone)?;
    let timing = &zone.timing;
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
    let _ = match &zone.policy {
        Some(policy) => writeln!(text, "signed by lbdns: {policy}"),
        None => writeln!(
            text,
            "not signed by lbdns (no dnssec: in the site file): its keys change only by command"
        ),
    };
    Ok(text)
}

/// `lbdns keys ds`: the DS of the KSK whose CDS the zone publishes, the one the parent
/// should hold now, as `dnssec-dsfromkey -2` prints it.
pub fn ds(dir: &Path, origin: &Name, zone: &Zone) -> Result<String, String> {
    let (_, zone_keys) = open(dir, origin, zone)?;
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
pub fn roll_zsk(dir: &Path, origin: &Name, zone: &Zone) -> Result<String, String> {
    let (keys, mut zone_keys) = open(dir, origin, zone)?;
    let timing = &zone.timing;
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
pub fn roll_ksk(dir: &Path, origin: &Name, zone: &Zone, ds_seen: bool) -> Result<String, String> {
    let (keys, mut zone_keys) = open(dir, origin, zone)?;
    let timing = &zone.timing;
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
