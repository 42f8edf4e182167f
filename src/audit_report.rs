//! `fedbank audit report <run dir>`: the compliance officer's report of a run, in Markdown.
//!
//! It verifies every trail of the run (hash chain, signatures, sequence), cross-checks the
//! coordinator's records against every node's own, and then reads, from the coordinator's trail
//! only, who took part in each round, every decryption with its manifest and approvals, the
//! privacy guarantees that held, the results and what no party saw — each claim with the trail
//! events (writer and seq) that show it. A run whose trails fail verification is reported as
//! such, naming the event, and nothing else in it is vouched for.
//!
//! Exit status: 0 verified; 3 a trail fails verification; 4 the trails disagree; 5 honest nodes
//! refused messages of the coordinator; 1 unreadable.

use crate::audit::{EXIT_DISAGREE, EXIT_REFUSED, EXIT_TAMPERED};
use anyhow::{Context, Result};
use clap::Args;
use fedbank_common::audit::{cross_check, verify, AuditEvent, TrailReport};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
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

fn s(e: &AuditEvent, name: &str) -> String {
    match e.fields.get(name) {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

fn list(e: &AuditEvent, name: &str) -> Vec<String> {
    e.fields
        .get(name)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn refs(events: &[&AuditEvent], writer: &str) -> String {
    let seqs: Vec<String> = events.iter().map(|e| e.seq.to_string()).collect();
    match seqs.len() {
        0 => "no event".to_owned(),
        n if n > 12 => format!("{writer} seq {} … {} ({n} events)", seqs[0], seqs[n - 1]),
        _ => format!("{writer} seq {}", seqs.join(", ")),
    }
}

fn short(digest: &str) -> &str {
    digest.get(..16).unwrap_or(digest)
}

/// Runs the report.
pub fn run(args: &ReportArgs) -> Result<ExitCode> {
    let trails_dir = args.run.join("trails");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&trails_dir)
        .with_context(|| format!("reading {}", trails_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "trail"))
        .collect();
    paths.sort();
    let mut verified: Vec<(PathBuf, TrailReport)> = Vec::new();
    let mut failures: Vec<(PathBuf, String)> = Vec::new();
    for path in &paths {
        match verify(path, None) {
            Ok(r) => verified.push((path.clone(), r)),
            Err(e) => failures.push((path.clone(), e.to_string())),
        }
    }
    let coordinator = verified
        .iter()
        .position(|(_, r)| r.role == "coordinator")
        .map(|i| verified.remove(i));
    let findings = match &coordinator {
        Some((_, c)) => cross_check(
            c,
            &verified.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
        ),
        None => Vec::new(),
    };
    // What honest nodes refused of the coordinator: evidence that it deviated.
    let refusals: Vec<(String, String, String)> = verified
        .iter()
        .flat_map(|(_, r)| {
            r.events
                .iter()
                .filter(|e| e.event == "message.refused" || e.event == "decryption.refused")
                .map(move |e| {
                    let what = if e.event == "message.refused" {
                        s(e, "message")
                    } else {
                        format!("decryption of round {}", e.fields["round"])
                    };
                    (r.writer.clone(), what, s(e, "reason"))
                })
        })
        .collect();
    let coordinator_name = coordinator
        .as_ref()
        .map_or_else(|| "coordinator".to_owned(), |(_, c)| c.writer.clone());
    let result: Option<Value> = std::fs::read_to_string(args.run.join("result.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());

    let mut md = String::new();
    let title = result
        .as_ref()
        .and_then(|r| r["job"].as_str())
        .unwrap_or("unknown job");
    let _ = writeln!(md, "# Audit report: job {title}\n");
    let verdict = if !failures.is_empty() {
        format!(
            "**FAILED VERIFICATION.** {} of {} trails were altered after they were written; nothing below is vouched for by them.",
            failures.len(),
            paths.len()
        )
    } else if coordinator.is_none() {
        "**FAILED VERIFICATION.** No coordinator trail was found in this run.".to_owned()
    } else if !refusals.is_empty() {
        format!(
            "**COORDINATOR DEVIATED.** Every trail verifies, and honest nodes refused {} messages of the coordinator `{coordinator_name}`; see \"Refused by honest nodes\"{}.",
            refusals.len(),
            if findings.is_empty() {
                String::new()
            } else {
                format!(
                    ". Its records also differ from the nodes' own in {} places",
                    findings.len()
                )
            }
        )
    } else if !findings.is_empty() {
        format!(
            "**TRAILS DISAGREE.** Every trail verifies, but the coordinator's records differ from the nodes' own in {} places.",
            findings.len()
        )
    } else {
        format!(
            "**VERIFIED.** All {} trails verify (hash chain, Ed25519 signatures, sequence) and the coordinator's records agree with every node's own trail (participants, committee members and, where there is one, the auditor).",
            paths.len()
        )
    };
    let _ = writeln!(md, "{verdict}\n");
    for (path, reason) in &failures {
        let _ = writeln!(md, "- FAILED `{}`: {reason}", path.display());
    }

    let _ = writeln!(md, "\n## Trails examined\n");
    let _ = writeln!(
        md,
        "| trail | writer | role | events | signing key | verification |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for (path, r) in coordinator.iter().chain(verified.iter()) {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | `{}…` | OK |",
            path.file_name().unwrap_or_default().to_string_lossy(),
            r.writer,
            r.role,
            r.events.len(),
            short(&r.public_key)
        );
    }
    for (path, reason) in &failures {
        let _ = writeln!(
            md,
            "| `{}` | | | | | FAILED: {reason} |",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
    }
    if coordinator.is_some() {
        let _ = writeln!(md, "\n## Cross-check against the nodes' own trails\n");
        if findings.is_empty() {
            let _ = writeln!(md, "Every contribution each participant recorded sending is recorded by the coordinator with the same digest, and nothing else; every partial decryption a member recorded releasing is recorded with the same manifest; every encrypted alert list and the auditor's key and decryption match.");
        }
        for f in &findings {
            let _ = writeln!(md, "- DIFFERS: {f}");
        }
    }
    if !refusals.is_empty() {
        let _ = writeln!(md, "\n## Refused by honest nodes\n");
        let _ = writeln!(md, "Each line is a message of the coordinator `{coordinator_name}` that a node refused and wrote to its own signed trail, with the reason it gave. An honest coordinator sends none of these (docs/threat-model.md §11).\n");
        let _ = writeln!(md, "| node | refused | reason |");
        let _ = writeln!(md, "|---|---|---|");
        for (node, what, reason) in &refusals {
            let _ = writeln!(md, "| {node} | {what} | {} |", reason.replace('|', "/"));
        }
    }
    if let (Some((_, c)), true) = (&coordinator, failures.is_empty()) {
        body(&mut md, c, &verified, result.as_ref());
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run.join("audit-report.md"));
    std::fs::write(&out, &md).with_context(|| format!("writing {}", out.display()))?;
    println!("{}", verdict.replace("**", ""));
    for (path, reason) in &failures {
        println!("FAILED {}: {reason}", path.display());
    }
    for f in &findings {
        println!("DIFFERS {f}");
    }
    println!("report: {}", out.display());
    Ok(if !failures.is_empty() || coordinator.is_none() {
        ExitCode::from(EXIT_TAMPERED)
    } else if !refusals.is_empty() {
        ExitCode::from(EXIT_REFUSED)
    } else if !findings.is_empty() {
        ExitCode::from(EXIT_DISAGREE)
    } else {
        ExitCode::SUCCESS
    })
}

fn body(
    md: &mut String,
    c: &TrailReport,
    nodes: &[(PathBuf, TrailReport)],
    result: Option<&Value>,
) {
    let w = c.writer.as_str();
    let of =
        |kind: &str| -> Vec<&AuditEvent> { c.events.iter().filter(|e| e.event == kind).collect() };
    let started = of("job.started");
    let job = started.first().copied();
    let _ = writeln!(md, "\n## The job\n");
    if let Some(j) = job {
        let _ = writeln!(
            md,
            "- job **{}**, kind **{}**, started {} ({})",
            s(j, "job"),
            s(j, "kind"),
            j.time,
            refs(&[j], w)
        );
        let _ = writeln!(md, "- configuration digest `{}`: every participant's Hello carried the same digest, or it was refused", s(j, "config_digest"));
        let _ = writeln!(md, "- participants: {}", list(j, "participants").join(", "));
        let _ = writeln!(
            md,
            "- key committee: {} (each holds one share of the decryption key; all are needed)",
            list(j, "committee").join(", ")
        );
        let _ = writeln!(
            md,
            "- crypto profile **{}**: {}",
            s(j, "profile"),
            profile_text(&s(j, "profile"))
        );
        if !s(j, "auditor").is_empty() {
            let _ = writeln!(
                md,
                "- auditor: {} (holds the private-alert key; no data)",
                s(j, "auditor")
            );
        }
    }
    for e in of("job.completed").into_iter().chain(of("job.failed")) {
        let _ = writeln!(
            md,
            "- {} at {} ({}){}",
            e.event,
            e.time,
            refs(&[e], w),
            if e.event == "job.completed" {
                format!("; result digest `{}`", s(e, "result_digest"))
            } else {
                format!(": {}", s(e, "reason"))
            }
        );
    }

    let _ = writeln!(md, "\n## Who took part in each round\n");
    let _ = writeln!(
        md,
        "| round | computed | asked | contributed | dropped | events |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    let mut rounds: BTreeMap<u64, Vec<&AuditEvent>> = BTreeMap::new();
    for e in &c.events {
        if let Some(r) = e.fields.get("round").and_then(Value::as_u64) {
            rounds.entry(r).or_default().push(e);
        }
    }
    for (round, events) in &rounds {
        let quantity = events
            .iter()
            .find(|e| e.event == "round.started")
            .map(|e| s(e, "quantity"))
            .unwrap_or_default();
        let asked: Vec<String> = events
            .iter()
            .filter(|e| e.event == "round.started")
            .flat_map(|e| list(e, "asked"))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let got: Vec<String> = events
            .iter()
            .filter(|e| matches!(e.event.as_str(), "contribution.received" | "alert.received"))
            .map(|e| s(e, "node"))
            .collect();
        let dropped: Vec<String> = events
            .iter()
            .filter(|e| e.event == "participant.dropped")
            .map(|e| format!("{} ({})", s(e, "node"), s(e, "reason")))
            .collect();
        let _ = writeln!(
            md,
            "| {round} | {quantity} | {} | {} | {} | {} |",
            asked.len(),
            got.join(", "),
            if dropped.is_empty() {
                "none".to_owned()
            } else {
                dropped.join("; ")
            },
            refs(events, w)
        );
    }

    let _ = writeln!(md, "\n## Every decryption\n");
    let _ = writeln!(
        md,
        "| round | quantity | manifest | contributors | committee approvals | decrypted |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    let mut smallest = usize::MAX;
    let mut slots: BTreeMap<(String, String), usize> = BTreeMap::new();
    for req in of("decryption.requested") {
        let (round, quantity, manifest) = (s(req, "round"), s(req, "quantity"), s(req, "manifest"));
        let approvals: Vec<&AuditEvent> = c
            .events
            .iter()
            .filter(|e| e.event == "decryption.approved" && s(e, "manifest") == manifest)
            .collect();
        let decrypted: Vec<&AuditEvent> = c
            .events
            .iter()
            .filter(|e| e.event == "aggregate.decrypted" && s(e, "manifest") == manifest)
            .collect();
        let n = list(req, "contributors").len();
        if !decrypted.is_empty() {
            smallest = smallest.min(n);
            *slots.entry((round.clone(), quantity.clone())).or_default() += 1;
        }
        let _ = writeln!(
            md,
            "| {round} | {quantity} | `{}…` | {n}: {} | {} | {} |",
            short(&manifest),
            list(req, "contributors").join(", "),
            approvals
                .iter()
                .map(|e| s(e, "node"))
                .collect::<Vec<_>>()
                .join(", "),
            if decrypted.is_empty() {
                "no".to_owned()
            } else {
                refs(&decrypted, w)
            }
        );
    }
    let tallies = of("alert.tally_requested");
    for t in &tallies {
        let decided: Vec<&AuditEvent> = c
            .events
            .iter()
            .filter(|e| e.event == "alert.decrypted" && s(e, "manifest") == s(t, "manifest"))
            .collect();
        let n = list(t, "contributors").len();
        smallest = smallest.min(n);
        let _ = writeln!(
            md,
            "| {} | alert counts | `{}…` | {n}: {} | auditor {} | {} |",
            s(t, "round"),
            short(&s(t, "manifest")),
            list(t, "contributors").join(", "),
            s(t, "auditor"),
            if decided.is_empty() {
                "no".to_owned()
            } else {
                format!(
                    "{} → {}",
                    refs(&decided, w),
                    decided[0]
                        .fields
                        .get("institutions_over_limit")
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                )
            }
        );
    }

    let _ = writeln!(md, "\n## Privacy guarantees that held\n");
    let min: usize = job
        .and_then(|j| j.fields.get("min_participants"))
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    let decrypts = of("aggregate.decrypted");
    if smallest == usize::MAX {
        let _ = writeln!(md, "- No aggregate was decrypted.");
    } else {
        let _ = writeln!(md, "- **Minimum contributors per aggregate: {} {} {min}** (`min_participants`). Every decryption above lists its contributors; each committee member checked the count itself before releasing its share ({}).",
            smallest, if smallest >= min { "≥" } else { "< — VIOLATED:" }, refs(&decrypts, w));
    }
    let twice: Vec<String> = slots
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|((r, q), n)| format!("round {r} {q} ×{n}"))
        .collect();
    let _ = writeln!(
        md,
        "- **One decryption per (round, quantity):** {}",
        if twice.is_empty() {
            "held (a second request for a slot with another contributor set would reveal a difference of two sums; members refuse it)".to_owned()
        } else {
            format!("VIOLATED: {}", twice.join(", "))
        }
    );
    match job
        .and_then(|j| j.fields.get("k_anonymity"))
        .and_then(Value::as_u64)
    {
        Some(k) => {
            let _ = writeln!(md, "- **k-anonymity:** segments with fewer than {k} customers are not released (merged or withheld, see the results).");
        }
        None => {
            let _ = writeln!(md, "- **k-anonymity:** not applicable to this job kind (it releases no per-segment figures).");
        }
    }
    match of("privacy.spent").last() {
        Some(p) => {
            let _ = writeln!(
                md,
                "- **Differential privacy:** ε = {} spent of a budget of {} (δ = {}), {}.",
                s(p, "epsilon_spent"),
                s(p, "epsilon_budget"),
                s(p, "delta"),
                refs(&of("privacy.spent"), w)
            );
        }
        None => {
            let _ = writeln!(md, "- **Differential privacy:** not requested by this job.");
        }
    }
    if let Some(j) = job {
        let _ = writeln!(
            md,
            "- **Crypto profile:** {} ({}).",
            s(j, "profile"),
            profile_text(&s(j, "profile"))
        );
    }

    if let Some(r) = result {
        let _ = writeln!(md, "\n## Results\n");
        if let Some(rules) = r["rules"].as_array() {
            let _ = writeln!(md, "| rule | what it checks | violations | customers affected | contacts examined | rate | institutions over the limit |");
            let _ = writeln!(md, "|---|---|---|---|---|---|---|");
            for rule in rules {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {:.3} % | {} |",
                    rule["rule"].as_str().unwrap_or(""),
                    rule["description"].as_str().unwrap_or(""),
                    rule["violations"],
                    rule["customers_affected"],
                    rule["contacts_examined"],
                    100.0 * rule["violation_rate"].as_f64().unwrap_or(0.0),
                    rule["institutions_over_limit"].as_u64().map_or(
                        "no alert".to_owned(),
                        |n| format!("{n} of {}", r["contributors"])
                    )
                );
            }
        } else if let Some(auc) = r["auc"].as_f64() {
            let _ = writeln!(md, "- propensity model: hold-out AUC {auc:.4}, {} rounds; model digest in job.completed", r["rounds"]);
        } else if let Some(k) = r["k"].as_u64() {
            let _ = writeln!(
                md,
                "- {k} segments; sizes {}",
                r["segments"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .map(|s| s["size"].to_string())
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default()
            );
        } else {
            let _ = writeln!(md, "- see `result.json`");
        }
    }

    let _ = writeln!(md, "\n## What no party saw, and how that is enforced\n");
    let sent: usize = nodes
        .iter()
        .map(|(_, r)| {
            r.events
                .iter()
                .filter(|e| e.event == "contribution.sent")
                .count()
        })
        .sum();
    let alerts_sent: usize = nodes
        .iter()
        .map(|(_, r)| r.events.iter().filter(|e| e.event == "alert.sent").count())
        .sum();
    let _ = writeln!(md, "- **No raw row and no per-customer value left any institution.** Participants only ever sent encrypted contributions ({sent} `contribution.sent` events in their own trails, each matched above by the coordinator's `contribution.received` with the same digest){}. Local results (segment assignments, model figures, compliance reports) were written at each institution and never sent.",
        if alerts_sent > 0 { format!(" and rates encrypted under the auditor's key ({alerts_sent} `alert.sent`)") } else { String::new() });
    let _ = writeln!(md, "- **No individual update was decrypted, by anyone.** The coordinator holds no key share: the joint key was formed from the committee's public shares ({}). It can only ask for the decryption of a *sum*, and every member refuses a manifest with fewer than {min} contributors or a second manifest for the same slot; each decryption above shows its contributors and every member's approval, and the members' own trails agree.", refs(&of("key.setup"), w));
    if !tallies.is_empty() {
        let _ = writeln!(md, "- **No institution's violation rate was decrypted.** Rates were encrypted under the auditor's compact public key ({}); the coordinator, holding only the matching server key, compared them with the limits by programmable bootstrapping and added the bits ({}); the auditor decrypted only the per-rule counts, once, over {} institutions ({}), and its own trail records the same manifest.",
            refs(&of("alert.keys"), w), refs(&of("alert.received"), w), tallies.first().map_or(0, |t| list(t, "contributors").len()), refs(&of("alert.decrypted"), w));
    }
    let _ = writeln!(md, "- **The auditor** (who reads this report) sees the trails, the results and the alert counts: no row, no update, no single institution's figure.");
}

fn profile_text(profile: &str) -> &'static str {
    match profile {
        "strict" => "RLWE threshold encryption on tfhe core_crypto, u128 ciphertexts, polynomial size 4096, TUniform(30) noise, statistical smudging of 2^40 × the aggregate noise in every partial decryption",
        "fast" => "RLWE threshold encryption on tfhe core_crypto, u64 ciphertexts, polynomial size 2048, tfhe's V1_8 PKE parameters, heuristic smudging",
        _ => "unknown profile",
    }
}
