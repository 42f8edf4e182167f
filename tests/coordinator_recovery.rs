//! Coordinator crash recovery through the state machines: a coordinator that crashes in the
//! middle of a round and is restarted from its last checkpoint resumes the job from the last
//! completed round, under a fresh round number, and ends with exactly the result of an
//! uninterrupted run; its trail shows the restart. A checkpoint of another job, or a damaged
//! one, is refused.

mod fixture;

use fedbank_common::ids::NodeId;
use fedbank_common::protocol::Inbound;
use fedbank_coordinator::{
    Checkpoint, CoordinatorMachine, CoordinatorOutput, Input, ResumeError, Status,
};
use fedbank_participant::{LocalData, ParticipantMachine, ParticipantOutput};
use fixture::customers::{job, records};
use fixture::drive::run_to_end;
use std::collections::VecDeque;

type S = u128;

fn participants(n: usize) -> Vec<ParticipantMachine<S>> {
    records(n, true)
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            ParticipantMachine::with_data(
                fedbank_transport::dev_pki::shared_credentials(
                    &NodeId::new(format!("p{i}")).expect("id"),
                )
                .expect("credentials"),
                job(n),
                LocalData::Customers(r),
            )
            .expect("machine")
        })
        .collect()
}

/// Drives the job until the coordinator writes a checkpoint `crash_at` accepts, and returns it:
/// everything the coordinator had not yet carried out is lost, as in a crash.
fn run_until_crash(
    coordinator: &mut CoordinatorMachine<S>,
    nodes: &mut [ParticipantMachine<S>],
    crash_at: impl Fn(&Checkpoint) -> bool,
) -> Checkpoint {
    let mut to_coordinator: VecDeque<(NodeId, Vec<u8>)> = VecDeque::new();
    for node in nodes.iter_mut() {
        coordinator
            .handle(Input::Connected(node.id().clone()), 0)
            .expect("connect");
        node.on_connected();
    }
    loop {
        for node in nodes.iter_mut() {
            while let Some(out) = node.poll_output() {
                if let ParticipantOutput::Send(m) = out {
                    to_coordinator.push_back((node.id().clone(), m.encode().expect("encode")));
                }
            }
        }
        while let Some((from, bytes)) = to_coordinator.pop_front() {
            let message = Inbound::<S>::decode(&bytes).expect("decode");
            coordinator
                .handle(Input::Message { from, message }, 0)
                .expect("accepted");
        }
        while let Some(out) = coordinator.poll_output() {
            match out {
                CoordinatorOutput::Checkpoint(c) if crash_at(&c) => return *c,
                CoordinatorOutput::Send { to, message } => {
                    let m =
                        Inbound::<S>::decode(&message.encode().expect("encode")).expect("decode");
                    let node = nodes.iter_mut().find(|n| *n.id() == to).expect("node");
                    node.handle(m).expect("node handles");
                }
                _ => {}
            }
        }
        assert_eq!(
            *coordinator.status(),
            Status::Running,
            "finished before the crash"
        );
    }
}

#[test]
fn a_restarted_coordinator_resumes_and_ends_with_the_uninterrupted_result() {
    let n = 3;
    let uninterrupted = {
        let mut coordinator =
            CoordinatorMachine::<S>::new(job(n), 11, fedbank_transport::dev_pki::shared_trust());
        let mut nodes = participants(n);
        run_to_end(&mut coordinator, &mut nodes).0
    };
    let Some(expected) = finished_model(&uninterrupted) else {
        panic!("{uninterrupted:?}");
    };
    assert!(
        expected.rounds >= 3,
        "enough Newton rounds to crash in the middle"
    );

    // Crash just after round 4 was asked for: rounds 1-3 completed, round 4's contributions
    // are lost.
    let mut coordinator =
        CoordinatorMachine::<S>::new(job(n), 11, fedbank_transport::dev_pki::shared_trust());
    let mut nodes = participants(n);
    let checkpoint = run_until_crash(&mut coordinator, &mut nodes, |c| {
        c.completed.len() == 3 && c.next_round == 5
    });
    drop(coordinator);
    // What the participants sent into the dead connection is lost with it.
    for node in &mut nodes {
        while node.poll_output().is_some() {}
    }
    // The checkpoint survives a round trip through its file format.
    let text = serde_json::to_string(&checkpoint).expect("json");
    let checkpoint: Checkpoint = serde_json::from_str(&text).expect("read back");

    // Restart with the same job; the participants reconnect and say Hello again.
    let mut resumed = CoordinatorMachine::<S>::resume(
        job(n),
        &checkpoint,
        fedbank_transport::dev_pki::shared_trust(),
    )
    .expect("resume");
    let (status, trail) = run_to_end(&mut resumed, &mut nodes);
    let Some(got) = finished_model(&status) else {
        panic!("{status:?}");
    };
    assert_eq!(got.model, expected.model);
    assert_eq!(got.auc, expected.auc);
    assert_eq!(got.rounds, expected.rounds);

    // The trail shows the restart, and no round number was reused.
    let (kind, fields) = &trail[0];
    assert_eq!(*kind, "job.resumed");
    assert_eq!(fields["next_round"], 5);
    let rounds: Vec<u64> = trail
        .iter()
        .filter(|(k, _)| *k == "round.started")
        .filter_map(|(_, f)| f["round"].as_u64())
        .collect();
    assert_eq!(rounds.first(), Some(&5), "{rounds:?}");
    assert!(rounds.iter().all(|r| *r >= 5));
    // Every contribution after the restart is counted once per round.
    for round in &rounds {
        let contributions = trail
            .iter()
            .filter(|(k, f)| *k == "contribution.received" && f["round"].as_u64() == Some(*round))
            .count();
        assert_eq!(contributions, n, "round {round}");
    }
}

#[test]
fn a_checkpoint_of_another_job_or_a_damaged_one_is_refused() {
    let mut coordinator =
        CoordinatorMachine::<S>::new(job(2), 11, fedbank_transport::dev_pki::shared_trust());
    let mut nodes = participants(2);
    let checkpoint = run_until_crash(&mut coordinator, &mut nodes, |c| c.completed.len() == 1);
    assert!(matches!(
        CoordinatorMachine::<S>::resume(
            job(3),
            &checkpoint,
            fedbank_transport::dev_pki::shared_trust()
        ),
        Err(ResumeError::OtherJob { .. })
    ));
    let mut damaged = checkpoint.clone();
    if let Some(key) = damaged.key_bundle.as_mut() {
        key.truncate(key.len() / 2);
    }
    assert!(matches!(
        CoordinatorMachine::<S>::resume(
            job(2),
            &damaged,
            fedbank_transport::dev_pki::shared_trust()
        ),
        Err(ResumeError::Corrupt("key bundle"))
    ));
    let mut replayed = checkpoint.clone();
    replayed.completed[0].decoded.clear();
    assert!(matches!(
        CoordinatorMachine::<S>::resume(
            job(2),
            &replayed,
            fedbank_transport::dev_pki::shared_trust()
        ),
        Err(ResumeError::Replay { round: 1, .. })
    ));
}

/// The released propensity result of a finished job.
fn finished_model(status: &Status) -> Option<fedbank_common::job::propensity::PropensityResult> {
    match status {
        Status::Finished(result) => result.released("propensity"),
        _ => None,
    }
}
