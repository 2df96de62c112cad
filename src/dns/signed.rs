//! Queries signed with TSIG (RFC 8945) other than transfers: the SOA query a secondary
//! listed with a key sends before it transfers (SPEC §13). Such a query is checked as a
//! transfer request is ([`transfer::admit`]), answered as if unsigned, and its answer
//! signed; a query whose signature fails gets NOTAUTH with the TSIG error (§5.2).
//!
//! Only looked at while some secondary is listed with a key ([`tsig::in_use`]): otherwise
//! a signed query is answered as any other, unsigned.

use std::net::SocketAddr;

use rand::Rng;

use super::respond::{Transport, respond};
use super::transfer::{self, unix_now};
use crate::snapshot::{Snapshot, Transferable};
use crate::tsig;

const NOTAUTH: u8 = 9;

/// What a signed query got: the answer's length in `out`, and why it was refused, if so.
pub struct Signed {
    pub len: usize,
    pub refused: Option<tsig::Refusal>,
}

/// When `packet` is signed with TSIG and a secondary must sign: answers it into `out`.
/// `None` for any other packet, answered as before.
pub fn answer<R: Rng + ?Sized>(
    snapshot: &Snapshot,
    packet: &[u8],
    src: SocketAddr,
    transport: Transport,
    rng: &mut R,
    out: &mut [u8],
) -> Option<Signed> {
    if !tsig::in_use() || packet.len() < 12 || packet[2] & 0x80 != 0 || !tsig::is_signed(packet) {
        return None;
    }
    let query = crate::wire::Query::read(packet).ok()?;
    let listing = match snapshot.transferable(&query.qname, src.ip()) {
        Transferable::Zone(_, listing) => listing,
        _ => Vec::new(),
    };
    let now = unix_now();
    match transfer::admit(&listing, packet, now) {
        Ok(Some(mut signer)) => {
            let unsigned = tsig::unsigned_request(packet)?;
            let outcome = respond(snapshot, &unsigned, src.ip(), transport, rng, out);
            if outcome.len == 0 {
                return Some(Signed {
                    len: 0,
                    refused: None,
                });
            }
            Some(Signed {
                len: signer.sign(out, outcome.len),
                refused: None,
            })
        }
        // Signed and no key needed: cannot happen (a signed request needs its key).
        Ok(None) => None,
        Err(refusal) => {
            let question_end = question_end(packet)?;
            let mut reply = packet[..question_end].to_vec();
            // QR, the query's opcode and RD; NOTAUTH; the question only.
            reply[2] = 0x80 | (packet[2] & 0x79);
            reply[3] = NOTAUTH;
            reply[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
            tsig::append_error(&mut reply, packet, refusal, now);
            let len = reply.len();
            out.get_mut(..len)?.copy_from_slice(&reply);
            Some(Signed {
                len,
                refused: Some(refusal),
            })
        }
    }
}

/// Where the single question of `packet` ends.
fn question_end(packet: &[u8]) -> Option<usize> {
    if packet.get(4..6)? != [0, 1] {
        return None;
    }
    let mut at = 12;
    loop {
        let label = usize::from(*packet.get(at)?);
        if label == 0 {
            break;
        }
        if label > 63 {
            return None;
        }
        at += label + 1;
    }
    let end = at + 1 + 4;
    (end <= packet.len()).then_some(end)
}
