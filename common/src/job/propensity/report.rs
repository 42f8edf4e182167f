//! The propensity job's report for a marketing manager and a compliance review: `report.md`
//! with the coefficient table (odds ratios), the evaluation and the class balance, plus
//! `training.svg` (objective per training round) and `lift.svg` (lift by score decile). Made as
//! text ([`crate::job::Job::report`]); the node that holds the result writes the files.

use super::{Optimizer, PropensityResult};
use crate::job::{ReportFile, ReportedInstitutions, ValidJob};
use std::fmt::Write as _;

const W: f64 = 640.0;
const H: f64 = 320.0;
const PAD: f64 = 48.0;

fn svg_frame(title: &str, body: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{PAD}\" y=\"24\" font-size=\"15\">{title}</text>\n\
         <line x1=\"{PAD}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#333\"/>\n\
         <line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{y0}\" stroke=\"#333\"/>\n{body}</svg>\n",
        y0 = H - PAD,
        x1 = W - PAD / 2.0,
    )
}

/// A line chart of `values` per round (1, 2, …).
fn line_chart(title: &str, x_label: &str, objective: &[f64]) -> String {
    let (lo, hi) = objective
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let span = (hi - lo).max(1e-12);
    let n = objective.len().max(2) - 1;
    let x = |i: usize| PAD + (W - 1.5 * PAD) * i as f64 / n as f64;
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * (v - lo) / span;
    let points: Vec<String> = objective
        .iter()
        .enumerate()
        .map(|(i, &v)| format!("{:.1},{:.1}", x(i), y(v)))
        .collect();
    let mut body = format!(
        "<polyline fill=\"none\" stroke=\"#4e79a7\" stroke-width=\"2\" points=\"{}\"/>\n",
        points.join(" ")
    );
    for (i, &v) in objective.iter().enumerate() {
        let _ = writeln!(
            body,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#4e79a7\"/><text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x(i),
            y(v),
            x(i),
            H - PAD + 16.0,
            i + 1
        );
    }
    let _ = writeln!(
        body,
        "<text x=\"{PAD}\" y=\"{}\">{hi:.1}</text><text x=\"{PAD}\" y=\"{}\">{lo:.1}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{x_label}</text>",
        PAD - 6.0,
        H - PAD - 4.0,
        W / 2.0,
        H - 8.0
    );
    svg_frame(title, &body)
}

/// The training curve: the penalized objective per training round, or, under differential
/// privacy (where no loss is released), the ε spent after each noised release.
fn training_chart(r: &PropensityResult) -> String {
    match &r.privacy {
        Some(p) if r.objective_per_round.is_empty() => {
            let spent: Vec<f64> = p.releases.iter().map(|r| r.epsilon_after).collect();
            line_chart(
                &format!(
                    "Privacy spend ε after each release (budget {})",
                    p.epsilon_budget
                ),
                "release (moments, classes, Newton rounds, evaluation)",
                &spent,
            )
        }
        _ => line_chart(
            "Training objective (weighted log-loss + L2) per round",
            "training round",
            &r.objective_per_round,
        ),
    }
}

/// Bars of lift per decile, with the no-model line at 1.
fn lift_chart(r: &PropensityResult) -> String {
    let top = r
        .deciles
        .iter()
        .map(|d| d.lift)
        .fold(1.0f64, f64::max)
        .ceil();
    let bar = (W - 1.5 * PAD) / 10.0;
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * v / top;
    let mut body = String::new();
    for (i, d) in r.deciles.iter().enumerate() {
        let x = PAD + bar * i as f64;
        let _ = writeln!(
            body,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#f28e2b\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.2}</text>\
             <text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x + 4.0,
            y(d.lift),
            bar - 8.0,
            H - PAD - y(d.lift),
            x + bar / 2.0,
            y(d.lift) - 4.0,
            d.lift,
            x + bar / 2.0,
            H - PAD + 16.0,
            d.decile
        );
    }
    let _ = writeln!(
        body,
        "<line x1=\"{PAD}\" y1=\"{:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"#333\" stroke-dasharray=\"4 3\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">score decile (1 = highest scores); dashed: no model</text>",
        y(1.0),
        W - PAD / 2.0,
        y(1.0),
        W / 2.0,
        H - 8.0
    );
    svg_frame("Lift by score decile (hold-out customers)", &body)
}

/// `model.json`, `report.md`, `training.svg` and `lift.svg` of a propensity model.
pub fn propensity_report(
    job: &ValidJob,
    r: &PropensityResult,
    who: &ReportedInstitutions,
) -> Result<Vec<ReportFile>, String> {
    let model = serde_json::to_string_pretty(&r.model)
        .map_err(|e| format!("the model cannot be written as JSON: {e}"))?;
    let spec = job.spec();
    let p = job
        .propensity()
        .ok_or_else(|| "not a propensity job".to_owned())?;
    let mut md = String::new();
    let _ = writeln!(md, "# Propensity model — job {}\n", spec.job);
    let _ = writeln!(
        md,
        "Predicts `{} = {}` for the customers of {who}, trained by {} \
         ({} rounds, {}) with L2 penalty {} on standardized features. No institution's customer \
         rows or individual updates left it: {} and score histograms were \
         decrypted only as sums over at least {} institutions.\n",
        p.label,
        p.positive,
        if r.optimizer == Optimizer::FedAvg {
            "federated averaging (FedAvg, local mini-batch gradient descent)"
        } else {
            "federated Newton"
        },
        r.rounds,
        if r.converged {
            "converged"
        } else if r.privacy.as_ref().is_some_and(|p| p.stopped_by_budget) {
            "stopped by the privacy budget"
        } else {
            "stopped at max_rounds"
        },
        p.l2,
        if r.optimizer == Optimizer::FedAvg {
            "customer-weighted local models"
        } else {
            "gradients, Hessians"
        },
        spec.min_participants
    );
    let _ = writeln!(
        md,
        "## Evaluation on hold-out customers\n\n| | |\n|---|---:|\n| customers | {} ({} positive) |\n\
         | AUC | {} (± {:.4} from the histogram resolution) |\n| log-loss | {:.4} |\n| accuracy at 0.5 | {:.1}% |\n",
        r.holdout_customers,
        r.holdout_positives,
        r.auc.map_or("n/a".to_owned(), |a| format!("{a:.4}")),
        r.auc_resolution,
        r.log_loss,
        100.0 * r.accuracy
    );
    let _ = writeln!(md, "![lift by decile](lift.svg)\n");
    let _ = writeln!(
        md,
        "| decile | customers | precision | lift | share of all positives reached |\n|---:|---:|---:|---:|---:|"
    );
    for d in &r.deciles {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.1}% | {:.2} | {:.1}% |",
            d.decile,
            d.customers,
            100.0 * d.precision,
            d.lift,
            100.0 * d.cumulative_recall
        );
    }
    let _ = writeln!(
        md,
        "\n## Coefficients\n\nOdds ratios: how the odds of `{}` multiply per standard deviation of a \
         numeric feature, or for a level against its column's reference level (the first listed).\n\n\
         | term | coefficient | odds ratio |\n|---|---:|---:|",
        p.positive
    );
    for c in &r.coefficients {
        let _ = writeln!(
            md,
            "| {} | {:+.4} | {:.3} |",
            c.name, c.coefficient, c.odds_ratio
        );
    }
    let _ = writeln!(md, "\n## Training\n\n![training curve](training.svg)\n");
    if let Some(dp) = &r.privacy {
        let _ = writeln!(
            md,
            "## Differential privacy\n\nEvery aggregate carried Gaussian noise added by the institutions \
             themselves before encryption (noise multiplier z = {:.3}; each customer's design row clipped \
             to norm {}). Spent: **ε = {:.4}** of the budget {} at δ = {:e} (ρ = {:.5} zCDP){}. \
             The guarantee is for adding or removing one customer at any institution, and covers every \
             aggregate the coordinator and committee saw, the model and this evaluation.\n\n\
             | release | ρ | ε after | noise σ per quantity |\n|---|---:|---:|---|",
            dp.noise_multiplier,
            dp.clip_norm,
            dp.epsilon_spent,
            dp.epsilon_budget,
            dp.delta,
            dp.rho_spent,
            if dp.stopped_by_budget {
                "; the budget stopped training"
            } else {
                ""
            }
        );
        for release in &dp.releases {
            let sigmas: Vec<String> = release
                .noise
                .quantities
                .iter()
                .take(4)
                .map(|q| format!("{} {:.3}", q.name, q.sigma))
                .collect();
            let more = release.noise.quantities.len().saturating_sub(4);
            let _ = writeln!(
                md,
                "| {} | {:.5} | {:.4} | {}{} |",
                release.round,
                release.noise.rho,
                release.epsilon_after,
                sigmas.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            );
        }
        let _ = writeln!(md);
    }
    for note in &r.notes {
        let _ = writeln!(md, "- {note}");
    }
    let _ = writeln!(
        md,
        "Training customers: {} ({} positive); class weights (positive, negative): {:.3}, {:.3}.",
        r.training_customers, r.training_positives, r.class_weights[0], r.class_weights[1]
    );
    let imputed: Vec<String> = r
        .imputed
        .iter()
        .filter(|(_, n)| *n > 0.0)
        .map(|(f, n)| format!("{f}: {n}"))
        .collect();
    if !imputed.is_empty() {
        let _ = writeln!(
            md,
            "\nMissing values imputed with the consortium mean (training customers): {}.",
            imputed.join(", ")
        );
    }
    if !r.constant_features.is_empty() {
        let _ = writeln!(
            md,
            "\nConstant across the consortium, so without weight: {}.",
            r.constant_features.join(", ")
        );
    }
    Ok(vec![
        ReportFile {
            name: "model.json",
            text: model,
        },
        ReportFile {
            name: "report.md",
            text: md,
        },
        ReportFile {
            name: "training.svg",
            text: training_chart(r),
        },
        ReportFile {
            name: "lift.svg",
            text: lift_chart(r),
        },
    ])
}
