//! The messages of the consortium protocol and how a received frame is told apart by kind.
//!
//! ```text
//!   participant / member                         coordinator
//!   Hello {protocol, job, job digest,  ───────▶  admits if enrolled, the digest matches and
//!     data commitment}                            the data is what it first joined with
//!                                      ◀───────  Welcome
//!   (member) KeySetup                  ◀───────  KeySetup {seed, committee}
//!   (member) signed ShareCommitment    ───────▶
//!   (member) CommitmentSet             ◀───────  every member's signed commitment
//!   (member) RevealedShare (signed)    ───────▶
//!                                      ◀───────  KeyBundle (verified, joint key formed locally)
//!   per round:                         ◀───────  RoundRequest {round, attempt, kind}
//!   ContributionCommitment (signed     ───────▶  until all asked committed or the deadline
//!     statement: digests only)
//!                                      ◀───────  RevealRequest {roster of the commitments}
//!   Contribution {ct, signed reveal    ───────▶  sums until every listed one arrived or the
//!     against the roster}                         deadline (see [`crate::roster`])
//!   (member) DecryptionRequest         ◀───────  manifest + each signed statement and mask
//!   (member) PartialDecryption         ───────▶  combine, decode, next round
//!   (segment job) assign own customers ◀───────  JobReleased {the job's release record}
//!   (propensity job) score own hold-out ◀───────  JobReleased {the model}
//!   (compliance with alerts)           ◀───────  AlertRequest; AlertContribution ──▶ (see [`alerts`])
//!                                      ◀───────  Notice (finished / aborted)
//!   Notice (a message refused)         ◀───────▶  either way, with the reason ([`RefusalsTold`])
//! ```
//!
//! The auditor is a node too: Hello, then AlertKeys; it answers an AlertTally with AlertCounts.
//!
//! Every message is its own wire kind, so the transport applies a per-kind size limit before
//! reading a body. The sender's identity is never in a message: it comes from the connection's
//! verified certificate.

pub mod alerts;
mod messages;
mod refusal;

pub use alerts::{
    AlertContribution, AlertCounts, AlertKeyStatement, AlertKeys, AlertManifest, AlertRequest,
    AlertRule, AlertTally,
};
pub use messages::{
    Contribution, ContributionCommitment, DataCommitment, Hello, Inbound, JobReleased, Notice,
    NoticeKind, RevealRequest, RoundRequest, Welcome, PROTOCOL_VERSION,
};
pub use refusal::{RefusalsTold, MAX_REFUSAL_TEXT, REFUSALS_TOLD};
