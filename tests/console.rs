//! The web console (SPEC §15) in a real browser: Debian's Chromium, driven through
//! chromedriver (WebDriver) by fantoccini, against the real `lbdns serve`. Each test does
//! what an operator does with the mouse and keyboard, checks the page and the DNS answers
//! it changed, and saves a screenshot of each page it visits under
//! `target/tmp/console-screenshots/` (look at them).

mod common;
use common::*;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

const ZONE: &str = "\
$ORIGIN example.com.
$TTL 300
@   IN SOA ns1 hostmaster 1 7200 900 1209600 300
@   NS  ns1
ns1 A   192.0.2.53
";

/// `web` is usable; `legacy` has a port, so a DNS-only task cannot use it (SPEC §3, §7).
const SITE: &str = "\
origin_groups:
  web:
    origins:
      - {address: 192.0.2.10, weight: 3}
      - {address: 192.0.2.11, weight: 1}
  legacy:
    origins:
      - {address: '192.0.2.1:8080'}
tasks:
  - {id: www, hostname: www.example.com, origin_group: web, ttl: 30}
";

/// The path of `program` on PATH, or a failed test naming the package to install. Not
/// run to check (as `require_tool` does): `chromedriver -V` starts a server on port 9515.
fn installed(program: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{program} is not installed: apt-get install {package}"))
}

/// chromedriver on a free loopback port, stopped on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let binary = installed("chromedriver", "chromium-driver");
        installed("chromium", "chromium");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn browser(&self, width: u32, height: u32) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                format!("--window-size={width},{height}"),
            ]}),
        );
        // Every wait below is bounded by this too.
        capabilities.insert(
            "timeouts".into(),
            serde_json::json!({"implicit": 0, "pageLoad": 30000, "script": 30000}),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn snap(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// Waits (20 s at most) for the element to exist, then returns it.
async fn wait_for(browser: &Client, css: &str) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} within 20 s: {e}"))
}

/// Clicks the element `css` names, which must be on the page.
async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Waits ([`PATIENCE`] at most) until `css`'s text contains `text`.
async fn wait_for_text(browser: &Client, css: &str, text: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(element) = browser.find(Locator::Css(css)).await
            && let Ok(shown) = element.text().await
            && shown.contains(text)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{css} never showed {text:?}:\n{}",
            browser.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_created_seen_effective_disabled_and_deleted_from_the_console() {
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", SITE)]);
    let server = site.serve();
    let driver = Driver::start();
    let browser = driver.browser(1200, 1000).await;
    let base = format!("http://{}", server.api);

    browser.goto(&format!("{base}/")).await.unwrap();
    let link = wait_for(&browser, "a[href='#/site/example.com']").await;
    snap(&browser, "1-sites").await;
    link.click().await.unwrap();
    wait_for(&browser, "tr[data-task=www]").await;
    wait_for_text(&browser, "tr[data-task=www]", "Effective").await;
    // The groups with their origins, and why legacy cannot serve a DNS-only task.
    wait_for_text(
        &browser,
        "section[data-group=legacy]",
        "Not usable for DNS-only",
    )
    .await;
    wait_for_text(&browser, "section[data-group=legacy]", "has a port").await;
    snap(&browser, "2-site").await;

    // Create: the unusable group is offered greyed out, with its reason.
    wait_for(&browser, "#create-task")
        .await
        .click()
        .await
        .unwrap();
    let hostname = wait_for(&browser, "#hostname").await;
    let legacy = wait_for(&browser, "#group-legacy").await;
    assert!(!legacy.is_enabled().await.unwrap(), "legacy is offered");
    wait_for_text(&browser, "#why-legacy", "has a port").await;
    assert!(
        wait_for(&browser, "#group-web")
            .await
            .is_enabled()
            .await
            .unwrap()
    );
    snap(&browser, "3-create").await;
    hostname.send_keys("api.example.com").await.unwrap();
    click(&browser, "#group-web").await;
    let ttl = browser.find(Locator::Css("#ttl")).await.unwrap();
    ttl.clear().await.unwrap();
    ttl.send_keys("20").await.unwrap();
    click(&browser, "#save").await;

    // Back on the site: the new task becomes Effective, and DNS answers it with its TTL.
    let api = "tr[data-task='api.example.com']";
    wait_for(&browser, api).await;
    wait_for_text(&browser, api, "Effective").await;
    snap(&browser, "4-created").await;
    let reply = server.ask("api.example.com", RecordType::A);
    assert_eq!(reply.answers.len(), 1, "{reply}");
    assert_eq!(reply.answers[0].ttl, 20, "{reply}");
    assert!(
        ["192.0.2.10", "192.0.2.11"].contains(&answers(&reply)[0].as_str()),
        "{reply}"
    );
    // Delete is offered only once the task is ineffective.
    let delete_button = format!("{api} button[data-action=delete]");
    assert!(
        !wait_for(&browser, &delete_button)
            .await
            .is_enabled()
            .await
            .unwrap()
    );
    wait_for_text(&browser, "#delete-reason", "disable a task first").await;

    wait_for(&browser, &format!("{api} button[data-action=disable]"))
        .await
        .click()
        .await
        .unwrap();
    wait_for_text(&browser, api, "Ineffective").await;
    assert_eq!(
        server
            .ask("api.example.com", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    snap(&browser, "5-disabled").await;
    let delete = wait_for(&browser, &delete_button).await;
    assert!(delete.is_enabled().await.unwrap());
    delete.click().await.unwrap();
    browser.accept_alert().await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    while browser.find(Locator::Css(api)).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the deleted task is still listed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tasks = server
        .http("GET", "/v1/sites/example.com/tasks", None)
        .unwrap();
    assert!(!tasks.1.contains("api.example.com"), "{}", tasks.1);

    // The answer panel asks through the query path: www spreads 3:1 over .10 and .11.
    browser
        .find(Locator::Css("#ask-hostname"))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();
    browser
        .find(Locator::Css("#ask-hostname"))
        .await
        .unwrap()
        .send_keys("www.example.com")
        .await
        .unwrap();
    click(&browser, "#ask").await;
    wait_for_text(&browser, "#answer-result", "NOERROR").await;
    wait_for_text(&browser, "#answer-result", "192.0.2.10").await;
    browser
        .execute(
            "document.getElementById('answer-result').scrollIntoView()",
            vec![],
        )
        .await
        .unwrap();
    snap(&browser, "6-answer").await;
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_console_asks_for_it_and_keeps_it_for_the_tab() {
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", SITE)]);
    let token = "console-test-token-0123456789";
    let server = site.serve_with(&["--api-token", token]);
    let driver = Driver::start();
    let browser = driver.browser(1200, 800).await;
    browser
        .goto(&format!("http://{}/", server.api))
        .await
        .unwrap();
    let input = wait_for(&browser, "#token").await;
    wait_for_text(&browser, "main", "This server needs its API token").await;
    snap(&browser, "7-token").await;
    input.send_keys("wrong-token").await.unwrap();
    click(&browser, "form button[type=submit]").await;
    wait_for_text(&browser, "main", "That token was refused").await;
    wait_for(&browser, "#token")
        .await
        .send_keys(token)
        .await
        .unwrap();
    click(&browser, "form button[type=submit]").await;
    wait_for(&browser, "a[href='#/site/example.com']").await;
    // Kept in sessionStorage (this tab), never in localStorage or a cookie.
    let stored = browser
        .execute(
            "return [sessionStorage.getItem('lbdns-token'), localStorage.length, document.cookie]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(stored, serde_json::json!([token, 0, ""]));
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_reads_at_phone_width_and_runs_under_its_csp() {
    let site = Site::new(&[("example.com.zone", ZONE), ("example.com.lb.yaml", SITE)]);
    let server = site.serve();
    let driver = Driver::start();
    let browser = driver.browser(390, 844).await;
    browser
        .goto(&format!("http://{}/#/site/example.com", server.api))
        .await
        .unwrap();
    wait_for_text(&browser, "tr[data-task=www]", "Effective").await;
    snap(&browser, "8-phone").await;
    // Nothing wider than the screen but the tables, which scroll inside their box.
    let widths = browser
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth]",
            vec![],
        )
        .await
        .unwrap();
    let (page, screen) = (widths[0].as_u64().unwrap(), widths[1].as_u64().unwrap());
    assert!(
        page <= screen,
        "the page is {page} px wide on a {screen} px screen"
    );

    // The policy is in force: an inline script the page did not ship does not run.
    let ran = browser
        .execute(
            "const s = document.createElement('script'); s.textContent = 'window.injected = 1'; \
             document.body.append(s); return window.injected === 1",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        ran,
        serde_json::json!(false),
        "inline script ran despite the CSP"
    );
    let (status, _) = server.http("GET", "/", None).unwrap();
    assert_eq!(status, 200);
    browser.close().await.unwrap();
}

/// The console's "which answer" question is the DNS answer: the same records and ECS
/// scope as a real query with that subnet, and clear errors for what cannot be asked.
#[test]
fn the_answer_endpoint_agrees_with_a_real_query() {
    let site = Site::new(&[
        ("example.com.zone", ZONE),
        (
            "example.com.lb.yaml",
            "origin_groups:\n  geo:\n    policy: region\n    origins:\n      - {address: 198.51.100.1, subnets: [203.0.113.0/24]}\n      - {address: 198.51.100.9}\ntasks:\n  - {id: geo, hostname: geo.example.com, origin_group: geo}\n",
        ),
    ]);
    let server = site.serve();
    for subnet in ["203.0.113.0/24", "192.0.2.0/24"] {
        let (status, body) = server
            .http(
                "GET",
                &format!("/v1/sites/example.com/answer?hostname=geo.example.com&client={subnet}"),
                None,
            )
            .unwrap();
        assert_eq!(status, 200, "{body}");
        let panel: serde_json::Value = serde_json::from_str(&body).unwrap();
        let reply = server.udp(&query_edns(
            "geo.example.com",
            RecordType::A,
            1232,
            Some(subnet),
        ));
        let records: Vec<String> = reply.answers.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            panel["answers"][0]["records"],
            serde_json::json!(records),
            "{subnet}"
        );
        assert_eq!(panel["rcode"], "NOERROR");
        assert_eq!(
            panel["ecs_scope"].as_u64(),
            ecs_of(&reply).map(|(_, _, scope)| u64::from(scope)),
            "{subnet}"
        );
    }
    for (query, status, says) in [
        (
            "hostname=geo.example.com&client=nope",
            422,
            "neither an address nor a prefix",
        ),
        (
            "hostname=geo.example.com&client=10.0.0.0/33",
            422,
            "neither an address nor a prefix",
        ),
        (
            "hostname=geo.example.com&type=BOGUS",
            422,
            "not a DNS record type",
        ),
        ("hostname=geo.example.com&times=5000", 422, "times must be"),
    ] {
        let (got, body) = server
            .http(
                "GET",
                &format!("/v1/sites/example.com/answer?{query}"),
                None,
            )
            .unwrap();
        assert_eq!(got, status, "{query}: {body}");
        assert!(body.contains(says), "{query}: {body}");
    }
    let (got, body) = server
        .http(
            "GET",
            "/v1/sites/example.org/answer?hostname=a.example.org",
            None,
        )
        .unwrap();
    assert_eq!(got, 404, "{body}");
}
