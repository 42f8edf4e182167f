//! `fedbank`: the command-line tool of the fedbank consortium.
//!
//! Subcommands: `simulate` (a whole consortium on this machine), `coordinator` and
//! `participant` and `auditor` (one node each, for a real consortium), `certs init`,
//! `audit verify`, `audit report`, and
//! `bench secagg`. The node,
//! simulation, audit and scoring subcommands build on the same crates.

mod audit;
mod audit_report;
mod certs;
mod score;

use fedbank_consortium::{launch, simulate};

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Privacy-preserving federated learning for banks and their partners.
#[derive(Parser)]
#[command(name = "fedbank", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure the system on this machine.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The auditor's tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Consortium certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Run a whole consortium on this machine (real QUIC over 127.0.0.1) on synthetic data.
    Simulate(SimulateArgs),
    /// Rank this institution's customers with an exported propensity model (written locally).
    Score(score::ScoreArgs),
    /// Run the coordinator node of a job.
    Coordinator {
        /// Coordinator configuration file (see configs/coordinator.toml).
        #[arg(long)]
        config: std::path::PathBuf,
        /// Open a new key epoch of a job whose checkpoint is lost after its key was set up,
        /// giving the reason (recorded in the trail as `key.epoch_opened`). The job runs again
        /// from its beginning under a fresh key ceremony; the committee still refuses to
        /// decrypt a computation again over another set of institutions (docs/faults.md).
        #[arg(long, value_name = "REASON")]
        new_key_epoch: Option<String>,
    },
    /// Run the auditor's node of a compliance job with private alerts.
    Auditor {
        /// Auditor configuration file (see configs/auditor.toml).
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Run a participant institution's node.
    Participant {
        /// Participant configuration file (see configs/participant.toml).
        #[arg(long)]
        config: std::path::PathBuf,
    },
}

/// Options of `fedbank simulate`.
#[derive(clap::Args, Debug)]
struct SimulateArgs {
    /// Job file with a [simulation] table.
    #[arg(long, default_value = simulate::DEFAULT_JOB)]
    job: std::path::PathBuf,
    /// Output directory (default: runs/<job id>-<unix time>); must not exist yet.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a development consortium CA and one certificate per node id.
    Init(certs::InitArgs),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify a hash-chained, signed audit trail and cross-check it against nodes' own trails.
    /// Exit status: 0 OK, 3 a trail was changed, 4 the trails disagree, 6 a trail is cut or
    /// cannot be read.
    Verify(audit::VerifyArgs),
    /// Write the compliance officer's report of a run (Markdown, or JSON with --json): the
    /// evidence (every node with its certificate and trail, every bound file), the job, who took
    /// part in each round, every decryption, the guarantees, what happened to the data, any
    /// restart, the results, what no party saw, and a sign-off block.
    /// Exit status: 0 verified, 3 evidence changed, 4 the trails disagree, 5 the coordinator
    /// deviated, 6 evidence missing, cut or unreadable, 7 a guarantee did not hold, 1 the run
    /// directory cannot be read.
    Report(audit_report::ReportArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Secure aggregation per role (participant, coordinator, committee) against a plaintext sum
    /// and tfhe's high-level FheUint32 addition, measured in the same run.
    Secagg(fedbank_bench::secagg::SecaggArgs),
    /// A loopback load run: many participants against one coordinator process (wall time per
    /// round, coordinator peak memory, bytes received), with a smaller consortium as baseline.
    Load(fedbank_bench::load::LoadArgs),
    /// One participant with a large generated transaction log (10^7 rows) in a segmentation
    /// job: its time to read the log, time per round and peak memory, against a tenth of the
    /// rows over the same customers.
    LargeTable(fedbank_bench::large_table::LargeTableArgs),
    /// Shipped jobs over an emulated wide-area link (delay, jitter, loss, rate) against
    /// loopback: wall time per job and round trips per round.
    Wan(fedbank_bench::wan::WanArgs),
}

/// Runs the command; an error is printed once, as one line with its causes, and exits 1 (the
/// audit commands have their own documented exit codes).
fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode> {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only on a terminal: a log file gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match Cli::parse().command {
        Command::Bench(BenchCommand::Secagg(args)) => {
            fedbank_bench::secagg::run_secagg(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::LargeTable(args)) => {
            fedbank_bench::large_table::run(&args, &std::env::current_exe()?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Wan(args)) => {
            fedbank_bench::wan::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Load(args)) => {
            fedbank_bench::load::run(&args, &std::env::current_exe()?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify(args)) => audit::run_verify(&args),
        Command::Audit(AuditCommand::Report(args)) => audit_report::run(&args),
        Command::Certs(CertsCommand::Init(args)) => {
            certs::run_init(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Score(args) => {
            score::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate(args) => {
            simulate::run(&simulate::SimulateOptions::new(args.job, args.out))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Coordinator {
            config,
            new_key_epoch,
        } => {
            launch::run_coordinator_command(&config, new_key_epoch.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Auditor { config } => {
            launch::run_auditor_command(&config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Participant { config } => {
            launch::run_participant_command(&config)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
