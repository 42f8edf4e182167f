//! Messages between the coordinator and the key committee: the decryption request (summed masks
//! plus manifest, never a body) and the member's partial decryption.

use crate::digest::Digest;
use crate::ids::NodeId;
use crate::policy::Manifest;
use crate::secagg::{chunk_count, CryptoError, RingScalar};
use serde::{Deserialize, Serialize};

/// Label under which summed masks are digested for the manifest.
pub const MASK_DIGEST_LABEL: &str = "fedbank.aggregate-mask.v1";

/// What the coordinator sends a member: the manifest and the summed masks it describes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct DecryptionRequest<S: RingScalar> {
    /// What the aggregate is and who contributed.
    pub manifest: Manifest,
    /// The summed mask polynomials.
    pub masks: Vec<S>,
}

impl<S: RingScalar> DecryptionRequest<S> {
    /// Digest of the masks as sent, to compare with the manifest.
    pub fn mask_digest(&self) -> Digest {
        Digest::of_scalars(MASK_DIGEST_LABEL, &self.masks)
    }

    /// Checks that the mask length fits the manifest's value count and profile.
    pub fn validate(&self) -> Result<(), CryptoError> {
        self.manifest.profile.check_torus(S::BITS as u32)?;
        let ring = self.manifest.profile.ring();
        let values = usize::try_from(self.manifest.value_count).unwrap_or(usize::MAX);
        if values == 0 {
            return Err(CryptoError::Empty);
        }
        let expected = chunk_count(values, ring.polynomial_size) * ring.polynomial_size;
        if self.masks.len() != expected {
            return Err(CryptoError::WrongLength {
                what: "decryption request masks",
                expected,
                got: self.masks.len(),
            });
        }
        Ok(())
    }
}

/// A member's answer: its partial decryption of the aggregate named by the manifest digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct PartialDecryption<S: RingScalar> {
    /// The member.
    pub member: NodeId,
    /// Digest of the manifest it approved.
    pub manifest_digest: Digest,
    /// One value per encrypted value.
    pub values: Vec<S>,
}
