//! Contract points of SPEC §3-§9 that no other test file pins, each against the real
//! binary: tasks at the apex and on a deeper wildcard, what a task hides (a zone AAAA
//! behind an IPv4-only task, TXT and MX behind a CNAME task) and restores, zone CNAME
//! chains into task names, zone files untouched by API changes, every reason a group is
//! unusable, a non-loopback API with a token, an invalid zone edit while serving, and task
//! hostnames compared case-insensitively.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use serde_json::{Value, json};

const ZONE: &str = "$ORIGIN example.com.\n$TTL 3600\n\
@ IN SOA ns1 hostmaster 1 7200 900 1209600 300\n\
@ NS ns1\n\
@ 600 A 192.0.2.1\n\
@ 600 AAAA 2001:db8::1\n\
@ MX 10 mail\n\
@ TXT \"apex text\"\n\
ns1 A 192.0.2.53\n\
www 300 A 192.0.2.80\n\
www 300 AAAA 2001:db8::80\n\
www TXT \"www text\"\n\
mail 300 A 192.0.2.25\n\
mail MX 10 mail\n\
mail TXT \"mail text\"\n\
alias 120 CNAME www\n\
alias2 240 CNAME alias\n\
to-geo CNAME geo\n\
real.svc 300 A 192.0.2.5\n";

const GROUPS: &str = "origin_groups:
  web:
    origins:
      - address: 192.0.2.10
  cdn:
    origins:
      - address: edge.cdn.example.net
  geo:
    policy: region
    origins:
      - address: 198.51.100.2
        continents: [EU]
      - address: 198.51.100.9
";

fn site(tasks: &str) -> Site {
    Site::new(&[
        ("example.com.zone", ZONE),
        ("example.com.lb.yaml", &format!("{GROUPS}tasks:\n{tasks}")),
    ])
}

/// (owner, type, TTL, data) of every answer record.
fn records(reply: &Message) -> Vec<(String, RecordType, u32, String)> {
    reply
        .answers
        .iter()
        .map(|r| {
            (
                r.name.to_string(),
                r.record_type(),
                r.ttl,
                r.data.to_string(),
            )
        })
        .collect()
}

fn rec(owner: &str, rtype: RecordType, ttl: u32, data: &str) -> (String, RecordType, u32, String) {
    (owner.to_owned(), rtype, ttl, data.to_owned())
}

/// Asserts NOERROR, AA, no answer and the zone's SOA in the authority section.
#[track_caller]
fn assert_nodata(reply: &Message) {
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NoError,
        "{reply}"
    );
    assert!(reply.metadata.authoritative, "{reply}");
    assert!(reply.answers.is_empty(), "{reply}");
    assert_eq!(
        reply
            .authorities
            .iter()
            .map(|r| r.record_type())
            .collect::<Vec<_>>(),
        [RecordType::SOA],
        "{reply}"
    );
}

/// A plain UDP query for `name` spelled exactly as given (`str::parse` would lower-case
/// it through IDNA).
fn ask_as(server: &Server, name: &str, rtype: RecordType) -> Message {
    server.udp(&Message::query_for(&Name::from_ascii(name).unwrap(), rtype))
}

/// Rewrites the site file and waits until the server has loaded it.
fn set_tasks(server: &Server, site: &Site, tasks: &str) {
    let reloaded = server
        .reload_after(|| site.write("example.com.lb.yaml", &format!("{GROUPS}tasks:\n{tasks}")));
    assert_eq!(reloaded, Reloaded::Accepted, "{}", server.log());
}

// ---------------------------------------------------------------------------------------
// DNS: where tasks answer and what they hide
// ---------------------------------------------------------------------------------------

#[test]
fn a_task_at_the_apex_answers_and_the_apex_keeps_its_other_records() {
    let site = site("  - { id: apex, hostname: example.com, origin_group: web, ttl: 30 }\n");
    let server = site.serve();
    let a = server.ask("example.com.", RecordType::A);
    assert!(a.metadata.authoritative);
    assert_eq!(
        records(&a),
        [rec("example.com.", RecordType::A, 30, "192.0.2.10")]
    );
    // The zone's AAAA is hidden too, and the IPv4-only task has none: NODATA.
    assert_nodata(&server.ask("example.com.", RecordType::AAAA));
    // SOA, NS, MX and TXT at the apex still come from the zone.
    for (rtype, data) in [
        (RecordType::NS, "ns1.example.com."),
        (RecordType::MX, "10 mail.example.com."),
        (RecordType::TXT, "apex text"),
    ] {
        let reply = server.ask("example.com.", rtype);
        assert_eq!(answers(&reply), [data], "{rtype}: {reply}");
    }
    assert_eq!(
        server.ask("example.com.", RecordType::SOA).answers[0].record_type(),
        RecordType::SOA
    );
    // Disabled: the apex A and AAAA are the zone's again.
    set_tasks(
        &server,
        &site,
        "  - { id: apex, hostname: example.com, origin_group: web, enabled: false }\n",
    );
    assert_eq!(
        records(&server.ask("example.com.", RecordType::A)),
        [rec("example.com.", RecordType::A, 600, "192.0.2.1")]
    );
    assert_eq!(
        records(&server.ask("example.com.", RecordType::AAAA)),
        [rec("example.com.", RecordType::AAAA, 600, "2001:db8::1")]
    );
}

#[test]
fn a_wildcard_task_below_the_apex_answers_every_name_without_its_own_data() {
    let site =
        site("  - { id: svc, hostname: \"*.svc.example.com\", origin_group: web, ttl: 30 }\n");
    let server = site.serve();
    for name in [
        "x.svc.example.com.",
        "a.b.svc.example.com.",
        "X.Svc.Example.COM.",
    ] {
        let reply = ask_as(&server, name, RecordType::A);
        assert_eq!(
            records(&reply),
            [rec(name, RecordType::A, 30, "192.0.2.10")],
            "the owner is the name asked: {reply}"
        );
        // The name exists through the wildcard; other types are NODATA.
        assert_nodata(&ask_as(&server, name, RecordType::TXT));
    }
    // A name with its own data is not covered by the wildcard (RFC 4592).
    assert_eq!(
        records(&server.ask("real.svc.example.com.", RecordType::A)),
        [rec(
            "real.svc.example.com.",
            RecordType::A,
            300,
            "192.0.2.5"
        )]
    );
    // svc.example.com itself is an empty non-terminal: NODATA, not the task.
    assert_nodata(&server.ask("svc.example.com.", RecordType::A));
    // Disabled: the names under svc are gone again.
    set_tasks(
        &server,
        &site,
        "  - { id: svc, hostname: \"*.svc.example.com\", origin_group: web, enabled: false }\n",
    );
    let reply = server.ask("x.svc.example.com.", RecordType::A);
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn an_ipv4_only_task_hides_the_zone_aaaa_until_disabled() {
    let site = site("  - { id: www, hostname: www.example.com, origin_group: web, ttl: 30 }\n");
    let server = site.serve();
    assert_eq!(
        answers(&server.ask("www.example.com.", RecordType::A)),
        ["192.0.2.10"]
    );
    assert_nodata(&server.ask("www.example.com.", RecordType::AAAA));
    // Not A, AAAA or CNAME: still the zone's.
    assert_eq!(
        answers(&server.ask("www.example.com.", RecordType::TXT)),
        ["www text"]
    );
    set_tasks(
        &server,
        &site,
        "  - { id: www, hostname: www.example.com, origin_group: web, enabled: false }\n",
    );
    assert_eq!(
        records(&server.ask("www.example.com.", RecordType::AAAA)),
        [rec(
            "www.example.com.",
            RecordType::AAAA,
            300,
            "2001:db8::80"
        )]
    );
}

#[test]
fn a_cname_task_hides_everything_at_its_name() {
    let site = site("  - { id: mail, hostname: mail.example.com, origin_group: cdn, ttl: 30 }\n");
    let server = site.serve();
    let cname = [rec(
        "mail.example.com.",
        RecordType::CNAME,
        30,
        "edge.cdn.example.net.",
    )];
    for rtype in [
        RecordType::A,
        RecordType::AAAA,
        RecordType::TXT,
        RecordType::MX,
        RecordType::CNAME,
    ] {
        let reply = server.ask("mail.example.com.", rtype);
        assert_eq!(records(&reply), cname, "{rtype}: {reply}");
    }
    // The apex MX names mail: its records are still the zone's at the apex.
    assert_eq!(
        answers(&server.ask("example.com.", RecordType::MX)),
        ["10 mail.example.com."]
    );
    set_tasks(
        &server,
        &site,
        "  - { id: mail, hostname: mail.example.com, origin_group: cdn, enabled: false }\n",
    );
    assert_eq!(
        records(&server.ask("mail.example.com.", RecordType::TXT)),
        [rec("mail.example.com.", RecordType::TXT, 3600, "mail text")]
    );
    assert_eq!(
        records(&server.ask("mail.example.com.", RecordType::MX)),
        [rec(
            "mail.example.com.",
            RecordType::MX,
            3600,
            "10 mail.example.com."
        )]
    );
}

#[test]
fn a_zone_cname_chain_leads_into_a_task() {
    let site = site(
        "  - { id: www, hostname: www.example.com, origin_group: web, ttl: 30 }
  - { id: geo, hostname: geo.example.com, origin_group: geo, ttl: 45 }
",
    );
    let server = site.serve();
    let reply = server.ask("alias2.example.com.", RecordType::A);
    assert!(reply.metadata.authoritative);
    assert_eq!(
        records(&reply),
        [
            rec(
                "alias2.example.com.",
                RecordType::CNAME,
                240,
                "alias.example.com."
            ),
            rec(
                "alias.example.com.",
                RecordType::CNAME,
                120,
                "www.example.com."
            ),
            rec("www.example.com.", RecordType::A, 30, "192.0.2.10"),
        ]
    );
    // The zone's AAAA at the end of the chain is hidden by the IPv4-only task.
    let reply = server.ask("alias.example.com.", RecordType::AAAA);
    assert_eq!(
        records(&reply),
        [rec(
            "alias.example.com.",
            RecordType::CNAME,
            120,
            "www.example.com."
        )]
    );
    // A region task at the end of a chain: its answer and its ECS scope (GB's
    // 81.2.69.160/27 in the test database) come through the chain.
    let reply = server.udp(&query_edns(
        "to-geo.example.com.",
        RecordType::A,
        1232,
        Some("81.2.69.160/32"),
    ));
    assert_eq!(
        answers(&reply),
        ["geo.example.com.", "198.51.100.2"],
        "{reply}"
    );
    assert_eq!(ecs_of(&reply).map(|e| e.2), Some(27), "{reply}");
}

#[test]
fn task_hostnames_are_compared_case_insensitively() {
    // Written in mixed case in the file; the zone's www is overridden all the same.
    let site = site("  - { id: www, hostname: WWW.Example.COM, origin_group: web, ttl: 30 }\n");
    let server = site.serve();
    for name in ["www.example.com.", "wWw.EXAMPLE.com.", "WWW.EXAMPLE.COM."] {
        assert_eq!(
            records(&ask_as(&server, name, RecordType::A)),
            [rec(name, RecordType::A, 30, "192.0.2.10")],
            "asked as {name}: the answer echoes the name as asked"
        );
    }
    // A second task on the same name in another case is refused (one task per name).
    let api = Api::new(server.api, None);
    let (status, body) = api.call(
        "POST",
        "/v1/sites/example.com/tasks",
        Some(json!({"id": "dup", "hostname": "www.EXAMPLE.com", "origin_group": "web"})),
    );
    assert!(
        status == 409 || status == 422,
        "a second task on www.example.com: {status} {body}"
    );
    // A task created through the API in upper case answers lower-case queries.
    let (status, body) = api.call(
        "POST",
        "/v1/sites/example.com/tasks",
        Some(json!({"id": "up", "hostname": "UP.EXAMPLE.COM", "origin_group": "web", "ttl": 40})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        records(&server.ask("up.example.com.", RecordType::A)),
        [rec("up.example.com.", RecordType::A, 40, "192.0.2.10")]
    );
}

// ---------------------------------------------------------------------------------------
// Files, API and reload
// ---------------------------------------------------------------------------------------

/// A tiny client of the management API.
struct Api {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl Api {
    fn new(addr: SocketAddr, token: Option<&str>) -> Self {
        Self {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into(),
            base: format!("http://{addr}"),
            token: token.map(str::to_owned),
        }
    }

    /// (status, JSON body or Null).
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let response = match body {
            Some(body) => self.agent.run(
                request
                    .header("Content-Type", "application/json")
                    .body(body.to_string().into_bytes())
                    .unwrap(),
            ),
            None => self.agent.run(request.body(()).unwrap()),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

#[test]
fn accepted_api_changes_leave_the_zone_file_byte_identical() {
    let site = site("  - { id: www, hostname: www.example.com, origin_group: web }\n");
    let zone_path = site.path().join("zones/example.com.zone");
    let modified = || std::fs::metadata(&zone_path).unwrap().modified().unwrap();
    let before = (std::fs::read(&zone_path).unwrap(), modified());
    let server = site.serve();
    let api = Api::new(server.api, None);
    let tasks = "/v1/sites/example.com/tasks";
    let steps: [(&str, String, Option<Value>, u16); 7] = [
        // A task on a zone name (the override), one on a new name, an edit, the lifecycle.
        (
            "POST",
            tasks.into(),
            Some(json!({"id": "mail", "hostname": "mail.example.com", "origin_group": "cdn"})),
            201,
        ),
        (
            "POST",
            tasks.into(),
            Some(json!({"id": "new", "hostname": "new.example.com", "origin_group": "web"})),
            201,
        ),
        (
            "PUT",
            format!("{tasks}/www"),
            Some(json!({"hostname": "www.example.com", "origin_group": "web", "ttl": 99})),
            200,
        ),
        ("POST", format!("{tasks}/www/disable"), None, 200),
        ("POST", format!("{tasks}/www/enable"), None, 200),
        ("POST", format!("{tasks}/new/disable"), None, 200),
        ("DELETE", format!("{tasks}/new"), None, 204),
    ];
    for (method, path, body, want) in steps {
        let (status, reply) = api.call(method, &path, body);
        assert_eq!(status, want, "{method} {path}: {reply}");
        // The change is in effect.
        if path.ends_with("/enable") {
            assert_eq!(
                records(&server.ask("www.example.com.", RecordType::A)),
                [rec("www.example.com.", RecordType::A, 99, "192.0.2.10")]
            );
        }
    }
    let site_file = std::fs::read_to_string(site.path().join("zones/example.com.lb.yaml")).unwrap();
    assert!(site_file.contains("mail.example.com"), "{site_file}");
    assert_eq!(
        (std::fs::read(&zone_path).unwrap(), modified()),
        before,
        "the zone file was rewritten"
    );
    // The task overrides mail in the answers, not in the file.
    assert_eq!(
        server.ask("mail.example.com.", RecordType::A).answers[0].record_type(),
        RecordType::CNAME
    );
}

#[test]
fn a_group_lists_every_reason_it_cannot_serve_dns_only() {
    let groups = format!(
        "{GROUPS}  legacy:
    origins:
      - address: 192.0.2.1:8080
      - address: 192.0.2.2:9090
      - address: 192.0.2.3
      - address: www.example.net
"
    );
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", &groups)]);
    let server = site.serve();
    let (status, body) =
        Api::new(server.api, None).call("GET", "/v1/sites/example.com/origin-groups", None);
    assert_eq!(status, 200, "{body}");
    let legacy = body["origin_groups"]
        .as_array()
        .and_then(|groups| groups.iter().find(|g| g["name"] == "legacy"))
        .unwrap_or_else(|| panic!("no legacy group: {body}"));
    assert_eq!(legacy["dns_only"]["usable"], false, "{legacy}");
    let reasons: Vec<&str> = legacy["dns_only"]["reasons"]
        .as_array()
        .unwrap_or_else(|| panic!("reasons: {legacy}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // Two ports and the mix of IP and domain-name origins: three reasons, one each.
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    let port_1 = reasons
        .iter()
        .filter(|r| r.contains("192.0.2.1:8080"))
        .count();
    let port_2 = reasons
        .iter()
        .filter(|r| r.contains("192.0.2.2:9090"))
        .count();
    let mix = reasons
        .iter()
        .filter(|r| !r.contains(':') && r.contains("domain"))
        .count();
    assert_eq!((port_1, port_2, mix), (1, 1, 1), "{reasons:?}");
    // The usable groups say so, with no reasons.
    let web = body["origin_groups"]
        .as_array()
        .and_then(|groups| groups.iter().find(|g| g["name"] == "web"))
        .unwrap();
    assert_eq!(
        web["dns_only"],
        json!({"usable": true, "reasons": []}),
        "{web}"
    );
}

#[test]
fn a_non_loopback_api_with_a_token_is_served() {
    let site = site("  - { id: www, hostname: www.example.com, origin_group: web }\n");
    let port = free_port().port();
    let bind: SocketAddr = format!("0.0.0.0:{port}").parse().unwrap();
    let server = start_with_api(
        site.path(),
        bind,
        &[
            "--geoip".as_ref(),
            test_geoip().as_os_str(),
            "--api-token".as_ref(),
            "0123456789abcdef0123456789abcdef".as_ref(),
        ],
    );
    let local: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (status, body) =
        Api::new(local, Some("0123456789abcdef0123456789abcdef")).call("GET", "/v1/sites", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sites"].as_array().map(Vec::len), Some(1), "{body}");
    let (status, body) = Api::new(local, Some("0123456789abcdef0123456789abcdef")).call(
        "POST",
        "/v1/sites/example.com/tasks/www/disable",
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        answers(&server.ask("www.example.com.", RecordType::A)),
        ["192.0.2.80"]
    );
    for token in [None, Some("wrong")] {
        let (status, body) = Api::new(local, token).call("GET", "/v1/sites", None);
        assert_eq!(status, 401, "token {token:?}: {body}");
    }
}

#[test]
fn an_invalid_zone_edit_is_rejected_while_the_last_good_one_serves() {
    let site = site("  - { id: www, hostname: www.example.com, origin_group: web, ttl: 30 }\n");
    let server = site.serve();
    let broken = ZONE.replace("mail 300 A 192.0.2.25", "mail 300 A 192.0.2.300");
    assert_eq!(
        server.reload_after(|| site.write("example.com.zone", &broken)),
        Reloaded::Rejected
    );
    assert_eq!(server.metric("lbdns_config_valid"), 0.0);
    // Zone data and tasks are served as before the edit, over UDP and TCP.
    for reply in [
        server.ask("mail.example.com.", RecordType::A),
        server.tcp(&Message::query_for(
            &"mail.example.com.".parse().unwrap(),
            RecordType::A,
        )),
    ] {
        assert_eq!(answers(&reply), ["192.0.2.25"], "{reply}");
    }
    assert_eq!(
        answers(&server.ask("www.example.com.", RecordType::A)),
        ["192.0.2.10"]
    );
    // A fixed edit is loaded, with its change.
    let fixed = ZONE.replace("mail 300 A 192.0.2.25", "mail 300 A 192.0.2.26");
    assert_eq!(
        server.reload_after(|| site.write("example.com.zone", &fixed)),
        Reloaded::Accepted
    );
    assert_eq!(server.metric("lbdns_config_valid"), 1.0);
    assert_eq!(
        answers(&server.ask("mail.example.com.", RecordType::A)),
        ["192.0.2.26"]
    );
}

/// A reload that moves a zone's SOA serial backwards (RFC 1982: secondaries then keep
/// their copy) is served, and warned about naming the zone and both serials; forwards,
/// and across the 2^32 wrap, it is not.
#[test]
fn a_serial_moving_backwards_is_warned_about() {
    let site = site("");
    let server = site.serve();
    let serial = |n: u32| ZONE.replace("hostmaster 1 7200", &format!("hostmaster {n} 7200"));
    for (n, warned) in [
        (2_000_000_000, false),
        (4_000_000_000, false),
        (5, false),
        (3, true),
    ] {
        assert_eq!(
            server.reload_after(|| site.write("example.com.zone", &serial(n))),
            Reloaded::Accepted
        );
        let log = server.log();
        let warning = log
            .lines()
            .find(|l| l.contains("serial went backwards") && l.contains(&format!("after={n}")));
        assert_eq!(warning.is_some(), warned, "serial {n}:\n{log}");
        if let Some(line) = warning {
            assert!(
                line.contains("WARN") && line.contains("example.com") && line.contains("before=5"),
                "{line}"
            );
        }
    }
}
