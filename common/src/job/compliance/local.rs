//! A participant's step of a compliance job: the declared rules evaluated over its own contact
//! log (the one round's counts, and a local report with example customers that never leaves
//! the institution), and its own rate per limited rule for the private alert step.

use super::contacts::{round_values, RuleCounts};
use super::rules::ComplianceSpec;
use super::COMPLIANCE_TAG;
use crate::alerts::AlertRule;
use crate::ids::JobId;
use crate::job::{JobRound, LocalInput, LocalReport, LocalValues, ParticipantStep, ValidJob};
use serde_json::json;

/// A participant's side of one compliance job.
pub struct ComplianceParticipant {
    job: JobId,
    spec: Option<ComplianceSpec>,
    /// The rule counts once evaluated: the alert step encrypts their rates.
    counts: Option<Vec<RuleCounts>>,
}

impl ComplianceParticipant {
    /// The step of `job`.
    pub fn new(job: &ValidJob) -> Self {
        Self {
            job: job.spec().job.clone(),
            spec: job.compliance().cloned(),
            counts: None,
        }
    }
}

impl ParticipantStep for ComplianceParticipant {
    fn local_round(
        &mut self,
        data: LocalInput<'_>,
        round: &JobRound,
    ) -> Result<LocalValues, String> {
        if round.tag != COMPLIANCE_TAG {
            return Err(format!(
                "a compliance participant computes only the compliance round, not {round}"
            ));
        }
        round.parameters::<()>().map_err(|e| e.to_string())?;
        let spec = self
            .spec
            .as_ref()
            .ok_or_else(|| "a compliance job needs a [job.compliance] table".to_owned())?;
        let log = data.contacts.ok_or_else(|| {
            "a compliance job reads a contact log, and this node has none".to_owned()
        })?;
        let counts = log.evaluate(spec);
        let values = round_values(&counts, spec);
        let report = json!({
            "job": self.job.as_str(),
            "contacts": log.contacts(),
            "period": log.period(),
            "contacts_on_unlisted_channels": log.unknown_channels(),
            "rules": spec.rules.iter().zip(&counts).map(|(r, c)| json!({
                "rule": r.name, "description": r.describe(), "counts": c,
            })).collect::<Vec<_>>(),
            "note": "kept by this institution; never sent",
        });
        self.counts = Some(counts);
        Ok(LocalValues {
            values,
            clipped: 0,
            report: Some(LocalReport {
                checked: spec.rules.iter().map(|r| r.name.clone()).collect(),
                period: log.period(),
                report,
            }),
        })
    }

    /// The rate of each limited rule over this node's log, once the round evaluated them.
    fn alert_rates(&self, limits: &[AlertRule]) -> Result<Vec<u16>, String> {
        let counts = self
            .counts
            .as_ref()
            .ok_or_else(|| "the rules have not been evaluated yet".to_owned())?;
        limits
            .iter()
            .map(|limit| {
                counts
                    .iter()
                    .find(|c| c.rule == limit.rule)
                    .map(|c| c.rate_basis_points)
                    .ok_or_else(|| format!("no rule '{}' in this job", limit.rule))
            })
            .collect()
    }
}
