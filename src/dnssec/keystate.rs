//! The lifecycle's state file, `keys/<origin>/lifecycle.yaml` beside the zone's BIND key
//! files: each key's tag, role and RFC 7583 times, one file rewritten atomically, so a
//! rollover's steps (the new key's times and the old key's retirement) land together or
//! not at all, whatever happens to the process.
//!
//! ```yaml
//! version: 1
//! keys:
//! - tag: 20443
//!   role: ksk
//!   created: "2026-12-05T13:00:00Z"
//!   published: "2026-12-05T13:00:00Z"
//!   active: "2026-12-05T13:00:00Z"
//!   submitted: "2026-12-05T13:00:00Z"
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::lifecycle::{KeyMeta, Lifecycle};
use crate::persist::write_atomically;

/// The file's name in the zone's key directory.
pub const STATE_FILE: &str = "lifecycle.yaml";

/// The format this build writes and reads.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    #[serde(default)]
    keys: Vec<KeyMeta>,
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: version {found} is not one this lbdns reads (it reads version {VERSION})")]
    Version { path: PathBuf, found: u32 },
}

/// The path of the state file in the key directory `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

/// Reads the state file of the key directory `dir`; `None` when there is none yet.
pub fn read(dir: &Path) -> Result<Option<Lifecycle>, StateError> {
    let path = path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Io { path, source }),
    };
    let file: StateFile = serde_saphyr::from_str(&text).map_err(|e| StateError::Format {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if file.version != VERSION {
        return Err(StateError::Version {
            path,
            found: file.version,
        });
    }
    let mut tags: Vec<u16> = file.keys.iter().map(|k| k.tag).collect();
    tags.sort_unstable();
    if let Some(pair) = tags.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(StateError::Format {
            path,
            message: format!("key tag {} is listed twice", pair[0]),
        });
    }
    Ok(Some(Lifecycle { keys: file.keys }))
}

/// Writes `lifecycle` as the state file of the key directory `dir`, atomically.
pub fn write(dir: &Path, lifecycle: &Lifecycle) -> Result<(), StateError> {
    let path = path(dir);
    let file = StateFile {
        version: VERSION,
        keys: lifecycle.keys.clone(),
    };
    let text = serde_saphyr::to_string(&file).map_err(|e| StateError::Format {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let text = if text.ends_with('\n') {
        text
    } else {
        text + "\n"
    };
    write_atomically(&path, text.as_bytes()).map_err(|source| StateError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dnssec::lifecycle::{Role, Timing};

    const T0: u64 = 1_800_000_000; // 2027-01-15T08:00:00Z

    #[test]
    fn a_rollover_survives_a_restart_and_the_file_reads_as_utc_times() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_none());
        let timing = Timing {
            dnskey_ttl: 3600,
            max_zone_ttl: 3600,
            propagation_delay: 3600,
            parent_ds_ttl: 3600,
            zsk_lifetime: 0,
        };
        let mut keys = Lifecycle::start(1, 2, T0).unwrap();
        keys.roll_zsk(3, T0, &timing).unwrap();
        write(dir.path(), &keys).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(keys));
        let text = std::fs::read_to_string(path(dir.path())).unwrap();
        assert!(text.contains("version: 1\n"), "{text}");
        // Handover at T0 + 2 h, removal 2 h later.
        assert!(
            text.contains("retired: \"2027-01-15T10:00:00Z\"\n"),
            "{text}"
        );
        assert!(
            text.contains("removed: \"2027-01-15T12:00:00Z\"\n"),
            "{text}"
        );
    }

    #[test]
    fn a_damaged_file_is_refused_with_its_path_and_the_fault() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        let cases = [
            (
                "version: 2\nkeys: []\n",
                "version 2 is not one this lbdns reads",
            ),
            (
                "version: 1\nkeys:\n- tag: 1\n  role: csk\n  created: 2027-01-15T08:00:00Z\n",
                "csk",
            ),
            (
                "version: 1\nkeys:\n- tag: 1\n  role: zsk\n  created: yesterday\n",
                "\"yesterday\" is not a time like 2026-12-05T13:00:00Z",
            ),
            (
                "version: 1\nkeys:\n- {tag: 4, role: zsk, created: 2027-01-15T08:00:00Z}\n- {tag: 4, role: ksk, created: 2027-01-15T08:00:00Z}\n",
                "key tag 4 is listed twice",
            ),
        ];
        for (text, expected) in cases {
            std::fs::write(&file, text).unwrap();
            let err = read(dir.path()).unwrap_err().to_string();
            assert!(err.starts_with(&file.display().to_string()), "{err}");
            assert!(err.contains(expected), "{text}: {err}");
        }
        let keys = Lifecycle::start(1, 2, T0).unwrap();
        write(dir.path(), &keys).unwrap();
        let read_back = read(dir.path()).unwrap().unwrap();
        assert_eq!(read_back.key(1).map(|k| k.role), Some(Role::Ksk));
    }
}
