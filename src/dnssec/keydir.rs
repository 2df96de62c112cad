//! A zone's key directory, `keys/<origin>/` of the served directory (SPEC §11): BIND's key
//! files (`K<zone>+<alg>+<tag>.key` and `.private`, mode 0600) and the lifecycle's state file
//! (`keystate`), which says which of those keys the zone uses and when.
//!
//! The state file is the commit point of every change. A change writes new key files
//! first, then the state file, then deletes the files of keys that have left the zone, so a
//! crash leaves at worst a key file the state does not name: it is ignored (and reported),
//! never served. Each key's BIND timing fields (Publish, Activate, Inactive, Delete,
//! SyncPublish) are rewritten to match the lifecycle, so `dnssec-settime -p all` shows
//! what lbdns does.
//!
//! The server and `lbdns keys` both change the directory; each holds an exclusive `flock`
//! on it from reading to writing, so their steps never interleave.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::key::{Algorithm, KeyError, KeyTimes, ZoneKey};
use super::keystate::{self, StateError};
use super::lifecycle::{KeyMeta, Lifecycle, LifecycleError, Role, Time, Timing};

/// Why a key directory could not be read or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyDirError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(
        "{dir}: {state} names key {tag}, whose files K{zone}+*+{tag:05}.key/.private are missing"
    )]
    MissingKey {
        dir: PathBuf,
        state: &'static str,
        zone: String,
        tag: u16,
    },
    #[error("{path}: a {found} key, not a {expected}")]
    WrongRole {
        path: PathBuf,
        found: Role,
        expected: Role,
    },
    #[error("{path}: the key is for {found}, not {expected}")]
    WrongZone {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

/// The zone's key directory, locked while this value lives.
pub struct KeyDir {
    dir: PathBuf,
    /// The zone's name as BIND's file names and records spell it: lowercase, final dot.
    zone: String,
    _lock: File,
}

/// The keys of a zone and their lifecycle, as read from its directory.
pub struct ZoneKeys {
    /// Each key the lifecycle names, in the lifecycle's order.
    pub keys: Vec<ZoneKey>,
    pub lifecycle: Lifecycle,
    /// Key files in the directory the lifecycle does not name (not used).
    pub strays: Vec<PathBuf>,
}

impl ZoneKeys {
    /// The key with tag `tag`.
    pub fn key(&self, tag: u16) -> Option<&ZoneKey> {
        self.keys.iter().find(|k| k.key_tag() == tag)
    }

    /// The algorithm keys of `role` are made with: that of the newest such key, else
    /// `default`.
    pub fn algorithm(&self, role: Role, default: Algorithm) -> Algorithm {
        self.keys
            .iter()
            .rev()
            .find(|k| k.is_ksk() == (role == Role::Ksk))
            .map_or(default, ZoneKey::algorithm)
    }
}

impl KeyDir {
    /// Opens the key directory `dir` of `zone` (made, mode 0700, when missing) and waits
    /// for its lock.
    pub fn open(dir: &Path, zone: &str) -> Result<KeyDir, KeyDirError> {
        let io = |source| KeyDirError::Io {
            path: dir.to_owned(),
            source,
        };
        super::key::create_key_dir(dir).map_err(io)?;
        let lock = File::open(dir).map_err(io)?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io(e.into()))?;
        let mut zone = zone.trim_end_matches('.').to_ascii_lowercase();
        zone.push('.');
        Ok(KeyDir {
            dir: dir.to_owned(),
            zone,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Reads the keys and the lifecycle. A directory without a state file (made by an older
    /// lbdns, or filled by hand with BIND's tools) takes its lifecycle from the key files'
    /// BIND times, or from `now` for a key without them.
    pub fn load(&self, now: Time) -> Result<ZoneKeys, KeyDirError> {
        let mut files = self.key_files()?;
        let state = keystate::read(&self.dir)?;
        let adopted = state.is_none();
        let mut lifecycle = state.unwrap_or_default();
        if adopted {
            for (_, key) in &files {
                let role = role_of(key);
                lifecycle
                    .keys
                    .push(meta_from_times(key.key_tag(), role, &key.times, now));
            }
        }
        let mut keys = Vec::with_capacity(lifecycle.keys.len());
        for meta in &lifecycle.keys {
            let at = files
                .iter()
                .position(|(_, key)| key.key_tag() == meta.tag && role_of(key) == meta.role)
                .ok_or_else(|| KeyDirError::MissingKey {
                    dir: self.dir.clone(),
                    state: keystate::STATE_FILE,
                    zone: self.zone.clone(),
                    tag: meta.tag,
                })?;
            keys.push(files.swap_remove(at).1);
        }
        let strays = files.into_iter().map(|(path, _)| path).collect();
        let mut zone_keys = ZoneKeys {
            keys,
            lifecycle,
            strays,
        };
        sync_times(&mut zone_keys);
        Ok(zone_keys)
    }

    /// The zone's key files, each read.
    fn key_files(&self) -> Result<Vec<(PathBuf, ZoneKey)>, KeyDirError> {
        let prefix = format!("k{}+", self.zone);
        let entries = std::fs::read_dir(&self.dir).map_err(|source| KeyDirError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                path.extension().is_some_and(|e| e == "key")
                    && path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.to_ascii_lowercase().starts_with(&prefix))
            })
            .collect();
        paths.sort();
        paths
            .into_iter()
            .map(|path| Ok((path.clone(), ZoneKey::read_files(&path)?)))
            .collect()
    }

    /// A new key of `role` whose tag no key of the zone has (drawn again on a clash).
    pub fn generate(
        &self,
        zone_keys: &ZoneKeys,
        algorithm: Algorithm,
        role: Role,
    ) -> Result<ZoneKey, KeyDirError> {
        loop {
            let key = ZoneKey::generate(algorithm, role.flags())?;
            let tag = key.key_tag();
            let clash = zone_keys.lifecycle.key(tag).is_some()
                || zone_keys.keys.iter().any(|k| k.key_tag() == tag);
            if !clash {
                return Ok(key);
            }
        }
    }

    /// Takes the key in BIND's files at `path` (either file) into the zone, signing from
    /// `now` in the role its flags give: it is already in the DNSKEY RRset of the zone
    /// signed elsewhere. Its files are copied into the directory.
    pub fn import(
        &self,
        zone_keys: &mut ZoneKeys,
        path: &Path,
        now: Time,
    ) -> Result<u16, KeyDirError> {
        let key = ZoneKey::read_files(path)?;
        let named = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix('K'))
            .and_then(|n| n.rsplit_once('+')?.0.rsplit_once('+'))
            .map(|(zone, _)| zone.to_ascii_lowercase());
        if let Some(found) = named.filter(|z| *z != self.zone) {
            return Err(KeyDirError::WrongZone {
                path: path.to_owned(),
                found,
                expected: self.zone.clone(),
            });
        }
        let tag = key.key_tag();
        zone_keys.lifecycle.import(tag, role_of(&key), now)?;
        zone_keys.keys.push(key);
        Ok(tag)
    }

    /// Writes the keys' files and then the state file (the commit point), then deletes the
    /// files of `gone`, keys that have left the zone.
    pub fn save(&self, zone_keys: &mut ZoneKeys, gone: &[KeyMeta]) -> Result<(), KeyDirError> {
        sync_times(zone_keys);
        for key in &zone_keys.keys {
            key.write_files(&self.dir, &self.zone)?;
        }
        keystate::write(&self.dir, &zone_keys.lifecycle)?;
        for meta in gone {
            let Some(at) = zone_keys.keys.iter().position(|k| k.key_tag() == meta.tag) else {
                continue;
            };
            let key = zone_keys.keys.remove(at);
            let stem = key.file_stem(&self.zone);
            for ext in ["key", "private"] {
                let path = self.dir.join(format!("{stem}.{ext}"));
                if let Err(source) = std::fs::remove_file(&path)
                    && source.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(KeyDirError::Io { path, source });
                }
            }
        }
        Ok(())
    }
}

/// Opens the key directory `path` of `zone` and takes every step of its keys due at
/// `now` ([`advance`]): the one step function of the server (at each load and on its
/// timer) and of `lbdns keys`. The directory stays locked while the [`KeyDir`] lives.
pub fn open_and_advance(
    path: &Path,
    zone: &str,
    algorithm: Algorithm,
    timing: &Timing,
    now: Time,
) -> Result<(KeyDir, ZoneKeys), KeyDirError> {
    let dir = KeyDir::open(path, zone)?;
    let mut zone_keys = dir.load(now)?;
    advance(&dir, &mut zone_keys, algorithm, timing, now)?;
    Ok((dir, zone_keys))
}

/// What a zone's keys need at `now` without anyone asking: a first KSK and ZSK, a ZSK
/// rollover that is due, the files of removed keys deleted. Returns whether anything
/// changed (then the caller saves and the zone is signed again).
pub fn advance(
    dir: &KeyDir,
    zone_keys: &mut ZoneKeys,
    algorithm: Algorithm,
    timing: &Timing,
    now: Time,
) -> Result<bool, KeyDirError> {
    let mut changed = false;
    for role in [Role::Ksk, Role::Zsk] {
        let has = zone_keys
            .lifecycle
            .keys
            .iter()
            .any(|k| k.role == role && k.removed.is_none());
        if !has {
            let key = dir.generate(zone_keys, algorithm, role)?;
            zone_keys.lifecycle.import(key.key_tag(), role, now)?;
            zone_keys.keys.push(key);
            changed = true;
        }
    }
    if zone_keys
        .lifecycle
        .zsk_roll_due(now, timing)
        .is_some_and(|due| due <= now)
    {
        let algorithm = zone_keys.algorithm(Role::Zsk, algorithm);
        let key = dir.generate(zone_keys, algorithm, Role::Zsk)?;
        zone_keys.lifecycle.roll_zsk(key.key_tag(), now, timing)?;
        zone_keys.keys.push(key);
        changed = true;
    }
    let gone = zone_keys.lifecycle.purge(now);
    if changed || !gone.is_empty() {
        dir.save(zone_keys, &gone)?;
        changed = true;
    }
    Ok(changed)
}

fn role_of(key: &ZoneKey) -> Role {
    if key.is_ksk() { Role::Ksk } else { Role::Zsk }
}

/// A key's lifecycle from BIND's timing fields (a key without them: made and signing at
/// `now`).
fn meta_from_times(tag: u16, role: Role, times: &KeyTimes, now: Time) -> KeyMeta {
    let active = times.activate.or(times.publish).unwrap_or(now);
    KeyMeta {
        tag,
        role,
        created: times.created.unwrap_or(active.min(now)),
        published: Some(times.publish.unwrap_or(active)),
        active: Some(active),
        submitted: match role {
            Role::Ksk => Some(times.sync_publish.unwrap_or(active)),
            Role::Zsk => None,
        },
        retired: times.inactive,
        removed: times.delete,
    }
}

/// Sets each key's BIND times to its lifecycle's.
fn sync_times(zone_keys: &mut ZoneKeys) {
    for key in &mut zone_keys.keys {
        let tag = key.key_tag();
        if let Some(meta) = zone_keys.lifecycle.key(tag) {
            key.times = KeyTimes {
                created: Some(meta.created),
                publish: meta.published,
                activate: meta.active,
                inactive: meta.retired,
                delete: meta.removed,
                sync_publish: meta.submitted,
                sync_delete: key.times.sync_delete.filter(|_| meta.submitted.is_none()),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Time = 1_800_000_000;
    const HOUR: u64 = 3600;
    const TIMING: Timing = Timing {
        dnskey_ttl: HOUR,
        max_zone_ttl: HOUR,
        propagation_delay: HOUR,
        parent_ds_ttl: HOUR,
        zsk_lifetime: 10 * HOUR,
    };

    fn key_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn first_keys_then_a_zsk_rollover_land_in_the_files() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keys/example.com");
        let dir = KeyDir::open(&path, "Example.COM").unwrap();
        let mut keys = dir.load(T0).unwrap();
        assert!(advance(&dir, &mut keys, Algorithm::EcdsaP256Sha256, &TIMING, T0).unwrap());
        let (ksk, zsk) = (keys.lifecycle.keys[0].tag, keys.lifecycle.keys[1].tag);
        assert!(!advance(&dir, &mut keys, Algorithm::EcdsaP256Sha256, &TIMING, T0).unwrap());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let stem = |tag: u16| format!("Kexample.com.+013+{tag:05}");
        let mut expected = vec![
            format!("{}.key", stem(ksk)),
            format!("{}.private", stem(ksk)),
            format!("{}.key", stem(zsk)),
            format!("{}.private", stem(zsk)),
            "lifecycle.yaml".to_owned(),
        ];
        expected.sort();
        assert_eq!(key_files(&path), expected);

        // The rollover is due Ipub (2 h) before the 10 h lifetime ends.
        let due = T0 + 8 * HOUR;
        assert!(!advance(&dir, &mut keys, Algorithm::Ed25519, &TIMING, due - 1).unwrap());
        assert!(advance(&dir, &mut keys, Algorithm::Ed25519, &TIMING, due).unwrap());
        drop(dir);
        let dir = KeyDir::open(&path, "example.com").unwrap();
        let again = dir.load(due).unwrap();
        let new = again.lifecycle.keys[2].tag;
        // The ZSK keeps its algorithm, whatever the policy says now.
        assert_eq!(
            again.key(new).unwrap().algorithm(),
            Algorithm::EcdsaP256Sha256
        );
        assert_eq!(again.key(new).unwrap().times.activate, Some(due + 2 * HOUR));
        let private = std::fs::read_to_string(path.join(format!("{}.private", stem(zsk)))).unwrap();
        // BIND's own fields tell dnssec-settime when the old ZSK stops signing and leaves.
        assert!(private.contains("Inactive: 20270115180000\n"), "{private}");
        assert!(private.contains("Delete: 20270115200000\n"), "{private}");

        // Removed: its files go.
        let mut keys = again;
        let removal = due + 2 * HOUR + 2 * HOUR;
        assert!(advance(&dir, &mut keys, Algorithm::Ed25519, &TIMING, removal).unwrap());
        assert!(!key_files(&path).iter().any(|n| n.starts_with(&stem(zsk))));
        assert_eq!(dir.load(removal).unwrap().keys.len(), 2);
    }

    /// Which keys sign at `now` after the step function ran, by role: (DNSKEY RRset,
    /// DNSKEY signers, zone signer, CDS), as tags.
    fn step(path: &Path, now: Time) -> (Vec<u16>, Vec<u16>, u16, Option<u16>) {
        let (_, keys) =
            open_and_advance(path, "example.com", Algorithm::Ed25519, &TIMING, now).unwrap();
        let apex = keys.lifecycle.apex(now);
        let signers = crate::dnssec::sign::Signers::of(&keys, &apex).unwrap();
        let tags = |keys: &[&ZoneKey]| keys.iter().map(|k| k.key_tag()).collect::<Vec<_>>();
        (
            tags(&signers.dnskey),
            tags(&signers.ksks),
            signers.zsk.key_tag(),
            signers.cds.map(ZoneKey::key_tag),
        )
    }

    #[test]
    fn the_step_function_drives_both_rollovers_with_an_injected_clock() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keys/example.com");
        let (dnskey, ksks, zsk, cds) = step(&path, T0);
        let ksk = ksks[0];
        assert_eq!((dnskey.len(), ksks.len(), cds), (2, 1, Some(ksk)));

        // ZSK: rolled Ipub (2 h) before its 10 h lifetime ends, by the step alone.
        let due = T0 + 8 * HOUR;
        assert_eq!(
            step(&path, due - 1),
            (dnskey.clone(), ksks.clone(), zsk, cds)
        );
        let (during, _, signer, _) = step(&path, due);
        assert_eq!(
            (during.len(), signer),
            (3, zsk),
            "published, not signing yet"
        );
        let new_zsk = *during.iter().find(|t| !dnskey.contains(t)).unwrap();
        let (after, _, signer, _) = step(&path, due + 2 * HOUR);
        assert_eq!(
            (after.len(), signer),
            (3, new_zsk),
            "the old ZSK is retired"
        );
        let (gone, _, _, _) = step(&path, due + 4 * HOUR);
        assert_eq!(gone.len(), 2);
        assert!(!gone.contains(&zsk));

        // KSK: started by command, then the CDS moves after Ipub, the old key leaves Iret
        // after the DS is seen.
        let start = due + 5 * HOUR;
        {
            let dir = KeyDir::open(&path, "example.com").unwrap();
            let mut keys = dir.load(start).unwrap();
            let key = dir.generate(&keys, Algorithm::Ed25519, Role::Ksk).unwrap();
            keys.lifecycle
                .roll_ksk(key.key_tag(), start, &TIMING)
                .unwrap();
            keys.keys.push(key);
            dir.save(&mut keys, &[]).unwrap();
        }
        let (dnskey, ksks, _, cds) = step(&path, start);
        assert_eq!((dnskey.len(), ksks.len(), cds), (3, 2, Some(ksk)));
        let new_ksk = *ksks.iter().find(|&&t| t != ksk).unwrap();
        let (_, _, _, cds) = step(&path, start + 2 * HOUR);
        assert_eq!(cds, Some(new_ksk));
        let seen = start + 3 * HOUR;
        {
            let dir = KeyDir::open(&path, "example.com").unwrap();
            let mut keys = dir.load(seen).unwrap();
            keys.lifecycle.ds_seen(seen, &TIMING).unwrap();
            dir.save(&mut keys, &[]).unwrap();
        }
        // Both sign until the old DS has left the caches (Dprp + DS TTL: 2 h).
        assert_eq!(step(&path, seen + 2 * HOUR - 1).1.len(), 2);
        let (dnskey, ksks, signer, cds) = step(&path, seen + 2 * HOUR);
        assert_eq!((ksks, cds, signer), (vec![new_ksk], Some(new_ksk), new_zsk));
        // The old KSK is gone; the next ZSK rollover (every 10 h) has just begun.
        assert_eq!(dnskey.len(), 3);
        assert!(!dnskey.contains(&ksk));
        assert!(
            !key_files(&path)
                .iter()
                .any(|n| n.contains(&format!("{ksk:05}")))
        );
    }

    #[test]
    fn a_key_the_state_names_must_have_its_files_and_strays_are_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = KeyDir::open(tmp.path(), "example.com").unwrap();
        let mut keys = dir.load(T0).unwrap();
        advance(&dir, &mut keys, Algorithm::Ed25519, &TIMING, T0).unwrap();
        let stray = ZoneKey::generate(Algorithm::Ed25519, 256).unwrap();
        let stray_path = stray.write_files(tmp.path(), "example.com.").unwrap();
        assert_eq!(dir.load(T0).unwrap().strays, [stray_path]);

        let zsk = keys.lifecycle.keys[1].tag;
        let stem = format!("Kexample.com.+015+{zsk:05}");
        std::fs::remove_file(tmp.path().join(format!("{stem}.key"))).unwrap();
        let err = dir.load(T0).err().unwrap().to_string();
        assert!(
            err.contains(&format!("lifecycle.yaml names key {zsk}, whose files K")),
            "{err}"
        );
    }

    #[test]
    fn a_directory_without_state_takes_the_bind_times_and_import_checks_the_zone() {
        let tmp = tempfile::tempdir().unwrap();
        let mut ksk = ZoneKey::generate(Algorithm::EcdsaP256Sha256, 257).unwrap();
        ksk.times = KeyTimes {
            publish: Some(T0 - 10),
            activate: Some(T0 - 5),
            ..KeyTimes::default()
        };
        ksk.write_files(tmp.path(), "example.com").unwrap();
        let dir = KeyDir::open(tmp.path(), "example.com.").unwrap();
        let mut keys = dir.load(T0).unwrap();
        let meta = keys.lifecycle.key(ksk.key_tag()).unwrap().clone();
        assert_eq!(
            (meta.role, meta.published, meta.active),
            (Role::Ksk, Some(T0 - 10), Some(T0 - 5))
        );

        let elsewhere = tempfile::tempdir().unwrap();
        let zsk = ZoneKey::generate(Algorithm::EcdsaP256Sha256, 256).unwrap();
        let other = zsk.write_files(elsewhere.path(), "example.net").unwrap();
        let err = dir.import(&mut keys, &other, T0).unwrap_err().to_string();
        assert!(
            err.ends_with("the key is for example.net., not example.com."),
            "{err}"
        );
        let right = zsk.write_files(elsewhere.path(), "example.com").unwrap();
        assert_eq!(dir.import(&mut keys, &right, T0).unwrap(), zsk.key_tag());
        dir.save(&mut keys, &[]).unwrap();
        assert_eq!(
            dir.load(T0).unwrap().lifecycle.apex(T0).zone_signer,
            Some(zsk.key_tag())
        );
    }
}
