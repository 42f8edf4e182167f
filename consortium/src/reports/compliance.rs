//! The compliance lines of `fedbank simulate`'s summary: consortium totals per rule, the alert
//! counts and what the alert step cost.

use fedbank_common::job::compliance::ComplianceResult;
use std::fmt::Write as _;

/// Appends the compliance section to `summary`.
pub fn write(summary: &mut String, c: &ComplianceResult, seconds: f64) {
    let _ = writeln!(
        summary,
        "{:<22} {:>10} {:>10} {:>10} {:>9} {:>9} {:>16}",
        "rule", "violations", "customers", "examined", "rate", "limit", "institutions over"
    );
    for r in &c.rules {
        let _ = writeln!(
            summary,
            "{:<22} {:>10} {:>10} {:>10} {:>8.3}% {:>9} {:>16}",
            r.rule,
            r.violations,
            r.customers_affected,
            r.contacts_examined,
            100.0 * r.violation_rate,
            r.max_violation_rate
                .map_or("-".to_owned(), |l| format!("{:.2}%", 100.0 * l)),
            r.institutions_over_limit
                .map_or("-".to_owned(), |n| format!("{n} of {}", c.contributors))
        );
    }
    if let Some(a) = &c.alerts {
        let _ = writeln!(
            summary,
            "alerts: {} homomorphic comparisons ({} rules × {} institutions) in {:.2} s, {:.3} s per comparison \
             (expanding the packed list, rate > limit by programmable bootstrapping, casting the bit); \
             adding the bits {:.2} s; alert step {:.2} s of the whole job's {seconds:.2} s",
            a.comparisons,
            a.rules,
            a.institutions,
            a.compare_seconds,
            a.seconds_per_comparison,
            a.tally_seconds,
            a.compare_seconds + a.tally_seconds
        );
    }
}
