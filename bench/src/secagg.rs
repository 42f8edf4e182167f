//! `fedbank bench secagg`: what secure aggregation costs each role, next to its limits, all
//! measured in the same run on the same machine.

use anyhow::{ensure, Context, Result};
use clap::Args;
use fedbank_common::committee::{ContributionStatement, MASK_DIGEST_LABEL};
use fedbank_common::digest::Digest;
use fedbank_common::encoding::{EncodingPlan, QuantitySpec, QuantityValues};
use fedbank_common::ids::{JobId, NodeId};
use fedbank_common::roster::RevealStatement;
use fedbank_common::secagg::{
    Encryptor, JointPublicKey, KeySetup, Profile, RingScalar, SchemeParameters,
};
use fedbank_common::wire;
use fedbank_coordinator::RoundAggregate;
use fedbank_participant::{CommitteeMember, Contributor, MemberTerms};
use fedbank_transport::dev_pki::DevConsortium;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Sizes measured when `--values` is not given.
const DEFAULT_SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];
/// Bound and fixed-point scale of the benchmark's values.
const BOUND: f64 = 1000.0;
const SCALE: f64 = 1000.0;

/// Options of `fedbank bench secagg`.
#[derive(Args, Debug)]
pub struct SecaggArgs {
    /// Values per contribution (default: 10^4, 10^5 and 10^6, one table each).
    #[arg(long)]
    values: Option<usize>,
    /// Contributions summed into the aggregate.
    #[arg(long, default_value_t = 10)]
    contributors: usize,
    /// Committee members (all take part in each decryption).
    #[arg(long, default_value_t = 3)]
    committee: usize,
    /// Crypto profile (default: both, strict first).
    #[arg(long)]
    profile: Option<Profile>,
    /// tfhe FheUint32 additions timed for the per-value baseline.
    #[arg(long, default_value_t = 3)]
    tfhe_sample: usize,
    /// Print one JSON object per run (one line each) instead of tables.
    #[arg(long)]
    json: bool,
    /// Seed of the generated values.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
}

/// One run's figures; field names are the stable `--json` interface.
#[derive(Serialize, Debug)]
struct SecaggReport {
    profile: Profile,
    values: usize,
    contributors: usize,
    committee: usize,
    correct: bool,
    message_bits: u32,
    delta_log2: u32,
    plaintext_sum_s_per_value: f64,
    encrypt_s_per_value: f64,
    aggregate_s_per_value: f64,
    aggregate_with_digest_s_per_value: f64,
    partial_decrypt_s_per_value: f64,
    sign_statement_s_per_value: f64,
    check_statements_s_per_value: f64,
    member_verify_s_per_value: f64,
    decryption_request_bytes_per_value: f64,
    combine_s_per_value: f64,
    bytes_per_value: f64,
    partial_decryption_bytes_per_value: f64,
    tfhe_fheuint32_add_s_per_value: f64,
    tfhe_fheuint32_add_extrapolated: bool,
    tfhe_fheuint32_add_sampled: usize,
    encrypt_total_s: f64,
    aggregate_total_s: f64,
    aggregate_with_digest_total_s: f64,
    partial_decrypt_total_s: f64,
    sign_statement_total_s: f64,
    check_statements_total_s: f64,
    member_verify_total_s: f64,
    combine_total_s: f64,
    plaintext_sum_total_s: f64,
}

/// Runs the benchmark and prints its tables (or JSON lines).
pub fn run_secagg(args: &SecaggArgs) -> Result<()> {
    ensure!(args.contributors >= 1, "--contributors must be at least 1");
    ensure!(args.tfhe_sample >= 1, "--tfhe-sample must be at least 1");
    if let Some(v) = args.values {
        ensure!(
            (1..=wire::MAX_VALUES).contains(&v),
            "--values must be between 1 and {}",
            wire::MAX_VALUES
        );
    }
    let sizes = args.values.map_or(DEFAULT_SIZES.to_vec(), |v| vec![v]);
    let profiles = args.profile.map_or(Profile::ALL.to_vec(), |p| vec![p]);
    if !args.json {
        eprintln!(
            "measuring tfhe FheUint32 addition ({} samples; key generation first)…",
            args.tfhe_sample
        );
    }
    let tfhe_add = measure_fheuint32_add(args.tfhe_sample)?;
    for &profile in &profiles {
        for &values in &sizes {
            let report = match profile {
                Profile::Strict => run_one::<u128>(profile, values, args, tfhe_add)?,
                Profile::Fast => run_one::<u64>(profile, values, args, tfhe_add)?,
            };
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print_table(&report);
            }
            ensure!(
                report.correct,
                "the decoded aggregate differed from the exact sum"
            );
        }
    }
    Ok(())
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn run_one<S: RingScalar>(
    profile: Profile,
    values: usize,
    args: &SecaggArgs,
    tfhe_add: f64,
) -> Result<SecaggReport> {
    let (k, m) = (args.contributors, args.committee);
    let params = SchemeParameters::new(profile, m, k).context("choosing parameters")?;
    let setup = KeySetup {
        job: JobId::new("bench")?,
        key_epoch: 1,
        profile,
        mask_seed: rand::rng().random(),
        committee: (0..m)
            .map(|j| NodeId::new(format!("member-{j:02}")))
            .collect::<Result<_, _>>()?,
    };
    let participants: Vec<NodeId> = (0..k)
        .map(|j| NodeId::new(format!("participant-{j:03}")))
        .collect::<Result<_, _>>()?;
    let pki = DevConsortium::new(participants.iter())?;
    let job_digest = Digest::of("bench", b"job");
    let terms = MemberTerms {
        min_participants: k,
        participants: participants.clone(),
        job_digest,
        trust: pki.trust(),
    };
    let mut members: Vec<CommitteeMember<S>> = setup
        .committee
        .iter()
        .map(|id| CommitteeMember::generate(&setup, id, params.clone(), &terms))
        .collect::<Result<_, _>>()?;
    let shares: Vec<_> = members.iter().map(CommitteeMember::public_share).collect();
    let key = JointPublicKey::combine(&setup, &shares)?;
    let plan = EncodingPlan::new(&[QuantitySpec::new("bench", values, BOUND, SCALE)], &params)?;
    let contributor = Contributor::new(plan.clone(), Encryptor::new(key, params.clone())?);

    let mut rng = StdRng::seed_from_u64(args.seed ^ values as u64);
    let inputs: Vec<Vec<f64>> = (0..k)
        .map(|_| {
            (0..values)
                .map(|_| rng.random_range(-BOUND..=BOUND))
                .collect()
        })
        .collect();

    // (a) the limit: a plaintext sum of the same vectors.
    let start = Instant::now();
    let mut plain = vec![0f64; values];
    for input in &inputs {
        for (acc, v) in plain.iter_mut().zip(input) {
            *acc += v;
        }
    }
    let plaintext_sum = start.elapsed();
    std::hint::black_box(&plain);

    // Exact expected sum of the encoded inputs.
    let mut expected = vec![0i128; plan.slot_count()];
    for input in &inputs {
        let (slots, _) = plan.encode(&[QuantityValues::F64(input)])?;
        for (e, s) in expected.iter_mut().zip(slots) {
            *e += s;
        }
    }

    // (b) participant: encode + encrypt, each contributor once.
    let mut ciphertexts = Vec::with_capacity(k);
    let start = Instant::now();
    for input in &inputs {
        ciphertexts.push(contributor.contribute(&[QuantityValues::F64(input)])?.0);
    }
    let encrypt = start.elapsed() / k as u32;
    let bytes = wire::encode(&ciphertexts[0])?.len();

    // participant: the signed statement of its contribution (mask and ciphertext digests and
    // an Ed25519 signature) and, below, its signed reveal; each contributor once.
    let signers = participants
        .iter()
        .map(|p| pki.signer(p))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    let statements: Vec<_> = ciphertexts
        .iter()
        .zip(&signers)
        .map(|(ct, signer)| {
            signer.sign(ContributionStatement {
                job: setup.job.clone(),
                job_digest,
                key_epoch: setup.key_epoch,
                round: 1,
                attempt: 0,
                quantity: "bench".into(),
                value_count: ct.value_count,
                computation: Digest::of("bench computation", b"round 1"),
                mask_digest: Digest::of_scalars(MASK_DIGEST_LABEL, &ct.masks),
                ciphertext_digest: ct.digest(),
            })
        })
        .collect();
    let sign = start.elapsed() / k as u32;

    // coordinator: the signature of every statement and, below, of every reveal (their fields
    // are checked while adding).
    let trust = pki.trust();
    let start = Instant::now();
    for statement in &statements {
        trust.verify(statement)?;
    }
    let check_statements = start.elapsed();

    // coordinator: the homomorphic sum alone ...
    let mut sum = ciphertexts[0].clone();
    let start = Instant::now();
    for ct in &ciphertexts[1..] {
        sum.add_assign(ct)?;
    }
    let add_time = start.elapsed();
    std::hint::black_box(&sum);
    drop(sum);
    // ... and the whole contribution path: checks, SHA-256 digest for the manifest, sum.
    // Commitments first, then the roster, then the reveals (docs/threat-model.md §9).
    let mut aggregate = RoundAggregate::new(setup.clone(), 1, "bench", plan.slot_count() as u64);
    let start = Instant::now();
    for (p, statement) in participants.iter().zip(&statements) {
        aggregate.commit(p.clone(), statement.clone())?;
    }
    let roster = aggregate
        .fix_roster()
        .cloned()
        .context("no commitment in the bench round")?;
    let commit_time = start.elapsed();
    // participant: its signed reveal against the roster; coordinator: its signature.
    let start = Instant::now();
    let reveals: Vec<_> = statements
        .iter()
        .zip(&signers)
        .map(|(s, signer)| signer.sign(RevealStatement::of(&s.statement, &roster)))
        .collect();
    let sign = sign + start.elapsed() / k as u32;
    let start = Instant::now();
    for reveal in &reveals {
        trust.verify(reveal)?;
    }
    let check_statements = check_statements + start.elapsed();
    let start = Instant::now();
    for ((p, ct), reveal) in participants.iter().zip(ciphertexts).zip(reveals) {
        aggregate.add(p.clone(), ct, reveal)?;
    }
    let aggregate_time = commit_time + start.elapsed();
    let request = aggregate.decryption_request(k)?;
    let request_bytes = wire::encode(&request)?.len();

    // committee: the evidence alone (k signatures, k mask digests, the member's own sum) …
    let start = Instant::now();
    for _ in 0..m {
        std::hint::black_box(request.verify(&trust, &participants, job_digest)?);
    }
    let member_verify = start.elapsed() / m as u32;

    // … and the whole answer: evidence, policy and one partial decryption each.
    let mut partials = Vec::with_capacity(m);
    let start = Instant::now();
    for member in &mut members {
        partials.push(member.handle(&request)?);
    }
    let partial = start.elapsed() / m as u32;
    let partial_bytes = wire::encode(&partials[0])?.len();

    // coordinator: combine and decode.
    let start = Instant::now();
    let slots = aggregate.combine(&params, &request, &partials)?;
    let decoded = plan.decode(&slots)?;
    let combine = start.elapsed();
    // Slot by slot, and value by value (a value spans several slots when it is split into
    // limbs, as in the fast profile at ten contributors).
    let correct = slots == expected && decoded[0].exact == plan.decode(&expected)?[0].exact;

    let n = values as f64;
    Ok(SecaggReport {
        profile,
        values,
        contributors: k,
        committee: m,
        correct,
        message_bits: params.message_bits(),
        delta_log2: params.delta_log2(),
        plaintext_sum_s_per_value: secs(plaintext_sum) / (n * k as f64),
        encrypt_s_per_value: secs(encrypt) / n,
        aggregate_s_per_value: secs(add_time) / (n * k as f64),
        aggregate_with_digest_s_per_value: secs(aggregate_time) / (n * k as f64),
        partial_decrypt_s_per_value: secs(partial) / n,
        sign_statement_s_per_value: secs(sign) / n,
        check_statements_s_per_value: secs(check_statements) / (n * k as f64),
        member_verify_s_per_value: secs(member_verify) / n,
        decryption_request_bytes_per_value: request_bytes as f64 / n,
        combine_s_per_value: secs(combine) / n,
        bytes_per_value: bytes as f64 / n,
        partial_decryption_bytes_per_value: partial_bytes as f64 / n,
        tfhe_fheuint32_add_s_per_value: tfhe_add,
        tfhe_fheuint32_add_extrapolated: true,
        tfhe_fheuint32_add_sampled: args.tfhe_sample,
        encrypt_total_s: secs(encrypt),
        aggregate_total_s: secs(add_time),
        aggregate_with_digest_total_s: secs(aggregate_time),
        partial_decrypt_total_s: secs(partial),
        sign_statement_total_s: secs(sign),
        check_statements_total_s: secs(check_statements),
        member_verify_total_s: secs(member_verify),
        combine_total_s: secs(combine),
        plaintext_sum_total_s: secs(plaintext_sum),
    })
}

/// Mean time of one FheUint32 addition with tfhe's default high-level parameters.
fn measure_fheuint32_add(samples: usize) -> Result<f64> {
    use tfhe::prelude::*;
    use tfhe::{generate_keys, set_server_key, ConfigBuilder, FheUint32};
    let (client, server) = generate_keys(ConfigBuilder::default().build());
    set_server_key(server);
    let a = FheUint32::encrypt(1_234_567u32, &client);
    let b = FheUint32::encrypt(7_654_321u32, &client);
    let start = Instant::now();
    let mut sum = a.clone();
    for _ in 0..samples {
        sum = &sum + &b;
    }
    let per_add = secs(start.elapsed()) / samples as f64;
    let clear: u32 = sum.decrypt(&client);
    ensure!(
        clear == 1_234_567u32.wrapping_add(7_654_321u32.wrapping_mul(samples as u32)),
        "tfhe FheUint32 baseline decrypted to a wrong sum"
    );
    Ok(per_add)
}

fn human(s: f64) -> String {
    if s >= 86_400.0 {
        format!("{:.1} days", s / 86_400.0)
    } else if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else if s >= 1e-6 {
        format!("{:.2} µs", s * 1e6)
    } else {
        format!("{:.2} ns", s * 1e9)
    }
}

fn print_table(r: &SecaggReport) {
    let n = r.values as f64;
    let k = r.contributors as f64;
    let ratio = |x: f64| x / r.plaintext_sum_s_per_value;
    println!();
    println!(
        "fedbank secure aggregation — profile {}, {} values, {} contributors, {} committee members ({} message bits, Δ = 2^{})",
        r.profile, r.values, r.contributors, r.committee, r.message_bits, r.delta_log2
    );
    println!(
        "{:<44} {:>12} {:>12} {:>12} {:>12}",
        "step (role)", "total", "per value", "× plaintext", "bytes/value"
    );
    let row = |name: &str, total: f64, per: f64, bytes: &str| {
        println!(
            "{name:<44} {:>12} {:>12} {:>12.0} {bytes:>12}",
            human(total),
            human(per),
            ratio(per)
        );
    };
    row(
        "(a) plaintext f64 sum of all contributions",
        r.plaintext_sum_total_s,
        r.plaintext_sum_s_per_value,
        "8",
    );
    row(
        "(b) encode + encrypt (one participant)",
        r.encrypt_total_s,
        r.encrypt_s_per_value,
        &format!("{:.2}", r.bytes_per_value),
    );
    row(
        "    sign its statement (one participant)",
        r.sign_statement_total_s,
        r.sign_statement_s_per_value,
        "",
    );
    row(
        &format!("    check {} signatures (coordinator)", r.contributors),
        r.check_statements_total_s,
        r.check_statements_s_per_value,
        "",
    );
    row(
        &format!("    add {} contributions (coordinator)", r.contributors),
        r.aggregate_total_s,
        r.aggregate_s_per_value,
        "",
    );
    row(
        "    … with checks and SHA-256 digests",
        r.aggregate_with_digest_total_s,
        r.aggregate_with_digest_s_per_value,
        "",
    );
    row(
        &format!(
            "    verify {} signed masks, sum (one member)",
            r.contributors
        ),
        r.member_verify_total_s,
        r.member_verify_s_per_value,
        &format!("{:.2}", r.decryption_request_bytes_per_value),
    );
    row(
        "    … + policy + partial decrypt (one member)",
        r.partial_decrypt_total_s,
        r.partial_decrypt_s_per_value,
        &format!("{:.2}", r.partial_decryption_bytes_per_value),
    );
    row(
        "    combine + decode (coordinator)",
        r.combine_total_s,
        r.combine_s_per_value,
        "",
    );
    row(
        &format!(
            "(c) tfhe FheUint32 add*, {} values × {}",
            r.values, r.contributors
        ),
        r.tfhe_fheuint32_add_s_per_value * n * k,
        r.tfhe_fheuint32_add_s_per_value,
        "",
    );
    println!(
        "  * measured on {} additions in this run and extrapolated; per value = per value added",
        r.tfhe_fheuint32_add_sampled
    );
    println!(
        "  decoded aggregate equals the exact sum of the encoded inputs: {}",
        if r.correct { "yes" } else { "NO" }
    );
    if r.values == 1_000_000 && r.contributors == 10 {
        let (enc_goal, bytes_goal) = match r.profile {
            Profile::Strict => (2.0, 32.0),
            Profile::Fast => (0.5, 16.0),
        };
        let verdict = |ok: bool| if ok { "met" } else { "missed" };
        println!(
            "  goals at 10^6 values: encrypt < {enc_goal} s {}; add 10 < 0.2 s {}; bytes/value ≤ {bytes_goal} {}{}",
            verdict(r.encrypt_total_s < enc_goal),
            verdict(r.aggregate_total_s < 0.2),
            verdict(r.bytes_per_value <= bytes_goal),
            if r.profile == Profile::Strict {
                format!("; partial decrypt < 1 s {}", verdict(r.partial_decrypt_total_s < 1.0))
            } else {
                String::new()
            }
        );
    }
}
