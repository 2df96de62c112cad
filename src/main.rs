//! The `lbdns` command: `serve`, `check`, and the API clients `task` and `group`.
//!
//! Output (tables, JSON, "ok", "deleted") goes to stdout; errors and logs to stderr. A
//! reader that closes stdout early (`lbdns task list | head -1`) ends the command quietly
//! and successfully, as `ls | head` does: every write to stdout goes through [`out`], which
//! turns a broken pipe into [`Failure::ClosedOutput`]. (Restoring SIGPIPE's default
//! instead would need `unsafe` and would also kill `serve` on a closed log pipe.)

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, CommandFactory, Parser, Subcommand};
use lbdns::api_types::{
    Group, GroupList, Refusal, Secondaries, StickinessPatch, Task, TaskList, TaskPatch,
};
use lbdns::client::{self, Client, ClientError, GroupArgs};
use lbdns::limits::LimitArgs;
use lbdns::load::{self, Sources};
use lbdns::metrics::Metrics;
use lbdns::rrl::{RateLimiter, RrlArgs};
use lbdns::server::{self, Listeners};
use lbdns::site::spec::{GroupSpec, Lined, Stickiness};
use lbdns::store::Store;
use lbdns::{api, http, watch};
use serde_json::Value;
use tracing::{info, warn};

/// `lbdns --version`: the version, the commit it was built from and the features built in.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("LBDNS_COMMIT"),
    ", features: ",
    env!("LBDNS_FEATURES"),
    ")"
);

/// An address to listen on, with the form expected when it is not one.
fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        "expected ADDR:PORT, e.g. 127.0.0.1:5353, 0.0.0.0:53 or [::1]:53 (an IP address, not a name)"
            .to_owned()
    })
}

#[derive(Parser)]
#[command(
    name = "lbdns",
    version = VERSION,
    about = "Authoritative DNS with DNS-only load balancing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of the largest command (serve's options) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve the zones and sites of a directory, with the management API.
    Serve {
        #[command(flatten)]
        dir: DirArgs,
        /// Address to answer DNS on, over UDP and TCP (repeatable).
        #[arg(long = "listen", value_name = "ADDR:PORT", default_values = ["127.0.0.1:5353"], value_parser = socket_addr)]
        listen: Vec<SocketAddr>,
        /// Address NOTIFY messages to secondaries leave from, one per family (repeatable)
        /// [default: the first --listen address of the secondary's family].
        #[arg(long, value_name = "ADDR")]
        notify_source: Vec<std::net::IpAddr>,
        /// This server's identifier in replies to queries that ask for it (NSID, RFC 5001):
        /// text, or hex:0A1B... for any bytes; in a fleet, which node answered.
        #[arg(long, value_name = "STRING")]
        nsid: Option<lbdns::dns::Nsid>,
        /// Address of the management API.
        #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8053", value_parser = socket_addr)]
        api: SocketAddr,
        /// Token every API request must carry as `Authorization: Bearer TOKEN`
        /// (surrounding whitespace is ignored; beyond loopback, 16 characters or more).
        #[arg(long, env = "LBDNS_API_TOKEN", hide_env_values = true, value_parser = api::parse_token)]
        api_token: Option<String>,
        /// A second token that may only read: GET requests, /healthz and /metrics, for
        /// monitoring; anything else with it is refused (403). Needs --api-token.
        #[arg(long, env = "LBDNS_READ_TOKEN", hide_env_values = true, value_parser = api::parse_token)]
        read_token: Option<String>,
        /// Started as root (to bind port 53), become USER once every port is bound: its
        /// user and group, no other groups, no capabilities left.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        rrl: RrlArgs,
        /// Serve the configuration a fleet shares in etcd instead of --dir, mirrored
        /// into --cache-dir (which the node also starts from when etcd is down).
        #[arg(
            long,
            value_name = "etcd[s]://HOST:PORT[,HOST:PORT...]/PREFIX",
            conflicts_with = "dir"
        )]
        store: Option<lbdns::etcd::EtcdUrl>,
        #[command(flatten)]
        etcd: EtcdArgs,
        /// This node's copy of the etcd configuration (with --store).
        #[arg(
            long,
            value_name = "DIR",
            default_value = "lbdns-cache",
            requires = "store"
        )]
        cache_dir: PathBuf,
        /// This node's name in the fleet [default: HOSTNAME-APIPORT].
        #[arg(long, value_name = "ID", requires = "store")]
        node_id: Option<String>,
    },
    /// Copy a directory's zone and site files into etcd, for nodes started with --store.
    Import {
        /// The directory holding zones/.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, value_name = "etcd[s]://HOST:PORT[,HOST:PORT...]/PREFIX")]
        store: lbdns::etcd::EtcdUrl,
        #[command(flatten)]
        etcd: EtcdArgs,
        /// Replace a configuration the prefix already holds (without it, import lists
        /// what would change and writes nothing).
        #[arg(long)]
        force: bool,
    },
    /// Copy the zone and site files kept in etcd into a directory's zones/.
    Export {
        #[arg(long, value_name = "etcd[s]://HOST:PORT[,HOST:PORT...]/PREFIX")]
        store: lbdns::etcd::EtcdUrl,
        #[command(flatten)]
        etcd: EtcdArgs,
        /// The directory to write zones/ into.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Validate a directory; print every problem as file:line: message.
    Check {
        #[command(flatten)]
        dir: DirArgs,
    },
    /// Explain the answer a client gets for a hostname, read from a directory (every
    /// origin counted up): task, fallback chain, level and why, candidates with their
    /// probability, TTL and ECS scope, as JSON.
    Explain {
        #[command(flatten)]
        dir: DirArgs,
        /// The name asked, e.g. www.example.com.
        hostname: String,
        /// A or AAAA.
        #[arg(long = "type", default_value = "A")]
        qtype: String,
        /// The client's address, as a query's source.
        #[arg(long, value_name = "IP", conflicts_with = "ecs")]
        client: Option<String>,
        /// The client as an EDNS Client Subnet prefix, e.g. 203.0.113.0/24.
        #[arg(long, value_name = "PREFIX")]
        ecs: Option<String>,
    },
    /// Compare two directories: each hostname's share of IPv4 and IPv6 clients and of
    /// answers per origin, before (--dir) and after (--against), and warnings about
    /// the directory after.
    Diff {
        #[command(flatten)]
        dir: DirArgs,
        /// The directory with the proposed change.
        #[arg(long, value_name = "DIR")]
        against: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Manage a zone's DNSSEC keys in keys/<origin>/ of the directory; a running server
    /// takes a change at its next reload (SIGHUP).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
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
    /// List the fleet: the nodes sharing this node's etcd configuration (with --store).
    Nodes {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Manage the servers allowed to transfer the zone (and notified when it changes).
    Secondaries {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: SecondariesCommand,
    },
    /// Show what the server serves and whether it is all as configured: zones and serials,
    /// tasks by state, origins down, fleet nodes; exit 1 when anything is not.
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Print a shell completion script (e.g. `lbdns completions bash > /etc/bash_completion.d/lbdns`).
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print the manual page lbdns(1) in roff (`lbdns man | man -l -`), or write it and one
    /// page per subcommand (lbdns-serve(1), ...) into a directory.
    Man {
        /// Write every page into this directory instead.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Each key: tag, role, algorithm, state and next event.
    List(KeysArgs),
    /// The DS record (digest type 2) the parent should hold, one record a line.
    Ds(KeysArgs),
    /// Start a ZSK rollover now (pre-publication: the new key signs once every cache
    /// can see it).
    RollZsk(KeysArgs),
    /// Start a KSK rollover now (both KSKs sign the DNSKEY RRset until the parent's DS
    /// has moved); with --ds-seen, say the parent now serves the new key's DS.
    RollKsk {
        #[command(flatten)]
        keys: KeysArgs,
        /// The parent serves the new KSK's DS: the old KSK leaves once its DS has left
        /// the caches.
        #[arg(long)]
        ds_seen: bool,
    },
    /// Take keys made elsewhere (BIND's K<zone>+<alg>+<tag>.key/.private) into the zone,
    /// e.g. the ZSK of a zone signed elsewhere so that its tasks can be signed.
    Import {
        #[command(flatten)]
        keys: KeysArgs,
        /// Either file of each key; the other is read from beside it.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct KeysArgs {
    /// The served directory, holding zones/ and keys/.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// The zone, e.g. example.com.
    #[arg(value_name = "ZONE", value_parser = lbdns::keys::parse_zone)]
    zone: hickory_proto::rr::Name,
}

#[derive(Subcommand)]
enum SecondariesCommand {
    /// List them.
    List,
    /// Replace them: addresses (192.0.2.53), prefixes (2001:db8::/64) or address:port
    /// for NOTIFY (192.0.2.53:5300); none at all refuses transfers to everyone.
    Set {
        /// Each allowed secondary (none: nobody may transfer).
        #[arg(value_name = "ADDRESS|PREFIX|ADDRESS:PORT")]
        secondaries: Vec<String>,
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
    /// ASN database (GeoLite2-ASN) for origins' asns, instead of the first geoip/*ASN*.mmdb.
    #[arg(long, value_name = "FILE")]
    asn_db: Option<PathBuf>,
}

/// How a client command reaches the server: shown under a heading of its own, after the
/// command's own options, in every subcommand's help.
#[derive(Args)]
#[command(next_help_heading = "Connection")]
struct ApiArgs {
    /// The API to talk to: HOST:PORT, or a URL (http://HOST:PORT).
    #[arg(
        long,
        global = true,
        env = "LBDNS_API",
        hide_env_values = true,
        default_value = "127.0.0.1:8053",
        value_parser = lbdns::client::parse_api
    )]
    api: String,
    /// The API token, if the server has one (surrounding whitespace is ignored).
    #[arg(
        long,
        global = true,
        env = "LBDNS_API_TOKEN",
        hide_env_values = true,
        value_parser = api::parse_token
    )]
    api_token: Option<String>,
    /// The site (zone) to act on; optional when the server has only one.
    #[arg(long, global = true)]
    site: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

/// What a cluster that speaks TLS or authenticates asks of its clients (with --store).
#[derive(Args)]
struct EtcdArgs {
    /// The CA certificate (PEM) that signed etcd's server certificates; needed with
    /// etcds://.
    #[arg(long, value_name = "FILE", requires = "store")]
    etcd_ca: Option<PathBuf>,
    /// This node's client certificate (PEM), for a cluster that asks for one.
    #[arg(long, value_name = "FILE", requires = "etcd_key")]
    etcd_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
    /// The etcd user to authenticate as.
    #[arg(long, value_name = "USER", requires = "etcd_password_file")]
    etcd_user: Option<String>,
    /// A file holding the user's password (a trailing newline is not part of it).
    #[arg(long, value_name = "FILE", requires = "etcd_user")]
    etcd_password_file: Option<PathBuf>,
}

impl EtcdArgs {
    /// `url` with the files and credentials these options name, read now.
    fn reach(self, url: lbdns::etcd::EtcdUrl) -> Result<lbdns::etcd::EtcdUrl, String> {
        let cert_and_key = self.etcd_cert.as_deref().zip(self.etcd_key.as_deref());
        let user = self
            .etcd_user
            .as_deref()
            .zip(self.etcd_password_file.as_deref());
        lbdns::etcd::Access::read(self.etcd_ca.as_deref(), cert_and_key, user)
            .and_then(|access| url.with_access(access))
            .map_err(|e| format!("lbdns: {e}"))
    }
}

#[derive(Subcommand)]
enum TaskCommand {
    /// List the site's tasks and their status.
    List,
    /// Show one task.
    Get {
        /// The task's id (`lbdns task list` shows them), or its hostname.
        id: String,
    },
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
        /// client_subnet: each client prefix (/24, /56) keeps its origin, picked by
        /// rendezvous hashing instead of a random draw by weight.
        #[arg(long, value_parser = ["client_subnet"])]
        stickiness: Option<String>,
    },
    /// Change some fields of a task; the others stay as they are.
    Update {
        /// The task's id (`lbdns task list` shows them), or its hostname.
        id: String,
        /// A new answered name, inside the site (the id stays).
        #[arg(long)]
        hostname: Option<String>,
        /// A new origin group.
        #[arg(long = "group")]
        group: Option<String>,
        /// A new TTL of the answers, in seconds.
        #[arg(long)]
        ttl: Option<u32>,
        /// A new number of records per answer.
        #[arg(long)]
        answers: Option<u32>,
        /// client_subnet (each client prefix keeps its origin) or none (random draws by
        /// weight).
        #[arg(long, value_parser = ["client_subnet", "none"])]
        stickiness: Option<String>,
    },
    /// Enable a task: it overrides the zone's records again.
    Enable {
        /// The task's id (`lbdns task list` shows them), or its hostname.
        id: String,
    },
    /// Disable a task: the zone's own records answer again.
    Disable {
        /// The task's id (`lbdns task list` shows them), or its hostname.
        id: String,
    },
    /// Delete a disabled task.
    Delete {
        /// The task's id (`lbdns task list` shows them), or its hostname.
        id: String,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// List the site's origin groups, and whether DNS-only tasks can use them.
    List,
    /// Show one group: its origins, their health, and the tasks that use it.
    Get {
        /// The group's name.
        name: String,
    },
    /// Create or replace a group.
    Put {
        /// The group's name, as tasks' `origin_group` names it.
        name: String,
        #[command(flatten)]
        group: GroupArgs,
        /// A JSON file with the whole group, instead of the flags above.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["origins", "fallback", "min_up", "when_all_down", "check"])]
        file: Option<PathBuf>,
    },
    /// Delete a group no task uses.
    Delete {
        /// The group's name.
        name: String,
    },
}

/// Why a command did not succeed.
enum Failure {
    /// Print this on stderr and exit non-zero.
    Error(String),
    /// The reader closed stdout: it has what it wanted; end quietly.
    ClosedOutput,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::Error(message)
    }
}

/// Writes `text` to stdout.
fn out(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Failure::ClosedOutput,
            _ => Failure::Error(format!("lbdns: cannot write the output: {e}")),
        })
}

/// Logs go to stderr, coloured only for a person at a terminal who has not set `NO_COLOR`
/// (no-color.org: present and not empty).
fn init_logging() {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    // hickory logs malformed packets one line each: lbdns counts and throttles them.
    const DEFAULT: &str = "info,hickory_proto=error";
    let (filter, refused) = match std::env::var("LBDNS_LOG") {
        Err(std::env::VarError::NotPresent) => (DEFAULT.into(), None),
        Err(std::env::VarError::NotUnicode(_)) => {
            (DEFAULT.into(), Some("LBDNS_LOG is not UTF-8".to_owned()))
        }
        Ok(text) => match log_filter(&text) {
            Ok(filter) => (filter, None),
            Err(why) => (DEFAULT.into(), Some(format!("LBDNS_LOG={text:?}: {why}"))),
        },
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && !no_color)
        .init();
    if let Some(why) = refused {
        warn!("{why}; logging at the default level (info) instead");
    }
}

/// `LBDNS_LOG` as a filter. A bare word that is not a level would be read as a target
/// name and turn every other line off (`LBDNS_LOG=verbose` logged nothing): refused.
fn log_filter(text: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare = !directive.contains(['=', ':', '[']);
        if bare && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{directive:?} is not a level ({}) or TARGET=LEVEL (e.g. lbdns=debug)",
                LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    init_logging();
    let result = match Cli::parse().command {
        Command::Check { dir } => check(dir),
        Command::Diff { dir, against, json } => diff(dir, against, json),
        Command::Explain {
            dir,
            hostname,
            qtype,
            client,
            ecs,
        } => explain(dir, &hostname, &qtype, client.as_deref(), ecs.as_deref()),
        Command::Serve {
            dir,
            listen,
            notify_source,
            nsid,
            api,
            api_token,
            read_token,
            user,
            limits,
            rrl,
            store,
            etcd,
            cache_dir,
            node_id,
        } => {
            if let Some(nsid) = nsid {
                lbdns::dns::set_nsid(nsid);
            }
            let tokens = (api_token, read_token);
            store
                .map(|url| etcd.reach(url))
                .transpose()
                .and_then(|store| {
                    let origin = Origin {
                        dir,
                        store,
                        cache_dir,
                        node_id,
                        user,
                    };
                    lbdns::dns::notify::Sources::given(&notify_source, &listen)
                        .map(lbdns::dns::notify::set_sources)
                        .map_err(|e| format!("lbdns: {e}"))
                        .and_then(|()| serve(origin, listen, api, tokens, limits, rrl))
                })
                .map_err(Failure::Error)
        }
        Command::Import {
            dir,
            store,
            etcd,
            force,
        } => match etcd.reach(store).and_then(|url| {
            lbdns::etcd::import(&dir, &url, force).map_err(|e| format!("lbdns: {e}"))
        }) {
            Ok(done) => out(&format!("{done}\n")),
            Err(e) => Err(Failure::Error(e)),
        },
        Command::Export { store, etcd, dir } => match etcd
            .reach(store)
            .and_then(|url| lbdns::etcd::export(&url, &dir).map_err(|e| format!("lbdns: {e}")))
        {
            Ok(n) => out(&format!(
                "exported {n} files into {}\n",
                dir.join("zones").display()
            )),
            Err(e) => Err(Failure::Error(e)),
        },
        Command::Keys { command } => keys(command),
        Command::Task { api, command } => task(api, command),
        Command::Group { api, command } => group(api, command),
        Command::Secondaries { api, command } => secondaries(api, command),
        Command::Nodes { api } => nodes(api),
        Command::Status { api } => return status(api),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "lbdns", &mut script);
            out(&String::from_utf8_lossy(&script))
        }
        Command::Man { out: None } => {
            let mut page = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut page) {
                Ok(()) => out(&String::from_utf8_lossy(&page)),
                Err(e) => Err(Failure::Error(format!(
                    "lbdns: cannot render the manual page: {e}"
                ))),
            }
        }
        Command::Man { out: Some(dir) } => {
            clap_mangen::generate_to(Cli::command(), &dir).map_err(|e| {
                Failure::Error(format!(
                    "lbdns: cannot write the manual pages into {}: {e}",
                    dir.display()
                ))
            })
        }
    };
    match result {
        Ok(()) | Err(Failure::ClosedOutput) => ExitCode::SUCCESS,
        Err(Failure::Error(message)) => {
            // Nothing to do if stderr is gone too; never panic over it.
            let _ = writeln!(std::io::stderr(), "{message}");
            ExitCode::FAILURE
        }
    }
}

fn sources(dir: DirArgs) -> Sources {
    Sources {
        dir: dir.dir,
        geoip: dir.geoip,
        asn_db: dir.asn_db,
    }
}

fn explain(
    dir: DirArgs,
    hostname: &str,
    qtype: &str,
    client: Option<&str>,
    ecs: Option<&str>,
) -> Result<(), Failure> {
    let question = lbdns::explain::Question::parse(hostname, Some(qtype), client, ecs)
        .map_err(|e| format!("lbdns: {e}"))?;
    let health = lbdns::health::Health::default();
    let (config, _) = load::load(&sources(dir), &health, None).map_err(|e| e.to_string())?;
    let explained = lbdns::explain::explain(&config, &health, None, None, &question)
        .map_err(|e| format!("lbdns: {e}"))?;
    out(&format!("{:#}\n", explained))
}

fn diff(dir: DirArgs, against: PathBuf, json: bool) -> Result<(), Failure> {
    let health = lbdns::health::Health::default();
    let before = sources(dir);
    let after = Sources {
        dir: against,
        ..before.clone()
    };
    let load = |s: &Sources| {
        load::load(s, &health, None)
            .map(|(config, _)| config)
            .map_err(|e| e.to_string())
    };
    let diff = lbdns::explain::diff(&load(&before)?, &load(&after)?, None);
    match json {
        true => out(&format!("{diff:#}\n")),
        false => out(&lbdns::explain::diff_table(&diff)),
    }
}

fn check(dir: DirArgs) -> Result<(), Failure> {
    let (config, _) = load::load(&sources(dir), &lbdns::health::Health::default(), None)
        .map_err(|e| e.to_string())?;
    let (tasks, enabled) = config.task_counts();
    for warning in config.zones.iter().flat_map(|z| &z.warnings) {
        eprintln!("warning: {warning}");
    }
    let signing: String = config.signing().iter().map(|l| format!("{l}\n")).collect();
    out(&format!(
        "ok: {}, {} ({enabled} enabled)\n{signing}",
        count(config.zones.len(), "zone"),
        count(tasks, "task")
    ))
}

fn keys(command: KeysCommand) -> Result<(), Failure> {
    use lbdns::keys;
    let zone = |args: &KeysArgs| keys::Zone::read(&args.dir, &args.zone);
    let text = match command {
        KeysCommand::List(args) => keys::list(&args.dir, &args.zone, &zone(&args)?),
        KeysCommand::Ds(args) => keys::ds(&args.dir, &args.zone, &zone(&args)?),
        KeysCommand::RollZsk(args) => keys::roll_zsk(&args.dir, &args.zone, &zone(&args)?),
        KeysCommand::RollKsk {
            keys: args,
            ds_seen,
        } => keys::roll_ksk(&args.dir, &args.zone, &zone(&args)?, ds_seen),
        KeysCommand::Import { keys: args, files } => keys::import(&args.dir, &args.zone, &files),
    };
    out(&text.map_err(|e| format!("lbdns: {e}"))?)
}

/// "1 zone", "2 zones".
fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Where `serve` reads its configuration: a directory, or etcd mirrored into one.
struct Origin {
    dir: DirArgs,
    store: Option<lbdns::etcd::EtcdUrl>,
    cache_dir: PathBuf,
    node_id: Option<String>,
    /// `--user`: whom to become once the ports are bound.
    user: Option<String>,
}

fn serve(
    origin: Origin,
    listen: Vec<SocketAddr>,
    api_addr: SocketAddr,
    (token, read_token): (Option<String>, Option<String>),
    limits: LimitArgs,
    rrl: RrlArgs,
) -> Result<(), String> {
    api::check_exposure(api_addr, token.as_deref()).map_err(|e| format!("lbdns: {e}"))?;
    api::check_read_token(api_addr, token.as_deref(), read_token.as_deref())
        .map_err(|e| format!("lbdns: {e}"))?;
    lbdns::status::mark_start();
    let metrics = Arc::new(Metrics::new());
    let limits = limits.resolve(&metrics);
    let not_starting =
        |e: lbdns::load::LoadError| format!("{e}\nlbdns: not starting: fix the errors above");
    // Before anything reads or tidies the directory; held until serve returns.
    let locked_dir = match origin.store {
        None => origin.dir.dir.clone(),
        Some(_) => {
            std::fs::create_dir_all(&origin.cache_dir)
                .map_err(|e| format!("lbdns: {}: {e}", origin.cache_dir.display()))?;
            origin.cache_dir.clone()
        }
    };
    let _lock = lbdns::store::lock::DirLock::acquire(&locked_dir)
        .map_err(|e| format!("lbdns: {e}\nlbdns: not starting"))?;
    let store = match origin.store {
        None => Store::open(sources(origin.dir), metrics).map_err(not_starting)?,
        Some(url) => {
            let node_id = origin.node_id.unwrap_or_else(|| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_owned())
                    .unwrap_or_else(|_| "lbdns".to_owned());
                format!("{host}-{}", api_addr.port())
            });
            let mirror = lbdns::etcd::Mirror::start(url, &origin.cache_dir, node_id)
                .map_err(|e| format!("lbdns: {e}"))?;
            let sources = Sources {
                dir: origin.cache_dir,
                geoip: origin.dir.geoip,
                asn_db: origin.dir.asn_db,
            };
            Store::open_mirrored(sources, metrics, mirror).map_err(not_starting)?
        }
    };
    let user = origin.user;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("lbdns: {e}"))?;
    runtime
        .block_on(async {
            let listeners = Listeners::bind(&listen).await?;
            let api_listener = lbdns::limits::tcp_listener(api_addr)
                .map_err(|e| anyhow::anyhow!("cannot listen for the API on {api_addr}: {e}"))?;
            if let Some(user) = &user {
                drop_privileges(user)?;
            }
            info!(addr = %api_addr, "management API listening");
            let bound = api_listener.local_addr()?;
            let router = api::router_with_read_token(store.clone(), token, read_token, bound);
            let api_task = tokio::spawn(http::serve(
                api_listener,
                router,
                limits.api,
                store.metrics(),
            ));
            let _watcher = watch::spawn(store.clone())?;
            lbdns::secondary::start(&store);
            store.health().start(
                tokio::runtime::Handle::current(),
                lbdns::health::Prober::new(),
            );
            let rate_limit = RateLimiter::new(&rrl);
            if rate_limit.is_some() {
                info!(rate = rrl.rrl_rate, slip = rrl.rrl_slip, exempt = ?rrl.rrl_exempt, "response rate limiting on");
            }
            server::run(store, listeners, limits.dns, rate_limit, shutdown_signal()).await?;
            api_task.abort();
            anyhow::Ok(())
        })
        .map_err(|e| {
            let message = format!("lbdns: {e:#}");
            if message.contains("Permission denied") && message.contains("cannot listen") {
                format!(
                    "{message}\nlbdns: ports below 1024 need root or the CAP_NET_BIND_SERVICE capability: start as root with --user USER (dropped to once the ports are bound), give the binary the capability (setcap cap_net_bind_service=+ep lbdns), or run the systemd unit (AmbientCapabilities=CAP_NET_BIND_SERVICE)"
                )
            } else {
                message
            }
        })
}

/// Becomes `user` for good once the ports are bound: its user and primary group, no
/// supplementary groups; as a user other than root, no capability is left. glibc applies
/// each change to every thread of the process.
fn drop_privileges(user: &str) -> anyhow::Result<()> {
    let name = std::ffi::CString::new(user)?;
    // SAFETY: getpwnam_r writes only into `entry` and `buf`, both ours and large enough
    // (or it says ERANGE); `found` points at `entry` or is null.
    let (uid, gid) = unsafe {
        let mut entry: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut found = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            name.as_ptr(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        );
        if rc != 0 || found.is_null() {
            anyhow::bail!("--user {user}: no such user");
        }
        (entry.pw_uid, entry.pw_gid)
    };
    // SAFETY: these calls take plain values and change only this process's credentials.
    unsafe {
        if libc::geteuid() != 0 {
            if libc::geteuid() == uid {
                return Ok(());
            }
            anyhow::bail!(
                "--user {user}: only root can become another user; start lbdns as root, or leave --user out"
            );
        }
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
        {
            anyhow::bail!(
                "--user {user}: cannot drop privileges: {}",
                std::io::Error::last_os_error()
            );
        }
        if uid != 0 && libc::setuid(0) == 0 {
            anyhow::bail!("--user {user}: root could be regained after dropping privileges");
        }
    }
    info!(user, uid, gid, "privileges dropped");
    Ok(())
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

/// Prints the API's reply: its JSON with `--json`, else the table made of it.
fn print(json: bool, value: &Value, table: impl FnOnce(&Value) -> String) -> Result<(), Failure> {
    if json {
        out(&format!(
            "{}\n",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ))
    } else {
        out(&table(value))
    }
}

/// [`print`] for a reply the table reads as `T`: JSON as the API sent it, or a table of
/// the reply decoded; a reply that does not decode is an error, not an empty table.
fn print_as<T: serde::de::DeserializeOwned>(
    json: bool,
    value: &Value,
    table: impl FnOnce(&T) -> String,
) -> Result<(), Failure> {
    if json {
        return print(json, value, |_| String::new());
    }
    let typed: T = serde_json::from_value(value.clone()).map_err(|e| {
        Failure::Error(format!(
            "lbdns: the API's reply is not what this lbdns expects ({e}): is the server another version?"
        ))
    })?;
    out(&table(&typed))
}

/// An API call that failed, as the command's error.
fn failed(error: ClientError) -> Failure {
    Failure::Error(format!("lbdns: {error}"))
}

fn task(args: ApiArgs, command: TaskCommand) -> Result<(), Failure> {
    let client = Client::new(&args.api, args.api_token);
    let site = client.site(args.site).map_err(failed)?;
    let base = format!("/v1/sites/{site}/tasks");
    let one = |task: &Task| client::task_table(std::slice::from_ref(task));
    let reply = match command {
        TaskCommand::List => {
            let v = client.call("GET", &base).map_err(failed)?;
            return print_as(args.json, &v, |list: &TaskList| {
                client::task_table(&list.tasks)
            });
        }
        TaskCommand::Get { id } => client.call("GET", &format!("{base}/{id}")),
        TaskCommand::Create {
            hostname,
            group,
            id,
            ttl,
            answers,
            disabled,
            stickiness,
        } => {
            // Created by PUT under a known id, so a retry cannot create it twice.
            let id = id.or_else(|| {
                hickory_proto::rr::Name::from_ascii(hostname.trim())
                    .ok()
                    .map(|name| lbdns::site::default_task_id(&name.to_lowercase()))
            });
            let mut body = client::task_body(id.clone(), &hostname, &group, ttl, answers, disabled);
            if stickiness.is_some() {
                body.stickiness = Some(Lined::new(Stickiness::ClientSubnet));
            }
            match &id {
                Some(id) => client.create(&format!("{base}/{id}"), &body).map_err(|e| {
                    e.hint(Refusal::DifferentTaskExists, || {
                        format!("choose another id with --id, or change task {id} with `lbdns task update {id}`")
                    })
                }),
                // Not a name: the server says what is wrong with it.
                None => client.send("POST", &base, &body),
            }
        }
        TaskCommand::Update {
            id,
            hostname,
            group,
            ttl,
            answers,
            stickiness,
        } => {
            let patch = TaskPatch {
                hostname,
                origin_group: group,
                ttl,
                answers,
                enabled: None,
                stickiness: stickiness.map(|s| match s.as_str() {
                    "client_subnet" => StickinessPatch::ClientSubnet,
                    _ => StickinessPatch::None,
                }),
            };
            if patch.is_empty() {
                return Err(Failure::Error(
                    "lbdns: task update: nothing to change: give --hostname, --group, --ttl, --answers or --stickiness"
                        .to_owned(),
                ));
            }
            client.send("PATCH", &format!("{base}/{id}"), &patch)
        }
        TaskCommand::Enable { id } => client.call("POST", &format!("{base}/{id}/enable")),
        TaskCommand::Disable { id } => client.call("POST", &format!("{base}/{id}/disable")),
        TaskCommand::Delete { id } => {
            client
                .call("DELETE", &format!("{base}/{id}"))
                .map_err(|e| {
                    e.hint(Refusal::TaskEnabled, || {
                        format!("disable it first: `lbdns task disable {id}`, then delete it")
                    })
                })
                .map_err(failed)?;
            // The API answers 204 with no body: nothing for --json to print.
            return if args.json {
                Ok(())
            } else {
                out(&format!("deleted task {id}\n"))
            };
        }
    };
    print_as(args.json, &reply.map_err(failed)?, one)
}

fn nodes(args: ApiArgs) -> Result<(), Failure> {
    let client = Client::new(&args.api, args.api_token);
    let v = client.call("GET", "/v1/nodes").map_err(failed)?;
    print_as(args.json, &v, lbdns::client::nodes_table)
}

/// `lbdns status`: exit 0 when everything is served as configured, 1 when not, 2 when
/// the server cannot be asked.
fn status(args: ApiArgs) -> ExitCode {
    let client = Client::new(&args.api, args.api_token);
    let report = match client.call("GET", "/v1/status") {
        Ok(value) => value,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "lbdns: {e}");
            return ExitCode::from(2);
        }
    };
    let shown = match serde_json::from_value::<lbdns::status::Report>(report.clone()) {
        Ok(parsed) => {
            let healthy = parsed.healthy();
            print(args.json, &report, |_| parsed.to_string()).map(|()| healthy)
        }
        Err(e) => Err(Failure::Error(format!(
            "lbdns: the server's status is not in the form this lbdns reads ({e}); are both the same version?"
        ))),
    };
    match shown {
        Ok(true) | Err(Failure::ClosedOutput) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(Failure::Error(message)) => {
            let _ = writeln!(std::io::stderr(), "{message}");
            ExitCode::from(2)
        }
    }
}

fn secondaries(args: ApiArgs, command: SecondariesCommand) -> Result<(), Failure> {
    let client = Client::new(&args.api, args.api_token);
    let site = client.site(args.site).map_err(failed)?;
    let path = format!("/v1/sites/{site}/secondaries");
    let v = match command {
        SecondariesCommand::List => client.call("GET", &path),
        SecondariesCommand::Set { secondaries } => {
            client.send("PUT", &path, &Secondaries { secondaries })
        }
    }
    .map_err(failed)?;
    print_as(args.json, &v, |list: &Secondaries| {
        match list.secondaries.is_empty() {
            true => "no secondaries: zone transfers are refused to everyone\n".to_owned(),
            false => list.secondaries.iter().map(|s| format!("{s}\n")).collect(),
        }
    })
}

fn group(args: ApiArgs, command: GroupCommand) -> Result<(), Failure> {
    let client = Client::new(&args.api, args.api_token);
    let site = client.site(args.site).map_err(failed)?;
    let base = format!("/v1/sites/{site}/origin-groups");
    match command {
        GroupCommand::List => {
            let v = client.call("GET", &base).map_err(failed)?;
            print_as(args.json, &v, |list: &GroupList| {
                client::group_table(&list.origin_groups)
            })
        }
        GroupCommand::Get { name } => {
            let v = client
                .call("GET", &format!("{base}/{name}"))
                .map_err(failed)?;
            print_as(args.json, &v, |group: &Group| {
                client::group_table(std::slice::from_ref(group))
            })
        }
        GroupCommand::Put { name, group, file } => {
            let body = match file {
                Some(path) => std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))
                    .and_then(|text| {
                        serde_json::from_str::<GroupSpec>(&text).map_err(|e| {
                            format!("{}: not an origin group as JSON: {e}", path.display())
                        })
                    }),
                None => client::group_body(&group).map_err(|e| e.to_string()),
            }
            .map_err(|e| format!("lbdns: {e}"))?;
            let v = client
                .send("PUT", &format!("{base}/{name}"), &body)
                .map_err(failed)?;
            print_as(args.json, &v, |group: &Group| {
                client::group_table(std::slice::from_ref(group))
            })
        }
        GroupCommand::Delete { name } => {
            client
                .call("DELETE", &format!("{base}/{name}"))
                .map_err(|e| {
                    e.hint(Refusal::GroupInUse, || {
                        "delete those tasks (`lbdns task disable ID`, then `lbdns task delete ID`) or move them to another group (`lbdns task update ID --group GROUP`) first".to_owned()
                    })
                })
                .map_err(failed)?;
            if args.json {
                Ok(())
            } else {
                out(&format!("deleted origin group {name}\n"))
            }
        }
    }
}
