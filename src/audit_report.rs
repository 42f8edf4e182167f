//! `fedbank audit report <run dir>`: writes the compliance officer's report of a run
//! (`fedbank_consortium::reports::audit`, which verifies and reads the trails) and sets the
//! exit status from its verdict.
//!
//! Exit status: 0 verified; 3 a trail fails verification; 4 the trails disagree; 5 honest nodes
//! refused messages of the coordinator; 1 unreadable.

use crate::audit::{EXIT_DISAGREE, EXIT_REFUSED, EXIT_TAMPERED};
use anyhow::{Context, Result};
use clap::Args;
use fedbank_consortium::reports::audit::{audit_report, AuditVerdict};
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `fedbank audit report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The run directory (`fedbank simulate --out`, or a coordinator's out_dir with the nodes'
    /// trails copied into `trails/`).
    run: PathBuf,
    /// Where to write the report (default: `<run>/audit-report.md`).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs the report.
pub fn run(args: &ReportArgs) -> Result<ExitCode> {
    let report = audit_report(&args.run)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run.join("audit-report.md"));
    std::fs::write(&out, &report.markdown).with_context(|| format!("writing {}", out.display()))?;
    println!("{}", report.headline);
    for (path, reason) in &report.failures {
        println!("FAILED {}: {reason}", path.display());
    }
    for f in &report.findings {
        println!("DIFFERS {f}");
    }
    println!("report: {}", out.display());
    Ok(match report.verdict {
        AuditVerdict::Tampered => ExitCode::from(EXIT_TAMPERED),
        AuditVerdict::Refused => ExitCode::from(EXIT_REFUSED),
        AuditVerdict::Disagree => ExitCode::from(EXIT_DISAGREE),
        AuditVerdict::Verified => ExitCode::SUCCESS,
    })
}
