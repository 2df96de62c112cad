//! Prometheus metrics (`GET /metrics`), with prometheus-client's text encoder.
//!
//! Labelled families take a lock to find a label set, so every label set is created once at
//! start-up and its counter kept: the query path only increments an atomic.

use hickory_proto::op::ResponseCode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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
    /// Changes refused at once because the write queue was full (503).
    pub api_changes_busy: Counter,
    /// 1 while the files on disk are what is served, 0 after a rejected reload.
    pub config_valid: Gauge,
    pub config_generation: Gauge,
    pub tasks_effective: Gauge,
    pub tasks_deploying: Gauge,
    pub tasks_ineffective: Gauge,
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
        Self {
            registry,
            responses: responses_by_rcode,
            ecs_malformed,
            failed_open,
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
        }
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
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(
            text.matches("# TYPE lbdns_responses counter").count(),
            1,
            "{text}"
        );
    }
}
