//! Property: for random vectors (negative values, values at and beyond the bounds, values that
//! need limbs), 1 to 10 contributors and 1 to 7 committee members, in both profiles, the decoded
//! aggregate equals the exact sum of the encoded inputs.

mod fixture;

use fedbank_common::encoding::{EncodingPlan, QuantitySpec, QuantityValues};
use fedbank_common::secagg::RingScalar;
use fixture::Committee;
use proptest::prelude::*;

const SMALL_BOUND: f64 = 1000.0;
const WIDE_BOUND: i64 = 1 << 45;

#[derive(Debug, Clone)]
struct Case {
    committee: usize,
    inputs: Vec<(Vec<f64>, Vec<i64>)>,
}

fn small_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        -1500.0..1500.0f64,
        Just(SMALL_BOUND),
        Just(-SMALL_BOUND),
        Just(0.0),
        Just(1e12),
        Just(-1e12),
    ]
}

fn wide_value() -> impl Strategy<Value = i64> {
    prop_oneof![
        -WIDE_BOUND..=WIDE_BOUND,
        Just(WIDE_BOUND),
        Just(-WIDE_BOUND),
        Just(i64::MAX),
        Just(i64::MIN),
        -3i64..3,
    ]
}

fn case(max_committee: usize) -> impl Strategy<Value = Case> {
    (
        1..=max_committee,
        1..=fixture::MAX_K,
        1usize..300,
        1usize..40,
    )
        .prop_flat_map(|(committee, k, small_len, wide_len)| {
            let one = (
                proptest::collection::vec(small_value(), small_len),
                proptest::collection::vec(wide_value(), wide_len),
            );
            proptest::collection::vec(one, k).prop_map(move |inputs| Case { committee, inputs })
        })
}

fn check<S: RingScalar>(committee: &Committee<S>, case: &Case) -> Result<(), TestCaseError> {
    let (small_len, wide_len) = (case.inputs[0].0.len(), case.inputs[0].1.len());
    let plan = EncodingPlan::new(
        &[
            QuantitySpec::new("small", small_len, SMALL_BOUND, 100.0),
            QuantitySpec::new("wide", wide_len, WIDE_BOUND as f64, 1.0),
        ],
        &committee.params,
    )
    .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(
        plan.quantities()[1].limbs > 1,
        "the wide quantity must need limbs"
    );
    let inputs: Vec<Vec<QuantityValues<'_>>> = case
        .inputs
        .iter()
        .map(|(s, w)| vec![QuantityValues::F64(s), QuantityValues::I64(w)])
        .collect();
    let mut expected = vec![0i128; plan.slot_count()];
    for input in &inputs {
        let (slots, _) = plan
            .encode(input)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (e, s) in expected.iter_mut().zip(slots) {
            *e += s;
        }
    }
    let slots = committee.run_round(&plan, &inputs);
    prop_assert_eq!(&slots, &expected);
    // And the recombined limbs are the exact sum of the clipped integer inputs.
    let decoded = plan
        .decode(&slots)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let wide_sum: Vec<i128> = (0..wide_len)
        .map(|j| {
            case.inputs
                .iter()
                .map(|(_, w)| i128::from(w[j].clamp(-WIDE_BOUND, WIDE_BOUND)))
                .sum()
        })
        .collect();
    prop_assert_eq!(&decoded[1].exact, &wide_sum);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn strict_aggregate_equals_exact_sum(case in case(7)) {
        check(fixture::strict_committee(case.committee), &case)?;
    }

    #[test]
    fn fast_aggregate_equals_exact_sum(case in case(7)) {
        check(fixture::fast_committee(case.committee), &case)?;
    }
}

#[test]
fn multi_chunk_vectors_sum_exactly() {
    // More values than one ring polynomial holds, so several mask chunks are summed.
    let committee = fixture::strict_committee(3);
    let len = 3 * 4096 + 17;
    let plan = EncodingPlan::new(&[QuantitySpec::new("x", len, 1e6, 1.0)], &committee.params)
        .expect("plan");
    let a: Vec<i64> = (0..len as i64).map(|i| i * 37 - 200_000).collect();
    let b: Vec<i64> = (0..len as i64).map(|i| 999_999 - i * 11).collect();
    let slots = committee.run_round(
        &plan,
        &[vec![QuantityValues::I64(&a)], vec![QuantityValues::I64(&b)]],
    );
    let expected: Vec<i128> = a.iter().zip(&b).map(|(x, y)| i128::from(x + y)).collect();
    assert_eq!(plan.decode(&slots).expect("decode")[0].exact, expected);
}

#[test]
fn presence_quantities_reveal_whether_anyone_set_a_slot_not_how_many() {
    fn run<S: RingScalar>(committee: &Committee<S>) {
        let len = 96;
        let plan = EncodingPlan::new(&[QuantitySpec::presence("seen", len)], &committee.params)
            .expect("plan");
        // Slots 0..32 are set by every contributor, 32..64 by contributor 0 only, 64..96 by none.
        let contributors = fixture::MAX_K;
        let inputs: Vec<Vec<f64>> = (0..contributors)
            .map(|c| {
                (0..len)
                    .map(|j| match j {
                        0..32 => 1.0,
                        32..64 if c == 0 => 1.0,
                        _ => 0.0,
                    })
                    .collect()
            })
            .collect();
        let values: Vec<Vec<QuantityValues<'_>>> = inputs
            .iter()
            .map(|v| vec![QuantityValues::F64(v)])
            .collect();
        let slots = committee.run_round(&plan, &values);
        let decoded = plan.decode(&slots).expect("decode");
        let expected: Vec<f64> = (0..len).map(|j| f64::from(j < 64)).collect();
        assert_eq!(decoded[0].values, expected);
        // What the committee's decryption yields are ring elements spread over the whole message
        // space, not counts: slots set by ten contributors and by one look alike.
        let half = 1i128 << committee.params.message_bits();
        for group in [&slots[..32], &slots[32..64]] {
            let large = group.iter().filter(|s| s.abs() > half >> 8).count();
            assert!(large >= 28, "{large} of 32 sums are large: {group:?}");
            assert!(group.iter().all(|s| s.abs() < half));
        }
        assert!(slots[64..].iter().all(|&s| s == 0));
    }
    run(fixture::strict_committee(3));
    run(fixture::fast_committee(2));
}
