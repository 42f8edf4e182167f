//! A round request as a participant answers it: checked against the job's plan, computed by the
//! job kind's step on the local data (table, transaction history, labeled customers or contact
//! log), noised where
//! the job has differential privacy, encoded, encrypted and committed (docs/threat-model.md §8).

use super::{
    NodeViolation, ParticipantMachine, ParticipantOutbound, ParticipantOutput, ParticipantProgress,
};
use crate::Contributor;
use fedbank_common::audit::events as trail;
use fedbank_common::committee::{ContributionStatement, MASK_DIGEST_LABEL};
use fedbank_common::digest::Digest;
use fedbank_common::job::RoundKind;
use fedbank_common::protocol::{Notice, NoticeKind, RoundRequest};
use fedbank_common::secagg::{Encryptor, RingScalar};

impl<S: RingScalar> ParticipantMachine<S> {
    pub(super) fn on_round(&mut self, request: RoundRequest) -> Result<(), NodeViolation> {
        let spec = self.job.spec().clone();
        if request.job != spec.job {
            return Err(NodeViolation::WrongJob {
                message: "RoundRequest",
                what: format!("job {}", request.job),
            });
        }
        let key = self
            .key
            .clone()
            .ok_or(NodeViolation::NoKey(request.round))?;
        let computation = fedbank_common::round_plan::computation_digest(&self.job, &request.kind);
        self.plan.admit(
            &self.job,
            request.round,
            request.attempt,
            &request.kind,
            computation,
        )?;
        // Asked again for the commitment it holds (after a reconnect): the same one again.
        if self.recommit(request.round, request.attempt, computation) {
            return Ok(());
        }
        // A contribution of an earlier round is never revealed now.
        self.pending = None;
        let label = request.kind.label();
        let outcome = self
            .local_values(&request)
            .and_then(|(values, clipped)| {
                let plan = self.job.plan(&request.kind).map_err(|e| e.to_string())?;
                Ok((values, clipped, plan))
            })
            .and_then(|(mut values, clipped, plan)| {
                let noise = match &mut self.privacy {
                    Some(privacy) => {
                        let names: Vec<&str> = plan
                            .quantities()
                            .iter()
                            .map(|q| q.spec.name.as_str())
                            .collect();
                        privacy
                            .add(request.round, &request.kind, &names, &mut values)
                            .map_err(|e| e.to_string())?
                    }
                    None => None,
                };
                Ok((values, clipped, plan, noise))
            })
            .and_then(|(values, clipped, plan, noise)| {
                let encryptor =
                    Encryptor::new(key, self.job.params().clone()).map_err(|e| e.to_string())?;
                // Values the kind clipped (`clipped`) and values the encoding clipped to a
                // quantity's declared bound, together in the trail's `clipped_values` and, where
                // the plan carries it, encrypted with the round's values.
                let (ciphertext, clipped) = Contributor::new(plan, encryptor)
                    .contribute_round(values, clipped)
                    .map_err(|e| {
                        format!(
                            "{e}: {}",
                            std::error::Error::source(&e)
                                .map(|s| s.to_string())
                                .unwrap_or_default()
                        )
                    })?;
                Ok((ciphertext, clipped, noise))
            });
        let outcome = outcome.map(|(ciphertext, clipped, noise)| {
            if let (Some(_), Some(privacy)) = (&noise, &self.privacy) {
                self.outputs
                    .push_back(ParticipantOutput::SavePrivacy(Box::new(privacy.state())));
            }
            if let Some(added) = noise {
                let noise = added
                    .noise
                    .quantities
                    .iter()
                    .zip(&added.shares)
                    .map(|(q, share)| trail::AddedNoise {
                        name: q.name.clone(),
                        sensitivity: q.sensitivity,
                        sigma: q.sigma,
                        share_added: *share,
                    })
                    .collect();
                self.audit(trail::PrivacySpent::Added(trail::NoiseAdded {
                    job: spec.job.clone(),
                    round: request.round,
                    quantity: label.to_owned(),
                    rho: added.noise.rho,
                    noise,
                    epsilon_spent: added.epsilon_spent,
                }));
            }
            (ciphertext, clipped)
        });
        match outcome {
            Ok((ciphertext, clipped)) => {
                let digest = ciphertext.digest();
                let statement = self.signer.sign(ContributionStatement {
                    job: spec.job.clone(),
                    job_digest: self.job.digest(),
                    key_epoch: ciphertext.key_epoch,
                    round: request.round,
                    attempt: request.attempt,
                    quantity: label.to_owned(),
                    value_count: ciphertext.value_count,
                    computation,
                    mask_digest: Digest::of_scalars(MASK_DIGEST_LABEL, &ciphertext.masks),
                    ciphertext_digest: digest,
                });
                self.commit(statement, ciphertext, clipped);
            }
            Err(reason) => {
                self.progress(ParticipantProgress::CannotContribute {
                    round: request.round,
                    reason: reason.clone(),
                });
                self.send(ParticipantOutbound::Notice(Notice {
                    job: spec.job.clone(),
                    round: Some(request.round),
                    kind: NoticeKind::CannotContribute,
                    text: reason,
                }));
            }
        }
        Ok(())
    }

    /// This node's values for a round, from its job kind's participant step; a local report the
    /// step makes of it is recorded in the trail (what was checked) and kept locally.
    fn local_values(&mut self, request: &RoundRequest) -> Result<(Vec<Vec<f64>>, u64), String> {
        let RoundKind::Registered(round) = &request.kind;
        // Every kind's sums are bounded for at most `max_rows` rows.
        let max_rows = self.job.spec().max_rows;
        if self.table.rows as u64 > max_rows {
            return Err(format!(
                "the local table has {} rows, the job allows at most {max_rows}",
                self.table.rows
            ));
        }
        let input = super::local_input(
            &self.table,
            self.row_ids.as_deref(),
            self.history.as_ref(),
            self.customers.as_ref(),
            self.contacts.as_ref(),
        );
        let kind = self.job.spec().kind.name();
        let step = self
            .step
            .as_mut()
            .ok_or_else(|| format!("the {kind} job has no participant step"))?;
        let local = step.local_round(input, round)?;
        if let Some(report) = local.report {
            let (first_contact, last_contact) = report.period.unzip();
            self.audit(trail::RulesEvaluated {
                job: self.job.spec().job.clone(),
                round: request.round,
                rules: report.checked,
                first_contact,
                last_contact,
            });
            self.outputs
                .push_back(ParticipantOutput::LocalReport(report.report));
        }
        Ok((local.values, local.clipped))
    }
}
