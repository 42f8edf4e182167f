//! One trail event and its canonical hash.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `prev` of the first event.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Event types a trail records. Stored as dotted strings so that auditors can read them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// First event: the writer, its role and public key.
    TrailOpened,
    /// Job start with the configuration digest.
    JobStarted,
    /// A restarted coordinator resumed the job from its checkpoint.
    JobResumed,
    /// Key setup published / joint key formed.
    KeySetup,
    /// A participant checked the key ceremony and accepted the joint key (its digest).
    KeyAccepted,
    /// A node refused a message from the coordinator (the reason).
    MessageRefused,
    /// A node joined.
    Joined,
    /// A round started.
    RoundStarted,
    /// The coordinator fixed a round's roster of committed contributions.
    RosterFixed,
    /// The coordinator received a contribution.
    ContributionReceived,
    /// A participant sent a contribution.
    ContributionSent,
    /// A participant was left out of a round.
    ParticipantDropped,
    /// The coordinator asked the committee to decrypt.
    DecryptionRequested,
    /// A member approved and released a partial decryption.
    DecryptionReleased,
    /// A member refused a decryption.
    DecryptionRefused,
    /// A member went away during a decryption; the round is run again.
    DecryptionRetried,
    /// The coordinator received a member's partial decryption.
    DecryptionApproved,
    /// An aggregate was decrypted.
    AggregateDecrypted,
    /// A round ended.
    RoundCompleted,
    /// A participant assigned its own customers to the released segments (locally).
    SegmentsAssigned,
    /// A participant received the released model (and computed its own figures locally).
    ModelReceived,
    /// Differential privacy: the noise a round's aggregate carries and the budget spent so far.
    PrivacySpent,
    /// Compliance: a participant evaluated the rules over its own contact log (counts only).
    RulesEvaluated,
    /// The auditor published its alert keys / the coordinator accepted them.
    AlertKeys,
    /// A participant sent its encrypted rates.
    AlertSent,
    /// The coordinator received a participant's encrypted rates and compared them.
    AlertReceived,
    /// The coordinator asked the auditor to decrypt the per-rule counts.
    AlertTallyRequested,
    /// The auditor decrypted the per-rule counts (auditor), or the coordinator received them.
    AlertDecrypted,
    /// The auditor refused to decrypt a tally.
    AlertRefused,
    /// Results were written.
    JobCompleted,
    /// The job failed.
    JobFailed,
}

impl EventKind {
    /// Every kind, in the order above.
    pub const ALL: [EventKind; 31] = {
        use EventKind::*;
        [
            TrailOpened,
            JobStarted,
            JobResumed,
            KeySetup,
            KeyAccepted,
            MessageRefused,
            Joined,
            RoundStarted,
            RosterFixed,
            ContributionReceived,
            ContributionSent,
            ParticipantDropped,
            DecryptionRequested,
            DecryptionReleased,
            DecryptionRefused,
            DecryptionRetried,
            DecryptionApproved,
            AggregateDecrypted,
            RoundCompleted,
            SegmentsAssigned,
            ModelReceived,
            PrivacySpent,
            RulesEvaluated,
            AlertKeys,
            AlertSent,
            AlertReceived,
            AlertTallyRequested,
            AlertDecrypted,
            AlertRefused,
            JobCompleted,
            JobFailed,
        ]
    };

    /// The kind stored as `name`, if this build knows it.
    pub fn from_name(name: &str) -> Option<EventKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The dotted name stored in the trail.
    pub const fn name(self) -> &'static str {
        use EventKind::*;
        match self {
            TrailOpened => "trail.opened",
            JobStarted => "job.started",
            JobResumed => "job.resumed",
            KeySetup => "key.setup",
            KeyAccepted => "key.accepted",
            MessageRefused => "message.refused",
            Joined => "node.joined",
            RoundStarted => "round.started",
            RosterFixed => "roster.fixed",
            ContributionReceived => "contribution.received",
            ContributionSent => "contribution.sent",
            ParticipantDropped => "participant.dropped",
            DecryptionRequested => "decryption.requested",
            DecryptionReleased => "decryption.released",
            DecryptionRefused => "decryption.refused",
            DecryptionRetried => "decryption.retried",
            DecryptionApproved => "decryption.approved",
            AggregateDecrypted => "aggregate.decrypted",
            RoundCompleted => "round.completed",
            SegmentsAssigned => "segments.assigned",
            ModelReceived => "model.received",
            PrivacySpent => "privacy.spent",
            RulesEvaluated => "rules.evaluated",
            AlertKeys => "alert.keys",
            AlertSent => "alert.sent",
            AlertReceived => "alert.received",
            AlertTallyRequested => "alert.tally_requested",
            AlertDecrypted => "alert.decrypted",
            AlertRefused => "alert.refused",
            JobCompleted => "job.completed",
            JobFailed => "job.failed",
        }
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
