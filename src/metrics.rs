//! Prometheus metrics (`GET /metrics`), with prometheus-client's text encoder.
//!
//! Labelled families take a lock to find a label set, so every label set is created once at
//! start-up and its counter kept: the query path only increments an atomic. Counters of what
//! the configuration names (zones, tasks, origins) are made when a snapshot is compiled and
//! held by it ([`ServedFamily`]): a series lives as long as a served snapshot uses it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::throttle::{LINES_PER_SECOND, Throttle};

/// Response codes counted one by one; anything else counts as "other".
const RCODES: [(ResponseCode, &str); 7] = [
    (ResponseCode::NoError, "NOERROR"),
    (ResponseCode::NXDomain, "NXDOMAIN"),
    (ResponseCode::Refused, "REFUSED"),
    (ResponseCode::FormErr, "FORMERR"),
    (ResponseCode::ServFail, "SERVFAIL"),
    (ResponseCode::NotImp, "NOTIMP"),
    (ResponseCode::BADVERS, "BADVERS"),
];

/// Query types counted one by one in `lbdns_queries_total`; anything else counts as
/// "other", so the label set stays bounded whatever clients ask.
const QTYPES: [(u16, &str); 15] = [
    (1, "A"),
    (28, "AAAA"),
    (5, "CNAME"),
    (15, "MX"),
    (2, "NS"),
    (6, "SOA"),
    (16, "TXT"),
    (33, "SRV"),
    (257, "CAA"),
    (12, "PTR"),
    (43, "DS"),
    (48, "DNSKEY"),
    (64, "SVCB"),
    (65, "HTTPS"),
    (255, "ANY"),
];

/// Why a TCP connection (DNS or API) was closed: the `reason` label of
/// `lbdns_tcp_connections_closed_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// The client closed it (or, for the API, asked to with `Connection: close`).
    Client,
    /// No complete query (DNS), or no next request (API), within the idle timeout.
    IdleTimeout,
    /// An API client did not send a request's headers within the timeout.
    HeaderTimeout,
    /// An API client did not send a request's body within the timeout.
    BodyTimeout,
    /// The least recently active idle connection, closed to make room for a new one.
    Evicted,
    /// Closed because accepting failed at the open-files limit.
    FdLimit,
    /// A new connection closed at once: the table was full of busy connections.
    Refused,
    /// A read or write failed, or a DNS response could not be written in time.
    Error,
}

impl Close {
    pub const ALL: [Self; 8] = [
        Self::Client,
        Self::IdleTimeout,
        Self::HeaderTimeout,
        Self::BodyTimeout,
        Self::Evicted,
        Self::FdLimit,
        Self::Refused,
        Self::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::IdleTimeout => "idle_timeout",
            Self::HeaderTimeout => "header_timeout",
            Self::BodyTimeout => "body_timeout",
            Self::Evicted => "evicted",
            Self::FdLimit => "fd_limit",
            Self::Refused => "refused",
            Self::Error => "error",
        }
    }
}

/// The connection metrics of one kind of TCP listener, `listener="dns"` or `"api"`.
#[derive(Clone, Debug, Default)]
pub struct ConnMetrics {
    /// Connections holding a slot in the connection table now.
    pub open: Gauge,
    /// The most the table holds (`--tcp-max-clients`, `--api-max-clients`).
    pub max: Gauge,
    pub accepted: Counter,
    pub accept_errors: Counter,
    closed: [Counter; Close::ALL.len()],
}

impl ConnMetrics {
    /// The counter of connections closed for `why`.
    pub fn closed(&self, why: Close) -> &Counter {
        &self.closed[why as usize]
    }
}

/// Why a query was malformed: the `reason` label of `lbdns_malformed_queries_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than a DNS header: dropped.
    Short,
    /// The header reads but the rest does not decode: FORMERR.
    Undecodable,
    /// Not exactly one question: FORMERR.
    Questions,
    /// A truncated EDNS option list or a malformed ECS option: FORMERR.
    Edns,
    /// A datagram larger than the UDP receive buffer, so cut short: dropped.
    Oversized,
}

impl Malformed {
    pub const ALL: [Self; 5] = [
        Self::Short,
        Self::Undecodable,
        Self::Questions,
        Self::Edns,
        Self::Oversized,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Short => "short",
            Self::Undecodable => "undecodable",
            Self::Questions => "questions",
            Self::Edns => "edns",
            Self::Oversized => "oversized",
        }
    }
}

/// Every metric lbdns exports.
pub struct Metrics {
    registry: Registry,
    responses: [Counter; RCODES.len() + 1],
    /// Queries by transport (UDP, TCP) and query type (the [`QTYPES`], then "other").
    queries: [[Counter; QTYPES.len() + 1]; 2],
    /// Queries answered FORMERR for a malformed ECS option.
    pub ecs_malformed: Counter,
    pub reloads_ok: Counter,
    pub reloads_failed: Counter,
    pub api_changes_applied: Counter,
    pub api_changes_rejected: Counter,
    /// Changes refused at once because the write queue was full (503).
    pub api_changes_busy: Counter,
    /// 1 while the files on disk are what is served, 0 after a rejected reload.
    pub config_valid: Gauge,
    pub config_generation: Gauge,
    pub tasks_effective: Gauge,
    pub tasks_deploying: Gauge,
    pub tasks_ineffective: Gauge,
    /// Time from a query's arrival at the handler to its response being ready to send.
    pub query_seconds: LatencyHistogram,
    origin_up: Family<Origin, Gauge>,
    origin_rtt: Family<Origin, Gauge<f64, AtomicU64>>,
    health_checks: Family<OriginResult, Counter>,
    health_transitions: Family<OriginResult, Counter>,
    failed_open_by_group: Family<SiteGroup, Counter>,
    /// Answers not from a task's own group (SPEC §12): `to` is the fallback group that
    /// answered, or `servfail`, `nodata`, `fail_open` when the whole chain was down.
    fallback_by_group: Family<Fallback, Counter>,
    /// Queries answered from each zone, by zone.
    zone_queries: ServedFamily<ZoneLabel>,
    /// Per zone lbdns signs: when its earliest RRSIG expires, and when its keys next
    /// change (Unix times); set at each scrape by [`Metrics::refresh_dnssec`].
    rrsig_earliest_expiry: Family<ZoneLabel, Gauge>,
    next_key_event: Family<ZoneLabel, Gauge>,
    /// Answers given by each task, by site and hostname.
    task_answers: ServedFamily<TaskLabels>,
    /// Origins given in task answers, by site, hostname, group and origin.
    origin_answers: ServedFamily<AnswerLabels>,
    /// DNS over TCP connections.
    pub dns_conns: ConnMetrics,
    /// Management API connections.
    pub api_conns: ConnMetrics,
    malformed: [Counter; Malformed::ALL.len()],
    /// The soft open-files limit in force (raised to the hard one at start).
    pub open_files_limit: Gauge,
    /// Failed `recvmmsg` calls on the UDP sockets.
    pub udp_receive_errors: Counter,
    /// UDP replies the kernel would not send (each is dropped, the others still go).
    pub udp_send_errors: Counter,
    /// Responses response rate limiting dropped, and sent truncated instead.
    pub rrl_dropped: Counter,
    pub rrl_slipped: Counter,
    /// Zone transfers sent to their end, refused (not a listed secondary, or not a served
    /// apex), and aborted (the connection was cut or stalled before the closing SOA).
    pub transfers_sent: Counter,
    pub transfers_refused: Counter,
    pub transfers_aborted: Counter,
    /// NOTIFY messages a secondary acknowledged, and those it did not.
    pub notify_acknowledged: Counter,
    pub notify_unacknowledged: Counter,
    /// Transfers a secondary zone took from its primary: the whole zone, or differences.
    pub secondary_axfr: Counter,
    pub secondary_ixfr: Counter,
    /// Requests refused for their TSIG signature (missing, unknown key, MAC, time).
    pub tsig_refused: Counter,
    /// Throttles log lines a client can cause per packet or per connection.
    pub warnings: Throttle,
}

type Origin = [(&'static str, String); 3];
type OriginResult = [(&'static str, String); 4];
type SiteGroup = [(&'static str, String); 2];
/// Site, group, kind (`group` or `all_down`) and where the answer came from: bounded by
/// the site's groups and chains of at most 8.
type Fallback = [(&'static str, String); 4];
type ZoneLabel = [(&'static str, String); 1];
type TaskLabels = [(&'static str, String); 2];
/// Site, hostname, group (the task's own, or one of its fallback chain) and origin.
type AnswerLabels = [(&'static str, String); 4];

/// The metrics of one checked origin, held by its checker.
#[derive(Clone, Default)]
pub struct HealthMetrics {
    up: Gauge,
    pass: Counter,
    fail: Counter,
    to_up: Counter,
    to_down: Counter,
    rtt: Gauge<f64, AtomicU64>,
}

impl HealthMetrics {
    /// A passing check's round-trip time.
    pub fn rtt(&self, rtt: Duration) {
        self.rtt.set(rtt.as_secs_f64());
    }

    pub fn checked(&self, passed: bool) {
        match passed {
            true => self.pass.inc(),
            false => self.fail.inc(),
        };
    }

    pub fn transition(&self, up: bool) {
        match up {
            true => self.to_up.inc(),
            false => self.to_down.inc(),
        };
        self.up.set(i64::from(up));
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

type Labels = Vec<(&'static str, &'static str)>;

/// Creates `values` of `label` in `family` now and hands out their metrics.
fn members<M: Clone + Default, const N: usize>(
    family: &Family<Labels, M>,
    label: &'static str,
    values: [&'static str; N],
) -> [M; N] {
    values.map(|value| family.get_or_create(&vec![(label, value)]).clone())
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lbdns");
        let responses = Family::<Labels, Counter>::default();
        let mut rcodes = ["other"; RCODES.len() + 1];
        for (slot, (_, name)) in rcodes.iter_mut().zip(RCODES) {
            *slot = name;
        }
        let responses_by_rcode = members(&responses, "rcode", rcodes);
        registry.register(
            "responses",
            "DNS responses sent, by response code",
            responses,
        );
        let queries_family = Family::<Labels, Counter>::default();
        let mut qtypes = ["other"; QTYPES.len() + 1];
        for (slot, (_, name)) in qtypes.iter_mut().zip(QTYPES) {
            *slot = name;
        }
        let queries = ["udp", "tcp"].map(|transport| {
            qtypes.map(|qtype| {
                queries_family
                    .get_or_create(&vec![("qtype", qtype), ("transport", transport)])
                    .clone()
            })
        });
        registry.register(
            "queries",
            "DNS queries answered, by query type (the common ones, then \"other\") and transport",
            queries_family,
        );
        let build_info = Family::<Labels, Gauge>::default();
        build_info
            .get_or_create(&vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", env!("LBDNS_COMMIT")),
                ("features", env!("LBDNS_FEATURES")),
            ])
            .set(1);
        registry.register(
            "build_info",
            "The version, commit and features of this binary (value 1)",
            build_info,
        );
        registry.register(
            "process_cpu_seconds",
            "CPU time (user and system) the process has used",
            ProcessCpu,
        );
        registry.register(
            "process_resident_memory_bytes",
            "Memory the process holds in RAM (resident set size)",
            ProcessMemory,
        );
        let reloads = Family::<Labels, Counter>::default();
        let [reloads_ok, reloads_failed] = members(&reloads, "result", ["ok", "rejected"]);
        registry.register("reloads", "Configuration reloads from disk", reloads);
        let changes = Family::<Labels, Counter>::default();
        let [api_changes_applied, api_changes_rejected, api_changes_busy] =
            members(&changes, "result", ["applied", "rejected", "busy"]);
        registry.register(
            "api_changes",
            "Changes made through the management API",
            changes,
        );
        let tasks = Family::<Labels, Gauge>::default();
        let [tasks_effective, tasks_deploying, tasks_ineffective] =
            members(&tasks, "status", ["effective", "deploying", "ineffective"]);
        registry.register("tasks", "Load-balancing tasks, by status", tasks);

        let ecs_malformed = Counter::default();
        registry.register(
            "ecs_malformed",
            "Queries refused with FORMERR for a malformed EDNS Client Subnet option",
            ecs_malformed.clone(),
        );
        let config_valid = Gauge::default();
        registry.register(
            "config_valid",
            "1 when the last reload was accepted, 0 when it was rejected and an older configuration serves",
            config_valid.clone(),
        );
        let config_generation = Gauge::default();
        registry.register(
            "config_generation",
            "Generation of the configuration being served",
            config_generation.clone(),
        );
        let query_seconds = LatencyHistogram::default();
        registry.register(
            "query_seconds",
            "Time to answer a DNS query, from the handler receiving it to the reply being ready to send",
            query_seconds.clone(),
        );
        let origin_up = Family::<Origin, Gauge>::default();
        registry.register(
            "origin_up",
            "1 while a checked origin is up or not checked yet, 0 while it is down",
            origin_up.clone(),
        );
        let origin_rtt = Family::<Origin, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "origin_check_rtt_seconds",
            "Round-trip time of the last passing health check of an origin (what policy nearest ranks, smoothed)",
            origin_rtt.clone(),
        );
        let health_checks = Family::<OriginResult, Counter>::default();
        registry.register(
            "health_checks",
            "Health checks run, by origin and result",
            health_checks.clone(),
        );
        let health_transitions = Family::<OriginResult, Counter>::default();
        registry.register(
            "health_transitions",
            "Origins going up or down",
            health_transitions.clone(),
        );
        let failed_open_by_group = Family::<SiteGroup, Counter>::default();
        registry.register(
            "failed_open",
            "Answers drawn from a group none of whose origins was up (fail open), by site and group",
            failed_open_by_group.clone(),
        );
        let fallback_by_group = Family::<Fallback, Counter>::default();
        registry.register(
            "fallback",
            "Answers not from a task's own group, by site, group, kind (group: a fallback group answered; all_down: the whole chain was down) and to (the group, or servfail, nodata, fail_open)",
            fallback_by_group.clone(),
        );
        registry.register(
            "dnssec_signatures_made",
            "RRSIG records lbdns made (a zone signed or signed again, a task answer, a compact denial made for a name asked)",
            crate::dnssec::sign::SIGNATURES_MADE.clone(),
        );
        registry.register(
            "dnssec_signature_cache_hits",
            "RRSIG records reused instead of made again: a reload that changed neither a signed zone's data, policy nor keys keeps its signatures, a task answer whose RRset did not change keeps its signature, and a compact denial asked again comes from its zone's table of signed records",
            crate::dnssec::sign::SIGNATURES_REUSED.clone(),
        );
        let rrsig_earliest_expiry = Family::<ZoneLabel, Gauge>::default();
        registry.register(
            "dnssec_rrsig_earliest_expiry_seconds",
            "When the first RRSIG of a zone lbdns signs expires (Unix time), by zone; it is signed again when a third of the validity is left",
            rrsig_earliest_expiry.clone(),
        );
        let next_key_event = Family::<ZoneLabel, Gauge>::default();
        registry.register(
            "dnssec_next_key_event_seconds",
            "When the keys of a zone lbdns signs next change (Unix time: a key published, signing, retired or removed, a CDS moved, a ZSK rollover started), by zone; absent when nothing is scheduled",
            next_key_event.clone(),
        );
        let zone_queries = ServedFamily::default();
        registry.register(
            "zone_queries",
            "Queries answered from each zone (by zone; REFUSED queries for no zone are not counted)",
            zone_queries.clone(),
        );
        let task_answers = ServedFamily::default();
        registry.register(
            "task_answers",
            "Answers a load-balancing task gave from its origin groups, by site and hostname",
            task_answers.clone(),
        );
        let origin_answers = ServedFamily::default();
        registry.register(
            "origin_answers",
            "Origins given in task answers, by site, hostname, group and origin (an answer of N origins counts each)",
            origin_answers.clone(),
        );
        let (dns_conns, api_conns) = conn_metrics(&mut registry);
        let malformed_family = Family::<Labels, Counter>::default();
        let malformed = members(
            &malformed_family,
            "reason",
            Malformed::ALL.map(Malformed::label),
        );
        registry.register(
            "malformed_queries",
            "Malformed DNS queries, answered FORMERR or dropped, by reason",
            malformed_family,
        );
        let open_files_limit = Gauge::default();
        registry.register(
            "open_files_limit",
            "The soft limit on open files (RLIMIT_NOFILE) in force",
            open_files_limit.clone(),
        );
        let udp_errors = Family::<Labels, Counter>::default();
        let [udp_receive_errors, udp_send_errors] = members(&udp_errors, "op", ["receive", "send"]);
        registry.register(
            "udp_errors",
            "UDP receive calls that failed and replies that could not be sent",
            udp_errors,
        );
        let rrl = Family::<Labels, Counter>::default();
        let [rrl_dropped, rrl_slipped] = members(&rrl, "action", ["dropped", "slipped"]);
        registry.register(
            "rrl_limited_responses",
            "UDP responses over the rate limit (--rrl-rate): dropped, or sent truncated (--rrl-slip)",
            rrl,
        );
        let transfers = Family::<Labels, Counter>::default();
        let [transfers_sent, transfers_refused, transfers_aborted] =
            members(&transfers, "result", ["sent", "refused", "aborted"]);
        registry.register(
            "zone_transfers",
            "Zone transfers (AXFR, IXFR in full) asked for over TCP",
            transfers,
        );
        let notifies = Family::<Labels, Counter>::default();
        let [notify_acknowledged, notify_unacknowledged] =
            members(&notifies, "result", ["acknowledged", "unacknowledged"]);
        registry.register(
            "notify",
            "NOTIFY messages sent to secondaries after a reload changed a serial",
            notifies,
        );
        let secondary = Family::<Labels, Counter>::default();
        let [secondary_axfr, secondary_ixfr] = members(&secondary, "kind", ["axfr", "ixfr"]);
        registry.register(
            "secondary_transfers",
            "Transfers applied to secondary zones: the whole zone (axfr) or its differences (ixfr)",
            secondary,
        );
        let tsig_refused = Counter::default();
        registry.register(
            "tsig_refused",
            "Transfers, SOA queries and NOTIFY refused for their TSIG signature (missing where a key is required, unknown key, wrong MAC or time)",
            tsig_refused.clone(),
        );
        let suppressed = Counter::default();
        registry.register(
            "log_lines_suppressed",
            "Log lines about per-packet or per-connection problems left out by the log throttle",
            suppressed.clone(),
        );
        Self {
            registry,
            responses: responses_by_rcode,
            queries,
            ecs_malformed,
            reloads_ok,
            reloads_failed,
            api_changes_applied,
            api_changes_rejected,
            api_changes_busy,
            config_valid,
            config_generation,
            tasks_effective,
            tasks_deploying,
            tasks_ineffective,
            query_seconds,
            origin_up,
            origin_rtt,
            health_checks,
            health_transitions,
            failed_open_by_group,
            fallback_by_group,
            zone_queries,
            rrsig_earliest_expiry,
            next_key_event,
            task_answers,
            origin_answers,
            dns_conns,
            api_conns,
            malformed,
            open_files_limit,
            udp_receive_errors,
            udp_send_errors,
            rrl_dropped,
            rrl_slipped,
            transfers_sent,
            transfers_refused,
            transfers_aborted,
            notify_acknowledged,
            notify_unacknowledged,
            secondary_axfr,
            secondary_ixfr,
            tsig_refused,
            warnings: Throttle::new(LINES_PER_SECOND, suppressed),
        }
    }

    /// The metrics of one checked origin, created now (up until a check says otherwise).
    pub fn origin(&self, site: &str, group: &str, origin: &str) -> HealthMetrics {
        let labels = origin_labels(site, group, origin);
        let with = |key: &'static str, value: &str| {
            let [a, b, c] = labels.clone();
            [a, b, c, (key, value.to_owned())]
        };
        // One statement each: a family's read guard lives to the end of its statement,
        // and a second get_or_create on the same family in it would wait for it forever.
        let up = self.origin_up.get_or_create(&labels).clone();
        let rtt = self.origin_rtt.get_or_create(&labels).clone();
        let pass = self
            .health_checks
            .get_or_create(&with("result", "pass"))
            .clone();
        let fail = self
            .health_checks
            .get_or_create(&with("result", "fail"))
            .clone();
        let to_up = self
            .health_transitions
            .get_or_create(&with("to", "up"))
            .clone();
        let to_down = self
            .health_transitions
            .get_or_create(&with("to", "down"))
            .clone();
        let metrics = HealthMetrics {
            up,
            pass,
            fail,
            to_up,
            to_down,
            rtt,
        };
        metrics.up.set(1);
        metrics
    }

    /// Drops the series of an origin no longer checked.
    pub fn forget_origin(&self, site: &str, group: &str, origin: &str) {
        let labels = origin_labels(site, group, origin);
        self.origin_up.remove(&labels);
        self.origin_rtt.remove(&labels);
        for (key, values) in [("result", ["pass", "fail"]), ("to", ["up", "down"])] {
            for value in values {
                let [a, b, c] = labels.clone();
                let family = match key {
                    "result" => &self.health_checks,
                    _ => &self.health_transitions,
                };
                family.remove(&[a, b, c, (key, value.to_owned())]);
            }
        }
    }

    /// The fail-open counter of one group, created now; the query path increments it.
    pub fn failed_open_for(&self, site: &str, group: &str) -> Counter {
        self.failed_open_by_group
            .get_or_create(&[("site", site.to_owned()), ("group", group.to_owned())])
            .clone()
    }

    /// The counter of answers of `group`'s tasks that came from `to` (SPEC §12), created
    /// now; the query path increments it.
    pub fn fallback_for(&self, site: &str, group: &str, kind: &str, to: &str) -> Counter {
        self.fallback_by_group
            .get_or_create(&[
                ("site", site.to_owned()),
                ("group", group.to_owned()),
                ("kind", kind.to_owned()),
                ("to", to.to_owned()),
            ])
            .clone()
    }

    /// The query counter of `zone` (its name without the final dot).
    pub fn zone_queries_for(&self, zone: &str) -> ServedCounter {
        self.zone_queries.counter([("zone", zone.to_owned())])
    }

    /// The answer counter of the task at `hostname`.
    pub fn task_answers_for(&self, site: &str, hostname: &str) -> ServedCounter {
        self.task_answers
            .counter([("site", site.to_owned()), ("hostname", hostname.to_owned())])
    }

    /// The counter of `origin` of `group` given in answers of the task at `hostname`.
    pub fn origin_answers_for(
        &self,
        site: &str,
        hostname: &str,
        group: &str,
        origin: &str,
    ) -> ServedCounter {
        self.origin_answers.counter([
            ("site", site.to_owned()),
            ("hostname", hostname.to_owned()),
            ("group", group.to_owned()),
            ("origin", origin.to_owned()),
        ])
    }

    /// Counts one malformed query.
    pub fn malformed(&self, why: Malformed) {
        self.malformed[why as usize].inc();
    }

    /// Counts one query of type `qtype` (`None`: no question read) over `tcp` or UDP.
    pub fn query(&self, qtype: Option<u16>, tcp: bool) {
        let i = qtype
            .and_then(|t| QTYPES.iter().position(|(code, _)| *code == t))
            .unwrap_or(QTYPES.len());
        self.queries[usize::from(tcp)][i].inc();
    }

    /// Counts one response.
    pub fn response(&self, rcode: ResponseCode) {
        let i = RCODES
            .iter()
            .position(|(code, _)| *code == rcode)
            .unwrap_or(RCODES.len());
        self.responses[i].inc();
    }

    /// Sets the per-zone DNSSEC gauges to `zones`, the zones lbdns signs now.
    pub fn refresh_dnssec(&self, zones: &[crate::load::SigningStatus]) {
        self.rrsig_earliest_expiry.clear();
        self.next_key_event.clear();
        for zone in zones {
            let label = [("zone", zone.zone.to_string())];
            let gauge = |t: u64| i64::try_from(t).unwrap_or(i64::MAX);
            self.rrsig_earliest_expiry
                .get_or_create(&label)
                .set(gauge(zone.earliest_expiry));
            if let Some(at) = zone.next_key_event {
                self.next_key_event.get_or_create(&label).set(gauge(at));
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

fn origin_labels(site: &str, group: &str, origin: &str) -> Origin {
    [
        ("site", site.to_owned()),
        ("group", group.to_owned()),
        ("origin", origin.to_owned()),
    ]
}

/// A counter family whose series are owned by the snapshots that count into them: the
/// family keeps a weak reference, a recompiled snapshot that asks for the same labels gets
/// the same counter (no reset), and a series no served snapshot holds any more (a deleted
/// task, a removed origin or zone) is dropped at the next scrape. So the label sets are
/// bounded by the configuration served, however many tasks come and go.
#[derive(Debug)]
pub struct ServedFamily<L> {
    series: Arc<Mutex<HashMap<L, Weak<AtomicU64>>>>,
}

impl<L> Clone for ServedFamily<L> {
    fn clone(&self) -> Self {
        Self {
            series: self.series.clone(),
        }
    }
}

impl<L> Default for ServedFamily<L> {
    fn default() -> Self {
        Self {
            series: Arc::default(),
        }
    }
}

/// One series of a [`ServedFamily`], held by the compiled zone or task it counts.
#[derive(Clone, Debug, Default)]
pub struct ServedCounter(Arc<AtomicU64>);

impl ServedCounter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl<L: Clone + Eq + std::hash::Hash> ServedFamily<L> {
    /// The counter of `labels`: the one a served snapshot already holds, or a new one.
    pub fn counter(&self, labels: L) -> ServedCounter {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = series.get(&labels).and_then(Weak::upgrade) {
            return ServedCounter(live);
        }
        let counter = Arc::new(AtomicU64::new(0));
        series.insert(labels, Arc::downgrade(&counter));
        ServedCounter(counter)
    }
}

impl<L> TypedMetric for ServedFamily<L> {
    const TYPE: MetricType = MetricType::Counter;
}

impl<L> EncodeMetric for ServedFamily<L>
where
    L: prometheus_client::encoding::EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series.retain(|_, counter| counter.strong_count() > 0);
        for (labels, counter) in series.iter() {
            let Some(counter) = counter.upgrade() else {
                continue;
            };
            encoder
                .encode_family(labels)?
                .encode_counter::<NoLabelSet, _, u64>(&counter.load(Ordering::Relaxed), None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// A latency histogram the query path can feed without a lock: prometheus-client's own
/// `Histogram` takes a mutex on every observation. Buckets are powers of two from 16 µs
/// to about 1 s; each observation is two relaxed atomic adds and one increment.
#[derive(Clone, Debug, Default)]
pub struct LatencyHistogram {
    inner: std::sync::Arc<LatencyBuckets>,
}

const LATENCY_BUCKETS: usize = 17;

#[derive(Debug, Default)]
struct LatencyBuckets {
    /// Counts per bucket (not cumulative); the last one is +Inf.
    counts: [AtomicU64; LATENCY_BUCKETS + 1],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    /// The upper bound of bucket `i`, in seconds: 16 µs × 2^i.
    fn bound(i: usize) -> f64 {
        16e-6 * f64::from(1u32 << i)
    }

    pub fn observe(&self, elapsed: Duration) {
        let micros = elapsed.as_micros() as u64;
        // Bucket i holds (16 µs × 2^(i-1), 16 µs × 2^i].
        let i = (64 - (micros.saturating_sub(1) / 16).leading_zeros()) as usize;
        self.inner.counts[i.min(LATENCY_BUCKETS)].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = [(0.0, 0u64); LATENCY_BUCKETS + 1];
        let mut count = 0;
        for (i, slot) in buckets.iter_mut().enumerate() {
            let n = self.inner.counts[i].load(Ordering::Relaxed);
            count += n;
            let bound = if i == LATENCY_BUCKETS {
                f64::INFINITY
            } else {
                Self::bound(i)
            };
            *slot = (bound, n);
        }
        let sum = self.inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// `lbdns_process_cpu_seconds_total`, read from `/proc/self/stat` when scraped.
#[derive(Debug)]
struct ProcessCpu;

impl TypedMetric for ProcessCpu {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ProcessCpu {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&process_cpu_seconds(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// `lbdns_process_resident_memory_bytes`, read from `/proc/self/statm` when scraped.
#[derive(Debug)]
struct ProcessMemory;

impl TypedMetric for ProcessMemory {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for ProcessMemory {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&process_resident_bytes())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// User and system CPU seconds of this process (fields 14 and 15 of `/proc/self/stat`,
/// in clock ticks); 0 where that cannot be read.
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The command name, in parentheses, may hold spaces: count fields after it.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if per_second <= 0 {
        return 0.0;
    }
    (ticks(11) + ticks(12)) / per_second as f64
}

/// Resident set size in bytes (field 2 of `/proc/self/statm`, in pages); 0 where that
/// cannot be read.
fn process_resident_bytes() -> i64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<i64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * i64::from(page.max(0) as i32)
}

/// Registers the TCP connection families and hands out the `dns` and `api` members.
fn conn_metrics(registry: &mut Registry) -> (ConnMetrics, ConnMetrics) {
    let open = Family::<Labels, Gauge>::default();
    let max = Family::<Labels, Gauge>::default();
    let accepted = Family::<Labels, Counter>::default();
    let accept_errors = Family::<Labels, Counter>::default();
    let closed = Family::<Labels, Counter>::default();
    let [dns, api] = ["dns", "api"].map(|listener| {
        let one = |family: &Family<Labels, Counter>| {
            family.get_or_create(&vec![("listener", listener)]).clone()
        };
        ConnMetrics {
            open: open.get_or_create(&vec![("listener", listener)]).clone(),
            max: max.get_or_create(&vec![("listener", listener)]).clone(),
            accepted: one(&accepted),
            accept_errors: one(&accept_errors),
            closed: Close::ALL.map(|why| {
                closed
                    .get_or_create(&vec![("listener", listener), ("reason", why.label())])
                    .clone()
            }),
        }
    });
    registry.register(
        "tcp_connections",
        "TCP connections open, by listener (dns or api)",
        open,
    );
    registry.register(
        "tcp_connections_max",
        "The most TCP connections a listener keeps open; the least recently active idle one is closed to make room",
        max,
    );
    registry.register(
        "tcp_connections_accepted",
        "TCP connections accepted, by listener",
        accepted,
    );
    registry.register(
        "tcp_connections_closed",
        "TCP connections closed, by listener and reason",
        closed,
    );
    registry.register(
        "accept_errors",
        "Failed accepts (e.g. at the open-files limit), each followed by a back-off",
        accept_errors,
    );
    (dns, api)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_with_labels() {
        let metrics = Metrics::new();
        metrics.response(ResponseCode::NXDomain);
        metrics.response(ResponseCode::NXDomain);
        metrics.response(ResponseCode::YXDomain);
        let text = metrics.encode();
        assert!(
            text.contains("lbdns_responses_total{rcode=\"NXDOMAIN\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("lbdns_responses_total{rcode=\"other\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("lbdns_reloads_total{result=\"rejected\"} 0"),
            "{text}"
        );
        assert!(
            text.contains(
                "lbdns_tcp_connections_closed_total{listener=\"api\",reason=\"header_timeout\"} 0"
            ),
            "{text}"
        );
        assert!(
            text.contains("lbdns_malformed_queries_total{reason=\"edns\"} 0"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        metrics.query(Some(28), false);
        metrics.query(Some(28), false);
        metrics.query(Some(65280), true);
        metrics.query(None, true);
        let text = metrics.encode();
        assert!(
            text.contains("lbdns_queries_total{qtype=\"AAAA\",transport=\"udp\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("lbdns_queries_total{qtype=\"other\",transport=\"tcp\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("lbdns_queries_total{qtype=\"A\",transport=\"tcp\"} 0"),
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE lbdns_responses counter").count(),
            1,
            "{text}"
        );
    }
}
