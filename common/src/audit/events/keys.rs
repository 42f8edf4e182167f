//! The key ceremony, as each role records it.

use super::trail_events;
use crate::ids::{JobId, NodeId};
use serde::{Deserialize, Serialize};

/// `key.setup`: one step of the key ceremony, by its `stage`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage", deny_unknown_fields)]
pub enum KeySetup {
    /// Coordinator: asked the committee for a key.
    #[serde(rename = "requested")]
    Requested {
        /// Job.
        job: JobId,
        /// Key epoch.
        key_epoch: u32,
        /// The joint key's public mask seed (hex).
        mask_seed: String,
        /// The committee asked.
        committee: Vec<NodeId>,
    },
    /// Coordinator: every member's signed commitment is in.
    #[serde(rename = "every member committed")]
    EveryMemberCommitted {
        /// Job.
        job: JobId,
        /// Key epoch.
        key_epoch: u32,
        /// Digest of the set of commitments (hex).
        commitments_digest: String,
    },
    /// Coordinator: the joint key was formed from every member's revealed share.
    #[serde(rename = "joint key formed")]
    JointKeyFormed {
        /// Job.
        job: JobId,
        /// Key epoch.
        key_epoch: u32,
        /// Members whose shares it holds.
        members: Vec<NodeId>,
        /// Digest of the joint public key (hex).
        joint_key_digest: String,
    },
    /// Member: sent its signed commitment to its public-key share.
    #[serde(rename = "commitment to the public-key share sent")]
    CommitmentSent {
        /// Job.
        job: JobId,
        /// Key epoch.
        key_epoch: u32,
        /// Digest of the key setup (hex).
        setup_digest: String,
        /// Digest of its public-key share (hex).
        share_digest: String,
    },
    /// Member: revealed its share against the set of commitments.
    #[serde(rename = "public-key share revealed")]
    ShareRevealed {
        /// Job.
        job: JobId,
        /// Key epoch.
        key_epoch: u32,
        /// Digest of the set of commitments (hex).
        commitments_digest: String,
        /// Digest of its public-key share (hex).
        share_digest: String,
    },
}

/// A member's share as a participant checked it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareDigest {
    /// Member.
    pub member: NodeId,
    /// Digest of its public-key share (hex).
    pub digest: String,
}

/// `key.accepted` (participant): it checked the ceremony and formed the joint key itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAccepted {
    /// Job.
    pub job: JobId,
    /// Key epoch.
    pub key_epoch: u32,
    /// Digest of the key setup (hex).
    pub setup_digest: String,
    /// Digest of the set of commitments (hex).
    pub commitments_digest: String,
    /// Each member's share.
    pub shares: Vec<ShareDigest>,
    /// Digest of the joint public key (hex).
    pub joint_key_digest: String,
}

/// `key.epoch_opened` (coordinator): the operator opened a new key epoch of the job
/// (`fedbank coordinator --new-key-epoch REASON`), because the coordinator lost its checkpoint
/// after the job's key was set up. The job runs again from its beginning under a fresh key
/// ceremony; its rounds are numbered after every round on record, and the committee's records of
/// earlier epochs still hold (docs/threat-model.md §4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEpochOpened {
    /// Job.
    pub job: JobId,
    /// The epoch opened.
    pub key_epoch: u32,
    /// The latest epoch set up before it.
    pub previous_epoch: u32,
    /// The first round number of the new epoch.
    pub first_round: u32,
    /// Rounds whose decryption was requested in earlier epochs.
    pub decrypted_rounds: Vec<u32>,
    /// Why, in the operator's words.
    pub reason: String,
}

trail_events! {
    KeySetup => KeySetup,
    KeyAccepted => KeyAccepted,
    KeyEpochOpened => KeyEpochOpened,
}
