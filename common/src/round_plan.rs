//! What a participant agrees to compute for a job: which round kinds, how many rounds, and the
//! digest that names each computation (docs/threat-model.md, "Participants answer only the
//! job's plan").
//!
//! A coordinator that deviates could ask for round kinds of another job (a FedAvg round of a
//! Newton job escapes the privacy accountant), for the same computation again under another
//! round number (to decrypt it over a different contributor set), or for rounds without end.
//! [`RoundPlan`] is the participant's own view of the job, built from the job file it agreed
//! to, that refuses all three; the committee's record refuses the second as well, by the
//! computation digest each participant signs.

use crate::digest::Digest;
use crate::job::{RoundKind, ValidJob};

/// Rounds of a job run again after a coordinator restart, on top of its plan.
pub const RESTART_ALLOWANCE: u32 = 16;

/// Why a participant refused a round request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanRefusal {
    /// The round kind is not one this job computes.
    #[error("round {round} asks for '{kind}', which a {job_kind} job never computes")]
    ForeignKind {
        /// Round.
        round: u32,
        /// Kind asked for.
        kind: &'static str,
        /// The job's kind.
        job_kind: &'static str,
    },
    /// The round number does not increase.
    #[error("round {round} comes after round {last}; round numbers only increase")]
    NotIncreasing {
        /// Round asked for.
        round: u32,
        /// Latest round answered.
        last: u32,
    },
    /// A retry of a round asks for another computation than its first attempt.
    #[error("round {round} attempt {attempt} asks for another computation than the round's earlier attempt")]
    ChangedRetry {
        /// Round.
        round: u32,
        /// Attempt.
        attempt: u32,
    },
    /// The attempt number does not increase.
    #[error("round {round} attempt {attempt} does not follow attempt {last}")]
    OldAttempt {
        /// Round.
        round: u32,
        /// Attempt asked.
        attempt: u32,
        /// Latest attempt answered.
        last: u32,
    },
    /// More rounds than the job can need.
    #[error("round {round} would be this participant's round number {count}, more than the {budget} that job {job} can need")]
    OverBudget {
        /// Job.
        job: String,
        /// Round.
        round: u32,
        /// Rounds it would have answered.
        count: u32,
        /// The budget.
        budget: u32,
    },
}

/// The rounds a participant has answered, checked against its job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundPlan {
    last: Option<(u32, u32, Digest)>,
    answered: u32,
}

impl RoundPlan {
    /// Checks a request for `round`/`attempt` computing `kind` with digest `computation`, and
    /// remembers it if allowed. A refused request changes nothing.
    pub fn admit(
        &mut self,
        job: &ValidJob,
        round: u32,
        attempt: u32,
        kind: &RoundKind,
        computation: Digest,
    ) -> Result<(), PlanRefusal> {
        if !allows(job, kind) {
            return Err(PlanRefusal::ForeignKind {
                round,
                kind: kind.label(),
                job_kind: job.spec().kind.name(),
            });
        }
        let count = match self.last {
            Some((last, last_attempt, digest)) if round == last => {
                if digest != computation {
                    return Err(PlanRefusal::ChangedRetry { round, attempt });
                }
                if attempt < last_attempt {
                    return Err(PlanRefusal::OldAttempt {
                        round,
                        attempt,
                        last: last_attempt,
                    });
                }
                self.answered
            }
            Some((last, _, _)) if round < last => {
                return Err(PlanRefusal::NotIncreasing { round, last });
            }
            _ => self.answered + 1,
        };
        let budget = budget(job);
        if count > budget {
            return Err(PlanRefusal::OverBudget {
                job: job.spec().job.to_string(),
                round,
                count,
                budget,
            });
        }
        self.last = Some((round, attempt, computation));
        self.answered = count;
        Ok(())
    }
}

/// The digest naming a computation: the job and the round with all its parameters (for a
/// segment job over transaction logs, the reference day its rows are counted to is one of them).
/// It is over the round's wire tag and its parameter bytes exactly as they travel, each
/// length-prefixed: no encoding step that could fail or give two rounds one rendering.
pub fn computation_digest(job: &ValidJob, kind: &RoundKind) -> Digest {
    let RoundKind::Registered(round) = kind;
    Digest::builder("fedbank.computation.v3")
        .bytes(job.spec().job.as_str().as_bytes())
        .bytes(&job.digest().0)
        .bytes(&round.tag.0.to_le_bytes())
        .bytes(&round.parameters)
        .finish()
}

/// Whether a job of this kind ever computes `kind`.
pub fn allows(job: &ValidJob, kind: &RoundKind) -> bool {
    match (spec_job(job), kind) {
        (Some(registered), RoundKind::Registered(round)) => registered.computes(job, round.tag),
        (None, _) => false,
    }
}

fn spec_job(job: &ValidJob) -> Option<&'static dyn crate::job::Job> {
    job.spec().kind.registered()
}

/// Most round numbers a participant answers in one job: the plan's rounds, each possibly run
/// again after a lost decryption, plus [`RESTART_ALLOWANCE`].
pub fn budget(job: &ValidJob) -> u32 {
    let spec = job.spec();
    let planned: u64 = spec_job(job).map_or(0, |j| u64::from(j.planned_rounds(job)));
    let total =
        planned * (1 + u64::from(spec.max_decryption_retries)) + u64::from(RESTART_ALLOWANCE);
    u32::try_from(total).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::propensity::PropensityRound;
    use crate::job::JobSpec;

    #[derive(serde::Deserialize)]
    struct JobFile {
        job: JobSpec,
    }

    fn shipped(text: &str) -> ValidJob {
        toml::from_str::<JobFile>(text)
            .expect("job file")
            .job
            .validate()
            .expect("valid")
    }

    fn newton() -> RoundKind {
        PropensityRound::Newton {
            mean: vec![],
            std: vec![],
            beta: vec![0.0],
            weights: [1.0, 1.0],
        }
        .to_kind()
        .expect("round")
    }

    #[test]
    fn a_newton_job_with_privacy_refuses_a_fedavg_round() {
        let job = shipped(include_str!("../../configs/propensity-telco-dp.toml"));
        let fedavg = PropensityRound::FedAvg {
            mean: vec![],
            std: vec![],
            beta: vec![0.0],
            weights: [1.0, 1.0],
            training_customers: 1.0,
        }
        .to_kind()
        .expect("round");
        let mut plan = RoundPlan::default();
        let d = Digest::of("c", b"1");
        assert!(matches!(
            plan.admit(&job, 1, 0, &fedavg, d),
            Err(PlanRefusal::ForeignKind { .. })
        ));
        let compliance =
            RoundKind::Registered(crate::job::compliance::compliance_round().expect("round"));
        assert!(matches!(
            plan.admit(&job, 1, 0, &compliance, d),
            Err(PlanRefusal::ForeignKind { .. })
        ));
        assert!(plan.admit(&job, 1, 0, &newton(), d).is_ok());
    }

    #[test]
    fn rounds_increase_and_a_retry_asks_for_the_same_computation() {
        let job = shipped(include_str!("../../configs/simulate-stats.toml"));
        let (a, b) = (Digest::of("c", b"a"), Digest::of("c", b"b"));
        let moments = crate::job::stats::moments_round();
        let mut plan = RoundPlan::default();
        plan.admit(&job, 3, 0, &moments, a).expect("first");
        plan.admit(&job, 3, 1, &moments, a).expect("a retry");
        let before = plan.clone();
        assert!(matches!(
            plan.admit(&job, 3, 2, &moments, b),
            Err(PlanRefusal::ChangedRetry { .. })
        ));
        assert!(matches!(
            plan.admit(&job, 3, 0, &moments, a),
            Err(PlanRefusal::OldAttempt { .. })
        ));
        assert!(matches!(
            plan.admit(&job, 2, 0, &moments, b),
            Err(PlanRefusal::NotIncreasing { .. })
        ));
        assert_eq!(plan, before, "a refusal changes nothing");
        plan.admit(&job, 4, 0, &moments, a)
            .expect("the same computation under a new number (a re-run); members guard it");
    }

    #[test]
    fn computations_differ_by_every_parameter() {
        let job = shipped(include_str!("../../configs/simulate-stats.toml"));
        let one = computation_digest(&job, &newton());
        let mut other = newton();
        if let Some(PropensityRound::Newton {
            mean,
            std,
            mut beta,
            weights,
        }) = PropensityRound::of_kind(&other)
        {
            beta[0] = 1e-12;
            other = PropensityRound::Newton {
                mean,
                std,
                beta,
                weights,
            }
            .to_kind()
            .expect("round");
        }
        assert_ne!(one, computation_digest(&job, &other));
        assert_eq!(one, computation_digest(&job, &newton()));
        // The reference day a segment round's rows are counted to is one of its parameters.
        let counted = |day| {
            let round = crate::job::segment::SegmentRound::Moments { reference_day: day };
            RoundKind::Registered(round.to_round().expect("round"))
        };
        let day = computation_digest(&job, &counted(Some(3)));
        assert_ne!(day, computation_digest(&job, &counted(Some(4))));
        assert_ne!(day, computation_digest(&job, &counted(None)));
    }

    #[test]
    fn colluders_must_leave_honest_contributors() {
        let text = include_str!("../../configs/propensity-telco-dp.toml");
        let mut spec = toml::from_str::<JobFile>(text).expect("job file").job;
        let min = spec.min_participants;
        let privacy = spec
            .propensity
            .as_mut()
            .and_then(|p| p.privacy.as_mut())
            .expect("privacy");
        privacy.colluding_participants = min;
        let err = spec
            .clone()
            .validate()
            .expect_err("no honest contributor left");
        assert!(err.to_string().contains("colluding_participants"), "{err}");
        if let Some(p) = spec.propensity.as_mut().and_then(|p| p.privacy.as_mut()) {
            p.colluding_participants = 1;
        }
        let job = spec.validate().expect("one colluder of three");
        let plan = job.privacy().expect("plan");
        assert_eq!(plan.honest_contributors(job.spec().min_participants), 2);
    }
}
