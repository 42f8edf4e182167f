//! Reading a compliance job's local data: a participant's marketing-contact log and consent
//! table, checked and handed to the job's local step as a [`ContactLog`] (the rules are
//! evaluated over it in the job's folder, `common/src/job/compliance/`).
//!
//! Nothing here is sent. The per-rule counts become one encrypted contribution; the rates become
//! one encrypted alert list under the auditor's key; the local report (which rule, how many
//! contacts, which customers) stays in a file at the institution.
//!
//! Bad input stops the participant before anything is sent, naming the file, the line and the
//! column: an empty customer id, a timestamp that is not `YYYY-MM-DDTHH:MM[:SS]`, an empty
//! channel, a consent flag that is not 1/0, an opt-out date that is not a date, a customer with
//! two consent rows, more contacts than the job's `max_rows`, an empty log.

use crate::customers::{bad_cell, CustomerError};
use crate::local_table::{CsvFile, TableError};
use fedbank_common::compliance_rules::{timestamp_seconds, ComplianceSpec};
use fedbank_common::job::compliance::{Consent, Contact, ContactLog};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Why a contact log or consent table cannot be used.
pub type ComplianceDataError = CustomerError;

fn flag(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "y" => Some(true),
        "0" | "false" | "no" | "n" | "" => Some(false),
        _ => None,
    }
}

/// Reads the contact log at `contacts` and the consent table at `consent` with the columns
/// `spec` maps; at most `max_rows` contacts.
pub fn read_contacts(
    contacts: &Path,
    consent: &Path,
    spec: &ComplianceSpec,
    max_rows: u64,
) -> Result<ContactLog, ComplianceDataError> {
    let channels: Vec<String> = spec.consent.channels.keys().cloned().collect();
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut customer_ids: Vec<String> = Vec::new();
    let mut intern = |id: &str| -> u32 {
        if let Some(&i) = ids.get(id) {
            return i;
        }
        let i = customer_ids.len() as u32;
        customer_ids.push(id.to_owned());
        ids.insert(id.to_owned(), i);
        i
    };

    // Consent table.
    let mut file = CsvFile::open(consent)?;
    let c = &spec.consent;
    let (ci, oi, di) = (
        file.index(&c.customer)?,
        file.index(&c.opted_out)?,
        file.index(&c.opt_out_date)?,
    );
    let channel_columns: Vec<(String, usize)> = c
        .channels
        .values()
        .map(|col| file.index(col).map(|i| (col.clone(), i)))
        .collect::<Result<_, _>>()?;
    let mut table: HashMap<u32, Consent> = HashMap::new();
    let mut record = csv::StringRecord::new();
    while file.next_record(&mut record)? {
        let line = record.position().map_or(0, |p| p.line());
        let cell = |i: usize| record.get(i).unwrap_or("");
        let customer = cell(ci);
        if customer.is_empty() {
            return Err(bad_cell(
                consent,
                line,
                &c.customer,
                "empty customer id".into(),
                customer,
            ));
        }
        let opted = flag(cell(oi)).ok_or_else(|| {
            bad_cell(
                consent,
                line,
                &c.opted_out,
                "not a 1/0 flag".into(),
                cell(oi),
            )
        })?;
        let date = cell(di);
        let opted_out_from = match (opted, date) {
            (false, _) => None,
            (true, "") => Some(i64::MIN),
            (true, d) => Some(fedbank_common::calendar::day_number(d).ok_or_else(|| {
                bad_cell(
                    consent,
                    line,
                    &c.opt_out_date,
                    "not a YYYY-MM-DD date".into(),
                    d,
                )
            })?),
        };
        let mut consents = Vec::with_capacity(channel_columns.len());
        for (column, i) in &channel_columns {
            consents.push(flag(cell(*i)).ok_or_else(|| {
                bad_cell(
                    consent,
                    line,
                    column,
                    "not a 1/0 consent flag".into(),
                    cell(*i),
                )
            })?);
        }
        let id = intern(customer);
        if table
            .insert(
                id,
                Consent {
                    opted_out_from,
                    channels: consents,
                },
            )
            .is_some()
        {
            return Err(bad_cell(
                consent,
                line,
                &c.customer,
                "a second consent row for this customer".into(),
                customer,
            ));
        }
    }

    // Contact log.
    let mut file = CsvFile::open(contacts)?;
    let k = &spec.contacts;
    let (ci, ti, hi, pi) = (
        file.index(&k.customer)?,
        file.index(&k.timestamp)?,
        file.index(&k.channel)?,
        file.index(&k.campaign)?,
    );
    let mut log = Vec::new();
    let mut unknown_channels = BTreeMap::new();
    while file.next_record(&mut record)? {
        let line = record.position().map_or(0, |p| p.line());
        let cell = |i: usize| record.get(i).unwrap_or("");
        if log.len() as u64 >= max_rows {
            return Err(bad_cell(
                contacts,
                line,
                &k.customer,
                format!("more than the job's max_rows = {max_rows} contacts"),
                cell(ci),
            ));
        }
        let customer = cell(ci);
        if customer.is_empty() {
            return Err(bad_cell(
                contacts,
                line,
                &k.customer,
                "empty customer id".into(),
                customer,
            ));
        }
        let seconds = timestamp_seconds(cell(ti)).ok_or_else(|| {
            bad_cell(
                contacts,
                line,
                &k.timestamp,
                "not a YYYY-MM-DDTHH:MM[:SS] time".into(),
                cell(ti),
            )
        })?;
        let channel = cell(hi);
        if channel.is_empty() {
            return Err(bad_cell(
                contacts,
                line,
                &k.channel,
                "empty channel".into(),
                channel,
            ));
        }
        if cell(pi).is_empty() {
            return Err(bad_cell(
                contacts,
                line,
                &k.campaign,
                "empty campaign".into(),
                "",
            ));
        }
        let channel = match channels.iter().position(|c| c == channel) {
            Some(i) => Some(i as u16),
            None => {
                *unknown_channels.entry(channel.to_owned()).or_insert(0) += 1;
                None
            }
        };
        log.push(Contact {
            customer: intern(customer),
            seconds,
            channel,
        });
    }
    if log.is_empty() {
        return Err(TableError::Empty {
            path: contacts.to_path_buf(),
            what: "no contacts",
        }
        .into());
    }
    ContactLog::new(log, customer_ids, table, channels, unknown_channels).map_err(|problem| {
        CustomerError::Inconsistent {
            path: contacts.to_path_buf(),
            problem,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rules: &str) -> ComplianceSpec {
        let text = format!(
            r#"
            [contacts]
            customer = "id"
            timestamp = "at"
            channel = "via"
            campaign = "campaign"
            [consent]
            customer = "id"
            opted_out = "out"
            opt_out_date = "out_date"
            channels = {{ email = "email", phone = "phone" }}
            {rules}"#
        );
        toml::from_str(&text).expect("spec")
    }

    fn log(
        contacts: &str,
        consent: &str,
        spec: &ComplianceSpec,
    ) -> Result<ContactLog, ComplianceDataError> {
        let dir = tempfile::tempdir().expect("dir");
        let (a, b) = (
            dir.path().join("contacts.csv"),
            dir.path().join("consent.csv"),
        );
        std::fs::write(&a, format!("id,at,via,campaign\n{contacts}")).expect("write");
        std::fs::write(&b, format!("id,out,out_date,email,phone\n{consent}")).expect("write");
        read_contacts(&a, &b, spec, 1000)
    }

    #[test]
    fn each_rule_counts_exactly_what_it_declares() {
        let spec = spec(
            r#"
            [[rules]]
            name = "cap"
            kind = "frequency_cap"
            max_contacts = 2
            window_days = 7
            [[rules]]
            name = "phone-cap"
            kind = "frequency_cap"
            max_contacts = 1
            window_days = 30
            channel = "phone"
            [[rules]]
            name = "opt-out"
            kind = "after_opt_out"
            [[rules]]
            name = "consent"
            kind = "without_consent"
            [[rules]]
            name = "quiet"
            kind = "quiet_hours"
            start = "21:00"
            end = "08:00"
            "#,
        );
        let contacts = "\
a,2026-01-01T10:00,email,c1
a,2026-01-03T10:00,email,c1
a,2026-01-07T23:59,email,c1
a,2026-01-08T10:00,email,c1
a,2026-01-20T10:00,phone,c1
a,2026-02-10T10:00,phone,c1
b,2026-03-01T07:59,post,c2
b,2026-03-02T10:00,email,c2
c,2026-03-01T12:00,email,c2
";
        let consent = "a,0,,1,1\nb,1,2026-03-02,1,0\n";
        let log = log(contacts, consent, &spec).expect("log");
        let counts = log.evaluate(&spec);
        let triple = |i: usize| {
            (
                counts[i].violations,
                counts[i].customers_affected,
                counts[i].contacts_examined,
            )
        };
        // a: 01-01, 01-03, 01-07 23:59 → third is over 2 in 7 days; 01-08 10:00 counts
        // 01-03 and 01-07 (01-01 10:00 is exactly 7 days before: outside) → over too.
        assert_eq!(triple(0), (2, 1, 9));
        // Phone: 01-20 and 02-10 are 21 days apart: 2 in 30 days > 1.
        assert_eq!(triple(1), (1, 1, 2));
        // b opted out on 03-02: the 03-02 contact violates, 03-01 does not.
        assert_eq!(triple(2), (1, 1, 9));
        // b's post (unknown channel) and c (no consent row).
        assert_eq!(triple(3), (2, 2, 9));
        // 07:59 is quiet, 23:59 is quiet, 21:00 would be, 08:00 would not.
        assert_eq!(triple(4), (2, 2, 9));
        assert_eq!(counts[3].rate_basis_points, 2222);
        assert_eq!(log.unknown_channels().get("post"), Some(&1));
    }

    #[test]
    fn bad_cells_name_file_line_and_column() {
        let spec = spec("[[rules]]\nname = \"opt-out\"\nkind = \"after_opt_out\"");
        let cases = [
            (
                "a,2026-01-01 10:00,email,c1\na,yesterday,email,c1\n",
                "a,0,,1,1\n",
                "line 3, column 'at'",
            ),
            ("a,2026-01-01T10:00,,c1\n", "a,0,,1,1\n", "column 'via'"),
            (
                "a,2026-01-01T10:00,email,c1\n",
                "a,maybe,,1,1\n",
                "line 2, column 'out'",
            ),
            (
                "a,2026-01-01T10:00,email,c1\n",
                "a,1,2026-02-30,1,1\n",
                "column 'out_date'",
            ),
            (
                "a,2026-01-01T10:00,email,c1\n",
                "a,0,,1,1\na,0,,1,1\n",
                "a second consent row",
            ),
            ("", "a,0,,1,1\n", "no contacts"),
        ];
        for (contacts, consent, expected) in cases {
            let e = log(contacts, consent, &spec)
                .expect_err(expected)
                .to_string();
            assert!(e.contains(expected), "{e} should contain {expected}");
        }
    }
}
