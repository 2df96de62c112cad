//! `lbdns check` and `lbdns serve` against invalid directories (SPEC §2, §3): every rule of
//! the site file and every zone or directory problem is reported with a non-zero exit as
//! `<path>:<line>: <message>` on stderr, naming the right file, the right line and the
//! problem; `serve` refuses to start on the same directories; the shipped example passes.
//!
//! The line an error is expected on is marked in the fixture text with `<- error` (in a YAML
//! or zone comment), so the fixtures read naturally and the line numbers cannot drift. It is
//! the line of the offending key or record, never just the start of the enclosing task.

mod common;
use common::*;

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const SITE_FILE: &str = "zones/example.com.lb.yaml";
const ZONE_FILE: &str = "zones/example.com.zone";

/// A valid zone for example.com, with a delegation (`dev`) for the zone-cut rule.
const ZONE: &str = "\
$TTL 300
@       IN SOA ns1 hostmaster 1 7200 900 1209600 300
@       NS  ns1
ns1     A   192.0.2.53
www     A   192.0.2.80
dev     NS  ns1.dev
ns1.dev A   192.0.2.55
";

/// A valid site file; every invalid fixture below differs from it in one rule.
const VALID_SITE: &str = "\
origin_groups:
  web:
    policy: weight
    origins:
      - address: 192.0.2.10
        weight: 3
      - address: 2001:db8::10
  geo:
    policy: region
    origins:
      - address: 198.51.100.1
        countries: [CN, GB]
      - address: 198.51.100.2
        continents: [EU]
      - address: 198.51.100.3
        subnets: [203.0.113.0/24, 2001:db8:1::/48]
      - address: 198.51.100.9
  cdn:
    origins:
      - address: edge-a.cdn.example.net
      - address: edge-b.cdn.example.net
tasks:
  - id: www
    hostname: www.example.com
    mode: dns_only
    origin_group: web
    ttl: 30
    answers: 2
    enabled: true
  - hostname: geo.example.com
    origin_group: geo
    ttl: 86400
  - id: cdn
    hostname: cdn.example.com
    origin_group: cdn
    ttl: 1
  - id: apex
    hostname: example.com
    origin_group: web
  - id: wild
    hostname: '*.apps.example.com'
    origin_group: web
";

const MARK: &str = "<- error";

/// The 1-based line of `text` that carries the `<- error` mark.
fn marked_line(text: &str) -> usize {
    let marked: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains(MARK))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        marked.len(),
        1,
        "fixture needs exactly one `{MARK}`:\n{text}"
    );
    marked[0]
}

/// A directory with the valid zone and `yaml` as the site file.
fn site_with(yaml: &str) -> Site {
    Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", yaml)])
}

/// A directory with `zone` as the zone file and no site file.
fn zone_only(zone: &str) -> Site {
    Site::new(&[("example.com.zone", zone)])
}

/// True when `line` is `<path>:<n>: <message>` (or `<path>: <message>` when `at` is `None`
/// and the problem has no line), with every word of `words` in the message.
fn is_error_line(line: &str, path: &str, at: Option<usize>, words: &[&str]) -> bool {
    let Some(rest) = line.strip_prefix(path) else {
        return false;
    };
    let message = match at {
        Some(n) => rest.strip_prefix(&format!(":{n}: ")),
        None => rest.strip_prefix(": ").or_else(|| {
            let rest = rest.strip_prefix(':')?;
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            (digits > 0).then(|| rest[digits..].strip_prefix(": "))?
        }),
    };
    let Some(message) = message else {
        return false;
    };
    let message = message.to_lowercase();
    !message.trim().is_empty() && words.iter().all(|w| message.contains(&w.to_lowercase()))
}

/// Checks that the run failed and that `err` holds `<dir>/<file>:<at>: ...` naming `words`.
fn reported(
    dir: &Path,
    status: ExitStatus,
    err: &str,
    file: &str,
    at: Option<usize>,
    words: &[&str],
) -> Result<(), String> {
    let path = dir.join(file).display().to_string();
    let shown = at.map_or_else(|| "<no line>".to_owned(), |n| n.to_string());
    if status.success() {
        return Err(format!(
            "exited with success, expected `{path}:{shown}: ...`; stderr:\n{err}"
        ));
    }
    if err
        .lines()
        .any(|line| is_error_line(line, &path, at, words))
    {
        Ok(())
    } else {
        Err(format!(
            "expected an error `{path}:{shown}: ...` mentioning {words:?}; stderr:\n{err}"
        ))
    }
}

fn assert_reported(
    dir: &Path,
    status: ExitStatus,
    err: &str,
    file: &str,
    at: Option<usize>,
    words: &[&str],
) {
    if let Err(e) = reported(dir, status, err, file, at, words) {
        panic!("{e}");
    }
}

/// Panics with every failure of a table of cases, not just the first.
fn assert_all(results: impl IntoIterator<Item = Result<(), String>>) {
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Runs `check` on `site` and checks the error.
fn check_reports(site: &Site, file: &str, at: Option<usize>, words: &[&str]) -> Result<(), String> {
    let output = site.check();
    reported(
        site.path(),
        output.status,
        &stderr(&output),
        file,
        at,
        words,
    )
}

fn assert_check_reports(site: &Site, file: &str, at: Option<usize>, words: &[&str]) {
    if let Err(e) = check_reports(site, file, at, words) {
        panic!("{e}");
    }
}

/// `check` on the valid zone plus `yaml` reports the site file at the marked line.
fn site_error(yaml: &str, words: &[&str]) -> Result<(), String> {
    check_reports(&site_with(yaml), SITE_FILE, Some(marked_line(yaml)), words)
        .map_err(|e| format!("{e}site file:\n{yaml}"))
}

fn assert_site_error(yaml: &str, words: &[&str]) {
    if let Err(e) = site_error(yaml, words) {
        panic!("{e}");
    }
}

/// `check` on `zone` (no site file) reports the zone file at the marked line.
fn zone_error(zone: &str, words: &[&str]) -> Result<(), String> {
    check_reports(&zone_only(zone), ZONE_FILE, Some(marked_line(zone)), words)
        .map_err(|e| format!("{e}zone file:\n{zone}"))
}

fn assert_zone_error(zone: &str, words: &[&str]) {
    if let Err(e) = zone_error(zone, words) {
        panic!("{e}");
    }
}

/// Asserts that `check` succeeds.
fn assert_check_passes(site: &Site) {
    let output = site.check();
    assert!(
        output.status.success(),
        "check failed on a valid directory; stderr:\n{}",
        stderr(&output)
    );
}

/// Runs `lbdns serve` on `site` and waits (at most 10 s) for it to exit.
fn serve_until_exit(site: &Site) -> (ExitStatus, String) {
    let log = site.path().join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(["serve", "--dir"])
        .arg(site.path())
        .arg("--listen")
        .arg(free_port().to_string())
        .arg("--geoip")
        .arg(test_geoip())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start lbdns serve");
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, read(&log));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "lbdns serve still running after {PATIENCE:?} on an invalid directory:\n{}",
                read(&log)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Valid directories: the baseline every invalid fixture departs from, and the example.

#[test]
fn valid_site_passes() {
    assert_check_passes(&site_with(VALID_SITE));
}

/// Success is output (stdout); problems are diagnostics (stderr).
#[test]
fn check_reports_success_on_stdout() {
    let output = site_with(VALID_SITE).check();
    assert!(output.status.success(), "{}", stderr(&output));
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        out.starts_with("ok: 1 zone, 5 tasks (5 enabled)"),
        "stdout: {out:?}\nstderr: {}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("ok:"), "{}", stderr(&output));
    let output = site_with("tasks: 3\n").check();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "{output:?}");
}

#[test]
fn shipped_example_passes_check_with_its_own_geoip() {
    let output = Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(["check", "--dir"])
        .arg(example_dir())
        .arg("--geoip")
        .arg(repo().join("geoip/geo-whois-asn-country.mmdb"))
        .output()
        .expect("run lbdns check");
    assert!(
        output.status.success(),
        "the shipped example fails check:\n{}",
        stderr(&output)
    );
}

#[test]
fn unused_groups_with_a_port_or_mixed_origins_are_accepted() {
    let yaml = "\
origin_groups:
  legacy:
    origins:
      - address: 192.0.2.30:8080
      - address: '[2001:db8::30]:443'
      - address: origin.example.net:80
  mixed:
    origins:
      - address: 192.0.2.31
      - address: origin.example.net
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - id: www
    hostname: www.example.com
    origin_group: web
";
    assert_check_passes(&site_with(yaml));
}

// ---------------------------------------------------------------------------------------
// Shape of the site file: unknown keys, YAML syntax, types.

#[test]
fn unknown_top_level_key() {
    assert_site_error(
        "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
defaults:          # <- error
  ttl: 30
tasks:
  - hostname: www.example.com
    origin_group: web
",
        &["unknown", "defaults"],
    );
}

#[test]
fn unknown_group_key() {
    assert_site_error(
        "\
origin_groups:
  web:
    polcy: region  # <- error
    origins:
      - address: 192.0.2.10
",
        &["unknown", "polcy"],
    );
}

#[test]
fn unknown_origin_key() {
    assert_site_error(
        "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
      - address: 192.0.2.11
        wieght: 3  # <- error
",
        &["unknown", "wieght"],
    );
}

#[test]
fn unknown_task_key() {
    assert_site_error(
        "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - id: www
    hostname: www.example.com
    origin_group: web
    healthcheck: /ping  # <- error
",
        &["unknown", "healthcheck"],
    );
}

#[test]
fn yaml_syntax_error() {
    assert_site_error(
        "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - id: www
    hostname: www.example.com: x  # <- error
    origin_group: web
",
        &[],
    );
}

#[test]
fn yaml_unclosed_quote() {
    // The quote opens on line 7 and never closes (no mark: it would sit inside the quote).
    let yaml = "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - id: www
    hostname: \"www.example.com
    origin_group: web
";
    assert_check_reports(&site_with(yaml), SITE_FILE, Some(7), &["quote"]);
}

#[test]
fn duplicate_group_name() {
    assert_site_error(
        "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
  web:  # <- error
    origins:
      - address: 192.0.2.11
",
        &["web"],
    );
}

/// Keys are named as the operator wrote them: no `value` segment of the reader's own.
#[test]
fn key_paths_are_the_keys_of_the_file() {
    let cases = [
        (
            "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - id: www
    hostname: www.example.com
    origin_group: web
    frobnicate: 1  # <- error
",
            "tasks[0].frobnicate",
        ),
        (
            "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
      - address: 192.0.2.11
        weight: heavy  # <- error
",
            "origin_groups.web.origins[1].weight",
        ),
    ];
    assert_all(cases.iter().map(|(yaml, key)| {
        site_error(yaml, &[key])?;
        let err = stderr(&site_with(yaml).check());
        if err.contains(".value") {
            Err(format!("the key path shows `.value`:\n{err}"))
        } else {
            Ok(())
        }
    }));
}

/// A duplicate key is reported as such, with its line and name and no advice about the
/// YAML library's options.
#[test]
fn duplicate_keys_name_the_key_and_line() {
    let cases = [
        (
            "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - id: www
    hostname: www.example.com
    origin_group: web
    ttl: 30
    ttl: 40  # <- error
",
            "duplicate key \"ttl\"",
        ),
        (
            "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
  web:  # <- error
    origins:
      - address: 192.0.2.11
",
            "duplicate key \"web\"",
        ),
    ];
    assert_all(cases.iter().map(|(yaml, words)| {
        site_error(yaml, &[words])?;
        let err = stderr(&site_with(yaml).check());
        if ["DuplicateKeyPolicy", "Options", "mapping"]
            .iter()
            .any(|w| err.contains(w))
        {
            Err(format!("the message carries library wording:\n{err}"))
        } else {
            Ok(())
        }
    }));
}

#[test]
fn wrong_types_name_the_key() {
    let task = |line: &str| {
        format!(
            "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - id: www
    hostname: www.example.com
    origin_group: web
    {line}  # <- error
"
        )
    };
    assert_all([
        site_error(&task("ttl: \"abc\""), &["ttl"]),
        site_error(&task("answers: two"), &["answers"]),
        site_error(&task("enabled: maybe"), &["enabled"]),
        site_error(&task("mode: dns-only"), &["mode", "dns-only"]),
        site_error(
            "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
        weight: heavy  # <- error
",
            &["weight"],
        ),
        site_error(
            "\
origin_groups:
  web:
    origins: 192.0.2.10  # <- error
",
            &["origins"],
        ),
        site_error(
            "\
origin_groups:
  web:
    policy: fastest  # <- error
    origins:
      - address: 192.0.2.10
",
            &["fastest", "weight", "region", "nearest"],
        ),
    ]);
}

/// A number of the wrong form is worded as the field's rule, not as the parser's type
/// (`invalid u32`, `expected string scalar`), from YAML and from the API alike.
#[test]
fn whole_numbers_are_worded_as_their_rule() {
    let weight = |value: &str| {
        format!(
            "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
        weight: {value}  # <- error
"
        )
    };
    let ttl = |value: &str| {
        format!(
            "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - hostname: www.example.com
    origin_group: web
    ttl: {value}  # <- error
"
        )
    };
    let mut results = Vec::new();
    for value in ["3.5", "-1", "heavy", "[1]", "99999999999"] {
        results.push(site_error(
            &weight(value),
            &["weight must be a whole number 0..100"],
        ));
    }
    for value in ["\"abc\"", "1.5", "-30"] {
        results.push(site_error(
            &ttl(value),
            &["ttl must be a whole number of seconds 1..86400"],
        ));
    }
    assert_all(results);
}

/// A key indented one step too far continues the value above it, and one indented too
/// little leaves the block above it; YAML notices on the line before. The report names
/// the line that is wrong, and says what is wrong with it.
#[test]
fn indentation_mistakes_point_at_the_misindented_line() {
    assert_all([
        site_error(
            "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - hostname: www.example.com
    origin_group: web
    ttl: 30
      answers: 1  # <- error
",
            &["indented deeper than `ttl`"],
        ),
        site_error(
            "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
        weight: 1
          countries: [CN]  # <- error
",
            &["indented deeper than `weight`"],
        ),
        site_error(
            "\
origin_groups:
  web:
    policy: weight
    origins:
   - address: 192.0.2.10  # <- error
",
            &["indented less than `origins:`"],
        ),
    ]);
}

// ---------------------------------------------------------------------------------------
// The rules of SPEC §3. Each fixture puts the offending key first in its task or origin,
// so these tests are about the rule and its message; which line a key on a later line of
// a task gets is `errors_point_at_the_offending_key` below.

#[test]
fn proxy_modes_need_an_edge_proxy() {
    let case = |mode: &str| {
        site_error(
            &format!(
                "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - mode: {mode}  # <- error
    id: www
    hostname: www.example.com
    origin_group: web
"
            ),
            &[mode, "edge proxy"],
        )
    };
    assert_all([case("proxy"), case("secure_proxy")]);
}

#[test]
fn task_with_unknown_group() {
    assert_site_error(
        "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - origin_group: wbe  # <- error
    hostname: www.example.com
",
        &["wbe"],
    );
}

#[test]
fn used_group_with_a_port_is_rejected() {
    let case = |origin: &str| {
        site_error(
            &format!(
                "\
origin_groups:
  legacy:
    origins:
      - address: 192.0.2.30
      - address: '{origin}'
tasks:
  - origin_group: legacy  # <- error
    hostname: www.example.com
"
            ),
            &[origin, "port"],
        )
    };
    assert_all([
        case("192.0.2.31:8080"),
        case("[2001:db8::31]:443"),
        case("origin.example.net:80"),
    ]);
}

#[test]
fn used_group_mixing_ip_and_names_is_rejected() {
    assert_site_error(
        "\
origin_groups:
  mixed:
    origins:
      - address: 192.0.2.30
      - address: origin.example.net
tasks:
  - origin_group: mixed  # <- error
    hostname: www.example.com
",
        &["mixed", "ip", "domain"],
    );
}

#[test]
fn disabled_task_still_needs_a_usable_group() {
    assert_site_error(
        "\
origin_groups:
  legacy:
    origins:
      - address: 192.0.2.31:8080
tasks:
  - origin_group: legacy  # <- error
    hostname: www.example.com
    enabled: false
",
        &["192.0.2.31:8080", "port"],
    );
}

#[test]
fn cname_task_at_the_apex_is_rejected() {
    let case = |apex: &str| {
        site_error(
            &format!(
                "\
origin_groups:
  cdn:
    origins:
      - address: edge-a.cdn.example.net
tasks:
  - hostname: {apex}  # <- error
    id: apex
    origin_group: cdn
"
            ),
            &["cname", "apex"],
        )
    };
    assert_all([case("example.com"), case("Example.COM.")]);
}

#[test]
fn cname_task_with_more_than_one_answer_is_rejected() {
    assert_site_error(
        "\
origin_groups:
  cdn:
    origins:
      - address: edge-a.cdn.example.net
      - address: edge-b.cdn.example.net
tasks:
  - answers: 2  # <- error
    id: cdn
    hostname: cdn.example.com
    origin_group: cdn
",
        &["answers", "cname"],
    );
}

#[test]
fn weight_above_100_is_rejected() {
    assert_site_error(
        "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
      - weight: 101  # <- error
        address: 192.0.2.11
",
        &["weight", "101", "100"],
    );
}

#[test]
fn ttl_out_of_range_is_rejected() {
    let case = |ttl: &str| {
        site_error(
            &format!(
                "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - ttl: {ttl}  # <- error
    id: www
    hostname: www.example.com
    origin_group: web
"
            ),
            &["ttl", ttl, "86400"],
        )
    };
    assert_all([case("0"), case("86401")]);
}

#[test]
fn zero_answers_is_rejected() {
    assert_site_error(
        "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - answers: 0  # <- error
    id: www
    hostname: www.example.com
    origin_group: web
",
        &["answers"],
    );
}

#[test]
fn hostname_outside_the_site_is_rejected() {
    let case = |hostname: &str, words: &[&str]| {
        site_error(
            &format!(
                "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - hostname: {hostname}  # <- error
    origin_group: web
"
            ),
            words,
        )
    };
    assert_all([
        case("www.example.net", &["www.example.net", "example.com"]),
        // A suffix match is not enough: notexample.com is another site.
        case("www.notexample.com", &["www.notexample.com", "example.com"]),
        case("com", &["com", "example.com"]),
    ]);
}

#[test]
fn wildcard_not_leftmost_is_rejected() {
    let case = |hostname: &str| {
        site_error(
            &format!(
                "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - hostname: '{hostname}'  # <- error
    origin_group: web
"
            ),
            &["*", "leftmost"],
        )
    };
    assert_all([
        case("a.*.example.com"),
        case("*a.example.com"),
        case("*.*.example.com"),
    ]);
}

#[test]
fn two_tasks_on_one_hostname_report_the_second() {
    let case = |first: &str, second: &str| {
        site_error(
            &format!(
                "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - hostname: {first}
    id: first
    origin_group: web
  - hostname: {second}  # <- error
    id: second
    origin_group: web
    enabled: false
"
            ),
            &["www.example.com", "first"],
        )
    };
    assert_all([
        case("www.example.com", "WWW.Example.COM"),
        case("www.example.com", "www.example.com."),
        case("WWW.example.com.", "www.EXAMPLE.com"),
    ]);
}

#[test]
fn duplicate_task_ids_report_the_second() {
    assert_site_error(
        "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - id: www
    hostname: www.example.com
    origin_group: web
  - id: www  # <- error
    hostname: www2.example.com
    origin_group: web
",
        &["id", "\"www\""],
    );
}

#[test]
fn invalid_country_code_with_hint() {
    assert_site_error(
        "\
origin_groups:
  geo:
    policy: region
    origins:
      - countries: [DE, UK]  # <- error
        address: 198.51.100.1
",
        &["UK", "GB"],
    );
}

#[test]
fn invalid_continent_code() {
    assert_site_error(
        "\
origin_groups:
  geo:
    policy: region
    origins:
      - continents: [EU, XX]  # <- error
        address: 198.51.100.1
",
        &["XX", "continent"],
    );
}

#[test]
fn invalid_subnet() {
    let case = |bad: &str| {
        site_error(
            &format!(
                "\
origin_groups:
  geo:
    policy: region
    origins:
      - subnets: ['{bad}']  # <- error
        address: 198.51.100.1
"
            ),
            &[bad],
        )
    };
    assert_all([
        case("203.0.113.0/33"),
        case("203.0.113.0"),
        case("not-a-net/8"),
    ]);
}

#[test]
fn subnet_with_host_bits_suggests_the_network() {
    let case = |bad: &str, network: &str| {
        site_error(
            &format!(
                "\
origin_groups:
  geo:
    policy: region
    origins:
      - subnets: [{bad}]  # <- error
        address: 198.51.100.1
"
            ),
            &[bad, network],
        )
    };
    assert_all([
        case("203.0.113.5/24", "203.0.113.0/24"),
        case("2001:db8::1/32", "2001:db8::/32"),
    ]);
}

#[test]
fn region_keys_in_a_weight_group_are_rejected() {
    let case = |key: &str| {
        site_error(
            &format!(
                "\
origin_groups:
  web:
    policy: weight
    origins:
      - {key}  # <- error
        address: 192.0.2.10
"
            ),
            &["region"],
        )
    };
    assert_all([
        case("countries: [CN]"),
        case("continents: [EU]"),
        case("subnets: [203.0.113.0/24]"),
    ]);
}

#[test]
fn an_invalid_group_is_not_also_reported_missing() {
    // The group exists; its tasks must not get a second, false error "no origin group".
    let yaml = "\
origin_groups:
  web:
    origins:
      - weight: 101  # <- error
        address: 192.0.2.10
tasks:
  - hostname: www.example.com
    origin_group: web
";
    let site = site_with(yaml);
    let output = site.check();
    let err = stderr(&output);
    assert_reported(
        site.path(),
        output.status,
        &err,
        SITE_FILE,
        Some(marked_line(yaml)),
        &["weight"],
    );
    assert!(
        !err.to_lowercase().contains("no origin group"),
        "the task's group exists but is reported missing:\n{err}"
    );
}

#[test]
fn errors_point_at_the_offending_key() {
    // Each offending key is on a later line of its task or origin than the first one: the
    // error names the key's line, as the YAML errors (unknown key, wrong type) already do.
    let group = "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
  cdn:
    origins:
      - address: edge.cdn.example.net
tasks:
  - id: first
    hostname: first.example.com
    origin_group: web
";
    let task = |lines: &str| format!("{group}  - id: www\n{lines}");
    let origin = |lines: &str| {
        format!(
            "origin_groups:\n  geo:\n    policy: region\n    origins:\n      - address: 198.51.100.1\n{lines}"
        )
    };
    assert_all([
        site_error(
            &task("    hostname: www.example.com\n    origin_group: web\n    ttl: 0  # <- error\n"),
            &["ttl"],
        ),
        site_error(
            &task(
                "    hostname: www.example.com\n    origin_group: web\n    answers: 17  # <- error\n",
            ),
            &["answers"],
        ),
        site_error(
            &task(
                "    hostname: www.example.com\n    mode: proxy  # <- error\n    origin_group: web\n",
            ),
            &["edge proxy"],
        ),
        site_error(
            &task("    hostname: www.example.com\n    origin_group: wbe  # <- error\n"),
            &["wbe"],
        ),
        site_error(
            &task("    origin_group: web\n    hostname: www.example.net  # <- error\n"),
            &["www.example.net"],
        ),
        site_error(
            &task(
                "    origin_group: cdn\n    hostname: cdn.example.com\n    answers: 2  # <- error\n",
            ),
            &["answers", "cname"],
        ),
        site_error(
            &task("    origin_group: web\n    hostname: First.example.com.  # <- error\n"),
            &["first.example.com"],
        ),
        site_error(
            &format!(
                "{group}  - hostname: www.example.com\n    origin_group: web\n    id: first  # <- error\n"
            ),
            &["\"first\""],
        ),
        site_error(&origin("        weight: 101  # <- error\n"), &["weight"]),
        site_error(&origin("        countries: [UK]  # <- error\n"), &["UK"]),
        site_error(&origin("        continents: [XX]  # <- error\n"), &["XX"]),
        site_error(
            &origin("        subnets: [203.0.113.5/24]  # <- error\n"),
            &["203.0.113.5/24"],
        ),
    ]);
}

// ---------------------------------------------------------------------------------------
// Site against its zone, and the directory.

#[test]
fn task_at_or_below_a_zone_cut_is_rejected() {
    let case = |hostname: &str| {
        site_error(
            &format!(
                "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - hostname: {hostname}  # <- error
    id: below
    origin_group: web
"
            ),
            &["dev.example.com", "cut"],
        )
    };
    assert_all([
        case("www.dev.example.com"),
        case("dev.example.com"),
        case("'*.dev.example.com'"),
        case("a.b.DEV.example.com."),
    ]);
}

#[test]
fn disabled_task_below_a_zone_cut_is_rejected() {
    // It could never become effective: enabling it later must not be the first time the
    // operator hears of it.
    assert_site_error(
        "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - hostname: www.dev.example.com  # <- error
    origin_group: web
    enabled: false
",
        &["dev.example.com", "cut"],
    );
}

#[test]
fn site_file_without_zone_file() {
    let site = Site::new(&[
        ("example.com.zone", ZONE),
        ("example.org.lb.yaml", "origin_groups: {}\n"),
    ]);
    assert_check_reports(
        &site,
        "zones/example.org.lb.yaml",
        None,
        &["example.org.zone"],
    );
}

#[test]
fn empty_zones_directory() {
    let site = Site::new(&[]);
    assert_check_reports(&site, "zones", None, &["zone"]);
}

#[test]
fn missing_zones_directory() {
    let site = Site::new(&[]);
    std::fs::remove_dir(site.path().join("zones")).unwrap();
    assert_check_reports(&site, "zones", None, &[]);
}

#[test]
fn unreadable_geoip_file_is_named() {
    let site = site_with(VALID_SITE);
    let missing = site.path().join("no-such.mmdb");
    let output = Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(["check", "--dir"])
        .arg(site.path())
        .arg("--geoip")
        .arg(&missing)
        .output()
        .expect("run lbdns check");
    assert_reported(
        site.path(),
        output.status,
        &stderr(&output),
        "no-such.mmdb",
        None,
        &["geoip"],
    );
}

#[test]
fn region_task_without_geoip_database_names_the_file_and_line() {
    // No geoip/ in the temp dir and no --geoip: a task routing by country cannot be served.
    let yaml = "\
origin_groups:
  geo:
    policy: region
    origins:
      - address: 198.51.100.1
        countries: [CN]
      - address: 198.51.100.9
tasks:
  - origin_group: geo  # <- error
    id: geo
    hostname: geo.example.com
";
    let site = site_with(yaml);
    let output = Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(["check", "--dir"])
        .arg(site.path())
        .output()
        .expect("run lbdns check");
    assert_reported(
        site.path(),
        output.status,
        &stderr(&output),
        SITE_FILE,
        Some(marked_line(yaml)),
        &["geoip"],
    );
}

// ---------------------------------------------------------------------------------------
// Zone files.

#[test]
fn zone_without_soa() {
    let site = zone_only("$TTL 300\n@ NS ns1\nns1 A 192.0.2.53\n");
    assert_check_reports(&site, ZONE_FILE, None, &["SOA"]);
}

#[test]
fn zone_syntax_error_line_after_a_multi_line_soa() {
    let head = "\
$ORIGIN example.com.
$TTL 3600
@       IN SOA  ns1.example.com. hostmaster.example.com. (
                2026112501 ; serial (the first)
                7200       ; refresh
                900        ; retry
                1209600    ; expire
                300 )      ; minimum
@       NS      ns1
ns1     A       192.0.2.53
; a comment line, then a blank one

txt     TXT     \"a (quoted) string; not a comment\"
";
    let case = |bad: &str| zone_error(&format!("{head}{bad}\nmail    A       192.0.2.25\n"), &[]);
    assert_all([
        case("www     A       192.0.2.300  ; <- error"),
        case("www     BOGUS   1            ; <- error"),
        case("www     MX      mail         ; <- error"),
    ]);
}

#[test]
fn zone_syntax_error_right_after_the_soa() {
    assert_zone_error(
        "\
$TTL 3600
@ IN SOA ns1 hostmaster (
      1 7200 900 1209600 300 )
@ NS  ; <- error
ns1 A 192.0.2.53
",
        &[],
    );
}

#[test]
fn zone_syntax_error_in_a_later_multi_line_record() {
    assert_zone_error(
        "\
$TTL 3600
@ IN SOA ns1 hostmaster ( 1 7200 900 1209600 300 )
@ NS ns1
ns1 A 192.0.2.53
txt TXT ( \"one\"
          \"two\" )
mx MX ( not-a-number ; <- error
        mail )
mail A 192.0.2.25
",
        &[],
    );
}

#[test]
fn zone_syntax_error_on_the_last_line_without_newline() {
    assert_zone_error(
        "\
$TTL 3600
@ IN SOA ns1 hostmaster ( 1 7200 900
                          1209600 300 )
@ NS ns1
ns1 A 192.0.2.53 ; fine
www AAAA 192.0.2.1 ; <- error",
        &[],
    );
}

#[test]
fn zone_cname_and_other_data() {
    // The CNAME comes last, so its line is also the line where the conflict arises.
    assert_zone_error(
        "\
$TTL 3600
@ IN SOA ns1 hostmaster 1 7200 900 1209600 300
@ NS ns1
ns1 A 192.0.2.53
www TXT \"hello\"
www CNAME elsewhere.example.net.  ; <- error
",
        &["www.example.com", "cname"],
    );
}

#[test]
fn zone_cname_at_the_apex() {
    assert_zone_error(
        "\
$TTL 3600
@ IN SOA ns1 hostmaster 1 7200 900 1209600 300
ns1 A 192.0.2.53
@ CNAME elsewhere.example.net.  ; <- error
",
        &["cname", "apex"],
    );
}

#[test]
fn zone_second_soa() {
    assert_zone_error(
        "\
$TTL 3600
@ IN SOA ns1 hostmaster 1 7200 900 1209600 300
@ NS ns1
ns1 A 192.0.2.53
@ IN SOA ns2 hostmaster 2 7200 900 1209600 300  ; <- error
",
        &["SOA"],
    );
}

/// Knot's leniencies pass `check` with a warning each on stderr, naming file and line: an
/// out-of-zone record is ignored, an RRset's TTLs made one.
#[test]
fn ignored_zone_data_is_a_warning_at_check() {
    let zone = "\
$TTL 3600
@ IN SOA ns1 hostmaster 1 7200 900 1209600 300
@ NS ns1
ns1 A 192.0.2.53
www.example.net. A 192.0.2.1
m 60 A 192.0.2.1
m 30 A 192.0.2.2
";
    let site = zone_only(zone);
    let output = site.check();
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    let path = site.path().join(ZONE_FILE).display().to_string();
    for (line, words) in [
        (
            5,
            "www.example.net. A is outside the zone example.com.: ignored",
        ),
        (7, "m.example.com. A: TTL 30 differs from the RRset's 60"),
    ] {
        let want = format!("warning: {path}:{line}: {words}");
        assert!(
            err.lines().any(|l| l.starts_with(&want)),
            "no {want:?} in:\n{err}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Several errors at once.

#[test]
fn every_error_in_a_directory_is_reported() {
    let yaml = "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
  other:
    origins:
      - weight: 101
        address: 192.0.2.11
tasks:
  - ttl: 0
    id: www
    hostname: www.example.com
    origin_group: web
  - hostname: www.example.net
    id: out
    origin_group: web
";
    let site = Site::new(&[
        ("example.com.zone", ZONE),
        ("example.com.lb.yaml", yaml),
        ("nosoa.example.zone", "$TTL 300\n@ NS ns1.example.com.\n"),
        (
            "broken.example.zone",
            "$TTL 300\n@ SOA ns1 hostmaster 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.300\n",
        ),
        ("orphan.example.lb.yaml", "origin_groups: {}\n"),
    ]);
    let output = site.check();
    let err = stderr(&output);
    let expected: [(&str, Option<usize>, &[&str]); 6] = [
        (SITE_FILE, Some(7), &["weight"]),
        (SITE_FILE, Some(10), &["ttl"]),
        (SITE_FILE, Some(14), &["www.example.net"]),
        ("zones/nosoa.example.zone", None, &["SOA"]),
        ("zones/broken.example.zone", Some(4), &[]),
        ("zones/orphan.example.lb.yaml", None, &["zone file"]),
    ];
    assert_all(
        expected
            .into_iter()
            .map(|(file, at, words)| reported(site.path(), output.status, &err, file, at, words)),
    );
}

#[test]
fn zone_cut_errors_are_reported_with_other_errors() {
    // The task below the cut is only found once the site is laid over its zone; that must
    // not wait until every other error is fixed.
    let yaml = "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - hostname: www.dev.example.com  # <- error
    origin_group: web
";
    let site = Site::new(&[
        ("example.com.zone", ZONE),
        ("example.com.lb.yaml", yaml),
        ("orphan.example.lb.yaml", "origin_groups: {}\n"),
    ]);
    let output = site.check();
    let err = stderr(&output);
    assert_all([
        reported(
            site.path(),
            output.status,
            &err,
            "zones/orphan.example.lb.yaml",
            None,
            &["zone file"],
        ),
        reported(
            site.path(),
            output.status,
            &err,
            SITE_FILE,
            Some(marked_line(yaml)),
            &["cut"],
        ),
    ]);
}

// ---------------------------------------------------------------------------------------
// `serve` refuses an invalid directory with the same errors.

#[test]
fn serve_refuses_an_invalid_site_file() {
    let yaml = "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - mode: proxy  # <- error
    hostname: www.example.com
    origin_group: web
";
    let site = site_with(yaml);
    let (status, log) = serve_until_exit(&site);
    assert_reported(
        site.path(),
        status,
        &log,
        SITE_FILE,
        Some(marked_line(yaml)),
        &["edge proxy"],
    );
}

#[test]
fn serve_refuses_an_invalid_zone_file() {
    let zone = "\
$TTL 3600
@ IN SOA ns1 hostmaster (
      1 7200 900 1209600 300 )
@ NS ns1
ns1 A 192.0.2.300  ; <- error
";
    let site = zone_only(zone);
    let (status, log) = serve_until_exit(&site);
    assert_reported(
        site.path(),
        status,
        &log,
        ZONE_FILE,
        Some(marked_line(zone)),
        &[],
    );
}

#[test]
fn serve_refuses_a_task_below_a_zone_cut() {
    let yaml = "\
origin_groups:
  web:
    origins:
      - address: 192.0.2.10
tasks:
  - hostname: host.dev.example.com  # <- error
    origin_group: web
";
    let site = site_with(yaml);
    let (status, log) = serve_until_exit(&site);
    assert_reported(
        site.path(),
        status,
        &log,
        SITE_FILE,
        Some(marked_line(yaml)),
        &["cut"],
    );
}

#[test]
fn serve_refuses_an_empty_zones_directory() {
    let site = Site::new(&[]);
    let (status, log) = serve_until_exit(&site);
    assert_reported(site.path(), status, &log, "zones", None, &["zone"]);
}

// ---------------------------------------------------------------------------------------
// Health checks (SPEC §10)
// ---------------------------------------------------------------------------------------

/// A group with `check` (block mapping lines, indented 6) and the marked line's problem.
fn check_error(check: &str, words: &[&str]) -> Result<(), String> {
    site_error(
        &format!(
            "origin_groups:\n  web:\n    health_check:\n{check}    origins:\n      - address: 192.0.2.10\n"
        ),
        words,
    )
}

#[test]
fn health_check_values_out_of_range_are_rejected_at_their_line() {
    assert_all([
        check_error(
            "      type: tcp\n      port: 0  # <- error\n",
            &["health_check.port", "1..65535"],
        ),
        check_error(
            "      type: tcp\n      port: 65536  # <- error\n",
            &["port", "65536"],
        ),
        check_error(
            "      type: http\n      port: 80\n      interval: 0.1  # <- error\n",
            &["health_check.interval", "0.2..3600"],
        ),
        check_error(
            "      type: http\n      port: 80\n      interval: 4000  # <- error\n",
            &["interval", "4000"],
        ),
        check_error(
            "      type: http\n      port: 80\n      interval: 2\n      timeout: 2  # <- error\n",
            &["health_check.timeout", "less than the interval"],
        ),
        check_error(
            "      type: http\n      port: 80\n      timeout: 0  # <- error\n",
            &["timeout", "more than 0"],
        ),
        check_error(
            "      type: tcp\n      port: 80\n      fall: 11  # <- error\n",
            &["health_check.fall", "1..10"],
        ),
        check_error(
            "      type: tcp\n      port: 80\n      rise: 0  # <- error\n",
            &["health_check.rise", "1..10"],
        ),
        check_error(
            "      type: http\n      port: 80\n      expect_status: [200, 700]  # <- error\n",
            &["health_check.expect_status", "700"],
        ),
        check_error(
            "      type: http\n      port: 80\n      path: healthz  # <- error\n",
            &["health_check.path", "start with /"],
        ),
        check_error(
            "      type: http\n      port: 80\n      host: \"not a host\"  # <- error\n",
            &["health_check.host", "not a host name"],
        ),
    ]);
}

#[test]
fn health_check_keys_must_fit_the_type() {
    assert_all([
        check_error(
            "      type: tcp\n      port: 80\n      path: /healthz  # <- error\n",
            &["health_check.path", "http and https"],
        ),
        check_error(
            "      type: tcp\n      port: 80\n      expect_status: [200]  # <- error\n",
            &["health_check.expect_status", "http and https"],
        ),
        check_error(
            "      type: ping  # <- error\n      port: 80\n",
            &["ping", "tcp"],
        ),
        check_error(
            "      type: tcp\n      port: 80\n      retries: 3  # <- error\n",
            &["retries"],
        ),
        check_error("      type: tcp  # <- error\n", &["port"]),
    ]);
}

#[test]
fn a_full_health_check_passes() {
    let site = site_with(
        "origin_groups:\n  web:\n    health_check:\n      type: https\n      port: 8443\n      path: /ready?full=1\n      host: www.example.com\n      expect_status: [200, 204]\n      interval: 0.5\n      timeout: 0.25\n      fall: 1\n      rise: 10\n    origins:\n      - address: 192.0.2.10\n      - address: 2001:db8::10\ntasks:\n  - hostname: www.example.com\n    origin_group: web\n",
    );
    assert_check_passes(&site);
}

// ---------------------------------------------------------------------------------------
// A damaged GeoIP database
// ---------------------------------------------------------------------------------------

/// MaxMind's test database with part of its search tree overwritten: the metadata still
/// reads, so only a walk of the tree tells.
fn damaged_geoip(path: &Path) {
    let mut bytes = std::fs::read(test_geoip()).unwrap();
    for byte in &mut bytes[64..2048] {
        *byte = 0xff;
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_damaged_geoip_database_is_refused_by_check() {
    let site = site_with(VALID_SITE);
    let bad = site.path().join("bad.mmdb");
    damaged_geoip(&bad);
    let out = Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(["check", "--dir"])
        .arg(site.path())
        .arg("--geoip")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("bad.mmdb") && err.contains("damaged"), "{err}");
}

#[test]
fn a_damaged_geoip_database_arriving_by_reload_is_rejected_and_the_old_one_serves() {
    let site = site_with(VALID_SITE);
    let db = site.path().join("geo.mmdb");
    std::fs::copy(test_geoip(), &db).unwrap();
    let server = Server::start(site.path(), &["--geoip".as_ref(), db.as_os_str()]);
    let cn = || {
        let reply = server.udp(&query_edns(
            "geo.example.com",
            hickory_proto::rr::RecordType::A,
            1232,
            Some("175.16.199.0/24"),
        ));
        answers(&reply)
    };
    assert_eq!(cn(), ["198.51.100.1"]);
    let rejected = r#"lbdns_reloads_total{result="rejected"}"#;
    let before = server.metric_sample(rejected).unwrap();
    damaged_geoip(&db);
    server.sighup();
    let deadline = Instant::now() + PATIENCE;
    while server.metric_sample(rejected).unwrap() == before {
        assert!(
            Instant::now() < deadline,
            "the damaged database was not rejected:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        cn(),
        ["198.51.100.1"],
        "the last good database still answers"
    );
}

// ---------------------------------------------------------------------------------------
// Directories that are not laid out as lbdns expects

/// `check` on a directory with no `zones/`, or with an empty one, says what layout it
/// expects; a site file spelled `*.lb.yml` is named and refused, not silently ignored.
#[test]
fn a_wrong_directory_is_told_the_layout_it_needs() {
    let empty = tempfile::tempdir().unwrap();
    let site = Site::new(&[]);
    for dir in [empty.path(), site.path()] {
        let output = Command::new(env!("CARGO_BIN_EXE_lbdns"))
            .args(["check", "--dir"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{}", describe(&output));
        let err = stderr(&output);
        assert!(
            err.contains("zones/<origin>.zone") && err.contains("zones/<origin>.lb.yaml"),
            "{}: the message says the layout: {err}",
            dir.display()
        );
    }
    let site = Site::new(&[
        ("example.com.zone", ZONE),
        ("example.com.lb.yml", "tasks: []\n"),
    ]);
    let output = site.check();
    assert!(!output.status.success(), "{}", describe(&output));
    let err = stderr(&output);
    assert!(
        err.contains("zones/example.com.lb.yml") && err.contains("example.com.lb.yaml"),
        "{err}"
    );
}
