//! NOTIFY (RFC 1996) to a zone's secondaries when a reload changes its SOA serial, so
//! they transfer at once instead of at their next refresh.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::Name;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::wire::{CLASS_IN, rtype};

/// How long to wait for each acknowledgement, and how often to send (RFC 1996 §3.6
/// retransmits; secondaries also poll on their own, so a few tries are enough).
const WAIT: Duration = Duration::from_secs(1);
const TRIES: usize = 3;

/// Notifies each zone's `targets` that it changed, on one thread for the whole batch: the
/// caller (the store's writer) never waits on the network, and a reload that changes
/// thousands of zones starts one thread, not thousands.
pub fn spawn(changed: Vec<(Name, Vec<SocketAddr>)>, metrics: Arc<Metrics>) {
    if changed.iter().all(|(_, targets)| targets.is_empty()) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("lbdns-notify".into())
        .spawn(move || {
            for (origin, targets) in changed {
                for target in targets {
                    match notify(&origin, target) {
                        Ok(()) => {
                            metrics.notify_acknowledged.inc();
                            info!(zone = %origin, %target, "NOTIFY acknowledged");
                        }
                        Err(why) => {
                            metrics.notify_unacknowledged.inc();
                            warn!(zone = %origin, %target, "NOTIFY not acknowledged: {why}");
                        }
                    }
                }
            }
        });
    if let Err(error) = spawned {
        warn!(%error, "cannot start a thread to send NOTIFY");
    }
}

/// Sends NOTIFY for `origin` to `target` until it is acknowledged, a few times.
fn notify(origin: &Name, target: SocketAddr) -> Result<(), String> {
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).map_err(|e| e.to_string())?;
    socket.connect(target).map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(WAIT))
        .map_err(|e| e.to_string())?;
    let id: u16 = rand::random();
    let message = message(origin, id);
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
            let query = buf[..n].to_vec();
            // First an unrelated datagram, then the acknowledgement.
            secondary.send_to(&[0u8; 12], from).unwrap();
            let mut ack = query.clone();
            ack[2] |= 0x80;
            secondary.send_to(&ack, from).unwrap();
            query
        });
        assert_eq!(notify(&origin, target), Ok(()));
        let query = answering.join().unwrap();
        assert_eq!(query[2], 0x24, "opcode NOTIFY with AA");
        assert_eq!(&query[4..6], &[0, 1], "one question");
        assert!(query.ends_with(b"\x07example\x03com\x00\x00\x06\x00\x01"));
    }
}
