//! What each role can and cannot learn (docs/threat-model.md §2), and each refusal of the committee policy
//! and of the coordinator's aggregation, shown on what the roles actually receive.

mod fixture;
use fixture::AddSigned;

use fedbank_common::committee::{DecryptionRequest, EvidenceError};
use fedbank_common::encoding::{EncodingPlan, QuantitySpec, QuantityValues};
use fedbank_common::ids::{JobId, NodeId};
use fedbank_common::policy::PolicyRefusal;
use fedbank_common::secagg::{
    round_messages, Ciphertext, PartialDecryptor, RingScalar, SchemeParameters,
};
use fedbank_coordinator::{AggregationError, PartialProblem};
use fedbank_participant::MemberError;
use fixture::{node, Committee};

const LEN: usize = 4096;

fn plan<S: RingScalar>(c: &Committee<S>) -> EncodingPlan {
    EncodingPlan::new(&[QuantitySpec::new("x", LEN, 1000.0, 1.0)], &c.params).expect("plan")
}

fn input(seed: i64) -> Vec<i64> {
    (0..LEN as i64)
        .map(|i| (i * 7919 + seed * 104_729) % 2001 - 1000)
        .collect()
}

/// How many decoded values land within 2^(message_bits − 12) of the truth. For a value that is
/// not really decrypted the error is uniform over ±2^message_bits, so about 2^-12 of them do.
fn near_truth(params: &SchemeParameters, decoded: &[i128], truth: &[i128]) -> usize {
    let window = 1i128 << (params.message_bits() - 12);
    decoded
        .iter()
        .zip(truth)
        .filter(|(d, t)| (**d - **t).abs() < window)
        .count()
}

struct Round<S: RingScalar> {
    ciphertexts: Vec<Ciphertext<S>>,
    truth: Vec<i128>,
}

fn encrypt_round<S: RingScalar>(c: &Committee<S>, contributors: i64) -> Round<S> {
    let plan = plan(c);
    let inputs: Vec<Vec<i64>> = (0..contributors).map(input).collect();
    let ciphertexts = inputs
        .iter()
        .map(|x| c.encrypt(&plan, &[QuantityValues::I64(x)]))
        .collect();
    let truth = (0..LEN)
        .map(|j| inputs.iter().map(|x| i128::from(x[j])).sum())
        .collect();
    Round { ciphertexts, truth }
}

/// The request for the same slot with p2's contribution listed as p9's: another contributor
/// set.
fn with_another_contributor(
    c: &Committee<u64>,
    slot_round: u32,
    round: &Round<u64>,
) -> DecryptionRequest<u64> {
    let mut other = c.aggregate(slot_round, LEN as u64);
    other
        .add_signed(
            [("p0", 0), ("p1", 1), ("p9", 2)]
                .into_iter()
                .map(|(name, ct)| (node(name), round.ciphertexts[ct].clone()))
                .collect(),
        )
        .expect("add");
    other.decryption_request(3).expect("request")
}

/// The round's ciphertexts as contributions of p0, p1, …
fn contributions<S: RingScalar>(round: &Round<S>) -> Vec<(NodeId, Ciphertext<S>)> {
    round
        .ciphertexts
        .iter()
        .enumerate()
        .map(|(k, ct)| (node(&format!("p{k}")), ct.clone()))
        .collect()
}

fn subset_of_committee_learns_nothing<S: RingScalar>(c: &Committee<S>) {
    let round = encrypt_round(c, 3);
    let mut aggregate = c.aggregate(fixture::next_round(), LEN as u64);
    let mut sum = round.ciphertexts[0].clone();
    for ct in &round.ciphertexts[1..] {
        sum.add_assign(ct).expect("sum");
    }
    aggregate.add_signed(contributions(&round)).expect("add");
    let request = aggregate.decryption_request(3).expect("request");
    // A member receives the manifest and each contributor's signed statement and mask, never a
    // body; the masks are the contributors' own and add up to the aggregate's.
    assert_eq!(request.manifest.contributors.len(), 3);
    for (entry, ct) in request.contributions.iter().zip(&round.ciphertexts) {
        assert_eq!(entry.masks, ct.masks);
    }
    let verified = request
        .verify(
            &fedbank_transport::dev_pki::shared_trust(),
            &fixture::enrolled(),
            fixture::job_digest(),
        )
        .expect("evidence");
    assert_eq!(verified.summed_masks, sum.masks);
    let partials: Vec<_> = c
        .members(3)
        .iter_mut()
        .map(|m| m.handle(&request).expect("partial"))
        .collect();
    let all = aggregate
        .combine(&c.params, &request, &partials)
        .expect("combine");
    assert_eq!(all, round.truth, "with every member the sum is exact");

    // The coordinator holding the summed bodies and all but one partial decryption: no sum.
    for missing in 0..partials.len() {
        let subset: Vec<&[S]> = partials
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != missing)
            .map(|(_, p)| p.values.as_slice())
            .collect();
        let decoded = round_messages(&c.params, &sum.bodies, &subset);
        let near = near_truth(&c.params, &decoded, &round.truth);
        assert!(
            near <= LEN / 100,
            "{near} of {LEN} values near the sum without member {missing}"
        );
    }
    let err = aggregate
        .combine(&c.params, &request, &partials[1..])
        .expect_err("an incomplete committee must be refused");
    assert!(matches!(
        err,
        AggregationError::BadPartials { problem: PartialProblem::Missing(ref m), .. }
            if *m == c.setup.committee[0]
    ));

    // One member's share applied to one participant's ciphertext: no value.
    let single = &round.ciphertexts[0];
    let own: Vec<i128> = input(0).into_iter().map(i128::from).collect();
    for share in &c.shares {
        let p = PartialDecryptor::new(share, c.params.clone())
            .expect("decryptor")
            .partial_decrypt(
                &single.masks,
                LEN,
                &fedbank_common::digest::Digest::of("t", b"x"),
            )
            .expect("partial");
        let decoded = round_messages(&c.params, &single.bodies, &[p.as_slice()]);
        let near = near_truth(&c.params, &decoded, &own);
        assert!(
            near <= LEN / 100,
            "{near} of {LEN} values decrypted by one share"
        );
    }
}

#[test]
fn strict_subset_of_committee_learns_nothing() {
    subset_of_committee_learns_nothing(fixture::strict_committee(3));
    subset_of_committee_learns_nothing(fixture::strict_committee(2));
}

#[test]
fn fast_subset_of_committee_learns_nothing() {
    subset_of_committee_learns_nothing(fixture::fast_committee(3));
    subset_of_committee_learns_nothing(fixture::fast_committee(7));
}

fn refused<T: std::fmt::Debug>(r: Result<T, MemberError>) -> PolicyRefusal {
    match r {
        Err(MemberError::Refused(refusal)) => refusal,
        other => panic!("expected a policy refusal, got {other:?}"),
    }
}

#[test]
fn committee_member_refusals_change_nothing() {
    let c = fixture::fast_committee(3);
    let round = encrypt_round(c, 3);
    let slot_round = fixture::next_round();
    let mut aggregate = c.aggregate(slot_round, LEN as u64);
    for (p, ct) in contributions(&round) {
        aggregate.commit_signed(&p, &ct).expect("commit");
    }
    for (p, ct) in contributions(&round).into_iter().take(2) {
        aggregate.reveal_signed(p, ct).expect("reveal");
    }
    let mut member = c.members(3).remove(0);

    // Fewer than min_participants distinct contributors (the coordinator's own guard bypassed).
    let two = aggregate.decryption_request(2).expect("request for two");
    let refusal = refused(member.handle(&two));
    assert!(
        matches!(
            refusal,
            PolicyRefusal::TooFewContributors {
                distinct: 2,
                required: 3,
                ..
            }
        ),
        "{refusal}"
    );
    assert!(
        member.record().decrypted.is_empty(),
        "a refusal records nothing"
    );

    // Approve the slot with three contributors; the same manifest again gives the same answer.
    aggregate
        .reveal_signed(node("p2"), round.ciphertexts[2].clone())
        .expect("reveal");
    let three = aggregate.decryption_request(3).expect("request");
    let first = member.handle(&three).expect("approved");
    let again = member.handle(&three).expect("repeat of the same manifest");
    assert_eq!(
        first, again,
        "a retried request must not get fresh smudging"
    );

    // The same slot with a different contributor set is refused.
    let different = with_another_contributor(c, slot_round, &round);
    let record_before = member.record().clone();
    assert!(matches!(
        refused(member.handle(&different)),
        PolicyRefusal::SlotAlreadyDecrypted { .. }
    ));
    assert_eq!(member.record(), &record_before);

    // Unknown job and unknown key epoch.
    let mut unknown = three.clone();
    unknown.manifest.job = JobId::new("someone-elses-job").expect("id");
    assert!(matches!(
        refused(member.handle(&unknown)),
        PolicyRefusal::UnknownJob { .. }
    ));
    let mut epoch = three.clone();
    epoch.manifest.key_epoch = 9;
    assert!(matches!(
        refused(member.handle(&epoch)),
        PolicyRefusal::UnknownKeyEpoch {
            requested: 9,
            held: 1,
            ..
        }
    ));
    // A mask that is not the one its contributor signed.
    let mut swapped = three.clone();
    swapped.contributions[1].masks = round.ciphertexts[0].masks.clone();
    assert!(matches!(
        member.handle(&swapped),
        Err(MemberError::Evidence(EvidenceError::MaskNotSigned { .. }))
    ));
    assert_eq!(member.record(), &record_before);
}

/// A committee member restarted after a crash comes back from its state directory: the same
/// share (the same partial for a repeated manifest) and the same record, so a slot it decrypted
/// before the crash stays refused under another contributor set. A share saved for another
/// member, or a record for another mandate, is refused rather than used.
#[test]
fn a_restored_member_keeps_its_share_and_refuses_the_slots_it_decrypted() {
    use fedbank_participant::{CommitteeMember, MemberFiles};
    let c = fixture::fast_committee(3);
    let round = encrypt_round(c, 3);
    let slot_round = fixture::next_round();
    let mut aggregate = c.aggregate(slot_round, LEN as u64);
    aggregate.add_signed(contributions(&round)).expect("add");
    let request = aggregate.decryption_request(3).expect("request");
    let mut member = c.members(3).remove(0);
    let first = member.handle(&request).expect("approved");

    let dir = tempfile::tempdir().expect("dir");
    let files = MemberFiles::in_dir(dir.path(), &c.setup.job);
    let restore = |who: &NodeId| {
        CommitteeMember::<u64>::restore(&files, (&c.setup.job, who), c.params.clone(), &c.terms(3))
    };
    assert!(restore(member.id()).expect("nothing saved").is_none());
    fedbank_common::storage::save(&files.share, &*member.secret_share(), true).expect("share");
    fedbank_common::storage::save(&files.record, member.record(), false).expect("record");

    let mut restored = restore(member.id()).expect("restore").expect("saved");
    assert_eq!(restored.record(), member.record());
    assert_eq!(restored.public_share(), member.public_share());
    assert_eq!(restored.handle(&request).expect("repeat"), first);
    let different = with_another_contributor(c, slot_round, &round);
    assert!(matches!(
        refused(restored.handle(&different)),
        PolicyRefusal::SlotAlreadyDecrypted { .. }
    ));

    // Another member's identity, and a record of another mandate, are refused.
    assert!(matches!(
        restore(&c.setup.committee[1]),
        Err(MemberError::WrongShare { .. })
    ));
    let mut foreign = member.record().clone();
    if let Some(m) = foreign.mandates.values_mut().next() {
        m.min_participants = 1;
    }
    fedbank_common::storage::save(&files.record, &foreign, false).expect("record");
    assert!(matches!(
        restore(member.id()),
        Err(MemberError::RecordMismatch { .. })
    ));

    // A record of an earlier key epoch under the same terms (the node stopped between saving
    // a new epoch's share and its record) is taken over, slots and all; one of a later epoch
    // than the share is not.
    let epoch = member.public_share().setup().key_epoch;
    for (kept, taken) in [(epoch - 1, true), (epoch + 1, false)] {
        let mut record = member.record().clone();
        if let Some(m) = record.mandates.values_mut().next() {
            m.key_epoch = kept;
        }
        fedbank_common::storage::save(&files.record, &record, false).expect("record");
        match restore(member.id()) {
            Ok(Some(restored)) if taken => {
                assert_eq!(restored.record().decrypted, member.record().decrypted);
                assert_eq!(restored.record().computations, member.record().computations);
                assert_eq!(restored.record().mandates, member.record().mandates);
            }
            Err(MemberError::RecordMismatch { .. }) if !taken => {}
            other => panic!(
                "a record of key epoch {kept}: {:?}",
                other.map(|m| m.map(|m| m.record().clone()))
            ),
        }
    }
}

#[test]
fn coordinator_refuses_duplicates_and_misfits_without_changing_the_sum() {
    let c = fixture::fast_committee(2);
    let round = encrypt_round(c, 2);
    let mut aggregate = c.aggregate(fixture::next_round(), LEN as u64);
    let [first, second] = [0, 1].map(|k| round.ciphertexts[k].clone());
    aggregate
        .commit_signed(&node("p0"), &first)
        .expect("commit");
    aggregate
        .commit_signed(&node("p1"), &second)
        .expect("commit");
    assert!(matches!(
        aggregate.commit_signed(&node("p1"), &second),
        Err(AggregationError::DuplicateContribution { .. })
    ));
    // A commitment for a shorter ciphertext than the slot holds.
    let mut short = first.clone();
    short.bodies.pop();
    short.value_count -= 1;
    assert!(matches!(
        aggregate.commit_signed(&node("p2"), &short),
        Err(AggregationError::Statement {
            field: "value count",
            ..
        })
    ));
    // Committed with the right length, revealed truncated.
    let mut truncated = first.clone();
    truncated.masks.truncate(10);
    aggregate
        .commit_signed(&node("p3"), &truncated)
        .expect("commit");
    assert!(matches!(
        aggregate.reveal_signed(node("p3"), truncated),
        Err(AggregationError::Misfit { .. })
    ));
    // Once the roster is fixed: no commitment, and no reveal without one or of another
    // ciphertext than the committed one.
    assert!(matches!(
        aggregate.commit_signed(&node("p4"), &first),
        Err(AggregationError::Roster { .. })
    ));
    assert!(matches!(
        aggregate.reveal_signed(node("p4"), first.clone()),
        Err(AggregationError::Roster { .. })
    ));
    assert!(matches!(
        aggregate.reveal_signed(node("p1"), first.clone()),
        Err(AggregationError::Statement { .. })
    ));
    aggregate.reveal_signed(node("p0"), first).expect("reveal");
    aggregate
        .reveal_signed(node("p1"), second.clone())
        .expect("reveal");
    assert!(matches!(
        aggregate.reveal_signed(node("p1"), second),
        Err(AggregationError::DuplicateContribution { .. })
    ));
    assert_eq!(aggregate.contributions().len(), 2);
    let request = aggregate.decryption_request(2).expect("request");
    let mut members = c.members(2);
    let partials: Vec<_> = members
        .iter_mut()
        .map(|m| m.handle(&request).expect("partial"))
        .collect();
    let slots = aggregate
        .combine(&c.params, &request, &partials)
        .expect("combine");
    assert_eq!(
        slots, round.truth,
        "refused contributions left the sum untouched"
    );
    // An answer from outside the committee, or repeated, is refused.
    let mut outsider = partials[0].clone();
    outsider.member = node("intruder");
    assert!(matches!(
        aggregate.combine(&c.params, &request, &[partials[0].clone(), outsider]),
        Err(AggregationError::BadPartials {
            problem: PartialProblem::Outsider(_),
            ..
        })
    ));
    assert!(matches!(
        aggregate.combine(
            &c.params,
            &request,
            &[partials[0].clone(), partials[0].clone()]
        ),
        Err(AggregationError::BadPartials {
            problem: PartialProblem::Repeated(_),
            ..
        })
    ));
}
