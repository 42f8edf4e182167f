//! Protocol message types and the dispatch of a received frame.

use super::alerts::{AlertContribution, AlertCounts, AlertKeys, AlertRequest, AlertTally};
use crate::committee::{ContributionStatement, DecryptionRequest, PartialDecryption};
use crate::digest::Digest;
use crate::endorsement::Signed;
use crate::ids::JobId;
use crate::job::RoundKind;
use crate::key_ceremony::{CommitmentSet, KeyBundle, RevealedShare, ShareCommitment};
use crate::roster::{RevealStatement, Roster};
use crate::secagg::{Ciphertext, KeySetup, Profile, RingScalar};
use crate::wire::{self, ValidationError, WireError, WireKind, WireMessage};
use serde::{Deserialize, Serialize};

/// Version of this protocol, checked in [`Hello`] (the ALPN, `fedbank/1`, names only the
/// protocol family). Version 2 added `ModelReleased` and the FedAvg round (which moved the wire
/// index of later round kinds), so a version-1 node is refused at Hello rather than misreading a
/// round. Version 3 added the
/// compliance round and the alert messages. Version 4 replaced the joint key by the signed key
/// ceremony (commitments, revealed shares, the key bundle that participants verify) and made
/// every contribution carry its signed statement and every decryption request its evidence.
/// Version 5 split a contribution into a signed commitment, the coordinator's roster and the
/// reveal against it, so that no mask is chosen after the honest ones. Version 6 encodes a round
/// kind by its explicit tag ([`crate::job::RoundTag`]) instead of its position in the enum, so
/// that a new round kind never again moves another's encoding. Version 7 carries the stats job's
/// rounds as rounds of a job kind behind the `Job` trait (tags 0x0101 and 0x0102, the job's own
/// parameter bytes). Version 8 did the same for the segment and propensity rounds, dropped the
/// round request's separate reference day and replaced the segment and model releases by
/// `JobReleased`. Version 9 moves the compliance round behind the trait (tag 0x0410; 0x0401 is
/// retired), so every round is now a job kind's own. Version 10 tells a joining node which
/// restart of the coordinator it joined (`Welcome::restart`), and every round of a job without
/// differential privacy carries the count of clipped values after its kind's quantities.
/// Version 11 has a participant's Hello commit to its data ([`DataCommitment`]). Version 12
/// tells a node every message of its that the coordinator refused
/// ([`NoticeKind::MessageRefused`]).
pub const PROTOCOL_VERSION: u16 = 12;

/// First message of a node: which job it has agreed to, by digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version of the node.
    pub protocol: u16,
    /// Job the node agreed to.
    pub job: JobId,
    /// Digest of the node's copy of the job file.
    pub job_digest: Digest,
    /// A participant's data for the job (none for the auditor): the coordinator keeps the
    /// first it hears from each participant and refuses a later Hello with other data.
    pub data: Option<DataCommitment>,
}

/// What data a participant runs the job on, as its operator can check it: the SHA-256 of its
/// data file (and consent table), as `sha256sum` prints it, and the rows it read. A participant
/// restarted on another file is refused instead of being counted as the same institution with
/// other customers. It is the participant's own statement, not a proof: it catches an
/// operator's mistake, not a lying institution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataCommitment {
    /// Rows read: customers of a customer table or a transaction log, contacts of a contact log.
    pub rows: u64,
    /// SHA-256 of the data file, hex.
    pub sha256: String,
    /// SHA-256 of the consent table, hex (compliance jobs).
    pub consent_sha256: Option<String>,
}

impl std::fmt::Display for DataCommitment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |h: &str| h.chars().take(12).collect::<String>();
        write!(
            f,
            "{} rows, data sha256 {}…",
            self.rows,
            short(&self.sha256)
        )?;
        if let Some(consent) = &self.consent_sha256 {
            write!(f, ", consent sha256 {}…", short(consent))?;
        }
        Ok(())
    }
}

/// The coordinator's answer to an accepted [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Job.
    pub job: JobId,
    /// Crypto profile.
    pub profile: Profile,
    /// How many times the coordinator has restarted this job from its checkpoint (0 for a
    /// coordinator that has run since the job started): a node records a restart it sees.
    pub restart: u32,
}

/// The coordinator's request for one round's contribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundRequest {
    /// Job.
    pub job: JobId,
    /// Round number, from 1.
    pub round: u32,
    /// Attempt of this round, from 0 (a round with too few contributors is retried).
    pub attempt: u32,
    /// What to compute.
    pub kind: RoundKind,
}

/// A participant's commitment to its contribution to a round: the signed statement naming the
/// ciphertext and mask by digest. The ciphertext follows only against a [`Roster`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContributionCommitment {
    /// Round.
    pub round: u32,
    /// Attempt.
    pub attempt: u32,
    /// The participant's signed statement of what its ciphertext is.
    pub statement: Signed<ContributionStatement>,
}

/// The coordinator's roster of a round attempt's commitments, against which participants
/// reveal their ciphertexts (see [`crate::roster`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealRequest {
    /// The roster.
    pub roster: Roster,
}

/// A participant's encrypted contribution to a round, revealed against the round's roster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Contribution<S: RingScalar> {
    /// Round.
    pub round: u32,
    /// Attempt.
    pub attempt: u32,
    /// The encrypted statistics.
    pub ciphertext: Ciphertext<S>,
    /// The participant's signed reveal: its committed statement, against the roster.
    pub reveal: Signed<RevealStatement>,
}

/// What a job behind the `Job` trait releases to participants at the end, in the job's own
/// canonical encoding: the segment job's centroids and labels, so that each participant assigns
/// its own customers locally; the propensity job's model, so that each scores its own hold-out
/// customers with it. What a participant makes of it never leaves the participant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobReleased {
    /// Job.
    pub job: JobId,
    /// The job's release record (see `job::CoordinatorStep::release`), at most
    /// `job::MAX_ROUND_PARAMETERS` bytes.
    pub release: Vec<u8>,
}

/// What a notice reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoticeKind {
    /// A member refused a decryption request.
    Refused,
    /// A participant cannot contribute to a round (bad local input); nothing was sent.
    CannotContribute,
    /// The job finished.
    Finished,
    /// The job was aborted.
    Aborted,
    /// The coordinator did not admit the node (another version of the job file, another
    /// protocol version): the node stops, printing why and what to do.
    NotAdmitted,
    /// The coordinator refused one of the node's messages and changed nothing; the text says
    /// which, why and what to do. The node goes on and prints it.
    MessageRefused,
}

/// A short status message in either direction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Job.
    pub job: JobId,
    /// Round concerned, if any.
    pub round: Option<u32>,
    /// What it reports.
    pub kind: NoticeKind,
    /// Human-readable detail.
    pub text: String,
}

impl Notice {
    /// The text as one line to print: it is the peer's, so control characters (newlines,
    /// terminal escapes) are shown as spaces.
    pub fn printable_text(&self) -> String {
        self.text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    }
}

macro_rules! small_message {
    ($t:ty, $kind:expr) => {
        impl WireMessage for $t {
            const KIND: WireKind = $kind;
        }
    };
}

small_message!(Hello, WireKind::Hello);
small_message!(Welcome, WireKind::Welcome);
small_message!(RoundRequest, WireKind::RoundRequest);
small_message!(Notice, WireKind::Notice);
small_message!(JobReleased, WireKind::Released);
small_message!(ContributionCommitment, WireKind::ContributionCommitment);

impl WireMessage for RevealRequest {
    const KIND: WireKind = WireKind::RevealRequest;
    fn validate(&self) -> Result<(), ValidationError> {
        if self.roster.entries.len() > wire::MAX_CONTRIBUTORS {
            return Err(ValidationError::TooLong {
                what: "roster entries",
                got: self.roster.entries.len(),
                limit: wire::MAX_CONTRIBUTORS,
            });
        }
        Ok(())
    }
}

impl<S: RingScalar> WireMessage for Contribution<S> {
    const KIND: WireKind = WireKind::Contribution;
    /// Version 2 carries the signed statement; version 3 only the reveal (the statement went
    /// ahead as a [`ContributionCommitment`]).
    const VERSION: u16 = 3;
    const TORUS_BITS: u8 = S::BITS as u8;
    fn max_bytes() -> usize {
        <Ciphertext<S> as WireMessage>::max_bytes()
    }
    fn validate(&self) -> Result<(), ValidationError> {
        WireMessage::validate(&self.ciphertext)
    }
}

/// Any message, decoded according to the kind in its header.
#[derive(Clone, Debug)]
pub enum Inbound<S: RingScalar> {
    /// [`Hello`].
    Hello(Hello),
    /// [`Welcome`].
    Welcome(Welcome),
    /// [`KeySetup`].
    KeySetup(KeySetup),
    /// A member's signed [`ShareCommitment`].
    Commitment(Signed<ShareCommitment>),
    /// [`CommitmentSet`].
    Commitments(CommitmentSet),
    /// [`RevealedShare`].
    KeyShare(RevealedShare<S>),
    /// [`KeyBundle`].
    KeyBundle(KeyBundle<S>),
    /// [`RoundRequest`].
    Round(RoundRequest),
    /// [`ContributionCommitment`].
    ContributionCommitment(ContributionCommitment),
    /// [`RevealRequest`].
    RevealRequest(RevealRequest),
    /// [`Contribution`].
    Contribution(Contribution<S>),
    /// [`DecryptionRequest`].
    Decrypt(DecryptionRequest<S>),
    /// [`PartialDecryption`].
    Partial(PartialDecryption<S>),
    /// [`Notice`].
    Notice(Notice),
    /// [`JobReleased`].
    Released(JobReleased),
    /// [`AlertKeys`].
    AlertKeys(AlertKeys),
    /// [`AlertRequest`].
    AlertRequest(AlertRequest),
    /// [`AlertContribution`].
    AlertContribution(AlertContribution),
    /// [`AlertTally`].
    AlertTally(AlertTally),
    /// [`AlertCounts`].
    AlertCounts(AlertCounts),
}

impl<S: RingScalar> Inbound<S> {
    /// Largest body accepted for a kind byte (0 for kinds that never travel between nodes).
    pub fn limit(kind: u8) -> usize {
        match WireKind::from_byte(kind) {
            Some(WireKind::Contribution) => <Contribution<S> as WireMessage>::max_bytes(),
            Some(WireKind::DecryptionRequest) => <DecryptionRequest<S> as WireMessage>::max_bytes(),
            Some(WireKind::PartialDecryption) => <PartialDecryption<S> as WireMessage>::max_bytes(),
            Some(WireKind::KeyBundle) => <KeyBundle<S> as WireMessage>::max_bytes(),
            Some(WireKind::RevealedShare) => <RevealedShare<S> as WireMessage>::max_bytes(),
            Some(WireKind::ShareCommitment) => {
                <Signed<ShareCommitment> as WireMessage>::max_bytes()
            }
            Some(WireKind::CommitmentSet) => <CommitmentSet as WireMessage>::max_bytes(),
            Some(WireKind::AlertKeys) => <AlertKeys as WireMessage>::max_bytes(),
            Some(WireKind::RevealRequest) => <RevealRequest as WireMessage>::max_bytes(),
            Some(WireKind::AlertRequest) => <AlertRequest as WireMessage>::max_bytes(),
            Some(WireKind::AlertContribution) => <AlertContribution as WireMessage>::max_bytes(),
            Some(WireKind::AlertTally) => <AlertTally as WireMessage>::max_bytes(),
            Some(WireKind::AlertCounts) => <AlertCounts as WireMessage>::max_bytes(),
            Some(
                WireKind::Hello
                | WireKind::Welcome
                | WireKind::RoundRequest
                | WireKind::ContributionCommitment
                | WireKind::Notice
                | WireKind::KeySetup,
            ) => 1 << 20,
            // A release record of up to `job::MAX_ROUND_PARAMETERS` bytes and its job id.
            Some(WireKind::Released) => crate::job::MAX_ROUND_PARAMETERS + (64 << 10),
            _ => 0,
        }
    }

    /// Decodes a frame by the kind in its header.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let kind = bytes.get(4).copied().and_then(WireKind::from_byte);
        Ok(match kind {
            Some(WireKind::Hello) => Inbound::Hello(wire::decode(bytes)?),
            Some(WireKind::Welcome) => Inbound::Welcome(wire::decode(bytes)?),
            Some(WireKind::KeySetup) => Inbound::KeySetup(wire::decode(bytes)?),
            Some(WireKind::ShareCommitment) => Inbound::Commitment(wire::decode(bytes)?),
            Some(WireKind::CommitmentSet) => Inbound::Commitments(wire::decode(bytes)?),
            Some(WireKind::RevealedShare) => Inbound::KeyShare(wire::decode(bytes)?),
            Some(WireKind::KeyBundle) => Inbound::KeyBundle(wire::decode(bytes)?),
            Some(WireKind::RoundRequest) => Inbound::Round(wire::decode(bytes)?),
            Some(WireKind::ContributionCommitment) => {
                Inbound::ContributionCommitment(wire::decode(bytes)?)
            }
            Some(WireKind::RevealRequest) => Inbound::RevealRequest(wire::decode(bytes)?),
            Some(WireKind::Contribution) => Inbound::Contribution(wire::decode(bytes)?),
            Some(WireKind::DecryptionRequest) => Inbound::Decrypt(wire::decode(bytes)?),
            Some(WireKind::PartialDecryption) => Inbound::Partial(wire::decode(bytes)?),
            Some(WireKind::Notice) => Inbound::Notice(wire::decode(bytes)?),
            Some(WireKind::Released) => Inbound::Released(wire::decode(bytes)?),
            Some(WireKind::AlertKeys) => Inbound::AlertKeys(wire::decode(bytes)?),
            Some(WireKind::AlertRequest) => Inbound::AlertRequest(wire::decode(bytes)?),
            Some(WireKind::AlertContribution) => Inbound::AlertContribution(wire::decode(bytes)?),
            Some(WireKind::AlertTally) => Inbound::AlertTally(wire::decode(bytes)?),
            Some(WireKind::AlertCounts) => Inbound::AlertCounts(wire::decode(bytes)?),
            _ => {
                return Err(WireError::UnexpectedKind {
                    found: bytes.get(4).copied().unwrap_or(0),
                })
            }
        })
    }

    /// Short name of the message, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Inbound::Hello(_) => "Hello",
            Inbound::Welcome(_) => "Welcome",
            Inbound::KeySetup(_) => "KeySetup",
            Inbound::Commitment(_) => "ShareCommitment",
            Inbound::Commitments(_) => "CommitmentSet",
            Inbound::KeyShare(_) => "RevealedShare",
            Inbound::KeyBundle(_) => "KeyBundle",
            Inbound::Round(_) => "RoundRequest",
            Inbound::ContributionCommitment(_) => "ContributionCommitment",
            Inbound::RevealRequest(_) => "RevealRequest",
            Inbound::Contribution(_) => "Contribution",
            Inbound::Decrypt(_) => "DecryptionRequest",
            Inbound::Partial(_) => "PartialDecryption",
            Inbound::Notice(_) => "Notice",
            Inbound::Released(_) => "JobReleased",
            Inbound::AlertKeys(_) => "AlertKeys",
            Inbound::AlertRequest(_) => "AlertRequest",
            Inbound::AlertContribution(_) => "AlertContribution",
            Inbound::AlertTally(_) => "AlertTally",
            Inbound::AlertCounts(_) => "AlertCounts",
        }
    }
}
