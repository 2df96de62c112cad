//! The DNS front end: turns a hickory [`Request`] into a [`Snapshot`] lookup and the
//! answer into a response (SPEC §4 ECS and §9).
//!
//! hickory's `Catalog` neither reads nor echoes EDNS Client Subnet and cannot swap zones
//! without `&mut`, so lbdns answers requests itself from the current snapshot, read
//! lock-free through [`ArcSwap`].
//!
//! UDP replies are sized here, not left to hickory's encoder: a reply that does not fit
//! the client's buffer goes out as header, question and OPT with TC set, so the client
//! retries over TCP and the OPT (with ECS) is never the part that gets cut.
//!
//! Two ways in, one answering path ([`Handler`]'s `reply`): hickory's [`RequestHandler`]
//! for UDP, and [`Handler::answer_bytes`] (query bytes and client in, response bytes out)
//! for lbdns's own TCP loop ([`crate::tcp`]). Malformed queries are counted by reason in
//! `lbdns_malformed_queries_total` and logged through the throttle, a few lines a second.

mod ecs;

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tracing::warn;

use crate::metrics::{Malformed, Metrics};
use crate::select::Client;
use crate::snapshot::{Answer, Snapshot};

/// The UDP payload size lbdns offers and honours (the DNS Flag Day 2020 value).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

thread_local! {
    /// Per-thread randomness for weighted draws: no lock, no shared state.
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_rng(&mut rand::rng()));
}

/// Answers every request from the current snapshot.
pub struct Handler {
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
}

impl Handler {
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, metrics: Arc<Metrics>) -> Self {
        Self { snapshot, metrics }
    }

    /// Answers a query, or says which error code it gets. ECS, when the query had it,
    /// goes into `reply_edns` with the scope the answer depended on.
    fn answer(
        &self,
        request: &Request,
        reply_edns: Option<&mut Edns>,
    ) -> Result<Answer, ResponseCode> {
        if request.metadata.message_type != MessageType::Query {
            return Err(ResponseCode::FormErr);
        }
        if request.metadata.op_code != OpCode::Query {
            return Err(ResponseCode::NotImp);
        }
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return Err(ResponseCode::BADVERS);
        }
        // Not exactly one question.
        let info = request.request_info().map_err(|_| {
            self.malformed(Malformed::Questions, request.src());
            ResponseCode::FormErr
        })?;
        let ecs = match ecs::read(request.as_slice()) {
            ecs::Ecs::Malformed => {
                self.metrics.ecs_malformed.inc();
                self.malformed(Malformed::Edns, request.src());
                return Err(ResponseCode::FormErr);
            }
            ecs::Ecs::Present(subnet) => Some(subnet),
            ecs::Ecs::Absent => None,
        };
        let query = info.query.original();
        if query.query_class() != DNSClass::IN {
            return Err(ResponseCode::Refused);
        }
        let qtype = query.query_type();
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            // Zone transfer needs a list of secondaries, which this server does not have yet.
            return Err(ResponseCode::Refused);
        }
        let client = client_of(request.src().ip(), ecs.as_ref());
        let answer = RNG.with_borrow_mut(|rng| {
            self.snapshot
                .load()
                .answer(query.name(), qtype, &client, rng)
        });
        if let (Some(mut subnet), Some(edns)) = (ecs, reply_edns) {
            subnet.set_scope_prefix(answer.scope.min(client.source_prefix));
            edns.options_mut().insert(EdnsOption::Subnet(subnet));
        }
        Ok(answer)
    }
}

/// A response ready to encode: header fields, reply EDNS and records, already sized for
/// the transport.
struct Reply {
    metadata: Metadata,
    edns: Option<Edns>,
    answer: Answer,
}

impl Reply {
    /// The response message for `queries`, borrowing this reply's records.
    fn message<'q>(
        &'q self,
        queries: &'q Queries,
    ) -> MessageResponse<
        'q,
        'q,
        std::slice::Iter<'q, Record>,
        std::slice::Iter<'q, Record>,
        std::iter::Empty<&'q Record>,
        std::slice::Iter<'q, Record>,
    > {
        MessageResponseBuilder::new(queries, self.edns.as_ref()).build(
            self.metadata,
            self.answer.answers.iter(),
            self.answer.authority.iter(),
            std::iter::empty(),
            self.answer.additional.iter(),
        )
    }
}

impl Handler {
    /// The reply to a decoded request, counted, with TC set when it does not fit UDP.
    fn reply(&self, request: &Request) -> Reply {
        let mut edns = request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            edns.set_version(0);
            edns.set_max_payload(MAX_UDP_PAYLOAD);
            // RFC 3225 §3: the DO bit is copied into the response.
            edns.set_dnssec_ok(asked.flags().dnssec_ok);
            edns
        });
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = false;
        let answer = match self.answer(request, edns.as_mut()) {
            Ok(answer) => {
                metadata.response_code = answer.rcode;
                metadata.authoritative = answer.authoritative;
                answer
            }
            Err(rcode) => {
                metadata.response_code = rcode;
                Answer::default()
            }
        };
        self.metrics.response(metadata.response_code);
        let mut reply = Reply {
            metadata,
            edns,
            answer,
        };
        if request.protocol() == Protocol::Udp && !reply.fits_udp(request) {
            reply.metadata.truncation = true;
            reply.answer.answers.clear();
            reply.answer.authority.clear();
            reply.answer.additional.clear();
        }
        reply
    }

    /// Answers one query given as wire bytes, as hickory's server would after reading it
    /// from a stream: the response replaces the contents of `out`, which is left empty
    /// when the query gets no reply (shorter than a header, or itself a response).
    pub fn answer_bytes(
        &self,
        query: &[u8],
        src: SocketAddr,
        protocol: Protocol,
        out: &mut Vec<u8>,
    ) {
        let started = Instant::now();
        self.answer_bytes_into(query, src, protocol, out);
        self.metrics.query_seconds.observe(started.elapsed());
    }

    /// Answers one query received over UDP: writes the response into `out` and returns
    /// its length; 0 sends nothing (no reply, or one that does not fit `out`). The UDP
    /// loop times queries itself, so this does not observe `query_seconds`.
    pub fn answer_datagram(&self, query: &[u8], src: SocketAddr, out: &mut [u8]) -> usize {
        thread_local!(static REPLY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) });
        REPLY.with_borrow_mut(|reply| {
            self.answer_bytes_into(query, src, Protocol::Udp, reply);
            let Some(out) = out.get_mut(..reply.len()) else {
                return 0;
            };
            out.copy_from_slice(reply);
            reply.len()
        })
    }

    fn answer_bytes_into(
        &self,
        query: &[u8],
        src: SocketAddr,
        protocol: Protocol,
        out: &mut Vec<u8>,
    ) {
        out.clear();
        let Ok(header) = Header::read(&mut BinDecoder::new(query)) else {
            self.malformed(Malformed::Short, src);
            return;
        };
        if header.metadata.message_type == MessageType::Response {
            // Never answer a response: no reflection loops.
            return;
        }
        let mut encoder = BinEncoder::new(out);
        encoder.set_max_size(u16::MAX);
        let emitted = match Request::from_bytes(query.to_vec(), src, protocol) {
            Ok(request) => {
                let reply = self.reply(&request);
                reply
                    .message(&request.queries)
                    .destructive_emit(&mut encoder)
            }
            Err(_) => {
                self.malformed(Malformed::Undecodable, src);
                self.metrics.response(ResponseCode::FormErr);
                header_only(&header.metadata, ResponseCode::FormErr, &mut encoder)
            }
        };
        if let Err(error) = emitted {
            if self.metrics.warnings.allow() {
                warn!(%error, %src, "cannot encode a response; answering SERVFAIL");
            }
            out.clear();
            self.metrics.response(ResponseCode::ServFail);
            let servfail = header_only(
                &header.metadata,
                ResponseCode::ServFail,
                &mut BinEncoder::new(out),
            );
            if servfail.is_err() {
                out.clear();
            }
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

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: hickory_server::net::runtime::Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let started = Instant::now();
        let reply = self.reply(request);
        let sent = response_handle
            .send_response(reply.message(&request.queries))
            .await;
        self.metrics.query_seconds.observe(started.elapsed());
        match sent {
            Ok(info) => info,
            Err(error) => {
                if self.metrics.warnings.allow() {
                    warn!(%error, "cannot send a response");
                }
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

/// Emits a response to `request` with `rcode` and nothing but the header (no question).
fn header_only(
    request: &Metadata,
    rcode: ResponseCode,
    encoder: &mut BinEncoder<'_>,
) -> Result<ResponseInfo, hickory_proto::ProtoError> {
    let mut metadata = Metadata::response_from_request(request);
    metadata.response_code = rcode;
    metadata.recursion_available = false;
    let header = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    header.emit(encoder)?;
    Ok(ResponseInfo::from(header))
}

/// The client address selection works on: ECS when given with a prefix, else the source.
fn client_of(source: IpAddr, ecs: Option<&ClientSubnet>) -> Client {
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

impl Reply {
    /// True when the reply fits what the client can take over UDP: its EDNS payload (at
    /// least 512, at most ours), or 512 without EDNS (RFC 1035 §4.2.1, RFC 6891 §6.2.5).
    fn fits_udp(&self, request: &Request) -> bool {
        let limit = request.edns.as_ref().map_or(512, |e| {
            usize::from(e.max_payload().clamp(512, MAX_UDP_PAYLOAD))
        });
        match self.size_bound(request) {
            Some(bound) if bound <= limit => true,
            _ => self.exact_size(request) <= limit,
        }
    }

    /// An upper bound of the reply's wire size without name compression, when every
    /// record's data has a known size; `None` sends the reply through `exact_size`.
    fn size_bound(&self, request: &Request) -> Option<usize> {
        let question = request.queries.as_bytes().len();
        // OPT: root name, type, class, TTL, RDLENGTH, then ECS at most 4 + 4 + 16.
        let opt = self.edns.as_ref().map_or(0, |_| 11 + 24);
        let mut total = 12 + question + opt;
        let answer = &self.answer;
        for record in answer
            .answers
            .iter()
            .chain(&answer.authority)
            .chain(&answer.additional)
        {
            let data = match &record.data {
                RData::A(_) => 4,
                RData::AAAA(_) => 16,
                RData::CNAME(n) => n.0.len(),
                RData::NS(n) => n.0.len(),
                RData::PTR(n) => n.0.len(),
                RData::MX(mx) => 2 + mx.exchange.len(),
                RData::SOA(soa) => soa.mname.len() + soa.rname.len() + 20,
                RData::TXT(txt) => txt.txt_data.iter().map(|s| 1 + s.len()).sum(),
                _ => return None,
            };
            total += record.name.len() + 10 + data;
        }
        Some(total)
    }

    /// The reply's exact wire size, by encoding it.
    fn exact_size(&self, request: &Request) -> usize {
        let mut bytes = Vec::with_capacity(1024);
        match self
            .message(&request.queries)
            .destructive_emit(&mut BinEncoder::new(&mut bytes))
        {
            Ok(_) => bytes.len(),
            Err(_) => usize::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
