//! Writes the scale inputs of `scripts/bench scale` (BENCHMARKS.md): a site directory
//! that `lbdns check --dir DIR` accepts and whose zone files knotd loads as they are.
//!
//! ```text
//! cargo run --release --example gen-scale -- --out DIR --records 2000000
//! cargo run --release --example gen-scale -- --out DIR --sites 10000 --tasks 100000
//! ```
//!
//! - `--records N`: one zone, `big.test`, with N records besides its SOA, NS and the
//!   name server's address: half A, a quarter TXT, a quarter MX, each record on a name of
//!   its own (`a0`, `a1`, ... `t0`, ... `m0`, ...). Its site file has one weighted origin
//!   group and four tasks, one of them (`a0`) over a name the zone has.
//! - `--sites S --tasks T`: S small zones `s0.test` ... each with a site file holding one
//!   origin group; the T tasks are dealt out over the sites in turn (`lb0.s0.test`,
//!   `lb0.s1.test`, ...).
//!
//! Files go to `DIR/zones/`, which is created; the zone and site files the other input
//! left there are kept. Everything is deterministic: the same arguments write the same bytes.
//! Only std, so the server gains no dependency for it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: gen-scale --out DIR (--records N | --sites S --tasks T)";

/// What to write, from the command line.
struct Args {
    out: PathBuf,
    records: Option<u64>,
    sites: Option<u64>,
    tasks: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        out: PathBuf::new(),
        records: None,
        sites: None,
        tasks: None,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or(format!("{flag} needs a value"));
        let number = |text: String| {
            text.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {text:?}"))
        };
        match flag.as_str() {
            "--out" => args.out = PathBuf::from(value()?),
            "--records" => args.records = Some(number(value()?)?),
            "--sites" => args.sites = Some(number(value()?)?),
            "--tasks" => args.tasks = Some(number(value()?)?),
            "-h" | "--help" => return Err(USAGE.into()),
            _ => return Err(format!("unknown argument {flag:?}\n{USAGE}")),
        }
    }
    if args.out.as_os_str().is_empty() {
        return Err(format!("--out is required\n{USAGE}"));
    }
    if args.records.is_none() && args.sites.is_none() {
        return Err(USAGE.into());
    }
    if args.sites == Some(0) && args.tasks.unwrap_or(0) > 0 {
        return Err("--tasks needs at least one site".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|args| {
        let zones = args.out.join("zones");
        std::fs::create_dir_all(&zones).map_err(|e| format!("{}: {e}", zones.display()))?;
        if let Some(records) = args.records {
            big_zone(&zones, records).map_err(|e| format!("{}: {e}", zones.display()))?;
        }
        if let Some(sites) = args.sites {
            many_sites(&zones, sites, args.tasks.unwrap_or(0))
                .map_err(|e| format!("{}: {e}", zones.display()))?;
        }
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gen-scale: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The SOA, NS and name server address every generated zone starts with.
fn zone_head(out: &mut impl Write, origin: &str) -> std::io::Result<()> {
    writeln!(out, "$ORIGIN {origin}.")?;
    writeln!(out, "$TTL 3600")?;
    writeln!(
        out,
        "@ IN SOA ns1.{origin}. hostmaster.{origin}. 1 3600 600 86400 60"
    )?;
    writeln!(out, "@ IN NS ns1.{origin}.")?;
    writeln!(out, "ns1 IN A 192.0.2.53")
}

/// An IPv4 address in 10.0.0.0/8 for record `i`.
fn address(i: u64) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

fn big_zone(zones: &Path, records: u64) -> std::io::Result<()> {
    let origin = "big.test";
    let (a, txt) = (records / 2, records / 4);
    let mx = records - a - txt;
    let mut out = BufWriter::new(File::create(zones.join(format!("{origin}.zone")))?);
    zone_head(&mut out, origin)?;
    for i in 0..a {
        writeln!(out, "a{i} IN A {}", address(i))?;
    }
    for i in 0..txt {
        writeln!(out, "t{i} IN TXT \"record {i} of the scale zone\"")?;
    }
    for i in 0..mx {
        writeln!(out, "m{i} IN MX 10 mx{}.example.net.", i % 16)?;
    }
    out.into_inner()?.sync_all()?;

    let mut site = String::from(GROUP);
    site.push_str("tasks:\n");
    let names = ["lb0", "lb1", "lb2", "a0"];
    for name in names.iter().take(if a > 0 { 4 } else { 3 }) {
        site.push_str(&task(name, &format!("{name}.{origin}")));
    }
    std::fs::write(zones.join(format!("{origin}.lb.yaml")), site)
}

fn many_sites(zones: &Path, sites: u64, tasks: u64) -> std::io::Result<()> {
    for s in 0..sites {
        let origin = format!("s{s}.test");
        let mut zone = Vec::new();
        zone_head(&mut zone, &origin)?;
        writeln!(zone, "@ IN MX 10 mail")?;
        writeln!(zone, "@ IN TXT \"v=spf1 mx -all\"")?;
        writeln!(zone, "www IN A {}", address(s))?;
        writeln!(zone, "mail IN A {}", address(s))?;
        std::fs::write(zones.join(format!("{origin}.zone")), zone)?;

        let mut site = String::from(GROUP);
        site.push_str("tasks:\n");
        // Site s holds tasks s, s + sites, s + 2 * sites, ...
        let own = tasks / sites + u64::from(s < tasks % sites);
        for k in 0..own {
            site.push_str(&task(&format!("lb{k}"), &format!("lb{k}.{origin}")));
        }
        if own == 0 {
            site.push_str("  []\n");
        }
        std::fs::write(zones.join(format!("{origin}.lb.yaml")), site)?;
    }
    Ok(())
}

/// The one origin group of every generated site.
const GROUP: &str = "\
origin_groups:
  web:
    policy: weight
    origins:
      - { address: 192.0.2.1, weight: 1 }
      - { address: 192.0.2.2, weight: 2 }
      - { address: 192.0.2.3, weight: 3 }
";

fn task(id: &str, hostname: &str) -> String {
    format!("  - {{ id: {id}, hostname: {hostname}, origin_group: web, ttl: 60 }}\n")
}
