//! The limit every federated job is measured against: the same job logic run in-process on the
//! pooled rows, with plaintext sums in place of encrypted aggregates, no network and no
//! committee. Only `simulate` uses it, on data it generated or split itself — pooling rows is
//! exactly what a real consortium cannot do.

use crate::launch::rows_for_pooling;
use anyhow::{bail, Context, Result};
use fedbank_common::encoding::DecodedQuantity;
use fedbank_common::job::segment::{table_round, SegmentJob, SegmentResult};
use fedbank_common::job::ValidJob;
use fedbank_participant::{local_stats, LocalData, LocalTable};

/// Runs a segment job on the pooled rows of every participant's `data`. The reference date is
/// the job's, or the day after the pooled log's latest purchase.
pub fn segment(job: &ValidJob, data: &[LocalData]) -> Result<SegmentResult> {
    let spec = job.spec();
    let segment = job.segment().context("not a segment job")?;
    let reference = segment.reference_day().or_else(|| {
        data.iter()
            .filter_map(|d| match d {
                LocalData::Transactions(h) => Some(h.latest_day() + 1),
                LocalData::Table { .. } | LocalData::Customers(_) | LocalData::Contacts(_) => None,
            })
            .max()
    });
    let mut pooled = LocalTable::default();
    for d in data {
        pooled.append(&rows_for_pooling(d, reference)?);
    }
    let mut logic = SegmentJob::new(spec.features.clone(), segment.clone(), spec.histogram_bins);
    if let Some(day) = reference {
        logic = logic.with_reference_day(day);
    }
    let mut round = Some(logic.first_round());
    while let Some(kind) = round {
        let columns = fedbank_common::job::LocalColumns {
            rows: pooled.rows,
            columns: &pooled.columns,
        };
        let local =
            table_round(columns, &spec.features, u64::MAX, &kind).map_err(anyhow::Error::msg)?;
        let plan = job.plan(&fedbank_common::job::RoundKind::Registered(
            kind.to_round()?,
        ))?;
        let decoded: Vec<DecodedQuantity> = plan
            .quantities()
            .iter()
            .zip(local.values)
            .map(|(q, values)| DecodedQuantity {
                name: q.spec.name.clone(),
                exact: Vec::new(),
                values,
            })
            .collect();
        round = logic.apply(&kind, &decoded)?;
    }
    match logic.result() {
        Some(result) => Ok(result.clone()),
        None => bail!("the pooled segmentation ended without a result"),
    }
}

/// Trains the propensity model on the pooled training rows (standardized with their own
/// statistics) and scores the pooled hold-out rows: (Newton rounds, hold-out AUC).
pub fn propensity(job: &ValidJob, data: &[LocalData]) -> Result<(u32, Option<f64>)> {
    use fedbank_common::logistic::{exact_auc, fit_newton, sigmoid};
    use fedbank_common::model::{design_row, PropensityModel};
    let spec = job.spec();
    let p = job.propensity().context("not a propensity job")?;
    let records: Vec<&fedbank_participant::customers::CustomerRecords> = data
        .iter()
        .filter_map(|d| match d {
            LocalData::Customers(r) => Some(r),
            _ => None,
        })
        .collect();
    let mut pooled = LocalTable::default();
    for r in &records {
        pooled.append(&r.numeric_table(&spec.features).into());
    }
    let moments = local_stats::compute(
        &pooled,
        &spec.features,
        u64::MAX,
        &fedbank_common::job::stats::moments_round(),
    )?;
    let (mean, std): (Vec<f64>, Vec<f64>) = moments
        .values
        .chunks(4)
        .map(|q| fedbank_common::job::stats::mean_std(q[0][0], q[2][0], q[3][0]))
        .unzip();
    let (numeric, categorical) =
        PropensityModel::encodings(&spec.features, &mean, &std, &p.categorical, p.other_level);
    let rows = |holdout: bool| {
        records
            .iter()
            .flat_map(|r| (0..r.rows()).map(move |i| (*r, i)))
            .filter(move |(r, i)| r.holdout[*i] == holdout)
            .map(|(r, i)| {
                (
                    design_row(&numeric, &categorical, &r.numeric[i], &r.levels[i]),
                    r.label[i],
                )
            })
    };
    let n = rows(false).count() as f64;
    let positives = rows(false).filter(|r| r.1).count() as f64;
    let weights = p.class_weight.weights(n, positives);
    let train: Vec<(Vec<f64>, bool, f64)> = rows(false)
        .map(|(x, y)| (x, y, if y { weights[0] } else { weights[1] }))
        .collect();
    let d = p.design_names(&spec.features).len();
    let (beta, rounds) = fit_newton(&train, d, p.l2, p.max_rounds, p.tolerance)?;
    let scored: Vec<(f64, bool)> = rows(true)
        .map(|(x, y)| (sigmoid(x.iter().zip(&beta).map(|(a, b)| a * b).sum()), y))
        .collect();
    Ok((rounds, exact_auc(&scored)))
}
