//! Load-balanced answers against the real binary: weights, regions, ECS scope, TTLs,
//! override and restore (SPEC §3-§5).

mod common;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

#[test]
fn example_serves_the_weighted_task() {
    let site = Site::example();
    let server = site.serve();
    let reply = server.ask("www.example.com.", RecordType::A);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(reply.answers[0].ttl, 30);
}
