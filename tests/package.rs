//! The Debian package (SPEC §14), built by `scripts/deb` around the binary under test and
//! judged by Debian's own tools: `dpkg-deb` reads its control data and contents, the unit
//! it installs is the one `systemd-analyze verify` passes (tests/operations.rs),
//! `shellcheck` reads the maintainer scripts, and the scripts run against stand-ins for
//! `adduser`, `chown` and systemd's helpers that record what they were asked (so the test
//! needs no root and changes nothing on the host). A real `dpkg -i`, an edit and
//! `dpkg --purge` were done by hand (the purge keeps /etc/lbdns/zones).

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The package, built once per test run: (its path, its unpacked tree, the temp dir holding both).
fn package() -> &'static (PathBuf, PathBuf, tempfile::TempDir) {
    static PACKAGE: OnceLock<(PathBuf, PathBuf, tempfile::TempDir)> = OnceLock::new();
    PACKAGE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg(repo().join("scripts/deb"))
            .args(["--binary", env!("CARGO_BIN_EXE_lbdns"), "--out"])
            .arg(dir.path())
            // The committed example (tests/files.rs keeps the copy so), not the working
            // copy's zones/, which the README's walkthrough changes.
            .arg("--example")
            .arg(example_dir().join("zones"))
            .output()
            .unwrap();
        assert!(out.status.success(), "scripts/deb: {}", stderr(&out));
        let deb = PathBuf::from(stdout(&out).trim());
        assert!(deb.starts_with(dir.path()), "{}", deb.display());
        let tree = dir.path().join("tree");
        let unpack = Command::new("dpkg-deb")
            .arg("-R")
            .arg(&deb)
            .arg(&tree)
            .output()
            .unwrap();
        assert!(unpack.status.success(), "{}", stderr(&unpack));
        (deb, tree, dir)
    })
}

fn field(control: &str, name: &str) -> String {
    control
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in\n{control}"))
        .to_string()
}

#[test]
fn the_package_holds_the_binary_unit_pages_completions_and_served_directory() {
    require_tool(&["dpkg-deb"], "dpkg");
    let (deb, tree, _) = package();
    let info = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .output()
        .unwrap();
    let control = stdout(&info);
    assert_eq!(field(&control, "Package"), "lbdns");
    let version = read(&repo().join("Cargo.toml"))
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap();
    assert_eq!(field(&control, "Version"), version);
    assert!(field(&control, "Depends").contains("adduser"), "{control}");

    for path in [
        "usr/bin/lbdns",
        "lib/systemd/system/lbdns.service",
        "etc/default/lbdns",
        "usr/share/lbdns/example/zones/example.com.zone",
        "usr/share/lbdns/example/zones/example.com.lb.yaml",
        "usr/share/lbdns/geo-whois-asn-country.mmdb",
        "usr/share/man/man1/lbdns.1.gz",
        "usr/share/man/man1/lbdns-serve.1.gz",
        "usr/share/bash-completion/completions/lbdns",
        "usr/share/zsh/vendor-completions/_lbdns",
        "usr/share/fish/vendor_completions.d/lbdns.fish",
        "usr/share/doc/lbdns/copyright",
    ] {
        assert!(tree.join(path).is_file(), "the package has no /{path}");
    }
    for file in ["example.com.zone", "example.com.lb.yaml"] {
        let shipped = tree.join("usr/share/lbdns/example/zones").join(file);
        let committed = example_dir().join("zones").join(file);
        assert_eq!(
            read(&shipped),
            read(&committed),
            "{file}: not the committed example"
        );
    }
    // /etc/default/lbdns is a conffile (kept across upgrades); the zones are the
    // operator's data, which dpkg must not own (a purge would delete them).
    let conffiles = read(&tree.join("DEBIAN/conffiles"));
    assert_eq!(conffiles, "/etc/default/lbdns\n");
    assert!(!tree.join("etc/lbdns/zones").exists());

    // The packaged binary runs, and the served directory it ships loads with the database
    // the default flags name.
    let binary = tree.join("usr/bin/lbdns");
    let defaults = read(&tree.join("etc/default/lbdns"));
    let geoip = defaults
        .split_whitespace()
        .skip_while(|w| !w.ends_with("--geoip"))
        .nth(1)
        .map(|p| p.trim_matches('"').trim_start_matches('/').to_string())
        .expect("the default flags name the GeoIP database");
    let check = Command::new(&binary)
        .args(["check", "--dir"])
        .arg(tree.join("usr/share/lbdns/example"))
        .arg("--geoip")
        .arg(tree.join(&geoip))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        stdout(&check),
        stderr(&check)
    );
}

#[test]
fn the_installed_unit_is_the_verified_one() {
    // tests/operations.rs runs systemd-analyze verify on contrib/systemd/lbdns.service.
    let (_, tree, _) = package();
    assert_eq!(
        read(&tree.join("lib/systemd/system/lbdns.service")),
        read(&repo().join("contrib/systemd/lbdns.service"))
    );
}

#[test]
fn the_maintainer_scripts_pass_shellcheck() {
    let shellcheck = require_tool(&["shellcheck"], "shellcheck");
    let (_, tree, _) = package();
    for script in ["postinst", "prerm", "postrm"] {
        let path = tree.join("DEBIAN").join(script);
        let out = Command::new(&shellcheck).arg(&path).output().unwrap();
        assert!(out.status.success(), "{script}: {}", stdout(&out));
    }
    let out = Command::new(&shellcheck)
        .arg(repo().join("scripts/deb"))
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/deb: {}", stdout(&out));
}

/// Runs a maintainer script with `args` against stand-ins that log each call to a file;
/// `user_exists` says what `getent passwd lbdns` answers. Returns the calls, one a line.
fn run_script(script: &str, args: &[&str], user_exists: bool) -> String {
    let (_, tree, _) = package();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = dir.path().join("calls");
    let stand_in = |name: &str, status: u8| {
        let path = bin.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{name} $*\" >> '{}'\nexit {status}\n",
                log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    stand_in("getent", if user_exists { 0 } else { 2 });
    for name in [
        "mkdir",
        "cp",
        "adduser",
        "deluser",
        "chown",
        "chmod",
        "systemctl",
        "deb-systemd-helper",
        "deb-systemd-invoke",
    ] {
        stand_in(name, 0);
    }
    // The scripts look for /run/systemd/system; run them with and without it as the host has it.
    let out = Command::new("sh")
        .arg(tree.join("DEBIAN").join(script))
        .args(args)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{script} {args:?}: {}", stderr(&out));
    std::fs::read_to_string(&log).unwrap_or_default()
}

fn has_systemd() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

#[test]
fn postinst_adds_the_system_user_once_and_gives_it_the_served_directory() {
    let fresh = run_script("postinst", &["configure"], false);
    let adduser = fresh
        .lines()
        .find(|l| l.starts_with("adduser "))
        .unwrap_or_else(|| panic!("no adduser on a fresh install:\n{fresh}"));
    for flag in [
        "--system",
        "--group",
        "--home /etc/lbdns",
        "--shell /usr/sbin/nologin",
        " lbdns",
    ] {
        assert!(adduser.contains(flag), "{adduser}");
    }
    assert!(fresh.contains("chown -R lbdns:lbdns /etc/lbdns"), "{fresh}");
    // The example site goes in unless the host already has a served directory.
    assert_eq!(
        fresh.contains("mkdir -p /etc/lbdns/zones\ncp /usr/share/lbdns/example/zones/"),
        !Path::new("/etc/lbdns/zones").exists(),
        "{fresh}"
    );
    assert!(fresh.contains("chmod 0750 /etc/lbdns"), "{fresh}");
    assert_eq!(
        fresh.contains("deb-systemd-invoke start lbdns.service"),
        has_systemd(),
        "starts the unit only where systemd runs:\n{fresh}"
    );

    let upgrade = run_script("postinst", &["configure", "0.0.9"], true);
    assert!(
        !upgrade.contains("adduser"),
        "the user exists already:\n{upgrade}"
    );
    assert!(
        upgrade.contains("chown -R lbdns:lbdns /etc/lbdns"),
        "{upgrade}"
    );
    assert_eq!(
        upgrade.contains("deb-systemd-invoke restart lbdns.service"),
        has_systemd(),
        "{upgrade}"
    );
}

#[test]
fn purge_removes_the_user_but_never_the_operators_zones() {
    let remove = run_script("postrm", &["remove"], true);
    assert!(!remove.contains("deluser"), "{remove}");
    let purge = run_script("postrm", &["purge"], true);
    assert!(purge.contains("deluser --system --quiet lbdns"), "{purge}");
    for script in ["postrm", "prerm"] {
        let text = read(&package().1.join("DEBIAN").join(script));
        assert!(
            !text.contains("rm -rf") && !text.contains("rm -r "),
            "{script} removes files"
        );
    }
}
