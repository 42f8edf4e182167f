//! The audit report in Markdown: the signature block, the evidence examined (nodes with their
//! certificates, trails, bound files), what failed, the cross-check, the guarantees, and the
//! story of the job read from the coordinator's trail, each claim with the events that show it.

use super::evidence::Evidence;
use super::{short, typed, AuditReport, GuaranteeState};
use fedbank_common::audit::events::{self as trail, AlertDecrypted, PrivacySpent};
use fedbank_common::audit::{ArtifactState, AuditEvent, TrailReport};
use fedbank_common::ids::NodeId;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The events of `E`'s kind in `events` that decode, each with its trail line.
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

/// The whole report.
pub(super) fn markdown(report: &AuditReport, ev: &Evidence, result: Option<&Value>) -> String {
    let mut md = String::new();
    let title = report
        .job
        .as_ref()
        .map_or_else(|| "unknown job".to_owned(), |j| j.job.to_string());
    let _ = writeln!(md, "# Audit report: job {title}\n");
    let _ = writeln!(md, "**{}**\n", report.headline);
    for f in &report.failures {
        let _ = writeln!(md, "- {f}");
    }
    signature_facts(&mut md, report);
    evidence_tables(&mut md, report);
    if let Some((_, c)) = &ev.coordinator {
        let _ = writeln!(md, "\n## Cross-check against the nodes' own trails\n");
        if report.findings.is_empty() {
            let _ = writeln!(md, "Every contribution each participant recorded sending is recorded by the coordinator with the same digest, and nothing else; every partial decryption a member recorded releasing is recorded with the same manifest; every encrypted alert list and the auditor's key and decryption match; every joint key and roster a participant accepted is the one the coordinator recorded; and the model or segments each participant received at the end is what the coordinator recorded releasing.");
        }
        for f in &report.findings {
            let _ = writeln!(md, "- DIFFERS: {f}");
        }
        refusals(&mut md, report, &c.writer);
        key_epochs(&mut md, report);
        restarts(&mut md, report);
        body(&mut md, report, c, &ev.nodes, result);
        data_handling(&mut md, report);
    }
    sign_off(&mut md, report);
    md
}

fn signature_facts(md: &mut String, report: &AuditReport) {
    let _ = writeln!(md, "\n## For signature\n");
    let not_recorded = || "not recorded".to_owned();
    let job = report.job.as_ref();
    let rows = [
        (
            "job",
            job.map_or_else(not_recorded, |j| format!("{} ({})", j.job, j.kind)),
        ),
        (
            "job digest (configuration)",
            job.map_or_else(not_recorded, |j| format!("`{}`", j.config_digest)),
        ),
        (
            "period the data covers",
            report
                .data
                .period
                .clone()
                .unwrap_or_else(|| "not dated by this job kind".to_owned()),
        ),
        (
            "time basis of time-based rules",
            report
                .time_zone
                .clone()
                .unwrap_or_else(|| "no time-based rules in this job".to_owned()),
        ),
        (
            "software that ran the job",
            job.and_then(|j| j.software.clone()).unwrap_or_else(|| {
                "not recorded (a trail from before fedbank recorded it)".to_owned()
            }),
        ),
        ("software that wrote this report", report.software.clone()),
        (
            "consortium CA certificate (SHA-256)",
            report
                .ca_certificate_sha256
                .as_ref()
                .map_or_else(|| "not available".to_owned(), |f| format!("`{f}`")),
        ),
        ("run directory", report.run.display().to_string()),
        ("verdict", format!("{:?}", report.verdict).to_uppercase()),
    ];
    let _ = writeln!(md, "| | |\n|---|---|");
    for (what, value) in rows {
        let _ = writeln!(md, "| {what} | {value} |");
    }
}

fn evidence_tables(md: &mut String, report: &AuditReport) {
    let _ = writeln!(md, "\n## Nodes, certificates and trails\n");
    let _ = writeln!(md, "The job names its nodes; each must have a trail, signed by the key of its certificate (issued by the consortium CA above), that reaches the job's end.\n");
    let _ = writeln!(md, "| node | role | certificate (SHA-256) | trail | events | signing key | key is the certificate's | last event |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for n in &report.nodes {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            n.node,
            n.role,
            n.certificate_sha256
                .as_deref()
                .map_or_else(|| "—".to_owned(), |f| format!("`{}…`", short(f))),
            n.trail.as_deref().unwrap_or("**none**"),
            n.events,
            n.signing_key
                .as_deref()
                .map_or_else(|| "—".to_owned(), |k| format!("`{}…`", short(k))),
            match n.key_matches_certificate {
                Some(true) => "yes",
                Some(false) => "**NO**",
                None => "not checked",
            },
            n.last_event.as_deref().unwrap_or("—"),
        );
    }
    let _ = writeln!(md, "\n## Files bound to the trails\n");
    if report.artifacts.is_empty() {
        let _ = writeln!(md, "No trail binds a file.");
        return;
    }
    let _ = writeln!(md, "Each file's SHA-256 was recorded by the node that wrote it, in its signed trail (`artifact.written`); `sha256sum` prints the same digest. A participant's local outputs stay at the institution and are checked where present.\n");
    let _ = writeln!(
        md,
        "| file | what | written by | SHA-256 | bytes | as found |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for a in &report.artifacts {
        let state = match &a.state {
            ArtifactState::Matches => "unchanged".to_owned(),
            ArtifactState::Changed { sha256 } => format!("**CHANGED** (now `{}…`)", short(sha256)),
            ArtifactState::Absent => "not present".to_owned(),
            ArtifactState::Unreadable { reason } => format!("unreadable: {reason}"),
        };
        let _ = writeln!(
            md,
            "| `{}` | {} | {} seq {} | `{}…` | {} | {state} |",
            a.file,
            a.what,
            a.writer,
            a.seq,
            short(&a.sha256),
            a.bytes
        );
    }
}

fn refusals(md: &mut String, report: &AuditReport, coordinator: &str) {
    if report.refusals.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n## Refused by honest nodes\n");
    let _ = writeln!(md, "Each line is a message of the coordinator `{coordinator}` that a node refused and wrote to its own signed trail, with the reason it gave. An honest coordinator sends none of these (docs/threat-model.md §11).\n");
    let _ = writeln!(md, "| node | refused | reason |");
    let _ = writeln!(md, "|---|---|---|");
    for r in &report.refusals {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            r.node,
            r.what,
            r.reason.replace('|', "/")
        );
    }
}

/// Key epochs the operator opened: when, why, and what the committee still refuses.
fn key_epochs(md: &mut String, report: &AuditReport) {
    if report.key_epochs.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n## Key epochs opened by the operator\n");
    for e in &report.key_epochs {
        let _ = writeln!(
            md,
            "- At {} the operator opened key epoch {} after epoch {} (the coordinator's checkpoint was lost): \"{}\". The job ran again from its beginning under a fresh key ceremony, with rounds numbered from {}; rounds {:?} had been decrypted before. The members carry their records of decrypted slots and computations into the new epoch; the guarantees below are checked across every epoch.",
            e.opened,
            e.key_epoch,
            e.previous_epoch,
            e.reason.replace(['\n', '\r'], " "),
            e.first_round,
            e.decrypted_rounds
        );
    }
}

fn restarts(md: &mut String, report: &AuditReport) {
    if report.resumes.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n## Restarts of the coordinator\n");
    let slots = report
        .guarantees
        .iter()
        .find(|g| g.name.starts_with("One decryption"));
    for r in &report.resumes {
        let _ = writeln!(
            md,
            "- The coordinator stopped after {} and resumed from its checkpoint at {} (restart {}): rounds {:?} were complete, the job went on with round {}{}. {}",
            r.stopped_after,
            r.resumed,
            r.restart,
            r.completed_rounds,
            r.next_round,
            r.key_epoch.map_or_else(String::new, |e| format!(" under key epoch {e}")),
            if r.seen_by.is_empty() {
                "No node's trail records joining it after this restart.".to_owned()
            } else {
                format!(
                    "The trails of {} record joining it after this restart.",
                    r.seen_by.join(", ")
                )
            }
        );
    }
    for f in &report.in_flight {
        let _ = writeln!(md, "- In flight at the restart: {f}.");
    }
    if let Some(g) = slots {
        let _ = writeln!(
            md,
            "- No slot decrypted twice across the restarts: {} ({}).",
            match g.state {
                GuaranteeState::Held => "held",
                GuaranteeState::Violated => "**VIOLATED**",
                _ => "not applicable",
            },
            g.detail
        );
    }
}

fn data_handling(md: &mut String, report: &AuditReport) {
    let d = &report.data;
    let _ = writeln!(md, "\n## What happened to the data\n");
    let clipped: u64 = d.clipped_by_round.values().sum();
    if clipped == 0 {
        let _ = writeln!(
            md,
            "- **Clipped values:** none; no participant clipped a value to a declared bound."
        );
    } else {
        let _ = writeln!(
            md,
            "- **Clipped values:** values were clipped to a declared bound before encryption by {} institutions, up to {} in one round ({}; {}). A round reads the customers' values again, so the same value counts in every round that reads it. Clipped values change the aggregates; the result is over the clipped data.",
            d.institutions_clipping,
            d.clipped_by_round.values().max().copied().unwrap_or(0),
            if d.clipped_decrypted {
                "decrypted with each round's aggregate, and cross-checked against the contributors' trails"
            } else {
                "summed over the institutions' trails; a differentially private job releases no count"
            },
            clipping_runs(&d.clipped_by_round)
        );
    }
    for (what, items, none) in [
        ("Imputed values", &d.imputed, "none reported by the result"),
        ("Participants left out of a round", &d.dropped, "none"),
        (
            "Rounds where fewer contributed than were asked",
            &d.shortfalls,
            "none",
        ),
        (
            "Decryptions run again (a member went away)",
            &d.retried,
            "none",
        ),
    ] {
        let shown = if items.is_empty() {
            none.to_owned()
        } else {
            items.join("; ")
        };
        let _ = writeln!(md, "- **{what}:** {shown}");
    }
    let _ = writeln!(
        md,
        "- **Privacy spend:** {}",
        d.privacy
            .as_deref()
            .unwrap_or("no differential privacy in this job")
    );
}

/// `rounds 2–88: 3184 each, round 90: 12`: consecutive rounds with one count, on one line.
fn clipping_runs(by_round: &std::collections::BTreeMap<u32, u64>) -> String {
    let mut runs: Vec<(u32, u32, u64)> = Vec::new();
    for (&round, &n) in by_round {
        match runs.last_mut() {
            Some((_, last, count)) if *count == n && *last + 1 == round => *last = round,
            _ => runs.push((round, round, n)),
        }
    }
    runs.iter()
        .map(|(first, last, n)| {
            if first == last {
                format!("round {first}: {n}")
            } else {
                format!("rounds {first}–{last}: {n} each")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn sign_off(md: &mut String, report: &AuditReport) {
    let _ = writeln!(md, "\n## Sign-off\n");
    let _ = writeln!(
        md,
        "I examined the evidence listed above with {} and reached the verdict **{}**.\n",
        report.software,
        format!("{:?}", report.verdict).to_uppercase()
    );
    let _ = writeln!(md, "| | |\n|---|---|");
    for line in ["Name", "Function", "Institution", "Date", "Signature"] {
        let _ = writeln!(md, "| {line} | |");
    }
}

fn body(
    md: &mut String,
    report: &AuditReport,
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

    let _ = writeln!(md, "\n## Guarantees\n");
    let _ = writeln!(md, "| guarantee | state | figures |");
    let _ = writeln!(md, "|---|---|---|");
    for g in &report.guarantees {
        let state = match g.state {
            GuaranteeState::Held => "held",
            GuaranteeState::Violated => "**VIOLATED**",
            GuaranteeState::NotApplicable => "not applicable",
            GuaranteeState::NotChecked => "not checked",
        };
        let _ = writeln!(
            md,
            "| {} | {state} | {} |",
            g.name,
            g.detail.replace('|', "/")
        );
    }
    let _ = writeln!(
        md,
        "\nEvery decryption above lists its contributors; each committee member checked the count and the slot itself before releasing its share ({}).",
        refs(&lines(&decrypts), w)
    );
    let spent: Vec<(&AuditEvent, trail::PrivacyReleased)> = typed::<PrivacySpent>(&c.events)
        .into_iter()
        .filter_map(|(e, p)| match p {
            PrivacySpent::Released(p) => Some((e, p)),
            PrivacySpent::Added(_) => None,
        })
        .collect();
    if !spent.is_empty() {
        let _ = writeln!(
            md,
            "The privacy spend is recorded in {}.",
            refs(&lines(&spent), w)
        );
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
    let min = job.map_or(0, |j| j.min_participants);
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
