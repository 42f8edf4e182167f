//! Threshold compact public-key encryption on tfhe's `core_crypto` (docs/threat-model.md §3).
//!
//! ```text
//!  participants                 coordinator                       committee members
//!  ────────────                 ───────────                       ─────────────────
//!                          KeySetup(seed) ───────────────────────▶ s_j ← binary (local)
//!                          shares b_j ◀────────────────────────── (signed, commit-then-reveal:
//!  ◀────────────── every signed b_j                                  crate::key_ceremony)
//!  joint key (a, Σ b_j), formed and checked locally
//!  Encryptor::encrypt(m_k)
//!   ── signed digests ─────▶ roster of commitments (crate::roster)
//!   ◀───────────── roster
//!   ── Ciphertext_k + reveal ▶ Σ_k masks, Σ_k bodies
//!                          each signed mask + manifest ──────────▶ evidence + policy, own sum
//!                          Σ P_j ◀──────────────────────────────── PartialDecryptor: P_j
//!                          combine: round((Σ bodies − Σ_j P_j)/Δ) = Σ_k m_k
//! ```
//!
//! What this module does not do: choose who may decrypt what (that is [`crate::policy`]),
//! turn real numbers into slots (that is [`crate::encoding`]), move bytes ([`crate::wire`] and
//! the node crates), or prove that a participant's input is in range: a dishonest participant
//! can move a released aggregate anywhere within what K honest contributions could produce, and
//! the coordinator refuses anything beyond (docs/threat-model.md §9).

mod ciphertext;
mod decryption;
mod keys;
pub mod params;
mod ring;

pub use ciphertext::{chunk_count, Ciphertext, CryptoError, Encryptor};
pub use decryption::{combine, round_messages, PartialDecryptor};
pub use keys::{JointPublicKey, KeyError, KeySetup, PublicKeyShare, SecretKeyShare};
pub use params::{ParameterError, Profile, RingParameters, SchemeParameters};
pub use ring::{add_assign, Ring, RingScalar};

#[cfg(test)]
mod tests;
