//! Summing the contributions of one slot and combining the committee's partial decryptions.
//!
//! A slot fills in two steps (docs/threat-model.md §9): participants commit (a signed statement
//! naming ciphertext and mask by digest), the roster of commitments is fixed, and only then are
//! ciphertexts revealed against it. A ciphertext without a commitment in the roster, or one
//! that is not the committed one, is refused.

use fedbank_common::committee::{
    ContributedMask, ContributionStatement, DecryptionRequest, PartialDecryption, MASK_DIGEST_LABEL,
};
use fedbank_common::digest::Digest;
use fedbank_common::endorsement::Signed;
use fedbank_common::ids::{JobId, NodeId};
use fedbank_common::policy::Manifest;
use fedbank_common::roster::{RevealStatement, Roster, RosterEntry};
use fedbank_common::secagg::{
    combine, Ciphertext, CryptoError, KeySetup, RingScalar, SchemeParameters,
};
use std::collections::BTreeMap;

/// Why a contribution or a combination was refused. The aggregate is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum AggregationError {
    /// The participant already contributed to this slot.
    #[error("job {job} round {round} quantity '{quantity}': {participant} already contributed (ciphertext {previous}); the second contribution is ignored")]
    DuplicateContribution {
        /// Job.
        job: JobId,
        /// Round.
        round: u32,
        /// Quantity.
        quantity: String,
        /// The participant.
        participant: NodeId,
        /// Digest of the contribution kept.
        previous: Digest,
    },
    /// The ciphertext does not belong to this slot.
    #[error(
        "contribution from {participant} to job {job} round {round} quantity '{quantity}' rejected"
    )]
    Misfit {
        /// Job.
        job: JobId,
        /// Round.
        round: u32,
        /// Quantity.
        quantity: String,
        /// The participant.
        participant: NodeId,
        /// What did not fit.
        #[source]
        source: CryptoError,
    },
    /// The contribution's signed statement does not describe it.
    #[error("contribution from {participant} to job {job} round {round} quantity '{quantity}' rejected: its signed statement does not match ({field})")]
    Statement {
        /// Job.
        job: JobId,
        /// Round.
        round: u32,
        /// Quantity.
        quantity: String,
        /// The participant.
        participant: NodeId,
        /// Field that differs.
        field: &'static str,
    },
    /// A ciphertext whose participant has no commitment in the fixed roster, or a commitment
    /// that came after the roster was fixed.
    #[error("job {job} round {round} quantity '{quantity}': {participant} {problem}")]
    Roster {
        /// Job.
        job: JobId,
        /// Round.
        round: u32,
        /// Quantity.
        quantity: String,
        /// The participant.
        participant: NodeId,
        /// What was wrong.
        problem: &'static str,
    },
    /// Too few contributors to ask for a decryption.
    #[error("job {job} round {round} quantity '{quantity}': {got} contributors, at least {required} are required before decryption")]
    TooFewContributors {
        /// Job.
        job: JobId,
        /// Round.
        round: u32,
        /// Quantity.
        quantity: String,
        /// Contributors so far.
        got: usize,
        /// min_participants.
        required: usize,
    },
    /// A partial decryption is missing, repeated, from outside the committee, or for another
    /// manifest.
    #[error("job {job} round {round} quantity '{quantity}': {problem}")]
    BadPartials {
        /// Job.
        job: JobId,
        /// Round.
        round: u32,
        /// Quantity.
        quantity: String,
        /// What was wrong.
        problem: PartialProblem,
    },
    /// Combining failed.
    #[error("combining partial decryptions")]
    Combine(#[from] CryptoError),
}

/// What was wrong with the set of partial decryptions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartialProblem {
    /// A member's partial decryption is missing.
    #[error("no partial decryption from committee member {0}")]
    Missing(NodeId),
    /// A member answered twice.
    #[error("two partial decryptions from {0}")]
    Repeated(NodeId),
    /// A node outside the committee answered.
    #[error("{0} is not on the committee")]
    Outsider(NodeId),
    /// A member answered for another manifest.
    #[error("{member} answered for manifest {got}, the request was {expected}")]
    WrongManifest {
        /// The member.
        member: NodeId,
        /// Manifest requested.
        expected: Digest,
        /// Manifest answered.
        got: Digest,
    },
}

/// The running sum of one slot's contributions, and each contributor's signed statement and
/// mask (the committee sums the masks itself before it decrypts; the bodies are not kept).
pub struct RoundAggregate<S: RingScalar> {
    setup: KeySetup,
    round: u32,
    attempt: u32,
    quantity: String,
    value_count: u64,
    /// Signed statements committed before the roster was fixed.
    committed: BTreeMap<NodeId, Signed<ContributionStatement>>,
    roster: Option<Roster>,
    contributions: BTreeMap<NodeId, Digest>,
    evidence: BTreeMap<NodeId, ContributedMask<S>>,
    sum: Option<Ciphertext<S>>,
}

impl<S: RingScalar> RoundAggregate<S> {
    /// An empty aggregate for `value_count` values of `quantity` in `round`.
    pub fn new(setup: KeySetup, round: u32, quantity: impl Into<String>, value_count: u64) -> Self {
        Self {
            setup,
            round,
            attempt: 0,
            quantity: quantity.into(),
            value_count,
            committed: BTreeMap::new(),
            roster: None,
            contributions: BTreeMap::new(),
            evidence: BTreeMap::new(),
            sum: None,
        }
    }

    /// The same slot for attempt `attempt` of its round (0 by default).
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// The key setup of the slot.
    pub fn setup(&self) -> &KeySetup {
        &self.setup
    }

    /// The slot's round.
    pub fn round(&self) -> u32 {
        self.round
    }

    /// The slot's quantity.
    pub fn quantity(&self) -> &str {
        &self.quantity
    }

    /// The slot's round attempt.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Contributors whose ciphertext was revealed so far, with their ciphertext digests.
    pub fn contributions(&self) -> &BTreeMap<NodeId, Digest> {
        &self.contributions
    }

    /// Participants that committed so far, with their signed statements.
    pub fn committed(&self) -> &BTreeMap<NodeId, Signed<ContributionStatement>> {
        &self.committed
    }

    /// The roster, once fixed.
    pub fn roster(&self) -> Option<&Roster> {
        self.roster.as_ref()
    }

    /// Whether `participant` has done the slot's current step: committed while the roster is
    /// open, revealed once it is fixed.
    pub fn answered(&self, participant: &NodeId) -> bool {
        match self.roster {
            None => self.committed.contains_key(participant),
            Some(_) => self.contributions.contains_key(participant),
        }
    }

    /// How many participants have done the slot's current step.
    pub fn answered_count(&self) -> usize {
        match self.roster {
            None => self.committed.len(),
            Some(_) => self.contributions.len(),
        }
    }

    fn roster_error(&self, participant: NodeId, problem: &'static str) -> AggregationError {
        AggregationError::Roster {
            job: self.setup.job.clone(),
            round: self.round,
            quantity: self.quantity.clone(),
            participant,
            problem,
        }
    }

    fn statement_error(&self, participant: NodeId, field: &'static str) -> AggregationError {
        AggregationError::Statement {
            job: self.setup.job.clone(),
            round: self.round,
            quantity: self.quantity.clone(),
            participant,
            field,
        }
    }

    /// Takes a participant's commitment: its signed statement (whose signature the caller has
    /// checked) for exactly this slot. Refuses a second one from the same participant and any
    /// after the roster is fixed. Returns the statement's digest.
    pub fn commit(
        &mut self,
        participant: NodeId,
        statement: Signed<ContributionStatement>,
    ) -> Result<Digest, AggregationError> {
        if self.roster.is_some() {
            return Err(self.roster_error(
                participant,
                "committed after the round's roster was fixed; the commitment is ignored",
            ));
        }
        if let Some(previous) = self.committed.get(&participant) {
            return Err(AggregationError::DuplicateContribution {
                job: self.setup.job.clone(),
                round: self.round,
                quantity: self.quantity.clone(),
                participant,
                previous: previous.statement.ciphertext_digest,
            });
        }
        let s = &statement.statement;
        let checks = [
            (statement.signer == participant, "signer"),
            (s.job == self.setup.job, "job"),
            (s.key_epoch == self.setup.key_epoch, "key epoch"),
            (s.round == self.round, "round"),
            (s.attempt == self.attempt, "attempt"),
            (s.quantity == self.quantity, "quantity"),
            (s.value_count == self.value_count, "value count"),
        ];
        if let Some((_, field)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(self.statement_error(participant, field));
        }
        let digest = fedbank_common::endorsement::Statement::digest(s);
        self.committed.insert(participant, statement);
        Ok(digest)
    }

    /// Withdraws `participant`'s commitment while the roster is not fixed (its node
    /// reconnected); whether there was one to withdraw.
    pub fn withdraw(&mut self, participant: &NodeId) -> bool {
        self.roster.is_none() && self.committed.remove(participant).is_some()
    }

    /// Fixes the roster of the commitments taken so far (once; later calls return the same
    /// roster). `None` while nothing was committed.
    pub fn fix_roster(&mut self) -> Option<&Roster> {
        if self.roster.is_none() && !self.committed.is_empty() {
            self.roster = Some(Roster {
                job: self.setup.job.clone(),
                key_epoch: self.setup.key_epoch,
                round: self.round,
                attempt: self.attempt,
                quantity: self.quantity.clone(),
                entries: self
                    .committed
                    .iter()
                    .map(|(participant, signed)| RosterEntry {
                        participant: participant.clone(),
                        statement: fedbank_common::endorsement::Statement::digest(
                            &signed.statement,
                        ),
                    })
                    .collect(),
            });
        }
        self.roster.as_ref()
    }

    fn misfit(&self, participant: &NodeId, source: CryptoError) -> AggregationError {
        AggregationError::Misfit {
            job: self.setup.job.clone(),
            round: self.round,
            quantity: self.quantity.clone(),
            participant: participant.clone(),
            source,
        }
    }

    /// Adds a participant's revealed ciphertext with its signed reveal (whose signature the
    /// caller has checked). Refuses, without changing the sum, a participant without a
    /// commitment in the fixed roster, a second contribution from the same participant, any
    /// ciphertext for another job, epoch, profile or length, a ciphertext that is not the
    /// committed one, and a reveal that does not name the committed statement and the roster.
    pub fn add(
        &mut self,
        participant: NodeId,
        ciphertext: Ciphertext<S>,
        reveal: Signed<RevealStatement>,
    ) -> Result<Digest, AggregationError> {
        let Some(roster) = &self.roster else {
            return Err(self.roster_error(
                participant,
                "revealed a ciphertext before the round's roster was fixed",
            ));
        };
        let roster_digest = roster.digest();
        let Some(statement) = self.committed.get(&participant).cloned() else {
            return Err(self.roster_error(
                participant,
                "revealed a ciphertext without a commitment in the round's roster",
            ));
        };
        if let Some(previous) = self.contributions.get(&participant) {
            return Err(AggregationError::DuplicateContribution {
                job: self.setup.job.clone(),
                round: self.round,
                quantity: self.quantity.clone(),
                participant,
                previous: *previous,
            });
        }
        let fits = ciphertext.job == self.setup.job
            && ciphertext.key_epoch == self.setup.key_epoch
            && ciphertext.profile == self.setup.profile
            && ciphertext.value_count == self.value_count;
        if !fits {
            let reason = format!(
                "expected job {} epoch {} profile {} with {} values, got job {} epoch {} profile {} with {} values",
                self.setup.job, self.setup.key_epoch, self.setup.profile, self.value_count,
                ciphertext.job, ciphertext.key_epoch, ciphertext.profile, ciphertext.value_count
            );
            return Err(self.misfit(&participant, CryptoError::Mismatch(reason)));
        }
        ciphertext
            .validate()
            .map_err(|e| self.misfit(&participant, e))?;
        let digest = ciphertext.digest();
        let s = &statement.statement;
        let r = &reveal.statement;
        let checks = [
            (s.ciphertext_digest == digest, "ciphertext digest"),
            (
                s.mask_digest == Digest::of_scalars(MASK_DIGEST_LABEL, &ciphertext.masks),
                "mask digest",
            ),
            (reveal.signer == participant, "reveal signer"),
            (r.job == self.setup.job, "reveal job"),
            (r.round == self.round, "reveal round"),
            (r.attempt == self.attempt, "reveal attempt"),
            (
                r.contribution == fedbank_common::endorsement::Statement::digest(s),
                "revealed statement",
            ),
            (r.roster == roster_digest, "reveal roster"),
        ];
        if let Some((_, field)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(self.statement_error(participant, field));
        }
        let evidence = ContributedMask {
            statement,
            reveal,
            masks: ciphertext.masks.clone(),
        };
        match &mut self.sum {
            None => self.sum = Some(ciphertext),
            Some(sum) => sum
                .add_assign(&ciphertext)
                .map_err(|e| self.misfit(&participant, e))?,
        }
        tracing::debug!(
            job = %self.setup.job, round = self.round, quantity = %self.quantity,
            participant = %participant, ciphertext = %digest, "contribution added"
        );
        self.evidence.insert(participant.clone(), evidence);
        self.contributions.insert(participant, digest);
        Ok(digest)
    }

    /// Runs both steps for contributors that all act at once — each `(participant, ciphertext,
    /// signed statement)` committed, the roster fixed, each revealed with the reveal `sign`
    /// makes for it — as in simulations, benchmarks and tests, which hold every participant's
    /// signer. Stops at the first refusal.
    pub fn commit_and_reveal(
        &mut self,
        contributions: Vec<(NodeId, Ciphertext<S>, Signed<ContributionStatement>)>,
        sign: impl Fn(&NodeId, RevealStatement) -> Signed<RevealStatement>,
    ) -> Result<Vec<Digest>, AggregationError> {
        let mut revealed = Vec::with_capacity(contributions.len());
        for (participant, ciphertext, statement) in contributions {
            let reveal = statement.statement.clone();
            self.commit(participant.clone(), statement)?;
            revealed.push((participant, ciphertext, reveal));
        }
        let Some(roster) = self.fix_roster().cloned() else {
            return Ok(Vec::new());
        };
        revealed
            .into_iter()
            .map(|(participant, ciphertext, statement)| {
                let reveal = sign(&participant, RevealStatement::of(&statement, &roster));
                self.add(participant, ciphertext, reveal)
            })
            .collect()
    }

    /// The manifest with each contributor's signed statement and mask, to send to every
    /// committee member; refused below `min_participants` contributors.
    pub fn decryption_request(
        &self,
        min_participants: usize,
    ) -> Result<DecryptionRequest<S>, AggregationError> {
        let (sum, roster) = match (&self.sum, &self.roster) {
            (Some(sum), Some(roster)) if self.contributions.len() >= min_participants => {
                (sum, roster)
            }
            _ => {
                return Err(AggregationError::TooFewContributors {
                    job: self.setup.job.clone(),
                    round: self.round,
                    quantity: self.quantity.clone(),
                    got: self.contributions.len(),
                    required: min_participants,
                })
            }
        };
        let manifest = Manifest {
            job: self.setup.job.clone(),
            key_epoch: self.setup.key_epoch,
            profile: self.setup.profile,
            round: self.round,
            quantity: self.quantity.clone(),
            value_count: self.value_count,
            contributors: self.contributions.keys().cloned().collect(),
            ciphertext_digests: self.contributions.values().copied().collect(),
            aggregate_mask_digest: Digest::of_scalars(MASK_DIGEST_LABEL, &sum.masks),
        };
        Ok(DecryptionRequest {
            manifest,
            roster: roster.clone(),
            contributions: self.evidence.values().cloned().collect(),
        })
    }

    /// Combines one partial decryption from every committee member into the summed plaintext
    /// slots. Refuses a missing, repeated, outside or off-manifest answer.
    pub fn combine(
        &self,
        params: &SchemeParameters,
        request: &DecryptionRequest<S>,
        partials: &[PartialDecryption<S>],
    ) -> Result<Vec<i128>, AggregationError> {
        let bad = |problem| AggregationError::BadPartials {
            job: self.setup.job.clone(),
            round: self.round,
            quantity: self.quantity.clone(),
            problem,
        };
        let expected = request.manifest.digest();
        let mut by_member: BTreeMap<&NodeId, &PartialDecryption<S>> = BTreeMap::new();
        for p in partials {
            if self.setup.committee.binary_search(&p.member).is_err() {
                return Err(bad(PartialProblem::Outsider(p.member.clone())));
            }
            if p.manifest_digest != expected {
                return Err(bad(PartialProblem::WrongManifest {
                    member: p.member.clone(),
                    expected,
                    got: p.manifest_digest,
                }));
            }
            if by_member.insert(&p.member, p).is_some() {
                return Err(bad(PartialProblem::Repeated(p.member.clone())));
            }
        }
        if let Some(missing) = self
            .setup
            .committee
            .iter()
            .find(|m| !by_member.contains_key(m))
        {
            return Err(bad(PartialProblem::Missing(missing.clone())));
        }
        let sum = self
            .sum
            .as_ref()
            .ok_or(AggregationError::TooFewContributors {
                job: self.setup.job.clone(),
                round: self.round,
                quantity: self.quantity.clone(),
                got: 0,
                required: 1,
            })?;
        let values: Vec<&[S]> = by_member.values().map(|p| p.values.as_slice()).collect();
        Ok(combine(params, &sum.bodies, &values)?)
    }
}
