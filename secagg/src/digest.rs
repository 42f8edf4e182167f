//! SHA-256 digests that name ciphertexts, manifests and masks in manifests and audit events.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// An object that could not be encoded, so it has no digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode the object to digest ({label}): {reason}")]
pub struct EncodingFailed {
    /// The digest's label.
    pub label: String,
    /// The encoder's error.
    pub reason: String,
}

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Digest of a byte string, with a domain-separation label so that digests of different
    /// kinds of object can never be confused.
    pub fn of(label: &str, bytes: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update((label.len() as u64).to_le_bytes());
        hasher.update(label.as_bytes());
        hasher.update(bytes);
        Self(hasher.finalize().into())
    }

    /// Digest of `value`'s canonical (bincode) encoding. An encoding that fails is an error,
    /// never an empty string that two different objects would share a digest over.
    pub fn of_encoded<T: Serialize>(label: &str, value: &T) -> Result<Self, EncodingFailed> {
        crate::canonical::encode_body(value)
            .map(|bytes| Self::of(label, &bytes))
            .map_err(|e| EncodingFailed {
                label: label.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Digest of `value`'s JSON encoding (for objects written as JSON, such as result files).
    pub fn of_json<T: Serialize>(label: &str, value: &T) -> Result<Self, EncodingFailed> {
        serde_json::to_vec(value)
            .map(|bytes| Self::of(label, &bytes))
            .map_err(|e| EncodingFailed {
                label: label.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Digest of a slice of ring elements, as little-endian bytes.
    pub fn of_scalars<S: crate::RingScalar>(label: &str, scalars: &[S]) -> Self {
        Self::builder(label).scalars(scalars).finish()
    }

    /// Starts a digest over several parts, with a domain-separation label.
    pub fn builder(label: &str) -> DigestBuilder {
        let mut hasher = Sha256::new();
        hasher.update((label.len() as u64).to_le_bytes());
        hasher.update(label.as_bytes());
        DigestBuilder { hasher }
    }

    /// Lower-case hexadecimal form.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", &self.to_hex()[..16])
    }
}

/// An incremental digest; every part is length-prefixed so that parts cannot run into each other.
pub struct DigestBuilder {
    hasher: Sha256,
}

impl DigestBuilder {
    /// Adds a byte string.
    pub fn bytes(mut self, bytes: &[u8]) -> Self {
        self.hasher.update((bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
        self
    }

    /// Adds ring elements as little-endian bytes.
    pub fn scalars<S: crate::RingScalar>(mut self, scalars: &[S]) -> Self {
        self.hasher.update((scalars.len() as u64).to_le_bytes());
        if cfg!(target_endian = "little") {
            // In memory the scalars already are their little-endian bytes.
            self.hasher.update(bytemuck::cast_slice::<S, u8>(scalars));
            return self;
        }
        let mut buf = Vec::with_capacity(16 * 1024);
        for chunk in scalars.chunks(1024) {
            buf.clear();
            for s in chunk {
                s.extend_le_bytes(&mut buf);
            }
            self.hasher.update(&buf);
        }
        self
    }

    /// The digest.
    pub fn finish(self) -> Digest {
        Digest(self.hasher.finalize().into())
    }
}
