//! DNS over TCP (RFC 7766), served by lbdns rather than hickory's `register_listener`,
//! whose accept loop retries at once after an error (a spinning core at the open-files
//! limit) and which keeps every connection until its timeout, however many there are.
//!
//! Each connection has a slot in a [`ConnTable`] (the cap, with the least recently active
//! idle connection closed to make room) and answers every complete query it has read, in
//! order, through [`Handler::answer`], the same answering code as UDP. Memory per
//! connection is bounded whatever the client does: replies are queued up to
//! `OUTPUT_HIGH` bytes and written before anything more is answered or read, so a client
//! that pipelines queries without reading the replies stops being read (TCP flow control
//! holds the rest of its queries in its own socket) and is closed when its replies are
//! not taken within the idle timeout. A connection waiting for its next query gives its
//! buffers back. A connection must complete its next query within the idle timeout, so a
//! client trickling bytes is closed too.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout, timeout_at};

use tracing::warn;

use crate::dns::{Handler, MAX_MESSAGE, Transfer, Transport, transfer};
use crate::limits::{self, Conn, ConnTable};
use crate::metrics::{Close, Metrics};

/// The input buffer a connection starts with and returns to when it idles.
const SMALL: usize = 512;
const SHRINK_ABOVE: usize = 8 * 1024;

/// Replies a connection answers ahead of writing them: once this much is queued it is
/// written before another query is answered or read. A client that pipelines queries
/// and does not read the replies then holds at most this plus one reply in lbdns (the
/// rest waits in its own socket buffers, then it is closed), not every reply.
const OUTPUT_HIGH: usize = 16 * 1024;
/// A zone transfer's buffer: one message with its prefix.
const TRANSFER_BUF: usize = 2 + MAX_MESSAGE;

thread_local! {
    /// Room for the largest answer, one per runtime thread rather than per connection:
    /// answering does not wait, and the reply is copied out at once.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; MAX_MESSAGE].into());
}

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
    // Allocated when a query comes, freed when the connection idles.
    let mut output: Vec<u8> = Vec::new();
    let mut deadline = Instant::now() + idle;
    loop {
        // The complete queries read so far, answered in order until the output is full.
        let mut at = 0;
        let mut queued = 0;
        while queued < OUTPUT_HIGH {
            let Some(len) = frame_len(&input[at..]) else {
                break;
            };
            let Some(query) = input.get(at + 2..at + 2 + len) else {
                break;
            };
            at += 2 + len;
            if transfer::may_ask_for_transfer(query) {
                // The replies before it go first.
                if queued > 0 {
                    if let Err(why) = send(stream, conn, &output[..queued], idle).await {
                        return why;
                    }
                    queued = 0;
                }
                match send_transfer(stream, src, handler, conn, query, &mut output, idle).await {
                    Some(Ok(())) => continue,
                    Some(Err(why)) => return why,
                    None => {}
                }
            }
            let started = std::time::Instant::now();
            SCRATCH.with_borrow_mut(|reply| {
                output.truncate(queued);
                // Grown past this by a large reply only, to what it needs.
                output.reserve(OUTPUT_HIGH.saturating_sub(queued));
                let reply_len = handler.answer(query, src, Transport::Tcp, reply);
                if reply_len > 0 {
                    output.extend_from_slice(&(reply_len as u16).to_be_bytes());
                    output.extend_from_slice(&reply[..reply_len]);
                }
            });
            queued = output.len();
            handler.metrics().query_seconds.observe(started.elapsed());
        }
        if at > 0 {
            input.drain(..at);
            conn.touch();
            deadline = Instant::now() + idle;
        }
        if queued > 0
            && let Err(why) = send(stream, conn, &output[..queued], idle).await
        {
            return why;
        }
        // More complete queries are waiting: answer them before reading.
        if has_query(&input) {
            continue;
        }
        // Room for the rest of a partial query, or for the next ones.
        let missing = frame_len(&input).map_or(0, |len| (2 + len).saturating_sub(input.len()));
        input.reserve(missing.max(SMALL));
        // What the client has sent already is read without waiting, so a pipelining
        // client keeps its buffers; a connection that waits gives them back first.
        match stream.try_read_buf(&mut input) {
            Ok(0) => return Close::Client,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return Close::Error,
        }
        output = Vec::new();
        if input.is_empty() && input.capacity() > SHRINK_ABOVE {
            input = Vec::with_capacity(SMALL);
        }
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

/// The socket send buffer of a connection sending a zone transfer (the kernel doubles it):
/// a secondary 100 ms away can still take 5 MB/s.
const TRANSFER_SEND_BUFFER: usize = 256 * 1024;

/// Sends the zone transfer `query` asks for (or its refusal), message by message: each is
/// encoded once the one before has been written, so a transfer holds one message in
/// memory whatever the zone's size and yields to the runtime at every write. A secondary
/// must take each message within `idle`, however long the whole transfer takes. `None`
/// when `query` does not ask for a transfer.
async fn send_transfer(
    stream: &mut TcpStream,
    src: SocketAddr,
    handler: &Handler,
    conn: &Conn,
    query: &[u8],
    buf: &mut Vec<u8>,
    idle: Duration,
) -> Option<Result<(), Close>> {
    let snapshot = handler.snapshot();
    if buf.len() < TRANSFER_BUF {
        buf.resize(TRANSFER_BUF, 0);
    }
    let mut messages = match handler.transfer(&snapshot, query, src, buf)? {
        Transfer::Refused { len, .. } => return Some(send(stream, conn, &buf[..len], idle).await),
        Transfer::Zone(messages) => messages,
    };
    // A fixed send buffer rather than the kernel's autotuned one (up to 4 MB), which wakes
    // a blocked writer only once a third of it has drained: a secondary reading at
    // 150 KB/s would take 9 s to make room for the next message and be cut as stalled.
    let _ = socket2::SockRef::from(&*stream).set_send_buffer_size(TRANSFER_SEND_BUFFER);
    let _busy = conn.busy();
    let started = std::time::Instant::now();
    let mut bytes = 0u64;
    let result = loop {
        let len = match messages.next_message(buf) {
            Ok(0) => break Ok(()),
            Ok(len) => len,
            Err(too_large) => {
                // A loaded zone has no such record (crate::zone refuses it).
                warn!(%src, ?too_large, "zone transfer stopped: a record does not fit a message");
                break Err(Close::Error);
            }
        };
        if let Err(why) = send(stream, conn, &buf[..len], idle).await {
            break Err(why);
        }
        bytes += len as u64;
    };
    handler.transfer_ended(src, result.is_ok(), bytes, started.elapsed());
    Some(result)
}

/// True when `input` starts with a complete query.
fn has_query(input: &[u8]) -> bool {
    frame_len(input).is_some_and(|len| input.len() >= 2 + len)
}

/// Writes `bytes`; a client that does not take them within `idle` is closed.
async fn send(
    stream: &mut TcpStream,
    conn: &Conn,
    bytes: &[u8],
    idle: Duration,
) -> Result<(), Close> {
    let _busy = conn.busy();
    match timeout(idle, stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(Close::Error),
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
