//! One trail event and its canonical hash.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `prev` of the first event.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Declares [`EventKind`] from one list: each kind, its documentation and the dotted name
/// stored in the trail, so that [`EventKind::ALL`] and [`EventKind::name`] cannot miss one.
macro_rules! event_kinds {
    ($($(#[$doc:meta])* $kind:ident => $name:literal,)*) => {
        /// Event types a trail records. Stored as dotted strings so that auditors can read them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum EventKind {
            $($(#[$doc])* $kind,)*
        }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$kind),*];

            /// The dotted name stored in the trail.
            pub const fn name(self) -> &'static str {
                match self {
                    $(EventKind::$kind => $name,)*
                }
            }
        }
    };
}

event_kinds! {
    /// First event: the writer, its role and public key.
    TrailOpened => "trail.opened",
    /// Job start with the configuration digest.
    JobStarted => "job.started",
    /// A restarted coordinator resumed the job from its checkpoint.
    JobResumed => "job.resumed",
    /// Key setup published / joint key formed.
    KeySetup => "key.setup",
    /// A participant checked the key ceremony and accepted the joint key (its digest).
    KeyAccepted => "key.accepted",
    /// The operator opened a new key epoch of a job whose checkpoint was lost.
    KeyEpochOpened => "key.epoch_opened",
    /// A node refused a message from the coordinator (the reason).
    MessageRefused => "message.refused",
    /// A node joined.
    Joined => "node.joined",
    /// A round started.
    RoundStarted => "round.started",
    /// The coordinator fixed a round's roster of committed contributions.
    RosterFixed => "roster.fixed",
    /// The coordinator received a contribution.
    ContributionReceived => "contribution.received",
    /// A participant sent a contribution.
    ContributionSent => "contribution.sent",
    /// A participant was left out of a round.
    ParticipantDropped => "participant.dropped",
    /// The coordinator asked the committee to decrypt.
    DecryptionRequested => "decryption.requested",
    /// A member approved and released a partial decryption.
    DecryptionReleased => "decryption.released",
    /// A member refused a decryption.
    DecryptionRefused => "decryption.refused",
    /// A member went away during a decryption; the round is run again.
    DecryptionRetried => "decryption.retried",
    /// The coordinator received a member's partial decryption.
    DecryptionApproved => "decryption.approved",
    /// An aggregate was decrypted.
    AggregateDecrypted => "aggregate.decrypted",
    /// A round ended.
    RoundCompleted => "round.completed",
    /// A participant assigned its own customers to the released segments (locally).
    SegmentsAssigned => "segments.assigned",
    /// A participant received the released model (and computed its own figures locally).
    ModelReceived => "model.received",
    /// Differential privacy: the noise a round's aggregate carries and the budget spent so far.
    PrivacySpent => "privacy.spent",
    /// Compliance: a participant evaluated the rules over its own contact log (counts only).
    RulesEvaluated => "rules.evaluated",
    /// The auditor published its alert keys / the coordinator accepted them.
    AlertKeys => "alert.keys",
    /// A participant sent its encrypted rates.
    AlertSent => "alert.sent",
    /// The coordinator received a participant's encrypted rates and compared them.
    AlertReceived => "alert.received",
    /// The coordinator asked the auditor to decrypt the per-rule counts.
    AlertTallyRequested => "alert.tally_requested",
    /// The auditor decrypted the per-rule counts (auditor), or the coordinator received them.
    AlertDecrypted => "alert.decrypted",
    /// The auditor refused to decrypt a tally.
    AlertRefused => "alert.refused",
    /// Results were written.
    JobCompleted => "job.completed",
    /// The job failed.
    JobFailed => "job.failed",
    /// A participant, member or auditor was told the job's outcome by the coordinator.
    JobEnded => "job.ended",
    /// A node wrote a file of the run (the result, a report, a local output): its SHA-256.
    ArtifactWritten => "artifact.written",
    /// A node joined a coordinator that had restarted from its checkpoint.
    CoordinatorRestarted => "coordinator.restarted",
    /// A node repaired its trail's partial last line when it opened it again.
    TrailRepaired => "trail.repaired",
}

impl EventKind {
    /// The kind stored as `name`, if this build knows it.
    pub fn from_name(name: &str) -> Option<EventKind> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }
}

/// One line of a trail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    /// Position in the trail, from 0.
    pub seq: u64,
    /// UTC time, RFC 3339.
    pub time: String,
    /// Node that wrote the trail.
    pub writer: String,
    /// Event type (see [`EventKind::name`]).
    pub event: String,
    /// The event's fields.
    pub fields: Map<String, Value>,
    /// Hash of the previous event (hex), [`GENESIS_PREV`] for the first.
    pub prev: String,
    /// SHA-256 (hex) of the canonical encoding of everything above.
    pub hash: String,
    /// Ed25519 signature (hex) of the hash bytes by the writer.
    pub signature: String,
}

#[derive(Serialize)]
struct Unsigned<'a> {
    seq: u64,
    time: &'a str,
    writer: &'a str,
    event: &'a str,
    fields: &'a Map<String, Value>,
    prev: &'a str,
}

impl AuditEvent {
    /// The hash this event should carry: SHA-256 over the canonical JSON of its content
    /// (serde_json writes struct fields in order and object keys sorted).
    pub fn compute_hash(&self) -> Result<String, crate::digest::EncodingFailed> {
        let unsigned = Unsigned {
            seq: self.seq,
            time: &self.time,
            writer: &self.writer,
            event: &self.event,
            fields: &self.fields,
            prev: &self.prev,
        };
        crate::digest::Digest::of_json("fedbank.audit-event.v1", &unsigned).map(|d| d.to_hex())
    }
}
