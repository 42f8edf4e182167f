//! Encoding and encrypting one contribution.

use fedbank_common::encoding::{ClipReport, EncodingError, EncodingPlan, QuantityValues};
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

    /// Encodes and encrypts one contribution; the clip report says how many values were clipped
    /// to their bounds (it stays with the participant).
    pub fn contribute(
        &self,
        values: &[QuantityValues<'_>],
    ) -> Result<(Ciphertext<S>, ClipReport), ContributionError> {
        let (slots, report) = self.plan.encode(values)?;
        for clip in report.quantities.iter().filter(|c| c.below + c.above > 0) {
            tracing::warn!(
                quantity = %clip.quantity,
                below = clip.below,
                above = clip.above,
                "values clipped to the declared bound"
            );
        }
        let ciphertext = self.encryptor.encrypt(&slots)?;
        Ok((ciphertext, report))
    }
}
