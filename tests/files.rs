//! The files the operator owns (SPEC §7, §8), against the real binary: an API write goes
//! through a symlinked site file to the file it points to and keeps that file's mode;
//! edits where a symlink points (site file or GeoIP database) are reloaded like edits in
//! `zones/`; and the shipped example is in the form the API writes, so the README's
//! walkthrough leaves it byte for byte as shipped.
//!
//! All traffic goes to 127.0.0.1; every wait is bounded.

mod common;
use common::*;

use std::net::SocketAddr;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

const TASKS: &str = "/v1/sites/example.com/tasks";

/// One API call: (status, body).
fn call(api: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{api}{path}"));
    let response = match body {
        Some(body) => agent.run(
            request
                .header("Content-Type", "application/json")
                .body(body.to_string().into_bytes())
                .unwrap(),
        ),
        None => agent.run(request.body(()).unwrap()),
    };
    let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

/// Calls the API and asserts the status.
#[track_caller]
fn expect(api: SocketAddr, method: &str, path: &str, body: Option<&Value>, status: u16) -> String {
    let (got, text) = call(api, method, path, body);
    assert_eq!(got, status, "{method} {path} -> {got} {text}");
    text
}

/// `lbdns_reloads_total{result="ok"}` from /metrics.
fn reloads_ok(api: SocketAddr) -> u64 {
    let text = expect(api, "GET", "/metrics", None, 200);
    text.lines()
        .find_map(|l| l.strip_prefix("lbdns_reloads_total{result=\"ok\"} "))
        .unwrap_or_else(|| panic!("no reload counter in /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Polls until `done` holds, for at most [`PATIENCE`].
#[track_caller]
fn wait_for(what: &str, server: &Server, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "not within {PATIENCE:?}: {what}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The A answer to `name`: (addresses, TTL of the first), or the response code.
fn a_answer(server: &Server, name: &str) -> Result<(Vec<String>, u32), ResponseCode> {
    let reply = server.ask(name, RecordType::A);
    match reply.metadata.response_code {
        ResponseCode::NoError if !reply.answers.is_empty() => {
            Ok((answers(&reply), reply.answers[0].ttl))
        }
        code => Err(code),
    }
}

/// Mode bits of `path` (following links).
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Writes `text` to `path` the way most editors save: a new file beside it, renamed over.
fn save_by_rename(path: &Path, text: &str) {
    let temp = path.with_extension("swp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

/// The shipped example, with its site file moved to `repo/example.com.yaml` and
/// `zones/example.com.lb.yaml` a relative symlink to it. Returns the link and its target.
fn example_with_linked_site_file() -> (Site, PathBuf, PathBuf) {
    let site = Site::example();
    let link = site.path().join("zones/example.com.lb.yaml");
    std::fs::create_dir(site.path().join("repo")).unwrap();
    let target = site.path().join("repo/example.com.yaml");
    std::fs::rename(&link, &target).unwrap();
    symlink("../repo/example.com.yaml", &link).unwrap();
    (site, link, target)
}

fn shipped_site_file() -> Vec<u8> {
    std::fs::read(example_dir().join("zones/example.com.lb.yaml")).unwrap()
}

#[test]
fn an_api_write_goes_through_a_symlink_and_keeps_the_mode() {
    let (site, link, target) = example_with_linked_site_file();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = site.serve();

    let created = expect(
        server.api,
        "POST",
        TASKS,
        Some(&json!({"hostname": "api.example.com", "origin_group": "web", "ttl": 20})),
        201,
    );
    assert!(created.contains("\"effective\""), "{created}");

    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(
        meta.file_type().is_symlink(),
        "zones/example.com.lb.yaml is no longer a symlink"
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../repo/example.com.yaml")
    );
    let written = read(&target);
    assert!(written.contains("hostname: api.example.com"), "{written}");
    assert_eq!(
        mode(&target),
        0o644,
        "the mode changed to {:o}",
        mode(&target)
    );
    let (addresses, ttl) = a_answer(&server, "api.example.com.").unwrap();
    assert!(
        addresses == ["192.0.2.10"] || addresses == ["192.0.2.11"],
        "{addresses:?}"
    );
    assert_eq!(ttl, 20);
    // Nothing but the files themselves, in either directory.
    let names = |dir: &str| {
        let mut names: Vec<String> = std::fs::read_dir(site.path().join(dir))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names("zones"), ["example.com.lb.yaml", "example.com.zone"]);
    assert_eq!(names("repo"), ["example.com.yaml"]);
}

#[test]
fn edits_where_a_site_file_symlink_points_are_reloaded() {
    let (site, _link, target) = example_with_linked_site_file();
    let server = site.serve();
    // The task "shop" is disabled: the zone's own record answers, with its TTL 300.
    assert_eq!(
        a_answer(&server, "shop.example.com."),
        Ok((vec!["192.0.2.90".to_owned()], 300))
    );
    let reloads = reloads_ok(server.api);
    let shipped = read(&target);
    assert_eq!(shipped.matches("enabled: false").count(), 1, "{shipped}");

    // Written in place where the link points: the task answers, TTL 60.
    std::fs::write(&target, shipped.replace("enabled: false", "enabled: true")).unwrap();
    wait_for("the edit enables shop", &server, || {
        a_answer(&server, "shop.example.com.").is_ok_and(|(_, ttl)| ttl == 60)
    });
    assert!(reloads_ok(server.api) > reloads);

    // Saved by rename where the link points: the zone's record again.
    let reloads = reloads_ok(server.api);
    save_by_rename(&target, &shipped);
    wait_for("the edit disables shop", &server, || {
        a_answer(&server, "shop.example.com.").is_ok_and(|(_, ttl)| ttl == 300)
    });
    assert!(reloads_ok(server.api) > reloads);
}

#[test]
fn a_symlink_made_while_serving_is_followed_from_then_on() {
    let site = Site::example();
    let server = site.serve();
    let link = site.path().join("zones/example.com.lb.yaml");
    let shipped = read(&link);
    let enabled = shipped.replace("enabled: false", "enabled: true");

    // The site file moves to repo/ and a link takes its place (`ln -sfn`: a new link
    // renamed over the file), with shop enabled there.
    std::fs::create_dir(site.path().join("repo")).unwrap();
    let target = site.path().join("repo/example.com.yaml");
    std::fs::write(&target, &enabled).unwrap();
    let reloads = reloads_ok(server.api);
    let new_link = site.path().join("zones/.new-link");
    symlink("../repo/example.com.yaml", &new_link).unwrap();
    std::fs::rename(&new_link, &link).unwrap();
    wait_for("the link is read", &server, || {
        reloads_ok(server.api) > reloads
    });
    assert!(a_answer(&server, "shop.example.com.").is_ok_and(|(_, ttl)| ttl == 60));
    // The watcher looks for links right after the reload it triggered; give it a moment.
    std::thread::sleep(Duration::from_millis(500));

    // An edit where the new link points is seen.
    std::fs::write(&target, &shipped).unwrap();
    wait_for("the edit where the link points", &server, || {
        a_answer(&server, "shop.example.com.").is_ok_and(|(_, ttl)| ttl == 300)
    });
}

#[test]
fn a_new_geoip_database_where_the_symlink_points_is_reloaded() {
    // geoip/db.mmdb -> ../GeoIP/db.mmdb, replaced by rename as geoipupdate does.
    let site = Site::example();
    for dir in ["geoip", "GeoIP"] {
        std::fs::create_dir(site.path().join(dir)).unwrap();
    }
    let target = site.path().join("GeoIP/db.mmdb");
    std::fs::copy(test_geoip(), &target).unwrap();
    let link = site.path().join("geoip/db.mmdb");
    symlink("../GeoIP/db.mmdb", &link).unwrap();
    let server = Server::start(site.path(), &["--geoip".as_ref(), link.as_os_str()]);
    let reloads = reloads_ok(server.api);

    let temp = site.path().join("GeoIP/db.mmdb.part");
    std::fs::copy(repo().join("tests/data/GeoLite2-Country-Test.mmdb"), &temp).unwrap();
    std::fs::rename(&temp, &target).unwrap();
    wait_for("the new database is loaded", &server, || {
        reloads_ok(server.api) > reloads
    });
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn the_readme_walkthrough_leaves_the_shipped_example_byte_for_byte() {
    let site = Site::example();
    let path = site.path().join("zones/example.com.lb.yaml");
    let shipped = shipped_site_file();
    assert_eq!(std::fs::read(&path).unwrap(), shipped);
    let server = site.serve();

    // README.md, "Managing tasks": create, update, disable, delete.
    let created = expect(
        server.api,
        "POST",
        TASKS,
        Some(&json!({"hostname": "api.example.com", "origin_group": "web", "ttl": 20})),
        201,
    );
    assert!(created.contains("\"effective\""), "{created}");
    assert!(
        read(&path).contains("api.example.com"),
        "the create was written"
    );
    assert!(a_answer(&server, "api.example.com.").is_ok());

    let task = format!("{TASKS}/api.example.com");
    let updated = expect(server.api, "PATCH", &task, Some(&json!({"ttl": 45})), 200);
    assert!(updated.contains("\"ttl\":45"), "{updated}");
    let disabled = expect(server.api, "POST", &format!("{task}/disable"), None, 200);
    assert!(disabled.contains("\"ineffective\""), "{disabled}");
    assert_eq!(
        a_answer(&server, "api.example.com."),
        Err(ResponseCode::NXDomain)
    );

    let (status, text) = call(server.api, "DELETE", &task, None);
    assert!(status == 200 || status == 204, "DELETE -> {status} {text}");

    // The walkthrough's last two lines, through the CLI as written there.
    let api = server.api.to_string();
    for args in [
        &[
            "group",
            "put",
            "web2",
            "--origin",
            "192.0.2.40=3",
            "--origin",
            "192.0.2.41",
        ][..],
        &["group", "delete", "web2"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbdns"))
            .args(args)
            .args(["--api", &api])
            .env_remove("LBDNS_API_TOKEN")
            .output()
            .unwrap();
        assert!(out.status.success(), "lbdns {args:?}: {}", describe(&out));
    }
    let after = std::fs::read(&path).unwrap();
    assert!(
        after == shipped,
        "the walkthrough changed the shipped site file:\n--- shipped\n{}\n--- after\n{}",
        String::from_utf8_lossy(&shipped),
        String::from_utf8_lossy(&after)
    );
}

/// The tests' copy of the example (tests/data/example, which every test uses instead of
/// the tracked `zones/`, as the README walkthrough edits those) is the example as
/// committed: read from git's HEAD, so an edited working copy of `zones/` changes nothing.
#[test]
fn the_tests_copy_of_the_example_is_the_committed_one() {
    for file in ["example.com.zone", "example.com.lb.yaml"] {
        let out = std::process::Command::new("git")
            .current_dir(repo())
            .args(["show", &format!("HEAD:zones/{file}")])
            .output()
            .expect("git is installed (the suite runs in a git checkout)");
        assert!(
            out.status.success(),
            "git show HEAD:zones/{file}: {}",
            describe(&out)
        );
        let copy = std::fs::read(example_dir().join("zones").join(file)).unwrap();
        assert!(
            out.stdout == copy,
            "tests/data/example/zones/{file} is not the committed zones/{file}: copy it again"
        );
    }
}

/// The shipped example must stay what the API writes: a comment added to it would be
/// dropped by the first API change (README.md, "Managing tasks").
#[test]
fn the_shipped_example_is_in_the_form_the_api_writes() {
    let site = Site::example();
    let path = site.path().join("zones/example.com.lb.yaml");
    let shipped = shipped_site_file();
    let server = site.serve();

    // Put every task back as the API shows it: each write renders what the last one
    // wrote, so equal bytes every time also show the form is deterministic and survives
    // parse -> render -> parse -> render.
    let listed: Value = serde_json::from_str(&expect(server.api, "GET", TASKS, None, 200)).unwrap();
    let tasks = listed["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 5, "{listed}");
    for task in tasks {
        let id = task["id"].as_str().unwrap();
        let mut body = task.clone();
        let fields = body.as_object_mut().unwrap();
        fields.remove("id");
        fields.remove("status");
        expect(
            server.api,
            "PUT",
            &format!("{TASKS}/{id}"),
            Some(&body),
            200,
        );
        let written = std::fs::read(&path).unwrap();
        assert!(
            written == shipped,
            "zones/example.com.lb.yaml is not in the form the API writes (after PUT {id}):\n--- shipped\n{}\n--- written\n{}",
            String::from_utf8_lossy(&shipped),
            String::from_utf8_lossy(&written)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Bounded inputs (issue 19 item 10)
// ---------------------------------------------------------------------------------------

const ZONE: &str = "$ORIGIN example.com.\n$TTL 3600\n\
@ IN SOA ns1 hostmaster 1 7200 900 1209600 300\n\
@ NS ns1\n\
ns1 A 192.0.2.53\n";

/// Runs `lbdns check` on `site`, failing the test if it has not finished within 20 s
/// (reading a FIFO or /dev/zero would never end); its stderr.
fn check_bounded(site: &Site) -> String {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(["check", "--dir"])
        .arg(site.path())
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let stderr = read(log.path());
            assert!(!status.success(), "check accepted it:\n{stderr}");
            return stderr;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lbdns check still reading after {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn files_that_are_not_regular_files_are_refused() {
    // $INCLUDE of a device that never ends.
    let site = Site::new(&[("example.com.zone", &format!("{ZONE}$INCLUDE /dev/zero\n"))]);
    let stderr = check_bounded(&site);
    assert!(
        stderr.contains("/dev/zero is a character device, not a regular file"),
        "{stderr}"
    );
    // A FIFO as a zone file, as a site file, and $INCLUDEd.
    let site = Site::new(&[("example.com.zone", ZONE)]);
    mkfifo(&site.path().join("zones/fifo.test.zone"));
    mkfifo(&site.path().join("zones/example.com.lb.yaml"));
    let stderr = check_bounded(&site);
    assert!(
        stderr.contains("fifo.test.zone is a FIFO, not a regular file"),
        "{stderr}"
    );
    assert!(
        stderr.contains("example.com.lb.yaml is a FIFO, not a regular file"),
        "{stderr}"
    );
    let site = Site::new(&[("example.com.zone", &format!("{ZONE}$INCLUDE part\n"))]);
    mkfifo(&site.path().join("zones/part"));
    let stderr = check_bounded(&site);
    assert!(
        stderr.contains("part is a FIFO, not a regular file"),
        "{stderr}"
    );
}

#[test]
fn zone_and_site_files_past_their_caps_are_refused_naming_the_cap() {
    // Sparse files: their size is on record, their bytes take no disk.
    let site = Site::new(&[("example.com.zone", ZONE)]);
    let grow = |name: &str, size: u64| {
        let file = std::fs::File::create(site.path().join("zones").join(name)).unwrap();
        file.set_len(size).unwrap();
    };
    grow("big.test.zone", (512 << 20) + 1);
    grow("example.com.lb.yaml", (32 << 20) + 1);
    let stderr = check_bounded(&site);
    assert!(
        stderr.contains(&format!(
            "big.test.zone is {} bytes, over the 512 MiB lbdns reads from a zone file; split the zone",
            (512u64 << 20) + 1
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "example.com.lb.yaml is {} bytes, over the 32 MiB lbdns reads from a site file; remove the tasks",
            (32u64 << 20) + 1
        )),
        "{stderr}"
    );
}

#[test]
fn an_error_quotes_at_most_100_characters_of_a_huge_token() {
    let token = "q".repeat(4 << 20);
    let site = Site::new(&[("example.com.zone", ZONE)]);
    let server = site.serve();
    let bad = format!("{ZONE}www A {token}\n");
    assert_eq!(
        server.reload_after(|| site.write("example.com.zone", &bad)),
        Reloaded::Rejected
    );
    let (_, health) = server
        .http_get("/healthz", Duration::from_secs(5))
        .expect("/healthz answers");
    let health: Value = serde_json::from_str(&health).unwrap();
    let error = health["config"]["error"].as_str().unwrap();
    assert!(error.contains(&"q".repeat(100)), "{error}");
    assert!(
        !error.contains(&"q".repeat(101)),
        "{}",
        &error[..300.min(error.len())]
    );
    assert!(
        error.len() < 400,
        "{} bytes: {}",
        error.len(),
        &error[..400]
    );
    let log = server.log();
    assert!(
        !log.contains(&"q".repeat(101)),
        "the log quotes the token whole"
    );
    let stderr = check_bounded(&site);
    assert!(stderr.len() < 600, "{} bytes", stderr.len());
}

// ---------------------------------------------------------------------------------------
// A slow writer (issue 19 item 9)
// ---------------------------------------------------------------------------------------

#[test]
fn a_zone_rewritten_in_place_by_a_slow_writer_is_loaded_once_complete() {
    use std::io::Write;
    // www is the last record, so the first half of the new file is a valid zone without it.
    let filler: String = (0..200)
        .map(|i| format!("h{i} A 192.0.2.{}\n", i % 250 + 1))
        .collect();
    let zone = |serial: u32, www: &str| {
        format!(
            "$ORIGIN example.com.\n$TTL 3600\n@ IN SOA ns1 hostmaster {serial} 7200 900 1209600 300\n@ NS ns1\nns1 A 192.0.2.53\n{filler}www A {www}\n"
        )
    };
    let site = Site::new(&[("example.com.zone", &zone(1, "192.0.2.80"))]);
    let server = site.serve();
    let before = server.reload_counts();
    let new = zone(2, "192.0.2.81");
    let cut = new.find("h100 ").unwrap();
    // Rewritten in place (truncated, not replaced by rename): half, a pause, the rest.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(site.path().join("zones/example.com.zone"))
        .unwrap();
    file.write_all(&new.as_bytes()[..cut]).unwrap();
    let pause = Instant::now();
    let mut asked = 0;
    while pause.elapsed() < Duration::from_millis(1200) {
        let got = server.dig(&["+short", "www.example.com", "A"]);
        assert_eq!(
            got.trim(),
            "192.0.2.80",
            "query {asked}, {:?} into the writer's pause:\n{}",
            pause.elapsed(),
            server.log()
        );
        asked += 1;
    }
    file.write_all(&new.as_bytes()[cut..]).unwrap();
    drop(file);
    assert_eq!(server.wait_reload(before), Reloaded::Accepted);
    assert_eq!(
        server.dig(&["+short", "www.example.com", "A"]).trim(),
        "192.0.2.81"
    );
    eprintln!("{asked} queries during the writer's 1.2 s pause: all answered from the old zone");
}
