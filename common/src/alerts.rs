//! Private compliance alerts (docs/threat-model.md §6): where tfhe's programmable bootstrapping earns its
//! cost.
//!
//! ```text
//!   auditor     AuditorKeys::generate ──compact public key, compressed server key──▶ coordinator
//!   participant RatePublicKey::encrypt_rates(rates in basis points) ──packed list──▶ coordinator
//!   coordinator AlertEvaluator: rate > limit (PBS) → bit, Σ bits per rule ──one FheUint16 per rule──▶ auditor
//!   auditor     AuditorKeys::decrypt_count ──▶ number of institutions over each limit
//! ```
//!
//! The keys are tfhe's high-level keys with its default parameter set,
//! `PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128` (128-bit security, bootstrapping failure
//! probability below 2^-128), encrypted through the matching compact public key. Participants
//! encrypt *packed* lists, so expanding a list runs a bootstrapping that sanitizes every block:
//! a malformed or noisy ciphertext from a hostile participant cannot push a comparison result
//! outside {0, 1}.
//!
//! What this does not do: it cannot prove that the ciphertext the auditor is asked to decrypt is
//! the sum it claims to be (docs/threat-model.md §6: the alert step is not yet hardened against a
//! malicious coordinator).
//! The auditor therefore checks the manifest (contributors, their ciphertext digests, the rules
//! and limits) and decrypts once per job; participants log the digest of what they sent, so the
//! cross-check of the trails shows any substitution.
//!
//! Every byte string from the network is read with tfhe's `safe_deserialize_conformant`: a size
//! limit before allocation and a conformance check against the expected parameters.

use crate::digest::Digest;
use tfhe::prelude::*;
use tfhe::safe_serialization::{safe_deserialize, safe_deserialize_conformant, safe_serialize};
use tfhe::shortint::parameters::CompactPublicKeyEncryptionParameters;
use tfhe::{
    ClientKey, CompactCiphertextList, CompactCiphertextListConformanceParams, CompactPublicKey,
    CompressedServerKey, Config, ConfigBuilder, FheUint16, ServerKey,
};

/// A named limit of the private alert step (a compliance rule's `max_violation_rate`), as alert
/// requests, tallies and manifests list it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlertRule {
    /// Rule name.
    pub rule: String,
    /// Limit in basis points: an institution is over it when its rate is strictly above.
    pub limit_basis_points: u16,
}

/// What the alert step cost on the coordinator.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlertCost {
    /// Institutions whose rates were compared.
    pub institutions: usize,
    /// Rules with a limit.
    pub rules: usize,
    /// Homomorphic comparisons (institutions × rules).
    pub comparisons: usize,
    /// Seconds spent expanding, comparing and casting every institution's rates.
    pub compare_seconds: f64,
    /// compare_seconds / comparisons.
    pub seconds_per_comparison: f64,
    /// Seconds spent adding the bits per rule.
    pub tally_seconds: f64,
}

/// Largest accepted auditor key message (the compressed server key measures about 60 MB).
pub const MAX_AUDITOR_KEYS_BYTES: usize = 96 << 20;
/// Largest accepted compact public key (about 33 kB).
pub const MAX_PUBLIC_KEY_BYTES: usize = 1 << 20;
/// Largest accepted list of encrypted rates.
pub const MAX_RATES_BYTES: usize = 4 << 20;
/// Largest accepted encrypted count (about 130 kB).
pub const MAX_COUNT_BYTES: usize = 1 << 20;
/// Rates are 16-bit: basis points fit, and a count of up to 65,535 institutions.
pub const RATE_BITS: usize = 16;

/// Why alert material was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    /// Bytes that are not the expected tfhe object, too large, or for other parameters.
    #[error("{what}: not a conformant tfhe object: {reason}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// tfhe's reason.
        reason: String,
    },
    /// A list with another number of rates than the job's alert rules.
    #[error("{got} encrypted rates, the job has {expected} alert rules")]
    WrongLength {
        /// Rates found.
        got: usize,
        /// Alert rules.
        expected: usize,
    },
    /// tfhe refused an operation.
    #[error("{what}: {reason}")]
    Tfhe {
        /// Which operation.
        what: &'static str,
        /// tfhe's reason.
        reason: String,
    },
}

/// The parameters every role agrees on: tfhe's default configuration.
pub fn config() -> Config {
    ConfigBuilder::default().build()
}

fn public_params() -> Result<CompactPublicKeyEncryptionParameters, AlertError> {
    config()
        .public_key_encryption_parameters()
        .map_err(|e| AlertError::Tfhe {
            what: "compact public-key parameters",
            reason: e.to_string(),
        })
}

fn serialize<T: serde::Serialize + tfhe::Versionize + tfhe::named::Named>(
    what: &'static str,
    object: &T,
    limit: usize,
) -> Result<Vec<u8>, AlertError> {
    let mut bytes = Vec::new();
    safe_serialize(object, &mut bytes, limit as u64).map_err(|e| AlertError::Tfhe {
        what,
        reason: e.to_string(),
    })?;
    Ok(bytes)
}

/// Digest of a serialized alert object, as written in the trails.
pub fn digest(bytes: &[u8]) -> Digest {
    Digest::of("fedbank.alert.v1", bytes)
}

/// The auditor's keys. The client key never leaves the auditor.
pub struct AuditorKeys {
    client: ClientKey,
    public: Vec<u8>,
    server: Vec<u8>,
}

impl AuditorKeys {
    /// Generates a client key, its compact public key and its compressed server key (about a
    /// second and a half on 2 cores).
    pub fn generate() -> Result<Self, AlertError> {
        let client = ClientKey::generate(config());
        let public = serialize(
            "compact public key",
            &CompactPublicKey::new(&client),
            MAX_PUBLIC_KEY_BYTES,
        )?;
        let server = serialize(
            "server key",
            &CompressedServerKey::new(&client),
            MAX_AUDITOR_KEYS_BYTES,
        )?;
        Ok(Self {
            client,
            public,
            server,
        })
    }

    /// The compact public key participants encrypt their rates under.
    pub fn public_key_bytes(&self) -> &[u8] {
        &self.public
    }

    /// The compressed server key the coordinator compares and adds with.
    pub fn server_key_bytes(&self) -> &[u8] {
        &self.server
    }

    /// Decrypts one encrypted count. The count is the coordinator's sum, whose blocks carry
    /// smaller degrees than a fresh encryption, so tfhe's whole-ciphertext conformance (which
    /// wants fresh degrees) does not apply: each block is checked against the parameters (LWE
    /// dimension, modulus, message and carry space, atomic pattern) with its degree and noise
    /// level bounded instead, before anything is decrypted.
    pub fn decrypt_count(&self, bytes: &[u8]) -> Result<u16, AlertError> {
        use tfhe::integer::ciphertext::IntegerCiphertext;
        let malformed = |reason: String| AlertError::Malformed {
            what: "encrypted count",
            reason,
        };
        let count: FheUint16 =
            safe_deserialize(bytes, MAX_COUNT_BYTES as u64).map_err(malformed)?;
        let (radix, id, tag, metadata) = count.into_raw_parts();
        let fresh = self
            .client
            .computation_parameters()
            .to_shortint_conformance_param();
        let blocks = RATE_BITS / fresh.message_modulus.0.ilog2() as usize;
        if radix.blocks().len() != blocks {
            return Err(malformed(format!(
                "{} blocks, a 16-bit count has {blocks}",
                radix.blocks().len()
            )));
        }
        for (i, block) in radix.blocks().iter().enumerate() {
            let bounded = block.degree.get() <= fresh.degree.get()
                && block.noise_level().get() <= fresh.noise_level.get();
            let shape = tfhe::shortint::parameters::CiphertextConformanceParams {
                degree: block.degree,
                noise_level: block.noise_level(),
                ..fresh
            };
            if !bounded || !block.is_conformant(&shape) {
                return Err(malformed(format!(
                    "block {i} does not fit the parameters (degree {}, noise level {})",
                    block.degree.get(),
                    block.noise_level().get()
                )));
            }
        }
        let count = FheUint16::from_raw_parts(radix, id, tag, metadata);
        Ok(count.decrypt(&self.client))
    }
}

/// A participant's view of the auditor's compact public key.
pub struct RatePublicKey {
    key: CompactPublicKey,
}

impl RatePublicKey {
    /// Reads and checks a compact public key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AlertError> {
        let key =
            safe_deserialize_conformant(bytes, MAX_PUBLIC_KEY_BYTES as u64, &public_params()?)
                .map_err(|reason| AlertError::Malformed {
                    what: "auditor's compact public key",
                    reason,
                })?;
        Ok(Self { key })
    }

    /// Encrypts rates (basis points) as one packed compact list of `FheUint16`.
    pub fn encrypt_rates(&self, rates: &[u16]) -> Result<Vec<u8>, AlertError> {
        let mut builder = CompactCiphertextList::builder(&self.key);
        for rate in rates {
            builder.push(*rate);
        }
        serialize("encrypted rates", &builder.build_packed(), MAX_RATES_BYTES)
    }
}

/// One participant's encrypted comparison results, 0 or 1 per alert rule. Nobody the
/// coordinator talks to can decrypt them, and they are only ever sent summed.
pub struct OverLimitBits(Vec<FheUint16>);

/// A participant's encrypted rates, read and checked against the auditor's parameters and the
/// number of alert rules (tfhe's conformance check), before any computation touches them.
pub fn read_rates(rates: &[u8], rules: usize) -> Result<CompactCiphertextList, AlertError> {
    let params = CompactCiphertextListConformanceParams::from_parameters_and_size_constraint(
        public_params()?,
        tfhe::conformance::ListSizeConstraint::try_size_in_range(0, rules * RATE_BITS).map_err(
            |reason| AlertError::Tfhe {
                what: "list size constraint",
                reason,
            },
        )?,
    );
    let list: CompactCiphertextList =
        safe_deserialize_conformant(rates, MAX_RATES_BYTES as u64, &params).map_err(|reason| {
            AlertError::Malformed {
                what: "encrypted rates",
                reason,
            }
        })?;
    if list.len() != rules {
        return Err(AlertError::WrongLength {
            got: list.len(),
            expected: rules,
        });
    }
    Ok(list)
}

/// The coordinator's evaluator: the auditor's server key, which can compute on but not decrypt
/// the rates.
pub struct AlertEvaluator {
    server: ServerKey,
}

impl AlertEvaluator {
    /// Reads, checks and decompresses the auditor's server key (about half a second).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AlertError> {
        let compressed: CompressedServerKey =
            safe_deserialize_conformant(bytes, MAX_AUDITOR_KEYS_BYTES as u64, &config().into())
                .map_err(|reason| AlertError::Malformed {
                    what: "auditor's server key",
                    reason,
                })?;
        Ok(Self {
            server: compressed.decompress(),
        })
    }

    /// One participant's encrypted over-limit bits: expands its list (a bootstrapping that
    /// sanitizes each block) and compares each rate with its limit (`rate > limit`, a
    /// programmable bootstrapping), as 0/1 `FheUint16`s ready to add.
    pub fn over_limit(&self, rates: &[u8], limits: &[u16]) -> Result<OverLimitBits, AlertError> {
        let list = read_rates(rates, limits.len())?;
        tfhe::set_server_key(self.server.clone());
        let tfhe_error = |what| {
            move |e: tfhe::Error| AlertError::Tfhe {
                what,
                reason: e.to_string(),
            }
        };
        let expanded = list.expand().map_err(tfhe_error("expanding the rates"))?;
        let mut bits = Vec::with_capacity(limits.len());
        for (i, limit) in limits.iter().enumerate() {
            let rate: FheUint16 = expanded
                .get(i)
                .map_err(tfhe_error("reading a rate"))?
                .ok_or(AlertError::WrongLength {
                    got: i,
                    expected: limits.len(),
                })?;
            bits.push(FheUint16::cast_from(rate.gt(*limit)));
        }
        Ok(OverLimitBits(bits))
    }

    /// Per rule, the sum of the participants' bits, serialized for the auditor.
    pub fn tally(
        &self,
        per_participant: &[&OverLimitBits],
        rules: usize,
    ) -> Result<Vec<Vec<u8>>, AlertError> {
        tfhe::set_server_key(self.server.clone());
        (0..rules)
            .map(|r| {
                let bits: Vec<&FheUint16> =
                    per_participant.iter().filter_map(|b| b.0.get(r)).collect();
                let sum: FheUint16 = bits.into_iter().sum();
                serialize("encrypted count", &sum, MAX_COUNT_BYTES)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_institutions_over_each_limit_and_refuses_bad_material() {
        let keys = AuditorKeys::generate().expect("keys");
        let public = RatePublicKey::from_bytes(keys.public_key_bytes()).expect("public key");
        let evaluator = AlertEvaluator::from_bytes(keys.server_key_bytes()).expect("server key");
        let limits = [100u16, 0];
        let institutions = [[150u16, 0], [100, 1], [9999, 0]];
        let bits: Vec<OverLimitBits> = institutions
            .iter()
            .map(|rates| {
                let list = public.encrypt_rates(rates).expect("encrypt");
                evaluator.over_limit(&list, &limits).expect("compare")
            })
            .collect();
        let counts: Vec<u16> = evaluator
            .tally(&bits.iter().collect::<Vec<_>>(), 2)
            .expect("tally")
            .iter()
            .map(|c| keys.decrypt_count(c).expect("decrypt"))
            .collect();
        assert_eq!(counts, vec![2, 1]);

        let three = public.encrypt_rates(&[1, 2, 3]).expect("encrypt");
        assert!(matches!(
            evaluator.over_limit(&three, &limits),
            Err(AlertError::WrongLength {
                got: 3,
                expected: 2
            })
        ));
        let mut flipped = public.encrypt_rates(&[1, 2]).expect("encrypt");
        flipped.truncate(flipped.len() / 2);
        assert!(matches!(
            evaluator.over_limit(&flipped, &limits),
            Err(AlertError::Malformed { .. })
        ));
        assert!(RatePublicKey::from_bytes(&[0u8; 64]).is_err());
        assert!(AlertEvaluator::from_bytes(keys.public_key_bytes()).is_err());
        assert!(keys.decrypt_count(&three).is_err());
    }
}
