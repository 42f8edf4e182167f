//! `fedbank audit report <run dir>`: writes the compliance officer's report of a run
//! (`fedbank_consortium::reports::audit`, which verifies and reads the evidence) and sets the
//! exit status from its verdict (see [`crate::audit`] for the codes).

use crate::audit::exit_code;
use anyhow::{Context, Result};
use clap::Args;
use fedbank_consortium::reports::audit::audit_report;
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `fedbank audit report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The run directory (`fedbank simulate --out`, or a coordinator's out_dir with the nodes'
    /// trails copied into `trails/` and their certificates into `certs/`).
    run: PathBuf,
    /// Where to write the report (default: `<run>/audit-report.md`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the report as JSON on standard output (the same content, for tools) instead of
    /// the summary lines; the Markdown report is written all the same.
    #[arg(long)]
    json: bool,
}

/// Runs the report.
pub fn run(args: &ReportArgs) -> Result<ExitCode> {
    let report = audit_report(&args.run)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run.join("audit-report.md"));
    std::fs::write(&out, &report.markdown).with_context(|| format!("writing {}", out.display()))?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.headline);
        for failure in &report.failures {
            println!("{failure}");
        }
        for f in &report.findings {
            println!("DIFFERS {f}");
        }
        for g in report
            .guarantees
            .iter()
            .filter(|g| g.state == fedbank_consortium::reports::audit::GuaranteeState::Violated)
        {
            println!("VIOLATED {}: {}", g.name, g.detail);
        }
        println!("report: {}", out.display());
    }
    Ok(ExitCode::from(exit_code(report.verdict)))
}
