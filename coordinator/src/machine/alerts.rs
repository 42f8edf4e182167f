//! The private alert step of a job whose kind declares limits (`Job::alert_limits`: the
//! compliance job's rules with a `max_violation_rate`; docs/threat-model.md §6): the auditor's
//! keys, each contributor's encrypted rates compared with the limits under the auditor's server
//! key, the sum of the bits per limit sent to the auditor, and its decrypted counts, which the
//! job's step takes (`CoordinatorStep::alerts_decrypted`).
//!
//! ```text
//!  (before key setup) AlertKeys from the auditor ──▶ checked, kept; key setup may start
//!  last round decrypted ──▶ Alerting: AlertRequest to each contributor
//!  Alerting ──all asked answered, or deadline──▶ ≥ min_participants? ──yes──▶ AwaitingAuditor
//!                                                     │ no ──▶ Failed
//!  AwaitingAuditor ──AlertCounts matching the manifest──▶ Finished
//!                  ──auditor refuses or misses the deadline──▶ Failed
//! ```
//!
//! The coordinator holds the server key only: it can compare and add, never decrypt. It never
//! sends the auditor anything but the per-rule sums.

use super::events::{CoordinatorOutbound, JobFailure, Millis, Violation};
use super::CoordinatorProgress;
use super::{CoordinatorMachine, Stage};
use fedbank_common::alerts::{self, AlertCost, AlertEvaluator, OverLimitBits, RatePublicKey};
use fedbank_common::audit::events as trail;
use fedbank_common::digest::Digest;
use fedbank_common::ids::NodeId;
use fedbank_common::protocol::{
    AlertContribution, AlertCounts, AlertKeys, AlertManifest, AlertRequest, AlertTally,
};
use fedbank_common::secagg::RingScalar;
use std::collections::{BTreeMap, BTreeSet};

/// The auditor's keys as the coordinator keeps them.
pub(super) struct AuditorKeysHeld {
    public_key: Vec<u8>,
    /// The auditor's signed statement of the public key, forwarded to every contributor.
    endorsement: fedbank_common::endorsement::Signed<fedbank_common::protocol::AlertKeyStatement>,
    public_digest: Digest,
    evaluator: AlertEvaluator,
}

/// The alert step in progress.
pub(super) struct AlertStep {
    pub(super) round: u32,
    asked: BTreeSet<NodeId>,
    received: BTreeMap<NodeId, (Digest, OverLimitBits)>,
    pub(super) deadline: Millis,
    compare_seconds: f64,
    tally_seconds: f64,
}

impl AlertStep {
    fn complete(&self) -> bool {
        self.asked.iter().all(|n| self.received.contains_key(n))
    }
}

impl<S: RingScalar> CoordinatorMachine<S> {
    fn is_auditor(&self, node: &NodeId) -> bool {
        self.job.spec().auditor.as_ref() == Some(node)
    }

    pub(super) fn on_alert_keys(
        &mut self,
        from: NodeId,
        keys: AlertKeys,
        now: Millis,
    ) -> Result<(), Violation> {
        if !self.is_auditor(&from) {
            return Err(Violation::NotTheAuditor {
                from,
                message: "AlertKeys",
            });
        }
        let public_digest = alerts::digest(&keys.public_key);
        if let Some(held) = &self.auditor_keys {
            // A reconnecting auditor sends its keys again: the same keys change nothing.
            return if held.public_digest == public_digest {
                Ok(())
            } else {
                Err(Violation::Duplicate {
                    from,
                    message: "AlertKeys (different keys)",
                })
            };
        }
        let bad = |reason: String| Violation::BadAlert {
            from: from.clone(),
            reason,
        };
        if keys.job != self.job.spec().job {
            return Err(bad(format!("keys for job {}", keys.job)));
        }
        let statement = self
            .trust
            .verify(&keys.endorsement)
            .map_err(|e| bad(format!("the key's signed statement: {e}")))?;
        let fits = keys.endorsement.signer == from
            && statement.job == self.job.spec().job
            && statement.job_digest == self.job.digest()
            && statement.public_key == public_digest;
        if !fits {
            return Err(bad(
                "the signed statement names another auditor, job or public key".to_owned(),
            ));
        }
        RatePublicKey::from_bytes(&keys.public_key).map_err(|e| bad(e.to_string()))?;
        let evaluator =
            AlertEvaluator::from_bytes(&keys.server_key).map_err(|e| bad(e.to_string()))?;
        self.audit(trail::AlertKeys {
            job: self.job.spec().job.clone(),
            auditor: from.clone(),
            public_key: public_digest.to_hex(),
            server_key: alerts::digest(&keys.server_key).to_hex(),
        });
        self.progress(CoordinatorProgress::AlertKeysAccepted {
            auditor: from.clone(),
            server_key_bytes: keys.server_key.len(),
        });
        self.auditor_keys = Some(AuditorKeysHeld {
            endorsement: keys.endorsement,
            public_key: keys.public_key,
            public_digest,
            evaluator,
        });
        self.maybe_start_key_setup(now);
        Ok(())
    }

    /// Starts the alert step with the contributors of the decrypted counts.
    pub(super) fn start_alerts(&mut self, number: u32, contributors: &[NodeId], now: Millis) {
        let Some(held) = &self.auditor_keys else {
            return self.fail(JobFailure::Alerts(
                "the auditor's keys are missing".to_owned(),
            ));
        };
        let request = AlertRequest {
            job: self.job.spec().job.clone(),
            round: number,
            public_key: held.public_key.clone(),
            rules: self.job.alert_limits(),
            endorsement: held.endorsement.clone(),
        };
        let asked: BTreeSet<NodeId> = self
            .present()
            .filter(|n| contributors.contains(n))
            .cloned()
            .collect();
        self.next_round = self.next_round.max(number + 1);
        self.emit_checkpoint();
        for node in &asked {
            self.send(node, CoordinatorOutbound::AlertRequest(request.clone()));
        }
        self.audit(trail::RoundStarted {
            job: request.job.clone(),
            round: number,
            attempt: 0,
            quantity: "alerts".into(),
            asked: asked.iter().cloned().collect(),
        });
        self.progress(CoordinatorProgress::AlertsAsked {
            round: number,
            asked: asked.len(),
        });
        self.stage = Stage::Alerting(Box::new(AlertStep {
            round: number,
            asked,
            received: BTreeMap::new(),
            deadline: now + self.job.spec().round_timeout_ms,
            compare_seconds: 0.0,
            tally_seconds: 0.0,
        }));
        if let Stage::Alerting(step) = &self.stage {
            if step.asked.is_empty() {
                self.close_alerts(now);
            }
        }
    }

    pub(super) fn on_alert_contribution(
        &mut self,
        from: NodeId,
        c: AlertContribution,
        now: Millis,
    ) -> Result<(), Violation> {
        let stage = self.stage_name();
        let limits: Vec<u16> = self
            .job
            .alert_limits()
            .iter()
            .map(|r| r.limit_basis_points)
            .collect();
        let job = self.job.spec().job.clone();
        let (Stage::Alerting(step), Some(held)) = (&mut self.stage, &self.auditor_keys) else {
            return Err(Violation::Unexpected {
                from,
                message: "AlertContribution",
                stage,
            });
        };
        if c.job != job || c.round != step.round {
            return Err(Violation::OutOfRound {
                from,
                message: "AlertContribution",
                round: c.round,
                attempt: 0,
                current_round: step.round,
                current_attempt: 0,
            });
        }
        if !step.asked.contains(&from) {
            return Err(Violation::Unexpected {
                from,
                message: "AlertContribution",
                stage: "collecting rates (the sender was not asked)",
            });
        }
        if step.received.contains_key(&from) {
            return Err(Violation::Duplicate {
                from,
                message: "AlertContribution",
            });
        }
        let started = (self.stopwatch)();
        let bits =
            held.evaluator
                .over_limit(&c.rates, &limits)
                .map_err(|e| Violation::BadAlert {
                    from: from.clone(),
                    reason: e.to_string(),
                })?;
        let seconds = ((self.stopwatch)() - started).as_secs_f64();
        step.compare_seconds += seconds;
        let digest = alerts::digest(&c.rates);
        step.received.insert(from.clone(), (digest, bits));
        let (round, complete) = (step.round, step.complete());
        self.audit(trail::AlertReceived {
            job: job.clone(),
            round,
            node: from.clone(),
            digest: digest.to_hex(),
            comparisons: limits.len(),
        });
        self.progress(CoordinatorProgress::RatesCompared {
            round,
            from: from.clone(),
            limits: limits.len(),
            seconds,
        });
        if complete {
            self.close_alerts(now);
        }
        Ok(())
    }

    /// A contributor that cannot send its rates, or disconnected, is no longer waited for.
    pub(super) fn alert_dropped(&mut self, node: &NodeId, reason: &str, now: Millis) -> bool {
        let Stage::Alerting(step) = &mut self.stage else {
            return false;
        };
        if !step.asked.remove(node) || step.received.contains_key(node) {
            return false;
        }
        let (round, complete) = (step.round, step.complete());
        self.audit(trail::ParticipantDropped {
            job: self.job.spec().job.clone(),
            round,
            attempt: None,
            node: node.clone(),
            reason: reason.to_string(),
        });
        self.progress(CoordinatorProgress::AlertDropped {
            round,
            node: node.clone(),
            reason: reason.to_owned(),
        });
        if complete {
            self.close_alerts(now);
        }
        true
    }

    pub(super) fn close_alerts(&mut self, now: Millis) {
        let Stage::Alerting(mut step) = std::mem::replace(&mut self.stage, Stage::Done) else {
            return;
        };
        let min = self.job.spec().min_participants;
        let (Some(held), Some(auditor)) = (&self.auditor_keys, self.job.spec().auditor.clone())
        else {
            return self.fail(JobFailure::Alerts("no auditor".to_owned()));
        };
        if step.received.len() < min {
            return self.fail(JobFailure::Alerts(format!(
                "only {} institutions sent their rates, at least {min} are required",
                step.received.len()
            )));
        }
        let rules = self.job.alert_limits();
        let started = (self.stopwatch)();
        let bits: Vec<&OverLimitBits> = step.received.values().map(|(_, b)| b).collect();
        let counts = match held.evaluator.tally(&bits, rules.len()) {
            Ok(c) => c,
            Err(e) => return self.fail(JobFailure::Alerts(e.to_string())),
        };
        step.tally_seconds = ((self.stopwatch)() - started).as_secs_f64();
        let manifest = AlertManifest {
            job: self.job.spec().job.clone(),
            round: step.round,
            rules,
            contributors: step.received.keys().cloned().collect(),
            digests: step.received.values().map(|(d, _)| *d).collect(),
            public_key: held.public_digest,
        };
        self.audit(trail::AlertTallyRequested {
            job: manifest.job.clone(),
            round: manifest.round,
            manifest: manifest.digest().to_hex(),
            auditor: auditor.clone(),
            contributors: manifest.contributors.clone(),
            rules: manifest
                .rules
                .iter()
                .map(|r| trail::RuleLimit {
                    rule: r.rule.clone(),
                    limit_basis_points: r.limit_basis_points,
                })
                .collect(),
            min_participants: min,
        });
        self.progress(CoordinatorProgress::AlertsTallied {
            round: step.round,
            contributors: manifest.contributors.len(),
            seconds: step.tally_seconds,
            counts: manifest.rules.len(),
        });
        let tally = AlertTally { manifest, counts };
        self.send(&auditor, CoordinatorOutbound::AlertTally(tally.clone()));
        let deadline = now + self.job.spec().decryption_timeout_ms;
        self.stage = Stage::AwaitingAuditor {
            step,
            tally: Box::new(tally),
            deadline,
        };
    }

    /// A node that (re)joined during the alert step gets what it is still owed: a contributor
    /// that has not sent its rates the request again, the auditor the same tally again (it
    /// answers a repeated manifest with the counts it already decrypted).
    pub(super) fn catch_up_alerts(&mut self, node: &NodeId) {
        let message = match &self.stage {
            Stage::Alerting(step)
                if step.asked.contains(node) && !step.received.contains_key(node) =>
            {
                self.auditor_keys.as_ref().map(|held| {
                    CoordinatorOutbound::AlertRequest(AlertRequest {
                        job: self.job.spec().job.clone(),
                        round: step.round,
                        public_key: held.public_key.clone(),
                        rules: self.job.alert_limits(),
                        endorsement: held.endorsement.clone(),
                    })
                })
            }
            Stage::AwaitingAuditor { tally, .. } if self.is_auditor(node) => {
                Some(CoordinatorOutbound::AlertTally((**tally).clone()))
            }
            _ => None,
        };
        if let Some(message) = message {
            self.send(node, message);
        }
    }

    pub(super) fn on_alert_counts(
        &mut self,
        from: NodeId,
        counts: AlertCounts,
    ) -> Result<(), Violation> {
        if !self.is_auditor(&from) {
            return Err(Violation::NotTheAuditor {
                from,
                message: "AlertCounts",
            });
        }
        let stage = self.stage_name();
        let Stage::AwaitingAuditor { step, tally, .. } = &self.stage else {
            return Err(Violation::Unexpected {
                from,
                message: "AlertCounts",
                stage,
            });
        };
        let manifest = &tally.manifest;
        let contributors = manifest.contributors.len();
        let fits = counts.manifest == manifest.digest()
            && counts.job == manifest.job
            && counts.counts.len() == manifest.rules.len()
            && counts
                .counts
                .iter()
                .all(|c| usize::from(*c) <= contributors);
        if !fits {
            return Err(Violation::BadAlert {
                from,
                reason: format!(
                    "counts {:?} for manifest {} do not fit manifest {} ({} rules, {contributors} contributors)",
                    counts.counts,
                    counts.manifest.to_hex(),
                    manifest.digest().to_hex(),
                    manifest.rules.len()
                ),
            });
        }
        let institutions = step.received.len();
        let comparisons = institutions * manifest.rules.len();
        let cost = AlertCost {
            institutions,
            rules: manifest.rules.len(),
            comparisons,
            compare_seconds: step.compare_seconds,
            seconds_per_comparison: step.compare_seconds / comparisons.max(1) as f64,
            tally_seconds: step.tally_seconds,
        };
        let per_rule = manifest
            .rules
            .iter()
            .zip(&counts.counts)
            .map(|(r, c)| (r.rule.clone(), *c))
            .collect();
        let (round, digest) = (manifest.round, manifest.digest());
        let differ = self.logic.alerts_decrypted(&counts.counts, cost);
        if !differ.is_empty() {
            // The auditor's tally must be the count the verified aggregate released.
            self.progress(CoordinatorProgress::AlertCountsDiffer {
                rules: differ.clone(),
            });
        }
        self.audit(trail::AlertDecrypted::AtCoordinator(trail::TallyReceived {
            job: counts.job.clone(),
            round,
            manifest: digest.to_hex(),
            auditor: from.clone(),
            institutions_over_limit: per_rule,
            differs_from_verified_count: differ,
        }));
        self.rounds_done += 1;
        self.audit(trail::RoundCompleted {
            job: counts.job.clone(),
            round,
        });
        self.finish();
        Ok(())
    }
}
