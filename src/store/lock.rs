//! The served directory's lock: one server per directory.
//!
//! Two servers on one directory each write site files from their own copy of the
//! configuration, so each overwrites the other's acknowledged changes. `serve` therefore
//! holds an exclusive `flock` on `DIR/.lbdns.lock` (a fleet node: on its `--cache-dir`)
//! for as long as it runs, with its PID in the file so a second server can say which
//! process holds it. The kernel drops the lock when the process ends, however it ends, so
//! a stale lock file is harmless and is never removed (removing it would let two servers
//! lock two different files). `check` reads without locking.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the served directory.
pub const LOCK_FILE: &str = ".lbdns.lock";

/// The lock on a served directory, held until dropped (or the process ends).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Locks `dir` for this process, or says which process serves it already.
    pub fn acquire(dir: &Path) -> Result<Self, String> {
        let path = dir.join(LOCK_FILE);
        let why = "lbdns locks the directory it serves so that two servers cannot overwrite each other's changes";
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| match dir.is_dir() {
                false => format!("{}: no such directory to serve", dir.display()),
                true => format!("cannot open {}: {e} ({why})", path.display()),
            })?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "a process that is starting".to_owned(),
                    pid => format!("pid {}", pid.chars().take(20).collect::<String>()),
                };
                return Err(format!(
                    "{} is already served by another lbdns ({holder}, which holds {}): two servers on one directory lose each other's changes; stop that server, or serve another directory",
                    dir.display(),
                    path.display()
                ));
            }
            Err(e) => {
                return Err(format!("cannot lock {}: {e} ({why})", path.display()));
            }
        }
        // Only the holder writes: a reader that sees it empty knows it is being written.
        let pid = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_directory_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let held = DirLock::acquire(dir.path()).unwrap();
        let error = DirLock::acquire(dir.path()).unwrap_err();
        assert!(
            error.contains(&format!("pid {}", std::process::id())),
            "{error}"
        );
        assert!(error.contains(&dir.path().display().to_string()), "{error}");
        drop(held);
        DirLock::acquire(dir.path()).expect("free again once the holder is gone");
        let missing = dir.path().join("missing");
        let error = DirLock::acquire(&missing).unwrap_err();
        assert!(
            error.ends_with("missing: no such directory to serve"),
            "{error}"
        );
    }
}
