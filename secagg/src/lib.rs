//! # fedbank-secagg
//!
//! The cryptography of fedbank on its own, so that it can be reviewed and fuzzed alone: it
//! depends on no other fedbank crate.
//!
//! - the crate root: threshold compact public-key encryption on tfhe's `core_crypto`
//!   (docs/threat-model.md §3), with the `strict` and `fast` profiles and their noise budget;
//! - [`encoding`]: real numbers into plaintext slots: bounds, fixed-point scale, counted
//!   clipping, limbs, and the overflow check of a decrypted sum;
//! - [`digest`]: domain-separated SHA-256 digests, including over [`canonical`] bincode
//!   encodings (infallible for the types it is used on, and an error rather than a shared
//!   digest when an encoding fails);
//! - [`ids`]: the validated job and node identifiers that ciphertexts and key shares name.
//!
//! The scheme:
//!
//! ```text
//!  participants                 coordinator                       committee members
//!  ────────────                 ───────────                       ─────────────────
//!                          KeySetup(seed) ───────────────────────▶ s_j ← binary (local)
//!                          shares b_j ◀────────────────────────── (signed, commit-then-reveal:
//!  ◀────────────── every signed b_j                                  fedbank_common::key_ceremony)
//!  joint key (a, Σ b_j), formed and checked locally
//!  Encryptor::encrypt(m_k)
//!   ── signed digests ─────▶ roster of commitments (fedbank_common::roster)
//!   ◀───────────── roster
//!   ── Ciphertext_k + reveal ▶ Σ_k masks, Σ_k bodies
//!                          each signed mask + manifest ──────────▶ evidence + policy, own sum
//!                          Σ P_j ◀──────────────────────────────── PartialDecryptor: P_j
//!                          combine: round((Σ bodies − Σ_j P_j)/Δ) = Σ_k m_k
//! ```
//!
//! What this crate does not do: sign anything or check certificates (`fedbank_common::endorsement`),
//! choose who may decrypt what (`fedbank_common::policy`), move bytes (`fedbank_common::wire`
//! and the node crates), or prove that a participant's input is in range: a dishonest participant
//! can move a released aggregate anywhere within what K honest contributions could produce, and
//! the coordinator refuses anything beyond (docs/threat-model.md §9).

pub mod canonical;
mod ciphertext;

mod decryption;
pub mod digest;
pub mod encoding;
pub mod ids;
mod keys;
pub mod params;
mod ring;

pub use self::ring::{add_assign, Ring, RingScalar};
pub use ciphertext::{chunk_count, Ciphertext, CryptoError, Encryptor};
pub use decryption::{combine, round_messages, PartialDecryptor};
pub use keys::{JointPublicKey, KeyError, KeySetup, PublicKeyShare, SecretKeyShare};
pub use params::{ParameterError, Profile, RingParameters, SchemeParameters};

#[cfg(test)]
mod tests;
