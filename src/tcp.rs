//! DNS over TCP (RFC 7766), served by lbdns rather than hickory's `register_listener`,
//! whose accept loop retries at once after an error (a spinning core at the open-files
//! limit) and which keeps every connection until its timeout, however many there are.
//!
//! Each connection has a slot in a [`ConnTable`] (the cap, with the least recently active
//! idle connection closed to make room) and reads into one reused buffer: every complete
//! query in it is answered in order through [`Handler::answer`], the same answering
//! code as UDP, and the replies go out in one write. A connection must complete its next
//! query within the idle timeout, so a client trickling bytes is closed too, and a reply
//! the client does not read within that time closes it as well.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout, timeout_at};

use crate::dns::{Handler, MAX_MESSAGE, Transport};
use crate::limits::{self, Conn, ConnTable};
use crate::metrics::{Close, Metrics};

/// Buffer sizes a connection starts with and returns to after a large message.
const SMALL: usize = 512;
const SHRINK_ABOVE: usize = 8 * 1024;

/// Accepts DNS TCP connections on `listener` forever (the caller aborts the task).
pub async fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    table: Arc<ConnTable>,
    metrics: Arc<Metrics>,
) {
    let idle = table.limits().timeout;
    loop {
        let (stream, src) = limits::accept(&listener, &table, &metrics).await;
        // A full table of busy connections: the new one is closed (and counted) here.
        let Some(conn) = table.open() else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            let why = exchange(&mut stream, src, &handler, &conn, idle).await;
            conn.close(why);
        });
    }
}

/// The length a 2-byte prefix at the start of `buf` announces, if it is there.
fn frame_len(buf: &[u8]) -> Option<usize> {
    match buf {
        [high, low, ..] => Some(usize::from(u16::from_be_bytes([*high, *low]))),
        _ => None,
    }
}

/// Answers the queries of one connection until it closes; returns why it closed.
async fn exchange(
    stream: &mut TcpStream,
    src: SocketAddr,
    handler: &Handler,
    conn: &Conn,
    idle: Duration,
) -> Close {
    let _ = stream.set_nodelay(true);
    let mut input: Vec<u8> = Vec::with_capacity(SMALL);
    let mut output: Vec<u8> = Vec::new();
    let mut reply: Vec<u8> = Vec::new();
    let mut deadline = Instant::now() + idle;
    loop {
        // Every complete query read so far, answered in order.
        let mut at = 0;
        while let Some(len) = frame_len(&input[at..]) {
            let Some(query) = input.get(at + 2..at + 2 + len) else {
                break;
            };
            if handler.transfer(query, src, &mut output) {
                at += 2 + len;
                continue;
            }
            // Room for the largest answer; given back below while the connection idles.
            reply.resize(MAX_MESSAGE, 0);
            let started = std::time::Instant::now();
            let reply_len = handler.answer(query, src, Transport::Tcp, &mut reply);
            handler.metrics().query_seconds.observe(started.elapsed());
            if reply_len > 0 {
                output.extend_from_slice(&(reply_len as u16).to_be_bytes());
                output.extend_from_slice(&reply[..reply_len]);
            }
            at += 2 + len;
        }
        if at > 0 {
            input.drain(..at);
            conn.touch();
            deadline = Instant::now() + idle;
        }
        if !output.is_empty() {
            let _busy = conn.busy();
            match timeout(idle, stream.write_all(&output)).await {
                Ok(Ok(())) => conn.touch(),
                Ok(Err(_)) | Err(_) => return Close::Error,
            }
            output.clear();
        }
        // An idle connection goes back to small buffers.
        if input.is_empty() && input.capacity() > SHRINK_ABOVE {
            input = Vec::with_capacity(SMALL);
        }
        for buf in [&mut output, &mut reply] {
            if buf.capacity() > SHRINK_ABOVE {
                *buf = Vec::new();
            }
        }
        // Room for the rest of a partial query, or for the next ones.
        let missing = frame_len(&input).map_or(0, |len| (2 + len).saturating_sub(input.len()));
        input.reserve(missing.max(SMALL));
        tokio::select! {
            biased;
            () = conn.evicted() => return Close::Evicted,
            read = timeout_at(deadline, stream.read_buf(&mut input)) => match read {
                Err(_) => return Close::IdleTimeout,
                Ok(Ok(0)) => return Close::Client,
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Close::Error,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lengths() {
        assert_eq!(frame_len(&[]), None);
        assert_eq!(frame_len(&[1]), None);
        assert_eq!(frame_len(&[1, 2, 3]), Some(258));
    }
}
