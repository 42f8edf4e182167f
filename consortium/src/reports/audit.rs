//! The compliance officer's report of a run, in Markdown (`fedbank audit report`).
//!
//! It verifies every trail of the run (hash chain, signatures, sequence), cross-checks the
//! coordinator's records against every node's own, and then reads, from the coordinator's trail
//! only, who took part in each round, every decryption with its manifest and approvals, the
//! privacy guarantees that held, the results and what no party saw — each claim with the trail
//! events (writer and seq) that show it. A run whose trails fail verification is reported as
//! such, naming the event, and nothing else in it is vouched for.
//!
//! What it does not do: write the report or choose an exit status; the CLI does both from the
//! [`AuditReport`] it returns.

use fedbank_common::audit::events::{
    self as trail, check_fields, AlertDecrypted, PrivacySpent, TrailEvent,
};
use fedbank_common::audit::{cross_check, verify, AuditEvent, CrossCheckFinding, TrailReport};
use fedbank_common::ids::NodeId;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What the report concludes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditVerdict {
    /// Every trail verifies and the coordinator's records agree with every node's own.
    Verified,
    /// A trail fails verification, or there is no coordinator trail.
    Tampered,
    /// Every trail verifies, and honest nodes refused messages of the coordinator.
    Refused,
    /// Every trail verifies, but the coordinator's records differ from the nodes' own.
    Disagree,
}

/// A run's audit report.
#[derive(Clone, Debug)]
pub struct AuditReport {
    /// The conclusion.
    pub verdict: AuditVerdict,
    /// The conclusion in one sentence.
    pub headline: String,
    /// Trails that fail verification, with the reason.
    pub failures: Vec<(PathBuf, String)>,
    /// Where the coordinator's records differ from the nodes' own.
    pub findings: Vec<CrossCheckFinding>,
    /// The whole report.
    pub markdown: String,
}

/// Why a run directory cannot be reported on at all.
#[derive(Debug, thiserror::Error)]
#[error("reading {}", path.display())]
pub struct AuditReportError {
    /// The directory or file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// The events of `E`'s kind in `events` that decode, each with its trail line.
fn typed<E: TrailEvent>(events: &[AuditEvent]) -> Vec<(&AuditEvent, E)> {
    events
        .iter()
        .filter_map(|e| Some((e, e.read::<E>()?.ok()?)))
        .collect()
}

fn lines<'a, E>(events: &[(&'a AuditEvent, E)]) -> Vec<&'a AuditEvent> {
    events.iter().map(|(e, _)| *e).collect()
}

fn names(nodes: &[NodeId]) -> String {
    nodes
        .iter()
        .map(NodeId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
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

/// The report of the run in `run` (its `trails/` and `result.json`).
pub fn audit_report(run: &Path) -> Result<AuditReport, AuditReportError> {
    let trails_dir = run.join("trails");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&trails_dir)
        .map_err(|source| AuditReportError {
            path: trails_dir.clone(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "trail"))
        .collect();
    paths.sort();
    let mut verified: Vec<(PathBuf, TrailReport)> = Vec::new();
    let mut failures: Vec<(PathBuf, String)> = Vec::new();
    for path in &paths {
        match verify(path, None) {
            // A signed event whose fields are not those of its kind is read by nothing below:
            // the trail fails rather than lose a cross-check silently.
            Ok(r) => match r.events.iter().find_map(|e| check_fields(e).err()) {
                Some(unreadable) => failures.push((path.clone(), unreadable.to_string())),
                None => verified.push((path.clone(), r)),
            },
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
            let messages = typed::<trail::MessageRefused>(&r.events)
                .into_iter()
                .map(|(_, e)| (r.writer.clone(), e.message, e.reason));
            let decryptions = typed::<trail::DecryptionRefused>(&r.events)
                .into_iter()
                .map(|(_, e)| {
                    let what = format!("decryption of round {}", e.round);
                    (r.writer.clone(), what, e.reason)
                });
            messages.chain(decryptions).collect::<Vec<_>>()
        })
        .collect();
    let coordinator_name = coordinator
        .as_ref()
        .map_or_else(|| "coordinator".to_owned(), |(_, c)| c.writer.clone());
    let result: Option<Value> = std::fs::read_to_string(run.join("result.json"))
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
    let verdict_kind = if !failures.is_empty() || coordinator.is_none() {
        AuditVerdict::Tampered
    } else if !refusals.is_empty() {
        AuditVerdict::Refused
    } else if !findings.is_empty() {
        AuditVerdict::Disagree
    } else {
        AuditVerdict::Verified
    };
    Ok(AuditReport {
        verdict: verdict_kind,
        headline: verdict.replace("**", ""),
        failures,
        findings,
        markdown: md,
    })
}

fn body(
    md: &mut String,
    c: &TrailReport,
    nodes: &[(PathBuf, TrailReport)],
    result: Option<&Value>,
) {
    let w = c.writer.as_str();
    let started = typed::<trail::JobStarted>(&c.events);
    let job = started.first().map(|(_, j)| j);
    let _ = writeln!(md, "\n## The job\n");
    if let Some((line, j)) = started.first() {
        let _ = writeln!(
            md,
            "- job **{}**, kind **{}**, started {} ({})",
            j.job,
            j.kind,
            line.time,
            refs(&[line], w)
        );
        let _ = writeln!(md, "- configuration digest `{}`: every participant's Hello carried the same digest, or it was refused", j.config_digest);
        let _ = writeln!(md, "- participants: {}", names(&j.participants));
        let _ = writeln!(
            md,
            "- key committee: {} (each holds one share of the decryption key; all are needed)",
            names(&j.committee)
        );
        let _ = writeln!(
            md,
            "- crypto profile **{}**: {}",
            j.profile,
            profile_text(&j.profile)
        );
        if let Some(auditor) = &j.auditor {
            let _ = writeln!(
                md,
                "- auditor: {auditor} (holds the private-alert key; no data)"
            );
        }
    }
    for (e, done) in typed::<trail::JobCompleted>(&c.events) {
        let _ = writeln!(
            md,
            "- {} at {} ({}); result digest `{}`",
            e.event,
            e.time,
            refs(&[e], w),
            done.result_digest
        );
    }
    for (e, failed) in typed::<trail::JobFailed>(&c.events) {
        let _ = writeln!(
            md,
            "- {} at {} ({}): {}",
            e.event,
            e.time,
            refs(&[e], w),
            failed.reason
        );
    }

    let _ = writeln!(md, "\n## Who took part in each round\n");
    let _ = writeln!(
        md,
        "| round | computed | asked | contributed | dropped | events |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    #[derive(Default)]
    struct RoundRow<'a> {
        quantity: String,
        asked: std::collections::BTreeSet<String>,
        got: Vec<String>,
        dropped: Vec<String>,
        events: Vec<&'a AuditEvent>,
    }
    let mut rounds: BTreeMap<u32, RoundRow> = BTreeMap::new();
    for (e, r) in typed::<trail::RoundStarted>(&c.events) {
        let row = rounds.entry(r.round).or_default();
        if row.quantity.is_empty() {
            row.quantity = r.quantity;
        }
        row.asked.extend(r.asked.iter().map(|n| n.to_string()));
        row.events.push(e);
    }
    for (e, r) in typed::<trail::RosterFixed>(&c.events) {
        rounds.entry(r.round).or_default().events.push(e);
    }
    for (e, r) in typed::<trail::AggregateDecrypted>(&c.events) {
        rounds.entry(r.round).or_default().events.push(e);
    }
    for (e, r) in typed::<trail::ContributionReceived>(&c.events) {
        let row = rounds.entry(r.round).or_default();
        row.got.push(r.node.to_string());
        row.events.push(e);
    }
    for (e, r) in typed::<trail::AlertReceived>(&c.events) {
        let row = rounds.entry(r.round).or_default();
        row.got.push(r.node.to_string());
        row.events.push(e);
    }
    for (e, r) in typed::<trail::ParticipantDropped>(&c.events) {
        let row = rounds.entry(r.round).or_default();
        row.dropped.push(format!("{} ({})", r.node, r.reason));
        row.events.push(e);
    }
    for (round, row) in &mut rounds {
        row.events.sort_by_key(|e| e.seq);
        let _ = writeln!(
            md,
            "| {round} | {} | {} | {} | {} | {} |",
            row.quantity,
            row.asked.len(),
            row.got.join(", "),
            if row.dropped.is_empty() {
                "none".to_owned()
            } else {
                row.dropped.join("; ")
            },
            refs(&row.events, w)
        );
    }

    let _ = writeln!(md, "\n## Every decryption\n");
    let _ = writeln!(
        md,
        "| round | quantity | manifest | contributors | committee approvals | decrypted |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    let mut smallest = usize::MAX;
    let mut slots: BTreeMap<(u32, String), usize> = BTreeMap::new();
    let approvals = typed::<trail::DecryptionApproved>(&c.events);
    let decrypts = typed::<trail::AggregateDecrypted>(&c.events);
    for (_, req) in typed::<trail::DecryptionRequested>(&c.events) {
        let approved: Vec<&str> = approvals
            .iter()
            .filter(|(_, a)| a.manifest == req.manifest)
            .map(|(_, a)| a.node.as_str())
            .collect();
        let decrypted: Vec<&AuditEvent> = decrypts
            .iter()
            .filter(|(_, d)| d.manifest == req.manifest)
            .map(|(e, _)| *e)
            .collect();
        let n = req.contributors.len();
        if !decrypted.is_empty() {
            smallest = smallest.min(n);
            *slots.entry((req.round, req.quantity.clone())).or_default() += 1;
        }
        let _ = writeln!(
            md,
            "| {} | {} | `{}…` | {n}: {} | {} | {} |",
            req.round,
            req.quantity,
            short(&req.manifest),
            names(&req.contributors),
            approved.join(", "),
            if decrypted.is_empty() {
                "no".to_owned()
            } else {
                refs(&decrypted, w)
            }
        );
    }
    let tallies = typed::<trail::AlertTallyRequested>(&c.events);
    let received: Vec<(&AuditEvent, trail::TallyReceived)> = typed::<AlertDecrypted>(&c.events)
        .into_iter()
        .filter_map(|(e, d)| match d {
            AlertDecrypted::AtCoordinator(d) => Some((e, d)),
            AlertDecrypted::ByAuditor(_) => None,
        })
        .collect();
    for (_, t) in &tallies {
        let decided: Vec<&(&AuditEvent, trail::TallyReceived)> = received
            .iter()
            .filter(|(_, d)| d.manifest == t.manifest)
            .collect();
        let n = t.contributors.len();
        smallest = smallest.min(n);
        let _ = writeln!(
            md,
            "| {} | alert counts | `{}…` | {n}: {} | auditor {} | {} |",
            t.round,
            short(&t.manifest),
            names(&t.contributors),
            t.auditor,
            match decided.first() {
                None => "no".to_owned(),
                Some((_, d)) => format!(
                    "{} → {}",
                    refs(&decided.iter().map(|(e, _)| *e).collect::<Vec<_>>(), w),
                    serde_json::to_string(&d.institutions_over_limit).unwrap_or_default()
                ),
            }
        );
    }

    let _ = writeln!(md, "\n## Privacy guarantees that held\n");
    let min = job.map_or(0, |j| j.min_participants);
    if smallest == usize::MAX {
        let _ = writeln!(md, "- No aggregate was decrypted.");
    } else {
        let _ = writeln!(md, "- **Minimum contributors per aggregate: {} {} {min}** (`min_participants`). Every decryption above lists its contributors; each committee member checked the count itself before releasing its share ({}).",
            smallest, if smallest >= min { "≥" } else { "< — VIOLATED:" }, refs(&lines(&decrypts), w));
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
    match job.and_then(|j| j.k_anonymity) {
        Some(k) => {
            let _ = writeln!(md, "- **k-anonymity:** segments with fewer than {k} customers are not released (merged or withheld, see the results).");
        }
        None => {
            let _ = writeln!(md, "- **k-anonymity:** not applicable to this job kind (it releases no per-segment figures).");
        }
    }
    let spent: Vec<(&AuditEvent, trail::PrivacyReleased)> = typed::<PrivacySpent>(&c.events)
        .into_iter()
        .filter_map(|(e, p)| match p {
            PrivacySpent::Released(p) => Some((e, p)),
            PrivacySpent::Added(_) => None,
        })
        .collect();
    match spent.last() {
        Some((_, p)) => {
            let _ = writeln!(
                md,
                "- **Differential privacy:** ε = {} spent of a budget of {} (δ = {}), {}.",
                p.epsilon_spent,
                p.epsilon_budget,
                p.delta,
                refs(&lines(&spent), w)
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
            j.profile,
            profile_text(&j.profile)
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
        .map(|(_, r)| typed::<trail::ContributionSent>(&r.events).len())
        .sum();
    let alerts_sent: usize = nodes
        .iter()
        .map(|(_, r)| typed::<trail::AlertSent>(&r.events).len())
        .sum();
    let _ = writeln!(md, "- **No raw row and no per-customer value left any institution.** Participants only ever sent encrypted contributions ({sent} `contribution.sent` events in their own trails, each matched above by the coordinator's `contribution.received` with the same digest){}. Local results (segment assignments, model figures, compliance reports) were written at each institution and never sent.",
        if alerts_sent > 0 { format!(" and rates encrypted under the auditor's key ({alerts_sent} `alert.sent`)") } else { String::new() });
    let _ = writeln!(md, "- **No individual update was decrypted, by anyone.** The coordinator holds no key share: the joint key was formed from the committee's public shares ({}). It can only ask for the decryption of a *sum*, and every member refuses a manifest with fewer than {min} contributors or a second manifest for the same slot; each decryption above shows its contributors and every member's approval, and the members' own trails agree.", refs(&lines(&typed::<trail::KeySetup>(&c.events)), w));
    if !tallies.is_empty() {
        let _ = writeln!(md, "- **No institution's violation rate was decrypted.** Rates were encrypted under the auditor's compact public key ({}); the coordinator, holding only the matching server key, compared them with the limits by programmable bootstrapping and added the bits ({}); the auditor decrypted only the per-rule counts, once, over {} institutions ({}), and its own trail records the same manifest.",
            refs(&lines(&typed::<trail::AlertKeys>(&c.events)), w), refs(&lines(&typed::<trail::AlertReceived>(&c.events)), w), tallies.first().map_or(0, |(_, t)| t.contributors.len()), refs(&lines(&received), w));
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
