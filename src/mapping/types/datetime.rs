//! Dates and times as SQLite applications write them (text) and as PostgreSQL holds them (days or microseconds
//! counted from 2000-01-01): parsing every form frameworks write, and one canonical text form back.

/// Days between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10957;
const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

fn digits(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0, |acc, d| acc * 10 + i64::from(d - b'0')))
}

/// Parses `YYYY-MM-DD` into days since 2000-01-01; refuses dates that do not exist and year 0.
pub fn parse_date(text: &[u8]) -> Option<i64> {
    if text.len() != 10 || text[4] != b'-' || text[7] != b'-' {
        return None;
    }
    let (year, month, day) = (digits(&text[0..4])?, digits(&text[5..7])?, digits(&text[8..10])?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if year == 0 || !(1..=12).contains(&month) || day < 1 || day > month_days[(month - 1) as usize] {
        return None;
    }
    Some(days_from_civil(year, month, day) - PG_EPOCH_DAYS)
}

/// Parses exactly SQLite's `YYYY-MM-DD HH:MM:SS` (or with `.SSS` when `millis`) into microseconds since
/// 2000-01-01: the forms `timestamp(0)` and `timestamp(3)` columns of earlier versions hold.
pub fn parse_timestamp(text: &[u8], millis: bool) -> Option<i64> {
    let expected_len = if millis { 23 } else { 19 };
    let shaped = text.len() == expected_len && text[10] == b' ' && text[13] == b':' && text[16] == b':';
    if !shaped || (millis && (text[19] != b'.' || digits(&text[20..]).is_none())) {
        return None;
    }
    parse_datetime(text)
}

/// Parses `HH:MM[:SS[.f]]` (one to six fraction digits) into microseconds since midnight.
pub fn parse_time(text: &[u8]) -> Option<i64> {
    let (micros, rest) = time_prefix(text)?;
    rest.is_empty().then_some(micros)
}

/// Parses a date or a date and time in the forms SQLite, ORMs and people write — `YYYY-MM-DD`, or
/// `YYYY-MM-DD[T ]HH:MM[:SS[.f]]` with one to six fraction digits and an optional `Z`, `±HH:MM`, `±HHMM` or
/// `±HH` — into microseconds since 2000-01-01 UTC. A value without an offset is UTC, as SQLite's own
/// `datetime('now')` and Django write them.
pub fn parse_datetime(text: &[u8]) -> Option<i64> {
    let days = parse_date(text.get(..10)?)?;
    let rest = &text[10..];
    if rest.is_empty() {
        return Some(days * MICROS_PER_DAY);
    }
    if rest[0] != b' ' && rest[0] != b'T' {
        return None;
    }
    let (of_day, zone) = time_prefix(&rest[1..])?;
    Some(days * MICROS_PER_DAY + of_day - offset_seconds(zone)? * MICROS_PER_SECOND)
}

/// Reads `HH:MM[:SS[.f]]` at the start of `text`: microseconds since midnight and what follows.
fn time_prefix(text: &[u8]) -> Option<(i64, &[u8])> {
    if text.len() < 5 || text[2] != b':' {
        return None;
    }
    let (hour, minute) = (digits(&text[0..2])?, digits(&text[3..5])?);
    let (mut second, mut micros, mut rest) = (0, 0, &text[5..]);
    if rest.first() == Some(&b':') {
        second = digits(rest.get(1..3)?)?;
        rest = &rest[3..];
        if rest.first() == Some(&b'.') {
            let count = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
            if !(1..=6).contains(&count) {
                return None;
            }
            micros = digits(&rest[1..1 + count])? * 10i64.pow(6 - count as u32);
            rest = &rest[1 + count..];
        }
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some((((hour * 60 + minute) * 60 + second) * MICROS_PER_SECOND + micros, rest))
}

/// The offset from UTC a zone suffix names, in seconds: nothing or `Z` is UTC, else `±HH[[:]MM]`.
fn offset_seconds(zone: &[u8]) -> Option<i64> {
    let sign = match zone.first() {
        None => return Some(0),
        Some(b'Z') if zone.len() == 1 => return Some(0),
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return None,
    };
    let (hours, minutes) = match &zone[1..] {
        [h1, h2] => (digits(&[*h1, *h2])?, 0),
        [h1, h2, m1, m2] | [h1, h2, b':', m1, m2] => (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?),
        _ => return None,
    };
    (hours <= 23 && minutes <= 59).then_some(sign * (hours * 3600 + minutes * 60))
}

/// `YYYY-MM-DD` of a day counted from 2000-01-01.
pub fn format_date(days_since_2000: i64) -> String {
    let (year, month, day) = civil_from_days(days_since_2000 + PG_EPOCH_DAYS);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The canonical text of an instant counted in microseconds from 2000-01-01 UTC: `YYYY-MM-DD HH:MM:SS`, with
/// `.ffffff` when the fraction is not zero (the forms SQLite and Django write, in UTC).
pub fn format_datetime(micros: i64) -> String {
    let (days, of_day) = (micros.div_euclid(MICROS_PER_DAY), micros.rem_euclid(MICROS_PER_DAY));
    format!("{} {}", format_date(days), format_time(of_day))
}

/// `HH:MM:SS`, with `.ffffff` when the fraction is not zero, of microseconds since midnight.
pub fn format_time(micros: i64) -> String {
    let (seconds, fraction) = (micros / MICROS_PER_SECOND, micros % MICROS_PER_SECOND);
    let mut text = format!("{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60);
    if fraction != 0 {
        text.push_str(&format!(".{fraction:06}"));
    }
    text
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (inverse of `days_from_civil`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = MICROS_PER_SECOND;

    #[test]
    fn every_form_frameworks_write_names_its_instant() {
        let noon = parse_datetime(b"2024-01-02 12:00:00").unwrap();
        for (text, expected) in [
            ("2024-01-02 12:00:00", noon),
            ("2024-01-02T12:00:00", noon),
            ("2024-01-02 12:00", noon),
            ("2024-01-02T12:00Z", noon),
            ("2024-01-02 12:00:00Z", noon),
            ("2024-01-02T14:00:00+02:00", noon),
            ("2024-01-02T14:00:00+0200", noon),
            ("2024-01-02T14:00:00+02", noon),
            ("2024-01-02T06:30:00-05:30", noon),
            ("2024-01-02 12:00:00.5", noon + SECOND / 2),
            ("2024-01-02 12:00:00.123", noon + 123_000),
            ("2024-01-02 12:00:00.123456", noon + 123_456),
            ("2024-01-02T12:00:00.000001+00:00", noon + 1),
            ("2024-01-02", noon - 12 * 3600 * SECOND),
            ("2024-01-03 01:00:00+13:00", noon),
        ] {
            assert_eq!(parse_datetime(text.as_bytes()), Some(expected), "{text}");
        }
        assert_eq!(parse_datetime(b"2000-01-01 00:00:01"), Some(SECOND));
    }

    #[test]
    fn malformed_and_impossible_values_do_not_parse() {
        for text in [
            "",
            "2024-1-2",
            "2024-01-02 ",
            "2024-01-02x12:00",
            "2024-01-02 12",
            "2024-01-02 12:00:00.",
            "2024-01-02 12:00:00.1234567",
            "2024-01-02 24:00:00",
            "2024-01-02 12:60:00",
            "2024-01-02 12:00:60",
            "2023-02-29 12:00:00",
            "0000-01-01 00:00:00",
            "2024-01-02 12:00:00+2",
            "2024-01-02 12:00:00+24:00",
            "2024-01-02 12:00:00 +02:00",
            "2024-01-02 12:00:00z",
            "2024-01-02Z",
            "2024-01-02 12:00:00ZZ",
        ] {
            assert_eq!(parse_datetime(text.as_bytes()), None, "{text:?}");
        }
    }

    #[test]
    fn times_of_day_parse_with_fractions_and_without_seconds() {
        assert_eq!(parse_time(b"00:00"), Some(0));
        assert_eq!(parse_time(b"13:45"), Some((13 * 60 + 45) * 60 * SECOND));
        assert_eq!(parse_time(b"13:45:10.25"), Some(((13 * 60 + 45) * 60 + 10) * SECOND + 250_000));
        assert_eq!(parse_time(b"23:59:59.999999"), Some(MICROS_PER_DAY - 1));
        for text in ["24:00:00", "1:00", "12:00:00Z", "12:00:00+01:00", "12:00:00.", "12"] {
            assert_eq!(parse_time(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn canonical_text_reads_back_as_the_same_instant() {
        for text in ["2024-02-29 23:59:58", "1999-12-31 00:00:00.000001", "0001-01-01 00:00:00", "9999-12-31 23:59:59.5"] {
            let micros = parse_datetime(text.as_bytes()).unwrap();
            let canonical = format_datetime(micros);
            assert_eq!(parse_datetime(canonical.as_bytes()), Some(micros));
        }
        assert_eq!(format_datetime(parse_datetime(b"2024-01-02T05:04:05.120+02:00").unwrap()), "2024-01-02 03:04:05.120000");
        assert_eq!(format_time(parse_time(b"07:08").unwrap()), "07:08:00");
        assert_eq!(parse_timestamp(b"2024-01-02T00:00:00", false), None, "earlier versions' timestamp(0) took one form");
        assert_eq!(parse_timestamp(b"2000-01-01 00:00:00.250", true), Some(250_000));
        assert_eq!(parse_timestamp(b"2000-01-01 00:00+02", false), None);
        assert_eq!(parse_timestamp(b"2000-01-01 00:00:00.12Z", true), None);
    }

    #[test]
    fn timestamps_parse_only_real_dates() {
        assert_eq!(parse_timestamp(b"2000-01-01 00:00:01", false), Some(1_000_000));
        assert_eq!(parse_timestamp(b"2000-01-01 00:00:00.250", true), Some(250_000));
        assert_eq!(parse_timestamp(b"2023-02-29 00:00:00", false), None);
        assert!(parse_timestamp(b"2024-02-29 00:00:00", false).is_some());
        assert_eq!(parse_timestamp(b"0000-01-01 00:00:00", false), None);
        assert_eq!(parse_date(b"1999-12-31"), Some(-1));
    }
}
