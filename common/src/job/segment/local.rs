//! A participant's side of the segment job: presence indicators from its transaction log, its
//! rows (the customer table, or RFM rows counted to the round's reference day), the Lloyd sums,
//! lifecycle counts and RFM scores over them, and the local assignment of its own customers to
//! the released segments. Values are clipped to the feature's declared range (and counted)
//! before they are summed, as in every job.

use super::{SegmentRelease, SegmentRound, LIFECYCLE_STAGES};
use crate::calendar;
use crate::job::stats::{histogram, moments};
use crate::job::{
    decode_record, FeatureSpec, JobRound, LocalColumns, LocalInput, LocalRelease, LocalValues,
    ParticipantStep, TableColumns, ValidJob, Z_BOUND,
};

/// Column of the RFM table holding each customer's lifecycle stage (an index into
/// [`LIFECYCLE_STAGES`]); it is not a model feature.
pub const LIFECYCLE_COLUMN: &str = "lifecycle_stage";

/// The lifecycle stage of a customer whose first and last purchases were `since_first` and
/// `since_last` days before the reference date, with `purchase_days` distinct purchase days.
pub fn lifecycle_stage(since_first: i64, since_last: i64, purchase_days: usize) -> usize {
    if since_first <= 90 {
        0
    } else if since_last <= 90 {
        if purchase_days >= 5 {
            2
        } else {
            1
        }
    } else if since_last <= 365 {
        3
    } else {
        4
    }
}

/// A participant's step in one segment job.
pub struct SegmentParticipant {
    job: ValidJob,
    /// The reference day its RFM rows were counted to, once a round named one, and those rows.
    counted: Option<(i64, TableColumns)>,
}

impl SegmentParticipant {
    /// A fresh step for `job`.
    pub fn new(job: ValidJob) -> Self {
        Self { job, counted: None }
    }

    /// Runs `f` over this participant's rows for a round counted to `day`: the customer table
    /// when the job has no reference day, otherwise the RFM rows of its transaction log counted
    /// to `day` — always the same day within a run.
    fn with_rows<T>(
        &mut self,
        data: LocalInput<'_>,
        day: Option<i64>,
        f: impl FnOnce(LocalColumns<'_>, Option<&[String]>) -> Result<T, String>,
    ) -> Result<T, String> {
        let Some(day) = day else {
            if data.transactions.is_some() {
                return Err(
                    "the round names no reference day, and this participant's rows come from a transaction log"
                        .to_owned(),
                );
            }
            return f(data.table, data.row_ids);
        };
        let log = data.transactions.ok_or_else(|| {
            "the round is counted to a reference day, and this participant holds no transaction log"
                .to_owned()
        })?;
        if let Some(given) = self.job.segment().and_then(|s| s.reference_day()) {
            if day != given {
                return Err(format!(
                    "the round counts recency to {}, the job gives {}",
                    calendar::format_day(day),
                    calendar::format_day(given)
                ));
            }
        }
        match &self.counted {
            Some((used, _)) if *used != day => {
                return Err(format!(
                    "the round counts recency to {}, earlier rounds of this job counted it to {}; \
                     one reference date per job",
                    calendar::format_day(day),
                    calendar::format_day(*used)
                ))
            }
            Some(_) => {}
            None => self.counted = Some((day, log.rfm_table(day)?)),
        }
        let rows = self
            .counted
            .as_ref()
            .map(|(_, t)| t.view())
            .ok_or_else(|| "the RFM rows were not built".to_owned())?;
        f(rows, Some(log.ids()))
    }
}

impl ParticipantStep for SegmentParticipant {
    fn local_round(
        &mut self,
        data: LocalInput<'_>,
        round: &JobRound,
    ) -> Result<LocalValues, String> {
        let round = SegmentRound::parse(round)?;
        if let SegmentRound::LatestMonth | SegmentRound::LatestDay { .. } = round {
            let log = data.transactions.ok_or_else(|| {
                "a reference-date round needs a transaction log, and this participant holds a table"
                    .to_owned()
            })?;
            let values = latest_purchase_presence(log.latest_day(), &round)?;
            return Ok(LocalValues {
                values: vec![values],
                clipped: 0,
                report: None,
            });
        }
        let spec = self.job.spec().clone();
        self.with_rows(data, round.reference_day(), |rows, _| {
            table_round(rows, &spec.features, spec.max_rows, &round)
        })
    }

    fn released(&mut self, data: LocalInput<'_>, release: &[u8]) -> Result<LocalRelease, String> {
        let released: SegmentRelease =
            decode_record(release).map_err(|e| format!("the segment release: {e}"))?;
        let features = self.job.spec().features.clone();
        let d = features.len();
        let fits = released.mean.len() == d
            && released.std.len() == d
            && !released.centroids.is_empty()
            && released.labels.len() == released.centroids.len()
            && released.centroids.iter().all(|c| c.len() == d);
        if !fits {
            return Err(format!(
                "the segment release has {} centroids and {} labels for {d} features",
                released.centroids.len(),
                released.labels.len()
            ));
        }
        self.with_rows(data, released.reference_day, |rows, ids| {
            let mut assignments = Vec::with_capacity(rows.rows);
            let mut z = vec![0.0; d];
            for row in 0..rows.rows {
                let id = ids
                    .and_then(|ids| ids.get(row).cloned())
                    .unwrap_or_else(|| format!("row {}", row + 1));
                let mut complete = true;
                for (j, f) in features.iter().enumerate() {
                    match rows
                        .columns
                        .get(&f.name)
                        .and_then(|c| c.get(row).copied().flatten())
                    {
                        Some(v) => {
                            z[j] = standardize(
                                v.clamp(f.lower(), f.bound),
                                released.mean[j],
                                released.std[j],
                            )
                        }
                        None => complete = false,
                    }
                }
                let label = if complete {
                    released.labels[nearest(&z, &released.centroids).0].clone()
                } else {
                    "unassigned (missing values)".to_owned()
                };
                assignments.push((id, label));
            }
            Ok(LocalRelease::Assignments {
                assignments,
                labels: released.labels.len(),
            })
        })
    }
}

/// This participant's indicators for a reference-date round: every month (or day of the given
/// month) on or before its latest purchase is set; an error when the latest purchase is after
/// 2099-12-31, beyond the months the round covers, or for a round of another kind.
pub fn latest_purchase_presence(latest_day: i64, round: &SegmentRound) -> Result<Vec<f64>, String> {
    let latest_month = calendar::month_index(latest_day);
    let indicators = |len: usize, last: i64| {
        (0..len as i64)
            .map(|i| f64::from(u8::from(i <= last)))
            .collect()
    };
    match round {
        SegmentRound::LatestMonth if latest_month >= calendar::MONTHS as i64 => Err(format!(
            "the latest purchase, {}, is after 2099-12, beyond the reference-date rounds; give reference_date in the job",
            calendar::format_day(latest_day)
        )),
        SegmentRound::LatestMonth => Ok(indicators(calendar::MONTHS, latest_month)),
        SegmentRound::LatestDay { month } => {
            let last = match latest_month.cmp(month) {
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Equal => latest_day - calendar::first_day_of_month(*month),
                std::cmp::Ordering::Greater => calendar::MONTH_DAYS as i64,
            };
            Ok(indicators(calendar::MONTH_DAYS, last))
        }
        _ => Err("not a reference-date round".to_owned()),
    }
}

fn column<'a>(rows: LocalColumns<'a>, name: &str) -> Result<&'a [Option<f64>], String> {
    rows.column(name)
}

/// A table round of the segment job over `rows` (the customer table or the RFM rows), with at
/// most `max_rows` rows: moments, histogram, a Lloyd iteration, lifecycle counts or RFM scores.
/// The pooled baseline calls it on the pooled rows.
pub fn table_round(
    rows: LocalColumns<'_>,
    features: &[FeatureSpec],
    max_rows: u64,
    round: &SegmentRound,
) -> Result<LocalValues, String> {
    if rows.rows as u64 > max_rows {
        return Err(format!(
            "the local table has {} rows, the job allows at most {max_rows}",
            rows.rows
        ));
    }
    let mut clipped = 0u64;
    let mut clip = |v: f64, f: &FeatureSpec| {
        let (lo, hi) = (f.lower(), f.bound);
        if v < lo || v > hi {
            clipped += 1;
        }
        v.clamp(lo, hi)
    };
    let d = features.len();
    let shape = |mean: &[f64], std: &[f64], centroids: &[Vec<f64>]| match mean.len() == d
        && std.len() == d
        && centroids.iter().all(|c| c.len() == d)
    {
        true => Ok(()),
        false => Err(format!(
            "the round has {} means and centroids of another width for {d} features",
            mean.len()
        )),
    };
    let mut values = Vec::new();
    match round {
        SegmentRound::LatestMonth | SegmentRound::LatestDay { .. } => {
            return Err("a reference-date round is not a table round".to_owned())
        }
        SegmentRound::Moments { .. } => return moments(rows, features).map_err(|e| e.to_string()),
        SegmentRound::Histogram(p) => {
            return histogram(rows, features, &p.edges).map_err(|e| e.to_string())
        }
        SegmentRound::KMeans(p) => {
            shape(&p.mean, &p.std, &p.centroids)?;
            let columns: Vec<&[Option<f64>]> = features
                .iter()
                .map(|f| column(rows, &f.name))
                .collect::<Result<_, _>>()?;
            let k = p.centroids.len();
            let mut count = vec![0.0; k];
            let mut sums = vec![vec![0.0; k]; d];
            let mut sumsq = vec![vec![0.0; k]; d];
            let mut inertia = 0.0;
            let mut silhouette = 0.0;
            let mut z = vec![0.0; d];
            'rows: for row in 0..rows.rows {
                for (j, (col, f)) in columns.iter().zip(features).enumerate() {
                    let Some(v) = col.get(row).copied().flatten() else {
                        continue 'rows;
                    };
                    z[j] = standardize(clip(v, f), p.mean[j], p.std[j]);
                }
                let (best, dist, second) = nearest_two(&z, &p.centroids);
                count[best] += 1.0;
                for (j, zj) in z.iter().enumerate() {
                    sums[j][best] += zj;
                    sumsq[j][best] += zj * zj;
                }
                inertia += dist;
                silhouette += simplified_silhouette(dist, second);
            }
            values.push(count);
            values.extend(sums);
            values.extend(sumsq);
            values.push(vec![inertia]);
            values.push(vec![silhouette]);
        }
        SegmentRound::Scores(p) => {
            shape(&p.mean, &p.std, &p.centroids)?;
            if p.quintiles.len() != d {
                return Err(format!(
                    "{} quintile lists for {d} features",
                    p.quintiles.len()
                ));
            }
            let columns: Vec<&[Option<f64>]> = features
                .iter()
                .map(|f| column(rows, &f.name))
                .collect::<Result<_, _>>()?;
            let mut sums = vec![vec![0.0; p.centroids.len()]; d];
            let mut z = vec![0.0; d];
            let mut x = vec![0.0; d];
            'scored: for row in 0..rows.rows {
                for (j, (col, f)) in columns.iter().zip(features).enumerate() {
                    let Some(v) = col.get(row).copied().flatten() else {
                        continue 'scored;
                    };
                    x[j] = clip(v, f);
                    z[j] = standardize(x[j], p.mean[j], p.std[j]);
                }
                let (best, _) = nearest(&z, &p.centroids);
                for j in 0..d {
                    sums[j][best] += rfm_score(x[j], &p.quintiles[j], j == 0);
                }
            }
            values.extend(sums);
        }
        SegmentRound::Lifecycle { .. } => {
            let stages = column(rows, LIFECYCLE_COLUMN)?;
            let mut counts = vec![0.0; LIFECYCLE_STAGES.len()];
            for stage in stages.iter().flatten() {
                if let Some(c) = counts.get_mut(*stage as usize) {
                    *c += 1.0;
                }
            }
            values.push(counts);
        }
    }
    Ok(LocalValues {
        values,
        clipped,
        report: None,
    })
}

/// A value in standard deviations from the mean, clipped to ±[`Z_BOUND`] (0 when std is 0).
pub fn standardize(v: f64, mean: f64, std: f64) -> f64 {
    if std > 0.0 {
        ((v - mean) / std).clamp(-Z_BOUND, Z_BOUND)
    } else {
        0.0
    }
}

/// The nearest centroid (lowest index on ties) and the squared distance to it.
pub fn nearest(z: &[f64], centroids: &[Vec<f64>]) -> (usize, f64) {
    let (best, dist, _) = nearest_two(z, centroids);
    (best, dist)
}

/// The nearest centroid (lowest index on ties), the squared distance to it, and the squared
/// distance to the second nearest (infinite with one centroid).
pub fn nearest_two(z: &[f64], centroids: &[Vec<f64>]) -> (usize, f64, f64) {
    let mut best = (0, f64::INFINITY, f64::INFINITY);
    for (c, centroid) in centroids.iter().enumerate() {
        let dist: f64 = z.iter().zip(centroid).map(|(a, b)| (a - b) * (a - b)).sum();
        if dist < best.1 {
            best = (c, dist, best.1);
        } else if dist < best.2 {
            best.2 = dist;
        }
    }
    best
}

/// One customer's simplified silhouette (b − a) / max(a, b) from the squared distances to its
/// own and to the nearest other centroid: 0 with one centroid or when both are 0.
pub fn simplified_silhouette(own: f64, other: f64) -> f64 {
    let (a, b) = (own.sqrt(), other.sqrt());
    if !b.is_finite() || b.max(a) == 0.0 {
        0.0
    } else {
        (b - a) / a.max(b)
    }
}

/// A 1–5 score of `value` against four quintile edges; with `reversed` (recency), low values
/// score high.
pub fn rfm_score(value: f64, quintiles: &[f64], reversed: bool) -> f64 {
    let bin = quintiles.iter().filter(|e| value > **e).count() as f64;
    if reversed {
        5.0 - bin
    } else {
        1.0 + bin
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobSpec, TransactionLog};
    use std::collections::BTreeMap;

    #[derive(serde::Deserialize)]
    struct JobFile {
        job: JobSpec,
    }

    /// The shipped CDNOW segment job (transaction logs, reference date found by the rounds).
    fn cdnow() -> ValidJob {
        toml::from_str::<JobFile>(include_str!("../../../../configs/segment-cdnow.toml"))
            .expect("job file")
            .job
            .validate()
            .expect("valid")
    }

    /// Two customers: one bought on day 100 only, one on days 10 and 90.
    struct Log {
        ids: Vec<String>,
    }

    impl TransactionLog for Log {
        fn latest_day(&self) -> i64 {
            100
        }
        fn rfm_table(&self, reference_day: i64) -> Result<TableColumns, String> {
            if reference_day < 100 {
                return Err(format!("a purchase after day {reference_day}"));
            }
            let r = |last: i64| Some(((reference_day - last) as f64).ln_1p());
            let columns: BTreeMap<String, Vec<Option<f64>>> = [
                ("log_recency", vec![r(100), r(90)]),
                (
                    "log_frequency",
                    vec![Some(1f64.ln_1p()), Some(2f64.ln_1p())],
                ),
                (
                    "log_monetary",
                    vec![Some(50f64.ln_1p()), Some(500f64.ln_1p())],
                ),
                (LIFECYCLE_COLUMN, vec![Some(0.0), Some(1.0)]),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            Ok(TableColumns { rows: 2, columns })
        }
        fn ids(&self) -> &[String] {
            &self.ids
        }
    }

    fn input<'a>(log: &'a Log, empty: &'a BTreeMap<String, Vec<Option<f64>>>) -> LocalInput<'a> {
        LocalInput {
            table: LocalColumns {
                rows: 0,
                columns: empty,
            },
            row_ids: None,
            transactions: Some(log),
            customers: None,
            contacts: None,
        }
    }

    fn moments(day: Option<i64>) -> JobRound {
        SegmentRound::Moments { reference_day: day }
            .to_round()
            .expect("round")
    }

    #[test]
    fn one_reference_day_per_run_and_rows_only_from_the_log() {
        let log = Log {
            ids: vec!["a".into(), "b".into()],
        };
        let empty = BTreeMap::new();
        let mut step = SegmentParticipant::new(cdnow());
        let first = step
            .local_round(input(&log, &empty), &moments(Some(101)))
            .expect("counted to day 101");
        assert_eq!(first.values[0], vec![2.0], "two customers with recency");
        // A deviating coordinator asks for the same rows counted to another day: refused, and
        // the day the step counted to is unchanged.
        let moved = step
            .local_round(input(&log, &empty), &moments(Some(150)))
            .expect_err("another day");
        assert!(moved.contains("one reference date per job"), "{moved}");
        assert!(step
            .local_round(input(&log, &empty), &moments(Some(101)))
            .is_ok());
        // A round with no reference day over a transaction log, and a day before the latest
        // purchase, are refused by a fresh step too.
        let mut fresh = SegmentParticipant::new(cdnow());
        let none = fresh
            .local_round(input(&log, &empty), &moments(None))
            .expect_err("no day");
        assert!(none.contains("no reference day"), "{none}");
        let early = fresh
            .local_round(input(&log, &empty), &moments(Some(50)))
            .expect_err("before the latest purchase");
        assert!(early.contains("a purchase after"), "{early}");
    }

    #[test]
    fn the_release_assigns_each_own_customer_and_refuses_a_misfit() {
        let log = Log {
            ids: vec!["a".into(), "b".into()],
        };
        let empty = BTreeMap::new();
        let mut step = SegmentParticipant::new(cdnow());
        let rows = log.rfm_table(101).expect("rows");
        let stats = |name: &str| {
            let v: Vec<f64> = rows.columns[name].iter().flatten().copied().collect();
            (v.iter().sum::<f64>() / 2.0, 1.0)
        };
        let (mean, std): (Vec<f64>, Vec<f64>) =
            crate::job::RFM_FEATURES.iter().map(|f| stats(f)).unzip();
        // Customer a: recent, one small purchase; b: less recent, more and larger ones.
        let release = SegmentRelease {
            reference_day: Some(101),
            mean,
            std,
            centroids: vec![vec![-1.0, -1.0, -1.0], vec![1.0, 1.0, 1.0]],
            labels: vec!["new".into(), "regulars".into()],
        };
        let bytes = crate::canonical::encode_body(&release).expect("encode");
        let kept = step
            .released(input(&log, &empty), &bytes)
            .expect("assigned");
        assert_eq!(
            kept,
            LocalRelease::Assignments {
                assignments: vec![
                    ("a".to_owned(), "new".to_owned()),
                    ("b".to_owned(), "regulars".to_owned())
                ],
                labels: 2
            }
        );
        let mut misfit = release.clone();
        misfit.labels.pop();
        let bytes = crate::canonical::encode_body(&misfit).expect("encode");
        let err = step
            .released(input(&log, &empty), &bytes)
            .expect_err("a label short");
        assert!(err.contains("1 labels"), "{err}");
        let mut trailing = crate::canonical::encode_body(&release).expect("encode");
        trailing.push(0);
        assert!(step.released(input(&log, &empty), &trailing).is_err());
    }

    #[test]
    fn quintile_scores() {
        let q = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(rfm_score(0.5, &q, false), 1.0);
        assert_eq!(rfm_score(2.5, &q, false), 3.0);
        assert_eq!(rfm_score(9.0, &q, false), 5.0);
        // Recency: the most recent customers score 5.
        assert_eq!(rfm_score(0.5, &q, true), 5.0);
        assert_eq!(rfm_score(9.0, &q, true), 1.0);
    }

    #[test]
    fn presence_up_to_the_latest_purchase() {
        let day = calendar::day_number("1998-06-30").expect("date");
        let month = calendar::month_index(day);
        let months = latest_purchase_presence(day, &SegmentRound::LatestMonth).expect("in range");
        assert_eq!(
            months.iter().filter(|v| **v == 1.0).count() as i64,
            month + 1
        );
        let days = |m| {
            latest_purchase_presence(day, &SegmentRound::LatestDay { month: m })
                .expect("in range")
                .iter()
                .filter(|v| **v == 1.0)
                .count()
        };
        assert_eq!(days(month), 30);
        assert_eq!(days(month + 1), 0);
        assert_eq!(days(month - 1), 31);
        assert!(latest_purchase_presence(
            calendar::day_number("2100-01-01").expect("date"),
            &SegmentRound::LatestMonth
        )
        .is_err());
        assert!(latest_purchase_presence(
            day,
            &SegmentRound::Moments {
                reference_day: None
            }
        )
        .is_err());
    }

    #[test]
    fn lifecycle_stages() {
        assert_eq!(lifecycle_stage(30, 10, 1), 0); // new
        assert_eq!(lifecycle_stage(400, 10, 2), 1); // active
        assert_eq!(lifecycle_stage(400, 10, 9), 2); // loyal
        assert_eq!(lifecycle_stage(400, 200, 9), 3); // at risk
        assert_eq!(lifecycle_stage(800, 500, 9), 4); // churned
    }

    #[test]
    fn nearest_breaks_ties_by_the_lowest_index() {
        let centroids = vec![vec![1.0], vec![-1.0], vec![3.0]];
        assert_eq!(nearest(&[0.0], &centroids), (0, 1.0));
        assert_eq!(nearest_two(&[0.0], &centroids), (0, 1.0, 1.0));
        assert_eq!(simplified_silhouette(1.0, 1.0), 0.0);
        assert_eq!(simplified_silhouette(0.0, f64::INFINITY), 0.0);
    }
}
