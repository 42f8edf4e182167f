//! # fedbank-auditor
//!
//! The auditor's node in a compliance job (docs/threat-model.md §2 and §6). It holds tfhe keys and no data:
//!
//! ```text
//!   start / reconnect ──▶ Hello{job digest}, AlertKeys{compact public key, server key}
//!   AlertTally        ──▶ policy check of the manifest ──▶ decrypt the per-rule counts
//!                         AlertCounts                          audit alert.decrypted
//!                         or Notice(Refused)                   audit alert.refused
//!   Notice(Finished | Aborted) ──▶ stop
//! ```
//!
//! Its policy ([`AuditorMachine::check`]): the manifest is for this job, lists exactly the job's
//! alert rules and limits, sums at least `min_participants` distinct enrolled participants (each
//! with a ciphertext digest), under this auditor's public key; one manifest per job is decrypted
//! (a retry of the same manifest gets the same answer, any other is refused, since two sums over
//! different contributor sets would reveal one institution's bit). A decrypted count larger than
//! the number of contributors is not released.
//!
//! What it cannot check: that each count is the sum the manifest claims. The coordinator holds
//! only the server key, and the participants' trails record the digests of what they sent, so
//! the trail cross-check shows a substituted ciphertext; the auditor never sees a rate.
//!
//! It does not talk to the network; the shell in `fedbank-transport` carries its messages.

use fedbank_common::alerts::{self, AuditorKeys};
use fedbank_common::audit::events::{self as trail, TrailEvent};
use fedbank_common::audit::EventKind;
use fedbank_common::digest::Digest;
use fedbank_common::ids::NodeId;
use fedbank_common::job::ValidJob;
use fedbank_common::protocol::{
    AlertCounts, AlertKeys, AlertTally, Hello, Inbound, Notice, NoticeKind, PROTOCOL_VERSION,
};
use fedbank_common::secagg::RingScalar;
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::sync::Arc;

/// A message to the coordinator.
#[derive(Debug, Clone)]
pub enum AuditorOutbound {
    /// [`Hello`].
    Hello(Hello),
    /// [`AlertKeys`].
    Keys(AlertKeys),
    /// [`AlertCounts`].
    Counts(AlertCounts),
    /// [`Notice`].
    Notice(Notice),
}

impl AuditorOutbound {
    /// The message in its wire form.
    pub fn encode(&self) -> Result<Vec<u8>, fedbank_common::wire::WireError> {
        use fedbank_common::wire::encode;
        match self {
            AuditorOutbound::Hello(m) => encode(m),
            AuditorOutbound::Keys(m) => encode(m),
            AuditorOutbound::Counts(m) => encode(m),
            AuditorOutbound::Notice(m) => encode(m),
        }
    }
}

/// Something for the auditor's shell to do.
#[derive(Debug)]
pub enum AuditorOutput {
    /// Send to the coordinator.
    Send(AuditorOutbound),
    /// Write an audit event in the auditor's own trail.
    Audit {
        /// Event type.
        kind: EventKind,
        /// Fields.
        fields: Map<String, Value>,
    },
    /// A step for the operator, typed; the shell renders it (its `Display` is the line).
    Progress(AuditorProgress),
    /// The decrypted counts, per rule: institutions over the limit.
    Counts(Vec<(String, u16)>),
}

/// A notable step of the auditor's part of the job.
#[derive(Clone, Debug, PartialEq)]
pub enum AuditorProgress {
    /// It decrypted the per-rule counts of institutions over their limits.
    Decrypted {
        /// The auditor.
        auditor: NodeId,
        /// Institutions in the tally.
        institutions: usize,
        /// Per rule: institutions over the limit.
        per_rule: Vec<(String, u16)>,
    },
    /// The coordinator refused one of its messages (and changed nothing).
    RefusedByCoordinator {
        /// The auditor.
        auditor: NodeId,
        /// The coordinator's reason and advice.
        reason: String,
    },
}

impl std::fmt::Display for AuditorProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditorProgress::Decrypted {
                auditor,
                institutions,
                per_rule,
            } => write!(
                f,
                "{auditor}: decrypted {} alert counts over {institutions} institutions: {per_rule:?}",
                per_rule.len()
            ),
            AuditorProgress::RefusedByCoordinator { auditor, reason } => write!(
                f,
                "{auditor}: the coordinator refused a message of this node: {reason}"
            ),
        }
    }
}

/// How the auditor's part ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditorStatus {
    /// Still running.
    Running,
    /// The coordinator reported the job finished.
    Finished,
    /// The coordinator aborted the job.
    Aborted(String),
}

/// Why the auditor refused a tally. Nothing was decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TallyRefusal {
    /// Another job, or rules and limits other than the job's.
    #[error("the manifest is for {0}, not this job's alert rules")]
    WrongJob(String),
    /// Too few contributors.
    #[error("{got} contributors, at least {min} are required")]
    TooFew {
        /// Contributors listed.
        got: usize,
        /// min_participants.
        min: usize,
    },
    /// A contributor listed twice, not enrolled, or without a digest.
    #[error("contributor list refused: {0}")]
    Contributors(String),
    /// The rates were not encrypted under this auditor's key.
    #[error("the rates were encrypted under key {0}, not this auditor's")]
    WrongKey(String),
    /// Another manifest was already decrypted for this job.
    #[error(
        "manifest {got} refused: this job's counts were already decrypted for manifest {decided}"
    )]
    AlreadyDecided {
        /// This manifest.
        got: String,
        /// The decided one.
        decided: String,
    },
    /// A count did not decrypt, or exceeded the contributors.
    #[error("count for rule {rule}: {problem}")]
    BadCount {
        /// Rule.
        rule: String,
        /// What was wrong.
        problem: String,
    },
}

/// The auditor of one job.
pub struct AuditorMachine {
    id: NodeId,
    /// Its signed statement of the alert public key, sent with the keys.
    endorsement: fedbank_common::endorsement::Signed<fedbank_common::protocol::AlertKeyStatement>,
    job: ValidJob,
    keys: Arc<AuditorKeys>,
    public_digest: Digest,
    outputs: VecDeque<AuditorOutput>,
    status: AuditorStatus,
    decided: Option<(Digest, Vec<u16>)>,
    keys_logged: bool,
    /// The coordinator's latest restart this node recorded (`coordinator.restarted`).
    coordinator_restart: u32,
    /// The coordinator's messages refused on this connection and told to it.
    refusals_told: fedbank_common::protocol::RefusalsTold,
}

impl AuditorMachine {
    /// The auditor `id` of `job`, with its keys (generate them with [`AuditorKeys::generate`]).
    pub fn new(
        signer: fedbank_common::endorsement::NodeSigner,
        job: ValidJob,
        keys: Arc<AuditorKeys>,
    ) -> Self {
        let public_digest = alerts::digest(keys.public_key_bytes());
        let endorsement = signer.sign(fedbank_common::protocol::AlertKeyStatement {
            job: job.spec().job.clone(),
            job_digest: job.digest(),
            public_key: public_digest,
        });
        Self {
            id: signer.id().clone(),
            endorsement,
            job,
            keys,
            public_digest,
            outputs: VecDeque::new(),
            status: AuditorStatus::Running,
            decided: None,
            keys_logged: false,
            coordinator_restart: 0,
            refusals_told: Default::default(),
        }
    }

    /// The next thing for the shell to do.
    pub fn poll_output(&mut self) -> Option<AuditorOutput> {
        self.outputs.pop_front()
    }

    /// How the auditor's part ended, if it did.
    pub fn status(&self) -> &AuditorStatus {
        &self.status
    }

    /// This node's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    fn audit<E: TrailEvent>(&mut self, event: E) {
        self.outputs.push_back(AuditorOutput::Audit {
            kind: E::KIND,
            fields: event.fields(),
        });
    }

    fn send(&mut self, message: AuditorOutbound) {
        self.outputs.push_back(AuditorOutput::Send(message));
    }

    /// Called on every (re)connection: Hello, then the keys.
    pub fn on_connected(&mut self) {
        self.refusals_told = Default::default();
        let spec = self.job.spec();
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            job: spec.job.clone(),
            job_digest: self.job.digest(),
            data: None,
        };
        let keys = AlertKeys {
            job: spec.job.clone(),
            public_key: self.keys.public_key_bytes().to_vec(),
            server_key: self.keys.server_key_bytes().to_vec(),
            endorsement: self.endorsement.clone(),
        };
        if !self.keys_logged {
            self.keys_logged = true;
            self.audit(trail::AlertKeys {
                job: spec.job.clone(),
                auditor: self.id.clone(),
                public_key: self.public_digest.to_hex(),
                server_key: alerts::digest(self.keys.server_key_bytes()).to_hex(),
            });
        }
        self.send(AuditorOutbound::Hello(hello));
        self.send(AuditorOutbound::Keys(keys));
    }

    /// Processes a message from the coordinator (decryption runs here: the shell calls it off
    /// the async executor). Messages the auditor never expects are refused.
    pub fn handle<S: RingScalar>(&mut self, message: Inbound<S>) -> Result<(), String> {
        let name = message.name();
        let outcome = self.dispatch(message);
        if let Err(reason) = &outcome {
            // The coordinator is told: a refusal is never silent where it was caused.
            let job = self.job.spec().job.clone();
            let text = format!(
                "{} refused {name}: {reason}; it acted on nothing of it",
                self.id
            );
            if let Some(notice) = self.refusals_told.notice(&job, None, &text) {
                self.send(AuditorOutbound::Notice(notice));
            }
        }
        outcome
    }

    fn dispatch<S: RingScalar>(&mut self, message: Inbound<S>) -> Result<(), String> {
        match message {
            Inbound::Welcome(w) if w.job == self.job.spec().job => {
                let seen = trail::CoordinatorRestarted::on_welcome(
                    &mut self.coordinator_restart,
                    &w.job,
                    w.restart,
                );
                if let Some(seen) = seen {
                    self.audit(seen);
                }
                Ok(())
            }
            Inbound::AlertTally(tally) => {
                self.on_tally(tally);
                Ok(())
            }
            Inbound::Notice(n) if n.kind == NoticeKind::MessageRefused => {
                self.outputs.push_back(AuditorOutput::Progress(
                    AuditorProgress::RefusedByCoordinator {
                        auditor: self.id.clone(),
                        reason: n.printable_text(),
                    },
                ));
                Ok(())
            }
            Inbound::Notice(n) => {
                let (status, outcome, reason) = match n.kind {
                    NoticeKind::Finished => (AuditorStatus::Finished, "finished", None),
                    NoticeKind::Aborted => (
                        AuditorStatus::Aborted(n.text.clone()),
                        "aborted",
                        Some(n.text),
                    ),
                    NoticeKind::NotAdmitted => {
                        let text = format!("not admitted by the coordinator: {}", n.text);
                        (
                            AuditorStatus::Aborted(text.clone()),
                            "not admitted",
                            Some(text),
                        )
                    }
                    _ => return Err("unexpected notice".to_owned()),
                };
                if self.status == AuditorStatus::Running {
                    self.audit(fedbank_common::audit::events::JobEnded {
                        job: self.job.spec().job.clone(),
                        outcome: outcome.to_owned(),
                        reason,
                        release_digest: None,
                    });
                }
                self.status = status;
                Ok(())
            }
            other => Err(format!("unexpected {} from the coordinator", other.name())),
        }
    }

    /// The auditor's policy on a tally, before anything is decrypted.
    pub fn check(&self, tally: &AlertTally) -> Result<(), TallyRefusal> {
        let spec = self.job.spec();
        let m = &tally.manifest;
        let expected = self.job.alert_limits();
        if m.job != spec.job || m.rules != expected || tally.counts.len() != expected.len() {
            return Err(TallyRefusal::WrongJob(format!(
                "job {} with rules {:?} and {} counts",
                m.job,
                m.rules,
                tally.counts.len()
            )));
        }
        if m.contributors.len() < spec.min_participants {
            return Err(TallyRefusal::TooFew {
                got: m.contributors.len(),
                min: spec.min_participants,
            });
        }
        if m.digests.len() != m.contributors.len() {
            return Err(TallyRefusal::Contributors(format!(
                "{} digests for {} contributors",
                m.digests.len(),
                m.contributors.len()
            )));
        }
        if !m.contributors.windows(2).all(|w| w[0] < w[1]) {
            return Err(TallyRefusal::Contributors(
                "not sorted and distinct".to_owned(),
            ));
        }
        if let Some(c) = m
            .contributors
            .iter()
            .find(|c| !spec.participants.contains(c))
        {
            return Err(TallyRefusal::Contributors(format!(
                "{c} is not a participant of the job"
            )));
        }
        if m.public_key != self.public_digest {
            return Err(TallyRefusal::WrongKey(m.public_key.to_hex()));
        }
        if let Some((decided, _)) = &self.decided {
            if *decided != m.digest() {
                return Err(TallyRefusal::AlreadyDecided {
                    got: m.digest().to_hex(),
                    decided: decided.to_hex(),
                });
            }
        }
        Ok(())
    }

    fn decrypt(&self, tally: &AlertTally) -> Result<Vec<u16>, TallyRefusal> {
        let contributors = tally.manifest.contributors.len();
        tally
            .manifest
            .rules
            .iter()
            .zip(&tally.counts)
            .map(|(rule, bytes)| {
                let bad = |problem: String| TallyRefusal::BadCount {
                    rule: rule.rule.clone(),
                    problem,
                };
                let count = self
                    .keys
                    .decrypt_count(bytes)
                    .map_err(|e| bad(e.to_string()))?;
                if usize::from(count) > contributors {
                    return Err(bad(format!(
                        "decrypts to {count}, more than the {contributors} contributors"
                    )));
                }
                Ok(count)
            })
            .collect()
    }

    fn on_tally(&mut self, tally: AlertTally) {
        let job = self.job.spec().job.clone();
        let digest = tally.manifest.digest();
        let outcome = self.check(&tally).and_then(|()| match &self.decided {
            // The same manifest again (a retry): the same answer, decrypted once.
            Some((_, counts)) => Ok(counts.clone()),
            None => self.decrypt(&tally),
        });
        match outcome {
            Ok(counts) => {
                let per_rule: Vec<(String, u16)> = tally
                    .manifest
                    .rules
                    .iter()
                    .map(|r| r.rule.clone())
                    .zip(counts.iter().copied())
                    .collect();
                if self.decided.is_none() {
                    self.audit(trail::AlertDecrypted::ByAuditor(trail::TallyDecrypted {
                        job: job.clone(),
                        round: tally.manifest.round,
                        manifest: digest.to_hex(),
                        contributors: tally.manifest.contributors.clone(),
                        digests: tally.manifest.digests.iter().map(|d| d.to_hex()).collect(),
                        institutions_over_limit: per_rule.iter().cloned().collect(),
                    }));
                    self.outputs
                        .push_back(AuditorOutput::Progress(AuditorProgress::Decrypted {
                            auditor: self.id.clone(),
                            institutions: tally.manifest.contributors.len(),
                            per_rule: per_rule.clone(),
                        }));
                    self.outputs
                        .push_back(AuditorOutput::Counts(per_rule.clone()));
                    self.decided = Some((digest, counts.clone()));
                }
                self.send(AuditorOutbound::Counts(AlertCounts {
                    job,
                    manifest: digest,
                    counts,
                }));
            }
            Err(refusal) => {
                let reason = refusal.to_string();
                self.audit(trail::AlertRefused {
                    job: job.clone(),
                    round: tally.manifest.round,
                    manifest: digest.to_hex(),
                    reason: reason.clone(),
                });
                self.send(AuditorOutbound::Notice(Notice {
                    job,
                    round: Some(tally.manifest.round),
                    kind: NoticeKind::Refused,
                    text: reason,
                }));
            }
        }
    }
}

impl<S: RingScalar>
    fedbank_common::node_machine::NodeMachine<fedbank_common::node_machine::Delivery<Inbound<S>>>
    for AuditorMachine
{
    type Output = AuditorOutput;
    type Violation = String;
    type Status = AuditorStatus;

    /// The auditor keeps no deadlines: time is not used.
    fn handle(
        &mut self,
        input: fedbank_common::node_machine::Delivery<Inbound<S>>,
        _now: u64,
    ) -> Result<(), String> {
        use fedbank_common::node_machine::Delivery;
        match input {
            Delivery::Connected => {
                self.on_connected();
                Ok(())
            }
            Delivery::Message(message) => AuditorMachine::handle(self, message),
        }
    }
    fn poll_output(&mut self) -> Option<AuditorOutput> {
        AuditorMachine::poll_output(self)
    }
    fn poll_timeout(&self) -> Option<u64> {
        None
    }
    fn on_deadline(&mut self, _now: u64) -> Result<(), String> {
        Ok(())
    }
    fn ended(&self) -> Option<AuditorStatus> {
        (self.status != AuditorStatus::Running).then(|| self.status.clone())
    }
}
