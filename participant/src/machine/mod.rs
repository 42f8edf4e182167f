//! A participant node (and, if it sits on the committee, a key-committee member) as a plain
//! state machine: messages from the coordinator in, messages and audit events out.
//!
//! ```text
//!   start / reconnect ──▶ Hello{job digest}
//!   Welcome            ──▶ (nothing)
//!   KeySetup           ──▶ (member) sample s_j, SaveMember, signed commitment audit key.setup
//!   CommitmentSet      ──▶ (member) check every member's signed commitment,
//!                          RevealedShare (signed, bound to the set)      audit key.setup
//!   KeyBundle          ──▶ check the whole ceremony against the CA, form the joint key
//!                          itself; refuse any other key later            audit key.accepted
//!   RoundRequest       ──▶ check it against the job's plan (kind, increasing number, budget),
//!                          compute on the local table, encode, encrypt, keep the ciphertext,
//!                          ContributionCommitment (signed statement)
//!                          or Notice(CannotContribute), nothing partial
//!   RevealRequest      ──▶ the roster lists this commitment, first roster for it (reveal.rs):
//!                          Contribution + signed reveal                   audit contribution.sent
//!   DecryptionRequest  ──▶ (member) policy check, SaveMember (the record),
//!                          PartialDecryption                              audit decryption.released
//!                          or Notice(Refused)                             audit decryption.refused
//!   JobReleased        ──▶ the job's participant step takes the release (segment job: assign
//!                          its own customers locally)                    audit segments.assigned
//!                          (propensity job: score its own hold-out with the federated model
//!                          and with a model of its own data alone)       audit model.received
//!   AlertRequest       ──▶ (compliance) its rates under the auditor's key,
//!                          AlertContribution                              audit alert.sent
//!   Notice(Finished | Aborted) ──▶ stop
//! ```
//!
//! Every coordinator message this node refuses is written to its own trail
//! (`message.refused`), so that the refusal is evidence an auditor can hold against the
//! coordinator's trail.

mod keys;
mod progress;
mod reveal;
mod round;

pub use progress::{NodeProgress, ParticipantProgress};
pub use reveal::RevealRefusal;

use crate::committee_member::{CommitteeMember, MemberError};
use crate::customers::CustomerRecords;
use crate::local_stats::{self, LocalStatsError};
use crate::local_table::LocalTable;
use crate::privacy_noise::ParticipantPrivacy;
use crate::rfm::{CustomerHistory, TransactionError};
use fedbank_common::audit::events::{self as trail, TrailEvent};
use fedbank_common::audit::EventKind;
use fedbank_common::committee::{DecryptionRequest, PartialDecryption};
use fedbank_common::digest::Digest;
pub use fedbank_common::endorsement::Credentials;
use fedbank_common::endorsement::{ConsortiumTrust, NodeSigner, Signed};
use fedbank_common::ids::NodeId;
use fedbank_common::job::compliance::ContactLog;
use fedbank_common::job::propensity::LocalFigures;
use fedbank_common::job::{LocalInput, LocalRelease, ParticipantStep, ValidJob};
use fedbank_common::key_ceremony::{CeremonyError, RevealedShare, ShareCommitment};
use fedbank_common::model::PropensityModel;
use fedbank_common::policy::MemberRecord;
use fedbank_common::protocol::{
    AlertContribution, AlertRequest, Contribution, ContributionCommitment, DataCommitment, Hello,
    Inbound, JobReleased, Notice, NoticeKind, RefusalsTold, PROTOCOL_VERSION,
};
use fedbank_common::round_plan::{PlanRefusal, RoundPlan};
use fedbank_common::secagg::{JointPublicKey, RingScalar, SecretKeyShare};
use serde_json::{Map, Value};
use std::collections::VecDeque;

/// A message to the coordinator.
#[derive(Debug, Clone)]
pub enum ParticipantOutbound<S: RingScalar> {
    /// [`Hello`].
    Hello(Hello),
    /// A member's signed commitment to its key share.
    Commitment(Signed<ShareCommitment>),
    /// A member's revealed, signed key share.
    KeyShare(RevealedShare<S>),
    /// [`ContributionCommitment`]: the signed statement ahead of the ciphertext.
    ContributionCommitment(ContributionCommitment),
    /// [`Contribution`].
    Contribution(Contribution<S>),
    /// [`PartialDecryption`].
    Partial(PartialDecryption<S>),
    /// [`Notice`].
    Notice(Notice),
    /// [`AlertContribution`].
    Alert(AlertContribution),
}

impl<S: RingScalar> ParticipantOutbound<S> {
    /// The message in its wire form.
    pub fn encode(&self) -> Result<Vec<u8>, fedbank_common::wire::WireError> {
        use fedbank_common::wire::encode;
        match self {
            ParticipantOutbound::Hello(m) => encode(m),
            ParticipantOutbound::Commitment(m) => encode(m),
            ParticipantOutbound::KeyShare(m) => encode(m),
            ParticipantOutbound::ContributionCommitment(m) => encode(m),
            ParticipantOutbound::Contribution(m) => encode(m),
            ParticipantOutbound::Partial(m) => encode(m),
            ParticipantOutbound::Notice(m) => encode(m),
            ParticipantOutbound::Alert(m) => encode(m),
        }
    }
}

/// Something for the node's shell to do.
#[derive(Debug)]
pub enum ParticipantOutput<S: RingScalar> {
    /// Send to the coordinator.
    Send(ParticipantOutbound<S>),
    /// Write an audit event in the node's own trail.
    Audit {
        /// Event type.
        kind: EventKind,
        /// Fields.
        fields: Map<String, Value>,
    },
    /// A step for the operator, typed; the shell renders it (its `Display` is the line).
    Progress(NodeProgress),
    /// This participant's own customers labelled by a job's release (the segment each falls
    /// in): (customer, label). To be written locally; it never leaves the participant.
    Assignments(Vec<(String, String)>),
    /// The released propensity model and this participant's own figures on its hold-out
    /// customers. To be kept locally; the figures never leave the participant.
    Model {
        /// The model.
        model: Box<PropensityModel>,
        /// Its figures, when it holds labeled customers.
        figures: Option<LocalFigures>,
    },
    /// A participant's differential-privacy state, to be written durably (owner-only) before
    /// the shell carries out any output after it: the noised contribution that follows must
    /// never leave a node that would forget having spent it. A shell that cannot write it must
    /// stop rather than go on.
    SavePrivacy(Box<crate::privacy_noise::PrivacyState>),
    /// A job's local report of a round over this participant's own data (a compliance job's
    /// per-rule counts and example customers). To be kept locally; it never leaves the
    /// participant.
    LocalReport(Value),
    /// A committee member's state, to be written durably before the shell carries out any
    /// output after it: the secret share when it was just sampled (before its public share
    /// leaves), and the record of decrypted slots (before the partial decryption leaves). A
    /// shell that cannot write it must stop rather than go on.
    SaveMember {
        /// The secret share, when new.
        share: Option<Box<SecretKeyShare<S>>>,
        /// The member's record.
        record: MemberRecord,
    },
}

/// How the node's part of the job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeStatus {
    /// Still running.
    Running,
    /// The coordinator reported the job finished.
    Finished,
    /// The coordinator aborted the job.
    Aborted(String),
}

/// A message from the coordinator that does not fit. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum NodeViolation {
    /// A message this node never expects.
    #[error("unexpected {0} from the coordinator")]
    Unexpected(&'static str),
    /// A message for another job or committee than this node agreed to.
    #[error("the coordinator sent {message} for {what}, which this node did not agree to")]
    WrongJob {
        /// Message name.
        message: &'static str,
        /// What differs.
        what: String,
    },
    /// A committee message while not on the committee.
    #[error("the coordinator sent {0}, but this node is not on the key committee")]
    NotAMember(&'static str),
    /// A round request before the joint key.
    #[error("round {0} requested before the joint key arrived")]
    NoKey(u32),
    /// The member could not build its key share.
    #[error("committee member")]
    Member(#[from] MemberError),
    /// A step of the key ceremony did not check out: the coordinator's key, a member's share or
    /// a signature is not what the committee made.
    #[error("key ceremony refused")]
    Ceremony(#[from] CeremonyError),
    /// A joint key other than the one this node accepted for the job.
    #[error("the coordinator sent a joint key {got} for job {job}, but this node already encrypts under {accepted} of the same or a later key epoch; a key is never replaced but by one of a later epoch")]
    KeyReplaced {
        /// Job.
        job: String,
        /// Digest of the key held.
        accepted: Digest,
        /// Digest of the key offered.
        got: Digest,
    },
    /// A second key setup of a key epoch whose share this member holds.
    #[error("the coordinator sent a second key setup for key epoch {epoch} of job {job}, whose share this member holds already (setup {held}); one key epoch is one key setup, ever, so that no aggregate of the job can be decrypted twice under two keys")]
    SecondKeySetup {
        /// Job.
        job: String,
        /// The key epoch.
        epoch: u32,
        /// Digest of the setup the member holds.
        held: String,
    },
    /// The commitment set does not hold this member's own commitment.
    #[error("the commitment set does not hold this member's own commitment to its key share")]
    NotMyCommitment,
    /// A round request outside the job's plan.
    #[error("round request refused")]
    OutsidePlan(#[from] PlanRefusal),
    /// A roster this node does not reveal its contribution against.
    #[error("reveal refused")]
    Reveal(#[from] RevealRefusal),
}

/// Where a participant's rows come from.
#[derive(Debug, Clone)]
pub enum LocalData {
    /// A customer table, with the customer ids of its rows when the job names an id column.
    Table {
        /// The table.
        table: LocalTable,
        /// Customer ids in row order.
        row_ids: Option<Vec<String>>,
    },
    /// A transaction log, summarized per customer; RFM rows are built from it.
    Transactions(CustomerHistory),
    /// A labeled customer table (propensity jobs).
    Customers(CustomerRecords),
    /// A marketing-contact log with its consent table (compliance jobs).
    Contacts(ContactLog),
}

impl LocalData {
    /// Rows read: the customers of a customer table or a transaction log, the contacts of a
    /// contact log (what a [`DataCommitment`] counts).
    pub fn rows(&self) -> u64 {
        let rows = match self {
            LocalData::Table { table, .. } => table.rows,
            LocalData::Transactions(history) => history.ids().len(),
            LocalData::Customers(records) => records.rows(),
            LocalData::Contacts(log) => log.contacts(),
        };
        rows as u64
    }
}

/// Everything a node holds that a job's local step may read.
fn local_input<'a>(
    table: &'a LocalTable,
    row_ids: Option<&'a [String]>,
    history: Option<&'a CustomerHistory>,
    customers: Option<&'a CustomerRecords>,
    contacts: Option<&'a ContactLog>,
) -> LocalInput<'a> {
    LocalInput {
        table: fedbank_common::job::LocalColumns {
            rows: table.rows,
            columns: &table.columns,
        },
        row_ids,
        transactions: history.map(|h| h as &dyn fedbank_common::job::TransactionLog),
        customers,
        contacts,
    }
}

/// A participant's node for one job.
pub struct ParticipantMachine<S: RingScalar> {
    id: NodeId,
    signer: NodeSigner,
    trust: ConsortiumTrust,
    /// The rounds answered so far, checked against the job's plan.
    plan: RoundPlan,
    job: ValidJob,
    table: LocalTable,
    member: Option<CommitteeMember<S>>,
    key: Option<JointPublicKey<S>>,
    outputs: VecDeque<ParticipantOutput<S>>,
    status: NodeStatus,
    row_ids: Option<Vec<String>>,
    /// The transaction history a job reads (segment jobs over transaction logs).
    history: Option<CustomerHistory>,
    /// The step of a job kind behind the `Job` trait: what it computes each round over this
    /// node's data and keeps between rounds.
    step: Option<Box<dyn ParticipantStep>>,
    /// The labeled customers a job reads (propensity jobs).
    customers: Option<CustomerRecords>,
    /// Noise and accountant of a job with differential privacy.
    privacy: Option<ParticipantPrivacy>,
    /// The contact log of a compliance job.
    contacts: Option<ContactLog>,
    /// The latest round's contribution, committed and kept until revealed against a roster.
    pending: Option<reveal::PendingContribution<S>>,
    /// Digest of the job's release as received, recorded in `job.ended`.
    release_digest: Option<String>,
    /// The coordinator's latest restart this node recorded (`coordinator.restarted`).
    coordinator_restart: u32,
    /// The data this node runs the job on, told in every Hello.
    data_commitment: Option<DataCommitment>,
    /// The coordinator's messages refused on this connection and told to it.
    refusals_told: RefusalsTold,
}

impl<S: RingScalar> ParticipantMachine<S> {
    /// The node of `credentials` taking part in `job` with its local `table`. Its id is the one
    /// its certificate names.
    pub fn new(credentials: Credentials, job: ValidJob, table: LocalTable) -> Self {
        let privacy = job
            .privacy()
            .map(|plan| ParticipantPrivacy::new(plan, job.spec().min_participants));
        let step = job
            .spec()
            .kind
            .registered()
            .map(|kind| kind.participant(&job));
        Self {
            privacy,
            id: credentials.signer.id().clone(),
            signer: credentials.signer,
            trust: credentials.trust,
            plan: RoundPlan::default(),
            job,
            table,
            member: None,
            key: None,
            outputs: VecDeque::new(),
            status: NodeStatus::Running,
            row_ids: None,
            history: None,
            step,
            customers: None,
            contacts: None,
            pending: None,
            release_digest: None,
            coordinator_restart: 0,
            data_commitment: None,
            refusals_told: RefusalsTold::default(),
        }
    }

    /// The node of `credentials` taking part in `job` with its local `data`.
    pub fn with_data(
        credentials: Credentials,
        job: ValidJob,
        data: LocalData,
    ) -> Result<Self, TransactionError> {
        match data {
            LocalData::Table { table, row_ids } => {
                let mut machine = Self::new(credentials, job, table);
                machine.row_ids = row_ids;
                Ok(machine)
            }
            LocalData::Transactions(history) => Self::from_transactions(credentials, job, history),
            LocalData::Customers(records) => {
                let table = records.numeric_table(&job.spec().features).into();
                let mut machine = Self::new(credentials, job, table);
                machine.row_ids = records.ids.clone();
                machine.customers = Some(records);
                Ok(machine)
            }
            LocalData::Contacts(log) => {
                let mut machine = Self::new(credentials, job, LocalTable::default());
                machine.contacts = Some(log);
                Ok(machine)
            }
        }
    }

    /// A node `id` taking part in a segment job over its transaction log, summarized in
    /// `history`. If the job gives the reference date the RFM rows are checked now, so that a
    /// purchase after it stops the node before it connects.
    pub fn from_transactions(
        credentials: Credentials,
        job: ValidJob,
        history: CustomerHistory,
    ) -> Result<Self, TransactionError> {
        if let Some(day) = job.segment().and_then(|s| s.reference_day()) {
            history.rfm_table(day)?;
        }
        let mut machine = Self::new(credentials, job, LocalTable::default());
        machine.history = Some(history);
        Ok(machine)
    }

    /// Draws this node's differential-privacy noise from `secret` instead of a fresh random one,
    /// for reproducible simulations and tests. A production node never calls it: anyone who
    /// knows the secret can subtract the noise.
    pub fn with_privacy_secret(mut self, secret: [u8; 32]) -> Self {
        if let Some(plan) = self.job.privacy() {
            self.privacy = Some(ParticipantPrivacy::with_secret(
                plan,
                self.job.spec().min_participants,
                secret,
            ));
        }
        self
    }

    /// Takes back the differential-privacy state saved before a restart: the same noise secret,
    /// the rounds answered and the budget spent.
    pub fn with_privacy_state(mut self, state: &crate::privacy_noise::PrivacyState) -> Self {
        if let Some(plan) = self.job.privacy() {
            self.privacy = Some(ParticipantPrivacy::restore(
                plan,
                self.job.spec().min_participants,
                state,
            ));
        }
        self
    }

    /// A committee member restored from disk after a restart (see
    /// [`crate::CommitteeMember::restore`]): a key setup for the share's epoch gets the same
    /// share again, and the slots it decrypted before stay refused under another manifest.
    pub fn with_member(mut self, member: CommitteeMember<S>) -> Self {
        self.member = Some(member);
        self
    }

    /// Names the table's rows (customer ids), for the local segment assignment file.
    pub fn with_row_ids(mut self, ids: Vec<String>) -> Self {
        self.row_ids = Some(ids);
        self
    }

    /// Commits this node to the data it runs the job on ([`DataCommitment`], computed by the
    /// shell that read the files): every Hello carries it, and the coordinator refuses a
    /// rejoin with other data.
    pub fn with_data_commitment(mut self, data: DataCommitment) -> Self {
        self.data_commitment = Some(data);
        self
    }

    /// Called on every (re)connection: says Hello with the job digest and the data commitment.
    pub fn on_connected(&mut self) {
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            job: self.job.spec().job.clone(),
            job_digest: self.job.digest(),
            data: self.data_commitment.clone(),
        };
        self.refusals_told = RefusalsTold::default();
        self.outputs
            .push_back(ParticipantOutput::Send(ParticipantOutbound::Hello(hello)));
    }

    /// The next thing for the shell to do.
    pub fn poll_output(&mut self) -> Option<ParticipantOutput<S>> {
        self.outputs.pop_front()
    }

    /// How the node's part ended, if it did.
    pub fn status(&self) -> &NodeStatus {
        &self.status
    }

    /// This node's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    fn audit<E: TrailEvent>(&mut self, event: E) {
        self.outputs.push_back(ParticipantOutput::Audit {
            kind: E::KIND,
            fields: event.fields(),
        });
    }

    fn progress(&mut self, event: ParticipantProgress) {
        self.outputs
            .push_back(ParticipantOutput::Progress(NodeProgress {
                node: self.id.clone(),
                event,
            }));
    }

    fn send(&mut self, message: ParticipantOutbound<S>) {
        self.outputs.push_back(ParticipantOutput::Send(message));
    }

    /// Processes a message from the coordinator (heavy: encryption and partial decryption run
    /// here, so the shell calls it off the async executor).
    pub fn handle(&mut self, message: Inbound<S>) -> Result<(), NodeViolation> {
        let name = message.name();
        let outcome = self.dispatch(message);
        if let Err(violation) = &outcome {
            let mut reason = violation.to_string();
            let mut source = std::error::Error::source(violation);
            while let Some(cause) = source {
                reason.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            // The coordinator is told too: a refusal is never silent where it was caused.
            let job = self.job.spec().job.clone();
            let text = format!(
                "{} refused {name}: {reason}; it acted on nothing of it and recorded it in its trail",
                self.id
            );
            self.audit(trail::MessageRefused {
                job: job.clone(),
                message: name.to_owned(),
                reason,
            });
            if let Some(notice) = self.refusals_told.notice(&job, None, &text) {
                self.send(ParticipantOutbound::Notice(notice));
            }
        }
        outcome
    }

    fn dispatch(&mut self, message: Inbound<S>) -> Result<(), NodeViolation> {
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
            Inbound::Welcome(w) => Err(NodeViolation::WrongJob {
                message: "Welcome",
                what: format!("job {}", w.job),
            }),
            Inbound::KeySetup(setup) => self.on_key_setup(setup),
            Inbound::Commitments(set) => self.on_commitments(set),
            Inbound::KeyBundle(bundle) => self.on_key_bundle(bundle),
            Inbound::Round(request) => self.on_round(request),
            Inbound::RevealRequest(request) => self.on_reveal(request),
            Inbound::Decrypt(request) => self.on_decrypt(request),
            Inbound::Released(released) => self.on_released(released),
            Inbound::AlertRequest(request) => self.on_alert_request(request),
            Inbound::Notice(n) if n.kind == NoticeKind::MessageRefused => {
                self.progress(ParticipantProgress::RefusedByCoordinator {
                    round: n.round,
                    reason: n.printable_text(),
                });
                Ok(())
            }
            Inbound::Notice(n) => {
                let (status, outcome, reason) = match n.kind {
                    NoticeKind::Finished => (NodeStatus::Finished, "finished", None),
                    NoticeKind::Aborted => {
                        (NodeStatus::Aborted(n.text.clone()), "aborted", Some(n.text))
                    }
                    NoticeKind::NotAdmitted => {
                        let text = format!("not admitted by the coordinator: {}", n.text);
                        (
                            NodeStatus::Aborted(text.clone()),
                            "not admitted",
                            Some(text),
                        )
                    }
                    _ => return Err(NodeViolation::Unexpected("Notice")),
                };
                if self.status == NodeStatus::Running {
                    self.audit(trail::JobEnded {
                        job: self.job.spec().job.clone(),
                        outcome: outcome.to_owned(),
                        reason,
                        release_digest: self.release_digest.clone(),
                    });
                }
                self.status = status;
                Ok(())
            }
            other => Err(NodeViolation::Unexpected(other.name())),
        }
    }

    fn on_decrypt(&mut self, request: DecryptionRequest<S>) -> Result<(), NodeViolation> {
        let job = self.job.spec().job.clone();
        let Some(member) = self.member.as_mut() else {
            return Err(NodeViolation::NotAMember("DecryptionRequest"));
        };
        let manifest = &request.manifest;
        let (round, quantity) = (manifest.round, manifest.quantity.clone());
        match member.handle(&request) {
            Ok(partial) => {
                let record = member.record().clone();
                self.outputs.push_back(ParticipantOutput::SaveMember {
                    share: None,
                    record,
                });
                let manifest_digest = partial.manifest_digest;
                self.audit(trail::DecryptionReleased {
                    job: job.clone(),
                    round,
                    quantity: quantity.clone(),
                    manifest: manifest_digest.to_hex(),
                    contributors: request.manifest.contributors.clone(),
                });
                self.send(ParticipantOutbound::Partial(partial));
            }
            Err(e) => {
                let reason = e.to_string();
                self.audit(trail::DecryptionRefused {
                    job: job.clone(),
                    round,
                    quantity: quantity.clone(),
                    reason: reason.clone(),
                });
                self.send(ParticipantOutbound::Notice(Notice {
                    job,
                    round: Some(round),
                    kind: NoticeKind::Refused,
                    text: reason,
                }));
            }
        }
        Ok(())
    }

    fn on_released(&mut self, released: JobReleased) -> Result<(), NodeViolation> {
        let spec = self.job.spec().clone();
        let wrong = |what: String| NodeViolation::WrongJob {
            message: "JobReleased",
            what,
        };
        if released.job != spec.job {
            return Err(wrong(format!("job {}", released.job)));
        }
        self.release_digest = Some(trail::release_digest(&released.release));
        let input = local_input(
            &self.table,
            self.row_ids.as_deref(),
            self.history.as_ref(),
            self.customers.as_ref(),
            self.contacts.as_ref(),
        );
        let step = self.step.as_mut().ok_or_else(|| {
            wrong(format!(
                "a release of job {}, whose {} kind releases nothing to participants",
                released.job,
                spec.kind.name()
            ))
        })?;
        let kept = step
            .released(input, &released.release)
            .map_err(|problem| wrong(format!("job {}: {problem}", released.job)))?;
        match kept {
            LocalRelease::Assignments {
                assignments,
                labels,
            } => {
                self.audit(trail::SegmentsAssigned {
                    job: spec.job.clone(),
                    segments: labels,
                    customers: assignments.len(),
                });
                self.progress(ParticipantProgress::Assigned {
                    customers: assignments.len(),
                    segments: labels,
                });
                self.outputs
                    .push_back(ParticipantOutput::Assignments(assignments));
            }
            LocalRelease::Model { model, figures } => {
                let digest = fedbank_common::digest::Digest::of_json("fedbank.model.v1", &model)
                    .map_err(|e| wrong(format!("job {}: the model: {e}", released.job)))?;
                self.audit(trail::ModelReceived {
                    job: spec.job.clone(),
                    model_digest: digest.to_hex(),
                    coefficients: model.coefficients.len(),
                    local_figures: figures.is_some(),
                });
                if let Some(f) = &figures {
                    self.progress(ParticipantProgress::HoldOutFigures {
                        customers: f.holdout_customers,
                        federated_auc: f.federated_auc,
                        local_only_auc: f.local_only_auc,
                    });
                }
                self.outputs
                    .push_back(ParticipantOutput::Model { model, figures });
            }
        }
        Ok(())
    }

    fn on_alert_request(&mut self, request: AlertRequest) -> Result<(), NodeViolation> {
        let job = self.job.spec().job.clone();
        let expected = self.job.alert_limits();
        if request.job != job || expected.is_empty() || request.rules != expected {
            return Err(NodeViolation::WrongJob {
                message: "AlertRequest",
                what: format!(
                    "job {} with rules and limits {:?}",
                    request.job, request.rules
                ),
            });
        }
        // Rates go only under a key the job's certified auditor signed.
        let endorsed = self.trust.verify(&request.endorsement).map(|s| {
            Some(&request.endorsement.signer) == self.job.spec().auditor.as_ref()
                && s.job == job
                && s.job_digest == self.job.digest()
                && s.public_key == fedbank_common::alerts::digest(&request.public_key)
        });
        match endorsed {
            Ok(true) => {}
            Ok(false) => {
                return Err(NodeViolation::WrongJob {
                    message: "AlertRequest",
                    what: "an alert key not signed by the job's auditor".to_owned(),
                })
            }
            Err(e) => {
                return Err(NodeViolation::WrongJob {
                    message: "AlertRequest",
                    what: format!("an alert key whose signature does not verify ({e})"),
                })
            }
        }
        let outcome = self
            .step
            .as_ref()
            .ok_or_else(|| "this job has no participant step".to_owned())
            .and_then(|step| step.alert_rates(&expected))
            .and_then(|rates| {
                let key = fedbank_common::alerts::RatePublicKey::from_bytes(&request.public_key)
                    .map_err(|e| e.to_string())?;
                key.encrypt_rates(&rates).map_err(|e| e.to_string())
            });
        match outcome {
            Ok(rates) => {
                self.audit(trail::AlertSent {
                    job: job.clone(),
                    round: request.round,
                    public_key: fedbank_common::alerts::digest(&request.public_key).to_hex(),
                    digest: fedbank_common::alerts::digest(&rates).to_hex(),
                    rules: expected.iter().map(|r| r.rule.clone()).collect(),
                });
                self.progress(ParticipantProgress::RatesSent {
                    rules: expected.len(),
                });
                self.send(ParticipantOutbound::Alert(AlertContribution {
                    job,
                    round: request.round,
                    rates,
                }));
            }
            Err(reason) => {
                self.send(ParticipantOutbound::Notice(Notice {
                    job,
                    round: Some(request.round),
                    kind: NoticeKind::CannotContribute,
                    text: reason,
                }));
            }
        }
        Ok(())
    }

    /// Whether a local-stats error would stop this node (used by the shell before connecting).
    pub fn check_table(&self) -> Result<(), LocalStatsError> {
        let spec = self.job.spec();
        local_stats::compute(
            &self.table,
            &spec.features,
            spec.max_rows,
            &fedbank_common::job::stats::moments_round(),
        )
        .map(|_| ())
    }
}

impl<S: RingScalar>
    fedbank_common::node_machine::NodeMachine<fedbank_common::node_machine::Delivery<Inbound<S>>>
    for ParticipantMachine<S>
{
    type Output = ParticipantOutput<S>;
    type Violation = NodeViolation;
    type Status = NodeStatus;

    /// The participant keeps no deadlines: time is not used.
    fn handle(
        &mut self,
        input: fedbank_common::node_machine::Delivery<Inbound<S>>,
        _now: u64,
    ) -> Result<(), NodeViolation> {
        use fedbank_common::node_machine::Delivery;
        match input {
            Delivery::Connected => {
                self.on_connected();
                Ok(())
            }
            Delivery::Message(message) => ParticipantMachine::handle(self, message),
        }
    }
    fn poll_output(&mut self) -> Option<ParticipantOutput<S>> {
        ParticipantMachine::poll_output(self)
    }
    fn poll_timeout(&self) -> Option<u64> {
        None
    }
    fn on_deadline(&mut self, _now: u64) -> Result<(), NodeViolation> {
        Ok(())
    }
    fn ended(&self) -> Option<NodeStatus> {
        (self.status != NodeStatus::Running).then(|| self.status.clone())
    }
}
