//! The management API and its command-line client (SPEC §6, §7) against the real binary:
//! every change is checked where it matters, in the DNS answers, in the site file on disk
//! (which must keep passing `lbdns check`) and across a restart on the same directory;
//! every refusal is checked for its status, its `{"error": {"code", "message"}}` body and
//! for leaving the files and the answers exactly as they were.
//!
//! All traffic goes to 127.0.0.1; every wait and loop is bounded.

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------

const SITE_FILE: &str = "example.com.lb.yaml";
const TASKS: &str = "/v1/sites/example.com/tasks";
const GROUPS: &str = "/v1/sites/example.com/origin-groups";

/// The zone: `www` and `keep` have records of their own, `fresh` does not exist.
const ZONE: &str = "\
$ORIGIN example.com.
$TTL 600
@       IN SOA ns1 hostmaster 1 7200 900 1209600 300
@       NS   ns1
ns1     A    192.0.2.53
www     A    192.0.2.80
www     TXT  \"www TXT from the zone\"
keep 900 A   192.0.2.81
";

/// Groups whose answers are deterministic (one origin, or `answers` = every origin), an
/// unused group with a port, and one effective task.
const SITE_YAML: &str = "\
# Written by hand for the API tests.
origin_groups:
  pool:
    origins:
      - address: 192.0.2.10
  pair:
    origins:
      - address: 192.0.2.20
      - address: 192.0.2.21
  legacy:
    origins:
      - address: 192.0.2.30:8080
tasks:
  - id: keep
    hostname: keep.example.com
    origin_group: pool
    ttl: 30
";

fn fixture() -> Site {
    Site::new(&[("example.com.zone", ZONE), (SITE_FILE, SITE_YAML)])
}

fn task(id: &str) -> String {
    format!("{TASKS}/{id}")
}

fn group(name: &str) -> String {
    format!("{GROUPS}/{name}")
}

fn serve(site: &Site, extra: &[&str]) -> Server {
    let mut args: Vec<OsString> = vec!["--geoip".into(), test_geoip().into()];
    args.extend(extra.iter().map(OsString::from));
    let args: Vec<&std::ffi::OsStr> = args.iter().map(OsString::as_os_str).collect();
    Server::start(site.path(), &args)
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

/// One HTTP exchange.
struct Reply {
    what: String,
    status: u16,
    headers: ureq::http::HeaderMap,
    text: String,
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {} {}", self.what, self.status, self.text)
    }
}

impl Reply {
    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {self}"))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// A client of the management API.
#[derive(Clone)]
struct Api {
    agent: ureq::Agent,
    base: String,
    /// The whole `Authorization` header value, if any.
    auth: Option<String>,
}

impl Api {
    fn new(addr: SocketAddr) -> Self {
        Self::with_auth(addr, None)
    }

    fn with_auth(addr: SocketAddr, auth: Option<&str>) -> Self {
        assert!(addr.ip().is_loopback());
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            // A connection per request: a kept one that the server closed just as the next
            // request went out on it failed that request with "Peer disconnected" (1 run
            // of .ci/run in 4, after a run of refused requests).
            .max_idle_connections(0)
            .build()
            .into();
        Self {
            agent,
            base: format!("http://{addr}"),
            auth: auth.map(str::to_owned),
        }
    }

    fn try_call(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Reply, String> {
        let what = format!("{method} {path}");
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(auth) = &self.auth {
            request = request.header("Authorization", auth.as_str());
        }
        let response = match body {
            Some(bytes) => self.agent.run(
                request
                    .header("Content-Type", "application/json")
                    .body(bytes.to_vec())
                    .map_err(|e| format!("{what}: {e}"))?,
            ),
            None => self
                .agent
                .run(request.body(()).map_err(|e| format!("{what}: {e}"))?),
        };
        let mut response = response.map_err(|e| format!("{what}: no HTTP reply: {e}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{what}: cannot read the reply: {e}"))?;
        Ok(Reply {
            what,
            status,
            headers,
            text,
        })
    }

    #[track_caller]
    fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> Reply {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[track_caller]
    fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None)
    }

    #[track_caller]
    fn post(&self, path: &str, body: &Value) -> Reply {
        self.call("POST", path, Some(body.to_string().as_bytes()))
    }

    #[track_caller]
    fn post_empty(&self, path: &str) -> Reply {
        self.call("POST", path, None)
    }

    #[track_caller]
    fn put(&self, path: &str, body: &Value) -> Reply {
        self.call("PUT", path, Some(body.to_string().as_bytes()))
    }

    #[track_caller]
    fn delete(&self, path: &str) -> Reply {
        self.call("DELETE", path, None)
    }
}

/// Asserts the reply is the API's error: `status`, JSON `{"error": {"code", "message"}}`
/// with `code`, and a message mentioning each of `needles`.
#[track_caller]
fn assert_error(reply: &Reply, status: u16, code: &str, needles: &[&str]) {
    assert_eq!(reply.status, status, "{reply}");
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "an error is JSON, got content-type {content_type:?}: {reply}"
    );
    let body = reply.json();
    let keys: Vec<&String> = body
        .as_object()
        .unwrap_or_else(|| panic!("error body is an object: {reply}"))
        .keys()
        .collect();
    assert_eq!(keys, ["error"], "{reply}");
    assert_eq!(body["error"]["code"].as_str(), Some(code), "{reply}");
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("error.message is a string: {reply}"));
    assert!(!message.trim().is_empty(), "{reply}");
    for needle in needles {
        assert!(
            message.contains(needle),
            "the message should mention {needle:?}: {reply}"
        );
    }
}

/// A raw HTTP/1.1 request, for request targets a URL library might normalise.
fn raw_http(addr: SocketAddr, method: &str, target: &str, body: &str) -> (u16, String) {
    let headers = format!("Host: {addr}\r\nContent-Type: application/json\r\n");
    raw_request(addr, method, target, &headers, body)
}

/// A raw HTTP/1.1 request with exactly the `headers` given (each ending in CRLF), plus
/// `Connection: close` and the body's length.
fn raw_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the API");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = format!(
        "{method} {target} HTTP/1.1\r\n{headers}Connection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .unwrap_or_else(|e| panic!("{method} {target}: no complete reply: {e}"));
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {target}: not an HTTP reply: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

// ---------------------------------------------------------------------------------------
// DNS
// ---------------------------------------------------------------------------------------

/// What a query got: rcode, AA and the answer records (type, data, TTL), sorted.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    rcode: ResponseCode,
    aa: bool,
    records: Vec<(RecordType, String, u32)>,
}

fn dns(server: &Server, name: &str, rtype: RecordType) -> Answer {
    let reply = server.ask(name, rtype);
    let mut records: Vec<(RecordType, String, u32)> = reply
        .answers
        .iter()
        .map(|r| (r.record_type(), r.data.to_string(), r.ttl))
        .collect();
    records.sort();
    Answer {
        rcode: reply.metadata.response_code,
        aa: reply.metadata.authoritative,
        records,
    }
}

/// Asserts `name` A is answered with exactly `addresses`, each with `ttl`.
#[track_caller]
fn assert_a(server: &Server, name: &str, addresses: &[&str], ttl: u32) {
    let mut records: Vec<(RecordType, String, u32)> = addresses
        .iter()
        .map(|a| (RecordType::A, (*a).to_owned(), ttl))
        .collect();
    records.sort();
    assert_eq!(
        dns(server, name, RecordType::A),
        Answer {
            rcode: ResponseCode::NoError,
            aa: true,
            records
        },
        "{name} A"
    );
}

#[track_caller]
fn assert_nxdomain(server: &Server, name: &str) {
    let answer = dns(server, name, RecordType::A);
    assert_eq!(answer.rcode, ResponseCode::NXDomain, "{name} A: {answer:?}");
    assert!(answer.records.is_empty(), "{name} A: {answer:?}");
}

// ---------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------

/// Every file under `dir` with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                files.insert(path, bytes);
            }
        }
    }
    files
}

fn parse_yaml(text: &str) -> Value {
    serde_saphyr::from_str::<Value>(text)
        .unwrap_or_else(|e| panic!("the site file does not parse: {e}\n{text}"))
}

// ---------------------------------------------------------------------------------------
// A served directory, its server and an API client
// ---------------------------------------------------------------------------------------

/// What a refused change must leave alone: every file and every probed answer.
#[derive(Debug, PartialEq)]
struct Observed {
    files: BTreeMap<PathBuf, Vec<u8>>,
    answers: Vec<Answer>,
}

struct Lab {
    // Dropped in this order: the server dies before its directory goes.
    server: Server,
    api: Api,
    site: Site,
    extra: Vec<String>,
    auth: Option<String>,
    probes: Vec<(String, RecordType)>,
}

impl Lab {
    fn start() -> Self {
        Self::start_with(&[], None)
    }

    fn start_with(extra: &[&str], auth: Option<&str>) -> Self {
        let site = fixture();
        let server = serve(&site, extra);
        let api = Api::with_auth(server.api, auth);
        Self {
            server,
            api,
            site,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            auth: auth.map(str::to_owned),
            probes: [
                ("www.example.com", RecordType::A),
                ("www.example.com", RecordType::TXT),
                ("keep.example.com", RecordType::A),
                ("fresh.example.com", RecordType::A),
            ]
            .iter()
            .map(|(n, t)| ((*n).to_owned(), *t))
            .collect(),
        }
    }

    /// Kills the server and starts a new one on the same directory.
    fn restart(&mut self) {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        // One server per directory: the old one is gone before the new one starts.
        self.server.crash();
        self.server = serve(&self.site, &extra);
        self.api = Api::with_auth(self.server.api, self.auth.as_deref());
    }

    fn file_text(&self) -> String {
        read(&self.site.path().join("zones").join(SITE_FILE))
    }

    /// The site file's tasks by id.
    fn file_tasks(&self) -> BTreeMap<String, Value> {
        let yaml = parse_yaml(&self.file_text());
        yaml["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                let id = t["id"]
                    .as_str()
                    .or(t["hostname"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                (id, t)
            })
            .collect()
    }

    /// The site file's origin groups by name.
    fn file_groups(&self) -> serde_json::Map<String, Value> {
        let yaml = parse_yaml(&self.file_text());
        yaml["origin_groups"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    /// `lbdns check` passes on the directory.
    #[track_caller]
    fn assert_file_checks(&self) {
        let out = self.site.check();
        assert!(
            out.status.success(),
            "lbdns check fails after an accepted change:\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.file_text()
        );
    }

    fn observe(&self) -> Observed {
        Observed {
            files: tree(self.site.path()),
            answers: self
                .probes
                .iter()
                .map(|(name, rtype)| dns(&self.server, name, *rtype))
                .collect(),
        }
    }

    #[track_caller]
    fn list(&self, path: &str, key: &str) -> Vec<Value> {
        let reply = self.api.get(path);
        assert_eq!(reply.status, 200, "{reply}");
        reply.json()[key]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("{key} is a list: {reply}"))
    }

    /// After an accepted change: the file checks, and a restart on the same directory
    /// serves the same tasks and groups with the same answers.
    #[track_caller]
    fn assert_persisted(&mut self) {
        self.assert_file_checks();
        let tasks = self.list(TASKS, "tasks");
        let groups = self.list(GROUPS, "origin_groups");
        let answers = self.observe().answers;
        self.restart();
        assert_eq!(
            self.list(TASKS, "tasks"),
            tasks,
            "tasks after a restart on the same directory"
        );
        assert_eq!(
            self.list(GROUPS, "origin_groups"),
            groups,
            "origin groups after a restart"
        );
        assert_eq!(self.observe().answers, answers, "answers after a restart");
    }

    /// Sends a change that must be refused with `status`/`code` and a message with
    /// `needles`, and checks that it changed no file and no answer.
    #[track_caller]
    fn refuse(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        status: u16,
        code: &str,
        needles: &[&str],
    ) -> Reply {
        let before = self.observe();
        let reply = self.api.call(method, path, body);
        assert_error(&reply, status, code, needles);
        assert_eq!(
            self.observe(),
            before,
            "the refused {method} {path} changed a file or an answer"
        );
        reply
    }

    #[track_caller]
    fn refuse_json(
        &self,
        method: &str,
        path: &str,
        body: &Value,
        status: u16,
        code: &str,
        needles: &[&str],
    ) -> Reply {
        self.refuse(
            method,
            path,
            Some(body.to_string().as_bytes()),
            status,
            code,
            needles,
        )
    }
}

/// Polls a task until its status is `want` ([`PATIENCE`] at most).
#[track_caller]
fn wait_status(api: &Api, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let reply = api.get(&task(id));
        assert_eq!(reply.status, 200, "{reply}");
        let body = reply.json();
        if body["status"] == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "task {id} did not become {want}: {reply}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The reply to a change comes after the change is served, and these groups have no
/// health checks to wait for, so a created or enabled task is already effective. (A
/// checked group's task is `deploying` first: tests/health.rs observes that transition.)
#[track_caller]
fn assert_fresh_status(body: &Value) {
    assert_eq!(
        body["status"], "effective",
        "a created or enabled task on an unchecked group: {body}"
    );
}

// ---------------------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------------------

#[test]
fn task_lifecycle_switches_the_answers_and_persists_each_step() {
    let mut lab = Lab::start();
    // Before: the zone's own record with the zone's TTL.
    assert_a(&lab.server, "www.example.com", &["192.0.2.80"], 600);
    assert_a(&lab.server, "keep.example.com", &["192.0.2.10"], 30);
    let zone_txt = dns(&lab.server, "www.example.com", RecordType::TXT);
    assert_eq!(zone_txt.records.len(), 1, "{zone_txt:?}");
    assert_eq!(zone_txt.records[0].2, 600, "{zone_txt:?}");

    // Create.
    let created = lab.api.post(
        TASKS,
        &json!({"id": "web", "hostname": "www.example.com", "origin_group": "pool", "ttl": 45}),
    );
    assert_eq!(created.status, 201, "{created}");
    let location = created.header("location");
    assert_eq!(
        location.as_deref(),
        Some("/v1/sites/example.com/tasks/web"),
        "{created}"
    );
    let body = created.json();
    assert_eq!(body["id"], "web", "{created}");
    assert_eq!(body["hostname"], "www.example.com", "{created}");
    assert_eq!(body["origin_group"], "pool", "{created}");
    assert_eq!(body["ttl"], 45, "{created}");
    assert_eq!(body["answers"], 1, "{created}");
    assert_eq!(body["enabled"], true, "{created}");
    assert_eq!(body["mode"], "dns_only", "{created}");
    assert_fresh_status(&body);
    let shown = wait_status(&lab.api, "web", "effective");
    assert_eq!(shown["ttl"], 45);
    let via_location = lab.api.get(&location.unwrap());
    assert_eq!(via_location.status, 200, "{via_location}");
    assert_eq!(via_location.json()["id"], "web");
    // The task answers A with its TTL; TXT still comes from the zone.
    assert_a(&lab.server, "www.example.com", &["192.0.2.10"], 45);
    assert_eq!(
        dns(&lab.server, "www.example.com", RecordType::TXT),
        zone_txt
    );
    let in_file = &lab.file_tasks()["web"];
    assert_eq!(in_file["hostname"], "www.example.com", "{in_file}");
    assert_eq!(in_file["origin_group"], "pool", "{in_file}");
    assert_eq!(in_file["ttl"], 45, "{in_file}");
    assert_ne!(in_file["enabled"], false, "{in_file}");
    assert!(lab.file_tasks().contains_key("keep"));
    lab.assert_persisted();
    assert_eq!(wait_status(&lab.api, "web", "effective")["ttl"], 45);
    assert_a(&lab.server, "www.example.com", &["192.0.2.10"], 45);

    // Change: another group, TTL and answer count.
    let changed = lab.api.put(
        &task("web"),
        &json!({"hostname": "www.example.com", "origin_group": "pair", "ttl": 90, "answers": 2}),
    );
    assert_eq!(changed.status, 200, "{changed}");
    let body = changed.json();
    assert_eq!(body["id"], "web", "{changed}");
    assert_eq!(body["origin_group"], "pair", "{changed}");
    assert_eq!(body["ttl"], 90, "{changed}");
    assert_eq!(body["answers"], 2, "{changed}");
    assert_fresh_status(&body);
    wait_status(&lab.api, "web", "effective");
    assert_a(
        &lab.server,
        "www.example.com",
        &["192.0.2.20", "192.0.2.21"],
        90,
    );
    let in_file = &lab.file_tasks()["web"];
    assert_eq!(in_file["origin_group"], "pair", "{in_file}");
    assert_eq!(in_file["ttl"], 90, "{in_file}");
    assert_eq!(in_file["answers"], 2, "{in_file}");
    lab.assert_persisted();
    assert_a(
        &lab.server,
        "www.example.com",
        &["192.0.2.20", "192.0.2.21"],
        90,
    );

    // Disable: the zone's own records and TTL are back.
    let disabled = lab.api.post_empty(&format!("{}/disable", task("web")));
    assert_eq!(disabled.status, 200, "{disabled}");
    assert_eq!(disabled.json()["status"], "ineffective", "{disabled}");
    assert_eq!(disabled.json()["enabled"], false, "{disabled}");
    assert_eq!(lab.api.get(&task("web")).json()["status"], "ineffective");
    assert_a(&lab.server, "www.example.com", &["192.0.2.80"], 600);
    assert_eq!(
        dns(&lab.server, "www.example.com", RecordType::TXT),
        zone_txt
    );
    assert_eq!(lab.file_tasks()["web"]["enabled"], false);
    lab.assert_persisted();
    assert_eq!(lab.api.get(&task("web")).json()["status"], "ineffective");
    assert_a(&lab.server, "www.example.com", &["192.0.2.80"], 600);

    // Enable again.
    let enabled = lab.api.post_empty(&format!("{}/enable", task("web")));
    assert_eq!(enabled.status, 200, "{enabled}");
    assert_eq!(enabled.json()["enabled"], true, "{enabled}");
    assert_fresh_status(&enabled.json());
    wait_status(&lab.api, "web", "effective");
    assert_a(
        &lab.server,
        "www.example.com",
        &["192.0.2.20", "192.0.2.21"],
        90,
    );
    assert_ne!(lab.file_tasks()["web"]["enabled"], false);
    lab.assert_persisted();

    // Deleting an effective task is refused, saying why and (in the hint) what to do.
    let refused = lab.refuse(
        "DELETE",
        &task("web"),
        None,
        409,
        "conflict",
        &["task web is enabled", "only a disabled task"],
    );
    let hint = refused.json()["error"]["hint"].clone();
    assert!(
        hint.as_str()
            .is_some_and(|h| h.contains("disable it first")),
        "{refused}"
    );
    assert_eq!(lab.api.get(&task("web")).json()["status"], "effective");

    // Disable, then delete.
    let disabled = lab.api.post_empty(&format!("{}/disable", task("web")));
    assert_eq!(disabled.status, 200, "{disabled}");
    let deleted = lab.api.delete(&task("web"));
    assert_eq!(deleted.status, 204, "{deleted}");
    assert!(deleted.text.is_empty(), "204 has no body: {deleted}");
    assert_error(&lab.api.get(&task("web")), 404, "not_found", &["web"]);
    assert_a(&lab.server, "www.example.com", &["192.0.2.80"], 600);
    assert_eq!(
        dns(&lab.server, "www.example.com", RecordType::TXT),
        zone_txt
    );
    assert_eq!(
        lab.file_tasks().keys().collect::<Vec<_>>(),
        ["keep"],
        "{}",
        lab.file_text()
    );
    lab.assert_persisted();
    let ids: Vec<Value> = lab
        .list(TASKS, "tasks")
        .iter()
        .map(|t| t["id"].clone())
        .collect();
    assert_eq!(ids, [json!("keep")]);
    assert_error(&lab.api.get(&task("web")), 404, "not_found", &["web"]);
    assert_a(&lab.server, "www.example.com", &["192.0.2.80"], 600);
}

#[test]
fn a_task_on_a_name_the_zone_lacks_makes_it_exist_only_while_effective() {
    let mut lab = Lab::start();
    assert_nxdomain(&lab.server, "fresh.example.com");

    // No id in the body: the API assigns one and says where the task is.
    let created = lab.api.post(
        TASKS,
        &json!({"hostname": "fresh.example.com", "origin_group": "pair", "ttl": 20, "answers": 2}),
    );
    assert_eq!(created.status, 201, "{created}");
    let id = created.json()["id"].as_str().unwrap_or_default().to_owned();
    assert!(!id.is_empty(), "{created}");
    assert_eq!(
        created.header("location"),
        Some(format!("/v1/sites/example.com/tasks/{id}")),
        "{created}"
    );
    wait_status(&lab.api, &id, "effective");
    assert_a(
        &lab.server,
        "fresh.example.com",
        &["192.0.2.20", "192.0.2.21"],
        20,
    );
    // The id in the file is the id of the API.
    let in_file = lab.file_tasks();
    assert!(in_file.contains_key(&id), "{}", lab.file_text());
    assert_eq!(in_file[&id]["hostname"], "fresh.example.com");
    lab.assert_persisted();
    assert_eq!(wait_status(&lab.api, &id, "effective")["ttl"], 20);

    let disabled = lab.api.post_empty(&format!("{}/disable", task(&id)));
    assert_eq!(disabled.status, 200, "{disabled}");
    assert_nxdomain(&lab.server, "fresh.example.com");
    lab.assert_persisted();
    assert_nxdomain(&lab.server, "fresh.example.com");

    let deleted = lab.api.delete(&task(&id));
    assert_eq!(deleted.status, 204, "{deleted}");
    assert_nxdomain(&lab.server, "fresh.example.com");
    assert_error(&lab.api.get(&task(&id)), 404, "not_found", &[]);
    assert!(!lab.file_tasks().contains_key(&id), "{}", lab.file_text());
    lab.assert_persisted();
    assert_nxdomain(&lab.server, "fresh.example.com");
    assert_a(&lab.server, "keep.example.com", &["192.0.2.10"], 30);
}

// ---------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------

fn task_body(id: &str, hostname: &str, group: &str) -> Value {
    json!({"id": id, "hostname": hostname, "origin_group": group, "ttl": 50})
}

/// `POST .../tasks` as the README tells it: the id is the body's, or the hostname when the
/// body has none, and a retry of the same create is refused (422: a second task on that
/// hostname; 409 when the body names an id that now exists) and changes nothing.
#[test]
fn a_post_takes_its_id_from_the_hostname_and_a_retry_is_refused() {
    let lab = Lab::start();
    let body = json!({"hostname": "fresh.example.com", "origin_group": "pool"});
    let created = lab.api.post(TASKS, &body);
    assert_eq!(created.status, 201, "{created}");
    assert_eq!(created.json()["id"], "fresh.example.com", "{created}");
    assert_eq!(
        created.header("location").as_deref(),
        Some("/v1/sites/example.com/tasks/fresh.example.com"),
        "{created}"
    );
    lab.refuse_json("POST", TASKS, &body, 422, "invalid", &["fresh.example.com"]);

    let named = task_body("named", "named.example.com", "pool");
    assert_eq!(lab.api.post(TASKS, &named).status, 201);
    lab.refuse_json("POST", TASKS, &named, 409, "conflict", &["named"]);
}

#[test]
fn unknown_sites_tasks_groups_and_routes_are_404() {
    let lab = Lab::start();
    let body = task_body("x", "x.example.com", "pool");
    lab.refuse(
        "GET",
        "/v1/sites/nope.example/tasks",
        None,
        404,
        "not_found",
        &["nope.example"],
    );
    lab.refuse(
        "GET",
        "/v1/sites/nope.example/origin-groups",
        None,
        404,
        "not_found",
        &["nope.example"],
    );
    lab.refuse_json(
        "POST",
        "/v1/sites/nope.example/tasks",
        &body,
        404,
        "not_found",
        &["nope.example"],
    );
    lab.refuse_json(
        "PUT",
        "/v1/sites/nope.example/origin-groups/g",
        &json!({"origins": [{"address": "192.0.2.1"}]}),
        404,
        "not_found",
        &["nope.example"],
    );
    lab.refuse("GET", &task("nope"), None, 404, "not_found", &["nope"]);
    lab.refuse(
        "POST",
        &format!("{}/enable", task("nope")),
        None,
        404,
        "not_found",
        &["nope"],
    );
    lab.refuse(
        "POST",
        &format!("{}/disable", task("nope")),
        None,
        404,
        "not_found",
        &["nope"],
    );
    lab.refuse("DELETE", &task("nope"), None, 404, "not_found", &["nope"]);
    lab.refuse("DELETE", &group("nope"), None, 404, "not_found", &["nope"]);
    lab.refuse("GET", "/v1/nothing", None, 404, "not_found", &[]);
    // "/" is the console (tests/console.rs); any other unknown path is a JSON 404.
    lab.refuse("GET", "/console", None, 404, "not_found", &[]);
    lab.refuse(
        "POST",
        &format!("{}/explode", task("keep")),
        None,
        404,
        "not_found",
        &[],
    );
    // A known route with a method it does not take: still the JSON error shape.
    lab.refuse(
        "PATCH",
        &group("pool"),
        Some(b"{}"),
        405,
        "method_not_allowed",
        &[],
    );
}

/// `PATCH .../tasks/{id}` changes the fields its body names and keeps the others; a
/// field a task does not have, or a bad value, is 422 and changes nothing.
#[test]
fn a_patch_changes_only_the_fields_it_names() {
    let lab = Lab::start();
    let before = lab.api.get(&task("keep")).json();
    let body = json!({"ttl": 77, "answers": 2});
    let reply = lab
        .api
        .call("PATCH", &task("keep"), Some(body.to_string().as_bytes()));
    assert_eq!(reply.status, 200, "{reply}");
    let after = reply.json();
    assert_eq!(
        (after["ttl"].clone(), after["answers"].clone()),
        (json!(77), json!(2)),
        "{reply}"
    );
    for kept in ["hostname", "origin_group", "enabled", "mode"] {
        assert_eq!(after[kept], before[kept], "{kept}: {reply}");
    }
    assert_eq!(lab.api.get(&task("keep")).json(), after);
    let bad = |body: Value, needles: &[&str]| {
        lab.refuse_json("PATCH", &task("keep"), &body, 422, "invalid", needles);
    };
    bad(json!({"ttl": 0}), &["ttl"]);
    bad(json!({"weight": 3}), &["weight"]);
    bad(json!({"origin_group": "nogroup"}), &["nogroup"]);
    lab.refuse_json(
        "PATCH",
        &task("nope"),
        &json!({"ttl": 5}),
        404,
        "not_found",
        &["nope"],
    );
}

/// A change the site refuses says why as data (`reason`) and which request would fix it
/// (`hint`), apart from the message.
#[test]
fn a_refused_change_carries_its_reason_and_the_request_that_fixes_it() {
    let lab = Lab::start();
    let reply = lab.api.delete(&task("keep"));
    assert_eq!(reply.status, 409, "{reply}");
    let error = &reply.json()["error"];
    assert_eq!(error["reason"], "task_enabled", "{reply}");
    assert_eq!(
        error["hint"],
        "disable it first (POST /v1/sites/example.com/tasks/keep/disable), then delete it",
        "{reply}"
    );
    let reply = lab.api.delete(&group("pool"));
    assert_eq!(reply.json()["error"]["reason"], "group_in_use", "{reply}");
    // Other errors have neither.
    let reply = lab.api.get("/v1/sites/nope.test/tasks");
    assert_eq!(reply.status, 404, "{reply}");
    let error = reply.json()["error"].clone();
    assert!(
        error.get("reason").is_none() && error.get("hint").is_none(),
        "{reply}"
    );
}

#[test]
fn conflicting_changes_are_409_and_change_nothing() {
    let lab = Lab::start();
    // A group a task uses cannot go; the message names the task.
    lab.refuse("DELETE", &group("pool"), None, 409, "conflict", &["keep"]);
    // An id that exists.
    lab.refuse_json(
        "POST",
        TASKS,
        &task_body("keep", "other.example.com", "pool"),
        409,
        "conflict",
        &["keep"],
    );
    // An effective task: disable it first.
    lab.refuse("DELETE", &task("keep"), None, 409, "conflict", &["disable"]);
    assert_eq!(lab.api.get(&task("keep")).json()["status"], "effective");
}

#[test]
fn invalid_changes_are_422_naming_the_problem_and_change_nothing() {
    let lab = Lab::start();
    let with = |changes: Value| {
        let mut body = task_body("new", "new.example.com", "pool");
        for (key, value) in changes.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        ("ttl 0", with(json!({"ttl": 0})), vec!["ttl"]),
        ("ttl too large", with(json!({"ttl": 86401})), vec!["ttl"]),
        ("answers 0", with(json!({"answers": 0})), vec!["answers"]),
        (
            "unknown group",
            with(json!({"origin_group": "nogroup"})),
            vec!["nogroup"],
        ),
        (
            "group with a port",
            with(json!({"origin_group": "legacy"})),
            vec!["legacy", "has a port"],
        ),
        (
            "proxy mode",
            with(json!({"mode": "proxy"})),
            vec!["proxy", "edge proxy"],
        ),
        (
            "secure_proxy mode",
            with(json!({"mode": "secure_proxy"})),
            vec!["secure_proxy", "edge proxy"],
        ),
        (
            "hostname outside the site",
            with(json!({"hostname": "www.example.org"})),
            vec!["hostname", "www.example.org"],
        ),
        (
            "invalid hostname",
            with(json!({"hostname": "not a host.example.com"})),
            vec!["hostname"],
        ),
        (
            "hostname of another task",
            with(json!({"hostname": "keep.example.com"})),
            vec!["hostname", "keep"],
        ),
        ("bad id", with(json!({"id": "a b"})), vec!["id"]),
        (
            "unknown field",
            with(json!({"colour": "blue"})),
            vec!["colour"],
        ),
        ("wrong type", with(json!({"ttl": "x"})), vec!["ttl"]),
        ("wrong type", with(json!({"ttl": -5})), vec!["ttl"]),
        (
            "wrong type",
            with(json!({"enabled": "yes"})),
            vec!["enabled"],
        ),
        (
            "missing hostname",
            json!({"origin_group": "pool"}),
            vec!["hostname"],
        ),
        ("not an object", json!([1, 2]), vec![]),
    ];
    for (what, body, needles) in &cases {
        lab.refuse_json("POST", TASKS, body, 422, "invalid", needles);
        // The same body, less its id, as a change of the existing task (where that is
        // still a mistake: keep's own hostname and no id are fine for keep).
        if body.get("id").is_some() && !["hostname of another task", "bad id"].contains(what) {
            let mut put = body.clone();
            put.as_object_mut().unwrap().remove("id");
            lab.refuse_json("PUT", &task("keep"), &put, 422, "invalid", needles);
        }
    }
    // A PUT whose body names another id.
    lab.refuse_json(
        "PUT",
        &task("keep"),
        &task_body("other", "keep.example.com", "pool"),
        422,
        "invalid",
        &["id"],
    );
    // Groups: a port or mixed origins in a group a task uses, bad weights, unknown keys.
    lab.refuse_json(
        "PUT",
        &group("pool"),
        &json!({"origins": [{"address": "192.0.2.10"}, {"address": "192.0.2.12:8080"}]}),
        422,
        "invalid",
        &["192.0.2.12:8080", "port"],
    );
    lab.refuse_json(
        "PUT",
        &group("pool"),
        &json!({"origins": [{"address": "192.0.2.10"}, {"address": "edge.example.net"}]}),
        422,
        "invalid",
        &["pool"],
    );
    lab.refuse_json(
        "PUT",
        &group("spare"),
        &json!({"origins": [{"address": "192.0.2.10", "weight": 101}]}),
        422,
        "invalid",
        &["weight"],
    );
    lab.refuse_json(
        "PUT",
        &group("spare"),
        &json!({"origns": [{"address": "192.0.2.10"}]}),
        422,
        "invalid",
        &["origns"],
    );
    lab.refuse_json(
        "PUT",
        &group("spare"),
        &json!({"policy": "fastest", "origins": []}),
        422,
        "invalid",
        &["fastest"],
    );
    assert_a(&lab.server, "keep.example.com", &["192.0.2.10"], 30);
}

/// SPEC §3: errors name the field (API). A value of the wrong type is no exception.
#[test]
fn a_wrong_type_is_422_naming_the_field() {
    let lab = Lab::start();
    let mut body = task_body("new", "new.example.com", "pool");
    body["ttl"] = json!("x");
    lab.refuse_json("POST", TASKS, &body, 422, "invalid", &["ttl"]);
    body["ttl"] = json!(50);
    body["enabled"] = json!("yes");
    lab.refuse_json("POST", TASKS, &body, 422, "invalid", &["enabled"]);
    lab.refuse_json(
        "PUT",
        &group("spare"),
        &json!({"origins": [{"address": "192.0.2.10", "weight": "heavy"}]}),
        422,
        "invalid",
        &["weight"],
    );
}

#[test]
fn malformed_and_oversized_bodies_are_400_and_413() {
    let lab = Lab::start();
    // Each well-shaped as far as it goes, so only the syntax is wrong.
    let task_bodies: [&[u8]; 5] = [
        b"{\"hostname\": ",
        b"not json",
        b"{\"hostname\": \"x.example.com\", \"origin_group\": \"pool\",}",
        b"{\"hostname\": \"x.example.com\", \"origin_group\": \"pool\"} trailing",
        b"",
    ];
    for body in task_bodies {
        lab.refuse("POST", TASKS, Some(body), 400, "invalid_json", &[]);
        lab.refuse("PUT", &task("keep"), Some(body), 400, "invalid_json", &[]);
    }
    let group_bodies: [&[u8]; 4] = [
        b"{\"origins\": [",
        b"{\"origins\": [{\"address\": \"192.0.2.10\"},]}",
        b"{'origins': []}",
        b"",
    ];
    for body in group_bodies {
        lab.refuse("PUT", &group("spare"), Some(body), 400, "invalid_json", &[]);
        lab.refuse("PUT", &group("pool"), Some(body), 400, "invalid_json", &[]);
    }
    // Over 64 KiB, even when it is valid JSON.
    let padding = " ".repeat(70 * 1024);
    let big = format!(
        "{{\"id\": \"big\", \"hostname\": \"big.example.com\",{padding}\"origin_group\": \"pool\"}}"
    );
    lab.refuse("POST", TASKS, Some(big.as_bytes()), 413, "too_large", &[]);
    lab.refuse(
        "PUT",
        &group("spare"),
        Some(big.as_bytes()),
        413,
        "too_large",
        &[],
    );

    // Just under the limit is an ordinary request.
    let padding = " ".repeat(60 * 1024);
    let fits = format!(
        "{{\"id\": \"big\", \"hostname\": \"big.example.com\",{padding}\"origin_group\": \"pool\"}}"
    );
    let reply = lab.api.call("POST", TASKS, Some(fits.as_bytes()));
    assert_eq!(reply.status, 201, "{reply}");
    assert_a(&lab.server, "big.example.com", &["192.0.2.10"], 60);
    lab.assert_file_checks();
}

/// A body that is not JSON is 400 wherever its syntax breaks, even after a key of the
/// wrong shape: "not JSON" is decided before "JSON of the wrong shape" (422).
#[test]
fn a_malformed_body_is_400_even_when_it_starts_with_the_wrong_shape() {
    let lab = Lab::start();
    let body: &[u8] = b"{\"colour\": \"blue\",}";
    lab.refuse("POST", TASKS, Some(body), 400, "invalid_json", &[]);
    lab.refuse("PUT", &task("keep"), Some(body), 400, "invalid_json", &[]);
    lab.refuse("PUT", &group("spare"), Some(body), 400, "invalid_json", &[]);
    let body: &[u8] = b"{\"ttl\": \"x\", \"hostname\": ";
    lab.refuse("POST", TASKS, Some(body), 400, "invalid_json", &[]);
}

#[test]
fn path_tricks_in_names_are_4xx_and_touch_no_file() {
    let lab = Lab::start();
    let body = task_body("t", "t.example.com", "pool").to_string();
    let group_body = json!({"origins": [{"address": "192.0.2.10"}]}).to_string();
    let cases: [(&str, &str, &str); 14] = [
        ("GET", "/v1/sites/../tasks", ""),
        ("GET", "/v1/sites/%2e%2e/tasks", ""),
        ("GET", "/v1/sites/%2E%2E/origin-groups", ""),
        ("GET", "/v1/sites/..%2f..%2fetc/tasks", ""),
        ("GET", "/v1/sites/example.com/../../etc/passwd", ""),
        ("POST", "/v1/sites/..%2fexample.com/tasks", &body),
        (
            "POST",
            "/v1/sites/%2e%2e%2fzones%2fexample.com/tasks",
            &body,
        ),
        (
            "POST",
            "/v1/sites/example.com%2f..%2f..%2fevil/tasks",
            &body,
        ),
        (
            "PUT",
            "/v1/sites/%2e%2e%2f%2e%2e%2fevil/origin-groups/g",
            &group_body,
        ),
        (
            "PUT",
            "/v1/sites/example.com/origin-groups/..%2f..%2fevil",
            &group_body,
        ),
        (
            "PUT",
            "/v1/sites/example.com/origin-groups/%2e%2e",
            &group_body,
        ),
        (
            "PUT",
            "/v1/sites/example.com/tasks/..%2f..%2fzones%2fexample.com.lb.yaml",
            &body,
        ),
        ("DELETE", "/v1/sites/example.com/tasks/..%2fkeep", ""),
        (
            "DELETE",
            "/v1/sites/example.com/origin-groups/..%2fpool",
            "",
        ),
    ];
    let outside = lab.site.path().parent().unwrap().to_owned();
    let evil_before = outside.join("evil").exists();
    for (method, target, body) in cases {
        let before = lab.observe();
        let (status, text) = raw_http(lab.server.api, method, target, body);
        assert!(
            (400..500).contains(&status),
            "{method} {target}: want 4xx, got {status} {text}"
        );
        let json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {target}: {status} not JSON ({e}): {text:?}"));
        assert!(
            json["error"]["code"].is_string() && json["error"]["message"].is_string(),
            "{method} {target}: {text}"
        );
        assert_eq!(
            lab.observe(),
            before,
            "{method} {target} changed a file or an answer"
        );
    }
    // An id with a path in the body is refused too.
    lab.refuse_json(
        "POST",
        TASKS,
        &task_body("../../evil", "t.example.com", "pool"),
        422,
        "invalid",
        &["id"],
    );
    assert_eq!(outside.join("evil").exists(), evil_before);
    assert_eq!(
        lab.list(TASKS, "tasks")
            .iter()
            .map(|t| t["id"].clone())
            .collect::<Vec<_>>(),
        [json!("keep")]
    );
    assert_eq!(
        lab.list(GROUPS, "origin_groups").len(),
        3,
        "no group was added"
    );
}

// ---------------------------------------------------------------------------------------
// Authentication and exposure
// ---------------------------------------------------------------------------------------

#[track_caller]
fn assert_unauthorized(reply: &Reply) {
    assert_error(reply, 401, "unauthorized", &["Bearer"]);
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer"),
        "401 carries `WWW-Authenticate: Bearer`: {challenge:?} {reply}"
    );
}

#[test]
fn with_a_token_every_request_needs_it() {
    let lab = Lab::start_with(&["--api-token", "secret"], Some("Bearer secret"));
    let api = lab.server.api;
    let refused: Vec<Api> = [
        None,
        Some("Bearer wrong"),
        Some("Bearer secre"),
        Some("Bearer secretsecret"),
        Some("Bearer "),
        Some("secret"),
        Some("Basic c2VjcmV0"),
    ]
    .iter()
    .map(|auth| Api::with_auth(api, *auth))
    .collect();
    let paths = [
        "/v1/sites".to_owned(),
        TASKS.to_owned(),
        task("keep"),
        GROUPS.to_owned(),
        "/healthz".to_owned(),
        "/metrics".to_owned(),
    ];
    for client in &refused {
        for path in &paths {
            assert_unauthorized(&client.get(path));
        }
    }
    // Changes without the token change nothing.
    let before = lab.observe();
    for client in &refused[..3] {
        assert_unauthorized(&client.post(TASKS, &task_body("t", "t.example.com", "pool")));
        assert_unauthorized(&client.post_empty(&format!("{}/disable", task("keep"))));
        assert_unauthorized(&client.delete(&task("keep")));
        assert_unauthorized(&client.put(
            &group("spare"),
            &json!({"origins": [{"address": "192.0.2.40"}]}),
        ));
        assert_unauthorized(&client.delete(&group("legacy")));
    }
    assert_eq!(lab.observe(), before);

    // With it, everything works.
    let sites = lab.api.get("/v1/sites");
    assert_eq!(sites.status, 200, "{sites}");
    assert_eq!(sites.json()["sites"][0]["name"], "example.com", "{sites}");
    let health = lab.api.get("/healthz");
    assert_eq!(health.status, 200, "{health}");
    assert_eq!(health.json()["status"], "ok", "{health}");
    let metrics = lab.api.get("/metrics");
    assert_eq!(metrics.status, 200, "{metrics}");
    assert!(metrics.text.contains("lbdns_config_valid 1"), "{metrics}");
    let created = lab
        .api
        .post(TASKS, &task_body("t", "t.example.com", "pool"));
    assert_eq!(created.status, 201, "{created}");
    assert_a(&lab.server, "t.example.com", &["192.0.2.10"], 50);
    assert_eq!(
        lab.api.post_empty(&format!("{}/disable", task("t"))).status,
        200
    );
    assert_nxdomain(&lab.server, "t.example.com");
    assert_eq!(lab.api.delete(&task("t")).status, 204);
    assert!(!lab.file_tasks().contains_key("t"));

    // The CLI passes the token; without it, it reports the API's refusal.
    let addr = lab.server.api.to_string();
    let out = cli(&["task", "list", "--api", &addr, "--api-token", "secret"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stdout(&out).contains("keep"), "{}", describe(&out));
    let out = cli(&["task", "list", "--api", &addr]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(stderr(&out).contains("401"), "{}", describe(&out));
}

/// `--read-token` (SPEC §7): a second token for monitoring that reads everything (every
/// GET, /healthz, /metrics) and is refused (403, nothing changed) for anything else; the
/// API token still does everything; no token, or a wrong one, is still 401.
#[test]
fn a_read_token_may_read_and_nothing_else() {
    let lab = Lab::start_with(
        &["--api-token", "secret", "--read-token", "reader"],
        Some("Bearer secret"),
    );
    let reader = Api::with_auth(lab.server.api, Some("Bearer reader"));
    for path in [
        "/v1/sites".to_owned(),
        TASKS.to_owned(),
        task("keep"),
        GROUPS.to_owned(),
        "/v1/sites/example.com/secondaries".to_owned(),
        "/healthz".to_owned(),
        "/metrics".to_owned(),
    ] {
        let reply = reader.get(&path);
        assert_eq!(reply.status, 200, "{reply}");
    }
    let before = lab.observe();
    for reply in [
        reader.post(TASKS, &task_body("t", "t.example.com", "pool")),
        reader.put(&task("t"), &task_body("t", "t.example.com", "pool")),
        reader.post_empty(&format!("{}/disable", task("keep"))),
        reader.delete(&task("keep")),
        reader.put(
            &group("spare"),
            &json!({"origins": [{"address": "192.0.2.40"}]}),
        ),
        reader.delete(&group("legacy")),
        reader.put(
            "/v1/sites/example.com/secondaries",
            &json!({"secondaries": []}),
        ),
    ] {
        assert_error(&reply, 403, "forbidden", &["--read-token", "--api-token"]);
    }
    assert_eq!(lab.observe(), before, "a refused change changed something");
    for auth in [None, Some("Bearer readers"), Some("Bearer reade")] {
        assert_unauthorized(&Api::with_auth(lab.server.api, auth).get("/metrics"));
    }
    let created = lab
        .api
        .post(TASKS, &task_body("t", "t.example.com", "pool"));
    assert_eq!(created.status, 201, "the API token still writes: {created}");

    // The CLI reads with it, and says why a change is refused.
    let addr = lab.server.api.to_string();
    let out = cli(&["task", "list", "--api", &addr, "--api-token", "reader"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stdout(&out).contains("keep"), "{}", describe(&out));
    let out = cli(&[
        "task",
        "disable",
        "keep",
        "--api",
        &addr,
        "--api-token",
        "reader",
    ]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(stderr(&out).contains("403"), "{}", describe(&out));
}

/// A read token alone (no token could change anything) or equal to the API token (it
/// would grant writes) is refused at start, saying so; from the environment too.
#[test]
fn a_read_token_needs_an_api_token_of_its_own() {
    let port = free_port().port();
    let api = format!("127.0.0.1:{port}");
    let (status, log) = serve_refusal(&api, &["--read-token", "reader"], None);
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("--read-token") && log.contains("--api-token"),
        "{log}"
    );
    let (status, log) = serve_refusal(&api, &["--read-token", "same"], Some("same"));
    assert!(!status.success(), "{log}");
    assert!(log.contains("the same as --api-token"), "{log}");
}

/// Each change request is one audit line (method, path with the site, status), refused
/// ones too, reads none; and the file watcher seeing the API's own write adds no
/// "reload: no change on disk" line.
#[test]
fn every_change_is_one_audit_line_and_the_api_write_no_reload_line() {
    let lab = Lab::start();
    let created = lab
        .api
        .post(TASKS, &task_body("t", "t.example.com", "pool"));
    assert_eq!(created.status, 201, "{created}");
    let refused = lab.api.delete(&task("keep"));
    assert_eq!(refused.status, 409, "{refused}");
    assert_eq!(lab.api.get(TASKS).status, 200);
    // The watcher waits 200 ms of quiet after a write, then reloads: give it a second.
    std::thread::sleep(Duration::from_secs(1));
    let log = lab.server.log();
    let audit: Vec<&str> = log.lines().filter(|l| l.contains("api change")).collect();
    assert_eq!(audit.len(), 2, "{log}");
    for (line, want) in audit.iter().zip([
        [
            "applied",
            "method=POST",
            "path=/v1/sites/example.com/tasks",
            "status=201",
        ],
        [
            "refused",
            "method=DELETE",
            "path=/v1/sites/example.com/tasks/keep",
            "status=409",
        ],
    ]) {
        for word in want {
            assert!(line.contains(word), "{word} not in {line}");
        }
        assert!(line.contains("site=example.com"), "{line}");
    }
    assert!(!log.contains("no change on disk"), "{log}");
}

/// `/metrics` counts queries by type (bounded: the common types, then "other") and
/// transport, names the build (version, the commit git names, features), and shows the
/// process's CPU time and resident memory as the kernel tells the test.
#[test]
fn metrics_count_queries_by_type_and_transport_and_show_the_build_and_the_process() {
    let lab = Lab::start();
    let server = &lab.server;
    let series = |qtype: &str, transport: &str| {
        format!("lbdns_queries_total{{qtype=\"{qtype}\",transport=\"{transport}\"}}")
    };
    let counts = || {
        [("A", "udp"), ("AAAA", "tcp"), ("other", "udp")].map(|(q, t)| server.metric(&series(q, t)))
    };
    let before = counts();
    for _ in 0..3 {
        server.ask("www.example.com.", RecordType::A);
    }
    for _ in 0..2 {
        let query = Message::query_for(&"www.example.com.".parse().unwrap(), RecordType::AAAA);
        server.tcp(&query);
    }
    server.ask("www.example.com.", RecordType::Unknown(65280));
    let after = counts();
    let delta: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(delta, [3.0, 2.0, 1.0], "A/udp, AAAA/tcp, other/udp");

    let git = std::process::Command::new("git")
        .current_dir(repo())
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .expect("git is installed (the suite runs in a git checkout)");
    let commit = stdout(&git).trim().to_owned();
    let build = format!(
        "lbdns_build_info{{version=\"{}\",commit=\"{commit}\",features=\"{}\"}}",
        env!("CARGO_PKG_VERSION"),
        if cfg!(feature = "etcd") {
            "etcd"
        } else {
            "none"
        }
    );
    assert_eq!(server.metric(&build), 1.0);

    let cpu_before = server.cpu_time().as_secs_f64();
    let cpu = server.metric("lbdns_process_cpu_seconds_total");
    let cpu_after = server.cpu_time().as_secs_f64();
    assert!(
        cpu > 0.0 && cpu >= cpu_before - 0.02 && cpu <= cpu_after + 0.02,
        "CPU {cpu} s, the kernel says {cpu_before}..{cpu_after} s"
    );
    let statm = read(Path::new(&format!("/proc/{}/statm", server.pid())));
    let pages: f64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    let memory = server.metric("lbdns_process_resident_memory_bytes");
    let kernel = pages * 4096.0;
    assert!(
        memory > kernel / 2.0 && memory < kernel * 2.0,
        "resident {memory} bytes, the kernel says about {kernel}"
    );
}

/// `lbdns_zone_queries_total{zone}`, `lbdns_task_answers_total{site,hostname}` and
/// `lbdns_origin_answers_total{site,hostname,group,origin}` count what was answered from
/// where; the series of a deleted task go (the label sets stay those of the configuration),
/// and a change to the site does not reset the zone's.
#[test]
fn metrics_count_queries_by_zone_and_answers_by_task_and_origin_while_served() {
    let lab = Lab::start();
    let server = &lab.server;
    let zone = "lbdns_zone_queries_total{zone=\"example.com\"}";
    let task_series = |host: &str| {
        format!("lbdns_task_answers_total{{site=\"example.com\",hostname=\"{host}\"}}")
    };
    let origin_series = |host: &str, group: &str, origin: &str| {
        format!(
            "lbdns_origin_answers_total{{site=\"example.com\",hostname=\"{host}\",\
             group=\"{group}\",origin=\"{origin}\"}}"
        )
    };
    let keep = task_series("keep.example.com");
    let keep_origin = origin_series("keep.example.com", "pool", "192.0.2.10");
    let counts = || [zone, &keep, &keep_origin].map(|s| server.metric(s));
    let before = counts();
    for _ in 0..4 {
        server.ask("keep.example.com.", RecordType::A);
    }
    // Zone data, and a type the task does not answer: the zone's queries, not the task's.
    server.ask("www.example.com.", RecordType::TXT);
    server.ask("keep.example.com.", RecordType::TXT);
    // No zone here: REFUSED, counted for no zone.
    assert_eq!(
        server.ask("www.example.org.", RecordType::A).response_code,
        ResponseCode::Refused
    );
    let delta: Vec<f64> = counts().iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(delta, [6.0, 4.0, 4.0], "zone, task keep, origin of keep");

    // A task answering with both origins of `pair`: each counts once per answer.
    let body = json!({"id": "both", "hostname": "both.example.com", "origin_group": "pair",
                      "answers": 2});
    let created = lab.api.post(TASKS, &body);
    assert_eq!(created.status, 201, "{created}");
    wait_status(&lab.api, "both", "effective");
    for _ in 0..3 {
        server.ask("both.example.com.", RecordType::A);
    }
    assert_eq!(server.metric(&task_series("both.example.com")), 3.0);
    for origin in ["192.0.2.20", "192.0.2.21"] {
        let series = origin_series("both.example.com", "pair", origin);
        assert_eq!(server.metric(&series), 3.0, "{series}");
    }
    let zone_before_delete = server.metric(zone);
    assert!(
        zone_before_delete >= before[0] + 9.0,
        "the zone's count went on"
    );

    let disabled = lab.api.post_empty(&format!("{}/disable", task("both")));
    assert!(disabled.status < 300, "{disabled}");
    let deleted = lab.api.delete(&task("both"));
    assert!(deleted.status < 300, "{deleted}");
    // Gone once no served snapshot holds the task ([`PATIENCE`] at most).
    let deadline = Instant::now() + PATIENCE;
    let text = loop {
        let text = server.metrics_text();
        if !text.contains("both.example.com") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the deleted task's series stay:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        metric_in(&text, &keep),
        Some(before[1] + 4.0),
        "keep's count survives"
    );
    assert!(
        metric_in(&text, zone).unwrap() >= zone_before_delete,
        "no reset"
    );
    assert_prometheus_text(&text);
}

/// RFC 9110 §11.1: the authentication scheme is case-insensitive.
#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let lab = Lab::start_with(&["--api-token", "secret"], Some("bearer secret"));
    let reply = lab.api.get(TASKS);
    assert_eq!(reply.status, 200, "{reply}");
    let reply = Api::with_auth(lab.server.api, Some("BEARER secret")).get("/healthz");
    assert_eq!(reply.status, 200, "{reply}");
}

/// Runs `lbdns serve` with the API on `api` (never actually reachable: it must refuse to
/// start); kills it and fails if it is still running after 10 s.
fn serve_refusal(api: &str, extra: &[&str], env_token: Option<&str>) -> (ExitStatus, String) {
    let site = fixture();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("serve.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_lbdns"));
    command
        .args(["serve", "--dir"])
        .arg(site.path())
        .arg("--listen")
        .arg(free_port().to_string())
        .args(["--api", api, "--geoip"])
        .arg(test_geoip())
        .args(extra)
        .env_remove("LBDNS_API_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if let Some(token) = env_token {
        command.env("LBDNS_API_TOKEN", token);
    }
    let mut child = command.spawn().expect("start lbdns");
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, read(&log));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "lbdns serve --api {api} without a token kept running:\n{}",
                read(&log)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serving_the_api_beyond_loopback_needs_a_token() {
    let port = free_port().port();
    let cases: [(String, &[&str], Option<&str>); 4] = [
        (format!("0.0.0.0:{port}"), &[], None),
        (format!("0.0.0.0:{port}"), &["--api-token", ""], None),
        (format!("0.0.0.0:{port}"), &[], Some("")),
        (format!("[::]:{port}"), &[], None),
    ];
    for (api, extra, env) in &cases {
        let (status, log) = serve_refusal(api, extra, *env);
        assert!(
            !status.success(),
            "--api {api} {extra:?} env {env:?}: exit {status}\n{log}"
        );
        assert!(
            log.contains("token"),
            "--api {api} {extra:?}: the message should say a token is needed:\n{log}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Origin groups
// ---------------------------------------------------------------------------------------

fn by_name(groups: &[Value], name: &str) -> Value {
    groups
        .iter()
        .find(|g| g["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no group {name} in {groups:?}"))
}

#[test]
fn origin_groups_are_listed_with_dns_only_usability_and_managed() {
    let mut lab = Lab::start();
    let groups = lab.list(GROUPS, "origin_groups");
    let names: BTreeSet<&str> = groups.iter().filter_map(|g| g["name"].as_str()).collect();
    assert_eq!(names, BTreeSet::from(["pool", "pair", "legacy"]));
    for g in &groups {
        assert!(g["dns_only"]["usable"].is_boolean(), "{g}");
        assert!(g["dns_only"]["reasons"].is_array(), "{g}");
    }
    let pool = by_name(&groups, "pool");
    assert_eq!(
        pool["dns_only"],
        json!({"usable": true, "reasons": []}),
        "{pool}"
    );
    assert_eq!(pool["origins"][0]["address"], "192.0.2.10", "{pool}");
    let legacy = by_name(&groups, "legacy");
    assert_eq!(
        legacy["dns_only"],
        json!({"usable": false, "reasons": ["origin 192.0.2.30:8080 has a port"]}),
        "{legacy}"
    );

    // PUT creates: a mixed group is kept, shown as unusable with the reason.
    let reply = lab.api.put(
        &group("mixed"),
        &json!({"origins": [{"address": "192.0.2.40"}, {"address": "edge.example.net", "weight": 2}]}),
    );
    assert_eq!(reply.status, 200, "{reply}");
    let mixed = reply.json();
    assert_eq!(mixed["name"], "mixed", "{reply}");
    assert_eq!(mixed["dns_only"]["usable"], false, "{reply}");
    let reasons = mixed["dns_only"]["reasons"].to_string();
    assert!(reasons.contains("domain-name"), "{reply}");
    assert!(
        lab.file_groups().contains_key("mixed"),
        "{}",
        lab.file_text()
    );
    lab.assert_persisted();
    assert_eq!(
        by_name(&lab.list(GROUPS, "origin_groups"), "mixed")["dns_only"]["usable"],
        false
    );

    // PUT replaces: legacy without its port becomes usable.
    let reply = lab.api.put(
        &group("legacy"),
        &json!({"policy": "weight", "origins": [{"address": "192.0.2.31", "weight": 5}]}),
    );
    assert_eq!(reply.status, 200, "{reply}");
    assert_eq!(
        reply.json()["dns_only"],
        json!({"usable": true, "reasons": []}),
        "{reply}"
    );
    let legacy = &lab.file_groups()["legacy"];
    assert_eq!(legacy["origins"][0]["address"], "192.0.2.31", "{legacy}");
    assert_eq!(legacy["origins"][0]["weight"], 5, "{legacy}");
    assert_eq!(legacy["origins"].as_array().map(Vec::len), Some(1));
    lab.assert_persisted();

    // Replacing a used group changes the answers of its task.
    let reply = lab.api.put(
        &group("pool"),
        &json!({"origins": [{"address": "192.0.2.11"}]}),
    );
    assert_eq!(reply.status, 200, "{reply}");
    assert_eq!(reply.json()["used_by"], json!(["keep"]), "{reply}");
    wait_status(&lab.api, "keep", "effective");
    assert_a(&lab.server, "keep.example.com", &["192.0.2.11"], 30);
    lab.assert_persisted();
    assert_a(&lab.server, "keep.example.com", &["192.0.2.11"], 30);

    // DELETE an unused group.
    let reply = lab.api.delete(&group("mixed"));
    assert_eq!(reply.status, 204, "{reply}");
    assert!(!lab.file_groups().contains_key("mixed"));
    let names: BTreeSet<String> = lab
        .list(GROUPS, "origin_groups")
        .iter()
        .filter_map(|g| g["name"].as_str().map(str::to_owned))
        .collect();
    assert!(!names.contains("mixed"), "{names:?}");
    lab.assert_persisted();
    lab.refuse(
        "DELETE",
        &group("mixed"),
        None,
        404,
        "not_found",
        &["mixed"],
    );
    // The used one stays.
    lab.refuse("DELETE", &group("pool"), None, 409, "conflict", &["keep"]);
}

// ---------------------------------------------------------------------------------------
// Health, reload and metrics
// ---------------------------------------------------------------------------------------

/// The value of the sample `key` (name with labels) in Prometheus text.
fn sample(text: &str, key: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == key).then(|| value.parse().ok())?
    })
}

#[track_caller]
fn assert_prometheus_text(text: &str) {
    let mut seen = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_owned();
        assert!(seen.insert(name), "{line} appears twice:\n{text}");
    }
    assert!(!seen.is_empty(), "no # TYPE lines:\n{text}");
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        assert!(value.parse::<f64>().is_ok(), "not a number in {line}");
        let name = key.split('{').next().unwrap();
        assert!(
            seen.iter().any(|family| name.starts_with(family.as_str())),
            "{name} has no # TYPE:\n{text}"
        );
    }
}

#[track_caller]
fn wait_health(api: &Api, valid: bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let reply = api.get("/healthz");
        assert_eq!(reply.status, 200, "{reply}");
        let body = reply.json();
        if body["config"]["valid"] == valid {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz did not show config.valid == {valid} within {PATIENCE:?}: {reply}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_invalid_edit_on_disk_shows_in_healthz_and_metrics_and_the_last_good_config_serves() {
    let lab = Lab::start();
    let health = lab.api.get("/healthz");
    assert_eq!(health.status, 200, "{health}");
    assert_eq!(health.json()["status"], "ok", "{health}");
    assert_eq!(health.json()["config"]["valid"], true, "{health}");
    let metrics = lab.api.get("/metrics");
    assert_eq!(metrics.status, 200, "{metrics}");
    assert_prometheus_text(&metrics.text);
    assert_eq!(
        sample(&metrics.text, "lbdns_config_valid"),
        Some(1.0),
        "{}",
        metrics.text
    );

    // An edit by hand that breaks a rule (and would change the answers if it were taken).
    let broken = SITE_YAML
        .replace("ttl: 30", "ttl: 0")
        .replace("192.0.2.10", "192.0.2.99");
    let line = broken.lines().position(|l| l.trim() == "ttl: 0").unwrap() + 1;
    lab.site.write(SITE_FILE, &broken);
    let health = wait_health(&lab.api, false);
    let error = health["config"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("{SITE_FILE}:{line}:")) && error.contains("ttl"),
        "the error names file:line {line} and the problem: {health}"
    );
    // The last good configuration answers.
    assert_a(&lab.server, "keep.example.com", &["192.0.2.10"], 30);
    assert_a(&lab.server, "www.example.com", &["192.0.2.80"], 600);
    assert_eq!(lab.api.get(&task("keep")).json()["ttl"], 30);
    let metrics = lab.api.get("/metrics");
    assert_eq!(metrics.status, 200, "{metrics}");
    assert_prometheus_text(&metrics.text);
    assert_eq!(
        sample(&metrics.text, "lbdns_config_valid"),
        Some(0.0),
        "{}",
        metrics.text
    );
    let rejected = sample(&metrics.text, "lbdns_reloads_total{result=\"rejected\"}");
    assert!(rejected.is_some_and(|n| n >= 1.0), "{}", metrics.text);

    // A good edit is taken and the health is back.
    lab.site
        .write(SITE_FILE, &SITE_YAML.replace("ttl: 30", "ttl: 31"));
    let health = wait_health(&lab.api, true);
    assert_eq!(health["status"], "ok", "{health}");
    assert_a(&lab.server, "keep.example.com", &["192.0.2.10"], 31);
    let metrics = lab.api.get("/metrics").text;
    assert_eq!(
        sample(&metrics, "lbdns_config_valid"),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "lbdns_reloads_total{result=\"ok\"}").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
}

/// An API change while the site file on disk holds a rejected hand edit is refused with
/// 409 and a message saying why: the operator's edit is neither lost nor taken, the
/// answers and the health stay as they were.
#[test]
fn an_api_change_over_an_invalid_file_on_disk_is_refused_and_keeps_the_edit() {
    let lab = Lab::start();
    let broken = SITE_YAML.replace("ttl: 30", "ttl: 0");
    lab.site.write(SITE_FILE, &broken);
    wait_health(&lab.api, false);
    let reply = lab
        .api
        .post(TASKS, &task_body("n", "n.example.com", "pool"));
    assert_error(&reply, 409, "conflict", &["rejected", "ttl"]);
    assert_eq!(
        lab.file_text(),
        broken,
        "a refused change keeps the hand edit"
    );
    assert_nxdomain(&lab.server, "n.example.com");
    assert_eq!(lab.api.get("/healthz").json()["config"]["valid"], false);
    let metrics = lab.api.get("/metrics").text;
    assert_eq!(
        sample(&metrics, "lbdns_config_valid"),
        Some(0.0),
        "{metrics}"
    );
}

/// The site file is meant to be read and edited by people: a text file, whose last line
/// ends with a newline.
#[test]
fn the_written_site_file_ends_with_a_newline() {
    let lab = Lab::start();
    let reply = lab
        .api
        .post(TASKS, &task_body("n", "n.example.com", "pool"));
    assert_eq!(reply.status, 201, "{reply}");
    let text = lab.file_text();
    assert!(text.ends_with('\n'), "{text:?}");
}

// ---------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lbdns"))
        .args(args)
        .env_remove("LBDNS_API")
        .env_remove("LBDNS_API_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run lbdns")
}

#[track_caller]
fn cli_ok(args: &[&str]) -> Output {
    let out = cli(args);
    assert!(out.status.success(), "lbdns {args:?}: {}", describe(&out));
    out
}

/// The table row of `id`, as columns.
fn row(table: &str, id: &str) -> Option<Vec<String>> {
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|cols| cols.first().map(String::as_str) == Some(id))
}

#[test]
fn the_cli_manages_tasks_and_groups_through_the_api() {
    let lab = Lab::start();
    let addr = lab.server.api.to_string();
    let api = addr.as_str();
    assert_nxdomain(&lab.server, "cli.example.com");

    let out = cli_ok(&[
        "task",
        "create",
        "--api",
        api,
        "--hostname",
        "cli.example.com",
        "--group",
        "pool",
        "--ttl",
        "42",
        "--id",
        "cli",
    ]);
    assert!(
        stdout(&out).contains("cli.example.com"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        lab.server.dig(&["+short", "cli.example.com", "A"]).trim(),
        "192.0.2.10"
    );
    assert_a(&lab.server, "cli.example.com", &["192.0.2.10"], 42);
    assert_eq!(lab.file_tasks()["cli"]["ttl"], 42);

    let out = cli_ok(&["task", "list", "--api", api]);
    let table = stdout(&out);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert!(
        header.contains(&"ID") && header.contains(&"STATUS"),
        "{table}"
    );
    let cli_row = row(&table, "cli").unwrap_or_else(|| panic!("no row for cli:\n{table}"));
    assert!(cli_row.contains(&"cli.example.com".to_owned()), "{table}");
    assert_eq!(
        cli_row.last().map(String::as_str),
        Some("effective"),
        "{table}"
    );
    assert!(row(&table, "keep").is_some(), "{table}");

    let out = cli_ok(&["task", "list", "--api", api, "--json"]);
    let listed: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("task list --json is JSON ({e}): {}", describe(&out)));
    let tasks = listed["tasks"].as_array().expect("tasks list");
    let mine = tasks
        .iter()
        .find(|t| t["id"] == "cli")
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(mine["status"], "effective", "{listed}");
    assert_eq!(mine["ttl"], 42, "{listed}");
    assert_eq!(mine["hostname"], "cli.example.com", "{listed}");

    // An API refusal: non-zero exit, the API's message on stderr, nothing changed.
    let before = lab.observe();
    let out = cli(&["task", "delete", "--api", api, "cli"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("disable it first"),
        "{}",
        describe(&out)
    );
    let out = cli(&[
        "task",
        "create",
        "--api",
        api,
        "--hostname",
        "bad.example.com",
        "--group",
        "pool",
        "--ttl",
        "0",
    ]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(stderr(&out).contains("ttl"), "{}", describe(&out));
    assert_eq!(lab.observe(), before);
    assert_a(&lab.server, "cli.example.com", &["192.0.2.10"], 42);

    let out = cli_ok(&["task", "disable", "--api", api, "cli"]);
    assert!(stdout(&out).contains("ineffective"), "{}", describe(&out));
    assert!(
        lab.server
            .dig(&["cli.example.com", "A"])
            .contains("status: NXDOMAIN")
    );
    assert_eq!(lab.file_tasks()["cli"]["enabled"], false);

    cli_ok(&["task", "enable", "--api", api, "cli"]);
    assert_a(&lab.server, "cli.example.com", &["192.0.2.10"], 42);
    cli_ok(&["task", "disable", "--api", api, "cli"]);
    assert_nxdomain(&lab.server, "cli.example.com");

    cli_ok(&["task", "delete", "--api", api, "cli"]);
    assert_nxdomain(&lab.server, "cli.example.com");
    assert_error(&lab.api.get(&task("cli")), 404, "not_found", &[]);
    let out = cli_ok(&[
        "task",
        "list",
        "--api",
        api,
        "--json",
        "--site",
        "example.com",
    ]);
    let listed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        listed["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["id"] != "cli"),
        "{listed}"
    );
    assert!(!lab.file_tasks().contains_key("cli"));
    lab.assert_file_checks();

    let out = cli_ok(&["group", "list", "--api", api]);
    let table = stdout(&out);
    let legacy = table
        .lines()
        .find(|l| l.starts_with("legacy"))
        .unwrap_or_else(|| panic!("no legacy row:\n{table}"));
    assert!(
        legacy.contains("origin 192.0.2.30:8080 has a port"),
        "{table}"
    );
    let pool = table
        .lines()
        .find(|l| l.starts_with("pool"))
        .unwrap_or_else(|| panic!("no pool row:\n{table}"));
    assert!(pool.contains("yes"), "{table}");
}

// ---------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------

const THREADS: usize = 8;
const ROUNDS: usize = 10;

/// Checks one reply; records a failure when it is not `want` with a proper body.
fn expect(failures: &mut Vec<String>, reply: Result<Reply, String>, want: u16, id: &str) -> bool {
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) => {
            failures.push(e);
            return false;
        }
    };
    let proper = reply.status == want
        && match want {
            204 => reply.text.is_empty(),
            200 | 201 => serde_json::from_str::<Value>(&reply.text).is_ok_and(|v| v["id"] == id),
            _ => serde_json::from_str::<Value>(&reply.text)
                .is_ok_and(|v| v["error"]["message"].is_string()),
        };
    if !proper {
        failures.push(format!("want {want}: {reply}"));
    }
    proper
}

/// Creates, disables and deletes its own task `ROUNDS` times; the last round leaves the
/// task enabled (even threads), disabled (1 mod 4) or deleted (3 mod 4). Returns the id,
/// the state its acknowledged replies imply (`Some(enabled)` or gone) and any failures.
fn worker(api: Api, i: usize) -> (String, Option<bool>, Vec<String>) {
    let id = format!("c{i}");
    let hostname = format!("c{i}.example.com");
    let mut state = None;
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let last = round == ROUNDS - 1;
        let body =
            json!({"id": id, "hostname": hostname, "origin_group": "pool", "ttl": 10 + round});
        if !expect(
            &mut failures,
            api.try_call("POST", TASKS, Some(body.to_string().as_bytes())),
            201,
            &id,
        ) {
            break;
        }
        state = Some(true);
        if last && i.is_multiple_of(2) {
            break;
        }
        // Refused while effective, in the middle of the others' changes.
        expect(
            &mut failures,
            api.try_call("DELETE", &task(&id), None),
            409,
            &id,
        );
        if !expect(
            &mut failures,
            api.try_call("POST", &format!("{}/disable", task(&id)), None),
            200,
            &id,
        ) {
            break;
        }
        state = Some(false);
        if last && i % 4 == 1 {
            break;
        }
        if !expect(
            &mut failures,
            api.try_call("DELETE", &task(&id), None),
            204,
            &id,
        ) {
            break;
        }
        state = None;
    }
    (id, state, failures)
}

#[test]
fn concurrent_changes_to_different_tasks_all_land_in_the_file() {
    let mut lab = Lab::start();
    lab.probes = (0..THREADS)
        .map(|i| (format!("c{i}.example.com"), RecordType::A))
        .chain([("keep.example.com".to_owned(), RecordType::A)])
        .collect();
    let workers: Vec<_> = (0..THREADS)
        .map(|i| {
            let api = Api::new(lab.server.api);
            std::thread::spawn(move || worker(api, i))
        })
        .collect();
    let mut expected: BTreeMap<String, bool> = BTreeMap::from([("keep".to_owned(), true)]);
    let mut failures = Vec::new();
    for worker in workers {
        let (id, state, mut failed) = worker.join().expect("a worker panicked");
        if let Some(enabled) = state {
            expected.insert(id, enabled);
        }
        failures.append(&mut failed);
    }
    assert!(failures.is_empty(), "improper replies: {failures:#?}");
    // What the acknowledged replies imply is what the design intends.
    for i in 0..THREADS {
        let want = match i % 4 {
            0 | 2 => Some(true),
            1 => Some(false),
            _ => None,
        };
        assert_eq!(expected.get(&format!("c{i}")).copied(), want, "c{i}");
    }

    lab.assert_file_checks();
    let in_file: BTreeMap<String, bool> = lab
        .file_tasks()
        .into_iter()
        .map(|(id, t)| (id, t["enabled"].as_bool().unwrap_or(true)))
        .collect();
    assert_eq!(in_file, expected, "{}", lab.file_text());
    let listed: BTreeMap<String, bool> = lab
        .list(TASKS, "tasks")
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_owned(), t["enabled"] == true))
        .collect();
    assert_eq!(listed, expected);
    for i in 0..THREADS {
        let name = format!("c{i}.example.com");
        match expected.get(&format!("c{i}")) {
            Some(true) => assert_a(&lab.server, &name, &["192.0.2.10"], 19),
            _ => assert_nxdomain(&lab.server, &name),
        }
    }
    lab.assert_persisted();
    let listed: BTreeMap<String, bool> = lab
        .list(TASKS, "tasks")
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_owned(), t["enabled"] == true))
        .collect();
    assert_eq!(listed, expected, "after a restart");
}

// ---------------------------------------------------------------------------------------
// Browsers are not clients (SPEC §7)
// ---------------------------------------------------------------------------------------

/// Sends a raw request that must be refused with `status`/`code`, changing nothing.
#[track_caller]
fn refuse_raw(
    lab: &Lab,
    method: &str,
    target: &str,
    headers: &str,
    body: &str,
    status: u16,
    code: &str,
) {
    let before = lab.observe();
    let (got, text) = raw_request(lab.server.api, method, target, headers, body);
    assert_eq!(got, status, "{method} {target} with {headers:?}: {text}");
    let reply: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(reply["error"]["code"], code, "{text}");
    assert_eq!(
        lab.observe(),
        before,
        "the refused {method} {target} changed something"
    );
}

#[test]
fn web_pages_cannot_drive_the_api() {
    let lab = Lab::start();
    let addr = lab.server.api;
    let port = addr.port();
    let disable = format!("{}/disable", task("keep"));
    let own = format!("Host: {addr}\r\n");
    // A page on another site, with or without a body, by Origin or by Fetch metadata.
    for origin in [
        "https://evil.example",
        "null",
        "http://127.0.0.1:1",
        "http://localhost.evil.example",
    ] {
        refuse_raw(
            &lab,
            "POST",
            &disable,
            &format!("{own}Origin: {origin}\r\n"),
            "",
            403,
            "forbidden",
        );
    }
    refuse_raw(
        &lab,
        "POST",
        &disable,
        &format!("{own}Sec-Fetch-Site: cross-site\r\n"),
        "",
        403,
        "forbidden",
    );
    // DNS rebinding: the attacker's name resolving to 127.0.0.1.
    for host in [
        format!("attacker.example:{port}"),
        "attacker.example".to_owned(),
        format!("127.0.0.1.nip.io:{port}"),
    ] {
        refuse_raw(
            &lab,
            "POST",
            &disable,
            &format!("Host: {host}\r\n"),
            "",
            403,
            "forbidden",
        );
        refuse_raw(
            &lab,
            "GET",
            TASKS,
            &format!("Host: {host}\r\n"),
            "",
            403,
            "forbidden",
        );
    }
    // What HTML forms and simple fetches can send without a preflight.
    let body = r#"{"hostname": "evil.example.com", "origin_group": "pool"}"#;
    for kind in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        refuse_raw(
            &lab,
            "POST",
            TASKS,
            &format!("{own}Content-Type: {kind}\r\n"),
            body,
            415,
            "unsupported_media_type",
        );
    }
    refuse_raw(
        &lab,
        "POST",
        TASKS,
        &own,
        body,
        415,
        "unsupported_media_type",
    );
    refuse_raw(
        &lab,
        "PUT",
        &task("evil"),
        &own,
        body,
        415,
        "unsupported_media_type",
    );
    assert_eq!(lab.file_tasks().len(), 1, "{}", lab.file_text());

    // The API's own names and origin are fine: loopback names and the bound address.
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "localhost".to_owned(),
    ] {
        let (status, text) = raw_request(
            addr,
            "GET",
            TASKS,
            &format!("Host: {host}\r\nOrigin: http://{host}\r\n"),
            "",
        );
        assert_eq!(status, 200, "Host {host}: {text}");
    }
    let json = "Content-Type: application/json; charset=utf-8\r\n";
    let (status, text) = raw_request(addr, "POST", TASKS, &format!("{own}{json}"), body);
    assert_eq!(status, 201, "{text}");
}

#[test]
fn with_a_token_any_host_name_may_reach_the_api_but_no_foreign_origin() {
    let lab = Lab::start_with(&["--api-token", "sesame"], Some("Bearer sesame"));
    let auth = "Authorization: Bearer sesame\r\n";
    let (status, text) = raw_request(
        lab.server.api,
        "GET",
        TASKS,
        &format!("Host: lb.example.net:8053\r\n{auth}"),
        "",
    );
    assert_eq!(status, 200, "{text}");
    refuse_raw(
        &lab,
        "POST",
        &format!("{}/disable", task("keep")),
        &format!("Host: lb.example.net\r\n{auth}Origin: https://evil.example\r\n"),
        "",
        403,
        "forbidden",
    );
}

// ---------------------------------------------------------------------------------------
// Writes: PUT creates, retries are safe, bursts are answered, reads never wait
// ---------------------------------------------------------------------------------------

#[test]
fn put_creates_or_replaces_and_if_none_match_makes_a_retry_safe() {
    let lab = Lab::start();
    let body = json!({"hostname": "made.example.com", "origin_group": "pool", "ttl": 40});
    let created = lab.api.put(&task("made"), &body);
    assert_eq!(created.status, 201, "{created}");
    assert_eq!(created.header("location").as_deref(), Some(&*task("made")));
    assert_a(&lab.server, "made.example.com", &["192.0.2.10"], 40);

    let replaced = lab.api.put(
        &task("made"),
        &json!({"hostname": "made.example.com", "origin_group": "pair", "answers": 2}),
    );
    assert_eq!(
        (replaced.status, replaced.json()["origin_group"].clone()),
        (200, json!("pair")),
        "{replaced}"
    );

    // Create-only: the same task again is a successful no-op, a different one a 409.
    let create_only = |body: &Value| {
        let (status, text) = raw_request(
            lab.server.api,
            "PUT",
            &task("once"),
            &format!(
                "Host: {}\r\nContent-Type: application/json\r\nIf-None-Match: *\r\n",
                lab.server.api
            ),
            &body.to_string(),
        );
        (status, text)
    };
    let once = json!({"hostname": "once.example.com", "origin_group": "pool"});
    assert_eq!(create_only(&once).0, 201);
    let file = lab.file_text();
    let (status, text) = create_only(&once);
    assert_eq!(status, 200, "a retry of the same create: {text}");
    assert_eq!(lab.file_text(), file, "a retry changes nothing");
    let (status, text) =
        create_only(&json!({"hostname": "other.example.com", "origin_group": "pool"}));
    assert_eq!(status, 409, "{text}");
    assert_eq!(lab.file_text(), file);
    assert_a(&lab.server, "once.example.com", &["192.0.2.10"], 60);
}

#[test]
fn duplicate_json_keys_are_400_and_change_nothing() {
    let lab = Lab::start();
    let bodies = [
        r#"{"hostname": "a.example.com", "hostname": "b.example.com", "origin_group": "pool"}"#,
        r#"{"hostname": "a.example.com", "origin_group": "pool", "ttl": 5, "ttl": 50}"#,
    ];
    for body in bodies {
        let reply = lab.refuse(
            "POST",
            TASKS,
            Some(body.as_bytes()),
            400,
            "invalid_json",
            &["duplicate key"],
        );
        assert!(!reply.text.contains("serde"), "{reply}");
    }
    let group = r#"{"origins": [{"address": "192.0.2.1", "weight": 1, "weight": 9}]}"#;
    lab.refuse(
        "PUT",
        &group_path("g"),
        Some(group.as_bytes()),
        400,
        "invalid_json",
        &["duplicate key \"weight\""],
    );
}

fn group_path(name: &str) -> String {
    group(name)
}

#[test]
fn an_unknown_endpoint_names_the_real_ones() {
    let lab = Lab::start();
    let reply = lab.api.get("/v2/nothing");
    assert_error(&reply, 404, "not_found", &["/v1/sites", "/healthz"]);
    assert!(!reply.text.contains("SPEC"), "users have no SPEC: {reply}");
    // A path too long for any endpoint: the API's own 414, with a body that says why.
    let long = format!("{TASKS}/{}", "a".repeat(20_000));
    let (status, text) = raw_http(lab.server.api, "GET", &long, "");
    assert_eq!(status, 414, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert_eq!(body["error"]["code"], "uri_too_long", "{text}");
}

#[test]
fn a_create_racing_a_delete_reports_its_own_change() {
    let lab = Lab::start();
    let addr = lab.server.api;
    for round in 0..40 {
        let id = format!("race{round}");
        let body = json!({"hostname": format!("{id}.example.com"), "origin_group": "pool", "enabled": false});
        let creator = {
            let (api, path, body) = (Api::new(addr), task(&id), body.clone());
            std::thread::spawn(move || api.put(&path, &body))
        };
        let deleter = {
            let (api, path) = (Api::new(addr), task(&id));
            std::thread::spawn(move || api.delete(&path))
        };
        let created = creator.join().unwrap();
        let deleted = deleter.join().unwrap();
        assert_eq!(
            created.status, 201,
            "the create was applied, so it says so: {created}"
        );
        assert_eq!(created.json()["id"], json!(id), "{created}");
        assert!(deleted.status == 204 || deleted.status == 404, "{deleted}");
        let listed = lab
            .list(TASKS, "tasks")
            .iter()
            .any(|t| t["id"] == json!(id));
        assert_eq!(
            listed,
            deleted.status == 404,
            "round {round}: listed {listed} after {created} and {deleted}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Writes need the directory to load
// ---------------------------------------------------------------------------------------

#[test]
fn a_write_is_refused_while_the_zone_file_is_missing() {
    let lab = Lab::start();
    let zone = lab.site.path().join("zones/example.com.zone");
    let text = read(&zone);
    std::fs::remove_file(&zone).unwrap();
    let body = json!({"hostname": "late.example.com", "origin_group": "pool"});
    let reply = lab.api.post(TASKS, &body);
    assert_error(&reply, 409, "conflict", &["example.com.zone"]);
    assert!(!lab.file_text().contains("late"), "{}", lab.file_text());
    // Restored, and reloaded, the same write goes through.
    std::fs::write(&zone, text).unwrap();
    lab.server.sighup();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let reply = lab.api.post(TASKS, &body);
        if reply.status == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused after the zone came back: {reply}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_a(&lab.server, "late.example.com", &["192.0.2.10"], 60);
}

#[test]
fn a_write_is_refused_while_the_directory_does_not_load() {
    let lab = Lab::start();
    // Another zone, broken: the directory no longer loads, so no write may land in it.
    lab.site
        .write("broken.example.zone", "this is not a zone\n");
    lab.server.sighup();
    let deadline = Instant::now() + PATIENCE;
    while lab.api.get("/healthz").json()["config"]["valid"] != json!(false) {
        assert!(Instant::now() < deadline, "the broken zone was not noticed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let reply = lab.refuse_json(
        TASKS_POST,
        TASKS,
        &json!({"hostname": "late.example.com", "origin_group": "pool"}),
        409,
        "conflict",
        &["broken.example.zone"],
    );
    assert!(reply.text.contains("does not load"), "{reply}");
}

const TASKS_POST: &str = "POST";

// ---------------------------------------------------------------------------------------
// A wildcard directly under the apex (SPEC §3): file, API and reload
// ---------------------------------------------------------------------------------------

#[test]
fn a_wildcard_task_under_the_apex_is_served_from_file_api_and_reload() {
    let wildcard = "\n  - id: everything\n    hostname: \"*.example.com\"\n    origin_group: pair\n    answers: 2\n    ttl: 45\n";
    // From the file, checked and served.
    let site = Site::new(&[
        ("example.com.zone", ZONE),
        (SITE_FILE, &format!("{SITE_YAML}{wildcard}")),
    ]);
    let out = site.check();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = serve(&site, &[]);
    assert_a(
        &server,
        "anything.example.com",
        &["192.0.2.20", "192.0.2.21"],
        45,
    );
    assert_a(&server, "keep.example.com", &["192.0.2.10"], 30);
    drop(server);

    // Through the API.
    let lab = Lab::start();
    let reply = lab.api.put(
        &task("everything"),
        &json!({"hostname": "*.example.com", "origin_group": "pair", "answers": 2, "ttl": 45}),
    );
    assert_eq!(reply.status, 201, "{reply}");
    assert_a(
        &lab.server,
        "no-such-name.example.com",
        &["192.0.2.20", "192.0.2.21"],
        45,
    );
    assert_a(&lab.server, "www.example.com", &["192.0.2.80"], 600);

    // By a hand edit and a reload.
    let lab = Lab::start();
    lab.site.write(SITE_FILE, &format!("{SITE_YAML}{wildcard}"));
    lab.server.sighup();
    let deadline = Instant::now() + PATIENCE;
    while dns(&lab.server, "other.example.com", RecordType::A).rcode != ResponseCode::NoError {
        assert!(
            Instant::now() < deadline,
            "the reload did not serve the wildcard task"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_a(
        &lab.server,
        "other.example.com",
        &["192.0.2.20", "192.0.2.21"],
        45,
    );
    let health = lab.api.get("/healthz").json();
    assert_eq!(health["config"]["valid"], json!(true), "{health}");
}

// ---------------------------------------------------------------------------------------
// Secondaries (SPEC §3): who may transfer the zone
// ---------------------------------------------------------------------------------------

const SECONDARIES: &str = "/v1/sites/example.com/secondaries";

/// Whether an AXFR of example.com from 127.0.0.1 succeeds.
fn axfr_allowed(server: &Server) -> bool {
    let output = std::process::Command::new("dig")
        .args(["-b", "127.0.0.1", &format!("@{}", server.addr.ip())])
        .args([
            "-p",
            &server.addr.port().to_string(),
            "example.com.",
            "AXFR",
        ])
        .args(["+time=2", "+tries=1"])
        .output()
        .expect("dig is installed");
    let text = String::from_utf8_lossy(&output.stdout);
    text.contains("XFR size")
}

#[test]
fn secondaries_are_read_and_replaced_through_the_api() {
    let lab = Lab::start();
    let reply = lab.api.get(SECONDARIES);
    assert_eq!(reply.status, 200, "{reply}");
    assert_eq!(reply.json(), json!({"secondaries": []}));
    assert!(!axfr_allowed(&lab.server), "nobody may transfer at first");

    let list = json!({"secondaries": ["127.0.0.1", "2001:db8::/64"]});
    let reply = lab.api.put(SECONDARIES, &list);
    assert_eq!(reply.status, 200, "{reply}");
    assert_eq!(reply.json(), list);
    assert_eq!(lab.api.get(SECONDARIES).json(), list);
    assert_eq!(
        parse_yaml(&lab.file_text())["secondaries"],
        json!(["127.0.0.1", "2001:db8::/64"])
    );
    lab.assert_file_checks();
    assert!(axfr_allowed(&lab.server), "127.0.0.1 is listed now");

    // An entry that is not an address, a prefix or address:port: 422 naming it, and
    // nothing changes.
    let before = lab.observe();
    let reply = lab
        .api
        .put(SECONDARIES, &json!({"secondaries": ["ns1.example.net"]}));
    assert_error(
        &reply,
        422,
        "invalid",
        &["secondaries[0]", "ns1.example.net"],
    );
    let reply = lab
        .api
        .put(SECONDARIES, &json!({"secondaries": "127.0.0.1"}));
    assert_eq!(reply.status, 422, "{reply}");
    let reply = lab.api.put(SECONDARIES, &json!({"servers": []}));
    assert_eq!(reply.status, 422, "{reply}");
    assert_eq!(lab.observe(), before);

    // Emptied: transfers are refused again.
    let reply = lab.api.put(SECONDARIES, &json!({"secondaries": []}));
    assert_eq!(reply.status, 200, "{reply}");
    assert!(!axfr_allowed(&lab.server));
    assert!(
        !lab.file_text().contains("secondaries"),
        "{}",
        lab.file_text()
    );
    assert_eq!(lab.api.get("/v1/sites/example.org/secondaries").status, 404);
}

#[test]
fn healthz_names_the_geoip_database_and_when_it_was_built() {
    let lab = Lab::start();
    let health = lab.api.get("/healthz").json();
    let db = test_geoip();
    let built = maxminddb::Reader::open_readfile(&db)
        .unwrap()
        .metadata()
        .build_epoch;
    assert!(built > 1_400_000_000, "a real build time: {built}");
    assert_eq!(health["geoip"]["build_epoch"], json!(built), "{health}");
    assert_eq!(
        health["geoip"]["path"],
        json!(db.display().to_string()),
        "{health}"
    );
}
