//! What a client would be answered, asked of the snapshot being served: the console's
//! "which answer does this client get" panel (`GET /v1/sites/{site}/answer`).
//!
//! The question goes through [`respond`] exactly as a query from the network does (the
//! client's address as the source, or an ECS option for a subnet), so the panel can never
//! disagree with `dig`; asking it `times` times shows how a weighted answer spreads.

use std::collections::BTreeMap;
use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};

use crate::dns::{Transport, respond};
use crate::snapshot::Snapshot;

/// At most this many draws per request: enough to show shares, cheap to answer.
pub const MAX_TIMES: u32 = 1000;

/// The question, as the console's form (and the query string) gives it.
#[derive(Debug, Deserialize)]
pub struct Question {
    pub hostname: String,
    /// `A` (default) or `AAAA`, or any type name.
    #[serde(rename = "type", default = "a")]
    pub qtype: String,
    /// The client: an address (`192.0.2.1`), asked as the query's source, or a prefix
    /// (`203.0.113.0/24`), sent as an EDNS Client Subnet option. Default 127.0.0.1.
    #[serde(default)]
    pub client: Option<String>,
    /// How many times to ask (1..=MAX_TIMES, default 1).
    #[serde(default)]
    pub times: Option<u32>,
}

fn a() -> String {
    "A".to_owned()
}

/// What the client got, with how often each distinct answer came back.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answers {
    /// NOERROR, NXDOMAIN, REFUSED, ...
    pub rcode: String,
    /// Each distinct answer section (records in presentation form) and how many times it came.
    pub answers: Vec<Counted>,
    /// The ECS scope of the reply (the client's prefix that gets the same answer), when
    /// the question carried a subnet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ecs_scope: Option<u8>,
    pub times: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Counted {
    pub records: Vec<String>,
    pub count: u32,
}

/// Why a question could not be asked; wording in `Display` only.
#[derive(Debug, thiserror::Error)]
pub enum BadQuestion {
    #[error("hostname {0:?} is not a domain name")]
    Hostname(String),
    #[error("type {0:?} is not a DNS record type")]
    Type(String),
    #[error("client {0:?} is neither an address nor a prefix (192.0.2.1, 203.0.113.0/24)")]
    Client(String),
    #[error("times must be 1..={MAX_TIMES}, not {0}")]
    Times(u32),
}

/// The RCODE as dig prints it.
fn mnemonic(rcode: u16) -> String {
    match rcode {
        0 => "NOERROR".to_owned(),
        1 => "FORMERR".to_owned(),
        2 => "SERVFAIL".to_owned(),
        3 => "NXDOMAIN".to_owned(),
        4 => "NOTIMP".to_owned(),
        5 => "REFUSED".to_owned(),
        9 => "NOTAUTH".to_owned(),
        16 => "BADVERS".to_owned(),
        other => format!("RCODE{other}"),
    }
}

/// Asks `question` of `snapshot` `times` times and counts the distinct answers.
pub fn ask(snapshot: &Snapshot, question: &Question) -> Result<Answers, BadQuestion> {
    let name = Name::from_ascii(&question.hostname)
        .map_err(|_| BadQuestion::Hostname(question.hostname.clone()))?;
    let qtype: RecordType = question
        .qtype
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| BadQuestion::Type(question.qtype.clone()))?;
    let times = question.times.unwrap_or(1);
    if !(1..=MAX_TIMES).contains(&times) {
        return Err(BadQuestion::Times(times));
    }
    let client = question.client.as_deref().unwrap_or("127.0.0.1").trim();
    let bad_client = || BadQuestion::Client(client.to_owned());
    let (source, subnet) = match client.split_once('/') {
        None => (client.parse::<IpAddr>().map_err(|_| bad_client())?, None),
        Some((addr, len)) => {
            let addr: IpAddr = addr.parse().map_err(|_| bad_client())?;
            let len: u8 = len.parse().map_err(|_| bad_client())?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if len > max {
                return Err(bad_client());
            }
            // The resolver's own address; the answer depends on the subnet it forwards.
            (
                IpAddr::from([127, 0, 0, 1]),
                Some(ClientSubnet::new(addr, len, 0)),
            )
        }
    };

    let mut query = Message::new(0, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(name, qtype));
    if let Some(subnet) = subnet {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.options_mut().insert(EdnsOption::Subnet(subnet));
        query.edns = Some(edns);
    }
    let packet = query.to_vec().map_err(|_| bad_client())?;

    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let mut out = vec![0u8; usize::from(u16::MAX)];
    let mut counts: BTreeMap<Vec<String>, u32> = BTreeMap::new();
    let mut rcode = String::new();
    let mut ecs_scope = None;
    for _ in 0..times {
        let outcome = respond(
            snapshot,
            &packet,
            source,
            Transport::Tcp,
            &mut rng,
            &mut out,
        );
        let Ok(reply) = Message::from_vec(&out[..outcome.len]) else {
            continue;
        };
        rcode = mnemonic(u16::from(reply.metadata.response_code));
        ecs_scope = reply.edns.as_ref().and_then(|edns| {
            match edns.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet) {
                Some(EdnsOption::Subnet(subnet)) => Some(subnet.scope_prefix()),
                _ => None,
            }
        });
        let mut records: Vec<String> = reply.answers.iter().map(|r| r.to_string()).collect();
        records.sort();
        *counts.entry(records).or_default() += 1;
    }
    let mut answers: Vec<Counted> = counts
        .into_iter()
        .map(|(records, count)| Counted { records, count })
        .collect();
    answers.sort_by_key(|a| std::cmp::Reverse(a.count));
    Ok(Answers {
        rcode,
        answers,
        ecs_scope,
        times,
    })
}
