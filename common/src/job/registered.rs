//! Job kinds that register themselves from their own folder: the [`Job`] trait, the static
//! registry [`JOBS`] and the round type [`JobRound`] they speak.
//!
//! A registered job is one folder holding everything that is particular to it — the checks of
//! its spec, its rounds with their wire tags, the quantities each round encodes, the
//! participant's local step, the coordinator's step between rounds and its released result —
//! and one line, [`register_job!`], that adds it to [`JOBS`]. The node machines, the network
//! shell, the protocol, the round plan and the audit code reach it only through this trait:
//! adding a job edits none of them.
//!
//! Its rounds travel as `(tag, parameters)` like every round ([`RoundKind::Registered`]):
//! tags from [`FIRST_REGISTERED_TAG`] up belong to registered jobs, each tag to one job, and the
//! parameters are the job's own record in the canonical encoding. A tag no job declares is still
//! refused by the participant's round plan.
//!
//! fedbank's own kinds behind this trait are listed in [`BUILT_IN`] (stats in `job/stats/`,
//! segment in `job/segment/`, propensity in `job/propensity/`, compliance in
//! `job/compliance/`); kinds from elsewhere register into [`JOBS`] and take tags from
//! [`FIRST_REGISTERED_TAG`] up.
//!
//! A kind that keeps state between a participant's rounds (the segment job's reference day and
//! RFM rows) or releases something to participants at the end (the segments' centroids) does so
//! through [`ParticipantStep`] and [`CoordinatorStep::release`]; the others implement only
//! [`Job::local_round`]. A kind whose participants' own rates are compared with limits in the
//! private alert step (the compliance job) declares them in [`Job::alert_limits`].

use super::{JobSpec, RoundKind, RoundTag, ValidJob};
use crate::alerts::{AlertCost, AlertRule};
use crate::canonical::{config, encode_body};
use crate::encoding::{DecodedQuantity, QuantitySpec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub use linkme;

/// The smallest wire tag a registered job's round may take; smaller tags belong to the
/// built-in jobs (`round_codec`).
pub const FIRST_REGISTERED_TAG: u16 = 0x1000;

/// Largest parameter record of one registered round, in bytes.
pub const MAX_ROUND_PARAMETERS: usize = 1 << 20;

/// Job kinds registered from outside fedbank's own crates. Add one with [`register_job!`].
#[linkme::distributed_slice]
pub static JOBS: [&'static dyn Job];

/// fedbank's own job kinds that have moved behind [`Job`], each in its folder under `job/`.
/// Listed here rather than through [`JOBS`] so that no binary can miss one by not linking it.
pub const BUILT_IN: &[&dyn Job] = &[
    &super::stats::Stats,
    &super::segment::SegmentKind,
    &super::propensity::PropensityKind,
    &super::compliance::ComplianceKind,
];

/// Every job kind behind [`Job`] in this binary: [`BUILT_IN`], then [`JOBS`].
pub fn all_jobs() -> impl Iterator<Item = &'static dyn Job> {
    BUILT_IN.iter().chain(JOBS.iter()).copied()
}

/// Registers a job kind: `register_job!(TOY_JOB, &ToyJob);` in the job's own folder.
#[macro_export]
macro_rules! register_job {
    ($name:ident, $job:expr) => {
        #[$crate::job::linkme::distributed_slice($crate::job::JOBS)]
        #[linkme(crate = $crate::job::linkme)]
        static $name: &'static dyn $crate::job::Job = $job;
    };
}

/// One round a registered job declares: its wire tag and the label of its quantities (the
/// decryption slot's name in the committee's records and the trails).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundDecl {
    /// Wire tag, at least [`FIRST_REGISTERED_TAG`], unique in the registry.
    pub tag: RoundTag,
    /// Label.
    pub label: &'static str,
}

/// A round of a registered job: its tag and its parameters in the canonical encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRound {
    /// The round's tag (one of the job's [`RoundDecl`]s).
    pub tag: RoundTag,
    /// The job's own parameter record.
    pub parameters: Vec<u8>,
}

/// Why a registered round's parameters could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum RoundParameterError {
    /// The record could not be encoded.
    #[error("round {tag}: parameters cannot be encoded")]
    Encode {
        /// Round tag.
        tag: RoundTag,
        /// Encoder's error.
        #[source]
        source: bincode::error::EncodeError,
    },
    /// The bytes are not this round's record.
    #[error("round {tag}: parameters do not decode")]
    Decode {
        /// Round tag.
        tag: RoundTag,
        /// Decoder's error.
        #[source]
        source: bincode::error::DecodeError,
    },
    /// Bytes were left after the record, or the record is larger than allowed.
    #[error("round {tag}: {what}")]
    Shape {
        /// Round tag.
        tag: RoundTag,
        /// What is wrong.
        what: String,
    },
}

impl JobRound {
    /// A round with tag `tag` and parameters `parameters`.
    pub fn new<P: Serialize>(tag: RoundTag, parameters: &P) -> Result<Self, RoundParameterError> {
        let parameters = encode_body(parameters)
            .map_err(|source| RoundParameterError::Encode { tag, source })?;
        if parameters.len() > MAX_ROUND_PARAMETERS {
            return Err(RoundParameterError::Shape {
                tag,
                what: format!(
                    "{} bytes of parameters, more than {MAX_ROUND_PARAMETERS}",
                    parameters.len()
                ),
            });
        }
        Ok(JobRound { tag, parameters })
    }

    /// The parameters as the job's record `P`; every byte must belong to it.
    pub fn parameters<P: DeserializeOwned>(&self) -> Result<P, RoundParameterError> {
        let tag = self.tag;
        decode_record(&self.parameters).map_err(|e| match e {
            RecordError::Decode(source) => RoundParameterError::Decode { tag, source },
            RecordError::Shape(what) => RoundParameterError::Shape { tag, what },
        })
    }
}

/// Why a job's record (round parameters, a release) did not read back.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The bytes are not the record.
    #[error("the record does not decode")]
    Decode(#[source] bincode::error::DecodeError),
    /// Bytes were left after the record, or it is larger than allowed.
    #[error("{0}")]
    Shape(String),
}

/// A job's record `P` in the canonical encoding, at most [`MAX_ROUND_PARAMETERS`] bytes, every
/// byte belonging to it.
pub fn decode_record<P: DeserializeOwned>(bytes: &[u8]) -> Result<P, RecordError> {
    if bytes.len() > MAX_ROUND_PARAMETERS {
        return Err(RecordError::Shape(format!(
            "{} bytes, more than {MAX_ROUND_PARAMETERS}",
            bytes.len()
        )));
    }
    let (value, read): (P, usize) =
        bincode::serde::decode_from_slice(bytes, config().with_limit::<MAX_ROUND_PARAMETERS>())
            .map_err(RecordError::Decode)?;
    if read != bytes.len() {
        return Err(RecordError::Shape(format!(
            "{} bytes after the record",
            bytes.len() - read
        )));
    }
    Ok(value)
}

/// A participant's table as a registered job's local step reads it: rows and columns of
/// optional numbers (a missing cell is `None`).
#[derive(Clone, Copy, Debug)]
pub struct LocalColumns<'a> {
    /// Rows.
    pub rows: usize,
    /// Columns by name.
    pub columns: &'a BTreeMap<String, Vec<Option<f64>>>,
}

impl<'a> LocalColumns<'a> {
    /// The column `name`, or a message saying it is missing.
    pub fn column(&self, name: &str) -> Result<&'a [Option<f64>], String> {
        self.columns
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| format!("the local table has no column '{name}'"))
    }
}

/// A participant's table with its own columns: what a data source (a transaction log, a file)
/// yields for a job to read through [`LocalColumns`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TableColumns {
    /// Rows.
    pub rows: usize,
    /// Columns by name.
    pub columns: BTreeMap<String, Vec<Option<f64>>>,
}

impl TableColumns {
    /// A view for a job's local step.
    pub fn view(&self) -> LocalColumns<'_> {
        LocalColumns {
            rows: self.rows,
            columns: &self.columns,
        }
    }
}

/// A transaction log summarized per customer, as a job's local step reads it: the latest
/// purchase and per-customer rows counted to a reference day. The participant's reader builds
/// it; the segment job's RFM rounds read it.
pub trait TransactionLog: Send + Sync {
    /// Days since 1970-01-01 of the latest purchase.
    fn latest_day(&self) -> i64;
    /// Per customer, in the order of its customer ids: `log_recency`, `log_frequency`,
    /// `log_monetary` counted to `reference_day`, and the customer's lifecycle stage.
    fn rfm_table(&self, reference_day: i64) -> Result<TableColumns, String>;
    /// Customer ids, in row order.
    fn ids(&self) -> &[String];
}

/// Everything a participant holds that a job's local step may read. Which parts are present
/// depends on the data source the job names (a table for most jobs, a transaction log for a
/// segment job over transactions).
#[derive(Clone, Copy)]
pub struct LocalInput<'a> {
    /// The customer table (empty when the job reads a transaction log).
    pub table: LocalColumns<'a>,
    /// Customer ids of the table's rows, when the job names an id column.
    pub row_ids: Option<&'a [String]>,
    /// The transaction log, when the job reads one.
    pub transactions: Option<&'a dyn TransactionLog>,
    /// The labeled customers, when the job reads them (propensity jobs).
    pub customers: Option<&'a super::propensity::CustomerRecords>,
    /// The marketing-contact log with its consent table, when the job reads one (compliance
    /// jobs).
    pub contacts: Option<&'a super::compliance::ContactLog>,
}

impl fmt::Debug for LocalInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalInput")
            .field("rows", &self.table.rows)
            .field("row_ids", &self.row_ids.map(<[String]>::len))
            .field("transactions", &self.transactions.map(|t| t.ids().len()))
            .field("customers", &self.customers.map(|c| c.rows()))
            .field("contacts", &self.contacts.map(|c| c.contacts()))
            .finish()
    }
}

/// What a participant keeps from a job's release to participants, written to its local files
/// and never sent.
#[derive(Clone, Debug, PartialEq)]
pub enum LocalRelease {
    /// One label per own customer (the segment each customer falls in).
    Assignments {
        /// (customer, label) per own customer.
        assignments: Vec<(String, String)>,
        /// How many distinct labels the release has.
        labels: usize,
    },
    /// A released model, and this participant's own figures with it on its hold-out customers
    /// (when it holds labeled customers).
    Model {
        /// The model, as exported in `model.json`.
        model: Box<super::propensity::model::PropensityModel>,
        /// Its figures.
        figures: Option<super::propensity::LocalFigures>,
    },
}

/// One round's local values: one vector per quantity, in the order of the round's quantities,
/// how many values were clipped to their declared bound, and what the node keeps of the round.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LocalValues {
    /// Values per quantity.
    pub values: Vec<Vec<f64>>,
    /// Values clipped.
    pub clipped: u64,
    /// A report of the round the node keeps locally and never sends, if the job makes one.
    pub report: Option<LocalReport>,
}

/// A report a participant's step makes of one round over its own data (the compliance job's
/// per-rule counts with example customers): written to the node's local report file, never
/// sent. The node's trail records what was checked (`rules.evaluated`), not the report.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalReport {
    /// Names of what was checked (the rules).
    pub checked: Vec<String>,
    /// The first and last day the local data covers, where it is dated; recorded in the trail
    /// so that the audit report can state the period of the evidence.
    pub period: Option<(String, String)>,
    /// The report.
    pub report: serde_json::Value,
}

/// A file of a job's human report, made by the kind ([`Job::report`]) and written by the node
/// that holds the result next to `result.json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportFile {
    /// The file's name in the output directory (no directories).
    pub name: &'static str,
    /// Its contents.
    pub text: String,
}

/// Whom a released result covers, as the coordinator's trail records it: the institutions in
/// the last decrypted round (whose customers the final figures count) and the enrolled ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportedInstitutions {
    /// Institutions whose contributions are in the last decrypted aggregate.
    pub last_round: usize,
    /// Institutions enrolled in the job.
    pub enrolled: usize,
}

impl std::fmt::Display for ReportedInstitutions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.last_round == self.enrolled {
            write!(f, "{} institutions", self.enrolled)
        } else {
            write!(
                f,
                "{} of the {} enrolled institutions (the others left before the last round)",
                self.last_round, self.enrolled
            )
        }
    }
}

/// A registered job kind. Implementations are stateless; the coordinator's state between rounds
/// lives in the [`CoordinatorStep`] it makes.
pub trait Job: Sync {
    /// The name in job files (`kind = "…"`) and results.
    fn kind(&self) -> &'static str;
    /// Every round it may ask for.
    fn rounds(&self) -> &'static [RoundDecl];
    /// Whether a run of `job` ever asks for a round with tag `tag` (a participant refuses any
    /// other): by default every round the kind declares. A kind whose job file chooses among
    /// its rounds narrows it (a Newton propensity job never computes a FedAvg round, which
    /// would escape its privacy accountant).
    fn computes(&self, job: &ValidJob, tag: RoundTag) -> bool {
        let _ = job;
        self.rounds().iter().any(|d| d.tag == tag)
    }
    /// Checks what is particular to this kind in `spec` (the shared fields are checked before);
    /// the problem in the job file's words otherwise.
    fn validate(&self, spec: &JobSpec) -> Result<(), String>;
    /// Whether this kind reads a `[job.settings]` table of its own ([`JobSpec::settings`]); a
    /// job of a kind that does not is refused one. Default: no.
    fn reads_settings(&self) -> bool {
        false
    }
    /// The quantities `round` encodes, in the order the local step gives their values.
    fn quantities(&self, job: &ValidJob, round: &JobRound) -> Result<Vec<QuantitySpec>, String>;
    /// A round of each tag at its widest (for the job's message limit and the check that every
    /// round can be encoded under the profile).
    fn widest_rounds(&self, job: &ValidJob) -> Vec<JobRound>;
    /// Most rounds one run asks for, before retries.
    fn planned_rounds(&self, job: &ValidJob) -> u32;
    /// The coordinator's step, fresh for a run.
    fn coordinator(&self, job: &ValidJob) -> Box<dyn CoordinatorStep>;
    /// A participant's values for `round` over its own table (never more rows than the job's
    /// `max_rows`: the participant checks that before it calls), for a kind that keeps nothing
    /// between rounds. A kind that does overrides [`Job::participant`] instead.
    fn local_round(
        &self,
        job: &ValidJob,
        table: LocalColumns<'_>,
        round: &JobRound,
    ) -> Result<LocalValues, String> {
        let _ = (job, table);
        Err(format!(
            "{round}: a {} job computes its rounds in its participant step",
            self.kind()
        ))
    }
    /// The participant's step, fresh for a run: by default [`Job::local_round`] round after
    /// round, with nothing kept between rounds and nothing taken from a release.
    fn participant(&self, job: &ValidJob) -> Box<dyn ParticipantStep> {
        Box::new(Stateless {
            kind: self.kind(),
            job: job.clone(),
        })
    }
    /// Checks that `result` is this kind's released record (a reader of `result.json` calls it).
    fn check_result(&self, result: &serde_json::Value) -> Result<(), String>;
    /// The human report of a finished run whose released record is `result` (a Markdown page,
    /// charts, an exported model), written next to `result.json`; none by default. Or why the
    /// record cannot be reported on. `who` says how many institutions the released figures
    /// cover, so that a report does not count the enrolled ones instead.
    fn report(
        &self,
        job: &ValidJob,
        result: &serde_json::Value,
        who: &ReportedInstitutions,
    ) -> Result<Vec<ReportFile>, String> {
        let _ = (job, result, who);
        Ok(Vec::new())
    }
    /// The limits of the private alert step that follows the job's last round (docs/threat-model.md
    /// §6), in the order every role lists them; empty, the default, when the job raises no
    /// alerts. A kind with limits gives each participant's rates through
    /// [`ParticipantStep::alert_rates`] and takes the auditor's counts through
    /// [`CoordinatorStep::alerts_decrypted`]; the job then names an `auditor`.
    fn alert_limits(&self, spec: &JobSpec) -> Vec<AlertRule> {
        let _ = spec;
        Vec::new()
    }
    /// The differential-privacy plan of a run of `spec` (the noise per round and quantity and
    /// the budget), when the job asks for one; `None`, the default, otherwise. The participant
    /// machine adds the plan's noise to every round it covers before encryption, the encoding
    /// plans make room for it, and the coordinator's step reports the spend
    /// ([`CoordinatorStep::privacy`]).
    fn privacy(&self, spec: &JobSpec) -> Option<super::privacy::PrivacyPlan> {
        let _ = spec;
        None
    }
}

/// What the coordinator computes between a registered job's rounds.
pub trait CoordinatorStep: Send + fmt::Debug {
    /// The first round.
    fn first_round(&self) -> Result<JobRound, String>;
    /// Takes `round`'s aggregate over `contributors`; the next round, `None` when done, or why
    /// the job cannot go on.
    fn apply(
        &mut self,
        round: &JobRound,
        decoded: &[DecodedQuantity],
        contributors: usize,
    ) -> Result<Option<JobRound>, String>;
    /// The released result once done: the job's own typed record, as JSON.
    fn result(&self) -> Option<serde_json::Value>;
    /// What participants receive of the result once done, in the job's own canonical encoding
    /// (for example the segments' centroids, so that each assigns its own customers); `None`
    /// when the job releases nothing to participants.
    fn release(&self) -> Option<Vec<u8>> {
        None
    }
    /// The differential-privacy spend so far, for a job with a budget.
    fn privacy(&self) -> Option<super::propensity::privacy::PrivacyReport> {
        None
    }
    /// Takes the auditor's decrypted counts of the alert step (one per [`Job::alert_limits`]
    /// entry, in order) and what the step cost; returns the limits whose count differs from
    /// the job's own verified count, which the coordinator reports. A job without limits is
    /// never asked.
    fn alerts_decrypted(&mut self, counts: &[u16], cost: AlertCost) -> Vec<String> {
        let _ = (counts, cost);
        Vec::new()
    }
    /// A copy (the coordinator keeps one per checkpoint replay).
    fn boxed_clone(&self) -> Box<dyn CoordinatorStep>;
}

impl Clone for Box<dyn CoordinatorStep> {
    fn clone(&self) -> Self {
        self.boxed_clone()
    }
}

/// A participant's side of one run of a registered job: what it computes each round over its
/// own data, and what it does with the job's release.
pub trait ParticipantStep: Send {
    /// Its values for `round`, or why it cannot contribute (said to the coordinator).
    fn local_round(
        &mut self,
        data: LocalInput<'_>,
        round: &JobRound,
    ) -> Result<LocalValues, String>;
    /// Takes the job's release to participants (see [`CoordinatorStep::release`]): what it keeps
    /// locally, or why the release does not fit this job.
    fn released(&mut self, data: LocalInput<'_>, release: &[u8]) -> Result<LocalRelease, String> {
        let _ = (data, release);
        Err("this job releases nothing to participants".to_owned())
    }
    /// This node's own rate per limit of [`Job::alert_limits`] (in basis points, in the order
    /// of `limits`), which the alert step encrypts under the auditor's key; or why it has none.
    fn alert_rates(&self, limits: &[AlertRule]) -> Result<Vec<u16>, String> {
        let _ = limits;
        Err("this job raises no private alerts".to_owned())
    }
}

/// The participant step of a kind that keeps nothing between rounds: its registered
/// [`Job::local_round`], found by name.
struct Stateless {
    kind: &'static str,
    job: ValidJob,
}

impl ParticipantStep for Stateless {
    fn local_round(
        &mut self,
        data: LocalInput<'_>,
        round: &JobRound,
    ) -> Result<LocalValues, String> {
        let job = registered(self.kind)
            .ok_or_else(|| format!("no job kind '{}' is registered in this build", self.kind))?;
        job.local_round(&self.job, data.table, round)
    }
}

/// The job kind behind [`Job`] called `kind`.
pub fn registered(kind: &str) -> Option<&'static dyn Job> {
    all_jobs().find(|j| j.kind() == kind)
}

/// The round with tag `tag` of a job kind behind [`Job`].
pub fn registered_round(tag: RoundTag) -> Option<RoundDecl> {
    all_jobs()
        .flat_map(|j| j.rounds())
        .copied()
        .find(|d| d.tag == tag)
}

/// Names of the job kinds behind [`Job`].
pub fn registered_kinds() -> Vec<&'static str> {
    all_jobs().map(|j| j.kind()).collect()
}

/// Checks the registry of this binary: [`check_registry`] over [`BUILT_IN`] and [`JOBS`], and
/// every kind of [`JOBS`] within the range of tags kept for them.
pub fn check_linked_registry() -> Result<(), String> {
    let all: Vec<&dyn Job> = all_jobs().collect();
    check_registry(&all)?;
    check_external(&JOBS)
}

/// Checks that job kinds registered from outside fedbank use only tags from
/// [`FIRST_REGISTERED_TAG`] up.
pub fn check_external(jobs: &[&dyn Job]) -> Result<(), String> {
    for job in jobs {
        for round in job.rounds() {
            if round.tag.0 < FIRST_REGISTERED_TAG {
                return Err(format!(
                    "job kind '{}': round '{}' has tag {}, below the registered range from {:#06x}",
                    job.kind(),
                    round.label,
                    round.tag,
                    FIRST_REGISTERED_TAG
                ));
            }
        }
    }
    Ok(())
}

/// Checks a registry: names unique, tags not retired ([`super::RETIRED_TAGS`]) and each declared
/// once. The problem otherwise.
pub fn check_registry(jobs: &[&dyn Job]) -> Result<(), String> {
    let mut names = BTreeMap::new();
    let mut tags = BTreeMap::new();
    for job in jobs {
        let name = job.kind();
        if names.insert(name, ()).is_some() {
            return Err(format!("job kind '{name}' is registered twice"));
        }
        for round in job.rounds() {
            if round.tag.is_retired() {
                return Err(format!(
                    "job kind '{name}': round '{}' has tag {}, the tag of a retired round",
                    round.label, round.tag
                ));
            }
            if let Some(other) = tags.insert(round.tag, name) {
                return Err(format!(
                    "round tag {} is declared by '{other}' and '{name}'",
                    round.tag
                ));
            }
        }
    }
    Ok(())
}

impl RoundKind {
    /// This round as a registered job's round, if it is one.
    pub fn registered(&self) -> Option<&JobRound> {
        match self {
            RoundKind::Registered(round) => Some(round),
        }
    }
}

impl fmt::Display for JobRound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match registered_round(self.tag) {
            Some(decl) => write!(f, "{} ({})", decl.label, self.tag),
            None => write!(f, "unregistered round {}", self.tag),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Threshold {
        at: Vec<f64>,
    }

    #[test]
    fn parameters_round_trip_and_refuse_trailing_bytes() {
        let tag = RoundTag(0x1234);
        let round = JobRound::new(
            tag,
            &Threshold {
                at: vec![1.5, -2.0],
            },
        )
        .expect("encode");
        assert_eq!(
            round.parameters::<Threshold>().expect("decode"),
            Threshold {
                at: vec![1.5, -2.0]
            }
        );
        let mut longer = round.clone();
        longer.parameters.push(0);
        let err = longer.parameters::<Threshold>().expect_err("trailing byte");
        assert!(
            err.to_string().contains("1 bytes after the record"),
            "{err}"
        );
        let mut shorter = round;
        shorter.parameters.pop();
        assert!(shorter.parameters::<Threshold>().is_err());
    }

    struct Named(&'static str, &'static [RoundDecl]);
    impl Job for Named {
        fn kind(&self) -> &'static str {
            self.0
        }
        fn rounds(&self) -> &'static [RoundDecl] {
            self.1
        }
        fn validate(&self, _: &JobSpec) -> Result<(), String> {
            Ok(())
        }
        fn quantities(&self, _: &ValidJob, _: &JobRound) -> Result<Vec<QuantitySpec>, String> {
            Ok(vec![])
        }
        fn widest_rounds(&self, _: &ValidJob) -> Vec<JobRound> {
            vec![]
        }
        fn planned_rounds(&self, _: &ValidJob) -> u32 {
            1
        }
        fn coordinator(&self, _: &ValidJob) -> Box<dyn CoordinatorStep> {
            unreachable!("not run")
        }
        fn local_round(
            &self,
            _: &ValidJob,
            _: LocalColumns<'_>,
            _: &JobRound,
        ) -> Result<LocalValues, String> {
            Ok(LocalValues::default())
        }
        fn check_result(&self, _: &serde_json::Value) -> Result<(), String> {
            Ok(())
        }
    }

    const A: &[RoundDecl] = &[RoundDecl {
        tag: RoundTag(0x1001),
        label: "a",
    }];
    const LOW: &[RoundDecl] = &[RoundDecl {
        tag: RoundTag(0x0401),
        label: "low",
    }];

    #[test]
    fn a_registry_refuses_shared_tags_names_and_the_built_in_range() {
        assert!(check_registry(&[&Named("one", A)]).is_ok());
        let shared = check_registry(&[&Named("one", A), &Named("two", A)]).expect_err("tag");
        assert!(shared.contains("declared by 'one' and 'two'"), "{shared}");
        let twice = check_registry(&[&Named("one", &[]), &Named("one", &[])]).expect_err("name");
        assert!(twice.contains("registered twice"), "{twice}");
        let low = check_registry(&[&Named("one", LOW)]).expect_err("a retired round's tag");
        assert!(low.contains("the tag of a retired round"), "{low}");
        let outside = check_external(&[&Named("one", LOW)]).expect_err("range");
        assert!(outside.contains("below the registered range"), "{outside}");
        // A kind named like one of fedbank's own behind the trait is a second registration.
        let all: Vec<&dyn Job> = BUILT_IN
            .iter()
            .copied()
            .chain([&Named("stats", &[]) as &dyn Job])
            .collect();
        let again = check_registry(&all).expect_err("stats twice");
        assert!(again.contains("registered twice"), "{again}");
    }

    #[test]
    fn the_linked_registry_is_consistent() {
        check_linked_registry().expect("the registry of this binary");
        for kind in ["stats", "segment", "propensity", "compliance"] {
            assert!(registered(kind).is_some(), "{kind}");
        }
    }

    /// A report counts the institutions of the last decrypted round, and says when some of the
    /// enrolled ones were not among them.
    #[test]
    fn a_report_names_the_institutions_its_figures_cover() {
        let all = ReportedInstitutions {
            last_round: 4,
            enrolled: 4,
        };
        assert_eq!(all.to_string(), "4 institutions");
        let fewer = ReportedInstitutions {
            last_round: 3,
            enrolled: 4,
        };
        assert_eq!(
            fewer.to_string(),
            "3 of the 4 enrolled institutions (the others left before the last round)"
        );
    }
}
