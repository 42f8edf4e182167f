//! A participant's marketing-contact log and consent table as the compliance job's local step
//! reads them, and the declared rules evaluated over them (see [`super::rules`] for what each
//! rule counts).
//!
//! Reading them from files, with errors that name the file, the line and the column, is the
//! participant's (`participant/src/contact_log.rs`); it builds a [`ContactLog`] from the rows it
//! read. Nothing here is sent: the per-rule counts become one encrypted contribution, the rates
//! one encrypted alert list under the auditor's key.

use super::rules::{rate_basis_points, ComplianceSpec, RuleKind, RuleSpec};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// One contact of the log, its customer an index into the log's customer ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contact {
    /// Index into [`ContactLog`]'s customer ids.
    pub customer: u32,
    /// Local time, seconds since 1970-01-01T00:00.
    pub seconds: i64,
    /// Index into the consent table's channels; `None` for a channel it does not list.
    pub channel: Option<u16>,
}

/// A customer's consent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consent {
    /// Day number from which contact is forbidden (`i64::MIN` if opted out without a date).
    pub opted_out_from: Option<i64>,
    /// Consent per channel, in the consent table's channel order.
    pub channels: Vec<bool>,
}

/// A participant's contact log and consent table, checked.
#[derive(Clone, Debug)]
pub struct ContactLog {
    /// Sorted by customer, then time.
    contacts: Vec<Contact>,
    customer_ids: Vec<String>,
    consent: HashMap<u32, Consent>,
    channels: Vec<String>,
    unknown_channels: BTreeMap<String, u64>,
}

/// A rule's counts at one participant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleCounts {
    /// Rule name.
    pub rule: String,
    /// Violating contacts.
    pub violations: u64,
    /// Distinct customers with at least one violating contact.
    pub customers_affected: u64,
    /// Contacts the rule looked at.
    pub contacts_examined: u64,
    /// The rate in basis points (what an alert encrypts).
    pub rate_basis_points: u16,
    /// Up to 20 affected customer ids, for the institution's own follow-up (never sent).
    pub example_customers: Vec<String>,
}

impl ContactLog {
    /// A log of `contacts` whose customers index `customer_ids`, the consent table `consent` by
    /// customer index over `channels` (the consent table's channel order), and the contacts on
    /// channels it does not list, by channel. What is inconsistent otherwise.
    pub fn new(
        mut contacts: Vec<Contact>,
        customer_ids: Vec<String>,
        consent: HashMap<u32, Consent>,
        channels: Vec<String>,
        unknown_channels: BTreeMap<String, u64>,
    ) -> Result<Self, String> {
        let customers = customer_ids.len();
        let known = |c: &u32| (*c as usize) < customers;
        if !contacts.iter().all(|c| known(&c.customer)) || !consent.keys().all(known) {
            return Err(format!(
                "a contact or consent row names a customer beyond the {customers} customer ids"
            ));
        }
        if let Some(c) = contacts.iter().find(|c| {
            c.channel
                .is_some_and(|ch| usize::from(ch) >= channels.len())
        }) {
            return Err(format!(
                "a contact's channel {:?} is beyond the {} channels of the consent table",
                c.channel,
                channels.len()
            ));
        }
        if consent.values().any(|k| k.channels.len() != channels.len()) {
            return Err(format!(
                "a consent row does not have one flag for each of the {} channels",
                channels.len()
            ));
        }
        // Frequency caps slide a window over each customer's contacts in time order.
        contacts.sort_by_key(|c| (c.customer, c.seconds));
        Ok(Self {
            contacts,
            customer_ids,
            consent,
            channels,
            unknown_channels,
        })
    }

    /// The days of the earliest and the latest contact (`YYYY-MM-DD`, as the log's clock reads
    /// them), or `None` for an empty log.
    pub fn period(&self) -> Option<(String, String)> {
        let first = self.contacts.iter().map(|c| c.seconds).min()?;
        let last = self.contacts.iter().map(|c| c.seconds).max()?;
        let day = |s: i64| crate::calendar::format_day(s.div_euclid(86_400));
        Some((day(first), day(last)))
    }

    /// Contacts in the log.
    pub fn contacts(&self) -> usize {
        self.contacts.len()
    }

    /// Contacts on channels the consent table does not list (they count as without consent).
    pub fn unknown_channels(&self) -> &BTreeMap<String, u64> {
        &self.unknown_channels
    }

    /// Evaluates every rule of `spec`.
    pub fn evaluate(&self, spec: &ComplianceSpec) -> Vec<RuleCounts> {
        spec.rules.iter().map(|r| self.evaluate_rule(r)).collect()
    }

    fn evaluate_rule(&self, rule: &RuleSpec) -> RuleCounts {
        let channel = rule
            .channel
            .as_ref()
            .and_then(|c| self.channels.iter().position(|x| x == c))
            .map(|i| i as u16);
        let examined: Vec<&Contact> = self
            .contacts
            .iter()
            .filter(|c| rule.channel.is_none() || (channel.is_some() && c.channel == channel))
            .collect();
        let violating: Vec<bool> = match rule.kind {
            RuleKind::FrequencyCap => {
                let max = rule.max_contacts.unwrap_or(0) as usize;
                let window = i64::from(rule.window_days.unwrap_or(1)) * 86_400;
                // `examined` is sorted by customer, then time: a sliding window per customer.
                let mut out = vec![false; examined.len()];
                let mut start = 0;
                for i in 0..examined.len() {
                    if examined[i].customer != examined[start].customer {
                        start = i;
                    }
                    while examined[start].seconds <= examined[i].seconds - window {
                        start += 1;
                    }
                    out[i] = i + 1 - start > max;
                }
                out
            }
            RuleKind::AfterOptOut => examined
                .iter()
                .map(|c| {
                    self.consent
                        .get(&c.customer)
                        .and_then(|k| k.opted_out_from)
                        .is_some_and(|from| c.seconds.div_euclid(86_400) >= from)
                })
                .collect(),
            RuleKind::WithoutConsent => examined
                .iter()
                .map(|c| {
                    let consented = match (self.consent.get(&c.customer), c.channel) {
                        (Some(k), Some(ch)) => {
                            k.channels.get(ch as usize).copied().unwrap_or(false)
                        }
                        _ => false,
                    };
                    !consented
                })
                .collect(),
            RuleKind::QuietHours => {
                let (start, end) = rule.quiet_minutes().unwrap_or((0, 0));
                examined
                    .iter()
                    .map(|c| {
                        let minute = (c.seconds.rem_euclid(86_400) / 60) as u32;
                        if start < end {
                            (start..end).contains(&minute)
                        } else {
                            minute >= start || minute < end
                        }
                    })
                    .collect()
            }
        };
        let mut affected: Vec<u32> = examined
            .iter()
            .zip(&violating)
            .filter(|(_, v)| **v)
            .map(|(c, _)| c.customer)
            .collect();
        affected.dedup();
        let violations = violating.iter().filter(|v| **v).count() as u64;
        let contacts_examined = examined.len() as u64;
        RuleCounts {
            rule: rule.name.clone(),
            violations,
            customers_affected: affected.len() as u64,
            contacts_examined,
            rate_basis_points: rate_basis_points(violations, contacts_examined),
            example_customers: affected
                .iter()
                .take(20)
                .filter_map(|c| self.customer_ids.get(*c as usize).cloned())
                .collect(),
        }
    }
}

/// The values of the compliance round: per rule, violations, customers affected, contacts
/// examined; then, when rules have limits, this institution's own bit per limited rule.
pub fn round_values(counts: &[RuleCounts], spec: &ComplianceSpec) -> Vec<Vec<f64>> {
    let mut values: Vec<Vec<f64>> = counts
        .iter()
        .map(|c| {
            vec![
                c.violations as f64,
                c.customers_affected as f64,
                c.contacts_examined as f64,
            ]
        })
        .collect();
    let limited = spec.alert_rules();
    if !limited.is_empty() {
        // This institution's own bit per limited rule: its rate strictly above the limit.
        values.push(
            limited
                .iter()
                .map(|(rule, limit)| {
                    let rate = counts
                        .iter()
                        .find(|c| c.rule == rule.name)
                        .map_or(0, |c| c.rate_basis_points);
                    f64::from(u8::from(rate > *limit))
                })
                .collect(),
        );
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_naming_customers_or_channels_it_does_not_hold_is_refused() {
        let contact = |customer, channel| Contact {
            customer,
            seconds: 0,
            channel,
        };
        let ids = vec!["a".to_owned()];
        let channels = vec!["email".to_owned()];
        let ok = ContactLog::new(
            vec![contact(0, Some(0))],
            ids.clone(),
            HashMap::new(),
            channels.clone(),
            BTreeMap::new(),
        );
        assert!(ok.is_ok());
        let beyond = ContactLog::new(
            vec![contact(1, None)],
            ids.clone(),
            HashMap::new(),
            channels.clone(),
            BTreeMap::new(),
        )
        .expect_err("customer 1 of 1");
        assert!(beyond.contains("beyond the 1 customer ids"), "{beyond}");
        let channel = ContactLog::new(
            vec![contact(0, Some(1))],
            ids.clone(),
            HashMap::new(),
            channels.clone(),
            BTreeMap::new(),
        )
        .expect_err("channel 1 of 1");
        assert!(channel.contains("beyond the 1 channels"), "{channel}");
        let flags = ContactLog::new(
            vec![contact(0, Some(0))],
            ids,
            [(
                0,
                Consent {
                    opted_out_from: None,
                    channels: vec![],
                },
            )]
            .into_iter()
            .collect(),
            channels,
            BTreeMap::new(),
        )
        .expect_err("no flag");
        assert!(flags.contains("one flag for each"), "{flags}");
    }
}
