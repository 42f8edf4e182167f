//! Which key epoch a coordinator without a checkpoint runs its job under (docs/faults.md,
//! "Disks and files"; docs/threat-model.md §4): epoch 1 for a job never set up, an epoch the
//! operator opened with `--new-key-epoch` (recorded in the trail as `key.epoch_opened`), or a
//! refusal that says what to do. It reads and appends to the trail; it does not talk to any
//! node.

use super::NodeError;
use fedbank_common::audit::TrailWriter;
use fedbank_common::ids::NodeId;
use fedbank_common::job::ValidJob;
use fedbank_common::protocol::DataCommitment;
use std::collections::BTreeMap;
use std::path::Path;

/// The key epoch a coordinator without a checkpoint runs its job under, and its first round.
///
/// A job whose trail records no key setup starts at epoch 1, round 1. Once its key was set up,
/// running it from the beginning would be a second key setup of the epoch and its rounds
/// decrypted again, perhaps over another set of institutions, so that the two releases could be
/// subtracted. That is refused unless the operator opened a new epoch (`open`, the reason given
/// with `--new-key-epoch`): it is recorded as `key.epoch_opened`, with every round on record,
/// and the job runs again from its beginning under a fresh key ceremony with its rounds
/// numbered after them. An epoch opened earlier but never set up (the coordinator stopped
/// before its key ceremony) is run without a second opening.
pub(super) fn key_epoch_to_run(
    job: &ValidJob,
    trail: &mut TrailWriter,
    state: Option<&Path>,
    open: Option<&str>,
) -> Result<EpochStart, NodeError> {
    use fedbank_common::audit::events::{
        events_of, DecryptionRequested, Joined, KeyEpochOpened, KeySetup, RoundStarted,
    };
    let at = state.map_or_else(|| trail.path().to_path_buf(), Path::to_path_buf);
    let refused = |reason: String| NodeError::Checkpoint {
        path: at.clone(),
        reason,
    };
    let report = fedbank_common::audit::verify(trail.path(), None)
        .map_err(|e| refused(format!("the trail cannot be read back: {e}")))?;
    let id = &job.spec().job;
    // The epochs the coordinator asked a committee to set up (a member's own steps never appear
    // in its trail), and those the operator opened.
    let set_up = events_of::<KeySetup>(&report.events)
        .filter_map(|e| match e {
            KeySetup::Requested { job, key_epoch, .. } if job == *id => Some(key_epoch),
            _ => None,
        })
        .max();
    let opened = events_of::<KeyEpochOpened>(&report.events)
        .filter(|e| e.job == *id)
        .map(|e| e.key_epoch)
        .max();
    let rounds: Vec<u32> = events_of::<RoundStarted>(&report.events)
        .filter(|r| r.job == *id)
        .map(|r| r.round)
        .collect();
    let decrypted: Vec<u32> = events_of::<DecryptionRequested>(&report.events)
        .filter(|d| d.job == *id)
        .map(|d| d.round)
        .collect();
    let first_round = rounds.iter().chain(&decrypted).max().map_or(1, |r| r + 1);
    // The data each participant joined with, as first recorded: it is held to it whatever the
    // epoch (`node.joined` records the first commitment at every join).
    let mut data = BTreeMap::new();
    for j in events_of::<Joined>(&report.events).filter(|j| j.job == *id) {
        if let (Some(rows), Some(sha256)) = (j.data_rows, j.data_sha256) {
            data.entry(j.node).or_insert(DataCommitment {
                rows,
                sha256,
                consent_sha256: j.consent_sha256,
            });
        }
    }
    let held = set_up.unwrap_or(0).max(opened.unwrap_or(0));
    let Some(reason) = open else {
        return match (set_up, opened) {
            (None, None) => Ok(EpochStart {
                key_epoch: 1,
                first_round,
                data,
            }),
            (_, Some(epoch)) if set_up.is_none_or(|s| s < epoch) => Ok(EpochStart {
                key_epoch: epoch,
                first_round,
                data,
            }),
            (Some(epoch), _) | (None, Some(epoch)) => Err(refused(format!(
                "there is no checkpoint, but the trail {} records the key setup of job {id} \
                 (key epoch {epoch}){}; running the job from the beginning would set up a \
                 second key for the same epoch (the committee refuses it) and decrypt its rounds \
                 again. Restore the checkpoint; or, if it is lost, open a new key epoch with \
                 `fedbank coordinator --config … --new-key-epoch \"<why>\"` (recorded in the \
                 trail; the committee still refuses to decrypt a computation again over another \
                 set of institutions); or run the job again under a new job id",
                trail.path().display(),
                if decrypted.is_empty() {
                    String::new()
                } else {
                    format!(
                        " and {} decryptions (rounds {decrypted:?})",
                        decrypted.len()
                    )
                }
            ))),
        };
    };
    if let Some(path) = state.filter(|p| p.exists()) {
        return Err(refused(format!(
            "a new key epoch was asked for, but the checkpoint {} exists: the job resumes from \
             it under its key epoch. A new epoch is only for a job whose checkpoint is lost",
            path.display()
        )));
    }
    if set_up.is_none() {
        return Err(refused(format!(
            "a new key epoch was asked for, but the trail {} records no key setup of job {id}: \
             start the job without --new-key-epoch",
            trail.path().display()
        )));
    }
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > MAX_EPOCH_REASON {
        return Err(refused(format!(
            "--new-key-epoch needs the operator's reason, 1 to {MAX_EPOCH_REASON} bytes (it is \
             recorded in the trail for the auditor)"
        )));
    }
    let start = EpochStart {
        key_epoch: held + 1,
        first_round,
        data,
    };
    let mut decrypted_rounds = decrypted;
    decrypted_rounds.sort_unstable();
    decrypted_rounds.dedup();
    trail
        .record(
            &KeyEpochOpened {
                job: id.clone(),
                key_epoch: start.key_epoch,
                previous_epoch: held,
                first_round,
                decrypted_rounds,
                reason: reason.to_owned(),
            },
            std::time::SystemTime::now(),
        )
        .map_err(|e| refused(format!("the new key epoch cannot be recorded: {e}")))?;
    Ok(start)
}

/// Longest reason the operator may give for a new key epoch.
const MAX_EPOCH_REASON: usize = 2000;

/// The key epoch a job runs under, the number of its first round, and the data each
/// participant joined with before.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct EpochStart {
    /// The key epoch.
    pub key_epoch: u32,
    /// The number of its first round.
    pub first_round: u32,
    /// The data each participant committed to when it first joined the job.
    pub data: BTreeMap<NodeId, DataCommitment>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedbank_common::audit::events::{Joined, KeySetup, RoundStarted};
    use fedbank_common::audit::SigningIdentity;
    use std::time::SystemTime;

    fn job() -> ValidJob {
        #[derive(serde::Deserialize)]
        struct File {
            job: fedbank_common::job::JobSpec,
        }
        let file: File =
            toml::from_str(include_str!("../../../configs/simulate-stats.toml")).expect("job");
        file.job.validate().expect("valid")
    }

    fn trail(dir: &Path) -> TrailWriter {
        let (identity, _) = SigningIdentity::generate().expect("key");
        TrailWriter::create(
            &dir.join("coordinator.trail"),
            &NodeId::new("coordinator").expect("id"),
            "coordinator",
            identity,
            SystemTime::now(),
        )
        .expect("trail")
    }

    /// A trail where epoch `epoch` was set up and rounds 1..=`rounds` started.
    fn set_up(
        trail: &mut TrailWriter,
        job: &ValidJob,
        epoch: u32,
        rounds: std::ops::RangeInclusive<u32>,
    ) {
        let spec = job.spec();
        trail
            .record(
                &Joined {
                    job: spec.job.clone(),
                    node: spec.participants[0].clone(),
                    committee: false,
                    data_rows: Some(100 + u64::from(epoch)),
                    data_sha256: Some(format!("{epoch:064}")),
                    consent_sha256: None,
                },
                SystemTime::now(),
            )
            .expect("joined");
        trail
            .record(
                &KeySetup::Requested {
                    job: spec.job.clone(),
                    key_epoch: epoch,
                    mask_seed: "00".repeat(16),
                    committee: spec.committee.clone(),
                },
                SystemTime::now(),
            )
            .expect("setup");
        for round in rounds {
            trail
                .record(
                    &RoundStarted {
                        job: spec.job.clone(),
                        round,
                        attempt: 0,
                        quantity: "moments".into(),
                        asked: spec.participants.clone(),
                    },
                    SystemTime::now(),
                )
                .expect("round");
        }
    }

    /// The reason of a refusal to start.
    fn refusal(result: Result<EpochStart, NodeError>) -> String {
        match result {
            Err(NodeError::Checkpoint { reason, .. }) => reason,
            other => panic!("not refused as expected: {other:?}"),
        }
    }

    #[test]
    fn a_job_never_set_up_starts_at_epoch_1_round_1() {
        let dir = tempfile::tempdir().expect("dir");
        let mut t = trail(dir.path());
        let start = key_epoch_to_run(&job(), &mut t, None, None).expect("start");
        assert_eq!((start.key_epoch, start.first_round), (1, 1));
        // Nothing to open: the operator is told to start without the flag, and nothing is
        // recorded.
        let events = t.events();
        let text = refusal(key_epoch_to_run(&job(), &mut t, None, Some("why")));
        assert!(text.contains("records no key setup"), "{text}");
        assert_eq!(t.events(), events);
    }

    #[test]
    fn a_set_up_job_without_checkpoint_runs_only_in_an_epoch_the_operator_opens() {
        let dir = tempfile::tempdir().expect("dir");
        let job = job();
        let mut t = trail(dir.path());
        set_up(&mut t, &job, 1, 1..=4);
        let events = t.events();
        let text = refusal(key_epoch_to_run(&job, &mut t, None, None));
        assert!(
            text.contains("(key epoch 1)") && text.contains("--new-key-epoch"),
            "{text}"
        );
        // A checkpoint on disk: resume it, no new epoch; an empty reason: refused.
        let checkpoint = dir.path().join("coordinator.checkpoint.json");
        std::fs::write(&checkpoint, b"{}").expect("checkpoint");
        let text = refusal(key_epoch_to_run(
            &job,
            &mut t,
            Some(&checkpoint),
            Some("why"),
        ));
        assert!(text.contains("the job resumes from it"), "{text}");
        std::fs::remove_file(&checkpoint).expect("lose it");
        let text = refusal(key_epoch_to_run(
            &job,
            &mut t,
            Some(&checkpoint),
            Some("  "),
        ));
        assert!(text.contains("needs the operator's reason"), "{text}");
        assert_eq!(t.events(), events, "a refusal recorded something");

        // Opened: epoch 2 from round 5, recorded once.
        let start =
            key_epoch_to_run(&job, &mut t, Some(&checkpoint), Some("disk lost")).expect("epoch 2");
        assert_eq!((start.key_epoch, start.first_round), (2, 5));
        assert_eq!(t.events(), events + 1);
        // The participant is held to the data it first joined with.
        let first = &start.data[&job.spec().participants[0]];
        assert_eq!(
            (first.rows, first.sha256.clone()),
            (101, format!("{:064}", 1))
        );
        // Started again before its key setup: the opened epoch, without a second opening.
        let again = key_epoch_to_run(&job, &mut t, Some(&checkpoint), None).expect("epoch 2");
        assert_eq!(again, start);
        assert_eq!(t.events(), events + 1);
        // Once epoch 2 is set up, a start without a checkpoint is refused again, and the next
        // opening is epoch 3 after every round on record.
        set_up(&mut t, &job, 2, 5..=6);
        let text = refusal(key_epoch_to_run(&job, &mut t, Some(&checkpoint), None));
        assert!(text.contains("(key epoch 2)"), "{text}");
        let third = key_epoch_to_run(&job, &mut t, Some(&checkpoint), Some("again")).expect("3");
        assert_eq!((third.key_epoch, third.first_round), (3, 7));
        // Its join in epoch 2 recorded other data (as a test trail may); the first counts.
        assert_eq!(third.data[&job.spec().participants[0]].rows, 101);
    }
}
