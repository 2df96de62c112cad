//! NOTIFY (RFC 1996) to a zone's secondaries when a reload changes its SOA serial, so
//! they transfer at once instead of at their next refresh.
//!
//! A NOTIFY to a secondary listed with a TSIG key is signed with it (SPEC §13).
//!
//! A secondary accepts a NOTIFY only from an address it knows as the zone's primary (BIND:
//! "refused notify from non-primary"), so it leaves from the address lbdns answers on:
//! `--notify-source` when given for the secondary's family, else the first `--listen`
//! address of that family; the kernel picks only when lbdns listens on a wildcard address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_proto::rr::Name;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::wire::{CLASS_IN, rtype};

/// How long to wait for each acknowledgement, and how often to send (RFC 1996 §3.6
/// retransmits; secondaries also poll on their own, so a few tries are enough).
const WAIT: Duration = Duration::from_secs(1);
const TRIES: usize = 3;

/// The addresses NOTIFY leaves from, one per family; `None`: the kernel picks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sources {
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
}

impl Sources {
    /// For each family, the first of `given` (`--notify-source`), else the first of
    /// `listen` that is not a wildcard address.
    pub fn new(given: &[IpAddr], listen: &[SocketAddr]) -> Self {
        let specific = listen
            .iter()
            .map(SocketAddr::ip)
            .filter(|ip| !ip.is_unspecified());
        let mut sources = Self::default();
        for ip in given.iter().copied().chain(specific) {
            match ip {
                IpAddr::V4(v4) => {
                    sources.v4.get_or_insert(v4);
                }
                IpAddr::V6(v6) => {
                    sources.v6.get_or_insert(v6);
                }
            }
        }
        sources
    }

    /// [`Sources::new`], once each of `given` is checked to be an address of this host
    /// (one a socket can be bound to), so a typo is told at start, not at the next NOTIFY.
    pub fn given(given: &[IpAddr], listen: &[SocketAddr]) -> Result<Self, String> {
        for ip in given {
            UdpSocket::bind((*ip, 0))
                .map_err(|e| format!("--notify-source {ip}: cannot send from it: {e}"))?;
        }
        Ok(Self::new(given, listen))
    }

    /// The local address to send to `target` from (port 0: any free port).
    fn for_target(&self, target: SocketAddr) -> SocketAddr {
        match target {
            SocketAddr::V4(_) => (self.v4.unwrap_or(Ipv4Addr::UNSPECIFIED), 0).into(),
            SocketAddr::V6(_) => (self.v6.unwrap_or(Ipv6Addr::UNSPECIFIED), 0).into(),
        }
    }
}

/// Set once when `serve` starts: the store that sends NOTIFY after a reload knows
/// nothing of sockets, and every reload of the process uses the same addresses.
static SOURCES: OnceLock<Sources> = OnceLock::new();

/// Sets the addresses NOTIFY leaves from (see [`Sources::new`]); the first call wins.
pub fn set_sources(sources: Sources) {
    if SOURCES.set(sources).is_ok() {
        info!(?sources, "NOTIFY source addresses");
    }
}

/// A secondary to notify, and the name of the key (`keys/tsig/<name>.yaml`) to sign with.
pub type Target = (SocketAddr, Option<String>);

/// Notifies each zone's `targets` that it changed, on one thread for the whole batch: the
/// caller (the store's writer) never waits on the network, and a reload that changes
/// thousands of zones starts one thread, not thousands.
pub fn spawn(changed: Vec<(Name, Vec<Target>)>, metrics: Arc<Metrics>) {
    if changed.iter().all(|(_, targets)| targets.is_empty()) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("lbdns-notify".into())
        .spawn(move || {
            let sources = SOURCES.get().copied().unwrap_or_default();
            for (origin, targets) in changed {
                for (target, tsig) in targets {
                    let source = sources.for_target(target);
                    let key = match tsig.as_deref().map(|name| (name, crate::tsig::ring_key(name))) {
                        Some((name, None)) => {
                            metrics.notify_unacknowledged.inc();
                            warn!(zone = %origin, %target, "NOTIFY not sent: the TSIG key {name} is not loaded");
                            continue;
                        }
                        Some((_, key)) => key,
                        None => None,
                    };
                    match notify(&origin, source, target, key.as_ref()) {
                        Ok(()) => {
                            metrics.notify_acknowledged.inc();
                            info!(zone = %origin, %target, "NOTIFY acknowledged");
                        }
                        Err(why) => {
                            metrics.notify_unacknowledged.inc();
                            warn!(zone = %origin, %target, %source, "NOTIFY not acknowledged: {why}");
                        }
                    }
                }
            }
        });
    if let Err(error) = spawned {
        warn!(%error, "cannot start a thread to send NOTIFY");
    }
}

/// Sends NOTIFY for `origin` from `source` to `target` (signed with `key`) until it is
/// acknowledged, a few times.
fn notify(
    origin: &Name,
    source: SocketAddr,
    target: SocketAddr,
    key: Option<&crate::tsig::Key>,
) -> Result<(), String> {
    let socket = UdpSocket::bind(source).map_err(|e| format!("cannot bind {source}: {e}"))?;
    socket.connect(target).map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(WAIT))
        .map_err(|e| e.to_string())?;
    let id: u16 = rand::random();
    let mut message = message(origin, id);
    // The acknowledgement's signature is not checked: it only stops the retries.
    if let Some(key) = key {
        key.sign(&mut message, crate::dns::transfer::unix_now());
    }
    let mut reply = [0u8; 512];
    let mut last = String::from("no reply");
    for _ in 0..TRIES {
        if let Err(e) = socket.send(&message) {
            last = e.to_string();
            continue;
        }
        // Read until this NOTIFY's response (same ID, QR and opcode 4) or the timeout;
        // anything else is skipped.
        loop {
            match socket.recv(&mut reply) {
                Ok(n) if n >= 12 && reply[..2] == id.to_be_bytes() && reply[2] & 0xF8 == 0xA0 => {
                    return match reply[3] & 0xF {
                        0 => Ok(()),
                        rcode => Err(format!("answered with RCODE {rcode}")),
                    };
                }
                Ok(_) => {}
                Err(e) => {
                    last = e.to_string();
                    break;
                }
            }
        }
    }
    Err(last)
}

/// A NOTIFY query: opcode 4, AA set, one question `origin SOA IN` (RFC 1996 §3.7).
fn message(origin: &Name, id: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x24, 0x00]); // opcode NOTIFY (4) << 3, AA
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in origin.iter() {
        m.push(label.len() as u8);
        m.extend_from_slice(label);
    }
    m.push(0);
    m.extend_from_slice(&rtype::SOA.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notify_is_acknowledged_by_a_matching_response_only() {
        let secondary = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = secondary.local_addr().unwrap();
        let origin = Name::from_ascii("example.com.").unwrap();
        let answering = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (n, from) = secondary.recv_from(&mut buf).unwrap();
            assert_eq!(from.ip(), std::net::Ipv4Addr::LOCALHOST);
            let query = buf[..n].to_vec();
            // First an unrelated datagram, then the acknowledgement.
            secondary.send_to(&[0u8; 12], from).unwrap();
            let mut ack = query.clone();
            ack[2] |= 0x80;
            secondary.send_to(&ack, from).unwrap();
            query
        });
        let source = Sources::new(&[], &["127.0.0.1:53".parse().unwrap()]).for_target(target);
        assert_eq!(notify(&origin, source, target, None), Ok(()));
        let query = answering.join().unwrap();
        assert_eq!(query[2], 0x24, "opcode NOTIFY with AA");
        assert_eq!(&query[4..6], &[0, 1], "one question");
        assert!(query.ends_with(b"\x07example\x03com\x00\x00\x06\x00\x01"));
    }

    #[test]
    fn notify_leaves_from_the_given_source_or_a_listen_address_of_the_family() {
        let listen: Vec<SocketAddr> = ["0.0.0.0:53", "192.0.2.1:53", "[2001:db8::1]:53"]
            .map(|a| a.parse().unwrap())
            .to_vec();
        let v4: SocketAddr = "198.51.100.1:53".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::2]:53".parse().unwrap();
        let sources = Sources::new(&[], &listen);
        assert_eq!(sources.for_target(v4), "192.0.2.1:0".parse().unwrap());
        assert_eq!(sources.for_target(v6), "[2001:db8::1]:0".parse().unwrap());
        let given = Sources::new(&["203.0.113.9".parse().unwrap()], &listen);
        assert_eq!(given.for_target(v4), "203.0.113.9:0".parse().unwrap());
        assert_eq!(given.for_target(v6), "[2001:db8::1]:0".parse().unwrap());
        assert!(Sources::given(&["127.0.0.1".parse().unwrap()], &listen).is_ok());
        let error = Sources::given(&["203.0.113.9".parse().unwrap()], &listen).unwrap_err();
        assert!(
            error.starts_with("--notify-source 203.0.113.9: cannot send from it"),
            "{error}"
        );
        // Only wildcard addresses: the kernel picks.
        let wildcard = Sources::new(&[], &["[::]:53".parse().unwrap()]);
        assert_eq!(wildcard.for_target(v4), "0.0.0.0:0".parse().unwrap());
    }
}
