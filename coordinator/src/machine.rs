//! The coordinator's job as a state machine: no sockets, no clock of its own. The network shell
//! feeds it [`Input`]s with the current time, sends what [`CoordinatorMachine::poll_output`]
//! returns, and calls it again at [`CoordinatorMachine::poll_timeout`].
//!
//! ```text
//!  Joining ──all committee members said Hello──▶ KeySetup ──every share──▶ Collecting(round 1)
//!  Collecting ──all asked contributed, or deadline──▶ ≥ min_participants? ──yes──▶ Decrypting
//!       ▲                                              │ no: retry (attempt+1) up to max, else Failed
//!       └──────── next round ◀── combine + decode ◀── every member's partial decryption
//!  Decrypting ──member refuses or misses the deadline──▶ Failed (names the member)
//!  last round decoded ──▶ Finished
//! ```
//!
//! A message that does not fit the current state (unknown sender, wrong round or attempt,
//! duplicate, wrong kind) is refused with a [`Violation`] and changes nothing.

use crate::aggregation::{AggregationError, RoundAggregate};
use crate::stats::{FeatureStats, StatsError, StatsJob};
use fedbank_common::audit::EventKind;
use fedbank_common::committee::{DecryptionRequest, PartialDecryption};
use fedbank_common::ids::NodeId;
use fedbank_common::job::{RoundKind, ValidJob};
use fedbank_common::protocol::{
    Contribution, Hello, Inbound, Notice, NoticeKind, RoundRequest, Welcome, PROTOCOL_VERSION,
};
use fedbank_common::secagg::{JointPublicKey, KeySetup, PublicKeyShare, RingScalar};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Milliseconds on the shell's clock.
pub type Millis = u64;

/// Something that happened.
#[derive(Debug)]
pub enum Input<S: RingScalar> {
    /// A node's connection was admitted (its id comes from its certificate).
    Connected(NodeId),
    /// A node's connection ended.
    Disconnected(NodeId),
    /// A node sent a message.
    Message {
        /// The sender, from its certificate.
        from: NodeId,
        /// The message.
        message: Inbound<S>,
    },
    /// Time passed (the shell calls this at the deadline).
    Tick,
}

/// A message to a node.
#[derive(Debug, Clone)]
pub enum Outbound<S: RingScalar> {
    /// [`Welcome`].
    Welcome(Welcome),
    /// [`KeySetup`].
    KeySetup(KeySetup),
    /// [`JointPublicKey`].
    JointKey(JointPublicKey<S>),
    /// [`RoundRequest`].
    Round(RoundRequest),
    /// [`DecryptionRequest`].
    Decrypt(DecryptionRequest<S>),
    /// [`Notice`].
    Notice(Notice),
}

impl<S: RingScalar> Outbound<S> {
    /// The message in its wire form.
    pub fn encode(&self) -> Result<Vec<u8>, fedbank_common::wire::WireError> {
        use fedbank_common::wire::encode;
        match self {
            Outbound::Welcome(m) => encode(m),
            Outbound::KeySetup(m) => encode(m),
            Outbound::JointKey(m) => encode(m),
            Outbound::Round(m) => encode(m),
            Outbound::Decrypt(m) => encode(m),
            Outbound::Notice(m) => encode(m),
        }
    }
}

/// Something for the shell to do.
#[derive(Debug)]
pub enum Output<S: RingScalar> {
    /// Send a message to a node.
    Send {
        /// The node.
        to: NodeId,
        /// The message.
        message: Outbound<S>,
    },
    /// Close a node's connection.
    Disconnect {
        /// The node.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// Write an audit event.
    Audit {
        /// Event type.
        kind: EventKind,
        /// Fields.
        fields: Map<String, Value>,
    },
    /// A line of progress for the operator.
    Progress(String),
}

/// A message refused because it does not fit the protocol state. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum Violation {
    /// A message from a node that has not said Hello.
    #[error("{from} sent {message} before Hello")]
    BeforeHello {
        /// Sender.
        from: NodeId,
        /// Message name.
        message: &'static str,
    },
    /// A Hello for another job or another version of the job file.
    #[error("{from} asked for job {job} with digest {digest}; this is job {expected_job} with digest {expected_digest}")]
    WrongJob {
        /// Sender.
        from: NodeId,
        /// Job asked for.
        job: String,
        /// Digest sent.
        digest: String,
        /// This job.
        expected_job: String,
        /// This job's digest.
        expected_digest: String,
    },
    /// A Hello with an unsupported protocol version.
    #[error(
        "{from} speaks protocol version {version}, this coordinator speaks {PROTOCOL_VERSION}"
    )]
    Version {
        /// Sender.
        from: NodeId,
        /// Its version.
        version: u16,
    },
    /// A message that does not belong in the current stage.
    #[error("{from} sent {message}, unexpected while {stage}")]
    Unexpected {
        /// Sender.
        from: NodeId,
        /// Message name.
        message: &'static str,
        /// Stage.
        stage: &'static str,
    },
    /// A committee-only message from a non-member.
    #[error("{from} sent {message} but is not on the key committee")]
    NotAMember {
        /// Sender.
        from: NodeId,
        /// Message name.
        message: &'static str,
    },
    /// A message for another round or attempt (late, early or replayed).
    #[error("{from} sent {message} for round {round} attempt {attempt}; the current round is {current_round} attempt {current_attempt}")]
    OutOfRound {
        /// Sender.
        from: NodeId,
        /// Message name.
        message: &'static str,
        /// Its round.
        round: u32,
        /// Its attempt.
        attempt: u32,
        /// Current round.
        current_round: u32,
        /// Current attempt.
        current_attempt: u32,
    },
    /// The same message twice.
    #[error("{from} sent {message} twice")]
    Duplicate {
        /// Sender.
        from: NodeId,
        /// Message name.
        message: &'static str,
    },
    /// A key share that does not fit the setup.
    #[error("key share from {from} refused")]
    BadKeyShare {
        /// Sender.
        from: NodeId,
        /// Why.
        #[source]
        source: fedbank_common::secagg::KeyError,
    },
    /// A contribution refused by the aggregate.
    #[error(transparent)]
    Aggregation(#[from] AggregationError),
}

/// Why the job stopped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobFailure {
    /// Committee members did not send key shares in time.
    #[error("key setup timed out: no public-key share from {0:?}")]
    KeySetupTimeout(Vec<NodeId>),
    /// The joint key could not be formed.
    #[error("the joint key could not be formed: {0}")]
    JointKey(String),
    /// Too few contributors after every retry.
    #[error("round {round}: only {got} contributors after {attempts} attempts, at least {required} are required")]
    TooFewContributors {
        /// Round.
        round: u32,
        /// Attempts made.
        attempts: u32,
        /// Contributors in the last attempt.
        got: usize,
        /// min_participants.
        required: usize,
    },
    /// Committee members did not answer the decryption request in time.
    #[error("round {round}: committee member(s) {members:?} did not answer the decryption request in time")]
    MemberTimeout {
        /// Round.
        round: u32,
        /// Members that did not answer.
        members: Vec<NodeId>,
    },
    /// A committee member refused the decryption.
    #[error("round {round}: committee member {member} refused: {reason}")]
    MemberRefused {
        /// Round.
        round: u32,
        /// The member.
        member: NodeId,
        /// Its reason.
        reason: String,
    },
    /// Combining or decoding failed.
    #[error("round {round}: {reason}")]
    Decode {
        /// Round.
        round: u32,
        /// Why.
        reason: String,
    },
}

/// The job's state.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Still running.
    Running,
    /// Finished with these statistics.
    Finished(Vec<FeatureStats>),
    /// Stopped.
    Failed(JobFailure),
}

enum Stage<S: RingScalar> {
    Joining,
    KeySetup {
        setup: KeySetup,
        shares: BTreeMap<NodeId, PublicKeyShare<S>>,
        deadline: Millis,
    },
    Collecting(Box<Round<S>>),
    Decrypting {
        round: Box<Round<S>>,
        request: DecryptionRequest<S>,
        partials: BTreeMap<NodeId, PartialDecryption<S>>,
        deadline: Millis,
    },
    Done,
}

struct Round<S: RingScalar> {
    number: u32,
    attempt: u32,
    kind: RoundKind,
    aggregate: RoundAggregate<S>,
    asked: BTreeSet<NodeId>,
    deadline: Millis,
}

/// One job's coordinator.
pub struct CoordinatorMachine<S: RingScalar> {
    job: ValidJob,
    mask_seed: u128,
    stage: Stage<S>,
    welcomed: BTreeSet<NodeId>,
    connected: BTreeSet<NodeId>,
    joint_key: Option<JointPublicKey<S>>,
    stats: StatsJob,
    setup: Option<KeySetup>,
    outputs: VecDeque<Output<S>>,
    status: Status,
    rounds_done: u32,
}

fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

impl<S: RingScalar> CoordinatorMachine<S> {
    /// A coordinator for `job`; `mask_seed` is the public seed of the joint key's mask.
    pub fn new(job: ValidJob, mask_seed: u128) -> Self {
        let spec = job.spec();
        let stats = StatsJob::new(spec.features.clone(), spec.histogram_bins);
        let mut machine = Self {
            job,
            mask_seed,
            stage: Stage::Joining,
            welcomed: BTreeSet::new(),
            connected: BTreeSet::new(),
            joint_key: None,
            stats,
            setup: None,
            outputs: VecDeque::new(),
            status: Status::Running,
            rounds_done: 0,
        };
        let spec = machine.job.spec();
        let started = fields(json!({
            "job": spec.job.as_str(),
            "kind": "stats",
            "config_digest": machine.job.digest().to_hex(),
            "profile": spec.profile.name(),
            "participants": spec.participants.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            "committee": spec.committee.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            "min_participants": spec.min_participants,
        }));
        machine.audit(EventKind::JobStarted, started);
        machine
    }

    /// The job's status.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Nodes that said Hello and are connected.
    pub fn present(&self) -> impl Iterator<Item = &NodeId> {
        self.welcomed.iter().filter(|n| self.connected.contains(*n))
    }

    /// The next thing for the shell to do.
    pub fn poll_output(&mut self) -> Option<Output<S>> {
        self.outputs.pop_front()
    }

    /// When the shell must call [`CoordinatorMachine::handle`] with [`Input::Tick`] next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match &self.stage {
            Stage::KeySetup { deadline, .. } | Stage::Decrypting { deadline, .. } => {
                Some(*deadline)
            }
            Stage::Collecting(round) => Some(round.deadline),
            Stage::Joining | Stage::Done => None,
        }
    }

    fn audit(&mut self, kind: EventKind, fields: Map<String, Value>) {
        self.outputs.push_back(Output::Audit { kind, fields });
    }

    fn progress(&mut self, line: String) {
        self.outputs.push_back(Output::Progress(line));
    }

    fn send(&mut self, to: &NodeId, message: Outbound<S>) {
        self.outputs.push_back(Output::Send {
            to: to.clone(),
            message,
        });
    }

    fn stage_name(&self) -> &'static str {
        match &self.stage {
            Stage::Joining => "waiting for the committee to join",
            Stage::KeySetup { .. } => "setting up the joint key",
            Stage::Collecting(_) => "collecting contributions",
            Stage::Decrypting { .. } => "waiting for partial decryptions",
            Stage::Done => "finished",
        }
    }

    /// Processes one input at time `now`. A refused message changes nothing.
    pub fn handle(&mut self, input: Input<S>, now: Millis) -> Result<(), Violation> {
        match input {
            Input::Connected(node) => {
                self.connected.insert(node);
                Ok(())
            }
            Input::Disconnected(node) => {
                // A Hello belongs to a connection: a reconnecting node says Hello again.
                self.connected.remove(&node);
                self.welcomed.remove(&node);
                self.on_disconnect(node, now);
                Ok(())
            }
            Input::Tick => {
                self.on_tick(now);
                Ok(())
            }
            Input::Message { from, message } => self.on_message(from, message, now),
        }
    }

    fn on_message(
        &mut self,
        from: NodeId,
        message: Inbound<S>,
        now: Millis,
    ) -> Result<(), Violation> {
        let name = message.name();
        if let Inbound::Hello(hello) = message {
            return self.on_hello(from, hello, now);
        }
        if !self.welcomed.contains(&from) {
            return Err(Violation::BeforeHello {
                from,
                message: name,
            });
        }
        let stage = self.stage_name();
        let unexpected = |from| Violation::Unexpected {
            from,
            message: name,
            stage,
        };
        match message {
            Inbound::KeyShare(share) => self.on_key_share(from, share, now),
            Inbound::Contribution(c) => self.on_contribution(from, c, now),
            Inbound::Partial(p) => self.on_partial(from, p, now),
            Inbound::Notice(n) => self.on_notice(from, n),
            _ => Err(unexpected(from)),
        }
    }

    fn on_hello(&mut self, from: NodeId, hello: Hello, now: Millis) -> Result<(), Violation> {
        if hello.protocol != PROTOCOL_VERSION {
            return Err(Violation::Version {
                from,
                version: hello.protocol,
            });
        }
        let spec = self.job.spec();
        if hello.job != spec.job || hello.job_digest != self.job.digest() {
            return Err(Violation::WrongJob {
                from,
                job: hello.job.to_string(),
                digest: hello.job_digest.to_hex(),
                expected_job: spec.job.to_string(),
                expected_digest: self.job.digest().to_hex(),
            });
        }
        if self.welcomed.contains(&from) {
            return Err(Violation::Duplicate {
                from,
                message: "Hello",
            });
        }
        self.welcomed.insert(from.clone());
        self.connected.insert(from.clone());
        let welcome = Welcome {
            job: spec.job.clone(),
            profile: spec.profile,
        };
        let is_member = spec.committee.contains(&from);
        self.send(&from, Outbound::Welcome(welcome));
        self.audit(
            EventKind::Joined,
            fields(json!({"job": self.job.spec().job.as_str(), "node": from.as_str(), "committee": is_member})),
        );
        self.progress(format!(
            "{from} joined{}",
            if is_member { " (committee)" } else { "" }
        ));
        // Catch a (re)joining node up with what it missed.
        if let Some(key) = self.joint_key.clone() {
            self.send(&from, Outbound::JointKey(key));
        }
        match &mut self.stage {
            Stage::KeySetup { setup, .. } if is_member => {
                let setup = setup.clone();
                self.send(&from, Outbound::KeySetup(setup));
            }
            Stage::Collecting(round) => {
                round.asked.insert(from.clone());
                let request = RoundRequest {
                    job: self.job.spec().job.clone(),
                    round: round.number,
                    attempt: round.attempt,
                    kind: round.kind.clone(),
                };
                self.send(&from, Outbound::Round(request));
            }
            _ => {}
        }
        self.maybe_start_key_setup(now);
        Ok(())
    }

    fn maybe_start_key_setup(&mut self, now: Millis) {
        if !matches!(self.stage, Stage::Joining) {
            return;
        }
        let spec = self.job.spec();
        if !spec.committee.iter().all(|m| self.welcomed.contains(m)) {
            return;
        }
        let setup = KeySetup {
            job: spec.job.clone(),
            key_epoch: 1,
            profile: spec.profile,
            mask_seed: self.mask_seed,
            committee: spec.committee.clone(),
        };
        let deadline = now + spec.key_setup_timeout_ms;
        for member in spec.committee.clone() {
            self.send(&member, Outbound::KeySetup(setup.clone()));
        }
        self.audit(
            EventKind::KeySetup,
            fields(json!({
                "job": setup.job.as_str(), "key_epoch": setup.key_epoch,
                "mask_seed": format!("{:032x}", setup.mask_seed),
                "committee": setup.committee.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                "stage": "requested",
            })),
        );
        self.progress(format!(
            "key setup with committee {:?}",
            setup
                .committee
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
        ));
        self.setup = Some(setup.clone());
        self.stage = Stage::KeySetup {
            setup,
            shares: BTreeMap::new(),
            deadline,
        };
    }

    fn on_key_share(
        &mut self,
        from: NodeId,
        share: PublicKeyShare<S>,
        now: Millis,
    ) -> Result<(), Violation> {
        let Stage::KeySetup { setup, shares, .. } = &mut self.stage else {
            return Err(Violation::Unexpected {
                from,
                message: "PublicKeyShare",
                stage: self.stage_name(),
            });
        };
        if !setup.committee.contains(&from) {
            return Err(Violation::NotAMember {
                from,
                message: "PublicKeyShare",
            });
        }
        if share.member() != &from || share.setup() != setup {
            let source = fedbank_common::secagg::KeyError::SetupMismatch {
                member: share.member().clone(),
                job: setup.job.clone(),
                epoch: setup.key_epoch,
                got_job: share.setup().job.clone(),
                got_epoch: share.setup().key_epoch,
            };
            return Err(Violation::BadKeyShare { from, source });
        }
        share.validate().map_err(|source| Violation::BadKeyShare {
            from: from.clone(),
            source,
        })?;
        if shares.contains_key(&from) {
            return Err(Violation::Duplicate {
                from,
                message: "PublicKeyShare",
            });
        }
        shares.insert(from, share);
        if shares.len() < setup.committee.len() {
            return Ok(());
        }
        let all: Vec<_> = shares.values().cloned().collect();
        let setup = setup.clone();
        match JointPublicKey::combine(&setup, &all) {
            Ok(key) => {
                self.audit(
                    EventKind::KeySetup,
                    fields(json!({"job": setup.job.as_str(), "key_epoch": setup.key_epoch, "stage": "joint key formed",
                        "members": setup.committee.iter().map(|m| m.as_str()).collect::<Vec<_>>()})),
                );
                self.joint_key = Some(key.clone());
                for node in self.present().cloned().collect::<Vec<_>>() {
                    self.send(&node, Outbound::JointKey(key.clone()));
                }
                let first = self.stats.first_round();
                self.start_round(1, 0, first, now);
            }
            Err(e) => self.fail(JobFailure::JointKey(e.to_string())),
        }
        Ok(())
    }

    fn start_round(&mut self, number: u32, attempt: u32, kind: RoundKind, now: Millis) {
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
        for node in &asked {
            self.send(node, Outbound::Round(request.clone()));
        }
        self.audit(
            EventKind::RoundStarted,
            fields(json!({"job": request.job.as_str(), "round": number, "attempt": attempt, "quantity": kind.label(),
                "asked": asked.iter().map(|n| n.as_str()).collect::<Vec<_>>()})),
        );
        self.progress(format!(
            "round {number} ({}) attempt {attempt}: asked {} participants",
            kind.label(),
            asked.len()
        ));
        self.stage = Stage::Collecting(Box::new(Round {
            number,
            attempt,
            aggregate: RoundAggregate::new(setup, number, kind.label(), plan.slot_count() as u64),
            kind,
            asked,
            deadline: now + self.job.spec().round_timeout_ms,
        }));
    }

    fn on_contribution(
        &mut self,
        from: NodeId,
        c: Contribution<S>,
        now: Millis,
    ) -> Result<(), Violation> {
        let Stage::Collecting(round) = &mut self.stage else {
            return Err(Violation::Unexpected {
                from,
                message: "Contribution",
                stage: self.stage_name(),
            });
        };
        if c.round != round.number || c.attempt != round.attempt {
            return Err(Violation::OutOfRound {
                from,
                message: "Contribution",
                round: c.round,
                attempt: c.attempt,
                current_round: round.number,
                current_attempt: round.attempt,
            });
        }
        if !self.job.spec().participants.contains(&from) {
            return Err(Violation::Unexpected {
                from,
                message: "Contribution",
                stage: "collecting contributions (the sender is not a participant)",
            });
        }
        let digest = round.aggregate.add(from.clone(), c.ciphertext)?;
        let (number, label) = (round.number, round.kind.label());
        let done = round
            .asked
            .iter()
            .all(|n| round.aggregate.contributions().contains_key(n));
        self.audit(
            EventKind::ContributionReceived,
            fields(
                json!({"job": self.job.spec().job.as_str(), "round": number, "quantity": label,
                "node": from.as_str(), "digest": digest.to_hex()}),
            ),
        );
        self.progress(format!("round {number}: contribution from {from}"));
        if done {
            self.close_round(now);
        }
        Ok(())
    }

    fn close_round(&mut self, now: Millis) {
        let Stage::Collecting(round) = std::mem::replace(&mut self.stage, Stage::Done) else {
            return;
        };
        let spec = self.job.spec().clone();
        let (min, retries) = (spec.min_participants, spec.max_round_retries);
        let got = round.aggregate.contributions().len();
        for missing in round
            .asked
            .iter()
            .filter(|n| !round.aggregate.contributions().contains_key(*n))
        {
            self.outputs.push_back(Output::Audit {
                kind: EventKind::ParticipantDropped,
                fields: fields(json!({"job": spec.job.as_str(), "round": round.number, "attempt": round.attempt,
                    "node": missing.as_str(), "reason": "no contribution before the round closed"})),
            });
        }
        match round.aggregate.decryption_request(min) {
            Ok(request) => {
                let members = spec.committee.clone();
                for member in &members {
                    self.send(member, Outbound::Decrypt(request.clone()));
                }
                self.audit(
                    EventKind::DecryptionRequested,
                    fields(json!({"job": spec.job.as_str(), "round": round.number, "quantity": round.kind.label(),
                        "manifest": request.manifest.digest().to_hex(),
                        "contributors": request.manifest.contributors.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                        "min_participants": min})),
                );
                self.progress(format!(
                    "round {}: {got} contributions, asking the committee to decrypt",
                    round.number
                ));
                let deadline = now + spec.decryption_timeout_ms;
                self.stage = Stage::Decrypting {
                    round,
                    request,
                    partials: BTreeMap::new(),
                    deadline,
                };
            }
            Err(_) if round.attempt < retries => {
                self.progress(format!(
                    "round {}: only {got} of at least {min} contributors, retrying",
                    round.number
                ));
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

    fn on_partial(
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
        self.audit(
            EventKind::DecryptionApproved,
            fields(
                json!({"job": self.job.spec().job.as_str(), "round": number, "quantity": label,
                "node": from.as_str(), "manifest": manifest.to_hex()}),
            ),
        );
        if complete {
            self.finish_round(now);
        }
        Ok(())
    }

    fn finish_round(&mut self, now: Millis) {
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
                plan.decode(&slots).map_err(|e| e.to_string())
            });
        let decoded = match decoded {
            Ok(d) => d,
            Err(reason) => {
                return self.fail(JobFailure::Decode {
                    round: round.number,
                    reason,
                })
            }
        };
        let spec = self.job.spec();
        self.outputs.push_back(Output::Audit {
            kind: EventKind::AggregateDecrypted,
            fields: fields(json!({"job": spec.job.as_str(), "round": round.number, "quantity": round.kind.label(),
                "manifest": request.manifest.digest().to_hex(), "contributors": request.manifest.contributors.len()})),
        });
        self.rounds_done += 1;
        self.outputs.push_back(Output::Audit {
            kind: EventKind::RoundCompleted,
            fields: fields(json!({"job": spec.job.as_str(), "round": round.number})),
        });
        match self.stats.apply(&round.kind, &decoded) {
            Ok(Some(next)) => self.start_round(round.number + 1, 0, next, now),
            Ok(None) => self.finish(),
            Err(StatsError::MissingQuantity(q)) => self.fail(JobFailure::Decode {
                round: round.number,
                reason: format!("missing quantity {q}"),
            }),
        }
    }

    fn finish(&mut self) {
        let Some(result) = self.stats.result().map(<[FeatureStats]>::to_vec) else {
            return;
        };
        let job = self.job.spec().job.clone();
        self.audit(
            EventKind::JobCompleted,
            fields(json!({"job": job.as_str(), "rounds": self.rounds_done,
                "result_digest": fedbank_common::digest::Digest::of("fedbank.result.v1",
                    serde_json::to_string(&result).unwrap_or_default().as_bytes()).to_hex()})),
        );
        let notice = Notice {
            job,
            round: None,
            kind: NoticeKind::Finished,
            text: "job finished".into(),
        };
        for node in self.present().cloned().collect::<Vec<_>>() {
            self.send(&node, Outbound::Notice(notice.clone()));
        }
        self.progress("job finished".into());
        self.stage = Stage::Done;
        self.status = Status::Finished(result);
    }

    fn fail(&mut self, failure: JobFailure) {
        let job = self.job.spec().job.clone();
        self.audit(
            EventKind::JobFailed,
            fields(json!({"job": job.as_str(), "reason": failure.to_string()})),
        );
        let notice = Notice {
            job,
            round: None,
            kind: NoticeKind::Aborted,
            text: failure.to_string(),
        };
        for node in self.present().cloned().collect::<Vec<_>>() {
            self.send(&node, Outbound::Notice(notice.clone()));
        }
        self.progress(format!("job failed: {failure}"));
        self.stage = Stage::Done;
        self.status = Status::Failed(failure);
    }

    fn on_notice(&mut self, from: NodeId, n: Notice) -> Result<(), Violation> {
        match (n.kind, &self.stage) {
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
                self.audit(
                    EventKind::ParticipantDropped,
                    fields(json!({"job": self.job.spec().job.as_str(), "round": number, "node": from.as_str(),
                        "reason": format!("cannot contribute: {}", n.text)})),
                );
                self.progress(format!(
                    "round {number}: {from} cannot contribute: {}",
                    n.text
                ));
                Ok(())
            }
            _ => Err(Violation::Unexpected {
                from,
                message: "Notice",
                stage: self.stage_name(),
            }),
        }
    }

    fn on_disconnect(&mut self, node: NodeId, now: Millis) {
        if let Stage::Collecting(round) = &mut self.stage {
            if round.asked.remove(&node) && !round.aggregate.contributions().contains_key(&node) {
                let (number, attempt) = (round.number, round.attempt);
                let done = round
                    .asked
                    .iter()
                    .all(|n| round.aggregate.contributions().contains_key(n));
                let job = self.job.spec().job.clone();
                self.audit(
                    EventKind::ParticipantDropped,
                    fields(
                        json!({"job": job.as_str(), "round": number, "attempt": attempt,
                        "node": node.as_str(), "reason": "disconnected before contributing"}),
                    ),
                );
                self.progress(format!(
                    "round {number}: {node} disconnected before contributing"
                ));
                if done {
                    self.close_round(now);
                }
            }
        }
    }

    fn on_tick(&mut self, now: Millis) {
        match &self.stage {
            Stage::KeySetup {
                setup,
                shares,
                deadline,
            } if now >= *deadline => {
                let missing = setup
                    .committee
                    .iter()
                    .filter(|m| !shares.contains_key(*m))
                    .cloned()
                    .collect();
                self.fail(JobFailure::KeySetupTimeout(missing));
            }
            Stage::Collecting(round) if now >= round.deadline => self.close_round(now),
            Stage::Decrypting {
                round,
                partials,
                deadline,
                ..
            } if now >= *deadline => {
                let members = self
                    .job
                    .spec()
                    .committee
                    .iter()
                    .filter(|m| !partials.contains_key(*m))
                    .cloned()
                    .collect();
                let failure = JobFailure::MemberTimeout {
                    round: round.number,
                    members,
                };
                self.fail(failure);
            }
            _ => {}
        }
    }
}
