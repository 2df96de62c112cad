//! Prometheus metrics (`GET /metrics`), with prometheus-client's text encoder.
//!
//! Labelled families take a lock to find a label set, so every label set is created once at
//! start-up and its counter kept: the query path only increments an atomic.

use hickory_proto::op::ResponseCode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
}

impl Malformed {
    pub const ALL: [Self; 4] = [Self::Short, Self::Undecodable, Self::Questions, Self::Edns];

    pub fn label(self) -> &'static str {
        match self {
            Self::Short => "short",
            Self::Undecodable => "undecodable",
            Self::Questions => "questions",
            Self::Edns => "edns",
        }
    }
}

/// Every metric lbdns exports.
pub struct Metrics {
    registry: Registry,
    responses: [Counter; RCODES.len() + 1],
    /// Queries answered FORMERR for a malformed ECS option.
    pub ecs_malformed: Counter,
    /// Answers given from origins marked down because none was up (fail open).
    pub failed_open: Counter,
    pub reloads_ok: Counter,
    pub reloads_failed: Counter,
    pub api_changes_applied: Counter,
    pub api_changes_rejected: Counter,
    /// 1 while the files on disk are what is served, 0 after a rejected reload.
    pub config_valid: Gauge,
    pub config_generation: Gauge,
    pub tasks_effective: Gauge,
    pub tasks_deploying: Gauge,
    pub tasks_ineffective: Gauge,
    /// DNS over TCP connections.
    pub dns_conns: ConnMetrics,
    /// Management API connections.
    pub api_conns: ConnMetrics,
    malformed: [Counter; Malformed::ALL.len()],
    /// The soft open-files limit in force (raised to the hard one at start).
    pub open_files_limit: Gauge,
    /// Throttles log lines a client can cause per packet or per connection.
    pub warnings: Throttle,
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
        let reloads = Family::<Labels, Counter>::default();
        let [reloads_ok, reloads_failed] = members(&reloads, "result", ["ok", "rejected"]);
        registry.register("reloads", "Configuration reloads from disk", reloads);
        let changes = Family::<Labels, Counter>::default();
        let [api_changes_applied, api_changes_rejected] =
            members(&changes, "result", ["applied", "rejected"]);
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
        let failed_open = Counter::default();
        registry.register(
            "failed_open",
            "Answers drawn from origins marked down because no origin was up",
            failed_open.clone(),
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
        let suppressed = Counter::default();
        registry.register(
            "log_lines_suppressed",
            "Log lines about per-packet or per-connection problems left out by the log throttle",
            suppressed.clone(),
        );
        Self {
            registry,
            responses: responses_by_rcode,
            ecs_malformed,
            failed_open,
            reloads_ok,
            reloads_failed,
            api_changes_applied,
            api_changes_rejected,
            config_valid,
            config_generation,
            tasks_effective,
            tasks_deploying,
            tasks_ineffective,
            dns_conns,
            api_conns,
            malformed,
            open_files_limit,
            warnings: Throttle::new(LINES_PER_SECOND, suppressed),
        }
    }

    /// Counts one malformed query.
    pub fn malformed(&self, why: Malformed) {
        self.malformed[why as usize].inc();
    }

    /// Counts one response.
    pub fn response(&self, rcode: ResponseCode) {
        let i = RCODES
            .iter()
            .position(|(code, _)| *code == rcode)
            .unwrap_or(RCODES.len());
        self.responses[i].inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
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
        assert_eq!(
            text.matches("# TYPE lbdns_responses counter").count(),
            1,
            "{text}"
        );
    }
}
