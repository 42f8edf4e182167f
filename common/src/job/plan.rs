//! What a [`ValidJob`] computes: its round kinds' quantities and encoding plans, and the
//! largest message it can need.

use super::compliance::rules::ComplianceSpec;
use super::{JobSpec, PropensitySpec, RoundKind, SegmentSpec, ValidJob};
use crate::digest::Digest;
use crate::encoding::{Combine, EncodingError, EncodingPlan, QuantitySpec};
use crate::secagg::SchemeParameters;

impl ValidJob {
    /// The specification (committee and participants sorted).
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }
    /// The crypto parameters.
    pub fn params(&self) -> &SchemeParameters {
        &self.params
    }
    /// Digest of the specification; participants check it before contributing.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Quantities of the moments round: per feature count, missing, sum and sum of squares.
    pub fn moments_quantities(&self) -> Vec<QuantitySpec> {
        let rows = self.spec.max_rows as f64;
        self.spec
            .features
            .iter()
            .flat_map(|f| {
                [
                    QuantitySpec::new(format!("{}.count", f.name), 1, rows, 1.0),
                    QuantitySpec::new(format!("{}.missing", f.name), 1, rows, 1.0),
                    QuantitySpec::new(format!("{}.sum", f.name), 1, rows * f.bound, f.scale),
                    QuantitySpec::new(
                        format!("{}.sumsq", f.name),
                        1,
                        rows * f.bound * f.bound,
                        f.scale,
                    ),
                ]
            })
            .collect()
    }

    /// Quantities of the histogram round: per feature, counts in bins+2 bins.
    pub fn histogram_quantities(&self) -> Vec<QuantitySpec> {
        let rows = self.spec.max_rows as f64;
        self.spec
            .features
            .iter()
            .map(|f| {
                QuantitySpec::new(
                    format!("{}.hist", f.name),
                    self.spec.histogram_bins + 2,
                    rows,
                    1.0,
                )
            })
            .collect()
    }

    /// The largest message this job can need, in bytes: a ciphertext, decryption request or
    /// partial decryption for its widest round, or a public key; the network caps every frame
    /// at this.
    pub fn max_message_bytes(&self) -> usize {
        let ring = self.params.ring();
        let width = ring.torus_bits as usize / 8;
        let fixed = [self.moments_quantities(), self.histogram_quantities()]
            .into_iter()
            .filter_map(|q| EncodingPlan::new(&q, &self.params).ok());
        let registered = self
            .spec
            .kind
            .registered()
            .map(|job| job.widest_rounds(self))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|round| self.plan(&RoundKind::Registered(round)).ok());
        let slots = fixed
            .chain(registered)
            .map(|p| p.slot_count())
            .max()
            .unwrap_or(0)
            .max(1);
        let masks = crate::secagg::chunk_count(slots, ring.polynomial_size) * ring.polynomial_size;
        // Room for a signed statement and the signer's certificate.
        let signed = 4 << 10;
        let contribution = (masks + slots) * width + signed + (64 << 10);
        // A decryption request carries every contributor's mask and signed statement.
        let decryption = self.spec.participants.len() * (masks * width + signed) + (64 << 10);
        // The key bundle: every member's share, signed, twice the commitments.
        let bundle =
            self.spec.committee.len() * (ring.polynomial_size * width + 3 * signed) + (64 << 10);
        let secagg = contribution.max(decryption).max(bundle);
        // The auditor's evaluation key is by far the largest message of a job with alerts.
        match self.alert_rules() {
            0 => secagg,
            _ => secagg.max(crate::alerts::MAX_AUDITOR_KEYS_BYTES),
        }
    }

    /// The propensity table of a propensity job.
    pub fn propensity(&self) -> Option<&PropensitySpec> {
        self.spec.propensity.as_ref()
    }

    /// Coefficients of a propensity job's model (0 for other jobs).
    pub fn coefficients(&self) -> usize {
        self.propensity()
            .map_or(0, |p| p.design_names(&self.spec.features).len())
    }

    /// The job's differential-privacy plan, if its kind has one for it ([`super::Job::privacy`]).
    pub fn privacy(&self) -> Option<crate::job::propensity::privacy::PrivacyPlan> {
        self.spec.kind.registered()?.privacy(&self.spec)
    }

    /// The compliance table of a compliance job.
    pub fn compliance(&self) -> Option<&ComplianceSpec> {
        self.spec.compliance.as_ref()
    }

    /// How many limits the private alert step compares (0 for a job without one).
    pub fn alert_rules(&self) -> usize {
        self.alert_limits().len()
    }

    /// The limits of the private alert step, in order (the job kind's [`super::Job::alert_limits`]):
    /// what every role expects an alert request, tally or manifest to list.
    pub fn alert_limits(&self) -> Vec<crate::alerts::AlertRule> {
        self.spec
            .kind
            .registered()
            .map(|k| k.alert_limits(&self.spec))
            .unwrap_or_default()
    }

    /// The segment table of a segment job.
    pub fn segment(&self) -> Option<&SegmentSpec> {
        self.spec.segment.as_ref()
    }

    /// The encoding plan of a round.
    pub fn plan(&self, round: &RoundKind) -> Result<EncodingPlan, RoundPlanError> {
        let specs = match round {
            RoundKind::Registered(r) => {
                let job = self
                    .spec
                    .kind
                    .registered()
                    .ok_or_else(|| RoundPlanError::Foreign {
                        round: round.label(),
                        kind: self.spec.kind.name(),
                    })?;
                job.quantities(self, r)
                    .map_err(|problem| RoundPlanError::Parameters {
                        round: round.label(),
                        problem,
                    })?
            }
        };
        let mut specs = specs;
        if let Some(noise) = self.privacy().and_then(|p| p.round_kind(round)) {
            // A noised value needs room for its noise share and a grid finer than it.
            for spec in &mut specs {
                if let Some(n) = noise.quantities.iter().find(|n| n.name == spec.name) {
                    let honest = self
                        .privacy()
                        .map_or(1, |p| p.honest_contributors(self.spec.min_participants));
                    let share =
                        crate::job::propensity::privacy::PrivacyPlan::share(n.sigma, honest);
                    spec.bound += 16.0 * share;
                    spec.scale = crate::job::propensity::privacy::PrivacyPlan::noised_scale(
                        spec.scale, share,
                    );
                }
            }
        }
        if let Some(clipped) = self.clipped_values_quantity(&specs) {
            specs.push(clipped);
        }
        Ok(EncodingPlan::new(&specs, &self.params)?)
    }

    /// The quantity a round carries after its kind's own: how many of the contributor's values
    /// were clipped to a declared bound, so that the consortium-wide count is decrypted with the
    /// round's aggregate and no institution's own count is seen by anyone
    /// ([`CLIPPED_VALUES`]). Only a round with a summed quantity has it (presence rounds clip
    /// nothing), and a differentially private job has it in no round: its exact count would
    /// spend privacy the job's budget does not account for.
    fn clipped_values_quantity(&self, kind: &[QuantitySpec]) -> Option<QuantitySpec> {
        if self.privacy().is_some() || kind.iter().all(|q| q.combine == Combine::Presence) {
            return None;
        }
        // At most every value of every row, and every value of the round's quantities.
        let per_row = self.spec.features.len().max(1) as f64;
        let values: usize = kind.iter().map(|q| q.len).sum();
        let bound = self.spec.max_rows as f64 * per_row + values as f64;
        Some(QuantitySpec::new(CLIPPED_VALUES, 1, bound, 1.0))
    }
}

/// The name of the count of clipped values every round of a job without differential privacy
/// carries last, after its kind's quantities: the coordinator takes it off the decrypted
/// aggregate before the kind sees it, and records it with the decryption
/// (`aggregate.decrypted.clipped_values`).
pub const CLIPPED_VALUES: &str = "clipped_values";

/// Why a round of a job has no encoding plan.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RoundPlanError {
    /// The quantities cannot be encoded under the job's profile.
    #[error(transparent)]
    Encoding(#[from] EncodingError),
    /// A registered job's round whose job is not this one.
    #[error("round '{round}' is not a round of a {kind} job")]
    Foreign {
        /// Round label.
        round: &'static str,
        /// The job's kind.
        kind: &'static str,
    },
    /// A registered job could not read its round's parameters.
    #[error("round '{round}': {problem}")]
    Parameters {
        /// Round label.
        round: &'static str,
        /// What is wrong.
        problem: String,
    },
}
