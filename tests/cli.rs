//! The `lbdns` command as an operator meets it (SPEC §2, §7): the real binary against a
//! served directory. Output goes to stdout and ends quietly when the reader stops reading;
//! errors go to stderr and say what to do (a token, a server to start); tokens are checked
//! when `serve` starts; logs written to a file carry no colour codes; internationalized
//! names get ASCII ids; `group list` shows what the file says about each origin and
//! which group of a fallback chain answers.

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// A token long enough for any address.
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// Environment variables to set.
type Env<'a> = &'a [(&'a str, &'a str)];

/// `lbdns ARGS...` with no API address or token from the environment.
fn lbdns(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lbdns"));
    command
        .args(args)
        .env_remove("LBDNS_API")
        .env_remove("LBDNS_API_TOKEN")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    command
}

/// Runs `lbdns ARGS... --api API` to completion.
fn cli(api: SocketAddr, args: &[&str]) -> Output {
    cli_env(api, args, &[])
}

/// `lbdns task get ID --json`, parsed.
fn task_json(api: SocketAddr, id: &str) -> serde_json::Value {
    let out = cli(api, &["task", "get", id, "--json"]);
    assert_ok(&out);
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn cli_env(api: SocketAddr, args: &[&str], env: Env) -> Output {
    let mut command = lbdns(args);
    command.arg("--api").arg(api.to_string());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run lbdns")
}

#[track_caller]
fn assert_ok(out: &Output) {
    assert!(out.status.success(), "{}", describe(out));
}

#[track_caller]
fn assert_failed_with(out: &Output, words: &[&str]) {
    assert!(!out.status.success(), "{}", describe(out));
    assert!(
        out.stdout.is_empty(),
        "errors are not output: {}",
        describe(out)
    );
    let err = stderr(out);
    for word in words {
        assert!(
            err.contains(word),
            "stderr lacks {word:?}: {}",
            describe(out)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Output

/// The example zone with `n` more tasks, so a listing is larger than a pipe's buffer.
fn site_with_many_tasks(n: usize) -> Site {
    let mut yaml = read(&example_dir().join("zones/example.com.lb.yaml"));
    for i in 0..n {
        yaml.push_str(&format!(
            "- id: bulk-{i}\n  hostname: bulk-{i}.example.com\n  origin_group: web\n"
        ));
    }
    Site::new(&[
        (
            "example.com.zone",
            &read(&example_dir().join("zones/example.com.zone")),
        ),
        ("example.com.lb.yaml", &yaml),
    ])
}

/// `lbdns task list | head -1`: the reader takes one line and closes the pipe; the listing
/// (hundreds of KiB, more than the pipe holds) ends quietly and successfully.
#[test]
fn a_reader_closing_stdout_ends_the_listing_quietly() {
    let site = site_with_many_tasks(1500);
    let server = site.serve();
    for args in [&["task", "list"][..], &["task", "list", "--json"]] {
        let mut child = lbdns(args)
            .arg("--api")
            .arg(server.api.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run lbdns");
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        drop(reader);
        let out = child.wait_with_output().unwrap();
        assert!(!first.is_empty(), "{args:?}: no output; {}", describe(&out));
        let err = stderr(&out);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {}",
            describe(&out)
        );
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
    }
}

/// Results are output (stdout); failures are diagnostics (stderr), and print no output.
#[test]
fn results_go_to_stdout_and_errors_to_stderr() {
    let site = Site::example();
    let server = site.serve();
    let api = server.api;
    let out = cli(
        api,
        &[
            "task",
            "create",
            "--hostname",
            "out.example.com",
            "--group",
            "web",
            "--id",
            "out",
            "--disabled",
        ],
    );
    assert_ok(&out);
    assert!(
        stdout(&out).contains("out.example.com"),
        "{}",
        describe(&out)
    );
    let out = cli(api, &["task", "delete", "out"]);
    assert_ok(&out);
    assert_eq!(stdout(&out), "deleted task out\n", "{}", describe(&out));
    assert_eq!(stderr(&out), "", "{}", describe(&out));

    let out = cli(api, &["group", "put", "spare", "--origin", "192.0.2.99=2"]);
    assert_ok(&out);
    let out = cli(api, &["group", "delete", "spare"]);
    assert_ok(&out);
    assert_eq!(
        stdout(&out),
        "deleted origin group spare\n",
        "{}",
        describe(&out)
    );
    assert_eq!(stderr(&out), "", "{}", describe(&out));

    let out = cli(api, &["task", "delete", "nosuch"]);
    assert_failed_with(&out, &["nosuch", "404"]);
    let out = cli(api, &["task", "delete", "www"]);
    assert_failed_with(&out, &["409"]);
}

// ---------------------------------------------------------------------------------------
// Hints for the common mistakes

/// A 401 tells the CLI user how to give the token, or that the one given is wrong.
#[test]
fn a_401_says_how_to_pass_the_token() {
    let site = Site::example();
    // A short token is fine on loopback.
    let server = Server::start(
        site.path(),
        &[
            "--geoip".as_ref(),
            test_geoip().as_os_str(),
            "--api-token".as_ref(),
            "secret".as_ref(),
        ],
    );
    let out = cli(server.api, &["task", "list"]);
    assert_failed_with(&out, &["401", "--api-token", "LBDNS_API_TOKEN"]);
    let out = cli(server.api, &["task", "list", "--api-token", "wrong"]);
    assert_failed_with(&out, &["401", "refused this token"]);
    assert_ok(&cli(server.api, &["task", "list", "--api-token", "secret"]));
}

/// Nothing listening on the API address: say what to check, not just "os error 111".
#[test]
fn a_refused_connection_says_to_start_the_server() {
    let nothing = free_port();
    let out = cli(nothing, &["task", "list"]);
    assert_failed_with(
        &out,
        &[
            &nothing.to_string(),
            "is `lbdns serve` running?",
            "--api",
            "LBDNS_API",
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Tokens

/// A token from a file (`LBDNS_API_TOKEN=$(cat token)`, a secrets mount) keeps its newline;
/// it is not part of the token, on either side.
#[test]
fn surrounding_whitespace_is_not_part_of_a_token() {
    let site = Site::example();
    let padded = format!(" {TOKEN}\n");
    let server = Server::start(
        site.path(),
        &[
            "--geoip".as_ref(),
            test_geoip().as_os_str(),
            "--api-token".as_ref(),
            padded.as_ref(),
        ],
    );
    assert_ok(&cli(server.api, &["task", "list", "--api-token", TOKEN]));
    assert_ok(&cli(server.api, &["task", "list", "--api-token", &padded]));
    let from_file = format!("{TOKEN}\n");
    assert_ok(&cli_env(
        server.api,
        &["task", "list"],
        &[("LBDNS_API_TOKEN", &from_file)],
    ));
}

/// Runs `lbdns serve` on the example with the API on `api`; it must refuse to start.
/// Kills it (and fails) if it is still running after 10 s.
fn serve_refusal(api: &str, args: &[&str], env: Env) -> (ExitStatus, String) {
    let site = Site::example();
    let mut command = lbdns(&["serve", "--dir"]);
    command
        .arg(site.path())
        .args([
            "--listen",
            &free_port().to_string(),
            "--api",
            api,
            "--geoip",
        ])
        .arg(test_geoip())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start lbdns");
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "lbdns serve --api {api} {args:?} (env {env:?}) started:\n{}",
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status, stderr(&out))
}

#[test]
fn serve_refuses_a_blank_token() {
    let api = free_port().to_string();
    let cases: [(&[&str], Env); 4] = [
        (&["--api-token", ""], &[]),
        (&["--api-token", "  "], &[]),
        (&[], &[("LBDNS_API_TOKEN", "")]),
        (&[], &[("LBDNS_API_TOKEN", "\n")]),
    ];
    for (args, env) in cases {
        let (status, err) = serve_refusal(&api, args, env);
        assert!(!status.success(), "{args:?} {env:?}: {status}\n{err}");
        assert!(
            err.contains("--api-token is empty"),
            "{args:?} {env:?}:\n{err}"
        );
    }
}

#[test]
fn serve_refuses_a_short_token_beyond_loopback() {
    let api = format!("0.0.0.0:{}", free_port().port());
    for (args, env) in [
        (&["--api-token", "secret"][..], &[][..]),
        (&[], &[("LBDNS_API_TOKEN", "0123456789abcde\n")]),
    ] {
        let (status, err) = serve_refusal(&api, args, env);
        assert!(!status.success(), "{args:?} {env:?}: {status}\n{err}");
        assert!(
            err.contains("16 characters") && err.contains("openssl rand"),
            "{args:?} {env:?}: the message says how long and how to make one:\n{err}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Logs

/// An `LBDNS_LOG` that is not a filter (a bare word would be read as a target name and
/// silence everything else) is refused with a warning, and logging stays at info.
#[test]
fn an_invalid_lbdns_log_falls_back_to_info_with_a_warning() {
    let site = Site::example();
    for value in ["verbose", "debug,lots"] {
        let server = Server::start_with_env(
            site.path(),
            &["--geoip".as_ref(), test_geoip().as_os_str()],
            &[("LBDNS_LOG", std::path::Path::new(value))],
        );
        let log = server.log();
        assert!(
            log.contains("WARN") && log.contains("LBDNS_LOG") && log.contains("not a level"),
            "LBDNS_LOG={value}: no warning:\n{log}"
        );
        assert!(
            log.contains("configuration loaded"),
            "LBDNS_LOG={value}: not logging at info:\n{log}"
        );
    }
    // A good one still works: debug shows more than info.
    let server = Server::start_with_env(
        site.path(),
        &["--geoip".as_ref(), test_geoip().as_os_str()],
        &[("LBDNS_LOG", std::path::Path::new("warn"))],
    );
    let log = server.log();
    assert!(!log.contains("INFO") && !log.contains("LBDNS_LOG"), "{log}");
}

#[test]
fn logs_to_a_file_have_no_colour_codes() {
    let site = Site::example();
    let server = site.serve();
    // A request or two so there is more than the start in the log.
    assert_ok(&cli(server.api, &["task", "list"]));
    let log = server.log();
    assert!(log.contains("INFO"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a log file:\n{log:?}"
    );
}

/// `lbdns serve` on a pseudo-terminal (util-linux `script`), with the API on a port that
/// is taken so that it logs its start and exits at once; what the terminal showed.
/// Fails (never skips) where `script` is missing.
fn serve_on_a_terminal(no_color: Option<&str>) -> String {
    let script_bin = require_tool(&["script"], "bsdutils");
    let site = Site::example();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let command = format!(
        "'{}' serve --dir '{}' --listen {} --api {} --geoip '{}'",
        env!("CARGO_BIN_EXE_lbdns"),
        site.path().display(),
        free_port(),
        taken.local_addr().unwrap(),
        test_geoip().display()
    );
    let mut script = Command::new(script_bin);
    script
        .args(["-qec", &command, "/dev/null"])
        .env_remove("NO_COLOR")
        .env("LBDNS_LOG", "info")
        .stdin(Stdio::null());
    if let Some(value) = no_color {
        script.env("NO_COLOR", value);
    }
    let out = script.output().expect("run script");
    stdout(&out)
}

/// On a terminal the log is coloured, unless `NO_COLOR` is set (and not empty).
#[test]
fn a_terminal_gets_colour_unless_no_color_is_set() {
    let shown = serve_on_a_terminal(None);
    assert!(shown.contains("configuration loaded"), "{shown:?}");
    assert!(
        shown.contains('\u{1b}'),
        "no colour on a terminal: {shown:?}"
    );
    let shown = serve_on_a_terminal(Some(""));
    assert!(
        shown.contains('\u{1b}'),
        "NO_COLOR= (empty) is unset: {shown:?}"
    );
    let shown = serve_on_a_terminal(Some("1"));
    assert!(shown.contains("configuration loaded"), "{shown:?}");
    assert!(
        !shown.contains('\u{1b}'),
        "NO_COLOR=1 but coloured: {shown:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Internationalized names

#[test]
fn an_internationalized_hostname_gets_an_ascii_id() {
    let site = Site::example();
    let server = site.serve();
    let out = cli(
        server.api,
        &[
            "task",
            "create",
            "--hostname",
            "xn--bcher-kva.example.com",
            "--group",
            "web",
        ],
    );
    assert_ok(&out);
    assert!(
        stdout(&out)
            .lines()
            .nth(1)
            .is_some_and(|row| row.starts_with("xn--bcher-kva.example.com ")),
        "{}",
        describe(&out)
    );
    let out = cli(server.api, &["task", "get", "xn--bcher-kva.example.com"]);
    assert_ok(&out);
    assert!(
        server
            .dig(&["+short", "xn--bcher-kva.example.com", "A"])
            .trim()
            != "",
        "the task answers"
    );

    // Unicode is not what DNS carries: refused, naming the name to write instead.
    let out = cli(
        server.api,
        &[
            "task",
            "create",
            "--hostname",
            "bücher.example.com",
            "--group",
            "web",
        ],
    );
    assert_failed_with(&out, &["422", "hostname", "xn--bcher-kva.example.com"]);
}

// ---------------------------------------------------------------------------------------
// Origin groups

/// The origin's line of `group`'s block in a `group list` table, found by address.
fn origin_line<'a>(table: &'a str, address: &str) -> &'a str {
    table
        .lines()
        .find(|line| line.split_whitespace().any(|cell| cell == address))
        .unwrap_or_else(|| panic!("no line for {address}:\n{table}"))
}

#[test]
fn group_list_shows_weights_and_region_keys() {
    let site = Site::example();
    let server = site.serve();
    let out = cli(server.api, &["group", "list"]);
    assert_ok(&out);
    let table = stdout(&out);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert!(
        header.contains(&"WEIGHT") && header.contains(&"REGION"),
        "{table}"
    );
    for (address, cells) in [
        ("192.0.2.10", &["3"][..]),
        ("192.0.2.12", &["0"]),
        ("198.51.100.1", &["countries=CN,HK"]),
        ("198.51.100.2", &["continents=EU"]),
        ("198.51.100.3", &["subnets=203.0.113.0/24"]),
        ("198.51.100.9", &["default"]),
    ] {
        let line = origin_line(&table, address);
        for cell in cells {
            assert!(
                line.split_whitespace().any(|c| c == *cell),
                "{address}: no {cell}:\n{table}"
            );
        }
    }
    // Each group's first line names it; every origin of it follows, one a line.
    let geo = table
        .lines()
        .position(|l| l.starts_with("geo "))
        .unwrap_or_else(|| panic!("{table}"));
    let addresses: Vec<&str> = table
        .lines()
        .skip(geo)
        .take(4)
        .filter_map(|l| l.split_whitespace().find(|c| c.starts_with("198.51.100.")))
        .collect();
    assert_eq!(
        addresses,
        [
            "198.51.100.1",
            "198.51.100.2",
            "198.51.100.3",
            "198.51.100.9"
        ],
        "{table}"
    );
}

/// SPEC §12 from the command line: `task create --stickiness client_subnet` makes a task
/// whose answer holds for the client's /24 (the scope RFC 7871 caches it for), `task
/// update --stickiness none` makes it draw again (an answer for any client, scope 0), and
/// `group list` shows a group's fallback and which group of its chain answers now.
#[test]
fn sticky_tasks_are_created_and_group_list_shows_the_fallback_serving() {
    require_tool(&["dig"], "dnsutils");
    // Nothing listens on this port: the primary's tcp check fails, the backup answers.
    let port = free_port().port();
    let yaml = format!(
        "origin_groups:\n  primary:\n    fallback: backup\n    health_check: {{type: tcp, port: {port}, interval: 0.2}}\n    origins:\n    - address: 127.0.0.1\n  backup:\n    origins:\n    - address: 192.0.2.7\n  pool:\n    origins:\n    - address: 192.0.2.1\n    - address: 192.0.2.2\n"
    );
    let zone = read(&example_dir().join("zones/example.com.zone"));
    let site = Site::new(&[("example.com.zone", &zone), ("example.com.lb.yaml", &yaml)]);
    let server = site.serve();
    let create = [
        "task",
        "create",
        "--hostname",
        "sticky.example.com",
        "--group",
        "pool",
        "--stickiness",
        "client_subnet",
    ];
    assert_ok(&cli(server.api, &create));
    let task = task_json(server.api, "sticky.example.com");
    assert_eq!(task["stickiness"], "client_subnet", "{task}");
    let reply = server.dig(&["+subnet=198.51.100.7/32", "sticky.example.com", "A"]);
    assert!(
        reply.contains("; CLIENT-SUBNET: 198.51.100.7/32/24"),
        "{reply}"
    );
    // Back to random draws: the answer no longer depends on the client (scope 0).
    let update = [
        "task",
        "update",
        "sticky.example.com",
        "--stickiness",
        "none",
    ];
    assert_ok(&cli(server.api, &update));
    let task = task_json(server.api, "sticky.example.com");
    assert!(task.get("stickiness").is_none_or(|s| s.is_null()), "{task}");
    let reply = server.dig(&["+subnet=198.51.100.7/32", "sticky.example.com", "A"]);
    assert!(
        reply.contains("; CLIENT-SUBNET: 198.51.100.7/32/0"),
        "{reply}"
    );
    let bad = cli(
        server.api,
        &[
            "task",
            "create",
            "--hostname",
            "x.example.com",
            "--group",
            "pool",
            "--stickiness",
            "yes",
        ],
    );
    assert!(
        !bad.status.success() && stderr(&bad).contains("client_subnet"),
        "{}",
        describe(&bad)
    );

    let list = || stdout(&cli(server.api, &["group", "list"]));
    let line = |table: &str, name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name}:\n{table}"))
            .to_owned()
    };
    wait_until("the backup serves", list, || {
        line(&list(), "primary").contains("weight, fallback backup: serving backup")
    });
    let table = list();
    assert!(!line(&table, "backup").contains("fallback"), "{table}");
    assert!(!line(&table, "pool").contains("fallback"), "{table}");
}

/// `task create` is safe to retry: run twice, the task exists once and the second run
/// succeeds; a different task under the same id is refused and changes nothing.
#[test]
fn task_create_is_safe_to_retry() {
    let site = Site::example();
    let server = site.serve();
    let create = [
        "task",
        "create",
        "--hostname",
        "again.example.com",
        "--group",
        "web",
        "--ttl",
        "20",
    ];
    assert_ok(&cli(server.api, &create));
    let file = read(&site.path().join("zones/example.com.lb.yaml"));
    let again = cli(server.api, &create);
    assert_ok(&again);
    assert!(
        stdout(&again).contains("again.example.com"),
        "{}",
        describe(&again)
    );
    assert_eq!(
        read(&site.path().join("zones/example.com.lb.yaml")),
        file,
        "a retry changes nothing"
    );
    let list = stdout(&cli(server.api, &["task", "list", "--json"]));
    assert_eq!(
        list.matches("\"again.example.com\"").count(),
        2,
        "one task (hostname and id): {list}"
    );

    let other = cli(
        server.api,
        &[
            "task",
            "create",
            "--hostname",
            "again.example.com",
            "--group",
            "geo",
        ],
    );
    assert_failed_with(&other, &["already exists", "--id"]);
    assert_eq!(read(&site.path().join("zones/example.com.lb.yaml")), file);
}

/// `task update` changes the fields given and keeps the others; the answers carry the
/// new TTL from the new group. A bad value or an unknown task is refused and changes
/// nothing.
#[test]
fn task_update_changes_only_the_fields_given() {
    let site = Site::example();
    let server = site.serve();
    let get = |id: &str| task_json(server.api, id);
    let before = get("www");
    let out = cli(
        server.api,
        &["task", "update", "www", "--ttl", "45", "--group", "geo"],
    );
    assert_ok(&out);
    let row: Vec<String> = stdout(&out)
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        row[..5],
        ["www", "www.example.com", "geo", "45", "1"],
        "{}",
        describe(&out)
    );
    let after = get("www");
    assert_eq!(
        (after["ttl"].clone(), after["origin_group"].clone()),
        (45.into(), "geo".into())
    );
    for kept in ["hostname", "answers", "enabled", "mode"] {
        assert_eq!(after[kept], before[kept], "{kept}: {after}");
    }
    let reply = server.ask("www.example.com.", hickory_proto::rr::RecordType::A);
    let ttls: Vec<u32> = reply.answers.iter().map(|r| r.ttl).collect();
    assert_eq!(ttls, [45], "{reply}");

    let file = read(&site.path().join("zones/example.com.lb.yaml"));
    let nothing = cli(server.api, &["task", "update", "www"]);
    assert_failed_with(&nothing, &["nothing to change", "--ttl"]);
    let bad = cli(server.api, &["task", "update", "www", "--ttl", "0"]);
    assert_failed_with(&bad, &["ttl", "422"]);
    let missing = cli(server.api, &["task", "update", "nope", "--ttl", "5"]);
    assert_failed_with(&missing, &["no task \"nope\"", "404"]);
    assert_eq!(read(&site.path().join("zones/example.com.lb.yaml")), file);
}

/// `group put` takes region keys as `group list` prints them and the fallback chain's
/// keys from flags; what it wrote reads back the same, and a mistyped key changes nothing.
#[test]
fn group_put_takes_region_keys_and_the_chain_from_flags() {
    let site = Site::example();
    let server = site.serve();
    let put = cli(
        server.api,
        &[
            "group",
            "put",
            "eu",
            "--policy",
            "region",
            "--origin",
            "192.0.2.21=2 countries=DE,FR subnets=10.1.0.0/16",
            "--origin",
            "192.0.2.29",
            "--fallback",
            "web",
            "--min-up",
            "1",
            "--when-all-down",
            "servfail",
        ],
    );
    assert_ok(&put);
    let table = stdout(&cli(server.api, &["group", "get", "eu"]));
    let keys = "countries=DE,FR subnets=10.1.0.0/16";
    assert!(origin_line(&table, "192.0.2.21").contains(keys), "{table}");
    let json = stdout(&cli(server.api, &["group", "get", "eu", "--json"]));
    let group: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(group["fallback"], "web", "{group}");
    assert_eq!(group["min_up"], 1, "{group}");
    assert_eq!(group["when_all_down"], "servfail", "{group}");
    assert_eq!(group["origins"][0]["weight"], 2, "{group}");
    assert_eq!(
        group["origins"][0]["countries"],
        serde_json::json!(["DE", "FR"]),
        "{group}"
    );
    assert_eq!(
        group["origins"][0]["subnets"],
        serde_json::json!(["10.1.0.0/16"]),
        "{group}"
    );

    let file = read(&site.path().join("zones/example.com.lb.yaml"));
    let typo = cli(
        server.api,
        &[
            "group",
            "put",
            "eu",
            "--policy",
            "region",
            "--origin",
            "192.0.2.21 country=DE",
        ],
    );
    assert_failed_with(
        &typo,
        &["country is no region key", "countries, continents"],
    );
    let unknown = cli(
        server.api,
        &[
            "group",
            "put",
            "eu",
            "--origin",
            "192.0.2.21",
            "--fallback",
            "nope",
        ],
    );
    assert_failed_with(&unknown, &["nope", "422"]);
    assert_eq!(read(&site.path().join("zones/example.com.lb.yaml")), file);
}

/// `group get` shows one group; a refused deletion names the command that fixes it, not
/// the API request.
#[test]
fn group_get_and_refused_deletions_name_the_commands_to_run() {
    let site = Site::example();
    let server = site.serve();
    let out = cli(server.api, &["group", "get", "web"]);
    assert_ok(&out);
    let table = stdout(&out);
    assert!(
        table.lines().nth(1).is_some_and(|l| l.starts_with("web ")),
        "{table}"
    );
    assert!(origin_line(&table, "192.0.2.10").contains(" 3 "), "{table}");
    assert!(
        !table.contains("198.51.100."),
        "only the group asked for:\n{table}"
    );
    let json = cli(server.api, &["group", "get", "web", "--json"]);
    let group: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(group["name"], "web", "{group}");
    let missing = cli(server.api, &["group", "get", "nope"]);
    assert_failed_with(&missing, &["no origin group \"nope\"", "404"]);

    let file = read(&site.path().join("zones/example.com.lb.yaml"));
    let enabled = cli(server.api, &["task", "delete", "www"]);
    assert_failed_with(
        &enabled,
        &[
            "is enabled",
            "hint: disable it first: `lbdns task disable www`",
        ],
    );
    let used = cli(server.api, &["group", "delete", "web"]);
    assert_failed_with(
        &used,
        &["used by task www", "lbdns task update ID --group GROUP"],
    );
    for out in [&enabled, &used] {
        assert!(
            !stderr(out).contains("/v1/"),
            "no API path: {}",
            describe(out)
        );
    }
    assert_eq!(read(&site.path().join("zones/example.com.lb.yaml")), file);
}

#[test]
fn secondaries_are_listed_and_set_from_the_command_line() {
    let site = Site::example();
    let server = site.serve();
    let api = server.api;
    let out = cli(api, &["secondaries", "list"]);
    assert_ok(&out);
    assert_eq!(
        stdout(&out),
        "no secondaries: zone transfers are refused to everyone\n",
        "{}",
        describe(&out)
    );
    let out = cli(api, &["secondaries", "set", "192.0.2.53", "2001:db8::/64"]);
    assert_ok(&out);
    assert_eq!(
        stdout(&out),
        "192.0.2.53\n2001:db8::/64\n",
        "{}",
        describe(&out)
    );
    let out = cli(api, &["secondaries", "list", "--json"]);
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["secondaries"][1], "2001:db8::/64", "{}", describe(&out));
    // A bad entry names itself; nothing changes.
    let out = cli(api, &["secondaries", "set", "ns1.example.net"]);
    assert_failed_with(&out, &["422", "secondaries[0]", "ns1.example.net"]);
    let out = cli(api, &["secondaries", "list"]);
    assert_eq!(
        stdout(&out),
        "192.0.2.53\n2001:db8::/64\n",
        "{}",
        describe(&out)
    );
    // None: transfers refused to everyone again.
    let out = cli(api, &["secondaries", "set"]);
    assert_ok(&out);
    assert!(
        stdout(&out).starts_with("no secondaries"),
        "{}",
        describe(&out)
    );
}

// ---------------------------------------------------------------------------------------
// Version and help

/// `--version` names the commit (as git tells it) and the features built in.
#[test]
fn version_names_the_commit_and_the_features() {
    let out = lbdns(&["--version"]).output().unwrap();
    assert_ok(&out);
    let git = Command::new("git")
        .current_dir(repo())
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .expect("git is installed (the suite runs in a git checkout)");
    let commit = stdout(&git).trim().to_owned();
    let shown = stdout(&out);
    assert!(
        shown.starts_with(&format!(
            "lbdns {} (commit {commit}",
            env!("CARGO_PKG_VERSION")
        )),
        "{shown}"
    );
    let features = if cfg!(feature = "etcd") {
        "etcd"
    } else {
        "none"
    };
    assert!(shown.contains(&format!("features: {features})")), "{shown}");
}

/// Help text: every argument says what it is, no default is shown twice, an unset
/// environment variable is not shown as set to nothing (`[env: LBDNS_API=]`), and a client
/// command lists its own options first, then how it reaches the server under a heading of
/// its own (they were interleaved: --api, --hostname, --api-token, --group, --site...).
#[test]
fn help_describes_every_argument_once() {
    let commands: &[&[&str]] = &[
        &["serve"],
        &["check"],
        &["task", "list"],
        &["task", "get"],
        &["task", "create"],
        &["task", "update"],
        &["task", "enable"],
        &["task", "disable"],
        &["task", "delete"],
        &["group", "list"],
        &["group", "get"],
        &["group", "put"],
        &["group", "delete"],
        &["secondaries", "list"],
        &["secondaries", "set"],
        &["nodes"],
        &["status"],
    ];
    for command in commands {
        let out = lbdns(command).arg("--help").output().unwrap();
        assert_ok(&out);
        let help = stdout(&out);
        for line in help.lines() {
            assert!(
                line.matches("[default:").count() <= 1,
                "{command:?}: {line}"
            );
        }
        assert!(
            !help.contains("=]"),
            "{command:?}: an unset variable shown as empty:\n{help}"
        );
        if help.contains("--site <SITE>") {
            let (own, connection) = help
                .split_once("\nConnection:\n")
                .unwrap_or_else(|| panic!("{command:?}: no Connection heading:\n{help}"));
            assert!(
                !own.contains("--api") && !own.contains("--site"),
                "{command:?}: connection options among the command's own:\n{help}"
            );
            for option in ["--api <API>", "--api-token", "--site", "--json"] {
                assert!(
                    connection.contains(option),
                    "{command:?}: {option} not under Connection:\n{help}"
                );
            }
        }
        let mut in_arguments = false;
        for line in help.lines() {
            if line.starts_with("Arguments:") {
                in_arguments = true;
            } else if !line.starts_with(' ') {
                in_arguments = false;
            } else if in_arguments {
                let described = line
                    .trim()
                    .split_once("  ")
                    .is_some_and(|(_, d)| !d.trim().is_empty());
                assert!(
                    described,
                    "{command:?}: an argument without a description: {line:?}"
                );
            }
        }
    }
}

/// `--api localhost` (no port) is refused with the form expected, not sent to port 80;
/// a `--listen` that is not ADDR:PORT says the form too.
#[test]
fn an_api_or_listen_address_without_a_port_is_refused_with_the_form() {
    let out = lbdns(&["task", "list", "--api", "localhost"])
        .output()
        .unwrap();
    assert_failed_with(&out, &["HOST:PORT", "localhost:8053", "port 80"]);
    let out = lbdns(&["task", "list"])
        .env("LBDNS_API", "127.0.0.1")
        .output()
        .unwrap();
    assert_failed_with(&out, &["HOST:PORT"]);
    let out = lbdns(&["serve", "--listen", "localhost:53"])
        .output()
        .unwrap();
    assert_failed_with(&out, &["ADDR:PORT", "[::1]:53"]);
}

// ---------------------------------------------------------------------------------------
// Privileges

/// Runs `id -u`: the tests below need root (CI runs as root), and say so when not.
fn assert_root() {
    let id = Command::new("id").arg("-u").output().expect("run id");
    assert_eq!(
        stdout(&id).trim(),
        "0",
        "this test starts lbdns as root to see it drop privileges: run the suite as root (as .ci/run does)"
    );
}

/// A temp site that the user `nobody` may read, and lock (lbdns creates `.lbdns.lock` in
/// the directory it serves; temp dirs are 0700).
fn site_for_nobody() -> Site {
    use std::os::unix::fs::PermissionsExt;
    let site = Site::example();
    std::fs::set_permissions(site.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(
        site.path().join("zones"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    site
}

/// The `Name:` line of /proc/PID/status, its fields.
fn proc_status(pid: u32, name: &str) -> Vec<String> {
    read(std::path::Path::new(&format!("/proc/{pid}/status")))
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")).map(str::to_owned))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// `--user nobody`, started as root: once serving, every uid and gid is nobody's, no
/// supplementary group and no capability is left, and it still answers.
#[test]
fn serve_as_root_with_user_drops_to_that_user_once_bound() {
    assert_root();
    let site = site_for_nobody();
    let server = site.serve_with(&["--user", "nobody"]);
    let pid = server.pid();
    assert_eq!(proc_status(pid, "Uid"), ["65534"; 4], "{}", server.log());
    assert_eq!(proc_status(pid, "Gid"), ["65534"; 4]);
    assert!(proc_status(pid, "Groups").is_empty());
    assert_eq!(proc_status(pid, "CapEff"), ["0000000000000000"]);
    assert_eq!(proc_status(pid, "CapPrm"), ["0000000000000000"]);
    let reply = server.ask("www.example.com.", hickory_proto::rr::RecordType::A);
    assert_eq!(reply.answers.len(), 1, "{reply}");
    assert!(
        server.log().contains("privileges dropped"),
        "{}",
        server.log()
    );
    // An unknown user is refused before anything is served (another directory: this one
    // is locked by the server above).
    let other = Site::example();
    let out = lbdns(&["serve", "--user", "no-such-user-here", "--dir"])
        .arg(other.path())
        .arg("--geoip")
        .arg(test_geoip())
        .args([
            "--listen",
            &free_port().to_string(),
            "--api",
            &free_port().to_string(),
        ])
        .output()
        .unwrap();
    assert_failed_with(&out, &["no-such-user-here", "no such user"]);
}

/// Without the right to bind a port below 1024, the error says how to get it.
#[test]
fn a_privileged_port_refused_says_how_to_get_the_right() {
    assert_root();
    let site = site_for_nobody();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_lbdns"))
        .args(["serve", "--dir"])
        .arg(site.path())
        .arg("--geoip")
        .arg(test_geoip())
        .args([
            "--listen",
            "127.0.0.1:53",
            "--api",
            &free_port().to_string(),
        ])
        .env_remove("LBDNS_API_TOKEN")
        .output()
        .expect("setpriv (util-linux) is installed");
    assert_failed_with(
        &out,
        &[
            "Permission denied",
            "CAP_NET_BIND_SERVICE",
            "--user USER",
            "setcap",
        ],
    );
}
