//! A SQLite value in PostgreSQL's binary format for its column's type (what COPY sends), or why it cannot be.

use super::datetime::{parse_date, parse_datetime, parse_time, parse_timestamp};
use super::json;
use super::numeric::{encode_numeric, encode_real_as_numeric, scaled_decimal};
use super::{real_to_text, Misfit, PgType, SqlValue};

/// Appends `value` to `out` in PostgreSQL's binary format for `pg_type`, without the length prefix.
/// `SqlValue::Null` is handled by the caller (it has no body). On a misfit, `out` may hold part of the value.
pub fn encode_binary(value: &SqlValue, pg_type: PgType, out: &mut Vec<u8>) -> Result<(), Misfit> {
    match (pg_type, value) {
        (_, SqlValue::Null) => unreachable!("NULL is written as a length of -1 by the caller"),
        (PgType::BigInt, SqlValue::Integer(i)) => out.extend_from_slice(&i.to_be_bytes()),
        (PgType::Integer, SqlValue::Integer(i)) => out.extend_from_slice(&narrow::<i32>(value, *i, pg_type)?.to_be_bytes()),
        (PgType::SmallInt, SqlValue::Integer(i)) => out.extend_from_slice(&narrow::<i16>(value, *i, pg_type)?.to_be_bytes()),
        (PgType::Boolean, SqlValue::Integer(i @ (0 | 1))) => out.push(*i as u8),
        (PgType::Boolean, SqlValue::Integer(i)) => return Err(Misfit::because(value, pg_type, format!("{i} is not 0 or 1"))),
        (PgType::Double, SqlValue::Real(f)) => out.extend_from_slice(&f.to_bits().to_be_bytes()),
        (PgType::Real, SqlValue::Real(f)) => out.extend_from_slice(&float4(value, *f)?.to_bits().to_be_bytes()),
        (PgType::Numeric, SqlValue::Integer(i)) => encode_numeric(&i.to_string(), out),
        (PgType::Numeric, SqlValue::Real(f)) => encode_real_as_numeric(*f, out)?,
        (PgType::NumericScaled { precision, scale }, SqlValue::Integer(_) | SqlValue::Real(_) | SqlValue::Text(_)) => {
            encode_numeric(&scaled_decimal(value, precision, scale)?, out)
        }
        (PgType::Text, SqlValue::Text(t)) => out.extend_from_slice(check_pg_text(t)?),
        (PgType::Text | PgType::Varchar(_), SqlValue::Integer(_) | SqlValue::Real(_)) => {
            encode_text(value, number_text(value), pg_type, out)?
        }
        (PgType::Varchar(_), SqlValue::Text(t)) => encode_text(value, check_pg_text(t)?, pg_type, out)?,
        // Only blobs: text or a number written as its bytes could not be told from the blob of those bytes.
        (PgType::Bytea, SqlValue::Blob(b)) => out.extend_from_slice(b),
        (PgType::TimestampSeconds | PgType::TimestampMillis, SqlValue::Text(t)) => {
            let micros = parse_timestamp(t, pg_type == PgType::TimestampMillis)
                .ok_or_else(|| Misfit::because(value, pg_type, "not in the one form this older column takes"))?;
            out.extend_from_slice(&micros.to_be_bytes());
        }
        (PgType::TimestampTz | PgType::Timestamp, SqlValue::Text(t)) => {
            let micros = parse_datetime(t).ok_or_else(|| {
                Misfit::because(value, pg_type, "not a date and time (YYYY-MM-DD[ HH:MM[:SS[.ffffff]]][Z|±HH:MM])")
            })?;
            out.extend_from_slice(&micros.to_be_bytes());
        }
        (PgType::Date, SqlValue::Text(t)) => {
            let days = parse_date(t).ok_or_else(|| Misfit::because(value, pg_type, "not a date (YYYY-MM-DD)"))?;
            out.extend_from_slice(&(days as i32).to_be_bytes());
        }
        (PgType::Time, SqlValue::Text(t)) => {
            let micros = parse_time(t).ok_or_else(|| Misfit::because(value, pg_type, "not a time (HH:MM[:SS[.ffffff]])"))?;
            out.extend_from_slice(&micros.to_be_bytes());
        }
        (PgType::Uuid, SqlValue::Text(_) | SqlValue::Blob(_)) => out.extend_from_slice(&uuid_bytes(value)?),
        (PgType::Jsonb, SqlValue::Integer(_) | SqlValue::Real(_) | SqlValue::Text(_)) => {
            let canonical = json::jsonb_text(&json_source(value)?).map_err(|why| Misfit::because(value, pg_type, why))?;
            out.push(JSONB_VERSION);
            out.extend_from_slice(canonical.as_bytes());
        }
        (PgType::Json, SqlValue::Integer(_) | SqlValue::Real(_) | SqlValue::Text(_)) => {
            let text = json_source(value)?;
            json::check_json(&text).map_err(|why| Misfit::because(value, pg_type, why))?;
            out.extend_from_slice(text.as_bytes());
        }
        (_, value) => {
            return Err(Misfit::new(format!("a {} value does not fit a {} column", value.storage_class(), pg_type.sql())))
        }
    }
    Ok(())
}

/// The version byte leading `jsonb`'s binary form.
pub(super) const JSONB_VERSION: u8 = 1;

/// An integer in a narrower integer type, or why not.
fn narrow<T: TryFrom<i64>>(value: &SqlValue, i: i64, pg_type: PgType) -> Result<T, Misfit> {
    T::try_from(i).map_err(|_| Misfit::because(value, pg_type, format!("{i} is out of its range")))
}

/// A real as float4, when that holds it exactly.
fn float4(value: &SqlValue, f: f64) -> Result<f32, Misfit> {
    let narrow = f as f32;
    match f64::from(narrow) == f || f.is_nan() {
        true => Ok(narrow),
        false => Err(Misfit::because(value, PgType::Real, format!("{} has no exact float4 form", real_to_text(f)))),
    }
}

/// A number as text: integers in decimal, reals in shortest round-trip form.
fn number_text(value: &SqlValue) -> String {
    match value {
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(f) => real_to_text(*f),
        _ => unreachable!("only numbers"),
    }
}

/// Text (or a number's text) in a text or `varchar(n)` column, checking the length in characters.
fn encode_text(value: &SqlValue, text: impl AsRef<[u8]>, pg_type: PgType, out: &mut Vec<u8>) -> Result<(), Misfit> {
    let text = text.as_ref();
    if let PgType::Varchar(Some(limit)) = pg_type {
        let length = std::str::from_utf8(text).map_or(0, |s| s.chars().count());
        if length > limit as usize {
            return Err(Misfit::because(value, pg_type, format!("it is {length} characters long")));
        }
    }
    out.extend_from_slice(text);
    Ok(())
}

/// The JSON text a value stands for: text as itself, a number as its JSON number.
fn json_source(value: &SqlValue) -> Result<std::borrow::Cow<'_, str>, Misfit> {
    Ok(match value {
        SqlValue::Text(t) => std::borrow::Cow::Borrowed(std::str::from_utf8(check_pg_text(t)?).expect("checked as UTF-8")),
        number => std::borrow::Cow::Owned(number_text(number)),
    })
}

/// The 16 bytes of a UUID written as 32 hex digits, as 36 characters with dashes (any case), or as a 16-byte blob.
fn uuid_bytes(value: &SqlValue) -> Result<[u8; 16], Misfit> {
    let refused = |why: &str| Misfit::because(value, PgType::Uuid, why);
    let hex_digits: Vec<u8> = match value {
        SqlValue::Blob(b) => return b.as_slice().try_into().map_err(|_| refused(&format!("{} bytes, not 16", b.len()))),
        SqlValue::Text(t) if t.len() == 32 => t.clone(),
        SqlValue::Text(t) if t.len() == 36 && [8, 13, 18, 23].iter().all(|&i| t[i] == b'-') => {
            t.iter().enumerate().filter(|(i, _)| ![8, 13, 18, 23].contains(i)).map(|(_, b)| *b).collect()
        }
        _ => return Err(refused("not a UUID (32 hex digits, or 36 characters with dashes)")),
    };
    let mut bytes = [0u8; 16];
    for (byte, pair) in bytes.iter_mut().zip(hex_digits.chunks(2)) {
        let pair = std::str::from_utf8(pair).ok().filter(|p| p.bytes().all(|b| b.is_ascii_hexdigit()));
        *byte = pair
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .ok_or_else(|| refused("not a UUID (32 hex digits, or 36 characters with dashes)"))?;
    }
    Ok(bytes)
}

/// PostgreSQL text must be valid UTF-8 without NUL characters.
pub(super) fn check_pg_text(bytes: &[u8]) -> Result<&[u8], Misfit> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(Misfit::new("text is not valid UTF-8, which PostgreSQL text cannot hold"));
    }
    if bytes.contains(&0) {
        return Err(Misfit::new("text contains a NUL character, which PostgreSQL text cannot hold"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::super::test_values::{any_value, text, ALL_TYPES};
    use super::super::{decode_binary, is_native};
    use super::*;

    /// The kinds each type documents taking: its own, numbers as text in text columns and as JSON numbers in JSON
    /// columns, decimal texts in `numeric(p,s)`, any writing of an instant, time, UUID or JSON value.
    fn documented_kind(value: &SqlValue, pg_type: PgType) -> bool {
        let number = matches!(value, SqlValue::Integer(_) | SqlValue::Real(_));
        let text = matches!(value, SqlValue::Text(_));
        is_native(value, pg_type)
            || (number && matches!(pg_type, PgType::Text | PgType::Varchar(_) | PgType::Json | PgType::Jsonb))
            || (number && matches!(pg_type, PgType::NumericScaled { .. }))
            || (text && matches!(pg_type, PgType::NumericScaled { .. }))
            || (text && matches!(pg_type, PgType::TimestampTz | PgType::Timestamp | PgType::Time | PgType::Uuid | PgType::Jsonb))
            || (matches!(value, SqlValue::Blob(b) if b.len() == 16) && pg_type == PgType::Uuid)
    }

    proptest::proptest! {
        #[test]
        fn every_value_encodes_or_says_why_and_native_ones_come_back(value in any_value(), type_index in 0usize..21) {
            let pg_type = ALL_TYPES[type_index];
            let mut bytes = Vec::new();
            let encoded = encode_binary(&value, pg_type, &mut bytes);
            if encoded.is_ok() && is_native(&value, pg_type) {
                proptest::prop_assert_eq!(decode_binary(&bytes, pg_type), Some(value.clone()));
            }
            if encoded.is_ok() {
                // What repair and deletes of keys found only in PostgreSQL rely on: the decoded value names the same
                // PostgreSQL value.
                let decoded = decode_binary(&bytes, pg_type).expect("what was encoded decodes");
                let mut again = Vec::new();
                proptest::prop_assert!(encode_binary(&decoded, pg_type, &mut again).is_ok(), "{:?} in {}", decoded, pg_type);
                proptest::prop_assert_eq!(again, bytes);
            }
            // What verify relies on to compare kinds: the encoder takes a value only as a kind its type documents.
            let nan = matches!(value, SqlValue::Real(f) if f.is_nan()); // SQLite never stores NaN
            if encoded.is_ok() && !nan {
                proptest::prop_assert!(documented_kind(&value, pg_type), "{:?} in {}", value, pg_type);
            }
            if let Err(misfit) = encoded {
                proptest::prop_assert!(misfit.reason.contains(&pg_type.sql()) || misfit.reason.contains("text"), "{}", misfit.reason);
            }
        }
    }

    #[test]
    fn bytea_holds_only_blobs_so_kinds_stay_apart() {
        let encoded = |value: SqlValue, pg_type| {
            let mut out = Vec::new();
            encode_binary(&value, pg_type, &mut out).ok().map(|()| out)
        };
        assert_eq!(encoded(SqlValue::Blob(b"1".to_vec()), PgType::Bytea), Some(b"1".to_vec()));
        assert_eq!(encoded(SqlValue::Integer(1), PgType::Bytea), None);
        assert_eq!(encoded(SqlValue::Text(b"1".to_vec()), PgType::Bytea), None);
        assert_eq!(encoded(SqlValue::Real(1.0), PgType::Bytea), None);
        assert_eq!(encoded(SqlValue::Blob(b"1".to_vec()), PgType::Text), None);
        assert_eq!(encoded(SqlValue::Integer(1), PgType::Text), Some(b"1".to_vec()), "numbers in text: the documented form");
    }

    #[test]
    fn values_that_do_not_fit_say_why() {
        let mut out = Vec::new();
        let nul = encode_binary(&SqlValue::Text(b"a\0b".to_vec()), PgType::Text, &mut out).unwrap_err();
        assert!(nul.reason.contains("NUL"));
        let bad = encode_binary(&SqlValue::Text(vec![0xff]), PgType::Text, &mut out).unwrap_err();
        assert!(bad.reason.contains("UTF-8"));
        let text_in_int = encode_binary(&SqlValue::Text(b"x".to_vec()), PgType::BigInt, &mut out).unwrap_err();
        assert_eq!(text_in_int.reason, "a text value does not fit a bigint column");
    }

    fn encoded(value: SqlValue, pg_type: PgType) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        encode_binary(&value, pg_type, &mut out).map(|()| out).map_err(|m| m.reason)
    }

    fn numeric(decimal: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode_numeric(decimal, &mut out);
        out
    }

    /// Asserts each value's encoding, or that its misfit names the value's kind, the column's type and `why`.
    fn assert_conversions(pg_type: PgType, cases: &[(SqlValue, Result<Vec<u8>, &str>)]) {
        for (value, expected) in cases {
            match (encoded(value.clone(), pg_type), expected) {
                (Ok(bytes), Ok(want)) => assert_eq!(&bytes, want, "{value:?} in {pg_type}"),
                (Err(reason), Err(why)) => {
                    let prefix = format!("a {} value does not fit a {} column", value.storage_class(), pg_type.sql());
                    assert!(reason.starts_with(&prefix) && reason.contains(why), "{value:?} in {pg_type}: {reason}");
                }
                (got, want) => panic!("{value:?} in {pg_type}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn integers_and_booleans_fit_by_range() {
        assert_conversions(
            PgType::Boolean,
            &[
                (SqlValue::Integer(0), Ok(vec![0])),
                (SqlValue::Integer(1), Ok(vec![1])),
                (SqlValue::Integer(2), Err("2 is not 0 or 1")),
            ],
        );
        assert_conversions(
            PgType::SmallInt,
            &[
                (SqlValue::Integer(32767), Ok(vec![0x7f, 0xff])),
                (SqlValue::Integer(-32768), Ok(vec![0x80, 0])),
                (SqlValue::Integer(32768), Err("32768 is out of its range")),
                (SqlValue::Real(1.0), Err("")),
                (text("1"), Err("")),
            ],
        );
        assert_conversions(
            PgType::Integer,
            &[
                (SqlValue::Integer(-2147483648), Ok(vec![0x80, 0, 0, 0])),
                (SqlValue::Integer(2147483648), Err("2147483648 is out of its range")),
            ],
        );
    }

    #[test]
    fn float4_takes_only_reals_it_holds_exactly() {
        assert_conversions(
            PgType::Real,
            &[
                (SqlValue::Real(0.5), Ok(0.5f32.to_bits().to_be_bytes().to_vec())),
                (SqlValue::Real(-0.0), Ok((-0.0f32).to_bits().to_be_bytes().to_vec())),
                (SqlValue::Real(f64::INFINITY), Ok(f32::INFINITY.to_bits().to_be_bytes().to_vec())),
                (SqlValue::Real(f64::from(0.1f32)), Ok(0.1f32.to_bits().to_be_bytes().to_vec())),
                (SqlValue::Real(0.1), Err("0.1 has no exact float4 form")),
                (SqlValue::Real(1e300), Err("has no exact float4 form")),
                (SqlValue::Integer(1), Err("")),
            ],
        );
    }

    #[test]
    fn scaled_numerics_take_values_exact_at_their_scale() {
        let money = PgType::NumericScaled { precision: 12, scale: 2 };
        assert_conversions(
            money,
            &[
                (SqlValue::Real(12.5), Ok(numeric("12.50"))),
                (SqlValue::Integer(12), Ok(numeric("12.00"))),
                (SqlValue::Integer(-9999999999), Ok(numeric("-9999999999.00"))),
                (SqlValue::Real(0.1), Ok(numeric("0.10"))),
                (text("123.45"), Ok(numeric("123.45"))),
                (text("-0.5"), Ok(numeric("-0.50"))),
                (text("7"), Ok(numeric("7.00"))),
                (SqlValue::Real(1.005), Err("1.005 has more than 2 fraction digits")),
                (SqlValue::Integer(10_000_000_000), Err("has more than 10 integer digits")),
                (SqlValue::Real(-0.0), Err("-0.0 has no decimal form")),
                (SqlValue::Real(f64::INFINITY), Err("Inf has no decimal form")),
                (text("1e3"), Err("not a decimal number")),
                (text("12.345"), Err("more than 2 fraction digits")),
                (SqlValue::Blob(vec![1]), Err("")),
            ],
        );
        let whole = PgType::NumericScaled { precision: 5, scale: 0 };
        assert_conversions(whole, &[(SqlValue::Integer(12345), Ok(numeric("12345"))), (SqlValue::Real(1.5), Err("fraction"))]);
        let decoded = |value: SqlValue, pg_type| decode_binary(&encoded(value, pg_type).unwrap(), pg_type).unwrap();
        assert_eq!(decoded(SqlValue::Real(12.5), money), SqlValue::Real(12.5));
        assert_eq!(decoded(SqlValue::Real(12.0), money), SqlValue::Integer(12));
        let wide = PgType::NumericScaled { precision: 30, scale: 2 };
        assert_eq!(decoded(text("12345678901234567890.12"), wide), text("12345678901234567890.12"));
    }

    #[test]
    fn varchar_counts_characters() {
        assert_conversions(
            PgType::Varchar(Some(3)),
            &[
                (text("abc"), Ok(b"abc".to_vec())),
                (text("éé"), Ok("éé".as_bytes().to_vec())),
                (SqlValue::Integer(123), Ok(b"123".to_vec())),
                (text("abcd"), Err("it is 4 characters long")),
                (SqlValue::Integer(-123), Err("it is 4 characters long")),
                (SqlValue::Blob(b"a".to_vec()), Err("")),
            ],
        );
        assert_eq!(encoded(text(&"x".repeat(10_000)), PgType::Varchar(None)).map(|b| b.len()), Ok(10_000));
        assert!(encoded(SqlValue::Text(vec![0xff]), PgType::Varchar(None)).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn dates_and_times_take_every_written_form_as_its_instant() {
        let micros = |t: &str| Ok(parse_datetime(t.as_bytes()).unwrap().to_be_bytes().to_vec());
        let utc = micros("2024-01-02 03:04:05");
        for pg_type in [PgType::TimestampTz, PgType::Timestamp] {
            assert_conversions(
                pg_type,
                &[
                    (text("2024-01-02 03:04:05"), utc.clone()),
                    (text("2024-01-02T03:04:05"), utc.clone()),
                    (text("2024-01-02T03:04:05Z"), utc.clone()),
                    (text("2024-01-02T05:04:05+02:00"), utc.clone()),
                    (text("2024-01-01T22:04:05-0500"), utc.clone()),
                    (text("2024-01-02 03:04:05.000000"), utc.clone()),
                    (text("2024-01-02 03:04:05.123456"), micros("2024-01-02 03:04:05.123456")),
                    (text("2024-01-02"), micros("2024-01-02 00:00:00")),
                    (text("2024-01-02 03:04"), micros("2024-01-02 03:04:00")),
                    (text("yesterday"), Err("not a date and time")),
                    (text("2024-02-30 00:00:00"), Err("not a date and time")),
                    (text("2024-01-02 03:04:05.1234567"), Err("not a date and time")),
                    (SqlValue::Integer(1_700_000_000), Err("")),
                ],
            );
        }
        assert_conversions(
            PgType::Date,
            &[
                (text("2024-02-29"), Ok((parse_date(b"2024-02-29").unwrap() as i32).to_be_bytes().to_vec())),
                (text("2024-02-30"), Err("not a date (YYYY-MM-DD)")),
                (text("2024-02-01 00:00:00"), Err("not a date (YYYY-MM-DD)")),
            ],
        );
        assert_conversions(
            PgType::Time,
            &[
                (text("13:45"), Ok(((13 * 60 + 45) * 60_000_000i64).to_be_bytes().to_vec())),
                (text("13:45:00.000001"), Ok(((13 * 60 + 45) * 60_000_000i64 + 1).to_be_bytes().to_vec())),
                (text("25:00"), Err("not a time (HH:MM[:SS[.ffffff]])")),
                (text("13:45:00+01:00"), Err("not a time")),
            ],
        );
        let decoded = |t: &str, pg_type| decode_binary(&encoded(text(t), pg_type).unwrap(), pg_type).unwrap();
        assert_eq!(decoded("2024-01-02T05:04:05.5+02:00", PgType::TimestampTz), text("2024-01-02 03:04:05.500000"));
        assert_eq!(decoded("2024-01-02T05:04:05+02:00", PgType::Timestamp), text("2024-01-02 03:04:05"));
        assert_eq!(decoded("07:08", PgType::Time), text("07:08:00"));
    }

    #[test]
    fn uuids_come_from_hex_texts_and_16_byte_blobs() {
        let bytes: Vec<u8> = (0..16).map(|i| i * 17).collect();
        let hex_text = "00112233445566778899aabbccddeeff";
        assert_conversions(
            PgType::Uuid,
            &[
                (text(hex_text), Ok(bytes.clone())),
                (text(&hex_text.to_uppercase()), Ok(bytes.clone())),
                (text("00112233-4455-6677-8899-AABBCCDDEEFF"), Ok(bytes.clone())),
                (SqlValue::Blob(bytes.clone()), Ok(bytes.clone())),
                (SqlValue::Blob(bytes[..15].to_vec()), Err("15 bytes, not 16")),
                (text("00112233-4455-6677-8899-aabbccddeefg"), Err("not a UUID")),
                (text("{00112233-4455-6677-8899-aabbccddeeff}"), Err("not a UUID")),
                (text("0011223344556677-8899-aabbccddeeff"), Err("not a UUID")),
                (SqlValue::Integer(1), Err("")),
            ],
        );
        assert_eq!(decode_binary(&bytes, PgType::Uuid), Some(text("00112233-4455-6677-8899-aabbccddeeff")));
    }

    #[test]
    fn json_columns_take_json_text_and_numbers() {
        let jsonb = |t: &str| Ok([&[JSONB_VERSION], t.as_bytes()].concat());
        assert_conversions(
            PgType::Jsonb,
            &[
                (text(r#"{"b":1,"a":[true,null]}"#), jsonb(r#"{"a": [true, null], "b": 1}"#)),
                (text(r#""x""#), jsonb(r#""x""#)),
                (SqlValue::Integer(5), jsonb("5")),
                (SqlValue::Real(1.5), jsonb("1.5")),
                (SqlValue::Real(1e20), jsonb("100000000000000000000")),
                (SqlValue::Real(f64::INFINITY), Err("not valid JSON")),
                (text("{"), Err("not valid JSON")),
                (text(r#""\u0000""#), Err("jsonb cannot hold")),
                (SqlValue::Blob(b"{}".to_vec()), Err("")),
            ],
        );
        assert_conversions(
            PgType::Json,
            &[
                (text(r#" {"b":1, "b":2} "#), Ok(br#" {"b":1, "b":2} "#.to_vec())),
                (SqlValue::Integer(-7), Ok(b"-7".to_vec())),
                (text("nope"), Err("not valid JSON")),
            ],
        );
        assert_eq!(decode_binary(&jsonb("[1, 2]").unwrap(), PgType::Jsonb), Some(text("[1, 2]")));
    }
}
