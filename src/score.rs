//! `fedbank score`: a participant's ranked campaign target list from an exported model and its
//! own customer table, written locally (owner-only); nothing is sent.

use anyhow::{Context, Result};
use clap::Args;
use fedbank_common::model::PropensityModel;
use fedbank_common::storage;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Largest model file read.
const MAX_MODEL_BYTES: usize = 16 << 20;

/// Options of `fedbank score`.
#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// The exported model (`model.json` of a propensity run).
    #[arg(long)]
    model: PathBuf,
    /// This institution's customer table (CSV with the model's columns).
    #[arg(long)]
    data: PathBuf,
    /// Where to write the ranked target list (CSV: the id column, then `score`).
    #[arg(long)]
    out: PathBuf,
    /// Keep only the N highest-scored customers.
    #[arg(long)]
    top: Option<usize>,
}

/// Scores and writes the target list.
pub fn run(args: &ScoreArgs) -> Result<()> {
    let bytes = storage::read_limited(&args.model, MAX_MODEL_BYTES)
        .with_context(|| format!("reading {}", args.model.display()))?;
    let model: PropensityModel = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a fedbank model file", args.model.display()))?;
    model
        .validate()
        .with_context(|| format!("{}: invalid model", args.model.display()))?;
    let scored = fedbank_participant::scoring::score_customers(&model, &args.data)?;
    let keep = args.top.unwrap_or(scored.len()).min(scored.len());
    let mut text = String::new();
    let id = model.id_column.as_deref().unwrap_or("row");
    let _ = writeln!(text, "{id},score");
    for (name, score) in &scored[..keep] {
        let quoted = if name.contains([',', '"', '\n']) {
            format!("\"{}\"", name.replace('"', "\"\""))
        } else {
            name.clone()
        };
        let _ = writeln!(text, "{quoted},{score:.6}");
    }
    storage::write_atomic(&args.out, text.as_bytes(), true)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "{}: {keep} of {} customers, ranked by the probability of {} = {}",
        args.out.display(),
        scored.len(),
        model.label,
        model.positive
    );
    Ok(())
}
