//! The `lbdns` command: `serve`, `check`, and the API clients `task` and `group`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use lbdns::client::{self, Client};
use lbdns::limits::LimitArgs;
use lbdns::load::{self, Sources};
use lbdns::metrics::Metrics;
use lbdns::server::{self, Listeners};
use lbdns::store::Store;
use lbdns::{api, http, watch};
use serde_json::Value;
use tracing::info;

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
    /// Serve the zones and sites of a directory, with the management API.
    Serve {
        #[command(flatten)]
        dir: DirArgs,
        /// Address to answer DNS on, over UDP and TCP (repeatable).
        #[arg(long = "listen", value_name = "ADDR:PORT", default_values = ["127.0.0.1:5353"])]
        listen: Vec<SocketAddr>,
        /// Address of the management API.
        #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8053")]
        api: SocketAddr,
        /// Token every API request must carry as `Authorization: Bearer TOKEN`.
        #[arg(long, env = "LBDNS_API_TOKEN", hide_env_values = true)]
        api_token: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Validate a directory; print every problem as file:line: message.
    Check {
        #[command(flatten)]
        dir: DirArgs,
    },
    /// Manage load-balancing tasks through the API.
    Task {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: TaskCommand,
    },
    /// Manage origin groups through the API.
    Group {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: GroupCommand,
    },
}

#[derive(Args)]
struct DirArgs {
    /// The served directory, holding zones/ and geoip/.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// GeoIP database to use instead of the first geoip/*.mmdb.
    #[arg(long, value_name = "FILE")]
    geoip: Option<PathBuf>,
}

#[derive(Args)]
struct ApiArgs {
    /// The API to talk to.
    #[arg(
        long,
        global = true,
        env = "LBDNS_API",
        default_value = "127.0.0.1:8053"
    )]
    api: String,
    /// The API token, if the server has one.
    #[arg(long, global = true, env = "LBDNS_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// The site (zone) to act on; optional when the server has only one.
    #[arg(long, global = true)]
    site: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum TaskCommand {
    /// List the site's tasks and their status.
    List,
    /// Show one task.
    Get { id: String },
    /// Create a task (DNS-only).
    Create {
        /// The answered name, inside the site.
        #[arg(long)]
        hostname: String,
        /// The origin group that answers.
        #[arg(long = "group")]
        group: String,
        /// The task id (default: derived from the hostname).
        #[arg(long)]
        id: Option<String>,
        /// TTL of the answers, in seconds (default 60).
        #[arg(long)]
        ttl: Option<u32>,
        /// Records per answer (default 1).
        #[arg(long)]
        answers: Option<u32>,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Enable a task: it overrides the zone's records again.
    Enable { id: String },
    /// Disable a task: the zone's own records answer again.
    Disable { id: String },
    /// Delete a disabled task.
    Delete { id: String },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// List the site's origin groups, and whether DNS-only tasks can use them.
    List,
    /// Create or replace a group.
    Put {
        name: String,
        /// weight or region.
        #[arg(long, default_value = "weight")]
        policy: String,
        /// An origin as ADDRESS or ADDRESS=WEIGHT (repeatable).
        #[arg(long = "origin", value_name = "ADDRESS[=WEIGHT]")]
        origins: Vec<String>,
        /// A JSON file with the whole group (for region keys), instead of --origin.
        #[arg(long, value_name = "FILE", conflicts_with = "origins")]
        file: Option<PathBuf>,
    },
    /// Delete a group no task uses.
    Delete { name: String },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LBDNS_LOG")
                // hickory logs malformed packets one line each: lbdns counts and throttles them.
                .unwrap_or_else(|_| "info,hickory_server=error,hickory_proto=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Check { dir } => check(dir),
        Command::Serve {
            dir,
            listen,
            api,
            api_token,
            limits,
        } => serve(dir, listen, api, api_token, limits),
        Command::Task { api, command } => task(api, command),
        Command::Group { api, command } => group(api, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn sources(dir: DirArgs) -> Sources {
    Sources {
        dir: dir.dir,
        geoip: dir.geoip,
    }
}

fn check(dir: DirArgs) -> Result<(), String> {
    let (config, _) = load::load(&sources(dir)).map_err(|e| e.to_string())?;
    let (tasks, enabled) = config.task_counts();
    eprintln!(
        "ok: {}, {} ({enabled} enabled)",
        count(config.zones.len(), "zone"),
        count(tasks, "task")
    );
    Ok(())
}

/// "1 zone", "2 zones".
fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn serve(
    dir: DirArgs,
    listen: Vec<SocketAddr>,
    api_addr: SocketAddr,
    token: Option<String>,
    limits: LimitArgs,
) -> Result<(), String> {
    api::check_exposure(api_addr, token.as_deref()).map_err(|e| format!("lbdns: {e}"))?;
    let metrics = Arc::new(Metrics::new());
    let limits = limits.resolve(&metrics);
    let store = Store::open(sources(dir), metrics)
        .map_err(|e| format!("{e}\nlbdns: not starting: fix the errors above"))?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("lbdns: {e}"))?;
    runtime
        .block_on(async {
            let listeners = Listeners::bind(&listen).await?;
            let api_listener = lbdns::limits::tcp_listener(api_addr)
                .map_err(|e| anyhow::anyhow!("cannot listen for the API on {api_addr}: {e}"))?;
            info!(addr = %api_addr, "management API listening");
            let router = api::router(store.clone(), token);
            let api_task = tokio::spawn(http::serve(
                api_listener,
                router,
                limits.api,
                store.metrics(),
            ));
            let _watcher = watch::spawn(store.clone())?;
            server::run(store, listeners, limits.dns, shutdown_signal()).await?;
            api_task.abort();
            anyhow::Ok(())
        })
        .map_err(|e| format!("lbdns: {e:#}"))
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn print(json: bool, value: &Value, table: impl FnOnce(&Value) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        print!("{}", table(value));
    }
}

fn task(args: ApiArgs, command: TaskCommand) -> Result<(), String> {
    let client = Client::new(&args.api, args.api_token);
    let site = client.site(args.site).map_err(|e| format!("lbdns: {e}"))?;
    let base = format!("/v1/sites/{site}/tasks");
    let one = |v: &Value| client::task_table(std::slice::from_ref(v));
    let result = match command {
        TaskCommand::List => client.call("GET", &base, None).map(|v| {
            print(args.json, &v, |v| {
                client::task_table(v["tasks"].as_array().map_or(&[], |a| a))
            })
        }),
        TaskCommand::Get { id } => client
            .call("GET", &format!("{base}/{id}"), None)
            .map(|v| print(args.json, &v, one)),
        TaskCommand::Create {
            hostname,
            group,
            id,
            ttl,
            answers,
            disabled,
        } => {
            let body = client::task_body(id, &hostname, &group, ttl, answers, disabled);
            client
                .call("POST", &base, Some(&body))
                .map(|v| print(args.json, &v, one))
        }
        TaskCommand::Enable { id } => client
            .call("POST", &format!("{base}/{id}/enable"), None)
            .map(|v| print(args.json, &v, one)),
        TaskCommand::Disable { id } => client
            .call("POST", &format!("{base}/{id}/disable"), None)
            .map(|v| print(args.json, &v, one)),
        TaskCommand::Delete { id } => client
            .call("DELETE", &format!("{base}/{id}"), None)
            .map(|_| eprintln!("deleted task {id}")),
    };
    result.map_err(|e| format!("lbdns: {e}"))
}

fn group(args: ApiArgs, command: GroupCommand) -> Result<(), String> {
    let client = Client::new(&args.api, args.api_token);
    let site = client.site(args.site).map_err(|e| format!("lbdns: {e}"))?;
    let base = format!("/v1/sites/{site}/origin-groups");
    let result = match command {
        GroupCommand::List => client.call("GET", &base, None).map(|v| {
            print(args.json, &v, |v| {
                client::group_table(v["origin_groups"].as_array().map_or(&[], |a| a))
            })
        }),
        GroupCommand::Put {
            name,
            policy,
            origins,
            file,
        } => {
            let body = match file {
                Some(path) => std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))
                    .and_then(|text| {
                        serde_json::from_str(&text)
                            .map_err(|e| format!("{}: not JSON: {e}", path.display()))
                    }),
                None => client::group_body(&policy, &origins).map_err(|e| e.to_string()),
            }
            .map_err(|e| format!("lbdns: {e}"))?;
            client
                .call("PUT", &format!("{base}/{name}"), Some(&body))
                .map(|v| {
                    print(args.json, &v, |v| {
                        client::group_table(std::slice::from_ref(v))
                    })
                })
        }
        GroupCommand::Delete { name } => client
            .call("DELETE", &format!("{base}/{name}"), None)
            .map(|_| eprintln!("deleted origin group {name}")),
    };
    result.map_err(|e| format!("lbdns: {e}"))
}
