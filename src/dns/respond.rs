//! The answer to one query: bytes in, bytes out, over an immutable snapshot.
//!
//! [`respond`] knows nothing of sockets, tasks or metrics: the UDP and TCP loops call it
//! and count what its [`Outcome`] says. It reads the query in place, answers from the
//! snapshot straight into the caller's buffer and never allocates.
//!
//! UDP replies are sized here: one that does not fit the client's buffer goes out as
//! header, question and OPT with TC set, so the client retries over TCP and the OPT (with
//! ECS) is never the part that gets cut.

use std::net::IpAddr;

use rand::Rng;

use super::MAX_UDP_PAYLOAD;
use crate::metrics::Malformed;
use crate::select::Client;
use crate::snapshot::Snapshot;
use crate::wire::Ecs;
use crate::wire::{self, CLASS_IN, EcsReply, HEADER_LEN, Header, Query, Response, rtype};

/// How the query came: UDP replies are limited to what the client can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What answering one query did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The response's length in the output buffer; 0 when nothing is to be sent.
    pub len: usize,
    /// The response's RCODE, extended bits included; `None` when nothing is sent.
    pub rcode: Option<u16>,
    /// Why the query was malformed, when it was.
    pub malformed: Option<Malformed>,
    /// True when what was malformed is the ECS option (RFC 7871 §6).
    pub ecs_malformed: bool,
}

const FORMERR: u16 = 1;
const NOTIMP: u16 = 4;
const REFUSED: u16 = 5;
const BADVERS: u16 = 16;

/// Class ANY in a question: answered as IN, as Knot does (lbdns serves IN only).
const CLASS_ANY: u16 = 255;

/// Answers the query `packet` from `source` into `out` (at least 512 bytes; 65535 lets
/// every TCP answer through), drawing weighted choices from `rng`.
pub fn respond<R: Rng + ?Sized>(
    snapshot: &Snapshot,
    packet: &[u8],
    source: IpAddr,
    transport: Transport,
    rng: &mut R,
    out: &mut [u8],
) -> Outcome {
    debug_assert!(out.len() >= 512);
    if packet.len() < HEADER_LEN {
        return Outcome {
            malformed: Some(Malformed::Short),
            ..Outcome::default()
        };
    }
    if packet[2] & 0x80 != 0 {
        // Never answer a response: no reflection loops.
        return Outcome::default();
    }
    // Borrowed where it was read: moving it out would copy its `WireName` every query.
    let read = Query::read(packet);
    let query = match &read {
        Ok(query) => query,
        Err(why) => {
            let malformed = match *why {
                wire::Unreadable::Truncated => Malformed::Undecodable,
                wire::Unreadable::Opt => Malformed::Edns,
            };
            let flags = u16::from_be_bytes([packet[2], packet[3]]);
            let id = u16::from_be_bytes([packet[0], packet[1]]);
            return header_only(id, flags, FORMERR, malformed, out);
        }
    };
    let limit = match (transport, query.edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        // RFC 6891 §6.2.5 and SPEC §9: at least 512, at most what lbdns offers.
        (Transport::Udp, Some(edns)) => usize::from(edns.payload.clamp(512, MAX_UDP_PAYLOAD)),
        // RFC 1035 §4.2.1.
        (Transport::Udp, None) => 512,
    }
    .min(out.len());

    let ecs = match query.edns.map(|e| e.ecs) {
        Some(Ecs::Present(subnet)) => Some(subnet),
        _ => None,
    };
    // NSID only when the query asks for it (RFC 5001 §2.1) and one is set.
    let nsid = query.edns.filter(|e| e.nsid).and_then(|_| super::nsid());
    // The OPT record's room is kept from the start: its size is known (the ECS option
    // echoes the query's source prefix; only the scope byte is decided later).
    let opt_len = match query.edns {
        Some(_) => {
            EcsReply::opt_len(ecs.map(|subnet| echo(&subnet, 0)).as_ref())
                + nsid.map_or(0, |id| 4 + id.len())
        }
        None => 0,
    };
    let mut response = Response::new(out);
    response.limit_records_to(limit - opt_len);
    let echoes_question = query.questions == 1;
    if echoes_question {
        response.question(query.question);
    }
    let question_end = response.written();
    let mut header = Header {
        id: query.id,
        query_flags: query.flags,
        authoritative: false,
        truncated: false,
        rcode: 0,
        questions: u16::from(echoes_question),
    };
    let mut malformed = None;
    let mut ecs_malformed = false;
    let mut ecs_reply = None;
    let mut extended_error = None;
    // RFC 9824 §5.1: a query with DO and CO gets NXDOMAIN with a compact denial, and CO.
    let compact_ok = query.edns.is_some_and(|e| e.dnssec_ok && e.compact_ok);
    let mut compact = false;
    let rcode = if query.opcode() != 0 {
        NOTIMP
    } else if query.edns.is_some_and(|e| e.version > 0) {
        BADVERS
    } else if query.questions != 1 {
        malformed = Some(Malformed::Questions);
        FORMERR
    } else if query.edns.is_some_and(|e| e.ecs == Ecs::Malformed) {
        malformed = Some(Malformed::Edns);
        ecs_malformed = true;
        FORMERR
    } else if query.qtype == rtype::OPT || (128..=250).contains(&query.qtype) {
        // Meta-TYPEs cannot be asked for (RFC 6895 §3.1, RFC 9824 §3.5).
        FORMERR
    } else if matches!(query.qtype, rtype::MAILB | rtype::MAILA | 0) {
        // Obsolete QTYPEs (RFC 883's mail queries) and the reserved type 0, as other
        // servers (Knot) answer them.
        NOTIMP
    } else if !matches!(query.qclass, CLASS_IN | CLASS_ANY)
        || matches!(query.qtype, rtype::AXFR | rtype::IXFR)
    {
        // Zone transfer needs a list of secondaries, which this server does not have yet.
        REFUSED
    } else {
        let client = client_of(source, ecs.as_ref());
        let dnssec_ok = query.edns.is_some_and(|e| e.dnssec_ok);
        let resolution = snapshot.resolve(
            &query.qname,
            query.qtype,
            dnssec_ok,
            &client,
            rng,
            &mut response,
        );
        header.authoritative = resolution.authoritative;
        if let Some(subnet) = ecs {
            ecs_reply = Some(echo(&subnet, resolution.scope.min(client.source_prefix)));
        }
        compact = resolution.compact && compact_ok;
        let rcode = match resolution.nxname && compact {
            true => 3,
            false => u16::from(resolution.rcode),
        };
        if rcode == REFUSED {
            // A name in no zone served here (RFC 8914 §4.21).
            extended_error = Some(super::ede::NOT_AUTHORITATIVE);
        }
        rcode
    };
    header.rcode = (rcode & 0xF) as u8;
    if response.overflowed() {
        header.truncated = true;
        response.truncate_to(question_end);
    }
    if let Some(edns) = query.edns {
        let extended = (rcode >> 4) as u8;
        response.opt(MAX_UDP_PAYLOAD, extended, edns.dnssec_ok, ecs_reply);
        if compact {
            response.opt_compact_ok();
        }
        if let Some(id) = nsid {
            response.opt_option(wire::option::NSID, id, limit);
        }
        if let Some(code) = extended_error {
            response.opt_option(wire::option::EDE, &code.to_be_bytes(), limit);
        }
    }
    Outcome {
        len: response.finish(header),
        rcode: Some(rcode),
        malformed,
        ecs_malformed,
    }
}

/// A response with `rcode` and nothing but the header (no question: it could not be read).
fn header_only(id: u16, flags: u16, rcode: u16, malformed: Malformed, out: &mut [u8]) -> Outcome {
    let len = Response::new(out).finish(Header {
        id,
        query_flags: flags,
        authoritative: false,
        truncated: false,
        rcode: rcode as u8,
        questions: 0,
    });
    Outcome {
        len,
        rcode: Some(rcode),
        malformed: Some(malformed),
        ecs_malformed: false,
    }
}

/// The ECS option of the reply: the client's family, source prefix and address, with
/// the scope the answer depended on (RFC 7871 §7.2.1).
fn echo(subnet: &hickory_proto::rr::rdata::opt::ClientSubnet, scope: u8) -> EcsReply {
    let (family, address) = match subnet.addr() {
        IpAddr::V4(v4) => {
            let mut address = [0; 16];
            address[..4].copy_from_slice(&v4.octets());
            (1, address)
        }
        IpAddr::V6(v6) => (2, v6.octets()),
    };
    EcsReply {
        family,
        source: subnet.source_prefix(),
        scope,
        address,
    }
}

/// The client address selection works on: ECS when given with a prefix, else the source.
pub fn client_of(
    source: IpAddr,
    ecs: Option<&hickory_proto::rr::rdata::opt::ClientSubnet>,
) -> Client {
    match ecs {
        Some(subnet) if subnet.source_prefix() > 0 => Client {
            addr: subnet.addr(),
            source_prefix: subnet.source_prefix(),
        },
        // SOURCE PREFIX-LENGTH 0: answer from the source address, with scope 0.
        Some(_) => Client {
            addr: source.to_canonical(),
            source_prefix: 0,
        },
        None => {
            let addr = source.to_canonical();
            Client {
                addr,
                source_prefix: if addr.is_ipv4() { 32 } else { 128 },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::opt::ClientSubnet;

    #[test]
    fn client_address_choice() {
        let source: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(
            client_of(source, None).addr,
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        let ecs = ClientSubnet::new("81.2.69.0".parse().unwrap(), 24, 0);
        assert_eq!(client_of(source, Some(&ecs)).source_prefix, 24);
        let zero = ClientSubnet::new("0.0.0.0".parse().unwrap(), 0, 0);
        let c = client_of(source, Some(&zero));
        assert_eq!((c.addr, c.source_prefix), ("127.0.0.1".parse().unwrap(), 0));
    }
}
