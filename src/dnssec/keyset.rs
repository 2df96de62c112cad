//! A zone's keys in `keys/<origin>/` of the served directory (SPEC §11): every key BIND's
//! files there describe, and a KSK and a ZSK of the policy's algorithm made at the first
//! load when none is active.

use std::path::{Path, PathBuf};

use hickory_proto::rr::Name;

use super::key::{Algorithm, KSK, KeyError, ZSK, ZoneKey, unix_now};
use crate::site::dnssec::DnssecPolicy;

/// The keys of one zone.
#[derive(Debug)]
pub struct KeySet {
    /// Where the key files are.
    pub dir: PathBuf,
    /// Every key read from `dir`, in file name order.
    pub keys: Vec<ZoneKey>,
}

impl KeySet {
    /// Reads the zone's keys from `dir`, first making it (mode 0700) and a KSK and ZSK of
    /// `policy`'s algorithm when it holds no active one.
    pub fn load_or_create(
        dir: &Path,
        origin: &Name,
        policy: &DnssecPolicy,
    ) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: dir.to_owned(),
            source,
        };
        super::key::create_key_dir(dir).map_err(io)?;
        let zone = origin.to_ascii().to_ascii_lowercase();
        let prefix = format!("k{zone}+");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
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
        let mut keys = paths
            .iter()
            .map(|path| ZoneKey::read_files(path))
            .collect::<Result<Vec<_>, _>>()?;
        let now = unix_now();
        for flags in [KSK, ZSK] {
            let has = keys.iter().any(|k| {
                k.flags() == flags && k.algorithm() == policy.algorithm && is_active(k, now)
            });
            if !has {
                let key = ZoneKey::generate(policy.algorithm, flags)?;
                key.write_files(dir, &zone)?;
                keys.push(key);
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            keys,
        })
    }

    /// The keys whose DNSKEY is in the zone at `now`.
    pub fn published(&self, now: u64) -> impl Iterator<Item = &ZoneKey> {
        self.keys.iter().filter(move |k| is_published(k, now))
    }

    /// The active KSKs at `now`, which sign the DNSKEY RRset.
    pub fn active_ksks(&self, now: u64) -> impl Iterator<Item = &ZoneKey> {
        self.keys
            .iter()
            .filter(move |k| k.is_ksk() && is_active(k, now))
    }

    /// The active ZSKs at `now` of `algorithm`, which sign everything else; the first is
    /// the one used.
    pub fn active_zsks(&self, now: u64, algorithm: Algorithm) -> impl Iterator<Item = &ZoneKey> {
        self.keys
            .iter()
            .filter(move |k| !k.is_ksk() && k.algorithm() == algorithm && is_active(k, now))
    }
}

/// Published from its `Publish` time (or its activation) until its `Delete` time.
pub fn is_published(key: &ZoneKey, now: u64) -> bool {
    let from = key.times.publish.or(key.times.activate);
    from.is_some_and(|t| t <= now) && key.times.delete.is_none_or(|t| t > now)
}

/// Signing from its `Activate` time until its `Inactive` time.
pub fn is_active(key: &ZoneKey, now: u64) -> bool {
    key.times.activate.is_some_and(|t| t <= now)
        && key.times.inactive.is_none_or(|t| t > now)
        && is_published(key, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_at_first_load_and_read_afterwards() {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("keys/example.com");
        let origin = Name::from_ascii("example.com.").unwrap();
        let policy = DnssecPolicy::default();
        let first = KeySet::load_or_create(&keys_dir, &origin, &policy).unwrap();
        assert_eq!(first.keys.len(), 2);
        let now = unix_now();
        assert_eq!(first.active_ksks(now).count(), 1);
        assert_eq!(first.active_zsks(now, policy.algorithm).count(), 1);
        let again = KeySet::load_or_create(&keys_dir, &origin, &policy).unwrap();
        let tags = |set: &KeySet| {
            let mut tags: Vec<u16> = set.keys.iter().map(ZoneKey::key_tag).collect();
            tags.sort();
            tags
        };
        assert_eq!(tags(&first), tags(&again));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keys_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
