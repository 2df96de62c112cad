//! Crash-safe file writes: a reader (or a restart) sees the old file or the new one,
//! never a mix.
//!
//! The files lbdns rewrites belong to the operator, so a write changes their contents
//! and nothing else an operator set up: a symlinked site file stays a symlink (the file
//! it points to is replaced), and the new file keeps the old one's mode and, where the
//! process may set them, its owner and group.

use std::fs::{self, File, Metadata, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tracing::warn;

// The leading dot and ".tmp" keep the loader and the watcher from taking it for a site file.
const TEMP_PREFIX: &str = ".lbdns-";
const TEMP_SUFFIX: &str = ".tmp";

/// Links followed before giving up, as the kernel's own limit (`ELOOP`).
const MAX_LINKS: usize = 40;

/// Mode of a file that did not exist yet, before the umask: what an editor creates.
const NEW_FILE_MODE: u32 = 0o666;

/// Writes `contents` to `path` atomically, for a reader, a crash or a power cut alike.
///
/// When `path` is a symlink (or a chain of them) the file at the end of the chain is
/// replaced and the links are left as they are. The steps, each finished before the next:
///
/// 1. a temp file (`.lbdns-*.tmp`) in the directory of that final file;
/// 2. the temp file gets the old file's permission bits, owner and group (a file that did
///    not exist gets 0666 minus the umask, 0644 as usual, like an editor's new file);
/// 3. the contents are written and fsynced;
/// 4. the temp file is renamed over the final file;
/// 5. that directory is fsynced, so the rename itself survives a crash.
///
/// A failure before step 4 removes the temp file and leaves the old file as it was, byte
/// for byte. A failure in step 5 comes after the new contents are in place.
///
/// The owner and group are kept only where the process may set them (root, or a group
/// the user is in). An unprivileged lbdns writing a file another user owns keeps going:
/// the file becomes its own, and a warning says so. Not kept: ACLs, extended attributes
/// (SELinux labels) and hard links (the renamed file is a new inode; other names of the
/// old one keep the old contents).
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let target = resolve_symlinks(path)?;
    let named = |what: &Path| {
        if what == path {
            what.display().to_string()
        } else {
            format!("{} (where {} points)", what.display(), path.display())
        }
    };
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let old = match fs::metadata(&target) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(context(e, format!("cannot read {}", named(&target)))),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(TEMP_PREFIX).suffix(TEMP_SUFFIX);
    if old.is_none() {
        builder.permissions(Permissions::from_mode(NEW_FILE_MODE));
    }
    // Dropping `temp` on any error below removes it.
    let mut temp = builder
        .tempfile_in(dir)
        .map_err(|e| context(e, format!("cannot create a temp file in {}", dir.display())))?;
    fault(Step::Created)?;
    if let Some(old) = &old {
        keep_owner(temp.as_file(), old, &target)?;
        temp.as_file()
            .set_permissions(Permissions::from_mode(old.mode() & 0o7777))
            .map_err(|e| {
                context(
                    e,
                    format!("cannot give {} its old mode", temp.path().display()),
                )
            })?;
    }
    temp.write_all(contents)
        .and_then(|()| fault(Step::Written))
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| context(e, format!("cannot write {}", temp.path().display())))?;
    fault(Step::Synced)?;
    temp.persist(&target)
        .map_err(|e| context(e.error, format!("cannot replace {}", named(&target))))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| {
        context(
            e,
            format!(
                "{} was replaced but its directory {} could not be synced",
                named(&target),
                dir.display()
            ),
        )
    })
}

/// The file a write to `path` replaces: `path` itself, or the end of its chain of
/// symlinks (which need not exist yet).
pub fn resolve_symlinks(path: &Path) -> io::Result<PathBuf> {
    Ok(symlink_chain(path)?
        .pop()
        .unwrap_or_else(|| path.to_owned()))
}

/// `path`, then every path its symlinks lead to, in order; the last one is not a symlink
/// (a file, a directory, or nothing yet). A relative link is taken from its link's directory.
pub fn symlink_chain(path: &Path) -> io::Result<Vec<PathBuf>> {
    let mut chain = vec![path.to_owned()];
    while chain.len() <= MAX_LINKS {
        let current = chain.last().expect("never empty");
        let is_link = match fs::symlink_metadata(current) {
            Ok(meta) => meta.file_type().is_symlink(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(context(e, format!("cannot read {}", current.display()))),
        };
        if !is_link {
            return Ok(chain);
        }
        let link = fs::read_link(current)
            .map_err(|e| context(e, format!("cannot read the symlink {}", current.display())))?;
        let next = match current.parent() {
            Some(dir) => dir.join(link),
            None => link,
        };
        chain.push(next);
    }
    Err(io::Error::other(format!(
        "{}: more than {MAX_LINKS} symlinks in a row (a loop?)",
        path.display()
    )))
}

/// Removes temp files a crash left between write and rename; the real files are whole.
/// Looks in `dir` and in the directories its symlinks point into, where writes go.
pub fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut dirs = vec![dir.to_owned()];
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_symlink())
            && let Ok(target) = resolve_symlinks(&entry.path())
            && let Some(parent) = target.parent()
            && !dirs.iter().any(|d| d == parent)
        {
            dirs.push(parent.to_owned());
        }
    }
    for dir in dirs {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Gives `file` the owner and group of `old`, as far as the process is allowed to.
fn keep_owner(file: &File, old: &Metadata, target: &Path) -> io::Result<()> {
    let new = file.metadata()?;
    if (new.uid(), new.gid()) == (old.uid(), old.gid()) {
        return Ok(());
    }
    match std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid())) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            // Not root: the group can still be kept if the user is in it.
            let group_kept = std::os::unix::fs::fchown(file, None, Some(old.gid())).is_ok();
            warn!(
                file = %target.display(),
                old_owner = old.uid(),
                old_group = old.gid(),
                group_kept,
                "lbdns may not give the rewritten file its old owner; the file is now owned by the lbdns user"
            );
            Ok(())
        }
        Err(e) => Err(context(
            e,
            format!("cannot give the new {} its old owner", target.display()),
        )),
    }
}

/// `error` with what was being done, keeping its kind.
fn context(error: io::Error, doing: String) -> io::Error {
    io::Error::new(error.kind(), format!("{doing}: {error}"))
}

/// Points in [`write_atomically`] where a test can make it fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// The temp file exists, empty.
    Created,
    /// The contents are written, not yet synced.
    Written,
    /// The contents are synced, the rename is next.
    Synced,
}

#[cfg(test)]
thread_local! {
    /// The step at which [`write_atomically`] fails on this thread (tests only).
    static FAIL_AT: std::cell::Cell<Option<Step>> = const { std::cell::Cell::new(None) };
}

/// Fails at `step` when a test asked for it; nothing outside tests.
fn fault(step: Step) -> io::Result<()> {
    #[cfg(test)]
    if FAIL_AT.with(std::cell::Cell::get) == Some(step) {
        return Err(io::Error::other(format!("injected failure after {step:?}")));
    }
    let _ = step;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// Names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
    }

    /// The process umask, from /proc (reading it with umask(2) would change it).
    fn umask() -> u32 {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
    }

    /// `zones/a.lb.yaml -> ../real/site.yaml`, the target holding "old".
    fn linked() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("zones")).unwrap();
        fs::create_dir(dir.path().join("real")).unwrap();
        let target = dir.path().join("real/site.yaml");
        fs::write(&target, "old").unwrap();
        let link = dir.path().join("zones/a.lb.yaml");
        symlink("../real/site.yaml", &link).unwrap();
        (dir, link, target)
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temp_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.lb.yaml");
        fs::write(&path, "old").unwrap();
        let before = fs::metadata(&path).unwrap().ino();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_ne!(
            fs::metadata(&path).unwrap().ino(),
            before,
            "renamed, not rewritten"
        );
        assert_eq!(names(dir.path()), ["a.lb.yaml"]);
    }

    #[test]
    fn a_symlink_stays_a_symlink_and_its_target_is_replaced() {
        let (dir, link, target) = linked();
        let link_inode = fs::symlink_metadata(&link).unwrap().ino();
        let target_inode = fs::metadata(&target).unwrap().ino();

        write_atomically(&link, b"new").unwrap();

        let link_meta = fs::symlink_metadata(&link).unwrap();
        assert!(link_meta.file_type().is_symlink());
        assert_eq!(link_meta.ino(), link_inode, "the link itself is untouched");
        assert_eq!(
            fs::read_link(&link).unwrap(),
            Path::new("../real/site.yaml")
        );
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert_ne!(
            fs::metadata(&target).unwrap().ino(),
            target_inode,
            "the target was replaced by a rename"
        );
        // The temp file was made next to the target, and is gone.
        assert_eq!(names(&dir.path().join("zones")), ["a.lb.yaml"]);
        assert_eq!(names(&dir.path().join("real")), ["site.yaml"]);
    }

    #[test]
    fn a_chain_of_symlinks_is_followed_to_its_end() {
        let (dir, link, target) = linked();
        // zones/b.lb.yaml -> (absolute) zones/a.lb.yaml -> ../real/site.yaml
        let first = dir.path().join("zones/b.lb.yaml");
        symlink(&link, &first).unwrap();
        assert_eq!(
            symlink_chain(&first).unwrap(),
            [
                first.clone(),
                link.clone(),
                dir.path().join("zones/../real/site.yaml")
            ]
        );

        write_atomically(&first, b"new").unwrap();

        assert!(
            fs::symlink_metadata(&first)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
    }

    #[test]
    fn a_dangling_symlink_gets_its_target_created() {
        let (dir, link, target) = linked();
        fs::remove_file(&target).unwrap();
        write_atomically(&link, b"new").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(mode(&target), NEW_FILE_MODE & !umask());
        assert_eq!(names(&dir.path().join("real")), ["site.yaml"]);
    }

    #[test]
    fn a_symlink_loop_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.lb.yaml"), dir.path().join("b.lb.yaml"));
        symlink(&b, &a).unwrap();
        symlink(&a, &b).unwrap();
        let error = write_atomically(&a, b"new").unwrap_err();
        assert!(error.to_string().contains("a.lb.yaml"), "{error}");
        assert!(error.to_string().contains("loop"), "{error}");
        assert_eq!(names(dir.path()), ["a.lb.yaml", "b.lb.yaml"]);
    }

    #[test]
    fn the_mode_is_kept() {
        for wanted in [0o644, 0o640, 0o600, 0o664] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("a.lb.yaml");
            fs::write(&path, "old").unwrap();
            set_mode(&path, wanted);
            write_atomically(&path, b"new").unwrap();
            assert_eq!(mode(&path), wanted, "{wanted:o} became {:o}", mode(&path));
        }
    }

    #[test]
    fn the_mode_of_a_symlinks_target_is_kept() {
        let (_dir, link, target) = linked();
        set_mode(&target, 0o640);
        write_atomically(&link, b"new").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(mode(&target), 0o640);
    }

    #[test]
    fn a_new_file_gets_an_editors_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.lb.yaml");
        write_atomically(&path, b"new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        // 0644 under the usual umask 022; not tempfile's 0600.
        assert_eq!(mode(&path), 0o666 & !umask());
    }

    #[test]
    fn owner_and_group_are_kept_when_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.lb.yaml");
        fs::write(&path, "old").unwrap();
        let (uid, gid) = (4321, 8765);
        if std::os::unix::fs::chown(&path, Some(uid), Some(gid)).is_err() {
            eprintln!("skipped: only root can give a file to another user");
            return;
        }
        set_mode(&path, 0o640);
        write_atomically(&path, b"new").unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid));
        assert_eq!(meta.mode() & 0o7777, 0o640, "chown must not undo the mode");
    }

    #[test]
    fn a_failed_write_over_an_existing_file_keeps_it_byte_for_byte() {
        let old: &[u8] = b"origin_groups: {}\n# \xff not even UTF-8, kept as it is\n";
        for step in [Step::Created, Step::Written, Step::Synced] {
            for through_link in [false, true] {
                let (dir, link, target) = linked();
                fs::write(&target, old).unwrap();
                set_mode(&target, 0o640);
                let inode = fs::metadata(&target).unwrap().ino();
                let path = if through_link { &link } else { &target };

                FAIL_AT.with(|f| f.set(Some(step)));
                let result = write_atomically(path, &[b'x'; 100_000]);
                FAIL_AT.with(|f| f.set(None));

                let error = result.unwrap_err();
                assert!(error.to_string().contains("injected"), "{step:?}: {error}");
                assert_eq!(fs::read(&target).unwrap(), old, "{step:?}");
                let meta = fs::metadata(&target).unwrap();
                assert_eq!(meta.ino(), inode, "{step:?}: the old file is the same file");
                assert_eq!(meta.mode() & 0o7777, 0o640, "{step:?}");
                assert!(
                    fs::symlink_metadata(&link)
                        .unwrap()
                        .file_type()
                        .is_symlink()
                );
                assert_eq!(names(&dir.path().join("real")), ["site.yaml"], "{step:?}");
                assert_eq!(names(&dir.path().join("zones")), ["a.lb.yaml"], "{step:?}");
            }
        }
    }

    #[test]
    fn a_rename_that_fails_leaves_no_temp_file_and_names_the_target() {
        // A non-empty directory where the file should be: the real rename(2) fails after
        // the temp file is written and synced.
        let (dir, link, target) = linked();
        fs::remove_file(&target).unwrap();
        fs::create_dir_all(target.join("blocker")).unwrap();
        let error = write_atomically(&link, b"new").unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("cannot replace "), "{message}");
        assert!(message.contains("site.yaml (where "), "{message}");
        assert_eq!(names(&dir.path().join("real")), ["site.yaml"]);
        assert_eq!(names(&target), ["blocker"]);
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn a_missing_directory_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("a.lb.yaml");
        let error = write_atomically(&path, b"new").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(
            error.to_string().starts_with(&format!(
                "cannot create a temp file in {}: ",
                dir.path().join("missing-dir").display()
            )),
            "{error}"
        );
    }

    #[test]
    fn a_reader_never_sees_a_partial_file() {
        let (_dir, link, target) = linked();
        let contents: [Vec<u8>; 2] = [vec![b'a'; 1 << 20], vec![b'b'; 300_000]];
        write_atomically(&link, &contents[0]).unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (done, link, contents) = (done.clone(), link.clone(), contents.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let got = fs::read(&link).unwrap();
                    assert!(
                        contents.contains(&got),
                        "read {} bytes that are neither version",
                        got.len()
                    );
                    reads += 1;
                }
                reads
            })
        };
        for i in 0..60 {
            write_atomically(&link, &contents[i % 2]).unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let reads = reader.join().unwrap();
        assert!(reads > 10, "the reader read only {reads} times");
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&target).unwrap(), contents[1]);
    }

    #[test]
    fn stale_temp_files_are_removed_where_writes_go() {
        let (dir, _link, _target) = linked();
        fs::write(dir.path().join("zones/.lbdns-abc.tmp"), "x").unwrap();
        fs::write(dir.path().join("real/.lbdns-def.tmp"), "x").unwrap();
        fs::write(dir.path().join("real/.other.tmp"), "x").unwrap();
        remove_stale_temp_files(&dir.path().join("zones"));
        assert_eq!(names(&dir.path().join("zones")), ["a.lb.yaml"]);
        assert_eq!(names(&dir.path().join("real")), [".other.tmp", "site.yaml"]);
    }
}
