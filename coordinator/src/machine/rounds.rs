//! The round phase of the coordinator: asking for contributions, closing a round (decrypt,
//! retry or fail), combining the committee's partial decryptions, finishing, and deadlines.

use super::events::{CoordinatorOutbound, JobFailure, Millis, Status, Violation};
use super::CoordinatorProgress;
use super::{audit_output, CoordinatorMachine, CoordinatorOutput, Round, Stage};
use crate::aggregation::RoundAggregate;
use fedbank_common::audit::events as trail;
use fedbank_common::committee::PartialDecryption;
use fedbank_common::encoding::DecodedQuantity;
use fedbank_common::ids::NodeId;
use fedbank_common::job::{RoundKind, CLIPPED_VALUES};
use fedbank_common::protocol::{
    Contribution, ContributionCommitment, JobReleased, Notice, NoticeKind, RevealRequest,
    RoundRequest,
};
use fedbank_common::secagg::RingScalar;
use std::collections::{BTreeMap, BTreeSet};

impl<S: RingScalar> CoordinatorMachine<S> {
    pub(super) fn start_round(&mut self, number: u32, attempt: u32, kind: RoundKind, now: Millis) {
        let plan = match self.job.plan(&kind) {
            Ok(plan) => plan,
            Err(e) => {
                return self.fail(JobFailure::Decode {
                    round: number,
                    reason: e.to_string(),
                })
            }
        };
        let Some(setup) = self.setup.clone() else {
            return;
        };
        let asked: BTreeSet<NodeId> = self
            .present()
            .filter(|n| self.job.spec().participants.contains(n))
            .cloned()
            .collect();
        let request = RoundRequest {
            job: self.job.spec().job.clone(),
            round: number,
            attempt,
            kind: kind.clone(),
        };
        // The number is on disk before any request carrying it leaves, so a restart never
        // reuses a number that went out.
        self.next_round = self.next_round.max(number + 1);
        self.emit_checkpoint();
        for node in &asked {
            self.send(node, CoordinatorOutbound::Round(request.clone()));
        }
        self.audit(trail::RoundStarted {
            job: request.job.clone(),
            round: number,
            attempt,
            quantity: kind.label().to_owned(),
            asked: asked.iter().cloned().collect(),
        });
        self.progress(CoordinatorProgress::RoundStarted {
            round: number,
            label: kind.label(),
            attempt,
            asked: asked.len(),
        });
        self.stage = Stage::Collecting(Box::new(Round {
            number,
            attempt,
            aggregate: RoundAggregate::new(setup, number, kind.label(), plan.slot_count() as u64)
                .with_attempt(attempt),
            kind,
            asked,
            deadline: now + self.job.spec().round_timeout_ms,
        }));
    }

    /// A participant's commitment: its signed statement, ahead of its ciphertext.
    pub(super) fn on_contribution_commitment(
        &mut self,
        from: NodeId,
        c: ContributionCommitment,
        now: Millis,
    ) -> Result<(), Violation> {
        self.collecting(&from, "ContributionCommitment", c.round, c.attempt)?;
        // The signature is checked here, the statement's fields by the aggregate; members check
        // both again, since this node is not trusted.
        self.trust
            .verify(&c.statement)
            .map_err(|e| Violation::BadStatement {
                from: from.clone(),
                reason: e.to_string(),
            })?;
        if c.statement.statement.job_digest != self.job.digest() {
            return Err(Violation::BadStatement {
                from,
                reason: "the statement names another job file digest".into(),
            });
        }
        if let Stage::Collecting(round) = &mut self.stage {
            round.aggregate.commit(from.clone(), c.statement)?;
        }
        self.progress(CoordinatorProgress::Committed {
            round: c.round,
            from: from.clone(),
        });
        self.advance_round(now);
        Ok(())
    }

    /// A participant's ciphertext, revealed against the round's roster.
    pub(super) fn on_contribution(
        &mut self,
        from: NodeId,
        c: Contribution<S>,
        now: Millis,
    ) -> Result<(), Violation> {
        self.collecting(&from, "Contribution", c.round, c.attempt)?;
        self.trust
            .verify(&c.reveal)
            .map_err(|e| Violation::BadStatement {
                from: from.clone(),
                reason: e.to_string(),
            })?;
        let Stage::Collecting(round) = &mut self.stage else {
            return Ok(());
        };
        let digest = round.aggregate.add(from.clone(), c.ciphertext, c.reveal)?;
        let (number, label) = (round.number, round.kind.label());
        self.audit(trail::ContributionReceived {
            job: self.job.spec().job.clone(),
            round: number,
            quantity: label.to_owned(),
            node: from.clone(),
            digest: digest.to_hex(),
        });
        self.progress(CoordinatorProgress::Contributed {
            round: number,
            from: from.clone(),
        });
        self.advance_round(now);
        Ok(())
    }

    /// Checks that a round message from `from` belongs to the round being collected.
    fn collecting(
        &self,
        from: &NodeId,
        message: &'static str,
        number: u32,
        attempt: u32,
    ) -> Result<&Round<S>, Violation> {
        let Stage::Collecting(round) = &self.stage else {
            return Err(Violation::Unexpected {
                from: from.clone(),
                message,
                stage: self.stage_name(),
            });
        };
        if number != round.number || attempt != round.attempt {
            return Err(Violation::OutOfRound {
                from: from.clone(),
                message,
                round: number,
                attempt,
                current_round: round.number,
                current_attempt: round.attempt,
            });
        }
        if !self.job.spec().participants.contains(from) {
            return Err(Violation::Unexpected {
                from: from.clone(),
                message,
                stage: "collecting contributions (the sender is not a participant)",
            });
        }
        Ok(round)
    }

    /// Moves the round on once everyone still asked has answered its current step, and what is
    /// there can be decrypted: fixes the roster after the commitments, closes the round after
    /// the reveals. If it cannot be decrypted, an immediate retry would ask the same nodes
    /// again and burn the job's retries in milliseconds; the round waits for its deadline
    /// instead, so that late joiners (a participant still reading a large table, one
    /// reconnecting) are in the next attempt.
    pub(super) fn advance_round(&mut self, now: Millis) {
        let min = self.job.spec().min_participants;
        let Stage::Collecting(round) = &self.stage else {
            return;
        };
        let a = &round.aggregate;
        if !round.asked.iter().all(|n| a.answered(n)) || a.answered_count() < min {
            return;
        }
        match a.roster() {
            None => self.fix_roster(now),
            Some(_) => self.close_round(now),
        }
    }

    /// Fixes the round's roster of commitments and asks each listed participant to reveal
    /// against it; the round waits for the reveals until a fresh deadline.
    fn fix_roster(&mut self, now: Millis) {
        let timeout = self.job.spec().round_timeout_ms;
        let job = self.job.spec().job.clone();
        let Stage::Collecting(round) = &mut self.stage else {
            return;
        };
        let Some(roster) = round.aggregate.fix_roster().cloned() else {
            return;
        };
        let listed: BTreeSet<NodeId> = roster.participants().cloned().collect();
        let unlisted: Vec<NodeId> = round
            .asked
            .iter()
            .filter(|n| !listed.contains(*n))
            .cloned()
            .collect();
        round.asked.retain(|n| listed.contains(n));
        round.deadline = now + timeout;
        let (number, attempt, label) = (round.number, round.attempt, round.kind.label());
        for node in &unlisted {
            self.audit(trail::ParticipantDropped {
                job: job.clone(),
                round: number,
                attempt: Some(attempt),
                node: node.clone(),
                reason: "no commitment before the roster was fixed".into(),
            });
        }
        for node in &listed {
            self.send(
                node,
                CoordinatorOutbound::Reveal(RevealRequest {
                    roster: roster.clone(),
                }),
            );
        }
        self.audit(trail::RosterFixed {
            job: job.clone(),
            round: number,
            attempt,
            quantity: label.to_owned(),
            roster: roster.digest().to_hex(),
            participants: listed.iter().cloned().collect(),
        });
        self.progress(CoordinatorProgress::RosterFixed {
            round: number,
            commitments: listed.len(),
        });
    }

    /// The round's deadline passed: fix the roster if enough committed, else close the round
    /// (decrypt what was revealed, retry or fail).
    pub(super) fn on_round_deadline(&mut self, now: Millis) {
        let min = self.job.spec().min_participants;
        if let Stage::Collecting(round) = &self.stage {
            if round.aggregate.roster().is_none() && round.aggregate.committed().len() >= min {
                return self.fix_roster(now);
            }
        }
        self.close_round(now);
    }

    pub(super) fn close_round(&mut self, now: Millis) {
        let Stage::Collecting(round) = std::mem::replace(&mut self.stage, Stage::Done) else {
            return;
        };
        let spec = self.job.spec().clone();
        let (min, retries) = (spec.min_participants, spec.max_round_retries);
        // Before the roster, what counts is who committed; after it, who revealed.
        let a = &round.aggregate;
        let got = a.answered_count();
        let reason = match a.roster() {
            None => "no commitment before the round closed",
            Some(_) => "no contribution before the round closed",
        };
        for missing in round.asked.iter().filter(|n| !a.answered(n)) {
            self.outputs
                .push_back(audit_output(trail::ParticipantDropped {
                    job: spec.job.clone(),
                    round: round.number,
                    attempt: Some(round.attempt),
                    node: missing.clone(),
                    reason: reason.into(),
                }));
        }
        match round.aggregate.decryption_request(min) {
            Ok(request) => {
                let request = std::sync::Arc::new(request);
                let members = spec.committee.clone();
                for member in &members {
                    self.send(member, CoordinatorOutbound::Decrypt(request.clone()));
                }
                self.audit(trail::DecryptionRequested {
                    job: spec.job.clone(),
                    round: round.number,
                    quantity: round.kind.label().to_owned(),
                    manifest: request.manifest.digest().to_hex(),
                    contributors: request.manifest.contributors.clone(),
                    min_participants: min,
                });
                self.progress(CoordinatorProgress::Decrypting {
                    round: round.number,
                    contributions: got,
                });
                let deadline = now + spec.decryption_timeout_ms;
                self.stage = Stage::Decrypting {
                    round,
                    request,
                    partials: BTreeMap::new(),
                    deadline,
                };
            }
            Err(_) if round.attempt < retries => {
                self.progress(CoordinatorProgress::TooFewContributors {
                    round: round.number,
                    got,
                    min,
                });
                self.start_round(round.number, round.attempt + 1, round.kind, now);
            }
            Err(_) => self.fail(JobFailure::TooFewContributors {
                round: round.number,
                attempts: round.attempt + 1,
                got,
                required: min,
            }),
        }
    }

    pub(super) fn on_partial(
        &mut self,
        from: NodeId,
        p: PartialDecryption<S>,
        now: Millis,
    ) -> Result<(), Violation> {
        let stage = self.stage_name();
        let Stage::Decrypting {
            round,
            request,
            partials,
            ..
        } = &mut self.stage
        else {
            return Err(Violation::Unexpected {
                from,
                message: "PartialDecryption",
                stage,
            });
        };
        if !self.job.spec().committee.contains(&from) || p.member != from {
            return Err(Violation::NotAMember {
                from,
                message: "PartialDecryption",
            });
        }
        if p.manifest_digest != request.manifest.digest() {
            return Err(Violation::OutOfRound {
                from,
                message: "PartialDecryption",
                round: round.number,
                attempt: round.attempt,
                current_round: round.number,
                current_attempt: round.attempt,
            });
        }
        if partials.contains_key(&from) {
            return Err(Violation::Duplicate {
                from,
                message: "PartialDecryption",
            });
        }
        let manifest = p.manifest_digest;
        partials.insert(from.clone(), p);
        let (number, label) = (round.number, round.kind.label());
        let complete = partials.len() == self.job.spec().committee.len();
        self.audit(trail::DecryptionApproved {
            job: self.job.spec().job.clone(),
            round: number,
            quantity: label.to_owned(),
            node: from.clone(),
            manifest: manifest.to_hex(),
        });
        if complete {
            self.finish_round(now);
        }
        Ok(())
    }

    pub(super) fn finish_round(&mut self, now: Millis) {
        let Stage::Decrypting {
            round,
            request,
            partials,
            ..
        } = std::mem::replace(&mut self.stage, Stage::Done)
        else {
            return;
        };
        let all: Vec<_> = partials.into_values().collect();
        let decoded = self
            .job
            .plan(&round.kind)
            .map_err(|e| e.to_string())
            .and_then(|plan| {
                let slots = round
                    .aggregate
                    .combine(self.job.params(), &request, &all)
                    .map_err(|e| e.to_string())?;
                // A dishonest participant's reach stops at what honest ones could produce.
                plan.check_honest_range(&slots, request.manifest.contributors.len())
                    .map_err(|e| e.to_string())?;
                plan.decode(&slots).map_err(|e| e.to_string())
            });
        let (decoded, clipped_values) = match decoded {
            Ok(d) => take_clipped_values(d),
            Err(reason) => {
                return self.fail(JobFailure::Decode {
                    round: round.number,
                    reason,
                })
            }
        };
        let spec = self.job.spec();
        self.outputs
            .push_back(audit_output(trail::AggregateDecrypted {
                job: spec.job.clone(),
                round: round.number,
                quantity: round.kind.label().to_owned(),
                manifest: request.manifest.digest().to_hex(),
                contributors: request.manifest.contributors.len(),
                clipped_values,
            }));
        self.rounds_done += 1;
        self.outputs.push_back(audit_output(trail::RoundCompleted {
            job: spec.job.clone(),
            round: round.number,
        }));
        let contributors = request.manifest.contributors.clone();
        let applied = self.logic.apply(&round.kind, &decoded, contributors.len());
        if applied.is_ok() {
            self.journal(round.number, &round.kind, &contributors, &decoded);
        }
        self.outputs.push_back(CoordinatorOutput::Aggregate {
            round: round.number,
            kind: round.kind.clone(),
            values: decoded,
        });
        if let (Some(noise), Some(report)) = (
            self.job.privacy().and_then(|p| p.round_kind(&round.kind)),
            self.logic.privacy(),
        ) {
            let contributors = request.manifest.contributors.len();
            let m = self.job.spec().min_participants;
            // Contributors beyond the colluding ones each added σ/√honest.
            let honest = self.job.privacy().map_or(m, |p| p.honest_contributors(m));
            let carried = contributors.saturating_sub(m - honest);
            let quantities = noise
                .quantities
                .iter()
                .map(|q| trail::ReleasedNoise {
                    name: q.name.clone(),
                    sensitivity: q.sensitivity,
                    sigma_accounted: q.sigma,
                    sigma_carried: q.sigma * (carried as f64 / honest as f64).sqrt(),
                })
                .collect();
            self.audit(trail::PrivacySpent::Released(trail::PrivacyReleased {
                job: self.job.spec().job.clone(),
                round: round.number,
                quantity: round.kind.label().to_owned(),
                contributors,
                min_participants: m,
                noise: quantities,
                rho: noise.rho,
                rho_spent: report.rho_spent,
                epsilon_spent: report.epsilon_spent,
                delta: report.delta,
                epsilon_budget: report.epsilon_budget,
                stopped_by_budget: report.stopped_by_budget,
            }));
        }
        match applied {
            Ok(Some(next)) => self.start_round(round.number + 1, 0, next, now),
            Ok(None) if self.job.alert_rules() > 0 => {
                self.start_alerts(round.number + 1, &contributors, now)
            }
            Ok(None) => self.finish(),
            Err(reason) => self.fail(JobFailure::Decode {
                round: round.number,
                reason,
            }),
        }
    }

    pub(super) fn finish(&mut self) {
        let Some(result) = self.logic.result() else {
            return;
        };
        let job = self.job.spec().job.clone();
        let digest = match fedbank_common::digest::Digest::of_json("fedbank.result.v1", &result) {
            Ok(digest) => digest,
            Err(e) => {
                return self.fail(JobFailure::Decode {
                    round: self.rounds_done,
                    reason: e.to_string(),
                })
            }
        };
        let release = self.logic.release();
        self.audit(trail::JobCompleted {
            job: job.clone(),
            rounds: self.rounds_done,
            result_digest: digest.to_hex(),
            release_digest: release.as_deref().map(trail::release_digest),
        });
        if let Some(release) = release {
            let released = JobReleased {
                job: job.clone(),
                release,
            };
            for node in self.present().cloned().collect::<Vec<_>>() {
                self.send(&node, CoordinatorOutbound::Released(released.clone()));
            }
        }
        let notice = Notice {
            job,
            round: None,
            kind: NoticeKind::Finished,
            text: "job finished".into(),
        };
        for node in self.present().cloned().collect::<Vec<_>>() {
            self.send(&node, CoordinatorOutbound::Notice(notice.clone()));
        }
        self.progress(CoordinatorProgress::Finished);
        self.stage = Stage::Done;
        self.status = Status::Finished(result);
    }

    pub(super) fn fail(&mut self, failure: JobFailure) {
        let job = self.job.spec().job.clone();
        self.audit(trail::JobFailed {
            job: job.clone(),
            reason: failure.to_string(),
        });
        let notice = Notice {
            job,
            round: None,
            kind: NoticeKind::Aborted,
            text: failure.to_string(),
        };
        for node in self.present().cloned().collect::<Vec<_>>() {
            self.send(&node, CoordinatorOutbound::Notice(notice.clone()));
        }
        self.progress(CoordinatorProgress::Failed(failure.clone()));
        self.stage = Stage::Done;
        self.status = Status::Failed(failure);
    }

    pub(super) fn on_notice(
        &mut self,
        from: NodeId,
        n: Notice,
        now: Millis,
    ) -> Result<(), Violation> {
        match (n.kind, &self.stage) {
            (NoticeKind::MessageRefused, _) => {
                let reason = n.printable_text();
                self.progress(CoordinatorProgress::RefusedByNode { node: from, reason });
                Ok(())
            }
            (NoticeKind::Refused, Stage::AwaitingAuditor { .. })
                if self.job.spec().auditor.as_ref() == Some(&from) =>
            {
                self.fail(JobFailure::Alerts(format!(
                    "the auditor {from} refused: {}",
                    n.text
                )));
                Ok(())
            }
            (NoticeKind::CannotContribute, Stage::Alerting(_)) => {
                self.alert_dropped(&from, &format!("cannot send its rates: {}", n.text), now);
                Ok(())
            }
            (NoticeKind::Refused, Stage::Decrypting { round, .. })
                if self.job.spec().committee.contains(&from) =>
            {
                let failure = JobFailure::MemberRefused {
                    round: round.number,
                    member: from,
                    reason: n.text,
                };
                self.fail(failure);
                Ok(())
            }
            (NoticeKind::CannotContribute, Stage::Collecting(round)) => {
                let number = round.number;
                if let Stage::Collecting(round) = &mut self.stage {
                    round.asked.remove(&from);
                }
                self.audit(trail::ParticipantDropped {
                    job: self.job.spec().job.clone(),
                    round: number,
                    attempt: None,
                    node: from.clone(),
                    reason: format!("cannot contribute: {}", n.text),
                });
                self.progress(CoordinatorProgress::CannotContribute {
                    round: number,
                    from: from.clone(),
                    reason: n.text.clone(),
                });
                self.advance_round(now);
                Ok(())
            }
            _ => Err(Violation::Unexpected {
                from,
                message: "Notice",
                stage: self.stage_name(),
            }),
        }
    }

    pub(super) fn on_disconnect(&mut self, node: NodeId, now: Millis) {
        if self.alert_dropped(&node, "disconnected before sending its rates", now) {
            return;
        }
        // A member that goes away during a decryption is waited for until the decryption's
        // deadline: back before it (a restart, a reconnect), it is sent the same request on its
        // Hello and the round is decrypted under its own number; not back by then, the round is
        // run again once the committee is back (`on_tick`, `retry_decryption`).
        if let Stage::Collecting(round) = &mut self.stage {
            if round.asked.remove(&node) && !round.aggregate.contributions().contains_key(&node) {
                let (number, attempt) = (round.number, round.attempt);
                let job = self.job.spec().job.clone();
                self.audit(trail::ParticipantDropped {
                    job: job.clone(),
                    round: number,
                    attempt: Some(attempt),
                    node: node.clone(),
                    reason: "disconnected before contributing".into(),
                });
                self.progress(CoordinatorProgress::LeftBeforeContributing {
                    round: number,
                    node: node.clone(),
                });
                // As for a contribution: move on early only if what is there can be decrypted.
                self.advance_round(now);
            }
        }
    }

    /// A committee member went away (or missed the deadline) during a decryption. Nothing of the
    /// round is released: the aggregate needs every member's partial decryption. Within the
    /// job's `max_decryption_retries`, the round is run again under a fresh number once the
    /// whole committee is back (within the key-setup timeout); otherwise the job stops.
    pub(super) fn retry_decryption(&mut self, members: Vec<NodeId>, now: Millis) {
        let Stage::Decrypting { round, .. } = std::mem::replace(&mut self.stage, Stage::Joining)
        else {
            return;
        };
        let spec = self.job.spec().clone();
        if self.decryption_retries >= spec.max_decryption_retries {
            return self.fail(JobFailure::MemberTimeout {
                round: round.number,
                members,
            });
        }
        self.decryption_retries += 1;
        self.audit(trail::DecryptionRetried {
            job: spec.job.clone(),
            round: round.number,
            quantity: round.kind.label().to_owned(),
            missing_members: members.to_vec(),
            retry: self.decryption_retries,
            max_retries: spec.max_decryption_retries,
            next_round: self.next_round,
            released: "nothing: the aggregate needs every member's partial decryption".into(),
        });
        self.progress(CoordinatorProgress::DecryptionLost {
            round: round.number,
            members: members.clone(),
            rerun_as: self.next_round,
            retry: self.decryption_retries,
            max_retries: spec.max_decryption_retries,
        });
        self.pending = Some(super::checkpoint::Pending::Round(round.kind));
        self.waiting_until = Some(now + spec.key_setup_timeout_ms);
        self.maybe_continue(now);
    }

    pub(super) fn on_tick(&mut self, now: Millis) {
        match &self.stage {
            Stage::KeySetup {
                setup,
                commitments,
                set,
                shares,
                deadline,
            } if now >= *deadline => {
                // Before the set is formed a member is missing its commitment, after it its share.
                let missing = setup
                    .committee
                    .iter()
                    .filter(|m| match set {
                        None => !commitments.contains_key(*m),
                        Some(_) => !shares.contains_key(*m),
                    })
                    .cloned()
                    .collect();
                self.fail(JobFailure::KeySetupTimeout(missing));
            }
            Stage::Collecting(round) if now >= round.deadline => self.on_round_deadline(now),
            Stage::Alerting(step) if now >= step.deadline => self.close_alerts(now),
            Stage::AwaitingAuditor { deadline, .. } if now >= *deadline => {
                let auditor = self.job.spec().auditor.clone();
                self.fail(JobFailure::Alerts(format!(
                    "the auditor {auditor:?} did not answer in time"
                )));
            }
            Stage::Decrypting {
                partials, deadline, ..
            } if now >= *deadline => {
                let members = self
                    .job
                    .spec()
                    .committee
                    .iter()
                    .filter(|m| !partials.contains_key(*m))
                    .cloned()
                    .collect();
                self.retry_decryption(members, now);
            }
            Stage::Joining if self.waiting_until.is_some_and(|d| now >= d) => {
                let members = self
                    .job
                    .spec()
                    .committee
                    .iter()
                    .filter(|m| !self.welcomed.contains(*m))
                    .cloned()
                    .collect();
                self.fail(JobFailure::MemberTimeout {
                    round: self.next_round,
                    members,
                });
            }
            _ => {}
        }
    }
}

/// The kind's quantities of a decrypted round, and the consortium-wide count of clipped values
/// the plan carries after them (`None` for a round without it).
fn take_clipped_values(mut decoded: Vec<DecodedQuantity>) -> (Vec<DecodedQuantity>, Option<u64>) {
    match decoded.last() {
        Some(q) if q.name == CLIPPED_VALUES => {
            let count = q.exact.first().map(|&n| u64::try_from(n).unwrap_or(0));
            decoded.pop();
            (decoded, count)
        }
        _ => (decoded, None),
    }
}
