//! A coordinator that deviates, against honest participants and committee members driven in
//! memory through the real codec (docs/threat-model.md §11). The test plays the coordinator by
//! hand: it runs the honest key ceremony and rounds where it needs real material, and then
//! tries each attack of the threat model. Every attack must be refused with nothing
//! individual decrypted, and the honest node's own trail must record the refusal.

use fedbank_common::committee::{ContributionStatement, DecryptionRequest, MASK_DIGEST_LABEL};
use fedbank_common::digest::Digest;
use fedbank_common::endorsement::{Signed, Statement};
use fedbank_common::ids::{JobId, NodeId};
use fedbank_common::job::{stats, FeatureSpec, JobKind, JobSpec, RoundKind, ValidJob};
use fedbank_common::key_ceremony::{CommitmentSet, KeyBundle, RevealedShare, ShareReveal};
use fedbank_common::protocol::{
    Contribution, Inbound, NoticeKind, RevealRequest, RoundRequest, REFUSALS_TOLD,
};
use fedbank_common::roster::{RevealStatement, Roster, RosterEntry};
use fedbank_common::secagg::{
    Ciphertext, Encryptor, JointPublicKey, KeySetup, PublicKeyShare, SecretKeyShare,
};
use fedbank_common::wire::{self, WireMessage};
use fedbank_participant::{LocalTable, ParticipantMachine, ParticipantOutput};
use fedbank_transport::dev_pki::shared_credentials;
use std::collections::BTreeMap;

type S = u64;

fn id(s: &str) -> NodeId {
    NodeId::new(s).expect("id")
}

fn job() -> ValidJob {
    JobSpec {
        job: JobId::new("hostile-test").expect("id"),
        kind: JobKind::STATS,
        profile: fedbank_common::secagg::Profile::Fast,
        participants: (0..4).map(|i| id(&format!("h{i}"))).collect(),
        committee: vec![id("h0"), id("h1")],
        min_participants: 3,
        max_rows: 10_000,
        features: vec![FeatureSpec {
            name: "balance".into(),
            bound: 1000.0,
            min: Some(0.0),
            scale: 100.0,
        }],
        id_column: None,
        histogram_bins: 4,
        key_setup_timeout_ms: 1000,
        round_timeout_ms: 1000,
        decryption_timeout_ms: 1000,
        max_round_retries: 0,
        max_decryption_retries: 0,
        start_quorum: None,
        propensity: None,
        compliance: None,
        auditor: None,
        settings: None,
        segment: None,
    }
    .validate()
    .expect("valid job")
}

/// Each institution's balances: distinct, so that one institution's sum is recognisable.
fn table(i: usize) -> LocalTable {
    let rows = 20 + i;
    let balance = (0..rows)
        .map(|r| Some(100.0 * (i + 1) as f64 + r as f64))
        .collect();
    LocalTable {
        columns: [("balance".to_owned(), balance)].into_iter().collect(),
        rows,
    }
}

/// The honest nodes, what they sent and what they wrote in their trails.
struct Honest {
    job: ValidJob,
    nodes: BTreeMap<NodeId, ParticipantMachine<S>>,
    sent: BTreeMap<NodeId, Vec<Inbound<S>>>,
    /// The refusals each node told the coordinator (kept apart from what it sent).
    told: BTreeMap<NodeId, Vec<String>>,
    trails: BTreeMap<NodeId, Vec<(String, serde_json::Map<String, serde_json::Value>)>>,
}

impl Honest {
    fn new() -> Self {
        let job = job();
        let nodes = job
            .spec()
            .participants
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let credentials = shared_credentials(n).expect("credentials");
                (
                    n.clone(),
                    ParticipantMachine::new(credentials, job.clone(), table(i)),
                )
            })
            .collect();
        Self {
            job,
            nodes,
            sent: BTreeMap::new(),
            told: BTreeMap::new(),
            trails: BTreeMap::new(),
        }
    }

    /// Delivers `message` to `node` through its wire form; the node's answer (or refusal).
    fn deliver<M: WireMessage>(&mut self, node: &str, message: &M) -> Result<(), String> {
        let bytes = wire::encode(message).expect("encode");
        let inbound = Inbound::<S>::decode(&bytes).expect("decode");
        let machine = self.nodes.get_mut(&id(node)).expect("node");
        let outcome = machine.handle(inbound).map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        });
        let told_before = self.told.get(&id(node)).map_or(0, Vec::len);
        while let Some(out) = machine.poll_output() {
            match out {
                ParticipantOutput::Send(m) => {
                    let bytes = m.encode().expect("encode");
                    match Inbound::<S>::decode(&bytes).expect("decode") {
                        Inbound::Notice(n) if n.kind == NoticeKind::MessageRefused => {
                            self.told.entry(id(node)).or_default().push(n.text)
                        }
                        back => self.sent.entry(id(node)).or_default().push(back),
                    }
                }
                ParticipantOutput::Audit { kind, fields } => self
                    .trails
                    .entry(id(node))
                    .or_default()
                    .push((kind.name().to_owned(), fields)),
                _ => {}
            }
        }
        // Every refusal is told to the coordinator, up to the cap per connection.
        let told = self.told.get(&id(node)).map_or(&[][..], Vec::as_slice);
        if let Err(reason) = &outcome {
            if told_before < REFUSALS_TOLD as usize {
                assert!(
                    told.len() == told_before + 1 && told[told_before].contains(reason.as_str()),
                    "{node} did not tell the coordinator it refused: {reason}; told {told:?}"
                );
            }
        } else {
            assert_eq!(
                told.len(),
                told_before,
                "{node} told a refusal of an accepted message"
            );
        }
        outcome
    }

    fn take_sent(&mut self, node: &str) -> Vec<Inbound<S>> {
        self.sent.remove(&id(node)).unwrap_or_default()
    }

    /// Whether `node`'s own trail records a refused message whose reason contains `needle`.
    fn trail_refused(&self, node: &str, needle: &str) -> bool {
        self.trails.get(&id(node)).is_some_and(|t| {
            t.iter().any(|(event, f)| {
                event == "message.refused"
                    && f["reason"].as_str().is_some_and(|r| r.contains(needle))
            })
        })
    }

    fn setup(&self) -> KeySetup {
        self.setup_of_epoch(1)
    }

    fn setup_of_epoch(&self, key_epoch: u32) -> KeySetup {
        KeySetup {
            job: self.job.spec().job.clone(),
            key_epoch,
            profile: self.job.spec().profile,
            mask_seed: 0xbad_c0de,
            committee: self.job.spec().committee.clone(),
        }
    }

    /// Runs the honest key ceremony with the members; the bundle the participants would get.
    fn ceremony(&mut self) -> KeyBundle<S> {
        self.ceremony_of(self.setup())
    }

    /// Runs the key ceremony of `setup` with the members.
    fn ceremony_of(&mut self, setup: KeySetup) -> KeyBundle<S> {
        let mut commitments = Vec::new();
        for m in ["h0", "h1"] {
            self.deliver(m, &setup).expect("key setup");
            match self.take_sent(m).pop() {
                Some(Inbound::Commitment(c)) => commitments.push(c),
                other => panic!("{m} answered the key setup with {other:?}"),
            }
        }
        let set = CommitmentSet { setup, commitments };
        let mut shares = Vec::new();
        for m in ["h0", "h1"] {
            self.deliver(m, &set).expect("commitment set");
            match self.take_sent(m).pop() {
                Some(Inbound::KeyShare(s)) => shares.push(s),
                other => panic!("{m} answered the commitments with {other:?}"),
            }
        }
        KeyBundle {
            commitments: set,
            shares,
        }
    }

    /// Every participant takes `bundle`.
    fn distribute(&mut self, bundle: &KeyBundle<S>) {
        for n in ["h0", "h1", "h2", "h3"] {
            self.deliver(n, bundle).expect("key bundle accepted");
        }
    }

    fn request(&self, round: u32, kind: RoundKind) -> RoundRequest {
        RoundRequest {
            job: self.job.spec().job.clone(),
            round,
            attempt: 0,
            kind,
        }
    }

    /// Asks `nodes` for a round; their signed commitments.
    fn commitments(
        &mut self,
        nodes: &[&str],
        request: &RoundRequest,
    ) -> Vec<(NodeId, Signed<ContributionStatement>)> {
        let mut out = Vec::new();
        for n in nodes {
            self.deliver(n, request).expect("round request");
            for m in self.take_sent(n) {
                if let Inbound::ContributionCommitment(c) = m {
                    out.push((id(n), c.statement));
                }
            }
        }
        out
    }

    /// Sends `roster` to `nodes`; the contributions they reveal against it.
    fn reveals(&mut self, nodes: &[&str], roster: &Roster) -> Vec<(NodeId, Contribution<S>)> {
        let mut out = Vec::new();
        for n in nodes {
            let request = RevealRequest {
                roster: roster.clone(),
            };
            self.deliver(n, &request).expect("reveal request");
            for m in self.take_sent(n) {
                if let Inbound::Contribution(c) = m {
                    out.push((id(n), c));
                }
            }
        }
        out
    }

    /// Asks `nodes` for a round as an honest coordinator does: commitments, the roster of
    /// all of them, the reveals.
    fn collect(&mut self, nodes: &[&str], request: &RoundRequest) -> Collected {
        let statements = self.commitments(nodes, request);
        let roster = roster_of(&self.job, request, &statements);
        let contributions = self.reveals(nodes, &roster);
        Collected {
            statements,
            roster,
            contributions,
        }
    }
}

/// What an honest coordinator collects in a round.
struct Collected {
    statements: Vec<(NodeId, Signed<ContributionStatement>)>,
    roster: Roster,
    contributions: Vec<(NodeId, Contribution<S>)>,
}

/// The roster an honest coordinator fixes for `statements`.
fn roster_of(
    job: &ValidJob,
    request: &RoundRequest,
    statements: &[(NodeId, Signed<ContributionStatement>)],
) -> Roster {
    let mut entries: Vec<RosterEntry> = statements
        .iter()
        .map(|(n, s)| RosterEntry {
            participant: n.clone(),
            statement: s.statement.digest(),
        })
        .collect();
    entries.sort_by(|a, b| a.participant.cmp(&b.participant));
    Roster {
        job: job.spec().job.clone(),
        // The epoch the participants encrypted under.
        key_epoch: statements.first().map_or(1, |(_, s)| s.statement.key_epoch),
        round: request.round,
        attempt: request.attempt,
        quantity: request.kind.label().to_owned(),
        entries,
    }
}

/// The decryption request an honest coordinator would build from the first `take`
/// contributions of `collected` (every statement committed, the same roster).
fn honest_request(
    job: &ValidJob,
    round: u32,
    quantity: &str,
    collected: &Collected,
    take: usize,
) -> DecryptionRequest<S> {
    let setup = KeySetup {
        job: job.spec().job.clone(),
        key_epoch: collected.roster.key_epoch,
        profile: job.spec().profile,
        mask_seed: 0,
        committee: job.spec().committee.clone(),
    };
    let first = &collected.contributions[0].1.ciphertext;
    let mut aggregate =
        fedbank_coordinator::RoundAggregate::<S>::new(setup, round, quantity, first.value_count);
    for (n, statement) in &collected.statements {
        aggregate
            .commit(n.clone(), statement.clone())
            .expect("honest commitment");
    }
    assert_eq!(aggregate.fix_roster(), Some(&collected.roster));
    for (n, c) in collected.contributions.iter().take(take) {
        aggregate
            .add(n.clone(), c.ciphertext.clone(), c.reveal.clone())
            .expect("honest contribution");
    }
    aggregate.decryption_request(1).expect("request")
}

/// The members' answers to `request`: partial decryptions, or the refusal text.
fn ask_members(h: &mut Honest, request: &DecryptionRequest<S>) -> Vec<Result<Vec<S>, String>> {
    let mut answers = Vec::new();
    for m in ["h0", "h1"] {
        let outcome = h.deliver(m, request);
        let sent = h.take_sent(m);
        answers.push(match (outcome, sent.into_iter().next()) {
            (Ok(()), Some(Inbound::Partial(p))) => Ok(p.values),
            (Ok(()), Some(Inbound::Notice(n))) => Err(n.text),
            (Err(e), _) => Err(e),
            (Ok(()), other) => Err(format!("no answer: {other:?}")),
        });
    }
    answers
}

fn refused(answers: &[Result<Vec<S>, String>], needle: &str) -> bool {
    answers
        .iter()
        .all(|a| matches!(a, Err(text) if text.contains(needle)))
}

/// Attack 1: the coordinator hands participants a key of its own, or a member's share
/// changed, or a second key later. Nobody encrypts under it.
#[test]
fn a_substituted_joint_key_is_refused_and_the_participants_encrypt_under_none() {
    let mut h = Honest::new();
    let honest = h.ceremony();
    // The coordinator's own key: it makes two "member" shares it knows the secrets of and signs
    // them with its own certificate (the only one it has).
    let setup = h.setup();
    let coordinator = shared_credentials(&id("coordinator")).expect("credentials");
    let fake_shares: Vec<PublicKeyShare<S>> = setup
        .committee
        .iter()
        .map(|m| {
            SecretKeyShare::<S>::generate(&setup, m)
                .expect("share")
                .public_share()
        })
        .collect();
    let mut own = honest.clone();
    for (revealed, fake) in own.shares.iter_mut().zip(&fake_shares) {
        revealed.share = fake.clone();
        revealed.reveal = coordinator.signer.sign(ShareReveal {
            commitments: honest.commitments.digest(),
            ..revealed.reveal.statement.clone()
        });
        revealed.reveal.signer = fake.member().clone();
    }
    let err = h
        .deliver("h2", &own)
        .expect_err("a key signed by the coordinator");
    assert!(err.contains("certificate names"), "{err}");
    // A member's genuine reveal, with the share body swapped for the coordinator's.
    let mut swapped = honest.clone();
    swapped.shares[1].share = fake_shares[1].clone();
    let err = h.deliver("h2", &swapped).expect_err("a swapped share");
    assert!(err.contains("share reveal"), "{err}");
    // A bundle that leaves a member out.
    let mut short = honest.clone();
    short.shares.pop();
    let err = h.deliver("h3", &short).expect_err("a member left out");
    assert!(err.contains("revealed shares came from"), "{err}");
    assert!(h.trail_refused("h2", "share reveal") && h.trail_refused("h3", "revealed shares"));
    // Without an accepted key a participant computes nothing.
    let err = h
        .deliver("h2", &h.request(1, stats::moments_round()))
        .expect_err("no key yet");
    assert!(err.contains("before the joint key"), "{err}");
    assert!(h
        .take_sent("h2")
        .iter()
        .all(|m| !matches!(m, Inbound::Contribution(_))));

    // The honest bundle is accepted, and then never replaced, not even by another genuine
    // ceremony of the same committee under a new seed.
    h.distribute(&honest);
    let key: JointPublicKey<S> = honest
        .verify(&fedbank_transport::dev_pki::shared_trust())
        .expect("verifies");
    let accepted = h.trails[&id("h2")]
        .iter()
        .find(|(e, _)| e == "key.accepted")
        .expect("key.accepted in the trail");
    assert_eq!(accepted.1["joint_key_digest"], key.digest().to_hex());
    let mut again = Honest::new();
    let other = again.ceremony();
    let err = h.deliver("h2", &other).expect_err("a second key");
    assert!(err.contains("never replaced"), "{err}");
    assert!(h.trail_refused("h2", "never replaced"));
}

/// Rogue key: a member may not reveal before every member committed, and a reveal that is not
/// the committed share is refused by the participants.
#[test]
fn a_member_reveals_only_against_the_full_commitment_set_and_rogue_shares_are_refused() {
    let mut h = Honest::new();
    let setup = h.setup();
    h.deliver("h0", &setup).expect("setup");
    let Some(Inbound::Commitment(c0)) = h.take_sent("h0").pop() else {
        panic!("no commitment")
    };
    // Only h0's commitment: h0 must not reveal yet (else h1 could choose its share after it).
    let partial = CommitmentSet {
        setup: setup.clone(),
        commitments: vec![c0.clone()],
    };
    let err = h.deliver("h0", &partial).expect_err("an incomplete set");
    assert!(err.contains("commitments came from"), "{err}");
    assert!(h.take_sent("h0").is_empty(), "nothing revealed");

    // h1 turns rogue: it commits to one share, then reveals another (chosen after seeing h0's).
    let honest = h.ceremony();
    let mut rogue = honest.clone();
    let rogue_share = SecretKeyShare::<S>::generate(&setup, &id("h1"))
        .expect("share")
        .public_share();
    let h1 = shared_credentials(&id("h1")).expect("credentials");
    rogue.shares[1] = RevealedShare {
        reveal: h1.signer.sign(ShareReveal {
            share: rogue_share.digest(),
            ..honest.shares[1].reveal.statement.clone()
        }),
        share: rogue_share,
    };
    let err = h.deliver("h3", &rogue).expect_err("a rogue share");
    assert!(err.contains("not the one committed to"), "{err}");
}

/// Attacks 2 and 3: the coordinator asks a member to decrypt a mask of its choosing, or one
/// contribution under several names. The members sum only signed masks, once each.
#[test]
fn members_decrypt_only_the_sum_of_signed_masks_of_distinct_contributions() {
    let mut h = Honest::new();
    let bundle = h.ceremony();
    h.distribute(&bundle);
    let request = h.request(1, stats::moments_round());
    let collected = h.collect(&["h0", "h1", "h2", "h3"], &request);
    assert_eq!(collected.contributions.len(), 4);
    let label = stats::moments_round().label();
    let genuine = honest_request(&h.job, 1, label, &collected, 3);

    // A chosen mask (a constant polynomial) in place of a contributor's signed one.
    let mut chosen = genuine.clone();
    for c in chosen.contributions[0].masks.iter_mut() {
        *c = 1 << 40;
    }
    chosen.manifest.aggregate_mask_digest = Digest::of_scalars(
        MASK_DIGEST_LABEL,
        &chosen.contributions.iter().fold(
            vec![0u64; chosen.contributions[0].masks.len()],
            |mut acc, c| {
                fedbank_common::secagg::add_assign(&mut acc, &c.masks);
                acc
            },
        ),
    );
    assert!(refused(
        &ask_members(&mut h, &chosen),
        "is not the one it signed"
    ));

    // A contributor's statement re-signed by the coordinator: as the coordinator's, and under
    // the contributor's name.
    let coordinator = shared_credentials(&id("coordinator")).expect("credentials");
    let mut forged = genuine.clone();
    forged.contributions[0].statement = coordinator
        .signer
        .sign(forged.contributions[0].statement.statement.clone());
    assert!(refused(&ask_members(&mut h, &forged), "(signer)"));
    forged.contributions[0].statement.signer = genuine.manifest.contributors[0].clone();
    let answers = ask_members(&mut h, &forged);
    assert!(refused(&answers, "certificate names"), "{answers:?}");

    // h0's contribution listed under three names (its statement re-labelled, and a copy).
    let mut renamed = genuine.clone();
    renamed.contributions[1] = renamed.contributions[0].clone();
    renamed.manifest.ciphertext_digests[1] = renamed.manifest.ciphertext_digests[0];
    let answers = ask_members(&mut h, &renamed);
    assert!(
        answers.iter().all(|a| a.is_err()),
        "one update under two names must be refused: {answers:?}"
    );

    // A manifest of too few contributors, the remaining ones dropped.
    let mut one = genuine.clone();
    one.manifest.contributors.truncate(1);
    one.manifest.ciphertext_digests.truncate(1);
    one.contributions.truncate(1);
    assert!(refused(&ask_members(&mut h, &one), "at least 3"));

    // Nothing was decrypted so far; the genuine request is, once.
    for m in ["h0", "h1"] {
        assert!(h.trails[&id(m)]
            .iter()
            .all(|(e, _)| e != "decryption.released"));
        assert!(
            h.trail_refused(m, "refused")
                || h.trails[&id(m)]
                    .iter()
                    .any(|(e, _)| e == "decryption.refused")
        );
    }
    let answers = ask_members(&mut h, &genuine);
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
}

/// Attack 4: differencing. The same computation asked again under a new round number and
/// decrypted over a set without one participant; old round numbers; foreign round kinds.
#[test]
fn differencing_by_replay_is_refused_by_participants_and_members() {
    let mut h = Honest::new();
    let bundle = h.ceremony();
    h.distribute(&bundle);
    let label = stats::moments_round().label();
    let first = h.collect(
        &["h0", "h1", "h2", "h3"],
        &h.request(1, stats::moments_round()),
    );
    let all = honest_request(&h.job, 1, label, &first, 4);
    let answers = ask_members(&mut h, &all);
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");

    // Round 2 asks for the same computation; participants answer (a re-run after a lost
    // decryption is legitimate), but the members refuse it over a set without h3.
    let again = h.collect(&["h0", "h1", "h2"], &h.request(2, stats::moments_round()));
    assert_eq!(again.contributions.len(), 3);
    let without = honest_request(&h.job, 2, label, &again, 3);
    let answers = ask_members(&mut h, &without);
    assert!(
        refused(&answers, "already decrypted over another contributor set"),
        "{answers:?}"
    );
    // The contributions of round 1 cannot be used in another decryption either.
    let mut reused = honest_request(&h.job, 1, label, &first, 3);
    reused.manifest.round = 7;
    let answers = ask_members(&mut h, &reused);
    assert!(answers.iter().all(Result::is_err), "{answers:?}");

    // An old round number, and a round kind a stats job never computes.
    let err = h
        .deliver("h2", &h.request(1, stats::moments_round()))
        .expect_err("old round");
    assert!(err.contains("round numbers only increase"), "{err}");
    let lifecycle = fedbank_common::job::segment::SegmentRound::Lifecycle {
        reference_day: None,
    };
    let foreign = RoundKind::Registered(lifecycle.to_round().expect("a segment round"));
    let err = h
        .deliver("h2", &h.request(9, foreign))
        .expect_err("foreign kind");
    assert!(err.contains("never computes"), "{err}");
    assert!(
        h.trail_refused("h2", "round numbers only increase")
            && h.trail_refused("h2", "never computes")
    );
}

/// A participant answers no more rounds than its job can need.
#[test]
fn a_participant_answers_no_more_rounds_than_the_job_can_need() {
    let mut h = Honest::new();
    let bundle = h.ceremony();
    h.distribute(&bundle);
    let budget = fedbank_common::round_plan::budget(&h.job);
    let mut answered = 0;
    for round in 1..=budget + 5 {
        let edges = vec![vec![
            f64::from(round),
            f64::from(round) + 1.0,
            f64::from(round) + 2.0,
        ]];
        match h.deliver(
            "h3",
            &h.request(round, stats::histogram_round(edges).expect("round")),
        ) {
            Ok(()) => answered += 1,
            Err(e) => {
                assert!(e.contains("more than the"), "{e}");
                break;
            }
        }
    }
    assert_eq!(answered, budget);
}

/// A dishonest participant encrypts values far outside its declared bound: the aggregate is
/// refused rather than released, and the limit it hit is what honest contributions allow.
#[test]
fn an_out_of_range_contribution_is_refused_at_decoding() {
    let mut h = Honest::new();
    let bundle = h.ceremony();
    h.distribute(&bundle);
    let trust = fedbank_transport::dev_pki::shared_trust();
    let key = bundle.verify(&trust).expect("key");
    let request = h.request(1, stats::moments_round());
    let mut statements = h.commitments(&["h0", "h1", "h2"], &request);
    let plan = h.job.plan(&stats::moments_round()).expect("plan");
    // h3 encrypts a quarter of the message space in every slot and signs it as its own.
    let big: i128 = 1 << (h.job.params().message_bits() - 2);
    let encryptor = Encryptor::new(key, h.job.params().clone()).expect("encryptor");
    let ct: Ciphertext<S> = encryptor
        .encrypt(&vec![big; plan.slot_count()])
        .expect("encrypt");
    let h3 = shared_credentials(&id("h3")).expect("credentials");
    let mut statement = statements[0].1.statement.clone();
    statement.mask_digest = Digest::of_scalars(MASK_DIGEST_LABEL, &ct.masks);
    statement.ciphertext_digest = ct.digest();
    let statement = h3.signer.sign(ContributionStatement { ..statement });
    statements.push((id("h3"), statement.clone()));
    let roster = roster_of(&h.job, &request, &statements);
    let mut contributions = h.reveals(&["h0", "h1", "h2"], &roster);
    contributions.push((
        id("h3"),
        Contribution {
            round: 1,
            attempt: 0,
            ciphertext: ct,
            reveal: h3
                .signer
                .sign(RevealStatement::of(&statement.statement, &roster)),
        },
    ));
    let label = stats::moments_round().label();
    let setup = h.setup();
    let mut aggregate = fedbank_coordinator::RoundAggregate::<S>::new(
        KeySetup {
            mask_seed: 0,
            ..setup
        },
        1,
        label,
        plan.slot_count() as u64,
    );
    for (n, statement) in &statements {
        aggregate
            .commit(n.clone(), statement.clone())
            .expect("commit");
    }
    aggregate.fix_roster();
    for (n, c) in &contributions {
        aggregate
            .add(n.clone(), c.ciphertext.clone(), c.reveal.clone())
            .expect("add");
    }
    let decryption = aggregate.decryption_request(3).expect("request");
    let partials: Vec<_> = ask_members(&mut h, &decryption)
        .into_iter()
        .zip(["h0", "h1"])
        .map(|(p, m)| fedbank_common::committee::PartialDecryption {
            member: id(m),
            manifest_digest: decryption.manifest.digest(),
            values: p.expect("partial"),
        })
        .collect();
    let slots = aggregate
        .combine(h.job.params(), &decryption, &partials)
        .expect("combine");
    let err = plan
        .check_honest_range(&slots, 4)
        .expect_err("out of range");
    assert!(err.to_string().contains("nothing is released"), "{err}");
    // The same slots with h3's excess taken out are in range: the check refuses only what no
    // honest set of four contributions can produce.
    let within: Vec<i128> = slots.iter().map(|s| s - big).collect();
    plan.check_honest_range(&within, 4)
        .expect("the honest part of the sum is in range");
}

/// A decryption request as a deviating coordinator builds it: `roster`, and per contributor its
/// signed statement, its signed reveal and its masks (in contributor order).
fn forged_request(
    job: &ValidJob,
    roster: &Roster,
    entries: Vec<(
        NodeId,
        Signed<ContributionStatement>,
        Signed<RevealStatement>,
        Vec<S>,
    )>,
) -> DecryptionRequest<S> {
    let mut sum = vec![0 as S; entries[0].3.len()];
    for (_, _, _, masks) in &entries {
        fedbank_common::secagg::add_assign(&mut sum, masks);
    }
    let manifest = fedbank_common::policy::Manifest {
        job: job.spec().job.clone(),
        key_epoch: 1,
        profile: job.spec().profile,
        round: roster.round,
        quantity: roster.quantity.clone(),
        value_count: entries[0].1.statement.value_count,
        contributors: entries.iter().map(|e| e.0.clone()).collect(),
        ciphertext_digests: entries
            .iter()
            .map(|e| e.1.statement.ciphertext_digest)
            .collect(),
        aggregate_mask_digest: Digest::of_scalars(MASK_DIGEST_LABEL, &sum),
    };
    DecryptionRequest {
        manifest,
        roster: roster.clone(),
        contributions: entries
            .into_iter()
            .map(
                |(_, statement, reveal, masks)| fedbank_common::committee::ContributedMask {
                    statement,
                    reveal,
                    masks,
                },
            )
            .collect(),
    }
}

/// Attack 6, second half: a participant colluding with the coordinator chooses its mask after
/// seeing the honest ones, so that the summed mask is a constant polynomial — whose partial
/// decryption would be a member's key share times a constant. Commit-then-reveal leaves it no
/// such choice: the honest masks are revealed only against a roster fixed before, and a member
/// decrypts only contributions revealed against the same roster that lists each of them.
#[test]
fn a_mask_chosen_after_the_honest_ones_is_never_decrypted() {
    let mut h = Honest::new();
    let bundle = h.ceremony();
    h.distribute(&bundle);
    let key = bundle
        .verify(&fedbank_transport::dev_pki::shared_trust())
        .expect("key");
    let request = h.request(1, stats::moments_round());
    // The honest three commit; the coordinator fixes their roster and sees their masks.
    let statements = h.commitments(&["h0", "h1", "h2"], &request);
    let first = roster_of(&h.job, &request, &statements);
    let honest = h.reveals(&["h0", "h1", "h2"], &first);
    assert_eq!(honest.len(), 3);

    // h3, colluding, now makes a mask that brings the sum to the constant polynomial 2^40.
    let slots = h
        .job
        .plan(&stats::moments_round())
        .expect("plan")
        .slot_count();
    let encryptor = Encryptor::new(key, h.job.params().clone()).expect("encryptor");
    let mut adaptive: Ciphertext<S> = encryptor.encrypt(&vec![0; slots]).expect("encrypt");
    let n = h.job.params().ring().polynomial_size;
    let mut target = vec![0 as S; adaptive.masks.len()];
    for chunk in target.chunks_mut(n) {
        chunk[0] = 1 << 40;
    }
    adaptive.masks = target.clone();
    for (_, c) in &honest {
        for (m, h) in adaptive.masks.iter_mut().zip(&c.ciphertext.masks) {
            *m = m.wrapping_sub(*h);
        }
    }
    let h3 = shared_credentials(&id("h3")).expect("credentials");
    let mut statement = statements[0].1.statement.clone();
    statement.mask_digest = Digest::of_scalars(MASK_DIGEST_LABEL, &adaptive.masks);
    statement.ciphertext_digest = adaptive.digest();
    let h3_statement = h3.signer.sign(statement);
    let mut all = statements.clone();
    all.push((id("h3"), h3_statement.clone()));
    let second = roster_of(&h.job, &request, &all);
    let entries = |roster: &Roster| {
        let mut e: Vec<_> = statements
            .iter()
            .zip(&honest)
            .map(|((n, s), (_, c))| {
                (
                    n.clone(),
                    s.clone(),
                    c.reveal.clone(),
                    c.ciphertext.masks.clone(),
                )
            })
            .collect();
        e.push((
            id("h3"),
            h3_statement.clone(),
            h3.signer
                .sign(RevealStatement::of(&h3_statement.statement, roster)),
            adaptive.masks.clone(),
        ));
        e
    };

    // (a) Under the roster that lists h3's late commitment: the honest reveals bind the first.
    let late = forged_request(&h.job, &second, entries(&second));
    let answers = ask_members(&mut h, &late);
    assert!(
        refused(
            &answers,
            "did not reveal this contribution against this roster"
        ),
        "{answers:?}"
    );
    // (b) Under the first roster, which does not list it.
    let unlisted = forged_request(&h.job, &first, entries(&first));
    let answers = ask_members(&mut h, &unlisted);
    assert!(
        refused(&answers, "is not committed in the round's roster"),
        "{answers:?}"
    );
    // (c) The second roster sent to an honest participant that revealed against the first:
    // it reveals nothing more, and says so in its trail.
    let err = h
        .deliver(
            "h1",
            &RevealRequest {
                roster: second.clone(),
            },
        )
        .expect_err("a second roster");
    assert!(err.contains("revealed against one roster only"), "{err}");
    assert!(h.take_sent("h1").is_empty());
    assert!(h.trail_refused("h1", "revealed against one roster only"));
    // (d) A roster that does not list a participant's own commitment gets nothing from it.
    let request2 = h.request(2, stats::moments_round());
    let mine = h.commitments(&["h2"], &request2);
    let mut not_mine = roster_of(&h.job, &request2, &mine);
    not_mine.entries[0].statement = Digest::of("another commitment", b"");
    let err = h
        .deliver("h2", &RevealRequest { roster: not_mine })
        .expect_err("not listed");
    assert!(
        err.contains("does not list this node's own commitment"),
        "{err}"
    );
    assert!(h
        .take_sent("h2")
        .iter()
        .all(|m| matches!(m, Inbound::Notice(_))));

    // Nothing was decrypted; the honest sum of the first roster is, and the summed mask there
    // is not the one h3 aimed at.
    for m in ["h0", "h1"] {
        assert!(h.trails[&id(m)]
            .iter()
            .all(|(e, _)| e != "decryption.released"));
    }
    let genuine = forged_request(
        &h.job,
        &first,
        entries(&first).into_iter().take(3).collect(),
    );
    assert_ne!(
        genuine.manifest.aggregate_mask_digest,
        Digest::of_scalars(MASK_DIGEST_LABEL, &target)
    );
    let answers = ask_members(&mut h, &genuine);
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
}

/// One key epoch is one key setup, ever: a member that holds its share of epoch 1 refuses any
/// other setup of epoch 1 (another mask seed — what a coordinator restarted without its
/// checkpoint sends — or an earlier epoch), records the refusal in its own trail, and keeps the
/// share it has; the same setup again (after a reconnect) gets the same commitment.
#[test]
fn a_member_refuses_a_second_key_setup_of_an_epoch_it_holds() {
    let mut h = Honest::new();
    let first = h.setup();
    h.deliver("h0", &first).expect("first setup");
    let committed = match h.take_sent("h0").pop() {
        Some(Inbound::Commitment(c)) => c,
        other => panic!("h0 answered the key setup with {other:?}"),
    };
    // The same setup again: the same share, committed again.
    h.deliver("h0", &first).expect("the same setup again");
    assert!(matches!(h.take_sent("h0").pop(), Some(Inbound::Commitment(c)) if c == committed));
    for second in [
        KeySetup {
            mask_seed: 0x5eed,
            ..first.clone()
        },
        KeySetup {
            key_epoch: 0,
            ..first.clone()
        },
    ] {
        let err = h.deliver("h0", &second).expect_err("a second setup");
        assert!(
            err.contains("second key setup")
                && err.contains(&format!("key epoch {}", second.key_epoch)),
            "{err}"
        );
        assert!(h.take_sent("h0").is_empty(), "h0 answered a second setup");
    }
    assert!(h.trail_refused("h0", "one key epoch is one key setup"));
    // The share it holds is still the one it committed to: the ceremony of the first setup
    // goes on.
    h.deliver("h0", &first).expect("the first setup once more");
    assert!(matches!(h.take_sent("h0").pop(), Some(Inbound::Commitment(c)) if c == committed));
    // A later epoch (an operator's new key epoch) is a new setup, not a second one.
    h.deliver(
        "h0",
        &KeySetup {
            key_epoch: 2,
            ..first
        },
    )
    .expect("a new epoch");
}

/// A later key epoch (what an operator opens after the coordinator lost its checkpoint, or what a
/// deviating coordinator sets up on its own) decrypts nothing the earlier epoch would have
/// refused: the members take fresh shares but keep their record, so a slot decrypted in epoch 1
/// is not decrypted again, and a computation decrypted over all four participants is not
/// decrypted over three; the same computation over the same four may be (it reveals nothing
/// new). Participants take the later epoch's key, and never go back to an earlier one.
#[test]
fn a_later_key_epoch_decrypts_nothing_the_earlier_one_refused() {
    let mut h = Honest::new();
    let first = h.ceremony();
    h.distribute(&first);
    let label = stats::moments_round().label();
    let all = ["h0", "h1", "h2", "h3"];
    let round_1 = h.collect(&all, &h.request(1, stats::moments_round()));
    let request = honest_request(&h.job, 1, label, &round_1, 4);
    let answers = ask_members(&mut h, &request);
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");

    // Epoch 2: fresh shares, a new joint key every participant takes.
    let second = h.ceremony_of(h.setup_of_epoch(2));
    assert_ne!(
        second.shares[0].share.digest(),
        first.shares[0].share.digest(),
        "epoch 2 has shares of its own"
    );
    h.distribute(&second);
    // The key of epoch 1 is not taken back.
    let err = h.deliver("h2", &first).expect_err("an earlier epoch's key");
    assert!(err.contains("a key is never replaced"), "{err}");

    // The same computation over three of the four, under epoch 2: refused by the record of
    // epoch 1.
    let without = h.collect(&["h0", "h1", "h2"], &h.request(2, stats::moments_round()));
    assert!(without
        .statements
        .iter()
        .all(|(_, s)| s.statement.key_epoch == 2));
    let request = honest_request(&h.job, 2, label, &without, 3);
    let answers = ask_members(&mut h, &request);
    assert!(
        refused(&answers, "already decrypted over another contributor set"),
        "{answers:?}"
    );
    // The slot of round 1 under another manifest: refused.
    let again = h.collect(&all, &h.request(3, stats::moments_round()));
    let mut slot_1 = honest_request(&h.job, 3, label, &again, 4);
    slot_1.manifest.round = 1;
    let answers = ask_members(&mut h, &slot_1);
    assert!(answers.iter().all(Result::is_err), "{answers:?}");
    // The same computation over the same four, under epoch 2: decrypted.
    let request = honest_request(&h.job, 3, label, &again, 4);
    let answers = ask_members(&mut h, &request);
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
}
