//! A participant's step: its own customers' counts, sums and counts above the consortium mean.

use super::{Means, ABOVE, TOTALS};
use fedbank_common::job::{JobRound, LocalColumns, LocalValues, ValidJob};

/// This participant's values for `round` over its table.
pub fn compute(
    job: &ValidJob,
    table: LocalColumns<'_>,
    round: &JobRound,
) -> Result<LocalValues, String> {
    let spec = job.spec();
    let inclusive = super::settings(spec)?.inclusive;
    let means = match round.tag {
        TOTALS => None,
        ABOVE => Some(
            round
                .parameters::<Means>()
                .map_err(|e| e.to_string())?
                .means,
        ),
        other => return Err(format!("tag {other} is not a round of an above-mean job")),
    };
    let mut out = LocalValues::default();
    for (j, f) in spec.features.iter().enumerate() {
        let (mut n, mut sum, mut above) = (0.0, 0.0, 0.0);
        for v in table.column(&f.name)?.iter().flatten() {
            let clipped = v.clamp(f.lower(), f.bound);
            if clipped != *v {
                out.clipped += 1;
            }
            n += 1.0;
            sum += clipped;
            if means
                .as_ref()
                .is_some_and(|m| clipped > m[j] || (inclusive && clipped == m[j]))
            {
                above += 1.0;
            }
        }
        match means {
            None => out.values.extend([vec![n], vec![sum]]),
            Some(_) => out.values.push(vec![above]),
        }
    }
    Ok(out)
}
