//! `result.json`: a finished job's released figures as one typed, versioned record
//! ([`ResultFile`], schema [`RESULT_SCHEMA`], documented in `docs/results.md`).
//!
//! The coordinator writes it once. A simulation, which alone holds every institution's local
//! figures, adds them as [`ResultFile::per_participant`] through the same type.

use crate::job_logic::JobResult;
use fedbank_common::ids::{JobId, NodeId};
use fedbank_common::job::ValidJob;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The schema named in every result file this version writes.
pub const RESULT_SCHEMA: &str = "fedbank.result.v1";

/// A result file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultFile {
    /// [`RESULT_SCHEMA`].
    pub schema: String,
    /// Job.
    pub job: JobId,
    /// Crypto profile.
    pub profile: String,
    /// Digest of the job file (hex), as in every trail's `job.started`.
    pub config_digest: String,
    /// Participants enrolled.
    pub participants: Vec<NodeId>,
    /// Key committee.
    pub committee: Vec<NodeId>,
    /// Fewest contributors per decryption.
    pub min_participants: usize,
    /// The auditor (compliance jobs with alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auditor: Option<NodeId>,
    /// Who took part in each round and who was left out, from the coordinator's trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participation: Option<crate::Participation>,
    /// What the job released, tagged by `kind`.
    #[serde(flatten)]
    pub released: Released,
    /// Each institution's own figures (simulations only: no single node holds them in a real
    /// consortium), by node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_participant: Option<BTreeMap<String, BTreeMap<String, Value>>>,
}

/// What a job released (`stats`, `segment`, `propensity`, `compliance`, or a kind registered
/// from its own folder): the kind's name and its own result record's fields, beside the shared
/// ones; the kind checks its record when the file is read ([`ResultFile::from_json`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Released {
    /// The kind's name.
    pub kind: String,
    /// The job's own result record.
    #[serde(flatten)]
    pub released: serde_json::Map<String, Value>,
}

/// A result file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ResultFileError {
    /// Not JSON of this schema.
    #[error("not a {RESULT_SCHEMA} result file")]
    Decode(#[source] serde_json::Error),
    /// A job kind's own record is not what that kind releases.
    #[error("the {kind} result in this file: {problem}")]
    Released {
        /// The kind.
        kind: String,
        /// What is wrong.
        problem: String,
    },
    /// Another schema.
    #[error("result file of schema '{0}'; this version reads {RESULT_SCHEMA}")]
    Schema(String),
}

impl ResultFile {
    /// The result file of `job` that released `result`.
    pub fn new(job: &ValidJob, result: &JobResult) -> Self {
        let spec = job.spec();
        let released = Released {
            kind: result.kind.to_owned(),
            released: match result.released.clone() {
                Value::Object(fields) => fields,
                other => [("released".to_owned(), other)].into_iter().collect(),
            },
        };
        ResultFile {
            schema: RESULT_SCHEMA.to_owned(),
            job: spec.job.clone(),
            profile: spec.profile.name().to_owned(),
            config_digest: job.digest().to_hex(),
            participants: spec.participants.clone(),
            committee: spec.committee.clone(),
            min_participants: spec.min_participants,
            auditor: spec.auditor.clone(),
            participation: None,
            released,
            per_participant: None,
        }
    }

    /// Reads a result file, checking its schema.
    pub fn from_json(text: &str) -> Result<Self, ResultFileError> {
        #[derive(Deserialize)]
        struct Header {
            schema: Option<String>,
        }
        let header: Header = serde_json::from_str(text).map_err(ResultFileError::Decode)?;
        match header.schema.as_deref() {
            Some(RESULT_SCHEMA) => {
                let file: ResultFile =
                    serde_json::from_str(text).map_err(ResultFileError::Decode)?;
                // A kind this build knows checks its own record; another is read as it is.
                let release = &file.released;
                if let Some(job) = fedbank_common::job::registered(&release.kind) {
                    job.check_result(&Value::Object(release.released.clone()))
                        .map_err(|problem| ResultFileError::Released {
                            kind: release.kind.clone(),
                            problem,
                        })?;
                }
                Ok(file)
            }
            other => Err(ResultFileError::Schema(
                other.unwrap_or("(none)").to_owned(),
            )),
        }
    }

    /// The file's text.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedbank_common::job::stats::{self, FeatureStats, StatsResult};
    use fedbank_common::job::JobSpec;

    fn job() -> ValidJob {
        #[derive(Deserialize)]
        struct File {
            job: JobSpec,
        }
        let file: File =
            toml::from_str(include_str!("../../configs/simulate-stats.toml")).expect("job file");
        file.job.validate().expect("valid")
    }

    fn stats() -> JobResult {
        let balance = FeatureStats {
            name: "balance".into(),
            count: 10.0,
            missing: 1.0,
            missing_rate: 1.0 / 11.0,
            mean: 2.5,
            std: 0.5,
            quantiles: [("p50".to_owned(), 2.0)].into_iter().collect(),
            edges: vec![0.0, 5.0],
            histogram: vec![0.0, 10.0, 0.0],
        };
        let result = StatsResult {
            features: [("balance".to_owned(), balance)].into_iter().collect(),
        };
        JobResult {
            kind: stats::KIND,
            released: serde_json::to_value(result).expect("json"),
        }
    }

    #[test]
    fn a_result_file_reads_back_as_written_with_its_kind_and_schema() {
        let job = job();
        let mut file = ResultFile::new(&job, &stats());
        file.per_participant = Some(
            [(
                "bank".to_owned(),
                [("bytes_sent".to_owned(), Value::from(12))]
                    .into_iter()
                    .collect(),
            )]
            .into_iter()
            .collect(),
        );
        let text = file.to_json().expect("encodes");
        let value: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["schema"], RESULT_SCHEMA);
        assert_eq!(value["kind"], "stats");
        assert_eq!(value["features"]["balance"]["mean"], 2.5);
        assert_eq!(value["config_digest"], job.digest().to_hex());
        assert_eq!(ResultFile::from_json(&text).expect("reads"), file);
    }

    #[test]
    fn another_schema_or_a_changed_field_type_is_refused_by_name() {
        let text = ResultFile::new(&job(), &stats())
            .to_json()
            .expect("encodes");
        let older = text.replace(RESULT_SCHEMA, "fedbank.result.v0");
        let err = ResultFile::from_json(&older).expect_err("another schema");
        assert!(err.to_string().contains("fedbank.result.v0"), "{err}");
        let unschemed = text.replace(&format!("\"schema\": \"{RESULT_SCHEMA}\","), "");
        assert!(matches!(
            ResultFile::from_json(&unschemed),
            Err(ResultFileError::Schema(_))
        ));
        let mangled = text.replace("\"mean\": 2.5", "\"mean\": \"high\"");
        assert_ne!(mangled, text);
        let err = ResultFile::from_json(&mangled).expect_err("a mean that is not a number");
        assert!(
            matches!(&err, ResultFileError::Released { kind, .. } if kind == "stats"),
            "{err}"
        );
    }
}
