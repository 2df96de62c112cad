//! Log throttling: problems that a client can cause once per packet or per connection are
//! logged at most a few lines a second, and the lines held back are counted, in
//! `lbdns_log_lines_suppressed_total` and in a summary line a second after the first.
//!
//! A fixed one-second window over three atomics, rather than a crate (`governor` is not in
//! the dependency tree): the hot path is one clock read and one `fetch_add`, no lock, and
//! the suppressed count it keeps is exactly what the summary line needs.
//!
//! ```
//! # use lbdns::throttle::Throttle;
//! # use prometheus_client::metrics::counter::Counter;
//! let throttle = Throttle::new(2, Counter::default());
//! assert!(throttle.allow() && throttle.allow());
//! assert!(!throttle.allow());
//! assert_eq!(throttle.take_suppressed(), 1);
//! ```

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;

/// Lines per second per throttle: enough to see what is going on, too few to fill a disk.
pub const LINES_PER_SECOND: u32 = 5;

/// Allows `per_second` log lines in each second and counts the rest.
#[derive(Debug)]
pub struct Throttle {
    per_second: u32,
    start: Instant,
    /// The second (since `start`) the count in `used` belongs to.
    window: AtomicU64,
    /// Lines asked for in the current window, allowed or not.
    used: AtomicU32,
    /// Lines suppressed since the last [`Throttle::take_suppressed`].
    pending: AtomicU64,
    /// Every line suppressed, for `/metrics`.
    suppressed: Counter,
    /// Woken when a line is suppressed with none pending, for the summary.
    held: tokio::sync::Notify,
}

impl Throttle {
    pub fn new(per_second: u32, suppressed: Counter) -> Self {
        Self {
            per_second,
            start: Instant::now(),
            window: AtomicU64::new(0),
            used: AtomicU32::new(0),
            pending: AtomicU64::new(0),
            suppressed,
            held: tokio::sync::Notify::new(),
        }
    }

    /// True when a line may be written now; false counts it as suppressed.
    pub fn allow(&self) -> bool {
        let now = self.start.elapsed().as_secs();
        let window = self.window.load(Relaxed);
        if now != window
            && self
                .window
                .compare_exchange(window, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.used.store(0, Relaxed);
        }
        // Saturating, so a flood can never wrap the count back into the allowance.
        let used = self
            .used
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_add(1)))
            .unwrap_or(u32::MAX);
        if used < self.per_second {
            return true;
        }
        if self.pending.fetch_add(1, Relaxed) == 0 {
            self.held.notify_one();
        }
        self.suppressed.inc();
        false
    }

    /// Completes once a line has been suppressed since the last [`Throttle::take_suppressed`].
    pub async fn held_back(&self) {
        if self.pending.load(Relaxed) == 0 {
            self.held.notified().await;
        }
    }

    /// The lines suppressed since the last call, for a summary line.
    pub fn take_suppressed(&self) -> u64 {
        self.pending.swap(0, Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_few_a_second_and_counts_the_rest() {
        let counter = Counter::default();
        let throttle = Throttle::new(3, counter.clone());
        let allowed = (0..1000).filter(|_| throttle.allow()).count();
        // The test may straddle a second boundary: one more window at most.
        assert!((3..=6).contains(&allowed), "{allowed}");
        assert_eq!(counter.get(), 1000 - allowed as u64);
        assert_eq!(throttle.take_suppressed(), 1000 - allowed as u64);
        assert_eq!(throttle.take_suppressed(), 0);
    }
}
