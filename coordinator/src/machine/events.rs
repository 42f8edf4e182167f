//! What goes in and out of the coordinator's state machine, and how it can end.

use fedbank_common::audit::EventKind;
use fedbank_common::committee::DecryptionRequest;
use fedbank_common::encoding::DecodedQuantity;
use fedbank_common::ids::NodeId;
use fedbank_common::job::RoundKind;
use fedbank_common::key_ceremony::{CeremonyError, CommitmentSet, KeyBundle};
use fedbank_common::protocol::{
    AlertRequest, AlertTally, Inbound, JobReleased, Notice, RevealRequest, RoundRequest, Welcome,
    PROTOCOL_VERSION,
};
use fedbank_common::secagg::{KeySetup, RingScalar};
use serde_json::{Map, Value};

use crate::aggregation::AggregationError;
use crate::job_logic::JobResult;

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
    /// A node sent something the shell could not read as a message (a frame over its limit,
    /// bytes that do not decode). Nothing reached the machine but the fact, which the node is
    /// told.
    Unreadable {
        /// The sender, from its certificate.
        from: NodeId,
        /// What was wrong, with its cause.
        reason: String,
    },
    /// Time passed (the shell calls this at the deadline).
    Tick,
}

/// A message to a node.
#[derive(Debug, Clone)]
pub enum CoordinatorOutbound<S: RingScalar> {
    /// [`Welcome`].
    Welcome(Welcome),
    /// [`KeySetup`].
    KeySetup(KeySetup),
    /// [`CommitmentSet`] (to committee members).
    Commitments(CommitmentSet),
    /// [`KeyBundle`] (to participants).
    KeyBundle(Box<KeyBundle<S>>),
    /// [`RoundRequest`].
    Round(RoundRequest),
    /// [`RevealRequest`]: the round's roster, to each participant listed.
    Reveal(RevealRequest),
    /// [`DecryptionRequest`], shared: the same request goes to every member and is kept until
    /// the round is decrypted (it holds every contribution's mask, the round's largest message).
    Decrypt(std::sync::Arc<DecryptionRequest<S>>),
    /// [`Notice`].
    Notice(Notice),
    /// [`JobReleased`].
    Released(JobReleased),
    /// [`AlertRequest`].
    AlertRequest(AlertRequest),
    /// [`AlertTally`] (to the auditor only).
    AlertTally(AlertTally),
}

impl<S: RingScalar> CoordinatorOutbound<S> {
    /// The message in its wire form.
    pub fn encode(&self) -> Result<Vec<u8>, fedbank_common::wire::WireError> {
        use fedbank_common::wire::encode;
        match self {
            CoordinatorOutbound::Welcome(m) => encode(m),
            CoordinatorOutbound::KeySetup(m) => encode(m),
            CoordinatorOutbound::Commitments(m) => encode(m),
            CoordinatorOutbound::KeyBundle(m) => encode(m.as_ref()),
            CoordinatorOutbound::Round(m) => encode(m),
            CoordinatorOutbound::Reveal(m) => encode(m),
            CoordinatorOutbound::Decrypt(m) => encode(m.as_ref()),
            CoordinatorOutbound::Notice(m) => encode(m),
            CoordinatorOutbound::Released(m) => encode(m),
            CoordinatorOutbound::AlertRequest(m) => encode(m),
            CoordinatorOutbound::AlertTally(m) => encode(m),
        }
    }
}

/// Something for the shell to do.
#[derive(Debug)]
pub enum CoordinatorOutput<S: RingScalar> {
    /// Send a message to a node.
    Send {
        /// The node.
        to: NodeId,
        /// The message.
        message: CoordinatorOutbound<S>,
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
    /// A step for the operator, typed; the shell renders it (its `Display` is the line).
    Progress(super::CoordinatorProgress),
    /// The job's state, to be written atomically for crash recovery.
    Checkpoint(Box<super::journal::Checkpoint>),
    /// A round's decrypted aggregate: what the coordinator learned (for its operator's logs and
    /// for tests of what each role received).
    Aggregate {
        /// Round.
        round: u32,
        /// What the round computed.
        kind: RoundKind,
        /// The decoded quantities.
        values: Vec<DecodedQuantity>,
    },
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
    /// A participant that joined with one data file said Hello again with another.
    #[error("{from} joined this job with {first}; it came back with {now}")]
    OtherData {
        /// Sender.
        from: NodeId,
        /// The data it first joined with.
        first: fedbank_common::protocol::DataCommitment,
        /// The data it came back with.
        now: fedbank_common::protocol::DataCommitment,
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
    /// A commitment or revealed share of the key ceremony that does not check out.
    #[error("key ceremony step from {from} refused")]
    BadCeremony {
        /// Sender.
        from: NodeId,
        /// Why.
        #[source]
        source: CeremonyError,
    },
    /// A contribution whose signed statement does not check out.
    #[error("contribution from {from} refused: {reason}")]
    BadStatement {
        /// Sender.
        from: NodeId,
        /// Why.
        reason: String,
    },
    /// An auditor-only message from another node.
    #[error("{from} sent {message} but is not the job's auditor")]
    NotTheAuditor {
        /// Sender.
        from: NodeId,
        /// Message name.
        message: &'static str,
    },
    /// Alert material that does not fit (keys, rates or counts).
    #[error("{from}: alert material refused: {reason}")]
    BadAlert {
        /// Sender.
        from: NodeId,
        /// Why.
        reason: String,
    },
    /// A frame or message the shell could not read.
    #[error("{from} sent an unreadable message: {reason}")]
    Unreadable {
        /// Sender.
        from: NodeId,
        /// What was wrong.
        reason: String,
    },
    /// A contribution refused by the aggregate.
    #[error(transparent)]
    Aggregation(#[from] AggregationError),
}

impl Violation {
    /// Whether the refused node was told already, with the advice of its own case: a Hello not
    /// admitted (another protocol version, job file or data).
    pub fn told_on_hello(&self) -> bool {
        matches!(
            self,
            Self::Version { .. } | Self::WrongJob { .. } | Self::OtherData { .. }
        )
    }

    /// What the operator of the refused node can do, in a sentence that follows the reason.
    pub fn advice(&self) -> &'static str {
        match self {
            Self::BeforeHello { .. } => {
                "a node says Hello first on every connection; if this repeats, run the same fedbank version as the coordinator"
            }
            Self::Duplicate { .. }
            | Self::Aggregation(AggregationError::DuplicateContribution { .. }) => {
                "the first one counts and nothing was changed; nothing to do unless it repeats"
            }
            Self::Unexpected { .. } | Self::OutOfRound { .. } => {
                "it came after the job moved on (a retry, a reconnect or the job's end) and nothing was changed; the node answers the current request, nothing to do unless it repeats"
            }
            Self::NotAMember { .. } | Self::NotTheAuditor { .. } => {
                "the coordinator's job file does not give this node that role; compare the job files (`sha256sum`)"
            }
            Self::Unreadable { .. } => {
                "nothing was read from it; run the same fedbank version as the coordinator, and keep the node's log for the consortium's operator"
            }
            Self::Version { .. } | Self::WrongJob { .. } | Self::OtherData { .. } => {
                "see the coordinator's notice of not admitting it"
            }
            Self::BadKeyShare { .. }
            | Self::BadCeremony { .. }
            | Self::BadStatement { .. }
            | Self::BadAlert { .. }
            | Self::Aggregation(_) => {
                "it is not counted; check that the node runs the coordinator's fedbank version with its own key state, and give its trail to the consortium's operator"
            }
        }
    }

    /// The whole chain of causes: "contribution … rejected: expected … got …".
    pub fn with_causes(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    }
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
    /// A committee member was not admitted (another version of the job file or of the
    /// protocol): without it no key can be set up or no aggregate decrypted.
    #[error("committee member {member} was not admitted: {reason}; every member must run the same job file and fedbank version")]
    MemberNotAdmitted {
        /// The member.
        member: NodeId,
        /// Why.
        reason: String,
    },
    /// The private alert step could not complete.
    #[error("private alerts: {0}")]
    Alerts(String),
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
    /// Finished with this result.
    Finished(JobResult),
    /// Stopped.
    Failed(JobFailure),
}
