//! A participant's contribution in two steps (docs/threat-model.md §9, "Masks chosen after the
//! honest ones"): it commits to its ciphertext by a signed statement, and reveals the
//! ciphertext only against a roster that lists that commitment — and against one roster only.
//!
//! ```text
//!   RoundRequest  ──▶ encrypt; keep the ciphertext   ──▶ ContributionCommitment (signed digests)
//!   RevealRequest ──▶ same job, epoch, round, attempt, quantity? every listed node enrolled?
//!                     this node's own statement listed? no other roster revealed against?
//!                     ──▶ Contribution {ciphertext, signed reveal}  audit contribution.sent
//!                     the same roster again ──▶ the same Contribution again (a reconnect)
//! ```

use super::{NodeViolation, ParticipantMachine, ParticipantOutbound, ParticipantProgress};
use fedbank_common::audit::events as trail;
use fedbank_common::committee::ContributionStatement;
use fedbank_common::digest::Digest;
use fedbank_common::endorsement::{Signed, Statement};
use fedbank_common::ids::NodeId;
use fedbank_common::protocol::{
    Contribution, ContributionCommitment, Notice, NoticeKind, RevealRequest,
};
use fedbank_common::roster::{RevealStatement, Roster, RosterError};
use fedbank_common::secagg::{Ciphertext, RingScalar};

/// A contribution committed and not yet (or already) revealed.
#[derive(Debug, Clone)]
pub(super) struct PendingContribution<S: RingScalar> {
    pub(super) statement: Signed<ContributionStatement>,
    pub(super) ciphertext: Ciphertext<S>,
    /// Values clipped to their declared bounds (for the trail).
    pub(super) clipped: u64,
    /// The roster it was revealed against, and what was sent.
    pub(super) revealed: Option<(Digest, Contribution<S>)>,
}

/// Why a participant refused to reveal its contribution against a roster. Nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevealRefusal {
    /// No contribution is committed for that round attempt.
    #[error("round {round} attempt {attempt}: this node has no contribution committed for it")]
    NothingCommitted {
        /// Round.
        round: u32,
        /// Attempt.
        attempt: u32,
    },
    /// The roster is for another slot.
    #[error("round {round}: the roster is for another slot than this node's commitment ({field})")]
    OtherSlot {
        /// Round.
        round: u32,
        /// Field that differs.
        field: &'static str,
    },
    /// The roster is malformed.
    #[error(transparent)]
    Malformed(#[from] RosterError),
    /// The roster does not list this node's own commitment.
    #[error("round {round}: the roster does not list this node's own commitment")]
    NotListed {
        /// Round.
        round: u32,
    },
    /// The roster lists a node that is not a participant of the job.
    #[error("round {round}: the roster lists {participant}, who is not a participant of the job")]
    Outsider {
        /// Round.
        round: u32,
        /// The node.
        participant: NodeId,
    },
    /// The contribution was already revealed against another roster.
    #[error("round {round} attempt {attempt}: this contribution was revealed against roster {first}; a contribution is revealed against one roster only, not also {second}")]
    SecondRoster {
        /// Round.
        round: u32,
        /// Attempt.
        attempt: u32,
        /// Roster revealed against.
        first: Digest,
        /// Roster offered now.
        second: Digest,
    },
}

impl<S: RingScalar> ParticipantMachine<S> {
    /// Keeps `ciphertext` and sends the signed commitment to it.
    pub(super) fn commit(
        &mut self,
        statement: Signed<ContributionStatement>,
        ciphertext: Ciphertext<S>,
        clipped: u64,
    ) {
        let (round, attempt) = (statement.statement.round, statement.statement.attempt);
        self.progress(ParticipantProgress::Committed {
            round,
            quantity: statement.statement.quantity.clone(),
        });
        self.send(ParticipantOutbound::ContributionCommitment(
            ContributionCommitment {
                round,
                attempt,
                statement: statement.clone(),
            },
        ));
        self.pending = Some(PendingContribution {
            statement,
            ciphertext,
            clipped,
            revealed: None,
        });
    }

    /// Sends the pending commitment again if it is for `round`/`attempt` and `computation`.
    pub(super) fn recommit(&mut self, round: u32, attempt: u32, computation: Digest) -> bool {
        let Some(pending) = &self.pending else {
            return false;
        };
        let s = &pending.statement.statement;
        if (s.round, s.attempt, s.computation) != (round, attempt, computation) {
            return false;
        }
        let again = ContributionCommitment {
            round,
            attempt,
            statement: pending.statement.clone(),
        };
        self.send(ParticipantOutbound::ContributionCommitment(again));
        true
    }

    pub(super) fn on_reveal(&mut self, request: RevealRequest) -> Result<(), NodeViolation> {
        let roster = request.roster;
        let digest = match self.check_roster(&roster) {
            Ok(digest) => digest,
            Err(refusal) => {
                // Without a contribution listed, this node has nothing for the round: say so,
                // so that the round need not wait for it (a restarted node lost its ciphertext).
                if matches!(
                    refusal,
                    RevealRefusal::NothingCommitted { .. } | RevealRefusal::NotListed { .. }
                ) {
                    self.send(ParticipantOutbound::Notice(Notice {
                        job: self.job.spec().job.clone(),
                        round: Some(roster.round),
                        kind: NoticeKind::CannotContribute,
                        text: refusal.to_string(),
                    }));
                }
                return Err(refusal.into());
            }
        };
        let pending = self
            .pending
            .as_mut()
            .ok_or(RevealRefusal::NothingCommitted {
                round: roster.round,
                attempt: roster.attempt,
            })?;
        if let Some((first, sent)) = &pending.revealed {
            if *first != digest {
                return Err(RevealRefusal::SecondRoster {
                    round: roster.round,
                    attempt: roster.attempt,
                    first: *first,
                    second: digest,
                }
                .into());
            }
            let again = sent.clone();
            self.send(ParticipantOutbound::Contribution(again));
            return Ok(());
        }
        let s = &pending.statement.statement;
        let reveal = self.signer.sign(RevealStatement::of(s, &roster));
        let contribution = Contribution {
            round: s.round,
            attempt: s.attempt,
            ciphertext: pending.ciphertext.clone(),
            reveal,
        };
        pending.revealed = Some((digest, contribution.clone()));
        let event = trail::ContributionSent {
            job: s.job.clone(),
            round: s.round,
            attempt: s.attempt,
            quantity: s.quantity.clone(),
            digest: s.ciphertext_digest.to_hex(),
            roster: digest.to_hex(),
            clipped_values: pending.clipped,
        };
        let progress = ParticipantProgress::Sent {
            round: s.round,
            quantity: s.quantity.clone(),
        };
        self.audit(event);
        self.progress(progress);
        self.send(ParticipantOutbound::Contribution(contribution));
        Ok(())
    }

    /// Checks a roster against this node's pending commitment and its job; its digest.
    fn check_roster(&self, roster: &Roster) -> Result<Digest, RevealRefusal> {
        let pending = self
            .pending
            .as_ref()
            .filter(|p| {
                p.statement.statement.round == roster.round
                    && p.statement.statement.attempt == roster.attempt
            })
            .ok_or(RevealRefusal::NothingCommitted {
                round: roster.round,
                attempt: roster.attempt,
            })?;
        let s = &pending.statement.statement;
        let checks = [
            (roster.job == s.job, "job"),
            (roster.key_epoch == s.key_epoch, "key epoch"),
            (roster.quantity == s.quantity, "quantity"),
        ];
        if let Some((_, field)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(RevealRefusal::OtherSlot {
                round: roster.round,
                field,
            });
        }
        roster.validate()?;
        let participants = &self.job.spec().participants;
        if let Some(outsider) = roster.participants().find(|n| !participants.contains(n)) {
            return Err(RevealRefusal::Outsider {
                round: roster.round,
                participant: outsider.clone(),
            });
        }
        if roster.statement_of(&self.id) != Some(s.digest()) {
            return Err(RevealRefusal::NotListed {
                round: roster.round,
            });
        }
        Ok(roster.digest())
    }
}
