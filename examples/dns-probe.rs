//! A bounded query loop for `scripts/bench scale`: one A query at a time over UDP to a
//! loopback server, each sent when the last was answered and no sooner than its slot at
//! `--qps` (so that the loop does not take the CPU the measured change needs), and the
//! worst latency seen.
//!
//! ```text
//! cargo run --release --example dns-probe -- --server 127.0.0.1:15380 --name a1.big.test \
//!     [--qps 1000] [--stop-file PATH] [--max-queries 1000000] [--max-seconds 120] [--timeout 10]
//! ```
//!
//! It stops at the first of: `--max-queries` answers, `--max-seconds`, or the stop file
//! existing (looked for every 64 queries). A query unanswered after `--timeout` seconds
//! is counted as lost, with that timeout as its latency. The output is one line:
//! `queries=N lost=N max_ms=X p99_ms=X p50_ms=X`. Only std.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct Args {
    server: SocketAddr,
    name: String,
    stop_file: Option<PathBuf>,
    max_queries: u64,
    max_seconds: f64,
    timeout: f64,
    qps: f64,
}

fn parse_args() -> Result<Args, String> {
    let mut server = None;
    let mut args = Args {
        server: SocketAddr::from(([127, 0, 0, 1], 53)),
        name: String::new(),
        stop_file: None,
        max_queries: 1_000_000,
        max_seconds: 120.0,
        timeout: 10.0,
        qps: 1000.0,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let value = argv.next().ok_or(format!("{flag} needs a value"))?;
        let bad = || format!("{flag}: bad value {value:?}");
        match flag.as_str() {
            "--server" => server = Some(value.parse::<SocketAddr>().map_err(|_| bad())?),
            "--name" => args.name = value,
            "--stop-file" => args.stop_file = Some(PathBuf::from(value)),
            "--max-queries" => args.max_queries = value.parse().map_err(|_| bad())?,
            "--max-seconds" => args.max_seconds = value.parse().map_err(|_| bad())?,
            "--timeout" => args.timeout = value.parse().map_err(|_| bad())?,
            "--qps" => args.qps = value.parse().map_err(|_| bad())?,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    args.server = server.ok_or("--server is required")?;
    if !args.server.ip().is_loopback() {
        return Err("--server must be a loopback address".into());
    }
    if args.name.is_empty() {
        return Err("--name is required".into());
    }
    if !(args.max_seconds > 0.0 && args.max_seconds <= 3600.0) {
        return Err("--max-seconds must be in (0, 3600]".into());
    }
    if !(args.timeout > 0.0 && args.timeout <= 60.0) {
        return Err("--timeout must be in (0, 60]".into());
    }
    if !(args.qps >= 1.0 && args.qps <= 1_000_000.0) {
        return Err("--qps must be in [1, 1000000]".into());
    }
    Ok(args)
}

/// A query for `name` A with id 0 (set per query), RD clear.
fn query(name: &str) -> Vec<u8> {
    let mut packet = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, 0, 1, 0, 1]);
    packet
}

fn run(args: &Args) -> std::io::Result<String> {
    let socket = UdpSocket::bind(SocketAddr::new(
        if args.server.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        },
        0,
    ))?;
    socket.connect(args.server)?;
    let timeout = Duration::from_secs_f64(args.timeout);
    let mut packet = query(&args.name);
    let mut reply = [0u8; 4096];
    let mut latencies = Vec::new();
    let mut lost = 0u64;
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(args.max_seconds);
    let slot = Duration::from_secs_f64(1.0 / args.qps);
    let mut next = started;
    for n in 0..args.max_queries {
        if n % 64 == 0
            && (Instant::now() >= end || args.stop_file.as_ref().is_some_and(|f| f.exists()))
        {
            break;
        }
        // Queries start at least a slot apart: a late answer never makes a burst after it.
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next = Instant::now() + slot;
        let id = (n as u16).to_be_bytes();
        packet[..2].copy_from_slice(&id);
        let sent = Instant::now();
        socket.send(&packet)?;
        let answered = loop {
            let left = timeout.saturating_sub(sent.elapsed());
            if left.is_zero() {
                break false;
            }
            socket.set_read_timeout(Some(left))?;
            match socket.recv(&mut reply) {
                Ok(len) if len >= 2 && reply[..2] == id => break true,
                Ok(_) => continue, // a late reply to a query already counted as lost
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break false;
                }
                Err(e) => return Err(e),
            }
        };
        lost += u64::from(!answered);
        latencies.push(sent.elapsed());
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(format!(
        "queries={} lost={lost} max_ms={:.2} p99_ms={:.3} p50_ms={:.3}",
        latencies.len(),
        at(1.0),
        at(0.99),
        at(0.5)
    ))
}

fn main() -> ExitCode {
    match parse_args().and_then(|args| run(&args).map_err(|e| e.to_string())) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("dns-probe: {message}");
            ExitCode::FAILURE
        }
    }
}
