//! The management API's HTTP server: axum's router on hyper's HTTP/1 connections, with
//! what `axum::serve` does not bound.
//!
//! - Timeouts, all of [`ConnLimits::timeout`] (`--api-timeout`): hyper closes a
//!   connection that has not sent a request's headers in time, and, because it starts
//!   the same timer when a kept-alive connection waits for its next request, that is the
//!   keep-alive idle timeout too. A close counts as `header_timeout` when the connection
//!   never completed a request, `idle_timeout` when it did. The body then has as long
//!   again (`Deadline`): a body that stops coming fails the handler's read (400), and
//!   the connection closes as `body_timeout`. A handler is never cancelled, so a change
//!   the store accepted is always answered.
//! - A cap on connections with the least recently active idle one closed first, and
//!   accept errors backed off (see [`crate::limits`]). A connection is busy from the
//!   moment hyper has read a request's headers until the router's response is ready, so
//!   clients that never finish their headers are idle and the first to go.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::{Service, service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};

use crate::limits::{self, ConnLimits, ConnTable};
use crate::metrics::{Close, Metrics};

/// What a connection gets when every connection the API keeps is busy.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 96\r\n\r\n\
{\"error\": {\"code\": \"busy\", \"message\": \"the API is busy with other clients; retry in a moment\"}}\n";

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
        .header_read_timeout(limits.timeout)
        .keep_alive(true);
    let router = TowerToHyperService::new(router);
    loop {
        let (stream, _) = limits::accept(&listener, &table, &metrics).await;
        let Some(conn) = table.open() else {
            // Every connection is busy: say so, so the client retries instead of
            // seeing a reset, then close.
            tokio::spawn(async move {
                let mut stream = stream;
                let refusal = tokio::io::AsyncWriteExt::write_all(&mut stream, BUSY);
                let _ = tokio::time::timeout(Duration::from_secs(1), refusal).await;
            });
            continue;
        };
        let (builder, router, handle) = (builder.clone(), router.clone(), conn.handle().clone());
        let body_timed_out = Arc::new(AtomicBool::new(false));
        let flag = body_timed_out.clone();
        let service = service_fn(move |request: hyper::Request<Incoming>| {
            let busy = handle.busy();
            let deadline = Instant::now() + limits.timeout;
            let flag = flag.clone();
            let response = router.call(request.map(|body| Deadline::new(body, deadline, flag)));
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
                    _ if body_timed_out.load(Relaxed) => Close::BodyTimeout,
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

/// A request body that fails when it has not all arrived by a deadline.
struct Deadline<B> {
    body: B,
    sleep: Pin<Box<Sleep>>,
    /// Set when the deadline fails the body, so the connection's close is counted as such.
    timed_out: Arc<AtomicBool>,
}

impl<B> Deadline<B> {
    fn new(body: B, deadline: Instant, timed_out: Arc<AtomicBool>) -> Self {
        Self {
            body,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            timed_out,
        }
    }
}

impl<B> Body for Deadline<B>
where
    B: Body + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.timed_out.store(true, Relaxed);
            return Poll::Ready(Some(Err("the request body did not arrive in time".into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
