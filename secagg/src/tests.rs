//! Cross-checks against tfhe itself: our ciphertexts are tfhe compact lists under the joint
//! secret, and tfhe's own compact-list encryption decrypts through our threshold path.

use super::*;
use crate::ids::{JobId, NodeId};
use tfhe::core_crypto::prelude::{
    decrypt_lwe_ciphertext_list, encrypt_lwe_compact_ciphertext_list_with_compact_public_key,
    new_seeder, CiphertextModulus, DefaultRandomGenerator, EncryptionRandomGenerator,
    LweCiphertextCount, LweCompactCiphertextList, LweCompactPublicKey, LweSecretKey, LweSize,
    PlaintextCount, PlaintextList, TUniform,
};

fn committee<S: RingScalar>(profile: Profile, m: usize) -> (KeySetup, Vec<SecretKeyShare<S>>) {
    let setup = KeySetup {
        job: JobId::new("job").unwrap(),
        key_epoch: 1,
        profile,
        mask_seed: 0x5eed,
        committee: (0..m)
            .map(|j| NodeId::new(format!("m{j}")).unwrap())
            .collect(),
    };
    let shares = setup
        .committee
        .iter()
        .map(|id| SecretKeyShare::generate(&setup, id).unwrap())
        .collect();
    (setup, shares)
}

fn joint_secret<S: RingScalar>(shares: &[SecretKeyShare<S>]) -> Vec<S> {
    let mut s = vec![S::ZERO; shares[0].coefficients().len()];
    for share in shares {
        ring::add_assign(&mut s, share.coefficients());
    }
    s
}

fn our_list_decrypts_with_tfhe<S: RingScalar>(profile: Profile) {
    let (setup, shares) = committee::<S>(profile, 3);
    let pks: Vec<_> = shares.iter().map(|s| s.public_share()).collect();
    let key = JointPublicKey::combine(&setup, &pks).unwrap();
    let params = SchemeParameters::new(profile, 3, 10).unwrap();
    let n = profile.ring().polynomial_size;
    let slots: Vec<i128> = (0..n + 5).map(|i| i as i128 - 700).collect();
    let ct = Encryptor::new(key, params.clone())
        .unwrap()
        .encrypt(&slots)
        .unwrap();

    let mut container = ct.masks.clone();
    container.extend_from_slice(&ct.bodies);
    let list = LweCompactCiphertextList::from_container(
        container,
        LweSize(n + 1),
        LweCiphertextCount(slots.len()),
        CiphertextModulus::new_native(),
    );
    let expanded = list.expand_into_lwe_ciphertext_list();
    let secret = LweSecretKey::from_container(joint_secret(&shares));
    let mut plain = PlaintextList::new(S::ZERO, PlaintextCount(slots.len()));
    decrypt_lwe_ciphertext_list(&secret, &expanded, &mut plain);
    let delta = params.delta_log2() as usize;
    let half = S::ONE << (delta - 1);
    let decoded: Vec<i128> = plain
        .as_ref()
        .iter()
        .map(|p| p.wrapping_add(half).to_i128_signed() >> delta)
        .collect();
    assert_eq!(decoded, slots);
}

fn tfhe_list_decrypts_with_committee<S: RingScalar>(profile: Profile) {
    let (setup, shares) = committee::<S>(profile, 2);
    let pks: Vec<_> = shares.iter().map(|s| s.public_share()).collect();
    let key = JointPublicKey::combine(&setup, &pks).unwrap();
    let params = SchemeParameters::new(profile, 2, 1).unwrap();
    let n = profile.ring().polynomial_size;
    let count = 2 * n - 3;
    let delta = params.delta_log2() as usize;
    let messages: Vec<i128> = (0..count).map(|i| (i as i128 % 97) - 48).collect();

    let mut pk_container = key.mask().to_vec();
    pk_container.extend_from_slice(key.body());
    let pk = LweCompactPublicKey::from_container(pk_container, CiphertextModulus::new_native());
    let plain = PlaintextList::from_container(
        messages
            .iter()
            .map(|&m| S::from_i128_wrapping(m) << delta)
            .collect::<Vec<S>>(),
    );
    let mut list = LweCompactCiphertextList::new(
        S::ZERO,
        LweSize(n + 1),
        LweCiphertextCount(count),
        CiphertextModulus::new_native(),
    );
    let mut seeder = new_seeder();
    let mut generator =
        EncryptionRandomGenerator::<DefaultRandomGenerator>::new(seeder.seed(), seeder.as_mut());
    let noise = TUniform::<S>::new(profile.ring().noise_log2);
    encrypt_lwe_compact_ciphertext_list_with_compact_public_key(
        &pk,
        &mut list,
        &plain,
        noise,
        noise,
        generator.noise_generator_mut(),
    );
    let container = list.into_container();
    let (masks, bodies) = container.split_at(chunk_count(count, n) * n);
    let partials: Vec<Vec<S>> = shares
        .iter()
        .map(|s| {
            PartialDecryptor::new(s, params.clone())
                .unwrap()
                .partial_decrypt(masks, count, &crate::digest::Digest::of("test", b"ctx"))
                .unwrap()
        })
        .collect();
    let refs: Vec<&[S]> = partials.iter().map(Vec::as_slice).collect();
    assert_eq!(combine(&params, bodies, &refs).unwrap(), messages);
}

#[test]
fn fast_ciphertexts_are_tfhe_compact_lists() {
    our_list_decrypts_with_tfhe::<u64>(Profile::Fast);
}

#[test]
fn strict_ciphertexts_are_tfhe_compact_lists() {
    our_list_decrypts_with_tfhe::<u128>(Profile::Strict);
}

#[test]
fn tfhe_encryptions_decrypt_through_the_committee() {
    tfhe_list_decrypts_with_committee::<u64>(Profile::Fast);
    tfhe_list_decrypts_with_committee::<u128>(Profile::Strict);
}

#[test]
fn refuses_mismatched_keys_and_ciphertexts() {
    let (setup, shares) = committee::<u64>(Profile::Fast, 2);
    let pks: Vec<_> = shares.iter().map(|s| s.public_share()).collect();
    // A share missing.
    assert!(matches!(
        JointPublicKey::combine(&setup, &pks[..1]),
        Err(KeyError::CommitteeMismatch { .. })
    ));
    // A node that is not on the committee.
    assert!(matches!(
        SecretKeyShare::<u64>::generate(&setup, &NodeId::new("outsider").unwrap()),
        Err(KeyError::NotOnCommittee { .. })
    ));
    // Wrong torus for the profile.
    assert!(matches!(
        SecretKeyShare::<u128>::generate(&setup, &setup.committee[0]),
        Err(KeyError::Parameters(ParameterError::TorusMismatch { .. }))
    ));
    let key = JointPublicKey::combine(&setup, &pks).unwrap();
    let params = SchemeParameters::new(Profile::Fast, 2, 3).unwrap();
    let enc = Encryptor::new(key, params.clone()).unwrap();
    let mut a = enc.encrypt(&[1, 2, 3]).unwrap();
    let b = enc.encrypt(&[1, 2]).unwrap();
    assert!(matches!(a.add_assign(&b), Err(CryptoError::Mismatch(_))));
    assert!(matches!(
        enc.encrypt(&[1i128 << params.message_bits()]),
        Err(CryptoError::SlotOutOfRange { index: 0, .. })
    ));
    assert!(matches!(enc.encrypt(&[]), Err(CryptoError::Empty)));
}

/// A share's public share is a function of the share: asking again (a repeated key setup, a
/// member restored from disk) gives the same b_j, never a second noisy sample of the same
/// secret.
#[test]
fn a_public_share_is_the_same_every_time_it_is_asked_for() {
    let (_, shares) = committee::<u64>(Profile::Fast, 2);
    let first = shares[0].public_share();
    assert_eq!(shares[0].public_share(), first);
    let restored: SecretKeyShare<u64> = bincode::serde::decode_from_slice(
        &crate::canonical::encode_body(&shares[0]).unwrap(),
        crate::canonical::config(),
    )
    .unwrap()
    .0;
    assert_eq!(restored.public_share(), first);
}
