//! `fedbank certs init`: a development consortium CA and one certificate per node, so that no
//! one has to run openssl by hand. Production consortia use their own CA with the same layout.

use anyhow::{Context, Result};
use clap::Args;
use fedbank_common::ids::NodeId;
use fedbank_transport::pki::{ConsortiumCa, DEFAULT_VALIDITY_DAYS};
use std::path::PathBuf;

/// Options of `fedbank certs init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Directory to create the CA and the node certificates in.
    #[arg(long)]
    out: PathBuf,
    /// Node ids, comma-separated (the coordinator, participants and the auditor).
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    /// Validity of the node certificates, in days.
    #[arg(long, default_value_t = DEFAULT_VALIDITY_DAYS)]
    days: i64,
}

/// Creates the CA and issues every node's certificate.
pub fn run_init(args: &InitArgs) -> Result<()> {
    let ids: Vec<NodeId> = args
        .nodes
        .iter()
        .map(|n| NodeId::new(n.trim()).with_context(|| format!("--nodes: '{n}'")))
        .collect::<Result<_>>()?;
    let ca = ConsortiumCa::create(&args.out).context("creating the consortium CA")?;
    println!("consortium CA: {}", args.out.join("ca.pem").display());
    for id in &ids {
        let paths = ca
            .issue(id, args.days)
            .with_context(|| format!("issuing the certificate of {id}"))?;
        println!(
            "{id}: {} (key {}, owner-only)",
            paths.cert.display(),
            paths.key.display()
        );
    }
    Ok(())
}
