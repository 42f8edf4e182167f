//! The limit every federated job is measured against: the same job logic run in-process on the
//! pooled rows, with plaintext sums in place of encrypted aggregates, no network and no
//! committee. Only `simulate` uses it, on data it generated or split itself — pooling rows is
//! exactly what a real consortium cannot do.

use crate::nodes::rows_for_pooling;
use anyhow::{bail, Context, Result};
use fedbank_common::encoding::DecodedQuantity;
use fedbank_common::job::ValidJob;
use fedbank_coordinator::segment::{SegmentJob, SegmentResult};
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
                LocalData::Table { .. } | LocalData::Customers(_) => None,
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
        let local = local_stats::compute(&pooled, &spec.features, u64::MAX, &kind)?;
        let plan = job.plan(&kind)?;
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
