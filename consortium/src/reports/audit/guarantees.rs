//! The guarantees of docs/threat-model.md checked against the trails, each held, violated or
//! not applicable, before anything is written: a violated one fails the report's verdict.

use super::{Guarantee, GuaranteeState};
use fedbank_common::audit::events::{events_of, TrailEvent};
use fedbank_common::audit::events::{
    AggregateDecrypted, AlertTallyRequested, DecryptionApproved, DecryptionReleased,
    DecryptionRequested, JobResumed, JobStarted, KeyEpochOpened, KeySetup, PrivacySpent,
};
use fedbank_common::audit::{AuditEvent, TrailReport};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn of<E: TrailEvent>(events: &[AuditEvent]) -> Vec<E> {
    events_of::<E>(events).collect()
}

fn guarantee(name: &str, state: GuaranteeState, detail: String) -> Guarantee {
    Guarantee {
        name: name.to_owned(),
        state,
        detail,
    }
}

fn held_if(ok: bool) -> GuaranteeState {
    if ok {
        GuaranteeState::Held
    } else {
        GuaranteeState::Violated
    }
}

/// Aggregates that may have been decrypted before a restart of the coordinator — every member
/// released its share of the manifest, and the coordinator's trail has no record of it — and
/// were decrypted again after it, as the resumed round, over another contributor set: the
/// difference of the two sums would be the figures of the institutions in one set only.
fn redecrypted_after_restart(
    job: &JobStarted,
    c: &[AuditEvent],
    releases: &[(&str, DecryptionReleased)],
    decrypted: &[&DecryptionRequested],
) -> Vec<String> {
    let mut by_manifest: BTreeMap<&str, (BTreeSet<&str>, &DecryptionReleased)> = BTreeMap::new();
    for (member, r) in releases {
        by_manifest
            .entry(r.manifest.as_str())
            .or_insert_with(|| (BTreeSet::new(), r))
            .0
            .insert(member);
    }
    let resumes = of::<JobResumed>(c);
    let mut out = Vec::new();
    for (manifest, (members, r)) in by_manifest {
        let all_released = job.committee.iter().all(|m| members.contains(m.as_str()));
        if !all_released || decrypted.iter().any(|d| d.manifest == manifest) {
            continue;
        }
        let before: BTreeSet<&str> = r.contributors.iter().map(|n| n.as_str()).collect();
        for resume in resumes
            .iter()
            .filter(|x| !x.completed_rounds.contains(&r.round))
        {
            for again in decrypted
                .iter()
                .filter(|d| d.round == resume.next_round && d.quantity == r.quantity)
            {
                let after: BTreeSet<&str> = again.contributors.iter().map(|n| n.as_str()).collect();
                if after != before {
                    out.push(format!(
                        "round {} {} may have been decrypted before the restart (every member released its share) over {} contributors, and was decrypted again as round {} over {}",
                        r.round,
                        r.quantity,
                        before.len(),
                        again.round,
                        after.len()
                    ));
                }
            }
        }
    }
    out
}

/// One key epoch is one key setup, and every epoch after the first was opened by the operator
/// before its setup: the coordinator asked for one setup per epoch (a resumed coordinator may
/// ask again for the same one), every member committed to one setup per epoch, and only to
/// setups the coordinator's trail records.
fn key_epochs(coordinator: &[AuditEvent], nodes: &[(PathBuf, TrailReport)]) -> Guarantee {
    let name = "One key setup per key epoch";
    let mut opened: BTreeSet<u32> = BTreeSet::new();
    let mut setups: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    let mut wrong = Vec::new();
    for e in coordinator {
        if let Some(Ok(o)) = e.read::<KeyEpochOpened>() {
            opened.insert(o.key_epoch);
        } else if let Some(Ok(KeySetup::Requested {
            key_epoch,
            mask_seed,
            committee,
            ..
        })) = e.read::<KeySetup>()
        {
            if key_epoch != 1 && !opened.contains(&key_epoch) {
                wrong.push(format!(
                    "the coordinator set up key epoch {key_epoch} (seq {}) without the operator opening it",
                    e.seq
                ));
            }
            setups
                .entry(key_epoch)
                .or_default()
                .insert(format!("{mask_seed} {committee:?}"));
        }
    }
    for (epoch, distinct) in &setups {
        if distinct.len() > 1 {
            wrong.push(format!(
                "the coordinator asked for {} different setups of key epoch {epoch}",
                distinct.len()
            ));
        }
    }
    for (_, node) in nodes {
        let mut committed: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
        for e in events_of::<KeySetup>(&node.events) {
            if let KeySetup::CommitmentSent {
                key_epoch,
                setup_digest,
                ..
            } = e
            {
                committed.entry(key_epoch).or_default().insert(setup_digest);
            }
        }
        for (epoch, distinct) in committed {
            if distinct.len() > 1 {
                wrong.push(format!(
                    "{} committed to {} setups of key epoch {epoch}",
                    node.writer,
                    distinct.len()
                ));
            }
            if !setups.contains_key(&epoch) {
                wrong.push(format!(
                    "{} committed to a setup of key epoch {epoch} the coordinator's trail does not record",
                    node.writer
                ));
            }
        }
    }
    if setups.is_empty() {
        return guarantee(
            name,
            GuaranteeState::NotApplicable,
            "no key was set up".to_owned(),
        );
    }
    guarantee(
        name,
        held_if(wrong.is_empty()),
        if wrong.is_empty() {
            format!(
                "key epoch(s) {:?}, each set up once{}",
                setups.keys().collect::<Vec<_>>(),
                if opened.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; epoch(s) {:?} opened by the operator first",
                        opened.iter().collect::<Vec<_>>()
                    )
                }
            )
        } else {
            wrong.join("; ")
        },
    )
}

/// Checks every guarantee against the coordinator's trail, the nodes' own trails and the
/// result (only when the result is the file the coordinator bound to its trail).
pub(super) fn check(
    job: &JobStarted,
    coordinator: &TrailReport,
    nodes: &[(PathBuf, TrailReport)],
    result: Option<&Value>,
) -> Vec<Guarantee> {
    let c = &coordinator.events;
    let min = job.min_participants;
    let requested = of::<DecryptionRequested>(c);
    let decrypted: BTreeSet<String> = of::<AggregateDecrypted>(c)
        .into_iter()
        .map(|d| d.manifest)
        .collect();
    let decrypted_requests: Vec<&DecryptionRequested> = requested
        .iter()
        .filter(|r| decrypted.contains(&r.manifest))
        .collect();
    let tallies = of::<AlertTallyRequested>(c);
    let releases: Vec<(&str, DecryptionReleased)> = nodes
        .iter()
        .flat_map(|(_, r)| {
            of::<DecryptionReleased>(&r.events)
                .into_iter()
                .map(move |e| (r.writer.as_str(), e))
        })
        .collect();
    let mut out = Vec::new();

    // Fewest contributors of any decrypted aggregate, at the coordinator and at every member.
    let counts: Vec<usize> = decrypted_requests
        .iter()
        .map(|r| r.contributors.len())
        .chain(tallies.iter().map(|t| t.contributors.len()))
        .chain(releases.iter().map(|(_, r)| r.contributors.len()))
        .collect();
    out.push(match counts.iter().min() {
        None => guarantee(
            "Minimum contributors per aggregate",
            GuaranteeState::NotApplicable,
            "no aggregate was decrypted".to_owned(),
        ),
        Some(&smallest) => guarantee(
            "Minimum contributors per aggregate",
            held_if(smallest >= min),
            format!(
                "{smallest} {} {min} (`min_participants`), the fewest contributors of the {} decryptions the coordinator and the members recorded",
                if smallest >= min { "≥" } else { "<" },
                counts.len()
            ),
        ),
    });

    // One decryption per (round, quantity): never two manifests for one slot, at the
    // coordinator or at any member.
    let mut slots: BTreeMap<(u32, String), BTreeSet<String>> = BTreeMap::new();
    for r in &decrypted_requests {
        slots
            .entry((r.round, r.quantity.clone()))
            .or_default()
            .insert(r.manifest.clone());
    }
    let mut member_slots: BTreeMap<(&str, u32, String), BTreeSet<String>> = BTreeMap::new();
    for (member, r) in &releases {
        member_slots
            .entry((member, r.round, r.quantity.clone()))
            .or_default()
            .insert(r.manifest.clone());
    }
    let mut twice: Vec<String> = slots
        .iter()
        .filter(|(_, m)| m.len() > 1)
        .map(|((round, q), m)| format!("round {round} {q}: {} manifests decrypted", m.len()))
        .collect();
    twice.extend(member_slots.iter().filter(|(_, m)| m.len() > 1).map(
        |((member, round, q), m)| {
            format!(
                "{member} released round {round} {q} for {} manifests",
                m.len()
            )
        },
    ));
    twice.extend(redecrypted_after_restart(
        job,
        c,
        &releases,
        &decrypted_requests,
    ));
    out.push(guarantee(
        "One decryption per (round, quantity)",
        held_if(twice.is_empty()),
        if twice.is_empty() {
            format!("held over {} slots: a second request for a slot with another contributor set would reveal a difference of two sums; members refuse it", slots.len())
        } else {
            twice.join("; ")
        },
    ));

    out.push(key_epochs(c, nodes));

    // Every decrypted aggregate was approved by every committee member.
    let approvals = of::<DecryptionApproved>(c);
    let short: Vec<String> = decrypted_requests
        .iter()
        .filter_map(|r| {
            let by: BTreeSet<&str> = approvals
                .iter()
                .filter(|a| a.manifest == r.manifest)
                .map(|a| a.node.as_str())
                .collect();
            let missing: Vec<&str> = job
                .committee
                .iter()
                .map(|m| m.as_str())
                .filter(|m| !by.contains(m))
                .collect();
            (!missing.is_empty()).then(|| {
                format!(
                    "round {} {} decrypted without {}",
                    r.round,
                    r.quantity,
                    missing.join(", ")
                )
            })
        })
        .collect();
    out.push(if decrypted_requests.is_empty() {
        guarantee(
            "Every member approved every decryption",
            GuaranteeState::NotApplicable,
            "no aggregate was decrypted".to_owned(),
        )
    } else {
        guarantee(
            "Every member approved every decryption",
            held_if(short.is_empty()),
            if short.is_empty() {
                format!(
                    "each of the {} decryptions carries the partial decryption of all {} members",
                    decrypted_requests.len(),
                    job.committee.len()
                )
            } else {
                short.join("; ")
            },
        )
    });

    // k-anonymity of released segments.
    out.push(match (job.k_anonymity, result) {
        (None, _) => guarantee(
            "k-anonymity",
            GuaranteeState::NotApplicable,
            "this job kind releases no per-segment figures".to_owned(),
        ),
        (Some(k), None) => guarantee(
            "k-anonymity",
            GuaranteeState::NotChecked,
            format!("segments of fewer than {k} customers are withheld; no verified result to check it on"),
        ),
        (Some(k), Some(r)) => {
            let sizes: Vec<u64> = r["segments"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s["size"].as_u64()).collect())
                .unwrap_or_default();
            let small: Vec<String> = sizes
                .iter()
                .filter(|s| **s > 0 && **s < k)
                .map(u64::to_string)
                .collect();
            guarantee(
                "k-anonymity",
                held_if(small.is_empty()),
                if small.is_empty() {
                    format!("every one of the {} released segments has at least {k} customers", sizes.len())
                } else {
                    format!("released segments of {} customers, fewer than {k}", small.join(", "))
                },
            )
        }
    });

    // Differential privacy: the spend stays within the budget.
    let spent: Vec<_> = of::<PrivacySpent>(c)
        .into_iter()
        .filter_map(|p| match p {
            PrivacySpent::Released(p) => Some(p),
            PrivacySpent::Added(_) => None,
        })
        .collect();
    out.push(match spent.last() {
        None => guarantee(
            "Differential privacy budget",
            GuaranteeState::NotApplicable,
            "not requested by this job".to_owned(),
        ),
        Some(p) => guarantee(
            "Differential privacy budget",
            held_if(p.epsilon_spent <= p.epsilon_budget * (1.0 + 1e-9)),
            format!(
                "ε = {:.4} spent of a budget of {} (δ = {}) over {} releases",
                p.epsilon_spent,
                p.epsilon_budget,
                p.delta,
                spent.len()
            ),
        ),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedbank_common::audit::events::TrailEvent;
    use fedbank_common::ids::{JobId, NodeId};

    /// Events as a trail holds them (the chain and signatures are the verifier's, not checked
    /// here).
    fn trail(writer: &str, events: Vec<Recorded>) -> TrailReport {
        TrailReport {
            writer: writer.to_owned(),
            role: String::new(),
            public_key: String::new(),
            events: events
                .into_iter()
                .enumerate()
                .map(|(seq, (kind, fields))| AuditEvent {
                    seq: seq as u64,
                    time: String::new(),
                    writer: writer.to_owned(),
                    event: kind.to_owned(),
                    fields,
                    prev: String::new(),
                    hash: String::new(),
                    signature: String::new(),
                })
                .collect(),
        }
    }

    /// An event's kind and fields.
    type Recorded = (&'static str, serde_json::Map<String, Value>);

    fn event<E: TrailEvent>(e: E) -> Recorded {
        (E::KIND.name(), e.fields())
    }

    fn requested(key_epoch: u32, seed: &str) -> Recorded {
        event(KeySetup::Requested {
            job: JobId::new("j").expect("id"),
            key_epoch,
            mask_seed: seed.to_owned(),
            committee: vec![NodeId::new("m").expect("id")],
        })
    }

    fn opened(key_epoch: u32) -> Recorded {
        event(KeyEpochOpened {
            job: JobId::new("j").expect("id"),
            key_epoch,
            previous_epoch: key_epoch - 1,
            first_round: 5,
            decrypted_rounds: vec![1, 2],
            reason: "checkpoint lost".into(),
        })
    }

    fn committed(key_epoch: u32, setup: &str) -> Recorded {
        event(KeySetup::CommitmentSent {
            job: JobId::new("j").expect("id"),
            key_epoch,
            setup_digest: setup.to_owned(),
            share_digest: "s".into(),
        })
    }

    fn state(coordinator: Vec<Recorded>, member: Vec<Recorded>) -> (GuaranteeState, String) {
        let c = trail("coordinator", coordinator);
        let m = (PathBuf::from("m.trail"), trail("m", member));
        let g = key_epochs(&c.events, &[m]);
        (g.state, g.detail)
    }

    #[test]
    fn a_key_epoch_is_set_up_once_and_a_later_one_only_after_the_operator_opened_it() {
        // Epoch 1, then epoch 2 opened by the operator: held.
        let (s, detail) = state(
            vec![
                requested(1, "a"),
                requested(1, "a"),
                opened(2),
                requested(2, "b"),
            ],
            vec![committed(1, "x"), committed(2, "y")],
        );
        assert_eq!(s, GuaranteeState::Held, "{detail}");
        // Epoch 2 set up without the operator: violated.
        let (s, detail) = state(vec![requested(1, "a"), requested(2, "b")], vec![]);
        assert_eq!(s, GuaranteeState::Violated);
        assert!(
            detail.contains("without the operator opening it"),
            "{detail}"
        );
        // Opened only after its setup: violated too.
        let (s, _) = state(
            vec![requested(1, "a"), requested(2, "b"), opened(2)],
            vec![],
        );
        assert_eq!(s, GuaranteeState::Violated);
        // A second setup of epoch 1 (another mask seed), as the coordinator records it and as a
        // member recorded committing to it.
        let (s, detail) = state(
            vec![requested(1, "a"), requested(1, "b")],
            vec![committed(1, "x"), committed(1, "z")],
        );
        assert_eq!(s, GuaranteeState::Violated);
        assert!(
            detail.contains("2 different setups of key epoch 1")
                && detail.contains("m committed to 2 setups of key epoch 1"),
            "{detail}"
        );
        // A member committed to a setup the coordinator's trail does not record.
        let (s, detail) = state(
            vec![requested(1, "a")],
            vec![committed(1, "x"), committed(2, "y")],
        );
        assert_eq!(s, GuaranteeState::Violated);
        assert!(detail.contains("does not record"), "{detail}");
    }
}
