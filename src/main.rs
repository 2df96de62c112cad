//! The `lbdns` command: `serve` and `check`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lbdns::load::{self, Sources};
use lbdns::server::{self, Listeners};

#[derive(Parser)]
#[command(
    name = "lbdns",
    version,
    about = "Authoritative DNS with DNS-only load balancing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the zones and sites of a directory.
    Serve {
        /// The served directory, holding zones/ and geoip/.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Address to answer DNS on, over UDP and TCP (repeatable).
        #[arg(long = "listen", value_name = "ADDR:PORT", default_values = ["127.0.0.1:5353"])]
        listen: Vec<SocketAddr>,
        /// GeoIP database to use instead of the first geoip/*.mmdb.
        #[arg(long, value_name = "FILE")]
        geoip: Option<PathBuf>,
    },
    /// Validate a directory; print every problem as file:line: message.
    Check {
        /// The directory to check, holding zones/ and geoip/.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// GeoIP database to use instead of the first geoip/*.mmdb.
        #[arg(long, value_name = "FILE")]
        geoip: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LBDNS_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Check { dir, geoip } => match load::load(&Sources { dir, geoip }) {
            Ok(loaded) => {
                eprintln!(
                    "ok: {} zones, {} tasks ({} enabled)",
                    loaded.zones, loaded.tasks, loaded.effective_tasks
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Command::Serve { dir, listen, geoip } => {
            let sources = Sources { dir, geoip };
            let snapshot = match server::load_logged(&sources) {
                Ok(snapshot) => snapshot,
                Err(errors) => {
                    eprintln!("{errors}\nlbdns: not starting: fix the errors above");
                    return ExitCode::FAILURE;
                }
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("lbdns: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = runtime.block_on(async {
                let listeners = Listeners::bind(&listen).await?;
                server::run(sources, snapshot, listeners, shutdown_signal()).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("lbdns: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
