//! # fedbank-participant
//!
//! A participant institution's node:
//!
//! - [`ParticipantMachine`]: the node's protocol as a plain state machine (Hello, key setup if on
//!   the committee, contributions per round, partial decryptions under policy).
//! - [`LocalTable`] and [`local_stats`]: the institution's own table and the statistics computed
//!   on it. Rows never leave the participant; only encrypted aggregates-to-be do.
//! - [`Contributor`] encodes a participant's local statistics (bounds, scale, counted clipping,
//!   limbs) and encrypts them under the joint key.
//! - [`CommitteeMember`] is what a participant that sits on the key committee runs in addition:
//!   it holds a secret key share (on disk with owner-only permissions), checks every decryption
//!   request against its policy and its own record, and releases partial decryptions of
//!   aggregates only.
//!
//! - [`customers`], [`rfm`] and [`LocalTable`]: the data sources a job reads — a labeled
//!   customer table (the propensity job), a transaction log summarized per customer (the
//!   segment job's RFM rows) and a customer table; the jobs' local steps themselves live in their
//!   folders in `fedbank-common` (`job::stats`, `job::segment`, `job::propensity`).
//! - [`contact_log`]: a marketing-contact log and consent table, and the declared rules
//!   evaluated over them (counts and rates; the local report stays at the institution).
//! - [`privacy_noise`]: its share of the Gaussian noise of a job with differential privacy, and
//!   its own accountant, which refuses rounds beyond the budget.
//!
//! It does not talk to the network; the shell in the `fedbank` binary carries its messages.

mod committee_member;
pub mod contact_log;
mod contribution;
pub mod customers;
pub mod local_stats;
mod local_table;
mod machine;
pub mod privacy_noise;
pub mod rfm;
pub mod scoring;
pub mod synthetic;

pub use committee_member::{CommitteeMember, MemberError, MemberFiles, MemberTerms};
pub use contribution::{ContributionError, Contributor};
pub use local_table::{LocalTable, TableError};
pub use machine::{
    Credentials, LocalData, NodeProgress, NodeStatus, NodeViolation, ParticipantMachine,
    ParticipantOutbound, ParticipantOutput, ParticipantProgress,
};
