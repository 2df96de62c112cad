//! Health checks (SPEC §10): each checked origin has a [`OriginHealth`] cell that the
//! query path reads with one atomic load, and a task of its own that probes it.
//!
//! An origin's identity is what makes its state meaningful: the site, the group, the
//! origin's address and the check itself ([`Key`]). A configuration change that keeps
//! all four keeps the cell, and so the state; changing any of them starts afresh
//! (`unchecked`). Snapshots are compiled with the cells of the moment ([`Health::cell`]);
//! after each publish [`Health::reconcile`] starts checkers for new cells and stops those
//! no configuration uses any more.
//!
//! Checks never run on the query path: each origin's checker is a tokio task that sleeps
//! its interval (with jitter, so a thousand origins do not all connect in the same
//! millisecond), takes one of a bounded number of permits (so ten thousand origins cannot
//! exhaust file descriptors), opens one connection and records the result.

mod probe;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rand::RngExt;
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::metrics::{HealthMetrics, Metrics};
use crate::site::{HealthCheck, Origin, OriginGroup, Site, Target, site_name};

pub use probe::Prober;

/// Checks that may run at once, whatever the number of origins: each holds a socket.
pub const MAX_CONCURRENT_CHECKS: usize = 256;

/// What a checked origin is known to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// No check has completed yet: counted as up (SPEC §4).
    Unchecked,
    Up,
    Down,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unchecked => "unchecked",
            Self::Up => "up",
            Self::Down => "down",
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Up,
            2 => Self::Down,
            _ => Self::Unchecked,
        }
    }
}

/// The identity of a checked origin.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub site: String,
    pub group: String,
    pub target: Target,
    pub check: HealthCheck,
}

impl Key {
    /// The identity of `origin` of `group` in `site`, when it is checked: the group has a
    /// check and the origin can be answered (an origin with a port never is).
    pub fn of_origin(site: &Site, group: &OriginGroup, origin: &Origin) -> Option<Key> {
        let check = group.health_check.as_ref()?;
        if matches!(origin.target, Target::WithPort(_)) {
            return None;
        }
        Some(Key {
            site: site_name(&site.origin),
            group: group.name.clone(),
            target: origin.target.clone(),
            check: check.clone(),
        })
    }

    /// The checked origins of `group` in `site`: none when the group has no check.
    pub fn of_group<'a>(site: &'a Site, group: &'a OriginGroup) -> impl Iterator<Item = Key> + 'a {
        group
            .origins
            .iter()
            .filter_map(move |o| Key::of_origin(site, group, o))
    }

    /// Every checked origin of `site`.
    pub fn of_site(site: &Site) -> impl Iterator<Item = Key> + '_ {
        site.groups.iter().flat_map(move |g| Key::of_group(site, g))
    }
}

/// The health of one checked origin: read on the query path, written by its checker.
#[derive(Debug)]
pub struct OriginHealth {
    state: AtomicU8,
    /// The smoothed round-trip time of passing checks in microseconds, as published to
    /// the `nearest` policy; 0 until one is measured.
    rtt_us: AtomicU32,
    /// The weight the origin reported in the check's `weight_header`, or [`NO_WEIGHT`].
    reported_weight: AtomicU32,
    detail: Mutex<Detail>,
}

/// No weight reported: the configured one applies.
const NO_WEIGHT: u32 = u32::MAX;

/// How much each new round-trip time moves the moving average.
const RTT_SMOOTHING: f64 = 0.3;
/// The published round-trip time follows the moving average only once they differ by
/// more than this fraction: jitter of a few percent does not reorder origins (and with
/// `nearest`'s 10 % tie band, two close origins share by weight instead of flapping).
const RTT_HYSTERESIS: f64 = 0.05;

/// What the API shows beside the state.
#[derive(Clone, Debug)]
struct Detail {
    since: SystemTime,
    last_error: Option<String>,
    /// Results in a row that disagree with the state.
    streak: u32,
    /// The exponentially weighted moving average of passing checks' round-trip times, µs.
    rtt_average: Option<f64>,
    /// Why the last reported weight was ignored, so it is logged once, not every check.
    weight_error: Option<String>,
}

/// An origin's health as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct HealthView {
    pub state: State,
    /// RFC 3339, UTC.
    pub since: String,
    pub last_error: Option<String>,
    /// The smoothed check round-trip time, milliseconds; absent until measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// The weight the origin reported in the last check (`weight_header`), which
    /// replaces the configured one; absent when none is in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_weight: Option<u32>,
}

impl HealthView {
    /// An origin whose checker has not started yet.
    pub fn unchecked() -> Self {
        Self {
            state: State::Unchecked,
            since: rfc3339(SystemTime::now()),
            last_error: None,
            rtt_ms: None,
            reported_weight: None,
        }
    }
}

impl OriginHealth {
    fn new() -> Self {
        Self {
            state: AtomicU8::new(State::Unchecked as u8),
            rtt_us: AtomicU32::new(0),
            reported_weight: AtomicU32::new(NO_WEIGHT),
            detail: Mutex::new(Detail {
                since: SystemTime::now(),
                last_error: None,
                streak: 0,
                rtt_average: None,
                weight_error: None,
            }),
        }
    }

    /// True unless the origin is known to be down; this is all the query path asks.
    #[inline]
    pub fn is_up(&self) -> bool {
        self.state.load(Ordering::Relaxed) != State::Down as u8
    }

    /// The published round-trip time in microseconds; `None` until measured.
    #[inline]
    pub fn rtt_us(&self) -> Option<u32> {
        Some(self.rtt_us.load(Ordering::Relaxed)).filter(|&us| us > 0)
    }

    /// The origin's own weight from the last check, when it reported a good one.
    #[inline]
    pub fn reported_weight(&self) -> Option<u32> {
        Some(self.reported_weight.load(Ordering::Relaxed)).filter(|&w| w != NO_WEIGHT)
    }

    /// Adds the round-trip time of a passing check to the moving average, and publishes
    /// the average when it has moved more than [`RTT_HYSTERESIS`] from the published one.
    pub fn record_rtt(&self, rtt: Duration) {
        let sample = rtt.as_secs_f64() * 1e6;
        let mut detail = self.detail();
        let average = match detail.rtt_average {
            None => sample,
            Some(average) => average + RTT_SMOOTHING * (sample - average),
        };
        detail.rtt_average = Some(average);
        let published = f64::from(self.rtt_us.load(Ordering::Relaxed));
        if published == 0.0 || (average - published).abs() > RTT_HYSTERESIS * published {
            // At least 1 µs: 0 means "not measured".
            let us = average.round().clamp(1.0, f64::from(u32::MAX - 1)) as u32;
            self.rtt_us.store(us, Ordering::Relaxed);
        }
    }

    /// Sets the weight the origin reported in the last check, in force until the next:
    /// `None` (no header, a failed check) or a bad value restores the configured weight.
    /// Returns why a value was ignored the first time it is, for the log.
    pub fn record_weight(&self, reported: Option<Result<u32, String>>) -> Option<String> {
        let mut detail = self.detail();
        let (weight, error) = match reported {
            Some(Ok(weight)) => (weight, None),
            Some(Err(error)) => (NO_WEIGHT, Some(error)),
            None => (NO_WEIGHT, None),
        };
        self.reported_weight.store(weight, Ordering::Relaxed);
        let fresh = error.is_some() && error != detail.weight_error;
        detail.weight_error = error.clone();
        error.filter(|_| fresh)
    }

    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed))
    }

    fn detail(&self) -> MutexGuard<'_, Detail> {
        self.detail.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn view(&self) -> HealthView {
        let detail = self.detail();
        HealthView {
            state: self.state(),
            since: rfc3339(detail.since),
            last_error: detail.last_error.clone(),
            rtt_ms: self.rtt_us().map(|us| f64::from(us) / 1000.0),
            reported_weight: self.reported_weight(),
        }
    }

    /// Records one result; returns the new state when it changed. The first result sets
    /// the state at once; later ones move it after `fall` failures or `rise` passes in a
    /// row (SPEC §10).
    pub fn record(&self, result: Result<(), String>, fall: u32, rise: u32) -> Option<State> {
        let mut detail = self.detail();
        let state = self.state();
        let passed = result.is_ok();
        if let Err(error) = result {
            detail.last_error = Some(error);
        }
        let next = match (state, passed) {
            (State::Unchecked, true) => State::Up,
            (State::Unchecked, false) => State::Down,
            (State::Up, true) | (State::Down, false) => {
                detail.streak = 0;
                return None;
            }
            (State::Up, false) => {
                detail.streak += 1;
                if detail.streak < fall {
                    return None;
                }
                State::Down
            }
            (State::Down, true) => {
                detail.streak += 1;
                if detail.streak < rise {
                    return None;
                }
                State::Up
            }
        };
        detail.streak = 0;
        detail.since = SystemTime::now();
        self.state.store(next as u8, Ordering::Relaxed);
        Some(next)
    }
}

/// The health registry: the cells, and the checkers that keep them.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    checked: Mutex<HashMap<Key, Checked>>,
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    /// Where checkers run; none until [`Health::start`] (`lbdns check` never starts).
    runtime: Mutex<Option<Handle>>,
    prober: Mutex<Option<Arc<Prober>>>,
}

struct Checked {
    cell: Arc<OriginHealth>,
    checker: Option<JoinHandle<()>>,
    /// False once a reconcile found no configuration using it.
    in_use: bool,
}

impl Drop for Checked {
    fn drop(&mut self) {
        if let Some(checker) = &self.checker {
            checker.abort();
        }
    }
}

impl Default for Health {
    /// A registry of its own, for `lbdns check` and tests: cells, never checkers.
    fn default() -> Self {
        Self::new(Arc::new(Metrics::new()))
    }
}

impl Health {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            inner: Arc::new(Inner {
                checked: Mutex::new(HashMap::new()),
                permits: Arc::new(Semaphore::new(MAX_CONCURRENT_CHECKS)),
                metrics,
                runtime: Mutex::new(None),
                prober: Mutex::new(None),
            }),
        }
    }

    fn checked(&self) -> MutexGuard<'_, HashMap<Key, Checked>> {
        self.inner.checked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cell of `key`, created `unchecked` if new; the same cell as long as the key
    /// does not change.
    pub fn cell(&self, key: Key) -> Arc<OriginHealth> {
        self.checked()
            .entry(key)
            .or_insert_with(|| Checked {
                cell: Arc::new(OriginHealth::new()),
                checker: None,
                in_use: true,
            })
            .cell
            .clone()
    }

    /// The metrics the checkers and the compiled snapshot count into.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The fail-open counter of a group, for the query path to increment.
    pub fn failed_open_counter(
        &self,
        site: &str,
        group: &str,
    ) -> prometheus_client::metrics::counter::Counter {
        self.inner.metrics.failed_open_for(site, group)
    }

    /// A fallback counter of a group (see [`crate::metrics::Metrics::fallback_for`]).
    pub fn fallback_counter(
        &self,
        site: &str,
        group: &str,
        kind: &str,
        to: &str,
    ) -> prometheus_client::metrics::counter::Counter {
        self.inner.metrics.fallback_for(site, group, kind, to)
    }

    /// The health of `key` if it is checked.
    pub fn view(&self, key: &Key) -> Option<HealthView> {
        self.checked().get(key).map(|c| c.cell.view())
    }

    /// True when every origin of `keys` has a first result.
    pub fn all_checked(&self, keys: impl IntoIterator<Item = Key>) -> bool {
        let checked = self.checked();
        keys.into_iter().all(|key| {
            checked
                .get(&key)
                .is_some_and(|c| c.cell.state() != State::Unchecked)
        })
    }

    /// Starts checking on `runtime`, with `prober` to run the checks.
    pub fn start(&self, runtime: Handle, prober: Prober) {
        *self.inner.runtime.lock().unwrap_or_else(|p| p.into_inner()) = Some(runtime);
        *self.inner.prober.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(prober));
        let keys: Vec<Key> = self
            .checked()
            .iter()
            .filter(|(_, c)| c.in_use)
            .map(|(k, _)| k.clone())
            .collect();
        self.reconcile(keys);
    }

    /// Makes `keys` the checked origins: checkers start for new ones, and stop (with
    /// their cells forgotten) for the ones no longer listed.
    pub fn reconcile(&self, keys: impl IntoIterator<Item = Key>) {
        let runtime = self
            .inner
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let prober = self
            .inner
            .prober
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let wanted: std::collections::HashSet<Key> = keys.into_iter().collect();
        let mut checked = self.checked();
        checked.retain(|key, c| {
            let keep = wanted.contains(key);
            if !keep {
                self.inner
                    .metrics
                    .forget_origin(&key.site, &key.group, &key.target.to_string());
            }
            c.in_use = keep;
            keep
        });
        for key in wanted {
            let entry = checked.entry(key.clone()).or_insert_with(|| Checked {
                cell: Arc::new(OriginHealth::new()),
                checker: None,
                in_use: true,
            });
            if entry.checker.is_none()
                && let (Some(runtime), Some(prober)) = (&runtime, &prober)
            {
                let metrics =
                    self.inner
                        .metrics
                        .origin(&key.site, &key.group, &key.target.to_string());
                let checker = Checker {
                    key,
                    cell: entry.cell.clone(),
                    permits: self.inner.permits.clone(),
                    prober: prober.clone(),
                    metrics,
                };
                entry.checker = Some(runtime.spawn(checker.run()));
            }
        }
    }
}

/// One origin's checker.
struct Checker {
    key: Key,
    cell: Arc<OriginHealth>,
    permits: Arc<Semaphore>,
    prober: Arc<Prober>,
    metrics: HealthMetrics,
}

impl Checker {
    async fn run(self) {
        let check = &self.key.check;
        // The first check soon, so a new task does not wait an interval to deploy; spread
        // over a second so a reload of many origins does not connect to all at once.
        let first = check.interval.min(Duration::from_secs(1));
        let delay = first.mul_f64(rand::rng().random_range(0.0..1.0));
        tokio::time::sleep(delay).await;
        let mut next = tokio::time::Instant::now();
        loop {
            let (result, rtt) = {
                let Ok(_permit) = self.permits.acquire().await else {
                    return;
                };
                let started = tokio::time::Instant::now();
                let result = match tokio::time::timeout(
                    check.timeout,
                    self.prober.probe(&self.key.target, check),
                )
                .await
                {
                    Ok(result) => result,
                    Err(_) => Err(format!("no answer within {:?}", check.timeout)),
                };
                (result, started.elapsed())
            };
            let (result, reported) = match result {
                Ok(reported) => {
                    self.cell.record_rtt(rtt);
                    self.metrics.rtt(rtt);
                    (Ok(()), reported)
                }
                Err(error) => (Err(error), None),
            };
            if let Some(reason) = self.cell.record_weight(reported) {
                let origin = self.key.target.to_string();
                let (site, group) = (&self.key.site, &self.key.group);
                warn!(%site, %group, %origin, %reason, "reported weight ignored; the configured weight applies");
            }
            self.metrics.checked(result.is_ok());
            let error = result.as_ref().err().cloned();
            let before = self.cell.state();
            if let Some(state) = self.cell.record(result, check.fall, check.rise) {
                self.metrics.transition(state == State::Up);
                let origin = self.key.target.to_string();
                let (site, group) = (&self.key.site, &self.key.group);
                match state {
                    State::Down => {
                        warn!(%site, %group, %origin, from = before.as_str(), to = "down", reason = error.as_deref().unwrap_or("check failed"), "origin down")
                    }
                    _ => {
                        info!(%site, %group, %origin, from = before.as_str(), to = "up", "origin up")
                    }
                }
            }
            // ±10 % jitter keeps checkers that started together from staying in step.
            let jitter = rand::rng().random_range(0.9..1.1);
            next += check.interval.mul_f64(jitter);
            let now = tokio::time::Instant::now();
            if next < now {
                next = now;
            }
            tokio::time::sleep_until(next).await;
        }
    }
}

/// `2026-11-28T16:41:11Z`.
fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_result_sets_the_state_then_fall_and_rise_move_it() {
        let cell = OriginHealth::new();
        assert!(cell.is_up(), "unchecked counts as up");
        assert_eq!(cell.record(Err("refused".into()), 3, 2), Some(State::Down));
        assert!(!cell.is_up());
        assert_eq!(cell.record(Ok(()), 3, 2), None, "one pass of rise 2");
        assert_eq!(
            cell.record(Err("x".into()), 3, 2),
            None,
            "a failure resets the streak"
        );
        assert_eq!(cell.record(Ok(()), 3, 2), None);
        assert_eq!(cell.record(Ok(()), 3, 2), Some(State::Up));
        assert_eq!(cell.record(Err("a".into()), 3, 2), None);
        assert_eq!(cell.record(Err("b".into()), 3, 2), None);
        assert_eq!(cell.record(Err("c".into()), 3, 2), Some(State::Down));
        assert_eq!(cell.view().last_error.as_deref(), Some("c"));
    }

    #[test]
    fn round_trip_times_are_smoothed_and_published_past_a_dead_band() {
        let cell = OriginHealth::new();
        assert_eq!(cell.rtt_us(), None);
        cell.record_rtt(Duration::from_micros(10_000));
        assert_eq!(cell.rtt_us(), Some(10_000));
        // 11 ms moves the average to 10.3 ms (0.3 of the way): 3 %, not published.
        cell.record_rtt(Duration::from_micros(11_000));
        assert_eq!(cell.rtt_us(), Some(10_000));
        // 12 ms: 10.81 ms, 8.1 % past the published 10 ms: published.
        cell.record_rtt(Duration::from_micros(12_000));
        assert_eq!(cell.rtt_us(), Some(10_810));
        assert_eq!(cell.view().rtt_ms, Some(10.81));
    }

    #[test]
    fn a_reported_weight_holds_until_the_next_check_and_a_bad_one_is_logged_once() {
        let cell = OriginHealth::new();
        assert_eq!(cell.record_weight(Some(Ok(40))), None);
        assert_eq!(cell.reported_weight(), Some(40));
        assert_eq!(cell.view().reported_weight, Some(40));
        let bad = || Some(Err("x-lb-weight: \"lots\" is not a weight".to_owned()));
        assert!(cell.record_weight(bad()).is_some());
        assert_eq!(cell.reported_weight(), None);
        assert_eq!(cell.record_weight(bad()), None, "the same reason again");
        assert_eq!(cell.record_weight(Some(Ok(0))), None);
        assert_eq!(cell.reported_weight(), Some(0));
        assert_eq!(cell.record_weight(None), None);
        assert_eq!(cell.reported_weight(), None);
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_883_671);
        assert_eq!(rfc3339(t), "2026-11-28T16:34:31Z");
    }
}
