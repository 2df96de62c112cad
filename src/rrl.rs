//! Response rate limiting for UDP, in the spirit of BIND's and Knot's RRL: a source
//! prefix (IPv4 /24, IPv6 /56) gets at most `rate` responses a second; past that, every
//! `slip`-th response goes out truncated (TC, no records: a real client retries over
//! TCP, which cannot be spoofed) and the rest are dropped. It blunts reflection attacks,
//! where spoofed queries turn lbdns into an amplifier aimed at a victim. Off by default.
//!
//! The table is a fixed array of atomic buckets, indexed by a keyed hash of the prefix:
//! no lock and no allocation per query. Two prefixes that share a bucket share a budget,
//! which only ever limits early, never lets more through.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ipnet::IpNet;

/// Response rate limiting settings (`lbdns serve` flags).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RrlArgs {
    /// Responses a second allowed to one source prefix (IPv4 /24, IPv6 /56) over UDP;
    /// 0 turns rate limiting off.
    #[arg(long, value_name = "N", default_value = "0")]
    pub rrl_rate: u32,
    /// Past the rate, every Nth response goes out truncated (TC) instead of dropped, so a
    /// real client can retry over TCP; 0 drops them all.
    #[arg(long, value_name = "N", default_value = "2")]
    pub rrl_slip: u32,
    /// A source prefix never limited, e.g. a monitoring network (repeatable).
    #[arg(long, value_name = "PREFIX")]
    pub rrl_exempt: Vec<IpNet>,
}

/// What to do with a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Send it truncated: header and question, TC set.
    Slip,
    Drop,
}

/// Buckets in the table: 2^16 of 8 bytes, half a megabyte.
const BUCKETS: usize = 1 << 16;

pub struct RateLimiter {
    rate: u32,
    slip: u32,
    exempt: Vec<IpNet>,
    /// Per bucket: the second it counts (high 32 bits) and the responses in it (low).
    buckets: Box<[AtomicU64]>,
    hasher: foldhash::fast::RandomState,
    started: Instant,
}

impl RateLimiter {
    /// The limiter `args` ask for; `None` when rate limiting is off.
    pub fn new(args: &RrlArgs) -> Option<Self> {
        (args.rrl_rate > 0).then(|| Self {
            rate: args.rrl_rate,
            slip: args.rrl_slip,
            exempt: args.rrl_exempt.clone(),
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            hasher: foldhash::fast::RandomState::default(),
            started: Instant::now(),
        })
    }

    /// Counts a response to `source` now and says whether it may go out.
    pub fn check(&self, source: IpAddr) -> Verdict {
        let second = self.started.elapsed().as_secs() as u32;
        self.check_at(source, second)
    }

    fn check_at(&self, source: IpAddr, second: u32) -> Verdict {
        let source = source.to_canonical();
        if self.exempt.iter().any(|net| net.contains(&source)) {
            return Verdict::Send;
        }
        let bucket = &self.buckets[self.bucket_of(source)];
        let counted = bucket.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |packed| {
            let (at, count) = ((packed >> 32) as u32, packed as u32);
            let count = if at == second {
                count.saturating_add(1)
            } else {
                1
            };
            Some((u64::from(second) << 32) | u64::from(count))
        });
        let packed = counted.unwrap_or_else(|previous| previous);
        let count = match (packed >> 32) as u32 == second {
            true => (packed as u32).saturating_add(1),
            false => 1,
        };
        if count <= self.rate {
            return Verdict::Send;
        }
        let over = count - self.rate;
        match self.slip {
            0 => Verdict::Drop,
            slip if over.is_multiple_of(slip) => Verdict::Slip,
            _ => Verdict::Drop,
        }
    }

    fn bucket_of(&self, source: IpAddr) -> usize {
        use std::hash::BuildHasher;
        let prefix: u128 = match source {
            IpAddr::V4(v4) => u128::from(u32::from(v4) & 0xFFFF_FF00),
            // Tagged so an IPv6 prefix never hashes like an IPv4 one.
            IpAddr::V6(v6) => (u128::from(v6) & !((1u128 << 72) - 1)) | 1,
        };
        self.hasher.hash_one(prefix) as usize & (BUCKETS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: u32, slip: u32, exempt: &[&str]) -> RateLimiter {
        RateLimiter::new(&RrlArgs {
            rrl_rate: rate,
            rrl_slip: slip,
            rrl_exempt: exempt.iter().map(|e| e.parse().unwrap()).collect(),
        })
        .unwrap()
    }

    fn verdicts(l: &RateLimiter, source: &str, second: u32, n: usize) -> Vec<Verdict> {
        let source: IpAddr = source.parse().unwrap();
        (0..n).map(|_| l.check_at(source, second)).collect()
    }

    #[test]
    fn a_prefix_gets_its_rate_then_every_slip_th_response_truncated() {
        let l = limiter(5, 2, &[]);
        let got = verdicts(&l, "192.0.2.1", 7, 11);
        use Verdict::*;
        assert_eq!(
            got,
            [
                Send, Send, Send, Send, Send, Drop, Slip, Drop, Slip, Drop, Slip
            ]
        );
        // The same /24 shares the budget; the next second starts afresh.
        assert_eq!(verdicts(&l, "192.0.2.200", 7, 1), [Drop]);
        assert_eq!(verdicts(&l, "192.0.2.1", 8, 5), [Send; 5]);
    }

    #[test]
    fn other_prefixes_and_exempt_ones_are_not_limited() {
        let l = limiter(3, 0, &["198.51.100.0/24"]);
        assert_eq!(verdicts(&l, "192.0.2.1", 1, 5)[3..], [Verdict::Drop; 2]);
        // Another /24, in another bucket (the hash is keyed per process, so look for one).
        let limited = l.bucket_of("192.0.2.1".parse().unwrap());
        let other = (3..=255u8)
            .map(|b| format!("192.0.{b}.1"))
            .find(|a| l.bucket_of(a.parse().unwrap()) != limited)
            .unwrap();
        assert_eq!(verdicts(&l, &other, 1, 3), [Verdict::Send; 3]);
        assert_eq!(verdicts(&l, "198.51.100.9", 1, 50), [Verdict::Send; 50]);
        // IPv6 by /56: the same /56 shares the budget, another /56 is another client
        // (in another bucket: look for one, as above; with one bucket for every IPv6
        // source there is none, and that is a failure, not a skipped check).
        assert_eq!(verdicts(&l, "2001:db8:0:100::1", 1, 4)[3], Verdict::Drop);
        assert_eq!(verdicts(&l, "2001:db8:0:1ff::2", 1, 1), [Verdict::Drop]);
        let limited = l.bucket_of("2001:db8:0:100::1".parse().unwrap());
        let other = (2..=255u16)
            .map(|n| format!("2001:db8:0:{n:x}00::1"))
            .find(|a| l.bucket_of(a.parse().unwrap()) != limited)
            .expect("another /56 in another bucket");
        assert_eq!(verdicts(&l, &other, 1, 3), [Verdict::Send; 3]);
    }

    #[test]
    fn off_unless_a_rate_is_given() {
        assert!(RateLimiter::new(&RrlArgs::default()).is_none());
    }
}
