//! Serialized keys, ciphertexts, manifests and partial decryptions: round trips, and every kind
//! of corrupted, truncated, oversized or mislabelled input gives an error, never a panic.

mod fixture;
use fixture::AddSigned;

use fedbank_common::committee::PartialDecryption;
use fedbank_common::digest::Digest;
use fedbank_common::encoding::{EncodingPlan, QuantitySpec, QuantityValues};
use fedbank_common::policy::Manifest;
use fedbank_common::secagg::{
    Ciphertext, JointPublicKey, KeySetup, PublicKeyShare, SecretKeyShare,
};
use fedbank_common::storage::{self, StorageError};
use fedbank_common::wire::{self, WireError, WireMessage, HEADER_LEN};
use proptest::prelude::*;

fn ciphertext() -> Ciphertext<u64> {
    let c = fixture::fast_committee(2);
    let plan =
        EncodingPlan::new(&[QuantitySpec::new("x", 40, 100.0, 1.0)], &c.params).expect("plan");
    let values: Vec<i64> = (0..40).map(|i| i - 20).collect();
    c.encrypt(&plan, &[QuantityValues::I64(&values)])
}

fn manifest() -> Manifest {
    let c = fixture::fast_committee(2);
    let mut aggregate = c.aggregate(fixture::next_round(), 40);
    aggregate
        .add_signed(vec![(fixture::node("p0"), ciphertext())])
        .expect("add");
    aggregate.decryption_request(1).expect("request").manifest
}

fn round_trip<T: WireMessage + PartialEq + std::fmt::Debug>(value: &T) -> Vec<u8> {
    let bytes = wire::encode(value).expect("encode");
    let back: T = wire::decode(&bytes).expect("decode");
    assert_eq!(&back, value);
    bytes
}

#[test]
fn every_kind_round_trips() {
    let c = fixture::fast_committee(2);
    round_trip(&c.setup);
    round_trip(&c.key);
    round_trip(&c.shares[0].public_share());
    round_trip(&ciphertext());
    round_trip(&manifest());
    round_trip(&PartialDecryption::<u64> {
        member: fixture::node("member-0"),
        manifest_digest: Digest::of("t", b"m"),
        values: vec![1, 2, 3],
    });
    let s = fixture::strict_committee(2);
    round_trip(&s.key);
    let bytes = wire::encode(&s.shares[0]).expect("encode");
    let back: SecretKeyShare<u128> = wire::decode(&bytes).expect("decode");
    assert_eq!(back.member(), s.shares[0].member());
}

#[test]
fn every_truncation_is_an_error() {
    for bytes in [
        wire::encode(&ciphertext()).expect("e"),
        wire::encode(&manifest()).expect("e"),
    ] {
        for len in 0..bytes.len() {
            assert!(wire::decode::<Ciphertext<u64>>(&bytes[..len]).is_err());
            assert!(wire::decode::<Manifest>(&bytes[..len]).is_err());
        }
    }
}

#[test]
fn mislabelled_oversized_and_trailing_inputs_are_refused() {
    let ct = wire::encode(&ciphertext()).expect("encode");
    assert!(matches!(
        wire::decode::<Manifest>(&ct),
        Err(WireError::WrongKind { .. })
    ));
    // A fast (u64) ciphertext is not a strict (u128) one.
    assert!(matches!(
        wire::decode::<Ciphertext<u128>>(&ct),
        Err(WireError::WrongTorus {
            expected: 128,
            found: 64,
            ..
        })
    ));
    let mut trailing = ct.clone();
    trailing.push(0);
    assert!(matches!(
        wire::decode::<Ciphertext<u64>>(&trailing),
        Err(WireError::TrailingBytes { extra: 1, .. })
    ));
    let mut version = ct.clone();
    version[6] = 9;
    assert!(matches!(
        wire::decode::<Ciphertext<u64>>(&version),
        Err(WireError::UnsupportedVersion { found: 9, .. })
    ));
    assert!(matches!(
        wire::decode_with_limit::<Ciphertext<u64>>(&ct, 100),
        Err(WireError::TooLarge { limit: 100, .. })
    ));
    // A body that claims 2^60 masks must fail before allocating them. The masks' length prefix
    // follows the job id, epoch, profile and value count.
    let c = ciphertext();
    let offset = HEADER_LEN + 8 + c.job.as_str().len() + 4 + 4 + 8;
    let mut huge = ct.clone();
    huge[offset..offset + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(wire::decode::<Ciphertext<u64>>(&huge).is_err());
    // Valid encoding, inconsistent content: bodies that do not match the value count.
    let mut bad = c.clone();
    bad.value_count += 1;
    let bytes = wire::encode(&bad).expect("encode");
    assert!(matches!(
        wire::decode::<Ciphertext<u64>>(&bytes),
        Err(WireError::Invalid { .. })
    ));
    // A secret share with a non-binary coefficient is refused.
    let s = fixture::fast_committee(2);
    let mut bytes = wire::encode(&s.shares[0]).expect("encode");
    let last = bytes.len() - 8;
    bytes[last] = 2;
    assert!(matches!(
        wire::decode::<SecretKeyShare<u64>>(&bytes),
        Err(WireError::Invalid { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn corrupted_bytes_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let sources = [
            wire::encode(&ciphertext()).expect("e"),
            wire::encode(&manifest()).expect("e"),
            wire::encode(&fixture::fast_committee(2).key).expect("e"),
            wire::encode(&fixture::fast_committee(2).setup).expect("e"),
        ];
        for original in sources {
            let mut bytes = original.clone();
            for (at, value) in &flips {
                let i = at % bytes.len();
                bytes[i] ^= value | 1;
            }
            bytes.truncate(bytes.len() - cut % 4);
            let _ = wire::decode::<Ciphertext<u64>>(&bytes);
            let _ = wire::decode::<Manifest>(&bytes);
            let _ = wire::decode::<JointPublicKey<u64>>(&bytes);
            let _ = wire::decode::<PublicKeyShare<u64>>(&bytes);
            let _ = wire::decode::<KeySetup>(&bytes);
            let _ = wire::decode::<SecretKeyShare<u64>>(&bytes);
        }
    }
}

#[cfg(unix)]
#[test]
fn secret_shares_are_stored_owner_only_and_refused_otherwise() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("member-0.share");
    let c = fixture::fast_committee(2);
    let member = c.members(2).remove(0);
    member.save_share(&path).expect("save");
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let loaded = fedbank_participant::CommitteeMember::<u64>::load(
        &path,
        &c.setup,
        &c.setup.committee[0],
        c.params.clone(),
        &c.terms(2),
    )
    .expect("load");
    assert_eq!(loaded.public_share().member(), member.id());
    // Another member's identity is refused.
    assert!(fedbank_participant::CommitteeMember::<u64>::load(
        &path,
        &c.setup,
        &c.setup.committee[1],
        c.params.clone(),
        &c.terms(2)
    )
    .is_err());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = storage::load::<SecretKeyShare<u64>>(&path, true).expect_err("readable by others");
    assert!(matches!(
        err,
        StorageError::InsecurePermissions { mode: 0o644, .. }
    ));
    assert!(err.to_string().contains("chmod 600"));
    // A corrupted file names itself.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(&path, b"FDBK garbage").expect("write");
    let err = storage::load::<SecretKeyShare<u64>>(&path, true).expect_err("corrupt");
    assert!(err.to_string().contains("member-0.share"), "{err}");
}
