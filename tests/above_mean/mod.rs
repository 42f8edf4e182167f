//! A small job kind written the way a newcomer adds one: everything particular to it in this
//! folder, one `register_job!` line, no edit anywhere else.
//!
//! **Above the mean**: per feature, the consortium's mean and the share of customers above it
//! — the kind of question a campaign team asks before choosing a threshold. Two rounds:
//!
//! - `above_mean.totals` (tag 0x1001): per feature, customers with a value and their sum;
//! - `above_mean.above` (tag 0x1002, parameters: the means): per feature, customers above the
//!   consortium mean.
//!
//! Values are clipped to the feature's declared range before they are summed, as in every job.
//! Its own settings, in the job file's `[job.settings]` table ([`Settings`]): `inclusive = true`
//! counts customers at the mean as above it.

pub mod coordinator;
pub mod local;

use fedbank_common::encoding::QuantitySpec;
use fedbank_common::job::{
    CoordinatorStep, Job, JobRound, JobSpec, LocalColumns, LocalValues, RoundDecl, RoundTag,
    ValidJob,
};
use serde::{Deserialize, Serialize};

/// The kind's name in job files.
pub const KIND: &str = "above-mean";
/// The totals round.
pub const TOTALS: RoundTag = RoundTag(0x1001);
/// The above-the-mean round.
pub const ABOVE: RoundTag = RoundTag(0x1002);

const ROUNDS: &[RoundDecl] = &[
    RoundDecl {
        tag: TOTALS,
        label: "above_mean.totals",
    },
    RoundDecl {
        tag: ABOVE,
        label: "above_mean.above",
    },
];

/// Parameters of the above-the-mean round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Means {
    /// The consortium mean per feature, in feature order.
    pub means: Vec<f64>,
}

/// The kind's `[job.settings]` table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Count a customer at the mean as above it.
    #[serde(default)]
    pub inclusive: bool,
}

/// The job's settings (the defaults without a `[job.settings]` table).
pub fn settings(spec: &JobSpec) -> Result<Settings, String> {
    spec.settings().map(Option::unwrap_or_default)
}

/// The job kind.
pub struct AboveMean;

fedbank_common::register_job!(ABOVE_MEAN, &AboveMean);

impl Job for AboveMean {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn rounds(&self) -> &'static [RoundDecl] {
        ROUNDS
    }

    fn reads_settings(&self) -> bool {
        true
    }

    fn validate(&self, spec: &JobSpec) -> Result<(), String> {
        settings(spec)?;
        // The shared checks give it features and refuse other kinds' sections.
        if spec.min_participants < 2 {
            return Err(format!(
                "min_participants = {}: an above-mean job releases a share per feature, which \
                 from one contributor would be that institution's own; set at least 2",
                spec.min_participants
            ));
        }
        Ok(())
    }

    fn quantities(&self, job: &ValidJob, round: &JobRound) -> Result<Vec<QuantitySpec>, String> {
        let spec = job.spec();
        let rows = spec.max_rows as f64;
        match round.tag {
            TOTALS => Ok(spec
                .features
                .iter()
                .flat_map(|f| {
                    let largest = f.lower().abs().max(f.bound.abs());
                    [
                        QuantitySpec::new(format!("{}.n", f.name), 1, rows, 1.0),
                        QuantitySpec::new(format!("{}.sum", f.name), 1, rows * largest, f.scale),
                    ]
                })
                .collect()),
            ABOVE => {
                let Means { means } = round.parameters().map_err(|e| e.to_string())?;
                if means.len() != spec.features.len() || means.iter().any(|m| !m.is_finite()) {
                    return Err(format!(
                        "{} means for {} features, or a mean that is not finite",
                        means.len(),
                        spec.features.len()
                    ));
                }
                Ok(spec
                    .features
                    .iter()
                    .map(|f| QuantitySpec::new(format!("{}.above", f.name), 1, rows, 1.0))
                    .collect())
            }
            other => Err(format!("tag {other} is not a round of an above-mean job")),
        }
    }

    fn widest_rounds(&self, job: &ValidJob) -> Vec<JobRound> {
        let means = Means {
            means: vec![0.0; job.spec().features.len()],
        };
        [JobRound::new(TOTALS, &()), JobRound::new(ABOVE, &means)]
            .into_iter()
            .filter_map(Result::ok)
            .collect()
    }

    fn planned_rounds(&self, _: &ValidJob) -> u32 {
        2
    }

    fn coordinator(&self, job: &ValidJob) -> Box<dyn CoordinatorStep> {
        Box::new(coordinator::AboveMeanStep::new(job.spec().features.clone()))
    }

    fn local_round(
        &self,
        job: &ValidJob,
        table: LocalColumns<'_>,
        round: &JobRound,
    ) -> Result<LocalValues, String> {
        local::compute(job, table, round)
    }

    fn check_result(&self, result: &serde_json::Value) -> Result<(), String> {
        coordinator::AboveMeanResult::deserialize(result)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
