//! A report a marketing manager can read: `report.md` with the segments' sizes, RFM profiles and
//! labels, and `segments.svg`, a chart of segment sizes and standardized profiles. Made as text
//! ([`crate::job::Job::report`]); the node that holds the result writes the files.

use super::SegmentResult;
use crate::job::{ReportFile, ReportedInstitutions, ValidJob};
use std::fmt::Write as _;

const WIDTH: f64 = 760.0;
const ROW: f64 = 44.0;
const COLORS: [&str; 3] = ["#4e79a7", "#f28e2b", "#59a14f"];

/// `report.md` and `segments.svg` of a segmentation.
pub fn segment_report(
    job: &ValidJob,
    r: &SegmentResult,
    who: &ReportedInstitutions,
) -> Vec<ReportFile> {
    let svg = chart(r);
    let total: f64 = r.segments.iter().map(|s| s.size).sum();
    let mut md = String::new();
    let _ = writeln!(md, "# Customer segments — job {}\n", job.spec().job);
    let _ = writeln!(
        md,
        "{} customers of {who} in **{} segments** (federated k-means, {} iterations, \
         inertia {:.1}). No institution's customer rows left it: every number here was decrypted \
         only as a consortium-wide aggregate of at least {} institutions, and segments smaller than \
         {} customers are never shown.\n",
        total,
        r.k,
        r.iterations,
        r.inertia,
        job.spec().min_participants,
        job.segment().map_or(0, |s| s.k_anonymity)
    );
    if let Some(reference) = &r.reference_date {
        let _ = writeln!(md, "Recency is counted to {reference}.\n");
    }
    let _ = writeln!(md, "Starting centroids: {}.\n", r.initialization);
    let _ = writeln!(md, "![segment sizes and profiles](segments.svg)\n");
    let rfm = r
        .features
        .iter()
        .map(String::as_str)
        .eq(crate::job::RFM_FEATURES);
    let columns = if rfm {
        "days since last purchase | purchase days | total spend".to_owned()
    } else {
        r.features.join(" | ")
    };
    let scored = r.segments.iter().all(|s| s.rfm_scores.is_some());
    let _ = writeln!(
        md,
        "| segment | customers | share | {columns} |{}",
        if scored { " RFM scores (1–5) |" } else { "" }
    );
    let _ = writeln!(
        md,
        "|---|---:|---:|{}{}",
        "---:|".repeat(r.features.len()),
        if scored { "---:|" } else { "" }
    );
    for s in &r.segments {
        let scores = s.rfm_scores.as_ref().map_or(String::new(), |sc| {
            format!(
                " {} |",
                sc.iter()
                    .map(|v| format!("{v:.1}"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            )
        });
        let _ = writeln!(
            md,
            "| {} | {} | {:.1}% | {} |{scores}",
            s.label,
            s.size,
            100.0 * s.size / total.max(1.0),
            s.centroid_original
                .iter()
                .map(|v| format!("{v:.1}"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    if rfm {
        let _ = writeln!(
            md,
            "
Columns are the segment's typical customer: days since the last purchase, distinct \
             purchase days, and total spend (geometric means, as the model works on log scale)."
        );
    }
    if let Some(lifecycle) = &r.lifecycle {
        let _ = writeln!(
            md,
            "\n## Lifecycle stages\n\n| stage | customers |\n|---|---:|"
        );
        for (stage, count) in lifecycle {
            let shown = count.map_or_else(
                || "withheld (fewer than k-anonymity)".to_owned(),
                |c| c.to_string(),
            );
            let _ = writeln!(md, "| {stage} | {shown} |");
        }
        let _ = writeln!(
            md,
            "\nnew: first purchase within 90 days; active / loyal: last purchase within 90 days, \
             fewer than / at least 5 purchase days; at risk: last purchase 91–365 days ago; churned: \
             more than a year ago. Stages count customers one by one by these rules; the segments \
             above group customers around centroids, so a segment and a stage of the same name \
             (\"at risk\", say) hold different customers and different counts."
        );
    }
    if let Some(selection) = &r.k_selection {
        let stopped: Vec<String> = selection
            .candidates
            .iter()
            .filter(|c| !c.converged)
            .map(|c| c.k.to_string())
            .collect();
        let runs = if stopped.is_empty() {
            "Every k was run to convergence".to_owned()
        } else {
            format!(
                "Every k was run to convergence or to its own max_iterations; k = {} stopped there \
                 before converging",
                stopped.join(", ")
            )
        };
        let _ = writeln!(
            md,
            "\n## How many segments\n\n{runs}; k = {} has the {}.\n\n\
             | k | Lloyd iterations | converged | inertia | mean silhouette |\n|---:|---:|:---:|---:|---:|",
            selection.chosen,
            match selection.criterion {
                crate::job::KCriterion::Silhouette =>
                    "highest mean silhouette (how much nearer customers are to their own segment than to the next)",
                crate::job::KCriterion::Elbow =>
                    "elbow of the inertia curve (the point after which more segments explain little more)",
            }
        );
        for c in &selection.candidates {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.1} | {:.3} |",
                c.k,
                c.iterations,
                if c.converged { "yes" } else { "no" },
                c.inertia,
                c.silhouette
            );
        }
    }
    if !r.merged_for_k_anonymity.is_empty() {
        let _ = writeln!(md, "\n## Segments merged for privacy\n");
        for note in &r.merged_for_k_anonymity {
            let _ = writeln!(md, "- {note}");
        }
    }
    let _ = writeln!(
        md,
        "\n## Convergence\n\nInertia per iteration: {}",
        r.inertia_per_round
            .iter()
            .map(|v| format!("{v:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    vec![
        ReportFile {
            name: "report.md",
            text: md,
        },
        ReportFile {
            name: "segments.svg",
            text: svg,
        },
    ]
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Left: a bar per segment for its size. Right: three bars per segment for its standardized
/// feature values (0 in the middle, ±2 standard deviations at the edges).
fn chart(r: &SegmentResult) -> String {
    let height = 70.0 + ROW * r.segments.len() as f64 + 30.0;
    let max = r.segments.iter().map(|s| s.size).fold(1.0, f64::max);
    let (size_x, size_w, prof_x, prof_w) = (170.0, 230.0, 450.0, 290.0);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{size_x}" y="24" font-weight="bold">Customers per segment</text>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{prof_x}" y="24" font-weight="bold">Profile (standard deviations from the mean)</text>"#
    );
    let rfm = r
        .features
        .iter()
        .map(String::as_str)
        .eq(crate::job::RFM_FEATURES);
    for (i, f) in r.features.iter().enumerate() {
        let x = prof_x + 100.0 * i as f64;
        let f = if rfm {
            ["recency", "frequency", "monetary"][i % 3]
        } else {
            f.as_str()
        };
        let _ = writeln!(
            svg,
            r#"<rect x="{x}" y="34" width="10" height="10" fill="{}"/><text x="{}" y="43">{}</text>"#,
            COLORS[i % 3],
            x + 14.0,
            escape(f)
        );
    }
    let mid = prof_x + prof_w / 2.0;
    let top = 60.0;
    let _ = writeln!(
        svg,
        r##"<line x1="{mid}" y1="{top}" x2="{mid}" y2="{}" stroke="#999"/>"##,
        top + ROW * r.segments.len() as f64
    );
    for (i, s) in r.segments.iter().enumerate() {
        let y = top + ROW * i as f64;
        let _ = writeln!(
            svg,
            r#"<text x="10" y="{}">{}</text>"#,
            y + 22.0,
            escape(&s.label)
        );
        let w = size_w * s.size / max;
        let _ = writeln!(
            svg,
            r##"<rect x="{size_x}" y="{}" width="{w:.1}" height="24" fill="#76b7b2"/>"##,
            y + 6.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}">{}</text>"#,
            size_x + w + 4.0,
            y + 22.0,
            s.size
        );
        let bar = (ROW - 14.0) / s.centroid_standardized.len().max(1) as f64;
        for (j, z) in s.centroid_standardized.iter().enumerate() {
            let v = z.clamp(-2.0, 2.0) / 2.0 * (prof_w / 2.0);
            let (x, w) = if v >= 0.0 { (mid, v) } else { (mid + v, -v) };
            let _ = writeln!(
                svg,
                r#"<rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{}"/>"#,
                y + 6.0 + bar * j as f64,
                bar - 1.0,
                COLORS[j % 3]
            );
        }
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">−2</text><text x="{mid}" y="{}" text-anchor="middle">0</text><text x="{}" y="{}" text-anchor="middle">+2</text>"#,
        prof_x,
        height - 12.0,
        height - 12.0,
        prof_x + prof_w,
        height - 12.0
    );
    svg.push_str("</svg>\n");
    svg
}
