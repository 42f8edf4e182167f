//! One type per trail event kind. Writers build these, never a JSON map by hand; the verifier,
//! the cross-check and the audit report read them back with [`AuditEvent::read`], so a field
//! renamed in one place is a compile error or a named decoding failure, not a silently dropped
//! cross-check.
//!
//! The stored form is unchanged: a trail line's `fields` is the event's JSON object
//! (`serde_json`, keys sorted). Every event type denies unknown fields when read.
//!
//! - `run`: the trail, the job and the nodes (opened, started, resumed, joined, refused
//!   messages, completed, failed) and the files a node wrote;
//! - `keys`: the key ceremony as each role records it;
//! - `rounds`: a round at the coordinator and a participant (started, roster, contributions,
//!   drop-outs, decryption, completion);
//! - `local`: what stays at a participant (its noise, rules evaluated, segments assigned, the
//!   model received);
//! - `alerts`: private compliance alerts.

mod alerts;
mod keys;
mod local;
mod rounds;
mod run;

pub use alerts::*;
pub use keys::*;
pub use local::*;
pub use rounds::*;
pub use run::*;

use super::{AuditEvent, EventKind};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

/// A trail event kind's fields, as one type.
pub trait TrailEvent: Serialize + DeserializeOwned {
    /// The kind this type is recorded as.
    const KIND: EventKind;

    /// The fields as stored in the trail. Every event type is a struct of strings, numbers,
    /// booleans, lists and string-keyed maps, which `serde_json` encodes without fail (a
    /// non-finite number becomes `null`).
    fn fields(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(fields)) => fields,
            other => {
                let mut fields = Map::new();
                fields.insert(
                    "unencodable".into(),
                    Value::from(format!("{:?}", other.map(|_| "not an object"))),
                );
                fields
            }
        }
    }
}

/// An event a machine hands its shell for the trail: its kind and its fields, built from a
/// [`TrailEvent`] only.
#[derive(Clone, Debug, PartialEq)]
pub struct TrailEntry {
    /// Event kind.
    pub kind: EventKind,
    /// Fields.
    pub fields: Map<String, Value>,
}

impl TrailEntry {
    /// The entry recording `event`.
    pub fn of<E: TrailEvent>(event: &E) -> Self {
        TrailEntry {
            kind: E::KIND,
            fields: event.fields(),
        }
    }
}

/// A trail line that does not hold the event its kind says.
#[derive(Debug, thiserror::Error)]
#[error("event {seq} ({kind}) of {writer}'s trail does not have the fields of its kind")]
pub struct UnreadableEvent {
    /// Position in the trail.
    pub seq: u64,
    /// Event kind.
    pub kind: String,
    /// Writer of the trail.
    pub writer: String,
    /// The decoder's error.
    #[source]
    pub source: serde_json::Error,
}

impl AuditEvent {
    /// This event as `E`: `None` when it is of another kind, an error when it is of `E`'s kind
    /// but its fields do not decode.
    pub fn read<E: TrailEvent>(&self) -> Option<Result<E, UnreadableEvent>> {
        if self.event != E::KIND.name() {
            return None;
        }
        Some(
            serde_json::from_value(Value::Object(self.fields.clone())).map_err(|source| {
                UnreadableEvent {
                    seq: self.seq,
                    kind: self.event.clone(),
                    writer: self.writer.clone(),
                    source,
                }
            }),
        )
    }
}

/// The events of `E`'s kind among `events` that decode (an undecodable one is reported by the
/// verifier, which checks every event against its kind).
pub fn events_of<'a, E: TrailEvent + 'a>(
    events: impl IntoIterator<Item = &'a AuditEvent> + 'a,
) -> impl Iterator<Item = E> + 'a {
    events
        .into_iter()
        .filter_map(|e| e.read::<E>())
        .filter_map(Result::ok)
}

/// Checks that `event`'s fields are those of its kind; `Ok` for a kind this build does not
/// know (the verifier reports unknown kinds itself).
pub fn check_fields(event: &AuditEvent) -> Result<(), UnreadableEvent> {
    fn check<E: TrailEvent>(event: &AuditEvent) -> Result<(), UnreadableEvent> {
        event.read::<E>().map_or(Ok(()), |r| r.map(|_| ()))
    }
    let Some(kind) = EventKind::from_name(&event.event) else {
        return Ok(());
    };
    use EventKind as K;
    match kind {
        K::TrailOpened => check::<TrailOpened>(event),
        K::JobStarted => check::<JobStarted>(event),
        K::JobResumed => check::<JobResumed>(event),
        K::KeySetup => check::<KeySetup>(event),
        K::KeyAccepted => check::<KeyAccepted>(event),
        K::KeyEpochOpened => check::<KeyEpochOpened>(event),
        K::MessageRefused => check::<MessageRefused>(event),
        K::Joined => check::<Joined>(event),
        K::RoundStarted => check::<RoundStarted>(event),
        K::RosterFixed => check::<RosterFixed>(event),
        K::ContributionReceived => check::<ContributionReceived>(event),
        K::ContributionSent => check::<ContributionSent>(event),
        K::ParticipantDropped => check::<ParticipantDropped>(event),
        K::DecryptionRequested => check::<DecryptionRequested>(event),
        K::DecryptionReleased => check::<DecryptionReleased>(event),
        K::DecryptionRefused => check::<DecryptionRefused>(event),
        K::DecryptionRetried => check::<DecryptionRetried>(event),
        K::DecryptionApproved => check::<DecryptionApproved>(event),
        K::AggregateDecrypted => check::<AggregateDecrypted>(event),
        K::RoundCompleted => check::<RoundCompleted>(event),
        K::SegmentsAssigned => check::<SegmentsAssigned>(event),
        K::ModelReceived => check::<ModelReceived>(event),
        K::PrivacySpent => check::<PrivacySpent>(event),
        K::RulesEvaluated => check::<RulesEvaluated>(event),
        K::AlertKeys => check::<AlertKeys>(event),
        K::AlertSent => check::<AlertSent>(event),
        K::AlertReceived => check::<AlertReceived>(event),
        K::AlertTallyRequested => check::<AlertTallyRequested>(event),
        K::AlertDecrypted => check::<AlertDecrypted>(event),
        K::AlertRefused => check::<AlertRefused>(event),
        K::JobCompleted => check::<JobCompleted>(event),
        K::JobFailed => check::<JobFailed>(event),
        K::ArtifactWritten => check::<ArtifactWritten>(event),
        K::JobEnded => check::<JobEnded>(event),
        K::CoordinatorRestarted => check::<CoordinatorRestarted>(event),
        K::TrailRepaired => check::<TrailRepaired>(event),
    }
}

/// Implements [`TrailEvent`] for each `Type => Kind`.
macro_rules! trail_events {
    ($($ty:ty => $kind:ident),* $(,)?) => {
        $(impl $crate::audit::events::TrailEvent for $ty {
            const KIND: $crate::audit::EventKind = $crate::audit::EventKind::$kind;
        })*
    };
}
use trail_events;

#[cfg(test)]
mod tests;
