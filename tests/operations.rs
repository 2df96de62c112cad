//! Running lbdns the way operators run Knot or NSD (SPEC §14): under systemd with
//! `Type=notify`, with shell completions and manual pages generated from the command-line
//! definition, and watched by Prometheus with the shipped alerting rules and dashboard.
//! Each artefact is judged by the tool that consumes it: a real `NOTIFY_SOCKET`, bash's
//! completion machinery, `systemd-analyze verify`, `promtool`, and the live `/metrics`.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const ZONE: &str = "\
$ORIGIN example.com.
$TTL 300
@   IN SOA ns1 hostmaster 1 7200 900 1209600 300
@   NS  ns1
ns1 A   192.0.2.53
";

fn lbdns(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(args)
        .output()
        .expect("run lbdns")
}

// ---------------------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------------------

/// The next message on the notify socket, within 20 s.
fn next_notification(socket: &UnixDatagram) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let len = socket.recv(&mut buf).expect("a notification within 20 s");
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

#[test]
fn the_service_manager_hears_ready_reloading_and_stopping() {
    let site = Site::new(&[("example.com.zone", ZONE)]);
    let sockets = tempfile::tempdir().unwrap();
    let path = sockets.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    let mut server = Server::start_with_env(site.path(), &[], &[("NOTIFY_SOCKET", &path)]);

    // Server::start returns once lbdns answers; READY=1 came no later than that.
    assert_eq!(next_notification(&socket), "READY=1\n");
    assert_eq!(
        answers(&server.ask("ns1.example.com", hickory_proto::rr::RecordType::A)),
        ["192.0.2.53"]
    );

    server.sighup();
    let reloading = next_notification(&socket);
    let mut lines = reloading.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"), "{reloading}");
    let usec = lines
        .next()
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(usec.is_some_and(|v| v > 0), "{reloading}");
    assert_eq!(next_notification(&socket), "READY=1\n");

    let status = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(next_notification(&socket), "STOPPING=1\n");
    let deadline = Instant::now() + PATIENCE;
    while server.is_running() {
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let analyze = require_tool(&["systemd-analyze"], "systemd");
    let unit = read(&repo().join("contrib/systemd/lbdns.service"));
    for key in [
        "Type=notify",
        "ExecStartPre=/usr/bin/lbdns check",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "ProtectSystem=strict",
        "ReadWritePaths=/etc/lbdns",
        "LimitNOFILE=",
    ] {
        assert!(unit.contains(key), "the unit has no {key}");
    }
    // verify checks that every command exists: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("lbdns.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/lbdns", env!("CARGO_BIN_EXE_lbdns")),
    )
    .unwrap();
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    // A misspelt key or value is only a warning (exit 0): any output is a failure.
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
}

// ---------------------------------------------------------------------------------------
// Completions and manual pages
// ---------------------------------------------------------------------------------------

/// What bash completes for `words` (the last one being completed) with lbdns's script.
fn bash_completes(words: &[&str]) -> BTreeSet<String> {
    let script = lbdns(&["completions", "bash"]);
    assert!(script.status.success(), "{}", stderr(&script));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lbdns.bash");
    std::fs::write(&file, &script.stdout).unwrap();
    let words_array = words
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let program = format!(
        "source {file}; COMP_WORDS=({words_array}); COMP_CWORD={cword}; \
         COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; \
         _lbdns lbdns '{cur}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file = file.display(),
        cword = words.len() - 1,
        line = words.join(" "),
        cur = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &program])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).split_whitespace().map(String::from).collect()
}

#[test]
fn bash_completes_subcommands_and_flags() {
    let top = bash_completes(&["lbdns", "t"]);
    assert!(top.contains("task"), "{top:?}");
    assert!(
        !top.contains("serve"),
        "only words starting with t: {top:?}"
    );
    let task = bash_completes(&["lbdns", "task", ""]);
    for sub in ["list", "create", "enable", "disable", "delete"] {
        assert!(task.contains(sub), "{sub} missing from {task:?}");
    }
    let serve = bash_completes(&["lbdns", "serve", "--li"]);
    assert_eq!(serve, BTreeSet::from(["--listen".to_string()]));
}

#[test]
fn zsh_and_fish_scripts_name_every_subcommand() {
    for shell in ["zsh", "fish"] {
        let out = lbdns(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        for sub in [
            "serve",
            "check",
            "task",
            "group",
            "secondaries",
            "completions",
            "man",
        ] {
            assert!(script.contains(sub), "{shell} script without {sub}");
        }
    }
    let bad = lbdns(&["completions", "cmd.exe"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("bash"),
        "says which shells: {}",
        stderr(&bad)
    );
}

#[test]
fn the_manual_pages_cover_every_subcommand() {
    let page = lbdns(&["man"]);
    assert!(page.status.success(), "{}", stderr(&page));
    let text = stdout(&page);
    assert!(text.contains(".TH lbdns 1"), "{text}");
    assert!(text.contains("lbdns\\-serve(1)"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let out = lbdns(&["man", "--out", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for page in [
        "lbdns.1",
        "lbdns-serve.1",
        "lbdns-check.1",
        "lbdns-task-create.1",
    ] {
        let text = read(&dir.path().join(page));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}: {text}"
        );
    }
    // The serve page documents its flags from the same definition the parser uses.
    let serve = read(&dir.path().join("lbdns-serve.1"));
    for flag in [
        "listen",
        "api",
        "geoip",
        "tcp\\-max\\-clients",
        "rrl\\-rate",
    ] {
        assert!(serve.contains(flag), "lbdns-serve(1) without --{flag}");
    }
}

// ---------------------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------------------

#[test]
fn the_alerting_rules_pass_promtool_and_fire_when_they_should() {
    let promtool = require_tool(&["promtool"], "prometheus");
    let dir = repo().join("contrib/prometheus");
    let check = Command::new(&promtool)
        .args(["check", "rules", "lbdns.rules.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        stdout(&check),
        stderr(&check)
    );
    let test = Command::new(&promtool)
        .args(["test", "rules", "lbdns.rules.test.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(test.status.success(), "{}{}", stdout(&test), stderr(&test));
}

/// The `lbdns_*` metric families named in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("lbdns_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_metric_the_rules_and_dashboard_use_is_exported() {
    // A checked group, so that the per-origin health families have samples.
    let origin = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = origin.local_addr().unwrap().port();
    let sites = format!(
        "origin_groups:\n  web:\n    health_check: {{type: tcp, port: {port}, interval: 1}}\n    origins:\n      - address: 127.0.0.1\n\
         tasks:\n  - hostname: www.example.com\n    origin_group: web\n"
    );
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", &sites)]);
    let server = site.serve();
    let deadline = Instant::now() + PATIENCE;
    let exported = loop {
        let text = server.metrics_text();
        if text.contains("lbdns_health_checks_total{") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no health check counted:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let families: BTreeSet<&str> = exported
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let known = |name: &str| {
        let family = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        families.contains(family) || families.contains(name)
    };

    let dashboard: serde_json::Value = serde_json::from_str(&read(
        &repo().join("contrib/prometheus/lbdns-dashboard.json"),
    ))
    .expect("the dashboard is JSON");
    let mut exprs: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("expr").to_string());
        }
    }
    assert!(exprs.len() >= 10, "{exprs:?}");
    let rules = read(&repo().join("contrib/prometheus/lbdns.rules.yml"));
    exprs.extend(
        rules
            .lines()
            .filter_map(|l| l.trim().strip_prefix("expr: "))
            .map(String::from),
    );
    let mut used = BTreeSet::new();
    for expr in &exprs {
        for name in metric_names(expr) {
            assert!(
                known(&name),
                "{name} (in {expr}) is not exported:\n{exported}"
            );
            used.insert(name);
        }
    }
    // The operator's first questions each have a panel or an alert.
    for must in [
        "lbdns_origin_up",
        "lbdns_failed_open_total",
        "lbdns_config_valid",
        "lbdns_query_seconds_bucket",
    ] {
        assert!(used.contains(must), "nothing uses {must}");
    }
}

// ---------------------------------------------------------------------------------------
// lbdns status
// ---------------------------------------------------------------------------------------

/// `lbdns status --api API [extra]`.
fn status(server: &Server, extra: &[&str]) -> Output {
    let mut args = vec!["status", "--api"];
    let api = server.api.to_string();
    args.push(&api);
    args.extend_from_slice(extra);
    Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(&args)
        .env_remove("LBDNS_API_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn status_shows_zones_tasks_and_down_origins_and_exits_by_health() {
    // One checked origin that answers, one group whose only origin we will stop.
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let down = TcpListener::bind("127.0.0.1:0").unwrap();
    let (up_port, down_port) = (
        up.local_addr().unwrap().port(),
        down.local_addr().unwrap().port(),
    );
    let sites = format!(
        "origin_groups:\n\
         \x20 live:\n    health_check: {{type: tcp, port: {up_port}, interval: 0.5, fall: 1, rise: 1}}\n    origins: [{{address: 127.0.0.1}}]\n\
         \x20 dying:\n    health_check: {{type: tcp, port: {down_port}, interval: 0.5, fall: 1, rise: 1}}\n    origins: [{{address: 127.0.0.1}}]\n\
         tasks:\n\
         \x20 - {{hostname: www.example.com, origin_group: live}}\n\
         \x20 - {{hostname: old.example.com, origin_group: live, enabled: false}}\n\
         \x20 - {{hostname: shop.example.com, origin_group: dying}}\n"
    );
    let zone = ZONE.replace(" 1 7200 ", " 2026120401 7200 ");
    let site = Site::new(&[("example.com.zone", &zone), ("example.com.lb.yaml", &sites)]);
    let server = site.serve();
    let deadline = Instant::now() + PATIENCE;
    let healthy = loop {
        let out = status(&server, &[]);
        if out.status.success() {
            break stdout(&out);
        }
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            Instant::now() < deadline,
            "never healthy:\n{}",
            stdout(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        healthy.contains("example.com.  serial 2026120401  from file"),
        "{healthy}"
    );
    assert!(
        healthy.contains("tasks: 2 effective, 0 deploying, 1 ineffective"),
        "{healthy}"
    );
    assert!(healthy.contains("origins down: none"), "{healthy}");
    assert!(healthy.ends_with("status: ok\n"), "{healthy}");

    // The dying group's only origin stops listening: connection refused, down at once.
    drop(down);
    let deadline = Instant::now() + PATIENCE;
    let sick = loop {
        let out = status(&server, &["--json"]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if !report["origins_down"].as_array().unwrap().is_empty() {
            assert_eq!(out.status.code(), Some(1), "{report}");
            break report;
        }
        assert!(Instant::now() < deadline, "never down: {report}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(sick["origins_down"][0]["group"], "dying", "{sick}");
    assert_eq!(sick["origins_down"][0]["origin"], "127.0.0.1", "{sick}");
    let problems = sick["problems"].to_string();
    assert!(
        problems.contains("every origin of group dying"),
        "{problems}"
    );
    let text = stdout(&status(&server, &[]));
    assert!(
        text.contains("origins down:\n  127.0.0.1 example.com/dying since "),
        "{text}"
    );

    // A bad edit on disk: the old configuration serves, and status says the files do not load.
    let before = server.reload_counts();
    site.write("example.com.zone", "this is not a zone\n");
    server.sighup();
    assert_eq!(server.wait_reload(before), Reloaded::Rejected);
    let out = status(&server, &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("the files on disk DO NOT LOAD"), "{text}");
    assert!(
        text.contains("example.com.zone:1"),
        "names the file and line: {text}"
    );
    drop(up);
}

#[test]
fn status_without_a_server_says_so_and_exits_2() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(["status", "--api", &format!("127.0.0.1:{port}")])
        .env_remove("LBDNS_API_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("lbdns serve"), "{}", stderr(&out));
}
