//! The DNS front end: [`respond`] answers a query's bytes from the current snapshot, and
//! [`Handler`] is what the UDP and TCP loops call: it loads the snapshot, draws from a
//! per-thread RNG and counts the outcome in the metrics (SPEC §4 ECS and §9).
//!
//! Malformed queries are counted by reason in `lbdns_malformed_queries_total` and logged
//! through the throttle, a few lines a second.

pub mod notify;
pub mod respond;
pub mod transfer;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::ResponseCode;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tracing::{info, warn};

use crate::metrics::{Malformed, Metrics};
use crate::rrl::{RateLimiter, Verdict};
use crate::snapshot::Snapshot;
pub use respond::{Outcome, Transport, respond};

/// The UDP payload size lbdns offers and honours (the DNS Flag Day 2020 value).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// The largest DNS message (a TCP reply): the size of a buffer every answer fits.
pub const MAX_MESSAGE: usize = u16::MAX as usize;

thread_local! {
    /// Per-thread randomness for weighted draws: no lock, no shared state.
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_rng(&mut rand::rng()));
}

/// Answers queries from the current snapshot and counts what it did.
pub struct Handler {
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    /// Response rate limiting over UDP, when configured.
    rate_limit: Option<RateLimiter>,
}

impl Handler {
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, metrics: Arc<Metrics>) -> Self {
        Self {
            snapshot,
            metrics,
            rate_limit: None,
        }
    }

    /// This handler with UDP responses limited by `rate_limit`.
    pub fn with_rate_limit(self, rate_limit: Option<RateLimiter>) -> Self {
        Self { rate_limit, ..self }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Answers the query `packet` from `src` into `out`; returns the response's length,
    /// 0 when nothing is to be sent (shorter than a header, or itself a response).
    pub fn answer(
        &self,
        packet: &[u8],
        src: SocketAddr,
        transport: Transport,
        out: &mut [u8],
    ) -> usize {
        let snapshot = self.snapshot.load();
        let outcome =
            RNG.with_borrow_mut(|rng| respond(&snapshot, packet, src.ip(), transport, rng, out));
        if outcome.ecs_malformed {
            self.metrics.ecs_malformed.inc();
        }
        if let Some(why) = outcome.malformed {
            self.malformed(why, src);
        }
        if let Some(rcode) = outcome.rcode {
            self.metrics
                .response(<ResponseCode as From<u16>>::from(rcode));
        }
        match (&self.rate_limit, transport) {
            (Some(limiter), Transport::Udp) if outcome.len > 0 => match limiter.check(src.ip()) {
                Verdict::Send => outcome.len,
                Verdict::Slip => {
                    self.metrics.rrl_slipped.inc();
                    crate::wire::truncate_reply(&mut out[..outcome.len])
                }
                Verdict::Drop => {
                    self.metrics.rrl_dropped.inc();
                    0
                }
            },
            _ => outcome.len,
        }
    }

    /// When `packet` asks for a zone transfer (TCP only), appends the framed response
    /// messages to `out` and returns true; false for any other query.
    pub fn transfer(&self, packet: &[u8], src: SocketAddr, out: &mut Vec<u8>) -> bool {
        if !transfer::may_ask_for_transfer(packet) {
            return false;
        }
        let snapshot = self.snapshot.load();
        let Some(outcome) = transfer::transfer(&snapshot, packet, src.ip(), out) else {
            return false;
        };
        if let Some(rcode) = outcome.rcode {
            self.metrics
                .response(<ResponseCode as From<u16>>::from(rcode));
        }
        if outcome.rcode == Some(0) {
            self.metrics.transfers_sent.inc();
            info!(%src, "zone transferred");
        } else {
            self.metrics.transfers_refused.inc();
            if self.metrics.warnings.allow() {
                warn!(%src, rcode = outcome.rcode, "zone transfer refused");
            }
        }
        true
    }

    /// Counts a malformed query and logs it, at most a few lines a second.
    fn malformed(&self, why: Malformed, src: SocketAddr) {
        self.metrics.malformed(why);
        if self.metrics.warnings.allow() {
            warn!(%src, reason = why.label(), "malformed query");
        }
    }
}
