//! A value read back from PostgreSQL's binary format into the SQLite value it was written from, for keys found
//! only in PostgreSQL and for verify's comparisons.

use super::datetime::{format_date, format_datetime, format_time};
use super::encode::{encode_binary, JSONB_VERSION};
use super::numeric::{decode_numeric, decode_scaled_numeric};
use super::{hex, PgType, SqlValue};

/// Reads a value of `pg_type` in PostgreSQL's binary format back into the SQLite value it was written from
/// (the inverse of `encode_binary` for every value of the type's own kind). Used for keys found only in
/// PostgreSQL. Types that keep a value rather than its writing give a canonical text: instants as UTC
/// `YYYY-MM-DD HH:MM:SS[.ffffff]`, times as `HH:MM:SS[.ffffff]`, UUIDs lowercase with dashes, `jsonb` as it
/// prints; `numeric(p,s)` gives an integer when its fraction is zero.
pub fn decode_binary(bytes: &[u8], pg_type: PgType) -> Option<SqlValue> {
    let int = |n: usize| -> Option<i64> {
        let array: [u8; 8] = [vec![0u8; 8 - n], bytes.get(..n)?.to_vec()].concat().try_into().ok()?;
        let value = i64::from_be_bytes(array);
        // Sign-extend narrower integers.
        Some(if n < 8 { (value << (64 - 8 * n)) >> (64 - 8 * n) } else { value })
    };
    let text = |text: String| SqlValue::Text(text.into_bytes());
    Some(match pg_type {
        PgType::Boolean => SqlValue::Integer(i64::from(*bytes.first()?)),
        PgType::SmallInt => SqlValue::Integer(int(2)?),
        PgType::Integer => SqlValue::Integer(int(4)?),
        PgType::BigInt => SqlValue::Integer(int(8)?),
        PgType::Real => SqlValue::Real(f64::from(f32::from_bits(int(4)? as u32))),
        PgType::Double => SqlValue::Real(f64::from_bits(int(8)? as u64)),
        PgType::Text | PgType::Varchar(_) | PgType::Json => SqlValue::Text(bytes.to_vec()),
        PgType::Jsonb => SqlValue::Text(bytes.strip_prefix(&[JSONB_VERSION])?.to_vec()),
        PgType::Bytea => SqlValue::Blob(bytes.to_vec()),
        PgType::Numeric => decode_numeric(bytes)?,
        PgType::NumericScaled { .. } => decode_scaled_numeric(bytes)?,
        PgType::Date => text(format_date(int(4)?)),
        PgType::TimestampTz | PgType::Timestamp => text(format_datetime(int(8)?)),
        PgType::Time => text(format_time(int(8)?)),
        PgType::Uuid => {
            let hex = hex(bytes.get(..16)?);
            text(format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]))
        }
        PgType::TimestampSeconds | PgType::TimestampMillis => {
            let micros = int(8)?;
            let mut written = format_datetime(micros - micros.rem_euclid(1_000_000));
            if pg_type == PgType::TimestampMillis {
                written.push_str(&format!(".{:03}", micros.rem_euclid(1_000_000) / 1000));
            }
            text(written)
        }
    })
}

/// Whether `value` is of the kind `pg_type` was chosen for, so that `decode_binary` gives it back unchanged
/// (a number in a text column, say, arrives as text). SQLite never stores NaN. For the types that keep a value
/// rather than its writing (instants, times, UUIDs, `jsonb`, `numeric(p,s)`), only the canonical writing is.
pub fn is_native(value: &SqlValue, pg_type: PgType) -> bool {
    let canonical = || {
        let mut bytes = Vec::new();
        encode_binary(value, pg_type, &mut bytes).is_ok() && decode_binary(&bytes, pg_type).as_ref() == Some(value)
    };
    match (pg_type, value) {
        (PgType::BigInt | PgType::Numeric | PgType::SmallInt | PgType::Integer, SqlValue::Integer(_)) => true,
        (PgType::Boolean, SqlValue::Integer(0 | 1)) => true,
        (PgType::Double | PgType::Numeric | PgType::Real, SqlValue::Real(f)) => !f.is_nan(),
        (
            PgType::Text | PgType::Varchar(_) | PgType::Json | PgType::TimestampSeconds | PgType::TimestampMillis | PgType::Date,
            SqlValue::Text(_),
        ) => true,
        (PgType::Bytea, SqlValue::Blob(_)) => true,
        (PgType::TimestampTz | PgType::Timestamp | PgType::Time | PgType::Uuid | PgType::Jsonb, SqlValue::Text(_)) => canonical(),
        (PgType::NumericScaled { .. }, SqlValue::Integer(_) | SqlValue::Real(_)) => canonical(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_values_decode_back_to_what_was_encoded() {
        let cases = [
            (SqlValue::Integer(-5), PgType::BigInt),
            (SqlValue::Integer(1), PgType::Boolean),
            (SqlValue::Real(-0.0), PgType::Double),
            (SqlValue::Integer(-123456789012), PgType::Numeric),
            (SqlValue::Integer(0), PgType::Numeric),
            (SqlValue::Real(1.5), PgType::Numeric),
            (SqlValue::Real(-0.000125), PgType::Numeric),
            (SqlValue::Real(12345.0), PgType::Numeric),
            (SqlValue::Text("é".into()), PgType::Text),
            (SqlValue::Blob(vec![0, 255]), PgType::Bytea),
            (SqlValue::Text("1999-12-31".into()), PgType::Date),
            (SqlValue::Text("2024-02-29 23:59:58".into()), PgType::TimestampSeconds),
            (SqlValue::Text("1970-01-01 00:00:00.001".into()), PgType::TimestampMillis),
        ];
        for (value, pg_type) in cases {
            let mut bytes = Vec::new();
            encode_binary(&value, pg_type, &mut bytes).unwrap();
            assert_eq!(decode_binary(&bytes, pg_type), Some(value.clone()), "{value:?} as {pg_type}");
        }
    }
}
