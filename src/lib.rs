//! lbdns: an authoritative DNS server that answers a site's load-balanced hostnames from
//! DNS-only load-balancing tasks.
//!
//! The pieces, in the order a query meets them:
//! - [`dns`]: the request handler (ECS, EDNS, response codes), with hickory's message types;
//! - [`snapshot`]: the immutable compiled state, zones with effective tasks layered on top;
//! - [`select`]: the pure choice of origins by weight, region or nearness;
//! - [`geoip`]: client locations and autonomous systems from MaxMind DBs.
//!
//! [`explain`] tells why a client gets its answer, from the same selection code.
//!
//! The ones that build and change the state: [`load`] reads a served directory, [`zone`]
//! the zone files, [`site`] the site files; [`store`] owns every change (API, SIGHUP,
//! [`watch`]) and [`persist`] writes files crash-safely; [`secondary`] takes zones from a
//! primary by zone transfer, signed with [`tsig`]; [`api`] is the management API
//! and [`client`] its command-line client, sharing the bodies of [`api_types`]; [`status`] the report of `lbdns status`; [`server`] binds sockets; [`metrics`] counts.
//!
//! DNS arrives through [`udp`], worker threads answering batches of datagrams without a
//! task or an allocation per query, and [`tcp`].
//!
//! Against hostile clients: [`tcp`] serves DNS over TCP and [`http`] the API, both with
//! the connection caps, timeouts and accept back-off of [`limits`]; [`throttle`] keeps
//! per-packet problems from flooding the log.

pub mod api;
pub mod api_types;
pub mod client;
pub mod console;
pub mod dig;
pub mod dns;
pub mod dnssec;
pub mod etcd;
pub mod explain;
pub mod geoip;
pub mod health;
pub mod http;
pub mod keys;
pub mod limits;
pub mod load;
pub mod metrics;
pub mod persist;
pub mod rrl;
pub mod runs;
pub mod secondary;
pub mod select;
pub mod server;
pub mod site;
pub mod snapshot;
pub mod status;
pub mod store;
pub mod tcp;
pub mod throttle;
pub mod tsig;
pub mod udp;
pub mod watch;
pub mod wire;
pub mod zone;
