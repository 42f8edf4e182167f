//! The compliance job, in one folder behind [`Job`]: declared rules (frequency caps, contact
//! after opt-out, contact without consent, quiet hours) evaluated by every participant over its
//! own marketing-contact log and consent table; per-rule counts aggregated securely; and, for
//! rules with a `max_violation_rate`, the private alert step, in which only the number of
//! institutions over each limit is decrypted, by the job's auditor (docs/threat-model.md §6).
//!
//! Its one round and its wire tag:
//!
//! | tag      | round        | what each participant sends                                        |
//! |----------|--------------|--------------------------------------------------------------------|
//! | `0x0410` | `compliance` | per rule: violating contacts, customers affected, contacts examined; per limited rule its own over-limit bit |
//!
//! (Tag `0x0401` was this round in the protocol's round enum up to version 8; it is retired,
//! never reused.)
//!
//! - `rules`: the `[job.compliance]` table, the rules and their checks (also
//!   `fedbank_common::compliance_rules`);
//! - `contacts`: a participant's [`ContactLog`] and the rules evaluated over it;
//! - `local`: a participant's step, its local report and its rates for the alert step;
//! - `step`: the coordinator's step ([`ComplianceJob`]) and the released [`ComplianceResult`].
//!
//! The alert step itself — the auditor's keys, the comparison of encrypted rates under its
//! server key, the tally and its decryption — is the protocol's, shared by any job that declares
//! limits ([`Job::alert_limits`]): the coordinator's `machine/alerts.rs`, the participant's
//! alert request, the auditor node and `crate::alerts`. Reading the log from files is the
//! participant's (`participant/src/contact_log.rs`); the human report is the consortium
//! library's (`consortium/src/reports/compliance.rs`).

mod contacts;
mod local;
pub mod rules;
mod step;

pub use contacts::{round_values, Consent, Contact, ContactLog, RuleCounts};
pub use local::ComplianceParticipant;
pub use step::{ComplianceError, ComplianceJob, ComplianceResult, RuleResult};

use super::{
    CoordinatorStep, Job, JobRound, JobSpec, ParticipantStep, RoundDecl, RoundTag, ValidJob,
    COMPLIANCE,
};
use crate::alerts::AlertRule;
use crate::encoding::QuantitySpec;
use serde::Deserialize;

/// The kind's name in job files.
pub const KIND: &str = "compliance";

/// The compliance round.
pub const COMPLIANCE_TAG: RoundTag = RoundTag(0x0410);

const ROUNDS: &[RoundDecl] = &[RoundDecl {
    tag: COMPLIANCE_TAG,
    label: COMPLIANCE,
}];

/// The compliance round (it has no parameters: the rules are the job's).
pub fn compliance_round() -> Result<JobRound, String> {
    JobRound::new(COMPLIANCE_TAG, &()).map_err(|e| e.to_string())
}

/// The compliance job kind.
pub struct ComplianceKind;

impl Job for ComplianceKind {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn rounds(&self) -> &'static [RoundDecl] {
        ROUNDS
    }

    /// The rules and column mappings; no features; an auditor exactly when rules have limits,
    /// and never one of the participants.
    fn validate(&self, spec: &JobSpec) -> Result<(), String> {
        let compliance = spec
            .compliance
            .as_ref()
            .ok_or_else(|| "a compliance job needs a [job.compliance] table".to_owned())?;
        let bad = |problem: String| format!("[job.compliance]: {problem}");
        compliance.check().map_err(|problem| bad(problem.0))?;
        if !spec.features.is_empty() {
            return Err(bad("a compliance job declares rules, not features".into()));
        }
        match (&spec.auditor, compliance.alert_rules().is_empty()) {
            (None, false) => Err(bad(
                "rules with max_violation_rate raise private alerts and need an 'auditor' node"
                    .into(),
            )),
            (Some(a), _) if spec.participants.contains(a) => Err(bad(format!(
                "the auditor {a} must not be a participant: it holds the alert key and no data"
            ))),
            _ => Ok(()),
        }
    }

    fn quantities(&self, job: &ValidJob, round: &JobRound) -> Result<Vec<QuantitySpec>, String> {
        if round.tag != COMPLIANCE_TAG {
            return Err(format!(
                "tag {} is not a round of a compliance job",
                round.tag
            ));
        }
        round.parameters::<()>().map_err(|e| e.to_string())?;
        job.compliance()
            .map(|c| c.quantities(job.spec().max_rows))
            .ok_or_else(|| "a compliance job needs a [job.compliance] table".to_owned())
    }

    fn widest_rounds(&self, _: &ValidJob) -> Vec<JobRound> {
        compliance_round().into_iter().collect()
    }

    fn planned_rounds(&self, _: &ValidJob) -> u32 {
        1
    }

    fn coordinator(&self, job: &ValidJob) -> Box<dyn CoordinatorStep> {
        Box::new(ComplianceJob::new(job.compliance().cloned()))
    }

    fn participant(&self, job: &ValidJob) -> Box<dyn ParticipantStep> {
        Box::new(ComplianceParticipant::new(job))
    }

    fn check_result(&self, result: &serde_json::Value) -> Result<(), String> {
        ComplianceResult::deserialize(result)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn alert_limits(&self, spec: &JobSpec) -> Vec<AlertRule> {
        spec.compliance
            .as_ref()
            .map(|c| {
                c.alert_rules()
                    .into_iter()
                    .map(|(r, limit)| AlertRule {
                        rule: r.name.clone(),
                        limit_basis_points: limit,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
