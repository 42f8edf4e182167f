//! Calendar days as integers: days since 1970-01-01 (proleptic Gregorian) and the month index
//! the reference-date rounds use. No time zones: a transaction's date is the institution's
//! booking date.

/// First year of the months the reference-date rounds cover.
pub const FIRST_YEAR: i64 = 1970;
/// Months covered by the reference-date rounds: 1970-01 to 2099-12.
pub const MONTHS: usize = 130 * 12;
/// Days in the longest month: the length of the day round.
pub const MONTH_DAYS: usize = 31;

/// Days since 1970-01-01 of a `YYYY-MM-DD` date, if it is one.
pub fn day_number(date: &str) -> Option<i64> {
    let b = date.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !date.is_ascii() {
        return None;
    }
    let y: i64 = date[..4].parse().ok()?;
    let m: i64 = date[5..7].parse().ok()?;
    let d: i64 = date[8..].parse().ok()?;
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's days-from-civil.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day number (Hinnant's civil-from-days).
pub fn civil(day: i64) -> (i64, i64, i64) {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DD` of a day number.
pub fn format_day(day: i64) -> String {
    let (y, m, d) = civil(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Months since 1970-01 of a day number (negative before 1970).
pub fn month_index(day: i64) -> i64 {
    let (y, m, _) = civil(day);
    (y - FIRST_YEAR) * 12 + m - 1
}

/// The first day of month `index` (months since 1970-01).
pub fn first_day_of_month(index: i64) -> i64 {
    days_from_civil(
        FIRST_YEAR + index.div_euclid(12),
        index.rem_euclid(12) + 1,
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_dates() {
        assert_eq!(day_number("1970-01-01"), Some(0));
        assert_eq!(
            day_number("1998-07-01")
                .zip(day_number("1998-06-30"))
                .map(|(a, b)| a - b),
            Some(1)
        );
        assert!(day_number("2000-02-29").is_some());
        assert_eq!(day_number("1999-02-29"), None);
        assert_eq!(day_number("1998-13-01"), None);
        assert_eq!(day_number("1998-6-01"), None);
        assert_eq!(month_index(0), 0);
        assert_eq!(
            first_day_of_month(month_index(10_000)),
            day_number("1997-05-01").unwrap_or(0)
        );
        assert_eq!(format_day(10_408), "1998-07-01");
    }

    proptest! {
        #[test]
        fn days_round_trip(day in -800_000i64..800_000) {
            let text = format_day(day);
            if (0..=9999).contains(&civil(day).0) {
                prop_assert_eq!(day_number(&text), Some(day));
            }
            let month = month_index(day);
            let first = first_day_of_month(month);
            prop_assert!(first <= day && day - first < MONTH_DAYS as i64);
            prop_assert_eq!(month_index(first), month);
        }
    }
}
