//! The management API's HTTP server: axum's router on hyper's HTTP/1 connections, with
//! what `axum::serve` does not bound.
//!
//! - A header read timeout ([`ConnLimits::timeout`], `--api-header-timeout`): hyper
//!   closes a connection that has not sent a request's headers in time, and, because it
//!   starts the same timer when a kept-alive connection waits for its next request, the
//!   same value is the keep-alive idle timeout. A close counts as `header_timeout` when
//!   the connection never completed a request, `idle_timeout` when it did.
//! - A cap on connections with the least recently active idle one closed first, and
//!   accept errors backed off (see [`crate::limits`]). A connection is busy from the
//!   moment hyper has read a request's headers until the router's response is ready, so
//!   clients that never finish their headers are idle and the first to go.

use std::sync::Arc;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{Service, service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::limits::{self, ConnLimits, ConnTable};
use crate::metrics::{Close, Metrics};

/// Serves `router` on `listener` forever (the caller aborts the task).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    metrics: Arc<Metrics>,
) {
    let table = ConnTable::new("api", limits, metrics.api_conns.clone());
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(table.limits().timeout)
        .keep_alive(true);
    let router = TowerToHyperService::new(router);
    loop {
        let (stream, _) = limits::accept(&listener, &table, &metrics).await;
        let Some(conn) = table.open() else {
            continue;
        };
        let (builder, router, handle) = (builder.clone(), router.clone(), conn.handle().clone());
        let service = service_fn(move |request: hyper::Request<Incoming>| {
            let busy = handle.busy();
            let response = router.call(request);
            async move {
                let response = response.await;
                drop(busy);
                response
            }
        });
        tokio::spawn(async move {
            let http = builder.serve_connection(TokioIo::new(stream), service);
            let mut http = std::pin::pin!(http);
            // A connection that completes as it is evicted counts as completed.
            let why = tokio::select! {
                biased;
                done = http.as_mut() => match done {
                    Ok(()) => Close::Client,
                    Err(error) if error.is_timeout() => {
                        if conn.handle().requests() > 0 {
                            Close::IdleTimeout
                        } else {
                            Close::HeaderTimeout
                        }
                    }
                    Err(_) => Close::Error,
                },
                () = conn.evicted() => Close::Evicted,
            };
            conn.close(why);
        });
    }
}
