//! # fedbank-participant
//!
//! The participant's side of secure aggregation:
//!
//! - [`Contributor`] encodes a participant's local statistics (bounds, scale, counted clipping,
//!   limbs) and encrypts them under the joint key; only the ciphertext leaves the participant.
//! - [`CommitteeMember`] is what a participant that sits on the key committee runs in addition:
//!   it holds a secret key share (on disk with owner-only permissions), checks every decryption
//!   request against its policy and its own record, and releases partial decryptions of
//!   aggregates only.
//!
//! It does not read customer files, train models or talk to the network; later layers feed it
//! statistics and carry its messages.

mod committee_member;
mod contribution;

pub use committee_member::{CommitteeMember, MemberError};
pub use contribution::{ContributionError, Contributor};
