//! The compliance job's declarations: which columns of a participant's marketing-contact log and
//! consent table to read, and the rules to check over them.
//!
//! Rules (each evaluated by every participant over its own log, never sent):
//!
//! | kind | a contact violates it when | contacts examined |
//! |---|---|---|
//! | `frequency_cap` | counting it, the customer had more than `max_contacts` contacts (on `channel`, if given) in the `window_days` days up to and including it | all contacts (on `channel`) |
//! | `after_opt_out` | the customer opted out on or before the contact's day | all contacts |
//! | `without_consent` | the customer has no consent for the contact's channel (no consent row means no consent) | all contacts |
//! | `quiet_hours` | its local time is in [`start`, `end`) (wrapping past midnight) | all contacts |
//!
//! Per rule a participant contributes three counts — violating contacts, customers affected and
//! contacts examined — to one secure-aggregation round. A rule with `max_violation_rate` also
//! raises a private alert (see [`crate::alerts`]): each participant's rate in basis points is
//! compared with the limit under the auditor's key, and only the number of institutions over it
//! is decrypted.

use crate::encoding::QuantitySpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Values per rule in the compliance round: violations, customers affected, contacts examined.
pub const RULE_VALUES: usize = 3;
/// The compliance round's quantity of over-limit bits, one per rule with a limit.
pub const OVER_LIMIT: &str = "alert.over_limit";
/// Rates are compared at this resolution: parts per 10,000 (basis points).
pub const RATE_SCALE: f64 = 10_000.0;
/// Longest rolling window of a frequency cap, in days.
pub const MAX_WINDOW_DAYS: u32 = 366;
/// Most rules in one job.
pub const MAX_RULES: usize = 64;

/// What is wrong with a job's compliance section, in words (the job file's validation names the
/// job around it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RulesProblem(pub String);

pub use crate::alerts::AlertRule;

/// Columns of the marketing-contact log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactColumns {
    /// Customer id.
    pub customer: String,
    /// Local time of the contact: `YYYY-MM-DDTHH:MM[:SS]` (or a space for `T`).
    pub timestamp: String,
    /// Channel (matched against the consent table's channel columns).
    pub channel: String,
    /// Campaign (read and checked to be present; rules do not use it yet).
    pub campaign: String,
}

/// Columns of the consent table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentColumns {
    /// Customer id.
    pub customer: String,
    /// 1/0 (or true/false, yes/no): the customer opted out of marketing.
    pub opted_out: String,
    /// `YYYY-MM-DD` of the opt-out; empty when not opted out.
    pub opt_out_date: String,
    /// Channel name → column holding that channel's consent flag (1/0).
    pub channels: BTreeMap<String, String>,
}

/// What a rule checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// At most `max_contacts` per customer in a rolling window of `window_days`.
    FrequencyCap,
    /// No contact on or after the opt-out date.
    AfterOptOut,
    /// No contact on a channel without the customer's consent.
    WithoutConsent,
    /// No contact between `start` and `end` local time.
    QuietHours,
}

/// One declared rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Name, as in results and reports.
    pub name: String,
    /// What it checks.
    pub kind: RuleKind,
    /// Frequency caps: most contacts allowed in the window.
    #[serde(default)]
    pub max_contacts: Option<u32>,
    /// Frequency caps: window length in days.
    #[serde(default)]
    pub window_days: Option<u32>,
    /// Frequency caps: count only this channel (default: all channels).
    #[serde(default)]
    pub channel: Option<String>,
    /// Quiet hours: start, `HH:MM` local time.
    #[serde(default)]
    pub start: Option<String>,
    /// Quiet hours: end, `HH:MM` local time (exclusive).
    #[serde(default)]
    pub end: Option<String>,
    /// Raise a private alert for institutions whose violation rate (violations / contacts
    /// examined) exceeds this fraction. Compared in basis points.
    #[serde(default)]
    pub max_violation_rate: Option<f64>,
}

impl RuleSpec {
    /// Quiet hours as minutes after midnight `[start, end)`.
    pub fn quiet_minutes(&self) -> Option<(u32, u32)> {
        Some((
            clock_minutes(self.start.as_deref()?)?,
            clock_minutes(self.end.as_deref()?)?,
        ))
    }

    /// The alert limit in basis points, if the rule has one.
    pub fn limit_basis_points(&self) -> Option<u16> {
        self.max_violation_rate
            .map(|r| (r * RATE_SCALE).round().clamp(0.0, RATE_SCALE) as u16)
    }

    /// One line a compliance officer reads.
    pub fn describe(&self) -> String {
        let text = match self.kind {
            RuleKind::FrequencyCap => format!(
                "at most {} contacts per customer{} in any {} days",
                self.max_contacts.unwrap_or(0),
                self.channel
                    .as_ref()
                    .map(|c| format!(" by {c}"))
                    .unwrap_or_default(),
                self.window_days.unwrap_or(0)
            ),
            RuleKind::AfterOptOut => "no contact on or after the customer's opt-out date".into(),
            RuleKind::WithoutConsent => {
                "no contact on a channel the customer has not consented to".into()
            }
            RuleKind::QuietHours => format!(
                "no contact between {} and {} local time",
                self.start.as_deref().unwrap_or("?"),
                self.end.as_deref().unwrap_or("?")
            ),
        };
        match self.max_violation_rate {
            Some(r) => format!("{text}; alert above a {:.2} % violation rate", r * 100.0),
            None => text,
        }
    }
}

/// The `[job.compliance]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplianceSpec {
    /// Columns of the contact log.
    pub contacts: ContactColumns,
    /// Columns of the consent table.
    pub consent: ConsentColumns,
    /// The rules, in report order.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// How the time-based rules (quiet hours, frequency windows, opt-out dates) read time: as the
/// contact logs write it, on each institution's own clock, with no time-zone conversion.
pub const TIME_BASIS: &str = "timestamps as written in each institution's contact log (local clock time, no time-zone conversion); quiet hours and windows are evaluated on that clock";

/// `HH:MM` as minutes after midnight.
pub fn clock_minutes(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// Seconds since 1970-01-01T00:00 (local time, no zone) of `YYYY-MM-DDTHH:MM[:SS]`, with `T`
/// or a space between date and time.
pub fn timestamp_seconds(text: &str) -> Option<i64> {
    if text.len() < 16 || !text.is_ascii() {
        return None;
    }
    let (date, time) = (&text[..10], &text[11..]);
    if !matches!(text.as_bytes()[10], b'T' | b' ') {
        return None;
    }
    let day = crate::calendar::day_number(date)?;
    let minutes = clock_minutes(time.get(..5)?)?;
    let seconds = match time.len() {
        5 => 0,
        8 if time.as_bytes()[5] == b':' => {
            let s: u32 = time[6..].parse().ok()?;
            if s >= 60 {
                return None;
            }
            s
        }
        _ => return None,
    };
    Some(day * 86_400 + i64::from(minutes) * 60 + i64::from(seconds))
}

/// A participant's rate in basis points: ⌊10,000 · violations / examined⌋ (0 when nothing
/// was examined).
pub fn rate_basis_points(violations: u64, examined: u64) -> u16 {
    if examined == 0 {
        return 0;
    }
    ((u128::from(violations.min(examined)) * RATE_SCALE as u128) / u128::from(examined)) as u16
}

impl ComplianceSpec {
    /// Rules with an alert limit, in declaration order, with the limit in basis points.
    pub fn alert_rules(&self) -> Vec<(&RuleSpec, u16)> {
        self.rules
            .iter()
            .filter_map(|r| r.limit_basis_points().map(|l| (r, l)))
            .collect()
    }

    /// The quantities of the compliance round: per rule, violations, customers affected and
    /// contacts examined, each at most `max_rows` per participant; and, when rules have limits,
    /// [`OVER_LIMIT`]: per such rule one bit per institution, set when its own rate is above
    /// the limit. Summed through the verified secure aggregation, the bits give how many
    /// institutions are over each limit without singling one out (docs/threat-model.md §6).
    pub fn quantities(&self, max_rows: u64) -> Vec<QuantitySpec> {
        let mut q: Vec<QuantitySpec> = self
            .rules
            .iter()
            .map(|r| {
                QuantitySpec::new(
                    format!("rule.{}", r.name),
                    RULE_VALUES,
                    max_rows as f64,
                    1.0,
                )
            })
            .collect();
        let limited = self.alert_rules().len();
        if limited > 0 {
            q.push(QuantitySpec::new(OVER_LIMIT, limited, 1.0, 1.0));
        }
        q
    }

    /// Checks the rules and consent mapping; what is wrong, in words.
    pub fn check(&self) -> Result<(), RulesProblem> {
        let bad = RulesProblem;
        if self.rules.is_empty() || self.rules.len() > MAX_RULES {
            return Err(bad(format!(
                "declare between 1 and {MAX_RULES} [[job.compliance.rules]], not {}",
                self.rules.len()
            )));
        }
        if self.consent.channels.is_empty() {
            return Err(bad("consent.channels must name at least one channel".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        for rule in &self.rules {
            let name = &rule.name;
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(bad(format!(
                    "rule name '{name}' must be non-empty letters, digits, '-', '_' or '.'"
                )));
            }
            if !names.insert(name.as_str()) {
                return Err(bad(format!("rule '{name}' is declared twice")));
            }
            let cap = rule.kind == RuleKind::FrequencyCap;
            let quiet = rule.kind == RuleKind::QuietHours;
            let misplaced = [
                ("max_contacts", rule.max_contacts.is_some(), cap),
                ("window_days", rule.window_days.is_some(), cap),
                ("channel", rule.channel.is_some(), cap),
                ("start", rule.start.is_some(), quiet),
                ("end", rule.end.is_some(), quiet),
            ];
            if let Some((field, _, _)) = misplaced.iter().find(|(_, set, allowed)| *set && !allowed)
            {
                return Err(bad(format!(
                    "rule '{name}' ({:?}) does not take '{field}'",
                    rule.kind
                )));
            }
            if cap {
                match (rule.max_contacts, rule.window_days) {
                    (Some(_), Some(w)) if (1..=MAX_WINDOW_DAYS).contains(&w) => {}
                    (Some(_), Some(w)) => {
                        return Err(bad(format!(
                            "rule '{name}': window_days = {w} must be 1 to {MAX_WINDOW_DAYS}"
                        )))
                    }
                    _ => {
                        return Err(bad(format!(
                            "rule '{name}': a frequency cap needs max_contacts and window_days"
                        )))
                    }
                }
                if let Some(c) = &rule.channel {
                    if !self.consent.channels.contains_key(c) {
                        return Err(bad(format!(
                            "rule '{name}': channel '{c}' is not one of consent.channels {:?}",
                            self.consent.channels.keys().collect::<Vec<_>>()
                        )));
                    }
                }
            }
            if quiet {
                match rule.quiet_minutes() {
                    Some((s, e)) if s != e => {}
                    Some(_) => return Err(bad(format!("rule '{name}': start and end are equal"))),
                    None => {
                        return Err(bad(format!(
                        "rule '{name}': quiet hours need start and end as HH:MM, got {:?} and {:?}",
                        rule.start, rule.end
                    )))
                    }
                }
            }
            if let Some(r) = rule.max_violation_rate {
                if !(r.is_finite() && (0.0..1.0).contains(&r)) {
                    return Err(bad(format!(
                        "rule '{name}': max_violation_rate = {r} must be a fraction in [0, 1)"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_clocks_parse_strictly() {
        assert_eq!(timestamp_seconds("1970-01-02T00:00"), Some(86_400));
        assert_eq!(timestamp_seconds("1970-01-01 01:02:03"), Some(3723));
        for bad in [
            "1970-01-01",
            "1970-01-01T24:00",
            "1970-13-01T00:00",
            "1970-01-01T00:00:60",
            "1970-01-01X00:00",
            "1970-01-01T00:00:0",
        ] {
            assert_eq!(timestamp_seconds(bad), None, "{bad}");
        }
        assert_eq!(clock_minutes("21:30"), Some(1290));
        assert_eq!(clock_minutes("9:30"), None);
    }

    fn job(edit: &str) -> Result<crate::job::ValidJob, String> {
        job_audited_by("auditor = \"auditor\"", edit)
    }

    fn job_audited_by(auditor: &str, edit: &str) -> Result<crate::job::ValidJob, String> {
        let text = format!(
            r#"
            job = "c"
            kind = "compliance"
            participants = ["a", "b", "c"]
            committee = ["a", "b"]
            min_participants = 2
            max_rows = 1000
            {auditor}
            [compliance.contacts]
            customer = "id"
            timestamp = "at"
            channel = "via"
            campaign = "campaign"
            [compliance.consent]
            customer = "id"
            opted_out = "out"
            opt_out_date = "date"
            channels = {{ email = "email" }}
            {edit}"#
        );
        let spec: crate::job::JobSpec = toml::from_str(&text).map_err(|e| e.to_string())?;
        spec.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn compliance_jobs_are_validated_with_reasons() {
        let quiet = "[[compliance.rules]]\nname = \"q\"\nkind = \"quiet_hours\"\nstart = \"21:00\"\nend = \"08:00\"\nmax_violation_rate = 0.01";
        let valid = job(quiet).expect("valid");
        assert_eq!(valid.alert_rules(), 1);
        let cases = [
            ("", "declare between 1 and 64"),
            ("[[compliance.rules]]\nname = \"q\"\nkind = \"quiet_hours\"\nstart = \"21:00\"", "quiet hours need start and end"),
            ("[[compliance.rules]]\nname = \"f\"\nkind = \"frequency_cap\"\nmax_contacts = 3", "needs max_contacts and window_days"),
            ("[[compliance.rules]]\nname = \"f\"\nkind = \"frequency_cap\"\nmax_contacts = 3\nwindow_days = 7\nchannel = \"fax\"", "channel 'fax' is not one of"),
            ("[[compliance.rules]]\nname = \"o\"\nkind = \"after_opt_out\"\nwindow_days = 7", "does not take 'window_days'"),
            ("[[compliance.rules]]\nname = \"o\"\nkind = \"after_opt_out\"\nmax_violation_rate = 1.5", "must be a fraction"),
            ("[[compliance.rules]]\nname = \"o o\"\nkind = \"after_opt_out\"", "rule name 'o o'"),
            ("[[compliance.rules]]\nname = \"o\"\nkind = \"after_opt_out\"\n[[compliance.rules]]\nname = \"o\"\nkind = \"without_consent\"", "declared twice"),
            ("[[compliance.rules]]\nname = \"o\"\nkind = \"sometimes\"", "unknown variant"),
        ];
        for (edit, expected) in cases {
            let e = job(edit).expect_err(expected);
            assert!(e.contains(expected), "{e} should contain {expected}");
        }
        // An auditor who is also a participant, and alerts without an auditor.
        let e = job_audited_by("auditor = \"a\"", quiet).expect_err("participant auditor");
        assert!(e.contains("must not be a participant"), "{e}");
        let e = job_audited_by("", quiet).expect_err("no auditor");
        assert!(e.contains("need an 'auditor' node"), "{e}");
    }

    #[test]
    fn rates_are_floored_basis_points() {
        assert_eq!(rate_basis_points(1, 3), 3333);
        assert_eq!(rate_basis_points(0, 0), 0);
        assert_eq!(rate_basis_points(5, 5), 10_000);
        assert_eq!(rate_basis_points(7, 10_000_000), 0);
    }
}
