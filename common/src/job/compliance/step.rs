//! The coordinator's side of a compliance job: one round of per-rule counts, then (for rules
//! with a limit) the private alert step, whose counts the auditor decrypts and the step records
//! beside the verified count ([`CoordinatorStep::alerts_decrypted`]).

use super::rules::{ComplianceSpec, RuleKind, OVER_LIMIT};
use super::{compliance_round, COMPLIANCE_TAG};
use crate::alerts::AlertCost;
use crate::encoding::DecodedQuantity;
use crate::job::{CoordinatorStep, JobRound};
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
    /// The rules (a valid compliance job always has them).
    spec: Option<ComplianceSpec>,
    result: Option<ComplianceResult>,
}

impl ComplianceJob {
    /// A job checking `spec`'s rules; without them it refuses to start.
    pub fn new(spec: Option<ComplianceSpec>) -> Self {
        Self { spec, result: None }
    }

    fn rules(&self) -> Result<&ComplianceSpec, ComplianceError> {
        self.spec.as_ref().ok_or_else(|| {
            ComplianceError("a compliance job needs a [job.compliance] table".to_owned())
        })
    }

    /// Takes the decrypted counts (and how many contributed).
    fn take_counts(
        &mut self,
        decoded: &[DecodedQuantity],
        contributors: usize,
    ) -> Result<(), ComplianceError> {
        let over = DecodedQuantity::find(decoded, OVER_LIMIT);
        let mut over = over.unwrap_or(&[]).iter();
        let spec = self.rules()?;
        let mut rules = Vec::with_capacity(spec.rules.len());
        for rule in &spec.rules {
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
        Ok(())
    }

    /// The result, once the counts are in.
    pub fn released(&self) -> Option<&ComplianceResult> {
        self.result.as_ref()
    }
}

impl CoordinatorStep for ComplianceJob {
    fn first_round(&self) -> Result<JobRound, String> {
        self.rules().map_err(|e| e.to_string())?;
        compliance_round()
    }

    /// The counts; no further secure-aggregation round (the alert step, when rules have limits,
    /// follows outside the rounds).
    fn apply(
        &mut self,
        round: &JobRound,
        decoded: &[DecodedQuantity],
        contributors: usize,
    ) -> Result<Option<JobRound>, String> {
        if round.tag != COMPLIANCE_TAG {
            return Err(format!("unexpected round {round}"));
        }
        self.take_counts(decoded, contributors)
            .map_err(|e| e.to_string())?;
        Ok(None)
    }

    fn result(&self) -> Option<serde_json::Value> {
        self.result
            .as_ref()
            .and_then(|r| serde_json::to_value(r).ok())
    }

    /// Records the auditor's counts (in alert-rule order) and the alert step's cost. Returns
    /// the rules whose auditor count differs from the verified count of over-limit bits.
    fn alerts_decrypted(&mut self, counts: &[u16], cost: AlertCost) -> Vec<String> {
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

    fn boxed_clone(&self) -> Box<dyn CoordinatorStep> {
        Box::new(self.clone())
    }
}
