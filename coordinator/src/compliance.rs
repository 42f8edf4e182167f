//! The coordinator's side of a compliance job: one round of per-rule counts, then (for rules
//! with a limit) the private alert step, whose counts the auditor decrypts.

use fedbank_common::compliance_rules::{ComplianceSpec, RuleKind};
use fedbank_common::encoding::DecodedQuantity;
use fedbank_common::job::RoundKind;
use serde::{Deserialize, Serialize};

/// Consortium totals of one rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleResult {
    /// Rule name.
    pub rule: String,
    /// What it checks.
    pub kind: RuleKind,
    /// The rule in words.
    pub description: String,
    /// Violating contacts across the consortium.
    pub violations: u64,
    /// Customers with at least one violating contact (summed over institutions: a customer of
    /// two institutions counts twice).
    pub customers_affected: u64,
    /// Contacts examined.
    pub contacts_examined: u64,
    /// violations / contacts examined, consortium-wide.
    pub violation_rate: f64,
    /// The alert limit, if the rule has one.
    pub max_violation_rate: Option<f64>,
    /// Institutions whose own rate is above the limit: the sum of their over-limit bits through
    /// the verified secure aggregation (at least `min_participants` signed contributions).
    pub institutions_over_limit: Option<u16>,
    /// The same count as the auditor decrypted it from the programmable-bootstrapping tally,
    /// when there was an alert step; it must agree with `institutions_over_limit`.
    pub auditor_count: Option<u16>,
}

/// What the alert step cost on the coordinator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertCost {
    /// Institutions whose rates were compared.
    pub institutions: usize,
    /// Rules with a limit.
    pub rules: usize,
    /// Homomorphic comparisons (institutions × rules).
    pub comparisons: usize,
    /// Seconds spent expanding, comparing and casting every institution's rates.
    pub compare_seconds: f64,
    /// compare_seconds / comparisons.
    pub seconds_per_comparison: f64,
    /// Seconds spent adding the bits per rule.
    pub tally_seconds: f64,
}

/// The result of a compliance job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComplianceResult {
    /// Per rule, in declaration order.
    pub rules: Vec<RuleResult>,
    /// Contributors to the counts.
    pub contributors: usize,
    /// The alert step's cost, if there was one.
    pub alerts: Option<AlertCost>,
}

/// Why an aggregate did not fit the job.
#[derive(Debug, thiserror::Error)]
#[error("compliance round: {0}")]
pub struct ComplianceError(String);

/// A compliance job in progress.
#[derive(Debug, Clone)]
pub struct ComplianceJob {
    spec: ComplianceSpec,
    result: Option<ComplianceResult>,
}

impl ComplianceJob {
    /// A job checking `spec`'s rules.
    pub fn new(spec: ComplianceSpec) -> Self {
        Self { spec, result: None }
    }

    /// The only secure-aggregation round.
    pub fn first_round(&self) -> RoundKind {
        RoundKind::Compliance
    }

    /// Takes the decrypted counts (and how many contributed); no further round.
    pub fn apply(
        &mut self,
        kind: &RoundKind,
        decoded: &[DecodedQuantity],
        contributors: usize,
    ) -> Result<Option<RoundKind>, ComplianceError> {
        if *kind != RoundKind::Compliance {
            return Err(ComplianceError(format!(
                "unexpected round '{}'",
                kind.label()
            )));
        }
        let over = DecodedQuantity::find(decoded, fedbank_common::compliance_rules::OVER_LIMIT);
        let mut over = over.unwrap_or(&[]).iter();
        let mut rules = Vec::with_capacity(self.spec.rules.len());
        for rule in &self.spec.rules {
            let name = format!("rule.{}", rule.name);
            let values = DecodedQuantity::find(decoded, &name)
                .ok_or_else(|| ComplianceError(format!("no quantity '{name}'")))?;
            let count = |i: usize| values.get(i).map_or(0, |v| v.round().max(0.0) as u64);
            let (violations, customers_affected, contacts_examined) =
                (count(0), count(1), count(2));
            rules.push(RuleResult {
                rule: rule.name.clone(),
                kind: rule.kind,
                description: rule.describe(),
                violations,
                customers_affected,
                contacts_examined,
                violation_rate: if contacts_examined == 0 {
                    0.0
                } else {
                    violations as f64 / contacts_examined as f64
                },
                max_violation_rate: rule.max_violation_rate,
                institutions_over_limit: rule
                    .limit_basis_points()
                    .and_then(|_| over.next())
                    .map(|v| v.round().clamp(0.0, f64::from(u16::MAX)) as u16),
                auditor_count: None,
            });
        }
        self.result = Some(ComplianceResult {
            rules,
            contributors,
            alerts: None,
        });
        Ok(None)
    }

    /// Records the auditor's counts (in alert-rule order) and the alert step's cost. Returns
    /// the rules whose auditor count differs from the verified count of over-limit bits.
    pub fn set_alerts(&mut self, counts: &[u16], cost: AlertCost) -> Vec<String> {
        let mut differ = Vec::new();
        if let Some(result) = &mut self.result {
            let mut counts = counts.iter();
            for rule in result
                .rules
                .iter_mut()
                .filter(|r| r.max_violation_rate.is_some())
            {
                rule.auditor_count = counts.next().copied();
                if rule.auditor_count != rule.institutions_over_limit {
                    differ.push(rule.rule.clone());
                }
            }
            result.alerts = Some(cost);
        }
        differ
    }

    /// The result, once the counts are in.
    pub fn result(&self) -> Option<&ComplianceResult> {
        self.result.as_ref()
    }
}
