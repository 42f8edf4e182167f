//! What the coordinator computes between rounds: the [`CoordinatorStep`] of the job's kind,
//! which lives in the kind's own folder behind the `Job` trait (stats, segment, propensity,
//! compliance, or a kind registered from elsewhere).

use fedbank_common::alerts::AlertCost;
use fedbank_common::encoding::DecodedQuantity;
use fedbank_common::job::{CoordinatorStep, JobRound, RoundKind, ValidJob};
use serde::Serialize;

/// A finished job's result: its kind and the kind's own released record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobResult {
    /// The kind.
    pub kind: &'static str,
    /// Its own result record.
    pub released: serde_json::Value,
}

impl JobResult {
    /// The released record as its type `T`, if this is a result of kind `kind`.
    pub fn released<T: serde::de::DeserializeOwned>(&self, kind: &str) -> Option<T> {
        (self.kind == kind)
            .then(|| serde_json::from_value(self.released.clone()).ok())
            .flatten()
    }
}

/// The job kind's step, as the coordinator machine drives it.
#[derive(Debug, Clone)]
pub struct JobLogic {
    kind: &'static str,
    step: Box<dyn CoordinatorStep>,
}

/// The step of a kind this build does not register: it refuses to start. No valid job has one
/// (validation looks its kind up); it keeps the machine from panicking were one to get here.
#[derive(Debug, Clone)]
struct Unregistered(&'static str);

impl CoordinatorStep for Unregistered {
    fn first_round(&self) -> Result<JobRound, String> {
        Err(format!(
            "no job kind '{}' is registered in this build",
            self.0
        ))
    }
    fn apply(
        &mut self,
        _: &JobRound,
        _: &[DecodedQuantity],
        _: usize,
    ) -> Result<Option<JobRound>, String> {
        self.first_round().map(|_| None)
    }
    fn result(&self) -> Option<serde_json::Value> {
        None
    }
    fn boxed_clone(&self) -> Box<dyn CoordinatorStep> {
        Box::new(self.clone())
    }
}

impl JobLogic {
    /// The logic for `job`.
    pub fn new(job: &ValidJob) -> Self {
        let kind = job.spec().kind;
        let step = match kind.registered() {
            Some(registered) => registered.coordinator(job),
            None => Box::new(Unregistered(kind.name())),
        };
        JobLogic {
            kind: kind.name(),
            step,
        }
    }

    /// The job's first round, or why there is none.
    pub fn first_round(&self) -> Result<RoundKind, String> {
        self.step.first_round().map(RoundKind::Registered)
    }

    /// Takes a round's aggregate (summed over `contributors`); the next round, `None` when
    /// done, or why it cannot go on.
    pub fn apply(
        &mut self,
        kind: &RoundKind,
        decoded: &[DecodedQuantity],
        contributors: usize,
    ) -> Result<Option<RoundKind>, String> {
        let RoundKind::Registered(round) = kind;
        self.step
            .apply(round, decoded, contributors)
            .map(|next| next.map(RoundKind::Registered))
    }

    /// What participants receive of a finished job (for example the segments' centroids), in
    /// the job's own encoding.
    pub fn release(&self) -> Option<Vec<u8>> {
        self.step.release()
    }

    /// The differential-privacy spend so far, for jobs that have a budget.
    pub fn privacy(&self) -> Option<fedbank_common::job::privacy::PrivacyReport> {
        self.step.privacy()
    }

    /// Takes the auditor's counts of the alert step; the limits whose count differs from the
    /// job's verified count.
    pub fn alerts_decrypted(&mut self, counts: &[u16], cost: AlertCost) -> Vec<String> {
        self.step.alerts_decrypted(counts, cost)
    }

    /// The result, once done.
    pub fn result(&self) -> Option<JobResult> {
        self.step.result().map(|released| JobResult {
            kind: self.kind,
            released,
        })
    }
}
