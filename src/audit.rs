//! `fedbank audit verify`: the compliance officer's check of a trail and its cross-check against
//! the participants' and committee members' own trails.
//!
//! Exit status: 0 the trail verifies (and every cross-check agrees); 3 a trail fails
//! verification; 4 the trails verify but record contributions or decryptions differently;
//! 1 a file could not be read.

use anyhow::Result;
use clap::Args;
use fedbank_common::audit::{cross_check, verify};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status when a trail fails verification.
pub const EXIT_TAMPERED: u8 = 3;
/// Exit status when trails disagree.
pub const EXIT_DISAGREE: u8 = 4;
/// Exit status of `audit report`: every trail verifies and agrees, but honest nodes refused
/// messages of the coordinator (it deviated from the protocol; docs/threat-model.md §11).
pub const EXIT_REFUSED: u8 = 5;

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
        Err(e) => {
            println!("FAILED {}: {e}", args.trail.display());
            return Ok(ExitCode::from(EXIT_TAMPERED));
        }
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
            Err(e) => {
                println!("FAILED {}: {e}", path.display());
                return Ok(ExitCode::from(EXIT_TAMPERED));
            }
        }
    }
    let findings = cross_check(&main, &others);
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
