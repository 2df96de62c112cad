//! The DNS front end: turns a hickory [`Request`] into a [`Snapshot`] lookup and the
//! answer into a response (SPEC §4 ECS and §9).
//!
//! hickory's `Catalog` neither reads nor echoes EDNS Client Subnet and cannot swap zones
//! without `&mut`, so lbdns answers requests itself from the current snapshot, read
//! lock-free through [`ArcSwap`].

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tracing::warn;

use crate::metrics::Metrics;
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
}

/// What the query's ECS option says, checked as RFC 7871 §7.1 asks.
enum Ecs {
    Absent,
    Present(ClientSubnet),
    Malformed,
}

fn read_ecs(edns: Option<&Edns>) -> Ecs {
    let Some(edns) = edns else {
        return Ecs::Absent;
    };
    // hickory already refused (FORMERR) unknown families, prefixes longer than the
    // address and truncated options while decoding the message.
    let options = edns.options().get_all(EdnsCode::Subnet);
    match options.as_slice() {
        [] => Ecs::Absent,
        [EdnsOption::Subnet(subnet)] => {
            let prefix = subnet.source_prefix();
            let masked = ipnet::IpNet::new(subnet.addr(), prefix).map(|n| n.network());
            // Address bits beyond SOURCE PREFIX-LENGTH must be zero.
            if masked.ok() == Some(subnet.addr()) {
                Ecs::Present(*subnet)
            } else {
                Ecs::Malformed
            }
        }
        _ => Ecs::Malformed,
    }
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

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: hickory_server::net::runtime::Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let mut response_edns = request.edns.as_ref().map(|query_edns| {
            let mut edns = Edns::new();
            edns.set_version(0);
            // hickory truncates UDP replies to the payload size of the reply's OPT, so it
            // carries what the client can take, capped at what we offer.
            edns.set_max_payload(query_edns.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            edns
        });
        let mut answer = Answer::default();
        let error = 'check: {
            if request.metadata.message_type != MessageType::Query {
                break 'check Some(ResponseCode::FormErr);
            }
            if request.metadata.op_code != OpCode::Query {
                break 'check Some(ResponseCode::NotImp);
            }
            if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
                break 'check Some(ResponseCode::BADVERS);
            }
            let Ok(info) = request.request_info() else {
                // Not exactly one question.
                break 'check Some(ResponseCode::FormErr);
            };
            let ecs = match read_ecs(request.edns.as_ref()) {
                Ecs::Malformed => {
                    self.metrics.ecs_malformed.inc();
                    break 'check Some(ResponseCode::FormErr);
                }
                Ecs::Present(subnet) => Some(subnet),
                Ecs::Absent => None,
            };
            let query = info.query.original();
            if query.query_class() != DNSClass::IN {
                break 'check Some(ResponseCode::Refused);
            }
            let qtype = query.query_type();
            if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
                // Zone transfer needs a list of secondaries, which this server does not have yet.
                break 'check Some(ResponseCode::Refused);
            }
            let client = client_of(request.src().ip(), ecs.as_ref());
            answer = RNG.with_borrow_mut(|rng| {
                self.snapshot
                    .load()
                    .answer(query.name(), qtype, &client, rng)
            });
            if answer.failed_open {
                self.metrics.failed_open.inc();
            }
            if let (Some(mut subnet), Some(edns)) = (ecs, response_edns.as_mut()) {
                subnet.set_scope_prefix(answer.scope.min(client.source_prefix));
                edns.options_mut().insert(EdnsOption::Subnet(subnet));
            }
            None
        };
        metadata.response_code = error.unwrap_or(answer.rcode);
        metadata.authoritative = error.is_none() && answer.authoritative;
        metadata.recursion_available = false;
        self.metrics.response(metadata.response_code);
        let builder = MessageResponseBuilder::new(&request.queries, response_edns.as_ref());
        let response = builder.build(
            metadata,
            answer.answers.iter(),
            answer.authority.iter(),
            std::iter::empty(),
            answer.additional.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                warn!(%error, "cannot send a response");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_checks() {
        let mut edns = Edns::new();
        edns.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(
                "192.0.2.0".parse().unwrap(),
                24,
                0,
            )));
        assert!(matches!(read_ecs(Some(&edns)), Ecs::Present(_)));
        let mut bad = Edns::new();
        bad.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(
                "192.0.2.1".parse().unwrap(),
                24,
                0,
            )));
        assert!(matches!(read_ecs(Some(&bad)), Ecs::Malformed));
        assert!(matches!(read_ecs(None), Ecs::Absent));
    }

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
