//! The compliance officer's report of a run (`fedbank audit report`), in Markdown and JSON.
//!
//! It verifies every trail of the run (hash chain, signatures, sequence), checks that the
//! evidence is whole — the job's every node has a trail signed by its certificate's key, every
//! trail reaches the job's end, every file a node bound to its trail is unchanged —,
//! cross-checks the coordinator's records against every node's own, and checks each guarantee
//! of docs/threat-model.md. Then it reads, from the coordinator's trail, who took part in each
//! round, every decryption with its manifest and approvals, what happened to the data (clipped
//! values, drop-outs, retries, privacy spend), any restart, and the results, each claim with the
//! trail events (writer and seq) that show it, and ends with a block to sign.
//!
//! The verdict is the most serious of what was found, in this order: a trail or file was
//! changed ([`AuditVerdict::Tampered`]), honest nodes refused the coordinator's messages
//! ([`AuditVerdict::Refused`]), the coordinator's records differ from the nodes' own
//! ([`AuditVerdict::Disagree`]), evidence is missing or cut ([`AuditVerdict::Incomplete`]), a
//! guarantee did not hold ([`AuditVerdict::Violated`]). [`AuditVerdict::Verified`] only when none holds.
//!
//! What it does not do: write the report or choose an exit status; the CLI does both from the
//! [`AuditReport`] it returns.

mod evidence;
mod guarantees;
mod render;

use fedbank_common::audit::events::{events_of, TrailEvent};
use fedbank_common::audit::events::{
    ArtifactWritten, ContributionSent, CoordinatorRestarted, JobResumed, JobStarted, PrivacySpent,
    RulesEvaluated,
};
use fedbank_common::audit::{
    cross_check, ArtifactState, AuditEvent, CrossCheckFinding, TrailReport,
};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// The version of the software that wrote this report.
pub const SOFTWARE: &str = concat!("fedbank ", env!("CARGO_PKG_VERSION"));

/// What the report concludes: the most serious finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditVerdict {
    /// The evidence is whole, every trail and file verifies, the coordinator's records agree
    /// with every node's own, and every guarantee held.
    Verified,
    /// A trail, a certificate or a bound file was changed, or a trail is not its writer's.
    Tampered,
    /// Honest nodes refused messages of the coordinator: it deviated from the protocol.
    Refused,
    /// Evidence is missing or cut: a node's trail, a bound file, a certificate, or the end of a
    /// trail.
    Incomplete,
    /// Every trail verifies, but the coordinator's records differ from the nodes' own.
    Disagree,
    /// The evidence verifies, and a guarantee did not hold.
    Violated,
}

/// What kind of problem a failure is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The evidence was changed.
    Tampered,
    /// The evidence is missing or cut.
    Incomplete,
    /// A file is there but cannot be read (not a sign it was changed).
    Unreadable,
}

/// One problem with the evidence, naming the node or file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// What kind of problem.
    pub class: FailureClass,
    /// The node or the file (relative to the run directory).
    pub subject: String,
    /// What is wrong.
    pub reason: String,
}

impl Failure {
    fn new(class: FailureClass, subject: impl Into<String>, reason: String) -> Self {
        Self {
            class,
            subject: subject.into(),
            reason,
        }
    }
    fn tampered(subject: impl Into<String>, reason: String) -> Self {
        Self::new(FailureClass::Tampered, subject, reason)
    }
    fn incomplete(subject: impl Into<String>, reason: String) -> Self {
        Self::new(FailureClass::Incomplete, subject, reason)
    }
    fn unreadable(subject: impl Into<String>, reason: String) -> Self {
        Self::new(FailureClass::Unreadable, subject, reason)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = match self.class {
            FailureClass::Tampered => "CHANGED",
            FailureClass::Incomplete => "MISSING",
            FailureClass::Unreadable => "UNREADABLE",
        };
        write!(f, "{class} {}: {}", self.subject, self.reason)
    }
}

/// A node of the job and its evidence.
#[derive(Clone, Debug, Serialize)]
pub struct NodeEvidence {
    /// The node.
    pub node: String,
    /// Its role in the job.
    pub role: String,
    /// Its trail file, if one verifies.
    pub trail: Option<String>,
    /// Events in it.
    pub events: usize,
    /// The trail's signing key (hex).
    pub signing_key: Option<String>,
    /// SHA-256 of the node's certificate (DER) in `certs/`.
    pub certificate_sha256: Option<String>,
    /// Whether the trail's key is the certificate's.
    pub key_matches_certificate: Option<bool>,
    /// The trail's last event (seq, kind, time).
    pub last_event: Option<String>,
}

impl NodeEvidence {
    fn of(node: String, role: &str, trail: Option<(&PathBuf, &TrailReport)>) -> Self {
        Self {
            node,
            role: role.to_owned(),
            trail: trail.map(|(p, _)| {
                format!(
                    "trails/{}",
                    p.file_name().unwrap_or_default().to_string_lossy()
                )
            }),
            events: trail.map_or(0, |(_, r)| r.events.len()),
            signing_key: trail.map(|(_, r)| r.public_key.clone()),
            certificate_sha256: None,
            key_matches_certificate: None,
            last_event: trail.and_then(|(_, r)| {
                r.events
                    .last()
                    .map(|e| format!("seq {} {} {}", e.seq, e.event, e.time))
            }),
        }
    }
}

/// A file bound to a trail, and how it was found.
#[derive(Clone, Debug, Serialize)]
pub struct ArtifactEvidence {
    /// The node whose trail binds it.
    pub writer: String,
    /// The `artifact.written` event's seq.
    pub seq: u64,
    /// What the file is.
    pub what: String,
    /// Its recorded path.
    pub file: String,
    /// Its recorded SHA-256.
    pub sha256: String,
    /// Its recorded length.
    pub bytes: u64,
    /// The file as found.
    pub state: ArtifactState,
}

impl ArtifactEvidence {
    fn of(writer: &str, seq: u64, a: ArtifactWritten, state: ArtifactState) -> Self {
        Self {
            writer: writer.to_owned(),
            seq,
            what: a.what,
            file: a.file,
            sha256: a.sha256,
            bytes: a.bytes,
            state,
        }
    }
}

/// Whether a guarantee held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GuaranteeState {
    /// It held.
    Held,
    /// It did not hold: the verdict fails.
    Violated,
    /// The job does not make this guarantee.
    NotApplicable,
    /// It applies but the evidence to check it is missing (reported as a failure elsewhere).
    NotChecked,
}

/// One guarantee of docs/threat-model.md, checked.
#[derive(Clone, Debug, Serialize)]
pub struct Guarantee {
    /// The guarantee.
    pub name: String,
    /// Whether it held.
    pub state: GuaranteeState,
    /// The figures behind it.
    pub detail: String,
}

/// A restart of the coordinator, as its trail shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Resume {
    /// The last event before the restart (seq, kind, time).
    pub stopped_after: String,
    /// The `job.resumed` event (seq, time).
    pub resumed: String,
    /// Rounds complete at the checkpoint.
    pub completed_rounds: Vec<u32>,
    /// The round the job went on with.
    pub next_round: u32,
    /// The key epoch of the checkpoint.
    pub key_epoch: Option<u32>,
    /// The restart's number (0 in a trail written before restarts were numbered).
    pub restart: u32,
    /// The nodes whose own trails record joining the coordinator after this restart
    /// (`coordinator.restarted`); the cross-check holds them to the coordinator's `node.joined`.
    pub seen_by: Vec<String>,
}

/// A key epoch the operator opened (`key.epoch_opened`), as the coordinator's trail shows it.
#[derive(Clone, Debug, Serialize)]
pub struct EpochOpening {
    /// The `key.epoch_opened` event (seq, time).
    pub opened: String,
    /// The epoch opened, and the latest set up before it.
    pub key_epoch: u32,
    /// The latest epoch set up before it.
    pub previous_epoch: u32,
    /// The first round number of the new epoch.
    pub first_round: u32,
    /// Rounds whose decryption was requested in earlier epochs.
    pub decrypted_rounds: Vec<u32>,
    /// The operator's reason.
    pub reason: String,
}

/// What happened to the data on its way into the aggregates, from the trails.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DataHandling {
    /// Values participants clipped to a declared bound, summed over institutions, per round:
    /// the counts decrypted with each round's aggregate where the job carries them, otherwise
    /// (a differentially private job) the sum of the participants' trails.
    pub clipped_by_round: BTreeMap<u32, u64>,
    /// Whether `clipped_by_round` are the decrypted counts (the cross-check ties them to the
    /// contributors' trails).
    pub clipped_decrypted: bool,
    /// Institutions that clipped at least one value (how many, not which).
    pub institutions_clipping: usize,
    /// Participants left out of a round, with the reason.
    pub dropped: Vec<String>,
    /// Rounds run again because a committee member went away during a decryption.
    pub retried: Vec<String>,
    /// Rounds where fewer institutions contributed than were asked.
    pub shortfalls: Vec<String>,
    /// Missing values imputed (from the result).
    pub imputed: Vec<String>,
    /// The last privacy spend (ε, budget, δ).
    pub privacy: Option<String>,
    /// The period the contact logs cover, over all institutions (compliance jobs).
    pub period: Option<String>,
}

/// A message of the coordinator that an honest node refused.
#[derive(Clone, Debug, Serialize)]
pub struct Refusal {
    /// The node.
    pub node: String,
    /// What it refused.
    pub what: String,
    /// Why.
    pub reason: String,
}

/// A run's audit report.
#[derive(Clone, Debug, Serialize)]
pub struct AuditReport {
    /// The conclusion.
    pub verdict: AuditVerdict,
    /// The conclusion in one sentence.
    pub headline: String,
    /// The software that wrote the report.
    pub software: String,
    /// The run directory.
    pub run: PathBuf,
    /// The job as the coordinator's trail records it.
    pub job: Option<JobStarted>,
    /// SHA-256 of the consortium CA certificate.
    pub ca_certificate_sha256: Option<String>,
    /// Every node of the job.
    pub nodes: Vec<NodeEvidence>,
    /// Every file bound to a trail.
    pub artifacts: Vec<ArtifactEvidence>,
    /// What is wrong with the evidence.
    pub failures: Vec<Failure>,
    /// Where the coordinator's records differ from the nodes' own.
    pub findings: Vec<CrossCheckFinding>,
    /// What nodes sent, asked for before a restart of the coordinator, that the restarted
    /// coordinator has no record of (shown with the restart; not a disagreement).
    pub in_flight: Vec<CrossCheckFinding>,
    /// Messages of the coordinator honest nodes refused.
    pub refusals: Vec<Refusal>,
    /// The guarantees, checked.
    pub guarantees: Vec<Guarantee>,
    /// Restarts of the coordinator.
    pub resumes: Vec<Resume>,
    /// Key epochs the operator opened after the coordinator lost its checkpoint.
    pub key_epochs: Vec<EpochOpening>,
    /// What happened to the data.
    pub data: DataHandling,
    /// How time-based rules read time.
    pub time_zone: Option<String>,
    /// The whole report in Markdown.
    #[serde(skip)]
    pub markdown: String,
}

impl AuditReport {
    /// The report without its Markdown, as JSON for tools.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| {
            serde_json::json!({"verdict": self.verdict, "error": e.to_string()}).to_string()
        })
    }
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

/// The first event of `E`'s kind in `events` that decodes, with its trail line.
fn first<E: TrailEvent>(events: &[AuditEvent]) -> Option<(&AuditEvent, E)> {
    events.iter().find_map(|e| Some((e, e.read::<E>()?.ok()?)))
}

/// The first 16 characters of a digest or key, for tables.
fn short(hex: &str) -> &str {
    hex.get(..16).unwrap_or(hex)
}

/// The report of the run in `run` (its `trails/`, `certs/`, `result.json` and the files the
/// trails bind).
pub fn audit_report(run: &Path) -> Result<AuditReport, AuditReportError> {
    let ev = evidence::gather(run)?;
    let (findings, in_flight): (Vec<_>, Vec<_>) = match &ev.coordinator {
        Some((_, c)) => cross_check(
            c,
            &ev.nodes.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
        ),
        None => Vec::new(),
    }
    .into_iter()
    .partition(CrossCheckFinding::disagrees);
    let refusals = refusals(&ev.nodes);
    // The result is read only when it is the file the coordinator bound to its trail.
    let result_bound = ev
        .artifacts
        .iter()
        .any(|a| a.file == "result.json" && a.state == ArtifactState::Matches);
    let result: Option<Value> = result_bound
        .then(|| std::fs::read_to_string(run.join("result.json")).ok())
        .flatten()
        .and_then(|t| serde_json::from_str(&t).ok());
    let guarantees = match (&ev.job, &ev.coordinator) {
        (Some(job), Some((_, c))) => guarantees::check(job, c, &ev.nodes, result.as_ref()),
        _ => Vec::new(),
    };
    let resumes = ev
        .coordinator
        .as_ref()
        .map(|(_, c)| resumes(c, &ev.nodes))
        .unwrap_or_default();
    let key_epochs = ev
        .coordinator
        .as_ref()
        .map(|(_, c)| epoch_openings(c))
        .unwrap_or_default();
    let data = data_handling(&ev, result.as_ref());
    let violated: Vec<&Guarantee> = guarantees
        .iter()
        .filter(|g| g.state == GuaranteeState::Violated)
        .collect();
    let has = |class| ev.failures.iter().any(|f: &Failure| f.class == class);
    let verdict = if has(FailureClass::Tampered) {
        AuditVerdict::Tampered
    } else if !refusals.is_empty() {
        AuditVerdict::Refused
    } else if !findings.is_empty() {
        AuditVerdict::Disagree
    } else if has(FailureClass::Incomplete) || has(FailureClass::Unreadable) {
        AuditVerdict::Incomplete
    } else if !violated.is_empty() {
        AuditVerdict::Violated
    } else {
        AuditVerdict::Verified
    };
    let coordinator = ev
        .coordinator
        .as_ref()
        .map_or_else(|| "coordinator".to_owned(), |(_, c)| c.writer.clone());
    let count = |class| ev.failures.iter().filter(|f| f.class == class).count();
    let headline = match verdict {
        AuditVerdict::Tampered => format!(
            "FAILED VERIFICATION. {} piece(s) of evidence were changed after they were written{}; nothing in this run is vouched for.",
            count(FailureClass::Tampered),
            if ev.failures.len() > count(FailureClass::Tampered) {
                format!(", and {} more are missing or unreadable", ev.failures.len() - count(FailureClass::Tampered))
            } else {
                String::new()
            }
        ),
        AuditVerdict::Refused => format!(
            "COORDINATOR DEVIATED. Honest nodes refused {} messages of the coordinator `{coordinator}`; see \"Refused by honest nodes\"{}{}.",
            refusals.len(),
            if findings.is_empty() { String::new() } else { format!(". Its records also differ from the nodes' own in {} places", findings.len()) },
            if ev.failures.is_empty() { String::new() } else { format!("; {} pieces of evidence are missing", ev.failures.len()) }
        ),
        AuditVerdict::Incomplete => format!(
            "INCOMPLETE EVIDENCE. {} piece(s) of evidence are missing, cut or unreadable: {}; what is there verifies, but the run is not vouched for.",
            ev.failures.len(),
            ev.failures.iter().map(|f| f.subject.as_str()).collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>().join(", ")
        ),
        AuditVerdict::Disagree => format!(
            "TRAILS DISAGREE. The coordinator's records differ from the nodes' own in {} places{}.",
            findings.len(),
            if ev.failures.is_empty() { String::new() } else { format!("; {} pieces of evidence are also missing or cut", ev.failures.len()) }
        ),
        AuditVerdict::Violated => format!(
            "GUARANTEE VIOLATED. The evidence verifies, and {} guarantee(s) did not hold: {}.",
            violated.len(),
            violated.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
        AuditVerdict::Verified => format!(
            "VERIFIED. All {} trails of the job's {} nodes verify (hash chain, Ed25519 signatures by their certificates' keys, sequence) and reach the job's end, the {} bound files are unchanged, the coordinator's records agree with every node's own, and every guarantee held{}.",
            ev.trail_files,
            ev.node_rows.len(),
            ev.artifacts.iter().filter(|a| a.state == ArtifactState::Matches).count(),
            if resumes.is_empty() { String::new() } else { format!(", across {} restart(s) of the coordinator", resumes.len()) }
        ),
    };
    let mut report = AuditReport {
        verdict,
        headline,
        software: SOFTWARE.to_owned(),
        run: run.to_path_buf(),
        job: ev.job.clone(),
        ca_certificate_sha256: ev.ca_fingerprint.clone(),
        nodes: ev.node_rows.clone(),
        artifacts: ev.artifacts.clone(),
        failures: ev.failures.clone(),
        findings,
        in_flight,
        refusals,
        guarantees,
        resumes,
        key_epochs,
        data,
        time_zone: time_zone(result.as_ref()),
        markdown: String::new(),
    };
    report.markdown = render::markdown(&report, &ev, result.as_ref());
    Ok(report)
}

/// What honest nodes refused of the coordinator: evidence that it deviated.
fn refusals(nodes: &[(PathBuf, TrailReport)]) -> Vec<Refusal> {
    use fedbank_common::audit::events::{DecryptionRefused, MessageRefused};
    let mut out = Vec::new();
    for (_, r) in nodes {
        for (_, e) in typed::<MessageRefused>(&r.events) {
            out.push(Refusal {
                node: r.writer.clone(),
                what: e.message,
                reason: e.reason,
            });
        }
        for (_, e) in typed::<DecryptionRefused>(&r.events) {
            out.push(Refusal {
                node: r.writer.clone(),
                what: format!("decryption of round {}", e.round),
                reason: e.reason,
            });
        }
    }
    out
}

fn resumes(c: &TrailReport, nodes: &[(PathBuf, TrailReport)]) -> Vec<Resume> {
    typed::<JobResumed>(&c.events)
        .into_iter()
        .map(|(e, r)| {
            let before = e.seq.checked_sub(1).and_then(|s| c.events.get(s as usize));
            Resume {
                stopped_after: before.map_or_else(String::new, |b| {
                    format!("seq {} ({}, {})", b.seq, b.event, b.time)
                }),
                resumed: format!("seq {} ({})", e.seq, e.time),
                completed_rounds: r.completed_rounds,
                next_round: r.next_round,
                key_epoch: r.key_epoch,
                restart: r.restart,
                seen_by: nodes
                    .iter()
                    .filter(|(_, n)| {
                        events_of::<CoordinatorRestarted>(&n.events)
                            .any(|s| r.restart > 0 && s.restart == r.restart)
                    })
                    .map(|(_, n)| n.writer.clone())
                    .collect(),
            }
        })
        .collect()
}

fn epoch_openings(c: &TrailReport) -> Vec<EpochOpening> {
    typed::<fedbank_common::audit::events::KeyEpochOpened>(&c.events)
        .into_iter()
        .map(|(e, o)| EpochOpening {
            opened: format!("seq {} ({})", e.seq, e.time),
            key_epoch: o.key_epoch,
            previous_epoch: o.previous_epoch,
            first_round: o.first_round,
            decrypted_rounds: o.decrypted_rounds,
            reason: o.reason,
        })
        .collect()
}

fn data_handling(ev: &evidence::Evidence, result: Option<&Value>) -> DataHandling {
    let mut data = DataHandling::default();
    for (_, r) in &ev.nodes {
        let mut clipped_any = false;
        for e in events_of::<ContributionSent>(&r.events) {
            *data.clipped_by_round.entry(e.round).or_default() += e.clipped_values;
            clipped_any |= e.clipped_values > 0;
        }
        data.institutions_clipping += usize::from(clipped_any);
    }
    data.clipped_by_round.retain(|_, n| *n > 0);
    let mut first_contact: Option<String> = None;
    let mut last_contact: Option<String> = None;
    for (_, r) in &ev.nodes {
        for e in events_of::<RulesEvaluated>(&r.events) {
            if let Some(f) = e.first_contact {
                if first_contact.as_ref().is_none_or(|x| f < *x) {
                    first_contact = Some(f);
                }
            }
            if let Some(l) = e.last_contact {
                if last_contact.as_ref().is_none_or(|x| l > *x) {
                    last_contact = Some(l);
                }
            }
        }
    }
    data.period = match (first_contact, last_contact) {
        (Some(f), Some(l)) => Some(format!("contacts from {f} to {l}")),
        _ => result
            .and_then(|r| r["reference_date"].as_str())
            .map(|d| format!("transactions up to the reference date {d}")),
    };
    if let Some((_, c)) = &ev.coordinator {
        // Who took part, as result.json has it (one reading of the coordinator's trail).
        let participation = fedbank_coordinator::Participation::from_trail(&c.events);
        data.dropped = participation
            .dropped
            .iter()
            .map(|d| d.to_string())
            .collect();
        data.shortfalls = participation
            .rounds
            .iter()
            .filter(|r| r.short())
            .map(|r| {
                format!(
                    "round {} {}: {} of {} asked contributed",
                    r.round,
                    r.quantity,
                    r.contributors.len(),
                    r.asked
                )
            })
            .collect();
        data.retried = participation.retried;
        let decrypted: BTreeMap<u32, u64> = participation
            .rounds
            .iter()
            .filter_map(|r| Some((r.round, r.clipped_values?)))
            .collect();
        if !decrypted.is_empty() {
            data.clipped_decrypted = true;
            data.clipped_by_round = decrypted;
            data.clipped_by_round.retain(|_, n| *n > 0);
        }
        data.privacy = events_of::<PrivacySpent>(&c.events)
            .filter_map(|p| match p {
                PrivacySpent::Released(p) => Some(p),
                PrivacySpent::Added(_) => None,
            })
            .last()
            .map(|p| {
                format!(
                    "ε = {:.4} of {} (δ = {})",
                    p.epsilon_spent, p.epsilon_budget, p.delta
                )
            });
    }
    if let Some(imputed) = result.and_then(|r| r["imputed"].as_array()) {
        data.imputed = imputed.iter().map(|i| i.to_string()).collect();
    }
    data
}

/// How the job's time-based rules read time (compliance jobs).
fn time_zone(result: Option<&Value>) -> Option<String> {
    result
        .and_then(|r| r["rules"].as_array())
        .map(|_| fedbank_common::compliance_rules::TIME_BASIS.to_owned())
}
