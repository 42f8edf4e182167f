//! Crash recovery of the coordinator: a journal of what it has legitimately learned, written
//! after every round start and every completed round, from which a restarted coordinator
//! resumes the job.
//!
//! The checkpoint holds the job's digest, the key setup and joint public key (key epoch), the
//! next round number, and every completed round's decrypted aggregate with its contributors —
//! the aggregates the coordinator is allowed to see, nothing more. The job logic is rebuilt by
//! replaying them (each job's `apply` is deterministic), so the resumed job continues exactly
//! where the last completed round left it, with no format of its own to keep in step.
//!
//! A resumed job never reuses a round number: a round that was started but not completed before
//! the crash is run again under the next number, so no committee member is asked to decrypt the
//! same slot twice with another contributor set, and no participant is asked the same round
//! number for a different computation.
//!
//! The shell writes the checkpoint atomically (write to a temporary file, fsync, rename) and
//! records how many trail events existed, so that a resume over a shortened trail is refused.

use super::events::{CoordinatorOutput, Millis};
pub use super::journal::{Checkpoint, CompletedRound, ResumeError};
use super::CoordinatorProgress;
use super::{CoordinatorMachine, Stage};
use fedbank_common::audit::events as trail;
use fedbank_common::encoding::DecodedQuantity;
use fedbank_common::ids::NodeId;
use fedbank_common::job::{RoundKind, ValidJob};
use fedbank_common::key_ceremony::KeyBundle;
use fedbank_common::secagg::RingScalar;

/// What a resumed coordinator does once its committee is back.
#[derive(Debug, Clone)]
pub(super) enum Pending {
    /// Start this round under the next number.
    Round(RoundKind),
    /// Run the alert step over these contributors.
    Alerts(Vec<NodeId>),
    /// Everything was done: finish.
    Finish,
}

impl<S: RingScalar> CoordinatorMachine<S> {
    /// The checkpoint of the job so far.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            job: self.job.spec().job.clone(),
            job_digest: self.job.digest(),
            mask_seed: format!("{:032x}", self.mask_seed),
            setup: self.setup.clone(),
            key_bundle: self
                .key_bundle
                .as_ref()
                .and_then(|k| fedbank_common::wire::encode(k).ok()),
            next_round: self.next_round,
            completed: self.completed.clone(),
            trail_events: 0,
            restarts: self.restart,
            data_commitments: self.data_commitments.clone(),
        }
    }

    pub(super) fn emit_checkpoint(&mut self) {
        let checkpoint = self.checkpoint();
        self.outputs
            .push_back(CoordinatorOutput::Checkpoint(Box::new(checkpoint)));
    }

    /// A coordinator resuming `job` from `checkpoint`: the completed rounds are replayed into
    /// the job logic; once the committee (and, for alerts, the auditor's keys) is back, the job
    /// continues with the next round under a fresh number. The trail records the restart.
    pub fn resume(
        job: ValidJob,
        checkpoint: &Checkpoint,
        trust: fedbank_common::endorsement::ConsortiumTrust,
    ) -> Result<Self, ResumeError> {
        if checkpoint.job != job.spec().job || checkpoint.job_digest != job.digest() {
            return Err(ResumeError::OtherJob {
                job: checkpoint.job.to_string(),
                digest: checkpoint.job_digest.to_hex(),
                expected: job.digest().to_hex(),
            });
        }
        let mask_seed = u128::from_str_radix(&checkpoint.mask_seed, 16)
            .map_err(|_| ResumeError::Corrupt("mask seed"))?;
        let key_bundle = match &checkpoint.key_bundle {
            Some(bytes) => {
                let bundle = fedbank_common::wire::decode::<KeyBundle<S>>(bytes)
                    .map_err(|_| ResumeError::Corrupt("key bundle"))?;
                bundle
                    .verify(&trust)
                    .map_err(|_| ResumeError::Corrupt("key bundle (it does not verify)"))?;
                Some(bundle)
            }
            None => None,
        };
        let mut machine = Self::blank(job, mask_seed, trust);
        let mut next = Some(
            machine
                .logic
                .first_round()
                .map_err(|reason| ResumeError::Replay { round: 1, reason })?,
        );
        for round in &checkpoint.completed {
            next = machine
                .logic
                .apply(&round.kind, &round.decoded, round.contributors.len())
                .map_err(|reason| ResumeError::Replay {
                    round: round.round,
                    reason,
                })?;
        }
        let pending = match (next, checkpoint.completed.last()) {
            (Some(kind), _) => Pending::Round(kind),
            (None, Some(last)) if machine.job.alert_rules() > 0 => {
                Pending::Alerts(last.contributors.clone())
            }
            (None, _) => Pending::Finish,
        };
        machine.setup = checkpoint.setup.clone();
        machine.key_epoch = checkpoint.setup.as_ref().map_or(1, |s| s.key_epoch);
        machine.key_bundle = key_bundle;
        machine.completed = checkpoint.completed.clone();
        machine.rounds_done = checkpoint.completed.len() as u32;
        machine.next_round = checkpoint.next_round.max(1);
        machine.pending = Some(pending);
        machine.restart = checkpoint.restarts + 1;
        machine.data_commitments = checkpoint.data_commitments.clone();
        let spec = machine.job.spec().clone();
        let resumed = trail::JobResumed {
            job: spec.job.clone(),
            config_digest: machine.job.digest().to_hex(),
            completed_rounds: checkpoint.completed.iter().map(|r| r.round).collect(),
            next_round: machine.next_round,
            key_epoch: checkpoint.setup.as_ref().map(|s| s.key_epoch),
            trail_events_at_checkpoint: checkpoint.trail_events,
            restart: machine.restart,
        };
        machine.audit(resumed);
        // Written now, so that a crash before the next round still numbers the next restart
        // after this one.
        machine.emit_checkpoint();
        machine.progress(CoordinatorProgress::Resumed {
            job: spec.job.to_string(),
            completed: checkpoint.completed.len(),
            next_round: machine.next_round,
        });
        Ok(machine)
    }

    /// Whether a resumed job can go on: its committee is back (and the auditor's keys, for
    /// alerts). Then the pending step starts.
    pub(super) fn maybe_continue(&mut self, now: Millis) -> bool {
        if self.pending.is_none() || !matches!(self.stage, Stage::Joining) {
            return false;
        }
        let spec = self.job.spec();
        if !spec.committee.iter().all(|m| self.welcomed.contains(m)) {
            return true;
        }
        if self.job.alert_rules() > 0 && self.auditor_keys.is_none() {
            return true;
        }
        self.waiting_until = None;
        match self.pending.take() {
            Some(Pending::Round(kind)) => self.start_round(self.next_round, 0, kind, now),
            Some(Pending::Alerts(contributors)) => {
                self.start_alerts(self.next_round, &contributors, now)
            }
            Some(Pending::Finish) | None => self.finish(),
        }
        true
    }

    /// Records a completed round in the journal.
    pub(super) fn journal(
        &mut self,
        round: u32,
        kind: &RoundKind,
        contributors: &[NodeId],
        decoded: &[DecodedQuantity],
    ) {
        self.completed.push(CompletedRound {
            round,
            kind: kind.clone(),
            contributors: contributors.to_vec(),
            decoded: decoded.to_vec(),
        });
        self.emit_checkpoint();
    }
}
