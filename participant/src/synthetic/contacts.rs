//! A synthetic marketing-contact log and consent table with a known, seeded number of
//! violations of the rules of `configs/compliance-synthetic.toml`.
//!
//! Clean contacts respect every rule by construction: between 2026-01-01 and 2026-10-31, at
//! least 8 days apart per customer (so never more than one in 7 days), on a channel the customer
//! consented to, at most one phone contact per customer, before any opt-out, between 09:00 and
//! 19:59. Violations are then injected in December 2026 (more than 30 days after every clean
//! contact), each on its own customer, each breaking exactly one rule:
//!
//! | rule | injection | violations | customers |
//! |---|---|---|---|
//! | `weekly-contact-cap` (3 in 7 days) | 4 e-mails within 3 days | 1 | 1 |
//! | `phone-monthly-cap` (2 phone calls in 30 days) | 3 calls 10 days apart | 1 | 1 |
//! | `after-opt-out` | 1 e-mail after the opt-out | 1 | 1 |
//! | `without-consent` | 1 contact on a channel without consent | 1 | 1 |
//! | `quiet-hours` (21:00–08:00) | 1 e-mail at 22:15 | 1 | 1 |
//!
//! The number of injections per rule is drawn per institution from the seed, so institutions
//! differ and some exceed the alert limits. The ground truth — per rule violations, customers
//! affected and contacts examined — is written next to the files.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Channels of the synthetic consent table, in column order.
pub const CHANNELS: [&str; 3] = ["email", "sms", "phone"];
/// Rule names of `configs/compliance-synthetic.toml`, in order.
pub const RULES: [&str; 5] = [
    "weekly-contact-cap",
    "phone-monthly-cap",
    "after-opt-out",
    "without-consent",
    "quiet-hours",
];
/// Largest fraction of an institution's customers given one rule's violation.
const MAX_INJECTED_FRACTION: f64 = 0.012;

/// The counts a rule must produce on the generated files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleTruth {
    /// Violating contacts.
    pub violations: u64,
    /// Customers with a violation.
    pub customers_affected: u64,
    /// Contacts the rule examines.
    pub contacts_examined: u64,
}

/// The generated files and their ground truth.
#[derive(Clone, Debug)]
pub struct ContactFiles {
    /// contacts.csv: customer_id, timestamp, channel, campaign.
    pub contacts: PathBuf,
    /// consent.csv: customer_id, opted_out, opt_out_date, email, sms, phone.
    pub consent: PathBuf,
    /// compliance-truth.json: [`RuleTruth`] per rule name.
    pub truth: PathBuf,
}

fn date(day: u32) -> String {
    super::date(day)
}

struct Customer {
    id: String,
    opted_out_day: Option<u32>,
    consents: [bool; 3],
}

/// Writes the contact log and consent table of `ids` into `dir`, seeded by `seed`.
pub fn generate(dir: &Path, ids: &[String], seed: u64) -> std::io::Result<ContactFiles> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x636f_6e74_6163_7473);
    let mut consent = String::from("customer_id,opted_out,opt_out_date,email,sms,phone\n");
    let mut contacts = String::from("customer_id,timestamp,channel,campaign\n");
    let mut customers = Vec::with_capacity(ids.len());
    let mut all = 0u64;
    let mut phone = 0u64;
    let mut add = |out: &mut String,
                   id: &str,
                   day: u32,
                   hour: u32,
                   minute: u32,
                   channel: usize,
                   campaign: &str| {
        let _ = writeln!(
            out,
            "{id},{}T{hour:02}:{minute:02}:00,{},{campaign}",
            date(day),
            CHANNELS[channel]
        );
        all += 1;
        if channel == 2 {
            phone += 1;
        }
    };
    for id in ids {
        // Days from 2025-01-01; 2026-01-01 is day 365, 2026-10-31 day 668, 2026-12-01 day 699.
        let opted_out_day = (rng.random::<f64>() < 0.08).then(|| rng.random_range(425..=698));
        let consents = [0; 3].map(|_| rng.random::<f64>() < 0.7);
        let _ = writeln!(
            consent,
            "{id},{},{},{},{},{}",
            u8::from(opted_out_day.is_some()),
            opted_out_day.map(date).unwrap_or_default(),
            u8::from(consents[0]),
            u8::from(consents[1]),
            u8::from(consents[2])
        );
        // Clean contacts: distinct 16-day slots of the clean period, 0..8 days into the slot.
        let wanted = super::poisson(&mut rng, 3.0).min(6) as usize;
        let mut slots: Vec<u32> = (0..19).collect();
        let mut phone_used = false;
        for k in 0..wanted {
            let pick = rng.random_range(k..slots.len());
            slots.swap(k, pick);
            let day = 365 + 16 * slots[k] + rng.random_range(0..8);
            let allowed: Vec<usize> = (0..3)
                .filter(|&c| consents[c] && !(c == 2 && phone_used))
                .collect();
            if allowed.is_empty() || opted_out_day.is_some_and(|o| day >= o) {
                continue;
            }
            let channel = allowed[rng.random_range(0..allowed.len())];
            phone_used |= channel == 2;
            add(
                &mut contacts,
                id,
                day,
                rng.random_range(9..20),
                rng.random_range(0..60),
                channel,
                "autumn-2026",
            );
        }
        customers.push(Customer {
            id: id.clone(),
            opted_out_day,
            consents,
        });
    }

    // Injections, each on a customer not used before.
    let mut order: Vec<usize> = (0..customers.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let mut used = vec![false; customers.len()];
    let mut truth: BTreeMap<String, RuleTruth> = BTreeMap::new();
    for (r, rule) in RULES.iter().enumerate() {
        let wanted =
            (rng.random::<f64>() * MAX_INJECTED_FRACTION * customers.len() as f64).round() as u64;
        let mut injected = 0u64;
        for &c in &order {
            if injected == wanted {
                break;
            }
            let k = &customers[c];
            let active = k.opted_out_day.is_none();
            let fits = !used[c]
                && match r {
                    0 | 4 => active && k.consents[0],
                    1 => active && k.consents[2],
                    2 => k.opted_out_day.is_some() && k.consents[0],
                    _ => active && k.consents.contains(&false),
                };
            if !fits {
                continue;
            }
            used[c] = true;
            injected += 1;
            let day = rng.random_range(699..716);
            let campaign = "december-2026";
            match r {
                0 => {
                    for (d, h) in [(0, 10), (0, 15), (1, 11), (2, 12)] {
                        add(&mut contacts, &k.id, day + d, h, 0, 0, campaign);
                    }
                }
                1 => {
                    for d in [0, 10, 20] {
                        add(&mut contacts, &k.id, day + d, 11, 30, 2, campaign);
                    }
                }
                2 => add(&mut contacts, &k.id, day, 11, 0, 0, campaign),
                3 => {
                    let channel = (0..3).find(|&ch| !k.consents[ch]).unwrap_or(0);
                    add(&mut contacts, &k.id, day, 11, 0, channel, campaign);
                }
                _ => add(&mut contacts, &k.id, day, 22, 15, 0, campaign),
            }
        }
        truth.insert(
            (*rule).to_owned(),
            RuleTruth {
                violations: injected,
                customers_affected: injected,
                contacts_examined: 0,
            },
        );
    }
    for (rule, t) in truth.iter_mut() {
        t.contacts_examined = if rule == "phone-monthly-cap" {
            phone
        } else {
            all
        };
    }
    let files = ContactFiles {
        contacts: dir.join("contacts.csv"),
        consent: dir.join("consent.csv"),
        truth: dir.join("compliance-truth.json"),
    };
    std::fs::write(&files.contacts, contacts)?;
    std::fs::write(&files.consent, consent)?;
    std::fs::write(
        &files.truth,
        serde_json::to_string_pretty(&truth).unwrap_or_default(),
    )?;
    Ok(files)
}

/// Reads a ground-truth file written by [`generate`].
pub fn read_truth(path: &Path) -> std::io::Result<BTreeMap<String, RuleTruth>> {
    let text = std::fs::read_to_string(path)?;
    serde_json::from_str(&text).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contact_log::read_contacts;
    use fedbank_common::compliance_rules::ComplianceSpec;

    /// The rules of the shipped job file.
    fn shipped_rules() -> ComplianceSpec {
        let text = include_str!("../../../configs/compliance-synthetic.toml");
        let file: toml::Value = toml::from_str(text).expect("job file");
        file["job"]["compliance"]
            .clone()
            .try_into()
            .expect("compliance table")
    }

    #[test]
    fn the_rules_find_exactly_the_seeded_violations() {
        let spec = shipped_rules();
        assert_eq!(
            spec.rules
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            RULES
        );
        let dir = tempfile::tempdir().expect("dir");
        let ids: Vec<String> = (0..3000).map(|i| format!("X-{i:06}")).collect();
        let files = generate(dir.path(), &ids, 11).expect("generate");
        let truth = read_truth(&files.truth).expect("truth");
        let log = read_contacts(&files.contacts, &files.consent, &spec, 1 << 30).expect("log");
        let mut injected = 0;
        for counts in log.evaluate(&spec) {
            let t = truth[&counts.rule];
            assert_eq!(
                (
                    counts.violations,
                    counts.customers_affected,
                    counts.contacts_examined
                ),
                (t.violations, t.customers_affected, t.contacts_examined),
                "rule {}",
                counts.rule
            );
            injected += t.violations;
        }
        assert!(injected > 20, "the seed injects violations ({injected})");
    }
}
