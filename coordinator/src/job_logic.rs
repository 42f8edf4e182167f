//! What the coordinator computes between rounds, per job kind: the compliance kind's own step,
//! and the [`CoordinatorStep`] of a kind behind the `Job` trait (stats, segment, propensity, and
//! any registered kind).

use crate::compliance::{ComplianceJob, ComplianceResult};
use fedbank_common::encoding::DecodedQuantity;
use fedbank_common::job::{stats, CoordinatorStep, Job, RoundKind, ValidJob};
use serde::Serialize;

/// A finished job's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum JobResult {
    /// Per-rule compliance totals and alert counts.
    Compliance(Box<ComplianceResult>),
    /// What a registered job kind released.
    Registered {
        /// The kind.
        kind: &'static str,
        /// Its own result record.
        released: serde_json::Value,
    },
}

impl JobResult {
    /// A registered kind's released record as its type `T`, if this is a result of kind `kind`.
    pub fn released<T: serde::de::DeserializeOwned>(&self, kind: &str) -> Option<T> {
        match self {
            JobResult::Registered {
                kind: name,
                released,
            } if *name == kind => serde_json::from_value(released.clone()).ok(),
            _ => None,
        }
    }
}

/// The job-kind-specific logic.
#[derive(Debug, Clone)]
pub enum JobLogic {
    /// The compliance job.
    Compliance(Box<ComplianceJob>),
    /// A job kind registered from its own folder, through its step.
    Registered {
        /// The kind.
        kind: &'static str,
        /// Its step.
        step: Box<dyn CoordinatorStep>,
    },
}

impl JobLogic {
    /// The logic for `job`.
    pub fn new(job: &ValidJob) -> Self {
        let spec = job.spec();
        if let Some(registered) = spec.kind.registered() {
            return JobLogic::Registered {
                kind: registered.kind(),
                step: registered.coordinator(job),
            };
        }
        if let Some(c) = job.compliance() {
            return JobLogic::Compliance(Box::new(ComplianceJob::new(c.clone())));
        }
        // Validation gives every kind its section, so no valid job gets here; were one to, it
        // would compute only the statistics of its features.
        JobLogic::Registered {
            kind: stats::KIND,
            step: stats::Stats.coordinator(job),
        }
    }

    /// The job's first round, or why there is none.
    pub fn first_round(&self) -> Result<RoundKind, String> {
        Ok(match self {
            JobLogic::Compliance(j) => j.first_round(),
            JobLogic::Registered { step, .. } => RoundKind::Registered(step.first_round()?),
        })
    }

    /// Takes a round's aggregate (summed over `contributors`); the next round, `None` when
    /// done, or why it cannot go on.
    pub fn apply(
        &mut self,
        kind: &RoundKind,
        decoded: &[DecodedQuantity],
        contributors: usize,
    ) -> Result<Option<RoundKind>, String> {
        match self {
            JobLogic::Registered { kind: name, step } => match kind {
                RoundKind::Registered(round) => step
                    .apply(round, decoded, contributors)
                    .map(|next| next.map(RoundKind::Registered)),
                other => Err(format!(
                    "round '{}' is not a round of a {name} job",
                    other.label()
                )),
            },
            JobLogic::Compliance(j) => j
                .apply(kind, decoded, contributors)
                .map_err(|e| e.to_string()),
        }
    }

    /// What participants receive of a finished job behind the `Job` trait (for example the
    /// segments' centroids), in the job's own encoding.
    pub fn release(&self) -> Option<Vec<u8>> {
        match self {
            JobLogic::Registered { step, .. } => step.release(),
            JobLogic::Compliance(_) => None,
        }
    }

    /// The differential-privacy spend so far, for jobs that have a budget.
    pub fn privacy(&self) -> Option<fedbank_common::job::privacy::PrivacyReport> {
        match self {
            JobLogic::Registered { step, .. } => step.privacy(),
            JobLogic::Compliance(_) => None,
        }
    }

    /// The result, once done.
    pub fn result(&self) -> Option<JobResult> {
        match self {
            JobLogic::Compliance(j) => j
                .result()
                .cloned()
                .map(|r| JobResult::Compliance(Box::new(r))),
            JobLogic::Registered { kind, step } => step
                .result()
                .map(|released| JobResult::Registered { kind, released }),
        }
    }
}
