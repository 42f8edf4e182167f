//! A seeded synthetic consortium: for each institution, customers with demographics and product
//! holdings, purchase transactions, campaign responses, marketing contacts and consent, written
//! as CSV files. Institutions differ (non-IID): a retail bank, an insurer, a broker and a payment
//! firm have different customer ages, incomes, balances, activity and response rates, and
//! different sizes. Everything is generated on the machine from a seed; nothing is downloaded.
//! The contact log and consent table come from [`contacts`], with seeded rule violations.

pub mod contacts;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The kind of institution, which sets its customer mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstitutionKind {
    /// A retail bank branch network: broad ages, salaries, current accounts.
    RetailBank,
    /// An insurer: older, higher incomes, few transactions.
    Insurer,
    /// A broker: affluent, high balances, volatile activity.
    Broker,
    /// A payment firm: young, many small transactions.
    PaymentFirm,
}

impl InstitutionKind {
    /// The kind of the i-th institution of a consortium, cycling through the four.
    pub fn nth(i: usize) -> Self {
        [
            Self::RetailBank,
            Self::Insurer,
            Self::Broker,
            Self::PaymentFirm,
        ][i % 4]
    }

    /// The kind a node's name says it is ("retail-bank", "life-insurer", "broker",
    /// "payments", "card-issuer", …), else the i-th kind. Node names are sorted in a job, so the
    /// position alone would call "retail-bank" a payment firm.
    pub fn for_name(name: &str, i: usize) -> Self {
        let name = name.to_ascii_lowercase();
        let says = |words: &[&str]| words.iter().any(|w| name.contains(w));
        if says(&["insur"]) {
            Self::Insurer
        } else if says(&["broker", "wealth", "invest", "asset"]) {
            Self::Broker
        } else if says(&["pay", "card", "wallet", "fintech"]) {
            Self::PaymentFirm
        } else if says(&["bank", "savings", "credit-union"]) {
            Self::RetailBank
        } else {
            Self::nth(i)
        }
    }

    /// (age mean, age sd, log-income mean, balance scale, transactions per year, base response)
    fn profile(self) -> (f64, f64, f64, f64, f64, f64) {
        match self {
            Self::RetailBank => (42.0, 14.0, 10.6, 8_000.0, 60.0, 0.06),
            Self::Insurer => (53.0, 11.0, 10.9, 15_000.0, 6.0, 0.04),
            Self::Broker => (47.0, 10.0, 11.4, 60_000.0, 25.0, 0.09),
            Self::PaymentFirm => (31.0, 9.0, 10.2, 1_500.0, 140.0, 0.11),
        }
    }
}

/// Files written for one institution.
#[derive(Clone, Debug)]
pub struct InstitutionFiles {
    /// customers.csv: customer_id, age, income, balance, tenure_months, products_held,
    /// transactions_12m, spend_12m, region, responded (the spring-2026 campaign response, 0/1,
    /// also in responses.csv).
    pub customers: PathBuf,
    /// transactions.csv: customer_id, date, amount.
    pub transactions: PathBuf,
    /// responses.csv: customer_id, campaign, responded (0/1).
    pub responses: PathBuf,
    /// contacts.csv: customer_id, timestamp, channel, campaign.
    pub contacts: PathBuf,
    /// consent.csv: customer_id, opted_out, opt_out_date, email, sms, phone.
    pub consent: PathBuf,
    /// compliance-truth.json: the seeded violations per compliance rule.
    pub compliance_truth: PathBuf,
}

fn normal(rng: &mut StdRng) -> f64 {
    // Box–Muller.
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

pub(crate) fn poisson(rng: &mut StdRng, mean: f64) -> u32 {
    // Normal approximation above 30, Knuth below.
    if mean > 30.0 {
        return (mean + mean.sqrt() * normal(rng)).round().max(0.0) as u32;
    }
    let limit = (-mean).exp();
    let (mut k, mut p) = (0u32, 1.0);
    loop {
        p *= rng.random::<f64>();
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

pub(crate) fn date(day: u32) -> String {
    // Days from 2025-01-01 (no leap day in 2025; 2026 is not a leap year either).
    const MONTHS: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let (mut year, mut d) = (2025, day);
    while d >= 365 {
        d -= 365;
        year += 1;
    }
    let mut month = 0;
    while d >= MONTHS[month] {
        d -= MONTHS[month];
        month += 1;
    }
    format!("{year}-{:02}-{:02}", month + 1, d + 1)
}

/// Generates one institution's files in `dir` with `customers` customers.
pub fn generate(
    dir: &Path,
    prefix: &str,
    kind: InstitutionKind,
    customers: usize,
    seed: u64,
) -> std::io::Result<InstitutionFiles> {
    std::fs::create_dir_all(dir)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let (age_mean, age_sd, log_income, balance_scale, tx_rate, base_response) = kind.profile();
    let regions = ["north", "south", "east", "west", "capital"];
    let mut ids = Vec::with_capacity(customers);
    let (mut cust, mut tx, mut resp) = (
        String::from("customer_id,age,income,balance,tenure_months,products_held,transactions_12m,spend_12m,region,responded\n"),
        String::from("customer_id,date,amount\n"),
        String::from("customer_id,campaign,responded\n"),
    );
    for c in 0..customers {
        let id = format!("{prefix}-{c:06}");
        let age = (age_mean + age_sd * normal(&mut rng))
            .clamp(18.0, 95.0)
            .round();
        let income = (log_income + 0.55 * normal(&mut rng)).exp().round();
        let income_cell = if rng.random::<f64>() < 0.05 {
            String::new()
        } else {
            format!("{income}")
        };
        let balance =
            (balance_scale * (0.8 * normal(&mut rng)).exp() * (income / 40_000.0).sqrt()).round();
        let tenure = rng.random_range(1..=(12 * ((age - 17.0) as u32).min(30)));
        let products = 1 + poisson(&mut rng, 0.4 + age / 40.0);
        let activity = tx_rate
            * (0.5 + rng.random::<f64>())
            * if rng.random::<f64>() < 0.15 { 0.1 } else { 1.0 };
        let n_tx = poisson(&mut rng, activity);
        let mut spend = 0.0;
        for _ in 0..n_tx {
            let amount = ((income / 2000.0) * (0.9 * normal(&mut rng)).exp()).max(1.0);
            spend += amount;
            let _ = writeln!(
                tx,
                "{id},{},{amount:.2}",
                date(365 + rng.random_range(0..365))
            );
        }
        let region = regions[rng.random_range(0..regions.len())];
        // Campaign response: more likely for active, younger, multi-product customers.
        let score = base_response.ln()
            + 0.6 * (n_tx as f64 / tx_rate.max(1.0)).min(3.0)
            + 0.25 * f64::from(products)
            - 0.015 * (age - 40.0);
        let p = 1.0 / (1.0 + (-(score - 1.0)).exp());
        let responded = u8::from(rng.random::<f64>() < p);
        let _ = writeln!(
            cust,
            "{id},{age},{income_cell},{balance},{tenure},{products},{n_tx},{spend:.2},{region},{responded}"
        );
        let _ = writeln!(resp, "{id},spring-2026,{responded}");
        ids.push(id);
    }
    let marketing = contacts::generate(dir, &ids, seed)?;
    let files = InstitutionFiles {
        customers: dir.join("customers.csv"),
        transactions: dir.join("transactions.csv"),
        responses: dir.join("responses.csv"),
        contacts: marketing.contacts,
        consent: marketing.consent,
        compliance_truth: marketing.truth,
    };
    std::fs::write(&files.customers, cust)?;
    std::fs::write(&files.transactions, tx)?;
    std::fs::write(&files.responses, resp)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_the_kind_its_name_says() {
        use InstitutionKind::*;
        for (name, kind) in [
            ("retail-bank", RetailBank),
            ("savings-bank", RetailBank),
            ("insurer", Insurer),
            ("life-insurer", Insurer),
            ("broker", Broker),
            ("wealth-manager", Broker),
            ("payments", PaymentFirm),
            ("card-issuer", PaymentFirm),
        ] {
            assert_eq!(InstitutionKind::for_name(name, 0), kind, "{name}");
        }
        assert_eq!(InstitutionKind::for_name("branch-7", 2), Broker);
    }

    #[test]
    fn same_seed_same_data_and_institutions_differ() {
        let dir = std::env::temp_dir().join(format!("fedbank-synth-{}", std::process::id()));
        let a = generate(&dir.join("a"), "A", InstitutionKind::RetailBank, 200, 7).expect("a");
        let b = generate(&dir.join("b"), "A", InstitutionKind::RetailBank, 200, 7).expect("b");
        let c = generate(&dir.join("c"), "C", InstitutionKind::PaymentFirm, 200, 7).expect("c");
        let read = |p: &Path| std::fs::read_to_string(p).expect("read");
        assert_eq!(read(&a.customers), read(&b.customers));
        let mean_age = |p: &Path| {
            let text = read(p);
            let ages: Vec<f64> = text
                .lines()
                .skip(1)
                .map(|l| {
                    l.split(',')
                        .nth(1)
                        .and_then(|x| x.parse().ok())
                        .unwrap_or(0.0)
                })
                .collect();
            ages.iter().sum::<f64>() / ages.len() as f64
        };
        assert!(
            mean_age(&a.customers) - mean_age(&c.customers) > 5.0,
            "non-IID ages"
        );
        assert_eq!(date(0), "2025-01-01");
        assert_eq!(date(364), "2025-12-31");
        assert_eq!(date(365 + 59), "2026-03-01");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
