//! The messages of private compliance alerts (docs/threat-model.md §6).
//!
//! ```text
//!   auditor      AlertKeys {compact public key, compressed server key,
//!                           its signed statement of the public key}   ──▶ coordinator
//!   coordinator  AlertRequest {round, public key, rules and limits,
//!                              the auditor's signed statement}        ──▶ each contributor
//!   participant  AlertContribution {round, packed encrypted rates}     ──▶ coordinator
//!   coordinator  AlertTally {manifest, one encrypted count per rule}   ──▶ auditor
//!   auditor      AlertCounts {manifest digest, counts}                 ──▶ coordinator
//! ```
//!
//! tfhe objects travel as tfhe's own versioned `safe_serialize` bytes inside these messages and
//! are read back with size limits and conformance checks ([`crate::alerts`]).

use crate::alerts::{
    MAX_AUDITOR_KEYS_BYTES, MAX_COUNT_BYTES, MAX_PUBLIC_KEY_BYTES, MAX_RATES_BYTES,
};
use crate::compliance_rules::MAX_RULES;
use crate::digest::Digest;
use crate::endorsement::{Signed, Statement};
use crate::ids::{JobId, NodeId};
use crate::wire::{ValidationError, WireKind, WireMessage};
use serde::{Deserialize, Serialize};

/// Room for a message's small fields next to its tfhe bytes.
const FIELDS: usize = 1 << 20;

pub use crate::alerts::AlertRule;

/// The auditor's keys: participants encrypt under the public key, the coordinator computes with
/// the server key; the client key stays with the auditor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertKeys {
    /// Job.
    pub job: JobId,
    /// tfhe `CompactPublicKey`.
    pub public_key: Vec<u8>,
    /// tfhe `CompressedServerKey`.
    pub server_key: Vec<u8>,
    /// The auditor's signed statement naming its public key.
    pub endorsement: Signed<AlertKeyStatement>,
}

/// What the auditor signs about its alert key: participants encrypt their rates only under a
/// key the job's certified auditor signed, never under one the coordinator chose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertKeyStatement {
    /// Job.
    pub job: JobId,
    /// Digest of the job file.
    pub job_digest: Digest,
    /// Digest of the compact public key (see [`crate::alerts::digest`]).
    pub public_key: Digest,
}

impl Statement for AlertKeyStatement {
    const KIND: &'static str = "alert key";
    fn digest(&self) -> Digest {
        Digest::builder("fedbank.alert-key-statement.v1")
            .bytes(self.job.as_str().as_bytes())
            .bytes(&self.job_digest.0)
            .bytes(&self.public_key.0)
            .finish()
    }
}

/// The coordinator's request for a contributor's encrypted rates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRequest {
    /// Job.
    pub job: JobId,
    /// Round number of the alert step.
    pub round: u32,
    /// The auditor's compact public key.
    pub public_key: Vec<u8>,
    /// The rules, in order, with their limits.
    pub rules: Vec<AlertRule>,
    /// The auditor's signed statement naming `public_key`.
    pub endorsement: Signed<AlertKeyStatement>,
}

/// A participant's rates, one per alert rule, as one packed compact list under the auditor's
/// key. Only the auditor could decrypt it, and it is only ever sent a sum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertContribution {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// tfhe `CompactCiphertextList` of `FheUint16` rates in basis points.
    pub rates: Vec<u8>,
}

/// What the auditor is asked to decrypt, and from whom it was summed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertManifest {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Rules and limits, in order.
    pub rules: Vec<AlertRule>,
    /// Contributors whose bits were added, sorted.
    pub contributors: Vec<NodeId>,
    /// Digest of each contributor's encrypted rates, in the same order.
    pub digests: Vec<Digest>,
    /// Digest of the public key the rates were encrypted under.
    pub public_key: Digest,
}

impl AlertManifest {
    /// The manifest's digest, as both trails record it.
    pub fn digest(&self) -> Digest {
        let mut b = Digest::builder("fedbank.alert-manifest.v1")
            .bytes(self.job.as_str().as_bytes())
            .bytes(&self.round.to_le_bytes())
            .bytes(&(self.rules.len() as u64).to_le_bytes());
        for r in &self.rules {
            b = b
                .bytes(r.rule.as_bytes())
                .bytes(&r.limit_basis_points.to_le_bytes());
        }
        b = b.bytes(&(self.contributors.len() as u64).to_le_bytes());
        for (c, d) in self.contributors.iter().zip(&self.digests) {
            b = b.bytes(c.as_str().as_bytes()).bytes(&d.0);
        }
        b.bytes(&self.public_key.0).finish()
    }
}

/// The coordinator's request to the auditor: per rule, the encrypted number of contributors
/// over the limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertTally {
    /// What was summed.
    pub manifest: AlertManifest,
    /// tfhe `FheUint16` per rule, in manifest order.
    pub counts: Vec<Vec<u8>>,
}

/// The auditor's answer: the decrypted counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertCounts {
    /// Job.
    pub job: JobId,
    /// Digest of the manifest decrypted.
    pub manifest: Digest,
    /// Institutions over the limit, per rule in manifest order.
    pub counts: Vec<u16>,
}

fn at_most(what: &'static str, got: usize, limit: usize) -> Result<(), ValidationError> {
    if got > limit {
        Err(ValidationError::TooLong { what, got, limit })
    } else {
        Ok(())
    }
}

impl WireMessage for AlertKeys {
    const KIND: WireKind = WireKind::AlertKeys;
    /// Version 2 carries the auditor's signed statement.
    const VERSION: u16 = 2;
    fn max_bytes() -> usize {
        MAX_AUDITOR_KEYS_BYTES + MAX_PUBLIC_KEY_BYTES + FIELDS
    }
    fn validate(&self) -> Result<(), ValidationError> {
        at_most(
            "public key bytes",
            self.public_key.len(),
            MAX_PUBLIC_KEY_BYTES,
        )?;
        at_most(
            "server key bytes",
            self.server_key.len(),
            MAX_AUDITOR_KEYS_BYTES,
        )
    }
}

impl WireMessage for AlertRequest {
    const KIND: WireKind = WireKind::AlertRequest;
    /// Version 2 carries the auditor's signed statement.
    const VERSION: u16 = 2;
    fn max_bytes() -> usize {
        MAX_PUBLIC_KEY_BYTES + FIELDS
    }
    fn validate(&self) -> Result<(), ValidationError> {
        at_most(
            "public key bytes",
            self.public_key.len(),
            MAX_PUBLIC_KEY_BYTES,
        )?;
        at_most("alert rules", self.rules.len(), MAX_RULES)
    }
}

impl WireMessage for AlertContribution {
    const KIND: WireKind = WireKind::AlertContribution;
    fn max_bytes() -> usize {
        MAX_RATES_BYTES + FIELDS
    }
    fn validate(&self) -> Result<(), ValidationError> {
        at_most("rate bytes", self.rates.len(), MAX_RATES_BYTES)
    }
}

impl WireMessage for AlertTally {
    const KIND: WireKind = WireKind::AlertTally;
    fn max_bytes() -> usize {
        MAX_RULES * MAX_COUNT_BYTES + FIELDS
    }
    fn validate(&self) -> Result<(), ValidationError> {
        at_most("alert rules", self.manifest.rules.len(), MAX_RULES)?;
        at_most("counts", self.counts.len(), MAX_RULES)?;
        for c in &self.counts {
            at_most("count bytes", c.len(), MAX_COUNT_BYTES)?;
        }
        Ok(())
    }
}

impl WireMessage for AlertCounts {
    const KIND: WireKind = WireKind::AlertCounts;
    fn validate(&self) -> Result<(), ValidationError> {
        at_most("counts", self.counts.len(), MAX_RULES)
    }
}
