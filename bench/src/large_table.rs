//! `fedbank bench large-table`: a participant with a large transaction log (10^7 rows by
//! default, generated with a seed) takes part in a segmentation job as its own `fedbank
//! participant` process, so that its peak memory is its own; the coordinator and two small
//! participants are processes beside it, on 127.0.0.1.
//!
//! The log is streamed once into per-customer summaries, so the participant's memory follows
//! its customers, not its rows. The baseline in the same run proves it: the same customers with
//! a tenth of the rows. Printed per run: rows, customers, file size, time to read the log,
//! time per round (local computation and encryption), and peak resident memory.

use crate::load::WorkingDir;
use anyhow::{bail, Context, Result};
use clap::Args;
use fedbank_common::ids::NodeId;
use fedbank_transport::pki::ConsortiumCa;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// Options of `fedbank bench large-table`.
#[derive(Args, Debug)]
pub struct LargeTableArgs {
    /// Transaction rows of the large participant.
    #[arg(long, default_value_t = 10_000_000)]
    rows: u64,
    /// Its customers.
    #[arg(long, default_value_t = 250_000)]
    customers: u64,
    /// Working directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
}

const LARGE: &str = "branch-large";
const SMALL: [&str; 2] = ["branch-a", "branch-b"];

/// Writes a transaction log of `rows` rows over `customers` customers (1997-01-01 to
/// 1998-06-30), streaming; returns its size in bytes.
fn write_log(path: &Path, rows: u64, customers: u64, seed: u64) -> Result<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(out, "customer_id,date,quantity,amount")?;
    let start = time::Date::from_calendar_date(1997, time::Month::January, 1)?;
    for _ in 0..rows {
        let customer = rng.random_range(0..customers);
        let date = start + time::Duration::days(rng.random_range(0..546));
        let quantity: u32 = rng.random_range(1..5);
        let amount = f64::from(quantity) * rng.random_range(5.0..60.0);
        writeln!(out, "C{customer:08},{date},{quantity},{amount:.2}")?;
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

fn job_file() -> String {
    let cdnow = include_str!("../../configs/segment-cdnow.toml");
    let job = cdnow.split("[simulation]").next().unwrap_or(cdnow);
    job.replace("job = \"segment-cdnow\"", "job = \"segment-large-table\"")
        .replace(
            "participants = [\"retail-bank\", \"insurer\", \"broker\", \"payments\"]",
            &format!(
                "participants = [\"{LARGE}\", \"{}\", \"{}\"]",
                SMALL[0], SMALL[1]
            ),
        )
        .replace(
            "committee = [\"retail-bank\", \"insurer\", \"broker\"]",
            &format!("committee = [\"{}\", \"{}\"]", SMALL[0], SMALL[1]),
        )
        .replace("max_rows = 10000000", "max_rows = 100000000")
}

/// One run's figures for the large participant.
struct Run {
    rows: u64,
    customers: u64,
    bytes: u64,
    write_seconds: f64,
    read_seconds: Option<f64>,
    rounds: Vec<String>,
    peak_mb: Option<f64>,
    wall_seconds: f64,
}

fn spawn(fedbank: &Path, dir: &Path, args: &[&str], name: &str) -> Result<Child> {
    Command::new(fedbank)
        .args(args)
        .current_dir(dir)
        .stdout(std::fs::File::create(dir.join(format!("{name}.log")))?)
        .stderr(std::fs::File::create(dir.join(format!("{name}.err")))?)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {name}"))
}

fn run_once(fedbank: &Path, dir: &Path, rows: u64, customers: u64) -> Result<Run> {
    std::fs::create_dir_all(dir)?;
    let ca = ConsortiumCa::create(&dir.join("certs")).context("consortium CA")?;
    for node in ["coordinator", LARGE, SMALL[0], SMALL[1]] {
        ca.issue(&NodeId::new(node)?, 1)?;
    }
    std::fs::write(dir.join("job.toml"), job_file())?;
    let written = Instant::now();
    let bytes = write_log(&dir.join(format!("{LARGE}.csv")), rows, customers, 7)?;
    let write_seconds = written.elapsed().as_secs_f64();
    for (i, small) in SMALL.iter().enumerate() {
        write_log(
            &dir.join(format!("{small}.csv")),
            20_000,
            2_000,
            100 + i as u64,
        )?;
    }
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    std::fs::write(
        dir.join("coordinator.toml"),
        format!(
            "job_file = \"job.toml\"\nid = \"coordinator\"\nlisten = \"127.0.0.1:{port}\"\n\
             certs_dir = \"certs\"\nout_dir = \"out\"\n"
        ),
    )?;
    for node in [LARGE, SMALL[0], SMALL[1]] {
        std::fs::write(
            dir.join(format!("{node}.toml")),
            format!(
                "job_file = \"job.toml\"\nid = \"{node}\"\ndata = \"{node}.csv\"\n\
                 coordinator_address = \"127.0.0.1:{port}\"\ncoordinator_id = \"coordinator\"\n\
                 certs_dir = \"certs\"\ntrail = \"out/{node}.trail\"\nconnect_attempts = 600\n"
            ),
        )?;
    }
    std::fs::create_dir_all(dir.join("out"))?;
    let started = Instant::now();
    let coordinator = spawn(
        fedbank,
        dir,
        &["coordinator", "--config", "coordinator.toml"],
        "coordinator",
    )?;
    let mut nodes = vec![("coordinator".to_owned(), coordinator)];
    for node in [LARGE, SMALL[0], SMALL[1]] {
        let config = format!("{node}.toml");
        nodes.push((
            node.to_owned(),
            spawn(fedbank, dir, &["participant", "--config", &config], node)?,
        ));
    }
    for (name, mut child) in nodes {
        if !child.wait()?.success() {
            bail!(
                "{name} failed:\n{}",
                std::fs::read_to_string(dir.join(format!("{name}.err"))).unwrap_or_default()
            );
        }
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    let log = std::fs::read_to_string(dir.join(format!("{LARGE}.log")))?;
    let number_after = |line: &str, marker: &str| -> Option<f64> {
        line.split(marker)
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let read_seconds = log
        .lines()
        .find(|l| l.contains(": read "))
        .and_then(|l| number_after(l, " in "));
    let peak_mb = log
        .lines()
        .find(|l| l.contains("peak memory"))
        .and_then(|l| number_after(l, "peak memory "));
    let rounds = log
        .lines()
        .filter(|l| l.contains("computed and encrypted in"))
        .map(|l| l.trim_start_matches(&format!("{LARGE}: ")).to_owned())
        .collect();
    Ok(Run {
        rows,
        customers,
        bytes,
        write_seconds,
        read_seconds,
        rounds,
        peak_mb,
        wall_seconds,
    })
}

/// Runs the large-table benchmark and prints its figures; `fedbank` is the `fedbank` binary
/// whose `coordinator` and `participant` subcommands run the nodes.
pub fn run(args: &LargeTableArgs, fedbank: &Path) -> Result<()> {
    let work = WorkingDir::new(args.dir.as_deref(), "large-table")?;
    let base = work.path();
    let baseline_rows = (args.rows / 10).max(args.customers);
    let mut runs = Vec::new();
    for (name, rows) in [("baseline", baseline_rows), ("large", args.rows)] {
        println!("{name}: {rows} rows over {} customers ...", args.customers);
        runs.push(run_once(fedbank, &base.join(name), rows, args.customers)?);
    }
    println!();
    println!(
        "{:>12} {:>10} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "rows", "customers", "file MB", "write s", "read s", "peak MB", "wall s"
    );
    for r in &runs {
        println!(
            "{:>12} {:>10} {:>9.0} {:>9.1} {:>9} {:>10} {:>9.1}",
            r.rows,
            r.customers,
            r.bytes as f64 / 1e6,
            r.write_seconds,
            r.read_seconds.map_or("?".into(), |s| format!("{s:.1}")),
            r.peak_mb.map_or("?".into(), |m| format!("{m:.0}")),
            r.wall_seconds
        );
    }
    for r in &runs {
        println!("\nrounds of the participant with {} rows:", r.rows);
        for round in &r.rounds {
            println!("  {round}");
        }
    }
    Ok(())
}
