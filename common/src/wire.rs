//! Versioned, size-limited serialization of everything that crosses a network or lands on disk.
//!
//! Every encoded object is an 8-byte header followed by a bincode 2 body:
//!
//! ```text
//!   "FDBK" | kind: u8 | torus bits: u8 (0, 64 or 128) | version: u16 LE | bincode body
//! ```
//!
//! Decoding checks, in order: the length against the kind's limit (before anything is parsed),
//! the header (magic, kind, torus width, version), the body with bincode's own allocation limit,
//! that no bytes trail the body, and finally the object's own invariants (lengths, binary key
//! coefficients, sorted committees). Any failure is a [`WireError`]; none panics.

pub use crate::canonical::encode_body;
use crate::canonical::{config, BINCODE_LIMIT};
use crate::committee::{DecryptionRequest, PartialDecryption};
use crate::endorsement::Signed;
use crate::ids::IdError;
use crate::key_ceremony::{CommitmentSet, KeyBundle, RevealedShare, ShareCommitment};
use crate::policy::{Manifest, MemberRecord};
use crate::secagg::{
    Ciphertext, CryptoError, JointPublicKey, KeyError, KeySetup, PublicKeyShare, RingScalar,
    SecretKeyShare,
};
use serde::{de::DeserializeOwned, Serialize};

/// Header magic.
pub const MAGIC: [u8; 4] = *b"FDBK";
/// Header length in bytes.
pub const HEADER_LEN: usize = 8;
/// Most values one ciphertext, request or partial decryption may carry.
pub const MAX_VALUES: usize = 1 << 24;
/// Most contributors one decryption request may list.
pub const MAX_CONTRIBUTORS: usize = 1 << 12;
/// Limit for small control objects (setups, manifests, records).
const SMALL_LIMIT: usize = 4 << 20;

/// The kinds of object on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum WireKind {
    /// [`KeySetup`].
    KeySetup = 1,
    /// [`SecretKeyShare`] (disk only).
    SecretKeyShare = 2,
    /// [`PublicKeyShare`].
    PublicKeyShare = 3,
    /// [`JointPublicKey`].
    JointPublicKey = 4,
    /// [`Ciphertext`].
    Ciphertext = 5,
    /// [`Manifest`].
    Manifest = 6,
    /// [`DecryptionRequest`].
    DecryptionRequest = 7,
    /// [`PartialDecryption`].
    PartialDecryption = 8,
    /// [`MemberRecord`] (disk only).
    MemberRecord = 9,
    /// [`crate::protocol::Hello`].
    Hello = 10,
    /// [`crate::protocol::Welcome`].
    Welcome = 11,
    /// [`crate::protocol::RoundRequest`].
    RoundRequest = 12,
    /// [`crate::protocol::Contribution`].
    Contribution = 13,
    /// [`crate::protocol::Notice`].
    Notice = 14,
    /// [`crate::protocol::AlertKeys`].
    AlertKeys = 17,
    /// [`crate::protocol::AlertRequest`].
    AlertRequest = 18,
    /// [`crate::protocol::AlertContribution`].
    AlertContribution = 19,
    /// [`crate::protocol::AlertTally`].
    AlertTally = 20,
    /// [`crate::protocol::AlertCounts`].
    AlertCounts = 21,
    /// A member's signed [`crate::key_ceremony::ShareCommitment`].
    ShareCommitment = 22,
    /// [`crate::key_ceremony::CommitmentSet`].
    CommitmentSet = 23,
    /// [`crate::key_ceremony::RevealedShare`].
    RevealedShare = 24,
    /// [`crate::key_ceremony::KeyBundle`].
    KeyBundle = 25,
    /// A participant's differential-privacy state (disk only).
    PrivacyState = 26,
    /// [`crate::protocol::ContributionCommitment`].
    ContributionCommitment = 27,
    /// [`crate::protocol::RevealRequest`].
    RevealRequest = 28,
    /// [`crate::protocol::JobReleased`]. (15 and 16 were the segment and propensity jobs' own
    /// releases up to protocol version 7; they are retired.)
    Released = 29,
}

impl WireKind {
    /// The kind of a header's kind byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        use WireKind::*;
        [
            KeySetup,
            SecretKeyShare,
            PublicKeyShare,
            JointPublicKey,
            Ciphertext,
            Manifest,
            DecryptionRequest,
            PartialDecryption,
            MemberRecord,
            Hello,
            Welcome,
            RoundRequest,
            Contribution,
            Notice,
            AlertKeys,
            AlertRequest,
            AlertContribution,
            AlertTally,
            AlertCounts,
            ShareCommitment,
            CommitmentSet,
            RevealedShare,
            KeyBundle,
            PrivacyState,
            ContributionCommitment,
            RevealRequest,
            Released,
        ]
        .into_iter()
        .find(|k| *k as u8 == b)
    }
}

/// An object's invariants did not hold after decoding.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// Key material was inconsistent.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A ciphertext-like object was inconsistent.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// An identifier was invalid.
    #[error(transparent)]
    Id(#[from] IdError),
    /// A field longer than its limit.
    #[error("{got} {what}, at most {limit} are accepted")]
    TooLong {
        /// What was counted.
        what: &'static str,
        /// Found.
        got: usize,
        /// Limit.
        limit: usize,
    },
    /// Too many values.
    #[error("{got} values, at most {MAX_VALUES} are accepted")]
    TooManyValues {
        /// Values found.
        got: usize,
    },
}

/// Why bytes could not be decoded (or an object encoded).
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The input is longer than the kind allows.
    #[error("{kind:?}: {len} bytes exceed the limit of {limit}")]
    TooLarge {
        /// Expected kind.
        kind: WireKind,
        /// Input length.
        len: usize,
        /// Limit.
        limit: usize,
    },
    /// The input is shorter than a header.
    #[error("{kind:?}: {len} bytes is shorter than the {HEADER_LEN}-byte header")]
    Truncated {
        /// Expected kind.
        kind: WireKind,
        /// Input length.
        len: usize,
    },
    /// The header does not start with the magic.
    #[error("{kind:?}: not a fedbank object (bad magic {found:02x?})")]
    BadMagic {
        /// Expected kind.
        kind: WireKind,
        /// The first four bytes.
        found: [u8; 4],
    },
    /// The header names another kind.
    #[error("expected a {expected:?}, found kind byte {found}")]
    WrongKind {
        /// Expected kind.
        expected: WireKind,
        /// Kind byte found.
        found: u8,
    },
    /// The header names another torus width (profile).
    #[error(
        "{kind:?}: encoded for a {found}-bit torus, expected {expected}-bit (wrong crypto profile)"
    )]
    WrongTorus {
        /// Expected kind.
        kind: WireKind,
        /// Expected width.
        expected: u8,
        /// Width found.
        found: u8,
    },
    /// A version this build does not read.
    #[error("{kind:?}: version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// Kind.
        kind: WireKind,
        /// Version found.
        found: u16,
        /// Version supported.
        supported: u16,
    },
    /// A kind that is not a protocol message.
    #[error("kind byte {found} is not a protocol message")]
    UnexpectedKind {
        /// Kind byte found.
        found: u8,
    },
    /// bincode could not decode the body.
    #[error("{kind:?}: malformed body")]
    Malformed {
        /// Kind.
        kind: WireKind,
        /// bincode's error.
        #[source]
        source: bincode::error::DecodeError,
    },
    /// Bytes follow the body.
    #[error("{kind:?}: {extra} unexpected bytes after the body")]
    TrailingBytes {
        /// Kind.
        kind: WireKind,
        /// Extra bytes.
        extra: usize,
    },
    /// The decoded object is inconsistent.
    #[error("{kind:?}: invalid content")]
    Invalid {
        /// Kind.
        kind: WireKind,
        /// What was wrong.
        #[source]
        source: ValidationError,
    },
    /// bincode could not encode the object.
    #[error("{kind:?}: could not encode")]
    Encode {
        /// Kind.
        kind: WireKind,
        /// bincode's error.
        #[source]
        source: bincode::error::EncodeError,
    },
}

/// An object with a wire form.
pub trait WireMessage: Serialize + DeserializeOwned {
    /// Its kind byte.
    const KIND: WireKind;
    /// Current version.
    const VERSION: u16 = 1;
    /// Torus width of generic objects, 0 for the others.
    const TORUS_BITS: u8 = 0;
    /// Largest accepted encoding, header included.
    fn max_bytes() -> usize {
        SMALL_LIMIT
    }
    /// Invariants to check after decoding.
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }
}

fn values_limit<S: RingScalar>() -> usize {
    // masks (up to one extra chunk) plus bodies, plus room for the small fields
    (2 * MAX_VALUES + 8192) * (S::BITS / 8) + SMALL_LIMIT
}

fn check_values(n: usize) -> Result<(), ValidationError> {
    if n > MAX_VALUES {
        Err(ValidationError::TooManyValues { got: n })
    } else {
        Ok(())
    }
}

impl WireMessage for KeySetup {
    const KIND: WireKind = WireKind::KeySetup;
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(KeySetup::validate(self)?)
    }
}

impl WireMessage for Manifest {
    const KIND: WireKind = WireKind::Manifest;
}

impl WireMessage for MemberRecord {
    const KIND: WireKind = WireKind::MemberRecord;
    fn max_bytes() -> usize {
        64 << 20
    }
}

impl<S: RingScalar> WireMessage for SecretKeyShare<S> {
    const KIND: WireKind = WireKind::SecretKeyShare;
    const TORUS_BITS: u8 = S::BITS as u8;
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(SecretKeyShare::validate(self)?)
    }
}

impl<S: RingScalar> WireMessage for PublicKeyShare<S> {
    const KIND: WireKind = WireKind::PublicKeyShare;
    const TORUS_BITS: u8 = S::BITS as u8;
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(PublicKeyShare::validate(self)?)
    }
}

impl<S: RingScalar> WireMessage for JointPublicKey<S> {
    const KIND: WireKind = WireKind::JointPublicKey;
    const TORUS_BITS: u8 = S::BITS as u8;
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(JointPublicKey::validate(self)?)
    }
}

impl<S: RingScalar> WireMessage for Ciphertext<S> {
    const KIND: WireKind = WireKind::Ciphertext;
    const TORUS_BITS: u8 = S::BITS as u8;
    fn max_bytes() -> usize {
        values_limit::<S>()
    }
    fn validate(&self) -> Result<(), ValidationError> {
        check_values(self.bodies.len())?;
        Ok(Ciphertext::validate(self)?)
    }
}

impl<S: RingScalar> WireMessage for DecryptionRequest<S> {
    const KIND: WireKind = WireKind::DecryptionRequest;
    const TORUS_BITS: u8 = S::BITS as u8;
    /// Version 2 carries each contributor's signed statement and mask instead of a sum;
    /// version 3 the round's roster and each contributor's signed reveal against it.
    const VERSION: u16 = 3;
    fn max_bytes() -> usize {
        // One mask per contributor: the job's cap on message size is the real limit.
        BINCODE_LIMIT
    }
    fn validate(&self) -> Result<(), ValidationError> {
        check_values(self.manifest.value_count as usize)?;
        if self.contributions.len() > MAX_CONTRIBUTORS {
            return Err(ValidationError::TooLong {
                what: "contributors",
                got: self.contributions.len(),
                limit: MAX_CONTRIBUTORS,
            });
        }
        Ok(DecryptionRequest::validate(self)?)
    }
}

impl WireMessage for Signed<ShareCommitment> {
    const KIND: WireKind = WireKind::ShareCommitment;
}

impl WireMessage for CommitmentSet {
    const KIND: WireKind = WireKind::CommitmentSet;
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(self.setup.validate()?)
    }
}

impl<S: RingScalar> WireMessage for RevealedShare<S> {
    const KIND: WireKind = WireKind::RevealedShare;
    const TORUS_BITS: u8 = S::BITS as u8;
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(self.share.validate()?)
    }
}

impl<S: RingScalar> WireMessage for KeyBundle<S> {
    const KIND: WireKind = WireKind::KeyBundle;
    const TORUS_BITS: u8 = S::BITS as u8;
    fn max_bytes() -> usize {
        // One share of at most 2^12 coefficients of 16 bytes per member, plus certificates.
        crate::secagg::params::MAX_COMMITTEE * (70 << 10) + SMALL_LIMIT
    }
    fn validate(&self) -> Result<(), ValidationError> {
        self.commitments.setup.validate()?;
        for s in &self.shares {
            s.share.validate()?;
        }
        Ok(())
    }
}

impl<S: RingScalar> WireMessage for PartialDecryption<S> {
    const KIND: WireKind = WireKind::PartialDecryption;
    const TORUS_BITS: u8 = S::BITS as u8;
    fn max_bytes() -> usize {
        values_limit::<S>()
    }
    fn validate(&self) -> Result<(), ValidationError> {
        check_values(self.values.len())
    }
}

/// Encodes an object with its header.
pub fn encode<T: WireMessage>(value: &T) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(HEADER_LEN + 64);
    out.extend_from_slice(&MAGIC);
    out.push(T::KIND as u8);
    out.push(T::TORUS_BITS);
    out.extend_from_slice(&T::VERSION.to_le_bytes());
    let body = encode_body(value).map_err(|source| WireError::Encode {
        kind: T::KIND,
        source,
    })?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes an object, with the kind's own size limit.
pub fn decode<T: WireMessage>(bytes: &[u8]) -> Result<T, WireError> {
    decode_with_limit(bytes, T::max_bytes())
}

/// Decodes an object, refusing inputs longer than `limit` (and than the kind's own limit).
pub fn decode_with_limit<T: WireMessage>(bytes: &[u8], limit: usize) -> Result<T, WireError> {
    let kind = T::KIND;
    let limit = limit.min(T::max_bytes());
    if bytes.len() > limit {
        return Err(WireError::TooLarge {
            kind,
            len: bytes.len(),
            limit,
        });
    }
    if bytes.len() < HEADER_LEN {
        return Err(WireError::Truncated {
            kind,
            len: bytes.len(),
        });
    }
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if magic != MAGIC {
        return Err(WireError::BadMagic { kind, found: magic });
    }
    if WireKind::from_byte(bytes[4]) != Some(kind) {
        return Err(WireError::WrongKind {
            expected: kind,
            found: bytes[4],
        });
    }
    if bytes[5] != T::TORUS_BITS {
        return Err(WireError::WrongTorus {
            kind,
            expected: T::TORUS_BITS,
            found: bytes[5],
        });
    }
    let version = u16::from_le_bytes([bytes[6], bytes[7]]);
    if version != T::VERSION {
        return Err(WireError::UnsupportedVersion {
            kind,
            found: version,
            supported: T::VERSION,
        });
    }
    let body = &bytes[HEADER_LEN..];
    let (value, read): (T, usize) = bincode::serde::decode_from_slice(body, config())
        .map_err(|source| WireError::Malformed { kind, source })?;
    if read != body.len() {
        return Err(WireError::TrailingBytes {
            kind,
            extra: body.len() - read,
        });
    }
    value
        .validate()
        .map_err(|source| WireError::Invalid { kind, source })?;
    Ok(value)
}
