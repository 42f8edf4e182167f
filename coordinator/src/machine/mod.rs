//! The coordinator's job as a state machine: no sockets, no clock of its own. The network shell
//! feeds it [`Input`]s with the current time, sends what [`CoordinatorMachine::poll_output`]
//! returns, and calls it again at [`CoordinatorMachine::poll_timeout`].
//!
//! ```text
//!  Joining ──all committee members said Hello──▶ KeySetup ──every share──▶ Collecting(round 1)
//!  Collecting ──all asked committed, or deadline, ≥ min_participants──▶ roster fixed, RevealRequest
//!  Collecting(roster) ──all listed revealed, or deadline──▶ ≥ min_participants? ──yes──▶ Decrypting
//!       ▲                                              │ no: retry (attempt+1) up to max, else Failed
//!       └──────── next round ◀── combine + decode ◀── every member's partial decryption
//!  Decrypting ──member refuses or misses the deadline──▶ Failed (names the member)
//!  last round decoded ──▶ Finished, or (compliance with alert limits) the alert step
//! ```
//!
//! The alert step and the auditor's part are in `alerts.rs`; a job with alert limits also waits
//! for the auditor's keys before the key setup.
//!
//! A message that does not fit the current state (unknown sender, wrong round or attempt,
//! duplicate, wrong kind) is refused with a [`Violation`] and changes nothing.

mod alerts;
mod checkpoint;
mod events;
mod journal;
mod progress;
mod rounds;

pub use checkpoint::{Checkpoint, CompletedRound, ResumeError};
pub use events::{
    CoordinatorOutbound, CoordinatorOutput, Input, JobFailure, Millis, Status, Violation,
};
pub use progress::CoordinatorProgress;

use crate::aggregation::RoundAggregate;
use crate::job_logic::JobLogic;
use fedbank_common::audit::events::{self as trail, TrailEvent};
use fedbank_common::committee::{DecryptionRequest, PartialDecryption};
use fedbank_common::endorsement::{ConsortiumTrust, Signed};
use fedbank_common::ids::NodeId;
use fedbank_common::job::{RoundKind, ValidJob};
use fedbank_common::key_ceremony::{CommitmentSet, KeyBundle, RevealedShare, ShareCommitment};
use fedbank_common::protocol::{Hello, Inbound, RoundRequest, Welcome, PROTOCOL_VERSION};
use fedbank_common::secagg::{KeySetup, RingScalar};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

enum Stage<S: RingScalar> {
    Joining,
    KeySetup {
        setup: KeySetup,
        commitments: BTreeMap<NodeId, Signed<ShareCommitment>>,
        /// Once every member committed: the set every member reveals against.
        set: Option<CommitmentSet>,
        shares: BTreeMap<NodeId, RevealedShare<S>>,
        deadline: Millis,
    },
    Collecting(Box<Round<S>>),
    Decrypting {
        round: Box<Round<S>>,
        request: std::sync::Arc<DecryptionRequest<S>>,
        partials: BTreeMap<NodeId, PartialDecryption<S>>,
        deadline: Millis,
    },
    Alerting(Box<alerts::AlertStep>),
    AwaitingAuditor {
        step: Box<alerts::AlertStep>,
        tally: Box<fedbank_common::protocol::AlertTally>,
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
    /// The key ceremony's transcript, once complete: what participants verify.
    key_bundle: Option<KeyBundle<S>>,
    /// The consortium CA: signed statements are checked here too, so that a bad one is named
    /// at once (the members and participants check them again; this node is not trusted).
    trust: ConsortiumTrust,
    logic: JobLogic,
    setup: Option<KeySetup>,
    /// The key epoch this coordinator sets up: 1, or one the operator opened after a lost
    /// checkpoint ([`CoordinatorMachine::in_key_epoch`]).
    key_epoch: u32,
    outputs: VecDeque<CoordinatorOutput<S>>,
    status: Status,
    rounds_done: u32,
    auditor_keys: Option<alerts::AuditorKeysHeld>,
    /// Every completed round (the crash-recovery journal).
    completed: Vec<checkpoint::CompletedRound>,
    /// The number the next round takes; never reused, across restarts too.
    next_round: u32,
    /// What a resumed job does once its committee is back.
    pending: Option<checkpoint::Pending>,
    /// Until when a job waiting for its committee to come back waits.
    waiting_until: Option<Millis>,
    /// Rounds run again because a member went away during decryption.
    decryption_retries: u32,
    /// How many times this job has been resumed from a checkpoint (0 until the first restart);
    /// told to every node that joins, which records it.
    restart: u32,
    /// The data each participant joined with (its first Hello's commitment).
    data_commitments: BTreeMap<NodeId, fedbank_common::protocol::DataCommitment>,
    /// Refusals told to each node on its current connection.
    refusals_told: BTreeMap<NodeId, fedbank_common::protocol::RefusalsTold>,
    /// Monotonic time for measuring the alert step's work, given by the shell; the machine
    /// never reads a clock itself (zero unless [`CoordinatorMachine::with_stopwatch`]).
    stopwatch: fn() -> std::time::Duration,
}

/// The output recording `event` in the coordinator's trail.
fn audit_output<S: RingScalar, E: TrailEvent>(event: E) -> CoordinatorOutput<S> {
    CoordinatorOutput::Audit {
        kind: E::KIND,
        fields: event.fields(),
    }
}

impl<S: RingScalar> CoordinatorMachine<S> {
    /// A coordinator for `job`; `mask_seed` is the public seed of the joint key's mask and
    /// `trust` the consortium CA.
    pub fn new(job: ValidJob, mask_seed: u128, trust: ConsortiumTrust) -> Self {
        let mut machine = Self::blank(job, mask_seed, trust);
        machine.announce();
        machine
    }

    fn blank(job: ValidJob, mask_seed: u128, trust: ConsortiumTrust) -> Self {
        let logic = JobLogic::new(&job);
        Self {
            job,
            mask_seed,
            stage: Stage::Joining,
            refusals_told: BTreeMap::new(),
            welcomed: BTreeSet::new(),
            connected: BTreeSet::new(),
            key_bundle: None,
            trust,
            logic,
            setup: None,
            key_epoch: 1,
            outputs: VecDeque::new(),
            status: Status::Running,
            rounds_done: 0,
            auditor_keys: None,
            completed: Vec::new(),
            next_round: 1,
            pending: None,
            waiting_until: None,
            decryption_retries: 0,
            restart: 0,
            data_commitments: BTreeMap::new(),
            stopwatch: || std::time::Duration::ZERO,
        }
    }

    /// Runs the job under `key_epoch`, an epoch the operator opened (and the shell recorded as
    /// `key.epoch_opened`) after the checkpoint of an earlier epoch was lost; its rounds are
    /// numbered from `first_round`, after every round on record, so that no member is asked for
    /// a slot it decrypted in an earlier epoch.
    pub fn in_key_epoch(mut self, key_epoch: u32, first_round: u32) -> Self {
        self.key_epoch = key_epoch.max(1);
        self.next_round = first_round.max(1);
        self
    }

    /// Holds every participant to the data it joined with before this coordinator started
    /// (its `node.joined` records, read back from the trail when there is no checkpoint), so
    /// that a participant back with other data is refused in a new key epoch too.
    pub fn with_data_commitments(
        mut self,
        commitments: BTreeMap<NodeId, fedbank_common::protocol::DataCommitment>,
    ) -> Self {
        self.data_commitments = commitments;
        self
    }

    /// Measures the alert step's homomorphic work with `stopwatch` (a monotonic clock the shell
    /// owns), for the result's timings and the progress lines. Timings never enter the trail.
    pub fn with_stopwatch(mut self, stopwatch: fn() -> std::time::Duration) -> Self {
        self.stopwatch = stopwatch;
        self
    }

    fn announce(&mut self) {
        let machine = self;
        let spec = machine.job.spec();
        let started = trail::JobStarted {
            job: spec.job.clone(),
            kind: spec.kind.name().to_owned(),
            config_digest: machine.job.digest().to_hex(),
            profile: spec.profile.name().to_owned(),
            participants: spec.participants.clone(),
            committee: spec.committee.clone(),
            min_participants: spec.min_participants,
            k_anonymity: machine.job.segment().map(|s| s.k_anonymity),
            auditor: spec.auditor.clone(),
            software: Some(crate::SOFTWARE.to_owned()),
        };
        machine.audit(started);
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
    pub fn poll_output(&mut self) -> Option<CoordinatorOutput<S>> {
        self.outputs.pop_front()
    }

    /// When the shell must call [`CoordinatorMachine::handle`] with [`Input::Tick`] next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match &self.stage {
            Stage::KeySetup { deadline, .. } | Stage::Decrypting { deadline, .. } => {
                Some(*deadline)
            }
            Stage::Collecting(round) => Some(round.deadline),
            Stage::Alerting(step) => Some(step.deadline),
            Stage::AwaitingAuditor { deadline, .. } => Some(*deadline),
            Stage::Joining => self.waiting_until,
            Stage::Done => None,
        }
    }

    fn audit<E: TrailEvent>(&mut self, event: E) {
        self.outputs.push_back(audit_output(event));
    }

    fn progress(&mut self, event: CoordinatorProgress) {
        self.outputs.push_back(CoordinatorOutput::Progress(event));
    }

    fn send(&mut self, to: &NodeId, message: CoordinatorOutbound<S>) {
        self.outputs.push_back(CoordinatorOutput::Send {
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
            Stage::Alerting(_) => "collecting encrypted rates",
            Stage::AwaitingAuditor { .. } => "waiting for the auditor's counts",
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
                self.refusals_told.remove(&node);
                self.on_disconnect(node, now);
                Ok(())
            }
            Input::Tick => {
                self.on_tick(now);
                Ok(())
            }
            Input::Message { from, message } => self
                .on_message(from.clone(), message, now)
                .map_err(|violation| self.tell_refused(&from, violation)),
            Input::Unreadable { from, reason } => {
                let violation = Violation::Unreadable {
                    from: from.clone(),
                    reason,
                };
                Err(self.tell_refused(&from, violation))
            }
        }
    }

    /// Tells `to` that one of its messages was refused, why and what to do — so that a refusal
    /// is never silent at the refused node — up to `REFUSALS_TOLD` times per connection (a
    /// node that keeps sending what is refused cannot make the coordinator write without end).
    /// A Hello not admitted was told already. Returns the violation, for the shell to print.
    fn tell_refused(&mut self, to: &NodeId, violation: Violation) -> Violation {
        if violation.told_on_hello() {
            return violation;
        }
        let round = match &violation {
            Violation::OutOfRound { round, .. } => Some(*round),
            _ => None,
        };
        let text = format!("{}; {}", violation.with_causes(), violation.advice());
        let job = self.job.spec().job.clone();
        let told = self.refusals_told.entry(to.clone()).or_default();
        if let Some(notice) = told.notice(&job, round, &text) {
            self.send(to, CoordinatorOutbound::Notice(notice));
        }
        violation
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
            Inbound::Commitment(c) => self.on_commitment(from, c),
            Inbound::KeyShare(share) => self.on_key_share(from, share, now),
            Inbound::ContributionCommitment(c) => self.on_contribution_commitment(from, c, now),
            Inbound::Contribution(c) => self.on_contribution(from, c, now),
            Inbound::Partial(p) => self.on_partial(from, p, now),
            Inbound::Notice(n) => self.on_notice(from, n, now),
            Inbound::AlertKeys(keys) => self.on_alert_keys(from, keys, now),
            Inbound::AlertContribution(c) => self.on_alert_contribution(from, c, now),
            Inbound::AlertCounts(c) => self.on_alert_counts(from, c),
            _ => Err(unexpected(from)),
        }
    }

    fn on_hello(&mut self, from: NodeId, hello: Hello, now: Millis) -> Result<(), Violation> {
        if hello.protocol != PROTOCOL_VERSION {
            let violation = Violation::Version {
                from: from.clone(),
                version: hello.protocol,
            };
            return Err(self.not_admitted(
                &from,
                violation,
                "run the same fedbank version as the coordinator",
            ));
        }
        let spec = self.job.spec();
        if hello.job != spec.job || hello.job_digest != self.job.digest() {
            let violation = Violation::WrongJob {
                from: from.clone(),
                job: hello.job.to_string(),
                digest: hello.job_digest.to_hex(),
                expected_job: spec.job.to_string(),
                expected_digest: self.job.digest().to_hex(),
            };
            return Err(self.not_admitted(
                &from,
                violation,
                "compare the job file with the coordinator's (`sha256sum`), take the consortium's copy and start again",
            ));
        }
        if let (Some(first), Some(now)) = (self.data_commitments.get(&from), &hello.data) {
            if first != now {
                let violation = Violation::OtherData {
                    from: from.clone(),
                    first: first.clone(),
                    now: now.clone(),
                };
                return Err(self.not_admitted(
                    &from,
                    violation,
                    "start it again with the data it joined with (its rows and sha256 are in the coordinator's node.joined), or run the job under a new job id",
                ));
            }
        }
        if self.welcomed.contains(&from) {
            return Err(Violation::Duplicate {
                from,
                message: "Hello",
            });
        }
        if let Some(data) = &hello.data {
            self.data_commitments
                .entry(from.clone())
                .or_insert_with(|| data.clone());
        }
        self.welcomed.insert(from.clone());
        self.connected.insert(from.clone());
        let welcome = Welcome {
            job: spec.job.clone(),
            profile: spec.profile,
            restart: self.restart,
        };
        let is_member = spec.committee.contains(&from);
        self.send(&from, CoordinatorOutbound::Welcome(welcome));
        let data = self.data_commitments.get(&from);
        self.audit(trail::Joined {
            job: self.job.spec().job.clone(),
            node: from.clone(),
            committee: is_member,
            data_rows: data.map(|d| d.rows),
            data_sha256: data.map(|d| d.sha256.clone()),
            consent_sha256: data.and_then(|d| d.consent_sha256.clone()),
        });
        self.progress(CoordinatorProgress::Joined {
            node: from.clone(),
            member: is_member,
        });
        // Catch a (re)joining participant up with what it missed (the auditor has no use for
        // the joint key).
        let is_participant = self.job.spec().participants.contains(&from);
        if let (Some(bundle), true) = (self.key_bundle.clone(), is_participant) {
            self.send(&from, CoordinatorOutbound::KeyBundle(Box::new(bundle)));
        }
        match &mut self.stage {
            Stage::KeySetup { setup, set, .. } if is_member => {
                let (setup, set) = (setup.clone(), set.clone());
                self.send(&from, CoordinatorOutbound::KeySetup(setup));
                if let Some(set) = set {
                    self.send(&from, CoordinatorOutbound::Commitments(set));
                }
            }
            Stage::Collecting(round) if round.aggregate.roster().is_some() => {
                // Too late to commit to this attempt; a listed participant that reconnected
                // may still hold its committed contribution and reveal it.
                let listed = round
                    .aggregate
                    .roster()
                    .filter(|r| r.statement_of(&from).is_some())
                    .cloned();
                if let Some(roster) = listed {
                    if !round.aggregate.contributions().contains_key(&from) {
                        round.asked.insert(from.clone());
                        self.send(
                            &from,
                            CoordinatorOutbound::Reveal(fedbank_common::protocol::RevealRequest {
                                roster,
                            }),
                        );
                    }
                }
            }
            Stage::Collecting(round) => {
                // Before the roster, a commitment from an earlier connection is withdrawn: a
                // restarted node no longer holds its ciphertext, and commits anew.
                round.aggregate.withdraw(&from);
                round.asked.insert(from.clone());
                let request = RoundRequest {
                    job: self.job.spec().job.clone(),
                    round: round.number,
                    attempt: round.attempt,
                    kind: round.kind.clone(),
                };
                self.send(&from, CoordinatorOutbound::Round(request));
            }
            Stage::Decrypting {
                request, partials, ..
            } if is_member && !partials.contains_key(&from) => {
                // The request went out while this member was away (or was lost with its old
                // connection): it gets it now, instead of the round waiting out its deadline.
                let request = request.clone();
                self.send(&from, CoordinatorOutbound::Decrypt(request));
            }
            Stage::Alerting(_) | Stage::AwaitingAuditor { .. } => self.catch_up_alerts(&from),
            _ => {}
        }
        self.maybe_start_key_setup(now);
        Ok(())
    }

    /// Tells `from` why its Hello was not admitted and what to do, so that it stops instead of
    /// waiting; a committee member on another job file or protocol version fails the job at
    /// once, naming it. Returns the violation, for the shell to print.
    fn not_admitted(&mut self, from: &NodeId, violation: Violation, advice: &str) -> Violation {
        let job = self.job.spec().job.clone();
        self.send(
            from,
            CoordinatorOutbound::Notice(fedbank_common::protocol::Notice {
                job,
                round: None,
                kind: fedbank_common::protocol::NoticeKind::NotAdmitted,
                text: format!("{violation}; {advice}"),
            }),
        );
        let running = !matches!(self.stage, Stage::Done);
        // A member on another job file or version can never take part; one back with other
        // data can be started again with the data it joined with, and is waited for as any
        // absent member.
        let never = !matches!(violation, Violation::OtherData { .. });
        if running && never && self.job.spec().committee.contains(from) {
            self.fail(JobFailure::MemberNotAdmitted {
                member: from.clone(),
                reason: violation.to_string(),
            });
        }
        violation
    }

    fn maybe_start_key_setup(&mut self, now: Millis) {
        if !matches!(self.stage, Stage::Joining) || self.maybe_continue(now) {
            return;
        }
        let spec = self.job.spec();
        if !spec.committee.iter().all(|m| self.welcomed.contains(m)) {
            return;
        }
        if self.job.alert_rules() > 0 && self.auditor_keys.is_none() {
            return;
        }
        let joined = spec
            .participants
            .iter()
            .filter(|p| self.welcomed.contains(*p))
            .count();
        if joined < spec.start_quorum.unwrap_or(0) {
            return;
        }
        let setup = KeySetup {
            job: spec.job.clone(),
            key_epoch: self.key_epoch,
            profile: spec.profile,
            mask_seed: self.mask_seed,
            committee: spec.committee.clone(),
        };
        let deadline = now + spec.key_setup_timeout_ms;
        for member in spec.committee.clone() {
            self.send(&member, CoordinatorOutbound::KeySetup(setup.clone()));
        }
        self.audit(trail::KeySetup::Requested {
            job: setup.job.clone(),
            key_epoch: setup.key_epoch,
            mask_seed: format!("{:032x}", setup.mask_seed),
            committee: setup.committee.clone(),
        });
        self.progress(CoordinatorProgress::KeySetup {
            committee: setup.committee.clone(),
        });
        self.setup = Some(setup.clone());
        self.stage = Stage::KeySetup {
            setup,
            commitments: BTreeMap::new(),
            set: None,
            shares: BTreeMap::new(),
            deadline,
        };
    }

    fn on_commitment(
        &mut self,
        from: NodeId,
        commitment: Signed<ShareCommitment>,
    ) -> Result<(), Violation> {
        let Stage::KeySetup {
            setup,
            commitments,
            set,
            ..
        } = &mut self.stage
        else {
            return Err(Violation::Unexpected {
                from,
                message: "ShareCommitment",
                stage: self.stage_name(),
            });
        };
        if !setup.committee.contains(&from) {
            return Err(Violation::NotAMember {
                from,
                message: "ShareCommitment",
            });
        }
        let bad = |detail| Violation::BadCeremony {
            from: from.clone(),
            source: fedbank_common::key_ceremony::CeremonyError::Mismatch {
                job: setup.job.to_string(),
                what: "commitment",
                member: from.clone(),
                detail,
            },
        };
        if commitment.signer != from || commitment.statement.member != from {
            return Err(bad("signer or member is not the sender"));
        }
        if commitment.statement.setup != setup.digest() {
            return Err(bad("key setup"));
        }
        self.trust
            .verify(&commitment)
            .map_err(|source| Violation::BadCeremony {
                from: from.clone(),
                source: fedbank_common::key_ceremony::CeremonyError::Endorsement {
                    job: setup.job.to_string(),
                    source,
                },
            })?;
        match commitments.get(&from) {
            // A member that reconnected commits again to the same share: harmless.
            Some(previous) if previous.statement == commitment.statement => return Ok(()),
            Some(_) => return Err(bad("a second, different commitment")),
            None => {}
        }
        commitments.insert(from, commitment);
        if commitments.len() < setup.committee.len() || set.is_some() {
            return Ok(());
        }
        let formed = CommitmentSet {
            setup: setup.clone(),
            commitments: setup
                .committee
                .iter()
                .filter_map(|m| commitments.get(m).cloned())
                .collect(),
        };
        *set = Some(formed.clone());
        self.audit(trail::KeySetup::EveryMemberCommitted {
            job: formed.setup.job.clone(),
            key_epoch: formed.setup.key_epoch,
            commitments_digest: formed.digest().to_hex(),
        });
        for member in formed.setup.committee.clone() {
            self.send(&member, CoordinatorOutbound::Commitments(formed.clone()));
        }
        Ok(())
    }

    fn on_key_share(
        &mut self,
        from: NodeId,
        share: RevealedShare<S>,
        now: Millis,
    ) -> Result<(), Violation> {
        let Stage::KeySetup {
            setup, set, shares, ..
        } = &mut self.stage
        else {
            return Err(Violation::Unexpected {
                from,
                message: "RevealedShare",
                stage: self.stage_name(),
            });
        };
        if !setup.committee.contains(&from) {
            return Err(Violation::NotAMember {
                from,
                message: "RevealedShare",
            });
        }
        let Some(set) = set.clone() else {
            return Err(Violation::Unexpected {
                from,
                message: "RevealedShare",
                stage:
                    "collecting commitments (a share is revealed only after every member committed)",
            });
        };
        if share.share.member() != &from {
            let source = fedbank_common::secagg::KeyError::SetupMismatch {
                member: share.share.member().clone(),
                job: setup.job.clone(),
                epoch: setup.key_epoch,
                got_job: share.share.setup().job.clone(),
                got_epoch: share.share.setup().key_epoch,
            };
            return Err(Violation::BadKeyShare { from, source });
        }
        share
            .verify(&self.trust, &set, set.digest())
            .map_err(|source| Violation::BadCeremony {
                from: from.clone(),
                source,
            })?;
        if shares.contains_key(&from) {
            return Ok(());
        }
        shares.insert(from, share);
        if shares.len() < setup.committee.len() {
            return Ok(());
        }
        let bundle = KeyBundle {
            commitments: set,
            shares: setup
                .committee
                .iter()
                .filter_map(|m| shares.get(m).cloned())
                .collect(),
        };
        let setup = setup.clone();
        match bundle.verify(&self.trust) {
            Ok(key) => {
                self.audit(trail::KeySetup::JointKeyFormed {
                    job: setup.job.clone(),
                    key_epoch: setup.key_epoch,
                    members: setup.committee.clone(),
                    joint_key_digest: key.digest().to_hex(),
                });
                self.key_bundle = Some(bundle.clone());
                let participants = &self.job.spec().participants;
                let present: Vec<NodeId> = self
                    .present()
                    .filter(|n| participants.contains(n))
                    .cloned()
                    .collect();
                for node in present {
                    self.send(
                        &node,
                        CoordinatorOutbound::KeyBundle(Box::new(bundle.clone())),
                    );
                }
                match self.logic.first_round() {
                    Ok(first) => self.start_round(self.next_round, 0, first, now),
                    Err(reason) => self.fail(JobFailure::Decode { round: 1, reason }),
                }
            }
            Err(e) => self.fail(JobFailure::JointKey(e.to_string())),
        }
        Ok(())
    }
}

impl<S: RingScalar> fedbank_common::node_machine::NodeMachine<Input<S>> for CoordinatorMachine<S> {
    type Output = CoordinatorOutput<S>;
    type Violation = Violation;
    type Status = Status;

    fn handle(&mut self, input: Input<S>, now: u64) -> Result<(), Violation> {
        CoordinatorMachine::handle(self, input, now)
    }
    fn poll_output(&mut self) -> Option<CoordinatorOutput<S>> {
        CoordinatorMachine::poll_output(self)
    }
    fn poll_timeout(&self) -> Option<u64> {
        CoordinatorMachine::poll_timeout(self)
    }
    fn on_deadline(&mut self, now: u64) -> Result<(), Violation> {
        CoordinatorMachine::handle(self, Input::Tick, now)
    }
    fn ended(&self) -> Option<Status> {
        (self.status != Status::Running).then(|| self.status.clone())
    }
}
