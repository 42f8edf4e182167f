//! Checking a [`JobSpec`] into a [`ValidJob`]: every field, each job kind's own section, and the
//! digest every node agrees on.

use super::{JobError, JobKind, JobSpec, ValidJob};
use crate::digest::Digest;
use crate::encoding::EncodingPlan;
use crate::secagg::SchemeParameters;

impl JobSpec {
    /// Checks every field and that every round can be encoded under the profile.
    pub fn validate(mut self) -> Result<ValidJob, JobError> {
        let job = self.job.clone();
        for (field, list) in [
            ("participants", &self.participants),
            ("committee", &self.committee),
        ] {
            if list.is_empty() {
                return Err(JobError::Empty { job, field });
            }
            let mut sorted = list.clone();
            sorted.sort();
            if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
                return Err(JobError::Duplicate {
                    job,
                    field,
                    node: w[0].to_string(),
                });
            }
        }
        self.committee.sort();
        self.participants.sort();
        if let Some(m) = self
            .committee
            .iter()
            .find(|m| !self.participants.contains(m))
        {
            return Err(JobError::MemberNotParticipant {
                job,
                node: m.clone(),
            });
        }
        if self.min_participants == 0 || self.min_participants > self.participants.len() {
            return Err(JobError::MinParticipants {
                job,
                got: self.min_participants,
                participants: self.participants.len(),
            });
        }
        let colluding = self
            .propensity
            .as_ref()
            .and_then(|p| p.privacy.as_ref())
            .map_or(0, |p| p.colluding_participants);
        if colluding >= self.min_participants {
            return Err(JobError::OutOfRange {
                job: job.clone(),
                field: "privacy.colluding_participants",
                value: colluding.to_string(),
                expected:
                    "below min_participants (some contributors must be honest to carry the noise)",
            });
        }
        if let Some(q) = self.start_quorum {
            if q == 0 || q > self.participants.len() {
                return Err(JobError::OutOfRange {
                    job,
                    field: "start_quorum",
                    value: q.to_string(),
                    expected: "1 to the number of participants",
                });
            }
        }
        if self.features.is_empty() && self.kind != JobKind::COMPLIANCE {
            return Err(JobError::Empty {
                job,
                field: "features",
            });
        }
        for f in &self.features {
            if f.min
                .is_some_and(|m| !m.is_finite() || m < -f.bound || m >= f.bound)
            {
                return Err(JobError::OutOfRange {
                    job,
                    field: "features.min",
                    value: format!("{} (feature {})", f.lower(), f.name),
                    expected: "finite, at least -bound and below bound",
                });
            }
        }
        let range = |field, value: String, expected| JobError::OutOfRange {
            job: self.job.clone(),
            field,
            value,
            expected,
        };
        if self.max_rows == 0 || self.max_rows > 1 << 40 {
            return Err(range("max_rows", self.max_rows.to_string(), "1 to 2^40"));
        }
        if !(1..=1000).contains(&self.histogram_bins) {
            return Err(range(
                "histogram_bins",
                self.histogram_bins.to_string(),
                "1 to 1000",
            ));
        }
        for (field, ms) in [
            ("key_setup_timeout_ms", self.key_setup_timeout_ms),
            ("round_timeout_ms", self.round_timeout_ms),
            ("decryption_timeout_ms", self.decryption_timeout_ms),
        ] {
            if !(10..=86_400_000).contains(&ms) {
                return Err(range(field, ms.to_string(), "10 ms to 24 h"));
            }
        }
        if self.segment.is_some() && self.kind != JobKind::SEGMENT {
            return Err(JobError::Segment {
                job,
                problem: format!(
                    "only a job of kind \"segment\" takes a [job.segment] table; this job's kind is \"{}\"",
                    self.kind.name()
                ),
            });
        }
        if self.propensity.is_some() && self.kind != JobKind::PROPENSITY {
            return Err(JobError::Propensity {
                job,
                problem: "only a job of kind \"propensity\" takes a [job.propensity] table"
                    .to_owned(),
            });
        }
        self.check_compliance()?;
        let kind = self.kind.name();
        let problem = match self.kind.registered() {
            None => Err(format!("no job kind '{kind}' is registered in this build")),
            Some(registered) if self.settings.is_some() && !registered.reads_settings() => Err(
                format!("a {kind} job takes no [job.settings] table (its own table, if any, is named after the kind)"),
            ),
            Some(registered) => {
                super::check_registry(&super::JOBS).and_then(|()| registered.validate(&self))
            }
        };
        problem.map_err(|problem| JobError::Registered {
            job: job.clone(),
            kind,
            problem,
        })?;
        // An auditor only in a job whose kind raises private alerts (the kind's own checks,
        // above, say when it needs one).
        let alerts = self
            .kind
            .registered()
            .is_some_and(|k| !k.alert_limits(&self).is_empty());
        if self.auditor.is_some() && !alerts {
            return Err(JobError::Compliance {
                job: job.clone(),
                problem: "only a compliance job with alert limits takes an 'auditor'".to_owned(),
            });
        }
        let params =
            SchemeParameters::new(self.profile, self.committee.len(), self.participants.len())
                .map_err(|source| JobError::Parameters {
                    job: job.clone(),
                    source,
                })?;
        let digest = Digest::of_encoded("fedbank.job.v2", &self).map_err(|source| {
            JobError::Unencodable {
                job: job.clone(),
                source,
            }
        })?;
        let valid = ValidJob {
            spec: self,
            params,
            digest,
        };
        let registered = valid
            .spec
            .kind
            .registered()
            .ok_or_else(|| JobError::Registered {
                job: job.clone(),
                kind: valid.spec.kind.name(),
                problem: "no such kind is registered in this build".to_owned(),
            })?;
        let mut rounds = Vec::new();
        for round in registered.widest_rounds(&valid) {
            let kind = super::RoundKind::Registered(round);
            let label = kind.label();
            let Some(r) = kind.registered() else { continue };
            let quantities =
                registered
                    .quantities(&valid, r)
                    .map_err(|problem| JobError::Registered {
                        job: job.clone(),
                        kind: valid.spec.kind.name(),
                        problem: format!("round '{label}': {problem}"),
                    })?;
            rounds.push((label, quantities));
        }
        for (round, specs) in rounds {
            EncodingPlan::new(&specs, &valid.params).map_err(|source| JobError::Encoding {
                job: job.clone(),
                round,
                source,
            })?;
        }
        Ok(valid)
    }
}

impl JobSpec {
    /// A `[job.compliance]` table only in a compliance job.
    fn check_compliance(&self) -> Result<(), JobError> {
        let bad = |problem: &str| JobError::Compliance {
            job: self.job.clone(),
            problem: problem.to_owned(),
        };
        if self.compliance.is_some() && self.kind != JobKind::COMPLIANCE {
            return Err(bad(
                "only a job of kind \"compliance\" takes a [job.compliance] table",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::job::JobSpec;

    #[derive(serde::Deserialize)]
    struct JobFile {
        job: JobSpec,
    }

    /// A section of another kind is refused by name, whatever the job's kind.
    #[test]
    fn a_segment_table_in_a_job_of_another_kind_is_refused() {
        for text in [
            include_str!("../../../configs/propensity-telco-dp.toml"),
            include_str!("../../../configs/simulate-stats.toml"),
        ] {
            let with_segment = text.replacen("\n[job]\n", "\n[job.segment]\nk = 2\n\n[job]\n", 1);
            let spec = toml::from_str::<JobFile>(&with_segment)
                .expect("job file")
                .job;
            let kind = spec.kind.name();
            let err = spec.validate().expect_err("a segment table");
            assert!(
                err.to_string()
                    .contains(&format!("this job's kind is \"{kind}\"")),
                "{err}"
            );
        }
    }
}
