//! Logistic-regression arithmetic shared by every role: the per-row terms a participant sums,
//! the Newton step the coordinator takes from the summed gradient and Hessian, and the
//! evaluation figures computed from score histograms (AUC, log-loss, precision and lift by
//! decile). No I/O, no randomness.
//!
//! The objective is the weighted negative log-likelihood plus (λ/2)·‖β‖² over every coefficient
//! but the intercept (index 0).

/// The logistic function, computed without overflow.
pub fn sigmoid(t: f64) -> f64 {
    if t >= 0.0 {
        1.0 / (1.0 + (-t).exp())
    } else {
        let e = t.exp();
        e / (1.0 + e)
    }
}

/// Largest per-row log-loss counted (a score of about e^−50 on the wrong side).
pub const MAX_ROW_LOSS: f64 = 50.0;

/// One row's log-loss for label `y` at linear score `t`, capped at [`MAX_ROW_LOSS`].
pub fn row_loss(t: f64, y: bool) -> f64 {
    // −log σ(t) = log(1 + e^−t), computed stably.
    let softplus = |u: f64| {
        if u > 0.0 {
            u + (-u).exp().ln_1p()
        } else {
            u.exp().ln_1p()
        }
    };
    (if y { softplus(-t) } else { softplus(t) }).min(MAX_ROW_LOSS)
}

/// Index of the upper-triangle entry (i, j), i ≤ j, of a d × d symmetric matrix stored row by
/// row.
pub fn packed_index(d: usize, i: usize, j: usize) -> usize {
    i * d - i * (i + 1) / 2 + j
}

/// Length of the packed upper triangle of a d × d matrix.
pub fn packed_len(d: usize) -> usize {
    d * (d + 1) / 2
}

/// Sums over rows: gradient, packed Hessian and loss of the unpenalized objective.
#[derive(Clone, Debug, PartialEq)]
pub struct NewtonSums {
    /// Σ w (p − y) x.
    pub gradient: Vec<f64>,
    /// Σ w p (1 − p) x xᵀ, packed upper triangle.
    pub hessian: Vec<f64>,
    /// Σ w · log-loss.
    pub loss: f64,
}

impl NewtonSums {
    /// Zero sums for `d` coefficients.
    pub fn new(d: usize) -> Self {
        Self {
            gradient: vec![0.0; d],
            hessian: vec![0.0; packed_len(d)],
            loss: 0.0,
        }
    }

    /// Adds one row with design vector `x`, label `y` and weight `w` at coefficients `beta`.
    pub fn add(&mut self, x: &[f64], y: bool, w: f64, beta: &[f64]) {
        let t: f64 = x.iter().zip(beta).map(|(a, b)| a * b).sum();
        let p = sigmoid(t);
        let r = w * (p - f64::from(u8::from(y)));
        let h = w * p * (1.0 - p);
        let d = x.len();
        for i in 0..d {
            self.gradient[i] += r * x[i];
            if x[i] == 0.0 {
                continue;
            }
            let hx = h * x[i];
            let row = packed_index(d, i, i);
            for (cell, xj) in self.hessian[row..row + d - i].iter_mut().zip(&x[i..]) {
                *cell += hx * xj;
            }
        }
        self.loss += w * row_loss(t, y);
    }
}

/// Why a Newton step could not be taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NewtonError {
    /// The penalized Hessian is not positive definite (λ = 0 with a singular design).
    #[error("the penalized Hessian is not positive definite at pivot {0}; raise l2")]
    NotPositiveDefinite(usize),
    /// The sums do not match the number of coefficients.
    #[error("{got} gradient values for {expected} coefficients")]
    Shape {
        /// Coefficients.
        expected: usize,
        /// Values given.
        got: usize,
    },
}

/// The Newton step Δ with (H + λI′) Δ = −(g + λβ′), where ′ leaves out the intercept.
pub fn newton_step(sums: &NewtonSums, beta: &[f64], l2: f64) -> Result<Vec<f64>, NewtonError> {
    let d = beta.len();
    if sums.gradient.len() != d || sums.hessian.len() != packed_len(d) {
        return Err(NewtonError::Shape {
            expected: d,
            got: sums.gradient.len(),
        });
    }
    let mut a = vec![0.0; d * d];
    for i in 0..d {
        for j in i..d {
            let v = sums.hessian[packed_index(d, i, j)];
            a[i * d + j] = v;
            a[j * d + i] = v;
        }
        if i > 0 {
            a[i * d + i] += l2;
        }
    }
    let rhs: Vec<f64> = (0..d)
        .map(|i| -(sums.gradient[i] + if i > 0 { l2 * beta[i] } else { 0.0 }))
        .collect();
    cholesky_solve(&mut a, d, rhs)
}

/// Solves A x = b for symmetric positive-definite A (row-major, overwritten by its Cholesky
/// factor).
pub fn cholesky_solve(a: &mut [f64], d: usize, mut b: Vec<f64>) -> Result<Vec<f64>, NewtonError> {
    for j in 0..d {
        let mut diag = a[j * d + j];
        for k in 0..j {
            diag -= a[j * d + k] * a[j * d + k];
        }
        if diag <= 0.0 || !diag.is_finite() {
            return Err(NewtonError::NotPositiveDefinite(j));
        }
        let l = diag.sqrt();
        a[j * d + j] = l;
        for i in j + 1..d {
            let mut v = a[i * d + j];
            for k in 0..j {
                v -= a[i * d + k] * a[j * d + k];
            }
            a[i * d + j] = v / l;
        }
    }
    for i in 0..d {
        for k in 0..i {
            b[i] -= a[i * d + k] * b[k];
        }
        b[i] /= a[i * d + i];
    }
    for i in (0..d).rev() {
        for k in i + 1..d {
            b[i] -= a[k * d + i] * b[k];
        }
        b[i] /= a[i * d + i];
    }
    Ok(b)
}

/// The penalized objective: loss + (λ/2)‖β′‖².
pub fn penalized(loss: f64, beta: &[f64], l2: f64) -> f64 {
    loss + 0.5 * l2 * beta.iter().skip(1).map(|b| b * b).sum::<f64>()
}

/// Fits by Newton's method on plaintext rows (a participant's local-only model, and the
/// reference the federated fit is tested against). Rows are (design vector, label, weight).
pub fn fit_newton(
    rows: &[(Vec<f64>, bool, f64)],
    d: usize,
    l2: f64,
    max_rounds: u32,
    tolerance: f64,
) -> Result<(Vec<f64>, u32), NewtonError> {
    let mut beta = vec![0.0; d];
    for round in 1..=max_rounds {
        let mut sums = NewtonSums::new(d);
        for (x, y, w) in rows {
            sums.add(x, *y, *w, &beta);
        }
        let step = newton_step(&sums, &beta, l2)?;
        for (b, s) in beta.iter_mut().zip(&step) {
            *b += s;
        }
        if step.iter().fold(0.0f64, |m, s| m.max(s.abs())) <= tolerance {
            return Ok((beta, round));
        }
    }
    Ok((beta, max_rounds))
}

/// The score-histogram bin of a probability, with `bins` equal bins on [0, 1].
pub fn score_bin(p: f64, bins: usize) -> usize {
    ((p * bins as f64) as usize).min(bins.saturating_sub(1))
}

/// Mean log-loss and accuracy at 0.5 read off score histograms, each customer at its bin's
/// centre: accuracy is exact when the number of bins is even (0.5 is a bin edge); the log-loss
/// is within the bins' width of the exact one, except in the outermost bins. (0, 0) when empty.
pub fn loss_and_accuracy_from_histograms(positives: &[f64], negatives: &[f64]) -> (f64, f64) {
    let bins = positives.len().min(negatives.len());
    let (mut loss, mut correct, mut total) = (0.0, 0.0, 0.0);
    for b in 0..bins {
        let centre = (b as f64 + 0.5) / bins as f64;
        let (p, n) = (positives[b], negatives[b]);
        loss += -p * centre.ln() - n * (1.0 - centre).ln();
        if centre >= 0.5 {
            correct += p;
        } else {
            correct += n;
        }
        total += p + n;
    }
    if total <= 0.0 {
        return (0.0, 0.0);
    }
    (loss / total, correct / total)
}

/// AUC from score histograms of positives and negatives (same bins, ascending scores); pairs
/// in the same bin count one half. `None` without both classes.
pub fn auc_from_histograms(positives: &[f64], negatives: &[f64]) -> Option<f64> {
    let (p, n): (f64, f64) = (positives.iter().sum(), negatives.iter().sum());
    if p <= 0.0 || n <= 0.0 {
        return None;
    }
    let mut below = 0.0;
    let mut pairs = 0.0;
    for (pos, neg) in positives.iter().zip(negatives) {
        pairs += pos * (below + 0.5 * neg);
        below += neg;
    }
    Some(pairs / (p * n))
}

/// The largest difference between the histogram AUC and the exact AUC: half the share of
/// positive–negative pairs that fall in the same bin.
pub fn auc_resolution(positives: &[f64], negatives: &[f64]) -> f64 {
    let (p, n): (f64, f64) = (positives.iter().sum(), negatives.iter().sum());
    let tied: f64 = positives.iter().zip(negatives).map(|(a, b)| a * b).sum();
    if p * n > 0.0 {
        0.5 * tied / (p * n)
    } else {
        0.0
    }
}

/// The exact AUC of scored rows (probability, label), ties counted one half.
pub fn exact_auc(scored: &[(f64, bool)]) -> Option<f64> {
    let mut sorted = scored.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut below_neg, mut pairs, mut p, mut n) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        let (mut pos, mut neg) = (0.0, 0.0);
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            if sorted[j].1 {
                pos += 1.0;
            } else {
                neg += 1.0;
            }
            j += 1;
        }
        pairs += pos * (below_neg + 0.5 * neg);
        below_neg += neg;
        p += pos;
        n += neg;
        i = j;
    }
    (p > 0.0 && n > 0.0).then(|| pairs / (p * n))
}

/// Precision and lift of one score decile (the top tenth of customers first).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Decile {
    /// 1 = the highest-scored tenth.
    pub decile: usize,
    /// Customers in it.
    pub customers: f64,
    /// Share of positives in it.
    pub precision: f64,
    /// Precision over the overall positive rate.
    pub lift: f64,
    /// Share of all positives in deciles 1..=this.
    pub cumulative_recall: f64,
}

/// Precision and lift by decile from score histograms (customers in a bin that straddles a
/// decile boundary are apportioned).
pub fn deciles(positives: &[f64], negatives: &[f64]) -> Vec<Decile> {
    let total_pos: f64 = positives.iter().sum();
    let total: f64 = total_pos + negatives.iter().sum::<f64>();
    if total <= 0.0 {
        return Vec::new();
    }
    let base = total_pos / total;
    // Walk bins from the highest score down, cutting at every tenth of the customers.
    let mut out = Vec::with_capacity(10);
    let (mut taken_rows, mut taken_pos) = (0.0, 0.0);
    let mut bin = positives.len();
    let (mut left_pos, mut left_neg) = (0.0, 0.0);
    let mut cumulative = 0.0;
    for decile in 1..=10 {
        let want = total * decile as f64 / 10.0 - taken_rows;
        let (mut rows, mut pos) = (0.0, 0.0);
        while rows < want - 1e-9 {
            if left_pos + left_neg <= 0.0 {
                if bin == 0 {
                    break;
                }
                bin -= 1;
                left_pos = positives[bin];
                left_neg = negatives[bin];
                continue;
            }
            let available = left_pos + left_neg;
            let take = (want - rows).min(available);
            let share = take / available;
            let pos_taken = left_pos * share;
            rows += take;
            pos += pos_taken;
            left_pos -= pos_taken;
            left_neg -= (left_neg) * share;
            if take >= available {
                left_pos = 0.0;
                left_neg = 0.0;
            }
        }
        taken_rows += rows;
        taken_pos += pos;
        cumulative = if total_pos > 0.0 {
            taken_pos / total_pos
        } else {
            cumulative
        };
        let precision = if rows > 0.0 { pos / rows } else { 0.0 };
        out.push(Decile {
            decile,
            customers: rows,
            precision,
            lift: if base > 0.0 { precision / base } else { 0.0 },
            cumulative_recall: cumulative,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cholesky_solves() {
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        let x = cholesky_solve(&mut a, 2, vec![2.0, 1.0]).expect("spd");
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12, "{x:?}");
        let mut singular = vec![1.0, 1.0, 1.0, 1.0];
        assert!(cholesky_solve(&mut singular, 2, vec![1.0, 1.0]).is_err());
    }

    #[test]
    fn deciles_of_a_perfect_ranking() {
        // 100 customers, the 10 highest scored are the only positives.
        let mut pos = vec![0.0; 10];
        let mut neg = vec![0.0; 10];
        pos[9] = 10.0;
        for n in neg.iter_mut().take(9) {
            *n = 10.0;
        }
        let d = deciles(&pos, &neg);
        assert_eq!(d.len(), 10);
        assert!((d[0].precision - 1.0).abs() < 1e-12 && (d[0].lift - 10.0).abs() < 1e-9);
        assert!(d[1..].iter().all(|d| d.precision.abs() < 1e-12));
        assert!((d[9].cumulative_recall - 1.0).abs() < 1e-12);
    }

    proptest! {
        #[test]
        fn histogram_auc_is_within_its_resolution(scored in proptest::collection::vec((0.0f64..1.0, any::<bool>()), 2..300), bins in 1usize..200) {
            let mut pos = vec![0.0; bins];
            let mut neg = vec![0.0; bins];
            for (p, y) in &scored {
                if *y { pos[score_bin(*p, bins)] += 1.0 } else { neg[score_bin(*p, bins)] += 1.0 }
            }
            match (auc_from_histograms(&pos, &neg), exact_auc(&scored)) {
                (Some(h), Some(e)) => prop_assert!((h - e).abs() <= auc_resolution(&pos, &neg) + 1e-12),
                (None, None) => {}
                other => prop_assert!(false, "{other:?}"),
            }
        }

        #[test]
        fn histogram_accuracy_is_exact_and_log_loss_close_with_even_bins(
            scored in proptest::collection::vec((0.02f64..0.98, any::<bool>()), 1..300),
            half in 25usize..500,
        ) {
            let bins = 2 * half;
            let mut pos = vec![0.0; bins];
            let mut neg = vec![0.0; bins];
            for (p, y) in &scored {
                if *y { pos[score_bin(*p, bins)] += 1.0 } else { neg[score_bin(*p, bins)] += 1.0 }
            }
            let (loss, accuracy) = loss_and_accuracy_from_histograms(&pos, &neg);
            let n = scored.len() as f64;
            let exact_accuracy = scored.iter().filter(|(p, y)| (*p >= 0.5) == *y).count() as f64 / n;
            prop_assert!((accuracy - exact_accuracy).abs() < 1e-12);
            let exact_loss = scored.iter().map(|(p, y)| if *y { -p.ln() } else { -(1.0 - p).ln() }).sum::<f64>() / n;
            // Each centre is at most half a bin (≤ 0.01) from its score, so both lie in
            // [0.01, 0.99], where |d/dp ln p| ≤ 100.
            prop_assert!((loss - exact_loss).abs() <= 100.0 * 0.5 / bins as f64 + 1e-12, "{loss} vs {exact_loss}");
        }

        #[test]
        fn row_loss_matches_the_definition(t in -12.0f64..12.0, y in any::<bool>()) {
            let p = sigmoid(t);
            let direct = if y { -p.ln() } else { -(1.0 - p).ln() };
            prop_assert!((row_loss(t, y) - direct).abs() <= 1e-7 * direct.max(1.0));
        }
    }
}
