use super::*;
use crate::ids::{JobId, NodeId};

fn job() -> JobId {
    JobId::new("j").expect("job id")
}
fn node(name: &str) -> NodeId {
    NodeId::new(name).expect("node id")
}

fn stored(entry: &TrailEntry) -> AuditEvent {
    AuditEvent {
        seq: 3,
        time: "2026-12-01T00:00:00Z".into(),
        writer: "insurer".into(),
        event: entry.kind.name().into(),
        fields: entry.fields.clone(),
        prev: String::new(),
        hash: String::new(),
        signature: String::new(),
    }
}

fn round_trips<E: TrailEvent + PartialEq + std::fmt::Debug>(event: E) {
    let line = stored(&TrailEntry::of(&event));
    let back = line.read::<E>().expect("its kind").expect("decodes");
    assert_eq!(back, event);
    check_fields(&line).expect("fields of its kind");
}

#[test]
fn events_read_back_as_written_and_as_their_kind_only() {
    round_trips(ContributionSent {
        job: job(),
        round: 2,
        attempt: 1,
        quantity: "moments".into(),
        digest: "ab".into(),
        roster: "cd".into(),
        clipped_values: 7,
    });
    round_trips(KeySetup::JointKeyFormed {
        job: job(),
        key_epoch: 1,
        members: vec![node("a"), node("b")],
        joint_key_digest: "ef".into(),
    });
    round_trips(ParticipantDropped {
        job: job(),
        round: 4,
        attempt: None,
        node: node("a"),
        reason: "gone".into(),
    });
    round_trips(PrivacySpent::Added(NoiseAdded {
        job: job(),
        round: 1,
        quantity: "classes".into(),
        rho: 0.1,
        noise: vec![AddedNoise {
            name: "classes".into(),
            sensitivity: 1.4,
            sigma: 2.0,
            share_added: 1.0,
        }],
        epsilon_spent: 0.5,
    }));
    round_trips(AlertDecrypted::ByAuditor(TallyDecrypted {
        job: job(),
        round: 9,
        manifest: "01".into(),
        contributors: vec![node("a")],
        digests: vec!["02".into()],
        institutions_over_limit: [("r1".to_owned(), 1u16)].into_iter().collect(),
    }));
    let line = stored(&TrailEntry::of(&RoundCompleted {
        job: job(),
        round: 1,
    }));
    assert!(
        line.read::<JobFailed>().is_none(),
        "another kind is not read"
    );
}

#[test]
fn the_stored_fields_are_the_documented_names() {
    let entry = TrailEntry::of(&KeySetup::Requested {
        job: job(),
        key_epoch: 1,
        mask_seed: "00".into(),
        committee: vec![node("a")],
    });
    assert_eq!(entry.kind, EventKind::KeySetup);
    let names: Vec<&str> = entry.fields.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["committee", "job", "key_epoch", "mask_seed", "stage"]
    );
    assert_eq!(entry.fields["stage"], "requested");
}

#[test]
fn a_misspelt_missing_or_extra_field_is_a_named_error() {
    let mut line = stored(&TrailEntry::of(&ContributionReceived {
        job: job(),
        round: 1,
        quantity: "moments".into(),
        node: node("a"),
        digest: "ab".into(),
    }));
    let digest = line.fields.remove("digest").expect("digest");
    line.fields.insert("digset".into(), digest);
    let err = check_fields(&line).expect_err("misspelt");
    assert!(
        err.to_string()
            .contains("event 3 (contribution.received) of insurer"),
        "{err}"
    );
    line.fields.remove("digset");
    assert!(check_fields(&line).is_err(), "missing");
    let mut stage = stored(&TrailEntry::of(&KeySetup::EveryMemberCommitted {
        job: job(),
        key_epoch: 1,
        commitments_digest: "ab".into(),
    }));
    stage.fields.insert("stage".into(), "commited".into());
    assert!(check_fields(&stage).is_err(), "unknown stage");
}

#[test]
fn every_kind_has_one_name_and_is_found_by_it() {
    let mut names: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
    for &kind in EventKind::ALL {
        assert_eq!(EventKind::from_name(kind.name()), Some(kind));
    }
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), EventKind::ALL.len());
    assert_eq!(EventKind::from_name("node.refused"), None);
}
