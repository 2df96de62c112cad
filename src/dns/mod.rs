//! The DNS front end: [`respond`] answers a query's bytes from the current snapshot, and
//! [`Handler`] is what the UDP and TCP loops call: it loads the snapshot, draws from a
//! per-thread RNG and counts the outcome in the metrics (SPEC §4 ECS and §9).
//!
//! Malformed queries are counted by reason in `lbdns_malformed_queries_total` and logged
//! through the throttle, a few lines a second.

pub mod notify;
pub mod respond;
pub mod signed;
pub mod transfer;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::ResponseCode;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tracing::{info, warn};

use crate::metrics::{Malformed, Metrics};
use crate::rrl::{RateLimiter, Verdict};
use crate::snapshot::Snapshot;
pub use respond::{Outcome, Transport, respond};
pub use transfer::Transfer;

/// The UDP payload size lbdns offers and honours (the DNS Flag Day 2020 value).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// The largest DNS message (a TCP reply): the size of a buffer every answer fits.
pub const MAX_MESSAGE: usize = u16::MAX as usize;

/// Extended DNS Error INFO-CODEs lbdns sends (RFC 8914 §4).
pub mod ede {
    /// A zone transfer to a source that is not a listed secondary.
    pub const PROHIBITED: u16 = 18;
    /// A query for a name in no zone served here, or a transfer of one.
    pub const NOT_AUTHORITATIVE: u16 = 20;
}

/// The server's identifier for NSID (RFC 5001), set once at start (`serve --nsid`): an
/// anycast fleet's nodes say which one answered. Process-wide so that [`respond`] keeps
/// its signature and reads it without a lock.
static NSID: OnceLock<Nsid> = OnceLock::new();

/// An NSID payload: `serve --nsid STRING`, or `--nsid hex:0A1B...` for any bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nsid(pub Box<[u8]>);

/// The longest NSID lbdns sends: it takes room in every reply that asks for it.
const NSID_MAX: usize = 128;

impl std::str::FromStr for Nsid {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bytes = match text.strip_prefix("hex:") {
            Some(hex) => data_encoding::HEXLOWER_PERMISSIVE
                .decode(hex.as_bytes())
                .map_err(|e| format!("--nsid hex:{hex}: not hexadecimal bytes ({e})"))?,
            None => text.as_bytes().to_vec(),
        };
        if bytes.is_empty() || bytes.len() > NSID_MAX {
            return Err(format!(
                "--nsid: {} bytes; give 1 to {NSID_MAX}",
                bytes.len()
            ));
        }
        Ok(Self(bytes.into()))
    }
}

/// Sets the NSID replies carry when a query asks for it; the first call wins.
pub fn set_nsid(nsid: Nsid) {
    let _ = NSID.set(nsid);
}

/// The NSID set with [`set_nsid`], if any.
pub fn nsid() -> Option<&'static [u8]> {
    NSID.get().map(|nsid| &*nsid.0)
}

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
        // A NOTIFY for a secondary zone, and queries in an expired one (SPEC §13): both
        // rare, and checked with a byte compare and an atomic load otherwise.
        if let Some(len) = crate::secondary::notified(packet, src.ip(), out)
            .or_else(|| crate::secondary::servfail_if_expired(packet, out))
        {
            let rcode = <ResponseCode as From<u16>>::from(u16::from(out[3] & 0xF));
            // Only a NOTIFY refused for its signature is answered NOTAUTH here.
            if rcode == ResponseCode::NotAuth {
                self.metrics.tsig_refused.inc();
            }
            self.metrics.response(rcode);
            return len;
        }
        let snapshot = self.snapshot.load();
        // A query signed with TSIG while a secondary must sign: rare, and one relaxed
        // load otherwise.
        if let Some(signed) =
            RNG.with_borrow_mut(|rng| signed::answer(&snapshot, packet, src, transport, rng, out))
        {
            if let Some(why) = signed.refused {
                self.metrics.tsig_refused.inc();
                self.metrics.response(ResponseCode::NotAuth);
                if self.metrics.warnings.allow() {
                    warn!(%src, "signed query refused: {why}");
                }
            }
            return signed.len;
        }
        let outcome =
            RNG.with_borrow_mut(|rng| respond(&snapshot, packet, src.ip(), transport, rng, out));
        if outcome.len > 0 {
            let qtype = crate::wire::question_type(packet);
            self.metrics.query(qtype, transport == Transport::Tcp);
        }
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

    /// The snapshot being served, held for as long as a zone transfer takes.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// When `packet` asks for a zone transfer (TCP only), what it gets from `snapshot`
    /// (see [`transfer::transfer`]); `None` for any other query. A refusal is counted here,
    /// a transfer when it ends ([`Handler::transfer_ended`]).
    pub fn transfer<'a>(
        &self,
        snapshot: &'a Snapshot,
        packet: &'a [u8],
        src: SocketAddr,
        buf: &mut [u8],
    ) -> Option<Transfer<'a>> {
        if !transfer::may_ask_for_transfer(packet) {
            return None;
        }
        let transfer = transfer::transfer(snapshot, packet, src.ip(), buf)?;
        match transfer {
            Transfer::Refused { rcode, tsig, .. } => {
                self.metrics
                    .response(<ResponseCode as From<u16>>::from(rcode));
                self.metrics.transfers_refused.inc();
                if tsig.is_some() {
                    self.metrics.tsig_refused.inc();
                }
                if self.metrics.warnings.allow() {
                    match tsig {
                        Some(why) => warn!(%src, rcode, "zone transfer refused: {why}"),
                        None => warn!(%src, rcode, "zone transfer refused"),
                    }
                }
            }
            Transfer::Zone(_) => self.metrics.response(ResponseCode::NoError),
        }
        Some(transfer)
    }

    /// Counts a zone transfer that ended: sent when its closing SOA was written, aborted
    /// when the connection was cut (or timed out) before.
    pub fn transfer_ended(&self, src: SocketAddr, complete: bool, bytes: u64, took: Duration) {
        if complete {
            self.metrics.transfers_sent.inc();
            info!(%src, bytes, ?took, "zone transferred");
        } else {
            self.metrics.transfers_aborted.inc();
            warn!(%src, bytes, ?took, "zone transfer cut before its end");
        }
    }

    /// Counts a malformed query and logs it, at most a few lines a second.
    fn malformed(&self, why: Malformed, src: SocketAddr) {
        self.metrics.malformed(why);
        if self.metrics.warnings.allow() {
            warn!(%src, reason = why.label(), "malformed query");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsid_is_text_or_hex_bytes() {
        assert_eq!("node-1".parse(), Ok(Nsid(b"node-1".to_vec().into())));
        assert_eq!("hex:00fF10".parse(), Ok(Nsid(vec![0, 0xff, 0x10].into())));
        assert!(
            "hex:0g"
                .parse::<Nsid>()
                .unwrap_err()
                .contains("not hexadecimal")
        );
        assert!("".parse::<Nsid>().is_err());
        assert!("x".repeat(129).parse::<Nsid>().is_err());
    }
}
