//! `fedbank audit verify`: the compliance officer's check of a trail and its cross-check against
//! the participants' and committee members' own trails; and the exit codes of both audit
//! commands (docs/threat-model.md §7 lists them):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | verified |
//! | 1 | the command could not run (no such run directory, an output not writable) |
//! | 2 | wrong arguments |
//! | 3 | evidence was changed: a trail, a certificate or a bound file |
//! | 4 | the trails verify but record contributions, decryptions or keys differently |
//! | 5 | honest nodes refused messages of the coordinator (`audit report`) |
//! | 6 | evidence is missing, cut or unreadable (a trail, a file, a certificate, a trail's end) |
//! | 7 | the evidence verifies, and a guarantee did not hold (`audit report`) |

use anyhow::Result;
use clap::Args;
use fedbank_common::audit::{cross_check, verify, VerifyError};
use fedbank_consortium::reports::audit::AuditVerdict;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status when evidence was changed.
pub const EXIT_TAMPERED: u8 = 3;
/// Exit status when trails disagree.
pub const EXIT_DISAGREE: u8 = 4;
/// Exit status when honest nodes refused messages of the coordinator (it deviated from the
/// protocol; docs/threat-model.md §11).
pub const EXIT_REFUSED: u8 = 5;
/// Exit status when evidence is missing, cut or cannot be read.
pub const EXIT_INCOMPLETE: u8 = 6;
/// Exit status when a guarantee did not hold.
pub const EXIT_VIOLATED: u8 = 7;

/// The exit status of a report's verdict.
pub fn exit_code(verdict: AuditVerdict) -> u8 {
    match verdict {
        AuditVerdict::Verified => 0,
        AuditVerdict::Tampered => EXIT_TAMPERED,
        AuditVerdict::Disagree => EXIT_DISAGREE,
        AuditVerdict::Refused => EXIT_REFUSED,
        AuditVerdict::Incomplete => EXIT_INCOMPLETE,
        AuditVerdict::Violated => EXIT_VIOLATED,
    }
}

/// The exit status of a trail that fails verification: cut or unreadable is not changed.
fn failed(path: &std::path::Path, e: &VerifyError) -> ExitCode {
    match e {
        VerifyError::Io { source, .. } => {
            println!("UNREADABLE {}: {e}: {source}", path.display());
            ExitCode::from(EXIT_INCOMPLETE)
        }
        VerifyError::Truncated { .. } | VerifyError::Empty => {
            println!("MISSING {}: {e}", path.display());
            ExitCode::from(EXIT_INCOMPLETE)
        }
        _ => {
            println!("FAILED {}: {e}", path.display());
            ExitCode::from(EXIT_TAMPERED)
        }
    }
}

/// Options of `fedbank audit verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The trail to verify (usually the coordinator's).
    trail: PathBuf,
    /// Trails written by participants and committee members, to compare with it.
    #[arg(long = "cross-check", value_name = "TRAIL")]
    cross_check: Vec<PathBuf>,
    /// The public key (hex) the trail must be signed with, from the writer's certificate.
    #[arg(long, value_name = "HEX")]
    expect_key: Option<String>,
}

/// Runs the verification and prints a report.
pub fn run_verify(args: &VerifyArgs) -> Result<ExitCode> {
    let main = match verify(&args.trail, args.expect_key.as_deref()) {
        Ok(report) => report,
        Err(e) => return Ok(failed(&args.trail, &e)),
    };
    println!(
        "OK {}: {} events by {} ({}), key {}",
        args.trail.display(),
        main.events.len(),
        main.writer,
        main.role,
        main.public_key
    );
    let mut others = Vec::new();
    for path in &args.cross_check {
        match verify(path, None) {
            Ok(report) => {
                println!(
                    "OK {}: {} events by {} ({})",
                    path.display(),
                    report.events.len(),
                    report.writer,
                    report.role
                );
                others.push(report);
            }
            Err(e) => return Ok(failed(path, &e)),
        }
    }
    let (findings, in_flight): (Vec<_>, Vec<_>) = cross_check(&main, &others)
        .into_iter()
        .partition(|f| f.disagrees());
    for finding in &in_flight {
        println!("IN FLIGHT {finding}");
    }
    for finding in &findings {
        println!("DIFFERS {finding}");
    }
    if findings.is_empty() {
        if !others.is_empty() {
            println!(
                "cross-check: the {} trails agree with {}",
                others.len(),
                args.trail.display()
            );
        }
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(EXIT_DISAGREE))
    }
}
