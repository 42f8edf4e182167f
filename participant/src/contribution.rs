//! Encoding and encrypting one contribution.

use fedbank_common::encoding::{ClipReport, EncodingError, EncodingPlan, QuantityValues};
use fedbank_common::job::CLIPPED_VALUES;
use fedbank_common::secagg::{Ciphertext, CryptoError, Encryptor, RingScalar};

/// Why a contribution could not be made. Nothing is sent when this happens.
#[derive(Debug, thiserror::Error)]
pub enum ContributionError {
    /// The values do not fit the plan.
    #[error("encoding the contribution")]
    Encoding(#[from] EncodingError),
    /// Encryption failed.
    #[error("encrypting the contribution")]
    Crypto(#[from] CryptoError),
}

/// A participant's encoder and encryptor for one job.
pub struct Contributor<S: RingScalar> {
    plan: EncodingPlan,
    encryptor: Encryptor<S>,
}

impl<S: RingScalar> Contributor<S> {
    /// Combines the job's encoding plan and the encryptor under the joint key.
    pub fn new(plan: EncodingPlan, encryptor: Encryptor<S>) -> Self {
        Self { plan, encryptor }
    }

    /// The encoding plan.
    pub fn plan(&self) -> &EncodingPlan {
        &self.plan
    }

    /// Encodes and encrypts one round's contribution: the kind's `values`, one vector per
    /// quantity, and, where the job's plan carries it last ([`CLIPPED_VALUES`]), the count of
    /// values clipped to a declared bound — the `clipped` the kind's step counted and those the
    /// encoding clips. Returns the ciphertext and that count, which the trail records; the
    /// consortium sees only its sum over a round's contributors.
    pub fn contribute_round(
        &self,
        mut values: Vec<Vec<f64>>,
        clipped: u64,
    ) -> Result<(Ciphertext<S>, u64), ContributionError> {
        let counted = self
            .plan
            .quantities()
            .last()
            .filter(|q| q.spec.name == CLIPPED_VALUES)
            .map(|q| q.spec.bound);
        if counted.is_some() {
            values.push(vec![0.0]);
        }
        let (mut slots, report) = self.plan.encode(&quantity_values(&values))?;
        log_clipping(&report);
        let total = clipped + report.total();
        if let (Some(bound), Some(count)) = (counted, values.last_mut()) {
            // The count's own bound is every value the node could clip; it never binds.
            *count = vec![(total as f64).min(bound)];
            slots = self.plan.encode(&quantity_values(&values))?.0;
        }
        let ciphertext = self.encryptor.encrypt(&slots)?;
        Ok((ciphertext, total))
    }

    /// Encodes and encrypts one contribution; the clip report says how many values were clipped
    /// to their bounds (it stays with the participant).
    pub fn contribute(
        &self,
        values: &[QuantityValues<'_>],
    ) -> Result<(Ciphertext<S>, ClipReport), ContributionError> {
        let (slots, report) = self.plan.encode(values)?;
        log_clipping(&report);
        let ciphertext = self.encryptor.encrypt(&slots)?;
        Ok((ciphertext, report))
    }
}

fn quantity_values(values: &[Vec<f64>]) -> Vec<QuantityValues<'_>> {
    values.iter().map(|v| QuantityValues::F64(v)).collect()
}

fn log_clipping(report: &ClipReport) {
    for clip in report.quantities.iter().filter(|c| c.below + c.above > 0) {
        tracing::warn!(
            quantity = %clip.quantity,
            below = clip.below,
            above = clip.above,
            "values clipped to the declared bound"
        );
    }
}
